/*
 * safetensors.c: the safetensors header as the codec needs it — which file
 * bytes hold elements of which width (doc/FORMAT.md §3).
 *
 * Owns:         parsing the 8-byte length + JSON header into sorted tensor
 *               extents, and cutting those extents into per-chunk spans.
 * Does not own: reading the file (the caller passes the first bytes), or
 *               anything about dtypes beyond their width.
 *
 * The widths are only a compression hint: a wrong or missing width costs
 * ratio, never correctness. So the parser is strict about what could make
 * the extents inconsistent (overlap, inverted or non-integer offsets, a
 * runaway header length) and lenient about the rest (shape is not checked,
 * unknown dtypes are width 1, JSON key order does not matter).
 */
#include "codec/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

/* The reference implementation's limit; anything larger is not a header. */
#define ST_HEADER_MAX		100000000ull
/* Offsets are JSON numbers (doubles): exact only up to 2^53. */
#define ST_OFFSET_MAX		9007199254740992.0

static unsigned dtype_width(const char *dt)
{
	static const struct {
		const char *name;
		unsigned width;
	} tab[] = {
		{ "BF16", 2 }, { "F16", 2 },
		{ "F32", 4 }, { "I32", 4 }, { "U32", 4 },
		{ "F64", 8 }, { "I64", 8 }, { "U64", 8 },
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (!strcmp(dt, tab[i].name))
			return tab[i].width;
	return 1;	/* I8, U8, BOOL, F8_*, I16, ...: no plane split */
}

static int get_offset(const cJSON *v, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -EINVAL;
	d = v->valuedouble;
	if (!(d >= 0 && d <= ST_OFFSET_MAX) || (double)(uint64_t)d != d)
		return -EINVAL;	/* NaN, negative, too large or fractional */
	*out = (uint64_t)d;
	return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return 0;
}

/* Fill @t from one header entry; -EINVAL if it is not a tensor entry. */
static int parse_tensor(const cJSON *e, uint64_t data_start, struct st_tensor *t)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	uint64_t begin, end;

	if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(offs) ||
	    cJSON_GetArraySize(offs) != 2)
		return -EINVAL;
	if (get_offset(cJSON_GetArrayItem(offs, 0), &begin) < 0 ||
	    get_offset(cJSON_GetArrayItem(offs, 1), &end) < 0)
		return -EINVAL;
	if (begin > end)
		return -EINVAL;	/* out-of-order offsets */
	t->off = data_start + begin;
	t->len = end - begin;
	t->width = (uint8_t)dtype_width(dt->valuestring);
	return 0;
}

int st_layout_parse(const uint8_t *head, size_t avail, struct st_layout *out)
{
	struct st_layout l = ST_LAYOUT_INIT;
	const char *end = NULL;
	cJSON *root = NULL, *e;
	uint64_t n;
	size_t i, cap;
	int rc = -EINVAL;

	if (!head || !out)
		return -EINVAL;
	if (avail < 8)
		return -EAGAIN;
	n = (uint64_t)head[0] | (uint64_t)head[1] << 8 | (uint64_t)head[2] << 16 |
	    (uint64_t)head[3] << 24 | (uint64_t)head[4] << 32 |
	    (uint64_t)head[5] << 40 | (uint64_t)head[6] << 48 |
	    (uint64_t)head[7] << 56;
	if (n < 2 || n > ST_HEADER_MAX)
		return -EINVAL;
	if (avail - 8 < n)
		return -EAGAIN;
	l.data_start = 8 + n;
	l.data_end = l.data_start;

	root = cJSON_ParseWithLengthOpts((const char *)head + 8, (size_t)n, &end, 0);
	if (!cJSON_IsObject(root))
		goto out;
	/* The format pads the JSON with spaces; anything else is not a header. */
	for (; end && end < (const char *)head + 8 + n; end++)
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
			goto out;

	cap = (size_t)cJSON_GetArraySize(root);
	l.tensors = calloc(cap ? cap : 1, sizeof(*l.tensors));
	if (!l.tensors) {
		rc = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(e, root) {
		struct st_tensor t;

		if (e->string && !strcmp(e->string, "__metadata__"))
			continue;
		if (l.n == cap || parse_tensor(e, l.data_start, &t) < 0)
			goto out;
		if (t.off + t.len > l.data_end)
			l.data_end = t.off + t.len;
		if (t.len)	/* a tensor with no bytes has no width to tell */
			l.tensors[l.n++] = t;
	}
	/* Writers do not promise JSON order == file order; sort, then the
	 * extents must not overlap. */
	qsort(l.tensors, l.n, sizeof(*l.tensors), cmp_tensor);
	for (i = 1; i < l.n; i++)
		if (l.tensors[i].off < l.tensors[i - 1].off + l.tensors[i - 1].len)
			goto out;
	*out = l;
	l.tensors = NULL;
	rc = 0;
out:
	cJSON_Delete(root);
	free(l.tensors);
	return rc;
}

void st_layout_release(struct st_layout *l)
{
	if (!l)
		return;
	free(l->tensors);
	*l = (struct st_layout)ST_LAYOUT_INIT;
}

size_t st_layout_chunk_spans(const struct st_layout *l, uint64_t chunk_off,
			     size_t chunk_len, struct codec_span *spans, size_t max)
{
	uint64_t chunk_end;
	size_t lo, hi, n = 0;

	if (!l || !spans || !max || !chunk_len || chunk_len > UINT32_MAX)
		return 0;
	chunk_end = chunk_off + chunk_len;
	/* First tensor that ends after chunk_off (tensors are sorted and disjoint). */
	lo = 0;
	hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->tensors[mid].off + l->tensors[mid].len <= chunk_off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < l->n && l->tensors[lo].off < chunk_end; lo++) {
		const struct st_tensor *t = &l->tensors[lo];
		uint64_t b = t->off > chunk_off ? t->off : chunk_off;
		uint64_t e = t->off + t->len < chunk_end ? t->off + t->len : chunk_end;
		struct codec_span s;

		if (t->width <= 1)
			continue;	/* bytes outside every span are width 1 */
		s.off = (uint32_t)(b - chunk_off);
		s.len = (uint32_t)(e - b);
		s.width = t->width;
		s.phase = (uint8_t)((b - t->off) % t->width);
		/* Tensors of one width laid end to end: one span is enough. */
		if (n && spans[n - 1].width == s.width &&
		    spans[n - 1].off + spans[n - 1].len == s.off &&
		    (spans[n - 1].phase + spans[n - 1].len) % s.width == s.phase) {
			spans[n - 1].len += s.len;
			continue;
		}
		if (n == max)
			break;	/* the rest counts as width 1: still lossless */
		spans[n++] = s;
	}
	return n;
}
