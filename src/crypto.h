/*
 * crypto.h - the only door to OpenSSL: SHA-256, HMAC-SHA256, MD5, hex and base64.
 * Pure functions, callable from any thread. The void functions cannot fail except when OpenSSL
 * cannot allocate a few bytes or is broken; then they log and abort() rather than return a wrong
 * digest.
 */
#ifndef OBJFS_CRYPTO_H
#define OBJFS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_MD5_LEN 16

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN]);
/* Lower-case hex of SHA-256; out gets 64 chars and a NUL. */
void crypto_sha256_hex(const void *data, size_t len, char out[2 * CRYPTO_SHA256_LEN + 1]);
void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
			unsigned char out[CRYPTO_SHA256_LEN]);
void crypto_md5(const void *data, size_t len, unsigned char out[CRYPTO_MD5_LEN]);
/* MD5 of len bytes of fd from offset off (pread; fd position unchanged). 0 or errno
 * (EIO when the file is shorter than off+len, EINVAL for a negative or overflowing range,
 * ENOMEM, or pread's errno). */
int crypto_md5_fd(int fd, off_t off, uint64_t len, unsigned char out[CRYPTO_MD5_LEN]);

/* Lower-case hex; out must hold 2*len+1. */
void crypto_hex(const unsigned char *in, size_t len, char *out);
/* Standard base64 with padding; out must hold 4*((len+2)/3)+1. */
void crypto_base64(const unsigned char *in, size_t len, char *out);

/* Incremental MD5, for hashing data as it streams. create returns NULL on ENOMEM; final
 * writes the digest and resets ctx for a new stream; destroy accepts NULL. One ctx belongs to
 * one thread at a time. */
struct crypto_md5_ctx;
struct crypto_md5_ctx *crypto_md5_create(void);
void crypto_md5_update(struct crypto_md5_ctx *ctx, const void *data, size_t len);
void crypto_md5_final(struct crypto_md5_ctx *ctx, unsigned char out[CRYPTO_MD5_LEN]);
/* Whether s is 32 hex digits (an ETag that can be an MD5). */
bool crypto_is_md5_hex(const char *s);
/* Forget what was hashed: the context starts a new stream. */
void crypto_md5_reset(struct crypto_md5_ctx *ctx);
void crypto_md5_destroy(struct crypto_md5_ctx *ctx);

#endif
