/*
 * par.h: run one function over the indices 0..n-1 on a few threads, for
 * loops whose every step waits on the network (S3 requests) rather than
 * computes.
 */
#ifndef CKPTFS_UTIL_PAR_H
#define CKPTFS_UTIL_PAR_H

#include <stddef.h>

/* One step: 0, or a negative errno that stops the loop. */
typedef int (*par_fn)(size_t i, void *arg);

/*
 * Call @fn(i, @arg) for every i in [0, @n) on up to @threads threads (the
 * caller's included). Steps not yet started are skipped once one fails.
 * Returns 0, or the error of the failed step with the lowest index, whose
 * index goes to @failed_at (if not NULL). Falls back to running on the
 * caller's thread alone when threads cannot be made.
 */
int par_each(size_t n, unsigned threads, par_fn fn, void *arg, size_t *failed_at);

#endif
