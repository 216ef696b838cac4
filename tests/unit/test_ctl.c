/*
 * test_ctl.c - the control socket: ping, status (key=value and JSON escaping), sync and
 * drain with progress and errors, unknown commands, socket mode, a client that goes away
 * cancels its wait, stopping the server cancels waits, the connection cap, the registry
 * (escaping, lookup through a differently spelled mount point, removal on stop, a stale
 * entry), socket paths longer than sun_path, and the progress line format.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

#define WAIT_FOR(cond, timeout_ms)                                                       \
	do {                                                                             \
		int64_t wait_end_ = now_ms() + (timeout_ms);                             \
		while (!(cond)) {                                                        \
			if (now_ms() > wait_end_)                                        \
				fail_msg("timed out waiting for: %s", #cond);            \
			sleep_ms(2);                                                     \
		}                                                                        \
	} while (0)

enum mode { MODE_OK, MODE_FAIL, MODE_UNTIL_CANCEL };

struct hstate {
	enum mode mode;
	int calls;     /* atomic */
	int cancelled; /* atomic */
	int drains;    /* atomic */
	int lazies;    /* atomic */
};

static void h_lazy(void *ud)
{
	struct hstate *h = ud;
	__atomic_add_fetch(&h->lazies, 1, __ATOMIC_SEQ_CST);
}

static void h_status(void *ud, struct ctl_status *w)
{
	ctl_status_u64(w, "queued_files", 3);
	ctl_status_str(w, "last_error", "bad \"x\"\nline\\");
	ctl_status_double(w, "oldest_pending_s", 1.5);
}

static int h_sync(void *ud, bool drain, void (*progress)(void *pud, const struct sync_progress *p),
		  void *pud, const volatile int *cancel, char *err, size_t errlen)
{
	struct hstate *h = ud;
	struct sync_progress p = {.files_total = 10, .bytes_total = 1000};

	__atomic_add_fetch(&h->calls, 1, __ATOMIC_SEQ_CST);
	if (drain)
		__atomic_add_fetch(&h->drains, 1, __ATOMIC_SEQ_CST);
	switch (h->mode) {
	case MODE_OK:
		for (int i = 0; i <= 10; i++) {
			p.files_done = (uint64_t)i;
			p.bytes_done = (uint64_t)i * 100;
			p.elapsed_s = i * 0.1;
			if (i == 5) {
				p.retrying = 1;
				snprintf(p.last_error, sizeof(p.last_error), "upload of 'k': SlowDown (503)");
			} else {
				p.retrying = 0;
				p.last_error[0] = '\0';
			}
			progress(pud, &p);
		}
		return 0;
	case MODE_FAIL:
		snprintf(err, errlen, "upload of 'k' failed: EIO");
		return EIO;
	case MODE_UNTIL_CANCEL:
		while (!__atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
			progress(pud, &p);
			sleep_ms(20);
		}
		__atomic_add_fetch(&h->cancelled, 1, __ATOMIC_SEQ_CST);
		snprintf(err, errlen, "cancelled");
		return ECANCELED;
	}
	return EINVAL;
}

struct fx {
	char dir[64];
	char sock[128];
	struct hstate h;
	struct ctl_server *srv;
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	char err[256];
	snprintf(x->dir, sizeof(x->dir), "/tmp/objfs-test-ctl-XXXXXX");
	if (!mkdtemp(x->dir))
		return -1;
	snprintf(x->sock, sizeof(x->sock), "%s/ctl.sock", x->dir);
	struct ctl_handlers hs = {.ud = &x->h, .status = h_status, .sync = h_sync, .lazy = h_lazy};
	x->srv = ctl_server_start(x->sock, &hs, err, sizeof(err));
	if (!x->srv) {
		fprintf(stderr, "ctl_server_start: %s\n", err);
		return -1;
	}
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	char cmd[160];
	ctl_server_stop(x->srv);
	unsetenv("OBJFS_RUNTIME_DIR");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	if (system(cmd) != 0)
		return -1;
	free(x);
	return 0;
}

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Run one request, capturing what the client writes. */
static int request(const char *sock, const char *cmd, char **text, char *err, size_t errlen)
{
	size_t len = 0;
	FILE *out = open_memstream(text, &len);
	int rv = ctl_client_request(sock, cmd, out, err, errlen);
	fclose(out);
	return rv;
}

static void test_ping_status_unknown(void **state)
{
	struct fx *x = *state;
	char err[512], want[64], *text = NULL;
	struct stat st;

	assert_int_equal(stat(x->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(request(x->sock, "ping", &text, err, sizeof(err)), 0);
	assert_string_equal(text, "pong\n");
	free(text);

	assert_int_equal(request(x->sock, "status", &text, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "pid=%ld\nversion=%s\n", (long)getpid(), PACKAGE_VERSION);
	assert_true(strncmp(text, want, strlen(want)) == 0);
	assert_non_null(strstr(text, "\nqueued_files=3\n"));
	assert_non_null(strstr(text, "\nlast_error=bad \"x\" line\\\n"));
	assert_non_null(strstr(text, "\noldest_pending_s=1.500\n"));
	free(text);

	assert_int_equal(request(x->sock, "status json", &text, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "{\"pid\":%ld,\"version\":\"%s\",", (long)getpid(), PACKAGE_VERSION);
	assert_true(strncmp(text, want, strlen(want)) == 0);
	assert_non_null(strstr(text, ",\"queued_files\":3,"));
	assert_non_null(strstr(text, ",\"last_error\":\"bad \\\"x\\\"\\u000aline\\\\\","));
	assert_non_null(strstr(text, ",\"oldest_pending_s\":1.500}\n"));
	assert_null(strchr(text, '\n') + 1 < text + strlen(text) ? strchr(strchr(text, '\n') + 1, '\n') : NULL);
	free(text);

	assert_int_equal(request(x->sock, "bogus", &text, err, sizeof(err)), EIO);
	assert_string_equal(err, "unknown command 'bogus': try ping, status, status json, sync, drain, lazy");
	free(text);

	/* "lazy" (objfs umount --lazy) reaches the handler once and answers done */
	assert_int_equal(__atomic_load_n(&x->h.lazies, __ATOMIC_SEQ_CST), 0);
	assert_int_equal(request(x->sock, "lazy", &text, err, sizeof(err)), 0);
	assert_int_equal(__atomic_load_n(&x->h.lazies, __ATOMIC_SEQ_CST), 1);
	free(text);
}

static void test_sync_progress_and_errors(void **state)
{
	struct fx *x = *state;
	char err[512], *text = NULL;

	x->h.mode = MODE_OK;
	assert_int_equal(request(x->sock, "sync", &text, err, sizeof(err)), 0);
	/* not a terminal: no bar, a note about the failure, one summary line */
	assert_null(strchr(text, '\r'));
	assert_non_null(strstr(text, "retrying: upload of 'k': SlowDown (503)\n"));
	assert_non_null(strstr(text, "synced: 10 files, 1000 B at the destination (0:01)\n"));
	free(text);
	assert_int_equal(x->h.drains, 0);

	assert_int_equal(request(x->sock, "drain", &text, err, sizeof(err)), 0);
	assert_non_null(strstr(text, "drained: 10 files"));
	free(text);
	assert_int_equal(x->h.drains, 1);

	x->h.mode = MODE_FAIL;
	assert_int_equal(request(x->sock, "sync", &text, err, sizeof(err)), EIO);
	assert_string_equal(err, "upload of 'k' failed: EIO");
	assert_null(strstr(text, "synced"));
	free(text);
}

/* A client that hangs up cancels its wait; so does stopping the server. */
static void test_cancel_on_disconnect(void **state)
{
	struct fx *x = *state;
	x->h.mode = MODE_UNTIL_CANCEL;
	int fd = raw_connect(x->sock);
	assert_int_equal(write(fd, "sync\n", 5), 5);
	WAIT_FOR(__atomic_load_n(&x->h.calls, __ATOMIC_SEQ_CST) == 1, 3000);
	close(fd);
	WAIT_FOR(__atomic_load_n(&x->h.cancelled, __ATOMIC_SEQ_CST) == 1, 3000);
}

struct client_thread {
	const char *sock;
	int rv;
	char err[512];
};

static void *client_sync(void *arg)
{
	struct client_thread *c = arg;
	char *text = NULL;
	c->rv = request(c->sock, "sync", &text, c->err, sizeof(c->err));
	free(text);
	return NULL;
}

static void test_stop_cancels_waits(void **state)
{
	struct fx *x = *state;
	struct client_thread c = {.sock = x->sock};
	pthread_t t;

	x->h.mode = MODE_UNTIL_CANCEL;
	assert_int_equal(pthread_create(&t, NULL, client_sync, &c), 0);
	WAIT_FOR(__atomic_load_n(&x->h.calls, __ATOMIC_SEQ_CST) == 1, 3000);
	int64_t t0 = now_ms();
	ctl_server_stop(x->srv);
	x->srv = NULL;
	assert_true(now_ms() - t0 < 2000);
	pthread_join(t, NULL);
	assert_int_equal(x->h.cancelled, 1);
	assert_true(c.rv == EIO || c.rv == ECONNRESET);
	struct stat st;
	assert_int_equal(stat(x->sock, &st), -1); /* socket removed */
}

static void test_connection_cap(void **state)
{
	struct fx *x = *state;
	int fds[CTL_MAX_CLIENTS];
	char err[512], *text = NULL;

	x->h.mode = MODE_UNTIL_CANCEL;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		fds[i] = raw_connect(x->sock);
		assert_int_equal(write(fds[i], "sync\n", 5), 5);
	}
	WAIT_FOR(__atomic_load_n(&x->h.calls, __ATOMIC_SEQ_CST) == CTL_MAX_CLIENTS, 5000);
	assert_int_equal(request(x->sock, "ping", &text, err, sizeof(err)), EIO);
	assert_non_null(strstr(err, "busy"));
	free(text);
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		close(fds[i]);
	WAIT_FOR(__atomic_load_n(&x->h.cancelled, __ATOMIC_SEQ_CST) == CTL_MAX_CLIENTS, 5000);
	int64_t end = now_ms() + 3000; /* finished connections are reaped */
	int rv;
	while ((rv = request(x->sock, "ping", &text, err, sizeof(err))) != 0 && now_ms() < end) {
		free(text);
		sleep_ms(20);
	}
	assert_int_equal(rv, 0);
	free(text);
}

static void test_registry(void **state)
{
	struct fx *x = *state;
	char run[128], mnt[128], other[256], path[PATH_MAX], want[256], err[512];
	FILE *out;
	char *text = NULL;
	size_t len = 0;
	struct stat st;

	snprintf(run, sizeof(run), "%s/run", x->dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt point", x->dir);
	assert_int_equal(mkdir(mnt, 0755), 0);
	setenv("OBJFS_RUNTIME_DIR", run, 1);

	assert_int_equal(ctl_registry_path(1000, "/mnt/a b/", path, sizeof(path)), 0);
	snprintf(want, sizeof(want), "%s/%%2Fmnt%%2Fa%%20b.sock", run);
	assert_string_equal(path, want);
	assert_int_equal(ctl_registry_path(0, "/mnt/./x/../y//", path, sizeof(path)), 0);
	snprintf(want, sizeof(want), "%s/%%2Fmnt%%2Fy.sock", run);
	assert_string_equal(path, want);
	char longmp[400] = "/";
	memset(longmp + 1, 'm', 300);
	assert_int_equal(ctl_registry_path(0, longmp, path, sizeof(path)), 0);
	assert_non_null(strstr(path, "/sha256-"));
	assert_int_equal(strlen(strrchr(path, '/')), 1 + 7 + 64 + 5);

	/* entries of mounts that died (their socket is gone) are swept at the next registration;
	 * a live one and anything else stay */
	char dead[PATH_MAX], live[PATH_MAX], other_file[PATH_MAX];
	assert_int_equal(mkdir(run, 0700), 0);
	snprintf(dead, sizeof(dead), "%s/%%2Fdead.sock", run);
	assert_int_equal(symlink("/nonexistent/ctl.sock", dead), 0);
	snprintf(live, sizeof(live), "%s/%%2Flive.sock", run);
	assert_int_equal(symlink(x->sock, live), 0);
	snprintf(other_file, sizeof(other_file), "%s/notes", run);
	assert_int_equal(symlink("/nonexistent/notes", other_file), 0);

	assert_int_equal(ctl_server_register(x->srv, mnt, err, sizeof(err)), 0);
	assert_int_equal(ctl_registry_path((unsigned)geteuid(), mnt, path, sizeof(path)), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(run, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(lstat(dead, &st), -1);
	assert_int_equal(lstat(live, &st), 0);
	assert_int_equal(lstat(other_file, &st), 0);
	unlink(live);
	unlink(other_file);

	/* another spelling of the same mount point, through a symlinked parent */
	char link[160];
	snprintf(link, sizeof(link), "%s/alias", x->dir);
	assert_int_equal(symlink(x->dir, link), 0);
	snprintf(other, sizeof(other), "%s/./mnt point/", link);
	out = open_memstream(&text, &len);
	assert_int_equal(ctl_client_status(other, false, out), 0);
	fclose(out);
	assert_non_null(strstr(text, "queued_files=3\n"));
	free(text);
	assert_int_equal(ctl_client_ping(mnt), 0);

	/* unregistered on stop; a stale entry says the mount is not running */
	ctl_server_stop(x->srv);
	x->srv = NULL;
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(ctl_socket_for_mountpoint(mnt, path, sizeof(path), err, sizeof(err)), ENOENT);
	assert_non_null(strstr(err, "has no objfs control socket"));
	assert_int_equal(symlink(x->sock, path), 0);
	assert_int_equal(ctl_socket_for_mountpoint(mnt, path, sizeof(path), err, sizeof(err)), 0);
	assert_int_equal(ctl_client_request(path, "ping", NULL, err, sizeof(err)), ENOENT);
	assert_non_null(strstr(err, "objfs is not running"));
	assert_int_equal(ctl_client_ping(mnt), ENOENT);
}

static void test_long_socket_path(void **state)
{
	struct fx *x = *state;
	char dir[256], sock[PATH_MAX], err[512], *text = NULL;
	struct ctl_handlers hs = {.ud = &x->h, .status = h_status, .sync = h_sync};

	snprintf(dir, sizeof(dir), "%s/%s", x->dir,
		 "a-directory-name-long-enough-that-the-socket-path-does-not-fit-in-sun_path-which-is-108-bytes");
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	assert_true(strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path));
	struct ctl_server *srv = ctl_server_start(sock, &hs, err, sizeof(err));
	assert_non_null(srv);
	assert_int_equal(request(sock, "ping", &text, err, sizeof(err)), 0);
	assert_string_equal(text, "pong\n");
	free(text);
	ctl_server_stop(srv);

	/* a file that is not a socket is never replaced */
	FILE *f = fopen(sock, "w");
	fclose(f);
	assert_null(ctl_server_start(sock, &hs, err, sizeof(err)));
	assert_non_null(strstr(err, "is not a socket"));
}

static void test_format_progress(void **state)
{
	char buf[256];
	struct sync_progress p = {.files_done = 450, .files_total = 1000,
				  .bytes_done = 1288490189ull, .bytes_total = 2147483648ull,
				  .elapsed_s = 10};
	(void)state;
	ctl_format_progress(buf, sizeof(buf), &p);
	assert_string_equal(buf, "450/1000 files, 1.2 GiB of 2.0 GiB, 122.9 MiB/s, ETA 0:07");
	p = (struct sync_progress){.files_total = 3, .bytes_total = 10, .elapsed_s = 0.5};
	ctl_format_progress(buf, sizeof(buf), &p);
	assert_string_equal(buf, "0/3 files, 0 B of 10 B");
	p = (struct sync_progress){.files_done = 1, .files_total = 4, .elapsed_s = 3600};
	ctl_format_progress(buf, sizeof(buf), &p);
	assert_string_equal(buf, "1/4 files, 0 B of 0 B, ETA 3:00:00");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ping_status_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_progress_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_on_disconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_cancels_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_socket_path, setup, teardown),
		cmocka_unit_test(test_format_progress),
	};
	alarm(120);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
