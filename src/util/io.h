/*
 * io.h: whole-buffer reads and writes that retry on EINTR and short
 * transfers, so callers see all-or-error.
 */
#ifndef CKPT_IO_H
#define CKPT_IO_H

#include <stddef.h>
#include <stdint.h>

/* Write all @len bytes. 0 or -errno. */
int io_write_all(int fd, const void *data, size_t len);
/* Write all @len bytes at @off. 0 or -errno. */
int io_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
/* Read up to @len bytes at @off, stopping only at end of file.
 * Returns the count or -errno. */
long io_pread_full(int fd, void *data, size_t len, uint64_t off);

#endif
