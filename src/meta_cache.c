/*
 * meta_cache.c - attributes, negative entries and directory listings with TTLs, an LRU bound
 * and per-stripe generations (see meta_cache.h for the contract).
 *
 * One entry per key holds its attribute state (none / positive / negative) and optionally its
 * listing (a sorted array of names). Entries live in a chained hash table and on one LRU list;
 * the weight of an entry is 1 plus 1 per 16 listed names, and the least recently used entries
 * are dropped while the total weight exceeds max_entries.
 *
 * Generations: `gen` counts changes; stripe[h] is the value of `gen` at the last change of any
 * key hashing to h. A put carrying snapshot s is accepted only when stripe[h] <= s.
 *
 * Locking: mc->lock guards everything in struct meta_cache; held only for memory operations.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "meta_cache.h"

#define MC_STRIPES 4096

enum { MC_NONE = 0, MC_POSITIVE, MC_NEGATIVE };

struct mc_entry {
	struct mc_entry *hnext;               /* hash chain */
	struct mc_entry *lru_prev, *lru_next; /* lru_next: towards older entries */
	uint64_t hash;
	char *key;
	int attr_state;       /* MC_* */
	uint64_t attr_expires; /* ms, for the positive or negative state */
	struct meta_attr attr;
	struct meta_dirent *dir; /* sorted by name; NULL when no listing */
	size_t ndir;
	uint64_t dir_expires;
	size_t weight;
};

struct meta_cache {
	pthread_mutex_t lock;
	struct meta_cache_config cfg;
	/* protected by lock: */
	struct mc_entry **buckets;
	size_t nbuckets, nentries, weight;
	struct mc_entry *lru_head, *lru_tail; /* head: most recently used */
	uint64_t gen;
	uint64_t stripe[MC_STRIPES];
	struct meta_cache_stats stats;
};

static uint64_t mc_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mc_now(struct meta_cache *mc)
{
	return mc->cfg.now_ms ? mc->cfg.now_ms() : mc_clock_ms();
}

static uint64_t mc_hash(const char *key)
{
	uint64_t h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h;
}

struct meta_cache *meta_cache_create(const struct meta_cache_config *cfg)
{
	struct meta_cache *mc = calloc(1, sizeof(*mc));

	if (!mc)
		return NULL;
	mc->cfg = *cfg;
	if (mc->cfg.max_entries < 16)
		mc->cfg.max_entries = 16;
	mc->nbuckets = 1024;
	mc->buckets = calloc(mc->nbuckets, sizeof(*mc->buckets));
	if (!mc->buckets) {
		free(mc);
		return NULL;
	}
	pthread_mutex_init(&mc->lock, NULL);
	return mc;
}

void meta_cache_dirents_free(struct meta_dirent *ents, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
}

static void mc_entry_free(struct mc_entry *e)
{
	meta_cache_dirents_free(e->dir, e->ndir);
	free(e->key);
	free(e);
}

void meta_cache_destroy(struct meta_cache *mc)
{
	if (!mc)
		return;
	for (struct mc_entry *e = mc->lru_head, *next; e; e = next) {
		next = e->lru_next;
		mc_entry_free(e);
	}
	free(mc->buckets);
	pthread_mutex_destroy(&mc->lock);
	free(mc);
}

/* ---- table, LRU and weight (mc->lock held) ---- */

static struct mc_entry *mc_find(struct meta_cache *mc, const char *key, uint64_t h)
{
	for (struct mc_entry *e = mc->buckets[h & (mc->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->key, key))
			return e;
	return NULL;
}

static void mc_lru_unlink(struct meta_cache *mc, struct mc_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		mc->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		mc->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void mc_lru_push(struct meta_cache *mc, struct mc_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = mc->lru_head;
	if (mc->lru_head)
		mc->lru_head->lru_prev = e;
	mc->lru_head = e;
	if (!mc->lru_tail)
		mc->lru_tail = e;
}

static void mc_touch(struct meta_cache *mc, struct mc_entry *e)
{
	if (mc->lru_head != e) {
		mc_lru_unlink(mc, e);
		mc_lru_push(mc, e);
	}
}

static void mc_remove(struct meta_cache *mc, struct mc_entry *e)
{
	struct mc_entry **pp = &mc->buckets[e->hash & (mc->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	mc_lru_unlink(mc, e);
	mc->nentries--;
	mc->weight -= e->weight;
	mc_entry_free(e);
}

static void mc_reweigh(struct meta_cache *mc, struct mc_entry *e)
{
	size_t w = 1 + e->ndir / 16;

	mc->weight = mc->weight - e->weight + w;
	e->weight = w;
}

/* Drop e when it holds nothing any more. */
static void mc_maybe_drop(struct meta_cache *mc, struct mc_entry *e)
{
	if (e->attr_state == MC_NONE && !e->dir)
		mc_remove(mc, e);
}

static void mc_grow(struct meta_cache *mc)
{
	size_t n = mc->nbuckets * 2;
	struct mc_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < mc->nbuckets; i++) {
		for (struct mc_entry *e = mc->buckets[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(mc->buckets);
	mc->buckets = b;
	mc->nbuckets = n;
}

static void mc_evict(struct meta_cache *mc, struct mc_entry *keep)
{
	while (mc->weight > mc->cfg.max_entries && mc->lru_tail && mc->lru_tail != keep) {
		mc_remove(mc, mc->lru_tail);
		mc->stats.evictions++;
	}
}

static struct mc_entry *mc_get_or_add(struct meta_cache *mc, const char *key, uint64_t h)
{
	struct mc_entry *e = mc_find(mc, key, h);

	if (e) {
		mc_touch(mc, e);
		return e;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->hash = h;
	e->weight = 1;
	if (mc->nentries >= mc->nbuckets)
		mc_grow(mc);
	e->hnext = mc->buckets[h & (mc->nbuckets - 1)];
	mc->buckets[h & (mc->nbuckets - 1)] = e;
	mc_lru_push(mc, e);
	mc->nentries++;
	mc->weight += 1;
	return e;
}

static bool mc_fresh(struct meta_cache *mc, uint64_t h, uint64_t snap)
{
	if (mc->stripe[h % MC_STRIPES] > snap) {
		mc->stats.stale_puts++;
		return false;
	}
	return true;
}

static void mc_bump(struct meta_cache *mc, uint64_t h)
{
	mc->stripe[h % MC_STRIPES] = ++mc->gen;
}

/* ---- attributes ---- */

uint64_t meta_cache_begin(struct meta_cache *mc)
{
	uint64_t g;

	pthread_mutex_lock(&mc->lock);
	g = mc->gen;
	pthread_mutex_unlock(&mc->lock);
	return g;
}

enum meta_result meta_cache_get_attr(struct meta_cache *mc, const char *key, struct meta_attr *out)
{
	uint64_t h = mc_hash(key);
	enum meta_result r = META_MISS;
	struct mc_entry *e;

	pthread_mutex_lock(&mc->lock);
	e = mc_find(mc, key, h);
	if (e && e->attr_state != MC_NONE && e->attr_expires <= mc_now(mc)) {
		e->attr_state = MC_NONE;
		mc_maybe_drop(mc, e);
		e = NULL;
	}
	if (e && e->attr_state == MC_POSITIVE) {
		*out = e->attr;
		r = META_HIT;
		mc->stats.attr_hits++;
		mc_touch(mc, e);
	} else if (e && e->attr_state == MC_NEGATIVE) {
		r = META_NEGATIVE;
		mc->stats.neg_hits++;
		mc_touch(mc, e);
	} else {
		mc->stats.misses++;
	}
	pthread_mutex_unlock(&mc->lock);
	return r;
}

static bool mc_put(struct meta_cache *mc, const char *key, bool check, uint64_t snap,
		   const struct meta_attr *a)
{
	long ttl = a ? mc->cfg.attr_ttl_ms : mc->cfg.neg_ttl_ms;
	uint64_t h = mc_hash(key);
	struct mc_entry *e;
	bool ok = false;

	pthread_mutex_lock(&mc->lock);
	if (!check)
		mc_bump(mc, h);
	if (ttl <= 0) {
		/* nothing cached; drop an older state so it cannot be served */
		e = mc_find(mc, key, h);
		if (e) {
			e->attr_state = MC_NONE;
			mc_maybe_drop(mc, e);
		}
		goto out;
	}
	if (check && !mc_fresh(mc, h, snap))
		goto out;
	e = mc_get_or_add(mc, key, h);
	if (!e)
		goto out;
	e->attr_state = a ? MC_POSITIVE : MC_NEGATIVE;
	e->attr_expires = mc_now(mc) + (uint64_t)ttl;
	if (a)
		e->attr = *a;
	mc_evict(mc, e);
	ok = true;
out:
	pthread_mutex_unlock(&mc->lock);
	return ok;
}

bool meta_cache_put_attr(struct meta_cache *mc, const char *key, uint64_t snap,
			 const struct meta_attr *a)
{
	return mc_put(mc, key, true, snap, a);
}

bool meta_cache_put_negative(struct meta_cache *mc, const char *key, uint64_t snap)
{
	return mc_put(mc, key, true, snap, NULL);
}

void meta_cache_set_attr(struct meta_cache *mc, const char *key, const struct meta_attr *a)
{
	mc_put(mc, key, false, 0, a);
}

void meta_cache_invalidate(struct meta_cache *mc, const char *key)
{
	uint64_t h = mc_hash(key);
	struct mc_entry *e;

	pthread_mutex_lock(&mc->lock);
	mc_bump(mc, h);
	e = mc_find(mc, key, h);
	if (e) {
		e->attr_state = MC_NONE;
		mc_maybe_drop(mc, e);
	}
	pthread_mutex_unlock(&mc->lock);
}

void meta_cache_invalidate_tree(struct meta_cache *mc, const char *key)
{
	size_t n = strlen(key);

	pthread_mutex_lock(&mc->lock);
	mc->gen++;
	for (size_t i = 0; i < MC_STRIPES; i++)
		mc->stripe[i] = mc->gen;
	for (struct mc_entry *e = mc->lru_head, *next; e; e = next) {
		next = e->lru_next;
		if (n == 0 || (!strncmp(e->key, key, n) && (e->key[n] == '\0' || e->key[n] == '/')))
			mc_remove(mc, e);
	}
	pthread_mutex_unlock(&mc->lock);
}

/* ---- listings ---- */

static int mc_dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct meta_dirent *)a)->name, ((const struct meta_dirent *)b)->name);
}

static struct meta_dirent *mc_dirents_copy(const struct meta_dirent *ents, size_t n)
{
	struct meta_dirent *c = calloc(n ? n : 1, sizeof(*c));

	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i].type = ents[i].type;
		c[i].name = strdup(ents[i].name);
		if (!c[i].name) {
			meta_cache_dirents_free(c, i);
			return NULL;
		}
	}
	return c;
}

bool meta_cache_put_dir(struct meta_cache *mc, const char *dirkey, uint64_t snap,
			const struct meta_dirent *ents, size_t n)
{
	uint64_t h = mc_hash(dirkey);
	struct meta_dirent *c;
	struct mc_entry *e;
	size_t out = 0;
	bool ok = false;

	if (mc->cfg.dir_ttl_ms <= 0)
		return false;
	c = mc_dirents_copy(ents, n);
	if (!c)
		return false;
	if (n > 1)
		qsort(c, n, sizeof(*c), mc_dirent_cmp);
	for (size_t i = 0; i < n; i++) {
		if (out && !strcmp(c[out - 1].name, c[i].name)) {
			free(c[i].name);
			continue;
		}
		c[out++] = c[i];
	}
	pthread_mutex_lock(&mc->lock);
	if (!mc_fresh(mc, h, snap))
		goto out;
	e = mc_get_or_add(mc, dirkey, h);
	if (!e)
		goto out;
	meta_cache_dirents_free(e->dir, e->ndir);
	e->dir = c;
	e->ndir = out;
	e->dir_expires = mc_now(mc) + (uint64_t)mc->cfg.dir_ttl_ms;
	c = NULL;
	mc_reweigh(mc, e);
	mc_evict(mc, e);
	ok = true;
out:
	pthread_mutex_unlock(&mc->lock);
	if (c)
		meta_cache_dirents_free(c, out);
	return ok;
}

/* The entry holding a live listing of dirkey, or NULL (expired listings are dropped). */
static struct mc_entry *mc_find_dir(struct meta_cache *mc, const char *dirkey, uint64_t h)
{
	struct mc_entry *e = mc_find(mc, dirkey, h);

	if (!e || !e->dir)
		return NULL;
	if (e->dir_expires <= mc_now(mc)) {
		meta_cache_dirents_free(e->dir, e->ndir);
		e->dir = NULL;
		e->ndir = 0;
		mc_reweigh(mc, e);
		mc_maybe_drop(mc, e);
		return NULL;
	}
	return e;
}

bool meta_cache_get_dir(struct meta_cache *mc, const char *dirkey, struct meta_dirent **ents,
			size_t *n)
{
	uint64_t h = mc_hash(dirkey);
	struct mc_entry *e;
	bool ok = false;

	pthread_mutex_lock(&mc->lock);
	e = mc_find_dir(mc, dirkey, h);
	if (e) {
		*ents = mc_dirents_copy(e->dir, e->ndir);
		*n = e->ndir;
		ok = *ents != NULL;
		mc_touch(mc, e);
	}
	if (ok)
		mc->stats.dir_hits++;
	else
		mc->stats.dir_misses++;
	pthread_mutex_unlock(&mc->lock);
	return ok;
}

static struct meta_dirent *mc_dir_search(struct mc_entry *e, const char *name, size_t *pos)
{
	size_t lo = 0, hi = e->ndir;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(e->dir[mid].name, name);

		if (c == 0) {
			*pos = mid;
			return &e->dir[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return NULL;
}

enum meta_result meta_cache_dir_lookup(struct meta_cache *mc, const char *dirkey, const char *name,
				       mode_t *type)
{
	uint64_t h = mc_hash(dirkey);
	enum meta_result r = META_MISS;
	struct meta_dirent *d;
	struct mc_entry *e;
	size_t pos;

	pthread_mutex_lock(&mc->lock);
	e = mc_find_dir(mc, dirkey, h);
	if (e) {
		d = mc_dir_search(e, name, &pos);
		if (d) {
			*type = d->type;
			r = META_HIT;
		} else {
			r = META_NEGATIVE;
		}
	}
	pthread_mutex_unlock(&mc->lock);
	return r;
}

void meta_cache_dir_add(struct meta_cache *mc, const char *dirkey, const char *name, mode_t type)
{
	uint64_t h = mc_hash(dirkey);
	struct meta_dirent *d, *grown;
	struct mc_entry *e;
	size_t pos;
	char *copy;

	pthread_mutex_lock(&mc->lock);
	mc_bump(mc, h);
	e = mc_find_dir(mc, dirkey, h);
	if (!e)
		goto out;
	d = mc_dir_search(e, name, &pos);
	if (d) {
		d->type = type & S_IFMT;
		goto out;
	}
	copy = strdup(name);
	grown = copy ? realloc(e->dir, (e->ndir + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		/* cannot keep it current: forget it */
		free(copy);
		meta_cache_dirents_free(e->dir, e->ndir);
		e->dir = NULL;
		e->ndir = 0;
		mc_reweigh(mc, e);
		mc_maybe_drop(mc, e);
		goto out;
	}
	e->dir = grown;
	memmove(&e->dir[pos + 1], &e->dir[pos], (e->ndir - pos) * sizeof(*grown));
	e->dir[pos].name = copy;
	e->dir[pos].type = type & S_IFMT;
	e->ndir++;
	mc_reweigh(mc, e);
	mc_evict(mc, e);
out:
	pthread_mutex_unlock(&mc->lock);
}

void meta_cache_dir_remove(struct meta_cache *mc, const char *dirkey, const char *name)
{
	uint64_t h = mc_hash(dirkey);
	struct meta_dirent *d;
	struct mc_entry *e;
	size_t pos;

	pthread_mutex_lock(&mc->lock);
	mc_bump(mc, h);
	e = mc_find_dir(mc, dirkey, h);
	if (e && (d = mc_dir_search(e, name, &pos))) {
		free(d->name);
		memmove(&e->dir[pos], &e->dir[pos + 1], (e->ndir - pos - 1) * sizeof(*d));
		e->ndir--;
		mc_reweigh(mc, e);
	}
	pthread_mutex_unlock(&mc->lock);
}

void meta_cache_invalidate_dir(struct meta_cache *mc, const char *dirkey)
{
	uint64_t h = mc_hash(dirkey);
	struct mc_entry *e;

	pthread_mutex_lock(&mc->lock);
	mc_bump(mc, h);
	e = mc_find(mc, dirkey, h);
	if (e && e->dir) {
		meta_cache_dirents_free(e->dir, e->ndir);
		e->dir = NULL;
		e->ndir = 0;
		mc_reweigh(mc, e);
		mc_maybe_drop(mc, e);
	}
	pthread_mutex_unlock(&mc->lock);
}

void meta_cache_get_stats(struct meta_cache *mc, struct meta_cache_stats *out)
{
	pthread_mutex_lock(&mc->lock);
	*out = mc->stats;
	out->entries = mc->nentries;
	out->weight = mc->weight;
	pthread_mutex_unlock(&mc->lock);
}
