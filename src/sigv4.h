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

/* Headers with the same name (any case) are signed as one, their values joined with ','
 * in the order given. */
struct sigv4_header {
	const char *name;  /* any case; canonicalised to lower case */
	const char *value; /* trimmed; inner runs of SP, HT, CR, LF folded to one SP */
};

struct sigv4_request {
	const char *method;
	const char *path;  /* URI-encoded path as sent, e.g. "/bucket/a%20b" */
	/* Encoded query as sent, without '?', may be NULL or "". Canonicalised: split on '&'
	 * (empty parts dropped), each name and value percent-decoded ('+' stays '+') and encoded
	 * again with sigv4_uri_encode(keep_slash=false), sorted by name then value; "a" -> "a=". */
	const char *query;
	const struct sigv4_header *headers; /* every header to sign; must include host and x-amz-date */
	size_t n_headers;
	const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
	/* S3 signs the path as sent (NULL or "" signs as "/"); other services normalise it
	 * (RFC 3986 remove_dot_segments, no empty segments, a trailing '/' kept) and URI-encode
	 * each segment once more, so "/a%20b" signs as "/a%2520b" and a raw "/a b" as "/a%20b".
	 * false for S3. */
	bool normalize_and_double_encode_path;
};

struct sigv4_credentials {
	const char *access_key;
	const char *secret_key;
	/* NULL or "" when none. sigv4 does not add it: the caller puts x-amz-security-token among
	 * the headers, and sigv4_authorization refuses (EINVAL) a token whose header is missing. */
	const char *session_token;
};

/* Canonical request (Task 1). Returns a malloc'd string or NULL (errno ENOMEM). */
char *sigv4_canonical_request(const struct sigv4_request *req);
/* String to sign (Task 2) for amz_date "YYYYMMDDTHHMMSSZ". malloc'd, or NULL with errno
 * ENOMEM or EINVAL (amz_date not of that form). */
char *sigv4_string_to_sign(const struct sigv4_request *req, const char *amz_date, const char *region,
			   const char *service);
/* Authorization header value, "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=hex". malloc'd, or NULL with errno ENOMEM or EINVAL (bad
 * amz_date, or a session token without its x-amz-security-token header). */
char *sigv4_authorization(const struct sigv4_request *req, const struct sigv4_credentials *creds,
			  const char *amz_date, const char *region, const char *service);

/*
 * URI-encode per SigV4 rules: unreserved A-Z a-z 0-9 - _ . ~ kept, everything else %XX
 * (upper-case hex), '/' kept when keep_slash. Returns malloc'd string or NULL.
 */
char *sigv4_uri_encode(const char *s, bool keep_slash);
/* Format t (seconds since the epoch, e.g. time(NULL)) as amz date "YYYYMMDDTHHMMSSZ" into
 * out[17]. */
void sigv4_amz_date(long t, char out[17]);

#endif
