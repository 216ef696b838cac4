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
 *  - The staged file must not be modified after sync_put_file() (it is hard-linked into the
 *    spool, so it shares the inode); write a new staged file instead.
 *
 * Scheduling: operations on one key apply in journal order (a rename waits for both keys);
 * a newer write of a key drops an older one still queued (an older one already uploading
 * finishes first and the newer one follows). An item is eligible settle_ms after its last
 * change; eligible items are collected into a batch closed at batch_files / batch_bytes /
 * batch_ms (or at once when someone waits: fsync, objfs sync, drain) and uploaded by the
 * workers. Failed items are retried for ever with backoff (retry_base_ms..retry_max_ms),
 * counted and visible in sync_get_stats(); only a rename or set_attr whose source object
 * does not exist at the destination (ENOENT) is dropped, logged and counted as dropped.
 *
 * Files in cache_dir: journal (see journal.h), journal.new while compacting, spool/ (one
 * file per pending upload), lock (flock held for the life of the sync object; holds the pid).
 *
 * Threads: one scheduler thread plus upload_workers worker threads, started by sync_start()
 * (after daemonizing), with all signals blocked. All functions are callable from any thread,
 * except that nothing may be called concurrently with or after sync_destroy(). Locks:
 * sync->lock guards the queue and the statistics and is never held across store I/O or an
 * fsync; sync->journal_lock serialises journal appends (taken before sync->lock, never
 * after).
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
	/* addition: rewrite the journal once it passes this size and 4x its size after the
	 * last rewrite (0: 8 MiB) */
	uint64_t journal_compact_bytes;
};
void sync_config_defaults(struct sync_config *cfg);

struct sync;

/* Open the journal (creating cache_dir/journal), replay it: every record not committed is
 * queued again; multipart uploads recorded as started are aborted and redone. Does not
 * start threads. NULL with err filled on failure. Creates cache_dir (0700) and spool/ when
 * missing, takes the cache directory lock (fails with "cache directory '...' is in use by
 * another objfs mount (pid N)"), deletes spool files no record needs and compacts the
 * journal. No store I/O happens here (aborts are queued). dest must outlive the sync object. */
struct sync *sync_create(const struct sync_config *cfg, struct store *dest, char *err, size_t errlen);
/* Start the threads (call after daemonizing: it also writes this pid into the lock file).
 * 0 or errno. Calling it twice is EBUSY. */
int sync_start(struct sync *s);
/* drain=true: wait until the queue is empty first (umount); false: stop now, cancelling
 * uploads in flight through the store's cancel flag; pending work stays in the journal for
 * the next mount (umount --lazy). Frees. drain=true on a sync that was never started does
 * not wait (nothing would upload). */
void sync_destroy(struct sync *s, bool drain);

/* Journal ops: each returns once the record is durable (fsync), 0 or errno (ENOSPC...).
 * On error nothing was recorded. Keys: 1..1024 bytes, no leading '/' (EINVAL,
 * ENAMETOOLONG). */
/* key: relative to the destination root; staged_path: the FS layer's staged file (it keeps
 * owning it); attr: metadata to store (mode, uid, gid, times, content_type, extra). */
int sync_put_file(struct sync *s, const char *key, const char *staged_path, const struct store_attr *attr);
/*
 * Early upload of a file still being written by appends only (an addition): a multipart
 * upload of key started in the background whose full parts go up (through the workers, at
 * most about half of them, background priority) as soon as the writer is past them.
 * Nothing is visible at key before the upload is completed, which only the item of a later
 * sync_put_file_stream() does, after checking that its spool file is the same file.
 * The upload is journalled (MPU_STARTED) before its first part, so after a crash the next
 * mount aborts it. All three calls are cheap (no store I/O, no fsync) and meant to be made
 * under the writer's own lock.
 */
struct sync_stream;
/* Follow fd (the staged file, dup'd here; only read) for key with metadata attr (what it
 * is uploaded with; a different attr at put time costs a metadata rewrite after
 * completion). NULL when it cannot (threads not started, stopping, out of memory). */
struct sync_stream *sync_stream_start(struct sync *s, const char *key, int fd,
				      const struct store_attr *attr);
/* The staged file's content below size is final: parts entirely below it may go up. */
void sync_stream_grow(struct sync_stream *st, uint64_t size);
/* Give it up: the upload is aborted in the background (an ABORT item, visible in the
 * statistics until it is done). st is gone after the call. */
void sync_stream_abort(struct sync_stream *st);
/* sync_put_file() of the file stream follows (NULL: none), consuming stream in every case:
 * the upload item continues it when staged_path is the same file it read and at least as
 * long; otherwise (or on error) it is aborted. */
int sync_put_file_stream(struct sync *s, const char *key, const char *staged_path,
			 const struct store_attr *attr, struct sync_stream *stream);
/* A small object with in-memory content: directory marker "dir/" (empty body) or a symlink
 * (body = target). len at most 1 MiB (EFBIG). */
int sync_put_mem(struct sync *s, const char *key, const void *data, size_t len, const struct store_attr *attr);
int sync_remove(struct sync *s, const char *key);
/* Server-side copy src -> dst then delete src, after any pending upload of src. When src's
 * latest content is still local (spool or memory), dst is uploaded from that copy instead
 * (no server-side copy) and src is deleted. */
int sync_rename(struct sync *s, const char *src_key, const char *dst_key);
/* Rewrite metadata of a stored object (copy onto itself with REPLACE). */
int sync_set_attr(struct sync *s, const char *key, const struct store_attr *attr);

/* What the destination will hold once the journal is applied, for keys still pending.
 * Returns 1 and fills attr (and spool_path, PATH_MAX, "" for removals or mem items) when
 * the key has a pending record; *removed = true when the latest record removes it.
 * Returns 0 when nothing is pending for key.
 * attr (and spool_path) may be NULL; a filled attr owns memory: store_attr_free() it.
 * attr->has/size are what the records say: for the destination of a server-side rename
 * whose source is already stored (no local copy), nothing is known locally (attr->has == 0,
 * size 0, spool_path ""): use sync_lookup_origins() to find the keys to read it from.
 * The spool file is deleted once the item is at the destination: on ENOENT when opening it,
 * look up again (or read the destination). */
int sync_lookup(struct sync *s, const char *key, struct store_attr *attr, char *spool_path,
		bool *removed);
/* When key's pending state is "renamed from an object already at the destination" (perhaps
 * through a chain of renames: a to b to c while a's copy is pending): the keys the stored
 * bytes may be at before key, oldest first (the origin first). Each rename copies, then
 * deletes its source, so a reader that tries them in order, then key, finds the bytes.
 * Returns how many it put in keys (at most max, each malloc'd: free them); 0 when key is not
 * renamed from an object already stored (no pending state, a local copy, removed) or out of
 * memory. */
size_t sync_lookup_origins(struct sync *s, const char *key, char **keys, size_t max);
/* When key's pending content is in memory (sync_put_mem, e.g. a symlink target): copy up to
 * buflen bytes into buf, set *len to its full length and return 1; else 0. */
int sync_lookup_mem(struct sync *s, const char *key, void *buf, size_t buflen, size_t *len);
/* Pending keys directly under dir_prefix ("" or "a/b/"): callback per key with its state.
 * Directories implied by a pending key deeper down ("a/b/" for a pending "a/b/c") are
 * reported once as "a/b/" with attr->is_dir and attr->has == 0, unless "a/b/" has its own
 * record other than a removal. The callback runs without any sync lock held (it may call sync functions); attr
 * is only valid during the call. */
void sync_list_pending(struct sync *s, const char *dir_prefix,
		       void (*cb)(void *ud, const char *key, const struct store_attr *attr, bool removed),
		       void *ud);

/* Wait until key's latest record is at the destination (fsync). 0, or the last upload
 * error after timeout_ms (<= 0: wait forever) (ETIMEDOUT when there was none yet);
 * ECANCELED when the sync object stops. Items it waits for skip the settle delay. Needs
 * the threads (sync_start). */
int sync_wait_key(struct sync *s, const char *key, long timeout_ms);
/* Wait until everything journalled before the call is at the destination. progress (may be
 * NULL) is called about every 200 ms from the waiting thread. */
struct sync_progress {
	uint64_t files_total, files_done;
	uint64_t bytes_total, bytes_done;
	double elapsed_s;
	/* additions: why it may be slow */
	uint64_t retrying;         /* items failing and being retried (any, not only these) */
	char last_error[256];      /* the latest failure, "" when none */
};
int sync_wait_all(struct sync *s, void (*progress)(void *ud, const struct sync_progress *p), void *ud);
/* The same, returning ECANCELED as soon as *cancel (may be NULL) is non-zero (checked at
 * every progress tick) or the sync object stops. For the control socket, whose client may
 * go away. bytes_done counts finished parts of multipart uploads still in flight. */
int sync_wait_all_cancellable(struct sync *s,
			      void (*progress)(void *ud, const struct sync_progress *p), void *ud,
			      const volatile int *cancel);

struct sync_stats {
	uint64_t queued_files;     /* records not yet at the destination */
	uint64_t queued_bytes;
	double oldest_pending_s;   /* age of the oldest pending record, 0 when none */
	uint64_t uploaded_files, uploaded_bytes;
	uint64_t failed_attempts;  /* item-level retries */
	uint64_t batches;
	char last_error[256];      /* "" when none; "key 'a/b': <store error>"; never secrets */
	/* additions */
	uint64_t in_flight;        /* items being uploaded now */
	uint64_t retrying;         /* items waiting to be retried after a failure */
	uint64_t ops_done;         /* removes, renames, metadata rewrites, aborts applied */
	uint64_t dropped;          /* renames/set_attr whose source was absent (ENOENT): logged */
	uint64_t journal_bytes;    /* size of the journal file */
	double last_error_age_s;   /* seconds since last_error, 0 when none */
};
void sync_get_stats(struct sync *s, struct sync_stats *out);

#endif
