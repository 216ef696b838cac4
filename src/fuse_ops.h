/*
 * fuse_ops.h - the FUSE adapter: the only code that implements file system operations and turns
 * the inside convention (0 / positive errno) into FUSE's negative errno.
 *
 * The mount (mount.c) fills a struct fuse_ops_fs and passes it as the private data of
 * fuse_new() with the table from fuse_ops_table(). Operations run on libfuse's worker threads.
 */
#ifndef OBJFS_FUSE_OPS_H
#define OBJFS_FUSE_OPS_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "meta_cache.h"

struct objfs_opts;
struct store;
struct data_cache;
struct sync;
struct staging;
struct fo_hidden;

struct fuse_ops_fs {
	const struct objfs_opts *o;
	struct store *src;   /* where reads fall through to */
	struct store *dst;   /* where writes go; == src unless dest= names another store */
	bool overlay;        /* src != dst: src is never modified */
	bool ro;             /* every write is EROFS */
	struct meta_cache *mc;
	struct data_cache *dc;
	struct sync *sync;   /* NULL when read-only */
	struct staging *stg; /* NULL when read-only */
	uid_t uid;           /* owner of objects without metadata (uid= or the mounting user) */
	gid_t gid;
	/* The mount root. No object holds its attributes: chmod, chown and utimens of it change
	 * them here, for the mount's life (root_lock). */
	struct meta_attr root;
	pthread_mutex_t root_lock;
	bool root_changed;
	struct timespec mount_time; /* the times of objects that carry none */
	/* Open files that were unlinked, by libfuse's hidden name (fuse_ops.c: hidden_lock). */
	struct fo_hidden *hidden;
	pthread_mutex_t hidden_lock;
	int initialized;       /* set (atomically) when the kernel's INIT has been handled */
};

struct fuse_operations;
const struct fuse_operations *fuse_ops_table(void);
/* After the FUSE loop has ended: free the file and directory handles the kernel did not
 * release (a RELEASE still queued when the mount went away), before the caches, staging
 * and sync they use are destroyed. */
void fuse_ops_release_all(struct fuse_ops_fs *fs);

#endif
