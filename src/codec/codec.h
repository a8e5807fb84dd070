/*
 * codec.h: encoding of one chunk of a file into a self-describing frame.
 *
 * Owns:         byte-plane splitting, XOR against a base chunk, sparse coding,
 *               zstd, and the per-chunk checksum. Pure: no I/O, no globals.
 * Does not own: where frames are stored (store), which chunks form a file
 *               (catalog manifests), how a file is cut into chunks (fs).
 *
 * The byte layout of a frame is specified in doc/FORMAT.md; this header is
 * its API. All functions are thread-safe given one codec_ctx per thread.
 */
#ifndef CKPT_CODEC_H
#define CKPT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Largest raw chunk a frame may describe. */
#define CODEC_CHUNK_MAX (64u << 20)
/* Returned by codec_encode() when a delta chunk equals its base. */
#define CODEC_ALL_ZERO 1

/*
 * A run of elements of one width inside a chunk: bytes [off, off+len)
 * relative to the chunk start hold elements @width bytes wide (1, 2, 4 or 8).
 * Spans are sorted and do not overlap; bytes outside every span have width 1.
 * A span may start or end mid-element when a tensor straddles a chunk edge;
 * the element phase is (off - phase_origin) and is carried in @phase.
 */
struct codec_span {
	uint32_t off;
	uint32_t len;
	uint8_t width;
	uint8_t phase;	/* byte index within the element at @off (0..width-1) */
};

struct codec_ctx;

/* Per-thread scratch and zstd contexts. NULL on -ENOMEM. */
struct codec_ctx *codec_ctx_new(void);
void codec_ctx_free(struct codec_ctx *ctx);	/* NULL is fine */

/*
 * Encode @len bytes of @data (1 <= len <= CODEC_CHUNK_MAX) as one frame
 * appended to @out.
 *
 * @base   NULL for a full chunk; otherwise @len bytes of the base file at the
 *         same offset, and the frame stores (data XOR base). The encoder may
 *         still emit a full frame when that is smaller; codec_frame_info()
 *         tells which.
 * @spans  element widths from the safetensors header (may be NULL/0).
 * @level  zstd level hint; 0 means the codec's default.
 * @return 0 (frame appended), CODEC_ALL_ZERO (base given and data == base:
 *         nothing appended, nothing to store), -ENOMEM, -EINVAL.
 */
int codec_encode(struct codec_ctx *ctx, const uint8_t *data, size_t len,
		 const uint8_t *base, const struct codec_span *spans,
		 size_t nspans, int level, struct buf *out);

struct codec_frame_info {
	uint32_t raw_len;	/* bytes the frame decodes to */
	int needs_base;		/* 1: decoding needs the base chunk */
};

/* Parse a frame's header. 0, -EBADMSG (corrupt), -EPROTONOSUPPORT (version). */
int codec_frame_info(const uint8_t *frame, size_t flen, struct codec_frame_info *info);

/*
 * Decode a frame into @out, which holds exactly @out_len == raw_len bytes.
 * @base must be given (raw_len bytes) iff the frame needs a base.
 * The checksum of the decoded bytes is always verified.
 * @return 0; -EBADMSG on any corruption or truncation (never crashes, never
 *         writes outside @out); -EINVAL on a wrong @out_len or missing base;
 *         -EPROTONOSUPPORT for an unknown version; -ENOMEM.
 */
int codec_decode(struct codec_ctx *ctx, const uint8_t *frame, size_t flen,
		 const uint8_t *base, uint8_t *out, size_t out_len);

/*
 * safetensors layout: [8-byte LE header length N][N bytes JSON][data].
 * Tensor offsets in the JSON are relative to the data start (8 + N).
 */
struct st_tensor {
	uint64_t off;		/* absolute file offset of the first byte */
	uint64_t len;
	uint8_t width;		/* element width in bytes: BF16/F16 2, F32 4, F64 8, else 1 */
};

struct st_layout {
	struct st_tensor *tensors;	/* sorted by off */
	size_t n;
	uint64_t data_start;		/* 8 + N */
	uint64_t data_end;		/* largest tensor end: the expected file size */
};
#define ST_LAYOUT_INIT { 0 }

/*
 * Parse a safetensors header from the first @avail bytes of a file.
 * @return 0; -EAGAIN if @avail < 8 + N (call again with more bytes);
 *         -EINVAL if the bytes are not a safetensors header (N > 100 MB,
 *         bad JSON, overlapping or out-of-order tensors are all -EINVAL).
 */
int st_layout_parse(const uint8_t *head, size_t avail, struct st_layout *out);
void st_layout_release(struct st_layout *l);

/*
 * Fill @spans (at most @max) with the element widths of file bytes
 * [chunk_off, chunk_off + chunk_len). Returns the number of spans written.
 */
size_t st_layout_chunk_spans(const struct st_layout *l, uint64_t chunk_off,
			     size_t chunk_len, struct codec_span *spans, size_t max);

#endif
