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
#define CHUNKS_KEEP_RAW	1	/* a base file's chunk: keep it in the raw tier */
int chunks_store(struct chunks *c, const uint8_t *data, size_t len,
		 const uint8_t *base, const char *base_key,
		 const struct codec_span *spans, size_t nspans, unsigned flags,
		 struct chunk_ref *ref);

/*
 * Get the decoded bytes of @ref, which must decode to @raw_len bytes.
 * Returns 0 and a reference in *out (release with chunks_put()), or -EIO.
 */
int chunks_get(struct chunks *c, const struct chunk_ref *ref, size_t raw_len,
	       const struct chunk_data **out);
void chunks_put(struct chunks *c, const struct chunk_data *d);

/*
 * The raw tier (takes ownership of @raw, a store_cache_open_local() store;
 * NULL: none). Decoding a base chunk costs reading its frame, SHA-256 of
 * it and the decode, and every delta written or read against that base
 * pays it again once the chunk has left the memory cache (a base is
 * usually larger than the cache). So full chunks (what base files are
 * made of), when a base file is stored and whenever one is decoded, are
 * also kept decoded on local disk, ending in their length and XXH3, and
 * read from there:
 * one pread and one XXH3 pass. The tier's directory is private to this
 * process (0700, flock()ed); a copy failing its check is dropped and the
 * frame decoded from the store as before. fsck (chunks_verify) never
 * uses it.
 */
void chunks_set_raw(struct chunks *c, struct store *raw);

/*
 * Bytes [off, off + len) of @d were handed to the kernel, which keeps them
 * in its page cache (committed files are opened with keep_cache). Once
 * every byte of a chunk was handed over, it is unlikely to be read through
 * us again, so it moves to the cold end of the LRU. A hint only.
 */
void chunks_served(struct chunks *c, const struct chunk_data *d, size_t off, size_t len);

/* Is the decoded chunk @ref names in the cache now? (a hint, no reference) */
int chunks_cached(struct chunks *c, const struct chunk_ref *ref);

/* What the cache did since chunks_new() (root xattr user.ckptfs.stats). */
struct chunks_stats {
	uint64_t hits;		/* chunks_get served from the cache */
	uint64_t loads;		/* frames fetched, verified and decoded */
	uint64_t frame_bytes;	/* stored bytes of those frames */
	uint64_t decoded_bytes;	/* decoded bytes of those frames */
	uint64_t waits;		/* chunks_get that waited for another's load */
	uint64_t raw_hits;	/* loads served by the raw tier */
	uint64_t raw_kept;	/* decoded chunks copied into the raw tier */
};
void chunks_stats(struct chunks *c, struct chunks_stats *out);

/* Load and fully verify one frame (fsck). 0, -EIO (corrupt), -ENOENT. */
int chunks_verify(struct chunks *c, const struct chunk_ref *ref, size_t raw_len);

#endif
