/*
 * journal.h - the on-disk format of the sync journal (cache_dir/journal): an append-only
 * file of length-prefixed, CRC-32-checked records. Owns encoding and decoding of records,
 * appending with fdatasync (rolled back on failure, so nothing is half-recorded), reading
 * back with a torn last record ignored, and rewriting the whole file (compaction) by
 * write-new, fsync, rename, fsync-directory. What the records mean is sync.c's business.
 *
 * Locking: none. A struct journal belongs to one caller at a time; sync.c serialises every
 * call under its journal lock.
 *
 * File layout: the 8-byte header "OBJFSJ1\n", then records:
 *   u32 payload length | u32 CRC-32 (IEEE 802.3) of the payload | payload
 *   payload: u8 type | u64 seq | u64 wall-clock ms | u64 ref | u32 flags | fields of the type
 * Integers are little-endian; strings and blobs are u32 length + bytes (no NUL).
 */
#ifndef OBJFS_JOURNAL_H
#define OBJFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define JOURNAL_MAX_RECORD (64u << 20) /* a longer length prefix is treated as corruption */

enum journal_type {
	JOURNAL_PUT_FILE = 1,    /* key, spool, attr: upload the spool file to key; with
				  * JOURNAL_HAS_DATA also its content (a small file whose spool
				  * file was not fsynced: replay writes it again from data) */
	JOURNAL_PUT_MEM = 2,     /* key, data, attr: upload a small in-memory body */
	JOURNAL_REMOVE = 3,      /* key */
	JOURNAL_RENAME = 4,      /* key (source), dst_key; content: spool, data or none; attr */
	JOURNAL_SETATTR = 5,     /* key, attr: rewrite metadata of a stored object */
	JOURNAL_MPU_STARTED = 6, /* key, upload_id; ref = the record being uploaded (0: none) */
	JOURNAL_DONE = 7,        /* ref = the record now applied (or superseded) */
};

/* flags */
enum {
	JOURNAL_HAS_ATTR = 1 << 0,      /* attr is meaningful */
	JOURNAL_HAS_DATA = 1 << 1,      /* data/len is the content (PUT_MEM always) */
	JOURNAL_ATTR_REPLACE = 1 << 2,  /* RENAME without content: replace metadata on copy */
};

struct journal_record {
	enum journal_type type;
	uint64_t seq;       /* 0 for DONE */
	uint64_t time_ms;   /* CLOCK_REALTIME when written */
	uint64_t ref;
	uint32_t flags;     /* JOURNAL_HAS_* */
	char *key;          /* NULL for DONE */
	char *dst_key;      /* RENAME */
	char *spool;        /* PUT_FILE, RENAME with a local copy: name in cache_dir/spool/ */
	char *upload_id;    /* MPU_STARTED */
	void *data;         /* PUT_MEM, RENAME with in-memory content */
	size_t len;
	struct store_attr attr; /* when flags & JOURNAL_HAS_ATTR */
};

/* Zero a record; free what journal_decode allocated (the record itself is not freed). */
void journal_record_init(struct journal_record *r);
void journal_record_free(struct journal_record *r);

/* A growable byte buffer of encoded records. */
struct journal_buf {
	unsigned char *p;
	size_t len, cap;
	int err; /* first ENOMEM; encoding into a failed buffer does nothing */
};
void journal_buf_free(struct journal_buf *b);
/* Append one framed record. 0, ENOMEM or EINVAL (over JOURNAL_MAX_RECORD) (also b->err). */
int journal_encode(struct journal_buf *b, const struct journal_record *r);
/* Decode one framed record at p[0..avail). Returns the bytes it used (> 0), 0 when the
 * bytes are incomplete or fail their checksum (a torn tail), -1 when the framing is intact
 * but the payload is malformed, or -2 when there was no memory to decode it. */
long journal_decode(const unsigned char *p, size_t avail, struct journal_record *out);

uint32_t journal_crc32(const void *data, size_t len);

struct journal;
/* Open path (creating it with the header if missing or empty). NULL with one line in err
 * when it cannot be opened or is not an objfs journal. */
struct journal *journal_open(const char *path, char *err, size_t errlen);
/* Read every intact record from the start, calling cb for each (cb returns 0 to go on, or
 * an errno to stop with it). The record is freed after cb returns; cb may keep its
 * allocations by copying the struct and then journal_record_init() on the original.
 * ENOMEM, with nothing cut off, when a record cannot be decoded for lack of memory.
 * cb may be NULL (only find the end). The zeros written ahead of appends end the records
 * cleanly; any other tail is torn or corrupt: it is cut off the file (ftruncate) and its
 * size, without the zeros after it, reported in *torn_bytes. Later appends go after the
 * last intact record (an append to a journal opened with content reads it first). */
int journal_read(struct journal *j, int (*cb)(void *ud, const struct journal_record *r), void *ud,
		 uint64_t *torn_bytes);
/* Write buf (encoded records) at the end and fdatasync. The file is kept up to 1 MiB of
 * written zeros longer than its records, so that most appends change only data. On any
 * failure the file is cut back to its records and the errno (ENOSPC, EIO...) returned:
 * nothing half-recorded.
 * Where the file system can preallocate, it also keeps 128 KiB + half the journal's size
 * allocated past the end (fallocate KEEP_SIZE) for journal_append_reserved, and fails with
 * ENOSPC, writing nothing, when that reserve cannot be kept. */
int journal_append(struct journal *j, const void *buf, size_t len);
/* The same for records that let space be freed (DONE records of finished uploads): may use
 * the reserve, so that it succeeds on a full disk while the reserve lasts. */
int journal_append_reserved(struct journal *j, const void *buf, size_t len);
/* Replace the whole journal by header + buf atomically (path.new, fsync, rename, fsync of
 * the directory). On failure the old journal is untouched. */
int journal_rewrite(struct journal *j, const void *buf, size_t len);
/* Bytes in the file (header included). */
uint64_t journal_size(const struct journal *j);
void journal_close(struct journal *j);

#endif
