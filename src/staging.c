/*
 * staging.c - files open for writing (see staging.h): a table of staged paths, lazy copy-up,
 * copy-on-write after publish, and the follower (early upload) of a file written by appends only.
 *
 * Locking: sg->lock guards the table (hash chains, references, keys); f->lock guards the rest of
 * a staging_file (fd, path, size, attributes, flags) and is held across copy-up and publish.
 * Order: sg->lock may be taken while holding f->lock only to read the key; never the reverse
 * while waiting on I/O.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "staging.h"

#define STAGING_BUCKETS 1024

struct staging_file {
	struct staging_file *next; /* hash chain, protected by sg->lock */
	struct staging *sg;
	char *key;                 /* protected by sg->lock (rekey) */
	unsigned refs;             /* protected by sg->lock */
	pthread_mutex_t lock;
	/* protected by lock: */
	int fd;                    /* staged content; -1 until copied up / created */
	char path[PATH_MAX];
	bool has_content;
	bool frozen;               /* published: copy before the next change */
	bool dirty;
	bool forgotten;            /* written under sg->lock too: lookups skip it */
	bool appending;            /* written only by appends to this staged file since it was empty */
	void *stream;              /* follower of the appended content (stream_ops) or NULL */
	const struct staging_stream_ops *stream_ops;
	uint64_t size;             /* live size (base size until content exists) */
	uint64_t base_size;
	struct store_attr attr;
	struct staging_fill fill;
};

struct staging {
	char *dir;
	pthread_mutex_t lock;
	unsigned long seq; /* protected by lock */
	struct staging_file *buckets[STAGING_BUCKETS]; /* protected by lock */
};

/* The appended content is about to change or be abandoned: let the follower go (f->lock held). */
static void staging_drop_stream(struct staging_file *f)
{
	if (f->stream) {
		f->stream_ops->drop(f->stream);
		f->stream = NULL;
	}
}

static unsigned staging_hash(const char *key)
{
	unsigned h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % STAGING_BUCKETS;
}

static void staging_empty_dir(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *de;

	if (!dh)
		return;
	while ((de = readdir(dh)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(dh), de->d_name, 0);
	closedir(dh);
}

struct staging *staging_create(const char *dir, char *err, size_t errlen)
{
	struct staging *sg = calloc(1, sizeof(*sg));

	if (!sg || !(sg->dir = strdup(dir))) {
		free(sg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "cannot create staging directory '%s': %s", dir, strerror(errno));
		goto fail;
	}
	if (access(dir, W_OK | X_OK)) {
		snprintf(err, errlen, "staging directory '%s' is not writable: %s", dir,
			 strerror(errno));
		goto fail;
	}
	staging_empty_dir(dir);
	pthread_mutex_init(&sg->lock, NULL);
	return sg;
fail:
	free(sg->dir);
	free(sg);
	return NULL;
}

void staging_destroy(struct staging *sg)
{
	if (!sg)
		return;
	for (size_t i = 0; i < STAGING_BUCKETS; i++)
		if (sg->buckets[i])
			log_warn("staging: '%s' still open at unmount", sg->buckets[i]->key);
	staging_empty_dir(sg->dir);
	pthread_mutex_destroy(&sg->lock);
	free(sg->dir);
	free(sg);
}

/* The live state of key (sg->lock held). A forgotten one (its name was unlinked while open)
 * stays in the table for its handles, but is no longer key's: a new file of that name gets
 * a state of its own. */
static struct staging_file *staging_lookup(struct staging *sg, const char *key)
{
	for (struct staging_file *f = sg->buckets[staging_hash(key)]; f; f = f->next)
		if (!f->forgotten && !strcmp(f->key, key))
			return f;
	return NULL;
}

static void staging_fill_free(struct staging_fill *fill)
{
	if (fill && fill->free_ud && fill->ud)
		fill->free_ud(fill->ud);
}

struct staging_file *staging_get(struct staging *sg, const char *key, const struct store_attr *attr,
				 uint64_t base_size, const struct staging_fill *fill, bool *created,
				 int *err)
{
	struct staging_file *f;

	*created = false;
	pthread_mutex_lock(&sg->lock);
	f = staging_lookup(sg, key);
	if (f) {
		f->refs++;
		pthread_mutex_unlock(&sg->lock);
		staging_fill_free((struct staging_fill *)fill);
		return f;
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->key = strdup(key)) || store_attr_copy(&f->attr, attr)) {
		if (f)
			free(f->key);
		free(f);
		pthread_mutex_unlock(&sg->lock);
		staging_fill_free((struct staging_fill *)fill);
		*err = ENOMEM;
		return NULL;
	}
	f->sg = sg;
	f->refs = 1;
	f->fd = -1;
	f->size = f->base_size = base_size;
	if (fill)
		f->fill = *fill;
	pthread_mutex_init(&f->lock, NULL);
	f->next = sg->buckets[staging_hash(key)];
	sg->buckets[staging_hash(key)] = f;
	*created = true;
	pthread_mutex_unlock(&sg->lock);
	return f;
}

struct staging_file *staging_find(struct staging *sg, const char *key)
{
	struct staging_file *f;

	pthread_mutex_lock(&sg->lock);
	f = staging_lookup(sg, key);
	if (f)
		f->refs++;
	pthread_mutex_unlock(&sg->lock);
	return f;
}

int staging_list(struct staging *sg, const char *dir_prefix, void (*cb)(void *ud, const char *key),
		 void *ud)
{
	size_t plen = strlen(dir_prefix), n = 0, cap = 0;
	char **keys = NULL;
	int rv = 0;

	pthread_mutex_lock(&sg->lock);
	for (size_t i = 0; i < STAGING_BUCKETS && !rv; i++) {
		for (struct staging_file *f = sg->buckets[i]; f && !rv; f = f->next) {
			if (f->forgotten || strncmp(f->key, dir_prefix, plen) != 0 ||
			    strchr(f->key + plen, '/'))
				continue;
			if (n == cap) {
				char **k = realloc(keys, (cap ? cap * 2 : 16) * sizeof(*k));

				if (!k) {
					rv = ENOMEM;
					break;
				}
				keys = k;
				cap = cap ? cap * 2 : 16;
			}
			if (!(keys[n] = strdup(f->key)))
				rv = ENOMEM;
			else
				n++;
		}
	}
	pthread_mutex_unlock(&sg->lock);
	for (size_t i = 0; i < n; i++) {
		if (!rv)
			cb(ud, keys[i]);
		free(keys[i]);
	}
	free(keys);
	return rv;
}

void staging_release(struct staging *sg, struct staging_file *f)
{
	struct staging_file **pp;

	pthread_mutex_lock(&sg->lock);
	if (--f->refs > 0) {
		pthread_mutex_unlock(&sg->lock);
		return;
	}
	for (pp = &sg->buckets[staging_hash(f->key)]; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	pthread_mutex_unlock(&sg->lock);
	if (f->dirty && !f->forgotten)
		log_warn("staging: '%s' released with unpublished changes", f->key);
	staging_drop_stream(f); /* nobody holds a reference: no lock needed */
	if (f->fd >= 0)
		close(f->fd);
	if (f->path[0])
		unlink(f->path); /* a published version lives on as the spool's link */
	staging_fill_free(&f->fill);
	store_attr_free(&f->attr);
	pthread_mutex_destroy(&f->lock);
	free(f->key);
	free(f);
}

/* A new empty staged file: f->fd/f->path (f->lock held). */
static int staging_new_file(struct staging_file *f)
{
	struct staging *sg = f->sg;
	unsigned long n;
	int fd;

	pthread_mutex_lock(&sg->lock);
	n = ++sg->seq;
	pthread_mutex_unlock(&sg->lock);
	snprintf(f->path, sizeof(f->path), "%s/%lu", sg->dir, n);
	fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		log_error("staging: cannot create '%s': %s", f->path, strerror(e));
		f->path[0] = '\0';
		return e;
	}
	f->fd = fd;
	f->frozen = false;
	return 0;
}

static int staging_copy_fd(int in, int out, uint64_t len)
{
	char buf[1 << 16];
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = copy_file_range(in, &(loff_t){(loff_t)done}, out, &(loff_t){(loff_t)done},
					    (size_t)(len - done), 0);
		if (n > 0) {
			done += (uint64_t)n;
			continue;
		}
		if (n == 0)
			return EIO;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return errno;
		/* fallback: plain copy */
		while (done < len) {
			ssize_t r = pread(in, buf, sizeof(buf), (off_t)done);
			if (r <= 0)
				return r < 0 ? errno : EIO;
			if (pwrite(out, buf, (size_t)r, (off_t)done) != r)
				return errno ? errno : EIO;
			done += (uint64_t)r;
		}
	}
	return 0;
}

/* Make the staged file writable with the current content (f->lock held): copy up the existing
 * content once (only the first keep bytes are needed), or copy a frozen version. */
static int staging_prepare(struct staging_file *f, uint64_t keep)
{
	int rv;

	if (f->has_content && !f->frozen)
		return 0;
	if (f->has_content) {
		/* copy-on-write of the published version */
		int old = f->fd;
		char old_path[PATH_MAX];

		snprintf(old_path, sizeof(old_path), "%s", f->path);
		f->fd = -1;
		rv = staging_new_file(f);
		if (!rv)
			rv = staging_copy_fd(old, f->fd, f->size < keep ? f->size : keep);
		if (rv) {
			if (f->fd >= 0) {
				close(f->fd);
				unlink(f->path);
			}
			f->fd = old;
			snprintf(f->path, sizeof(f->path), "%s", old_path);
			return rv;
		}
		close(old);
		/* the frozen path belongs to the journal's spool now (or was already copied) */
		unlink(old_path);
		staging_drop_stream(f);
		/* a new staged file: a follower starts over, and only from empty (an ftruncate
		 * to 0 of a new file publishes it before the first write) */
		f->appending = f->size == 0;
		return 0;
	}
	rv = staging_new_file(f);
	if (rv)
		return rv;
	if (keep > f->base_size)
		keep = f->base_size;
	if (keep > 0) {
		if (!f->fill.fill) {
			rv = EIO;
		} else {
			rv = f->fill.fill(f->fill.ud, f->fd, f->base_size);
			if (!rv && ftruncate(f->fd, (off_t)f->base_size))
				rv = errno;
		}
		if (rv) {
			log_warn("staging: copy-up of '%s' failed: %s", f->key, strerror(rv));
			close(f->fd);
			unlink(f->path);
			f->fd = -1;
			f->path[0] = '\0';
			return rv;
		}
	}
	f->has_content = true;
	f->size = keep ? f->base_size : 0;
	f->appending = f->size == 0;
	return 0;
}

static void staging_touch(struct staging_file *f)
{
	clock_gettime(CLOCK_REALTIME, &f->attr.mtime);
	f->attr.ctime = f->attr.mtime;
	f->attr.has |= STORE_HAS_MTIME | STORE_HAS_CTIME;
	f->dirty = true;
}

/* Attach or feed the follower after an append (f->lock held). */
static void staging_follow(struct staging_file *f, const struct staging_stream_ops *ops, void *ud,
			   uint64_t min_size)
{
	char key[PATH_MAX];

	if (!f->appending || f->forgotten || f->fd < 0)
		return;
	if (!f->stream && ops && f->size >= min_size) {
		pthread_mutex_lock(&f->sg->lock);
		snprintf(key, sizeof(key), "%s", f->key);
		pthread_mutex_unlock(&f->sg->lock);
		f->attr.size = f->size;
		f->stream = ops->start(ud, key, f->fd, &f->attr);
		f->stream_ops = ops;
	}
	if (f->stream)
		f->stream_ops->grew(f->stream, f->size);
}

ssize_t staging_write_follow(struct staging_file *f, const void *buf, size_t len, uint64_t off,
			     const struct staging_stream_ops *ops, void *ud, uint64_t min_size)
{
	ssize_t done = 0;
	int rv;

	pthread_mutex_lock(&f->lock);
	rv = staging_prepare(f, UINT64_MAX);
	if (rv) {
		pthread_mutex_unlock(&f->lock);
		return -rv;
	}
	if (off != f->size && f->appending) {
		/* content a follower may have read changes: never publish it half-old */
		staging_drop_stream(f);
		f->appending = false;
	}
	while ((size_t)done < len) {
		ssize_t n = pwrite(f->fd, (const char *)buf + done, len - (size_t)done,
				   (off_t)(off + (uint64_t)done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rv = errno;
			break;
		}
		done += n;
	}
	if (done > 0) {
		if (off + (uint64_t)done > f->size)
			f->size = off + (uint64_t)done;
		staging_touch(f);
	}
	if ((size_t)done < len) { /* a short write leaves the end unknown to the follower */
		staging_drop_stream(f);
		f->appending = false;
	} else {
		staging_follow(f, ops, ud, min_size);
	}
	pthread_mutex_unlock(&f->lock);
	return done > 0 ? done : -rv;
}

int staging_truncate(struct staging_file *f, uint64_t size)
{
	int rv;

	pthread_mutex_lock(&f->lock);
	rv = staging_prepare(f, size);
	if (!rv && size != f->size) {
		staging_drop_stream(f);
		f->appending = size == 0;
	}
	if (!rv && ftruncate(f->fd, (off_t)size))
		rv = errno;
	if (rv)
		f->appending = false;
	if (!rv) {
		f->size = size;
		staging_touch(f);
	}
	pthread_mutex_unlock(&f->lock);
	return rv;
}

int staging_copy_up(struct staging_file *f)
{
	int rv;

	pthread_mutex_lock(&f->lock);
	rv = f->has_content ? 0 : staging_prepare(f, UINT64_MAX);
	pthread_mutex_unlock(&f->lock);
	return rv;
}

bool staging_is_forgotten(struct staging_file *f)
{
	bool r;

	pthread_mutex_lock(&f->lock);
	r = f->forgotten;
	pthread_mutex_unlock(&f->lock);
	return r;
}

bool staging_has_content(struct staging_file *f)
{
	bool r;

	pthread_mutex_lock(&f->lock);
	r = f->has_content;
	pthread_mutex_unlock(&f->lock);
	return r;
}

ssize_t staging_read(struct staging_file *f, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	pthread_mutex_lock(&f->lock);
	if (!f->has_content) {
		pthread_mutex_unlock(&f->lock);
		return -EAGAIN;
	}
	if (off >= f->size)
		n = 0;
	else {
		if (len > f->size - off)
			len = (size_t)(f->size - off);
		n = pread(f->fd, buf, len, (off_t)off);
		if (n < 0)
			n = -errno;
	}
	pthread_mutex_unlock(&f->lock);
	return n;
}

int staging_get_attr(struct staging_file *f, struct store_attr *out)
{
	int rv;

	pthread_mutex_lock(&f->lock);
	rv = store_attr_copy(out, &f->attr);
	if (!rv)
		out->size = f->size;
	pthread_mutex_unlock(&f->lock);
	return rv;
}

void staging_set_attr(struct staging_file *f, const struct store_attr *a)
{
	pthread_mutex_lock(&f->lock);
	if (a->has & STORE_HAS_MODE)
		f->attr.mode = a->mode;
	if (a->has & STORE_HAS_UID)
		f->attr.uid = a->uid;
	if (a->has & STORE_HAS_GID)
		f->attr.gid = a->gid;
	if (a->has & STORE_HAS_MTIME)
		f->attr.mtime = a->mtime;
	if (a->has & STORE_HAS_ATIME)
		f->attr.atime = a->atime;
	if (a->has & STORE_HAS_CTIME)
		f->attr.ctime = a->ctime;
	f->attr.has |= a->has;
	f->dirty = true;
	pthread_mutex_unlock(&f->lock);
}

bool staging_is_dirty(struct staging_file *f)
{
	bool r;

	pthread_mutex_lock(&f->lock);
	r = f->dirty && !f->forgotten;
	pthread_mutex_unlock(&f->lock);
	return r;
}

int staging_rekey(struct staging *sg, const char *from, const char *to)
{
	struct staging_file *f, **pp;
	char *copy = strdup(to);

	if (!copy)
		return ENOMEM;
	pthread_mutex_lock(&sg->lock);
	f = staging_lookup(sg, from);
	if (!f || staging_lookup(sg, to)) {
		pthread_mutex_unlock(&sg->lock);
		free(copy);
		return f ? EBUSY : 0;
	}
	for (pp = &sg->buckets[staging_hash(from)]; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	free(f->key);
	f->key = copy;
	f->next = sg->buckets[staging_hash(to)];
	sg->buckets[staging_hash(to)] = f;
	f->refs++;
	pthread_mutex_unlock(&sg->lock);
	/* a follower uploads to the old key: let it go (a dirty file is published first) */
	pthread_mutex_lock(&f->lock);
	staging_drop_stream(f);
	f->appending = false;
	pthread_mutex_unlock(&f->lock);
	staging_release(sg, f);
	return 0;
}

void staging_forget(struct staging_file *f)
{
	pthread_mutex_lock(&f->lock);
	pthread_mutex_lock(&f->sg->lock);
	f->forgotten = true;
	pthread_mutex_unlock(&f->sg->lock);
	f->dirty = false;
	staging_drop_stream(f);
	pthread_mutex_unlock(&f->lock);
}

int staging_publish(struct staging_file *f, staging_publish_fn *publish, void *ud)
{
	char key[PATH_MAX];
	int rv = 0;

	pthread_mutex_lock(&f->lock);
	if (!f->dirty || f->forgotten)
		goto out;
	/* a state that never got content (only attributes changed on a new, empty file) */
	if (!f->has_content && f->base_size == 0) {
		rv = staging_prepare(f, 0);
		if (rv)
			goto out;
	}
	pthread_mutex_lock(&f->sg->lock);
	snprintf(key, sizeof(key), "%s", f->key);
	pthread_mutex_unlock(&f->sg->lock);
	f->attr.size = f->size;
	if (f->has_content) {
		void *stream = f->appending ? f->stream : NULL;

		if (!stream)
			staging_drop_stream(f);
		f->stream = NULL; /* the callback owns it now */
		rv = publish(ud, key, f->path, &f->attr, stream);
		if (!rv)
			f->frozen = true;
	} else {
		/* only attributes changed on an existing file: the caller rewrites metadata */
		staging_drop_stream(f);
		rv = publish(ud, key, NULL, &f->attr, NULL);
	}
	if (!rv)
		f->dirty = false;
out:
	pthread_mutex_unlock(&f->lock);
	return rv;
}
