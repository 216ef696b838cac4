/*
 * httpload.c - load and fault tool for the HTTP engine (tests/integration/http_*.sh).
 *
 * Runs jobs of requests through one engine (src/http.c) and prints a JSON summary on stdout.
 * A job is N requests (GET, PUT, HEAD, DELETE) over URL patterns ("{i}" becomes the request
 * index), issued by C threads calling http_execute, or (a fraction) by http_submit with a
 * completion callback. Jobs of the same phase run together (each may start after a delay);
 * phases run one after another on the same engine, with the engine's stats taken after each.
 * A monitor thread samples http_get_stats to report the lowest limit per host and the
 * highest in-flight and open-connection counts seen.
 *
 * Bodies and responses use the origin's pattern (byte j of an object is j % 251), so GET
 * bodies can be verified (--verify) and the origin (tests/lib/origin.py) rejects a PUT body
 * that a retry sent wrong. No credentials: the origin checks no signatures.
 *
 * Locking: results are written per request slot by the one thread that ran it; the
 * canceller list, the async counter and the monitor's numbers each have their own mutex.
 */
#include "config.h"

#include "http.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 16
#define MAX_URLS 16
#define MAX_PHASES 8

enum sink_kind { OUT_MEM, OUT_FD, OUT_CB };

struct result {
	int err;
	long status;
	double ms;
	unsigned attempts;
	bool cancel_planned, async, verify_bad, done;
};

struct job {
	char name[64];
	const char *urls[MAX_URLS];
	unsigned n_urls;
	unsigned n, conc, phase;
	const char *method;
	size_t size;
	bool background, verify;
	unsigned delay_ms, cancel_after_ms, attempts;
	double cancel_frac, async_frac;
	enum sink_kind sink;
	bool body_fd;
	int fd;            /* PUT body file (--body fd): 4096 junk bytes, then the pattern */
	unsigned next;     /* next request index (atomic) */
	struct result *res;
	pthread_t *threads;
};

struct cancel_entry {
	struct cancel_entry *next;
	uint64_t due_ms;
	volatile int *flag;        /* sync requests: set it */
	struct http_request *req;  /* async requests: http_cancel it */
};

struct host_seen {
	char host[128];
	unsigned min_limit, max_limit, max_in_flight;
};

struct async_ctx {
	struct job *job;
	unsigned i;
	double t0;
	struct cancel_entry *ce;
	char url[1024];
};

static struct http_engine *engine;
static struct job jobs[MAX_JOBS];
static unsigned n_jobs;
static unsigned char *pattern_buf;
static size_t pattern_len;

static pthread_mutex_t cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cancel_entry *cancels;
static bool cancel_stop;

static pthread_mutex_t async_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_cond = PTHREAD_COND_INITIALIZER;
static unsigned async_outstanding;

static pthread_mutex_t mon_lock = PTHREAD_MUTEX_INITIALIZER;
static bool mon_stop;
static unsigned mon_period_ms = 20, mon_samples, mon_max_in_flight, mon_max_open, mon_max_queued;
static struct host_seen seen[8];
static unsigned n_seen;

static double now_msf(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void die(const char *msg, const char *arg)
{
	fprintf(stderr, "httpload: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(2);
}

/* A deterministic draw in [0, 1) for (request index, purpose). */
static double draw(unsigned i, unsigned salt)
{
	uint64_t x = ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)salt << 32);
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return (double)(x >> 11) / 9007199254740992.0;
}

static bool pattern_ok(const void *data, size_t len, uint64_t off)
{
	const unsigned char *p = data;
	for (size_t j = 0; j < len; j++)
		if (p[j] != (unsigned char)((off + j) % 251))
			return false;
	return true;
}

/* Expected size from "size=N" in the URL, or -1. */
static long long url_size(const char *url)
{
	const char *q = strchr(url, '?');
	const char *s = q ? strstr(q, "size=") : NULL;
	return s ? atoll(s + 5) : -1;
}

static void format_url(const char *pat, unsigned i, char *out, size_t outsz)
{
	size_t o = 0;
	for (const char *p = pat; *p && o + 1 < outsz;) {
		if (strncmp(p, "{i}", 3) == 0) {
			int k = snprintf(out + o, outsz - o, "%u", i);
			o += k > 0 ? (size_t)k : 0;
			p += 3;
		} else {
			out[o++] = *p++;
		}
	}
	out[o < outsz ? o : outsz - 1] = '\0';
}

/* ---- canceller ---- */
/* Caller holds cancel_lock. */
static struct cancel_entry *cancel_add_locked(unsigned after_ms, volatile int *flag,
					      struct http_request *req)
{
	struct cancel_entry *e = calloc(1, sizeof(*e));
	if (!e)
		die("out of memory", NULL);
	e->due_ms = (uint64_t)now_msf() + after_ms;
	e->flag = flag;
	e->req = req;
	e->next = cancels;
	cancels = e;
	return e;
}

static struct cancel_entry *cancel_add(unsigned after_ms, volatile int *flag)
{
	pthread_mutex_lock(&cancel_lock);
	struct cancel_entry *e = cancel_add_locked(after_ms, flag, NULL);
	pthread_mutex_unlock(&cancel_lock);
	return e;
}

/* Remove e if the canceller has not fired it yet, and free it (the owner always does):
 * after this the canceller never touches its target. */
static void cancel_remove(struct cancel_entry *e)
{
	pthread_mutex_lock(&cancel_lock);
	for (struct cancel_entry **pp = &cancels; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	pthread_mutex_unlock(&cancel_lock);
	free(e);
}

static void *canceller_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cancel_lock);
	while (!cancel_stop) {
		uint64_t now = (uint64_t)now_msf();
		for (struct cancel_entry **pp = &cancels; *pp;) {
			struct cancel_entry *e = *pp;
			if (e->due_ms > now) {
				pp = &e->next;
				continue;
			}
			if (e->flag)
				__atomic_store_n(e->flag, 1, __ATOMIC_RELAXED);
			if (e->req)
				http_cancel(engine, e->req);
			*pp = e->next; /* fired: its owner frees it */
		}
		pthread_mutex_unlock(&cancel_lock);
		sleep_ms(5);
		pthread_mutex_lock(&cancel_lock);
	}
	pthread_mutex_unlock(&cancel_lock);
	return NULL;
}

/* ---- monitor ---- */
static void *monitor_main(void *arg)
{
	struct http_stats *st = malloc(sizeof(*st));
	(void)arg;
	if (!st)
		die("out of memory", NULL);
	for (;;) {
		pthread_mutex_lock(&mon_lock);
		bool stop = mon_stop;
		pthread_mutex_unlock(&mon_lock);
		if (stop)
			break;
		http_get_stats(engine, st);
		pthread_mutex_lock(&mon_lock);
		mon_samples++;
		if (st->in_flight > mon_max_in_flight)
			mon_max_in_flight = st->in_flight;
		if (st->open_connections > mon_max_open)
			mon_max_open = st->open_connections;
		if (st->queued > mon_max_queued)
			mon_max_queued = st->queued;
		for (size_t h = 0; h < st->n_hosts; h++) {
			struct host_seen *s = NULL;
			for (unsigned k = 0; k < n_seen; k++)
				if (strcmp(seen[k].host, st->hosts[h].host) == 0)
					s = &seen[k];
			if (!s && n_seen < 8) {
				s = &seen[n_seen++];
				snprintf(s->host, sizeof(s->host), "%s", st->hosts[h].host);
				s->min_limit = st->hosts[h].limit;
			}
			if (!s)
				continue;
			if (st->hosts[h].limit < s->min_limit)
				s->min_limit = st->hosts[h].limit;
			if (st->hosts[h].limit > s->max_limit)
				s->max_limit = st->hosts[h].limit;
			if (st->hosts[h].in_flight > s->max_in_flight)
				s->max_in_flight = st->hosts[h].in_flight;
		}
		pthread_mutex_unlock(&mon_lock);
		sleep_ms(mon_period_ms);
	}
	free(st);
	return NULL;
}

/* ---- requests ---- */
struct cb_sink {
	uint64_t off;
	bool bad;
};

static int cb_write(void *ud, const void *data, size_t len)
{
	struct cb_sink *s = ud;
	if (!pattern_ok(data, len, s->off))
		s->bad = true;
	s->off += len;
	return 0;
}

static void cb_reset(void *ud)
{
	struct cb_sink *s = ud;
	s->off = 0;
	s->bad = false;
}

static struct http_request *make_request(struct job *j, unsigned i, char *url, size_t urlsz)
{
	struct http_request *req;

	format_url(j->urls[i % j->n_urls], i, url, urlsz);
	req = http_request_create(j->method, url);
	if (!req)
		die("cannot create request", url);
	http_request_set_priority(req, j->background ? HTTP_BACKGROUND : HTTP_FOREGROUND);
	if (j->attempts)
		http_request_set_max_attempts(req, j->attempts);
	if (strcmp(j->method, "PUT") == 0) {
		if (j->body_fd)
			http_request_set_body_fd(req, j->fd, 4096, j->size);
		else
			http_request_set_body_mem(req, pattern_buf, j->size);
	}
	return req;
}

/* Check a finished GET: status 2xx, size as asked, pattern bytes. */
static bool verify_mem(struct http_request *req, const char *url)
{
	size_t len;
	const char *body = http_request_body(req, &len);
	long long want = url_size(url);
	return (want < 0 || (long long)len == want) && pattern_ok(body, len, 0);
}

static void record(struct job *j, unsigned i, struct http_request *req, int err, double t0)
{
	struct result *r = &j->res[i];
	r->err = err;
	r->status = http_request_status(req);
	r->ms = now_msf() - t0;
	r->attempts = http_request_attempts(req);
	r->done = true;
}

static void async_done(struct http_request *req, int err, void *ud)
{
	struct async_ctx *a = ud;
	struct job *j = a->job;

	if (a->ce)
		cancel_remove(a->ce);
	record(j, a->i, req, err, a->t0);
	if (j->verify && !err && strcmp(j->method, "GET") == 0 &&
	    http_request_status(req) / 100 == 2 && !verify_mem(req, a->url))
		j->res[a->i].verify_bad = true;
	http_request_destroy(req);
	free(a);
	pthread_mutex_lock(&async_lock);
	async_outstanding--;
	pthread_cond_broadcast(&async_cond);
	pthread_mutex_unlock(&async_lock);
}

static void run_async(struct job *j, unsigned i)
{
	struct async_ctx *a = calloc(1, sizeof(*a));
	struct http_request *req;

	if (!a)
		die("out of memory", NULL);
	a->job = j;
	a->i = i;
	req = make_request(j, i, a->url, sizeof(a->url));
	j->res[i].async = true;
	pthread_mutex_lock(&async_lock);
	async_outstanding++;
	pthread_mutex_unlock(&async_lock);
	a->t0 = now_msf();
	if (!j->res[i].cancel_planned) {
		http_submit(engine, req, async_done, a);
		return;
	}
	/* Register and submit under cancel_lock: the canceller must not fire before the request
	 * is pending (http_cancel would be a no-op), and the done callback, which removes the
	 * entry, must not run before it exists. */
	pthread_mutex_lock(&cancel_lock);
	a->ce = cancel_add_locked(j->cancel_after_ms, NULL, req);
	http_submit(engine, req, async_done, a);
	pthread_mutex_unlock(&cancel_lock);
}

static void run_sync(struct job *j, unsigned i, int out_fd)
{
	char url[1024];
	struct http_request *req = make_request(j, i, url, sizeof(url));
	volatile int flag = 0;
	struct cancel_entry *ce = NULL;
	struct cb_sink cbs = { 0, false };
	double t0;
	int err;

	if (j->sink == OUT_FD) {
		if (ftruncate(out_fd, 0))
			die("ftruncate failed", strerror(errno));
		http_request_set_sink_fd(req, out_fd, 0);
	} else if (j->sink == OUT_CB) {
		http_request_set_sink_cb(req, cb_write, cb_reset, &cbs);
	}
	if (j->res[i].cancel_planned) {
		http_request_set_cancel_flag(req, &flag);
		ce = cancel_add(j->cancel_after_ms, &flag);
	}
	t0 = now_msf();
	err = http_execute(engine, req);
	if (ce)
		cancel_remove(ce);
	record(j, i, req, err, t0);
	if (j->verify && !err && strcmp(j->method, "GET") == 0 && http_request_status(req) / 100 == 2) {
		bool ok;
		if (j->sink == OUT_MEM) {
			ok = verify_mem(req, url);
		} else if (j->sink == OUT_CB) {
			long long want = url_size(url);
			ok = !cbs.bad && (want < 0 || (long long)cbs.off == want) &&
			     http_request_body_bytes(req) == cbs.off;
		} else {
			uint64_t n = http_request_body_bytes(req);
			unsigned char *buf = malloc(n ? n : 1);
			long long want = url_size(url);
			if (!buf)
				die("out of memory", NULL);
			ok = pread(out_fd, buf, n, 0) == (ssize_t)n && pattern_ok(buf, n, 0) &&
			     (want < 0 || (long long)n == want);
			free(buf);
		}
		j->res[i].verify_bad = !ok;
	}
	http_request_destroy(req);
}

static void *worker_main(void *arg)
{
	struct job *j = arg;
	int out_fd = -1;

	if (j->sink == OUT_FD) {
		char path[] = "/tmp/httpload.XXXXXX";
		out_fd = mkstemp(path);
		if (out_fd < 0)
			die("mkstemp failed", strerror(errno));
		unlink(path);
	}
	for (;;) {
		unsigned i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (i >= j->n)
			break;
		if (j->res[i].async)
			run_async(j, i);
		else
			run_sync(j, i, out_fd);
	}
	if (out_fd >= 0)
		close(out_fd);
	return NULL;
}

struct job_start {
	struct job *job;
	pthread_t thread;
};

/* Runs a job: waits for its delay, then its worker threads. */
static void *job_main(void *arg)
{
	struct job *j = arg;

	if (j->delay_ms)
		sleep_ms(j->delay_ms);
	for (unsigned t = 0; t < j->conc; t++)
		if (pthread_create(&j->threads[t], NULL, worker_main, j))
			die("cannot start a thread", NULL);
	for (unsigned t = 0; t < j->conc; t++)
		pthread_join(j->threads[t], NULL);
	return NULL;
}

/* TCP sockets this process really has open: fds that are sockets listed in /proc/net/tcp
 * (and tcp6), in state other than LISTEN. The engine's open_connections must equal it. */
static int process_tcp_sockets(void)
{
	unsigned long inodes[4096];
	size_t n = 0;
	int count = 0;
	const char *tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512];

	for (int t = 0; t < 2; t++) {
		FILE *f = fopen(tables[t], "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f) && n < 4096) {
			unsigned st;
			unsigned long ino;
			if (sscanf(line, " %*d: %*s %*s %x %*s %*s %*s %*s %*s %lu", &st, &ino) == 2 &&
			    st != 0x0A)
				inodes[n++] = ino;
		}
		fclose(f);
	}
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[300], target[64];
		unsigned long ino;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(path, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (sscanf(target, "socket:[%lu]", &ino) != 1)
			continue;
		for (size_t i = 0; i < n; i++)
			if (inodes[i] == ino) {
				count++;
				break;
			}
	}
	closedir(d);
	return count;
}

/* ---- output ---- */
static const char *errno_name(int e)
{
	static char buf[16];
	switch (e) {
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ECONNRESET: return "ECONNRESET";
	case EPROTO: return "EPROTO";
	case ECANCELED: return "ECANCELED";
	case ENOMEM: return "ENOMEM";
	case EFBIG: return "EFBIG";
	case EIO: return "EIO";
	case EINVAL: return "EINVAL";
	default:
		snprintf(buf, sizeof(buf), "E%d", e);
		return buf;
	}
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_stats(const struct http_stats *st)
{
	printf("{\"requests\": %llu, \"failures\": %llu, \"bytes_sent\": %llu, "
	       "\"bytes_received\": %llu, \"in_flight\": %u, \"queued\": %u, \"waiting_retry\": %u, "
	       "\"open_connections\": %u, \"idle_connections\": %u, \"retries\": {",
	       (unsigned long long)st->requests, (unsigned long long)st->failures,
	       (unsigned long long)st->bytes_sent, (unsigned long long)st->bytes_received,
	       st->in_flight, st->queued, st->waiting_retry, st->open_connections,
	       st->idle_connections);
	for (int c = 0; c < HTTP_RETRY_NCAUSES; c++)
		printf("%s\"%s\": %llu", c ? ", " : "", http_retry_cause_name((enum http_retry_cause)c),
		       (unsigned long long)st->retries[c]);
	printf("}, \"last_error\": ");
	json_str(st->last_error);
	printf(", \"hosts\": [");
	for (size_t h = 0; h < st->n_hosts; h++) {
		const struct http_host_stats *hs = &st->hosts[h];
		printf("%s{\"host\": ", h ? ", " : "");
		json_str(hs->host);
		printf(", \"in_flight\": %u, \"limit\": %u, \"queued_fg\": %u, \"queued_bg\": %u, "
		       "\"max_in_flight_seen\": %u}",
		       hs->in_flight, hs->limit, hs->queued_fg, hs->queued_bg, hs->max_in_flight_seen);
	}
	printf("]}");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_job(const struct job *j)
{
	unsigned ok = 0, cancel_planned = 0, async = 0, verify_bad = 0, attempts = 0, not_done = 0;
	long statuses[600] = { 0 };
	unsigned errs[256] = { 0 };
	double *ms = malloc((j->n ? j->n : 1) * sizeof(double));

	if (!ms)
		die("out of memory", NULL);
	for (unsigned i = 0; i < j->n; i++) {
		const struct result *r = &j->res[i];
		ms[i] = r->ms;
		not_done += !r->done;
		cancel_planned += r->cancel_planned;
		async += r->async;
		verify_bad += r->verify_bad;
		attempts += r->attempts;
		if (r->err)
			errs[r->err < 256 ? r->err : 255]++;
		else if (r->status >= 0 && r->status < 600)
			statuses[r->status]++;
		if (!r->err && r->status / 100 == 2 && !r->verify_bad)
			ok++;
	}
	qsort(ms, j->n, sizeof(double), cmp_double);
	printf("{\"name\": ");
	json_str(j->name);
	printf(", \"phase\": %u, \"requests\": %u, \"ok\": %u, \"not_done\": %u, "
	       "\"cancel_planned\": %u, \"async\": %u, \"verify_errors\": %u, \"attempts\": %u, "
	       "\"statuses\": {",
	       j->phase, j->n, ok, not_done, cancel_planned, async, verify_bad, attempts);
	bool first = true;
	for (int s = 0; s < 600; s++)
		if (statuses[s]) {
			printf("%s\"%d\": %ld", first ? "" : ", ", s, statuses[s]);
			first = false;
		}
	printf("}, \"errors\": {");
	first = true;
	for (int e = 0; e < 256; e++)
		if (errs[e]) {
			printf("%s\"%s\": %u", first ? "" : ", ", errno_name(e), errs[e]);
			first = false;
		}
	if (j->n)
		printf("}, \"ms\": {\"min\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
		       "\"max\": %.1f}}",
		       ms[0], ms[j->n / 2], ms[j->n * 9 / 10], ms[j->n * 99 / 100], ms[j->n - 1]);
	else
		printf("}, \"ms\": {}}");
	free(ms);
}

static void usage(void)
{
	fputs("usage: httpload [ENGINE OPTIONS] --job [JOB OPTIONS] [--job [JOB OPTIONS]]...\n"
	      "engine: --cap N --fg-reserve N --max-idle N --connect-timeout-ms MS\n"
	      "  --tls-timeout-ms MS --low-speed-limit B --low-speed-time S --expect100-ms MS\n"
	      "  --request-timeout-s S --attempts N --retry-base-ms MS --retry-max-ms MS\n"
	      "  --retry-budget N --insecure --ca-file F --verbose --monitor-ms MS\n"
	      "job: --name S --url PATTERN (repeatable; {i} = request index) -n N -c THREADS\n"
	      "  --method GET|PUT|HEAD|DELETE --size BYTES --bg --phase P --delay-ms MS\n"
	      "  --cancel-frac F --cancel-after-ms MS --async-frac F --attempts N --verify\n"
	      "  --sink mem|fd|cb --body mem|fd\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	struct http_config cfg;
	struct job *j = NULL;
	struct http_stats *phase_stats;
	double phase_wall[MAX_PHASES];
	unsigned max_phase = 0;
	pthread_t canceller, monitor;
	struct job_start starts[MAX_JOBS];
	double wall0;

	http_config_defaults(&cfg);
	for (int a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
#define NEEDV()                                                                        \
	do {                                                                           \
		if (!v)                                                                \
			die("option needs a value", o);                                \
		a++;                                                                   \
	} while (0)
#define NEEDJOB()                                                                      \
	do {                                                                           \
		if (!j)                                                                \
			die("job option before --job", o);                             \
	} while (0)
		if (!strcmp(o, "--job")) {
			if (n_jobs == MAX_JOBS)
				die("too many jobs", NULL);
			j = &jobs[n_jobs++];
			snprintf(j->name, sizeof(j->name), "job%u", n_jobs - 1);
			j->n = 1;
			j->conc = 1;
			j->method = "GET";
			j->size = 1024;
			j->cancel_after_ms = 100;
			j->fd = -1;
		} else if (!strcmp(o, "--cap")) { NEEDV(); cfg.max_conns_per_host = (unsigned)atoi(v);
		} else if (!strcmp(o, "--fg-reserve")) { NEEDV(); cfg.fg_reserve = (unsigned)atoi(v);
		} else if (!strcmp(o, "--max-idle")) { NEEDV(); cfg.max_idle_total = (unsigned)atoi(v);
		} else if (!strcmp(o, "--connect-timeout-ms")) { NEEDV(); cfg.connect_timeout_ms = atol(v);
		} else if (!strcmp(o, "--tls-timeout-ms")) { NEEDV(); cfg.tls_timeout_ms = atol(v);
		} else if (!strcmp(o, "--low-speed-limit")) { NEEDV(); cfg.low_speed_limit = atol(v);
		} else if (!strcmp(o, "--low-speed-time")) { NEEDV(); cfg.low_speed_time_s = atol(v);
		} else if (!strcmp(o, "--expect100-ms")) { NEEDV(); cfg.expect100_ms = atol(v);
		} else if (!strcmp(o, "--request-timeout-s")) { NEEDV(); cfg.request_timeout_s = atol(v);
		} else if (!strcmp(o, "--attempts") && !j) { NEEDV(); cfg.max_attempts = (unsigned)atoi(v);
		} else if (!strcmp(o, "--attempts")) { NEEDV(); j->attempts = (unsigned)atoi(v);
		} else if (!strcmp(o, "--retry-base-ms")) { NEEDV(); cfg.retry_base_ms = atol(v);
		} else if (!strcmp(o, "--retry-max-ms")) { NEEDV(); cfg.retry_max_ms = atol(v);
		} else if (!strcmp(o, "--retry-budget")) { NEEDV(); cfg.retry_budget = (unsigned)atoi(v);
		} else if (!strcmp(o, "--insecure")) { cfg.insecure = true;
		} else if (!strcmp(o, "--ca-file")) { NEEDV(); cfg.ca_file = v;
		} else if (!strcmp(o, "--verbose")) { cfg.verbose = true;
		} else if (!strcmp(o, "--monitor-ms")) { NEEDV(); mon_period_ms = (unsigned)atoi(v);
		} else if (!strcmp(o, "--name")) { NEEDJOB(); NEEDV(); snprintf(j->name, sizeof(j->name), "%s", v);
		} else if (!strcmp(o, "--url")) {
			NEEDJOB(); NEEDV();
			if (j->n_urls == MAX_URLS)
				die("too many --url", NULL);
			j->urls[j->n_urls++] = v;
		} else if (!strcmp(o, "-n")) { NEEDJOB(); NEEDV(); j->n = (unsigned)atoi(v);
		} else if (!strcmp(o, "-c")) { NEEDJOB(); NEEDV(); j->conc = (unsigned)atoi(v);
		} else if (!strcmp(o, "--method")) { NEEDJOB(); NEEDV(); j->method = v;
		} else if (!strcmp(o, "--size")) { NEEDJOB(); NEEDV(); j->size = (size_t)atoll(v);
		} else if (!strcmp(o, "--bg")) { NEEDJOB(); j->background = true;
		} else if (!strcmp(o, "--phase")) { NEEDJOB(); NEEDV(); j->phase = (unsigned)atoi(v);
		} else if (!strcmp(o, "--delay-ms")) { NEEDJOB(); NEEDV(); j->delay_ms = (unsigned)atoi(v);
		} else if (!strcmp(o, "--cancel-frac")) { NEEDJOB(); NEEDV(); j->cancel_frac = atof(v);
		} else if (!strcmp(o, "--cancel-after-ms")) { NEEDJOB(); NEEDV(); j->cancel_after_ms = (unsigned)atoi(v);
		} else if (!strcmp(o, "--async-frac")) { NEEDJOB(); NEEDV(); j->async_frac = atof(v);
		} else if (!strcmp(o, "--verify")) { NEEDJOB(); j->verify = true;
		} else if (!strcmp(o, "--sink")) {
			NEEDJOB(); NEEDV();
			j->sink = !strcmp(v, "fd") ? OUT_FD : !strcmp(v, "cb") ? OUT_CB : OUT_MEM;
		} else if (!strcmp(o, "--body")) { NEEDJOB(); NEEDV(); j->body_fd = !strcmp(v, "fd");
		} else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			usage();
		} else {
			die("unknown option (see --help)", o);
		}
#undef NEEDV
#undef NEEDJOB
	}
	if (!n_jobs)
		usage();

	for (unsigned k = 0; k < n_jobs; k++) {
		struct job *jb = &jobs[k];
		if (!jb->n_urls)
			die("a job needs --url", jb->name);
		if (!jb->conc)
			jb->conc = 1;
		if (jb->phase >= MAX_PHASES)
			die("phase out of range", jb->name);
		if (jb->phase > max_phase)
			max_phase = jb->phase;
		jb->res = calloc(jb->n ? jb->n : 1, sizeof(*jb->res));
		jb->threads = calloc(jb->conc, sizeof(*jb->threads));
		if (!jb->res || !jb->threads)
			die("out of memory", NULL);
		for (unsigned i = 0; i < jb->n; i++) {
			jb->res[i].cancel_planned = draw(i + k * 100003u, 1) < jb->cancel_frac;
			jb->res[i].async = draw(i + k * 100003u, 2) < jb->async_frac;
		}
		if (strcmp(jb->method, "PUT") == 0 && jb->size > pattern_len)
			pattern_len = jb->size;
	}
	pattern_buf = malloc(pattern_len ? pattern_len : 1);
	if (!pattern_buf)
		die("out of memory", NULL);
	for (size_t b = 0; b < pattern_len; b++)
		pattern_buf[b] = (unsigned char)(b % 251);
	for (unsigned k = 0; k < n_jobs; k++) {
		struct job *jb = &jobs[k];
		if (!jb->body_fd || strcmp(jb->method, "PUT") != 0)
			continue;
		char path[] = "/tmp/httpload-body.XXXXXX";
		unsigned char junk[4096];
		memset(junk, 0xEE, sizeof(junk));
		jb->fd = mkstemp(path);
		if (jb->fd < 0)
			die("mkstemp failed", strerror(errno));
		unlink(path);
		if (write(jb->fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk) ||
		    write(jb->fd, pattern_buf, jb->size) != (ssize_t)jb->size)
			die("cannot write the body file", strerror(errno));
	}

	engine = http_engine_create(&cfg);
	if (!engine)
		die("cannot create the http engine", strerror(errno));
	phase_stats = calloc(max_phase + 1, sizeof(*phase_stats));
	if (!phase_stats)
		die("out of memory", NULL);
	if (pthread_create(&canceller, NULL, canceller_main, NULL) ||
	    pthread_create(&monitor, NULL, monitor_main, NULL))
		die("cannot start a thread", NULL);

	wall0 = now_msf();
	for (unsigned p = 0; p <= max_phase; p++) {
		unsigned ns = 0;
		double p0 = now_msf();
		for (unsigned k = 0; k < n_jobs; k++) {
			if (jobs[k].phase != p)
				continue;
			starts[ns].job = &jobs[k];
			if (pthread_create(&starts[ns].thread, NULL, job_main, &jobs[k]))
				die("cannot start a thread", NULL);
			ns++;
		}
		for (unsigned k = 0; k < ns; k++)
			pthread_join(starts[k].thread, NULL);
		pthread_mutex_lock(&async_lock);
		while (async_outstanding)
			pthread_cond_wait(&async_cond, &async_lock);
		pthread_mutex_unlock(&async_lock);
		phase_wall[p] = now_msf() - p0;
		http_get_stats(engine, &phase_stats[p]);
	}
	double wall = now_msf() - wall0;

	pthread_mutex_lock(&mon_lock);
	mon_stop = true;
	pthread_mutex_unlock(&mon_lock);
	pthread_join(monitor, NULL);
	pthread_mutex_lock(&cancel_lock);
	cancel_stop = true;
	pthread_mutex_unlock(&cancel_lock);
	pthread_join(canceller, NULL);

	struct http_stats final;
	http_get_stats(engine, &final);
	int tcp_sockets = process_tcp_sockets();
	http_engine_destroy(engine);

	printf("{\"wall_ms\": %.1f, \"jobs\": [", wall);
	for (unsigned k = 0; k < n_jobs; k++) {
		printf(k ? ",\n  " : "\n  ");
		print_job(&jobs[k]);
	}
	printf("],\n \"phases\": [");
	for (unsigned p = 0; p <= max_phase; p++) {
		printf(p ? ",\n  " : "\n  ");
		printf("{\"wall_ms\": %.1f, \"stats\": ", phase_wall[p]);
		print_stats(&phase_stats[p]);
		printf("}");
	}
	printf("],\n \"monitor\": {\"samples\": %u, \"max_in_flight\": %u, \"max_open_connections\": %u, "
	       "\"max_queued\": %u, \"hosts\": [",
	       mon_samples, mon_max_in_flight, mon_max_open, mon_max_queued);
	for (unsigned h = 0; h < n_seen; h++) {
		printf("%s{\"host\": ", h ? ", " : "");
		json_str(seen[h].host);
		printf(", \"min_limit\": %u, \"max_limit\": %u, \"max_in_flight\": %u}", seen[h].min_limit,
		       seen[h].max_limit, seen[h].max_in_flight);
	}
	printf("]},\n \"process_tcp_sockets\": %d,\n \"stats\": ", tcp_sockets);
	print_stats(&final);
	printf("}\n");

	for (unsigned k = 0; k < n_jobs; k++) {
		free(jobs[k].res);
		free(jobs[k].threads);
		if (jobs[k].fd >= 0)
			close(jobs[k].fd);
	}
	free(phase_stats);
	free(pattern_buf);
	return 0;
}
