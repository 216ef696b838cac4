/*
 * data_cache.h - the on-disk data cache: object bytes fetched by range GETs, kept in sparse
 * files under cache_dir/data/, bounded by max_bytes with least-recently-used eviction of
 * blocks that no open handle is using. Sequential reads trigger read-ahead: parallel range
 * GETs of the next blocks (background worker threads); a read-ahead that is no longer wanted
 * (handle closed, reader moved elsewhere) is cancelled through the store's cancel flag.
 *
 * One object version = (store, key, etag, size): a cached copy is reused across opens while
 * the ETag is unchanged and dropped when it changes.
 *
 * Threads: any thread may call any function. One mutex (cache->lock) guards the index and
 * LRU; never held across store I/O. Each block has a state (absent / fetching / present);
 * readers of a block being fetched wait on a condvar instead of fetching it twice.
 */
#ifndef OBJFS_DATA_CACHE_H
#define OBJFS_DATA_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct data_cache_config {
	const char *dir;        /* cache_dir/data is created below it */
	uint64_t max_bytes;     /* cache_size: bound on bytes held on disk */
	uint64_t block_size;    /* range GET unit (1 MiB) */
	uint64_t read_ahead;    /* read-ahead window in bytes (8 MiB); 0 disables */
	unsigned workers;       /* read-ahead threads (8) */
};

struct data_cache;
struct data_cache_file;

struct data_cache *data_cache_create(const struct data_cache_config *cfg, char *err, size_t errlen);
void data_cache_destroy(struct data_cache *dc);

/* Open a handle on one object version. The store must outlive the handle. NULL with *err. */
struct data_cache_file *data_cache_open(struct data_cache *dc, struct store *st, const char *key,
					const char *etag, uint64_t size, int *err);
/* Read up to len bytes at off into buf: fetches missing blocks (foreground), triggers
 * read-ahead on sequential access. Returns bytes read (short only at EOF) or -errno
 * (EIO/ETIMEDOUT... from the store; ESTALE when the object changed underneath). */
ssize_t data_cache_read(struct data_cache_file *f, void *buf, size_t len, uint64_t off);
/* Close: cancels this handle's read-ahead that no other handle needs. */
void data_cache_close(struct data_cache_file *f);
/* Forget every cached version of key (it was overwritten or removed). */
void data_cache_invalidate(struct data_cache *dc, const char *key);

struct data_cache_stats {
	uint64_t bytes_cached, max_bytes;
	uint64_t hits, misses;           /* blocks */
	uint64_t bytes_fetched;          /* from the store */
	uint64_t readahead_started, readahead_cancelled;
	uint64_t evictions;
};
void data_cache_get_stats(struct data_cache *dc, struct data_cache_stats *out);

#endif
