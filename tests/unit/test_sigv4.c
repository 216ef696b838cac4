/*
 * test_sigv4.c - sigv4.c against every case of the AWS SigV4 test suite (tests/data/sigv4,
 * service "service", path normalisation and double encoding on) and against the S3
 * examples of the AWS S3 API reference (no normalisation), plus key and query encoding.
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "crypto.h"
#include "sigv4.h"

#define SUITE_DIR TEST_DATA_DIR "/sigv4"
#define SUITE_CASES 34 /* cases copied into tests/data/sigv4; see its README */
#define SUITE_DATE "20150830T123600Z"
#define SUITE_REGION "us-east-1"
#define SUITE_SERVICE "service"
#define MAX_HEADERS 32

static const struct sigv4_credentials suite_creds = {
	.access_key = "AKIDEXAMPLE",
	.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

/* Inputs a case needs beyond its .req, as a real caller would add them. */
static const struct {
	const char *name;
	const char *session_token; /* signed: added as X-Amz-Security-Token */
} suite_extras[] = {
	{"get-vanilla-with-session-token",
	 "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"},
};

/* ---- helpers ------------------------------------------------------------------------- */

static char *read_whole(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, got;

	if (!f)
		fail_msg("cannot open '%s': %s", path, strerror(errno));
	do {
		if (len + 4096 + 1 > cap) {
			cap = (cap + 4096) * 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		got = fread(buf + len, 1, 4096, f);
		len += got;
	} while (got > 0);
	fclose(f);
	buf[len] = '\0';
	if (len_out)
		*len_out = len;
	return buf;
}

/* Line idx (0-based) of s, malloc'd. */
static char *nth_line(const char *s, int idx)
{
	for (int i = 0; i < idx; i++) {
		s = strchr(s, '\n');
		assert_non_null(s);
		s++;
	}
	return strndup(s, strcspn(s, "\n"));
}

/* ---- the AWS test suite -------------------------------------------------------------- */

/* A .req parsed as the suite defines it: request line "METHOD target HTTP/1.1" (the target
 * may contain spaces: normalize-path/get-space), "Name:value" headers where a line starting
 * with white space continues the previous value (obs-fold, joined with one space), repeated
 * names kept as separate headers, then an optional blank line and the body. */
struct suite_req {
	char *method;
	char *path;
	char *query;
	struct sigv4_header headers[MAX_HEADERS];
	char *names[MAX_HEADERS];
	char *values[MAX_HEADERS];
	size_t n_headers;
	char payload_hash[2 * CRYPTO_SHA256_LEN + 1];
};

static void suite_add_header(struct suite_req *r, const char *name, size_t name_len,
			     const char *value, size_t value_len)
{
	assert_true(r->n_headers < MAX_HEADERS);
	r->names[r->n_headers] = strndup(name, name_len);
	r->values[r->n_headers] = strndup(value, value_len);
	r->n_headers++;
}

static void suite_parse(const char *text, struct suite_req *r)
{
	const char *body = strstr(text, "\n\n");
	const char *head_end = body ? body : text + strlen(text);
	const char *line = text, *eol, *sp1, *sp2, *target_end, *q;

	memset(r, 0, sizeof(*r));
	body = body ? body + 2 : head_end;

	/* request line */
	eol = memchr(line, '\n', (size_t)(head_end - line));
	if (!eol)
		eol = head_end;
	sp1 = memchr(line, ' ', (size_t)(eol - line));
	assert_non_null(sp1);
	sp2 = eol;
	while (sp2 > sp1 && sp2[-1] != ' ')
		sp2--;
	assert_true(sp2 > sp1 + 1);
	target_end = sp2 - 1;
	r->method = strndup(line, (size_t)(sp1 - line));
	q = memchr(sp1 + 1, '?', (size_t)(target_end - sp1 - 1));
	r->path = strndup(sp1 + 1, (size_t)((q ? q : target_end) - sp1 - 1));
	r->query = q ? strndup(q + 1, (size_t)(target_end - q - 1)) : NULL;

	/* headers */
	for (line = eol < head_end ? eol + 1 : head_end; line < head_end; line = eol + 1) {
		const char *colon;

		eol = memchr(line, '\n', (size_t)(head_end - line));
		if (!eol)
			eol = head_end;
		if (*line == ' ' || *line == '\t') { /* continuation of the previous value */
			char *prev;
			size_t plen;

			assert_true(r->n_headers > 0);
			prev = r->values[r->n_headers - 1];
			plen = strlen(prev);
			prev = realloc(prev, plen + 1 + (size_t)(eol - line) + 1);
			assert_non_null(prev);
			prev[plen] = ' ';
			memcpy(prev + plen + 1, line, (size_t)(eol - line));
			prev[plen + 1 + (eol - line)] = '\0';
			r->values[r->n_headers - 1] = prev;
		} else {
			colon = memchr(line, ':', (size_t)(eol - line));
			assert_non_null(colon);
			suite_add_header(r, line, (size_t)(colon - line), colon + 1,
					 (size_t)(eol - colon - 1));
		}
		if (eol == head_end)
			break;
	}
	crypto_sha256_hex(body, strlen(body), r->payload_hash);
}

static void suite_free(struct suite_req *r)
{
	free(r->method);
	free(r->path);
	free(r->query);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->names[i]);
		free(r->values[i]);
	}
}

static void assert_file_equals(const char *got, const char *base, const char *ext)
{
	char path[4096];
	char *want;

	snprintf(path, sizeof(path), "%s.%s", base, ext);
	want = read_whole(path, NULL);
	if (strcmp(got, want) != 0)
		fail_msg("%s differs\n--- expected\n%s\n--- got\n%s\n---", path, want, got);
	free(want);
}

static void test_suite_case(void **state)
{
	const char *req_path = *state;
	char base[4096];
	const char *name;
	struct suite_req r;
	struct sigv4_credentials creds = suite_creds;
	struct sigv4_request req;
	char *text, *creq, *sts, *authz;

	snprintf(base, sizeof(base), "%.*s", (int)(strlen(req_path) - 4), req_path);
	name = strrchr(base, '/') + 1;
	text = read_whole(req_path, NULL);
	suite_parse(text, &r);
	for (size_t i = 0; i < sizeof(suite_extras) / sizeof(suite_extras[0]); i++) {
		if (strcmp(name, suite_extras[i].name) != 0)
			continue;
		const char *tok = suite_extras[i].session_token;

		suite_add_header(&r, "X-Amz-Security-Token", 20, tok, strlen(tok));
	}
	for (size_t i = 0; i < r.n_headers; i++) {
		r.headers[i].name = r.names[i];
		r.headers[i].value = r.values[i];
		/* post-sts-header-before signs the token it carries; -after signs none (the
		 * token is added after signing, which objfs never does: S3 wants it signed). */
		if (strcasecmp(r.names[i], "x-amz-security-token") == 0)
			creds.session_token = r.values[i];
	}
	req = (struct sigv4_request){
		.method = r.method,
		.path = r.path,
		.query = r.query,
		.headers = r.headers,
		.n_headers = r.n_headers,
		.payload_hash = r.payload_hash,
		.normalize_and_double_encode_path = true,
	};

	creq = sigv4_canonical_request(&req);
	assert_non_null(creq);
	assert_file_equals(creq, base, "creq");
	sts = sigv4_string_to_sign(&req, SUITE_DATE, SUITE_REGION, SUITE_SERVICE);
	assert_non_null(sts);
	assert_file_equals(sts, base, "sts");
	authz = sigv4_authorization(&req, &creds, SUITE_DATE, SUITE_REGION, SUITE_SERVICE);
	assert_non_null(authz);
	assert_file_equals(authz, base, "authz");

	free(authz);
	free(sts);
	free(creq);
	suite_free(&r);
	free(text);
}

static char **suite_files;
static size_t suite_n;

static int suite_collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	size_t len = strlen(path);

	if (type == FTW_F && len > 4 && strcmp(path + len - 4, ".req") == 0) {
		suite_files = realloc(suite_files, (suite_n + 1) * sizeof(*suite_files));
		if (!suite_files)
			return -1;
		suite_files[suite_n++] = strdup(path);
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_suite_is_complete(void **state)
{
	/* A lost or unreadable copy must not pass as "fewer vectors, all green". */
	assert_int_equal(suite_n, SUITE_CASES);
}

/* ---- S3: the examples of the S3 API reference (sig-v4-header-based-auth) --------------- */

#define S3_KEY "AKIAIOSFODNN7EXAMPLE"
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DATE "20130524T000000Z"
#define S3_HOST "examplebucket.s3.amazonaws.com"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct sigv4_credentials s3_creds = {.access_key = S3_KEY, .secret_key = S3_SECRET};

static char *signature_of(const char *authz)
{
	const char *sig = strstr(authz, "Signature=");

	assert_non_null(sig);
	return strdup(sig + strlen("Signature="));
}

static void test_s3_get_object_example(void **state)
{
	const struct sigv4_header h[] = {
		{"Host", S3_HOST},
		{"Range", "bytes=0-9"},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", S3_DATE},
	};
	const struct sigv4_request req = {
		.method = "GET",
		.path = "/test.txt",
		.headers = h,
		.n_headers = 4,
		.payload_hash = EMPTY_SHA256,
	};
	char *creq = sigv4_canonical_request(&req);
	char *sts = sigv4_string_to_sign(&req, S3_DATE, "us-east-1", "s3");
	char *authz = sigv4_authorization(&req, &s3_creds, S3_DATE, "us-east-1", "s3");

	assert_string_equal(creq, "GET\n/test.txt\n\n"
				  "host:examplebucket.s3.amazonaws.com\n"
				  "range:bytes=0-9\n"
				  "x-amz-content-sha256:" EMPTY_SHA256 "\n"
				  "x-amz-date:20130524T000000Z\n\n"
				  "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
	assert_string_equal(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n"
				 "20130524/us-east-1/s3/aws4_request\n"
				 "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	/* The documentation prints the header without spaces after the commas; the value is
	 * the same list, and the signature is the documented one. */
	assert_string_equal(authz, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
				   "us-east-1/s3/aws4_request, "
				   "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
				   "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6"
				   "036bdb41");
	free(authz);
	free(sts);
	free(creq);
}

static void test_s3_put_object_example(void **state)
{
	const char *body = "Welcome to Amazon S3.";
	char hash[2 * CRYPTO_SHA256_LEN + 1];
	char *path = sigv4_uri_encode("/test$file.text", true);
	char *authz, *sig, *creq;

	crypto_sha256_hex(body, strlen(body), hash);
	assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	assert_string_equal(path, "/test%24file.text");
	const struct sigv4_header h[] = {
		{"Host", S3_HOST},
		{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
		{"x-amz-date", S3_DATE},
		{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
		{"x-amz-content-sha256", hash},
	};
	const struct sigv4_request req = {
		.method = "PUT", .path = path, .headers = h, .n_headers = 5, .payload_hash = hash};

	creq = sigv4_canonical_request(&req);
	assert_string_equal(creq, "PUT\n/test%24file.text\n\n"
				  "date:Fri, 24 May 2013 00:00:00 GMT\n"
				  "host:examplebucket.s3.amazonaws.com\n"
				  "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e4"
				  "2034a8b803f8b072\n"
				  "x-amz-date:20130524T000000Z\n"
				  "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
				  "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
				  "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	authz = sigv4_authorization(&req, &s3_creds, S3_DATE, "us-east-1", "s3");
	sig = signature_of(authz);
	assert_string_equal(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	free(sig);
	free(authz);
	free(creq);
	free(path);
}

static void test_s3_bucket_examples(void **state)
{
	static const struct {
		const char *query, *canonical_query, *signature;
	} cases[] = {
		/* GET Bucket Lifecycle: a sub-resource without a value */
		{"lifecycle", "lifecycle=",
		 "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"},
		/* GET Bucket (List Objects), sent unsorted */
		{"prefix=J&max-keys=2", "max-keys=2&prefix=J",
		 "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"},
	};
	const struct sigv4_header h[] = {
		{"host", S3_HOST},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", S3_DATE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct sigv4_request req = {.method = "GET",
						  .path = "/",
						  .query = cases[i].query,
						  .headers = h,
						  .n_headers = 3,
						  .payload_hash = EMPTY_SHA256};
		char *creq = sigv4_canonical_request(&req);
		char *line = nth_line(creq, 2);
		char *authz = sigv4_authorization(&req, &s3_creds, S3_DATE, "us-east-1", "s3");
		char *sig = signature_of(authz);

		assert_string_equal(line, cases[i].canonical_query);
		assert_string_equal(sig, cases[i].signature);
		free(sig);
		free(authz);
		free(line);
		free(creq);
	}
}

/* ---- S3 keys: encoded once, never normalised ----------------------------------------- */

static void test_uri_encode(void **state)
{
	static const struct {
		const char *in;
		bool keep_slash;
		const char *out;
	} cases[] = {
		{"a b", true, "a%20b"},
		{"dir/sub dir/x.txt", true, "dir/sub%20dir/x.txt"},
		{"dir/x", false, "dir%2Fx"},
		{"caf\xc3\xa9", true, "caf%C3%A9"},
		{"\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80", true, "%E6%97%A5%E6%9C%AC/%F0%9F%98%80"},
		{"100%", true, "100%25"},
		{"100%25", true, "100%2525"},
		{"a+b", true, "a%2Bb"},
		{"what?", true, "what%3F"},
		{"#1", true, "%231"},
		{"a=b&c;d:e@f,g$h!i*j'k(l)m", true, "a%3Db%26c%3Bd%3Ae%40f%2Cg%24h%21i%2Aj%27k%28l%29m"},
		{"-_.~AZaz09", false, "-_.~AZaz09"},
		{"\x01\x7f\xff", false, "%01%7F%FF"},
		{"", true, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = sigv4_uri_encode(cases[i].in, cases[i].keep_slash);

		assert_non_null(out);
		assert_string_equal(out, cases[i].out);
		free(out);
	}
}

static void test_s3_path_not_normalised(void **state)
{
	static const struct {
		const char *key;
		const char *s3_path;     /* canonical URI with normalisation off (S3) */
		const char *suite_path;  /* the same path with normalisation on */
	} cases[] = {
		{"a b", "/bucket/a%20b", "/bucket/a%2520b"},
		{"100% + more?#", "/bucket/100%25%20%2B%20more%3F%23",
		 "/bucket/100%2525%2520%252B%2520more%253F%2523"},
		{"\xe2\x82\xac/\xc3\xa9", "/bucket/%E2%82%AC/%C3%A9", "/bucket/%25E2%2582%25AC/%25C3%25A9"},
		{"my-object//example//photo.user", "/bucket/my-object//example//photo.user",
		 "/bucket/my-object/example/photo.user"},
		{"a/./b/../c", "/bucket/a/./b/../c", "/bucket/a/c"},
		{"dir/", "/bucket/dir/", "/bucket/dir/"},
	};
	const struct sigv4_header h[] = {{"host", "127.0.0.1:9000"}, {"x-amz-date", S3_DATE}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *enc = sigv4_uri_encode(cases[i].key, true);
		char path[512];
		struct sigv4_request req = {.method = "GET",
					    .path = path,
					    .headers = h,
					    .n_headers = 2,
					    .payload_hash = "UNSIGNED-PAYLOAD"};
		char *creq, *line;

		snprintf(path, sizeof(path), "/bucket/%s", enc);
		creq = sigv4_canonical_request(&req);
		line = nth_line(creq, 1);
		assert_string_equal(line, cases[i].s3_path);
		free(line);
		free(creq);

		req.normalize_and_double_encode_path = true;
		creq = sigv4_canonical_request(&req);
		line = nth_line(creq, 1);
		assert_string_equal(line, cases[i].suite_path);
		free(line);
		free(creq);
		free(enc);
	}
}

static void test_canonical_query(void **state)
{
	static const struct {
		const char *query, *canonical;
	} cases[] = {
		{NULL, ""},
		{"", ""},
		{"uploads", "uploads="},
		{"delete", "delete="},
		{"list-type=2&prefix=a%2Fb&continuation-token=1%2Bx%3D%3D",
		 "continuation-token=1%2Bx%3D%3D&list-type=2&prefix=a%2Fb"},
		{"prefix=a/b&delimiter=/", "delimiter=%2F&prefix=a%2Fb"},
		{"b=2&a=&a", "a=&a=&b=2"},
		{"p=%e2%82%ac", "p=%E2%82%AC"},
		{"p=a b", "p=a%20b"},
		{"p=1+2", "p=1%2B2"},
		{"p=%zz&q=%4", "p=%25zz&q=%254"},
		{"k=v&&", "k=v"},
		{"x=2&x=10", "x=10&x=2"},
		{"uploadId=abc&partNumber=3", "partNumber=3&uploadId=abc"},
		{"a=b=c", "a=b%3Dc"},
		{"%E1%88%B4=1&Z=2&a=3", "%E1%88%B4=1&Z=2&a=3"},
	};
	const struct sigv4_header h[] = {{"host", "h"}, {"x-amz-date", S3_DATE}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct sigv4_request req = {.method = "GET",
						  .path = "/",
						  .query = cases[i].query,
						  .headers = h,
						  .n_headers = 2,
						  .payload_hash = EMPTY_SHA256};
		char *creq = sigv4_canonical_request(&req);
		char *line = nth_line(creq, 2);

		assert_string_equal(line, cases[i].canonical);
		free(line);
		free(creq);
	}
}

static void test_canonical_headers(void **state)
{
	const struct sigv4_header h[] = {
		{"X-Amz-Meta-B", "  two   words\there  "},
		{"host", "h"},
		{"x-amz-meta-a", "1"},
		{"X-AMZ-META-A", "2"},
		{"x-amz-meta-empty", ""},
		{"x-amz-date", S3_DATE},
		{"x-amz-meta-a", " 3 "},
	};
	const struct sigv4_request req = {.method = "HEAD",
					  .path = "",
					  .headers = h,
					  .n_headers = 7,
					  .payload_hash = "UNSIGNED-PAYLOAD"};
	char *creq = sigv4_canonical_request(&req);

	assert_string_equal(creq, "HEAD\n/\n\n"
				  "host:h\n"
				  "x-amz-date:20130524T000000Z\n"
				  "x-amz-meta-a:1,2,3\n"
				  "x-amz-meta-b:two words here\n"
				  "x-amz-meta-empty:\n\n"
				  "host;x-amz-date;x-amz-meta-a;x-amz-meta-b;x-amz-meta-empty\n"
				  "UNSIGNED-PAYLOAD");
	free(creq);
}

static void test_refusals(void **state)
{
	const struct sigv4_header h[] = {{"host", "h"}, {"x-amz-date", S3_DATE}};
	const struct sigv4_header ht[] = {
		{"host", "h"}, {"x-amz-date", S3_DATE}, {"X-Amz-Security-Token", "tok"}};
	struct sigv4_request req = {.method = "GET",
				    .path = "/",
				    .headers = h,
				    .n_headers = 2,
				    .payload_hash = EMPTY_SHA256};
	struct sigv4_credentials creds = s3_creds;
	char *s;

	errno = 0;
	assert_null(sigv4_string_to_sign(&req, "2013-05-24T00:00:00Z", "us-east-1", "s3"));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(sigv4_authorization(&req, &creds, "20130524", "us-east-1", "s3"));
	assert_int_equal(errno, EINVAL);

	creds.session_token = ""; /* no token */
	s = sigv4_authorization(&req, &creds, S3_DATE, "us-east-1", "s3");
	assert_non_null(s);
	free(s);
	creds.session_token = "tok";
	errno = 0;
	assert_null(sigv4_authorization(&req, &creds, S3_DATE, "us-east-1", "s3"));
	assert_int_equal(errno, EINVAL);
	req.headers = ht;
	req.n_headers = 3;
	s = sigv4_authorization(&req, &creds, S3_DATE, "us-east-1", "s3");
	assert_non_null(s);
	assert_non_null(strstr(s, "SignedHeaders=host;x-amz-date;x-amz-security-token, "));
	free(s);
}

static void test_amz_date(void **state)
{
	char out[17];

	sigv4_amz_date(1369353600L, out);
	assert_string_equal(out, "20130524T000000Z");
	sigv4_amz_date(1440938160L, out);
	assert_string_equal(out, "20150830T123600Z");
	sigv4_amz_date(0, out);
	assert_string_equal(out, "19700101T000000Z");
	sigv4_amz_date(951868799L, out); /* leap day, last second */
	assert_string_equal(out, "20000229T235959Z");
}

int main(void)
{
	const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_suite_is_complete),
		cmocka_unit_test(test_s3_get_object_example),
		cmocka_unit_test(test_s3_put_object_example),
		cmocka_unit_test(test_s3_bucket_examples),
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_s3_path_not_normalised),
		cmocka_unit_test(test_canonical_query),
		cmocka_unit_test(test_canonical_headers),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_amz_date),
	};
	struct CMUnitTest *suite;
	int failed;

	if (nftw(SUITE_DIR, suite_collect, 16, FTW_PHYS) != 0) {
		fprintf(stderr, "cannot read the test vectors in '%s'\n", SUITE_DIR);
		return 1;
	}
	qsort(suite_files, suite_n, sizeof(*suite_files), cmp_str);
	suite = calloc(suite_n ? suite_n : 1, sizeof(*suite));
	if (!suite)
		return 1;
	for (size_t i = 0; i < suite_n; i++) {
		suite[i].name = suite_files[i] + strlen(SUITE_DIR) + 1;
		suite[i].test_func = test_suite_case;
		suite[i].initial_state = suite_files[i];
	}
	failed = _cmocka_run_group_tests("aws_sigv4_test_suite", suite, suite_n, NULL, NULL);
	failed += cmocka_run_group_tests_name("sigv4", fixed, NULL, NULL);
	for (size_t i = 0; i < suite_n; i++)
		free(suite_files[i]);
	free(suite_files);
	free(suite);
	return failed ? 1 : 0;
}
