/*
 * store_s3_parse.h: the S3 backend's parser of ListObjectsV2 answers, on
 * its own so a fuzzer (tests/fuzz/fuzz_s3_list.c) can feed it any bytes.
 * Not an API for the layers above; they see only store.h.
 */
#ifndef CKPT_STORE_S3_PARSE_H
#define CKPT_STORE_S3_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

/*
 * Parse one ListObjectsV2 page @xml (@len bytes, not NUL-terminated) of
 * bucket @bucket listed under store prefix @prefix ("" or ending in '/').
 * Calls @cb for each <Contents> whose key starts with @prefix and whose
 * rest obeys the key rules of store.h, with the prefix stripped; other keys
 * are skipped. Sets *@truncated, and @token (@token_size bytes) to the
 * continuation token of a truncated page.
 * @return 0; -EIO for a malformed page (a <Contents> without <Key>, bad
 *         escapes, a truncated page without a token); or @cb's non-zero return.
 */
int s3_list_page_parse(const char *bucket, const char *prefix, const char *xml,
		       size_t len, store_list_cb cb, void *arg, char *token,
		       size_t token_size, bool *truncated);

#endif
