/*
 * data_cache.c - owns the on-disk data cache of data_cache.h: the index of cached object
 * versions, one sparse file per version under cache_dir/data/, the state of every block, the
 * LRU list of present blocks, the read-ahead queue and its worker threads.
 *
 * Locking: one mutex, dc->lock, guards every field of struct data_cache and every version,
 * block, handle and job. It is never held across a store call or while data is copied out
 * of a cache file. It is held across small local calls (open, unlink, fallocate) so that a
 * hole is never punched into a block that another thread has started to refill.
 * Condition variables:
 *   dc->block_changed  a block left FETCHING (it is PRESENT, or ABSENT again), or a job ended;
 *   dc->work_ready     a read-ahead job was queued, or the cache is stopping.
 *
 * A block goes ABSENT -> FETCHING (by a reader in the foreground, or by a read-ahead job)
 * -> PRESENT, or back to ABSENT after an error or a cancel; PRESENT -> ABSENT by eviction,
 * which never takes a pinned block (a reader is copying out of it). Space is reserved
 * before a fetch starts, so present + fetching bytes never exceed max_bytes.
 *
 * Read-ahead into memory: while dc->mem_max allows, a read-ahead job fetches its block into
 * a memory buffer instead of the file (the store's get_iov). Such a block is PRESENT with
 * b->mem set; it is not in the LRU and not counted in present_bytes, and it is released once
 * no reader's window holds it (the reader has passed it, moved elsewhere or closed the
 * file), checked at each read, close and end of a read-ahead GET of its version. A handle
 * that stays open without reading keeps its window's blocks. A stream is then read without
 * a write to and a read from the cache file, which are most of the CPU a sequential read
 * costs; the kernel's page cache keeps what was read. Every block a reader fetches itself
 * goes to the file, and so does read-ahead that finds no memory while its reader has none
 * ahead (a reader with memory ahead waits for its own to be freed). Streams read side by
 * side share the memory evenly (n_sequential), each in GETs of up to half its share.
 *
 * The cache is not persistent: nothing records across mounts which blocks of a file hold
 * valid data, so data_cache_create empties cache_dir/data and destroy removes the files.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "data_cache.h"
#include "log.h"

#define DC_DEFAULT_BLOCK (1024 * 1024)
#define DC_DEFAULT_WORKERS 8
#define DC_INITIAL_BUCKETS 64
/* After a read-ahead of a version fails, read ahead of it again only after this long: a
 * failing store should not get a failing background GET for every read. */
#define DC_READ_AHEAD_PAUSE_MS 1000
/* A block in memory stays while a reader is at most this many bytes past it (the kernel's
 * parallel reads come a little out of order); at least 2 blocks. */
#define DC_MEM_BEHIND_BYTES (2 * 1024 * 1024)
/* dc_fetch_run could not reserve room in the cache: serve the read without caching. */
#define DC_NO_ROOM ENOBUFS

enum dc_state { DC_ABSENT = 0, DC_FETCHING, DC_PRESENT };

struct dc_version;
struct dc_job;

struct dc_block {
	/* dc->lru while PRESENT in the file; v->mem_head while PRESENT in memory */
	struct dc_block *lru_prev, *lru_next;
	struct dc_version *v;                 /* set while PRESENT in the file (LRU walk) */
	char *mem;                            /* its buffer while fetched into or in memory */
	struct dc_job *job;                   /* FETCHING by read-ahead: its job; else NULL */
	uint32_t pins;                        /* readers copying out of it */
	uint32_t copied;                      /* bytes read out of its buffer (saturating) */
	uint32_t waiters;                     /* readers waiting for FETCHING to end */
	uint8_t state;                        /* enum dc_state */
	/* The stream (data_cache_file.stream) that read all of it without it staying in the
	 * file (out of its memory buffer, or around the cache): the kernel has those pages, so
	 * that stream's read-ahead does not fetch the block again. 0: none. 16 bits (a wrap
	 * only costs a read-ahead). */
	uint16_t consumed_by;
};

/* One object version. Lives while a handle or a job uses it, or while it holds blocks and
 * has not been dropped. Dropped (etag changed, invalidated, stale): out of the index, file
 * unlinked, freed when its last handle closes. */
struct dc_version {
	struct dc_version *hash_next; /* dc->buckets chain, while !dropped */
	struct store *st;
	char *key;
	char *etag;       /* "" when unknown */
	char *path;       /* its cache file */
	uint64_t size, nblocks;
	/* Calloc'd: the kernel hands out zero pages lazily, so a huge object whose few blocks
	 * are read costs only the pages of the array it touches. */
	struct dc_block *blocks;
	int fd;           /* -1 while no handle or job uses the version */
	unsigned n_open;  /* handles not yet freed (closing ones included) */
	unsigned n_jobs;  /* read-ahead jobs queued or running */
	uint64_t n_present;               /* blocks PRESENT in the file */
	struct dc_block *mem_head;        /* blocks PRESENT in memory */
	int64_t read_ahead_paused_until; /* dc_now_ms() */
	bool dropped;
	struct data_cache_file *handles; /* handles that may still read (have a window) */
	struct dc_job *jobs;             /* its read-ahead jobs */
};

/* A read-ahead of one block. A worker takes a run of queued jobs of consecutive blocks of
 * one version and fetches them with one range GET (fewer, larger requests); the first job of
 * the run is its head, and the GET is cancelled once every job of the run is. */
struct dc_job {
	struct dc_job *queue_prev, *queue_next; /* dc->queue while queued */
	struct dc_job *v_prev, *v_next;         /* v->jobs */
	struct dc_job *run_head, *run_next;     /* while running: its run, in block order */
	struct dc_version *v;
	uint64_t block;
	volatile int cancel;     /* no reader wants this block any more */
	volatile int run_cancel; /* head only: no reader wants any block of the run; read by
				  * the store while running */
	bool running;
};

struct data_cache_file {
	struct data_cache *dc;
	struct dc_version *v;
	struct data_cache_file *prev, *next; /* v->handles */
	/* The reader's stream, protected by dc->lock: */
	uint64_t next_off;       /* end of the furthest read of the current stream */
	uint64_t win_lo, win_hi; /* blocks [lo, hi) it reads now or reads ahead */
	uint64_t lag;            /* the furthest a read of the stream came behind next_off */
	uint16_t stream;         /* a new one at each seek (dc_track_stream), never 0 */
	bool has_read, sequential;
};

struct data_cache {
	char *data_dir;
	uint64_t max_bytes, block_size, read_ahead;
	uint64_t slack; /* how far out of order a read may come and still be the stream's
			 * (dc_set_slack) */
	uint64_t run_blocks; /* most blocks one read-ahead GET fetches */
	unsigned n_workers;
	pthread_t *workers;

	pthread_mutex_t lock;
	pthread_cond_t block_changed;
	pthread_cond_t work_ready;
	/* protected by lock: */
	struct dc_version **buckets; /* current versions by key */
	size_t n_buckets, n_versions;
	struct dc_block *lru_head, *lru_tail; /* head = least recently used */
	struct dc_job *queue_head, *queue_tail;
	uint64_t present_bytes, fetching_bytes;
	uint64_t mem_max, mem_bytes; /* read-ahead memory: a block size per buffer in use */
	uint64_t mem_behind;         /* blocks (DC_MEM_BEHIND_BYTES) */
	void *mem_pool;              /* unused buffers, each holding the next one's address */
	uint64_t name_seq;
	unsigned n_sequential; /* open handles whose reads are sequential: read-ahead memory is
				* shared among them */
	uint16_t stream_seq;
	bool stopping;
	bool punch_warned;
	struct data_cache_stats stats;
};

/* ---- small helpers ---------------------------------------------------------------- */

static uint64_t dc_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t dc_block_len(const struct data_cache *dc, const struct dc_version *v, uint64_t i)
{
	return dc_min(dc->block_size, v->size - i * dc->block_size);
}

static uint64_t dc_block_index(const struct dc_version *v, const struct dc_block *b)
{
	return (uint64_t)(b - v->blocks);
}

static int64_t dc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dc_pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO; /* the cache file lost data: truncated behind our back */
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

#ifdef OBJFS_DEBUG_CHECKS
static void dc_check(const struct data_cache *dc)
{
	uint64_t sum = 0;
	for (const struct dc_block *b = dc->lru_head; b; b = b->lru_next) {
		if (b->state != DC_PRESENT || !b->v)
			abort();
		sum += dc_block_len(dc, b->v, dc_block_index(b->v, b));
	}
	if (sum != dc->present_bytes || dc->present_bytes + dc->fetching_bytes > dc->max_bytes)
		abort();
	/* every memory buffer of a current version (filled, or being filled by a job) is
	 * counted in mem_bytes, which stays within mem_max (dropped versions may hold more) */
	sum = 0;
	for (size_t k = 0; k < dc->n_buckets; k++)
		for (const struct dc_version *v = dc->buckets[k]; v; v = v->hash_next) {
			for (const struct dc_block *b = v->mem_head; b; b = b->lru_next)
				sum += dc->block_size;
			for (const struct dc_job *j = v->jobs; j; j = j->v_next)
				sum += v->blocks[j->block].mem && v->blocks[j->block].state != DC_PRESENT
					       ? dc->block_size
					       : 0;
		}
	if (sum > dc->mem_bytes || dc->mem_bytes > dc->mem_max)
		abort();
}
#define DC_CHECK(dc) dc_check(dc)
#else
#define DC_CHECK(dc) ((void)0)
#endif

/* ---- LRU ---------------------------------------------------------------------------- */

/* Unlink b from a list through lru_prev/lru_next: the LRU, or a version's memory blocks
 * (which keeps no tail: tail NULL). */
static void dc_list_remove(struct dc_block **head, struct dc_block **tail, struct dc_block *b)
{
	if (b->lru_prev)
		b->lru_prev->lru_next = b->lru_next;
	else
		*head = b->lru_next;
	if (b->lru_next)
		b->lru_next->lru_prev = b->lru_prev;
	else if (tail)
		*tail = b->lru_prev;
	b->lru_prev = b->lru_next = NULL;
}

static void dc_lru_remove(struct data_cache *dc, struct dc_block *b)
{
	dc_list_remove(&dc->lru_head, &dc->lru_tail, b);
}

static void dc_lru_append(struct data_cache *dc, struct dc_block *b)
{
	b->lru_next = NULL;
	b->lru_prev = dc->lru_tail;
	if (dc->lru_tail)
		dc->lru_tail->lru_next = b;
	else
		dc->lru_head = b;
	dc->lru_tail = b;
}

static void dc_lru_touch(struct data_cache *dc, struct dc_block *b)
{
	if (dc->lru_tail != b) {
		dc_lru_remove(dc, b);
		dc_lru_append(dc, b);
	}
}

/* ---- read-ahead memory ---------------------------------------------------------------- */

/* A block buffer, or NULL when the memory for read-ahead is used up (or not allowed). */
static char *dc_mem_get(struct data_cache *dc)
{
	void *p;

	if (dc->mem_bytes + dc->block_size > dc->mem_max)
		return NULL;
	if ((p = dc->mem_pool))
		dc->mem_pool = *(void **)p;
	else if (!(p = malloc(dc->block_size)))
		return NULL;
	dc->mem_bytes += dc->block_size;
	return p;
}

static void dc_mem_pool_free(struct data_cache *dc)
{
	while (dc->mem_pool) {
		void *p = dc->mem_pool;
		dc->mem_pool = *(void **)p;
		free(p);
	}
}

/* Back to the pool, which keeps the buffers until destroy (at most mem_max): freeing them
 * whenever no stream reads ahead would fault them in again for every file of a cp -r. */
static void dc_mem_put(struct data_cache *dc, char *p)
{
	*(void **)p = dc->mem_pool;
	dc->mem_pool = p;
	dc->mem_bytes -= dc->block_size;
}

/* b's buffer goes back to the pool; b is ABSENT (its caller may make it FETCHING). */
static void dc_mem_drop(struct data_cache *dc, struct dc_block *b)
{
	dc_mem_put(dc, b->mem);
	b->mem = NULL;
	b->copied = 0;
	b->state = DC_ABSENT;
}

/* A block PRESENT in memory becomes ABSENT. */
static void dc_mem_release(struct data_cache *dc, struct dc_version *v, struct dc_block *b)
{
	dc_list_remove(&v->mem_head, NULL, b);
	dc_mem_drop(dc, b);
}

/* Whether a reader of v may still read block i (from memory, or from a read-ahead job on
 * its way): in its window, or at most behind blocks behind it, or not read yet and close
 * enough behind that the kernel's out-of-order requests may still come for it (dc->slack;
 * a reader that skipped it gives it back once that far past). */
static bool dc_block_wanted(const struct data_cache *dc, const struct dc_version *v, uint64_t i,
			    uint64_t behind)
{
	bool unread = v->blocks[i].copied < dc_block_len(dc, v, i);

	for (const struct data_cache_file *h = v->handles; h; h = h->next) {
		if (!h->has_read || i >= h->win_hi)
			continue;
		if (i + behind >= h->win_lo ||
		    (unread && h->sequential && (i + 1) * dc->block_size + dc->slack >= h->next_off))
			return true;
	}
	return false;
}

/* Release v's blocks in memory that no reader wants (and nobody copies out of); behind:
 * how far behind its reader a block is still wanted. */
static void dc_mem_drop_behind(struct data_cache *dc, struct dc_version *v, uint64_t behind)
{
	struct dc_block *b = v->mem_head, *next;

	for (; b; b = next) {
		next = b->lru_next;
		if (b->pins == 0 && !dc_block_wanted(dc, v, dc_block_index(v, b), behind))
			dc_mem_release(dc, v, b);
	}
}

static void dc_mem_drop_unwanted(struct data_cache *dc, struct dc_version *v)
{
	dc_mem_drop_behind(dc, v, dc->mem_behind);
}

/* ---- index ---------------------------------------------------------------------------- */

static size_t dc_hash(const struct data_cache *dc, const char *key)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h & (dc->n_buckets - 1));
}

static struct dc_version *dc_lookup(struct data_cache *dc, struct store *st, const char *key)
{
	for (struct dc_version *v = dc->buckets[dc_hash(dc, key)]; v; v = v->hash_next)
		if (v->st == st && strcmp(v->key, key) == 0)
			return v;
	return NULL;
}

static void dc_index_grow(struct data_cache *dc)
{
	size_t old_n = dc->n_buckets;
	struct dc_version **old = dc->buckets;
	struct dc_version **nb = calloc(old_n * 2, sizeof(*nb));

	if (!nb)
		return; /* longer chains, still correct */
	dc->buckets = nb;
	dc->n_buckets = old_n * 2;
	for (size_t i = 0; i < old_n; i++) {
		struct dc_version *v = old[i], *next;
		for (; v; v = next) {
			size_t h = dc_hash(dc, v->key);
			next = v->hash_next;
			v->hash_next = nb[h];
			nb[h] = v;
		}
	}
	free(old);
}

static void dc_index_insert(struct data_cache *dc, struct dc_version *v)
{
	if (dc->n_versions >= 2 * dc->n_buckets)
		dc_index_grow(dc);
	size_t h = dc_hash(dc, v->key);
	v->hash_next = dc->buckets[h];
	dc->buckets[h] = v;
	dc->n_versions++;
}

static void dc_index_remove(struct data_cache *dc, struct dc_version *v)
{
	for (struct dc_version **pp = &dc->buckets[dc_hash(dc, v->key)]; *pp; pp = &(*pp)->hash_next)
		if (*pp == v) {
			*pp = v->hash_next;
			v->hash_next = NULL;
			dc->n_versions--;
			return;
		}
}

/* ---- versions ------------------------------------------------------------------------- */

static void dc_version_free_memory(struct dc_version *v)
{
	free(v->blocks);
	free(v->path);
	free(v->etag);
	free(v->key);
	free(v);
}

/* Free v with its blocks and file. Needs n_open == 0 and n_jobs == 0. */
static void dc_version_free(struct data_cache *dc, struct dc_version *v)
{
	while (v->mem_head)
		dc_mem_release(dc, v, v->mem_head);
	if (v->n_present > 0) {
		struct dc_block *b = dc->lru_head, *next;
		for (; b; b = next) {
			next = b->lru_next;
			if (b->v != v)
				continue;
			dc_lru_remove(dc, b);
			dc->present_bytes -= dc_block_len(dc, v, dc_block_index(v, b));
		}
	}
	if (!v->dropped) {
		dc_index_remove(dc, v);
		if (unlink(v->path) != 0 && errno != ENOENT)
			log_warn("cannot remove cache file '%s': %s", v->path, strerror(errno));
	}
	if (v->fd >= 0)
		close(v->fd);
	dc_version_free_memory(v);
}

/* Called when a version may have become unused: free it, or just close its file. */
static void dc_version_idle(struct data_cache *dc, struct dc_version *v)
{
	if (v->n_open > 0 || v->n_jobs > 0)
		return;
	if (v->dropped || v->n_present == 0) {
		dc_version_free(dc, v);
	} else if (v->fd >= 0) {
		close(v->fd); /* keep descriptors few: reopened by the next data_cache_open */
		v->fd = -1;
	}
}

/* Take v out of the index (its key now names newer data) and unlink its file; readers that
 * have it open keep their descriptor. */
static void dc_version_drop(struct data_cache *dc, struct dc_version *v)
{
	if (v->dropped)
		return;
	dc_index_remove(dc, v);
	if (unlink(v->path) != 0 && errno != ENOENT)
		log_warn("cannot remove cache file '%s': %s", v->path, strerror(errno));
	v->dropped = true;
	dc_version_idle(dc, v);
}

static int dc_version_create(struct data_cache *dc, struct store *st, const char *key,
			     const char *etag, uint64_t size, struct dc_version **out)
{
	struct dc_version *v = calloc(1, sizeof(*v));
	char hex[2 * CRYPTO_SHA256_LEN + 1];
	char *id = NULL;
	int r = ENOMEM, n;

	if (!v)
		return ENOMEM;
	v->fd = -1;
	v->st = st;
	v->size = size;
	v->nblocks = size == 0 ? 0 : (size - 1) / dc->block_size + 1;
	v->key = strdup(key);
	v->etag = strdup(etag);
	if (!v->key || !v->etag)
		goto fail;
	if (v->nblocks > 0 && !(v->blocks = calloc(v->nblocks, sizeof(*v->blocks))))
		goto fail;
	/* The store pointer and a sequence number make the name unique within this mount. */
	n = asprintf(&id, "%s\n%p\n%s\n%s\n%" PRIu64 "\n%" PRIu64, st->ops->kind, (void *)st, key,
		     etag, size, ++dc->name_seq);
	if (n < 0) {
		id = NULL;
		goto fail;
	}
	crypto_sha256_hex(id, (size_t)n, hex);
	if (asprintf(&v->path, "%s/%s", dc->data_dir, hex) < 0) {
		v->path = NULL;
		goto fail;
	}
	v->fd = open(v->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (v->fd < 0) {
		r = errno;
		log_warn("cannot create cache file '%s': %s", v->path, strerror(r));
		goto fail;
	}
	free(id);
	dc_index_insert(dc, v);
	*out = v;
	return 0;
fail:
	free(id);
	dc_version_free_memory(v);
	return r;
}

/* ---- eviction ------------------------------------------------------------------------- */

static bool dc_in_window(const struct dc_version *v, uint64_t i)
{
	for (const struct data_cache_file *h = v->handles; h; h = h->next)
		if (h->has_read && i >= h->win_lo && i < h->win_hi)
			return true;
	return false;
}

/* Punch [off, off+len) out of v's file so the disk space is really freed. */
static void dc_punch(struct data_cache *dc, struct dc_version *v, uint64_t off, uint64_t len)
{
	int fd = v->fd >= 0 ? v->fd : open(v->path, O_WRONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("cannot open cache file '%s' to free space: %s", v->path,
				 strerror(errno));
		return;
	}
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0 &&
	    !dc->punch_warned) {
		dc->punch_warned = true;
		log_warn("cannot punch holes in cache file '%s': %s; evicted blocks keep their disk "
			 "space until the file is closed: put cache_dir on ext4, xfs, btrfs or tmpfs",
			 v->path, strerror(errno));
	}
	if (fd != v->fd)
		close(fd);
}

static void dc_evict(struct data_cache *dc, struct dc_block *b)
{
	struct dc_version *v = b->v;
	uint64_t i = dc_block_index(v, b), len = dc_block_len(dc, v, i);

	dc_lru_remove(dc, b);
	b->state = DC_ABSENT;
	b->v = NULL;
	dc->present_bytes -= len;
	v->n_present--;
	dc->stats.evictions++;
	if (v->n_present == 0 && v->n_open == 0 && v->n_jobs == 0 && !v->dropped) {
		dc_version_free(dc, v); /* unlinks the whole file */
		return;
	}
	dc_punch(dc, v, i * dc->block_size, len);
}

/* The least recently used block that may go. Tier 1: versions nobody has open; tier 2: also
 * blocks of open versions outside every reader's window; tier 3: any unpinned block. */
static struct dc_block *dc_pick_victim(struct data_cache *dc, int max_tier)
{
	for (int tier = 1; tier <= max_tier; tier++)
		for (struct dc_block *b = dc->lru_head; b; b = b->lru_next) {
			if (b->pins > 0)
				continue;
			if (tier == 1 && b->v->n_open > 0)
				continue;
			if (tier == 2 && dc_in_window(b->v, dc_block_index(b->v, b)))
				continue;
			return b;
		}
	return NULL;
}

/* Make room for need more bytes being fetched, evicting up to max_tier. */
static bool dc_reserve(struct data_cache *dc, uint64_t need, int max_tier)
{
	if (need > dc->max_bytes || dc->fetching_bytes > dc->max_bytes - need)
		return false; /* evicting cannot help */
	while (dc->present_bytes + dc->fetching_bytes + need > dc->max_bytes) {
		struct dc_block *b = dc_pick_victim(dc, max_tier);
		if (!b)
			return false;
		dc_evict(dc, b);
	}
	dc->fetching_bytes += need;
	return true;
}

/* ---- fetching ------------------------------------------------------------------------- */

/* Without the lock: fetch blocks [first, last] of v into its file. The blocks are FETCHING
 * and owned by the caller, so v->fd and the file range are stable. */
static int dc_fetch_io(struct data_cache *dc, struct dc_version *v, uint64_t first, uint64_t last,
		       const struct store_io *io, uint64_t *got)
{
	uint64_t off = first * dc->block_size;
	uint64_t len = dc_min(v->size, (last + 1) * dc->block_size) - off;
	int r;

	*got = 0;
	if (v->blocks[first].mem) { /* the whole run goes to memory */
		uint64_t n = last - first + 1;
		struct iovec *iov = calloc(n, sizeof(*iov));
		if (!iov)
			return ENOMEM;
		for (uint64_t i = 0; i < n; i++) {
			iov[i].iov_base = v->blocks[first + i].mem;
			iov[i].iov_len = dc_block_len(dc, v, first + i);
		}
		r = v->st->ops->get_iov(v->st, v->key, off, v->etag[0] ? v->etag : NULL, io, iov,
					(int)n, got);
		free(iov);
		if (r == 0 && *got < len)
			r = ESTALE;
		return r;
	}
	r = v->st->ops->get(v->st, v->key, off, len, v->etag[0] ? v->etag : NULL, io, v->fd,
			    (off_t)off, got);
	if (r == 0 && *got < len)
		r = ESTALE; /* shorter than its listed size: it changed */
	if (r != 0)
		fallocate(v->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
	return r;
}

/* Blocks [first, last] stop FETCHING: PRESENT when r == 0, else ABSENT. */
static void dc_fetch_done(struct data_cache *dc, struct dc_version *v, uint64_t first,
			  uint64_t last, int r)
{
	for (uint64_t i = first; i <= last; i++) {
		struct dc_block *b = &v->blocks[i];
		uint64_t len = dc_block_len(dc, v, i);
		b->job = NULL;
		if (b->mem) { /* in memory: not in the LRU, not counted in the file's bytes */
			if (r != 0) {
				dc_mem_drop(dc, b);
				continue;
			}
			b->state = DC_PRESENT;
			b->lru_prev = NULL;
			b->lru_next = v->mem_head;
			if (v->mem_head)
				v->mem_head->lru_prev = b;
			v->mem_head = b;
			continue;
		}
		dc->fetching_bytes -= len;
		if (r == 0) {
			b->state = DC_PRESENT;
			b->v = v;
			dc_lru_append(dc, b);
			dc->present_bytes += len;
			v->n_present++;
		} else {
			b->state = DC_ABSENT;
		}
	}
	if (r == ESTALE)
		dc_version_drop(dc, v); /* v has an open handle: not freed here */
	pthread_cond_broadcast(&dc->block_changed);
}

/* Take queued job j off dc->queue. */
static void dc_queue_remove(struct data_cache *dc, struct dc_job *j)
{
	if (j->queue_prev)
		j->queue_prev->queue_next = j->queue_next;
	else
		dc->queue_head = j->queue_next;
	if (j->queue_next)
		j->queue_next->queue_prev = j->queue_prev;
	else
		dc->queue_tail = j->queue_prev;
	j->queue_next = j->queue_prev = NULL;
}

static void dc_job_unlink(struct data_cache *dc, struct dc_job *j)
{
	struct dc_version *v = j->v;

	if (!j->running)
		dc_queue_remove(dc, j);
	if (j->v_prev)
		j->v_prev->v_next = j->v_next;
	else
		v->jobs = j->v_next;
	if (j->v_next)
		j->v_next->v_prev = j->v_prev;
	v->n_jobs--;
}

/* A job is over (r == 0: its block is present). */
static void dc_job_end(struct data_cache *dc, struct dc_job *j, int r)
{
	dc_job_unlink(dc, j);
	if (r != 0 && (j->cancel || r == ECANCELED))
		dc->stats.readahead_cancelled++;
	else if (r != 0)
		j->v->read_ahead_paused_until = dc_now_ms() + DC_READ_AHEAD_PAUSE_MS;
	dc_fetch_done(dc, j->v, j->block, j->block, r);
	free(j);
}

static void dc_job_cancel(struct data_cache *dc, struct dc_job *j)
{
	__atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
	if (j->running) {
		/* The GET of the run goes on while a block of it is still wanted; once none is,
		 * the store returns ECANCELED and the worker ends the jobs. Atomic: the store
		 * polls the flag without our lock (store_io.cancel). */
		for (struct dc_job *k = j->run_head; k; k = k->run_next)
			if (!k->cancel)
				return;
		__atomic_store_n(&j->run_head->run_cancel, 1, __ATOMIC_RELAXED);
		return;
	}
	dc_job_end(dc, j, ECANCELED);
}

/* Cancel v's read-ahead that no reader wants any more. */
static void dc_cancel_unwanted(struct data_cache *dc, struct dc_version *v)
{
	struct dc_job *j = v->jobs, *next;

	for (; j; j = next) {
		next = j->v_next;
		/* not read yet by definition: within the slack behind a stream, it still is */
		if (j->cancel || v->blocks[j->block].waiters > 0 || dc_block_wanted(dc, v, j->block, 0))
			continue;
		dc_job_cancel(dc, j);
	}
}

/* Blocks of f's window in memory or on their way there. */
static uint64_t dc_mem_ahead(const struct data_cache_file *f)
{
	uint64_t n = 0;

	for (uint64_t i = f->win_lo; i < f->win_hi; i++)
		n += f->v->blocks[i].mem != NULL;
	return n;
}

static bool dc_to_read_ahead(const struct dc_block *b, const struct data_cache_file *f)
{
	return b->state == DC_ABSENT && b->consumed_by != f->stream;
}

static void dc_schedule_read_ahead(struct data_cache_file *f, uint64_t from)
{
	struct data_cache *dc = f->dc;
	struct dc_version *v = f->v;
	uint64_t to = f->win_hi, chunk = dc->run_blocks, share = 0;
	bool use_mem = v->st->ops->get_iov && dc->mem_max, to_mem = false;

	/* Streams read side by side share the read-ahead memory: each may fill its share (less
	 * what it keeps behind for the kernel's late requests and the block it reads) and then
	 * waits for its own to be read; in chunks of half of it, so that two GETs overlap. */
	if (use_mem && dc->n_sequential > 1) {
		share = dc->mem_max / dc->block_size / dc->n_sequential;
		share = share > dc->mem_behind + 2 ? share - dc->mem_behind - 1 : 1;
		if (share / 2 < chunk)
			chunk = share / 2 ? share / 2 : 1;
	}

	/* Queue whole chunks: while the reader moves on block by block, wait until a chunk of
	 * the window is absent, so that a worker takes it in one GET, not a GET a block. A
	 * block this stream read out of memory is not absent for it: a late kernel request
	 * (behind the furthest read) starts read-ahead from where it ends, before blocks the
	 * kernel already has. */
	while (from < to && !dc_to_read_ahead(&v->blocks[from], f))
		from++;
	if (to - from < chunk && to < v->nblocks)
		return;
	for (uint64_t i = from; i < to && !dc->stopping; i++) {
		struct dc_block *b = &v->blocks[i];
		uint64_t len = dc_block_len(dc, v, i);
		struct dc_job *j;

		/* A chunk goes into memory when there is room for all of it (one GET fills one
		 * or the other) and, with several streams, within this one's share. When it
		 * does not, and this reader has a chunk in memory ahead already, wait: it gives
		 * memory back as it reads. Else into the file. */
		if ((i - from) % chunk == 0 && use_mem) {
			uint64_t need = dc_min(chunk, to - i) * dc->block_size;
			uint64_t ahead = dc_mem_ahead(f);
			/* short: what its readers have passed, keeping the 2 blocks behind that
			 * the kernel's out-of-order requests may still want */
			if (dc->mem_bytes + need > dc->mem_max)
				dc_mem_drop_behind(dc, v, 2);
			to_mem = dc->mem_bytes + need <= dc->mem_max &&
				 (!share || ahead + chunk <= share);
			if (!to_mem && ahead >= chunk)
				return;
		}
		if (!dc_to_read_ahead(b, f))
			continue;
		if (!(j = calloc(1, sizeof(*j))))
			return;
		/* The file's part: at most half the cache, evicting only what nobody reads. */
		if (!(to_mem && (b->mem = dc_mem_get(dc))) &&
		    (dc->fetching_bytes + len > dc->max_bytes / 2 || !dc_reserve(dc, len, 2))) {
			free(j);
			return;
		}
		if (b->mem)
			dc->stats.readahead_to_memory++;
		j->v = v;
		j->block = i;
		b->state = DC_FETCHING;
		b->job = j;
		j->v_next = v->jobs;
		if (v->jobs)
			v->jobs->v_prev = j;
		v->jobs = j;
		v->n_jobs++;
		j->queue_prev = dc->queue_tail;
		if (dc->queue_tail)
			dc->queue_tail->queue_next = j;
		else
			dc->queue_head = j;
		dc->queue_tail = j;
		dc->stats.readahead_started++;
		pthread_cond_signal(&dc->work_ready);
	}
}

/* Follow the reader's stream: sequential or not, its window, read-ahead to start or drop.
 * A read starting where the previous one ended is sequential; reads a little out of order
 * (parallel kernel requests) keep the stream; anything else is a seek. */
static void dc_track_stream(struct data_cache_file *f, uint64_t off, uint64_t len)
{
	struct data_cache *dc = f->dc;
	struct dc_version *v = f->v;
	uint64_t bs = dc->block_size, end = off + len, lo;
	bool near = f->has_read && off <= f->next_off + dc->slack && off + dc->slack >= f->next_off;

	if (f->has_read && off == f->next_off && !f->sequential) {
		f->sequential = true;
		dc->n_sequential++;
	} else if (!near && f->sequential) {
		f->sequential = false;
		dc->n_sequential--;
	}
	if (!near) {
		f->lag = 0;
		if (++dc->stream_seq == 0)
			dc->stream_seq = 1;
		f->stream = dc->stream_seq;
	} else if (off < f->next_off && f->next_off - off > f->lag)
		f->lag = f->next_off - off;
	if (!near || end > f->next_off)
		f->next_off = end;
	f->has_read = true;
	/* the window starts as far behind the furthest read as reads have come */
	lo = f->next_off - dc_min(f->next_off, len + f->lag);
	f->win_lo = dc_min(lo, off) / bs;
	f->win_hi = (end - 1) / bs + 1;
	if (f->sequential && dc->n_workers > 0) {
		uint64_t ra_end = f->next_off + dc_min(dc->read_ahead, v->size);
		ra_end = dc_min(ra_end, v->size);
		f->win_hi = dc_min(v->nblocks, (ra_end - 1) / bs + 1);
		if (f->win_hi < (end - 1) / bs + 1)
			f->win_hi = (end - 1) / bs + 1;
	}
	dc_cancel_unwanted(dc, v);
	dc_mem_drop_unwanted(dc, v);
	if (f->sequential && dc->n_workers > 0 &&
	    (v->read_ahead_paused_until == 0 || dc_now_ms() >= v->read_ahead_paused_until))
		dc_schedule_read_ahead(f, (end - 1) / bs + 1);
}

/* Locked: take queued job j off dc->queue and make it part of the run headed by head. */
static void dc_job_take(struct data_cache *dc, struct dc_job *j, struct dc_job *head)
{
	dc_queue_remove(dc, j);
	j->running = true;
	j->run_head = head;
	j->run_next = NULL;
}

static void *dc_worker(void *arg)
{
	struct data_cache *dc = arg;

	pthread_mutex_lock(&dc->lock);
	for (;;) {
		struct dc_job *j, *tail, *next;
		struct dc_version *v;
		struct store_io io;
		uint64_t got, last;
		int r;

		while (!dc->stopping && !dc->queue_head)
			pthread_cond_wait(&dc->work_ready, &dc->lock);
		if (dc->stopping)
			break;
		j = tail = dc->queue_head;
		dc_job_take(dc, j, j);
		/* Queued jobs of the blocks right after it join its GET, up to dc->run_blocks. */
		for (last = j->block; last + 1 < j->v->nblocks && last + 1 - j->block < dc->run_blocks;
		     last++) {
			struct dc_block *kb = &j->v->blocks[last + 1];
			struct dc_job *k = kb->job;
			/* one GET fills either memory or the file */
			if (!k || k->running || k->cancel || !kb->mem != !j->v->blocks[j->block].mem)
				break;
			dc_job_take(dc, k, j);
			tail->run_next = k;
			tail = k;
		}
		io.priority = STORE_BACKGROUND;
		io.cancel = &j->run_cancel;
		pthread_mutex_unlock(&dc->lock);

		r = dc_fetch_io(dc, j->v, j->block, last, &io, &got);

		pthread_mutex_lock(&dc->lock);
		DC_CHECK(dc);
		dc->stats.bytes_fetched += got;
		if (r != 0 && r != ECANCELED && !j->run_cancel)
			log_debug("read-ahead of '%s' blocks %" PRIu64 "-%" PRIu64 " failed: %s",
				  j->v->key, j->block, last, strerror(r));
		v = j->v;
		for (; j; j = next) {
			next = j->run_next;
			dc_job_end(dc, j, r);
		}
		/* blocks of the run that nobody wants any more (it ran on for the others) */
		dc_mem_drop_unwanted(dc, v);
	}
	pthread_mutex_unlock(&dc->lock);
	return NULL;
}

static bool dc_fetchable(const struct dc_block *b)
{
	return b->state == DC_ABSENT ||
	       (b->state == DC_FETCHING && b->job && !b->job->running && !b->job->cancel);
}

/* Locked; blocks[first] is fetchable. Fetch the run of fetchable blocks first..*run_last
 * (at most last) in one GET, taking over queued read-ahead jobs of those blocks. 0: the run
 * is PRESENT; DC_NO_ROOM: nothing reserved and nothing changed, the run is first..*run_last;
 * else the store's error. */
static int dc_fetch_run(struct data_cache *dc, struct dc_version *v, uint64_t first, uint64_t last,
			uint64_t *run_last)
{
	uint64_t e = first, need = 0, got;
	int r;

	while (e < last && dc_fetchable(&v->blocks[e + 1]))
		e++;
	/* absent blocks, and queued read-ahead into memory, need room in the file */
	for (uint64_t i = first; i <= e; i++)
		if (v->blocks[i].state == DC_ABSENT || v->blocks[i].mem)
			need += dc_block_len(dc, v, i);
	if (!dc_reserve(dc, need, 3)) {
		uint64_t whole = e;
		e = first; /* a smaller step: one block */
		need = v->blocks[first].state == DC_ABSENT || v->blocks[first].mem
			       ? dc_block_len(dc, v, first)
			       : 0;
		if (!dc_reserve(dc, need, 3)) {
			*run_last = whole;
			return DC_NO_ROOM;
		}
	}
	for (uint64_t i = first; i <= e; i++) {
		struct dc_block *b = &v->blocks[i];
		if (b->job) { /* queued read-ahead: its reservation becomes ours */
			dc_job_unlink(dc, b->job);
			free(b->job);
			b->job = NULL;
		}
		if (b->mem) /* ... or it had memory, and the file's room was reserved above */
			dc_mem_drop(dc, b);
		b->state = DC_FETCHING;
	}
	*run_last = e;
	pthread_mutex_unlock(&dc->lock);

	r = dc_fetch_io(dc, v, first, e, NULL, &got);

	pthread_mutex_lock(&dc->lock);
	DC_CHECK(dc);
	dc->stats.bytes_fetched += got;
	dc_fetch_done(dc, v, first, e, r);
	return r;
}

/* Without the lock: read [off, off+len) from the store straight into buf, through a memory
 * file because the store writes into a descriptor. */
static int dc_bypass(struct dc_version *v, void *buf, uint64_t off, uint64_t len, uint64_t *got)
{
	int fd = memfd_create("objfs-read", MFD_CLOEXEC), r;

	*got = 0;
	if (fd < 0)
		return errno;
	r = v->st->ops->get(v->st, v->key, off, len, v->etag[0] ? v->etag : NULL, NULL, fd, 0, got);
	if (r == 0 && *got < len)
		r = ESTALE;
	if (r == 0)
		r = dc_pread_full(fd, buf, len, 0);
	close(fd);
	return r;
}

/* Locked: dc_bypass of [pos, end) into dst with the lock released, counting what came. */
static int dc_read_around(struct data_cache *dc, struct dc_version *v, char *dst, uint64_t pos,
			  uint64_t end)
{
	uint64_t got;
	int r;

	pthread_mutex_unlock(&dc->lock);
	r = dc_bypass(v, dst, pos, end - pos, &got);
	pthread_mutex_lock(&dc->lock);
	dc->stats.bytes_fetched += got;
	return r;
}

/* Evict everything that nobody reads now: the disk is full. */
static void dc_drop_for_space(struct data_cache *dc)
{
	struct dc_block *b;
	while ((b = dc_pick_victim(dc, 2)))
		dc_evict(dc, b);
}

/* ---- the interface -------------------------------------------------------------------- */

ssize_t data_cache_read(struct data_cache_file *f, void *buf, size_t len, uint64_t off)
{
	struct data_cache *dc = f->dc;
	struct dc_version *v = f->v;
	uint64_t bs = dc->block_size, end, pos, last, uncounted;
	bool enospc_retried = false;
	char *out = buf;
	int err = 0;

	pthread_mutex_lock(&dc->lock);
	DC_CHECK(dc);
	if (len == 0 || off >= v->size) {
		pthread_mutex_unlock(&dc->lock);
		return 0;
	}
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	if (len > v->size - off)
		len = (size_t)(v->size - off);
	end = off + len;
	last = (end - 1) / bs;
	uncounted = off / bs; /* blocks below it are counted in hits or misses already */
	dc_track_stream(f, off, len);

	for (pos = off; pos < end;) {
		uint64_t i = pos / bs, run_last, seg_end;
		struct dc_block *b = &v->blocks[i];
		int r, br;

		if (b->state != DC_ABSENT && !dc_fetchable(b)) {
			if (i >= uncounted) { /* cached, or on its way already */
				dc->stats.hits++;
				uncounted = i + 1;
			}
		}
		if (b->state == DC_FETCHING && !dc_fetchable(b)) { /* another thread fetches it */
			b->waiters++;
			while (b->state == DC_FETCHING)
				pthread_cond_wait(&dc->block_changed, &dc->lock);
			b->waiters--;
			continue; /* present now, or absent again after an error: look again */
		}
		if (b->state == DC_ABSENT && b->consumed_by != 0 && b->consumed_by == f->stream) {
			/* This stream read all of the block and let it go, so the kernel had
			 * those pages and lost some (Linux 6.18 asks again for 4-280 KiB pieces,
			 * tens of MiB behind the stream, under CPU load). Fetch exactly that,
			 * not the block again. */
			seg_end = dc_min(end, (i + 1) * bs);
			if (i >= uncounted) {
				dc->stats.misses++;
				uncounted = i + 1;
			}
			dc->stats.kernel_rereads++;
			br = dc_read_around(dc, v, out + (pos - off), pos, seg_end);
			if (br != 0) {
				err = br;
				break;
			}
			pos = seg_end;
			continue;
		}
		if (b->state == DC_PRESENT) {
			run_last = i;
		} else {
			r = dc_fetch_run(dc, v, i, last, &run_last);
			if (run_last >= uncounted) {
				dc->stats.misses += run_last + 1 - (i > uncounted ? i : uncounted);
				uncounted = run_last + 1;
			}
			if (r == ENOSPC && !enospc_retried) {
				enospc_retried = true;
				dc_drop_for_space(dc);
				continue;
			}
			if (r == DC_NO_ROOM || r == ENOSPC) {
				/* No room in the cache, or none on its disk: read around it. */
				seg_end = dc_min(end, (run_last + 1) * bs);
				br = dc_read_around(dc, v, out + (pos - off), pos, seg_end);
				dc->stats.bypass_reads++;
				if (br != 0) {
					/* the disk is full and memory too: say the disk */
					err = r == ENOSPC && (br == ENOMEM || br == ENOSPC) ? ENOSPC
											    : br;
					break;
				}
				/* Blocks it read whole are this stream's: a queued read-ahead of one
				 * (into memory, which needs no room in the file) would fetch it again. */
				for (uint64_t k = (pos + bs - 1) / bs; (k + 1) * bs <= seg_end; k++) {
					if (v->blocks[k].job && !v->blocks[k].job->running)
						dc_job_cancel(dc, v->blocks[k].job);
					v->blocks[k].consumed_by = f->stream;
				}
				pos = seg_end;
				continue;
			}
			if (r != 0) {
				err = r;
				break;
			}
		}
		if (b->mem) { /* present in memory */
			seg_end = dc_min(end, (i + 1) * bs);
			b->pins++;
			pthread_mutex_unlock(&dc->lock);
			memcpy(out + (pos - off), b->mem + (pos - i * bs), seg_end - pos);
			pthread_mutex_lock(&dc->lock);
			b->pins--;
			b->copied = (uint32_t)dc_min(UINT32_MAX, b->copied + (seg_end - pos));
			if (b->copied >= dc_block_len(dc, v, i))
				b->consumed_by = f->stream;
			/* Not freed at the block's end: the kernel's parallel requests come out of
			 * order, and one for its start may still come. dc_mem_drop_unwanted frees
			 * it once the reader is mem_behind blocks past it (unread: dc->slack). */
			pos = seg_end;
			continue;
		}
		/* Blocks i..run_last are present: pin them and copy out in one go. */
		seg_end = dc_min(end, (run_last + 1) * bs);
		for (uint64_t k = i; k <= run_last; k++) {
			v->blocks[k].pins++;
			dc_lru_touch(dc, &v->blocks[k]);
		}
		pthread_mutex_unlock(&dc->lock);
		r = dc_pread_full(v->fd, out + (pos - off), seg_end - pos, pos);
		pthread_mutex_lock(&dc->lock);
		for (uint64_t k = i; k <= run_last; k++)
			v->blocks[k].pins--;
		if (r != 0) {
			log_warn("cannot read cache file '%s': %s", v->path, strerror(r));
			err = r;
			break;
		}
		pos = seg_end;
	}
	pthread_mutex_unlock(&dc->lock);
	return err ? -(ssize_t)err : (ssize_t)len;
}

struct data_cache_file *data_cache_open(struct data_cache *dc, struct store *st, const char *key,
					const char *etag, uint64_t size, int *err)
{
	struct data_cache_file *f = calloc(1, sizeof(*f));
	struct dc_version *v;
	int r = 0;

	if (!etag)
		etag = "";
	if (!f) {
		*err = ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&dc->lock);
	v = dc_lookup(dc, st, key);
	if (v && (strcmp(v->etag, etag) != 0 || v->size != size)) {
		dc_version_drop(dc, v); /* a new ETag: the old data goes */
		v = NULL;
	}
	if (v && v->fd < 0) {
		v->fd = open(v->path, O_RDWR | O_CLOEXEC);
		if (v->fd < 0) {
			r = errno;
			log_warn("cannot reopen cache file '%s': %s", v->path, strerror(r));
			dc_version_drop(dc, v); /* its blocks are gone or unreadable */
			v = NULL;
		}
	}
	if (!v && (r = dc_version_create(dc, st, key, etag, size, &v)) != 0)
		goto fail;
	f->dc = dc;
	f->v = v;
	f->next = v->handles;
	if (v->handles)
		v->handles->prev = f;
	v->handles = f;
	v->n_open++;
	pthread_mutex_unlock(&dc->lock);
	return f;
fail:
	pthread_mutex_unlock(&dc->lock);
	free(f);
	*err = r;
	return NULL;
}

void data_cache_close(struct data_cache_file *f)
{
	struct data_cache *dc;
	struct dc_version *v;

	if (!f)
		return;
	dc = f->dc;
	v = f->v;
	pthread_mutex_lock(&dc->lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		v->handles = f->next;
	if (f->next)
		f->next->prev = f->prev;
	if (f->sequential)
		dc->n_sequential--;
	dc_cancel_unwanted(dc, v);
	/* The last reader: wait for the cancelled fetches to come back, so that no store call
	 * for this version outlives the close. f still counts in n_open, which keeps v. */
	while (!v->handles && v->n_jobs > 0)
		pthread_cond_wait(&dc->block_changed, &dc->lock);
	dc_mem_drop_unwanted(dc, v);
	v->n_open--;
	dc_version_idle(dc, v);
	pthread_mutex_unlock(&dc->lock);
	free(f);
}

void data_cache_invalidate(struct data_cache *dc, const char *key)
{
	pthread_mutex_lock(&dc->lock);
	struct dc_version *v = dc->buckets[dc_hash(dc, key)], *next;
	for (; v; v = next) {
		next = v->hash_next;
		if (strcmp(v->key, key) == 0)
			dc_version_drop(dc, v);
	}
	pthread_mutex_unlock(&dc->lock);
}

void data_cache_get_stats(struct data_cache *dc, struct data_cache_stats *out)
{
	pthread_mutex_lock(&dc->lock);
	*out = dc->stats;
	out->bytes_cached = dc->present_bytes;
	out->bytes_fetching = dc->fetching_bytes;
	out->bytes_in_memory = dc->mem_bytes;
	out->max_bytes = dc->max_bytes;
	pthread_mutex_unlock(&dc->lock);
}

/* ---- create / destroy ----------------------------------------------------------------- */

/* Remove everything inside the directory open as dfd (closed here). 0 or errno. */
static int dc_empty_dir(int dfd)
{
	DIR *d = fdopendir(dfd);
	int r = 0;

	if (!d) {
		r = errno;
		close(dfd);
		return r;
	}
	for (;;) {
		struct dirent *e;
		errno = 0;
		if (!(e = readdir(d))) {
			r = errno;
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR) {
			r = errno;
			break;
		}
		int sub = openat(dirfd(d), e->d_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			r = errno;
			break;
		}
		if ((r = dc_empty_dir(sub)) != 0)
			break;
		if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0) {
			r = errno;
			break;
		}
	}
	closedir(d);
	return r;
}

/* Make data_dir an empty directory of ours. 0 or errno; *what names the failed step. */
static int dc_prepare_dir(const char *dir, const char *data_dir, const char **what)
{
	int dfd, fd;
	char *probe = NULL;

	*what = "create";
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return errno;
	*what = "clear";
	dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0) {
		int r = dc_empty_dir(dfd);
		if (r != 0)
			return r;
	} else if (errno == ENOTDIR || errno == ELOOP) {
		if (unlink(data_dir) != 0) /* a file or a symlink where our directory goes */
			return errno;
	} else if (errno != ENOENT) {
		return errno;
	}
	*what = "create";
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
		return errno;
	*what = "write to";
	if (asprintf(&probe, "%s/.probe", data_dir) < 0)
		return ENOMEM;
	fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "x", 1) != 1) {
		int r = fd < 0 ? errno : (errno ? errno : EIO);
		if (fd >= 0)
			close(fd);
		unlink(probe);
		free(probe);
		return r;
	}
	close(fd);
	unlink(probe);
	free(probe);
	return 0;
}

static void dc_stop_workers(struct data_cache *dc, unsigned started)
{
	pthread_mutex_lock(&dc->lock);
	dc->stopping = true;
	/* Jobs exist only while a handle is open, which destroy forbids; be safe anyway. */
	for (size_t i = 0; i < dc->n_buckets; i++)
		for (struct dc_version *v = dc->buckets[i]; v; v = v->hash_next)
			for (struct dc_job *j = v->jobs, *next; j; j = next) {
				next = j->v_next;
				dc_job_cancel(dc, j);
			}
	pthread_cond_broadcast(&dc->work_ready);
	pthread_mutex_unlock(&dc->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(dc->workers[i], NULL);
}

/* The kernel's read-ahead has several requests in flight (read_ahead_kb over max_read) and
 * they arrive in any order: the current window and the next one, kra bytes each, plus the
 * requests' own delays. With 64 MiB, a reader's requests came up to 139 MiB apart in an
 * ASan build. Within 4 kra, or within our own window, a read is still the stream's. */
static void dc_set_slack(struct data_cache *dc, uint64_t kra)
{
	uint64_t slack = dc->read_ahead > 2 * dc->block_size ? dc->read_ahead : 2 * dc->block_size;

	if (4 * kra > slack)
		slack = 4 * kra;
	dc->slack = slack;
}

void data_cache_set_kernel_read_ahead(struct data_cache *dc, uint64_t bytes)
{
	pthread_mutex_lock(&dc->lock);
	dc_set_slack(dc, bytes);
	pthread_mutex_unlock(&dc->lock);
}

struct data_cache *data_cache_create(const struct data_cache_config *cfg, char *err, size_t errlen)
{
	struct data_cache *dc = NULL;
	const char *what;
	sigset_t all, old;
	unsigned started = 0;
	bool sync_ready = false;
	int r;

	if (!cfg->dir || !cfg->dir[0]) {
		snprintf(err, errlen, "no cache directory given: set one with -o cache_dir=DIR");
		goto fail;
	}
	if (!(dc = calloc(1, sizeof(*dc))) || asprintf(&dc->data_dir, "%s/data", cfg->dir) < 0) {
		if (dc)
			dc->data_dir = NULL;
		goto nomem;
	}
	dc->block_size = cfg->block_size ? cfg->block_size : DC_DEFAULT_BLOCK;
	dc->max_bytes = cfg->max_bytes;
	dc->read_ahead = cfg->read_ahead;
	dc->mem_max = cfg->read_ahead ? cfg->read_ahead_mem : 0;
	/* at most an eighth of the memory (small blocks and little memory), at least 2 */
	dc->mem_behind = DC_MEM_BEHIND_BYTES / dc->block_size;
	if (dc->mem_behind > dc->mem_max / dc->block_size / 8)
		dc->mem_behind = dc->mem_max / dc->block_size / 8;
	if (dc->mem_behind < 2)
		dc->mem_behind = 2;
	dc_set_slack(dc, 0);
	dc->n_workers = !cfg->read_ahead ? 0 : cfg->workers ? cfg->workers : DC_DEFAULT_WORKERS;
	/* a chunk is at most half the window, so that a chunk of it is absent again soon */
	dc->run_blocks = dc_min(cfg->read_ahead_chunk, dc->read_ahead / 2) / dc->block_size;
	if (dc->run_blocks < 1)
		dc->run_blocks = 1;
	if (dc->mem_max && dc->mem_max < dc->run_blocks * dc->block_size)
		log_warn("read_ahead_mem=%" PRIu64 " is less than one read-ahead GET (%" PRIu64
			 " bytes): read-ahead goes to the cache directory; raise read_ahead_mem or "
			 "lower read_ahead_chunk",
			 dc->mem_max, dc->run_blocks * dc->block_size);
	if ((r = dc_prepare_dir(cfg->dir, dc->data_dir, &what)) != 0) {
		snprintf(err, errlen,
			 "cannot %s cache directory '%s': %s; fix it or choose another with -o "
			 "cache_dir=DIR",
			 what, dc->data_dir, strerror(r));
		goto fail;
	}
	dc->n_buckets = DC_INITIAL_BUCKETS;
	dc->buckets = calloc(dc->n_buckets, sizeof(*dc->buckets));
	dc->workers = calloc(dc->n_workers ? dc->n_workers : 1, sizeof(*dc->workers));
	if (!dc->buckets || !dc->workers)
		goto nomem;
	pthread_mutex_init(&dc->lock, NULL);
	pthread_cond_init(&dc->block_changed, NULL);
	pthread_cond_init(&dc->work_ready, NULL);
	sync_ready = true;

	/* Workers inherit a mask with every signal blocked: signals go to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; started < dc->n_workers; started++)
		if ((r = pthread_create(&dc->workers[started], NULL, dc_worker, dc)) != 0)
			break;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started < dc->n_workers) {
		snprintf(err, errlen,
			 "cannot start read-ahead threads: %s; -o read_ahead=0 runs without them",
			 strerror(r));
		goto fail;
	}
	return dc;

nomem:
	snprintf(err, errlen, "out of memory creating the data cache");
fail:
	if (dc) {
		if (sync_ready) {
			dc_stop_workers(dc, started);
			pthread_cond_destroy(&dc->work_ready);
			pthread_cond_destroy(&dc->block_changed);
			pthread_mutex_destroy(&dc->lock);
		}
		free(dc->workers);
		free(dc->buckets);
		free(dc->data_dir);
		free(dc);
	}
	return NULL;
}

void data_cache_destroy(struct data_cache *dc)
{
	int dfd;

	if (!dc)
		return;
	dc_stop_workers(dc, dc->n_workers);
	for (size_t i = 0; i < dc->n_buckets; i++)
		while (dc->buckets[i]) {
			struct dc_version *v = dc->buckets[i];
			if (v->n_open > 0 || v->n_jobs > 0)
				log_warn("data cache destroyed with '%s' still open", v->key);
			dc_version_free(dc, v); /* takes it off the chain */
		}
	dc_mem_pool_free(dc);
	dfd = open(dc->data_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0)
		dc_empty_dir(dfd);
	pthread_cond_destroy(&dc->work_ready);
	pthread_cond_destroy(&dc->block_changed);
	pthread_mutex_destroy(&dc->lock);
	free(dc->workers);
	free(dc->buckets);
	free(dc->data_dir);
	free(dc);
}
