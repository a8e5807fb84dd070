/*
 * api.c: the public API of libckptfs (include/ckptfs.h) over the core.
 *
 * Owns:         option names -> store_options/fs_config, API paths ->
 *               mount-tree paths, the public handles.
 * Does not own: what any operation means: every call is one or a few
 *               fs_*() calls, the very functions src/fuse/fuse_ops.c
 *               calls for a mount. That is what makes a checkpoint written
 *               here indistinguishable from one written through a mount.
 *
 * Threads: a `ckptfs` is a struct ckfs, which a mount serves from many
 * FUSE threads at once; nothing here adds shared state to it. A
 * `ckptfs_file` holds one fs handle (one thread at a time, as a FUSE fh).
 */
#include "ckptfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "fs/fs.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/name.h"

#define XA "user.ckptfs."

struct ckptfs {
	struct store *st;
	struct ckfs *fs;
	char *job;
	char *spool_dir;
	char *cache_dir;
	char *base_cache_dir;
};

struct ckptfs_file {
	struct ckptfs *h;
	uint64_t fh;
	uint64_t off;		/* next ckptfs_write() offset */
	uint64_t size;		/* readers: the size at open */
	int writing;
};

int ckptfs_api_version(void)
{
	return CKPTFS_API_VERSION;
}

const char *ckptfs_version(void)
{
	return CKPTFS_VERSION;
}

/* "sampler/x" or "/sampler/x" -> "/sampler/x" in @out. */
static int mpath(const char *path, char *out, size_t cap)
{
	int n;

	if (!path)
		return -EINVAL;
	while (*path == '/')
		path++;
	n = snprintf(out, cap, "/%s", path);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	/* A trailing '/' names the same directory. */
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return 0;
}

/* ---- options ---- */

static int parse_num(const char *name, const char *v, double lo, double hi, double *out)
{
	char *end;
	double d;

	if (!v || !*v)
		goto bad;
	errno = 0;
	d = strtod(v, &end);
	if (errno || *end || d < lo || d > hi)
		goto bad;
	*out = d;
	return 0;
bad:
	log_error("option %s: bad value '%s'", name, v ? v : "");
	return -EINVAL;
}

static int parse_bool(const char *name, const char *v, int *out)
{
	if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) {
		*out = 1;
		return 0;
	}
	if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) {
		*out = 0;
		return 0;
	}
	log_error("option %s: bad value '%s'", name, v);
	return -EINVAL;
}

struct open_opts {
	struct fs_config cfg;
	struct store_options sopt;
	int create;
	unsigned cache_size_mib;
};

static int set_option(struct ckptfs *h, struct open_opts *o, const char *opt)
{
	char name[64];
	const char *eq, *v = NULL;
	size_t n;
	double d;
	int rc = 0, b;

	while (*opt == '-')
		opt++;
	eq = strchr(opt, '=');
	n = eq ? (size_t)(eq - opt) : strlen(opt);
	if (n == 0 || n >= sizeof(name)) {
		log_error("option '%s': unknown", opt);
		return -EINVAL;
	}
	memcpy(name, opt, n);
	name[n] = '\0';
	for (char *p = name; *p; p++)
		if (*p == '_')
			*p = '-';
	if (eq)
		v = eq + 1;
#define NUM(lo, hi) (rc = parse_num(name, v, (lo), (hi), &d)) < 0 ? rc
	if (!strcmp(name, "delta-policy")) {
		if (v && !strcmp(v, "auto"))
			o->cfg.delta_policy = DELTA_AUTO;
		else if (v && !strcmp(v, "never"))
			o->cfg.delta_policy = DELTA_NEVER;
		else
			goto bad;
	} else if (!strcmp(name, "base-every")) {
		if (NUM(0, INT_MAX) : 0)
			return rc;
		o->cfg.base_every = (int)d;
	} else if (!strcmp(name, "delta-max-ratio")) {
		if (NUM(1e-9, 1e9) : 0)
			return rc;
		o->cfg.delta_max_ratio = d;
	} else if (!strcmp(name, "lora")) {
		if ((rc = parse_bool(name, v, &b)) < 0)
			return rc;
		o->cfg.lora = b;
	} else if (!strcmp(name, "read-only") || !strcmp(name, "ro")) {
		if ((rc = parse_bool(name, v, &b)) < 0)
			return rc;
		o->cfg.read_only = b;
	} else if (!strcmp(name, "create")) {
		if ((rc = parse_bool(name, v, &b)) < 0)
			return rc;
		o->create = b;
	} else if (!strcmp(name, "insecure-tls")) {
		if ((rc = parse_bool(name, v, &b)) < 0)
			return rc;
		o->sopt.insecure_tls = b;
	} else if (!strcmp(name, "default-ttl")) {
		if (NUM(0, 1e15) : 0)
			return rc;
		o->cfg.default_ttl = (int64_t)d;
	} else if (!strcmp(name, "chunk-kib")) {
		if (NUM(4, 1 << 20) : 0)
			return rc;
		o->cfg.chunk_size = (uint32_t)d * 1024u;
	} else if (!strcmp(name, "base-cache-mib")) {
		if (NUM(1, 1 << 30) : 0)
			return rc;
		o->cfg.base_cache_bytes = (uint64_t)d << 20;
	} else if (!strcmp(name, "cache-mib")) {
		if (NUM(1, 1 << 24) : 0)
			return rc;
		o->cfg.cache_bytes = (uint64_t)d << 20;
	} else if (!strcmp(name, "list-ttl")) {
		if (NUM(0, 1e9) : 0)
			return rc;
		if (d > 0)
			o->cfg.list_ttl = d;
	} else if (!strcmp(name, "threads")) {
		if (NUM(0, 1024) : 0)
			return rc;
		o->cfg.threads = (int)d;
	} else if (!strcmp(name, "gc-interval")) {
		if (NUM(0, 1e12) : 0)
			return rc;
		o->cfg.gc_interval = d;
	} else if (!strcmp(name, "gc-grace")) {
		if (NUM(0, 1e15) : 0)
			return rc;
		o->cfg.gc_grace = (int64_t)d;
	} else if (!strcmp(name, "cache-size")) {
		if (NUM(1, 1 << 30) : 0)
			return rc;
		o->cache_size_mib = (unsigned)d;
	} else if (!strcmp(name, "spool-dir") || !strcmp(name, "cache-dir") ||
		   !strcmp(name, "base-cache-dir")) {
		char **slot = name[0] == 's' ? &h->spool_dir :
			      name[0] == 'c' ? &h->cache_dir : &h->base_cache_dir;

		if (!v || !*v)
			goto bad;
		free(*slot);
		*slot = strdup(v);
		if (!*slot)
			return -ENOMEM;
	} else {
		log_error("option '%s': unknown", name);
		return -EINVAL;
	}
#undef NUM
	return 0;
bad:
	log_error("option %s: bad value '%s'", name, v ? v : "");
	return -EINVAL;
}

/* 1 if @st holds the format marker, 0 if not, or -errno. */
static int has_marker(struct store *st)
{
	struct store_stat ss;
	int rc = store_head(st, "format.json", &ss);

	if (rc == 0)
		return 1;
	return rc == -ENOENT ? 0 : rc;
}

int ckptfs_store_exists(const char *store)
{
	struct store_options sopt = { 0 };
	struct store *st;
	int rc;

	if (!store || !*store)
		return -EINVAL;
	if (strncmp(store, "s3://", 5)) {
		/* A directory: look, without opening (which makes .tmp/). */
		char path[PATH_MAX];
		struct stat sb;

		if (!strncmp(store, "file://", 7))
			store += 7;
		if (snprintf(path, sizeof(path), "%s/format.json", store) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		if (stat(path, &sb) == 0)
			return S_ISREG(sb.st_mode);
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	}
	rc = store_open(store, &sopt, &st);
	if (rc < 0)
		return rc;
	rc = has_marker(st);
	store_free(st);
	return rc;
}

int ckptfs_open(const char *store, const char *job, const char *const *options,
		ckptfs **out)
{
	struct open_opts o;
	struct ckptfs *h;
	int rc;

	*out = NULL;
	if (!store || !*store)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	memset(&o, 0, sizeof(o));
	fs_config_defaults(&o.cfg);
	o.cfg.gc_interval = 0;	/* a program's handle: `ckptfs gc` or a mount collects */
	o.create = 1;
	for (; options && *options; options++) {
		rc = set_option(h, &o, *options);
		if (rc < 0)
			goto fail;
	}
	if (job && *job)
		o.cfg.job = job;
	h->job = strdup(o.cfg.job ? o.cfg.job : "default");
	if (!h->job) {
		rc = -ENOMEM;
		goto fail;
	}
	if (name_check_component(h->job) < 0) {
		log_error("job '%s': invalid name", h->job);
		rc = -EINVAL;
		goto fail;
	}
	o.cfg.job = h->job;
	o.cfg.spool_dir = h->spool_dir;
	o.cfg.base_cache_dir = h->base_cache_dir;
	o.sopt.create = o.create && !o.cfg.read_only;
	o.sopt.cache_dir = h->cache_dir;
	o.sopt.cache_bytes = (uint64_t)(o.cache_size_mib ? o.cache_size_mib : 10240) << 20;
	if (!o.create || o.cfg.read_only) {
		/* Look before opening: opening a directory makes .tmp/ in it. */
		rc = ckptfs_store_exists(store);
		if (rc == 0) {
			log_error("store %s: no ckptfs store there (no format.json)", store);
			rc = -ENOENT;
		}
		if (rc < 0)
			goto fail;
	}
	rc = store_open(store, &o.sopt, &h->st);
	if (rc < 0)
		goto fail;
	if (strncmp(store, "s3://", 5))
		o.cfg.statfs_path = store;
	rc = fs_new(h->st, &o.cfg, &h->fs);
	if (rc < 0)
		goto fail;
	rc = fs_start(h->fs);
	if (rc < 0)
		goto fail;
	*out = h;
	return 0;
fail:
	ckptfs_close(h);
	return rc;
}

void ckptfs_close(ckptfs *h)
{
	if (!h)
		return;
	fs_free(h->fs);
	store_free(h->st);
	free(h->job);
	free(h->spool_dir);
	free(h->cache_dir);
	free(h->base_cache_dir);
	free(h);
}

const char *ckptfs_job(const ckptfs *h)
{
	return h->job;
}

/* ---- listing ---- */

static void to_api_stat(const struct stat *sb, struct ckptfs_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->type = S_ISDIR(sb->st_mode) ? CKPTFS_DIR : CKPTFS_FILE;
	st->size = S_ISDIR(sb->st_mode) ? 0 : (uint64_t)sb->st_size;
	st->mtime = (int64_t)sb->st_mtime;
	st->mode = (uint32_t)(sb->st_mode & 07777);
}

int ckptfs_stat(ckptfs *h, const char *path, struct ckptfs_stat *st)
{
	char p[PATH_MAX];
	struct stat sb;
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	rc = fs_getattr(h->fs, p, &sb);
	if (rc < 0)
		return rc;
	to_api_stat(&sb, st);
	return 0;
}

struct rd {
	ckptfs_dirent_fn cb;
	void *arg;
	struct ckfs *fs;	/* set: each entry is stat'ed in directory @dir */
	const char *dir;
	int rc;
};

static int rd_fill(void *arg, const char *name, const struct stat *sb)
{
	struct rd *r = arg;
	struct ckptfs_stat st;
	struct stat own;

	(void)sb;	/* the core's readdir gives inode numbers only */
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (r->fs) {
		char p[PATH_MAX];
		int rc;

		if (snprintf(p, sizeof(p), "%s/%s", strcmp(r->dir, "/") ? r->dir : "", name) >=
		    (int)sizeof(p)) {
			r->rc = -ENAMETOOLONG;
			return 1;
		}
		rc = fs_getattr(r->fs, p, &own);
		if (rc == -ENOENT)
			return 0;	/* gone since the listing */
		if (rc < 0) {
			r->rc = rc;
			return 1;
		}
		to_api_stat(&own, &st);
	}
	r->rc = r->cb(r->arg, name, r->fs ? &st : NULL);
	return r->rc != 0;
}

int ckptfs_readdir(ckptfs *h, const char *path, ckptfs_dirent_fn cb, void *arg)
{
	char p[PATH_MAX];
	struct rd r = { cb, arg, h->fs, p, 0 };
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	rc = fs_readdir(h->fs, p, rd_fill, &r);
	return r.rc ? r.rc : rc;
}

int ckptfs_list_jobs(ckptfs *h, ckptfs_dirent_fn cb, void *arg)
{
	struct rd r = { cb, arg, NULL, NULL, 0 };
	int rc = fs_readdir(h->fs, "/jobs", rd_fill, &r);

	return r.rc ? r.rc : rc;
}

/* The value of xattr user.ckptfs.@key of @p, NUL-terminated in @out; ""
 * when the checkpoint has none. */
static int get_xa(struct ckfs *fs, const char *p, const char *key, char *out, size_t cap)
{
	char name[64];
	int n;

	snprintf(name, sizeof(name), XA "%s", key);
	n = fs_getxattr(fs, p, name, out, cap - 1);
	if (n == -ENODATA) {
		out[0] = '\0';
		return 0;
	}
	if (n < 0)
		return n;
	out[n] = '\0';
	return 0;
}

enum { I_KIND, I_BASE, I_SNAP, I_TTL, I_EXP, I_CREATED, I_LOG, I_STORED, I_PROM, I_N };
static const char *const info_keys[I_N] = {
	"kind", "base", "snapshot", "ttl", "expires_at", "created",
	"logical_bytes", "stored_bytes", "promotable",
};
#define INFO_CAP 512

int ckptfs_info(ckptfs *h, const char *path, struct ckptfs_info *out)
{
	char p[PATH_MAX], *store, *slash;
	struct stat sb;
	int rc = mpath(path, p, sizeof(p)), i;

	memset(out, 0, sizeof(*out));
	if (rc < 0)
		return rc;
	rc = fs_getattr(h->fs, p, &sb);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	/* Room for the values, then "dir\0name\0". */
	store = calloc(1, (size_t)I_N * INFO_CAP + strlen(p) + 2);
	if (!store)
		return -ENOMEM;
	for (i = 0; i < I_N; i++) {
		rc = get_xa(h->fs, p, info_keys[i], store + (size_t)i * INFO_CAP, INFO_CAP);
		if (rc < 0) {
			free(store);
			/* A folder that is not a checkpoint has no kind. */
			return rc == -ENOTSUP || rc == -ENODATA ? -EINVAL : rc;
		}
	}
	if (!store[I_KIND * INFO_CAP]) {
		free(store);
		return -EINVAL;
	}
	{
		char *dn = store + (size_t)I_N * INFO_CAP;

		strcpy(dn, p);
		slash = strrchr(dn, '/');
		*slash = '\0';
		out->name = slash + 1;
		slash = strrchr(dn, '/');
		out->dir = slash ? slash + 1 : dn;
	}
#define V(i) (store + (size_t)(i) * INFO_CAP)
	out->kind = V(I_KIND);
	out->base = V(I_BASE);
	out->snapshot = V(I_SNAP);
	out->ttl = strtoll(V(I_TTL), NULL, 10);
	out->expires_at = strtod(V(I_EXP), NULL);
	out->created = strtod(V(I_CREATED), NULL);
	out->logical_bytes = strtoull(V(I_LOG), NULL, 10);
	out->stored_bytes = strtoull(V(I_STORED), NULL, 10);
	out->promotable = !strcmp(V(I_PROM), "true");
#undef V
	out->priv_ = store;
	return 0;
}

void ckptfs_info_release(struct ckptfs_info *info)
{
	if (!info)
		return;
	free(info->priv_);
	memset(info, 0, sizeof(*info));
}

struct names {
	char **v;
	size_t n, cap;
};

static int names_add(void *arg, const char *name, const struct ckptfs_stat *st)
{
	struct names *ns = arg;

	(void)st;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		char **v = realloc(ns->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n] = strdup(name);
	return ns->v[ns->n] ? (ns->n++, 0) : -ENOMEM;
}

static void names_free(struct names *ns)
{
	while (ns->n)
		free(ns->v[--ns->n]);
	free(ns->v);
	ns->v = NULL;
	ns->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ckptfs_list(ckptfs *h, ckptfs_info_fn cb, void *arg)
{
	static const char *const dirs[] = { "sampler", "state" };
	size_t d, i;
	int rc = 0;

	for (d = 0; d < 2 && rc == 0; d++) {
		struct names ns = { 0 };
		struct rd r = { names_add, &ns, NULL, NULL, 0 };
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "/%s", dirs[d]);
		rc = fs_readdir(h->fs, p, rd_fill, &r);
		if (r.rc)
			rc = r.rc;
		if (rc == 0 && ns.n)	/* qsort(NULL, 0) is undefined */
			qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
		for (i = 0; i < ns.n && rc == 0; i++) {
			struct ckptfs_info info;

			snprintf(p, sizeof(p), "%s/%s", dirs[d], ns.v[i]);
			rc = ckptfs_info(h, p, &info);
			if (rc == -ENOENT) {	/* removed or expired since the listing */
				rc = 0;
				continue;
			}
			if (rc == 0) {
				rc = cb(arg, &info);
				ckptfs_info_release(&info);
			}
		}
		names_free(&ns);
	}
	return rc;
}

int ckptfs_checkpoints_jsonl(ckptfs *h, char **out, size_t *len)
{
	struct buf b = BUF_INIT;
	char tmp[1 << 16];
	uint64_t fh, off = 0;
	int keep, direct, rc;
	long n;

	*out = NULL;
	*len = 0;
	rc = fs_open(h->fs, "/checkpoints.jsonl", O_RDONLY, &fh, &keep, &direct);
	if (rc < 0)
		return rc;
	while ((n = fs_read(h->fs, fh, tmp, sizeof(tmp), off)) > 0) {
		rc = buf_append(&b, tmp, (size_t)n);
		if (rc < 0)
			break;
		off += (uint64_t)n;
	}
	if (n < 0)
		rc = (int)n;
	fs_release(h->fs, fh);
	if (rc == 0)
		rc = buf_append(&b, "", 1);
	if (rc < 0) {
		buf_release(&b);
		return rc;
	}
	*len = b.len - 1;
	*out = (char *)b.data;	/* buf's storage is malloc'ed: the caller frees it */
	return 0;
}

/* ---- creating ---- */

/* The number of leading components of @p ("/a/b/c") that name the
 * checkpoint: 2 (sampler/X), 4 (jobs/J/sampler/X); 0 if none. */
static int ckpt_depth(const char *p)
{
	if (!strncmp(p, "/jobs/", 6))
		return 4;
	if (!strncmp(p, "/sampler/", 9) || !strncmp(p, "/state/", 7) ||
	    !strncmp(p, "/models/", 8))
		return 2;
	return 0;
}

/* The prefix of @p made of its first @k components, in @out. */
static void prefix_of(const char *p, int k, char *out, size_t cap)
{
	const char *s = p;
	int i;

	for (i = 0; i < k && s; i++)
		s = strchr(s + 1, '/');
	snprintf(out, cap, "%.*s", s ? (int)(s - p) : (int)strlen(p), p);
}

int ckptfs_mkckpt(ckptfs *h, const char *path, const char *kind)
{
	char p[PATH_MAX];
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	rc = fs_mkdir(h->fs, p, 0755);
	if (rc < 0)
		return rc;
	if (kind && *kind) {
		rc = fs_setxattr(h->fs, p, XA "kind", kind, strlen(kind), 0);
		if (rc < 0)
			(void)fs_rmdir(h->fs, p);	/* nothing of it was asked for */
	}
	return rc;
}

/* mkdir -p of the folders of @p below its checkpoint, up to and
 * including component @upto (the whole path when @upto is 0). */
static int mkdirs_in(struct ckfs *fs, const char *p, int whole)
{
	char sub[PATH_MAX];
	int k, depth = ckpt_depth(p), n = 0, rc;
	const char *s;

	if (!depth)
		return -EPERM;
	for (s = p; *s; s++)
		n += *s == '/';
	if (!whole)
		n--;		/* the last component is the file itself */
	for (k = depth + 1; k <= n; k++) {
		prefix_of(p, k, sub, sizeof(sub));
		rc = fs_mkdir(fs, sub, 0755);
		if (rc < 0 && rc != -EEXIST)
			return rc;
	}
	return 0;
}

int ckptfs_mkdirs(ckptfs *h, const char *path)
{
	char p[PATH_MAX];
	int rc = mpath(path, p, sizeof(p));

	return rc < 0 ? rc : mkdirs_in(h->fs, p, 1);
}

static int new_file(struct ckptfs *h, uint64_t fh, int writing, uint64_t size,
		    ckptfs_file **out)
{
	struct ckptfs_file *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->h = h;
	f->fh = fh;
	f->writing = writing;
	f->size = size;
	*out = f;
	return 0;
}

int ckptfs_create(ckptfs *h, const char *path, uint32_t mode, int flags, ckptfs_file **out)
{
	char p[PATH_MAX], ck[PATH_MAX];
	uint64_t fh;
	int rc = mpath(path, p, sizeof(p)), depth;

	*out = NULL;
	if (rc < 0)
		return rc;
	depth = ckpt_depth(p);
	if (!depth)
		return -EPERM;
	if (flags & CKPTFS_MKCKPT) {
		prefix_of(p, depth, ck, sizeof(ck));
		if (!strcmp(ck, p))
			return -EISDIR;
		rc = fs_mkdir(h->fs, ck, 0755);
		if (rc < 0 && rc != -EEXIST)
			return rc;
	}
	rc = mkdirs_in(h->fs, p, 0);
	if (rc < 0)
		return rc;
	rc = fs_create(h->fs, p, (mode ? mode : 0644) & 07777, O_WRONLY | O_CREAT | O_TRUNC, &fh);
	if (rc < 0)
		return rc;
	rc = new_file(h, fh, 1, 0, out);
	if (rc < 0)
		fs_abandon(h->fs, fh);
	return rc;
}

ssize_t ckptfs_pwrite(ckptfs_file *f, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (!f->writing)
		return -EBADF;
	/* fs_write takes at most what one FUSE request carries at a time in
	 * practice, but any size works: loop for the count's type. */
	while (done < len) {
		size_t n = len - done > (1u << 30) ? (1u << 30) : len - done;
		long w = fs_write(f->h->fs, f->fh, (const char *)buf + done, n, off + done);

		if (w < 0)
			return w;
		if (w == 0)
			return -EIO;
		done += (size_t)w;
	}
	return (ssize_t)len;
}

static int fd_src(void *arg, uint8_t *dst, size_t n)
{
	int fd = *(int *)arg;

	while (n > 0) {
		ssize_t r = read(fd, dst, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* shorter than promised: it shrank */
		dst += r;
		n -= (size_t)r;
	}
	return 0;
}

ssize_t ckptfs_write_fd(ckptfs_file *f, int fd, size_t len)
{
	size_t done = 0;

	if (!f->writing)
		return -EBADF;
	if (fd < 0)
		return -EBADF;
	while (done < len) {
		/* Pieces, so a reader of the file being written (a mount's
		 * read-while-writing) is not held off for the whole file. */
		size_t n = len - done > (64u << 20) ? (64u << 20) : len - done;
		long w = fs_write_src(f->h->fs, f->fh, fd_src, &fd, n, f->off);

		if (w < 0)
			return w;
		done += (size_t)w;
		f->off += (uint64_t)w;
	}
	return (ssize_t)len;
}

struct fd_sink {
	int fd;
	uint64_t off;
};

static int fd_sink(void *arg, const uint8_t *data, size_t n)
{
	struct fd_sink *s = arg;

	while (n > 0) {
		ssize_t w = pwrite(s->fd, data, n, (off_t)s->off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		data += w;
		n -= (size_t)w;
		s->off += (uint64_t)w;
	}
	return 0;
}

/* Bytes [@off, @off + @len) of @f to @sink, in pieces; short only at the end. */
static ssize_t read_to(ckptfs_file *f, int (*sink)(void *arg, const uint8_t *data, size_t n),
		       void *arg, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		size_t n = len - done > (64u << 20) ? (64u << 20) : len - done;
		long r = fs_read_sink(f->h->fs, f->fh, sink, arg, n, off + done);

		if (r < 0)
			return r;
		done += (size_t)r;
		if ((size_t)r < n)
			break;	/* end of file */
	}
	return (ssize_t)done;
}

ssize_t ckptfs_pread_to_fd(ckptfs_file *f, int fd, size_t len, uint64_t off)
{
	struct fd_sink s = { fd, off };

	if (fd < 0)
		return -EBADF;
	return read_to(f, fd_sink, &s, len, off);
}

ssize_t ckptfs_write(ckptfs_file *f, const void *buf, size_t len)
{
	ssize_t n = ckptfs_pwrite(f, buf, len, f->off);

	if (n > 0)
		f->off += (uint64_t)n;
	return n;
}

int ckptfs_commit(ckptfs_file *f)
{
	if (!f->writing)
		return 0;
	return fs_fsync(f->h->fs, f->fh);
}

/* ---- reading ---- */

int ckptfs_open_file(ckptfs *h, const char *path, ckptfs_file **out)
{
	char p[PATH_MAX];
	struct stat sb;
	uint64_t fh;
	int keep, direct, rc = mpath(path, p, sizeof(p));

	*out = NULL;
	if (rc < 0)
		return rc;
	rc = fs_open(h->fs, p, O_RDONLY, &fh, &keep, &direct);
	if (rc < 0)
		return rc;
	rc = fs_fgetattr(h->fs, fh, &sb);
	if (rc == 0 && S_ISDIR(sb.st_mode))
		rc = -EISDIR;
	if (rc == 0)
		rc = new_file(h, fh, 0, (uint64_t)sb.st_size, out);
	if (rc < 0)
		fs_release(h->fs, fh);
	return rc;
}

static int mem_sink(void *arg, const uint8_t *data, size_t n)
{
	uint8_t **p = arg;

	memcpy(*p, data, n);
	*p += n;
	return 0;
}

ssize_t ckptfs_pread(ckptfs_file *f, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	return read_to(f, mem_sink, &p, len, off);
}

uint64_t ckptfs_file_size(const ckptfs_file *f)
{
	struct stat sb;

	if (f->writing && fs_fgetattr(f->h->fs, f->fh, &sb) == 0)
		return (uint64_t)sb.st_size;
	return f->size;
}

int ckptfs_file_close(ckptfs_file *f)
{
	int rc = 0;

	if (!f)
		return 0;
	if (f->writing) {
		rc = fs_flush(f->h->fs, f->fh);
		if (rc < 0) {
			/* Nothing of it is committed; do not let release retry. */
			fs_abandon(f->h->fs, f->fh);
			free(f);
			return rc;
		}
	}
	fs_release(f->h->fs, f->fh);
	free(f);
	return rc;
}

void ckptfs_abort(ckptfs_file *f)
{
	if (!f)
		return;
	if (f->writing)
		fs_abandon(f->h->fs, f->fh);
	else
		fs_release(f->h->fs, f->fh);
	free(f);
}

/* ---- managing ---- */

int ckptfs_promote(ckptfs *h, const char *path, const char *model_id)
{
	char p[PATH_MAX], target[PATH_MAX + 8], link[PATH_MAX];
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	if (!model_id || !*model_id || strchr(model_id, '/'))
		return -EINVAL;
	/* The symlink a shell would make: relative to models/. */
	snprintf(target, sizeof(target), "..%s", p);
	snprintf(link, sizeof(link), "/models/%s", model_id);
	return fs_symlink(h->fs, target, link);
}

int ckptfs_set_ttl(ckptfs *h, const char *path, int64_t seconds)
{
	char p[PATH_MAX], v[32];
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	if (seconds < 0)
		return -EINVAL;
	snprintf(v, sizeof(v), "%lld", (long long)seconds);
	return fs_setxattr(h->fs, p, XA "ttl", v, strlen(v), 0);
}

static int remove_tree(struct ckfs *fs, const char *p, int depth)
{
	struct names ns = { 0 };
	struct rd r = { names_add, &ns, NULL, NULL, 0 };
	struct stat sb;
	size_t i;
	int rc;

	if (depth > 256)
		return -ELOOP;
	rc = fs_getattr(fs, p, &sb);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(sb.st_mode))
		return fs_unlink(fs, p);
	rc = fs_readdir(fs, p, rd_fill, &r);
	if (r.rc)
		rc = r.rc;
	for (i = 0; i < ns.n && rc == 0; i++) {
		char sub[PATH_MAX];

		if (snprintf(sub, sizeof(sub), "%s/%s", p, ns.v[i]) >= (int)sizeof(sub)) {
			rc = -ENAMETOOLONG;
			break;
		}
		rc = remove_tree(fs, sub, depth + 1);
		if (rc == -ENOENT)
			rc = 0;	/* gone meanwhile */
	}
	names_free(&ns);
	return rc < 0 ? rc : fs_rmdir(fs, p);
}

int ckptfs_remove(ckptfs *h, const char *path)
{
	char p[PATH_MAX];
	int rc = mpath(path, p, sizeof(p));

	if (rc < 0)
		return rc;
	if (!ckpt_depth(p))
		return -EPERM;
	return remove_tree(h->fs, p, 0);
}
