/*
 * storeload.c - drive the S3 store (src/store_s3.c) through one shared HTTP engine from N
 * threads: PUT, GET, HEAD or DELETE of COUNT objects "PREFIX%06d" of SIZE bytes. For the
 * engine benchmark (bench/engine-bench.sh) and as a load generator for tests.
 *
 *   storeload --endpoint URL --bucket B --op put|get|head|delete [--count 1000]
 *             [--size 16384] [--threads 64] [--cap 25] [--prefix o/] [--region R]
 *             [--verify]
 *
 * Credentials as objfs finds them (creds.c). Prints one JSON line: op, count, errors,
 * seconds, ops_per_s, bytes, max_in_flight (the engine's highest per-host count, which
 * must not exceed --cap). Exit 0 when every operation succeeded, 1 otherwise, 2 usage.
 *
 * Locking: the next index and the error count are atomics; each thread has its own
 * scratch file for GET bodies.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "http.h"
#include "store.h"

struct load {
	struct store *st;
	const char *op;
	const char *prefix;
	unsigned count;
	uint64_t size;
	bool verify;
	unsigned char *data; /* the PUT body; byte j is (j * 7 + 3) & 255 */
	atomic_uint next;
	atomic_uint errors;
	atomic_uint_fast64_t bytes;
	pthread_mutex_t print_lock; /* one error line at a time */
};

static void *load_worker(void *arg)
{
	struct load *l = arg;
	char key[256];
	char tmpl[] = "/tmp/storeload.XXXXXX";
	int fd = -1;
	unsigned char *buf = NULL;

	if (strcmp(l->op, "get") == 0) {
		fd = mkstemp(tmpl);
		if (fd < 0) {
			perror("storeload: mkstemp");
			atomic_fetch_add(&l->errors, 1);
			return NULL;
		}
		unlink(tmpl);
		if (l->verify)
			buf = malloc(l->size ? l->size : 1);
	}
	for (;;) {
		unsigned i = atomic_fetch_add(&l->next, 1);
		uint64_t got = 0;
		int rv;

		if (i >= l->count)
			break;
		snprintf(key, sizeof(key), "%s%06u", l->prefix, i);
		if (strcmp(l->op, "put") == 0) {
			struct store_body b = {.mem = l->data, .fd = -1, .len = l->size};
			rv = l->st->ops->put(l->st, key, &b, NULL, NULL, NULL);
			got = rv ? 0 : l->size;
		} else if (strcmp(l->op, "get") == 0) {
			rv = l->st->ops->get(l->st, key, 0, UINT64_MAX, NULL, NULL, fd, 0, &got);
			if (rv == 0 && got != l->size)
				rv = EIO;
			if (rv == 0 && buf &&
			    (pread(fd, buf, l->size, 0) != (ssize_t)l->size ||
			     memcmp(buf, l->data, l->size) != 0))
				rv = EBADMSG;
		} else if (strcmp(l->op, "head") == 0) {
			struct store_attr a;
			rv = store_head(l->st, key, NULL, &a);
			if (rv == 0)
				store_attr_free(&a);
		} else {
			rv = l->st->ops->remove(l->st, key, NULL);
		}
		if (rv) {
			char msg[512];
			store_format_error(msg, sizeof(msg));
			pthread_mutex_lock(&l->print_lock);
			fprintf(stderr, "storeload: %s %s: %s\n", l->op, key,
				rv == EBADMSG ? "wrong bytes" : msg);
			pthread_mutex_unlock(&l->print_lock);
			atomic_fetch_add(&l->errors, 1);
		} else {
			atomic_fetch_add(&l->bytes, got);
		}
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: storeload --endpoint URL --bucket B --op put|get|head|delete "
			"[--count N] [--size BYTES] [--threads N] [--cap N] [--prefix P] "
			"[--region R] [--verify]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"endpoint", required_argument, NULL, 'e'}, {"bucket", required_argument, NULL, 'b'},
		{"op", required_argument, NULL, 'o'},       {"count", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},     {"threads", required_argument, NULL, 't'},
		{"cap", required_argument, NULL, 'c'},      {"prefix", required_argument, NULL, 'p'},
		{"region", required_argument, NULL, 'r'},   {"verify", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	const char *endpoint = NULL, *bucket = NULL, *region = "us-east-1";
	unsigned threads = 64, cap = 25;
	struct load l = {.op = NULL, .prefix = "o/", .count = 1000, .size = 16384};
	struct http_config cfg;
	struct http_engine *eng;
	struct http_stats stats;
	struct creds cr;
	struct timespec t0, t1;
	pthread_t *tids;
	char err[1024];
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'e': endpoint = optarg; break;
		case 'b': bucket = optarg; break;
		case 'o': l.op = optarg; break;
		case 'n': l.count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': l.size = strtoull(optarg, NULL, 10); break;
		case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': cap = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': l.prefix = optarg; break;
		case 'r': region = optarg; break;
		case 'v': l.verify = true; break;
		default: usage();
		}
	}
	if (!endpoint || !bucket || !l.op || !threads || !cap ||
	    (strcmp(l.op, "put") && strcmp(l.op, "get") && strcmp(l.op, "head") &&
	     strcmp(l.op, "delete")))
		usage();
	l.data = malloc(l.size ? l.size : 1);
	if (!l.data)
		return 1;
	for (uint64_t j = 0; j < l.size; j++)
		l.data[j] = (unsigned char)((j * 7 + 3) & 255);
	pthread_mutex_init(&l.print_lock, NULL);
	if (creds_resolve(NULL, NULL, bucket, &cr, err, sizeof(err))) {
		fprintf(stderr, "storeload: %s\n", err);
		return 1;
	}
	http_config_defaults(&cfg);
	cfg.max_conns_per_host = cap;
	eng = http_engine_create(&cfg);
	if (!eng) {
		perror("storeload: http_engine_create");
		return 1;
	}
	struct store_s3_config sc = {
		.endpoint = endpoint,
		.region = region,
		.bucket = bucket,
		.prefix = "",
		.path_style = -1,
		.access_key = cr.access_key,
		.secret_key = cr.secret_key,
		.session_token = cr.session_token,
		.unsigned_payload = true,
	};
	l.st = store_s3_create(&sc, eng, err, sizeof(err));
	creds_free(&cr);
	if (!l.st) {
		fprintf(stderr, "storeload: %s\n", err);
		return 1;
	}
	tids = calloc(threads, sizeof(*tids));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < threads; i++)
		if (pthread_create(&tids[i], NULL, load_worker, &l)) {
			fprintf(stderr, "storeload: cannot start thread %u\n", i);
			threads = i;
			atomic_fetch_add(&l.errors, 1);
			break;
		}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	http_get_stats(eng, &stats);
	unsigned max_in_flight = 0;
	for (size_t i = 0; i < stats.n_hosts; i++)
		if (stats.hosts[i].max_in_flight_seen > max_in_flight)
			max_in_flight = stats.hosts[i].max_in_flight_seen;
	printf("{\"op\": \"%s\", \"count\": %u, \"errors\": %u, \"seconds\": %.3f, "
	       "\"ops_per_s\": %.1f, \"bytes\": %llu, \"max_in_flight\": %u, \"cap\": %u}\n",
	       l.op, l.count, atomic_load(&l.errors), secs, secs > 0 ? l.count / secs : 0.0,
	       (unsigned long long)atomic_load(&l.bytes), max_in_flight, cap);
	store_destroy(l.st);
	http_engine_destroy(eng);
	free(tids);
	free(l.data);
	pthread_mutex_destroy(&l.print_lock);
	return atomic_load(&l.errors) ? 1 : 0;
}
