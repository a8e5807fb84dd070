/*
 * check_store.c: the store contract of store.h, written once and run
 * against every backend.
 *
 * Backends (one TCase each; the test bodies only see a struct store):
 *   local   a directory from testutil_mkdtemp(), always;
 *   cache   the disk cache around a local store, with every key under
 *           "chunks/" so reads really go through the cache, always;
 *   s3      a real S3 server (scripts/s3-start.sh starts Ceph RGW) when
 *           CKPTFS_TEST_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY (and optionally
 *           _REGION) are set; one bucket per run, one prefix per test.
 * Plus cases only one backend has: S3 faults against the real server, S3
 * retries/errno mapping/wire format against a scripted fake HTTP server
 * in this file (no RGW needed), and cache hits and eviction.
 *
 * Without the S3 variables the s3 cases are not run and a SKIP line says
 * so; CKPTFS_TEST_REQUIRE_S3=1 turns that into a failure (for CI).
 * Any log_error() a test did not ask for fails it.
 */
#include <check.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_local.h"
#include "testutil.h"
#include "testutil_s3.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MiB (1024 * 1024)

/* ---- per-run and per-test state ---- */

static const char *s3_endpoint, *s3_access, *s3_secret, *s3_region;
static char s3_bucket[64];	/* created by main(), shared by all tests */

static char *workdir;		/* per test (fixture) */
static char s3_prefix[96];	/* per test */

/* Log lines, so a test can look for the message its failure must give. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct buf log_text;
static int log_errors;
static bool errors_expected;

static void log_capture(enum log_level lvl, const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "[log %d] %s\n", (int)lvl, line);
	pthread_mutex_lock(&log_lock);
	buf_printf(&log_text, "%s\n", line);
	if (lvl == LOG_LVL_ERROR)
		log_errors++;
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *needle)
{
	bool found;

	pthread_mutex_lock(&log_lock);
	buf_append(&log_text, "", 1);
	log_text.len--;
	found = strstr((char *)log_text.data, needle) != NULL;
	pthread_mutex_unlock(&log_lock);
	return found;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool s3_configured(void)
{
	return s3_endpoint && s3_access && s3_secret;
}

/* The S3 backend reads credentials from the environment only. */
static void s3_env(const char *secret)
{
	setenv("AWS_ACCESS_KEY_ID", s3_access, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret ? secret : s3_secret, 1);
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_ENDPOINT_URL");
}

/* ---- backends ---- */

enum { B_LOCAL, B_CACHE, B_S3, B_N };

static const char *const backend_names[B_N] = { "local", "cache", "s3" };

static int open_local(struct store **out)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/store", workdir);
	return store_local_open(dir, 1, out);
}

static int open_cache(struct store **out)
{
	struct store *inner;
	char dir[4096];
	int rc;

	rc = open_local(&inner);
	if (rc < 0)
		return rc;
	snprintf(dir, sizeof(dir), "%s/cache", workdir);
	return store_cache_open(inner, dir, 64ull * MiB, out);
}

static int open_s3_url(const char *url, double timeout_s, struct store **out)
{
	struct store_options opt = {
		.endpoint = s3_endpoint, .region = s3_region,
		.request_timeout_s = timeout_s,
	};

	s3_env(NULL);
	return store_s3_open(url, &opt, out);
}

static int open_s3(struct store **out)
{
	char url[256];

	snprintf(url, sizeof(url), "s3://%s/%s", s3_bucket, s3_prefix);
	return open_s3_url(url, 60, out);
}

static int (*const backend_open[B_N])(struct store **) = {
	open_local, open_cache, open_s3,
};

static __thread int backend;	/* which one this test (thread) runs against */

static struct store *open_backend(int b)
{
	struct store *st = NULL;
	int rc;

	backend = b;
	rc = backend_open[b](&st);
	ck_assert_msg(rc == 0, "open %s: %s", backend_names[b], strerror(-rc));
	return st;
}

/*
 * Keys as the test names them, placed where the backend under test does
 * its real work: under "chunks/" for the cache (other keys bypass it).
 * Ring of buffers so a few can be alive at once.
 */
static const char *K(const char *name)
{
	static __thread char ring[8][1100];
	static __thread unsigned int next;
	char *k = ring[next++ % 8];

	snprintf(k, sizeof(ring[0]), "%s%s", backend == B_CACHE ? "chunks/" : "", name);
	return k;
}

static void setup(void)
{
	static unsigned int seq;

	backend = B_LOCAL;
	unsetenv("AWS_SESSION_TOKEN");
	workdir = testutil_mkdtemp();
	ck_assert_ptr_nonnull(workdir);
	snprintf(s3_prefix, sizeof(s3_prefix), "t%ld-%u-%ld", (long)getpid(), ++seq,
		 (long)time(NULL));
	pthread_mutex_lock(&log_lock);
	buf_reset(&log_text);
	log_errors = 0;
	errors_expected = false;
	pthread_mutex_unlock(&log_lock);
	log_set_hook(log_capture, NULL);
}

static int rm_cb(const char *key, const struct store_stat *sb, void *arg)
{
	(void)sb;
	return store_remove(arg, key);
}

static void teardown(void)
{
	int errors;

	/* Leave the shared bucket empty so main() can delete it. */
	if (backend == B_S3 && s3_configured() && s3_bucket[0]) {
		struct store *st;
		char url[256];

		snprintf(url, sizeof(url), "s3://%s/%s", s3_bucket, s3_prefix);
		if (open_s3_url(url, 60, &st) == 0) {
			store_list(st, "", rm_cb, st);
			store_free(st);
		}
	}
	testutil_rmtree(workdir);
	free(workdir);
	workdir = NULL;
	log_set_hook(NULL, NULL);
	pthread_mutex_lock(&log_lock);
	errors = log_errors;
	pthread_mutex_unlock(&log_lock);
	ck_assert_msg(errors == 0 || errors_expected,
		      "%d unexpected log_error() lines (see the log above)", errors);
}

static void expect_errors(void)
{
	pthread_mutex_lock(&log_lock);
	errors_expected = true;
	pthread_mutex_unlock(&log_lock);
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	testutil_fill_random(p, n, seed);
	return p;
}

static void assert_get(struct store *st, const char *key, const void *want, size_t n)
{
	struct buf got = BUF_INIT;
	int rc = store_get(st, key, &got);

	ck_assert_msg(rc == 0, "get %s: %s", key, strerror(-rc));
	ck_assert_msg(got.len == n, "get %s: %zu bytes, want %zu", key, got.len, n);
	ck_assert_msg(n == 0 || memcmp(got.data, want, n) == 0, "get %s: wrong bytes", key);
	buf_release(&got);
}

/* ======================= the contract, every backend ======================= */

START_TEST(roundtrip_sizes)
{
	static const size_t sizes[] = { 0, 1, 4096, 5 * MiB + 7 };
	struct store *st = open_backend(_i);
	struct store_stat sb;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		char name[32];
		uint8_t *data = random_bytes(sizes[i], 100 + i);

		snprintf(name, sizeof(name), "rt/obj-%zu", sizes[i]);
		ck_assert_int_eq(store_put(st, K(name), data, sizes[i]), 0);
		assert_get(st, K(name), data, sizes[i]);
		ck_assert_int_eq(store_head(st, K(name), &sb), 0);
		ck_assert_uint_eq(sb.size, sizes[i]);
		free(data);
	}
	store_free(st);
}
END_TEST

START_TEST(get_appends_to_buffer)
{
	struct store *st = open_backend(_i);
	struct buf got = BUF_INIT;

	ck_assert_int_eq(store_put(st, K("ap/x"), "hello", 5), 0);
	buf_append(&got, "XY", 2);
	ck_assert_int_eq(store_get(st, K("ap/x"), &got), 0);
	ck_assert_uint_eq(got.len, 7);
	ck_assert_mem_eq(got.data, "XYhello", 7);
	buf_release(&got);
	store_free(st);
}
END_TEST

static void assert_range(struct store *st, const char *key, uint64_t off, size_t len,
			 const char *want)
{
	struct buf got = BUF_INIT;
	int rc = store_get_range(st, key, off, len, &got);

	ck_assert_msg(rc == 0, "range %llu+%zu of %s: %s", (unsigned long long)off, len,
		      key, strerror(-rc));
	ck_assert_msg(got.len == strlen(want), "range %llu+%zu: %zu bytes, want %zu",
		      (unsigned long long)off, len, got.len, strlen(want));
	ck_assert(got.len == 0 || memcmp(got.data, want, got.len) == 0);
	buf_release(&got);
}

START_TEST(get_range_tail_and_middle)
{
	struct store *st = open_backend(_i);

	ck_assert_int_eq(store_put(st, K("rg/ten"), "0123456789", 10), 0);
	assert_range(st, K("rg/ten"), 8, 100, "89");		/* short tail */
	assert_range(st, K("rg/ten"), 10, 5, "");		/* exactly at end */
	assert_range(st, K("rg/ten"), 100, 5, "");		/* far past end */
	assert_range(st, K("rg/ten"), 3, 4, "3456");		/* middle */
	assert_range(st, K("rg/ten"), 0, 1, "0");
	assert_range(st, K("rg/ten"), 9, 1, "9");
	assert_range(st, K("rg/ten"), 2, 0, "");		/* empty range */
	assert_range(st, K("rg/ten"), 0, STORE_TO_END, "0123456789");
	assert_range(st, K("rg/ten"), 5, STORE_TO_END, "56789");
	assert_range(st, K("rg/ten"), 12, STORE_TO_END, "");
	assert_range(st, K("rg/ten"), 4, SIZE_MAX - 2, "456789");	/* off+len wraps */

	ck_assert_int_eq(store_put(st, K("rg/empty"), "", 0), 0);
	assert_range(st, K("rg/empty"), 0, 10, "");
	assert_range(st, K("rg/empty"), 0, STORE_TO_END, "");
	assert_range(st, K("rg/empty"), 5, 1, "");
	store_free(st);
}
END_TEST

START_TEST(get_range_large_object)
{
	size_t n = 5 * MiB + 123;
	uint8_t *data = random_bytes(n, 7);
	struct store *st = open_backend(_i);
	struct buf got = BUF_INIT;
	static const uint64_t offs[] = { 0, 1, 4 * MiB - 1, 5 * MiB };

	ck_assert_int_eq(store_put(st, K("big/one"), data, n), 0);
	for (size_t i = 0; i < ARRAY_SIZE(offs); i++) {
		buf_reset(&got);
		ck_assert_int_eq(store_get_range(st, K("big/one"), offs[i], 1 * MiB, &got), 0);
		size_t want = n - offs[i] < 1 * MiB ? n - offs[i] : 1 * MiB;

		ck_assert_uint_eq(got.len, want);
		ck_assert(memcmp(got.data, data + offs[i], want) == 0);
	}
	buf_release(&got);
	free(data);
	store_free(st);
}
END_TEST

START_TEST(get_missing_is_enoent)
{
	struct store *st = open_backend(_i);
	struct buf got = BUF_INIT;
	struct store_stat sb;

	ck_assert_int_eq(store_get(st, K("nope/never"), &got), -ENOENT);
	ck_assert_int_eq(store_get_range(st, K("nope/never"), 5, 10, &got), -ENOENT);
	ck_assert_int_eq(store_get_range(st, K("nope/never"), 0, 0, &got), -ENOENT);
	ck_assert_int_eq(store_head(st, K("nope/never"), &sb), -ENOENT);
	ck_assert_uint_eq(got.len, 0);
	buf_release(&got);
	store_free(st);
}
END_TEST

START_TEST(put_replaces)
{
	struct store *st = open_backend(_i);
	struct store_stat sb;

	ck_assert_int_eq(store_put(st, K("rp/k"), "first version", 13), 0);
	ck_assert_int_eq(store_put(st, K("rp/k"), "second", 6), 0);
	assert_get(st, K("rp/k"), "second", 6);
	ck_assert_int_eq(store_head(st, K("rp/k"), &sb), 0);
	ck_assert_uint_eq(sb.size, 6);
	store_free(st);
}
END_TEST

/* Readers racing a writer see one whole version, never a mix or a gap. */
struct replace_race {
	struct store *st;
	const char *key;
	const uint8_t *a, *b;
	size_t na, nb;
	int done;
	int bad, reads;
};

static void *replace_reader(void *arg)
{
	struct replace_race *r = arg;
	struct buf got = BUF_INIT;

	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		int rc;

		buf_reset(&got);
		rc = store_get(r->st, r->key, &got);
		__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
		if (rc != 0 ||
		    !((got.len == r->na && !memcmp(got.data, r->a, r->na)) ||
		      (got.len == r->nb && !memcmp(got.data, r->b, r->nb))))
			__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
	}
	buf_release(&got);
	return NULL;
}

START_TEST(put_replace_is_atomic)
{
	struct replace_race r = { .na = 1 * MiB, .nb = 700 * 1024 };
	pthread_t th[3];
	int i;

	r.st = open_backend(_i);
	r.key = K("atomic/k");
	r.a = random_bytes(r.na, 1);
	r.b = random_bytes(r.nb, 2);
	ck_assert_int_eq(store_put(r.st, r.key, r.a, r.na), 0);
	for (i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, replace_reader, &r);
	for (i = 0; i < 20; i++)
		ck_assert_int_eq(store_put(r.st, r.key, i % 2 ? r.a : r.b,
					   i % 2 ? r.na : r.nb), 0);
	__atomic_store_n(&r.done, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ck_assert_msg(r.bad == 0, "%d of %d reads saw a torn or missing object", r.bad,
		      r.reads);
	free((void *)r.a);
	free((void *)r.b);
	store_free(r.st);
}
END_TEST

START_TEST(put_if_absent_once)
{
	struct store *st = open_backend(_i);

	ck_assert_int_eq(store_put_if_absent(st, K("pia/k"), "one", 3), 0);
	ck_assert_int_eq(store_put_if_absent(st, K("pia/k"), "two", 3), -EEXIST);
	assert_get(st, K("pia/k"), "one", 3);
	/* put() still replaces; put_if_absent() after remove() creates again */
	ck_assert_int_eq(store_remove(st, K("pia/k")), 0);
	ck_assert_int_eq(store_put_if_absent(st, K("pia/k"), "three", 5), 0);
	assert_get(st, K("pia/k"), "three", 5);
	ck_assert_int_eq(store_put_if_absent(st, K("pia/empty"), "", 0), 0);
	ck_assert_int_eq(store_put_if_absent(st, K("pia/empty"), "", 0), -EEXIST);
	store_free(st);
}
END_TEST

#define RACERS 8

struct pia_race {
	struct store *st;
	const char *key;
	pthread_barrier_t go;
	int rc[RACERS];
	char body[RACERS][32];
};

struct racer {
	struct pia_race *race;
	int id;
};

static void *pia_racer(void *arg)
{
	struct racer *me = arg;
	struct pia_race *r = me->race;

	pthread_barrier_wait(&r->go);
	r->rc[me->id] = store_put_if_absent(r->st, r->key, r->body[me->id],
					    strlen(r->body[me->id]));
	return NULL;
}

START_TEST(put_if_absent_race_one_winner)
{
	static struct pia_race r;
	struct racer who[RACERS];
	pthread_t th[RACERS];
	int i, round, winners, winner = -1;

	r.st = open_backend(_i);
	for (round = 0; round < 3; round++) {
		char name[32];

		snprintf(name, sizeof(name), "race/k%d", round);
		r.key = K(name);
		pthread_barrier_init(&r.go, NULL, RACERS);
		for (i = 0; i < RACERS; i++) {
			snprintf(r.body[i], sizeof(r.body[i]), "racer %d round %d", i, round);
			who[i].race = &r;
			who[i].id = i;
			pthread_create(&th[i], NULL, pia_racer, &who[i]);
		}
		for (i = 0; i < RACERS; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&r.go);
		for (i = 0, winners = 0; i < RACERS; i++) {
			ck_assert_msg(r.rc[i] == 0 || r.rc[i] == -EEXIST, "racer %d: %s", i,
				      strerror(-r.rc[i]));
			if (r.rc[i] == 0) {
				winners++;
				winner = i;
			}
		}
		ck_assert_int_eq(winners, 1);
		assert_get(r.st, r.key, r.body[winner], strlen(r.body[winner]));
	}
	store_free(r.st);
}
END_TEST

START_TEST(head_size_and_mtime)
{
	struct store *st = open_backend(_i);
	struct store_stat sb;
	int64_t now = time(NULL);

	ck_assert_int_eq(store_put(st, K("hd/k"), "abcdef", 6), 0);
	ck_assert_int_eq(store_head(st, K("hd/k"), &sb), 0);
	ck_assert_uint_eq(sb.size, 6);
	ck_assert_msg(sb.mtime > now - 600 && sb.mtime < now + 600,
		      "mtime %lld vs now %lld", (long long)sb.mtime, (long long)now);
	store_free(st);
}
END_TEST

struct listing {
	char **keys;
	uint64_t *sizes;
	int64_t *mtimes;
	size_t n, cap;
	size_t stop_after;	/* 0: never */
};

static int collect(const char *key, const struct store_stat *sb, void *arg)
{
	struct listing *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->keys = realloc(l->keys, l->cap * sizeof(*l->keys));
		l->sizes = realloc(l->sizes, l->cap * sizeof(*l->sizes));
		l->mtimes = realloc(l->mtimes, l->cap * sizeof(*l->mtimes));
	}
	l->keys[l->n] = strdup(key);
	l->sizes[l->n] = sb->size;
	l->mtimes[l->n] = sb->mtime;
	l->n++;
	return l->stop_after && l->n == l->stop_after ? 42 : 0;
}

static void listing_release(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->sizes);
	free(l->mtimes);
	memset(l, 0, sizeof(*l));
}

static void assert_listing(struct store *st, const char *prefix,
			   const char *const *want, size_t nwant)
{
	struct listing l = { 0 };
	size_t i;

	ck_assert_int_eq(store_list(st, prefix, collect, &l), 0);
	ck_assert_msg(l.n == nwant, "list '%s': %zu keys, want %zu", prefix, l.n, nwant);
	for (i = 0; i < nwant; i++)
		ck_assert_str_eq(l.keys[i], K(want[i]));
	listing_release(&l);
}

START_TEST(list_prefix_order)
{
	static const char *const keys[] = {
		"l/b/d", "l/a", "l/ba", "l/c/x/y", "l/b/c", "m/z", "l-x", "l/B",
	};
	static const char *const all_l[] = {
		"l/B", "l/a", "l/b/c", "l/b/d", "l/ba", "l/c/x/y",
	};
	static const char *const l_b[] = { "l/b/c", "l/b/d", "l/ba" };
	static const char *const l_bslash[] = { "l/b/c", "l/b/d" };
	static const char *const l_c[] = { "l/c/x/y" };
	static const char *const everything[] = {
		"l-x", "l/B", "l/a", "l/b/c", "l/b/d", "l/ba", "l/c/x/y", "m/z",
	};
	struct store *st = open_backend(_i);
	struct listing l = { 0 };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(keys); i++)
		ck_assert_int_eq(store_put(st, K(keys[i]), keys[i], strlen(keys[i])), 0);
	assert_listing(st, K("l/"), all_l, ARRAY_SIZE(all_l));
	assert_listing(st, K("l/b"), l_b, ARRAY_SIZE(l_b));
	assert_listing(st, K("l/b/"), l_bslash, ARRAY_SIZE(l_bslash));
	assert_listing(st, K("l/c"), l_c, ARRAY_SIZE(l_c));
	assert_listing(st, K(""), everything, ARRAY_SIZE(everything));
	assert_listing(st, K("zz"), NULL, 0);
	assert_listing(st, K("l/a/"), NULL, 0);

	/* sizes and mtimes come with the listing */
	ck_assert_int_eq(store_list(st, K("l/c/"), collect, &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_uint_eq(l.sizes[0], strlen("l/c/x/y"));
	ck_assert(l.mtimes[0] > time(NULL) - 600 && l.mtimes[0] < time(NULL) + 600);
	listing_release(&l);
	store_free(st);
}
END_TEST

START_TEST(list_callback_stops)
{
	struct store *st = open_backend(_i);
	struct listing l = { .stop_after = 3 };
	char name[32];
	int i;

	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "stop/k%d", i);
		ck_assert_int_eq(store_put(st, K(name), "x", 1), 0);
	}
	ck_assert_int_eq(store_list(st, K("stop/"), collect, &l), 42);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.keys[2], K("stop/k2"));
	listing_release(&l);
	store_free(st);
}
END_TEST

#define MANY 1050	/* more than one ListObjectsV2 page (1000) */

struct filler {
	struct store *st;
	int from, to, rc;
	int backend;
};

static void *fill_keys(void *arg)
{
	struct filler *f = arg;
	char name[32];

	backend = f->backend;	/* K() looks at this thread's copy */
	for (int i = f->from; i < f->to && f->rc == 0; i++) {
		snprintf(name, sizeof(name), "many/k%05d", i);
		f->rc = store_put(f->st, K(name), name, strlen(name));
	}
	return NULL;
}

START_TEST(list_many_keys_pages)
{
	struct store *st = open_backend(_i);
	struct filler f[8];
	pthread_t th[8];
	struct listing l = { 0 };
	size_t i;

	for (i = 0; i < 8; i++) {
		f[i] = (struct filler){ st, (int)(i * MANY / 8), (int)((i + 1) * MANY / 8), 0, _i };
		pthread_create(&th[i], NULL, fill_keys, &f[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(f[i].rc, 0);
	}
	ck_assert_int_eq(store_list(st, K("many/"), collect, &l), 0);
	ck_assert_uint_eq(l.n, MANY);
	for (i = 1; i < l.n; i++)
		ck_assert_msg(strcmp(l.keys[i - 1], l.keys[i]) < 0, "out of order at %zu", i);
	ck_assert_str_eq(l.keys[MANY - 1], K("many/k01049"));
	listing_release(&l);
	ck_assert_int_eq(store_list(st, K("many/k0100"), collect, &l), 0);
	ck_assert_uint_eq(l.n, 10);
	listing_release(&l);
	store_free(st);
}
END_TEST

START_TEST(remove_and_absent)
{
	struct store *st = open_backend(_i);
	struct buf got = BUF_INIT;
	struct listing l = { 0 };

	ck_assert_int_eq(store_put(st, K("rm/a"), "a", 1), 0);
	ck_assert_int_eq(store_put(st, K("rm/b"), "b", 1), 0);
	ck_assert_int_eq(store_remove(st, K("rm/a")), 0);
	ck_assert_int_eq(store_get(st, K("rm/a"), &got), -ENOENT);
	ck_assert_int_eq(store_remove(st, K("rm/a")), 0);
	ck_assert_int_eq(store_remove(st, K("rm/never/was")), 0);
	ck_assert_int_eq(store_list(st, K("rm/"), collect, &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.keys[0], K("rm/b"));
	listing_release(&l);
	buf_release(&got);
	store_free(st);
}
END_TEST

START_TEST(touch_renews_mtime_keeps_bytes)
{
	struct store *st = open_backend(_i);
	struct store_stat before, after;
	struct buf got = BUF_INIT;
	struct listing l = { 0 };
	struct timespec t0;

	ck_assert_int_eq(store_put(st, K("tc/k"), "abcdef", 6), 0);
	ck_assert_int_eq(store_head(st, K("tc/k"), &before), 0);
	sleep(2);	/* mtimes have one-second resolution */
	clock_gettime(CLOCK_REALTIME, &t0);
	ck_assert_int_eq(store_touch(st, K("tc/k")), 0);
	ck_assert_int_eq(store_head(st, K("tc/k"), &after), 0);
	ck_assert_msg(after.mtime > before.mtime, "mtime %lld -> %lld",
		      (long long)before.mtime, (long long)after.mtime);
	/* head() knows the touch to the nanosecond (gc orders it against the
	 * start of its pass). */
	ck_assert_int_ge(after.mtime_ns, (int64_t)t0.tv_sec * 1000000000 + t0.tv_nsec);
	ck_assert_int_eq(store_get(st, K("tc/k"), &got), 0);
	ck_assert_uint_eq(got.len, 6);
	ck_assert_mem_eq(got.data, "abcdef", 6);
	/* gc reads ages from listings first: they must show it too. */
	ck_assert_int_eq(store_list(st, K("tc/"), collect, &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_int_ge(l.mtimes[0], after.mtime);
	ck_assert_int_eq(store_touch(st, K("tc/absent")), -ENOENT);
	listing_release(&l);
	buf_release(&got);
	store_free(st);
}
END_TEST

START_TEST(bad_keys_einval)
{
	static char long_key[1100], long_seg[300];
	const char *bad[] = {
		"", "/a", "a/", "a//b", "a/./b", "a/../b", ".", "..", ".hidden",
		"a/.b", "a b", "a\\b", "a?b", "a+b", "\xc3\xa9", "a\nb",
		long_key, long_seg,
	};
	struct store *st = open_backend(_i);
	struct buf got = BUF_INIT;
	struct store_stat sb;
	size_t i;

	memset(long_key, 'k', 1001);
	memset(long_seg, 's', 201);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *k = bad[i];

		ck_assert_msg(store_put(st, k, "x", 1) == -EINVAL, "put '%s'", k);
		ck_assert_msg(store_put_if_absent(st, k, "x", 1) == -EINVAL, "pia '%s'", k);
		ck_assert_msg(store_get(st, k, &got) == -EINVAL, "get '%s'", k);
		ck_assert_msg(store_head(st, k, &sb) == -EINVAL, "head '%s'", k);
		ck_assert_msg(store_remove(st, k) == -EINVAL, "remove '%s'", k);
	}
	/* the limits themselves are fine */
	memset(long_key, 'k', 1000);
	long_key[1000] = '\0';
	for (i = 200; i < 1000; i += 201)
		long_key[i] = '/';
	memset(long_seg, 's', 200);
	long_seg[200] = '\0';
	ck_assert_int_eq(store_key_check(long_key), 0);
	ck_assert_int_eq(store_put(st, long_seg, "ok", 2), 0);
	ck_assert_int_eq(store_put(st, "a-b_c.d%41/e", "ok", 2), 0);
	assert_get(st, "a-b_c.d%41/e", "ok", 2);
	buf_release(&got);
	store_free(st);
}
END_TEST

/* ========================= S3 against the real server ========================= */

START_TEST(s3_multipart_large)
{
	size_t n = 70 * MiB + 3;	/* > 64 MiB: multipart, five parts */
	uint8_t *data = random_bytes(n, 70);
	struct store *st = open_backend(B_S3);
	struct buf got = BUF_INIT;
	struct store_stat sb;
	uint64_t off = 16 * MiB - 10;	/* across a part boundary */

	ck_assert_int_eq(store_put(st, "mp/big", data, n), 0);
	ck_assert_int_eq(store_head(st, "mp/big", &sb), 0);
	ck_assert_uint_eq(sb.size, n);
	ck_assert_int_eq(store_get_range(st, "mp/big", off, 20, &got), 0);
	ck_assert_uint_eq(got.len, 20);
	ck_assert(memcmp(got.data, data + off, 20) == 0);
	buf_release(&got);
	assert_get(st, "mp/big", data, n);
	/* conditional create stays one PUT at this size */
	ck_assert_int_eq(store_put_if_absent(st, "mp/big2", data, n), 0);
	ck_assert_int_eq(store_put_if_absent(st, "mp/big2", data, 10), -EEXIST);
	ck_assert_int_eq(store_head(st, "mp/big2", &sb), 0);
	ck_assert_uint_eq(sb.size, n);
	free(data);
	store_free(st);
}
END_TEST

START_TEST(s3_wrong_secret_eacces)
{
	struct store_options opt = { .endpoint = s3_endpoint, .region = s3_region };
	struct store *st = NULL;
	char url[128];

	backend = B_S3;
	expect_errors();
	snprintf(url, sizeof(url), "s3://%s", s3_bucket);
	s3_env("definitely-not-the-secret");
	ck_assert_int_eq(store_s3_open(url, &opt, &st), -EACCES);
	ck_assert_ptr_null(st);
	ck_assert(log_has("bad credentials or denied"));
}
END_TEST

START_TEST(s3_missing_bucket_enoent)
{
	struct store *st = NULL;
	char url[128], bucket[64];

	backend = B_S3;
	expect_errors();
	snprintf(bucket, sizeof(bucket), "ckptfs-no-such-%ld", (long)getpid());
	snprintf(url, sizeof(url), "s3://%s/x", bucket);
	ck_assert_int_eq(open_s3_url(url, 30, &st), -ENOENT);
	ck_assert(log_has(bucket));
}
END_TEST

START_TEST(s3_prefixes_are_separate)
{
	struct store *a = open_backend(B_S3), *b;
	char url[256];
	struct listing l = { 0 };

	snprintf(url, sizeof(url), "s3://%s/%s/other", s3_bucket, s3_prefix);
	ck_assert_int_eq(open_s3_url(url, 60, &b), 0);
	ck_assert_int_eq(store_put(b, "k", "in b", 4), 0);
	ck_assert_int_eq(store_put(a, "k2", "in a", 4), 0);
	ck_assert_int_eq(store_list(b, "", collect, &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.keys[0], "k");
	listing_release(&l);
	/* a sees b's object under its own name space */
	assert_get(a, "other/k", "in b", 4);
	store_free(b);
	store_free(a);
}
END_TEST

/* ================= S3 against nothing / a scripted fake server ================= */

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

START_TEST(s3_nothing_listening_within_deadline)
{
	struct store_options opt = { .request_timeout_s = 1.5 };
	struct store *st = NULL;
	char ep[64];
	double t0;
	int rc;

	backend = B_S3;
	expect_errors();
	unsetenv("CKPTFS_S3_TIMEOUT");
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", free_port());
	opt.endpoint = ep;
	t0 = now_s();
	rc = store_s3_open("s3://some-bucket", &opt, &st);
	ck_assert_msg(rc == -ETIMEDOUT || rc == -EIO, "open: %s", strerror(-rc));
	ck_assert_msg(now_s() - t0 < 1.5 + 1.0, "took %.2f s", now_s() - t0);
	ck_assert(log_has("deadline"));
}
END_TEST

/*
 * A minimal HTTP/1.1 server that answers from a script, one entry per
 * request (the last entry repeats), and keeps each request's head. It checks
 * nothing itself; tests look at what it recorded. status 0 closes the
 * connection without an answer.
 */
struct fake_resp {
	int status;
	const char *code;	/* S3 error code, sent as an <Error> document */
	const char *body;
	const char *headers;	/* extra header lines, each ending in \r\n */
};

struct fake {
	int lfd, port;
	pthread_t accept_th;
	pthread_t conn_th[32];
	int nconn;
	pthread_mutex_t lock;
	const struct fake_resp *script;
	int nscript, next;
	char *reqs[128];
	int nreqs;
	int stop;
};

struct fake_conn {
	struct fake *f;
	int fd;
};

static bool fake_readable(struct fake *f, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		int n = poll(&p, 1, 50);

		if (n > 0)
			return true;
		if (n < 0)
			return false;
	}
	return false;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void fake_reply(int fd, const struct fake_resp *r, bool head, bool close_after)
{
	char hdr[1024], body[1024];
	const char *b = r->body ? r->body : "";

	if (r->code) {
		snprintf(body, sizeof(body),
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
			 "<Message>fake</Message></Error>", r->code);
		b = body;
	}
	snprintf(hdr, sizeof(hdr),
		 "HTTP/1.1 %d Fake\r\nContent-Length: %zu\r\nContent-Type: application/xml\r\n"
		 "Last-Modified: Wed, 01 May 2024 12:00:00 GMT\r\n%s%s\r\n",
		 r->status, strlen(b), r->headers ? r->headers : "",
		 close_after ? "Connection: close\r\n" : "");
	send_all(fd, hdr, strlen(hdr));
	if (!head)
		send_all(fd, b, strlen(b));
}

static void *fake_serve(void *arg)
{
	struct fake_conn *fc = arg;
	struct fake *f = fc->f;
	static __thread char buf[65536];
	size_t have = 0;

	for (;;) {
		struct fake_resp r;
		char *eoh, *head, *cl;
		size_t hlen, body;
		bool expect, is_head;

		while (!(eoh = memmem(buf, have, "\r\n\r\n", 4))) {
			ssize_t n;

			if (have == sizeof(buf) || !fake_readable(f, fc->fd))
				goto out;
			n = recv(fc->fd, buf + have, sizeof(buf) - have, 0);
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		hlen = (size_t)(eoh + 4 - buf);
		head = strndup(buf, hlen);
		memmove(buf, buf + hlen, have - hlen);
		have -= hlen;
		cl = strcasestr(head, "\r\nContent-Length:");
		body = cl ? strtoull(cl + 17, NULL, 10) : 0;
		expect = strcasestr(head, "\r\nExpect: 100-continue") != NULL;
		is_head = !strncmp(head, "HEAD ", 5);
		pthread_mutex_lock(&f->lock);
		r = f->script[f->next < f->nscript ? f->next : f->nscript - 1];
		f->next++;
		if (f->nreqs < (int)ARRAY_SIZE(f->reqs))
			f->reqs[f->nreqs++] = head;
		else
			free(head);
		pthread_mutex_unlock(&f->lock);
		if (r.status == 0)
			goto out;
		if (expect && r.status >= 300) {
			fake_reply(fc->fd, &r, is_head, true);
			goto out;
		}
		if (expect)
			send_all(fc->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		while (body > 0) {	/* read and drop the body */
			size_t take = have < body ? have : body;
			ssize_t n;

			memmove(buf, buf + take, have - take);
			have -= take;
			body -= take;
			if (body == 0)
				break;
			if (!fake_readable(f, fc->fd))
				goto out;
			n = recv(fc->fd, buf, sizeof(buf), 0);
			if (n <= 0)
				goto out;
			have = (size_t)n;
		}
		fake_reply(fc->fd, &r, is_head, false);
	}
out:
	close(fc->fd);
	free(fc);
	return NULL;
}

static void *fake_accept(void *arg)
{
	struct fake *f = arg;

	while (fake_readable(f, f->lfd)) {
		struct fake_conn *fc;
		int fd = accept(f->lfd, NULL, NULL);

		if (fd < 0)
			continue;
		fc = malloc(sizeof(*fc));
		fc->f = f;
		fc->fd = fd;
		pthread_mutex_lock(&f->lock);
		if (f->nconn < (int)ARRAY_SIZE(f->conn_th)) {
			pthread_create(&f->conn_th[f->nconn++], NULL, fake_serve, fc);
		} else {
			close(fd);
			free(fc);
		}
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

static void fake_start(struct fake *f, const struct fake_resp *script, int n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->script = script;
	f->nscript = n;
	pthread_mutex_init(&f->lock, NULL);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->lfd, 16), 0);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
	pthread_create(&f->accept_th, NULL, fake_accept, f);
}

static void fake_stop(struct fake *f)
{
	int i;

	__atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
	pthread_join(f->accept_th, NULL);
	for (i = 0; i < f->nconn; i++)
		pthread_join(f->conn_th[i], NULL);
	close(f->lfd);
	for (i = 0; i < f->nreqs; i++)
		free(f->reqs[i]);
}

static int fake_open(struct fake *f, const char *url, double timeout_s, struct store **st)
{
	struct store_options opt = { .request_timeout_s = timeout_s };
	char ep[64];

	backend = B_S3;
	unsetenv("CKPTFS_S3_TIMEOUT");
	setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "fake-secret", 1);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", f->port);
	opt.endpoint = ep;
	return store_s3_open(url, &opt, st);
}

/* The answer to the one-key listing store_s3_open() sends first. */
#define LIST_OK { 200, NULL, \
	"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>", NULL }

START_TEST(fake_retries_then_succeeds)
{
	static const struct fake_resp script[] = {
		LIST_OK,
		{ 503, "SlowDown", NULL, NULL },
		{ 500, "InternalError", NULL, NULL },
		{ 0, NULL, NULL, NULL },	/* connection dropped */
		{ 429, NULL, NULL, NULL },
		{ 206, NULL, "hello", NULL },
	};
	struct store *st;
	struct buf got = BUF_INIT;
	struct fake f;

	metrics_reset();
	fake_start(&f, script, ARRAY_SIZE(script));
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket", 20, &st), 0);
	ck_assert_int_eq(store_get_range(st, "a/b", 0, 5, &got), 0);
	ck_assert_uint_eq(got.len, 5);
	ck_assert_mem_eq(got.data, "hello", 5);
	ck_assert_int_eq(f.next, 6);
	/* Counted: the retries of one GET that then succeeded: 503, 500 and
	 * 429 always; the dropped connection too unless libcurl, seeing a
	 * reused connection die, retried it itself on a fresh one. */
	{
		double n = metrics_get(M_STORE_RETRIES, "s3", "GET", NULL);

		ck_assert_msg(n == 3 || n == 4, "%g retries", n);
	}
	ck_assert(metrics_get(M_STORE_REQUESTS, "s3", "get", "ok") == 1);
	ck_assert(metrics_get(M_STORE_SECONDS, "s3", "get", NULL) == 1);
	ck_assert(strstr(f.reqs[5], "\r\nRange: bytes=0-4\r\n") != NULL);
	buf_release(&got);
	store_free(st);
	fake_stop(&f);
}
END_TEST

START_TEST(fake_deadline_on_endless_503)
{
	static const struct fake_resp script[] = {
		LIST_OK,
		{ 503, "SlowDown", NULL, NULL },
	};
	struct store *st;
	struct buf got = BUF_INIT;
	struct fake f;
	double t0;

	expect_errors();
	fake_start(&f, script, ARRAY_SIZE(script));
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket", 1.2, &st), 0);
	t0 = now_s();
	ck_assert_int_eq(store_get(st, "a/b", &got), -ETIMEDOUT);
	ck_assert_msg(now_s() - t0 < 1.2 + 0.5, "took %.2f s", now_s() - t0);
	ck_assert_msg(f.next >= 4, "only %d requests: no retries?", f.next);
	ck_assert_msg(f.next < 40, "%d requests: no backoff?", f.next);
	ck_assert(log_has("SlowDown"));
	store_free(st);
	fake_stop(&f);
}
END_TEST

/* Each HTTP answer maps to the errno the contract names, in one place. */
START_TEST(fake_status_to_errno)
{
	static const struct fake_resp script[] = {
		LIST_OK,
		{ 404, "NoSuchKey", NULL, NULL },		/* get */
		{ 404, NULL, NULL, NULL },			/* head */
		{ 416, "InvalidRange", NULL, NULL },		/* get_range past end */
		{ 204, NULL, NULL, NULL },			/* remove */
		{ 404, "NoSuchKey", NULL, NULL },		/* remove, other servers */
		{ 412, "PreconditionFailed", NULL, NULL },	/* put_if_absent */
		{ 409, "ConditionalRequestConflict", NULL, NULL },
		{ 409, "ConditionalRequestConflict", NULL, NULL },	/* -> EEXIST */
		{ 409, "ConditionalRequestConflict", NULL, NULL },
		{ 200, NULL, NULL, NULL },				/* -> created */
		{ 507, NULL, NULL, NULL },			/* put */
		{ 403, "QuotaExceeded", NULL, NULL },		/* put */
		{ 403, "AccessDenied", NULL, NULL },		/* put */
		{ 400, "InvalidArgument", NULL, NULL },		/* put */
		{ 404, "NoSuchBucket", NULL, NULL },		/* get */
	};
	struct store *st;
	struct buf got = BUF_INIT;
	struct store_stat sb;
	struct fake f;

	expect_errors();
	fake_start(&f, script, ARRAY_SIZE(script));
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket", 10, &st), 0);
	ck_assert_int_eq(store_get(st, "k", &got), -ENOENT);
	ck_assert_int_eq(store_head(st, "k", &sb), -ENOENT);
	ck_assert_int_eq(store_get_range(st, "k", 100, 10, &got), 0);
	ck_assert_uint_eq(got.len, 0);
	ck_assert_int_eq(store_remove(st, "k"), 0);
	ck_assert_int_eq(store_remove(st, "k"), 0);
	ck_assert_int_eq(log_errors, 0);
	ck_assert_int_eq(store_put_if_absent(st, "k", "x", 1), -EEXIST);
	ck_assert_int_eq(store_put_if_absent(st, "k", "x", 1), -EEXIST);
	ck_assert_int_eq(store_put_if_absent(st, "k", "x", 1), 0);
	ck_assert_int_eq(log_errors, 0);
	ck_assert_int_eq(store_put(st, "k", "x", 1), -ENOSPC);
	ck_assert_int_eq(store_put(st, "k", "x", 1), -ENOSPC);
	ck_assert_int_eq(store_put(st, "k", "x", 1), -EACCES);
	ck_assert(log_has("bad credentials or denied"));
	ck_assert_int_eq(store_put(st, "k", "x", 1), -EIO);
	ck_assert(log_has("InvalidArgument"));
	ck_assert_int_eq(store_get(st, "k", &got), -ENOENT);
	ck_assert(log_has("bucket 'fake-bucket' does not exist"));
	ck_assert_int_eq(f.next, (int)ARRAY_SIZE(script));
	buf_release(&got);
	store_free(st);
	fake_stop(&f);
}
END_TEST

/* An answer lost after the server applied the conditional PUT: the retry
 * sees 412 for our own object, which must not read as "someone else won". */
START_TEST(fake_put_if_absent_lost_answer)
{
#define CLOSE "Connection: close\r\n"
	static const struct fake_resp script[] = {
		{ 200, NULL, "<ListBucketResult></ListBucketResult>", CLOSE },
		{ 0, NULL, NULL, NULL },			/* applied, answer lost */
		{ 412, "PreconditionFailed", NULL, NULL },	/* the retry */
		{ 200, NULL, "mine", CLOSE },			/* read back: ours */
		{ 0, NULL, NULL, NULL },
		{ 412, "PreconditionFailed", NULL, NULL },
		{ 200, NULL, "theirs", CLOSE },			/* read back: not ours */
	};
#undef CLOSE
	struct store *st;
	struct fake f;

	fake_start(&f, script, ARRAY_SIZE(script));
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket", 10, &st), 0);
	ck_assert_int_eq(store_put_if_absent(st, "k", "mine", 4), 0);
	ck_assert(log_has("answer lost"));
	ck_assert_int_eq(store_put_if_absent(st, "k", "mine", 4), -EEXIST);
	ck_assert_int_eq(f.next, (int)ARRAY_SIZE(script));
	ck_assert(!strncmp(f.reqs[3], "GET /fake-bucket/k ", 19));
	store_free(st);
	fake_stop(&f);
}
END_TEST

START_TEST(fake_open_errors)
{
	static const struct fake_resp denied[] = { { 403, "SignatureDoesNotMatch", NULL, NULL } };
	static const struct fake_resp nobucket[] = { { 404, "NoSuchBucket", NULL, NULL } };
	struct store *st = NULL;
	struct fake f;

	expect_errors();
	fake_start(&f, denied, 1);
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket", 10, &st), -EACCES);
	ck_assert(log_has("SignatureDoesNotMatch: bad credentials or denied"));
	fake_stop(&f);
	fake_start(&f, nobucket, 1);
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket2/p", 10, &st), -ENOENT);
	ck_assert(log_has("bucket 'fake-bucket2' does not exist"));
	fake_stop(&f);
	ck_assert_ptr_null(st);
	/* bad URLs never reach the network */
	ck_assert_int_eq(store_s3_open("s3://ab", NULL, &st), -EINVAL);
	ck_assert_int_eq(store_s3_open("s3://bucket/../x", NULL, &st), -EINVAL);
}
END_TEST

/* What goes on the wire: signed, with our payload header, encoded, sized. */
START_TEST(fake_wire_format)
{
	static const struct fake_resp script[] = {
		LIST_OK,
		{ 200, NULL, NULL, NULL },	/* put */
		{ 200, NULL,			/* list page 1 */
		  "<ListBucketResult><IsTruncated>true</IsTruncated>"
		  "<Contents><Key>pfx/d/a%41</Key><LastModified>2024-05-01T12:00:00.000Z</LastModified>"
		  "<ETag>&quot;x&quot;</ETag><Size>5</Size></Contents>"
		  "<Contents><Key>pfx/d/&#98;&#x63;</Key><Size>7</Size></Contents>"
		  "<Contents><Key>pfx/d/a&amp;b</Key><Size>1</Size></Contents>"
		  "<NextContinuationToken>tok+/=&amp;</NextContinuationToken></ListBucketResult>", NULL },
		{ 200, NULL,			/* list page 2 */
		  "<ListBucketResult><IsTruncated>false</IsTruncated>"
		  "<Contents><Key>pfx/d/z</Key><Size>0</Size></Contents></ListBucketResult>", NULL },
		{ 200, NULL, NULL, "ETag: \"e\"\r\n" },	/* head */
		{ 200, NULL, "0123456789", NULL },	/* a server that ignores Range */
	};
	struct buf got = BUF_INIT;
	struct store *st;
	struct listing l = { 0 };
	struct store_stat sb;
	struct fake f;

	fake_start(&f, script, ARRAY_SIZE(script));
	setenv("AWS_SESSION_TOKEN", "session/token+1", 1);
	ck_assert_int_eq(fake_open(&f, "s3://fake-bucket/pfx/", 10, &st), 0);
	ck_assert_int_eq(store_put(st, "d/a%41", "hello", 5), 0);
	ck_assert_int_eq(store_list(st, "d/", collect, &l), 0);
	ck_assert_int_eq(store_head(st, "d/z", &sb), 0);
	ck_assert_int_eq(sb.mtime, 1714564800);
	ck_assert_int_eq(store_get_range(st, "d/z", 2, 3, &got), 0);
	ck_assert_uint_eq(got.len, 3);
	ck_assert_mem_eq(got.data, "234", 3);
	buf_release(&got);

	ck_assert_uint_eq(l.n, 3);	/* "d/a&b" breaks the key rules: skipped */
	ck_assert_str_eq(l.keys[0], "d/a%41");
	ck_assert_uint_eq(l.sizes[0], 5);
	ck_assert_int_eq(l.mtimes[0], 1714564800);
	ck_assert_str_eq(l.keys[1], "d/bc");
	ck_assert_str_eq(l.keys[2], "d/z");
	listing_release(&l);

	ck_assert_int_eq(f.nreqs, 6);
	ck_assert_msg(f.nconn == 1, "%d connections for %d requests: no reuse", f.nconn, f.nreqs);
	ck_assert_msg(!strncmp(f.reqs[0], "GET /fake-bucket?list-type=2&max-keys=1&prefix=pfx%2F ", 54),
		      "%s", f.reqs[0]);
	ck_assert_msg(!strncmp(f.reqs[1], "PUT /fake-bucket/pfx/d/a%2541 HTTP/1.1\r\n", 40),
		      "%s", f.reqs[1]);
	ck_assert(strstr(f.reqs[1], "\r\nContent-Length: 5\r\n"));
	ck_assert(!strcasestr(f.reqs[1], "chunked"));
	ck_assert_msg(!strncmp(f.reqs[2], "GET /fake-bucket?list-type=2&prefix=pfx%2Fd%2F ", 47),
		      "%s", f.reqs[2]);
	ck_assert_msg(!strncmp(f.reqs[3], "GET /fake-bucket?continuation-token=tok%2B%2F%3D%26"
			       "&list-type=2&prefix=pfx%2Fd%2F ", 82), "%s", f.reqs[3]);
	ck_assert(!strncmp(f.reqs[4], "HEAD /fake-bucket/pfx/d/z ", 26));
	for (int i = 0; i < f.nreqs; i++) {
		const char *r = f.reqs[i];

		ck_assert_msg(strstr(r, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDFAKE/"),
			      "unsigned: %s", r);
		ck_assert(strstr(r, "/us-east-1/s3/aws4_request"));
		ck_assert(strstr(r, "\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"));
		ck_assert(strstr(r, "\r\nx-amz-security-token: session/token+1\r\n"));
		ck_assert(strstr(r, "x-amz-security-token") < strstr(r, "\r\n\r\n"));
		ck_assert_msg(strstr(r, "SignedHeaders=") &&
			      strstr(strstr(r, "SignedHeaders="), "x-amz-security-token"),
			      "token not signed: %s", r);
	}
	store_free(st);
	fake_stop(&f);
}
END_TEST

/* ================================ the cache ================================ */

struct cache_env {
	struct store *st;
	char dir[4096];
};

static void cache_env_open(struct cache_env *ce, uint64_t max)
{
	struct store *inner;

	backend = B_CACHE;
	snprintf(ce->dir, sizeof(ce->dir), "%s/cache", workdir);
	ck_assert_int_eq(open_local(&inner), 0);
	ck_assert_int_eq(store_cache_open(inner, ce->dir, max, &ce->st), 0);
}

static struct store_cache_stats stats_of(struct store *st)
{
	struct store_cache_stats cs;

	ck_assert_int_eq(store_cache_stats(st, &cs), 0);
	return cs;
}

/* With write-through (what a mount on S3 uses), a chunk just put is read
 * back from the cache, and a later put still replaces what is served. */
START_TEST(cache_write_through)
{
	size_t n = 256 * 1024 + 3;
	uint8_t *data = random_bytes(n, 7), *other = random_bytes(n, 8);
	struct cache_env ce;
	struct store_cache_stats cs;
	struct buf got = BUF_INIT;

	cache_env_open(&ce, 16 * MiB);
	ck_assert_int_eq(store_cache_set_write_through(ce.st, 1), 0);
	ck_assert_int_eq(store_put(ce.st, "chunks/wt/a", data, n), 0);
	ck_assert_int_eq(store_get(ce.st, "chunks/wt/a", &got), 0);
	ck_assert(got.len == n && !memcmp(got.data, data, n));
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.misses, 0);
	ck_assert_uint_eq(cs.hits, 1);
	ck_assert_uint_eq(cs.inner_bytes, 0);
	ck_assert_uint_eq(cs.cached_objects, 1);

	ck_assert_int_eq(store_put(ce.st, "chunks/wt/a", other, n), 0);
	buf_reset(&got);
	ck_assert_int_eq(store_get(ce.st, "chunks/wt/a", &got), 0);
	ck_assert(got.len == n && !memcmp(got.data, other, n));
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.cached_objects, 1);
	ck_assert_uint_eq(cs.cached_bytes, n);
	/* other keys are never kept */
	ck_assert_int_eq(store_put(ce.st, "meta/wt", "m", 1), 0);
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 1);
	buf_release(&got);
	free(data);
	free(other);
	store_free(ce.st);
}
END_TEST

/* A local-only cache (the fs's base cache): no store behind it, keeps what
 * is put, forgets what is evicted, refuses a directory others may write,
 * and one process at a time. */
START_TEST(cache_local_only)
{
	size_t n = 256 * 1024;
	uint8_t *a = random_bytes(n, 11), *b = random_bytes(n, 12);
	struct store *st, *second = NULL;
	struct buf got = BUF_INIT;
	struct store_stat ss;
	char dir[4200], path[4400];
	struct stat sb;
	int fd;

	snprintf(dir, sizeof(dir), "%s/localonly", workdir);
	ck_assert_int_eq(store_cache_open_local(dir, 3 * n, &st), 0);
	ck_assert_int_eq(stat(dir, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0700);
	ck_assert_int_eq(store_get(st, "raw/aa/one", &got), -ENOENT);
	ck_assert_int_eq(store_cache_open_fd(st, "raw/aa/one"), -ENOENT);
	ck_assert_int_eq(store_put(st, "raw/aa/one", a, n / 2), 0);
	ck_assert_int_eq(store_get(st, "raw/aa/one", &got), 0);
	ck_assert(got.len == n / 2 && !memcmp(got.data, a, n / 2));
	fd = store_cache_open_fd(st, "raw/aa/one");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)(n / 2));
	close(fd);
	ck_assert_int_eq(store_head(st, "raw/aa/one", &ss), -ENOTSUP);
	/* Too big for a quarter of the cache: not kept, and not an error. */
	ck_assert_int_eq(store_put(st, "raw/bb/big", b, n), 0);
	buf_reset(&got);
	ck_assert_int_eq(store_get(st, "raw/bb/big", &got), -ENOENT);
	ck_assert_int_eq(store_put(st, "raw/bb/two", b, n / 2), 0);
	ck_assert_int_eq(store_put(st, "raw/bb/three", b, n / 2), 0);
	ck_assert_int_eq(store_remove(st, "raw/bb/two"), 0);
	buf_reset(&got);
	ck_assert_int_eq(store_get(st, "raw/bb/two", &got), -ENOENT);
	/* One process at a time. */
	expect_errors();	/* these two refusals log their cause */
	ck_assert_int_eq(store_cache_open_local(dir, 3 * n, &second), -EBUSY);
	store_free(st);
	/* Reopened: the index comes back from the files. */
	ck_assert_int_eq(store_cache_open_local(dir, 3 * n, &st), 0);
	buf_reset(&got);
	ck_assert_int_eq(store_get(st, "raw/bb/three", &got), 0);
	ck_assert(got.len == n / 2 && !memcmp(got.data, b, n / 2));
	store_free(st);
	/* A directory others may write is refused. */
	ck_assert_int_eq(chmod(dir, 0770), 0);
	ck_assert_int_eq(store_cache_open_local(dir, 3 * n, &st), -EPERM);
	snprintf(path, sizeof(path), "%s/objects/raw/bb/three", dir);
	ck_assert_int_eq(access(path, F_OK), 0);	/* and left as it was */
	buf_release(&got);
	free(a);
	free(b);
}
END_TEST

START_TEST(cache_second_read_is_local)
{
	size_t n = 1 * MiB + 17;
	uint8_t *data = random_bytes(n, 3);
	struct cache_env ce;
	struct store_cache_stats cs;
	struct buf got = BUF_INIT;
	struct store *local;

	cache_env_open(&ce, 16 * MiB);
	ck_assert_int_eq(store_put(ce.st, "chunks/ab/c1", data, n), 0);
	ck_assert_int_eq(store_get_range(ce.st, "chunks/ab/c1", 100, 1000, &got), 0);
	ck_assert(got.len == 1000 && !memcmp(got.data, data + 100, 1000));
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.misses, 1);
	ck_assert_uint_eq(cs.hits, 0);
	ck_assert_uint_eq(cs.inner_bytes, n);	/* whole object on a miss */

	buf_reset(&got);
	ck_assert_int_eq(store_get_range(ce.st, "chunks/ab/c1", n - 10, 100, &got), 0);
	ck_assert(got.len == 10 && !memcmp(got.data, data + n - 10, 10));
	buf_reset(&got);
	ck_assert_int_eq(store_get_range(ce.st, "chunks/ab/c1", n + 5, 100, &got), 0);
	ck_assert_uint_eq(got.len, 0);
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.hits, 2);
	ck_assert_uint_eq(cs.misses, 1);
	ck_assert_uint_eq(cs.inner_bytes, n);	/* unchanged: served from disk */
	ck_assert_uint_eq(cs.cached_objects, 1);
	ck_assert_uint_eq(cs.cached_bytes, n);

	/* other keys pass through, uncounted; no stats for non-cache stores */
	ck_assert_int_eq(store_put(ce.st, "meta/x", "m", 1), 0);
	assert_get(ce.st, "meta/x", "m", 1);
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.hits + cs.misses, 3);
	ck_assert_int_eq(open_local(&local), 0);
	ck_assert_int_eq(store_cache_stats(local, &cs), -EINVAL);
	store_free(local);
	/* a missing chunk is -ENOENT and is not cached */
	ck_assert_int_eq(store_get(ce.st, "chunks/none", &got), -ENOENT);
	ck_assert_int_eq(store_get(ce.st, "chunks/none", &got), -ENOENT);
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 1);
	buf_release(&got);
	free(data);
	store_free(ce.st);
}
END_TEST

/* "chunks/<h2>/<sha256 of data>": a key that names its content. */
static void content_key(const uint8_t *data, size_t n, char key[128])
{
	char hex[HASH_SHA256_HEX_LEN + 1];

	hash_sha256_hex(data, n, hex);
	snprintf(key, 128, "chunks/%.2s/%s", hex, hex);
}

/*
 * Issue 9 item 8: a download that does not match its key is never kept, so
 * once the store object is repaired the cache serves the right bytes (it
 * used to keep the bad copy and serve it for good).
 */
START_TEST(cache_bad_download_not_kept)
{
	size_t n = 300 * 1024 + 5;
	uint8_t *data = random_bytes(n, 21), *bad = malloc(n);
	struct cache_env ce;
	struct store *local;
	struct buf got = BUF_INIT;
	char key[128];

	memcpy(bad, data, n);
	bad[n / 2] ^= 0x40;
	content_key(data, n, key);
	cache_env_open(&ce, 16 * MiB);
	ck_assert_int_eq(open_local(&local), 0);
	ck_assert_int_eq(store_put(local, key, bad, n), 0);

	/* Served as the store has it (the reader's check fails it), not kept. */
	ck_assert_int_eq(store_get(ce.st, key, &got), 0);
	ck_assert(got.len == n && !memcmp(got.data, bad, n));
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 0);
	ck_assert_uint_eq(stats_of(ce.st).inner_bytes, 2 * n);	/* fetched once more */

	ck_assert_int_eq(store_put(local, key, data, n), 0);	/* repaired */
	buf_reset(&got);
	ck_assert_int_eq(store_get(ce.st, key, &got), 0);
	ck_assert(got.len == n && !memcmp(got.data, data, n));
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 1);
	buf_reset(&got);
	ck_assert_int_eq(store_get_range(ce.st, key, 10, 100, &got), 0);
	ck_assert(got.len == 100 && !memcmp(got.data, data + 10, 100));
	ck_assert_uint_eq(stats_of(ce.st).hits, 1);
	buf_release(&got);
	store_free(local);
	store_free(ce.st);
	free(data);
	free(bad);
}
END_TEST

/* A cached file damaged on disk is dropped and fetched again, whole or by
 * range; the rewritten copy is the good one. */
START_TEST(cache_bad_cached_file_refetched)
{
	size_t n = 200 * 1024 + 9;
	uint8_t *data = random_bytes(n, 22);
	struct cache_env ce;
	struct store_cache_stats cs;
	struct buf got = BUF_INIT;
	char key[128], path[4300];
	FILE *f;
	int round;

	content_key(data, n, key);
	cache_env_open(&ce, 16 * MiB);
	ck_assert_int_eq(store_put(ce.st, key, data, n), 0);
	ck_assert_int_eq(store_get(ce.st, key, &got), 0);	/* miss: kept */
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 1);
	snprintf(path, sizeof(path), "%s/objects/%s", ce.dir, key);
	for (round = 0; round < 2; round++) {
		f = fopen(path, "r+b");
		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fseek(f, (long)(n / 3), SEEK_SET), 0);
		ck_assert_int_eq(fputc(data[n / 3] ^ 0x01, f), data[n / 3] ^ 0x01);
		fclose(f);
		buf_reset(&got);
		if (round == 0) {
			ck_assert_int_eq(store_get(ce.st, key, &got), 0);
			ck_assert(got.len == n && !memcmp(got.data, data, n));
		} else {
			ck_assert_int_eq(store_get_range(ce.st, key, n / 3 - 1, 3, &got), 0);
			ck_assert(got.len == 3 && !memcmp(got.data, data + n / 3 - 1, 3));
		}
		ck_assert(log_has("does not match its key"));
	}
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.misses, 3);
	ck_assert_uint_eq(cs.cached_objects, 1);
	ck_assert_uint_eq(cs.cached_bytes, n);
	/* The copy on disk is the good one again: a hit, no new fetch. */
	buf_reset(&got);
	ck_assert_int_eq(store_get(ce.st, key, &got), 0);
	ck_assert(got.len == n && !memcmp(got.data, data, n));
	ck_assert_uint_eq(stats_of(ce.st).misses, 3);
	buf_release(&got);
	store_free(ce.st);
	free(data);
}
END_TEST

static uint64_t du_objects(const char *dir)
{
	char cmd[4200];
	unsigned long long total = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "find '%s/objects' -type f -printf '%%s\\n'", dir);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	for (unsigned long long v; fscanf(p, "%llu", &v) == 1;)
		total += v;
	pclose(p);
	return total;
}

START_TEST(cache_eviction_lru_bounded)
{
	const uint64_t max = 3 * MiB;
	struct cache_env ce;
	struct buf got = BUF_INIT;
	struct store_cache_stats cs;
	char key[64];
	uint8_t *data[10];
	size_t size[10];
	int i;

	cache_env_open(&ce, max);
	for (i = 0; i < 10; i++) {
		size[i] = 700 * 1024 + (size_t)i * 37 * 1024;
		data[i] = random_bytes(size[i], 1000 + i);
		snprintf(key, sizeof(key), "chunks/ev/%02d", i);
		ck_assert_int_eq(store_put(ce.st, key, data[i], size[i]), 0);
	}
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "chunks/ev/%02d", i);
		assert_get(ce.st, key, data[i], size[i]);
		cs = stats_of(ce.st);
		ck_assert_msg(cs.cached_bytes <= max, "cached %llu > max",
			      (unsigned long long)cs.cached_bytes);
		ck_assert_uint_eq(du_objects(ce.dir), cs.cached_bytes);
	}
	cs = stats_of(ce.st);
	ck_assert_uint_gt(cs.evictions, 0);
	ck_assert_uint_eq(cs.misses, 10);

	/* 07, 08, 09 fit (2988 KiB). LRU, not FIFO: touch the oldest, 07,
	 * then a miss must evict 08, the least recently used. */
	ck_assert_uint_eq(cs.cached_objects, 3);
	assert_get(ce.st, "chunks/ev/07", data[7], size[7]);	/* hit */
	assert_get(ce.st, "chunks/ev/00", data[0], size[0]);	/* miss, evicts 08 */
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.hits, 1);
	assert_get(ce.st, "chunks/ev/07", data[7], size[7]);
	ck_assert_uint_eq(stats_of(ce.st).hits, 2);
	assert_get(ce.st, "chunks/ev/08", data[8], size[8]);
	ck_assert_uint_eq(stats_of(ce.st).misses, cs.misses + 1);
	ck_assert_uint_le(stats_of(ce.st).cached_bytes, max);

	/* an object bigger than the whole cache is served, never kept */
	{
		uint8_t *huge = random_bytes(4 * MiB, 9);

		ck_assert_int_eq(store_put(ce.st, "chunks/huge", huge, 4 * MiB), 0);
		assert_get(ce.st, "chunks/huge", huge, 4 * MiB);
		assert_get(ce.st, "chunks/huge", huge, 4 * MiB);
		ck_assert_uint_le(stats_of(ce.st).cached_bytes, max);
		free(huge);
	}
	for (i = 0; i < 10; i++)
		free(data[i]);
	buf_release(&got);
	store_free(ce.st);
}
END_TEST

START_TEST(cache_index_survives_reopen)
{
	struct cache_env ce;
	struct store_cache_stats cs;
	struct store *again;

	cache_env_open(&ce, 8 * MiB);
	ck_assert_int_eq(store_put(ce.st, "chunks/r/1", "persist", 7), 0);
	ck_assert_int_eq(store_put(ce.st, "chunks/r/2", "me too", 6), 0);
	assert_get(ce.st, "chunks/r/1", "persist", 7);
	assert_get(ce.st, "chunks/r/2", "me too", 6);
	/* a second process may not share the directory */
	{
		struct store *inner, *other;

		expect_errors();
		ck_assert_int_eq(open_local(&inner), 0);
		ck_assert_int_eq(store_cache_open(inner, ce.dir, 0, &other), -EBUSY);
	}
	store_free(ce.st);

	cache_env_open(&ce, 8 * MiB);
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.cached_objects, 2);
	ck_assert_uint_eq(cs.cached_bytes, 13);
	assert_get(ce.st, "chunks/r/1", "persist", 7);
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.hits, 1);
	ck_assert_uint_eq(cs.inner_bytes, 0);
	store_free(ce.st);

	/* reopened smaller: evicts down to the new bound */
	cache_env_open(&ce, 10);
	cs = stats_of(ce.st);
	ck_assert_uint_le(cs.cached_bytes, 10);
	ck_assert_uint_eq(cs.cached_objects, 1);
	again = ce.st;
	store_free(again);
}
END_TEST

START_TEST(cache_write_and_remove_invalidate)
{
	struct cache_env ce;
	struct buf got = BUF_INIT;

	cache_env_open(&ce, 8 * MiB);
	ck_assert_int_eq(store_put(ce.st, "chunks/w", "old", 3), 0);
	assert_get(ce.st, "chunks/w", "old", 3);
	ck_assert_int_eq(store_put(ce.st, "chunks/w", "new!", 4), 0);
	assert_get(ce.st, "chunks/w", "new!", 4);
	ck_assert_int_eq(store_remove(ce.st, "chunks/w"), 0);
	ck_assert_int_eq(store_get(ce.st, "chunks/w", &got), -ENOENT);
	ck_assert_uint_eq(stats_of(ce.st).cached_objects, 0);
	buf_release(&got);
	store_free(ce.st);
}
END_TEST

struct same_reader {
	struct store *st;
	const uint8_t *want;
	size_t n;
	pthread_barrier_t *go;
	int ok;
};

static void *read_same(void *arg)
{
	struct same_reader *r = arg;
	struct buf got = BUF_INIT;

	pthread_barrier_wait(r->go);
	r->ok = store_get(r->st, "chunks/same", &got) == 0 && got.len == r->n &&
		!memcmp(got.data, r->want, r->n);
	buf_release(&got);
	return NULL;
}

START_TEST(cache_concurrent_misses_fetch_once)
{
	size_t n = 2 * MiB;
	uint8_t *data = random_bytes(n, 11);
	struct same_reader r[8];
	pthread_barrier_t go;
	pthread_t th[8];
	struct cache_env ce;
	struct store_cache_stats cs;
	int i;

	cache_env_open(&ce, 16 * MiB);
	ck_assert_int_eq(store_put(ce.st, "chunks/same", data, n), 0);
	pthread_barrier_init(&go, NULL, 8);
	for (i = 0; i < 8; i++) {
		r[i] = (struct same_reader){ ce.st, data, n, &go, 0 };
		pthread_create(&th[i], NULL, read_same, &r[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert(r[i].ok);
	}
	pthread_barrier_destroy(&go);
	cs = stats_of(ce.st);
	ck_assert_uint_eq(cs.misses, 1);
	ck_assert_uint_eq(cs.hits, 7);
	ck_assert_uint_eq(cs.inner_bytes, n);
	free(data);
	store_free(ce.st);
}
END_TEST

/* ================================ the runner ================================ */

/* Lists of tests, as functions because START_TEST's names are variables. */
#define N_CONTRACT 16
static void contract_tests(const TTest *t[N_CONTRACT])
{
	const TTest *all[N_CONTRACT] = {
		roundtrip_sizes, get_appends_to_buffer, get_range_tail_and_middle,
		get_range_large_object, get_missing_is_enoent, put_replaces,
		put_replace_is_atomic, put_if_absent_once, put_if_absent_race_one_winner,
		head_size_and_mtime, list_prefix_order, list_callback_stops,
		list_many_keys_pages, remove_and_absent, touch_renews_mtime_keeps_bytes,
		bad_keys_einval,
	};

	memcpy(t, all, sizeof(all));
}

/* Create or delete the run's bucket; the store API has no bucket calls. */
static long s3_bucket_op(const char *method)
{
	return testutil_s3_bucket_op(s3_endpoint, s3_region, s3_access, s3_secret, s3_bucket,
				     method);
}

static TCase *backend_tcase(int b)
{
	TCase *tc = tcase_create(backend_names[b]);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	const TTest *t[N_CONTRACT];

	contract_tests(t);
	for (size_t i = 0; i < N_CONTRACT; i++)
		tcase_add_loop_test(tc, t[i], b, b + 1);
	return tc;
}

/* ---- local store temp files (issue 9 item 9) ----
 *
 * Loop index 0: named random temp files; 1: O_TMPFILE (skipped where the
 * test directory's filesystem lacks it).
 */

/* Make <workdir>/store/.tmp/<name> holding @len bytes, with mtime @age_s in
 * the past. Returns the path (static buffer). */
static const char *make_leftover(const char *name, size_t len, long age_s)
{
	static char path[4096];
	char dir[4096];
	struct timespec ts[2];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/store", workdir);
	mkdir(dir, 0755);
	snprintf(dir, sizeof(dir), "%s/store/.tmp", workdir);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/store/.tmp/%s", workdir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < len; i++)
		fputc('x', f);
	ck_assert_int_eq(fclose(f), 0);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= age_s;
	ts[1] = ts[0];
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
	return path;
}

static bool leftover_exists(const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/store/.tmp/%s", workdir, name);
	return access(path, F_OK) == 0;
}

static size_t tmp_count(void)
{
	char dir[4096];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/store/.tmp", workdir);
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Open the local store in the temp-file mode of loop index @i; false (and
 * the store closed) if this filesystem cannot do that mode. */
static bool open_local_mode(int i, struct store **st)
{
	ck_assert_int_eq(open_local(st), 0);
	if (store_local_set_tmpfile(*st, i) == 0)
		return true;
	ck_assert_int_eq(i, 1);
	store_free(*st);
	fprintf(stderr, "SKIP: no O_TMPFILE under %s\n", workdir);
	return false;
}

/*
 * A daemon killed mid-put left temp files under the names a restarted
 * daemon with the same PID (PID 1 in every container) would pick first.
 * The restarted daemon's creates must not report "exists" for new keys.
 */
START_TEST(local_tmp_same_pid_leftovers_do_not_collide)
{
	struct store *st;
	struct buf got = BUF_INIT;
	char name[64];
	int seq;

	for (seq = 1; seq <= 64; seq++) {
		snprintf(name, sizeof(name), "%ld-%d", (long)getpid(), seq);
		make_leftover(name, 10, 0);	/* young: the open sweep keeps them */
	}
	if (!open_local_mode(_i, &st))
		return;
	ck_assert_int_eq(store_put_if_absent(st, "jobs/a/checkpoint.json", "rec", 3), 0);
	ck_assert_int_eq(store_put(st, "jobs/a/attrs.json", "attrs", 5), 0);
	ck_assert_int_eq(store_put_if_absent(st, "jobs/b/checkpoint.json", "rec2", 4), 0);
	ck_assert_int_eq(store_put_if_absent(st, "jobs/a/checkpoint.json", "other", 5),
			 -EEXIST);
	ck_assert_int_eq(store_get(st, "jobs/a/checkpoint.json", &got), 0);
	ck_assert_uint_eq(got.len, 3);
	ck_assert_mem_eq(got.data, "rec", 3);
	buf_reset(&got);
	ck_assert_int_eq(store_get(st, "jobs/a/attrs.json", &got), 0);
	ck_assert_mem_eq(got.data, "attrs", 5);
	/* Nothing of ours is left beside the 64 young leftovers. */
	ck_assert_uint_eq(tmp_count(), 64);
	buf_release(&got);
	store_free(st);
}
END_TEST

/* Puts of every kind, failed exclusive creates included, leave .tmp empty. */
START_TEST(local_tmp_puts_leave_nothing)
{
	bool exists[7] = { false };
	struct store *st;
	char key[64];

	if (!open_local_mode(_i, &st))
		return;
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "k/%d", i % 7);
		if (i % 2)
			ck_assert_int_eq(store_put(st, key, "v", 1), 0);
		else
			ck_assert_int_eq(store_put_if_absent(st, key, "v", 1),
					 exists[i % 7] ? -EEXIST : 0);
		exists[i % 7] = true;
	}
	ck_assert_uint_eq(tmp_count(), 0);
	store_free(st);
}
END_TEST

/*
 * A put of a new key links its temp file straight to the key; a put over an
 * existing key renames a named one over it. Both leave the newest bytes and
 * an empty .tmp, with and without O_TMPFILE.
 */
START_TEST(local_put_new_then_overwrite)
{
	struct buf got = BUF_INIT;
	struct store *st;
	char big[70000];

	if (!open_local_mode(_i, &st))
		return;
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(store_put(st, "n/a/fresh", "one", 3), 0);
	ck_assert_int_eq(store_get(st, "n/a/fresh", &got), 0);
	ck_assert_uint_eq(got.len, 3);
	ck_assert(!memcmp(got.data, "one", 3));
	buf_reset(&got);
	ck_assert_int_eq(store_put(st, "n/a/fresh", big, sizeof(big)), 0);
	ck_assert_int_eq(store_get(st, "n/a/fresh", &got), 0);
	ck_assert_uint_eq(got.len, sizeof(big));
	ck_assert(!memcmp(got.data, big, sizeof(big)));
	buf_reset(&got);
	ck_assert_int_eq(store_put(st, "n/a/fresh", "two", 3), 0);
	ck_assert_int_eq(store_get(st, "n/a/fresh", &got), 0);
	ck_assert_uint_eq(got.len, 3);
	ck_assert(!memcmp(got.data, "two", 3));
	ck_assert_uint_eq(tmp_count(), 0);
	buf_release(&got);
	store_free(st);
}
END_TEST

/*
 * Stale leftovers go at open and at a sweep; a young file (a writer between
 * create and lock, or on another host) and a locked one (a live writer) stay.
 */
START_TEST(local_tmp_stale_swept_live_kept)
{
	struct store *st;
	uint64_t n = 99;
	int lock_fd;

	make_leftover("1-1", 4096, 2 * 3600);			/* old-style name */
	make_leftover("1-2", 10, STORE_LOCAL_TMP_STALE_S + 5);
	make_leftover("0123456789abcdef0123456789abcdef", 10, 2 * 3600);
	make_leftover("young", 10, STORE_LOCAL_TMP_STALE_S - 120);
	lock_fd = open(make_leftover("locked", 10, 2 * 3600), O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(lock_fd, 0);
	ck_assert_int_eq(flock(lock_fd, LOCK_EX), 0);

	ck_assert_int_eq(open_local(&st), 0);
	ck_assert(!leftover_exists("1-1"));
	ck_assert(!leftover_exists("1-2"));
	ck_assert(!leftover_exists("0123456789abcdef0123456789abcdef"));
	ck_assert(leftover_exists("young"));
	ck_assert(leftover_exists("locked"));
	ck_assert(log_has("removed 3 stale temporary files (4116 bytes)"));

	/* A later leftover goes at the next sweep (gc runs one). */
	make_leftover("4242-7", 10, 3 * 3600);
	ck_assert_int_eq(store_local_sweep_tmp(st, STORE_LOCAL_TMP_STALE_S, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert(!leftover_exists("4242-7"));
	ck_assert(leftover_exists("locked"));

	/* Its writer gone, the locked one is a leftover too. */
	close(lock_fd);
	ck_assert_int_eq(store_local_sweep_tmp(st, STORE_LOCAL_TMP_STALE_S, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert(!leftover_exists("locked"));
	ck_assert(leftover_exists("young"));
	store_free(st);
}
END_TEST

struct put_thread {
	struct store *st;
	int id;
	int failures;
};

static void *put_loop(void *arg)
{
	struct put_thread *t = arg;
	struct buf got = BUF_INIT;
	char key[64], val[64];

	for (int i = 0; i < 150; i++) {
		int n = snprintf(val, sizeof(val), "writer %d put %d", t->id, i);

		snprintf(key, sizeof(key), "w%d/k%d", t->id, i % 5);
		buf_reset(&got);
		if (store_put(t->st, key, val, (size_t)n) != 0 ||
		    store_get(t->st, key, &got) != 0 || got.len != (size_t)n ||
		    memcmp(got.data, val, (size_t)n) != 0)
			t->failures++;
	}
	buf_release(&got);
	return NULL;
}

static atomic_int sweeping;

static void *sweep_loop(void *arg)
{
	uint64_t n;

	while (atomic_load(&sweeping))
		store_local_sweep_tmp(arg, 0, &n);
	return NULL;
}

/*
 * Never a live writer's: a sweep with no age margin at all, looping beside
 * four writers, takes none of their temp files (O_TMPFILE mode, where a
 * temp file is locked before it has a name).
 */
START_TEST(local_tmp_sweep_spares_live_writers)
{
	struct put_thread t[4];
	pthread_t th[4], sw;
	struct store *st;

	if (!open_local_mode(1, &st))
		return;
	atomic_store(&sweeping, 1);
	ck_assert_int_eq(pthread_create(&sw, NULL, sweep_loop, st), 0);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct put_thread){ .st = st, .id = i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, put_loop, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	atomic_store(&sweeping, 0);
	pthread_join(sw, NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(t[i].failures, 0);
	ck_assert_uint_eq(tmp_count(), 0);
	store_free(st);
}
END_TEST

/* Only the local store has temp files to sweep. */
START_TEST(local_tmp_sweep_other_backend)
{
	struct store *st;
	uint64_t n = 5;

	ck_assert_int_eq(open_cache(&st), 0);
	ck_assert_int_eq(store_local_sweep_tmp(st, 0, &n), -EOPNOTSUPP);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(store_local_set_tmpfile(st, 0), -EOPNOTSUPP);
	store_free(st);
}
END_TEST

static TCase *local_tmp_tcase(void)
{
	TCase *tc = tcase_create("local-tmp");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, local_tmp_same_pid_leftovers_do_not_collide, 0, 2);
	tcase_add_loop_test(tc, local_tmp_puts_leave_nothing, 0, 2);
	tcase_add_loop_test(tc, local_put_new_then_overwrite, 0, 2);
	tcase_add_test(tc, local_tmp_stale_swept_live_kept);
	tcase_add_test(tc, local_tmp_sweep_spares_live_writers);
	tcase_add_test(tc, local_tmp_sweep_other_backend);
	return tc;
}

int main(void)
{
	const TTest *const s3_real[] = {
		s3_multipart_large, s3_wrong_secret_eacces, s3_missing_bucket_enoent,
		s3_prefixes_are_separate,
	};
	const TTest *const s3_offline[] = {
		s3_nothing_listening_within_deadline, fake_retries_then_succeeds,
		fake_deadline_on_endless_503, fake_status_to_errno, fake_open_errors,
		fake_wire_format, fake_put_if_absent_lost_answer,
	};
	const TTest *const cache_only[] = {
		cache_second_read_is_local, cache_write_through, cache_eviction_lru_bounded,
		cache_index_survives_reopen, cache_write_and_remove_invalidate,
		cache_concurrent_misses_fetch_once, cache_bad_download_not_kept,
		cache_bad_cached_file_refetched, cache_local_only,
	};
	Suite *s = suite_create("store");
	TCase *tc;
	SRunner *sr;
	int failed, skipped = 0;
	size_t i;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	s3_endpoint = getenv("CKPTFS_TEST_S3_ENDPOINT");
	s3_access = getenv("CKPTFS_TEST_S3_ACCESS_KEY");
	s3_secret = getenv("CKPTFS_TEST_S3_SECRET_KEY");
	s3_region = getenv("CKPTFS_TEST_S3_REGION");
	if (!s3_region || !s3_region[0])
		s3_region = "us-east-1";

	suite_add_tcase(s, backend_tcase(B_LOCAL));
	tc = backend_tcase(B_CACHE);
	for (i = 0; i < ARRAY_SIZE(cache_only); i++)
		tcase_add_test(tc, cache_only[i]);
	suite_add_tcase(s, tc);

	tc = tcase_create("s3-offline");
	tcase_add_checked_fixture(tc, setup, teardown);
	for (i = 0; i < ARRAY_SIZE(s3_offline); i++)
		tcase_add_test(tc, s3_offline[i]);
	suite_add_tcase(s, tc);

	if (s3_configured()) {
		long code;

		snprintf(s3_bucket, sizeof(s3_bucket), "ckptfs-test-%ld-%ld", (long)getpid(),
			 (long)time(NULL));
		code = s3_bucket_op("PUT");
		if (code != 200) {
			fprintf(stderr, "check_store: cannot create bucket %s at %s: HTTP %ld\n",
				s3_bucket, s3_endpoint, code);
			return 1;
		}
		tc = backend_tcase(B_S3);
		for (i = 0; i < ARRAY_SIZE(s3_real); i++)
			tcase_add_test(tc, s3_real[i]);
		suite_add_tcase(s, tc);
		printf("check_store: s3 backend: %s bucket %s\n", s3_endpoint, s3_bucket);
	} else {
		skipped = (int)(N_CONTRACT + ARRAY_SIZE(s3_real));
		printf("check_store: SKIP %d s3 tests (contract against a real server): set "
		       "CKPTFS_TEST_S3_ENDPOINT, CKPTFS_TEST_S3_ACCESS_KEY, "
		       "CKPTFS_TEST_S3_SECRET_KEY (scripts/s3-start.sh prints them)\n", skipped);
		fflush(stdout);
	}

	suite_add_tcase(s, local_tmp_tcase());

	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	printf("check_store: %d run, %d failed, %d skipped (s3 %s)\n", srunner_ntests_run(sr),
	       failed, skipped, s3_configured() ? "ran" : "NOT RUN");
	srunner_free(sr);
	if (s3_bucket[0] && s3_bucket_op("DELETE") / 100 != 2)
		fprintf(stderr, "check_store: bucket %s left behind (not empty?)\n", s3_bucket);
	if (skipped && getenv("CKPTFS_TEST_REQUIRE_S3") &&
	    !strcmp(getenv("CKPTFS_TEST_REQUIRE_S3"), "1")) {
		fprintf(stderr, "check_store: CKPTFS_TEST_REQUIRE_S3=1 but s3 tests were skipped\n");
		return 1;
	}
	curl_global_cleanup();
	return failed ? 1 : 0;
}
