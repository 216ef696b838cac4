/*
 * sigv4.h - AWS Signature Version 4, pure (no I/O, no clock, no globals).
 *
 * The caller gives the request exactly as it will be sent (method, the encoded path, the
 * encoded query string, the headers it will send) and the time; sigv4 builds the canonical
 * request, the string to sign and the Authorization header value. Callable from any thread.
 */
#ifndef OBJFS_SIGV4_H
#define OBJFS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

struct sigv4_header {
	const char *name;  /* any case; canonicalised to lower case */
	const char *value; /* trimmed, inner runs of spaces folded to one */
};

struct sigv4_request {
	const char *method;
	const char *path;  /* URI-encoded path as sent, e.g. "/bucket/a%20b" */
	const char *query; /* encoded query as sent, without '?', may be NULL or "" */
	const struct sigv4_header *headers; /* every header to sign; must include host and x-amz-date */
	size_t n_headers;
	const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
	/* S3 signs the path as sent; other services normalise it (RFC 3986 remove_dot_segments,
	 * no empty segments) and encode it a second time. false for S3. */
	bool normalize_and_double_encode_path;
};

struct sigv4_credentials {
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* NULL when none; the caller adds x-amz-security-token */
};

/* Canonical request (Task 1). Returns a malloc'd string or NULL on ENOMEM. */
char *sigv4_canonical_request(const struct sigv4_request *req);
/* String to sign (Task 2) for amz_date "YYYYMMDDTHHMMSSZ". malloc'd or NULL. */
char *sigv4_string_to_sign(const struct sigv4_request *req, const char *amz_date, const char *region,
			   const char *service);
/* Authorization header value. malloc'd or NULL. */
char *sigv4_authorization(const struct sigv4_request *req, const struct sigv4_credentials *creds,
			  const char *amz_date, const char *region, const char *service);

/*
 * URI-encode per SigV4 rules: unreserved A-Z a-z 0-9 - _ . ~ kept, everything else %XX
 * (upper-case hex), '/' kept when keep_slash. Returns malloc'd string or NULL.
 */
char *sigv4_uri_encode(const char *s, bool keep_slash);
/* Format now (or t) as amz date "YYYYMMDDTHHMMSSZ" into out[17]. */
void sigv4_amz_date(long t, char out[17]);

#endif
