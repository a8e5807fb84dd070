/*
 * catalog.c: key layout and JSON records (see catalog.h and doc/FORMAT.md §3).
 */
#include "catalog/catalog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/log.h"
#include "util/name.h"

static const char *const dir_names[] = { "sampler", "state", "models" };
static const char *const kind_names[] = { "base", "delta", "lora", "state" };

const char *ckpt_dir_name(enum ckpt_dir d) { return dir_names[d]; }
const char *ckpt_kind_name(enum ckpt_kind k) { return kind_names[k]; }

int ckpt_kind_parse(const char *s, enum ckpt_kind *out)
{
	size_t i;

	for (i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (!strcmp(s, kind_names[i])) {
			*out = (enum ckpt_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- JSON helpers ---- */

static int json_to_buf(cJSON *root, struct buf *out)
{
	char *s = cJSON_PrintUnformatted(root);
	int rc;

	if (!s)
		return -ENOMEM;
	rc = buf_append_str(out, s);
	if (rc == 0)
		rc = buf_append(out, "\n", 1);
	free(s);
	return rc;
}

static const char *json_str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/*
 * A JSON number in [lo, hi]. Store JSON is untrusted input: converting a
 * double outside an integer type's range is undefined behaviour, so every
 * number is range-checked here, as a double, before any caller casts it.
 * NaN fails both comparisons and so is refused too.
 */
static int json_real(const cJSON *o, const char *k, double lo, double hi, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
		return -EBADMSG;
	*out = v->valuedouble;
	return 0;
}

#define JSON_INT_MAX 9007199254740992.0	/* 2^53: every integer below is exact */

/* A JSON integer in [lo, hi] (|lo|, |hi| <= 2^53, so the cast is exact). */
static int json_int(const cJSON *o, const char *k, double lo, double hi, int64_t *out)
{
	double d;

	if (json_real(o, k, lo, hi, &d) < 0 || d != (double)(int64_t)d)
		return -EBADMSG;
	*out = (int64_t)d;
	return 0;
}

/* Integers above 2^53 do not survive a double, so sizes are strings when
 * large; accept both forms. */
static int json_u64(const cJSON *o, const char *k, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (cJSON_IsNumber(v)) {
		if (!(v->valuedouble >= 0 && v->valuedouble <= JSON_INT_MAX) ||
		    v->valuedouble != (double)(uint64_t)v->valuedouble)
			return -EBADMSG;
		*out = (uint64_t)v->valuedouble;
		return 0;
	}
	if (cJSON_IsString(v)) {
		char *end;

		if (v->valuestring[0] < '0' || v->valuestring[0] > '9')
			return -EBADMSG;	/* strtoull would take "-1" */
		errno = 0;
		*out = strtoull(v->valuestring, &end, 10);
		if (errno || *end || end == v->valuestring)
			return -EBADMSG;
		return 0;
	}
	return -EBADMSG;
}

/* Exact integer text: cJSON prints doubles with 15 significant digits,
 * which rounds large sizes; above 2^53 a double cannot even hold them, so
 * those are strings. */
static cJSON *json_u64_new(uint64_t v)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	if (v <= 9007199254740992ull)
		return cJSON_CreateRaw(tmp);
	return cJSON_CreateString(tmp);
}

/* ---- checkpoint records ---- */

void ckpt_record_release(struct ckpt_record *r)
{
	free(r->job);
	free(r->name);
	free(r->base);
	free(r->promoted_from);
	free(r->source_snapshot);
	memset(r, 0, sizeof(*r));
}

int ckpt_record_copy(const struct ckpt_record *src, struct ckpt_record *dst)
{
	*dst = *src;
	dst->job = strdup(src->job);
	dst->name = strdup(src->name);
	dst->base = src->base ? strdup(src->base) : NULL;
	dst->promoted_from = src->promoted_from ? strdup(src->promoted_from) : NULL;
	dst->source_snapshot = src->source_snapshot ? strdup(src->source_snapshot) : NULL;
	if (!dst->job || !dst->name || (src->base && !dst->base) ||
	    (src->promoted_from && !dst->promoted_from) ||
	    (src->source_snapshot && !dst->source_snapshot)) {
		ckpt_record_release(dst);
		return -ENOMEM;
	}
	return 0;
}

int ckpt_record_format(const struct ckpt_record *r, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	int rc;

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "version", CATALOG_FORMAT_VERSION);
	cJSON_AddStringToObject(o, "job", r->job);
	cJSON_AddStringToObject(o, "dir", ckpt_dir_name(r->dir));
	cJSON_AddStringToObject(o, "name", r->name);
	cJSON_AddStringToObject(o, "kind", ckpt_kind_name(r->kind));
	if (r->base)
		cJSON_AddStringToObject(o, "base", r->base);
	else
		cJSON_AddNullToObject(o, "base");
	cJSON_AddNumberToObject(o, "created", r->created);
	cJSON_AddStringToObject(o, "session", r->session);
	if (r->promoted_from)
		cJSON_AddStringToObject(o, "promoted_from", r->promoted_from);
	if (r->source_snapshot)
		cJSON_AddStringToObject(o, "source_snapshot", r->source_snapshot);
	rc = json_to_buf(o, out);
	cJSON_Delete(o);
	return rc;
}

int ckpt_record_parse(const char *json, size_t len, struct ckpt_record *out)
{
	cJSON *o = cJSON_ParseWithLength(json, len);
	const char *job, *dir, *name, *kind, *base, *session;
	int rc = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(o))
		goto out;
	job = json_str(o, "job");
	dir = json_str(o, "dir");
	name = json_str(o, "name");
	kind = json_str(o, "kind");
	base = json_str(o, "base");
	session = json_str(o, "session");
	if (!job || !dir || !name || !kind || !session || strlen(session) > 8)
		goto out;
	if (!strcmp(dir, "sampler"))
		out->dir = CKPT_SAMPLER;
	else if (!strcmp(dir, "state"))
		out->dir = CKPT_STATE;
	else if (!strcmp(dir, "models"))
		out->dir = CKPT_MODEL;
	else
		goto out;
	if (ckpt_kind_parse(kind, &out->kind) < 0)
		goto out;
	/* Bounded so that every later cast (time_t, ttl sums) is defined. */
	if (json_real(o, "created", -JSON_INT_MAX, JSON_INT_MAX, &out->created) < 0)
		goto out;
	snprintf(out->session, sizeof(out->session), "%s", session);
	out->job = strdup(job);
	out->name = strdup(name);
	out->base = base ? strdup(base) : NULL;
	if (json_str(o, "promoted_from"))
		out->promoted_from = strdup(json_str(o, "promoted_from"));
	if (json_str(o, "source_snapshot"))
		out->source_snapshot = strdup(json_str(o, "source_snapshot"));
	if (!out->job || !out->name || (base && !out->base)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		ckpt_record_release(out);
	cJSON_Delete(o);
	return rc;
}

int ckpt_attrs_format(const struct ckpt_attrs *a, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	int rc;

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "ttl", (double)a->ttl);
	/* Only when set, so stores written before these existed read the same. */
	if (a->mode & 07777)
		cJSON_AddNumberToObject(o, "mode", (double)(a->mode & 07777));
	if (a->mtime_ns > 0) {
		char ns[32];

		snprintf(ns, sizeof(ns), "%" PRId64, a->mtime_ns);
		cJSON_AddStringToObject(o, "mtime_ns", ns);
	}
	rc = json_to_buf(o, out);
	cJSON_Delete(o);
	return rc;
}

/* The optional directory "mode" (0..07777) and "mtime_ns" (a decimal string). */
static int attrs_dir_meta(const cJSON *o, struct ckpt_attrs *out)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mode");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "mtime_ns");

	if (m) {
		if (!cJSON_IsNumber(m) || !(m->valuedouble >= 0 && m->valuedouble <= 07777))
			return -EBADMSG;
		out->mode = (uint32_t)m->valuedouble;
	}
	if (t) {
		char *end;
		long long v;

		if (!cJSON_IsString(t))
			return -EBADMSG;
		errno = 0;
		v = strtoll(t->valuestring, &end, 10);
		if (errno || end == t->valuestring || *end || v < 0)
			return -EBADMSG;
		out->mtime_ns = (int64_t)v;
	}
	return 0;
}

int ckpt_attrs_parse(const char *json, size_t len, struct ckpt_attrs *out)
{
	cJSON *o = cJSON_ParseWithLength(json, len);
	int64_t ttl = 0;
	int rc = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (cJSON_IsObject(o) && json_int(o, "ttl", 0, JSON_INT_MAX, &ttl) == 0) {
		out->ttl = ttl;
		rc = 0;
	}
	if (rc == 0 && attrs_dir_meta(o, out) < 0) {
		memset(out, 0, sizeof(*out));
		rc = -EBADMSG;
	}
	cJSON_Delete(o);
	return rc;
}

/* ---- entries ---- */

void entry_release(struct entry *e)
{
	free(e->path);
	free(e->chunks);
	memset(e, 0, sizeof(*e));
}

void entry_free(struct entry *e)
{
	if (e) {
		entry_release(e);
		free(e);
	}
}

int entry_copy(const struct entry *src, struct entry *dst)
{
	*dst = *src;
	dst->path = strdup(src->path);
	dst->chunks = NULL;
	if (src->n_chunks) {
		dst->chunks = malloc(src->n_chunks * sizeof(*dst->chunks));
		if (dst->chunks)
			memcpy(dst->chunks, src->chunks, src->n_chunks * sizeof(*dst->chunks));
	}
	if (!dst->path || (src->n_chunks && !dst->chunks)) {
		entry_release(dst);
		return -ENOMEM;
	}
	return 0;
}

uint64_t entry_stored_bytes(const struct entry *e)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < e->n_chunks; i++)
		n += e->chunks[i].stored_len;
	return n;
}

static int is_hex_key(const char *s)
{
	size_t i;

	for (i = 0; i < CHUNK_KEY_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[CHUNK_KEY_LEN] == '\0';
}

/*
 * The self-checksum of an entry (version 2, doc/FORMAT.md §1.2): SHA-256
 * over every field that decides what a read returns, chunk refs in order,
 * so a swapped, dropped or retyped ref no longer parses. Fields are
 * NUL-separated; only the path is free text and it cannot hold a NUL.
 */
static void entry_sum(const struct entry *e, char hex[HASH_SHA256_HEX_LEN + 1])
{
	struct hash_sha256_ctx *h = hash_sha256_new();
	char num[128];
	size_t i;
	int n;

	if (!h) {
		hex[0] = '\0';	/* matches no stored sum: refused, never trusted */
		return;
	}
	hash_sha256_update(h, "ckptfs-entry-2", 15);
	hash_sha256_update(h, e->path, strlen(e->path) + 1);
	n = snprintf(num, sizeof(num), "%s%c%" PRIu32 "%c%" PRId64 "%c", e->is_dir ? "dir" : "file",
		     0, e->mode & 07777, 0, e->mtime_ns, 0);
	hash_sha256_update(h, num, (size_t)n);
	if (!e->is_dir) {
		n = snprintf(num, sizeof(num), "%" PRIu64 "%c%" PRIu32 "%c", e->size, 0,
			     e->chunk_size, 0);
		hash_sha256_update(h, num, (size_t)n);
		for (i = 0; i < e->n_chunks; i++) {
			const struct chunk_ref *c = &e->chunks[i];

			hash_sha256_update(h, c->key, strlen(c->key) + 1);
			hash_sha256_update(h, c->base_key, strlen(c->base_key) + 1);
			n = snprintf(num, sizeof(num), "%" PRIu32 "%c", c->stored_len, 0);
			hash_sha256_update(h, num, (size_t)n);
		}
	}
	hash_sha256_finish(h, hex);
}

int entry_format(const struct entry *e, struct buf *out)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	char sum[HASH_SHA256_HEX_LEN + 1];
	size_t i;
	int rc;

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "version", ENTRY_VERSION);
	cJSON_AddStringToObject(o, "path", e->path);
	cJSON_AddStringToObject(o, "type", e->is_dir ? "dir" : "file");
	cJSON_AddNumberToObject(o, "mode", e->mode & 07777);
	cJSON_AddItemToObject(o, "mtime_ns", json_u64_new((uint64_t)e->mtime_ns));
	if (!e->is_dir) {
		cJSON_AddItemToObject(o, "size", json_u64_new(e->size));
		cJSON_AddNumberToObject(o, "chunk_size", e->chunk_size);
		arr = cJSON_AddArrayToObject(o, "chunks");
		for (i = 0; arr && i < e->n_chunks; i++) {
			const struct chunk_ref *c = &e->chunks[i];
			cJSON *ch = cJSON_CreateObject();

			if (!ch)
				break;
			if (c->key[0])
				cJSON_AddStringToObject(ch, "k", c->key);
			else
				cJSON_AddNullToObject(ch, "k");
			if (c->base_key[0])
				cJSON_AddStringToObject(ch, "b", c->base_key);
			cJSON_AddNumberToObject(ch, "n", c->stored_len);
			cJSON_AddItemToArray(arr, ch);
		}
	}
	if (!e->is_dir && e->commit_s > 0)
		cJSON_AddNumberToObject(o, "commit_s", round(e->commit_s * 1e6) / 1e6);
	entry_sum(e, sum);
	cJSON_AddStringToObject(o, "sum", sum);
	rc = json_to_buf(o, out);
	cJSON_Delete(o);
	return rc;
}

/* A relative path: '/'-separated components that are valid names. */
static int path_ok(const char *path)
{
	const char *p = path, *slash;
	char comp[256];

	if (!path[0] || strlen(path) >= 4096)
		return 0;
	for (;;) {
		size_t n;

		slash = strchr(p, '/');
		n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || n >= sizeof(comp))
			return 0;
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (name_check_component(comp) < 0)
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

static int parse_chunk(const cJSON *ch, struct chunk_ref *c)
{
	const cJSON *kv = cJSON_GetObjectItemCaseSensitive(ch, "k");
	const char *b = json_str(ch, "b");
	int64_t n;

	if (!cJSON_IsObject(ch))
		return -EBADMSG;
	/* "k" must be present: a string, or null for an all-zero delta chunk.
	 * A missing "k" used to read as null, so a dropped key silently turned
	 * a delta chunk into a copy of its base. */
	if (cJSON_IsString(kv)) {
		if (!is_hex_key(kv->valuestring))
			return -EBADMSG;
		memcpy(c->key, kv->valuestring, CHUNK_KEY_LEN + 1);
	} else if (!cJSON_IsNull(kv)) {
		return -EBADMSG;
	}
	if (b) {
		if (!is_hex_key(b))
			return -EBADMSG;
		memcpy(c->base_key, b, CHUNK_KEY_LEN + 1);
	} else if (cJSON_GetObjectItemCaseSensitive(ch, "b")) {
		return -EBADMSG;	/* present but not a string */
	}
	if (json_int(ch, "n", 0, UINT32_MAX, &n) < 0)
		return -EBADMSG;
	c->stored_len = (uint32_t)n;
	/* An all-zero delta chunk still needs its base, and stores nothing. */
	if (!c->key[0] && (!c->base_key[0] || c->stored_len != 0))
		return -EBADMSG;
	return 0;
}

int entry_parse(const char *json, size_t len, struct entry *out)
{
	cJSON *o = cJSON_ParseWithLength(json, len), *arr, *ch;
	const char *path, *type, *sum = NULL;
	int64_t mode, csize, version = 1;
	uint64_t mtime, expect;
	size_t i;
	int rc = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(o))
		goto out;
	/* Version 1 entries have no "sum" (and may have no "version"). */
	if (cJSON_GetObjectItemCaseSensitive(o, "version") &&
	    (json_int(o, "version", 1, ENTRY_VERSION, &version) < 0))
		goto out;
	if (version >= 2 && !(sum = json_str(o, "sum")))
		goto out;
	path = json_str(o, "path");
	type = json_str(o, "type");
	if (!path || !type || !path_ok(path))
		goto out;
	if (json_int(o, "mode", 0, 0xffff, &mode) < 0 || json_u64(o, "mtime_ns", &mtime) < 0 ||
	    mtime > INT64_MAX)
		goto out;
	out->is_dir = !strcmp(type, "dir");
	if (!out->is_dir && strcmp(type, "file"))
		goto out;
	out->mode = (uint32_t)mode & 07777;
	out->mtime_ns = (int64_t)mtime;
	out->path = strdup(path);
	if (!out->path) {
		rc = -ENOMEM;
		goto out;
	}
	if (out->is_dir)
		goto check_sum;
	if (json_u64(o, "size", &out->size) < 0 ||
	    json_int(o, "chunk_size", 4096, 64 << 20, &csize) < 0)
		goto out;
	/* Bound the size so the chunk count below cannot wrap (2^60 bytes
	 * is an exabyte; no checkpoint file comes near it). */
	if (out->size > (1ull << 60))
		goto out;
	out->chunk_size = (uint32_t)csize;
	if (cJSON_GetObjectItemCaseSensitive(o, "commit_s") &&
	    json_real(o, "commit_s", 0, 1e9, &out->commit_s) < 0)
		goto out;
	arr = cJSON_GetObjectItemCaseSensitive(o, "chunks");
	if (!cJSON_IsArray(arr))
		goto out;
	expect = (out->size + out->chunk_size - 1) / out->chunk_size;
	if ((uint64_t)cJSON_GetArraySize(arr) != expect)
		goto out;
	out->n_chunks = (size_t)expect;
	out->chunks = calloc(expect ? expect : 1, sizeof(*out->chunks));
	if (!out->chunks) {
		rc = -ENOMEM;
		goto out;
	}
	i = 0;
	cJSON_ArrayForEach(ch, arr) {
		if (parse_chunk(ch, &out->chunks[i++]) < 0)
			goto out;
	}
check_sum:
	if (sum) {
		char want[HASH_SHA256_HEX_LEN + 1];

		entry_sum(out, want);
		if (strcmp(want, sum))
			goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		entry_release(out);
	cJSON_Delete(o);
	return rc;
}

int entry_check_key(const struct entry *e, const char *key)
{
	char hex[HASH_SHA256_HEX_LEN + 1], leaf[64];
	size_t kl = strlen(key), ll;

	hash_sha256_hex(e->path, strlen(e->path), hex);
	ll = (size_t)snprintf(leaf, sizeof(leaf), "/entries/%.32s.json", hex);
	return kl > ll && !strcmp(key + kl - ll, leaf) ? 0 : -EBADMSG;
}

int ckpt_record_check(const struct ckpt_record *r, const char *job, enum ckpt_dir dir,
		      const char *name)
{
	if (r->dir != dir || strcmp(r->name, name) || name_check_component(r->name) < 0)
		return -EBADMSG;
	/* A model's record names its source job; models/ keys have none. */
	if (dir != CKPT_MODEL && strcmp(r->job, job))
		return -EBADMSG;
	return 0;
}

/* ---- keys ---- */

char *catalog_dir_prefix(const char *job, enum ckpt_dir dir)
{
	char *ej, *out = NULL;

	if (dir == CKPT_MODEL)
		return strdup("models/");
	ej = name_key_encode(job);
	if (ej && asprintf(&out, "jobs/%s/%s/", ej, ckpt_dir_name(dir)) < 0)
		out = NULL;
	free(ej);
	return out;
}

char *catalog_ckpt_prefix(const char *job, enum ckpt_dir dir, const char *name)
{
	char *dp = catalog_dir_prefix(job, dir), *en = name_key_encode(name), *out = NULL;

	if (dp && en && asprintf(&out, "%s%s/", dp, en) < 0)
		out = NULL;
	free(dp);
	free(en);
	return out;
}

static char *ckpt_key(const char *job, enum ckpt_dir dir, const char *name,
		      const char *leaf)
{
	char *p = catalog_ckpt_prefix(job, dir, name), *out = NULL;

	if (p && asprintf(&out, "%s%s", p, leaf) < 0)
		out = NULL;
	free(p);
	return out;
}

char *catalog_record_key(const char *job, enum ckpt_dir dir, const char *name)
{
	return ckpt_key(job, dir, name, "checkpoint.json");
}

char *catalog_attrs_key(const char *job, enum ckpt_dir dir, const char *name)
{
	return ckpt_key(job, dir, name, "attrs.json");
}

char *catalog_entry_key(const char *job, enum ckpt_dir dir, const char *name,
			const char *relpath)
{
	char hex[HASH_SHA256_HEX_LEN + 1], leaf[64];

	hash_sha256_hex(relpath, strlen(relpath), hex);
	snprintf(leaf, sizeof(leaf), "entries/%.32s.json", hex);
	return ckpt_key(job, dir, name, leaf);
}

void catalog_chunk_key(const char *hex, char *out, size_t outlen)
{
	snprintf(out, outlen, "chunks/%.2s/%s", hex, hex);
}

/* ---- store operations ---- */

int catalog_init_store(struct store *st)
{
	struct buf b = BUF_INIT;
	char marker[64];
	int rc, n;

	n = snprintf(marker, sizeof(marker),
		     "{\"format\":\"ckptfs\",\"version\":%d}\n", CATALOG_FORMAT_VERSION);
	rc = store_put_if_absent(st, "format.json", marker, (size_t)n);
	if (rc != -EEXIST && rc != -EROFS && rc != -EACCES && rc != -EPERM)
		return rc;
	/* An existing store may be read-only to us (a read-only volume of an
	 * inference host): what matters is that its marker is ours. */
	{
		int put_rc = rc;

		rc = store_get(st, "format.json", &b);
		if (rc == -ENOENT && put_rc != -EEXIST)
			rc = put_rc;	/* nothing there, and we cannot create it */
	}
	if (rc == 0) {
		cJSON *o = cJSON_ParseWithLength((const char *)b.data, b.len);
		const char *f = o ? json_str(o, "format") : NULL;
		int64_t v = 0;

		if (!f || strcmp(f, "ckptfs") ||
		    json_int(o, "version", 0, 1 << 30, &v) < 0) {
			log_error("store: format.json is not a ckptfs marker");
			rc = -EBADMSG;
		} else if (v != CATALOG_FORMAT_VERSION) {
			log_error("store: format version %" PRId64 ", this build reads %d",
				  v, CATALOG_FORMAT_VERSION);
			rc = -EPROTONOSUPPORT;
		}
		cJSON_Delete(o);
	}
	buf_release(&b);
	return rc;
}

static int put_record(struct store *st, const struct ckpt_record *r, int exclusive)
{
	struct buf b = BUF_INIT;
	char *key = catalog_record_key(r->job, r->dir, r->name);
	int rc = key ? ckpt_record_format(r, &b) : -ENOMEM;

	if (rc == 0)
		rc = exclusive ? store_put_if_absent(st, key, b.data, b.len)
			       : store_put(st, key, b.data, b.len);
	free(key);
	buf_release(&b);
	return rc;
}

int catalog_record_create(struct store *st, const struct ckpt_record *r)
{
	return put_record(st, r, 1);
}

int catalog_record_replace(struct store *st, const struct ckpt_record *r)
{
	return put_record(st, r, 0);
}

/* catalog_record_get(), telling a walk which key was bad and why. */
static int record_get(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, struct ckpt_record *out,
		      void (*bad)(const char *key, const char *why, void *arg), void *arg)
{
	struct buf b = BUF_INIT;
	char *key = catalog_record_key(job, dir, name);
	const char *why = NULL;
	int rc = key ? store_get(st, key, &b) : -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (rc == 0) {
		rc = ckpt_record_parse((const char *)b.data, b.len, out);
		if (rc < 0) {
			why = "malformed checkpoint record";
		} else if (ckpt_record_check(out, job, dir, name) < 0) {
			why = "malformed checkpoint record (not the record of its key)";
			ckpt_record_release(out);
			rc = -EBADMSG;
		}
	}
	if (why) {
		log_error("catalog: %s: %s", key, why);
		if (bad)
			bad(key, why, arg);
	}
	free(key);
	buf_release(&b);
	return rc;
}

int catalog_record_get(struct store *st, const char *job, enum ckpt_dir dir,
		       const char *name, struct ckpt_record *out)
{
	return record_get(st, job, dir, name, out, NULL, NULL);
}

int catalog_attrs_get(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, struct ckpt_attrs *out)
{
	struct buf b = BUF_INIT;
	char *key = catalog_attrs_key(job, dir, name);
	int rc = key ? store_get(st, key, &b) : -ENOMEM;

	memset(out, 0, sizeof(*out));
	if (rc == -ENOENT)
		rc = 0;
	else if (rc == 0)
		rc = ckpt_attrs_parse((const char *)b.data, b.len, out);
	free(key);
	buf_release(&b);
	return rc;
}

int catalog_attrs_put(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, const struct ckpt_attrs *a)
{
	struct buf b = BUF_INIT;
	char *key = catalog_attrs_key(job, dir, name);
	int rc = key ? ckpt_attrs_format(a, &b) : -ENOMEM;

	if (rc == 0)
		rc = store_put(st, key, b.data, b.len);
	free(key);
	buf_release(&b);
	return rc;
}

int catalog_entry_put(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, const struct entry *e)
{
	struct buf b = BUF_INIT;
	char *key = catalog_entry_key(job, dir, name, e->path);
	int rc = key ? entry_format(e, &b) : -ENOMEM;

	if (rc == 0)
		rc = store_put(st, key, b.data, b.len);
	free(key);
	buf_release(&b);
	return rc;
}

int catalog_entry_remove(struct store *st, const char *job, enum ckpt_dir dir,
			 const char *name, const char *relpath)
{
	char *key = catalog_entry_key(job, dir, name, relpath);
	int rc = key ? store_remove(st, key) : -ENOMEM;

	free(key);
	return rc;
}

/* ---- listings ---- */

struct seg_walk {
	size_t skip;		/* bytes of prefix to skip */
	const char *suffix;	/* required remainder after the segment, or NULL */
	char last[512];
	int (*cb)(const char *name, void *arg);
	void *arg;
};

/* Report each distinct first segment after the prefix (decoded) once;
 * keys arrive sorted, so duplicates are adjacent. */
static int seg_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct seg_walk *w = arg;
	const char *rest = key + w->skip, *slash = strchr(rest, '/');
	char seg[512], *name;
	int rc;

	(void)sst;
	if (!slash || (size_t)(slash - rest) >= sizeof(seg))
		return 0;
	if (w->suffix && strcmp(slash + 1, w->suffix))
		return 0;
	snprintf(seg, sizeof(seg), "%.*s", (int)(slash - rest), rest);
	if (!strcmp(seg, w->last))
		return 0;
	snprintf(w->last, sizeof(w->last), "%s", seg);
	name = name_key_decode(seg);
	if (!name)
		return 0;
	rc = w->cb(name, w->arg);
	free(name);
	return rc;
}

int catalog_list_jobs(struct store *st, int (*cb)(const char *job, void *arg), void *arg)
{
	struct seg_walk w = { .skip = 5, .cb = cb, .arg = arg };

	return store_list(st, "jobs/", seg_cb, &w);
}

int catalog_list_ckpts(struct store *st, const char *job, enum ckpt_dir dir,
		       int (*cb)(const char *name, void *arg), void *arg)
{
	char *prefix = catalog_dir_prefix(job, dir);
	struct seg_walk w = { .suffix = "checkpoint.json", .cb = cb, .arg = arg };
	int rc;

	if (!prefix)
		return -ENOMEM;
	w.skip = strlen(prefix);
	rc = store_list(st, prefix, seg_cb, &w);
	free(prefix);
	return rc;
}

struct entry_walk {
	struct store *st;
	int (*cb)(struct entry *e, void *arg);
	void *arg;
	void (*on_bad)(const char *key, const char *why, void *arg);
	void *bad_arg;
	int bad;
};

static int entry_walk_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct entry_walk *w = arg;
	struct buf b = BUF_INIT;
	const char *why = NULL;
	struct entry *e;
	int rc;

	(void)sst;
	rc = store_get(w->st, key, &b);
	if (rc == -ENOENT)		/* removed since the listing */
		goto out;
	if (rc < 0)
		goto out;
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	rc = entry_parse((const char *)b.data, b.len, e);
	if (rc == 0 && entry_check_key(e, key) < 0) {
		entry_release(e);
		rc = -EBADMSG;
		why = "malformed entry (its path belongs at another key)";
	}
	if (rc < 0) {
		if (!why)
			why = rc == -EBADMSG ? "malformed entry" : strerror(-rc);
		log_error("catalog: %s: %s", key, why);
		if (w->on_bad)
			w->on_bad(key, why, w->bad_arg);
		free(e);
		w->bad = rc;
		rc = 0;
		goto out;
	}
	rc = w->cb(e, w->arg);
out:
	buf_release(&b);
	return rc;
}

static int load_entries(struct entry_walk *w, const char *job, enum ckpt_dir dir,
			const char *name)
{
	char *p = ckpt_key(job, dir, name, "entries/");
	int rc;

	if (!p)
		return -ENOMEM;
	rc = store_list(w->st, p, entry_walk_cb, w);
	free(p);
	return rc < 0 ? rc : w->bad;
}

int catalog_load_entries(struct store *st, const char *job, enum ckpt_dir dir,
			 const char *name,
			 int (*cb)(struct entry *e, void *arg), void *arg)
{
	struct entry_walk w = { .st = st, .cb = cb, .arg = arg };

	return load_entries(&w, job, dir, name);
}

struct key_vec {
	char **keys;
	size_t n, cap;
};

static int collect_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct key_vec *v = arg;

	(void)sst;
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 32;
		char **k = realloc(v->keys, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		v->keys = k;
		v->cap = cap;
	}
	v->keys[v->n] = strdup(key);
	return v->keys[v->n++] ? 0 : -ENOMEM;
}

int catalog_ckpt_remove(struct store *st, const char *job, enum ckpt_dir dir,
			const char *name)
{
	char *prefix = catalog_ckpt_prefix(job, dir, name);
	char *rec = catalog_record_key(job, dir, name);
	struct key_vec v = { 0 };
	size_t i;
	int rc;

	if (!prefix || !rec) {
		rc = -ENOMEM;
		goto out;
	}
	rc = store_list(st, prefix, collect_cb, &v);
	/* The record goes last: a crash midway leaves a listed, partly
	 * emptied checkpoint rather than orphaned entries nobody lists. */
	for (i = 0; rc == 0 && i < v.n; i++)
		if (strcmp(v.keys[i], rec))
			rc = store_remove(st, v.keys[i]);
	if (rc == 0)
		rc = store_remove(st, rec);
out:
	for (i = 0; i < v.n; i++)
		free(v.keys[i]);
	free(v.keys);
	free(prefix);
	free(rec);
	return rc;
}

/* ---- walking everything ---- */

struct walk_state {
	struct store *st;
	const struct catalog_walk_ops *ops;
	void *arg;
	const char *job;	/* for keys ("" for models) */
	const char *where;	/* for callbacks */
	enum ckpt_dir dir;
	const struct ckpt_record *rec;
};

static int walk_entry(struct entry *e, void *arg)
{
	struct walk_state *w = arg;
	int rc = w->ops->on_entry ? w->ops->on_entry(w->where, w->rec, e, w->arg) : 0;

	entry_free(e);
	return rc;
}

static int walk_ckpt(const char *name, void *arg)
{
	struct walk_state *w = arg;
	struct ckpt_record r;
	int rc;

	rc = record_get(w->st, w->job, w->dir, name, &r, w->ops->on_bad_key, w->arg);
	if (rc == -ENOENT)
		return 0;	/* removed since the listing */
	if (rc < 0)
		return w->ops->on_problem ?
		       w->ops->on_problem(w->where, w->dir, name, rc, w->arg) : rc;
	rc = w->ops->on_ckpt ? w->ops->on_ckpt(w->where, &r, w->arg) : 0;
	if (rc == 0) {
		struct entry_walk ew = { .st = w->st, .cb = walk_entry, .arg = w,
					 .on_bad = w->ops->on_bad_key, .bad_arg = w->arg };

		w->rec = &r;
		rc = load_entries(&ew, w->job, w->dir, name);
		w->rec = NULL;
		if (rc == -EBADMSG && w->ops->on_problem)
			rc = w->ops->on_problem(w->where, w->dir, name, rc, w->arg);
	}
	ckpt_record_release(&r);
	return rc < 0 ? rc : 0;
}

static int walk_job(const char *job, void *arg)
{
	struct walk_state *w = arg;
	int rc;

	w->job = w->where = job;
	w->dir = CKPT_SAMPLER;
	rc = catalog_list_ckpts(w->st, job, CKPT_SAMPLER, walk_ckpt, w);
	if (rc == 0) {
		w->dir = CKPT_STATE;
		rc = catalog_list_ckpts(w->st, job, CKPT_STATE, walk_ckpt, w);
	}
	return rc;
}

int catalog_walk(struct store *st, int with_models, const struct catalog_walk_ops *ops,
		 void *arg)
{
	struct walk_state w = { .st = st, .ops = ops, .arg = arg };
	int rc = catalog_list_jobs(st, walk_job, &w);

	if (rc == 0 && with_models) {
		w.job = "";
		w.where = "(models)";
		w.dir = CKPT_MODEL;
		rc = catalog_list_ckpts(st, "", CKPT_MODEL, walk_ckpt, &w);
	}
	return rc;
}
