/*
 * chunks.h: storing and loading chunk frames, with a bounded cache of
 * decoded chunks.
 *
 * Owns:         the "chunks/" keys, integrity checks on every load
 *               (sha256 of the frame == its key, then the codec's checksum
 *               of the decoded bytes), and the decoded-chunk LRU.
 * Does not own: which chunks make a file (catalog entries), encoding
 *               choices (codec).
 *
 * Errors: a missing, corrupt or undecodable chunk is -EIO with one log line
 * naming the chunk; the caller never sees wrong bytes.
 */
#ifndef CKPT_CHUNKS_H
#define CKPT_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "codec/codec.h"
#include "store/store.h"

struct chunks;

/* Decoded bytes of one chunk, reference counted; read-only once published. */
struct chunk_data {
	const uint8_t *data;
	size_t len;
};

struct chunks *chunks_new(struct store *st, uint64_t cache_bytes);
void chunks_free(struct chunks *c);

/*
 * Encode @len bytes (@base: the base's decoded bytes at the same offset, or
 * NULL) and store the frame. Fills @ref: key "" for an all-zero delta (then
 * base_key must be supplied by the caller), base_key when the frame needs
 * the base. @base_key is the key of the base chunk (ignored if !base).
 */
int chunks_store(struct chunks *c, const uint8_t *data, size_t len,
		 const uint8_t *base, const char *base_key,
		 const struct codec_span *spans, size_t nspans,
		 struct chunk_ref *ref);

/*
 * Get the decoded bytes of @ref, which must decode to @raw_len bytes.
 * Returns 0 and a reference in *out (release with chunks_put()), or -EIO.
 */
int chunks_get(struct chunks *c, const struct chunk_ref *ref, size_t raw_len,
	       const struct chunk_data **out);
void chunks_put(struct chunks *c, const struct chunk_data *d);

/* Load and fully verify one frame (fsck). 0, -EIO (corrupt), -ENOENT. */
int chunks_verify(struct chunks *c, const struct chunk_ref *ref, size_t raw_len);

#endif
