/*
 * dcache_stress.c - random concurrent stress of the data cache (data_cache.c) over a real
 * second store, the directory store (store_dir.c): threads open objects and read them
 * sequentially or at random through a small cache while another thread rewrites objects
 * underneath and the store injects faults. Every byte read is checked against the content
 * written; the only errors allowed are the injected ones (EIO, ETIMEDOUT) and ESTALE from a
 * handle whose object was rewritten. At the end the cache bound is checked on disk.
 *
 * usage: dcache_stress [-t THREADS] [-d SECONDS] [-n OBJECTS] [-c CACHE_BYTES] [-b BLOCK]
 *                      [-r READ_AHEAD] [-f FAULTS] [ROOT CACHE_DIR]
 * FAULTS is store_dir's OBJFS_DIR_FAULTS ("eio=0.02,etimedout=0.01,delay_ms=1", the default;
 * "" for none). Without ROOT and CACHE_DIR it makes temporary ones and removes them.
 * Exit 0 pass, 1 fail, 2 usage. Bounded: it stops after SECONDS (default 3).
 *
 * Locking: each object's generations are guarded by its own mutex; old generations are kept
 * until the end, so a reader's snapshot stays valid without holding any lock.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data_cache.h"
#include "log.h"
#include "store.h"

struct generation {
	unsigned char *data;
	uint64_t size;
	char etag[80];
	struct generation *older;
};

struct object {
	char key[32];
	pthread_mutex_t lock;
	struct generation *cur; /* protected by lock */
};

struct stress {
	struct data_cache *dc;
	struct store *reader_store; /* with faults */
	struct store *writer_store; /* without */
	struct object *objs;
	unsigned n_objs;
	uint64_t block;
	double deadline;
	atomic_bool failed;
	atomic_uint reads, injected, stale, rewrites;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(struct stress *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct stress *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "dcache_stress: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	atomic_store(&s->failed, true);
}

/* Write a new generation of o (random size up to 6 blocks plus a tail) through the store. */
static int rewrite(struct stress *s, struct object *o, unsigned *seed)
{
	struct generation *g = calloc(1, sizeof(*g));
	struct store_body body = {0};
	struct store_attr attr;
	int r;

	if (!g)
		return ENOMEM;
	g->size = (uint64_t)rand_r(seed) % (6 * s->block + 777);
	if (rand_r(seed) % 10 == 0)
		g->size = 0;
	g->data = malloc(g->size ? g->size : 1);
	if (!g->data) {
		free(g);
		return ENOMEM;
	}
	for (uint64_t i = 0; i < g->size; i++)
		g->data[i] = (unsigned char)rand_r(seed);
	body.mem = g->data;
	body.len = g->size;
	store_attr_init(&attr);
	attr.mode = 0100644;
	attr.has = STORE_HAS_MODE;
	/* Hold the lock across the put: readers then never see a key newer than its snapshot. */
	pthread_mutex_lock(&o->lock);
	r = s->writer_store->ops->put(s->writer_store, o->key, &body, &attr, NULL, g->etag);
	if (r == 0) {
		g->older = o->cur;
		o->cur = g;
	}
	pthread_mutex_unlock(&o->lock);
	store_attr_free(&attr);
	if (r != 0) {
		free(g->data);
		free(g);
		return r;
	}
	data_cache_invalidate(s->dc, o->key);
	return 0;
}

static bool is_current(struct object *o, const struct generation *g)
{
	pthread_mutex_lock(&o->lock);
	bool cur = o->cur == g;
	pthread_mutex_unlock(&o->lock);
	return cur;
}

static void session(struct stress *s, unsigned char *buf, uint64_t buflen, unsigned *seed)
{
	struct object *o = &s->objs[(unsigned)rand_r(seed) % s->n_objs];
	struct generation *g;
	struct data_cache_file *f;
	bool sequential = rand_r(seed) % 2;
	uint64_t off = 0;
	int err = 0, reads = 1 + rand_r(seed) % 20;

	pthread_mutex_lock(&o->lock);
	g = o->cur;
	pthread_mutex_unlock(&o->lock);
	f = data_cache_open(s->dc, s->reader_store, o->key, g->etag, g->size, &err);
	if (!f) {
		fail(s, "open '%s': %s", o->key, strerror(err));
		return;
	}
	if (g->size)
		off = (uint64_t)rand_r(seed) % g->size;
	for (int i = 0; i < reads && !atomic_load(&s->failed); i++) {
		uint64_t len = 1 + (uint64_t)rand_r(seed) % (sequential ? s->block : buflen);
		if (!sequential && g->size)
			off = (uint64_t)rand_r(seed) % (g->size + 10);
		uint64_t want = off >= g->size ? 0 : len < g->size - off ? len : g->size - off;
		ssize_t n = data_cache_read(f, buf, len, off);
		atomic_fetch_add(&s->reads, 1);
		if (n == -EIO || n == -ETIMEDOUT) {
			atomic_fetch_add(&s->injected, 1);
			continue;
		}
		if (n == -ESTALE && !is_current(o, g)) {
			atomic_fetch_add(&s->stale, 1);
			break;
		}
		if (n != (ssize_t)want) {
			fail(s, "read %" PRIu64 " at %" PRIu64 " of '%s' (size %" PRIu64
				") returned %zd, want %" PRIu64,
			     len, off, o->key, g->size, n, want);
			break;
		}
		if (want && memcmp(buf, g->data + off, want) != 0) {
			fail(s, "read %" PRIu64 " at %" PRIu64 " of '%s': wrong bytes", len, off,
			     o->key);
			break;
		}
		off += want;
	}
	data_cache_close(f);
}

static void *reader(void *arg)
{
	struct stress *s = arg;
	uint64_t buflen = 3 * s->block;
	unsigned char *buf = malloc(buflen);
	unsigned seed = (unsigned)(uintptr_t)&buf ^ (unsigned)time(NULL);

	if (!buf) {
		fail(s, "out of memory");
		return NULL;
	}
	while (now_s() < s->deadline && !atomic_load(&s->failed))
		session(s, buf, buflen, &seed);
	free(buf);
	return NULL;
}

static void *writer(void *arg)
{
	struct stress *s = arg;
	unsigned seed = 4242;

	while (now_s() < s->deadline && !atomic_load(&s->failed)) {
		usleep(20000);
		int r = rewrite(s, &s->objs[(unsigned)rand_r(&seed) % s->n_objs], &seed);
		if (r)
			fail(s, "rewrite: %s", strerror(r));
		else
			atomic_fetch_add(&s->rewrites, 1);
	}
	return NULL;
}

static uint64_t disk_usage(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat sb;
	uint64_t sum = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &sb, 0) == 0)
			sum += (uint64_t)sb.st_blocks * 512;
	closedir(d);
	return sum;
}

static int usage(void)
{
	fprintf(stderr, "usage: dcache_stress [-t THREADS] [-d SECONDS] [-n OBJECTS] "
			"[-c CACHE_BYTES] [-b BLOCK] [-r READ_AHEAD] [-f FAULTS] [ROOT CACHE_DIR]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct data_cache_config cfg = {0};
	struct stress s = {0};
	struct data_cache_stats st;
	const char *faults = "eio=0.02,etimedout=0.01,delay_ms=1";
	char root_tmp[] = "/tmp/dcache_stress.root.XXXXXX";
	char cache_tmp[] = "/tmp/dcache_stress.cache.XXXXXX";
	char *root, *cache_dir, err[512], data_dir[4200];
	unsigned threads = 4, seed = 1;
	double seconds = 3;
	pthread_t *tids, wtid;
	bool temp = false;
	int opt, rc = 1;

	s.n_objs = 6;
	cfg.max_bytes = 12 * 64 * 1024;
	cfg.block_size = 64 * 1024;
	cfg.read_ahead = 4 * 64 * 1024;
	cfg.workers = 4;
	while ((opt = getopt(argc, argv, "t:d:n:c:b:r:f:")) != -1) {
		switch (opt) {
		case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': seconds = strtod(optarg, NULL); break;
		case 'n': s.n_objs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': cfg.max_bytes = strtoull(optarg, NULL, 10); break;
		case 'b': cfg.block_size = strtoull(optarg, NULL, 10); break;
		case 'r': cfg.read_ahead = strtoull(optarg, NULL, 10); break;
		case 'f': faults = optarg; break;
		default: return usage();
		}
	}
	if (threads == 0 || threads > 64 || s.n_objs == 0 || s.n_objs > 1000 || seconds <= 0 ||
	    seconds > 600 || cfg.block_size == 0 || (argc - optind != 0 && argc - optind != 2))
		return usage();
	log_init("dcache_stress", LOG_LEVEL_ERROR, false);
	if (argc - optind == 2) {
		root = argv[optind];
		cache_dir = argv[optind + 1];
	} else {
		if (!mkdtemp(root_tmp) || !mkdtemp(cache_tmp)) {
			perror("dcache_stress: mkdtemp");
			return 1;
		}
		root = root_tmp;
		cache_dir = cache_tmp;
		temp = true;
	}
	s.block = cfg.block_size;
	cfg.dir = cache_dir;
	snprintf(data_dir, sizeof(data_dir), "%s/data", cache_dir);

	unsetenv("OBJFS_DIR_FAULTS");
	s.writer_store = store_dir_create(root, err, sizeof(err));
	setenv("OBJFS_DIR_FAULTS", faults, 1);
	s.reader_store = store_dir_create(root, err, sizeof(err));
	s.dc = data_cache_create(&cfg, err, sizeof(err));
	s.objs = calloc(s.n_objs, sizeof(*s.objs));
	tids = calloc(threads, sizeof(*tids));
	if (!s.writer_store || !s.reader_store || !s.dc || !s.objs || !tids) {
		fprintf(stderr, "dcache_stress: setup: %s\n", err);
		goto out;
	}
	for (unsigned i = 0; i < s.n_objs; i++) {
		snprintf(s.objs[i].key, sizeof(s.objs[i].key), "d/obj%u", i);
		pthread_mutex_init(&s.objs[i].lock, NULL);
		int r = rewrite(&s, &s.objs[i], &seed);
		if (r) {
			fprintf(stderr, "dcache_stress: put: %s\n", strerror(r));
			goto out;
		}
	}

	s.deadline = now_s() + seconds;
	pthread_create(&wtid, NULL, writer, &s);
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, reader, &s);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	pthread_join(wtid, NULL);

	data_cache_get_stats(s.dc, &st);
	uint64_t du = disk_usage(data_dir);
	printf("dcache_stress: %u reads, %u injected errors, %u stale, %u rewrites; hits %" PRIu64
	       " misses %" PRIu64 " fetched %" PRIu64 " read-ahead %" PRIu64 "/%" PRIu64
	       " cancelled, %" PRIu64 " evictions, %" PRIu64 " bypass; cached %" PRIu64
	       " (disk %" PRIu64 ") of %" PRIu64 "\n",
	       atomic_load(&s.reads), atomic_load(&s.injected), atomic_load(&s.stale),
	       atomic_load(&s.rewrites), st.hits, st.misses, st.bytes_fetched,
	       st.readahead_cancelled, st.readahead_started, st.evictions, st.bypass_reads,
	       st.bytes_cached, du, st.max_bytes);
	if (st.bytes_cached > st.max_bytes || st.bytes_fetching != 0)
		fail(&s, "bound: %" PRIu64 " cached + %" PRIu64 " fetching > %" PRIu64,
		     st.bytes_cached, st.bytes_fetching, st.max_bytes);
	/* allocation rounds each object's last partial block up to a file-system block */
	if (du > st.max_bytes + (uint64_t)s.n_objs * 4096)
		fail(&s, "disk: %" PRIu64 " bytes allocated under '%s', bound %" PRIu64, du, data_dir,
		     st.max_bytes);
	if (atomic_load(&s.reads) == 0)
		fail(&s, "no reads happened");
	rc = atomic_load(&s.failed) ? 1 : 0;
out:
	data_cache_destroy(s.dc);
	store_destroy(s.reader_store);
	store_destroy(s.writer_store);
	for (unsigned i = 0; s.objs && i < s.n_objs; i++) {
		for (struct generation *g = s.objs[i].cur, *older; g; g = older) {
			older = g->older;
			free(g->data);
			free(g);
		}
		pthread_mutex_destroy(&s.objs[i].lock);
	}
	free(s.objs);
	free(tids);
	if (temp) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root_tmp, cache_tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "dcache_stress: cannot remove %s %s\n", root_tmp, cache_tmp);
	}
	return rc;
}
