/*
 * test_journal.c - the journal file format: every record type round-trips, a torn or
 * corrupt tail is cut off at every possible length, a failed append (ENOSPC, injected by
 * wrapping pwrite at link time: -Wl,--wrap=pwrite) leaves nothing half-recorded, rewrite
 * replaces the file atomically, and a foreign file is refused.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"

/* ---- pwrite fault injection ---- */

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);

static int fail_pwrite_errno;      /* 0: pass through */
static size_t fail_pwrite_partial; /* write this many bytes first, then fail */

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (!fail_pwrite_errno || fd <= 2)
		return __real_pwrite(fd, buf, n, off);
	if (fail_pwrite_partial) {
		size_t k = fail_pwrite_partial < n ? fail_pwrite_partial : n;
		fail_pwrite_partial = 0;
		return __real_pwrite(fd, buf, k, off);
	}
	errno = fail_pwrite_errno;
	return -1;
}

/* ---- malloc fault injection (-Wl,--wrap=malloc: the calls of journal.c and this file) ---- */

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static int fail_malloc_after = -1; /* -1: pass through; else let this many succeed, then fail */

void *__wrap_malloc(size_t n)
{
	if (fail_malloc_after < 0)
		return __real_malloc(n);
	if (fail_malloc_after > 0) {
		fail_malloc_after--;
		return __real_malloc(n);
	}
	errno = ENOMEM;
	return NULL;
}

/* ---- helpers ---- */

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/objfs-test-journal-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/journal", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

struct collected {
	struct journal_record r[64];
	size_t n;
};

static int collect(void *ud, const struct journal_record *r)
{
	struct collected *c = ud;
	if (c->n == 64)
		return E2BIG;
	c->r[c->n++] = *r;
	journal_record_init((struct journal_record *)r); /* take ownership */
	return 0;
}

static void collected_free(struct collected *c)
{
	for (size_t i = 0; i < c->n; i++)
		journal_record_free(&c->r[i]);
	c->n = 0;
}

static void sample_attr(struct store_attr *a)
{
	store_attr_init(a);
	a->size = 123456789012ull;
	a->mtime.tv_sec = 1700000000;
	a->mtime.tv_nsec = 123456789;
	a->ctime.tv_sec = -5; /* before the epoch survives */
	a->atime.tv_sec = 42;
	a->mode = 0100644;
	a->uid = 1000;
	a->gid = 4294967294u;
	a->has = STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID | STORE_HAS_MTIME;
	snprintf(a->etag, sizeof(a->etag), "d41d8cd98f00b204e9800998ecf8427e");
	snprintf(a->content_type, sizeof(a->content_type), "text/plain");
	a->n_extra = 2;
	a->extra = calloc(2, sizeof(*a->extra));
	a->extra[0].name = strdup("color");
	a->extra[0].value = strdup("blue");
	a->extra[1].name = strdup("empty");
	a->extra[1].value = strdup("");
}

/* One record of every type; rec[i] borrow string literals (not freed). */
static size_t sample_records(struct journal_record *rec, struct store_attr *attr)
{
	static const unsigned char bin[] = {0, 1, 2, 255, 0, 'x'};
	size_t n = 0;

	sample_attr(attr);
	memset(rec, 0, 9 * sizeof(*rec));
	rec[n++] = (struct journal_record){.type = JOURNAL_PUT_FILE, .seq = 1, .time_ms = 11,
					   .flags = JOURNAL_HAS_ATTR, .key = "dir/file one.txt",
					   .spool = "abc-1", .attr = *attr};
	rec[n++] = (struct journal_record){.type = JOURNAL_PUT_MEM, .seq = 2, .time_ms = 12,
					   .flags = JOURNAL_HAS_ATTR | JOURNAL_HAS_DATA,
					   .key = "link", .data = (void *)bin, .len = sizeof(bin),
					   .attr = *attr};
	rec[n++] = (struct journal_record){.type = JOURNAL_PUT_MEM, .seq = 3,
					   .flags = JOURNAL_HAS_DATA, .key = "empty-dir/",
					   .data = (void *)"", .len = 0};
	rec[n++] = (struct journal_record){.type = JOURNAL_REMOVE, .seq = 4, .key = "gone"};
	rec[n++] = (struct journal_record){.type = JOURNAL_RENAME, .seq = 5, .key = "a",
					   .dst_key = "b", .spool = "abc-2",
					   .flags = JOURNAL_HAS_ATTR | JOURNAL_ATTR_REPLACE,
					   .attr = *attr};
	rec[n++] = (struct journal_record){.type = JOURNAL_SETATTR, .seq = 6, .key = "s",
					   .flags = JOURNAL_HAS_ATTR, .attr = *attr};
	rec[n++] = (struct journal_record){.type = JOURNAL_MPU_STARTED, .seq = 7, .ref = 1,
					   .key = "dir/file one.txt", .upload_id = "upl/oad+id=="};
	rec[n++] = (struct journal_record){.type = JOURNAL_DONE, .ref = 6, .time_ms = 99};
	/* a small file: its content travels in the record as well */
	rec[n++] = (struct journal_record){.type = JOURNAL_PUT_FILE, .seq = 8, .time_ms = 13,
					   .flags = JOURNAL_HAS_ATTR | JOURNAL_HAS_DATA,
					   .key = "small", .spool = "abc-3", .data = (void *)bin,
					   .len = sizeof(bin), .attr = *attr};
	return n;
}

static void assert_attr_equal(const struct store_attr *a, const struct store_attr *b)
{
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->mtime.tv_sec, b->mtime.tv_sec);
	assert_int_equal(a->mtime.tv_nsec, b->mtime.tv_nsec);
	assert_int_equal(a->ctime.tv_sec, b->ctime.tv_sec);
	assert_int_equal(a->atime.tv_sec, b->atime.tv_sec);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->has, b->has);
	assert_string_equal(a->etag, b->etag);
	assert_string_equal(a->content_type, b->content_type);
	assert_int_equal(a->n_extra, b->n_extra);
	for (size_t i = 0; i < a->n_extra; i++) {
		assert_string_equal(a->extra[i].name, b->extra[i].name);
		assert_string_equal(a->extra[i].value, b->extra[i].value);
	}
}

static void assert_str_or_empty(const char *want, const char *got)
{
	assert_string_equal(want ? want : "", got ? got : "");
}

static void assert_record_equal(const struct journal_record *a, const struct journal_record *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->time_ms, b->time_ms);
	assert_int_equal(a->ref, b->ref);
	assert_int_equal(a->flags, b->flags);
	assert_str_or_empty(a->key, b->key);
	assert_str_or_empty(a->dst_key, b->dst_key);
	assert_str_or_empty(a->spool, b->spool);
	assert_str_or_empty(a->upload_id, b->upload_id);
	if (a->flags & JOURNAL_HAS_DATA) {
		assert_int_equal(a->len, b->len);
		assert_non_null(b->data);
		assert_memory_equal(a->data, b->data, a->len ? a->len : 0);
	}
	if (a->flags & JOURNAL_HAS_ATTR)
		assert_attr_equal(&a->attr, &b->attr);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* The file is the journal's size in records followed by zeros only. */
static void assert_zero_tail(const char *path, uint64_t size)
{
	uint64_t fsize = file_size(path);
	unsigned char *buf = malloc(fsize ? fsize : 1);
	int fd = open(path, O_RDONLY);

	assert_true(fsize >= size);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, fsize), (ssize_t)fsize);
	close(fd);
	for (uint64_t i = size; i < fsize; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
}

static void append_records(struct journal *j, const struct journal_record *rec, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct journal_buf b = {0};
		assert_int_equal(journal_encode(&b, &rec[i]), 0);
		assert_int_equal(journal_append(j, b.p, b.len), 0);
		journal_buf_free(&b);
	}
}

/* ---- tests ---- */

static void test_crc32_vector(void **state)
{
	(void)state;
	assert_int_equal(journal_crc32("123456789", 9), 0xCBF43926u);
	assert_int_equal(journal_crc32("", 0), 0);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn = 1;
	char err[256];
	size_t n = sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	assert_non_null(j);
	assert_int_equal(journal_size(j), 8);
	append_records(j, rec, n);
	assert_zero_tail(f->path, journal_size(j));
	journal_close(j);

	j = journal_open(f->path, err, sizeof(err));
	assert_non_null(j);
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(torn, 0);
	assert_int_equal(c.n, n);
	for (size_t i = 0; i < n; i++)
		assert_record_equal(&rec[i], &c.r[i]);
	collected_free(&c);
	journal_close(j);
	store_attr_free(&attr);
}

/* Records go over zeros written ahead: after the first append the file keeps its size (no
 * file system journal commit per record), and reopened it reads with nothing torn. */
static void test_appends_keep_file_size(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn = 1;
	char err[256];
	size_t n = sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	assert_non_null(j);
	append_records(j, rec, 1);
	uint64_t fsize = file_size(f->path);
	assert_true(fsize >= journal_size(j) + (1u << 20));
	append_records(j, rec + 1, n - 1);
	assert_int_equal(file_size(f->path), fsize);
	assert_zero_tail(f->path, journal_size(j));
	uint64_t end = journal_size(j);
	journal_close(j);

	/* reopened and appended to without reading first: the record goes at the end */
	j = journal_open(f->path, err, sizeof(err));
	append_records(j, rec, 1);
	assert_int_equal(file_size(f->path), fsize);
	journal_close(j);
	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(torn, 0);
	assert_int_equal(c.n, n + 1);
	assert_record_equal(&rec[0], &c.r[n]);
	assert_true(journal_size(j) > end);
	collected_free(&c);
	journal_close(j);
	store_attr_free(&attr);
}

/* A journal of the n records; *good is its size before the last one, *full after it.
 * Returns the file's first *full bytes (the caller frees them). */
static char *journal_of(struct fixture *f, const struct journal_record *rec, size_t n,
			uint64_t *good, uint64_t *full)
{
	char err[256];
	struct journal *j = journal_open(f->path, err, sizeof(err));

	assert_non_null(j);
	append_records(j, rec, n - 1);
	*good = journal_size(j);
	append_records(j, &rec[n - 1], 1);
	*full = journal_size(j);
	journal_close(j);

	char *whole = malloc(*full);
	int fd = open(f->path, O_RDONLY);
	assert_int_equal(read(fd, whole, *full), (ssize_t)*full);
	close(fd);
	return whole;
}

/* The file is whole[0..cut) followed by zeros bytes of zeros. */
static void write_cut(struct fixture *f, const char *whole, uint64_t cut, size_t zeros)
{
	static const char zero[4096];
	int fd = open(f->path, O_WRONLY | O_TRUNC);

	assert_int_equal(write(fd, whole, cut), (ssize_t)cut);
	assert_true(zeros <= sizeof(zero));
	assert_int_equal(write(fd, zero, zeros), (ssize_t)zeros);
	close(fd);
}

/* What the torn record wrote: from good to its last non-zero byte before cut. */
static uint64_t torn_written(const char *whole, uint64_t good, uint64_t cut)
{
	uint64_t written = cut;
	while (written > good && whole[written - 1] == 0)
		written--;
	return written - good;
}

/* After a torn tail was read: the last record appended to j goes right after the intact
 * ones, and a reopened journal reads all n with nothing torn. Closes j. */
static void assert_append_after_intact(struct fixture *f, struct journal *j,
				       const struct journal_record *rec, size_t n)
{
	struct collected c = {0};
	uint64_t torn = 1;
	char err[256];

	append_records(j, &rec[n - 1], 1);
	journal_close(j);
	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(torn, 0);
	assert_int_equal(c.n, n);
	assert_record_equal(&rec[n - 1], &c.r[n - 1]);
	collected_free(&c);
	journal_close(j);
}

/* Cut the last record at every length: the first records survive, the rest is cut off, and
 * an append after that lands right after the last intact record. */
static void test_torn_tail_every_length(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	char err[256];
	uint64_t good, full;
	size_t n = sample_records(rec, &attr);
	char *whole = journal_of(f, rec, n, &good, &full);

	for (uint64_t cut = good; cut < full; cut++) {
		struct collected c = {0};
		uint64_t torn = 0;
		write_cut(f, whole, cut, 0);
		struct journal *j = journal_open(f->path, err, sizeof(err));
		assert_non_null(j);
		assert_int_equal(journal_read(j, collect, &c, &torn), 0);
		uint64_t written = torn_written(whole, good, cut);
		assert_int_equal(c.n, n - 1);
		assert_int_equal(torn, written);
		/* cut off; a prefix of zeros only is the zero tail, kept */
		assert_int_equal(file_size(f->path), written ? good : cut);
		collected_free(&c);
		assert_append_after_intact(f, j, rec, n);
	}
	free(whole);
	store_attr_free(&attr);
}

/* A record cut short with the zeros written ahead still after it (a crash in the middle of
 * an append over the zero tail) is torn too: only the intact records are read, and an append
 * goes right after them. */
static void test_torn_record_before_zeros(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	char err[256];
	uint64_t good, full;
	size_t n = sample_records(rec, &attr);
	char *whole = journal_of(f, rec, n, &good, &full);

	for (uint64_t cut = good + 1; cut < full; cut += 7) {
		struct collected c = {0};
		uint64_t torn = 0;
		write_cut(f, whole, cut, 4096);
		struct journal *j = journal_open(f->path, err, sizeof(err));
		assert_int_equal(journal_read(j, collect, &c, &torn), 0);
		assert_int_equal(c.n, n - 1);
		assert_int_equal(torn, torn_written(whole, good, cut));
		assert_int_equal(journal_size(j), good);
		collected_free(&c);
		assert_append_after_intact(f, j, rec, n);
	}
	free(whole);
	store_attr_free(&attr);
}

/* No memory to decode an intact record while replaying: ENOMEM, and nothing is cut off (it
 * used to read as a malformed record, and everything from there on was dropped). */
static void test_read_enomem_cuts_nothing(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn = 0;
	char err[256];
	size_t n = sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	append_records(j, rec, n);
	uint64_t fsize = file_size(f->path);
	journal_close(j);

	j = journal_open(f->path, err, sizeof(err));
	fail_malloc_after = 1; /* the file's buffer, then the first record's key fails */
	int rv = journal_read(j, collect, &c, &torn);
	fail_malloc_after = -1;
	assert_int_equal(rv, ENOMEM);
	assert_int_equal(torn, 0);
	assert_int_equal(file_size(f->path), fsize);
	collected_free(&c);
	journal_close(j);

	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(c.n, n);
	collected_free(&c);
	journal_close(j);
	store_attr_free(&attr);
}

/* A flipped bit in the last record, or garbage after it, is treated as a torn tail. */
static void test_corrupt_tail(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn;
	char err[256];
	size_t n = sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	append_records(j, rec, 3);
	uint64_t two_end = 0;
	journal_close(j);
	/* size after two records */
	j = journal_open(f->path, err, sizeof(err));
	journal_close(j);
	{
		struct journal_buf b = {0};
		journal_encode(&b, &rec[0]);
		journal_encode(&b, &rec[1]);
		two_end = 8 + b.len;
		journal_buf_free(&b);
	}
	int fd = open(f->path, O_RDWR);
	unsigned char x;
	assert_int_equal(pread(fd, &x, 1, (off_t)two_end + 12), 1);
	x ^= 0x10;
	assert_int_equal(pwrite(fd, &x, 1, (off_t)two_end + 12), 1);
	close(fd);

	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(c.n, 2);
	assert_true(torn > 0);
	collected_free(&c);
	journal_close(j);

	/* garbage that looks like a huge length */
	fd = open(f->path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "\xff\xff\xff\x7f garbage", 12), 12);
	close(fd);
	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(torn, 12);
	collected_free(&c);
	journal_close(j);
	(void)n;
	store_attr_free(&attr);
}

static void test_decode_malformed_payload(void **state)
{
	(void)state;
	/* correct framing and CRC around a payload with an unknown type */
	unsigned char p[8 + 29] = {0};
	struct journal_record r;
	uint32_t len = 29;
	p[8] = 99; /* type */
	uint32_t crc = journal_crc32(p + 8, len);
	for (int i = 0; i < 4; i++) {
		p[i] = (unsigned char)(len >> (8 * i));
		p[4 + i] = (unsigned char)(crc >> (8 * i));
	}
	assert_int_equal(journal_decode(p, sizeof(p), &r), -1);
	/* a key whose length runs past the payload */
	struct journal_buf b = {0};
	struct journal_record ok = {.type = JOURNAL_REMOVE, .seq = 1, .key = "k"};
	journal_encode(&b, &ok);
	assert_true(journal_decode(b.p, b.len, &r) == (long)b.len);
	journal_record_free(&r);
	b.p[8 + 29] = 200; /* key length byte */
	crc = journal_crc32(b.p + 8, b.len - 8);
	for (int i = 0; i < 4; i++)
		b.p[4 + i] = (unsigned char)(crc >> (8 * i));
	assert_int_equal(journal_decode(b.p, b.len, &r), -1);
	assert_int_equal(journal_decode(b.p, 5, &r), 0); /* incomplete */
	journal_buf_free(&b);
}

/* ENOSPC in the middle of an append: the part that was written is cut off again, the
 * error is returned, and the journal goes on working once there is space. */
static void test_append_enospc_rolls_back(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn;
	char err[256];
	size_t n = sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	append_records(j, rec, 2);
	uint64_t before = journal_size(j);

	struct journal_buf b = {0};
	journal_encode(&b, &rec[2]);
	journal_encode(&b, &rec[3]);
	fail_pwrite_errno = ENOSPC;
	fail_pwrite_partial = 10;
	assert_int_equal(journal_append(j, b.p, b.len), ENOSPC);
	fail_pwrite_errno = 0;
	assert_int_equal(journal_size(j), before);
	assert_int_equal(file_size(f->path), before);
	fail_pwrite_errno = ENOSPC; /* nothing written at all */
	assert_int_equal(journal_append(j, b.p, b.len), ENOSPC);
	fail_pwrite_errno = 0;
	assert_int_equal(file_size(f->path), before);
	assert_int_equal(journal_append(j, b.p, b.len), 0);
	journal_buf_free(&b);
	journal_close(j);

	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(torn, 0);
	assert_int_equal(c.n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_record_equal(&rec[i], &c.r[i]);
	collected_free(&c);
	journal_close(j);
	(void)n;
	store_attr_free(&attr);
}

static void test_rewrite(void **state)
{
	struct fixture *f = *state;
	struct journal_record rec[9];
	struct store_attr attr;
	struct collected c = {0};
	uint64_t torn;
	char err[256], newpath[160];
	sample_records(rec, &attr);

	struct journal *j = journal_open(f->path, err, sizeof(err));
	append_records(j, rec, 6);
	struct journal_buf b = {0};
	journal_encode(&b, &rec[4]);
	assert_int_equal(journal_rewrite(j, b.p, b.len), 0);
	assert_int_equal(journal_size(j), 8 + b.len);
	snprintf(newpath, sizeof(newpath), "%s.new", f->path);
	assert_int_equal(access(newpath, F_OK), -1);
	/* appends continue in the new file */
	append_records(j, &rec[5], 1);
	journal_close(j);
	journal_buf_free(&b);

	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(c.n, 2);
	assert_record_equal(&rec[4], &c.r[0]);
	assert_record_equal(&rec[5], &c.r[1]);
	collected_free(&c);

	/* a failing rewrite leaves the old journal alone */
	b = (struct journal_buf){0};
	journal_encode(&b, &rec[0]);
	fail_pwrite_errno = ENOSPC;
	assert_int_equal(journal_rewrite(j, b.p, b.len), ENOSPC);
	fail_pwrite_errno = 0;
	assert_int_equal(access(newpath, F_OK), -1);
	journal_close(j);
	journal_buf_free(&b);
	j = journal_open(f->path, err, sizeof(err));
	assert_int_equal(journal_read(j, collect, &c, &torn), 0);
	assert_int_equal(c.n, 2);
	collected_free(&c);
	journal_close(j);
	store_attr_free(&attr);
}

static void test_foreign_file_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	int fd = open(f->path, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "hello world\n", 12), 12);
	close(fd);
	assert_null(journal_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "is not an objfs journal"));
	assert_non_null(strstr(err, f->path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32_vector),
		cmocka_unit_test(test_decode_malformed_payload),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_appends_keep_file_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_every_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_record_before_zeros, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_enomem_cuts_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_enospc_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_file_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
