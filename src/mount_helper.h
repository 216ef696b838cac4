/*
 * mount_helper.h - objfs as a mount(8) helper: "mount -t objfs" runs
 * "mount.objfs SOURCE DIR [-sfnv] [-o OPTS]" and "mount -t fuse.objfs" runs (through
 * mount.fuse3) "objfs SOURCE DIR -o OPTS". Both arrive here: the words mount(8), fstab and
 * systemd add for themselves are filtered out, the rest become a struct objfs_opts, and
 * mount_main() does the mount.
 *
 * Threads: main thread only, before any other thread exists (it may setenv()).
 */
#ifndef OBJFS_MOUNT_HELPER_H
#define OBJFS_MOUNT_HELPER_H

#include <stdbool.h>
#include <stddef.h>

/* Exit codes mount(8) documents for its helpers. */
enum {
	MOUNT_HELPER_EX_USAGE = 1,   /* bad invocation or options */
	MOUNT_HELPER_EX_SYSERR = 2,  /* out of memory, cannot set up the environment */
	MOUNT_HELPER_EX_FAIL = 32,   /* the mount itself failed */
};

/* The command line of a helper call, as parsed. Strings point into argv or into opts. */
struct mount_helper_args {
	const char *source;     /* s3://bucket[/prefix] */
	const char *mountpoint;
	char opts[4096];        /* every -o joined with ',' (unfiltered) */
	bool sloppy;            /* -s: skip options objfs does not know, with a warning */
	bool fake;              /* -f: do everything but the mount (mount(8)'s "fake") */
	bool no_mtab;           /* -n: nothing to do, objfs writes no mtab */
	bool verbose;           /* -v: log_level=info unless -o log_level= says otherwise */
	const char *ns;         /* -N NS: mount in this mount namespace (pid or path); NULL */
};

/*
 * True when argv is a helper call: the program was run as "mount.objfs" (any argv[0] whose
 * base name starts with "mount."), or argv[1] is a source URL ("scheme://...") rather than
 * a subcommand, which is how mount.fuse3 runs "objfs SOURCE DIR -o OPTS".
 */
bool mount_helper_wanted(int argc, char *const argv[]);

/*
 * Parse "SOURCE DIR [-sfnv] [-N NS] [-t TYPE] [-o OPTS]..." (flags may come anywhere and
 * may be grouped, "-oOPTS" is accepted, "--" ends the flags). Does not touch argv.
 * Returns 0, or EINVAL with one line in err (usage errors), E2BIG when the options do not
 * fit in args->opts.
 */
int mount_helper_parse_args(int argc, char *const argv[], struct mount_helper_args *args,
			    char *err, size_t errlen);

/*
 * Copy the comma-separated mount options in to out, leaving out what is meant for mount(8),
 * fstab, systemd or the kernel's generic mount flags rather than for objfs: _netdev, nofail,
 * auto, noauto, user, user=NAME, users, nouser, owner, group, defaults, rw, async,
 * dev, nodev, suid, nosuid, exec, noexec, the atime family (atime, noatime, relatime,
 * strictatime, lazytime, diratime and their no- forms), comment=..., and every x-...
 * (x-systemd.*, x-mount.*). "ro" stays when it is the last of ro/rw; empty items are dropped.
 * Everything else is copied unchanged and in order.
 * in may be NULL (same as ""). Returns 0, or ERANGE when out (outlen bytes, always NUL
 * terminated when outlen > 0) is too small.
 */
int mount_helper_filter_options(const char *in, char *out, size_t outlen);

/*
 * The helper's whole job: sanitise the environment (mount(8) passes no PATH or HOME),
 * parse, filter, build the options (opts_defaults + the filtered list), validate, and call
 * mount_main(). Returns the process exit code: 0, or MOUNT_HELPER_EX_* / mount_main()'s.
 */
int mount_helper_main(int argc, char **argv);

#endif
