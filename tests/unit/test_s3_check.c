/*
 * test_s3_check.c - the one line a failed mount check gives (store_s3_check_message), fed
 * canned S3 answers: AWS's 301 PermanentRedirect (region in x-amz-bucket-region only, or in
 * the body too), 400 AuthorizationHeaderMalformed with <Region>, 307, credentials errors, a
 * missing bucket, 5xx and bodies that are not XML. A bucket in another region must name
 * that region and the option to set; nothing else may claim a region.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"

#define EP "https://s3.us-east-1.amazonaws.com"

/* AWS's answers, as sent (RequestId/HostId shortened). */
static const char redirect_body[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>"
	"<Message>The bucket you are attempting to access must be addressed using the specified "
	"endpoint. Please send all future requests to this endpoint.</Message>"
	"<Endpoint>photos.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>photos</Bucket>"
	"<RequestId>X</RequestId><HostId>Y</HostId></Error>";
static const char redirect_body_region[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>"
	"<Message>The bucket is in this region: ap-south-1. Please use this region to retry the "
	"request</Message><Region>ap-south-1</Region><RequestId>X</RequestId></Error>";
static const char malformed_body[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed"
	"</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; "
	"expecting 'eu-central-1'</Message><Region>eu-central-1</Region><RequestId>X</RequestId>"
	"</Error>";
static const char signature_body[] =
	"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
	"does not match the signature you provided.</Message></Error>";
static const char nosuchbucket_body[] =
	"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
	"<BucketName>photos</BucketName></Error>";
static const char slowdown_body[] =
	"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

/* An answer to the bucket check of bucket 'photos' at EP, configured for us-east-1. */
static struct store_s3_check_answer answer(long status, const char *body, const char *header,
					   const char *option)
{
	struct store_s3_check_answer a = {0};

	a.bucket = "photos";
	a.endpoint = EP;
	a.region = "us-east-1";
	a.region_option = option;
	a.status = status;
	a.body = body;
	a.body_len = body ? strlen(body) : 0;
	a.bucket_region = header;
	return a;
}

static void check(long status, const char *body, const char *header, const char *option,
		  char *out, size_t outlen)
{
	struct store_s3_check_answer a = answer(status, body, header, option);

	memset(out, 'X', outlen);
	store_s3_check_message(&a, out, outlen);
	assert_non_null(memchr(out, '\0', outlen));
	print_message("  %ld: %s\n", status, out);
}

static void assert_has(const char *text, const char *want)
{
	if (!strstr(text, want))
		fail_msg("'%s' does not contain '%s'", text, want);
}

static void assert_lacks(const char *text, const char *unwanted)
{
	if (strstr(text, unwanted))
		fail_msg("'%s' contains '%s'", text, unwanted);
}

static void test_wrong_region(void **state)
{
	char out[512];

	/* 301 with the region only in the header (what AWS sends for a ListObjectsV2) */
	check(301, redirect_body, "eu-west-1", NULL, out, sizeof(out));
	assert_has(out, "bucket 'photos' is in region 'eu-west-1'");
	assert_has(out, "add -o region=eu-west-1");
	assert_has(out, "PermanentRedirect");

	/* 301 with <Region> in the body and no header */
	check(301, redirect_body_region, NULL, NULL, out, sizeof(out));
	assert_has(out, "bucket 'photos' is in region 'ap-south-1'");
	assert_has(out, "add -o region=ap-south-1");

	/* a HEAD-like 301: no body at all, the header only */
	check(301, NULL, "sa-east-1", NULL, out, sizeof(out));
	assert_has(out, "is in region 'sa-east-1'");
	assert_has(out, "add -o region=sa-east-1");

	/* 400 AuthorizationHeaderMalformed: signed for the wrong region */
	check(400, malformed_body, NULL, NULL, out, sizeof(out));
	assert_has(out, "bucket 'photos' is in region 'eu-central-1', not 'us-east-1'");
	assert_has(out, "add -o region=eu-central-1");

	/* 307 TemporaryRedirect with the header */
	check(307, "<Error><Code>TemporaryRedirect</Code><Message>Please re-send this request to "
		   "the specified temporary endpoint.</Message></Error>",
	      "us-west-2", NULL, out, sizeof(out));
	assert_has(out, "add -o region=us-west-2");

	/* the dest store names its own option */
	check(301, redirect_body, "eu-west-1", "dest_region", out, sizeof(out));
	assert_has(out, "add -o dest_region=eu-west-1");
}

static void test_redirect_without_region(void **state)
{
	char out[512];

	/* a redirect that names no region, or the region already configured: no region claim */
	check(301, redirect_body, NULL, NULL, out, sizeof(out));
	assert_lacks(out, "is in region");
	assert_has(out, "PermanentRedirect");
	assert_has(out, "set region= or endpoint=");
	check(301, redirect_body, "us-east-1", NULL, out, sizeof(out));
	assert_lacks(out, "is in region");
	assert_has(out, "set region= or endpoint=");
	check(301, "<html>moved</html>", "", "dest_region", out, sizeof(out));
	assert_lacks(out, "is in region");
	assert_has(out, "set dest_region= or endpoint=");
}

/* Temporary credentials: AccessDenied without a token may be a temporary key that lost its
 * token (RGW answers so; AWS says InvalidAccessKeyId), and a token the server cannot read
 * (RGW: 400 InvalidArgument) is named. */
static void test_session_token_hints(void **state)
{
	struct store_s3_check_answer a;
	const char *denied = "<Error><Code>AccessDenied</Code><Message></Message></Error>";
	const char *invalid = "<Error><Code>InvalidArgument</Code><Message></Message></Error>";
	char out[512];

	(void)state;
	a = answer(403, denied, NULL, NULL);
	store_s3_check_message(&a, out, sizeof(out));
	assert_has(out, "AccessDenied");
	assert_has(out, "check its policy");
	assert_has(out, "temporary keys need their session token");
	a.session_token = true;
	store_s3_check_message(&a, out, sizeof(out));
	assert_has(out, "check its policy");
	assert_lacks(out, "temporary keys need");

	a = answer(400, invalid, NULL, NULL);
	a.session_token = true;
	store_s3_check_message(&a, out, sizeof(out));
	assert_has(out, "InvalidArgument");
	assert_has(out, "the session token was refused");
	a.session_token = false;
	store_s3_check_message(&a, out, sizeof(out));
	assert_lacks(out, "session token");
}

static void test_other_failures(void **state)
{
	char out[512];

	check(403, signature_body, NULL, NULL, out, sizeof(out));
	assert_has(out, "cannot access bucket 'photos' at " EP ": SignatureDoesNotMatch");
	assert_has(out, "the secret key is wrong");
	assert_lacks(out, "region");

	/* AWS sends x-amz-bucket-region on a 403 too: it is no reason to talk of regions */
	check(403, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
	      "eu-west-1", NULL, out, sizeof(out));
	assert_has(out, "AccessDenied");
	assert_has(out, "check its policy");
	assert_lacks(out, "region");

	check(404, nosuchbucket_body, NULL, NULL, out, sizeof(out));
	assert_has(out, "NoSuchBucket (the bucket does not exist");
	check(404, NULL, NULL, NULL, out, sizeof(out));
	assert_has(out, "the bucket does not exist");

	check(503, slowdown_body, NULL, NULL, out, sizeof(out));
	assert_has(out, "the server keeps failing: SlowDown: Please reduce your request rate.");
	assert_has(out, "HTTP 503");

	check(418, "not xml at all <", NULL, NULL, out, sizeof(out));
	assert_has(out, "cannot access bucket 'photos' at " EP ": error (HTTP 418)");
}

static void test_short_buffer(void **state)
{
	char out[24];

	check(301, redirect_body, "eu-west-1", NULL, out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrong_region),
		cmocka_unit_test(test_redirect_without_region),
		cmocka_unit_test(test_other_failures),
		cmocka_unit_test(test_session_token_hints),
		cmocka_unit_test(test_short_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
