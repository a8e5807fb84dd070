/*
 * transfer.c: `ckptfs put`, `ckptfs get`, `ckptfs ls` and `ckptfs cat`:
 * checkpoints in and out of a store without a mount, through the public
 * API only (include/ckptfs.h), so they behave as any program linking
 * libckptfs would (util/par.h, the thread loop, is plain C with no store
 * in it).
 *
 * Locations are STORE[/JOB]/sampler/NAME (or state/NAME, models/ID) with
 * STORE a directory or s3://BUCKET[/PREFIX]; see resolve() for how the
 * store and the job are told apart.
 */
#include "cli/transfer.h"

#include <ckptfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/par.h"

#define IO_BLOCK (4u << 20)
#define PART_SUFFIX ".ckptfs-part"

/* ---- options shared by the four commands ---- */

struct xopts {
	const char *job;
	const char *kind;
	int parallel;
	int quiet;
	int do_fsync;
	const char *opts[32];	/* "name=value" for ckptfs_open() */
	int nopts;
	char *made[32];
};

enum { OPT_JOB = 256, OPT_KIND, OPT_PARALLEL, OPT_FSYNC, OPT_LIB };

/* Mount options handed to ckptfs_open() as they are (ckptfs(8)). */
static const struct option long_opts[] = {
	{ "job", required_argument, NULL, OPT_JOB },
	{ "kind", required_argument, NULL, OPT_KIND },
	{ "parallel", required_argument, NULL, OPT_PARALLEL },
	{ "fsync", no_argument, NULL, OPT_FSYNC },
	{ "quiet", no_argument, NULL, 'q' },
	{ "delta-policy", required_argument, NULL, OPT_LIB },
	{ "base-every", required_argument, NULL, OPT_LIB },
	{ "delta-max-ratio", required_argument, NULL, OPT_LIB },
	{ "lora", no_argument, NULL, OPT_LIB },
	{ "default-ttl", required_argument, NULL, OPT_LIB },
	{ "chunk-kib", required_argument, NULL, OPT_LIB },
	{ "cache-mib", required_argument, NULL, OPT_LIB },
	{ "list-ttl", required_argument, NULL, OPT_LIB },
	{ "spool-dir", required_argument, NULL, OPT_LIB },
	{ "threads", required_argument, NULL, OPT_LIB },
	{ "cache-dir", required_argument, NULL, OPT_LIB },
	{ "base-cache-dir", required_argument, NULL, OPT_LIB },
	{ "base-cache-mib", required_argument, NULL, OPT_LIB },
	{ "cache-size", required_argument, NULL, OPT_LIB },
	{ "insecure-tls", no_argument, NULL, OPT_LIB },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void xopts_free(struct xopts *o)
{
	while (o->nopts)
		free(o->made[--o->nopts]);
}

static int add_lib_opt(struct xopts *o, const char *s)
{
	if (o->nopts >= (int)(sizeof(o->opts) / sizeof(o->opts[0])) - 1)
		return -1;
	o->made[o->nopts] = strdup(s);
	if (!o->made[o->nopts])
		return -1;
	o->opts[o->nopts] = o->made[o->nopts];
	o->nopts++;
	o->opts[o->nopts] = NULL;
	return 0;
}

/* Parse options; returns the index of the first operand, or -1 (usage
 * already printed) or -2 (--help). */
static int parse_opts(int argc, char **argv, struct xopts *o, const char *usage)
{
	int c, idx;

	memset(o, 0, sizeof(*o));
	o->parallel = 2;
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "qh", long_opts, &idx)) != -1) {
		char tmp[PATH_MAX + 64];

		switch (c) {
		case OPT_JOB:
			o->job = optarg;
			break;
		case OPT_KIND:
			o->kind = optarg;
			break;
		case OPT_PARALLEL:
			o->parallel = atoi(optarg);
			if (o->parallel < 1 || o->parallel > 64) {
				fprintf(stderr, "ckptfs: --parallel must be 1..64\n");
				return -1;
			}
			break;
		case OPT_FSYNC:
			o->do_fsync = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case OPT_LIB:
			if (optarg)
				snprintf(tmp, sizeof(tmp), "%s=%s", long_opts[idx].name, optarg);
			else
				snprintf(tmp, sizeof(tmp), "%s", long_opts[idx].name);
			if (add_lib_opt(o, tmp) < 0)
				return -1;
			break;
		case 'h':
			printf("%s", usage);
			return -2;
		default:
			fprintf(stderr, "%s", usage);
			return -1;
		}
	}
	return optind;
}

/* ---- locations ---- */

struct loc {
	char store[PATH_MAX];
	char job[256];
	char path[PATH_MAX];	/* inside the job's tree: "sampler/NAME[/REL]" or "" */
};

/* Strip trailing slashes (keeping "/" and "s3://b/"). */
static void trim(char *s)
{
	size_t n = strlen(s);

	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
}

/*
 * Split @arg, "STORE[/JOB][/DIR/NAME[/REL]]" with DIR one of sampler,
 * state, models, into store, job and path. @need_dir: DIR/NAME is
 * required (put, get, cat) rather than forbidden (ls).
 *
 * STORE and JOB are told apart by the store's marker (format.json): the
 * prefix before DIR is the store if it holds one, else its parent is and
 * the last component is the job. With --job, the prefix is the store. A
 * store that does not exist yet (put creates it) is the whole prefix.
 */
static int resolve(const char *arg, const char *job, int need_dir, struct loc *l)
{
	static const char *const dirs[] = { "/sampler/", "/state/", "/models/" };
	char a[PATH_MAX];
	const char *cut = NULL;
	size_t i;
	int rc;

	memset(l, 0, sizeof(*l));
	if (snprintf(a, sizeof(a), "%s", arg) >= (int)sizeof(a))
		return -ENAMETOOLONG;
	trim(a);
	if (need_dir) {
		/* The leftmost DIR whose prefix resolves to a store wins;
		 * without one, the last DIR (a new store). */
		const char *p;
		const char *last = NULL;

		for (p = a; *p; p++) {
			for (i = 0; i < 3; i++) {
				size_t n = strlen(dirs[i]);

				if (strncmp(p, dirs[i], n) || !p[n])
					continue;
				if (!last || p > last)
					last = p;
				if (!cut) {
					char pre[PATH_MAX], *slash;

					snprintf(pre, sizeof(pre), "%.*s", (int)(p - a), a);
					if (ckptfs_store_exists(pre) == 1) {
						cut = p;
					} else if (!job && (slash = strrchr(pre, '/')) &&
						   slash > pre) {
						*slash = '\0';
						if (ckptfs_store_exists(pre) == 1)
							cut = p;
					}
				}
			}
		}
		if (!cut)
			cut = last;
		if (!cut) {
			fprintf(stderr, "ckptfs: %s: expected STORE[/JOB]/sampler/NAME "
				"(or state/NAME, models/ID)\n", arg);
			return -EINVAL;
		}
		snprintf(l->path, sizeof(l->path), "%s", cut + 1);
		snprintf(l->store, sizeof(l->store), "%.*s", (int)(cut - a), a);
	} else {
		snprintf(l->store, sizeof(l->store), "%s", a);
	}
	if (!l->store[0]) {
		fprintf(stderr, "ckptfs: %s: no store\n", arg);
		return -EINVAL;
	}
	if (job) {
		snprintf(l->job, sizeof(l->job), "%s", job);
		return 0;
	}
	rc = ckptfs_store_exists(l->store);
	if (rc == 1 || (need_dir && !cut))
		return 0;	/* the store itself; job "default" */
	{
		char *slash = strrchr(l->store, '/');

		if (slash && slash > l->store && slash[1]) {
			char parent[PATH_MAX];

			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - l->store), l->store);
			if (ckptfs_store_exists(parent) == 1) {
				snprintf(l->job, sizeof(l->job), "%s", slash + 1);
				*slash = '\0';
				return 0;
			}
		}
	}
	return 0;
}

/*
 * The mount's default of 3 workers per CPU, at most 6: each worker keeps
 * a chunk or two in flight, so this bounds put's and get's memory on big
 * machines too (a later --threads wins).
 */
static const char *bounded_threads(void)
{
	static char opt[32];
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	snprintf(opt, sizeof(opt), "threads=%ld", n < 1 ? 3 : (3 * n > 6 ? 6 : 3 * n));
	return opt;
}

/* ---- N threads over a list of items (util/par.h), every item tried ---- */

struct keep_going {
	void *ctx;
	int (*work)(void *ctx, size_t i);
	atomic_int failed;
};

/* A failed file is reported by @work and does not stop the others. */
static int keep_going_step(size_t i, void *arg)
{
	struct keep_going *kg = arg;

	if (kg->work(kg->ctx, i) < 0)
		atomic_store(&kg->failed, 1);
	return 0;
}

/* Run @work on items 0..n-1 with @threads threads; -1 if any failed. */
static int queue_run(size_t n, int threads, void *ctx, int (*work)(void *, size_t))
{
	struct keep_going kg = { .ctx = ctx, .work = work };

	atomic_init(&kg.failed, 0);
	par_each(n, threads > 0 ? (unsigned)threads : 1, keep_going_step, &kg, NULL);
	return atomic_load(&kg.failed) ? -1 : 0;
}

struct files {
	char **src, **rel;	/* local path, path inside the checkpoint */
	uint64_t *size;
	size_t n, cap;
};

static int files_add(struct files *f, const char *src, const char *rel, uint64_t size)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 32;
		char **s = realloc(f->src, cap * sizeof(*s));

		if (s)
			f->src = s;
		s = s ? realloc(f->rel, cap * sizeof(*s)) : NULL;
		if (s)
			f->rel = s;
		if (s) {
			uint64_t *z = realloc(f->size, cap * sizeof(*z));

			if (!z)
				return -ENOMEM;
			f->size = z;
		}
		if (!s)
			return -ENOMEM;
		f->cap = cap;
	}
	f->src[f->n] = src ? strdup(src) : NULL;
	f->rel[f->n] = strdup(rel);
	f->size[f->n] = size;
	if ((src && !f->src[f->n]) || !f->rel[f->n])
		return -ENOMEM;
	f->n++;
	return 0;
}

static void files_free(struct files *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		free(f->src[i]);
		free(f->rel[i]);
	}
	free(f->src);
	free(f->rel);
	free(f->size);
}

/* ---- put ---- */

/* Every regular file under local directory @dir, relative to @base. */
static int walk_local(struct files *f, const char *dir, const char *rel)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		fprintf(stderr, "ckptfs: %s: %s\n", dir, strerror(errno));
		return -errno;
	}
	while (rc == 0 && (de = readdir(d))) {
		char p[PATH_MAX], r[PATH_MAX];
		struct stat sb;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= (int)sizeof(p) ||
		    snprintf(r, sizeof(r), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
			    (int)sizeof(r)) {
			rc = -ENAMETOOLONG;
			break;
		}
		if (stat(p, &sb) < 0) {
			fprintf(stderr, "ckptfs: %s: %s\n", p, strerror(errno));
			rc = -errno;
		} else if (S_ISDIR(sb.st_mode)) {
			rc = walk_local(f, p, r);
		} else if (S_ISREG(sb.st_mode)) {
			rc = files_add(f, p, r, (uint64_t)sb.st_size);
		} else {
			fprintf(stderr, "ckptfs: %s: not a regular file, skipped\n", p);
		}
	}
	closedir(d);
	return rc;
}

struct put_ctx {
	ckptfs *h;
	const char *ckpt;	/* "sampler/NAME" */
	struct files *files;
	int quiet;
};

static int put_one(void *arg, size_t i)
{
	struct put_ctx *c = arg;
	char path[PATH_MAX * 2];
	ckptfs_file *f = NULL;
	struct stat sb;
	char *buf = NULL;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", c->ckpt, c->files->rel[i]);
	fd = open(c->files->src[i], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		fprintf(stderr, "ckptfs: %s: %s\n", c->files->src[i], strerror(-rc));
		return rc;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rc = fstat(fd, &sb) < 0 ? -errno : 0;
	if (rc == 0)
		rc = ckptfs_create(c->h, path, (uint32_t)(sb.st_mode & 0777), 0, &f);
	/* A regular file of known size: read straight into the encoder's
	 * buffers. Then whatever follows (it grew meanwhile) as a stream. */
	if (rc == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
		ssize_t n = ckptfs_write_fd(f, fd, (size_t)sb.st_size);

		if (n < 0)
			rc = (int)n;
	}
	if (rc == 0) {
		buf = malloc(IO_BLOCK);
		rc = buf ? 0 : -ENOMEM;
	}
	while (rc == 0) {
		ssize_t n = read(fd, buf, IO_BLOCK);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		n = ckptfs_write(f, buf, (size_t)n);
		if (n < 0)
			rc = (int)n;
	}
	if (f) {
		if (rc == 0)
			rc = ckptfs_file_close(f);
		else
			ckptfs_abort(f);
	}
	if (rc < 0)
		fprintf(stderr, "ckptfs: put %s: %s\n", path, strerror(-rc));
	else if (!c->quiet)
		printf("%s\n", path);
	free(buf);
	close(fd);
	return rc;
}

static const char put_usage[] =
	"usage: ckptfs put [options] STORE[/JOB]/sampler/NAME FILE_OR_DIR...\n"
	"       ckptfs put [options] STORE[/JOB]/state/NAME FILE_OR_DIR...\n"
	"Store files as a checkpoint, encoded as a copy into a mount would be\n"
	"(base, delta against the job's latest base, LoRA, state). A directory\n"
	"contributes its contents (like `cp -r DIR/. CKPT/`).\n"
	"  --job=ID           the job (else told from the location)\n"
	"  --kind=K           base, delta or lora: force the kind of a new checkpoint\n"
	"  --parallel=N       files written at once (default 2)\n"
	"  -q, --quiet        do not print each file stored\n"
	"  and the mount's encoding options: --delta-policy, --base-every,\n"
	"  --delta-max-ratio, --lora, --default-ttl, --chunk-kib, --threads,\n"
	"  --spool-dir, --insecure-tls (ckptfs(8)).\n";

int xfer_put_main(int argc, char **argv)
{
	struct xopts o;
	struct loc l;
	struct files files = { 0 };
	struct put_ctx c;
	ckptfs *h = NULL;
	int first = parse_opts(argc, argv, &o, put_usage), rc, i, depth = 0;
	const char *s;

	if (first < 0)
		return first == -2 ? 0 : 2;
	if (argc - first < 2) {
		fprintf(stderr, "%s", put_usage);
		return 2;
	}
	if (resolve(argv[first], o.job, 1, &l) < 0)
		goto fail_usage;
	for (s = l.path; *s; s++)
		depth += *s == '/';
	if (depth != 1 || (strncmp(l.path, "sampler/", 8) && strncmp(l.path, "state/", 6))) {
		fprintf(stderr, "ckptfs: put: %s is not STORE[/JOB]/sampler/NAME or "
			"STORE[/JOB]/state/NAME\n", argv[first]);
		goto fail_usage;
	}
	for (i = first + 1; i < argc; i++) {
		struct stat sb;
		const char *bn;

		if (stat(argv[i], &sb) < 0) {
			fprintf(stderr, "ckptfs: %s: %s\n", argv[i], strerror(errno));
			goto fail;
		}
		if (S_ISDIR(sb.st_mode)) {
			if (walk_local(&files, argv[i], "") < 0)
				goto fail;
			continue;
		}
		bn = strrchr(argv[i], '/');
		bn = bn ? bn + 1 : argv[i];
		if (files_add(&files, argv[i], bn, (uint64_t)sb.st_size) < 0)
			goto fail;
	}
	/* Each base chunk is read once: a small decoded-chunk cache keeps
	 * the peak RSS low (a later --cache-mib wins). */
	{
		const char *mine[32 + 2];
		int k, n = 0;

		mine[n++] = "cache-mib=32";
		mine[n++] = bounded_threads();
		for (k = 0; k < o.nopts; k++)
			mine[n++] = o.opts[k];
		mine[n] = NULL;
		rc = ckptfs_open(l.store, l.job[0] ? l.job : NULL, mine, &h);
		if (rc < 0) {
			fprintf(stderr, "ckptfs: cannot open store %s: %s\n", l.store,
				strerror(-rc));
			goto fail;
		}
	}
	rc = ckptfs_mkckpt(h, l.path, o.kind);
	if (rc == -EEXIST && o.kind) {
		fprintf(stderr, "ckptfs: put: %s exists: --kind applies to a new checkpoint\n",
			l.path);
		goto fail;
	}
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "ckptfs: put: cannot create %s: %s\n", l.path, strerror(-rc));
		goto fail;
	}
	c = (struct put_ctx){ h, l.path, &files, o.quiet };
	if (queue_run(files.n, o.parallel, &c, put_one) < 0)
		goto fail;
	ckptfs_close(h);
	files_free(&files);
	xopts_free(&o);
	return 0;
fail:
	ckptfs_close(h);
	files_free(&files);
	xopts_free(&o);
	return 1;
fail_usage:
	xopts_free(&o);
	return 2;
}

/* ---- get ---- */

struct rwalk {
	ckptfs *h;
	struct files *files;
	const char *root;
	const char *rel;
	int rc;
};

static int remote_walk(ckptfs *h, struct files *f, const char *root, const char *rel);

static int rwalk_cb(void *arg, const char *name, const struct ckptfs_stat *st)
{
	struct rwalk *w = arg;
	char r[PATH_MAX];

	struct ckptfs_stat own;

	if (snprintf(r, sizeof(r), "%s%s%s", w->rel, *w->rel ? "/" : "", name) >= (int)sizeof(r))
		return -ENAMETOOLONG;
	if (!st) {	/* the listing did not say: ask */
		char p[PATH_MAX * 2];
		int rc;

		snprintf(p, sizeof(p), "%s/%s", w->root, r);
		rc = ckptfs_stat(w->h, p, &own);
		if (rc < 0)
			return rc;
		st = &own;
	}
	if (st && st->type == CKPTFS_DIR)
		return files_add(w->files, NULL, r, 0) < 0 ? -ENOMEM : 0;
	return files_add(w->files, "", r, st ? st->size : 0) < 0 ? -ENOMEM : 0;
}

/* Files under @root/@rel (src "" marks a file, NULL a folder to descend). */
static int remote_walk(ckptfs *h, struct files *f, const char *root, const char *rel)
{
	struct rwalk w = { h, f, root, rel, 0 };
	char p[PATH_MAX * 2];
	size_t start = f->n, end, i;
	int rc;

	snprintf(p, sizeof(p), "%s%s%s", root, *rel ? "/" : "", rel);
	rc = ckptfs_readdir(h, p, rwalk_cb, &w);
	if (rc < 0)
		return rc;
	end = f->n;
	for (i = start; i < end && rc == 0; i++)
		if (!f->src[i]) {
			char sub[PATH_MAX];

			snprintf(sub, sizeof(sub), "%s", f->rel[i]);
			rc = remote_walk(h, f, root, sub);
		}
	return rc;
}

struct get_ctx {
	ckptfs *h;
	const char *ckpt;
	const char *dest;
	struct files *files;
	int quiet, do_fsync;
};

static int mkdirs_local(const char *path)
{
	char p[PATH_MAX * 2], *s;

	if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return -errno;
			*s = '/';
		}
	return 0;
}

/*
 * Fetch one file to DEST/REL. It is written to REL.ckptfs-part and renamed
 * when complete, so a complete REL of the right size is never fetched again;
 * an interrupted .ckptfs-part resumes at its last whole block, after its
 * last block is found equal to the store's (else it starts over).
 */
static int get_one(void *arg, size_t i)
{
	struct get_ctx c_ = *(struct get_ctx *)arg, *c = &c_;
	char path[PATH_MAX * 2], dst[PATH_MAX * 2], part[PATH_MAX * 2 + 16];
	ckptfs_file *f = NULL;
	struct ckptfs_stat rst;
	struct timespec times[2];
	struct stat sb;
	uint64_t off = 0, size;
	char *buf = NULL, *cmp = NULL;
	int fd = -1, rc;

	if (!c->files->src[i])
		return 0;	/* a folder: made with its files */
	snprintf(path, sizeof(path), "%s/%s", c->ckpt, c->files->rel[i]);
	snprintf(dst, sizeof(dst), "%s/%s", c->dest, c->files->rel[i]);
	snprintf(part, sizeof(part), "%s" PART_SUFFIX, dst);
	rc = ckptfs_stat(c->h, path, &rst);
	if (rc == 0)
		rc = ckptfs_open_file(c->h, path, &f);
	if (rc < 0)
		goto out;
	size = ckptfs_file_size(f);
	/* Complete from an earlier run: same size and the store's mtime,
	 * which a completed fetch sets (as rsync decides). */
	if (stat(dst, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size &&
	    (int64_t)sb.st_mtime == rst.mtime) {
		if (!c->quiet)
			printf("%s (already here)\n", c->files->rel[i]);
		goto out;
	}
	rc = mkdirs_local(dst);
	if (rc < 0)
		goto out;
	buf = malloc(IO_BLOCK);
	cmp = malloc(IO_BLOCK);
	if (!buf || !cmp) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
		uint64_t have = (uint64_t)sb.st_size;

		off = have > size ? 0 : have - have % IO_BLOCK;
		if (off) {
			/* Resume only where the last block already here matches. */
			uint64_t at = off - IO_BLOCK;
			ssize_t a = ckptfs_pread(f, buf, IO_BLOCK, at);
			ssize_t b = pread(fd, cmp, IO_BLOCK, (off_t)at);

			if (a != (ssize_t)IO_BLOCK || b != a || memcmp(buf, cmp, IO_BLOCK))
				off = 0;
		}
		if (ftruncate(fd, (off_t)off) < 0) {
			rc = -errno;
			goto out;
		}
	}
	if (off && !c->quiet)
		printf("%s (resuming at %llu)\n", c->files->rel[i], (unsigned long long)off);
	while (off < size) {
		/* Straight from the decoded chunks into the file. */
		ssize_t n = ckptfs_pread_to_fd(f, fd, IO_BLOCK, off);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0) {
			rc = -EIO;	/* shorter than its size: cannot be */
			goto out;
		}
		off += (uint64_t)n;
	}
	times[0].tv_sec = times[1].tv_sec = (time_t)rst.mtime;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	if (ftruncate(fd, (off_t)size) < 0 || futimens(fd, times) < 0 ||
	    (c->do_fsync && fsync(fd) < 0) || rename(part, dst) < 0) {
		rc = -errno;
		goto out;
	}
	if (!c->quiet)
		printf("%s\n", c->files->rel[i]);
out:
	if (rc < 0)
		fprintf(stderr, "ckptfs: get %s: %s\n", path, strerror(-rc));
	if (fd >= 0)
		close(fd);
	ckptfs_file_close(f);
	free(buf);
	free(cmp);
	return rc;
}

static const char get_usage[] =
	"usage: ckptfs get [options] STORE[/JOB]/sampler/NAME DIR\n"
	"       (or .../state/NAME, STORE/models/ID, or one file: .../NAME/REL DIR)\n"
	"Copy a checkpoint's files to DIR with their exact bytes. Files are\n"
	"fetched in parallel and resumed: rerunning after an interruption\n"
	"fetches only what is missing.\n"
	"  --job=ID           the job (else told from the location)\n"
	"  --parallel=N       files fetched at once (default 2)\n"
	"  --fsync            make each file durable before it is renamed in place\n"
	"  -q, --quiet        do not print each file fetched\n"
	"  --cache-mib, --threads, --cache-dir, --cache-size, --insecure-tls (ckptfs(8))\n";

int xfer_get_main(int argc, char **argv)
{
	struct xopts o;
	struct loc l;
	struct files files = { 0 };
	struct ckptfs_stat st;
	struct get_ctx c;
	ckptfs *h = NULL;
	const char *root;
	char rootbuf[PATH_MAX];
	int first = parse_opts(argc, argv, &o, get_usage), rc;

	if (first < 0)
		return first == -2 ? 0 : 2;
	if (argc - first != 2) {
		fprintf(stderr, "%s", get_usage);
		xopts_free(&o);
		return 2;
	}
	if (resolve(argv[first], o.job, 1, &l) < 0) {
		xopts_free(&o);
		return 2;
	}
	/* Bounded memory: the decoded-chunk cache of a one-pass copy need
	 * not be large (a later --cache-mib wins). */
	{
		const char *mine[32 + 2];
		int k, n = 0;

		if (add_lib_opt(&o, "create=0") < 0) {
			xopts_free(&o);
			return 1;
		}
		mine[n++] = "cache-mib=64";
		mine[n++] = bounded_threads();
		for (k = 0; k < o.nopts; k++)
			mine[n++] = o.opts[k];
		mine[n] = NULL;
		rc = ckptfs_open(l.store, l.job[0] ? l.job : NULL, mine, &h);
		if (rc < 0) {
			fprintf(stderr, "ckptfs: cannot open store %s: %s\n", l.store,
				strerror(-rc));
			xopts_free(&o);
			return 1;
		}
	}
	rc = ckptfs_stat(h, l.path, &st);
	if (rc < 0) {
		fprintf(stderr, "ckptfs: get %s: %s\n", l.path, strerror(-rc));
		goto fail;
	}
	root = l.path;
	if (st.type == CKPTFS_DIR) {
		rc = remote_walk(h, &files, root, "");
	} else {
		/* One file: DIR/basename. */
		char *slash;

		snprintf(rootbuf, sizeof(rootbuf), "%s", l.path);
		slash = strrchr(rootbuf, '/');
		*slash = '\0';
		root = rootbuf;
		rc = files_add(&files, "", slash + 1, st.size);
	}
	if (rc < 0) {
		fprintf(stderr, "ckptfs: get %s: %s\n", l.path, strerror(-rc));
		goto fail;
	}
	{
		char d[PATH_MAX];

		snprintf(d, sizeof(d), "%s/", argv[first + 1]);
		rc = mkdirs_local(d);	/* mkdir -p DIR */
		if (rc < 0) {
			fprintf(stderr, "ckptfs: %s: %s\n", argv[first + 1], strerror(-rc));
			goto fail;
		}
	}
	c = (struct get_ctx){ h, root, argv[first + 1], &files, o.quiet, o.do_fsync };
	if (queue_run(files.n, o.parallel, &c, get_one) < 0)
		goto fail;
	ckptfs_close(h);
	files_free(&files);
	xopts_free(&o);
	return 0;
fail:
	ckptfs_close(h);
	files_free(&files);
	xopts_free(&o);
	return 1;
}

/* ---- ls ---- */

static int print_job(void *arg, const char *name, const struct ckptfs_stat *st)
{
	char ***jobs = arg;
	size_t n = 0;

	(void)st;
	while ((*jobs)[n])
		n++;
	*jobs = realloc(*jobs, (n + 2) * sizeof(**jobs));
	if (!*jobs)
		return -ENOMEM;
	(*jobs)[n] = strdup(name);
	(*jobs)[n + 1] = NULL;
	return (*jobs)[n] ? 0 : -ENOMEM;
}

/* Print the job's checkpoints.jsonl; with @job_field, each line gets a
 * leading "job" member. */
static int ls_job(const struct loc *l, struct xopts *o, const char *job, int job_field)
{
	char *text = NULL, *line, *nl;
	size_t len;
	ckptfs *h;
	int rc;

	rc = ckptfs_open(l->store, job, o->opts, &h);
	if (rc < 0) {
		fprintf(stderr, "ckptfs: cannot open store %s: %s\n", l->store, strerror(-rc));
		return rc;
	}
	rc = ckptfs_checkpoints_jsonl(h, &text, &len);
	if (rc < 0) {
		fprintf(stderr, "ckptfs: ls %s: %s\n", job ? job : "default", strerror(-rc));
	} else {
		for (line = text; *line; line = nl + 1) {
			nl = strchr(line, '\n');
			if (!nl)
				nl = line + strlen(line) - 1;
			if (job_field && line[0] == '{')
				printf("{\"job\":\"%s\",%.*s\n", job, (int)(nl - line - 1), line + 1);
			else
				printf("%.*s\n", (int)(nl - line), line);
			if (!nl[1])
				break;
		}
	}
	free(text);
	ckptfs_close(h);
	return rc;
}

static const char ls_usage[] =
	"usage: ckptfs ls [options] STORE[/JOB]\n"
	"Print the checkpoints.jsonl view of JOB (one JSON object per checkpoint:\n"
	"name, dir, snapshot, kind, base, created, expires_at, logical_bytes,\n"
	"stored_bytes, promotable, path); of STORE: every job's, each line with\n"
	"a leading \"job\" member.\n"
	"  --job=ID           the job (else told from the location)\n"
	"  --jobs             print only the names of the jobs, one per line\n";

int xfer_ls_main(int argc, char **argv)
{
	struct xopts o;
	struct loc l;
	char **jobs = NULL;
	int first, rc = 0, only_jobs = 0, k;
	ckptfs *h = NULL;

	/* --jobs is ls's own flag. */
	for (k = 1; k < argc; k++)
		if (!strcmp(argv[k], "--jobs")) {
			only_jobs = 1;
			memmove(&argv[k], &argv[k + 1], (size_t)(argc - k) * sizeof(*argv));
			argc--;
			break;
		}
	first = parse_opts(argc, argv, &o, ls_usage);
	if (first < 0)
		return first == -2 ? 0 : 2;
	if (argc - first != 1) {
		fprintf(stderr, "%s", ls_usage);
		xopts_free(&o);
		return 2;
	}
	if (resolve(argv[first], o.job, 0, &l) < 0 || add_lib_opt(&o, "create=0") < 0) {
		xopts_free(&o);
		return 2;
	}
	if (l.job[0] && !only_jobs) {
		rc = ls_job(&l, &o, l.job, 0);
		xopts_free(&o);
		return rc < 0 ? 1 : 0;
	}
	rc = ckptfs_open(l.store, NULL, o.opts, &h);
	if (rc < 0) {
		fprintf(stderr, "ckptfs: cannot open store %s: %s\n", l.store, strerror(-rc));
		xopts_free(&o);
		return 1;
	}
	jobs = calloc(1, sizeof(*jobs));
	rc = jobs ? ckptfs_list_jobs(h, print_job, &jobs) : -ENOMEM;
	ckptfs_close(h);
	if (rc < 0)
		fprintf(stderr, "ckptfs: ls %s: %s\n", l.store, strerror(-rc));
	for (k = 0; rc == 0 && jobs[k]; k++) {
		if (only_jobs)
			printf("%s\n", jobs[k]);
		else if (ls_job(&l, &o, jobs[k], 1) < 0)
			rc = -1;
	}
	for (k = 0; jobs && jobs[k]; k++)
		free(jobs[k]);
	free(jobs);
	xopts_free(&o);
	return rc < 0 ? 1 : 0;
}

/* ---- cat ---- */

static const char cat_usage[] =
	"usage: ckptfs cat [options] STORE[/JOB]/sampler/NAME/FILE...\n"
	"Write committed files to standard output (any checkpoint, any job,\n"
	"STORE/models/ID/FILE).\n"
	"  --job=ID           the job (else told from the location)\n";

int xfer_cat_main(int argc, char **argv)
{
	struct xopts o;
	int first = parse_opts(argc, argv, &o, cat_usage), i, status = 0;
	char *buf;

	if (first < 0)
		return first == -2 ? 0 : 2;
	if (argc - first < 1) {
		fprintf(stderr, "%s", cat_usage);
		xopts_free(&o);
		return 2;
	}
	buf = malloc(IO_BLOCK);
	if (!buf || add_lib_opt(&o, "create=0") < 0 || add_lib_opt(&o, "cache-mib=64") < 0) {
		free(buf);
		xopts_free(&o);
		return 1;
	}
	for (i = first; i < argc; i++) {
		struct loc l;
		ckptfs_file *f = NULL;
		ckptfs *h = NULL;
		uint64_t off = 0;
		int rc;

		if (resolve(argv[i], o.job, 1, &l) < 0) {
			status = 1;
			continue;
		}
		rc = ckptfs_open(l.store, l.job[0] ? l.job : NULL, o.opts, &h);
		if (rc == 0)
			rc = ckptfs_open_file(h, l.path, &f);
		while (rc == 0) {
			ssize_t n = ckptfs_pread(f, buf, IO_BLOCK, off);

			if (n <= 0) {
				rc = (int)n;
				break;
			}
			if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
				rc = -errno;
				break;
			}
			off += (uint64_t)n;
		}
		if (rc < 0) {
			fprintf(stderr, "ckptfs: cat %s: %s\n", argv[i], strerror(-rc));
			status = 1;
		}
		ckptfs_file_close(f);
		ckptfs_close(h);
	}
	if (fflush(stdout) != 0)
		status = 1;
	free(buf);
	xopts_free(&o);
	return status;
}
