/*
 * cli.c - the objfs command line: argument and option parsing shared by every subcommand,
 * the object subcommands (ls, cat, put, rm, stat) and the dispatch to `objfs mount`.
 *
 * Locking: runs on the main thread. A multipart `put` starts upload threads that share one
 * struct cli_upload, guarded by its lock (next part, first error, part table).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "creds.h"
#include "http.h"
#include "log.h"
#include "ctl.h"
#include "opts.h"
#include "store.h"

#include "mount.h"

#define CLI_ERR_LEN 1024

static void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("objfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* "NoSuchKey (404): ..." for the calling thread's last store error, ENOENT said plainly. */
static void cli_store_error(const char *what, const char *url, int err)
{
	char buf[512];

	if (err == ENOENT)
		cli_error("%s '%s': no such object", what, url);
	else {
		store_format_error(buf, sizeof(buf));
		cli_error("%s '%s': %s", what, url, buf);
	}
}

int cli_parse_s3_url(const char *url, char **bucket, char **key)
{
	const char *b, *slash;

	*bucket = *key = NULL;
	if (strncmp(url, "s3://", 5) != 0)
		return EINVAL;
	b = url + 5;
	slash = strchr(b, '/');
	if (slash == b || !*b)
		return EINVAL;
	*bucket = slash ? strndup(b, (size_t)(slash - b)) : strdup(b);
	*key = strdup(slash ? slash + 1 : "");
	if (!*bucket || !*key) {
		free(*bucket);
		free(*key);
		*bucket = *key = NULL;
		return ENOMEM;
	}
	return 0;
}

void cli_http_config(const struct objfs_opts *o, struct http_config *cfg)
{
	http_config_defaults(cfg);
	cfg->max_conns_per_host = o->max_conns_per_host;
	cfg->max_idle_total = o->max_idle_conns;
	cfg->connect_timeout_ms = o->connect_timeout_ms;
	cfg->tls_timeout_ms = o->tls_timeout_ms;
	cfg->keepalive_s = o->keepalive_s;
	cfg->idle_timeout_s = o->idle_timeout_s;
	cfg->expect100_ms = o->expect100_ms;
	cfg->request_timeout_s = o->request_timeout_s;
	cfg->low_speed_limit = o->low_speed_limit;
	cfg->low_speed_time_s = o->low_speed_time_s;
	cfg->max_attempts = o->retries + 1;
	cfg->retry_base_ms = o->retry_base_ms;
	cfg->retry_max_ms = o->retry_max_ms;
	cfg->ca_file = o->ca_file;
	cfg->insecure = o->insecure;
}

int cli_open_store(const struct objfs_opts *o, struct http_engine *eng, const char *bucket,
		   const char *prefix, int dest, int check, struct store **st, char *err,
		   size_t errlen)
{
	struct store_s3_config cfg = {0};
	struct creds cr = {0};
	char cerr[CLI_ERR_LEN];
	int rv;

	*st = NULL;
	cfg.endpoint = o->endpoint;
	cfg.region = o->region;
	if (dest) {
		if (o->dest_endpoint)
			cfg.endpoint = o->dest_endpoint;
		if (o->dest_region)
			cfg.region = o->dest_region;
	}
	rv = creds_resolve(dest && o->dest_passwd_file ? o->dest_passwd_file : o->passwd_file,
			   dest && o->dest_profile ? o->dest_profile : o->profile, bucket, &cr, cerr,
			   sizeof(cerr));
	if (rv) {
		snprintf(err, errlen, "%s", cerr);
		return rv;
	}
	log_debug("credentials for bucket '%s' from %s (access key %s)", bucket, cr.source,
		  cr.access_key);
	cfg.bucket = bucket;
	cfg.prefix = prefix;
	cfg.path_style = o->path_style;
	cfg.access_key = cr.access_key;
	cfg.secret_key = cr.secret_key;
	cfg.session_token = cr.session_token;
	cfg.unsigned_payload = true;
	cfg.region_option = dest ? "dest_region" : "region";
	*st = store_s3_create(&cfg, eng, err, errlen);
	creds_free(&cr);
	if (!*st)
		return EINVAL;
	if (check) {
		rv = (*st)->ops->check(*st, err, errlen);
		if (rv) {
			store_destroy(*st);
			*st = NULL;
		}
	}
	return rv;
}

/* ---- argument parsing shared by the subcommands ---- */

struct cli_args {
	struct objfs_opts o;
	char **pos; /* positional arguments */
	size_t n_pos;
	const char *flags; /* single-letter flags this subcommand accepts, e.g. "lr" */
	char seen[128];    /* seen['l'] etc. */
};

/*
 * Parse argv[first..]: "-o LIST", "-oLIST", "--key[=value]", "-f", "-d", the subcommand's
 * own letters, "--" and positionals. Returns 0, CLI_EXIT_USAGE after printing one line,
 * or -1 for --help.
 */
static int cli_parse(int argc, char **argv, int first, struct cli_args *a)
{
	char err[CLI_ERR_LEN];
	bool only_pos = false;

	opts_defaults(&a->o);
	a->pos = calloc((size_t)argc + 1, sizeof(*a->pos));
	if (!a->pos) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	for (int i = first; i < argc; i++) {
		char *arg = argv[i];
		if (only_pos || arg[0] != '-' || arg[1] == '\0') {
			a->pos[a->n_pos++] = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_pos = true;
		} else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			return -1;
		} else if (strcmp(arg, "-o") == 0 || strncmp(arg, "-o", 2) == 0) {
			const char *list = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!list) {
				cli_error("-o needs a list of options, e.g. -o region=eu-west-1,ro");
				return CLI_EXIT_USAGE;
			}
			if (opts_set_list(&a->o, list, err, sizeof(err))) {
				cli_error("%s", err);
				return CLI_EXIT_USAGE;
			}
		} else if (strcmp(arg, "--json") == 0 && a->flags && strchr(a->flags, 'j')) {
			a->seen['j'] = 1;
		} else if (strcmp(arg, "--lazy") == 0 && a->flags && strchr(a->flags, 'z')) {
			a->seen['z'] = 1;
		} else if (arg[1] == '-') {
			if (opts_set(&a->o, arg + 2, err, sizeof(err))) {
				cli_error("%s", err);
				return CLI_EXIT_USAGE;
			}
		} else {
			for (const char *f = arg + 1; *f; f++) {
				if (*f == 'f')
					a->o.foreground = true;
				else if (*f == 'd')
					a->o.debug_fuse = true;
				else if (a->flags && strchr(a->flags, *f))
					a->seen[(unsigned char)*f & 127] = 1;
				else {
					cli_error("unknown flag '-%c' (see objfs --help)", *f);
					return CLI_EXIT_USAGE;
				}
			}
		}
	}
	if (opts_validate(&a->o, err, sizeof(err))) {
		cli_error("%s", err);
		return CLI_EXIT_USAGE;
	}
	log_init("objfs", a->o.log_level, false);
	return 0;
}

static void cli_args_free(struct cli_args *a)
{
	opts_free(&a->o);
	free(a->pos);
}

/* A running engine and the store of one bucket (root prefix ""). */
struct cli_session {
	struct http_engine *eng;
	struct store *st;
	char *bucket;
};

static int cli_session_open(struct cli_session *s, const struct objfs_opts *o, const char *bucket)
{
	struct http_config cfg;
	char err[CLI_ERR_LEN];

	memset(s, 0, sizeof(*s));
	cli_http_config(o, &cfg);
	s->eng = http_engine_create(&cfg);
	if (!s->eng) {
		cli_error("cannot start the HTTP engine: %s", strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (cli_open_store(o, s->eng, bucket, "", 0, 1, &s->st, err, sizeof(err))) {
		cli_error("%s", err);
		http_engine_destroy(s->eng);
		s->eng = NULL;
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static void cli_session_close(struct cli_session *s)
{
	store_destroy(s->st);
	if (s->eng)
		http_engine_destroy(s->eng);
	memset(s, 0, sizeof(*s));
}

/* ---- ls ---- */

static void cli_ls_print(const struct store_entry *e, const char *name, bool lng)
{
	char when[32] = "";

	if (!lng) {
		printf("%s\n", name);
		return;
	}
	if (e->is_prefix) {
		printf("%12s  %19s  %s\n", "DIR", "", name);
		return;
	}
	struct tm tm;
	time_t t = e->attr.mtime.tv_sec;
	if (localtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%12" PRIu64 "  %19s  %s\n", e->attr.size, when, name);
}

/* Print one listing of prefix; *count gets the number of entries shown. */
static int cli_ls_prefix(struct store *st, const char *prefix, bool recursive, bool lng,
			 size_t *count, const char *url)
{
	char *token = NULL;
	size_t plen = strlen(prefix);
	int rv = 0;

	*count = 0;
	do {
		struct store_list l;
		rv = st->ops->list(st, prefix, recursive ? NULL : "/", token, 0, NULL, &l);
		free(token);
		token = NULL;
		if (rv) {
			cli_store_error("cannot list", url, rv);
			return rv;
		}
		for (size_t i = 0; i < l.n_entries; i++) {
			const char *name = l.entries[i].key + plen;
			if (!*name)
				continue; /* the directory's own marker object */
			cli_ls_print(&l.entries[i], name, lng);
			(*count)++;
		}
		if (l.next_token && !(token = strdup(l.next_token)))
			rv = ENOMEM;
		store_list_free(&l);
	} while (token && rv == 0);
	free(token);
	return rv;
}

static int cli_ls(struct cli_args *a)
{
	struct cli_session s;
	char *bucket = NULL, *key = NULL, *dir = NULL;
	bool lng = a->seen['l'], rec = a->seen['r'];
	size_t count = 0;
	int rc = CLI_EXIT_FAIL, rv;

	if (a->n_pos != 1 || cli_parse_s3_url(a->pos[0], &bucket, &key)) {
		cli_error("usage: objfs ls [-l] [-r] s3://BUCKET[/PREFIX]");
		return CLI_EXIT_USAGE;
	}
	if (cli_session_open(&s, &a->o, bucket))
		goto out;
	if (!key[0] || key[strlen(key) - 1] == '/') {
		if (cli_ls_prefix(s.st, key, rec, lng, &count, a->pos[0]) == 0)
			rc = CLI_EXIT_OK;
		goto out_session;
	}
	/* "s3://b/name": the directory name/ if it has anything in it, else the object name */
	if (asprintf(&dir, "%s/", key) < 0) {
		dir = NULL;
		cli_error("out of memory");
		goto out_session;
	}
	if (cli_ls_prefix(s.st, dir, rec, lng, &count, a->pos[0]))
		goto out_session;
	if (count == 0) {
		struct store_attr attr;
		rv = store_head(s.st, key, NULL, &attr);
		if (rv) {
			cli_store_error("cannot access", a->pos[0], rv);
			goto out_session;
		}
		struct store_entry e = {.key = key, .is_prefix = false, .attr = attr};
		const char *base = strrchr(key, '/');
		cli_ls_print(&e, base ? base + 1 : key, lng);
		store_attr_free(&attr);
	}
	rc = CLI_EXIT_OK;
out_session:
	cli_session_close(&s);
out:
	free(dir);
	free(bucket);
	free(key);
	return rc;
}

/* ---- cat ---- */

static int cli_write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Stream an object to fd out in chunks, through a temporary file; If-Match keeps the
 * chunks of one version. */
static int cli_cat_one(struct store *st, const char *key, const char *url, int out,
		       uint64_t chunk)
{
	struct store_attr attr;
	char tmpl[] = "/tmp/objfs-cat.XXXXXX";
	const char *tmpdir = getenv("TMPDIR");
	char *path = NULL;
	char *buf = NULL;
	uint64_t off = 0, got;
	int fd = -1, rv;

	rv = store_head(st, key, NULL, &attr);
	if (rv) {
		cli_store_error("cannot read", url, rv);
		return rv;
	}
	if (attr.is_dir && key[strlen(key) - 1] == '/') {
		store_attr_free(&attr);
		cli_error("cannot read '%s': is a directory", url);
		return EISDIR;
	}
	if (tmpdir && *tmpdir && asprintf(&path, "%s/objfs-cat.XXXXXX", tmpdir) < 0)
		path = NULL;
	fd = mkstemp(path ? path : tmpl);
	if (fd < 0) {
		rv = errno;
		cli_error("cannot create a temporary file in %s: %s", tmpdir ? tmpdir : "/tmp",
			  strerror(rv));
		goto out;
	}
	unlink(path ? path : tmpl);
	buf = malloc(1 << 20);
	if (!buf) {
		rv = ENOMEM;
		cli_error("out of memory");
		goto out;
	}
	while (off < attr.size) {
		uint64_t want = attr.size - off < chunk ? attr.size - off : chunk;
		rv = st->ops->get(st, key, off, want, attr.etag[0] ? attr.etag : NULL, NULL, fd, 0,
				  &got);
		if (rv) {
			if (rv == ESTALE)
				cli_error("cannot read '%s': the object changed while it was read; try "
					  "again", url);
			else
				cli_store_error("cannot read", url, rv);
			goto out;
		}
		if (got == 0)
			break; /* shrank under us: the If-Match would have said so; be safe */
		for (uint64_t done = 0; done < got;) {
			size_t n = got - done < (1 << 20) ? (size_t)(got - done) : (1 << 20);
			ssize_t r = pread(fd, buf, n, (off_t)done);
			if (r <= 0) {
				rv = r < 0 ? errno : EIO;
				cli_error("cannot read the temporary file: %s", strerror(rv));
				goto out;
			}
			if ((rv = cli_write_all(out, buf, (size_t)r))) {
				cli_error("cannot write '%s' to the output: %s", url, strerror(rv));
				goto out;
			}
			done += (uint64_t)r;
		}
		off += got;
	}
	rv = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	free(path);
	store_attr_free(&attr);
	return rv;
}

/* true when every positional argument is s3://BUCKET/KEY; else one line and false. */
static bool cli_all_object_urls(const struct cli_args *a)
{
	for (size_t i = 0; i < a->n_pos; i++) {
		char *bucket, *key;
		bool ok = cli_parse_s3_url(a->pos[i], &bucket, &key) == 0 && key[0];

		free(bucket);
		free(key);
		if (!ok) {
			cli_error("'%s' is not s3://BUCKET/KEY", a->pos[i]);
			return false;
		}
	}
	return true;
}

static int cli_cat(struct cli_args *a)
{
	struct cli_session s;
	int rc = CLI_EXIT_OK;
	char *bucket = NULL, *key = NULL;

	if (a->n_pos < 1) {
		cli_error("usage: objfs cat s3://BUCKET/KEY...");
		return CLI_EXIT_USAGE;
	}
	if (!cli_all_object_urls(a))
		return CLI_EXIT_USAGE;
	for (size_t i = 0; i < a->n_pos; i++) {
		cli_parse_s3_url(a->pos[i], &bucket, &key);
		if (cli_session_open(&s, &a->o, bucket) == 0) {
			if (cli_cat_one(s.st, key, a->pos[i], STDOUT_FILENO, a->o.part_size))
				rc = CLI_EXIT_FAIL;
			cli_session_close(&s);
		} else {
			rc = CLI_EXIT_FAIL;
		}
		free(bucket);
		free(key);
	}
	return rc;
}

/* ---- put ---- */

/* Shared by the upload threads of one multipart put. */
struct cli_upload {
	struct store *st;
	const char *key;
	const char *upload_id;
	int fd;
	uint64_t size, part_size;
	int n_parts;
	struct store_part *parts;
	volatile int cancel; /* set when a part failed: the others abandon theirs */
	pthread_mutex_t lock;
	int next;           /* protected by lock: next part index to upload */
	int err;            /* protected by lock: first error */
	char errtext[512];  /* protected by lock */
};

static void *cli_upload_worker(void *arg)
{
	struct cli_upload *u = arg;
	struct store_io io = {.priority = STORE_FOREGROUND, .cancel = &u->cancel};

	for (;;) {
		int i, rv;
		pthread_mutex_lock(&u->lock);
		i = u->err ? u->n_parts : u->next++;
		pthread_mutex_unlock(&u->lock);
		if (i >= u->n_parts)
			break;
		uint64_t off = (uint64_t)i * u->part_size;
		struct store_body b = {
			.mem = NULL,
			.fd = u->fd,
			.off = (off_t)off,
			.len = u->size - off < u->part_size ? u->size - off : u->part_size,
		};
		u->parts[i].number = i + 1;
		rv = u->st->ops->mpu_part(u->st, u->key, u->upload_id, i + 1, &b, &io,
					  u->parts[i].etag);
		if (rv) {
			pthread_mutex_lock(&u->lock);
			if (!u->err || (u->err == ECANCELED && rv != ECANCELED)) {
				u->err = rv;
				store_format_error(u->errtext, sizeof(u->errtext));
			}
			pthread_mutex_unlock(&u->lock);
			u->cancel = 1;
			break;
		}
	}
	return NULL;
}

static int cli_put_multipart(struct store *st, const char *key, const struct store_attr *attr,
			     int fd, uint64_t size, const struct objfs_opts *o, const char *url)
{
	struct cli_upload u = {.st = st, .key = key, .fd = fd, .size = size};
	pthread_t *threads = NULL;
	char *upload_id = NULL;
	unsigned n_threads, started = 0;
	int rv;

	u.part_size = o->part_size;
	if ((size + u.part_size - 1) / u.part_size > 10000) /* S3 allows 10,000 parts */
		u.part_size = ((size / 10000) + (1 << 20)) & ~(uint64_t)((1 << 20) - 1);
	u.n_parts = (int)((size + u.part_size - 1) / u.part_size);
	pthread_mutex_init(&u.lock, NULL);
	u.parts = calloc((size_t)u.n_parts, sizeof(*u.parts));
	n_threads = o->upload_workers;
	if (n_threads > o->max_conns_per_host)
		n_threads = o->max_conns_per_host;
	if (n_threads > (unsigned)u.n_parts)
		n_threads = (unsigned)u.n_parts;
	threads = calloc(n_threads, sizeof(*threads));
	if (!u.parts || !threads) {
		rv = ENOMEM;
		cli_error("out of memory");
		goto out;
	}
	rv = st->ops->mpu_create(st, key, attr, NULL, &upload_id);
	if (rv) {
		cli_store_error("cannot start the upload of", url, rv);
		goto out;
	}
	u.upload_id = upload_id;
	for (; started < n_threads; started++) {
		if (pthread_create(&threads[started], NULL, cli_upload_worker, &u)) {
			pthread_mutex_lock(&u.lock);
			if (!u.err) {
				u.err = EAGAIN;
				snprintf(u.errtext, sizeof(u.errtext), "cannot start upload threads");
			}
			pthread_mutex_unlock(&u.lock);
			break;
		}
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	rv = u.err;
	if (rv) {
		cli_error("cannot upload '%s': %s", url, u.errtext);
	} else {
		rv = st->ops->mpu_complete(st, key, upload_id, u.parts, (size_t)u.n_parts, NULL,
					   NULL);
		if (rv)
			cli_store_error("cannot complete the upload of", url, rv);
	}
	if (rv && st->ops->mpu_abort(st, key, upload_id, NULL))
		log_warn("could not abort the multipart upload of '%s' (id %s); the bucket's "
			 "lifecycle rules must clean it up", url, upload_id);
out:
	free(upload_id);
	free(threads);
	free(u.parts);
	pthread_mutex_destroy(&u.lock);
	return rv;
}

static int cli_put(struct cli_args *a)
{
	struct cli_session s;
	struct store_attr attr;
	struct stat stt;
	char *bucket = NULL, *key = NULL, *fullkey = NULL, *url = NULL, *tmp = NULL;
	const char *file;
	int fd = -1, rc = CLI_EXIT_FAIL, rv;

	if (a->n_pos != 2 || cli_parse_s3_url(a->pos[1], &bucket, &key)) {
		cli_error("usage: objfs put FILE s3://BUCKET/KEY");
		return CLI_EXIT_USAGE;
	}
	file = a->pos[0];
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &stt) != 0) {
		cli_error("cannot open '%s': %s", file, strerror(errno));
		goto out;
	}
	if (!S_ISREG(stt.st_mode)) {
		cli_error("'%s' is not a regular file", file);
		goto out;
	}
	if (!key[0] || key[strlen(key) - 1] == '/') {
		/* like cp: s3://b/dir/ gets the file's own name */
		if (!(tmp = strdup(file)) || asprintf(&fullkey, "%s%s", key, basename(tmp)) < 0) {
			fullkey = NULL;
			cli_error("out of memory");
			goto out;
		}
	} else if (!(fullkey = strdup(key))) {
		cli_error("out of memory");
		goto out;
	}
	if (asprintf(&url, "s3://%s/%s", bucket, fullkey) < 0) {
		url = NULL;
		cli_error("out of memory");
		goto out;
	}
	store_attr_init(&attr);
	attr.mode = stt.st_mode;
	attr.uid = stt.st_uid;
	attr.gid = stt.st_gid;
	attr.mtime = stt.st_mtim;
	attr.ctime = stt.st_ctim;
	attr.atime = stt.st_atim;
	attr.has = STORE_HAS_MODE | STORE_HAS_UID | STORE_HAS_GID | STORE_HAS_MTIME |
		   STORE_HAS_CTIME | STORE_HAS_ATIME;
	if (cli_session_open(&s, &a->o, bucket))
		goto out;
	if ((uint64_t)stt.st_size >= a->o.multipart_threshold) {
		rv = cli_put_multipart(s.st, fullkey, &attr, fd, (uint64_t)stt.st_size, &a->o, url);
	} else {
		struct store_body b = {.mem = NULL, .fd = fd, .off = 0, .len = (uint64_t)stt.st_size};
		rv = s.st->ops->put(s.st, fullkey, &b, &attr, NULL, NULL);
		if (rv)
			cli_store_error("cannot upload", url, rv);
	}
	if (rv == 0)
		rc = CLI_EXIT_OK;
	cli_session_close(&s);
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	free(url);
	free(fullkey);
	free(bucket);
	free(key);
	return rc;
}

/* ---- rm ---- */

static int cli_rm(struct cli_args *a)
{
	struct cli_session s;
	char *bucket = NULL, *key = NULL, *open_bucket = NULL;
	bool have = false;
	int rc = CLI_EXIT_OK, rv;

	if (a->n_pos < 1) {
		cli_error("usage: objfs rm s3://BUCKET/KEY...");
		return CLI_EXIT_USAGE;
	}
	if (!cli_all_object_urls(a))
		return CLI_EXIT_USAGE;
	for (size_t i = 0; i < a->n_pos; i++) {
		cli_parse_s3_url(a->pos[i], &bucket, &key);
		if (!have || strcmp(open_bucket, bucket) != 0) {
			if (have)
				cli_session_close(&s);
			have = false;
			free(open_bucket);
			open_bucket = NULL;
			if (cli_session_open(&s, &a->o, bucket)) {
				rc = CLI_EXIT_FAIL;
				free(bucket);
				free(key);
				continue;
			}
			have = true;
			open_bucket = bucket;
			bucket = NULL;
		}
		rv = s.st->ops->remove(s.st, key, NULL);
		if (rv) {
			cli_store_error("cannot remove", a->pos[i], rv);
			rc = CLI_EXIT_FAIL;
		}
		free(bucket);
		free(key);
	}
	if (have)
		cli_session_close(&s);
	free(open_bucket);
	return rc;
}

/* ---- stat ---- */

static void cli_print_time(const char *label, const struct timespec *ts, bool from_meta)
{
	struct tm tm;
	char when[64] = "";
	time_t t = ts->tv_sec;

	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("%-13s %s (%lld.%09ld)%s\n", label, when, (long long)ts->tv_sec, ts->tv_nsec,
	       from_meta ? "" : " [Last-Modified]");
}

static int cli_stat(struct cli_args *a)
{
	struct cli_session s;
	struct store_attr attr;
	char *bucket = NULL, *key = NULL, *dirkey = NULL;
	const char *shown;
	int rc = CLI_EXIT_FAIL, rv;

	if (a->n_pos != 1 || cli_parse_s3_url(a->pos[0], &bucket, &key) || !key[0]) {
		free(bucket);
		free(key);
		cli_error("usage: objfs stat s3://BUCKET/KEY");
		return CLI_EXIT_USAGE;
	}
	if (cli_session_open(&s, &a->o, bucket))
		goto out;
	shown = key;
	rv = store_head(s.st, key, NULL, &attr);
	if (rv == ENOENT && key[strlen(key) - 1] != '/') {
		/* a directory marker "key/" */
		if (asprintf(&dirkey, "%s/", key) < 0) {
			dirkey = NULL;
			rv = ENOMEM;
		} else {
			rv = store_head(s.st, dirkey, NULL, &attr);
			shown = dirkey;
		}
	}
	if (rv == ENOENT && dirkey) {
		/* no marker object, but keys below it: an implicit directory */
		struct store_list l;
		int lrv = s.st->ops->list(s.st, dirkey, "/", NULL, 1, NULL, &l);
		bool implicit = lrv == 0 && l.n_entries > 0;
		if (lrv == 0)
			store_list_free(&l);
		if (implicit) {
			printf("%-13s %s\n%-13s directory (implicit: no marker object)\n", "key:",
			       dirkey, "type:");
			rc = CLI_EXIT_OK;
			goto out_session;
		}
		if (lrv && lrv != ENOENT)
			rv = lrv;
	}
	if (rv) {
		if (rv == ENOENT)
			cli_error("cannot stat '%s': no such object", a->pos[0]);
		else
			cli_store_error("cannot stat", a->pos[0], rv);
		goto out_session;
	}
	printf("%-13s %s\n", "key:", shown);
	printf("%-13s %" PRIu64 "\n", "size:", attr.size);
	printf("%-13s %s\n", "etag:", attr.etag);
	printf("%-13s %s\n", "type:", attr.is_dir ? "directory" : "file");
	printf("%-13s %s\n", "content-type:", attr.content_type);
	if (attr.has & STORE_HAS_MODE)
		printf("%-13s %04o (%u)\n", "mode:", (unsigned)(attr.mode & 07777),
		       (unsigned)attr.mode);
	else
		printf("%-13s -\n", "mode:");
	if (attr.has & STORE_HAS_UID)
		printf("%-13s %u\n", "uid:", (unsigned)attr.uid);
	else
		printf("%-13s -\n", "uid:");
	if (attr.has & STORE_HAS_GID)
		printf("%-13s %u\n", "gid:", (unsigned)attr.gid);
	else
		printf("%-13s -\n", "gid:");
	cli_print_time("mtime:", &attr.mtime, attr.has & STORE_HAS_MTIME);
	for (size_t i = 0; i < attr.n_extra; i++)
		printf("meta %s: %s\n", attr.extra[i].name, attr.extra[i].value);
	store_attr_free(&attr);
	rc = CLI_EXIT_OK;
out_session:
	cli_session_close(&s);
out:
	free(dirkey);
	free(bucket);
	free(key);
	return rc;
}

/* ---- mount ---- */

static int cli_mount(struct cli_args *a)
{
	if (a->n_pos != 2) {
		cli_error("usage: objfs mount s3://BUCKET[/PREFIX] MOUNTPOINT [-o OPTIONS]");
		return CLI_EXIT_USAGE;
	}
	char err[CLI_ERR_LEN];
	a->o.source = strdup(a->pos[0]);
	a->o.mountpoint = strdup(a->pos[1]);
	if (!a->o.source || !a->o.mountpoint) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	if (opts_validate(&a->o, err, sizeof(err))) {
		cli_error("%s", err);
		return CLI_EXIT_USAGE;
	}
	return mount_main(&a->o);
}

/* ---- status, sync, umount: talk to a running mount over its control socket ---- */

static int cli_one_mountpoint(struct cli_args *a, const char *usage)
{
	if (a->n_pos != 1) {
		cli_error("usage: objfs %s", usage);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int cli_status(struct cli_args *a)
{
	int rc = cli_one_mountpoint(a, "status [--json] MOUNTPOINT");
	if (rc)
		return rc;
	return ctl_client_status(a->pos[0], a->seen['j'], stdout) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int cli_sync(struct cli_args *a)
{
	int rc = cli_one_mountpoint(a, "sync MOUNTPOINT");
	if (rc)
		return rc;
	return ctl_client_sync(a->pos[0], stdout) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* The daemon's pid from its status answer (*pid 0 when unknown): 0, or the request's errno
 * (ENOENT or ECONNREFUSED: no daemon behind the socket any more). */
static int cli_mount_pid(const char *sock, long *pid)
{
	char *buf = NULL, err[CLI_ERR_LEN];
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	*pid = 0;
	if (!mem)
		return ENOMEM;
	int rv = ctl_client_request(sock, "status", mem, err, sizeof(err));
	fclose(mem);
	if (rv == 0 && buf) {
		const char *p = strstr(buf, "pid=");
		if (p && (p == buf || p[-1] == '\n'))
			*pid = strtol(p + 4, NULL, 10);
	}
	free(buf);
	return rv;
}

static int cli_unmount_fs(const char *mp)
{
	if (geteuid() == 0) {
		if (umount2(mp, 0) == 0)
			return 0;
		int e = errno;
		cli_error("cannot unmount '%s': %s%s", mp, strerror(e),
			  e == EBUSY ? " (a process still uses it: see fuser -m)" : "");
		return e;
	}
	pid_t child = fork();
	if (child < 0)
		return errno;
	if (child == 0) {
		execlp("fusermount3", "fusermount3", "-u", mp, (char *)NULL);
		_exit(127);
	}
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	cli_error("cannot unmount '%s': fusermount3 -u failed", mp);
	return EIO;
}

/* Whether process pid still runs. An exited process that nobody has reaped yet is a
 * zombie (its parent, e.g. a container's PID 1, may never reap it): it has stopped. */
static bool cli_pid_running(long pid)
{
	char path[64], buf[512], *p;
	bool zombie = false;
	size_t n;
	FILE *f;

	if (kill((pid_t)pid, 0) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r"))) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		/* "pid (comm) S ...": comm may hold ')' and spaces, the state follows the last */
		if ((p = strrchr(buf, ')')) && p[1] == ' ')
			zombie = p[2] == 'Z' || p[2] == 'X';
	}
	return !zombie;
}

/*
 * objfs umount [--lazy] MOUNTPOINT: drain (everything written is at the destination, with
 * progress), then unmount and wait for the daemon to exit. --lazy unmounts at once and
 * leaves pending work in the journal for the next mount with the same cache_dir. Only an
 * objfs mount is unmounted; one without a control socket (its daemon is gone) is unmounted
 * without draining.
 */
static int cli_umount(struct cli_args *a)
{
	char mp[PATH_MAX], sock[PATH_MAX + 64], err[CLI_ERR_LEN];
	bool lazy = a->seen['z'] || a->seen['l'], dead = false;
	long pid = 0;
	int rc = cli_one_mountpoint(a, "umount [--lazy] MOUNTPOINT");

	if (rc)
		return rc;
	if (!realpath(a->pos[0], mp)) {
		cli_error("cannot unmount '%s': %s", a->pos[0], strerror(errno));
		return CLI_EXIT_FAIL;
	}
	/* never another file system: as root, umount2 would take any */
	if ((rc = ctl_check_mount(mp, err, sizeof(err)))) {
		if (rc == EINVAL)
			cli_error("%s: not unmounting it", err);
		else
			cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	if (ctl_socket_for_mountpoint(mp, sock, sizeof(sock), err, sizeof(err)) == 0) {
		rc = cli_mount_pid(sock, &pid);
		if (rc == ENOENT || rc == ECONNREFUSED) {
			/* killed or crashed: nothing to drain; the journal keeps the rest */
			dead = true;
			log_warn("'%s': objfs is not running there any more; unmounting without "
				 "draining: what it had not uploaded stays in its journal for the next "
				 "mount with the same cache_dir",
				 mp);
		} else if (lazy) {
			if (ctl_client_request(sock, "lazy", stdout, err, sizeof(err)))
				cli_error("'%s': %s (unmounting anyway)", mp, err);
		} else if (ctl_client_drain(mp, stdout)) {
			cli_error("'%s' not unmounted: pending uploads did not finish; they stay in "
				  "the journal. Fix the cause (objfs status) or use objfs umount --lazy",
				  mp);
			return CLI_EXIT_FAIL;
		}
	} else {
		log_warn("%s; unmounting without draining", err);
	}
	if (cli_unmount_fs(mp))
		return CLI_EXIT_FAIL;
	if (dead)
		unlink(sock); /* its registry entry, which it could not remove itself */
	/* The daemon exits once it has torn down; it drains anything written after the drain
	 * above before it does. */
	for (int i = 0; pid > 0 && cli_pid_running(pid); i++) {
		if (i == 50)
			fprintf(stderr, "objfs: waiting for the daemon (pid %ld) to finish\n", pid);
		usleep(100 * 1000);
	}
	return CLI_EXIT_OK;
}

/* ---- dispatch ---- */

struct cli_command {
	const char *name;
	int (*run)(struct cli_args *a);
	const char *flags;
	const char *usage;
};

static const struct cli_command cli_commands[] = {
	{"mount", cli_mount, NULL, "mount s3://BUCKET[/PREFIX] MOUNTPOINT   mount a bucket"},
	{"umount", cli_umount, "lz", "umount [--lazy] MOUNTPOINT              drain, then unmount"},
	{"status", cli_status, "j", "status [--json] MOUNTPOINT              queue, connections, retries, errors"},
	{"sync", cli_sync, NULL, "sync MOUNTPOINT                         wait until all writes are at the destination"},
	{"ls", cli_ls, "lr", "ls [-l] [-r] s3://BUCKET[/PREFIX]       list (-l long, -r recursive)"},
	{"cat", cli_cat, NULL, "cat s3://BUCKET/KEY...                  write objects to stdout"},
	{"put", cli_put, NULL, "put FILE s3://BUCKET/KEY                upload a file"},
	{"rm", cli_rm, NULL, "rm s3://BUCKET/KEY...                   delete objects"},
	{"stat", cli_stat, NULL, "stat s3://BUCKET/KEY                    size, etag, mode, owner, mtime"},
};
#define CLI_N_COMMANDS (sizeof(cli_commands) / sizeof(cli_commands[0]))

static void cli_usage(FILE *out, bool with_options)
{
	fprintf(out, "usage: objfs COMMAND [ARGS] [-o KEY=VALUE,...] [--KEY=VALUE]\n\ncommands:\n");
	for (size_t i = 0; i < CLI_N_COMMANDS; i++)
		fprintf(out, "  objfs %s\n", cli_commands[i].usage);
	if (!with_options) {
		fprintf(out, "\nobjfs --help lists the options; the manual is objfs(1).\n");
		return;
	}
	fprintf(out, "\noptions (as -o KEY=VALUE,KEY2 or --KEY=VALUE; defaults shown):\n");
	opts_print_table(out);
	fprintf(out,
		"\ncredentials: passwd_file=, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else\n"
		"~/.aws/credentials (profile=). Never on the command line.\n"
		"exit status: 0 ok, 1 failed, 2 usage. The manual is objfs(1).\n");
}

int cli_main(int argc, char **argv)
{
	const struct cli_command *cmd = NULL;
	struct cli_args a;
	int rc;

	if (argc < 2) {
		cli_usage(stderr, false);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		cli_usage(stdout, true);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0 ||
	    strcmp(argv[1], "version") == 0) {
		printf("%s\n", PACKAGE_STRING);
		return CLI_EXIT_OK;
	}
	/* Hidden: the option keys, one a line, for the bash completion and the man-page test
	 * (one source of truth: the option table). */
	if (strcmp(argv[1], "--list-options") == 0) {
		const char *key;

		for (size_t i = 0; (key = opts_key_at(i)); i++)
			printf("%s\n", key);
		return fflush(stdout) == 0 && !ferror(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	}
	for (size_t i = 0; i < CLI_N_COMMANDS; i++)
		if (strcmp(argv[1], cli_commands[i].name) == 0)
			cmd = &cli_commands[i];
	if (!cmd) {
		cli_error("unknown command '%s' (see objfs --help)", argv[1]);
		return CLI_EXIT_USAGE;
	}
	memset(&a, 0, sizeof(a));
	a.flags = cmd->flags;
	rc = cli_parse(argc, argv, 2, &a);
	if (rc == -1) {
		printf("usage: objfs %s\nsee objfs --help for the options and objfs(1)\n",
		       cmd->usage);
		rc = CLI_EXIT_OK;
	} else if (rc == 0) {
		rc = cmd->run(&a);
	}
	cli_args_free(&a);
	return rc;
}
