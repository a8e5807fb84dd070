/*
 * promote.c: promotion of a checkpoint to models/ID (symlink, rename).
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
int promote(struct ckfs *fs, const struct fpath *src, const char *id)
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
	/* From listings made now, without fs->lock. */
	view_ensure(fs, src->job, src->dir, 1);
	view_ensure(fs, "", CKPT_MODEL, 1);
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, src->job, src->dir, src->ckpt);
	mv = get_view(fs, "", CKPT_MODEL);
	if (!c) {
		rc = lookup_errno(fs, src->job, src->dir);
	} else if (c->rec.dir == CKPT_STATE) {
		log_error("promote %s -> models/%s: train-state checkpoints are not "
			  "promotable (EINVAL)", src->ckpt, id);
		rc = -EINVAL;
	} else if (ckpt_has_writers(fs, src->job, src->dir, src->ckpt)) {
		log_error("promote %s -> models/%s: files are still open for writing (EBUSY)",
			  src->ckpt, id);
		rc = -EBUSY;
	} else if (!mv) {
		rc = lookup_errno(fs, "", CKPT_MODEL);
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
	/* The model (or what a failed attempt left) is listed from now on. */
	view_ensure(fs, "", CKPT_MODEL, 1);
	for (i = 0; i < n; i++)
		entry_release(&ents[i]);
	free(ents);
	free(prefix);
	ckpt_record_release(&rec);
	if (rc < 0 && rc != -EINVAL && rc != -EBUSY && rc != -EEXIST && rc != -ENOENT)
		log_error("promote %s -> models/%s: %s", src->ckpt, id, strerror(-rc));
	return rc;
}


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
	n = path_split(target, c, l, 63);
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
		rc = path_copy_comp(src.job, sizeof(src.job), c[n - 3], l[n - 3]);
	else
		snprintf(src.job, sizeof(src.job), "%s", fs->job);
	if (rc == 0)
		rc = path_copy_comp(src.ckpt, sizeof(src.ckpt), c[n - 1], l[n - 1]);
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

