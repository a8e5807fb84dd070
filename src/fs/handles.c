/*
 * handles.c: open files: writer slots, handles, read, write, commit, truncate.
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
#include "util/metrics.h"
#include "util/name.h"
#include "fs/fs_local.h"

/* ---------------------------------------------------------------- handles */


void wslot_ref(struct wslot *s)
{
	s->refs++;
}

static void wslot_destroy(struct wslot *s)
{
	writer_free(s->w);
	free(s->job);
	free(s->ckpt);
	free(s->relpath);
	free(s);
}

void wslot_unref(struct ckfs *fs, struct wslot *s)
{
	struct wslot **pp;
	int last;

	pthread_mutex_lock(&fs->lock);
	last = --s->refs == 0;
	if (last)
		for (pp = &fs->wslots; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				break;
			}
	pthread_mutex_unlock(&fs->lock);
	if (last)
		wslot_destroy(s);
}

void free_all_wslots(struct ckfs *fs)
{
	while (fs->wslots) {
		struct wslot *s = fs->wslots;

		fs->wslots = s->next;
		wslot_destroy(s);
	}
}

enum {
	ACQ_CREATE = 1,		/* a missing file is created (empty) */
	ACQ_EXCL = 2,		/* ... and an existing one is EEXIST */
	ACQ_EMPTY = 4,		/* a new writer starts empty, not from the entry */
};

/* Most base files a file with an unknown name is compared with (each
 * costs the first chunk of that file, at its first chunk). */
#define MAX_HEADER_CANDIDATES 64

/*
 * Copies of the safetensors files of base checkpoint @b (NULL: none): the
 * files a new file whose name matched none may be a version of, decided
 * by its header at its first chunk (writer_offer_bases). Lock held.
 */
static int header_candidates(const struct ckpt *b, struct entry **out, size_t *n_out)
{
	struct entry *v = NULL;
	size_t i, n = 0;

	*out = NULL;
	*n_out = 0;
	for (i = 0; b && i < b->n_ents && n < MAX_HEADER_CANDIDATES; i++) {
		const struct entry *e = b->ents[i].e;
		size_t len = strlen(e->path);

		if (e->is_dir || e->size < 8 || len < 12 ||
		    strcmp(e->path + len - 12, ".safetensors"))
			continue;
		if (!v && !(v = calloc(MAX_HEADER_CANDIDATES, sizeof(*v))))
			return -ENOMEM;
		if (entry_copy(e, &v[n]) < 0) {
			while (n)
				entry_release(&v[--n]);
			free(v);
			return -ENOMEM;
		}
		n++;
	}
	*out = v;
	*n_out = n;
	return 0;
}

/*
 * Find or make the writer slot of file @p and take a reference to it.
 * A new writer is built without fs->lock (it may read the committed
 * content from the store); if another thread made one for the same file
 * meanwhile, that one is shared and ours dropped. *made: ours is new (a
 * new or emptied file then commits at close even with nothing written).
 * Lock NOT held. 0 or -errno.
 */
static int acquire_wslot(struct ckfs *fs, const struct fpath *p, uint32_t new_mode,
			 int flags, struct wslot **out, int *made)
{
	struct entry *initial = NULL, *base = NULL, *cands = NULL;
	size_t n_cands = 0;
	struct wslot *ws = NULL, *found = NULL;
	struct writer *w = NULL;
	int rc = 0, tries = 0, lora = 0, fresh_file = 0;
	uint32_t mode;

	*made = 0;
again:
	mode = new_mode;
	pthread_mutex_lock(&fs->lock);
	{
		struct ckpt *c = find_ckpt(fs, p->job, p->dir, p->ckpt);
		struct ent_slot *es;
		const struct entry *be;

		if (!c) {
			rc = lookup_errno(fs, p->job, p->dir);
			goto unlock;
		}
		found = find_wslot(fs, p);
		if (found) {
			if (flags & ACQ_EXCL)
				rc = -EEXIST;
			else
				wslot_ref(found);
			goto unlock;
		}
		es = find_slot(c, p->rel, NULL);
		if (es && es->e->is_dir) {
			rc = (flags & ACQ_EXCL) ? -EEXIST : -EISDIR;
			goto unlock;
		}
		if (!es) {
			if (is_dir_in(fs, c, p))
				rc = (flags & ACQ_EXCL) ? -EEXIST : -EISDIR;
			else if (!(flags & ACQ_CREATE) || !parent_is_dir(fs, c, p))
				rc = -ENOENT;
			if (rc < 0)
				goto unlock;
		} else if (flags & ACQ_EXCL) {
			rc = -EEXIST;
			goto unlock;
		}
		lora = tries == 0 && lora_pending(fs, c, p->rel);
		if (lora)
			goto unlock;
		fresh_file = !es || (flags & ACQ_EMPTY);
		if (es) {
			mode = es->e->mode;
			if (!(flags & ACQ_EMPTY)) {
				initial = calloc(1, sizeof(*initial));
				if (!initial || entry_copy(es->e, initial) < 0)
					rc = -ENOMEM;
			}
		}
		be = delta_base_entry(fs, c, p->rel);
		if (rc == 0 && be) {
			base = calloc(1, sizeof(*base));
			if (!base || entry_copy(be, base) < 0)
				rc = -ENOMEM;
		} else if (rc == 0 && fresh_file) {
			/* Named as no base file: maybe one by content. */
			rc = header_candidates(delta_base_ckpt(fs, c), &cands, &n_cands);
		}
	}
unlock:
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0 || found)
		goto out;
	if (lora) {
		/* The first file decides: the checkpoint becomes lora (stored
		 * whole, no base), then look again. */
		become_lora(fs, p);
		tries++;
		goto again;
	}
	rc = writer_new(&fs->wenv, mode, initial, base, &w);
	if (rc < 0)
		goto out;
	if (cands) {
		writer_offer_bases(w, cands, n_cands);
		cands = NULL;
	}
	if (fresh_file)
		writer_set_mode(w, mode);	/* dirty: commits even if empty */
	ws = calloc(1, sizeof(*ws));
	if (!ws) {
		rc = -ENOMEM;
		goto out;
	}
	ws->w = w;
	w = NULL;
	ws->job = strdup(p->job);
	ws->ckpt = strdup(p->ckpt);
	ws->relpath = strdup(p->rel);
	ws->dir = p->dir;
	ws->refs = 1;
	if (!ws->job || !ws->ckpt || !ws->relpath) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	if (!find_ckpt(fs, p->job, p->dir, p->ckpt)) {
		rc = lookup_errno(fs, p->job, p->dir);
	} else if ((found = find_wslot(fs, p)) != NULL) {
		/* Another opener was quicker: share its writer. */
		if (flags & ACQ_EXCL)
			rc = -EEXIST;
		else
			wslot_ref(found);
	} else {
		ws->next = fs->wslots;
		fs->wslots = ws;
		found = ws;
		ws = NULL;
		*made = 1;
	}
	pthread_mutex_unlock(&fs->lock);
out:
	if (ws)
		wslot_destroy(ws);
	writer_free(w);
	entry_free(initial);
	entry_free(base);
	for (size_t i = 0; i < n_cands && cands; i++)
		entry_release(&cands[i]);
	free(cands);
	if (rc == 0)
		*out = found;
	return rc;
}

/* Hands @h out as a file handle: linked on fs->open_handles until
 * fs_release (or fs_free, for a RELEASE the kernel never sent). */
static int handle_publish(struct ckfs *fs, struct handle *h, uint64_t *fh)
{
	pthread_mutex_lock(&fs->lock);
	h->open_prev = NULL;
	h->open_next = fs->open_handles;
	if (h->open_next)
		h->open_next->open_prev = h;
	fs->open_handles = h;
	pthread_mutex_unlock(&fs->lock);
	*fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static void handle_unpublish(struct ckfs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->lock);
	if (h->open_prev)
		h->open_prev->open_next = h->open_next;
	else
		fs->open_handles = h->open_next;
	if (h->open_next)
		h->open_next->open_prev = h->open_prev;
	pthread_mutex_unlock(&fs->lock);
}

int fs_create(struct ckfs *fs, const char *path, mode_t mode, int flags, uint64_t *fh)
{
	struct fpath p;
	struct wslot *ws = NULL;
	struct handle *h;
	int rc = parse_path(fs, path, &p), made;

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
	rc = acquire_wslot(fs, &p, mode & 07777,
			   ACQ_CREATE | ((flags & O_TRUNC) ? ACQ_EMPTY : 0) |
			   ((flags & O_EXCL) ? ACQ_EXCL : 0), &ws, &made);
	if (rc < 0) {
		free(h);
		return rc;
	}
	if (!made && (flags & O_TRUNC))
		rc = writer_truncate(ws->w, 0);	/* shared an open writer */
	if (rc < 0) {
		wslot_unref(fs, ws);
		free(h);
		return rc;
	}
	h->type = H_WRITER;
	h->ws = ws;
	h->write_access = 1;
	h->ino = fpath_ino(&p);
	return handle_publish(fs, h, fh);
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
	h->ino = fpath_ino(&p);
	if (p.type == P_JSONL || p.type == P_STATS) {
		if (wants_write) {
			rc = -EACCES;
			goto fail;
		}
		rc = p.type == P_STATS ? metrics_render(&h->content)
				       : jsonl_build(fs, &h->content);
		if (rc < 0)
			goto fail;
		h->type = H_CONTENT;
		*direct = 1;
		return handle_publish(fs, h, fh);
	}
	if (p.type == P_DEPLOY) {
		*direct = 1;
		rc = ctl_deploy_open(fs, p.ckpt, flags, (flags & O_CREAT) != 0, h);
		if (rc < 0)
			goto fail;
		return handle_publish(fs, h, fh);
	}
	if (p.type == P_HOTLOAD) {
		*direct = 1;
		if (wants_write && (rc = refuse_write(fs, &p)) < 0)
			goto fail;
		pthread_mutex_lock(&fs->lock);
		rc = find_ckpt(fs, p.job, p.dir, p.ckpt) ? 0 : lookup_errno(fs, p.job, p.dir);
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
		return handle_publish(fs, h, fh);
	}
	if (p.type != P_INNER) {
		rc = p.type == P_NONE ? -ENOENT : -EISDIR;
		goto fail;
	}
	if (wants_write) {
		int made;

		rc = refuse_write(fs, &p);
		if (rc == 0)
			rc = acquire_wslot(fs, &p, 0, (flags & O_TRUNC) ? ACQ_EMPTY : 0, &ws, &made);
		if (rc < 0)
			goto fail;
		if (!made && (flags & O_TRUNC))
			rc = writer_truncate(ws->w, 0);
		if (rc < 0) {
			wslot_unref(fs, ws);
			goto fail;
		}
		h->type = H_WRITER;
		h->ws = ws;
		h->write_access = 1;
		return handle_publish(fs, h, fh);
	}
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
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
		wslot_ref(ws);
		h->type = H_WRITER;
		h->ws = ws;
	} else {
		rc = entry_copy(es->e, &h->ent);
		h->type = H_ENTRY;
		h->ra = calloc(1, sizeof(*h->ra));
		if (!h->ra && rc == 0)
			rc = -ENOMEM;
		if (h->ra)
			ra_file_init(h->ra);
		/* Committed files are immutable: the kernel may keep their
		 * pages (the FUSE layer's auto_cache drops them when size or
		 * mtime change). */
		*keep_cache = 1;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto fail;
	return handle_publish(fs, h, fh);
fail:
	if (h->ra) {
		ra_file_release(fs->ra, h->ra);
		free(h->ra);
	}
	entry_release(&h->ent);
	buf_release(&h->content);
	free(h->ctl_job);
	free(h->ctl_name);
	free(h);
	return rc;
}

static size_t chunk_len(const struct entry *e, size_t i)
{
	uint64_t off = (uint64_t)i * e->chunk_size;

	return e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
}

static int mem_sink(void *arg, const uint8_t *data, size_t n)
{
	char **p = arg;

	memcpy(*p, data, n);
	*p += n;
	return 0;
}

long fs_read(struct ckfs *fs, uint64_t fh, char *buf, size_t size, uint64_t off)
{
	struct handle *h = to_handle(fh);

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
	return fs_read_sink(fs, fh, mem_sink, &buf, size, off);
}

long fs_read_sink(struct ckfs *fs, uint64_t fh,
		  int (*sink)(void *arg, const uint8_t *data, size_t n), void *arg,
		  size_t size, uint64_t off)
{
	struct handle *h = to_handle(fh);
	const struct entry *e = &h->ent;
	size_t done = 0;

	if (h->type != H_ENTRY) {
		/* Open for writing, or a control file: through a buffer. */
		char *buf = malloc(size ? size : 1);
		long r;

		if (!buf)
			return -ENOMEM;
		r = fs_read(fs, fh, buf, size, off);
		if (r > 0) {
			int rc = sink(arg, (const uint8_t *)buf, (size_t)r);

			if (rc < 0)
				r = rc;
		}
		free(buf);
		return r;
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
		if (h->ra)
			ra_on_read(fs->ra, h->ra, e, pos);
		rc = chunks_get(fs->chunks, &e->chunks[i], clen, &d);
		if (rc < 0)
			return rc;	/* never short: the kernel takes that as EOF */
		rc = sink(arg, d->data + in, n);
		chunks_served(fs->chunks, d, in, n);
		chunks_put(fs->chunks, d);
		if (rc < 0)
			return rc;
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

long fs_write_src(struct ckfs *fs, uint64_t fh, int (*src)(void *arg, uint8_t *dst, size_t n),
		  void *arg, size_t size, uint64_t off)
{
	struct handle *h = to_handle(fh);
	uint8_t *bounce;
	long rc;

	if (h->type == H_WRITER && h->write_access)
		return writer_write_src(h->ws->w, src, arg, size, off);
	/* Control files take small writes whole: no need to be clever. */
	bounce = malloc(size ? size : 1);
	if (!bounce)
		return -ENOMEM;
	rc = src(arg, bounce, size);
	if (rc == 0)
		rc = fs_write(fs, fh, (const char *)bounce, size, off);
	free(bounce);
	return rc;
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

/* Metrics and the log line of one finished commit. */
static void note_commit(const char *name, const char *kind, int rc, double t0,
			uint64_t logical, uint64_t stored)
{
	double secs = metrics_now() - t0;

	metrics_inc(M_COMMITS, kind, rc == 0 ? "ok" : "error", NULL);
	if (rc < 0)
		return;
	metrics_add(M_LOGICAL_BYTES, (double)logical, kind, NULL, NULL);
	metrics_add(M_STORED_BYTES, (double)stored, kind, NULL, NULL);
	metrics_observe(M_COMMIT_SECONDS, secs, kind, NULL, NULL);
	log_info("committed %s (%s): %" PRIu64 " bytes, %" PRIu64 " stored (ratio %.3f) in %.3f s",
		 name, kind, logical, stored, logical ? (double)stored / (double)logical : 0.0,
		 secs);
}

/*
 * Commit the file behind @ws: store its chunks, then its entry, then
 * publish it in the view. The caller holds a reference to @ws. Lock order:
 * the writer, then the mutation turn, then fs->lock; the entry put runs in
 * the turn without fs->lock.
 */
int commit_slot(struct ckfs *fs, struct wslot *ws)
{
	char job[256], ckpt[256], base[256], name[4400];
	struct entry e;
	enum ckpt_dir dir;
	struct ckpt *c;
	int rc, store_rc = 0, delta = 0;
	double created = 0, t0 = metrics_now();
	const char *kind = "unknown";
	uint64_t logical = 0, stored = 0;

	writer_lock(ws->w);
	if (!writer_is_dirty(ws->w)) {
		writer_unlock(ws->w);
		return 0;
	}
	rc = writer_prepare_commit(ws->w, &e);
	pthread_mutex_lock(&fs->lock);
	/* For the log: a rename may change the slot's name once the lock is
	 * free. */
	snprintf(name, sizeof(name), "%s/%s", ws->ckpt, ws->relpath);
	if (rc == 0) {
		rc = turn_begin(fs, "commit", name);
	} else {
		log_error("commit %s: %s", name, strerror(-rc));
	}
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		writer_unlock(ws->w);
		entry_release(&e);
		note_commit(name, kind, rc, t0, 0, 0);
		return rc;
	}
	snprintf(name, sizeof(name), "%s/%s", ws->ckpt, ws->relpath);
	/* The turn keeps the slot's name and unlinked flag still (renames
	 * and unlinks take it too) until ns_end(). */
	if (ws->unlinked) {
		kind = NULL;	/* removed while open: nothing to publish */
		goto out;
	}
	c = find_ckpt(fs, ws->job, ws->dir, ws->ckpt);
	if (!c) {
		rc = lookup_errno(fs, ws->job, ws->dir);
		log_error("commit %s: checkpoint is gone", name);
		goto out;
	}
	snprintf(job, sizeof(job), "%s", ws->job);
	snprintf(ckpt, sizeof(ckpt), "%s", ws->ckpt);
	dir = ws->dir;
	kind = ckpt_kind_name(c->rec.kind);	/* a static string */
	delta = c->rec.kind == KIND_DELTA && c->rec.base;
	if (delta) {
		snprintf(base, sizeof(base), "%s", c->rec.base);
		created = c->rec.created;
	}
	e.path = strdup(ws->relpath);
	if (!e.path) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_unlock(&fs->lock);

	e.commit_s = metrics_now() - t0;	/* the data is durable now */
	rc = store_rc = catalog_entry_put(fs->st, job, dir, ckpt, &e);
	if (rc == 0 && delta) {
		int gone;

		/* From a listing made now: did the base go away while this
		 * delta was written? (A failed listing proves nothing.) */
		pthread_mutex_lock(&fs->lock);
		if (view_ensure_locked(fs, job, dir, 1) == 0) {
			struct ckpt *b = find_ckpt(fs, job, dir, base);

			/* (A checkpoint of that name made later is not it.) */
			gone = !b || b->rec.kind != KIND_BASE || b->rec.created > created;
		} else {
			gone = 0;
		}
		pthread_mutex_unlock(&fs->lock);
		/* Then nothing but our new entry names its chunks now, and a
		 * gc pass in between could have taken them. Check, now that
		 * the entry protects them, rather than commit a file that
		 * cannot be read. */
		if (gone && check_base_chunks(fs, &e) < 0) {
			rc = -EIO;
			log_error("commit %s/%s: the base checkpoint %s and its data were "
				  "deleted while this file was written (EIO)",
				  ckpt, e.path, base);
			catalog_entry_remove(fs->st, job, dir, ckpt, e.path);
		}
	}
	pthread_mutex_lock(&fs->lock);
	c = rc == 0 ? find_ckpt(fs, job, dir, ckpt) : NULL;
	if (rc == 0 && !c) {
		rc = lookup_errno(fs, job, dir);
		log_error("commit %s/%s: checkpoint is gone", ckpt, e.path);
	}
	if (rc == 0) {
		struct entry *pub = calloc(1, sizeof(*pub));
		size_t idx;

		logical = e.size;
		stored = entry_stored_bytes(&e);
		if (find_slot(c, e.path, &idx))
			ckpt_remove_slot(c, idx);
		if (pub) {
			*pub = e;
			memset(&e, 0, sizeof(e));
			ckpt_add_slot(c, pub, NULL);
		}
		writer_mark_clean(ws->w);
	}
out:
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	writer_unlock(ws->w);
	if (rc < 0)
		log_error("commit %s: %s", name, strerror(-rc));
	if (kind)	/* not an unlinked file's no-op */
		note_commit(name, kind, rc, t0, logical, stored);
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

/*
 * Frees @h, already off fs->open_handles. A writer handle with @commit
 * commits what it holds (a release); without, its data goes with the
 * writer's last reference (an abandon at shutdown).
 */
static void handle_free(struct ckfs *fs, struct handle *h, int commit)
{
	if (h->type == H_WRITER) {
		struct wslot *ws = h->ws;

		/* Writes through a shared mmap can arrive after the last flush
		 * (commit_slot() logs why it failed). */
		if (commit && h->write_access && writer_is_dirty(ws->w))
			commit_slot(fs, ws);
		wslot_unref(fs, ws);
	}
	if (h->type == H_DEPLOY)
		ctl_deploy_release(fs, h);
	if (h->ra) {
		ra_file_release(fs->ra, h->ra);
		free(h->ra);
	}
	entry_release(&h->ent);
	buf_release(&h->content);
	free(h->ctl_job);
	free(h->ctl_name);
	free(h);
}

void fs_release(struct ckfs *fs, uint64_t fh)
{
	struct handle *h = to_handle(fh);

	handle_unpublish(fs, h);
	handle_free(fs, h, 1);
}

/* The daemon's shutdown gave up on a handle (src/fuse/mount.c,
 * --shutdown-timeout), or libckptfs closes one it must not commit:
 * fs_release would commit whatever was written so far, a torn file. */
void fs_abandon(struct ckfs *fs, uint64_t fh)
{
	struct handle *h = to_handle(fh);

	handle_unpublish(fs, h);
	/* Deployment and hotload files are validated at release, a torn one
	 * refused: their release is safe. A writer drops its reference
	 * without committing. */
	handle_free(fs, h, h->type != H_WRITER);
}

/* At unmount: handles whose RELEASE never came (the kernel drops queued
 * ones when the connection goes away). Their close already flushed; a
 * writer dirtied since is abandoned, as at a shutdown deadline. */
void free_all_handles(struct ckfs *fs)
{
	struct handle *h, *next;
	int n = 0, dirty = 0;

	pthread_mutex_lock(&fs->lock);
	h = fs->open_handles;
	fs->open_handles = NULL;
	pthread_mutex_unlock(&fs->lock);
	for (; h; h = next) {
		next = h->open_next;
		if (h->type == H_WRITER && h->write_access && writer_is_dirty(h->ws->w))
			dirty++;
		handle_free(fs, h, h->type != H_WRITER);	/* fs_abandon's choice */
		n++;
	}
	if (dirty)
		log_warn("unmount: %d file%s open for writing with data written since the "
			 "last flush; that data was not committed", dirty, dirty == 1 ? "" : "s");
	if (n)
		log_info("unmount: freed %d file handle%s the kernel never released",
			 n, n == 1 ? "" : "s");
}

int fs_fgetattr(struct ckfs *fs, uint64_t fh, struct stat *st)
{
	struct handle *h = to_handle(fh);

	switch (h->type) {
	case H_WRITER: {
		struct wslot *ws = h->ws;
		struct fpath p;

		fill_file(st, writer_mode(ws->w), writer_size(ws->w), writer_mtime(ws->w));
		st->st_ino = (ino_t)h->ino;
		/* A rename moves the file to the inode number of its new name. */
		pthread_mutex_lock(&fs->lock);
		if (!ws->unlinked) {
			memset(&p, 0, sizeof(p));
			p.type = P_INNER;
			p.dir = ws->dir;
			snprintf(p.job, sizeof(p.job), "%s", ws->job);
			snprintf(p.ckpt, sizeof(p.ckpt), "%s", ws->ckpt);
			snprintf(p.rel, sizeof(p.rel), "%s", ws->relpath);
			st->st_ino = (ino_t)fpath_ino(&p);
		} else {
			st->st_nlink = 0;
		}
		pthread_mutex_unlock(&fs->lock);
		return 0;
	}
	case H_ENTRY:
		fill_file(st, h->ent.mode, h->ent.size, h->ent.mtime_ns);
		break;
	default: {
		/* The modes getattr reports for these paths: with
		 * default_permissions the kernel checks what it last saw. */
		int writable = !fs->cfg.read_only &&
			       (h->type == H_DEPLOY ||
				(h->type == H_HOTLOAD && !strcmp(h->ctl_job, fs->job)));

		fill_file(st, writable ? 0644 : 0444, h->content.len,
			  (int64_t)time(NULL) * 1000000000);
		break;
	}
	}
	st->st_ino = (ino_t)h->ino;
	return 0;
}


int fs_truncate(struct ckfs *fs, const char *path, uint64_t fh, uint64_t size)
{
	struct fpath p;
	struct wslot *ws;
	int rc, made;

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
	/* Not open: rewrite through a temporary writer and commit at once;
	 * open: truncate the writer its handles share (they commit). The
	 * reference keeps the slot alive whoever else opens or closes it. */
	rc = acquire_wslot(fs, &p, 0, size ? 0 : ACQ_EMPTY, &ws, &made);
	if (rc < 0)
		return rc;
	rc = writer_truncate(ws->w, size);
	if (rc == 0 && made)
		rc = commit_slot(fs, ws);
	wslot_unref(fs, ws);
	return rc;
}
