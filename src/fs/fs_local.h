/*
 * fs_local.h: what the parts of src/fs/ (path, lookup, tree, policy,
 * promote, handles, xattr, fs) share. Not for use outside src/fs.
 */
#ifndef CKPT_FS_LOCAL_H
#define CKPT_FS_LOCAL_H

#include "fs/fs_int.h"

#define XATTR_PREFIX "user.ckptfs."
#define MODELS_PINNED ".pinned"

enum ptype {
	P_ROOT, P_JSONL, P_JOBS, P_JOB, P_KINDDIR, P_CKPT, P_INNER, P_HOTLOAD,
	P_DEPLOYMENTS, P_DEPLOY, P_PINNED, P_NONE,
	P_STATS		/* /.stats: the metrics registry; resolved, never listed */
};

struct fpath {
	enum ptype type;
	char job[256];
	enum ckpt_dir dir;
	char ckpt[256];
	char rel[4096];		/* inside the checkpoint, no leading '/' */
	int own;		/* job is this mount's job */
};


/* path.c */
/* Split "/a/b/c" into components; returns count or -errno. */
int path_split(const char *path, const char *comp[], size_t len[], int max);
int path_copy_comp(char *dst, size_t cap, const char *s, size_t n);
int parse_path(struct ckfs *fs, const char *path, struct fpath *p);

/* lookup.c */
double wall_now(void);
/*
 * Bring the view of (job, dir) up to date (list_ttl) before fs->lock is
 * taken for a lookup: one thread refreshes, without the lock; others use
 * the last good listing meanwhile, or wait for the refresh when there is
 * none. @fresh: wait for a listing begun after this call (promotion,
 * hotload). 0 or the refresh's -errno. view_ensure_locked() is the same
 * with fs->lock held (dropped while waiting or listing).
 */
int view_ensure(struct ckfs *fs, const char *job, enum ckpt_dir dir, int fresh);
int view_ensure_locked(struct ckfs *fs, const char *job, enum ckpt_dir dir, int fresh);
/* Lock held: the next view_ensure() refreshes (the listing is kept). */
void view_mark_stale(struct ckfs *fs, const char *job, enum ckpt_dir dir);
/* Lock held; no I/O. NULL until a listing of the view succeeded. */
struct view *get_view(struct ckfs *fs, const char *job, enum ckpt_dir dir);
/* Lock held; no I/O: in the current listing. */
struct ckpt *find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			      const char *name);
/* Lock held; drops it to refresh (see view_ensure_locked()). */
struct ckpt *find_ckpt_fresh(struct ckfs *fs, const char *job,
				    enum ckpt_dir dir, const char *name);
/* Lock held: the errno for a checkpoint find_ckpt() did not find: ENOENT
 * when the view has a listing, else why it has none (EIO, ETIMEDOUT), so
 * a store outage never reads as "no such file". */
int lookup_errno(struct ckfs *fs, const char *job, enum ckpt_dir dir);
/*
 * The mutation turn (fs->ns_busy), fs->lock held: ns_begin() waits for it
 * (dropping the lock) and returns 0, or the store errno of the turn it
 * waited for when that one failed (an outage costs one deadline, not one
 * per waiter). ns_end() gives it back; @store_rc: the holder's store
 * result.
 */
int ns_begin(struct ckfs *fs);
void ns_end(struct ckfs *fs, int store_rc);
/* ns_begin() that logs, naming @op and @what, when it refuses. */
int turn_begin(struct ckfs *fs, const char *op, const char *what);
struct ent_slot *find_slot(struct ckpt *c, const char *rel, size_t *idx);
struct wslot *find_wslot(struct ckfs *fs, const struct fpath *p);
int ckpt_has_writers(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			    const char *name);
int is_under(const char *path, const char *dir);
int is_dir_in(struct ckfs *fs, struct ckpt *c, const struct fpath *p);
int parent_is_dir(struct ckfs *fs, struct ckpt *c, const struct fpath *p);
int ckpt_corrupt_refuses(struct ckfs *fs, struct ckpt *c, const struct fpath *p);

/* tree.c */
void fill_file(struct stat *st, mode_t perm, uint64_t size, int64_t mtime_ns);
/* A stable inode number for what @p names: the same for the same job,
 * dir, checkpoint and relative path, whatever the kernel forgets. */
uint64_t fpath_ino(const struct fpath *p);
uint64_t ckpt_logical(const struct ckpt *c);
uint64_t ckpt_stored(const struct ckpt *c);
/* Figures of a checkpoint for users (xattrs, checkpoints.jsonl); each
 * double is -1 when it does not apply or is not known. */
struct ckpt_figures {
	uint64_t logical, stored;
	double ratio;		/* stored / logical */
	double zero_fraction;	/* deltas: all-zero chunks / chunks */
	double commit_s;	/* sum over its files of close -> durable */
};
int ckpt_figures(const struct ckpt *c, struct ckpt_figures *f);

/* policy.c */
struct ckpt *latest_of_kind(struct view *v, enum ckpt_kind kind);
void choose_kind(struct ckfs *fs, struct view *v, struct ckpt_record *r);
int is_lora_file(const char *rel);
int refuse_write(struct ckfs *fs, const struct fpath *p);
int refuse_remove(struct ckfs *fs, const struct fpath *p);
/* Lock NOT held. */
int create_ckpt(struct ckfs *fs, const struct fpath *p);
struct ckpt *delta_base_ckpt(struct ckfs *fs, const struct ckpt *c);
const struct entry *delta_base_entry(struct ckfs *fs, struct ckpt *c, const char *rel);
int lora_pending(struct ckfs *fs, struct ckpt *c, const char *rel);
/* Lock NOT held. */
void become_lora(struct ckfs *fs, const struct fpath *p);

/* promote.c */
int promote(struct ckfs *fs, const struct fpath *src, const char *id);

/* handles.c */
/* Lock held: one more reference to @s. */
void wslot_ref(struct wslot *s);
/* Lock NOT held: drop a reference; the last one frees the slot and its
 * writer (which waits for its encoders, so never under fs->lock). */
void wslot_unref(struct ckfs *fs, struct wslot *s);
/* The caller holds a reference to @ws and no lock. */
int commit_slot(struct ckfs *fs, struct wslot *ws);
/* fs_free(): every slot, references or not. */
void free_all_wslots(struct ckfs *fs);
void free_all_handles(struct ckfs *fs);

/* xattr.c */
int promotable(const struct ckpt *c);

/* ghost.c: open files unlinked by libfuse's ".fuse_hidden" rename */
int ghost_is_hidden(const char *path);
int ghost_hide(struct ckfs *fs, const char *from, const char *to);
int ghost_getattr(struct ckfs *fs, const char *path, struct stat *st);
int ghost_unlink(struct ckfs *fs, const char *path);
void ghost_free_all(struct ckfs *fs);

/* fs.c */
/* Lock NOT held (it refreshes the job's views first). */
int jsonl_build(struct ckfs *fs, struct buf *out);

#endif
