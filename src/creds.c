/*
 * creds.c - credential sources (see creds.h for the order and the rules). Owns nothing
 * shared: every call reads its sources afresh into the caller's struct.
 *
 * Locking: none. Secrets are wiped before their memory is freed.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "creds.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static void creds_wipe_free(char *s)
{
	if (s) {
		volatile char *p = s;
		while (*p)
			*p++ = 0;
		free(s);
	}
}

void creds_free(struct creds *c)
{
	if (!c)
		return;
	creds_wipe_free(c->access_key);
	creds_wipe_free(c->secret_key);
	creds_wipe_free(c->session_token);
	c->access_key = c->secret_key = c->session_token = NULL;
}

static int creds_set(struct creds *c, const char *ak, const char *sk, const char *token)
{
	creds_free(c);
	c->access_key = strdup(ak);
	c->secret_key = strdup(sk);
	c->session_token = token && token[0] ? strdup(token) : NULL;
	if (!c->access_key || !c->secret_key || (token && token[0] && !c->session_token)) {
		creds_free(c);
		return ENOMEM;
	}
	return 0;
}

static char *creds_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * Open path for reading and check that it is a regular file owned by owner and without
 * any group/other permission. Returns a FILE or NULL with err filled and *rv set (ENOENT
 * when it does not exist, EACCES otherwise).
 */
static FILE *creds_open_private(const char *path, uid_t owner, const char *what, int *rv,
				char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	FILE *f;

	if (fd < 0) {
		*rv = errno == ENOENT ? ENOENT : EACCES;
		snprintf(err, errlen, "cannot open %s '%s': %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s '%s' is not a regular file", what, path);
		goto refuse;
	}
	if (st.st_uid != owner) {
		snprintf(err, errlen, "%s '%s' is not owned by uid %u; refusing to use it (chown it)",
			 what, path, (unsigned)owner);
		goto refuse;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "%s '%s' is accessible by group or others (mode %03o); refusing to use it "
			 "(chmod 600 '%s')",
			 what, path, (unsigned)(st.st_mode & 0777), path);
		goto refuse;
	}
	f = fdopen(fd, "r");
	if (!f) {
		*rv = ENOMEM;
		snprintf(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
		close(fd);
	}
	return f;
refuse:
	*rv = EACCES;
	close(fd);
	return NULL;
}

/* s3fs passwd file: "AK:SK" or "bucket:AK:SK" lines. */
static int creds_from_passwd_file(const char *path, const char *bucket, struct creds *out,
				  char *err, size_t errlen)
{
	char line[1024];
	char *def_ak = NULL, *def_sk = NULL;
	bool found = false;
	unsigned lineno = 0;
	int rv = 0;
	FILE *f = creds_open_private(path, geteuid(), "passwd file", &rv, err, errlen);

	if (!f)
		return rv;
	while (fgets(line, sizeof(line), f)) {
		char *s = creds_trim(line), *f1, *f2, *f3;
		lineno++;
		if (!*s || *s == '#')
			continue;
		f1 = s;
		f2 = strchr(f1, ':');
		if (!f2) {
			snprintf(err, errlen,
				 "passwd file '%s' line %u: expected AK:SK or bucket:AK:SK", path,
				 lineno);
			rv = EINVAL;
			goto out;
		}
		*f2++ = '\0';
		f3 = strchr(f2, ':');
		if (f3) {
			*f3++ = '\0';
			if (!*f1 || !*f2 || !*f3 || strchr(f3, ':')) {
				snprintf(err, errlen,
					 "passwd file '%s' line %u: expected AK:SK or bucket:AK:SK",
					 path, lineno);
				rv = EINVAL;
				goto out;
			}
			if (bucket && strcmp(f1, bucket) == 0) {
				rv = creds_set(out, f2, f3, NULL);
				found = true;
				goto out;
			}
		} else if (!def_ak) {
			if (!*f1 || !*f2) {
				snprintf(err, errlen, "passwd file '%s' line %u: empty key", path,
					 lineno);
				rv = EINVAL;
				goto out;
			}
			def_ak = strdup(f1);
			def_sk = strdup(f2);
			if (!def_ak || !def_sk) {
				rv = ENOMEM;
				goto out;
			}
		}
	}
	if (def_ak) {
		rv = creds_set(out, def_ak, def_sk, NULL);
		found = true;
	}
out:
	creds_wipe_free(def_ak);
	creds_wipe_free(def_sk);
	{
		volatile char *p = line;
		for (size_t i = 0; i < sizeof(line); i++)
			p[i] = 0;
	}
	fclose(f);
	if (rv == 0 && !found) {
		snprintf(err, errlen, "passwd file '%s' has no AK:SK line%s%s%s", path,
			 bucket ? " nor a line for bucket '" : "", bucket ? bucket : "",
			 bucket ? "'" : "");
		rv = EINVAL;
	}
	if (rv == 0)
		snprintf(out->source, sizeof(out->source), "passwd file '%s'", path);
	return rv;
}

/*
 * AWS shared credentials file (INI). Returns 0 with out filled, ENOENT when the file or
 * the section is absent (err says which), EINVAL when the section lacks a key.
 */
static int creds_from_ini(FILE *f, const char *path, const char *section, struct creds *out,
			  char *err, size_t errlen)
{
	char line[2048];
	char *ak = NULL, *sk = NULL, *tok = NULL;
	bool in = false, seen = false;
	int rv = 0;

	while (fgets(line, sizeof(line), f)) {
		char *s = creds_trim(line), *eq, *k, *v, **dst = NULL;
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (e)
				*e = '\0';
			k = creds_trim(s + 1);
			/* ~/.aws/config style "[profile x]" is accepted too */
			if (strncmp(k, "profile ", 8) == 0)
				k = creds_trim(k + 8);
			in = strcmp(k, section) == 0;
			seen = seen || in;
			continue;
		}
		if (!in || !(eq = strchr(s, '=')))
			continue;
		*eq = '\0';
		k = creds_trim(s);
		v = creds_trim(eq + 1);
		if (strcasecmp(k, "aws_access_key_id") == 0)
			dst = &ak;
		else if (strcasecmp(k, "aws_secret_access_key") == 0)
			dst = &sk;
		else if (strcasecmp(k, "aws_session_token") == 0 ||
			 strcasecmp(k, "aws_security_token") == 0)
			dst = &tok;
		if (dst) {
			creds_wipe_free(*dst);
			if (!(*dst = strdup(v))) {
				rv = ENOMEM;
				goto out;
			}
		}
	}
	if (!seen) {
		snprintf(err, errlen, "no section [%s] in '%s'", section, path);
		rv = ENOENT;
	} else if (!ak || !sk || !*ak || !*sk) {
		snprintf(err, errlen,
			 "section [%s] of '%s' lacks aws_access_key_id or aws_secret_access_key",
			 section, path);
		rv = EINVAL;
	} else {
		rv = creds_set(out, ak, sk, tok);
		if (rv == 0)
			snprintf(out->source, sizeof(out->source), "'%s' [%s]", path, section);
	}
out:
	creds_wipe_free(ak);
	creds_wipe_free(sk);
	creds_wipe_free(tok);
	{
		volatile char *p = line;
		for (size_t i = 0; i < sizeof(line); i++)
			p[i] = 0;
	}
	return rv;
}

static int creds_from_shared_file(const char *section, struct creds *out, char *path,
				  size_t pathlen, char *err, size_t errlen)
{
	const char *env = getenv("AWS_SHARED_CREDENTIALS_FILE");
	FILE *f;
	int rv;

	if (env && *env) {
		snprintf(path, pathlen, "%s", env);
	} else {
		const char *home = getenv("HOME");
		if (!home || !*home) {
			struct passwd *pw = getpwuid(geteuid());
			home = pw ? pw->pw_dir : NULL;
		}
		if (!home) {
			snprintf(path, pathlen, "~/.aws/credentials");
			snprintf(err, errlen, "no home directory to look for ~/.aws/credentials in");
			return ENOENT;
		}
		snprintf(path, pathlen, "%s/.aws/credentials", home);
	}
	f = fopen(path, "re");
	if (!f) {
		rv = errno == ENOENT ? ENOENT : EACCES;
		snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
		return rv;
	}
	rv = creds_from_ini(f, path, section, out, err, errlen);
	fclose(f);
	return rv;
}

static int creds_from_system_file(const char *section, struct creds *out, char *err,
				  size_t errlen)
{
	const char *path = SYSCONFDIR "/objfs/credentials";
	int rv = 0;
	FILE *f = creds_open_private(path, 0, "credentials file", &rv, err, errlen);

	if (!f)
		return rv;
	rv = creds_from_ini(f, path, section, out, err, errlen);
	fclose(f);
	return rv;
}

int creds_resolve(const char *passwd_file, const char *profile, const char *bucket,
		  struct creds *out, char *err, size_t errlen)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *section = profile;
	char path[1024];
	int rv;

	memset(out, 0, sizeof(*out));
	if (passwd_file)
		return creds_from_passwd_file(passwd_file, bucket, out, err, errlen);

	if (!profile && ((ak && *ak) || (sk && *sk))) {
		if (!ak || !*ak || !sk || !*sk) {
			snprintf(err, errlen, "%s is set but %s is not; set both or neither",
				 ak && *ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
				 ak && *ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
			return EINVAL;
		}
		rv = creds_set(out, ak, sk, getenv("AWS_SESSION_TOKEN"));
		if (rv == 0)
			snprintf(out->source, sizeof(out->source), "the environment");
		return rv;
	}

	if (!section) {
		const char *env = getenv("AWS_PROFILE");
		section = env && *env ? env : "default";
	}
	rv = creds_from_shared_file(section, out, path, sizeof(path), err, errlen);
	if (rv != ENOENT)
		return rv;
	if (geteuid() == 0) {
		char err2[512];
		rv = creds_from_system_file(section, out, err2, sizeof(err2));
		if (rv != ENOENT) {
			snprintf(err, errlen, "%s", err2);
			return rv;
		}
	}
	if (profile)
		snprintf(err, errlen, "profile '%s' not found in '%s'%s", profile, path,
			 geteuid() == 0 ? " nor in " SYSCONFDIR "/objfs/credentials" : "");
	else
		snprintf(err, errlen,
			 "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, add a [%s] "
			 "section to '%s', or give passwd_file=",
			 section, path);
	return ENOENT;
}
