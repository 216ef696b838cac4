/*
 * sync.c - the sync thread: what the journal records mean (replay at mount), the per-key
 * ordered queue of pending operations, batches, uploads by worker threads (single PUT or
 * multipart with parallel parts), retries with backoff, commits (DONE records), waits,
 * drain and statistics. The file format itself is journal.c's.
 *
 * Locking:
 *  - s->journal_lock serialises everything that appends to or rewrites the journal and the
 *    assignment of sequence numbers, so file order is sequence order. It is held across the
 *    journal's fdatasync (small records), never across store I/O or a spool file's fsync.
 *  - s->lock guards the queue (items, key chains, heap, work FIFO, multipart part queue),
 *    the statistics and the flags. Never held across store I/O, fsync or file copies.
 *  - Order: journal_lock, then lock; never the other way round.
 *  Condition variables (all used with s->lock): sched_wake (the scheduler: new or finished
 *  work, urgency, stop), work_ready (workers: items or parts to take), parts_done
 *  (multipart owners: a part finished), progress (waiters: something committed or failed).
 *
 * Life of an item: QUEUED (in its key chains; in the heap once it heads every chain) ->
 * BATCHED (in the work FIFO) -> RUNNING (a worker owns it; its fields are read-only) ->
 * FINISHED (at the destination, DONE record not yet durable) -> freed. A failure puts it
 * back to QUEUED with backoff. An item stays at the head of its chains until its DONE record
 * is durable, so the next operation on a key starts only after the previous one committed,
 * and a replay after a crash never sees a later operation done and an earlier one not.
 *
 * Early uploads (sync_stream_start): a file still being written by appends gets a multipart
 * upload of its own, journalled (MPU_STARTED, ref 0) before its first part; the workers take
 * its full parts from the same list as the parts of running items. Its put item adopts it
 * (the parts done so far count, the rest are uploaded as usual) when the spool file is the
 * same file; anything else gives it up: an ABORT item aborts the upload and commits the
 * record. A stream is freed by whoever finds it given up (or adopted) and idle.
 *
 * Superseding: a new full write of a key (put, remove, rename onto it, rename away with a
 * local copy of the content) drops queued single-key items at the tail of the key's chain;
 * their DONE records go into the same journal write as the new record. A set_attr merges
 * into a queued tail that carries content for the key. Replay applies the same rules to the
 * records, so what the journal says and what the queue does agree.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "journal.h"
#include "log.h"
#include "sync.h"

#define SYNC_KEY_MAX 1024
#define SYNC_MEM_MAX (1u << 20)
/* A closed file up to this size goes into its journal record whole, and its spool file is not
 * fsynced: one flush per close() instead of three (file, spool directory, journal). */
#define SYNC_INLINE_MAX (128u << 10)
#define SYNC_COMPACT_MIN (8u << 20)  /* compact when the journal passes this (default) ... */
#define SYNC_COMPACT_FACTOR 4        /* ... and this many times its size after the last one */
#define SYNC_COMMIT_AGE_MS 1000      /* commit finished items of a running batch after this */
#define SYNC_IDLE_LINGER_MS 20       /* with idle workers, a batch closes this long after due */
#define SYNC_PROGRESS_MS 200
#define SYNC_MAX_PARTS 10000
#define SYNC_STREAM_MAX (5ull << 30) /* early uploads: the most a metadata rewrite can copy */
#define NO_POS ((size_t)-1)
#define FOREVER INT64_MAX

enum sync_kind { ITEM_PUT_FILE, ITEM_PUT_MEM, ITEM_REMOVE, ITEM_RENAME, ITEM_SETATTR, ITEM_ABORT };
enum sync_state { ITEM_QUEUED, ITEM_BATCHED, ITEM_RUNNING, ITEM_FINISHED };

struct sync_item;
struct sync_key;

/* An item's place in one key's chain. */
struct sync_link {
	struct sync_key *key;
	struct sync_link *prev, *next;
	struct sync_item *item;
};

/* A key with pending operations; freed when its chain is empty and nobody waits on it. */
struct sync_key {
	char *name;
	struct sync_key *hash_next;
	struct sync_link *head, *tail;
	unsigned waiters;       /* sync_wait_key callers keeping it alive */
	unsigned pins;          /* journal operations about to link an item to it */
	uint64_t committed_seq; /* newest seq applied at the destination for this key */
};

struct sync_batch {
	unsigned running; /* items BATCHED or RUNNING */
	unsigned refs;    /* items pointing at it */
};

struct sync_item {
	enum sync_kind kind;
	enum sync_state state;
	uint64_t seq;       /* its newest record */
	uint64_t min_seq;   /* its oldest record (it replaces everything it superseded) */
	uint64_t *covers;   /* every seq to mark DONE when it commits */
	size_t n_covers, cap_covers;
	uint64_t first_ms;  /* wall clock of its oldest record */
	char *key;          /* the key written; RENAME: destination; ABORT: the upload's key */
	char *src_key;      /* RENAME: source */
	char *spool;        /* content file in spool/ or NULL */
	void *data;         /* in-memory content when has_data */
	size_t len;
	bool has_data;
	bool spool_unsynced; /* the spool file was not fsynced: its content is durable only as
			      * the inline copy in the item's journal record (small files) */
	struct store_attr attr;
	bool has_attr, attr_replace;
	uint64_t bytes;     /* content size (0 without content) */
	struct sync_link links[2]; /* [0]: key, [1]: RENAME source */
	unsigned n_links;

	int64_t ready_ms, retry_ms; /* monotonic: settle and backoff */
	size_t heap_pos;
	bool pinned;       /* a journal operation is planning with it: do not dispatch or free */
	bool urgent;       /* someone waits for it: skip settle, close the batch, commit soon */
	bool skip_upload;  /* superseded by its successor after a failure: commit without upload */
	bool put_done;     /* RENAME: the destination is written, only the source removal is left */
	unsigned attempts;
	int last_err;
	struct sync_batch *batch;
	struct sync_item *next_work;          /* work FIFO or finished list */
	struct sync_item *all_prev, *all_next; /* every item, ordered by min_seq */
	char *upload_id;    /* a recorded multipart upload (ABORT: the one to abort) */
	uint64_t mpu_seq;   /* its MPU_STARTED record */
	uint64_t bytes_done; /* finished parts of a multipart upload in flight */
	int64_t finished_ms;
	struct sync_stream *stream; /* PUT_FILE: early upload of its content, taken when it runs */
};

/* A multipart upload whose parts the workers share. Lives on its owner's stack, or in its
 * stream (then item is the item it is attached to, or NULL). */
struct sync_mpu {
	struct sync_mpu *next;
	struct sync_item *item;
	struct sync_stream *stream; /* an early upload: its parts, NULL for an item's own */
	const char *key, *upload_id;
	int fd;
	uint64_t size, part_size;
	unsigned n_parts, next_part, running;
	unsigned helpers; /* other workers running its parts */
	bool listed;
	struct store_part *parts;
	int err;
	char msg[256];
};

/* An early upload (see the top). Protected by s->lock except writer_parts (the writer's). */
struct sync_stream {
	struct sync_mpu m;        /* parts; m.n_parts: full parts the writer is past */
	struct sync *s;
	struct sync_stream *next_live;
	char *key;
	char *upload_id;          /* set with mpu_seq once created and journalled */
	uint64_t mpu_seq;         /* its MPU_STARTED record */
	struct store_attr attr;   /* the metadata it was started with */
	dev_t dev;                /* the file it reads */
	ino_t ino;
	uint64_t writer_parts;    /* the writer's side: full parts reported */
	bool creating, given_up, adopted;
};

struct sync {
	struct sync_config cfg;
	char *cache_dir, *spool_dir, *journal_path, *lock_path;
	struct store *dest;
	int lock_fd;
	struct journal *journal; /* journal_lock */
	pthread_mutex_t journal_lock;
	pthread_mutex_t lock;
	pthread_cond_t sched_wake, work_ready, parts_done, progress;

	/* protected by lock */
	uint64_t next_seq;
	struct sync_key **buckets;
	size_t n_buckets, n_keys;
	struct sync_item **heap;
	size_t heap_len, heap_cap;
	struct sync_item *work_head, *work_tail;
	struct sync_item *finished;
	struct sync_item *all_head, *all_tail;
	uint64_t n_items, queued_bytes;
	struct sync_mpu *mpus; /* with parts left to hand out (or a stream to create) */
	struct sync_stream *streams; /* every live early upload */
	uint64_t urgent_seq;
	bool started, stopping, draining;
	uint64_t journal_bytes, compacted_bytes;
	int64_t commit_retry_ms, compact_retry_ms;
	unsigned rand_state;
	struct sync_stats stats; /* counters; queue-derived fields filled on demand */
	int64_t last_error_ms;

	volatile int cancel; /* store_io.cancel for every background request */
	unsigned long spool_counter; /* atomic */
	char spool_prefix[24];
	pthread_t scheduler;
	pthread_t *workers;
	unsigned n_workers;
};

static void stream_give_up(struct sync *s, struct sync_stream *st);

/* ---- small helpers ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void deadline_ts(struct timespec *ts, int64_t at_mono_ms)
{
	ts->tv_sec = (time_t)(at_mono_ms / 1000);
	ts->tv_nsec = (long)(at_mono_ms % 1000) * 1000000;
}

/* Wait on cond until at (monotonic ms; FOREVER: no timeout). */
static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t at)
{
	if (at == FOREVER) {
		pthread_cond_wait(c, m);
		return;
	}
	struct timespec ts;
	deadline_ts(&ts, at);
	pthread_cond_timedwait(c, m, &ts);
}

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static int fsync_path(const char *path, bool dir)
{
	int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = fsync(fd) < 0 ? errno : 0;
	close(fd);
	return err;
}

static int check_key(const char *key)
{
	if (!key || !key[0] || key[0] == '/')
		return EINVAL;
	if (strlen(key) > SYNC_KEY_MAX)
		return ENAMETOOLONG;
	return 0;
}

void sync_config_defaults(struct sync_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->settle_ms = 200;
	cfg->batch_files = 1000;
	cfg->batch_bytes = 256ull << 20;
	cfg->batch_ms = 2000;
	cfg->multipart_threshold = 16ull << 20;
	cfg->part_size = 8ull << 20;
	cfg->upload_workers = 24;
	cfg->retry_base_ms = 1000;
	cfg->retry_max_ms = 60000;
}

/* ---- keys (hash map of chains); all under s->lock ---- */

static size_t key_hash(const char *name)
{
	size_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

static struct sync_key *key_find(struct sync *s, const char *name)
{
	if (!s->n_buckets)
		return NULL;
	for (struct sync_key *k = s->buckets[key_hash(name) % s->n_buckets]; k; k = k->hash_next)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static void key_grow(struct sync *s)
{
	size_t n = s->n_buckets ? s->n_buckets * 2 : 64;
	struct sync_key **b = calloc(n, sizeof(*b));
	if (!b)
		return; /* chains just get longer */
	for (size_t i = 0; i < s->n_buckets; i++) {
		struct sync_key *k = s->buckets[i];
		while (k) {
			struct sync_key *next = k->hash_next;
			size_t h = key_hash(k->name) % n;
			k->hash_next = b[h];
			b[h] = k;
			k = next;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->n_buckets = n;
}

static struct sync_key *key_get(struct sync *s, const char *name)
{
	struct sync_key *k = key_find(s, name);
	if (k)
		return k;
	if (s->n_keys >= s->n_buckets)
		key_grow(s);
	if (!s->n_buckets)
		return NULL;
	k = calloc(1, sizeof(*k));
	if (!k || !(k->name = strdup(name))) {
		free(k);
		return NULL;
	}
	size_t h = key_hash(name) % s->n_buckets;
	k->hash_next = s->buckets[h];
	s->buckets[h] = k;
	s->n_keys++;
	return k;
}

static void key_release(struct sync *s, struct sync_key *k)
{
	if (k->head || k->waiters || k->pins)
		return;
	struct sync_key **pp = &s->buckets[key_hash(k->name) % s->n_buckets];
	while (*pp != k)
		pp = &(*pp)->hash_next;
	*pp = k->hash_next;
	s->n_keys--;
	free(k->name);
	free(k);
}

/* ---- the heap of items that head all their chains, by due time ---- */

static int64_t item_due(const struct sync_item *it)
{
	if (it->urgent)
		return it->retry_ms;
	return it->ready_ms > it->retry_ms ? it->ready_ms : it->retry_ms;
}

static void heap_set(struct sync *s, size_t i, struct sync_item *it)
{
	s->heap[i] = it;
	it->heap_pos = i;
}

static void heap_up(struct sync *s, size_t i)
{
	struct sync_item *it = s->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (item_due(s->heap[parent]) <= item_due(it))
			break;
		heap_set(s, i, s->heap[parent]);
		i = parent;
	}
	heap_set(s, i, it);
}

static void heap_down(struct sync *s, size_t i)
{
	struct sync_item *it = s->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->heap_len)
			break;
		if (c + 1 < s->heap_len && item_due(s->heap[c + 1]) < item_due(s->heap[c]))
			c++;
		if (item_due(it) <= item_due(s->heap[c]))
			break;
		heap_set(s, i, s->heap[c]);
		i = c;
	}
	heap_set(s, i, it);
}

static bool heap_push(struct sync *s, struct sync_item *it)
{
	if (s->heap_len == s->heap_cap) {
		size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
		struct sync_item **h = realloc(s->heap, cap * sizeof(*h));
		if (!h)
			return false;
		s->heap = h;
		s->heap_cap = cap;
	}
	heap_set(s, s->heap_len++, it);
	heap_up(s, it->heap_pos);
	return true;
}

static void heap_remove(struct sync *s, struct sync_item *it)
{
	size_t i = it->heap_pos;
	if (i == NO_POS)
		return;
	it->heap_pos = NO_POS;
	struct sync_item *last = s->heap[--s->heap_len];
	if (last == it)
		return;
	heap_set(s, i, last);
	heap_up(s, i);
	heap_down(s, last->heap_pos);
}

static void heap_fix(struct sync *s, struct sync_item *it)
{
	if (it->heap_pos == NO_POS)
		return;
	heap_up(s, it->heap_pos);
	heap_down(s, it->heap_pos);
}

/* ---- items ---- */

static bool item_is_head(const struct sync_item *it)
{
	for (unsigned i = 0; i < it->n_links; i++)
		if (it->links[i].prev)
			return false;
	return true;
}

/* Put a QUEUED item that heads all its chains into the heap. */
static void item_consider(struct sync *s, struct sync_item *it)
{
	if (it->state == ITEM_QUEUED && it->heap_pos == NO_POS && item_is_head(it)) {
		if (!heap_push(s, it))
			log_error("sync: out of memory queueing '%s': it waits for the next event",
				  it->key);
	}
}

static int covers_add(struct sync_item *it, uint64_t seq)
{
	if (it->n_covers == it->cap_covers) {
		size_t cap = it->cap_covers ? it->cap_covers * 2 : 2;
		uint64_t *c = realloc(it->covers, cap * sizeof(*c));
		if (!c)
			return ENOMEM;
		it->covers = c;
		it->cap_covers = cap;
	}
	it->covers[it->n_covers++] = seq;
	return 0;
}

static void item_free(struct sync_item *it)
{
	if (!it)
		return;
	free(it->covers);
	free(it->key);
	free(it->src_key);
	free(it->spool);
	free(it->data);
	free(it->upload_id);
	store_attr_free(&it->attr);
	free(it);
}

static void link_append(struct sync_key *k, struct sync_link *l, struct sync_item *it)
{
	l->key = k;
	l->item = it;
	l->next = NULL;
	l->prev = k->tail;
	if (k->tail)
		k->tail->next = l;
	else
		k->head = l;
	k->tail = l;
}

/* Unlink; the new head of the chain may become schedulable. The key may be freed. */
static void link_remove(struct sync *s, struct sync_link *l)
{
	struct sync_key *k = l->key;
	struct sync_link *next = l->next;

	if (l->prev)
		l->prev->next = l->next;
	else
		k->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		k->tail = l->prev;
	l->prev = l->next = NULL;
	l->key = NULL;
	if (next && !next->prev)
		item_consider(s, next->item);
	key_release(s, k);
}

static void all_insert_before(struct sync *s, struct sync_item *it, struct sync_item *pos)
{
	it->all_next = pos;
	it->all_prev = pos ? pos->all_prev : s->all_tail;
	if (it->all_prev)
		it->all_prev->all_next = it;
	else
		s->all_head = it;
	if (pos)
		pos->all_prev = it;
	else
		s->all_tail = it;
}

static void all_remove(struct sync *s, struct sync_item *it)
{
	if (it->all_prev)
		it->all_prev->all_next = it->all_next;
	else
		s->all_head = it->all_next;
	if (it->all_next)
		it->all_next->all_prev = it->all_prev;
	else
		s->all_tail = it->all_prev;
	it->all_prev = it->all_next = NULL;
}

/* Insert by min_seq, searching from the tail (new items are almost always last). */
static void all_insert_sorted(struct sync *s, struct sync_item *it)
{
	struct sync_item *pos = NULL;
	for (struct sync_item *p = s->all_tail; p && p->min_seq > it->min_seq; p = p->all_prev)
		pos = p;
	all_insert_before(s, it, pos);
}

static void batch_unref(struct sync_item *it)
{
	struct sync_batch *b = it->batch;
	if (!b)
		return;
	it->batch = NULL;
	if (--b->refs == 0)
		free(b);
}

/* Take an item out of every structure and account for it; the caller frees it. */
static void item_detach(struct sync *s, struct sync_item *it)
{
	heap_remove(s, it);
	for (unsigned i = 0; i < it->n_links; i++)
		if (it->links[i].key)
			link_remove(s, &it->links[i]);
	all_remove(s, it);
	batch_unref(it);
	s->n_items--;
	s->queued_bytes -= it->bytes;
	if (it->attempts)
		s->stats.retrying--;
}

/* Mark it and, transitively, every item it waits for as urgent. */
static void mark_urgent(struct sync *s, struct sync_item *start)
{
	struct sync_item **stack = NULL;
	size_t n = 0, cap = 0;
	struct sync_item *it = start;

	for (;;) {
		if (!it->urgent) {
			it->urgent = true;
			heap_fix(s, it);
			for (unsigned i = 0; i < it->n_links; i++) {
				for (struct sync_link *l = it->links[i].prev; l; l = l->prev) {
					if (l->item->urgent)
						continue;
					if (n == cap) {
						size_t c = cap ? cap * 2 : 16;
						struct sync_item **st = realloc(stack, c * sizeof(*st));
						if (!st)
							break; /* those only keep their settle delay */
						stack = st;
						cap = c;
					}
					stack[n++] = l->item;
				}
			}
		}
		if (n == 0)
			break;
		it = stack[--n];
	}
	free(stack);
}

/* ---- what a key will hold ---- */

enum view_kind { VIEW_NONE, VIEW_REMOVED, VIEW_FILE, VIEW_MEM, VIEW_STORED, VIEW_ORIGIN };

struct sync_view {
	enum view_kind kind;
	const struct sync_item *content; /* FILE, MEM: the item holding the bytes */
	const struct store_attr *attr;   /* NULL: unknown */
	const struct sync_item *via;     /* ORIGIN: the rename that made it (rename_chain) */
};

/* Apply the chain of k up to (not including) stop. */
static void view_of(const struct sync_key *k, const struct sync_link *stop, struct sync_view *v)
{
	memset(v, 0, sizeof(*v));
	for (const struct sync_link *l = k ? k->head : NULL; l && l != stop; l = l->next) {
		const struct sync_item *it = l->item;
		switch (it->kind) {
		case ITEM_PUT_FILE:
		case ITEM_PUT_MEM:
			v->kind = it->kind == ITEM_PUT_FILE ? VIEW_FILE : VIEW_MEM;
			v->content = it;
			v->attr = &it->attr;
			v->via = NULL;
			break;
		case ITEM_REMOVE:
			memset(v, 0, sizeof(*v));
			v->kind = VIEW_REMOVED;
			break;
		case ITEM_SETATTR:
			if (v->kind == VIEW_NONE || v->kind == VIEW_STORED)
				v->kind = VIEW_STORED;
			if (v->kind != VIEW_REMOVED)
				v->attr = &it->attr;
			break;
		case ITEM_RENAME:
			if (l == &it->links[1]) {
				memset(v, 0, sizeof(*v));
				v->kind = VIEW_REMOVED;
			} else if (it->spool || it->has_data) {
				v->kind = it->spool ? VIEW_FILE : VIEW_MEM;
				v->content = it;
				v->attr = it->has_attr ? &it->attr : NULL;
				v->via = NULL;
			} else {
				v->kind = VIEW_ORIGIN;
				v->content = NULL;
				v->attr = it->has_attr ? &it->attr : NULL;
				v->via = it;
			}
			break;
		case ITEM_ABORT:
			break;
		}
	}
}

/* Append to keys the keys the stored bytes pass through before rename r lands them at
 * r->key, oldest first: the chain of renames into r's source, then that source. false when
 * out of memory. */
static bool rename_chain(const struct sync_item *r, char **keys, size_t *n, size_t max)
{
	struct sync_view v;

	view_of(r->links[1].key, &r->links[1], &v);
	if (v.kind == VIEW_ORIGIN && v.via && !rename_chain(v.via, keys, n, max))
		return false;
	if (*n < max) {
		if (!(keys[*n] = strdup(r->src_key)))
			return false;
		(*n)++;
	}
	return true;
}

/* ---- statistics ---- */

static void sync_set_error(struct sync *s, const char *msg)
{
	snprintf(s->stats.last_error, sizeof(s->stats.last_error), "%s", msg);
	s->last_error_ms = mono_ms();
}

/* ---- building items from records ---- */

static struct sync_item *item_new(void)
{
	struct sync_item *it = calloc(1, sizeof(*it));
	if (!it)
		return NULL;
	store_attr_init(&it->attr);
	it->heap_pos = NO_POS;
	return it;
}

static char *dup_or_null(const char *s, bool *fail)
{
	if (!s || !s[0])
		return NULL;
	char *d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

/* A new item for record r (deep copies). NULL on ENOMEM. */
static struct sync_item *item_from_record(const struct journal_record *r)
{
	struct sync_item *it = item_new();
	bool fail = false;

	if (!it)
		return NULL;
	it->seq = it->min_seq = r->seq;
	it->first_ms = r->time_ms;
	switch (r->type) {
	case JOURNAL_PUT_FILE:
		it->kind = ITEM_PUT_FILE;
		break;
	case JOURNAL_PUT_MEM:
		it->kind = ITEM_PUT_MEM;
		break;
	case JOURNAL_REMOVE:
		it->kind = ITEM_REMOVE;
		break;
	case JOURNAL_RENAME:
		it->kind = ITEM_RENAME;
		break;
	case JOURNAL_SETATTR:
		it->kind = ITEM_SETATTR;
		break;
	case JOURNAL_MPU_STARTED:
		it->kind = ITEM_ABORT;
		break;
	default:
		fail = true;
		break;
	}
	if (r->type == JOURNAL_RENAME) {
		it->key = dup_or_null(r->dst_key, &fail);
		it->src_key = dup_or_null(r->key, &fail);
		it->attr_replace = (r->flags & JOURNAL_ATTR_REPLACE) != 0;
	} else {
		it->key = dup_or_null(r->key, &fail);
	}
	it->spool = dup_or_null(r->spool, &fail);
	it->upload_id = dup_or_null(r->upload_id, &fail);
	if (it->kind == ITEM_ABORT)
		it->mpu_seq = r->seq;
	if (r->type == JOURNAL_PUT_FILE) {
		/* the inline copy stays in the journal; the upload reads the spool file */
		it->spool_unsynced = (r->flags & JOURNAL_HAS_DATA) != 0;
	} else if (r->flags & JOURNAL_HAS_DATA) {
		it->has_data = true;
		it->len = r->len;
		it->data = malloc(r->len ? r->len : 1);
		if (!it->data)
			fail = true;
		else if (r->len)
			memcpy(it->data, r->data, r->len);
	}
	if (r->flags & JOURNAL_HAS_ATTR) {
		it->has_attr = true;
		if (store_attr_copy(&it->attr, &r->attr))
			fail = true;
	}
	if (it->spool || it->has_data)
		it->bytes = it->has_data ? it->len : it->attr.size;
	if (!it->key || (r->type == JOURNAL_RENAME && !it->src_key))
		fail = true;
	if (covers_add(it, r->seq))
		fail = true;
	if (fail) {
		item_free(it);
		return NULL;
	}
	return it;
}

/* The record that stands for a live item (compaction); pointers are borrowed. */
static void record_of_item(const struct sync_item *it, struct journal_record *r)
{
	memset(r, 0, sizeof(*r));
	r->seq = it->seq;
	r->time_ms = it->first_ms;
	r->key = it->key;
	r->spool = it->spool;
	r->data = it->data;
	r->len = it->len;
	if (it->has_data)
		r->flags |= JOURNAL_HAS_DATA;
	if (it->has_attr) {
		r->flags |= JOURNAL_HAS_ATTR;
		r->attr = it->attr;
	}
	switch (it->kind) {
	case ITEM_PUT_FILE:
		r->type = JOURNAL_PUT_FILE;
		break;
	case ITEM_PUT_MEM:
		r->type = JOURNAL_PUT_MEM;
		break;
	case ITEM_REMOVE:
		r->type = JOURNAL_REMOVE;
		break;
	case ITEM_SETATTR:
		r->type = JOURNAL_SETATTR;
		break;
	case ITEM_RENAME:
		r->type = JOURNAL_RENAME;
		r->key = it->src_key;
		r->dst_key = it->key;
		if (it->attr_replace)
			r->flags |= JOURNAL_ATTR_REPLACE;
		break;
	case ITEM_ABORT:
		r->type = JOURNAL_MPU_STARTED;
		r->upload_id = it->upload_id;
		r->flags = 0;
		break;
	}
}

/* ---- planning and applying one record ---- */

struct sync_plan {
	struct sync_item *merge_into;  /* SETATTR absorbed by this queued item */
	struct store_attr merged_attr; /* prepared copy for merge_into */
	struct sync_item **superseded; /* queued items the record replaces */
	size_t n_superseded, cap_superseded;
	struct sync_item *content;     /* RENAME: item whose spool we link (pinned) */
	struct sync_key *keys[2];      /* the new item's keys, created and pinned */
	bool pinning;                  /* runtime: pin what we plan with */
};

static bool item_single_key(const struct sync_item *it)
{
	return it->kind == ITEM_PUT_FILE || it->kind == ITEM_PUT_MEM || it->kind == ITEM_REMOVE ||
	       it->kind == ITEM_SETATTR;
}

static int plan_add_superseded(struct sync_plan *p, struct sync_item *it)
{
	for (size_t i = 0; i < p->n_superseded; i++)
		if (p->superseded[i] == it)
			return 0;
	if (p->n_superseded == p->cap_superseded) {
		size_t cap = p->cap_superseded ? p->cap_superseded * 2 : 4;
		struct sync_item **a = realloc(p->superseded, cap * sizeof(*a));
		if (!a)
			return ENOMEM;
		p->superseded = a;
		p->cap_superseded = cap;
	}
	p->superseded[p->n_superseded++] = it;
	return 0;
}

/* The record fully replaces what key will hold: drop queued single-key tails. */
static int plan_full_write(struct sync *s, struct sync_plan *p, const char *key)
{
	struct sync_key *k = key_find(s, key);
	for (struct sync_link *l = k ? k->tail : NULL; l; l = l->prev) {
		struct sync_item *it = l->item;
		if (it->state != ITEM_QUEUED || it->pinned || !item_single_key(it))
			break;
		int err = plan_add_superseded(p, it);
		if (err)
			return err;
	}
	return 0;
}

static void plan_pin(struct sync_plan *p, bool pin)
{
	if (!p->pinning)
		return;
	for (size_t i = 0; i < p->n_superseded; i++)
		p->superseded[i]->pinned = pin;
	if (p->merge_into)
		p->merge_into->pinned = pin;
	if (p->content)
		p->content->pinned = pin;
}

/* Drop the plan's key pins (freeing keys that stayed empty). Under s->lock. */
static void plan_unpin_keys(struct sync *s, struct sync_plan *p)
{
	for (int i = 0; i < 2; i++)
		if (p->keys[i]) {
			p->keys[i]->pins--;
			key_release(s, p->keys[i]);
			p->keys[i] = NULL;
		}
}

static void plan_free(struct sync_plan *p)
{
	free(p->superseded);
	store_attr_free(&p->merged_attr);
	memset(p, 0, sizeof(*p));
}

/* Decide what record r does to the queue. Under s->lock. */
static int plan_make(struct sync *s, const struct journal_record *r, struct sync_plan *p)
{
	int err = 0;

	if (r->type == JOURNAL_SETATTR) {
		struct sync_key *k = key_find(s, r->key);
		struct sync_item *t = k && k->tail ? k->tail->item : NULL;
		bool absorbs = t && t->state == ITEM_QUEUED && !t->pinned &&
			       (t->kind == ITEM_PUT_FILE || t->kind == ITEM_PUT_MEM ||
				t->kind == ITEM_SETATTR ||
				(t->kind == ITEM_RENAME && k->tail == &t->links[0]));
		if (absorbs) {
			err = store_attr_copy(&p->merged_attr, &r->attr);
			if (!err && (err = covers_add(t, r->seq)) == 0)
				t->n_covers--; /* capacity reserved; apply adds it for real */
			if (!err)
				p->merge_into = t;
			return err;
		}
		p->keys[0] = key_get(s, r->key);
		if (!p->keys[0])
			return ENOMEM;
		p->keys[0]->pins++;
		return 0;
	}
	if (r->type == JOURNAL_MPU_STARTED || r->type == JOURNAL_DONE)
		return 0;
	/* Create the new item's keys now, while failing is still allowed. */
	p->keys[0] = key_get(s, r->type == JOURNAL_RENAME ? r->dst_key : r->key);
	if (p->keys[0])
		p->keys[0]->pins++;
	if (r->type == JOURNAL_RENAME) {
		p->keys[1] = key_get(s, r->key);
		if (p->keys[1])
			p->keys[1]->pins++;
	}
	if (!p->keys[0] || (r->type == JOURNAL_RENAME && !p->keys[1])) {
		plan_unpin_keys(s, p);
		return ENOMEM;
	}
	if (r->type == JOURNAL_RENAME) {
		err = plan_full_write(s, p, r->dst_key);
		if (!err && ((r->spool && r->spool[0]) || (r->flags & JOURNAL_HAS_DATA)))
			err = plan_full_write(s, p, r->key);
		return err;
	}
	return plan_full_write(s, p, r->key); /* PUT_FILE, PUT_MEM, REMOVE */
}

/* Make the planned change (cannot fail: everything was allocated before). Under s->lock.
 * it: the new item (NULL when merged). Spool names of dropped items are moved to *unlink
 * (an array of n_unlink names the caller frees) when unlink is not NULL. */
static void plan_apply(struct sync *s, struct sync_plan *p, struct sync_item *it,
		       const struct journal_record *r, char **unlink, size_t *n_unlink)
{
	int64_t now = mono_ms();
	struct sync_item *pos = NULL;

	plan_pin(p, false);
	if (p->merge_into) {
		struct sync_item *t = p->merge_into;
		uint64_t size = t->bytes;
		store_attr_free(&t->attr);
		t->attr = p->merged_attr;
		store_attr_init(&p->merged_attr);
		if (t->spool || t->has_data)
			t->attr.size = size;
		t->has_attr = true;
		if (t->kind == ITEM_RENAME && !t->spool && !t->has_data)
			t->attr_replace = true;
		t->covers[t->n_covers++] = r->seq;
		t->seq = r->seq;
		t->ready_ms = now + s->cfg.settle_ms;
		heap_fix(s, t);
		return;
	}
	for (size_t i = 0; i < p->n_superseded; i++) {
		struct sync_item *old = p->superseded[i];
		if (old->min_seq < it->min_seq)
			it->min_seq = old->min_seq;
		if (old->first_ms && old->first_ms < it->first_ms)
			it->first_ms = old->first_ms;
		if (!pos || old->min_seq < pos->min_seq)
			pos = old;
	}
	/* Insert next to the oldest superseded item so the list stays ordered by min_seq. */
	if (pos)
		all_insert_before(s, it, pos);
	else
		all_insert_sorted(s, it);
	for (size_t i = 0; i < p->n_superseded; i++) {
		struct sync_item *old = p->superseded[i];
		if (old->stream) { /* its early upload must never complete */
			old->stream->m.item = NULL;
			stream_give_up(s, old->stream);
			old->stream = NULL;
		}
		item_detach(s, old);
		if (old->spool && unlink) {
			unlink[(*n_unlink)++] = old->spool;
			old->spool = NULL;
		}
		item_free(old);
	}
	it->state = ITEM_QUEUED;
	it->ready_ms = now + s->cfg.settle_ms;
	it->urgent = it->min_seq <= s->urgent_seq;
	link_append(p->keys[0], &it->links[0], it);
	it->n_links = 1;
	if (it->kind == ITEM_RENAME) {
		link_append(p->keys[1], &it->links[1], it);
		it->n_links = 2;
	}
	plan_unpin_keys(s, p);
	s->n_items++;
	s->queued_bytes += it->bytes;
	item_consider(s, it);
	if (it->urgent)
		mark_urgent(s, it);
}

/* ---- journal writes from the API ---- */

static void spool_name(struct sync *s, char *buf, size_t len)
{
	unsigned long n = __atomic_add_fetch(&s->spool_counter, 1, __ATOMIC_RELAXED);
	snprintf(buf, len, "%s-%lu", s->spool_prefix, n);
}

static void spool_unlink(struct sync *s, char **names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *p = path_join(s->spool_dir, names[i]);
		if (p && unlink(p) < 0 && errno != ENOENT)
			log_warn("cannot delete spool file '%s': %s", p, strerror(errno));
		free(p);
		free(names[i]);
	}
}

/*
 * Record r durably and queue it. r's seq and time are assigned here. For a RENAME, the
 * source's local content (spool file or memory) is captured first. 0 or errno; on error
 * nothing is recorded or queued. stream (PUT_FILE, may be NULL) is attached to the new item,
 * or given up on error.
 */
static int sync_journal_op(struct sync *s, struct journal_record *r, struct sync_stream *stream)
{
	struct sync_plan plan = {.pinning = true};
	struct journal_buf buf = {0};
	struct sync_item *it = NULL;
	char new_spool[64] = "", **unlinks = NULL;
	char *new_spool_path = NULL;
	size_t n_unlinks = 0;
	int err;

	pthread_mutex_lock(&s->journal_lock);
	pthread_mutex_lock(&s->lock);
	r->seq = s->next_seq;
	r->time_ms = wall_ms();
	if (r->type == JOURNAL_RENAME) {
		struct sync_view v;
		view_of(key_find(s, r->key), NULL, &v);
		if (v.kind == VIEW_FILE) {
			plan.content = (struct sync_item *)v.content;
			spool_name(s, new_spool, sizeof(new_spool));
			r->spool = new_spool;
		} else if (v.kind == VIEW_MEM) {
			r->data = v.content->data;
			r->len = v.content->len;
			r->flags |= JOURNAL_HAS_DATA;
		}
		if (v.attr) {
			r->attr = *v.attr; /* borrowed until item_from_record copies it */
			r->flags |= JOURNAL_HAS_ATTR;
			if (v.content)
				r->attr.size = v.content->bytes;
		}
	}
	err = plan_make(s, r, &plan);
	if (!err && !plan.merge_into && !(it = item_from_record(r)))
		err = ENOMEM;
	if (!err && plan.n_superseded)
		unlinks = calloc(plan.n_superseded, sizeof(*unlinks));
	if (!err && plan.n_superseded && !unlinks)
		err = ENOMEM;
	if (err) {
		plan_unpin_keys(s, &plan);
		pthread_mutex_unlock(&s->lock);
		goto out;
	}
	plan_pin(&plan, true);
	pthread_mutex_unlock(&s->lock);

	if (plan.content) {
		/* The content item is pinned: its spool file stays until we are done. */
		char *src = path_join(s->spool_dir, plan.content->spool);
		new_spool_path = path_join(s->spool_dir, new_spool);
		if (!src || !new_spool_path)
			err = ENOMEM;
		else if (link(src, new_spool_path) < 0)
			err = errno;
		else if (plan.content->spool_unsynced &&
			 (err = fsync_path(new_spool_path, false)) != 0)
			; /* the rename's record carries no copy: the content must be on disk */
		else
			err = fsync_path(s->spool_dir, true);
		free(src);
		if (err) {
			log_warn("rename '%s' -> '%s': cannot link spool file: %s", r->key, r->dst_key,
				 strerror(err));
			goto unpin;
		}
	}
	journal_encode(&buf, r);
	for (size_t i = 0; i < plan.n_superseded; i++) {
		struct sync_item *old = plan.superseded[i];
		for (size_t c = 0; c < old->n_covers; c++) {
			struct journal_record done = {.type = JOURNAL_DONE, .ref = old->covers[c],
						      .time_ms = r->time_ms};
			journal_encode(&buf, &done);
		}
	}
	err = buf.err;
	if (!err)
		err = journal_append(s->journal, buf.p, buf.len);
	if (err) {
		if (err != ENOMEM)
			log_warn("cannot write journal '%s': %s", s->journal_path, strerror(err));
		goto unpin;
	}

	pthread_mutex_lock(&s->lock);
	s->next_seq = r->seq + 1;
	s->journal_bytes = journal_size(s->journal);
	if (stream && it) {
		it->stream = stream;
		stream->m.item = it;
		stream = NULL;
	}
	plan_apply(s, &plan, it, r, unlinks, &n_unlinks);
	it = NULL;
	pthread_cond_signal(&s->sched_wake);
	pthread_mutex_unlock(&s->lock);
	goto out;

unpin:
	if (new_spool_path && plan.content)
		unlink(new_spool_path);
	pthread_mutex_lock(&s->lock);
	plan_pin(&plan, false);
	plan_unpin_keys(s, &plan);
	pthread_mutex_unlock(&s->lock);
out:
	if (stream) {
		pthread_mutex_lock(&s->lock);
		stream_give_up(s, stream);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->journal_lock);
	spool_unlink(s, unlinks, n_unlinks);
	free(unlinks);
	free(new_spool_path);
	item_free(it);
	plan_free(&plan);
	journal_buf_free(&buf);
	return err;
}

/* Copy a staged file that cannot be hard-linked (another file system). */
static int spool_copy(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, err = 0;

	if (in < 0)
		return errno;
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		err = errno;
		goto done;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				err = w < 0 ? errno : EIO;
				goto done;
			}
			off += w;
		}
	}
done:
	if (out >= 0) {
		close(out);
		if (err)
			unlink(to);
	}
	close(in);
	return err;
}

/* Write spool file name with data (replay of a record that carries its content). */
static int spool_write(struct sync *s, const char *name, const void *data, size_t len)
{
	char *path = path_join(s->spool_dir, name);
	const char *p = data;
	int fd, err = 0;

	if (!path)
		return ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	free(path);
	if (fd < 0)
		return errno;
	while (len && !err) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			err = errno;
		else
			p += w, len -= (size_t)w;
	}
	if (close(fd) < 0 && !err)
		err = errno;
	return err;
}

int sync_put_file(struct sync *s, const char *key, const char *staged_path, const struct store_attr *attr)
{
	return sync_put_file_stream(s, key, staged_path, attr, NULL);
}

/* Give up stream (may be NULL) from outside s->lock. */
static void stream_abandon(struct sync *s, struct sync_stream *stream)
{
	if (!stream)
		return;
	pthread_mutex_lock(&s->lock);
	stream_give_up(s, stream);
	pthread_mutex_unlock(&s->lock);
}

int sync_put_file_stream(struct sync *s, const char *key, const char *staged_path,
			 const struct store_attr *attr, struct sync_stream *stream)
{
	struct journal_record r = {.type = JOURNAL_PUT_FILE, .flags = JOURNAL_HAS_ATTR};
	char name[64], *path = NULL, *inline_data = NULL;
	struct stat st;
	int err = check_key(key), fd = -1;
	ssize_t n;

	if (!err && stream && strcmp(stream->key, key) != 0)
		err = EINVAL;
	if (err) {
		stream_abandon(s, stream);
		return err;
	}
	for (int tries = 0;; tries++) {
		free(path);
		spool_name(s, name, sizeof(name));
		path = path_join(s->spool_dir, name);
		if (!path) {
			stream_abandon(s, stream);
			return ENOMEM;
		}
		if (link(staged_path, path) == 0)
			break;
		err = errno;
		if (err == EEXIST && tries < 100)
			continue;
		if (err == EXDEV || err == EPERM || err == EMLINK || err == EOPNOTSUPP)
			err = spool_copy(staged_path, path);
		if (err) {
			free(path);
			stream_abandon(s, stream);
			return err;
		}
		break;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		err = errno;
	if (!err && (uint64_t)st.st_size <= SYNC_INLINE_MAX) {
		/* small: its content goes into the record, whose fdatasync makes it durable */
		r.len = (size_t)st.st_size;
		if (!(inline_data = malloc(r.len ? r.len : 1)))
			err = ENOMEM;
		else if (r.len && (n = pread(fd, inline_data, r.len, 0)) != (ssize_t)r.len)
			err = n < 0 ? errno : EIO;
		r.data = inline_data;
		r.flags |= JOURNAL_HAS_DATA;
	} else if (!err) {
		if (fsync(fd) < 0)
			err = errno;
		if (!err)
			err = fsync_path(s->spool_dir, true);
	}
	if (fd >= 0)
		close(fd);
	if (err)
		goto fail;
	/* The parts went up from the staged file: the spool must be that very file (a copy may
	 * differ) and not shorter than what the writer reported final. */
	if (stream && (st.st_dev != stream->dev || st.st_ino != stream->ino ||
		       (uint64_t)st.st_size < stream->writer_parts * stream->m.part_size)) {
		log_debug("early upload of '%s' not usable: the spool file is another file", key);
		stream_abandon(s, stream);
		stream = NULL;
	}

	r.key = (char *)key;
	r.spool = name;
	if (attr)
		r.attr = *attr; /* borrowed: item_from_record and journal_encode copy */
	else
		store_attr_init(&r.attr);
	r.attr.size = (uint64_t)st.st_size;
	err = sync_journal_op(s, &r, stream);
	stream = NULL; /* attached or given up */
	if (err)
		goto fail;
	free(inline_data);
	free(path);
	return 0;
fail:
	stream_abandon(s, stream);
	unlink(path);
	free(inline_data);
	free(path);
	return err;
}

int sync_put_mem(struct sync *s, const char *key, const void *data, size_t len, const struct store_attr *attr)
{
	struct journal_record r = {.type = JOURNAL_PUT_MEM, .flags = JOURNAL_HAS_ATTR | JOURNAL_HAS_DATA};
	int err = check_key(key);

	if (err)
		return err;
	if (len > SYNC_MEM_MAX)
		return EFBIG;
	r.key = (char *)key;
	r.data = (void *)(len ? data : "");
	r.len = len;
	if (attr)
		r.attr = *attr;
	else
		store_attr_init(&r.attr);
	r.attr.size = len;
	return sync_journal_op(s, &r, NULL);
}

int sync_remove(struct sync *s, const char *key)
{
	struct journal_record r = {.type = JOURNAL_REMOVE};
	int err = check_key(key);

	if (err)
		return err;
	r.key = (char *)key;
	return sync_journal_op(s, &r, NULL);
}

int sync_rename(struct sync *s, const char *src_key, const char *dst_key)
{
	struct journal_record r = {.type = JOURNAL_RENAME};
	int err = check_key(src_key);

	if (!err)
		err = check_key(dst_key);
	if (err)
		return err;
	if (strcmp(src_key, dst_key) == 0)
		return EINVAL;
	r.key = (char *)src_key;
	r.dst_key = (char *)dst_key;
	return sync_journal_op(s, &r, NULL);
}

int sync_set_attr(struct sync *s, const char *key, const struct store_attr *attr)
{
	struct journal_record r = {.type = JOURNAL_SETATTR, .flags = JOURNAL_HAS_ATTR};
	int err = check_key(key);

	if (err)
		return err;
	if (!attr)
		return EINVAL;
	r.key = (char *)key;
	r.attr = *attr;
	return sync_journal_op(s, &r, NULL);
}

/* Append one bookkeeping record (MPU_STARTED) and return its seq. Takes journal_lock and
 * s->lock; on success calls done(ud, seq) under s->lock so compaction sees the record. */
static int sync_journal_simple(struct sync *s, struct journal_record *r,
			       void (*done)(struct sync *s, void *ud, uint64_t seq), void *ud)
{
	struct journal_buf buf = {0};
	int err;

	pthread_mutex_lock(&s->journal_lock);
	pthread_mutex_lock(&s->lock);
	r->seq = s->next_seq;
	pthread_mutex_unlock(&s->lock);
	r->time_ms = wall_ms();
	err = journal_encode(&buf, r);
	if (!err)
		err = journal_append(s->journal, buf.p, buf.len);
	if (!err) {
		pthread_mutex_lock(&s->lock);
		s->next_seq = r->seq + 1;
		s->journal_bytes = journal_size(s->journal);
		done(s, ud, r->seq);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->journal_lock);
	journal_buf_free(&buf);
	return err;
}

/* ---- commits ---- */

static bool item_committable(const struct sync *s, const struct sync_item *it, int64_t now)
{
	if (it->pinned)
		return false;
	return !it->batch || it->batch->running == 0 || it->urgent || s->draining || s->stopping ||
	       now - it->finished_ms >= SYNC_COMMIT_AGE_MS;
}

static void item_finalize(struct sync *s, struct sync_item *it)
{
	if (!it->skip_upload) {
		for (unsigned i = 0; i < it->n_links; i++)
			if (it->links[i].key && it->links[i].key->committed_seq < it->seq)
				it->links[i].key->committed_seq = it->seq;
	}
	item_detach(s, it);
	item_free(it);
}

/* Write DONE records for finished items (all of them when force) and retire them. Their
 * spool files are deleted before they leave the queue, so a waiter woken by their commit
 * finds the spool clean (a lookup in between gets ENOENT opening one and looks again). */
static void sync_commit(struct sync *s, bool force)
{
	struct journal_buf buf = {0};
	struct sync_item *batch = NULL, **pp;
	size_t n = 0;
	int64_t now = mono_ms();
	int err;

	pthread_mutex_lock(&s->journal_lock);
	pthread_mutex_lock(&s->lock);
	for (pp = &s->finished; *pp;) {
		struct sync_item *it = *pp;
		if (force ? !it->pinned : item_committable(s, it, now)) {
			*pp = it->next_work;
			it->next_work = batch;
			batch = it;
			n++;
		} else {
			pp = &it->next_work;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!n)
		goto out;

	for (struct sync_item *it = batch; it; it = it->next_work)
		for (size_t c = 0; c < it->n_covers; c++) {
			struct journal_record done = {.type = JOURNAL_DONE, .ref = it->covers[c],
						      .time_ms = wall_ms()};
			journal_encode(&buf, &done);
		}
	err = buf.err;
	if (!err) /* may use the journal's reserve: a commit frees spool space on a full disk */
		err = journal_append_reserved(s->journal, buf.p, buf.len);
	if (!err) {
		/* Finished items are immutable and only we retire them (journal_lock). */
		for (struct sync_item *it = batch; it; it = it->next_work) {
			if (!it->spool)
				continue;
			char *p = path_join(s->spool_dir, it->spool);
			if (p && unlink(p) < 0 && errno != ENOENT)
				log_warn("cannot delete spool file '%s': %s", p, strerror(errno));
			free(p);
		}
	}

	pthread_mutex_lock(&s->lock);
	if (err) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot write journal '%s': %s", s->journal_path,
			 strerror(err));
		if (strcmp(msg, s->stats.last_error) != 0)
			log_error("%s (uploads done stay queued until it can be written)", msg);
		sync_set_error(s, msg);
		s->commit_retry_ms = now + SYNC_COMMIT_AGE_MS;
		while (batch) { /* back to the finished list */
			struct sync_item *it = batch;
			batch = it->next_work;
			it->next_work = s->finished;
			s->finished = it;
		}
	} else {
		s->journal_bytes = journal_size(s->journal);
		while (batch) {
			struct sync_item *it = batch;
			batch = it->next_work;
			item_finalize(s, it);
		}
		pthread_cond_broadcast(&s->progress);
		pthread_cond_signal(&s->sched_wake);
	}
	pthread_mutex_unlock(&s->lock);
out:
	pthread_mutex_unlock(&s->journal_lock);
	journal_buf_free(&buf);
}

/* ---- compaction ---- */

static int item_seq_cmp(const void *a, const void *b)
{
	const struct sync_item *x = *(struct sync_item *const *)a, *y = *(struct sync_item *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Rewrite the journal with one record per live item. */
static int sync_compact(struct sync *s)
{
	struct journal_buf buf = {0};
	struct sync_item **items = NULL;
	size_t n = 0;
	int err = 0;

	pthread_mutex_lock(&s->journal_lock);
	pthread_mutex_lock(&s->lock);
	if (s->n_items && !(items = malloc(s->n_items * sizeof(*items))))
		err = ENOMEM;
	for (struct sync_item *it = s->all_head; it && !err; it = it->all_next)
		items[n++] = it;
	if (!err) {
		if (n)
			qsort(items, n, sizeof(*items), item_seq_cmp);
		for (size_t i = 0; i < n; i++) {
			struct journal_record r;
			record_of_item(items[i], &r);
			journal_encode(&buf, &r);
			if (items[i]->kind != ITEM_ABORT && items[i]->upload_id) {
				struct journal_record m = {.type = JOURNAL_MPU_STARTED,
							   .seq = items[i]->mpu_seq,
							   .time_ms = items[i]->first_ms,
							   .ref = items[i]->seq,
							   .key = items[i]->key,
							   .upload_id = items[i]->upload_id};
				journal_encode(&buf, &m);
			}
		}
		for (struct sync_stream *st = s->streams; st; st = st->next_live) {
			if (!st->upload_id || !st->mpu_seq)
				continue;
			struct journal_record m = {.type = JOURNAL_MPU_STARTED, .seq = st->mpu_seq,
						   .time_ms = wall_ms(), .key = st->key,
						   .upload_id = st->upload_id};
			journal_encode(&buf, &m);
		}
		err = buf.err;
	}
	pthread_mutex_unlock(&s->lock);
	/* The rewritten records carry no inline copies: put those spool files on disk first.
	 * The journal lock keeps every item alive meanwhile (commits take it). */
	for (size_t i = 0; i < n && !err; i++) {
		if (!items[i]->spool_unsynced || !items[i]->spool)
			continue;
		char *p = path_join(s->spool_dir, items[i]->spool);
		err = p ? fsync_path(p, false) : ENOMEM;
		free(p);
		if (err == ENOENT) /* uploaded and deleted: its record is not needed either */
			err = 0;
	}
	if (!err)
		err = fsync_path(s->spool_dir, true);
	if (!err)
		err = journal_rewrite(s->journal, buf.p, buf.len);
	pthread_mutex_lock(&s->lock);
	s->journal_bytes = journal_size(s->journal);
	if (!err)
		s->compacted_bytes = s->journal_bytes;
	for (size_t i = 0; i < n && !err; i++)
		items[i]->spool_unsynced = false;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->journal_lock);
	if (err)
		log_warn("cannot compact journal '%s': %s", s->journal_path, strerror(err));
	else
		log_debug("compacted journal '%s': %zu live records, %llu bytes", s->journal_path, n,
			  (unsigned long long)buf.len);
	free(items);
	journal_buf_free(&buf);
	return err;
}

static bool sync_needs_compaction(const struct sync *s, int64_t now)
{
	uint64_t min = s->cfg.journal_compact_bytes ? s->cfg.journal_compact_bytes : SYNC_COMPACT_MIN;
	return s->journal_bytes > min &&
	       s->journal_bytes > SYNC_COMPACT_FACTOR * s->compacted_bytes &&
	       now >= s->compact_retry_ms;
}

/* ---- running one item (a worker, without s->lock) ---- */

static void format_store_error(char *msg, size_t len, const char *what, const char *key, int err)
{
	char detail[200], shortened[80], klen_note[32] = "";
	size_t klen = strlen(key);
	if (store_last_error()->err == err)
		store_format_error(detail, sizeof(detail));
	else
		snprintf(detail, sizeof(detail), "%s", strerror(err));
	if (klen > 80) { /* keep room for the detail: the start and the end of a long key */
		snprintf(shortened, sizeof(shortened), "%.40s...%s", key, key + klen - 30);
		snprintf(klen_note, sizeof(klen_note), " (%zu bytes)", klen);
		key = shortened;
	}
	int n = snprintf(msg, len, "%s '%s'%s: ", what, key, klen_note);
	if (n < 0 || (size_t)n >= len)
		return;
	size_t dlen = strlen(detail);
	if (dlen > len - (size_t)n - 1)
		dlen = len - (size_t)n - 1; /* cut at the end of the detail */
	memcpy(msg + n, detail, dlen);
	msg[(size_t)n + dlen] = '\0';
}

static void sync_mpu_started(struct sync *s, void *ud, uint64_t seq)
{
	struct sync_mpu *m = ud;
	(void)s;
	m->item->mpu_seq = seq;
	m->item->upload_id = strdup(m->upload_id); /* NULL on ENOMEM: compaction omits it */
}

/* Upload one part of len bytes; called without s->lock. */
static int mpu_do_part(struct sync *s, struct sync_mpu *m, unsigned idx, uint64_t len, char *msg,
		       size_t msglen)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	uint64_t off = (uint64_t)idx * m->part_size;
	/* no MD5 here: the store checks the part's ETag against the bytes it sent */
	struct store_body body = {.fd = m->fd, .off = (off_t)off, .len = len};
	int err = s->dest->ops->mpu_part(s->dest, m->key, m->upload_id, (int)idx + 1, &body, &io,
					 m->parts[idx].etag);
	if (err) {
		format_store_error(msg, msglen, "upload of a part of", m->key, err);
		return err;
	}
	m->parts[idx].number = (int)idx + 1;
	return 0;
}

static void mpu_unlist(struct sync *s, struct sync_mpu *m)
{
	if (!m->listed)
		return;
	struct sync_mpu **pp = &s->mpus;
	while (*pp != m)
		pp = &(*pp)->next;
	*pp = m->next;
	m->listed = false;
}

/* Take the next part of m and run it; s->lock held on entry and exit. */
static void mpu_run_one(struct sync *s, struct sync_mpu *m)
{
	char msg[256];
	unsigned idx = m->next_part++;
	uint64_t off = (uint64_t)idx * m->part_size;
	uint64_t len = m->size - off < m->part_size ? m->size - off : m->part_size;
	if (m->next_part == m->n_parts)
		mpu_unlist(s, m);
	m->running++;
	pthread_mutex_unlock(&s->lock);
	int err = mpu_do_part(s, m, idx, len, msg, sizeof(msg));
	pthread_mutex_lock(&s->lock);
	m->running--;
	if (err && !m->err) {
		m->err = err;
		snprintf(m->msg, sizeof(m->msg), "%s", msg);
		mpu_unlist(s, m);
	} else if (!err && m->item) {
		m->item->bytes_done += len;
	}
	pthread_cond_broadcast(&s->parts_done);
}

/* Queue an ABORT item (from item_from_record) to run at once. Under s->lock. */
static void queue_abort(struct sync *s, struct sync_item *ab)
{
	ab->state = ITEM_QUEUED;
	ab->ready_ms = ab->retry_ms = mono_ms();
	all_insert_sorted(s, ab);
	s->n_items++;
	item_consider(s, ab);
	pthread_cond_signal(&s->sched_wake);
}

/* Abort upload_id (recorded as seq) after a failed multipart upload; when that fails too,
 * a keyless ABORT item keeps trying (and keeps the record live). */
static void mpu_abandon(struct sync *s, struct sync_item *it, const char *key, const char *upload_id,
			uint64_t seq)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	int err = s->dest->ops->mpu_abort(s->dest, key, upload_id, &io);
	struct sync_item *ab = NULL;

	if (err && err != ENOENT) {
		struct journal_record r = {.type = JOURNAL_MPU_STARTED, .seq = seq,
					   .time_ms = wall_ms(), .key = (char *)key,
					   .upload_id = (char *)upload_id};
		ab = item_from_record(&r);
	}
	pthread_mutex_lock(&s->lock);
	free(it->upload_id);
	it->upload_id = NULL;
	if (!err || err == ENOENT || !ab) {
		if (covers_add(it, seq))
			log_warn("multipart upload '%s' of '%s' stays recorded (out of memory)",
				 upload_id, key);
	} else {
		queue_abort(s, ab);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- early uploads (streams) ---- */

static bool stream_idle(const struct sync_stream *st)
{
	return st->m.running == 0 && st->m.helpers == 0 && !st->creating;
}

/* List it for the workers when it has work: to be created, or parts the writer is past. */
static void stream_relist(struct sync *s, struct sync_stream *st)
{
	struct sync_mpu *m = &st->m;
	bool want = !m->err && !st->given_up && !st->adopted &&
		    (st->upload_id ? m->next_part < m->n_parts : !st->creating);

	if (want && !m->listed) {
		m->next = s->mpus;
		s->mpus = m;
		m->listed = true;
		pthread_cond_broadcast(&s->work_ready);
	} else if (!want) {
		mpu_unlist(s, m);
	}
}

static void stream_free(struct sync *s, struct sync_stream *st)
{
	struct sync_stream **pp = &s->streams;
	while (*pp && *pp != st)
		pp = &(*pp)->next_live;
	if (*pp)
		*pp = st->next_live;
	mpu_unlist(s, &st->m);
	if (st->m.fd >= 0)
		close(st->m.fd);
	free(st->m.parts);
	free(st->key);
	free(st->upload_id);
	store_attr_free(&st->attr);
	free(st);
}

/* Once given up and idle: queue the abort of its upload and free it. */
static void stream_finish(struct sync *s, struct sync_stream *st)
{
	if (!st->given_up || !stream_idle(st))
		return;
	if (st->upload_id && st->mpu_seq) {
		struct journal_record r = {.type = JOURNAL_MPU_STARTED, .seq = st->mpu_seq,
					   .time_ms = wall_ms(), .key = st->key,
					   .upload_id = st->upload_id};
		struct sync_item *ab = item_from_record(&r);
		if (ab)
			queue_abort(s, ab);
		else
			log_warn("early upload '%s' of '%s' stays recorded until the next mount "
				 "aborts it (out of memory)", st->upload_id, st->key);
	}
	log_debug("early upload of '%s' given up after %u parts", st->key, st->m.next_part);
	stream_free(s, st);
}

/* Under s->lock: never complete it; abort it once no worker is in it. */
static void stream_give_up(struct sync *s, struct sync_stream *st)
{
	st->given_up = true;
	st->m.item = NULL;
	mpu_unlist(s, &st->m);
	stream_finish(s, st);
}

struct stream_created {
	struct sync_stream *st;
	char *upload_id;
};

/* Under s->lock with the record written: from now on compaction keeps the record. */
static void sync_stream_created(struct sync *s, void *ud, uint64_t seq)
{
	struct stream_created *c = ud;
	(void)s;
	c->st->mpu_seq = seq;
	c->st->upload_id = c->upload_id;
	c->st->m.upload_id = c->upload_id;
	c->upload_id = NULL;
}

/* A worker creates its multipart upload and journals it; s->lock held on entry and exit. */
static void stream_create(struct sync *s, struct sync_stream *st)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	char *upload_id = NULL, msg[256] = "";
	int err;

	st->creating = true;
	mpu_unlist(s, &st->m);
	pthread_mutex_unlock(&s->lock);
	err = s->dest->ops->mpu_create(s->dest, st->key, &st->attr, &io, &upload_id);
	if (err) {
		format_store_error(msg, sizeof(msg), "cannot start early upload of", st->key, err);
	} else {
		struct journal_record r = {.type = JOURNAL_MPU_STARTED, .key = st->key,
					   .upload_id = upload_id};
		struct stream_created c = {st, upload_id};
		err = sync_journal_simple(s, &r, sync_stream_created, &c);
		if (err) {
			snprintf(msg, sizeof(msg), "cannot write journal '%s': %s", s->journal_path,
				 strerror(err));
			s->dest->ops->mpu_abort(s->dest, st->key, upload_id, &io);
			free(upload_id);
		}
	}
	pthread_mutex_lock(&s->lock);
	st->creating = false;
	if (err) {
		st->m.err = err;
		snprintf(st->m.msg, sizeof(st->m.msg), "%s", msg);
		log_debug("%s (the upload starts at close instead)", msg);
	}
}

struct sync_stream *sync_stream_start(struct sync *s, const char *key, int fd,
				      const struct store_attr *attr)
{
	struct sync_stream *st;
	struct stat sb;

	if (check_key(key) || fd < 0)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	store_attr_init(&st->attr);
	st->s = s;
	st->m.fd = -1;
	st->m.stream = st;
	st->m.part_size = s->cfg.part_size;
	st->m.parts = calloc(SYNC_MAX_PARTS, sizeof(*st->m.parts));
	st->key = strdup(key);
	st->m.key = st->key;
	if (!st->m.parts || !st->key || store_attr_copy(&st->attr, attr))
		goto fail;
	st->m.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (st->m.fd < 0 || fstat(st->m.fd, &sb) < 0)
		goto fail;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	pthread_mutex_lock(&s->lock);
	if (!s->started || s->stopping || s->draining) {
		pthread_mutex_unlock(&s->lock);
		goto fail;
	}
	st->next_live = s->streams;
	s->streams = st;
	stream_relist(s, st);
	pthread_mutex_unlock(&s->lock);
	log_debug("early upload of '%s' starts", key);
	return st;
fail:
	if (st->m.fd >= 0)
		close(st->m.fd);
	free(st->m.parts);
	free(st->key);
	store_attr_free(&st->attr);
	free(st);
	return NULL;
}

void sync_stream_grow(struct sync_stream *st, uint64_t size)
{
	struct sync *s = st->s;
	uint64_t parts = size / st->m.part_size;

	if (parts <= st->writer_parts)
		return;
	st->writer_parts = parts;
	pthread_mutex_lock(&s->lock);
	if (parts >= SYNC_MAX_PARTS || size > SYNC_STREAM_MAX) {
		/* the put uploads it with larger parts, or with its final metadata from the start
		 * (a copy onto itself, which rewrites metadata, is limited to 5 GiB) */
		if (!st->m.err) {
			st->m.err = EFBIG;
			snprintf(st->m.msg, sizeof(st->m.msg), "'%s' is too large for an early upload",
				 st->key);
		}
	} else {
		st->m.n_parts = (unsigned)parts;
		st->m.size = parts * st->m.part_size;
	}
	stream_relist(s, st);
	pthread_mutex_unlock(&s->lock);
}

void sync_stream_abort(struct sync_stream *st)
{
	stream_abandon(st->s, st);
}

/* The put item it takes over: when its spool (fd, size bytes) is the file the stream read,
 * move the upload and its finished parts into m and return its upload id (the item records
 * it; meta gets the metadata it was started with); else give it up and return NULL. Waits
 * for the stream's parts in flight. */
static char *stream_adopt(struct sync *s, struct sync_stream *st, struct sync_item *it, int fd,
			  struct sync_mpu *m, uint64_t *mpu_seq, struct store_attr *meta)
{
	struct stat sb;
	bool same = fstat(fd, &sb) == 0 && sb.st_dev == st->dev && sb.st_ino == st->ino;
	char *upload_id = NULL;

	pthread_mutex_lock(&s->lock);
	st->adopted = true;
	mpu_unlist(s, &st->m);
	while (!stream_idle(st))
		pthread_cond_wait(&s->parts_done, &s->lock);
	unsigned done = st->m.next_part;
	if (same && !st->m.err && st->upload_id && st->mpu_seq && m->part_size == st->m.part_size &&
	    done <= m->n_parts && store_attr_copy(meta, &st->attr) == 0) {
		memcpy(m->parts, st->m.parts, done * sizeof(*m->parts));
		m->next_part = done;
		upload_id = st->upload_id;
		st->upload_id = NULL;
		*mpu_seq = st->mpu_seq;
		free(it->upload_id);
		it->upload_id = strdup(upload_id); /* NULL on ENOMEM: compaction omits it */
		it->mpu_seq = st->mpu_seq;
		it->bytes_done = (uint64_t)done * m->part_size;
		log_debug("'%s': continuing its early upload after %u parts", it->key, done);
		stream_free(s, st);
	} else {
		if (st->m.err)
			log_debug("early upload of '%s' failed: %s", it->key, st->m.msg);
		st->adopted = false;
		stream_give_up(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return upload_id;
}

/* Whether b's metadata is what a was stored with (what an object's headers carry). */
static bool attr_same_meta(const struct store_attr *a, const struct store_attr *b)
{
	unsigned mask = STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID | STORE_HAS_MTIME |
			STORE_HAS_CTIME | STORE_HAS_ATIME;
	if ((a->has & mask) != (b->has & mask) || strcmp(a->content_type, b->content_type) != 0 ||
	    a->n_extra != b->n_extra)
		return false;
	if ((a->has & STORE_HAS_MODE) && a->mode != b->mode)
		return false;
	if ((a->has & STORE_HAS_UID) && a->uid != b->uid)
		return false;
	if ((a->has & STORE_HAS_GID) && a->gid != b->gid)
		return false;
	if ((a->has & STORE_HAS_MTIME) && (a->mtime.tv_sec != b->mtime.tv_sec ||
					   a->mtime.tv_nsec != b->mtime.tv_nsec))
		return false;
	if ((a->has & STORE_HAS_CTIME) && (a->ctime.tv_sec != b->ctime.tv_sec ||
					   a->ctime.tv_nsec != b->ctime.tv_nsec))
		return false;
	if ((a->has & STORE_HAS_ATIME) && (a->atime.tv_sec != b->atime.tv_sec ||
					   a->atime.tv_nsec != b->atime.tv_nsec))
		return false;
	for (size_t i = 0; i < a->n_extra; i++)
		if (strcmp(a->extra[i].name, b->extra[i].name) != 0 ||
		    strcmp(a->extra[i].value, b->extra[i].value) != 0)
			return false;
	return true;
}

/* Upload fd (size bytes) as a multipart upload, continuing stream (may be NULL; consumed)
 * when it read this very file. */
static int exec_multipart(struct sync *s, struct sync_item *it, int fd, uint64_t size,
			  struct sync_stream *stream, char *msg, size_t msglen)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	struct sync_mpu m = {.item = it, .key = it->key, .fd = fd, .size = size};
	struct store_attr started_meta;
	char *upload_id = NULL, etag[80] = "";
	uint64_t mpu_seq = 0;
	bool adopted = false;
	int err;

	store_attr_init(&started_meta);

	m.part_size = s->cfg.part_size ? s->cfg.part_size : (8u << 20);
	if (size / m.part_size >= SYNC_MAX_PARTS) /* keep within 10000 parts, whole MiB */
		m.part_size = ((size / (SYNC_MAX_PARTS - 1)) | ((1u << 20) - 1)) + 1;
	m.n_parts = (unsigned)((size + m.part_size - 1) / m.part_size);
	if (m.n_parts == 0)
		m.n_parts = 1;
	m.parts = calloc(m.n_parts, sizeof(*m.parts));
	if (!m.parts) {
		stream_abandon(s, stream);
		return ENOMEM;
	}
	if (stream)
		upload_id = stream_adopt(s, stream, it, fd, &m, &mpu_seq, &started_meta);
	if (upload_id) {
		m.upload_id = upload_id;
		adopted = true;
		goto parts;
	}

	err = s->dest->ops->mpu_create(s->dest, it->key, &it->attr, &io, &upload_id);
	if (err) {
		format_store_error(msg, msglen, "cannot start multipart upload of", it->key, err);
		goto out;
	}
	m.upload_id = upload_id;
	struct journal_record r = {.type = JOURNAL_MPU_STARTED, .ref = it->seq, .key = it->key,
				   .upload_id = upload_id};
	err = sync_journal_simple(s, &r, sync_mpu_started, &m);
	if (err) {
		snprintf(msg, msglen, "cannot write journal '%s': %s", s->journal_path, strerror(err));
		s->dest->ops->mpu_abort(s->dest, it->key, upload_id, &io);
		goto out;
	}
	mpu_seq = r.seq;
	pthread_mutex_lock(&s->lock);
	it->bytes_done = 0;
	pthread_mutex_unlock(&s->lock);

parts:
	pthread_mutex_lock(&s->lock);
	m.next = s->mpus;
	s->mpus = &m;
	m.listed = true;
	pthread_cond_broadcast(&s->work_ready);
	for (;;) {
		if (!m.err && m.next_part < m.n_parts && !s->stopping)
			mpu_run_one(s, &m);
		else if (m.running == 0 && m.helpers == 0)
			break;
		else
			pthread_cond_wait(&s->parts_done, &s->lock);
	}
	mpu_unlist(s, &m);
	if (!m.err && m.next_part < m.n_parts) /* stopping */
		m.err = ECANCELED;
	pthread_mutex_unlock(&s->lock);

	err = m.err;
	if (err) {
		snprintf(msg, msglen, "%s", m.msg[0] ? m.msg : strerror(err));
		if (err == ECANCELED && __atomic_load_n(&s->cancel, __ATOMIC_ACQUIRE))
			goto out; /* stopping: the journal keeps it for the next mount to abort */
		mpu_abandon(s, it, it->key, upload_id, mpu_seq);
		goto out;
	}
	err = s->dest->ops->mpu_complete(s->dest, it->key, upload_id, m.parts, m.n_parts, &io, etag);
	if (!err && strchr(etag, '-')) {
		struct crypto_md5_ctx *ctx = crypto_md5_create();
		unsigned char sum[CRYPTO_MD5_LEN], md5[CRYPTO_MD5_LEN];
		char want[2 * CRYPTO_MD5_LEN + 16];
		if (ctx) {
			for (unsigned i = 0; i < m.n_parts; i++) {
				/* part ETags were checked against their MD5 when they were MD5s */
				if (!crypto_is_md5_hex(m.parts[i].etag))
					goto skip_check;
				for (int b = 0; b < CRYPTO_MD5_LEN; b++)
					sscanf(m.parts[i].etag + 2 * b, "%2hhx", &md5[b]);
				crypto_md5_update(ctx, md5, sizeof(md5));
			}
			crypto_md5_final(ctx, sum);
			crypto_hex(sum, sizeof(sum), want);
			snprintf(want + 2 * CRYPTO_MD5_LEN, 16, "-%u", m.n_parts);
			if (strcasecmp(etag, want) != 0) {
				snprintf(msg, msglen,
					 "multipart upload of '%s': the server's ETag %s is not %s",
					 it->key, etag, want);
				err = EBADMSG;
			}
skip_check:
			crypto_md5_destroy(ctx);
		}
		if (err) {
			/* The object is complete but wrong: upload it again. */
			pthread_mutex_lock(&s->lock);
			covers_add(it, mpu_seq);
			free(it->upload_id);
			it->upload_id = NULL;
			pthread_mutex_unlock(&s->lock);
			goto out;
		}
	}
	if (err) {
		format_store_error(msg, msglen, "cannot complete multipart upload of", it->key, err);
		if (err == ECANCELED && __atomic_load_n(&s->cancel, __ATOMIC_ACQUIRE))
			goto out;
		mpu_abandon(s, it, it->key, upload_id, mpu_seq);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	if (covers_add(it, mpu_seq) == 0) {
		free(it->upload_id);
		it->upload_id = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	/* An early upload was started with the metadata of its first megabytes (mtime...). */
	if (adopted && !attr_same_meta(&started_meta, &it->attr)) {
		err = s->dest->ops->copy(s->dest, it->key, it->key, &it->attr, &io);
		if (err)
			format_store_error(msg, msglen, "cannot update metadata of", it->key, err);
	}
out:
	store_attr_free(&started_meta);
	free(upload_id);
	free(m.parts);
	return err;
}

/* Write the item's content (spool file or memory) to key. */
static int exec_put(struct sync *s, struct sync_item *it, char *msg, size_t msglen, bool *lost)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	unsigned char md5[CRYPTO_MD5_LEN];
	char etag[80] = "", hex[2 * CRYPTO_MD5_LEN + 1];
	struct store_body body = {.fd = -1, .md5 = md5};
	struct sync_stream *stream;
	int fd = -1, err = 0;

	pthread_mutex_lock(&s->lock);
	stream = it->stream;
	it->stream = NULL;
	if (stream)
		stream->m.item = NULL;
	pthread_mutex_unlock(&s->lock);
	if (it->spool) {
		char *path = path_join(s->spool_dir, it->spool);
		struct stat st;
		if (!path)
			return ENOMEM;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			err = errno;
			snprintf(msg, msglen, "cannot open spool file '%s' of '%s': %s", path, it->key,
				 strerror(err));
			*lost = err == ENOENT;
			free(path);
			goto out;
		}
		free(path);
		if ((uint64_t)st.st_size >= s->cfg.multipart_threshold && st.st_size > 0) {
			err = exec_multipart(s, it, fd, (uint64_t)st.st_size, stream, msg, msglen);
			stream = NULL;
			goto out;
		}
		err = crypto_md5_fd(fd, 0, (uint64_t)st.st_size, md5);
		if (err) {
			snprintf(msg, msglen, "cannot read spool file of '%s': %s", it->key, strerror(err));
			goto out;
		}
		body.fd = fd;
		body.len = (uint64_t)st.st_size;
	} else {
		crypto_md5(it->data, it->len, md5);
		body.mem = it->data;
		body.len = it->len;
	}
	err = s->dest->ops->put(s->dest, it->key, &body, &it->attr, &io, etag);
	if (err) {
		format_store_error(msg, msglen, "upload of", it->key, err);
		goto out;
	}
	crypto_hex(md5, sizeof(md5), hex);
	if (crypto_is_md5_hex(etag) && strcasecmp(etag, hex) != 0) {
		snprintf(msg, msglen, "upload of '%s': the server's ETag %s is not the MD5 %s", it->key,
			 etag, hex);
		err = EBADMSG;
	}
out:
	stream_abandon(s, stream);
	if (fd >= 0)
		close(fd);
	return err;
}

/* Run one item against the destination. 0 or errno with msg; *dropped when the error is
 * permanent (the item is committed anyway, with an error logged): a lost spool file, a
 * rename or set_attr whose source is gone, a key the destination cannot hold
 * (ENAMETOOLONG: retrying could only block the queue for ever). */
static int sync_exec(struct sync *s, struct sync_item *it, char *msg, size_t msglen, bool *dropped)
{
	const struct store_io io = {STORE_BACKGROUND, &s->cancel};
	int err = 0;

	*dropped = false;
	switch (it->kind) {
	case ITEM_PUT_FILE:
	case ITEM_PUT_MEM:
		err = exec_put(s, it, msg, msglen, dropped);
		if (err == ENAMETOOLONG)
			*dropped = true;
		return err;
	case ITEM_REMOVE:
		err = s->dest->ops->remove(s->dest, it->key, &io);
		if (err)
			format_store_error(msg, msglen, "cannot delete", it->key, err);
		return err;
	case ITEM_SETATTR:
		err = s->dest->ops->copy(s->dest, it->key, it->key, &it->attr, &io);
		if (err == ENOENT) {
			*dropped = true;
			snprintf(msg, msglen, "cannot update metadata of '%s': it does not exist at the destination",
				 it->key);
		} else if (err) {
			format_store_error(msg, msglen, "cannot update metadata of", it->key, err);
		}
		return err;
	case ITEM_RENAME:
		if (!it->put_done) {
			if (it->spool || it->has_data) {
				err = exec_put(s, it, msg, msglen, dropped);
			} else {
				err = s->dest->ops->copy(s->dest, it->src_key, it->key,
							 it->attr_replace ? &it->attr : NULL, &io);
				if (err == ENOENT) {
					*dropped = true;
					snprintf(msg, msglen,
						 "cannot rename '%s' to '%s': the source does not exist at the destination",
						 it->src_key, it->key);
				} else if (err) {
					format_store_error(msg, msglen, "cannot copy to", it->key, err);
				}
			}
			if (err == ENAMETOOLONG)
				*dropped = true; /* the source stays where it is */
			if (err)
				return err;
			it->put_done = true;
		}
		err = s->dest->ops->remove(s->dest, it->src_key, &io);
		if (err)
			format_store_error(msg, msglen, "cannot delete renamed", it->src_key, err);
		return err;
	case ITEM_ABORT:
		err = s->dest->ops->mpu_abort(s->dest, it->key, it->upload_id, &io);
		if (err == ENOENT)
			err = 0;
		if (err)
			format_store_error(msg, msglen, "cannot abort multipart upload of", it->key, err);
		return err;
	}
	return EINVAL;
}

/* The chain successor replaces everything it would write: no need to upload it. */
static struct sync_item *item_superseding_successor(struct sync_item *it)
{
	if (!item_single_key(it) || it->n_links != 1 || !it->links[0].next)
		return NULL;
	struct sync_item *n = it->links[0].next->item;
	const char *key = it->key;
	switch (n->kind) {
	case ITEM_PUT_FILE:
	case ITEM_PUT_MEM:
	case ITEM_REMOVE:
		return n;
	case ITEM_RENAME:
		if (strcmp(n->key, key) == 0 || n->spool || n->has_data)
			return n;
		return NULL;
	default:
		return NULL;
	}
}

static int64_t backoff_ms(struct sync *s, unsigned attempts)
{
	int64_t d = s->cfg.retry_base_ms > 0 ? s->cfg.retry_base_ms : 1;
	int64_t max = s->cfg.retry_max_ms > d ? s->cfg.retry_max_ms : d;
	for (unsigned i = 1; i < attempts && d < max; i++)
		d *= 2;
	if (d > max)
		d = max;
	/* equal jitter: at least half the delay */
	return d / 2 + (int64_t)(rand_r(&s->rand_state) % (unsigned)(d / 2 + 1));
}

/* The worker is done with it; under s->lock. */
static void sync_item_done(struct sync *s, struct sync_item *it, int err, bool dropped, const char *msg)
{
	int64_t now = mono_ms();

	s->stats.in_flight--;
	if (it->batch)
		it->batch->running--;
	if (!err || dropped) {
		if (dropped) {
			log_error("%s: dropped", msg);
			sync_set_error(s, msg);
			s->stats.dropped++;
		} else if (it->kind == ITEM_PUT_FILE || it->kind == ITEM_PUT_MEM ||
			   (it->kind == ITEM_RENAME && (it->spool || it->has_data))) {
			s->stats.uploaded_files++;
			s->stats.uploaded_bytes += it->bytes;
		} else {
			s->stats.ops_done++;
		}
		it->state = ITEM_FINISHED;
		it->finished_ms = now;
		it->next_work = s->finished;
		s->finished = it;
	} else if (s->stopping && err == ECANCELED) {
		it->state = ITEM_QUEUED;
		batch_unref(it);
	} else {
		struct sync_item *succ;
		s->stats.failed_attempts++;
		if (it->attempts++ == 0)
			s->stats.retrying++;
		it->last_err = err;
		sync_set_error(s, msg);
		if ((it->attempts & (it->attempts - 1)) == 0) /* 1, 2, 4, 8... */
			log_warn("%s (attempt %u, retrying)", msg, it->attempts);
		else
			log_debug("%s (attempt %u, retrying)", msg, it->attempts);
		batch_unref(it);
		if ((succ = item_superseding_successor(it))) {
			/* Its successor writes the key anyway: commit this one without upload,
			 * and let the successor answer for the records it covered. */
			it->skip_upload = true;
			it->state = ITEM_FINISHED;
			it->finished_ms = now;
			it->next_work = s->finished;
			s->finished = it;
			if (it->min_seq < succ->min_seq) {
				succ->min_seq = it->min_seq;
				all_remove(s, succ);
				all_insert_before(s, succ, it);
				if (it->urgent)
					mark_urgent(s, succ);
			}
		} else {
			it->state = ITEM_QUEUED;
			it->retry_ms = now + backoff_ms(s, it->attempts);
			item_consider(s, it);
		}
	}
	pthread_cond_signal(&s->sched_wake);
	pthread_cond_broadcast(&s->progress);
}

static void block_signals(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

static void *sync_worker_main(void *arg)
{
	struct sync *s = arg;
	char msg[256];

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		/* Help with parts of a multipart upload, but one upload gets at most half
		 * the workers (its owner included, at least one helper): a stalled large
		 * upload must not hold up every small file behind it. */
		unsigned half = s->cfg.upload_workers / 2;
		unsigned cap = half > 2 ? half - 1 : 1;
		struct sync_mpu *m = s->mpus;
		while (m && m->helpers >= cap)
			m = m->next;
		if (m) {
			struct sync_stream *st = m->stream;
			m->helpers++;
			if (st && !st->upload_id)
				stream_create(s, st);
			else
				mpu_run_one(s, m);
			m->helpers--;
			pthread_cond_broadcast(&s->parts_done); /* its owner may wait for helpers */
			if (st) { /* still under s->lock: nobody freed it */
				stream_relist(s, st);
				stream_finish(s, st);
			}
			continue;
		}
		struct sync_item *it = s->work_head;
		if (!it) {
			pthread_cond_wait(&s->work_ready, &s->lock);
			continue;
		}
		s->work_head = it->next_work;
		if (!s->work_head) {
			s->work_tail = NULL;
			pthread_cond_signal(&s->sched_wake); /* room for the next batch */
		}
		it->next_work = NULL;
		it->state = ITEM_RUNNING;
		s->stats.in_flight++;
		pthread_mutex_unlock(&s->lock);

		bool dropped = false;
		msg[0] = '\0';
		int err = sync_exec(s, it, msg, sizeof(msg), &dropped);

		pthread_mutex_lock(&s->lock);
		sync_item_done(s, it, err, dropped, msg);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- the scheduler ---- */

struct eligible_count {
	unsigned files;
	uint64_t bytes;
	bool urgent;
};

/* Count heap items due by now (up to the batch limits). */
static void heap_count_due(const struct sync *s, size_t i, int64_t now, struct eligible_count *c)
{
	if (i >= s->heap_len || c->files >= s->cfg.batch_files || c->bytes >= s->cfg.batch_bytes)
		return;
	const struct sync_item *it = s->heap[i];
	if (item_due(it) > now)
		return;
	if (!it->pinned) {
		c->files++;
		c->bytes += it->bytes;
		c->urgent |= it->urgent;
	}
	heap_count_due(s, 2 * i + 1, now, c);
	heap_count_due(s, 2 * i + 2, now, c);
}

/* Close a batch when it is due and hand it to the workers. Returns when to look again. */
static int64_t sync_dispatch(struct sync *s, int64_t now)
{
	struct eligible_count c = {0};
	struct sync_item *pinned = NULL;

	if (!s->heap_len || s->work_head)
		return FOREVER; /* nothing to do, or the last batch is not taken yet */
	int64_t top_due = item_due(s->heap[0]);
	if (top_due > now)
		return top_due;
	heap_count_due(s, 0, now, &c);
	if (c.files == 0)
		return now + 50; /* only pinned items: a journal operation finishes soon */
	/* Batches form while the workers are busy; idle workers take what is due after a short
	 * linger (fewer, larger commits), so files written one after the other upload while
	 * the writer goes on (cp -r) instead of after batch_files or batch_time. */
	bool idle = s->stats.in_flight < s->n_workers;
	bool close = c.files >= s->cfg.batch_files || c.bytes >= s->cfg.batch_bytes ||
		     now >= top_due + s->cfg.batch_ms || c.urgent || s->draining ||
		     (idle && now >= top_due + SYNC_IDLE_LINGER_MS);
	if (!close)
		return idle ? top_due + SYNC_IDLE_LINGER_MS : top_due + s->cfg.batch_ms;

	struct sync_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return now + 100;
	unsigned files = 0;
	uint64_t bytes = 0;
	while (s->heap_len && item_due(s->heap[0]) <= now && files < s->cfg.batch_files) {
		struct sync_item *it = s->heap[0];
		if (files && bytes + it->bytes > s->cfg.batch_bytes)
			break;
		heap_remove(s, it);
		if (it->pinned) {
			it->next_work = pinned;
			pinned = it;
			continue;
		}
		it->state = ITEM_BATCHED;
		it->batch = b;
		b->refs++;
		b->running++;
		files++;
		bytes += it->bytes;
		it->next_work = NULL;
		if (s->work_tail)
			s->work_tail->next_work = it;
		else
			s->work_head = it;
		s->work_tail = it;
	}
	while (pinned) {
		struct sync_item *it = pinned;
		pinned = it->next_work;
		it->next_work = NULL;
		heap_push(s, it);
	}
	if (!files) {
		free(b);
		return now + 50;
	}
	s->stats.batches++;
	log_debug("sync: batch %llu: %u items, %llu bytes", (unsigned long long)s->stats.batches,
		  files, (unsigned long long)bytes);
	pthread_cond_broadcast(&s->work_ready);
	return now;
}

static void *sync_scheduler_main(void *arg)
{
	struct sync *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		int64_t now = mono_ms(), wake = FOREVER;
		bool commit = false;

		for (struct sync_item *it = s->finished; it; it = it->next_work) {
			if (item_committable(s, it, now)) {
				commit = true;
				break;
			}
			int64_t at = it->finished_ms + SYNC_COMMIT_AGE_MS;
			if (at < wake)
				wake = at;
		}
		if (commit && now >= s->commit_retry_ms) {
			pthread_mutex_unlock(&s->lock);
			sync_commit(s, false);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		if (commit && s->commit_retry_ms < wake)
			wake = s->commit_retry_ms;
		if (sync_needs_compaction(s, now)) {
			pthread_mutex_unlock(&s->lock);
			int err = sync_compact(s);
			pthread_mutex_lock(&s->lock);
			if (err)
				s->compact_retry_ms = mono_ms() + 60000;
			continue;
		}
		int64_t next = sync_dispatch(s, now);
		if (next <= now)
			continue;
		if (next < wake)
			wake = next;
		cond_wait_until(&s->sched_wake, &s->lock, wake);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int sync_start(struct sync *s)
{
	sigset_t old;
	char pid[32];
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (s->started) {
		pthread_mutex_unlock(&s->lock);
		return EBUSY;
	}
	s->started = true;
	pthread_mutex_unlock(&s->lock);

	/* We may have forked since sync_create: the lock file names the process holding it. */
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n)
		log_warn("cannot write pid to '%s': %s", s->lock_path, strerror(errno));

	s->workers = calloc(s->cfg.upload_workers, sizeof(*s->workers));
	if (!s->workers)
		return ENOMEM;
	block_signals(&old);
	err = pthread_create(&s->scheduler, NULL, sync_scheduler_main, s);
	if (err) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_mutex_lock(&s->lock);
		s->started = false;
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	for (unsigned i = 0; i < s->cfg.upload_workers; i++) {
		err = pthread_create(&s->workers[i], NULL, sync_worker_main, s);
		if (err)
			break;
		s->n_workers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err && s->n_workers)
		log_warn("started only %u of %u upload workers: %s", s->n_workers,
			 s->cfg.upload_workers, strerror(err));
	return s->n_workers ? 0 : err;
}

/* ---- replay ---- */

struct replay {
	struct sync *s;
	struct journal_record *recs;
	size_t n, cap;
	uint64_t *done;
	size_t n_done, cap_done;
	uint64_t max_seq;
};

static int replay_collect(void *ud, const struct journal_record *r)
{
	struct replay *rp = ud;

	if (r->seq > rp->max_seq)
		rp->max_seq = r->seq;
	if (r->type == JOURNAL_DONE) {
		if (rp->n_done == rp->cap_done) {
			size_t cap = rp->cap_done ? rp->cap_done * 2 : 64;
			uint64_t *d = realloc(rp->done, cap * sizeof(*d));
			if (!d)
				return ENOMEM;
			rp->done = d;
			rp->cap_done = cap;
		}
		rp->done[rp->n_done++] = r->ref;
		return 0;
	}
	if (rp->n == rp->cap) {
		size_t cap = rp->cap ? rp->cap * 2 : 64;
		struct journal_record *a = realloc(rp->recs, cap * sizeof(*a));
		if (!a)
			return ENOMEM;
		rp->recs = a;
		rp->cap = cap;
	}
	/* take ownership: journal_read frees its copy, so move the pointers out */
	struct journal_record *dst = &rp->recs[rp->n++];
	*dst = *r;
	journal_record_init((struct journal_record *)r);
	return 0;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool replay_is_done(const struct replay *rp, uint64_t seq)
{
	return rp->n_done && bsearch(&seq, rp->done, rp->n_done, sizeof(uint64_t), u64_cmp) != NULL;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Delete spool files that no live item names. */
static void replay_clean_spool(struct sync *s)
{
	char **names = NULL;
	size_t n = 0;
	DIR *d;

	if (s->n_items && !(names = malloc(s->n_items * sizeof(*names))))
		return;
	for (struct sync_item *it = s->all_head; it; it = it->all_next)
		if (it->spool)
			names[n++] = it->spool;
	if (n)
		qsort(names, n, sizeof(*names), str_cmp);
	d = opendir(s->spool_dir);
	if (!d) {
		free(names);
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		char *name = e->d_name;
		if (name[0] == '.')
			continue;
		if (n && bsearch(&name, names, n, sizeof(*names), str_cmp))
			continue;
		if (unlinkat(dirfd(d), name, 0) == 0)
			log_debug("deleted unreferenced spool file '%s'", name);
	}
	closedir(d);
	free(names);
}

static int sync_replay(struct sync *s, char *err, size_t errlen)
{
	struct replay rp = {.s = s};
	uint64_t torn = 0;
	size_t queued = 0, aborts = 0;
	int e;

	e = journal_read(s->journal, replay_collect, &rp, &torn);
	if (e) {
		snprintf(err, errlen, "cannot read journal '%s': %s", s->journal_path, strerror(e));
		goto out;
	}
	if (torn)
		log_warn("journal '%s': ignored %llu bytes of an incomplete last record (a crash while "
			 "writing it; that operation had not returned)",
			 s->journal_path, (unsigned long long)torn);
	if (rp.n_done)
		qsort(rp.done, rp.n_done, sizeof(uint64_t), u64_cmp);
	for (size_t i = 0; i < rp.n; i++) {
		struct journal_record *r = &rp.recs[i];
		struct sync_plan plan = {0};
		struct sync_item *it;

		if (replay_is_done(&rp, r->seq))
			continue;
		if (r->type == JOURNAL_PUT_FILE && (r->flags & JOURNAL_HAS_DATA) && r->spool &&
		    r->spool[0]) {
			/* the spool file was never fsynced: after a power loss it may be short
			 * or gone; the record's copy is the content */
			e = spool_write(s, r->spool, r->data, r->len);
			if (e) {
				snprintf(err, errlen, "cannot rewrite spool file '%s' from journal '%s': %s",
					 r->spool, s->journal_path, strerror(e));
				goto out;
			}
		}
		if (r->spool && r->spool[0]) {
			char *p = path_join(s->spool_dir, r->spool);
			struct stat st;
			bool missing = p && stat(p, &st) < 0 && errno == ENOENT;
			free(p);
			if (missing) {
				log_error("journal '%s': spool file '%s' of '%s' is missing: that write is "
					  "lost",
					  s->journal_path, r->spool, r->type == JOURNAL_RENAME ? r->dst_key : r->key);
				continue;
			}
		}
		e = plan_make(s, r, &plan);
		it = NULL;
		if (!e && !plan.merge_into && !(it = item_from_record(r)))
			e = ENOMEM;
		if (e) {
			plan_unpin_keys(s, &plan);
			plan_free(&plan);
			snprintf(err, errlen, "cannot replay journal '%s': %s", s->journal_path,
				 strerror(e));
			goto out;
		}
		if (it && it->kind == ITEM_ABORT) {
			it->state = ITEM_QUEUED;
			all_insert_sorted(s, it);
			s->n_items++;
			item_consider(s, it);
			aborts++;
		} else {
			plan_apply(s, &plan, it, r, NULL, NULL);
			queued++;
		}
		plan_free(&plan);
	}
	/* Replayed items are eligible at once; superseded items dropped here took their spool
	 * file names with them, so the spool clean-up below deletes those files. */
	int64_t now = mono_ms();
	for (struct sync_item *it = s->all_head; it; it = it->all_next) {
		it->ready_ms = now;
		heap_fix(s, it);
	}
	s->next_seq = rp.max_seq + 1;
	replay_clean_spool(s);
	if (s->n_items)
		log_info("journal '%s': %llu pending operations from the last mount (%zu multipart "
			 "uploads to abort)",
			 s->journal_path, (unsigned long long)s->n_items, aborts);
	(void)queued;
out:
	for (size_t i = 0; i < rp.n; i++)
		journal_record_free(&rp.recs[i]);
	free(rp.recs);
	free(rp.done);
	return e;
}

/* ---- create / destroy ---- */

static int sync_lock_dir(struct sync *s, char *err, size_t errlen)
{
	s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		snprintf(err, errlen, "cannot open lock file '%s': %s", s->lock_path, strerror(errno));
		return errno;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char buf[32] = "";
		ssize_t n = pread(s->lock_fd, buf, sizeof(buf) - 1, 0);
		long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
		if (e == EWOULDBLOCK && pid > 0)
			snprintf(err, errlen,
				 "cache directory '%s' is in use by another objfs mount (pid %ld)",
				 s->cache_dir, pid);
		else if (e == EWOULDBLOCK)
			snprintf(err, errlen, "cache directory '%s' is in use by another objfs mount",
				 s->cache_dir);
		else
			snprintf(err, errlen, "cannot lock '%s': %s", s->lock_path, strerror(e));
		close(s->lock_fd);
		s->lock_fd = -1;
		return e == EWOULDBLOCK ? EBUSY : e;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n) {
		/* the lock holds; only the message of a second mount lacks the pid */
	}
	return 0;
}

static int mkdir_p1(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (mkdir(path, 0700) == 0 || errno == EEXIST) {
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		snprintf(err, errlen, "'%s' is not a directory", path);
		return ENOTDIR;
	}
	int e = errno;
	snprintf(err, errlen, "cannot create directory '%s': %s", path, strerror(e));
	return e;
}

static void sync_free(struct sync *s)
{
	/* early uploads left: their records stay for the next mount to abort */
	while (s->streams)
		stream_free(s, s->streams);
	while (s->all_head) {
		struct sync_item *it = s->all_head;
		item_detach(s, it);
		item_free(it);
	}
	for (size_t i = 0; i < s->n_buckets; i++) /* keys kept alive by waiters only */
		while (s->buckets[i]) {
			struct sync_key *k = s->buckets[i];
			s->buckets[i] = k->hash_next;
			free(k->name);
			free(k);
		}
	free(s->buckets);
	free(s->heap);
	free(s->workers);
	journal_close(s->journal);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	free(s->cache_dir);
	free(s->spool_dir);
	free(s->journal_path);
	free(s->lock_path);
	free(s);
}

struct sync *sync_create(const struct sync_config *cfg, struct store *dest, char *err, size_t errlen)
{
	struct sync *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	char *tmp = NULL;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->lock_fd = -1;
	if (!cfg->cache_dir || !cfg->cache_dir[0]) {
		snprintf(err, errlen, "no cache directory given");
		free(s);
		return NULL;
	}
	s->cfg = *cfg;
	if (!s->cfg.upload_workers)
		s->cfg.upload_workers = 1;
	if (!s->cfg.batch_files)
		s->cfg.batch_files = 1;
	if (!s->cfg.batch_bytes)
		s->cfg.batch_bytes = 1;
	if (!s->cfg.part_size)
		s->cfg.part_size = 8u << 20;
	s->dest = dest;
	s->cache_dir = strdup(cfg->cache_dir);
	s->spool_dir = path_join(cfg->cache_dir, "spool");
	s->journal_path = path_join(cfg->cache_dir, "journal");
	s->lock_path = path_join(cfg->cache_dir, "lock");
	tmp = path_join(cfg->cache_dir, "journal.new");
	s->cfg.cache_dir = s->cache_dir;
	if (!s->cache_dir || !s->spool_dir || !s->journal_path || !s->lock_path || !tmp) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->next_seq = 1;
	s->rand_state = (unsigned)getpid() ^ (unsigned)wall_ms();
	snprintf(s->spool_prefix, sizeof(s->spool_prefix), "%llx",
		 (unsigned long long)wall_ms() * 1000 + (unsigned)(getpid() % 1000));
	pthread_mutex_init(&s->journal_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->sched_wake, &ca);
	pthread_cond_init(&s->work_ready, &ca);
	pthread_cond_init(&s->parts_done, &ca);
	pthread_cond_init(&s->progress, &ca);
	pthread_condattr_destroy(&ca);

	if (mkdir_p1(s->cache_dir, err, errlen) || sync_lock_dir(s, err, errlen) ||
	    mkdir_p1(s->spool_dir, err, errlen))
		goto fail;
	unlink(tmp); /* a compaction that did not finish */
	s->journal = journal_open(s->journal_path, err, errlen);
	if (!s->journal)
		goto fail;
	if (sync_replay(s, err, errlen))
		goto fail;
	if (sync_compact(s)) {
		/* not fatal: the old journal is still valid */
	}
	free(tmp);
	return s;
fail:
	free(tmp);
	sync_free(s);
	return NULL;
}

void sync_destroy(struct sync *s, bool drain)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (drain && s->started && s->n_workers) {
		s->draining = true;
		s->urgent_seq = UINT64_MAX;
		for (struct sync_item *it = s->all_head; it; it = it->all_next)
			mark_urgent(s, it);
		pthread_cond_signal(&s->sched_wake);
		while (s->n_items)
			pthread_cond_wait(&s->progress, &s->lock);
	}
	s->stopping = true;
	__atomic_store_n(&s->cancel, 1, __ATOMIC_RELEASE); /* read by the store, unlocked */
	pthread_cond_broadcast(&s->sched_wake);
	pthread_cond_broadcast(&s->work_ready);
	pthread_cond_broadcast(&s->parts_done);
	pthread_cond_broadcast(&s->progress);
	pthread_mutex_unlock(&s->lock);
	if (s->started && s->n_workers) {
		pthread_join(s->scheduler, NULL);
		for (unsigned i = 0; i < s->n_workers; i++)
			pthread_join(s->workers[i], NULL);
	}
	/* Threads are gone: record what finished, leave the rest for the next mount. */
	sync_commit(s, true);
	sync_compact(s);
	if (s->n_items)
		log_info("sync: %llu operations stay in journal '%s' for the next mount",
			 (unsigned long long)s->n_items, s->journal_path);
	/* items back from the work FIFO: nothing else references them */
	s->work_head = s->work_tail = NULL;
	sync_free(s);
}

/* ---- queries and waits ---- */

int sync_lookup(struct sync *s, const char *key, struct store_attr *attr, char *spool_path,
		bool *removed)
{
	struct sync_view v;
	int ret = 0;

	if (attr)
		store_attr_init(attr);
	if (spool_path)
		spool_path[0] = '\0';
	if (removed)
		*removed = false;
	pthread_mutex_lock(&s->lock);
	view_of(key_find(s, key), NULL, &v);
	if (v.kind != VIEW_NONE) {
		ret = 1;
		if (removed)
			*removed = v.kind == VIEW_REMOVED;
		if (attr && v.attr && store_attr_copy(attr, v.attr) != 0)
			store_attr_init(attr);
		if (attr && v.content)
			attr->size = v.content->bytes;
		if (attr && !v.attr && key[0] && key[strlen(key) - 1] == '/')
			attr->is_dir = true;
		if (spool_path && v.kind == VIEW_FILE)
			snprintf(spool_path, PATH_MAX, "%s/%s", s->spool_dir, v.content->spool);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

size_t sync_lookup_origins(struct sync *s, const char *key, char **keys, size_t max)
{
	struct sync_view v;
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	view_of(key_find(s, key), NULL, &v);
	if (v.kind == VIEW_ORIGIN && v.via && !rename_chain(v.via, keys, &n, max)) {
		while (n)
			free(keys[--n]);
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

int sync_lookup_mem(struct sync *s, const char *key, void *buf, size_t buflen, size_t *len)
{
	struct sync_view v;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	view_of(key_find(s, key), NULL, &v);
	if (v.kind == VIEW_MEM) {
		size_t n = v.content->len < buflen ? v.content->len : buflen;
		if (n)
			memcpy(buf, v.content->data, n);
		if (len)
			*len = v.content->len;
		ret = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

struct pending_entry {
	char *key;
	struct store_attr attr;
	bool removed, implied;
};

static int pending_cmp(const void *a, const void *b)
{
	const struct pending_entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : (int)x->implied - (int)y->implied; /* explicit first */
}

void sync_list_pending(struct sync *s, const char *dir_prefix,
		       void (*cb)(void *ud, const char *key, const struct store_attr *attr, bool removed),
		       void *ud)
{
	struct pending_entry *e = NULL;
	size_t n = 0, cap = 0, plen = strlen(dir_prefix);

	pthread_mutex_lock(&s->lock);
	for (size_t b = 0; b < s->n_buckets; b++) {
		for (struct sync_key *k = s->buckets[b]; k; k = k->hash_next) {
			struct sync_view v;
			const char *rest = k->name + plen;
			if (!k->head || strncmp(k->name, dir_prefix, plen) != 0 || !rest[0])
				continue;
			view_of(k, NULL, &v);
			const char *slash = strchr(rest, '/');
			bool implied = slash && slash[1];
			if (implied && v.kind == VIEW_REMOVED)
				continue;
			if (n == cap) {
				size_t c = cap ? cap * 2 : 32;
				struct pending_entry *a = realloc(e, c * sizeof(*a));
				if (!a)
					goto unlock;
				e = a;
				cap = c;
			}
			struct pending_entry *pe = &e[n];
			store_attr_init(&pe->attr);
			pe->implied = implied;
			pe->removed = !implied && v.kind == VIEW_REMOVED;
			pe->key = implied ? strndup(k->name, (size_t)(slash - k->name) + 1) : strdup(k->name);
			if (!pe->key)
				goto unlock;
			if (implied) {
				pe->attr.is_dir = true;
			} else {
				if (v.attr && store_attr_copy(&pe->attr, v.attr) != 0)
					store_attr_init(&pe->attr);
				if (v.content)
					pe->attr.size = v.content->bytes;
				if (!v.attr && k->name[strlen(k->name) - 1] == '/')
					pe->attr.is_dir = true;
			}
			n++;
		}
	}
unlock:
	pthread_mutex_unlock(&s->lock);
	if (n)
		qsort(e, n, sizeof(*e), pending_cmp);
	for (size_t i = 0, j; i < n; i = j) {
		/* one call per key: the explicit record, unless it is the removal of a marker with
		 * pending keys below it, which keep the directory */
		for (j = i + 1; j < n && strcmp(e[j].key, e[i].key) == 0; j++)
			;
		size_t pick = e[i].removed && e[j - 1].implied ? j - 1 : i;
		cb(ud, e[pick].key, &e[pick].attr, e[pick].removed);
	}
	for (size_t i = 0; i < n; i++) {
		free(e[i].key);
		store_attr_free(&e[i].attr);
	}
	free(e);
}

int sync_wait_key(struct sync *s, const char *key, long timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : FOREVER;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	struct sync_key *k = key_find(s, key);
	if (!k || !k->head)
		goto out;
	uint64_t w = k->tail->item->seq;
	for (struct sync_link *l = k->head; l; l = l->next)
		mark_urgent(s, l->item);
	pthread_cond_signal(&s->sched_wake);
	k->waiters++;
	while (k->head && k->committed_seq < w) {
		if (s->stopping) {
			err = ECANCELED;
			break;
		}
		if (mono_ms() >= deadline) {
			err = k->head->item->last_err ? k->head->item->last_err : ETIMEDOUT;
			break;
		}
		cond_wait_until(&s->progress, &s->lock, deadline);
	}
	k->waiters--;
	key_release(s, k);
out:
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* Items covering a record <= w that are not committed yet. */
static void pending_upto(const struct sync *s, uint64_t w, uint64_t *files, uint64_t *bytes)
{
	*files = *bytes = 0;
	for (const struct sync_item *it = s->all_head; it && it->min_seq <= w; it = it->all_next) {
		if (it->state == ITEM_FINISHED && !it->skip_upload)
			continue; /* at the destination; only its DONE record is pending */
		(*files)++;
		*bytes += it->bytes > it->bytes_done ? it->bytes - it->bytes_done : 0;
	}
}

static bool any_upto(const struct sync *s, uint64_t w)
{
	return s->all_head && s->all_head->min_seq <= w;
}

int sync_wait_all_cancellable(struct sync *s,
			      void (*progress)(void *ud, const struct sync_progress *p), void *ud,
			      const volatile int *cancel)
{
	struct sync_progress p = {0};
	int64_t start = mono_ms();
	uint64_t files, bytes;
	int err = 0;

	pthread_mutex_lock(&s->lock);
	uint64_t w = s->next_seq - 1;
	if (w > s->urgent_seq)
		s->urgent_seq = w;
	for (struct sync_item *it = s->all_head; it && it->min_seq <= w; it = it->all_next)
		mark_urgent(s, it);
	pthread_cond_signal(&s->sched_wake);
	pending_upto(s, w, &p.files_total, &p.bytes_total);
	if (any_upto(s, w) && !s->started)
		err = EAGAIN;
	while (!err && any_upto(s, w)) {
		if (s->stopping || (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))) {
			err = ECANCELED;
			break;
		}
		cond_wait_until(&s->progress, &s->lock, mono_ms() + SYNC_PROGRESS_MS);
		if (progress) {
			pending_upto(s, w, &files, &bytes);
			p.files_done = p.files_total > files ? p.files_total - files : 0;
			p.bytes_done = p.bytes_total > bytes ? p.bytes_total - bytes : 0;
			p.elapsed_s = (double)(mono_ms() - start) / 1000.0;
			p.retrying = s->stats.retrying;
			snprintf(p.last_error, sizeof(p.last_error), "%s",
				 s->stats.retrying ? s->stats.last_error : "");
			pthread_mutex_unlock(&s->lock);
			progress(ud, &p);
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!err && progress) {
		p.files_done = p.files_total;
		p.bytes_done = p.bytes_total;
		p.retrying = 0;
		p.last_error[0] = '\0';
		p.elapsed_s = (double)(mono_ms() - start) / 1000.0;
		progress(ud, &p);
	}
	return err;
}

int sync_wait_all(struct sync *s, void (*progress)(void *ud, const struct sync_progress *p), void *ud)
{
	return sync_wait_all_cancellable(s, progress, ud, NULL);
}

void sync_get_stats(struct sync *s, struct sync_stats *out)
{
	uint64_t now_wall = wall_ms();

	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	out->queued_files = s->n_items;
	out->queued_bytes = s->queued_bytes;
	out->oldest_pending_s = 0;
	/* The list is ordered by oldest record, so its head is the oldest pending item. */
	if (s->all_head && s->all_head->first_ms && now_wall > s->all_head->first_ms)
		out->oldest_pending_s = (double)(now_wall - s->all_head->first_ms) / 1000.0;
	out->journal_bytes = s->journal_bytes;
	out->last_error_age_s = s->stats.last_error[0] ? (double)(mono_ms() - s->last_error_ms) / 1000.0 : 0;
	pthread_mutex_unlock(&s->lock);
}
