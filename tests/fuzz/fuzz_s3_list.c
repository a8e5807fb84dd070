/*
 * fuzz_s3_list.c: the S3 backend's ListObjectsV2 parser (src/store/store_s3.c),
 * which reads whatever the server (or anything in the path) answers.
 *
 * Invariants: every key handed to the caller obeys the key rules of store.h
 * (the prefix stripped); a truncated page accepted has a continuation token.
 * The corpus (corpus/s3_list) holds real Ceph RGW answers.
 */
#include "fuzz.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "store/store.h"
#include "store/store_s3_parse.h"

static int on_key(const char *key, const struct store_stat *st, void *arg)
{
	size_t *n = arg;

	FUZZ_CHECK(store_key_check(key) == 0);
	FUZZ_CHECK(memchr(st->version, '\0', sizeof(st->version)) != NULL);
	/* Stop the listing now and then, as a caller may. */
	return ++*n == 1000 ? 7 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const prefixes[] = { "", "run/" };
	char token[1024];
	size_t i;

	for (i = 0; i < 2; i++) {
		bool truncated = false;
		size_t n = 0;
		int rc;

		memset(token, 'x', sizeof(token));
		rc = s3_list_page_parse("bucket", prefixes[i], (const char *)data, size,
					on_key, &n, token, sizeof(token), &truncated);
		FUZZ_CHECK(rc == 0 || rc == -EIO || rc == 7);
		if (rc == 0) {
			FUZZ_CHECK(memchr(token, '\0', sizeof(token)) != NULL);
			FUZZ_CHECK(!truncated || token[0] != '\0');
		}
	}
	return 0;
}
