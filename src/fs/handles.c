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
#include "util/name.h"
#include "fs/fs_local.h"

/* ---------------------------------------------------------------- handles */


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

void free_wslot(struct ckfs *fs, struct wslot *s)
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
	h->ino = fpath_ino(&p);
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
	h->ino = fpath_ino(&p);
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
int commit_slot(struct ckfs *fs, struct wslot *ws)
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

