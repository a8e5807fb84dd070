/*
 * fuzz_readahead_layout.c: the tensor extents read-ahead takes from a
 * safetensors header (ra_parse_layout in src/fs/readahead.c).
 *
 * Input: 8 bytes little-endian file size, then the first bytes of the
 * file. Invariants of an accepted layout: at least one tensor; tensors
 * sorted, disjoint, non-empty and inside the file (what bounds the chunks
 * read-ahead may queue). A header longer than RA_HEADER_MAX is refused from
 * its length (-E2BIG), before anything is allocated for it. The corpus
 * (corpus/readahead) holds real headers with file sizes.
 */
#include "fuzz.h"

#include <errno.h>
#include <stdlib.h>

#include "fs/readahead.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_tensor *t = NULL;
	uint64_t file_size = 0, hlen = 0;
	size_t n = 0, i;
	int rc;

	if (size < 8)
		return 0;
	for (i = 0; i < 8; i++)
		file_size |= (uint64_t)data[i] << (8 * i);
	data += 8;
	size -= 8;
	for (i = 0; i < 8 && i < size; i++)
		hlen |= (uint64_t)data[i] << (8 * i);
	rc = ra_parse_layout(data, size, file_size, &t, &n);
	FUZZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EINVAL || rc == -E2BIG);
	if (rc == -E2BIG)
		FUZZ_CHECK(size >= 8 && hlen > RA_HEADER_MAX - 8);
	if (rc < 0) {
		FUZZ_CHECK(t == NULL && n == 0);
		return 0;
	}
	FUZZ_CHECK(n > 0);
	for (i = 0; i < n; i++) {
		FUZZ_CHECK(t[i].len > 0);
		FUZZ_CHECK(t[i].off >= 8 + hlen);
		FUZZ_CHECK(t[i].off < file_size && t[i].len <= file_size - t[i].off);
		if (i)
			FUZZ_CHECK(t[i - 1].off + t[i - 1].len <= t[i].off);
	}
	free(t);
	return 0;
}
