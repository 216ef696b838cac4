/*
 * opts.h - every option objfs accepts, in one table (opts.c) with named defaults and one
 * validation pass. Options come as "-o key=value,key2" (the fstab form) or "--key=value"
 * ("--key" alone for booleans); the same keys either way. Secrets are never options:
 * credentials come from the environment, a credentials file or a passwd file (creds.c).
 */
#ifndef OBJFS_OPTS_H
#define OBJFS_OPTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct objfs_opts {
	/* positional */
	char *source;     /* s3://bucket[/prefix] or file:///dir */
	char *mountpoint; /* mount only */

	/* store */
	char *endpoint;      /* endpoint=URL */
	char *region;        /* region=R (us-east-1) */
	int path_style;      /* path_style / virtual_host: 1 / 0; -1 auto */
	char *profile;       /* profile=P (~/.aws/credentials section) */
	char *passwd_file;   /* passwd_file=F ("AK:SK" or "bucket:AK:SK", mode 0600) */
	char *ca_file;       /* ca_file=F */
	bool insecure;       /* insecure: skip TLS verification (off) */
	char *dest;          /* dest=s3://bucket[/prefix]; NULL: same as source */
	char *dest_endpoint; /* dest_endpoint=URL (default: endpoint) */
	char *dest_region;   /* dest_region=R (default: region) */
	char *dest_profile;  /* dest_profile=P (default: profile) */
	char *dest_passwd_file;

	/* HTTP engine (see http.h) */
	unsigned max_conns_per_host; /* 25 */
	unsigned max_idle_conns;     /* 100 */
	long connect_timeout_ms;     /* connect_timeout=30s */
	long tls_timeout_ms;         /* tls_timeout=3s */
	long keepalive_s;            /* tcp_keepalive=20s */
	long idle_timeout_s;         /* idle_timeout=90s */
	long expect100_ms;           /* expect100_timeout=1s */
	long request_timeout_s;      /* request_timeout=30m */
	long low_speed_limit;        /* low_speed_limit=1024 (bytes/s) */
	long low_speed_time_s;       /* low_speed_time=30s */
	unsigned retries;            /* retries=5 (attempts = retries + 1) */
	long retry_base_ms;          /* retry_base=100ms */
	long retry_max_ms;           /* retry_max=10s */

	/* cache */
	char *cache_dir;     /* cache_dir=DIR (default /var/cache/objfs/<hash> as root, else ~/.cache/objfs/<hash>) */
	uint64_t cache_size; /* cache_size=1G */
	long attr_ttl_ms;    /* attr_ttl=60s */
	long dir_ttl_ms;     /* dir_ttl=60s */
	long neg_ttl_ms;     /* neg_ttl=5s */
	uint64_t read_ahead; /* read_ahead=32M (window) */
	uint64_t read_ahead_chunk; /* read_ahead_chunk=8M (one read-ahead GET at most) */
	uint64_t read_ahead_mem; /* read_ahead_mem=32M (read-ahead buffers, every stream) */
	uint64_t block_size; /* block_size=1M (range GET unit) */

	/* sync */
	long settle_ms;          /* settle=200ms */
	unsigned batch_files;    /* batch_files=1000 */
	uint64_t batch_bytes;    /* batch_bytes=256M */
	long batch_ms;           /* batch_time=2s */
	uint64_t multipart_threshold; /* multipart_threshold=16M */
	uint64_t part_size;      /* part_size=8M */
	unsigned upload_workers; /* upload_workers=24 */
	bool fsync_local;        /* fsync=local: fsync returns once durable in the journal (default: dest) */

	/* file system */
	uid_t uid;
	gid_t gid;
	mode_t umask;
	bool has_uid, has_gid, has_umask;
	bool allow_other;
	bool default_permissions;
	bool ro;
	bool foreground;  /* -f */
	bool debug_fuse;  /* -d */
	uint64_t fs_size; /* fs_size=1P: what df reports */
	int log_level;    /* log_level=warn */
	long mount_wait_s; /* mount_wait=0: retry an unreachable endpoint this long at mount */
};

/* Set every field to its default. */
void opts_defaults(struct objfs_opts *o);
/* Apply one "key=value" or "key" option (from -o or --key=value). On error returns
 * EINVAL and writes one line to err. */
int opts_set(struct objfs_opts *o, const char *keyval, char *err, size_t errlen);
/* Apply a comma-separated -o string (commas inside values are not supported). */
int opts_set_list(struct objfs_opts *o, const char *list, char *err, size_t errlen);
/* Cross-field validation after parsing. */
int opts_validate(struct objfs_opts *o, char *err, size_t errlen);
void opts_free(struct objfs_opts *o);
/* Print the option table (key, default, one-line description) for --help. */
void opts_print_table(FILE *out);
/* Iterate option keys (for the man-page completeness test): NULL past the end. */
const char *opts_key_at(size_t i);

/* Parse "10", "10k", "4M", "1G", "1T" (binary units) / "30s", "100ms", "5m", "1h". */
int opts_parse_size(const char *s, uint64_t *out);
int opts_parse_duration_ms(const char *s, long *out);

#endif
