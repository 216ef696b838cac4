/*
 * http.h - the ONE HTTP engine. Every byte objfs sends or receives goes through it.
 *
 * One CURLM owned by one engine thread; only that thread touches libcurl. Other threads
 * build a request, submit it, and wait on their own completion (http_execute) or get a
 * callback on the engine thread (http_submit). A request completes in exactly one place,
 * which is also the only place that releases its admission slot, so no caller can leak a
 * connection.
 *
 * Admission: at most `max_conns_per_host` requests of one host (scheme+host+port) are in
 * flight; the rest wait in two queues, foreground first. Background requests may use at
 * most max(1, limit - fg_reserve) slots so that foreground reads always find one. A 503
 * SlowDown (or a 429) halves the host's current limit (not below 1), at most once per
 * round of requests admitted since the last halving; every other HTTP answer raises it by
 * one again, up to the configured cap. CURLMOPT_MAX_HOST_CONNECTIONS is set to the cap as a
 * backstop. A retry waiting for its timer rejoins the head of its queue.
 *
 * Retries: 500/502/503/504, 429, 400 with <Code>RequestTimeout</Code>, and transport
 * errors (resolve, connect, timeout, reset, TLS connect, got nothing, partial file, send /
 * recv errors) are retried after a full-jitter exponential backoff (base..max) while the
 * request's attempts and the engine's retry budget last. A retry is a new admission: the
 * slot is released during the backoff. The signer is called again before every attempt.
 *
 * Thread rules: everything except http_engine_create/destroy may be called from any thread.
 * Callbacks (sink, done) run on the engine thread and must not block or call http_execute.
 */
#ifndef OBJFS_HTTP_H
#define OBJFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_config {
	unsigned max_conns_per_host; /* 25: hard cap on concurrent connections per host */
	unsigned max_idle_total;     /* 100: idle connections kept (CURLMOPT_MAXCONNECTS) */
	unsigned fg_reserve;         /* 0 = auto (max(1, cap/5)): slots background can't take */
	long connect_timeout_ms;     /* 30000: DNS + TCP + TLS */
	long tls_timeout_ms;         /* 3000: TLS handshake alone (engine-enforced, see http.c) */
	long keepalive_s;            /* 20: TCP keep-alive idle and interval */
	long idle_timeout_s;         /* 90: an idle connection older than this is not reused */
	long expect100_ms;           /* 1000 */
	long request_timeout_s;      /* 1800: whole request */
	long low_speed_limit;        /* 1024 bytes/s ... */
	long low_speed_time_s;       /* ... for 30 s counts as a stall (timeout) */
	unsigned max_attempts;       /* 6: attempts per request, first one included */
	long retry_base_ms;          /* 100 */
	long retry_max_ms;           /* 10000 */
	unsigned retry_budget;       /* 1000: retries per minute engine-wide; 0 = unlimited */
	const char *ca_file;         /* NULL: system bundle */
	bool insecure;               /* false: TLS verification on */
	bool verbose;                /* curl verbose to stderr (debugging only: shows headers) */
};
/* Fill cfg with the defaults above. */
void http_config_defaults(struct http_config *cfg);

enum http_priority { HTTP_FOREGROUND = 0, HTTP_BACKGROUND = 1 };

enum http_retry_cause {
	HTTP_RETRY_5XX = 0,    /* 500, 502, 504 */
	HTTP_RETRY_SLOWDOWN,   /* 503 */
	HTTP_RETRY_THROTTLE,   /* 429 */
	HTTP_RETRY_REQTIMEOUT, /* 400 RequestTimeout */
	HTTP_RETRY_RESOLVE,
	HTTP_RETRY_CONNECT,
	HTTP_RETRY_TIMEOUT,    /* operation/low-speed/TLS timeout */
	HTTP_RETRY_RESET,      /* reset, got nothing, send/recv error, partial */
	HTTP_RETRY_TLS,
	HTTP_RETRY_NCAUSES
};

struct http_engine;
struct http_request;

/* Create the engine and start its thread. Returns NULL with errno set (ENOMEM, EINVAL for
 * a zero cap, EIO when libcurl cannot initialise). Initialises libcurl itself (once); call
 * it after daemonizing. Sets SIGPIPE to ignored if it was at its default. The engine thread
 * blocks all signals. */
struct http_engine *http_engine_create(const struct http_config *cfg);
/* Complete everything pending with ECANCELED (done callbacks run, on the engine thread),
 * join the thread, close every connection, free. A request submitted while this runs
 * completes at once with ECANCELED (its done callback then runs on the submitting thread). */
void http_engine_destroy(struct http_engine *eng);

/* ---- request objects (owned by the caller until destroyed) ---- */
/* method is upper-cased; url must be http:// or https:// (else the request completes with
 * EINVAL). Returns NULL with errno ENOMEM. A completed request may be submitted again. */
struct http_request *http_request_create(const char *method, const char *url);
/* Destroying a request that is still pending aborts the program (it is a caller bug). */
void http_request_destroy(struct http_request *req);
/* Add or replace (same name, case-insensitive) a request header. value NULL removes it;
 * "" sends the header with an empty value. CR/LF in a value are sent as spaces. */
void http_request_set_header(struct http_request *req, const char *name, const char *value);
void http_request_set_priority(struct http_request *req, enum http_priority prio);
/* Override the engine's max_attempts for this request (1 = no retries). */
void http_request_set_max_attempts(struct http_request *req, unsigned n);
/* Body from memory, not copied: it must stay valid until completion. A body of 1 MiB or
 * more is sent with "Expect: 100-continue" (the server may refuse it before it is sent;
 * a server that never answers 100 costs expect100_ms); a smaller one without, unless the
 * caller sets an Expect header. */
void http_request_set_body_mem(struct http_request *req, const void *data, size_t len);
/* Body from len bytes of fd at off (pread; rewound on retry). Same Expect rule. */
void http_request_set_body_fd(struct http_request *req, int fd, off_t off, uint64_t len);
/* Hash the body with MD5 as it is sent, so that the caller can check the server's ETag
 * against the bytes that went out instead of hashing them first (no Content-MD5 then). A
 * rewind to the start (retry, curl's own rewind) starts the hash again. ENOMEM on failure. */
int http_request_hash_body(struct http_request *req);
/* After completion: the MD5 of the body the last attempt sent, when it was sent whole and in
 * order (true); false when not (a rewind to the middle, or no hashing asked). Once. */
bool http_request_body_md5(struct http_request *req, unsigned char out[16]);
/* Where a 2xx response body goes. Default: memory, up to 64 MiB (more fails with EFBIG).
 * Non-2xx bodies always go to memory (bounded) so they can be parsed as errors. */
void http_request_set_sink_fd(struct http_request *req, int fd, off_t off);
/* Callback sink: cb returns 0 to continue, an errno to abort (completes with that errno).
 * reset is called before a retry restarts the body (may be NULL when restart is harmless). */
void http_request_set_sink_cb(struct http_request *req,
			      int (*cb)(void *ud, const void *data, size_t len),
			      void (*reset)(void *ud), void *ud);
/* Called before every attempt (on the engine thread) to (re)sign: it may set headers.
 * Returns 0 or an errno that fails the request. */
void http_request_set_signer(struct http_request *req,
			     int (*sign)(struct http_request *req, void *ud), void *ud);
/* A flag the caller may set from any thread to abandon the request (polled at least every
 * 100 ms); the request then completes with ECANCELED. NULL: none. */
void http_request_set_cancel_flag(struct http_request *req, const volatile int *flag);

/* Accessors for signers: method, URL, headers as sent. */
const char *http_request_method(const struct http_request *req);
const char *http_request_url(const struct http_request *req);
/* Iterate request headers: i from 0; returns false past the end. */
bool http_request_header_at(const struct http_request *req, size_t i, const char **name,
			    const char **value);

/* ---- running ---- */
/* Submit and wait. Returns 0 when an HTTP response was received (any status, see
 * http_request_status; after the last attempt a retryable status such as 503 is returned
 * as such), else a positive errno after retries: ETIMEDOUT (connect, TLS, stall or
 * whole-request timeout), ECONNREFUSED, EHOSTUNREACH (resolve failure), ECONNRESET,
 * EPROTO (TLS / protocol error), ECANCELED, ENOMEM, EFBIG, EINVAL (not an http(s) URL),
 * the errno of a failed sink write, body read or signer, EIO (anything else).
 * EDEADLK when called on the engine thread (from a callback). */
int http_execute(struct http_engine *eng, struct http_request *req);
/* Asynchronous form: done(req, err, ud) runs on the engine thread exactly once. */
void http_submit(struct http_engine *eng, struct http_request *req,
		 void (*done)(struct http_request *req, int err, void *ud), void *ud);
/* Cancel a submitted request from any thread; it completes with ECANCELED (no-op if done).
 * The caller must not race it with destroying the request after its completion. */
void http_cancel(struct http_engine *eng, struct http_request *req);

/* ---- results (valid after completion) ---- */
long http_request_status(const struct http_request *req);
/* Response header value (case-insensitive name), NULL when absent. */
const char *http_request_response_header(const struct http_request *req, const char *name);
/* Iterate response headers: i from 0; returns false past the end. */
bool http_request_response_header_at(const struct http_request *req, size_t i, const char **name,
				     const char **value);
/* The response body when it went to memory (2xx with the default sink, or any non-2xx). */
const char *http_request_body(const struct http_request *req, size_t *len);
/* Bytes delivered to the sink by the final attempt. */
uint64_t http_request_body_bytes(const struct http_request *req);
/* Human-readable description of the last failure ("" when none): method, URL without
 * query string or user info, reason. Never contains headers or other secrets. */
const char *http_request_error_text(const struct http_request *req);
unsigned http_request_attempts(const struct http_request *req);

/* ---- counters (objfs status) ---- */
struct http_host_stats {
	char host[128];     /* "scheme://host:port" */
	unsigned in_flight; /* admitted, running */
	unsigned limit;     /* current admission limit (shrinks on SlowDown) */
	unsigned queued_fg, queued_bg;
	unsigned max_in_flight_seen;
};
/* A consistent snapshot made by the engine thread (http_get_stats waits for one loop turn).
 * requests: completed; failures: completed with an errno other than ECANCELED, or with a
 * 5xx after the last attempt (last_error describes the latest); bytes: bodies only.
 * idle_connections = open sockets not used by a running attempt (connecting ones count as
 * used). hosts[] holds the first 8 hosts, n_hosts how many of them are filled. */
struct http_stats {
	uint64_t requests, failures, bytes_sent, bytes_received;
	uint64_t retries[HTTP_RETRY_NCAUSES];
	unsigned in_flight, queued, waiting_retry; /* queued: submitted, not yet admitted */
	unsigned idle_connections;    /* connections kept alive, not in use */
	unsigned open_connections;    /* sockets open (counted by the open/close callbacks) */
	char last_error[256];
	size_t n_hosts;
	struct http_host_stats hosts[8];
};
void http_get_stats(struct http_engine *eng, struct http_stats *out);
const char *http_retry_cause_name(enum http_retry_cause c);

#endif
