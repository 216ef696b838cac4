/*
 * ctl.c - the control socket (see ctl.h): the server in the mount daemon, the registry that
 * maps a mount point to its socket, and the client side with the progress display.
 *
 * Locking: srv->lock guards the connection list and srv->stopping. A connection's cancel
 * flag is written by ctl_server_stop or its own thread and read by the sync handler. The
 * client side keeps no shared state.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "log.h"

#define CTL_LINE_MAX 1024
#define CTL_REQUEST_TIMEOUT_MS 5000   /* a client must send its line within this */
#define CTL_STATUS_TIMEOUT_MS 10000   /* the answer to status/ping */
#define CTL_PROGRESS_TIMEOUT_MS 30000 /* the longest silence during sync/drain */
#define CTL_PLAIN_EVERY_MS 5000       /* progress lines when not on a terminal */

static int64_t ctl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- status writer ---- */

struct ctl_status {
	FILE *out;
	bool json;
	bool first;
};

static void status_key(struct ctl_status *w, const char *key)
{
	if (w->json)
		fprintf(w->out, "%s\"%s\":", w->first ? "{" : ",", key);
	else
		fprintf(w->out, "%s=", key);
	w->first = false;
}

void ctl_status_u64(struct ctl_status *w, const char *key, uint64_t v)
{
	status_key(w, key);
	fprintf(w->out, w->json ? "%llu" : "%llu\n", (unsigned long long)v);
}

void ctl_status_double(struct ctl_status *w, const char *key, double v)
{
	status_key(w, key);
	fprintf(w->out, w->json ? "%.3f" : "%.3f\n", v);
}

void ctl_status_str(struct ctl_status *w, const char *key, const char *v)
{
	status_key(w, key);
	if (!v)
		v = "";
	if (!w->json) {
		for (const char *p = v; *p; p++)
			fputc(*p == '\n' || *p == '\r' ? ' ' : *p, w->out);
		fputc('\n', w->out);
		return;
	}
	fputc('"', w->out);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(w->out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(w->out, "\\u%04x", *p);
		else
			fputc(*p, w->out);
	}
	fputc('"', w->out);
}

void ctl_status_sync_stats(struct ctl_status *w, const struct sync_stats *st)
{
	ctl_status_u64(w, "queued_files", st->queued_files);
	ctl_status_u64(w, "queued_bytes", st->queued_bytes);
	ctl_status_double(w, "oldest_pending_s", st->oldest_pending_s);
	ctl_status_u64(w, "in_flight", st->in_flight);
	ctl_status_u64(w, "retrying", st->retrying);
	ctl_status_u64(w, "uploaded_files", st->uploaded_files);
	ctl_status_u64(w, "uploaded_bytes", st->uploaded_bytes);
	ctl_status_u64(w, "ops_done", st->ops_done);
	ctl_status_u64(w, "failed_attempts", st->failed_attempts);
	ctl_status_u64(w, "dropped", st->dropped);
	ctl_status_u64(w, "batches", st->batches);
	ctl_status_u64(w, "journal_bytes", st->journal_bytes);
	ctl_status_str(w, "last_error", st->last_error);
	ctl_status_double(w, "last_error_age_s", st->last_error_age_s);
}

int ctl_wait_sync(struct sync *s, bool drain, void (*progress)(void *pud, const struct sync_progress *p),
		  void *pud, const volatile int *cancel, char *err, size_t errlen)
{
	for (;;) {
		struct sync_stats st;
		int rv = sync_wait_all_cancellable(s, progress, pud, cancel);
		if (rv == ECANCELED) {
			snprintf(err, errlen, "cancelled");
			return rv;
		}
		if (rv == EAGAIN) {
			snprintf(err, errlen, "the sync thread is not running");
			return rv;
		}
		if (rv) {
			snprintf(err, errlen, "%s", strerror(rv));
			return rv;
		}
		if (!drain)
			return 0;
		sync_get_stats(s, &st);
		if (st.queued_files == 0)
			return 0;
	}
}

/* ---- socket addresses (paths longer than sun_path go through /proc/self/fd) ---- */

static int ctl_sockaddr(const char *path, struct sockaddr_un *sa, int *dirfd)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	*dirfd = -1;
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path) + 1);
		return 0;
	}
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];
	if (!slash || (size_t)(slash - path) >= sizeof(dir))
		return ENAMETOOLONG;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	*dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return errno;
	if (snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd, slash + 1) >=
	    (int)sizeof(sa->sun_path)) {
		close(*dirfd);
		*dirfd = -1;
		return ENAMETOOLONG;
	}
	return 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EPIPE;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A line reader over a socket with a timeout per line. */
struct line_reader {
	int fd;
	char buf[CTL_LINE_MAX + 1];
	size_t len;
};

/* One line without its newline into line (CTL_LINE_MAX + 1). 1: a line; 0: end of stream;
 * -1: error or timeout (errno). A longer line is cut. */
static int read_line(struct line_reader *r, char *line, int timeout_ms)
{
	int64_t deadline = ctl_now_ms() + timeout_ms;
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		if (nl || r->len == CTL_LINE_MAX) {
			size_t n = nl ? (size_t)(nl - r->buf) : r->len;
			memcpy(line, r->buf, n);
			line[n] = '\0';
			if (n && line[n - 1] == '\r')
				line[n - 1] = '\0';
			size_t used = nl ? n + 1 : n;
			memmove(r->buf, r->buf + used, r->len - used);
			r->len -= used;
			return 1;
		}
		int left = (int)(deadline - ctl_now_ms());
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		int pr = poll(&p, 1, left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -1;
		if (pr == 0)
			continue;
		ssize_t n = recv(r->fd, r->buf + r->len, CTL_LINE_MAX - r->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (r->len == 0)
				return 0;
			memcpy(line, r->buf, r->len); /* a last line without newline */
			line[r->len] = '\0';
			r->len = 0;
			return 1;
		}
		r->len += (size_t)n;
	}
}

/* ---- server ---- */

struct ctl_conn {
	struct ctl_server *srv;
	int fd;
	pthread_t thread;
	volatile int cancel;
	int done; /* atomic: the thread has finished */
	struct ctl_conn *next;
};

struct ctl_server {
	struct ctl_handlers h;
	char *sock_path;
	char *reg_path;   /* registry symlink or NULL */
	char *reg_target; /* what it points to */
	int listen_fd;
	int wake[2];
	pthread_t accept_thread;
	pthread_mutex_t lock;
	struct ctl_conn *conns; /* lock */
	unsigned n_conns;       /* lock */
	bool stopping;          /* lock */
};

static void conn_progress(void *pud, const struct sync_progress *p)
{
	struct ctl_conn *c = pud;
	char line[CTL_LINE_MAX];
	int n = snprintf(line, sizeof(line),
			 "progress files_done=%llu files_total=%llu bytes_done=%llu bytes_total=%llu "
			 "elapsed=%.1f retrying=%llu\n",
			 (unsigned long long)p->files_done, (unsigned long long)p->files_total,
			 (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
			 p->elapsed_s, (unsigned long long)p->retrying);
	if (send_all(c->fd, line, (size_t)n))
		__atomic_store_n(&c->cancel, 1, __ATOMIC_RELEASE); /* the client went away */
	if (!__atomic_load_n(&c->cancel, __ATOMIC_ACQUIRE) && p->retrying && p->last_error[0]) {
		n = snprintf(line, sizeof(line), "note %s\n", p->last_error);
		if (send_all(c->fd, line, (size_t)n))
			__atomic_store_n(&c->cancel, 1, __ATOMIC_RELEASE);
	}
}

static void conn_status(struct ctl_conn *c, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f) {
		send_all(c->fd, "error out of memory\n", 20);
		return;
	}
	struct ctl_status w = {.out = f, .json = json, .first = true};
	ctl_status_u64(&w, "pid", (uint64_t)getpid());
	ctl_status_str(&w, "version", PACKAGE_VERSION);
	if (c->srv->h.status)
		c->srv->h.status(c->srv->h.ud, &w);
	if (json)
		fputs("}\n", f);
	fclose(f);
	send_all(c->fd, text, len);
	free(text);
}

static void conn_sync(struct ctl_conn *c, bool drain)
{
	char err[512] = "", line[CTL_LINE_MAX];
	if (!c->srv->h.sync) {
		send_all(c->fd, "error not supported by this mount\n", 34);
		return;
	}
	int rv = c->srv->h.sync(c->srv->h.ud, drain, conn_progress, c, &c->cancel, err, sizeof(err));
	int n = rv ? snprintf(line, sizeof(line), "error %s\n", err[0] ? err : strerror(rv))
		   : snprintf(line, sizeof(line), "done\n");
	if (n >= (int)sizeof(line))
		n = (int)sizeof(line) - 1;
	send_all(c->fd, line, (size_t)n);
}

static void *conn_main(void *arg)
{
	struct ctl_conn *c = arg;
	struct line_reader r = {.fd = c->fd};
	char line[CTL_LINE_MAX + 1], msg[CTL_LINE_MAX + 128];

	if (read_line(&r, line, CTL_REQUEST_TIMEOUT_MS) == 1) {
		if (strcmp(line, "ping") == 0) {
			send_all(c->fd, "pong\n", 5);
		} else if (strcmp(line, "status") == 0 || strcmp(line, "status json") == 0) {
			conn_status(c, line[6] != '\0');
		} else if (strcmp(line, "sync") == 0 || strcmp(line, "drain") == 0) {
			conn_sync(c, line[0] == 'd');
		} else if (strcmp(line, "lazy") == 0 && c->srv->h.lazy) {
			c->srv->h.lazy(c->srv->h.ud);
			send_all(c->fd, "done\n", 5);
		} else {
			int n = snprintf(msg, sizeof(msg),
					 "error unknown command '%.200s': try ping, status, status json, "
					 "sync, drain, lazy\n",
					 line);
			send_all(c->fd, msg, (size_t)n);
		}
	}
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	char b = 'r';
	if (write(c->srv->wake[1], &b, 1) < 0) {
		/* the accept loop reaps on its next timeout */
	}
	return NULL;
}

/* Join finished connections (all of them when all). */
static void reap_conns(struct ctl_server *srv, bool all)
{
	struct ctl_conn *done = NULL;
	pthread_mutex_lock(&srv->lock);
	for (struct ctl_conn **pp = &srv->conns; *pp;) {
		struct ctl_conn *c = *pp;
		if (all || __atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
			*pp = c->next;
			c->next = done;
			done = c;
			srv->n_conns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	while (done) {
		struct ctl_conn *c = done;
		done = c->next;
		pthread_join(c->thread, NULL);
		close(c->fd);
		free(c);
	}
}

static void *accept_main(void *arg)
{
	struct ctl_server *srv = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = srv->listen_fd, .events = POLLIN},
				      {.fd = srv->wake[0], .events = POLLIN}};
		int pr = poll(p, 2, 1000);
		if (pr < 0 && errno != EINTR) {
			log_error("control socket '%s': poll: %s", srv->sock_path, strerror(errno));
			break;
		}
		if (pr > 0 && (p[1].revents & POLLIN)) {
			char b[64];
			if (read(srv->wake[0], b, sizeof(b)) < 0) {
				/* nothing: it only wakes us */
			}
		}
		reap_conns(srv, false);
		pthread_mutex_lock(&srv->lock);
		bool stop = srv->stopping;
		pthread_mutex_unlock(&srv->lock);
		if (stop)
			break;
		if (pr <= 0 || !(p[0].revents & POLLIN))
			continue;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		struct ctl_conn *c = calloc(1, sizeof(*c));
		pthread_mutex_lock(&srv->lock);
		bool full = srv->n_conns >= CTL_MAX_CLIENTS;
		if (c && !full) {
			c->srv = srv;
			c->fd = fd;
			if (pthread_create(&c->thread, NULL, conn_main, c) == 0) {
				c->next = srv->conns;
				srv->conns = c;
				srv->n_conns++;
				c = NULL;
				fd = -1;
			}
		}
		pthread_mutex_unlock(&srv->lock);
		if (fd >= 0) {
			static const char busy[] = "error busy: too many control connections, try again\n";
			send_all(fd, busy, sizeof(busy) - 1);
			close(fd);
		}
		free(c);
	}
	return NULL;
}

struct ctl_server *ctl_server_start(const char *sock_path, const struct ctl_handlers *h, char *err,
				    size_t errlen)
{
	struct ctl_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_un sa;
	struct stat st;
	sigset_t all, old;
	int dirfd = -1, e;

	if (!srv || !(srv->sock_path = strdup(sock_path))) {
		snprintf(err, errlen, "out of memory");
		free(srv);
		return NULL;
	}
	srv->h = *h;
	srv->listen_fd = srv->wake[0] = srv->wake[1] = -1;
	pthread_mutex_init(&srv->lock, NULL);
	if (lstat(sock_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "'%s' exists and is not a socket: move it away", sock_path);
			goto fail;
		}
		unlink(sock_path); /* stale: the cache directory lock says it is ours */
	}
	e = ctl_sockaddr(sock_path, &sa, &dirfd);
	if (e) {
		snprintf(err, errlen, "control socket path '%s': %s", sock_path, strerror(e));
		goto fail;
	}
	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv->listen_fd < 0 || bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(sock_path, 0600) < 0 || listen(srv->listen_fd, 16) < 0) {
		snprintf(err, errlen, "cannot create control socket '%s': %s", sock_path, strerror(errno));
		goto fail;
	}
	if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		goto fail;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		snprintf(err, errlen, "cannot start the control thread: %s", strerror(e));
		goto fail;
	}
	if (dirfd >= 0)
		close(dirfd);
	return srv;
fail:
	if (dirfd >= 0)
		close(dirfd);
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		unlink(sock_path);
	}
	if (srv->wake[0] >= 0) {
		close(srv->wake[0]);
		close(srv->wake[1]);
	}
	pthread_mutex_destroy(&srv->lock);
	free(srv->sock_path);
	free(srv);
	return NULL;
}

/* ---- registry ---- */

/* Absolute and normalised (".", "..", "//", trailing "/") without resolving the last
 * component, whose stat would go to the (maybe hung) FUSE mount. */
static int canonical_mountpoint(const char *mp, char *out, size_t len)
{
	char abs[PATH_MAX], norm[PATH_MAX], parent[PATH_MAX];
	size_t n = 0;

	if (!mp || !mp[0])
		return EINVAL;
	if (mp[0] == '/') {
		if (snprintf(abs, sizeof(abs), "%s", mp) >= (int)sizeof(abs))
			return ENAMETOOLONG;
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return errno;
		if (snprintf(abs, sizeof(abs), "%s/%s", cwd, mp) >= (int)sizeof(abs))
			return ENAMETOOLONG;
	}
	norm[0] = '\0';
	for (char *save = NULL, *c = strtok_r(abs, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			char *slash = strrchr(norm, '/');
			n = slash ? (size_t)(slash - norm) : 0;
			norm[n] = '\0';
			continue;
		}
		size_t cl = strlen(c);
		if (n + 1 + cl + 1 > sizeof(norm))
			return ENAMETOOLONG;
		norm[n++] = '/';
		memcpy(norm + n, c, cl + 1);
		n += cl;
	}
	if (n == 0) {
		snprintf(out, len, "/");
		return 0;
	}
	/* resolve symlinks in the parent only */
	char *slash = strrchr(norm, '/');
	memcpy(parent, norm, (size_t)(slash - norm));
	parent[slash - norm] = '\0';
	char real[PATH_MAX];
	const char *base = parent[0] ? (realpath(parent, real) ? real : parent) : "";
	if (snprintf(out, len, "%s/%s", strcmp(base, "/") == 0 ? "" : base, slash + 1) >= (int)len)
		return ENAMETOOLONG;
	return 0;
}

static void registry_dir(unsigned uid, char *out, size_t len)
{
	const char *env = getenv("OBJFS_RUNTIME_DIR");
	char run_user[64];
	struct stat st;

	if (env && env[0]) {
		snprintf(out, len, "%s", env);
		return;
	}
	if (uid == 0) {
		snprintf(out, len, "/run/objfs");
		return;
	}
	snprintf(run_user, sizeof(run_user), "/run/user/%u", uid);
	if (stat(run_user, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid)
		snprintf(out, len, "%s/objfs", run_user);
	else
		snprintf(out, len, "/tmp/objfs-%u", uid);
}

static void escape_name(const char *path, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < len; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '_' || *p == '-') {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
}

int ctl_registry_path(unsigned uid, const char *mountpoint, char *path, size_t len)
{
	char canon[PATH_MAX], dir[PATH_MAX], name[PATH_MAX * 3 + 1];
	int e = canonical_mountpoint(mountpoint, canon, sizeof(canon));
	if (e)
		return e;
	registry_dir(uid, dir, sizeof(dir));
	escape_name(canon, name, sizeof(name));
	if (strlen(name) > 200) {
		char h[2 * CRYPTO_SHA256_LEN + 1];
		crypto_sha256_hex(canon, strlen(canon), h);
		snprintf(name, sizeof(name), "sha256-%s", h);
	}
	if (snprintf(path, len, "%s/%s.sock", dir, name) >= (int)len)
		return ENAMETOOLONG;
	return 0;
}

/* Create the registry directory; refuse one that another user could have planted. */
static int registry_mkdir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	bool shared_tmp = strncmp(dir, "/tmp/", 5) == 0;
	mode_t mode = strcmp(dir, "/run/objfs") == 0 ? 0755 : 0700;

	if (mkdir(dir, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create '%s': %s", dir, strerror(errno));
		return errno;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(err, errlen, "cannot stat '%s': %s", dir, strerror(errno));
		return errno;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (shared_tmp && (st.st_mode & 077))) {
		snprintf(err, errlen,
			 "'%s' is not a private directory of this user: remove it or set OBJFS_RUNTIME_DIR",
			 dir);
		return EPERM;
	}
	return 0;
}

/* Remove the entries of mounts that died without unregistering (kill -9, a crash): links
 * "*.sock" whose socket is gone. Nothing else in dir is touched. */
static void registry_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat st;

		if (n < 6 || strcmp(e->d_name + n - 5, ".sock") != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
		    fstatat(dirfd(d), e->d_name, &st, 0) < 0 && errno == ENOENT)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

int ctl_server_register(struct ctl_server *srv, const char *mountpoint, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], target[PATH_MAX];
	int e = ctl_registry_path((unsigned)geteuid(), mountpoint, path, sizeof(path));

	if (e) {
		snprintf(err, errlen, "cannot register control socket for '%s': %s", mountpoint,
			 strerror(e));
		return e;
	}
	char *slash = strrchr(path, '/');
	*slash = '\0';
	e = registry_mkdir(path, err, errlen);
	if (!e)
		registry_sweep(path);
	*slash = '/';
	if (e)
		return e;
	if (srv->sock_path[0] == '/')
		snprintf(target, sizeof(target), "%s", srv->sock_path);
	else if (!realpath(srv->sock_path, target))
		snprintf(target, sizeof(target), "%s", srv->sock_path);
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		snprintf(err, errlen, "cannot create '%s': %s", path, strerror(e));
		return e;
	}
	free(srv->reg_path);
	free(srv->reg_target);
	srv->reg_path = strdup(path);
	srv->reg_target = strdup(target);
	return 0;
}

void ctl_server_stop(struct ctl_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	for (struct ctl_conn *c = srv->conns; c; c = c->next) {
		__atomic_store_n(&c->cancel, 1, __ATOMIC_RELEASE);
		shutdown(c->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&srv->lock);
	char b = 's';
	if (write(srv->wake[1], &b, 1) < 0) {
		/* the accept loop notices stopping within a second */
	}
	pthread_join(srv->accept_thread, NULL);
	reap_conns(srv, true);
	close(srv->listen_fd);
	close(srv->wake[0]);
	close(srv->wake[1]);
	unlink(srv->sock_path);
	if (srv->reg_path) {
		/* only our own entry: a newer mount may have replaced it */
		char target[PATH_MAX];
		ssize_t n = readlink(srv->reg_path, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			if (srv->reg_target && strcmp(target, srv->reg_target) == 0)
				unlink(srv->reg_path);
		}
		free(srv->reg_path);
		free(srv->reg_target);
	}
	pthread_mutex_destroy(&srv->lock);
	free(srv->sock_path);
	free(srv);
}

/* ---- client ---- */

/* Mount point field of mountinfo: octal escapes \040 \011 \012 \134. */
static void unescape_mountinfo(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* The last mount at canon: 1 with fstype and the user_id= option (when present), else 0. */
static int find_mount(const char *canon, char *fstype, size_t fslen, long *uid)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *fields[6] = {0};
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		char *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 6; i++, tok = strtok_r(NULL, " ", &save))
			fields[i] = tok;
		if (!fields[4])
			continue;
		unescape_mountinfo(fields[4]);
		if (strcmp(fields[4], canon) != 0)
			continue;
		char *rest = sep + 3, *save2 = NULL;
		char *type = strtok_r(rest, " ", &save2);
		strtok_r(NULL, " ", &save2); /* source */
		char *opts = strtok_r(NULL, " \n", &save2);
		found = 1;
		snprintf(fstype, fslen, "%s", type ? type : "");
		*uid = -1;
		for (char *o = opts, *s3 = NULL, *t; (t = strtok_r(o, ",", &s3)); o = NULL)
			if (strncmp(t, "user_id=", 8) == 0)
				*uid = strtol(t + 8, NULL, 10);
	}
	free(line);
	fclose(f);
	return found;
}

/* Whether canon is mounted, and by objfs (type fuse.objfs, or plain fuse where the kernel
 * keeps no subtype): 0 (*uid the mounting user, -1 unknown), ENOENT not a mount point,
 * EINVAL another file system; one line in err. */
static int objfs_mount_at(const char *canon, long *uid, char *err, size_t errlen)
{
	char fstype[64] = "";

	if (!find_mount(canon, fstype, sizeof(fstype), uid)) {
		snprintf(err, errlen, "'%s' is not a mount point: is objfs mounted there?", canon);
		return ENOENT;
	}
	if (strcmp(fstype, "fuse.objfs") != 0 && strcmp(fstype, "fuse") != 0) {
		snprintf(err, errlen, "'%s' is not an objfs mount (it is %s)", canon, fstype);
		return EINVAL;
	}
	return 0;
}

int ctl_check_mount(const char *mountpoint, char *err, size_t errlen)
{
	char canon[PATH_MAX];
	long uid = -1;
	int e = canonical_mountpoint(mountpoint, canon, sizeof(canon));

	if (e) {
		snprintf(err, errlen, "'%s': %s", mountpoint, strerror(e));
		return e;
	}
	return objfs_mount_at(canon, &uid, err, errlen);
}

int ctl_socket_for_mountpoint(const char *mountpoint, char *path, size_t len, char *err, size_t errlen)
{
	char canon[PATH_MAX];
	long uid = -1;
	struct stat st;
	int e = canonical_mountpoint(mountpoint, canon, sizeof(canon));
	const char *env = getenv("OBJFS_RUNTIME_DIR");

	if (e) {
		snprintf(err, errlen, "'%s': %s", mountpoint, strerror(e));
		return e;
	}
	if (!(env && env[0]) && (e = objfs_mount_at(canon, &uid, err, errlen)))
		return e;
	e = ctl_registry_path(uid >= 0 ? (unsigned)uid : (unsigned)geteuid(), canon, path, len);
	if (e) {
		snprintf(err, errlen, "'%s': %s", canon, strerror(e));
		return e;
	}
	if (lstat(path, &st) < 0) {
		snprintf(err, errlen,
			 "'%s' has no objfs control socket (no '%s'): is it an objfs mount, started with "
			 "the same OBJFS_RUNTIME_DIR?",
			 canon, path);
		return ENOENT;
	}
	return 0;
}

static void human_bytes(char *buf, size_t len, double v)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", v);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void human_duration(char *buf, size_t len, double s)
{
	unsigned long t = (unsigned long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

void ctl_format_progress(char *buf, size_t len, const struct sync_progress *p)
{
	char done[32], total[32], rate[32] = "", eta[32] = "";
	int n;

	human_bytes(done, sizeof(done), (double)p->bytes_done);
	human_bytes(total, sizeof(total), (double)p->bytes_total);
	n = snprintf(buf, len, "%llu/%llu files, %s of %s", (unsigned long long)p->files_done,
		     (unsigned long long)p->files_total, done, total);
	if (p->elapsed_s >= 1.0 && p->bytes_done > 0) {
		double r = (double)p->bytes_done / p->elapsed_s;
		human_bytes(rate, sizeof(rate), r);
		if (p->bytes_total > p->bytes_done)
			human_duration(eta, sizeof(eta), (double)(p->bytes_total - p->bytes_done) / r);
	} else if (p->elapsed_s >= 1.0 && p->files_done > 0 && p->files_total > p->files_done) {
		double r = (double)p->files_done / p->elapsed_s;
		human_duration(eta, sizeof(eta), (double)(p->files_total - p->files_done) / r);
	}
	if (n > 0 && (size_t)n < len && rate[0])
		n += snprintf(buf + n, len - (size_t)n, ", %s/s", rate);
	if (n > 0 && (size_t)n < len && eta[0])
		snprintf(buf + n, len - (size_t)n, ", ETA %s", eta);
}

struct render {
	FILE *out;
	bool tty, drawn;
	const char *verb;
	int64_t last_plain;
	char note[CTL_LINE_MAX];
	struct sync_progress last;
};

static void render_progress(struct render *r, const struct sync_progress *p)
{
	char text[256];
	r->last = *p;
	ctl_format_progress(text, sizeof(text), p);
	if (r->tty) {
		double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total
			      : p->files_total ? (double)p->files_done / (double)p->files_total : 1.0;
		char bar[21];
		int fill = (int)(frac * 20 + 0.5);
		for (int i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[20] = '\0';
		fprintf(r->out, "\r%s [%s] %3d%%  %s\033[K", r->verb, bar, (int)(frac * 100), text);
		r->drawn = true;
	} else {
		int64_t now = ctl_now_ms();
		if (r->last_plain == 0)
			r->last_plain = now; /* the first plain line after a few seconds */
		if (now - r->last_plain < CTL_PLAIN_EVERY_MS)
			return;
		r->last_plain = now;
		fprintf(r->out, "%s: %s\n", r->verb, text);
	}
	fflush(r->out);
}

static void render_note(struct render *r, const char *note)
{
	if (strcmp(note, r->note) == 0)
		return; /* said already */
	snprintf(r->note, sizeof(r->note), "%s", note);
	if (r->tty && r->drawn)
		fputs("\r\033[K", r->out);
	fprintf(r->out, "retrying: %s\n", note);
	if (r->tty && r->drawn)
		render_progress(r, &r->last);
	fflush(r->out);
}

static void render_end(struct render *r, bool ok)
{
	char total[32], took[32];
	if (r->tty && r->drawn)
		fputs("\r\033[K", r->out);
	if (ok) {
		human_bytes(total, sizeof(total), (double)r->last.bytes_total);
		human_duration(took, sizeof(took), r->last.elapsed_s);
		fprintf(r->out, "%s: %llu files, %s at the destination (%s)\n",
			strcmp(r->verb, "syncing") == 0 ? "synced" : "drained",
			(unsigned long long)r->last.files_total, total, took);
	}
	fflush(r->out);
}

static void parse_progress(const char *line, struct sync_progress *p)
{
	unsigned long long fd = 0, ft = 0, bd = 0, bt = 0, rt = 0;
	double el = 0;
	sscanf(line,
	       "progress files_done=%llu files_total=%llu bytes_done=%llu bytes_total=%llu elapsed=%lf "
	       "retrying=%llu",
	       &fd, &ft, &bd, &bt, &el, &rt);
	memset(p, 0, sizeof(*p));
	p->files_done = fd;
	p->files_total = ft;
	p->bytes_done = bd;
	p->bytes_total = bt;
	p->elapsed_s = el;
	p->retrying = rt;
}

int ctl_client_request(const char *sock_path, const char *cmd, FILE *out, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct line_reader r = {.fd = -1};
	char line[CTL_LINE_MAX + 1];
	bool progress = strcmp(cmd, "sync") == 0 || strcmp(cmd, "drain") == 0;
	struct render rd = {.out = out, .verb = cmd[0] == 's' ? "syncing" : "draining"};
	int dirfd = -1, e, rv = 0;
	bool finished = false;

	err[0] = '\0';
	e = ctl_sockaddr(sock_path, &sa, &dirfd);
	if (e) {
		snprintf(err, errlen, "control socket '%s': %s", sock_path, strerror(e));
		return e;
	}
	r.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r.fd < 0 || connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(err, errlen,
				 "objfs is not running behind control socket '%s' (a stale entry from a "
				 "mount that died?): mount it again",
				 sock_path);
		else if (e == EACCES)
			snprintf(err, errlen,
				 "permission denied on control socket '%s': run as the user who mounted it",
				 sock_path);
		else
			snprintf(err, errlen, "cannot connect to control socket '%s': %s", sock_path,
				 strerror(e));
		rv = e;
		goto out;
	}
	snprintf(line, sizeof(line), "%s\n", cmd);
	e = send_all(r.fd, line, strlen(line));
	/* A server that refuses us (busy) answers and closes before reading: the send then
	 * fails with EPIPE or ECONNRESET, but its answer is still there to be read. */
	if (e && e != EPIPE && e != ECONNRESET) {
		snprintf(err, errlen, "cannot send to control socket '%s': %s", sock_path, strerror(e));
		rv = e;
		goto out;
	}
	if (out && progress)
		rd.tty = isatty(fileno(out));
	for (bool first = true;; first = false) {
		int got = read_line(&r, line, progress ? CTL_PROGRESS_TIMEOUT_MS : CTL_STATUS_TIMEOUT_MS);
		if (got < 0) {
			e = errno;
			snprintf(err, errlen, "no answer on control socket '%s': %s", sock_path,
				 strerror(e));
			rv = e;
			break;
		}
		if (got == 0)
			break;
		if (strncmp(line, "error ", 6) == 0 && (progress || first)) {
			snprintf(err, errlen, "%s", line + 6);
			rv = EIO;
			break;
		}
		if (!progress) {
			if (out)
				fprintf(out, "%s\n", line);
			continue;
		}
		if (strncmp(line, "progress ", 9) == 0) {
			struct sync_progress p;
			parse_progress(line, &p);
			if (out)
				render_progress(&rd, &p);
		} else if (strncmp(line, "note ", 5) == 0) {
			if (out)
				render_note(&rd, line + 5);
		} else if (strcmp(line, "done") == 0) {
			finished = true;
			break;
		}
	}
	if (progress && !rv && !finished) {
		snprintf(err, errlen,
			 "control socket '%s' closed before the %s finished (was the mount stopped?)",
			 sock_path, cmd);
		rv = ECONNRESET;
	}
	if (out && progress)
		render_end(&rd, !rv);
out:
	if (r.fd >= 0)
		close(r.fd);
	if (dirfd >= 0)
		close(dirfd);
	return rv;
}

static int client_run(const char *mountpoint, const char *cmd, FILE *out)
{
	char path[PATH_MAX], err[PATH_MAX + 256];
	int rv = ctl_socket_for_mountpoint(mountpoint, path, sizeof(path), err, sizeof(err));
	if (!rv)
		rv = ctl_client_request(path, cmd, out, err, sizeof(err));
	if (rv)
		log_error("%s", err);
	return rv;
}

int ctl_client_status(const char *mountpoint, bool json, FILE *out)
{
	return client_run(mountpoint, json ? "status json" : "status", out);
}

int ctl_client_sync(const char *mountpoint, FILE *out)
{
	return client_run(mountpoint, "sync", out);
}

int ctl_client_drain(const char *mountpoint, FILE *out)
{
	return client_run(mountpoint, "drain", out);
}

int ctl_client_ping(const char *mountpoint)
{
	return client_run(mountpoint, "ping", NULL);
}
