/*
 * check_api.c: the public API (include/ckptfs.h), written once and run on
 * both backends: a local directory store and, when CKPTFS_TEST_S3_ENDPOINT,
 * _ACCESS_KEY and _SECRET_KEY are set, a real S3 server (one bucket per run,
 * one prefix per test). Calls go through the API only; the store API is used
 * beside it only to damage chunks on purpose.
 *
 * Covers: the policy (base, delta, LoRA, state, forced kind), byte-exact
 * reads of any range, listing and checkpoints.jsonl, promotion, TTL,
 * removal, and the errors: missing store, bad names and options, full disk,
 * corrupt chunk (-EIO), concurrent writers of one checkpoint.
 */
#include <check.h>

#include <ckptfs.h>

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "testutil.h"
#include "testutil_s3.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CS (64u * 1024)

enum { B_LOCAL, B_S3, B_N };

static const char *s3_endpoint, *s3_access, *s3_secret, *s3_region;
static char s3_bucket[64];
static char *workdir;
static char store_url[512];
static int backend;
static int s3_seq;

static const char *const test_opts[] = { "chunk-kib=64", "cache-mib=8", "threads=3", NULL };

static int s3_configured(void)
{
	return s3_endpoint && s3_access && s3_secret;
}

static void setup_backend(int b)
{
	backend = b;
	workdir = testutil_workdir();
	if (b == B_LOCAL) {
		snprintf(store_url, sizeof(store_url), "%s/store", workdir);
	} else {
		setenv("AWS_ACCESS_KEY_ID", s3_access, 1);
		setenv("AWS_SECRET_ACCESS_KEY", s3_secret, 1);
		setenv("AWS_ENDPOINT_URL", s3_endpoint, 1);
		setenv("AWS_REGION", s3_region, 1);
		snprintf(store_url, sizeof(store_url), "s3://%s/t%d-%ld", s3_bucket, s3_seq++,
			 (long)getpid());
	}
}

static void setup_local(void) { setup_backend(B_LOCAL); }
static void setup_s3(void) { setup_backend(B_S3); }

static int rm_cb(const char *key, const struct store_stat *st, void *arg)
{
	(void)st;
	store_remove(arg, key);
	return 0;
}

static void teardown(void)
{
	if (backend == B_S3) {
		struct store *st;

		if (store_open(store_url, NULL, &st) == 0) {
			store_list(st, "", rm_cb, st);
			store_free(st);
		}
	}
	testutil_rmtree(workdir);
	free(workdir);
	workdir = NULL;
}

static ckptfs *open_h(const char *job)
{
	ckptfs *h = NULL;

	ck_assert_int_eq(ckptfs_open(store_url, job, test_opts, &h), 0);
	ck_assert_ptr_nonnull(h);
	return h;
}

/* Write @n bytes of @data to @path (checkpoint created if missing). */
static void put_file(ckptfs *h, const char *path, const uint8_t *data, size_t n)
{
	ckptfs_file *f;
	size_t off = 0;

	ck_assert_int_eq(ckptfs_create(h, path, 0644, CKPTFS_MKCKPT, &f), 0);
	while (off < n) {	/* uneven pieces, as a trainer's writes are */
		size_t k = n - off < 77777 ? n - off : 77777;

		ck_assert_int_eq(ckptfs_write(f, data + off, k), (ssize_t)k);
		off += k;
	}
	ck_assert_int_eq(ckptfs_file_close(f), 0);
}

/* Read back @path whole and at a few ranges, compare with @data. */
static void check_file(ckptfs *h, const char *path, const uint8_t *data, size_t n)
{
	static const size_t ranges[][2] = { { 0, 1 }, { 1, 100 }, { CS - 3, 7 }, { CS, CS },
					     { 3 * CS + 11, 2 * CS + 5 } };
	ckptfs_file *f;
	uint8_t *got = malloc(n + 16);
	size_t i;

	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(ckptfs_open_file(h, path, &f), 0);
	ck_assert_uint_eq(ckptfs_file_size(f), n);
	ck_assert_int_eq(ckptfs_pread(f, got, n + 16, 0), (ssize_t)n);
	ck_assert(memcmp(got, data, n) == 0);
	for (i = 0; i < ARRAY_SIZE(ranges); i++) {
		size_t off = ranges[i][0], len = ranges[i][1];
		size_t want = off >= n ? 0 : (off + len > n ? n - off : len);

		ck_assert_int_eq(ckptfs_pread(f, got, len, off), (ssize_t)want);
		ck_assert(memcmp(got, data + off, want) == 0);
	}
	ck_assert_int_eq(ckptfs_file_close(f), 0);
	free(got);
}

/* A bf16-ish weights blob: random low bytes, few distinct high bytes. */
static uint8_t *weights(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n);
	size_t i;

	ck_assert_ptr_nonnull(p);
	testutil_fill_random(p, n, seed);
	for (i = 1; i < n; i += 2)
		p[i] = (uint8_t)(0x3c + (p[i] & 3));
	return p;
}

static int count_cb(void *arg, const struct ckptfs_info *info)
{
	(void)info;
	++*(int *)arg;
	return 0;
}

static int find_job(void *arg, const char *name, const struct ckptfs_stat *st)
{
	(void)st;
	if (!strcmp(name, arg))
		return 7;	/* stops the listing and comes back */
	return 0;
}

START_TEST(test_policy_and_roundtrip)
{
	const size_t n = 5 * CS + 123;
	uint8_t *base = weights(n, 1), *next = malloc(n);
	struct ckptfs_info info;
	ckptfs *h = open_h("job1"), *r;
	char *jsonl;
	size_t len;
	int count = 0;

	ck_assert_int_eq(ckptfs_api_version(), CKPTFS_API_VERSION);
	ck_assert_str_eq(ckptfs_job(h), "job1");
	/* First sampler checkpoint: a base; nested folders are made. */
	put_file(h, "sampler/s1/model.safetensors", base, n);
	put_file(h, "/sampler/s1/tok/sub/vocab.txt", (const uint8_t *)"hello\n", 6);
	ck_assert_int_eq(ckptfs_info(h, "sampler/s1", &info), 0);
	ck_assert_str_eq(info.kind, "base");
	ck_assert_str_eq(info.dir, "sampler");
	ck_assert_str_eq(info.name, "s1");
	ck_assert_uint_eq(info.logical_bytes, n + 6);
	ck_assert(info.promotable);
	ckptfs_info_release(&info);
	/* Next: a delta against s1, much smaller than its bytes. */
	memcpy(next, base, n);
	for (size_t i = 0; i < n; i += 97)
		next[i] ^= 1;
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/s2", NULL), 0);
	put_file(h, "sampler/s2/model.safetensors", next, n);
	ck_assert_int_eq(ckptfs_info(h, "sampler/s2", &info), 0);
	ck_assert_str_eq(info.kind, "delta");
	ck_assert_str_eq(info.base, "s1");
	ck_assert_uint_lt(info.stored_bytes, n / 2);
	ck_assert(!strncmp(info.snapshot, "s2-", 3));
	ckptfs_info_release(&info);
	/* Forced kinds, LoRA and state. */
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/l1", "lora"), 0);
	put_file(h, "sampler/l1/adapter.safetensors", next, 3 * CS);
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/b2", "base"), 0);
	put_file(h, "sampler/b2/model.safetensors", next, n);
	put_file(h, "state/st1/optimizer.pt", base, n);
	ck_assert_int_eq(ckptfs_info(h, "sampler/l1", &info), 0);
	ck_assert_str_eq(info.kind, "lora");
	ckptfs_info_release(&info);
	ck_assert_int_eq(ckptfs_info(h, "sampler/b2", &info), 0);
	ck_assert_str_eq(info.kind, "base");
	ckptfs_info_release(&info);
	ck_assert_int_eq(ckptfs_info(h, "state/st1", &info), 0);
	ck_assert_str_eq(info.kind, "state");
	ck_assert_str_eq(info.dir, "state");
	ck_assert(!info.promotable);
	ckptfs_info_release(&info);
	/* A new delta now follows the newest base, b2. */
	put_file(h, "sampler/s3/model.safetensors", base, n);
	ck_assert_int_eq(ckptfs_info(h, "sampler/s3", &info), 0);
	ck_assert_str_eq(info.kind, "delta");
	ck_assert_str_eq(info.base, "b2");
	ckptfs_info_release(&info);

	/* A fresh handle (a cold reader) reads exact bytes. */
	r = open_h("job1");
	check_file(r, "sampler/s1/model.safetensors", base, n);
	check_file(r, "sampler/s2/model.safetensors", next, n);
	check_file(r, "sampler/s3/model.safetensors", base, n);
	check_file(r, "state/st1/optimizer.pt", base, n);
	check_file(r, "sampler/s1/tok/sub/vocab.txt", (const uint8_t *)"hello\n", 6);
	ck_assert_int_eq(ckptfs_list(r, count_cb, &count), 0);
	ck_assert_int_eq(count, 6);
	ck_assert_int_eq(ckptfs_checkpoints_jsonl(r, &jsonl, &len), 0);
	ck_assert_uint_eq(strlen(jsonl), len);
	ck_assert_ptr_nonnull(strstr(jsonl, "\"name\":\"s2\""));
	ck_assert_ptr_nonnull(strstr(jsonl, "\"kind\":\"delta\",\"base\":\"s1\""));
	count = 0;
	for (const char *p = jsonl; (p = strchr(p, '\n')); p++)
		count++;
	ck_assert_int_eq(count, 6);
	free(jsonl);
	ck_assert_int_eq(ckptfs_list_jobs(r, find_job, (void *)"job1"), 7);
	ckptfs_close(r);
	/* Another job reads this one's checkpoints through jobs/. */
	r = open_h("other");
	check_file(r, "jobs/job1/sampler/s2/model.safetensors", next, n);
	ck_assert_int_eq(ckptfs_info(r, "jobs/job1/sampler/s2", &info), 0);
	ck_assert_str_eq(info.kind, "delta");
	ckptfs_info_release(&info);
	ckptfs_close(r);
	ckptfs_close(h);
	free(base);
	free(next);
}
END_TEST

/* ckptfs_write_fd: a file's bytes read straight into the encoder, exact
 * back (base and delta), also through ckptfs_pread_to_fd; a file shorter
 * than promised is -EIO and the file is not committed. */
START_TEST(test_write_fd)
{
	size_t n = 5 * CS + 321;
	uint8_t *w1 = weights(n, 61), *w2 = malloc(n);
	char path[4200];
	ckptfs_file *f;
	ckptfs *h = open_h(NULL);
	int fd;

	memcpy(w2, w1, n);
	w2[7] ^= 1;
	w2[3 * CS] ^= 0x10;
	snprintf(path, sizeof(path), "%s/src.bin", workdir);
	for (int step = 0; step < 2; step++) {
		char name[64];

		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(write(fd, step ? w2 : w1, n), (ssize_t)n);
		ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
		snprintf(name, sizeof(name), "sampler/fd%d/m.safetensors", step);
		ck_assert_int_eq(ckptfs_create(h, name, 0644, CKPTFS_MKCKPT, &f), 0);
		ck_assert_int_eq(ckptfs_write_fd(f, fd, 100), 100);	/* two calls */
		ck_assert_int_eq(ckptfs_write_fd(f, fd, n - 100), (ssize_t)(n - 100));
		ck_assert_int_eq(ckptfs_file_close(f), 0);
		close(fd);
		check_file(h, name, step ? w2 : w1, n);
		/* And back out through ckptfs_pread_to_fd: whole, a range at the
		 * same offset, a range running past the end (short). */
		{
			const uint8_t *want = step ? w2 : w1;
			uint8_t *got = malloc(n);
			char out[4300];
			int ofd;

			snprintf(out, sizeof(out), "%s/out.bin", workdir);
			ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
			ck_assert_int_ge(ofd, 0);
			ck_assert_int_eq(ckptfs_open_file(h, name, &f), 0);
			ck_assert_int_eq(ckptfs_pread_to_fd(f, ofd, n, 0), (ssize_t)n);
			ck_assert_int_eq(pread(ofd, got, n, 0), (ssize_t)n);
			ck_assert(memcmp(got, want, n) == 0);
			ck_assert_int_eq(ftruncate(ofd, 0), 0);
			ck_assert_int_eq(ckptfs_pread_to_fd(f, ofd, CS + 5, 2 * CS - 3),
					 (ssize_t)(CS + 5));
			ck_assert_int_eq(pread(ofd, got, CS + 5, 2 * CS - 3), (ssize_t)(CS + 5));
			ck_assert(memcmp(got, want + 2 * CS - 3, CS + 5) == 0);
			ck_assert_int_eq(ckptfs_pread_to_fd(f, ofd, 1000, n - 10), 10);
			ck_assert_int_eq(ckptfs_pread_to_fd(f, -1, 1, 0), -EBADF);
			ck_assert_int_eq(ckptfs_file_close(f), 0);
			close(ofd);
			free(got);
		}
	}
	/* Promised more than the file holds. */
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(ckptfs_create(h, "sampler/fd2/short.bin", 0644, CKPTFS_MKCKPT, &f), 0);
	ck_assert_int_eq(ckptfs_write_fd(f, fd, n + 10), -EIO);
	ck_assert_int_lt(ckptfs_file_close(f), 0);
	close(fd);
	ck_assert_int_eq(ckptfs_open_file(h, "sampler/fd2/short.bin", &f), -ENOENT);
	ckptfs_close(h);
	free(w1);
	free(w2);
}
END_TEST

START_TEST(test_promote_ttl_remove)
{
	const size_t n = 3 * CS + 5;
	uint8_t *base = weights(n, 2), *next = weights(n, 3);
	struct ckptfs_info info;
	struct ckptfs_stat st;
	ckptfs *h = open_h(NULL);

	ck_assert_str_eq(ckptfs_job(h), "default");
	put_file(h, "sampler/a/w.bin", base, n);
	put_file(h, "sampler/b/w.bin", next, n);
	put_file(h, "state/s/w.bin", next, n);
	ck_assert_int_eq(ckptfs_promote(h, "sampler/b", "my-model"), 0);
	ck_assert_int_eq(ckptfs_promote(h, "sampler/b", "my-model"), -EEXIST);
	ck_assert_int_eq(ckptfs_promote(h, "sampler/b", "Bad_Id"), -EINVAL);
	ck_assert_int_eq(ckptfs_promote(h, "state/s", "from-state"), -EINVAL);
	ck_assert_int_eq(ckptfs_set_ttl(h, "sampler/b", 3600), 0);
	ck_assert_int_eq(ckptfs_info(h, "sampler/b", &info), 0);
	ck_assert_int_eq(info.ttl, 3600);
	ck_assert(info.expires_at > info.created + 3599);
	ckptfs_info_release(&info);
	ck_assert_int_eq(ckptfs_set_ttl(h, "sampler/b", -1), -EINVAL);
	/* The delta's removal leaves the model whole. */
	ck_assert_int_eq(ckptfs_remove(h, "sampler/b"), 0);
	ck_assert_int_eq(ckptfs_stat(h, "sampler/b", &st), -ENOENT);
	check_file(h, "models/my-model/w.bin", next, n);
	ck_assert_int_eq(ckptfs_stat(h, "models/my-model/w.bin", &st), 0);
	ck_assert_int_eq(st.type, CKPTFS_FILE);
	ck_assert_uint_eq(st.size, n);
	ck_assert_int_eq(ckptfs_remove(h, "models/my-model"), 0);
	ck_assert_int_eq(ckptfs_stat(h, "models/my-model", &st), -ENOENT);
	ckptfs_close(h);
	free(base);
	free(next);
}
END_TEST

START_TEST(test_errors)
{
	static const char *const bad_val[] = { "chunk-kib=x", NULL };
	static const char *const unknown[] = { "no-such-option=1", NULL };
	static const char *const nocreate[] = { "create=0", NULL };
	static const char *const ro[] = { "read-only", NULL };
	char missing[600];
	ckptfs *h = NULL;
	ckptfs_file *f = NULL;
	struct ckptfs_info info;
	struct ckptfs_stat st;

	/* Missing store: refused with create=0 and read-only, made otherwise. */
	snprintf(missing, sizeof(missing), "%s-missing", store_url);
	ck_assert_int_eq(ckptfs_store_exists(missing), 0);
	ck_assert_int_eq(ckptfs_open(missing, NULL, nocreate, &h), -ENOENT);
	ck_assert_ptr_null(h);
	ck_assert_int_eq(ckptfs_open(missing, NULL, ro, &h), -ENOENT);
	ck_assert_int_eq(ckptfs_store_exists(missing), 0);
	ck_assert_int_eq(ckptfs_open(store_url, NULL, bad_val, &h), -EINVAL);
	ck_assert_int_eq(ckptfs_open(store_url, NULL, unknown, &h), -EINVAL);
	ck_assert_int_eq(ckptfs_open(store_url, "a/b", NULL, &h), -EINVAL);
	ck_assert_int_eq(ckptfs_open(store_url, "..", NULL, &h), -EINVAL);
	ck_assert_int_eq(ckptfs_open("", NULL, NULL, &h), -EINVAL);
	h = open_h(NULL);
	ck_assert_int_eq(ckptfs_store_exists(store_url), 1);
	/* Bad names. */
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/..", NULL), -EINVAL);
	ck_assert_int_eq(ckptfs_mkckpt(h, "nowhere/x", NULL), -ENOENT);
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/k", "bogus"), -EINVAL);
	ck_assert_int_eq(ckptfs_stat(h, "sampler/k", &st), -ENOENT);
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/k", NULL), 0);
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/k", NULL), -EEXIST);
	ck_assert_int_eq(ckptfs_mkckpt(h, "state/s", "base"), -EINVAL);
	ck_assert_int_eq(ckptfs_create(h, "sampler/nope/f", 0644, 0, &f), -ENOENT);
	ck_assert_ptr_null(f);
	ck_assert_int_eq(ckptfs_create(h, "sampler", 0644, CKPTFS_MKCKPT, &f), -EPERM);
	ck_assert_int_eq(ckptfs_create(h, "jobs/other/sampler/x/f", 0644, CKPTFS_MKCKPT, &f) < 0, 1);
	ck_assert_int_eq(ckptfs_open_file(h, "sampler/k/missing", &f), -ENOENT);
	ck_assert_int_eq(ckptfs_open_file(h, "sampler/k", &f), -EISDIR);
	ck_assert_int_eq(ckptfs_info(h, "sampler/none", &info), -ENOENT);
	ck_assert_int_eq(ckptfs_remove(h, "sampler/none"), -ENOENT);
	ck_assert_int_eq(ckptfs_remove(h, "sampler"), -EPERM);
	/* A kind once files are there is refused. */
	put_file(h, "sampler/k/a", (const uint8_t *)"x", 1);
	ckptfs_close(h);
	/* Read-only handles write nothing. */
	ck_assert_int_eq(ckptfs_open(store_url, NULL, ro, &h), 0);
	ck_assert_int_eq(ckptfs_mkckpt(h, "sampler/z", NULL), -EROFS);
	ck_assert_int_eq(ckptfs_create(h, "sampler/k/b", 0644, 0, &f), -EROFS);
	ckptfs_close(h);
	ckptfs_close(NULL);
}
END_TEST

static int chunk_damage(const char *key, const struct store_stat *ss, void *arg)
{
	struct store *st = arg;
	struct buf b = BUF_INIT;

	(void)ss;
	if (strncmp(key, "chunks/", 7))
		return 0;
	ck_assert_int_eq(store_get(st, key, &b), 0);
	ck_assert_uint_gt(b.len, 40);
	b.data[b.len - 20] ^= 0x40;	/* in the payload, past the frame header */
	ck_assert_int_eq(store_put(st, key, b.data, b.len), 0);
	buf_release(&b);
	return 0;
}

START_TEST(test_corrupt_chunk_eio)
{
	const size_t n = 2 * CS;
	uint8_t *data = weights(n, 9), *got = malloc(n);
	struct store *st;
	ckptfs_file *f;
	ckptfs *h = open_h(NULL);

	put_file(h, "sampler/c/w.bin", data, n);
	ckptfs_close(h);
	ck_assert_int_eq(store_open(store_url, NULL, &st), 0);
	ck_assert_int_eq(store_list(st, "chunks/", chunk_damage, st), 0);
	store_free(st);
	h = open_h(NULL);
	ck_assert_int_eq(ckptfs_open_file(h, "sampler/c/w.bin", &f), 0);
	ck_assert_int_eq(ckptfs_pread(f, got, n, 0), -EIO);
	ck_assert_int_eq(ckptfs_pread(f, got, 10, CS + 5), -EIO);
	ck_assert_int_eq(ckptfs_file_close(f), 0);
	ckptfs_close(h);
	free(data);
	free(got);
}
END_TEST

/* ---- concurrent writers of one checkpoint ---- */

#define NW 4
struct wjob {
	ckptfs *h;
	int idx;
	uint8_t *data;
	size_t n;
	int rc;
};

static void *writer_main(void *arg)
{
	struct wjob *w = arg;
	char path[64];
	ckptfs_file *f;
	size_t off = 0;
	int rc;

	snprintf(path, sizeof(path), "sampler/shared/rank-%d.bin", w->idx);
	rc = ckptfs_create(w->h, path, 0644, CKPTFS_MKCKPT, &f);
	while (rc == 0 && off < w->n) {
		size_t k = w->n - off < 10000 ? w->n - off : 10000;
		ssize_t r = ckptfs_write(f, w->data + off, k);

		if (r != (ssize_t)k)
			rc = r < 0 ? (int)r : -EIO;
		off += k;
	}
	if (f)
		rc = rc == 0 ? ckptfs_file_close(f) : (ckptfs_abort(f), rc);
	w->rc = rc;
	return NULL;
}

START_TEST(test_concurrent_writers)
{
	const size_t n = 3 * CS + 17;
	ckptfs *h1 = open_h(NULL), *h2 = open_h(NULL), *r;
	struct wjob w[NW];
	pthread_t t[NW];
	struct ckptfs_info i1, i2;
	int i;

	put_file(h1, "sampler/first/w.bin", (const uint8_t *)"base", 4);
	/* Two "nodes" (handles), two threads each, one new checkpoint. */
	for (i = 0; i < NW; i++) {
		w[i] = (struct wjob){ i % 2 ? h2 : h1, i, weights(n, 100 + (uint64_t)i), n, -1 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (i = 0; i < NW; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(w[i].rc, 0);
	}
	/* Both nodes agree on what the checkpoint is. */
	ck_assert_int_eq(ckptfs_info(h1, "sampler/shared", &i1), 0);
	ck_assert_int_eq(ckptfs_info(h2, "sampler/shared", &i2), 0);
	ck_assert_str_eq(i1.kind, "delta");
	ck_assert_str_eq(i1.kind, i2.kind);
	ck_assert_str_eq(i1.snapshot, i2.snapshot);
	ckptfs_info_release(&i1);
	ckptfs_info_release(&i2);
	r = open_h(NULL);
	for (i = 0; i < NW; i++) {
		char path[64];

		snprintf(path, sizeof(path), "sampler/shared/rank-%d.bin", i);
		check_file(r, path, w[i].data, n);
		free(w[i].data);
	}
	ckptfs_close(r);
	ckptfs_close(h1);
	ckptfs_close(h2);
}
END_TEST

/* ---- full disk (local: a 1 MiB tmpfs as the store) ---- */

START_TEST(test_full_disk)
{
	const size_t n = 3u << 20;
	uint8_t *data = malloc(n);
	char dir[600];
	ckptfs_file *f;
	ckptfs *h;
	ssize_t w;
	int rc;

	snprintf(dir, sizeof(dir), "%s/small", workdir);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0) {
		printf("check_api: SKIP full disk: cannot mount a tmpfs (%s)\n", strerror(errno));
		free(data);
		return;
	}
	testutil_fill_random(data, n, 5);	/* incompressible */
	rc = ckptfs_open(dir, NULL, test_opts, &h);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(ckptfs_create(h, "sampler/big/w.bin", 0644, CKPTFS_MKCKPT, &f), 0);
	w = ckptfs_write(f, data, n);
	rc = ckptfs_file_close(f);
	/* The failure surfaces on the write or at the latest at close. */
	ck_assert_msg(w == -ENOSPC || rc == -ENOSPC, "write %zd close %d", w, rc);
	ck_assert_int_eq(ckptfs_open_file(h, "sampler/big/w.bin", &f), -ENOENT);
	ckptfs_close(h);
	ck_assert_int_eq(umount(dir), 0);
	free(data);
}
END_TEST

/* Create or delete the run's bucket; the store API has no bucket calls. */
static long s3_bucket_op(const char *method)
{
	return testutil_s3_bucket_op(s3_endpoint, s3_region, s3_access, s3_secret, s3_bucket,
				     method);
}

static TCase *backend_tcase(int b)
{
	TCase *tc = tcase_create(b == B_LOCAL ? "local" : "s3");

	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, b == B_LOCAL ? setup_local : setup_s3, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_policy_and_roundtrip);
	tcase_add_test(tc, test_promote_ttl_remove);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_corrupt_chunk_eio);
	tcase_add_test(tc, test_concurrent_writers);
	tcase_add_test(tc, test_write_fd);
	if (b == B_LOCAL)
		tcase_add_test(tc, test_full_disk);
	return tc;
}

int main(void)
{
	Suite *s = suite_create("api");
	SRunner *sr;
	int failed, skipped = 0;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	s3_endpoint = getenv("CKPTFS_TEST_S3_ENDPOINT");
	s3_access = getenv("CKPTFS_TEST_S3_ACCESS_KEY");
	s3_secret = getenv("CKPTFS_TEST_S3_SECRET_KEY");
	s3_region = getenv("CKPTFS_TEST_S3_REGION");
	if (!s3_region || !s3_region[0])
		s3_region = "us-east-1";
	suite_add_tcase(s, backend_tcase(B_LOCAL));
	if (s3_configured()) {
		long code;

		snprintf(s3_bucket, sizeof(s3_bucket), "ckptfs-api-%ld-%ld", (long)getpid(),
			 (long)time(NULL));
		code = s3_bucket_op("PUT");
		if (code != 200) {
			fprintf(stderr, "check_api: cannot create bucket %s: HTTP %ld\n", s3_bucket,
				code);
			return 1;
		}
		suite_add_tcase(s, backend_tcase(B_S3));
	} else {
		skipped = 5;
		printf("check_api: SKIP %d s3 tests: set CKPTFS_TEST_S3_ENDPOINT, "
		       "CKPTFS_TEST_S3_ACCESS_KEY, CKPTFS_TEST_S3_SECRET_KEY\n", skipped);
	}
	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (s3_bucket[0] && s3_bucket_op("DELETE") / 100 != 2)
		fprintf(stderr, "check_api: bucket %s left behind\n", s3_bucket);
	curl_global_cleanup();
	if (skipped && getenv("CKPTFS_TEST_REQUIRE_S3") &&
	    !strcmp(getenv("CKPTFS_TEST_REQUIRE_S3"), "1"))
		return 1;
	return failed ? 1 : 0;
}
