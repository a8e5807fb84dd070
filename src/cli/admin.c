/*
 * admin.c: `ckptfs fsck`, `ckptfs stat` and `ckptfs gc`: walk every job,
 * checkpoint and file of a store through the catalog, like squashfuse's ls
 * walks an image: the same core the mount uses, no FUSE.
 */
#include "cli/admin.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "catalog/gc.h"
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
	uint64_t files, chunks_checked;
};

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
	rc = fs.chunks ? catalog_walk(st, 1, &ops, &fs) : -ENOMEM;
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

struct stat_state {
	char job[256];
	unsigned n_ckpts[4];
	uint64_t logical, stored, files;
	uint64_t total_logical, total_stored;
};

static void stat_flush(struct stat_state *s)
{
	if (!s->job[0])
		return;
	printf("job %-20s base %u  delta %u  lora %u  state %u  files %" PRIu64
	       "  logical %" PRIu64 "  stored %" PRIu64 "  ratio %.2fx\n",
	       s->job, s->n_ckpts[KIND_BASE], s->n_ckpts[KIND_DELTA], s->n_ckpts[KIND_LORA],
	       s->n_ckpts[KIND_STATE], s->files, s->logical, s->stored,
	       s->stored ? (double)s->logical / (double)s->stored : 0.0);
	s->total_logical += s->logical;
	s->total_stored += s->stored;
	memset(s->n_ckpts, 0, sizeof(s->n_ckpts));
	s->logical = s->stored = s->files = 0;
}

static int stat_ckpt(const char *where, const struct ckpt_record *r, void *arg)
{
	struct stat_state *s = arg;

	/* Group by where the checkpoint lives: a model's record names its
	 * source job, but it belongs to the store-wide models/. */
	if (strcmp(s->job, where)) {
		stat_flush(s);
		snprintf(s->job, sizeof(s->job), "%s", where);
	}
	s->n_ckpts[r->kind]++;
	return 0;
}

static int stat_entry(const char *where, const struct ckpt_record *r,
		      const struct entry *e, void *arg)
{
	struct stat_state *s = arg;

	(void)where;
	(void)r;
	if (!e->is_dir) {
		s->files++;
		s->logical += e->size;
		s->stored += entry_stored_bytes(e);
	}
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

int admin_stat_main(int argc, char **argv)
{
	static const struct catalog_walk_ops ops = {
		.on_ckpt = stat_ckpt,
		.on_entry = stat_entry,
	};
	struct stat_state s = { 0 };
	struct store *st;
	uint64_t objs[2] = { 0 };
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: ckptfs stat STORE\n");
		return 2;
	}
	if (open_store(argv[1], &st) < 0)
		return 2;
	rc = catalog_walk(st, 1, &ops, &s);
	stat_flush(&s);
	if (rc == 0)
		rc = store_list(st, "chunks/", sum_cb, objs);
	if (rc < 0) {
		fprintf(stderr, "ckptfs stat: %s\n", strerror(-rc));
		store_free(st);
		return 1;
	}
	printf("total logical %" PRIu64 "  referenced %" PRIu64 "  chunk objects %" PRIu64
	       " (%" PRIu64 " bytes, shared chunks counted once)  ratio %.2fx\n",
	       s.total_logical, s.total_stored, objs[0], objs[1],
	       objs[1] ? (double)s.total_logical / (double)objs[1] : 0.0);
	store_free(st);
	return 0;
}

/* ---- gc ---- */

int admin_gc_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "grace", required_argument, NULL, 'g' },
		{ 0 }
	};
	struct gc_report r;
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
	{
		/* To the nanosecond: gc orders touches against this instant. */
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		rc = gc_run(st, grace, dry_run, (double)now.tv_sec + now.tv_nsec / 1e9, &r);
	}
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
