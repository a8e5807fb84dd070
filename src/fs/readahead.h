/*
 * readahead.h: decoding chunks before a reader asks for them.
 *
 * Owns:         when to decode ahead (sequential reads; reads inside a
 *               safetensors tensor), the per-file safetensors layout used
 *               for that, and the mount-wide budget of bytes in flight.
 * Does not own: loading and caching chunks (chunks.c), the worker threads
 *               (pool.c).
 *
 * Tensor-aware read-ahead: loaders (safe_open, vLLM, SGLang) mmap a
 * safetensors file and fault it in page by page, tensor by tensor, in an
 * order that is not the file's. On any read inside tensor T (a jump
 * included), the next chunks of T are queued on the pool, and more as the
 * reader advances, up to T's last chunk, so they decode on every core
 * while the reader copies. Sequential reads are followed across tensor
 * ends; a jump outside any tensor queues nothing.
 *
 * Bounds: at most @budget bytes of chunks are queued or decoding at once
 * (mount-wide), and no chunk more than @budget bytes or @seq_chunks chunks
 * past the read is queued, so decoded-ahead chunks never exceed the budget. The layout is
 * parsed only from a header of at most RA_HEADER_MAX bytes (one parse at a
 * time per mount); tensors are clamped to the file. A hostile header can
 * waste at most the budget; it can never change the bytes read (those
 * still come from chunks_get, verified).
 */
#ifndef CKPT_READAHEAD_H
#define CKPT_READAHEAD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "codec/codec.h"
#include "fs/chunks.h"
#include "fs/pool.h"

/* Larger headers (tens of thousands of tensors) get sequential read-ahead only. */
#define RA_HEADER_MAX	(2u << 20)

struct readahead;

struct ra_stats {
	uint64_t queued;	/* chunks queued for decoding ahead */
	uint64_t tensor_queued;	/* of which because of a tensor's extent */
	uint64_t skipped;	/* chunks not queued: budget full */
	uint64_t layouts;	/* safetensors headers parsed for read-ahead */
	uint64_t fill_queued;	/* chunks queued by the file-order fill */
	uint64_t fill_unused;	/* of which the reader never read (closed first) */
};

/* Per open file. Guarded by its own lock (reads of one handle may run
 * concurrently: the kernel sends mmap faults in parallel). */
struct ra_file {
	pthread_mutex_t lock;
	int layout_state;		/* 0 not tried, 1 parsed, -1 none */
	struct st_tensor *tensors;	/* sorted, disjoint, clamped to the file */
	size_t n_tensors;
	long last_chunk;		/* last chunk read (sequential detection) */
	int seq;			/* the reads so far look sequential */
	long last_tensor;		/* tensor of the last read; -1: none */
	int crossed;			/* tensor ends crossed sequentially in a row */
	size_t queued_from, queued_until;	/* the chunks queued last */

	/* File-order fill, for readers that jump from tensor to tensor. */
	int jumps;			/* reads that jumped into another tensor */
	int fill;			/* 1: filling, 2: done */
	size_t fill_tensor;		/* next tensor whose first chunk to fill */
	size_t fill_next;		/* then: next chunk in file order */
	size_t n_chunks;		/* of the bitmaps */
	uint64_t *touched;		/* chunks the reader has read */
	uint64_t *filled;		/* chunks filled and not read yet */
	uint64_t fill_pending;		/* their bytes */
};

/*
 * @budget: bytes queued or decoding ahead at once; 0 turns read-ahead off.
 * @seq_chunks: chunks decoded ahead of a sequential reader outside tensors.
 * NULL on ENOMEM.
 */
struct readahead *ra_new(struct chunks *c, uint64_t budget, int seq_chunks);
/* The pool is started after fork (fs_start); until then nothing is queued. */
void ra_set_pool(struct readahead *ra, struct pool *p);
/* Call after pool_free(): queued tasks use @ra. NULL is fine. */
void ra_free(struct readahead *ra);
void ra_get_stats(struct readahead *ra, struct ra_stats *out);

void ra_file_init(struct ra_file *f);
/* @ra: the mount's (what @f filled and nobody read is returned to its
 * budget); NULL is fine. */
void ra_file_release(struct readahead *ra, struct ra_file *f);

/*
 * A read of @e at @pos is about to be served: queue what should decode
 * ahead of it. Never fails and never blocks on the pool; it may load the
 * chunks holding the safetensors header (once per file) to learn the
 * layout.
 */
void ra_on_read(struct readahead *ra, struct ra_file *f, const struct entry *e,
		uint64_t pos);

/*
 * Parse the tensor extents read-ahead uses from the first @avail bytes of
 * a file of @file_size bytes: sorted, disjoint, clamped to the file, empty
 * ones dropped. 0 and *out, *n (free() *out), -EINVAL if not a safetensors
 * header, -EAGAIN if more bytes are needed, -E2BIG above RA_HEADER_MAX.
 * (Exposed for the fuzzer and the tests.)
 */
int ra_parse_layout(const uint8_t *head, size_t avail, uint64_t file_size,
		    struct st_tensor **out, size_t *n);

#endif
