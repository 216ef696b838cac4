/*
 * test_opts.c - the option table: defaults, table-driven parsing of every value type,
 * one-line errors for unknown keys and bad values, cross-field validation, --help output.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "opts.h"

static void test_sizes(void **state)
{
	static const struct {
		const char *in;
		int rv;
		uint64_t want;
	} cases[] = {
		{"0", 0, 0},
		{"4096", 0, 4096},
		{"1k", 0, 1024},
		{"1K", 0, 1024},
		{"8M", 0, 8ULL << 20},
		{"8MiB", 0, 8ULL << 20},
		{"8MB", 0, 8ULL << 20},
		{"1G", 0, 1ULL << 30},
		{"2T", 0, 2ULL << 40},
		{"1P", 0, 1ULL << 50},
		{"512B", 0, 512},
		{"", EINVAL, 0},
		{"M", EINVAL, 0},
		{"-1", EINVAL, 0},
		{"1.5G", EINVAL, 0},
		{"10X", EINVAL, 0},
		{"1Mx", EINVAL, 0},
		{"99999999999999999999", EINVAL, 0},
		{"20000P", ERANGE, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rv = opts_parse_size(cases[i].in, &v);
		if (rv != cases[i].rv || (rv == 0 && v != cases[i].want))
			fail_msg("size '%s': rv %d value %llu, want rv %d value %llu", cases[i].in,
				 rv, (unsigned long long)v, cases[i].rv,
				 (unsigned long long)cases[i].want);
	}
}

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		int rv;
		long want_ms;
	} cases[] = {
		{"0", 0, 0},
		{"30", 0, 30000},
		{"30s", 0, 30000},
		{"100ms", 0, 100},
		{"5m", 0, 300000},
		{"5min", 0, 300000},
		{"1h", 0, 3600000},
		{"2d", 0, 172800000},
		{"", EINVAL, 0},
		{"s", EINVAL, 0},
		{"-5s", EINVAL, 0},
		{"1.5s", EINVAL, 0},
		{"10 s", EINVAL, 0},
		{"3w", EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long v = -1;
		int rv = opts_parse_duration_ms(cases[i].in, &v);
		if (rv != cases[i].rv || (rv == 0 && v != cases[i].want_ms))
			fail_msg("duration '%s': rv %d value %ld, want rv %d value %ld",
				 cases[i].in, rv, v, cases[i].rv, cases[i].want_ms);
	}
}

static void test_defaults(void **state)
{
	struct objfs_opts o;

	opts_defaults(&o);
	assert_null(o.endpoint);
	assert_string_equal(o.region, "us-east-1");
	assert_int_equal(o.path_style, -1);
	assert_false(o.insecure);
	assert_int_equal(o.max_conns_per_host, 25);
	assert_int_equal(o.max_idle_conns, 100);
	assert_int_equal(o.connect_timeout_ms, 30000);
	assert_int_equal(o.tls_timeout_ms, 3000);
	assert_int_equal(o.keepalive_s, 20);
	assert_int_equal(o.idle_timeout_s, 90);
	assert_int_equal(o.expect100_ms, 1000);
	assert_int_equal(o.request_timeout_s, 1800);
	assert_int_equal(o.low_speed_limit, 1024);
	assert_int_equal(o.low_speed_time_s, 30);
	assert_int_equal(o.retries, 5);
	assert_int_equal(o.retry_base_ms, 100);
	assert_int_equal(o.retry_max_ms, 10000);
	assert_null(o.cache_dir);
	assert_true(o.cache_size == 1ULL << 30);
	assert_int_equal(o.attr_ttl_ms, 60000);
	assert_int_equal(o.dir_ttl_ms, 60000);
	assert_int_equal(o.neg_ttl_ms, 5000);
	assert_true(o.read_ahead == 32ULL << 20);
	assert_true(o.read_ahead_chunk == 8ULL << 20);
	assert_true(o.read_ahead_mem == 32ULL << 20);
	assert_true(o.block_size == 1ULL << 20);
	assert_int_equal(o.settle_ms, 200);
	assert_int_equal(o.batch_files, 1000);
	assert_true(o.batch_bytes == 256ULL << 20);
	assert_int_equal(o.batch_ms, 2000);
	assert_true(o.multipart_threshold == 16ULL << 20);
	assert_true(o.part_size == 8ULL << 20);
	assert_int_equal(o.upload_workers, 24);
	assert_false(o.fsync_local);
	assert_false(o.has_uid);
	assert_false(o.has_gid);
	assert_false(o.has_umask);
	assert_false(o.allow_other);
	assert_false(o.ro);
	assert_true(o.fs_size == 1ULL << 50);
	assert_int_equal(o.log_level, LOG_LEVEL_WARN);
	assert_int_equal(o.mount_wait_s, 0);
	char err[256];
	assert_int_equal(opts_validate(&o, err, sizeof(err)), 0);
	opts_free(&o);
}

/* What one accepted option must have changed. */
enum want_kind { W_STR, W_INT, W_LONG, W_U64, W_UINT, W_BOOL };
struct set_case {
	const char *in;
	size_t offset;
	enum want_kind kind;
	const char *s;
	long long v;
};
#define OFF(f) offsetof(struct objfs_opts, f)

static void check_case(const struct set_case *c)
{
	struct objfs_opts o;
	char err[256] = "";
	const char *base;
	int rv;

	opts_defaults(&o);
	rv = opts_set(&o, c->in, err, sizeof(err));
	if (rv)
		fail_msg("'%s' refused: %s", c->in, err);
	base = (const char *)&o;
	switch (c->kind) {
	case W_STR: {
		const char *got = *(char *const *)(base + c->offset);
		if (!c->s ? got != NULL : !got || strcmp(got, c->s) != 0)
			fail_msg("'%s': got '%s' want '%s'", c->in, got ? got : "(null)",
				 c->s ? c->s : "(null)");
		break;
	}
	case W_INT:
		if (*(const int *)(base + c->offset) != c->v)
			fail_msg("'%s': got %d want %lld", c->in, *(const int *)(base + c->offset), c->v);
		break;
	case W_LONG:
		if (*(const long *)(base + c->offset) != c->v)
			fail_msg("'%s': got %ld want %lld", c->in, *(const long *)(base + c->offset), c->v);
		break;
	case W_U64:
		if (*(const uint64_t *)(base + c->offset) != (uint64_t)c->v)
			fail_msg("'%s': got %llu want %lld", c->in,
				 (unsigned long long)*(const uint64_t *)(base + c->offset), c->v);
		break;
	case W_UINT:
		if (*(const unsigned *)(base + c->offset) != (unsigned)c->v)
			fail_msg("'%s': got %u want %lld", c->in,
				 *(const unsigned *)(base + c->offset), c->v);
		break;
	case W_BOOL:
		if (*(const bool *)(base + c->offset) != (c->v != 0))
			fail_msg("'%s': got %d want %lld", c->in, *(const bool *)(base + c->offset), c->v);
		break;
	}
	opts_free(&o);
}

static void test_set_values(void **state)
{
	static const struct set_case cases[] = {
		{"endpoint=http://127.0.0.1:7480", OFF(endpoint), W_STR, "http://127.0.0.1:7480", 0},
		{"endpoint=", OFF(endpoint), W_STR, NULL, 0},
		{"region=eu-west-1", OFF(region), W_STR, "eu-west-1", 0},
		{"dest=s3://b/x=y", OFF(dest), W_STR, "s3://b/x=y", 0},
		{"path_style", OFF(path_style), W_INT, NULL, 1},
		{"path_style=0", OFF(path_style), W_INT, NULL, 0},
		{"path_style=auto", OFF(path_style), W_INT, NULL, -1},
		{"virtual_host", OFF(path_style), W_INT, NULL, 0},
		{"insecure", OFF(insecure), W_BOOL, NULL, 1},
		{"insecure=no", OFF(insecure), W_BOOL, NULL, 0},
		{"allow_other=true", OFF(allow_other), W_BOOL, NULL, 1},
		{"ro", OFF(ro), W_BOOL, NULL, 1},
		{"default_permissions", OFF(default_permissions), W_BOOL, NULL, 1},
		{"max_conns_per_host=7", OFF(max_conns_per_host), W_UINT, NULL, 7},
		{"connect_timeout=5", OFF(connect_timeout_ms), W_LONG, NULL, 5000},
		{"connect_timeout=250ms", OFF(connect_timeout_ms), W_LONG, NULL, 250},
		{"request_timeout=2m", OFF(request_timeout_s), W_LONG, NULL, 120},
		{"request_timeout=1500ms", OFF(request_timeout_s), W_LONG, NULL, 2},
		{"tcp_keepalive=1h", OFF(keepalive_s), W_LONG, NULL, 3600},
		{"low_speed_limit=4k", OFF(low_speed_limit), W_LONG, NULL, 4096},
		{"retries=0", OFF(retries), W_UINT, NULL, 0},
		{"retry_base=50ms", OFF(retry_base_ms), W_LONG, NULL, 50},
		{"cache_size=10G", OFF(cache_size), W_U64, NULL, 10LL << 30},
		{"part_size=16M", OFF(part_size), W_U64, NULL, 16LL << 20},
		{"multipart_threshold=64M", OFF(multipart_threshold), W_U64, NULL, 64LL << 20},
		{"batch_time=500ms", OFF(batch_ms), W_LONG, NULL, 500},
		{"fsync=local", OFF(fsync_local), W_BOOL, NULL, 1},
		{"fsync=dest", OFF(fsync_local), W_BOOL, NULL, 0},
		{"uid=1234", OFF(uid), W_UINT, NULL, 1234},
		{"uid=1234", OFF(has_uid), W_BOOL, NULL, 1},
		{"gid=0", OFF(has_gid), W_BOOL, NULL, 1},
		{"uid=root", OFF(uid), W_UINT, NULL, 0},
		{"umask=027", OFF(umask), W_UINT, NULL, 027},
		{"umask=027", OFF(has_umask), W_BOOL, NULL, 1},
		{"log_level=debug", OFF(log_level), W_INT, NULL, LOG_LEVEL_DEBUG},
		{"mount_wait=1m", OFF(mount_wait_s), W_LONG, NULL, 60},
		{"foreground", OFF(foreground), W_BOOL, NULL, 1},
		{"fs_size=2P", OFF(fs_size), W_U64, NULL, 2LL << 50},
		/* fstab words and x- comments are accepted and change nothing */
		{"_netdev", OFF(ro), W_BOOL, NULL, 0},
		{"x-systemd.automount", OFF(ro), W_BOOL, NULL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
}

static void test_set_errors(void **state)
{
	static const struct {
		const char *in;
		const char *must_say; /* the line must name the subject */
	} cases[] = {
		{"no_such_option=1", "'no_such_option'"},
		{"bogus", "'bogus'"},
		{"=x", "empty option"},
		{"secret_key=abc", "credentials are not options"},
		{"access_key=abc", "credentials are not options"},
		{"aws_secret_access_key=abc", "credentials are not options"},
		{"cache_size=lots", "cache_size=lots"},
		{"cache_size", "needs a value"},
		{"connect_timeout=fast", "connect_timeout=fast"},
		{"max_conns_per_host=-1", "max_conns_per_host=-1"},
		{"max_conns_per_host=99999999999", "max_conns_per_host"},
		{"insecure=maybe", "insecure=maybe"},
		{"path_style=sometimes", "path_style=sometimes"},
		{"fsync=never", "fsync=never"},
		{"umask=999", "umask=999"},
		{"uid=no_such_user_objfs", "no such user"},
		{"log_level=loud", "log_level=loud"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct objfs_opts o;
		char err[256] = "";
		opts_defaults(&o);
		int rv = opts_set(&o, cases[i].in, err, sizeof(err));
		if (rv != EINVAL)
			fail_msg("'%s' accepted (rv %d)", cases[i].in, rv);
		if (!strstr(err, cases[i].must_say) || strchr(err, '\n'))
			fail_msg("'%s': message '%s' should say '%s' on one line", cases[i].in, err,
				 cases[i].must_say);
		/* the secret must not be echoed back */
		if (strstr(cases[i].in, "key=abc") && strstr(err, "abc"))
			fail_msg("'%s': message repeats the secret: %s", cases[i].in, err);
		opts_free(&o);
	}
}

static void test_set_list(void **state)
{
	struct objfs_opts o;
	char err[256] = "";

	opts_defaults(&o);
	assert_int_equal(opts_set_list(&o, "region=r1,ro,,allow_other,part_size=6M", err,
				       sizeof(err)), 0);
	assert_string_equal(o.region, "r1");
	assert_true(o.ro);
	assert_true(o.allow_other);
	assert_true(o.part_size == 6ULL << 20);
	/* a later value replaces an earlier one (no leak under ASan) */
	assert_int_equal(opts_set_list(&o, "region=r2,region=r3", err, sizeof(err)), 0);
	assert_string_equal(o.region, "r3");
	assert_int_equal(opts_set_list(&o, "ro,nosuchkey,allow_other=0", err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "nosuchkey"));
	assert_true(o.allow_other); /* parsing stopped at the bad key */
	opts_free(&o);
}

static void test_validate(void **state)
{
	static const struct {
		const char *list;
		const char *must_say;
	} cases[] = {
		{"part_size=1M", "part_size"},
		{"part_size=6G", "part_size"},
		{"multipart_threshold=1M", "multipart_threshold"},
		{"max_conns_per_host=0", "max_conns_per_host"},
		{"upload_workers=0", "upload_workers"},
		{"retry_base=20s,retry_max=1s", "retry_base"},
		{"endpoint=ftp://x", "endpoint 'ftp://x'"},
		{"dest=bucket-without-scheme", "dest 'bucket-without-scheme'"},
		{"block_size=1k", "block_size"},
		{"batch_files=0", "batch_files"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct objfs_opts o;
		char err[256] = "";
		opts_defaults(&o);
		if (opts_set_list(&o, cases[i].list, err, sizeof(err)))
			fail_msg("'%s' refused by the parser: %s", cases[i].list, err);
		if (opts_validate(&o, err, sizeof(err)) != EINVAL)
			fail_msg("'%s' passed validation", cases[i].list);
		if (!strstr(err, cases[i].must_say))
			fail_msg("'%s': '%s' should say '%s'", cases[i].list, err, cases[i].must_say);
		opts_free(&o);
	}

	struct objfs_opts o;
	char err[256];
	opts_defaults(&o);
	o.source = strdup("s3://bucket/prefix");
	assert_int_equal(opts_validate(&o, err, sizeof(err)), 0);
	free(o.source);
	o.source = strdup("bucket");
	assert_int_equal(opts_validate(&o, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'bucket'"));
	assert_int_equal(opts_set(&o, "debug", err, sizeof(err)), 0);
	free(o.source);
	o.source = NULL;
	assert_int_equal(opts_validate(&o, err, sizeof(err)), 0);
	assert_true(o.foreground); /* debug implies foreground */
	opts_free(&o);
}

/* Every documented key is accepted, appears once in --help, and the list ends. */
static void test_table_complete(void **state)
{
	char *help = NULL;
	size_t len = 0, n = 0;
	FILE *f = open_memstream(&help, &len);
	const char *key;

	assert_non_null(f);
	opts_print_table(f);
	fclose(f);
	for (n = 0; (key = opts_key_at(n)); n++) {
		char needle[80];
		struct objfs_opts o;
		char err[256] = "";

		snprintf(needle, sizeof(needle), "  %s", key);
		if (!strstr(help, needle))
			fail_msg("key '%s' missing from the help table", key);
		for (size_t j = 0; j < n; j++)
			if (strcmp(opts_key_at(j), key) == 0)
				fail_msg("key '%s' appears twice", key);
		/* the key alone is either accepted or asks for a value, never "unknown" */
		opts_defaults(&o);
		if (opts_set(&o, key, err, sizeof(err)) && !strstr(err, "needs a value"))
			fail_msg("key '%s' alone: %s", key, err);
		opts_free(&o);
	}
	assert_true(n >= 50);
	assert_null(opts_key_at(n + 1));
	assert_null(strstr(help, "secret"));
	free(help);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_set_values),
		cmocka_unit_test(test_set_errors),
		cmocka_unit_test(test_set_list),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_table_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
