/*
 * check_fs.c: the filesystem core (src/fs/fs.h) without FUSE: each test
 * calls the fs_*() operations directly, on a local store in a temporary
 * directory, with 64 KiB chunks so multi-chunk paths are cheap.
 *
 * A "second mount" is a second struct ckfs on the same store; a fresh
 * instance also serves as a cold-cache reader (decoded chunks are cached
 * per instance).
 */
#include <check.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "fs/fs.h"
#include "fs/readahead.h"
#include "store/store.h"
#include "testutil.h"
#include "util/buf.h"
#include "util/log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CS (64u * 1024)		/* chunk size of every test mount */
#define XA "user.ckptfs."

/* ---- log capture ---- */


/* ---- fixture ---- */

static char *workdir;
static char storedir[4096], spooldir[4096];
static struct store *st;
static struct ckfs *fs;		/* the mount most tests use */

static void cfg_init(struct fs_config *cfg)
{
	fs_config_defaults(cfg);
	cfg->chunk_size = CS;
	cfg->cache_bytes = 8u << 20;
	cfg->spool_dir = spooldir;
	cfg->threads = 4;
}

static struct ckfs *mount_with(const struct fs_config *cfg)
{
	struct ckfs *f = NULL;

	ck_assert_int_eq(fs_new(st, cfg, &f), 0);
	ck_assert_int_eq(fs_start(f), 0);
	ck_assert_ptr_nonnull(f);
	return f;
}

/* A second mount of the same store (same job), listing at most @ttl old. */
static struct ckfs *mount2(double ttl)
{
	struct fs_config cfg;

	cfg_init(&cfg);
	cfg.list_ttl = ttl;
	return mount_with(&cfg);
}

static void remove_workdir(void)
{
	testutil_rmtree(workdir);
	free(workdir);
	workdir = NULL;
}

static void setup(void)
{
	struct fs_config cfg;

	testutil_log_start();
	workdir = testutil_workdir();
	snprintf(storedir, sizeof(storedir), "%s/store", workdir);
	snprintf(spooldir, sizeof(spooldir), "%s/spool", workdir);
	ck_assert_int_eq(mkdir(spooldir, 0700), 0);
	ck_assert_int_eq(store_local_open(storedir, 1, &st), 0);
	cfg_init(&cfg);
	fs = mount_with(&cfg);
}

static void teardown(void)
{
	fs_free(fs);
	fs = NULL;
	store_free(st);
	st = NULL;
	remove_workdir();
	testutil_log_stop();
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- file helpers ---- */

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	testutil_fill_random(p, n, seed);
	return p;
}

static uint64_t create_file(struct ckfs *f, const char *path)
{
	uint64_t fh = 0;

	ck_assert_msg(fs_create(f, path, 0644, O_CREAT | O_WRONLY | O_TRUNC, &fh) == 0,
		      "create %s", path);
	return fh;
}

/* Sequential writes in pieces of varying size (as cp and safetensors
 * writers do), from offset 0. */
static void write_seq(struct ckfs *f, uint64_t fh, const uint8_t *data, size_t n)
{
	static const size_t pieces[] = { 4096, 131072, 1, 65535, 7777, 65536, 100000 };
	size_t off = 0, k = 0;

	while (off < n) {
		size_t len = pieces[k++ % ARRAY_SIZE(pieces)];

		if (len > n - off)
			len = n - off;
		ck_assert_int_eq(fs_write(f, fh, (const char *)data + off, len, off), (long)len);
		off += len;
	}
}

/* Create, write, close: the file is committed when this returns. */
static void put_file(struct ckfs *f, const char *path, const uint8_t *data, size_t n)
{
	uint64_t fh = create_file(f, path);

	write_seq(f, fh, data, n);
	ck_assert_int_eq(fs_flush(f, fh), 0);
	fs_release(f, fh);
}

/* Read the whole file through a fresh handle in odd-sized pieces. */
static uint8_t *get_file(struct ckfs *f, const char *path, size_t *n)
{
	struct stat sb;
	uint64_t fh = 0;
	int keep, direct;
	uint8_t *p;
	size_t off = 0;
	long r;

	ck_assert_msg(fs_getattr(f, path, &sb) == 0, "getattr %s", path);
	ck_assert(S_ISREG(sb.st_mode));
	ck_assert_msg(fs_open(f, path, O_RDONLY, &fh, &keep, &direct) == 0, "open %s", path);
	p = malloc((size_t)sb.st_size + 1);
	for (;;) {
		r = fs_read(f, fh, (char *)p + off, 50001, off);
		ck_assert_msg(r >= 0, "read %s at %zu: %ld", path, off, r);
		if (r == 0)
			break;
		off += (size_t)r;
		ck_assert_uint_le(off, (size_t)sb.st_size);
	}
	fs_release(f, fh);
	ck_assert_uint_eq(off, (size_t)sb.st_size);
	*n = off;
	return p;
}

static void assert_file(struct ckfs *f, const char *path, const uint8_t *want, size_t n)
{
	size_t got_n;
	uint8_t *got = get_file(f, path, &got_n);

	ck_assert_msg(got_n == n, "%s: size %zu, want %zu", path, got_n, n);
	ck_assert_msg(n == 0 || memcmp(got, want, n) == 0, "%s: content differs", path);
	free(got);
}

/* Random ranges through one handle, including ones across chunk edges
 * and past the end. */
static void assert_ranges(struct ckfs *f, const char *path, const uint8_t *want, size_t n)
{
	uint64_t fh = 0, r[2];
	int keep, direct, i;
	char *buf = malloc(3 * CS);

	ck_assert_int_eq(fs_open(f, path, O_RDONLY, &fh, &keep, &direct), 0);
	for (i = 0; i < 60; i++) {
		size_t off, len, expect;
		long got;

		testutil_fill_random((uint8_t *)r, sizeof(r), (uint64_t)i + 99);
		off = n ? (size_t)(r[0] % (n + 10)) : 0;
		len = 1 + (size_t)(r[1] % (3 * CS));
		if (i % 5 == 0 && n > CS)	/* straddle a chunk edge */
			off = CS * (1 + (size_t)(r[0] % (n / CS))) - 3;
		if (off > n)
			off = n;
		expect = off >= n ? 0 : (len < n - off ? len : n - off);
		got = fs_read(f, fh, buf, len, off);
		ck_assert_msg(got == (long)expect, "read %zu@%zu: %ld, want %zu", len, off, got,
			      expect);
		ck_assert(expect == 0 || memcmp(buf, want + off, expect) == 0);
	}
	fs_release(f, fh);
	free(buf);
}

static off_t file_size(struct ckfs *f, const char *path)
{
	struct stat sb;

	ck_assert_msg(fs_getattr(f, path, &sb) == 0, "getattr %s", path);
	return sb.st_size;
}

/* ---- readdir helpers ---- */

struct dirlist {
	char *v[64];
	int n;
	int dots;
};

static int fill_cb(void *arg, const char *name, const struct stat *sb)
{
	struct dirlist *d = arg;

	(void)sb;
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		d->dots++;
		return 0;
	}
	ck_assert_int_lt(d->n, 64);
	d->v[d->n++] = strdup(name);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* @want: comma-separated sorted names ("" for none). */
static void assert_dir(struct ckfs *f, const char *path, const char *want)
{
	struct dirlist d = { 0 };
	struct buf b = BUF_INIT;
	int i, rc;

	rc = fs_readdir(f, path, fill_cb, &d);
	ck_assert_msg(rc == 0, "readdir %s: %d", path, rc);
	ck_assert_int_eq(d.dots, 2);
	qsort(d.v, (size_t)d.n, sizeof(d.v[0]), cmp_str);
	for (i = 0; i < d.n; i++) {
		buf_printf(&b, "%s%s", i ? "," : "", d.v[i]);
		free(d.v[i]);
	}
	buf_append(&b, "", 1);
	ck_assert_msg(!strcmp((char *)b.data, want), "readdir %s: [%s], want [%s]", path,
		      (char *)b.data, want);
	buf_release(&b);
}

static int is_dir(struct ckfs *f, const char *path)
{
	struct stat sb;

	return fs_getattr(f, path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* getxattr into a static string; "" plus the errno in *rc on failure. */
static const char *xattr(struct ckfs *f, const char *path, const char *name, int *rc)
{
	static char v[512];
	int n = fs_getxattr(f, path, name, v, sizeof(v) - 1);

	if (rc)
		*rc = n < 0 ? n : 0;
	if (n < 0)
		n = 0;
	v[n] = '\0';
	return v;
}

static uint64_t xattr_u64(struct ckfs *f, const char *path, const char *name)
{
	int rc;
	const char *v = xattr(f, path, name, &rc);

	ck_assert_msg(rc == 0, "getxattr %s %s: %d", path, name, rc);
	return strtoull(v, NULL, 10);
}

/* ================================================================ tests */

START_TEST(test_tree_and_mkdir)
{
	struct stat sb;

	ck_assert(is_dir(fs, "/"));
	ck_assert(is_dir(fs, "/sampler"));
	ck_assert(is_dir(fs, "/state"));
	ck_assert(is_dir(fs, "/jobs"));
	assert_dir(fs, "/sampler", "");
	ck_assert_int_eq(fs_getattr(fs, "/sampler/step-1", &sb), -ENOENT);

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-1", 0755), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/step-1", &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
	ck_assert_uint_ne(sb.st_mode & 0200, 0);	/* own job: writable */
	ck_assert_int_eq(fs_mkdir(fs, "/state/resume-1", 0755), 0);
	ck_assert(is_dir(fs, "/state/resume-1"));
	/* The same name in the two kinds are two checkpoints. */
	ck_assert_int_eq(fs_mkdir(fs, "/state/step-1", 0755), 0);
	assert_dir(fs, "/sampler", "step-1");
	assert_dir(fs, "/state", "resume-1,step-1");
	assert_dir(fs, "/sampler/step-1", "");
	/* Own job through jobs/ is the same tree. */
	ck_assert(is_dir(fs, "/jobs/default/sampler/step-1"));
	assert_dir(fs, "/jobs", "default");
	assert_dir(fs, "/jobs/default", "sampler,state");
	ck_assert_int_eq(fs_mkdir(fs, "/jobs/default/sampler/step-2", 0755), 0);
	assert_dir(fs, "/sampler", "step-1,step-2");
	/* Nested folders inside a checkpoint. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-1/a", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-1/a/b", 0700), 0);
	ck_assert(is_dir(fs, "/sampler/step-1/a/b"));
	assert_dir(fs, "/sampler/step-1", "a");
	assert_dir(fs, "/sampler/step-1/a", "b");
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-1/x/y", 0755), -ENOENT);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_root_listing)
{
	assert_dir(fs, "/", "checkpoints.jsonl,deployments,jobs,models,sampler,state");
}
END_TEST

START_TEST(test_errors)
{
	struct stat sb;
	uint64_t fh = 0;
	int keep, direct;
	char big[300];

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	/* EEXIST: mkdir twice, in either spelling. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), -EEXIST);
	ck_assert_int_eq(fs_mkdir(fs, "/jobs/default/sampler/c", 0755), -EEXIST);
	/* EPERM: nothing but the fixed tree at the root or in sampler/. */
	ck_assert_int_eq(fs_mkdir(fs, "/foo", 0755), -EPERM);
	ck_assert_int_eq(fs_create(fs, "/foo", 0644, O_CREAT | O_WRONLY, &fh), -EPERM);
	ck_assert_int_eq(fs_create(fs, "/sampler/file", 0644, O_CREAT | O_WRONLY, &fh), -EPERM);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler", 0755), -EPERM);
	ck_assert_int_eq(fs_getattr(fs, "/foo", &sb), -ENOENT);
	/* ENOENT: missing checkpoint. */
	ck_assert_int_eq(fs_getattr(fs, "/sampler/nope", &sb), -ENOENT);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/nope/f", &sb), -ENOENT);
	ck_assert_int_eq(fs_create(fs, "/sampler/nope/f", 0644, O_CREAT | O_WRONLY, &fh), -ENOENT);
	ck_assert_int_eq(fs_open(fs, "/sampler/nope/f", O_RDONLY, &fh, &keep, &direct), -ENOENT);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/nope/d", 0755), -ENOENT);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/nope/f"), -ENOENT);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/nope"), -ENOENT);
	ck_assert_int_eq(fs_open(fs, "/sampler/c/missing", O_RDONLY, &fh, &keep, &direct),
			 -ENOENT);
	/* Directories are not opened as files. */
	ck_assert_int_eq(fs_open(fs, "/sampler/c", O_RDONLY, &fh, &keep, &direct), -EISDIR);
	/* Invalid names. */
	memset(big, 'n', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	{
		char path[400];

		snprintf(path, sizeof(path), "/sampler%s", big);
		ck_assert_int_eq(fs_mkdir(fs, path, 0755), -ENAMETOOLONG);
	}
	ck_assert_int_lt(fs_mkdir(fs, "/sampler/..", 0755), 0);
	/* ENOTEMPTY: a checkpoint holding a file. */
	put_file(fs, "/sampler/c/f", (const uint8_t *)"x", 1);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c"), -ENOTEMPTY);
	ck_assert(is_dir(fs, "/sampler/c"));
	/* EEXIST: O_EXCL on an existing file. */
	ck_assert_int_eq(fs_create(fs, "/sampler/c/f", 0644, O_CREAT | O_EXCL | O_WRONLY, &fh),
			 -EEXIST);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/f", 0755), -EEXIST);
	/* Writing through a read-only handle. */
	ck_assert_int_eq(fs_open(fs, "/sampler/c/f", O_RDONLY, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_write(fs, fh, "y", 1, 0), -EBADF);
	fs_release(fs, fh);
	/* Empty it and rmdir works; the name is gone everywhere. */
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/f"), 0);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c"), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c", &sb), -ENOENT);
	assert_dir(fs, "/sampler", "");
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c"), -ENOENT);
}
END_TEST

START_TEST(test_other_job_read_only)
{
	struct fs_config cfg;
	struct ckfs *other;
	uint8_t *data = random_bytes(3 * CS + 5, 11);
	struct stat sb;
	uint64_t fh = 0;
	int keep, direct;

	cfg_init(&cfg);
	cfg.job = "other";
	other = mount_with(&cfg);
	ck_assert_int_eq(fs_mkdir(other, "/sampler/x", 0755), 0);
	put_file(other, "/sampler/x/f", data, 3 * CS + 5);

	/* Visible and readable under jobs/ from this mount... */
	assert_dir(fs, "/jobs", "default,other");
	assert_dir(fs, "/jobs/other/sampler", "x");
	assert_file(fs, "/jobs/other/sampler/x/f", data, 3 * CS + 5);
	ck_assert_int_eq(fs_getattr(fs, "/jobs/other/sampler/x/f", &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0222, 0);
	ck_assert_int_eq(fs_getattr(fs, "/jobs/other/sampler/x", &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0222, 0);
	/* ...but read-only. */
	ck_assert_int_eq(fs_mkdir(fs, "/jobs/other/sampler/y", 0755), -EROFS);
	ck_assert_int_eq(fs_mkdir(fs, "/jobs/other/sampler/x/d", 0755), -EROFS);
	ck_assert_int_eq(fs_create(fs, "/jobs/other/sampler/x/g", 0644, O_CREAT | O_WRONLY, &fh),
			 -EROFS);
	ck_assert_int_eq(fs_open(fs, "/jobs/other/sampler/x/f", O_WRONLY, &fh, &keep, &direct),
			 -EROFS);
	ck_assert_int_eq(fs_open(fs, "/jobs/other/sampler/x/f", O_RDONLY | O_TRUNC, &fh, &keep,
				 &direct), -EROFS);
	ck_assert_int_eq(fs_unlink(fs, "/jobs/other/sampler/x/f"), -EROFS);
	ck_assert_int_eq(fs_rmdir(fs, "/jobs/other/sampler/x"), -EROFS);
	ck_assert_int_eq(fs_truncate(fs, "/jobs/other/sampler/x/f", 0, 0), -EROFS);
	ck_assert_int_eq(fs_rename(fs, "/jobs/other/sampler/x/f", "/jobs/other/sampler/x/g", 0),
			 -EROFS);
	ck_assert_int_eq(fs_setxattr(fs, "/jobs/other/sampler/x", XA "ttl", "5", 1, 0), -EROFS);
	/* The store is unchanged. */
	assert_file(other, "/sampler/x/f", data, 3 * CS + 5);
	/* A read-only mount refuses writes to its own job too. */
	{
		struct ckfs *ro;

		cfg_init(&cfg);
		cfg.read_only = 1;
		ro = mount_with(&cfg);
		ck_assert_int_eq(fs_mkdir(ro, "/sampler/z", 0755), -EROFS);
		fs_free(ro);
	}
	fs_free(other);
	free(data);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_write_read_sizes)
{
	static const size_t sizes[] = {
		1, 4095, CS - 1, CS, CS + 1, 3 * CS, 5 * CS + 12345, (1u << 20) + 7,
	};
	struct ckfs *cold;
	char path[64];
	size_t i;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint8_t *data = random_bytes(sizes[i], i + 1);

		snprintf(path, sizeof(path), "/sampler/c/f%zu.bin", i);
		put_file(fs, path, data, sizes[i]);
		ck_assert_int_eq(file_size(fs, path), (off_t)sizes[i]);
		assert_file(fs, path, data, sizes[i]);
		assert_ranges(fs, path, data, sizes[i]);
		free(data);
	}
	/* A cold mount decodes everything from the store. */
	cold = mount2(1.0);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint8_t *data = random_bytes(sizes[i], i + 1);

		snprintf(path, sizeof(path), "/sampler/c/f%zu.bin", i);
		assert_file(cold, path, data, sizes[i]);
		free(data);
	}
	fs_free(cold);
	ck_assert_uint_eq(xattr_u64(fs, "/sampler/c", XA "logical_bytes"),
			  1 + 4095 + (CS - 1) + CS + (CS + 1) + 3 * CS + 5 * CS + 12345 +
			  (1u << 20) + 7);
	testutil_assert_no_errors();
}
END_TEST

/*
 * An empty file (touch, cp of an empty file, open(O_CREAT) + close) must
 * exist after close. fs_create() makes a writer that is not dirty, so
 * fs_flush() and fs_release() commit nothing and the name vanishes.
 */
START_TEST(test_empty_file)
{
	struct ckfs *m2;
	struct stat sb;
	uint64_t fh;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	fh = create_file(fs, "/sampler/c/empty");
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	/* created and closed without a flush (as after a failed open path) */
	ck_assert_int_eq(fs_create(fs, "/sampler/c/touched", 0600, O_CREAT | O_WRONLY, &fh), 0);
	fs_release(fs, fh);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/empty", &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	ck_assert_int_eq(sb.st_size, 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/touched", &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	assert_dir(fs, "/sampler/c", "empty,touched");
	assert_file(fs, "/sampler/c/empty", NULL, 0);
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler/c", "empty,touched");
	fs_free(m2);
}
END_TEST

START_TEST(test_compressible_data)
{
	/* Zeros and a repeating text: stored much smaller, read back exactly. */
	size_t n = 6 * CS + 99, i;
	uint8_t *z = calloc(1, n), *t = malloc(n);
	static const char pat[] = "the quick brown fox jumps over the lazy dog\n";

	for (i = 0; i < n; i++)
		t[i] = (uint8_t)pat[i % (sizeof(pat) - 1)];
	ck_assert_int_eq(fs_mkdir(fs, "/state/s", 0755), 0);
	put_file(fs, "/state/s/zeros", z, n);
	put_file(fs, "/state/s/text", t, n);
	assert_file(fs, "/state/s/zeros", z, n);
	assert_file(fs, "/state/s/text", t, n);
	ck_assert_uint_lt(xattr_u64(fs, "/state/s", XA "stored_bytes"), n / 4);
	ck_assert_uint_eq(xattr_u64(fs, "/state/s", XA "logical_bytes"), 2 * n);
	free(z);
	free(t);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_write_out_of_order)
{
	size_t n = 5 * CS + 100, piece = 10000, off;
	uint8_t *data = random_bytes(n, 21), *ref = calloc(1, n);
	struct ckfs *cold;
	uint64_t fh;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	/* Pieces in reverse order: every write but the first is not an append. */
	fh = create_file(fs, "/sampler/c/rev");
	off = (n / piece) * piece;
	for (;;) {
		size_t len = n - off < piece ? n - off : piece;

		ck_assert_int_eq(fs_write(fs, fh, (const char *)data + off, len, off), (long)len);
		if (off == 0)
			break;
		off -= piece;
	}
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	assert_file(fs, "/sampler/c/rev", data, n);

	/* Streaming first, then overwrite inside earlier chunks, then append. */
	memcpy(ref, data, 3 * CS);
	fh = create_file(fs, "/sampler/c/mixed");
	write_seq(fs, fh, data, 3 * CS);
	ck_assert_int_eq(fs_write(fs, fh, "HELLO", 5, CS - 2), 5);
	memcpy(ref + CS - 2, "HELLO", 5);
	ck_assert_int_eq(fs_write(fs, fh, "Z", 1, 0), 1);
	ref[0] = 'Z';
	ck_assert_int_eq(fs_write(fs, fh, (const char *)data + 3 * CS, n - 3 * CS, 3 * CS),
			 (long)(n - 3 * CS));
	memcpy(ref + 3 * CS, data + 3 * CS, n - 3 * CS);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	assert_file(fs, "/sampler/c/mixed", ref, n);

	/* A hole: a write far past the end reads back zeros before it. */
	fh = create_file(fs, "/sampler/c/sparse");
	ck_assert_int_eq(fs_write(fs, fh, "xyz", 3, 2 * CS + 10), 3);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	memset(ref, 0, n);
	memcpy(ref + 2 * CS + 10, "xyz", 3);
	assert_file(fs, "/sampler/c/sparse", ref, 2 * CS + 13);

	cold = mount2(1.0);
	assert_file(cold, "/sampler/c/rev", data, n);
	assert_ranges(cold, "/sampler/c/rev", data, n);
	assert_file(cold, "/sampler/c/sparse", ref, 2 * CS + 13);
	fs_free(cold);
	free(data);
	free(ref);
	testutil_assert_no_errors();
}
END_TEST

/*
 * The kernel drops a RELEASE it had queued when the mount goes away (CI:
 * a reader closed just before unmount leaked its handle). fs_free frees
 * every handle still open; a writer dirtied since its last flush is
 * abandoned, not committed.
 */
START_TEST(test_unreleased_handles_freed_at_unmount)
{
	uint8_t *data = random_bytes(CS + 7, 41);
	uint64_t rfh, wfh, cfh;
	int keep, direct;
	struct ckfs *m, *cold;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/u", 0755), 0);
	put_file(fs, "/sampler/u/a.bin", data, CS + 7);
	m = mount2(0);
	ck_assert_int_eq(fs_open(m, "/sampler/u/a.bin", O_RDONLY, &rfh, &keep, &direct), 0);
	ck_assert_int_eq(fs_read(m, rfh, (char *)data, 100, 5), 100);
	ck_assert_int_eq(fs_open(m, "/sampler/u/a.bin", O_WRONLY, &wfh, &keep, &direct), 0);
	ck_assert_int_eq(fs_write(m, wfh, "torn", 4, 0), 4);
	ck_assert_int_eq(fs_open(m, "/.stats", O_RDONLY, &cfh, &keep, &direct), 0);
	fs_free(m);	/* ASan: nothing leaked; nothing committed */
	free(data);
	data = random_bytes(CS + 7, 41);
	cold = mount2(0);
	assert_file(cold, "/sampler/u/a.bin", data, CS + 7);
	fs_free(cold);
	free(data);
}
END_TEST

START_TEST(test_modify_committed)
{
	/* Reopen a committed file for writing (no O_TRUNC): patch a byte in
	 * the middle and append; the rest is kept. */
	size_t n = 4 * CS + 3;
	uint8_t *data = random_bytes(n, 5), *ref = malloc(n + 10);
	uint64_t fh = 0;
	int keep, direct;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	put_file(fs, "/sampler/c/f", data, n);
	ck_assert_int_eq(fs_open(fs, "/sampler/c/f", O_WRONLY, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_write(fs, fh, "!", 1, 2 * CS + 1), 1);
	ck_assert_int_eq(fs_write(fs, fh, "0123456789", 10, n), 10);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	memcpy(ref, data, n);
	ref[2 * CS + 1] = '!';
	memcpy(ref + n, "0123456789", 10);
	assert_file(fs, "/sampler/c/f", ref, n + 10);
	/* O_TRUNC on open empties it. */
	ck_assert_int_eq(fs_open(fs, "/sampler/c/f", O_WRONLY | O_TRUNC, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_write(fs, fh, "abc", 3, 0), 3);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	assert_file(fs, "/sampler/c/f", (const uint8_t *)"abc", 3);
	free(data);
	free(ref);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_truncate)
{
	size_t n = 4 * CS + 500;
	uint8_t *data = random_bytes(n, 31), *ref = calloc(1, 4 * CS);
	struct ckfs *cold;
	uint64_t fh;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	put_file(fs, "/sampler/c/f", data, n);
	/* Shrink a committed file by path, into the middle of a chunk. */
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/f", 0, CS + 77), 0);
	ck_assert_int_eq(file_size(fs, "/sampler/c/f"), CS + 77);
	assert_file(fs, "/sampler/c/f", data, CS + 77);
	/* Grow: the new bytes are zeros. */
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/f", 0, 3 * CS + 1), 0);
	memcpy(ref, data, CS + 77);
	assert_file(fs, "/sampler/c/f", ref, 3 * CS + 1);
	/* To an exact chunk multiple, and to zero. */
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/f", 0, CS), 0);
	assert_file(fs, "/sampler/c/f", ref, CS);
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/f", 0, 0), 0);
	ck_assert_int_eq(file_size(fs, "/sampler/c/f"), 0);
	assert_file(fs, "/sampler/c/f", ref, 0);
	/* Committed: a cold mount sees the last state. */
	cold = mount2(1.0);
	ck_assert_int_eq(file_size(cold, "/sampler/c/f"), 0);
	fs_free(cold);

	/* Through the handle of a file being written. */
	fh = create_file(fs, "/sampler/c/g");
	write_seq(fs, fh, data, 3 * CS);
	ck_assert_int_eq(fs_truncate(fs, NULL, fh, CS / 2), 0);
	ck_assert_int_eq(fs_write(fs, fh, (const char *)data + CS / 2, CS, CS / 2), (long)CS);
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/g", 0, 2 * CS), 0);	/* by path, open */
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	memset(ref, 0, 4 * CS);
	memcpy(ref, data, 3 * CS / 2);
	assert_file(fs, "/sampler/c/g", ref, 2 * CS);
	/* Errors. */
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/none", 0, 0), -ENOENT);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d", 0755), 0);
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c/d", 0, 0), -EISDIR);
	ck_assert_int_eq(fs_truncate(fs, "/sampler/c", 0, 0), -EISDIR);
	free(data);
	free(ref);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_rename_file)
{
	uint8_t *a = random_bytes(2 * CS + 1, 41), *b = random_bytes(1000, 42);
	struct stat sb;
	struct ckfs *m2;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	put_file(fs, "/sampler/c/a", a, 2 * CS + 1);
	put_file(fs, "/sampler/c/b", b, 1000);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/a", "/sampler/c/a2", 0), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/a", &sb), -ENOENT);
	assert_file(fs, "/sampler/c/a2", a, 2 * CS + 1);
	assert_dir(fs, "/sampler/c", "a2,b");
	/* NOREPLACE onto an existing name. */
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/a2", "/sampler/c/b", 1), -EEXIST);
	assert_file(fs, "/sampler/c/b", b, 1000);
	/* Replace. */
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/a2", "/sampler/c/b", 0), 0);
	assert_file(fs, "/sampler/c/b", a, 2 * CS + 1);
	assert_dir(fs, "/sampler/c", "b");
	/* Into a folder; missing source; missing target folder. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d", 0755), 0);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/b", "/sampler/c/d/b", 0), 0);
	assert_file(fs, "/sampler/c/d/b", a, 2 * CS + 1);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/b", "/sampler/c/x", 0), -ENOENT);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/d/b", "/sampler/c/nope/b", 0), -ENOENT);
	/* A file over a folder and a folder over a file. */
	put_file(fs, "/sampler/c/f", b, 1000);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/f", "/sampler/c/d", 0), -EISDIR);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/d", "/sampler/c/f", 0), -ENOTDIR);
	/* The store agrees: another mount sees the final names only. */
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler/c", "d,f");
	assert_dir(m2, "/sampler/c/d", "b");
	assert_file(m2, "/sampler/c/d/b", a, 2 * CS + 1);
	fs_free(m2);
	free(a);
	free(b);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_rename_open_file)
{
	/* Renamed while being written: commits land under the new name. */
	uint8_t *a = random_bytes(CS + 9, 43);
	struct stat sb;
	struct ckfs *m2;
	uint64_t fh;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	fh = create_file(fs, "/sampler/c/tmp.part");
	write_seq(fs, fh, a, CS + 9);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/tmp.part", "/sampler/c/final", 0), 0);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/tmp.part", &sb), -ENOENT);
	assert_file(fs, "/sampler/c/final", a, CS + 9);
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler/c", "final");
	assert_file(m2, "/sampler/c/final", a, CS + 9);
	fs_free(m2);
	free(a);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_rename_folder)
{
	uint8_t *x = random_bytes(CS + 1, 51), *y = random_bytes(10, 52);
	struct stat sb;
	struct ckfs *m2;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d/sub", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d/empty", 0755), 0);
	put_file(fs, "/sampler/c/d/x", x, CS + 1);
	put_file(fs, "/sampler/c/d/sub/y", y, 10);
	put_file(fs, "/sampler/c/dd", y, 10);	/* shares a prefix, must not move */

	ck_assert_int_eq(fs_rename(fs, "/sampler/c/d", "/sampler/c/d/sub/in", 0), -EINVAL);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/d", "/sampler/c/e", 0), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/d", &sb), -ENOENT);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/d/x", &sb), -ENOENT);
	assert_dir(fs, "/sampler/c", "dd,e");
	assert_dir(fs, "/sampler/c/e", "empty,sub,x");
	assert_dir(fs, "/sampler/c/e/sub", "y");
	assert_dir(fs, "/sampler/c/e/empty", "");
	assert_file(fs, "/sampler/c/e/x", x, CS + 1);
	assert_file(fs, "/sampler/c/e/sub/y", y, 10);
	assert_file(fs, "/sampler/c/dd", y, 10);
	/* Onto an existing empty folder. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/g", 0755), 0);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/e/sub", "/sampler/c/g", 0), 0);
	assert_file(fs, "/sampler/c/g/y", y, 10);
	assert_dir(fs, "/sampler/c/e", "empty,x");
	/* Onto a non-empty folder. */
	ck_assert_int_eq(fs_rename(fs, "/sampler/c/e/empty", "/sampler/c/g", 0), -ENOTEMPTY);
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler/c", "dd,e,g");
	assert_dir(m2, "/sampler/c/e", "empty,x");
	assert_file(m2, "/sampler/c/e/x", x, CS + 1);
	assert_file(m2, "/sampler/c/g/y", y, 10);
	fs_free(m2);
	free(x);
	free(y);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_rename_exdev)
{
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c1", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c2", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/state/c1", 0755), 0);
	put_file(fs, "/sampler/c1/f", (const uint8_t *)"data", 4);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c1/f", "/sampler/c2/f", 0), -EXDEV);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c1/f", "/state/c1/f", 0), -EXDEV);
	ck_assert_int_eq(fs_rename(fs, "/sampler/c1", "/sampler/c3", 0), -EXDEV);
	assert_file(fs, "/sampler/c1/f", (const uint8_t *)"data", 4);
	assert_dir(fs, "/sampler/c2", "");
	assert_dir(fs, "/state/c1", "");
	/* Renaming to itself is a no-op. */
	ck_assert_int_eq(fs_rename(fs, "/sampler/c1/f", "/sampler/c1/f", 0), 0);
	assert_file(fs, "/sampler/c1/f", (const uint8_t *)"data", 4);
}
END_TEST

START_TEST(test_unlink_rmdir)
{
	struct stat sb;
	struct ckfs *m2;
	uint64_t fh;
	char buf[8];

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/d", 0755), 0);
	put_file(fs, "/sampler/c/a", (const uint8_t *)"aaaa", 4);
	put_file(fs, "/sampler/c/d/b", (const uint8_t *)"bbbb", 4);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/a"), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/a", &sb), -ENOENT);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/a"), -ENOENT);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/d"), -EISDIR);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c"), -EISDIR);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c/d"), -ENOTEMPTY);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c/d/b"), -ENOTDIR);
	assert_dir(fs, "/sampler/c", "d");
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/d/b"), 0);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c/d"), 0);
	assert_dir(fs, "/sampler/c", "");

	/* Unlinked while open: the handle keeps working, nothing commits. */
	fh = create_file(fs, "/sampler/c/tmp");
	ck_assert_int_eq(fs_write(fs, fh, "temp", 4, 0), 4);
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/tmp"), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/tmp", &sb), -ENOENT);
	ck_assert_int_eq(fs_read(fs, fh, buf, sizeof(buf), 0), 4);
	ck_assert_mem_eq(buf, "temp", 4);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/tmp", &sb), -ENOENT);
	assert_dir(fs, "/sampler/c", "");
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler/c", "");
	fs_free(m2);
	/* Now empty: the checkpoint itself goes. */
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/c"), 0);
	assert_dir(fs, "/sampler", "");
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_readdir_exact)
{
	uint64_t fh;
	struct dirlist d = { 0 };

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	put_file(fs, "/sampler/c/config.json", (const uint8_t *)"{}", 2);
	put_file(fs, "/sampler/c/model.safetensors", (const uint8_t *)"12345678", 8);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/tok", 0755), 0);
	put_file(fs, "/sampler/c/tok/vocab.json", (const uint8_t *)"v", 1);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/tok/deep", 0755), 0);
	put_file(fs, "/sampler/c/tok/deep/z", (const uint8_t *)"z", 1);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c/empty", 0755), 0);
	/* An open, uncommitted file is listed in its own mount. */
	fh = create_file(fs, "/sampler/c/tok/writing");

	assert_dir(fs, "/sampler/c", "config.json,empty,model.safetensors,tok");
	assert_dir(fs, "/sampler/c/tok", "deep,vocab.json,writing");
	assert_dir(fs, "/sampler/c/tok/deep", "z");
	assert_dir(fs, "/sampler/c/empty", "");
	ck_assert_int_eq(fs_readdir(fs, "/sampler/c/config.json", fill_cb, &d), -ENOTDIR);
	ck_assert_int_eq(fs_readdir(fs, "/sampler/c/nope", fill_cb, &d), -ENOENT);
	ck_assert_int_eq(fs_readdir(fs, "/sampler/nope", fill_cb, &d), -ENOENT);
	ck_assert_int_eq(d.n, 0);
	ck_assert(is_dir(fs, "/sampler/c/tok/deep"));
	fs_release(fs, fh);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_read_while_writing)
{
	size_t n = 3 * CS + 1000;
	uint8_t *data = random_bytes(n + CS, 61);
	char *buf = malloc(n + CS);
	uint64_t wfh, rfh = 0;
	int keep, direct;
	struct stat sb;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	wfh = create_file(fs, "/sampler/c/f");
	write_seq(fs, wfh, data, n);
	/* No flush yet: a reader opened now sees the writer's bytes,
	 * including the partial chunk still in memory. */
	ck_assert_int_eq(fs_open(fs, "/sampler/c/f", O_RDONLY, &rfh, &keep, &direct), 0);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/c/f", &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)n);
	ck_assert_int_eq(fs_fgetattr(fs, rfh, &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)n);
	ck_assert_int_eq(fs_read(fs, rfh, buf, n + 100, 0), (long)n);
	ck_assert_mem_eq(buf, data, n);
	ck_assert_int_eq(fs_read(fs, rfh, buf, 100, CS - 50), 100);
	ck_assert_mem_eq(buf, data + CS - 50, 100);
	/* More appends are visible through the same reader. */
	ck_assert_int_eq(fs_write(fs, wfh, (const char *)data + n, CS, n), (long)CS);
	ck_assert_int_eq(fs_read(fs, rfh, buf, n + CS, 0), (long)(n + CS));
	ck_assert_mem_eq(buf, data, n + CS);
	/* And an out-of-order patch (the spool path). */
	ck_assert_int_eq(fs_write(fs, wfh, "PATCH", 5, 10), 5);
	ck_assert_int_eq(fs_read(fs, rfh, buf, 20, 5), 20);
	ck_assert_mem_eq(buf, data + 5, 5);
	ck_assert_mem_eq(buf + 5, "PATCH", 5);
	ck_assert_mem_eq(buf + 10, data + 15, 10);
	/* Closing the reader commits nothing and does not disturb the writer. */
	ck_assert_int_eq(fs_flush(fs, rfh), 0);
	fs_release(fs, rfh);
	ck_assert_int_eq(fs_flush(fs, wfh), 0);
	fs_release(fs, wfh);
	memcpy(data + 10, "PATCH", 5);
	assert_file(fs, "/sampler/c/f", data, n + CS);
	free(data);
	free(buf);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_second_mount_sees_commits)
{
	uint8_t *data = random_bytes(2 * CS + 3, 71);
	struct ckfs *m2;
	struct stat sb;
	uint64_t fh;

	fs_free(fs);
	fs = mount2(0.01);
	m2 = mount2(0.01);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	sleep_s(0.05);
	ck_assert(is_dir(m2, "/sampler/c"));
	assert_dir(m2, "/sampler", "c");

	fh = create_file(fs, "/sampler/c/f");
	write_seq(fs, fh, data, 2 * CS + 3);
	sleep_s(0.05);
	/* Not committed: invisible to the other mount. */
	ck_assert_int_eq(fs_getattr(m2, "/sampler/c/f", &sb), -ENOENT);
	assert_dir(m2, "/sampler/c", "");
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	sleep_s(0.05);
	/* Committed by the flush (still open on the writer's side). */
	assert_dir(m2, "/sampler/c", "f");
	assert_file(m2, "/sampler/c/f", data, 2 * CS + 3);
	/* Appended after the flush: the other mount keeps the committed
	 * version until the next flush (what it sees after that flush is
	 * test_second_mount_sees_rewrite). */
	ck_assert_int_eq(fs_write(fs, fh, "tail", 4, 2 * CS + 3), 4);
	sleep_s(0.05);
	ck_assert_int_eq(file_size(m2, "/sampler/c/f"), 2 * CS + 3);
	assert_file(m2, "/sampler/c/f", data, 2 * CS + 3);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	/* Deletions propagate too. */
	ck_assert_int_eq(fs_unlink(fs, "/sampler/c/f"), 0);
	sleep_s(0.05);
	ck_assert_int_eq(fs_getattr(m2, "/sampler/c/f", &sb), -ENOENT);
	/* Both mounts write files of one checkpoint (two ranks). */
	put_file(m2, "/sampler/c/rank1", data, 100);
	put_file(fs, "/sampler/c/rank0", data + 100, 100);
	sleep_s(0.05);
	assert_dir(fs, "/sampler/c", "rank0,rank1");
	assert_dir(m2, "/sampler/c", "rank0,rank1");
	assert_file(fs, "/sampler/c/rank1", data, 100);
	assert_file(m2, "/sampler/c/rank0", data + 100, 100);
	/* Two mounts racing to create one checkpoint: one wins. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/race", 0755), 0);
	ck_assert_int_eq(fs_mkdir(m2, "/sampler/race", 0755), -EEXIST);
	fs_free(m2);
	free(data);
}
END_TEST

/* Wait until the wall clock is early in a second, so a few quick steps
 * happen within one second. */
static void align_to_second(void)
{
	struct timespec ts;

	for (;;) {
		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_nsec < 100000000)
			return;
		sleep_s(0.02);
	}
}

/* Does @f show @path with exactly @want (size and bytes)? */
static int sees(struct ckfs *f, const char *path, const uint8_t *want, size_t n)
{
	size_t got_n;
	uint8_t *got = get_file(f, path, &got_n);
	int same = got_n == n && memcmp(got, want, n) == 0;

	free(got);
	return same;
}

/*
 * A file changed and committed again by one mount must read as the new
 * version on another mount once the listing TTL has passed. view.c keeps
 * a cached entry while the entry key's listed (size, mtime) are unchanged,
 * and the local store lists mtime in whole seconds; an entry rewritten in
 * the same second with JSON of the same length (an append of a few bytes
 * after a flush, or a same-size rewrite) is never fetched again, so the
 * other mount serves the old version indefinitely.
 */
START_TEST(test_second_mount_sees_rewrite)
{
	uint8_t *v1 = random_bytes(1004, 81), *v2 = random_bytes(1000, 82);
	int append_ok, append_later, rewrite_ok, rewrite_later;
	struct ckfs *m2;
	uint64_t fh = 0;
	int keep, direct;

	fs_free(fs);
	fs = mount2(0.01);
	m2 = mount2(0.01);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);

	/* 1. flush, append 4 bytes, flush again (one open). */
	align_to_second();
	fh = create_file(fs, "/sampler/c/app");
	ck_assert_int_eq(fs_write(fs, fh, (const char *)v1, 1000, 0), 1000);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	sleep_s(0.03);
	ck_assert(sees(m2, "/sampler/c/app", v1, 1000));
	ck_assert_int_eq(fs_write(fs, fh, (const char *)v1 + 1000, 4, 1000), 4);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	ck_assert(sees(fs, "/sampler/c/app", v1, 1004));
	sleep_s(0.03);
	append_ok = sees(m2, "/sampler/c/app", v1, 1004);

	/* 2. rewrite with other bytes of the same size. */
	align_to_second();
	put_file(fs, "/sampler/c/rw", v1, 1000);
	sleep_s(0.03);
	ck_assert(sees(m2, "/sampler/c/rw", v1, 1000));
	ck_assert_int_eq(fs_open(fs, "/sampler/c/rw", O_WRONLY | O_TRUNC, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_write(fs, fh, (const char *)v2, 1000, 0), 1000);
	ck_assert_int_eq(fs_flush(fs, fh), 0);
	fs_release(fs, fh);
	ck_assert(sees(fs, "/sampler/c/rw", v2, 1000));
	sleep_s(0.03);
	rewrite_ok = sees(m2, "/sampler/c/rw", v2, 1000);

	/* Still stale much later: not a matter of list_ttl. */
	sleep_s(1.2);
	append_later = sees(m2, "/sampler/c/app", v1, 1004);
	rewrite_later = sees(m2, "/sampler/c/rw", v2, 1000);
	ck_assert_msg(append_ok && rewrite_ok && append_later && rewrite_later,
		      "other mount sees the new version: append %d (1.2 s later %d), "
		      "same-size rewrite %d (1.2 s later %d)", append_ok, append_later,
		      rewrite_ok, rewrite_later);
	fs_free(m2);
	free(v1);
	free(v2);
}
END_TEST

START_TEST(test_delta)
{
	size_t n = 8 * CS + 4321;
	uint8_t *w1 = random_bytes(n, 91), *w2 = malloc(n), *extra = random_bytes(CS + 1, 92);
	uint64_t stored1, stored2;
	struct ckfs *cold;
	int rc;

	memcpy(w2, w1, n);
	/* A few bytes changed, in some of the chunks only. */
	w2[5] ^= 0xff;
	w2[2 * CS + 100] ^= 0x01;
	w2[2 * CS + 101] ^= 0x80;
	w2[n - 1] ^= 0x55;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-1", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/step-1", XA "kind", &rc), "base");
	xattr(fs, "/sampler/step-1", XA "base", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	put_file(fs, "/sampler/step-1/model.safetensors", w1, n);

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/step-2", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/step-2", XA "kind", &rc), "delta");
	ck_assert_str_eq(xattr(fs, "/sampler/step-2", XA "base", &rc), "step-1");
	put_file(fs, "/sampler/step-2/model.safetensors", w2, n);
	put_file(fs, "/sampler/step-2/new.bin", extra, CS + 1);	/* base lacks it */

	assert_file(fs, "/sampler/step-1/model.safetensors", w1, n);
	assert_file(fs, "/sampler/step-2/model.safetensors", w2, n);
	assert_file(fs, "/sampler/step-2/new.bin", extra, CS + 1);
	stored1 = xattr_u64(fs, "/sampler/step-1", XA "stored_bytes");
	stored2 = xattr_u64(fs, "/sampler/step-2", XA "stored_bytes");
	ck_assert_uint_eq(xattr_u64(fs, "/sampler/step-1", XA "logical_bytes"), n);
	ck_assert_uint_eq(xattr_u64(fs, "/sampler/step-2", XA "logical_bytes"), n + CS + 1);
	/* Random weights do not compress: the base stores about n bytes; the
	 * delta stores the new file whole plus almost nothing for the model. */
	ck_assert_uint_ge(stored1, n * 9 / 10);
	ck_assert_msg(stored2 - (CS + 1) < stored1 / 20,
		      "delta stores %" PRIu64 " for the model, base %" PRIu64,
		      stored2 - (CS + 1), stored1);

	/* A cold mount decodes base XOR delta exactly. */
	cold = mount2(1.0);
	assert_file(cold, "/sampler/step-2/model.safetensors", w2, n);
	assert_ranges(cold, "/sampler/step-2/model.safetensors", w2, n);
	ck_assert_str_eq(xattr(cold, "/sampler/step-2", XA "kind", &rc), "delta");
	fs_free(cold);

	/* Deleting the base keeps the delta readable. */
	ck_assert_int_eq(fs_unlink(fs, "/sampler/step-1/model.safetensors"), 0);
	ck_assert_int_eq(fs_rmdir(fs, "/sampler/step-1"), 0);
	cold = mount2(1.0);
	assert_file(cold, "/sampler/step-2/model.safetensors", w2, n);
	fs_free(cold);

	free(w1);
	free(w2);
	free(extra);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_delta_identical_file)
{
	size_t n = 4 * CS + 10;
	uint8_t *w = random_bytes(n, 93);
	struct ckfs *cold;
	int rc;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/a", 0755), 0);
	put_file(fs, "/sampler/a/w", w, n);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/b", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/b", XA "kind", &rc), "delta");
	put_file(fs, "/sampler/b/w", w, n);
	/* An all-zero delta chunk costs nothing. */
	ck_assert_uint_lt(xattr_u64(fs, "/sampler/b", XA "stored_bytes"), 256);
	cold = mount2(1.0);
	assert_file(cold, "/sampler/b/w", w, n);
	fs_free(cold);
	free(w);
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_setxattr_kind)
{
	int rc;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/s1", 0755), 0);
	put_file(fs, "/sampler/s1/w", (const uint8_t *)"weights", 7);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/s2", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/s2", XA "kind", &rc), "delta");
	/* Force a new base while still empty (as `setfattr` sends it, and
	 * as `echo` would, with a newline). */
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s2", XA "kind", "base\n", 5, 0), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/s2", XA "kind", &rc), "base");
	xattr(fs, "/sampler/s2", XA "base", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	/* The next checkpoint is a delta of the newest base. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/s3", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/s3", XA "base", &rc), "s2");
	/* Persisted: another mount sees it. */
	{
		struct ckfs *m2 = mount2(1.0);

		ck_assert_str_eq(xattr(m2, "/sampler/s2", XA "kind", &rc), "base");
		fs_free(m2);
	}
	/* Not once it holds a file. */
	put_file(fs, "/sampler/s3/w", (const uint8_t *)"weights", 7);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s3", XA "kind", "base", 4, 0), -EBUSY);
	ck_assert_str_eq(xattr(fs, "/sampler/s3", XA "kind", &rc), "delta");
	ck_assert(testutil_log_has("already holds files"));
	/* Bad values. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/s4", 0755), 0);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", XA "kind", "bogus", 5, 0), -EINVAL);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", XA "kind", "state", 5, 0), -EINVAL);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", XA "kind", "", 0, 0), -EINVAL);
	/* LoRA is allowed on an empty checkpoint. */
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", XA "kind", "lora", 4, 0), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/s4", XA "kind", &rc), "lora");
	/* State checkpoints are always "state". */
	ck_assert_int_eq(fs_mkdir(fs, "/state/t", 0755), 0);
	ck_assert_str_eq(xattr(fs, "/state/t", XA "kind", &rc), "state");
	ck_assert_int_eq(fs_setxattr(fs, "/state/t", XA "kind", "base", 4, 0), -EINVAL);
	/* Read-only attributes and foreign names. */
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", XA "stored_bytes", "1", 1, 0), -EPERM);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/s4", "user.other", "1", 1, 0), -ENOTSUP);
	xattr(fs, "/sampler/s4", "user.other", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	xattr(fs, "/sampler/nope", XA "kind", &rc);
	ck_assert_int_eq(rc, -ENOENT);
}
END_TEST

START_TEST(test_ttl_xattr)
{
	char v[64], list[1024];
	int rc, n;
	double created;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	xattr(fs, "/sampler/c", XA "ttl", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	xattr(fs, "/sampler/c", XA "expires_at", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	ck_assert_int_eq(fs_removexattr(fs, "/sampler/c", XA "ttl"), -ENODATA);

	ck_assert_int_eq(fs_setxattr(fs, "/sampler/c", XA "ttl", "3600", 4, 0), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/c", XA "ttl", &rc), "3600");
	created = strtod(xattr(fs, "/sampler/c", XA "created", &rc), NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_double_eq_tol(strtod(xattr(fs, "/sampler/c", XA "expires_at", &rc), NULL),
				created + 3600, 1.0);
	/* Size probing and a too-small buffer. */
	ck_assert_int_eq(fs_getxattr(fs, "/sampler/c", XA "ttl", NULL, 0), 4);
	ck_assert_int_eq(fs_getxattr(fs, "/sampler/c", XA "ttl", v, 2), -ERANGE);
	/* Listed while set. */
	n = fs_listxattr(fs, "/sampler/c", list, sizeof(list));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(fs_listxattr(fs, "/sampler/c", NULL, 0), n);
	{
		int found = 0, off = 0;

		while (off < n) {
			found |= !strcmp(list + off, XA "ttl");
			off += (int)strlen(list + off) + 1;
		}
		ck_assert(found);
	}
	/* Trailing newline accepted; garbage refused and nothing changes. */
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/c", XA "ttl", "60\n", 3, 0), 0);
	ck_assert_str_eq(xattr(fs, "/sampler/c", XA "ttl", &rc), "60");
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/c", XA "ttl", "abc", 3, 0), -EINVAL);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/c", XA "ttl", "-5", 2, 0), -EINVAL);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/c", XA "ttl", "", 0, 0), -EINVAL);
	ck_assert_str_eq(xattr(fs, "/sampler/c", XA "ttl", &rc), "60");
	/* Persisted for another mount. */
	{
		struct ckfs *m2 = mount2(1.0);

		ck_assert_str_eq(xattr(m2, "/sampler/c", XA "ttl", &rc), "60");
		fs_free(m2);
	}
	/* Removed. */
	ck_assert_int_eq(fs_removexattr(fs, "/sampler/c", XA "ttl"), 0);
	xattr(fs, "/sampler/c", XA "ttl", &rc);
	ck_assert_int_eq(rc, -ENODATA);
	ck_assert_int_eq(fs_removexattr(fs, "/sampler/c", XA "ttl"), -ENODATA);
	ck_assert_int_eq(fs_removexattr(fs, "/sampler/c", XA "kind"), -EPERM);
	{
		struct ckfs *m2 = mount2(1.0);

		xattr(m2, "/sampler/c", XA "ttl", &rc);
		ck_assert_int_eq(rc, -ENODATA);
		fs_free(m2);
	}
	testutil_assert_no_errors();
}
END_TEST

START_TEST(test_default_ttl)
{
	struct fs_config cfg;
	struct ckfs *m;
	int rc;

	cfg_init(&cfg);
	cfg.default_ttl = 7200;
	m = mount_with(&cfg);
	ck_assert_int_eq(fs_mkdir(m, "/sampler/c", 0755), 0);
	ck_assert_str_eq(xattr(m, "/sampler/c", XA "ttl", &rc), "7200");
	fs_free(m);
}
END_TEST

START_TEST(test_ttl_expiry)
{
	struct ckfs *m2;
	struct stat sb;
	uint64_t fh = 0;
	int keep, direct, rc;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/keep", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/tmp", 0755), 0);
	put_file(fs, "/sampler/tmp/f", (const uint8_t *)"abc", 3);
	ck_assert_int_eq(fs_setxattr(fs, "/sampler/tmp", XA "ttl", "1", 1, 0), 0);
	assert_dir(fs, "/sampler", "keep,tmp");
	sleep_s(1.1);
	/* Gone for every operation, in this mount and a fresh one. */
	assert_dir(fs, "/sampler", "keep");
	ck_assert_int_eq(fs_getattr(fs, "/sampler/tmp", &sb), -ENOENT);
	ck_assert_int_eq(fs_getattr(fs, "/sampler/tmp/f", &sb), -ENOENT);
	ck_assert_int_eq(fs_open(fs, "/sampler/tmp/f", O_RDONLY, &fh, &keep, &direct), -ENOENT);
	xattr(fs, "/sampler/tmp", XA "kind", &rc);
	ck_assert_int_eq(rc, -ENOENT);
	m2 = mount2(1.0);
	assert_dir(m2, "/sampler", "keep");
	ck_assert_int_eq(fs_getattr(m2, "/sampler/tmp", &sb), -ENOENT);
	fs_free(m2);
	/* The name can be used again, for a fresh empty checkpoint. */
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/tmp", 0755), 0);
	assert_dir(fs, "/sampler", "keep,tmp");
	assert_dir(fs, "/sampler/tmp", "");
	xattr(fs, "/sampler/tmp", XA "ttl", &rc);
	ck_assert_int_eq(rc, -ENODATA);
}
END_TEST

START_TEST(test_checkpoints_jsonl)
{
	uint64_t fh = 0;
	int keep, direct;
	char buf[4096];
	long n;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/s1", 0755), 0);
	ck_assert_int_eq(fs_mkdir(fs, "/state/r1", 0755), 0);
	ck_assert_int_eq(fs_open(fs, "/checkpoints.jsonl", O_RDONLY, &fh, &keep, &direct), 0);
	n = fs_read(fs, fh, buf, sizeof(buf) - 1, 0);
	fs_release(fs, fh);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "\"name\":\"s1\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"name\":\"r1\""));
	ck_assert_uint_eq(buf[n - 1], '\n');
	ck_assert_ptr_nonnull(strchr(buf, '\n'));
	ck_assert_ptr_eq(strchr(buf, '\n') + 1 + strcspn(strchr(buf, '\n') + 1, "\n"), buf + n - 1);
	ck_assert_int_eq(fs_open(fs, "/checkpoints.jsonl", O_WRONLY, &fh, &keep, &direct), -EACCES);
}
END_TEST

/* ---- corruption ---- */

struct first_entry {
	struct entry *e;
};

static int grab_entry(struct entry *e, void *arg)
{
	struct first_entry *f = arg;

	if (f->e)
		entry_free(f->e);
	f->e = e;
	return 0;
}

static void chunk_file(const struct chunk_ref *ref, char *out, size_t cap)
{
	char key[128];

	catalog_chunk_key(ref->key, key, sizeof(key));
	snprintf(out, cap, "%s/%s", storedir, key);
}

static void flip_byte(const char *file, long off)
{
	FILE *f = fopen(file, "r+b");
	int c;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
	c = fgetc(f);
	ck_assert_int_ne(c, EOF);
	ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
	ck_assert_int_ne(fputc(c ^ 0x40, f), EOF);
	ck_assert_int_eq(fclose(f), 0);
}

/* Write a 3-chunk file and corrupt the stored frame of chunk 1. */
static struct entry *corrupt_middle_chunk(const uint8_t *data, size_t n)
{
	struct first_entry fe = { 0 };
	char path[8192];
	struct stat sb;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	put_file(fs, "/sampler/c/f", data, n);
	ck_assert_int_eq(catalog_load_entries(st, "default", CKPT_SAMPLER, "c", grab_entry, &fe),
			 0);
	ck_assert_ptr_nonnull(fe.e);
	ck_assert_uint_eq(fe.e->n_chunks, 3);
	chunk_file(&fe.e->chunks[1], path, sizeof(path));
	ck_assert_int_eq(stat(path, &sb), 0);
	flip_byte(path, (long)(sb.st_size / 2));
	return fe.e;
}

START_TEST(test_corrupt_chunk_eio)
{
	size_t n = 3 * CS;
	uint8_t *data = random_bytes(n, 101);
	char *buf = malloc(n);
	struct entry *e = corrupt_middle_chunk(data, n);
	struct ckfs *cold = mount2(1.0);
	uint64_t fh = 0;
	int keep, direct;
	long r;

	ck_assert_int_eq(fs_open(cold, "/sampler/c/f", O_RDONLY, &fh, &keep, &direct), 0);
	/* The intact chunks read fine. */
	ck_assert_int_eq(fs_read(cold, fh, buf, CS, 0), (long)CS);
	ck_assert_mem_eq(buf, data, CS);
	ck_assert_int_eq(fs_read(cold, fh, buf, CS, 2 * CS), (long)CS);
	ck_assert_mem_eq(buf, data + 2 * CS, CS);
	/* The corrupt one is EIO, every time, wherever the read starts in it. */
	ck_assert_int_eq(fs_read(cold, fh, buf, CS, CS), -EIO);
	ck_assert_int_eq(fs_read(cold, fh, buf, 10, CS + 1000), -EIO);
	ck_assert_int_eq(fs_read(cold, fh, buf, CS, CS), -EIO);
	ck_assert(testutil_log_has("checksum mismatch"));
	/* Reads that touch it never return its bytes. */
	r = fs_read(cold, fh, buf, 2 * CS, CS / 2);
	ck_assert(r == -EIO || (r >= 0 && (size_t)r <= CS / 2));
	if (r > 0)
		ck_assert_mem_eq(buf, data + CS / 2, (size_t)r);
	fs_release(cold, fh);
	fs_free(cold);
	entry_free(e);
	free(data);
	free(buf);
}
END_TEST

/*
 * fs.h: fs_read "returns bytes read (short only at end of file)". A read
 * spanning a good chunk and a corrupt one returns the good bytes as a short
 * count instead of -EIO. Through FUSE a short read is taken as end of file,
 * so `cp` would silently produce a truncated copy.
 */
START_TEST(test_corrupt_chunk_no_short_read)
{
	size_t n = 3 * CS;
	uint8_t *data = random_bytes(n, 102);
	char *buf = malloc(n);
	struct entry *e = corrupt_middle_chunk(data, n);
	struct ckfs *cold = mount2(1.0);
	uint64_t fh = 0;
	int keep, direct;
	long r;

	ck_assert_int_eq(fs_open(cold, "/sampler/c/f", O_RDONLY, &fh, &keep, &direct), 0);
	r = fs_read(cold, fh, buf, n, 0);
	ck_assert_msg(r == -EIO, "read of %zu bytes across a corrupt chunk returned %ld", n, r);
	fs_release(cold, fh);
	fs_free(cold);
	entry_free(e);
	free(data);
	free(buf);
}
END_TEST

START_TEST(test_missing_chunk_eio)
{
	size_t n = 3 * CS;
	uint8_t *data = random_bytes(n, 103);
	char *buf = malloc(n), path[8192];
	struct entry *e = corrupt_middle_chunk(data, n);
	struct ckfs *cold;
	uint64_t fh = 0;
	int keep, direct;

	chunk_file(&e->chunks[2], path, sizeof(path));
	ck_assert_int_eq(unlink(path), 0);
	cold = mount2(1.0);
	ck_assert_int_eq(fs_open(cold, "/sampler/c/f", O_RDONLY, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_read(cold, fh, buf, 100, 2 * CS + 5), -EIO);
	ck_assert(testutil_log_has("missing from the store"));
	fs_release(cold, fh);
	fs_free(cold);
	entry_free(e);
	free(data);
	free(buf);
}
END_TEST

/*
 * Checkpoint names are valid when name_check_component() accepts them
 * (1-255 bytes, DESIGN.md section 2), but the percent-encoded name must
 * fit one store key segment (at most 200 bytes, store.h): a 201-255 byte
 * ASCII name, or 67+ two-byte UTF-8 characters (3 key bytes per byte),
 * makes fs_mkdir() fail with EINVAL and a store error in the log.
 */
START_TEST(test_long_names)
{
	char name[256], path[300];
	struct dirlist d = { 0 };
	int rc, i;

	/*
	 * A checkpoint name becomes one store key segment (at most
	 * NAME_KEY_MAX = 200 bytes once percent-encoded): up to that it
	 * works, beyond it mkdir refuses cleanly with ENAMETOOLONG rather than
	 * failing in the store.
	 */
	memset(name, 'a', 200);
	name[200] = '\0';
	snprintf(path, sizeof(path), "/sampler/%s", name);
	rc = fs_mkdir(fs, path, 0755);
	ck_assert_msg(rc == 0, "mkdir of a 200-byte name: %d", rc);
	ck_assert(is_dir(fs, path));
	memset(name, 'b', 255);
	name[255] = '\0';
	snprintf(path, sizeof(path), "/sampler/%s", name);
	ck_assert_int_eq(fs_mkdir(fs, path, 0755), -ENAMETOOLONG);
	name[0] = '\0';
	for (i = 0; i < 30; i++)	/* 60 bytes, 180 encoded */
		strcat(name, "\xc3\xa9");
	snprintf(path, sizeof(path), "/sampler/%s", name);
	rc = fs_mkdir(fs, path, 0755);
	ck_assert_msg(rc == 0, "mkdir of a 60-byte UTF-8 name: %d", rc);
	for (i = 0; i < 40; i++)	/* 140 bytes, 420 encoded */
		strcat(name, "\xc3\xa9");
	snprintf(path, sizeof(path), "/sampler/%s", name);
	ck_assert_int_eq(fs_mkdir(fs, path, 0755), -ENAMETOOLONG);
	ck_assert_int_eq(fs_readdir(fs, "/sampler", fill_cb, &d), 0);
	ck_assert_int_eq(d.n, 2);
	for (i = 0; i < d.n; i++)
		free(d.v[i]);
	/* Each refusal is one log line naming the errno. */
	ck_assert(testutil_log_has("(ENAMETOOLONG)"));
	ck_assert_int_eq(testutil_log_errors(), 2);
}
END_TEST

/*
 * parse_path() splits the part of a path inside a checkpoint into at most
 * 1024 components in arrays of 1024, but split() returns max + 1 when
 * there are more, and the check loop then reads cc[1024] and ll[1024]
 * past the end of both stack arrays. A path with 1025+ components fits in
 * PATH_MAX ("a/" x 1100 is 2200 bytes).
 */
START_TEST(test_deep_path)
{
	char path[4096];
	struct stat sb;
	size_t off, i;
	int rc;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/c", 0755), 0);
	off = (size_t)snprintf(path, sizeof(path), "/sampler/c/");
	for (i = 0; i < 1100; i++)
		off += (size_t)snprintf(path + off, sizeof(path) - off, "a/");
	snprintf(path + off, sizeof(path) - off, "f");
	rc = fs_getattr(fs, path, &sb);
	ck_assert_msg(rc == -ENOENT || rc == -ENAMETOOLONG, "getattr: %d", rc);
}
END_TEST

/* ---- races (issue 9 item 1) ---- */

struct race_arg {
	struct ckfs *f;
	const char *path;
	double until;		/* monotonic seconds */
	long ops, errors;
};

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *race_truncate_main(void *arg)
{
	struct race_arg *a = arg;
	uint64_t sizes[] = { 0, 3 * CS / 2, CS, 100 };
	size_t k = 0;

	while (mono_now() < a->until) {
		int rc = fs_truncate(a->f, a->path, 0, sizes[k++ % ARRAY_SIZE(sizes)]);

		if (rc < 0)
			a->errors++;
		a->ops++;
	}
	return NULL;
}

static void *race_open_read_main(void *arg)
{
	struct race_arg *a = arg;
	char *buf = malloc(2 * CS);

	while (mono_now() < a->until) {
		uint64_t fh = 0;
		int keep, direct;
		long r;

		if (fs_open(a->f, a->path, O_RDONLY, &fh, &keep, &direct) < 0) {
			a->errors++;
			continue;
		}
		r = fs_read(a->f, fh, buf, 2 * CS, 0);
		if (r < 0)
			a->errors++;
		else	/* every size the truncates leave, or what a writer holds */
			for (long i = 0; i < r; i++)
				if (buf[i] != 0 && buf[i] != 'x') {
					a->errors++;
					break;
				}
		fs_release(a->f, fh);
		a->ops++;
	}
	free(buf);
	return NULL;
}

/*
 * A path truncate() made a temporary writer slot, and a concurrent open()
 * of the same file found and shared it; the truncate then freed the slot
 * under the open handle, whose pread() used freed memory (the ASan build
 * of this test reported heap-use-after-free; release builds crashed).
 */
START_TEST(test_race_truncate_open_read)
{
	uint8_t *data = malloc(2 * CS);
	struct race_arg a[4];
	pthread_t t[4];
	int i;

	memset(data, 'x', 2 * CS);
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/r", 0755), 0);
	put_file(fs, "/sampler/r/f", data, 2 * CS);
	for (i = 0; i < 4; i++) {
		a[i] = (struct race_arg){ .f = fs, .path = "/sampler/r/f",
					  .until = mono_now() + 3.0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, i < 2 ? race_truncate_main
								   : race_open_read_main, &a[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(a[i].errors == 0, "thread %d: %ld errors in %ld ops", i,
			      a[i].errors, a[i].ops);
		ck_assert_int_gt(a[i].ops, 10);
	}
	free(data);
}
END_TEST

/* ---- store outage (issue 9 item 7) ---- */

/*
 * A store in front of the test's local store that can be cut: while
 * down, every call waits FLAKY_DELAY (a request's deadline passing) and
 * fails with ETIMEDOUT; with gets_only, listings still work and only
 * reads of objects fail (a partial outage).
 */
#define FLAKY_DELAY 1.0

struct flaky {
	struct store base;
	struct store *inner;
	int down, gets_only;	/* read by every thread: atomics */
	int calls_while_down;
};

static int flaky_fail(struct flaky *f, int is_get)
{
	if (!__atomic_load_n(&f->down, __ATOMIC_SEQ_CST))
		return 0;
	if (__atomic_load_n(&f->gets_only, __ATOMIC_SEQ_CST) && !is_get)
		return 0;
	__atomic_add_fetch(&f->calls_while_down, 1, __ATOMIC_SEQ_CST);
	sleep_s(FLAKY_DELAY);
	return -ETIMEDOUT;
}

static int flaky_put(struct store *sp, const char *key, const void *data, size_t len)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 0);

	return rc ? rc : f->inner->ops->put(f->inner, key, data, len);
}

static int flaky_put_if_absent(struct store *sp, const char *key, const void *data, size_t len)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 0);

	return rc ? rc : f->inner->ops->put_if_absent(f->inner, key, data, len);
}

static int flaky_get_range(struct store *sp, const char *key, uint64_t off, size_t len,
			   struct buf *out)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 1);

	return rc ? rc : f->inner->ops->get_range(f->inner, key, off, len, out);
}

static int flaky_head(struct store *sp, const char *key, struct store_stat *out)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 1);

	return rc ? rc : f->inner->ops->head(f->inner, key, out);
}

static int flaky_list(struct store *sp, const char *prefix, store_list_cb cb, void *arg)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 0);

	return rc ? rc : f->inner->ops->list(f->inner, prefix, cb, arg);
}

static int flaky_remove(struct store *sp, const char *key)
{
	struct flaky *f = (struct flaky *)sp;
	int rc = flaky_fail(f, 0);

	return rc ? rc : f->inner->ops->remove(f->inner, key);
}

static void flaky_destroy(struct store *sp)
{
	(void)sp;	/* the inner store is the fixture's */
}

static const struct store_ops flaky_ops = {
	.name = "flaky", .put = flaky_put, .put_if_absent = flaky_put_if_absent,
	.get_range = flaky_get_range, .head = flaky_head, .list = flaky_list,
	.remove = flaky_remove, .destroy = flaky_destroy,
};

struct outage_arg {
	struct ckfs *f;
	const char *path;
	int op;			/* 0 getattr, 1 readdir, 2 mkdir */
	int rc;
	double took;
};

static int count_cb(void *arg, const char *name, const struct stat *sb)
{
	(void)sb;
	if (strcmp(name, ".") && strcmp(name, ".."))
		(*(int *)arg)++;
	return 0;
}

static void *outage_main(void *arg)
{
	struct outage_arg *a = arg;
	double t0 = mono_now();
	struct stat sb;
	int n = 0;

	if (a->op == 0)
		a->rc = fs_getattr(a->f, a->path, &sb);
	else if (a->op == 1)
		a->rc = fs_readdir(a->f, a->path, count_cb, &n);
	else
		a->rc = fs_mkdir(a->f, a->path, 0755);
	if (a->op == 1 && a->rc == 0 && n != 1)
		a->rc = -ESTALE;	/* the listing lost the file */
	a->took = mono_now() - t0;
	return NULL;
}

/* Run @n ops at once; returns the time the slowest took. */
static double run_outage(struct outage_arg *a, int n)
{
	pthread_t t[8];
	double worst = 0;
	int i;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, outage_main, &a[i]), 0);
	for (i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (a[i].took > worst)
			worst = a[i].took;
	}
	return worst;
}

/*
 * While the store fails: lookups of committed files answer from the last
 * good listing (never ENOENT), each within one deadline however many ask
 * at once (the listing was refreshed under the global lock, every caller
 * retrying with a fresh deadline: N callers took N deadlines); an open
 * file stays readable from the cache; a mount that never listed says
 * ETIMEDOUT; mutations fail within one deadline too. A partial outage
 * (listings work, reads of changed records fail) used to drop the files
 * it could not read from the listing: ENOENT.
 */
START_TEST(test_store_outage)
{
	struct flaky fl = { .base.ops = &flaky_ops, .inner = st };
	uint8_t *data = random_bytes(2 * CS + 5, 77);
	struct outage_arg a[6];
	struct ckfs *m, *cold, *other;
	struct fs_config cfg;
	uint64_t fh = 0;
	int keep, direct, i;
	char *buf = malloc(2 * CS + 5);
	double t0, worst;

	cfg_init(&cfg);
	cfg.list_ttl = 0.01;
	cfg.gc_interval = 0;
	ck_assert_int_eq(fs_new(&fl.base, &cfg, &m), 0);
	ck_assert_int_eq(fs_start(m), 0);
	ck_assert_int_eq(fs_new(&fl.base, &cfg, &cold), 0);
	ck_assert_int_eq(fs_mkdir(m, "/sampler/c", 0755), 0);
	put_file(m, "/sampler/c/f", data, 2 * CS + 5);
	ck_assert_int_eq(fs_open(m, "/sampler/c/f", O_RDONLY, &fh, &keep, &direct), 0);
	ck_assert_int_eq(fs_read(m, fh, buf, 2 * CS + 5, 0), 2 * CS + 5);
	sleep_s(0.05);

	__atomic_store_n(&fl.down, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 6; i++)
		a[i] = (struct outage_arg){ .f = m, .path = i % 2 ? "/sampler/c" : "/sampler/c/f",
					    .op = i % 2 };
	worst = run_outage(a, 6);
	for (i = 0; i < 6; i++)
		ck_assert_msg(a[i].rc == 0, "%s %s during the outage: %d", a[i].op ? "readdir" : "getattr",
			      a[i].path, a[i].rc);
	ck_assert_msg(worst < 2.5 * FLAKY_DELAY, "slowest lookup took %.2f s", worst);
	/* The open file, from the cache, without waiting for anyone. */
	t0 = mono_now();
	ck_assert_int_eq(fs_read(m, fh, buf, 2 * CS + 5, 0), 2 * CS + 5);
	ck_assert(memcmp(buf, data, 2 * CS + 5) == 0);
	ck_assert_msg(mono_now() - t0 < 0.5 * FLAKY_DELAY, "cached read took %.2f s", mono_now() - t0);
	/* Never listed: the store's errno, not "no such file". */
	ck_assert_int_eq(fs_getattr(cold, "/sampler/c/f", &(struct stat){ 0 }), -ETIMEDOUT);
	/* Mutations: each fails within about one deadline, not one each. */
	for (i = 0; i < 4; i++) {
		static const char *const dirs[] = { "/sampler/c/d0", "/sampler/c/d1",
						    "/sampler/c/d2", "/sampler/c/d3" };

		a[i] = (struct outage_arg){ .f = m, .path = dirs[i], .op = 2 };
	}
	worst = run_outage(a, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(a[i].rc, -ETIMEDOUT);
	ck_assert_msg(worst < 2.5 * FLAKY_DELAY, "slowest mkdir took %.2f s", worst);

	/* Partial outage: another mount rewrites the file, this one lists
	 * the new version but cannot read it. */
	__atomic_store_n(&fl.down, 0, __ATOMIC_SEQ_CST);
	other = mount2(0.01);
	put_file(other, "/sampler/c/f", data, CS);
	__atomic_store_n(&fl.gets_only, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&fl.down, 1, __ATOMIC_SEQ_CST);
	sleep_s(0.05);
	for (i = 0; i < 2; i++)
		a[i] = (struct outage_arg){ .f = m, .path = i ? "/sampler/c" : "/sampler/c/f",
					    .op = i };
	run_outage(a, 2);
	ck_assert_msg(a[0].rc == 0, "getattr during a partial outage: %d", a[0].rc);
	ck_assert_msg(a[1].rc == 0, "readdir during a partial outage: %d", a[1].rc);
	__atomic_store_n(&fl.down, 0, __ATOMIC_SEQ_CST);
	/* Caught up once the refresh in flight (failing) has ended. */
	t0 = mono_now();
	while (file_size(m, "/sampler/c/f") != CS && mono_now() - t0 < 3 * FLAKY_DELAY)
		sleep_s(0.05);
	ck_assert_int_eq(file_size(m, "/sampler/c/f"), CS);

	fs_release(m, fh);
	fs_free(other);
	fs_free(cold);
	fs_free(m);
	free(buf);
	free(data);
}
END_TEST

/* ---- read-ahead (src/fs/readahead.c) ---- */

/* A safetensors file: header for @n BF16 tensors of @sizes bytes laid end
 * to end, then random data. *off[i] gets each tensor's file offset. */
static uint8_t *make_st(const size_t *sizes, size_t n, uint64_t *off, size_t *len)
{
	struct buf h = BUF_INIT;
	uint64_t pos = 0, total = 0;
	uint8_t *p;
	size_t i, hl;

	buf_printf(&h, "{");
	for (i = 0; i < n; i++) {
		buf_printf(&h, "%s\"t%zu\":{\"dtype\":\"BF16\",\"shape\":[%zu],"
			   "\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
			   i ? "," : "", i, sizes[i] / 2, pos, pos + sizes[i]);
		pos += sizes[i];
	}
	buf_printf(&h, "}");
	hl = h.len;
	total = 8 + hl + pos;
	p = random_bytes((size_t)total, 4242);
	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(p + 8, h.data, hl);
	for (i = 0, pos = 8 + hl; i < n; i++) {
		off[i] = pos;
		pos += sizes[i];
	}
	buf_release(&h);
	*len = (size_t)total;
	return p;
}

static uint64_t stat_u64(struct ckfs *f, const char *name)
{
	int rc;
	const char *v = xattr(f, "/", XA "stats", &rc);
	char pat[64];
	const char *at;

	ck_assert_int_eq(rc, 0);
	snprintf(pat, sizeof(pat), "\"%s\":", name);
	at = strstr(v, pat);
	ck_assert_msg(at != NULL, "%s not in %s", name, v);
	return strtoull(at + strlen(pat), NULL, 10);
}

/* Wait until the pool has nothing in flight (loads stop changing). */
static void ra_settle(struct ckfs *f)
{
	uint64_t prev = (uint64_t)-1, now;
	int i;

	for (i = 0; i < 200; i++) {
		now = stat_u64(f, "chunk_loads") + stat_u64(f, "chunk_hits");
		if (now == prev)
			return;
		prev = now;
		sleep_s(0.05);
	}
}

static long read_at(struct ckfs *f, uint64_t fh, uint8_t *buf, size_t n, uint64_t off)
{
	return fs_read(f, fh, (char *)buf, n, off);
}

/*
 * --base-cache-dir: the chunks of a base are kept decoded on local disk
 * when it is written, and a delta written or read by a later mount gets its
 * base from there (no frame decode). A damaged copy is dropped and the
 * frame decoded instead (right bytes, one warning); a directory others may
 * write is refused.
 */
START_TEST(test_base_cache)
{
	size_t n = 6 * CS + 777;
	uint8_t *w1 = random_bytes(n, 201), *w2 = malloc(n);
	char rawdir[4200], path[4400], cmd[4400];
	struct fs_config cfg;
	struct ckfs *a, *b;
	FILE *p;
	int fd;

	memcpy(w2, w1, n);
	w2[CS + 3] ^= 1;
	w2[4 * CS + 9] ^= 0x40;
	snprintf(rawdir, sizeof(rawdir), "%s/rawc", workdir);
	fs_free(fs);
	cfg_init(&cfg);
	cfg.base_cache_dir = rawdir;
	a = mount_with(&cfg);
	ck_assert_int_eq(fs_mkdir(a, "/sampler/b", 0755), 0);
	put_file(a, "/sampler/b/m.safetensors", w1, n);
	ck_assert_uint_eq(stat_u64(a, "base_cache_kept"), 7);
	fs_free(a);

	/* A new mount (empty memory cache) writes a delta: every base chunk
	 * comes from the tier. */
	b = mount_with(&cfg);
	ck_assert_int_eq(fs_mkdir(b, "/sampler/d", 0755), 0);
	put_file(b, "/sampler/d/m.safetensors", w2, n);
	ck_assert_uint_eq(stat_u64(b, "base_cache_hits"), 7);
	ck_assert_uint_eq(stat_u64(b, "chunk_loads"), 0);
	fs_free(b);

	/* Damage one kept copy: reading the delta from a new mount still
	 * returns the exact bytes, from the stored frame, and drops it. */
	snprintf(cmd, sizeof(cmd), "find %s/objects/raw -type f | head -1", rawdir);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(path, sizeof(path), p));
	pclose(p);
	path[strcspn(path, "\n")] = 0;
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "\xff\xfe", 2, 100), 2);
	close(fd);
	b = mount_with(&cfg);
	assert_file(b, "/sampler/d/m.safetensors", w2, n);
	assert_file(b, "/sampler/b/m.safetensors", w1, n);
	ck_assert(testutil_log_has("local copy of its decoded bytes is damaged"));
	ck_assert_uint_eq(stat_u64(b, "base_cache_hits"), 6);
	ck_assert_uint_eq(stat_u64(b, "base_cache_kept"), 1);	/* a good copy again */
	fs_free(b);
	b = mount_with(&cfg);
	assert_file(b, "/sampler/d/m.safetensors", w2, n);
	ck_assert_uint_eq(stat_u64(b, "base_cache_hits"), 7);
	ck_assert_uint_eq(stat_u64(b, "chunk_loads"), 2);	/* the two delta chunks */
	fs_free(b);

	/* Only a private directory is trusted. */
	ck_assert_int_eq(chmod(rawdir, 0777), 0);
	b = NULL;
	ck_assert_int_eq(fs_new(st, &cfg, &b), -EPERM);
	ck_assert(testutil_log_has("writable by nobody else"));
	ck_assert_int_eq(chmod(rawdir, 0700), 0);

	/* Without the tier, the same bytes. */
	fs = mount2(1.0);
	assert_file(fs, "/sampler/d/m.safetensors", w2, n);
	free(w1);
	free(w2);
}
END_TEST

START_TEST(test_readahead_tensor)
{
	/* t1 spans 6 chunks: one read inside it queues the rest of it. */
	const size_t sizes[] = { 100, 5 * CS + 123, 3 * CS, 7, 2 * CS + 5 };
	uint64_t off[ARRAY_SIZE(sizes)];
	size_t n, i, order[] = { 2, 4, 0, 3 };
	uint8_t *data = make_st(sizes, ARRAY_SIZE(sizes), off, &n);
	uint8_t *buf = malloc(n);
	size_t first = (size_t)(off[1] / CS), last = (size_t)((off[1] + sizes[1] - 1) / CS);
	size_t nchunks = (n + CS - 1) / CS;
	struct ckfs *cold;
	uint64_t fh = 0, loads;
	int keep, direct;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/r", 0755), 0);
	put_file(fs, "/sampler/r/model.safetensors", data, n);
	cold = mount2(1.0);	/* a freshly started daemon: nothing decoded */
	ck_assert_int_eq(fs_open(cold, "/sampler/r/model.safetensors", O_RDONLY, &fh,
				 &keep, &direct), 0);
	ck_assert_int_eq(read_at(cold, fh, buf, 4096, off[1] + 10), 4096);
	ck_assert_mem_eq(buf, data + off[1] + 10, 4096);
	ra_settle(cold);
	ck_assert_uint_eq(stat_u64(cold, "readahead_layouts"), 1);
	/* A jump into t1 (not sequential): the next chunks of t1 are decoded
	 * ahead, as many as a sequential reader gets (2 on a local store). */
	ck_assert_uint_eq(stat_u64(cold, "readahead_tensor_chunks"), 2);
	loads = stat_u64(cold, "chunk_loads");
	/* the header's chunk, the read's (the same here), 2 ahead */
	ck_assert_uint_eq(loads, (first ? 2u : 1u) + 2);
	/* Reading t1 on: every later chunk of it came from read-ahead. */
	ck_assert_int_eq(read_at(cold, fh, buf, (size_t)sizes[1], off[1]), (long)sizes[1]);
	ck_assert_mem_eq(buf, data + off[1], sizes[1]);
	ra_settle(cold);
	ck_assert_uint_eq(stat_u64(cold, "readahead_tensor_chunks"), last - first);
	/* The other tensors, shuffled: right bytes, each chunk decoded once. */
	for (i = 0; i < ARRAY_SIZE(order); i++) {
		size_t t = order[i];

		ck_assert_int_eq(read_at(cold, fh, buf, sizes[t], off[t]), (long)sizes[t]);
		ck_assert_mem_eq(buf, data + off[t], sizes[t]);
	}
	ra_settle(cold);
	ck_assert_uint_eq(stat_u64(cold, "chunk_loads"), nchunks);
	fs_release(cold, fh);
	fs_free(cold);
	free(data);
	free(buf);
}
END_TEST

/*
 * A reader that jumps from tensor to tensor (an mmap loader) gets the
 * chunks it has not read yet decoded in file order in the background; a
 * sequential reader never does. Every chunk is still decoded once and
 * every byte is right.
 */
START_TEST(test_readahead_fill)
{
	enum { NT = 12 };
	size_t sizes[NT], order[NT] = { 7, 3, 10, 0, 5, 11, 1, 8, 2, 6, 9, 4 };
	uint64_t off[NT], fh = 0;
	size_t n, i, nchunks;
	uint8_t *data, *buf;
	struct ckfs *cold;
	int keep, direct;

	for (i = 0; i < NT; i++)
		sizes[i] = 3 * CS + 100 * (i + 1);
	data = make_st(sizes, NT, off, &n);
	buf = malloc(n);
	nchunks = (n + CS - 1) / CS;
	ck_assert_int_eq(fs_mkdir(fs, "/sampler/f", 0755), 0);
	put_file(fs, "/sampler/f/model.safetensors", data, n);

	/* Shuffled tensors, read in 16 KiB pieces as page faults are. */
	cold = mount2(1.0);
	ck_assert_int_eq(fs_open(cold, "/sampler/f/model.safetensors", O_RDONLY, &fh,
				 &keep, &direct), 0);
	for (i = 0; i < NT; i++) {
		size_t t = order[i], done = 0;

		while (done < sizes[t]) {
			size_t k = sizes[t] - done < 16384 ? sizes[t] - done : 16384;

			ck_assert_int_eq(read_at(cold, fh, buf + done, k, off[t] + done), (long)k);
			done += k;
		}
		ck_assert_mem_eq(buf, data + off[t], sizes[t]);
		if (i == 1)
			ra_settle(cold);	/* two jumps: the fill has started */
	}
	ra_settle(cold);
	ck_assert_uint_ge(stat_u64(cold, "readahead_fill_chunks"), 2);
	ck_assert_uint_eq(stat_u64(cold, "chunk_loads"), nchunks);
	fs_release(cold, fh);
	ck_assert_uint_eq(stat_u64(cold, "readahead_fill_unused"), 0);
	fs_free(cold);

	/* In file order: no fill. */
	cold = mount2(1.0);
	ck_assert_int_eq(fs_open(cold, "/sampler/f/model.safetensors", O_RDONLY, &fh,
				 &keep, &direct), 0);
	for (i = 0; i < n; i += 131072)
		ck_assert_int_eq(read_at(cold, fh, buf + i, n - i < 131072 ? n - i : 131072, i),
				 (long)(n - i < 131072 ? n - i : 131072));
	ck_assert_mem_eq(buf, data, n);
	ra_settle(cold);
	ck_assert_uint_eq(stat_u64(cold, "readahead_fill_chunks"), 0);
	fs_release(cold, fh);
	fs_free(cold);
	free(data);
	free(buf);
}
END_TEST

START_TEST(test_readahead_budget)
{
	const size_t sizes[] = { 20 * CS };
	uint64_t off[1];
	size_t n;
	uint8_t *data = make_st(sizes, 1, off, &n);
	uint8_t *buf = malloc(n);
	struct fs_config cfg;
	struct ckfs *cold;
	uint64_t fh = 0;
	int keep, direct;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/b", 0755), 0);
	put_file(fs, "/sampler/b/m.safetensors", data, n);
	cfg_init(&cfg);
	cfg.readahead_bytes = 3 * CS;
	cold = mount_with(&cfg);
	ck_assert_int_eq(fs_open(cold, "/sampler/b/m.safetensors", O_RDONLY, &fh, &keep,
				 &direct), 0);
	ck_assert_int_eq(read_at(cold, fh, buf, 100, off[0] + CS), 100);
	ra_settle(cold);
	/* One read: never more than the budget ahead, however long the tensor. */
	ck_assert_uint_ge(stat_u64(cold, "readahead_tensor_chunks"), 1);
	ck_assert_uint_le(stat_u64(cold, "readahead_tensor_chunks"), 3);
	/* Reading on slides the window; every byte still right. */
	ck_assert_int_eq(read_at(cold, fh, buf, n, 0), (long)n);
	ck_assert_mem_eq(buf, data, n);
	fs_release(cold, fh);
	fs_free(cold);

	/* 0 turns read-ahead off. */
	cfg.readahead_bytes = 0;
	cold = mount_with(&cfg);
	ck_assert_int_eq(fs_open(cold, "/sampler/b/m.safetensors", O_RDONLY, &fh, &keep,
				 &direct), 0);
	ck_assert_int_eq(read_at(cold, fh, buf, n, 0), (long)n);
	ck_assert_mem_eq(buf, data, n);
	ck_assert_uint_eq(stat_u64(cold, "readahead_chunks"), 0);
	fs_release(cold, fh);
	fs_free(cold);
	free(data);
	free(buf);
}
END_TEST

/* Hostile headers cost nothing unbounded and never change the bytes. */
START_TEST(test_readahead_hostile_header)
{
	static const char *const heads[] = {
		/* claims far more than the file holds: clamped */
		"{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,1125899906842624]}}",
		/* overlapping tensors: no layout */
		("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,400000]},"
		 "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[100,200]}}"),
		/* offsets past the end only */
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740000,9007199254740992]}}",
	};
	size_t n = 6 * CS, i;
	uint8_t *buf = malloc(n);

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/h", 0755), 0);
	for (i = 0; i < ARRAY_SIZE(heads); i++) {
		uint8_t *data = random_bytes(n, 77 + i);
		size_t hl = strlen(heads[i]), k;
		char path[64];
		struct ckfs *cold;
		uint64_t fh = 0;
		int keep, direct;

		for (k = 0; k < 8; k++)
			data[k] = (uint8_t)((uint64_t)hl >> (8 * k));
		memcpy(data + 8, heads[i], hl);
		snprintf(path, sizeof(path), "/sampler/h/x%zu.safetensors", i);
		put_file(fs, path, data, n);
		cold = mount2(1.0);
		ck_assert_int_eq(fs_open(cold, path, O_RDONLY, &fh, &keep, &direct), 0);
		ck_assert_int_eq(read_at(cold, fh, buf, 100, CS / 2), 100);
		ra_settle(cold);
		ck_assert_uint_le(stat_u64(cold, "readahead_chunks"), 5);
		ck_assert_int_eq(read_at(cold, fh, buf, n, 0), (long)n);
		ck_assert_mem_eq(buf, data, n);
		ck_assert_uint_le(stat_u64(cold, "chunk_loads"), 6);
		fs_release(cold, fh);
		fs_free(cold);
		free(data);
	}
	free(buf);
}
END_TEST

START_TEST(test_readahead_parse_layout)
{
	struct buf h = BUF_INIT;
	struct st_tensor *t = NULL;
	uint8_t *head;
	size_t n = 0, i;
	uint64_t big = 1ull << 40;

	/* Thousands of tensors: all of them, sorted. */
	buf_printf(&h, "{");
	for (i = 0; i < 5000; i++)
		buf_printf(&h, "%s\"w%zu\":{\"dtype\":\"BF16\",\"shape\":[2],"
			   "\"data_offsets\":[%zu,%zu]}", i ? "," : "", i,
			   (4999 - i) * 4, (4999 - i) * 4 + 4);
	buf_printf(&h, "}");
	head = malloc(8 + h.len);
	for (i = 0; i < 8; i++)
		head[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
	memcpy(head + 8, h.data, h.len);
	ck_assert_int_eq(ra_parse_layout(head, 8 + h.len, 8 + h.len + 20000, &t, &n), 0);
	ck_assert_uint_eq(n, 5000);
	for (i = 1; i < n; i++)
		ck_assert_uint_eq(t[i].off, t[i - 1].off + 4);
	free(t);
	/* The file ends inside the tensors: clamped, and those past it dropped. */
	ck_assert_int_eq(ra_parse_layout(head, 8 + h.len, 8 + h.len + 10, &t, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(t[2].len, 2);
	free(t);
	/* A header longer than RA_HEADER_MAX is refused from its length. */
	for (i = 0; i < 8; i++)
		head[i] = (uint8_t)(big >> (8 * i));
	ck_assert_int_eq(ra_parse_layout(head, 8, big * 2, &t, &n), -E2BIG);
	ck_assert_ptr_null(t);
	/* A header longer than the file. */
	for (i = 0; i < 8; i++)
		head[i] = (uint8_t)((uint64_t)1000 >> (8 * i));
	ck_assert_int_eq(ra_parse_layout(head, 8, 500, &t, &n), -EINVAL);
	free(head);
	buf_release(&h);
}
END_TEST

/* A corrupt chunk inside a tensor: read-ahead loading it first changes
 * nothing, the reader still gets EIO for it and right bytes elsewhere. */
START_TEST(test_readahead_corrupt_chunk)
{
	const size_t sizes[] = { 3 * CS };
	uint64_t off[1];
	size_t n;
	uint8_t *data = make_st(sizes, 1, off, &n);
	uint8_t *buf = malloc(n);
	struct first_entry fe = { 0 };
	char path[8192];
	struct stat sb;
	struct ckfs *cold;
	uint64_t fh = 0;
	int keep, direct;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/k", 0755), 0);
	put_file(fs, "/sampler/k/m.safetensors", data, n);
	ck_assert_int_eq(catalog_load_entries(st, "default", CKPT_SAMPLER, "k", grab_entry, &fe),
			 0);
	ck_assert_ptr_nonnull(fe.e);
	chunk_file(&fe.e->chunks[2], path, sizeof(path));
	ck_assert_int_eq(stat(path, &sb), 0);
	flip_byte(path, (long)(sb.st_size / 2));
	cold = mount2(1.0);
	ck_assert_int_eq(fs_open(cold, "/sampler/k/m.safetensors", O_RDONLY, &fh, &keep,
				 &direct), 0);
	ck_assert_int_eq(read_at(cold, fh, buf, 100, off[0]), 100);
	ck_assert_mem_eq(buf, data + off[0], 100);
	ra_settle(cold);
	ck_assert_int_eq(read_at(cold, fh, buf, CS, 2 * CS), -EIO);
	ck_assert_int_eq(read_at(cold, fh, buf, CS, CS), (long)CS);
	ck_assert_mem_eq(buf, data + CS, CS);
	ck_assert(testutil_log_has("checksum mismatch"));
	fs_release(cold, fh);
	fs_free(cold);
	entry_free(fe.e);
	free(data);
	free(buf);
}
END_TEST

/* The cache keeps what a reader will ask for again: a chunk whose every
 * byte went to the kernel (which keeps the pages) is evicted before one
 * the reader is still in the middle of. */
START_TEST(test_cache_keeps_partly_read_chunks)
{
	size_t n = 3 * CS;
	uint8_t *data = random_bytes(n, 55);
	uint8_t *buf = malloc(n);
	struct fs_config cfg;
	struct ckfs *cold;
	uint64_t fh = 0;
	int keep, direct;

	ck_assert_int_eq(fs_mkdir(fs, "/sampler/p", 0755), 0);
	put_file(fs, "/sampler/p/f", data, n);
	cfg_init(&cfg);
	cfg.cache_bytes = 2 * CS;
	cfg.readahead_bytes = 0;
	cold = mount_with(&cfg);
	ck_assert_int_eq(fs_open(cold, "/sampler/p/f", O_RDONLY, &fh, &keep, &direct), 0);
	/* Pages, in the order an mmap loader faults them: half of chunk 0,
	 * then chunks 2 and 1 whole, then the rest of chunk 0. */
	ck_assert_int_eq(read_at(cold, fh, buf, CS / 2, 0), (long)(CS / 2));
	ck_assert_int_eq(read_at(cold, fh, buf + 2 * CS, CS, 2 * CS), (long)CS);
	ck_assert_int_eq(read_at(cold, fh, buf + CS, CS, CS), (long)CS);
	ck_assert_int_eq(read_at(cold, fh, buf + CS / 2, CS / 2, CS / 2), (long)(CS / 2));
	ck_assert_mem_eq(buf, data, n);
	ck_assert_uint_eq(stat_u64(cold, "chunk_loads"), 3);
	fs_release(cold, fh);
	fs_free(cold);
	free(data);
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fs");
	SRunner *sr;
	TCase *tc;
	int failed;

	tc = tcase_create("tree");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_tree_and_mkdir);
	tcase_add_test(tc, test_root_listing);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_other_job_read_only);
	tcase_add_test(tc, test_readdir_exact);
	tcase_add_test(tc, test_long_names);
	tcase_add_test(tc, test_deep_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("data");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_write_read_sizes);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_compressible_data);
	tcase_add_test(tc, test_write_out_of_order);
	tcase_add_test(tc, test_modify_committed);
	tcase_add_test(tc, test_unreleased_handles_freed_at_unmount);
	tcase_add_test(tc, test_truncate);
	tcase_add_test(tc, test_read_while_writing);
	tcase_add_test(tc, test_race_truncate_open_read);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rename_file);
	tcase_add_test(tc, test_rename_open_file);
	tcase_add_test(tc, test_rename_folder);
	tcase_add_test(tc, test_rename_exdev);
	tcase_add_test(tc, test_unlink_rmdir);
	suite_add_tcase(s, tc);

	tc = tcase_create("mounts");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_second_mount_sees_commits);
	tcase_add_test(tc, test_second_mount_sees_rewrite);
	tcase_add_test(tc, test_store_outage);
	suite_add_tcase(s, tc);

	tc = tcase_create("policy");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_delta);
	tcase_add_test(tc, test_delta_identical_file);
	tcase_add_test(tc, test_setxattr_kind);
	tcase_add_test(tc, test_ttl_xattr);
	tcase_add_test(tc, test_default_ttl);
	tcase_add_test(tc, test_ttl_expiry);
	tcase_add_test(tc, test_checkpoints_jsonl);
	suite_add_tcase(s, tc);

	tc = tcase_create("corruption");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_corrupt_chunk_eio);
	tcase_add_test(tc, test_corrupt_chunk_no_short_read);
	tcase_add_test(tc, test_missing_chunk_eio);
	tcase_add_test(tc, test_base_cache);
	suite_add_tcase(s, tc);

	tc = tcase_create("readahead");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_readahead_tensor);
	tcase_add_test(tc, test_readahead_fill);
	tcase_add_test(tc, test_readahead_budget);
	tcase_add_test(tc, test_readahead_hostile_header);
	tcase_add_test(tc, test_readahead_parse_layout);
	tcase_add_test(tc, test_readahead_corrupt_chunk);
	tcase_add_test(tc, test_cache_keeps_partly_read_chunks);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
