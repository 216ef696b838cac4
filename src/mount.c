/*
 * mount.c - the mount lifecycle (see mount.h): checks, stores, daemonizing, threads, the FUSE
 * session, signals and the reverse teardown.
 *
 * Threads: mount_main runs on the main thread. Before the fork only short-lived objects exist
 * (a temporary HTTP engine for the store check, joined before forking); everything with
 * threads is created after the fork, with the termination signals blocked so that only the
 * main thread (in the FUSE loop) receives them. SIGHUP and SIGUSR1 stay blocked in every
 * thread and are read from a signalfd by one signal thread (mount_signal_thread), which does
 * the work (re-read credentials, log the counters) outside any signal handler. No locks of
 * its own: the signal thread only calls functions that are safe from any thread.
 */
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "creds.h"
#include "crypto.h"
#include "ctl.h"
#include "data_cache.h"
#include "fuse_ops.h"
#include "http.h"
#include "log.h"
#include "meta_cache.h"
#include "mount.h"
#include "opts.h"
#include "staging.h"
#include "store.h"
#include "sync.h"

#define MOUNT_ERR_LEN 512
#define MOUNT_META_ENTRIES 100000
#define MOUNT_WAIT_LOG_S 10 /* mount_wait: one "retrying" line this often */

struct mount_state {
	struct objfs_opts *o;
	char mountpoint[PATH_MAX];
	char cache_dir[PATH_MAX];
	struct stat mp_stat;
	struct http_engine *eng;
	struct store *src, *dst;
	struct meta_cache *mc;
	struct data_cache *dc;
	struct staging *stg;
	struct sync *sync;
	int lock_fd;
	struct fuse *fuse;
	bool mounted;
	struct fuse_ops_fs fs;
	struct ctl_server *ctl;
	bool lazy_unmount; /* set by the ctl "lazy" command; read at unmount (atomics) */
	int sig_fd;        /* signalfd of SIGHUP and SIGUSR1, -1 when none */
	int sig_stop_fd;   /* eventfd that ends the signal thread, -1 when none */
	pthread_t sig_thread;
	bool sig_started;
	pthread_t kra_thread; /* mount_kernel_ra_thread */
	bool kra_started;
	pthread_mutex_t kra_lock; /* protects kra_stop; kra_cond wakes the thread to stop */
	pthread_cond_t kra_cond;
	bool kra_stop;
};

/* One line into err (vsnprintf: a long path is cut, never overflows). */
static void mount_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void mount_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- checks ---- */

/* Undo the octal escapes of /proc/self/mountinfo ("\040" for a space). */
static void mount_unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Is path a mount point? Then *dev (may be NULL) is the device of the topmost mount there. */
static bool mount_find(const char *path, dev_t *dev)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok = strtok_r(line, " ", &save), *devtok = NULL;
		unsigned maj, min;

		for (int i = 0; tok && i < 4; i++) {
			tok = strtok_r(NULL, " ", &save);
			if (i == 1)
				devtok = tok; /* the third field: major:minor */
		}
		if (!tok)
			continue;
		mount_unescape(tok);
		if (strcmp(tok, path) != 0)
			continue;
		found = true; /* later lines are mounted on top: keep looking */
		if (dev && devtok && sscanf(devtok, "%u:%u", &maj, &min) == 2)
			*dev = makedev(maj, min);
	}
	fclose(f);
	return found;
}

static bool mount_is_mountpoint(const char *path)
{
	return mount_find(path, NULL);
}

static int mount_check_mountpoint(struct mount_state *ms, char *err, size_t errlen)
{
	const char *mp = ms->o->mountpoint;

	if (stat(mp, &ms->mp_stat)) {
		int e = errno;

		if (e == ENOTCONN)
			mount_errf(err, errlen,
				 "mountpoint '%s' is a dead FUSE mount: run 'objfs umount %s' (or "
				 "fusermount3 -u) first",
				 mp, mp);
		else if (e == ENOENT)
			mount_errf(err, errlen, "mountpoint '%s' does not exist: create it first", mp);
		else
			mount_errf(err, errlen, "mountpoint '%s': %s", mp, strerror(e));
		return e;
	}
	if (!S_ISDIR(ms->mp_stat.st_mode)) {
		mount_errf(err, errlen, "mountpoint '%s' is not a directory", mp);
		return ENOTDIR;
	}
	if (!realpath(mp, ms->mountpoint)) {
		mount_errf(err, errlen, "mountpoint '%s': %s", mp, strerror(errno));
		return errno;
	}
	if (mount_is_mountpoint(ms->mountpoint)) {
		mount_errf(err, errlen, "'%s' is already a mount point: unmount it first",
			 ms->mountpoint);
		return EBUSY;
	}
	return 0;
}

static int mount_mkdirs(const char *path, mode_t last_mode)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(buf, last_mode) && errno != EEXIST)
		return errno;
	return 0;
}

/* cache_dir= or a per-mount default; created 0700, must be a writable directory. */
static int mount_cache_dir(struct mount_state *ms, char *err, size_t errlen)
{
	struct objfs_opts *o = ms->o;
	char probe[PATH_MAX + 64];
	struct stat sb;
	int fd, rv;

	if (o->cache_dir && o->cache_dir[0]) {
		if (o->cache_dir[0] != '/') {
			char cwd[PATH_MAX];

			if (!getcwd(cwd, sizeof(cwd)) ||
			    snprintf(ms->cache_dir, sizeof(ms->cache_dir), "%s/%s", cwd, o->cache_dir) >=
				    (int)sizeof(ms->cache_dir)) {
				mount_errf(err, errlen, "cache directory '%s': path too long", o->cache_dir);
				return ENAMETOOLONG;
			}
		} else {
			snprintf(ms->cache_dir, sizeof(ms->cache_dir), "%s", o->cache_dir);
		}
	} else {
		char id[3 * PATH_MAX + 8], hex[2 * CRYPTO_SHA256_LEN + 1], base[PATH_MAX];
		const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

		snprintf(id, sizeof(id), "%s\n%s\n%s", o->source, o->dest ? o->dest : "",
			 ms->mountpoint);
		crypto_sha256_hex(id, strlen(id), hex);
		hex[16] = '\0';
		if (getuid() == 0)
			snprintf(base, sizeof(base), "/var/cache/objfs");
		else if (xdg && xdg[0] == '/')
			snprintf(base, sizeof(base), "%s/objfs", xdg);
		else if (home && home[0] == '/')
			snprintf(base, sizeof(base), "%s/.cache/objfs", home);
		else {
			mount_errf(err, errlen, "no cache directory: set cache_dir= or HOME");
			return EINVAL;
		}
		if (snprintf(ms->cache_dir, sizeof(ms->cache_dir), "%s/%s", base, hex) >=
		    (int)sizeof(ms->cache_dir)) {
			mount_errf(err, errlen, "no cache directory: set cache_dir=");
			return ENAMETOOLONG;
		}
	}
	rv = mount_mkdirs(ms->cache_dir, 0700);
	if (rv) {
		mount_errf(err, errlen, "cannot create cache directory '%s': %s", ms->cache_dir,
			 strerror(rv));
		return rv;
	}
	if (stat(ms->cache_dir, &sb) || !S_ISDIR(sb.st_mode)) {
		mount_errf(err, errlen, "cache directory '%s' is not a directory", ms->cache_dir);
		return ENOTDIR;
	}
	/* access() says yes to root on a read-only file system: try for real */
	snprintf(probe, sizeof(probe), "%s/.objfs-probe.%d", ms->cache_dir, (int)getpid());
	fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rv = errno;
		mount_errf(err, errlen, "cache directory '%s' is not writable: %s", ms->cache_dir,
			 strerror(rv));
		return rv;
	}
	close(fd);
	unlink(probe);
	return 0;
}

/* Read-only mounts have no sync object to hold the cache directory lock: hold it here (the
 * same file, cache_dir/lock, so read-only and read-write mounts exclude each other). */
static int mount_lock_cache_dir(struct mount_state *ms, char *err, size_t errlen)
{
	char path[PATH_MAX + 8];

	snprintf(path, sizeof(path), "%s/lock", ms->cache_dir);
	ms->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ms->lock_fd < 0) {
		mount_errf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		return errno;
	}
	if (flock(ms->lock_fd, LOCK_EX | LOCK_NB)) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(ms->lock_fd, pid, sizeof(pid) - 1, 0);

		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		mount_errf(err, errlen, "cache directory '%s' is in use by another objfs mount%s%s%s",
			 ms->cache_dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
		close(ms->lock_fd);
		ms->lock_fd = -1;
		return e == EWOULDBLOCK ? EBUSY : e;
	}
	return 0;
}

static void mount_lock_write_pid(struct mount_state *ms)
{
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

	if (ms->lock_fd >= 0 && ftruncate(ms->lock_fd, 0) == 0 &&
	    pwrite(ms->lock_fd, pid, (size_t)n, 0) != n)
		log_debug("cannot write the pid into the lock file");
}

/* ---- stores ---- */

static bool mount_is_file_url(const char *s)
{
	return strncmp(s, "file://", 7) == 0;
}

static bool mount_transient(int rv)
{
	return rv == ECONNREFUSED || rv == ETIMEDOUT || rv == EHOSTUNREACH || rv == ECONNRESET ||
	       rv == EIO || rv == EAGAIN;
}

/* Open one store from an s3:// or file:// URL; with check, verify it (retrying a transient
 * failure for mount_wait seconds). */
static int mount_open_one(struct mount_state *ms, const char *url, bool dest, bool check,
			  struct store **st, char *err, size_t errlen)
{
	struct objfs_opts *o = ms->o;
	char *bucket = NULL, *prefix = NULL;
	time_t deadline = time(NULL) + (o->mount_wait_s > 0 ? o->mount_wait_s : 0);
	int rv;

	*st = NULL;
	if (mount_is_file_url(url)) {
		*st = store_dir_create(url + 7, err, errlen);
		if (!*st)
			return EINVAL;
		if (check && (rv = (*st)->ops->check(*st, err, errlen))) {
			store_destroy(*st);
			*st = NULL;
			return rv;
		}
		return 0;
	}
	rv = cli_parse_s3_url(url, &bucket, &prefix);
	if (rv) {
		mount_errf(err, errlen, "'%s' is not s3://bucket[/prefix] or file:///dir", url);
		return rv;
	}
	if (!ms->eng) {
		struct http_config cfg;

		cli_http_config(o, &cfg);
		ms->eng = http_engine_create(&cfg);
		if (!ms->eng) {
			rv = errno ? errno : ENOMEM;
			mount_errf(err, errlen, "cannot start the HTTP engine: %s", strerror(rv));
			goto out;
		}
	}
	/* mount_wait: the first failure is logged, then one line every MOUNT_WAIT_LOG_S */
	for (time_t next_log = 0;;) {
		char e1[MOUNT_ERR_LEN];
		time_t now;

		rv = cli_open_store(o, ms->eng, bucket, prefix, dest, check, st, e1, sizeof(e1));
		if (rv)
			mount_errf(err, errlen, "%s: %s", url, e1);
		now = time(NULL);
		if (!rv || !check || !mount_transient(rv) || now >= deadline)
			break;
		if (now >= next_log) {
			log_warn("%s; retrying for up to %lld s more (mount_wait)", err,
				 (long long)(deadline - now));
			next_log = now + MOUNT_WAIT_LOG_S;
		}
		sleep(1);
	}
out:
	free(bucket);
	free(prefix);
	return rv;
}

static int mount_open_stores(struct mount_state *ms, bool check, char *err, size_t errlen)
{
	struct objfs_opts *o = ms->o;
	int rv;

	rv = mount_open_one(ms, o->source, false, check, &ms->src, err, errlen);
	if (rv)
		return rv;
	if (o->dest && strcmp(o->dest, o->source) != 0) {
		rv = mount_open_one(ms, o->dest, true, check, &ms->dst, err, errlen);
		if (rv)
			return rv;
	} else {
		ms->dst = ms->src;
	}
	return 0;
}

static void mount_close_stores(struct mount_state *ms)
{
	if (ms->dst && ms->dst != ms->src)
		store_destroy(ms->dst);
	store_destroy(ms->src);
	ms->src = ms->dst = NULL;
	if (ms->eng)
		http_engine_destroy(ms->eng);
	ms->eng = NULL;
}

/* ---- control socket (objfs status / sync / umount) ---- */

static void mount_ctl_status(void *ud, struct ctl_status *w)
{
	struct mount_state *ms = ud;
	struct meta_cache_stats mcs;
	struct data_cache_stats ds;
	char key[64];

	ctl_status_str(w, "source", ms->o->source);
	ctl_status_str(w, "dest", ms->o->dest ? ms->o->dest : ms->o->source);
	ctl_status_str(w, "mountpoint", ms->mountpoint);
	ctl_status_str(w, "cache_dir", ms->cache_dir);
	ctl_status_u64(w, "read_only", ms->o->ro);
	if (ms->sync) {
		struct sync_stats ss;

		sync_get_stats(ms->sync, &ss);
		ctl_status_sync_stats(w, &ss);
	}
	if (ms->eng) {
		struct http_stats hs;

		http_get_stats(ms->eng, &hs);
		ctl_status_u64(w, "http_requests", hs.requests);
		ctl_status_u64(w, "http_failures", hs.failures);
		ctl_status_u64(w, "http_bytes_sent", hs.bytes_sent);
		ctl_status_u64(w, "http_bytes_received", hs.bytes_received);
		ctl_status_u64(w, "http_in_flight", hs.in_flight);
		ctl_status_u64(w, "http_queued", hs.queued);
		ctl_status_u64(w, "http_waiting_retry", hs.waiting_retry);
		ctl_status_u64(w, "http_idle_connections", hs.idle_connections);
		ctl_status_u64(w, "http_open_connections", hs.open_connections);
		for (int c = 0; c < HTTP_RETRY_NCAUSES; c++) {
			snprintf(key, sizeof(key), "http_retries_%s", http_retry_cause_name(c));
			for (char *k = key; *k; k++)
				if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9')))
					*k = '_';
			ctl_status_u64(w, key, hs.retries[c]);
		}
		ctl_status_str(w, "http_last_error", hs.last_error);
		for (size_t i = 0; i < hs.n_hosts && i < 8; i++) {
			snprintf(key, sizeof(key), "host%zu", i);
			ctl_status_str(w, key, hs.hosts[i].host);
			snprintf(key, sizeof(key), "host%zu_in_flight", i);
			ctl_status_u64(w, key, hs.hosts[i].in_flight);
			snprintf(key, sizeof(key), "host%zu_limit", i);
			ctl_status_u64(w, key, hs.hosts[i].limit);
			snprintf(key, sizeof(key), "host%zu_max_in_flight_seen", i);
			ctl_status_u64(w, key, hs.hosts[i].max_in_flight_seen);
		}
	}
	if (ms->dc) {
		data_cache_get_stats(ms->dc, &ds);
		ctl_status_u64(w, "cache_bytes", ds.bytes_cached);
		ctl_status_u64(w, "cache_max_bytes", ds.max_bytes);
		ctl_status_u64(w, "cache_hits", ds.hits);
		ctl_status_u64(w, "cache_misses", ds.misses);
		ctl_status_u64(w, "cache_bytes_fetched", ds.bytes_fetched);
		ctl_status_u64(w, "cache_readahead_started", ds.readahead_started);
		ctl_status_u64(w, "cache_readahead_cancelled", ds.readahead_cancelled);
		ctl_status_u64(w, "cache_evictions", ds.evictions);
		ctl_status_u64(w, "cache_bypass_reads", ds.bypass_reads);
		ctl_status_u64(w, "cache_readahead_memory_bytes", ds.bytes_in_memory);
		ctl_status_u64(w, "cache_readahead_to_memory", ds.readahead_to_memory);
		ctl_status_u64(w, "cache_kernel_rereads", ds.kernel_rereads);
	}
	if (ms->mc) {
		meta_cache_get_stats(ms->mc, &mcs);
		ctl_status_u64(w, "meta_entries", mcs.entries);
		ctl_status_u64(w, "meta_attr_hits", mcs.attr_hits);
		ctl_status_u64(w, "meta_negative_hits", mcs.neg_hits);
		ctl_status_u64(w, "meta_misses", mcs.misses);
		ctl_status_u64(w, "meta_dir_hits", mcs.dir_hits);
		ctl_status_u64(w, "meta_dir_misses", mcs.dir_misses);
		ctl_status_u64(w, "meta_stale_puts", mcs.stale_puts);
		ctl_status_u64(w, "meta_evictions", mcs.evictions);
	}
}

static int mount_ctl_sync(void *ud, bool drain,
			  void (*progress)(void *pud, const struct sync_progress *p), void *pud,
			  const volatile int *cancel, char *err, size_t errlen)
{
	struct mount_state *ms = ud;

	if (!ms->sync)
		return 0; /* read-only: nothing is ever pending */
	return ctl_wait_sync(ms->sync, drain, progress, pud, cancel, err, errlen);
}

static void mount_ctl_lazy(void *ud)
{
	struct mount_state *ms = ud;

	__atomic_store_n(&ms->lazy_unmount, true, __ATOMIC_RELEASE);
}

static int mount_ctl_start(struct mount_state *ms, char *err, size_t errlen)
{
	struct ctl_handlers h = {ms, mount_ctl_status, mount_ctl_sync, mount_ctl_lazy};
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/ctl.sock", ms->cache_dir);
	ms->ctl = ctl_server_start(path, &h, err, errlen);
	return ms->ctl ? 0 : EIO;
}

/* ---- signals: SIGUSR1 logs the counters, SIGHUP re-reads the credentials ---- */

/* The counters of `objfs status`, in four log lines (never a secret: error texts are HTTP
 * statuses, S3 codes and paths). */
static void mount_log_counters(struct mount_state *ms)
{
	char retries[512] = "";
	size_t used = 0;

	if (ms->eng) {
		struct http_stats hs;

		http_get_stats(ms->eng, &hs);
		for (int c = 0; c < HTTP_RETRY_NCAUSES && used < sizeof(retries); c++)
			if (hs.retries[c])
				used += (size_t)snprintf(retries + used, sizeof(retries) - used, " %s=%llu",
							 http_retry_cause_name(c),
							 (unsigned long long)hs.retries[c]);
		log_notice("counters: http requests=%llu failures=%llu in_flight=%u queued=%u "
			   "waiting_retry=%u open_connections=%u idle_connections=%u bytes_sent=%llu "
			   "bytes_received=%llu retries:%s last_error='%s'",
			   (unsigned long long)hs.requests, (unsigned long long)hs.failures,
			   hs.in_flight, hs.queued, hs.waiting_retry, hs.open_connections,
			   hs.idle_connections, (unsigned long long)hs.bytes_sent,
			   (unsigned long long)hs.bytes_received, retries[0] ? retries : " none",
			   hs.last_error);
	}
	if (ms->sync) {
		struct sync_stats ss;

		sync_get_stats(ms->sync, &ss);
		log_notice("counters: sync queued_files=%llu queued_bytes=%llu oldest_pending_s=%.1f "
			   "in_flight=%llu retrying=%llu uploaded_files=%llu uploaded_bytes=%llu "
			   "failed_attempts=%llu batches=%llu last_error='%s'",
			   (unsigned long long)ss.queued_files, (unsigned long long)ss.queued_bytes,
			   ss.oldest_pending_s, (unsigned long long)ss.in_flight,
			   (unsigned long long)ss.retrying, (unsigned long long)ss.uploaded_files,
			   (unsigned long long)ss.uploaded_bytes,
			   (unsigned long long)ss.failed_attempts, (unsigned long long)ss.batches,
			   ss.last_error);
	} else {
		log_notice("counters: sync none (read-only mount)");
	}
	if (ms->dc) {
		struct data_cache_stats ds;

		data_cache_get_stats(ms->dc, &ds);
		log_notice("counters: data_cache bytes=%llu max_bytes=%llu hits=%llu misses=%llu "
			   "bytes_fetched=%llu readahead_started=%llu readahead_cancelled=%llu "
			   "evictions=%llu bypass_reads=%llu readahead_to_memory=%llu "
			   "kernel_rereads=%llu",
			   (unsigned long long)ds.bytes_cached, (unsigned long long)ds.max_bytes,
			   (unsigned long long)ds.hits, (unsigned long long)ds.misses,
			   (unsigned long long)ds.bytes_fetched,
			   (unsigned long long)ds.readahead_started,
			   (unsigned long long)ds.readahead_cancelled,
			   (unsigned long long)ds.evictions, (unsigned long long)ds.bypass_reads,
			   (unsigned long long)ds.readahead_to_memory,
			   (unsigned long long)ds.kernel_rereads);
	}
	if (ms->mc) {
		struct meta_cache_stats mcs;

		meta_cache_get_stats(ms->mc, &mcs);
		log_notice("counters: meta_cache entries=%zu attr_hits=%llu negative_hits=%llu "
			   "misses=%llu dir_hits=%llu dir_misses=%llu stale_puts=%llu evictions=%llu",
			   mcs.entries, (unsigned long long)mcs.attr_hits,
			   (unsigned long long)mcs.neg_hits, (unsigned long long)mcs.misses,
			   (unsigned long long)mcs.dir_hits, (unsigned long long)mcs.dir_misses,
			   (unsigned long long)mcs.stale_puts, (unsigned long long)mcs.evictions);
	}
}

static bool mount_is_s3_store(const struct store *st)
{
	return st && strcmp(st->ops->kind, "s3") == 0;
}

/* Resolve the credentials of the store of url again, as cli_open_store did at mount; what
 * gets "source bucket 'b' from <where> (access key AK)" for the log line. */
static int mount_resolve_creds(struct mount_state *ms, const char *url, bool dest, struct creds *cr,
			       char *what, size_t whatlen, char *err, size_t errlen)
{
	const struct objfs_opts *o = ms->o;
	char *bucket = NULL, *prefix = NULL;
	int rv;

	rv = cli_parse_s3_url(url, &bucket, &prefix);
	if (rv) {
		mount_errf(err, errlen, "'%s' is not an s3:// URL", url);
		return rv;
	}
	rv = creds_resolve(dest && o->dest_passwd_file ? o->dest_passwd_file : o->passwd_file,
			   dest && o->dest_profile ? o->dest_profile : o->profile, bucket, cr, err,
			   errlen);
	if (!rv)
		snprintf(what, whatlen, "%s bucket '%s' from %s (access key %s)",
			 dest ? "dest" : "source", bucket, cr->source, cr->access_key);
	free(bucket);
	free(prefix);
	return rv;
}

/* SIGHUP: the S3 stores (source, dest) get their credentials anew; when one cannot be
 * resolved, neither changes. */
static void mount_reload_credentials(struct mount_state *ms)
{
	char src_what[600] = "", dst_what[600] = "", err[MOUNT_ERR_LEN];
	struct store *src = mount_is_s3_store(ms->src) ? ms->src : NULL;
	struct store *dst = ms->dst != ms->src && mount_is_s3_store(ms->dst) ? ms->dst : NULL;
	struct creds src_cr = {0}, dst_cr = {0};
	int rv = 0;

	if (src)
		rv = mount_resolve_creds(ms, ms->o->source, false, &src_cr, src_what,
					 sizeof(src_what), err, sizeof(err));
	if (!rv && dst)
		rv = mount_resolve_creds(ms, ms->o->dest, true, &dst_cr, dst_what, sizeof(dst_what),
					 err, sizeof(err));
	if (!rv && src)
		rv = store_s3_set_credentials(src, src_cr.access_key, src_cr.secret_key,
					      src_cr.session_token);
	if (!rv && dst)
		rv = store_s3_set_credentials(dst, dst_cr.access_key, dst_cr.secret_key,
					      dst_cr.session_token);
	if (rv == ENOMEM)
		mount_errf(err, sizeof(err), "out of memory");
	creds_free(&src_cr);
	creds_free(&dst_cr);
	if (rv)
		log_error("SIGHUP: cannot re-read the credentials: %s", err);
	else if (!src && !dst)
		log_notice("SIGHUP: no S3 store, no credentials to re-read");
	else
		log_notice("SIGHUP: credentials re-read: %s%s%s", src_what,
			   src_what[0] && dst_what[0] ? "; " : "", dst_what);
}

static void *mount_signal_thread(void *arg)
{
	struct mount_state *ms = arg;
	struct pollfd pfd[2] = {{ms->sig_fd, POLLIN, 0}, {ms->sig_stop_fd, POLLIN, 0}};

	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("signal thread: poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(ms->sig_fd, &si, sizeof(si));
		if (n != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo == SIGUSR1)
			mount_log_counters(ms);
		else if (si.ssi_signo == SIGHUP)
			mount_reload_credentials(ms);
	}
	return NULL;
}

/* Start the signal thread. SIGHUP and SIGUSR1 must already be blocked in every thread. */
static int mount_signals_start(struct mount_state *ms)
{
	sigset_t set;
	int rv;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	ms->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	ms->sig_stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ms->sig_fd < 0 || ms->sig_stop_fd < 0)
		return errno;
	rv = pthread_create(&ms->sig_thread, NULL, mount_signal_thread, ms);
	if (rv)
		return rv;
	ms->sig_started = true;
	return 0;
}

static void mount_signals_stop(struct mount_state *ms)
{
	uint64_t one = 1;

	if (ms->sig_started) {
		if (write(ms->sig_stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			log_error("cannot stop the signal thread: %s", strerror(errno));
		else
			pthread_join(ms->sig_thread, NULL);
		ms->sig_started = false;
	}
	if (ms->sig_fd >= 0)
		close(ms->sig_fd);
	if (ms->sig_stop_fd >= 0)
		close(ms->sig_stop_fd);
	ms->sig_fd = ms->sig_stop_fd = -1;
}

/* ---- start and stop (after the fork) ---- */

static void mount_fuse_escape(const char *in, char *out, size_t len)
{
	size_t w = 0;

	for (; *in && w + 3 < len; in++) {
		if (*in == ',' || *in == '\\')
			out[w++] = '\\';
		out[w++] = *in;
	}
	out[w] = '\0';
}

/* Why this user cannot use FUSE, when the device is the reason: "" when /dev/fuse opens
 * (then fusermount3 or the kernel said why, on stderr). */
static void mount_fuse_device_problem(char *why, size_t len)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	why[0] = '\0';
	if (fd >= 0) {
		close(fd);
		return;
	}
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		snprintf(why, len,
			 "/dev/fuse is missing: load the module with 'modprobe fuse', or give a "
			 "container the device");
	else if (errno == EACCES || errno == EPERM)
		snprintf(why, len,
			 "this user may not open /dev/fuse: it must be readable and writable by the "
			 "users who mount (mode 0666 on most systems)");
	else
		snprintf(why, len, "cannot open /dev/fuse: %s", strerror(errno));
}

static int mount_fuse_new(struct mount_state *ms, char *err, size_t errlen)
{
	struct objfs_opts *o = ms->o;
	char fsname[1024], opts[1400];
	char *argv[4];
	int argc = 0;
	struct fuse_args args;

	mount_fuse_escape(o->source, fsname, sizeof(fsname));
	snprintf(opts, sizeof(opts), "fsname=%s,subtype=objfs%s%s%s", fsname,
		 o->allow_other ? ",allow_other" : "",
		 (o->allow_other || o->default_permissions) ? ",default_permissions" : "",
		 o->ro ? ",ro" : "");
	argv[argc++] = "objfs";
	argv[argc++] = "-o";
	argv[argc++] = opts;
	if (o->debug_fuse)
		argv[argc++] = "-d";
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	ms->fuse = fuse_new(&args, fuse_ops_table(), sizeof(struct fuse_operations), &ms->fs);
	fuse_opt_free_args(&args);
	if (!ms->fuse) {
		mount_errf(err, errlen, "cannot set up FUSE (is /dev/fuse there? see the log)");
		return EIO;
	}
	if (fuse_mount(ms->fuse, ms->mountpoint)) {
		char why[256];

		mount_fuse_device_problem(why, sizeof(why));
		if (why[0])
			mount_errf(err, errlen, "cannot mount on '%s': %s", ms->mountpoint, why);
		else
			mount_errf(err, errlen, "cannot mount on '%s' (see the messages above)",
				   ms->mountpoint);
		fuse_destroy(ms->fuse);
		ms->fuse = NULL;
		return EIO;
	}
	ms->mounted = true;
	return 0;
}

static int mount_start(struct mount_state *ms, char *err, size_t errlen)
{
	struct objfs_opts *o = ms->o;
	struct meta_cache_config mcc = {o->attr_ttl_ms, o->dir_ttl_ms, o->neg_ttl_ms,
					 MOUNT_META_ENTRIES, NULL};
	struct data_cache_config dcc = {0};
	char path[PATH_MAX + 16];
	int rv;

	rv = mount_open_stores(ms, false, err, errlen);
	if (rv)
		return rv;
	if (o->ro) {
		rv = mount_lock_cache_dir(ms, err, errlen);
		if (rv)
			return rv;
		mount_lock_write_pid(ms);
	} else {
		struct sync_config sc;

		sync_config_defaults(&sc);
		sc.cache_dir = ms->cache_dir;
		sc.settle_ms = o->settle_ms;
		sc.batch_files = o->batch_files;
		sc.batch_bytes = o->batch_bytes;
		sc.batch_ms = o->batch_ms;
		sc.multipart_threshold = o->multipart_threshold;
		sc.part_size = o->part_size;
		sc.upload_workers = o->upload_workers;
		ms->sync = sync_create(&sc, ms->dst, err, errlen);
		if (!ms->sync)
			return EBUSY;
		snprintf(path, sizeof(path), "%s/staging", ms->cache_dir);
		ms->stg = staging_create(path, err, errlen);
		if (!ms->stg)
			return EIO;
	}
	ms->mc = meta_cache_create(&mcc);
	if (!ms->mc) {
		mount_errf(err, errlen, "out of memory");
		return ENOMEM;
	}
	dcc.dir = ms->cache_dir;
	dcc.max_bytes = o->cache_size;
	dcc.block_size = o->block_size;
	dcc.read_ahead = o->read_ahead;
	dcc.read_ahead_chunk = o->read_ahead_chunk;
	dcc.read_ahead_mem = o->read_ahead_mem;
	ms->dc = data_cache_create(&dcc, err, errlen);
	if (!ms->dc)
		return EIO;
	if (ms->sync && (rv = sync_start(ms->sync))) {
		mount_errf(err, errlen, "cannot start the sync thread: %s", strerror(rv));
		return rv;
	}

	ms->fs.o = o;
	ms->fs.src = ms->src;
	ms->fs.dst = ms->dst;
	ms->fs.overlay = ms->src != ms->dst;
	ms->fs.ro = o->ro;
	ms->fs.mc = ms->mc;
	ms->fs.dc = ms->dc;
	ms->fs.sync = ms->sync;
	ms->fs.stg = ms->stg;
	ms->fs.uid = o->has_uid ? o->uid : getuid();
	ms->fs.gid = o->has_gid ? o->gid : getgid();
	ms->fs.root.mode = S_IFDIR | (ms->mp_stat.st_mode & 07777);
	ms->fs.root.uid = o->has_uid ? o->uid : ms->mp_stat.st_uid;
	ms->fs.root.gid = o->has_gid ? o->gid : ms->mp_stat.st_gid;
	clock_gettime(CLOCK_REALTIME, &ms->fs.root.mtime);
	ms->fs.root.ctime = ms->fs.root.atime = ms->fs.root.mtime;
	ms->fs.root.flags = META_MARKER;
	ms->fs.mount_time = ms->fs.root.mtime;
	pthread_mutex_init(&ms->fs.root_lock, NULL);
	pthread_mutex_init(&ms->fs.hidden_lock, NULL);

	rv = mount_ctl_start(ms, err, errlen);
	if (rv)
		return rv;
	rv = mount_fuse_new(ms, err, errlen);
	if (rv)
		return rv;
	/* objfs status / sync / umount find the socket through the mount point */
	if (ctl_server_register(ms->ctl, ms->mountpoint, err, errlen))
		log_warn("%s; objfs status will not find this mount", err);
	err[0] = '\0';
	return 0;
}

static void mount_stop(struct mount_state *ms)
{
	if (ms->fuse) {
		if (ms->mounted)
			fuse_unmount(ms->fuse);
		ms->mounted = false;
	}
	ctl_server_stop(ms->ctl);
	ms->ctl = NULL;
	fuse_ops_release_all(&ms->fs);
	if (ms->sync) {
		struct sync_stats st;

		bool lazy = __atomic_load_n(&ms->lazy_unmount, __ATOMIC_ACQUIRE);

		sync_get_stats(ms->sync, &st);
		if (st.queued_files)
			log_info("%s %llu pending file(s)", lazy ? "leaving in the journal" : "uploading before exit",
				 (unsigned long long)st.queued_files);
		sync_destroy(ms->sync, !lazy);
		ms->sync = NULL;
	}
	data_cache_destroy(ms->dc);
	ms->dc = NULL;
	staging_destroy(ms->stg);
	ms->stg = NULL;
	meta_cache_destroy(ms->mc);
	ms->mc = NULL;
	mount_close_stores(ms);
	if (ms->fuse)
		fuse_destroy(ms->fuse);
	ms->fuse = NULL;
	if (ms->lock_fd >= 0)
		close(ms->lock_fd);
	ms->lock_fd = -1;
}

static int mount_loop(struct mount_state *ms)
{
	struct fuse_session *se = fuse_get_session(ms->fuse);
	struct fuse_loop_config *lc;
	sigset_t keep;
	int rv;

	if (fuse_set_signal_handlers(se)) {
		log_error("cannot install signal handlers");
		return 1;
	}
	/* TERM, INT (and libfuse's handlers) here; HUP and USR1 stay for the signal thread */
	sigemptyset(&keep);
	sigaddset(&keep, SIGHUP);
	sigaddset(&keep, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &keep, NULL);
	lc = fuse_loop_cfg_create();
	if (!lc) {
		fuse_remove_signal_handlers(se);
		return 1;
	}
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 64);
	fuse_loop_cfg_set_idle_threads(lc, 16);
	rv = fuse_loop_mt(ms->fuse, lc);
	fuse_loop_cfg_destroy(lc);
	fuse_remove_signal_handlers(se);
	/* The loop ends on an unmount (0), on a signal (libfuse returns the signal's number,
	 * positive), or on an error (negative errno): only the last is worth an error line. */
	if (rv > 0)
		log_info("stopping on signal %d (%s)", rv, strsignal(rv));
	else if (rv && rv != -EINTR && rv != -ENODEV && !fuse_session_exited(se))
		log_error("FUSE loop ended with an error: %s", strerror(-rv));
	return 0;
}

/* ---- kernel read-ahead ---- */

#define MOUNT_KERNEL_RA_KB 1024 /* = the largest FUSE read (256 pages) */

/* Sleep ms milliseconds, or less when mount_kernel_ra_stop is called: true then. */
static bool mount_kra_sleep(struct mount_state *ms, long ms_)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms_ / 1000;
	ts.tv_nsec += (ms_ % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ms->kra_lock);
	while (!ms->kra_stop && pthread_cond_timedwait(&ms->kra_cond, &ms->kra_lock, &ts) == 0)
		;
	stop = ms->kra_stop;
	pthread_mutex_unlock(&ms->kra_lock);
	return stop;
}

/* read_ahead_kb of path into *kb */
static bool mount_read_kb(const char *path, unsigned *kb)
{
	FILE *f = fopen(path, "r");
	bool ok = f && fscanf(f, "%u", kb) == 1;

	if (f)
		fclose(f);
	return ok;
}

/* The kernel gives a FUSE mount 128 KiB of read-ahead and lowers any larger value when the
 * answer to INIT arrives, so sequential reads reach us as 128 KiB requests. Once INIT has
 * been answered, raise the read_ahead_kb of the mount's backing device so that they come as
 * 1 MiB requests, a quarter as many (root only; others keep the default). Random reads are
 * unaffected: the kernel reads ahead only in streams. This thread never touches the mount
 * itself (a stat of it from inside the daemon would wait on the daemon): it finds the
 * device in /proc/self/mountinfo, waits for fo_init, and checks that the value held.
 * Then it follows the value, which a user may raise at any time (echo N > read_ahead_kb),
 * and tells the data cache: the larger it is, the further out of order the kernel's
 * requests of one sequential reader arrive. */
static void *mount_kernel_ra_thread(void *arg)
{
	struct mount_state *ms = arg;
	char path[96];
	dev_t dev = 0;
	unsigned told = 0;

	for (int i = 0; !__atomic_load_n(&ms->fs.initialized, __ATOMIC_ACQUIRE); i++)
		if (i >= 1500 || mount_kra_sleep(ms, 20))
			return NULL; /* no INIT within 30 s: nothing to tune */
	if (!mount_find(ms->mountpoint, &dev))
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(dev), minor(dev));
	/* INIT's answer is applied when its write returns, just after fo_init: look again a
	 * little later, in case the value was lowered after we raised it */
	for (int tries = 0; tries < 5; tries++) {
		FILE *f = fopen(path, "r+");
		unsigned kb = 0;
		bool ok;

		if (!f) {
			log_debug("kernel read-ahead stays as it is: %s: %s", path, strerror(errno));
			break;
		}
		ok = fscanf(f, "%u", &kb) == 1;
		if (ok && kb < MOUNT_KERNEL_RA_KB) {
			rewind(f);
			fprintf(f, "%u\n", MOUNT_KERNEL_RA_KB);
		}
		if (fclose(f) != 0 || !ok) {
			log_debug("cannot raise the kernel read-ahead (%s): %s", path, strerror(errno));
			break;
		}
		if (kb >= MOUNT_KERNEL_RA_KB || mount_kra_sleep(ms, 200))
			break;
	}
	do {
		unsigned kb;

		if (mount_read_kb(path, &kb) && kb != told && ms->dc) {
			log_debug("kernel read-ahead of the mount: %u KiB", kb);
			data_cache_set_kernel_read_ahead(ms->dc, (uint64_t)kb << 10);
			told = kb;
		}
	} while (!mount_kra_sleep(ms, 1000));
	return NULL;
}

static void mount_kernel_ra_start(struct mount_state *ms)
{
	pthread_condattr_t ca;

	ms->kra_stop = false;
	pthread_mutex_init(&ms->kra_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ms->kra_cond, &ca);
	pthread_condattr_destroy(&ca);
	ms->kra_started = pthread_create(&ms->kra_thread, NULL, mount_kernel_ra_thread, ms) == 0;
	if (!ms->kra_started) {
		pthread_cond_destroy(&ms->kra_cond);
		pthread_mutex_destroy(&ms->kra_lock);
	}
}

static void mount_kernel_ra_stop(struct mount_state *ms)
{
	if (!ms->kra_started)
		return;
	pthread_mutex_lock(&ms->kra_lock);
	ms->kra_stop = true;
	pthread_cond_signal(&ms->kra_cond);
	pthread_mutex_unlock(&ms->kra_lock);
	pthread_join(ms->kra_thread, NULL);
	pthread_cond_destroy(&ms->kra_cond);
	pthread_mutex_destroy(&ms->kra_lock);
	ms->kra_started = false;
}

/* ---- daemonizing ---- */

static void mount_report(int fd, const char *msg)
{
	size_t len = strlen(msg);

	if (fd < 0)
		return;
	if (write(fd, msg, len) != (ssize_t)len)
		log_debug("cannot report to the parent");
	close(fd);
}

/* Parent: wait for the child's report. "OK" -> 0; else print it -> 1. */
static int mount_wait_child(pid_t pid, int fd)
{
	char msg[MOUNT_ERR_LEN + 8];
	size_t got = 0;
	ssize_t n;
	int status;

	while (got < sizeof(msg) - 1 && (n = read(fd, msg + got, sizeof(msg) - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += (size_t)n;
	}
	msg[got] = '\0';
	close(fd);
	if (!strcmp(msg, "OK"))
		return 0;
	if (got) {
		log_error("%s", msg);
	} else {
		waitpid(pid, &status, 0);
		log_error("the mount daemon died before mounting (%s %d); see the system log",
			  WIFSIGNALED(status) ? "signal" : "exit status",
			  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		return 1;
	}
	waitpid(pid, &status, 0);
	return 1;
}

static void mount_detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

int mount_main(struct objfs_opts *o)
{
	struct mount_state *ms;
	char err[MOUNT_ERR_LEN] = "";
	int report_fd = -1, rv, code = 1;
	sigset_t block, old;

	ms = calloc(1, sizeof(*ms));
	if (!ms) {
		log_error("out of memory");
		return 1;
	}
	ms->o = o;
	ms->lock_fd = -1;
	ms->sig_fd = ms->sig_stop_fd = -1;
	log_init("objfs", o->log_level, false);
	if (!o->source || !o->mountpoint) {
		log_error("usage: objfs mount SOURCE MOUNTPOINT [-o OPTIONS]");
		goto out;
	}
	if (o->dest && mount_is_file_url(o->dest)) {
		log_error("dest '%s' must be an s3:// URL", o->dest);
		goto out;
	}
	if (mount_check_mountpoint(ms, err, sizeof(err)) || mount_cache_dir(ms, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	/* one clear line now, on the terminal, rather than a daemon that answers EIO */
	rv = mount_open_stores(ms, true, err, sizeof(err));
	mount_close_stores(ms);
	if (rv) {
		log_error("%s", err);
		goto out;
	}
	if (!o->foreground) {
		int pfd[2];
		pid_t pid;

		fflush(NULL);
		if (pipe2(pfd, O_CLOEXEC)) {
			log_error("pipe: %s", strerror(errno));
			goto out;
		}
		pid = fork();
		if (pid < 0) {
			log_error("fork: %s", strerror(errno));
			close(pfd[0]);
			close(pfd[1]);
			goto out;
		}
		if (pid > 0) {
			close(pfd[1]);
			code = mount_wait_child(pid, pfd[0]);
			goto out;
		}
		close(pfd[0]);
		report_fd = pfd[1];
		setsid();
		if (chdir("/"))
			log_debug("chdir /: %s", strerror(errno));
	}
	/* threads created from here on inherit these blocked signals */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGPIPE);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	signal(SIGPIPE, SIG_IGN);
	rv = mount_start(ms, err, sizeof(err));
	if (!rv && (rv = mount_signals_start(ms)))
		mount_errf(err, sizeof(err), "cannot start the signal thread: %s", strerror(rv));
	if (rv) {
		mount_signals_stop(ms);
		mount_stop(ms);
		if (report_fd < 0) {
			log_error("%s", err);
			goto out;
		}
		mount_report(report_fd, err);
		_exit(1);
	}
	log_info("mounted %s on %s (cache %s)", o->source, ms->mountpoint, ms->cache_dir);
	if (report_fd >= 0) {
		mount_report(report_fd, "OK");
		mount_detach_stdio();
		log_init("objfs", o->log_level, true);
	}
	mount_kernel_ra_start(ms);
	code = mount_loop(ms);
	mount_kernel_ra_stop(ms);
	log_info("unmounting %s", ms->mountpoint);
	mount_signals_stop(ms);
	mount_stop(ms);
	if (report_fd >= 0)
		_exit(code);
out:
	free(ms);
	return code;
}
