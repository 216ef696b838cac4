/*
 * fuse_ops.c - the FUSE adapter: every file system operation, the one place that negates
 * errno. Builds the namespace from LIST results, reads through the data cache, writes through
 * staging (staging.h) and the sync journal (sync.h).
 *
 * libfuse's high-level path API rather than the low-level one: S3 is a namespace of paths, so
 * the path API hands us exactly the key we need, and libfuse keeps the inode table, lookup
 * counts and the rename/unlink path locking that we would otherwise rewrite. Its one cost is
 * that entry/attr timeouts are global (fuse_config) rather than per reply; they are set from
 * attr_ttl/neg_ttl, which is what objfs wants anyway. nullpath_ok: operations on open handles
 * use the handle's key. hard_remove is off so that fstat() of an open file that was unlinked
 * works: libfuse renames it to a hidden name, which objfs takes as the unlink and keeps only in
 * memory (see "open files that were unlinked" below).
 *
 * Names: path "/a/b" is key "a/b" relative to the store root; a directory "a/b" may have a
 * marker object "a/b/" (s3fs style, with metadata) or be implicit (some key starts with
 * "a/b/"). An object "x" and a prefix "x/" may both exist on S3: the object wins.
 *
 * Lookup order for a name: files open for writing (staging), the sync journal (pending
 * records), the metadata cache, the parent's cached listing (absent there: ENOENT with no
 * request), then the store: HEAD "key" (one request for the common case, a file), and only on
 * 404 a LIST of prefix "key/" with max-keys 1 (a directory; when its first key is the marker
 * "key/" itself, one HEAD of it for the metadata). The reverse order would cost two requests
 * for every file and save one only for implicit directories, which are mostly found through
 * their parent's listing anyway.
 *
 * Listings: LIST with delimiter "/" page by page; the attributes of every entry go into the
 * metadata cache, so `ls -l` of N objects costs N/1000 LISTs and no HEAD. A LIST carries no
 * user metadata (mode, uid, gid, mtime): for directories of at most FO_HEAD_MAX entries the
 * entries are HEADed in parallel (as s3fs does for every directory) so s3fs/objfs metadata
 * shows exactly; larger directories show LIST attributes (defaults for mode and owner,
 * Last-Modified as mtime) until a name is looked up again after its TTL.
 *
 * Overlay (dest= differs from the source): reads look in the destination first, then the
 * source; writes go to the destination (a write to a source file copies it up); anything
 * that would have to change or delete a source object is EROFS, with one log line.
 *
 * Errors: store errors reach callers as EIO (ENOENT only when the store said 404, EACCES when
 * it said 403). Renames of directories are not atomic: one journal record per key.
 *
 * Locking: none of its own; the caches, staging and sync lock themselves. Handles (fi->fh)
 * belong to one open file and may be used by several threads at once for reads.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "data_cache.h"
#include "fuse_ops.h"
#include "log.h"
#include "meta_cache.h"
#include "opts.h"
#include "staging.h"
#include "store.h"
#include "sync.h"

#define FO_HEAD_MAX 256    /* directories up to this many entries get exact metadata */
#define FO_HEAD_THREADS 8  /* parallel HEADs for that */
#define FO_BLKSIZE 131072  /* st_blksize: the I/O size tools like cp use */

struct fo_old_key {
	struct fo_old_key *next;
	char *key;
};

struct fo_handle {
	char *key; /* its name; follows renames (fo_handles_renamed): read it with fo_hkey() */
	struct fo_old_key *old_keys; /* names it had, freed with it (other threads may hold them) */
	bool renamed; /* key moved since it was opened; atomic */
	struct data_cache_file *dcf; /* content at the store */
	int spool_fd;                /* content in the sync spool; -1 */
	struct staging_file *sf;     /* staged state (writers, or readers of a file being written) */
	bool writable;
	struct meta_attr attr;       /* at open */
	struct store *st;            /* store dcf reads from */
	char *read_key;              /* key dcf reads (differs after a pending server-side rename) */
	/* Readers of one handle run in parallel; fo_read_reopen replaces dcf (with st, read_key,
	 * attr) under dcf_lock held for writing, reads use dcf under it held for reading. Ready
	 * in handles fo_open made (the others never have a dcf). */
	pthread_rwlock_t dcf_lock;
	bool dcf_lock_ready;
	bool unlinked; /* its name was unlinked while it was open (fo_hide); atomic */
	struct fo_handle *open_prev, *open_next; /* fo_open_files */
};

/* The name of an open file now. */
static inline const char *fo_hkey(struct fo_handle *h)
{
	return __atomic_load_n(&h->key, __ATOMIC_ACQUIRE);
}

/* One name of a directory listing being built. */
struct fo_ent {
	char *name;
	struct meta_attr attr;
	bool have_attr;
	int prio;        /* -1 open for writing, 0 pending, 1 destination, 2 source: lower wins */
	bool removed;    /* pending removal: hides lower entries */
	bool need_head;  /* attributes only from LIST */
};

struct fo_list {
	struct fo_ent *v;
	size_t n, cap;
	const char *prefix;
	int err;
};

static struct fuse_ops_fs *fo_fs(void)
{
	return fuse_get_context()->private_data;
}

/* Every open file and directory handle, so that those the kernel never released (a RELEASE
 * still queued when the mount went away) are freed by fuse_ops_release_all. */
static pthread_mutex_t fo_open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fo_handle *fo_open_files;
static struct fo_dir *fo_open_dirs;

#define FO_TRACK(head, h)                                                                      \
	do {                                                                                   \
		pthread_mutex_lock(&fo_open_lock);                                             \
		(h)->open_prev = NULL;                                                         \
		(h)->open_next = (head);                                                       \
		if (head)                                                                      \
			(head)->open_prev = (h);                                               \
		(head) = (h);                                                                  \
		pthread_mutex_unlock(&fo_open_lock);                                           \
	} while (0)
#define FO_UNTRACK(head, h)                                                                    \
	do {                                                                                   \
		pthread_mutex_lock(&fo_open_lock);                                             \
		if ((h)->open_prev)                                                            \
			(h)->open_prev->open_next = (h)->open_next;                            \
		else                                                                           \
			(head) = (h)->open_next;                                               \
		if ((h)->open_next)                                                            \
			(h)->open_next->open_prev = (h)->open_prev;                            \
		pthread_mutex_unlock(&fo_open_lock);                                           \
	} while (0)

static const char *fo_key(const char *path)
{
	return path[0] == '/' ? path + 1 : path;
}

/* Inside errno of a store call -> what a caller of the file system sees. */
static int fo_store_errno(int e)
{
	switch (e) {
	case 0:
	case ENOENT:
	case EACCES:
	case ENOMEM:
	case ENOSPC:
	case EROFS:
	case EFBIG:
	case ENAMETOOLONG:
		return e;
	default:
		return EIO;
	}
}

static void fo_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* "a/b/c" -> parent "a/b", name "c"; "c" -> "", "c". parent must hold PATH_MAX. */
static const char *fo_split(const char *key, char *parent)
{
	const char *slash = strrchr(key, '/');

	if (!slash) {
		parent[0] = '\0';
		return key;
	}
	memcpy(parent, key, (size_t)(slash - key));
	parent[slash - key] = '\0';
	return slash + 1;
}

#define FO_HIDDEN_PREFIX ".fuse_hidden"
#define FO_HIDDEN_LEN (sizeof(FO_HIDDEN_PREFIX) - 1 + 16)

/* libfuse's name for an open file that was unlinked: ".fuse_hidden" and 16 hex digits. */
static bool fo_hidden_name(const char *name, size_t len)
{
	if (len != FO_HIDDEN_LEN || memcmp(name, FO_HIDDEN_PREFIX, sizeof(FO_HIDDEN_PREFIX) - 1))
		return false;
	for (size_t i = sizeof(FO_HIDDEN_PREFIX) - 1; i < len; i++)
		if (!isxdigit((unsigned char)name[i]))
			return false;
	return true;
}

static bool fo_hidden_key(const char *key)
{
	const char *slash = strrchr(key, '/');
	const char *name = slash ? slash + 1 : key;

	return fo_hidden_name(name, strlen(name));
}

/* A name the namespace may show. Hidden names are objfs's own (below): an object of that
 * name (s3fs leaves some behind) is not shown, and none can be created. */
static bool fo_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > NAME_MAX)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	if (fo_hidden_name(name, len))
		return false;
	return memchr(name, '/', len) == NULL;
}

/* ---- attributes ---- */

static void fo_attr_from_store(struct fuse_ops_fs *fs, const struct store_attr *sa, bool is_dir,
			       unsigned flags, struct meta_attr *ma)
{
	mode_t type, perm;

	memset(ma, 0, sizeof(*ma));
	is_dir = is_dir || sa->is_dir;
	type = is_dir ? S_IFDIR : S_IFREG;
	perm = is_dir ? 0750 : 0640;
	if (sa->has & STORE_HAS_MODE) {
		perm = sa->mode & 07777;
		if ((sa->mode & S_IFMT) && !is_dir)
			type = sa->mode & S_IFMT;
	}
	if (type != S_IFDIR && type != S_IFREG && type != S_IFLNK)
		type = S_IFREG; /* FIFOs, devices from s3fs: shown as plain files */
	ma->mode = type | perm;
	ma->uid = (sa->has & STORE_HAS_UID) ? sa->uid : fs->uid;
	ma->gid = (sa->has & STORE_HAS_GID) ? sa->gid : fs->gid;
	if (fs->o->has_uid)
		ma->uid = fs->o->uid;
	if (fs->o->has_gid)
		ma->gid = fs->o->gid;
	ma->size = is_dir ? 0 : sa->size;
	ma->mtime = sa->mtime;
	ma->ctime = (sa->has & STORE_HAS_CTIME) ? sa->ctime : sa->mtime;
	ma->atime = (sa->has & STORE_HAS_ATIME) ? sa->atime : sa->mtime;
	if (!ma->mtime.tv_sec && !ma->mtime.tv_nsec)
		ma->mtime = ma->ctime = ma->atime = fs->mount_time;
	snprintf(ma->etag, sizeof(ma->etag), "%s", sa->etag);
	ma->flags = flags;
}

static void fo_implicit_dir(struct fuse_ops_fs *fs, unsigned flags, struct meta_attr *ma)
{
	struct store_attr sa;

	store_attr_init(&sa);
	sa.is_dir = true;
	fo_attr_from_store(fs, &sa, true, flags, ma);
}

static void fo_stat(struct fuse_ops_fs *fs, const struct meta_attr *ma, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = ma->mode;
	if (fs->o->has_umask)
		st->st_mode = (ma->mode & S_IFMT) | (ma->mode & 07777 & ~fs->o->umask);
	st->st_nlink = S_ISDIR(ma->mode) ? 2 : 1;
	st->st_uid = ma->uid;
	st->st_gid = ma->gid;
	st->st_size = (off_t)ma->size;
	st->st_blksize = FO_BLKSIZE;
	st->st_blocks = (blkcnt_t)((ma->size + 511) / 512);
	st->st_mtim = ma->mtime;
	st->st_ctim = ma->ctime;
	st->st_atim = ma->atime;
}

/* Metadata for a new object or a rewrite: everything s3fs stores. */
static void fo_new_store_attr(mode_t mode, struct store_attr *sa)
{
	struct fuse_context *ctx = fuse_get_context();

	store_attr_init(sa);
	sa->mode = mode;
	sa->uid = ctx->uid;
	sa->gid = ctx->gid;
	fo_now(&sa->mtime);
	sa->ctime = sa->atime = sa->mtime;
	sa->has = STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID | STORE_HAS_MTIME |
		  STORE_HAS_CTIME | STORE_HAS_ATIME;
	sa->is_dir = S_ISDIR(mode);
	if (S_ISDIR(mode))
		snprintf(sa->content_type, sizeof(sa->content_type), "application/x-directory");
}

/* ---- lookup ---- */

#define FO_NOT_RENAMED (-1)
#define FO_RENAME_CHAIN_MAX 32

/* HEAD the stored bytes of key when pending renames move them from an object already stored:
 * they are at the origin, at a key between (a chain of renames), or at key once the last
 * copy is done; each rename deletes its source only after the copy, so trying the keys in
 * order finds them. sa must be initialised. 0 (where, PATH_MAX, names the key holding them),
 * FO_NOT_RENAMED when key is no such rename, or the store's errno. */
static int fo_head_renamed(struct fuse_ops_fs *fs, const char *key, struct store_attr *sa,
			   char *where)
{
	char *keys[FO_RENAME_CHAIN_MAX];
	size_t n = fs->sync ? sync_lookup_origins(fs->sync, key, keys, FO_RENAME_CHAIN_MAX) : 0;
	int rv = ENOENT;

	if (!n)
		return FO_NOT_RENAMED;
	for (size_t i = 0; i <= n && rv == ENOENT; i++) {
		const char *k = i < n ? keys[i] : key;

		store_attr_free(sa);
		store_attr_init(sa);
		rv = store_head(fs->dst, k, NULL, sa);
		if (rv == 0)
			snprintf(where, PATH_MAX, "%s", k);
	}
	while (n)
		free(keys[--n]);
	return rv;
}

/* sync_lookup of key (a file or a marker), *sa always initialised. A key renamed from an
 * object already stored has no attributes in the journal: they are at the origin. */
static int fo_pending_attr(struct fuse_ops_fs *fs, const char *key, struct store_attr *sa,
			   bool *removed)
{
	char where[PATH_MAX];
	struct store_attr oa;
	int r = sync_lookup(fs->sync, key, sa, NULL, removed);

	if (r != 1 || *removed || sa->has)
		return r;
	store_attr_init(&oa);
	if (fo_head_renamed(fs, key, &oa, where) == 0) {
		store_attr_free(sa);
		*sa = oa;
	} else {
		store_attr_free(&oa);
	}
	return r;
}

/* The pending (journalled) state of key: 1 found (attr filled), 0 none; *removed says that
 * the key's pending state is its removal (a delete, or a rename away from it). */
static int fo_pending(struct fuse_ops_fs *fs, const char *key, struct meta_attr *ma, bool *removed)
{
	struct store_attr sa;
	char marker[PATH_MAX + 2];
	int r;

	if (!fs->sync)
		return 0;
	r = fo_pending_attr(fs, key, &sa, removed);
	if (r == 1 && !*removed) {
		fo_attr_from_store(fs, &sa, false, META_PENDING, ma);
		store_attr_free(&sa);
		return 1;
	}
	store_attr_free(&sa);
	/* a pending directory marker (also where a file of the same name was removed) */
	bool file_removed = r == 1;

	snprintf(marker, sizeof(marker), "%s/", key);
	r = fo_pending_attr(fs, marker, &sa, removed);
	if (r == 1 && !*removed)
		fo_attr_from_store(fs, &sa, true, META_PENDING | META_MARKER, ma);
	store_attr_free(&sa);
	if (r == 1 && !*removed)
		return 1;
	*removed = *removed || file_removed;
	return 0;
}

/* The LIST half of a lookup, run in a thread of its own while the caller sends the HEAD. */
struct fo_probe {
	struct store *st;
	char prefix[PATH_MAX + 2];
	struct store_list l;
	int rv;
	struct store_error err; /* the thread's store_last_error() when rv is set */
};

static void *fo_probe_main(void *arg)
{
	struct fo_probe *p = arg;

	p->rv = p->st->ops->list(p->st, p->prefix, "/", NULL, 1, NULL, &p->l);
	if (p->rv)
		p->err = *store_last_error();
	return NULL;
}

/* Ask one store about key: 0 (ma filled), ENOENT, or another errno.
 * A file is known from a HEAD of key, a directory from a LIST of "key/" (one key is enough:
 * the marker or any name below it). The two are sent at once, as mountpoint-s3 and goofys
 * do: a directory or a missing name is answered in one round trip instead of two, for one
 * LIST more when key is a file. */
static int fo_lookup_store(struct fuse_ops_fs *fs, struct store *st, const char *key, unsigned flags,
			   struct meta_attr *ma)
{
	struct store_attr sa;
	struct fo_probe p = {.st = st};
	struct store_list *l = &p.l;
	pthread_t th;
	bool probing;
	int rv;

	snprintf(p.prefix, sizeof(p.prefix), "%s/", key);
	probing = pthread_create(&th, NULL, fo_probe_main, &p) == 0;
	store_attr_init(&sa);
	rv = store_head(st, key, NULL, &sa);
	if (probing)
		pthread_join(th, NULL);
	if (rv != ENOENT) {
		if (probing && !p.rv)
			store_list_free(l);
		if (rv == 0) {
			fo_attr_from_store(fs, &sa, false, flags, ma);
			store_attr_free(&sa);
		}
		return rv;
	}
	if (!probing) /* no thread: the LIST after the HEAD */
		fo_probe_main(&p);
	if (p.rv) {
		store_set_error(p.err.err, p.err.http_status, p.err.code, p.err.message);
		return p.rv;
	}
	if (l->n_entries == 0 && !l->next_token) {
		store_list_free(l);
		return ENOENT;
	}
	if (l->n_entries && !l->entries[0].is_prefix && !strcmp(l->entries[0].key, p.prefix)) {
		/* the marker itself: its metadata needs a HEAD */
		rv = store_head(st, p.prefix, NULL, &sa);
		if (rv == 0) {
			fo_attr_from_store(fs, &sa, true, flags | META_MARKER, ma);
			store_attr_free(&sa);
			store_list_free(l);
			return 0;
		}
		if (rv != ENOENT) {
			store_list_free(l);
			return rv;
		}
	}
	store_list_free(l);
	fo_implicit_dir(fs, flags, ma);
	return 0;
}

/* The attributes of a file open for writing (sf: its staged state, live size and times). */
static int fo_staged_meta(struct fuse_ops_fs *fs, struct staging_file *sf, struct meta_attr *ma)
{
	struct store_attr sa;
	int rv = staging_get_attr(sf, &sa);

	if (rv)
		return rv;
	fo_attr_from_store(fs, &sa, false, META_PENDING, ma);
	store_attr_free(&sa);
	return 0;
}

/* ---- open files that were unlinked ----
 * With hard_remove off, libfuse turns the unlink of an open file (and a rename over one) into
 * a rename to a hidden name in the same directory, unlinks that name at the file's last
 * release (or at the unmount), and looks the node up by it meanwhile: fstat() without a
 * handle, fchmod(), futimens(). objfs takes that rename as the unlink (the object's delete
 * is journaled as for any unlink) and keeps the hidden name only here, in memory, with the
 * attributes the file had and its staged content, if any. Hidden names never reach the
 * store: not looked up there, never listed, never created. */
struct fo_hidden {
	struct fo_hidden *next;
	char *key;
	struct meta_attr attr;
	struct staging_file *sf; /* a reference to the content written, or NULL */
};

/* The entry of key; fs->hidden_lock held. */
static struct fo_hidden **fo_hidden_find(struct fuse_ops_fs *fs, const char *key)
{
	struct fo_hidden **pp;

	for (pp = &fs->hidden; *pp && strcmp((*pp)->key, key); pp = &(*pp)->next)
		;
	return pp;
}

static void fo_hidden_free(struct fuse_ops_fs *fs, struct fo_hidden *e)
{
	if (e->sf)
		staging_release(fs->stg, e->sf);
	free(e->key);
	free(e);
}

static int fo_hidden_attr(struct fuse_ops_fs *fs, const char *key, struct meta_attr *ma)
{
	struct fo_hidden *e;
	int rv = 0;

	pthread_mutex_lock(&fs->hidden_lock);
	e = *fo_hidden_find(fs, key);
	if (!e)
		rv = ENOENT;
	else if (!e->sf || fo_staged_meta(fs, e->sf, ma))
		*ma = e->attr;
	pthread_mutex_unlock(&fs->hidden_lock);
	return rv;
}

/* chmod, chown, utimens of a hidden name: kept with the content, which goes nowhere. */
static int fo_hidden_set_attr(struct fuse_ops_fs *fs, const char *key, const struct store_attr *ch)
{
	struct fo_hidden *e;
	int rv = 0;

	pthread_mutex_lock(&fs->hidden_lock);
	e = *fo_hidden_find(fs, key);
	if (!e) {
		rv = ENOENT;
	} else {
		if (ch->has & STORE_HAS_MODE)
			e->attr.mode = (e->attr.mode & S_IFMT) | (ch->mode & 07777);
		if (ch->has & STORE_HAS_UID)
			e->attr.uid = ch->uid;
		if (ch->has & STORE_HAS_GID)
			e->attr.gid = ch->gid;
		if (ch->has & STORE_HAS_MTIME)
			e->attr.mtime = ch->mtime;
		if (ch->has & STORE_HAS_ATIME)
			e->attr.atime = ch->atime;
		if (e->sf)
			staging_set_attr(e->sf, ch);
	}
	pthread_mutex_unlock(&fs->hidden_lock);
	return rv;
}

static int fo_hidden_truncate(struct fuse_ops_fs *fs, const char *key, uint64_t size)
{
	struct fo_hidden *e;
	int rv;

	pthread_mutex_lock(&fs->hidden_lock);
	e = *fo_hidden_find(fs, key);
	rv = !e ? ENOENT : e->sf ? staging_truncate(e->sf, size) : EPERM;
	pthread_mutex_unlock(&fs->hidden_lock);
	return rv;
}

/* Directory from was renamed to to: libfuse's hidden names below it moved along. */
static void fo_hidden_renamed(struct fuse_ops_fs *fs, const char *from, const char *to)
{
	size_t flen = strlen(from);

	pthread_mutex_lock(&fs->hidden_lock);
	for (struct fo_hidden *e = fs->hidden; e; e = e->next) {
		char *moved;

		if (strncmp(e->key, from, flen) || e->key[flen] != '/')
			continue;
		if (asprintf(&moved, "%s%s", to, e->key + flen) < 0) {
			log_warn("out of memory: '%s' keeps its old name", e->key);
			continue;
		}
		free(e->key);
		e->key = moved;
	}
	pthread_mutex_unlock(&fs->hidden_lock);
}

/* Directory dir was removed: libfuse cannot name the hidden files below it any more (their
 * fstat() is ESTALE) and will not unlink them; drop them now, not at the unmount, so that
 * their staged content goes with their last handle. */
static void fo_hidden_dropped_dir(struct fuse_ops_fs *fs, const char *dir)
{
	size_t dlen = strlen(dir);
	struct fo_hidden **pp, *gone = NULL, *e;

	pthread_mutex_lock(&fs->hidden_lock);
	for (pp = &fs->hidden; (e = *pp);) {
		if (!strncmp(e->key, dir, dlen) && e->key[dlen] == '/') {
			*pp = e->next;
			e->next = gone;
			gone = e;
		} else {
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&fs->hidden_lock);
	while ((e = gone)) {
		gone = e->next;
		fo_hidden_free(fs, e);
	}
}

/* The hidden name's unlink, at the last release: nothing left to do at the store. */
static int fo_hidden_drop(struct fuse_ops_fs *fs, const char *key)
{
	struct fo_hidden **pp, *e;

	pthread_mutex_lock(&fs->hidden_lock);
	pp = fo_hidden_find(fs, key);
	e = *pp;
	if (e)
		*pp = e->next;
	pthread_mutex_unlock(&fs->hidden_lock);
	if (!e)
		return ENOENT;
	fo_hidden_free(fs, e);
	return 0;
}

/* The attributes of key: 0, ENOENT, EIO... Caches what it learns. */
static int fo_getattr_key(struct fuse_ops_fs *fs, const char *key, struct meta_attr *ma)
{
	char parent[PATH_MAX];
	const char *name;
	struct staging_file *sf;
	bool removed = false;
	mode_t type;
	uint64_t snap;
	int rv;

	if (!key[0]) {
		pthread_mutex_lock(&fs->root_lock);
		*ma = fs->root;
		pthread_mutex_unlock(&fs->root_lock);
		return 0;
	}
	if (strlen(key) >= PATH_MAX - 2)
		return ENAMETOOLONG;
	if (fo_hidden_key(key))
		return fo_hidden_attr(fs, key, ma);
	if (fs->stg && (sf = staging_find(fs->stg, key))) {
		rv = fo_staged_meta(fs, sf, ma);
		staging_release(fs->stg, sf);
		return rv;
	}
	if (fo_pending(fs, key, ma, &removed))
		return 0;
	if (removed)
		return ENOENT;
	switch (meta_cache_get_attr(fs->mc, key, ma)) {
	case META_HIT:
		/* Was pending when cached and is not any more: a file's attributes are what was
		 * uploaded, and only its ETag is unknown, which an open for reading fetches
		 * (fo_open_read_source). A directory is asked again (marker or implicit). */
		if (!(ma->flags & META_PENDING) || !fs->sync || !S_ISDIR(ma->mode))
			return 0;
		meta_cache_invalidate(fs->mc, key);
		break;
	case META_NEGATIVE:
		return ENOENT;
	case META_MISS:
		break;
	}
	name = fo_split(key, parent);
	snap = meta_cache_begin(fs->mc);
	if (meta_cache_dir_lookup(fs->mc, parent, name, &type) == META_NEGATIVE)
		return ENOENT;
	/* a name no object can have (not UTF-8 for S3) is absent: the server would answer 400 */
	rv = store_key_fits(fs->dst, key) ? fo_lookup_store(fs, fs->dst, key, 0, ma) : ENOENT;
	if (rv == ENOENT && fs->overlay)
		rv = store_key_fits(fs->src, key) ?
			     fo_lookup_store(fs, fs->src, key, META_IN_SOURCE, ma) : ENOENT;
	if (rv == 0)
		meta_cache_put_attr(fs->mc, key, snap, ma);
	else if (rv == ENOENT)
		meta_cache_put_negative(fs->mc, key, snap);
	else
		log_debug("lookup of '%s' failed: %s", key, strerror(rv));
	return fo_store_errno(rv);
}

/* ---- listings ---- */

/* A new zeroed entry at the end of l (n counts it), or NULL (ENOMEM). */
static struct fo_ent *fo_list_slot(struct fo_list *l)
{
	struct fo_ent *e;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;

		e = realloc(l->v, cap * sizeof(*e));
		if (!e)
			return NULL;
		l->v = e;
		l->cap = cap;
	}
	e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	return e;
}

static int fo_list_add(struct fo_list *l, const char *name, size_t len, const struct meta_attr *ma,
		       int prio, bool removed, bool need_head)
{
	struct fo_ent *e = fo_list_slot(l);

	if (!e)
		return ENOMEM;
	e->name = strndup(name, len);
	if (!e->name) {
		l->n--;
		return ENOMEM;
	}
	if (ma) {
		e->attr = *ma;
		e->have_attr = true;
	}
	e->prio = prio;
	e->removed = removed;
	e->need_head = need_head;
	return 0;
}

static void fo_list_free(struct fo_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

struct fo_pending_ctx {
	struct fuse_ops_fs *fs;
	struct fo_list *l;
};

static void fo_pending_cb(void *ud, const char *key, const struct store_attr *sa, bool removed)
{
	struct fo_pending_ctx *c = ud;
	struct fo_list *l = c->l;
	size_t plen = strlen(l->prefix), len;
	const char *name;
	bool is_dir;
	struct meta_attr ma;

	if (strncmp(key, l->prefix, plen) != 0)
		return;
	name = key + plen;
	len = strlen(name);
	is_dir = len && name[len - 1] == '/';
	if (is_dir)
		len--;
	if (!fo_name_ok(name, len))
		return;
	if (removed) {
		/* a removed marker hides the directory the stores may still list (its contents'
		 * deletes pending too), as the lookup of its name does */
		if (!l->err)
			l->err = fo_list_add(l, name, len, NULL, 0, true, false);
		return;
	}
	if (!sa->has) {
		/* renamed from a stored object or marker: listed without attributes (type
		 * unknown), which the lookup of the name finds at the rename's origin */
		if (!l->err)
			l->err = fo_list_add(l, name, len, NULL, 0, false, false);
		return;
	}
	fo_attr_from_store(c->fs, sa, is_dir, META_PENDING | (is_dir ? META_MARKER : 0), &ma);
	if (!l->err)
		l->err = fo_list_add(l, name, len, &ma, 0, false, false);
}

/* A file open for writing (perhaps not journalled yet) shows in its directory, with its live
 * size and times: they win over its pending record (an earlier close's), which the kernel
 * would otherwise take from READDIRPLUS as the file's size, and then read short and put the
 * next O_APPEND write at that size, over what was written since. */
static void fo_staged_cb(void *ud, const char *key)
{
	struct fo_pending_ctx *c = ud;
	struct staging_file *sf = staging_find(c->fs->stg, key);
	struct meta_attr ma;
	const char *name = key + strlen(c->l->prefix);

	if (!sf)
		return;
	if (fo_staged_meta(c->fs, sf, &ma) == 0 && !c->l->err)
		c->l->err = fo_list_add(c->l, name, strlen(name), &ma, -1, false, false);
	staging_release(c->fs->stg, sf);
}

/* The attributes of file e of the directory listed as prefix as they are now, into *live,
 * when they may have changed since the listing was gathered (true): open for writing (its
 * staged file), or written through the mount since (each close sets the metadata cache).
 * The kernel takes READDIRPLUS sizes as the file's: an older one would make it read short
 * and put the next O_APPEND write at that size, over what was written since. */
static bool fo_live_attr(struct fuse_ops_fs *fs, const char *prefix, const struct fo_ent *e,
			 struct meta_attr *live)
{
	char key[PATH_MAX + NAME_MAX + 2];
	struct staging_file *sf;
	bool found;

	if (!fs->stg || !S_ISREG(e->attr.mode))
		return false;
	snprintf(key, sizeof(key), "%s%s", prefix, e->name);
	if ((sf = staging_find(fs->stg, key))) {
		found = fo_staged_meta(fs, sf, live) == 0;
		staging_release(fs->stg, sf);
		return found;
	}
	return meta_cache_get_attr(fs->mc, key, live) == META_HIT && S_ISREG(live->mode);
}

/* One page of one store's listing of l->prefix into l: the page after *token (NULL: the
 * first); *token becomes the next page's token, NULL after the last page. */
static int fo_list_page(struct fuse_ops_fs *fs, struct store *st, int prio, struct fo_list *l,
			char **token, const struct store_io *io)
{
	size_t plen = strlen(l->prefix);
	struct store_list page;
	int rv;

	rv = st->ops->list(st, l->prefix, "/", *token, 0, io, &page);
	free(*token);
	*token = NULL;
	if (rv)
		return rv;
	for (size_t i = 0; i < page.n_entries && !rv; i++) {
		struct store_entry *e = &page.entries[i];
		const char *name = e->key + plen;
		size_t len = strlen(name);
		bool is_dir = e->is_prefix || (len && name[len - 1] == '/');
		struct meta_attr ma;

		if (strncmp(e->key, l->prefix, plen) != 0)
			continue;
		if (is_dir && len)
			len--;
		if (len == 0 && !e->is_prefix)
			continue; /* the directory's own marker ("dir/" listed under "dir/") */
		if (!fo_name_ok(name, len)) {
			log_warn("skipping key '%s': not usable as a file name", e->key);
			continue;
		}
		if (e->is_prefix)
			fo_implicit_dir(fs, META_PROVISIONAL | (prio == 2 ? META_IN_SOURCE : 0),
					&ma);
		else
			fo_attr_from_store(fs, &e->attr, is_dir,
					   META_FROM_LIST | (is_dir ? META_MARKER : 0) |
						   (prio == 2 ? META_IN_SOURCE : 0),
					   &ma);
		rv = fo_list_add(l, name, len, &ma, prio, false, true);
	}
	if (!rv && page.next_token && !(*token = strdup(page.next_token)))
		rv = ENOMEM;
	store_list_free(&page);
	return rv;
}

/* All pages of one store's listing of l->prefix into l. */
static int fo_list_store(struct fuse_ops_fs *fs, struct store *st, int prio, struct fo_list *l)
{
	char *token = NULL;
	int rv;

	do
		rv = fo_list_page(fs, st, prio, l, &token, NULL);
	while (!rv && token);
	free(token);
	return rv;
}

static int fo_ent_cmp(const void *a, const void *b)
{
	const struct fo_ent *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	if (x->prio != y->prio)
		return x->prio - y->prio;
	/* pending records: what exists wins over a removal of the same name ("rm x; mkdir x") */
	if (x->removed != y->removed)
		return (int)x->removed - (int)y->removed;
	/* same store: an object wins over a prefix of the same name */
	return (int)S_ISDIR(x->attr.mode) - (int)S_ISDIR(y->attr.mode);
}

struct fo_head_job {
	struct fuse_ops_fs *fs;
	struct fo_list *l;
	atomic_size_t next;
};

static void *fo_head_worker(void *arg)
{
	struct fo_head_job *job = arg;
	struct fuse_ops_fs *fs = job->fs;
	size_t i;

	while ((i = atomic_fetch_add(&job->next, 1)) < job->l->n) {
		struct fo_ent *e = &job->l->v[i];
		struct store *st = (e->attr.flags & META_IN_SOURCE) ? fs->src : fs->dst;
		char key[PATH_MAX + 2];
		struct store_attr sa;
		bool is_dir = S_ISDIR(e->attr.mode);

		if (!e->need_head)
			continue;
		snprintf(key, sizeof(key), "%s%s%s", job->l->prefix, e->name, is_dir ? "/" : "");
		store_attr_init(&sa);
		if (store_head(st, key, NULL, &sa) == 0) {
			unsigned flags = (e->attr.flags & META_IN_SOURCE) | (is_dir ? META_MARKER : 0);

			fo_attr_from_store(fs, &sa, is_dir, flags, &e->attr);
			store_attr_free(&sa);
		} else if (is_dir) {
			e->attr.flags &= ~META_PROVISIONAL; /* looked: no marker */
		}
	}
	return NULL;
}

/* HEAD the entries that only have LIST attributes, in parallel. */
static void fo_head_entries(struct fuse_ops_fs *fs, struct fo_list *l)
{
	struct fo_head_job job = {fs, l, 0};
	pthread_t th[FO_HEAD_THREADS];
	size_t n = 0, want = 0;

	for (size_t i = 0; i < l->n; i++)
		want += l->v[i].need_head;
	if (!want)
		return;
	for (; n < FO_HEAD_THREADS && n < want; n++)
		if (pthread_create(&th[n], NULL, fo_head_worker, &job))
			break;
	if (n == 0)
		fo_head_worker(&job);
	for (size_t i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

/* The entries of l->prefix that are not at the store yet: pending records and files open
 * for writing. */
static int fo_list_gather(struct fuse_ops_fs *fs, struct fo_list *l)
{
	struct fo_pending_ctx pc = {fs, l};
	int rv = 0;

	if (fs->sync) {
		sync_list_pending(fs->sync, l->prefix, fo_pending_cb, &pc);
		rv = l->err;
	}
	if (!rv && fs->stg) {
		rv = staging_list(fs->stg, l->prefix, fo_staged_cb, &pc);
		if (!rv)
			rv = l->err;
	}
	return rv;
}

/* Sort l by name, keep the winner of each name (fo_ent_cmp), and drop the pending removals
 * when drop_removed. */
static void fo_list_merge(struct fo_list *l, bool drop_removed)
{
	size_t w = 0;

	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), fo_ent_cmp);
	for (size_t i = 0; i < l->n; i++) {
		if (w && !strcmp(l->v[w - 1].name, l->v[i].name)) {
			free(l->v[i].name);
			continue;
		}
		l->v[w++] = l->v[i];
	}
	l->n = w;
	if (!drop_removed)
		return;
	w = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].removed) {
			free(l->v[i].name);
			continue;
		}
		l->v[w++] = l->v[i];
	}
	l->n = w;
}

/* The complete listing l of directory key, merged, goes into the metadata cache (names and
 * attributes), after exact attributes for a small directory. */
static void fo_list_publish(struct fuse_ops_fs *fs, const char *key, uint64_t snap,
			    struct fo_list *l, bool heads)
{
	struct meta_dirent *d;

	if (heads && l->n <= FO_HEAD_MAX)
		fo_head_entries(fs, l);
	d = calloc(l->n ? l->n : 1, sizeof(*d));
	if (!d)
		return;
	for (size_t i = 0; i < l->n; i++) {
		char child[PATH_MAX + NAME_MAX + 2];

		snprintf(child, sizeof(child), "%s%s", l->prefix, l->v[i].name);
		if (l->v[i].have_attr)
			meta_cache_put_attr(fs->mc, child, snap, &l->v[i].attr);
		d[i].name = l->v[i].name;
		d[i].type = l->v[i].attr.mode & S_IFMT;
	}
	meta_cache_put_dir(fs->mc, key, snap, d, l->n);
	free(d); /* names belong to l */
}

/* The listing of directory key from the metadata cache into out: 1 when cached, 0 when not,
 * else an errno. Pending changes since are kept in the cached listing by dir_add and
 * dir_remove. */
static int fo_list_cached(struct fuse_ops_fs *fs, const char *key, const char *prefix,
			  struct fo_list *out)
{
	struct meta_dirent *d;
	size_t nd;
	int rv = 0;

	memset(out, 0, sizeof(*out));
	if (meta_cache_get_dir(fs->mc, key, &d, &nd)) {
		for (size_t i = 0; i < nd && !rv; i++) {
			char child[PATH_MAX + NAME_MAX + 2];
			struct meta_attr ma;
			bool have;

			snprintf(child, sizeof(child), "%s%s", prefix, d[i].name);
			have = meta_cache_get_attr(fs->mc, child, &ma) == META_HIT;
			if (!have) {
				memset(&ma, 0, sizeof(ma));
				ma.mode = d[i].type;
			}
			rv = fo_list_add(out, d[i].name, strlen(d[i].name), &ma, 0, false, false);
			if (!rv)
				out->v[out->n - 1].have_attr = have;
		}
		meta_cache_dirents_free(d, nd);
		if (rv)
			fo_list_free(out);
		return rv ? rv : 1;
	}
	return 0;
}

/* The merged listing of directory key (sorted, unique, with attributes when known): from the
 * cache, or built from the pending records and the stores and then cached. */
static int fo_list_dir(struct fuse_ops_fs *fs, const char *key, struct fo_list *out)
{
	char prefix[PATH_MAX + 2];
	uint64_t snap;
	int rv;

	snprintf(prefix, sizeof(prefix), "%s%s", key, key[0] ? "/" : "");
	rv = fo_list_cached(fs, key, prefix, out);
	if (rv)
		return rv == 1 ? 0 : rv;
	snap = meta_cache_begin(fs->mc);
	out->prefix = prefix;
	rv = fo_list_gather(fs, out);
	if (!rv)
		rv = fo_list_store(fs, fs->dst, 1, out);
	if (!rv && fs->overlay)
		rv = fo_list_store(fs, fs->src, 2, out);
	if (rv)
		goto fail;
	fo_list_merge(out, true);
	fo_list_publish(fs, key, snap, out, true);
	out->prefix = NULL;
	return 0;
fail:
	out->prefix = NULL;
	fo_list_free(out);
	return fo_store_errno(rv);
}

/* ---- bookkeeping after local changes ---- */

static void fo_changed(struct fuse_ops_fs *fs, const char *key, const struct meta_attr *ma)
{
	char parent[PATH_MAX];
	const char *name = fo_split(key, parent);

	if (ma) {
		meta_cache_set_attr(fs->mc, key, ma);
		meta_cache_dir_add(fs->mc, parent, name, ma->mode & S_IFMT);
	} else {
		meta_cache_invalidate(fs->mc, key);
		meta_cache_put_negative(fs->mc, key, meta_cache_begin(fs->mc));
		meta_cache_dir_remove(fs->mc, parent, name);
	}
	if (fs->dc)
		data_cache_invalidate(fs->dc, key);
}

static int fo_publish(void *ud, const char *key, const char *path, const struct store_attr *attr,
		      void *stream)
{
	struct fuse_ops_fs *fs = ud;
	struct meta_attr ma;
	int rv;

	if (path) {
		rv = sync_put_file_stream(fs->sync, key, path, attr, stream);
	} else {
		if (stream)
			sync_stream_abort(stream);
		rv = sync_set_attr(fs->sync, key, attr);
	}
	if (rv) {
		log_error("cannot journal '%s': %s", key, strerror(rv));
		return rv;
	}
	fo_attr_from_store(fs, attr, false, META_PENDING, &ma);
	fo_changed(fs, key, &ma);
	return 0;
}

static int fo_check_writable(struct fuse_ops_fs *fs)
{
	return (fs->ro || !fs->sync) ? EROFS : 0;
}

#define FO_KEY_MAX 1024 /* S3's limit on a key, the destination's root prefix included */

/* The bytes an s3:// destination puts before every key: its root prefix and a '/'. */
static size_t fo_dest_prefix_len(const struct fuse_ops_fs *fs)
{
	const char *url = fs->o->dest ? fs->o->dest : fs->o->source;
	const char *p;
	size_t n;

	if (!url || strncmp(url, "s3://", 5) != 0 || !(p = strchr(url + 5, '/')))
		return 0;
	while (*p == '/')
		p++;
	n = strlen(p);
	return n && p[n - 1] != '/' ? n + 1 : n;
}

/* Whether a new key (plus extra bytes: 1 for a directory's marker "key/") can be stored:
 * 0, ENAMETOOLONG for a name over NAME_MAX or a key over FO_KEY_MAX with the prefix, or
 * EILSEQ for a key that is not UTF-8 where keys must be, so that the writer hears it now
 * rather than the upload failing for ever later. */
static int fo_check_new_key(const struct fuse_ops_fs *fs, const char *key, size_t extra)
{
	const char *slash = strrchr(key, '/');

	if (fo_hidden_key(key)) {
		log_warn("refusing the name '%s': objfs keeps such names for open files that were "
			 "unlinked (EPERM)", key);
		return EPERM;
	}
	if (strlen(slash ? slash + 1 : key) > NAME_MAX ||
	    fo_dest_prefix_len(fs) + strlen(key) + extra > FO_KEY_MAX)
		return ENAMETOOLONG;
	if (!store_key_fits(fs->dst, key)) {
		/* the server would refuse the upload for ever (InvalidObjectName) */
		log_warn("refusing the name '%s': not UTF-8, which object keys must be (EILSEQ)",
			 key);
		return EILSEQ;
	}
	return 0;
}

static int fo_refuse_source(const char *what, const char *key)
{
	log_warn("%s '%s': the object is in the read-only source; refusing (EROFS)", what, key);
	return EROFS;
}

/* ---- copy-up of existing content into a staged file ---- */

struct fo_base {
	struct fuse_ops_fs *fs;
	struct store *st;
	char *key;
	char *origin; /* a pending rename's origin, which holds the bytes until its copy is done */
	char etag[80];
	char spool[PATH_MAX];
};

static void fo_base_free(void *ud)
{
	struct fo_base *b = ud;

	free(b->key);
	free(b->origin);
	free(b);
}

static int fo_base_fill(void *ud, int fd, uint64_t size)
{
	struct fo_base *b = ud;
	uint64_t got = 0;
	int rv;

	if (b->spool[0]) {
		int in = open(b->spool, O_RDONLY | O_CLOEXEC);

		if (in >= 0) {
			char buf[1 << 16];
			ssize_t n;

			while (got < size && (n = pread(in, buf, sizeof(buf), (off_t)got)) > 0) {
				if (pwrite(fd, buf, (size_t)n, (off_t)got) != n) {
					close(in);
					return EIO;
				}
				got += (uint64_t)n;
			}
			close(in);
			return got == size ? 0 : EIO;
		}
		/* uploaded meanwhile: read it from the store */
	}
	const char *from = b->origin ? b->origin : b->key;
	char where[PATH_MAX];

	for (int attempt = 0;; attempt++) {
		struct store_attr sa;

		rv = b->st->ops->get(b->st, from, 0, UINT64_MAX,
				     attempt == 0 && b->etag[0] ? b->etag : NULL, NULL, fd, 0, &got);
		if (rv != ENOENT || !b->origin || attempt == 2)
			break;
		/* pending renames moved the bytes on since they were found: find them again */
		store_attr_init(&sa);
		from = fo_head_renamed(b->fs, b->key, &sa, where) == 0 ? where : b->key;
		store_attr_free(&sa);
	}
	if (rv)
		return fo_store_errno(rv);
	return got == size ? 0 : EIO;
}

/* The full store attributes of key for a rewrite (extra metadata preserved). spool (PATH_MAX,
 * may be NULL) gets the pending content's file; origin (PATH_MAX, may be NULL) the origin of
 * a pending rename from a stored object while that object still holds the bytes ("" else). */
static int fo_full_attr(struct fuse_ops_fs *fs, const char *key, const struct meta_attr *ma,
			struct store_attr *sa, char *spool, char *origin)
{
	char where[PATH_MAX];
	bool removed;
	int rv;

	store_attr_init(sa);
	if (spool)
		spool[0] = '\0';
	if (origin)
		origin[0] = '\0';
	if (fs->sync && sync_lookup(fs->sync, key, sa, spool, &removed) == 1 && !removed) {
		if (sa->has)
			return 0;
		rv = fo_head_renamed(fs, key, sa, where);
		if (rv != FO_NOT_RENAMED) {
			if (!rv && origin && strcmp(where, key) != 0)
				snprintf(origin, PATH_MAX, "%s", where);
			return fo_store_errno(rv);
		}
	}
	store_attr_free(sa);
	store_attr_init(sa);
	if (spool)
		spool[0] = '\0';
	return fo_store_errno(store_head((ma->flags & META_IN_SOURCE) ? fs->src : fs->dst, key, NULL, sa));
}

/* Staged state of an existing file for writing (copy-up prepared, not done). */
static int fo_stage_existing(struct fuse_ops_fs *fs, const char *key, const struct meta_attr *ma,
			     struct staging_file **out)
{
	struct staging_file *sf = staging_find(fs->stg, key);
	struct staging_fill fill = {fo_base_fill, fo_base_free, NULL};
	struct store_attr sa;
	struct fo_base *b;
	bool created;
	int rv;

	if (sf) {
		*out = sf;
		return 0;
	}
	b = calloc(1, sizeof(*b));
	if (!b || !(b->key = strdup(key))) {
		free(b);
		return ENOMEM;
	}
	char origin[PATH_MAX];

	rv = fo_full_attr(fs, key, ma, &sa, b->spool, origin);
	if (!rv && origin[0] && !(b->origin = strdup(origin))) {
		store_attr_free(&sa);
		rv = ENOMEM;
	}
	if (rv) {
		fo_base_free(b);
		return rv;
	}
	b->fs = fs;
	b->st = (ma->flags & META_IN_SOURCE) ? fs->src : fs->dst;
	snprintf(b->etag, sizeof(b->etag), "%s", sa.etag[0] ? sa.etag : ma->etag);
	sa.etag[0] = '\0'; /* the staged file's attributes describe new content, ETag unknown */
	/* everything s3fs keeps, so the rewrite carries it */
	if (!(sa.has & STORE_HAS_MODE))
		sa.mode = ma->mode;
	if (!(sa.has & STORE_HAS_UID))
		sa.uid = ma->uid;
	if (!(sa.has & STORE_HAS_GID))
		sa.gid = ma->gid;
	sa.has |= STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID;
	fill.ud = b;
	*out = staging_get(fs->stg, key, &sa, ma->size, &fill, &created, &rv);
	store_attr_free(&sa);
	return *out ? 0 : rv;
}

/* ---- operations ---- */

static void *fo_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct fuse_ops_fs *fs = fo_fs();

	cfg->nullpath_ok = 1;
	cfg->hard_remove = 0; /* open files that were unlinked get hidden names (fo_hide) */
	cfg->use_ino = 0;
	cfg->auto_cache = 1;
	cfg->entry_timeout = fs->o->attr_ttl_ms / 1000.0;
	cfg->attr_timeout = fs->o->attr_ttl_ms / 1000.0;
	cfg->negative_timeout = fs->o->neg_ttl_ms / 1000.0;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* every readdir chunk carries attributes: ls -l then needs no lookups */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	conn->max_write = 1 << 20;
	/* The kernel's read-ahead is sent as background requests of up to 1 MiB. Once
	 * congestion_threshold of them are in flight it drops the rest of an async window from
	 * the page cache, and the reader later asks for the holes page by page, each costing a
	 * block fetched again. Two windows of a read_ahead_kb raised to 64 MiB are 128
	 * requests. */
	conn->max_background = 256;
	conn->congestion_threshold = 192;
	__atomic_store_n(&fs->initialized, 1, __ATOMIC_RELEASE);
	return fs;
}

static int fo_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct meta_attr ma;
	int rv;

	if (fi && fi->fh) {
		/* The kernel asks with the handle after a setattr through it, and for lseek
		 * SEEK_END. Its name may have been unlinked, and even taken by another file. */
		struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;
		bool unlinked = __atomic_load_n(&h->unlinked, __ATOMIC_ACQUIRE) ||
				(h->sf && staging_is_forgotten(h->sf));

		if (h->sf && fo_staged_meta(fs, h->sf, &ma) == 0) {
			fo_stat(fs, &ma, st);
			if (unlinked)
				st->st_nlink = 0;
			return 0;
		}
		rv = unlinked ? ENOENT : fo_getattr_key(fs, fo_hkey(h), &ma);
		if (rv == ENOENT) {
			ma = h->attr; /* unlinked while open */
			fo_stat(fs, &ma, st);
			st->st_nlink = 0;
			return 0;
		}
	} else {
		if (!path)
			return -ENOENT;
		rv = fo_getattr_key(fs, fo_key(path), &ma);
	}
	if (rv)
		return -rv;
	fo_stat(fs, &ma, st);
	return 0;
}

static int fo_access(const char *path, int mask)
{
	struct meta_attr ma;
	int rv = fo_getattr_key(fo_fs(), fo_key(path), &ma);

	if (!rv && (mask & W_OK) && fo_check_writable(fo_fs()))
		rv = EROFS;
	return -rv;
}

static int fo_readlink(const char *path, char *buf, size_t size)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	struct meta_attr ma;
	size_t len;
	int rv;

	if (size == 0)
		return -EINVAL;
	rv = fo_getattr_key(fs, key, &ma);
	if (rv)
		return -rv;
	if (!S_ISLNK(ma.mode))
		return -EINVAL;
	if (fs->sync && sync_lookup_mem(fs->sync, key, buf, size - 1, &len) == 1) {
		buf[len < size - 1 ? len : size - 1] = '\0';
		return 0;
	}
	struct data_cache_file *f;
	struct store *st = (ma.flags & META_IN_SOURCE) ? fs->src : fs->dst;
	char from[PATH_MAX];
	struct store_attr oa;
	ssize_t n;

	/* renamed from a stored link: its target is at the origin until the copy is done */
	store_attr_init(&oa);
	rv = fo_head_renamed(fs, key, &oa, from);
	if (rv == FO_NOT_RENAMED) {
		snprintf(from, sizeof(from), "%s", key);
	} else if (rv == 0) {
		snprintf(ma.etag, sizeof(ma.etag), "%s", oa.etag);
		ma.size = oa.size;
	}
	store_attr_free(&oa);
	if (rv > 0)
		return -fo_store_errno(rv);
	f = data_cache_open(fs->dc, st, from, ma.etag, ma.size, &rv);
	if (!f)
		return -fo_store_errno(rv);
	n = data_cache_read(f, buf, size - 1, 0);
	data_cache_close(f);
	if (n < 0)
		return -fo_store_errno((int)-n);
	buf[n] = '\0';
	return 0;
}

/* A set of names owned elsewhere (open addressing, grown at half load). */
struct fo_nameset {
	const char **v;
	size_t cap, n;
};

static size_t fo_name_hash(const char *name)
{
	size_t h = 14695981039346656037ull;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return h;
}

static bool fo_nameset_has(const struct fo_nameset *ns, const char *name)
{
	if (!ns->cap)
		return false;
	for (size_t i = fo_name_hash(name) & (ns->cap - 1); ns->v[i]; i = (i + 1) & (ns->cap - 1))
		if (!strcmp(ns->v[i], name))
			return true;
	return false;
}

static int fo_nameset_add(struct fo_nameset *ns, const char *name)
{
	size_t i;

	if (2 * (ns->n + 1) > ns->cap) {
		struct fo_nameset big = {calloc(ns->cap ? 2 * ns->cap : 1024, sizeof(char *)),
					 ns->cap ? 2 * ns->cap : 1024, 0};
		if (!big.v)
			return ENOMEM;
		for (size_t k = 0; k < ns->cap; k++)
			if (ns->v[k])
				fo_nameset_add(&big, ns->v[k]);
		free(ns->v);
		*ns = big;
	}
	for (i = fo_name_hash(name) & (ns->cap - 1); ns->v[i]; i = (i + 1) & (ns->cap - 1))
		;
	ns->v[i] = name;
	ns->n++;
	return 0;
}

static void fo_nameset_free(struct fo_nameset *ns)
{
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

/*
 * A directory handle keeps the listing taken by the readdir at offset 0, and readdir hands
 * out entries with real offsets (".": 1, "..": 2, entry i: i + 3). libfuse resolves entries
 * filled with offsets and FUSE_FILL_DIR_PLUS at once (a node per entry, attributes from our
 * cache), so the kernel gets complete READDIRPLUS entries and `ls -l` of 10,000 names costs
 * no LOOKUP per name; with offset 0 for every entry it would not (libfuse 3.14 then sends
 * entries without node ids and the kernel looks each name up again).
 *
 * A directory of more than one LIST page (and no overlay, whose two stores would have to be
 * merged in order) is streamed: readdir hands out the first page while a lister thread of
 * the handle fetches the next ones, so the listing and the reader (ls sorting, printing)
 * overlap instead of adding up. Entries are then in arrival order, not sorted: pending
 * entries first (they win their names), then each page's names that no pending entry and no
 * earlier object of the same name (an object "a" before the prefix "a/") take.
 * libfuse serialises readdir calls on one handle; dh->lock guards list, done and err against
 * the lister, the only other thread that touches the handle.
 */
struct fo_dir {
	struct fo_dir *open_prev, *open_next; /* fo_open_dirs */
	struct fuse_ops_fs *fs;
	char *key, *prefix;
	struct fo_list list; /* what readdir hands out; offset = index + 3 */
	bool listed;
	pthread_mutex_t lock;
	pthread_cond_t grown;  /* the lister appended a page, or ended */
	bool done;             /* list is complete */
	int err;               /* the lister failed (store errno) */
	bool lister_started;
	volatile int stop;     /* the handle goes: the lister's LIST is cancelled */
	pthread_t lister;
	char *token;           /* the next page, for the lister */
	uint64_t snap;
	struct fo_list pend;   /* pending entries, sorted by name, removals kept */
	struct fo_nameset objects;
};

static int fo_ent_name_cmp(const void *key, const void *ent)
{
	return strcmp(key, ((const struct fo_ent *)ent)->name);
}

/* Move the store entries of page (in key order) that nothing earlier overrides to the end
 * of dh->list; the others are freed. Locked once the lister runs. */
static int fo_dir_take_page(struct fo_dir *dh, struct fo_list *page)
{
	int rv = 0;

	for (size_t i = 0; i < page->n; i++) {
		struct fo_ent *e = &page->v[i], *to;
		bool object = e->attr.flags & META_FROM_LIST;

		if (rv ||
		    (dh->pend.n && bsearch(e->name, dh->pend.v, dh->pend.n, sizeof(*dh->pend.v),
					   fo_ent_name_cmp)) ||
		    (!object && fo_nameset_has(&dh->objects, e->name))) {
			free(e->name);
			continue;
		}
		if (!(to = fo_list_slot(&dh->list))) {
			rv = ENOMEM;
			free(e->name);
			continue;
		}
		*to = *e; /* the name moves with it */
		if (object)
			rv = fo_nameset_add(&dh->objects, e->name);
	}
	free(page->v);
	memset(page, 0, sizeof(*page));
	return rv;
}

static void *fo_dir_lister(void *arg)
{
	struct fo_dir *dh = arg;
	struct fuse_ops_fs *fs = dh->fs;
	struct store_io io = {STORE_FOREGROUND, &dh->stop};
	int rv = 0;

	while (dh->token && !__atomic_load_n(&dh->stop, __ATOMIC_RELAXED)) {
		struct fo_list page = {.prefix = dh->prefix};

		rv = fo_list_page(fs, fs->dst, 1, &page, &dh->token, &io);
		pthread_mutex_lock(&dh->lock);
		if (!rv)
			rv = fo_dir_take_page(dh, &page);
		if (rv)
			dh->err = rv;
		pthread_cond_broadcast(&dh->grown);
		pthread_mutex_unlock(&dh->lock);
		fo_list_free(&page);
		if (rv) {
			if (rv != ECANCELED)
				log_debug("listing '%s' failed: %s", dh->prefix, strerror(rv));
			break;
		}
	}
	if (!rv && !dh->token) {
		/* Only this thread changes the list: reading it unlocked is safe. */
		dh->list.prefix = dh->prefix;
		fo_list_publish(fs, dh->key, dh->snap, &dh->list, false);
		dh->list.prefix = NULL;
	}
	pthread_mutex_lock(&dh->lock);
	dh->done = true;
	pthread_cond_broadcast(&dh->grown);
	pthread_mutex_unlock(&dh->lock);
	return NULL;
}

/* Stop the lister and forget the listing. */
static void fo_dir_reset(struct fo_dir *dh)
{
	if (dh->lister_started) {
		__atomic_store_n(&dh->stop, 1, __ATOMIC_RELAXED); /* read by the store */
		pthread_join(dh->lister, NULL);
		dh->lister_started = false;
	}
	fo_list_free(&dh->list);
	fo_list_free(&dh->pend);
	fo_nameset_free(&dh->objects);
	free(dh->token);
	dh->token = NULL;
	dh->listed = dh->done = false;
	dh->err = 0;
	dh->stop = 0;
}

/* The listing at offset 0: cached, complete, or its first page with the lister started. */
static int fo_dir_start(struct fuse_ops_fs *fs, struct fo_dir *dh)
{
	struct fo_list first = {0};
	int rv;

	rv = fo_list_cached(fs, dh->key, dh->prefix, &dh->list);
	if (rv == 1)
		dh->done = true;
	if (rv)
		return rv == 1 ? 0 : rv;
	if (fs->overlay) { /* two stores to merge: listed whole */
		rv = fo_list_dir(fs, dh->key, &dh->list);
		dh->done = !rv;
		return rv;
	}
	dh->snap = meta_cache_begin(fs->mc);
	dh->list.prefix = dh->prefix;
	rv = fo_list_gather(fs, &dh->list);
	if (!rv)
		rv = fo_list_page(fs, fs->dst, 1, &dh->list, &dh->token, NULL);
	if (rv)
		goto fail;
	if (!dh->token) { /* one page: sorted and published at once, as fo_list_dir does */
		fo_list_merge(&dh->list, true);
		fo_list_publish(fs, dh->key, dh->snap, &dh->list, true);
		dh->list.prefix = NULL;
		dh->done = true;
		return 0;
	}
	/* Split: pending and staged entries (prio <= 0) into pend, the page into first. */
	first.prefix = dh->prefix;
	dh->pend.prefix = dh->prefix;
	for (size_t i = 0; i < dh->list.n; i++) {
		struct fo_ent *e = &dh->list.v[i];
		struct fo_ent *to = rv ? NULL : fo_list_slot(e->prio <= 0 ? &dh->pend : &first);

		if (!to) {
			rv = ENOMEM;
			free(e->name);
			continue;
		}
		*to = *e; /* the name moves with it */
	}
	free(dh->list.v);
	memset(&dh->list, 0, sizeof(dh->list));
	fo_list_merge(&dh->pend, false);
	for (size_t i = 0; i < dh->pend.n && !rv; i++) {
		struct fo_ent *e = &dh->pend.v[i];

		if (!e->removed) {
			rv = fo_list_add(&dh->list, e->name, strlen(e->name),
					 e->have_attr ? &e->attr : NULL, 0, false, false);
			if (!rv)
				dh->list.v[dh->list.n - 1].attr = e->attr;
		}
	}
	if (!rv)
		rv = fo_dir_take_page(dh, &first);
	if (rv)
		goto fail;
	dh->list.prefix = NULL;
	if (pthread_create(&dh->lister, NULL, fo_dir_lister, dh) == 0)
		dh->lister_started = true;
	else
		fo_dir_lister(dh); /* no thread: the whole listing now */
	return 0;
fail:
	fo_list_free(&first);
	fo_dir_reset(dh);
	return fo_store_errno(rv);
}

static int fo_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_dir *dh = fi ? (struct fo_dir *)(uintptr_t)fi->fh : NULL;
	struct stat st;
	bool filled = false;
	int rv = 0;

	if (!dh)
		return -EBADF;
	if (off == 0 || !dh->listed) {
		fo_dir_reset(dh);
		rv = fo_dir_start(fs, dh);
		if (rv)
			return -rv;
		dh->listed = true;
	}
	if (off < 1) {
		struct meta_attr ra;

		fo_getattr_key(fs, "", &ra);
		fo_stat(fs, &ra, &st);
		if (filler(buf, ".", &st, 1, 0))
			return 0;
	}
	if (off < 2) {
		memset(&st, 0, sizeof(st));
		st.st_mode = S_IFDIR;
		if (filler(buf, "..", &st, 2, 0))
			return 0;
		filled = true;
	}
	pthread_mutex_lock(&dh->lock);
	for (size_t i = off > 2 ? (size_t)off - 2 : 0;; i++) {
		struct fo_ent *e;
		enum fuse_fill_dir_flags ff = 0;

		/* Wait for the next page only with nothing to hand out: an empty answer is the
		 * end of the directory. */
		while (i >= dh->list.n && !filled && !dh->done && !dh->err)
			pthread_cond_wait(&dh->grown, &dh->lock);
		if (i >= dh->list.n) {
			if (!filled && dh->err)
				rv = -fo_store_errno(dh->err);
			break;
		}
		e = &dh->list.v[i];
		if (e->have_attr && (flags & FUSE_READDIR_PLUS)) {
			struct meta_attr live;

			/* a file written since the listing was gathered: its size now */
			fo_stat(fs, fo_live_attr(fs, dh->prefix, e, &live) ? &live : &e->attr, &st);
			ff = FUSE_FILL_DIR_PLUS;
		} else {
			memset(&st, 0, sizeof(st));
			st.st_mode = e->attr.mode & S_IFMT;
		}
		if (filler(buf, e->name, &st, (off_t)i + 3, ff))
			break;
		filled = true;
	}
	pthread_mutex_unlock(&dh->lock);
	return rv;
}

static int fo_open_read_source(struct fuse_ops_fs *fs, struct fo_handle *h)
{
	char spool[PATH_MAX];
	bool removed = false;
	int rv = 0;

	for (int attempt = 0; attempt < 3; attempt++) {
		struct store_attr sa;
		char origin[PATH_MAX];

		store_attr_init(&sa);
		if (fs->sync && sync_lookup(fs->sync, fo_hkey(h), &sa, spool, &removed) == 1 && !removed) {
			store_attr_free(&sa);
			if (spool[0]) {
				h->spool_fd = open(spool, O_RDONLY | O_CLOEXEC);
				if (h->spool_fd >= 0)
					return 0;
				continue; /* uploaded meanwhile: look again */
			}
			struct store_attr oa;

			store_attr_init(&oa);
			rv = fo_head_renamed(fs, fo_hkey(h), &oa, origin);
			if (rv != FO_NOT_RENAMED) {
				if (rv) {
					store_attr_free(&oa);
					return fo_store_errno(rv);
				}
				h->read_key = strdup(origin);
				h->st = fs->dst;
				h->dcf = h->read_key ? data_cache_open(fs->dc, fs->dst, h->read_key,
								       oa.etag, oa.size, &rv)
						     : NULL;
				store_attr_free(&oa);
				return h->dcf ? 0 : (h->read_key ? rv : ENOMEM);
			}
			store_attr_free(&oa);
			if (S_ISLNK(h->attr.mode))
				return 0; /* in memory; reads of a symlink do not happen */
		} else {
			store_attr_free(&sa);
		}
		break;
	}
	h->st = (h->attr.flags & META_IN_SOURCE) ? fs->src : fs->dst;
	if (!h->attr.etag[0]) {
		/* Attributes from the journal (uploaded since, or a metadata change pending) carry
		 * no ETag: ask the store, so that the data cache never takes cached blocks of
		 * another version for these. */
		struct store_attr sa;

		store_attr_init(&sa);
		rv = store_head(h->st, fo_hkey(h), NULL, &sa);
		snprintf(h->attr.etag, sizeof(h->attr.etag), "%s", sa.etag);
		if (!rv)
			h->attr.size = sa.size;
		store_attr_free(&sa);
		if (rv)
			return fo_store_errno(rv);
	}
	h->dcf = data_cache_open(fs->dc, h->st, fo_hkey(h), h->attr.etag, h->attr.size, &rv);
	return h->dcf ? 0 : fo_store_errno(rv);
}

static void fo_handle_free(struct fuse_ops_fs *fs, struct fo_handle *h)
{
	if (h->dcf)
		data_cache_close(h->dcf);
	if (h->spool_fd >= 0)
		close(h->spool_fd);
	if (h->sf)
		staging_release(fs->stg, h->sf);
	free(h->read_key);
	while (h->old_keys) {
		struct fo_old_key *o = h->old_keys;

		h->old_keys = o->next;
		free(o->key);
		free(o);
	}
	free(h->key);
	if (h->dcf_lock_ready)
		pthread_rwlock_destroy(&h->dcf_lock);
	free(h);
}

static int fo_open(const char *path, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
	struct fo_handle *h;
	int rv;

	if (wr && (rv = fo_check_writable(fs)))
		return -rv;
	if (fo_hidden_key(key))
		return -EPERM; /* an unlinked file: only the handles that had it open can use it */
	h = calloc(1, sizeof(*h));
	if (!h || !(h->key = strdup(key))) {
		free(h);
		return -ENOMEM;
	}
	h->spool_fd = -1;
	if ((rv = pthread_rwlock_init(&h->dcf_lock, NULL)) != 0)
		goto fail;
	h->dcf_lock_ready = true;
	rv = fo_getattr_key(fs, key, &h->attr);
	if (rv)
		goto fail;
	if (S_ISDIR(h->attr.mode)) {
		rv = EISDIR;
		goto fail;
	}
	if (wr) {
		rv = fo_stage_existing(fs, key, &h->attr, &h->sf);
		if (rv)
			goto fail;
		h->writable = true;
		if (fi->flags & O_TRUNC) {
			rv = staging_truncate(h->sf, 0);
			if (rv)
				goto fail;
		}
	} else if (fs->stg) {
		h->sf = staging_find(fs->stg, key);
	}
	/* the existing content, for reads before (or without) a copy-up */
	if (!h->sf || !staging_has_content(h->sf)) {
		rv = fo_open_read_source(fs, h);
		if (rv)
			goto fail;
	}
	FO_TRACK(fo_open_files, h);
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	fo_handle_free(fs, h);
	return -rv;
}

static int fo_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	struct store_attr sa;
	struct fo_handle *h;
	bool created;
	int rv;

	if ((rv = fo_check_writable(fs)))
		return -rv;
	if ((rv = fo_check_new_key(fs, key, 0)))
		return -rv;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->key = strdup(key))) {
		free(h);
		return -ENOMEM;
	}
	h->spool_fd = -1;
	h->writable = true;
	fo_new_store_attr(S_IFREG | (mode & 07777), &sa);
	h->sf = staging_get(fs->stg, key, &sa, 0, NULL, &created, &rv);
	store_attr_free(&sa);
	if (!h->sf)
		goto fail;
	/* journalled at flush/release (one journal write per file); until then the staging table
	 * shows it in lookups and listings */
	rv = staging_truncate(h->sf, 0);
	if (rv)
		goto fail;
	{
		struct meta_attr ma;

		if (fo_staged_meta(fs, h->sf, &ma) == 0)
			fo_changed(fs, key, &ma);
	}
	FO_TRACK(fo_open_files, h);
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	fo_handle_free(fs, h);
	return -rv;
}

static int fo_mknod(const char *path, mode_t mode, dev_t rdev)
{
	struct fuse_file_info fi = {0};
	int rv;

	if (!S_ISREG(mode))
		return -EPERM;
	fi.flags = O_WRONLY | O_CREAT;
	rv = fo_create(path, mode, &fi);
	if (!rv) {
		struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi.fh;

		rv = -staging_publish(h->sf, fo_publish, fo_fs());
		fo_handle_free(fo_fs(), h);
	}
	return rv;
}

/* Replace h->dcf, whose read failed with err, under h->dcf_lock held for writing: ESTALE
 * (the object changed underneath: read its new version) or, for a handle reading the origin
 * of a pending rename, ENOENT (the rename's copy is done and its origin deleted: read the key
 * itself). failed is the dcf that failed: when another reader replaced it already, nothing
 * to do. 0, or the errno the read fails with. */
static int fo_read_reopen(struct fuse_ops_fs *fs, struct fo_handle *h,
			  struct data_cache_file *failed, int err)
{
	struct store_attr sa;
	int rv;

	if (h->dcf != failed)
		return 0;
	if (h->dcf) {
		data_cache_close(h->dcf);
		h->dcf = NULL;
	}
	/* Where the object is now, and its ETag: */
	char where[PATH_MAX];
	struct store *st = h->st;

	store_attr_init(&sa);
	if (err == ESTALE) {
		/* changed where it was read: ask the store (journal attributes may be older) */
		log_warn("'%s' changed while open; reading the new version", fo_hkey(h));
		meta_cache_invalidate(fs->mc, fo_hkey(h));
		snprintf(where, sizeof(where), "%s", h->read_key ? h->read_key : fo_hkey(h));
		rv = store_head(st, where, NULL, &sa);
	} else {
		/* gone from where it was read: a pending rename's copy moved it on (to key, or to
		 * a key between in a chain of renames) */
		st = fs->dst;
		rv = fo_head_renamed(fs, fo_hkey(h), &sa, where);
		if (rv == FO_NOT_RENAMED) {
			snprintf(where, sizeof(where), "%s", fo_hkey(h));
			rv = store_head(st, fo_hkey(h), NULL, &sa);
		}
	}
	if (rv == 0) {
		free(h->read_key);
		h->read_key = strcmp(where, fo_hkey(h)) ? strdup(where) : NULL;
		h->st = st;
		h->dcf = data_cache_open(fs->dc, st, where, sa.etag, sa.size, &rv);
		h->attr.size = sa.size;
		snprintf(h->attr.etag, sizeof(h->attr.etag), "%s", sa.etag);
	}
	store_attr_free(&sa);
	return h->dcf ? 0 : rv ? rv : EIO;
}

/* Read from what the handle reads now: the staged file, a spool file, or the data cache
 * (*f: which one, for fo_read_reopen). Under h->dcf_lock held for reading when the handle has
 * it (fo_read_refresh swaps them under it held for writing). */
static ssize_t fo_read_view(struct fo_handle *h, char *buf, size_t size, off_t off,
			    struct data_cache_file **f, bool *renamed)
{
	ssize_t n;

	*f = NULL;
	*renamed = false;
	if (h->sf) {
		n = staging_read(h->sf, buf, size, (uint64_t)off);
		if (n != -EAGAIN)
			return n;
	}
	if (h->spool_fd >= 0) {
		n = pread(h->spool_fd, buf, size, off);
		return n < 0 ? -errno : n;
	}
	*f = h->dcf;
	*renamed = h->read_key != NULL || __atomic_load_n(&h->renamed, __ATOMIC_ACQUIRE);
	return *f ? data_cache_read(*f, buf, size, (uint64_t)off) : -EIO;
}

/* The size of key as this mount knows it without asking the store (a writer's staged file,
 * the journal, the metadata cache): true when known. */
static bool fo_local_size(struct fuse_ops_fs *fs, const char *key, uint64_t *size)
{
	struct staging_file *sf;
	struct store_attr sa;
	struct meta_attr ma;
	bool removed = false, known = false;

	if (fs->stg && (sf = staging_find(fs->stg, key))) {
		if ((known = fo_staged_meta(fs, sf, &ma) == 0))
			*size = ma.size;
		staging_release(fs->stg, sf);
		return known;
	}
	if (fs->sync && sync_lookup(fs->sync, key, &sa, NULL, &removed) == 1) {
		if (!removed && (sa.has || sa.size)) {
			*size = sa.size;
			known = true;
		}
		store_attr_free(&sa);
		return known;
	}
	if (meta_cache_get_attr(fs->mc, key, &ma) == META_HIT && S_ISREG(ma.mode)) {
		*size = ma.size;
		return true;
	}
	return false;
}

/* A read-only handle reads the version of the file it was opened on (a spool file, the
 * data cache) unless a writer had it open then. When the file was written through this mount
 * since (a script appending to a log that tail -f reads), a read that ends short of its
 * size as this mount knows it switches the handle to the current content. true if it did. */
static bool fo_read_refresh(struct fuse_ops_fs *fs, struct fo_handle *h, uint64_t end)
{
	struct data_cache_file *old_dcf;
	struct staging_file *old_sf;
	struct meta_attr old_attr;
	struct store *old_st;
	char *old_read_key;
	int old_fd, rv = 0;
	uint64_t size;

	if (h->writable || !h->dcf_lock_ready || __atomic_load_n(&h->unlinked, __ATOMIC_ACQUIRE) ||
	    !fo_local_size(fs, fo_hkey(h), &size) || size <= end)
		return false;
	pthread_rwlock_wrlock(&h->dcf_lock);
	old_dcf = h->dcf;
	old_sf = h->sf;
	old_fd = h->spool_fd;
	old_st = h->st;
	old_read_key = h->read_key;
	old_attr = h->attr;
	h->dcf = NULL;
	h->spool_fd = -1;
	h->read_key = NULL;
	h->sf = fs->stg ? staging_find(fs->stg, fo_hkey(h)) : NULL;
	if (!h->sf || !staging_has_content(h->sf)) {
		struct meta_attr ma;

		rv = fo_getattr_key(fs, fo_hkey(h), &ma);
		if (!rv && !S_ISREG(ma.mode))
			rv = EISDIR;
		if (!rv) {
			h->attr = ma;
			rv = fo_open_read_source(fs, h);
		}
	}
	if (rv) { /* keep reading the old version */
		if (h->sf)
			staging_release(fs->stg, h->sf);
		if (h->dcf)
			data_cache_close(h->dcf);
		if (h->spool_fd >= 0)
			close(h->spool_fd);
		free(h->read_key);
		h->sf = old_sf;
		h->dcf = old_dcf;
		h->spool_fd = old_fd;
		h->st = old_st;
		h->read_key = old_read_key;
		h->attr = old_attr;
	}
	pthread_rwlock_unlock(&h->dcf_lock);
	if (rv) {
		log_debug("'%s' grew; the open file keeps its version: %s", fo_hkey(h), strerror(rv));
		return false;
	}
	if (old_sf)
		staging_release(fs->stg, old_sf);
	if (old_dcf)
		data_cache_close(old_dcf);
	if (old_fd >= 0)
		close(old_fd);
	free(old_read_key);
	return true;
}

static int fo_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;
	struct data_cache_file *f;
	bool renamed;
	ssize_t n, more;
	int rv;

	if (!h->dcf_lock_ready) { /* made by create: the staged file is all there is */
		n = h->sf ? staging_read(h->sf, buf, size, (uint64_t)off) : -EIO;
		return (int)(n == -EAGAIN ? -EIO : n);
	}
	pthread_rwlock_rdlock(&h->dcf_lock);
	n = fo_read_view(h, buf, size, off, &f, &renamed);
	pthread_rwlock_unlock(&h->dcf_lock);
	if (f && (n == -ESTALE || (n == -ENOENT && renamed))) {
		pthread_rwlock_wrlock(&h->dcf_lock);
		rv = fo_read_reopen(fs, h, f, (int)-n);
		pthread_rwlock_unlock(&h->dcf_lock);
		if (rv)
			return -fo_store_errno(rv);
		pthread_rwlock_rdlock(&h->dcf_lock);
		n = fo_read_view(h, buf, size, off, &f, &renamed);
		pthread_rwlock_unlock(&h->dcf_lock);
	}
	if (n >= 0 && (size_t)n < size && fo_read_refresh(fs, h, (uint64_t)off + (uint64_t)n)) {
		pthread_rwlock_rdlock(&h->dcf_lock);
		more = fo_read_view(h, buf + n, size - (size_t)n, off + n, &f, &renamed);
		pthread_rwlock_unlock(&h->dcf_lock);
		if (more > 0)
			n += more;
	}
	if (n == -ENOENT) {
		/* deleted at the store while open (here, by an unlink whose delete has run, or by
		 * another client): what is not cached is gone. Stale, as NFS says, not "no such
		 * file" about a file the caller has open. */
		log_warn("'%s' was deleted at the store while open; reading what is not cached "
			 "fails (ESTALE)", fo_hkey(h));
		return -ESTALE;
	}
	if (n < 0) {
		log_debug("read of '%s' at %lld failed: %s", fo_hkey(h), (long long)off, strerror((int)-n));
		return -fo_store_errno((int)-n);
	}
	return (int)n;
}

/* Early upload of a file written by appends (sync_stream_*), started at multipart_threshold. */
static void *fo_stream_start(void *ud, const char *key, int fd, const struct store_attr *attr)
{
	struct fuse_ops_fs *fs = ud;

	return fs->sync ? sync_stream_start(fs->sync, key, fd, attr) : NULL;
}

static void fo_stream_grew(void *stream, uint64_t size)
{
	sync_stream_grow(stream, size);
}

static void fo_stream_drop(void *stream)
{
	sync_stream_abort(stream);
}

static const struct staging_stream_ops fo_stream_ops = {fo_stream_start, fo_stream_grew,
							fo_stream_drop};

static int fo_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;
	ssize_t n;

	if (!h->writable || !h->sf)
		return -EBADF;
	n = staging_write_follow(h->sf, buf, size, (uint64_t)off, &fo_stream_ops, fs,
				 fs->o->multipart_threshold);
	if (n < 0)
		return (int)n == -EIO ? -EIO : (int)n;
	/* the content is local now: drop the store reader */
	return (int)n;
}

static int fo_flush(const char *path, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;

	if (!h->writable || !h->sf || !staging_is_dirty(h->sf))
		return 0;
	return -staging_publish(h->sf, fo_publish, fs);
}

static int fo_release(const char *path, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;
	int rv = 0;

	if (h->writable && h->sf && staging_is_dirty(h->sf))
		rv = staging_publish(h->sf, fo_publish, fs);
	FO_UNTRACK(fo_open_files, h);
	fo_handle_free(fs, h);
	return -rv;
}

static int fo_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;
	int rv = 0;

	if (!h->writable || !fs->sync)
		return 0;
	if (h->sf && staging_is_dirty(h->sf))
		rv = staging_publish(h->sf, fo_publish, fs);
	if (rv || fs->o->fsync_local)
		return -rv;
	rv = sync_wait_key(fs->sync, fo_hkey(h), fs->o->request_timeout_s * 1000);
	if (rv)
		log_warn("fsync of '%s': not at the destination yet: %s", fo_hkey(h), strerror(rv));
	return rv ? -EIO : 0;
}

static int fo_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct fuse_ops_fs *fs = fo_fs();
	struct staging_file *sf;
	struct meta_attr ma;
	const char *key;
	int rv;

	if ((rv = fo_check_writable(fs)))
		return -rv;
	if (size < 0)
		return -EINVAL;
	if (fi && fi->fh) {
		struct fo_handle *h = (struct fo_handle *)(uintptr_t)fi->fh;

		if (!h->writable || !h->sf)
			return -EBADF;
		return -staging_truncate(h->sf, (uint64_t)size);
	}
	key = fo_key(path);
	if (fo_hidden_key(key))
		return -fo_hidden_truncate(fs, key, (uint64_t)size);
	rv = fo_getattr_key(fs, key, &ma);
	if (rv)
		return -rv;
	if (S_ISDIR(ma.mode))
		return -EISDIR;
	rv = fo_stage_existing(fs, key, &ma, &sf);
	if (rv)
		return -rv;
	rv = staging_truncate(sf, (uint64_t)size);
	if (!rv)
		rv = staging_publish(sf, fo_publish, fs);
	staging_release(fs->stg, sf);
	return -rv;
}

/* Unlink key, whose attributes are ma: 0 or errno. */
static int fo_unlink_key(struct fuse_ops_fs *fs, const char *key, const struct meta_attr *ma)
{
	struct staging_file *sf;
	int rv;

	if (S_ISDIR(ma->mode))
		return EISDIR;
	if (ma->flags & META_IN_SOURCE)
		return fo_refuse_source("unlink", key);
	if (fs->overlay) {
		struct store_attr sa;

		/* deleting the copy would bring the source version back */
		if (store_head(fs->src, key, NULL, &sa) == 0) {
			store_attr_free(&sa);
			return fo_refuse_source("unlink", key);
		}
	}
	sf = staging_find(fs->stg, key);
	if (sf) {
		/* open for writing and not written yet: the handle's first write would copy the
		 * content in from the name, which is about to go */
		if ((rv = staging_copy_up(sf)))
			log_warn("unlink of '%s', which is open: cannot copy its content in (%s); "
				 "writes through the open file will fail", key, strerror(rv));
		staging_forget(sf);
		staging_release(fs->stg, sf);
	}
	rv = sync_remove(fs->sync, key);
	if (rv)
		return rv;
	fo_changed(fs, key, NULL);
	return 0;
}

static int fo_unlink(const char *path)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	struct meta_attr ma;
	int rv;

	/* first: libfuse also unlinks hidden names after the unmount, with nothing else left */
	if (fo_hidden_key(key))
		return -fo_hidden_drop(fs, key);
	if ((rv = fo_check_writable(fs)))
		return -rv;
	rv = fo_getattr_key(fs, key, &ma);
	if (rv)
		return -rv;
	return -fo_unlink_key(fs, key, &ma);
}

/* rename(from, hidden), libfuse's unlink of an open file: unlink from, keep hidden here. */
static int fo_hide(struct fuse_ops_fs *fs, const char *from, const char *hidden)
{
	struct fo_hidden *e;
	int rv;

	if ((rv = fo_check_writable(fs)))
		return rv;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->key = strdup(hidden))) {
		free(e);
		return ENOMEM;
	}
	rv = fo_getattr_key(fs, from, &e->attr);
	if (!rv) {
		e->sf = staging_find(fs->stg, from); /* written: the content goes on with the file */
		rv = fo_unlink_key(fs, from, &e->attr);
	}
	if (rv) {
		fo_hidden_free(fs, e);
		return rv;
	}
	pthread_mutex_lock(&fo_open_lock);
	for (struct fo_handle *h = fo_open_files; h; h = h->open_next)
		if (!strcmp(fo_hkey(h), from))
			__atomic_store_n(&h->unlinked, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fo_open_lock);
	e->attr.flags = META_PENDING;
	pthread_mutex_lock(&fs->hidden_lock);
	e->next = fs->hidden;
	fs->hidden = e;
	pthread_mutex_unlock(&fs->hidden_lock);
	return 0;
}

/* 0 when directory key lists nothing (pending changes included), ENOTEMPTY, or the
 * listing's error. */
static int fo_dir_empty(struct fuse_ops_fs *fs, const char *key)
{
	struct fo_list l;
	int rv = fo_list_dir(fs, key, &l);

	if (rv)
		return rv;
	rv = l.n ? ENOTEMPTY : 0;
	fo_list_free(&l);
	return rv;
}

/* A name mkdir or symlink may create: the mount is writable, nothing has the name (EEXIST;
 * a failed lookup is returned as is, never taken for absence) and the key fits (dir: the
 * marker's trailing '/'). 0 or errno. */
static int fo_check_absent_new(struct fuse_ops_fs *fs, const char *key, int dir)
{
	struct meta_attr ma;
	int rv = fo_check_writable(fs);

	if (rv)
		return rv;
	rv = fo_getattr_key(fs, key, &ma);
	if (rv == 0)
		return EEXIST;
	if (rv != ENOENT)
		return rv;
	return fo_check_new_key(fs, key, dir);
}

static int fo_mkdir(const char *path, mode_t mode)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	char marker[PATH_MAX + 2];
	struct store_attr sa;
	struct meta_attr ma;
	int rv;

	if ((rv = fo_check_absent_new(fs, key, 1)))
		return -rv;
	snprintf(marker, sizeof(marker), "%s/", key);
	fo_new_store_attr(S_IFDIR | (mode & 07777), &sa);
	rv = sync_put_mem(fs->sync, marker, "", 0, &sa);
	if (!rv) {
		fo_attr_from_store(fs, &sa, true, META_PENDING | META_MARKER, &ma);
		fo_changed(fs, key, &ma);
		/* a new directory is empty: lookups inside need no request */
		meta_cache_put_dir(fs->mc, key, meta_cache_begin(fs->mc), NULL, 0);
	}
	store_attr_free(&sa);
	return -rv;
}

static int fo_rmdir(const char *path)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(path);
	char marker[PATH_MAX + 2];
	struct meta_attr ma;
	int rv;

	if ((rv = fo_check_writable(fs)))
		return -rv;
	rv = fo_getattr_key(fs, key, &ma);
	if (rv)
		return -rv;
	if (!S_ISDIR(ma.mode))
		return -ENOTDIR;
	if ((rv = fo_dir_empty(fs, key)))
		return -rv;
	if (ma.flags & META_IN_SOURCE)
		return -fo_refuse_source("rmdir", key);
	snprintf(marker, sizeof(marker), "%s/", key);
	rv = sync_remove(fs->sync, marker);
	if (rv)
		return -rv;
	fo_changed(fs, key, NULL);
	meta_cache_invalidate_dir(fs->mc, key);
	fo_hidden_dropped_dir(fs, key);
	return 0;
}

static int fo_symlink(const char *target, const char *linkpath)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key = fo_key(linkpath);
	struct store_attr sa;
	struct meta_attr ma;
	int rv;

	if ((rv = fo_check_absent_new(fs, key, 0)))
		return -rv;
	fo_new_store_attr(S_IFLNK | 0777, &sa);
	sa.size = strlen(target);
	rv = sync_put_mem(fs->sync, key, target, strlen(target), &sa);
	if (!rv) {
		fo_attr_from_store(fs, &sa, false, META_PENDING, &ma);
		fo_changed(fs, key, &ma);
	}
	store_attr_free(&sa);
	return -rv;
}

/* Rename every key below directory from to the same place below to (recursively). */
/* Open files follow a rename of from to to (dir: every file below directory from): their
 * key is what getattr, fsync and a reader that must find the bytes again use. */
static void fo_handles_renamed(const char *from, const char *to, bool dir)
{
	size_t flen = strlen(from);

	pthread_mutex_lock(&fo_open_lock);
	for (struct fo_handle *h = fo_open_files; h; h = h->open_next) {
		const char *key = h->key; /* changes only under fo_open_lock */
		struct fo_old_key *o;
		char *moved;

		if (__atomic_load_n(&h->unlinked, __ATOMIC_ACQUIRE) ||
		    (dir ? strncmp(key, from, flen) || key[flen] != '/' : strcmp(key, from)))
			continue;
		o = malloc(sizeof(*o));
		if (!o || asprintf(&moved, "%s%s", to, key + flen) < 0) {
			free(o);
			log_warn("out of memory: the open file '%s' keeps its old name", key);
			continue;
		}
		o->key = h->key;
		o->next = h->old_keys;
		h->old_keys = o;
		__atomic_store_n(&h->key, moved, __ATOMIC_RELEASE);
		__atomic_store_n(&h->renamed, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&fo_open_lock);
}

/* The staged state of a file open for writing follows its rename: what it changed is
 * published first (the rename then moves it), content it has not copied in yet is copied in
 * now (its first write would look for it at the old name). 0 or errno. */
static int fo_staged_rename(struct fuse_ops_fs *fs, const char *from, const char *to)
{
	struct staging_file *sf = staging_find(fs->stg, from);
	int rv;

	if (!sf)
		return 0;
	rv = staging_copy_up(sf);
	if (!rv && staging_is_dirty(sf))
		rv = staging_publish(sf, fo_publish, fs);
	staging_release(fs->stg, sf);
	if (!rv)
		staging_rekey(fs->stg, from, to);
	return rv;
}

/* Rename what is below directory from to below to, one record per key, then the marker.
 * With check, nothing is renamed: the walk only finds what would stop it half-way (an
 * entry in the read-only source: EROFS; a new key S3 cannot hold: ENAMETOOLONG), so that
 * the rename can be refused before anything has moved. */
static int fo_rename_tree(struct fuse_ops_fs *fs, const char *from, const char *to, int depth,
			  bool check)
{
	struct fo_list l;
	int rv;

	if (depth > 128)
		return ELOOP;
	rv = fo_list_dir(fs, from, &l);
	if (rv)
		return rv;
	for (size_t i = 0; i < l.n && !rv; i++) {
		char a[PATH_MAX + NAME_MAX + 2], b[PATH_MAX + NAME_MAX + 2];
		bool dir = S_ISDIR(l.v[i].attr.mode);

		if (l.v[i].attr.flags & META_IN_SOURCE) {
			rv = fo_refuse_source("rename", from);
			break;
		}
		snprintf(a, sizeof(a), "%s/%s", from, l.v[i].name);
		snprintf(b, sizeof(b), "%s/%s", to, l.v[i].name);
		if (check && (rv = fo_check_new_key(fs, b, dir ? 1 : 0))) {
			log_warn("refusing a directory rename: '%s' below it cannot become '%s' (%s); "
				 "nothing was renamed", a, b, strerror(rv));
			break;
		}
		if (dir)
			rv = fo_rename_tree(fs, a, b, depth + 1, check);
		else if (!check && !(rv = fo_staged_rename(fs, a, b)))
			rv = sync_rename(fs->sync, a, b);
	}
	fo_list_free(&l);
	if (rv || check)
		return rv;
	/* the marker (if any) last: mode and times of the directory itself */
	char ma_key[PATH_MAX + 2], mb_key[PATH_MAX + 2];
	struct meta_attr ma = {0};

	if (fo_getattr_key(fs, from, &ma) == 0 && (ma.flags & (META_MARKER | META_PENDING))) {
		snprintf(ma_key, sizeof(ma_key), "%s/", from);
		snprintf(mb_key, sizeof(mb_key), "%s/", to);
		if (ma.flags & META_MARKER)
			rv = sync_rename(fs->sync, ma_key, mb_key);
	} else if (depth == 0) {
		/* implicit directory: give the new name a marker so it exists even when empty */
		struct store_attr sa;

		snprintf(mb_key, sizeof(mb_key), "%s/", to);
		fo_new_store_attr(S_IFDIR | (ma.mode & 07777 ? ma.mode & 07777 : 0750), &sa);
		rv = sync_put_mem(fs->sync, mb_key, "", 0, &sa);
		store_attr_free(&sa);
	}
	return rv;
}

static int fo_rename(const char *from_path, const char *to_path, unsigned int flags)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *from = fo_key(from_path), *to = fo_key(to_path);
	struct meta_attr fa, ta;
	bool to_exists;
	int rv;

	if (fo_hidden_key(to))
		return flags ? -EINVAL : -fo_hide(fs, from, to);
	if (fo_hidden_key(from))
		return -EPERM; /* libfuse never renames one; its name is not the user's */
	if ((rv = fo_check_writable(fs)))
		return -rv;
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL;
	rv = fo_getattr_key(fs, from, &fa);
	if (rv)
		return -rv;
	rv = fo_getattr_key(fs, to, &ta);
	if (rv && rv != ENOENT)
		return -rv;
	to_exists = rv == 0;
	if (to_exists && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (fa.flags & META_IN_SOURCE)
		return -fo_refuse_source("rename", from);
	if (to_exists && (ta.flags & META_IN_SOURCE))
		return -fo_refuse_source("rename onto", to);
	if ((rv = fo_check_new_key(fs, to, S_ISDIR(fa.mode) ? 1 : 0)))
		return -rv;
	if (!S_ISDIR(fa.mode)) {
		if (to_exists && S_ISDIR(ta.mode))
			return -EISDIR;
		if ((rv = fo_staged_rename(fs, from, to)))
			return -rv;
		rv = sync_rename(fs->sync, from, to);
		if (rv)
			return -rv;
		fo_handles_renamed(from, to, false);
		fa.flags = (fa.flags & ~META_FROM_LIST) | META_PENDING;
		fo_changed(fs, from, NULL);
		fo_changed(fs, to, &fa);
		return 0;
	}
	if (to_exists) {
		if (!S_ISDIR(ta.mode))
			return -ENOTDIR;
		if ((rv = fo_dir_empty(fs, to)))
			return -rv;
	}
	/* everything below must be able to move before anything does */
	if ((rv = fo_rename_tree(fs, from, to, 0, true)))
		return -rv;
	if (to_exists) {
		char marker[PATH_MAX + 2];

		snprintf(marker, sizeof(marker), "%s/", to);
		rv = sync_remove(fs->sync, marker);
		if (rv)
			return -rv;
	}
	log_info("rename of directory '%s' to '%s': one record per key, not atomic", from, to);
	rv = fo_rename_tree(fs, from, to, 0, false);
	if (!rv) {
		fo_handles_renamed(from, to, true);
		fo_hidden_renamed(fs, from, to);
	}
	meta_cache_invalidate_tree(fs->mc, from);
	meta_cache_invalidate_tree(fs->mc, to);
	{
		char parent[PATH_MAX];
		const char *name = fo_split(from, parent);

		meta_cache_dir_remove(fs->mc, parent, name);
		name = fo_split(to, parent);
		meta_cache_dir_add(fs->mc, parent, name, S_IFDIR);
	}
	return -rv;
}

/* With an overlay, whether key's object is (or will be) at the destination, where a
 * metadata rewrite can change it: 0 yes, EROFS when only the source has it, or the errno of
 * the HEAD. */
static int fo_attr_rewritable(struct fuse_ops_fs *fs, const char *key)
{
	struct store_attr sa;
	bool removed = false;
	int rv;

	if (!fs->overlay || (sync_lookup(fs->sync, key, NULL, NULL, &removed) == 1 && !removed))
		return 0;
	store_attr_init(&sa);
	rv = store_head(fs->dst, key, NULL, &sa);
	store_attr_free(&sa);
	return rv == ENOENT ? EROFS : rv;
}

/* chmod / chown / utimens of the mount root: no object holds its attributes, so the change
 * lasts until the unmount (what rclone does), and tar -x or rsync -a into the root work. */
static int fo_set_root_attr(struct fuse_ops_fs *fs, const struct store_attr *ch)
{
	bool first;

	pthread_mutex_lock(&fs->root_lock);
	if (ch->has & STORE_HAS_MODE)
		fs->root.mode = S_IFDIR | (ch->mode & 07777);
	if ((ch->has & STORE_HAS_UID) && !fs->o->has_uid)
		fs->root.uid = ch->uid;
	if ((ch->has & STORE_HAS_GID) && !fs->o->has_gid)
		fs->root.gid = ch->gid;
	if (ch->has & STORE_HAS_MTIME)
		fs->root.mtime = ch->mtime;
	if (ch->has & STORE_HAS_ATIME)
		fs->root.atime = ch->atime;
	fo_now(&fs->root.ctime);
	first = !fs->root_changed;
	fs->root_changed = true;
	pthread_mutex_unlock(&fs->root_lock);
	if (first)
		log_info("the attributes of the mount root have no object to live in: they are kept "
			 "until the unmount");
	return 0;
}

/* chmod / chown / utimens: the changes in ch (has bits say which). */
static int fo_set_attr(const char *path, struct fuse_file_info *fi, const struct store_attr *ch)
{
	struct fuse_ops_fs *fs = fo_fs();
	const char *key;
	struct staging_file *sf = NULL;
	struct store_attr sa;
	struct meta_attr ma;
	char marker[PATH_MAX + 2];
	int rv;

	if ((rv = fo_check_writable(fs)))
		return -rv;
	if (fi && fi->fh)
		key = fo_hkey((struct fo_handle *)(uintptr_t)fi->fh);
	else if (path)
		key = fo_key(path);
	else
		return -EBADF;
	if (!key[0])
		return fo_set_root_attr(fs, ch);
	if (fo_hidden_key(key))
		return -fo_hidden_set_attr(fs, key, ch);
	rv = fo_getattr_key(fs, key, &ma);
	if (rv)
		return -rv;
	if (ma.flags & META_IN_SOURCE)
		return -fo_refuse_source("changing attributes of", key);
	if (!S_ISDIR(ma.mode) && (sf = staging_find(fs->stg, key))) {
		/* open for writing but not written: an attribute change rewrites the object's
		 * metadata where it is, which an overlay's source must not see */
		if (!staging_has_content(sf) && (rv = fo_attr_rewritable(fs, key))) {
			staging_release(fs->stg, sf);
			return -(rv == EROFS ? fo_refuse_source("changing attributes of", key) : rv);
		}
		staging_set_attr(sf, ch);
		rv = staging_publish(sf, fo_publish, fs);
		staging_release(fs->stg, sf);
		return -rv;
	}
	if (S_ISDIR(ma.mode)) {
		snprintf(marker, sizeof(marker), "%s/", key);
		rv = fo_full_attr(fs, marker, &ma, &sa, NULL, NULL);
		if (rv == ENOENT) {
			/* implicit directory: a marker carries the attributes from now on */
			fo_new_store_attr(S_IFDIR | (ma.mode & 07777), &sa);
			rv = 0;
		}
	} else {
		rv = fo_full_attr(fs, key, &ma, &sa, NULL, NULL);
	}
	if (rv)
		return -rv;
	if (!(sa.has & STORE_HAS_MODE))
		sa.mode = ma.mode;
	if (!(sa.has & STORE_HAS_UID))
		sa.uid = ma.uid;
	if (!(sa.has & STORE_HAS_GID))
		sa.gid = ma.gid;
	if (!(sa.has & STORE_HAS_MTIME))
		sa.mtime = ma.mtime;
	sa.has |= STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID | STORE_HAS_MTIME;
	if (ch->has & STORE_HAS_MODE)
		sa.mode = (sa.mode & S_IFMT ? sa.mode & S_IFMT : ma.mode & S_IFMT) | (ch->mode & 07777);
	if (ch->has & STORE_HAS_UID)
		sa.uid = ch->uid;
	if (ch->has & STORE_HAS_GID)
		sa.gid = ch->gid;
	if (ch->has & STORE_HAS_MTIME)
		sa.mtime = ch->mtime;
	if (ch->has & STORE_HAS_ATIME) {
		sa.atime = ch->atime;
		sa.has |= STORE_HAS_ATIME;
	}
	fo_now(&sa.ctime);
	sa.has |= STORE_HAS_CTIME;
	if (S_ISDIR(ma.mode)) {
		sa.is_dir = true;
		if (!sa.content_type[0])
			snprintf(sa.content_type, sizeof(sa.content_type), "application/x-directory");
		rv = sync_put_mem(fs->sync, marker, "", 0, &sa);
	} else {
		rv = sync_set_attr(fs->sync, key, &sa);
	}
	if (!rv) {
		struct meta_attr na;

		fo_attr_from_store(fs, &sa, S_ISDIR(ma.mode),
				   META_PENDING | (S_ISDIR(ma.mode) ? META_MARKER : 0), &na);
		na.size = ma.size;
		na.etag[0] = '\0'; /* the copy that applies it may give the object a new ETag */
		meta_cache_set_attr(fs->mc, key, &na);
	}
	store_attr_free(&sa);
	return -rv;
}

static int fo_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct store_attr ch = {0};

	ch.mode = mode;
	ch.has = STORE_HAS_MODE;
	return fo_set_attr(path, fi, &ch);
}

static int fo_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct store_attr ch = {0};

	if (uid != (uid_t)-1) {
		ch.uid = uid;
		ch.has |= STORE_HAS_UID;
	}
	if (gid != (gid_t)-1) {
		ch.gid = gid;
		ch.has |= STORE_HAS_GID;
	}
	if (!ch.has)
		return 0;
	return fo_set_attr(path, fi, &ch);
}

static int fo_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct store_attr ch = {0};
	struct timespec now;

	fo_now(&now);
	if (!tv || tv[0].tv_nsec != UTIME_OMIT) {
		ch.atime = (!tv || tv[0].tv_nsec == UTIME_NOW) ? now : tv[0];
		ch.has |= STORE_HAS_ATIME;
	}
	if (!tv || tv[1].tv_nsec != UTIME_OMIT) {
		ch.mtime = (!tv || tv[1].tv_nsec == UTIME_NOW) ? now : tv[1];
		ch.has |= STORE_HAS_MTIME;
	}
	if (!ch.has)
		return 0;
	return fo_set_attr(path, fi, &ch);
}

static int fo_statfs(const char *path, struct statvfs *sv)
{
	struct fuse_ops_fs *fs = fo_fs();
	uint64_t size = fs->o->fs_size ? fs->o->fs_size : (1ULL << 50);

	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = 4096;
	sv->f_frsize = 4096;
	sv->f_blocks = size / 4096;
	sv->f_bfree = sv->f_blocks;
	sv->f_bavail = sv->f_blocks;
	sv->f_files = 1ULL << 32;
	sv->f_ffree = 1ULL << 32;
	sv->f_favail = 1ULL << 32;
	sv->f_namemax = NAME_MAX;
	return 0;
}

static int fo_opendir(const char *path, struct fuse_file_info *fi)
{
	struct meta_attr ma;
	int rv = fo_getattr_key(fo_fs(), fo_key(path), &ma);
	struct fo_dir *dh;
	char *key;

	if (rv)
		return -rv;
	if (!S_ISDIR(ma.mode))
		return -ENOTDIR;
	dh = calloc(1, sizeof(*dh));
	key = strdup(fo_key(path));
	if (!dh || !key || asprintf(&dh->prefix, "%s%s", key, key[0] ? "/" : "") < 0) {
		free(dh);
		free(key);
		return -ENOMEM;
	}
	dh->fs = fo_fs();
	dh->key = key;
	pthread_mutex_init(&dh->lock, NULL);
	pthread_cond_init(&dh->grown, NULL);
	FO_TRACK(fo_open_dirs, dh);
	fi->fh = (uint64_t)(uintptr_t)dh;
	return 0;
}

/* Stop the lister, free the handle. */
static void fo_dir_free(struct fo_dir *dh)
{
	fo_dir_reset(dh);
	pthread_mutex_destroy(&dh->lock);
	pthread_cond_destroy(&dh->grown);
	free(dh->prefix);
	free(dh->key);
	free(dh);
}

static int fo_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct fo_dir *dh = (struct fo_dir *)(uintptr_t)fi->fh;

	if (dh) {
		FO_UNTRACK(fo_open_dirs, dh);
		fo_dir_free(dh);
	}
	return 0;
}

void fuse_ops_release_all(struct fuse_ops_fs *fs)
{
	struct fo_handle *h, *files;
	struct fo_dir *dh, *dirs;
	unsigned n = 0;

	pthread_mutex_lock(&fo_open_lock);
	files = fo_open_files;
	dirs = fo_open_dirs;
	fo_open_files = NULL;
	fo_open_dirs = NULL;
	pthread_mutex_unlock(&fo_open_lock);
	for (; (h = files); n++) {
		files = h->open_next;
		fo_handle_free(fs, h);
	}
	for (; (dh = dirs); n++) {
		dirs = dh->open_next;
		fo_dir_free(dh);
	}
	/* before staging goes: the hidden names' references to it (libfuse's unlink of them,
	 * after this, finds nothing) */
	pthread_mutex_lock(&fs->hidden_lock);
	struct fo_hidden *hidden = fs->hidden;
	fs->hidden = NULL;
	pthread_mutex_unlock(&fs->hidden_lock);
	while (hidden) {
		struct fo_hidden *next = hidden->next;

		fo_hidden_free(fs, hidden);
		hidden = next;
	}
	if (n)
		log_notice("freed %u handle(s) the kernel did not release before the unmount", n);
}

static const struct fuse_operations fo_table = {
	.init = fo_init,
	.getattr = fo_getattr,
	.access = fo_access,
	.readlink = fo_readlink,
	.opendir = fo_opendir,
	.readdir = fo_readdir,
	.releasedir = fo_releasedir,
	.mknod = fo_mknod,
	.mkdir = fo_mkdir,
	.unlink = fo_unlink,
	.rmdir = fo_rmdir,
	.symlink = fo_symlink,
	.rename = fo_rename,
	.chmod = fo_chmod,
	.chown = fo_chown,
	.truncate = fo_truncate,
	.open = fo_open,
	.create = fo_create,
	.read = fo_read,
	.write = fo_write,
	.statfs = fo_statfs,
	.flush = fo_flush,
	.release = fo_release,
	.fsync = fo_fsync,
	.utimens = fo_utimens,
};

const struct fuse_operations *fuse_ops_table(void)
{
	return &fo_table;
}
