/*
 * pool.h: a fixed set of worker threads running queued tasks.
 *
 * Used for chunk encoding on the write path and read-ahead on the read path,
 * so that compression runs on every core while FUSE threads keep copying.
 */
#ifndef CKPT_POOL_H
#define CKPT_POOL_H

#include <stddef.h>

struct pool;
typedef void (*pool_fn)(void *arg);

/* Start @n_threads workers. NULL on failure. */
struct pool *pool_new(int n_threads);
/* Queue @fn(@arg). Never blocks on the queue; 0 or -ENOMEM. */
int pool_submit(struct pool *p, pool_fn fn, void *arg);
/* Finish queued tasks, stop the workers, free. NULL is fine. */
void pool_free(struct pool *p);

#endif
