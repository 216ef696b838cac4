/*
 * store.c - what every store shares: attribute and listing helpers, the calling thread's
 * last error, and the ONE table from an HTTP status and S3 error code to an errno.
 *
 * Locking: none. The last error is thread-local; everything else works on the caller's
 * objects.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

void store_attr_init(struct store_attr *a)
{
	memset(a, 0, sizeof(*a));
}

void store_attr_free(struct store_attr *a)
{
	for (size_t i = 0; i < a->n_extra; i++) {
		free(a->extra[i].name);
		free(a->extra[i].value);
	}
	free(a->extra);
	a->extra = NULL;
	a->n_extra = 0;
}

int store_attr_copy(struct store_attr *dst, const struct store_attr *src)
{
	struct store_attr tmp = *src;

	tmp.extra = NULL;
	tmp.n_extra = 0;
	if (src->n_extra) {
		tmp.extra = calloc(src->n_extra, sizeof(*tmp.extra));
		if (!tmp.extra)
			return ENOMEM;
		for (size_t i = 0; i < src->n_extra; i++) {
			tmp.n_extra = i + 1;
			tmp.extra[i].name = strdup(src->extra[i].name);
			tmp.extra[i].value = strdup(src->extra[i].value);
			if (!tmp.extra[i].name || !tmp.extra[i].value) {
				store_attr_free(&tmp);
				return ENOMEM;
			}
		}
	}
	*dst = tmp;
	return 0;
}

bool store_key_is_utf8(const char *key)
{
	const unsigned char *p = (const unsigned char *)key;

	while (*p) {
		unsigned c = *p, n;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false; /* a continuation byte, an overlong lead (c0, c1) or past f4 */
		}
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false; /* also stops at the NUL */
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

bool store_key_fits(const struct store *st, const char *key)
{
	return !st->ops->utf8_keys || store_key_is_utf8(key);
}

uint64_t store_iov_len(const struct iovec *iov, int n)
{
	uint64_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

void store_list_free(struct store_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n_entries; i++) {
		free(l->entries[i].key);
		store_attr_free(&l->entries[i].attr);
	}
	free(l->entries);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

/* ---- the calling thread's last error ---- */

static __thread struct store_error store_error_last;

const struct store_error *store_last_error(void)
{
	return &store_error_last;
}

void store_set_error(int err, long http_status, const char *code, const char *message)
{
	struct store_error *e = &store_error_last;

	e->err = err;
	e->http_status = http_status;
	snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
	snprintf(e->message, sizeof(e->message), "%s", message ? message : "");
}

void store_format_error(char *buf, size_t len)
{
	const struct store_error *e = &store_error_last;

	if (e->code[0] && e->http_status && e->message[0])
		snprintf(buf, len, "%s (%ld): %s", e->code, e->http_status, e->message);
	else if (e->code[0] && e->http_status)
		snprintf(buf, len, "%s (%ld)", e->code, e->http_status);
	else if (e->code[0])
		snprintf(buf, len, "%s: %s", e->code, e->message[0] ? e->message : strerror(e->err));
	else if (e->http_status && e->message[0])
		snprintf(buf, len, "HTTP %ld: %s", e->http_status, e->message);
	else if (e->http_status)
		snprintf(buf, len, "HTTP %ld: %s", e->http_status, strerror(e->err));
	else if (e->message[0])
		snprintf(buf, len, "%s", e->message);
	else
		snprintf(buf, len, "%s", strerror(e->err ? e->err : EIO));
}

/* ---- HTTP status + S3 error code -> errno ----
 *
 * Order of the rules:
 *  1. 404 is ENOENT, whatever the code (NoSuchKey, NoSuchBucket, NoSuchUpload...).
 *  2. Any 5xx is EIO (501 NotImplemented: EOPNOTSUPP): the server failed, retries are
 *     spent, the object is NOT known to be absent.
 *  3. An S3 error code we know decides (this also covers 200-with-<Error> bodies of
 *     CopyObject and CompleteMultipartUpload). No code in this table is ENOENT.
 *  4. Otherwise the status decides; an unknown status is EIO.
 */
static const struct {
	const char *code;
	int err;
} store_code_errno[] = {
	{"AccessDenied", EACCES},
	{"AccountProblem", EACCES},
	{"AllAccessDisabled", EACCES},
	{"AuthorizationHeaderMalformed", EACCES},
	{"ExpiredToken", EACCES},
	{"InvalidAccessKeyId", EACCES},
	{"InvalidToken", EACCES},
	{"RequestTimeTooSkewed", EACCES},
	{"SignatureDoesNotMatch", EACCES},
	{"InvalidObjectState", EACCES},
	{"BadDigest", EBADMSG},
	{"InvalidDigest", EBADMSG},
	{"XAmzContentSHA256Mismatch", EBADMSG},
	{"EntityTooLarge", EFBIG},
	{"EntityTooSmall", EINVAL},
	{"InvalidArgument", EINVAL},
	{"InvalidBucketName", EINVAL},
	{"InvalidPart", EINVAL},
	{"InvalidPartOrder", EINVAL},
	{"InvalidRequest", EINVAL},
	{"MissingContentLength", EINVAL},
	{"IncompleteBody", EIO},
	{"MalformedXML", EPROTO},
	{"KeyTooLongError", ENAMETOOLONG},
	{"MetadataTooLarge", E2BIG},
	{"InvalidRange", ERANGE},
	{"PreconditionFailed", ESTALE},
	{"BucketNotEmpty", ENOTEMPTY},
	{"BucketAlreadyExists", EEXIST},
	{"BucketAlreadyOwnedByYou", EEXIST},
	{"MethodNotAllowed", EOPNOTSUPP},
	{"NotImplemented", EOPNOTSUPP},
	{"OperationAborted", EAGAIN},
	{"RequestTimeout", ETIMEDOUT},
	{"QuotaExceeded", EDQUOT},
	{"InternalError", EIO},
	{"ServiceUnavailable", EIO},
	{"SlowDown", EIO},
	{"PermanentRedirect", EIO},
	{"TemporaryRedirect", EIO},
	{"Redirect", EIO},
};

int store_http_errno(long status, const char *code)
{
	if (status == 404)
		return ENOENT;
	if (status >= 500 && status <= 599)
		return status == 501 ? EOPNOTSUPP : EIO;
	if (status >= 200 && status <= 299 && (!code || !code[0]))
		return 0;
	if (code && code[0]) {
		for (size_t i = 0; i < sizeof(store_code_errno) / sizeof(store_code_errno[0]); i++)
			if (strcmp(code, store_code_errno[i].code) == 0)
				return store_code_errno[i].err;
	}
	switch (status) {
	case 400:
	case 411:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 405:
		return EOPNOTSUPP;
	case 409:
		return EBUSY;
	case 412:
		return ESTALE;
	case 413:
		return EFBIG;
	case 416:
		return ERANGE;
	case 429:
		return EAGAIN;
	default:
		return EIO; /* 1xx/3xx, an error code in a 2xx body, unknown statuses, 0 */
	}
}
