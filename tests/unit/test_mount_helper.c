/*
 * test_mount_helper.c - the mount(8) helper conventions: which options are filtered out,
 * how "SOURCE DIR [-sfnv] [-o OPTS]" is parsed, when argv is a helper call, and the
 * whole helper in fake mode (-f: everything but the mount).
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mount_helper.h"

struct filter_case {
	const char *in;
	const char *out;
};

static const struct filter_case filter_cases[] = {
	{"", ""},
	{"endpoint=http://127.0.0.1:7480", "endpoint=http://127.0.0.1:7480"},
	/* what mount(8) passes for a typical fstab line */
	{"rw,nodev,noexec,nosuid,allow_other,endpoint=http://h:1,_netdev,nofail,user",
	 "allow_other,endpoint=http://h:1"},
	/* what mount.fuse3 passes (it adds dev,suid as root) */
	{"rw,dev,suid,cache_dir=/var/cache/objfs/p", "cache_dir=/var/cache/objfs/p"},
	{"defaults,auto,noauto,users,nouser,owner,group,async,exec", ""},
	{"x-systemd.automount,x-systemd.requires=network-online.target,x-mount.mkdir=0755,dest=s3://t",
	 "dest=s3://t"},
	{"comment=systemd.automount,region=eu-west-1", "region=eu-west-1"},
	{"user=alice,uid=1000,gid=100,umask=022", "uid=1000,gid=100,umask=022"},
	{"atime,noatime,relatime,norelatime,strictatime,nostrictatime,lazytime,nolazytime,"
	 "diratime,nodiratime,ro",
	 "ro"},
	/* ro/rw: the last one wins; ro appears once */
	{"ro", "ro"},
	{"rw,ro", "ro"},
	{"ro,rw", ""},
	{"ro,allow_other,ro", "allow_other,ro"},
	/* empty items vanish, order is kept */
	{",,a=1,,b,", "a=1,b"},
	/* only whole words are filtered: prefixes and look-alikes stay */
	{"users_extra,rwx,_netdevice,nofails,xsystemd,commentary=1",
	 "users_extra,rwx,_netdevice,nofails,xsystemd,commentary=1"},
	/* values are not options */
	{"dest=s3://rw/ro,profile=nofail", "dest=s3://rw/ro,profile=nofail"},
	/* unknown options are not the filter's business: opts_set() rejects them */
	{"bogus=1,noexec", "bogus=1"},
};

static void test_filter_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(filter_cases) / sizeof(filter_cases[0]); i++) {
		char out[512];
		memset(out, 'Z', sizeof(out));
		int rv = mount_helper_filter_options(filter_cases[i].in, out, sizeof(out));
		if (rv != 0 || strcmp(out, filter_cases[i].out) != 0)
			fail_msg("case %zu: filter('%s') = %d '%s', expected '%s'", i, filter_cases[i].in,
				 rv, out, filter_cases[i].out);
	}
}

static void test_filter_null_and_small_buffer(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(mount_helper_filter_options(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* "abc,def" needs 8 bytes with its NUL: fits exactly */
	assert_int_equal(mount_helper_filter_options("_netdev,abc,def", out, 8), 0);
	assert_string_equal(out, "abc,def");
	/* one more byte does not fit: ERANGE and an empty, terminated buffer */
	assert_int_equal(mount_helper_filter_options("abc,defg", out, 8), ERANGE);
	assert_string_equal(out, "");
	assert_int_equal(mount_helper_filter_options("abc", out, 0), ERANGE);
}

static void test_wanted(void **state)
{
	char *helper[] = {"/sbin/mount.objfs", "s3://b", "/mnt/x", NULL};
	char *fuse_form[] = {"objfs", "s3://b/p", "/mnt/x", "-o", "rw", NULL};
	char *subcommand[] = {"objfs", "mount", "s3://b", "/mnt/x", NULL};
	char *status[] = {"/usr/bin/objfs", "status", "/mnt/x", NULL};
	char *option_first[] = {"objfs", "--endpoint=http://x", "y", NULL};
	char *too_short[] = {"objfs", "s3://b", NULL};

	(void)state;
	assert_true(mount_helper_wanted(3, helper));
	assert_true(mount_helper_wanted(1, helper)); /* mount.objfs alone: its own usage error */
	assert_true(mount_helper_wanted(5, fuse_form));
	assert_false(mount_helper_wanted(4, subcommand));
	assert_false(mount_helper_wanted(3, status));
	assert_false(mount_helper_wanted(3, option_first));
	assert_false(mount_helper_wanted(2, too_short));
	assert_false(mount_helper_wanted(0, helper));
}

static void test_parse_mount8_form(void **state)
{
	/* mount(8): "mount.objfs SOURCE DIR -f -v -o OPTS" (flags after the positionals) */
	char *argv[] = {"mount.objfs", "s3://b/p", "/mnt/x", "-f", "-v", "-o", "rw,_netdev", NULL};
	struct mount_helper_args a;
	char err[256] = "";

	(void)state;
	assert_int_equal(mount_helper_parse_args(7, argv, &a, err, sizeof(err)), 0);
	assert_string_equal(a.source, "s3://b/p");
	assert_string_equal(a.mountpoint, "/mnt/x");
	assert_true(a.fake);
	assert_true(a.verbose);
	assert_false(a.sloppy);
	assert_false(a.no_mtab);
	assert_null(a.ns);
	assert_string_equal(a.opts, "rw,_netdev");
}

static void test_parse_grouped_and_joined(void **state)
{
	char *argv[] = {"mount.objfs", "-snv", "-oro", "-t", "objfs", "s3://b", "-o",
			"allow_other", "-N", "1234", "/mnt/y", "-o", "", NULL};
	struct mount_helper_args a;
	char err[256] = "";

	(void)state;
	assert_int_equal(mount_helper_parse_args(13, argv, &a, err, sizeof(err)), 0);
	assert_true(a.sloppy && a.no_mtab && a.verbose);
	assert_false(a.fake);
	assert_string_equal(a.opts, "ro,allow_other"); /* several -o join; an empty one adds nothing */
	assert_string_equal(a.ns, "1234");
	assert_string_equal(a.source, "s3://b");
	assert_string_equal(a.mountpoint, "/mnt/y");
}

static void test_parse_errors(void **state)
{
	char *missing_dir[] = {"mount.objfs", "s3://b", "-o", "rw", NULL};
	char *three[] = {"mount.objfs", "s3://b", "/mnt/x", "extra", NULL};
	char *bad_flag[] = {"mount.objfs", "s3://b", "/mnt/x", "-x", NULL};
	char *no_value[] = {"mount.objfs", "s3://b", "/mnt/x", "-o", NULL};
	char *bad_type[] = {"mount.objfs", "-t", "ext4", "s3://b", "/mnt/x", NULL};
	char *dashdash[] = {"mount.objfs", "--", "-odd-source", "/mnt/x", NULL};
	struct mount_helper_args a;
	char err[256];

	(void)state;
	err[0] = '\0';
	assert_int_equal(mount_helper_parse_args(4, missing_dir, &a, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "missing the mount point"));
	assert_int_equal(mount_helper_parse_args(4, three, &a, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'extra'"));
	assert_int_equal(mount_helper_parse_args(4, bad_flag, &a, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'-x'"));
	assert_int_equal(mount_helper_parse_args(4, no_value, &a, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'-o' needs a value"));
	assert_int_equal(mount_helper_parse_args(5, bad_type, &a, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'ext4'"));
	assert_int_equal(mount_helper_parse_args(4, dashdash, &a, err, sizeof(err)), 0);
	assert_string_equal(a.source, "-odd-source");
}

static void test_parse_too_long(void **state)
{
	size_t n = sizeof(((struct mount_helper_args *)0)->opts);
	char *big = malloc(n + 1);
	char *argv[] = {"mount.objfs", "s3://b", "/mnt/x", "-o", big, NULL};
	struct mount_helper_args a;
	char err[256];

	(void)state;
	assert_non_null(big);
	memset(big, 'a', n);
	big[n] = '\0';
	assert_int_equal(mount_helper_parse_args(5, argv, &a, err, sizeof(err)), E2BIG);
	big[n - 1] = '\0'; /* n - 1 characters fit with the NUL */
	assert_int_equal(mount_helper_parse_args(5, argv, &a, err, sizeof(err)), 0);
	free(big);
}

/* The whole helper with -f: parse, filter, set, validate; never mounts. */
static void test_main_fake(void **state)
{
	char *ok[] = {"/sbin/mount.objfs", "s3://bucket/p", "/mnt/objfs-ops-unit", "-f", "-o",
		      "rw,nodev,nosuid,_netdev,nofail,x-systemd.automount,comment=x,allow_other,"
		      "endpoint=http://127.0.0.1:1,cache_dir=/tmp/objfs-ops-unit,mount_wait=10",
		      NULL};
	char *unknown[] = {"/sbin/mount.objfs", "s3://bucket", "/mnt/x", "-f", "-o",
			   "_netdev,no_such_option=1", NULL};
	char *sloppy[] = {"/sbin/mount.objfs", "s3://bucket", "/mnt/x", "-sf", "-o",
			  "_netdev,no_such_option=1", NULL};
	char *sloppy_bad_value[] = {"/sbin/mount.objfs", "s3://bucket", "/mnt/x", "-sf", "-o",
				    "cache_size=lots", NULL};
	char *bad_source[] = {"/sbin/mount.objfs", "bucket", "/mnt/x", "-f", NULL};
	char *usage[] = {"/sbin/mount.objfs", NULL};

	(void)state;
	/* mount(8) gives no PATH and no HOME: the helper sets them */
	unsetenv("PATH");
	unsetenv("HOME");
	assert_int_equal(mount_helper_main(6, ok), 0);
	assert_non_null(getenv("PATH"));
	assert_non_null(strstr(getenv("PATH"), "/usr/bin"));
	assert_non_null(getenv("HOME"));
	assert_true(getenv("HOME")[0] == '/');
	/* an option objfs does not know fails the mount, unless -s (sloppy) */
	assert_int_equal(mount_helper_main(6, unknown), MOUNT_HELPER_EX_USAGE);
	assert_int_equal(mount_helper_main(6, sloppy), 0);
	/* -s skips unknown keys only, never a bad value for a known one */
	assert_int_equal(mount_helper_main(6, sloppy_bad_value), MOUNT_HELPER_EX_USAGE);
	assert_int_equal(mount_helper_main(4, bad_source), MOUNT_HELPER_EX_USAGE);
	assert_int_equal(mount_helper_main(1, usage), MOUNT_HELPER_EX_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filter_table),
		cmocka_unit_test(test_filter_null_and_small_buffer),
		cmocka_unit_test(test_wanted),
		cmocka_unit_test(test_parse_mount8_form),
		cmocka_unit_test(test_parse_grouped_and_joined),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_too_long),
		cmocka_unit_test(test_main_fake),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
