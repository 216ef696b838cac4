/*
 * store_dir.c - the store interface (store.h) over a local directory: `file:///path` sources,
 * tests and local use, with fault injection.
 *
 * Mapping: object "a/b.txt" is the regular file ROOT/a/b.txt; a directory marker "a/" is the
 * directory ROOT/a carrying the xattr user.objfs.marker. Directories without that xattr are
 * implicit prefixes: they exist only while something below them does (emptied ones are
 * removed, like a prefix vanishes on S3). Metadata lives in xattrs user.objfs.* of the file
 * or directory: mode, uid, gid, mtime, ctime, atime (s3fs text forms), etag, ctype and
 * x.<name> for other x-amz-meta-* headers. ROOT/.objfs-store/ is reserved (temporary files
 * and multipart uploads); keys below it are refused. A key that cannot be a path (empty
 * component, ".", "..", a component over 255 bytes) is EINVAL on put and absent on read; an
 * object "a" and a prefix "a/" cannot coexist here (EEXIST), unlike on S3.
 *
 * Listings behave like ListObjectsV2: keys in byte order, delimiter "/" folds sub-directories
 * into common prefixes, pages of max_keys with an opaque continuation token (the last key
 * returned), and only size, Last-Modified (file mtime) and ETag per object (no user
 * metadata, as S3). Puts write a temporary file and rename it into place: readers see the
 * old or the new object, never a mix.
 *
 * Faults: env OBJFS_DIR_FAULTS="eio=0.1,etimedout=0.05,delay_ms=5" makes each operation
 * (not check/destroy) sleep delay_ms and then fail with EIO / ETIMEDOUT with the given
 * probabilities.
 *
 * Locking: none needed; the file system serialises what it must (renames are atomic) and the
 * store object is read-only after creation except for the atomic counters. Racing puts of one
 * key end with one of them whole.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"
#include "store.h"

#define DIR_RESERVED ".objfs-store"
#define DIR_XA "user.objfs."
#define DIR_XA_EXTRA "user.objfs.x."
#define DIR_EMPTY_MD5 "d41d8cd98f00b204e9800998ecf8427e"

struct store_dir {
	struct store base;
	char *root;
	double fault_eio, fault_timeout;
	long fault_delay_ms;
	atomic_uint_fast64_t seq; /* temporary names, upload ids */
};

static struct store_dir *dir_of(struct store *st)
{
	return (struct store_dir *)st;
}

/* ---- faults ---- */

static double dir_random(void)
{
	static __thread uint64_t state;

	if (!state) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		state = (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)&state << 16) ^ 0x9e3779b97f4a7c15ULL;
	}
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return (double)(state >> 11) / (double)(1ULL << 53);
}

static int dir_fault(struct store_dir *d, const char *op, const char *key)
{
	if (d->fault_delay_ms > 0) {
		struct timespec ts = {d->fault_delay_ms / 1000, (d->fault_delay_ms % 1000) * 1000000L};

		nanosleep(&ts, NULL);
	}
	if (d->fault_eio > 0 && dir_random() < d->fault_eio) {
		log_debug("dir store: injected EIO on %s '%s'", op, key);
		store_set_error(EIO, 503, "SlowDown", "injected fault");
		return EIO;
	}
	if (d->fault_timeout > 0 && dir_random() < d->fault_timeout) {
		log_debug("dir store: injected ETIMEDOUT on %s '%s'", op, key);
		store_set_error(ETIMEDOUT, 0, "", "injected timeout");
		return ETIMEDOUT;
	}
	return 0;
}

static int dir_fail(int err, const char *what, const char *key)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s '%s': %s", what, key, strerror(err));
	store_set_error(err, 0, "", msg);
	return err;
}

/* ---- keys and paths ---- */

/* A key the directory can hold: relative, no empty/"."/".." component, components of at most
 * NAME_MAX bytes, not under the reserved directory. A trailing '/' (marker) is allowed. */
static bool dir_key_ok(const char *key)
{
	const char *p = key;

	if (!*key || *key == '/')
		return false;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);

		if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (p == key && n == sizeof(DIR_RESERVED) - 1 && !memcmp(p, DIR_RESERVED, n))
			return false;
		if (!slash)
			break;
		p = slash + 1;
	}
	return true;
}

static bool dir_key_is_marker(const char *key)
{
	size_t n = strlen(key);
	return n && key[n - 1] == '/';
}

/* ROOT/key without a trailing '/'. ENAMETOOLONG when it does not fit. */
static int dir_path(struct store_dir *d, const char *key, char *out)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", d->root, key);

	if (n < 0 || n >= PATH_MAX)
		return ENAMETOOLONG;
	if (n > 0 && out[n - 1] == '/' && (size_t)n > strlen(d->root) + 1)
		out[n - 1] = '\0';
	return 0;
}

static int dir_mkdirs(const char *path, size_t keep)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + keep + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return errno;
	return 0;
}

/* ---- metadata in xattrs ---- */

static void dir_format_time(const struct timespec *ts, char *out, size_t len)
{
	if (ts->tv_nsec)
		snprintf(out, len, "%lld.%09ld", (long long)ts->tv_sec, ts->tv_nsec);
	else
		snprintf(out, len, "%lld", (long long)ts->tv_sec);
}

static bool dir_parse_time(const char *s, struct timespec *ts)
{
	char *end;
	long long sec = strtoll(s, &end, 10);
	long nsec = 0;

	if (end == s)
		return false;
	if (*end == '.') {
		const char *f = end + 1;
		int digits = 0;

		for (; *f >= '0' && *f <= '9' && digits < 9; f++, digits++)
			nsec = nsec * 10 + (*f - '0');
		for (; digits < 9; digits++)
			nsec *= 10;
	}
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return true;
}

static int dir_setxa(int fd, const char *name, const char *value)
{
	if (fsetxattr(fd, name, value, strlen(value), 0))
		return errno;
	return 0;
}

/* Write attr's metadata (and etag) as xattrs on fd. */
static int dir_write_meta(int fd, const struct store_attr *attr, const char *etag, bool marker)
{
	char buf[64], name[XATTR_NAME_MAX + 1];
	int rv = 0;

	if (attr && (attr->has & STORE_HAS_MODE)) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)attr->mode);
		rv = rv ? rv : dir_setxa(fd, DIR_XA "mode", buf);
	}
	if (attr && (attr->has & STORE_HAS_UID)) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)attr->uid);
		rv = rv ? rv : dir_setxa(fd, DIR_XA "uid", buf);
	}
	if (attr && (attr->has & STORE_HAS_GID)) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)attr->gid);
		rv = rv ? rv : dir_setxa(fd, DIR_XA "gid", buf);
	}
	if (attr && (attr->has & STORE_HAS_MTIME)) {
		dir_format_time(&attr->mtime, buf, sizeof(buf));
		rv = rv ? rv : dir_setxa(fd, DIR_XA "mtime", buf);
	}
	if (attr && (attr->has & STORE_HAS_CTIME)) {
		dir_format_time(&attr->ctime, buf, sizeof(buf));
		rv = rv ? rv : dir_setxa(fd, DIR_XA "ctime", buf);
	}
	if (attr && (attr->has & STORE_HAS_ATIME)) {
		dir_format_time(&attr->atime, buf, sizeof(buf));
		rv = rv ? rv : dir_setxa(fd, DIR_XA "atime", buf);
	}
	if (attr && attr->content_type[0])
		rv = rv ? rv : dir_setxa(fd, DIR_XA "ctype", attr->content_type);
	for (size_t i = 0; attr && i < attr->n_extra && !rv; i++) {
		snprintf(name, sizeof(name), DIR_XA_EXTRA "%s", attr->extra[i].name);
		rv = dir_setxa(fd, name, attr->extra[i].value);
	}
	if (!rv && etag)
		rv = dir_setxa(fd, DIR_XA "etag", etag);
	if (!rv && marker)
		rv = dir_setxa(fd, DIR_XA "marker", "1");
	return rv;
}

static bool dir_getxa(int fd, const char *name, char *out, size_t len)
{
	ssize_t n = fgetxattr(fd, name, out, len - 1);

	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

static int dir_add_extra(struct store_attr *a, const char *name, const char *value)
{
	struct store_kv *kv = realloc(a->extra, (a->n_extra + 1) * sizeof(*kv));

	if (!kv)
		return ENOMEM;
	a->extra = kv;
	kv[a->n_extra].name = strdup(name);
	kv[a->n_extra].value = strdup(value);
	if (!kv[a->n_extra].name || !kv[a->n_extra].value) {
		free(kv[a->n_extra].name);
		free(kv[a->n_extra].value);
		return ENOMEM;
	}
	a->n_extra++;
	return 0;
}

/* Attributes of the open file/dir fd (st from fstat). with_meta: the user metadata too (HEAD),
 * else only what a listing shows. */
static int dir_read_attr(int fd, const struct stat *st, bool is_dir, bool with_meta,
			 struct store_attr *a)
{
	char buf[1024], names[8192];

	store_attr_init(a);
	a->is_dir = is_dir;
	a->size = is_dir ? 0 : (uint64_t)st->st_size;
	a->mtime = st->st_mtim;
	a->ctime = st->st_mtim;
	a->atime = st->st_mtim;
	if (!dir_getxa(fd, DIR_XA "etag", a->etag, sizeof(a->etag))) {
		if (is_dir)
			snprintf(a->etag, sizeof(a->etag), DIR_EMPTY_MD5);
		else /* placed out of band: a version stamp that changes with the content */
			snprintf(a->etag, sizeof(a->etag), "%" PRIx64 "-%" PRIx64 "-%" PRIx64,
				 (uint64_t)st->st_ino, (uint64_t)st->st_size,
				 (uint64_t)(st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec));
	}
	if (!with_meta)
		return 0;
	if (!dir_getxa(fd, DIR_XA "ctype", a->content_type, sizeof(a->content_type)))
		snprintf(a->content_type, sizeof(a->content_type), "%s",
			 is_dir ? "application/x-directory" : "application/octet-stream");
	if (dir_getxa(fd, DIR_XA "mode", buf, sizeof(buf))) {
		a->mode = (mode_t)strtoul(buf, NULL, 10);
		a->has |= STORE_HAS_MODE;
	}
	if (dir_getxa(fd, DIR_XA "uid", buf, sizeof(buf))) {
		a->uid = (uid_t)strtoul(buf, NULL, 10);
		a->has |= STORE_HAS_UID;
	}
	if (dir_getxa(fd, DIR_XA "gid", buf, sizeof(buf))) {
		a->gid = (gid_t)strtoul(buf, NULL, 10);
		a->has |= STORE_HAS_GID;
	}
	if (dir_getxa(fd, DIR_XA "mtime", buf, sizeof(buf)) && dir_parse_time(buf, &a->mtime))
		a->has |= STORE_HAS_MTIME;
	if (dir_getxa(fd, DIR_XA "ctime", buf, sizeof(buf)) && dir_parse_time(buf, &a->ctime))
		a->has |= STORE_HAS_CTIME;
	if (dir_getxa(fd, DIR_XA "atime", buf, sizeof(buf)) && dir_parse_time(buf, &a->atime))
		a->has |= STORE_HAS_ATIME;
	ssize_t n = flistxattr(fd, names, sizeof(names));
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
		const char *nm = names + i;

		if (strncmp(nm, DIR_XA_EXTRA, sizeof(DIR_XA_EXTRA) - 1) != 0)
			continue;
		if (!dir_getxa(fd, nm, buf, sizeof(buf)))
			continue;
		if (dir_add_extra(a, nm + sizeof(DIR_XA_EXTRA) - 1, buf)) {
			store_attr_free(a);
			return ENOMEM;
		}
	}
	return 0;
}

static bool dir_fd_is_marker(int fd)
{
	char buf[8];
	return dir_getxa(fd, DIR_XA "marker", buf, sizeof(buf));
}

/* Open the object key: a regular file, or a marker directory for "x/". ENOENT otherwise. */
static int dir_open_object(struct store_dir *d, const char *key, int *fd_out, struct stat *st)
{
	char path[PATH_MAX];
	bool marker = dir_key_is_marker(key);
	int fd, rv;

	if (!dir_key_ok(key))
		return ENOENT;
	rv = dir_path(d, key, path);
	if (rv)
		return rv;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (marker ? O_DIRECTORY : 0));
	if (fd < 0)
		return (errno == ENOTDIR || errno == ELOOP || errno == EISDIR) ? ENOENT : errno;
	if (fstat(fd, st)) {
		rv = errno;
		close(fd);
		return rv;
	}
	if ((marker && !dir_fd_is_marker(fd)) || (!marker && !S_ISREG(st->st_mode))) {
		close(fd);
		return ENOENT;
	}
	*fd_out = fd;
	return 0;
}

/* ---- operations ---- */

static int dir_head(struct store *st, const char *key, const struct store_io *io,
		    struct store_attr *out)
{
	struct store_dir *d = dir_of(st);
	struct stat sb;
	int fd, rv;

	rv = dir_fault(d, "head", key);
	if (rv)
		return rv;
	rv = dir_open_object(d, key, &fd, &sb);
	if (rv)
		return dir_fail(rv, "head", key);
	rv = dir_read_attr(fd, &sb, dir_key_is_marker(key), true, out);
	close(fd);
	return rv;
}

static int dir_copy_range(int in, off_t in_off, int out, off_t out_off, uint64_t len,
			  const volatile int *cancel, uint64_t *got, struct crypto_md5_ctx *md5)
{
	char *buf = malloc(1 << 20);
	int rv = 0;

	if (!buf)
		return ENOMEM;
	*got = 0;
	while (*got < len) {
		size_t want = len - *got < (1 << 20) ? (size_t)(len - *got) : (1 << 20);
		ssize_t n = pread(in, buf, want, in_off + (off_t)*got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = errno;
			break;
		}
		if (n == 0)
			break;
		if (cancel && *cancel) {
			rv = ECANCELED;
			break;
		}
		for (ssize_t w = 0; w < n;) {
			ssize_t m = pwrite(out, buf + w, (size_t)(n - w), out_off + (off_t)*got + w);
			if (m < 0 && errno == EINTR)
				continue;
			if (m < 0) {
				rv = errno;
				goto out;
			}
			w += m;
		}
		if (md5)
			crypto_md5_update(md5, buf, (size_t)n);
		*got += (uint64_t)n;
	}
out:
	free(buf);
	return rv;
}

/* Read len bytes of in at in_off into iov, 1 MiB at a time (cancel is polled between). */
static int dir_read_iov(int in, off_t in_off, uint64_t len, const struct iovec *iov, int iovcnt,
			const volatile int *cancel, uint64_t *got)
{
	size_t used = 0; /* of iov[0] */

	*got = 0;
	while (*got < len && iovcnt > 0) {
		size_t want = iov->iov_len - used;
		ssize_t n;

		if (want > len - *got)
			want = (size_t)(len - *got);
		if (want > (1 << 20))
			want = 1 << 20;
		if (cancel && *cancel)
			return ECANCELED;
		n = pread(in, (char *)iov->iov_base + used, want, in_off + (off_t)*got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			break;
		*got += (uint64_t)n;
		used += (size_t)n;
		if (used == iov->iov_len) {
			iov++;
			iovcnt--;
			used = 0;
		}
	}
	return 0;
}

/* Into fd at fd_off (fd >= 0), else into iov (at most its total length). */
static int dir_get_any(struct store *st, const char *key, uint64_t off, uint64_t len,
		       const char *if_etag, const struct store_io *io, int fd, off_t fd_off,
		       const struct iovec *iov, int iovcnt, uint64_t *got)
{
	struct store_dir *d = dir_of(st);
	struct store_attr a;
	struct stat sb;
	int in, rv;

	*got = 0;
	rv = dir_fault(d, "get", key);
	if (rv)
		return rv;
	if (dir_key_is_marker(key))
		return dir_head(st, key, io, &a) ? ENOENT : (store_attr_free(&a), 0);
	rv = dir_open_object(d, key, &in, &sb);
	if (rv)
		return dir_fail(rv, "get", key);
	if (if_etag && if_etag[0]) {
		rv = dir_read_attr(in, &sb, false, false, &a);
		if (!rv && strcmp(a.etag, if_etag) != 0) {
			store_set_error(ESTALE, 412, "PreconditionFailed", "object changed");
			rv = ESTALE;
		}
		store_attr_free(&a);
		if (rv)
			goto out;
	}
	if (off >= (uint64_t)sb.st_size)
		goto out;
	if (len > (uint64_t)sb.st_size - off)
		len = (uint64_t)sb.st_size - off;
	if (fd >= 0)
		rv = dir_copy_range(in, (off_t)off, fd, fd_off, len, io ? io->cancel : NULL, got,
				    NULL);
	else
		rv = dir_read_iov(in, (off_t)off, len, iov, iovcnt, io ? io->cancel : NULL, got);
	if (rv)
		dir_fail(rv, "get", key);
out:
	close(in);
	return rv;
}

static int dir_get(struct store *st, const char *key, uint64_t off, uint64_t len,
		   const char *if_etag, const struct store_io *io, int fd, off_t fd_off, uint64_t *got)
{
	return dir_get_any(st, key, off, len, if_etag, io, fd, fd_off, NULL, 0, got);
}

static int dir_get_iov(struct store *st, const char *key, uint64_t off, const char *if_etag,
		       const struct store_io *io, const struct iovec *iov, int iovcnt,
		       uint64_t *got)
{
	return dir_get_any(st, key, off, store_iov_len(iov, iovcnt), if_etag, io, -1, 0, iov, iovcnt,
			   got);
}

/* ---- listing ---- */

struct dir_listing {
	struct store_entry *v;
	size_t n, cap;
};

static int dir_listing_add(struct dir_listing *l, const char *key, bool is_prefix, int fd,
			   const struct stat *sb, bool is_dir)
{
	struct store_entry *e;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		e = realloc(l->v, cap * sizeof(*e));
		if (!e)
			return ENOMEM;
		l->v = e;
		l->cap = cap;
	}
	e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	e->key = strdup(key);
	if (!e->key)
		return ENOMEM;
	e->is_prefix = is_prefix;
	store_attr_init(&e->attr);
	if (!is_prefix && dir_read_attr(fd, sb, is_dir, false, &e->attr)) {
		free(e->key);
		return ENOMEM;
	}
	if (is_prefix)
		e->attr.is_dir = true;
	l->n++;
	return 0;
}

static bool dir_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* True when the directory at path holds an object (a marker or a file) at any depth. */
static bool dir_has_objects(const char *path, int depth)
{
	DIR *dh;
	struct dirent *de;
	bool found = false;

	if (depth > 64 || !(dh = opendir(path)))
		return false;
	if (dir_fd_is_marker(dirfd(dh))) {
		closedir(dh);
		return true;
	}
	while (!found && (de = readdir(dh))) {
		char sub[PATH_MAX];
		struct stat sb;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
			continue;
		if (lstat(sub, &sb))
			continue;
		if (S_ISREG(sb.st_mode))
			found = true;
		else if (S_ISDIR(sb.st_mode))
			found = dir_has_objects(sub, depth + 1);
	}
	closedir(dh);
	return found;
}

/* Collect the entries of directory dirkey ("" or "a/b/") matching prefix; recursive without
 * a delimiter. */
static int dir_collect(struct store_dir *d, const char *dirkey, const char *prefix, bool delim,
		       struct dir_listing *l, int depth)
{
	char path[PATH_MAX], key[PATH_MAX];
	DIR *dh;
	struct dirent *de;
	int rv = 0;

	if (depth > 256)
		return 0;
	if (snprintf(path, sizeof(path), "%s/%s", d->root, dirkey) >= (int)sizeof(path))
		return 0;
	dh = opendir(path);
	if (!dh)
		return (errno == ENOENT || errno == ENOTDIR) ? 0 : errno;
	while (!rv && (de = readdir(dh))) {
		struct stat sb;
		int fd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!dirkey[0] && !strcmp(de->d_name, DIR_RESERVED))
			continue;
		if (snprintf(key, sizeof(key), "%s%s", dirkey, de->d_name) >= (int)sizeof(key) - 1)
			continue;
		if (fstatat(dirfd(dh), de->d_name, &sb, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISREG(sb.st_mode)) {
			if (!dir_starts_with(key, prefix))
				continue;
			fd = openat(dirfd(dh), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				continue;
			rv = dir_listing_add(l, key, false, fd, &sb, false);
			close(fd);
			continue;
		}
		if (!S_ISDIR(sb.st_mode))
			continue;
		strcat(key, "/");
		if (!dir_starts_with(key, prefix) && !dir_starts_with(prefix, key))
			continue;
		if (delim && dir_starts_with(key, prefix)) {
			/* everything below folds into the common prefix key */
			char sub[PATH_MAX];

			if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) < (int)sizeof(sub) &&
			    dir_has_objects(sub, 0))
				rv = dir_listing_add(l, key, true, -1, NULL, true);
			continue;
		}
		fd = openat(dirfd(dh), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (dir_starts_with(key, prefix) && dir_fd_is_marker(fd))
			rv = dir_listing_add(l, key, false, fd, &sb, true);
		close(fd);
		if (!rv)
			rv = dir_collect(d, key, prefix, delim, l, depth + 1);
	}
	closedir(dh);
	return rv;
}

static int dir_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_entry *)a)->key, ((const struct store_entry *)b)->key);
}

static int dir_list(struct store *st, const char *prefix, const char *delimiter, const char *token,
		    unsigned max_keys, const struct store_io *io, struct store_list *out)
{
	struct store_dir *d = dir_of(st);
	struct dir_listing l = {0};
	char dirkey[PATH_MAX];
	const char *slash;
	size_t first = 0, n;
	int rv;

	memset(out, 0, sizeof(*out));
	if (!prefix)
		prefix = "";
	rv = dir_fault(d, "list", prefix);
	if (rv)
		return rv;
	if (delimiter && strcmp(delimiter, "/") != 0)
		return dir_fail(EINVAL, "list (only '/' is supported as delimiter)", prefix);
	if (max_keys == 0 || max_keys > 1000)
		max_keys = 1000;
	slash = strrchr(prefix, '/');
	n = slash ? (size_t)(slash - prefix) + 1 : 0;
	if (n >= sizeof(dirkey))
		return 0;
	memcpy(dirkey, prefix, n);
	dirkey[n] = '\0';
	if (n && !dir_key_ok(dirkey))
		return 0; /* nothing can exist under an impossible path */
	/* the marker of the listed directory itself ("a/" when prefix is "a/") */
	if (n && !strcmp(dirkey, prefix)) {
		struct stat sb;
		int fd;

		if (!dir_open_object(d, dirkey, &fd, &sb)) {
			rv = dir_listing_add(&l, dirkey, false, fd, &sb, true);
			close(fd);
		}
	}
	if (!rv)
		rv = dir_collect(d, dirkey, prefix, delimiter != NULL, &l, 0);
	if (rv) {
		dir_fail(rv, "list", prefix);
		goto fail;
	}
	if (l.n > 1)
		qsort(l.v, l.n, sizeof(*l.v), dir_entry_cmp);
	if (token && token[0])
		while (first < l.n && strcmp(l.v[first].key, token) <= 0)
			first++;
	n = l.n - first < max_keys ? l.n - first : max_keys;
	out->entries = calloc(n ? n : 1, sizeof(*out->entries));
	if (!out->entries) {
		rv = ENOMEM;
		goto fail;
	}
	if (n)
		memcpy(out->entries, l.v + first, n * sizeof(*out->entries));
	out->n_entries = n;
	if (first + n < l.n) {
		out->next_token = strdup(out->entries[n - 1].key);
		if (!out->next_token) {
			rv = ENOMEM;
			/* entries now owned by out */
			for (size_t i = first; i < first + n; i++)
				l.v[i].key = NULL, l.v[i].attr.extra = NULL, l.v[i].attr.n_extra = 0;
			store_list_free(out);
			goto fail;
		}
	}
	for (size_t i = first; i < first + n; i++)
		l.v[i].key = NULL, l.v[i].attr.extra = NULL, l.v[i].attr.n_extra = 0;
	rv = 0;
fail:
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].key);
		store_attr_free(&l.v[i].attr);
	}
	free(l.v);
	return rv;
}

/* ---- writes ---- */

/* A new temporary file under ROOT/.objfs-store/tmp; path gets its name. */
static int dir_tmpfile(struct store_dir *d, char *path)
{
	char dir[PATH_MAX];
	int fd, rv;

	snprintf(dir, sizeof(dir), "%s/" DIR_RESERVED "/tmp", d->root);
	rv = dir_mkdirs(dir, strlen(d->root));
	if (rv)
		return rv;
	if (snprintf(path, PATH_MAX, "%s/%d.%" PRIu64, dir, (int)getpid(),
		     (uint64_t)atomic_fetch_add(&d->seq, 1)) >= PATH_MAX)
		return -ENAMETOOLONG;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	return fd;
}

/* Create the parent directories of key's path. */
static int dir_make_parents(struct store_dir *d, const char *path)
{
	char parent[PATH_MAX];
	char *slash;

	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	if (!slash || (size_t)(slash - parent) <= strlen(d->root))
		return 0;
	*slash = '\0';
	return dir_mkdirs(parent, strlen(d->root));
}

/* Remove emptied implicit directories from path's parent up to the root. */
static void dir_prune(struct store_dir *d, const char *path)
{
	char p[PATH_MAX];
	size_t rootlen = strlen(d->root);
	char *slash;

	snprintf(p, sizeof(p), "%s", path);
	while ((slash = strrchr(p, '/')) && (size_t)(slash - p) > rootlen) {
		int fd;
		bool marker;

		*slash = '\0';
		fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return;
		marker = dir_fd_is_marker(fd);
		close(fd);
		if (marker || rmdir(p))
			return;
	}
}

/* Put a marker "x/": the directory with marker xattr and metadata. */
static int dir_put_marker(struct store_dir *d, const char *key, const struct store_attr *attr)
{
	char path[PATH_MAX], names[4096];
	int fd, rv;

	rv = dir_path(d, key, path);
	if (rv)
		return rv;
	rv = dir_mkdirs(path, strlen(d->root));
	if (rv)
		return rv == EEXIST || rv == ENOTDIR ? EEXIST : rv;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR ? EEXIST : errno;
	/* a new version replaces all old metadata */
	ssize_t n = flistxattr(fd, names, sizeof(names));
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1)
		if (!strncmp(names + i, DIR_XA, sizeof(DIR_XA) - 1))
			fremovexattr(fd, names + i);
	rv = dir_write_meta(fd, attr, DIR_EMPTY_MD5, true);
	close(fd);
	return rv;
}

/* Move the finished temporary file tmp into place as key. */
static int dir_install(struct store_dir *d, const char *tmp, const char *key)
{
	char path[PATH_MAX];
	struct stat sb;
	int rv;

	rv = dir_path(d, key, path);
	if (rv)
		return rv;
	rv = dir_make_parents(d, path);
	if (rv)
		return rv == ENOTDIR || rv == EEXIST ? EEXIST : rv;
	if (!lstat(path, &sb) && S_ISDIR(sb.st_mode))
		return EEXIST; /* "a" cannot be a file while "a/" holds objects here */
	if (rename(tmp, path))
		return errno == EISDIR || errno == ENOTDIR ? EEXIST : errno;
	return 0;
}

static int dir_put(struct store *st, const char *key, const struct store_body *body,
		   const struct store_attr *attr, const struct store_io *io, char *etag_out)
{
	struct store_dir *d = dir_of(st);
	char tmp[PATH_MAX], etag[80];
	unsigned char md5[CRYPTO_MD5_LEN];
	struct crypto_md5_ctx *ctx = NULL;
	uint64_t got = 0;
	int fd = -1, rv;

	rv = dir_fault(d, "put", key);
	if (rv)
		return rv;
	if (!dir_key_ok(key))
		return dir_fail(EINVAL, "put (not a possible path)", key);
	if (dir_key_is_marker(key)) {
		if (body && body->len)
			return dir_fail(EINVAL, "put (a directory marker must be empty)", key);
		rv = dir_put_marker(d, key, attr);
		if (rv)
			return dir_fail(rv, "put", key);
		if (etag_out)
			snprintf(etag_out, 80, DIR_EMPTY_MD5);
		return 0;
	}
	fd = dir_tmpfile(d, tmp);
	if (fd < 0)
		return dir_fail(-fd, "put (temporary file)", key);
	ctx = crypto_md5_create();
	if (!ctx) {
		rv = ENOMEM;
		goto fail;
	}
	if (body && body->mem) {
		for (uint64_t w = 0; w < body->len;) {
			ssize_t m = pwrite(fd, (const char *)body->mem + w, body->len - w, (off_t)w);
			if (m < 0 && errno == EINTR)
				continue;
			if (m < 0) {
				rv = errno;
				goto fail;
			}
			w += (uint64_t)m;
		}
		crypto_md5_update(ctx, body->mem, body->len);
		got = body->len;
	} else if (body && body->len) {
		rv = dir_copy_range(body->fd, body->off, fd, 0, body->len, io ? io->cancel : NULL,
				    &got, ctx);
		if (rv)
			goto fail;
	}
	if (body && got != body->len) {
		rv = EIO; /* the source file is shorter than promised */
		goto fail;
	}
	crypto_md5_final(ctx, md5);
	if (body && body->md5 && memcmp(body->md5, md5, sizeof(md5)) != 0) {
		store_set_error(EBADMSG, 400, "BadDigest", "Content-MD5 does not match");
		rv = EBADMSG;
		goto fail_quiet;
	}
	crypto_hex(md5, sizeof(md5), etag);
	rv = dir_write_meta(fd, attr, etag, false);
	if (rv)
		goto fail;
	rv = dir_install(d, tmp, key);
	if (rv)
		goto fail;
	if (etag_out)
		snprintf(etag_out, 80, "%s", etag);
	crypto_md5_destroy(ctx);
	close(fd);
	return 0;
fail:
	dir_fail(rv, "put", key);
fail_quiet:
	crypto_md5_destroy(ctx);
	close(fd);
	unlink(tmp);
	return rv;
}

static int dir_copy(struct store *st, const char *src_key, const char *dst_key,
		    const struct store_attr *attr, const struct store_io *io)
{
	struct store_dir *d = dir_of(st);
	struct store_attr old;
	struct store_body body = {0};
	struct stat sb;
	int fd, rv;

	rv = dir_fault(d, "copy", src_key);
	if (rv)
		return rv;
	rv = dir_open_object(d, src_key, &fd, &sb);
	if (rv)
		return dir_fail(rv, "copy", src_key);
	rv = dir_read_attr(fd, &sb, dir_key_is_marker(src_key), true, &old);
	if (rv)
		goto out;
	body.fd = fd;
	body.len = dir_key_is_marker(src_key) ? 0 : (uint64_t)sb.st_size;
	if (dir_key_is_marker(dst_key) != dir_key_is_marker(src_key))
		rv = dir_fail(EINVAL, "copy (object to marker)", dst_key);
	else
		rv = dir_put(st, dst_key, &body, attr ? attr : &old, io, NULL);
	store_attr_free(&old);
out:
	close(fd);
	return rv;
}

static int dir_remove(struct store *st, const char *key, const struct store_io *io)
{
	struct store_dir *d = dir_of(st);
	char path[PATH_MAX];
	struct stat sb;
	int fd, rv;

	rv = dir_fault(d, "remove", key);
	if (rv)
		return rv;
	rv = dir_open_object(d, key, &fd, &sb);
	if (rv == ENOENT)
		return 0;
	if (rv)
		return dir_fail(rv, "remove", key);
	dir_path(d, key, path);
	if (dir_key_is_marker(key)) {
		fremovexattr(fd, DIR_XA "marker");
		close(fd);
		rmdir(path); /* fails while objects remain below: it stays an implicit prefix */
	} else {
		close(fd);
		if (unlink(path) && errno != ENOENT)
			return dir_fail(errno, "remove", key);
	}
	dir_prune(d, path);
	return 0;
}

/* ---- multipart: ROOT/.objfs-store/mpu/<id>/ holds "key", the metadata xattrs and parts ---- */

static int dir_mpu_dir(struct store_dir *d, const char *upload_id, char *out)
{
	for (const char *p = upload_id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.'))
			return ENOENT;
	snprintf(out, PATH_MAX, "%s/" DIR_RESERVED "/mpu/%s", d->root, upload_id);
	return 0;
}

static int dir_mpu_create(struct store *st, const char *key, const struct store_attr *attr,
			  const struct store_io *io, char **upload_id)
{
	struct store_dir *d = dir_of(st);
	char id[64], path[PATH_MAX];
	int fd, rv;

	rv = dir_fault(d, "mpu_create", key);
	if (rv)
		return rv;
	if (!dir_key_ok(key) || dir_key_is_marker(key))
		return dir_fail(EINVAL, "multipart upload (not a possible path)", key);
	snprintf(id, sizeof(id), "%d.%" PRIu64, (int)getpid(), (uint64_t)atomic_fetch_add(&d->seq, 1));
	dir_mpu_dir(d, id, path);
	rv = dir_mkdirs(path, strlen(d->root));
	if (rv)
		return dir_fail(rv, "multipart upload", key);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return dir_fail(errno, "multipart upload", key);
	rv = dir_write_meta(fd, attr, NULL, false);
	if (!rv)
		rv = dir_setxa(fd, DIR_XA "key", key);
	close(fd);
	if (rv)
		return dir_fail(rv, "multipart upload", key);
	*upload_id = strdup(id);
	return *upload_id ? 0 : ENOMEM;
}

static int dir_mpu_part(struct store *st, const char *key, const char *upload_id, int number,
			const struct store_body *body, const struct store_io *io, char *etag_out)
{
	struct store_dir *d = dir_of(st);
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct stat sb;
	int rv;

	rv = dir_fault(d, "mpu_part", key);
	if (rv)
		return rv;
	if (number < 1 || number > 10000)
		return dir_fail(EINVAL, "upload part (number out of range)", key);
	if (dir_mpu_dir(d, upload_id, dir) || stat(dir, &sb))
		return dir_fail(ENOENT, "upload part (no such upload)", key);
	char etag[80];

	/* parts are written like objects: a temporary file renamed into place */
	char tmp[PATH_MAX];
	int fd = dir_tmpfile(d, tmp);
	uint64_t got = 0;
	unsigned char md5[CRYPTO_MD5_LEN];
	struct crypto_md5_ctx *ctx = crypto_md5_create();

	if (fd < 0 || !ctx) {
		rv = fd < 0 ? -fd : ENOMEM;
		goto out;
	}
	if (body->mem) {
		if (pwrite(fd, body->mem, body->len, 0) != (ssize_t)body->len) {
			rv = EIO;
			goto out;
		}
		crypto_md5_update(ctx, body->mem, body->len);
		got = body->len;
	} else {
		rv = dir_copy_range(body->fd, body->off, fd, 0, body->len, io ? io->cancel : NULL,
				    &got, ctx);
		if (rv)
			goto out;
	}
	if (got != body->len) {
		rv = EIO;
		goto out;
	}
	crypto_md5_final(ctx, md5);
	crypto_hex(md5, sizeof(md5), etag);
	snprintf(path, sizeof(path), "%s/part.%05d", dir, number);
	if (rename(tmp, path)) {
		rv = errno;
		goto out;
	}
	if (etag_out)
		snprintf(etag_out, 80, "%s", etag);
out:
	if (rv && fd >= 0)
		unlink(tmp);
	if (fd >= 0)
		close(fd);
	crypto_md5_destroy(ctx);
	return rv ? dir_fail(rv, "upload part", key) : 0;
}

static void dir_rmtree_flat(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *de;

	if (dh) {
		while ((de = readdir(dh)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dirfd(dh), de->d_name, 0);
		closedir(dh);
	}
	rmdir(dir);
}

static int dir_mpu_complete(struct store *st, const char *key, const char *upload_id,
			    const struct store_part *parts, size_t n, const struct store_io *io,
			    char *etag_out)
{
	struct store_dir *d = dir_of(st);
	char dir[PATH_MAX], path[PATH_MAX + 16], tmp[PATH_MAX], etag[80], pe[80];
	unsigned char md5[CRYPTO_MD5_LEN];
	struct crypto_md5_ctx *all = NULL;
	struct store_attr attr;
	struct stat sb;
	uint64_t total = 0;
	int fd = -1, dfd = -1, rv;

	store_attr_init(&attr);
	rv = dir_fault(d, "mpu_complete", key);
	if (rv)
		return rv;
	if (dir_mpu_dir(d, upload_id, dir) || stat(dir, &sb))
		return dir_fail(ENOENT, "complete upload (no such upload)", key);
	if (n == 0)
		return dir_fail(EINVAL, "complete upload (no parts)", key);
	fd = dir_tmpfile(d, tmp);
	all = crypto_md5_create();
	if (fd < 0 || !all) {
		rv = fd < 0 ? -fd : ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int pfd;
		uint64_t got;
		struct crypto_md5_ctx *one = crypto_md5_create();

		if (!one) {
			rv = ENOMEM;
			goto out;
		}
		if (i && parts[i].number <= parts[i - 1].number) {
			crypto_md5_destroy(one);
			rv = EINVAL;
			goto out;
		}
		snprintf(path, sizeof(path), "%s/part.%05d", dir, parts[i].number);
		pfd = open(path, O_RDONLY | O_CLOEXEC);
		if (pfd < 0 || fstat(pfd, &sb)) {
			crypto_md5_destroy(one);
			if (pfd >= 0)
				close(pfd);
			rv = EINVAL; /* InvalidPart */
			goto out;
		}
		rv = dir_copy_range(pfd, 0, fd, (off_t)total, (uint64_t)sb.st_size,
				    io ? io->cancel : NULL, &got, one);
		close(pfd);
		crypto_md5_final(one, md5);
		crypto_md5_destroy(one);
		if (rv)
			goto out;
		crypto_hex(md5, sizeof(md5), pe);
		if (parts[i].etag[0] && strcmp(parts[i].etag, pe) != 0) {
			rv = EINVAL;
			goto out;
		}
		crypto_md5_update(all, md5, sizeof(md5));
		total += got;
	}
	crypto_md5_final(all, md5);
	crypto_hex(md5, sizeof(md5), etag);
	snprintf(etag + strlen(etag), sizeof(etag) - strlen(etag), "-%zu", n);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &sb)) {
		rv = EIO;
		goto out;
	}
	rv = dir_read_attr(dfd, &sb, false, true, &attr);
	if (rv)
		goto out;
	rv = dir_write_meta(fd, &attr, etag, false);
	if (!rv)
		rv = dir_install(d, tmp, key);
	if (rv)
		goto out;
	dir_rmtree_flat(dir);
	if (etag_out)
		snprintf(etag_out, 80, "%s", etag);
out:
	store_attr_free(&attr);
	if (dfd >= 0)
		close(dfd);
	if (fd >= 0)
		close(fd);
	if (rv && fd >= 0)
		unlink(tmp);
	crypto_md5_destroy(all);
	return rv ? dir_fail(rv, "complete upload", key) : 0;
}

static int dir_mpu_abort(struct store *st, const char *key, const char *upload_id,
			 const struct store_io *io)
{
	struct store_dir *d = dir_of(st);
	char dir[PATH_MAX];
	int rv;

	rv = dir_fault(d, "mpu_abort", key);
	if (rv)
		return rv;
	if (!dir_mpu_dir(d, upload_id, dir))
		dir_rmtree_flat(dir);
	return 0;
}

static int dir_check(struct store *st, char *err, size_t errlen)
{
	struct store_dir *d = dir_of(st);
	struct stat sb;

	if (stat(d->root, &sb)) {
		snprintf(err, errlen, "source directory '%s': %s", d->root, strerror(errno));
		return errno;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "source '%s' is not a directory", d->root);
		return ENOTDIR;
	}
	if (access(d->root, R_OK | X_OK)) {
		snprintf(err, errlen, "source directory '%s' is not readable: %s", d->root,
			 strerror(errno));
		return EACCES;
	}
	return 0;
}

static void dir_destroy(struct store *st)
{
	struct store_dir *d = dir_of(st);

	free(d->root);
	free(d);
}

static const struct store_ops dir_ops = {
	.kind = "dir",
	.head = dir_head,
	.get = dir_get,
	.get_iov = dir_get_iov,
	.list = dir_list,
	.put = dir_put,
	.copy = dir_copy,
	.remove = dir_remove,
	.mpu_create = dir_mpu_create,
	.mpu_part = dir_mpu_part,
	.mpu_complete = dir_mpu_complete,
	.mpu_abort = dir_mpu_abort,
	.check = dir_check,
	.destroy = dir_destroy,
};

/* "eio=0.1,etimedout=0.05,delay_ms=5" */
static int dir_parse_faults(struct store_dir *d, const char *spec, char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL, *tok;
	int rv = 0;

	if (!copy)
		return ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !rv; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *end;

		if (!eq) {
			rv = EINVAL;
			break;
		}
		*eq++ = '\0';
		if (!strcmp(tok, "eio"))
			d->fault_eio = strtod(eq, &end);
		else if (!strcmp(tok, "etimedout"))
			d->fault_timeout = strtod(eq, &end);
		else if (!strcmp(tok, "delay_ms"))
			d->fault_delay_ms = strtol(eq, &end, 10);
		else
			end = eq, rv = EINVAL;
		if (!rv && (end == eq || *end))
			rv = EINVAL;
	}
	if (rv)
		snprintf(err, errlen,
			 "OBJFS_DIR_FAULTS='%s' is not like 'eio=0.1,etimedout=0.05,delay_ms=5'", spec);
	free(copy);
	return rv;
}

struct store *store_dir_create(const char *root, char *err, size_t errlen)
{
	struct store_dir *d = calloc(1, sizeof(*d));
	const char *faults = getenv("OBJFS_DIR_FAULTS");
	size_t n;

	if (!d || !(d->root = strdup(root))) {
		snprintf(err, errlen, "out of memory");
		free(d);
		return NULL;
	}
	n = strlen(d->root);
	while (n > 1 && d->root[n - 1] == '/')
		d->root[--n] = '\0';
	d->base.ops = &dir_ops;
	if (d->root[0] != '/') {
		snprintf(err, errlen, "directory store '%s' must be an absolute path", root);
		goto fail;
	}
	if (faults && faults[0] && dir_parse_faults(d, faults, err, errlen))
		goto fail;
	if (d->fault_eio > 0 || d->fault_timeout > 0 || d->fault_delay_ms > 0)
		log_warn("dir store '%s': fault injection on (eio=%g etimedout=%g delay_ms=%ld)",
			 d->root, d->fault_eio, d->fault_timeout, d->fault_delay_ms);
	return &d->base;
fail:
	dir_destroy(&d->base);
	return NULL;
}
