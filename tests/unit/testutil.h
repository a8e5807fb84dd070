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

/*
 * Log capture: every ckptfs log line goes to a buffer the test can search.
 * testutil_log_start() clears it and installs the hook (call it in setup).
 */
void testutil_log_start(void);
void testutil_log_stop(void);
int testutil_log_has(const char *needle);
int testutil_log_errors(void);
/* Fails the test, printing the log, if any error line was logged. */
void testutil_assert_no_errors(void);

/*
 * Directories for tests that fork (Check's default): each test's directory
 * lives under one per-TCase directory that the parent removes (an unchecked
 * fixture), since a failing check ends the forked test with _exit() before
 * its own teardown runs.
 */
void testutil_base_setup(void);
void testutil_base_teardown(void);
/* A fresh directory under the base; caller frees (and may rmtree). */
char *testutil_workdir(void);

#endif
