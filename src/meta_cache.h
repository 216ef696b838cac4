/*
 * meta_cache.h - the metadata cache of the mount: attributes of names, negative entries
 * ("no such name") and complete directory listings, each with its own TTL, bounded in memory
 * with least-recently-used eviction.
 *
 * Keys are paths relative to the mount root without leading or trailing '/': "" is the root,
 * "a/b" a file or a directory. The attribute and the listing of a directory share its key.
 *
 * Staleness: every lookup that may store a result takes a snapshot with meta_cache_begin()
 * BEFORE asking the store, and passes it to the put. Any invalidation of (or change to) a key
 * after that snapshot makes the put a no-op, so a slow HEAD or LIST that raced with a write,
 * unlink or rename never caches what it saw before the change. Generations are kept per hash
 * stripe, not per key: a collision only skips a put, it never keeps a stale one.
 *
 * Threads: any thread may call any function. One mutex (mc->lock) guards the table, the LRU
 * list and the generations; no function does I/O or calls back with the lock held.
 */
#ifndef OBJFS_META_CACHE_H
#define OBJFS_META_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* What the mount knows about one name. */
struct meta_attr {
	mode_t mode; /* full st_mode, type bits included */
	uid_t uid;
	gid_t gid;
	uint64_t size;
	struct timespec mtime, ctime, atime;
	char etag[80]; /* "" when unknown (pending uploads, implicit directories) */
	unsigned flags; /* META_* */
};

enum {
	META_FROM_LIST = 1 << 0,  /* only what a LIST says: user metadata (mode...) not read */
	META_MARKER = 1 << 1,     /* a directory with a marker object "name/" */
	META_IN_SOURCE = 1 << 2,  /* the object lives in the source store only (overlay mounts) */
	META_PENDING = 1 << 3,    /* known from the sync journal, not yet at the destination */
	META_PROVISIONAL = 1 << 4, /* a directory seen as a common prefix: marker not looked up */
};

struct meta_cache_config {
	long attr_ttl_ms; /* attributes; <= 0: not cached */
	long dir_ttl_ms;  /* directory listings; <= 0: not cached */
	long neg_ttl_ms;  /* negative entries; <= 0: not cached */
	size_t max_entries; /* bound: one per attribute, plus 1 per 16 names of a listing */
	uint64_t (*now_ms)(void); /* clock for tests; NULL: CLOCK_MONOTONIC */
};

struct meta_cache;

/* NULL on ENOMEM. */
struct meta_cache *meta_cache_create(const struct meta_cache_config *cfg);
void meta_cache_destroy(struct meta_cache *mc);

enum meta_result { META_MISS = 0, META_HIT, META_NEGATIVE };

/* Snapshot to pass to the puts of a lookup that starts now. */
uint64_t meta_cache_begin(struct meta_cache *mc);

/* Attribute of key: META_HIT (out filled), META_NEGATIVE (known absent), META_MISS. */
enum meta_result meta_cache_get_attr(struct meta_cache *mc, const char *key, struct meta_attr *out);
/* Store an attribute / a negative entry; false (nothing stored) when key changed since snap or
 * the TTL is 0. */
bool meta_cache_put_attr(struct meta_cache *mc, const char *key, uint64_t snap,
			 const struct meta_attr *a);
bool meta_cache_put_negative(struct meta_cache *mc, const char *key, uint64_t snap);
/* The FS layer changed key itself (write, chmod, create): store a now without any snapshot
 * check, and make every lookup begun earlier unable to overwrite it. */
void meta_cache_set_attr(struct meta_cache *mc, const char *key, const struct meta_attr *a);
/* Forget the attribute / negative entry of key (not its listing). */
void meta_cache_invalidate(struct meta_cache *mc, const char *key);
/* Forget everything at or below key ("" = everything): attributes and listings. */
void meta_cache_invalidate_tree(struct meta_cache *mc, const char *key);

/* ---- directory listings: the complete set of names directly in a directory ---- */
struct meta_dirent {
	char *name;
	mode_t type; /* S_IFREG, S_IFDIR, S_IFLNK... (type bits only) */
};
/* Store the listing of dirkey (names in any order; of duplicates one is kept); the
 * cache copies it. false when dirkey changed since snap or dir_ttl is 0. */
bool meta_cache_put_dir(struct meta_cache *mc, const char *dirkey, uint64_t snap,
			const struct meta_dirent *ents, size_t n);
/* A copy of the cached listing, sorted by name (free with meta_cache_dirents_free);
 * false when not cached or expired. */
bool meta_cache_get_dir(struct meta_cache *mc, const char *dirkey, struct meta_dirent **ents,
			size_t *n);
void meta_cache_dirents_free(struct meta_dirent *ents, size_t n);
/* Whether name is in the cached listing of dirkey: META_HIT (*type set), META_NEGATIVE
 * (listing cached, name absent) or META_MISS (no listing). */
enum meta_result meta_cache_dir_lookup(struct meta_cache *mc, const char *dirkey, const char *name,
				       mode_t *type);
/* Keep a cached listing of dirkey current after a local create / remove (no-op when not
 * cached). Either also makes listings begun earlier unable to be stored. */
void meta_cache_dir_add(struct meta_cache *mc, const char *dirkey, const char *name, mode_t type);
void meta_cache_dir_remove(struct meta_cache *mc, const char *dirkey, const char *name);
/* Forget the listing of dirkey. */
void meta_cache_invalidate_dir(struct meta_cache *mc, const char *dirkey);

struct meta_cache_stats {
	uint64_t attr_hits, neg_hits, misses, dir_hits, dir_misses;
	uint64_t stale_puts; /* puts refused because the key changed meanwhile */
	uint64_t evictions;
	size_t entries, weight;
};
void meta_cache_get_stats(struct meta_cache *mc, struct meta_cache_stats *out);

#endif
