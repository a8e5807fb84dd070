/*
 * xattr.c: user.ckptfs.* extended attributes of checkpoints.
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

/* ---------------------------------------------------------------- xattrs */

int promotable(const struct ckpt *c)
{
	size_t i;

	if (c->rec.dir != CKPT_SAMPLER)
		return 0;	/* any kind of sampler checkpoint: deltas materialize */
	for (i = 0; i < c->n_ents; i++)
		if (!c->ents[i].e->is_dir)
			return 1;
	return 0;		/* nothing to serve */
}

static int xattr_value(struct ckfs *fs, const struct ckpt *c, const char *key,
		       char *out, size_t cap)
{
	int n;

	if (!strcmp(key, "kind"))
		n = snprintf(out, cap, "%s", ckpt_kind_name(c->rec.kind));
	else if (!strcmp(key, "base"))
		n = c->rec.base ? snprintf(out, cap, "%s", c->rec.base) : -ENODATA;
	else if (!strcmp(key, "snapshot"))
		n = snprintf(out, cap, "%s-%s", c->rec.name, c->rec.session);
	else if (!strcmp(key, "ttl"))
		n = c->attrs.ttl ? snprintf(out, cap, "%" PRId64, c->attrs.ttl) : -ENODATA;
	else if (!strcmp(key, "expires_at"))
		n = c->attrs.ttl ? snprintf(out, cap, "%.0f", c->rec.created + (double)c->attrs.ttl)
				 : -ENODATA;
	else if (!strcmp(key, "created"))
		n = snprintf(out, cap, "%.3f", c->rec.created);
	else if (!strcmp(key, "logical_bytes"))
		n = snprintf(out, cap, "%" PRIu64, ckpt_logical(c));
	else if (!strcmp(key, "stored_bytes"))
		n = snprintf(out, cap, "%" PRIu64, ckpt_stored(c));
	else if (!strcmp(key, "stored_ratio") || !strcmp(key, "zero_chunk_fraction") ||
		 !strcmp(key, "commit_seconds")) {
		struct ckpt_figures f;
		double v;

		ckpt_figures(c, &f);
		v = key[0] == 's' ? f.ratio : key[0] == 'z' ? f.zero_fraction : f.commit_s;
		n = v < 0 ? -ENODATA : snprintf(out, cap, "%.4f", v);
	} else if (!strcmp(key, "promoted_from"))
		n = c->rec.promoted_from ? snprintf(out, cap, "%s", c->rec.promoted_from) : -ENODATA;
	else if (!strcmp(key, "source_snapshot"))
		n = c->rec.source_snapshot ? snprintf(out, cap, "%s", c->rec.source_snapshot)
					   : -ENODATA;
	else if (!strcmp(key, "promotable"))
		n = snprintf(out, cap, "%s", promotable(c) ? "true" : "false");
	else
		n = -ENODATA;
	(void)fs;
	return n;
}

static const char *const xattr_names[] = {
	"kind", "base", "snapshot", "ttl", "expires_at", "created",
	"logical_bytes", "stored_bytes", "stored_ratio", "zero_chunk_fraction",
	"commit_seconds", "promotable", "promoted_from", "source_snapshot",
};

int fs_getxattr(struct ckfs *fs, const char *path, const char *name, char *value,
		size_t size)
{
	struct fpath p;
	struct ckpt *c;
	char tmp[512];
	int rc = parse_path(fs, path, &p), n;

	if (rc < 0)
		return rc;
	if (p.type == P_ROOT && !strcmp(name, XATTR_PREFIX "stats")) {
		struct store_cache_stats cs;
		struct chunks_stats ks;
		struct ra_stats rs;

		/* What this mount fetched from a remote store (benchmarks and
		 * tests read it; a local store has no cache), what it decoded
		 * and what the read-ahead did. */
		chunks_stats(fs->chunks, &ks);
		ra_get_stats(fs->ra, &rs);
		n = snprintf(tmp, sizeof(tmp),
			     "{\"chunk_hits\":%" PRIu64 ",\"chunk_loads\":%" PRIu64
			     ",\"chunk_waits\":%" PRIu64 ",\"loaded_frame_bytes\":%" PRIu64
			     ",\"decoded_bytes\":%" PRIu64
			     ",\"base_cache_hits\":%" PRIu64 ",\"base_cache_kept\":%" PRIu64
			     ",\"readahead_chunks\":%" PRIu64 ",\"readahead_tensor_chunks\":%" PRIu64
			     ",\"readahead_skipped\":%" PRIu64 ",\"readahead_layouts\":%" PRIu64
			     ",\"readahead_fill_chunks\":%" PRIu64 ",\"readahead_fill_unused\":%" PRIu64,
			     ks.hits, ks.loads, ks.waits, ks.frame_bytes, ks.decoded_bytes,
			     ks.raw_hits, ks.raw_kept,
			     rs.queued, rs.tensor_queued, rs.skipped, rs.layouts,
			     rs.fill_queued, rs.fill_unused);
		if (store_cache_stats(fs->st, &cs) == 0)
			n += snprintf(tmp + n, sizeof(tmp) - (size_t)n,
				      ",\"cache_hits\":%" PRIu64 ",\"cache_misses\":%" PRIu64
				      ",\"fetched_bytes\":%" PRIu64 ",\"cached_bytes\":%" PRIu64,
				      cs.hits, cs.misses, cs.inner_bytes, cs.cached_bytes);
		n += snprintf(tmp + n, sizeof(tmp) - (size_t)n, "}");
		if (size == 0)
			return n;
		if ((size_t)n > size)
			return -ERANGE;
		memcpy(value, tmp, (size_t)n);
		return n;
	}
	if (p.type == P_DEPLOY) {
		n = ctl_deploy_getxattr(fs, p.ckpt, name, tmp, sizeof(tmp));
		if (n < 0 || size == 0)
			return n;
		if ((size_t)n > size)
			return -ERANGE;
		memcpy(value, tmp, (size_t)n);
		return n;
	}
	if (p.type != P_CKPT || strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
		return -ENODATA;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	n = c ? xattr_value(fs, c, name + strlen(XATTR_PREFIX), tmp, sizeof(tmp))
	      : lookup_errno(fs, p.job, p.dir);
	pthread_mutex_unlock(&fs->lock);
	if (n < 0)
		return n;
	if (size == 0)
		return n;
	if ((size_t)n > size)
		return -ERANGE;
	memcpy(value, tmp, (size_t)n);
	return n;
}

int fs_listxattr(struct ckfs *fs, const char *path, char *list, size_t size)
{
	struct fpath p;
	struct ckpt *c;
	struct buf b = BUF_INIT;
	char tmp[512];
	size_t i;
	int rc = parse_path(fs, path, &p);

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT)
		return 0;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	for (i = 0; c && i < sizeof(xattr_names) / sizeof(xattr_names[0]); i++) {
		if (xattr_value(fs, c, xattr_names[i], tmp, sizeof(tmp)) < 0)
			continue;
		buf_printf(&b, "%s%s", XATTR_PREFIX, xattr_names[i]);
		buf_append(&b, "", 1);
	}
	if (!c)
		rc = lookup_errno(fs, p.job, p.dir);
	pthread_mutex_unlock(&fs->lock);
	if (!c)
		;
	else if (size == 0)
		rc = (int)b.len;
	else if (b.len > size)
		rc = -ERANGE;
	else {
		memcpy(list, b.data, b.len);
		rc = (int)b.len;
	}
	buf_release(&b);
	return rc;
}

/* The record that setting kind @val on the empty checkpoint @c stores, in
 * @r (a copy the caller releases). Lock held. */
static int prepare_kind(struct ckfs *fs, struct ckpt *c, const char *val,
			struct ckpt_record *r)
{
	enum ckpt_kind k;

	if (ckpt_kind_parse(val, &k) < 0 || k == KIND_STATE)
		return -EINVAL;
	if (c->rec.dir == CKPT_STATE)
		return -EINVAL;
	if (c->rec.kind == k && k != KIND_DELTA)
		return 1;	/* nothing to do */
	if (c->n_ents || ckpt_has_writers(fs, c->rec.job, c->rec.dir, c->rec.name)) {
		log_error("setxattr kind on %s: checkpoint already holds files", c->rec.name);
		return -EBUSY;
	}
	if (ckpt_record_copy(&c->rec, r) < 0)
		return -ENOMEM;
	free(r->base);
	r->base = NULL;
	r->kind = k;
	if (k == KIND_DELTA) {
		struct view *v = get_view(fs, c->rec.job, c->rec.dir);
		struct ckpt *b = v ? latest_of_kind(v, KIND_BASE) : NULL;

		if (!b || b == c) {
			log_error("setxattr kind=delta on %s: the job has no base", c->rec.name);
			return -EINVAL;
		}
		r->base = strdup(b->rec.name);
		if (!r->base)
			return -ENOMEM;
	}
	return 0;
}

static int parse_ttl(const char *value, size_t size, int64_t *out)
{
	char tmp[32], *end;
	long long v;

	if (size == 0 || size >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, value, size);
	tmp[size] = '\0';
	while (size > 0 && (tmp[size - 1] == '\n' || tmp[size - 1] == ' '))
		tmp[--size] = '\0';
	errno = 0;
	v = strtoll(tmp, &end, 10);
	if (errno || *end || end == tmp || v < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Store a new record (@r) or attrs (@a) of checkpoint @p in the mutation
 * turn, without fs->lock, and apply it to the view. Lock held on entry
 * and exit (dropped meanwhile); the caller holds the turn.
 */
static int store_ckpt_meta(struct ckfs *fs, const struct fpath *p,
			   struct ckpt_record *r, const struct ckpt_attrs *a, int *store_rc)
{
	struct ckpt *c;
	int rc;

	pthread_mutex_unlock(&fs->lock);
	if (r)
		rc = catalog_record_replace(fs->st, r);
	else
		rc = catalog_attrs_put(fs->st, p->job, p->dir, p->ckpt, a);
	*store_rc = rc;
	pthread_mutex_lock(&fs->lock);
	c = find_ckpt(fs, p->job, p->dir, p->ckpt);
	if (rc < 0 || !c)
		return rc;
	if (r) {
		free(c->rec.base);
		c->rec.base = r->base;
		r->base = NULL;
		c->rec.kind = r->kind;
		memset(&c->rec_st, 0, sizeof(c->rec_st));
	} else {
		c->attrs = *a;
		memset(&c->attrs_st, 0, sizeof(c->attrs_st));
	}
	c->gen++;
	return 0;
}

int fs_setxattr(struct ckfs *fs, const char *path, const char *name,
		const char *value, size_t size, int flags)
{
	struct ckpt_record r = { 0 };
	struct fpath p;
	struct ckpt *c;
	const char *key;
	int rc = parse_path(fs, path, &p), store_rc = 0;

	(void)flags;
	if (rc < 0)
		return rc;
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
		return -ENOTSUP;	/* we keep no arbitrary xattrs */
	if (p.type != P_CKPT)
		return -ENOTSUP;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	key = name + strlen(XATTR_PREFIX);
	if (strcmp(key, "kind") && strcmp(key, "ttl")) {
		int known = 0;
		size_t i;

		for (i = 0; i < sizeof(xattr_names) / sizeof(xattr_names[0]); i++)
			known |= !strcmp(key, xattr_names[i]);
		return known ? -EPERM : -ENOTSUP;
	}
	pthread_mutex_lock(&fs->lock);
	rc = turn_begin(fs, "setxattr", path);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
	} else if (!strcmp(key, "kind")) {
		char val[16];

		if (size == 0 || size >= sizeof(val)) {
			rc = -EINVAL;
		} else {
			memcpy(val, value, size);
			val[size] = '\0';
			if (val[size - 1] == '\n')
				val[size - 1] = '\0';
			rc = prepare_kind(fs, c, val, &r);
			if (rc == 0)
				rc = store_ckpt_meta(fs, &p, &r, NULL, &store_rc);
			else if (rc == 1)
				rc = 0;
		}
	} else {
		struct ckpt_attrs a = c->attrs;

		rc = parse_ttl(value, size, &a.ttl);
		if (rc == 0)
			rc = store_ckpt_meta(fs, &p, NULL, &a, &store_rc);
	}
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	ckpt_record_release(&r);
	return rc;
}

int fs_removexattr(struct ckfs *fs, const char *path, const char *name)
{
	struct fpath p;
	struct ckpt *c;
	int rc = parse_path(fs, path, &p), store_rc = 0;

	if (rc < 0)
		return rc;
	if (p.type != P_CKPT || strcmp(name, XATTR_PREFIX "ttl"))
		return strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) ? -ENOTSUP : -EPERM;
	rc = refuse_write(fs, &p);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&fs->lock);
	rc = turn_begin(fs, "removexattr", path);
	if (rc < 0) {
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	c = find_ckpt(fs, p.job, p.dir, p.ckpt);
	if (!c) {
		rc = lookup_errno(fs, p.job, p.dir);
	} else if (!c->attrs.ttl) {
		rc = -ENODATA;
	} else {
		struct ckpt_attrs a = c->attrs;

		a.ttl = 0;
		rc = store_ckpt_meta(fs, &p, NULL, &a, &store_rc);
	}
	ns_end(fs, store_rc);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}
