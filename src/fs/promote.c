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
#include "util/hash.h"
#include "util/log.h"
#include "util/name.h"
#include "fs/fs_local.h"
#include "util/par.h"

/* ---------------------------------------------------------------- promote */

/*
 * Materialized chunks are new objects that no entry names until their
 * file's entry is stored, and a gc pass that begins meanwhile would take
 * them (with a grace period shorter than the promotion). So their keys are
 * written first, in a pin ("models/<id>/pins/<n>.json", which gc reads for
 * a model without a record: a promotion in flight), and the frames after:
 * a chunk exists only once something names it. Frames wait in memory in
 * batches of PIN_BATCH between their pin and their put.
 */
#define PIN_BATCH 4

struct materializer {
	struct ckfs *fs;
	const char *id;
	struct codec_ctx *ctx;
	unsigned pins;			/* pins written so far */
	size_t n;			/* frames waiting */
	struct buf frames[PIN_BATCH];
	struct chunk_ref refs[PIN_BATCH];
	struct chunk_ref *dst[PIN_BATCH];	/* where each ref goes once stored */
};

static char *pin_key(const char *id, unsigned n)
{
	char *prefix = catalog_ckpt_prefix("", CKPT_MODEL, id), *key = NULL;

	if (prefix && asprintf(&key, "%spins/%u.json", prefix, n) < 0)
		key = NULL;
	free(prefix);
	return key;
}

/* Pin the waiting frames' keys, then store the frames. */
static int flush_frames(struct materializer *m)
{
	struct buf pin = BUF_INIT;
	char *key = pin_key(m->id, m->pins);
	size_t i;
	int rc = key ? buf_append_str(&pin, "{\"chunks\":[") : -ENOMEM;

	for (i = 0; rc == 0 && i < m->n; i++)
		rc = buf_printf(&pin, "%s\"%s\"", i ? "," : "", m->refs[i].key);
	if (rc == 0)
		rc = buf_append_str(&pin, "]}\n");
	if (rc == 0 && m->n)
		rc = store_put(m->fs->st, key, pin.data, pin.len);
	if (rc == 0 && m->n)
		m->pins++;
	for (i = 0; rc == 0 && i < m->n; i++) {
		char ckey[128];

		catalog_chunk_key(m->refs[i].key, ckey, sizeof(ckey));
		rc = store_put(m->fs->st, ckey, m->frames[i].data, m->frames[i].len);
		if (rc == 0)
			*m->dst[i] = m->refs[i];
	}
	for (i = 0; i < m->n; i++)
		buf_release(&m->frames[i]);
	m->n = 0;
	buf_release(&pin);
	free(key);
	return rc;
}

/* Re-encode chunk @i of @e whole (base XOR delta -> full frame). */
static int materialize_chunk(struct materializer *m, struct entry *e, size_t i,
			     const struct st_layout *layout)
{
	uint64_t off = (uint64_t)i * e->chunk_size;
	size_t len = e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
	struct codec_span spans[256];
	const struct chunk_data *d;
	struct buf *frame = &m->frames[m->n];
	struct chunk_ref *ref = &m->refs[m->n];
	size_t nspans = 0;
	int rc;

	rc = chunks_get(m->fs->chunks, &e->chunks[i], len, &d);
	if (rc < 0)
		return rc;
	if (layout)
		nspans = st_layout_chunk_spans(layout, off, len, spans, 256);
	buf_reset(frame);
	rc = codec_encode(m->ctx, d->data, len, NULL, spans, nspans, 0, frame);
	chunks_put(m->fs->chunks, d);
	if (rc < 0)
		return rc;
	memset(ref, 0, sizeof(*ref));
	hash_sha256_hex(frame->data, frame->len, ref->key);
	ref->stored_len = (uint32_t)frame->len;
	m->dst[m->n++] = &e->chunks[i];
	return m->n == PIN_BATCH ? flush_frames(m) : 0;
}

/* Make @e independent of any base: every chunk a full frame. */
static int materialize(struct materializer *m, struct entry *e)
{
	struct st_layout layout = ST_LAYOUT_INIT;
	int have_layout = 0, rc = 0;
	size_t i;

	for (i = 0; i < e->n_chunks && rc == 0; i++) {
		if (!e->chunks[i].base_key[0])
			continue;	/* already a full frame: shared, not copied */
		if (!have_layout && e->n_chunks) {
			const struct chunk_data *d;
			size_t len = e->size < e->chunk_size ? (size_t)e->size : e->chunk_size;

			have_layout = -1;
			if (chunks_get(m->fs->chunks, &e->chunks[0], len, &d) == 0) {
				if (st_layout_parse(d->data, len, &layout) == 0)
					have_layout = 1;
				chunks_put(m->fs->chunks, d);
			}
		}
		rc = materialize_chunk(m, e, i, have_layout == 1 ? &layout : NULL);
	}
	if (rc == 0)
		rc = flush_frames(m);
	st_layout_release(&layout);
	return rc;
}

static int clear_prefix_cb(const char *key, const struct store_stat *st, void *arg)
{
	(void)st;
	return store_remove(arg, key);
}

static int same_entry(const struct entry *a, const struct entry *b)
{
	size_t i;

	if (strcmp(a->path, b->path) || a->is_dir != b->is_dir || a->size != b->size ||
	    a->mtime_ns != b->mtime_ns || a->n_chunks != b->n_chunks)
		return 0;
	for (i = 0; i < a->n_chunks; i++)
		if (strcmp(a->chunks[i].key, b->chunks[i].key) ||
		    strcmp(a->chunks[i].base_key, b->chunks[i].base_key))
			return 0;
	return 1;
}

/* What the source holds now, read from the store (not the cached view). */
struct recheck {
	const struct entry *copied;
	size_t n, seen;
	int changed;
};

static int recheck_entry(struct entry *e, void *arg)
{
	struct recheck *r = arg;
	size_t i;

	for (i = 0; i < r->n; i++)
		if (!strcmp(r->copied[i].path, e->path))
			break;
	if (i == r->n || !same_entry(&r->copied[i], e))
		r->changed = 1;
	else
		r->seen++;
	entry_free(e);
	return 0;
}

/*
 * Is the source still the checkpoint whose entries were copied, file for
 * file? A promotion racing `rm -r` (or a rewrite) must not publish what
 * was copied half-way through it. 0; -ENOENT if the checkpoint or a file
 * went away; -EBUSY if a file changed or was added.
 */
static int source_unchanged(struct ckfs *fs, const struct ckpt_record *was,
			    const struct entry *copied, size_t n)
{
	struct ckpt_record now;
	struct recheck r = { .copied = copied, .n = n };
	int rc = catalog_record_get(fs->st, was->job, was->dir, was->name, &now);

	if (rc < 0)
		return rc;
	/* Removed and made again under the same name is another checkpoint. */
	if (strcmp(now.session, was->session) || now.created != was->created)
		rc = -ENOENT;
	ckpt_record_release(&now);
	if (rc == 0)
		rc = catalog_load_entries(fs->st, was->job, was->dir, was->name,
					  recheck_entry, &r);
	if (rc == 0 && r.changed)
		rc = -EBUSY;
	else if (rc == 0 && r.seen != n)
		rc = -ENOENT;
	return rc;
}

/*
 * Pin the chunks of the model just published. A gc pass that marked
 * before the model's record existed does not count them as live, and a
 * chunk the model shares with its source keeps the source's age, so once
 * the source is removed (rm -r, TTL) that pass may delete it. gc looks at
 * a chunk's age again right before deleting it, so first make every chunk
 * young (touch), then check each is still there, as a delta commit does.
 * 0, or -EIO naming a chunk that is gone.
 */
struct pin_job {
	struct ckfs *fs;
	const struct keyset *keys;
	int pass;		/* 0: touch, 1: check */
};

static int pin_one(size_t i, void *arg)
{
	const struct pin_job *pj = arg;
	struct store_stat sst;
	char key[128];

	catalog_chunk_key(pj->keys->v[i], key, sizeof(key));
	return pj->pass == 0 ? store_touch(pj->fs->st, key) : store_head(pj->fs->st, key, &sst);
}

/* Requests in flight at once: each waits on the store (one S3 round trip
 * per chunk, thousands for a large model), not on this machine's cores. */
#define PIN_THREADS 16

static int pin_chunks(struct ckfs *fs, const struct entry *ents, size_t n, char *gone,
		      size_t gone_cap)
{
	struct keyset keys = { 0 };
	struct pin_job pj = { .fs = fs, .keys = &keys };
	size_t i, j, at = 0;
	int rc = 0;

	for (i = 0; rc == 0 && i < n; i++)
		for (j = 0; rc == 0 && j < ents[i].n_chunks; j++)
			if (ents[i].chunks[j].key[0])
				rc = keyset_add(&keys, ents[i].chunks[j].key);
	keyset_sort(&keys);
	/* Every touch ends before the first check starts. */
	for (pj.pass = 0; rc == 0 && pj.pass < 2; pj.pass++) {
		rc = par_each(keys.n, PIN_THREADS, pin_one, &pj, &at);
		if (rc == -ENOENT) {
			snprintf(gone, gone_cap, "%s", keys.v[at]);
			rc = -EIO;
		}
	}
	keyset_release(&keys);
	return rc;
}

/*
 * Promote checkpoint @src to model @id (DESIGN.md section 5). Base and LoRA
 * checkpoints share their chunks (no copy); a delta is materialized into
 * full frames first, so the model needs no base. The model's record is
 * written last and exclusively: a crash leaves no model, a race leaves one.
 */
static int promote_once(struct ckfs *fs, const struct fpath *src, const char *id,
			int last_try)
{
	struct ckpt_record rec = { 0 }, src_rec = { 0 };
	struct entry *ents = NULL, *orig = NULL;
	struct view *mv;
	struct ckpt *c;
	char *prefix = NULL, gone[CHUNK_KEY_LEN + 1] = "";
	struct materializer mat = { .fs = fs, .id = id };
	size_t n = 0, n_orig = 0, i;
	int rc = name_check_model_id(id), logged = 0, published = 0;

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
		log_error("promote %s -> models/%s: no such checkpoint (%s)", src->ckpt, id,
			  rc == -ENOENT ? "ENOENT" : strerror(-rc));
	} else if (c->bad_key) {
		log_error("promote %s -> models/%s: store object %s is corrupt (EIO)",
			  src->ckpt, id, c->bad_key);
		rc = -EIO;
	} else if (c->rec.dir == CKPT_STATE) {
		log_error("promote %s -> models/%s: train-state checkpoints are not "
			  "promotable (EINVAL)", src->ckpt, id);
		rc = -EINVAL;
	} else if (ckpt_has_writers(fs, src->job, src->dir, src->ckpt)) {
		log_error("promote %s -> models/%s: files are still open for writing (EBUSY)",
			  src->ckpt, id);
		rc = -EBUSY;
	} else if (!promotable(c)) {
		/* Also what `rm -r` leaves just before its rmdir: publishing
		 * that would make an empty model of a checkpoint being removed. */
		log_error("promote %s -> models/%s: the checkpoint holds no file (EINVAL)",
			  src->ckpt, id);
		rc = -EINVAL;
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
		orig = calloc(c->n_ents ? c->n_ents : 1, sizeof(*orig));
		if (!rec.job || !rec.name || !rec.promoted_from || !rec.source_snapshot ||
		    !ents || !orig)
			rc = -ENOMEM;
		if (rc == 0)
			rc = ckpt_record_copy(&c->rec, &src_rec);
		for (i = 0; rc == 0 && i < c->n_ents; i++) {
			rc = entry_copy(c->ents[i].e, &ents[n]);
			if (rc == 0)
				n++;
			if (rc == 0)
				rc = entry_copy(c->ents[i].e, &orig[n_orig]);
			if (rc == 0)
				n_orig++;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto out;

	/* Leftovers of an earlier promotion to this id that crashed before
	 * its record: clear them, or they would join the new model. */
	prefix = catalog_ckpt_prefix("", CKPT_MODEL, id);
	if (!prefix) {
		rc = -ENOMEM;
		goto out;
	}
	{
		/* Another mount may have published this id since the view was
		 * read: its entries are not leftovers. */
		struct ckpt_record other;

		rc = catalog_record_get(fs->st, "", CKPT_MODEL, id, &other);
		if (rc == 0) {
			ckpt_record_release(&other);
			log_error("promote %s -> models/%s: the model exists (EEXIST)",
				  src->ckpt, id);
			logged = 1;
			rc = -EEXIST;
			goto out;
		}
		if (rc != -ENOENT)
			goto out;
	}
	rc = store_list(fs->st, prefix, clear_prefix_cb, fs->st);
	/*
	 * Each file's entry right after its chunks: gc marks the entries of a
	 * model still without a record (a promotion in flight), so what was
	 * materialized is unprotected only while its own file is encoded.
	 */
	mat.ctx = codec_ctx_new();
	if (!mat.ctx)
		rc = -ENOMEM;
	for (i = 0; rc == 0 && i < n; i++) {
		if (!ents[i].is_dir)
			rc = materialize(&mat, &ents[i]);
		if (rc == 0)
			rc = catalog_entry_put(fs->st, "", CKPT_MODEL, id, &ents[i]);
	}
	if (rc < 0 && rc != -ENOMEM)
		store_list(fs->st, prefix, clear_prefix_cb, fs->st);
	/*
	 * The copy is the whole checkpoint only if the source still holds
	 * exactly what was copied now that the copy is stored; from here on
	 * removing the source no longer matters.
	 */
	if (rc == 0) {
		rc = source_unchanged(fs, &src_rec, orig, n_orig);
		if (rc == -ENOENT || rc == -EBUSY) {
			log_error("promote %s -> models/%s: the checkpoint was %s while it was "
				  "copied; nothing published (%s)", src->ckpt, id,
				  rc == -ENOENT ? "removed" : "changed",
				  rc == -ENOENT ? "ENOENT" : "EBUSY");
			logged = 1;
		}
		if (rc < 0)
			store_list(fs->st, prefix, clear_prefix_cb, fs->st);
	}
	if (rc == 0)
		rc = catalog_record_create(fs->st, &rec);
	if (rc == -EEXIST) {
		log_error("promote %s -> models/%s: the model exists (EEXIST)", src->ckpt, id);
		logged = 1;
	}
	published = rc == 0;
	if (rc == 0)
		rc = pin_chunks(fs, ents, n, gone, sizeof(gone));
	if (rc < 0 && published) {
		/* Never leave a model that cannot be read. */
		catalog_ckpt_remove(fs->st, "", CKPT_MODEL, id);
		if (rc == -EIO && gone[0] && !last_try) {
			log_info("promote %s -> models/%s: chunk %s was deleted (by gc) while "
				 "promoting; trying again", src->ckpt, id, gone);
			rc = -EAGAIN;
			logged = 1;
		} else if (rc == -EIO && gone[0]) {
			log_error("promote %s -> models/%s: chunk %s was deleted (by gc) while "
				  "promoting; model removed (EIO)", src->ckpt, id, gone);
			logged = 1;
		}
	}
	if (rc == 0 && mat.pins) {
		/* The entries and the record protect the chunks now. */
		char *pins = NULL;

		if (asprintf(&pins, "%spins/", prefix) >= 0)
			store_list(fs->st, pins, clear_prefix_cb, fs->st);
		free(pins);
	}
	if (rc == 0)
		log_info("promoted %s/%s -> models/%s", src->job, src->ckpt, id);
out:
	for (i = 0; i < mat.n; i++)
		buf_release(&mat.frames[i]);
	codec_ctx_free(mat.ctx);
	/* The model (or what a failed attempt left) is listed from now on. */
	view_ensure(fs, "", CKPT_MODEL, 1);
	for (i = 0; i < n; i++)
		entry_release(&ents[i]);
	for (i = 0; i < n_orig; i++)
		entry_release(&orig[i]);
	free(ents);
	free(orig);
	free(prefix);
	ckpt_record_release(&rec);
	ckpt_record_release(&src_rec);
	if (rc < 0 && !logged && rc != -EINVAL && rc != -EBUSY && rc != -EEXIST &&
	    rc != -ENOENT)
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
	if (p.type != P_CKPT || p.dir != CKPT_MODEL) {
		log_warn("symlink %s: symbolic links exist only as promotions into "
			 "models/ (EPERM)", path);
		return -EPERM;
	}
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


/*
 * A chunk that vanished under a promotion (only a gc with a grace period
 * shorter than the promotion can do that) is stored again by the next try,
 * as long as the source is still there.
 */
#define PROMOTE_TRIES 3

int promote(struct ckfs *fs, const struct fpath *src, const char *id)
{
	int rc, try;

	for (try = 1;; try++) {
		rc = promote_once(fs, src, id, try == PROMOTE_TRIES);
		if (rc != -EAGAIN)
			return rc;
	}
}
