/*
 * view.c: the in-memory listing of one job's checkpoints of one kind,
 * refreshed from the store at most every list_ttl seconds.
 *
 * A refresh is one store listing of the (job, dir) prefix; only keys whose
 * version changed are fetched again, so a steady-state refresh costs one
 * LIST however many files the checkpoints hold. The store I/O runs without
 * fs->lock (see view_refresh()); the result is merged in under it. A
 * checkpoint that survives a refresh keeps its struct ckpt; its entries
 * array may move.
 */
#include "fs/view.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/name.h"

double view_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void slot_release(struct ent_slot *s)
{
	entry_free(s->e);
	free(s->key);
	memset(s, 0, sizeof(*s));
}

void ckpt_free(struct ckpt *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_ents; i++)
		slot_release(&c->ents[i]);
	free(c->ents);
	ckpt_record_release(&c->rec);
	free(c->bad_key);
	free(c);
}

void view_free(struct view *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		ckpt_free(v->ckpts[i]);
	free(v->ckpts);
	free(v->job);
	free(v);
}

int ckpt_add_slot(struct ckpt *c, struct entry *e, char *key)
{
	if (c->n_ents == c->cap_ents) {
		size_t cap = c->cap_ents ? 2 * c->cap_ents : 8;
		struct ent_slot *s = realloc(c->ents, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		c->ents = s;
		c->cap_ents = cap;
	}
	c->ents[c->n_ents++] = (struct ent_slot){ .e = e, .key = key };
	c->gen++;
	return 0;
}

void ckpt_remove_slot(struct ckpt *c, size_t i)
{
	slot_release(&c->ents[i]);
	c->ents[i] = c->ents[--c->n_ents];
	c->gen++;
}

int view_add(struct view *v, struct ckpt *c)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 8;
		struct ckpt **p = realloc(v->ckpts, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		v->ckpts = p;
		v->cap = cap;
	}
	v->ckpts[v->n++] = c;
	return 0;
}

void view_remove(struct view *v, struct ckpt *c)
{
	size_t i;

	for (i = 0; i < v->n; i++) {
		if (v->ckpts[i] == c) {
			v->ckpts[i] = v->ckpts[--v->n];
			v->gen++;
			ckpt_free(c);
			return;
		}
	}
}

struct ckpt *view_find_any(struct view *v, const char *name)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (!strcmp(v->ckpts[i]->rec.name, name))
			return v->ckpts[i];
	return NULL;
}

int ckpt_is_expired(const struct ckpt *c, double wall_now)
{
	return c->attrs.ttl > 0 && c->rec.created + (double)c->attrs.ttl <= wall_now;
}

/* ---- refresh ---- */

struct listed {
	char *key;
	struct store_stat st;
	struct entry *e;	/* fetched entry, or NULL: reuse the view's */
};

struct listing {
	struct listed *items;
	size_t n, cap;
};

static int listing_cb(const char *key, const struct store_stat *st, void *arg)
{
	struct listing *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct listed *p = realloc(l->items, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	l->items[l->n].key = strdup(key);
	if (!l->items[l->n].key)
		return -ENOMEM;
	l->items[l->n].e = NULL;
	l->items[l->n++].st = *st;
	return 0;
}

static int same_stat(const struct store_stat *a, const struct store_stat *b)
{
	if (a->mtime == 0)
		return 0;	/* unknown: our own write, read it back once */
	if (a->version[0] || b->version[0])
		return !strcmp(a->version, b->version);
	return a->size == b->size && a->mtime == b->mtime;
}

/* What the view held when the refresh began, copied so the store I/O can
 * decide what to fetch again without fs->lock. */
struct snap_slot {
	char *key;
	struct store_stat st;
};

struct snap_ckpt {
	char *name;
	struct store_stat rec_st, attrs_st;
	struct snap_slot *slots;
	size_t n_slots;
};

struct snapshot {
	struct snap_ckpt *c;
	size_t n;
};

static void snapshot_release(struct snapshot *sn)
{
	size_t i, j;

	for (i = 0; i < sn->n; i++) {
		for (j = 0; j < sn->c[i].n_slots; j++)
			free(sn->c[i].slots[j].key);
		free(sn->c[i].slots);
		free(sn->c[i].name);
	}
	free(sn->c);
}

/* Lock held. Marks every checkpoint as seen by refresh @epoch. */
static int snapshot_take(struct view *v, uint64_t epoch, struct snapshot *sn)
{
	size_t i, j;

	sn->n = 0;
	sn->c = calloc(v->n ? v->n : 1, sizeof(*sn->c));
	if (!sn->c)
		return -ENOMEM;
	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];
		struct snap_ckpt *s = &sn->c[sn->n++];

		c->snap_epoch = epoch;
		c->snap_gen = c->gen;
		s->name = strdup(c->rec.name);
		/* A corrupt record is read again each time, never reused. */
		if (!c->bad_record)
			s->rec_st = c->rec_st;
		s->attrs_st = c->attrs_st;
		s->slots = calloc(c->n_ents ? c->n_ents : 1, sizeof(*s->slots));
		if (!s->name || !s->slots)
			return -ENOMEM;
		for (j = 0; j < c->n_ents; j++) {
			if (!c->ents[j].key)
				continue;	/* our own write: read back */
			s->slots[s->n_slots].key = strdup(c->ents[j].key);
			if (!s->slots[s->n_slots].key)
				return -ENOMEM;
			s->slots[s->n_slots++].st = c->ents[j].st;
		}
	}
	return 0;
}

static const struct snap_ckpt *snap_find(const struct snapshot *sn, const char *name)
{
	size_t i;

	for (i = 0; name && i < sn->n; i++)
		if (!strcmp(sn->c[i].name, name))
			return &sn->c[i];
	return NULL;
}

static int snap_has(const struct snap_ckpt *s, const char *key, const struct store_stat *st)
{
	size_t i;

	for (i = 0; s && i < s->n_slots; i++)
		if (!strcmp(s->slots[i].key, key))
			return same_stat(&s->slots[i].st, st);
	return 0;
}

/* One checkpoint as the listing shows it, built without the lock; what
 * did not change since the snapshot is taken from the view at merge time. */
struct proto {
	char *name;
	struct ckpt *c;		/* record, attrs and fetched entries */
	int rec_reuse, attrs_reuse;
	struct listed **reuse;	/* unchanged entries to take from the view */
	size_t n_reuse;
	size_t from, to;	/* its keys in the listing */
};

/* Remember the first corrupt object of @c (reads of it become EIO). */
static void mark_bad(struct ckpt *c, const struct listed *item)
{
	if (!c->bad_key) {
		c->bad_key = strdup(item->key);
		c->bad_st = item->st;
	}
}

/*
 * A record that does not parse, or is not the record of its key, still
 * names a checkpoint that exists: keep it, with a record made from the
 * key, so that reads fail with EIO instead of the name vanishing.
 */
static int fake_record(struct ckpt *c, const char *job, enum ckpt_dir dir, const char *name)
{
	ckpt_record_release(&c->rec);
	c->rec.job = strdup(job);
	c->rec.dir = dir;
	c->rec.name = strdup(name);
	c->rec.kind = KIND_BASE;
	c->bad_record = 1;
	return c->rec.job && c->rec.name ? 0 : -ENOMEM;
}

static void proto_release(struct proto *p)
{
	free(p->name);
	ckpt_free(p->c);
	free(p->reuse);
}

/* Fetch what changed of keys [from, to), one checkpoint. 0, -ENOENT (no
 * record: being created or removed), or the store's errno. */
static int build_proto(struct store *st, const struct view *v, const struct snap_ckpt *old,
		       struct listed *items, size_t from, size_t to, size_t plen,
		       struct proto *p)
{
	struct listed *rec = NULL, *attrs = NULL;
	struct buf b = BUF_INIT;
	size_t i;
	int rc = 0;

	p->c = calloc(1, sizeof(*p->c));
	p->reuse = calloc(to - from, sizeof(*p->reuse));
	if (!p->c || !p->reuse)
		return -ENOMEM;
	for (i = from; i < to; i++) {
		const char *leaf = strchr(items[i].key + plen, '/') + 1;

		if (!strcmp(leaf, "checkpoint.json"))
			rec = &items[i];
		else if (!strcmp(leaf, "attrs.json"))
			attrs = &items[i];
	}
	if (!rec)		/* being created or removed */
		return -ENOENT;
	if (old && same_stat(&old->rec_st, &rec->st)) {
		p->rec_reuse = 1;
	} else {
		rc = store_get(st, rec->key, &b);
		if (rc == 0)
			rc = ckpt_record_parse((const char *)b.data, b.len, &p->c->rec);
		if (rc == 0)
			rc = ckpt_record_check(&p->c->rec, v->job, v->dir, p->name);
		if (rc == -EBADMSG) {
			log_debug("catalog: %s: malformed checkpoint record", rec->key);
			mark_bad(p->c, rec);
			rc = fake_record(p->c, v->job, v->dir, p->name);
		}
		if (rc < 0)
			goto out;
	}
	p->c->rec_st = rec->st;
	if (attrs) {
		if (old && same_stat(&old->attrs_st, &attrs->st)) {
			p->attrs_reuse = 1;
		} else {
			buf_reset(&b);
			rc = store_get(st, attrs->key, &b);
			if (rc == 0)
				ckpt_attrs_parse((const char *)b.data, b.len, &p->c->attrs);
			else if (rc != -ENOENT)
				goto out;
			rc = 0;
		}
		p->c->attrs_st = attrs->st;
	}
	if (p->c->bad_record)
		goto out;	/* whatever the entries say, the record is lost */
	for (i = from; i < to; i++) {
		const char *leaf = strchr(items[i].key + plen, '/') + 1;
		struct entry *e;

		if (strncmp(leaf, "entries/", 8))
			continue;
		if (snap_has(old, items[i].key, &items[i].st)) {
			p->reuse[p->n_reuse++] = &items[i];
			continue;
		}
		buf_reset(&b);
		rc = store_get(st, items[i].key, &b);
		if (rc == -ENOENT) {
			rc = 0;
			continue;	/* removed since the listing */
		}
		if (rc < 0)
			goto out;
		e = calloc(1, sizeof(*e));
		if (!e) {
			rc = -ENOMEM;
			goto out;
		}
		if (entry_parse((const char *)b.data, b.len, e) < 0 ||
		    entry_check_key(e, items[i].key) < 0) {
			/* Its file's name is inside it: every name of this
			 * checkpoint that no good entry resolves is EIO. */
			log_debug("catalog: %s: malformed entry", items[i].key);
			mark_bad(p->c, &items[i]);
			entry_free(e);
			continue;
		}
		items[i].e = e;
	}
out:
	buf_release(&b);
	return rc;
}

static struct ent_slot *old_slot(struct ckpt *old, const char *key)
{
	size_t i;

	for (i = 0; i < old->n_ents; i++)
		if (old->ents[i].key && !strcmp(old->ents[i].key, key))
			return &old->ents[i];
	return NULL;
}

/* Slots whose entry finish_proto() already moved out. */
static void drop_moved(struct ckpt *c)
{
	size_t i;

	for (i = 0; i < c->n_ents;)
		if (!c->ents[i].e)
			ckpt_remove_slot(c, i);
		else
			i++;
}

/* Lock held. Complete @p from @old (unchanged since the snapshot) and the
 * fetched entries; 0 or -errno (then the view keeps @old as it is). */
static int finish_proto(struct proto *p, struct ckpt *old, struct listed *items,
			size_t from, size_t to, size_t plen)
{
	size_t i, k = 0;

	if ((p->rec_reuse || p->n_reuse) && !old)
		return -ESTALE;
	for (i = 0; i < p->n_reuse; i++) {
		struct ent_slot *os = old_slot(old, p->reuse[i]->key);

		if (!os || !os->e)
			return -ESTALE;
	}
	if (p->rec_reuse && ckpt_record_copy(&old->rec, &p->c->rec) < 0)
		return -ENOMEM;
	if (p->attrs_reuse)
		p->c->attrs = old->attrs;
	/* In listing order, so the view's order does not depend on what was
	 * fetched again. */
	for (i = from; i < to; i++) {
		const char *leaf = strchr(items[i].key + plen, '/') + 1;
		struct entry *e = NULL;
		char *key;

		if (strncmp(leaf, "entries/", 8))
			continue;
		if (k < p->n_reuse && p->reuse[k] == &items[i]) {
			struct ent_slot *os = old_slot(old, items[i].key);

			k++;
			if (!os || !os->e)
				return -ESTALE;
			e = os->e;
			os->e = NULL;
		} else if (items[i].e) {
			e = items[i].e;
			items[i].e = NULL;
		} else {
			continue;
		}
		key = strdup(items[i].key);
		if (!key || ckpt_add_slot(p->c, e, key) < 0) {
			free(key);
			entry_free(e);
			return -ENOMEM;
		}
		p->c->ents[p->c->n_ents - 1].st = items[i].st;
	}
	return 0;
}

/* Changed locally since refresh @epoch began (or created since)? */
static int touched(const struct ckpt *c, uint64_t epoch)
{
	return c->snap_epoch != epoch || c->gen != c->snap_gen;
}

int view_refresh(struct store *st, struct view *v, pthread_mutex_t *lock, uint64_t epoch)
{
	struct listing l = { 0 };
	struct snapshot sn = { 0 };
	struct proto *protos = NULL;
	struct ckpt **fresh = NULL;
	char *prefix = catalog_dir_prefix(v->job, v->dir);
	size_t plen, i, j, n_protos = 0, n_fresh = 0;
	unsigned vgen = v->gen;
	int rc;

	rc = prefix ? snapshot_take(v, epoch, &sn) : -ENOMEM;
	if (rc < 0)
		goto out_locked;
	plen = strlen(prefix);
	pthread_mutex_unlock(lock);

	/* Store I/O, without the lock. */
	rc = store_list(st, prefix, listing_cb, &l);
	if (rc == 0) {
		protos = calloc(l.n ? l.n : 1, sizeof(*protos));
		if (!protos)
			rc = -ENOMEM;
	}
	for (i = 0; rc == 0 && i < l.n; i = j) {
		const char *seg = l.items[i].key + plen, *slash = strchr(seg, '/');
		struct proto *p;
		size_t seglen;
		char *name;

		if (!slash) {
			j = i + 1;
			continue;
		}
		seglen = (size_t)(slash - seg);
		for (j = i + 1; j < l.n; j++)
			if (strncmp(l.items[j].key + plen, seg, seglen + 1))
				break;
		name = strndup(seg, seglen);
		if (!name) {
			rc = -ENOMEM;
			break;
		}
		p = &protos[n_protos];
		p->name = name_key_decode(name);
		/* A key that no checkpoint could have made cannot be shown as
		 * a directory name (a '/' broke listings). */
		if (p->name && name_check_component(p->name) < 0) {
			log_debug("catalog: %s%s: not a checkpoint name, ignored", prefix, name);
			free(name);
			free(p->name);
			p->name = NULL;
			continue;
		}
		free(name);
		if (!p->name) {
			rc = -ENOMEM;
			break;
		}
		n_protos++;
		p->from = i;
		p->to = j;
		rc = build_proto(st, v, snap_find(&sn, p->name), l.items, i, j, plen, p);
		if (rc == -ENOENT) {
			rc = 0;
			proto_release(p);
			memset(p, 0, sizeof(*p));
			n_protos--;
		}
	}
	pthread_mutex_lock(lock);
	if (rc < 0)
		goto out_locked;

	/* Merge under the lock. */
	fresh = calloc(n_protos + v->n + 1, sizeof(*fresh));
	if (!fresh) {
		rc = -ENOMEM;
		goto out_locked;
	}
	for (i = 0; i < n_protos; i++) {
		struct proto *p = &protos[i];
		struct ckpt *old = view_find_any(v, p->name), *c = p->c;

		if (old && (old->reused || touched(old, epoch)))
			continue;	/* kept as it is below */
		if (!old && (p->rec_reuse || v->gen != vgen))
			continue;	/* removed here during the refresh */
		if (finish_proto(p, old, l.items, p->from, p->to, plen) < 0) {
			if (old) {	/* keep the old one, minus what moved */
				drop_moved(old);
				old->reused = 1;
				fresh[n_fresh++] = old;
			}
			continue;
		}
		if (old) {
			/* Keep the old struct (pointers to it stay valid): move
			 * the fresh contents in. */
			struct ckpt tmp = *old;

			*old = *c;
			*c = tmp;
			old->gen = tmp.gen;
			c = old;
		} else {
			p->c = NULL;
		}
		c->reused = 1;
		fresh[n_fresh++] = c;
	}
	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];

		if (c->reused)
			continue;
		if (touched(c, epoch))
			fresh[n_fresh++] = c;	/* changed here meanwhile: keep */
		else
			ckpt_free(c);	/* gone from the store */
	}
	for (i = 0; i < n_fresh; i++)
		fresh[i]->reused = 0;
	free(v->ckpts);
	v->ckpts = fresh;
	v->cap = n_protos + v->n + 1;
	v->n = n_fresh;
	fresh = NULL;
out_locked:
	if (rc < 0)
		log_error("listing %s: %s", prefix ? prefix : v->job, strerror(-rc));
	free(fresh);
	for (i = 0; i < n_protos; i++)
		proto_release(&protos[i]);
	free(protos);
	for (i = 0; i < l.n; i++) {
		free(l.items[i].key);
		entry_free(l.items[i].e);
	}
	free(l.items);
	snapshot_release(&sn);
	free(prefix);
	return rc;
}
