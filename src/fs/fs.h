/*
 * fs.h: what filesystem operations mean in ckptfs. No FUSE types here:
 * src/fuse/fuse_ops.c decodes each FUSE request, calls one fs_*() function
 * and replies; tests and the CLI can call these directly.
 *
 * Every function returns 0 (or a byte count) or -errno. The errnos each
 * operation can return are listed in doc/SEMANTICS.md.
 *
 * Paths are absolute inside the mount ("/sampler/step-1/model.safetensors").
 */
#ifndef CKPT_FS_H
#define CKPT_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "store/store.h"

struct ckfs;

enum delta_policy { DELTA_AUTO, DELTA_NEVER };

struct fs_config {
	const char *job;		/* this mount's job; "default" */
	uint32_t chunk_size;		/* bytes per chunk; 4 MiB */
	uint64_t cache_bytes;		/* decoded-chunk cache; 256 MiB */
	const char *base_cache_dir;	/* decoded base chunks on local disk
					 * (chunks_set_raw); NULL: none */
	uint64_t base_cache_bytes;	/* its size; 0: 8 GiB */
	uint64_t readahead_bytes;	/* read-ahead in flight; 64 MiB; 0: off
					 * (at most half the cache is used) */
	double list_ttl;		/* seconds a listing may be stale; 1.0 */
	const char *spool_dir;		/* out-of-order writes; TMPDIR or /var/tmp */
	const char *statfs_path;	/* local store dir for statfs, or NULL */
	int read_only;
	int lora;			/* every sampler checkpoint is LoRA */
	enum delta_policy delta_policy;
	int base_every;			/* 0: no fixed cadence */
	double delta_max_ratio;		/* new base when a delta stores more than
					 * this fraction of its logical bytes */
	int64_t default_ttl;		/* seconds; 0: none */
	int threads;			/* encoder/read-ahead workers; 0: nproc */
	double gc_interval;		/* seconds between gc passes; 0: none */
	int64_t gc_grace;		/* keep unreferenced chunks this young */
	int hotload_max;		/* hotloads in flight per mount; 4 */
	const char *hotload_token_env;	/* token variables allowed besides
					 * CKPTFS_TOKEN_*: "A,B"; NULL */
};

void fs_config_defaults(struct fs_config *cfg);

/* @st is borrowed and must outlive the fs. Starts no threads. */
int fs_new(struct store *st, const struct fs_config *cfg, struct ckfs **out);
/*
 * Start the worker threads (encoding, read-ahead) and the periodic gc.
 * Separate from fs_new() because the daemon forks into the background
 * after mounting, and threads do not survive a fork: call this after.
 * 0 or -errno.
 */
int fs_start(struct ckfs *fs);
void fs_free(struct ckfs *fs);
/* The mount's random 8-hex session id. */
const char *fs_session(const struct ckfs *fs);

typedef int (*fs_fill_fn)(void *arg, const char *name, const struct stat *st);

int fs_getattr(struct ckfs *fs, const char *path, struct stat *st);
/* Attributes of an open handle (the file may have been unlinked). */
int fs_fgetattr(struct ckfs *fs, uint64_t fh, struct stat *st);
int fs_readdir(struct ckfs *fs, const char *path, fs_fill_fn fill, void *arg);
int fs_mkdir(struct ckfs *fs, const char *path, mode_t mode);
int fs_rmdir(struct ckfs *fs, const char *path);
/* Remove the promoted model models/ID with all it holds: what unlink of the
 * symlink that `ln -s` promoted with means (-EISDIR for anything else). */
int fs_unpromote(struct ckfs *fs, const char *path);
int fs_unlink(struct ckfs *fs, const char *path);
int fs_rename(struct ckfs *fs, const char *from, const char *to, unsigned flags);
int fs_truncate(struct ckfs *fs, const char *path, uint64_t fh, uint64_t size);
int fs_utimens(struct ckfs *fs, const char *path, const struct timespec tv[2]);
int fs_chmod(struct ckfs *fs, const char *path, mode_t mode);
int fs_statfs(struct ckfs *fs, struct statvfs *sv);
int fs_symlink(struct ckfs *fs, const char *target, const char *path);
int fs_readlink(struct ckfs *fs, const char *path, char *buf, size_t size);

/* Open flags are open(2)'s. *fh identifies the handle afterwards;
 * *keep_cache tells whether the kernel may keep cached pages;
 * *direct asks for direct I/O (control files whose content changes). */
int fs_create(struct ckfs *fs, const char *path, mode_t mode, int flags, uint64_t *fh);
int fs_open(struct ckfs *fs, const char *path, int flags, uint64_t *fh,
	    int *keep_cache, int *direct);
/* Returns bytes read (short only at end of file) or -errno. */
long fs_read(struct ckfs *fs, uint64_t fh, char *buf, size_t size, uint64_t off);
/* Returns bytes written or -errno. */
long fs_write(struct ckfs *fs, uint64_t fh, const char *buf, size_t size, uint64_t off);
/* fs_read() handing each piece of decoded data to @sink, in order, instead
 * of copying it into a buffer (the library's ckptfs_pread_to_fd). */
long fs_read_sink(struct ckfs *fs, uint64_t fh,
		  int (*sink)(void *arg, const uint8_t *data, size_t n), void *arg,
		  size_t size, uint64_t off);
/* fs_write() with the data copied in by @src (writer.h writer_write_src). */
long fs_write_src(struct ckfs *fs, uint64_t fh, int (*src)(void *arg, uint8_t *dst, size_t n),
		  void *arg, size_t size, uint64_t off);
/* Commit (close(2) and fsync(2) return what these return). */
int fs_flush(struct ckfs *fs, uint64_t fh);
int fs_fsync(struct ckfs *fs, uint64_t fh);
void fs_release(struct ckfs *fs, uint64_t fh);
/* Drop a handle open for writing without committing it (shutdown deadline). */
void fs_abandon(struct ckfs *fs, uint64_t fh);

int fs_getxattr(struct ckfs *fs, const char *path, const char *name, char *value, size_t size);
int fs_setxattr(struct ckfs *fs, const char *path, const char *name,
		const char *value, size_t size, int flags);
int fs_listxattr(struct ckfs *fs, const char *path, char *list, size_t size);
int fs_removexattr(struct ckfs *fs, const char *path, const char *name);

#endif
