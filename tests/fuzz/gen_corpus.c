/*
 * gen_corpus.c: write tests/fuzz/corpus/frame from real encoder output.
 *
 *   fuzz_gen_corpus DIR
 *
 * Mode-0 inputs (fuzz_frame.c): full and delta frames of bf16-like weights,
 * of random and of constant bytes, each with the base it decodes against.
 * Mode-1/2 inputs: the same chunk data for the round-trip modes. Small
 * chunks (at most 24 KiB) keep the fuzzer fast; the frame layout is the
 * same at any size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "util/buf.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* bf16 values of a normal-ish weight, std about 0.02. */
static void weights(uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2) {
		int s = (int)(rnd() % 64) - 32;
		uint16_t v = (uint16_t)(0x3c00 + s * 3 + (rnd() % 128));

		if (rnd() & 1)
			v |= 0x8000;
		p[i] = (uint8_t)v;
		p[i + 1] = (uint8_t)(v >> 8);
	}
}

/* An Adam-like step: a fraction of values moved by 1-2 ulp. */
static void perturb(const uint8_t *src, uint8_t *dst, size_t n, unsigned pct)
{
	memcpy(dst, src, n);
	for (size_t i = 0; i + 1 < n; i += 2)
		if (rnd() % 100 < pct)
			dst[i] = (uint8_t)(dst[i] + 1 + rnd() % 2);
}

static int write_file(const char *dir, const char *name, const void *a, size_t an,
		      const void *b, size_t bn, const void *c, size_t cn)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(a, 1, an, f) != an || fwrite(b, 1, bn, f) != bn ||
	    fwrite(c, 1, cn, f) != cn) {
		fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

/* Encode @data (against @base if given) and write the mode-0 input, plus
 * the mode-1 (full) or mode-2 (delta) round-trip input of the same bytes. */
static int emit(struct codec_ctx *ctx, const char *dir, const char *tag,
		const uint8_t *data, const uint8_t *base, size_t len, uint8_t width)
{
	struct codec_span span = { .off = 0, .len = (uint32_t)len, .width = width };
	struct buf frame = BUF_INIT;
	uint8_t hdr[6] = { 0 }, rt[2] = { base ? 2 : 1, 0 };
	uint32_t blen = base ? (uint32_t)len : 0;
	char name[128];
	int rc;

	rc = codec_encode(ctx, data, len, base, width > 1 ? &span : NULL, width > 1,
			  0, &frame);
	if (rc < 0)
		return rc;
	rt[1] = width == 8 ? 3 : width == 4 ? 2 : width == 2 ? 1 : 0;
	if (rc == 0) {
		hdr[0] = 0;
		hdr[1] = (uint8_t)blen;
		hdr[2] = (uint8_t)(blen >> 8);
		hdr[3] = (uint8_t)(blen >> 16);
		hdr[4] = (uint8_t)(blen >> 24);
		snprintf(name, sizeof(name), "decode-%s", tag);
		if (write_file(dir, name, hdr, 5, base ? base : hdr, blen, frame.data,
			       frame.len) < 0)
			rc = -EIO;
	}
	snprintf(name, sizeof(name), "roundtrip-%s", tag);
	if (rc >= 0 && write_file(dir, name, rt, 2, data, len, base ? base : rt,
				  base ? len : 0) < 0)
		rc = -EIO;
	buf_release(&frame);
	return rc < 0 ? rc : 0;
}

int main(int argc, char **argv)
{
	static uint8_t a[24576], b[24576], c[24576];
	struct codec_ctx *ctx;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	ctx = codec_ctx_new();
	if (!ctx)
		return 1;
	weights(a, sizeof(a));
	perturb(a, b, sizeof(a), 8);
	perturb(b, c, sizeof(a), 25);
	rc |= emit(ctx, argv[1], "bf16-full-24k", a, NULL, sizeof(a), 2);
	rc |= emit(ctx, argv[1], "bf16-full-4k-w1", a, NULL, 4096, 1);
	rc |= emit(ctx, argv[1], "bf16-delta-8pct", b, a, sizeof(a), 2);
	rc |= emit(ctx, argv[1], "bf16-delta-25pct-w4", c, a, 8192, 4);
	rc |= emit(ctx, argv[1], "bf16-odd-len", a + 1, NULL, 3001, 2);
	for (size_t i = 0; i < sizeof(c); i++)
		c[i] = (uint8_t)rnd();
	rc |= emit(ctx, argv[1], "random-full", c, NULL, 6000, 1);
	rc |= emit(ctx, argv[1], "random-delta", c, a, 6000, 8);
	memset(c, 0, sizeof(c));
	rc |= emit(ctx, argv[1], "zeros-full", c, NULL, 16384, 2);
	memcpy(c, a, 2048);
	c[100] ^= 1;
	rc |= emit(ctx, argv[1], "one-bit-delta", c, a, 2048, 2);
	codec_ctx_free(ctx);
	return rc ? 1 : 0;
}
