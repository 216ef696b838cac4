/*
 * ctl.h - the control socket: how `objfs status|sync|umount` talk to a running mount.
 *
 * Server (in the mount daemon): a UNIX stream socket, normally cache_dir/ctl.sock, mode
 * 0600, served by one accept thread plus one thread per connection (so "status" answers
 * while a "sync" streams progress), at most CTL_MAX_CLIENTS at once.
 *
 * Finding the socket from a mount point (no request goes through the FUSE mount itself, so
 * `objfs status` works even when the mount hangs): the daemon registers a symlink
 *     <registry dir>/<escaped mount point>.sock -> <socket path>
 * where the registry dir is, for the uid that mounted:
 *     $OBJFS_RUNTIME_DIR if set (tests, unusual setups; client and daemon must agree);
 *     /run/objfs for root; /run/user/<uid>/objfs when /run/user/<uid> belongs to uid;
 *     else /tmp/objfs-<uid> (0700, must belong to uid and not be a symlink).
 * The client takes that uid from the user_id= option of the mount in /proc/self/mountinfo
 * (so root finds a user's mount), or its own euid when the mount point is not listed.
 * The escaped name keeps [A-Za-z0-9._-] and writes other bytes as %XX ("/mnt/a b" ->
 * "%2Fmnt%2Fa%20b"); names over 200 bytes use "sha256-" + the hex SHA-256 of the path.
 * The mount point is made absolute and normalised without resolving its last component.
 *
 * Protocol: the client sends one line; the server answers with lines and closes.
 *   "ping"          -> "pong"
 *   "status"        -> "key=value" lines (see ctl_status_*)
 *   "status json"   -> one JSON object on one line
 *   "sync", "drain" -> "progress files_done=N files_total=N bytes_done=N bytes_total=N
 *                      elapsed=S retrying=N" lines about every 200 ms, "note <last error>"
 *                      after a progress line while items are being retried, then "done" or
 *                      "error <message>" (sync: what was written before the request; drain:
 *                      until the queue is empty, later writes included)
 *   anything else   -> "error unknown command '...': try ping, status, status json, sync, drain"
 * A client that goes away cancels its sync/drain wait (nothing else is cancelled).
 *
 * Threads: ctl_server_* from the daemon's main thread; handlers run on connection threads
 * (with all signals blocked) and must be thread-safe. Client functions: any thread.
 */
#ifndef OBJFS_CTL_H
#define OBJFS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sync.h"

#define CTL_MAX_CLIENTS 16

/* Writes one status answer: key=value lines, or a JSON object. Keys: [a-z0-9_]. */
struct ctl_status;
void ctl_status_u64(struct ctl_status *w, const char *key, uint64_t v);
void ctl_status_double(struct ctl_status *w, const char *key, double v);
void ctl_status_str(struct ctl_status *w, const char *key, const char *v); /* NULL: "" */
/* The sync statistics as queued_files, queued_bytes, oldest_pending_s, in_flight, retrying,
 * uploaded_files, uploaded_bytes, ops_done, failed_attempts, dropped, batches,
 * journal_bytes, last_error, last_error_age_s. */
void ctl_status_sync_stats(struct ctl_status *w, const struct sync_stats *st);

struct ctl_handlers {
	void *ud;
	/* Describe the mount (ctl_status_* on w). NULL: only the "pid" key. */
	void (*status)(void *ud, struct ctl_status *w);
	/* Wait until everything written so far (drain: until nothing is pending at all) is at
	 * the destination; call progress(pud, p) about every 200 ms from this thread. 0, or an
	 * errno with one line in err; ECANCELED soon after *cancel becomes non-zero.
	 * ctl_wait_sync() does this for a struct sync. NULL: "error not supported". */
	int (*sync)(void *ud, bool drain, void (*progress)(void *pud, const struct sync_progress *p),
		    void *pud, const volatile int *cancel, char *err, size_t errlen);
	/* "lazy": the next unmount leaves pending work in the journal for the next mount
	 * instead of draining it (objfs umount --lazy). NULL: "error not supported". */
	void (*lazy)(void *ud);
};

/* The sync handler for a struct sync: sync_wait_all_cancellable(), repeated for drain
 * until the queue is empty. */
int ctl_wait_sync(struct sync *s, bool drain, void (*progress)(void *pud, const struct sync_progress *p),
		  void *pud, const volatile int *cancel, char *err, size_t errlen);

struct ctl_server;
/* Create the socket (replacing a stale one; refusing to replace anything that is not a
 * socket), mode 0600, and start serving. h is copied. NULL with one line in err. */
struct ctl_server *ctl_server_start(const char *sock_path, const struct ctl_handlers *h, char *err,
				    size_t errlen);
/* Publish the socket for mountpoint in the registry (see above); removed again by
 * ctl_server_stop. 0 or errno with one line in err (the mount can go on without it). */
int ctl_server_register(struct ctl_server *srv, const char *mountpoint, char *err, size_t errlen);
/* Stop accepting, cancel waiting syncs, join every thread, remove the socket and the
 * registry entry. NULL is fine. */
void ctl_server_stop(struct ctl_server *srv);

/* ---- client ---- */

/* Whether mountpoint is an objfs mount (type fuse.objfs, or fuse): 0, ENOENT when nothing is
 * mounted there, EINVAL for another file system; one line in err. */
int ctl_check_mount(const char *mountpoint, char *err, size_t errlen);
/* The socket registered for mountpoint (PATH_MAX). 0, or errno with one line in err
 * ("'/mnt/x' is not an objfs mount: ..."). */
int ctl_socket_for_mountpoint(const char *mountpoint, char *path, size_t len, char *err, size_t errlen);
/* The registry entry a daemon running as uid would create for mountpoint. */
int ctl_registry_path(unsigned uid, const char *mountpoint, char *path, size_t len);

/* Send cmd to the socket at sock_path and copy the answer to out; "sync" and "drain"
 * render progress (a bar redrawn in place when out is a terminal, else a plain line every
 * few seconds) and a summary line. 0; EIO with the server's message in err when it answered
 * "error ..."; or the errno of a connection failure with one line in err. */
int ctl_client_request(const char *sock_path, const char *cmd, FILE *out, char *err, size_t errlen);

/* The CLI's entry points: find the mount's socket and run one request. 0 or errno; the
 * error line is logged with log_error() (stderr in the CLI). */
int ctl_client_status(const char *mountpoint, bool json, FILE *out);
int ctl_client_sync(const char *mountpoint, FILE *out);
int ctl_client_drain(const char *mountpoint, FILE *out);
int ctl_client_ping(const char *mountpoint);

/* One progress line without the bar: "450/1000 files, 1.2 GiB of 2.0 GiB, 35.2 MiB/s,
 * ETA 0:23" (rate and ETA only once they mean something). */
void ctl_format_progress(char *buf, size_t len, const struct sync_progress *p);

#endif
