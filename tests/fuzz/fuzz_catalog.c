/*
 * fuzz_catalog.c: the store's JSON manifests (src/catalog/catalog.c):
 * checkpoint records, attrs and file entries, as read back from a store
 * anyone may have written to.
 *
 * Input: one selector byte (record / attrs / entry), then the JSON. A parse
 * either fails or yields something that formats, parses again, and formats
 * to the same bytes (what we write we can read, unchanged). The corpus
 * (corpus/catalog) holds real objects of a store written by a mount.
 */
#include "fuzz.h"

#include <string.h>

#include "catalog/catalog.h"
#include "util/buf.h"

static void same_bytes(const struct buf *a, const struct buf *b)
{
	FUZZ_CHECK(a->len == b->len);
	FUZZ_CHECK(a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void record(const char *json, size_t len)
{
	struct ckpt_record r, r2;
	struct buf a = BUF_INIT, b = BUF_INIT;

	if (ckpt_record_parse(json, len, &r) < 0)
		return;	/* nothing to free: a failed parse keeps nothing */
	FUZZ_CHECK(ckpt_record_format(&r, &a) == 0);
	FUZZ_CHECK(ckpt_record_parse((const char *)a.data, a.len, &r2) == 0);
	FUZZ_CHECK(ckpt_record_format(&r2, &b) == 0);
	same_bytes(&a, &b);
	ckpt_record_release(&r);
	ckpt_record_release(&r2);
	buf_release(&a);
	buf_release(&b);
}

static void attrs(const char *json, size_t len)
{
	struct ckpt_attrs x, y;
	struct buf a = BUF_INIT, b = BUF_INIT;

	if (ckpt_attrs_parse(json, len, &x) < 0)
		return;
	FUZZ_CHECK(ckpt_attrs_format(&x, &a) == 0);
	FUZZ_CHECK(ckpt_attrs_parse((const char *)a.data, a.len, &y) == 0);
	FUZZ_CHECK(x.ttl == y.ttl);
	FUZZ_CHECK(ckpt_attrs_format(&y, &b) == 0);
	same_bytes(&a, &b);
	buf_release(&a);
	buf_release(&b);
}

static void entry(const char *json, size_t len)
{
	struct entry e, e2;
	struct buf a = BUF_INIT, b = BUF_INIT;

	if (entry_parse(json, len, &e) < 0)
		return;
	(void)entry_stored_bytes(&e);
	FUZZ_CHECK(entry_format(&e, &a) == 0);
	FUZZ_CHECK(entry_parse((const char *)a.data, a.len, &e2) == 0);
	FUZZ_CHECK(e2.n_chunks == e.n_chunks && e2.size == e.size && e2.is_dir == e.is_dir);
	FUZZ_CHECK(entry_format(&e2, &b) == 0);
	same_bytes(&a, &b);
	entry_release(&e);
	entry_release(&e2);
	buf_release(&a);
	buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data + 1;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		record(json, size - 1);
		break;
	case 1:
		attrs(json, size - 1);
		break;
	default:
		entry(json, size - 1);
		break;
	}
	return 0;
}
