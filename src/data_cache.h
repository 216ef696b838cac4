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
 * The cache is not persistent: data_cache_create empties cache_dir/data, and nothing cached
 * survives the mount.
 *
 * Bound: the bytes of cached blocks plus the blocks being fetched never exceed max_bytes.
 * Eviction order: least recently used blocks of versions no handle has open; then blocks of
 * open versions outside every reader's current window; then (foreground reads only) any
 * block no reader is copying out of. A read that still finds no room is served without
 * caching (bypass_reads).
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
	const char *dir;        /* cache_dir/data is created below it (dir too, if missing) */
	uint64_t max_bytes;     /* cache_size: bound on bytes held on disk */
	uint64_t block_size;    /* range GET unit (1 MiB); 0 = 1 MiB */
	uint64_t read_ahead;    /* read-ahead window in bytes (32 MiB); 0 disables */
	uint64_t read_ahead_chunk; /* most bytes one read-ahead GET fetches (8 MiB); 0 = one
				    * block */
	uint64_t read_ahead_mem; /* memory read-ahead may fill instead of the file (32 MiB),
				  * for every stream together; 0: read-ahead goes to the file */
	unsigned workers;       /* read-ahead threads (8); 0 = 8 */
};

struct data_cache;
struct data_cache_file;

/* Empty (or create) cfg->dir/data and start the read-ahead threads, so call it after
 * daemonizing. NULL with one line in err when the directory cannot be used. */
struct data_cache *data_cache_create(const struct data_cache_config *cfg, char *err, size_t errlen);
/* Stop the threads, free everything and remove the cached files. Every handle must have
 * been closed. NULL is ignored. */
void data_cache_destroy(struct data_cache *dc);

/* Open a handle on one object version (etag may be NULL or "" when unknown: such a version
 * is never validated against the store). The store must outlive the handle. NULL with *err
 * set to a positive errno (ENOMEM, EMFILE, ENOSPC...). */
struct data_cache_file *data_cache_open(struct data_cache *dc, struct store *st, const char *key,
					const char *etag, uint64_t size, int *err);
/* Read up to len bytes at off into buf: fetches missing blocks (foreground), triggers
 * read-ahead on sequential access. Returns bytes read (short only at EOF: the size given
 * to data_cache_open) or -errno: the store's error (EIO, ETIMEDOUT...; ENOENT only when the
 * store said 404), ESTALE when the object changed underneath (ETag mismatch or shorter
 * than its size), ENOSPC when the cache disk is full and the read could not bypass it.
 * Failures are never cached: the next read asks the store again. A handle may be read
 * from several threads at once. */
ssize_t data_cache_read(struct data_cache_file *f, void *buf, size_t len, uint64_t off);
/* Close: cancels this handle's read-ahead that no other handle needs. When it was the last
 * handle on its object version, returns only after every store call for that version has
 * returned (cancelled ones return promptly), so the store may then be destroyed. */
void data_cache_close(struct data_cache_file *f);
/* Forget every cached version of key (it was overwritten or removed). Open handles keep
 * reading the old version; new opens start afresh. */
void data_cache_invalidate(struct data_cache *dc, const char *key);

/* The kernel's read-ahead of the mount (its backing device's read_ahead_kb, in bytes): its
 * requests are in flight together, two of its windows and more, and reach us in any
 * order. Reads within 4 times that still belong to one sequential stream. */
void data_cache_set_kernel_read_ahead(struct data_cache *dc, uint64_t bytes);

struct data_cache_stats {
	uint64_t bytes_cached, max_bytes;
	uint64_t hits, misses;           /* blocks: found cached or being read ahead / fetched
					  * by the read itself (bypass included) */
	uint64_t bytes_fetched;          /* from the store */
	uint64_t readahead_started, readahead_cancelled;
	uint64_t evictions;              /* blocks */
	uint64_t bytes_fetching;         /* reserved by fetches in flight or queued */
	uint64_t bypass_reads;           /* reads (or parts) served without caching: no room */
	uint64_t bytes_in_memory;        /* read-ahead buffers in use (block size each) */
	uint64_t readahead_to_memory;    /* read-ahead blocks queued to go into memory */
	uint64_t kernel_rereads;         /* reads (per block) of a block the stream had read
					  * whole and let go: the kernel lost those pages, and
					  * gets exactly what it asks, fetched around the cache */
};
void data_cache_get_stats(struct data_cache *dc, struct data_cache_stats *out);

#endif
