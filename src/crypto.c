/*
 * crypto.c - SHA-256, HMAC-SHA256 and MD5 through OpenSSL's EVP interface, plus hex and
 * base64. The only file that includes <openssl/...>. No state of its own and no locks: every
 * function works on its arguments (and the caller's own crypto_md5_ctx), so any thread may
 * call it.
 *
 * The void functions cannot report failure; OpenSSL fails them only when it cannot allocate
 * a few bytes or the default provider is missing (a broken installation), so they abort with
 * a message rather than hand back a wrong digest.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "crypto.h"
#include "log.h"

/* Bytes read per pread() by crypto_md5_fd. */
#define CRYPTO_FD_CHUNK (256 * 1024)

struct crypto_md5_ctx {
	EVP_MD_CTX *md; /* initialised for MD5 */
};

static void crypto_die(const char *what)
{
	log_error("openssl: '%s' failed; the OpenSSL installation or memory is broken, aborting",
		  what);
	abort();
}

static void crypto_digest(const EVP_MD *type, const void *data, size_t len, unsigned char *out)
{
	unsigned int outlen = 0;

	if (!EVP_Digest(data, len, out, &outlen, type, NULL))
		crypto_die("EVP_Digest");
}

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN])
{
	crypto_digest(EVP_sha256(), data, len, out);
}

void crypto_sha256_hex(const void *data, size_t len, char out[2 * CRYPTO_SHA256_LEN + 1])
{
	unsigned char md[CRYPTO_SHA256_LEN];

	crypto_sha256(data, len, md);
	crypto_hex(md, sizeof(md), out);
}

void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
			unsigned char out[CRYPTO_SHA256_LEN])
{
	unsigned int outlen = 0;

	/* HMAC() is the one-shot form that OpenSSL 3 keeps undeprecated (HMAC_CTX is not). */
	if (keylen > INT32_MAX || !HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen))
		crypto_die("HMAC");
}

void crypto_md5(const void *data, size_t len, unsigned char out[CRYPTO_MD5_LEN])
{
	crypto_digest(EVP_md5(), data, len, out);
}

int crypto_md5_fd(int fd, off_t off, uint64_t len, unsigned char out[CRYPTO_MD5_LEN])
{
	struct crypto_md5_ctx *ctx = NULL;
	unsigned char *buf = NULL;
	int err = 0;

	if (off < 0 || len > (uint64_t)INT64_MAX - (uint64_t)off)
		return EINVAL;
	buf = malloc(CRYPTO_FD_CHUNK);
	ctx = crypto_md5_create();
	if (!buf || !ctx) {
		err = ENOMEM;
		goto out;
	}
	while (len > 0) {
		size_t want = len < CRYPTO_FD_CHUNK ? (size_t)len : CRYPTO_FD_CHUNK;
		ssize_t got = pread(fd, buf, want, off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err = errno;
			goto out;
		}
		if (got == 0) { /* the file is shorter than off+len */
			err = EIO;
			goto out;
		}
		crypto_md5_update(ctx, buf, (size_t)got);
		off += got;
		len -= (uint64_t)got;
	}
	crypto_md5_final(ctx, out);
out:
	crypto_md5_destroy(ctx);
	free(buf);
	return err;
}

void crypto_hex(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

void crypto_base64(const unsigned char *in, size_t len, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 0x3f];
		*out++ = alphabet[(v >> 6) & 0x3f];
		*out++ = alphabet[v & 0x3f];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 0x3f];
		*out++ = '=';
		*out++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 0x3f];
		*out++ = alphabet[(v >> 6) & 0x3f];
		*out++ = '=';
	}
	*out = '\0';
}

struct crypto_md5_ctx *crypto_md5_create(void)
{
	struct crypto_md5_ctx *ctx = malloc(sizeof(*ctx));

	if (!ctx)
		return NULL;
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md) {
		free(ctx);
		return NULL;
	}
	if (!EVP_DigestInit_ex(ctx->md, EVP_md5(), NULL))
		crypto_die("EVP_DigestInit_ex(md5)");
	return ctx;
}

void crypto_md5_update(struct crypto_md5_ctx *ctx, const void *data, size_t len)
{
	if (!EVP_DigestUpdate(ctx->md, data, len))
		crypto_die("EVP_DigestUpdate(md5)");
}

void crypto_md5_final(struct crypto_md5_ctx *ctx, unsigned char out[CRYPTO_MD5_LEN])
{
	unsigned int outlen = 0;

	if (!EVP_DigestFinal_ex(ctx->md, out, &outlen))
		crypto_die("EVP_DigestFinal_ex(md5)");
	/* Ready for the next stream, so one context can hash several in turn. */
	if (!EVP_DigestInit_ex(ctx->md, EVP_md5(), NULL))
		crypto_die("EVP_DigestInit_ex(md5)");
}

bool crypto_is_md5_hex(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n >= 32 || !isxdigit((unsigned char)s[n]))
			return false;
	return n == 32;
}

void crypto_md5_reset(struct crypto_md5_ctx *ctx)
{
	if (!EVP_DigestInit_ex(ctx->md, EVP_md5(), NULL))
		crypto_die("EVP_DigestInit_ex(md5)");
}

void crypto_md5_destroy(struct crypto_md5_ctx *ctx)
{
	if (!ctx)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}
