/*
 * check_catalog.c: checkpoint records, attributes and file entries (JSON
 * format and parse), the key layout, and the catalog's store operations
 * against a local store in a temporary directory.
 */
#include <check.h>

#include <cjson/cJSON.h>

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "catalog/gc.h"
#include "store/store.h"
#include "testutil.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/name.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- log capture: tests that provoke an error check its line ---- */


/* ---- fixture: a local store in a fresh directory ---- */

static char *workdir;
static struct store *st;

static void remove_workdir(void)
{
	testutil_rmtree(workdir);
	free(workdir);
	workdir = NULL;
}

static void setup(void)
{
	testutil_log_start();
	workdir = testutil_workdir();
	ck_assert_int_eq(store_local_open(workdir, 1, &st), 0);
}

static void teardown(void)
{
	store_free(st);
	st = NULL;
	remove_workdir();
	testutil_log_stop();
}

static void unit_setup(void)
{
	testutil_log_start();
}

static void unit_teardown(void)
{
	testutil_log_stop();
}

/* ---- helpers ---- */

static void fake_key(char out[CHUNK_KEY_LEN + 1], unsigned seed)
{
	char s[32];

	snprintf(s, sizeof(s), "chunk-%u", seed);
	hash_sha256_hex(s, strlen(s), out);
}

/* A file entry with consistent chunk count and distinct keys. */
static struct entry *make_file(const char *path, uint64_t size, uint32_t chunk_size)
{
	struct entry *e = calloc(1, sizeof(*e));
	size_t i;

	ck_assert_ptr_nonnull(e);
	e->path = strdup(path);
	e->mode = 0644;
	e->mtime_ns = 1700000000123456789ll;
	e->size = size;
	e->chunk_size = chunk_size;
	e->n_chunks = (size_t)((size + chunk_size - 1) / chunk_size);
	e->chunks = e->n_chunks ? calloc(e->n_chunks, sizeof(*e->chunks)) : NULL;
	for (i = 0; i < e->n_chunks; i++) {
		fake_key(e->chunks[i].key, (unsigned)i);
		e->chunks[i].stored_len = (uint32_t)(1000 + i);
	}
	return e;
}

static void assert_entries_equal(const struct entry *a, const struct entry *b)
{
	size_t i;

	ck_assert_str_eq(a->path, b->path);
	ck_assert_int_eq(a->is_dir, b->is_dir);
	ck_assert_uint_eq(a->mode, b->mode);
	ck_assert_int_eq(a->mtime_ns, b->mtime_ns);
	if (a->is_dir)
		return;
	ck_assert_uint_eq(a->size, b->size);
	ck_assert_uint_eq(a->chunk_size, b->chunk_size);
	ck_assert_uint_eq(a->n_chunks, b->n_chunks);
	for (i = 0; i < a->n_chunks; i++) {
		ck_assert_str_eq(a->chunks[i].key, b->chunks[i].key);
		ck_assert_str_eq(a->chunks[i].base_key, b->chunks[i].base_key);
		ck_assert_uint_eq(a->chunks[i].stored_len, b->chunks[i].stored_len);
	}
}

/* Format @e, parse it back, compare; returns the JSON (caller frees). */
static char *entry_round_trip(const struct entry *e)
{
	struct buf b = BUF_INIT;
	struct entry back;
	char *json;

	ck_assert_int_eq(entry_format(e, &b), 0);
	ck_assert_uint_gt(b.len, 0);
	ck_assert_uint_eq(b.data[b.len - 1], '\n');
	ck_assert_int_eq(entry_parse((const char *)b.data, b.len, &back), 0);
	assert_entries_equal(e, &back);
	entry_release(&back);
	json = strndup((const char *)b.data, b.len);
	buf_release(&b);
	return json;
}

/* ---------------------------------------------------------- names */

START_TEST(test_dir_kind_names)
{
	static const char *const kinds[] = { "base", "delta", "lora", "state" };
	enum ckpt_kind k;
	size_t i;

	ck_assert_str_eq(ckpt_dir_name(CKPT_SAMPLER), "sampler");
	ck_assert_str_eq(ckpt_dir_name(CKPT_STATE), "state");
	for (i = 0; i < ARRAY_SIZE(kinds); i++) {
		ck_assert_int_eq(ckpt_kind_parse(kinds[i], &k), 0);
		ck_assert_int_eq(k, (int)i);
		ck_assert_str_eq(ckpt_kind_name(k), kinds[i]);
	}
	ck_assert_int_eq(ckpt_kind_parse("BASE", &k), -EINVAL);
	ck_assert_int_eq(ckpt_kind_parse("", &k), -EINVAL);
	ck_assert_int_eq(ckpt_kind_parse("full", &k), -EINVAL);
	ck_assert_int_eq(ckpt_kind_parse("base ", &k), -EINVAL);
}
END_TEST

/* ---------------------------------------------------------- records */

static void record_round_trip(const char *job, enum ckpt_dir dir, const char *name,
			      enum ckpt_kind kind, const char *base, double created)
{
	struct ckpt_record r = { 0 }, back;
	struct buf b = BUF_INIT;

	r.job = (char *)job;
	r.dir = dir;
	r.name = (char *)name;
	r.kind = kind;
	r.base = (char *)base;
	r.created = created;
	snprintf(r.session, sizeof(r.session), "%s", "a1b2c3d4");
	ck_assert_int_eq(ckpt_record_format(&r, &b), 0);
	ck_assert_uint_eq(b.data[b.len - 1], '\n');
	ck_assert_int_eq(ckpt_record_parse((const char *)b.data, b.len, &back), 0);
	ck_assert_str_eq(back.job, job);
	ck_assert_int_eq(back.dir, dir);
	ck_assert_str_eq(back.name, name);
	ck_assert_int_eq(back.kind, kind);
	if (base)
		ck_assert_str_eq(back.base, base);
	else
		ck_assert_ptr_null(back.base);
	ck_assert_double_eq_tol(back.created, created, 1e-3);
	ck_assert_str_eq(back.session, "a1b2c3d4");
	ckpt_record_release(&back);
	ck_assert_ptr_null(back.job);
	ck_assert_ptr_null(back.name);
	buf_release(&b);
}

START_TEST(test_record_round_trip)
{
	record_round_trip("rl-7", CKPT_SAMPLER, "step-0001", KIND_BASE, NULL, 1700000000.25);
	record_round_trip("rl-7", CKPT_SAMPLER, "step-0002", KIND_DELTA, "step-0001",
			  1700000123.5);
	record_round_trip("rl-7", CKPT_SAMPLER, "adapter", KIND_LORA, NULL, 1.0);
	record_round_trip("job \"quoted\"", CKPT_STATE, "caf\xc3\xa9/x%", KIND_STATE, NULL, 0);
}
END_TEST

START_TEST(test_record_parse_rejects)
{
	static const char *const bad[] = {
		"", "{", "[]", "null", "42", "\"str\"", "{}",
		/* each required field missing in turn */
		"{\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":1}",
		/* wrong types and values */
		"{\"job\":1,\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":\"1\",\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"full\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"Base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"weights\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":null,\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"}",
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"123456789\"}",
		/* truncated JSON */
		"{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\",\"created\":1,\"session\":\"0\"",
	};
	struct ckpt_record r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		memset(&r, 0x5a, sizeof(r));
		ck_assert_msg(ckpt_record_parse(bad[i], strlen(bad[i]), &r) == -EBADMSG,
			      "accepted: %s", bad[i]);
		ck_assert_ptr_null(r.job);
		ck_assert_ptr_null(r.name);
		ck_assert_ptr_null(r.base);
	}
}
END_TEST

START_TEST(test_record_parse_respects_len)
{
	static const char good[] =
		"{\"job\":\"j\",\"dir\":\"state\",\"name\":\"n\",\"kind\":\"state\","
		"\"base\":null,\"created\":12.5,\"session\":\"deadbeef\"}";
	struct ckpt_record r;

	ck_assert_int_eq(ckpt_record_parse(good, strlen(good), &r), 0);
	ck_assert_int_eq(r.dir, CKPT_STATE);
	ck_assert_int_eq(r.kind, KIND_STATE);
	ck_assert_ptr_null(r.base);
	ck_assert_str_eq(r.session, "deadbeef");
	ckpt_record_release(&r);
	/* The same bytes cut short are not a record. */
	ck_assert_int_eq(ckpt_record_parse(good, strlen(good) - 1, &r), -EBADMSG);
}
END_TEST

START_TEST(test_attrs_round_trip)
{
	static const int64_t ttls[] = { 0, 1, 3600, (int64_t)1 << 40 };
	static const char *const bad[] = {
		"", "nope", "{}", "[]", "{\"ttl\":-1}", "{\"ttl\":\"5\"}", "{\"ttl\":null}",
	};
	struct ckpt_attrs a, back;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ttls); i++) {
		struct buf b = BUF_INIT;

		a.ttl = ttls[i];
		ck_assert_int_eq(ckpt_attrs_format(&a, &b), 0);
		memset(&back, 0x5a, sizeof(back));
		ck_assert_int_eq(ckpt_attrs_parse((const char *)b.data, b.len, &back), 0);
		ck_assert_int_eq(back.ttl, ttls[i]);
		buf_release(&b);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_msg(ckpt_attrs_parse(bad[i], strlen(bad[i]), &back) == -EBADMSG,
			      "accepted: %s", bad[i]);
}
END_TEST

/* ---------------------------------------------------------- entries */

START_TEST(test_entry_round_trip_files)
{
	static const struct { uint64_t size; uint32_t cs; } cases[] = {
		{ 0, 4096 },			/* empty: no chunks */
		{ 1, 4096 },			/* one short chunk */
		{ 4096, 4096 },			/* exactly one chunk */
		{ 4097, 4096 },			/* one byte into the second */
		{ 65536 * 37 + 17, 65536 },	/* many chunks, odd tail */
		{ 64u << 20, 64u << 20 },	/* the largest chunk size */
		{ (uint64_t)5 << 32, 64u << 20 },	/* beyond 4 GiB */
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct entry *e = make_file("dir/sub/model-00001-of-00002.safetensors",
					    cases[i].size, cases[i].cs);

		free(entry_round_trip(e));
		entry_free(e);
	}
}
END_TEST

START_TEST(test_entry_round_trip_delta_chunks)
{
	struct entry *e = make_file("model.safetensors", 3 * 4096, 4096);
	char *json;

	/* chunk 0: a full frame; chunk 1: an XOR frame needing its base;
	 * chunk 2: all zero, only the base key. */
	fake_key(e->chunks[1].base_key, 100);
	e->chunks[2].key[0] = '\0';
	fake_key(e->chunks[2].base_key, 101);
	e->chunks[2].stored_len = 0;
	json = entry_round_trip(e);
	ck_assert_ptr_nonnull(strstr(json, "\"k\":null"));
	ck_assert_uint_eq(entry_stored_bytes(e), 1000 + 1001);
	free(json);
	entry_free(e);
}
END_TEST

/* commit_s: an optional figure, kept to the microsecond, outside "sum";
 * a negative or non-number value is a corrupt entry. */
START_TEST(test_entry_commit_s)
{
	struct entry *e = make_file("model.safetensors", 4096, 4096), back;
	struct buf b = BUF_INIT;
	char *json, *p;

	e->commit_s = 0.25;
	json = entry_round_trip(e);
	ck_assert_ptr_nonnull(strstr(json, "\"commit_s\":0.25"));
	ck_assert_int_eq(entry_parse(json, strlen(json), &back), 0);
	ck_assert(back.commit_s == 0.25);
	entry_release(&back);
	p = strstr(json, "0.25");
	memcpy(p, "-1.0", 4);
	ck_assert_int_eq(entry_parse(json, strlen(json), &back), -EBADMSG);
	memcpy(p, "\"x\"0", 4);
	ck_assert_int_eq(entry_parse(json, strlen(json), &back), -EBADMSG);
	free(json);
	/* Unknown (0): not written at all. */
	e->commit_s = 0;
	ck_assert_int_eq(entry_format(e, &b), 0);
	ck_assert_ptr_null(memmem(b.data, b.len, "commit_s", 8));
	buf_release(&b);
	entry_free(e);
}
END_TEST

START_TEST(test_entry_round_trip_dir)
{
	struct entry d = { .path = (char *)"a/b/c", .is_dir = 1, .mode = 0750,
			   .mtime_ns = 1234567890123456789ll };
	struct entry back;
	struct buf b = BUF_INIT;

	free(entry_round_trip(&d));
	ck_assert_int_eq(entry_format(&d, &b), 0);
	ck_assert_int_eq(entry_parse((const char *)b.data, b.len, &back), 0);
	ck_assert(back.is_dir);
	ck_assert_uint_eq(back.n_chunks, 0);
	ck_assert_ptr_null(back.chunks);
	ck_assert_uint_eq(entry_stored_bytes(&back), 0);
	entry_release(&back);
	buf_release(&b);
	/* Mode keeps permission bits only. */
	{
		static const char j[] = "{\"path\":\"x\",\"type\":\"dir\",\"mode\":16877,\"mtime_ns\":0}";

		ck_assert_int_eq(entry_parse(j, strlen(j), &back), 0);
		ck_assert_uint_eq(back.mode, 0755);
		entry_release(&back);
	}
}
END_TEST

START_TEST(test_entry_mtime_precision)
{
	/* Nanosecond times beyond 2^53 must survive exactly (not via double). */
	struct entry *e = make_file("f", 10, 4096);
	char *json;

	e->mtime_ns = 1700000000123456789ll;
	json = entry_round_trip(e);
	ck_assert_ptr_nonnull(strstr(json, "1700000000123456789"));
	free(json);
	e->mtime_ns = 1700000000123456788ll;
	free(entry_round_trip(e));
	entry_free(e);
}
END_TEST

/* Sizes above 2^53 are written as decimal strings. A full round trip of
 * such an entry needs >= 2^27 chunk refs, so format and parse are checked
 * separately. */
START_TEST(test_entry_huge_size)
{
	struct entry e = { .path = (char *)"huge", .mode = 0644, .chunk_size = 64u << 20 };
	struct entry back;
	struct buf b = BUF_INIT;
	char *j = NULL;

	e.size = ((uint64_t)1 << 53) + 1;
	ck_assert_int_eq(entry_format(&e, &b), 0);
	buf_append(&b, "", 1);
	ck_assert_ptr_nonnull(strstr((char *)b.data, "\"size\":\"9007199254740993\""));
	buf_release(&b);

	/* The parser reads string sizes exactly. */
	ck_assert_int_gt(asprintf(&j, "{\"path\":\"s\",\"type\":\"file\",\"mode\":420,"
				  "\"mtime_ns\":\"5\",\"size\":\"5000\",\"chunk_size\":4096,"
				  "\"chunks\":[{\"k\":\"%064d\",\"n\":1},{\"k\":\"%064d\",\"n\":2}]}",
				  1, 2), 0);
	ck_assert_int_eq(entry_parse(j, strlen(j), &back), 0);
	ck_assert_uint_eq(back.size, 5000);
	ck_assert_int_eq(back.mtime_ns, 5);
	ck_assert_uint_eq(back.n_chunks, 2);
	entry_release(&back);
	free(j);
	/* A number above 2^53 is ambiguous and refused. */
	{
		static const char n[] = "{\"path\":\"s\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,"
					"\"size\":1e17,\"chunk_size\":4096,\"chunks\":[]}";

		ck_assert_int_eq(entry_parse(n, strlen(n), &back), -EBADMSG);
	}
	/* A huge string size with a chunk list that does not cover it. */
	{
		static const char n[] = "{\"path\":\"s\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,"
					"\"size\":\"9007199254740993\",\"chunk_size\":67108864,\"chunks\":[]}";

		ck_assert_int_eq(entry_parse(n, strlen(n), &back), -EBADMSG);
	}
}
END_TEST

/*
 * Sizes up to 2^53 are written as JSON numbers through cJSON, whose
 * printer uses 15 significant digits whenever the result compares equal
 * within a relative DBL_EPSILON: 2^53 comes out as 9.00719925474099e+15
 * (= 9007199254740990). Every size must be written exactly.
 */
START_TEST(test_entry_size_exact_below_2_53)
{
	static const uint64_t sizes[] = {
		(uint64_t)1 << 53, 5000000000000001ull, ((uint64_t)1 << 52) + 1,
		999999999999999ull,
	};
	struct buf b = BUF_INIT;
	char msg[512] = "";
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct entry e = { .path = (char *)"f", .mode = 0644, .chunk_size = 64u << 20,
				   .size = sizes[i] };
		char num[64], str[64];

		buf_reset(&b);
		ck_assert_int_eq(entry_format(&e, &b), 0);
		buf_append(&b, "", 1);
		snprintf(num, sizeof(num), "\"size\":%" PRIu64 ",", sizes[i]);
		snprintf(str, sizeof(str), "\"size\":\"%" PRIu64 "\"", sizes[i]);
		if (!strstr((char *)b.data, num) && !strstr((char *)b.data, str)) {
			const char *at = strstr((char *)b.data, "\"size\"");

			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
				 " %" PRIu64 " written as %.30s;", sizes[i], at ? at : "?");
		}
	}
	buf_release(&b);
	ck_assert_msg(msg[0] == '\0', "inexact sizes:%s", msg);
}
END_TEST

/*
 * size near 2^64: (size + chunk_size - 1) wraps in entry_parse, so the
 * expected chunk count comes out 0 and an entry claiming 16 EiB with no
 * chunks is accepted; strtoull also takes "-1" as 2^64-1.
 */
START_TEST(test_entry_parse_size_overflow)
{
	static const char *const sizes[] = {
		"\"18446744073709551615\"", "\"18446744073709551000\"", "\"-1\"",
	};
	struct entry back;
	char msg[512] = "";
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		char *j = NULL;
		int rc;

		ck_assert_int_gt(asprintf(&j, "{\"path\":\"s\",\"type\":\"file\",\"mode\":420,"
					  "\"mtime_ns\":0,\"size\":%s,\"chunk_size\":4096,"
					  "\"chunks\":[]}", sizes[i]), 0);
		rc = entry_parse(j, strlen(j), &back);
		if (rc != -EBADMSG)
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
				 " %s -> rc %d size %" PRIu64 " n_chunks %zu;", sizes[i], rc,
				 rc == 0 ? back.size : 0, rc == 0 ? back.n_chunks : 0);
		if (rc == 0)
			entry_release(&back);
		free(j);
	}
	ck_assert_msg(msg[0] == '\0', "accepted with 0 chunks:%s", msg);
}
END_TEST

static void expect_reject_json(const char *j)
{
	struct entry back;

	memset(&back, 0x5a, sizeof(back));
	ck_assert_msg(entry_parse(j, strlen(j), &back) == -EBADMSG, "accepted: %s", j);
	ck_assert_ptr_null(back.path);
	ck_assert_ptr_null(back.chunks);
}

/* Fill a template's two holes and expect the result to be refused. */
#define expect_entry_reject(fmt, a, b) do {				\
		char *j_ = NULL;					\
									\
		ck_assert_int_gt(asprintf(&j_, fmt, a, b), 0);		\
		expect_reject_json(j_);					\
		free(j_);						\
	} while (0)

/* size 5000 at chunk size 4096 needs exactly two chunks. */
#define FILE_FMT "{\"path\":\"%s\",\"type\":\"file\",\"mode\":420," \
		 "\"mtime_ns\":0,\"size\":5000,\"chunk_size\":4096,\"chunks\":%s}"
#define CS_FMT "{\"path\":\"f\",\"type\":\"file\",\"mode\":420," \
	       "\"mtime_ns\":0,\"size\":1,\"chunk_size\":%s,\"chunks\":[%s]}"

START_TEST(test_entry_parse_rejects)
{
	char k1[CHUNK_KEY_LEN + 1], k2[CHUNK_KEY_LEN + 1], good[400], c[600];
	struct entry back;
	char *j = NULL;

	fake_key(k1, 1);
	fake_key(k2, 2);
	snprintf(good, sizeof(good), "[{\"k\":\"%s\",\"n\":10},{\"k\":\"%s\",\"b\":\"%s\",\"n\":3}]",
		 k1, k2, k1);
	/* The template itself parses. */
	ck_assert_int_gt(asprintf(&j, FILE_FMT, "a/b", good), 0);
	ck_assert_int_eq(entry_parse(j, strlen(j), &back), 0);
	ck_assert_str_eq(back.chunks[1].base_key, k1);
	entry_release(&back);
	free(j);

	/* Chunk count not matching size / chunk_size. */
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10}]", k1);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\",\"n\":1}]",
		 k1, k1, k1);
	expect_entry_reject(FILE_FMT, "f", c);
	expect_entry_reject(FILE_FMT, "f", "[]");
	expect_entry_reject(FILE_FMT, "f", "{}");
	expect_entry_reject(FILE_FMT, "f", "null");
	/* Bad hex keys: uppercase, short, long, non-hex, wrong type. */
	{
		char up[CHUNK_KEY_LEN + 1];
		size_t i;

		snprintf(up, sizeof(up), "%s", k1);
		for (i = 0; up[i]; i++)
			if (up[i] >= 'a' && up[i] <= 'f')
				up[i] = (char)(up[i] - 'a' + 'A');
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\",\"n\":1}]", k1, up);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%.63s\",\"n\":1}]", k1, k2);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s0\",\"n\":1}]", k1, k2);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%.63sg\",\"n\":1}]", k1, k2);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"\",\"n\":1}]", k1);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":12,\"b\":\"%.63sx\",\"n\":1}]",
			 k1, k2);
		expect_entry_reject(FILE_FMT, "f", c);
		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\",\"b\":\"%.60s\",\"n\":1}]",
			 k1, k2, k1);
		expect_entry_reject(FILE_FMT, "f", c);
	}
	/* A chunk with neither k nor b, or k null without b. */
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"n\":1}]", k1);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":null,\"n\":0}]", k1);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},42]", k1);
	expect_entry_reject(FILE_FMT, "f", c);
	/* Missing or negative stored length. */
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\"}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":1},{\"k\":\"%s\",\"n\":-1}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	/* Paths: absolute, empty. */
	expect_entry_reject(FILE_FMT, "/abs", good);
	expect_entry_reject(FILE_FMT, "", good);
	/* chunk_size out of range. */
	snprintf(c, sizeof(c), "{\"k\":\"%s\",\"n\":1}", k1);
	expect_entry_reject(CS_FMT, "4095", c);
	expect_entry_reject(CS_FMT, "0", c);
	expect_entry_reject(CS_FMT, "-4096", c);
	expect_entry_reject(CS_FMT, "67108865", c);
	expect_entry_reject(CS_FMT, "\"4096\"", c);
	/* (4096 and 64 MiB are the inclusive bounds) */
	{
		struct entry ok;

		ck_assert_int_gt(asprintf(&j, CS_FMT, "67108864", c), 0);
		ck_assert_int_eq(entry_parse(j, strlen(j), &ok), 0);
		entry_release(&ok);
		free(j);
		ck_assert_int_gt(asprintf(&j, CS_FMT, "4096", c), 0);
		ck_assert_int_eq(entry_parse(j, strlen(j), &ok), 0);
		entry_release(&ok);
		free(j);
	}
	/* Other fields missing or wrong. */
	{
		static const char *const whole[] = {
			"", "{", "[]", "{}", "null",
			"{\"type\":\"dir\",\"mode\":493,\"mtime_ns\":0}",
			"{\"path\":\"d\",\"mode\":493,\"mtime_ns\":0}",
			"{\"path\":\"d\",\"type\":\"symlink\",\"mode\":493,\"mtime_ns\":0}",
			"{\"path\":\"d\",\"type\":\"dir\",\"mtime_ns\":0}",
			"{\"path\":\"d\",\"type\":\"dir\",\"mode\":493}",
			"{\"path\":\"/d\",\"type\":\"dir\",\"mode\":493,\"mtime_ns\":0}",
			"{\"path\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,\"chunk_size\":4096,\"chunks\":[]}",
			"{\"path\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,\"size\":0,\"chunks\":[]}",
			"{\"path\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,\"size\":0,\"chunk_size\":4096}",
			"{\"path\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,\"size\":-1,\"chunk_size\":4096,\"chunks\":[]}",
			"{\"path\":\"f\",\"type\":\"file\",\"mode\":420,\"mtime_ns\":0,\"size\":\"12x\",\"chunk_size\":4096,\"chunks\":[]}",
		};
		size_t i;

		for (i = 0; i < ARRAY_SIZE(whole); i++) {
			memset(&back, 0x5a, sizeof(back));
			ck_assert_msg(entry_parse(whole[i], strlen(whole[i]), &back) == -EBADMSG,
				      "accepted: %s", whole[i]);
			ck_assert_ptr_null(back.path);
		}
	}
}
END_TEST

/*
 * Issue 9 item 11: a number in store JSON is range-checked before it is
 * cast. Each of these used to reach a float-to-integer cast (undefined
 * behaviour clang's -fsanitize=float-cast-overflow reports) or be accepted
 * as a wrapped value; each must now be refused as corrupt.
 */
#define REC_FMT "{\"job\":\"j\",\"dir\":\"sampler\",\"name\":\"n\",\"kind\":\"base\"," \
		"\"base\":null,\"created\":%s,\"session\":\"0\"}"
#define NUM_FILE_FMT "{\"path\":\"f\",\"type\":\"file\",\"mode\":%s,\"mtime_ns\":%s," \
		     "\"size\":%s,\"chunk_size\":%s,\"chunks\":[{\"k\":\"%s\",\"n\":%s}]}"
START_TEST(test_store_json_numbers_range_checked)
{
	static const char *const huge[] = {
		"1e300", "-1e300", "1e400", "-1e400", "4294967296", "18446744073709551616",
		"9223372036854775808", "-1", "1.5",
	};
	static const char *const ok[] = { "420", "0", "4000", "4096", "10" };
	char k[CHUNK_KEY_LEN + 1];
	size_t i, f;

	fake_key(k, 1);
	/* The template parses with sane values. */
	{
		char *j = NULL;
		struct entry e;

		ck_assert_int_gt(asprintf(&j, NUM_FILE_FMT, ok[0], ok[1], ok[2], ok[3], k, ok[4]), 0);
		ck_assert_int_eq(entry_parse(j, strlen(j), &e), 0);
		entry_release(&e);
		free(j);
	}
	for (i = 0; i < ARRAY_SIZE(huge); i++) {
		struct ckpt_record r;
		struct ckpt_attrs a;
		char *j = NULL;

		/* mode, mtime_ns, size, chunk_size, n in turn */
		for (f = 0; f < 5; f++) {
			const char *v[5] = { ok[0], ok[1], ok[2], ok[3], ok[4] };

			v[f] = huge[i];
			if ((f == 1 || f == 2) && !strcmp(huge[i], "4294967296"))
				continue;	/* a valid mtime or size */
			ck_assert_int_gt(asprintf(&j, NUM_FILE_FMT, v[0], v[1], v[2], v[3], k,
						  v[4]), 0);
			expect_reject_json(j);
			free(j);
		}
		/* ttl: every value but the in-range integer 4294967296 */
		ck_assert_int_gt(asprintf(&j, "{\"ttl\":%s}", huge[i]), 0);
		if (strcmp(huge[i], "4294967296"))
			ck_assert_msg(ckpt_attrs_parse(j, strlen(j), &a) == -EBADMSG,
				      "ttl accepted: %s", j);
		free(j);
		/* created is a real number; only the out-of-range ones fail */
		if (strchr(huge[i], 'e')) {
			ck_assert_int_gt(asprintf(&j, REC_FMT, huge[i]), 0);
			ck_assert_msg(ckpt_record_parse(j, strlen(j), &r) == -EBADMSG,
				      "created accepted: %s", j);
			free(j);
		}
	}
}
END_TEST

/* Swap items 0 and 1 (copies: cJSON_InsertItemInArray drops items here). */
static void swap_items(cJSON *arr)
{
	cJSON *a = cJSON_Duplicate(cJSON_GetArrayItem(arr, 0), 1);
	cJSON *b = cJSON_Duplicate(cJSON_GetArrayItem(arr, 1), 1);

	ck_assert(a && b);
	cJSON_ReplaceItemInArray(arr, 0, b);
	cJSON_ReplaceItemInArray(arr, 1, a);
}

/* Issue 9 item 5: version 2 entries carry a checksum over their chunk
 * list, so swapped, retyped or dropped refs are corrupt, not wrong bytes. */
START_TEST(test_entry_sum_binds_chunk_refs)
{
	struct entry *e = make_file("m.safetensors", 3 * 4096, 4096);
	struct buf b = BUF_INIT;
	struct entry back;
	cJSON *o, *arr, *c1;
	char *txt;

	fake_key(e->chunks[1].base_key, 50);
	ck_assert_int_eq(entry_format(e, &b), 0);
	o = cJSON_ParseWithLength((const char *)b.data, b.len);
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(cJSON_GetObjectItem(o, "version")->valueint, 2);
	ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "sum")));
	ck_assert_int_eq(entry_parse((const char *)b.data, b.len, &back), 0);
	entry_release(&back);

	/* Swap two refs (and back). */
	arr = cJSON_GetObjectItem(o, "chunks");
	swap_items(arr);
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	swap_items(arr);
	txt = cJSON_PrintUnformatted(o);
	ck_assert_int_eq(entry_parse(txt, strlen(txt), &back), 0);	/* restored */
	entry_release(&back);
	free(txt);
	/* A ref turned into an all-zero delta, a stored length changed, the
	 * path or size changed, the sum dropped or a newer version. */
	c1 = cJSON_GetArrayItem(arr, 1);
	cJSON_ReplaceItemInObject(c1, "k", cJSON_CreateNull());
	cJSON_ReplaceItemInObject(c1, "n", cJSON_CreateNumber(0));
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	cJSON_Delete(o);
	o = cJSON_ParseWithLength((const char *)b.data, b.len);
	cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "chunks"), 2), "n",
				  cJSON_CreateNumber(7));
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	cJSON_Delete(o);
	o = cJSON_ParseWithLength((const char *)b.data, b.len);
	cJSON_ReplaceItemInObject(o, "path", cJSON_CreateString("other.safetensors"));
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	cJSON_DeleteItemFromObject(o, "sum");
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	/* Without "version" and "sum" it is a version 1 entry: still read. */
	cJSON_DeleteItemFromObject(o, "version");
	txt = cJSON_PrintUnformatted(o);
	ck_assert_int_eq(entry_parse(txt, strlen(txt), &back), 0);
	ck_assert_str_eq(back.path, "other.safetensors");
	entry_release(&back);
	free(txt);
	cJSON_AddNumberToObject(o, "version", 3);
	txt = cJSON_PrintUnformatted(o);
	expect_reject_json(txt);
	free(txt);
	cJSON_Delete(o);
	buf_release(&b);
	entry_free(e);
}
END_TEST

/* A chunk item with "b" and no "k" used to read as an all-zero delta (a
 * copy of the base chunk); "k" must be present, null only with n == 0. */
START_TEST(test_entry_item_needs_k)
{
	char k1[CHUNK_KEY_LEN + 1], k2[CHUNK_KEY_LEN + 1], c[600];

	fake_key(k1, 1);
	fake_key(k2, 2);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10},{\"b\":\"%s\",\"n\":3}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10},{\"b\":\"%s\",\"n\":0}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10},{\"k\":null,\"b\":\"%s\",\"n\":3}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10},{\"k\":\"%s\",\"b\":7,\"n\":3}]", k1, k2);
	expect_entry_reject(FILE_FMT, "f", c);
	{
		struct entry e;
		char *j = NULL;

		snprintf(c, sizeof(c), "[{\"k\":\"%s\",\"n\":10},{\"k\":null,\"b\":\"%s\",\"n\":0}]",
			 k1, k2);
		ck_assert_int_gt(asprintf(&j, FILE_FMT, "f", c), 0);
		ck_assert_int_eq(entry_parse(j, strlen(j), &e), 0);
		ck_assert_str_eq(e.chunks[1].key, "");
		ck_assert_str_eq(e.chunks[1].base_key, k2);
		entry_release(&e);
		free(j);
	}
}
END_TEST

START_TEST(test_entry_path_and_key)
{
	static const char *const bad[] = { "a//b", "a/", "./a", "a/../b", "..", "a/./b" };
	char k1[CHUNK_KEY_LEN + 1], k2[CHUNK_KEY_LEN + 1], good[400];
	struct entry *e = make_file("sub/w.bin", 10, 4096);
	char *key = catalog_entry_key("j", CKPT_SAMPLER, "c", "sub/w.bin");
	char *other = catalog_entry_key("j", CKPT_SAMPLER, "c", "sub/x.bin");
	size_t i;

	fake_key(k1, 1);
	fake_key(k2, 2);
	snprintf(good, sizeof(good), "[{\"k\":\"%s\",\"n\":10},{\"k\":\"%s\",\"n\":3}]", k1, k2);
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		expect_entry_reject(FILE_FMT, bad[i], good);
	ck_assert_int_eq(entry_check_key(e, key), 0);
	ck_assert_int_eq(entry_check_key(e, other), -EBADMSG);
	ck_assert_int_eq(entry_check_key(e, "entries/x.json"), -EBADMSG);
	free(key);
	free(other);
	entry_free(e);
}
END_TEST

START_TEST(test_entry_copy)
{
	struct entry *e = make_file("x/y", 10000, 4096), c;

	ck_assert_int_eq(entry_copy(e, &c), 0);
	ck_assert_ptr_ne(c.path, e->path);
	ck_assert_ptr_ne(c.chunks, e->chunks);
	assert_entries_equal(e, &c);
	ck_assert_uint_eq(entry_stored_bytes(&c), 1000 + 1001 + 1002);
	entry_free(e);		/* the copy is independent */
	ck_assert_str_eq(c.path, "x/y");
	ck_assert_uint_eq(c.chunks[2].stored_len, 1002);
	entry_release(&c);
	ck_assert_ptr_null(c.path);
	entry_free(NULL);
}
END_TEST

/* ---------------------------------------------------------- keys */

START_TEST(test_keys_layout)
{
	char *p = catalog_ckpt_prefix("rl-7", CKPT_SAMPLER, "step-1");
	char *r = catalog_record_key("rl-7", CKPT_SAMPLER, "step-1");
	char *a = catalog_attrs_key("rl-7", CKPT_STATE, "step-1");
	char chunk[128], hex[HASH_SHA256_HEX_LEN + 1];

	ck_assert_str_eq(p, "jobs/rl-7/sampler/step-1/");
	ck_assert_str_eq(r, "jobs/rl-7/sampler/step-1/checkpoint.json");
	ck_assert_str_eq(a, "jobs/rl-7/state/step-1/attrs.json");
	ck_assert_int_eq(store_key_check(r), 0);
	ck_assert_int_eq(store_key_check(a), 0);
	hash_sha256_hex("x", 1, hex);
	catalog_chunk_key(hex, chunk, sizeof(chunk));
	ck_assert_uint_eq(strlen(chunk), 7 + 3 + 64);
	ck_assert_int_eq(strncmp(chunk, "chunks/", 7), 0);
	ck_assert_int_eq(strncmp(chunk + 7, hex, 2), 0);
	ck_assert_uint_eq(chunk[9], '/');
	ck_assert_str_eq(chunk + 10, hex);
	ck_assert_int_eq(store_key_check(chunk), 0);
	free(p);
	free(r);
	free(a);
}
END_TEST

START_TEST(test_keys_entry_fixed_length)
{
	static const char *const paths[] = {
		"a", "model.safetensors", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/model.safetensors",
		".hidden", "with space/caf\xc3\xa9", "50%/x",
	};
	char *prefix = catalog_ckpt_prefix("job", CKPT_SAMPLER, "ck");
	char *keys[ARRAY_SIZE(paths) + 1], *deep;
	size_t i, k, len = 0;

	/* A path of ~4000 bytes and ~1000 levels. */
	deep = malloc(4001);
	for (i = 0; i < 4000; i += 4)
		memcpy(deep + i, "abc/", 4);
	deep[3999] = 'z';
	deep[4000] = '\0';
	for (i = 0; i <= ARRAY_SIZE(paths); i++) {
		const char *path = i < ARRAY_SIZE(paths) ? paths[i] : deep;

		keys[i] = catalog_entry_key("job", CKPT_SAMPLER, "ck", path);
		ck_assert_ptr_nonnull(keys[i]);
		ck_assert_msg(store_key_check(keys[i]) == 0, "%s", keys[i]);
		ck_assert_int_eq(strncmp(keys[i], prefix, strlen(prefix)), 0);
		ck_assert_int_eq(strncmp(keys[i] + strlen(prefix), "entries/", 8), 0);
		/* entries/<32 hex>.json, one segment whatever the depth */
		ck_assert_uint_eq(strlen(keys[i]), strlen(prefix) + 8 + 32 + 5);
		ck_assert_ptr_null(strchr(keys[i] + strlen(prefix) + 8, '/'));
		if (i == 0)
			len = strlen(keys[i]);
		ck_assert_uint_eq(strlen(keys[i]), len);
		for (k = 0; k < i; k++)
			ck_assert_str_ne(keys[i], keys[k]);
	}
	for (i = 0; i <= ARRAY_SIZE(paths); i++)
		free(keys[i]);
	free(deep);
	free(prefix);
}
END_TEST

/* Record key for (job, name) passes the key rules, keeps one segment per
 * name, and the name decodes back. */
static void check_encoded_names(const char *job, const char *name)
{
	char *r = catalog_record_key(job, CKPT_SAMPLER, name);
	char *e = catalog_entry_key(job, CKPT_SAMPLER, name, "f");
	char *ej = name_key_encode(job), *en = name_key_encode(name), *dj, *dn;
	char want[1024];
	size_t slashes = 0;
	const char *q;

	ck_assert_ptr_nonnull(r);
	ck_assert_msg(store_key_check(r) == 0, "job '%s' name '%s': key '%s' refused", job,
		      name, r);
	ck_assert_msg(store_key_check(e) == 0, "key '%s' refused", e);
	for (q = r; *q; q++)
		slashes += *q == '/';
	ck_assert_uint_eq(slashes, 4);
	snprintf(want, sizeof(want), "jobs/%s/sampler/%s/checkpoint.json", ej, en);
	ck_assert_str_eq(r, want);
	dj = name_key_decode(ej);
	dn = name_key_decode(en);
	ck_assert_str_eq(dj, job);
	ck_assert_str_eq(dn, name);
	free(dj);
	free(dn);
	free(ej);
	free(en);
	free(r);
	free(e);
}

START_TEST(test_keys_encoded_names)
{
	check_encoded_names("my job", "a/b");
	check_encoded_names("50%", "100%/x%2F");
	check_encoded_names("caf\xc3\xa9", "\xe6\xa8\xa1\xe5\x9e\x8b-1");
	check_encoded_names("j", "a.b.");
	check_encoded_names("j", "x/../y");
}
END_TEST

/*
 * A leading '.' is key-safe for name_key_encode() but store keys forbid a
 * segment starting with '.', so names like ".hidden" (valid components)
 * give keys every store refuses.
 */
START_TEST(test_keys_leading_dot)
{
	check_encoded_names("j", ".hidden");
	check_encoded_names(".job", "step-1");
	check_encoded_names("j", "...");
	check_encoded_names("j", "../x");
}
END_TEST

/* ---------------------------------------------------------- store ops */

static struct ckpt_record rec(const char *job, enum ckpt_dir dir, const char *name,
			      enum ckpt_kind kind, const char *base)
{
	struct ckpt_record r = { 0 };

	r.job = (char *)job;
	r.dir = dir;
	r.name = (char *)name;
	r.kind = kind;
	r.base = (char *)base;
	r.created = 1700000000.5;
	snprintf(r.session, sizeof(r.session), "0000abcd");
	return r;
}

static int count_cb(const char *key, const struct store_stat *sst, void *arg)
{
	(void)key;
	(void)sst;
	(*(int *)arg)++;
	return 0;
}

static int count_keys(const char *prefix)
{
	int n = 0;

	ck_assert_int_eq(store_list(st, prefix, count_cb, &n), 0);
	return n;
}

START_TEST(test_init_store)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(catalog_init_store(st), 0);
	ck_assert_int_eq(store_get(st, "format.json", &b), 0);
	buf_append(&b, "", 1);
	ck_assert_ptr_nonnull(strstr((char *)b.data, "\"ckptfs\""));
	buf_release(&b);
	/* Second time finds the marker and accepts it. */
	ck_assert_int_eq(catalog_init_store(st), 0);
	ck_assert_int_eq(testutil_log_errors(), 0);
}
END_TEST

START_TEST(test_init_store_bad_marker)
{
	static const char other[] = "{\"format\":\"other\",\"version\":1}";
	static const char newer[] = "{\"format\":\"ckptfs\",\"version\":2}";

	ck_assert_int_eq(store_put(st, "format.json", other, strlen(other)), 0);
	ck_assert_int_eq(catalog_init_store(st), -EBADMSG);
	ck_assert(testutil_log_has("not a ckptfs marker"));
	ck_assert_int_eq(store_put(st, "format.json", "garbage", 7), 0);
	ck_assert_int_eq(catalog_init_store(st), -EBADMSG);
	ck_assert_int_eq(store_put(st, "format.json", newer, strlen(newer)), 0);
	ck_assert_int_eq(catalog_init_store(st), -EPROTONOSUPPORT);
	ck_assert(testutil_log_has("version 2"));
}
END_TEST

START_TEST(test_record_store)
{
	struct ckpt_record r = rec("rl-7", CKPT_SAMPLER, "step-1", KIND_BASE, NULL);
	struct ckpt_record other = rec("rl-7", CKPT_SAMPLER, "step-1", KIND_DELTA, "step-0");
	struct ckpt_record got;

	ck_assert_int_eq(catalog_init_store(st), 0);
	ck_assert_int_eq(catalog_record_get(st, "rl-7", CKPT_SAMPLER, "step-1", &got), -ENOENT);
	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	/* The second creator loses and the first record stays. */
	ck_assert_int_eq(catalog_record_create(st, &other), -EEXIST);
	ck_assert_int_eq(catalog_record_get(st, "rl-7", CKPT_SAMPLER, "step-1", &got), 0);
	ck_assert_int_eq(got.kind, KIND_BASE);
	ck_assert_ptr_null(got.base);
	ck_assert_str_eq(got.job, "rl-7");
	ck_assert_str_eq(got.name, "step-1");
	ck_assert_str_eq(got.session, "0000abcd");
	ckpt_record_release(&got);
	/* The same name in the other dir is another checkpoint. */
	ck_assert_int_eq(catalog_record_get(st, "rl-7", CKPT_STATE, "step-1", &got), -ENOENT);
	/* Replace overwrites. */
	ck_assert_int_eq(catalog_record_replace(st, &other), 0);
	ck_assert_int_eq(catalog_record_get(st, "rl-7", CKPT_SAMPLER, "step-1", &got), 0);
	ck_assert_int_eq(got.kind, KIND_DELTA);
	ck_assert_str_eq(got.base, "step-0");
	ckpt_record_release(&got);
	ck_assert_int_eq(testutil_log_errors(), 0);
}
END_TEST

START_TEST(test_record_get_malformed)
{
	struct ckpt_record got;
	char *key = catalog_record_key("j", CKPT_SAMPLER, "bad");

	ck_assert_int_eq(store_put(st, key, "{\"job\":", 7), 0);
	ck_assert_int_eq(catalog_record_get(st, "j", CKPT_SAMPLER, "bad", &got), -EBADMSG);
	ck_assert(testutil_log_has("malformed checkpoint record"));
	free(key);
}
END_TEST

/* Issue 9 item 5: a record is the record of its key, or corrupt. */
START_TEST(test_record_get_checks_key)
{
	struct ckpt_record r = rec("j", CKPT_SAMPLER, "x", KIND_BASE, NULL), got;
	struct buf b = BUF_INIT;
	char *ky = catalog_record_key("j", CKPT_SAMPLER, "y");

	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_record_get(st, "j", CKPT_SAMPLER, "x", &got), 0);
	ckpt_record_release(&got);
	/* x's record copied under y's key */
	ck_assert_int_eq(ckpt_record_format(&r, &b), 0);
	ck_assert_int_eq(store_put(st, ky, b.data, b.len), 0);
	ck_assert_int_eq(catalog_record_get(st, "j", CKPT_SAMPLER, "y", &got), -EBADMSG);
	ck_assert(testutil_log_has("not the record of its key"));
	ck_assert_ptr_null(got.name);
	/* wrong job, wrong dir, a name with '/' */
	ck_assert_int_eq(ckpt_record_check(&r, "j", CKPT_SAMPLER, "x"), 0);
	ck_assert_int_eq(ckpt_record_check(&r, "k", CKPT_SAMPLER, "x"), -EBADMSG);
	ck_assert_int_eq(ckpt_record_check(&r, "j", CKPT_STATE, "x"), -EBADMSG);
	r.name = (char *)"x/y";
	ck_assert_int_eq(ckpt_record_check(&r, "j", CKPT_SAMPLER, "x/y"), -EBADMSG);
	/* a model's record names its source job, which models/ keys lack */
	r.name = (char *)"m1";
	r.dir = CKPT_MODEL;
	ck_assert_int_eq(ckpt_record_check(&r, "", CKPT_MODEL, "m1"), 0);
	buf_release(&b);
	free(ky);
}
END_TEST

struct bad_keys {
	char keys[8][256];
	int n, problems;
};

static void bad_key_cb(const char *key, const char *why, void *arg)
{
	struct bad_keys *bk = arg;

	ck_assert_ptr_nonnull(why);
	if (bk->n < 8)
		snprintf(bk->keys[bk->n++], sizeof(bk->keys[0]), "%s", key);
}

static int bad_problem_cb(const char *where, enum ckpt_dir dir, const char *name,
			  int err, void *arg)
{
	(void)where;
	(void)dir;
	(void)name;
	ck_assert_int_eq(err, -EBADMSG);
	((struct bad_keys *)arg)->problems++;
	return 0;
}

static int bk_has(const struct bad_keys *bk, const char *key)
{
	for (int i = 0; i < bk->n; i++)
		if (!strcmp(bk->keys[i], key))
			return 1;
	return 0;
}

/* fsck's walk names every corrupt record and entry by key. */
START_TEST(test_walk_names_bad_keys)
{
	static const struct catalog_walk_ops ops = {
		.on_problem = bad_problem_cb, .on_bad_key = bad_key_cb,
	};
	struct ckpt_record a = rec("j", CKPT_SAMPLER, "a", KIND_BASE, NULL);
	struct ckpt_record b = rec("j", CKPT_SAMPLER, "b", KIND_BASE, NULL);
	struct entry *f = make_file("f", 10, 4096), *g = make_file("g", 10, 4096);
	char *brec = catalog_record_key("j", CKPT_SAMPLER, "b");
	char *gkey = catalog_entry_key("j", CKPT_SAMPLER, "a", "g");
	char *moved = catalog_entry_key("j", CKPT_SAMPLER, "a", "h");
	struct bad_keys bk = { 0 };
	struct buf buf = BUF_INIT;

	ck_assert_int_eq(catalog_record_create(st, &a), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "a", f), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "a", g), 0);
	ck_assert_int_eq(catalog_walk(st, 1, &ops, &bk), 0);
	ck_assert_int_eq(bk.n, 0);

	ck_assert_int_eq(store_put(st, brec, "{\"job\"", 6), 0);	/* truncated */
	ck_assert_int_eq(store_get(st, gkey, &buf), 0);
	ck_assert_int_eq(store_put(st, moved, buf.data, buf.len), 0);	/* misplaced */
	ck_assert_int_eq(store_remove(st, gkey), 0);
	ck_assert_int_eq(catalog_walk(st, 1, &ops, &bk), 0);
	ck_assert_int_eq(bk.n, 2);
	ck_assert(bk_has(&bk, brec));
	ck_assert(bk_has(&bk, moved));
	ck_assert_int_eq(bk.problems, 2);
	(void)b;
	buf_release(&buf);
	free(brec);
	free(gkey);
	free(moved);
	entry_free(f);
	entry_free(g);
}
END_TEST

/* format.json's version is range-checked too (it was cast to int). */
START_TEST(test_init_store_huge_version)
{
	static const char huge[] = "{\"format\":\"ckptfs\",\"version\":1e300}";

	ck_assert_int_eq(store_put(st, "format.json", huge, strlen(huge)), 0);
	ck_assert_int_eq(catalog_init_store(st), -EBADMSG);
}
END_TEST

START_TEST(test_attrs_store)
{
	struct ckpt_attrs a = { .ttl = 99 }, got;

	ck_assert_int_eq(catalog_attrs_get(st, "j", CKPT_SAMPLER, "c", &got), 0);
	ck_assert_int_eq(got.ttl, 0);
	ck_assert_int_eq(catalog_attrs_put(st, "j", CKPT_SAMPLER, "c", &a), 0);
	ck_assert_int_eq(catalog_attrs_get(st, "j", CKPT_SAMPLER, "c", &got), 0);
	ck_assert_int_eq(got.ttl, 99);
	a.ttl = 0;
	ck_assert_int_eq(catalog_attrs_put(st, "j", CKPT_SAMPLER, "c", &a), 0);
	ck_assert_int_eq(catalog_attrs_get(st, "j", CKPT_SAMPLER, "c", &got), 0);
	ck_assert_int_eq(got.ttl, 0);
}
END_TEST

#define MAX_NAMES 32

struct names {
	char *v[MAX_NAMES];
	int n;
	int stop_after;		/* 0: never */
};

static int names_cb(const char *name, void *arg)
{
	struct names *ns = arg;

	ck_assert_int_lt(ns->n, MAX_NAMES);
	ns->v[ns->n++] = strdup(name);
	return ns->stop_after && ns->n == ns->stop_after ? 7 : 0;
}

static int names_has(const struct names *ns, const char *name)
{
	int i, n = 0;

	for (i = 0; i < ns->n; i++)
		n += !strcmp(ns->v[i], name);
	return n;
}

static void names_free(struct names *ns)
{
	int i;

	for (i = 0; i < ns->n; i++)
		free(ns->v[i]);
	ns->n = 0;
}

START_TEST(test_list_jobs_and_ckpts)
{
	static const char *const jobs[] = { "alpha", "alpha-2", "beta gamma", "50%", "caf\xc3\xa9" };
	static const char *const ckpts[] = { "step-1", "step 2", "a%b", "x/y", "step-10", "\xe6\xa8\xa1" };
	struct names ns = { 0 };
	size_t i, k;

	ck_assert_int_eq(catalog_init_store(st), 0);
	ck_assert_int_eq(catalog_list_jobs(st, names_cb, &ns), 0);
	ck_assert_int_eq(ns.n, 0);
	for (i = 0; i < ARRAY_SIZE(jobs); i++) {
		for (k = 0; k < ARRAY_SIZE(ckpts); k++) {
			struct ckpt_record r = rec(jobs[i], CKPT_SAMPLER, ckpts[k], KIND_BASE, NULL);

			ck_assert_int_eq(catalog_record_create(st, &r), 0);
		}
		/* one state checkpoint each, plus attrs and an entry */
		{
			struct ckpt_record r = rec(jobs[i], CKPT_STATE, "resume", KIND_STATE, NULL);
			struct ckpt_attrs a = { .ttl = 5 };
			struct entry *e = make_file("opt.pt", 5000, 4096);

			ck_assert_int_eq(catalog_record_create(st, &r), 0);
			ck_assert_int_eq(catalog_attrs_put(st, jobs[i], CKPT_STATE, "resume", &a), 0);
			ck_assert_int_eq(catalog_entry_put(st, jobs[i], CKPT_STATE, "resume", e), 0);
			entry_free(e);
		}
	}
	/* A folder with entries but no record (being created) is not listed. */
	{
		struct entry *e = make_file("w", 1, 4096);

		ck_assert_int_eq(catalog_entry_put(st, "alpha", CKPT_SAMPLER, "orphan", e), 0);
		entry_free(e);
	}

	ck_assert_int_eq(catalog_list_jobs(st, names_cb, &ns), 0);
	ck_assert_int_eq(ns.n, (int)ARRAY_SIZE(jobs));
	for (i = 0; i < ARRAY_SIZE(jobs); i++)
		ck_assert_msg(names_has(&ns, jobs[i]) == 1, "job '%s'", jobs[i]);
	names_free(&ns);

	for (i = 0; i < ARRAY_SIZE(jobs); i++) {
		ck_assert_int_eq(catalog_list_ckpts(st, jobs[i], CKPT_SAMPLER, names_cb, &ns), 0);
		ck_assert_int_eq(ns.n, (int)ARRAY_SIZE(ckpts));
		for (k = 0; k < ARRAY_SIZE(ckpts); k++)
			ck_assert_msg(names_has(&ns, ckpts[k]) == 1, "'%s' of '%s'", ckpts[k],
				      jobs[i]);
		ck_assert_int_eq(names_has(&ns, "orphan"), 0);
		names_free(&ns);
		ck_assert_int_eq(catalog_list_ckpts(st, jobs[i], CKPT_STATE, names_cb, &ns), 0);
		ck_assert_int_eq(ns.n, 1);
		ck_assert_str_eq(ns.v[0], "resume");
		names_free(&ns);
	}
	/* A job that does not exist lists nothing; "alpha" is not "alpha-2". */
	ck_assert_int_eq(catalog_list_ckpts(st, "nobody", CKPT_SAMPLER, names_cb, &ns), 0);
	ck_assert_int_eq(ns.n, 0);
	/* A non-zero callback return stops the listing and is returned. */
	ns.stop_after = 2;
	ck_assert_int_eq(catalog_list_ckpts(st, "alpha", CKPT_SAMPLER, names_cb, &ns), 7);
	ck_assert_int_eq(ns.n, 2);
	names_free(&ns);
	ck_assert_int_eq(catalog_list_jobs(st, names_cb, &ns), 7);
	ck_assert_int_eq(ns.n, 2);
	names_free(&ns);
}
END_TEST

struct loaded {
	struct entry *e[64];
	int n;
};

static int load_cb(struct entry *e, void *arg)
{
	struct loaded *l = arg;

	ck_assert_int_lt(l->n, 64);
	l->e[l->n++] = e;
	return 0;
}

static struct entry *loaded_find(struct loaded *l, const char *path)
{
	int i;

	for (i = 0; i < l->n; i++)
		if (!strcmp(l->e[i]->path, path))
			return l->e[i];
	return NULL;
}

static void loaded_free(struct loaded *l)
{
	int i;

	for (i = 0; i < l->n; i++)
		entry_free(l->e[i]);
	l->n = 0;
}

START_TEST(test_load_entries)
{
	struct ckpt_record r = rec("j", CKPT_SAMPLER, "ck", KIND_BASE, NULL);
	struct entry *f1 = make_file("model.safetensors", 200000, 65536);
	struct entry *f2 = make_file("sub/dir/tok.json", 0, 4096);
	struct entry d = { .path = (char *)"sub", .is_dir = 1, .mode = 0755, .mtime_ns = 5 };
	struct loaded l = { 0 };
	char *bad;

	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "ck", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "ck", f1), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "ck", f2), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "ck", &d), 0);
	/* Another checkpoint's entries are not ours. */
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "ck2", f1), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_STATE, "ck", f1), 0);

	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "ck", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 3);
	assert_entries_equal(loaded_find(&l, "model.safetensors"), f1);
	assert_entries_equal(loaded_find(&l, "sub/dir/tok.json"), f2);
	assert_entries_equal(loaded_find(&l, "sub"), &d);
	loaded_free(&l);

	/* Replacing an entry: one key per path. */
	f2->size = 4096;
	f2->n_chunks = 1;
	f2->chunks = calloc(1, sizeof(*f2->chunks));
	fake_key(f2->chunks[0].key, 9);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "ck", f2), 0);
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "ck", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 3);
	assert_entries_equal(loaded_find(&l, "sub/dir/tok.json"), f2);
	loaded_free(&l);

	/* A corrupt entry: the others are delivered, then -EBADMSG. */
	bad = catalog_entry_key("j", CKPT_SAMPLER, "ck", "corrupt");
	ck_assert_int_eq(store_put(st, bad, "{\"path\":", 8), 0);
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "ck", load_cb, &l), -EBADMSG);
	ck_assert_int_eq(l.n, 3);
	ck_assert(testutil_log_has("malformed entry"));
	loaded_free(&l);
	free(bad);

	/* Remove one; removing an absent one is fine. */
	ck_assert_int_eq(catalog_entry_remove(st, "j", CKPT_SAMPLER, "ck", "corrupt"), 0);
	ck_assert_int_eq(catalog_entry_remove(st, "j", CKPT_SAMPLER, "ck", "sub"), 0);
	ck_assert_int_eq(catalog_entry_remove(st, "j", CKPT_SAMPLER, "ck", "never"), 0);
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "ck", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_ptr_null(loaded_find(&l, "sub"));
	loaded_free(&l);
	entry_free(f1);
	entry_free(f2);
}
END_TEST

START_TEST(test_ckpt_remove)
{
	struct ckpt_record r = rec("j", CKPT_SAMPLER, "gone", KIND_BASE, NULL);
	struct ckpt_record keep = rec("j", CKPT_SAMPLER, "gone-not", KIND_BASE, NULL);
	struct ckpt_attrs a = { .ttl = 10 };
	struct ckpt_record got;
	struct names ns = { 0 };
	struct loaded l = { 0 };
	char *prefix = catalog_ckpt_prefix("j", CKPT_SAMPLER, "gone");
	char path[32];
	int i;

	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_record_create(st, &keep), 0);
	ck_assert_int_eq(catalog_attrs_put(st, "j", CKPT_SAMPLER, "gone", &a), 0);
	for (i = 0; i < 40; i++) {
		struct entry *e;

		snprintf(path, sizeof(path), "d%d/f%d", i % 3, i);
		e = make_file(path, (uint64_t)i * 1000, 4096);
		ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "gone", e), 0);
		ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "gone-not", e), 0);
		entry_free(e);
	}
	ck_assert_int_eq(count_keys(prefix), 42);

	ck_assert_int_eq(catalog_ckpt_remove(st, "j", CKPT_SAMPLER, "gone"), 0);
	ck_assert_int_eq(count_keys(prefix), 0);
	ck_assert_int_eq(catalog_record_get(st, "j", CKPT_SAMPLER, "gone", &got), -ENOENT);
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "gone", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 0);
	ck_assert_int_eq(catalog_list_ckpts(st, "j", CKPT_SAMPLER, names_cb, &ns), 0);
	ck_assert_int_eq(ns.n, 1);
	ck_assert_str_eq(ns.v[0], "gone-not");
	names_free(&ns);
	/* The neighbour whose name extends ours is intact. */
	ck_assert_int_eq(catalog_load_entries(st, "j", CKPT_SAMPLER, "gone-not", load_cb, &l), 0);
	ck_assert_int_eq(l.n, 40);
	loaded_free(&l);
	ck_assert_int_eq(catalog_attrs_get(st, "j", CKPT_SAMPLER, "gone", &a), 0);
	ck_assert_int_eq(a.ttl, 0);
	/* The name can be created again; removing nothing is fine. */
	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_ckpt_remove(st, "j", CKPT_SAMPLER, "never"), 0);
	free(prefix);
}
END_TEST


/* ---- gc: the pure sweep rule and a mark over a real store ---- */

static const char *hexkey(char c)
{
	static char k[4][CHUNK_KEY_LEN + 1];
	static int n;
	char *out = k[n++ % 4];

	memset(out, c, CHUNK_KEY_LEN);
	out[CHUNK_KEY_LEN] = '\0';
	return out;
}

START_TEST(test_gc_sweep_decision)
{
	struct keyset live = { 0 };
	char key[128];

	ck_assert_int_eq(keyset_add(&live, hexkey('a')), 0);
	ck_assert_int_eq(keyset_add(&live, hexkey('a')), 0);	/* duplicates fold */
	ck_assert_int_eq(keyset_add(&live, hexkey('c')), 0);
	keyset_sort(&live);
	ck_assert_uint_eq(live.n, 2);
	/* Live chunks stay whatever their age. */
	catalog_chunk_key(hexkey('a'), key, sizeof(key));
	ck_assert_int_eq(gc_sweep_decision(&live, key, 0, 1000), 0);
	ck_assert_int_eq(gc_sweep_decision(&live, key, 5000, 1000), 0);
	/* Unreferenced: young ones are kept (a write may be in flight), the
	 * cutoff itself counts as old. */
	catalog_chunk_key(hexkey('b'), key, sizeof(key));
	ck_assert_int_eq(gc_sweep_decision(&live, key, 1001, 1000), -1);
	ck_assert_int_eq(gc_sweep_decision(&live, key, 1000, 1000), 1);
	ck_assert_int_eq(gc_sweep_decision(&live, key, 10, 1000), 1);
	keyset_release(&live);
	/* An empty set marks nothing live and sorts without trouble. */
	keyset_sort(&live);
	ck_assert_int_eq(gc_sweep_decision(&live, key, 10, 1000), 1);
}
END_TEST

START_TEST(test_gc_mark_and_run)
{
	struct ckpt_record r = { .job = (char *)"j", .dir = CKPT_SAMPLER, .name = (char *)"c",
				 .kind = KIND_DELTA, .base = (char *)"b", .created = 1000,
				 .session = "01234567" };
	struct chunk_ref refs[2] = { 0 };
	struct entry e = { .path = (char *)"f", .mode = 0644, .size = 8192, .chunk_size = 4096,
			   .chunks = refs, .n_chunks = 2 };
	struct ckpt_attrs a = { .ttl = 10 };
	struct keyset live = { 0 };
	struct gc_report rep;
	char key[128];

	memcpy(refs[0].key, hexkey('1'), CHUNK_KEY_LEN + 1);
	memcpy(refs[1].base_key, hexkey('2'), CHUNK_KEY_LEN + 1);	/* all-zero delta chunk */
	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "c", &e), 0);
	catalog_chunk_key(hexkey('1'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "x", 1), 0);
	catalog_chunk_key(hexkey('2'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "y", 1), 0);
	catalog_chunk_key(hexkey('3'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "z", 1), 0);	/* garbage */

	ck_assert_int_eq(gc_mark(st, &live), 0);
	ck_assert_uint_eq(live.n, 2);
	ck_assert(keyset_has(&live, hexkey('1')));
	ck_assert(keyset_has(&live, hexkey('2')));	/* a base chunk a delta reads */
	keyset_release(&live);

	/* Not expired yet (created 1000, ttl 10, now 1005), grace 0: only
	 * the garbage goes. */
	ck_assert_int_eq(catalog_attrs_put(st, "j", CKPT_SAMPLER, "c", &a), 0);
	ck_assert_int_eq(gc_run(st, 0, 0, 1e10, &rep) == 0 ? 0 : 1, 0);
	ck_assert_uint_eq(rep.expired, 1);	/* now = 1e10: long expired */
	ck_assert_uint_eq(rep.deleted, 3);	/* everything, once the record went */
	catalog_chunk_key(hexkey('1'), key, sizeof(key));
	{
		struct store_stat sst;

		ck_assert_int_eq(store_head(st, key, &sst), -ENOENT);
	}
}
END_TEST

START_TEST(test_gc_keeps_live_and_young)
{
	struct ckpt_record r = { .job = (char *)"j", .dir = CKPT_SAMPLER, .name = (char *)"c",
				 .kind = KIND_BASE, .created = 1000, .session = "01234567" };
	struct chunk_ref ref = { 0 };
	struct entry e = { .path = (char *)"f", .mode = 0644, .size = 100, .chunk_size = 4096,
			   .chunks = &ref, .n_chunks = 1 };
	struct gc_report rep;
	char key[128];

	memcpy(ref.key, hexkey('4'), CHUNK_KEY_LEN + 1);
	ck_assert_int_eq(catalog_record_create(st, &r), 0);
	ck_assert_int_eq(catalog_entry_put(st, "j", CKPT_SAMPLER, "c", &e), 0);
	catalog_chunk_key(hexkey('4'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "x", 1), 0);
	catalog_chunk_key(hexkey('5'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "y", 1), 0);	/* young garbage */
	ck_assert_int_eq(gc_run(st, 3600, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 0);
	ck_assert_uint_eq(rep.kept_young, 1);
	ck_assert_uint_eq(rep.live, 1);
	/* Dry run reports without deleting. */
	ck_assert_int_eq(gc_run(st, 0, 1, (double)time(NULL) + 10, &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL) + 10, &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL) + 10, &rep), 0);
	ck_assert_uint_eq(rep.deleted, 0);
}
END_TEST

/* ---- gc and promotion (issue 9 item 4) ---- */

/* Make the object @key of the local test store look @age seconds old. */
static void age_object(const char *key, time_t age)
{
	char path[PATH_MAX];
	struct timespec ts[2] = { { .tv_sec = time(NULL) - age }, { .tv_sec = time(NULL) - age } };

	snprintf(path, sizeof(path), "%s/%s", workdir, key);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

START_TEST(test_gc_marks_promotion_in_flight)
{
	struct chunk_ref ref = { 0 };
	struct entry e = { .path = (char *)"w", .mode = 0644, .size = 10, .chunk_size = 4096,
			   .chunks = &ref, .n_chunks = 1 };
	struct gc_report rep;
	char key[128], *ekey;
	struct store_stat sst;

	/* A promotion has stored a model entry but not its record yet. */
	memcpy(ref.key, hexkey('6'), CHUNK_KEY_LEN + 1);
	ck_assert_int_eq(catalog_entry_put(st, "", CKPT_MODEL, "m1", &e), 0);
	catalog_chunk_key(hexkey('6'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "x", 1), 0);
	age_object(key, 100);
	catalog_chunk_key(hexkey('7'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "y", 1), 0);	/* garbage */
	age_object(key, 100);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	catalog_chunk_key(hexkey('6'), key, sizeof(key));
	ck_assert_int_eq(store_head(st, key, &sst), 0);

	/* Entries older than any promotion takes are a crash's leftovers:
	 * they pin nothing. */
	ekey = catalog_entry_key("", CKPT_MODEL, "m1", "w");
	age_object(ekey, GC_PROMOTION_WINDOW + 100);
	free(ekey);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	ck_assert_int_eq(store_head(st, key, &sst), -ENOENT);
}
END_TEST

START_TEST(test_gc_marks_promotion_pins)
{
	static const char pin_fmt[] = "{\"chunks\":[\"%s\"]}";
	struct gc_report rep;
	char key[128], pin[128];
	struct store_stat sst;
	int n;

	/* A promotion pins the key of a chunk before storing it (the chunk
	 * may even exist from an earlier try). */
	catalog_chunk_key(hexkey('e'), key, sizeof(key));
	ck_assert_int_eq(store_put(st, key, "x", 1), 0);
	age_object(key, 100);
	n = snprintf(pin, sizeof(pin), pin_fmt, hexkey('e'));
	ck_assert_int_eq(store_put(st, "models/m2/pins/0.json", pin, (size_t)n), 0);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 0);
	ck_assert_int_eq(store_head(st, key, &sst), 0);
	/* A malformed pin could name anything: the pass deletes nothing. */
	ck_assert_int_eq(store_put(st, "models/m2/pins/1.json", "{\"chunks\":3}", 12), 0);
	ck_assert_int_ne(gc_run(st, 0, 0, (double)time(NULL), &rep), 0);
	ck_assert_int_eq(store_remove(st, "models/m2/pins/1.json"), 0);
	/* Once the pin is gone (the model published or failed), it is garbage. */
	ck_assert_int_eq(store_remove(st, "models/m2/pins/0.json"), 0);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
}
END_TEST

START_TEST(test_gc_spares_touched_chunk)
{
	struct gc_report rep;
	char old[128], touched[128];
	struct store_stat sst;

	/* Two unreferenced chunks past the grace period; one is touched (as
	 * a promotion does to the chunks it shares) and so is young again. */
	catalog_chunk_key(hexkey('8'), old, sizeof(old));
	catalog_chunk_key(hexkey('9'), touched, sizeof(touched));
	ck_assert_int_eq(store_put(st, old, "o", 1), 0);
	ck_assert_int_eq(store_put(st, touched, "t", 1), 0);
	age_object(old, 7200);
	age_object(touched, 7200);
	ck_assert_int_eq(store_touch(st, touched), 0);
	ck_assert_int_eq(gc_run(st, 3600, 0, (double)time(NULL), &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	ck_assert_uint_eq(rep.kept_young, 1);
	ck_assert_int_eq(store_head(st, old, &sst), -ENOENT);
	ck_assert_int_eq(store_head(st, touched, &sst), 0);
	ck_assert_int_eq(store_touch(st, old), -ENOENT);
}
END_TEST

START_TEST(test_gc_recheck_to_the_nanosecond)
{
	struct gc_report rep;
	char before[128], after[128], path[PATH_MAX];
	struct store_stat sst;
	time_t t = time(NULL) - 100;
	struct timespec ts[2];

	/* A pass that began at t + 0.5 s with grace 0: its cutoff second is
	 * t. A chunk last modified at t + 0.2 s is older than the pass and
	 * goes; one touched at t + 0.8 s (after the pass began, in the same
	 * second) stays. */
	catalog_chunk_key(hexkey('c'), before, sizeof(before));
	catalog_chunk_key(hexkey('d'), after, sizeof(after));
	ck_assert_int_eq(store_put(st, before, "b", 1), 0);
	ck_assert_int_eq(store_put(st, after, "a", 1), 0);
	ts[0].tv_sec = ts[1].tv_sec = t;
	ts[0].tv_nsec = ts[1].tv_nsec = 200000000;
	snprintf(path, sizeof(path), "%s/%s", workdir, before);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
	ts[0].tv_nsec = ts[1].tv_nsec = 800000000;
	snprintf(path, sizeof(path), "%s/%s", workdir, after);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
	ck_assert_int_eq(gc_run(st, 0, 0, (double)t + 0.5, &rep), 0);
	ck_assert_uint_eq(rep.deleted, 1);
	ck_assert_uint_eq(rep.kept_young, 1);
	ck_assert_int_eq(store_head(st, before, &sst), -ENOENT);
	ck_assert_int_eq(store_head(st, after, &sst), 0);
}
END_TEST

START_TEST(test_attrs_keep_dir_metadata)
{
	struct ckpt_attrs a = { .ttl = 5, .mode = 0710, .mtime_ns = 1500000000123456789LL }, b;
	struct buf out = BUF_INIT;

	ck_assert_int_eq(ckpt_attrs_format(&a, &out), 0);
	ck_assert_int_eq(ckpt_attrs_parse((const char *)out.data, out.len, &b), 0);
	ck_assert_int_eq(b.ttl, 5);
	ck_assert_uint_eq(b.mode, 0710);
	ck_assert_int_eq(b.mtime_ns, 1500000000123456789LL);
	buf_release(&out);
	/* Absent: defaults; out of range: malformed. */
	ck_assert_int_eq(ckpt_attrs_parse("{\"ttl\":0}", 10, &b), 0);
	ck_assert_uint_eq(b.mode, 0);
	ck_assert_int_eq(b.mtime_ns, 0);
	ck_assert_int_eq(ckpt_attrs_parse("{\"ttl\":0,\"mode\":99999}", 23, &b), -EBADMSG);
	ck_assert_int_eq(ckpt_attrs_parse("{\"ttl\":0,\"mtime_ns\":\"x\"}", 25, &b), -EBADMSG);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("catalog");
	SRunner *sr;
	TCase *tc;
	int failed;

	tc = tcase_create("records");
	tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
	tcase_add_test(tc, test_dir_kind_names);
	tcase_add_test(tc, test_record_round_trip);
	tcase_add_test(tc, test_record_parse_rejects);
	tcase_add_test(tc, test_record_parse_respects_len);
	tcase_add_test(tc, test_attrs_round_trip);
	suite_add_tcase(s, tc);

	tc = tcase_create("entries");
	tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
	tcase_add_test(tc, test_entry_round_trip_files);
	tcase_add_test(tc, test_entry_round_trip_delta_chunks);
	tcase_add_test(tc, test_entry_round_trip_dir);
	tcase_add_test(tc, test_entry_commit_s);
	tcase_add_test(tc, test_entry_mtime_precision);
	tcase_add_test(tc, test_entry_huge_size);
	tcase_add_test(tc, test_entry_size_exact_below_2_53);
	tcase_add_test(tc, test_entry_parse_size_overflow);
	tcase_add_test(tc, test_entry_parse_rejects);
	tcase_add_test(tc, test_entry_copy);
	tcase_add_test(tc, test_store_json_numbers_range_checked);
	tcase_add_test(tc, test_entry_sum_binds_chunk_refs);
	tcase_add_test(tc, test_entry_item_needs_k);
	tcase_add_test(tc, test_entry_path_and_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_test(tc, test_keys_layout);
	tcase_add_test(tc, test_keys_entry_fixed_length);
	tcase_add_test(tc, test_keys_encoded_names);
	tcase_add_test(tc, test_keys_leading_dot);
	suite_add_tcase(s, tc);

	tc = tcase_create("store");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_init_store);
	tcase_add_test(tc, test_init_store_bad_marker);
	tcase_add_test(tc, test_record_store);
	tcase_add_test(tc, test_record_get_malformed);
	tcase_add_test(tc, test_record_get_checks_key);
	tcase_add_test(tc, test_walk_names_bad_keys);
	tcase_add_test(tc, test_init_store_huge_version);
	tcase_add_test(tc, test_attrs_store);
	tcase_add_test(tc, test_list_jobs_and_ckpts);
	tcase_add_test(tc, test_load_entries);
	tcase_add_test(tc, test_ckpt_remove);
	tcase_add_test(tc, test_gc_mark_and_run);
	tcase_add_test(tc, test_gc_keeps_live_and_young);
	suite_add_tcase(s, tc);

	tc = tcase_create("gc-promotion");
	tcase_add_unchecked_fixture(tc, testutil_base_setup, testutil_base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_gc_marks_promotion_in_flight);
	tcase_add_test(tc, test_gc_marks_promotion_pins);
	tcase_add_test(tc, test_gc_spares_touched_chunk);
	tcase_add_test(tc, test_gc_recheck_to_the_nanosecond);
	tcase_add_test(tc, test_attrs_keep_dir_metadata);
	suite_add_tcase(s, tc);

	tc = tcase_create("gc");
	tcase_add_test(tc, test_gc_sweep_decision);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
