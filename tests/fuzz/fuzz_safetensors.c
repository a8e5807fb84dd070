/*
 * fuzz_safetensors.c: the safetensors header parser (src/codec/safetensors.c).
 *
 * Input: the first bytes of a file. Invariants of an accepted header:
 * tensors sorted, disjoint, inside [data_start, data_end], widths 1/2/4/8;
 * -EAGAIN only while the header is incomplete; the spans of any chunk are
 * sorted, disjoint, inside the chunk, wider than 1, with a phase below the
 * width. The corpus (corpus/safetensors) holds real headers.
 */
#include "fuzz.h"

#include <errno.h>

#include "codec/codec.h"

#define MAX_SPANS 64

static void check_spans(const struct st_layout *l, uint64_t off, size_t len)
{
	struct codec_span sp[MAX_SPANS];
	size_t n = st_layout_chunk_spans(l, off, len, sp, MAX_SPANS), i;

	FUZZ_CHECK(n <= MAX_SPANS);
	for (i = 0; i < n; i++) {
		FUZZ_CHECK(sp[i].width == 2 || sp[i].width == 4 || sp[i].width == 8);
		FUZZ_CHECK(sp[i].phase < sp[i].width);
		FUZZ_CHECK(sp[i].len > 0);
		FUZZ_CHECK((uint64_t)sp[i].off + sp[i].len <= len);
		if (i)
			FUZZ_CHECK(sp[i - 1].off + sp[i - 1].len <= sp[i].off);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_layout l = ST_LAYOUT_INIT;
	uint64_t hlen = 0;
	size_t i;
	int rc;

	rc = st_layout_parse(data, size, &l);
	FUZZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EINVAL);
	for (i = 0; i < 8 && i < size; i++)
		hlen |= (uint64_t)data[i] << (8 * i);
	if (rc == -EAGAIN)
		FUZZ_CHECK(size < 8 || size - 8 < hlen);
	if (rc < 0) {
		st_layout_release(&l);
		return 0;
	}
	FUZZ_CHECK(l.data_start == 8 + hlen);
	for (i = 0; i < l.n; i++) {
		const struct st_tensor *t = &l.tensors[i];

		FUZZ_CHECK(t->width == 1 || t->width == 2 || t->width == 4 || t->width == 8);
		FUZZ_CHECK(t->off >= l.data_start);
		FUZZ_CHECK(t->off + t->len >= t->off);
		FUZZ_CHECK(t->off + t->len <= l.data_end);
		if (i)
			FUZZ_CHECK(l.tensors[i - 1].off + l.tensors[i - 1].len <= t->off);
	}
	/* A few chunk windows: the whole file, the header edge, and small ones. */
	check_spans(&l, 0, (size_t)(l.data_end < (1u << 30) ? l.data_end + 1 : 1u << 30));
	check_spans(&l, l.data_start, 4096);
	for (i = 0; i < 4; i++)
		check_spans(&l, l.data_start + i * 4093, 4093);
	st_layout_release(&l);
	return 0;
}
