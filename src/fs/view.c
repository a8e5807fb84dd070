/*
 * view.c: the in-memory listing of one job's checkpoints of one kind,
 * refreshed from the store at most every list_ttl seconds.
 *
 * A refresh is one store listing of the (job, dir) prefix; only keys whose
 * version changed are fetched again, so a steady-state refresh costs one
 * LIST however many files the checkpoints hold. A checkpoint that survives
 * a refresh keeps its struct ckpt, so a caller holding fs->lock may keep a
 * pointer to it across another lookup; its entries array may move.
 */
#include "fs/view.h"

#include <errno.h>
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
	return 0;
}

void ckpt_remove_slot(struct ckpt *c, size_t i)
{
	slot_release(&c->ents[i]);
	c->ents[i] = c->ents[--c->n_ents];
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

static struct ent_slot *old_slot(struct ckpt *old, const char *key)
{
	size_t i;

	if (!old)
		return NULL;
	for (i = 0; i < old->n_ents; i++)
		if (old->ents[i].key && !strcmp(old->ents[i].key, key))
			return &old->ents[i];
	return NULL;
}

/* Remember the first corrupt object of @c; 1 if it is news (to be logged). */
static int mark_bad(struct ckpt *c, const struct ckpt *old, const struct listed *item)
{
	int known = old && old->bad_key && !strcmp(old->bad_key, item->key) &&
		    same_stat(&old->bad_st, &item->st);

	if (!c->bad_key) {
		c->bad_key = strdup(item->key);
		c->bad_st = item->st;
	}
	return !known;
}

/*
 * A record that does not parse, or is not the record of its key, still
 * names a checkpoint that exists: keep it, with a record made from the
 * key, so that reads fail with EIO instead of the name vanishing.
 */
static int fake_record(struct ckpt *c, const struct view *v, const char *name)
{
	ckpt_record_release(&c->rec);
	c->rec.job = strdup(v->job);
	c->rec.dir = v->dir;
	c->rec.name = strdup(name);
	c->rec.kind = KIND_BASE;
	c->bad_record = 1;
	return c->rec.job && c->rec.name ? 0 : -ENOMEM;
}

/* Build the checkpoint @name for keys [from, to) of one name segment. */
static struct ckpt *build_ckpt(struct store *st, struct view *v, struct ckpt *old,
			       const char *name, struct listed *items, size_t from,
			       size_t to, size_t plen)
{
	struct ckpt *c = calloc(1, sizeof(*c));
	struct listed *rec = NULL, *attrs = NULL;
	struct buf b = BUF_INIT;
	size_t i;

	if (!c)
		return NULL;
	for (i = from; i < to; i++) {
		const char *leaf = strchr(items[i].key + plen, '/') + 1;

		if (!strcmp(leaf, "checkpoint.json"))
			rec = &items[i];
		else if (!strcmp(leaf, "attrs.json"))
			attrs = &items[i];
	}
	if (!rec)		/* being created or removed */
		goto fail;
	if (old && same_stat(&old->rec_st, &rec->st)) {
		/* The old view is searched by name until the refresh ends:
		 * copy the record, do not steal it. */
		if (ckpt_record_copy(&old->rec, &c->rec) < 0)
			goto fail;
		if (old->bad_record) {
			c->bad_record = 1;
			mark_bad(c, old, rec);
		}
	} else {
		int rc;

		buf_reset(&b);
		rc = store_get(st, rec->key, &b);
		if (rc == -ENOENT)
			goto fail;	/* removed since the listing */
		if (rc == 0)
			rc = ckpt_record_parse((const char *)b.data, b.len, &c->rec);
		if (rc == 0)
			rc = ckpt_record_check(&c->rec, v->job, v->dir, name);
		if (rc == -EBADMSG) {
			if (mark_bad(c, old, rec))
				log_debug("catalog: %s: malformed checkpoint record", rec->key);
			if (fake_record(c, v, name) < 0)
				goto fail;
		} else if (rc < 0) {
			goto fail;
		}
	}
	c->rec_st = rec->st;
	if (attrs) {
		if (old && same_stat(&old->attrs_st, &attrs->st)) {
			c->attrs = old->attrs;
		} else {
			buf_reset(&b);
			if (store_get(st, attrs->key, &b) == 0)
				ckpt_attrs_parse((const char *)b.data, b.len, &c->attrs);
		}
		c->attrs_st = attrs->st;
	}
	if (c->bad_record)
		goto done;	/* whatever the entries say, the record is lost */
	for (i = from; i < to; i++) {
		const char *leaf = strchr(items[i].key + plen, '/') + 1;
		struct ent_slot *os;
		struct entry *e;

		if (strncmp(leaf, "entries/", 8))
			continue;
		os = old_slot(old, items[i].key);
		if (os && same_stat(&os->st, &items[i].st)) {
			e = os->e;
			os->e = NULL;
		} else if (old && old->bad_key && !strcmp(old->bad_key, items[i].key) &&
			   same_stat(&old->bad_st, &items[i].st)) {
			mark_bad(c, old, &items[i]);	/* known bad, unchanged */
			continue;
		} else {
			buf_reset(&b);
			if (store_get(st, items[i].key, &b) < 0)
				continue;	/* removed since the listing */
			e = calloc(1, sizeof(*e));
			if (!e)
				goto fail;
			if (entry_parse((const char *)b.data, b.len, e) < 0 ||
			    entry_check_key(e, items[i].key) < 0) {
				if (mark_bad(c, old, &items[i]))
					log_debug("catalog: %s: malformed entry", items[i].key);
				entry_free(e);
				continue;
			}
		}
		if (ckpt_add_slot(c, e, items[i].key) < 0) {
			entry_free(e);
			goto fail;
		}
		c->ents[c->n_ents - 1].st = items[i].st;
		items[i].key = NULL;	/* ownership moved to the slot */
	}
done:
	buf_release(&b);
	return c;
fail:
	buf_release(&b);
	ckpt_free(c);
	return NULL;
}

int view_refresh(struct store *st, struct view *v, double ttl)
{
	struct listing l = { 0 };
	struct ckpt **fresh = NULL;
	char *prefix = NULL;
	size_t plen, i, j, n_fresh = 0;
	int rc;

	if (v->refreshed && view_now() - v->refreshed < ttl)
		return 0;
	prefix = catalog_dir_prefix(v->job, v->dir);
	if (!prefix) {
		rc = -ENOMEM;
		goto out;
	}
	plen = strlen(prefix);
	rc = store_list(st, prefix, listing_cb, &l);
	if (rc < 0)
		goto out;
	fresh = calloc(l.n ? l.n : 1, sizeof(*fresh));
	if (!fresh) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < l.n; i = j) {
		const char *seg = l.items[i].key + plen, *slash = strchr(seg, '/');
		size_t seglen;
		char *name;
		struct ckpt *c;

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
			goto out;
		}
		{
			char *dec = name_key_decode(name);
			struct ckpt *old = dec ? view_find_any(v, dec) : NULL;

			/* A key that no checkpoint could have made cannot be
			 * shown as a directory name (a '/' broke listings). */
			if (!dec || name_check_component(dec) < 0) {
				log_debug("catalog: %s%s: not a checkpoint name, ignored",
					  prefix, name);
				c = NULL;
			} else {
				c = build_ckpt(st, v, old, dec, l.items, i, j, plen);
			}
			free(dec);
			/*
			 * Keep the old struct (and so every pointer the caller
			 * holds to it) for a checkpoint that still exists: move
			 * the fresh contents into it and free the stale ones.
			 */
			if (c && old && !old->reused) {
				struct ckpt tmp = *old;

				*old = *c;
				*c = tmp;
				ckpt_free(c);
				c = old;
				c->reused = 1;
			}
		}
		free(name);
		if (c)
			fresh[n_fresh++] = c;
	}
	for (i = 0; i < v->n; i++) {
		if (v->ckpts[i]->reused)
			v->ckpts[i]->reused = 0;
		else
			ckpt_free(v->ckpts[i]);
	}
	free(v->ckpts);
	v->ckpts = fresh;
	v->n = v->cap = n_fresh;
	if (v->cap == 0) {
		free(fresh);
		v->ckpts = NULL;
	}
	fresh = NULL;
	v->refreshed = view_now();
out:
	if (rc < 0)
		log_error("listing %s: %s", prefix ? prefix : v->job, strerror(-rc));
	free(fresh);
	for (i = 0; i < l.n; i++)
		free(l.items[i].key);
	free(l.items);
	free(prefix);
	return rc;
}
