/*
 * check_util.c: the util module (buf, name, hash, log).
 *
 * Everything here is pure computation, so the tests are exhaustive where
 * that is cheap: every byte value through the key encoding, every split
 * point of the incremental hash.
 */
#include <check.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/name.h"
#include "util/par.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ buf */

START_TEST(test_buf_init_is_empty)
{
	struct buf b = BUF_INIT;

	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	/* Appending nothing (even from NULL) changes nothing. */
	ck_assert_int_eq(buf_append(&b, NULL, 0), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_append_str(&b, ""), 0);
	ck_assert_uint_eq(b.len, 0);
	/* Reserving nothing keeps the invariant: data NULL only when cap 0. */
	ck_assert_int_eq(buf_reserve(&b, 0), 0);
	ck_assert(b.data != NULL || b.cap == 0);
	buf_release(&b);
}
END_TEST

START_TEST(test_buf_append)
{
	struct buf b = BUF_INIT;
	uint8_t src[10000];
	size_t off = 0, step = 1;

	testutil_fill_random(src, sizeof(src), 1);
	/* Pieces of growing size force several reallocations. */
	while (off < sizeof(src)) {
		size_t n = step < sizeof(src) - off ? step : sizeof(src) - off;

		ck_assert_int_eq(buf_append(&b, src + off, n), 0);
		off += n;
		step = step * 3 + 1;
		ck_assert_uint_eq(b.len, off);
		ck_assert_uint_le(b.len, b.cap);
		ck_assert_mem_eq(b.data, src, off);
	}
	ck_assert_int_eq(buf_append_str(&b, "tail"), 0);
	ck_assert_uint_eq(b.len, sizeof(src) + 4);
	ck_assert_mem_eq(b.data + sizeof(src), "tail", 4);
	buf_release(&b);
}
END_TEST

START_TEST(test_buf_reserve_growth)
{
	struct buf b = BUF_INIT;
	uint8_t *p;
	size_t i, cap;

	ck_assert_int_eq(buf_reserve(&b, 100), 0);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_uint_ge(b.cap, 100);
	ck_assert_uint_eq(b.len, 0);
	/* Filling what was reserved never moves the memory. */
	p = b.data;
	cap = b.cap;
	for (i = 0; i < 100; i++)
		ck_assert_int_eq(buf_append(&b, &(uint8_t){ (uint8_t)i }, 1), 0);
	ck_assert_ptr_eq(b.data, p);
	ck_assert_uint_eq(b.cap, cap);
	/* A reservation already satisfied is free. */
	ck_assert_int_eq(buf_reserve(&b, cap - 100), 0);
	ck_assert_ptr_eq(b.data, p);
	/* Growth is geometric: a million one-byte appends take few reallocs. */
	{
		int moves = 0, rc = 0;

		for (i = 0; i < 1000000; i++) {
			size_t before = b.cap;

			rc |= buf_append(&b, "x", 1);
			moves += b.cap != before;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_int_le(moves, 20);
	}
	ck_assert_uint_eq(b.len, 1000100);
	for (i = 0; i < 100; i++)
		ck_assert_uint_eq(b.data[i], i);
	ck_assert_uint_eq(b.data[b.len - 1], 'x');
	/* Overflowing size_t is refused without touching the buffer. */
	p = b.data;
	ck_assert_int_eq(buf_reserve(&b, SIZE_MAX - 5), -ENOMEM);
	ck_assert_int_eq(buf_append(&b, "y", SIZE_MAX - 5), -ENOMEM);
	ck_assert_ptr_eq(b.data, p);
	ck_assert_uint_eq(b.len, 1000100);
	buf_release(&b);
}
END_TEST

START_TEST(test_buf_printf)
{
	struct buf b = BUF_INIT;
	char big[3000];

	ck_assert_int_eq(buf_printf(&b, "%s-%d", "step", 42), 0);
	ck_assert_uint_eq(b.len, 7);
	ck_assert_mem_eq(b.data, "step-42", 7);
	ck_assert_int_eq(buf_printf(&b, "/%05.1f|%x", 3.25, 255u), 0);
	ck_assert_uint_eq(b.len, 7 + 9);
	ck_assert_mem_eq(b.data, "step-42/003.2|ff", 16);
	/* Empty formats append nothing. */
	ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
	ck_assert_uint_eq(b.len, 16);
	/* Longer than any initial capacity: grows, exact content. */
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(buf_printf(&b, "<%s>", big), 0);
	ck_assert_uint_eq(b.len, sizeof(big) + 1);
	ck_assert_uint_eq(b.data[0], '<');
	ck_assert_mem_eq(b.data + 1, big, sizeof(big) - 1);
	ck_assert_uint_eq(b.data[b.len - 1], '>');
	buf_release(&b);
}
END_TEST

START_TEST(test_buf_reset_release)
{
	struct buf b = BUF_INIT;
	uint8_t *p;
	size_t cap;

	ck_assert_int_eq(buf_append(&b, "hello", 5), 0);
	p = b.data;
	cap = b.cap;
	buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_eq(b.data, p);
	ck_assert_uint_eq(b.cap, cap);
	buf_release(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	/* Released is BUF_INIT again: reusable, and releasing twice is fine. */
	ck_assert_int_eq(buf_append(&b, "again", 5), 0);
	ck_assert_mem_eq(b.data, "again", 5);
	buf_release(&b);
	buf_release(&b);
	ck_assert_ptr_null(b.data);
}
END_TEST

/* ----------------------------------------------------------------- name */

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_name_component)
{
	static const char *const bad[] = {
		"", ".", "..", "/", "a/b", "/a", "a/", "//",
	};
	static const char *const good[] = {
		"a", "step-0001", "...", ".hidden", "..x", "a b", "x.", "\xc3\xa9t\xc3\xa9",
		"50%", "model.safetensors", "-",
	};
	char *s;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_msg(name_check_component(bad[i]) == -EINVAL, "'%s'", bad[i]);
	for (i = 0; i < ARRAY_SIZE(good); i++)
		ck_assert_msg(name_check_component(good[i]) == 0, "'%s'", good[i]);
	s = repeat('a', 255);
	ck_assert_int_eq(name_check_component(s), 0);
	free(s);
	s = repeat('a', 256);
	ck_assert_int_eq(name_check_component(s), -ENAMETOOLONG);
	free(s);
	/* 255 bytes counted as bytes, not characters: 127 two-byte chars + 1. */
	s = malloc(256);
	for (i = 0; i < 254; i += 2) {
		s[i] = '\xc3';
		s[i + 1] = '\xa9';
	}
	s[254] = 'e';
	s[255] = '\0';
	ck_assert_int_eq(name_check_component(s), 0);
	free(s);
	s = repeat('\xff', 256);
	ck_assert_int_eq(name_check_component(s), -ENAMETOOLONG);
	free(s);
}
END_TEST

START_TEST(test_name_key_safe)
{
	char *s;

	ck_assert_int_eq(name_check_key_safe("step-0001_A.b"), 0);
	ck_assert_int_eq(name_check_key_safe("a b"), -EINVAL);
	ck_assert_int_eq(name_check_key_safe("50%"), -EINVAL);
	ck_assert_int_eq(name_check_key_safe("\xc3\xa9"), -EINVAL);
	ck_assert_int_eq(name_check_key_safe(""), -EINVAL);
	ck_assert_int_eq(name_check_key_safe(".."), -EINVAL);
	ck_assert_int_eq(name_check_key_safe("a/b"), -EINVAL);
	s = repeat('z', 256);
	ck_assert_int_eq(name_check_key_safe(s), -ENAMETOOLONG);
	free(s);
}
END_TEST

START_TEST(test_name_model_id)
{
	static const char *const good[] = {
		"a", "0", "-", "my-fine-tuned-qwen3-8b", "abcdefghijklmnopqrstuvwxyz0123456789",
	};
	static const char *const bad[] = {
		"", "A", "Qwen3", "a_b", "a.b", "a/b", "a b", "\xc3\xa9", ".", "..",
		"model!", "a\n",
	};
	char *s;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good); i++)
		ck_assert_msg(name_check_model_id(good[i]) == 0, "'%s'", good[i]);
	for (i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_msg(name_check_model_id(bad[i]) == -EINVAL, "'%s'", bad[i]);
	s = repeat('m', 63);
	ck_assert_int_eq(name_check_model_id(s), 0);
	free(s);
	s = repeat('m', 64);
	ck_assert_int_eq(name_check_model_id(s), -EINVAL);
	free(s);
}
END_TEST

static int key_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || c == '%';
}

/* Encode, check the alphabet, decode, compare. */
static void check_round_trip(const char *name)
{
	char *enc = name_key_encode(name), *dec;
	size_t i;

	ck_assert_ptr_nonnull(enc);
	for (i = 0; enc[i]; i++) {
		ck_assert_msg(key_char_ok(enc[i]), "byte 0x%02x in encoding", (unsigned char)enc[i]);
		if (enc[i] == '%') {
			/* Escapes are two uppercase hex digits. */
			ck_assert(strchr("0123456789ABCDEF", enc[i + 1]) && enc[i + 1]);
			ck_assert(strchr("0123456789ABCDEF", enc[i + 2]) && enc[i + 2]);
		}
	}
	ck_assert(strchr(enc, '/') == NULL);
	dec = name_key_decode(enc);
	ck_assert_ptr_nonnull(dec);
	ck_assert_str_eq(dec, name);
	free(enc);
	free(dec);
}

START_TEST(test_name_key_encode_exact)
{
	static const struct { const char *in, *out; } v[] = {
		{ "step-0001_A.b", "step-0001_A.b" },
		{ "a/b", "a%2Fb" },
		{ "%", "%25" },
		{ "50%", "50%25" },
		{ "a b", "a%20b" },
		{ "\xc3\xa9", "%C3%A9" },
		{ "\xff", "%FF" },
		{ "", "" },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(v); i++) {
		char *e = name_key_encode(v[i].in);

		ck_assert_ptr_nonnull(e);
		ck_assert_str_eq(e, v[i].out);
		free(e);
	}
}
END_TEST

START_TEST(test_name_key_round_trip)
{
	static const char *const names[] = {
		"plain", "a/b/c", "%", "%%", "%25", "50%off", ".hidden", ".", "..", "...",
		"\xe6\xa8\xa1\xe5\x9e\x8b", "caf\xc3\xa9 \xf0\x9f\x98\x80", "~user", "a+b=c&d",
		"tab\there", "new\nline", "-", "_", "\x01\x7f\x80\xfe\xff",
	};
	char all[256], rnd[301];
	uint8_t r[300];
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		check_round_trip(names[i]);
	/* Every non-NUL byte value, in one string. */
	for (i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	check_round_trip(all);
	/* Random byte strings of random lengths. */
	for (k = 0; k < 500; k++) {
		size_t n;

		testutil_fill_random(r, sizeof(r), k + 1);
		n = 1 + r[0] % 300;
		for (i = 0; i < n; i++)
			rnd[i] = r[i] ? (char)r[i] : 'Z';
		rnd[n] = '\0';
		check_round_trip(rnd);
	}
}
END_TEST

START_TEST(test_name_key_decode_lenient_hex)
{
	char *d = name_key_decode("a%2fb%2Fc");

	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d, "a/b/c");
	free(d);
	d = name_key_decode("");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d, "");
	free(d);
}
END_TEST

START_TEST(test_name_key_decode_malformed)
{
	static const char *const bad[] = {
		"%", "%G1", "%1G", "%4", "a%", "a%4", "%%", "%%41", "abc%zz", "% 1", "%-1",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		char *d = name_key_decode(bad[i]);

		ck_assert_msg(d == NULL, "'%s' decoded to '%s'", bad[i], d ? d : "");
	}
}
END_TEST

/*
 * "%00" decodes to a NUL byte: the result is a C string that silently
 * stops there ("a%00b" -> "a"), a name no encoding produces and that
 * aliases another name. Expected NULL (bad input).
 */
START_TEST(test_name_key_decode_nul)
{
	static const char *const bad[] = { "%00", "a%00b" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		char *d = name_key_decode(bad[i]);

		ck_assert_msg(d == NULL, "'%s' decoded to '%s' (%zu bytes)", bad[i],
			      d ? d : "", d ? strlen(d) : 0);
	}
}
END_TEST

/* ----------------------------------------------------------------- hash */

START_TEST(test_sha256_vectors)
{
	static const struct { const char *in, *hex; } v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	char hex[HASH_SHA256_HEX_LEN + 1];
	uint8_t bin[HASH_SHA256_LEN];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(v); i++) {
		memset(hex, 'X', sizeof(hex));
		hash_sha256_hex(v[i].in, strlen(v[i].in), hex);
		ck_assert_str_eq(hex, v[i].hex);
		ck_assert_uint_eq(strlen(hex), HASH_SHA256_HEX_LEN);
	}
	hash_sha256("abc", 3, bin);
	ck_assert_uint_eq(bin[0], 0xba);
	ck_assert_uint_eq(bin[31], 0xad);
	/* One million 'a' (FIPS 180-2 appendix B.3). */
	{
		char *m = repeat('a', 1000000);

		hash_sha256_hex(m, 1000000, hex);
		ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
		free(m);
	}
}
END_TEST

START_TEST(test_hash_hex)
{
	static const uint8_t bin[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
	char hex[2 * sizeof(bin) + 1];

	hash_hex(bin, sizeof(bin), hex);
	ck_assert_str_eq(hex, "00017f80abff");
	hash_hex(bin, 0, hex);
	ck_assert_str_eq(hex, "");
}
END_TEST

START_TEST(test_sha256_incremental)
{
	static uint8_t data[5000];
	char one[HASH_SHA256_HEX_LEN + 1], inc[HASH_SHA256_HEX_LEN + 1];
	size_t split, i;

	testutil_fill_random(data, sizeof(data), 7);
	hash_sha256_hex(data, sizeof(data), one);
	/* Two pieces at every split point around the 64-byte block edges. */
	for (split = 0; split <= 200; split++) {
		struct hash_sha256_ctx *c = hash_sha256_new();

		ck_assert_ptr_nonnull(c);
		hash_sha256_update(c, data, split);
		hash_sha256_update(c, data + split, sizeof(data) - split);
		hash_sha256_finish(c, inc);
		ck_assert_str_eq(inc, one);
	}
	/* Many small pieces of varying size, including empty ones. */
	{
		struct hash_sha256_ctx *c = hash_sha256_new();
		size_t off = 0;

		for (i = 0; off < sizeof(data); i++) {
			size_t n = i % 13;

			if (n > sizeof(data) - off)
				n = sizeof(data) - off;
			hash_sha256_update(c, data + off, n);
			off += n;
		}
		hash_sha256_finish(c, inc);
		ck_assert_str_eq(inc, one);
	}
	/* Nothing at all is the empty hash. */
	{
		struct hash_sha256_ctx *c = hash_sha256_new();

		hash_sha256_finish(c, inc);
		ck_assert_str_eq(inc, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	}
}
END_TEST

START_TEST(test_xxh3)
{
	static uint8_t data[4096];
	uint64_t h, h2;
	size_t i;

	/* Published XXH3-64 (seed 0) value of the empty input: the chunk
	 * checksums in stored frames depend on it never changing. */
	ck_assert_uint_eq(hash_xxh3("", 0), 0x2D06800538D394C2ull);
	testutil_fill_random(data, sizeof(data), 3);
	h = hash_xxh3(data, sizeof(data));
	ck_assert_uint_eq(hash_xxh3(data, sizeof(data)), h);
	/* Stable across copies (depends on bytes, not addresses). */
	{
		uint8_t *copy = malloc(sizeof(data) + 1);

		memcpy(copy + 1, data, sizeof(data));
		ck_assert_uint_eq(hash_xxh3(copy + 1, sizeof(data)), h);
		free(copy);
	}
	/* Any single bit flip changes it; so does the length. */
	for (i = 0; i < sizeof(data); i += 97) {
		data[i] ^= 0x10;
		h2 = hash_xxh3(data, sizeof(data));
		data[i] ^= 0x10;
		ck_assert_uint_ne(h2, h);
	}
	ck_assert_uint_ne(hash_xxh3(data, sizeof(data) - 1), h);
	ck_assert_uint_ne(hash_xxh3("a", 1), hash_xxh3("b", 1));
}
END_TEST

/* ------------------------------------------------------------------ log */

struct captured {
	int n;
	enum log_level lvl[8];
	char line[8][1100];
};

static void capture(enum log_level lvl, const char *line, void *arg)
{
	struct captured *c = arg;

	if (c->n < 8) {
		c->lvl[c->n] = lvl;
		snprintf(c->line[c->n], sizeof(c->line[0]), "%s", line);
	}
	c->n++;
}

START_TEST(test_log_hook_and_level)
{
	struct captured c = { 0 };
	char big[2000];

	log_set_hook(capture, &c);
	log_set_level(LOG_LVL_INFO);
	log_error("disk %s: %d", "full", 28);
	log_info("info line");
	log_debug("not shown");
	ck_assert_int_eq(c.n, 2);
	ck_assert_int_eq(c.lvl[0], LOG_LVL_ERROR);
	ck_assert_str_eq(c.line[0], "disk full: 28");
	ck_assert_int_eq(c.lvl[1], LOG_LVL_INFO);
	ck_assert_str_eq(c.line[1], "info line");
	log_set_level(LOG_LVL_WARN);
	log_info("filtered");
	log_warn("warned");
	ck_assert_int_eq(c.n, 3);
	ck_assert_str_eq(c.line[2], "warned");
	/* Over-long lines are cut, not overflowed. */
	memset(big, 'L', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_error("%s", big);
	ck_assert_int_eq(c.n, 4);
	ck_assert_uint_gt(strlen(c.line[3]), 500);
	ck_assert_uint_lt(strlen(c.line[3]), sizeof(big) - 1);
	log_set_level(LOG_LVL_DEBUG);
	log_debug("dbg %d", 1);
	ck_assert_int_eq(c.n, 5);
	ck_assert_int_eq(c.lvl[4], LOG_LVL_DEBUG);
	/* Removing the hook stops capturing. */
	log_set_hook(NULL, NULL);
	log_set_level(LOG_LVL_ERROR);
	log_info("to stderr, filtered");
	ck_assert_int_eq(c.n, 5);
}
END_TEST

START_TEST(test_name_temp_final)
{
	static const struct {
		const char *rel, *want;	/* want NULL: not a temporary name */
	} cases[] = {
		{ ".model.safetensors.a1B2c3", "model.safetensors" },	/* rsync */
		{ "sub/dir/.w.bin.XyZ019", "sub/dir/w.bin" },
		{ ".metadata.tmp", ".metadata" },	/* torch.distributed.checkpoint */
		{ "shard-0.safetensors.part", "shard-0.safetensors" },
		{ "a/b.incomplete", "a/b" },
		{ "model.safetensors", NULL },
		{ ".hidden", NULL },
		{ ".x.abc-12", NULL },	/* '-' is not rsync's */
		{ "..abcdef", NULL },	/* an empty NAME */
		{ ".tmp", NULL },
		{ "dir/.tmp", NULL },
		{ "", NULL },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = name_temp_final(cases[i].rel, out, sizeof(out));

		ck_assert_msg(got == (cases[i].want != NULL), "%s: %d", cases[i].rel, got);
		if (got)
			ck_assert_str_eq(out, cases[i].want);
	}
	/* Too small for the answer: not one. */
	ck_assert_int_eq(name_temp_final(".model.safetensors.a1B2c3", out, 10), 0);
}
END_TEST

/* ---- par_each ---- */

struct par_probe {
	unsigned char seen[1000];
	size_t fail_from;	/* steps >= this fail with -EIO (or ENOENT at 700) */
};

static int par_probe_step(size_t i, void *arg)
{
	struct par_probe *pp = arg;

	__atomic_add_fetch(&pp->seen[i], 1, __ATOMIC_RELAXED);
	if (i == 700)
		return -ENOENT;
	return i >= pp->fail_from ? -EIO : 0;
}

START_TEST(test_par_each_runs_every_step_once)
{
	static const unsigned threads[] = { 0, 1, 2, 16, 1000 };

	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
		struct par_probe pp = { .fail_from = SIZE_MAX };
		size_t at = 12345;

		/* Steps 0..699: none fails. */
		ck_assert_int_eq(par_each(700, threads[t], par_probe_step, &pp, &at), 0);
		ck_assert_uint_eq(at, 12345);
		for (size_t i = 0; i < 700; i++)
			ck_assert_int_eq(pp.seen[i], 1);
		ck_assert_int_eq(pp.seen[700], 0);
	}
	ck_assert_int_eq(par_each(0, 4, par_probe_step, NULL, NULL), 0);
}
END_TEST

START_TEST(test_par_each_reports_the_lowest_failure)
{
	struct par_probe pp = { .fail_from = 900 };
	size_t at = 0;

	/* 700 fails (ENOENT), so do 900..999 (EIO): the lowest index wins,
	 * whichever thread met its failure first. */
	ck_assert_int_eq(par_each(1000, 8, par_probe_step, &pp, &at), -ENOENT);
	ck_assert_uint_eq(at, 700);
	/* On one thread, nothing after the failure runs. */
	memset(&pp, 0, sizeof(pp));
	pp.fail_from = 5;
	ck_assert_int_eq(par_each(1000, 1, par_probe_step, &pp, &at), -EIO);
	ck_assert_uint_eq(at, 5);
	ck_assert_int_eq(pp.seen[6], 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("util");
	SRunner *sr;
	TCase *tc;
	int failed;

	tc = tcase_create("buf");
	tcase_add_test(tc, test_buf_init_is_empty);
	tcase_add_test(tc, test_buf_append);
	tcase_add_test(tc, test_buf_reserve_growth);
	tcase_add_test(tc, test_buf_printf);
	tcase_add_test(tc, test_buf_reset_release);
	suite_add_tcase(s, tc);

	tc = tcase_create("name");
	tcase_add_test(tc, test_name_component);
	tcase_add_test(tc, test_name_key_safe);
	tcase_add_test(tc, test_name_model_id);
	tcase_add_test(tc, test_name_key_encode_exact);
	tcase_add_test(tc, test_name_key_round_trip);
	tcase_add_test(tc, test_name_key_decode_lenient_hex);
	tcase_add_test(tc, test_name_key_decode_malformed);
	tcase_add_test(tc, test_name_key_decode_nul);
	tcase_add_test(tc, test_name_temp_final);
	suite_add_tcase(s, tc);

	tc = tcase_create("hash");
	tcase_add_test(tc, test_sha256_vectors);
	tcase_add_test(tc, test_hash_hex);
	tcase_add_test(tc, test_sha256_incremental);
	tcase_add_test(tc, test_xxh3);
	suite_add_tcase(s, tc);

	tc = tcase_create("par");
	tcase_add_test(tc, test_par_each_runs_every_step_once);
	tcase_add_test(tc, test_par_each_reports_the_lowest_failure);
	suite_add_tcase(s, tc);

	tc = tcase_create("log");
	tcase_add_test(tc, test_log_hook_and_level);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
