/*
 * store.h - the store interface: what the cache, the mount and the sync thread may ask of
 * an object store. Two implementations: store_s3.c (S3 over the shared HTTP engine) and
 * store_dir.c (a local directory, for tests and local use, with fault injection).
 *
 * A store is bound to one bucket and a root prefix; every key given to or returned by
 * these functions is relative to that root ("a/b.txt", "a/" for a directory marker).
 *
 * Errors: 0 or a positive errno, never negative. ENOENT means exactly "the server said
 * 404 / the object is absent"; a 5xx, a timeout or a reset after retries is EIO,
 * ETIMEDOUT, ECONNREFUSED... never ENOENT. The calling thread's store_last_error() then
 * holds the details (HTTP status, S3 error code and message) for a clear message.
 *
 * Every operation may be called from any thread concurrently; each blocks its caller
 * (parallelism comes from calling from several threads; the engine caps connections).
 */
#ifndef OBJFS_STORE_H
#define OBJFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

enum store_priority { STORE_FOREGROUND = 0, STORE_BACKGROUND = 1 };

/* Per-call I/O context; NULL means foreground, not cancellable. */
struct store_io {
	enum store_priority priority;
	const volatile int *cancel; /* set non-zero from any thread to abandon: ECANCELED */
};

enum {
	STORE_HAS_MODE = 1 << 0,
	STORE_HAS_UID = 1 << 1,
	STORE_HAS_GID = 1 << 2,
	STORE_HAS_MTIME = 1 << 3, /* x-amz-meta-mtime (else mtime is Last-Modified) */
	STORE_HAS_CTIME = 1 << 4,
	STORE_HAS_ATIME = 1 << 5,
};

struct store_kv {
	char *name; /* lower-case, without "x-amz-meta-" */
	char *value;
};

/* Object attributes, s3fs-compatible: mode is a full st_mode (type bits included). */
struct store_attr {
	uint64_t size;
	struct timespec mtime, ctime, atime;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	unsigned has;       /* STORE_HAS_* */
	char etag[80];      /* without quotes; "" when unknown */
	char content_type[96];
	bool is_dir;        /* key ends in '/' or content type application/x-directory */
	struct store_kv *extra; /* other x-amz-meta-* headers, preserved on copy/rewrite */
	size_t n_extra;
};
void store_attr_init(struct store_attr *a);
void store_attr_free(struct store_attr *a);
/* Deep copy; 0 or ENOMEM. */
int store_attr_copy(struct store_attr *dst, const struct store_attr *src);

struct store_entry {
	char *key;          /* relative to the store root */
	bool is_prefix;     /* a CommonPrefix ("dir/"): no attributes */
	struct store_attr attr; /* from the listing: size, mtime (Last-Modified), etag */
};

struct store_list {
	struct store_entry *entries;
	size_t n_entries;
	char *next_token;   /* NULL when this was the last page */
};
/* Whether key is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): S3 keys are UTF-8, and a server answers any other key with InvalidObjectName. */
bool store_key_is_utf8(const char *key);
/* Total length of iov[0..n) (a get_iov's byte count). */
uint64_t store_iov_len(const struct iovec *iov, int n);
void store_list_free(struct store_list *l);

/* A body to upload: mem when not NULL, else len bytes of fd at off. */
struct store_body {
	const void *mem;
	int fd;
	off_t off;
	uint64_t len;
	const unsigned char *md5; /* optional precomputed MD5 (16 bytes) -> Content-MD5 */
};

struct store_part {
	int number;   /* 1..10000 */
	char etag[80];
};

struct store;
struct store_ops {
	const char *kind; /* "s3", "dir" */
	bool utf8_keys;   /* keys must be UTF-8 (S3); a directory store takes any bytes */
	int (*head)(struct store *st, const char *key, const struct store_io *io, struct store_attr *out);
	/* Read [off, off+len) into fd at fd_off (pwrite). Reading past the end yields the bytes
	 * that exist; *got says how many. if_etag (may be NULL): fail with ESTALE when the object
	 * changed. len UINT64_MAX: to the end. */
	int (*get)(struct store *st, const char *key, uint64_t off, uint64_t len, const char *if_etag,
		   const struct store_io *io, int fd, off_t fd_off, uint64_t *got);
	/* get() into memory: the bytes fill iov[0], then iov[1]..., at most their total length.
	 * Same rules otherwise. Optional (NULL: callers use get). */
	int (*get_iov)(struct store *st, const char *key, uint64_t off, const char *if_etag,
		       const struct store_io *io, const struct iovec *iov, int iovcnt,
		       uint64_t *got);
	/* One page of keys under prefix; delimiter "/" or NULL; token from the previous page or
	 * NULL; max_keys 0 = server default (1000). */
	int (*list)(struct store *st, const char *prefix, const char *delimiter, const char *token,
		    unsigned max_keys, const struct store_io *io, struct store_list *out);
	/* Whole-object PUT with metadata from attr (mode/uid/gid/times/content_type/extra).
	 * etag_out (may be NULL, 80 bytes) gets the stored ETag. EBADMSG when the server's
	 * checksum disagrees. */
	int (*put)(struct store *st, const char *key, const struct store_body *body,
		   const struct store_attr *attr, const struct store_io *io, char *etag_out);
	/* Server-side copy within this store. attr NULL: keep metadata; else replace it. */
	int (*copy)(struct store *st, const char *src_key, const char *dst_key,
		    const struct store_attr *attr, const struct store_io *io);
	int (*remove)(struct store *st, const char *key, const struct store_io *io); /* absent: 0 */
	/* Multipart upload. */
	int (*mpu_create)(struct store *st, const char *key, const struct store_attr *attr,
			  const struct store_io *io, char **upload_id);
	int (*mpu_part)(struct store *st, const char *key, const char *upload_id, int number,
			const struct store_body *body, const struct store_io *io, char *etag_out);
	int (*mpu_complete)(struct store *st, const char *key, const char *upload_id,
			    const struct store_part *parts, size_t n, const struct store_io *io,
			    char *etag_out);
	int (*mpu_abort)(struct store *st, const char *key, const char *upload_id,
			 const struct store_io *io);
	/* Check that the bucket exists and the credentials work; err gets one clear line. */
	int (*check)(struct store *st, char *err, size_t errlen);
	void (*destroy)(struct store *st);
};

struct store {
	const struct store_ops *ops;
};
/* Whether st can hold an object named key (its utf8_keys rule; lengths are the caller's). */
bool store_key_fits(const struct store *st, const char *key);

/* Details of the calling thread's last failed store operation. */
struct store_error {
	int err;          /* the errno returned */
	long http_status; /* 0 when no response */
	char code[64];    /* S3 error code, e.g. "NoSuchBucket"; "" when none */
	char message[256];
};
const struct store_error *store_last_error(void);
void store_set_error(int err, long http_status, const char *code, const char *message);
/* One line: "NoSuchBucket (404): The specified bucket does not exist" or strerror. */
void store_format_error(char *buf, size_t len);

/* HTTP status + S3 error code -> errno. The ONE table. 2xx -> 0; 404 -> ENOENT;
 * 403 -> EACCES; 5xx -> EIO... */
int store_http_errno(long status, const char *code);

static inline int store_head(struct store *st, const char *key, const struct store_io *io,
			     struct store_attr *out)
{
	return st->ops->head(st, key, io, out);
}
static inline void store_destroy(struct store *st)
{
	if (st)
		st->ops->destroy(st);
}

/* ---- S3 ---- */
struct http_engine;
struct store_s3_config {
	const char *endpoint; /* "http://127.0.0.1:7480"; NULL: https://s3.<region>.amazonaws.com */
	const char *region;   /* default "us-east-1" */
	const char *bucket;
	const char *prefix;   /* root prefix, "" or "a/b" (a trailing '/' is added) */
	int path_style;       /* 1 path, 0 virtual host, -1 auto (path for IPs/localhost/no dots) */
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* may be NULL */
	bool unsigned_payload;     /* true: x-amz-content-sha256 UNSIGNED-PAYLOAD for fd bodies */
	const char *region_option; /* the option that sets region, for messages; NULL "region" */
};
/* NULL with err filled on a bad configuration (malformed endpoint...). */
struct store *store_s3_create(const struct store_s3_config *cfg, struct http_engine *eng, char *err,
			      size_t errlen);
/* What check() got when its bucket listing failed with an HTTP answer. */
struct store_s3_check_answer {
	const char *bucket, *endpoint;
	const char *region;        /* configured */
	const char *region_option; /* the option that sets it: "region" (also for NULL) or
				    * "dest_region" */
	long status;
	const char *body;          /* the response body (S3 error XML or anything); may be NULL */
	size_t body_len;
	const char *bucket_region; /* the x-amz-bucket-region header; NULL when absent */
	bool session_token;        /* the request carried a session token */
};
/* The one line check() gives for such an answer: which credential is wrong, a missing
 * bucket, "bucket 'b' is in region 'r', not ...: add -o region=r" for a bucket in another
 * region (301/307/400 with <Region> in the body or x-amz-bucket-region)... Pure apart from
 * parsing the body; any thread. */
void store_s3_check_message(const struct store_s3_check_answer *a, char *out, size_t outlen);
/* Replace credentials (SIGHUP). 0 or ENOMEM. */
int store_s3_set_credentials(struct store *st, const char *access_key, const char *secret_key,
			     const char *session_token);

/* ---- local directory ---- */
struct store *store_dir_create(const char *root, char *err, size_t errlen);

#endif
