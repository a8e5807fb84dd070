/*
 * tree.c: the mount tree: getattr, readdir, mkdir, rmdir, unlink, rename,
 * utimens, chmod, statfs.
 */
#include "fs/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
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
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/name.h"
#include "fs/fs_local.h"

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

void fill_file(struct stat *st, mode_t perm, uint64_t size, int64_t mtime_ns)
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

/*
 * Directories the mount owner may change: the own job's, and models/
 * (`ln -s` and `rm -r` there promote and unpromote). With allow_other the
 * kernel checks these modes (default_permissions), so they must allow
 * the owner exactly what the operations allow, and others nothing more.
 */
static int may_change(const struct ckfs *fs, const struct fpath *p)
{
	return !fs->cfg.read_only && (p->own || p->dir == CKPT_MODEL);
}

/* A directory's reported mode: as stored (chmod, mkdir -m), else 0755;
 * without write bits where nothing may change. */
static mode_t stored_dir_perm(const struct ckfs *fs, const struct fpath *p, uint32_t stored)
{
	mode_t m = stored ? (mode_t)(stored & 07777) : 0755;

	return may_change(fs, p) ? m : (m & ~(mode_t)0222);
}

uint64_t fpath_ino(const struct fpath *p)
{
	char buf[sizeof(p->job) + sizeof(p->ckpt) + sizeof(p->rel) + 8];
	enum ptype t = p->type == P_HOTLOAD ? P_INNER : p->type;
	int n;
	uint64_t ino;

	/* models/.pinned/ID is models/ID; snapshot aliases were resolved to
	 * the real name by parse_path(). */
	if (t == P_PINNED)
		t = P_KINDDIR;
	n = snprintf(buf, sizeof(buf), "%d%c%s%c%d%c%s%c%s", (int)t, 0, p->job, 0,
		     (int)p->dir, 0, p->ckpt, 0, p->rel);
	if (n < 0)
		n = 0;
	ino = hash_xxh3(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf));
	/* 0 is no inode, 1 is libfuse's root id, 0xffffffff its "unknown". */
	if (ino < 2 || ino == 0xffffffffu)
		ino += 2;
	return ino;
}

uint64_t ckpt_logical(const struct ckpt *c)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < c->n_ents; i++)
		n += c->ents[i].e->size;
	return n;
}

uint64_t ckpt_stored(const struct ckpt *c)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < c->n_ents; i++)
		n += entry_stored_bytes(c->ents[i].e);
	return n;
}

int ckpt_figures(const struct ckpt *c, struct ckpt_figures *f)
{
	uint64_t chunks = 0, zero = 0;
	size_t i, k;
	int known = 1;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < c->n_ents; i++) {
		const struct entry *e = c->ents[i].e;

		if (e->is_dir)
			continue;
		f->commit_s += e->commit_s;
		known &= e->commit_s > 0;
		for (k = 0; k < e->n_chunks; k++, chunks++)
			zero += !e->chunks[k].key[0];
	}
	f->logical = ckpt_logical(c);
	f->stored = ckpt_stored(c);
	f->ratio = f->logical ? (double)f->stored / (double)f->logical : -1;
	f->zero_fraction = c->rec.kind == KIND_DELTA && chunks ? (double)zero / (double)chunks : -1;
	if (!known || f->commit_s <= 0)
		f->commit_s = -1;
	return 0;
}


static int getattr_path(struct ckfs *fs, const struct fpath *pp, struct stat *st);

int fs_getattr(struct ckfs *fs, const char *path, struct stat *st)
{
	struct fpath p;
	int rc;

	if (ghost_is_hidden(path))
		return ghost_getattr(fs, path, st);
	rc = parse_path(fs, path, &p);
	if (rc == 0)
		rc = getattr_path(fs, &p, st);
	if (rc == 0)
		st->st_ino = (ino_t)fpath_ino(&p);
	return rc;
}

static int getattr_path(struct ckfs *fs, const struct fpath *pp, struct stat *st)
{
	const struct fpath p = *pp;
	struct ckpt *c;
	struct wslot *ws;
	struct ent_slot *es;
	time_t now = time(NULL);
	int rc = 0;

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

		rc = jsonl_build(fs, &b);
		fill_file(st, 0444, b.len, (int64_t)now * 1000000000);
		buf_release(&b);
		return rc;
	}
	case P_STATS: {
		struct buf b = BUF_INIT;

		rc = metrics_render(&b);
		fill_file(st, 0444, b.len, (int64_t)now * 1000000000);
		buf_release(&b);
		return rc;
	}
	case P_JOB:
		fill_dir(st, dir_perm(fs, p.own), now);
		return 0;
	case P_KINDDIR:
		fill_dir(st, dir_perm(fs, may_change(fs, &p)), now);
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
		rc = lookup_errno(fs, p.job, p.dir);
		goto out;
	}
	if (p.type == P_CKPT) {
		fill_dir(st, stored_dir_perm(fs, &p, c->attrs.mode), (time_t)c->rec.created);
		if (c->attrs.mtime_ns) {
			st->st_mtim.tv_sec = c->attrs.mtime_ns / 1000000000;
			st->st_mtim.tv_nsec = c->attrs.mtime_ns % 1000000000;
			st->st_ctim = st->st_atim = st->st_mtim;
		}
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
	} else if (es) {
		fill_dir(st, stored_dir_perm(fs, &p, es->e->mode), 0);
		st->st_mtim.tv_sec = es->e->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = es->e->mtime_ns % 1000000000;
		st->st_ctim = st->st_atim = st->st_mtim;
	} else if (is_dir_in(fs, c, &p)) {
		fill_dir(st, stored_dir_perm(fs, &p, 0), (time_t)c->rec.created);
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

/* The inode number of @name listed in the directory @p (@path). */
static uint64_t child_ino(struct ckfs *fs, const struct fpath *p, const char *path,
			  const char *name)
{
	struct fpath cp;
	char *full;

	cp = *p;
	if (p->type == P_KINDDIR || p->type == P_PINNED) {
		cp.type = P_CKPT;
		snprintf(cp.ckpt, sizeof(cp.ckpt), "%s", name);
		cp.rel[0] = '\0';
		return fpath_ino(&cp);
	}
	if (p->type == P_CKPT || p->type == P_INNER) {
		cp.type = P_INNER;
		if ((size_t)snprintf(cp.rel, sizeof(cp.rel), "%s%s%s", p->rel,
				     p->rel[0] ? "/" : "", name) >= sizeof(cp.rel))
			return 0;
		return fpath_ino(&cp);
	}
	if (asprintf(&full, "%s/%s", strcmp(path, "/") ? path : "", name) < 0)
		return 0;
	if (parse_path(fs, full, &cp) < 0) {
		free(full);
		return 0;
	}
	free(full);
	return fpath_ino(&cp);
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
	/* Store listings of their own: not under fs->lock. */
	if (p.type == P_DEPLOYMENTS || p.type == P_JOBS) {
		if (p.type == P_DEPLOYMENTS) {
			rc = ctl_deploy_readdir(fs, deploy_cb, &ns);
		} else {
			names_add(&ns, fs->job, strlen(fs->job));
			rc = catalog_list_jobs(fs->st, job_cb, &ns);
		}
		goto fill;
	}
	pthread_mutex_lock(&fs->lock);
	switch (p.type) {
	case P_ROOT:
		for (i = 0; i < 6; i++) {
			static const char *const top[] = { "sampler", "state", "models",
				"deployments", "jobs", "checkpoints.jsonl" };
			names_add(&ns, top[i], strlen(top[i]));
		}
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
			rc = lookup_errno(fs, p.job, p.dir);
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
			rc = lookup_errno(fs, p.job, p.dir);
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
fill:
	if (rc == 0) {
		fill(arg, ".", NULL);
		fill(arg, "..", NULL);
		for (i = 0; i < ns.n; i++) {
			struct stat cst;

			/* d_ino must be what stat() reports (find, tar, rm -r). */
			memset(&cst, 0, sizeof(cst));
			cst.st_ino = (ino_t)child_ino(fs, &p, path, ns.v[i]);
			if (fill(arg, ns.v[i], cst.st_ino ? &cst : NULL))
				break;
		}
	}
	names_release(&ns);
	return rc;
}


/* ---------------------------------------------------------------- mkdir etc */

static int rewrite_ckpt_attrs(struct ckfs *fs, const struct fpath *p,
			      void (*fn)(struct ckpt_attrs *a, const void *arg), const void *arg);
static void set_ckpt_mode(struct ckpt_attrs *a, const void *arg);

int fs_mkdir(struct ckfs *fs, const char *path, mode_t mode)
{
	struct fpath p;
	struct ckpt *c;
	int rc = parse_path(fs, path, &p), store_rc = 0;

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT && p.type != P_INNER)
		return p.type == P_HOTLOAD ? -EEXIST : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	if (p.type == P_CKPT) {
		uint32_t m = mode & 07777;

		rc = create_ckpt(fs, &p);
		/* `mkdir -m`: a mode other than the default is kept. */
		if (rc == 0 && m != 0755) {
			pthread_mutex_lock(&fs->lock);
			rc = rewrite_ckpt_attrs(fs, &p, set_ckpt_mode, &m);
			pthread_mutex_unlock(&fs->lock);
		}
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	rc = turn_begin(fs, "mkdir", path);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
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
		pthread_mutex_unlock(&fs->lock);
		rc = store_rc = catalog_entry_put(fs->st, p.job, p.dir, p.ckpt, &e);
		pthread_mutex_lock(&fs->lock);
		c = find_ckpt(fs, p.job, p.dir, p.ckpt);
		if (rc == 0 && c && copy && entry_copy(&e, copy) == 0) {
			ckpt_add_slot(c, copy, NULL);
			copy = NULL;
		}
		free(copy);
	}
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/*
 * rmdir, or with @whole_model the removal of a promoted model with what it
 * holds (the unlink of the symlink `ln -s` made, see fs_unpromote).
 */
static int remove_dir(struct ckfs *fs, const char *path, bool whole_model)
{
	struct fpath p;
	struct ckpt *c;
	size_t idx, i;
	int rc = parse_path(fs, path, &p), store_rc = 0;

	if (rc < 0)
		return rc;
	if (whole_model && (p.type != P_CKPT || p.dir != CKPT_MODEL))
		return p.type == P_NONE ? -ENOENT : -EISDIR;
	if (p.type != P_CKPT && p.type != P_INNER)
		return p.type == P_NONE ? -ENOENT : -EPERM;
	rc = refuse_remove(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	rc = turn_begin(fs, "rmdir", path);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
		goto out;
	}
	if (p.type == P_CKPT) {
		struct view *v;

		if ((c->n_ents && !whole_model) || ckpt_has_writers(fs, p.job, p.dir, p.ckpt)) {
			rc = -ENOTEMPTY;
			goto out;
		}
		pthread_mutex_unlock(&fs->lock);
		rc = store_rc = catalog_ckpt_remove(fs->st, p.job, p.dir, p.ckpt);
		pthread_mutex_lock(&fs->lock);
		v = get_view(fs, p.job, p.dir);
		c = v ? view_find_any(v, p.ckpt) : NULL;
		if (rc == 0 && c)
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
	pthread_mutex_unlock(&fs->lock);
	rc = store_rc = catalog_entry_remove(fs->st, p.job, p.dir, p.ckpt, p.rel);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (rc == 0 && c && find_slot(c, p.rel, &idx))
		ckpt_remove_slot(c, idx);
out:
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_rmdir(struct ckfs *fs, const char *path)
{
	return remove_dir(fs, path, false);
}

int fs_unpromote(struct ckfs *fs, const char *path)
{
	return remove_dir(fs, path, true);
}

int fs_unlink(struct ckfs *fs, const char *path)
{
	struct fpath p;
	struct ckpt *c;
	struct wslot *ws;
	size_t idx;
	int rc, store_rc = 0;

	if (ghost_is_hidden(path) && ghost_unlink(fs, path) == 0)
		return 0;
	rc = parse_path(fs, path, &p);
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
	rc = turn_begin(fs, "unlink", path);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
		ws = NULL;
		goto out;
	}
	ws = find_wslot(fs, &p);
	if (ws)
		wslot_ref(ws);	/* its handles may close while the store works */
	if (find_slot(c, p.rel, &idx)) {
		if (c->ents[idx].e->is_dir) {
			rc = -EISDIR;
			goto out;
		}
		pthread_mutex_unlock(&fs->lock);
		rc = store_rc = catalog_entry_remove(fs->st, p.job, p.dir, p.ckpt, p.rel);
		pthread_mutex_lock(&fs->lock);
		c = find_ckpt(fs, p.job, p.dir, p.ckpt);
		if (rc == 0 && c && find_slot(c, p.rel, &idx))
			ckpt_remove_slot(c, idx);
	} else if (!ws) {
		rc = is_dir_in(fs, c, &p) ? -EISDIR : -ENOENT;
	}
	if (rc == 0 && ws)
		ws->unlinked = 1;	/* open handles keep working, nothing commits */
out:
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	if (ws)
		wslot_unref(fs, ws);
	return rc;
}


/* ---------------------------------------------------------------- rename */

/* One committed entry a rename moves: a copy under its new path. */
struct move {
	char *oldrel;
	struct entry *moved;
};

static void moves_free(struct move *mv, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(mv[i].oldrel);
		entry_free(mv[i].moved);
	}
	free(mv);
}

/* Lock held: copies of every committed entry at or under @from, renamed
 * to @to. 0 or -errno. */
static int collect_moves(struct ckpt *c, const char *from, const char *to,
			 struct move **out, size_t *n_out)
{
	size_t alen = strlen(from), i, n = 0;
	struct move *mv = calloc(c->n_ents ? c->n_ents : 1, sizeof(*mv));

	if (!mv)
		return -ENOMEM;
	for (i = 0; i < c->n_ents; i++) {
		const char *path = c->ents[i].e->path;
		char newrel[4096];
		struct move *m;

		if (strcmp(path, from) && !is_under(path, from))
			continue;
		if (snprintf(newrel, sizeof(newrel), "%s%s", to, path + alen) >=
		    (int)sizeof(newrel)) {
			moves_free(mv, n);
			return -ENAMETOOLONG;
		}
		m = &mv[n++];
		m->oldrel = strdup(path);
		m->moved = calloc(1, sizeof(*m->moved));
		if (!m->oldrel || !m->moved || entry_copy(c->ents[i].e, m->moved) < 0) {
			moves_free(mv, n);
			return -ENOMEM;
		}
		free(m->moved->path);
		m->moved->path = strdup(newrel);
		if (!m->moved->path) {
			moves_free(mv, n);
			return -ENOMEM;
		}
	}
	*out = mv;
	*n_out = n;
	return 0;
}

/* Lock held: publish a stored move in the view. */
static void apply_move(struct ckpt *c, struct move *m)
{
	size_t idx;

	if (find_slot(c, m->moved->path, &idx))
		ckpt_remove_slot(c, idx);
	if (find_slot(c, m->oldrel, &idx))
		ckpt_remove_slot(c, idx);
	if (ckpt_add_slot(c, m->moved, NULL) == 0)
		m->moved = NULL;
}

int fs_rename(struct ckfs *fs, const char *from, const char *to, unsigned flags)
{
	struct fpath a, b;
	struct ckpt *c;
	struct wslot *ws, *s;
	struct move *mv = NULL;
	size_t idx, i, alen, n_mv = 0, done = 0;
	int rc, is_dir, to_exists, store_rc = 0;

	if (ghost_is_hidden(to) && !flags)
		return ghost_hide(fs, from, to);	/* an unlink of an open file */
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
			rc = turn_begin(fs, "rename", from);
			if (rc == 0) {
				struct view *v;
				struct ckpt *c0;

				pthread_mutex_unlock(&fs->lock);
				rc = store_rc = catalog_ckpt_remove(fs->st, a.job, a.dir, a.ckpt);
				pthread_mutex_lock(&fs->lock);
				v = get_view(fs, a.job, a.dir);
				c0 = v ? view_find_any(v, a.ckpt) : NULL;
				if (rc == 0 && c0)
					view_remove(v, c0);
				ns_end(fs, store_rc);
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
	rc = turn_begin(fs, "rename", from);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, a.job, a.dir, a.ckpt);
	if (!c) {
		rc = lookup_errno(fs, a.job, a.dir);
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
	}
	/* Every committed entry at or under a.rel: stored under the new name
	 * first, the old name removed second, so a crash in between leaves
	 * a file under both names, never under none. */
	rc = collect_moves(c, a.rel, b.rel, &mv, &n_mv);
	if (rc < 0)
		goto out;
	pthread_mutex_unlock(&fs->lock);
	for (done = 0; done < n_mv; done++) {
		rc = catalog_entry_put(fs->st, a.job, a.dir, a.ckpt, mv[done].moved);
		if (rc == 0)
			rc = catalog_entry_remove(fs->st, a.job, a.dir, a.ckpt, mv[done].oldrel);
		if (rc < 0)
			break;
	}
	store_rc = rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, a.job, a.dir, a.ckpt);
	for (i = 0; c && i < done; i++)
		apply_move(c, &mv[i]);
	if (rc < 0)
		goto out;
	/* Then open writers: a replaced one commits nowhere; the moved ones
	 * commit under their new names. */
	if ((s = find_wslot(fs, &b)) != NULL)
		s->unlinked = 1;
	alen = strlen(a.rel);
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
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	moves_free(mv, n_mv);
	return rc;
}


/* ---------------------------------------------------------------- metadata */

/*
 * Apply @fn to the committed entry at @p (not open for writing), in the
 * mutation turn, storing it without fs->lock. Lock held on entry and exit.
 */
static int rewrite_entry(struct ckfs *fs, const struct fpath *p,
			 void (*fn)(struct entry *e, const void *arg), const void *arg)
{
	struct ckpt *c;
	struct ent_slot *es;
	struct entry *copy;
	size_t idx;
	int rc = turn_begin(fs, "setattr", p->rel), store_rc = 0;

	if (rc < 0)
		return rc;
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (!c) {
		rc = lookup_errno(fs, p->job, p->dir);
		goto out;
	}
	es = find_slot(c, p->rel, &idx);
	if (!es && !is_dir_in(fs, c, p)) {
		rc = -ENOENT;
		goto out;
	}
	copy = calloc(1, sizeof(*copy));
	if (!copy) {
		rc = -ENOMEM;
		goto out;
	}
	if (es) {
		rc = entry_copy(es->e, copy);
	} else {
		/* A folder implied by its files has no entry: give it one, so
		 * its mode and times are kept like those of a mkdir'ed one. */
		copy->path = strdup(p->rel);
		copy->is_dir = 1;
		copy->mode = 0755;
		copy->mtime_ns = (int64_t)c->rec.created * 1000000000;
		rc = copy->path ? 0 : -ENOMEM;
	}
	if (rc < 0) {
		entry_free(copy);
		rc = -ENOMEM;
		goto out;
	}
	fn(copy, arg);
	pthread_mutex_unlock(&fs->lock);
	rc = store_rc = catalog_entry_put(fs->st, p->job, p->dir, p->ckpt, copy);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (rc < 0 || !c) {
		entry_free(copy);
		goto out;
	}
	if (find_slot(c, p->rel, &idx))
		ckpt_remove_slot(c, idx);
	if (ckpt_add_slot(c, copy, NULL) < 0)
		entry_free(copy);
out:
	ns_end(fs, store_rc);
	return rc;
}

/*
 * Apply @fn to the attributes of the checkpoint @p (its directory's mode
 * and mtime live there), in the mutation turn, storing them without
 * fs->lock. Lock held on entry and exit.
 */
static int rewrite_ckpt_attrs(struct ckfs *fs, const struct fpath *p,
			      void (*fn)(struct ckpt_attrs *a, const void *arg), const void *arg)
{
	struct ckpt *c;
	struct ckpt_attrs a;
	int rc = turn_begin(fs, "setattr", p->ckpt), store_rc = 0;

	if (rc < 0)
		return rc;
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (!c) {
		rc = lookup_errno(fs, p->job, p->dir);
		goto out;
	}
	a = c->attrs;
	fn(&a, arg);
	pthread_mutex_unlock(&fs->lock);
	rc = store_rc = catalog_attrs_put(fs->st, p->job, p->dir, p->ckpt, &a);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (rc == 0 && c) {
		c->attrs = a;
		memset(&c->attrs_st, 0, sizeof(c->attrs_st));	/* re-read at refresh */
		c->gen++;
	}
out:
	ns_end(fs, store_rc);
	return rc;
}

static void set_ckpt_mtime(struct ckpt_attrs *a, const void *arg)
{
	a->mtime_ns = *(const int64_t *)arg;
}

static void set_ckpt_mode(struct ckpt_attrs *a, const void *arg)
{
	a->mode = *(const uint32_t *)arg & 07777;
}

static void set_mtime(struct entry *e, const void *arg)
{
	e->mtime_ns = *(const int64_t *)arg;
}

static void set_mode(struct entry *e, const void *arg)
{
	e->mode = *(const uint32_t *)arg & 07777;
}

/*
 * An unchanged value leaves the writer as it is: `cp`/shutil.copy chmod the
 * file they just closed to the mode it has, and if that arrives before the
 * kernel's RELEASE of the descriptor, a dirty writer would commit the same
 * file a second time (test_metrics counted 3 delta commits for 2 files).
 */
static void writer_mtime_fn(struct writer *w, const void *arg)
{
	if (writer_mtime(w) != *(const int64_t *)arg)
		writer_set_mtime(w, *(const int64_t *)arg);
}

static void writer_mode_fn(struct writer *w, const void *arg)
{
	if ((writer_mode(w) & 07777) != (*(const uint32_t *)arg & 07777))
		writer_set_mode(w, *(const uint32_t *)arg);
}

/* One attribute (mtime or mode) wherever it lives: an open writer, the
 * checkpoint's attrs, or a committed entry. */
struct setter {
	void (*writer)(struct writer *w, const void *arg);
	void (*ckpt)(struct ckpt_attrs *a, const void *arg);
	void (*entry)(struct entry *e, const void *arg);
};

static const struct setter mtime_setter = { writer_mtime_fn, set_ckpt_mtime, set_mtime };
static const struct setter mode_setter = { writer_mode_fn, set_ckpt_mode, set_mode };

static int set_attr(struct ckfs *fs, const struct fpath *p, const struct setter *s,
		    const void *arg)
{
	struct wslot *ws;
	int rc = 0;

	pthread_mutex_lock(&fs->lock);
	ws = p->type == P_INNER ? find_wslot(fs, p) : NULL;
	if (ws)
		wslot_ref(ws);	/* the writer's lock is never taken under fs->lock */
	else if (p->type == P_CKPT)
		rc = rewrite_ckpt_attrs(fs, p, s->ckpt, arg);
	else
		rc = rewrite_entry(fs, p, s->entry, arg);
	pthread_mutex_unlock(&fs->lock);
	if (ws) {
		s->writer(ws->w, arg);
		wslot_unref(fs, ws);
	}
	return rc;
}

/*
 * The path chmod and utimens may change: a checkpoint or what it holds
 * (the mount tree's own directories have no stored modes or times), in a
 * checkpoint this mount may write.
 */
static int attr_target(struct ckfs *fs, const char *op, const char *path, struct fpath *p)
{
	int rc = parse_path(fs, path, p);

	if (rc < 0)
		return rc;
	if (p->type != P_INNER && p->type != P_CKPT) {
		log_warn("%s %s: only checkpoints and what they hold have modes and times (EPERM)",
			 op, path);
		return -EPERM;
	}
	return refuse_write(fs, p);
}

int fs_utimens(struct ckfs *fs, const char *path, const struct timespec tv[2])
{
	struct fpath p;
	int64_t ns;
	int rc = attr_target(fs, "utimens", path, &p);

	if (rc < 0)
		return rc;
	/* Only the mtime is kept; atime is reported equal to it (noatime). */
	if (!tv || tv[1].tv_nsec == UTIME_NOW) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	} else if (tv[1].tv_nsec == UTIME_OMIT) {
		return 0;
	} else {
		ns = (int64_t)tv[1].tv_sec * 1000000000 + tv[1].tv_nsec;
	}
	return set_attr(fs, &p, &mtime_setter, &ns);
}

int fs_chmod(struct ckfs *fs, const char *path, mode_t mode)
{
	struct fpath p;
	uint32_t m = mode & 07777;
	int rc = attr_target(fs, "chmod", path, &p);

	if (rc < 0)
		return rc;
	return set_attr(fs, &p, &mode_setter, &m);
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
