/*
 * hash.h: the two hashes ckptfs uses.
 *
 * SHA-256 names content-addressed objects (a collision would be silent
 * data loss, so the name hash must be cryptographic). XXH3-64 checks decoded
 * chunk bytes on every read (cheap enough to never skip).
 */
#ifndef CKPT_HASH_H
#define CKPT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SHA256_LEN 32
#define HASH_SHA256_HEX_LEN 64

void hash_sha256(const void *data, size_t len, uint8_t out[HASH_SHA256_LEN]);
/* Writes 64 lowercase hex digits and a NUL into @hex. */
void hash_sha256_hex(const void *data, size_t len, char hex[HASH_SHA256_HEX_LEN + 1]);
void hash_hex(const uint8_t *bin, size_t len, char *hex /* 2*len+1 */);

/* Incremental SHA-256 for whole files. */
struct hash_sha256_ctx;
struct hash_sha256_ctx *hash_sha256_new(void);
void hash_sha256_update(struct hash_sha256_ctx *c, const void *data, size_t len);
/* Finishes and frees @c. */
void hash_sha256_finish(struct hash_sha256_ctx *c, char hex[HASH_SHA256_HEX_LEN + 1]);

uint64_t hash_xxh3(const void *data, size_t len);

#endif
