/*
 * sync.h - the sync thread: a persistent journal of dirty files and pending namespace
 * changes in the cache directory, and batched background uploads to the destination store
 * through the shared HTTP engine.
 *
 * Contract with the file system layer:
 *  - A file written through the mount is staged in a file the FS layer owns. On close
 *    (or fsync) the FS layer calls sync_put_file(): sync hard-links (or copies) the staged
 *    content into its spool (cache_dir/spool/) and appends a journal record, fsynced,
 *    before returning. From then on the data is safe across kill -9. Writing the same path
 *    again later produces a new staged file and a new record; the newer one wins, an older
 *    upload in flight is superseded (never published half-old).
 *  - Namespace changes (unlink, rmdir, mkdir markers, symlinks, rename, chmod/chown/utimens
 *    of already-stored objects) are journalled the same way and applied in order per key.
 *  - Until an item is at the destination, sync_lookup()/sync_list() let the FS layer show
 *    it (attributes and spool path), so a just-written file reads back at once.
 *
 * Threads: one scheduler thread plus upload_workers worker threads, started by sync_start()
 * (after daemonizing). All functions are callable from any thread. Locks: one mutex
 * (sync->lock) guards the queue and the journal file; never held across network I/O.
 */
#ifndef OBJFS_SYNC_H
#define OBJFS_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct sync_config {
	const char *cache_dir;   /* journal at cache_dir/journal, spool at cache_dir/spool */
	long settle_ms;          /* a file is eligible this long after its last change (200) */
	unsigned batch_files;    /* close a batch at N files (1000) */
	uint64_t batch_bytes;    /* ... or M bytes (256 MiB) */
	long batch_ms;           /* ... or T ms after it opened (2000) */
	uint64_t multipart_threshold; /* 16 MiB */
	uint64_t part_size;      /* 8 MiB */
	unsigned upload_workers; /* 24 concurrent uploads (the engine still caps connections) */
	long retry_base_ms, retry_max_ms; /* backoff for failed items (1000, 60000) */
};
void sync_config_defaults(struct sync_config *cfg);

struct sync;

/* Open the journal (creating cache_dir/journal), replay it: every record not committed is
 * queued again; multipart uploads recorded as started are aborted and redone. Does not
 * start threads. NULL with err filled on failure. */
struct sync *sync_create(const struct sync_config *cfg, struct store *dest, char *err, size_t errlen);
int sync_start(struct sync *s);
/* drain=true: wait until the queue is empty first (umount); false: stop now, pending work
 * stays in the journal for the next mount (umount --lazy). Frees. */
void sync_destroy(struct sync *s, bool drain);

/* Journal ops: each returns once the record is durable (fsync), 0 or errno (ENOSPC...). */
/* key: relative to the destination root; staged_path: the FS layer's staged file (it keeps
 * owning it); attr: metadata to store (mode, uid, gid, times, content_type, extra). */
int sync_put_file(struct sync *s, const char *key, const char *staged_path, const struct store_attr *attr);
/* A small object with in-memory content: directory marker "dir/" (empty body) or a symlink
 * (body = target). */
int sync_put_mem(struct sync *s, const char *key, const void *data, size_t len, const struct store_attr *attr);
int sync_remove(struct sync *s, const char *key);
/* Server-side copy src -> dst then delete src, after any pending upload of src. */
int sync_rename(struct sync *s, const char *src_key, const char *dst_key);
/* Rewrite metadata of a stored object (copy onto itself with REPLACE). */
int sync_set_attr(struct sync *s, const char *key, const struct store_attr *attr);

/* What the destination will hold once the journal is applied, for keys still pending.
 * Returns 1 and fills attr (and spool_path, PATH_MAX, "" for removals or mem items) when
 * the key has a pending record; *removed = true when the latest record removes it.
 * Returns 0 when nothing is pending for key. */
int sync_lookup(struct sync *s, const char *key, struct store_attr *attr, char *spool_path,
		bool *removed);
/* Pending keys directly under dir_prefix ("" or "a/b/"): callback per key with its state. */
void sync_list_pending(struct sync *s, const char *dir_prefix,
		       void (*cb)(void *ud, const char *key, const struct store_attr *attr, bool removed),
		       void *ud);

/* Wait until key's latest record is at the destination (fsync). 0, or the last upload
 * error after timeout_ms (<= 0: wait forever). */
int sync_wait_key(struct sync *s, const char *key, long timeout_ms);
/* Wait until everything journalled before the call is at the destination. progress (may be
 * NULL) is called about every 200 ms from the waiting thread. */
struct sync_progress {
	uint64_t files_total, files_done;
	uint64_t bytes_total, bytes_done;
	double elapsed_s;
};
int sync_wait_all(struct sync *s, void (*progress)(void *ud, const struct sync_progress *p), void *ud);

struct sync_stats {
	uint64_t queued_files;     /* records not yet at the destination */
	uint64_t queued_bytes;
	double oldest_pending_s;   /* age of the oldest pending record, 0 when none */
	uint64_t uploaded_files, uploaded_bytes;
	uint64_t failed_attempts;  /* item-level retries */
	uint64_t batches;
	char last_error[256];
};
void sync_get_stats(struct sync *s, struct sync_stats *out);

#endif
