/* view.h: cached listings of checkpoints (see view.c). Callers hold fs->lock. */
#ifndef CKPT_VIEW_H
#define CKPT_VIEW_H

#include <pthread.h>

#include "fs/fs_int.h"

double view_now(void);
/*
 * Re-list @v from the store as refresh number @epoch. Called with @lock
 * (fs->lock) held and v->refreshing set by the caller, so it is the only
 * refresh of @v; drops @lock for the store I/O and retakes it to merge the
 * result. A checkpoint changed locally meanwhile is kept as it is. On
 * failure the view keeps its previous listing. 0 or -errno.
 */
int view_refresh(struct store *st, struct view *v, pthread_mutex_t *lock, uint64_t epoch);
void view_free(struct view *v);
int view_add(struct view *v, struct ckpt *c);
/* Unlinks and frees @c. */
void view_remove(struct view *v, struct ckpt *c);
/* By name, expired or not. */
struct ckpt *view_find_any(struct view *v, const char *name);
int ckpt_is_expired(const struct ckpt *c, double wall_now);
void ckpt_free(struct ckpt *c);
/* Takes ownership of @e and @key. */
int ckpt_add_slot(struct ckpt *c, struct entry *e, char *key);
void ckpt_remove_slot(struct ckpt *c, size_t i);

#endif
