/*
 * test_sync.c - the sync queue against an in-test fake store that counts every call, can
 * fail N calls (or all) with a chosen errno, delay calls, hold calls at a gate until
 * released (or cancelled), and records concurrency. Covers: upload and drain, settle and
 * batches, crash replay (a forked child that dies without cleaning up, and destroy without
 * drain), supersede while queued and while uploading, retries with backoff visible in
 * stats, multipart with parallel parts and the abort of a recorded upload on replay, ENOSPC
 * (injected by wrapping pwrite at link time: -Wl,--wrap=pwrite), the cache-dir lock,
 * sync_wait_all's watermark, renames (local and server-side), set_attr merging, listings.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "journal.h"
#include "sync.h"

/* ---- pwrite fault injection (journal appends) ---- */

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
static int fail_pwrite_errno; /* atomic */

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	int fail = __atomic_load_n(&fail_pwrite_errno, __ATOMIC_SEQ_CST);
	if (fail && fd > 2) {
		errno = fail;
		return -1;
	}
	return __real_pwrite(fd, buf, n, off);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- the fake store ---- */

enum fake_op { OP_PUT, OP_COPY, OP_REMOVE, OP_MPU_CREATE, OP_MPU_PART, OP_MPU_COMPLETE, OP_MPU_ABORT, OP_N };

struct fake_obj {
	char key[128];
	unsigned char *data;
	size_t len;
	struct store_attr attr;
};

#define FAKE_MAX_PARTS 64
struct fake_upload {
	char id[32];
	char key[128];
	unsigned char *part[FAKE_MAX_PARTS];
	size_t part_len[FAKE_MAX_PARTS];
	bool aborted, completed;
};

struct fake_event {
	enum fake_op op;
	char key[128];
	char md5[33]; /* of the body (PUT) */
	int err;
	int64_t at_ms;
};

#define FAKE_MAX_EVENTS 4096
struct fake {
	struct store st;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fake_obj obj[1024];
	size_t n_obj;
	struct fake_upload up[32];
	size_t n_up;
	struct fake_event ev[FAKE_MAX_EVENTS];
	size_t n_ev;
	unsigned calls[OP_N], ok[OP_N];
	/* faults */
	int fail_count[OP_N]; /* fail the next N calls; -1: all */
	int fail_err;
	char fail_key[128];   /* "" any key */
	long delay_ms[OP_N];
	int bad_etag_count; /* answer PUTs with a wrong ETag this many times */
	/* gate: calls of gated ops on gated keys wait until released or cancelled */
	bool gate[OP_N];
	char gate_keys[8][128]; /* "" slots unused; all empty: every key */
	unsigned gated;         /* calls waiting at the gate now */
	/* concurrency */
	int active[OP_N], max_active[OP_N];
	char active_put[64][128];
	int max_same_key_put;
};

static struct fake *fake_of(struct store *st)
{
	return (struct fake *)st;
}

static bool fake_gated_key(struct fake *f, const char *key)
{
	bool any = false;
	for (int i = 0; i < 8; i++) {
		if (!f->gate_keys[i][0])
			continue;
		any = true;
		if (strcmp(f->gate_keys[i], key) == 0)
			return true;
	}
	return !any;
}

static int fake_enter(struct fake *f, enum fake_op op, const char *key, const struct store_io *io)
{
	int err = 0;

	pthread_mutex_lock(&f->lock);
	f->calls[op]++;
	if (++f->active[op] > f->max_active[op])
		f->max_active[op] = f->active[op];
	if (op == OP_PUT) {
		int same = 1;
		for (int i = 0; i < 64; i++)
			if (strcmp(f->active_put[i], key) == 0)
				same++;
		if (same > f->max_same_key_put)
			f->max_same_key_put = same;
		for (int i = 0; i < 64; i++)
			if (!f->active_put[i][0]) {
				snprintf(f->active_put[i], sizeof(f->active_put[i]), "%s", key);
				break;
			}
	}
	while (f->gate[op] && fake_gated_key(f, key)) {
		struct timespec ts;
		if (io && io->cancel && __atomic_load_n(io->cancel, __ATOMIC_ACQUIRE)) {
			err = ECANCELED;
			break;
		}
		f->gated++;
		pthread_cond_broadcast(&f->cond);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
		f->gated--;
	}
	if (!err && f->fail_count[op] != 0 && (!f->fail_key[0] || strcmp(f->fail_key, key) == 0)) {
		if (f->fail_count[op] > 0)
			f->fail_count[op]--;
		err = f->fail_err;
	}
	long delay = f->delay_ms[op];
	pthread_mutex_unlock(&f->lock);
	for (long waited = 0; !err && waited < delay; waited += 2) {
		if (io && io->cancel && __atomic_load_n(io->cancel, __ATOMIC_ACQUIRE))
			err = ECANCELED;
		else
			sleep_ms(2);
	}
	if (err == ECANCELED)
		store_set_error(err, 0, NULL, "cancelled");
	else if (err)
		store_set_error(err, 503, "SlowDown", "Please reduce your request rate.");
	return err;
}

static void fake_leave(struct fake *f, enum fake_op op, const char *key, int err, const char *md5)
{
	pthread_mutex_lock(&f->lock);
	f->active[op]--;
	if (op == OP_PUT)
		for (int i = 0; i < 64; i++)
			if (strcmp(f->active_put[i], key) == 0) {
				f->active_put[i][0] = '\0';
				break;
			}
	if (f->n_ev < FAKE_MAX_EVENTS) {
		struct fake_event *e = &f->ev[f->n_ev++];
		e->op = op;
		snprintf(e->key, sizeof(e->key), "%s", key);
		snprintf(e->md5, sizeof(e->md5), "%s", md5 ? md5 : "");
		e->err = err;
		e->at_ms = now_ms();
	}
	if (!err)
		f->ok[op]++;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static struct fake_obj *fake_find(struct fake *f, const char *key)
{
	for (size_t i = 0; i < f->n_obj; i++)
		if (strcmp(f->obj[i].key, key) == 0)
			return &f->obj[i];
	return NULL;
}

/* Store bytes under key (takes data); under f->lock. */
static void fake_store_obj(struct fake *f, const char *key, unsigned char *data, size_t len,
			   const struct store_attr *attr)
{
	struct fake_obj *o = fake_find(f, key);
	if (!o) {
		assert_true(f->n_obj < 1024);
		o = &f->obj[f->n_obj++];
		snprintf(o->key, sizeof(o->key), "%s", key);
	} else {
		free(o->data);
		store_attr_free(&o->attr);
	}
	o->data = data;
	o->len = len;
	store_attr_init(&o->attr);
	if (attr)
		store_attr_copy(&o->attr, attr);
	o->attr.size = len;
}

static void fake_remove_obj(struct fake *f, const char *key)
{
	struct fake_obj *o = fake_find(f, key);
	if (!o)
		return;
	free(o->data);
	store_attr_free(&o->attr);
	*o = f->obj[--f->n_obj];
}

static int read_body(const struct store_body *b, unsigned char **out)
{
	unsigned char *p = malloc(b->len ? b->len : 1);
	if (!p)
		return ENOMEM;
	if (b->mem) {
		memcpy(p, b->mem, b->len);
	} else {
		for (uint64_t got = 0; got < b->len;) {
			ssize_t n = pread(b->fd, p + got, b->len - got, b->off + (off_t)got);
			if (n <= 0) {
				free(p);
				return EIO;
			}
			got += (uint64_t)n;
		}
	}
	*out = p;
	return 0;
}

static void md5_hex(const void *data, size_t len, char out[33])
{
	unsigned char d[16];
	crypto_md5(data, len, d);
	crypto_hex(d, 16, out);
}

static int fake_put(struct store *st, const char *key, const struct store_body *body,
		    const struct store_attr *attr, const struct store_io *io, char *etag_out)
{
	struct fake *f = fake_of(st);
	unsigned char *data = NULL;
	char hex[33] = "";
	int err = fake_enter(f, OP_PUT, key, io);

	if (!err)
		err = read_body(body, &data);
	if (!err) {
		md5_hex(data, body->len, hex);
		if (body->md5) {
			unsigned char d[16];
			crypto_md5(data, body->len, d);
			if (memcmp(d, body->md5, 16) != 0)
				err = EBADMSG;
		}
	}
	if (!err) {
		pthread_mutex_lock(&f->lock);
		fake_store_obj(f, key, data, body->len, attr);
		bool bad = f->bad_etag_count > 0;
		if (bad)
			f->bad_etag_count--;
		pthread_mutex_unlock(&f->lock);
		data = NULL;
		if (etag_out)
			snprintf(etag_out, 80, "%s", bad ? "0123456789abcdef0123456789abcdef" : hex);
	}
	free(data);
	fake_leave(f, OP_PUT, key, err, hex);
	return err;
}

static int fake_copy(struct store *st, const char *src, const char *dst, const struct store_attr *attr,
		     const struct store_io *io)
{
	struct fake *f = fake_of(st);
	int err = fake_enter(f, OP_COPY, dst, io);
	if (!err) {
		pthread_mutex_lock(&f->lock);
		struct fake_obj *o = fake_find(f, src);
		if (!o) {
			err = ENOENT;
			store_set_error(ENOENT, 404, "NoSuchKey", "The specified key does not exist.");
		} else {
			unsigned char *d = malloc(o->len ? o->len : 1);
			memcpy(d, o->data, o->len);
			struct store_attr keep;
			store_attr_init(&keep);
			store_attr_copy(&keep, attr ? attr : &o->attr);
			fake_store_obj(f, dst, d, o->len, &keep);
			store_attr_free(&keep);
		}
		pthread_mutex_unlock(&f->lock);
	}
	fake_leave(f, OP_COPY, dst, err, NULL);
	return err;
}

static int fake_remove(struct store *st, const char *key, const struct store_io *io)
{
	struct fake *f = fake_of(st);
	int err = fake_enter(f, OP_REMOVE, key, io);
	if (!err) {
		pthread_mutex_lock(&f->lock);
		fake_remove_obj(f, key);
		pthread_mutex_unlock(&f->lock);
	}
	fake_leave(f, OP_REMOVE, key, err, NULL);
	return err;
}

static struct fake_upload *fake_upload_find(struct fake *f, const char *id)
{
	for (size_t i = 0; i < f->n_up; i++)
		if (strcmp(f->up[i].id, id) == 0)
			return &f->up[i];
	return NULL;
}

static int fake_mpu_create(struct store *st, const char *key, const struct store_attr *attr,
			   const struct store_io *io, char **upload_id)
{
	struct fake *f = fake_of(st);
	int err = fake_enter(f, OP_MPU_CREATE, key, io);
	if (!err) {
		pthread_mutex_lock(&f->lock);
		assert_true(f->n_up < 32);
		struct fake_upload *u = &f->up[f->n_up++];
		memset(u, 0, sizeof(*u));
		/* unique like S3's: a forked child's uploads never share an id with ours */
		snprintf(u->id, sizeof(u->id), "upload-%ld-%zu", (long)getpid(), f->n_up);
		snprintf(u->key, sizeof(u->key), "%s", key);
		*upload_id = strdup(u->id);
		pthread_mutex_unlock(&f->lock);
	}
	fake_leave(f, OP_MPU_CREATE, key, err, NULL);
	return err;
}

static int fake_mpu_part(struct store *st, const char *key, const char *upload_id, int number,
			 const struct store_body *body, const struct store_io *io, char *etag_out)
{
	struct fake *f = fake_of(st);
	unsigned char *data = NULL;
	char hex[33] = "";
	int err = fake_enter(f, OP_MPU_PART, key, io);
	if (!err)
		err = read_body(body, &data);
	if (!err) {
		md5_hex(data, body->len, hex);
		pthread_mutex_lock(&f->lock);
		struct fake_upload *u = fake_upload_find(f, upload_id);
		if (!u || u->aborted || u->completed || number < 1 || number > FAKE_MAX_PARTS) {
			err = ENOENT;
		} else {
			free(u->part[number - 1]);
			u->part[number - 1] = data;
			u->part_len[number - 1] = body->len;
			data = NULL;
			snprintf(etag_out, 80, "%s", hex);
		}
		pthread_mutex_unlock(&f->lock);
	}
	free(data);
	fake_leave(f, OP_MPU_PART, key, err, hex);
	return err;
}

static int fake_mpu_complete(struct store *st, const char *key, const char *upload_id,
			     const struct store_part *parts, size_t n, const struct store_io *io,
			     char *etag_out)
{
	struct fake *f = fake_of(st);
	int err = fake_enter(f, OP_MPU_COMPLETE, key, io);
	if (!err) {
		pthread_mutex_lock(&f->lock);
		struct fake_upload *u = fake_upload_find(f, upload_id);
		size_t total = 0;
		if (!u || u->aborted || u->completed)
			err = ENOENT;
		for (size_t i = 0; !err && i < n; i++) {
			if (parts[i].number != (int)i + 1 || !u->part[i]) {
				err = EINVAL;
				break;
			}
			char hex[33];
			md5_hex(u->part[i], u->part_len[i], hex);
			if (strcmp(hex, parts[i].etag) != 0)
				err = EINVAL;
			total += u->part_len[i];
		}
		if (!err) {
			unsigned char *data = malloc(total ? total : 1), sum[16];
			struct crypto_md5_ctx *ctx = crypto_md5_create();
			size_t off = 0;
			for (size_t i = 0; i < n; i++) {
				unsigned char d[16];
				memcpy(data + off, u->part[i], u->part_len[i]);
				off += u->part_len[i];
				crypto_md5(u->part[i], u->part_len[i], d);
				crypto_md5_update(ctx, d, 16);
			}
			crypto_md5_final(ctx, sum);
			crypto_md5_destroy(ctx);
			crypto_hex(sum, 16, etag_out);
			snprintf(etag_out + 32, 16, "-%zu", n);
			fake_store_obj(f, key, data, total, NULL);
			u->completed = true;
		}
		pthread_mutex_unlock(&f->lock);
	}
	fake_leave(f, OP_MPU_COMPLETE, key, err, NULL);
	return err;
}

static int fake_mpu_abort(struct store *st, const char *key, const char *upload_id,
			  const struct store_io *io)
{
	struct fake *f = fake_of(st);
	int err = fake_enter(f, OP_MPU_ABORT, key, io);
	if (!err) {
		pthread_mutex_lock(&f->lock);
		struct fake_upload *u = fake_upload_find(f, upload_id);
		if (!u || u->completed)
			err = ENOENT;
		else
			u->aborted = true;
		pthread_mutex_unlock(&f->lock);
	}
	fake_leave(f, OP_MPU_ABORT, key, err, NULL);
	return err;
}

static int fake_head(struct store *st, const char *key, const struct store_io *io, struct store_attr *out)
{
	struct fake *f = fake_of(st);
	int err = 0;
	pthread_mutex_lock(&f->lock);
	struct fake_obj *o = fake_find(f, key);
	if (o)
		err = store_attr_copy(out, &o->attr);
	else
		err = ENOENT;
	pthread_mutex_unlock(&f->lock);
	return err;
}

static int fake_get(struct store *st, const char *key, uint64_t off, uint64_t len, const char *if_etag,
		    const struct store_io *io, int fd, off_t fd_off, uint64_t *got)
{
	return EOPNOTSUPP; /* the sync thread never reads */
}

static int fake_list(struct store *st, const char *prefix, const char *delimiter, const char *token,
		     unsigned max_keys, const struct store_io *io, struct store_list *out)
{
	return EOPNOTSUPP; /* the sync thread never lists */
}

static int fake_check(struct store *st, char *err, size_t errlen)
{
	return 0;
}

static void fake_destroy(struct store *st)
{
	struct fake *f = fake_of(st);
	for (size_t i = 0; i < f->n_obj; i++) {
		free(f->obj[i].data);
		store_attr_free(&f->obj[i].attr);
	}
	for (size_t i = 0; i < f->n_up; i++)
		for (int p = 0; p < FAKE_MAX_PARTS; p++)
			free(f->up[i].part[p]);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

static const struct store_ops fake_ops = {
	.kind = "fake",
	.head = fake_head,
	.get = fake_get,
	.list = fake_list,
	.put = fake_put,
	.copy = fake_copy,
	.remove = fake_remove,
	.mpu_create = fake_mpu_create,
	.mpu_part = fake_mpu_part,
	.mpu_complete = fake_mpu_complete,
	.mpu_abort = fake_mpu_abort,
	.check = fake_check,
	.destroy = fake_destroy,
};

static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	pthread_mutexattr_t ma;
	f->st.ops = &fake_ops;
	/* error-checking: teardown after an assertion that fired while the test held the lock
	 * gets EDEADLK instead of hanging */
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&f->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_cond_init(&f->cond, NULL);
	f->fail_err = EIO;
	return f;
}

/* Successful calls of op on key. */
static unsigned fake_count(struct fake *f, enum fake_op op, const char *key)
{
	unsigned n = 0;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_ev; i++)
		if (f->ev[i].op == op && !f->ev[i].err && strcmp(f->ev[i].key, key) == 0)
			n++;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static void assert_object(struct fake *f, const char *key, const char *want)
{
	pthread_mutex_lock(&f->lock);
	struct fake_obj *o = fake_find(f, key);
	if (!o)
		fail_msg("object '%s' missing at the destination", key);
	assert_int_equal(o->len, strlen(want));
	assert_memory_equal(o->data, want, o->len);
	pthread_mutex_unlock(&f->lock);
}

static bool fake_has(struct fake *f, const char *key)
{
	pthread_mutex_lock(&f->lock);
	bool r = fake_find(f, key) != NULL;
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void gate_op(struct fake *f, enum fake_op op, bool on)
{
	pthread_mutex_lock(&f->lock);
	f->gate[op] = on;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void gate_keys(struct fake *f, const char *k0, const char *k1, const char *k2)
{
	pthread_mutex_lock(&f->lock);
	memset(f->gate_keys, 0, sizeof(f->gate_keys));
	if (k0)
		snprintf(f->gate_keys[0], 128, "%s", k0);
	if (k1)
		snprintf(f->gate_keys[1], 128, "%s", k1);
	if (k2)
		snprintf(f->gate_keys[2], 128, "%s", k2);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Poll until fn(f) is true; fail after timeout_ms. */
#define WAIT_FOR(cond, timeout_ms)                                                       \
	do {                                                                             \
		int64_t wait_end_ = now_ms() + (timeout_ms);                             \
		while (!(cond)) {                                                        \
			if (now_ms() > wait_end_)                                        \
				fail_msg("timed out waiting for: %s", #cond);            \
			sleep_ms(2);                                                     \
		}                                                                        \
	} while (0)

static unsigned fake_read_uint(struct fake *f, const unsigned *p)
{
	pthread_mutex_lock(&f->lock);
	unsigned v = *p;
	pthread_mutex_unlock(&f->lock);
	return v;
}

/* ---- fixture ---- */

struct fx {
	char dir[64];
	char cache[96];
	char stage[96];
	struct fake *f;
	struct sync *s;
	struct sync_config cfg;
	unsigned staged;
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	snprintf(x->dir, sizeof(x->dir), "/tmp/objfs-test-sync-XXXXXX");
	if (!mkdtemp(x->dir))
		return -1;
	snprintf(x->cache, sizeof(x->cache), "%s/cache", x->dir);
	snprintf(x->stage, sizeof(x->stage), "%s/stage", x->dir);
	mkdir(x->stage, 0700);
	x->f = fake_new();
	sync_config_defaults(&x->cfg);
	x->cfg.cache_dir = x->cache;
	x->cfg.settle_ms = 0;
	x->cfg.batch_ms = 0;
	x->cfg.upload_workers = 4;
	x->cfg.retry_base_ms = 10;
	x->cfg.retry_max_ms = 50;
	x->cfg.multipart_threshold = 1u << 20;
	x->cfg.part_size = 256u << 10;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	char cmd[160];
	__atomic_store_n(&fail_pwrite_errno, 0, __ATOMIC_SEQ_CST);
	/* release anything a test left at the gate (EDEADLK: a failed assertion left the lock
	 * held by this thread) */
	int r = pthread_mutex_lock(&x->f->lock);
	if (r != 0 && r != EDEADLK)
		return -1;
	memset(x->f->gate, 0, sizeof(x->f->gate));
	memset(x->f->fail_count, 0, sizeof(x->f->fail_count));
	pthread_mutex_unlock(&x->f->lock);
	if (x->s)
		sync_destroy(x->s, false);
	store_destroy(&x->f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	if (system(cmd) != 0)
		return -1;
	free(x);
	return 0;
}

static struct sync *open_sync(struct fx *x)
{
	char err[256] = "";
	struct sync *s = sync_create(&x->cfg, &x->f->st, err, sizeof(err));
	if (!s)
		fail_msg("sync_create: %s", err);
	return s;
}

static void start(struct fx *x)
{
	if (!x->s)
		x->s = open_sync(x);
	assert_int_equal(sync_start(x->s), 0);
}

/* Stage data in a new file and hand it to sync_put_file (the staged file is then deleted,
 * as the FS layer may do). */
static int put_bytes(struct fx *x, const char *key, const void *data, size_t len)
{
	char path[160];
	struct store_attr a;
	snprintf(path, sizeof(path), "%s/f%u", x->stage, x->staged++);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	store_attr_init(&a);
	a.mode = 0100644;
	a.has = STORE_HAS_MODE;
	int err = sync_put_file(x->s, key, path, &a);
	unlink(path);
	return err;
}

static int put_text(struct fx *x, const char *key, const char *text)
{
	return put_bytes(x, key, text, strlen(text));
}

static size_t count_dir(const char *path)
{
	DIR *d = opendir(path);
	size_t n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The journal's size without the zeros written ahead of its appends (to its last non-zero
 * byte: enough to compare two states of it). */
static uint64_t journal_file_size(struct fx *x)
{
	char p[160];
	struct stat st;
	snprintf(p, sizeof(p), "%s/journal", x->cache);
	assert_int_equal(stat(p, &st), 0);
	unsigned char *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	int fd = open(p, O_RDONLY);
	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), (ssize_t)st.st_size);
	close(fd);
	uint64_t n = (uint64_t)st.st_size;
	while (n > 0 && buf[n - 1] == 0)
		n--;
	free(buf);
	return n;
}

static void read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, len - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
}

static void progress_count(void *ud, const struct sync_progress *p)
{
	struct sync_progress *last = ud;
	*last = *p;
}

static void *open_gate_later(void *arg)
{
	struct fake *f = arg;
	sleep_ms(50);
	gate_op(f, OP_PUT, false);
	return NULL;
}

static void random_bytes(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
}

/* ---- tests ---- */

/* A child process with a started sync on x's cache (a daemon to kill): returns 0 in it (which
 * must _exit), its pid in the parent. */
static pid_t fork_sync(struct fx *x)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		x->s = sync_create(&x->cfg, &x->f->st, err, sizeof(err));
		if (!x->s || sync_start(x->s))
			_exit(2);
	}
	return pid;
}

static void wait_child_ok(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_upload_and_drain(void **state)
{
	struct fx *x = *state;
	struct sync_progress last = {0};
	struct sync_stats st;
	struct store_attr dir;
	char spool[160];

	start(x);
	gate_op(x->f, OP_PUT, true); /* so that all four are pending when the wait starts */
	assert_int_equal(put_text(x, "a", "alpha"), 0);
	assert_int_equal(put_text(x, "d/b", "bravo"), 0);
	store_attr_init(&dir);
	dir.is_dir = true;
	assert_int_equal(sync_put_mem(x->s, "d/", "", 0, &dir), 0);
	assert_int_equal(sync_put_mem(x->s, "l", "target", 6, NULL), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, open_gate_later, x->f), 0);
	assert_int_equal(sync_wait_all(x->s, progress_count, &last), 0);
	pthread_join(t, NULL);
	assert_int_equal(last.files_total, 4);
	assert_int_equal(last.files_done, 4);
	assert_int_equal(last.bytes_total, 5 + 5 + 0 + 6);

	assert_object(x->f, "a", "alpha");
	assert_object(x->f, "d/b", "bravo");
	assert_object(x->f, "d/", "");
	assert_object(x->f, "l", "target");
	assert_int_equal(fake_count(x->f, OP_PUT, "a"), 1);
	assert_int_equal(x->f->ok[OP_PUT], 4);
	assert_int_equal(sync_lookup(x->s, "a", NULL, NULL, NULL), 0);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 0);
	assert_int_equal(st.uploaded_files, 4);
	assert_int_equal(st.uploaded_bytes, 16);
	assert_true(st.batches >= 1);
	assert_string_equal(st.last_error, "");
	snprintf(spool, sizeof(spool), "%s/spool", x->cache);
	assert_int_equal(count_dir(spool), 0);

	sync_destroy(x->s, true);
	x->s = NULL;
	assert_int_equal(journal_file_size(x), 8); /* compacted to the header */

	/* nothing to replay */
	x->s = open_sync(x);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 0);
	assert_int_equal(sync_start(x->s), 0);
	sleep_ms(30);
	assert_int_equal(x->f->calls[OP_PUT], 4);
}

static void test_settle_and_batches(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;
	char key[8];

	/* batches close at batch_files; with idle workers the rest goes after a short linger,
	 * long before batch_ms */
	x->cfg.batch_files = 3;
	x->cfg.batch_ms = 60000;
	x->s = open_sync(x);
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(put_text(x, key, key), 0);
	}
	assert_int_equal(sync_start(x->s), 0);
	WAIT_FOR(fake_read_uint(x->f, &x->f->ok[OP_PUT]) == 7, 3000);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.batches, 3); /* 3 + 3 + 1 */
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_int_equal(x->f->ok[OP_PUT], 7);
	sync_destroy(x->s, true);

	/* nothing is uploaded before settle_ms */
	x->cfg.batch_files = 1000;
	x->cfg.batch_ms = 0;
	x->cfg.settle_ms = 150;
	x->s = open_sync(x);
	assert_int_equal(sync_start(x->s), 0);
	int64_t t0 = now_ms();
	assert_int_equal(put_text(x, "settled", "s"), 0);
	WAIT_FOR(fake_count(x->f, OP_PUT, "settled") == 1, 3000);
	assert_true(now_ms() - t0 >= 150);
	sync_destroy(x->s, true);

	/* a waiter (fsync) skips the settle delay and closes the batch at once */
	x->cfg.settle_ms = 10000;
	x->cfg.batch_ms = 60000;
	x->s = open_sync(x);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(put_text(x, "other", "not waited for"), 0);
	assert_int_equal(put_text(x, "fsynced", "f"), 0);
	t0 = now_ms();
	assert_int_equal(sync_wait_key(x->s, "fsynced", 5000), 0);
	assert_true(now_ms() - t0 < 1000);
	assert_object(x->f, "fsynced", "f");
	assert_false(fake_has(x->f, "other"));
}

/* A child journals writes and dies without any clean-up (as kill -9), with a torn record at
 * the end of the journal; the next sync_create replays everything exactly once. */
static void test_crash_replay(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;
	char key[8], val[16], path[160];

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		struct sync *s = sync_create(&x->cfg, &x->f->st, err, sizeof(err));
		if (!s)
			_exit(2);
		x->s = s;
		for (int i = 0; i < 10; i++) {
			snprintf(key, sizeof(key), "k%d", i);
			snprintf(val, sizeof(val), "value %d", i);
			if (put_text(x, key, val))
				_exit(3);
		}
		if (put_text(x, "k3", "newer value 3") || sync_remove(s, "gone") ||
		    put_text(x, "tmp", "renamed") || sync_rename(s, "tmp", "final"))
			_exit(4);
		snprintf(path, sizeof(path), "%s/journal", x->cache);
		int fd = open(path, O_WRONLY | O_APPEND);
		if (fd < 0 || write(fd, "\x40\0\0\0\x12\x34", 6) != 6) /* torn record */
			_exit(5);
		_exit(0);
	}
	wait_child_ok(pid);

	snprintf(path, sizeof(path), "%s/spool/orphan", x->cache);
	int ofd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(ofd >= 0);
	close(ofd);
	x->s = open_sync(x);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 12); /* k0..k9, gone, tmp->final */
	snprintf(path, sizeof(path), "%s/spool", x->cache);
	assert_int_equal(count_dir(path), 11); /* k0..k9 and final's copy; the orphan is gone */
	assert_int_equal(journal_file_size(x) > 8, 1);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), i == 3 ? "newer value %d" : "value %d", i);
		assert_object(x->f, key, val);
		assert_int_equal(fake_count(x->f, OP_PUT, key), 1);
	}
	assert_object(x->f, "final", "renamed");
	assert_false(fake_has(x->f, "tmp"));
	assert_int_equal(fake_count(x->f, OP_PUT, "tmp"), 0);
	assert_int_equal(fake_count(x->f, OP_REMOVE, "gone"), 1);
	assert_int_equal(x->f->ok[OP_PUT], 11);
	snprintf(path, sizeof(path), "%s/spool", x->cache);
	assert_int_equal(count_dir(path), 0);
}

struct live_count {
	uint64_t put_seq[64];
	size_t n_put;
	uint64_t done[64];
	size_t n_done;
};

static int count_records(void *ud, const struct journal_record *r)
{
	struct live_count *c = ud;
	if (r->type == JOURNAL_PUT_FILE && c->n_put < 64)
		c->put_seq[c->n_put++] = r->seq;
	if (r->type == JOURNAL_DONE && c->n_done < 64)
		c->done[c->n_done++] = r->ref;
	return 0;
}

/* PUT_FILE records in the journal without a DONE record. */
static size_t live_puts(struct fx *x)
{
	struct live_count c = {0};
	char path[160], err[256];
	uint64_t torn;
	size_t live = 0;

	snprintf(path, sizeof(path), "%s/journal", x->cache);
	struct journal *j = journal_open(path, err, sizeof(err));
	assert_non_null(j);
	assert_int_equal(journal_read(j, count_records, &c, &torn), 0);
	journal_close(j);
	for (size_t i = 0; i < c.n_put; i++) {
		bool done = false;
		for (size_t k = 0; k < c.n_done; k++)
			done |= c.done[k] == c.put_seq[i];
		live += !done;
	}
	return live;
}

/* What was committed before a crash is not uploaded again. */
static void test_done_survives_crash(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		x->s = sync_create(&x->cfg, &x->f->st, err, sizeof(err));
		if (!x->s || sync_start(x->s) || put_text(x, "a", "A") || put_text(x, "b", "B") ||
		    sync_wait_all(x->s, NULL, NULL))
			_exit(2);
		gate_op(x->f, OP_PUT, true); /* this child's copy of the fake */
		if (put_text(x, "c", "C"))
			_exit(3);
		_exit(0); /* no destroy, no compaction */
	}
	wait_child_ok(pid);
	assert_int_equal(live_puts(x), 1); /* a and b have their DONE records */
	x->s = open_sync(x);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 1);
	assert_int_equal(sync_lookup(x->s, "a", NULL, NULL, NULL), 0);
	assert_int_equal(sync_lookup(x->s, "c", NULL, NULL, NULL), 1);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_int_equal(x->f->ok[OP_PUT], 1);
	assert_object(x->f, "c", "C");
}

/* The journal is rewritten while items are pending, uploading, and a multipart upload is
 * recorded; a crash right after loses nothing and the upload is still aborted on replay. */
static void test_compaction_then_crash(void **state)
{
	struct fx *x = *state;
	size_t n = 3u << 19;
	unsigned char *data = malloc(n);
	char key[16], spool[PATH_MAX], buf[64];
	struct sync_stats st;

	random_bytes(data, n, 5);
	x->cfg.journal_compact_bytes = 4096;
	pid_t pid = fork_sync(x);
	if (pid == 0) {
		gate_keys(x->f, "held", "big", NULL);
		gate_op(x->f, OP_PUT, true);
		gate_op(x->f, OP_MPU_PART, true);
		if (put_text(x, "held", "held content") || put_bytes(x, "big", data, n))
			_exit(3);
		for (int i = 0; i < 300; i++) {
			snprintf(key, sizeof(key), "a%d", i);
			if (put_text(x, key, key))
				_exit(4);
		}
		int64_t end = now_ms() + 10000;
		do {
			sync_get_stats(x->s, &st);
			sleep_ms(5);
		} while ((st.queued_files > 2 || st.journal_bytes > 16384) && now_ms() < end);
		if (st.queued_files != 2 || st.journal_bytes > 16384 || x->f->n_up != 1) {
			fprintf(stderr, "child: queued %llu, journal %llu bytes, uploads %zu\n",
				(unsigned long long)st.queued_files,
				(unsigned long long)st.journal_bytes, x->f->n_up);
			_exit(5);
		} /* 300 files x ~2 records would be ~90 KiB uncompacted */
		free(data); /* valgrind checks the child's leaks at its exit too */
		_exit(0);
	}
	wait_child_ok(pid);

	x->s = open_sync(x);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 3); /* held, big, and the abort of big's upload */
	bool removed;
	assert_int_equal(sync_lookup(x->s, "held", NULL, spool, &removed), 1);
	read_file(spool, buf, sizeof(buf));
	assert_string_equal(buf, "held content");
	assert_int_equal(sync_lookup(x->s, "a7", NULL, NULL, NULL), 0);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "held", "held content");
	pthread_mutex_lock(&x->f->lock);
	assert_int_equal(x->f->calls[OP_MPU_ABORT], 1); /* the child's upload (unknown here) */
	struct fake_obj *o = fake_find(x->f, "big");
	assert_non_null(o);
	assert_memory_equal(o->data, data, n);
	pthread_mutex_unlock(&x->f->lock);
	assert_int_equal(x->f->ok[OP_PUT], 1);
	free(data);
}

/* destroy without drain while uploads hang: they are cancelled; everything replays. */
static void test_destroy_without_drain_replays(void **state)
{
	struct fx *x = *state;
	char key[8], val[16];

	start(x);
	gate_op(x->f, OP_PUT, true);
	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		assert_int_equal(put_text(x, key, val), 0);
	}
	WAIT_FOR(fake_read_uint(x->f, &x->f->gated) >= 4, 3000);
	sync_destroy(x->s, false); /* cancels the calls at the gate */
	x->s = NULL;
	assert_int_equal(x->f->ok[OP_PUT], 0);
	assert_true(x->f->calls[OP_PUT] >= 4);
	gate_op(x->f, OP_PUT, false);

	start(x);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		assert_object(x->f, key, val);
		assert_int_equal(fake_count(x->f, OP_PUT, key), 1);
	}
}

/* A small file's content travels in its journal record and its spool file is not fsynced:
 * after a power loss the spool file may be short or gone, and replay writes it again from
 * the record. A large file's spool file is fsynced and used as it is. */
static void test_inline_copy_rebuilds_spool(void **state)
{
	struct fx *x = *state;
	char spool[3][PATH_MAX + 300], small_data[100];
	size_t big_n = 300u << 10;
	unsigned char *big = malloc(big_n);

	assert_non_null(big);
	random_bytes(big, big_n, 9);
	for (size_t i = 0; i < sizeof(small_data); i++)
		small_data[i] = (char)('a' + i % 26);
	/* a daemon that journals three files and dies before uploading any (kill -9) */
	pid_t pid = fork_sync(x);
	if (pid == 0) {
		gate_op(x->f, OP_PUT, true);
		gate_op(x->f, OP_MPU_PART, true);
		if (put_bytes(x, "small", small_data, sizeof(small_data)) ||
		    put_bytes(x, "small2", small_data + 10, 20) || put_bytes(x, "big", big, big_n))
			_exit(3);
		free(big); /* valgrind checks the child's leaks at its exit too */
		_exit(0);
	}
	wait_child_ok(pid);

	/* the spool files, told apart by size (opening a sync here would replay and compact) */
	char dir[PATH_MAX];
	struct dirent *de;
	snprintf(dir, sizeof(dir), "%s/spool", x->cache);
	DIR *d = opendir(dir);
	assert_non_null(d);
	memset(spool, 0, sizeof(spool));
	while ((de = readdir(d))) {
		char p[PATH_MAX + 300];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		int k = st.st_size == sizeof(small_data) ? 0 : st.st_size == 20 ? 1 : 2;
		snprintf(spool[k], sizeof(spool[k]), "%s", p);
	}
	closedir(d);
	assert_true(spool[0][0] && spool[1][0] && spool[2][0]);
	/* what a power loss may leave of files written but never fsynced: the journal, fsynced,
	 * still has the small files' contents */
	assert_int_equal(truncate(spool[0], 7), 0);
	assert_int_equal(unlink(spool[1]), 0);
	start(x);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	pthread_mutex_lock(&x->f->lock);
	struct fake_obj *o = fake_find(x->f, "small");
	assert_non_null(o);
	assert_int_equal(o->len, sizeof(small_data));
	assert_memory_equal(o->data, small_data, sizeof(small_data));
	o = fake_find(x->f, "small2");
	assert_non_null(o);
	assert_int_equal(o->len, 20);
	assert_memory_equal(o->data, small_data + 10, 20);
	o = fake_find(x->f, "big");
	assert_non_null(o);
	assert_int_equal(o->len, big_n);
	assert_memory_equal(o->data, big, big_n);
	pthread_mutex_unlock(&x->f->lock);
	free(big);
}

/* A rewrite while the older version uploads: the newer one follows, never overtaken. */
static void test_supersede_in_flight(void **state)
{
	struct fx *x = *state;
	char spool[PATH_MAX], buf[64], v1[33], v3[33];
	struct store_attr a;
	bool removed;

	start(x);
	gate_op(x->f, OP_PUT, true);
	assert_int_equal(put_text(x, "k", "version one"), 0);
	WAIT_FOR(fake_read_uint(x->f, &x->f->gated) == 1, 3000);
	assert_int_equal(put_text(x, "k", "version two"), 0);
	assert_int_equal(put_text(x, "k", "version three"), 0);
	assert_int_equal(sync_lookup(x->s, "k", &a, spool, &removed), 1);
	assert_false(removed);
	assert_int_equal(a.size, 13);
	store_attr_free(&a);
	read_file(spool, buf, sizeof(buf));
	assert_string_equal(buf, "version three");
	sleep_ms(50);
	assert_int_equal(fake_read_uint(x->f, &x->f->calls[OP_PUT]), 1); /* serialised per key */
	gate_op(x->f, OP_PUT, false);
	assert_int_equal(sync_wait_key(x->s, "k", 5000), 0);
	assert_object(x->f, "k", "version three");

	md5_hex("version one", 11, v1);
	md5_hex("version three", 13, v3);
	pthread_mutex_lock(&x->f->lock);
	size_t n = 0;
	for (size_t i = 0; i < x->f->n_ev; i++) {
		if (x->f->ev[i].op != OP_PUT)
			continue;
		assert_string_equal(x->f->ev[i].md5, n == 0 ? v1 : v3); /* v2 never uploaded */
		n++;
	}
	assert_int_equal(n, 2);
	assert_int_equal(x->f->max_same_key_put, 1);
	pthread_mutex_unlock(&x->f->lock);
}

/* Rewrites and removes of queued items collapse to the newest. */
static void test_supersede_queued(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;
	char path[160];

	x->s = open_sync(x);
	assert_int_equal(put_text(x, "k", "one"), 0);
	assert_int_equal(put_text(x, "k", "two"), 0);
	assert_int_equal(put_text(x, "k", "three"), 0);
	assert_int_equal(sync_remove(x->s, "x"), 0);
	assert_int_equal(put_text(x, "x", "ex"), 0);
	assert_int_equal(put_text(x, "y", "why"), 0);
	assert_int_equal(sync_remove(x->s, "y"), 0);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 3);
	snprintf(path, sizeof(path), "%s/spool", x->cache);
	assert_int_equal(count_dir(path), 2); /* dropped versions' spool files are gone */
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_int_equal(x->f->ok[OP_PUT], 2);
	assert_object(x->f, "k", "three");
	assert_object(x->f, "x", "ex");
	assert_int_equal(x->f->calls[OP_REMOVE], 1);
	assert_int_equal(fake_count(x->f, OP_REMOVE, "y"), 1);
}

static void test_retry_backoff_stats(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;

	x->cfg.retry_base_ms = 20;
	x->cfg.retry_max_ms = 80;
	start(x);
	pthread_mutex_lock(&x->f->lock);
	x->f->fail_count[OP_PUT] = -1;
	x->f->fail_err = EIO;
	snprintf(x->f->fail_key, sizeof(x->f->fail_key), "f");
	pthread_mutex_unlock(&x->f->lock);
	assert_int_equal(put_text(x, "f", "eventually"), 0);
	assert_int_equal(put_text(x, "g", "at once"), 0);
	assert_int_equal(sync_wait_key(x->s, "g", 5000), 0); /* others go on */
	WAIT_FOR(fake_read_uint(x->f, &x->f->calls[OP_PUT]) >= 6, 5000);
	sync_get_stats(x->s, &st);
	assert_true(st.failed_attempts >= 5);
	assert_int_equal(st.retrying, 1);
	assert_int_equal(st.queued_files, 1);
	assert_non_null(strstr(st.last_error, "'f'"));
	assert_non_null(strstr(st.last_error, "SlowDown (503)"));
	assert_int_equal(sync_wait_key(x->s, "f", 100), EIO);

	/* exponential backoff: gaps at least half of 20, 40, 80, 80 ms */
	pthread_mutex_lock(&x->f->lock);
	int64_t prev = -1;
	int k = 0;
	for (size_t i = 0; i < x->f->n_ev && k < 5; i++) {
		if (x->f->ev[i].op != OP_PUT || strcmp(x->f->ev[i].key, "f") != 0)
			continue;
		if (prev >= 0) {
			static const int64_t min_gap[] = {10, 20, 40, 40};
			assert_true(x->f->ev[i].at_ms - prev >= min_gap[k - 1]);
		}
		prev = x->f->ev[i].at_ms;
		k++;
	}
	assert_int_equal(k, 5);
	x->f->fail_count[OP_PUT] = 0;
	pthread_mutex_unlock(&x->f->lock);

	assert_int_equal(sync_wait_key(x->s, "f", 5000), 0);
	assert_object(x->f, "f", "eventually");
	sync_get_stats(x->s, &st);
	assert_int_equal(st.retrying, 0);
	assert_int_equal(st.queued_files, 0);
	assert_int_equal(st.uploaded_files, 2);
}

static void test_multipart_parallel(void **state)
{
	struct fx *x = *state;
	size_t n = (5u << 19) + 1234; /* 2.5 MiB + : 11 parts of 256 KiB */
	unsigned char *data = malloc(n);

	random_bytes(data, n, 7);
	x->f->delay_ms[OP_MPU_PART] = 30;
	start(x);
	assert_int_equal(put_bytes(x, "big", data, n), 0);
	assert_int_equal(put_text(x, "small", "s"), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	pthread_mutex_lock(&x->f->lock);
	struct fake_obj *o = fake_find(x->f, "big");
	assert_non_null(o);
	assert_int_equal(o->len, n);
	assert_memory_equal(o->data, data, n);
	assert_int_equal(x->f->ok[OP_MPU_PART], 11);
	assert_int_equal(x->f->ok[OP_MPU_COMPLETE], 1);
	assert_int_equal(x->f->calls[OP_MPU_ABORT], 0);
	assert_true(x->f->max_active[OP_MPU_PART] >= 2); /* parts overlap */
	assert_true(x->f->max_active[OP_MPU_PART] <= 4); /* but not past upload_workers */
	pthread_mutex_unlock(&x->f->lock);
	assert_int_equal(fake_count(x->f, OP_PUT, "big"), 0);
	free(data);
}

/* After a multipart upload was given up and another one finished: aborts MPU aborts in all,
 * upload number aborted aborted, number completed completed, key holding data. */
static void assert_upload_redone(struct fx *x, unsigned aborts, size_t aborted, size_t completed,
				 const char *key, const void *data, size_t n)
{
	pthread_mutex_lock(&x->f->lock);
	assert_int_equal(x->f->ok[OP_MPU_ABORT], aborts);
	assert_true(x->f->up[aborted].aborted);
	assert_true(x->f->up[completed].completed);
	struct fake_obj *o = fake_find(x->f, key);
	assert_non_null(o);
	assert_int_equal(o->len, n);
	assert_memory_equal(o->data, data, n);
	pthread_mutex_unlock(&x->f->lock);
}

/* A multipart upload recorded as started but not finished is aborted on the next mount and
 * the file uploaded again. */
static void test_multipart_abort_on_replay(void **state)
{
	struct fx *x = *state;
	size_t n = (3u << 19); /* 1.5 MiB: 6 parts */
	unsigned char *data = malloc(n);

	random_bytes(data, n, 11);
	start(x);
	pthread_mutex_lock(&x->f->lock);
	x->f->gate[OP_MPU_PART] = true;
	pthread_mutex_unlock(&x->f->lock);
	assert_int_equal(put_bytes(x, "big", data, n), 0);
	WAIT_FOR(fake_read_uint(x->f, &x->f->gated) >= 2, 3000);
	sync_destroy(x->s, false);
	x->s = NULL;
	pthread_mutex_lock(&x->f->lock);
	assert_int_equal(x->f->n_up, 1);
	assert_false(x->f->up[0].aborted);
	assert_false(x->f->up[0].completed);
	assert_int_equal(x->f->calls[OP_MPU_ABORT], 0); /* a stop is not a failure */
	x->f->gate[OP_MPU_PART] = false;
	pthread_mutex_unlock(&x->f->lock);

	start(x);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_int_equal(x->f->n_up, 2);
	assert_upload_redone(x, 1, 0, 1, "big", data, n);
	free(data);

	/* and a failing part aborts the upload at once, then retries */
	data = malloc(n);
	random_bytes(data, n, 12);
	pthread_mutex_lock(&x->f->lock);
	x->f->fail_count[OP_MPU_PART] = 1;
	x->f->fail_key[0] = '\0';
	pthread_mutex_unlock(&x->f->lock);
	assert_int_equal(put_bytes(x, "big2", data, n), 0);
	assert_int_equal(sync_wait_key(x->s, "big2", 5000), 0);
	assert_upload_redone(x, 2, 2, 3, "big2", data, n);
	free(data);
}

/* The journal cannot be written: the call says ENOSPC and nothing is half-recorded. */
static void test_enospc(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;
	char spool[160];

	x->s = open_sync(x);
	assert_int_equal(put_text(x, "before", "b"), 0);
	uint64_t size = journal_file_size(x);
	snprintf(spool, sizeof(spool), "%s/spool", x->cache);
	__atomic_store_n(&fail_pwrite_errno, ENOSPC, __ATOMIC_SEQ_CST);
	assert_int_equal(put_text(x, "full", "no room"), ENOSPC);
	assert_int_equal(sync_put_mem(x->s, "m", "x", 1, NULL), ENOSPC);
	assert_int_equal(sync_remove(x->s, "before"), ENOSPC);
	assert_int_equal(sync_rename(x->s, "before", "after"), ENOSPC);
	__atomic_store_n(&fail_pwrite_errno, 0, __ATOMIC_SEQ_CST);
	assert_int_equal(journal_file_size(x), size);
	assert_int_equal(count_dir(spool), 1); /* only "before" */
	assert_int_equal(sync_lookup(x->s, "full", NULL, NULL, NULL), 0);
	assert_int_equal(sync_lookup(x->s, "after", NULL, NULL, NULL), 0);
	assert_int_equal(sync_lookup(x->s, "before", NULL, NULL, NULL), 1);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 1);

	assert_int_equal(put_text(x, "full", "room now"), 0);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "full", "room now");
	assert_object(x->f, "before", "b");
	assert_int_equal(x->f->ok[OP_PUT], 2);
}

static void test_lock_refusal(void **state)
{
	struct fx *x = *state;
	char err[256] = "", want[256];

	x->s = open_sync(x);
	assert_null(sync_create(&x->cfg, &x->f->st, err, sizeof(err)));
	snprintf(want, sizeof(want), "cache directory '%s' is in use by another objfs mount (pid %ld)",
		 x->cache, (long)getpid());
	assert_string_equal(err, want);
	sync_destroy(x->s, false);
	x->s = open_sync(x); /* free again */
}

struct waiter {
	struct sync *s;
	int rv;
	int done; /* atomic */
	struct sync_progress last;
};

static void *wait_all_thread(void *arg)
{
	struct waiter *w = arg;
	w->rv = sync_wait_all(w->s, progress_count, &w->last);
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* sync_wait_all waits for what was journalled before the call, not for later writes. */
static void test_wait_all_watermark(void **state)
{
	struct fx *x = *state;
	struct waiter w = {0};
	pthread_t t;

	start(x);
	gate_keys(x->f, "a", "b", "late");
	gate_op(x->f, OP_PUT, true);
	assert_int_equal(put_text(x, "a", "A"), 0);
	assert_int_equal(put_text(x, "b", "B"), 0);
	w.s = x->s;
	assert_int_equal(pthread_create(&t, NULL, wait_all_thread, &w), 0);
	sleep_ms(60);
	assert_false(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST));
	assert_int_equal(put_text(x, "late", "L"), 0);
	gate_keys(x->f, "late", NULL, NULL); /* a and b may go */
	WAIT_FOR(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST), 3000);
	pthread_join(t, NULL);
	assert_int_equal(w.rv, 0);
	assert_int_equal(w.last.files_total, 2);
	assert_int_equal(w.last.files_done, 2);
	assert_object(x->f, "a", "A");
	assert_object(x->f, "b", "B");
	assert_false(fake_has(x->f, "late"));
	assert_int_equal(sync_lookup(x->s, "late", NULL, NULL, NULL), 1);
	gate_op(x->f, OP_PUT, false);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "late", "L");
}

static void test_rename_local_and_server_side(void **state)
{
	struct fx *x = *state;
	struct store_attr a;
	char spool[PATH_MAX], buf[64], *origins[4];
	bool removed;

	/* content still local: uploaded under the new name, no server-side copy */
	x->s = open_sync(x);
	assert_int_equal(put_text(x, "a", "one"), 0);
	assert_int_equal(sync_rename(x->s, "a", "b"), 0);
	assert_int_equal(sync_lookup(x->s, "a", NULL, NULL, &removed), 1);
	assert_true(removed);
	assert_int_equal(sync_lookup(x->s, "b", &a, spool, &removed), 1);
	assert_false(removed);
	assert_int_equal(a.size, 3);
	store_attr_free(&a);
	read_file(spool, buf, sizeof(buf));
	assert_string_equal(buf, "one");
	assert_int_equal(sync_lookup_origins(x->s, "b", origins, 4), 0);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "b", "one");
	assert_false(fake_has(x->f, "a"));
	assert_int_equal(fake_count(x->f, OP_PUT, "a"), 0);
	assert_int_equal(x->f->calls[OP_COPY], 0);

	/* already stored: server-side copy, readable from the origin meanwhile */
	assert_int_equal(put_text(x, "c", "two"), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	gate_op(x->f, OP_COPY, true);
	assert_int_equal(sync_rename(x->s, "c", "d"), 0);
	assert_int_equal(sync_rename(x->s, "d", "e"), 0);
	WAIT_FOR(fake_read_uint(x->f, &x->f->gated) == 1, 3000);
	assert_int_equal(sync_lookup(x->s, "e", &a, spool, &removed), 1);
	assert_false(removed);
	assert_int_equal(a.has, 0);
	assert_string_equal(spool, "");
	store_attr_free(&a);
	/* the bytes are at c until the first copy is done, then at d until the second is */
	assert_int_equal(sync_lookup_origins(x->s, "e", origins, 4), 2);
	assert_string_equal(origins[0], "c");
	assert_string_equal(origins[1], "d");
	free(origins[0]);
	free(origins[1]);
	assert_int_equal(sync_lookup_origins(x->s, "e", origins, 1), 1); /* at most max */
	assert_string_equal(origins[0], "c");
	free(origins[0]);
	assert_int_equal(sync_lookup_origins(x->s, "d", origins, 4), 0); /* renamed away */
	assert_int_equal(sync_lookup(x->s, "c", NULL, NULL, &removed), 1);
	assert_true(removed);
	gate_op(x->f, OP_COPY, false);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "e", "two");
	assert_false(fake_has(x->f, "c"));
	assert_false(fake_has(x->f, "d"));
	assert_int_equal(x->f->ok[OP_COPY], 2);
}

/* The server's ETag disagrees with the MD5 we sent: the upload is not trusted, but retried. */
static void test_etag_mismatch_retried(void **state)
{
	struct fx *x = *state;
	struct sync_stats st;

	x->f->bad_etag_count = 1;
	start(x);
	assert_int_equal(put_text(x, "e", "etag"), 0);
	assert_int_equal(sync_wait_key(x->s, "e", 5000), 0);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.failed_attempts, 1);
	assert_non_null(strstr(st.last_error, "is not the MD5"));
	assert_int_equal(fake_count(x->f, OP_PUT, "e"), 2);
	assert_object(x->f, "e", "etag");
}

/* Renaming a file whose upload is in flight: the new name gets its own copy of the content
 * at once, the old upload finishes, then the old name is deleted. */
static void test_rename_while_uploading(void **state)
{
	struct fx *x = *state;
	char spool[PATH_MAX], buf[64];
	bool removed;

	start(x);
	gate_op(x->f, OP_PUT, true);
	gate_keys(x->f, "a", NULL, NULL);
	assert_int_equal(put_text(x, "a", "moving"), 0);
	WAIT_FOR(fake_read_uint(x->f, &x->f->gated) == 1, 3000);
	assert_int_equal(sync_rename(x->s, "a", "b"), 0);
	assert_int_equal(sync_lookup(x->s, "b", NULL, spool, &removed), 1);
	assert_false(removed);
	read_file(spool, buf, sizeof(buf));
	assert_string_equal(buf, "moving");
	assert_int_equal(sync_lookup(x->s, "a", NULL, NULL, &removed), 1);
	assert_true(removed);
	sleep_ms(30);
	assert_false(fake_has(x->f, "b")); /* waits for the upload of a */
	gate_op(x->f, OP_PUT, false);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_object(x->f, "b", "moving");
	assert_false(fake_has(x->f, "a"));
	assert_int_equal(x->f->calls[OP_COPY], 0);
	assert_int_equal(fake_count(x->f, OP_REMOVE, "a"), 1);
}

static void test_setattr_merge_and_drop(void **state)
{
	struct fx *x = *state;
	struct store_attr a;
	struct sync_stats st;

	x->s = open_sync(x);
	assert_int_equal(put_text(x, "k", "content"), 0);
	store_attr_init(&a);
	a.mode = 0100600;
	a.has = STORE_HAS_MODE;
	assert_int_equal(sync_set_attr(x->s, "k", &a), 0);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.queued_files, 1); /* merged into the queued upload */
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_int_equal(x->f->calls[OP_COPY], 0);
	assert_int_equal(fake_find(x->f, "k")->attr.mode, 0100600);
	assert_object(x->f, "k", "content");

	a.mode = 0100640;
	assert_int_equal(sync_set_attr(x->s, "k", &a), 0);
	assert_int_equal(sync_wait_key(x->s, "k", 5000), 0);
	assert_int_equal(x->f->ok[OP_COPY], 1);
	assert_int_equal(fake_find(x->f, "k")->attr.mode, 0100640);
	assert_object(x->f, "k", "content");

	/* metadata of an object that is not there: dropped, logged, counted */
	assert_int_equal(sync_set_attr(x->s, "nothing", &a), 0);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	sync_get_stats(x->s, &st);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.queued_files, 0);
	assert_non_null(strstr(st.last_error, "'nothing'"));
}

struct listed {
	char key[16][32];
	bool removed[16], dir[16];
	int n;
};

static void list_cb(void *ud, const char *key, const struct store_attr *attr, bool removed)
{
	struct listed *l = ud;
	assert_true(l->n < 16);
	snprintf(l->key[l->n], 32, "%s", key);
	l->removed[l->n] = removed;
	l->dir[l->n] = attr->is_dir;
	l->n++;
}

static void test_list_pending(void **state)
{
	struct fx *x = *state;
	struct listed l = {0};
	struct store_attr dir;
	char buf[16];
	size_t len = 0;

	x->s = open_sync(x);
	assert_int_equal(put_text(x, "d/x", "x"), 0);
	assert_int_equal(put_text(x, "d/y/z", "z"), 0);
	assert_int_equal(put_text(x, "d/y/w", "w"), 0);
	store_attr_init(&dir);
	dir.is_dir = true;
	assert_int_equal(sync_put_mem(x->s, "d/e/", "", 0, &dir), 0);
	assert_int_equal(sync_remove(x->s, "d/w"), 0);
	assert_int_equal(put_text(x, "other", "o"), 0);
	assert_int_equal(sync_put_mem(x->s, "d/link", "../other", 8, NULL), 0);
	sync_list_pending(x->s, "d/", list_cb, &l);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.key[0], "d/e/");
	assert_true(l.dir[0]);
	assert_string_equal(l.key[1], "d/link");
	assert_string_equal(l.key[2], "d/w");
	assert_true(l.removed[2]);
	assert_string_equal(l.key[3], "d/x");
	assert_false(l.removed[3]);
	assert_string_equal(l.key[4], "d/y/");
	assert_true(l.dir[4]);
	assert_int_equal(sync_lookup_mem(x->s, "d/link", buf, sizeof(buf), &len), 1);
	assert_int_equal(len, 8);
	assert_memory_equal(buf, "../other", 8);
	assert_int_equal(sync_lookup_mem(x->s, "d/x", buf, sizeof(buf), &len), 0);
	l.n = 0;
	sync_list_pending(x->s, "", list_cb, &l);
	assert_int_equal(l.n, 2); /* "d/" (implied) and "other" */
	assert_string_equal(l.key[0], "d/");
	assert_string_equal(l.key[1], "other");

	/* a removed marker is reported removed, once; with a pending key below it, the
	 * directory that key implies is reported instead */
	assert_int_equal(sync_remove(x->s, "d/e/"), 0);
	assert_int_equal(sync_remove(x->s, "d/y/"), 0);
	l.n = 0;
	sync_list_pending(x->s, "d/", list_cb, &l);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.key[0], "d/e/");
	assert_true(l.removed[0]);
	assert_string_equal(l.key[4], "d/y/");
	assert_false(l.removed[4]);
	assert_true(l.dir[4]);
}

static void test_bad_arguments(void **state)
{
	struct fx *x = *state;
	char key[1100];

	x->s = open_sync(x);
	assert_int_equal(sync_remove(x->s, ""), EINVAL);
	assert_int_equal(sync_remove(x->s, "/abs"), EINVAL);
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	assert_int_equal(sync_remove(x->s, key), ENAMETOOLONG);
	assert_int_equal(sync_rename(x->s, "same", "same"), EINVAL);
	assert_int_equal(put_text(x, "x", "x"), 0);
	assert_int_equal(sync_start(x->s), 0);
	assert_int_equal(sync_start(x->s), EBUSY);
}

/* ---- early uploads (sync_stream_*) ---- */

/* Stage n bytes of data (appending to the staged file at path) and tell the stream. */
static void stream_append(int fd, struct sync_stream *st, const unsigned char *data, size_t from,
			  size_t to)
{
	assert_int_equal(pwrite(fd, data + from, to - from, (off_t)from), (ssize_t)(to - from));
	sync_stream_grow(st, to);
}

/* Parts go up while the file is written; the put continues the same upload: no part twice,
 * nothing visible before the put, and the final metadata rewritten onto it. */
static void test_stream_adopted(void **state)
{
	struct fx *x = *state;
	size_t n = (5u << 19) + 1234; /* 11 parts of 256 KiB */
	unsigned char *data = malloc(n);
	char path[160];
	struct store_attr a, b;

	random_bytes(data, n, 21);
	start(x);
	snprintf(path, sizeof(path), "%s/streamed", x->stage);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	store_attr_init(&a);
	a.mode = 0100644;
	a.has = STORE_HAS_MODE;
	struct sync_stream *st = sync_stream_start(x->s, "big", fd, &a);
	assert_non_null(st);
	stream_append(fd, st, data, 0, 1u << 20);
	WAIT_FOR(fake_read_uint(x->f, &x->f->ok[OP_MPU_PART]) == 4, 3000);
	assert_false(fake_has(x->f, "big"));
	stream_append(fd, st, data, 1u << 20, n);
	b = a;
	b.mode = 0100600; /* changed since the upload started */
	assert_int_equal(sync_put_file_stream(x->s, "big", path, &b, st), 0);
	close(fd);
	unlink(path);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	pthread_mutex_lock(&x->f->lock);
	struct fake_obj *o = fake_find(x->f, "big");
	assert_non_null(o);
	assert_int_equal(o->len, n);
	assert_memory_equal(o->data, data, n);
	assert_int_equal(o->attr.mode, 0100600);
	assert_int_equal(x->f->ok[OP_MPU_CREATE], 1);
	assert_int_equal(x->f->ok[OP_MPU_PART], 11);
	assert_int_equal(x->f->ok[OP_MPU_COMPLETE], 1);
	assert_int_equal(x->f->calls[OP_MPU_ABORT], 0);
	assert_int_equal(x->f->ok[OP_COPY], 1);
	pthread_mutex_unlock(&x->f->lock);
	free(data);
}

/* A stream given up (the writer changed what it read) is aborted and never completed; a put
 * of another file (a copy, not the one read) does not use it. */
static void test_stream_given_up(void **state)
{
	struct fx *x = *state;
	size_t n = 3u << 19; /* 6 parts */
	unsigned char *data = malloc(n);
	char path[160];
	struct store_attr a;

	random_bytes(data, n, 22);
	start(x);
	store_attr_init(&a);
	a.mode = 0100644;
	a.has = STORE_HAS_MODE;
	snprintf(path, sizeof(path), "%s/dropped", x->stage);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	struct sync_stream *st = sync_stream_start(x->s, "big", fd, &a);
	assert_non_null(st);
	stream_append(fd, st, data, 0, 1u << 20);
	WAIT_FOR(fake_read_uint(x->f, &x->f->ok[OP_MPU_PART]) == 4, 3000);
	sync_stream_abort(st);
	close(fd);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	pthread_mutex_lock(&x->f->lock);
	assert_int_equal(x->f->ok[OP_MPU_ABORT], 1);
	assert_true(x->f->up[0].aborted);
	pthread_mutex_unlock(&x->f->lock);
	assert_false(fake_has(x->f, "big"));

	/* the put hands over a different file with the same bytes: uploaded anew */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	st = sync_stream_start(x->s, "big", fd, &a);
	assert_non_null(st);
	stream_append(fd, st, data, 0, n);
	WAIT_FOR(fake_read_uint(x->f, &x->f->ok[OP_MPU_PART]) == 10, 3000);
	close(fd);
	unlink(path);
	assert_int_equal(put_bytes(x, "other", "x", 1), 0);
	char copy[160];
	snprintf(copy, sizeof(copy), "%s/copy", x->stage);
	fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
	assert_int_equal(sync_put_file_stream(x->s, "big", copy, &a, st), 0);
	unlink(copy);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	assert_upload_redone(x, 2, 1, 2, "big", data, n);
	free(data);
}

/* A stream alive at a stop (kill -9 or umount --lazy) is in the journal, also after the
 * compaction the stop does: the next mount aborts it. */
static void test_stream_aborted_on_replay(void **state)
{
	struct fx *x = *state;
	size_t n = 1u << 20;
	unsigned char *data = malloc(n);
	char path[160];
	struct store_attr a;

	random_bytes(data, n, 23);
	start(x);
	store_attr_init(&a);
	snprintf(path, sizeof(path), "%s/open", x->stage);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	struct sync_stream *st = sync_stream_start(x->s, "open", fd, &a);
	assert_non_null(st);
	stream_append(fd, st, data, 0, n);
	WAIT_FOR(fake_read_uint(x->f, &x->f->ok[OP_MPU_PART]) == 4, 3000);
	close(fd);
	sync_destroy(x->s, false); /* the stream goes with it, as in a crash */
	x->s = NULL;
	pthread_mutex_lock(&x->f->lock);
	assert_false(x->f->up[0].aborted);
	pthread_mutex_unlock(&x->f->lock);
	start(x);
	assert_int_equal(sync_wait_all(x->s, NULL, NULL), 0);
	pthread_mutex_lock(&x->f->lock);
	assert_true(x->f->up[0].aborted);
	assert_false(x->f->up[0].completed);
	pthread_mutex_unlock(&x->f->lock);
	assert_false(fake_has(x->f, "open"));
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_upload_and_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settle_and_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_survives_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_then_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inline_copy_rebuilds_spool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_without_drain_replays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_supersede_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_supersede_queued, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_backoff_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_abort_on_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_refusal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_all_watermark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_local_and_server_side, setup, teardown),
		cmocka_unit_test_setup_teardown(test_etag_mismatch_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_while_uploading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setattr_merge_and_drop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_adopted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_given_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_aborted_on_replay, setup, teardown),
	};
	setvbuf(stdout, NULL, _IONBF, 0); /* a forked child's messages are not lost */
	alarm(120); /* a hang is a failure, not a stuck CI job */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
