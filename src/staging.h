/*
 * staging.h - files open for writing: one staged copy per path in cache_dir/staging, shared by
 * every handle that has the path open, with its size, attributes and dirty state, until the
 * last handle is released.
 *
 * Content is copied up lazily: opening an existing file for writing costs nothing; the first
 * write or truncate fills the staged file with the existing content through the fill callback
 * given when the state was created (a truncate to 0 needs no copy). Publishing (flush, fsync,
 * release) hands the staged file to the caller's publish callback (sync_put_file) and freezes
 * it: the journal may have hard-linked it, so the next write copies it to a fresh staged file
 * first (copy-on-write) and the published version stays intact. A file written by appends
 * only from empty may have a follower (an early upload, staging_write_follow) that the publish
 * hands over, and that anything else changing its content drops.
 *
 * Threads: any thread. staging->lock guards the table of open paths; each file's own lock
 * guards its fd and state and is held across its copy-up (which may read from the network):
 * only handles of that same path wait for it. Callbacks run with the file's lock held and must
 * not call back into staging for the same file.
 */
#ifndef OBJFS_STAGING_H
#define OBJFS_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct staging;
struct staging_file;

/* Fill fd (empty, writable) with the existing content: size bytes. 0 or errno. */
struct staging_fill {
	int (*fill)(void *ud, int fd, uint64_t size);
	void (*free_ud)(void *ud); /* may be NULL */
	void *ud;
};
/* Publish the staged content: path stays valid until the call returns. 0 or errno.
 * stream: the early upload following this content (see staging_write_follow) or NULL; the
 * callback owns it from then on, whatever it returns (hand it on or drop it). */
typedef int staging_publish_fn(void *ud, const char *key, const char *path,
			       const struct store_attr *attr, void *stream);

/*
 * A follower of a file written by appends only (an early upload): while the staged file has
 * been written strictly sequentially from empty, start() may attach one once the size reaches
 * min_size; it hears grew() after each append (the content below size is final from then on)
 * and drop() once, when that stops being true: a write not at the end, a truncate, a rename,
 * an unlink or a release without publish. A publish hands it to the publish callback instead.
 * ops must outlive the file (a static table). Every call runs with the file's lock held: keep them short, no I/O.
 */
struct staging_stream_ops {
	/* fd: the staged file (the follower dups it to read); NULL: not now, try again later */
	void *(*start)(void *ud, const char *key, int fd, const struct store_attr *attr);
	void (*grew)(void *stream, uint64_t size);
	void (*drop)(void *stream);
};

/* Use dir (created 0700 if missing, emptied: staged files do not outlive a mount; what was
 * published lives in the journal's spool). NULL with err filled. */
struct staging *staging_create(const char *dir, char *err, size_t errlen);
/* Every file must have been released. */
void staging_destroy(struct staging *sg);

/*
 * The staged state of key with one more reference. When absent it is created from attr (deep
 * copied) and base_size, the size of the existing content (0 for a new file, then nothing is
 * ever copied), with fill to copy it up; *created says which. The fill's ud is owned by the
 * state from then on (freed with free_ud), also when the state already existed (then freed at
 * once). NULL with *err (ENOMEM).
 */
struct staging_file *staging_get(struct staging *sg, const char *key, const struct store_attr *attr,
				 uint64_t base_size, const struct staging_fill *fill, bool *created,
				 int *err);
/* The state of key with one more reference, or NULL when key is not open for writing. */
struct staging_file *staging_find(struct staging *sg, const char *key);
/* Call cb (without any lock held) for every key open for writing directly below dir_prefix
 * ("" or "a/b/"). 0 or ENOMEM (then cb was not called). */
int staging_list(struct staging *sg, const char *dir_prefix, void (*cb)(void *ud, const char *key),
		 void *ud);
/* Drop a reference; the last one removes the staged file (publish first). */
void staging_release(struct staging *sg, struct staging_file *f);

/* Writes and truncates copy up first when needed; both mark the file dirty and set mtime.
 * Write len bytes of buf at off; then let ops (with ud; may be NULL) start a follower of the
 * appended content once the size reaches min_size, or feed the one attached. The bytes
 * written or -errno. */
ssize_t staging_write_follow(struct staging_file *f, const void *buf, size_t len, uint64_t off,
			     const struct staging_stream_ops *ops, void *ud, uint64_t min_size);
int staging_truncate(struct staging_file *f, uint64_t size);
/* Whether the staged file holds the content (copied up, written or truncated); when not,
 * reads must go to the existing content. */
bool staging_has_content(struct staging_file *f);
/* Copy the existing content in now, if it is not yet (before its name goes away: the copy
 * reads it there). 0 or errno. */
int staging_copy_up(struct staging_file *f);
/* Read from the staged content: bytes read or -errno (-EAGAIN when !has_content). */
ssize_t staging_read(struct staging_file *f, void *buf, size_t len, uint64_t off);

/* Current attributes: the creation attr with the live size and times (deep copy). */
int staging_get_attr(struct staging_file *f, struct store_attr *out);
/* Change mode / uid / gid / times that the next publish stores (has bits of a say which);
 * marks the file dirty so they are published. */
void staging_set_attr(struct staging_file *f, const struct store_attr *a);
bool staging_is_dirty(struct staging_file *f);
/* The key the state publishes to (rename of an open file moves it). */
int staging_rekey(struct staging *sg, const char *from, const char *to);
/* The path was unlinked: never publish it again. */
void staging_forget(struct staging_file *f);
bool staging_is_forgotten(struct staging_file *f);

/* If dirty: publish(ud, key, staged path, attr), then freeze. 0 or the callback's errno (the
 * file stays dirty). */
int staging_publish(struct staging_file *f, staging_publish_fn *publish, void *ud);

#endif
