/*
 * test_errno.c - the ONE HTTP status / S3 code -> errno table (store_http_errno) and the
 * thread-local last error. The rule that matters most: only a 404 is ENOENT; a 5xx, a
 * timeout or an error code in a 200 body never is.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"

static void test_table(void **state)
{
	static const struct {
		long status;
		const char *code;
		int want;
	} cases[] = {
		{200, NULL, 0},
		{200, "", 0},
		{204, NULL, 0},
		{206, NULL, 0},
		{404, NULL, ENOENT},
		{404, "NoSuchKey", ENOENT},
		{404, "NoSuchBucket", ENOENT},
		{404, "NoSuchUpload", ENOENT},
		{403, NULL, EACCES},
		{403, "AccessDenied", EACCES},
		{403, "InvalidAccessKeyId", EACCES},
		{403, "SignatureDoesNotMatch", EACCES},
		{403, "RequestTimeTooSkewed", EACCES},
		{400, "AuthorizationHeaderMalformed", EACCES},
		{400, NULL, EINVAL},
		{400, "InvalidArgument", EINVAL},
		{400, "BadDigest", EBADMSG},
		{400, "InvalidDigest", EBADMSG},
		{400, "XAmzContentSHA256Mismatch", EBADMSG},
		{400, "EntityTooLarge", EFBIG},
		{400, "EntityTooSmall", EINVAL},
		{400, "InvalidPart", EINVAL},
		{400, "KeyTooLongError", ENAMETOOLONG},
		{400, "MetadataTooLarge", E2BIG},
		{400, "RequestTimeout", ETIMEDOUT},
		{400, "MalformedXML", EPROTO},
		{405, NULL, EOPNOTSUPP},
		{409, NULL, EBUSY},
		{409, "BucketNotEmpty", ENOTEMPTY},
		{409, "OperationAborted", EAGAIN},
		{411, NULL, EINVAL},
		{412, NULL, ESTALE},
		{412, "PreconditionFailed", ESTALE},
		{413, NULL, EFBIG},
		{416, "InvalidRange", ERANGE},
		{429, NULL, EAGAIN},
		{301, "PermanentRedirect", EIO},
		{307, NULL, EIO},
		{500, NULL, EIO},
		{500, "InternalError", EIO},
		{501, "NotImplemented", EOPNOTSUPP},
		{502, NULL, EIO},
		{503, "SlowDown", EIO},
		{504, NULL, EIO},
		/* 200 with an <Error> body (CopyObject, CompleteMultipartUpload) */
		{200, "InternalError", EIO},
		{200, "SlowDown", EIO},
		{200, "InvalidPart", EINVAL},
		{200, "SomethingNew", EIO},
		/* no response at all */
		{0, NULL, EIO},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = store_http_errno(cases[i].status, cases[i].code);
		if (got != cases[i].want)
			fail_msg("%ld %s: got %d (%s), want %d (%s)", cases[i].status,
				 cases[i].code ? cases[i].code : "(none)", got, strerror(got),
				 cases[i].want, strerror(cases[i].want));
	}
}

/* Nothing but a 404 is ENOENT, whatever the code says. */
static void test_only_404_is_enoent(void **state)
{
	static const char *const codes[] = {
		NULL, "", "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound",
		"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout",
	};
	for (long status = 0; status < 600; status++) {
		if (status == 404)
			continue;
		for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
			int got = store_http_errno(status, codes[c]);
			if (got == ENOENT)
				fail_msg("%ld %s maps to ENOENT", status, codes[c] ? codes[c] : "(none)");
			if (status >= 500 && got == 0)
				fail_msg("%ld %s maps to success", status, codes[c] ? codes[c] : "(none)");
			if (status >= 300 && got == 0)
				fail_msg("%ld %s maps to success", status, codes[c] ? codes[c] : "(none)");
		}
	}
	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++)
		assert_int_equal(store_http_errno(404, codes[c]), ENOENT);
}

/* Every 5xx (after the engine's retries) is a server failure: EIO, or EOPNOTSUPP for 501. */
static void test_5xx_is_eio(void **state)
{
	for (long status = 500; status < 600; status++) {
		int got = store_http_errno(status, "NoSuchKey");
		assert_int_equal(got, status == 501 ? EOPNOTSUPP : EIO);
	}
}

static void *other_thread(void *arg)
{
	const struct store_error *e = store_last_error();
	int *seen = arg;

	*seen = e->err; /* a new thread starts clean */
	store_set_error(ETIMEDOUT, 0, NULL, "Operation timed out after 30000 milliseconds");
	return NULL;
}

static void test_last_error(void **state)
{
	char buf[256];
	pthread_t t;
	int seen = -1;

	store_set_error(ENOENT, 404, "NoSuchBucket", "The specified bucket does not exist");
	store_format_error(buf, sizeof(buf));
	assert_string_equal(buf, "NoSuchBucket (404): The specified bucket does not exist");
	assert_int_equal(pthread_create(&t, NULL, other_thread, &seen), 0);
	pthread_join(t, NULL);
	assert_int_equal(seen, 0);
	/* the other thread's error did not touch ours */
	assert_int_equal(store_last_error()->err, ENOENT);
	assert_int_equal(store_last_error()->http_status, 404);
	assert_string_equal(store_last_error()->code, "NoSuchBucket");

	store_set_error(ETIMEDOUT, 0, NULL, "Operation timed out");
	store_format_error(buf, sizeof(buf));
	assert_string_equal(buf, "Operation timed out");
	store_set_error(ECONNREFUSED, 0, NULL, NULL);
	store_format_error(buf, sizeof(buf));
	assert_string_equal(buf, strerror(ECONNREFUSED));
	store_set_error(EIO, 500, NULL, "");
	store_format_error(buf, sizeof(buf));
	assert_non_null(strstr(buf, "500"));
	/* long inputs are cut, not overflowed */
	char longcode[300];
	memset(longcode, 'X', sizeof(longcode) - 1);
	longcode[sizeof(longcode) - 1] = '\0';
	store_set_error(EIO, 400, longcode, longcode);
	assert_true(strlen(store_last_error()->code) < sizeof(store_last_error()->code));
	assert_true(strlen(store_last_error()->message) < sizeof(store_last_error()->message));
}

static void test_attr_copy(void **state)
{
	struct store_attr a, b;
	struct store_kv kv[2] = {{"xattr", "v1"}, {"color", "blue"}};

	store_attr_init(&a);
	a.size = 42;
	a.mode = 0100644;
	a.has = STORE_HAS_MODE;
	a.extra = kv;
	a.n_extra = 2;
	assert_int_equal(store_attr_copy(&b, &a), 0);
	assert_true(b.size == 42);
	assert_int_equal(b.n_extra, 2);
	assert_ptr_not_equal(b.extra, a.extra);
	assert_ptr_not_equal(b.extra[1].value, kv[1].value);
	assert_string_equal(b.extra[1].value, "blue");
	store_attr_free(&b);
	assert_null(b.extra);
	assert_int_equal(b.n_extra, 0);

	struct store_list l = {0};
	store_list_free(&l);
	store_list_free(NULL);
}

/* Keys must be UTF-8: what a file name may hold but a key may not. */
static void test_key_utf8(void **state)
{
	static const char *good[] = {
		"", "plain/key", "with space", "ünïcødé/名前", "emoji\xf0\x9f\x98\x80",
		"ctl\x01-char", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
		"\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
	};
	static const char *bad[] = {
		"\xff\xfe",         /* not UTF-8 at all */
		"latin1-\xe9t\xe9", /* ISO 8859-1 */
		"\x80lead",          /* a lone continuation byte */
		"\xc0\xaf",         /* overlong '/' */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\xaf",    /* overlong '/' in three bytes */
		"\xf0\x80\x80\xaf", /* overlong in four */
		"\xed\xa0\x80",    /* a surrogate, U+D800 */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xf5\x80\x80\x80", /* lead byte past f4 */
		"cut\xe2\x82",      /* truncated at the end */
		"cut\xe2x\xac",     /* interrupted */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!store_key_is_utf8(good[i]))
			fail_msg("good key %zu refused", i);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (store_key_is_utf8(bad[i]))
			fail_msg("bad key %zu accepted", i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_only_404_is_enoent),
		cmocka_unit_test(test_5xx_is_eio),
		cmocka_unit_test(test_last_error),
		cmocka_unit_test(test_attr_copy),
		cmocka_unit_test(test_key_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
