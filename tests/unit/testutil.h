/* testutil.h: helpers shared by the Check unit tests. */
#ifndef CKPT_TESTUTIL_H
#define CKPT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees the string.
 * Removed recursively by testutil_rmtree(). */
char *testutil_mkdtemp(void);
void testutil_rmtree(const char *dir);
/* Deterministic pseudo-random bytes (xorshift64*), seeded. */
void testutil_fill_random(uint8_t *p, size_t n, uint64_t seed);

#endif
