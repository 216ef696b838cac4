/*
 * http.c - the one libcurl engine: one CURLM driven by one thread, per-host admission,
 * retry timers, counters. The only file that includes <curl/curl.h>.
 *
 * Threads and locking:
 * - The engine thread owns the multi handle, every easy handle, the host table, the run,
 *   queue and backoff lists, the socket table and the counters. Nothing else touches them.
 * - eng->lock guards only the hand-over between the engine and other threads: the inbox of
 *   submitted requests, the list of requests to cancel, the stopping flag, the stats
 *   snapshot, and each request's `pending` flag and completion condvar. curl is never
 *   called with eng->lock held, except curl_multi_wakeup (a non-blocking write to a socket
 *   pair), which is called under the lock so that it can never race with the engine
 *   freeing the multi handle at shutdown.
 * - Request fields the caller sets are read by the engine only while the request is
 *   pending; result fields are written by the engine before the completion, which is
 *   published under eng->lock, so the caller reads them after it without a lock.
 *
 * A request's life: submit (inbox) -> queued on its host -> running (holds one admission
 * slot, one easy handle) -> [backoff timer, no slot -> queued again] -> done. An attempt
 * ends in exactly one function, attempt_release(), which is the only place a slot is given
 * back; a request completes in exactly one function, request_complete().
 */
#include "config.h"

#include "http.h"

#include "crypto.h"
#include "log.h"

#include <curl/curl.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if LIBCURL_VERSION_NUM < 0x075500
#error "objfs needs libcurl >= 7.85 (CURLOPT_PREREQFUNCTION, CURLOPT_PROTOCOLS_STR)"
#endif

#define HTTP_MEM_SINK_MAX (64u << 20)  /* default 2xx memory sink bound (EFBIG beyond) */
#define HTTP_ERR_BODY_MAX (64u << 10)  /* non-2xx bodies kept up to this, rest dropped */
#define HTTP_SCAN_PERIOD_MS 50         /* cancel flags and TLS timers checked this often */
#define HTTP_IDLE_WAIT_MS 10000        /* poll timeout with nothing to do */
#define HTTP_FILE_BUFFER (256L * 1024)
#define HTTP_DNS_CACHE_S 60L           /* the multi's shared DNS cache */
#define HTTP_EXPECT_MIN (1u << 20)     /* smaller bodies go without Expect: 100-continue */
#define HTTP_ATTEMPT_SOCKS 4           /* connecting sockets an attempt remembers */

/* ---- small intrusive list ---- */
struct http_link {
	struct http_link *prev, *next;
};

static void link_init(struct http_link *l)
{
	l->prev = l->next = l;
}

static bool link_empty(const struct http_link *l)
{
	return l->next == l;
}

static void link_insert_after(struct http_link *pos, struct http_link *l)
{
	l->prev = pos;
	l->next = pos->next;
	pos->next->prev = l;
	pos->next = l;
}

static void link_add_tail(struct http_link *head, struct http_link *l)
{
	link_insert_after(head->prev, l);
}

static void link_del(struct http_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	link_init(l);
}

/* Move every element of from to the tail of to; from becomes empty. */
static void link_splice(struct http_link *from, struct http_link *to)
{
	if (link_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	link_init(from);
}

#define link_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- headers and buffers ---- */
struct http_header {
	char *name, *value;
};

struct http_header_list {
	struct http_header *v;
	size_t n, cap;
};

static void header_list_clear(struct http_header_list *hl)
{
	for (size_t i = 0; i < hl->n; i++) {
		free(hl->v[i].name);
		free(hl->v[i].value);
	}
	hl->n = 0;
}

static void header_list_free(struct http_header_list *hl)
{
	header_list_clear(hl);
	free(hl->v);
	hl->v = NULL;
	hl->cap = 0;
}

static struct http_header *header_list_find(const struct http_header_list *hl, const char *name)
{
	for (size_t i = 0; i < hl->n; i++)
		if (strcasecmp(hl->v[i].name, name) == 0)
			return &hl->v[i];
	return NULL;
}

/* Append (never replaces). Returns 0 or ENOMEM. name/value of length nlen/vlen. */
static int header_list_append(struct http_header_list *hl, const char *name, size_t nlen,
			      const char *value, size_t vlen)
{
	if (hl->n == hl->cap) {
		size_t cap = hl->cap ? hl->cap * 2 : 16;
		struct http_header *v = realloc(hl->v, cap * sizeof(*v));
		if (!v)
			return ENOMEM;
		hl->v = v;
		hl->cap = cap;
	}
	char *n = strndup(name, nlen);
	char *val = strndup(value, vlen);
	if (!n || !val) {
		free(n);
		free(val);
		return ENOMEM;
	}
	/* A CR or LF in a value would let it inject headers: flatten to spaces. */
	for (char *p = val; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	hl->v[hl->n].name = n;
	hl->v[hl->n].value = val;
	hl->n++;
	return 0;
}

struct http_membuf {
	char *data;
	size_t len, cap;
};

/* Append, keeping a NUL after the data. Returns 0 or ENOMEM. */
static int membuf_append(struct http_membuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* ---- the objects ---- */
enum http_request_state {
	REQ_IDLE = 0, /* created, or completed: owned by the caller */
	REQ_INBOX,    /* submitted, not yet seen by the engine */
	REQ_QUEUED,   /* waiting for an admission slot on its host */
	REQ_RUNNING,  /* admitted: holds a slot and an easy handle */
	REQ_BACKOFF,  /* waiting for its retry timer: holds no slot */
};

enum http_body_kind { BODY_NONE = 0, BODY_MEM, BODY_FD };
enum http_sink_kind { SINK_MEM = 0, SINK_FD, SINK_CB };

struct http_host {
	char key[128]; /* "scheme://host:port" */
	unsigned limit; /* current admission limit, 1..cap */
	unsigned in_flight, in_flight_bg, max_in_flight_seen;
	unsigned queued_fg, queued_bg;
	unsigned epoch; /* bumped on every shrink; see host_feedback() */
	struct http_link queue_fg, queue_bg;
};

struct http_request {
	/* Set by the caller while the request is not pending; read by the engine. */
	char *method, *url;
	char host_key[128]; /* "" when the URL does not parse */
	struct http_header_list headers;
	enum http_priority prio;
	unsigned max_attempts; /* 0: the engine's */
	enum http_body_kind body_kind;
	const char *body_mem;
	int body_fd;
	off_t body_off;
	uint64_t body_len;
	enum http_sink_kind sink_kind;
	int sink_fd;
	off_t sink_off;
	int (*sink_cb)(void *ud, const void *data, size_t len);
	void (*sink_reset)(void *ud);
	void *sink_ud;
	int (*sign)(struct http_request *req, void *ud);
	void *sign_ud;
	const volatile int *cancel_flag;

	/* Protected by eng->lock. */
	struct http_engine *eng;
	bool pending;          /* submitted and not completed */
	bool cancel_requested; /* http_cancel() queued it on eng->cancels */
	struct http_link cancel_link;
	pthread_cond_t done_cond; /* signalled when pending turns false (http_execute) */
	void (*done)(struct http_request *req, int err, void *ud);
	void *done_ud;

	/* Engine thread only while pending; results for the caller afterwards. */
	enum http_request_state state;
	struct http_link link; /* in the inbox, a host queue, eng->running or eng->backoff */
	struct http_host *host;
	CURL *easy;
	struct curl_slist *slist;
	uint64_t due_ms;           /* REQ_BACKOFF: when to queue again */
	uint64_t tls_start_us;     /* https: when TCP was seen connected (0: not yet) */
	unsigned admit_epoch;      /* host->epoch when admitted */
	bool has_conn;             /* the PREREQ callback ran: a ready connection is in use */
	unsigned connecting_socks; /* sockets opened by this attempt, not yet ready */
	unsigned n_opened;         /* sockets opened by this attempt (may exceed the array) */
	curl_socket_t opened[HTTP_ATTEMPT_SOCKS];
	uint64_t body_pos;
	struct crypto_md5_ctx *body_md5; /* http_request_hash_body(): hashed up to body_md5_pos */
	uint64_t body_md5_pos;
	bool body_md5_ok; /* false once the body was sent out of order */
	uint64_t sink_bytes;
	int abort_err;  /* why the engine aborted the transfer (xferinfo returns non-zero) */
	int sink_err;   /* the write side failed: EFBIG, ENOMEM, pwrite errno, callback errno */
	int read_err;   /* the upload source failed */
	long status;
	unsigned attempts;
	int err;
	struct http_header_list resp_headers;
	struct http_membuf mem;
	char curl_err[CURL_ERROR_SIZE];
	char error_text[256];
};

struct http_sock {
	bool open;
	dev_t dev; /* identity of the socket behind the fd, to notice a close we missed */
	ino_t ino;
	struct http_request *opener; /* the attempt that opened it, until it is ready */
};

struct http_engine {
	struct http_config cfg; /* ca_file is a private copy */
	unsigned fg_reserve;    /* resolved: never 0 */
	CURLM *multi;
	pthread_t thread;

	pthread_mutex_t lock;
	/* Protected by lock. */
	struct http_link inbox;
	unsigned inbox_len;
	struct http_link cancels;
	bool stopping;
	bool exited;
	uint64_t stats_wanted, stats_made;
	pthread_cond_t stats_cond;
	struct http_stats snapshot;

	/* Engine thread only. */
	struct http_host **hosts;
	size_t n_hosts;
	struct http_link running, backoff;
	unsigned n_running, n_backoff;
	uint64_t last_scan_ms;
	struct http_sock *socks; /* indexed by fd */
	size_t socks_cap;
	unsigned open_socks, conns_in_use, connecting_socks;
	double budget_tokens;
	uint64_t budget_ms;
	uint64_t rng;
	uint64_t requests, failures, bytes_sent, bytes_received;
	uint64_t retries[HTTP_RETRY_NCAUSES];
	char last_error[256];
};

/* ---- time, random ---- */
static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
	return now_us() / 1000u;
}

static uint64_t rng_next(struct http_engine *eng)
{
	/* xorshift64*: enough for jitter. */
	uint64_t x = eng->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	eng->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* ---- config ---- */
void http_config_defaults(struct http_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_conns_per_host = 25;
	cfg->max_idle_total = 100;
	cfg->fg_reserve = 0;
	cfg->connect_timeout_ms = 30000;
	cfg->tls_timeout_ms = 3000;
	cfg->keepalive_s = 20;
	cfg->idle_timeout_s = 90;
	cfg->expect100_ms = 1000;
	cfg->request_timeout_s = 1800;
	cfg->low_speed_limit = 1024;
	cfg->low_speed_time_s = 30;
	cfg->max_attempts = 6;
	cfg->retry_base_ms = 100;
	cfg->retry_max_ms = 10000;
	cfg->retry_budget = 1000;
	cfg->ca_file = NULL;
	cfg->insecure = false;
	cfg->verbose = false;
}

const char *http_retry_cause_name(enum http_retry_cause c)
{
	static const char *const names[HTTP_RETRY_NCAUSES] = {
		[HTTP_RETRY_5XX] = "5xx",
		[HTTP_RETRY_SLOWDOWN] = "slowdown",
		[HTTP_RETRY_THROTTLE] = "throttle",
		[HTTP_RETRY_REQTIMEOUT] = "request_timeout",
		[HTTP_RETRY_RESOLVE] = "resolve",
		[HTTP_RETRY_CONNECT] = "connect",
		[HTTP_RETRY_TIMEOUT] = "timeout",
		[HTTP_RETRY_RESET] = "reset",
		[HTTP_RETRY_TLS] = "tls",
	};
	if ((unsigned)c >= HTTP_RETRY_NCAUSES)
		return "unknown";
	return names[c];
}

/* ---- requests: the caller's side ---- */

/* "scheme://host:port" of url into key (lower case), or "" when it does not parse. */
static void url_host_key(const char *url, char *key, size_t keysz)
{
	char *scheme = NULL, *host = NULL, *port = NULL;
	CURLU *u = curl_url();

	key[0] = '\0';
	if (!u)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
		goto out;
	snprintf(key, keysz, "%s://%s:%s", scheme, host, port);
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

static pthread_once_t http_global_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc;

static void http_global_init(void)
{
	http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct http_request *http_request_create(const char *method, const char *url)
{
	struct http_request *req;

	pthread_once(&http_global_once, http_global_init);
	req = calloc(1, sizeof(*req));
	if (!req)
		return NULL;
	req->method = strdup(method);
	req->url = strdup(url);
	if (!req->method || !req->url || pthread_cond_init(&req->done_cond, NULL) != 0) {
		free(req->method);
		free(req->url);
		free(req);
		errno = ENOMEM;
		return NULL;
	}
	for (char *p = req->method; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	url_host_key(url, req->host_key, sizeof(req->host_key));
	req->prio = HTTP_FOREGROUND;
	req->body_fd = -1;
	req->sink_fd = -1;
	link_init(&req->link);
	link_init(&req->cancel_link);
	return req;
}

void http_request_destroy(struct http_request *req)
{
	if (!req)
		return;
	/* Destroying a pending request is a caller bug that would crash later: stop here. */
	if (req->state != REQ_IDLE) {
		log_error("http: request '%s' destroyed while pending; this is a bug", req->method);
		abort();
	}
	header_list_free(&req->headers);
	header_list_free(&req->resp_headers);
	crypto_md5_destroy(req->body_md5);
	free(req->mem.data);
	pthread_cond_destroy(&req->done_cond);
	free(req->method);
	free(req->url);
	free(req);
}

void http_request_set_header(struct http_request *req, const char *name, const char *value)
{
	struct http_header *h = header_list_find(&req->headers, name);

	if (h) {
		size_t i = (size_t)(h - req->headers.v);
		free(h->name);
		free(h->value);
		memmove(&req->headers.v[i], &req->headers.v[i + 1],
			(req->headers.n - i - 1) * sizeof(*h));
		req->headers.n--;
	}
	if (value && header_list_append(&req->headers, name, strlen(name), value, strlen(value)))
		log_error("http: out of memory adding header '%s'", name);
}

void http_request_set_priority(struct http_request *req, enum http_priority prio)
{
	req->prio = prio;
}

void http_request_set_max_attempts(struct http_request *req, unsigned n)
{
	req->max_attempts = n;
}

void http_request_set_body_mem(struct http_request *req, const void *data, size_t len)
{
	req->body_kind = BODY_MEM;
	req->body_mem = data;
	req->body_len = len;
}

void http_request_set_body_fd(struct http_request *req, int fd, off_t off, uint64_t len)
{
	req->body_kind = BODY_FD;
	req->body_fd = fd;
	req->body_off = off;
	req->body_len = len;
}

int http_request_hash_body(struct http_request *req)
{
	if (!req->body_md5 && !(req->body_md5 = crypto_md5_create()))
		return ENOMEM;
	return 0;
}

bool http_request_body_md5(struct http_request *req, unsigned char out[16])
{
	if (!req->body_md5 || !req->body_md5_ok || req->body_md5_pos != req->body_len)
		return false;
	crypto_md5_final(req->body_md5, out);
	req->body_md5_ok = false; /* the context was reset: once */
	return true;
}

/* Start hashing the body again from its first byte. */
static void body_md5_restart(struct http_request *req)
{
	if (!req->body_md5)
		return;
	crypto_md5_reset(req->body_md5);
	req->body_md5_pos = 0;
	req->body_md5_ok = true;
}

void http_request_set_sink_fd(struct http_request *req, int fd, off_t off)
{
	req->sink_kind = SINK_FD;
	req->sink_fd = fd;
	req->sink_off = off;
}

void http_request_set_sink_cb(struct http_request *req,
			      int (*cb)(void *ud, const void *data, size_t len),
			      void (*reset)(void *ud), void *ud)
{
	req->sink_kind = SINK_CB;
	req->sink_cb = cb;
	req->sink_reset = reset;
	req->sink_ud = ud;
}

void http_request_set_signer(struct http_request *req,
			     int (*sign)(struct http_request *req, void *ud), void *ud)
{
	req->sign = sign;
	req->sign_ud = ud;
}

void http_request_set_cancel_flag(struct http_request *req, const volatile int *flag)
{
	req->cancel_flag = flag;
}

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_url(const struct http_request *req)
{
	return req->url;
}

bool http_request_header_at(const struct http_request *req, size_t i, const char **name,
			    const char **value)
{
	if (i >= req->headers.n)
		return false;
	*name = req->headers.v[i].name;
	*value = req->headers.v[i].value;
	return true;
}

long http_request_status(const struct http_request *req)
{
	return req->status;
}

const char *http_request_response_header(const struct http_request *req, const char *name)
{
	struct http_header *h = header_list_find(&req->resp_headers, name);
	return h ? h->value : NULL;
}

bool http_request_response_header_at(const struct http_request *req, size_t i, const char **name,
				     const char **value)
{
	if (i >= req->resp_headers.n)
		return false;
	*name = req->resp_headers.v[i].name;
	*value = req->resp_headers.v[i].value;
	return true;
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
	if (len)
		*len = req->mem.len;
	return req->mem.data ? req->mem.data : "";
}

uint64_t http_request_body_bytes(const struct http_request *req)
{
	return req->sink_bytes;
}

const char *http_request_error_text(const struct http_request *req)
{
	return req->error_text;
}

unsigned http_request_attempts(const struct http_request *req)
{
	return req->attempts;
}

static bool cancel_flag_set(const struct http_request *req)
{
	return req->cancel_flag && __atomic_load_n(req->cancel_flag, __ATOMIC_RELAXED) != 0;
}

/* ---- engine: hosts and admission ---- */

static bool is_engine_thread(const struct http_engine *eng)
{
	return pthread_equal(pthread_self(), eng->thread);
}

static struct http_host *host_get(struct http_engine *eng, const char *key)
{
	for (size_t i = 0; i < eng->n_hosts; i++)
		if (strcmp(eng->hosts[i]->key, key) == 0)
			return eng->hosts[i];
	struct http_host **v = realloc(eng->hosts, (eng->n_hosts + 1) * sizeof(*v));
	if (!v)
		return NULL;
	eng->hosts = v;
	struct http_host *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	snprintf(h->key, sizeof(h->key), "%s", key);
	h->limit = eng->cfg.max_conns_per_host;
	link_init(&h->queue_fg);
	link_init(&h->queue_bg);
	eng->hosts[eng->n_hosts++] = h;
	return h;
}

/* Slots background requests may hold on h: max(1, limit - fg_reserve). */
static unsigned host_bg_share(const struct http_engine *eng, const struct http_host *h)
{
	return h->limit > eng->fg_reserve ? h->limit - eng->fg_reserve : 1;
}

/* Queue req on its host: at the tail, or at the head for a retry (it waited already). */
static void host_enqueue(struct http_request *req, bool front)
{
	struct http_host *h = req->host;
	struct http_link *q = req->prio == HTTP_BACKGROUND ? &h->queue_bg : &h->queue_fg;

	if (front)
		link_insert_after(q, &req->link);
	else
		link_add_tail(q, &req->link);
	if (req->prio == HTTP_BACKGROUND)
		h->queued_bg++;
	else
		h->queued_fg++;
	req->state = REQ_QUEUED;
}

static void host_dequeue(struct http_request *req)
{
	link_del(&req->link);
	if (req->prio == HTTP_BACKGROUND)
		req->host->queued_bg--;
	else
		req->host->queued_fg--;
}

/*
 * AIMD on the host's limit. A SlowDown (503) or 429 halves it (not below 1), but only once
 * per "window": a throttle answer to a request admitted before the last shrink says nothing
 * new (the limit was higher then), so it does not shrink again. Every other HTTP answer
 * raises it by one, up to the cap.
 */
static void host_feedback(struct http_engine *eng, struct http_request *req, bool throttled)
{
	struct http_host *h = req->host;

	if (throttled) {
		if (req->admit_epoch == h->epoch) {
			h->limit = h->limit > 1 ? h->limit / 2 : 1;
			h->epoch++;
			log_debug("http: %s answered slow down: limit now %u", h->key, h->limit);
		}
	} else if (h->limit < eng->cfg.max_conns_per_host) {
		h->limit++;
	}
}

/* ---- engine: completion ---- */

/* Copy the URL without query string or user info: error texts must never carry secrets
 * (presigned query parameters, passwords). */
static void url_for_text(const char *url, char *out, size_t outsz)
{
	const char *p = strstr(url, "://");
	const char *host = p ? p + 3 : url;
	const char *end = host + strcspn(host, "/?#");
	const char *at = memchr(host, '@', (size_t)(end - host));
	size_t n;

	if (at) {
		snprintf(out, outsz, "%.*s", (int)(host - url), url);
		n = strlen(out);
		if (n < outsz)
			snprintf(out + n, outsz - n, "%s", at + 1);
	} else {
		snprintf(out, outsz, "%s", url);
	}
	out[strcspn(out, "?#")] = '\0';
}

static void request_set_error_text(struct http_request *req, const char *what)
{
	char url[160];

	url_for_text(req->url, url, sizeof(url));
	snprintf(req->error_text, sizeof(req->error_text), "%s %s: %s", req->method, url, what);
}

/*
 * The one place a request completes: counters, then publish under the lock, then the
 * done callback. After the unlock (sync) or the callback (async) the engine never touches
 * req again: its owner may destroy it.
 */
static void request_complete(struct http_engine *eng, struct http_request *req, int err)
{
	void (*done)(struct http_request *, int, void *);
	void *ud;

	req->err = err;
	req->state = REQ_IDLE;
	req->host = NULL;
	eng->requests++;
	if (err && err != ECANCELED) {
		eng->failures++;
		if (!req->error_text[0])
			request_set_error_text(req, strerror(err));
		snprintf(eng->last_error, sizeof(eng->last_error), "%s", req->error_text);
	} else if (!err && req->status >= 500) {
		/* retries ran out on a server error */
		eng->failures++;
		char what[64];
		snprintf(what, sizeof(what), "HTTP %ld after %u attempts", req->status,
			 req->attempts);
		request_set_error_text(req, what);
		snprintf(eng->last_error, sizeof(eng->last_error), "%s", req->error_text);
	} else if (err == ECANCELED) {
		request_set_error_text(req, "cancelled");
	}

	pthread_mutex_lock(&eng->lock);
	req->pending = false;
	if (!link_empty(&req->cancel_link))
		link_del(&req->cancel_link);
	req->cancel_requested = false;
	done = req->done;
	ud = req->done_ud;
	if (!done)
		pthread_cond_signal(&req->done_cond);
	pthread_mutex_unlock(&eng->lock);
	if (done)
		done(req, err, ud);
}

/* ---- engine: sockets (exact open / idle connection counts) ---- */

static struct http_sock *sock_slot(struct http_engine *eng, curl_socket_t fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= eng->socks_cap) {
		size_t cap = eng->socks_cap ? eng->socks_cap : 256;
		while (cap <= (size_t)fd)
			cap *= 2;
		struct http_sock *s = realloc(eng->socks, cap * sizeof(*s));
		if (!s)
			return NULL;
		memset(s + eng->socks_cap, 0, (cap - eng->socks_cap) * sizeof(*s));
		eng->socks = s;
		eng->socks_cap = cap;
	}
	return &eng->socks[fd];
}

/*
 * Counting sockets exactly. Every socket is opened by on_open_socket; libcurl closes most
 * through on_close_socket, but 7.88 closes a socket whose TCP connect never completed
 * (a transfer removed while connecting: cancel, engine abort, shutdown; a losing
 * happy-eyeballs attempt) with a plain close(), bypassing CURLOPT_CLOSESOCKETFUNCTION.
 * So the table remembers each socket's identity (st_dev, st_ino), and when an attempt's
 * connecting sockets settle (its connection is ready, or the attempt ended) each one is
 * checked: if its fd no longer refers to the same socket, it was closed behind our back.
 * A reused fd number found still marked open is corrected the same way.
 */
static void sock_forget(struct http_engine *eng, struct http_sock *s)
{
	s->open = false;
	eng->open_socks--;
	if (s->opener) {
		s->opener->connecting_socks--;
		eng->connecting_socks--;
		s->opener = NULL;
	}
}

static bool sock_still_ours(curl_socket_t fd, const struct http_sock *s)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
	       st.st_ino == s->ino;
}

/* The attempt's connecting sockets stop being "connecting" (its connection is ready, or
 * the attempt ended): the ones libcurl closed silently are counted closed. */
static void sock_settle(struct http_engine *eng, struct http_request *req)
{
	if (req->connecting_socks) {
		bool all = req->n_opened > HTTP_ATTEMPT_SOCKS;
		size_t n = all ? eng->socks_cap : req->n_opened;
		for (size_t i = 0; i < n && req->connecting_socks; i++) {
			curl_socket_t fd = all ? (curl_socket_t)i : req->opened[i];
			struct http_sock *s = &eng->socks[fd];
			if (!s->open || s->opener != req)
				continue;
			if (!sock_still_ours(fd, s)) {
				sock_forget(eng, s);
			} else {
				s->opener = NULL;
				req->connecting_socks--;
				eng->connecting_socks--;
			}
		}
	}
	req->n_opened = 0;
}

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct http_request *req = ud;
	struct http_engine *eng = req->eng;
	curl_socket_t fd;
	struct http_sock *s;
	struct stat st;

	(void)purpose;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	s = sock_slot(eng, fd);
	if (!s || fstat(fd, &st) != 0) {
		close(fd);
		return CURL_SOCKET_BAD;
	}
	if (s->open)
		sock_forget(eng, s); /* its earlier socket was closed without telling us */
	s->open = true;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	eng->open_socks++;
	if (req->n_opened < HTTP_ATTEMPT_SOCKS)
		req->opened[req->n_opened] = fd;
	req->n_opened++;
	if (req->has_conn) {
		/* libcurl replaces a connection that died under this transfer */
		req->has_conn = false;
		eng->conns_in_use--;
	}
	s->opener = req;
	req->connecting_socks++;
	eng->connecting_socks++;
	return fd;
}

static int on_close_socket(void *ud, curl_socket_t fd)
{
	struct http_engine *eng = ud;
	struct http_sock *s = sock_slot(eng, fd);

	if (s && s->open) {
		s->open = false;
		eng->open_socks--;
		if (s->opener) {
			s->opener->connecting_socks--;
			eng->connecting_socks--;
			s->opener = NULL;
		}
	}
	return close(fd);
}

/* libcurl calls this once the connection (TLS included) is ready or reused, right before
 * the request goes out: from here until the attempt ends it holds one connection. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
		     int conn_local_port)
{
	struct http_request *req = ud;
	struct http_engine *eng = req->eng;

	(void)conn_primary_ip;
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	sock_settle(eng, req);
	if (!req->has_conn) {
		req->has_conn = true;
		eng->conns_in_use++;
	}
	return CURL_PREREQFUNC_OK;
}

/* ---- engine: libcurl callbacks (engine thread, never block) ---- */

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct http_request *req = ud;
	size_t n = size * nitems, len = n;
	char *colon;

	while (len && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
		len--;
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* a status line: a new response begins (after a 100 Continue, say) */
		char line[64];
		long code = 0;
		snprintf(line, sizeof(line), "%.*s", (int)(len < 63 ? len : 63), buf);
		if (sscanf(line, "HTTP/%*s %ld", &code) == 1)
			req->status = code;
		header_list_clear(&req->resp_headers);
		return n;
	}
	colon = memchr(buf, ':', len);
	if (!colon || colon == buf)
		return n; /* blank line or folded continuation: ignored */
	const char *v = colon + 1, *end = buf + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (header_list_append(&req->resp_headers, buf, (size_t)(colon - buf), v,
			       (size_t)(end - v))) {
		req->sink_err = ENOMEM;
		return 0;
	}
	return n;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_request *req = ud;
	size_t n = size * nmemb;

	if (req->status < 200 || req->status > 299) {
		/* error bodies: bounded, the rest dropped (the head is what gets parsed) */
		size_t room = HTTP_ERR_BODY_MAX > req->mem.len ? HTTP_ERR_BODY_MAX - req->mem.len : 0;
		if (room && membuf_append(&req->mem, ptr, n < room ? n : room)) {
			req->sink_err = ENOMEM;
			return 0;
		}
		return n;
	}
	switch (req->sink_kind) {
	case SINK_MEM:
		if (req->mem.len + n > HTTP_MEM_SINK_MAX) {
			req->sink_err = EFBIG;
			return 0;
		}
		if (membuf_append(&req->mem, ptr, n)) {
			req->sink_err = ENOMEM;
			return 0;
		}
		break;
	case SINK_FD:
		for (size_t done = 0; done < n;) {
			ssize_t w = pwrite(req->sink_fd, ptr + done, n - done,
					   req->sink_off + (off_t)(req->sink_bytes + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				req->sink_err = w < 0 ? errno : EIO;
				return 0;
			}
			done += (size_t)w;
		}
		break;
	case SINK_CB: {
		int r = req->sink_cb(req->sink_ud, ptr, n);
		if (r) {
			req->sink_err = r;
			return 0;
		}
		break;
	}
	}
	req->sink_bytes += n;
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	struct http_request *req = ud;
	uint64_t left = req->body_len - req->body_pos;
	size_t want = size * nitems;

	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (req->body_kind == BODY_MEM) {
		memcpy(buf, req->body_mem + req->body_pos, want);
	} else {
		ssize_t r;
		do
			r = pread(req->body_fd, buf, want, req->body_off + (off_t)req->body_pos);
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			req->read_err = r < 0 ? errno : EIO; /* the file shrank under us */
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)r;
	}
	if (req->body_md5 && req->body_md5_ok) {
		if (req->body_pos == req->body_md5_pos) {
			crypto_md5_update(req->body_md5, buf, want);
			req->body_md5_pos += want;
		} else {
			req->body_md5_ok = false; /* bytes sent twice may differ: no hash */
		}
	}
	req->body_pos += want;
	return want;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct http_request *req = ud;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > req->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	req->body_pos = (uint64_t)offset;
	if (offset == 0)
		body_md5_restart(req);
	return CURL_SEEKFUNC_OK;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct http_request *req = ud;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	if (!req->abort_err && cancel_flag_set(req))
		req->abort_err = ECANCELED;
	return req->abort_err != 0;
}

/* ---- engine: attempts ---- */

static int build_headers(struct http_request *req)
{
	char line[8192];
	bool is_post = strcmp(req->method, "POST") == 0;

	for (size_t i = 0; i < req->headers.n; i++) {
		const struct http_header *h = &req->headers.v[i];
		struct curl_slist *s;
		/* curl: "Name;" sends an empty header, "Name: v" a valued one */
		if (h->value[0])
			snprintf(line, sizeof(line), "%s: %s", h->name, h->value);
		else
			snprintf(line, sizeof(line), "%s;", h->name);
		s = curl_slist_append(req->slist, line);
		if (!s)
			return ENOMEM;
		req->slist = s;
	}
	/* libcurl sends Expect: 100-continue with every PUT body; below HTTP_EXPECT_MIN the
	 * round trip it costs buys nothing (curl's own rule for POST), so it is left out unless
	 * the caller asked for it. */
	if (req->body_kind != BODY_NONE && req->body_len < HTTP_EXPECT_MIN &&
	    !header_list_find(&req->headers, "Expect")) {
		struct curl_slist *s = curl_slist_append(req->slist, "Expect:");
		if (!s)
			return ENOMEM;
		req->slist = s;
	}
	/* libcurl would label a POST body form data; S3 bodies are not. */
	if (is_post && !header_list_find(&req->headers, "Content-Type")) {
		struct curl_slist *s = curl_slist_append(req->slist, "Content-Type:");
		if (!s)
			return ENOMEM;
		req->slist = s;
	}
	return 0;
}

#define SETOPT(opt, val)                                                               \
	do {                                                                           \
		if (!rc)                                                               \
			rc = curl_easy_setopt(easy, opt, val);                         \
	} while (0)

static int easy_configure(struct http_engine *eng, struct http_request *req, CURL *easy)
{
	const struct http_config *c = &eng->cfg;
	CURLcode rc = CURLE_OK;
	curl_off_t len = (curl_off_t)req->body_len;

	SETOPT(CURLOPT_PRIVATE, req);
	SETOPT(CURLOPT_URL, req->url);
	/* Object keys may contain "." and ".." segments: send the path exactly as signed. */
	SETOPT(CURLOPT_PATH_AS_IS, 1L);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	SETOPT(CURLOPT_TCP_KEEPALIVE, c->keepalive_s > 0 ? 1L : 0L);
	if (c->keepalive_s > 0) {
		SETOPT(CURLOPT_TCP_KEEPIDLE, c->keepalive_s);
		SETOPT(CURLOPT_TCP_KEEPINTVL, c->keepalive_s);
	}
	SETOPT(CURLOPT_MAXAGE_CONN, c->idle_timeout_s);
	SETOPT(CURLOPT_EXPECT_100_TIMEOUT_MS, c->expect100_ms);
	SETOPT(CURLOPT_TIMEOUT_MS, c->request_timeout_s * 1000L);
	if (c->low_speed_limit > 0 && c->low_speed_time_s > 0) {
		SETOPT(CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
		SETOPT(CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	}
	SETOPT(CURLOPT_DNS_SHUFFLE_ADDRESSES, 1L);
	SETOPT(CURLOPT_DNS_CACHE_TIMEOUT, HTTP_DNS_CACHE_S);
	SETOPT(CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
	if (c->ca_file)
		SETOPT(CURLOPT_CAINFO, c->ca_file);
	SETOPT(CURLOPT_VERBOSE, c->verbose ? 1L : 0L);
	SETOPT(CURLOPT_ERRORBUFFER, req->curl_err);
	SETOPT(CURLOPT_HTTPHEADER, req->slist);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, req);
	SETOPT(CURLOPT_WRITEFUNCTION, on_write);
	SETOPT(CURLOPT_WRITEDATA, req);
	/* A body written into a file or handed to a callback (a GET's data) arrives in pieces
	 * of this size: one recv and one write per 256 KiB instead of per 16 KiB (curl's
	 * default) when the data is there. */
	if (req->sink_fd >= 0 || req->sink_cb)
		SETOPT(CURLOPT_BUFFERSIZE, HTTP_FILE_BUFFER);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
	SETOPT(CURLOPT_XFERINFODATA, req);
	SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	SETOPT(CURLOPT_OPENSOCKETDATA, req);
	/* stored with the connection, which outlives the request: the engine, not req */
	SETOPT(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	SETOPT(CURLOPT_CLOSESOCKETDATA, eng);
	SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
	SETOPT(CURLOPT_PREREQDATA, req);

	if (req->body_kind != BODY_NONE) {
		SETOPT(CURLOPT_READFUNCTION, on_read);
		SETOPT(CURLOPT_READDATA, req);
		SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
		SETOPT(CURLOPT_SEEKDATA, req);
	}
	if (strcmp(req->method, "GET") == 0) {
		SETOPT(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(req->method, "HEAD") == 0) {
		SETOPT(CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "POST") == 0) {
		SETOPT(CURLOPT_POST, 1L);
		if (req->body_kind == BODY_NONE)
			SETOPT(CURLOPT_POSTFIELDS, "");
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, req->body_kind == BODY_NONE ? (curl_off_t)0 : len);
	} else if (strcmp(req->method, "PUT") == 0 || req->body_kind != BODY_NONE) {
		/* PUT, or another method with a body: an upload */
		if (req->body_kind == BODY_NONE) {
			SETOPT(CURLOPT_READFUNCTION, on_read);
			SETOPT(CURLOPT_READDATA, req);
		}
		SETOPT(CURLOPT_UPLOAD, 1L);
		SETOPT(CURLOPT_INFILESIZE_LARGE, req->body_kind == BODY_NONE ? (curl_off_t)0 : len);
		if (strcmp(req->method, "PUT") != 0)
			SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
	} else {
		SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
	}
	if (rc) {
		request_set_error_text(req, curl_easy_strerror(rc));
		return rc == CURLE_OUT_OF_MEMORY ? ENOMEM : EINVAL;
	}
	return 0;
}

#undef SETOPT

/*
 * Start one attempt of a request just dequeued from its host: sign, configure, add to the
 * multi; on success it holds a slot. On failure it completes the request (no slot held).
 */
static void attempt_start(struct http_engine *eng, struct http_request *req)
{
	struct http_host *h = req->host;
	int err;

	req->status = 0;
	header_list_clear(&req->resp_headers);
	req->mem.len = 0;
	if (req->mem.data)
		req->mem.data[0] = '\0';
	if (req->attempts > 0 && req->sink_kind == SINK_CB && req->sink_reset)
		req->sink_reset(req->sink_ud);
	req->sink_bytes = 0;
	req->body_pos = 0;
	body_md5_restart(req);
	req->abort_err = req->sink_err = req->read_err = 0;
	req->curl_err[0] = '\0';
	req->has_conn = false;
	req->connecting_socks = 0;
	req->n_opened = 0;
	req->attempts++;
	curl_slist_free_all(req->slist);
	req->slist = NULL;

	if (req->sign && (err = req->sign(req, req->sign_ud)) != 0) {
		request_set_error_text(req, "signing failed");
		goto fail;
	}
	err = build_headers(req);
	if (err)
		goto fail;
	req->easy = curl_easy_init();
	if (!req->easy) {
		err = ENOMEM;
		goto fail;
	}
	err = easy_configure(eng, req, req->easy);
	if (err)
		goto fail_easy;
	req->tls_start_us = 0;
	if (curl_multi_add_handle(eng->multi, req->easy) != CURLM_OK) {
		err = ENOMEM;
		goto fail_easy;
	}
	req->state = REQ_RUNNING;
	req->admit_epoch = h->epoch;
	link_add_tail(&eng->running, &req->link);
	eng->n_running++;
	h->in_flight++;
	if (req->prio == HTTP_BACKGROUND)
		h->in_flight_bg++;
	if (h->in_flight > h->max_in_flight_seen)
		h->max_in_flight_seen = h->in_flight;
	return;

fail_easy:
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
fail:
	curl_slist_free_all(req->slist);
	req->slist = NULL;
	request_complete(eng, req, err);
}

/* Admit queued requests of h while slots are free: foreground first; background only up to
 * its share, so that foreground always finds a slot. */
static void host_admit(struct http_engine *eng, struct http_host *h)
{
	while (h->in_flight < h->limit) {
		struct http_link *l = NULL;
		if (!link_empty(&h->queue_fg))
			l = h->queue_fg.next;
		else if (!link_empty(&h->queue_bg) && h->in_flight_bg < host_bg_share(eng, h))
			l = h->queue_bg.next;
		if (!l)
			break;
		struct http_request *req = link_entry(l, struct http_request, link);
		host_dequeue(req);
		attempt_start(eng, req);
	}
}

static void admit_all(struct http_engine *eng)
{
	for (size_t i = 0; i < eng->n_hosts; i++)
		host_admit(eng, eng->hosts[i]);
}

/*
 * The one place an attempt gives its slot back (normal end, cancel, abort, shutdown):
 * detach the easy handle from the multi, count its bytes, free it.
 */
static void attempt_release(struct http_engine *eng, struct http_request *req)
{
	struct http_host *h = req->host;
	curl_off_t up = 0, down = 0;

	curl_easy_getinfo(req->easy, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(req->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
	eng->bytes_sent += (uint64_t)(up > 0 ? up : 0);
	eng->bytes_received += (uint64_t)(down > 0 ? down : 0);
	curl_multi_remove_handle(eng->multi, req->easy); /* may close its socket */
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
	curl_slist_free_all(req->slist);
	req->slist = NULL;
	sock_settle(eng, req);
	if (req->has_conn) {
		req->has_conn = false;
		eng->conns_in_use--;
	}
	link_del(&req->link);
	eng->n_running--;
	h->in_flight--;
	if (req->prio == HTTP_BACKGROUND)
		h->in_flight_bg--;
	req->state = REQ_IDLE;
}

/* Take req out of wherever it waits or runs and complete it with err (cancel, shutdown). */
static void request_abandon(struct http_engine *eng, struct http_request *req, int err)
{
	switch (req->state) {
	case REQ_RUNNING:
		attempt_release(eng, req);
		break;
	case REQ_QUEUED:
		host_dequeue(req);
		break;
	case REQ_BACKOFF:
		link_del(&req->link);
		eng->n_backoff--;
		break;
	case REQ_INBOX:
		link_del(&req->link);
		break;
	case REQ_IDLE:
		return; /* not ours (already completed) */
	}
	request_complete(eng, req, err);
}

static bool budget_take(struct http_engine *eng)
{
	double cap = eng->cfg.retry_budget;
	uint64_t now = now_ms();

	if (!eng->cfg.retry_budget)
		return true;
	eng->budget_tokens += (double)(now - eng->budget_ms) * cap / 60000.0;
	if (eng->budget_tokens > cap)
		eng->budget_tokens = cap;
	eng->budget_ms = now;
	if (eng->budget_tokens < 1.0)
		return false;
	eng->budget_tokens -= 1.0;
	return true;
}

/* Full jitter: random(0, min(max, base * 2^(attempts - 1))). */
static uint64_t backoff_ms(struct http_engine *eng, unsigned attempts)
{
	uint64_t base = eng->cfg.retry_base_ms > 0 ? (uint64_t)eng->cfg.retry_base_ms : 1;
	uint64_t max = eng->cfg.retry_max_ms > 0 ? (uint64_t)eng->cfg.retry_max_ms : base;
	uint64_t ceil = base;

	for (unsigned i = 1; i < attempts && ceil < max; i++)
		ceil *= 2;
	if (ceil > max)
		ceil = max;
	return rng_next(eng) % (ceil + 1);
}

static void backoff_insert(struct http_engine *eng, struct http_request *req)
{
	struct http_link *pos = eng->backoff.prev;

	/* sorted by due time; new timers are usually the latest, so search from the tail */
	while (pos != &eng->backoff &&
	       link_entry(pos, struct http_request, link)->due_ms > req->due_ms)
		pos = pos->prev;
	link_insert_after(pos, &req->link);
	req->state = REQ_BACKOFF;
	eng->n_backoff++;
}

/* Map a libcurl result to an errno and, when a retry may help, a cause. */
static int transport_errno(struct http_request *req, CURLcode rc, int *cause)
{
	long os_errno = 0;

	*cause = -1;
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		*cause = HTTP_RETRY_RESOLVE;
		return EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		*cause = HTTP_RETRY_CONNECT;
		if (req->easy)
			curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);
		if (os_errno == ENETUNREACH || os_errno == EHOSTUNREACH)
			return EHOSTUNREACH;
		if (os_errno == ETIMEDOUT)
			return ETIMEDOUT;
		return ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		*cause = HTTP_RETRY_TIMEOUT;
		return ETIMEDOUT;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		*cause = HTTP_RETRY_RESET;
		return ECONNRESET;
	case CURLE_SSL_CONNECT_ERROR:
		*cause = HTTP_RETRY_TLS;
		return EPROTO;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_USE_SSL_FAILED:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_HTTP2:
		return EPROTO;
	case CURLE_URL_MALFORMAT:
		return EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return ENOMEM;
	case CURLE_WRITE_ERROR:
		return req->sink_err ? req->sink_err : EIO;
	case CURLE_READ_ERROR:
	case CURLE_ABORTED_BY_CALLBACK:
		if (req->abort_err) {
			if (req->abort_err == ETIMEDOUT)
				*cause = HTTP_RETRY_TIMEOUT;
			return req->abort_err;
		}
		return req->read_err ? req->read_err : EIO;
	default:
		return req->sink_err ? req->sink_err : EIO;
	}
}

/* Whether an HTTP answer asks for a retry, and why. */
static int status_retry_cause(const struct http_request *req)
{
	switch (req->status) {
	case 500:
	case 502:
	case 504:
		return HTTP_RETRY_5XX;
	case 503:
		return HTTP_RETRY_SLOWDOWN;
	case 429:
		return HTTP_RETRY_THROTTLE;
	case 400:
		if (req->mem.data && strstr(req->mem.data, "<Code>RequestTimeout</Code>"))
			return HTTP_RETRY_REQTIMEOUT;
		return -1;
	default:
		return -1;
	}
}

/*
 * An attempt ended (its slot is already released by the caller of this function for
 * engine aborts, or here for CURLMSG_DONE): decide between retry and completion.
 * rc is libcurl's result, or CURLE_ABORTED_BY_CALLBACK with req->abort_err set for an
 * abort by the engine.
 */
static void attempt_finish(struct http_engine *eng, struct http_request *req, CURLcode rc)
{
	unsigned max = req->max_attempts ? req->max_attempts : eng->cfg.max_attempts;
	int err = 0, cause = -1;

	if (rc != CURLE_OK) {
		err = transport_errno(req, rc, &cause);
		if (req->abort_err == ETIMEDOUT && req->error_text[0])
			; /* the engine wrote its own text (TLS handshake) */
		else if (err != ECANCELED)
			request_set_error_text(req, req->curl_err[0] ? req->curl_err
								  : curl_easy_strerror(rc));
	} else {
		cause = status_retry_cause(req);
		host_feedback(eng, req, req->status == 503 || req->status == 429);
	}
	if (req->state == REQ_RUNNING)
		attempt_release(eng, req);
	if (err == ECANCELED || (cause >= 0 && cancel_flag_set(req))) {
		request_complete(eng, req, ECANCELED);
		return;
	}
	if (cause >= 0 && req->attempts < max && budget_take(eng)) {
		uint64_t wait = backoff_ms(eng, req->attempts);
		eng->retries[cause]++;
		log_debug("http: retrying %s %s in %llu ms (%s)", req->method, req->host->key,
			  (unsigned long long)wait, http_retry_cause_name((enum http_retry_cause)cause));
		req->due_ms = now_ms() + wait;
		backoff_insert(eng, req);
		return;
	}
	request_complete(eng, req, err);
}

/* Abort a running transfer from the engine loop (not from a callback). */
static void attempt_abort(struct http_engine *eng, struct http_request *req, int err,
			  const char *text)
{
	req->abort_err = err;
	if (text)
		request_set_error_text(req, text);
	attempt_release(eng, req);
	attempt_finish(eng, req, CURLE_ABORTED_BY_CALLBACK);
}

/*
 * TLS handshake timeout. libcurl 7.88 has no timer for the handshake alone: it is part of
 * CURLOPT_CONNECTTIMEOUT_MS (DNS + TCP + TLS, 30 s by default), so a server that accepts
 * TCP and never answers the ClientHello would hold a slot for the whole connect timeout.
 * Nor can libcurl say when TCP alone is up: in 7.88 CURLINFO_CONNECT_TIME_T stays 0 until
 * the whole connection, TLS included, is ready. So the engine enforces tls_timeout_ms
 * itself, here, on every scan of the loop (every HTTP_SCAN_PERIOD_MS while transfers run),
 * for an https attempt whose connection is not ready yet (the PREREQ callback, which
 * libcurl calls once TLS is done or a connection is reused, has not run):
 *  1. while TCP is connecting, the sockets this attempt opened (the open-socket callback
 *     records them) answer getpeername() with ENOTCONN; the first scan that finds one
 *     connected notes the time: the handshake began then (at most one scan period ago);
 *  2. once tls_timeout_ms has passed since, the engine removes the transfer and ends the
 *     attempt with ETIMEDOUT (retry cause "timeout", error text naming the handshake).
 * The deadline therefore holds to within one scan period, late, never early.
 */
static void check_tls_timeout(struct http_engine *eng, struct http_request *req, uint64_t now)
{
	if (eng->cfg.tls_timeout_ms <= 0 || req->has_conn || strncmp(req->host->key, "https:", 6))
		return;
	if (!req->tls_start_us) {
		bool all = req->n_opened > HTTP_ATTEMPT_SOCKS;
		size_t n = all ? eng->socks_cap : req->n_opened;
		for (size_t i = 0; req->connecting_socks && i < n; i++) {
			curl_socket_t fd = all ? (curl_socket_t)i : req->opened[i];
			struct sockaddr_storage peer;
			socklen_t len = sizeof(peer);
			if (eng->socks[fd].opener == req && eng->socks[fd].open &&
			    getpeername(fd, (struct sockaddr *)&peer, &len) == 0) {
				req->tls_start_us = now;
				break;
			}
		}
		return;
	}
	if (now < req->tls_start_us + (uint64_t)eng->cfg.tls_timeout_ms * 1000u)
		return;
	char text[96];
	snprintf(text, sizeof(text), "TLS handshake not finished after %ld ms",
		 eng->cfg.tls_timeout_ms);
	attempt_abort(eng, req, ETIMEDOUT, text);
}

/* Poll cancel flags everywhere and TLS deadlines of running attempts. */
static void scan(struct http_engine *eng)
{
	uint64_t now = now_us();
	struct http_link *l, *next;

	for (l = eng->running.next; l != &eng->running; l = next) {
		struct http_request *req = link_entry(l, struct http_request, link);
		next = l->next;
		if (cancel_flag_set(req))
			request_abandon(eng, req, ECANCELED);
		else
			check_tls_timeout(eng, req, now);
	}
	for (l = eng->backoff.next; l != &eng->backoff; l = next) {
		struct http_request *req = link_entry(l, struct http_request, link);
		next = l->next;
		if (cancel_flag_set(req))
			request_abandon(eng, req, ECANCELED);
	}
	for (size_t i = 0; i < eng->n_hosts; i++) {
		struct http_host *h = eng->hosts[i];
		struct http_link *queues[2] = { &h->queue_fg, &h->queue_bg };
		for (int q = 0; q < 2; q++)
			for (l = queues[q]->next; l != queues[q]; l = next) {
				struct http_request *req = link_entry(l, struct http_request, link);
				next = l->next;
				if (cancel_flag_set(req))
					request_abandon(eng, req, ECANCELED);
			}
	}
}

/* Requests whose backoff is over join the head of their host's queue. */
static void fire_timers(struct http_engine *eng)
{
	uint64_t now = now_ms();

	while (!link_empty(&eng->backoff)) {
		struct http_request *req = link_entry(eng->backoff.next, struct http_request, link);
		if (req->due_ms > now)
			break;
		link_del(&req->link);
		eng->n_backoff--;
		host_enqueue(req, true);
	}
}

static void take_new(struct http_engine *eng, struct http_link *batch)
{
	while (!link_empty(batch)) {
		struct http_request *req = link_entry(batch->next, struct http_request, link);
		link_del(&req->link);
		req->state = REQ_IDLE;
		if (!req->host_key[0]) {
			request_set_error_text(req, "not an http or https URL");
			request_complete(eng, req, EINVAL);
			continue;
		}
		req->host = host_get(eng, req->host_key);
		if (!req->host) {
			request_complete(eng, req, ENOMEM);
			continue;
		}
		if (cancel_flag_set(req)) {
			request_complete(eng, req, ECANCELED);
			continue;
		}
		host_enqueue(req, false);
	}
}

static void read_done(struct http_engine *eng)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(eng->multi, &left)) != NULL) {
		struct http_request *req = NULL;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
		/* msg points into the handle: read the result before releasing it */
		attempt_finish(eng, req, msg->data.result);
	}
}

/* ---- stats ---- */

/* Engine thread, eng->lock held (inbox_len). */
static void stats_fill(struct http_engine *eng, struct http_stats *out)
{
	unsigned in_use = eng->conns_in_use + eng->connecting_socks;

	memset(out, 0, sizeof(*out));
	out->requests = eng->requests;
	out->failures = eng->failures;
	out->bytes_sent = eng->bytes_sent;
	out->bytes_received = eng->bytes_received;
	memcpy(out->retries, eng->retries, sizeof(out->retries));
	out->in_flight = eng->n_running;
	out->queued = eng->inbox_len;
	for (size_t i = 0; i < eng->n_hosts; i++)
		out->queued += eng->hosts[i]->queued_fg + eng->hosts[i]->queued_bg;
	out->waiting_retry = eng->n_backoff;
	out->open_connections = eng->open_socks;
	out->idle_connections = eng->open_socks > in_use ? eng->open_socks - in_use : 0;
	snprintf(out->last_error, sizeof(out->last_error), "%s", eng->last_error);
	for (size_t i = 0; i < eng->n_hosts && out->n_hosts < sizeof(out->hosts) / sizeof(out->hosts[0]);
	     i++) {
		const struct http_host *h = eng->hosts[i];
		struct http_host_stats *hs = &out->hosts[out->n_hosts++];
		snprintf(hs->host, sizeof(hs->host), "%s", h->key);
		hs->in_flight = h->in_flight;
		hs->limit = h->limit;
		hs->queued_fg = h->queued_fg;
		hs->queued_bg = h->queued_bg;
		hs->max_in_flight_seen = h->max_in_flight_seen;
	}
}

void http_get_stats(struct http_engine *eng, struct http_stats *out)
{
	uint64_t want;

	pthread_mutex_lock(&eng->lock);
	if (is_engine_thread(eng)) {
		stats_fill(eng, out);
		pthread_mutex_unlock(&eng->lock);
		return;
	}
	want = ++eng->stats_wanted;
	if (!eng->exited)
		curl_multi_wakeup(eng->multi);
	while (eng->stats_made < want && !eng->exited)
		pthread_cond_wait(&eng->stats_cond, &eng->lock);
	*out = eng->snapshot;
	pthread_mutex_unlock(&eng->lock);
}

/* ---- the engine thread ---- */

static int poll_timeout_ms(struct http_engine *eng)
{
	uint64_t t = HTTP_IDLE_WAIT_MS;
	bool busy = eng->n_running || eng->n_backoff;

	for (size_t i = 0; !busy && i < eng->n_hosts; i++)
		busy = eng->hosts[i]->queued_fg || eng->hosts[i]->queued_bg;
	if (busy)
		t = HTTP_SCAN_PERIOD_MS;
	if (!link_empty(&eng->backoff)) {
		uint64_t due = link_entry(eng->backoff.next, struct http_request, link)->due_ms;
		uint64_t now = now_ms();
		uint64_t d = due > now ? due - now : 0;
		if (d < t)
			t = d;
	}
	return (int)t;
}

static void shutdown_all(struct http_engine *eng)
{
	while (!link_empty(&eng->running))
		request_abandon(eng, link_entry(eng->running.next, struct http_request, link),
				ECANCELED);
	while (!link_empty(&eng->backoff))
		request_abandon(eng, link_entry(eng->backoff.next, struct http_request, link),
				ECANCELED);
	for (size_t i = 0; i < eng->n_hosts; i++) {
		struct http_host *h = eng->hosts[i];
		while (!link_empty(&h->queue_fg))
			request_abandon(eng, link_entry(h->queue_fg.next, struct http_request, link),
					ECANCELED);
		while (!link_empty(&h->queue_bg))
			request_abandon(eng, link_entry(h->queue_bg.next, struct http_request, link),
					ECANCELED);
	}
}

static void *engine_main(void *arg)
{
	struct http_engine *eng = arg;
	struct http_link batch, cancels;
	bool stop = false;

	link_init(&batch);
	link_init(&cancels);
	for (;;) {
		pthread_mutex_lock(&eng->lock);
		link_splice(&eng->inbox, &batch);
		eng->inbox_len = 0;
		link_splice(&eng->cancels, &cancels);
		stop = eng->stopping;
		pthread_mutex_unlock(&eng->lock);

		take_new(eng, &batch);
		while (!link_empty(&cancels)) {
			struct http_request *req =
				link_entry(cancels.next, struct http_request, cancel_link);
			link_del(&req->cancel_link);
			request_abandon(eng, req, ECANCELED);
		}
		if (stop)
			break;
		if (now_ms() - eng->last_scan_ms >= HTTP_SCAN_PERIOD_MS) {
			eng->last_scan_ms = now_ms();
			scan(eng);
		}
		fire_timers(eng);
		admit_all(eng);

		int still = 0;
		curl_multi_perform(eng->multi, &still);
		read_done(eng);
		admit_all(eng);

		pthread_mutex_lock(&eng->lock);
		if (eng->stats_wanted != eng->stats_made) {
			stats_fill(eng, &eng->snapshot);
			eng->stats_made = eng->stats_wanted;
			pthread_cond_broadcast(&eng->stats_cond);
		}
		pthread_mutex_unlock(&eng->lock);

		curl_multi_poll(eng->multi, NULL, 0, poll_timeout_ms(eng), NULL);
	}

	/* Stopping: everything still pending completes with ECANCELED, here, on this thread.
	 * New submissions see eng->stopping and fail in the caller. */
	shutdown_all(eng);
	pthread_mutex_lock(&eng->lock);
	stats_fill(eng, &eng->snapshot);
	eng->exited = true;
	pthread_cond_broadcast(&eng->stats_cond);
	pthread_mutex_unlock(&eng->lock);
	return NULL;
}

struct http_engine *http_engine_create(const struct http_config *cfg)
{
	struct http_engine *eng;
	sigset_t all, old;
	struct sigaction sa;
	int err = ENOMEM;

	pthread_once(&http_global_once, http_global_init);
	if (http_global_rc != CURLE_OK) {
		log_error("http: libcurl initialisation failed: %s",
			  curl_easy_strerror(http_global_rc));
		errno = EIO;
		return NULL;
	}
	if (!cfg->max_conns_per_host) {
		errno = EINVAL;
		return NULL;
	}
	/* A peer closing a socket must not kill the process (CURLOPT_NOSIGNAL covers the rest). */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}

	eng = calloc(1, sizeof(*eng));
	if (!eng)
		goto fail;
	eng->cfg = *cfg;
	eng->cfg.ca_file = NULL;
	if (cfg->ca_file && !(eng->cfg.ca_file = strdup(cfg->ca_file)))
		goto fail_eng;
	eng->fg_reserve = cfg->fg_reserve ? cfg->fg_reserve
					  : (cfg->max_conns_per_host / 5 ? cfg->max_conns_per_host / 5 : 1);
	link_init(&eng->inbox);
	link_init(&eng->cancels);
	link_init(&eng->running);
	link_init(&eng->backoff);
	eng->budget_tokens = cfg->retry_budget;
	eng->budget_ms = now_ms();
	eng->rng = now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)eng;
	if (!eng->rng)
		eng->rng = 0x9E3779B97F4A7C15ULL;

	eng->multi = curl_multi_init();
	if (!eng->multi)
		goto fail_ca;
	if (curl_multi_setopt(eng->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			      (long)cfg->max_conns_per_host) != CURLM_OK ||
	    curl_multi_setopt(eng->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_idle_total) !=
		    CURLM_OK) {
		err = EINVAL;
		goto fail_multi;
	}
	if (pthread_mutex_init(&eng->lock, NULL))
		goto fail_multi;
	if (pthread_cond_init(&eng->stats_cond, NULL))
		goto fail_lock;

	/* The engine thread takes no signals: they belong to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&eng->thread, NULL, engine_main, eng);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto fail_cond;
	return eng;

fail_cond:
	pthread_cond_destroy(&eng->stats_cond);
fail_lock:
	pthread_mutex_destroy(&eng->lock);
fail_multi:
	curl_multi_cleanup(eng->multi);
fail_ca:
	free((char *)eng->cfg.ca_file);
fail_eng:
	free(eng);
fail:
	errno = err;
	return NULL;
}

void http_engine_destroy(struct http_engine *eng)
{
	if (!eng)
		return;
	pthread_mutex_lock(&eng->lock);
	eng->stopping = true;
	curl_multi_wakeup(eng->multi);
	pthread_mutex_unlock(&eng->lock);
	pthread_join(eng->thread, NULL);

	/* Only pooled idle connections are left; closing them runs on_close_socket. */
	curl_multi_cleanup(eng->multi);
	for (size_t i = 0; i < eng->n_hosts; i++)
		free(eng->hosts[i]);
	free(eng->hosts);
	free(eng->socks);
	pthread_cond_destroy(&eng->stats_cond);
	pthread_mutex_destroy(&eng->lock);
	free((char *)eng->cfg.ca_file);
	free(eng);
}

/* ---- submission ---- */

void http_submit(struct http_engine *eng, struct http_request *req,
		 void (*done)(struct http_request *req, int err, void *ud), void *ud)
{
	pthread_mutex_lock(&eng->lock);
	if (req->pending) {
		pthread_mutex_unlock(&eng->lock);
		log_error("http: request '%s' submitted twice; this is a bug", req->method);
		abort();
	}
	/* fresh results (a completed request may be submitted again) */
	req->status = 0;
	req->attempts = 0;
	req->err = 0;
	req->sink_bytes = 0;
	req->error_text[0] = '\0';
	req->mem.len = 0;
	if (req->mem.data)
		req->mem.data[0] = '\0';
	header_list_clear(&req->resp_headers);
	req->eng = eng;
	req->done = done;
	req->done_ud = ud;
	if (eng->stopping) {
		pthread_mutex_unlock(&eng->lock);
		request_set_error_text(req, "http engine is shutting down");
		req->err = ECANCELED;
		if (done)
			done(req, ECANCELED, ud);
		return;
	}
	req->pending = true;
	req->state = REQ_INBOX;
	link_add_tail(&eng->inbox, &req->link);
	eng->inbox_len++;
	curl_multi_wakeup(eng->multi);
	pthread_mutex_unlock(&eng->lock);
}

int http_execute(struct http_engine *eng, struct http_request *req)
{
	int err;

	if (is_engine_thread(eng)) {
		log_error("http: http_execute called on the engine thread; this is a bug");
		return EDEADLK;
	}
	http_submit(eng, req, NULL, NULL);
	pthread_mutex_lock(&eng->lock);
	while (req->pending)
		pthread_cond_wait(&req->done_cond, &eng->lock);
	err = req->err;
	pthread_mutex_unlock(&eng->lock);
	return err;
}

void http_cancel(struct http_engine *eng, struct http_request *req)
{
	pthread_mutex_lock(&eng->lock);
	if (req->pending && !req->cancel_requested) {
		req->cancel_requested = true;
		link_add_tail(&eng->cancels, &req->cancel_link);
		curl_multi_wakeup(eng->multi);
	}
	pthread_mutex_unlock(&eng->lock);
}
