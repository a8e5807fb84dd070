/*
 * fs.c: the mount tree of DESIGN.md section 2 and what each operation
 * means on it. No FUSE types: src/fuse/fuse_ops.c translates.
 *
 * Owns:         path resolution, checkpoint creation policy (base / delta /
 *               lora / state), file handles, commit, xattrs,
 *               checkpoints.jsonl.
 * Does not own: chunk I/O (chunks.c), write buffering (writer.c), store
 *               listings (view.c), record formats (catalog).
 *
 * Locking: fs->lock guards views and writer slots and is never held during
 * chunk encoding or reads of file data; a writer's own lock may be taken
 * while fs->lock is held only in commit_slot(), which takes them in the
 * order writer -> fs.
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

#define XATTR_PREFIX "user.ckptfs."
#define MODELS_PINNED ".pinned"

/* ---------------------------------------------------------------- paths */

enum ptype {
	P_ROOT, P_JSONL, P_JOBS, P_JOB, P_KINDDIR, P_CKPT, P_INNER, P_HOTLOAD,
	P_DEPLOYMENTS, P_DEPLOY, P_PINNED, P_NONE
};

struct fpath {
	enum ptype type;
	char job[256];
	enum ckpt_dir dir;
	char ckpt[256];
	char rel[4096];		/* inside the checkpoint, no leading '/' */
	int own;		/* job is this mount's job */
};

static int copy_comp(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return name_check_component(dst);
}

/* Split "/a/b/c" into components; returns count or -errno. */
static int split(const char *path, const char *comp[], size_t len[], int max)
{
	int n = 0;

	while (*path) {
		const char *s;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		s = path;
		while (*path && *path != '/')
			path++;
		if (n == max)
			return n + 1;
		comp[n] = s;
		len[n] = (size_t)(path - s);
		n++;
	}
	return n;
}

static struct ckpt *find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
			      const char *name);

static int parse_path_raw(struct ckfs *fs, const char *path, struct fpath *p)
{
	const char *c[8];
	size_t l[8];
	int n = split(path, c, l, 7), i = 0, rc;

	memset(p, 0, sizeof(*p));
	if (n == 0) {
		p->type = P_ROOT;
		return 0;
	}
#define IS(k, s) (l[k] == strlen(s) && !memcmp(c[k], s, l[k]))
	if (n == 1 && !IS(0, "sampler") && !IS(0, "state") && !IS(0, "models") &&
	    !IS(0, "deployments") && !IS(0, "jobs") && !IS(0, "checkpoints.jsonl")) {
		p->type = P_NONE;	/* the root holds nothing else */
		return 0;
	}
	if (IS(0, "checkpoints.jsonl") && n == 1) {
		p->type = P_JSONL;
		return 0;
	}
	if (IS(0, "models")) {
		/* Promoted models: the same shape as a job's sampler/, with no
		 * job, read-only (removal is how a model is unpromoted). */
		p->dir = CKPT_MODEL;
		p->job[0] = '\0';
		if (n == 1) {
			p->type = P_KINDDIR;
			return 0;
		}
		/*
		 * models/ID is the model's read-only directory; models/.pinned/ID
		 * names it too (".pinned" is not a valid model id): it is what
		 * readlink(models/ID) answers while the kernel still holds the
		 * symlink that `ln -s` created (see src/fuse/fuse_ops.c).
		 */
		if (IS(1, MODELS_PINNED)) {
			if (n == 2) {
				p->type = P_PINNED;
				return 0;
			}
			rc = copy_comp(p->ckpt, sizeof(p->ckpt), c[2], l[2]);
			if (rc < 0)
				return rc;
			if (n == 3) {
				p->type = P_CKPT;
				return 0;
			}
			i = 1;
			goto inner;
		}
		rc = copy_comp(p->ckpt, sizeof(p->ckpt), c[1], l[1]);
		if (rc < 0)
			return rc;
		if (n == 2) {
			p->type = P_CKPT;
			return 0;
		}
		i = 0;
		goto inner;
	}
	if (IS(0, "deployments")) {
		if (n == 1) {
			p->type = P_DEPLOYMENTS;
			return 0;
		}
		if (n > 2)
			return -ENOENT;
		p->type = P_DEPLOY;
		return copy_comp(p->ckpt, sizeof(p->ckpt), c[1], l[1]);
	}
	if (IS(0, "jobs")) {
		if (n == 1) {
			p->type = P_JOBS;
			return 0;
		}
		rc = copy_comp(p->job, sizeof(p->job), c[1], l[1]);
		if (rc < 0)
			return rc;
		if (n == 2) {
			p->type = P_JOB;
			p->own = !strcmp(p->job, fs->job);
			return 0;
		}
		i = 2;
	} else {
		snprintf(p->job, sizeof(p->job), "%s", fs->job);
		i = 0;
	}
	p->own = !strcmp(p->job, fs->job);
	if (IS(i, "sampler"))
		p->dir = CKPT_SAMPLER;
	else if (IS(i, "state"))
		p->dir = CKPT_STATE;
	else
		return -ENOENT;
	if (n == i + 1) {
		p->type = P_KINDDIR;
		return 0;
	}
	rc = copy_comp(p->ckpt, sizeof(p->ckpt), c[i + 1], l[i + 1]);
	if (rc < 0)
		return rc;
	if (n == i + 2) {
		p->type = P_CKPT;
		return 0;
	}
inner:
	/* The rest of the path, taken verbatim, is the relative path. */
	{
		const char *rest = c[i + 2];
		size_t rl = strlen(rest);
		const char *cc[2048 / 2];
		size_t ll[2048 / 2];
		int k, m;

		while (rl > 0 && rest[rl - 1] == '/')
			rl--;
		if (rl >= sizeof(p->rel))
			return -ENAMETOOLONG;
		memcpy(p->rel, rest, rl);
		p->rel[rl] = '\0';
		m = split(p->rel, cc, ll, 1024);
		if (m > 1024)
			return -ENAMETOOLONG;
		for (k = 0; k < m; k++) {
			char tmp[256];

			rc = copy_comp(tmp, sizeof(tmp), cc[k], ll[k]);
			if (rc < 0)
				return rc;
		}
	}
	p->type = P_INNER;
	/* Every checkpoint has a hotload control file (a state checkpoint's
	 * refuses with EINVAL), so the name is reserved in both kinds. */
	if (!strcmp(p->rel, "hotload") && p->dir != CKPT_MODEL)
		p->type = P_HOTLOAD;
#undef IS
	return 0;
}

/*
 * Parse @path; a snapshot alias ("step-1-a1b2c3d4") in the checkpoint
 * position is replaced by the checkpoint's real name, so every operation
 * (and every store key) works on the one true name.
 */
static int parse_path(struct ckfs *fs, const char *path, struct fpath *p)
{
	int rc = parse_path_raw(fs, path, p);

	if (rc == 0 && (p->type == P_CKPT || p->type == P_INNER || p->type == P_HOTLOAD)) {
		struct ckpt *c;

		pthread_mutex_lock(&fs->lock);
		c = find_ckpt(fs, p->job, p->dir, p->ckpt);
		if (c && strcmp(c->rec.name, p->ckpt))
			snprintf(p->ckpt, sizeof(p->ckpt), "%s", c->rec.name);
		pthread_mutex_unlock(&fs->lock);
	}
	return rc;
}

/* ---------------------------------------------------------------- views */

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct view *get_view(struct ckfs *fs, const char *job, enum ckpt_dir dir)
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
static struct ckpt *find_ckpt(struct ckfs *fs, const char *job, enum ckpt_dir dir,
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
static struct ckpt *find_ckpt_fresh(struct ckfs *fs, const char *job,
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

static struct ent_slot *find_slot(struct ckpt *c, const char *rel, size_t *idx)
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

static struct wslot *find_wslot(struct ckfs *fs, const struct fpath *p)
{
	struct wslot *s;

	for (s = fs->wslots; s; s = s->next)
		if (!s->unlinked && s->dir == p->dir && !strcmp(s->relpath, p->rel) &&
		    !strcmp(s->ckpt, p->ckpt) && !strcmp(s->job, p->job))
			return s;
	return NULL;
}

static int ckpt_has_writers(struct ckfs *fs, const char *job, enum ckpt_dir dir,
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

static int is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 0)
		return 1;
	return !strncmp(path, dir, n) && path[n] == '/';
}

/* Does @rel name a folder (explicit entry, or implied by a descendant)? */
static int is_dir_in(struct ckfs *fs, struct ckpt *c, const struct fpath *p)
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

static int parent_is_dir(struct ckfs *fs, struct ckpt *c, const struct fpath *p)
{
	struct fpath q = *p;
	char *slash = strrchr(q.rel, '/');

	if (!slash)
		return 1;
	*slash = '\0';
	return is_dir_in(fs, c, &q);
}

/* ---------------------------------------------------------------- attrs */

static void fill_dir(struct stat *st, mode_t perm, time_t mtime)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | perm;
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtime = st->st_ctime = st->st_atime = mtime;
}

static void fill_file(struct stat *st, mode_t perm, uint64_t size, int64_t mtime_ns)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | perm;
	st->st_nlink = 1;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = 1 << 20;
	st->st_mtim.tv_sec = mtime_ns / 1000000000;
	st->st_mtim.tv_nsec = mtime_ns % 1000000000;
	st->st_ctim = st->st_atim = st->st_mtim;
}

static mode_t dir_perm(const struct ckfs *fs, int own)
{
	return (own && !fs->cfg.read_only) ? 0755 : 0555;
}

static uint64_t ckpt_logical(const struct ckpt *c)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < c->n_ents; i++)
		n += c->ents[i].e->size;
	return n;
}

static uint64_t ckpt_stored(const struct ckpt *c)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < c->n_ents; i++)
		n += entry_stored_bytes(c->ents[i].e);
	return n;
}

static int jsonl_build(struct ckfs *fs, struct buf *out);

int fs_getattr(struct ckfs *fs, const char *path, struct stat *st)
{
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	struct ent_slot *es;
	time_t now = time(NULL);
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	switch (p.type) {
	case P_NONE:
		return -ENOENT;
	case P_ROOT:
	case P_JOBS:
	case P_DEPLOYMENTS:
		fill_dir(st, p.type == P_JOBS ? 0555 : dir_perm(fs, 1), now);
		return 0;
	case P_JSONL: {
		struct buf b = BUF_INIT;

		pthread_mutex_lock(&fs->lock);
		rc = jsonl_build(fs, &b);
		pthread_mutex_unlock(&fs->lock);
		fill_file(st, 0444, b.len, (int64_t)now * 1000000000);
		buf_release(&b);
		return rc;
	}
	case P_JOB:
	case P_KINDDIR:
		fill_dir(st, dir_perm(fs, p.own), now);
		return 0;
	case P_DEPLOY:
		return ctl_deploy_getattr(fs, p.ckpt, st);
	case P_PINNED:
		fill_dir(st, 0555, now);
		return 0;
	default:
		break;
	}
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	if (p.type == P_CKPT) {
		fill_dir(st, dir_perm(fs, p.own), (time_t)c->rec.created);
		goto out;
	}
	if (p.type == P_HOTLOAD) {
		struct buf b = BUF_INIT;

		rc = ctl_hotload_status(fs, p.job, p.dir, p.ckpt, &b);
		fill_file(st, dir_perm(fs, p.own) & 0666, b.len, (int64_t)now * 1000000000);
		buf_release(&b);
		goto out;
	}
	ws = p.own ? find_wslot(fs, &p) : NULL;
	if (ws) {
		fill_file(st, writer_mode(ws->w), writer_size(ws->w), writer_mtime(ws->w));
		goto out;
	}
	es = find_slot(c, p.rel, NULL);
	if (es && !es->e->is_dir) {
		fill_file(st, p.own ? es->e->mode : (es->e->mode & 0555), es->e->size,
			  es->e->mtime_ns);
	} else if (es || is_dir_in(fs, c, &p)) {
		fill_dir(st, dir_perm(fs, p.own),
			 es ? (time_t)(es->e->mtime_ns / 1000000000) : (time_t)c->rec.created);
	} else {
		rc = -ENOENT;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* ---------------------------------------------------------------- readdir */

struct names {
	char **v;
	size_t n, cap;
};

static int names_add(struct names *ns, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < ns->n; i++)
		if (strlen(ns->v[i]) == len && !strncmp(ns->v[i], s, len))
			return 0;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 16;
		char **v = realloc(ns->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n] = strndup(s, len);
	return ns->v[ns->n++] ? 0 : -ENOMEM;
}

static void names_release(struct names *ns)
{
	size_t i;

	for (i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
}

/* Add the child component of @path below @dir, if any. */
static int add_child(struct names *ns, const char *path, const char *dir)
{
	const char *rest, *slash;

	if (dir[0]) {
		if (!is_under(path, dir))
			return 0;
		rest = path + strlen(dir) + 1;
	} else {
		rest = path;
	}
	slash = strchr(rest, '/');
	return names_add(ns, rest, slash ? (size_t)(slash - rest) : strlen(rest));
}

static int job_cb(const char *job, void *arg)
{
	return names_add(arg, job, strlen(job));
}

static int deploy_cb(void *arg, const char *name)
{
	return names_add(arg, name, strlen(name));
}

int fs_readdir(struct ckfs *fs, const char *path, fs_fill_fn fill, void *arg)
{
	struct names ns = { 0 };
	struct fpath p;
	struct ckpt *c;
	struct wslot *s;
	size_t i;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	switch (p.type) {
	case P_ROOT:
		for (i = 0; i < 6; i++) {
			static const char *const top[] = { "sampler", "state", "models",
				"deployments", "jobs", "checkpoints.jsonl" };
			names_add(&ns, top[i], strlen(top[i]));
		}
		break;
	case P_DEPLOYMENTS:
		rc = ctl_deploy_readdir(fs, deploy_cb, &ns);
		break;
	case P_JOBS:
		names_add(&ns, fs->job, strlen(fs->job));
		rc = catalog_list_jobs(fs->st, job_cb, &ns);
		break;
	case P_JOB:
		names_add(&ns, "sampler", 7);
		names_add(&ns, "state", 5);
		break;
	case P_PINNED:
	case P_KINDDIR: {
		struct view *v = get_view(fs, p.job, p.dir);
		double now = wall_now();

		if (!v) {
			rc = -EIO;
			break;
		}
		for (i = 0; i < v->n; i++)
			if (!ckpt_is_expired(v->ckpts[i], now))
				names_add(&ns, v->ckpts[i]->rec.name, strlen(v->ckpts[i]->rec.name));
		break;
	}
	case P_CKPT:
	case P_INNER:
		c = find_ckpt(fs, p.job, p.dir, p.ckpt);
		if (!c) {
			rc = -ENOENT;
			break;
		}
		if (p.type == P_INNER) {
			struct ent_slot *es = find_slot(c, p.rel, NULL);

			if ((es && !es->e->is_dir) || (p.own && find_wslot(fs, &p))) {
				rc = -ENOTDIR;
				break;
			}
			if (!es && !is_dir_in(fs, c, &p)) {
				rc = -ENOENT;
				break;
			}
		}
		for (i = 0; i < c->n_ents; i++)
			add_child(&ns, c->ents[i].e->path, p.rel);
		for (s = fs->wslots; s; s = s->next)
			if (!s->unlinked && s->dir == p.dir && !strcmp(s->ckpt, p.ckpt) &&
			    !strcmp(s->job, p.job))
				add_child(&ns, s->relpath, p.rel);
		break;
	default:
		rc = -ENOTDIR;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0) {
		fill(arg, ".", NULL);
		fill(arg, "..", NULL);
		for (i = 0; i < ns.n; i++)
			if (fill(arg, ns.v[i], NULL))
				break;
	}
	names_release(&ns);
	return rc;
}

/* ---------------------------------------------------------------- policy */

/* Latest live base of the job's sampler checkpoints, or NULL. Lock held. */
static struct ckpt *latest_of_kind(struct view *v, enum ckpt_kind kind)
{
	struct ckpt *best = NULL;
	double now = wall_now();
	size_t i;

	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];

		if (c->rec.kind == kind && !ckpt_is_expired(c, now) &&
		    (!best || c->rec.created > best->rec.created))
			best = c;
	}
	return best;
}

/*
 * Choose how a new sampler checkpoint is stored (doc/SEMANTICS.md "Delta
 * policy"): the first is a base; later ones are deltas against the latest
 * base, unless --base-every deltas already follow it, or the newest delta
 * against it stored more than delta_max_ratio of its logical bytes (deltas
 * stopped paying), in which case a new base starts.
 */
static void choose_kind(struct ckfs *fs, struct view *v, struct ckpt_record *r)
{
	struct ckpt *base, *newest = NULL;
	int n_deltas = 0;
	size_t i;

	r->kind = KIND_BASE;
	r->base = NULL;
	if (fs->cfg.lora) {
		r->kind = KIND_LORA;
		return;
	}
	if (fs->cfg.delta_policy == DELTA_NEVER)
		return;
	base = latest_of_kind(v, KIND_BASE);
	if (!base)
		return;
	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];

		if (c->rec.kind != KIND_DELTA || !c->rec.base ||
		    strcmp(c->rec.base, base->rec.name) || c->rec.created < base->rec.created)
			continue;
		n_deltas++;
		if (!newest || c->rec.created > newest->rec.created)
			newest = c;
	}
	if (fs->cfg.base_every > 0 && n_deltas >= fs->cfg.base_every)
		return;
	if (newest) {
		uint64_t logical = ckpt_logical(newest), stored = ckpt_stored(newest);

		if (logical > 0 && (double)stored > fs->cfg.delta_max_ratio * (double)logical) {
			log_info("checkpoint %s: new base (delta %s stored %.0f%% of its size)",
				 r->name, newest->rec.name, 100.0 * (double)stored / (double)logical);
			return;
		}
	}
	r->kind = KIND_DELTA;
	r->base = strdup(base->rec.name);
	if (!r->base)
		r->kind = KIND_BASE;
}

static int is_lora_file(const char *rel)
{
	const char *leaf = strrchr(rel, '/');

	leaf = leaf ? leaf + 1 : rel;
	return !strcmp(leaf, "adapter_config.json") ||
	       !strcmp(leaf, "adapter_model.safetensors") ||
	       !strcmp(leaf, "adapter_model.bin");
}

/* ---------------------------------------------------------------- mkdir etc */

static int refuse_write(struct ckfs *fs, const struct fpath *p)
{
	if (fs->cfg.read_only || !p->own)
		return -EROFS;
	return 0;
}

/* Removal inside models/ is allowed: `rm -r models/ID` unpromotes. */
static int refuse_remove(struct ckfs *fs, const struct fpath *p)
{
	if (fs->cfg.read_only)
		return -EROFS;
	return p->dir == CKPT_MODEL ? 0 : refuse_write(fs, p);
}

static int create_ckpt(struct ckfs *fs, const struct fpath *p)
{
	struct ckpt_record r = { 0 };
	struct view *v = get_view(fs, p->job, p->dir);
	struct ckpt *c;
	int rc;

	if (!v)
		return -EIO;
	c = view_find_any(v, p->ckpt);
	if (c && !ckpt_is_expired(c, wall_now()))
		return -EEXIST;
	{
		char *enc = name_key_encode(p->ckpt);
		size_t elen = enc ? strlen(enc) : 0;

		free(enc);
		if (elen > NAME_KEY_MAX) {
			log_error("mkdir %s: the name is too long once encoded for the store "
				  "(%zu > %d bytes; non-ASCII bytes take 3) (ENAMETOOLONG)",
				  p->ckpt, elen, NAME_KEY_MAX);
			return -ENAMETOOLONG;
		}
	}
	if (c)	/* an expired name may be reused: drop the old record first */
		catalog_ckpt_remove(fs->st, p->job, p->dir, p->ckpt);
	r.job = (char *)p->job;
	r.name = (char *)p->ckpt;
	r.dir = p->dir;
	r.created = wall_now();
	memcpy(r.session, fs->session, sizeof(r.session));
	if (p->dir == CKPT_STATE)
		r.kind = KIND_STATE;
	else
		choose_kind(fs, v, &r);
	rc = catalog_record_create(fs->st, &r);
	if (rc == 0 && fs->cfg.default_ttl > 0) {
		struct ckpt_attrs a = { .ttl = fs->cfg.default_ttl };

		rc = catalog_attrs_put(fs->st, p->job, p->dir, p->ckpt, &a);
	}
	free(r.base);
	if (rc == -EEXIST)
		log_info("mkdir %s: another mount created it first", p->ckpt);
	v->refreshed = 0;	/* pick up the record (ours or the winner's) */
	return rc;
}

int fs_mkdir(struct ckfs *fs, const char *path, mode_t mode)
{
	struct fpath p;
	struct ckpt *c;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT && p.type != P_INNER)
		return p.type == P_HOTLOAD ? -EEXIST : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	if (p.type == P_CKPT) {
		rc = create_ckpt(fs, &p);
		goto out;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
	} else if (find_slot(c, p.rel, NULL) || find_wslot(fs, &p) || is_dir_in(fs, c, &p)) {
		rc = -EEXIST;
	} else if (!parent_is_dir(fs, c, &p)) {
		rc = -ENOENT;
	} else {
		struct entry e = { .path = p.rel, .is_dir = 1, .mode = mode & 07777 };
		struct entry *copy = calloc(1, sizeof(*copy));
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		e.mtime_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
		rc = catalog_entry_put(fs->st, p.job, p.dir, p.ckpt, &e);
		if (rc == 0 && copy && entry_copy(&e, copy) == 0) {
			ckpt_add_slot(c, copy, NULL);
			copy = NULL;
		}
		free(copy);
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_rmdir(struct ckfs *fs, const char *path)
{
	struct fpath p;
	struct ckpt *c;
	size_t idx, i;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT && p.type != P_INNER)
		return p.type == P_NONE ? -ENOENT : -EPERM;
	rc = refuse_remove(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	if (p.type == P_CKPT) {
		struct view *v = get_view(fs, p.job, p.dir);

		if (c->n_ents || ckpt_has_writers(fs, p.job, p.dir, p.ckpt)) {
			rc = -ENOTEMPTY;
			goto out;
		}
		rc = catalog_ckpt_remove(fs->st, p.job, p.dir, p.ckpt);
		if (rc == 0 && v)
			view_remove(v, c);
		if (rc == 0 && p.dir == CKPT_MODEL)
			log_info("unpromoted models/%s", p.ckpt);
		goto out;
	}
	if (!find_slot(c, p.rel, &idx) || !c->ents[idx].e->is_dir) {
		rc = is_dir_in(fs, c, &p) ? -ENOTEMPTY : (find_slot(c, p.rel, NULL) ? -ENOTDIR : -ENOENT);
		goto out;
	}
	for (i = 0; i < c->n_ents; i++)
		if (is_under(c->ents[i].e->path, p.rel)) {
			rc = -ENOTEMPTY;
			goto out;
		}
	{
		struct wslot *s;

		for (s = fs->wslots; s; s = s->next)
			if (!s->unlinked && s->dir == p.dir && !strcmp(s->ckpt, p.ckpt) &&
			    !strcmp(s->job, p.job) && is_under(s->relpath, p.rel)) {
				rc = -ENOTEMPTY;
				goto out;
			}
	}
	rc = catalog_entry_remove(fs->st, p.job, p.dir, p.ckpt, p.rel);
	if (rc == 0)
		ckpt_remove_slot(c, idx);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_unlink(struct ckfs *fs, const char *path)
{
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	size_t idx;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type == P_DEPLOY)
		return ctl_deploy_unlink(fs, p.ckpt);
	if (p.type != P_INNER)
		return p.type == P_NONE ? -ENOENT : (p.type == P_CKPT ? -EISDIR : -EPERM);
	rc = refuse_remove(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	ws = find_wslot(fs, &p);
	if (find_slot(c, p.rel, &idx)) {
		if (c->ents[idx].e->is_dir) {
			rc = -EISDIR;
			goto out;
		}
		rc = catalog_entry_remove(fs->st, p.job, p.dir, p.ckpt, p.rel);
		if (rc == 0)
			ckpt_remove_slot(c, idx);
	} else if (!ws) {
		rc = is_dir_in(fs, c, &p) ? -EISDIR : -ENOENT;
	}
	if (rc == 0 && ws)
		ws->unlinked = 1;	/* open handles keep working, nothing commits */
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* ---------------------------------------------------------------- promote */

/* Re-encode one chunk whole (base XOR delta -> full frame). */
static int materialize_chunk(struct ckfs *fs, const struct entry *e, size_t i,
			     const struct st_layout *layout, struct chunk_ref *out)
{
	uint64_t off = (uint64_t)i * e->chunk_size;
	size_t len = e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
	struct codec_span spans[256];
	const struct chunk_data *d;
	size_t nspans = 0;
	int rc;

	rc = chunks_get(fs->chunks, &e->chunks[i], len, &d);
	if (rc < 0)
		return rc;
	if (layout)
		nspans = st_layout_chunk_spans(layout, off, len, spans, 256);
	rc = chunks_store(fs->chunks, d->data, len, NULL, NULL, spans, nspans, out);
	chunks_put(fs->chunks, d);
	return rc;
}

/* Make @e independent of any base: every chunk a full frame. */
static int materialize(struct ckfs *fs, struct entry *e)
{
	struct st_layout layout = ST_LAYOUT_INIT;
	int have_layout = 0, rc = 0;
	size_t i;

	for (i = 0; i < e->n_chunks && rc == 0; i++) {
		struct chunk_ref ref;

		if (!e->chunks[i].base_key[0])
			continue;	/* already a full frame: shared, not copied */
		if (!have_layout && e->n_chunks) {
			const struct chunk_data *d;
			size_t len = e->size < e->chunk_size ? (size_t)e->size : e->chunk_size;

			have_layout = -1;
			if (chunks_get(fs->chunks, &e->chunks[0], len, &d) == 0) {
				if (st_layout_parse(d->data, len, &layout) == 0)
					have_layout = 1;
				chunks_put(fs->chunks, d);
			}
		}
		rc = materialize_chunk(fs, e, i, have_layout == 1 ? &layout : NULL, &ref);
		if (rc == 0)
			e->chunks[i] = ref;
	}
	st_layout_release(&layout);
	return rc;
}

static int clear_prefix_cb(const char *key, const struct store_stat *st, void *arg)
{
	(void)st;
	return store_remove(arg, key);
}

/*
 * Promote checkpoint @src to model @id (DESIGN.md section 5). Base and LoRA
 * checkpoints share their chunks (no copy); a delta is materialized into
 * full frames first, so the model needs no base. The model's record is
 * written last and exclusively: a crash leaves no model, a race leaves one.
 */
static int promote(struct ckfs *fs, const struct fpath *src, const char *id)
{
	struct ckpt_record rec = { 0 };
	struct entry *ents = NULL;
	struct view *mv;
	struct ckpt *c;
	char *prefix = NULL;
	size_t n = 0, i;
	int rc = name_check_model_id(id);

	if (rc < 0) {
		log_error("promote %s -> models/%s: a model id is 1-63 characters of "
			  "a-z, 0-9 and '-' (EINVAL)", src->ckpt, id);
		return -EINVAL;
	}
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt_fresh(fs, src->job, src->dir, src->ckpt);
	mv = get_view(fs, "", CKPT_MODEL);
	if (mv)
		mv->refreshed = 0;
	mv = get_view(fs, "", CKPT_MODEL);
	if (!c) {
		rc = -ENOENT;
	} else if (c->rec.dir == CKPT_STATE) {
		log_error("promote %s -> models/%s: train-state checkpoints are not "
			  "promotable (EINVAL)", src->ckpt, id);
		rc = -EINVAL;
	} else if (ckpt_has_writers(fs, src->job, src->dir, src->ckpt)) {
		log_error("promote %s -> models/%s: files are still open for writing (EBUSY)",
			  src->ckpt, id);
		rc = -EBUSY;
	} else if (!mv) {
		rc = -EIO;
	} else if (view_find_any(mv, id)) {
		log_error("promote %s -> models/%s: the model exists (EEXIST)", src->ckpt, id);
		rc = -EEXIST;
	} else {
		rec.job = strdup(c->rec.job);
		rec.name = strdup(id);
		rec.dir = CKPT_MODEL;
		rec.kind = c->rec.kind == KIND_LORA ? KIND_LORA : KIND_BASE;
		rec.created = wall_now();
		memcpy(rec.session, fs->session, sizeof(rec.session));
		if (asprintf(&rec.promoted_from, "%s/%s/%s", c->rec.job,
			     ckpt_dir_name(c->rec.dir), c->rec.name) < 0)
			rec.promoted_from = NULL;
		if (asprintf(&rec.source_snapshot, "%s-%s", c->rec.name, c->rec.session) < 0)
			rec.source_snapshot = NULL;
		ents = calloc(c->n_ents ? c->n_ents : 1, sizeof(*ents));
		if (!rec.job || !rec.name || !rec.promoted_from || !rec.source_snapshot || !ents)
			rc = -ENOMEM;
		for (i = 0; rc == 0 && i < c->n_ents; i++) {
			rc = entry_copy(c->ents[i].e, &ents[n]);
			if (rc == 0)
				n++;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto out;

	for (i = 0; rc == 0 && i < n; i++)
		if (!ents[i].is_dir)
			rc = materialize(fs, &ents[i]);
	if (rc < 0)
		goto out;
	/* Leftovers of an earlier promotion to this id that crashed before
	 * its record: clear them, or they would join the new model. */
	prefix = catalog_ckpt_prefix("", CKPT_MODEL, id);
	if (!prefix) {
		rc = -ENOMEM;
		goto out;
	}
	rc = store_list(fs->st, prefix, clear_prefix_cb, fs->st);
	for (i = 0; rc == 0 && i < n; i++)
		rc = catalog_entry_put(fs->st, "", CKPT_MODEL, id, &ents[i]);
	if (rc == 0)
		rc = catalog_record_create(fs->st, &rec);
	if (rc == -EEXIST)
		log_error("promote %s -> models/%s: the model exists (EEXIST)", src->ckpt, id);
	if (rc == 0)
		log_info("promoted %s/%s -> models/%s%s", src->job, src->ckpt, id,
			 "");
out:
	pthread_mutex_lock(&fs->lock);
	mv = get_view(fs, "", CKPT_MODEL);
	if (mv)
		mv->refreshed = 0;
	pthread_mutex_unlock(&fs->lock);
	for (i = 0; i < n; i++)
		entry_release(&ents[i]);
	free(ents);
	free(prefix);
	ckpt_record_release(&rec);
	if (rc < 0 && rc != -EINVAL && rc != -EBUSY && rc != -EEXIST && rc != -ENOENT)
		log_error("promote %s -> models/%s: %s", src->ckpt, id, strerror(-rc));
	return rc;
}

/* ---------------------------------------------------------------- rename */

/* Move one committed entry to a new relative path. Lock held. */
static int move_entry(struct ckfs *fs, const struct fpath *p, struct ckpt *c,
		      size_t idx, const char *newrel)
{
	struct entry *moved = calloc(1, sizeof(*moved));
	char *oldrel;
	size_t j;
	int rc;

	if (!moved || entry_copy(c->ents[idx].e, moved) < 0) {
		free(moved);
		return -ENOMEM;
	}
	free(moved->path);
	moved->path = strdup(newrel);
	oldrel = strdup(c->ents[idx].e->path);
	if (!moved->path || !oldrel) {
		entry_free(moved);
		free(oldrel);
		return -ENOMEM;
	}
	/* New name first, old name second: a crash in between leaves the file
	 * under both names, never under none. */
	rc = catalog_entry_put(fs->st, p->job, p->dir, p->ckpt, moved);
	if (rc == 0)
		rc = catalog_entry_remove(fs->st, p->job, p->dir, p->ckpt, oldrel);
	if (rc < 0) {
		entry_free(moved);
		free(oldrel);
		return rc;
	}
	for (j = 0; j < c->n_ents; j++) {
		if (!strcmp(c->ents[j].e->path, newrel)) {
			ckpt_remove_slot(c, j);
			if (idx == c->n_ents)
				idx = j;	/* the moved slot took j's place */
			break;
		}
	}
	ckpt_remove_slot(c, idx);
	ckpt_add_slot(c, moved, NULL);
	free(oldrel);
	return 0;
}

int fs_rename(struct ckfs *fs, const char *from, const char *to, unsigned flags)
{
	struct fpath a, b;
	struct ckpt *c;
	struct wslot *ws, *s;
	size_t idx, i, alen;
	int rc, is_dir, to_exists;

	rc = parse_path(fs, from, &a);
	if (rc == 0)
		rc = parse_path(fs, to, &b);
	if (rc < 0)
		return rc;
	if (flags & ~1u)	/* only RENAME_NOREPLACE */
		return -EINVAL;
	if (a.type == P_CKPT && b.type == P_CKPT && b.dir == CKPT_MODEL && a.dir != CKPT_MODEL) {
		/* mv sampler/X models/ID: promote, then remove X. */
		rc = refuse_write(fs, &a);
		if (rc == 0)
			rc = promote(fs, &a, b.ckpt);
		if (rc == 0) {
			pthread_mutex_lock(&fs->lock);
			rc = catalog_ckpt_remove(fs->st, a.job, a.dir, a.ckpt);
			if (rc == 0) {
				struct view *v = get_view(fs, a.job, a.dir);
				struct ckpt *c0 = v ? view_find_any(v, a.ckpt) : NULL;

				if (c0)
					view_remove(v, c0);
			}
			pthread_mutex_unlock(&fs->lock);
		}
		return rc;
	}
	if (a.type == P_CKPT || b.type == P_CKPT || a.type != P_INNER || b.type != P_INNER)
		return (a.type == P_CKPT || b.type == P_CKPT) ? -EXDEV : -EPERM;
	rc = refuse_write(fs, &a);
	if (rc == 0)
		rc = refuse_write(fs, &b);
	if (rc < 0)
		return rc;
	/* Files move only inside their checkpoint: a checkpoint's encoding
	 * (base, delta) is fixed per checkpoint. EXDEV makes mv copy. */
	if (a.dir != b.dir || strcmp(a.ckpt, b.ckpt) || strcmp(a.job, b.job))
		return -EXDEV;
	if (!strcmp(a.rel, b.rel))
		return 0;
	if (is_under(b.rel, a.rel))
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, a.job, a.dir, a.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	if (!parent_is_dir(fs, c, &b)) {
		rc = -ENOENT;
		goto out;
	}
	ws = find_wslot(fs, &a);
	is_dir = !ws && !(find_slot(c, a.rel, &idx) && !c->ents[idx].e->is_dir) &&
		 is_dir_in(fs, c, &a);
	if (!ws && !is_dir && !find_slot(c, a.rel, NULL)) {
		rc = -ENOENT;
		goto out;
	}
	to_exists = find_slot(c, b.rel, NULL) || find_wslot(fs, &b) || is_dir_in(fs, c, &b);
	if (to_exists && (flags & 1u)) {
		rc = -EEXIST;
		goto out;
	}
	if (to_exists) {
		int to_dir = !find_wslot(fs, &b) && is_dir_in(fs, c, &b) &&
			     !(find_slot(c, b.rel, &idx) && !c->ents[idx].e->is_dir);

		if (to_dir && !is_dir) {
			rc = -EISDIR;
			goto out;
		}
		if (!to_dir && is_dir) {
			rc = -ENOTDIR;
			goto out;
		}
		if (to_dir) {
			for (i = 0; i < c->n_ents; i++)
				if (is_under(c->ents[i].e->path, b.rel)) {
					rc = -ENOTEMPTY;
					goto out;
				}
		}
		if (find_wslot(fs, &b))
			find_wslot(fs, &b)->unlinked = 1;
	}
	/* Every committed entry at or under a.rel, then open writers. */
	alen = strlen(a.rel);
	for (i = 0; i < c->n_ents;) {
		const char *path = c->ents[i].e->path;
		char newrel[sizeof(b.rel)];

		if (strcmp(path, a.rel) && !is_under(path, a.rel)) {
			i++;
			continue;
		}
		if (snprintf(newrel, sizeof(newrel), "%s%s", b.rel, path + alen) >=
		    (int)sizeof(newrel)) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		rc = move_entry(fs, &a, c, i, newrel);
		if (rc < 0)
			goto out;
		i = 0;	/* slots were reordered */
		/* Termination: moved entries no longer match a.rel. */
	}
	for (s = fs->wslots; s; s = s->next) {
		char newrel[sizeof(b.rel)], *dup;

		if (s->unlinked || s->dir != a.dir || strcmp(s->ckpt, a.ckpt) ||
		    strcmp(s->job, a.job))
			continue;
		if (strcmp(s->relpath, a.rel) && !is_under(s->relpath, a.rel))
			continue;
		snprintf(newrel, sizeof(newrel), "%s%s", b.rel, s->relpath + alen);
		dup = strdup(newrel);
		if (!dup) {
			rc = -ENOMEM;
			goto out;
		}
		free(s->relpath);
		s->relpath = dup;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* ---------------------------------------------------------------- handles */


/* Base file for a delta writer: same relative path in the base. Lock held. */
static const struct entry *delta_base_entry(struct ckfs *fs, struct ckpt *c,
					    const char *rel)
{
	struct ckpt *b;
	struct ent_slot *es;

	char job[256], base[256];
	enum ckpt_dir dir = c->rec.dir;

	if (c->rec.kind != KIND_DELTA || !c->rec.base)
		return NULL;
	/* Copied: a refresh in find_ckpt() replaces the strings c->rec holds. */
	snprintf(job, sizeof(job), "%s", c->rec.job);
	snprintf(base, sizeof(base), "%s", c->rec.base);
	b = find_ckpt(fs, job, dir, base);
	if (!b)
		return NULL;
	es = find_slot(b, rel, NULL);
	return (es && !es->e->is_dir) ? es->e : NULL;
}

/* A LoRA adapter file in a checkpoint that holds nothing yet makes it a
 * LoRA checkpoint (stored whole, always promotable). Lock held. */
static void maybe_become_lora(struct ckfs *fs, struct ckpt *c, const char *rel)
{
	struct ckpt_record r;

	if (c->rec.dir != CKPT_SAMPLER || c->rec.kind == KIND_LORA || !is_lora_file(rel))
		return;
	if (c->n_ents || ckpt_has_writers(fs, c->rec.job, c->rec.dir, c->rec.name))
		return;
	r = c->rec;
	r.kind = KIND_LORA;
	r.base = NULL;
	if (catalog_record_replace(fs->st, &r) == 0) {
		free(c->rec.base);
		c->rec.base = NULL;
		c->rec.kind = KIND_LORA;
		memset(&c->rec_st, 0, sizeof(c->rec_st));
		log_info("checkpoint %s: adapter files, stored whole as lora", c->rec.name);
	}
}

static int new_wslot(struct ckfs *fs, const struct fpath *p, struct ckpt *c,
		     uint32_t mode, const struct entry *initial, struct wslot **out)
{
	struct wslot *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	maybe_become_lora(fs, c, p->rel);
	rc = writer_new(&fs->wenv, mode, initial, delta_base_entry(fs, c, p->rel), &s->w);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->job = strdup(p->job);
	s->ckpt = strdup(p->ckpt);
	s->relpath = strdup(p->rel);
	s->dir = p->dir;
	if (!s->job || !s->ckpt || !s->relpath) {
		writer_free(s->w);
		free(s->job);
		free(s->ckpt);
		free(s->relpath);
		free(s);
		return -ENOMEM;
	}
	s->next = fs->wslots;
	fs->wslots = s;
	*out = s;
	return 0;
}

static void free_wslot(struct ckfs *fs, struct wslot *s)
{
	struct wslot **pp;

	for (pp = &fs->wslots; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	writer_free(s->w);
	free(s->job);
	free(s->ckpt);
	free(s->relpath);
	free(s);
}

int fs_create(struct ckfs *fs, const char *path, mode_t mode, int flags, uint64_t *fh)
{
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	struct handle *h;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type == P_DEPLOY || p.type == P_HOTLOAD) {
		int keep, direct;

		return fs_open(fs, path, flags | O_CREAT, fh, &keep, &direct);
	}
	if (p.type != P_INNER)
		return -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->magic = FS_HANDLE_MAGIC;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	if (!parent_is_dir(fs, c, &p)) {
		rc = -ENOENT;
		goto out;
	}
	ws = find_wslot(fs, &p);
	if (ws || find_slot(c, p.rel, NULL) || is_dir_in(fs, c, &p)) {
		if (flags & O_EXCL) {
			rc = -EEXIST;
			goto out;
		}
		pthread_mutex_unlock(&fs->lock);
		free(h);
		/* Exists after all (a race with another opener): open it. */
		{
			int keep, direct;

			return fs_open(fs, path, flags & ~O_CREAT, fh, &keep, &direct);
		}
	}
	rc = new_wslot(fs, &p, c, mode & 07777, NULL, &ws);
	if (rc < 0)
		goto out;
	/* A new file exists once closed, even with nothing written. */
	writer_set_mode(ws->w, mode & 07777);
	ws->opens = 1;
	h->type = H_WRITER;
	h->ws = ws;
	h->write_access = 1;
	*fh = (uint64_t)(uintptr_t)h;
	h = NULL;
out:
	pthread_mutex_unlock(&fs->lock);
	free(h);
	return rc;
}

int fs_open(struct ckfs *fs, const char *path, int flags, uint64_t *fh,
	    int *keep_cache, int *direct)
{
	int acc = flags & O_ACCMODE, wants_write = acc != O_RDONLY || (flags & O_TRUNC);
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	struct ent_slot *es;
	struct handle *h;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	*keep_cache = 0;
	*direct = 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->magic = FS_HANDLE_MAGIC;
	h->last_chunk = -2;
	if (p.type == P_JSONL) {
		if (wants_write) {
			rc = -EACCES;
			goto fail;
		}
		pthread_mutex_lock(&fs->lock);
		rc = jsonl_build(fs, &h->content);
		pthread_mutex_unlock(&fs->lock);
		if (rc < 0)
			goto fail;
		h->type = H_CONTENT;
		*direct = 1;
		*fh = (uint64_t)(uintptr_t)h;
		return 0;
	}
	if (p.type == P_DEPLOY) {
		*direct = 1;
		rc = ctl_deploy_open(fs, p.ckpt, flags, (flags & O_CREAT) != 0, h);
		if (rc < 0)
			goto fail;
		*fh = (uint64_t)(uintptr_t)h;
		return 0;
	}
	if (p.type == P_HOTLOAD) {
		*direct = 1;
		if (wants_write && (rc = refuse_write(fs, &p)) < 0)
			goto fail;
		pthread_mutex_lock(&fs->lock);
		rc = find_ckpt(fs, p.job, p.dir, p.ckpt) ? 0 : -ENOENT;
		if (rc == 0)
			rc = ctl_hotload_status(fs, p.job, p.dir, p.ckpt, &h->content);
		pthread_mutex_unlock(&fs->lock);
		h->type = H_HOTLOAD;
		h->write_access = wants_write;
		h->ctl_job = strdup(p.job);
		h->ctl_name = strdup(p.ckpt);
		h->ctl_dir = p.dir;
		if (rc == 0 && (!h->ctl_job || !h->ctl_name))
			rc = -ENOMEM;
		if (rc < 0)
			goto fail;
		*fh = (uint64_t)(uintptr_t)h;
		return 0;
	}
	if (p.type != P_INNER) {
		rc = p.type == P_NONE ? -ENOENT : -EISDIR;
		goto fail;
	}
	if (wants_write) {
		rc = refuse_write(fs, &p);
		if (rc < 0)
			goto fail;
	}
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	ws = p.own ? find_wslot(fs, &p) : NULL;
	es = find_slot(c, p.rel, NULL);
	if (!ws && (!es || es->e->is_dir)) {
		rc = (es || is_dir_in(fs, c, &p)) ? -EISDIR : -ENOENT;
		goto out;
	}
	if (ws) {
		/* Share the open writer: this mount sees its own writes. */
		ws->opens++;
		h->type = H_WRITER;
		h->ws = ws;
		h->write_access = wants_write;
		if (flags & O_TRUNC)
			rc = writer_truncate(ws->w, 0);
	} else if (wants_write) {
		rc = new_wslot(fs, &p, c, es->e->mode,
			       (flags & O_TRUNC) ? NULL : es->e, &ws);
		if (rc == 0) {
			if (flags & O_TRUNC)
				writer_set_mode(ws->w, es->e->mode);
			ws->opens = 1;
			h->type = H_WRITER;
			h->ws = ws;
			h->write_access = 1;
		}
	} else {
		rc = entry_copy(es->e, &h->ent);
		h->type = H_ENTRY;
		/* Committed files are immutable: the kernel may keep their
		 * pages (the FUSE layer's auto_cache drops them when size or
		 * mtime change). */
		*keep_cache = 1;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto fail;
	*fh = (uint64_t)(uintptr_t)h;
	return 0;
fail:
	entry_release(&h->ent);
	buf_release(&h->content);
	free(h->ctl_job);
	free(h->ctl_name);
	free(h);
	return rc;
}

struct prefetch {
	struct chunks *chunks;
	struct chunk_ref ref;
	size_t len;
};

static void prefetch_run(void *arg)
{
	struct prefetch *pf = arg;
	const struct chunk_data *d;

	if (chunks_get(pf->chunks, &pf->ref, pf->len, &d) == 0)
		chunks_put(pf->chunks, d);
	free(pf);
}

static size_t chunk_len(const struct entry *e, size_t i)
{
	uint64_t off = (uint64_t)i * e->chunk_size;

	return e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
}

/* Sequential access: decode the next chunks in the background. */
static void read_ahead(struct ckfs *fs, struct handle *h, size_t i)
{
	size_t k;

	if ((long)i == h->last_chunk || !fs->pool)
		return;
	if ((long)i != h->last_chunk + 1) {
		h->last_chunk = (long)i;
		return;
	}
	h->last_chunk = (long)i;
	for (k = i + 1; k <= i + (size_t)fs->readahead && k < h->ent.n_chunks; k++) {
		struct prefetch *pf = malloc(sizeof(*pf));

		if (!pf)
			return;
		pf->chunks = fs->chunks;
		pf->ref = h->ent.chunks[k];
		pf->len = chunk_len(&h->ent, k);
		if (pool_submit(fs->pool, prefetch_run, pf) < 0)
			free(pf);
	}
}

long fs_read(struct ckfs *fs, uint64_t fh, char *buf, size_t size, uint64_t off)
{
	struct handle *h = to_handle(fh);
	const struct entry *e = &h->ent;
	size_t done = 0;

	if (h->type == H_WRITER)
		return writer_read(h->ws->w, buf, size, off);
	if (h->type == H_CONTENT || h->type == H_DEPLOY || h->type == H_HOTLOAD) {
		if (off >= h->content.len)
			return 0;
		if (size > h->content.len - off)
			size = (size_t)(h->content.len - off);
		memcpy(buf, h->content.data + off, size);
		return (long)size;
	}
	if (off >= e->size)
		return 0;
	if (size > e->size - off)
		size = (size_t)(e->size - off);
	while (done < size) {
		uint64_t pos = off + done;
		size_t i = (size_t)(pos / e->chunk_size), in = (size_t)(pos % e->chunk_size);
		size_t clen = chunk_len(e, i), n = clen - in;
		const struct chunk_data *d;
		int rc;

		if (n > size - done)
			n = size - done;
		read_ahead(fs, h, i);
		rc = chunks_get(fs->chunks, &e->chunks[i], clen, &d);
		if (rc < 0)
			return rc;	/* never short: the kernel takes that as EOF */
		memcpy(buf + done, d->data + in, n);
		chunks_put(fs->chunks, d);
		done += n;
	}
	return (long)done;
}

long fs_write(struct ckfs *fs, uint64_t fh, const char *buf, size_t size, uint64_t off)
{
	struct handle *h = to_handle(fh);

	if (h->type == H_DEPLOY)
		return ctl_deploy_write(h, buf, size, off);
	if (h->type == H_HOTLOAD) {
		if (!h->write_access)
			return -EBADF;
		return ctl_hotload_write(fs, h, buf, size);
	}
	if (h->type != H_WRITER || !h->write_access)
		return -EBADF;
	return writer_write(h->ws->w, buf, size, off);
}

/* Every base chunk @e reads still exists in the store? 0 or -EIO. */
static int check_base_chunks(struct ckfs *fs, const struct entry *e)
{
	const char *last = "";
	size_t i;

	for (i = 0; i < e->n_chunks; i++) {
		const char *k = e->chunks[i].base_key;
		struct store_stat sst;
		char key[128];

		if (!k[0] || !strcmp(k, last))
			continue;
		catalog_chunk_key(k, key, sizeof(key));
		if (store_head(fs->st, key, &sst) < 0)
			return -EIO;
		last = k;
	}
	return 0;
}

/*
 * Commit the file behind @ws: store its chunks, then its entry, then
 * publish it in the view. Lock order: writer, then fs.
 */
static int commit_slot(struct ckfs *fs, struct wslot *ws)
{
	struct entry e;
	struct ckpt *c;
	char base[256];
	int rc, base_gone = 0;

	writer_lock(ws->w);
	if (!writer_is_dirty(ws->w)) {
		writer_unlock(ws->w);
		return 0;
	}
	rc = writer_prepare_commit(ws->w, &e);
	if (rc < 0) {
		writer_unlock(ws->w);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	if (ws->unlinked) {
		rc = 0;		/* removed while open: nothing to publish */
		goto out;
	}
	c = find_ckpt(fs, ws->job, ws->dir, ws->ckpt);
	if (!c) {
		log_error("commit %s/%s: checkpoint is gone", ws->ckpt, ws->relpath);
		rc = -ENOENT;
		goto out;
	}
	e.path = strdup(ws->relpath);
	if (!e.path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = catalog_entry_put(fs->st, ws->job, ws->dir, ws->ckpt, &e);
	if (rc == 0 && c->rec.kind == KIND_DELTA && c->rec.base) {
		/* Copied: a refresh below replaces the strings c->rec holds. */
		snprintf(base, sizeof(base), "%s", c->rec.base);
		base_gone = !find_ckpt_fresh(fs, ws->job, ws->dir, base);
		c = find_ckpt(fs, ws->job, ws->dir, ws->ckpt);
		if (!c) {
			rc = -ENOENT;
			log_error("commit %s/%s: checkpoint is gone", ws->ckpt, ws->relpath);
		}
	}
	if (rc == 0 && base_gone) {
		/* The base checkpoint went away while this delta was written:
		 * nothing but our new entry names its chunks now, and a gc
		 * pass in between could have taken them. Check, now that the
		 * entry protects them, rather than commit a file that cannot
		 * be read. */
		rc = check_base_chunks(fs, &e);
		if (rc < 0) {
			log_error("commit %s/%s: the base checkpoint %s and its data were "
				  "deleted while this file was written (EIO)",
				  ws->ckpt, ws->relpath, base);
			catalog_entry_remove(fs->st, ws->job, ws->dir, ws->ckpt, ws->relpath);
		}
	}
	if (rc == 0) {
		struct entry *pub = calloc(1, sizeof(*pub));
		size_t idx;

		if (find_slot(c, ws->relpath, &idx))
			ckpt_remove_slot(c, idx);
		if (pub) {
			*pub = e;
			memset(&e, 0, sizeof(e));
			ckpt_add_slot(c, pub, NULL);
		}
		writer_mark_clean(ws->w);
	}
out:
	pthread_mutex_unlock(&fs->lock);
	writer_unlock(ws->w);
	if (rc < 0)
		log_error("commit %s/%s: %s", ws->ckpt, ws->relpath, strerror(-rc));
	entry_release(&e);
	return rc;
}

int fs_flush(struct ckfs *fs, uint64_t fh)
{
	struct handle *h = to_handle(fh);

	if (h->type == H_DEPLOY)
		return ctl_deploy_flush(fs, h);
	/* Closing a read-only descriptor commits nothing: another descriptor
	 * may still be writing. */
	if (h->type != H_WRITER || !h->write_access)
		return 0;
	return commit_slot(fs, h->ws);
}

int fs_fsync(struct ckfs *fs, uint64_t fh)
{
	return fs_flush(fs, fh);
}

void fs_release(struct ckfs *fs, uint64_t fh)
{
	struct handle *h = to_handle(fh);

	if (h->type == H_WRITER) {
		struct wslot *ws = h->ws;
		int last;

		/* Writes through a shared mmap can arrive after the last flush. */
		if (h->write_access && writer_is_dirty(ws->w) && commit_slot(fs, ws) < 0)
			log_error("release %s/%s: data written after close was not stored",
				  ws->ckpt, ws->relpath);
		pthread_mutex_lock(&fs->lock);
		last = --ws->opens == 0;
		if (last)
			free_wslot(fs, ws);
		pthread_mutex_unlock(&fs->lock);
	}
	if (h->type == H_DEPLOY)
		ctl_deploy_release(fs, h);
	entry_release(&h->ent);
	buf_release(&h->content);
	free(h->ctl_job);
	free(h->ctl_name);
	free(h);
}

int fs_fgetattr(struct ckfs *fs, uint64_t fh, struct stat *st)
{
	struct handle *h = to_handle(fh);

	(void)fs;
	switch (h->type) {
	case H_WRITER:
		fill_file(st, writer_mode(h->ws->w), writer_size(h->ws->w),
			  writer_mtime(h->ws->w));
		return 0;
	case H_ENTRY:
		fill_file(st, h->ent.mode, h->ent.size, h->ent.mtime_ns);
		return 0;
	default:
		fill_file(st, 0444, h->content.len, (int64_t)time(NULL) * 1000000000);
		return 0;
	}
}

/* ---------------------------------------------------------------- metadata */

/* Apply @fn to the committed entry at @p (not open for writing). Lock held. */
static int rewrite_entry(struct ckfs *fs, const struct fpath *p,
			 void (*fn)(struct entry *e, const void *arg), const void *arg)
{
	struct ckpt *c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	struct ent_slot *es;
	struct entry *copy;
	size_t idx;
	int rc;

	if (!c)
		return -ENOENT;
	es = find_slot(c, p->rel, &idx);
	if (!es)
		return is_dir_in(fs, c, p) ? 0 : -ENOENT;
	copy = calloc(1, sizeof(*copy));
	if (!copy || entry_copy(es->e, copy) < 0) {
		free(copy);
		return -ENOMEM;
	}
	fn(copy, arg);
	rc = catalog_entry_put(fs->st, p->job, p->dir, p->ckpt, copy);
	if (rc < 0) {
		entry_free(copy);
		return rc;
	}
	ckpt_remove_slot(c, idx);
	ckpt_add_slot(c, copy, NULL);
	return 0;
}

static void set_mtime(struct entry *e, const void *arg)
{
	e->mtime_ns = *(const int64_t *)arg;
}

static void set_mode(struct entry *e, const void *arg)
{
	e->mode = *(const uint32_t *)arg & 07777;
}

int fs_utimens(struct ckfs *fs, const char *path, const struct timespec tv[2])
{
	struct fpath p;
	struct wslot *ws;
	int64_t ns;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_INNER)
		return (p.type == P_CKPT || p.type == P_KINDDIR || p.type == P_ROOT) ? 0 : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	if (!tv || tv[1].tv_nsec == UTIME_NOW) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	} else if (tv[1].tv_nsec == UTIME_OMIT) {
		return 0;
	} else {
		ns = (int64_t)tv[1].tv_sec * 1000000000 + tv[1].tv_nsec;
	}
	pthread_mutex_lock(&fs->lock);
	ws = find_wslot(fs, &p);
	if (ws)
		writer_set_mtime(ws->w, ns);
	else
		rc = rewrite_entry(fs, &p, set_mtime, &ns);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_chmod(struct ckfs *fs, const char *path, mode_t mode)
{
	struct fpath p;
	struct wslot *ws;
	uint32_t m = mode & 07777;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_INNER)
		return p.type == P_CKPT ? 0 : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	ws = find_wslot(fs, &p);
	if (ws)
		writer_set_mode(ws->w, m);
	else
		rc = rewrite_entry(fs, &p, set_mode, &m);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_truncate(struct ckfs *fs, const char *path, uint64_t fh, uint64_t size)
{
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	struct ent_slot *es;
	int rc;

	if (fh) {
		struct handle *h = to_handle(fh);

		if (h->type == H_WRITER && h->write_access)
			return writer_truncate(h->ws->w, size);
		if ((h->type == H_DEPLOY || h->type == H_HOTLOAD) && h->write_access) {
			if (h->type == H_DEPLOY && size < h->content.len) {
				h->content.len = (size_t)size;
				h->dirty = 1;
			}
			return 0;
		}
		if (!path)
			return -EBADF;
	}
	rc = parse_path(fs, path, &p);
	if (rc < 0)
		return rc;
	if (p.type == P_HOTLOAD)
		return 0;	/* "echo > hotload" truncates first: nothing to do */
	if (p.type != P_INNER)
		return p.type == P_NONE ? -ENOENT : -EISDIR;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	ws = c ? find_wslot(fs, &p) : NULL;
	if (ws) {
		pthread_mutex_unlock(&fs->lock);
		return writer_truncate(ws->w, size);
	}
	es = c ? find_slot(c, p.rel, NULL) : NULL;
	if (!es || es->e->is_dir) {
		rc = es ? -EISDIR : -ENOENT;
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	/* Not open: rewrite through a temporary writer and commit at once. */
	rc = new_wslot(fs, &p, c, es->e->mode, size ? es->e : NULL, &ws);
	if (rc == 0)
		ws->opens = 1;
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		return rc;
	rc = writer_truncate(ws->w, size);
	if (rc == 0)
		rc = commit_slot(fs, ws);
	pthread_mutex_lock(&fs->lock);
	free_wslot(fs, ws);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_statfs(struct ckfs *fs, struct statvfs *sv)
{
	if (fs->statfs_path && statvfs(fs->statfs_path, sv) == 0) {
		sv->f_namemax = 255;
		return 0;
	}
	/* Object stores have no fixed capacity: report plenty. */
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 1 << 20;
	sv->f_blocks = sv->f_bfree = sv->f_bavail = 1ull << 30;
	sv->f_files = sv->f_ffree = sv->f_favail = 1ull << 30;
	sv->f_namemax = 255;
	return 0;
}

/*
 * `ln -s ../sampler/X models/ID` promotes. The target is read from its
 * end: ".../sampler/X" (this job) or ".../jobs/J/sampler/X" (job J);
 * anything else cannot be promoted.
 */
int fs_symlink(struct ckfs *fs, const char *target, const char *path)
{
	const char *c[64];
	size_t l[64];
	struct fpath p, src;
	int n, rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT || p.dir != CKPT_MODEL)
		return -EPERM;	/* symlinks exist only as promotions */
	if (fs->cfg.read_only)
		return -EROFS;
	n = split(target, c, l, 63);
	if (n < 2 || n > 63) {
		log_error("promote models/%s: cannot promote '%s' (EINVAL)", p.ckpt, target);
		return -EINVAL;
	}
	memset(&src, 0, sizeof(src));
	src.type = P_CKPT;
	if (l[n - 2] == 7 && !memcmp(c[n - 2], "sampler", 7)) {
		src.dir = CKPT_SAMPLER;
	} else if (l[n - 2] == 5 && !memcmp(c[n - 2], "state", 5)) {
		src.dir = CKPT_STATE;
	} else {
		log_error("promote models/%s: '%s' is not a checkpoint (EINVAL)", p.ckpt, target);
		return -EINVAL;
	}
	if (n >= 4 && l[n - 4] == 4 && !memcmp(c[n - 4], "jobs", 4))
		rc = copy_comp(src.job, sizeof(src.job), c[n - 3], l[n - 3]);
	else
		snprintf(src.job, sizeof(src.job), "%s", fs->job);
	if (rc == 0)
		rc = copy_comp(src.ckpt, sizeof(src.ckpt), c[n - 1], l[n - 1]);
	if (rc < 0)
		return -EINVAL;
	return promote(fs, &src, p.ckpt);
}

int fs_readlink(struct ckfs *fs, const char *path, char *buf, size_t size)
{
	struct fpath p;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT || p.dir != CKPT_MODEL || size == 0)
		return -EINVAL;
	snprintf(buf, size, "%s/%s", MODELS_PINNED, p.ckpt);
	return 0;
}

/* ---------------------------------------------------------------- xattrs */

static int promotable(const struct ckpt *c)
{
	return c->rec.dir == CKPT_SAMPLER;	/* any kind: deltas materialize */
}

static int xattr_value(struct ckfs *fs, const struct ckpt *c, const char *key,
		       char *out, size_t cap)
{
	int n;

	if (!strcmp(key, "kind"))
		n = snprintf(out, cap, "%s", ckpt_kind_name(c->rec.kind));
	else if (!strcmp(key, "base"))
		n = c->rec.base ? snprintf(out, cap, "%s", c->rec.base) : -ENODATA;
	else if (!strcmp(key, "snapshot"))
		n = snprintf(out, cap, "%s-%s", c->rec.name, c->rec.session);
	else if (!strcmp(key, "ttl"))
		n = c->attrs.ttl ? snprintf(out, cap, "%" PRId64, c->attrs.ttl) : -ENODATA;
	else if (!strcmp(key, "expires_at"))
		n = c->attrs.ttl ? snprintf(out, cap, "%.0f", c->rec.created + (double)c->attrs.ttl)
				 : -ENODATA;
	else if (!strcmp(key, "created"))
		n = snprintf(out, cap, "%.3f", c->rec.created);
	else if (!strcmp(key, "logical_bytes"))
		n = snprintf(out, cap, "%" PRIu64, ckpt_logical(c));
	else if (!strcmp(key, "stored_bytes"))
		n = snprintf(out, cap, "%" PRIu64, ckpt_stored(c));
	else if (!strcmp(key, "promoted_from"))
		n = c->rec.promoted_from ? snprintf(out, cap, "%s", c->rec.promoted_from) : -ENODATA;
	else if (!strcmp(key, "source_snapshot"))
		n = c->rec.source_snapshot ? snprintf(out, cap, "%s", c->rec.source_snapshot)
					   : -ENODATA;
	else if (!strcmp(key, "promotable"))
		n = snprintf(out, cap, "%s", promotable(c) ? "true" : "false");
	else
		n = -ENODATA;
	(void)fs;
	return n;
}

static const char *const xattr_names[] = {
	"kind", "base", "snapshot", "ttl", "expires_at", "created",
	"logical_bytes", "stored_bytes", "promotable", "promoted_from", "source_snapshot",
};

int fs_getxattr(struct ckfs *fs, const char *path, const char *name, char *value,
		size_t size)
{
	struct fpath p;
	struct ckpt *c;
	char tmp[512];
	int rc = parse_path(fs, path, &p), n;

	if (rc < 0)
		return rc;
	if (p.type == P_ROOT && !strcmp(name, XATTR_PREFIX "stats")) {
		struct store_cache_stats cs;

		/* What this mount fetched from a remote store (benchmarks and
		 * tests read it; a local store has no cache). */
		if (store_cache_stats(fs->st, &cs) == 0)
			n = snprintf(tmp, sizeof(tmp),
				     "{\"cache_hits\":%" PRIu64 ",\"cache_misses\":%" PRIu64
				     ",\"fetched_bytes\":%" PRIu64 ",\"cached_bytes\":%" PRIu64 "}",
				     cs.hits, cs.misses, cs.inner_bytes, cs.cached_bytes);
		else
			n = snprintf(tmp, sizeof(tmp), "{}");
		if (size == 0)
			return n;
		if ((size_t)n > size)
			return -ERANGE;
		memcpy(value, tmp, (size_t)n);
		return n;
	}
	if (p.type == P_DEPLOY) {
		n = ctl_deploy_getxattr(fs, p.ckpt, name, tmp, sizeof(tmp));
		if (n < 0 || size == 0)
			return n;
		if ((size_t)n > size)
			return -ERANGE;
		memcpy(value, tmp, (size_t)n);
		return n;
	}
	if (p.type != P_CKPT || strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
		return -ENODATA;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	n = c ? xattr_value(fs, c, name + strlen(XATTR_PREFIX), tmp, sizeof(tmp)) : -ENOENT;
	pthread_mutex_unlock(&fs->lock);
	if (n < 0)
		return n;
	if (size == 0)
		return n;
	if ((size_t)n > size)
		return -ERANGE;
	memcpy(value, tmp, (size_t)n);
	return n;
}

int fs_listxattr(struct ckfs *fs, const char *path, char *list, size_t size)
{
	struct fpath p;
	struct ckpt *c;
	struct buf b = BUF_INIT;
	char tmp[512];
	size_t i;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT)
		return 0;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	for (i = 0; c && i < sizeof(xattr_names) / sizeof(xattr_names[0]); i++) {
		if (xattr_value(fs, c, xattr_names[i], tmp, sizeof(tmp)) < 0)
			continue;
		buf_printf(&b, "%s%s", XATTR_PREFIX, xattr_names[i]);
		buf_append(&b, "", 1);
	}
	pthread_mutex_unlock(&fs->lock);
	if (!c)
		rc = -ENOENT;
	else if (size == 0)
		rc = (int)b.len;
	else if (b.len > size)
		rc = -ERANGE;
	else {
		memcpy(list, b.data, b.len);
		rc = (int)b.len;
	}
	buf_release(&b);
	return rc;
}

/* Set the kind of an empty checkpoint. Lock held. */
static int set_kind(struct ckfs *fs, struct ckpt *c, const char *val)
{
	struct ckpt_record r;
	struct view *v;
	enum ckpt_kind k;
	int rc;

	if (ckpt_kind_parse(val, &k) < 0 || k == KIND_STATE)
		return -EINVAL;
	if (c->rec.dir == CKPT_STATE)
		return -EINVAL;
	if (c->rec.kind == k && k != KIND_DELTA)
		return 0;
	if (c->n_ents || ckpt_has_writers(fs, c->rec.job, c->rec.dir, c->rec.name)) {
		log_error("setxattr kind on %s: checkpoint already holds files", c->rec.name);
		return -EBUSY;
	}
	r = c->rec;
	r.base = NULL;
	r.kind = k;
	if (k == KIND_DELTA) {
		struct ckpt *b;

		/* No refresh here: r holds c's strings, which a refresh replaces. */
		for (v = fs->views; v; v = v->next)
			if (v->dir == c->rec.dir && !strcmp(v->job, c->rec.job))
				break;
		b = v ? latest_of_kind(v, KIND_BASE) : NULL;
		if (!b || b == c) {
			log_error("setxattr kind=delta on %s: the job has no base", c->rec.name);
			return -EINVAL;
		}
		r.base = b->rec.name;
	}
	rc = catalog_record_replace(fs->st, &r);
	if (rc < 0)
		return rc;
	free(c->rec.base);
	c->rec.kind = k;
	c->rec.base = r.base ? strdup(r.base) : NULL;
	memset(&c->rec_st, 0, sizeof(c->rec_st));
	return 0;
}

static int parse_ttl(const char *value, size_t size, int64_t *out)
{
	char tmp[32], *end;
	long long v;

	if (size == 0 || size >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, value, size);
	tmp[size] = '\0';
	while (size > 0 && (tmp[size - 1] == '\n' || tmp[size - 1] == ' '))
		tmp[--size] = '\0';
	errno = 0;
	v = strtoll(tmp, &end, 10);
	if (errno || *end || end == tmp || v < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

int fs_setxattr(struct ckfs *fs, const char *path, const char *name,
		const char *value, size_t size, int flags)
{
	struct fpath p;
	struct ckpt *c;
	const char *key;
	int rc = parse_path(fs, path, &p);

	(void)flags;
	if (rc < 0)
		return rc;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
		return -ENOTSUP;	/* we keep no arbitrary xattrs */
	if (p.type != P_CKPT)
		return -ENOTSUP;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	key = name + strlen(XATTR_PREFIX);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
	} else if (!strcmp(key, "kind")) {
		char val[16];

		if (size == 0 || size >= sizeof(val)) {
			rc = -EINVAL;
		} else {
			memcpy(val, value, size);
			val[size] = '\0';
			if (val[size - 1] == '\n')
				val[size - 1] = '\0';
			rc = set_kind(fs, c, val);
		}
	} else if (!strcmp(key, "ttl")) {
		struct ckpt_attrs a = c->attrs;

		rc = parse_ttl(value, size, &a.ttl);
		if (rc == 0)
			rc = catalog_attrs_put(fs->st, p.job, p.dir, p.ckpt, &a);
		if (rc == 0) {
			c->attrs = a;
			memset(&c->attrs_st, 0, sizeof(c->attrs_st));
		}
	} else {
		int known = 0;
		size_t i;

		for (i = 0; i < sizeof(xattr_names) / sizeof(xattr_names[0]); i++)
			known |= !strcmp(key, xattr_names[i]);
		rc = known ? -EPERM : -ENOTSUP;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_removexattr(struct ckfs *fs, const char *path, const char *name)
{
	struct fpath p;
	struct ckpt *c;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT || strcmp(name, XATTR_PREFIX "ttl"))
		return strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) ? -ENOTSUP : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = -ENOENT;
	} else if (!c->attrs.ttl) {
		rc = -ENODATA;
	} else {
		struct ckpt_attrs a = c->attrs;

		a.ttl = 0;
		rc = catalog_attrs_put(fs->st, p.job, p.dir, p.ckpt, &a);
		if (rc == 0) {
			c->attrs = a;
			memset(&c->attrs_st, 0, sizeof(c->attrs_st));
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* ---------------------------------------------------------------- jsonl */

/* One JSON object per live checkpoint of this job. Lock held. */
static int jsonl_build(struct ckfs *fs, struct buf *out)
{
	static const enum ckpt_dir dirs[] = { CKPT_SAMPLER, CKPT_STATE };
	double now = wall_now();
	size_t d, i;
	int rc = 0;

	for (d = 0; d < 2 && rc == 0; d++) {
		struct view *v = get_view(fs, fs->job, dirs[d]);

		if (!v)
			return -EIO;
		for (i = 0; i < v->n && rc == 0; i++) {
			const struct ckpt *c = v->ckpts[i];
			cJSON *o;
			char snap[600], path[600], *s;

			if (ckpt_is_expired(c, now))
				continue;
			o = cJSON_CreateObject();
			if (!o)
				return -ENOMEM;
			snprintf(snap, sizeof(snap), "%s-%s", c->rec.name, c->rec.session);
			snprintf(path, sizeof(path), "%s/%s", ckpt_dir_name(c->rec.dir), c->rec.name);
			cJSON_AddStringToObject(o, "name", c->rec.name);
			cJSON_AddStringToObject(o, "dir", ckpt_dir_name(c->rec.dir));
			cJSON_AddStringToObject(o, "snapshot", snap);
			cJSON_AddStringToObject(o, "kind", ckpt_kind_name(c->rec.kind));
			if (c->rec.base)
				cJSON_AddStringToObject(o, "base", c->rec.base);
			else
				cJSON_AddNullToObject(o, "base");
			cJSON_AddNumberToObject(o, "created", c->rec.created);
			if (c->attrs.ttl)
				cJSON_AddNumberToObject(o, "expires_at",
							c->rec.created + (double)c->attrs.ttl);
			else
				cJSON_AddNullToObject(o, "expires_at");
			cJSON_AddNumberToObject(o, "logical_bytes", (double)ckpt_logical(c));
			cJSON_AddNumberToObject(o, "stored_bytes", (double)ckpt_stored(c));
			cJSON_AddBoolToObject(o, "promotable", promotable(c));
			cJSON_AddStringToObject(o, "path", path);
			s = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			if (!s)
				return -ENOMEM;
			rc = buf_append_str(out, s);
			if (rc == 0)
				rc = buf_append(out, "\n", 1);
			free(s);
		}
	}
	return rc;
}

/* ---------------------------------------------------------------- setup */

/*
 * The daemon's periodic gc: the same pass as `ckptfs gc`, safe alongside
 * writers on any mount (see catalog/gc.h). Runs without fs->lock.
 */
static void *gc_main(void *arg)
{
	struct ckfs *fs = arg;

	pthread_mutex_lock(&fs->lock);
	while (!fs->gc_stop) {
		struct timespec until;
		struct gc_report r;
		int rc;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)fs->cfg.gc_interval;
		until.tv_nsec += (long)((fs->cfg.gc_interval - (double)(time_t)fs->cfg.gc_interval) * 1e9);
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!fs->gc_stop &&
		       pthread_cond_timedwait(&fs->gc_cond, &fs->lock, &until) != ETIMEDOUT)
			;
		if (fs->gc_stop)
			break;
		pthread_mutex_unlock(&fs->lock);
		rc = gc_run(fs->st, fs->cfg.gc_grace, 0, wall_now(), &r);
		if (rc < 0)
			log_error("gc: %s", strerror(-rc));
		else if (r.expired || r.deleted)
			log_info("gc: %" PRIu64 " expired checkpoints removed, %" PRIu64
				 " chunks (%" PRIu64 " bytes) reclaimed", r.expired, r.deleted,
				 r.deleted_bytes);
		pthread_mutex_lock(&fs->lock);
		/* Expired checkpoints are gone from the store now. */
		{
			struct view *v;

			for (v = fs->views; v; v = v->next)
				v->refreshed = 0;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

void fs_config_defaults(struct fs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->job = "default";
	cfg->chunk_size = 4u << 20;
	cfg->cache_bytes = 256ull << 20;
	cfg->list_ttl = 1.0;
	cfg->delta_policy = DELTA_AUTO;
	cfg->delta_max_ratio = 0.5;
	cfg->gc_interval = 600;
	cfg->gc_grace = 3600;
}

const char *fs_session(const struct ckfs *fs)
{
	return fs->session;
}

int fs_new(struct store *st, const struct fs_config *cfg, struct ckfs **out)
{
	struct ckfs *fs;
	uint32_t rnd = 0;
	const char *tmp;
	long ncpu;
	int rc;

	rc = name_check_component(cfg->job);
	if (rc == 0) {
		char *enc = name_key_encode(cfg->job);

		if (!enc || strlen(enc) > NAME_KEY_MAX)
			rc = -ENAMETOOLONG;
		free(enc);
	}
	if (rc < 0) {
		log_error("job name '%s' is not valid (%s)", cfg->job, strerror(-rc));
		return rc;
	}
	if (cfg->chunk_size < 4096 || cfg->chunk_size > CODEC_CHUNK_MAX) {
		log_error("chunk size %u out of range", cfg->chunk_size);
		return -EINVAL;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->st = st;
	fs->cfg = *cfg;
	pthread_mutex_init(&fs->lock, NULL);
	fs->job = strdup(cfg->job);
	tmp = cfg->spool_dir ? cfg->spool_dir : getenv("TMPDIR");
	fs->spool_dir = strdup(tmp ? tmp : "/var/tmp");
	fs->statfs_path = cfg->statfs_path ? strdup(cfg->statfs_path) : NULL;
	fs->cfg.job = fs->job;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	snprintf(fs->session, sizeof(fs->session), "%08x", rnd);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu <= 0)
		ncpu = 2;
	/* Workers encode (CPU) and put chunks (I/O: an fsync locally, a PUT
	 * remotely); while some wait on I/O, others keep the CPUs busy.
	 * Measured on 2 cores: 3 per CPU beats 1 per CPU by ~15% locally. */
	fs->n_threads = cfg->threads > 0 ? cfg->threads : (int)(3 * ncpu);
	/* Chunks decoded ahead of a sequential reader: two hide decoding
	 * locally; a remote store also has a round trip per chunk to hide. */
	fs->readahead = strcmp(st->ops->name, "local") ? fs->n_threads : 2;
	fs->chunks = chunks_new(st, cfg->cache_bytes);
	if (!fs->job || !fs->spool_dir || !fs->chunks) {
		fs_free(fs);
		return -ENOMEM;
	}
	fs->wenv = (struct writer_env){
		.chunks = fs->chunks,
		.chunk_size = cfg->chunk_size,
		.spool_dir = fs->spool_dir,
		.max_inflight = fs->n_threads + 1,
	};
	pthread_cond_init(&fs->gc_cond, NULL);
	rc = catalog_init_store(st);
	if (rc < 0) {
		fs_free(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

int fs_start(struct ckfs *fs)
{
	if (fs->pool)
		return 0;
	fs->pool = pool_new(fs->n_threads);
	if (!fs->pool)
		return -ENOMEM;
	fs->wenv.pool = fs->pool;
	if (fs->cfg.gc_interval > 0 && !fs->cfg.read_only) {
		if (pthread_create(&fs->gc_thread, NULL, gc_main, fs) == 0)
			fs->gc_running = 1;
		else
			log_warn("gc thread did not start; run `ckptfs gc` instead");
	}
	return 0;
}

void fs_free(struct ckfs *fs)
{
	struct view *v, *vn;

	if (!fs)
		return;
	if (fs->gc_running) {
		pthread_mutex_lock(&fs->lock);
		fs->gc_stop = 1;
		pthread_cond_broadcast(&fs->gc_cond);
		pthread_mutex_unlock(&fs->lock);
		pthread_join(fs->gc_thread, NULL);
	}
	while (fs->wslots)
		free_wslot(fs, fs->wslots);
	ctl_free(fs);
	pool_free(fs->pool);
	chunks_free(fs->chunks);
	for (v = fs->views; v; v = vn) {
		vn = v->next;
		view_free(v);
	}
	pthread_mutex_destroy(&fs->lock);
	free(fs->job);
	free(fs->spool_dir);
	free(fs->statfs_path);
	free(fs);
}
