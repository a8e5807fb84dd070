/*
 * fs_int.h: internal structures shared by fs.c and its helpers.
 */
#ifndef CKPT_FS_INT_H
#define CKPT_FS_INT_H

#include <pthread.h>

#include "catalog/catalog.h"
#include "fs/chunks.h"
#include "fs/fs.h"
#include "fs/pool.h"
#include "fs/writer.h"

/* A committed entry and the store stat of its key (for cheap refresh). */
struct ent_slot {
	struct entry *e;
	char *key;
	struct store_stat st;	/* zeros: re-read at the next refresh */
};

struct ckpt {
	struct ckpt_record rec;
	struct ckpt_attrs attrs;
	struct store_stat rec_st, attrs_st;
	struct ent_slot *ents;
	size_t n_ents, cap_ents;
};

/* The cached listing of one (job, dir). */
struct view {
	char *job;
	enum ckpt_dir dir;
	struct ckpt **ckpts;
	size_t n, cap;
	double refreshed;	/* monotonic seconds; 0 = never */
	struct view *next;
};

/* A writer and the file it writes. Identity fields are guarded by fs->lock. */
struct wslot {
	struct writer *w;
	char *job;
	enum ckpt_dir dir;
	char *ckpt;
	char *relpath;
	int opens;		/* handles referring to it */
	int unlinked;		/* name removed: commits go nowhere */
	struct wslot *next;
};

struct ckfs {
	struct store *st;
	struct fs_config cfg;
	char *job;
	char *spool_dir;
	char *statfs_path;
	char session[9];
	struct chunks *chunks;
	struct pool *pool;
	struct writer_env wenv;

	pthread_mutex_t lock;	/* views, wslots; never held across data I/O */
	struct view *views;
	struct wslot *wslots;
};

#endif
