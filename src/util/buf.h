/*
 * buf.h: a growable byte buffer.
 *
 * Lifetime vocabulary, used the same way everywhere in ckptfs:
 *   x_new()  / x_free()     heap object; x_free(NULL) is a no-op
 *   x_init() / x_release()  caller-provided storage; after release it is
 *                           back to X_INIT and may be reused
 *   "borrowed"              valid until the owner's next mutating call
 *
 * Invariant: data is NULL only when cap == 0; len <= cap.
 */
#ifndef CKPT_BUF_H
#define CKPT_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};
#define BUF_INIT { 0 }

/* Make room for @extra more bytes after len. 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append @n bytes. 0 or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Append a NUL-terminated string without its NUL. 0 or -ENOMEM. */
int buf_append_str(struct buf *b, const char *s);
/* printf-append; 0 or -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Forget the contents, keep the memory. */
static inline void buf_reset(struct buf *b) { b->len = 0; }
/* Free the memory; b is BUF_INIT afterwards. */
void buf_release(struct buf *b);

/*
 * A chunk-sized block (free() releases it). From 2 MiB up it is aligned to
 * and backed by transparent huge pages where the kernel allows them
 * (madvise mode): filling 4 MiB then takes 2 page faults, not 1024, and
 * faults cost ~15% of a cold read's CPU in a VM (perf, bench/README.md).
 */
void *buf_alloc_chunk(size_t size);

#endif
