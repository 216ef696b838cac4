/*
 * sigv4.c - AWS Signature Version 4: canonical request, string to sign, signing key and the
 * Authorization header value. Pure: no I/O, no clock, no globals, so no locks; any thread
 * may call it. Digests come from crypto.c.
 *
 * Strings are built in a growing buffer (struct strbuf) that remembers an allocation
 * failure, so the builders check for ENOMEM once at the end instead of after every append.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crypto.h"
#include "sigv4.h"
#include "strbuf.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"


/* One header of the request, its name lower-cased; order keeps duplicates in request order. */
struct sigv4_hdr {
	char *name;
	const char *value;
	size_t order;
};

/* One query parameter, name and value already in canonical (encoded) form. */
struct sigv4_param {
	char *name;
	char *value;
};

static bool sigv4_is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

static void sigv4_encode_into(struct strbuf *b, const char *s, size_t n, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (sigv4_is_unreserved(c) || (keep_slash && c == '/')) {
			strbuf_putc(b, (char)c);
		} else {
			char esc[3] = {'%', hex[c >> 4], hex[c & 0x0f]};

			strbuf_put(b, esc, sizeof(esc));
		}
	}
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
	struct strbuf b = {0};

	sigv4_encode_into(&b, s, strlen(s), keep_slash);
	return strbuf_finish(&b);
}

static int sigv4_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode s[0..n) into out (at least n bytes); returns the decoded length. A '%' that
 * does not start a valid escape is kept as it is ('+' is an ordinary character here). */
static size_t sigv4_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && sigv4_hexval(s[i + 1]) >= 0 &&
		    sigv4_hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(sigv4_hexval(s[i + 1]) << 4 | sigv4_hexval(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	return o;
}

/*
 * Canonical URI for services that normalise: RFC 3986 remove_dot_segments with empty segments
 * dropped, then each segment URI-encoded (the path given is encoded a second time). A
 * trailing '/' survives when the last input segment was empty, "." or "..".
 */
static void sigv4_put_normalized_path(struct strbuf *b, const char *path)
{
	size_t n_max = 1, n = 0;
	const char **seg;
	size_t *seg_len;
	bool trailing = false;
	const char *p = path;

	for (const char *q = path; *q; q++)
		n_max += *q == '/';
	seg = malloc(n_max * sizeof(*seg));
	seg_len = malloc(n_max * sizeof(*seg_len));
	if (!seg || !seg_len) {
		b->oom = true;
		goto out;
	}
	for (;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		trailing = len == 0 || (len == 1 && p[0] == '.') ||
			   (len == 2 && p[0] == '.' && p[1] == '.');
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (n > 0)
				n--;
		} else if (!trailing) {
			seg[n] = p;
			seg_len[n] = len;
			n++;
		}
		if (!end)
			break;
		p = end + 1;
	}
	for (size_t i = 0; i < n; i++) {
		strbuf_putc(b, '/');
		sigv4_encode_into(b, seg[i], seg_len[i], false);
	}
	if (n == 0 || trailing)
		strbuf_putc(b, '/');
out:
	free(seg);
	free(seg_len);
}

static int sigv4_param_cmp(const void *a, const void *b)
{
	const struct sigv4_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Decode s[0..n) and encode it again as a canonical query component; NULL on ENOMEM. */
static char *sigv4_recode(const char *s, size_t n)
{
	struct strbuf b = {0};
	char *raw = malloc(n + 1);
	size_t len;

	if (!raw)
		return NULL;
	len = sigv4_decode(s, n, raw);
	sigv4_encode_into(&b, raw, len, false);
	free(raw);
	return strbuf_finish(&b);
}

/* Canonical query string: parameters split on '&', each name and value decoded then encoded
 * again, sorted by name then value; "a" becomes "a=". Empty parameters are dropped. */
static void sigv4_put_query(struct strbuf *b, const char *query)
{
	struct sigv4_param *params = NULL;
	size_t n_max = 1, n = 0;
	const char *p = query;

	if (!query || !*query)
		return;
	for (const char *q = query; *q; q++)
		n_max += *q == '&';
	params = calloc(n_max, sizeof(*params));
	if (!params) {
		b->oom = true;
		return;
	}
	for (;;) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);

		if (len > 0) {
			size_t name_len = eq ? (size_t)(eq - p) : len;

			params[n].name = sigv4_recode(p, name_len);
			params[n].value = eq ? sigv4_recode(eq + 1, len - name_len - 1)
					     : sigv4_recode("", 0);
			n++;
			if (!params[n - 1].name || !params[n - 1].value) {
				b->oom = true;
				goto out;
			}
		}
		if (!end)
			break;
		p = end + 1;
	}
	qsort(params, n, sizeof(*params), sigv4_param_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strbuf_putc(b, '&');
		strbuf_puts(b, params[i].name);
		strbuf_putc(b, '=');
		strbuf_puts(b, params[i].value);
	}
out:
	for (size_t i = 0; i < n; i++) {
		free(params[i].name);
		free(params[i].value);
	}
	free(params);
}

static bool sigv4_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A header value trimmed, with every inner run of white space folded to one space. */
static void sigv4_put_header_value(struct strbuf *b, const char *v)
{
	bool pending = false, any = false;

	for (; *v; v++) {
		if (sigv4_is_space(*v)) {
			pending = true;
			continue;
		}
		if (pending && any)
			strbuf_putc(b, ' ');
		strbuf_putc(b, *v);
		pending = false;
		any = true;
	}
}

/* The header name lower-cased and trimmed, malloc'd; NULL on ENOMEM. */
static char *sigv4_header_name(const char *name)
{
	const char *end;
	char *out;
	size_t len;

	while (sigv4_is_space(*name))
		name++;
	end = name + strlen(name);
	while (end > name && sigv4_is_space(end[-1]))
		end--;
	len = (size_t)(end - name);
	out = malloc(len + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++)
		out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	out[len] = '\0';
	return out;
}

static int sigv4_hdr_cmp(const void *a, const void *b)
{
	const struct sigv4_hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Canonical headers ("name:v1,v2\n" per distinct name, sorted) into b and the signed-header
 * list ("a;b;c") into sh. */
static void sigv4_put_headers(struct strbuf *b, struct strbuf *sh,
			      const struct sigv4_request *req)
{
	struct sigv4_hdr *hdrs = NULL;
	size_t n = req->n_headers;

	if (n == 0)
		return;
	hdrs = calloc(n, sizeof(*hdrs));
	if (!hdrs) {
		b->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		hdrs[i].name = sigv4_header_name(req->headers[i].name);
		hdrs[i].value = req->headers[i].value ? req->headers[i].value : "";
		hdrs[i].order = i;
		if (!hdrs[i].name) {
			b->oom = true;
			goto out;
		}
	}
	qsort(hdrs, n, sizeof(*hdrs), sigv4_hdr_cmp);
	for (size_t i = 0; i < n; i++) {
		bool first = i == 0 || strcmp(hdrs[i].name, hdrs[i - 1].name) != 0;
		bool last = i + 1 == n || strcmp(hdrs[i].name, hdrs[i + 1].name) != 0;

		if (first) {
			if (i > 0)
				strbuf_putc(sh, ';');
			strbuf_puts(sh, hdrs[i].name);
			strbuf_puts(b, hdrs[i].name);
			strbuf_putc(b, ':');
		} else {
			strbuf_putc(b, ',');
		}
		sigv4_put_header_value(b, hdrs[i].value);
		if (last)
			strbuf_putc(b, '\n');
	}
out:
	for (size_t i = 0; i < n; i++)
		free(hdrs[i].name);
	free(hdrs);
}

/* Canonical request and signed-header list, both malloc'd; 0 or ENOMEM. */
static int sigv4_build(const struct sigv4_request *req, char **creq, char **signed_headers)
{
	struct strbuf b = {0}, sh = {0};
	const char *path = req->path && *req->path ? req->path : "/";

	*creq = NULL;
	*signed_headers = NULL;
	strbuf_puts(&b, req->method);
	strbuf_putc(&b, '\n');
	if (req->normalize_and_double_encode_path)
		sigv4_put_normalized_path(&b, path);
	else
		strbuf_puts(&b, path);
	strbuf_putc(&b, '\n');
	sigv4_put_query(&b, req->query);
	strbuf_putc(&b, '\n');
	sigv4_put_headers(&b, &sh, req);
	strbuf_putc(&b, '\n');
	if (sh.oom)
		b.oom = true;
	if (sh.s)
		strbuf_puts(&b, sh.s);
	strbuf_putc(&b, '\n');
	strbuf_puts(&b, req->payload_hash);

	*creq = strbuf_finish(&b);
	*signed_headers = strbuf_finish(&sh);
	if (!*creq || !*signed_headers) {
		free(*creq);
		free(*signed_headers);
		*creq = NULL;
		*signed_headers = NULL;
		return ENOMEM;
	}
	return 0;
}

char *sigv4_canonical_request(const struct sigv4_request *req)
{
	char *creq, *signed_headers;

	if (sigv4_build(req, &creq, &signed_headers)) {
		errno = ENOMEM;
		return NULL;
	}
	free(signed_headers);
	return creq;
}

/* "YYYYMMDDTHHMMSSZ" */
static bool sigv4_date_valid(const char *d)
{
	if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

static char *sigv4_sts_from_creq(const char *creq, const char *amz_date, const char *region,
				 const char *service)
{
	struct strbuf b = {0};
	char hash[2 * CRYPTO_SHA256_LEN + 1];

	crypto_sha256_hex(creq, strlen(creq), hash);
	strbuf_puts(&b, SIGV4_ALGORITHM "\n");
	strbuf_puts(&b, amz_date);
	strbuf_putc(&b, '\n');
	strbuf_put(&b, amz_date, 8);
	strbuf_putc(&b, '/');
	strbuf_puts(&b, region);
	strbuf_putc(&b, '/');
	strbuf_puts(&b, service);
	strbuf_puts(&b, "/aws4_request\n");
	strbuf_puts(&b, hash);
	return strbuf_finish(&b);
}

char *sigv4_string_to_sign(const struct sigv4_request *req, const char *amz_date, const char *region,
			   const char *service)
{
	char *creq, *signed_headers, *sts;

	if (!sigv4_date_valid(amz_date)) {
		errno = EINVAL;
		return NULL;
	}
	if (sigv4_build(req, &creq, &signed_headers)) {
		errno = ENOMEM;
		return NULL;
	}
	sts = sigv4_sts_from_creq(creq, amz_date, region, service);
	free(creq);
	free(signed_headers);
	return sts;
}

static bool sigv4_has_header(const struct sigv4_request *req, const char *lower_name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, lower_name) == 0)
			return true;
	return false;
}

/* Hex signature of sts: HMAC chain "AWS4"+secret, date, region, service, "aws4_request". */
static int sigv4_sign(const char *secret, const char *amz_date, const char *region,
		      const char *service, const char *sts, char out[2 * CRYPTO_SHA256_LEN + 1])
{
	unsigned char k[CRYPTO_SHA256_LEN], sig[CRYPTO_SHA256_LEN];
	size_t secret_len = strlen(secret);
	char *k0 = malloc(4 + secret_len);

	if (!k0)
		return ENOMEM;
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, secret, secret_len);
	crypto_hmac_sha256(k0, 4 + secret_len, amz_date, 8, k);
	crypto_hmac_sha256(k, sizeof(k), region, strlen(region), k);
	crypto_hmac_sha256(k, sizeof(k), service, strlen(service), k);
	crypto_hmac_sha256(k, sizeof(k), "aws4_request", strlen("aws4_request"), k);
	crypto_hmac_sha256(k, sizeof(k), sts, strlen(sts), sig);
	crypto_hex(sig, sizeof(sig), out);
	explicit_bzero(k0, 4 + secret_len);
	explicit_bzero(k, sizeof(k));
	free(k0);
	return 0;
}

char *sigv4_authorization(const struct sigv4_request *req, const struct sigv4_credentials *creds,
			  const char *amz_date, const char *region, const char *service)
{
	struct strbuf b = {0};
	char *creq = NULL, *signed_headers = NULL, *sts = NULL, *out = NULL;
	char signature[2 * CRYPTO_SHA256_LEN + 1];
	int err = 0;

	if (!sigv4_date_valid(amz_date) ||
	    (creds->session_token && *creds->session_token &&
	     !sigv4_has_header(req, "x-amz-security-token"))) {
		err = EINVAL;
		goto out;
	}
	err = sigv4_build(req, &creq, &signed_headers);
	if (err)
		goto out;
	sts = sigv4_sts_from_creq(creq, amz_date, region, service);
	if (!sts) {
		err = ENOMEM;
		goto out;
	}
	err = sigv4_sign(creds->secret_key, amz_date, region, service, sts, signature);
	if (err)
		goto out;
	strbuf_puts(&b, SIGV4_ALGORITHM " Credential=");
	strbuf_puts(&b, creds->access_key);
	strbuf_putc(&b, '/');
	strbuf_put(&b, amz_date, 8);
	strbuf_putc(&b, '/');
	strbuf_puts(&b, region);
	strbuf_putc(&b, '/');
	strbuf_puts(&b, service);
	strbuf_puts(&b, "/aws4_request, SignedHeaders=");
	strbuf_puts(&b, signed_headers);
	strbuf_puts(&b, ", Signature=");
	strbuf_puts(&b, signature);
	out = strbuf_finish(&b);
	if (!out)
		err = ENOMEM;
out:
	free(sts);
	free(signed_headers);
	free(creq);
	if (err)
		errno = err;
	return out;
}

void sigv4_amz_date(long t, char out[17])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
		memcpy(out, "00000000T000000Z", 17); /* years beyond 9999: obviously wrong */
}
