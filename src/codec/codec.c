/*
 * codec.c: one chunk <-> one self-describing frame (doc/FORMAT.md §2).
 *
 * Owns:         the frame byte layout (writer and the only reader), the
 *               byte-plane split by element width, XOR against a base chunk,
 *               the sparse "where + what" coding of delta planes, the choice
 *               of zstd mode per plane, and the XXH3 check of decoded bytes.
 * Does not own: element widths (they come from safetensors.c through the
 *               caller), where frames live, how files are cut into chunks.
 *
 * Why the design looks like this (bench/codec_bench.c measures all of it):
 *  - Float byte planes are nearly free of LZ matches; zstd's match finder is
 *    the slow part and finds nothing. So element planes are compressed
 *    "Huffman only": ZSTD_compressSequences() with zero sequences emits a
 *    standard zstd frame whose blocks hold Huffman-coded literals only. On
 *    the bf16 exponent plane this is ~4x faster than zstd -1 (~800 vs
 *    ~180 MB/s) and smaller (2.95x vs 2.71x; order-0 entropy bound 2.99x).
 *  - A delta plane is mostly zero bytes. Huffman cannot spend less than one
 *    bit per byte, and LZ spends ~20 bits per isolated change. Coding the
 *    positions of non-zero bytes as gaps and the non-zero values as a
 *    separate stream (each Huffman coded) gets close to the entropy bound
 *    at 1-50% density; above that the dense plane wins, and the encoder
 *    tries both in between and keeps the smaller.
 *  - Every stream is an ordinary zstd frame (or raw bytes), so the decoder
 *    is ZSTD_decompressDCtx() plus bounded loops; it never trusts a length
 *    it has not checked against the frame size and the header checksum,
 *    and the XXH3 of the decoded chunk is checked last, always.
 */
#define ZSTD_STATIC_LINKING_ONLY	/* ZSTD_compressSequences, literal mode */
#include "codec/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>
#if defined(__SSE2__)
#include <emmintrin.h>	/* baseline on x86-64: no runtime dispatch needed */
#endif

#include "util/hash.h"

/* doc/FORMAT.md §2.1: fixed header, all fields little-endian. */
#define FRAME_MAGIC		0x52464b43u	/* "CKFR" */
#define FRAME_VERSION		1
#define FRAME_FIXED_LEN		24	/* magic:4 ver:1 flags:1 nstreams:2 raw_len:4 nspans:4 xxh3:8 */
#define SPAN_REC_LEN		10	/* off:4 len:4 width:1 phase:1 */
#define DESC_REC_LEN		20	/* mode:1 width:1 plane:1 rsvd:1 a:4 b:4 c:4 d:4 */
#define HDR_CHECK_LEN		4
#define FLAG_DELTA		0x01

/* Streams in canonical order: id = width - 1 + plane (§2.3). */
#define NSTREAMS		15

/* §2.4 stream modes. */
enum {
	MODE_ZERO = 0,		/* every byte is 0; no payload */
	MODE_RAW = 1,		/* the bytes themselves */
	MODE_ZSTD = 2,		/* one zstd frame of the stream */
	MODE_SPARSE = 3,	/* zstd(gaps) then zstd(non-zero values) */
};

/*
 * Delta planes: below SPARSE_ONLY_PCT percent non-zero bytes only the sparse
 * coding is tried, from DENSE_ONLY_PCT up only the dense one, in between
 * both and the smaller is kept. Measured on +-1..2 ulp bf16 deltas, sparse
 * wins clearly below 40%, dense above 70%, and between 45% and 65% the two
 * are within 0.3% of each other; the band is a safety net for real data
 * whose value distributions differ, not a ratio gain on synthetic data.
 */
#define SPARSE_ONLY_PCT		50
#define DENSE_ONLY_PCT		70
/* A delta frame above this fraction of raw (num/den) is re-tried as full. */
#define FULL_RETRY_NUM		3
#define FULL_RETRY_DEN		5
/* zstd level for width-1 bytes when the caller passes 0. */
#define DEFAULT_LZ_LEVEL	1
/* From this level up, planes also get an LZ attempt at that level. */
#define LZ_PLANES_MIN_LEVEL	3

struct codec_ctx {
	ZSTD_CCtx *huf;		/* level 1, literals forced: Huffman-only frames */
	ZSTD_CCtx *lz;		/* ordinary zstd, level set per call */
	ZSTD_DCtx *dc;
	uint8_t *planes;	/* the chunk, permuted into streams */
	size_t planes_cap;
	uint8_t *gaps;		/* sparse: gap bytes */
	size_t gaps_cap;
	uint8_t *vals;		/* sparse: non-zero values */
	size_t vals_cap;
	uint8_t *tmp;		/* a second compression candidate */
	size_t tmp_cap;
	uint8_t *stab;		/* normalized span table, frame encoding */
	size_t stab_cap;
};

struct span {
	uint32_t off;
	uint32_t len;
	uint8_t width;
	uint8_t phase;
};

struct sdesc {
	uint8_t mode;
	uint32_t a, b, c, d;	/* meaning per mode, §2.4 */
};

/* A parsed and fully validated frame header. Pointers borrow the frame. */
struct frame_hdr {
	uint32_t raw_len;
	uint8_t flags;
	uint64_t xxh;
	const uint8_t *stab;
	uint32_t nspans;
	size_t slen[NSTREAMS];
	size_t sofs[NSTREAMS];
	struct sdesc desc[NSTREAMS];
	const uint8_t *payload[NSTREAMS];
	size_t max_gaps;	/* scratch the sparse streams need */
	size_t max_vals;
};

/* ---- little-endian helpers (never memcpy a struct, STYLE §5.7) ---- */

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
	       (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Host-order word load for zero tests only (byte order is irrelevant). */
static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* ---- streams and spans ---- */

static unsigned stream_width(unsigned sid)
{
	return sid == 0 ? 1 : sid < 3 ? 2 : sid < 7 ? 4 : 8;
}

static void get_span(const uint8_t *tab, size_t i, struct span *s)
{
	const uint8_t *p = tab + i * SPAN_REC_LEN;

	s->off = get_le32(p);
	s->len = get_le32(p + 4);
	s->width = p[8];
	s->phase = p[9];
}

static void put_span(uint8_t *tab, size_t i, const struct span *s)
{
	uint8_t *p = tab + i * SPAN_REC_LEN;

	put_le32(p, s->off);
	put_le32(p + 4, s->len);
	p[8] = s->width;
	p[9] = s->phase;
}

/* Bytes of plane @j in a span: offsets o in [0,len) with (o+phase)%w == j. */
static size_t plane_count(size_t len, unsigned w, unsigned phase, unsigned j)
{
	size_t first = (j + w - phase) % w;

	return first < len ? (len - first - 1) / w + 1 : 0;
}

/* Stream lengths and offsets in the permuted buffer (§2.3). */
static void stream_layout(const uint8_t *tab, uint32_t ns, uint32_t raw_len,
			  size_t slen[NSTREAMS], size_t sofs[NSTREAMS])
{
	size_t covered = 0, pos = 0;
	struct span s;
	uint32_t i;
	unsigned j;

	memset(slen, 0, NSTREAMS * sizeof(slen[0]));
	for (i = 0; i < ns; i++) {
		get_span(tab, i, &s);
		covered += s.len;
		for (j = 0; j < s.width; j++)
			slen[s.width - 1 + j] += plane_count(s.len, s.width, s.phase, j);
	}
	slen[0] = raw_len - covered;
	for (j = 0; j < NSTREAMS; j++) {
		sofs[j] = pos;
		pos += slen[j];
	}
}

/*
 * Element loops, inlined with a constant width so each becomes a tight
 * unrolled loop. @b is NULL (copy) or the base (XOR).
 */
static inline __attribute__((always_inline)) void
split_elems(const uint8_t *restrict d, const uint8_t *restrict b, size_t n,
	    unsigned w, uint8_t **pc)
{
	uint8_t *p[8];
	size_t k;
	unsigned j;

	for (j = 0; j < w; j++)
		p[j] = pc[j];
	if (b) {
		for (k = 0; k < n; k++)
			for (j = 0; j < w; j++)
				p[j][k] = d[k * w + j] ^ b[k * w + j];
	} else {
		for (k = 0; k < n; k++)
			for (j = 0; j < w; j++)
				p[j][k] = d[k * w + j];
	}
	for (j = 0; j < w; j++)
		pc[j] += n;
}

static inline __attribute__((always_inline)) void
merge_elems(uint8_t *restrict o, const uint8_t *restrict b, size_t n,
	    unsigned w, const uint8_t **pc)
{
	const uint8_t *p[8];
	size_t k;
	unsigned j;

	for (j = 0; j < w; j++)
		p[j] = pc[j];
	if (b) {
		for (k = 0; k < n; k++)
			for (j = 0; j < w; j++)
				o[k * w + j] = p[j][k] ^ b[k * w + j];
	} else {
		for (k = 0; k < n; k++)
			for (j = 0; j < w; j++)
				o[k * w + j] = p[j][k];
	}
	for (j = 0; j < w; j++)
		pc[j] += n;
}

#if defined(__SSE2__)
static __m128i load128(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}

static __m128i load128x(const uint8_t *p, const uint8_t *b)
{
	return b ? _mm_xor_si128(load128(p), load128(b)) : load128(p);
}

static void store128(uint8_t *p, __m128i v)
{
	_mm_storeu_si128((__m128i *)(void *)p, v);
}
#endif

/*
 * The hot cases (bf16/f16 and f32/i32 planes) get SSE2 loops: the byte
 * loops the compiler makes of split_elems() at -O2 run at ~1 GB/s, the
 * pack/unpack versions several times faster. Loops end in the generic
 * code for the last < 16 elements.
 */
static void split2(const uint8_t *d, const uint8_t *b, size_t n, uint8_t **pc)
{
	size_t k = 0;

#if defined(__SSE2__)
	const __m128i m = _mm_set1_epi16(0xff);
	uint8_t *p0 = pc[0], *p1 = pc[1];

	for (; k + 16 <= n; k += 16) {
		__m128i a = load128x(d + 2 * k, b ? b + 2 * k : NULL);
		__m128i c = load128x(d + 2 * k + 16, b ? b + 2 * k + 16 : NULL);

		store128(p0 + k, _mm_packus_epi16(_mm_and_si128(a, m), _mm_and_si128(c, m)));
		store128(p1 + k, _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(c, 8)));
	}
	pc[0] += k;
	pc[1] += k;
#endif
	if (b)
		split_elems(d + 2 * k, b + 2 * k, n - k, 2, pc);
	else
		split_elems(d + 2 * k, NULL, n - k, 2, pc);
}

#if defined(__SSE2__)
/* Byte @j of each of the 16 four-byte elements in a[0..3]. */
#define PLANE4(a, j, m) \
	_mm_packus_epi16( \
		_mm_packs_epi32(_mm_and_si128(_mm_srli_epi32(a[0], 8 * (j)), m), \
				_mm_and_si128(_mm_srli_epi32(a[1], 8 * (j)), m)), \
		_mm_packs_epi32(_mm_and_si128(_mm_srli_epi32(a[2], 8 * (j)), m), \
				_mm_and_si128(_mm_srli_epi32(a[3], 8 * (j)), m)))
#endif

static void split4(const uint8_t *d, const uint8_t *b, size_t n, uint8_t **pc)
{
	size_t k = 0;

#if defined(__SSE2__)
	const __m128i m = _mm_set1_epi32(0xff);
	uint8_t *p0 = pc[0], *p1 = pc[1], *p2 = pc[2], *p3 = pc[3];
	__m128i a[4];
	unsigned i;

	for (; k + 16 <= n; k += 16) {
		for (i = 0; i < 4; i++)
			a[i] = load128x(d + 4 * k + 16 * i, b ? b + 4 * k + 16 * i : NULL);
		store128(p0 + k, PLANE4(a, 0, m));
		store128(p1 + k, PLANE4(a, 1, m));
		store128(p2 + k, PLANE4(a, 2, m));
		store128(p3 + k, PLANE4(a, 3, m));
	}
	for (i = 0; i < 4; i++)
		pc[i] += k;
#endif
	if (b)
		split_elems(d + 4 * k, b + 4 * k, n - k, 4, pc);
	else
		split_elems(d + 4 * k, NULL, n - k, 4, pc);
}

static void merge2(uint8_t *o, const uint8_t *b, size_t n, const uint8_t **pc)
{
	size_t k = 0;

#if defined(__SSE2__)
	const uint8_t *p0 = pc[0], *p1 = pc[1];

	for (; k + 16 <= n; k += 16) {
		__m128i lo = load128(p0 + k), hi = load128(p1 + k);
		__m128i e0 = _mm_unpacklo_epi8(lo, hi), e1 = _mm_unpackhi_epi8(lo, hi);

		if (b) {
			e0 = _mm_xor_si128(e0, load128(b + 2 * k));
			e1 = _mm_xor_si128(e1, load128(b + 2 * k + 16));
		}
		store128(o + 2 * k, e0);
		store128(o + 2 * k + 16, e1);
	}
	pc[0] += k;
	pc[1] += k;
#endif
	if (b)
		merge_elems(o + 2 * k, b + 2 * k, n - k, 2, pc);
	else
		merge_elems(o + 2 * k, NULL, n - k, 2, pc);
}

static void merge4(uint8_t *o, const uint8_t *b, size_t n, const uint8_t **pc)
{
	size_t k = 0;

#if defined(__SSE2__)
	__m128i e[4];
	unsigned i;

	for (; k + 16 <= n; k += 16) {
		__m128i v0 = load128(pc[0] + k), v1 = load128(pc[1] + k);
		__m128i v2 = load128(pc[2] + k), v3 = load128(pc[3] + k);
		__m128i a = _mm_unpacklo_epi8(v0, v1), c = _mm_unpackhi_epi8(v0, v1);
		__m128i x = _mm_unpacklo_epi8(v2, v3), y = _mm_unpackhi_epi8(v2, v3);

		e[0] = _mm_unpacklo_epi16(a, x);
		e[1] = _mm_unpackhi_epi16(a, x);
		e[2] = _mm_unpacklo_epi16(c, y);
		e[3] = _mm_unpackhi_epi16(c, y);
		for (i = 0; i < 4; i++) {
			if (b)
				e[i] = _mm_xor_si128(e[i], load128(b + 4 * k + 16 * i));
			store128(o + 4 * k + 16 * i, e[i]);
		}
	}
	for (i = 0; i < 4; i++)
		pc[i] += k;
#endif
	if (b)
		merge_elems(o + 4 * k, b + 4 * k, n - k, 4, pc);
	else
		merge_elems(o + 4 * k, NULL, n - k, 4, pc);
}

/* dst = src (XOR b when b is given). */
static void copy_bytes(uint8_t *dst, const uint8_t *src, const uint8_t *b, size_t n)
{
	size_t i = 0;

	if (!n)
		return;
	if (!b) {
		memcpy(dst, src, n);
		return;
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t x = load64(src + i) ^ load64(b + i);

		memcpy(dst + i, &x, sizeof(x));
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ b[i];
}

/* Scatter one span's bytes into the plane cursors @pc of its width. */
static void split_span(const uint8_t *d, const uint8_t *b, const struct span *s,
		       uint8_t **pc)
{
	unsigned w = s->width, j = s->phase;
	size_t i = 0, n;

	/* The tail of an element that began before the span (phase > 0). */
	for (; j != 0 && i < s->len; i++, j = (j + 1) & (w - 1))
		*pc[j]++ = d[i] ^ (b ? b[i] : 0);
	n = (s->len - i) / w;
	switch (w) {
	case 2:
		split2(d + i, b ? b + i : NULL, n, pc);
		break;
	case 4:
		split4(d + i, b ? b + i : NULL, n, pc);
		break;
	default:
		if (b)
			split_elems(d + i, b + i, n, 8, pc);
		else
			split_elems(d + i, NULL, n, 8, pc);
		break;
	}
	/* The head of an element that continues past the span. */
	for (i += n * w, j = 0; i < s->len; i++, j++)
		*pc[j]++ = d[i] ^ (b ? b[i] : 0);
}

static void merge_span(uint8_t *o, const uint8_t *b, const struct span *s,
		       const uint8_t **pc)
{
	unsigned w = s->width, j = s->phase;
	size_t i = 0, n;

	for (; j != 0 && i < s->len; i++, j = (j + 1) & (w - 1))
		o[i] = *pc[j]++ ^ (b ? b[i] : 0);
	n = (s->len - i) / w;
	switch (w) {
	case 2:
		merge2(o + i, b ? b + i : NULL, n, pc);
		break;
	case 4:
		merge4(o + i, b ? b + i : NULL, n, pc);
		break;
	default:
		if (b)
			merge_elems(o + i, b + i, n, 8, pc);
		else
			merge_elems(o + i, NULL, n, 8, pc);
		break;
	}
	for (i += n * w, j = 0; i < s->len; i++, j++)
		o[i] = *pc[j]++ ^ (b ? b[i] : 0);
}

/* Permute (data XOR base) into streams; the inverse is merge(). */
static void split(const uint8_t *d, const uint8_t *b, uint32_t len,
		  const uint8_t *tab, uint32_t ns, uint8_t *planes,
		  const size_t sofs[NSTREAMS])
{
	uint8_t *cur[NSTREAMS];
	struct span s;
	size_t pos = 0;
	uint32_t i;
	unsigned k;

	for (k = 0; k < NSTREAMS; k++)
		cur[k] = planes + sofs[k];
	for (i = 0; i < ns; i++) {
		get_span(tab, i, &s);
		copy_bytes(cur[0], d + pos, b ? b + pos : NULL, s.off - pos);
		cur[0] += s.off - pos;
		split_span(d + s.off, b ? b + s.off : NULL, &s, cur + s.width - 1);
		pos = (size_t)s.off + s.len;
	}
	copy_bytes(cur[0], d + pos, b ? b + pos : NULL, len - pos);
}

static void merge(uint8_t *o, const uint8_t *b, uint32_t len,
		  const uint8_t *tab, uint32_t ns, const uint8_t *src[NSTREAMS])
{
	const uint8_t *cur[NSTREAMS];
	struct span s;
	size_t pos = 0;
	uint32_t i;

	memcpy(cur, src, sizeof(cur));
	for (i = 0; i < ns; i++) {
		get_span(tab, i, &s);
		copy_bytes(o + pos, cur[0], b ? b + pos : NULL, s.off - pos);
		cur[0] += s.off - pos;
		merge_span(o + s.off, b ? b + s.off : NULL, &s, cur + s.width - 1);
		pos = (size_t)s.off + s.len;
	}
	copy_bytes(o + pos, cur[0], b ? b + pos : NULL, len - pos);
}

/* ---- sparse coding (§2.5) ---- */

#if defined(__SSE2__)
/* Bit k of the result is set iff p[k] != 0, for k in [0, 64). */
static uint64_t nonzero_mask64(const uint8_t *p)
{
	const __m128i z = _mm_setzero_si128();
	uint64_t m0 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(load128(p), z));
	uint64_t m1 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(load128(p + 16), z));
	uint64_t m2 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(load128(p + 32), z));
	uint64_t m3 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(load128(p + 48), z));

	return ~(m0 | m1 << 16 | m2 << 32 | m3 << 48);
}
#endif

static size_t count_nonzero(const uint8_t *p, size_t n)
{
	const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full;
	size_t c = 0, i = 0;

#if defined(__SSE2__)
	/*
	 * Zero bytes counted per lane (cmpeq gives -1: subtracting adds 1,
	 * at most 255 rounds per lane before the sum), lanes summed by psadbw.
	 * No popcount: it is not in baseline x86-64, and libgcc's is a call.
	 */
	const __m128i z = _mm_setzero_si128();
	size_t zeros = 0, start = i;

	while (i + 16 <= n) {
		__m128i acc = z;
		size_t end = i + 255 * 16 < n ? i + 255 * 16 : n;

		for (; i + 16 <= end; i += 16)
			acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(load128(p + i), z));
		acc = _mm_sad_epu8(acc, z);
		zeros += (size_t)_mm_cvtsi128_si32(acc) +
			 (size_t)_mm_cvtsi128_si32(_mm_srli_si128(acc, 8));
	}
	c = (i - start) - zeros;
#endif
	/* SWAR: bit 7 of each byte of t is set iff that byte of x is non-zero. */
	for (; i + 8 <= n; i += 8) {
		uint64_t x = load64(p + i);
		uint64_t t = ((((x & lo7) + lo7) | x) & ~lo7) >> 7;

		c += (size_t)((t * 0x0101010101010101ull) >> 56);
	}
	for (; i < n; i++)
		c += p[i] != 0;
	return c;
}

static int is_zero(const uint8_t *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		if (load64(p + i))
			return 0;
	for (; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Gap bytes a sparse stream of @n bytes may need at most, plus slack (the
 * decoder's length check depends on this bound: doc/FORMAT.md §2.5). */
static size_t gaps_bound(size_t n)
{
	return n + n / 63 + 16;
}

static size_t put_gap(uint8_t *p, size_t g)
{
	size_t k = 0;

	if (g < 255) {
		p[0] = (uint8_t)g;
		return 1;
	}
	p[k++] = 255;
	g -= 255;
	while (g >= 128) {
		p[k++] = (uint8_t)(g | 128);
		g >>= 7;
	}
	p[k++] = (uint8_t)g;
	return k;
}

/*
 * Split stream @s into gap bytes and non-zero values. Gap g (zero bytes
 * before a value) is one byte if g < 255, else 255 and LEB128(g - 255).
 * @gaps needs gaps_bound(n) bytes, @vals n + 8. Returns the gap byte count.
 */
static size_t sparse_build(const uint8_t *s, size_t n, uint8_t *gaps,
			   uint8_t *vals, size_t *nvals)
{
	size_t i = 0, gi = 0, vi = 0, g = 0, k;

#if defined(__SSE2__)
	/*
	 * 64 bytes at a time: a mask of the non-zero bytes, then one step per
	 * set bit. Real delta planes are 0.1-40% non-zero, so this visits a
	 * few bytes per block instead of all 64.
	 */
	for (; i + 64 <= n; i += 64) {
		uint64_t m = nonzero_mask64(s + i);
		size_t last = 0;

		while (m) {
			k = (size_t)__builtin_ctzll(m);
			g += k - last;
			if (g < 255)
				gaps[gi++] = (uint8_t)g;
			else
				gi += put_gap(gaps + gi, g);
			vals[vi++] = s[i + k];
			g = 0;
			last = k + 1;
			m &= m - 1;
		}
		g += 64 - last;
	}
#endif
	for (; i < n; i++) {
		if (!s[i]) {
			g++;
			continue;
		}
		gi += put_gap(gaps + gi, g);
		vals[vi++] = s[i];
		g = 0;
	}
	*nvals = vi;
	return gi;
}

/* Inverse of sparse_build() into @dst (n bytes). 0 or -EBADMSG. */
static int sparse_apply(uint8_t *dst, size_t n, const uint8_t *gaps, size_t glen,
			const uint8_t *vals, size_t nvals)
{
	size_t pos = 0, gi = 0, k;

	memset(dst, 0, n);
	for (k = 0; k < nvals; k++) {
		size_t g;

		if (gi >= glen)
			return -EBADMSG;
		g = gaps[gi++];
		if (g == 255) {
			size_t v = 0;
			unsigned shift = 0;
			uint8_t c;

			/* At most 4 LEB128 bytes: 2^28 > CODEC_CHUNK_MAX. */
			do {
				if (gi >= glen || shift > 21)
					return -EBADMSG;
				c = gaps[gi++];
				v |= (size_t)(c & 127) << shift;
				shift += 7;
			} while (c & 128);
			g = 255 + v;
		}
		if (g >= n - pos)
			return -EBADMSG;
		pos += g;
		dst[pos++] = vals[k];
	}
	return gi == glen ? 0 : -EBADMSG;
}

/* ---- context ---- */

static int grow(uint8_t **p, size_t *cap, size_t need)
{
	uint8_t *q;

	if (*cap >= need)
		return 0;
	/* Old contents are scratch: free + malloc avoids realloc's copy. */
	free(*p);
	*p = NULL;
	*cap = 0;
	q = malloc(need);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = need;
	return 0;
}

struct codec_ctx *codec_ctx_new(void)
{
	struct codec_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return NULL;
	ctx->huf = ZSTD_createCCtx();
	ctx->lz = ZSTD_createCCtx();
	ctx->dc = ZSTD_createDCtx();
	if (!ctx->huf || !ctx->lz || !ctx->dc)
		goto fail;
	/*
	 * Level 1 keeps literal compression on by default; force it anyway so
	 * the Huffman-only frames never depend on zstd's level heuristics.
	 */
	if (ZSTD_isError(ZSTD_CCtx_setParameter(ctx->huf, ZSTD_c_compressionLevel, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(ctx->huf, ZSTD_c_literalCompressionMode,
						ZSTD_ps_enable)))
		goto fail;
	return ctx;
fail:
	codec_ctx_free(ctx);
	return NULL;
}

void codec_ctx_free(struct codec_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->huf);
	ZSTD_freeCCtx(ctx->lz);
	ZSTD_freeDCtx(ctx->dc);
	free(ctx->planes);
	free(ctx->gaps);
	free(ctx->vals);
	free(ctx->tmp);
	free(ctx->stab);
	free(ctx);
}

/* ---- encoder ---- */

/* zstd result -> size, or 0 for "no candidate", or -ENOMEM. */
static long long zs_result(size_t r)
{
	if (!ZSTD_isError(r))
		return (long long)r;
	return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? -ENOMEM : 0;
}

/*
 * A zstd frame of @src whose blocks are Huffman-coded literals only: with no
 * sequences, every byte is a "last literal" of its block. (zstd reads no
 * sequence when the count is 0; @none only keeps the pointer valid.) Blocks
 * that Huffman cannot shrink come out raw, constant ones as RLE.
 */
static long long huf_compress(struct codec_ctx *ctx, uint8_t *dst, size_t cap,
			      const uint8_t *src, size_t n)
{
	ZSTD_Sequence none = { 0 };

	ZSTD_CCtx_reset(ctx->huf, ZSTD_reset_session_only);
	return zs_result(ZSTD_compressSequences(ctx->huf, dst, cap, &none, 0, src, n));
}

static long long lz_compress(struct codec_ctx *ctx, uint8_t *dst, size_t cap,
			     const uint8_t *src, size_t n, int level)
{
	ZSTD_CCtx_reset(ctx->lz, ZSTD_reset_session_only);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(ctx->lz, ZSTD_c_compressionLevel, level)))
		return 0;
	return zs_result(ZSTD_compress2(ctx->lz, dst, cap, src, n));
}

/* Dense candidate for stream @sid into @dst; size, 0 (none) or -ENOMEM. */
static long long dense_compress(struct codec_ctx *ctx, uint8_t *dst, size_t cap,
				const uint8_t *s, size_t n, unsigned sid, int level)
{
	if (sid == 0)
		return lz_compress(ctx, dst, cap, s, n, level ? level : DEFAULT_LZ_LEVEL);
	return huf_compress(ctx, dst, cap, s, n);
}

/* Sparse candidate into @dst; fills d->a..d; size, 0 or -ENOMEM. */
static long long sparse_compress(struct codec_ctx *ctx, uint8_t *dst, size_t cap,
				 const uint8_t *s, size_t n, struct sdesc *d)
{
	size_t glen, nv;
	long long g, v;

	glen = sparse_build(s, n, ctx->gaps, ctx->vals, &nv);
	g = huf_compress(ctx, dst, cap, ctx->gaps, glen);
	if (g <= 0)
		return g;
	v = huf_compress(ctx, dst + g, cap - (size_t)g, ctx->vals, nv);
	if (v <= 0)
		return v;
	d->a = (uint32_t)nv;
	d->b = (uint32_t)glen;
	d->c = (uint32_t)g;
	d->d = (uint32_t)v;
	return g + v;
}

/*
 * Append the payload of stream @sid (@n bytes at @s) to @out and describe
 * it in @d: the smallest of the candidates the policy allows, or raw when
 * compression saves less than 1/64 (raw decodes at memcpy speed).
 */
static int put_stream(struct codec_ctx *ctx, const uint8_t *s, size_t n,
		      unsigned sid, int delta, int level, struct buf *out,
		      struct sdesc *d)
{
	size_t start = out->len, bound = ZSTD_compressBound(n);
	size_t best = n - n / 64, nnz;
	int try_dense, try_sparse;
	struct sdesc sd = { 0 };
	long long r;
	int rc;

	memset(d, 0, sizeof(*d));
	if (delta) {
		nnz = count_nonzero(s, n);
		try_sparse = nnz * 100 < n * DENSE_ONLY_PCT;
		try_dense = nnz * 100 >= n * SPARSE_ONLY_PCT;
	} else {
		nnz = is_zero(s, n) ? 0 : n;
		try_sparse = 0;
		try_dense = 1;
	}
	if (nnz == 0) {
		d->mode = MODE_ZERO;
		return 0;
	}
	d->mode = MODE_RAW;
	d->a = (uint32_t)n;
	rc = buf_reserve(out, bound > n ? bound : n);
	if (rc < 0)
		return rc;
	if (try_dense) {
		r = dense_compress(ctx, out->data + start, bound, s, n, sid, level);
		if (r < 0)
			return (int)r;
		if (r > 0 && (size_t)r < best) {
			best = (size_t)r;
			d->mode = MODE_ZSTD;
			d->a = (uint32_t)r;
		}
		if (sid != 0 && level >= LZ_PLANES_MIN_LEVEL) {
			r = lz_compress(ctx, ctx->tmp, ctx->tmp_cap, s, n, level);
			if (r < 0)
				return (int)r;
			if (r > 0 && (size_t)r < best) {
				best = (size_t)r;
				memcpy(out->data + start, ctx->tmp, best);
				d->mode = MODE_ZSTD;
				d->a = (uint32_t)r;
			}
		}
	}
	if (try_sparse) {
		r = sparse_compress(ctx, ctx->tmp, ctx->tmp_cap, s, n, &sd);
		if (r < 0)
			return (int)r;
		if (r > 0 && (size_t)r < best) {
			best = (size_t)r;
			memcpy(out->data + start, ctx->tmp, best);
			sd.mode = MODE_SPARSE;
			*d = sd;
		}
	}
	if (d->mode == MODE_RAW) {
		memcpy(out->data + start, s, n);
		best = n;
	}
	out->len = start + best;
	return 0;
}

/*
 * Append one frame of @len bytes (@base NULL: full frame) whose normalized
 * span table is ctx->stab[0..ns).
 */
static int build_frame(struct codec_ctx *ctx, const uint8_t *data,
		       const uint8_t *base, uint32_t len, uint32_t ns, int level,
		       uint64_t xxh, struct buf *out)
{
	size_t slen[NSTREAMS], sofs[NSTREAMS], start = out->len, hdr_len, p;
	struct sdesc d[NSTREAMS];
	unsigned sid, nst = 0;
	uint8_t *h;
	int rc;

	stream_layout(ctx->stab, ns, len, slen, sofs);
	split(data, base, len, ctx->stab, ns, ctx->planes, sofs);
	for (sid = 0; sid < NSTREAMS; sid++)
		nst += slen[sid] > 0;
	hdr_len = FRAME_FIXED_LEN + (size_t)ns * SPAN_REC_LEN +
		  (size_t)nst * DESC_REC_LEN + HDR_CHECK_LEN;
	rc = buf_reserve(out, hdr_len);
	if (rc < 0)
		return rc;
	out->len += hdr_len;
	for (sid = 0; sid < NSTREAMS; sid++) {
		if (!slen[sid])
			continue;
		rc = put_stream(ctx, ctx->planes + sofs[sid], slen[sid], sid,
				base != NULL, level, out, &d[sid]);
		if (rc < 0) {
			out->len = start;
			return rc;
		}
	}

	/* §2.1-2.4: now that the payload sizes are known, the header. */
	h = out->data + start;
	put_le32(h, FRAME_MAGIC);
	h[4] = FRAME_VERSION;
	h[5] = base ? FLAG_DELTA : 0;
	put_le16(h + 6, (uint16_t)nst);
	put_le32(h + 8, len);
	put_le32(h + 12, ns);
	put_le64(h + 16, xxh);
	memcpy(h + FRAME_FIXED_LEN, ctx->stab, (size_t)ns * SPAN_REC_LEN);
	p = FRAME_FIXED_LEN + (size_t)ns * SPAN_REC_LEN;
	for (sid = 0; sid < NSTREAMS; sid++) {
		unsigned w = stream_width(sid);

		if (!slen[sid])
			continue;
		h[p] = d[sid].mode;
		h[p + 1] = (uint8_t)w;
		h[p + 2] = (uint8_t)(sid - (w - 1));
		h[p + 3] = 0;
		put_le32(h + p + 4, d[sid].a);
		put_le32(h + p + 8, d[sid].b);
		put_le32(h + p + 12, d[sid].c);
		put_le32(h + p + 16, d[sid].d);
		p += DESC_REC_LEN;
	}
	put_le32(h + p, (uint32_t)hash_xxh3(h, p));
	return 0;
}

/*
 * Check the caller's spans and store them normalized in ctx->stab: width-1
 * and empty spans dropped, neighbours that continue the same element grid
 * merged (tensors of one dtype laid end to end become one span).
 */
static int normalize_spans(struct codec_ctx *ctx, const struct codec_span *spans,
			   size_t nspans, size_t len, uint32_t *ns_out)
{
	uint64_t prev_end = 0;
	struct span cur = { 0 };
	uint32_t ns = 0;
	size_t i;
	int rc, have = 0;

	if (nspans && !spans)
		return -EINVAL;
	/* Kept spans are disjoint and non-empty: at most @len of them. */
	rc = grow(&ctx->stab, &ctx->stab_cap,
		  ((nspans < len ? nspans : len) + 1) * SPAN_REC_LEN);
	if (rc < 0)
		return rc;
	for (i = 0; i < nspans; i++) {
		const struct codec_span *s = &spans[i];
		uint64_t end = (uint64_t)s->off + s->len;

		if (s->width != 1 && s->width != 2 && s->width != 4 && s->width != 8)
			return -EINVAL;
		if (s->phase >= s->width || s->off < prev_end || end > len)
			return -EINVAL;
		prev_end = end;
		if (s->width == 1 || s->len == 0)
			continue;
		if (have && cur.width == s->width && (uint64_t)cur.off + cur.len == s->off &&
		    (cur.phase + cur.len) % cur.width == s->phase) {
			cur.len += s->len;
			continue;
		}
		if (have)
			put_span(ctx->stab, ns++, &cur);
		cur.off = s->off;
		cur.len = s->len;
		cur.width = s->width;
		cur.phase = s->phase;
		have = 1;
	}
	if (have)
		put_span(ctx->stab, ns++, &cur);
	*ns_out = ns;
	return 0;
}

static int reserve_scratch(struct codec_ctx *ctx, size_t len)
{
	size_t tmp = 2 * ZSTD_compressBound(gaps_bound(len));
	int rc;

	rc = grow(&ctx->planes, &ctx->planes_cap, len);
	if (!rc)
		rc = grow(&ctx->gaps, &ctx->gaps_cap, gaps_bound(len));
	if (!rc)
		rc = grow(&ctx->vals, &ctx->vals_cap, len + 8);
	if (!rc)
		rc = grow(&ctx->tmp, &ctx->tmp_cap, tmp);
	return rc;
}

int codec_encode(struct codec_ctx *ctx, const uint8_t *data, size_t len,
		 const uint8_t *base, const struct codec_span *spans,
		 size_t nspans, int level, struct buf *out)
{
	size_t start, flen, flen2;
	uint32_t ns;
	uint64_t xxh;
	int rc;

	if (!ctx || !data || !out || len == 0 || len > CODEC_CHUNK_MAX)
		return -EINVAL;
	if (level < ZSTD_minCLevel())
		level = ZSTD_minCLevel();
	if (level > ZSTD_maxCLevel())
		level = ZSTD_maxCLevel();
	rc = normalize_spans(ctx, spans, nspans, len, &ns);
	if (rc < 0)
		return rc;
	/* memcmp stops at the first difference: cheap for real deltas. */
	if (base && memcmp(data, base, len) == 0)
		return CODEC_ALL_ZERO;
	rc = reserve_scratch(ctx, len);
	if (rc < 0)
		return rc;
	xxh = hash_xxh3(data, len);
	start = out->len;
	rc = build_frame(ctx, data, base, (uint32_t)len, ns, level, xxh, out);
	if (rc < 0 || !base)
		return rc;

	/*
	 * A delta that saves little (unrelated data, a re-initialised tensor)
	 * may be larger than the data coded alone: then store the full frame,
	 * which also spares the reader the base.
	 */
	flen = out->len - start;
	if (flen * FULL_RETRY_DEN <= len * FULL_RETRY_NUM)
		return 0;
	rc = build_frame(ctx, data, NULL, (uint32_t)len, ns, level, xxh, out);
	if (rc < 0) {
		out->len = start;
		return rc;
	}
	flen2 = out->len - start - flen;
	if (flen2 < flen) {
		memmove(out->data + start, out->data + start + flen, flen2);
		out->len = start + flen2;
	} else {
		out->len = start + flen;
	}
	return 0;
}

/* ---- decoder ---- */

/*
 * Parse and validate everything in a frame but the payload contents:
 * after this, every length and offset in @h is within the frame and the
 * chunk, so the decode loops need no further checks than their own.
 */
static int parse_header(const uint8_t *f, size_t flen, struct frame_hdr *h)
{
	uint64_t hdr_len, pos, prev_end = 0;
	unsigned nst, sid, k = 0;
	const uint8_t *dp;
	uint32_t i;

	if (!f || flen < 5 || get_le32(f) != FRAME_MAGIC)
		return -EBADMSG;
	if (f[4] != FRAME_VERSION)
		return -EPROTONOSUPPORT;
	if (flen < FRAME_FIXED_LEN)
		return -EBADMSG;
	h->flags = f[5];
	nst = get_le16(f + 6);
	h->raw_len = get_le32(f + 8);
	h->nspans = get_le32(f + 12);
	h->xxh = get_le64(f + 16);
	if (h->flags & ~FLAG_DELTA)
		return -EBADMSG;
	if (h->raw_len == 0 || h->raw_len > CODEC_CHUNK_MAX)
		return -EBADMSG;
	if (nst == 0 || nst > NSTREAMS || h->nspans > h->raw_len)
		return -EBADMSG;
	hdr_len = FRAME_FIXED_LEN + (uint64_t)h->nspans * SPAN_REC_LEN +
		  (uint64_t)nst * DESC_REC_LEN + HDR_CHECK_LEN;
	if (hdr_len > flen)
		return -EBADMSG;
	if (get_le32(f + hdr_len - HDR_CHECK_LEN) !=
	    (uint32_t)hash_xxh3(f, hdr_len - HDR_CHECK_LEN))
		return -EBADMSG;

	/* §2.2 spans: sorted, disjoint, inside the chunk, widths 2/4/8. */
	h->stab = f + FRAME_FIXED_LEN;
	for (i = 0; i < h->nspans; i++) {
		struct span s;

		get_span(h->stab, i, &s);
		if (s.width != 2 && s.width != 4 && s.width != 8)
			return -EBADMSG;
		if (s.phase >= s.width || s.len == 0 || s.off < prev_end ||
		    (uint64_t)s.off + s.len > h->raw_len)
			return -EBADMSG;
		prev_end = (uint64_t)s.off + s.len;
	}
	stream_layout(h->stab, h->nspans, h->raw_len, h->slen, h->sofs);

	/* §2.4 descriptors, one per non-empty stream, canonical order. */
	dp = h->stab + (size_t)h->nspans * SPAN_REC_LEN;
	pos = hdr_len;
	h->max_gaps = 0;
	h->max_vals = 0;
	for (sid = 0; sid < NSTREAMS; sid++) {
		unsigned w = stream_width(sid);
		size_t n = h->slen[sid];
		struct sdesc *d = &h->desc[sid];
		uint64_t size;

		h->payload[sid] = NULL;
		if (!n)
			continue;
		if (k++ == nst)
			return -EBADMSG;
		if (dp[1] != w || dp[2] != sid - (w - 1) || dp[3] != 0)
			return -EBADMSG;
		d->mode = dp[0];
		d->a = get_le32(dp + 4);
		d->b = get_le32(dp + 8);
		d->c = get_le32(dp + 12);
		d->d = get_le32(dp + 16);
		dp += DESC_REC_LEN;
		switch (d->mode) {
		case MODE_ZERO:
			if (d->a || d->b || d->c || d->d)
				return -EBADMSG;
			size = 0;
			break;
		case MODE_RAW:
			if (d->a != n || d->b || d->c || d->d)
				return -EBADMSG;
			size = n;
			break;
		case MODE_ZSTD:
			if (d->a == 0 || d->b || d->c || d->d)
				return -EBADMSG;
			size = d->a;
			break;
		case MODE_SPARSE:
			if (d->a == 0 || d->a > n || d->b < d->a ||
			    d->b > gaps_bound(n) - 8 || d->c == 0 || d->d == 0)
				return -EBADMSG;
			size = (uint64_t)d->c + d->d;
			if (d->b > h->max_gaps)
				h->max_gaps = d->b;
			if (d->a > h->max_vals)
				h->max_vals = d->a;
			break;
		default:
			return -EBADMSG;
		}
		if (size > flen - pos)
			return -EBADMSG;
		h->payload[sid] = f + pos;
		pos += size;
	}
	if (k != nst || pos != flen)
		return -EBADMSG;
	return 0;
}

int codec_frame_info(const uint8_t *frame, size_t flen, struct codec_frame_info *info)
{
	struct frame_hdr h;
	int rc;

	rc = parse_header(frame, flen, &h);
	if (rc < 0)
		return rc;
	if (info) {
		info->raw_len = h.raw_len;
		info->needs_base = !!(h.flags & FLAG_DELTA);
	}
	return 0;
}

/* Exactly @n bytes from one zstd blob, or -EBADMSG. */
static int unzstd(struct codec_ctx *ctx, uint8_t *dst, size_t n,
		  const uint8_t *src, size_t csize)
{
	size_t r = ZSTD_decompressDCtx(ctx->dc, dst, n, src, csize);

	if (ZSTD_isError(r)) {
		if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return -EBADMSG;
	}
	return r == n ? 0 : -EBADMSG;
}

static int decode_stream(struct codec_ctx *ctx, const struct frame_hdr *h,
			 unsigned sid, const uint8_t **src)
{
	const struct sdesc *d = &h->desc[sid];
	const uint8_t *p = h->payload[sid];
	uint8_t *dst = ctx->planes + h->sofs[sid];
	size_t n = h->slen[sid];
	int rc;

	switch (d->mode) {
	case MODE_ZERO:
		memset(dst, 0, n);
		break;
	case MODE_RAW:
		*src = p;	/* merged straight out of the frame */
		return 0;
	case MODE_ZSTD:
		rc = unzstd(ctx, dst, n, p, d->a);
		if (rc < 0)
			return rc;
		break;
	default:	/* MODE_SPARSE; parse_header admitted nothing else */
		rc = unzstd(ctx, ctx->gaps, d->b, p, d->c);
		if (!rc)
			rc = unzstd(ctx, ctx->vals, d->a, p + d->c, d->d);
		if (!rc)
			rc = sparse_apply(dst, n, ctx->gaps, d->b, ctx->vals, d->a);
		if (rc < 0)
			return rc;
		break;
	}
	*src = dst;
	return 0;
}

int codec_decode(struct codec_ctx *ctx, const uint8_t *frame, size_t flen,
		 const uint8_t *base, uint8_t *out, size_t out_len)
{
	const uint8_t *src[NSTREAMS];
	struct frame_hdr h;
	unsigned sid;
	int rc;

	if (!ctx || !out)
		return -EINVAL;
	rc = parse_header(frame, flen, &h);
	if (rc < 0)
		return rc;
	if (out_len != h.raw_len)
		return -EINVAL;
	if (!(h.flags & FLAG_DELTA))
		base = NULL;	/* a full frame ignores a base it was given */
	else if (!base)
		return -EINVAL;
	rc = grow(&ctx->planes, &ctx->planes_cap, h.raw_len);
	if (!rc)
		rc = grow(&ctx->gaps, &ctx->gaps_cap, h.max_gaps + 1);
	if (!rc)
		rc = grow(&ctx->vals, &ctx->vals_cap, h.max_vals + 1);
	if (rc < 0)
		return rc;
	for (sid = 0; sid < NSTREAMS; sid++) {
		src[sid] = ctx->planes + h.sofs[sid];	/* valid even if empty */
		if (!h.slen[sid])
			continue;
		rc = decode_stream(ctx, &h, sid, &src[sid]);
		if (rc < 0)
			return rc;
	}
	merge(out, base, h.raw_len, h.stab, h.nspans, src);
	if (hash_xxh3(out, h.raw_len) != h.xxh) {
		/* Never leave plausible wrong bytes behind for a careless caller. */
		memset(out, 0, out_len);
		return -EBADMSG;
	}
	return 0;
}
