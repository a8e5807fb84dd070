/*
 * fuzz_frame.c: the chunk frame codec (src/codec/codec.c).
 *
 * Input: one mode byte, then
 *   mode 0  u32 LE base length B, B base bytes, a frame: decode it (with
 *           the base when the frame needs one). Any result but a crash or
 *           an out-of-bounds access is fine; a successful decode must be
 *           exactly raw_len bytes.
 *   mode 1  a width byte, then chunk data: encode it as a full frame with
 *           one span of that width, decode, compare: must round-trip.
 *   mode 2  a width byte, then data and base (two halves): encode the delta,
 *           decode with the base, compare: must round-trip; CODEC_ALL_ZERO
 *           only when data == base.
 * The corpus (corpus/frame) holds mode-0 inputs cut from real encoder
 * output (gen_corpus.c) and mode-1/2 inputs of safetensors-like bytes.
 */
#include "fuzz.h"

#include <string.h>

#include "codec/codec.h"
#include "util/buf.h"

/* Decoded sizes beyond this are skipped: they only make runs slower. */
#define MAX_RAW (512u << 10)

static struct codec_ctx *ctx;

static void decode_any(const uint8_t *p, size_t n)
{
	struct codec_frame_info info;
	uint8_t *out, *base = NULL;
	uint32_t blen;
	int rc;

	if (n < 4)
		return;
	blen = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
	p += 4;
	n -= 4;
	if (blen > n)
		return;
	if (codec_frame_info(p + blen, n - blen, &info) < 0 || info.raw_len > MAX_RAW)
		return;
	out = malloc(info.raw_len ? info.raw_len : 1);
	FUZZ_CHECK(out != NULL);
	if (info.needs_base) {
		/* The given base, zero-padded or cut to raw_len. */
		base = calloc(1, info.raw_len ? info.raw_len : 1);
		FUZZ_CHECK(base != NULL);
		memcpy(base, p, blen < info.raw_len ? blen : info.raw_len);
	}
	rc = codec_decode(ctx, p + blen, n - blen, base, out, info.raw_len);
	FUZZ_CHECK(rc <= 0);
	free(base);
	free(out);
}

static void round_trip(const uint8_t *data, const uint8_t *base, size_t len,
		       uint8_t width)
{
	struct codec_span span = { .off = 0, .len = (uint32_t)len, .width = width };
	struct codec_frame_info info;
	struct buf frame = BUF_INIT;
	uint8_t *out;
	int rc;

	if (len == 0 || len > MAX_RAW)
		return;
	rc = codec_encode(ctx, data, len, base, width > 1 ? &span : NULL,
			  width > 1 ? 1 : 0, 0, &frame);
	FUZZ_CHECK(rc == 0 || rc == CODEC_ALL_ZERO);
	if (rc == CODEC_ALL_ZERO) {
		FUZZ_CHECK(base != NULL && memcmp(data, base, len) == 0);
		buf_release(&frame);
		return;
	}
	FUZZ_CHECK(codec_frame_info(frame.data, frame.len, &info) == 0);
	FUZZ_CHECK(info.raw_len == len);
	FUZZ_CHECK(!info.needs_base || base != NULL);
	out = malloc(len);
	FUZZ_CHECK(out != NULL);
	rc = codec_decode(ctx, frame.data, frame.len, info.needs_base ? base : NULL,
			  out, len);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(memcmp(out, data, len) == 0);
	free(out);
	buf_release(&frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t widths[4] = { 1, 2, 4, 8 };
	uint8_t width;

	if (!ctx)
		ctx = codec_ctx_new();
	FUZZ_CHECK(ctx != NULL);
	if (size < 2)
		return 0;
	width = widths[data[1] & 3];
	switch (data[0] % 3) {
	case 0:
		decode_any(data + 1, size - 1);
		break;
	case 1:
		round_trip(data + 2, NULL, size - 2, width);
		break;
	default: {
		size_t half = (size - 2) / 2;

		round_trip(data + 2, data + 2 + half, half, width);
		break;
	}
	}
	return 0;
}
