/*
 * ghost.c: files unlinked while open.
 *
 * Owns:         what the name ".fuse_hidden<n>" means.
 * Does not own: the unlink itself (tree.c) or the open handles (handles.c).
 *
 * libfuse's path API asks for a path on every getattr, and the kernel sends
 * fstat() as a path getattr; a file removed outright (hard_remove) has no
 * path, so fstat() on an open, unlinked file failed with ESTALE. With
 * hard_remove off, libfuse instead renames an open file that is unlinked
 * to ".fuse_hidden<n>" in its directory and unlinks that name after the
 * last close. Here that rename *is* the unlink (the store forgets the file,
 * listings no longer show it), and the hidden name is a ghost that answers
 * getattr (size and mtime of a file still being written stay live) until
 * libfuse unlinks it. Ghosts live in memory only; nothing is stored.
 */
#include "fs/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"
#include "fs/fs_local.h"

#define HIDDEN_PREFIX ".fuse_hidden"

struct ghost {
	char *path;		/* the hidden mount path libfuse chose */
	struct stat st;		/* attributes when it was unlinked */
	int writer;		/* a writer slot renamed to the hidden name */
	struct fpath p;		/* the hidden name, parsed (writer only) */
	struct ghost *next;
};

int ghost_is_hidden(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return !strncmp(base, HIDDEN_PREFIX, strlen(HIDDEN_PREFIX));
}

/* Lock held. */
static struct ghost *find_ghost(struct ckfs *fs, const char *path)
{
	struct ghost *g;

	for (g = fs->ghosts; g; g = g->next)
		if (!strcmp(g->path, path))
			return g;
	return NULL;
}

/* The unlinked writer slot now known by @g's hidden name, if still open. Lock held. */
static struct wslot *ghost_wslot(struct ckfs *fs, const struct ghost *g)
{
	struct wslot *s;

	for (s = fs->wslots; s; s = s->next)
		if (s->unlinked && s->dir == g->p.dir && !strcmp(s->relpath, g->p.rel) &&
		    !strcmp(s->ckpt, g->p.ckpt) && !strcmp(s->job, g->p.job))
			return s;
	return NULL;
}

/* Only libfuse renames to a hidden name; src/fuse refuses to create one. */
int ghost_hide(struct ckfs *fs, const char *from, const char *to)
{
	struct ghost *g = calloc(1, sizeof(*g));
	struct fpath a;
	struct wslot *ws = NULL;
	int rc;

	if (!g)
		return -ENOMEM;
	g->path = strdup(to);
	rc = g->path ? parse_path(fs, from, &a) : -ENOMEM;
	if (rc == 0)
		rc = fs_getattr(fs, from, &g->st);
	if (rc == 0 && a.type == P_INNER) {
		rc = refuse_remove(fs, &a);
		if (rc == 0)
			rc = parse_path(fs, to, &g->p);
		if (rc == 0 && g->p.type != P_INNER)
			rc = -EINVAL;
	}
	if (rc < 0)
		goto fail;
	if (a.type == P_INNER) {
		char *rel = strdup(g->p.rel);

		if (!rel) {
			rc = -ENOMEM;
			goto fail;
		}
		/* A file being written keeps its writer (the open descriptors
		 * write and read it) but under the hidden name, where nothing
		 * lists or commits it. */
		pthread_mutex_lock(&fs->lock);
		ws = find_wslot(fs, &a);
		if (ws) {
			ws->unlinked = 1;
			free(ws->relpath);
			ws->relpath = rel;
			rel = NULL;
			g->writer = 1;
		}
		pthread_mutex_unlock(&fs->lock);
		free(rel);
	}
	/* The committed version, if any, goes as with any unlink. */
	rc = fs_unlink(fs, from);
	if (rc == -ENOENT && ws)
		rc = 0;		/* never committed: the writer was all there was */
	if (rc < 0)
		goto fail;
	pthread_mutex_lock(&fs->lock);
	g->next = fs->ghosts;
	fs->ghosts = g;
	pthread_mutex_unlock(&fs->lock);
	return 0;
fail:
	free(g->path);
	free(g);
	return rc;
}

int ghost_getattr(struct ckfs *fs, const char *path, struct stat *st)
{
	struct ghost *g;
	struct wslot *ws;
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->lock);
	g = find_ghost(fs, path);
	if (g) {
		*st = g->st;
		ws = g->writer ? ghost_wslot(fs, g) : NULL;
		if (ws) {
			fill_file(st, writer_mode(ws->w), writer_size(ws->w), writer_mtime(ws->w));
			st->st_ino = g->st.st_ino;
		}
		st->st_nlink = 0;
		rc = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int ghost_unlink(struct ckfs *fs, const char *path)
{
	struct ghost **pp, *g = NULL;

	pthread_mutex_lock(&fs->lock);
	for (pp = &fs->ghosts; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->path, path)) {
			g = *pp;
			*pp = g->next;
			break;
		}
	pthread_mutex_unlock(&fs->lock);
	if (!g)
		return -ENOENT;
	free(g->path);
	free(g);
	return 0;
}

void ghost_free_all(struct ckfs *fs)
{
	while (fs->ghosts) {
		struct ghost *g = fs->ghosts;

		fs->ghosts = g->next;
		free(g->path);
		free(g);
	}
}
