/*
 * check_codec.c: the chunk codec (codec.h, doc/FORMAT.md §2) and the
 * safetensors layout (§3).
 *
 * What is covered:
 *   round trips   sizes 1 B .. 4 MiB+3, every width, spans with phases,
 *                 random layouts, full and delta, several levels;
 *   deltas        no change (CODEC_ALL_ZERO), every bit changed, +-1..2 ulp
 *                 changes at 0.1% .. 90% density, and the size bound
 *                 (<= 0.85 x zstd -1 of the plain XOR at 1% .. 60%);
 *   corruption    every truncation of small frames, every bit of the
 *                 header, thousands of random byte flips, random garbage, a
 *                 wrong base: always an error, never a crash, never 0;
 *   golden        two committed v1 frames decode to known SHA-256s, so a
 *                 format change cannot go unnoticed;
 *   safetensors   good and bad headers, chunk spans and their phases.
 *
 * Set CKPTFS_GOLDEN_PRINT=1 to print fresh golden frames instead of checking
 * them — only when the format version changes on purpose.
 */
#include <check.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec/codec.h"
#include "testutil.h"
#include "util/buf.h"
#include "util/hash.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MiB (1024 * 1024)

static struct codec_ctx *ctx;

static void setup(void)
{
	ctx = codec_ctx_new();
	ck_assert_ptr_nonnull(ctx);
}

static void teardown(void)
{
	codec_ctx_free(ctx);
	ctx = NULL;
}

/* ---- data generators (deterministic; no libm) ---- */

static uint64_t rng;

static uint64_t next_rand(void)
{
	uint64_t x = rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static double unif(void)
{
	return (double)(next_rand() >> 11) * (1.0 / 9007199254740992.0);
}

/* ~N(0, 1): Irwin-Hall of 4 uniforms is close enough for weight statistics. */
static double gauss(void)
{
	return (unif() + unif() + unif() + unif() - 2.0) * 1.7320508;
}

static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* Little-endian elements of @w bytes that look like trained weights. */
static void fill_weights(uint8_t *p, size_t n, unsigned w)
{
	size_t i;

	for (i = 0; i + w <= n; i += w) {
		float f = (float)(gauss() * 0.02);
		double d = gauss() * 0.02;
		uint16_t h;

		switch (w) {
		case 2:
			h = to_bf16(f);
			p[i] = (uint8_t)h;
			p[i + 1] = (uint8_t)(h >> 8);
			break;
		case 4:
			memcpy(p + i, &f, 4);
			break;
		case 8:
			memcpy(p + i, &d, 8);
			break;
		default:
			p[i] = (uint8_t)(next_rand() % 7);
		}
	}
	for (; i < n; i++)
		p[i] = (uint8_t)next_rand();
}

/* Move the magnitude of one LE element by @d ulp, keeping the sign. */
static void nudge(uint8_t *p, unsigned w, int d)
{
	uint64_t v = 0, top = 1ull << (8 * w - 1), mag;
	unsigned i;

	for (i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	mag = v & (top - 1);
	if (d < 0 && mag < (uint64_t)-d)
		mag = (uint64_t)-d - mag;
	else
		mag += (uint64_t)(int64_t)d;
	v = (v & top) | (mag & (top - 1));
	for (i = 0; i < w; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A fraction @p of the elements inside @spans move by +-1..2 ulp. */
static void make_delta(uint8_t *dst, const uint8_t *src, size_t len,
		       const struct codec_span *spans, size_t ns, double p)
{
	size_t i, k;

	if (dst != src)
		memcpy(dst, src, len);
	for (i = 0; i < ns; i++) {
		const struct codec_span *s = &spans[i];
		size_t first = (s->width - s->phase) % s->width;

		for (k = first; k + s->width <= s->len; k += s->width) {
			int d = (next_rand() & 1) ? 1 : 2;

			if (unif() < p)
				nudge(dst + s->off + k, s->width, (next_rand() & 1) ? d : -d);
		}
	}
}

/* ---- helpers ---- */

/* Encode, check the frame header, decode, compare. Returns the frame size. */
static size_t roundtrip(const uint8_t *data, size_t len, const uint8_t *base,
			const struct codec_span *spans, size_t ns, int level)
{
	struct buf out = BUF_INIT;
	struct codec_frame_info fi;
	uint8_t *dec = malloc(len);
	size_t flen;
	int rc;

	ck_assert_ptr_nonnull(dec);
	rc = codec_encode(ctx, data, len, base, spans, ns, level, &out);
	if (base && memcmp(data, base, len) == 0) {
		ck_assert_int_eq(rc, CODEC_ALL_ZERO);
		ck_assert_uint_eq(out.len, 0);
		free(dec);
		return 0;
	}
	ck_assert_int_eq(rc, 0);
	flen = out.len;
	ck_assert_int_eq(codec_frame_info(out.data, flen, &fi), 0);
	ck_assert_uint_eq(fi.raw_len, len);
	if (!base)
		ck_assert_int_eq(fi.needs_base, 0);
	memset(dec, 0xa5, len);
	rc = codec_decode(ctx, out.data, flen, fi.needs_base ? base : NULL, dec, len);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(memcmp(dec, data, len) == 0, "round trip differs (len %zu)", len);
	buf_release(&out);
	free(dec);
	return flen;
}

static size_t zstd1_size(const uint8_t *p, size_t n)
{
	size_t cap = ZSTD_compressBound(n), r;
	void *z = malloc(cap);

	ck_assert_ptr_nonnull(z);
	r = ZSTD_compress(z, cap, p, n, 1);
	ck_assert(!ZSTD_isError(r));
	free(z);
	return r;
}

/* A chunk of mixed layout: text, bf16 (phase 1), f32 (phase 3), f64, tail. */
static size_t mixed_layout(size_t len, struct codec_span *sp)
{
	size_t a = len / 16, b = len / 2, c = len / 4, d = len / 8;

	sp[0] = (struct codec_span){ .off = (uint32_t)a, .len = (uint32_t)b, .width = 2, .phase = 1 };
	sp[1] = (struct codec_span){ .off = (uint32_t)(a + b), .len = (uint32_t)c, .width = 4, .phase = 3 };
	sp[2] = (struct codec_span){ .off = (uint32_t)(a + b + c), .len = (uint32_t)d, .width = 8, .phase = 0 };
	return 3;
}

static void fill_layout(uint8_t *p, size_t len, const struct codec_span *sp, size_t ns)
{
	size_t i;

	for (i = 0; i < len; i++)	/* text-like filler between tensors */
		p[i] = (uint8_t)"{\"dtype\":\"BF16\",\"shape\":[4096,4096]} "[i % 37];
	for (i = 0; i < ns; i++) {
		/* Start the element grid @phase bytes before the span. */
		uint8_t tmp[16];
		size_t pre = sp[i].phase;

		fill_weights(tmp, sizeof(tmp), sp[i].width);
		memcpy(p + sp[i].off, tmp + pre, sp[i].len < 16 - pre ? sp[i].len : 16 - pre);
		if (sp[i].len > 16 - pre)
			fill_weights(p + sp[i].off + 16 - pre, sp[i].len - (16 - pre), sp[i].width);
	}
}

/* ---- round trips ---- */

static const size_t sizes[] = {
	1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 255, 256, 257,
	1000, 4095, 4096, 4097, 65535, 65536, 65537, 131071, 131072, 131073,
	1000003,
};

START_TEST(test_roundtrip_sizes)
{
	unsigned widths[] = { 1, 2, 4, 8 };
	size_t i, j;

	rng = 1;
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		size_t len = sizes[i];
		uint8_t *d = malloc(len);

		ck_assert_ptr_nonnull(d);
		for (j = 0; j < ARRAY_SIZE(widths); j++) {
			unsigned w = widths[j];
			struct codec_span sp = { .off = 0, .len = (uint32_t)len, .width = (uint8_t)w };

			fill_weights(d, len, w);
			roundtrip(d, len, NULL, &sp, 1, 0);
			/* Same bytes, element grid shifted by one. */
			sp.phase = (uint8_t)(w - 1);
			roundtrip(d, len, NULL, &sp, 1, 0);
			roundtrip(d, len, NULL, NULL, 0, 0);
		}
		testutil_fill_random(d, len, i + 1);	/* incompressible */
		roundtrip(d, len, NULL, NULL, 0, 0);
		memset(d, 0, len);
		roundtrip(d, len, NULL, NULL, 0, 0);
		free(d);
	}
}
END_TEST

START_TEST(test_roundtrip_big)
{
	size_t lens[] = { 4 * MiB, 4 * MiB + 3 };
	struct codec_span sp[3];
	size_t i, ns, flen;

	rng = 2;
	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		uint8_t *d = malloc(lens[i]);

		ck_assert_ptr_nonnull(d);
		sp[0] = (struct codec_span){ .off = 0, .len = (uint32_t)lens[i], .width = 2 };
		fill_weights(d, lens[i], 2);
		flen = roundtrip(d, lens[i], NULL, sp, 1, 0);
		/* The bound for bf16 weights: stored <= 0.75 x raw. */
		ck_assert_msg(flen * 4 <= lens[i] * 3, "bf16 %zu -> %zu", lens[i], flen);
		ns = mixed_layout(lens[i], sp);
		fill_layout(d, lens[i], sp, ns);
		roundtrip(d, lens[i], NULL, sp, ns, 0);
		free(d);
	}
}
END_TEST

START_TEST(test_roundtrip_levels)
{
	int levels[] = { -5, 1, 3, 9 };
	size_t len = 200001, ns, i;
	struct codec_span sp[3];
	uint8_t *d = malloc(len), *b = malloc(len);

	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(b);
	rng = 3;
	ns = mixed_layout(len, sp);
	fill_layout(b, len, sp, ns);
	make_delta(d, b, len, sp, ns, 0.05);
	for (i = 0; i < ARRAY_SIZE(levels); i++) {
		roundtrip(d, len, NULL, sp, ns, levels[i]);
		roundtrip(d, len, b, sp, ns, levels[i]);
	}
	free(d);
	free(b);
}
END_TEST

/* Random layouts: spans of every width and phase, gaps, tiny and empty spans. */
START_TEST(test_roundtrip_random_layouts)
{
	struct codec_span sp[64];
	int iter;

	rng = 4;
	for (iter = 0; iter < 300; iter++) {
		size_t len = 1 + next_rand() % (iter < 250 ? 5000 : 300000);
		uint8_t *d = malloc(len), *b = malloc(len);
		size_t ns = 0, pos = 0;

		ck_assert_ptr_nonnull(d);
		ck_assert_ptr_nonnull(b);
		while (ns < ARRAY_SIZE(sp) && pos < len) {
			static const uint8_t w[] = { 1, 2, 2, 2, 4, 4, 8 };
			size_t gap = next_rand() % 3 ? 0 : next_rand() % 40;
			size_t l = next_rand() % (len / 4 + 2);

			if (gap > len - pos)
				break;
			pos += gap;
			if (l > len - pos)
				l = len - pos;
			sp[ns].off = (uint32_t)pos;
			sp[ns].len = (uint32_t)l;
			sp[ns].width = w[next_rand() % sizeof(w)];
			sp[ns].phase = (uint8_t)(next_rand() % sp[ns].width);
			pos += l;
			ns++;
		}
		fill_layout(b, len, sp, ns);
		roundtrip(b, len, NULL, sp, ns, 0);
		make_delta(d, b, len, sp, ns, unif() * unif());
		if (iter % 5 == 0)
			d[next_rand() % len] ^= 0x40;	/* a change outside spans too */
		roundtrip(d, len, b, sp, ns, 0);
		free(d);
		free(b);
	}
}
END_TEST

START_TEST(test_append)
{
	struct buf out = BUF_INIT;
	uint8_t d[1000], dec[1000];
	size_t first;

	rng = 5;
	fill_weights(d, sizeof(d), 2);
	ck_assert_int_eq(buf_append(&out, "prefix", 6), 0);
	ck_assert_int_eq(codec_encode(ctx, d, sizeof(d), NULL, NULL, 0, 0, &out), 0);
	first = out.len;
	ck_assert_int_eq(codec_encode(ctx, d, 500, NULL, NULL, 0, 0, &out), 0);
	ck_assert_int_eq(memcmp(out.data, "prefix", 6), 0);
	ck_assert_int_eq(codec_decode(ctx, out.data + 6, first - 6, NULL, dec, sizeof(d)), 0);
	ck_assert_int_eq(memcmp(dec, d, sizeof(d)), 0);
	ck_assert_int_eq(codec_decode(ctx, out.data + first, out.len - first, NULL, dec, 500), 0);
	ck_assert_int_eq(memcmp(dec, d, 500), 0);
	buf_release(&out);
}
END_TEST

/* One context per thread is the contract: run two side by side. */
static void *thread_body(void *arg)
{
	struct codec_ctx *c = codec_ctx_new();
	size_t len = 300000 + (size_t)(uintptr_t)arg, i;
	uint8_t *d = malloc(len), *b = malloc(len), *dec = malloc(len);
	struct codec_span sp = { .off = 0, .len = (uint32_t)len, .width = 2 };
	struct buf out = BUF_INIT;
	intptr_t bad = 0;
	int iter;

	if (!c || !d || !b || !dec)
		return (void *)1;
	testutil_fill_random(b, len, 77 + (uint64_t)(uintptr_t)arg);
	for (iter = 0; iter < 20; iter++) {
		memcpy(d, b, len);
		for (i = (size_t)iter; i < len; i += 97)
			d[i] ^= (uint8_t)(1 + iter);
		buf_reset(&out);
		bad |= codec_encode(c, d, len, iter & 1 ? b : NULL, &sp, 1, 0, &out) != 0;
		bad |= codec_decode(c, out.data, out.len, b, dec, len) != 0;
		bad |= memcmp(dec, d, len) != 0;
	}
	buf_release(&out);
	codec_ctx_free(c);
	free(d);
	free(b);
	free(dec);
	return (void *)bad;
}

START_TEST(test_threads)
{
	pthread_t t[2];
	void *r;
	int i;

	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_body, (void *)(uintptr_t)i), 0);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i], &r), 0);
		ck_assert_ptr_null(r);
	}
}
END_TEST

/* ---- deltas ---- */

START_TEST(test_delta_all_zero)
{
	struct buf out = BUF_INIT;
	uint8_t d[4096];
	struct codec_span sp = { .off = 0, .len = sizeof(d), .width = 2 };

	rng = 6;
	fill_weights(d, sizeof(d), 2);
	ck_assert_int_eq(buf_append(&out, "x", 1), 0);
	ck_assert_int_eq(codec_encode(ctx, d, sizeof(d), d, &sp, 1, 0, &out), CODEC_ALL_ZERO);
	ck_assert_uint_eq(out.len, 1);
	ck_assert_int_eq(codec_encode(ctx, d, 1, d, NULL, 0, 0, &out), CODEC_ALL_ZERO);
	buf_release(&out);
}
END_TEST

START_TEST(test_delta_all_bits)
{
	size_t len = 1 * MiB + 5, i, flen, ns;
	uint8_t *b = malloc(len), *d = malloc(len);
	struct codec_span sp[3];

	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(d);
	rng = 7;
	ns = mixed_layout(len, sp);
	fill_layout(b, len, sp, ns);
	for (i = 0; i < len; i++)
		d[i] = (uint8_t)~b[i];
	flen = roundtrip(d, len, b, sp, ns, 0);
	ck_assert_msg(flen < len / 100, "all-ones XOR took %zu bytes", flen);
	free(b);
	free(d);
}
END_TEST

/*
 * The hard requirement: a delta frame <= 0.85 x zstd -1 of the
 * plain XOR for +-1..2 ulp changes at 1% .. 60% of values, on a 4 MiB
 * chunk of bf16 plus an fp32 tensor.
 */
START_TEST(test_delta_densities)
{
	double ps[] = { 0.001, 0.01, 0.05, 0.25, 0.60, 0.90 };
	size_t len = 4 * MiB, i, k, flen, z;
	struct codec_span sp[2] = {
		{ .off = 0, .len = 3 * MiB + 2, .width = 2 },
		{ .off = 3 * MiB + 2, .len = MiB - 2, .width = 4, .phase = 0 },
	};
	uint8_t *b = malloc(len), *d = malloc(len), *x = malloc(len);

	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(x);
	rng = 8;
	fill_weights(b, sp[0].len, 2);
	fill_weights(b + sp[1].off, sp[1].len, 4);
	for (i = 0; i < ARRAY_SIZE(ps); i++) {
		make_delta(d, b, len, sp, 2, ps[i]);
		flen = roundtrip(d, len, b, sp, 2, 0);
		for (k = 0; k < len; k++)
			x[k] = d[k] ^ b[k];
		z = zstd1_size(x, len);
		printf("delta p=%.3f: frame %zu, zstd-1(XOR) %zu, ratio %.3f\n",
		       ps[i], flen, z, (double)flen / (double)z);
		if (ps[i] >= 0.01 && ps[i] <= 0.60)
			ck_assert_msg(flen * 100 <= z * 85, "p=%.2f: %zu > 0.85 x %zu", ps[i], flen, z);
	}
	free(b);
	free(d);
	free(x);
}
END_TEST

START_TEST(test_delta_full_fallback)
{
	size_t len = 300000;
	uint8_t *b = malloc(len), *d = malloc(len), *dec = malloc(len);
	struct codec_span sp = { .off = 0, .len = (uint32_t)len, .width = 2 };
	struct codec_frame_info fi;
	struct buf out = BUF_INIT;

	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(dec);
	rng = 9;
	testutil_fill_random(b, len, 99);	/* unrelated to the data */
	fill_weights(d, len, 2);
	ck_assert_int_eq(codec_encode(ctx, d, len, b, &sp, 1, 0, &out), 0);
	ck_assert_int_eq(codec_frame_info(out.data, out.len, &fi), 0);
	ck_assert_int_eq(fi.needs_base, 0);
	ck_assert_uint_lt(out.len, len * 3 / 4);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, NULL, dec, len), 0);
	ck_assert_int_eq(memcmp(dec, d, len), 0);
	/* A base passed to a full frame is ignored. */
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, b, dec, len), 0);
	ck_assert_int_eq(memcmp(dec, d, len), 0);
	buf_release(&out);
	free(b);
	free(d);
	free(dec);
}
END_TEST

START_TEST(test_wrong_base)
{
	size_t len = 100000, ns;
	uint8_t *b = malloc(len), *d = malloc(len), *dec = malloc(len);
	struct codec_span sp[3];
	struct buf out = BUF_INIT;

	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(dec);
	rng = 10;
	ns = mixed_layout(len, sp);
	fill_layout(b, len, sp, ns);
	make_delta(d, b, len, sp, ns, 0.1);
	ck_assert_int_eq(codec_encode(ctx, d, len, b, sp, ns, 0, &out), 0);
	b[len / 2] ^= 1;
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, b, dec, len), -EBADMSG);
	b[len / 2] ^= 1;
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, b, dec, len), 0);
	ck_assert_int_eq(memcmp(dec, d, len), 0);
	/* A base of the wrong checkpoint altogether. */
	fill_layout(b, len, sp, ns);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, b, dec, len), -EBADMSG);
	buf_release(&out);
	free(b);
	free(d);
	free(dec);
}
END_TEST

/* ---- arguments ---- */

START_TEST(test_bad_args)
{
	struct buf out = BUF_INIT;
	uint8_t d[64] = { 1 }, dec[64];
	struct codec_span bad[][2] = {
		{ { .off = 0, .len = 65, .width = 2 } },			/* past the end */
		{ { .off = 0, .len = 8, .width = 3 } },				/* width */
		{ { .off = 0, .len = 8, .width = 2, .phase = 2 } },		/* phase */
		{ { .off = 8, .len = 8, .width = 2 }, { .off = 4, .len = 2, .width = 2 } },
		{ { .off = 0, .len = 8, .width = 2 }, { .off = 7, .len = 2, .width = 4 } },
	};
	size_t nbad[] = { 1, 1, 1, 2, 2 }, i;
	struct codec_frame_info fi;

	ck_assert_int_eq(codec_encode(ctx, d, 0, NULL, NULL, 0, 0, &out), -EINVAL);
	ck_assert_int_eq(codec_encode(ctx, d, (size_t)CODEC_CHUNK_MAX + 1, NULL, NULL, 0, 0, &out),
			 -EINVAL);
	ck_assert_int_eq(codec_encode(ctx, NULL, 4, NULL, NULL, 0, 0, &out), -EINVAL);
	ck_assert_int_eq(codec_encode(ctx, d, 4, NULL, NULL, 1, 0, &out), -EINVAL);
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_int_eq(codec_encode(ctx, d, sizeof(d), NULL, bad[i], nbad[i], 0, &out),
				 -EINVAL);
	ck_assert_uint_eq(out.len, 0);

	memset(dec, 0, sizeof(dec));
	ck_assert_int_eq(codec_encode(ctx, d, sizeof(d), NULL, NULL, 0, 0, &out), 0);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, NULL, dec, 63), -EINVAL);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, NULL, NULL, 64), -EINVAL);
	buf_reset(&out);
	d[5] = 7;
	ck_assert_int_eq(codec_encode(ctx, d, sizeof(d), dec, NULL, 0, 0, &out), 0);
	ck_assert_int_eq(codec_frame_info(out.data, out.len, &fi), 0);
	ck_assert_int_eq(fi.needs_base, 1);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, NULL, dec, 64), -EINVAL);

	/* Another version is not corruption. */
	out.data[4] = 2;
	ck_assert_int_eq(codec_frame_info(out.data, out.len, &fi), -EPROTONOSUPPORT);
	ck_assert_int_eq(codec_decode(ctx, out.data, out.len, d, dec, 64), -EPROTONOSUPPORT);
	ck_assert_int_eq(codec_frame_info((const uint8_t *)"nope", 4, &fi), -EBADMSG);
	ck_assert_int_eq(codec_frame_info(NULL, 0, &fi), -EBADMSG);
	buf_release(&out);
}
END_TEST

/* ---- corruption ---- */

/* Decode must fail with -EBADMSG (or -EPROTONOSUPPORT if @ver_ok). */
static void expect_reject(const uint8_t *f, size_t flen, const uint8_t *base,
			  const uint8_t *orig, size_t len, int ver_ok, const char *what,
			  size_t where)
{
	uint8_t *dec = malloc(len);
	struct codec_frame_info fi;
	int rc, rci;

	ck_assert_ptr_nonnull(dec);
	rci = codec_frame_info(f, flen, &fi);
	rc = codec_decode(ctx, f, flen, base, dec, len);
	if (rc == 0)	/* the one thing that must never happen */
		ck_abort_msg("%s at %zu: decoded %s bytes", what, where,
			     memcmp(dec, orig, len) ? "WRONG" : "the right");
	ck_assert_msg(rc == -EBADMSG || (ver_ok && rc == -EPROTONOSUPPORT),
		      "%s at %zu: rc %d", what, where, rc);
	ck_assert_msg(rci == -EBADMSG || rci == 0 || (ver_ok && rci == -EPROTONOSUPPORT),
		      "%s at %zu: info rc %d", what, where, rci);
	free(dec);
}

static void make_frames(size_t len, struct buf *full, struct buf *delta,
			uint8_t **data, uint8_t **base)
{
	struct codec_span sp[3];
	size_t ns = mixed_layout(len, sp);

	*data = malloc(len);
	*base = malloc(len);
	ck_assert_ptr_nonnull(*data);
	ck_assert_ptr_nonnull(*base);
	fill_layout(*base, len, sp, ns);
	make_delta(*data, *base, len, sp, ns, 0.1);
	(*data)[len - 1] ^= 0x20;	/* width-1 bytes change too */
	ck_assert_int_eq(codec_encode(ctx, *data, len, NULL, sp, ns, 0, full), 0);
	ck_assert_int_eq(codec_encode(ctx, *data, len, *base, sp, ns, 0, delta), 0);
}

START_TEST(test_truncation)
{
	size_t lens[] = { 1, 40, 700, 5000 }, i, k;

	rng = 11;
	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		struct buf full = BUF_INIT, delta = BUF_INIT;
		uint8_t *data, *base;

		make_frames(lens[i], &full, &delta, &data, &base);
		for (k = 0; k < full.len; k++)
			expect_reject(full.data, k, NULL, data, lens[i], 0, "full truncated", k);
		for (k = 0; k < delta.len; k++)
			expect_reject(delta.data, k, base, data, lens[i], 0, "delta truncated", k);
		/* Trailing bytes are corruption too. */
		ck_assert_int_eq(buf_append(&full, "", 1), 0);
		expect_reject(full.data, full.len, NULL, data, lens[i], 0, "full + 1", 0);
		buf_release(&full);
		buf_release(&delta);
		free(data);
		free(base);
	}
}
END_TEST

START_TEST(test_header_bits)
{
	struct buf full = BUF_INIT, delta = BUF_INIT;
	struct buf *fr[2] = { &full, &delta };
	uint8_t *data, *base;
	size_t len = 3000, hdr, k, f;
	unsigned bit;

	rng = 12;
	make_frames(len, &full, &delta, &data, &base);
	for (f = 0; f < 2; f++) {
		/* Fixed part + 3 spans + up to 15 descriptors + check: all of it. */
		hdr = 24 + 3 * 10 + 15 * 20 + 4;
		if (hdr > fr[f]->len)
			hdr = fr[f]->len;
		for (k = 0; k < hdr; k++) {
			for (bit = 0; bit < 8; bit++) {
				fr[f]->data[k] ^= (uint8_t)(1u << bit);
				expect_reject(fr[f]->data, fr[f]->len, base, data, len, k == 4,
					      f ? "delta header bit" : "full header bit", k);
				fr[f]->data[k] ^= (uint8_t)(1u << bit);
			}
		}
	}
	buf_release(&full);
	buf_release(&delta);
	free(data);
	free(base);
}
END_TEST

START_TEST(test_random_flips)
{
	struct buf full = BUF_INIT, delta = BUF_INIT;
	struct buf *fr[2] = { &full, &delta };
	uint8_t *data, *base;
	size_t len = 96 * 1024, f;
	int i;

	rng = 13;
	make_frames(len, &full, &delta, &data, &base);
	for (f = 0; f < 2; f++) {
		for (i = 0; i < 1500; i++) {
			size_t pos = next_rand() % fr[f]->len;
			uint8_t x = (uint8_t)(1 + next_rand() % 255), save = fr[f]->data[pos];

			fr[f]->data[pos] ^= x;
			expect_reject(fr[f]->data, fr[f]->len, base, data, len, pos == 4,
				      f ? "delta flip" : "full flip", pos);
			fr[f]->data[pos] = save;
		}
	}
	buf_release(&full);
	buf_release(&delta);
	free(data);
	free(base);
}
END_TEST

/* Garbage behind a valid magic and version: any error, no crash. */
START_TEST(test_garbage)
{
	uint8_t f[512], dec[4096], base[4096];
	struct codec_frame_info fi;
	int i;

	memset(base, 0, sizeof(base));
	for (i = 0; i < 3000; i++) {
		size_t n = 5 + (size_t)i % (sizeof(f) - 5);

		testutil_fill_random(f, n, (uint64_t)i + 1000);
		memcpy(f, "CKFR\x01", 5);
		if (i & 1)
			f[5] &= 1;	/* plausible flags */
		ck_assert_int_ne(codec_frame_info(f, n, &fi), 0);
		ck_assert_int_lt(codec_decode(ctx, f, n, base, dec, sizeof(dec)), 0);
	}
}
END_TEST

/* ---- frames written by hand from doc/FORMAT.md §2 ---- */

/* A frame under construction: header fields, then descriptors and payload. */
struct hand {
	uint32_t raw_len;
	uint8_t flags;
	uint64_t xxh;
	struct codec_span sp[4];
	size_t ns;
	uint8_t desc[15][20];
	size_t nst;
	struct buf payload;
};

static void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void hand_desc(struct hand *h, uint8_t mode, uint8_t w, uint8_t pl,
		      uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	uint8_t *p = h->desc[h->nst++];

	p[0] = mode;
	p[1] = w;
	p[2] = pl;
	p[3] = 0;
	put32(p + 4, a);
	put32(p + 8, b);
	put32(p + 12, c);
	put32(p + 16, d);
}

/* Append a zstd frame of @n bytes to the payload; returns its size. */
static uint32_t hand_zstd(struct hand *h, const void *src, size_t n)
{
	size_t cap = ZSTD_compressBound(n), r;

	ck_assert_int_eq(buf_reserve(&h->payload, cap), 0);
	r = ZSTD_compress(h->payload.data + h->payload.len, cap, src, n, 1);
	ck_assert(!ZSTD_isError(r));
	h->payload.len += r;
	return (uint32_t)r;
}

static void hand_build(const struct hand *h, struct buf *f)
{
	size_t hl = 24 + h->ns * 10 + h->nst * 20, i;
	uint8_t *p;

	buf_reset(f);
	ck_assert_int_eq(buf_reserve(f, hl + 4 + h->payload.len), 0);
	p = f->data;
	memcpy(p, "CKFR", 4);
	p[4] = 1;
	p[5] = h->flags;
	p[6] = (uint8_t)h->nst;
	p[7] = 0;
	put32(p + 8, h->raw_len);
	put32(p + 12, (uint32_t)h->ns);
	put32(p + 16, (uint32_t)h->xxh);
	put32(p + 20, (uint32_t)(h->xxh >> 32));
	for (i = 0; i < h->ns; i++) {
		put32(p + 24 + 10 * i, h->sp[i].off);
		put32(p + 28 + 10 * i, h->sp[i].len);
		p[32 + 10 * i] = h->sp[i].width;
		p[33 + 10 * i] = h->sp[i].phase;
	}
	memcpy(p + 24 + h->ns * 10, h->desc, h->nst * 20);
	put32(p + hl, (uint32_t)hash_xxh3(p, hl));
	if (h->payload.len)
		memcpy(p + hl + 4, h->payload.data, h->payload.len);
	f->len = hl + 4 + h->payload.len;
}

/* A full frame of "abcdefghij" with a bf16 span [2,8): checks the spec. */
static void hand_full(struct hand *h)
{
	memset(h, 0, sizeof(*h));
	h->raw_len = 10;
	h->xxh = hash_xxh3("abcdefghij", 10);
	h->sp[0] = (struct codec_span){ .off = 2, .len = 6, .width = 2 };
	h->ns = 1;
	hand_desc(h, 1, 1, 0, 4, 0, 0, 0);		/* width 1: a b i j, raw */
	hand_desc(h, 1, 2, 0, 3, 0, 0, 0);		/* bf16 plane 0: c e g, raw */
	ck_assert_int_eq(buf_append(&h->payload, "abijceg", 7), 0);
	hand_desc(h, 2, 2, 1, hand_zstd(h, "dfh", 3), 0, 0, 0);	/* plane 1: zstd */
}

/* A delta frame of 1000 bytes whose XOR has 0x11 at 10 and 0x22 at 271. */
static void hand_sparse(struct hand *h, const uint8_t *gaps, size_t glen, uint32_t nnz,
			const uint8_t *base, uint8_t *want)
{
	uint8_t vals[2] = { 0x11, 0x22 };
	uint32_t gz, vz;

	memset(h, 0, sizeof(*h));
	memcpy(want, base, 1000);
	want[10] ^= 0x11;
	want[271] ^= 0x22;
	h->raw_len = 1000;
	h->flags = 1;
	h->xxh = hash_xxh3(want, 1000);
	gz = hand_zstd(h, gaps, glen);
	vz = hand_zstd(h, vals, nnz);
	hand_desc(h, 3, 1, 0, nnz, (uint32_t)glen, gz, vz);
}

static void hand_expect(const struct buf *f, const uint8_t *base, size_t len, int want_rc,
			const uint8_t *want, const char *what)
{
	uint8_t *dec = malloc(len);
	int rc;

	ck_assert_ptr_nonnull(dec);
	rc = codec_decode(ctx, f->data, f->len, base, dec, len);
	ck_assert_msg(rc == want_rc, "%s: rc %d, want %d", what, rc, want_rc);
	if (want)
		ck_assert_msg(memcmp(dec, want, len) == 0, "%s: wrong bytes", what);
	free(dec);
}

START_TEST(test_hand_frames)
{
	static const uint8_t good_gaps[] = { 10, 255, 5 };	/* 10, then 255 + 5 */
	static const uint8_t huge_gap[] = { 10, 255, 0xff, 0xff, 0xff, 0x7f };
	static const uint8_t long_leb[] = { 10, 255, 0x80, 0x80, 0x80, 0x80, 0x00 };
	static const uint8_t to_end[] = { 255, 0xe8, 0x05, 0 };	/* 999, then 0 */
	static const uint8_t extra[] = { 10, 3, 7 };
	uint8_t base[1000], want[1000];
	struct buf f = BUF_INIT;
	struct hand h;
	size_t i;

	for (i = 0; i < sizeof(base); i++)
		base[i] = (uint8_t)(i * 31);

	hand_full(&h);
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, 0, (const uint8_t *)"abcdefghij", "spec full frame");
	/* Header variants, each with a correct header check. */
	h.flags = 2;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "unknown flag");
	h.flags = 0;
	h.sp[0].width = 1;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "width-1 span");
	h.sp[0].width = 2;
	h.sp[0].phase = 2;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "phase >= width");
	h.sp[0].phase = 0;
	h.sp[0].len = 9;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "span past the chunk");
	h.sp[0].len = 6;
	h.sp[1] = (struct codec_span){ .off = 7, .len = 2, .width = 2 };
	h.ns = 2;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "overlapping spans");
	h.ns = 1;
	h.desc[0][3] = 1;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "reserved byte");
	h.desc[0][3] = 0;
	h.desc[1][2] = 1;
	h.desc[2][2] = 0;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "descriptors out of order");
	h.desc[1][2] = 0;
	h.desc[2][2] = 1;
	h.desc[0][4] = 5;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "raw size != stream size");
	h.desc[0][4] = 4;
	h.desc[0][0] = 4;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "unknown mode");
	h.desc[0][0] = 1;
	h.desc[2][4]++;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "zstd size past the frame");
	h.desc[2][4]--;
	h.raw_len = 0;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 0, -EBADMSG, NULL, "raw_len 0");
	h.raw_len = CODEC_CHUNK_MAX + 1;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "raw_len too large");
	h.raw_len = 10;
	h.nst = 2;
	hand_build(&h, &f);
	hand_expect(&f, NULL, 10, -EBADMSG, NULL, "missing descriptor");
	buf_release(&h.payload);

	/* Sparse coding, §2.5. */
	hand_sparse(&h, good_gaps, sizeof(good_gaps), 2, base, want);
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, 0, want, "spec sparse frame");
	buf_release(&h.payload);
	hand_sparse(&h, huge_gap, sizeof(huge_gap), 2, base, want);
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "gap past the end");
	buf_release(&h.payload);
	hand_sparse(&h, long_leb, sizeof(long_leb), 2, base, want);
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "5-byte LEB128");
	buf_release(&h.payload);
	hand_sparse(&h, to_end, sizeof(to_end), 2, base, want);
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "value at raw_len");
	buf_release(&h.payload);
	hand_sparse(&h, extra, sizeof(extra), 2, base, want);
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "unused gap bytes");
	buf_release(&h.payload);
	hand_sparse(&h, good_gaps, sizeof(good_gaps), 2, base, want);
	put32(h.desc[0] + 8, 4);	/* gap bytes declared != decoded */
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "gap length");
	put32(h.desc[0] + 8, 3);
	put32(h.desc[0] + 4, 1001);	/* more values than bytes */
	hand_build(&h, &f);
	hand_expect(&f, base, 1000, -EBADMSG, NULL, "nnz > stream");
	buf_release(&h.payload);
	buf_release(&f);
}
END_TEST

/* ---- golden frames (format v1) ---- */

/*
 * The golden chunk: 700 bytes of header text, a bf16 span starting mid
 * element, an f32 span, an all-zero f64 span, and a width-1 tail; its base
 * differs in a few elements. Generated by formulas here, not by the RNG,
 * so the input can never drift.
 */
#define GOLDEN_LEN 700
static const struct codec_span golden_spans[] = {
	{ .off = 37, .len = 401, .width = 2, .phase = 1 },
	{ .off = 438, .len = 160, .width = 4, .phase = 0 },
	{ .off = 598, .len = 96, .width = 8, .phase = 0 },
};

static void golden_chunk(uint8_t *d, uint8_t *b)
{
	size_t i;

	for (i = 0; i < GOLDEN_LEN; i++)
		d[i] = (uint8_t)"{\"w\":{\"dtype\":\"BF16\",\"shape\":[200]}} "[i % 37];
	for (i = 37; i < 438; i++)	/* (i - 37 + 1) odd: high byte */
		d[i] = (i - 36) % 2 ? (uint8_t)(0x3c + (i * 7 % 3)) : (uint8_t)(i * 2654435761u >> 24);
	for (i = 438; i < 598; i++)
		d[i] = (i - 438) % 4 == 3 ? 0x3c : (i - 438) % 4 == 2 ? (uint8_t)(0x80 | (i & 1)) :
		       (uint8_t)(i * 40503u >> 8);
	for (i = 598; i < 694; i++)
		d[i] = 0;
	memcpy(b, d, GOLDEN_LEN);
	for (i = 40; i < 438; i += 23)
		b[i] ^= (uint8_t)(i % 2 ? 1 : 3);
	b[450] ^= 1;
	b[3] ^= 0x10;
}

static const uint8_t golden_full[] = {
	0x43, 0x4b, 0x46, 0x52, 0x01, 0x00, 0x0f, 0x00, 0xbc, 0x02, 0x00, 0x00,
	0x03, 0x00, 0x00, 0x00, 0x9e, 0x08, 0xa3, 0xb0, 0x86, 0xce, 0xac, 0x3d,
	0x25, 0x00, 0x00, 0x00, 0x91, 0x01, 0x00, 0x00, 0x02, 0x01, 0xb6, 0x01,
	0x00, 0x00, 0xa0, 0x00, 0x00, 0x00, 0x04, 0x00, 0x56, 0x02, 0x00, 0x00,
	0x60, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x01, 0x00, 0x00, 0x2b, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02,
	0x01, 0x00, 0x3d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x28, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04,
	0x02, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x03, 0x00, 0x28, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x05, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaf, 0xc1, 0xe8, 0xe4, 0x7b, 0x22,
	0x77, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a,
	0x22, 0x42, 0x46, 0x31, 0x36, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70,
	0x65, 0x22, 0x3a, 0x5b, 0x32, 0x30, 0x30, 0x5d, 0x7d, 0x7d, 0x20, 0x3a,
	0x5b, 0x32, 0x30, 0x30, 0x5d, 0x7c, 0xb8, 0xf5, 0x31, 0x6d, 0xaa, 0xe6,
	0x23, 0x5f, 0x9c, 0xd8, 0x15, 0x51, 0x8d, 0xca, 0x06, 0x43, 0x7f, 0xbc,
	0xf8, 0x34, 0x71, 0xad, 0xea, 0x26, 0x63, 0x9f, 0xdb, 0x18, 0x54, 0x91,
	0xcd, 0x0a, 0x46, 0x82, 0xbf, 0xfb, 0x38, 0x74, 0xb1, 0xed, 0x2a, 0x66,
	0xa2, 0xdf, 0x1b, 0x58, 0x94, 0xd1, 0x0d, 0x49, 0x86, 0xc2, 0xff, 0x3b,
	0x78, 0xb4, 0xf0, 0x2d, 0x69, 0xa6, 0xe2, 0x1f, 0x5b, 0x97, 0xd4, 0x10,
	0x4d, 0x89, 0xc6, 0x02, 0x3f, 0x7b, 0xb7, 0xf4, 0x30, 0x6d, 0xa9, 0xe6,
	0x22, 0x5e, 0x9b, 0xd7, 0x14, 0x50, 0x8d, 0xc9, 0x05, 0x42, 0x7e, 0xbb,
	0xf7, 0x34, 0x70, 0xac, 0xe9, 0x25, 0x62, 0x9e, 0xdb, 0x17, 0x54, 0x90,
	0xcc, 0x09, 0x45, 0x82, 0xbe, 0xfb, 0x37, 0x73, 0xb0, 0xec, 0x29, 0x65,
	0xa2, 0xde, 0x1a, 0x57, 0x93, 0xd0, 0x0c, 0x49, 0x85, 0xc1, 0xfe, 0x3a,
	0x77, 0xb3, 0xf0, 0x2c, 0x69, 0xa5, 0xe1, 0x1e, 0x5a, 0x97, 0xd3, 0x10,
	0x4c, 0x88, 0xc5, 0x01, 0x3e, 0x7a, 0xb7, 0xf3, 0x2f, 0x6c, 0xa8, 0xe5,
	0x21, 0x5e, 0x9a, 0xd6, 0x13, 0x4f, 0x8c, 0xc8, 0x05, 0x41, 0x7e, 0xba,
	0xf6, 0x33, 0x6f, 0xac, 0xe8, 0x25, 0x61, 0x9d, 0xda, 0x16, 0x53, 0x8f,
	0xcc, 0x08, 0x44, 0x81, 0xbd, 0xfa, 0x36, 0x73, 0xaf, 0xeb, 0x28, 0x64,
	0xa1, 0xdd, 0x1a, 0x56, 0x93, 0xcf, 0x0b, 0x48, 0x84, 0xc1, 0xfd, 0x3a,
	0x76, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xc9, 0xa5, 0x01, 0x00, 0x92, 0x0c,
	0x0c, 0x05, 0xf0, 0x39, 0xf2, 0x22, 0x01, 0xa5, 0x94, 0x52, 0x4a, 0x29,
	0xa5, 0x94, 0x52, 0x4a, 0x29, 0xa5, 0x94, 0x52, 0x4a, 0x29, 0xa5, 0x94,
	0x52, 0x4a, 0x29, 0xa5, 0x94, 0x52, 0x4a, 0x29, 0xa5, 0x94, 0x52, 0x4a,
	0x29, 0xa5, 0x94, 0x52, 0x4a, 0x29, 0xa5, 0x94, 0x52, 0x4a, 0x29, 0xa5,
	0x94, 0x00, 0xb2, 0x2a, 0xa3, 0x1c, 0x95, 0x0e, 0x87, 0x00, 0x78, 0xf1,
	0x6a, 0xe3, 0x5c, 0xd5, 0x4e, 0xc6, 0x3f, 0xb8, 0x31, 0xaa, 0x23, 0x9c,
	0x15, 0x8d, 0x06, 0x7f, 0xf8, 0x71, 0xea, 0x63, 0xdb, 0x54, 0xcd, 0x46,
	0xbf, 0x38, 0xb1, 0x29, 0xa2, 0x1b, 0x50, 0xc9, 0x42, 0xba, 0x33, 0xac,
	0x25, 0x9e, 0x17, 0x90, 0x08, 0x81, 0xfa, 0x73, 0xec, 0x65, 0xde, 0x56,
	0xcf, 0x48, 0xc1, 0x3a, 0xb3, 0x2c, 0xa4, 0x1d, 0x96, 0x0f, 0x88, 0x01,
	0x7a, 0xf2, 0x6b, 0xe4, 0x5d, 0xd6, 0x4f, 0xc8, 0x40, 0xb9, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x80, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
	0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
	0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
	0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
};
static const uint8_t golden_delta[] = {
	0x43, 0x4b, 0x46, 0x52, 0x01, 0x01, 0x0f, 0x00, 0xbc, 0x02, 0x00, 0x00,
	0x03, 0x00, 0x00, 0x00, 0x9e, 0x08, 0xa3, 0xb0, 0x86, 0xce, 0xac, 0x3d,
	0x25, 0x00, 0x00, 0x00, 0x91, 0x01, 0x00, 0x00, 0x02, 0x01, 0xb6, 0x01,
	0x00, 0x00, 0xa0, 0x00, 0x00, 0x00, 0x04, 0x00, 0x56, 0x02, 0x00, 0x00,
	0x60, 0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x01, 0x00, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0a, 0x00,
	0x00, 0x00, 0x03, 0x02, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x09, 0x00,
	0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03, 0x02,
	0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x12, 0x00,
	0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x03, 0x04, 0x00, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0a, 0x00,
	0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x05, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x08, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
	0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x52, 0x91, 0xed, 0x70, 0x28, 0xb5,
	0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00, 0x00, 0x03, 0x28, 0xb5, 0x2f, 0xfd,
	0x20, 0x01, 0x09, 0x00, 0x00, 0x10, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x09,
	0x49, 0x00, 0x00, 0x01, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16,
	0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x09, 0x49, 0x00, 0x00, 0x03, 0x03, 0x03,
	0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x09,
	0x49, 0x00, 0x00, 0x0d, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16, 0x16,
	0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x09, 0x49, 0x00, 0x00, 0x01, 0x01, 0x01,
	0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01,
	0x09, 0x00, 0x00, 0x03, 0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00,
	0x00, 0x01,
};
static const char golden_sha256[] =
	"7fb1f39453e8735d6e1f041e0af7e7467fc22a7b77137956722d039344a37a7d";

static void print_golden(const char *name, const struct buf *f)
{
	size_t i;

	printf("static const uint8_t %s[] = {", name);
	for (i = 0; i < f->len; i++)
		printf("%s0x%02x,", i % 12 ? " " : "\n\t", f->data[i]);
	printf("\n};\n");
}

START_TEST(test_golden)
{
	uint8_t d[GOLDEN_LEN], b[GOLDEN_LEN], dec[GOLDEN_LEN];
	char hex[HASH_SHA256_HEX_LEN + 1];
	struct codec_frame_info fi;

	golden_chunk(d, b);
	if (getenv("CKPTFS_GOLDEN_PRINT")) {
		struct buf full = BUF_INIT, delta = BUF_INIT;

		ck_assert_int_eq(codec_encode(ctx, d, GOLDEN_LEN, NULL, golden_spans,
					      ARRAY_SIZE(golden_spans), 0, &full), 0);
		ck_assert_int_eq(codec_encode(ctx, d, GOLDEN_LEN, b, golden_spans,
					      ARRAY_SIZE(golden_spans), 0, &delta), 0);
		print_golden("golden_full", &full);
		print_golden("golden_delta", &delta);
		hash_sha256_hex(d, GOLDEN_LEN, hex);
		printf("static const char golden_sha256[] =\n\t\"%s\";\n", hex);
		buf_release(&full);
		buf_release(&delta);
		return;
	}
	ck_assert_int_eq(codec_frame_info(golden_full, sizeof(golden_full), &fi), 0);
	ck_assert_uint_eq(fi.raw_len, GOLDEN_LEN);
	ck_assert_int_eq(fi.needs_base, 0);
	ck_assert_int_eq(codec_decode(ctx, golden_full, sizeof(golden_full), NULL, dec, GOLDEN_LEN), 0);
	hash_sha256_hex(dec, GOLDEN_LEN, hex);
	ck_assert_str_eq(hex, golden_sha256);

	ck_assert_int_eq(codec_frame_info(golden_delta, sizeof(golden_delta), &fi), 0);
	ck_assert_uint_eq(fi.raw_len, GOLDEN_LEN);
	ck_assert_int_eq(fi.needs_base, 1);
	ck_assert_int_eq(codec_decode(ctx, golden_delta, sizeof(golden_delta), b, dec, GOLDEN_LEN), 0);
	hash_sha256_hex(dec, GOLDEN_LEN, hex);
	ck_assert_str_eq(hex, golden_sha256);
	/* The inputs did not drift either. */
	hash_sha256_hex(d, GOLDEN_LEN, hex);
	ck_assert_str_eq(hex, golden_sha256);
}
END_TEST

/* ---- safetensors ---- */

/* A file head: 8-byte LE length, then @json padded with spaces to @pad. */
static size_t st_head(uint8_t *out, size_t cap, const char *json, size_t pad)
{
	size_t n = strlen(json), i;

	if (pad < n)
		pad = n;
	ck_assert_uint_le(8 + pad, cap);
	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)((uint64_t)pad >> (8 * i));
	memcpy(out + 8, json, n);
	memset(out + 8 + n, ' ', pad - n);
	return 8 + pad;
}

START_TEST(test_st_parse_good)
{
	/* JSON order differs from file order on purpose. */
	const char *json =
		"{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[10,22]},"
		"\"__metadata__\":{\"format\":\"pt\"},"
		"\"a\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[0,10]},"
		"\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[22,30]},"
		"\"e\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[30,30]},"
		"\"d\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[30,34]}}";
	struct st_layout l = ST_LAYOUT_INIT;
	uint8_t head[1024];
	size_t n = st_head(head, sizeof(head), json, strlen(json) + 6);

	ck_assert_int_eq(st_layout_parse(head, n, &l), 0);
	ck_assert_uint_eq(l.data_start, n);
	ck_assert_uint_eq(l.data_end, n + 34);
	ck_assert_uint_eq(l.n, 4);	/* the empty tensor owns no bytes */
	ck_assert_uint_eq(l.tensors[0].off, n);
	ck_assert_uint_eq(l.tensors[0].len, 10);
	ck_assert_uint_eq(l.tensors[0].width, 2);
	ck_assert_uint_eq(l.tensors[1].off, n + 10);
	ck_assert_uint_eq(l.tensors[1].width, 4);
	ck_assert_uint_eq(l.tensors[2].width, 8);
	ck_assert_uint_eq(l.tensors[3].width, 1);
	st_layout_release(&l);
	ck_assert_ptr_null(l.tensors);

	/* Bytes past the header (the data) are fine. */
	ck_assert_int_eq(st_layout_parse(head, sizeof(head), &l), 0);
	st_layout_release(&l);
	ck_assert_int_eq(st_layout_parse(head, 7, &l), -EAGAIN);
	ck_assert_int_eq(st_layout_parse(head, 8, &l), -EAGAIN);
	ck_assert_int_eq(st_layout_parse(head, n - 1, &l), -EAGAIN);

	/* No tensors at all is a valid (empty) file. */
	n = st_head(head, sizeof(head), "{}", 8);
	ck_assert_int_eq(st_layout_parse(head, n, &l), 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_uint_eq(l.data_end, 16);
	st_layout_release(&l);
}
END_TEST

START_TEST(test_st_parse_bad)
{
	static const char *bad[] = {
		"",
		"[]",
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}",		/* truncated */
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}} x",		/* garbage after */
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[8,0]}}",		/* inverted */
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
		 "\"b\":{\"dtype\":\"F32\",\"data_offsets\":[4,12]}}",		/* overlap */
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
		 "\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}",		/* duplicate */
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[-4,8]}}",
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0.5,8]}}",
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,1e300]}}",
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0]}}",
		"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,\"8\"]}}",
		"{\"a\":{\"data_offsets\":[0,8]}}",				/* no dtype */
		"{\"a\":{\"dtype\":32,\"data_offsets\":[0,8]}}",
		"{\"a\":[1,2]}",
	};
	struct st_layout l = ST_LAYOUT_INIT;
	uint8_t head[512];
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		n = st_head(head, sizeof(head), bad[i], strlen(bad[i]) < 2 ? 2 : 0);
		if (!*bad[i])
			head[8] = head[9] = 0;
		ck_assert_msg(st_layout_parse(head, n, &l) == -EINVAL, "accepted: %s", bad[i]);
		ck_assert_ptr_null(l.tensors);
	}
	/* N > 100 MB is not a header, whatever follows. */
	memset(head, 0, 8);
	head[0] = 0x01;
	head[1] = 0xe1;
	head[2] = 0xf5;
	head[3] = 0x05;	/* 100000001 */
	ck_assert_int_eq(st_layout_parse(head, sizeof(head), &l), -EINVAL);
	memset(head, 0xff, 8);
	ck_assert_int_eq(st_layout_parse(head, sizeof(head), &l), -EINVAL);
	ck_assert_int_eq(st_layout_parse(NULL, 0, &l), -EINVAL);
}
END_TEST

START_TEST(test_st_spans)
{
	/* Offsets relative to the data start: a bf16 [0,100), b f32 [100,202)
	 * (not a whole number of elements: the parser does not care),
	 * c u8 [202,236), d f64 [236,340), e f64 [340,356). */
	const char *json =
		"{\"a\":{\"dtype\":\"BF16\",\"data_offsets\":[0,100]},"
		"\"b\":{\"dtype\":\"F32\",\"data_offsets\":[100,202]},"
		"\"c\":{\"dtype\":\"U8\",\"data_offsets\":[202,236]},"
		"\"d\":{\"dtype\":\"F64\",\"data_offsets\":[236,340]},"
		"\"e\":{\"dtype\":\"F64\",\"data_offsets\":[340,356]}}";
	struct st_layout l = ST_LAYOUT_INIT;
	struct codec_span sp[8];
	uint8_t head[512];
	size_t n, ns, ds;

	n = st_head(head, sizeof(head), json, 0);
	ck_assert_int_eq(st_layout_parse(head, n, &l), 0);
	ds = l.data_start;
	ck_assert_uint_eq(l.data_end, ds + 356);

	/* A chunk starting 3 bytes into tensor a: phase 1 (bf16). */
	ns = st_layout_chunk_spans(&l, ds + 3, 200, sp, ARRAY_SIZE(sp));
	ck_assert_uint_eq(ns, 2);
	ck_assert_uint_eq(sp[0].off, 0);
	ck_assert_uint_eq(sp[0].len, 97);
	ck_assert_uint_eq(sp[0].width, 2);
	ck_assert_uint_eq(sp[0].phase, 1);
	ck_assert_uint_eq(sp[1].off, 97);
	ck_assert_uint_eq(sp[1].len, 102);
	ck_assert_uint_eq(sp[1].width, 4);
	ck_assert_uint_eq(sp[1].phase, 0);

	/* Starting 7 bytes into b (f32): phase 3; c (u8) gives no span;
	 * d and e are one f64 run, merged into one span. */
	ns = st_layout_chunk_spans(&l, ds + 107, 1000, sp, ARRAY_SIZE(sp));
	ck_assert_uint_eq(ns, 2);
	ck_assert_uint_eq(sp[0].off, 0);
	ck_assert_uint_eq(sp[0].len, 95);
	ck_assert_uint_eq(sp[0].phase, 3);
	ck_assert_uint_eq(sp[1].off, 236 - 107);
	ck_assert_uint_eq(sp[1].len, 120);
	ck_assert_uint_eq(sp[1].width, 8);
	ck_assert_uint_eq(sp[1].phase, 0);

	/* A chunk inside one tensor, 13 bytes in: phase 13 % 8 = 5. */
	ns = st_layout_chunk_spans(&l, ds + 249, 10, sp, ARRAY_SIZE(sp));
	ck_assert_uint_eq(ns, 1);
	ck_assert_uint_eq(sp[0].off, 0);
	ck_assert_uint_eq(sp[0].len, 10);
	ck_assert_uint_eq(sp[0].phase, 5);

	/* The header itself, past the end, and a full span table. */
	ck_assert_uint_eq(st_layout_chunk_spans(&l, 0, ds, sp, ARRAY_SIZE(sp)), 0);
	ck_assert_uint_eq(st_layout_chunk_spans(&l, ds + 356, 100, sp, ARRAY_SIZE(sp)), 0);
	ns = st_layout_chunk_spans(&l, 0, 1000, sp, 1);
	ck_assert_uint_eq(ns, 1);
	ck_assert_uint_eq(sp[0].off, ds);
	st_layout_release(&l);
}
END_TEST

/* A whole safetensors file, chunked at an odd size, through the codec. */
START_TEST(test_st_codec_file)
{
	const char *json =
		"{\"__metadata__\":{\"format\":\"pt\"},"
		"\"emb\":{\"dtype\":\"BF16\",\"shape\":[50001],\"data_offsets\":[0,100002]},"
		"\"norm\":{\"dtype\":\"F32\",\"shape\":[1001],\"data_offsets\":[100002,104006]},"
		"\"step\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[104006,104014]},"
		"\"mask\":{\"dtype\":\"BOOL\",\"shape\":[33],\"data_offsets\":[104014,104047]},"
		"\"out\":{\"dtype\":\"BF16\",\"shape\":[30000],\"data_offsets\":[104047,164047]}}";
	struct st_layout l = ST_LAYOUT_INIT;
	size_t chunk = 12345, size, off, i;
	struct codec_span sp[16];
	uint8_t *f, *g;

	f = malloc(200000);
	g = malloc(200000);
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(g);
	rng = 14;
	size = st_head(f, 200000, json, 0);
	ck_assert_int_eq(st_layout_parse(f, size, &l), 0);
	size = l.data_end;
	for (i = 0; i < l.n; i++)
		fill_weights(f + l.tensors[i].off, l.tensors[i].len, l.tensors[i].width);
	memcpy(g, f, size);
	for (i = 0; i < l.n; i++) {
		struct codec_span s = { .off = (uint32_t)l.tensors[i].off,
					.len = (uint32_t)l.tensors[i].len,
					.width = l.tensors[i].width };

		if (s.width > 1)
			make_delta(g, g, size, &s, 1, 0.2);
	}
	for (off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? size - off : chunk;
		size_t ns = st_layout_chunk_spans(&l, off, len, sp, ARRAY_SIZE(sp));

		roundtrip(f + off, len, NULL, sp, ns, 0);
		roundtrip(g + off, len, f + off, sp, ns, 0);
	}
	st_layout_release(&l);
	free(f);
	free(g);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("codec");
	TCase *tc;
	SRunner *sr;
	int failed;

	tc = tcase_create("roundtrip");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_roundtrip_sizes);
	tcase_add_test(tc, test_roundtrip_big);
	tcase_add_test(tc, test_roundtrip_levels);
	tcase_add_test(tc, test_roundtrip_random_layouts);
	tcase_add_test(tc, test_append);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);

	tc = tcase_create("delta");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_delta_all_zero);
	tcase_add_test(tc, test_delta_all_bits);
	tcase_add_test(tc, test_delta_densities);
	tcase_add_test(tc, test_delta_full_fallback);
	tcase_add_test(tc, test_wrong_base);
	suite_add_tcase(s, tc);

	tc = tcase_create("corruption");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_truncation);
	tcase_add_test(tc, test_header_bits);
	tcase_add_test(tc, test_random_flips);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_hand_frames);
	tcase_add_test(tc, test_golden);
	suite_add_tcase(s, tc);

	tc = tcase_create("safetensors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_st_parse_good);
	tcase_add_test(tc, test_st_parse_bad);
	tcase_add_test(tc, test_st_spans);
	tcase_add_test(tc, test_st_codec_file);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
