/*
 * mount_helper.c - objfs as a mount(8) helper (mount.objfs, and "objfs SOURCE DIR -o OPTS"
 * as mount.fuse3 runs it for "-t fuse.objfs"): the argument conventions, the filtering of
 * the words meant for mount(8)/fstab/systemd, a sane environment, then mount_main().
 *
 * mount(8) runs helpers with almost no environment (no PATH, no HOME), options it, systemd
 * and the fstab add for themselves ("rw", "_netdev", "nofail", "x-systemd.*", ...), and
 * flags of its own: -s sloppy, -f fake, -n no mtab, -v verbose, -N namespace, -t type.
 *
 * Locking: none; runs on the main thread before any other thread exists.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mount.h"
#include "mount_helper.h"
#include "opts.h"

static const char mount_helper_path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* Words that are exactly one of these are for someone else. */
static const char *const mount_helper_drop_words[] = {
	"_netdev", "nofail", "auto", "noauto", "user", "users", "nouser", "owner", "group",
	"defaults", "rw", "async", "dev", "nodev", "suid", "nosuid", "exec", "noexec",
	"atime", "noatime", "relatime", "norelatime", "strictatime", "nostrictatime",
	"lazytime", "nolazytime", "diratime", "nodiratime",
};

/* Words that start with one of these are for someone else. */
static const char *const mount_helper_drop_prefixes[] = {
	"x-",       /* x-systemd.*, x-mount.*, x-gvfs-*: userspace options of other programs */
	"comment=", /* fstab comments (comment=systemd.automount...) */
	"user=",    /* libmount records the user of a "user" mount this way */
};

static bool mount_helper_is_word(const char *item, size_t len, const char *word)
{
	return strlen(word) == len && memcmp(item, word, len) == 0;
}

static bool mount_helper_dropped(const char *item, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(mount_helper_drop_words) / sizeof(mount_helper_drop_words[0]); i++)
		if (mount_helper_is_word(item, len, mount_helper_drop_words[i]))
			return true;
	for (i = 0; i < sizeof(mount_helper_drop_prefixes) / sizeof(mount_helper_drop_prefixes[0]);
	     i++) {
		size_t plen = strlen(mount_helper_drop_prefixes[i]);
		if (len >= plen && memcmp(item, mount_helper_drop_prefixes[i], plen) == 0)
			return true;
	}
	return false;
}

int mount_helper_filter_options(const char *in, char *out, size_t outlen)
{
	const char *p, *last_ro = NULL, *last_rw = NULL;
	size_t used = 0;
	int rv = 0;

	if (outlen)
		out[0] = '\0';
	if (!in)
		return 0;
	/* ro stays only when it is the last word of the ro/rw pair (mount(8): the last wins). */
	for (p = in; *p;) {
		size_t len = strcspn(p, ",");
		if (mount_helper_is_word(p, len, "ro"))
			last_ro = p;
		else if (mount_helper_is_word(p, len, "rw"))
			last_rw = p;
		p += len;
		if (*p == ',')
			p++;
	}
	for (p = in; *p;) {
		size_t len = strcspn(p, ",");
		bool keep = len > 0 && !mount_helper_dropped(p, len);

		if (keep && mount_helper_is_word(p, len, "ro"))
			keep = p == last_ro && (!last_rw || last_rw < last_ro);
		if (keep) {
			size_t need = len + (used ? 1 : 0);
			if (used + need + 1 > outlen) {
				rv = ERANGE;
				goto out;
			}
			if (used)
				out[used++] = ',';
			memcpy(out + used, p, len);
			used += len;
			out[used] = '\0';
		}
		p += len;
		if (*p == ',')
			p++;
	}
out:
	if (rv && outlen)
		out[0] = '\0';
	return rv;
}

bool mount_helper_wanted(int argc, char *const argv[])
{
	const char *base;

	if (argc < 1 || !argv[0])
		return false;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strncmp(base, "mount.", 6) == 0)
		return true;
	/* mount.fuse3 form: "objfs SOURCE DIR -o OPTS"; a subcommand never contains "://". */
	return argc >= 3 && argv[1][0] != '-' && strstr(argv[1], "://") != NULL;
}

/* Append one -o value to args->opts. */
static int mount_helper_add_opts(struct mount_helper_args *args, const char *value)
{
	size_t used = strlen(args->opts), len = strlen(value);

	if (len == 0)
		return 0;
	if (used + (used ? 1 : 0) + len + 1 > sizeof(args->opts))
		return E2BIG;
	if (used)
		args->opts[used++] = ',';
	memcpy(args->opts + used, value, len + 1);
	return 0;
}

int mount_helper_parse_args(int argc, char *const argv[], struct mount_helper_args *args,
			    char *err, size_t errlen)
{
	const char *positional[2];
	size_t n_positional = 0;
	bool flags_done = false;
	int i, rv;

	memset(args, 0, sizeof(*args));
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (flags_done || a[0] != '-' || a[1] == '\0') {
			if (n_positional == 2) {
				snprintf(err, errlen, "unexpected argument '%s': give SOURCE DIR "
					 "[-sfnv] [-o OPTIONS]", a);
				return EINVAL;
			}
			positional[n_positional++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			flags_done = true;
			continue;
		}
		/* A group of flags: "-sv", "-o OPTS", "-oOPTS", "-t TYPE", "-N NS". */
		for (const char *f = a + 1; *f; f++) {
			const char *value;

			switch (*f) {
			case 's': args->sloppy = true; continue;
			case 'f': args->fake = true; continue;
			case 'n': args->no_mtab = true; continue;
			case 'v': args->verbose = true; continue;
			case 'o':
			case 't':
			case 'N':
				break;
			default:
				snprintf(err, errlen, "unknown flag '-%c': mount.objfs takes SOURCE DIR "
					 "[-sfnv] [-N NS] [-o OPTIONS]", *f);
				return EINVAL;
			}
			if (f[1])
				value = f + 1;
			else if (i + 1 < argc)
				value = argv[++i];
			else {
				snprintf(err, errlen, "flag '-%c' needs a value", *f);
				return EINVAL;
			}
			if (*f == 'o') {
				rv = mount_helper_add_opts(args, value);
				if (rv) {
					snprintf(err, errlen, "the mount options are longer than %zu "
						 "bytes", sizeof(args->opts) - 1);
					return rv;
				}
			} else if (*f == 'N') {
				args->ns = value;
			} else if (strcmp(value, "objfs") != 0 && strcmp(value, "fuse.objfs") != 0) {
				snprintf(err, errlen, "file system type '%s' is not objfs", value);
				return EINVAL;
			}
			break; /* the value used the rest of this word */
		}
	}
	if (n_positional != 2) {
		snprintf(err, errlen, "%s: give SOURCE DIR [-sfnv] [-o OPTIONS], "
			 "e.g. s3://bucket/prefix /mnt/dir -o endpoint=https://...",
			 n_positional ? "missing the mount point" : "missing the source and mount point");
		return EINVAL;
	}
	args->source = positional[0];
	args->mountpoint = positional[1];
	return 0;
}

/* mount(8) runs helpers without PATH or HOME; the credential lookup needs HOME and
 * anything objfs starts needs PATH. Existing values are kept. */
static int mount_helper_sanitise_env(void)
{
	const char *path = getenv("PATH"), *home = getenv("HOME");

	if ((!path || !*path) && setenv("PATH", mount_helper_path, 1))
		return errno;
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		const char *dir = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir
				  : getuid() == 0			 ? "/root"
									 : "/";
		if (setenv("HOME", dir, 1))
			return errno;
	}
	return 0;
}

/* -N NS: enter the mount namespace of process NS, or the one bound at path NS. */
static int mount_helper_enter_ns(const char *ns, char *err, size_t errlen)
{
	char path[64];
	const char *p = ns;
	int fd, rv = 0;
	size_t i;

	for (i = 0; ns[i] && isdigit((unsigned char)ns[i]); i++)
		;
	if (i > 0 && ns[i] == '\0') {
		snprintf(path, sizeof(path), "/proc/%s/ns/mnt", ns);
		p = path;
	}
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = errno;
		snprintf(err, errlen, "cannot open mount namespace '%s': %s", p, strerror(rv));
		return rv;
	}
	if (setns(fd, CLONE_NEWNS)) {
		rv = errno;
		snprintf(err, errlen, "cannot enter mount namespace '%s': %s", p, strerror(rv));
	}
	close(fd);
	return rv;
}

/* True when key (up to '=' in item) is an option objfs knows. */
static bool mount_helper_known_key(const char *item)
{
	size_t len = strcspn(item, "=");
	const char *k;

	for (size_t i = 0; (k = opts_key_at(i)); i++)
		if (mount_helper_is_word(item, len, k))
			return true;
	return false;
}

/* Apply the filtered list; with sloppy, an unknown key is skipped with a warning. */
static int mount_helper_apply(struct objfs_opts *o, char *list, bool sloppy, char *err,
			      size_t errlen)
{
	char *save = NULL, *item;
	int rv;

	for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		rv = opts_set(o, item, err, errlen);
		if (rv == EINVAL && sloppy && !mount_helper_known_key(item)) {
			log_warn("%s; ignored (-s)", err);
			continue;
		}
		if (rv)
			return rv;
	}
	return 0;
}

int mount_helper_main(int argc, char **argv)
{
	const char *prog = "mount.objfs";
	struct mount_helper_args *args;
	struct objfs_opts o;
	char err[512], *filtered = NULL;
	int rv, ex = MOUNT_HELPER_EX_USAGE;

	opts_defaults(&o);
	log_init(prog, LOG_LEVEL_WARN, false);
	args = malloc(sizeof(*args));
	filtered = malloc(sizeof(args->opts));
	if (!args || !filtered) {
		log_error("out of memory");
		ex = MOUNT_HELPER_EX_SYSERR;
		goto out;
	}
	if (mount_helper_sanitise_env()) {
		log_error("cannot set PATH and HOME: %s", strerror(errno));
		ex = MOUNT_HELPER_EX_SYSERR;
		goto out;
	}
	if (mount_helper_parse_args(argc, argv, args, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	/* Cannot fail: the filtered list is never longer than the one it came from. */
	mount_helper_filter_options(args->opts, filtered, sizeof(args->opts));
	if (args->verbose)
		o.log_level = LOG_LEVEL_INFO;
	o.source = strdup(args->source);
	o.mountpoint = strdup(args->mountpoint);
	if (!o.source || !o.mountpoint) {
		log_error("out of memory");
		ex = MOUNT_HELPER_EX_SYSERR;
		goto out;
	}
	rv = mount_helper_apply(&o, filtered, args->sloppy, err, sizeof(err));
	if (rv == 0)
		rv = opts_validate(&o, err, sizeof(err));
	if (rv) {
		log_error("%s", rv == ENOMEM ? "out of memory" : err);
		ex = rv == ENOMEM ? MOUNT_HELPER_EX_SYSERR : MOUNT_HELPER_EX_USAGE;
		goto out;
	}
	log_init(prog, o.log_level, false);
	if (args->fake) {
		log_info("-f given: options are valid, not mounting '%s' on '%s'", o.source,
			 o.mountpoint);
		ex = 0;
		goto out;
	}
	if (args->ns && mount_helper_enter_ns(args->ns, err, sizeof(err))) {
		log_error("%s", err);
		ex = MOUNT_HELPER_EX_SYSERR;
		goto out;
	}
	/* mount_main() has said what failed; to mount(8) every failure is "mount failed". */
	ex = mount_main(&o) == 0 ? 0 : MOUNT_HELPER_EX_FAIL;
out:
	opts_free(&o);
	free(filtered);
	free(args);
	return ex;
}
