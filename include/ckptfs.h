/*
 * ckptfs.h: the public C API of libckptfs (link with `pkg-config --libs ckptfs`).
 *
 * The same store, codec and catalog the ckptfs daemon uses, without FUSE:
 * a checkpoint written here is indistinguishable from one written through
 * a mount, and the reverse. This is the only header an outside program needs.
 *
 * Conventions:
 *  - Every function returning int returns 0 (or a count) on success and a
 *    negative errno on failure (-ENOENT, -EINVAL, -EIO, ...); strerror(-rc)
 *    describes it. The errnos are those of the same operation on a mount
 *    (doc/SEMANTICS.md).
 *  - Paths are relative to a mount's root, exactly as in the mount tree
 *    (doc/API.md): "sampler/step-2/model.safetensors", "state/s1/opt.pt",
 *    "jobs/other-job/sampler/step-4/config.json", "models/my-model/...".
 *    A leading '/' is allowed.
 *  - Handles are opaque. A `ckptfs` handle is thread-safe: any number of
 *    threads may use one handle at once. A `ckptfs_file` is used by one
 *    thread at a time (different files: different threads, freely).
 *
 * Compatibility: CKPTFS_API_VERSION increases when functions are added;
 * existing functions keep their signatures and meaning within a major
 * version (the shared library's soname, libckptfs.so.1).
 */
#ifndef CKPTFS_H
#define CKPTFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CKPTFS_API_VERSION 2

/* CKPTFS_API_VERSION of the library actually loaded (check it at run time
 * when loading the library dynamically, e.g. from Python). */
int ckptfs_api_version(void);
/* The library's release, "0.1.0". */
const char *ckptfs_version(void);

typedef struct ckptfs ckptfs;
typedef struct ckptfs_file ckptfs_file;

/*
 * Open @store ("s3://BUCKET[/PREFIX]" or a directory) as job @job's view
 * (NULL: "default"), like `ckptfs mount STORE MNT --job JOB`.
 *
 * @options is NULL or a NULL-terminated array of "name=value" (or "name"
 * for flags) strings, with the names and meanings of the mount options
 * (ckptfs(8)): delta-policy, base-every, delta-max-ratio, lora, default-ttl,
 * chunk-kib, cache-mib, list-ttl, spool-dir, threads, gc-interval (default
 * here: 0, no periodic gc), gc-grace, cache-dir, cache-size, base-cache-dir,
 * base-cache-mib, insecure-tls,
 * read-only; plus "create=0": fail with -ENOENT instead of creating a
 * store that does not exist yet. A leading "--" is accepted. An unknown
 * name or a bad value is -EINVAL (with a log line on stderr).
 * S3 credentials and endpoint come from the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
 * AWS_ENDPOINT_URL), as for the daemon.
 *
 * Starts worker threads (encoding, read-ahead). Returns 0 and *out, or -errno.
 */
int ckptfs_open(const char *store, const char *job, const char *const *options,
		ckptfs **out);
/*
 * Close @fs: every file must have been closed first (a file still open is
 * abandoned: not committed). NULL is a no-op.
 */
void ckptfs_close(ckptfs *fs);
/* The job @fs was opened for. Valid until ckptfs_close(). */
const char *ckptfs_job(const ckptfs *fs);

/*
 * 1 if @store holds a ckptfs store (its format marker), 0 if not (or the
 * directory / prefix is absent), -errno if it cannot be told (S3 down).
 * Creates nothing.
 */
int ckptfs_store_exists(const char *store);

/* ---- listing ---- */

enum ckptfs_type { CKPTFS_FILE = 1, CKPTFS_DIR = 2 };

struct ckptfs_stat {
	enum ckptfs_type type;
	uint64_t size;		/* bytes (files) */
	int64_t mtime;		/* unix seconds */
	uint32_t mode;		/* permission bits */
};

/* Attributes of @path (committed files only; a file being written is
 * visible to its own handle's process as in a mount). */
int ckptfs_stat(ckptfs *fs, const char *path, struct ckptfs_stat *st);

/*
 * Call @cb once per entry of directory @path (no "." and ".."), in the
 * order a mount's readdir gives. A non-zero return from @cb stops the
 * listing and is returned.
 */
typedef int (*ckptfs_dirent_fn)(void *arg, const char *name, const struct ckptfs_stat *st);
int ckptfs_readdir(ckptfs *fs, const char *path, ckptfs_dirent_fn cb, void *arg);

/* Every job of the store, one @cb call each (name, NULL stat). */
int ckptfs_list_jobs(ckptfs *fs, ckptfs_dirent_fn cb, void *arg);

/* What a checkpoint is. Strings belong to the library and are valid only
 * during the callback (ckptfs_list) or until ckptfs_info_release(). */
struct ckptfs_info {
	const char *dir;	/* "sampler", "state" or "models" */
	const char *name;
	const char *kind;	/* "base", "delta", "lora", "state" */
	const char *base;	/* a delta's base checkpoint, else "" */
	const char *snapshot;	/* session-qualified name, "step-2-a1b2c3d4" */
	double created;		/* unix seconds */
	int64_t ttl;		/* seconds, 0: none */
	double expires_at;	/* unix seconds, 0: never */
	uint64_t logical_bytes;	/* sum of file sizes */
	uint64_t stored_bytes;	/* bytes of chunks it added to the store */
	int promotable;
	char *priv_;		/* the library's storage */
};

/* Metadata of checkpoint @path ("sampler/step-2", "jobs/J/state/s1",
 * "models/ID"). Release with ckptfs_info_release(). */
int ckptfs_info(ckptfs *fs, const char *path, struct ckptfs_info *out);
void ckptfs_info_release(struct ckptfs_info *info);

/*
 * Every checkpoint of @fs's job (sampler/ then state/), one @cb call each,
 * in name order. A non-zero return from @cb stops and is returned.
 */
typedef int (*ckptfs_info_fn)(void *arg, const struct ckptfs_info *info);
int ckptfs_list(ckptfs *fs, ckptfs_info_fn cb, void *arg);

/*
 * The `checkpoints.jsonl` view of @fs's job: one JSON object per line
 * (name, snapshot, kind, base, created, expires, bytes, promotable).
 * *out is malloc'ed and NUL-terminated (free() it); *len excludes the NUL.
 */
int ckptfs_checkpoints_jsonl(ckptfs *fs, char **out, size_t *len);

/* ---- creating checkpoints ---- */

/*
 * Create the empty checkpoint @path ("sampler/NAME" or "state/NAME") of
 * @fs's job. @kind NULL applies the policy (the job's first sampler
 * checkpoint is a base, later ones deltas against the latest base, a
 * LoRA with the lora option, state/ is always state); "base", "delta" or
 * "lora" forces it, as `setfattr -n user.ckptfs.kind` on an empty
 * checkpoint does. -EEXIST if it exists (the kind is then left as it is).
 */
int ckptfs_mkckpt(ckptfs *fs, const char *path, const char *kind);

/* Make folder @path inside a checkpoint (and the folders above it). */
int ckptfs_mkdirs(ckptfs *fs, const char *path);

/*
 * Create (or truncate) file @path in a checkpoint for writing; folders
 * above it inside the checkpoint are created. The checkpoint must exist
 * (-ENOENT), or is created with the policy when @flags has
 * CKPTFS_MKCKPT. Data is encoded and stored while it is written, with
 * bounded memory whatever the file's size.
 */
#define CKPTFS_MKCKPT 1
int ckptfs_create(ckptfs *fs, const char *path, uint32_t mode, int flags,
		  ckptfs_file **out);
/* Append @len bytes. Returns @len or -errno (then the file cannot be
 * committed: close it, which fails, or ckptfs_abort() it). */
ssize_t ckptfs_write(ckptfs_file *f, const void *buf, size_t len);
/* Append exactly @len bytes read from @fd at its file offset (which
 * advances, as with read(2)). The bytes go straight into the encoder's
 * buffers, one copy fewer than read() + ckptfs_write() (ckptfs put uses
 * it). Returns @len, or -errno: -EIO if @fd ends first (a file that shrank
 * while being read); either way an error means the file cannot be
 * committed. Since API version 2. */
ssize_t ckptfs_write_fd(ckptfs_file *f, int fd, size_t len);
/* Write at @off (out-of-order writes spool to a temporary file first, as
 * in a mount). Returns @len or -errno. */
ssize_t ckptfs_pwrite(ckptfs_file *f, const void *buf, size_t len, uint64_t off);
/* Commit now (durable in the store when it returns 0); the file stays open. */
int ckptfs_commit(ckptfs_file *f);

/* ---- reading ---- */

/*
 * Write bytes [@off, @off + @len) of @f to @fd at the same offset
 * (pwrite(2)), straight from the decoded chunks: one copy fewer than
 * ckptfs_pread() + pwrite() (ckptfs get uses it). Returns the bytes
 * written, fewer only at the end of @f, or -errno. Since API version 2.
 */
ssize_t ckptfs_pread_to_fd(ckptfs_file *f, int fd, size_t len, uint64_t off);

/* Open committed file @path for reading (any checkpoint, any job, models). */
int ckptfs_open_file(ckptfs *fs, const char *path, ckptfs_file **out);
/* Read up to @len bytes at @off: returns the count (short only at the end
 * of the file, 0 there) or -errno; corrupt data is -EIO, never wrong bytes. */
ssize_t ckptfs_pread(ckptfs_file *f, void *buf, size_t len, uint64_t off);
/* The size of an open file. */
uint64_t ckptfs_file_size(const ckptfs_file *f);

/*
 * Close @f. For a file opened with ckptfs_create() this commits it: 0
 * means it is durable in the store, -errno means nothing of it was
 * committed (like close(2) on a mount). @f is freed either way.
 */
int ckptfs_file_close(ckptfs_file *f);
/* Drop a file being written without committing it. */
void ckptfs_abort(ckptfs_file *f);

/* ---- managing ---- */

/* Promote sampler checkpoint @path to model @model_id (1-63 of [a-z0-9-]),
 * as `ln -s ../sampler/X models/ID`: pinned full weights. */
int ckptfs_promote(ckptfs *fs, const char *path, const char *model_id);
/* Set @path's TTL in seconds from its creation (0: none). */
int ckptfs_set_ttl(ckptfs *fs, const char *path, int64_t seconds);
/* Remove a checkpoint (or model, or file, or folder) and everything in
 * it, as `rm -r`. */
int ckptfs_remove(ckptfs *fs, const char *path);

#ifdef __cplusplus
}
#endif

#endif
