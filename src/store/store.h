/*
 * store.h: the object-store contract every backend keeps.
 *
 * Owns:         moving immutable byte strings to and from a backend by key.
 * Does not own: what keys mean (catalog), how bytes are encoded (codec).
 *
 * Only operations an S3-compatible bucket can do are allowed here, so the
 * layers above never rely on rename or in-place modification.
 *
 * Keys: 1-1000 bytes of [A-Za-z0-9._%/-], '/'-separated segments of at most
 * 200 bytes, no empty segment, no segment "." or "..". No key is a proper
 * '/'-prefix of another key (a key is never also a "directory").
 *
 * Contract (tests/unit/check_store.c enforces it against every backend):
 *  - put() is all-or-nothing and durable when it returns 0: readers see the
 *    old object or the new one, never a mix; after a crash, the same.
 *  - put_if_absent() is put() that fails with -EEXIST when the key exists;
 *    of two racing callers exactly one succeeds.
 *  - get_range() appends up to @len bytes from @off to @out; reading past the
 *    end returns the short tail (possibly 0 bytes), never an error;
 *    @len == STORE_TO_END reads to the end. -ENOENT if the key is absent.
 *  - head() fills size and mtime; -ENOENT if absent.
 *  - list() calls @cb once per key starting with @prefix (byte-wise, any
 *    depth), in lexicographic order; a non-zero return from @cb stops the
 *    listing and is returned.
 *  - remove() deletes a key; removing an absent key returns 0 (as S3 does).
 *  - touch() makes an existing object's mtime now without changing its
 *    bytes, and head() reports that instant to the nanosecond in
 *    mtime_ns (gc reads the age of a chunk from it); -ENOENT if absent.
 *  - Errors are -errno: -ENOENT absent, -EEXIST exists, -EACCES denied,
 *    -ETIMEDOUT deadline passed, -ENOSPC full, -EIO anything else.
 */
#ifndef CKPT_STORE_H
#define CKPT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define STORE_TO_END SIZE_MAX

struct store;

struct store_stat {
	uint64_t size;
	int64_t mtime;		/* seconds since the epoch */
	/* The same in nanoseconds where the backend knows better than whole
	 * seconds (local files; S3 objects renewed by touch()), else
	 * mtime * 1e9. head() fills it; listings may leave 0. gc orders a
	 * touch against the start of its pass with it. */
	int64_t mtime_ns;
	/* Changes whenever the object is replaced with other bytes (S3: the
	 * ETag; local: inode and nanosecond mtime); "" if unknown. Lets a
	 * cache notice a same-size rewrite within one second. */
	char version[48];
};

typedef int (*store_list_cb)(const char *key, const struct store_stat *st,
			     void *arg);

struct store_ops {
	const char *name;	/* "local", "s3", "cache" */
	int (*put)(struct store *st, const char *key, const void *data, size_t len);
	int (*put_if_absent)(struct store *st, const char *key, const void *data,
			     size_t len);
	int (*get_range)(struct store *st, const char *key, uint64_t off,
			 size_t len, struct buf *out);
	int (*head)(struct store *st, const char *key, struct store_stat *out);
	int (*list)(struct store *st, const char *prefix, store_list_cb cb,
		    void *arg);
	int (*remove)(struct store *st, const char *key);
	int (*touch)(struct store *st, const char *key);
	/* Free everything; NULL-safe through store_free(). */
	void (*destroy)(struct store *st);
};

/* Every backend embeds this as its first member. */
struct store {
	const struct store_ops *ops;
};

struct store_options {
	/* S3 (ignored by the local backend); NULL: from the environment. */
	const char *endpoint;		/* AWS_ENDPOINT_URL */
	const char *region;		/* AWS_REGION, default us-east-1 */
	int insecure_tls;		/* 1: do not verify TLS certificates */
	double request_timeout_s;	/* per-request deadline incl. retries */
	/* Local read cache of immutable objects (chunks/); NULL: none. */
	const char *cache_dir;
	uint64_t cache_bytes;
	int create;			/* local: create the directory if missing */
};

/*
 * Open the store named by @url: "s3://bucket[/prefix]" or a directory path
 * (optionally "file://"). Returns 0 and sets *out, or -errno with a log line
 * naming the cause.
 */
int store_open(const char *url, const struct store_options *opt, struct store **out);
void store_free(struct store *st);

int store_local_open(const char *dir, int create, struct store **out);
int store_s3_open(const char *url, const struct store_options *opt, struct store **out);
/* Wrap @inner with a bounded LRU disk cache for keys under "chunks/". Takes ownership of @inner
 * (also on failure). @max_bytes 0 means 4 GiB. -EBUSY if another process uses @dir. */
int store_cache_open(struct store *inner, const char *dir, uint64_t max_bytes,
		     struct store **out);

/*
 * The same cache with no store behind it: get() of an object not kept is
 * -ENOENT, put() keeps a copy when it fits (and returns 0 even if not: a
 * cache may forget), head/list/touch are -ENOTSUP. Objects are renamed into
 * place without an fsync, so they must carry their own check (chunks.c's
 * raw base chunks do). -EBUSY if another process uses @dir.
 */
int store_cache_open_local(const char *dir, uint64_t max_bytes, struct store **out);

/*
 * A read-only fd of the cached copy of @key (a hit, as get() counts it),
 * for a caller that maps it instead of copying it. -ENOENT if not cached
 * now (nothing is fetched), -EINVAL if @st is not a cache store.
 */
int store_cache_open_fd(struct store *st, const char *key);

/* Counters of a store made by store_cache_open(), since it was opened. */
struct store_cache_stats {
	uint64_t hits;		/* chunk reads served from the disk cache */
	uint64_t misses;	/* chunk reads that fetched the object from inner */
	uint64_t inner_bytes;	/* bytes read from inner by misses */
	uint64_t evictions;	/* objects dropped to stay within max_bytes */
	uint64_t cached_bytes;	/* now on disk (always <= max_bytes) */
	uint64_t cached_objects;
};

/*
 * With @on, a successful put of a "chunks/" key also stores a copy in the
 * cache (chunks are immutable, and a writer reads its base back for every
 * delta). 0, or -EINVAL if @st is not a cache store.
 */
int store_cache_set_write_through(struct store *st, int on);

/* Fill @out. 0, or -EINVAL if @st is not a cache store. */
int store_cache_stats(struct store *st, struct store_cache_stats *out);

/* Count one finished operation in the metrics (backend, op, status,
 * latency since @t0) and return @rc. */
int store_note(struct store *st, const char *op, double t0, int rc);
double store_clock(void);

static inline int store_put(struct store *st, const char *key, const void *d, size_t n)
{ double t0 = store_clock(); return store_note(st, "put", t0, st->ops->put(st, key, d, n)); }
static inline int store_put_if_absent(struct store *st, const char *key, const void *d, size_t n)
{ double t0 = store_clock(); return store_note(st, "put_if_absent", t0, st->ops->put_if_absent(st, key, d, n)); }
static inline int store_get_range(struct store *st, const char *key, uint64_t off, size_t len, struct buf *out)
{ double t0 = store_clock(); return store_note(st, "get", t0, st->ops->get_range(st, key, off, len, out)); }
static inline int store_get(struct store *st, const char *key, struct buf *out)
{ return store_get_range(st, key, 0, STORE_TO_END, out); }
static inline int store_head(struct store *st, const char *key, struct store_stat *out)
{ double t0 = store_clock(); return store_note(st, "head", t0, st->ops->head(st, key, out)); }
static inline int store_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{ double t0 = store_clock(); return store_note(st, "list", t0, st->ops->list(st, prefix, cb, arg)); }
static inline int store_remove(struct store *st, const char *key)
{ double t0 = store_clock(); return store_note(st, "remove", t0, st->ops->remove(st, key)); }
static inline int store_touch(struct store *st, const char *key)
{ double t0 = store_clock(); return store_note(st, "touch", t0, st->ops->touch(st, key)); }

/* 0 if @key obeys the key rules above, else -EINVAL. */
int store_key_check(const char *key);

#endif
