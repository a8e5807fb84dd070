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

/* Lock held. The view of (job, dir), created empty if new; no I/O. */
static struct view *view_of(struct ckfs *fs, const char *job, enum ckpt_dir dir)
{
	struct view *v;

	for (v = fs->views; v; v = v->next)
		if (v->dir == dir && !strcmp(v->job, job))
			return v;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->job = strdup(job);
	if (!v->job) {
		free(v);
		return NULL;
	}
	v->dir = dir;
	v->next = fs->views;
	fs->views = v;
	return v;
}

/* Lock held; no I/O. NULL until a refresh of the view succeeded once. */
struct view *get_view(struct ckfs *fs, const char *job, enum ckpt_dir dir)
{
	struct view *v = view_of(fs, job, dir);

	return v && v->has_listing ? v : NULL;
}

/*
 * How long a caller that has a listing waits for a refresh before it goes
 * on with that listing: a healthy store answers well within it, so callers
 * see changes within list_ttl; a failing one costs them no more than this.
 */
#define REFRESH_PATIENCE 0.5

/* Lock held, v->refreshing set by the caller: run one refresh of @v (the
 * lock is dropped meanwhile). */
static int run_refresh(struct ckfs *fs, struct view *v)
{
	unsigned stale_gen = v->stale_gen;
	uint64_t epoch = ++v->started;
	int rc;

	rc = view_refresh(fs->st, v, &fs->lock, epoch);
	v->refreshing = 0;
	v->done = epoch;
	v->last_err = rc;
	if (rc == 0)
		v->has_listing = 1;
	else
		v->failed_at = view_now();
	/* A failure counts as an attempt too: the next one is a list_ttl
	 * later, so an outage costs one deadline per list_ttl, not one per
	 * caller. */
	v->refreshed = v->stale_gen == stale_gen ? view_now() : 0;
	pthread_cond_broadcast(&fs->view_cond);
	return rc;
}

struct refresh_job {
	struct ckfs *fs;
	struct view *v;		/* views live until fs_free() */
};

static void *refresh_main(void *arg)
{
	struct refresh_job *j = arg;
	struct ckfs *fs = j->fs;

	pthread_mutex_lock(&fs->lock);
	run_refresh(fs, j->v);
	fs->bg_refreshes--;
	pthread_cond_broadcast(&fs->view_cond);
	pthread_mutex_unlock(&fs->lock);
	free(j);
	return NULL;
}

/* Lock held: refresh @v on a thread of its own; inline if none starts (or
 * before fs_start()). */
static void start_refresh(struct ckfs *fs, struct view *v)
{
	struct refresh_job *j = malloc(sizeof(*j));
	pthread_attr_t attr;
	pthread_t t;
	int ok = 0;

	v->refreshing = 1;
	/* No threads before fs_start(): the daemon forks after mounting. */
	if (j && fs->pool && pthread_attr_init(&attr) == 0) {
		*j = (struct refresh_job){ fs, v };
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ok = pthread_create(&t, &attr, refresh_main, j) == 0;
		pthread_attr_destroy(&attr);
	}
	if (ok) {
		fs->bg_refreshes++;
		return;
	}
	free(j);
	run_refresh(fs, v);
}

/* Lock held: wait on view_cond until @v finished a refresh after @done0,
 * or until @patience seconds passed. */
static void wait_refresh(struct ckfs *fs, struct view *v, uint64_t done0, double patience)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)patience;
	until.tv_nsec += (long)((patience - (double)(time_t)patience) * 1e9);
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	while (v->done == done0)
		if (pthread_cond_timedwait(&fs->view_cond, &fs->lock, &until) == ETIMEDOUT)
			break;
}

int view_ensure_locked(struct ckfs *fs, const char *job, enum ckpt_dir dir, int fresh)
{
	struct view *v = view_of(fs, job, dir);
	uint64_t target;

	if (!v)
		return -ENOMEM;
	if (!fresh && v->has_listing) {
		/* Stale-while-revalidate: one refresh runs on its own thread;
		 * callers wait for it a little, then use the last good listing
		 * (what they would have seen a moment ago). */
		if (view_now() - v->refreshed < fs->cfg.list_ttl)
			return 0;
		if (!v->refreshing)
			start_refresh(fs, v);
		wait_refresh(fs, v, v->done, REFRESH_PATIENCE);
		return 0;
	}
	/* A fresh listing is one that began after this call. */
	target = v->started + 1;
	for (;;) {
		if (fresh) {
			if (v->done >= target)
				return v->last_err;
		} else {
			if (v->has_listing)
				return 0;
			if (!v->refreshing && v->done &&
			    view_now() - v->failed_at < fs->cfg.list_ttl)
				return v->last_err;	/* failed just now: no retry yet */
		}
		if (!v->refreshing) {
			int rc;

			v->refreshing = 1;
			rc = run_refresh(fs, v);
			if (!fresh)
				return v->has_listing ? 0 : rc;
			continue;
		}
		pthread_cond_wait(&fs->view_cond, &fs->lock);
	}
}

int view_ensure(struct ckfs *fs, const char *job, enum ckpt_dir dir, int fresh)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = view_ensure_locked(fs, job, dir, fresh);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

void view_mark_stale(struct ckfs *fs, const char *job, enum ckpt_dir dir)
{
	struct view *v = view_of(fs, job, dir);

	if (v) {
		v->refreshed = 0;
		v->stale_gen++;
	}
}

int lookup_errno(struct ckfs *fs, const char *job, enum ckpt_dir dir)
{
	struct view *v = view_of(fs, job, dir);

	if (v && v->has_listing)
		return -ENOENT;
	return v && v->last_err ? v->last_err : -EIO;
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

/* A live (not expired) checkpoint by name or snapshot alias, in the
 * current listing. Lock held; no I/O. */
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
 * on the store's current state, whatever --list-ttl allows elsewhere.
 * Drops fs->lock while the store is read: pointers found before are stale. */
struct ckpt *find_ckpt_fresh(struct ckfs *fs, const char *job,
				    enum ckpt_dir dir, const char *name)
{
	view_ensure_locked(fs, job, dir, 1);
	return find_ckpt(fs, job, dir, name);
}

struct ckpt *fs_find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			  const char *name)
{
	return find_ckpt_fresh(fs, job, dir, name);
}

/* ---------------------------------------------------------------- turn */

int ns_begin(struct ckfs *fs)
{
	uint64_t seen = fs->store_fail_seq;
	int waited = 0;

	while (fs->ns_busy) {
		waited = 1;
		pthread_cond_wait(&fs->ns_cond, &fs->lock);
	}
	/* The turn we waited for failed on the store: an outage. Fail now
	 * rather than spend another deadline on it. */
	if (waited && fs->store_fail_seq != seen)
		return fs->store_fail_rc;
	fs->ns_busy = 1;
	return 0;
}

int turn_begin(struct ckfs *fs, const char *op, const char *what)
{
	int rc = ns_begin(fs);

	if (rc < 0)
		log_error("%s %s: the store failed for the operation before (%s)", op, what,
			  strerror(-rc));
	return rc;
}

void ns_end(struct ckfs *fs, int store_rc)
{
	if (store_rc == -ETIMEDOUT || store_rc == -EIO) {
		fs->store_fail_seq++;
		fs->store_fail_rc = store_rc;
	}
	fs->ns_busy = 0;
	pthread_cond_broadcast(&fs->ns_cond);
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
