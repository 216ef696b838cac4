/*
 * journal.c - the sync journal's file format: framing, CRC-32, record encoding, append with
 * fdatasync and roll-back, read with a torn tail cut off, atomic rewrite (see journal.h).
 *
 * Space: where the file system can preallocate (fallocate KEEP_SIZE), blocks past the end of
 * the file are kept allocated for commit records (journal_append_reserved), so that uploads
 * done on a full disk can still be committed and their spool files freed.
 *
 * Zero tail: records are written over zeros written ahead (JOURNAL_FILL bytes at a time),
 * so that an append changes neither the file's size nor its extents and its fdatasync only
 * flushes data: no file system journal commit per record (ext4: 150-180 us instead of
 * 210-290 here, and the commit no longer carries every other file's creates and unlinks).
 * The logical end is where the records stop and zeros begin; a non-zero tail is torn.
 *
 * Locking: none; the caller serialises use of one struct journal. The CRC table is built
 * once (pthread_once).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"

#define JOURNAL_MAGIC "OBJFSJ1\n"
#define JOURNAL_HEADER_LEN 8
#define JOURNAL_FRAME_LEN 8 /* u32 length + u32 crc */
#define JOURNAL_RESERVE_MIN (128u << 10)
#define JOURNAL_FILL (1u << 20)

struct journal {
	int fd;
	char *path;
	uint64_t size;        /* where the next record goes */
	uint64_t filled_to;   /* [size, filled_to) holds written zeros (the file's end) */
	uint64_t reserved_to; /* blocks are allocated up to this offset (0: nothing known) */
	bool no_reserve;      /* the file system cannot preallocate: keep no reserve */
	bool end_known;       /* size is the logical end (a file opened with content: not yet) */
};

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib) ---- */

static uint32_t journal_crc_table[256];
static pthread_once_t journal_crc_once = PTHREAD_ONCE_INIT;

static void journal_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		journal_crc_table[i] = c;
	}
}

uint32_t journal_crc32(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t c = 0xFFFFFFFFu;

	pthread_once(&journal_crc_once, journal_crc_init);
	for (size_t i = 0; i < len; i++)
		c = journal_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

/* ---- records ---- */

void journal_record_init(struct journal_record *r)
{
	memset(r, 0, sizeof(*r));
	store_attr_init(&r->attr);
}

void journal_record_free(struct journal_record *r)
{
	free(r->key);
	free(r->dst_key);
	free(r->spool);
	free(r->upload_id);
	free(r->data);
	store_attr_free(&r->attr);
	journal_record_init(r);
}

void journal_buf_free(struct journal_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void buf_reserve(struct journal_buf *b, size_t more)
{
	if (b->err)
		return;
	if (b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	unsigned char *p = realloc(b->p, cap);
	if (!p) {
		b->err = ENOMEM;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void buf_put(struct journal_buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (b->err)
		return;
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_u8(struct journal_buf *b, uint8_t v)
{
	buf_put(b, &v, 1);
}

static void buf_u32(struct journal_buf *b, uint32_t v)
{
	unsigned char x[4];
	for (int i = 0; i < 4; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	buf_put(b, x, 4);
}

static void buf_u64(struct journal_buf *b, uint64_t v)
{
	unsigned char x[8];
	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	buf_put(b, x, 8);
}

static void buf_blob(struct journal_buf *b, const void *data, size_t len)
{
	buf_u32(b, (uint32_t)len);
	buf_put(b, data, len);
}

static void buf_str(struct journal_buf *b, const char *s)
{
	buf_blob(b, s ? s : "", s ? strlen(s) : 0);
}

static void buf_time(struct journal_buf *b, const struct timespec *t)
{
	buf_u64(b, (uint64_t)(int64_t)t->tv_sec);
	buf_u32(b, (uint32_t)t->tv_nsec);
}

static void buf_attr(struct journal_buf *b, const struct store_attr *a)
{
	buf_u64(b, a->size);
	buf_time(b, &a->mtime);
	buf_time(b, &a->ctime);
	buf_time(b, &a->atime);
	buf_u32(b, (uint32_t)a->mode);
	buf_u32(b, (uint32_t)a->uid);
	buf_u32(b, (uint32_t)a->gid);
	buf_u32(b, a->has);
	buf_u8(b, a->is_dir ? 1 : 0);
	buf_str(b, a->etag);
	buf_str(b, a->content_type);
	buf_u32(b, (uint32_t)a->n_extra);
	for (size_t i = 0; i < a->n_extra; i++) {
		buf_str(b, a->extra[i].name);
		buf_str(b, a->extra[i].value);
	}
}

int journal_encode(struct journal_buf *b, const struct journal_record *r)
{
	size_t start = b->len;

	if (b->err)
		return b->err;
	buf_u32(b, 0); /* length, filled below */
	buf_u32(b, 0); /* crc */
	buf_u8(b, (uint8_t)r->type);
	buf_u64(b, r->seq);
	buf_u64(b, r->time_ms);
	buf_u64(b, r->ref);
	buf_u32(b, r->flags);
	if (r->type != JOURNAL_DONE)
		buf_str(b, r->key);
	switch (r->type) {
	case JOURNAL_PUT_FILE:
		buf_str(b, r->spool);
		if (r->flags & JOURNAL_HAS_DATA)
			buf_blob(b, r->data, r->len);
		break;
	case JOURNAL_PUT_MEM:
		buf_blob(b, r->data, r->len);
		break;
	case JOURNAL_RENAME:
		buf_str(b, r->dst_key);
		buf_str(b, r->spool);
		if (r->flags & JOURNAL_HAS_DATA)
			buf_blob(b, r->data, r->len);
		break;
	case JOURNAL_MPU_STARTED:
		buf_str(b, r->upload_id);
		break;
	default:
		break;
	}
	if (r->flags & JOURNAL_HAS_ATTR)
		buf_attr(b, &r->attr);
	if (b->err)
		return b->err;

	size_t payload = b->len - start - JOURNAL_FRAME_LEN;
	if (payload > JOURNAL_MAX_RECORD) {
		b->len = start;
		return EINVAL;
	}
	uint32_t crc = journal_crc32(b->p + start + JOURNAL_FRAME_LEN, payload);
	for (int i = 0; i < 4; i++) {
		b->p[start + i] = (unsigned char)(payload >> (8 * i));
		b->p[start + 4 + i] = (unsigned char)(crc >> (8 * i));
	}
	return 0;
}

/* A cursor over one payload; any overrun sets bad, a failed allocation nomem too. */
struct rd {
	const unsigned char *p;
	size_t len, off;
	bool bad, nomem;
};

static const unsigned char *rd_take(struct rd *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint64_t rd_uint(struct rd *r, int bytes)
{
	const unsigned char *p = rd_take(r, (size_t)bytes);
	uint64_t v = 0;
	if (!p)
		return 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A blob as a fresh NUL-terminated allocation. */
static char *rd_blob(struct rd *r, size_t *lenp)
{
	uint32_t n = (uint32_t)rd_uint(r, 4);
	const unsigned char *p = rd_take(r, n);
	if (!p)
		return NULL;
	char *s = malloc((size_t)n + 1);
	if (!s) {
		r->bad = r->nomem = true;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	if (lenp)
		*lenp = n;
	return s;
}

static void rd_fixed_str(struct rd *r, char *dst, size_t dstlen)
{
	char *s = rd_blob(r, NULL);
	if (!s)
		return;
	snprintf(dst, dstlen, "%s", s);
	free(s);
}

static void rd_time(struct rd *r, struct timespec *t)
{
	t->tv_sec = (time_t)(int64_t)rd_uint(r, 8);
	t->tv_nsec = (long)(uint32_t)rd_uint(r, 4);
}

static void rd_attr(struct rd *r, struct store_attr *a)
{
	a->size = rd_uint(r, 8);
	rd_time(r, &a->mtime);
	rd_time(r, &a->ctime);
	rd_time(r, &a->atime);
	a->mode = (mode_t)rd_uint(r, 4);
	a->uid = (uid_t)rd_uint(r, 4);
	a->gid = (gid_t)rd_uint(r, 4);
	a->has = (unsigned)rd_uint(r, 4);
	a->is_dir = rd_uint(r, 1) != 0;
	rd_fixed_str(r, a->etag, sizeof(a->etag));
	rd_fixed_str(r, a->content_type, sizeof(a->content_type));
	uint32_t n = (uint32_t)rd_uint(r, 4);
	if (r->bad || n > r->len - r->off) { /* each entry takes at least 8 bytes */
		r->bad = true;
		return;
	}
	if (n) {
		a->extra = calloc(n, sizeof(*a->extra));
		if (!a->extra) {
			r->bad = r->nomem = true;
			return;
		}
	}
	for (uint32_t i = 0; i < n && !r->bad; i++) {
		a->n_extra = i + 1;
		a->extra[i].name = rd_blob(r, NULL);
		a->extra[i].value = rd_blob(r, NULL);
	}
	for (size_t i = 0; i < a->n_extra; i++) /* store_attr_free expects both set */
		if (!a->extra[i].name || !a->extra[i].value)
			r->bad = true;
}

long journal_decode(const unsigned char *p, size_t avail, struct journal_record *out)
{
	journal_record_init(out);
	if (avail < JOURNAL_FRAME_LEN)
		return 0;
	uint32_t len = 0, crc = 0;
	for (int i = 0; i < 4; i++) {
		len |= (uint32_t)p[i] << (8 * i);
		crc |= (uint32_t)p[4 + i] << (8 * i);
	}
	if (len > JOURNAL_MAX_RECORD || len > avail - JOURNAL_FRAME_LEN)
		return 0;
	if (journal_crc32(p + JOURNAL_FRAME_LEN, len) != crc)
		return 0;

	struct rd r = {.p = p + JOURNAL_FRAME_LEN, .len = len};
	out->type = (enum journal_type)rd_uint(&r, 1);
	out->seq = rd_uint(&r, 8);
	out->time_ms = rd_uint(&r, 8);
	out->ref = rd_uint(&r, 8);
	out->flags = (uint32_t)rd_uint(&r, 4);
	if (out->type < JOURNAL_PUT_FILE || out->type > JOURNAL_DONE)
		r.bad = true;
	if (out->type != JOURNAL_DONE && !r.bad)
		out->key = rd_blob(&r, NULL);
	switch (out->type) {
	case JOURNAL_PUT_FILE:
		out->spool = rd_blob(&r, NULL);
		if (out->flags & JOURNAL_HAS_DATA)
			out->data = rd_blob(&r, &out->len);
		break;
	case JOURNAL_PUT_MEM:
		out->data = rd_blob(&r, &out->len);
		out->flags |= JOURNAL_HAS_DATA;
		break;
	case JOURNAL_RENAME:
		out->dst_key = rd_blob(&r, NULL);
		out->spool = rd_blob(&r, NULL);
		if (out->flags & JOURNAL_HAS_DATA)
			out->data = rd_blob(&r, &out->len);
		break;
	case JOURNAL_MPU_STARTED:
		out->upload_id = rd_blob(&r, NULL);
		break;
	default:
		break;
	}
	if (out->flags & JOURNAL_HAS_ATTR)
		rd_attr(&r, &out->attr);
	if (r.bad || r.off != r.len) {
		journal_record_free(out);
		return r.nomem ? -2 : -1;
	}
	return (long)(JOURNAL_FRAME_LEN + len);
}

/* ---- the file ---- */

static int journal_fsync_dir(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = fsync(fd) < 0 ? errno : 0;
	close(fd);
	return err;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* The space kept allocated past the end of a journal of size bytes: room for a DONE record
 * (37 bytes) for every record of the usual sizes (a file's record takes 100 or more). */
static uint64_t journal_reserve_for(uint64_t size)
{
	return JOURNAL_RESERVE_MIN + size / 2;
}

/* Blocks allocated up to end (past the end of the file, which keeps its size). 0 (also when
 * the file system cannot preallocate: then the reserve is off for good), or ENOSPC / EDQUOT. */
static int journal_allocate(struct journal *j, uint64_t end)
{
	if (j->no_reserve || j->reserved_to >= end || end <= j->size)
		return 0;
	if (fallocate(j->fd, FALLOC_FL_KEEP_SIZE, (off_t)j->size, (off_t)(end - j->size)) == 0) {
		j->reserved_to = end;
		return 0;
	}
	if (errno == ENOSPC || errno == EDQUOT)
		return errno;
	if (errno != EINTR)
		j->no_reserve = true; /* EOPNOTSUPP...: appends behave as without a reserve */
	return 0;
}

/* Before appending len bytes: keep the reserve behind them (with some slack, so that this
 * costs a system call only now and then). ENOSPC when the reserve cannot be kept. */
static int journal_keep_reserve(struct journal *j, size_t len)
{
	uint64_t end = j->size + len, want = end + journal_reserve_for(end);

	if (j->reserved_to >= want)
		return 0;
	if (journal_allocate(j, want + JOURNAL_RESERVE_MIN) == 0)
		return 0;
	return journal_allocate(j, want);
}

/* A truncation frees the blocks past the new end: the reserve is gone. */
static void journal_reserve_lost(struct journal *j)
{
	j->reserved_to = 0;
}

struct journal *journal_open(const char *path, char *err, size_t errlen)
{
	struct journal *j = calloc(1, sizeof(*j));
	struct stat st;
	char magic[JOURNAL_HEADER_LEN];

	if (!j || !(j->path = strdup(path))) {
		snprintf(err, errlen, "cannot open journal '%s': %s", path, strerror(ENOMEM));
		goto fail;
	}
	j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		snprintf(err, errlen, "cannot open journal '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(j->fd, &st) < 0) {
		snprintf(err, errlen, "cannot stat journal '%s': %s", path, strerror(errno));
		goto fail_fd;
	}
	if (st.st_size == 0) {
		int e = write_all(j->fd, JOURNAL_MAGIC, JOURNAL_HEADER_LEN, 0);
		if (!e && fdatasync(j->fd) < 0)
			e = errno;
		if (!e)
			e = journal_fsync_dir(path);
		if (e) {
			snprintf(err, errlen, "cannot write journal '%s': %s", path, strerror(e));
			if (ftruncate(j->fd, 0) < 0) {
				/* left empty or partial: the next open starts it again */
			}
			goto fail_fd;
		}
		j->size = j->filled_to = JOURNAL_HEADER_LEN;
		j->end_known = true;
		(void)journal_keep_reserve(j, 0); /* best effort: appends try again */
		return j;
	}
	ssize_t n = pread(j->fd, magic, sizeof(magic), 0);
	if (n != (ssize_t)sizeof(magic) || memcmp(magic, JOURNAL_MAGIC, sizeof(magic)) != 0) {
		snprintf(err, errlen,
			 "'%s' is not an objfs journal (bad header): move it out of the cache directory",
			 path);
		goto fail_fd;
	}
	j->size = j->filled_to = (uint64_t)st.st_size; /* until journal_read finds the end */
	return j;

fail_fd:
	close(j->fd);
fail:
	if (j)
		free(j->path);
	free(j);
	return NULL;
}

int journal_read(struct journal *j, int (*cb)(void *ud, const struct journal_record *r), void *ud,
		 uint64_t *torn_bytes)
{
	struct stat st;
	unsigned char *buf = NULL;
	size_t size, off = JOURNAL_HEADER_LEN;
	int err = 0;

	*torn_bytes = 0;
	if (fstat(j->fd, &st) < 0)
		return errno;
	size = (size_t)st.st_size;
	if (size < JOURNAL_HEADER_LEN)
		return EINVAL;
	buf = malloc(size);
	if (!buf)
		return ENOMEM;
	for (size_t got = 0; got < size;) {
		ssize_t n = pread(j->fd, buf + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : EIO;
			goto out;
		}
		got += (size_t)n;
	}
	while (off < size) {
		struct journal_record r;
		long used = journal_decode(buf + off, size - off, &r);
		if (used == -2) { /* an intact record, no memory to read it: never cut it off */
			err = ENOMEM;
			goto out;
		}
		if (used <= 0)
			break; /* the zero tail, or torn or corrupt: everything from here on is dropped */
		err = cb ? cb(ud, &r) : 0;
		journal_record_free(&r);
		if (err)
			goto out;
		off += (size_t)used;
	}
	size_t z = off;
	while (z < size && buf[z] == 0)
		z++;
	if (z == size) { /* the zero tail: records go on over it */
		j->filled_to = size;
	} else {
		size_t end = size; /* what was written of the torn record: not the zeros after it */
		while (end > off && buf[end - 1] == 0)
			end--;
		*torn_bytes = end - off;
		journal_reserve_lost(j);
		if (ftruncate(j->fd, (off_t)off) < 0 || fdatasync(j->fd) < 0) {
			err = errno;
			goto out;
		}
		j->filled_to = off;
	}
	j->size = off;
	j->end_known = true;
	(void)journal_keep_reserve(j, 0);
out:
	free(buf);
	return err;
}

/* Zeros written from filled_to on, so that [size, end) is zeros in the file. Best effort
 * (a full disk): filled_to says how far it got, and a record past it extends the file. */
static void journal_fill(struct journal *j, uint64_t end)
{
	static const char zeros[64 << 10];

	while (j->filled_to < end) {
		uint64_t n = end - j->filled_to;
		ssize_t w = pwrite(j->fd, zeros, n < sizeof(zeros) ? (size_t)n : sizeof(zeros),
				   (off_t)j->filled_to);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		j->filled_to += (uint64_t)w;
	}
}

static int journal_write(struct journal *j, const void *buf, size_t len, bool use_reserve)
{
	uint64_t torn;
	int err;

	if (!j->end_known && (err = journal_read(j, NULL, NULL, &torn)))
		return err;
	err = journal_keep_reserve(j, len);
	if (err && !use_reserve)
		return err; /* the reserve is for commits: refuse before writing anything */
	if (j->size + len > j->filled_to)
		journal_fill(j, j->size + len + JOURNAL_FILL);
	err = write_all(j->fd, buf, len, (off_t)j->size);
	if (!err && fdatasync(j->fd) < 0)
		err = errno;
	if (err) {
		/* Cut off whatever part reached the file (and the zeros); the record never
		 * counted. */
		journal_reserve_lost(j);
		if (ftruncate(j->fd, (off_t)j->size) == 0) {
			if (fdatasync(j->fd) < 0) {
				/* the caller reports err; a torn tail is ignored on replay anyway */
			}
		}
		j->filled_to = j->size;
		return err;
	}
	j->size += len;
	if (j->filled_to < j->size)
		j->filled_to = j->size;
	return 0;
}

int journal_append(struct journal *j, const void *buf, size_t len)
{
	return journal_write(j, buf, len, false);
}

int journal_append_reserved(struct journal *j, const void *buf, size_t len)
{
	return journal_write(j, buf, len, true);
}

int journal_rewrite(struct journal *j, const void *buf, size_t len)
{
	char tmp[PATH_MAX];
	int fd = -1, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.new", j->path) >= (int)sizeof(tmp))
		return ENAMETOOLONG;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	err = write_all(fd, JOURNAL_MAGIC, JOURNAL_HEADER_LEN, 0);
	if (!err)
		err = write_all(fd, buf, len, JOURNAL_HEADER_LEN);
	if (!err && fsync(fd) < 0)
		err = errno;
	if (!err && rename(tmp, j->path) < 0)
		err = errno;
	if (err) {
		close(fd);
		unlink(tmp);
		return err;
	}
	/* The rename is in place; make it durable. Failing here leaves either file valid. */
	err = journal_fsync_dir(j->path);
	close(j->fd);
	j->fd = fd;
	j->size = j->filled_to = JOURNAL_HEADER_LEN + len;
	j->end_known = true;
	journal_reserve_lost(j);
	(void)journal_keep_reserve(j, 0);
	return err;
}

uint64_t journal_size(const struct journal *j)
{
	return j->size;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	close(j->fd);
	free(j->path);
	free(j);
}
