/*
 * admin.c: `ckptfs fsck`, `ckptfs stat` and `ckptfs gc`: walk every job,
 * checkpoint and file of a store through the catalog, like squashfuse's ls
 * walks an image: the same core the mount uses, no FUSE.
 */
#include "cli/admin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "catalog/gc.h"
#include "cli/progress.h"
#include "fs/chunks.h"
#include "store/store.h"
#include "util/log.h"

/* ---- problems are printed one per line ---- */

static int print_problem(const char *where, enum ckpt_dir dir, const char *name,
			 int err, void *arg)
{
	int *problems = arg;

	printf("PROBLEM %s/%s/%s: %s\n", where, ckpt_dir_name(dir), name,
	       err == -EBADMSG ? "malformed file entry" : strerror(-err));
	(*problems)++;
	return 0;	/* keep checking the rest */
}

static int open_store(const char *url, struct store **st)
{
	int rc = store_open(url, NULL, st);

	if (rc < 0) {
		fprintf(stderr, "ckptfs: cannot open store %s: %s\n", url, strerror(-rc));
		return rc;
	}
	return 0;
}

/* ---- fsck ---- */

struct fsck_state {
	int problems;		/* first: print_problem() counts into it */
	struct chunks *chunks;
	uint64_t files, chunks_checked, bytes;
	uint64_t total_bytes;	/* for the ETA; 0: unknown */
	struct progress prog;
};

/* The fraction of the walk done, by bytes, or -1 when the total is unknown. */
static double fsck_frac(const struct fsck_state *fs)
{
	if (!fs->total_bytes)
		return -1;
	return fs->bytes >= fs->total_bytes ? 1.0 : (double)fs->bytes / (double)fs->total_bytes;
}

/* Pre-pass for the ETA: only what each entry says it holds. */
static int fsck_size_entry(const char *where, const struct ckpt_record *r,
			   const struct entry *e, void *arg)
{
	(void)where;
	(void)r;
	if (!e->is_dir)
		*(uint64_t *)arg += e->size;
	return 0;
}

static int fsck_size_problem(const char *where, enum ckpt_dir dir, const char *name,
			     int err, void *arg)
{
	(void)where;
	(void)dir;
	(void)name;
	(void)err;
	(void)arg;
	return 0;		/* the real pass reports it */
}

static int fsck_entry(const char *where, const struct ckpt_record *r,
		      const struct entry *e, void *arg)
{
	struct fsck_state *fs = arg;
	size_t i;

	if (e->is_dir)
		return 0;
	fs->files++;
	for (i = 0; i < e->n_chunks; i++) {
		uint64_t off = (uint64_t)i * e->chunk_size;
		size_t len = e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
		struct chunk_ref ref = e->chunks[i];
		int rc;

		if (!ref.key[0]) {	/* all-zero delta chunk: its base must be sound */
			memcpy(ref.key, ref.base_key, sizeof(ref.key));
			ref.base_key[0] = '\0';
		}
		rc = chunks_verify(fs->chunks, &ref, len);
		fs->chunks_checked++;
		fs->bytes += len;
		fs->prog.extra = fs->chunks_checked;
		progress_update(&fs->prog, fs->files, fs->bytes, fsck_frac(fs));
		if (rc < 0) {
			printf("PROBLEM %s/%s/%s/%s: chunk %zu (%s): %s\n", where,
			       ckpt_dir_name(r->dir), r->name, e->path, i, ref.key,
			       rc == -EIO ? "corrupt or missing" : strerror(-rc));
			fs->problems++;
		}
	}
	return 0;
}

/* The object is named by on_bad_key(); this only keeps the walk going. */
static int fsck_problem(const char *where, enum ckpt_dir dir, const char *name,
			int err, void *arg)
{
	struct fsck_state *fs = arg;

	if (err == -EBADMSG)
		return 0;
	return print_problem(where, dir, name, err, &fs->problems);
}

static void fsck_bad_key(const char *key, const char *why, void *arg)
{
	struct fsck_state *fs = arg;

	printf("PROBLEM %s: %s\n", key, why);
	fs->problems++;
}

int admin_fsck_main(int argc, char **argv)
{
	static const struct catalog_walk_ops ops = {
		.on_entry = fsck_entry,
		.on_problem = fsck_problem,
		.on_bad_key = fsck_bad_key,
	};
	struct fsck_state fs = { 0 };
	struct store *st;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: ckptfs fsck STORE\n");
		return 2;
	}
	if (open_store(argv[1], &st) < 0)
		return 2;
	fs.chunks = chunks_new(st, 0);
	progress_begin(&fs.prog, "fsck", "files");
	fs.prog.extra_unit = "chunks";
	if (fs.prog.on) {
		/* Only on a terminal: reading the entries twice buys the ETA. */
		static const struct catalog_walk_ops size_ops = {
			.on_entry = fsck_size_entry,
			.on_problem = fsck_size_problem,
		};

		if (catalog_walk(st, 1, &size_ops, &fs.total_bytes) < 0)
			fs.total_bytes = 0;
	}
	rc = fs.chunks ? catalog_walk(st, 1, &ops, &fs) : -ENOMEM;
	progress_update(&fs.prog, fs.files, fs.bytes, fsck_frac(&fs));
	progress_end(&fs.prog);
	if (rc < 0) {
		printf("PROBLEM store walk failed: %s\n", strerror(-rc));
		fs.problems++;
	}
	printf("fsck: %" PRIu64 " files, %" PRIu64 " chunks checked, %d problem%s\n",
	       fs.files, fs.chunks_checked, fs.problems, fs.problems == 1 ? "" : "s");
	chunks_free(fs.chunks);
	store_free(st);
	return fs.problems ? 1 : 0;
}

/* ---- stat ---- */

/* One checkpoint's row of the table. */
struct stat_row {
	char *where, *name, *base;
	enum ckpt_dir dir;
	enum ckpt_kind kind;
	uint64_t logical, stored, files;
	double created, expires;	/* expires 0: none */
};

struct stat_state {
	const char *only_job;	/* --job, or NULL: every job and the models */
	struct stat_row *rows;
	size_t n, cap;
	struct store *st;
	int skipping;
};

static int stat_ckpt(const char *where, const struct ckpt_record *r, void *arg)
{
	struct stat_state *s = arg;
	struct stat_row *row;
	struct ckpt_attrs a;

	if (s->only_job && (r->dir == CKPT_MODEL || strcmp(where, s->only_job)))
		return 1;	/* skip its entries */
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct stat_row *v = realloc(s->rows, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->rows = v;
		s->cap = cap;
	}
	row = &s->rows[s->n];
	memset(row, 0, sizeof(*row));
	row->where = strdup(where);
	row->name = strdup(r->name);
	row->base = r->base ? strdup(r->base) : NULL;
	if (!row->where || !row->name || (r->base && !row->base)) {
		free(row->where);
		free(row->name);
		free(row->base);
		return -ENOMEM;
	}
	row->dir = r->dir;
	row->kind = r->kind;
	row->created = r->created;
	/* One small GET per checkpoint: the TTL lives in attrs.json. */
	if (catalog_attrs_get(s->st, r->dir == CKPT_MODEL || !r->job ? "" : r->job, r->dir,
			      r->name, &a) == 0 && a.ttl)
		row->expires = r->created + (double)a.ttl;
	s->n++;
	return 0;
}

static int stat_entry(const char *where, const struct ckpt_record *r,
		      const struct entry *e, void *arg)
{
	struct stat_state *s = arg;
	struct stat_row *row = s->n ? &s->rows[s->n - 1] : NULL;

	(void)where;
	if (!row || strcmp(row->name, r->name) || e->is_dir)
		return 0;
	row->files++;
	row->logical += e->size;
	row->stored += entry_stored_bytes(e);
	return 0;
}

static int sum_cb(const char *key, const struct store_stat *st, void *arg)
{
	uint64_t *n = arg;

	(void)key;
	n[0]++;
	n[1] += st->size;
	return 0;
}

static void human(char *out, size_t cap, uint64_t b)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void when(char *out, size_t cap, double t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&tt, &tm))
		snprintf(out, cap, "-");
	else
		strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static double ratio(uint64_t stored, uint64_t logical)
{
	return logical ? (double)stored / (double)logical : 0.0;
}

static void print_table(const struct stat_state *s, const uint64_t objs[2])
{
	uint64_t tl = 0, ts = 0;
	size_t i = 0, j;

	while (i < s->n) {
		const char *where = s->rows[i].where;
		unsigned n_kind[4] = { 0 };
		uint64_t l = 0, st = 0, files = 0;

		printf("%sjob %s\n", i ? "\n" : "", where);
		printf("%-24s %-6s %-24s %10s %10s %7s  %-19s  %s\n", "NAME", "KIND", "BASE",
		       "LOGICAL", "STORED", "RATIO", "CREATED (UTC)", "EXPIRES (UTC)");
		for (j = i; j < s->n && !strcmp(s->rows[j].where, where); j++) {
			const struct stat_row *r = &s->rows[j];
			char lb[32], sb[32], cr[32], ex[32];

			human(lb, sizeof(lb), r->logical);
			human(sb, sizeof(sb), r->stored);
			when(cr, sizeof(cr), r->created);
			when(ex, sizeof(ex), r->expires);
			printf("%-24s %-6s %-24s %10s %10s %7.3f  %-19s  %s\n", r->name,
			       ckpt_kind_name(r->kind), r->base ? r->base : "-", lb, sb,
			       ratio(r->stored, r->logical), cr, ex);
			n_kind[r->kind]++;
			l += r->logical;
			st += r->stored;
			files += r->files;
		}
		/* The job's summary, as before the table existed (scripts read it). */
		printf("job %-20s base %u  delta %u  lora %u  state %u  files %" PRIu64
		       "  logical %" PRIu64 "  stored %" PRIu64 "  ratio %.2fx\n",
		       where, n_kind[KIND_BASE], n_kind[KIND_DELTA], n_kind[KIND_LORA],
		       n_kind[KIND_STATE], files, l, st, st ? (double)l / (double)st : 0.0);
		tl += l;
		ts += st;
		i = j;
	}
	{
		char lb[32], sb[32], ob[32];

		human(lb, sizeof(lb), tl);
		human(sb, sizeof(sb), ts);
		human(ob, sizeof(ob), objs[1]);
		printf("\n%-24s %-6s %-24s %10s %10s %7.3f  (%zu checkpoints; %" PRIu64
		       " chunk objects hold %s, shared chunks counted once)\n", "total", "", "",
		       lb, sb, ratio(ts, tl), s->n, objs[0], ob);
	}
	printf("total logical %" PRIu64 "  referenced %" PRIu64 "  chunk objects %" PRIu64
	       " (%" PRIu64 " bytes, shared chunks counted once)  ratio %.2fx\n",
	       tl, ts, objs[0], objs[1], objs[1] ? (double)tl / (double)objs[1] : 0.0);
}

static int print_json(const struct stat_state *s, const uint64_t objs[2])
{
	cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "checkpoints"), *t;
	uint64_t tl = 0, ts = 0;
	char *text;
	size_t i;

	if (!o || !arr)
		goto nomem;
	for (i = 0; i < s->n; i++) {
		const struct stat_row *r = &s->rows[i];
		cJSON *c = cJSON_CreateObject();

		if (!c)
			goto nomem;
		cJSON_AddItemToArray(arr, c);
		if (r->dir == CKPT_MODEL)
			cJSON_AddNullToObject(c, "job");
		else
			cJSON_AddStringToObject(c, "job", r->where);
		cJSON_AddStringToObject(c, "dir", r->dir == CKPT_MODEL ? "models"
						: ckpt_dir_name(r->dir));
		cJSON_AddStringToObject(c, "name", r->name);
		cJSON_AddStringToObject(c, "kind", ckpt_kind_name(r->kind));
		if (r->base)
			cJSON_AddStringToObject(c, "base", r->base);
		else
			cJSON_AddNullToObject(c, "base");
		cJSON_AddNumberToObject(c, "files", (double)r->files);
		cJSON_AddNumberToObject(c, "logical_bytes", (double)r->logical);
		cJSON_AddNumberToObject(c, "stored_bytes", (double)r->stored);
		cJSON_AddNumberToObject(c, "stored_ratio", ratio(r->stored, r->logical));
		cJSON_AddNumberToObject(c, "created", r->created);
		if (r->expires > 0)
			cJSON_AddNumberToObject(c, "expires_at", r->expires);
		else
			cJSON_AddNullToObject(c, "expires_at");
		tl += r->logical;
		ts += r->stored;
	}
	t = cJSON_AddObjectToObject(o, "totals");
	if (!t)
		goto nomem;
	cJSON_AddNumberToObject(t, "checkpoints", (double)s->n);
	cJSON_AddNumberToObject(t, "logical_bytes", (double)tl);
	cJSON_AddNumberToObject(t, "stored_bytes", (double)ts);
	cJSON_AddNumberToObject(t, "stored_ratio", ratio(ts, tl));
	cJSON_AddNumberToObject(t, "chunk_objects", (double)objs[0]);
	cJSON_AddNumberToObject(t, "chunk_object_bytes", (double)objs[1]);
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	printf("%s\n", text);
	free(text);
	return 0;
nomem:
	cJSON_Delete(o);
	return -ENOMEM;
}

int admin_stat_main(int argc, char **argv)
{
	static const struct catalog_walk_ops ops = {
		.on_ckpt = stat_ckpt,
		.on_entry = stat_entry,
	};
	static const struct option longopts[] = {
		{ "job", required_argument, NULL, 'j' },
		{ "json", no_argument, NULL, 'J' },
		{ 0 }
	};
	struct stat_state s = { 0 };
	struct store *st;
	uint64_t objs[2] = { 0 };
	int c, rc, json = 0, bad = 0;
	size_t i;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'j')
			s.only_job = optarg;
		else if (c == 'J')
			json = 1;
		else
			bad = 1;
	}
	if (bad || optind != argc - 1) {
		fprintf(stderr, "usage: ckptfs stat [--job JOB] [--json] STORE\n");
		return 2;
	}
	if (open_store(argv[optind], &st) < 0)
		return 2;
	s.st = st;
	rc = catalog_walk(st, !s.only_job, &ops, &s);
	if (rc == 0)
		rc = store_list(st, "chunks/", sum_cb, objs);
	if (rc == 0)
		rc = json ? print_json(&s, objs) : (print_table(&s, objs), 0);
	if (rc < 0)
		fprintf(stderr, "ckptfs stat: %s\n", strerror(-rc));
	for (i = 0; i < s.n; i++) {
		free(s.rows[i].where);
		free(s.rows[i].name);
		free(s.rows[i].base);
	}
	free(s.rows);
	store_free(st);
	return rc < 0 ? 1 : 0;
}

/* ---- gc ---- */

static void gc_progress(void *arg, uint64_t items, uint64_t bytes, double frac)
{
	progress_update(arg, items, bytes, frac);
}

int admin_gc_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "grace", required_argument, NULL, 'g' },
		{ 0 }
	};
	struct gc_report r;
	struct progress prog;
	struct store *st;
	long grace = 3600;
	int c, rc, dry_run = 0;
	char *end;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ng:", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			dry_run = 1;
			break;
		case 'g':
			grace = strtol(optarg, &end, 10);
			if (*end || end == optarg)
				grace = -1;
			break;
		default:
			grace = -1;
		}
	}
	if (optind != argc - 1 || grace < 0) {
		fprintf(stderr, "usage: ckptfs gc [--dry-run] [--grace SECONDS] STORE\n");
		return 2;
	}
	if (open_store(argv[optind], &st) < 0)
		return 2;
	progress_begin(&prog, "gc", "chunks");
	gc_set_progress(gc_progress, &prog);
	{
		/* To the nanosecond: gc orders touches against this instant. */
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		rc = gc_run(st, grace, dry_run, (double)now.tv_sec + now.tv_nsec / 1e9, &r);
	}
	gc_set_progress(NULL, NULL);
	progress_end(&prog);
	printf("gc: %" PRIu64 " expired checkpoint%s %s; %s %" PRIu64 " unreferenced chunks (%"
	       PRIu64 " bytes); %" PRIu64 " live; kept %" PRIu64
	       " younger than the %lds grace period\n",
	       r.expired, r.expired == 1 ? "" : "s", dry_run ? "would be removed" : "removed",
	       dry_run ? "would delete" : "deleted", r.deleted, r.deleted_bytes, r.live,
	       r.kept_young, grace);
	store_free(st);
	if (rc < 0) {
		fprintf(stderr, "ckptfs gc: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}
