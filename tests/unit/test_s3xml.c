/*
 * test_s3xml.c - s3xml.c against real-looking S3, RGW and small-server documents
 * (tests/data/xml) and against hostile or broken input: truncation at every length, wrong
 * roots, missing fields, bad numbers and times, external entities (a FIFO canary proves no
 * file is even opened), entity expansion bombs, deep nesting, encodings.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "s3xml.h"

#define XML_DIR TEST_DATA_DIR "/xml"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static char *read_data(const char *name, size_t *len_out)
{
	char path[4096];
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0, got;

	snprintf(path, sizeof(path), "%s/%s", XML_DIR, name);
	f = fopen(path, "rb");
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
	*len_out = len;
	return buf;
}

static void assert_str_or_null(const char *got, const char *want)
{
	if (!want)
		assert_null(got);
	else
		assert_non_null(got), assert_string_equal(got, want);
}

/* ---- every parser, for input that none may accept ------------------------------------ */

enum parser { P_LIST, P_LIST_URL, P_ERROR, P_INITIATE, P_ETAG, P_DELETE, P_UPLOADS, P_COUNT };

/* Run one parser, check its output is empty on failure, free it; returns its result. */
static int run_parser(enum parser p, const char *doc, size_t len)
{
	struct s3xml_list l;
	struct s3xml_error e;
	struct s3xml_uploads u;
	char *s = (char *)"unset";
	size_t n = 99;
	int err = -1;

	switch (p) {
	case P_LIST:
	case P_LIST_URL:
		err = p == P_LIST ? s3xml_parse_list(doc, len, &l)
				  : s3xml_parse_list_encoded(doc, len, true, &l);
		if (err) {
			assert_null(l.objects);
			assert_int_equal(l.n_objects, 0);
			assert_null(l.prefixes);
			assert_null(l.next_token);
			assert_null(l.next_marker);
		}
		s3xml_list_free(&l);
		break;
	case P_ERROR:
		err = s3xml_parse_error(doc, len, &e);
		if (err)
			assert_null(e.code);
		s3xml_error_free(&e);
		break;
	case P_INITIATE:
		err = s3xml_parse_initiate(doc, len, &s);
		if (err)
			assert_null(s);
		free(s);
		break;
	case P_ETAG:
		err = s3xml_parse_etag_result(doc, len, &s, &e);
		if (err)
			assert_null(s);
		free(s);
		s3xml_error_free(&e);
		break;
	case P_DELETE:
		err = s3xml_parse_delete_result(doc, len, &n, &s);
		if (err) {
			assert_null(s);
			assert_int_equal(n, 0);
		}
		free(s);
		break;
	case P_UPLOADS:
		err = s3xml_parse_uploads(doc, len, &u);
		if (err) {
			assert_null(u.uploads);
			assert_int_equal(u.n_uploads, 0);
		}
		s3xml_uploads_free(&u);
		break;
	case P_COUNT:
		break;
	}
	return err;
}

static void assert_all_refuse(const char *what, const char *doc, size_t len)
{
	for (int p = 0; p < P_COUNT; p++) {
		int err = run_parser((enum parser)p, doc, len);

		if (err != EPROTO)
			fail_msg("%s: parser %d returned %d, want EPROTO", what, p, err);
	}
	assert_false(s3xml_is_error(doc, len));
}

/* ---- listings ------------------------------------------------------------------------ */

struct want_object {
	const char *key;
	uint64_t size;
	time_t sec;
	long nsec;
	const char *etag;
};

static const struct {
	const char *file;
	bool url;
	bool truncated;
	const char *next_token, *next_marker;
	size_t n_objects;
	struct want_object objects[4];
	size_t n_prefixes;
	const char *prefixes[3];
} list_cases[] = {
	{"list-v2-aws.xml", false, true, "1w41l63U0xa8q7smH50vCxyTQqdxo69O3EmK28Bi5PcROI4wI/EyIJg==",
	 /* no NextMarker: the greater of the last key and the last prefix */
	 "raw/\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.png", 3,
	 {{"raw/IMG_0001.jpg", 434234, 1255369830, 0, "fba9dede5f27731c9771645a39863328"},
	  {"raw/Tom & Jerry <1>.jpg", 5368709120ULL, 1704164645, 678000000,
	   "9b2cf535f27731c974343645a3985328-3"},
	  {"raw/\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac.png", 0, 1704164645, 0,
	   "d41d8cd98f00b204e9800998ecf8427e"}},
	 2, {"raw/2023/", "raw/2024/"}},
	{"list-v2-last-page.xml", false, false, NULL, NULL, 1,
	 {{"only.txt", 5, 1699175700, 0, "5d41402abc4b2a76b9719d911017c592"}}, 0, {NULL}},
	{"list-empty.xml", false, false, NULL, NULL, 0, {{NULL}}, 0, {NULL}},
	{"list-v1-rgw.xml", false, true, NULL, "dir/sub/", 1,
	 {{"dir/a.txt", 5, 1704164645, 678000000, "5d41402abc4b2a76b9719d911017c592"}}, 1,
	 {"dir/sub/"}},
	{"list-v1-truncated-no-marker.xml", false, true, NULL, "b/c", 2,
	 {{"a", 1, 1704164645, 0, "x"}, {"b/c", 2, 1704164645, 0, "y"}}, 0, {NULL}},
	{"list-no-namespace.xml", false, false, NULL, NULL, 1, {{"x", 7, 1255369830, 0, NULL}}, 1,
	 {"y/"}},
	{"list-prefixed-namespace.xml", false, true, "tok", "cdata & <key>", 1,
	 {{"cdata & <key>", 42, 1255369830, 500000000, "e"}}, 0, {NULL}},
	{"list-url-encoded.xml", true, true, NULL, "d/new\nline", 3,
	 {{"d/a b+c.txt", 3, 1704164645, 0, "x"},
	  {"d/new\nline", 4, 1704164645, 0, "x"},
	  {"d/\xe2\x82\xac%", 5, 1704164645, 0, "x"}},
	 1, {"d/sub dir/"}},
	/* the same document read as if encoding had not been requested: names stay encoded */
	{"list-url-encoded.xml", false, true, NULL, "d%2Fnew%0Aline", 3,
	 {{"d%2Fa+b%2Bc.txt", 3, 1704164645, 0, "x"},
	  {"d%2Fnew%0Aline", 4, 1704164645, 0, "x"},
	  {"d%2F%E2%82%AC%25", 5, 1704164645, 0, "x"}},
	 1, {"d%2Fsub+dir%2F"}},
};

static void test_list_documents(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(list_cases); i++) {
		size_t len;
		char *doc = read_data(list_cases[i].file, &len);
		struct s3xml_list l;
		int err = s3xml_parse_list_encoded(doc, len, list_cases[i].url, &l);

		if (err)
			fail_msg("%s: error %d", list_cases[i].file, err);
		assert_int_equal(l.truncated, list_cases[i].truncated);
		assert_str_or_null(l.next_token, list_cases[i].next_token);
		assert_str_or_null(l.next_marker, list_cases[i].next_marker);
		assert_int_equal(l.n_objects, list_cases[i].n_objects);
		for (size_t j = 0; j < l.n_objects; j++) {
			const struct want_object *w = &list_cases[i].objects[j];

			assert_string_equal(l.objects[j].key, w->key);
			assert_int_equal(l.objects[j].size, w->size);
			assert_int_equal(l.objects[j].mtime.tv_sec, w->sec);
			assert_int_equal(l.objects[j].mtime.tv_nsec, w->nsec);
			assert_str_or_null(l.objects[j].etag, w->etag);
		}
		assert_int_equal(l.n_prefixes, list_cases[i].n_prefixes);
		for (size_t j = 0; j < l.n_prefixes; j++)
			assert_string_equal(l.prefixes[j], list_cases[i].prefixes[j]);
		s3xml_list_free(&l);
		assert_null(l.objects); /* free leaves it empty */
		free(doc);
	}
}

/* The plain form must not decode. */
static void test_list_plain_is_not_decoded(void **state)
{
	size_t len;
	char *doc = read_data("list-url-encoded.xml", &len);
	struct s3xml_list l;

	assert_int_equal(s3xml_parse_list(doc, len, &l), 0);
	assert_string_equal(l.objects[0].key, "d%2Fa+b%2Bc.txt");
	s3xml_list_free(&l);
	free(doc);
}

/* A full page of 1000 keys, generated. */
static void test_list_full_page(void **state)
{
	size_t cap = 1000 * 256 + 512, len = 0;
	char *doc = malloc(cap);
	struct s3xml_list l;

	assert_non_null(doc);
	len += (size_t)snprintf(doc + len, cap - len,
				"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns="
				"\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>true"
				"</IsTruncated>");
	for (int i = 0; i < 1000; i++)
		len += (size_t)snprintf(doc + len, cap - len,
					"<Contents><Key>k/%04d</Key><LastModified>2024-01-02T03:04:"
					"05.000Z</LastModified><ETag>&quot;%032x&quot;</ETag><Size>%d"
					"</Size></Contents>",
					i, i, i * 1000);
	len += (size_t)snprintf(doc + len, cap - len, "</ListBucketResult>");
	assert_int_equal(s3xml_parse_list(doc, len, &l), 0);
	assert_int_equal(l.n_objects, 1000);
	assert_string_equal(l.objects[999].key, "k/0999");
	assert_int_equal(l.objects[999].size, 999000);
	assert_string_equal(l.next_marker, "k/0999");
	s3xml_list_free(&l);
	free(doc);
}

/* ---- errors, results, uploads -------------------------------------------------------- */

static void test_error_documents(void **state)
{
	static const struct {
		const char *file, *code, *message, *region;
	} cases[] = {
		{"error-region.xml", "AuthorizationHeaderMalformed",
		 "The authorization header is malformed; the region 'us-east-1' is wrong; expecting "
		 "'eu-west-1'",
		 "eu-west-1"},
		{"error-rgw-nosuchkey.xml", "NoSuchKey", NULL, NULL},
		{"complete-200-error.xml", "InternalError",
		 "We encountered an internal error. Please try again.", NULL},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t len;
		char *doc = read_data(cases[i].file, &len);
		struct s3xml_error e;

		assert_true(s3xml_is_error(doc, len));
		assert_int_equal(s3xml_parse_error(doc, len, &e), 0);
		assert_string_equal(e.code, cases[i].code);
		assert_str_or_null(e.message, cases[i].message);
		assert_str_or_null(e.region, cases[i].region);
		s3xml_error_free(&e);
		free(doc);
	}
}

static void test_etag_results(void **state)
{
	static const struct {
		const char *file;
		int err;
		const char *etag, *error_code;
	} cases[] = {
		{"copy-object-result.xml", 0, "9b2cf535f27731c974343645a3985328", NULL},
		{"copy-part-result.xml", 0, "9b2cf535f27731c974343645a3985328", NULL},
		{"complete-result.xml", 0, "3858f62230ac3c915f300c664312c11f-9", NULL},
		{"complete-200-error.xml", EIO, NULL, "InternalError"},
		{"error-region.xml", EIO, NULL, "AuthorizationHeaderMalformed"},
		{"initiate-result.xml", EPROTO, NULL, NULL},
		{"list-empty.xml", EPROTO, NULL, NULL},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t len;
		char *doc = read_data(cases[i].file, &len);
		struct s3xml_error e;
		char *etag = (char *)"unset";
		int err = s3xml_parse_etag_result(doc, len, &etag, &e);

		if (err != cases[i].err)
			fail_msg("%s: got %d, want %d", cases[i].file, err, cases[i].err);
		assert_str_or_null(etag, cases[i].etag);
		assert_str_or_null(e.code, cases[i].error_code);
		assert_false(s3xml_is_error(doc, len) != (cases[i].err == EIO));
		/* err may be NULL */
		free(etag);
		s3xml_error_free(&e);
		etag = NULL;
		assert_int_equal(s3xml_parse_etag_result(doc, len, &etag, NULL), cases[i].err);
		free(etag);
		free(doc);
	}
}

static void test_initiate(void **state)
{
	size_t len;
	char *doc = read_data("initiate-result.xml", &len);
	char *id;

	assert_int_equal(s3xml_parse_initiate(doc, len, &id), 0);
	assert_string_equal(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
	free(id);
	free(doc);
}

static void test_delete_results(void **state)
{
	size_t len, n;
	char *doc = read_data("delete-result-errors.xml", &len);
	char *first;

	assert_int_equal(s3xml_parse_delete_result(doc, len, &n, &first), 0);
	assert_int_equal(n, 2);
	assert_string_equal(first, "sample2 & more.txt");
	free(first);
	assert_int_equal(s3xml_parse_delete_result(doc, len, &n, NULL), 0);
	assert_int_equal(n, 2);
	free(doc);

	doc = read_data("delete-result-quiet.xml", &len);
	first = (char *)"unset";
	assert_int_equal(s3xml_parse_delete_result(doc, len, &n, &first), 0);
	assert_int_equal(n, 0);
	assert_null(first);
	free(doc);
}

static void test_uploads(void **state)
{
	size_t len;
	char *doc = read_data("list-uploads.xml", &len);
	struct s3xml_uploads u;

	assert_int_equal(s3xml_parse_uploads(doc, len, &u), 0);
	assert_true(u.truncated);
	assert_int_equal(u.n_uploads, 2);
	assert_string_equal(u.uploads[0].key, "my-divisor");
	assert_string_equal(u.uploads[0].upload_id, "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw");
	assert_int_equal(u.uploads[0].initiated.tv_sec, 1289422113);
	assert_string_equal(u.uploads[1].key, "my-movie.m2ts");
	assert_int_equal(u.uploads[1].initiated.tv_sec, 1289422173);
	assert_int_equal(u.uploads[1].initiated.tv_nsec, 500000000);
	assert_string_equal(u.next_key_marker, "my-movie.m2ts");
	assert_string_equal(u.next_upload_id_marker, "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ");
	s3xml_uploads_free(&u);
	free(doc);

	doc = read_data("list-uploads-empty.xml", &len);
	assert_int_equal(s3xml_parse_uploads(doc, len, &u), 0);
	assert_false(u.truncated);
	assert_int_equal(u.n_uploads, 0);
	assert_null(u.next_key_marker);
	assert_null(u.next_upload_id_marker);
	s3xml_uploads_free(&u);
	free(doc);
}

/* ---- malformed input ----------------------------------------------------------------- */

#define LIST_OPEN "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
#define OBJ(k, s) "<Contents><Key>" k "</Key><Size>" s "</Size></Contents>"

static const struct {
	const char *what;
	enum parser parser;
	const char *doc;
	int err;
} bad_cases[] = {
	/* the right root with a field missing or wrong */
	{"contents without key", P_LIST,
	 LIST_OPEN "<Contents><Size>1</Size></Contents></ListBucketResult>", EPROTO},
	{"empty key", P_LIST, LIST_OPEN OBJ("", "1") "</ListBucketResult>", EPROTO},
	{"contents without size", P_LIST,
	 LIST_OPEN "<Contents><Key>a</Key></Contents></ListBucketResult>", EPROTO},
	{"negative size", P_LIST, LIST_OPEN OBJ("a", "-1") "</ListBucketResult>", EPROTO},
	{"size with junk", P_LIST, LIST_OPEN OBJ("a", "12a") "</ListBucketResult>", EPROTO},
	{"empty size", P_LIST, LIST_OPEN OBJ("a", "") "</ListBucketResult>", EPROTO},
	{"size 2^64", P_LIST,
	 LIST_OPEN OBJ("a", "18446744073709551616") "</ListBucketResult>", EPROTO},
	{"size INT64_MAX+1", P_LIST,
	 LIST_OPEN OBJ("a", "9223372036854775808") "</ListBucketResult>", EPROTO},
	{"size 10^40", P_LIST,
	 LIST_OPEN OBJ("a", "10000000000000000000000000000000000000000") "</ListBucketResult>", EPROTO},
	{"size INT64_MAX", P_LIST,
	 LIST_OPEN OBJ("a", "9223372036854775807") "</ListBucketResult>", 0},
	{"size hex", P_LIST, LIST_OPEN OBJ("a", "0x10") "</ListBucketResult>", EPROTO},
	{"bad time", P_LIST,
	 LIST_OPEN "<Contents><Key>a</Key><Size>1</Size><LastModified>yesterday</LastModified>"
	 "</Contents></ListBucketResult>", EPROTO},
	{"bad truncated", P_LIST,
	 LIST_OPEN "<IsTruncated>yes</IsTruncated></ListBucketResult>", EPROTO},
	{"prefix missing", P_LIST,
	 LIST_OPEN "<CommonPrefixes></CommonPrefixes></ListBucketResult>", EPROTO},
	{"bad escape", P_LIST_URL, LIST_OPEN OBJ("a%G1", "1") "</ListBucketResult>", EPROTO},
	{"short escape", P_LIST_URL, LIST_OPEN OBJ("a%2", "1") "</ListBucketResult>", EPROTO},
	{"escaped NUL", P_LIST_URL, LIST_OPEN OBJ("a%00b", "1") "</ListBucketResult>", EPROTO},
	{"bad escape in prefix", P_LIST_URL,
	 LIST_OPEN "<CommonPrefixes><Prefix>%</Prefix></CommonPrefixes></ListBucketResult>", EPROTO},
	{"error without code", P_ERROR, "<Error><Message>m</Message></Error>", EPROTO},
	{"error empty code", P_ERROR, "<Error><Code></Code></Error>", EPROTO},
	{"initiate without id", P_INITIATE,
	 "<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>", EPROTO},
	{"copy without etag", P_ETAG,
	 "<CopyObjectResult><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
	 "</CopyObjectResult>", EPROTO},
	{"copy empty quoted etag", P_ETAG,
	 "<CopyObjectResult><ETag>\"\"</ETag></CopyObjectResult>", EPROTO},
	{"200 error without code", P_ETAG, "<Error><Message>m</Message></Error>", EIO},
	{"delete error without key", P_DELETE,
	 "<DeleteResult><Error><Code>AccessDenied</Code></Error></DeleteResult>", EPROTO},
	{"upload without id", P_UPLOADS,
	 "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload></ListMultipartUploadsResult>", EPROTO},
	{"upload bad time", P_UPLOADS,
	 "<ListMultipartUploadsResult><Upload><Key>k</Key><UploadId>u</UploadId>"
	 "<Initiated>2010-13-10T20:48:33.000Z</Initiated></Upload></ListMultipartUploadsResult>", EPROTO},
	/* wrong roots */
	{"list root for uploads", P_UPLOADS, LIST_OPEN "</ListBucketResult>", EPROTO},
	{"buckets root for list", P_LIST,
	 "<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>", EPROTO},
	{"error root for list", P_LIST, "<Error><Code>NoSuchBucket</Code></Error>", EPROTO},
	{"list root for error", P_ERROR, LIST_OPEN "</ListBucketResult>", EPROTO},
	{"delete root for initiate", P_INITIATE, "<DeleteResult/>", EPROTO},
	{"nested list root", P_LIST, "<Wrapper>" LIST_OPEN "</ListBucketResult></Wrapper>", EPROTO},
	/* accepted oddities */
	{"entities and char refs", P_LIST,
	 LIST_OPEN OBJ("&amp;&lt;&gt;&quot;&apos;&#65;&#x42;", "1") "</ListBucketResult>", 0},
	{"unknown elements", P_LIST,
	 LIST_OPEN "<Foo><Contents><Key>x</Key></Contents></Foo><Bar/></ListBucketResult>", 0},
	{"truncated upper case", P_LIST,
	 LIST_OPEN "<IsTruncated> TRUE </IsTruncated></ListBucketResult>", 0},
};

static void test_bad_fields(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
		int err = run_parser(bad_cases[i].parser, bad_cases[i].doc, strlen(bad_cases[i].doc));

		if (err != bad_cases[i].err)
			fail_msg("'%s': got %d, want %d", bad_cases[i].what, err, bad_cases[i].err);
	}
}

static void test_entities_decoded(void **state)
{
	const char *doc = LIST_OPEN OBJ("&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#xe9;", "1")
		"</ListBucketResult>";
	struct s3xml_list l;

	assert_int_equal(s3xml_parse_list(doc, strlen(doc), &l), 0);
	assert_string_equal(l.objects[0].key, "&<>\"'AB\xc3\xa9");
	s3xml_list_free(&l);
}

static void test_garbage(void **state)
{
	static const char *const docs[] = {
		"", " ", " \r\n\t ", "<", "<ListBucketResult", "<ListBucketResult>",
		"<ListBucketResult></ListBucketResul>", "{\"Contents\": []}", "null",
		"<html><body><h1>502 Bad Gateway</h1></body></html>",
		"<?xml version=\"1.0\"?>", "<!-- only a comment -->",
		"<ListBucketResult/><ListBucketResult/>", "<Error><Code>X</Code></Error><Error/>",
		"\xef\xbb\xbf\xff\xfe<", "<ListBucketResult>\xff\xfe</ListBucketResult>",
		"<![CDATA[x]]>", "<ListBucketResult><Contents>",
	};

	for (size_t i = 0; i < ARRAY_LEN(docs); i++)
		assert_all_refuse(docs[i], docs[i], strlen(docs[i]));
	/* NULL with no length */
	assert_all_refuse("NULL", NULL, 0);
	/* a NUL byte inside the given length */
	static const char nul[] = "<Error><Code>A\0B</Code></Error>";

	assert_all_refuse("embedded NUL", nul, sizeof(nul) - 1);
	/* a length beyond INT_MAX is refused before libxml2 sees it */
	assert_int_equal(run_parser(P_LIST, "<ListBucketResult/>", (size_t)INT32_MAX + 1), EPROTO);
}

/* Every proper prefix of a good document must be refused, never half-parsed. */
static void test_truncated_everywhere(void **state)
{
	static const struct {
		const char *file;
		enum parser parser;
	} docs[] = {
		{"list-v2-aws.xml", P_LIST},	       {"list-v1-rgw.xml", P_LIST},
		{"list-url-encoded.xml", P_LIST_URL},  {"error-region.xml", P_ERROR},
		{"complete-200-error.xml", P_ERROR},   {"complete-result.xml", P_ETAG},
		{"delete-result-errors.xml", P_DELETE}, {"list-uploads.xml", P_UPLOADS},
		{"initiate-result.xml", P_INITIATE},
	};

	for (size_t i = 0; i < ARRAY_LEN(docs); i++) {
		size_t len, end;
		char *doc = read_data(docs[i].file, &len);

		end = len;
		while (end > 0 && doc[end - 1] != '>')
			end--;
		assert_int_equal(run_parser(docs[i].parser, doc, end), 0); /* sanity */
		for (size_t cut = 0; cut < end; cut++) {
			int err = run_parser(docs[i].parser, doc, cut);

			if (err != EPROTO)
				fail_msg("%s cut at %zu: got %d, want EPROTO", docs[i].file, cut, err);
		}
		free(doc);
	}
}

/* Kill the test (instead of hanging) if a parser opens the FIFO canary. */
static void canary_alarm(int sig)
{
	static const char msg[] = "s3xml opened an external entity (the FIFO canary): XXE\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* exiting anyway */
	}
	_exit(1);
}

/* Document form f (0..2) with an external reference to path, for root. */
static void external_doc(char *doc, size_t size, int f, const char *root, const char *path)
{
	switch (f) {
	case 0: /* a general external entity used in every field */
		snprintf(doc, size,
			 "<?xml version=\"1.0\"?><!DOCTYPE %s [<!ENTITY e SYSTEM \"file://%s\">]>"
			 "<%s><Code>&e;</Code><Key>&e;</Key><UploadId>&e;</UploadId><ETag>&e;</ETag>"
			 "<Contents><Key>&e;</Key><Size>1</Size></Contents></%s>",
			 root, path, root, root);
		break;
	case 1: /* an external DTD */
		snprintf(doc, size,
			 "<?xml version=\"1.0\"?><!DOCTYPE %s SYSTEM \"file://%s\">"
			 "<%s><Code>c</Code></%s>",
			 root, path, root, root);
		break;
	default: /* a parameter entity */
		snprintf(doc, size,
			 "<?xml version=\"1.0\"?><!DOCTYPE %s [<!ENTITY %% p SYSTEM \"file://%s\"> "
			 "%%p;]><%s><Code>c</Code></%s>",
			 root, path, root, root);
		break;
	}
}

static void test_external_entities(void **state)
{
	char dir[] = "/tmp/test_s3xml.XXXXXX";
	char fifo[64], doc[1024];
	static const char *const roots[] = {"ListBucketResult", "Error", "InitiateMultipartUploadResult",
					    "CopyObjectResult", "DeleteResult",
					    "ListMultipartUploadsResult"};
	struct sigaction sa = {.sa_handler = canary_alarm}, old;

	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	sigaction(SIGALRM, &sa, &old);
	alarm(20);
	for (int f = 0; f < 3; f++) {
		for (size_t r = 0; r < ARRAY_LEN(roots); r++) {
			external_doc(doc, sizeof(doc), f, roots[r], fifo);
			assert_all_refuse(doc, doc, strlen(doc));
		}
	}
	alarm(0);
	sigaction(SIGALRM, &old, NULL);
	unlink(fifo);
	rmdir(dir);
}

/* The classic form from the brief: whatever happens, /etc/passwd must not show up. */
static void test_xxe_passwd(void **state)
{
	const char *doc = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM "
			  "\"file:///etc/passwd\">]><Error><Code>&e;</Code><Message>&e;</Message>"
			  "</Error>";
	struct s3xml_error e;

	assert_int_equal(s3xml_parse_error(doc, strlen(doc), &e), EPROTO);
	assert_null(e.code);
	assert_null(e.message);
	assert_false(s3xml_is_error(doc, strlen(doc)));
}

static void test_entity_bombs(void **state)
{
	char *doc = malloc(256 * 1024);
	size_t len = 0;
	clock_t start = clock();

	assert_non_null(doc);
	/* billion laughs: 10^9 "lol"s if expanded */
	len = (size_t)sprintf(doc, "<?xml version=\"1.0\"?><!DOCTYPE ListBucketResult [<!ENTITY l0 \"lol\">");
	for (int i = 1; i <= 9; i++)
		len += (size_t)sprintf(doc + len, "<!ENTITY l%d \"&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;"
					  "&l%d;&l%d;&l%d;\">",
				       i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
				       i - 1);
	len += (size_t)sprintf(doc + len, "]><ListBucketResult><Contents><Key>&l9;</Key><Size>1"
					  "</Size></Contents></ListBucketResult>");
	assert_all_refuse("billion laughs", doc, len);

	/* quadratic blow-up: one 100 KB entity referenced many times */
	len = (size_t)sprintf(doc, "<!DOCTYPE Error [<!ENTITY a \"");
	memset(doc + len, 'a', 100 * 1024);
	len += 100 * 1024;
	len += (size_t)sprintf(doc + len, "\">]><Error><Code>");
	for (int i = 0; i < 2000; i++)
		len += (size_t)sprintf(doc + len, "&a;");
	len += (size_t)sprintf(doc + len, "</Code></Error>");
	assert_all_refuse("quadratic blow-up", doc, len);

	/* refused before any expansion: well under a second of CPU even under valgrind */
	assert_true((double)(clock() - start) / CLOCKS_PER_SEC < 5.0);
	free(doc);
}

static void test_deep_nesting(void **state)
{
	const int depth = 50000;
	size_t cap = (size_t)depth * 8 + 256, len = 0;
	char *doc = malloc(cap);

	assert_non_null(doc);
	len += (size_t)sprintf(doc, "<ListBucketResult>");
	for (int i = 0; i < depth; i++)
		len += (size_t)sprintf(doc + len, "<a>");
	for (int i = 0; i < depth; i++)
		len += (size_t)sprintf(doc + len, "</a>");
	len += (size_t)sprintf(doc + len, "</ListBucketResult>");
	assert_all_refuse("deep nesting", doc, len);
	free(doc);
}

static void test_declared_encoding(void **state)
{
	const char *doc = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><ListBucketResult>"
			  "<Contents><Key>caf\xe9</Key><Size>1</Size></Contents></ListBucketResult>";
	struct s3xml_list l;

	assert_int_equal(s3xml_parse_list(doc, strlen(doc), &l), 0);
	assert_string_equal(l.objects[0].key, "caf\xc3\xa9");
	s3xml_list_free(&l);
}

/* ---- time ---------------------------------------------------------------------------- */

static void test_parse_time(void **state)
{
	static const struct {
		const char *in;
		int err;
		time_t sec;
		long nsec;
	} cases[] = {
		{"2009-10-12T17:50:30.000Z", 0, 1255369830, 0},
		{"2009-10-12T17:50:30Z", 0, 1255369830, 0},
		{"2009-10-12T17:50:30.123456789Z", 0, 1255369830, 123456789},
		{"2009-10-12T17:50:30.1Z", 0, 1255369830, 100000000},
		{"2009-10-12T17:50:30.1234567891Z", 0, 1255369830, 123456789},
		{"2009-10-12T19:50:30+02:00", 0, 1255369830, 0},
		{"2009-10-12T15:50:30.5-0200", 0, 1255369830, 500000000},
		{"  2009-10-12T17:50:30Z\n", 0, 1255369830, 0},
		{"2000-02-29T00:00:00Z", 0, 951782400, 0},
		{"1970-01-01T00:00:00Z", 0, 0, 0},
		{"Mon, 12 Oct 2009 17:50:30 GMT", 0, 1255369830, 0},
		{"Mon, 12 Oct 2009 17:50:30 UTC", 0, 1255369830, 0},
		{"Thu, 1 Jan 1970 00:00:00 GMT", 0, 0, 0},
		{"", EPROTO, 0, 0},
		{"   ", EPROTO, 0, 0},
		{"2001-02-29T00:00:00Z", EPROTO, 0, 0},
		{"2009-13-01T00:00:00Z", EPROTO, 0, 0},
		{"2009-10-32T00:00:00Z", EPROTO, 0, 0},
		{"2009-10-12T24:00:00Z", EPROTO, 0, 0},
		{"2009-10-12T17:60:00Z", EPROTO, 0, 0},
		{"2009-10-12 17:50:30Z", EPROTO, 0, 0},
		{"2009-10-12T17:50:30", EPROTO, 0, 0},
		{"2009-10-12T17:50:30.Z", EPROTO, 0, 0},
		{"2009-10-12T17:50:30ZZ", EPROTO, 0, 0},
		{"2009-10-12T17:50:30+2:00", EPROTO, 0, 0},
		{"2009-1-12T17:50:30Z", EPROTO, 0, 0},
		{"1969-12-31T23:59:59Z", EPROTO, 0, 0},
		{"Foo, 12 Oct 2009 17:50:30 GMT", EPROTO, 0, 0},
		{"Mon, 12 Oct 2009 17:50:30 PST", EPROTO, 0, 0},
		{"Mon, 12 Okt 2009 17:50:30 GMT", EPROTO, 0, 0},
		{"Mon, 12 Oct 2009 17:50:30", EPROTO, 0, 0},
		{"Mon, 123 Oct 2009 17:50:30 GMT", EPROTO, 0, 0},
		{"Mon 12 Oct 2009 17:50:30 GMT", EPROTO, 0, 0},
		{"Mon,", EPROTO, 0, 0},
		{"M", EPROTO, 0, 0},
		{"1255369830", EPROTO, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct timespec ts = {-1, -1};
		int err = s3xml_parse_time(cases[i].in, &ts);

		if (err != cases[i].err)
			fail_msg("'%s': got %d, want %d", cases[i].in, err, cases[i].err);
		if (err)
			continue;
		if (ts.tv_sec != cases[i].sec || ts.tv_nsec != cases[i].nsec)
			fail_msg("'%s': got %lld.%09ld, want %lld.%09ld", cases[i].in,
				 (long long)ts.tv_sec, ts.tv_nsec, (long long)cases[i].sec,
				 cases[i].nsec);
	}
}

/* ---- builders ------------------------------------------------------------------------ */

#define NS "http://s3.amazonaws.com/doc/2006-03-01/"

static void test_build_complete(void **state)
{
	const struct s3xml_part parts[] = {{1, "a54357aff0632cce46d942af68356b38"},
					   {2, "b&<>\"'"},
					   {10000, "0c78aef83f66abc1fa1e8477f296d394"}};
	char *doc = s3xml_build_complete(parts, 3);

	assert_non_null(doc);
	assert_string_equal(doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<CompleteMultipartUpload xmlns=\"" NS "\">"
				 "<Part><PartNumber>1</PartNumber>"
				 "<ETag>&quot;a54357aff0632cce46d942af68356b38&quot;</ETag></Part>"
				 "<Part><PartNumber>2</PartNumber>"
				 "<ETag>&quot;b&amp;&lt;&gt;&quot;&apos;&quot;</ETag></Part>"
				 "<Part><PartNumber>10000</PartNumber>"
				 "<ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>"
				 "</CompleteMultipartUpload>\n");
	free(doc);
}

static void test_build_delete(void **state)
{
	const char *const keys[] = {"plain.txt", "a&b <c> \"d\" 'e'", "tab\there\nnl\rcr",
				    "\xc3\xa9t\xc3\xa9/\xe6\x97\xa5"};
	char *doc = s3xml_build_delete(keys, 4, true);

	assert_non_null(doc);
	assert_string_equal(doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<Delete xmlns=\"" NS "\"><Quiet>true</Quiet>"
				 "<Object><Key>plain.txt</Key></Object>"
				 "<Object><Key>a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;</Key></Object>"
				 "<Object><Key>tab&#9;here&#10;nl&#13;cr</Key></Object>"
				 "<Object><Key>\xc3\xa9t\xc3\xa9/\xe6\x97\xa5</Key></Object>"
				 "</Delete>\n");
	free(doc);

	doc = s3xml_build_delete(keys, 1, false);
	assert_string_equal(doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<Delete xmlns=\"" NS "\"><Object><Key>plain.txt</Key></Object>"
				 "</Delete>\n");
	free(doc);
}

/* What the builders escape, an XML parser (libxml2, through s3xml) reads back unchanged. */
static void test_build_round_trip(void **state)
{
	const char *const keys[] = {"a&b <c> \"d\" 'e'", "tab\there\nnl\rcr\r\n", " lead and trail ",
				    "]]>&amp;", "\xf0\x9f\x98\x80"};

	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		char *doc = s3xml_build_delete(&keys[i], 1, false);
		char *start = strstr(doc, "<Key>") + 5, *end = strstr(doc, "</Key>");
		char wrapped[512];
		struct s3xml_error e;

		snprintf(wrapped, sizeof(wrapped), "<Error><Code>%.*s</Code></Error>",
			 (int)(end - start), start);
		assert_int_equal(s3xml_parse_error(wrapped, strlen(wrapped), &e), 0);
		assert_string_equal(e.code, keys[i]);
		s3xml_error_free(&e);
		free(doc);
	}
}

static void test_build_refusals(void **state)
{
	const char *const bad_keys[] = {"ctl\x01", "\x1f", "bad utf8 \xff", "truncated \xc3", ""};
	const char *many[1001];
	const struct s3xml_part zero[] = {{0, "e"}}, big[] = {{10001, "e"}}, ctl[] = {{1, "e\x02"}};

	for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++) {
		errno = 0;
		assert_null(s3xml_build_delete(&bad_keys[i], 1, true));
		assert_int_equal(errno, EINVAL);
	}
	for (size_t i = 0; i < ARRAY_LEN(many); i++)
		many[i] = "k";
	errno = 0;
	assert_null(s3xml_build_delete(many, 1001, true));
	assert_int_equal(errno, EINVAL);
	char *ok = s3xml_build_delete(many, 1000, true);

	assert_non_null(ok);
	free(ok);
	errno = 0;
	assert_null(s3xml_build_delete(many, 0, true));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(s3xml_build_complete(zero, 0));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(s3xml_build_complete(zero, 1));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(s3xml_build_complete(big, 1));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(s3xml_build_complete(ctl, 1));
	assert_int_equal(errno, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_documents),
		cmocka_unit_test(test_list_plain_is_not_decoded),
		cmocka_unit_test(test_list_full_page),
		cmocka_unit_test(test_error_documents),
		cmocka_unit_test(test_etag_results),
		cmocka_unit_test(test_initiate),
		cmocka_unit_test(test_delete_results),
		cmocka_unit_test(test_uploads),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_entities_decoded),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_external_entities),
		cmocka_unit_test(test_xxe_passwd),
		cmocka_unit_test(test_entity_bombs),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_declared_encoding),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_build_complete),
		cmocka_unit_test(test_build_delete),
		cmocka_unit_test(test_build_round_trip),
		cmocka_unit_test(test_build_refusals),
	};
	int failed;

	s3xml_global_init();
	failed = cmocka_run_group_tests_name("s3xml", tests, NULL, NULL);
	s3xml_global_cleanup();
	return failed ? 1 : 0;
}
