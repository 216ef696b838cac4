/*
 * store_s3.c - the S3 store: builds requests (URLs, headers, s3fs-compatible metadata),
 * signs them with SigV4 on every attempt, runs them through the shared HTTP engine, and
 * turns responses into attributes, listings and errnos (through store_http_errno only).
 *
 * Locking: one mutex, s3->cred_lock, guards the credentials (they can be replaced on
 * SIGHUP while requests are being signed on the engine thread). It is held only while a
 * request is signed (pure computation), never across I/O. Everything else in struct
 * store_s3 is immutable after store_s3_create.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "http.h"
#include "log.h"
#include "s3xml.h"
#include "sigv4.h"
#include "store.h"

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_UNSIGNED "UNSIGNED-PAYLOAD"
#define S3_DIR_TYPE "application/x-directory"

struct store_s3 {
	struct store base;
	struct http_engine *eng;
	char *endpoint;    /* as configured (or the AWS default), for messages */
	char *scheme;      /* "http" or "https" */
	char *authority;   /* host[:port] of the endpoint */
	char *base_path;   /* path of the endpoint without a trailing '/', usually "" */
	char *host_header; /* Host as sent and signed: authority, or bucket.authority */
	char *region;
	char *region_option; /* the option that sets region, for messages */
	char *bucket;
	char *prefix;      /* root prefix, "" or ending in '/' */
	bool path_style;
	pthread_mutex_t cred_lock;
	char *access_key;    /* protected by cred_lock */
	char *secret_key;    /* protected by cred_lock */
	char *session_token; /* protected by cred_lock; NULL when none */
	/* Whether this server's part ETags are the MD5 of the part: 0 not known yet, 1 yes,
	 * -1 no (atomic). See s3_mpu_part(). */
	int part_etag_md5;
};

/* One request being built and run; lives on the calling thread's stack until completion. */
struct s3_call {
	struct store_s3 *s3;
	struct http_request *req;
	char *path;  /* encoded path as sent */
	char *query; /* encoded query as sent (sorted), NULL when none */
	char payload_hash[2 * CRYPTO_SHA256_LEN + 1];
};

static struct store_s3 *s3_of(struct store *st)
{
	return (struct store_s3 *)st;
}

/* ---- small string helpers ---- */

static char *s3_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s3_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Root prefix + key; NULL on ENOMEM. */
static char *s3_full_key(const struct store_s3 *s3, const char *key)
{
	return s3_printf("%s%s", s3->prefix, key ? key : "");
}

#define S3_KEY_MAX 1024

/* Before writing full_key: S3 keys are at most 1024 bytes. Servers answer a longer one in
 * different ways (KeyTooLongError, 400 InvalidObjectName, or storing it), so refuse it here
 * the same way everywhere: 0 or ENAMETOOLONG (with the thread's store error set). */
static int s3_check_key_len(const char *full_key)
{
	char msg[128];
	size_t n = strlen(full_key);

	if (n <= S3_KEY_MAX)
		return 0;
	snprintf(msg, sizeof(msg), "the key with its prefix is %zu bytes long; S3 allows %d", n,
		 S3_KEY_MAX);
	store_set_error(ENAMETOOLONG, 0, "KeyTooLongError", msg);
	return ENAMETOOLONG;
}

static int s3_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode a key from a listing with encoding-type=url: %XX, and '+' for a space (AWS). */
static char *s3_url_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == '%' && s3_hexval(s[1]) >= 0 && s3_hexval(s[2]) >= 0) {
			*o++ = (char)(s3_hexval(s[1]) * 16 + s3_hexval(s[2]));
			s += 2;
		} else if (*s == '+') {
			*o++ = ' ';
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

/* Copy an ETag without its quotes into out (80 bytes). */
static void s3_etag_copy(char *out, size_t outlen, const char *etag)
{
	size_t n;

	if (!etag) {
		out[0] = '\0';
		return;
	}
	while (*etag == '"' || *etag == ' ')
		etag++;
	n = strlen(etag);
	while (n && (etag[n - 1] == '"' || etag[n - 1] == ' '))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, etag, n);
	out[n] = '\0';
}

/* "1700000000" or "1700000000.123456789" -> timespec. 0 or EINVAL. */
static int s3_parse_epoch(const char *s, struct timespec *ts)
{
	char *end;
	long long sec;
	long nsec = 0;

	errno = 0;
	sec = strtoll(s, &end, 10);
	if (errno || end == s)
		return EINVAL;
	if (*end == '.') {
		long mul = 100000000;
		for (end++; isdigit((unsigned char)*end); end++) {
			nsec += (*end - '0') * mul;
			mul /= 10;
		}
	}
	while (*end == ' ')
		end++;
	if (*end)
		return EINVAL;
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = nsec;
	return 0;
}

static void s3_format_epoch(char *buf, size_t len, const struct timespec *ts)
{
	if (ts->tv_nsec)
		snprintf(buf, len, "%lld.%09ld", (long long)ts->tv_sec, ts->tv_nsec);
	else
		snprintf(buf, len, "%lld", (long long)ts->tv_sec);
}

/* ---- request building ---- */

static void s3_call_free(struct s3_call *c)
{
	http_request_destroy(c->req);
	free(c->path);
	free(c->query);
	memset(c, 0, sizeof(*c));
}

static int s3_sign(struct http_request *req, void *ud);

/*
 * Prepare a request for full_key (an already prefixed key; NULL for the bucket itself)
 * with an already encoded, sorted query (NULL for none).
 */
static int s3_call_init(struct s3_call *c, struct store_s3 *s3, const char *method,
			const char *full_key, const char *query, const struct store_io *io)
{
	char *enc_key = NULL, *url = NULL;
	int rv = ENOMEM;

	memset(c, 0, sizeof(*c));
	c->s3 = s3;
	snprintf(c->payload_hash, sizeof(c->payload_hash), "%s", S3_EMPTY_SHA256);
	if (full_key && !(enc_key = sigv4_uri_encode(full_key, true)))
		goto fail;
	if (s3->path_style)
		c->path = full_key ? s3_printf("%s/%s/%s", s3->base_path, s3->bucket, enc_key)
				   : s3_printf("%s/%s", s3->base_path, s3->bucket);
	else
		c->path = s3_printf("%s/%s", s3->base_path, full_key ? enc_key : "");
	if (!c->path)
		goto fail;
	if (query && !(c->query = strdup(query)))
		goto fail;
	url = s3_printf("%s://%s%s%s%s", s3->scheme, s3->host_header, c->path, query ? "?" : "",
			query ? query : "");
	if (!url)
		goto fail;
	c->req = http_request_create(method, url);
	if (!c->req)
		goto fail;
	http_request_set_header(c->req, "Host", s3->host_header);
	http_request_set_priority(c->req, io && io->priority == STORE_BACKGROUND ? HTTP_BACKGROUND
										 : HTTP_FOREGROUND);
	if (io && io->cancel)
		http_request_set_cancel_flag(c->req, io->cancel);
	http_request_set_signer(c->req, s3_sign, c);
	rv = 0;
fail:
	free(url);
	free(enc_key);
	if (rv) {
		s3_call_free(c);
		store_set_error(rv, 0, NULL, "out of memory building a request");
	}
	return rv;
}

/* Headers that go into the signature; others (added by the engine or curl) stay unsigned. */
static bool s3_header_signed(const char *name)
{
	return strcasecmp(name, "host") == 0 || strncasecmp(name, "x-amz-", 6) == 0 ||
	       strcasecmp(name, "content-md5") == 0 || strcasecmp(name, "content-type") == 0 ||
	       strcasecmp(name, "range") == 0 || strcasecmp(name, "if-match") == 0;
}

/* The signer: runs on the engine thread before every attempt. */
static int s3_sign(struct http_request *req, void *ud)
{
	struct s3_call *c = ud;
	struct store_s3 *s3 = c->s3;
	struct sigv4_header *hdrs = NULL;
	size_t n = 0, cap = 0;
	char amz_date[17];
	char *auth = NULL;
	const char *name, *value;
	int rv = ENOMEM;

	sigv4_amz_date((long)time(NULL), amz_date);
	http_request_set_header(req, "Authorization", NULL);
	http_request_set_header(req, "x-amz-date", amz_date);
	http_request_set_header(req, "x-amz-content-sha256", c->payload_hash);

	pthread_mutex_lock(&s3->cred_lock);
	http_request_set_header(req, "x-amz-security-token", s3->session_token);
	for (size_t i = 0; http_request_header_at(req, i, &name, &value); i++) {
		if (!value || !value[0] || !s3_header_signed(name))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			struct sigv4_header *p = realloc(hdrs, ncap * sizeof(*hdrs));
			if (!p)
				goto out;
			hdrs = p;
			cap = ncap;
		}
		hdrs[n].name = name;
		hdrs[n].value = value;
		n++;
	}
	{
		struct sigv4_request r = {
			.method = http_request_method(req),
			.path = c->path,
			.query = c->query,
			.headers = hdrs,
			.n_headers = n,
			.payload_hash = c->payload_hash,
			.normalize_and_double_encode_path = false,
		};
		struct sigv4_credentials cr = {
			.access_key = s3->access_key,
			.secret_key = s3->secret_key,
			.session_token = s3->session_token,
		};
		auth = sigv4_authorization(&r, &cr, amz_date, s3->region, "s3");
	}
	if (!auth)
		goto out;
	http_request_set_header(req, "Authorization", auth);
	rv = 0;
out:
	pthread_mutex_unlock(&s3->cred_lock);
	free(auth);
	free(hdrs);
	return rv;
}

/* Body of a call: sets the body, Content-MD5 and the payload hash. md5_hex (33 bytes) gets
 * the hex MD5 that the ETag must match. */
static int s3_call_body(struct s3_call *c, const struct store_body *body, char *md5_hex)
{
	unsigned char md5[CRYPTO_MD5_LEN];
	char md5_b64[32];
	int rv;

	if (!body || body->len == 0) {
		http_request_set_body_mem(c->req, "", 0);
		crypto_md5("", 0, md5);
		snprintf(c->payload_hash, sizeof(c->payload_hash), "%s", S3_EMPTY_SHA256);
	} else if (body->mem) {
		http_request_set_body_mem(c->req, body->mem, (size_t)body->len);
		if (body->md5)
			memcpy(md5, body->md5, sizeof(md5));
		else
			crypto_md5(body->mem, (size_t)body->len, md5);
		crypto_sha256_hex(body->mem, (size_t)body->len, c->payload_hash);
	} else {
		http_request_set_body_fd(c->req, body->fd, body->off, body->len);
		if (body->md5) {
			memcpy(md5, body->md5, sizeof(md5));
		} else if ((rv = crypto_md5_fd(body->fd, body->off, body->len, md5))) {
			store_set_error(rv, 0, NULL, "cannot read the data to upload");
			return rv;
		}
		snprintf(c->payload_hash, sizeof(c->payload_hash), "%s", S3_UNSIGNED);
	}
	crypto_base64(md5, sizeof(md5), md5_b64);
	http_request_set_header(c->req, "Content-MD5", md5_b64);
	crypto_hex(md5, sizeof(md5), md5_hex);
	return 0;
}

/* Content-Type and x-amz-meta-* headers from attr (NULL: none but the content type). */
static int s3_call_meta(struct s3_call *c, const char *key, const struct store_attr *a)
{
	size_t klen = strlen(key);
	bool dir = (klen && key[klen - 1] == '/') || (a && a->is_dir);
	char buf[64];

	if (a && a->content_type[0])
		http_request_set_header(c->req, "Content-Type", a->content_type);
	else
		http_request_set_header(c->req, "Content-Type",
					dir ? S3_DIR_TYPE : "application/octet-stream");
	if (!a)
		return 0;
	if (a->has & STORE_HAS_MODE) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)a->mode);
		http_request_set_header(c->req, "x-amz-meta-mode", buf);
	}
	if (a->has & STORE_HAS_UID) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)a->uid);
		http_request_set_header(c->req, "x-amz-meta-uid", buf);
	}
	if (a->has & STORE_HAS_GID) {
		snprintf(buf, sizeof(buf), "%u", (unsigned)a->gid);
		http_request_set_header(c->req, "x-amz-meta-gid", buf);
	}
	if (a->has & STORE_HAS_MTIME) {
		s3_format_epoch(buf, sizeof(buf), &a->mtime);
		http_request_set_header(c->req, "x-amz-meta-mtime", buf);
	}
	if (a->has & STORE_HAS_CTIME) {
		s3_format_epoch(buf, sizeof(buf), &a->ctime);
		http_request_set_header(c->req, "x-amz-meta-ctime", buf);
	}
	if (a->has & STORE_HAS_ATIME) {
		s3_format_epoch(buf, sizeof(buf), &a->atime);
		http_request_set_header(c->req, "x-amz-meta-atime", buf);
	}
	for (size_t i = 0; i < a->n_extra; i++) {
		char *h = s3_printf("x-amz-meta-%s", a->extra[i].name);
		if (!h)
			return ENOMEM;
		http_request_set_header(c->req, h, a->extra[i].value);
		free(h);
	}
	return 0;
}

/* ---- running and errors ---- */

/* A reason phrase for a response without an error document (HEAD has no body). */
static const char *s3_reason(long status, int err)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 416: return "Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return err ? strerror(err) : "";
	}
}

/* Fill the thread's last error from a non-2xx response and return its errno. */
static int s3_response_error(struct s3_call *c)
{
	long status = http_request_status(c->req);
	size_t len = 0;
	const char *body = http_request_body(c->req, &len);
	struct s3xml_error e = {0};
	const char *code = "", *msg = "";
	int err;

	if (body && len && s3xml_parse_error(body, len, &e) == 0) {
		code = e.code ? e.code : "";
		msg = e.message ? e.message : "";
	}
	if (!code[0] && status == 404)
		code = "NotFound";
	err = store_http_errno(status, code);
	if (!msg[0])
		msg = s3_reason(status, err);
	store_set_error(err ? err : EIO, status, code, msg);
	s3xml_error_free(&e);
	return err ? err : EIO;
}

/*
 * Run the call. Returns 0 for a 2xx response, else the errno with the thread's last error
 * filled (transport failure: the engine's errno and its text; HTTP error: the table).
 */
static int s3_call_run(struct s3_call *c)
{
	int err = http_execute(c->s3->eng, c->req);
	long status;

	if (err) {
		const char *text = http_request_error_text(c->req);
		store_set_error(err, 0, NULL, text && text[0] ? text : strerror(err));
		return err;
	}
	status = http_request_status(c->req);
	if (status >= 200 && status <= 299)
		return 0;
	return s3_response_error(c);
}

/* A 2xx body that is an <Error> document (CopyObject, CompleteMultipartUpload). */
static int s3_body_error(long status, const struct s3xml_error *e)
{
	const char *code = e->code ? e->code : "InternalError";
	int err = store_http_errno(status, code);

	if (!err)
		err = EIO;
	store_set_error(err, status, code, e->message ? e->message : "error in a 200 response");
	return err;
}

/* ---- attributes from response headers ---- */

static int s3_attr_add_extra(struct store_attr *a, const char *name, const char *value)
{
	struct store_kv *p = realloc(a->extra, (a->n_extra + 1) * sizeof(*p));
	char *n, *v;

	if (!p)
		return ENOMEM;
	a->extra = p;
	n = strdup(name);
	v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return ENOMEM;
	}
	for (char *q = n; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	a->extra[a->n_extra].name = n;
	a->extra[a->n_extra].value = v;
	a->n_extra++;
	return 0;
}

static int s3_attr_from_headers(struct http_request *req, const char *key, struct store_attr *a)
{
	const char *name, *value;
	struct timespec ts;
	size_t klen = strlen(key);

	for (size_t i = 0; http_request_response_header_at(req, i, &name, &value); i++) {
		if (!value)
			continue;
		if (strcasecmp(name, "content-length") == 0) {
			a->size = strtoull(value, NULL, 10);
		} else if (strcasecmp(name, "etag") == 0) {
			s3_etag_copy(a->etag, sizeof(a->etag), value);
		} else if (strcasecmp(name, "content-type") == 0) {
			snprintf(a->content_type, sizeof(a->content_type), "%s", value);
		} else if (strcasecmp(name, "last-modified") == 0) {
			if (s3xml_parse_time(value, &ts) == 0 && !(a->has & STORE_HAS_MTIME))
				a->mtime = ts;
		} else if (strncasecmp(name, "x-amz-meta-", 11) == 0) {
			const char *m = name + 11;
			char *end;
			if (strcasecmp(m, "mode") == 0) {
				unsigned long v = strtoul(value, &end, 10);
				if (end != value && *end == '\0') {
					a->mode = (mode_t)v;
					a->has |= STORE_HAS_MODE;
				}
			} else if (strcasecmp(m, "uid") == 0) {
				unsigned long v = strtoul(value, &end, 10);
				if (end != value && *end == '\0') {
					a->uid = (uid_t)v;
					a->has |= STORE_HAS_UID;
				}
			} else if (strcasecmp(m, "gid") == 0) {
				unsigned long v = strtoul(value, &end, 10);
				if (end != value && *end == '\0') {
					a->gid = (gid_t)v;
					a->has |= STORE_HAS_GID;
				}
			} else if (strcasecmp(m, "mtime") == 0) {
				if (s3_parse_epoch(value, &a->mtime) == 0)
					a->has |= STORE_HAS_MTIME;
			} else if (strcasecmp(m, "ctime") == 0) {
				if (s3_parse_epoch(value, &a->ctime) == 0)
					a->has |= STORE_HAS_CTIME;
			} else if (strcasecmp(m, "atime") == 0) {
				if (s3_parse_epoch(value, &a->atime) == 0)
					a->has |= STORE_HAS_ATIME;
			} else if (s3_attr_add_extra(a, m, value)) {
				return ENOMEM;
			}
		}
	}
	/* Last-Modified may have come after x-amz-meta-mtime: the metadata wins. */
	if (!(a->has & STORE_HAS_CTIME))
		a->ctime = a->mtime;
	if (!(a->has & STORE_HAS_ATIME))
		a->atime = a->mtime;
	a->is_dir = (klen && key[klen - 1] == '/') ||
		    strncasecmp(a->content_type, S3_DIR_TYPE, strlen(S3_DIR_TYPE)) == 0;
	return 0;
}

/* ---- operations ---- */

static int s3_head(struct store *st, const char *key, const struct store_io *io,
		   struct store_attr *out)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char *fk = s3_full_key(s3, key);
	int rv;

	store_attr_init(out);
	if (!fk)
		return ENOMEM;
	rv = s3_call_init(&c, s3, "HEAD", fk, NULL, io);
	free(fk);
	if (rv)
		return rv;
	rv = s3_call_run(&c);
	if (rv == 0) {
		/* Last-Modified first so that x-amz-meta-mtime, whatever the header order, wins */
		const char *lm = http_request_response_header(c.req, "last-modified");
		struct timespec ts;
		if (lm && s3xml_parse_time(lm, &ts) == 0)
			out->mtime = ts;
		rv = s3_attr_from_headers(c.req, key, out);
		if (rv) {
			store_attr_free(out);
			store_set_error(rv, 0, NULL, "out of memory");
		}
	}
	s3_call_free(&c);
	return rv;
}

/* Where a GET's body goes: fd at fd_off (fd >= 0), else iov. */
struct s3_get_sink {
	int fd;
	off_t fd_off;
	const struct iovec *iov;
	uint64_t want; /* bytes the caller asked for; more (a 200 to a range) is dropped */
	uint64_t pos;
	int vi;        /* iov: the entry pos is in, and the bytes of it filled */
	size_t vused;
};

static int s3_get_write(void *ud, const void *data, size_t len)
{
	struct s3_get_sink *g = ud;
	const char *p = data;

	if (g->pos >= g->want)
		return 0;
	if (len > g->want - g->pos)
		len = (size_t)(g->want - g->pos);
	while (len && g->fd < 0) {
		const struct iovec *v = &g->iov[g->vi];
		size_t n = v->iov_len - g->vused < len ? v->iov_len - g->vused : len;
		memcpy((char *)v->iov_base + g->vused, p, n);
		g->pos += n;
		p += n;
		len -= n;
		if ((g->vused += n) == v->iov_len) {
			g->vi++;
			g->vused = 0;
		}
	}
	while (len) {
		ssize_t n = pwrite(g->fd, p, len, g->fd_off + (off_t)g->pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		g->pos += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void s3_get_reset(void *ud)
{
	struct s3_get_sink *g = ud;
	g->pos = 0;
	g->vi = 0;
	g->vused = 0;
}

static int s3_get_into(struct store *st, const char *key, uint64_t off, const char *if_etag,
		       const struct store_io *io, struct s3_get_sink *sink, uint64_t *got)
{
	struct store_s3 *s3 = s3_of(st);
	uint64_t len = sink->want;
	struct s3_call c;
	char range[64] = "", *fk;
	long status;
	int rv;

	*got = 0;
	if (len == 0)
		return 0;
	if (len != UINT64_MAX && off + len < off) {
		store_set_error(EINVAL, 0, NULL, "range overflows");
		return EINVAL;
	}
	if (len == UINT64_MAX && off > 0)
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", off);
	else if (len != UINT64_MAX)
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	if (!(fk = s3_full_key(s3, key)))
		return ENOMEM;
	rv = s3_call_init(&c, s3, "GET", fk, NULL, io);
	free(fk);
	if (rv)
		return rv;
	if (range[0])
		http_request_set_header(c.req, "Range", range);
	if (if_etag && if_etag[0]) {
		char quoted[96];
		snprintf(quoted, sizeof(quoted), "\"%s\"", if_etag);
		http_request_set_header(c.req, "If-Match", quoted);
	}
	http_request_set_sink_cb(c.req, s3_get_write, s3_get_reset, sink);
	rv = s3_call_run(&c);
	status = http_request_status(c.req);
	if (rv == 0 && status == 200 && off > 0) {
		rv = EIO;
		store_set_error(rv, status, NULL, "the server ignored the Range header");
	} else if (rv == 0) {
		*got = sink->pos;
	} else if (status == 416) {
		rv = 0; /* the range starts at or past the end: nothing there */
	}
	s3_call_free(&c);
	return rv;
}

static int s3_get(struct store *st, const char *key, uint64_t off, uint64_t len,
		  const char *if_etag, const struct store_io *io, int fd, off_t fd_off,
		  uint64_t *got)
{
	struct s3_get_sink sink = {.fd = fd, .fd_off = fd_off, .want = len};
	return s3_get_into(st, key, off, if_etag, io, &sink, got);
}

static int s3_get_iov(struct store *st, const char *key, uint64_t off, const char *if_etag,
		      const struct store_io *io, const struct iovec *iov, int iovcnt,
		      uint64_t *got)
{
	struct s3_get_sink sink = {.fd = -1, .iov = iov, .want = store_iov_len(iov, iovcnt)};

	return s3_get_into(st, key, off, if_etag, io, &sink, got);
}

static int s3_list(struct store *st, const char *prefix, const char *delimiter,
		   const char *token, unsigned max_keys, const struct store_io *io,
		   struct store_list *out)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3xml_list xl = {0};
	struct s3_call c;
	char *fp = NULL, *e_prefix = NULL, *e_delim = NULL, *e_token = NULL, *query = NULL;
	size_t plen = strlen(s3->prefix), n = 0;
	const char *body;
	size_t blen = 0;
	char mk[32] = "";
	int rv = ENOMEM;

	memset(out, 0, sizeof(*out));
	if (!(fp = s3_full_key(s3, prefix)) || !(e_prefix = sigv4_uri_encode(fp, false)))
		goto oom;
	if (delimiter && !(e_delim = sigv4_uri_encode(delimiter, false)))
		goto oom;
	if (token && !(e_token = sigv4_uri_encode(token, false)))
		goto oom;
	if (max_keys)
		snprintf(mk, sizeof(mk), "&max-keys=%u", max_keys);
	/* sorted by name, as SigV4 canonicalises it */
	query = s3_printf("%s%s%s%s%s%sencoding-type=url&list-type=2%s%s%s",
			  e_token ? "continuation-token=" : "", e_token ? e_token : "",
			  e_token ? "&" : "", e_delim ? "delimiter=" : "", e_delim ? e_delim : "",
			  e_delim ? "&" : "", mk, fp[0] ? "&prefix=" : "", fp[0] ? e_prefix : "");
	if (!query)
		goto oom;
	rv = s3_call_init(&c, s3, "GET", NULL, query, io);
	if (rv)
		goto out;
	rv = s3_call_run(&c);
	if (rv)
		goto out_call;
	body = http_request_body(c.req, &blen);
	rv = s3xml_parse_list(body ? body : "", blen, &xl);
	if (rv) {
		store_set_error(rv, http_request_status(c.req), NULL,
				"malformed ListObjectsV2 response");
		goto out_call;
	}
	out->entries = calloc(xl.n_objects + xl.n_prefixes + 1, sizeof(*out->entries));
	if (!out->entries)
		goto oom_call;
	for (size_t i = 0; i < xl.n_objects + xl.n_prefixes; i++) {
		bool is_prefix = i >= xl.n_objects;
		const char *raw = is_prefix ? xl.prefixes[i - xl.n_objects] : xl.objects[i].key;
		char *k = s3_url_decode(raw);
		struct store_entry *e = &out->entries[n];
		if (!k)
			goto oom_call;
		if (strncmp(k, s3->prefix, plen) != 0 || k[plen] == '\0') {
			free(k); /* the root's own marker, or outside the root */
			continue;
		}
		memmove(k, k + plen, strlen(k + plen) + 1);
		e->key = k;
		e->is_prefix = is_prefix;
		store_attr_init(&e->attr);
		if (!is_prefix) {
			e->attr.size = xl.objects[i].size;
			e->attr.mtime = e->attr.ctime = e->attr.atime = xl.objects[i].mtime;
			s3_etag_copy(e->attr.etag, sizeof(e->attr.etag), xl.objects[i].etag);
		}
		e->attr.is_dir = k[strlen(k) - 1] == '/';
		n++;
		out->n_entries = n;
	}
	if (xl.truncated) {
		if (!xl.next_token) {
			rv = EPROTO;
			store_set_error(rv, http_request_status(c.req), NULL,
					"truncated listing without a continuation token");
			goto out_call;
		}
		if (!(out->next_token = strdup(xl.next_token)))
			goto oom_call;
	}
	rv = 0;
	goto out_call;
oom_call:
	rv = ENOMEM;
	store_set_error(rv, 0, NULL, "out of memory");
out_call:
	s3_call_free(&c);
	goto out;
oom:
	rv = ENOMEM;
	store_set_error(rv, 0, NULL, "out of memory");
out:
	if (rv)
		store_list_free(out);
	s3xml_list_free(&xl);
	free(query);
	free(e_token);
	free(e_delim);
	free(e_prefix);
	free(fp);
	return rv;
}

/* Compare the ETag of a single PUT or part with the MD5 that was sent. */
static int s3_check_etag(struct s3_call *c, const char *md5_hex, char *etag_out)
{
	char etag[80];

	s3_etag_copy(etag, sizeof(etag), http_request_response_header(c->req, "etag"));
	if (etag_out)
		snprintf(etag_out, 80, "%s", etag);
	if (etag[0] && strcasecmp(etag, md5_hex) != 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "the server's ETag %s differs from the MD5 %s of the data",
			 etag, md5_hex);
		store_set_error(EBADMSG, http_request_status(c->req), "BadDigest", msg);
		return EBADMSG;
	}
	return 0;
}

static int s3_put(struct store *st, const char *key, const struct store_body *body,
		  const struct store_attr *attr, const struct store_io *io, char *etag_out)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char md5_hex[2 * CRYPTO_MD5_LEN + 1];
	char *fk = s3_full_key(s3, key);
	int rv;

	if (etag_out)
		etag_out[0] = '\0';
	if (!fk)
		return ENOMEM;
	if ((rv = s3_check_key_len(fk))) {
		free(fk);
		return rv;
	}
	rv = s3_call_init(&c, s3, "PUT", fk, NULL, io);
	free(fk);
	if (rv)
		return rv;
	if ((rv = s3_call_body(&c, body, md5_hex)) || (rv = s3_call_meta(&c, key, attr)))
		goto out;
	rv = s3_call_run(&c);
	if (rv == 0)
		rv = s3_check_etag(&c, md5_hex, etag_out);
out:
	s3_call_free(&c);
	return rv;
}

static int s3_copy(struct store *st, const char *src_key, const char *dst_key,
		   const struct store_attr *attr, const struct store_io *io)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char *fsrc = s3_full_key(s3, src_key), *fdst = s3_full_key(s3, dst_key);
	char *esrc = NULL, *source = NULL, *etag = NULL;
	struct s3xml_error e = {0};
	const char *body;
	size_t blen = 0;
	int rv = ENOMEM;

	if (!fsrc || !fdst || !(esrc = sigv4_uri_encode(fsrc, true)) ||
	    !(source = s3_printf("/%s/%s", s3->bucket, esrc)))
		goto out;
	if ((rv = s3_check_key_len(fdst)))
		goto out;
	rv = s3_call_init(&c, s3, "PUT", fdst, NULL, io);
	if (rv)
		goto out;
	http_request_set_body_mem(c.req, "", 0);
	http_request_set_header(c.req, "x-amz-copy-source", source);
	if (attr) {
		http_request_set_header(c.req, "x-amz-metadata-directive", "REPLACE");
		if ((rv = s3_call_meta(&c, dst_key, attr)))
			goto out_call;
	}
	rv = s3_call_run(&c);
	if (rv)
		goto out_call;
	body = http_request_body(c.req, &blen);
	rv = s3xml_parse_etag_result(body ? body : "", blen, &etag, &e);
	if (rv == EIO && e.code)
		rv = s3_body_error(http_request_status(c.req), &e);
	else if (rv)
		store_set_error(rv, http_request_status(c.req), NULL,
				"malformed CopyObject response");
out_call:
	s3_call_free(&c);
out:
	if (rv == ENOMEM)
		store_set_error(rv, 0, NULL, "out of memory");
	s3xml_error_free(&e);
	free(etag);
	free(source);
	free(esrc);
	free(fsrc);
	free(fdst);
	return rv;
}

static int s3_remove(struct store *st, const char *key, const struct store_io *io)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char *fk = s3_full_key(s3, key);
	int rv;

	if (!fk)
		return ENOMEM;
	rv = s3_call_init(&c, s3, "DELETE", fk, NULL, io);
	free(fk);
	if (rv)
		return rv;
	rv = s3_call_run(&c);
	if (rv == ENOENT)
		rv = 0;
	s3_call_free(&c);
	return rv;
}

static int s3_mpu_create(struct store *st, const char *key, const struct store_attr *attr,
			 const struct store_io *io, char **upload_id)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char *fk = s3_full_key(s3, key);
	const char *body;
	size_t blen = 0;
	int rv;

	*upload_id = NULL;
	if (!fk)
		return ENOMEM;
	if ((rv = s3_check_key_len(fk))) {
		free(fk);
		return rv;
	}
	rv = s3_call_init(&c, s3, "POST", fk, "uploads=", io);
	free(fk);
	if (rv)
		return rv;
	http_request_set_body_mem(c.req, "", 0);
	if ((rv = s3_call_meta(&c, key, attr)))
		goto out;
	rv = s3_call_run(&c);
	if (rv)
		goto out;
	body = http_request_body(c.req, &blen);
	rv = s3xml_parse_initiate(body ? body : "", blen, upload_id);
	if (rv)
		store_set_error(rv, http_request_status(c.req), NULL,
				"malformed InitiateMultipartUpload response");
out:
	s3_call_free(&c);
	return rv;
}

/* "partNumber=N&uploadId=ID" or "uploadId=ID" (sorted); NULL on ENOMEM. */
static char *s3_upload_query(int number, const char *upload_id)
{
	char *eid = sigv4_uri_encode(upload_id, false), *q;

	if (!eid)
		return NULL;
	if (number > 0)
		q = s3_printf("partNumber=%d&uploadId=%s", number, eid);
	else
		q = s3_printf("uploadId=%s", eid);
	free(eid);
	return q;
}

/* Send a part from a file without Content-MD5, hashing it as it goes out, and check the
 * server's ETag against that hash. Returns 0 when the part is there and verified, else an
 * errno; *again is set when the caller should send it again with Content-MD5 (which
 * replaces it): it could not be verified this way, or the server refused it with 400. */
static int s3_mpu_part_streamed(struct store_s3 *s3, const char *fk, const char *q,
				const struct store_body *body, const struct store_io *io,
				char *etag_out, bool *again)
{
	struct s3_call c;
	unsigned char md5[CRYPTO_MD5_LEN];
	char md5_hex[2 * CRYPTO_MD5_LEN + 1], etag[80];
	int rv = s3_call_init(&c, s3, "PUT", fk, q, io);

	*again = false;
	if (rv)
		return rv;
	http_request_set_body_fd(c.req, body->fd, body->off, body->len);
	snprintf(c.payload_hash, sizeof(c.payload_hash), "%s", S3_UNSIGNED);
	if ((rv = http_request_hash_body(c.req))) {
		store_set_error(rv, 0, NULL, "out of memory building a request");
	} else if ((rv = s3_call_run(&c)) != 0) {
		/* A bucket with Object Lock (AWS) refuses parts without Content-MD5 or a checksum
		 * header with 400 InvalidRequest: such a store gets Content-MD5 from now on. */
		if (http_request_status(c.req) == 400) {
			log_info("a part of '%s' sent without Content-MD5 was refused (400): parts go "
				 "with Content-MD5 from now on", fk);
			__atomic_store_n(&s3->part_etag_md5, -1, __ATOMIC_RELEASE);
			*again = true;
		}
	} else {
		s3_etag_copy(etag, sizeof(etag), http_request_response_header(c.req, "etag"));
		if (!http_request_body_md5(c.req, md5)) {
			log_info("part of '%s' was not sent in one pass: sending it again with Content-MD5",
				 fk);
			*again = true;
		} else if (!crypto_is_md5_hex(etag)) {
			log_info("the server's part ETag '%s' is not an MD5: parts go with Content-MD5 "
				 "from now on", etag);
			__atomic_store_n(&s3->part_etag_md5, -1, __ATOMIC_RELEASE);
			*again = true;
		} else if (crypto_hex(md5, sizeof(md5), md5_hex), strcasecmp(etag, md5_hex) != 0) {
			log_warn("part of '%s' arrived damaged (the server's ETag %s is not the MD5 %s "
				 "of what was sent): sending it again with Content-MD5", fk, etag, md5_hex);
			*again = true;
		} else if (etag_out) {
			snprintf(etag_out, 80, "%s", etag);
		}
	}
	s3_call_free(&c);
	return *again ? EAGAIN : rv;
}

/* Parts go with Content-MD5 until one answer shows that this server's part ETag is the MD5
 * of the part; after that a part read from a file is hashed while it is sent and checked
 * against the ETag instead. That saves a pass over the data and the pause before its first
 * byte, and is as safe for parts: a part is invisible until the upload completes, so one
 * that fails the check is just sent again (with Content-MD5), replacing it. Single PUTs,
 * visible at once, always carry Content-MD5. */
static int s3_mpu_part(struct store *st, const char *key, const char *upload_id, int number,
		       const struct store_body *body, const struct store_io *io, char *etag_out)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char md5_hex[2 * CRYPTO_MD5_LEN + 1];
	char *fk = s3_full_key(s3, key), *q = s3_upload_query(number, upload_id);
	int rv = ENOMEM;

	if (etag_out)
		etag_out[0] = '\0';
	if (number < 1 || number > 10000) {
		rv = EINVAL;
		store_set_error(rv, 0, NULL, "part number outside 1..10000");
		goto out;
	}
	if (!fk || !q) {
		store_set_error(rv, 0, NULL, "out of memory");
		goto out;
	}
	if (!body->mem && !body->md5 && body->len > 0 &&
	    __atomic_load_n(&s3->part_etag_md5, __ATOMIC_ACQUIRE) > 0) {
		bool again;
		rv = s3_mpu_part_streamed(s3, fk, q, body, io, etag_out, &again);
		if (!again)
			goto out;
	}
	rv = s3_call_init(&c, s3, "PUT", fk, q, io);
	if (rv)
		goto out;
	if ((rv = s3_call_body(&c, body, md5_hex)) == 0 && (rv = s3_call_run(&c)) == 0)
		rv = s3_check_etag(&c, md5_hex, etag_out);
	if (rv == 0) {
		char etag[80];
		s3_etag_copy(etag, sizeof(etag), http_request_response_header(c.req, "etag"));
		/* s3_check_etag() compared it: an MD5-shaped ETag is the part's MD5 */
		int v = crypto_is_md5_hex(etag) ? 1 : -1, unknown = 0;
		__atomic_compare_exchange_n(&s3->part_etag_md5, &unknown, v, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
	s3_call_free(&c);
out:
	free(q);
	free(fk);
	return rv;
}

static int s3_mpu_complete(struct store *st, const char *key, const char *upload_id,
			   const struct store_part *parts, size_t n, const struct store_io *io,
			   char *etag_out)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3xml_part *xp = calloc(n ? n : 1, sizeof(*xp));
	struct s3xml_error e = {0};
	struct s3_call c;
	char *fk = s3_full_key(s3, key), *q = s3_upload_query(0, upload_id), *doc = NULL;
	char *etag = NULL, md5_hex[2 * CRYPTO_MD5_LEN + 1];
	const char *body;
	size_t blen = 0;
	int rv = ENOMEM;

	if (etag_out)
		etag_out[0] = '\0';
	if (!xp || !fk || !q)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		xp[i].number = parts[i].number;
		xp[i].etag = parts[i].etag;
	}
	if (!(doc = s3xml_build_complete(xp, n)))
		goto oom;
	rv = s3_call_init(&c, s3, "POST", fk, q, io);
	if (rv)
		goto out;
	{
		struct store_body b = {.mem = doc, .fd = -1, .len = strlen(doc)};
		rv = s3_call_body(&c, &b, md5_hex);
	}
	http_request_set_header(c.req, "Content-Type", "application/xml");
	if (rv == 0)
		rv = s3_call_run(&c);
	if (rv == 0) {
		body = http_request_body(c.req, &blen);
		rv = s3xml_parse_etag_result(body ? body : "", blen, &etag, &e);
		if (rv == EIO && e.code) {
			rv = s3_body_error(http_request_status(c.req), &e);
		} else if (rv == EPROTO && body && !s3xml_is_error(body, blen) &&
			   memmem(body, blen, "<CompleteMultipartUploadResult", 30)) {
			/* RGW answers <ETag></ETag>: the upload is complete, ask for its ETag */
			struct store_attr a;
			rv = s3_head(st, key, io, &a);
			if (rv == 0 && etag_out)
				snprintf(etag_out, 80, "%s", a.etag);
			store_attr_free(&a);
		} else if (rv) {
			log_debug("CompleteMultipartUpload answered: %.*s", (int)(blen > 512 ? 512 : blen),
				  body ? body : "");
			store_set_error(rv, http_request_status(c.req), NULL,
					"malformed CompleteMultipartUpload response");
		}
		else if (etag_out)
			s3_etag_copy(etag_out, 80, etag);
	}
	s3_call_free(&c);
	goto out;
oom:
	store_set_error(rv, 0, NULL, "out of memory");
out:
	s3xml_error_free(&e);
	free(etag);
	free(doc);
	free(q);
	free(fk);
	free(xp);
	return rv;
}

static int s3_mpu_abort(struct store *st, const char *key, const char *upload_id,
			const struct store_io *io)
{
	struct store_s3 *s3 = s3_of(st);
	struct s3_call c;
	char *fk = s3_full_key(s3, key), *q = s3_upload_query(0, upload_id);
	int rv = ENOMEM;

	if (!fk || !q) {
		store_set_error(rv, 0, NULL, "out of memory");
		goto out;
	}
	rv = s3_call_init(&c, s3, "DELETE", fk, q, io);
	if (rv)
		goto out;
	rv = s3_call_run(&c);
	if (rv == ENOENT)
		rv = 0; /* already gone */
	s3_call_free(&c);
out:
	free(q);
	free(fk);
	return rv;
}

/* ---- check: one clear line for every way a mount can fail to reach its bucket ---- */

static bool s3_text_has(const char *text, const char *word)
{
	return text && strcasestr(text, word) != NULL;
}

static void s3_check_transport(struct store_s3 *s3, int err, const char *text, char *out,
			       size_t outlen)
{
	if (err == EPROTO && (s3_text_has(text, "certificate") || s3_text_has(text, "verify") ||
			      s3_text_has(text, "issuer")))
		snprintf(out, outlen,
			 "cannot verify the TLS certificate of %s: %s (give ca_file=FILE with the "
			 "server's CA, or insecure to skip verification)",
			 s3->endpoint, text);
	else if (err == EPROTO && (s3_text_has(text, "ssl") || s3_text_has(text, "tls")))
		snprintf(out, outlen,
			 "TLS with %s failed: %s (is the endpoint really https, and the port "
			 "right?)",
			 s3->endpoint, text);
	else if (err == ECONNREFUSED)
		snprintf(out, outlen,
			 "cannot connect to %s: connection refused (is the server running and the "
			 "endpoint's port right?)",
			 s3->endpoint);
	else if (err == EHOSTUNREACH)
		snprintf(out, outlen, "cannot resolve or reach the host of %s: %s (check the endpoint)",
			 s3->endpoint, text && text[0] ? text : strerror(err));
	else if (err == ETIMEDOUT)
		snprintf(out, outlen,
			 "timed out talking to %s (check the endpoint, the network and any "
			 "firewall; connect_timeout= sets the limit)",
			 s3->endpoint);
	else
		snprintf(out, outlen, "cannot reach %s: %s (check the endpoint)", s3->endpoint,
			 text && text[0] ? text : strerror(err));
}

void store_s3_check_message(const struct store_s3_check_answer *a, char *out, size_t outlen)
{
	struct s3xml_error e = {0};
	const char *code = "", *msg = "", *region = NULL, *hint = NULL;
	const char *option = a->region_option ? a->region_option : "region";
	long status = a->status;
	bool redirect;

	if (a->body && a->body_len && s3xml_parse_error(a->body, a->body_len, &e) == 0) {
		code = e.code ? e.code : "";
		msg = e.message ? e.message : "";
		region = e.region;
	}
	if (!region || !region[0])
		region = a->bucket_region;
	redirect = status == 301 || status == 307 || strcmp(code, "PermanentRedirect") == 0 ||
		   strcmp(code, "TemporaryRedirect") == 0;

	if (strcmp(code, "InvalidAccessKeyId") == 0)
		hint = "the server does not know this access key; check the credentials";
	else if (strcmp(code, "SignatureDoesNotMatch") == 0)
		hint = "the secret key is wrong for this access key; check the credentials";
	else if (strcmp(code, "AccessDenied") == 0 && a->session_token)
		hint = "the credentials work but may not list this bucket; check its policy";
	else if (strcmp(code, "AccessDenied") == 0)
		hint = "the credentials may not list this bucket (check its policy), or they are "
		       "incomplete: temporary keys need their session token (AWS_SESSION_TOKEN, "
		       "aws_session_token)";
	else if (strcmp(code, "NoSuchBucket") == 0 || (status == 404 && !code[0]))
		hint = "the bucket does not exist; create it or check the name";
	else if (strcmp(code, "RequestTimeTooSkewed") == 0)
		hint = "the clock of this machine is off; fix the system time";
	else if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0)
		hint = "the session token has expired or is invalid; get new credentials";
	else if (strcmp(code, "InvalidBucketName") == 0)
		hint = "the bucket name is not valid";
	else if (a->session_token && (status == 400 || status == 403) &&
		 (strcmp(code, "InvalidArgument") == 0 || strcmp(code, "InvalidClientTokenId") == 0))
		hint = "the session token was refused; check it or get new credentials";
	/* S3 names the bucket's region in <Region> (AuthorizationHeaderMalformed, some
	 * PermanentRedirects) or in x-amz-bucket-region (every 301 of a bucket) */
	if (region && region[0] && strcmp(region, a->region) != 0 &&
	    (redirect || status == 400 || strcmp(code, "AuthorizationHeaderMalformed") == 0)) {
		snprintf(out, outlen,
			 "bucket '%s' is in region '%s', not '%s' (%s from %s): add -o %s=%s",
			 a->bucket, region, a->region, code[0] ? code : "redirect", a->endpoint, option,
			 region);
	} else if (redirect) {
		snprintf(out, outlen,
			 "cannot access bucket '%s' at %s: %s (the bucket is in another region or "
			 "needs another endpoint; set %s= or endpoint=)",
			 a->bucket, a->endpoint, code[0] ? code : "redirect", option);
	} else if (hint) {
		snprintf(out, outlen, "cannot access bucket '%s' at %s: %s (%s)", a->bucket,
			 a->endpoint, code[0] ? code : "NotFound", hint);
	} else if (status >= 500) {
		snprintf(out, outlen,
			 "cannot access bucket '%s' at %s: the server keeps failing: %s%s%s (HTTP %ld; "
			 "try again later)",
			 a->bucket, a->endpoint, code, code[0] && msg[0] ? ": " : "", msg, status);
	} else {
		snprintf(out, outlen, "cannot access bucket '%s' at %s: %s%s%s (HTTP %ld)", a->bucket,
			 a->endpoint, code[0] ? code : "error", msg[0] ? ": " : "", msg, status);
	}
	s3xml_error_free(&e);
}

static int s3_check(struct store *st, char *out, size_t outlen)
{
	struct store_s3 *s3 = s3_of(st);
	struct store_s3_check_answer answer = {0};
	struct s3_call c;
	char *query = NULL, *eprefix = NULL;
	const char *body;
	size_t blen = 0;
	long status;
	int rv, xerr;

	out[0] = '\0';
	if (!(eprefix = sigv4_uri_encode(s3->prefix, false)) ||
	    !(query = s3_printf("list-type=2&max-keys=1%s%s", s3->prefix[0] ? "&prefix=" : "",
				eprefix))) {
		free(eprefix);
		snprintf(out, outlen, "out of memory");
		return ENOMEM;
	}
	rv = s3_call_init(&c, s3, "GET", NULL, query, NULL);
	free(query);
	free(eprefix);
	if (rv) {
		snprintf(out, outlen, "out of memory");
		return rv;
	}
	http_request_set_max_attempts(c.req, 2);
	xerr = http_execute(s3->eng, c.req);
	if (xerr) {
		s3_check_transport(s3, xerr, http_request_error_text(c.req), out, outlen);
		store_set_error(xerr, 0, NULL, http_request_error_text(c.req));
		rv = xerr;
		goto done;
	}
	status = http_request_status(c.req);
	if (status >= 200 && status <= 299) {
		/* A 200 that is not a bucket listing (e.g. the service's ListAllMyBuckets when
		 * the server did not see the bucket in a virtual-host name) is no success. */
		struct s3xml_list xl = {0};
		body = http_request_body(c.req, &blen);
		rv = s3xml_parse_list(body ? body : "", blen, &xl);
		s3xml_list_free(&xl);
		if (rv == EPROTO) {
			snprintf(out, outlen,
				 "cannot access bucket '%s' at %s: the answer is not a listing of the "
				 "bucket (%s-style addressing not understood by this server? try "
				 "path_style=%d)",
				 s3->bucket, s3->endpoint, s3->path_style ? "path" : "virtual-host",
				 s3->path_style ? 0 : 1);
			store_set_error(rv, status, NULL, "unexpected answer to a bucket listing");
		} else if (rv) {
			snprintf(out, outlen, "out of memory");
		}
		goto done;
	}
	rv = s3_response_error(&c);
	answer.bucket = s3->bucket;
	answer.endpoint = s3->endpoint;
	answer.region = s3->region;
	answer.region_option = s3->region_option;
	answer.status = status;
	answer.body = http_request_body(c.req, &answer.body_len);
	answer.bucket_region = http_request_response_header(c.req, "x-amz-bucket-region");
	pthread_mutex_lock(&s3->cred_lock);
	answer.session_token = s3->session_token != NULL;
	pthread_mutex_unlock(&s3->cred_lock);
	store_s3_check_message(&answer, out, outlen);
done:
	s3_call_free(&c);
	return rv;
}

/* ---- life cycle ---- */

static void s3_destroy(struct store *st)
{
	struct store_s3 *s3 = s3_of(st);

	if (!s3)
		return;
	pthread_mutex_destroy(&s3->cred_lock);
	free(s3->endpoint);
	free(s3->scheme);
	free(s3->authority);
	free(s3->base_path);
	free(s3->host_header);
	free(s3->region);
	free(s3->region_option);
	free(s3->bucket);
	free(s3->prefix);
	free(s3->access_key);
	if (s3->secret_key) {
		volatile char *p = s3->secret_key;
		while (*p)
			*p++ = 0;
	}
	free(s3->secret_key);
	free(s3->session_token);
	free(s3);
}

static const struct store_ops s3_ops = {
	.kind = "s3",
	.utf8_keys = true,
	.head = s3_head,
	.get = s3_get,
	.get_iov = s3_get_iov,
	.list = s3_list,
	.put = s3_put,
	.copy = s3_copy,
	.remove = s3_remove,
	.mpu_create = s3_mpu_create,
	.mpu_part = s3_mpu_part,
	.mpu_complete = s3_mpu_complete,
	.mpu_abort = s3_mpu_abort,
	.check = s3_check,
	.destroy = s3_destroy,
};

static bool s3_is_ipv4(const char *host, size_t len)
{
	size_t dots = 0;

	for (size_t i = 0; i < len; i++) {
		if (host[i] == '.')
			dots++;
		else if (!isdigit((unsigned char)host[i]))
			return false;
	}
	return dots == 3;
}

/* A bucket name that can be a DNS label in a virtual-host URL. */
static bool s3_bucket_dns_ok(const char *b)
{
	for (const char *p = b; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
			return false;
	return true;
}

/*
 * Split "scheme://host[:port][/path]" into s3's scheme, authority and base_path.
 * 0 or EINVAL.
 */
static int s3_parse_endpoint(struct store_s3 *s3, const char *url, bool *host_is_ip_or_local)
{
	const char *p, *auth, *end, *host_end, *port;
	size_t hlen;

	if (strncmp(url, "http://", 7) == 0) {
		s3->scheme = strdup("http");
		auth = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		s3->scheme = strdup("https");
		auth = url + 8;
	} else {
		return EINVAL;
	}
	end = auth + strcspn(auth, "/?#");
	if (*end == '?' || *end == '#' || end == auth)
		return EINVAL;
	for (p = auth; p < end; p++)
		if (*p == '@' || isspace((unsigned char)*p) || (unsigned char)*p < 0x21)
			return EINVAL;
	if (*auth == '[') {
		host_end = memchr(auth, ']', (size_t)(end - auth));
		if (!host_end || host_end == auth + 1)
			return EINVAL;
		host_end++;
		*host_is_ip_or_local = true;
	} else {
		host_end = memchr(auth, ':', (size_t)(end - auth));
		if (!host_end)
			host_end = end;
		for (p = auth; p < host_end; p++)
			if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_'))
				return EINVAL;
		hlen = (size_t)(host_end - auth);
		if (hlen == 0)
			return EINVAL;
		*host_is_ip_or_local = s3_is_ipv4(auth, hlen) ||
				       (hlen == 9 && strncasecmp(auth, "localhost", 9) == 0);
	}
	if (host_end < end) {
		unsigned long v = 0;
		if (*host_end != ':')
			return EINVAL;
		port = host_end + 1;
		if (port == end || end - port > 5)
			return EINVAL;
		for (p = port; p < end; p++) {
			if (!isdigit((unsigned char)*p))
				return EINVAL;
			v = v * 10 + (unsigned long)(*p - '0');
		}
		if (v < 1 || v > 65535)
			return EINVAL;
	}
	s3->authority = strndup(auth, (size_t)(end - auth));
	{
		size_t plen = strcspn(end, "?#");
		while (plen && end[plen - 1] == '/')
			plen--;
		if (strcspn(end, "?#") != strlen(end))
			return EINVAL;
		s3->base_path = strndup(end, plen);
	}
	return 0;
}

struct store *store_s3_create(const struct store_s3_config *cfg, struct http_engine *eng,
			      char *err, size_t errlen)
{
	struct store_s3 *s3 = calloc(1, sizeof(*s3));
	const char *region = cfg->region && cfg->region[0] ? cfg->region : "us-east-1";
	const char *prefix = cfg->prefix ? cfg->prefix : "";
	bool ip_or_local = false;

	if (!s3)
		goto oom;
	s3->base.ops = &s3_ops;
	s3->eng = eng;
	pthread_mutex_init(&s3->cred_lock, NULL);
	if (!cfg->bucket || !cfg->bucket[0] || strchr(cfg->bucket, '/')) {
		snprintf(err, errlen, "bad bucket name '%s'", cfg->bucket ? cfg->bucket : "");
		goto fail;
	}
	s3->endpoint = cfg->endpoint && cfg->endpoint[0]
			       ? strdup(cfg->endpoint)
			       : s3_printf("https://s3.%s.amazonaws.com", region);
	if (!s3->endpoint)
		goto oom;
	if (s3_parse_endpoint(s3, s3->endpoint, &ip_or_local)) {
		snprintf(err, errlen,
			 "malformed endpoint '%s' (expected http://HOST[:PORT] or https://HOST[:PORT])",
			 s3->endpoint);
		goto fail;
	}
	while (*prefix == '/')
		prefix++;
	s3->region = strdup(region);
	s3->region_option = strdup(cfg->region_option ? cfg->region_option : "region");
	s3->bucket = strdup(cfg->bucket);
	s3->prefix = s3_printf("%s%s", prefix,
			       prefix[0] && prefix[strlen(prefix) - 1] != '/' ? "/" : "");
	if (!s3->scheme || !s3->authority || !s3->base_path || !s3->region || !s3->region_option ||
	    !s3->bucket || !s3->prefix)
		goto oom;
	if (cfg->path_style >= 0)
		s3->path_style = cfg->path_style != 0;
	else
		s3->path_style = ip_or_local || !s3_bucket_dns_ok(cfg->bucket);
	s3->host_header = s3->path_style ? strdup(s3->authority)
					 : s3_printf("%s.%s", s3->bucket, s3->authority);
	if (!s3->host_header)
		goto oom;
	if (store_s3_set_credentials(&s3->base, cfg->access_key, cfg->secret_key,
				     cfg->session_token))
		goto oom;
	/* fd bodies are always sent UNSIGNED-PAYLOAD (their integrity is Content-MD5's job);
	 * cfg->unsigned_payload only matters for a future streaming hash. */
	log_debug("s3 store: %s bucket '%s' prefix '%s' %s-style", s3->endpoint, s3->bucket,
		  s3->prefix, s3->path_style ? "path" : "virtual-host");
	return &s3->base;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	s3_destroy(s3 ? &s3->base : NULL);
	return NULL;
}

int store_s3_set_credentials(struct store *st, const char *access_key, const char *secret_key,
			     const char *session_token)
{
	struct store_s3 *s3 = s3_of(st);
	char *ak = strdup(access_key ? access_key : "");
	char *sk = strdup(secret_key ? secret_key : "");
	char *tok = session_token && session_token[0] ? strdup(session_token) : NULL;

	if (!ak || !sk || (session_token && session_token[0] && !tok)) {
		free(ak);
		free(sk);
		free(tok);
		return ENOMEM;
	}
	pthread_mutex_lock(&s3->cred_lock);
	free(s3->access_key);
	if (s3->secret_key) {
		volatile char *p = s3->secret_key;
		while (*p)
			*p++ = 0;
	}
	free(s3->secret_key);
	free(s3->session_token);
	s3->access_key = ak;
	s3->secret_key = sk;
	s3->session_token = tok;
	pthread_mutex_unlock(&s3->cred_lock);
	return 0;
}
