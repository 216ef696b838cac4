/*
 * test_crypto.c - crypto.c against published vectors: FIPS 180-2 (SHA-256), RFC 4231
 * (HMAC-SHA256), RFC 1321 (MD5), RFC 4648 (base64); and crypto_md5_fd over a real file,
 * including ranges across its read-chunk boundaries and a file shorter than the range.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void assert_hex(const unsigned char *md, size_t len, const char *want)
{
	char hex[2 * 64 + 1];

	crypto_hex(md, len, hex);
	assert_string_equal(hex, want);
}

static void test_sha256(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	unsigned char md[CRYPTO_SHA256_LEN];
	char hex[2 * CRYPTO_SHA256_LEN + 1];
	char *million = malloc(1000000);

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		crypto_sha256(cases[i].in, strlen(cases[i].in), md);
		assert_hex(md, sizeof(md), cases[i].out);
		crypto_sha256_hex(cases[i].in, strlen(cases[i].in), hex);
		assert_string_equal(hex, cases[i].out);
	}
	assert_non_null(million);
	memset(million, 'a', 1000000);
	crypto_sha256_hex(million, 1000000, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

static void test_hmac_sha256(void **state)
{
	unsigned char key[131], md[CRYPTO_SHA256_LEN];
	const char *data;

	/* RFC 4231 test case 1 */
	memset(key, 0x0b, 20);
	data = "Hi There";
	crypto_hmac_sha256(key, 20, data, strlen(data), md);
	assert_hex(md, sizeof(md), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	/* test case 2 */
	data = "what do ya want for nothing?";
	crypto_hmac_sha256("Jefe", 4, data, strlen(data), md);
	assert_hex(md, sizeof(md), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* test case 6: a key longer than the block */
	memset(key, 0xaa, 131);
	data = "Test Using Larger Than Block-Size Key - Hash Key First";
	crypto_hmac_sha256(key, 131, data, strlen(data), md);
	assert_hex(md, sizeof(md), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	/* the output may alias the key, as the SigV4 key chain does */
	memcpy(md, "Jefe", 4);
	data = "what do ya want for nothing?";
	crypto_hmac_sha256(md, 4, data, strlen(data), md);
	assert_hex(md, sizeof(md), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static const struct {
	const char *in, *out;
} md5_cases[] = {
	{"", "d41d8cd98f00b204e9800998ecf8427e"},
	{"a", "0cc175b9c0f1b6a831c399e269772661"},
	{"abc", "900150983cd24fb0d6963f7d28e17f72"},
	{"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
	{"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
	 "57edf4a22be3c955ac49da2e2107b67a"},
};

static void test_md5(void **state)
{
	unsigned char md[CRYPTO_MD5_LEN];

	for (size_t i = 0; i < ARRAY_LEN(md5_cases); i++) {
		crypto_md5(md5_cases[i].in, strlen(md5_cases[i].in), md);
		assert_hex(md, sizeof(md), md5_cases[i].out);
	}
}

static void test_md5_incremental(void **state)
{
	struct crypto_md5_ctx *ctx = crypto_md5_create();
	unsigned char md[CRYPTO_MD5_LEN];

	assert_non_null(ctx);
	/* one context, reused after each final; fed in pieces of every size 1..7 */
	for (size_t i = 0; i < ARRAY_LEN(md5_cases); i++) {
		const char *in = md5_cases[i].in;
		size_t len = strlen(in), step = i % 7 + 1;

		for (size_t off = 0; off < len; off += step)
			crypto_md5_update(ctx, in + off, len - off < step ? len - off : step);
		crypto_md5_final(ctx, md);
		assert_hex(md, sizeof(md), md5_cases[i].out);
	}
	crypto_md5_destroy(ctx);
	crypto_md5_destroy(NULL);
}

/* reset forgets what was fed: a body sent again from its start is hashed from scratch */
static void test_md5_reset(void **state)
{
	struct crypto_md5_ctx *ctx = crypto_md5_create();
	unsigned char md[CRYPTO_MD5_LEN];
	const char *in = md5_cases[ARRAY_LEN(md5_cases) - 1].in;

	assert_non_null(ctx);
	crypto_md5_update(ctx, "stale bytes of an earlier attempt", 33);
	crypto_md5_reset(ctx);
	crypto_md5_update(ctx, in, strlen(in));
	crypto_md5_final(ctx, md);
	assert_hex(md, sizeof(md), md5_cases[ARRAY_LEN(md5_cases) - 1].out);
	crypto_md5_destroy(ctx);
}

static void test_is_md5_hex(void **state)
{
	assert_true(crypto_is_md5_hex("d41d8cd98f00b204e9800998ecf8427e"));
	assert_true(crypto_is_md5_hex("D41D8CD98F00B204E9800998ECF8427E"));
	assert_false(crypto_is_md5_hex(""));
	assert_false(crypto_is_md5_hex("d41d8cd98f00b204e9800998ecf8427"));   /* 31 */
	assert_false(crypto_is_md5_hex("d41d8cd98f00b204e9800998ecf8427e0")); /* 33 */
	assert_false(crypto_is_md5_hex("d41d8cd98f00b204e9800998ecf8427g"));
	assert_false(crypto_is_md5_hex("445d6bd9e7b3a3c2ec5d1a1ee0d25e45-4")); /* multipart */
	assert_false(crypto_is_md5_hex("\"d41d8cd98f00b204e9800998ecf8427\""));
}

static void test_hex_base64(void **state)
{
	static const struct {
		const char *in, *out;
	} b64[] = {
		{"", ""},	  {"f", "Zg=="},	 {"fo", "Zm8="},	  {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
		{"\xff\xfe\xfd", "//79"},
	};
	const unsigned char bytes[] = {0x00, 0x01, 0xab, 0xff};
	unsigned char md[CRYPTO_MD5_LEN];
	char out[64];

	for (size_t i = 0; i < ARRAY_LEN(b64); i++) {
		memset(out, 'x', sizeof(out));
		crypto_base64((const unsigned char *)b64[i].in, strlen(b64[i].in), out);
		assert_string_equal(out, b64[i].out);
	}
	crypto_hex(bytes, sizeof(bytes), out);
	assert_string_equal(out, "0001abff");
	crypto_hex(bytes, 0, out);
	assert_string_equal(out, "");
	/* Content-MD5 of "hello", as S3 expects it */
	crypto_md5("hello", 5, md);
	crypto_base64(md, sizeof(md), out);
	assert_string_equal(out, "XUFAKrxLKna5cZ2REBfFkg==");
}

static int temp_file(const void *data, size_t len)
{
	char path[] = "/tmp/test_crypto.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void test_md5_fd(void **state)
{
	const size_t size = 1000000;
	unsigned char *data = malloc(size), md[CRYPTO_MD5_LEN], want[CRYPTO_MD5_LEN];
	static const struct {
		off_t off;
		uint64_t len;
	} ranges[] = {
		{0, 0}, {0, 1}, {5, 1000}, {262143, 2}, {262144, 262144}, {1, 524288},
		{100, 999900}, {999999, 1}, {0, 1000000},
	};
	int fd;

	assert_non_null(data);
	/* one million 'a': MD5 published in RFC 1321's test suite program */
	memset(data, 'a', size);
	fd = temp_file(data, size);
	assert_int_equal(crypto_md5_fd(fd, 0, size, md), 0);
	assert_hex(md, sizeof(md), "7707d6ae4e027c70eea2a935c2296f21");
	close(fd);

	/* varied content: every range equals the one-shot digest of the same bytes */
	for (size_t i = 0; i < size; i++)
		data[i] = (unsigned char)(i * 131 + i / 977);
	fd = temp_file(data, size);
	assert_int_equal(lseek(fd, 7, SEEK_SET), 7);
	for (size_t i = 0; i < ARRAY_LEN(ranges); i++) {
		crypto_md5(data + ranges[i].off, (size_t)ranges[i].len, want);
		assert_int_equal(crypto_md5_fd(fd, ranges[i].off, ranges[i].len, md), 0);
		assert_memory_equal(md, want, sizeof(md));
	}
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 7); /* position untouched */

	assert_int_equal(crypto_md5_fd(fd, 0, size + 1, md), EIO);
	assert_int_equal(crypto_md5_fd(fd, (off_t)size, 1, md), EIO);
	assert_int_equal(crypto_md5_fd(fd, -1, 1, md), EINVAL);
	assert_int_equal(crypto_md5_fd(fd, 1, UINT64_MAX, md), EINVAL);
	close(fd);
	assert_int_equal(crypto_md5_fd(fd, 0, 1, md), EBADF);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),	       cmocka_unit_test(test_hmac_sha256),
		cmocka_unit_test(test_md5),	       cmocka_unit_test(test_md5_incremental),
		cmocka_unit_test(test_hex_base64),     cmocka_unit_test(test_md5_fd),
		cmocka_unit_test(test_md5_reset),      cmocka_unit_test(test_is_md5_hex),
	};

	return cmocka_run_group_tests_name("crypto", tests, NULL, NULL) ? 1 : 0;
}
