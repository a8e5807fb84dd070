/*
 * writer.h: a file being written inside a checkpoint.
 *
 * Owns:         turning write(2) calls into stored chunks and, on commit,
 *               a complete entry (the caller stores it).
 * Does not own: where the entry goes or who sees it (fs.c), chunk I/O
 *               (chunks.c).
 *
 * Two modes. Streaming: appends fill a chunk-sized buffer; each full chunk
 * is encoded and stored by the worker pool while the next fills, so memory
 * is bounded by (max_inflight + 1) chunks whatever the file size. Spool: the
 * first write that is not an append (or a truncate) moves the content to an
 * unlinked local temp file; commit then encodes it chunk by chunk.
 *
 * Errors from background encoding are sticky: the next write, fsync or
 * close returns them, and nothing is committed.
 */
#ifndef CKPT_WRITER_H
#define CKPT_WRITER_H

#include <stdint.h>

#include "catalog/catalog.h"
#include "fs/chunks.h"
#include "fs/pool.h"

struct writer;

struct writer_env {
	struct chunks *chunks;
	struct pool *pool;
	uint32_t chunk_size;
	const char *spool_dir;
	int max_inflight;	/* chunks being encoded at once per file */
};

/*
 * New writer. @initial: committed content to start from (NULL: empty).
 * @base: the delta base file's entry (NULL: store whole); both copied.
 */
int writer_new(const struct writer_env *env, uint32_t mode,
	       const struct entry *initial, const struct entry *base,
	       struct writer **out);
void writer_free(struct writer *w);
/*
 * For a file whose name matched no base file: @cands (@n entries, malloc'd,
 * ownership passes) are base files it may be a version of. At its first
 * chunk the one with the same safetensors header and the size that header
 * implies becomes its base; if none, it is stored whole as before.
 */
void writer_offer_bases(struct writer *w, struct entry *cands, size_t n);

long writer_write(struct writer *w, const char *buf, size_t size, uint64_t off);
/*
 * The same, with the data copied by @src straight into the chunk buffers
 * (a read() from the caller's file, a FUSE request's pipe) instead of from
 * a buffer of the caller's: one copy fewer. @src fills @dst with the next
 * @n bytes and returns 0 or -errno; an error fails the write and, as any
 * write error, the file's commit.
 */
typedef int (*writer_src_fn)(void *arg, uint8_t *dst, size_t n);
long writer_write_src(struct writer *w, writer_src_fn src, void *arg, size_t size,
		      uint64_t off);
long writer_read(struct writer *w, char *buf, size_t size, uint64_t off);
int writer_truncate(struct writer *w, uint64_t size);
void writer_set_mtime(struct writer *w, int64_t mtime_ns);
void writer_set_mode(struct writer *w, uint32_t mode);

uint64_t writer_size(const struct writer *w);
int64_t writer_mtime(const struct writer *w);
uint32_t writer_mode(const struct writer *w);
int writer_is_dirty(const struct writer *w);

/*
 * Store every pending chunk and fill @e (path left NULL for the caller)
 * with the file's entry. On success the writer stays usable; the caller
 * stores @e and then calls writer_mark_clean(). -errno on failure.
 */
int writer_prepare_commit(struct writer *w, struct entry *e);
void writer_mark_clean(struct writer *w);
/* Lock the writer across prepare + store + mark_clean. */
void writer_lock(struct writer *w);
void writer_unlock(struct writer *w);

#endif
