/*
 * stress_fs.c: many threads on a few names for a fixed time, calling the
 * fs_*() operations directly (no FUSE), on two mounts of one local store,
 * with the periodic gc running. Built for the `stress` suite and meant to
 * run under ASan and ThreadSanitizer as well (scripts/test.sh does).
 *
 * Every byte read is checked against what may be visible. Files are made
 * of BLOCK-byte blocks, each self-describing: block i of version v starts
 * with (MAGIC, v, i) and continues with bytes derived from (v, i). Writers
 * write whole versions, block by block from offset 0; truncates cut at
 * multiples of TRUNC_ALIGN and fill with zeros. So at every block position
 * of any file, a read may see only: a prefix of block (v, i) for a version
 * v issued so far, followed by zeros (a cut), or zeros. Anything else is a
 * wrong byte. An errno outside what each operation may return here
 * (ENOENT for a name another thread removed, EBUSY for a promotion while
 * files are open, ...) is a failure too; EIO always is.
 *
 * Environment: STRESS_SECONDS (default 20), STRESS_THREADS (default 8).
 * Prints the count of each operation and exits 1 on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog/gc.h"
#include "fs/fs.h"
#include "store/store.h"
#include "util/log.h"

#define CHUNK (64u * 1024)
#define BLOCK 4096u
#define MAX_BLOCKS 40		/* up to 2.5 chunks */
#define TRUNC_ALIGN 512u
#define MAGIC 0x4b434c42u	/* "BLCK" */
#define N_CKPTS 3

static const char *const files[] = { "f0", "f1", "f2", "d/g0", "d/g1" };
#define N_FILES (sizeof(files) / sizeof(files[0]))

enum op {
	OP_WRITE, OP_READ, OP_HOLD_READ, OP_TRUNCATE, OP_FTRUNCATE, OP_RENAME, OP_UNLINK,
	OP_MKDIR, OP_RMDIR, OP_MKCKPT, OP_RMCKPT, OP_SETXATTR, OP_PROMOTE, OP_READDIR,
	OP_GETATTR, OP_GC, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"write", "read", "hold_read", "truncate", "ftruncate", "rename", "unlink",
	"mkdir", "rmdir", "mkckpt", "rmckpt", "setxattr", "promote", "readdir",
	"getattr", "gc",
};

static atomic_uint_fast32_t versions;	/* last version id issued */
static atomic_long op_count[OP_COUNT];
static atomic_long op_ok[OP_COUNT];
static atomic_long failures;
static atomic_uint models;
static double deadline;
static struct store *store;
static struct ckfs *mount_a, *mount_b;

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fail(const char *what, const char *path, long rc)
{
	atomic_fetch_add(&failures, 1);
	fprintf(stderr, "FAIL %s %s: %ld (%s)\n", what, path, rc,
		rc < 0 ? strerror((int)-rc) : "wrong bytes");
}

/* The bytes of block @index of version @v. */
static void make_block(uint32_t v, uint32_t index, uint8_t *out)
{
	uint64_t s = ((uint64_t)v << 32 | index) * 0x9e3779b97f4a7c15ull + 1;
	uint32_t hdr[3] = { MAGIC, v, index };
	size_t i;

	for (i = 0; i < BLOCK; i += 8) {
		uint64_t x = rnd(&s);

		memcpy(out + i, &x, 8);
	}
	memcpy(out, hdr, sizeof(hdr));
}

static int all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/*
 * Is @p (@n bytes at block position @index) what a read may see there:
 * a prefix of block (v, index) with v issued, then zeros; or zeros?
 */
static int block_ok(const uint8_t *p, size_t n, uint32_t index)
{
	uint8_t want[BLOCK];
	uint32_t hdr[3];
	size_t cut;

	if (all_zero(p, n))
		return 1;
	if (n < sizeof(hdr)) {
		/* A read that ends inside the header (cuts are TRUNC_ALIGN
		 * apart, so no cut is there): the magic and index bytes. */
		uint32_t known[3] = { MAGIC, 0, index };
		size_t i;

		for (i = 0; i < n; i++)
			if ((i < 4 || i >= 8) && p[i] != ((const uint8_t *)known)[i])
				return 0;
		return 1;
	}
	memcpy(hdr, p, sizeof(hdr));
	if (hdr[0] != MAGIC || hdr[2] != index || hdr[1] == 0 ||
	    hdr[1] > atomic_load(&versions))
		return 0;
	make_block(hdr[1], index, want);
	for (cut = 0; cut < n && p[cut] == want[cut]; cut++)
		;
	return all_zero(p + cut, n - cut);
}

static void describe(const uint8_t *p, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		uint64_t pos = off + done;
		size_t in = (size_t)(pos % BLOCK), len = BLOCK - in;
		uint32_t hdr[3] = { 0, 0, 0 };
		size_t nz = 0, i;

		if (len > n - done)
			len = n - done;
		if (in == 0 && len >= sizeof(hdr))
			memcpy(hdr, p + done, sizeof(hdr));
		for (i = 0; i < len; i++)
			nz += p[done + i] != 0;
		fprintf(stderr, "  block %" PRIu64 " +%zu len %zu: magic %08x v %u i %u, %zu nonzero%s\n",
			pos / BLOCK, in, len, hdr[0], hdr[1], hdr[2], nz,
			in == 0 && !block_ok(p + done, len, (uint32_t)(pos / BLOCK)) ? "  <-- BAD" : "");
		done += len;
	}
}

static int content_ok(const uint8_t *p, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		uint64_t pos = off + done;
		uint32_t index = (uint32_t)(pos / BLOCK);
		size_t in = (size_t)(pos % BLOCK), len = BLOCK - in;
		uint8_t full[BLOCK];

		if (len > n - done)
			len = n - done;
		if (in == 0) {
			if (!block_ok(p + done, len, index))
				return 0;
		} else {
			/* A read that starts inside a block: check it as the
			 * tail of that block, whatever its version. */
			uint32_t v;

			if (all_zero(p + done, len)) {
				done += len;
				continue;
			}
			for (v = 1; v <= atomic_load(&versions); v++) {
				make_block(v, index, full);
				if (!memcmp(full + in, p + done, len))
					break;
			}
			if (v > atomic_load(&versions)) {
				/* or a prefix of one then zeros: rare, accept
				 * only when the zeros start at a cut */
				size_t k;
				int found = 0;

				for (k = TRUNC_ALIGN - in % TRUNC_ALIGN; k < len && !found;
				     k += TRUNC_ALIGN)
					if (all_zero(p + done + k, len - k))
						for (v = 1; v <= atomic_load(&versions) && !found; v++) {
							make_block(v, index, full);
							found = !memcmp(full + in, p + done, k);
						}
				if (!found)
					return 0;
			}
		}
		done += len;
	}
	return 1;
}

/* errno @rc allowed for this operation? (0 and these; never EIO) */
static int allowed(long rc, const int *ok)
{
	if (rc >= 0)
		return 1;
	for (; *ok; ok++)
		if (rc == -*ok)
			return 1;
	return 0;
}

static void count(enum op op, long rc, const int *ok, const char *path)
{
	atomic_fetch_add(&op_count[op], 1);
	if (rc >= 0)
		atomic_fetch_add(&op_ok[op], 1);
	else if (!allowed(rc, ok))
		fail(op_names[op], path, rc);
}

static void pick_file(uint64_t *s, char *path, size_t cap)
{
	snprintf(path, cap, "/sampler/ck%u/%s", (unsigned)(rnd(s) % N_CKPTS),
		 files[rnd(s) % N_FILES]);
}

/* Read the whole file behind @fh (or its first bytes) and check it. */
static long read_check(struct ckfs *f, uint64_t fh, const char *path, uint64_t *s)
{
	static const size_t sizes[] = { BLOCK, 3 * BLOCK + 512, CHUNK, 100000 };
	uint8_t *buf = malloc(MAX_BLOCKS * BLOCK + CHUNK);
	uint64_t off = (rnd(s) % 4 == 0) ? (rnd(s) % (MAX_BLOCKS * BLOCK)) : 0;
	long r, total = 0;

	for (;;) {
		size_t want = sizes[rnd(s) % 4];

		r = fs_read(f, fh, (char *)buf, want, off);
		if (r < 0)
			break;
		if (!content_ok(buf, (size_t)r, off)) {
			fail("read content", path, 0);
			fprintf(stderr, "  read %ld at %" PRIu64 " (asked %zu)\n", r, off, want);
			describe(buf, (size_t)r, off);
			r = -EBADMSG;
			break;
		}
		total += r;
		off += (uint64_t)r;
		if (r == 0 || off > MAX_BLOCKS * BLOCK + CHUNK)
			break;
	}
	free(buf);
	return r < 0 ? r : total;
}

static void op_write(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, EISDIR, ENOTDIR, 0 };
	uint32_t v = (uint32_t)atomic_fetch_add(&versions, 1) + 1;
	uint32_t n = 1 + (uint32_t)(rnd(s) % MAX_BLOCKS), i;
	uint8_t block[BLOCK];
	char path[128];
	uint64_t fh = 0;
	long rc;

	pick_file(s, path, sizeof(path));
	rc = fs_create(f, path, 0644, O_CREAT | O_WRONLY | O_TRUNC, &fh);
	if (rc == -ENOENT) {
		/* Its checkpoint (or folder) was removed: make it again, as a
		 * trainer would, and retry once. */
		char dir[128];

		snprintf(dir, sizeof(dir), "%s", path);
		*strchr(dir + strlen("/sampler/"), '/') = '\0';
		fs_mkdir(f, dir, 0755);
		if (strstr(path, "/d/")) {
			snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/d");
			fs_mkdir(f, dir, 0755);
		}
		rc = fs_create(f, path, 0644, O_CREAT | O_WRONLY | O_TRUNC, &fh);
	}
	if (rc == 0) {
		for (i = 0; i < n && rc >= 0; i++) {
			make_block(v, i, block);
			rc = fs_write(f, fh, (const char *)block, BLOCK, (uint64_t)i * BLOCK);
			if (rc >= 0 && rc != BLOCK)
				fail("short write", path, rc);
		}
		if (rc >= 0)
			rc = fs_flush(f, fh);
		fs_release(f, fh);
	}
	count(OP_WRITE, rc, ok, path);
}

static void op_read(struct ckfs *f, uint64_t *s, int hold)
{
	static const int ok[] = { ENOENT, EISDIR, ENOTDIR, 0 };
	char path[128];
	uint64_t fh = 0;
	int keep, direct;
	long rc;

	pick_file(s, path, sizeof(path));
	rc = fs_open(f, path, O_RDONLY, &fh, &keep, &direct);
	if (rc == 0) {
		rc = read_check(f, fh, path, s);
		if (hold && rc >= 0) {
			/* Others rewrite, rename, unlink it meanwhile. */
			usleep((useconds_t)(rnd(s) % 20000));
			rc = read_check(f, fh, path, s);
		}
		fs_release(f, fh);
	}
	count(hold ? OP_HOLD_READ : OP_READ, rc, ok, path);
}

static void op_truncate(struct ckfs *f, uint64_t *s, int by_handle)
{
	static const int ok[] = { ENOENT, EISDIR, ENOTDIR, 0 };
	uint64_t size = (rnd(s) % (MAX_BLOCKS * BLOCK / TRUNC_ALIGN)) * TRUNC_ALIGN;
	char path[128];
	long rc;

	pick_file(s, path, sizeof(path));
	if (by_handle) {
		uint64_t fh = 0;
		int keep, direct;

		rc = fs_open(f, path, O_RDWR, &fh, &keep, &direct);
		if (rc == 0) {
			rc = fs_truncate(f, NULL, fh, size);
			if (rc == 0)
				rc = fs_flush(f, fh);
			fs_release(f, fh);
		}
		count(OP_FTRUNCATE, rc, ok, path);
		return;
	}
	rc = fs_truncate(f, path, 0, size);
	count(OP_TRUNCATE, rc, ok, path);
}

static void op_rename(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, EISDIR, ENOTDIR, ENOTEMPTY, EEXIST, EINVAL, 0 };
	unsigned k = (unsigned)(rnd(s) % N_CKPTS);
	char a[128], b[128];
	long rc;

	snprintf(a, sizeof(a), "/sampler/ck%u/%s", k, files[rnd(s) % N_FILES]);
	snprintf(b, sizeof(b), "/sampler/ck%u/%s", k, files[rnd(s) % N_FILES]);
	if (rnd(s) % 8 == 0)	/* a folder */
		snprintf(a, sizeof(a), "/sampler/ck%u/d", k);
	rc = fs_rename(f, a, b, 0);
	count(OP_RENAME, rc, ok, a);
}

static void op_unlink(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, EISDIR, ENOTDIR, 0 };
	char path[128];
	long rc;

	pick_file(s, path, sizeof(path));
	rc = fs_unlink(f, path);
	count(OP_UNLINK, rc, ok, path);
}

static void op_dir(struct ckfs *f, uint64_t *s, int make)
{
	static const int ok[] = { ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, 0 };
	char path[128];
	long rc;

	snprintf(path, sizeof(path), "/sampler/ck%u/d", (unsigned)(rnd(s) % N_CKPTS));
	rc = make ? fs_mkdir(f, path, 0755) : fs_rmdir(f, path);
	count(make ? OP_MKDIR : OP_RMDIR, rc, ok, path);
}

static void op_ckpt(struct ckfs *f, uint64_t *s, int make)
{
	static const int ok[] = { ENOENT, EEXIST, ENOTEMPTY, 0 };
	char path[128];
	long rc;

	snprintf(path, sizeof(path), "/sampler/ck%u", (unsigned)(rnd(s) % N_CKPTS));
	if (!make) {
		/* rm -r: the files, the folder, then the checkpoint (others
		 * keep writing into it meanwhile). */
		size_t i;

		for (i = 0; i < N_FILES; i++) {
			char p2[160];

			snprintf(p2, sizeof(p2), "%s/%s", path, files[i]);
			fs_unlink(f, p2);
		}
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "/d");
		fs_rmdir(f, path);
		*strrchr(path, '/') = '\0';
	}
	rc = make ? fs_mkdir(f, path, 0755) : fs_rmdir(f, path);
	count(make ? OP_MKCKPT : OP_RMCKPT, rc, ok, path);
}

static void op_setxattr(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, EBUSY, EINVAL, 0 };
	static const char *const kinds[] = { "base", "delta", "lora" };
	char path[128];
	long rc;

	snprintf(path, sizeof(path), "/sampler/ck%u", (unsigned)(rnd(s) % N_CKPTS));
	if (rnd(s) % 2) {
		const char *k = kinds[rnd(s) % 3];

		rc = fs_setxattr(f, path, "user.ckptfs.kind", k, strlen(k), 0);
	} else {
		rc = fs_setxattr(f, path, "user.ckptfs.ttl", "86400", 5, 0);
	}
	count(OP_SETXATTR, rc, ok, path);
}

/* Promote a checkpoint, then read every file of the model. EINVAL: the
 * checkpoint holds no file (yet, or any more: an `rm -r` in progress). */
static void op_promote(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, EBUSY, EEXIST, EINVAL, 0 };
	unsigned id = atomic_fetch_add(&models, 1);
	char model[64], target[64];
	long rc;
	size_t i;

	snprintf(model, sizeof(model), "/models/m%u", id);
	snprintf(target, sizeof(target), "../sampler/ck%u", (unsigned)(rnd(s) % N_CKPTS));
	rc = fs_symlink(f, target, model);
	count(OP_PROMOTE, rc, ok, model);
	for (i = 0; rc == 0 && i < N_FILES; i++) {
		static const int rok[] = { ENOENT, EISDIR, 0 };
		char path[128];
		uint64_t fh = 0;
		int keep, direct;
		long r;

		snprintf(path, sizeof(path), "%s/%s", model, files[i]);
		r = fs_open(f, path, O_RDONLY, &fh, &keep, &direct);
		if (r == 0) {
			r = read_check(f, fh, path, s);
			fs_release(f, fh);
		}
		count(OP_READ, r, rok, path);	/* (a folder renamed onto a file name: EISDIR) */
	}
}

static int fill_cb(void *arg, const char *name, const struct stat *st)
{
	(void)arg;
	(void)name;
	(void)st;
	return 0;
}

static void op_readdir(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, ENOTDIR, 0 };
	char path[128];
	long rc;

	switch (rnd(s) % 4) {
	case 0:
		snprintf(path, sizeof(path), "/sampler");
		break;
	case 1:
		snprintf(path, sizeof(path), "/models");
		break;
	default:
		snprintf(path, sizeof(path), "/sampler/ck%u%s", (unsigned)(rnd(s) % N_CKPTS),
			 rnd(s) % 2 ? "/d" : "");
	}
	rc = fs_readdir(f, path, fill_cb, NULL);
	count(OP_READDIR, rc, ok, path);
}

static void op_getattr(struct ckfs *f, uint64_t *s)
{
	static const int ok[] = { ENOENT, ENOTDIR, 0 };
	struct stat sb;
	char path[128];
	long rc;

	pick_file(s, path, sizeof(path));
	rc = fs_getattr(f, path, &sb);
	if (rc == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > MAX_BLOCKS * BLOCK) {
		fail("getattr size", path, (long)sb.st_size);
	}
	count(OP_GETATTR, rc, ok, path);
}

static void op_gc(uint64_t *s)
{
	/* ENOENT: a checkpoint went away while the pass read it; it then
	 * deletes nothing (catalog/gc.c). */
	static const int ok[] = { ENOENT, 0 };
	struct gc_report r;
	long rc;

	(void)s;
	/* A pass alongside everything, as `ckptfs gc` from another host
	 * would run; the grace period keeps what writers have in flight. */
	rc = gc_run(store, 3600, 0, (double)time(NULL), &r);
	count(OP_GC, rc, ok, "gc");
}

struct worker {
	pthread_t t;
	struct ckfs *f;
	int readers_only;
	uint64_t seed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t s = w->seed;

	while (mono_now() < deadline) {
		unsigned x = (unsigned)(rnd(&s) % 100);

		if (w->readers_only) {
			if (x < 40)
				op_read(w->f, &s, x < 10);
			else if (x < 70)
				op_readdir(w->f, &s);
			else if (x < 95)
				op_getattr(w->f, &s);
			else
				op_write(w->f, &s);	/* the other mount writes too */
			continue;
		}
		if (x < 22)
			op_write(w->f, &s);
		else if (x < 36)
			op_read(w->f, &s, 0);
		else if (x < 42)
			op_read(w->f, &s, 1);
		else if (x < 50)
			op_truncate(w->f, &s, 0);
		else if (x < 54)
			op_truncate(w->f, &s, 1);
		else if (x < 61)
			op_rename(w->f, &s);
		else if (x < 66)
			op_unlink(w->f, &s);
		else if (x < 69)
			op_dir(w->f, &s, 1);
		else if (x < 71)
			op_dir(w->f, &s, 0);
		else if (x < 75)
			op_ckpt(w->f, &s, 1);
		else if (x < 77)
			op_ckpt(w->f, &s, 0);
		else if (x < 80)
			op_setxattr(w->f, &s);
		else if (x < 82)
			op_promote(w->f, &s);
		else if (x < 90)
			op_readdir(w->f, &s);
		else if (x < 99)
			op_getattr(w->f, &s);
		else
			op_gc(&s);
	}
	return NULL;
}

static atomic_long log_lines;

static void log_hook(enum log_level lvl, const char *line, void *arg)
{
	(void)lvl;
	(void)arg;
	atomic_fetch_add(&log_lines, 1);
	if (getenv("STRESS_LOG") || strstr(line, "EIO") || strstr(line, "Input/output") || strstr(line, "corrupt") ||
	    strstr(line, "malformed"))
		fprintf(stderr, "log: %s\n", line);
}

static void rmtree(const char *dir)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
	const char *env_s = getenv("STRESS_SECONDS"), *env_t = getenv("STRESS_THREADS");
	double seconds = env_s ? atof(env_s) : 20.0;
	int n_threads = env_t ? atoi(env_t) : 8, i;
	const char *tmp = getenv("TMPDIR");
	char dir[4096], storedir[4200], spool[4200], bc_a[4200], bc_b[4200];
	struct fs_config cfg;
	struct worker *w;
	long total = 0;

	if (n_threads < 2)
		n_threads = 2;
	snprintf(dir, sizeof(dir), "%s/ckptfs-stress-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(storedir, sizeof(storedir), "%s/store", dir);
	snprintf(spool, sizeof(spool), "%s/spool", dir);
	snprintf(bc_a, sizeof(bc_a), "%s/basecache-a", dir);
	snprintf(bc_b, sizeof(bc_b), "%s/basecache-b", dir);
	if (mkdir(spool, 0700) < 0 || store_local_open(storedir, 1, &store) < 0) {
		fprintf(stderr, "cannot set up %s\n", dir);
		return 1;
	}
	/* Refusals are expected by the thousand: show only lines about
	 * damaged data (the failures themselves are counted by errno). */
	log_set_hook(log_hook, NULL);
	fs_config_defaults(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.cache_bytes = 4u << 20;
	cfg.spool_dir = spool;
	cfg.threads = 3;
	cfg.list_ttl = 0.05;
	cfg.gc_interval = 0.5;
	cfg.gc_grace = 3600;
	/* A small base cache each: with a 4 MiB memory cache, base chunks
	 * come from it all the time, while gc runs. */
	cfg.base_cache_dir = bc_a;
	cfg.base_cache_bytes = 16u << 20;
	if (fs_new(store, &cfg, &mount_a) < 0 || fs_start(mount_a) < 0)
		return 1;
	cfg.gc_interval = 0;
	cfg.base_cache_dir = bc_b;
	if (fs_new(store, &cfg, &mount_b) < 0 || fs_start(mount_b) < 0)
		return 1;
	for (i = 0; i < N_CKPTS; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/sampler/ck%d", i);
		fs_mkdir(mount_a, path, 0755);
	}
	w = calloc((size_t)n_threads, sizeof(*w));
	deadline = mono_now() + seconds;
	for (i = 0; i < n_threads; i++) {
		w[i].f = i < n_threads - 2 ? mount_a : mount_b;
		w[i].readers_only = i >= n_threads - 2;
		w[i].seed = 0x1234567ull * (uint64_t)(i + 1) + (uint64_t)time(NULL);
		if (pthread_create(&w[i].t, NULL, worker_main, &w[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	for (i = 0; i < n_threads; i++)
		pthread_join(w[i].t, NULL);
	free(w);
	printf("stress: %d threads, %.0f s, %u versions written\n", n_threads, seconds,
	       (unsigned)atomic_load(&versions));
	for (i = 0; i < OP_COUNT; i++) {
		printf("  %-10s %8ld ops, %8ld succeeded\n", op_names[i],
		       atomic_load(&op_count[i]), atomic_load(&op_ok[i]));
		total += atomic_load(&op_count[i]);
	}
	printf("  total      %8ld ops, %ld failures, %ld log lines\n", total,
	       atomic_load(&failures), atomic_load(&log_lines));
	fs_free(mount_b);
	fs_free(mount_a);
	store_free(store);
	rmtree(dir);
	if (atomic_load(&failures) || total < 100) {
		printf("1 failed\n");
		return 1;
	}
	return 0;
}
