/*
 * lookup.c: finding checkpoints, entries and writer slots in the cached views.
 */
#include "fs/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "catalog/gc.h"
#include "fs/fs_int.h"
#include "fs/view.h"
#include "util/log.h"
#include "util/name.h"
#include "fs/fs_local.h"

/* ---------------------------------------------------------------- views */

double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct view *get_view(struct ckfs *fs, const char *job, enum ckpt_dir dir)
{
	struct view *v;
	int rc;

	for (v = fs->views; v; v = v->next)
		if (v->dir == dir && !strcmp(v->job, job))
			break;
	if (!v) {
		v = calloc(1, sizeof(*v));
		if (!v)
			return NULL;
		v->job = strdup(job);
		v->dir = dir;
		v->next = fs->views;
		fs->views = v;
	}
	rc = view_refresh(fs->st, v, fs->cfg.list_ttl);
	if (rc < 0 && !v->refreshed)
		return NULL;
	return v;
}

/* "<name>-<session>": the snapshot name resolves as an alias (not listed). */
static struct ckpt *find_snapshot(struct view *v, const char *alias)
{
	size_t n = strlen(alias), i;

	if (n < 10 || alias[n - 9] != '-')
		return NULL;
	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];

		if (strlen(c->rec.name) == n - 9 && !strncmp(c->rec.name, alias, n - 9) &&
		    !strcmp(c->rec.session, alias + n - 8))
			return c;
	}
	return NULL;
}

/* A live (not expired) checkpoint by name or snapshot alias. Lock held. */
struct ckpt *find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			      const char *name)
{
	struct view *v = get_view(fs, job, dir);
	struct ckpt *c = v ? view_find_any(v, name) : NULL;

	if (!c && v)
		c = find_snapshot(v, name);
	if (c && ckpt_is_expired(c, wall_now()))
		return NULL;
	return c;
}

/* Like find_ckpt(), but from a listing made now: promotion and hotload act
 * on the store's current state, whatever --list-ttl allows elsewhere. */
struct ckpt *find_ckpt_fresh(struct ckfs *fs, const char *job,
				    enum ckpt_dir dir, const char *name)
{
	struct view *v = get_view(fs, job, dir);

	if (v && v->refreshed && view_now() - v->refreshed > 0.05) {
		v->refreshed = 0;
		view_refresh(fs->st, v, 0);
	}
	return find_ckpt(fs, job, dir, name);
}

struct ckpt *fs_find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			  const char *name)
{
	return find_ckpt_fresh(fs, job, dir, name);
}

struct ent_slot *find_slot(struct ckpt *c, const char *rel, size_t *idx)
{
	size_t i;

	for (i = 0; i < c->n_ents; i++) {
		if (!strcmp(c->ents[i].e->path, rel)) {
			if (idx)
				*idx = i;
			return &c->ents[i];
		}
	}
	return NULL;
}

struct wslot *find_wslot(struct ckfs *fs, const struct fpath *p)
{
	struct wslot *s;

	for (s = fs->wslots; s; s = s->next)
		if (!s->unlinked && s->dir == p->dir && !strcmp(s->relpath, p->rel) &&
		    !strcmp(s->ckpt, p->ckpt) && !strcmp(s->job, p->job))
			return s;
	return NULL;
}

int ckpt_has_writers(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			    const char *name)
{
	struct wslot *s;

	for (s = fs->wslots; s; s = s->next)
		if (!s->unlinked && s->dir == dir && !strcmp(s->ckpt, name) &&
		    !strcmp(s->job, job))
			return 1;
	return 0;
}

int fs_ckpt_has_writers(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			const char *name)
{
	return ckpt_has_writers(fs, job, dir, name);
}

int is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 0)
		return 1;
	return !strncmp(path, dir, n) && path[n] == '/';
}

/* Does @rel name a folder (explicit entry, or implied by a descendant)? */
int is_dir_in(struct ckfs *fs, struct ckpt *c, const struct fpath *p)
{
	struct wslot *s;
	size_t i;

	if (!p->rel[0])
		return 1;
	for (i = 0; i < c->n_ents; i++) {
		const struct entry *e = c->ents[i].e;

		if ((e->is_dir && !strcmp(e->path, p->rel)) || is_under(e->path, p->rel))
			return 1;
	}
	for (s = fs->wslots; s; s = s->next)
		if (!s->unlinked && s->dir == p->dir && !strcmp(s->ckpt, p->ckpt) &&
		    !strcmp(s->job, p->job) && is_under(s->relpath, p->rel))
			return 1;
	return 0;
}

int parent_is_dir(struct ckfs *fs, struct ckpt *c, const struct fpath *p)
{
	struct fpath q = *p;
	char *slash = strrchr(q.rel, '/');

	if (!slash)
		return 1;
	*slash = '\0';
	return is_dir_in(fs, c, &q);
}


/*
 * Does the corruption recorded in @c make @p unreadable? A lost record
 * loses the whole checkpoint. A lost entry loses a file whose name is
 * unknown (the name is inside the entry), so any name the good entries do
 * not resolve might be it: EIO, never a confident ENOENT. Lock held.
 */
int ckpt_corrupt_refuses(struct ckfs *fs, struct ckpt *c, const struct fpath *p)
{
	if (c->bad_record || p->type == P_HOTLOAD)
		return 1;
	if (p->type != P_INNER)
		return 0;
	return !find_slot(c, p->rel, NULL) && !is_dir_in(fs, c, p) && !find_wslot(fs, p);
}
