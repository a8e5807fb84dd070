/*
 * policy.c: what a new checkpoint or file becomes: base, delta, lora, state;
 * who may write or remove where.
 */
#include "fs/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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

/* ---------------------------------------------------------------- policy */

/* Latest live base of the job's sampler checkpoints, or NULL. Lock held. */
struct ckpt *latest_of_kind(struct view *v, enum ckpt_kind kind)
{
	struct ckpt *best = NULL;
	double now = wall_now();
	size_t i;

	for (i = 0; i < v->n; i++) {
		struct ckpt *c = v->ckpts[i];

		if (c->rec.kind == kind && !c->bad_record && !ckpt_is_expired(c, now) &&
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
void choose_kind(struct ckfs *fs, struct view *v, struct ckpt_record *r)
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

int is_lora_file(const char *rel)
{
	const char *leaf = strrchr(rel, '/');

	leaf = leaf ? leaf + 1 : rel;
	return !strcmp(leaf, "adapter_config.json") ||
	       !strcmp(leaf, "adapter_model.safetensors") ||
	       !strcmp(leaf, "adapter_model.bin");
}

int refuse_write(struct ckfs *fs, const struct fpath *p)
{
	if (fs->cfg.read_only || !p->own)
		return -EROFS;
	return 0;
}

/* Removal inside models/ is allowed: `rm -r models/ID` unpromotes. */
int refuse_remove(struct ckfs *fs, const struct fpath *p)
{
	if (fs->cfg.read_only)
		return -EROFS;
	return p->dir == CKPT_MODEL ? 0 : refuse_write(fs, p);
}

/*
 * mkdir of a checkpoint. Lock NOT held: the record is created in the
 * mutation turn without fs->lock, then added to the view here (no refresh
 * needed to see it).
 */
int create_ckpt(struct ckfs *fs, const struct fpath *p)
{
	struct ckpt_record r = { 0 };
	struct ckpt_attrs a = { .ttl = fs->cfg.default_ttl > 0 ? fs->cfg.default_ttl : 0 };
	struct view *v;
	struct ckpt *c;
	int rc, store_rc = 0, expired_old, created = 0;

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
	pthread_mutex_lock(&fs->lock);
	rc = turn_begin(fs, "mkdir", p->ckpt);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	v = get_view(fs, p->job, p->dir);
	if (!v) {
		rc = lookup_errno(fs, p->job, p->dir);
		goto out;
	}
	c = view_find_any(v, p->ckpt);
	if (c && !ckpt_is_expired(c, wall_now())) {
		rc = -EEXIST;
		goto out;
	}
	expired_old = c != NULL;
	r.job = (char *)p->job;
	r.name = (char *)p->ckpt;
	r.dir = p->dir;
	r.created = wall_now();
	memcpy(r.session, fs->session, sizeof(r.session));
	if (p->dir == CKPT_STATE)
		r.kind = KIND_STATE;
	else
		choose_kind(fs, v, &r);
	pthread_mutex_unlock(&fs->lock);

	if (expired_old)	/* an expired name may be reused: drop the old record first */
		catalog_ckpt_remove(fs->st, p->job, p->dir, p->ckpt);
	rc = store_rc = catalog_record_create(fs->st, &r);
	created = rc == 0;
	if (rc == 0 && a.ttl > 0)
		rc = store_rc = catalog_attrs_put(fs->st, p->job, p->dir, p->ckpt, &a);

	pthread_mutex_lock(&fs->lock);
	v = get_view(fs, p->job, p->dir);
	if (created && v) {
		struct ckpt *nc = calloc(1, sizeof(*nc));

		if ((c = view_find_any(v, p->ckpt)) != NULL)
			view_remove(v, c);	/* the expired one */
		if (nc && ckpt_record_copy(&r, &nc->rec) == 0 && view_add(v, nc) == 0) {
			if (rc == 0)
				nc->attrs = a;
		} else {
			if (nc)
				ckpt_free(nc);
			view_mark_stale(fs, p->job, p->dir);
		}
	} else if (rc == -EEXIST) {
		view_mark_stale(fs, p->job, p->dir);
	}
out:
	ns_end(fs, store_rc == -EEXIST ? 0 : store_rc);
	pthread_mutex_unlock(&fs->lock);
	free(r.base);
	if (rc == -EEXIST && store_rc == -EEXIST) {
		log_info("mkdir %s: another mount created it first", p->ckpt);
		view_ensure(fs, p->job, p->dir, 1);	/* pick up the winner's record */
	}
	return rc;
}

/*
 * The base checkpoint of delta @c, or NULL if it is gone. By name, but a
 * checkpoint of that name made after @c (the base was removed and the name
 * reused, maybe for a delta) is not it: XORing against that one stored
 * chunks no reader could decode. Lock held.
 */
struct ckpt *delta_base_ckpt(struct ckfs *fs, const struct ckpt *c)
{
	struct ckpt *b;

	if (c->rec.kind != KIND_DELTA || !c->rec.base)
		return NULL;
	b = find_ckpt(fs, c->rec.job, c->rec.dir, c->rec.base);
	if (!b || b->rec.kind != KIND_BASE || b->rec.created > c->rec.created)
		return NULL;
	return b;
}

/*
 * Base file for a delta writer: the same relative path in the base, or,
 * for a temporary name a writer renames afterwards (rsync's ".NAME.XXXXXX",
 * "NAME.tmp", ...), the final name's (name_temp_final). Lock held; the
 * result is valid until the lock is dropped.
 */
const struct entry *delta_base_entry(struct ckfs *fs, struct ckpt *c,
					    const char *rel)
{
	struct ckpt *b;
	struct ent_slot *es;
	char final[PATH_MAX];

	b = delta_base_ckpt(fs, c);
	if (!b)
		return NULL;
	es = find_slot(b, rel, NULL);
	if (!es && name_temp_final(rel, final, sizeof(final)))
		es = find_slot(b, final, NULL);
	return (es && !es->e->is_dir) ? es->e : NULL;
}

/* Would file @rel make @c a LoRA checkpoint? A LoRA adapter file in a
 * sampler checkpoint that holds nothing yet does. Lock held. */
int lora_pending(struct ckfs *fs, struct ckpt *c, const char *rel)
{
	return c->rec.dir == CKPT_SAMPLER && c->rec.kind != KIND_LORA && is_lora_file(rel) &&
	       !c->n_ents && !ckpt_has_writers(fs, c->rec.job, c->rec.dir, c->rec.name);
}

/* Make the checkpoint of @p a LoRA checkpoint (stored whole, always
 * promotable) if lora_pending() still holds. Lock NOT held; the record
 * is replaced in the mutation turn. */
void become_lora(struct ckfs *fs, const struct fpath *p)
{
	struct ckpt_record r = { 0 };
	struct ckpt *c;
	int rc, store_rc = 0;

	pthread_mutex_lock(&fs->lock);
	if (ns_begin(fs) < 0) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (!c || !lora_pending(fs, c, p->rel) || ckpt_record_copy(&c->rec, &r) < 0)
		goto out;
	pthread_mutex_unlock(&fs->lock);
	free(r.base);
	r.base = NULL;
	r.kind = KIND_LORA;
	rc = store_rc = catalog_record_replace(fs->st, &r);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (rc == 0 && c) {
		free(c->rec.base);
		c->rec.base = NULL;
		c->rec.kind = KIND_LORA;
		memset(&c->rec_st, 0, sizeof(c->rec_st));
		c->gen++;
		log_info("checkpoint %s: adapter files, stored whole as lora", c->rec.name);
	}
out:
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	ckpt_record_release(&r);
}
