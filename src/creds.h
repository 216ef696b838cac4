/*
 * creds.h - where objfs finds credentials. Secrets never come from the command line and
 * are never logged; only the access key id and the source's name may appear in messages.
 *
 * Order (first that yields a key pair wins):
 *   1. passwd_file=F: s3fs format, lines "AK:SK" or "bucket:AK:SK" ('#' comments); a line
 *      naming the bucket wins over a bare "AK:SK" line. The file must be owned by the
 *      calling user and not readable or writable by group or others (mode & 077 == 0).
 *   2. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) in the environment
 *      (skipped when a profile is named explicitly with profile=).
 *   3. $AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, section [profile=], else
 *      [$AWS_PROFILE], else [default]: aws_access_key_id, aws_secret_access_key,
 *      aws_session_token.
 *   4. As root only: SYSCONFDIR/objfs/credentials (same format as 3, same section rules),
 *      which must be owned by root and not group/world accessible.
 *
 * Callable from any thread (no globals); reads files and the environment.
 */
#ifndef OBJFS_CREDS_H
#define OBJFS_CREDS_H

#include <stddef.h>

struct creds {
	char *access_key;
	char *secret_key;
	char *session_token; /* NULL when none */
	char source[320];    /* for messages: "environment", "passwd file '/x'", ... */
};

/*
 * Resolve credentials for bucket (may be NULL) with the optional passwd_file and profile.
 * Returns 0; ENOENT when no source has any (err says where it looked); EACCES when a file
 * is unsafe or unreadable; EINVAL when a file or the environment is malformed; ENOMEM.
 * err gets one lower-case line that says what to do.
 */
int creds_resolve(const char *passwd_file, const char *profile, const char *bucket,
		  struct creds *out, char *err, size_t errlen);
/* Wipe and free the secrets; safe on a zeroed struct. */
void creds_free(struct creds *c);

#endif
