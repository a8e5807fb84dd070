/*
 * fs_int.h: internal structures shared by fs.c and its helpers.
 */
#ifndef CKPT_FS_INT_H
#define CKPT_FS_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "catalog/catalog.h"
#include "fs/chunks.h"
#include "fs/fs.h"
#include "fs/pool.h"
#include "fs/readahead.h"
#include "fs/writer.h"

/* A committed entry and the store stat of its key (for cheap refresh). */
struct ent_slot {
	struct entry *e;
	char *key;
	struct store_stat st;	/* zeros: re-read at the next refresh */
};

/*
 * One checkpoint of a view. Owned by its view and guarded by fs->lock: a
 * pointer to it is valid only while fs->lock is held without a break (a
 * refresh may free it whenever the lock is free). Whoever needs its data
 * after dropping the lock copies it first.
 */
struct ckpt {
	struct ckpt_record rec;
	struct ckpt_attrs attrs;
	struct store_stat rec_st, attrs_st;
	struct ent_slot *ents;
	size_t n_ents, cap_ents;
	/* Bumped by every local change (entries, record, attrs): a refresh
	 * running outside the lock leaves a checkpoint changed during its
	 * flight as it is, since its listing may predate the change. */
	unsigned gen;
	unsigned snap_gen;	/* gen when the running refresh started */
	uint64_t snap_epoch;	/* that refresh's epoch; 0: not seen by it */
	int reused;		/* view_refresh() bookkeeping */
	/*
	 * Corruption found in the store, turned into EIO rather than hiding
	 * the checkpoint or file (doc/FORMAT.md §1.4). bad_key names the first
	 * corrupt object. With bad_record, rec is made up from the key and
	 * every access is EIO; otherwise an entry was corrupt, and a name
	 * the good entries do not resolve is EIO, as are promote and hotload.
	 */
	char *bad_key;
	struct store_stat bad_st;
	int bad_record;
};

/*
 * The cached listing of one (job, dir), guarded by fs->lock. A refresh
 * does its store I/O without the lock, one at a time per view
 * (refreshing), on a thread of its own when the view has a listing;
 * callers meanwhile use the previous listing (after waiting for the
 * refresh a little), or wait on fs->view_cond when there is none yet.
 */
struct view {
	char *job;
	enum ckpt_dir dir;
	struct ckpt **ckpts;
	size_t n, cap;
	double refreshed;	/* monotonic seconds of the last attempt; 0 = stale */
	int has_listing;	/* a refresh succeeded once */
	int refreshing;		/* a thread is refreshing it now */
	uint64_t started, done;	/* epochs of the refreshes begun and ended */
	int last_err;		/* of the last refresh: 0 or -errno */
	double failed_at;	/* monotonic seconds of the last failure */
	unsigned gen;		/* bumped when a checkpoint is removed locally */
	unsigned stale_gen;	/* bumped when marked stale */
	struct view *next;
};

/*
 * A writer and the file it writes. Freed when its last reference goes:
 * every handle holds one, and so does every thread that uses the slot or
 * its writer after dropping fs->lock (a path truncate, a commit). refs,
 * the list link and the identity fields are guarded by fs->lock; the
 * writer has its own lock.
 */
struct wslot {
	struct writer *w;
	char *job;
	enum ckpt_dir dir;
	char *ckpt;
	char *relpath;
	int refs;		/* handles + transient users */
	int unlinked;		/* name removed: commits go nowhere */
	struct wslot *next;
};

enum htype {
	H_ENTRY,	/* a committed file: decoded chunk by chunk */
	H_WRITER,	/* a file being written (shared by its descriptors) */
	H_CONTENT,	/* generated read-only text (checkpoints.jsonl, status) */
	H_DEPLOY,	/* a deployment file being written: validated at close */
	H_HOTLOAD,	/* a checkpoint's hotload control file */
};

#define FS_HANDLE_MAGIC 0x454c4946u	/* "FILE" */

struct handle {
	uint32_t magic;		/* FS_HANDLE_MAGIC: never a directory handle */
	enum htype type;
	struct wslot *ws;
	struct entry ent;	/* H_ENTRY: a private copy */
	struct buf content;	/* H_CONTENT, H_DEPLOY, H_HOTLOAD */
	int write_access;
	int dirty;		/* H_DEPLOY: content changed since open */
	struct ra_file *ra;	/* H_ENTRY: read-ahead state (readahead.c) */
	uint64_t ino;		/* st_ino of the path it was opened by */
	char *ctl_job;		/* H_HOTLOAD: the checkpoint; H_DEPLOY: name */
	char *ctl_name;
	enum ckpt_dir ctl_dir;
	struct handle *next;	/* H_DEPLOY: fs->deploy_open list */
	/* fs->open_handles, under fs->lock: every handle fs_open/fs_create
	 * returned and fs_release has not freed yet. The kernel may drop a
	 * RELEASE it had queued when the mount goes away; fs_free frees
	 * what is left. */
	struct handle *open_prev, *open_next;
};

static inline struct handle *to_handle(uint64_t fh)
{
	return (struct handle *)(uintptr_t)fh;
}

/* Last hotload attempt per checkpoint, for `cat .../hotload`. */
struct hl_status {
	char *key;		/* job/dir/name */
	char *json;
	struct hl_status *next;
};

struct ckfs {
	struct store *st;
	struct fs_config cfg;
	char *job;
	char *spool_dir;
	char *statfs_path;
	char session[9];
	struct chunks *chunks;
	struct pool *pool;		/* NULL until fs_start() */
	int n_threads;
	int readahead;			/* chunks decoded ahead of sequential reads */
	struct readahead *ra;		/* read-ahead budget and counters */
	struct writer_env wenv;

	/* In-memory state only: views, wslots, statuses. Never held across
	 * store I/O or while waiting for a writer (doc/ARCHITECTURE.md,
	 * "Locks and ownership"). */
	pthread_mutex_t lock;
	pthread_cond_t view_cond;	/* with lock: a view refresh ended */
	int bg_refreshes;		/* refresh threads running (fs_free waits) */
	struct view *views;
	struct wslot *wslots;
	/* The mutation turn: namespace changes of this mount (entry puts,
	 * removals, renames, records, attrs) take turns, each holding it
	 * across its store writes but not fs->lock. */
	int ns_busy;
	pthread_cond_t ns_cond;		/* with lock: the turn was released */
	uint64_t store_fail_seq;	/* bumped when a turn's store write failed */
	int store_fail_rc;
	struct hl_status *hl_statuses;
	struct handle *deploy_open;	/* H_DEPLOY handles, linked by next */
	struct handle *open_handles;	/* all open handles (struct handle) */
	int hl_inflight;		/* under lock: hotloads running (control.c) */
	struct ghost *ghosts;		/* files unlinked while open (ghost.c) */

	pthread_t gc_thread;		/* periodic gc, when gc_interval > 0 */
	int gc_running, gc_stop;
	pthread_cond_t gc_cond;		/* with lock: wakes the gc thread to stop */
};

/* fs.c internals used by control.c. Lock held for all of them;
 * fs_find_ckpt() refreshes the view first, dropping the lock meanwhile. */
struct ckpt *fs_find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			  const char *name);
int fs_ckpt_has_writers(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			const char *name);
uint64_t fs_ckpt_logical(const struct ckpt *c);

/* control.c: deployments/ and the hotload control files. */
int ctl_deploy_getattr(struct ckfs *fs, const char *name, struct stat *st);
int ctl_deploy_readdir(struct ckfs *fs, int (*add)(void *arg, const char *name), void *arg);
int ctl_deploy_open(struct ckfs *fs, const char *name, int flags, int create,
		    struct handle *h);
int ctl_deploy_flush(struct ckfs *fs, struct handle *h);
void ctl_deploy_release(struct ckfs *fs, struct handle *h);
long ctl_deploy_write(struct handle *h, const char *buf, size_t size, uint64_t off);
int ctl_deploy_unlink(struct ckfs *fs, const char *name);
int ctl_deploy_getxattr(struct ckfs *fs, const char *name, const char *attr,
			char *out, size_t cap);
long ctl_hotload_write(struct ckfs *fs, struct handle *h, const char *buf, size_t size);
int ctl_hotload_status(struct ckfs *fs, const char *job, enum ckpt_dir dir,
		       const char *name, struct buf *out);
void ctl_free(struct ckfs *fs);

#endif
