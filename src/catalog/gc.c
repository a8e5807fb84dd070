/* gc.c: TTL expiry and chunk mark-and-sweep (see gc.h for the safety rules). */
#include "catalog/gc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "store/store_local.h"
#include "util/log.h"
#include "util/metrics.h"

#define GC_MODELS_PREFIX "models/"

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

/* ---- expiry and mark, over catalog_walk() ---- */

struct expiry {
	struct store *st;
	double now;
	int dry_run;
	struct gc_report *r;
};

static int expire_ckpt(const char *where, const struct ckpt_record *rec, void *arg)
{
	struct expiry *x = arg;
	struct ckpt_attrs a;
	int rc;

	(void)where;
	rc = catalog_attrs_get(x->st, rec->job, rec->dir, rec->name, &a);
	if (rc < 0)
		return rc;
	if (a.ttl > 0 && rec->created + (double)a.ttl <= x->now) {
		log_info("gc: %s/%s/%s expired", rec->job, ckpt_dir_name(rec->dir), rec->name);
		x->r->expired++;
		if (!x->dry_run) {
			rc = catalog_ckpt_remove(x->st, rec->job, rec->dir, rec->name);
			if (rc < 0)
				return rc;
		}
	}
	return 1;	/* entries are not needed for expiry */
}

static int mark_entry(const char *where, const struct ckpt_record *rec,
		      const struct entry *e, void *arg)
{
	struct keyset *live = arg;
	size_t i;
	int rc = 0;

	(void)where;
	(void)rec;
	for (i = 0; i < e->n_chunks && rc == 0; i++) {
		if (e->chunks[i].key[0])
			rc = keyset_add(live, e->chunks[i].key);
		if (rc == 0 && e->chunks[i].base_key[0])
			rc = keyset_add(live, e->chunks[i].base_key);
	}
	return rc;
}

/* A record or entry we cannot read could name chunks we cannot see:
 * sweeping would be unsafe, so the whole pass fails. */
static int mark_problem(const char *where, enum ckpt_dir dir, const char *name,
			int err, void *arg)
{
	(void)arg;
	log_error("gc: %s/%s/%s unreadable: %s", where, ckpt_dir_name(dir), name,
		  strerror(-err));
	return err;
}

int gc_mark(struct store *st, struct keyset *live)
{
	static const struct catalog_walk_ops ops = {
		.on_entry = mark_entry,
		.on_problem = mark_problem,
	};
	int rc = catalog_walk(st, 1, &ops, live);

	if (rc == 0)
		keyset_sort(live);
	return rc;
}

/* ---- promotions in flight ---- */

struct inflight {
	struct store *st;
	struct keyset *live;
	int64_t since;		/* entries older than this are leftovers */
	char recorded[256];	/* "<id>/" of the last model with a record */
	int rc;
};

/* A promotion's pin: {"chunks":["<sha256>", ...]}, the keys of chunks it
 * is about to store (src/fs/promote.c). */
static int mark_pin(const char *json, size_t len, struct keyset *live)
{
	cJSON *o = cJSON_ParseWithLength(json, len), *k;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "chunks");
	int rc = cJSON_IsArray(a) ? 0 : -EBADMSG;

	cJSON_ArrayForEach(k, a) {
		if (rc == 0 && (!cJSON_IsString(k) || strlen(k->valuestring) != CHUNK_KEY_LEN))
			rc = -EBADMSG;
		if (rc == 0)
			rc = keyset_add(live, k->valuestring);
	}
	cJSON_Delete(o);
	return rc;
}

static int inflight_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct inflight *f = arg;
	const char *id = key + strlen(GC_MODELS_PREFIX), *slash = strchr(id, '/');
	size_t idlen = slash ? (size_t)(slash - id) + 1 : 0;
	struct buf b = BUF_INIT;
	struct entry e;
	int rc, pin;

	if (!slash || idlen >= sizeof(f->recorded))
		return 0;
	/* Listings are sorted: "<id>/checkpoint.json" comes before
	 * "<id>/entries/...", so a model's record is seen first. */
	if (!strcmp(slash + 1, "checkpoint.json")) {
		memcpy(f->recorded, id, idlen);
		f->recorded[idlen] = '\0';
		return 0;
	}
	pin = !strncmp(slash + 1, "pins/", 5);
	if ((!pin && strncmp(slash + 1, "entries/", 8)) || !strncmp(f->recorded, id, idlen) ||
	    sst->mtime < f->since)
		return 0;
	rc = store_get(f->st, key, &b);
	if (rc == -ENOENT)
		return 0;	/* the promotion failed and cleaned up */
	if (rc == 0 && pin) {
		rc = mark_pin((const char *)b.data, b.len, f->live);
	} else if (rc == 0) {
		rc = entry_parse((const char *)b.data, b.len, &e);
		if (rc == 0) {
			rc = mark_entry(NULL, NULL, &e, f->live);
			entry_release(&e);
		}
	}
	buf_release(&b);
	if (rc < 0) {
		log_error("gc: %s unreadable: %s", key, strerror(-rc));
		f->rc = rc;
		return rc;
	}
	return 0;
}

/*
 * A promotion stores its model's entries before the record that makes
 * catalog_walk() see them, and materializes chunks no other entry names
 * (it pins their keys before storing them): mark what the entries and pins
 * of a record-less model name too, unless they are
 * older than any promotion takes (leftovers of one that crashed, which
 * the next promotion to that id clears).
 */
static int mark_inflight(struct store *st, struct keyset *live, int64_t since)
{
	struct inflight f = { .st = st, .live = live, .since = since };
	int rc = store_list(st, GC_MODELS_PREFIX, inflight_cb, &f);

	if (rc == 0)
		rc = f.rc;
	if (rc == 0)
		keyset_sort(live);
	return rc;
}

static gc_progress_fn progress_fn;
static void *progress_arg;

void gc_set_progress(gc_progress_fn fn, void *arg)
{
	progress_fn = fn;
	progress_arg = arg;
}

/* "chunks/ab/abcd...": how far through the key space @key is, or -1. */
static double key_frac(const char *key)
{
	const char *h = strrchr(key, '/');
	char top[9];

	if (!h || strlen(h + 1) < 8)
		return -1;
	memcpy(top, h + 1, 8);
	top[8] = '\0';
	return (double)strtoul(top, NULL, 16) / 4294967296.0;
}

struct sweep {
	uint64_t items, bytes;	/* examined so far, for progress */
	struct store *st;
	const struct keyset *live;
	int64_t cutoff;
	int64_t cutoff_ns;	/* the same instant, to the nanosecond */
	int dry_run;
	struct gc_report *r;
	int rc;
};

static int sweep_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct sweep *s = arg;
	int d = gc_sweep_decision(s->live, key, sst->mtime, s->cutoff);

	s->items++;
	s->bytes += sst->size;
	if (progress_fn)
		progress_fn(progress_arg, s->items, s->bytes, key_frac(key));
	if (d < 0)
		s->r->kept_young++;
	if (d <= 0)
		return 0;
	if (!s->dry_run) {
		struct store_stat now;
		int rc;

		/*
		 * Look again just before deleting: a write in flight may have
		 * re-stored this very content (same key) since the listing,
		 * which makes it young again.
		 */
		rc = store_head(s->st, key, &now);
		if (rc == -ENOENT)
			return 0;
		/*
		 * To the nanosecond where the store knows it: a chunk touched by
		 * a promotion after this pass began (src/fs/promote.c) is young
		 * even with grace 0, whose cutoff second it shares.
		 */
		if (rc == 0 && (now.mtime > s->cutoff ||
				(now.mtime_ns ? now.mtime_ns : now.mtime * 1000000000) >
				s->cutoff_ns)) {
			s->r->kept_young++;
			return 0;
		}
		rc = store_remove(s->st, key);

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
	static const struct catalog_walk_ops expire_ops = { .on_ckpt = expire_ckpt };
	struct keyset live = { 0 };
	struct expiry x = { .st = st, .now = now, .dry_run = dry_run, .r = r };
	struct sweep s = { .st = st, .live = &live, .dry_run = dry_run, .r = r };
	int rc;

	memset(r, 0, sizeof(*r));
	rc = catalog_walk(st, 0, &expire_ops, &x);	/* models never expire */
	if (rc < 0)
		goto out;
	rc = gc_mark(st, &live);
	if (rc == 0)
		rc = mark_inflight(st, &live,
				   (int64_t)now - (grace_s > GC_PROMOTION_WINDOW ? grace_s :
						    GC_PROMOTION_WINDOW));
	if (rc < 0) {
		log_error("gc: could not read every manifest (%s); nothing deleted",
			  strerror(-rc));
		goto out;
	}
	r->live = live.n;
	s.cutoff = (int64_t)now - grace_s;
	{
		/* Clamped: a cast of a double out of range is undefined. */
		double c = ((double)now - (double)grace_s) * 1e9;

		s.cutoff_ns = c >= 9.2e18 ? INT64_MAX : c <= 0 ? 0 : (int64_t)c;
	}
	rc = store_list(st, "chunks/", sweep_cb, &s);
	if (rc == 0)
		rc = s.rc;
	/* A local store's temp files of daemons killed mid-put (other stores
	 * have none: -EOPNOTSUPP). The age rule is the store's, not @grace_s:
	 * a temp file is never referenced, only possibly still being written. */
	if (!dry_run) {
		int trc = store_local_sweep_tmp(st, STORE_LOCAL_TMP_STALE_S, NULL);

		if (trc < 0 && trc != -EOPNOTSUPP)
			log_warn("gc: could not sweep stale temporary files: %s",
				 strerror(-trc));
	}
out:
	keyset_release(&live);
	if (!dry_run) {
		metrics_inc(M_GC_RUNS, rc == 0 ? "ok" : metrics_errno_name(rc), NULL, NULL);
		metrics_add(M_GC_DELETED_OBJECTS, (double)r->deleted, NULL, NULL, NULL);
		metrics_add(M_GC_DELETED_BYTES, (double)r->deleted_bytes, NULL, NULL, NULL);
		metrics_add(M_GC_EXPIRED, (double)r->expired, NULL, NULL, NULL);
		log_debug("gc: %" PRIu64 " expired checkpoints removed, %" PRIu64
			  " unreferenced chunks deleted (%" PRIu64 " bytes), %" PRIu64
			  " live, %" PRIu64 " kept as younger than %" PRId64 " s%s%s",
			  r->expired, r->deleted, r->deleted_bytes, r->live, r->kept_young,
			  grace_s, rc < 0 ? "; failed: " : "", rc < 0 ? strerror(-rc) : "");
	}
	return rc;
}
