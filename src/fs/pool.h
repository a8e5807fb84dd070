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

/*
 * Chunk buffers for the tasks' producers. Fresh multi-megabyte blocks from
 * malloc() are faulted in page by page (and often given back to the kernel
 * when freed), which cost the write path ~1 page fault per 4 KiB written:
 * up to n_threads + 2 freed buffers of one size (the first size asked
 * for) are kept for reuse. pool_buf_get() returns malloc()ed memory of at
 * least @size bytes, or NULL; pool_buf_put() takes a buffer back (@size:
 * the size it was got with, or its capacity; other sizes are freed, as is
 * everything when the cache is full). NULL @p: plain malloc()/free().
 */
void *pool_buf_get(struct pool *p, size_t size);
void pool_buf_put(struct pool *p, void *buf, size_t size);

#endif
