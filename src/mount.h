/*
 * mount.h - the mount lifecycle: `objfs mount SOURCE MOUNTPOINT [-o ...]`.
 *
 * Order: check the mountpoint and the cache directory, open and check the stores (wrong keys,
 * a missing bucket, an unreachable endpoint fail here, on the terminal, with one line), then
 * daemonize (unless -f: fork, setsid; the parent waits until the child reports "mounted" or
 * its error over a pipe), start the threads (HTTP engine, data cache, sync, control socket),
 * mount and serve. SIGTERM / SIGINT / SIGHUP and `fusermount3 -u` end the loop; the mount is
 * then removed and the sync thread drains before the process exits. Nothing stays mounted
 * when any step fails.
 */
#ifndef OBJFS_MOUNT_H
#define OBJFS_MOUNT_H

#include "opts.h"

/* o->source and o->mountpoint set, options validated. Main thread, no other threads yet.
 * Returns the process exit code: 0 mounted (the daemon runs on; with -f: unmounted cleanly),
 * 1 failure (one line on stderr already said why). */
int mount_main(struct objfs_opts *o);

#endif
