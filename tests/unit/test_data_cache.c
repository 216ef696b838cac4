/*
 * test_data_cache.c - unit tests of data_cache.c against an in-test fake store: objects in
 * memory, every get counted and logged, with injectable delay (streamed in small chunks,
 * polling the cancel flag between them), a hold gate, EIO/ENOSPC/short-object failures.
 * The fake lets the tests assert exactly what was fetched; the cache directory on disk is
 * checked too (files present, bytes allocated).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "data_cache.h"

#define BS (64 * 1024) /* block size used by the tests */

/* ---- the fake store ------------------------------------------------------------------ */

struct fake_object {
	char key[64];
	char etag[32];
	unsigned char *data;
	uint64_t size;
	uint64_t short_by; /* serve this many bytes fewer than size (the object shrank) */
};

struct fake_call {
	uint64_t off, len;
	bool background, memfd, iov; /* iov: a get_iov (into memory) */
};

struct fake_store {
	struct store base;
	pthread_mutex_t lock;
	struct fake_object objs[8];
	size_t n_objs;
	/* behaviour, set by the test (under lock when threads run) */
	int fail_err;          /* fail gets with it... */
	int fail_left;         /* ...this many times; -1 = always */
	bool fail_background;  /* only read-ahead gets fail */
	unsigned fail_every;   /* >0: every Nth get fails with EIO (stress) */
	int enospc_left;       /* gets into a cache file (not a memfd) fail ENOSPC; -1 always */
	unsigned chunk;        /* streaming unit */
	unsigned chunk_delay_us;
	volatile int hold;     /* gets wait while set (still polling cancel) */
	/* counters */
	unsigned gets, in_flight, max_in_flight, cancelled, failed;
	uint64_t bytes;
	struct fake_call calls[4096];
	unsigned n_calls;
};

static bool fd_is_memfd(int fd)
{
	char link[64], target[256];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strncmp(target, "/memfd:", 7) == 0;
}

static struct fake_object *fake_find(struct fake_store *fs, const char *key)
{
	for (size_t i = 0; i < fs->n_objs; i++)
		if (strcmp(fs->objs[i].key, key) == 0)
			return &fs->objs[i];
	return NULL;
}

static bool fake_cancelled(const struct store_io *io)
{
	return io && io->cancel && __atomic_load_n(io->cancel, __ATOMIC_RELAXED);
}

/* Copy c bytes to position pos of the total iov (fake_get_any's get_iov). */
static void iov_put(const struct iovec *iov, const unsigned char *p, uint64_t pos, uint64_t c)
{
	for (; c > 0; iov++) {
		if (pos >= iov->iov_len) {
			pos -= iov->iov_len;
			continue;
		}
		uint64_t n = iov->iov_len - pos < c ? iov->iov_len - pos : c;
		memcpy((char *)iov->iov_base + pos, p, n);
		p += n;
		c -= n;
		pos = 0;
	}
}

/* get (into fd at fd_off) or, with iov, get_iov. */
static int fake_get_any(struct store *st, const char *key, uint64_t off, uint64_t len,
			const char *if_etag, const struct store_io *io, int fd, off_t fd_off,
			const struct iovec *iov, uint64_t *got)
{
	struct fake_store *fs = (struct fake_store *)st;
	bool background = io && io->priority == STORE_BACKGROUND;
	bool memfd = !iov && fd_is_memfd(fd);
	struct fake_object *o;
	uint64_t avail, n = 0;
	int r = 0;

	*got = 0;
	pthread_mutex_lock(&fs->lock);
	fs->gets++;
	if (fs->n_calls < sizeof(fs->calls) / sizeof(fs->calls[0]))
		fs->calls[fs->n_calls++] = (struct fake_call){off, len, background, memfd, !!iov};
	if (++fs->in_flight > fs->max_in_flight)
		fs->max_in_flight = fs->in_flight;
	o = fake_find(fs, key);
	if (!o)
		r = ENOENT;
	else if (if_etag && strcmp(if_etag, o->etag) != 0)
		r = ESTALE;
	else if (fs->fail_err && fs->fail_left != 0 && (!fs->fail_background || background)) {
		r = fs->fail_err;
		if (fs->fail_left > 0)
			fs->fail_left--;
	} else if (fs->fail_every && fs->gets % fs->fail_every == 0) {
		r = EIO;
	} else if (!memfd && !iov && fs->enospc_left != 0) {
		r = ENOSPC;
		if (fs->enospc_left > 0)
			fs->enospc_left--;
	}
	if (r == 0) {
		avail = o->size - o->short_by;
		n = off >= avail ? 0 : len < avail - off ? len : avail - off;
	}
	pthread_mutex_unlock(&fs->lock);

	while (r == 0 && __atomic_load_n(&fs->hold, __ATOMIC_RELAXED)) {
		if (fake_cancelled(io)) {
			r = ECANCELED;
			break;
		}
		usleep(1000);
	}
	for (uint64_t done = 0; r == 0 && done < n;) {
		uint64_t c = n - done < fs->chunk ? n - done : fs->chunk;
		if (fake_cancelled(io)) {
			r = ECANCELED;
			break;
		}
		if (fs->chunk_delay_us)
			usleep(fs->chunk_delay_us);
		if (iov)
			iov_put(iov, o->data + off + done, done, c);
		else if (pwrite(fd, o->data + off + done, c, fd_off + (off_t)done) != (ssize_t)c) {
			r = errno ? errno : EIO;
			break;
		}
		done += c;
		*got = done;
	}

	pthread_mutex_lock(&fs->lock);
	fs->in_flight--;
	fs->bytes += *got;
	if (r == ECANCELED)
		fs->cancelled++;
	else if (r)
		fs->failed++;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

static int fake_get(struct store *st, const char *key, uint64_t off, uint64_t len,
		    const char *if_etag, const struct store_io *io, int fd, off_t fd_off,
		    uint64_t *got)
{
	return fake_get_any(st, key, off, len, if_etag, io, fd, fd_off, NULL, got);
}

static int fake_get_iov(struct store *st, const char *key, uint64_t off, const char *if_etag,
			const struct store_io *io, const struct iovec *iov, int iovcnt,
			uint64_t *got)
{
	return fake_get_any(st, key, off, store_iov_len(iov, iovcnt), if_etag, io, -1, 0, iov, got);
}

static void fake_destroy(struct store *st)
{
	(void)st;
}

static const struct store_ops fake_ops = {
	.kind = "fake",
	.get = fake_get,
	.destroy = fake_destroy,
};

/* A store that can also fill memory: read-ahead may go there (cfg.read_ahead_mem). */
static const struct store_ops fake_ops_mem = {
	.kind = "fake",
	.get = fake_get,
	.get_iov = fake_get_iov,
	.destroy = fake_destroy,
};

static uint32_t pattern_seed = 1;

static void fill_pattern(unsigned char *p, uint64_t n)
{
	uint32_t x = pattern_seed++ * 2654435761u;
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

static struct fake_object *fake_add(struct fake_store *fs, const char *key, const char *etag,
				    uint64_t size)
{
	struct fake_object *o = &fs->objs[fs->n_objs++];

	snprintf(o->key, sizeof(o->key), "%s", key);
	snprintf(o->etag, sizeof(o->etag), "%s", etag);
	o->size = size;
	o->data = malloc(size ? size : 1);
	assert_non_null(o->data);
	fill_pattern(o->data, size);
	return o;
}

static unsigned fake_count(struct fake_store *fs, const unsigned *field)
{
	pthread_mutex_lock(&fs->lock);
	unsigned v = *field;
	pthread_mutex_unlock(&fs->lock);
	return v;
}

/* ---- fixture --------------------------------------------------------------------------- */

struct fixture {
	char dir[64];
	char data_dir[80];
	struct data_cache_config cfg;
	struct data_cache *dc;
	struct fake_store fs;
};

static int fixture_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_data_cache.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->data_dir, sizeof(fx->data_dir), "%s/data", fx->dir);
	fx->cfg.dir = fx->dir;
	fx->cfg.max_bytes = 64 * BS;
	fx->cfg.block_size = BS;
	fx->cfg.read_ahead = 8 * BS;
	fx->cfg.workers = 4;
	fx->fs.base.ops = &fake_ops;
	pthread_mutex_init(&fx->fs.lock, NULL);
	fx->fs.chunk = 16 * 1024;
	*state = fx;
	return 0;
}

static void start_cache(struct fixture *fx)
{
	char err[256] = "";
	fx->dc = data_cache_create(&fx->cfg, err, sizeof(err));
	if (!fx->dc)
		fail_msg("data_cache_create: %s", err);
}

static void rm_tree(const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
}

static int fixture_teardown(void **state)
{
	struct fixture *fx = *state;

	data_cache_destroy(fx->dc);
	for (size_t i = 0; i < fx->fs.n_objs; i++)
		free(fx->fs.objs[i].data);
	pthread_mutex_destroy(&fx->fs.lock);
	rm_tree(fx->dir);
	free(fx);
	return 0;
}

/* Bytes allocated on disk under dir, and the number of files. */
static uint64_t disk_usage(const char *dir, unsigned *files)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;
	struct stat sb;

	*files = 0;
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		assert_int_equal(fstatat(dirfd(d), e->d_name, &sb, 0), 0);
		sum += (uint64_t)sb.st_blocks * 512;
		(*files)++;
	}
	closedir(d);
	return sum;
}

static struct data_cache_stats stats(struct fixture *fx)
{
	struct data_cache_stats s;
	data_cache_get_stats(fx->dc, &s);
	return s;
}

static struct data_cache_file *open_obj(struct fixture *fx, const struct fake_object *o)
{
	int err = 0;
	struct data_cache_file *f = data_cache_open(fx->dc, &fx->fs.base, o->key, o->etag, o->size,
						    &err);
	if (!f)
		fail_msg("data_cache_open '%s': %s", o->key, strerror(err));
	return f;
}

/* Read [off, off+len) through f and compare with the object's bytes. Any thread. */
static bool read_ok(struct data_cache_file *f, const struct fake_object *o, uint64_t off,
		    size_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	size_t want = off >= o->size ? 0 : (len < o->size - off ? len : (size_t)(o->size - off));
	bool ok = true;
	ssize_t n;

	if (!buf)
		return false;
	n = data_cache_read(f, buf, len, off);
	if (n != (ssize_t)want) {
		fprintf(stderr, "read %zu at %" PRIu64 " of '%s' returned %zd, want %zu\n", len,
			off, o->key, n, want);
		ok = false;
	} else if (want && memcmp(buf, o->data + off, want) != 0) {
		fprintf(stderr, "read %zu at %" PRIu64 " of '%s': wrong bytes\n", len, off, o->key);
		ok = false;
	}
	free(buf);
	return ok;
}

/* The same, failing the test: main thread only. */
static void read_check(struct data_cache_file *f, const struct fake_object *o, uint64_t off,
		       size_t len)
{
	if (!read_ok(f, o, off, len))
		fail_msg("read %zu at %" PRIu64 " of '%s' failed", len, off, o->key);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Poll (bounded) until *field >= want. */
static bool wait_count(struct fake_store *fs, const unsigned *field, unsigned want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (fake_count(fs, field) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_create_wipes_and_refuses(void **state)
{
	struct fixture *fx = *state;
	char path[160], err[256] = "";
	unsigned files;
	struct data_cache_config cfg = fx->cfg;
	int fd;

	/* leftovers of an earlier mount, nested too */
	assert_int_equal(mkdir(fx->data_dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/old", fx->data_dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "stale", 5), 5);
	close(fd);
	snprintf(path, sizeof(path), "%s/sub", fx->data_dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/x", fx->data_dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);

	start_cache(fx);
	disk_usage(fx->data_dir, &files);
	assert_int_equal(files, 0);

	/* a directory that cannot be made (below a regular file): refused with one line */
	snprintf(path, sizeof(path), "%s/plainfile", fx->dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/plainfile/cache", fx->dir);
	cfg.dir = path;
	assert_null(data_cache_create(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "plainfile/cache"));
	assert_non_null(strstr(err, "cache_dir"));
	assert_null(strchr(err, '\n'));

	cfg.dir = "";
	assert_null(data_cache_create(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "cache_dir"));
}

static void test_read_bytes(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o, *empty;
	struct data_cache_file *f;
	unsigned char buf[16];
	unsigned seed = 7;

	start_cache(fx);
	o = fake_add(&fx->fs, "dir/a", "e1", 5 * BS + 1234);
	empty = fake_add(&fx->fs, "empty", "e0", 0);

	f = open_obj(fx, o);
	for (uint64_t off = 0; off < o->size; off += 10000) /* sequential, odd size */
		read_check(f, o, off, 10000);
	data_cache_close(f);

	f = open_obj(fx, o);
	for (int i = 0; i < 200; i++) { /* random, across block boundaries */
		uint64_t off = (uint64_t)rand_r(&seed) % o->size;
		size_t len = 1 + (size_t)rand_r(&seed) % (3 * BS);
		read_check(f, o, off, len);
	}
	read_check(f, o, BS - 1, 2);          /* one byte each side of a boundary */
	read_check(f, o, o->size - 10, 100);  /* short at EOF */
	read_check(f, o, o->size - 1, 1);
	read_check(f, o, o->size, 10);        /* at EOF */
	read_check(f, o, o->size + 5, 10);    /* past EOF */
	assert_int_equal(data_cache_read(f, buf, 0, 0), 0);
	data_cache_close(f);
	/* each block fetched once: the second handle reused the cached version */
	assert_int_equal(stats(fx).bytes_fetched, o->size);

	unsigned gets = fx->fs.gets;
	f = open_obj(fx, empty);
	assert_int_equal(data_cache_read(f, buf, sizeof(buf), 0), 0);
	assert_int_equal(data_cache_read(f, buf, sizeof(buf), 100), 0);
	data_cache_close(f);
	assert_int_equal(fx->fs.gets, gets);
}

static void test_random_small_reads_fetch_one_block(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;
	unsigned seed = 11;
	bool used[64] = {false};
	int nreads = 30;

	start_cache(fx);
	o = fake_add(&fx->fs, "big", "e", 64 * BS);
	f = open_obj(fx, o);
	for (int i = 0; i < nreads; i++) {
		uint64_t b;
		do
			b = (uint64_t)rand_r(&seed) % 64;
		while (used[b]);
		used[b] = true;
		read_check(f, o, b * BS + (uint64_t)rand_r(&seed) % (BS - 4096), 4096);
	}
	data_cache_close(f);
	struct data_cache_stats s = stats(fx);
	assert_int_equal(fx->fs.gets, nreads);
	assert_int_equal(s.bytes_fetched, (uint64_t)nreads * BS);
	assert_int_equal(s.misses, nreads);
	assert_int_equal(s.readahead_started, 0);
	for (unsigned i = 0; i < fx->fs.n_calls; i++)
		assert_int_equal(fx->fs.calls[i].len, BS);
}

static void test_readahead_parallel(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;

	fx->fs.chunk_delay_us = 2000; /* a block takes ~8 ms */
	start_cache(fx);
	o = fake_add(&fx->fs, "seq", "e", 32 * BS);
	f = open_obj(fx, o);
	for (uint64_t off = 0; off < o->size; off += BS / 2)
		read_check(f, o, off, BS / 2);
	data_cache_close(f);

	struct data_cache_stats s = stats(fx);
	assert_true(fx->fs.max_in_flight >= 2); /* read-ahead overlapped */
	assert_true(s.readahead_started >= 16);
	assert_int_equal(s.bytes_fetched, o->size); /* nothing fetched twice */
	assert_int_equal(fx->fs.bytes, o->size);
	assert_true(s.hits > s.misses);
	unsigned background = 0;
	for (unsigned i = 0; i < fx->fs.n_calls; i++)
		background += fx->fs.calls[i].background;
	assert_true(background >= 8);
}

/* Start read-ahead on a slow store: two sequential reads at the start of o. */
static struct data_cache_file *start_slow_read_ahead(struct fixture *fx, struct fake_object **o)
{
	struct data_cache_file *f;

	fx->fs.chunk = 4096;
	fx->fs.chunk_delay_us = 10000; /* a block takes ~160 ms */
	start_cache(fx);
	*o = fake_add(&fx->fs, "slow", "e", 40 * BS);
	f = open_obj(fx, *o);
	read_check(f, *o, 0, 4096);
	read_check(f, *o, 4096, 4096); /* sequential: blocks 1..8 read ahead */
	assert_true(wait_count(&fx->fs, &fx->fs.in_flight, 2, 2000));
	assert_true(stats(fx).readahead_started >= 8);
	return f;
}

static void test_readahead_cancelled_on_close(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f = start_slow_read_ahead(fx, &o);
	unsigned files;
	double t0;

	t0 = now_ms();
	data_cache_close(f);
	double took = now_ms() - t0;
	/* close waited for the running fetches, and they stopped early */
	assert_int_equal(fake_count(&fx->fs, &fx->fs.in_flight), 0);
	assert_true(took < 120.0);
	assert_true(fx->fs.cancelled >= 1);
	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.readahead_cancelled, s.readahead_started);
	assert_int_equal(s.bytes_fetching, 0);
	assert_true(s.bytes_fetched < 2 * BS);
	assert_int_equal(s.bytes_cached, BS); /* block 0 only: nothing partial kept */
	assert_true(disk_usage(fx->data_dir, &files) <= s.bytes_cached + 8192);

	/* the cancelled blocks are absent, not broken: they fetch again */
	fx->fs.chunk_delay_us = 0;
	unsigned gets = fx->fs.gets;
	f = open_obj(fx, o);
	read_check(f, o, 5 * BS + 100, 1000);
	assert_int_equal(fx->fs.gets, gets + 1);
	data_cache_close(f);
}

/* A read far from the read-ahead of f (started by start_slow_read_ahead): at least
 * want_cancelled GETs stop within ms, nothing stays fetching, every job counts as cancelled,
 * and little was fetched. The store is fast again afterwards. */
static void seek_away_cancels(struct fixture *fx, struct data_cache_file *f,
			      struct fake_object *o, unsigned want_cancelled, int ms)
{
	read_check(f, o, 30 * BS + 10, 100);
	assert_true(wait_count(&fx->fs, &fx->fs.cancelled, want_cancelled, ms));
	struct data_cache_stats s = stats(fx);
	/* until the workers have ended every job (memory jobs reserve no file room) */
	for (int i = 0; i < 2000 && (s.bytes_fetching > 0 || s.bytes_in_memory > 0 ||
				     s.readahead_cancelled != s.readahead_started); i++) {
		usleep(1000);
		s = stats(fx);
	}
	assert_int_equal(s.bytes_fetching, 0);
	assert_int_equal(s.readahead_cancelled, s.readahead_started);
	assert_true(s.bytes_fetched < 3 * BS);
	fx->fs.chunk_delay_us = 0;
}

static void test_readahead_cancelled_on_seek(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f = start_slow_read_ahead(fx, &o);

	/* far away: the read-ahead is no longer wanted; it is cancelled before this read's
	 * own (slow, one block) fetch starts, and stops within a chunk */
	seek_away_cancels(fx, f, o, 2, 100);
	/* near reads, sequential again, still correct */
	read_check(f, o, 30 * BS + 110, 5000);
	read_check(f, o, 2 * BS, 100);
	data_cache_close(f);
}

/* Consecutive blocks queued for read-ahead go in one GET of at most read_ahead_chunk. */
static void test_readahead_coalesced(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;
	unsigned background = 0, multi = 0;
	uint64_t longest = 0;

	fx->cfg.read_ahead = 16 * BS;
	fx->cfg.read_ahead_chunk = 4 * BS;
	fx->fs.chunk_delay_us = 2000;
	start_cache(fx);
	o = fake_add(&fx->fs, "seq", "e", 48 * BS + 123);
	f = open_obj(fx, o);
	for (uint64_t off = 0; off < o->size; off += BS / 2)
		read_check(f, o, off, BS / 2);
	data_cache_close(f);

	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.bytes_fetched, o->size); /* nothing fetched twice */
	assert_int_equal(fx->fs.bytes, o->size);
	for (unsigned i = 0; i < fx->fs.n_calls; i++) {
		if (!fx->fs.calls[i].background)
			continue;
		background++;
		multi += fx->fs.calls[i].len > BS;
		if (fx->fs.calls[i].len > longest)
			longest = fx->fs.calls[i].len;
		assert_int_equal(fx->fs.calls[i].off % BS, 0);
	}
	assert_true(background >= 4);
	assert_true(multi >= 2);         /* runs of blocks, not one GET a block */
	assert_true(longest <= 4 * BS);  /* never more than a chunk */
	assert_true(fx->fs.max_in_flight >= 2);
}

/* A coalesced GET is cancelled once no block of it is wanted. */
static void test_readahead_coalesced_cancelled_on_seek(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;

	fx->cfg.read_ahead_chunk = 4 * BS;
	f = start_slow_read_ahead(fx, &o);
	seek_away_cancels(fx, f, o, 1, 200);
	assert_int_equal(fake_count(&fx->fs, &fx->fs.in_flight), 0);
	read_check(f, o, 2 * BS, 100); /* the cancelled blocks fetch again, correctly */
	read_check(f, o, 6 * BS - 50, 100);
	data_cache_close(f);
}

struct reader_arg {
	struct fixture *fx;
	struct fake_object *o;
	struct data_cache_file *f;
	uint64_t off;
	size_t len;
	bool ok;
};

static void *reader_thread(void *p)
{
	struct reader_arg *a = p;
	a->ok = read_ok(a->f, a->o, a->off, a->len);
	return NULL;
}

static void test_concurrent_reader_waits(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct reader_arg a, b;
	pthread_t ta, tb;

	start_cache(fx);
	o = fake_add(&fx->fs, "shared", "e", 8 * BS);
	__atomic_store_n(&fx->fs.hold, 1, __ATOMIC_RELAXED);
	a = (struct reader_arg){fx, o, open_obj(fx, o), 3 * BS + 10, 1000, false};
	b = (struct reader_arg){fx, o, open_obj(fx, o), 3 * BS + 500, 3000, false};
	assert_int_equal(pthread_create(&ta, NULL, reader_thread, &a), 0);
	assert_true(wait_count(&fx->fs, &fx->fs.gets, 1, 2000));
	assert_int_equal(pthread_create(&tb, NULL, reader_thread, &b), 0);
	usleep(50000);
	assert_int_equal(fake_count(&fx->fs, &fx->fs.gets), 1); /* b waits, does not fetch */
	__atomic_store_n(&fx->fs.hold, 0, __ATOMIC_RELAXED);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_true(a.ok && b.ok);
	assert_int_equal(fx->fs.gets, 1);
	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.hits, 1);
	data_cache_close(a.f);
	data_cache_close(b.f);
}

static void test_etag_change_drops_old_data(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o, old;
	struct data_cache_file *h1, *h2;
	unsigned char buf[100];
	unsigned files;

	start_cache(fx);
	o = fake_add(&fx->fs, "k", "e1", 3 * BS);
	h1 = open_obj(fx, o);
	read_check(h1, o, 0, 100);
	old = *o;
	old.data = malloc(o->size);
	assert_non_null(old.data);
	memcpy(old.data, o->data, o->size);

	/* the object is overwritten: new bytes, new etag */
	fill_pattern(o->data, o->size);
	snprintf(o->etag, sizeof(o->etag), "e2");
	h2 = open_obj(fx, o);
	read_check(h2, o, 0, 100);
	read_check(h2, o, BS, 100);
	disk_usage(fx->data_dir, &files);
	assert_int_equal(files, 1); /* the old version's file is gone */

	read_check(h1, &old, 50, 50); /* the old handle keeps its cached bytes */
	assert_int_equal(data_cache_read(h1, buf, sizeof(buf), 2 * BS), -ESTALE);
	data_cache_close(h1);
	assert_int_equal(stats(fx).bytes_cached, 2 * BS); /* the old block was let go */
	data_cache_close(h2);

	/* reopened unchanged: served from the cache */
	unsigned gets = fx->fs.gets;
	h2 = open_obj(fx, o);
	read_check(h2, o, 0, 2 * BS);
	assert_int_equal(fx->fs.gets, gets);
	data_cache_close(h2);

	/* invalidated: fetched again */
	data_cache_invalidate(fx->dc, "k");
	assert_int_equal(stats(fx).bytes_cached, 0);
	h2 = open_obj(fx, o);
	read_check(h2, o, 0, 100);
	assert_int_equal(fx->fs.gets, gets + 1);
	data_cache_close(h2);
	free(old.data);
}

static void test_store_errors_not_cached(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o, missing = {.key = "gone", .etag = "x", .size = 100};
	struct data_cache_file *f;
	unsigned char buf[4096];
	unsigned files;

	start_cache(fx);
	o = fake_add(&fx->fs, "e", "e", 4 * BS);
	f = open_obj(fx, o);
	fx->fs.fail_err = EIO;
	fx->fs.fail_left = -1;
	assert_int_equal(data_cache_read(f, buf, sizeof(buf), BS), -EIO);
	assert_int_equal(data_cache_read(f, buf, sizeof(buf), BS), -EIO);
	assert_int_equal(fx->fs.gets, 2); /* the failure was not remembered either */
	fx->fs.fail_err = ETIMEDOUT;
	assert_int_equal(data_cache_read(f, buf, sizeof(buf), BS), -ETIMEDOUT);
	assert_int_equal(stats(fx).bytes_cached, 0);
	assert_int_equal(disk_usage(fx->data_dir, &files), 0);
	fx->fs.fail_err = 0;
	read_check(f, o, BS, sizeof(buf));
	data_cache_close(f);

	/* 404 is ENOENT */
	f = open_obj(fx, &missing);
	assert_int_equal(data_cache_read(f, buf, 10, 0), -ENOENT);
	data_cache_close(f);

	/* shorter than listed: ESTALE, nothing cached */
	o->short_by = BS / 2;
	f = open_obj(fx, o);
	uint64_t cached = stats(fx).bytes_cached;
	assert_int_equal(data_cache_read(f, buf, 10, 4 * BS - 10), -ESTALE);
	assert_int_equal(stats(fx).bytes_cached, cached);
	data_cache_close(f);
	o->short_by = 0;

	/* failed read-ahead does not poison: the reader fetches in the foreground */
	fx->fs.fail_err = EIO;
	fx->fs.fail_background = true;
	o = fake_add(&fx->fs, "ra", "e", 20 * BS);
	f = open_obj(fx, o);
	unsigned failed = fx->fs.failed;
	read_check(f, o, 0, BS / 4);
	read_check(f, o, BS / 4, BS / 4); /* sequential: read-ahead starts, and fails */
	assert_true(wait_count(&fx->fs, &fx->fs.failed, failed + 1, 2000));
	for (uint64_t off = BS / 2; off < o->size; off += BS / 4)
		read_check(f, o, off, BS / 4);
	data_cache_close(f);
	assert_true(stats(fx).readahead_started > 0);
	assert_true(fx->fs.failed <= failed + 8); /* one window, then read-ahead pauses */
}

static void test_bound_holds(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *objs[4], *big;
	struct data_cache_file *f;
	unsigned files;

	fx->cfg.max_bytes = 8 * BS;
	fx->cfg.read_ahead = 2 * BS;
	fx->cfg.workers = 2;
	start_cache(fx);
	for (int i = 0; i < 4; i++) {
		char key[16];
		snprintf(key, sizeof(key), "obj%d", i);
		objs[i] = fake_add(&fx->fs, key, "e", 6 * BS + 1000); /* 4 x 6 blocks = 3x max */
	}
	for (int i = 0; i < 4; i++) {
		f = open_obj(fx, objs[i]);
		for (uint64_t off = 0; off < objs[i]->size; off += BS / 2) {
			read_check(f, objs[i], off, BS / 2);
			struct data_cache_stats s = stats(fx);
			assert_true(s.bytes_cached <= s.max_bytes);
			assert_true(s.bytes_cached + s.bytes_fetching <= s.max_bytes);
			assert_true(disk_usage(fx->data_dir, &files) <= s.max_bytes + 16384);
		}
		data_cache_close(f);
	}
	assert_true(stats(fx).evictions > 0);

	/* one open object of 3x the cache: blocks behind the reader go */
	big = fake_add(&fx->fs, "big", "e", 24 * BS);
	f = open_obj(fx, big);
	for (uint64_t off = 0; off < big->size; off += BS / 2) {
		read_check(f, big, off, BS / 2);
		struct data_cache_stats s = stats(fx);
		assert_true(s.bytes_cached + s.bytes_fetching <= s.max_bytes);
		assert_true(disk_usage(fx->data_dir, &files) <= s.max_bytes + 8192);
	}
	assert_int_equal(stats(fx).bypass_reads, 0);
	data_cache_close(f);
	read_check(f = open_obj(fx, objs[0]), objs[0], 0, 3 * BS);
	data_cache_close(f);
	disk_usage(fx->data_dir, &files);
	assert_true(files <= 3); /* versions whose blocks all went were unlinked */
}

static void test_read_larger_than_cache(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;

	/* one read over 6 blocks, the cache holds 2: fetched block by block, evicting */
	fx->cfg.max_bytes = 2 * BS;
	fx->cfg.read_ahead = 0;
	start_cache(fx);
	o = fake_add(&fx->fs, "k", "e", 8 * BS);
	f = open_obj(fx, o);
	read_check(f, o, 100, 5 * BS);
	struct data_cache_stats s = stats(fx);
	assert_true(s.bytes_cached <= 2 * BS);
	assert_true(s.evictions >= 4);
	assert_int_equal(s.bypass_reads, 0);
	assert_int_equal(s.bytes_fetched, 6 * BS);
	read_check(f, o, 0, 8 * BS);
	data_cache_close(f);
	data_cache_destroy(fx->dc);

	/* a cache smaller than a block: every read goes around it */
	fx->cfg.max_bytes = BS / 2;
	start_cache(fx);
	f = open_obj(fx, o);
	read_check(f, o, BS - 50, 100);
	read_check(f, o, 3 * BS, 2 * BS);
	s = stats(fx);
	assert_int_equal(s.bytes_cached, 0);
	assert_int_equal(s.bypass_reads, 2); /* one GET per read, around the cache */
	assert_int_equal(s.bytes_fetched, 100 + 2 * BS);
	data_cache_close(f);
}

static void test_enospc(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;

	fx->cfg.read_ahead = 0;
	start_cache(fx);
	o = fake_add(&fx->fs, "k", "e", 4 * BS);
	f = open_obj(fx, o);
	read_check(f, o, 0, 100);

	/* once: blocks nobody reads now are dropped and the fetch retried into the cache */
	fx->fs.enospc_left = 1;
	read_check(f, o, BS, 100);
	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.bypass_reads, 0);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(s.bytes_cached, BS);

	/* always: the read goes around the cache */
	fx->fs.enospc_left = -1;
	unsigned gets = fx->fs.gets;
	read_check(f, o, 2 * BS + 10, 100);
	s = stats(fx);
	assert_int_equal(s.bypass_reads, 1);
	assert_int_equal(fx->fs.gets, gets + 3); /* try, retry, bypass */
	assert_true(fx->fs.calls[fx->fs.n_calls - 1].memfd);
	assert_int_equal(fx->fs.calls[fx->fs.n_calls - 1].len, 100);
	assert_int_equal(s.bytes_cached, 0);
	data_cache_close(f);
}

/* ---- bounded concurrent stress ------------------------------------------------------- */

struct stress_arg {
	struct fixture *fx;
	struct fake_object **objs;
	int n_objs;
	unsigned seed;
	unsigned errors;
	bool bad;
};

static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	unsigned char *buf = malloc(3 * BS);

	assert_non_null(buf);
	for (int op = 0; op < 60; op++) {
		struct fake_object *o = a->objs[rand_r(&a->seed) % a->n_objs];
		int err;
		struct data_cache_file *f = data_cache_open(a->fx->dc, &a->fx->fs.base, o->key,
							    o->etag, o->size, &err);
		if (!f) {
			a->bad = true;
			break;
		}
		bool seq = rand_r(&a->seed) % 2;
		uint64_t off = (uint64_t)rand_r(&a->seed) % o->size;
		int reads = 1 + rand_r(&a->seed) % 12;
		for (int r = 0; r < reads; r++) {
			size_t len = 1 + (size_t)rand_r(&a->seed) % (seq ? BS / 2 : 3 * BS);
			if (!seq)
				off = (uint64_t)rand_r(&a->seed) % o->size;
			ssize_t n = data_cache_read(f, buf, len, off);
			size_t want = off >= o->size ? 0 : len < o->size - off ? len : o->size - off;
			if (n == -EIO) {
				a->errors++;
				continue;
			}
			if (n != (ssize_t)want || memcmp(buf, o->data + off, want) != 0) {
				fprintf(stderr, "stress read %zu at %" PRIu64 " of '%s' gave %zd\n",
					len, off, o->key, n);
				a->bad = true;
			}
			off += want;
		}
		data_cache_close(f);
	}
	free(buf);
	return NULL;
}

static void concurrent_stress(struct fixture *fx, bool memory)
{
	struct fake_object *objs[3];
	struct stress_arg args[4];
	pthread_t t[4];
	unsigned files;

	fx->cfg.max_bytes = 10 * BS;
	fx->cfg.read_ahead = 3 * BS;
	fx->cfg.workers = 3;
	if (memory) {
		fx->fs.base.ops = &fake_ops_mem;
		fx->cfg.read_ahead_mem = 2 * BS; /* less than the window: some goes to files */
	}
	fx->fs.chunk_delay_us = 100;
	fx->fs.fail_every = 29;
	start_cache(fx);
	objs[0] = fake_add(&fx->fs, "s0", "e", 12 * BS + 17);
	objs[1] = fake_add(&fx->fs, "s1", "e", 5 * BS);
	objs[2] = fake_add(&fx->fs, "s2", "e", 3);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct stress_arg){fx, objs, 3, 100u + (unsigned)i, 0, false};
		assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	struct data_cache_stats s = stats(fx);
	assert_true(s.bytes_cached <= s.max_bytes);
	assert_int_equal(s.bytes_fetching, 0);
	assert_int_equal(fake_count(&fx->fs, &fx->fs.in_flight), 0);
	assert_true(disk_usage(fx->data_dir, &files) <= s.max_bytes + 16384);
	assert_true(files <= 3);
	unsigned errors = 0;
	for (int i = 0; i < 4; i++) {
		assert_false(args[i].bad);
		errors += args[i].errors;
	}
	assert_true(errors > 0); /* the injection did happen */
	assert_int_equal(s.bytes_in_memory, 0); /* every handle closed: no buffer left */
	if (memory)
		assert_true(s.readahead_to_memory > 0);
}

static void test_concurrent_stress(void **state)
{
	concurrent_stress(*state, false);
}

/* The same with read-ahead into memory (less than the window: some goes to the file). */
static void test_concurrent_stress_memory(void **state)
{
	concurrent_stress(*state, true);
}

/* ---- read-ahead into memory -------------------------------------------------------- */

static void setup_memory(struct fixture *fx, uint64_t window, uint64_t chunk, uint64_t mem)
{
	fx->fs.base.ops = &fake_ops_mem;
	fx->cfg.read_ahead = window;
	fx->cfg.read_ahead_chunk = chunk;
	fx->cfg.read_ahead_mem = mem;
}

/* A sequential reader is served from memory: read-ahead GETs go to get_iov, the cache file
 * holds only what the reader fetched itself, the memory never exceeds its bound and is
 * given back at close; such blocks are not cached afterwards. */
static void test_readahead_into_memory(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;
	unsigned files, into_memory = 0;
	uint64_t most = 0;

	setup_memory(fx, 8 * BS, 2 * BS, 8 * BS);
	fx->fs.chunk_delay_us = 500;
	start_cache(fx);
	o = fake_add(&fx->fs, "seq", "e", 40 * BS + 100);
	f = open_obj(fx, o);
	for (uint64_t off = 0; off < o->size; off += BS) {
		read_check(f, o, off, BS);
		uint64_t m = stats(fx).bytes_in_memory;
		most = m > most ? m : most;
	}
	struct data_cache_stats s = stats(fx);
	assert_true(most > 0 && most <= 8 * BS);
	assert_true(s.readahead_to_memory >= 30);
	assert_int_equal(s.bytes_fetched, o->size); /* nothing fetched twice */
	for (unsigned i = 0; i < fx->fs.n_calls; i++)
		into_memory += fx->fs.calls[i].iov;
	assert_true(into_memory >= 15);
	assert_true(s.bytes_cached <= 4 * BS); /* the reader's own fetches only */
	assert_true(disk_usage(fx->data_dir, &files) <= s.bytes_cached + 8192);
	data_cache_close(f);
	assert_int_equal(stats(fx).bytes_in_memory, 0);

	/* what was in memory is not cached: reading it again asks the store */
	unsigned gets = fx->fs.gets;
	f = open_obj(fx, o);
	read_check(f, o, 20 * BS + 5, 100);
	assert_int_equal(fx->fs.gets, gets + 1);
	data_cache_close(f);
}

/* The kernel's own read-ahead sends several requests at once (read_ahead_kb above max_read),
 * and they reach the cache in any order. Model: each read is one of the `spread` lowest blocks
 * not yet read. That is still one sequential reader: its read-ahead must not be cancelled and
 * nothing may be fetched twice. kernel_ra: what the cache is told of the kernel's read-ahead;
 * min_started: blocks of the 96 that must have been read ahead. */
static void out_of_order_reader(struct fixture *fx, unsigned spread, uint64_t kernel_ra,
				unsigned min_started)
{
	struct fake_object *o;
	struct data_cache_file *f;
	bool done[96] = {false};
	unsigned n = 96, lo = 0, rng = 12345;

	fx->cfg.read_ahead = 16 * BS;
	fx->cfg.read_ahead_chunk = 4 * BS;
	fx->fs.chunk_delay_us = 200;
	start_cache(fx);
	if (kernel_ra)
		data_cache_set_kernel_read_ahead(fx->dc, kernel_ra);
	o = fake_add(&fx->fs, "ooo", "e", n * BS);
	f = open_obj(fx, o);
	while (lo < n) {
		unsigned b;
		do {
			rng = rng * 1103515245u + 12345u;
			b = lo + (rng >> 16) % spread;
		} while (b >= n || done[b]);
		read_check(f, o, (uint64_t)b * BS, BS);
		done[b] = true;
		while (lo < n && done[lo])
			lo++;
	}
	data_cache_close(f);

	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.readahead_cancelled, 0);
	assert_int_equal(s.bytes_fetched, o->size); /* nothing fetched twice */
	assert_true(s.readahead_started >= min_started); /* read ahead, not block by block */
	assert_int_equal(stats(fx).bytes_in_memory, 0);
}

static void test_out_of_order_reader_file(void **state)
{
	out_of_order_reader(*state, 4, 0, 88);
}

static void test_out_of_order_reader_memory(void **state)
{
	struct fixture *fx = *state;
	setup_memory(fx, 16 * BS, 4 * BS, 16 * BS);
	out_of_order_reader(fx, 4, 0, 88);
	assert_true(stats(fx).readahead_to_memory >= 80);
}

/* A kernel read-ahead larger than our window (read_ahead_kb raised by a user) spreads the
 * requests of one reader further than the window: up to two kernel windows. Told of it,
 * the cache still sees one stream: nothing cancelled, nothing fetched twice. Reads beyond
 * our window are fetched by the reads themselves (the kernel's own read-ahead), and in
 * memory mode the blocks passed but not read yet hold the budget: fewer read ahead. */
static void test_out_of_order_reader_kernel_ra(void **state)
{
	out_of_order_reader(*state, 24, 12 * BS, 64);
}

static void test_out_of_order_reader_kernel_ra_memory(void **state)
{
	struct fixture *fx = *state;
	setup_memory(fx, 16 * BS, 4 * BS, 16 * BS);
	out_of_order_reader(fx, 24, 12 * BS, 24);
}

/* With a large kernel read-ahead, a request far ahead of the others may come first: the
 * stream's furthest read jumps ahead while the blocks it passed are still on their way
 * (read-ahead jobs) or in memory. Nobody has read them yet and the kernel will ask: they
 * stay, nothing is cancelled or fetched twice. */
static void far_ahead_request(struct fixture *fx)
{
	struct fake_object *o;
	struct data_cache_file *f;

	fx->cfg.read_ahead = 16 * BS;
	fx->cfg.read_ahead_chunk = 4 * BS;
	fx->fs.chunk_delay_us = 2000; /* the read-ahead is still running at the jump */
	start_cache(fx);
	data_cache_set_kernel_read_ahead(fx->dc, 16 * BS); /* slack: 64 blocks */
	o = fake_add(&fx->fs, "far", "e", 64 * BS);
	f = open_obj(fx, o);
	read_check(f, o, 0, BS);
	read_check(f, o, BS, BS); /* sequential: blocks 2..17 read ahead */
	read_check(f, o, 30 * BS, BS);
	for (unsigned b = 2; b < 64; b++)
		if (b != 30)
			read_check(f, o, (uint64_t)b * BS, BS);
	data_cache_close(f);

	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.readahead_cancelled, 0);
	assert_int_equal(s.bytes_fetched, o->size);
	assert_int_equal(s.bytes_in_memory, 0);
}

static void test_far_ahead_request_file(void **state)
{
	far_ahead_request(*state);
}

static void test_far_ahead_request_memory(void **state)
{
	struct fixture *fx = *state;
	setup_memory(fx, 16 * BS, 4 * BS, 16 * BS);
	far_ahead_request(fx);
}

/* A late kernel request (behind the stream's furthest read) starts read-ahead from where it
 * ends. The blocks after it that the reader already read out of memory, and whose buffers
 * are gone (more than DC_MEM_BEHIND_BYTES behind), are not fetched again: the kernel has
 * them. */
static void test_late_request_no_refetch(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;
	unsigned late = 2, n = 96, gap = 48; /* > 2 MiB of blocks */

	setup_memory(fx, 16 * BS, 4 * BS, 128 * BS);
	start_cache(fx);
	data_cache_set_kernel_read_ahead(fx->dc, 16 * BS); /* slack: 64 blocks */
	o = fake_add(&fx->fs, "late", "e", n * BS);
	f = open_obj(fx, o);
	for (unsigned b = 0; b < late + gap; b++)
		if (b != late)
			read_check(f, o, (uint64_t)b * BS, BS);
	read_check(f, o, (uint64_t)late * BS, BS);
	for (unsigned b = late + gap; b < n; b++)
		read_check(f, o, (uint64_t)b * BS, BS);
	data_cache_close(f);

	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.readahead_cancelled, 0);
	assert_int_equal(s.bytes_fetched, o->size);
	assert_true(s.readahead_to_memory >= n - 8);
	assert_int_equal(s.bytes_in_memory, 0);
}

/* The kernel may ask again for a few pages of a block it was given whole (seen on Linux 6.18
 * with a large read_ahead_kb: 4-280 KiB reads tens of MiB behind the stream). The block left
 * memory when the reader passed it, so the cache fetches exactly what is asked, around the
 * cache, not the whole block again. A read of such a block after a seek is a new stream's
 * and is fetched and cached as usual. */
static void test_kernel_reread_fetches_only_what_it_asks(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;
	unsigned n = 128;
	uint64_t before;

	setup_memory(fx, 8 * BS, 4 * BS, 16 * BS);
	start_cache(fx);
	data_cache_set_kernel_read_ahead(fx->dc, 16 * BS); /* slack: 64 blocks */
	o = fake_add(&fx->fs, "reread", "e", n * BS);
	f = open_obj(fx, o);
	for (unsigned b = 0; b < n; b++) {
		read_check(f, o, (uint64_t)b * BS, BS);
		usleep(2000); /* the workers take the read-ahead before the reader comes */
	}
	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.bytes_fetched, o->size);
	/* the blocks re-read below came through memory */
	for (unsigned i = 0; i < fx->fs.n_calls; i++) {
		const struct fake_call *c = &fx->fs.calls[i];
		for (uint64_t b = c->off / BS; b * BS < c->off + c->len; b++)
			if (b == 70 || b == 80 || b == 99 || b == 100)
				assert_true(c->iov);
	}
	before = s.bytes_fetched;
	read_check(f, o, 70 * BS + 8192, 4096);
	read_check(f, o, 80 * BS + 12288, 20480);
	read_check(f, o, 100 * BS - 4096, 8192); /* across two blocks */
	s = stats(fx);
	assert_int_equal(s.bytes_fetched - before, 4096 + 20480 + 8192);
	assert_int_equal(s.kernel_rereads, 4);
	assert_int_equal(s.readahead_cancelled, 0);

	/* a seek (beyond the slack) makes a new stream: its read is fetched whole and cached */
	read_check(f, o, 10 * BS + 100, 100);
	s = stats(fx);
	assert_int_equal(s.bytes_fetched - before, 4096 + 20480 + 8192 + BS);
	assert_int_equal(s.kernel_rereads, 4);
	data_cache_close(f);
}

/* Seeking away cancels read-ahead into memory like read-ahead into the file, and gives its
 * memory back. */
static void test_memory_readahead_cancelled_on_seek(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f;

	setup_memory(fx, 8 * BS, 0, 8 * BS);
	f = start_slow_read_ahead(fx, &o);
	assert_true(stats(fx).bytes_in_memory >= 2 * BS);
	seek_away_cancels(fx, f, o, 2, 100);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
	read_check(f, o, 30 * BS + 110, 5000);
	data_cache_close(f);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
}

/* Open a 16-block object and read its start: blocks 1..8 are queued for read-ahead into
 * memory, one worker busy with the first chunk (a block takes ~50 ms) keeps the later ones
 * queued. max_bytes: the cache file's size, 0 for the default. */
static struct data_cache_file *queue_memory_jobs(struct fixture *fx, uint64_t max_bytes,
						 struct fake_object **o)
{
	struct data_cache_file *f;

	setup_memory(fx, 8 * BS, 2 * BS, 8 * BS);
	fx->cfg.workers = 1;
	if (max_bytes)
		fx->cfg.max_bytes = max_bytes;
	fx->fs.chunk = 4096;
	fx->fs.chunk_delay_us = 3000;
	start_cache(fx);
	*o = fake_add(&fx->fs, "q", "e", 16 * BS);
	f = open_obj(fx, *o);
	read_check(f, *o, 0, 4096);
	read_check(f, *o, 4096, 4096);
	assert_true(stats(fx).readahead_to_memory >= 6);
	return f;
}

/* A reader that reaches a block still queued for read-ahead into memory fetches it itself,
 * into the file: the job and its buffer go, and the bytes are right. */
static void test_memory_job_taken_over(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f = queue_memory_jobs(fx, 0, &o);
	struct data_cache_stats s = stats(fx);
	uint64_t cached = s.bytes_cached;
	read_check(f, o, 4 * BS, BS / 2); /* block 4: queued behind the worker's chunk */
	s = stats(fx);
	assert_true(s.bytes_cached >= cached + BS); /* fetched by the reader, into the file */
	assert_true(s.bytes_in_memory <= 8 * BS);
	unsigned foreground = 0;
	for (unsigned i = 0; i < fx->fs.n_calls; i++)
		foreground += !fx->fs.calls[i].background && fx->fs.calls[i].off == 4 * BS;
	assert_int_equal(foreground, 1);
	for (uint64_t off = 4 * BS + BS / 2; off < o->size; off += BS / 2)
		read_check(f, o, off, BS / 2);
	data_cache_close(f);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
	assert_int_equal(stats(fx).bytes_fetching, 0);
}

/* The same with no room in the cache file at all (a cache smaller than a block): the reader
 * reads the whole block around the cache, and the queued read-ahead of that block into
 * memory is cancelled rather than fetching it a second time. */
static void test_memory_job_no_room(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o;
	struct data_cache_file *f = queue_memory_jobs(fx, BS / 2, &o);

	read_check(f, o, 4 * BS, BS); /* block 4, whole: queued behind the worker's chunk */
	assert_int_equal(stats(fx).bypass_reads, 3);
	for (uint64_t off = 5 * BS; off < o->size; off += BS / 2)
		read_check(f, o, off, BS / 2);
	data_cache_close(f);
	unsigned block4 = 0;
	for (unsigned i = 0; i < fx->fs.n_calls; i++)
		block4 += fx->fs.calls[i].off <= 4 * BS &&
			  fx->fs.calls[i].off + fx->fs.calls[i].len > 4 * BS;
	assert_int_equal(block4, 1);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
	assert_int_equal(stats(fx).bytes_fetching, 0);
}

/* Two streams and memory for one chunk: the memory bound holds and the rest of the
 * read-ahead goes to the cache file; both read correctly. */
static void test_memory_bound_spills_to_file(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *a, *b;
	struct data_cache_file *fa, *fb;

	setup_memory(fx, 6 * BS, 2 * BS, 2 * BS);
	fx->fs.chunk_delay_us = 300;
	start_cache(fx);
	a = fake_add(&fx->fs, "a", "e", 20 * BS);
	b = fake_add(&fx->fs, "b", "e", 20 * BS + 9);
	fa = open_obj(fx, a);
	fb = open_obj(fx, b);
	for (uint64_t off = 0; off < b->size; off += BS / 2) {
		if (off < a->size)
			read_check(fa, a, off, BS / 2);
		read_check(fb, b, off, BS / 2);
		assert_true(stats(fx).bytes_in_memory <= 2 * BS);
	}
	struct data_cache_stats s = stats(fx);
	assert_true(s.readahead_to_memory > 0);
	assert_true(s.readahead_started > s.readahead_to_memory); /* some went to the file */
	assert_true(s.bytes_cached > 4 * BS);
	data_cache_close(fa);
	data_cache_close(fb);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
}

/* Four sequential readers and read-ahead memory for two of their windows: each stream gets
 * its share of the memory (in smaller GETs) instead of the first two taking all of it and
 * the others reading ahead into the cache file, a write and a read back per block (before:
 * about half of this test's read-ahead went to the file; with 32 MiB for four 256 MiB reads
 * through a mount, 3/4 of it). */
static void test_memory_shared_between_streams(void **state)
{
	struct fixture *fx = *state;
	struct fake_object *o[4];
	struct data_cache_file *f[4];
	unsigned n = 40;

	setup_memory(fx, 16 * BS, 4 * BS, 32 * BS);
	fx->fs.chunk_delay_us = 200;
	start_cache(fx);
	for (unsigned k = 0; k < 4; k++) {
		char key[8];
		snprintf(key, sizeof(key), "s%u", k);
		o[k] = fake_add(&fx->fs, key, "e", n * BS);
		f[k] = open_obj(fx, o[k]);
	}
	for (unsigned b = 0; b < n; b++) {
		for (unsigned k = 0; k < 4; k++)
			read_check(f[k], o[k], (uint64_t)b * BS, BS);
		assert_true(stats(fx).bytes_in_memory <= 32 * BS);
		usleep(1000);
	}
	struct data_cache_stats s = stats(fx);
	assert_int_equal(s.bytes_fetched, 4 * n * BS); /* nothing twice */
	assert_true(s.readahead_started >= 4 * (n - 8));
	/* all but a chunk or so per stream at the start */
	assert_true(s.readahead_to_memory + 4 * 4 >= s.readahead_started);
	for (unsigned k = 0; k < 4; k++)
		data_cache_close(f[k]);
	assert_int_equal(stats(fx).bytes_in_memory, 0);
}

/* A cache of two blocks and four readers of 3-block ranges: evictions race with copy-outs
 * all the time; a block being copied out must never be punched. */
struct contend_arg {
	struct fixture *fx;
	struct fake_object *o;
	unsigned seed;
	bool bad;
};

static void *contend_thread(void *p)
{
	struct contend_arg *a = p;
	int err;
	struct data_cache_file *f = data_cache_open(a->fx->dc, &a->fx->fs.base, a->o->key,
						    a->o->etag, a->o->size, &err);
	if (!f) {
		a->bad = true;
		return NULL;
	}
	for (int i = 0; i < 300 && !a->bad; i++) {
		uint64_t off = (uint64_t)rand_r(&a->seed) % (a->o->size - 3 * BS);
		if (!read_ok(f, a->o, off, 1 + (size_t)rand_r(&a->seed) % (3 * BS)))
			a->bad = true;
	}
	data_cache_close(f);
	return NULL;
}

static void test_eviction_spares_readers(void **state)
{
	struct fixture *fx = *state;
	struct contend_arg args[4];
	pthread_t t[4];

	fx->cfg.max_bytes = 2 * BS;
	fx->cfg.read_ahead = 0;
	start_cache(fx);
	for (int i = 0; i < 4; i++) {
		char key[16];
		snprintf(key, sizeof(key), "c%d", i % 2);
		if (i < 2)
			fake_add(&fx->fs, key, "e", 8 * BS);
		args[i] = (struct contend_arg){fx, &fx->fs.objs[i % 2], 500u + (unsigned)i, false};
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, contend_thread, &args[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		assert_false(args[i].bad);
	struct data_cache_stats s = stats(fx);
	assert_true(s.evictions > 100);
	assert_true(s.bytes_cached <= 2 * BS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
		T(test_create_wipes_and_refuses),
		T(test_read_bytes),
		T(test_random_small_reads_fetch_one_block),
		T(test_readahead_parallel),
		T(test_readahead_cancelled_on_close),
		T(test_readahead_cancelled_on_seek),
		T(test_readahead_coalesced),
		T(test_readahead_coalesced_cancelled_on_seek),
		T(test_concurrent_reader_waits),
		T(test_etag_change_drops_old_data),
		T(test_store_errors_not_cached),
		T(test_bound_holds),
		T(test_read_larger_than_cache),
		T(test_enospc),
		T(test_concurrent_stress),
		T(test_concurrent_stress_memory),
		T(test_readahead_into_memory),
		T(test_memory_readahead_cancelled_on_seek),
		T(test_memory_bound_spills_to_file),
		T(test_memory_job_taken_over),
		T(test_memory_job_no_room),
		T(test_eviction_spares_readers),
		T(test_out_of_order_reader_file),
		T(test_out_of_order_reader_memory),
		T(test_out_of_order_reader_kernel_ra),
		T(test_out_of_order_reader_kernel_ra_memory),
		T(test_far_ahead_request_file),
		T(test_far_ahead_request_memory),
		T(test_late_request_no_refetch),
		T(test_kernel_reread_fetches_only_what_it_asks),
		T(test_memory_shared_between_streams),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
