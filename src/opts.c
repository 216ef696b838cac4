/*
 * opts.c - the option table: every key objfs accepts, where it lands in struct objfs_opts,
 * its default (as text, applied through the same parser as user input) and one line of
 * help. opts_set() is the only parser; opts_validate() is the one cross-field pass.
 *
 * Locking: none; options are parsed on the main thread before any other thread exists.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "opts.h"

enum opts_type {
	OPTS_STRING,     /* char * (strdup'd; empty value clears) */
	OPTS_BOOL,       /* bool; "key", "key=1|0|yes|no|true|false|on|off" */
	OPTS_UINT,       /* unsigned */
	OPTS_LONG,       /* long, with size suffixes (k, M...) */
	OPTS_SIZE,       /* uint64_t with size suffixes */
	OPTS_MS,         /* long milliseconds; duration ("100ms", "30s", "5m"; bare = seconds) */
	OPTS_SECONDS,    /* long seconds; duration, rounded up to whole seconds */
	OPTS_PATH_STYLE, /* path_style=auto|1|0 (bare: 1) */
	OPTS_VHOST,      /* virtual_host: path_style = 0 */
	OPTS_FSYNC,      /* fsync=dest|local */
	OPTS_UID,        /* uid=N or user name; sets has_uid */
	OPTS_GID,        /* gid=N or group name; sets has_gid */
	OPTS_UMASK,      /* umask=octal; sets has_umask */
	OPTS_LOG_LEVEL,  /* error|warn|info|debug */
	OPTS_IGNORED,    /* fstab/mount(8) words that mean nothing to objfs (_netdev, nofail...) */
};

struct opts_entry {
	const char *key;
	enum opts_type type;
	size_t offset;
	const char *def; /* default as text; NULL: none (zero / NULL) */
	const char *help;
};

#define F(field) offsetof(struct objfs_opts, field)

static const struct opts_entry opts_table[] = {
	/* store */
	{"endpoint", OPTS_STRING, F(endpoint), NULL,
	 "S3 endpoint URL (default https://s3.REGION.amazonaws.com)"},
	{"region", OPTS_STRING, F(region), "us-east-1", "region used for signing"},
	{"path_style", OPTS_PATH_STYLE, F(path_style), "auto",
	 "path-style URLs: 1, 0 or auto (path style for IPs, localhost, dotted buckets)"},
	{"virtual_host", OPTS_VHOST, F(path_style), NULL, "virtual-host-style URLs (path_style=0)"},
	{"profile", OPTS_STRING, F(profile), NULL,
	 "section of ~/.aws/credentials (default $AWS_PROFILE, then 'default')"},
	{"passwd_file", OPTS_STRING, F(passwd_file), NULL,
	 "s3fs-style credentials file, lines AK:SK or bucket:AK:SK (mode 0600)"},
	{"ca_file", OPTS_STRING, F(ca_file), NULL, "CA certificates (PEM) to verify the endpoint"},
	{"insecure", OPTS_BOOL, F(insecure), "0", "do not verify the endpoint's TLS certificate"},
	{"dest", OPTS_STRING, F(dest), NULL,
	 "publish writes to s3://bucket[/prefix] (default: the source)"},
	{"dest_endpoint", OPTS_STRING, F(dest_endpoint), NULL,
	 "endpoint of dest (default: endpoint)"},
	{"dest_region", OPTS_STRING, F(dest_region), NULL, "region of dest (default: region)"},
	{"dest_profile", OPTS_STRING, F(dest_profile), NULL,
	 "credentials profile for dest (default: profile)"},
	{"dest_passwd_file", OPTS_STRING, F(dest_passwd_file), NULL, "passwd file for dest"},

	/* HTTP engine */
	{"max_conns_per_host", OPTS_UINT, F(max_conns_per_host), "25",
	 "hard cap on concurrent connections to one host"},
	{"max_idle_conns", OPTS_UINT, F(max_idle_conns), "100", "idle connections kept open"},
	{"connect_timeout", OPTS_MS, F(connect_timeout_ms), "30s",
	 "DNS + TCP + TLS connect timeout"},
	{"tls_timeout", OPTS_MS, F(tls_timeout_ms), "3s", "TLS handshake timeout"},
	{"tcp_keepalive", OPTS_SECONDS, F(keepalive_s), "20s", "TCP keep-alive idle and interval"},
	{"idle_timeout", OPTS_SECONDS, F(idle_timeout_s), "90s",
	 "do not reuse a connection idle this long"},
	{"expect100_timeout", OPTS_MS, F(expect100_ms), "1s", "wait for 100-continue this long"},
	{"request_timeout", OPTS_SECONDS, F(request_timeout_s), "30m", "whole-request timeout"},
	{"low_speed_limit", OPTS_LONG, F(low_speed_limit), "1024",
	 "a transfer slower than this many bytes/s ..."},
	{"low_speed_time", OPTS_SECONDS, F(low_speed_time_s), "30s",
	 "... for this long is a stall (retried)"},
	{"retries", OPTS_UINT, F(retries), "5", "retries per request after the first attempt"},
	{"retry_base", OPTS_MS, F(retry_base_ms), "100ms", "first retry backoff (full jitter)"},
	{"retry_max", OPTS_MS, F(retry_max_ms), "10s", "longest retry backoff"},

	/* cache */
	{"cache_dir", OPTS_STRING, F(cache_dir), NULL,
	 "cache directory (default /var/cache/objfs/ID as root, else ~/.cache/objfs/ID)"},
	{"cache_size", OPTS_SIZE, F(cache_size), "1G", "bound of the on-disk data cache"},
	{"attr_ttl", OPTS_MS, F(attr_ttl_ms), "60s", "how long attributes are cached"},
	{"dir_ttl", OPTS_MS, F(dir_ttl_ms), "60s", "how long directory listings are cached"},
	{"neg_ttl", OPTS_MS, F(neg_ttl_ms), "5s", "how long 'absent' is cached"},
	{"read_ahead", OPTS_SIZE, F(read_ahead), "32M", "read-ahead window of sequential reads"},
	{"read_ahead_chunk", OPTS_SIZE, F(read_ahead_chunk), "8M",
	 "most bytes one read-ahead GET fetches"},
	{"read_ahead_mem", OPTS_SIZE, F(read_ahead_mem), "32M",
	 "memory read-ahead fills before it uses the cache directory"},
	{"block_size", OPTS_SIZE, F(block_size), "1M", "unit of range GETs into the cache"},

	/* sync */
	{"settle", OPTS_MS, F(settle_ms), "200ms", "wait this long after a write before uploading"},
	{"batch_files", OPTS_UINT, F(batch_files), "1000", "close an upload batch at N files"},
	{"batch_bytes", OPTS_SIZE, F(batch_bytes), "256M", "... or at this many bytes"},
	{"batch_time", OPTS_MS, F(batch_ms), "2s", "... or after this long"},
	{"multipart_threshold", OPTS_SIZE, F(multipart_threshold), "16M",
	 "upload files this large as multipart"},
	{"part_size", OPTS_SIZE, F(part_size), "8M", "multipart part size (5M..5G)"},
	{"upload_workers", OPTS_UINT, F(upload_workers), "24", "parallel uploads"},
	{"fsync", OPTS_FSYNC, F(fsync_local), "dest",
	 "fsync returns when the file is at the dest, or 'local' (in the journal)"},

	/* file system */
	{"uid", OPTS_UID, F(uid), NULL,
	 "owner of every file, overriding x-amz-meta-uid (unset: it, else you)"},
	{"gid", OPTS_GID, F(gid), NULL,
	 "group of every file, overriding x-amz-meta-gid (unset: it, else yours)"},
	{"umask", OPTS_UMASK, F(umask), NULL, "mask applied to every mode (octal)"},
	{"allow_other", OPTS_BOOL, F(allow_other), "0", "let other users access the mount"},
	{"default_permissions", OPTS_BOOL, F(default_permissions), "0",
	 "let the kernel check permissions"},
	{"ro", OPTS_BOOL, F(ro), "0", "mount read-only"},
	{"rw", OPTS_IGNORED, 0, NULL, "mount read-write (the default)"},
	{"foreground", OPTS_BOOL, F(foreground), "0", "stay in the foreground (-f)"},
	{"debug", OPTS_BOOL, F(debug_fuse), "0", "FUSE debug output, implies foreground (-d)"},
	{"fs_size", OPTS_SIZE, F(fs_size), "1P", "size df reports"},
	{"log_level", OPTS_LOG_LEVEL, F(log_level), "warn", "error, warn, info or debug"},
	{"mount_wait", OPTS_SECONDS, F(mount_wait_s), "0",
	 "at mount, retry an unreachable endpoint this long"},

	/* words /etc/fstab and mount(8) pass along that mean nothing to objfs */
	{"_netdev", OPTS_IGNORED, 0, NULL, NULL},
	{"nofail", OPTS_IGNORED, 0, NULL, NULL},
	{"defaults", OPTS_IGNORED, 0, NULL, NULL},
	{"auto", OPTS_IGNORED, 0, NULL, NULL},
	{"noauto", OPTS_IGNORED, 0, NULL, NULL},
	{"user", OPTS_IGNORED, 0, NULL, NULL},
	{"nouser", OPTS_IGNORED, 0, NULL, NULL},
	{"users", OPTS_IGNORED, 0, NULL, NULL},
	{"exec", OPTS_IGNORED, 0, NULL, NULL},
	{"noexec", OPTS_IGNORED, 0, NULL, NULL},
	{"suid", OPTS_IGNORED, 0, NULL, NULL},
	{"nosuid", OPTS_IGNORED, 0, NULL, NULL},
	{"dev", OPTS_IGNORED, 0, NULL, NULL},
	{"nodev", OPTS_IGNORED, 0, NULL, NULL},
	{"atime", OPTS_IGNORED, 0, NULL, NULL},
	{"noatime", OPTS_IGNORED, 0, NULL, NULL},
	{"relatime", OPTS_IGNORED, 0, NULL, NULL},
};
#define OPTS_N (sizeof(opts_table) / sizeof(opts_table[0]))

#undef F

static const struct opts_entry *opts_find(const char *key, size_t keylen)
{
	for (size_t i = 0; i < OPTS_N; i++)
		if (strlen(opts_table[i].key) == keylen && strncmp(opts_table[i].key, key, keylen) == 0)
			return &opts_table[i];
	return NULL;
}

const char *opts_key_at(size_t i)
{
	/* Only the keys the user is meant to know: the ignored fstab words are not listed. */
	size_t n = 0;

	for (size_t j = 0; j < OPTS_N; j++) {
		if (!opts_table[j].help)
			continue;
		if (n++ == i)
			return opts_table[j].key;
	}
	return NULL;
}

/* ---- value parsers ---- */

static int opts_parse_u64(const char *s, uint64_t *out, const char **end)
{
	char *e;

	if (!isdigit((unsigned char)*s))
		return EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno)
		return EINVAL;
	*out = v;
	*end = e;
	return 0;
}

int opts_parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mul = 1;
	const char *e;

	if (opts_parse_u64(s, &v, &e))
		return EINVAL;
	switch (*e) {
	case '\0':
		break;
	case 'k': case 'K': mul = 1ULL << 10; e++; break;
	case 'm': case 'M': mul = 1ULL << 20; e++; break;
	case 'g': case 'G': mul = 1ULL << 30; e++; break;
	case 't': case 'T': mul = 1ULL << 40; e++; break;
	case 'p': case 'P': mul = 1ULL << 50; e++; break;
	case 'b': case 'B': break; /* "512B" */
	default: return EINVAL;
	}
	if (mul > 1 && *e == 'i')
		e++;
	if (*e == 'b' || *e == 'B')
		e++;
	if (*e)
		return EINVAL;
	if (v > UINT64_MAX / mul)
		return ERANGE;
	*out = v * mul;
	return 0;
}

int opts_parse_duration_ms(const char *s, long *out)
{
	uint64_t v, mul;
	const char *e;

	if (opts_parse_u64(s, &v, &e))
		return EINVAL;
	if (*e == '\0' || strcmp(e, "s") == 0)
		mul = 1000;
	else if (strcmp(e, "ms") == 0)
		mul = 1;
	else if (strcmp(e, "m") == 0 || strcmp(e, "min") == 0)
		mul = 60 * 1000;
	else if (strcmp(e, "h") == 0)
		mul = 3600 * 1000;
	else if (strcmp(e, "d") == 0)
		mul = 86400 * 1000;
	else
		return EINVAL;
	if (v > (uint64_t)LONG_MAX / mul)
		return ERANGE;
	*out = (long)(v * mul);
	return 0;
}

static int opts_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return EINVAL;
}

static int opts_parse_id(const char *s, bool group, unsigned long *out)
{
	char *e;

	if (isdigit((unsigned char)*s)) {
		errno = 0;
		unsigned long v = strtoul(s, &e, 10);
		if (errno || *e || v >= UINT_MAX)
			return EINVAL;
		*out = v;
		return 0;
	}
	if (group) {
		struct group *g = getgrnam(s);
		if (!g)
			return ENOENT;
		*out = g->gr_gid;
	} else {
		struct passwd *p = getpwnam(s);
		if (!p)
			return ENOENT;
		*out = p->pw_uid;
	}
	return 0;
}

/* Apply value (NULL when the key came alone) to entry e. */
static int opts_apply(struct objfs_opts *o, const struct opts_entry *e, const char *value,
		      char *err, size_t errlen)
{
	void *field = (char *)o + e->offset;
	uint64_t u64;
	long l;
	bool b;
	int rv = 0;
	const char *expect = NULL;

	if (!value && e->type != OPTS_BOOL && e->type != OPTS_PATH_STYLE &&
	    e->type != OPTS_VHOST && e->type != OPTS_IGNORED) {
		snprintf(err, errlen, "option '%s' needs a value: %s=...", e->key, e->key);
		return EINVAL;
	}
	switch (e->type) {
	case OPTS_STRING: {
		char **p = field;
		char *dup = NULL;
		if (value[0] && !(dup = strdup(value)))
			return ENOMEM;
		free(*p);
		*p = dup;
		break;
	}
	case OPTS_BOOL:
		if (!value)
			b = true;
		else if (opts_parse_bool(value, &b)) {
			expect = "1 or 0 (yes/no, true/false, on/off)";
			break;
		}
		*(bool *)field = b;
		break;
	case OPTS_UINT:
		if (opts_parse_size(value, &u64) || u64 > UINT_MAX) {
			expect = "a whole number";
			break;
		}
		*(unsigned *)field = (unsigned)u64;
		break;
	case OPTS_LONG:
		if (opts_parse_size(value, &u64) || u64 > LONG_MAX) {
			expect = "a whole number (k, M, G suffixes allowed)";
			break;
		}
		*(long *)field = (long)u64;
		break;
	case OPTS_SIZE:
		if (opts_parse_size(value, &u64)) {
			expect = "a size such as 4096, 512k, 8M, 1G";
			break;
		}
		*(uint64_t *)field = u64;
		break;
	case OPTS_MS:
	case OPTS_SECONDS:
		if (opts_parse_duration_ms(value, &l)) {
			expect = "a duration such as 500ms, 30s, 5m, 1h (a bare number is seconds)";
			break;
		}
		*(long *)field = e->type == OPTS_MS ? l : (l + 999) / 1000;
		break;
	case OPTS_PATH_STYLE:
		if (!value)
			*(int *)field = 1;
		else if (strcmp(value, "auto") == 0)
			*(int *)field = -1;
		else if (opts_parse_bool(value, &b) == 0)
			*(int *)field = b ? 1 : 0;
		else
			expect = "1, 0 or auto";
		break;
	case OPTS_VHOST:
		if (!value)
			b = true;
		else if (opts_parse_bool(value, &b)) {
			expect = "1 or 0";
			break;
		}
		*(int *)field = b ? 0 : 1;
		break;
	case OPTS_FSYNC:
		if (strcmp(value, "local") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "dest") == 0)
			*(bool *)field = false;
		else
			expect = "'dest' or 'local'";
		break;
	case OPTS_UID:
	case OPTS_GID: {
		unsigned long id;
		rv = opts_parse_id(value, e->type == OPTS_GID, &id);
		if (rv == ENOENT) {
			snprintf(err, errlen, "option %s=%s: no such %s", e->key, value,
				 e->type == OPTS_GID ? "group" : "user");
			return EINVAL;
		}
		if (rv) {
			expect = "a number or a name";
			break;
		}
		if (e->type == OPTS_UID) {
			o->uid = (uid_t)id;
			o->has_uid = true;
		} else {
			o->gid = (gid_t)id;
			o->has_gid = true;
		}
		break;
	}
	case OPTS_UMASK: {
		char *end;
		errno = 0;
		unsigned long m = strtoul(value, &end, 8);
		if (!value[0] || *end || errno || m > 0777) {
			expect = "an octal mask such as 022";
			break;
		}
		o->umask = (mode_t)m;
		o->has_umask = true;
		break;
	}
	case OPTS_LOG_LEVEL: {
		int lv = log_level_parse(value);
		if (lv < 0) {
			expect = "error, warn, info or debug";
			break;
		}
		*(int *)field = lv;
		break;
	}
	case OPTS_IGNORED:
		break;
	}
	if (expect) {
		snprintf(err, errlen, "option %s=%s: expected %s", e->key, value, expect);
		return EINVAL;
	}
	return 0;
}

void opts_defaults(struct objfs_opts *o)
{
	char err[256];

	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < OPTS_N; i++) {
		const struct opts_entry *e = &opts_table[i];
		/* The defaults are ours: a failure here is a bug in the table (test_opts checks). */
		if (e->def && opts_apply(o, e, e->def, err, sizeof(err)))
			log_error("bad default in the option table: %s", err);
	}
}

int opts_set(struct objfs_opts *o, const char *keyval, char *err, size_t errlen)
{
	const char *eq = strchr(keyval, '=');
	size_t keylen = eq ? (size_t)(eq - keyval) : strlen(keyval);
	const struct opts_entry *e;

	if (keylen == 0) {
		snprintf(err, errlen, "empty option name in '%s'", keyval);
		return EINVAL;
	}
	if (strncmp(keyval, "x-", 2) == 0)
		return 0; /* x-systemd.* and other fstab comments are for other programs */
	e = opts_find(keyval, keylen);
	if (!e) {
		/* Secrets are never options: say where they go instead. */
		if ((keylen == 10 && strncmp(keyval, "access_key", keylen) == 0) ||
		    (keylen == 10 && strncmp(keyval, "secret_key", keylen) == 0) ||
		    strncmp(keyval, "aws_", 4) == 0)
			snprintf(err, errlen,
				 "option '%.*s': credentials are not options; use AWS_ACCESS_KEY_ID/"
				 "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or passwd_file=",
				 (int)keylen, keyval);
		else
			snprintf(err, errlen, "unknown option '%.*s' (see objfs --help or objfs(1))",
				 (int)keylen, keyval);
		return EINVAL;
	}
	return opts_apply(o, e, eq ? eq + 1 : NULL, err, errlen);
}

int opts_set_list(struct objfs_opts *o, const char *list, char *err, size_t errlen)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int rv = 0;

	if (!copy)
		return ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		rv = opts_set(o, tok, err, errlen);
		if (rv)
			break;
	}
	free(copy);
	return rv;
}

static bool opts_is_s3_url(const char *s)
{
	return strncmp(s, "s3://", 5) == 0 && s[5] && s[5] != '/';
}

static bool opts_is_http_url(const char *s)
{
	return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

int opts_validate(struct objfs_opts *o, char *err, size_t errlen)
{
	const uint64_t min_part = 5ULL << 20, max_part = 5ULL << 30;

	if (o->source && !opts_is_s3_url(o->source) && strncmp(o->source, "file://", 7) != 0) {
		snprintf(err, errlen, "source '%s' is not s3://bucket[/prefix] or file:///dir",
			 o->source);
		return EINVAL;
	}
	if (o->dest && !opts_is_s3_url(o->dest)) {
		snprintf(err, errlen, "dest '%s' is not s3://bucket[/prefix]", o->dest);
		return EINVAL;
	}
	if (o->endpoint && !opts_is_http_url(o->endpoint)) {
		snprintf(err, errlen, "endpoint '%s' is not an http:// or https:// URL", o->endpoint);
		return EINVAL;
	}
	if (o->dest_endpoint && !opts_is_http_url(o->dest_endpoint)) {
		snprintf(err, errlen, "dest_endpoint '%s' is not an http:// or https:// URL",
			 o->dest_endpoint);
		return EINVAL;
	}
	if (o->max_conns_per_host < 1) {
		snprintf(err, errlen, "max_conns_per_host must be at least 1");
		return EINVAL;
	}
	if (o->upload_workers < 1) {
		snprintf(err, errlen, "upload_workers must be at least 1");
		return EINVAL;
	}
	if (o->part_size < min_part || o->part_size > max_part) {
		snprintf(err, errlen, "part_size=%" PRIu64 " is outside what S3 accepts (5M..5G)",
			 o->part_size);
		return EINVAL;
	}
	if (o->multipart_threshold < min_part) {
		snprintf(err, errlen, "multipart_threshold must be at least 5M");
		return EINVAL;
	}
	if (o->block_size < 4096) {
		snprintf(err, errlen, "block_size must be at least 4k");
		return EINVAL;
	}
	if (o->retry_base_ms > o->retry_max_ms) {
		snprintf(err, errlen, "retry_base (%ldms) is longer than retry_max (%ldms)",
			 o->retry_base_ms, o->retry_max_ms);
		return EINVAL;
	}
	if (o->batch_files < 1) {
		snprintf(err, errlen, "batch_files must be at least 1");
		return EINVAL;
	}
	if (o->debug_fuse)
		o->foreground = true;
	return 0;
}

void opts_free(struct objfs_opts *o)
{
	free(o->source);
	free(o->mountpoint);
	o->source = o->mountpoint = NULL;
	for (size_t i = 0; i < OPTS_N; i++) {
		if (opts_table[i].type == OPTS_STRING) {
			char **p = (char **)((char *)o + opts_table[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}

void opts_print_table(FILE *out)
{
	for (size_t i = 0; i < OPTS_N; i++) {
		const struct opts_entry *e = &opts_table[i];
		char left[64];

		if (!e->help)
			continue;
		if (e->type == OPTS_BOOL || e->type == OPTS_VHOST || e->type == OPTS_IGNORED)
			snprintf(left, sizeof(left), "%s", e->key);
		else
			snprintf(left, sizeof(left), "%s=%s", e->key, e->def ? e->def : "");
		fprintf(out, "  %-28s %s\n", left, e->help);
	}
	fprintf(out, "  %-28s %s\n", "_netdev, nofail, ...", "fstab words, accepted and ignored");
}
