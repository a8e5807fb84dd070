/*
 * chunks.c: chunk frames in the store and the decoded-chunk cache.
 *
 * The cache holds decoded chunks keyed by frame key, so a base chunk decoded
 * for one delta serves every later delta (and every reader) until evicted.
 * Entries are reference counted: eviction only unlinks them, the last
 * chunks_put() frees. Memory is bounded by cache_bytes plus what readers
 * hold at the moment, plus at most SPARE_MAX reusable buffers.
 *
 * Eviction is LRU with two hints (a hint only moves an entry to the cold
 * end; nothing is evicted while there is room): a base chunk once a delta
 * chunk was decoded from it, and a chunk every page of which was handed to
 * the kernel (chunks_served). What stays is what readers will ask for.
 */
#include "fs/chunks.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"

#define SERVED_WORDS 16		/* 1024 granules per chunk */

struct centry {
	struct chunk_data pub;	/* first: chunk_data pointers convert back */
	uint8_t *bytes;
	size_t cap;		/* of bytes */
	struct chunks *owner;	/* its buffer goes back to owner's spares */
	char key[CHUNK_KEY_LEN + 1];
	int refs;
	int cached;		/* in the table and LRU */
	int mapped;		/* bytes is a read-only map of a raw-tier file */
	/* Pages (granules of served_gran() bytes) handed to the kernel. */
	uint64_t served[SERVED_WORDS];
	unsigned n_served;
	struct centry *prev, *next;	/* LRU, most recent at head */
	struct centry *hnext;		/* hash chain */
};

struct loading {
	char key[CHUNK_KEY_LEN + 1];
	int done;
	int waiters;
	struct loading *next;
};

#define NBUCKETS 1024
#define MAX_CTX 16
/*
 * Freed chunk-sized buffers kept for the next load or store. A fresh 4 MiB
 * malloc is fresh pages: faulting and zeroing them cost ~13% of the
 * daemon's CPU on a cold delta read and ~1000 faults per chunk written
 * (perf, bench/README.md). Bounded: SPARE_MAX buffers of at most two
 * chunk frames each.
 */
#define SPARE_MAX 8
#define SPARE_MIN (64u << 10)
#define SPARE_SLACK (64u << 10)

struct chunks {
	struct store *st;
	struct store *raw;	/* decoded base chunks on local disk; NULL: none */
	uint64_t max_bytes, bytes;
	pthread_mutex_t lock;
	struct centry *buckets[NBUCKETS];
	struct centry *lru_head, *lru_tail;

	/* Chunks being loaded: a second reader waits instead of decoding the
	 * same chunk again (read-ahead and the reader often race). */
	struct loading *loading;
	pthread_cond_t loaded;

	struct chunks_stats stats;	/* under lock */

	pthread_mutex_t spare_lock;	/* a leaf lock */
	struct buf spares[SPARE_MAX];
	int n_spares;

	pthread_mutex_t ctx_lock;
	pthread_cond_t ctx_cond;
	struct codec_ctx *free_ctx[MAX_CTX];
	int n_free_ctx, n_ctx, max_ctx;
};

/*
 * Codec contexts hold ~5 chunks of scratch each, so they are pooled per
 * store rather than per thread: the FUSE loop may run 16 threads, and 16
 * idle contexts would cost more memory than the whole chunk cache. At most
 * max_ctx exist; a thread that finds none free waits for one.
 */
static struct codec_ctx *ctx_get(struct chunks *c)
{
	struct codec_ctx *ctx = NULL;

	pthread_mutex_lock(&c->ctx_lock);
	while (c->n_free_ctx == 0 && c->n_ctx >= c->max_ctx)
		pthread_cond_wait(&c->ctx_cond, &c->ctx_lock);
	if (c->n_free_ctx > 0) {
		ctx = c->free_ctx[--c->n_free_ctx];
	} else {
		c->n_ctx++;
		pthread_mutex_unlock(&c->ctx_lock);
		ctx = codec_ctx_new();
		pthread_mutex_lock(&c->ctx_lock);
		if (!ctx) {
			c->n_ctx--;
			pthread_cond_signal(&c->ctx_cond);
		}
	}
	pthread_mutex_unlock(&c->ctx_lock);
	return ctx;
}

static void ctx_put(struct chunks *c, struct codec_ctx *ctx)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&c->ctx_lock);
	c->free_ctx[c->n_free_ctx++] = ctx;
	pthread_cond_signal(&c->ctx_cond);
	pthread_mutex_unlock(&c->ctx_lock);
}

struct chunks *chunks_new(struct store *st, uint64_t cache_bytes)
{
	struct chunks *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->st = st;
	c->max_bytes = cache_bytes;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	pthread_mutex_init(&c->ctx_lock, NULL);
	pthread_cond_init(&c->ctx_cond, NULL);
	pthread_mutex_init(&c->spare_lock, NULL);
	{
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		/* Enough to keep every core busy encoding or decoding. */
		c->max_ctx = n > 0 ? (int)(n + 2 < MAX_CTX ? n + 2 : MAX_CTX) : 4;
	}
	return c;
}

static unsigned bucket_of(const char *key)
{
	/* Keys are sha256 hex: the first digits are uniformly distributed. */
	return (unsigned)strtoul((char[9]){ key[0], key[1], key[2], key[3],
					    key[4], key[5], key[6], key[7], 0 },
				 NULL, 16) % NBUCKETS;
}

/* A buffer of at least @need bytes (empty), reused if one is spare. */
static int spare_get(struct chunks *c, size_t need, struct buf *out)
{
	int i;

	*out = (struct buf)BUF_INIT;
	pthread_mutex_lock(&c->spare_lock);
	for (i = c->n_spares - 1; i >= 0; i--)
		if (c->spares[i].cap >= need) {
			*out = c->spares[i];
			c->spares[i] = c->spares[--c->n_spares];
			break;
		}
	pthread_mutex_unlock(&c->spare_lock);
	out->len = 0;
	if (out->cap >= need)
		return 0;
	if (need < SPARE_MIN)
		return buf_reserve(out, need ? need : 1);
	/*
	 * Exactly sized (buf_reserve would double it), plus slack so a
	 * chunk-sized spare also fits a frame a little larger than its chunk
	 * and a raw copy with its trailer.
	 */
	buf_release(out);
	out->data = buf_alloc_chunk(need + SPARE_SLACK);
	if (!out->data)
		return -ENOMEM;
	out->cap = need + SPARE_SLACK;
	return 0;
}

static void spare_put(struct chunks *c, struct buf *b)
{
	if (b->cap >= SPARE_MIN && b->cap <= 2 * (size_t)CODEC_CHUNK_MAX) {
		pthread_mutex_lock(&c->spare_lock);
		if (c->n_spares < SPARE_MAX) {
			b->len = 0;
			c->spares[c->n_spares++] = *b;
			*b = (struct buf)BUF_INIT;
		}
		pthread_mutex_unlock(&c->spare_lock);
	}
	buf_release(b);
}

/* ---- the raw tier (chunks_set_raw) ---- */

/* A kept chunk is its decoded bytes, then magic:4 len:4 xxh3:8 (LE). */
#define RAW_MAGIC	0x57524b43u	/* "CKRW" */
#define RAW_TRAILER	16

void chunks_set_raw(struct chunks *c, struct store *raw)
{
	store_free(c->raw);
	c->raw = raw;
}

static void raw_name(const char *key, char *out, size_t size)
{
	snprintf(out, size, "raw/%.2s/%s", key, key);
}

/* Keep a copy of chunk @key's decoded bytes. A hint: failing costs speed only. */
static void raw_keep(struct chunks *c, const char *key, const uint8_t *data, size_t len)
{
	uint32_t magic = htole32(RAW_MAGIC), len32 = htole32((uint32_t)len);
	uint64_t xxh = htole64(hash_xxh3(data, len));
	struct buf b;
	char name[128];

	if (!c->raw || spare_get(c, len + RAW_TRAILER, &b) < 0)
		return;
	memcpy(b.data, data, len);
	memcpy(b.data + len, &magic, 4);
	memcpy(b.data + len + 4, &len32, 4);
	memcpy(b.data + len + 8, &xxh, 8);
	raw_name(key, name, sizeof(name));
	store_put(c->raw, name, b.data, len + RAW_TRAILER);
	spare_put(c, &b);
	pthread_mutex_lock(&c->lock);
	c->stats.raw_kept++;
	pthread_mutex_unlock(&c->lock);
}

/*
 * Chunk @ref's decoded bytes from the raw tier into a fresh centry, checked
 * against their trailer (a torn or damaged copy is dropped: the caller then
 * decodes the frame from the store). 0, or -ENOENT when not kept.
 *
 * The copy is mapped, not read: a read is one more pass over 4 MiB, which
 * perf put at a fifth of a delta save's CPU. The file is never truncated
 * (written once to a temp name, renamed, at most unlinked), so the map
 * cannot fault.
 */
static int raw_load(struct chunks *c, const struct chunk_ref *ref, size_t raw_len,
		    struct centry **out)
{
	size_t size = raw_len + RAW_TRAILER;
	uint32_t magic, len32;
	struct centry *e;
	struct stat sb;
	char name[128];
	uint64_t xxh;
	uint8_t *p;
	int fd, ok;

	if (!c->raw)
		return -ENOENT;
	raw_name(ref->key, name, sizeof(name));
	fd = store_cache_open_fd(c->raw, name);
	if (fd < 0)
		return -ENOENT;
	p = fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == size ?
	    mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : MAP_FAILED;
	close(fd);
	ok = p != MAP_FAILED;
	if (ok) {
		memcpy(&magic, p + raw_len, 4);
		memcpy(&len32, p + raw_len + 4, 4);
		memcpy(&xxh, p + raw_len + 8, 8);
		ok = le32toh(magic) == RAW_MAGIC && le32toh(len32) == raw_len &&
		     le64toh(xxh) == hash_xxh3(p, raw_len);
	}
	if (!ok) {
		log_warn("chunk %s: the local copy of its decoded bytes is damaged; "
			 "dropped, decoding the stored frame instead", ref->key);
		if (p != MAP_FAILED)
			munmap(p, size);
		store_remove(c->raw, name);
		return -ENOENT;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		munmap(p, size);
		return -ENOMEM;
	}
	e->bytes = p;
	e->cap = size;
	e->mapped = 1;
	e->owner = c;
	memcpy(e->key, ref->key, sizeof(e->key));
	e->pub.data = e->bytes;
	e->pub.len = raw_len;
	e->refs = 1;
	*out = e;
	return 0;
}

static void centry_free(struct centry *e)
{
	struct buf b = { e->bytes, 0, e->cap };

	if (e->mapped)
		munmap(e->bytes, e->cap);
	else if (e->owner && e->bytes)
		spare_put(e->owner, &b);
	else
		free(e->bytes);
	free(e);
}

static void lru_unlink(struct chunks *c, struct centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct chunks *c, struct centry *e)
{
	e->prev = NULL;
	e->next = c->lru_head;
	if (c->lru_head)
		c->lru_head->prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void table_remove(struct chunks *c, struct centry *e)
{
	struct centry **pp = &c->buckets[bucket_of(e->key)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(c, e);
	c->bytes -= e->pub.len;
	e->cached = 0;
}

/*
 * Move @e to the cold end: evicted first when the cache is full, kept while
 * there is room. Lock held.
 */
static void demote(struct chunks *c, struct centry *e)
{
	if (!e->cached || c->lru_tail == e)
		return;
	lru_unlink(c, e);
	e->prev = c->lru_tail;
	c->lru_tail->next = e;
	c->lru_tail = e;
}

/* Evict least recently used entries until under budget. Lock held. */
static void evict(struct chunks *c)
{
	struct centry *e = c->lru_tail;

	while (e && c->bytes > c->max_bytes) {
		struct centry *prev = e->prev;

		table_remove(c, e);
		if (e->refs == 0)
			centry_free(e);
		e = prev;
	}
}

void chunks_free(struct chunks *c)
{
	unsigned i;

	if (!c)
		return;
	for (i = 0; i < NBUCKETS; i++) {
		struct centry *e = c->buckets[i], *n;

		for (; e; e = n) {
			n = e->hnext;
			centry_free(e);
		}
	}
	store_free(c->raw);
	while (c->n_free_ctx > 0)
		codec_ctx_free(c->free_ctx[--c->n_free_ctx]);
	while (c->n_spares > 0)
		buf_release(&c->spares[--c->n_spares]);
	pthread_mutex_destroy(&c->spare_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->ctx_lock);
	pthread_cond_destroy(&c->loaded);
	pthread_cond_destroy(&c->ctx_cond);
	free(c);
}

static struct centry *lookup(struct chunks *c, const char *key)
{
	struct centry *e;

	for (e = c->buckets[bucket_of(key)]; e; e = e->hnext) {
		if (!strcmp(e->key, key)) {
			e->refs++;
			lru_unlink(c, e);
			lru_push(c, e);
			return e;
		}
	}
	return NULL;
}

/* Is @key cached? (no reference taken) Lock held. */
static int lookup_peek(struct chunks *c, const char *key)
{
	struct centry *e;

	for (e = c->buckets[bucket_of(key)]; e; e = e->hnext)
		if (!strcmp(e->key, key))
			return 1;
	return 0;
}

/* Publish @e (refs already 1 for the caller), or return an existing twin. */
static struct centry *insert(struct chunks *c, struct centry *e)
{
	struct centry *old = lookup(c, e->key);
	unsigned b;

	if (old) {
		centry_free(e);
		return old;
	}
	if (c->max_bytes == 0)
		return e;
	b = bucket_of(e->key);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	lru_push(c, e);
	e->cached = 1;
	c->bytes += e->pub.len;
	evict(c);
	return e;
}

/* chunks_put(), and the chunk goes to the cold end of the LRU. */
static void put_demote(struct chunks *c, const struct chunk_data *d)
{
	struct centry *e = (struct centry *)d;

	if (!d)
		return;
	pthread_mutex_lock(&c->lock);
	demote(c, e);
	if (--e->refs == 0 && !e->cached)
		centry_free(e);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Granule of the served map: a page, or more for chunks over 4 MiB. The
 * kernel reads page-aligned ranges (mmap faults read around the faulting
 * page, not at chunk-aligned offsets), so a page granule is always either
 * wholly inside a read or wholly outside.
 */
static size_t served_gran(size_t len)
{
	size_t g = (len + SERVED_WORDS * 64 - 1) / (SERVED_WORDS * 64);

	return g <= 4096 ? 4096 : (g + 4095) / 4096 * 4096;
}

void chunks_served(struct chunks *c, const struct chunk_data *d, size_t off, size_t len)
{
	struct centry *e = (struct centry *)d;
	size_t g, first, end, nbits, i;

	if (!d || !d->len || off >= d->len)
		return;
	g = served_gran(d->len);
	nbits = (d->len + g - 1) / g;
	if (len > d->len - off)
		len = d->len - off;
	first = (off + g - 1) / g;	/* granules wholly inside [off, off+len) */
	end = off + len == d->len ? nbits : (off + len) / g;
	if (end <= first)
		return;
	pthread_mutex_lock(&c->lock);
	for (i = first; i < end; i++) {
		uint64_t bit = 1ull << (i % 64);

		if (!(e->served[i / 64] & bit)) {
			e->served[i / 64] |= bit;
			e->n_served++;
		}
	}
	if (e->n_served == nbits)
		demote(c, e);
	pthread_mutex_unlock(&c->lock);
}

void chunks_put(struct chunks *c, const struct chunk_data *d)
{
	struct centry *e = (struct centry *)d;

	if (!d)
		return;
	pthread_mutex_lock(&c->lock);
	if (--e->refs == 0 && !e->cached)
		centry_free(e);
	pthread_mutex_unlock(&c->lock);
}

int chunks_store(struct chunks *c, const uint8_t *data, size_t len,
		 const uint8_t *base, const char *base_key,
		 const struct codec_span *spans, size_t nspans, unsigned flags,
		 struct chunk_ref *ref)
{
	struct codec_ctx *ctx = ctx_get(c);
	struct codec_frame_info info;
	struct buf frame = BUF_INIT;
	char key[128];
	int rc;

	memset(ref, 0, sizeof(*ref));
	if (!ctx)
		return -ENOMEM;
	rc = spare_get(c, len, &frame);
	if (rc < 0) {
		ctx_put(c, ctx);
		return rc;
	}
	rc = codec_encode(ctx, data, len, base, spans, nspans, 0, &frame);
	ctx_put(c, ctx);	/* not held across hashing and I/O */
	if (rc == CODEC_ALL_ZERO) {
		snprintf(ref->base_key, sizeof(ref->base_key), "%s", base_key);
		rc = 0;
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = codec_frame_info(frame.data, frame.len, &info);
	if (rc < 0)
		goto out;
	hash_sha256_hex(frame.data, frame.len, ref->key);
	if (info.needs_base)
		snprintf(ref->base_key, sizeof(ref->base_key), "%s", base_key);
	ref->stored_len = (uint32_t)frame.len;
	catalog_chunk_key(ref->key, key, sizeof(key));
	rc = store_put(c->st, key, frame.data, frame.len);
	if (rc == 0 && (flags & CHUNKS_KEEP_RAW) && !info.needs_base)
		raw_keep(c, ref->key, data, len);
out:
	spare_put(c, &frame);
	return rc;
}

/*
 * Fetch, verify and decode one frame into a fresh centry.
 *
 * The frame's own checks (header check, XXH3 of the decoded bytes) prove
 * the bytes are a valid chunk, not that they are the chunk the entry names:
 * a renamed or substituted valid frame passes them. So every load checks
 * SHA-256(frame) == key (doc/FORMAT.md §1.2) and the entry's stored length.
 */
static int load(struct chunks *c, const struct chunk_ref *ref, size_t raw_len,
		int keep_raw, struct centry **out, size_t *frame_len)
{
	struct codec_frame_info info;
	const struct chunk_data *base = NULL;
	struct buf frame = BUF_INIT;
	char key[128], hex[HASH_SHA256_HEX_LEN + 1];
	struct centry *e = NULL;
	int rc;

	catalog_chunk_key(ref->key, key, sizeof(key));
	metrics_inc(M_CACHE_MISSES, "memory", NULL, NULL);
	/* Frames of full chunks are about a chunk long (incompressible ones
	 * a little more); a spare of that size is filled without faults. */
	if (spare_get(c, ref->stored_len ? ref->stored_len : raw_len, &frame) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	rc = store_get(c->st, key, &frame);
	metrics_add(M_CACHE_FETCHED_BYTES, (double)frame.len, "memory", NULL, NULL);
	if (rc < 0) {
		log_error("chunk %s: %s", ref->key,
			  rc == -ENOENT ? "missing from the store" : strerror(-rc));
		rc = -EIO;
		goto out;
	}
	hash_sha256_hex(frame.data, frame.len, hex);
	if (strcmp(hex, ref->key)) {
		log_error("chunk %s: checksum mismatch: the object's SHA-256 is %s "
			  "(corrupt or substituted store object)", ref->key, hex);
		metrics_inc(M_CHECKSUM_FAILURES, "chunk", NULL, NULL);
		rc = -EIO;
		goto out;
	}
	/* Base chunks are named by key alone (their length is in the base
	 * file's entry), so 0 means "not known here". */
	if (ref->stored_len && frame.len != ref->stored_len) {
		log_error("chunk %s: %zu bytes, its entry says %" PRIu32 " (corrupt entry)",
			  ref->key, frame.len, ref->stored_len);
		metrics_inc(M_CHECKSUM_FAILURES, "chunk", NULL, NULL);
		rc = -EIO;
		goto out;
	}
	rc = codec_frame_info(frame.data, frame.len, &info);
	if (rc < 0 || info.raw_len != raw_len || (info.needs_base && !ref->base_key[0])) {
		log_error("chunk %s: checksum mismatch in the frame header (corrupt store object)",
			  ref->key);
		metrics_inc(M_CHECKSUM_FAILURES, "chunk", NULL, NULL);
		rc = -EIO;
		goto out;
	}
	if (info.needs_base) {
		struct chunk_ref bref = { 0 };

		memcpy(bref.key, ref->base_key, sizeof(bref.key));
		rc = chunks_get(c, &bref, raw_len, &base);
		if (rc < 0)
			goto out;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	{
		struct buf b;

		if (spare_get(c, raw_len, &b) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		e->bytes = b.data;
		e->cap = b.cap;
		e->owner = c;
	}
	{
		struct codec_ctx *ctx = ctx_get(c);

		rc = ctx ? codec_decode(ctx, frame.data, frame.len,
					base ? base->data : NULL, e->bytes, raw_len) : -ENOMEM;
		ctx_put(c, ctx);
	}
	if (rc < 0) {
		log_error("chunk %s: %s", ref->key, rc == -EBADMSG ?
			  "checksum mismatch (corrupt store object)" : strerror(-rc));
		if (rc == -EBADMSG)
			metrics_inc(M_CHECKSUM_FAILURES, "chunk", NULL, NULL);
		rc = -EIO;
		goto out;
	}
	memcpy(e->key, ref->key, sizeof(e->key));
	e->pub.data = e->bytes;
	e->pub.len = raw_len;
	e->refs = 1;
	*frame_len = frame.len;
	/* A full chunk (what base files are made of) is kept whether it is
	 * wanted as a base now or read as part of a base file: an inference
	 * host reads the base, then every delta of it. */
	if (keep_raw && !info.needs_base)
		raw_keep(c, ref->key, e->bytes, raw_len);
	*out = e;
	e = NULL;
out:
	if (e)
		centry_free(e);
	/* The delta chunk is what readers ask for again; its base is needed
	 * only to decode it once more, so it is the first to go. */
	put_demote(c, base);
	spare_put(c, &frame);
	return rc;
}

int chunks_get(struct chunks *c, const struct chunk_ref *ref, size_t raw_len,
	       const struct chunk_data **out)
{
	struct loading *ld, **pp;
	struct centry *e;
	size_t frame_len = 0;
	int rc, raw_hit = 0;

	if (!ref->key[0]) {
		/* An all-zero delta chunk reads as its base chunk. */
		struct chunk_ref bref = { 0 };

		if (!ref->base_key[0])
			return -EIO;
		memcpy(bref.key, ref->base_key, sizeof(bref.key));
		return chunks_get(c, &bref, raw_len, out);
	}
	pthread_mutex_lock(&c->lock);
	for (;;) {
		e = lookup(c, ref->key);
		if (e)
			break;
		for (ld = c->loading; ld; ld = ld->next)
			if (!strcmp(ld->key, ref->key))
				break;
		if (!ld || c->max_bytes == 0)
			break;
		/* Someone is decoding it: wait, then look again (on a failed
		 * load we try ourselves and report our own error). */
		ld->waiters++;
		c->stats.waits++;
		while (!ld->done)
			pthread_cond_wait(&c->loaded, &c->lock);
		if (--ld->waiters == 0)
			free(ld);
		if (!lookup_peek(c, ref->key)) {
			e = NULL;
			break;
		}
	}
	if (e) {
		c->stats.hits++;
		pthread_mutex_unlock(&c->lock);
		metrics_inc(M_CACHE_HITS, "memory", NULL, NULL);
		if (e->pub.len != raw_len) {
			chunks_put(c, &e->pub);
			log_error("chunk %s: size mismatch", ref->key);
			return -EIO;
		}
		*out = &e->pub;
		return 0;
	}
	ld = calloc(1, sizeof(*ld));
	if (ld) {
		memcpy(ld->key, ref->key, sizeof(ld->key));
		ld->next = c->loading;
		c->loading = ld;
	}
	pthread_mutex_unlock(&c->lock);

	rc = raw_load(c, ref, raw_len, &e);
	if (rc == 0)
		raw_hit = 1;
	else
		rc = load(c, ref, raw_len, 1, &e, &frame_len);

	pthread_mutex_lock(&c->lock);
	if (rc == 0 && raw_hit) {
		c->stats.raw_hits++;
		e = insert(c, e);
	} else if (rc == 0) {
		c->stats.loads++;
		c->stats.frame_bytes += frame_len;
		c->stats.decoded_bytes += raw_len;
		e = insert(c, e);
	}
	if (ld) {
		for (pp = &c->loading; *pp; pp = &(*pp)->next)
			if (*pp == ld) {
				*pp = ld->next;
				break;
			}
		ld->done = 1;
		if (ld->waiters)
			pthread_cond_broadcast(&c->loaded);
		else
			free(ld);
	}
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	*out = &e->pub;
	return 0;
}

int chunks_cached(struct chunks *c, const struct chunk_ref *ref)
{
	const char *key = ref->key[0] ? ref->key : ref->base_key;
	int hit;

	if (!key[0])
		return 0;
	pthread_mutex_lock(&c->lock);
	hit = lookup_peek(c, key);
	pthread_mutex_unlock(&c->lock);
	return hit;
}

void chunks_stats(struct chunks *c, struct chunks_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	pthread_mutex_unlock(&c->lock);
}

int chunks_verify(struct chunks *c, const struct chunk_ref *ref, size_t raw_len)
{
	struct centry *e = NULL;
	size_t frame_len;
	int rc;

	if (!ref->key[0])
		return 0;	/* nothing stored; the base chunk is checked itself */
	rc = load(c, ref, raw_len, 0, &e, &frame_len);
	if (e)
		centry_free(e);
	return rc;
}
