/* gc.c: TTL expiry and chunk mark-and-sweep (see gc.h for the safety rules). */
#include "catalog/gc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "util/log.h"

int keyset_add(struct keyset *s, const char *k)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		char **v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n] = strdup(k);
	return s->v[s->n++] ? 0 : -ENOMEM;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void keyset_sort(struct keyset *s)
{
	size_t i, o = 0;

	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), cmp_str);
	for (i = 0; i < s->n; i++) {	/* drop duplicates */
		if (o && !strcmp(s->v[o - 1], s->v[i]))
			free(s->v[i]);
		else
			s->v[o++] = s->v[i];
	}
	s->n = o;
}

int keyset_has(const struct keyset *s, const char *k)
{
	return s->n && bsearch(&k, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

void keyset_release(struct keyset *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

int gc_sweep_decision(const struct keyset *live, const char *key, int64_t mtime,
		      int64_t cutoff)
{
	const char *hex = strrchr(key, '/');

	hex = hex ? hex + 1 : key;
	if (keyset_has(live, hex))
		return 0;
	if (mtime > cutoff)
		return -1;
	return 1;
}

/* ---- walking every checkpoint of every job, and the models ---- */

struct walk {
	struct store *st;
	const char *job;
	enum ckpt_dir dir;
	double now;
	int expire;		/* remove expired checkpoints */
	int dry_run;
	struct keyset *live;
	struct gc_report *r;
	int rc;
};

static int mark_entry(struct entry *e, void *arg)
{
	struct walk *w = arg;
	size_t i;
	int rc = 0;

	for (i = 0; i < e->n_chunks && rc == 0; i++) {
		if (e->chunks[i].key[0])
			rc = keyset_add(w->live, e->chunks[i].key);
		if (rc == 0 && e->chunks[i].base_key[0])
			rc = keyset_add(w->live, e->chunks[i].base_key);
	}
	entry_free(e);
	return rc;
}

static int ckpt_cb(const char *name, void *arg)
{
	struct walk *w = arg;
	int rc;

	if (w->expire) {
		struct ckpt_record rec;
		struct ckpt_attrs a;

		rc = catalog_record_get(w->st, w->job, w->dir, name, &rec);
		if (rc == -ENOENT)
			return 0;
		if (rc < 0)
			return rc;
		rc = catalog_attrs_get(w->st, w->job, w->dir, name, &a);
		if (rc == 0 && a.ttl > 0 && rec.created + (double)a.ttl <= w->now) {
			log_info("gc: %s/%s/%s expired", w->job, ckpt_dir_name(w->dir), name);
			w->r->expired++;
			if (!w->dry_run)
				rc = catalog_ckpt_remove(w->st, w->job, w->dir, name);
			ckpt_record_release(&rec);
			return rc;
		}
		ckpt_record_release(&rec);
		if (rc < 0)
			return rc;
		return 0;
	}
	rc = catalog_load_entries(w->st, w->job, w->dir, name, mark_entry, w);
	/* A malformed entry could name chunks we cannot see: sweeping would
	 * be unsafe, so the whole pass fails. */
	return rc;
}

static int job_cb(const char *job, void *arg)
{
	struct walk *w = arg;
	int rc;

	w->job = job;
	w->dir = CKPT_SAMPLER;
	rc = catalog_list_ckpts(w->st, job, CKPT_SAMPLER, ckpt_cb, w);
	if (rc == 0) {
		w->dir = CKPT_STATE;
		rc = catalog_list_ckpts(w->st, job, CKPT_STATE, ckpt_cb, w);
	}
	return rc;
}

static int walk_all(struct walk *w)
{
	int rc = catalog_list_jobs(w->st, job_cb, w);

	if (rc == 0 && !w->expire) {	/* models never expire */
		w->job = "";
		w->dir = CKPT_MODEL;
		rc = catalog_list_ckpts(w->st, "", CKPT_MODEL, ckpt_cb, w);
	}
	return rc;
}

int gc_mark(struct store *st, struct keyset *live)
{
	struct gc_report r = { 0 };
	struct walk w = { .st = st, .live = live, .r = &r };
	int rc = walk_all(&w);

	if (rc == 0)
		keyset_sort(live);
	return rc;
}

struct sweep {
	struct store *st;
	const struct keyset *live;
	int64_t cutoff;
	int dry_run;
	struct gc_report *r;
	int rc;
};

static int sweep_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct sweep *s = arg;
	int d = gc_sweep_decision(s->live, key, sst->mtime, s->cutoff);

	if (d < 0)
		s->r->kept_young++;
	if (d <= 0)
		return 0;
	if (!s->dry_run) {
		int rc = store_remove(s->st, key);

		if (rc < 0) {
			s->rc = rc;	/* keep going; report at the end */
			return 0;
		}
	}
	s->r->deleted++;
	s->r->deleted_bytes += sst->size;
	return 0;
}

int gc_run(struct store *st, int64_t grace_s, int dry_run, double now,
	   struct gc_report *r)
{
	struct keyset live = { 0 };
	struct walk w = { .st = st, .now = now, .expire = 1, .dry_run = dry_run, .r = r };
	struct sweep s = { .st = st, .live = &live, .dry_run = dry_run, .r = r };
	int rc;

	memset(r, 0, sizeof(*r));
	rc = walk_all(&w);
	if (rc < 0)
		goto out;
	rc = gc_mark(st, &live);
	if (rc < 0) {
		log_error("gc: could not read every manifest (%s); nothing deleted",
			  strerror(-rc));
		goto out;
	}
	r->live = live.n;
	s.cutoff = (int64_t)now - grace_s;
	rc = store_list(st, "chunks/", sweep_cb, &s);
	if (rc == 0)
		rc = s.rc;
out:
	keyset_release(&live);
	return rc;
}
