/*
 * path.c: path resolution: a mount path -> (job, dir, checkpoint, path inside).
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

/* ---------------------------------------------------------------- paths */


int path_copy_comp(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return -ENAMETOOLONG;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return name_check_component(dst);
}

/* Split "/a/b/c" into components; returns count or -errno. */
int path_split(const char *path, const char *comp[], size_t len[], int max)
{
	int n = 0;

	while (*path) {
		const char *s;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		s = path;
		while (*path && *path != '/')
			path++;
		if (n == max)
			return n + 1;
		comp[n] = s;
		len[n] = (size_t)(path - s);
		n++;
	}
	return n;
}


static int parse_path_raw(struct ckfs *fs, const char *path, struct fpath *p)
{
	const char *c[8];
	size_t l[8];
	int n = path_split(path, c, l, 7), i = 0, rc;

	memset(p, 0, sizeof(*p));
	if (n == 0) {
		p->type = P_ROOT;
		return 0;
	}
#define IS(k, s) (l[k] == strlen(s) && !memcmp(c[k], s, l[k]))
	if (n == 1 && !IS(0, "sampler") && !IS(0, "state") && !IS(0, "models") &&
	    !IS(0, "deployments") && !IS(0, "jobs") && !IS(0, "checkpoints.jsonl") &&
	    !IS(0, ".stats")) {
		p->type = P_NONE;	/* the root holds nothing else */
		return 0;
	}
	if (IS(0, ".stats") && n == 1) {
		p->type = P_STATS;
		return 0;
	}
	if (IS(0, "checkpoints.jsonl") && n == 1) {
		p->type = P_JSONL;
		return 0;
	}
	if (IS(0, "models")) {
		/* Promoted models: the same shape as a job's sampler/, with no
		 * job, read-only (removal is how a model is unpromoted). */
		p->dir = CKPT_MODEL;
		p->job[0] = '\0';
		if (n == 1) {
			p->type = P_KINDDIR;
			return 0;
		}
		/*
		 * models/ID is the model's read-only directory; models/.pinned/ID
		 * names it too (".pinned" is not a valid model id): it is what
		 * readlink(models/ID) answers while the kernel still holds the
		 * symlink that `ln -s` created (see src/fuse/fuse_ops.c).
		 */
		if (IS(1, MODELS_PINNED)) {
			if (n == 2) {
				p->type = P_PINNED;
				return 0;
			}
			rc = path_copy_comp(p->ckpt, sizeof(p->ckpt), c[2], l[2]);
			if (rc < 0)
				return rc;
			if (n == 3) {
				p->type = P_CKPT;
				return 0;
			}
			i = 1;
			goto inner;
		}
		rc = path_copy_comp(p->ckpt, sizeof(p->ckpt), c[1], l[1]);
		if (rc < 0)
			return rc;
		if (n == 2) {
			p->type = P_CKPT;
			return 0;
		}
		i = 0;
		goto inner;
	}
	if (IS(0, "deployments")) {
		if (n == 1) {
			p->type = P_DEPLOYMENTS;
			return 0;
		}
		if (n > 2)
			return -ENOENT;
		p->type = P_DEPLOY;
		return path_copy_comp(p->ckpt, sizeof(p->ckpt), c[1], l[1]);
	}
	if (IS(0, "jobs")) {
		if (n == 1) {
			p->type = P_JOBS;
			return 0;
		}
		rc = path_copy_comp(p->job, sizeof(p->job), c[1], l[1]);
		if (rc < 0)
			return rc;
		if (n == 2) {
			p->type = P_JOB;
			p->own = !strcmp(p->job, fs->job);
			return 0;
		}
		i = 2;
	} else {
		snprintf(p->job, sizeof(p->job), "%s", fs->job);
		i = 0;
	}
	p->own = !strcmp(p->job, fs->job);
	if (IS(i, "sampler"))
		p->dir = CKPT_SAMPLER;
	else if (IS(i, "state"))
		p->dir = CKPT_STATE;
	else
		return -ENOENT;
	if (n == i + 1) {
		p->type = P_KINDDIR;
		return 0;
	}
	rc = path_copy_comp(p->ckpt, sizeof(p->ckpt), c[i + 1], l[i + 1]);
	if (rc < 0)
		return rc;
	if (n == i + 2) {
		p->type = P_CKPT;
		return 0;
	}
inner:
	/* The rest of the path, taken verbatim, is the relative path. */
	{
		const char *rest = c[i + 2];
		size_t rl = strlen(rest);
		const char *cc[2048 / 2];
		size_t ll[2048 / 2];
		int k, m;

		while (rl > 0 && rest[rl - 1] == '/')
			rl--;
		if (rl >= sizeof(p->rel))
			return -ENAMETOOLONG;
		memcpy(p->rel, rest, rl);
		p->rel[rl] = '\0';
		m = path_split(p->rel, cc, ll, 1024);
		if (m > 1024)
			return -ENAMETOOLONG;
		for (k = 0; k < m; k++) {
			char tmp[256];

			rc = path_copy_comp(tmp, sizeof(tmp), cc[k], ll[k]);
			if (rc < 0)
				return rc;
		}
	}
	p->type = P_INNER;
	/* Every checkpoint has a hotload control file (a state checkpoint's
	 * refuses with EINVAL), so the name is reserved in both kinds. */
	if (!strcmp(p->rel, "hotload") && p->dir != CKPT_MODEL)
		p->type = P_HOTLOAD;
#undef IS
	return 0;
}

/*
 * Parse @path; a snapshot alias ("step-1-a1b2c3d4") in the checkpoint
 * position is replaced by the checkpoint's real name, so every operation
 * (and every store key) works on the one true name.
 */
int parse_path(struct ckfs *fs, const char *path, struct fpath *p)
{
	int rc = parse_path_raw(fs, path, p);

	/* Every operation on a checkpoint starts here: bring its listing up
	 * to date now, before any caller takes fs->lock for its lookups. */
	if (rc == 0 && (p->type == P_KINDDIR || p->type == P_PINNED))
		view_ensure(fs, p->job, p->dir, 0);
	if (rc == 0 && (p->type == P_CKPT || p->type == P_INNER || p->type == P_HOTLOAD)) {
		struct ckpt *c;

		view_ensure(fs, p->job, p->dir, 0);
		pthread_mutex_lock(&fs->lock);
		c = find_ckpt(fs, p->job, p->dir, p->ckpt);
		if (c && strcmp(c->rec.name, p->ckpt))
			snprintf(p->ckpt, sizeof(p->ckpt), "%s", c->rec.name);
		if (c && c->bad_key && ckpt_corrupt_refuses(fs, c, p)) {
			log_error("%s: store object %s is corrupt (EIO)", path, c->bad_key);
			metrics_inc(M_CHECKSUM_FAILURES, strstr(c->bad_key, "/entries/") ?
				    "entry" : "record", NULL, NULL);
			rc = -EIO;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	return rc;
}

