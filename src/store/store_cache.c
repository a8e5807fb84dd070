/*
 * store_cache.c: a bounded local-disk read cache in front of any store.
 *
 * Owns:         copies of immutable objects (keys under "chunks/", which are
 *               content-addressed) in a directory, their LRU eviction within
 *               max_bytes, and the hit/miss counters.
 * Does not own: anything else; every other key and every write, list and
 *               head pass straight through to the inner store.
 *
 * Layout of @dir: objects/<key> holds cached objects, tmp/ holds downloads
 * in flight, lock is flock()ed so two processes never share one cache.
 *
 * A miss fetches the WHOLE object (later ranges of the same chunk are then
 * local), writes it to tmp/, fsyncs and renames it into objects/: after a
 * crash a cached file is either complete or absent, never short. Recency is
 * kept in memory only; at open the index is rebuilt from the files, oldest
 * first by their atime/mtime.
 *
 * Integrity: a key "chunks/<h2>/<sha256>" names its content (doc/FORMAT.md
 * §1), so such an object is checked against its key before it is kept and
 * again whenever it is served from disk. A bad download is fetched once
 * more and never kept; a bad cached file (disk fault, a bad copy kept by
 * an older build) is dropped and fetched again, so one fault never turns
 * into EIO for good.
 *
 * Local-only mode (store_cache_open_local(), no inner store): every key is
 * cached, a miss is -ENOENT, a put keeps a copy and nothing else. Its
 * objects carry their own check (chunks.c's decoded base chunks end in a
 * length and XXH3), so they are renamed into place without an fsync: after
 * a crash a torn file fails that check and is dropped.
 *
 * Locking: one mutex guards the index and every change to objects/ (rename,
 * unlink, mkdir, rmdir), so directory pruning cannot race an insert. Network
 * fetches and temp-file writes run without it. Concurrent misses on one key
 * wait for the first fetch instead of all fetching.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/hash.h"
#include "util/io.h"
#include "util/log.h"

#define CACHE_PREFIX		"chunks/"
#define CACHE_DEFAULT_BYTES	(4ull << 30)

struct centry {
	char *key;
	uint64_t size;
	int64_t stamp;		/* only used to order the index at open */
	struct centry *hnext;	/* hash chain */
	struct centry *prev;	/* LRU list, most recent first; */
	struct centry *next;	/*   unlinked while loading */
	bool loading;		/* a miss is fetching it; not on disk yet */
	bool stale;		/* written/removed while loading: drop it */
};

struct cache_store {
	struct store base;	/* first member: casts between the two are valid */
	struct store *inner;
	char *dir;
	int dir_fd;
	int lock_fd;
	uint64_t max_bytes;
	pthread_mutex_t lock;
	pthread_cond_t loaded;	/* a loading entry finished (or failed) */
	struct centry **table;
	size_t nbuckets;	/* power of two */
	size_t count;
	struct centry lru;	/* sentinel: lru.next newest, lru.prev oldest */
	uint64_t tmp_seq;
	struct store_cache_stats stats;
	bool write_through;	/* keep a copy of every chunk put */
	bool local_only;	/* no inner store (store_cache_open_local) */
};

static const struct store_ops cache_ops;

static struct cache_store *to_cache(struct store *st)
{
	return (struct cache_store *)st;
}

static bool is_cached_key(const char *key)
{
	return !strncmp(key, CACHE_PREFIX, strlen(CACHE_PREFIX));
}

static bool caches(const struct cache_store *c, const char *key)
{
	return c->local_only || is_cached_key(key);
}

/* Does @key have the form chunks/<h2>/<64 lowercase hex>, <h2> its first
 * two digits? Then the object's SHA-256 must be that hex. */
static bool names_content(const char *key)
{
	const char *hex = key + strlen(CACHE_PREFIX) + 3;
	size_t i;

	if (!is_cached_key(key) || strlen(key) != strlen(CACHE_PREFIX) + 3 + HASH_SHA256_HEX_LEN ||
	    key[strlen(CACHE_PREFIX) + 2] != '/' || memcmp(key + strlen(CACHE_PREFIX), hex, 2))
		return false;
	for (i = 0; i < HASH_SHA256_HEX_LEN; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return true;
}

/* False only for a content-named object whose bytes are not that content. */
static bool content_ok(const char *key, const struct buf *b)
{
	char hex[HASH_SHA256_HEX_LEN + 1];

	if (!names_content(key))
		return true;
	hash_sha256_hex(b->data, b->len, hex);
	return !strcmp(hex, key + strlen(CACHE_PREFIX) + 3);
}

/* ---- the index: a chained hash table plus an LRU list ---- */

static size_t key_hash(const char *k)
{
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a */

	for (; *k; k++)
		h = (h ^ (uint8_t)*k) * 0x100000001b3ull;
	return (size_t)h;
}

static struct centry *find(struct cache_store *c, const char *key)
{
	struct centry *e = c->table[key_hash(key) & (c->nbuckets - 1)];

	while (e && strcmp(e->key, key))
		e = e->hnext;
	return e;
}

static int grow(struct cache_store *c)
{
	size_t n = c->nbuckets * 2, i;
	struct centry **t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (i = 0; i < c->nbuckets; i++) {
		struct centry *e = c->table[i], *next;

		for (; e; e = next) {
			size_t b = key_hash(e->key) & (n - 1);

			next = e->hnext;
			e->hnext = t[b];
			t[b] = e;
		}
	}
	free(c->table);
	c->table = t;
	c->nbuckets = n;
	return 0;
}

static struct centry *hash_add(struct cache_store *c, const char *key)
{
	struct centry *e;
	size_t b;

	if (c->count >= c->nbuckets && grow(c) < 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->key = strdup(key);
	if (!e->key) {
		free(e);
		return NULL;
	}
	b = key_hash(key) & (c->nbuckets - 1);
	e->hnext = c->table[b];
	c->table[b] = e;
	c->count++;
	return e;
}

static void hash_del(struct cache_store *c, struct centry *e)
{
	struct centry **pp = &c->table[key_hash(e->key) & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	c->count--;
	free(e->key);
	free(e);
}

static void lru_unlink(struct centry *e)
{
	if (e->prev) {
		e->prev->next = e->next;
		e->next->prev = e->prev;
		e->prev = e->next = NULL;
	}
}

static void lru_push_front(struct cache_store *c, struct centry *e)
{
	e->next = c->lru.next;
	e->prev = &c->lru;
	c->lru.next->prev = e;
	c->lru.next = e;
}

/* ---- files under objects/ (called with c->lock held) ---- */

static void obj_path(char *path, size_t size, const char *key)
{
	snprintf(path, size, "objects/%s", key);
}

/* Remove now-empty directories above objects/<key>; ENOTEMPTY stops it. */
static void prune_parents(struct cache_store *c, const char *key)
{
	char path[PATH_MAX];
	char *slash;

	obj_path(path, sizeof(path), key);
	while ((slash = strrchr(path, '/')) != NULL && slash - path > 7) {
		*slash = '\0';
		if (unlinkat(c->dir_fd, path, AT_REMOVEDIR) < 0)
			break;
	}
}

/* Forget a ready entry and delete its file. */
static void drop(struct cache_store *c, struct centry *e)
{
	char path[PATH_MAX];

	obj_path(path, sizeof(path), e->key);
	if (unlinkat(c->dir_fd, path, 0) < 0 && errno != ENOENT)
		log_warn("cache %s: cannot delete %s: %s", c->dir, path, strerror(errno));
	prune_parents(c, e->key);
	lru_unlink(e);
	c->stats.cached_bytes -= e->size;
	c->stats.cached_objects--;
	hash_del(c, e);
}

/* Evict least recently used objects until @need more bytes fit. */
static void make_room(struct cache_store *c, uint64_t need)
{
	while (c->stats.cached_bytes + need > c->max_bytes && c->lru.prev != &c->lru) {
		drop(c, c->lru.prev);
		c->stats.evictions++;
	}
}

static int make_parents(struct cache_store *c, const char *path)
{
	char p[PATH_MAX];
	char *slash;

	snprintf(p, sizeof(p), "%s", path);
	for (slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdirat(c->dir_fd, p, 0700) < 0 && errno != EEXIST)
			return -errno;
		*slash = '/';
	}
	return 0;
}

/* ---- temp files (no lock needed: names are unique) ---- */

static int write_tmp(struct cache_store *c, const struct buf *data, char tmp[64])
{
	uint64_t seq;
	int fd, rc;

	pthread_mutex_lock(&c->lock);
	seq = ++c->tmp_seq;
	pthread_mutex_unlock(&c->lock);
	snprintf(tmp, 64, "tmp/%llu", (unsigned long long)seq);
	fd = openat(c->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = io_write_all(fd, data->data, data->len);
	/* Durable before the rename, so a crash never leaves a short file
	 * under a valid name that later reads would trust (local-only
	 * objects check themselves: see the top of the file). */
	if (rc == 0 && !c->local_only && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(c->dir_fd, tmp, 0);
	return rc;
}

static int read_range(int fd, uint64_t off, size_t len, struct buf *out)
{
	struct stat sb;
	size_t want;
	int rc;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if (off >= (uint64_t)sb.st_size)
		return 0;
	want = (uint64_t)sb.st_size - off;
	if (len < want)
		want = len;
	rc = buf_reserve(out, want);
	if (rc < 0)
		return rc;
	while (want > 0) {
		ssize_t n = pread(fd, out->data + out->len, want, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* shrank under us: not our file any more */
		out->len += (size_t)n;
		off += (uint64_t)n;
		want -= (size_t)n;
	}
	return 0;
}

static void append_range(const struct buf *whole, uint64_t off, size_t len,
			 struct buf *out, int *rc)
{
	size_t n;

	if (off >= whole->len)
		return;
	n = whole->len - (size_t)off;
	if (len < n)
		n = len;
	*rc = buf_append(out, whole->data + off, n);
}

/* read_range() of a content-named object, read whole and checked first:
 * -EBADMSG if the file is not the object its key names. */
static int read_verified(int fd, const char *key, uint64_t off, size_t len,
			 struct buf *out)
{
	struct buf whole = BUF_INIT;
	int rc = read_range(fd, 0, STORE_TO_END, &whole);

	if (rc == 0 && !content_ok(key, &whole))
		rc = -EBADMSG;
	if (rc == 0)
		append_range(&whole, off, len, out, &rc);
	buf_release(&whole);
	return rc;
}

/* ---- the store operations ---- */

/* Fetch @key whole from inner and, if it fits, keep it. @e is our loading
 * entry; it is published or removed here, and waiters are woken. */
static int fill(struct cache_store *c, struct centry *e, const char *key,
		uint64_t off, size_t len, struct buf *out)
{
	struct buf whole = BUF_INIT;
	char tmp[64] = "", path[PATH_MAX];
	bool keep, verified;
	uint64_t fetched = 0;	/* by a first, bad download */
	int rc, wrc = -1;

	rc = store_get(c->inner, key, &whole);
	if (rc == 0 && !content_ok(key, &whole)) {
		/* A download damaged in flight: try once more. */
		log_debug("cache %s: %s: download does not match its key, fetching again",
			  c->dir, key);
		fetched = whole.len;
		buf_reset(&whole);
		rc = store_get(c->inner, key, &whole);
	}
	/* Still bad: passed up unkept; the reader's own check reports it. */
	verified = rc == 0 && content_ok(key, &whole);
	if (verified && whole.len <= c->max_bytes) {
		wrc = write_tmp(c, &whole, tmp);
		if (wrc < 0)
			log_warn("cache %s: cannot write %s: %s", c->dir, key, strerror(-wrc));
	}

	pthread_mutex_lock(&c->lock);
	c->stats.inner_bytes += fetched;
	if (rc == 0)
		c->stats.inner_bytes += whole.len;
	keep = rc == 0 && wrc == 0 && !e->stale;
	if (keep) {
		obj_path(path, sizeof(path), key);
		make_room(c, whole.len);
		if (make_parents(c, path) < 0 || renameat(c->dir_fd, tmp, c->dir_fd, path) < 0) {
			log_warn("cache %s: cannot store %s: %s", c->dir, key, strerror(errno));
			keep = false;
		}
	}
	if (keep) {
		e->loading = false;
		e->size = whole.len;
		c->stats.cached_bytes += whole.len;
		c->stats.cached_objects++;
		lru_push_front(c, e);
	} else {
		if (tmp[0])
			unlinkat(c->dir_fd, tmp, 0);
		hash_del(c, e);
	}
	pthread_cond_broadcast(&c->loaded);
	pthread_mutex_unlock(&c->lock);

	if (rc == 0)
		append_range(&whole, off, len, out, &rc);
	buf_release(&whole);
	return rc;
}

/*
 * A hit on @e (under the lock): its file opened, so eviction cannot unlink
 * it first (the fd stays readable even if it is evicted right after), and
 * @e made the newest. -1 (and @e dropped) if the file is gone.
 */
static int open_hit(struct cache_store *c, struct centry *e, const char *path)
{
	int fd = openat(c->dir_fd, path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		log_warn("cache %s: %s vanished: %s", c->dir, path, strerror(errno));
		drop(c, e);
		return -1;
	}
	lru_unlink(e);
	lru_push_front(c, e);
	c->stats.hits++;
	return fd;
}

int store_cache_open_fd(struct store *st, const char *key)
{
	struct cache_store *c;
	char path[PATH_MAX];
	struct centry *e;
	int fd = -1;

	if (!st || st->ops != &cache_ops)
		return -EINVAL;
	c = to_cache(st);
	if (!caches(c, key) || store_key_check(key) < 0)
		return -EINVAL;
	obj_path(path, sizeof(path), key);
	pthread_mutex_lock(&c->lock);
	e = find(c, key);
	if (e && !e->loading)
		fd = open_hit(c, e, path);
	if (fd < 0)
		c->stats.misses++;
	pthread_mutex_unlock(&c->lock);
	return fd < 0 ? -ENOENT : fd;
}

static int cache_get_range(struct store *st, const char *key, uint64_t off,
			   size_t len, struct buf *out)
{
	struct cache_store *c = to_cache(st);
	char path[PATH_MAX];
	struct centry *e;
	size_t start = out->len;
	bool refetched = false;
	int fd, rc;

	if (!caches(c, key) || store_key_check(key) < 0)
		return c->local_only ? -EINVAL : store_get_range(c->inner, key, off, len, out);
	obj_path(path, sizeof(path), key);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		e = find(c, key);
		if (e && e->loading) {
			pthread_cond_wait(&c->loaded, &c->lock);
			continue;
		}
		if (!e)
			break;
		fd = open_hit(c, e, path);
		if (fd < 0)
			break;
		pthread_mutex_unlock(&c->lock);
		if (names_content(key)) {
			rc = read_verified(fd, key, off, len, out);
		} else {
			rc = read_range(fd, off, len, out);
		}
		close(fd);
		if (rc == 0)
			return 0;
		out->len = start;
		if (rc == -EBADMSG && !refetched) {
			log_warn("cache %s: %s does not match its key; dropped, fetching it again",
				 c->dir, path);
			pthread_mutex_lock(&c->lock);
			e = find(c, key);
			if (e && !e->loading)
				drop(c, e);
			refetched = true;
			continue;	/* now a miss: fill() fetches and checks */
		}
		if (c->local_only) {
			log_warn("cache %s: reading %s: %s; dropped", c->dir, path,
				 strerror(-rc));
			pthread_mutex_lock(&c->lock);
			e = find(c, key);
			if (e && !e->loading)
				drop(c, e);
			pthread_mutex_unlock(&c->lock);
			return -ENOENT;
		}
		/* A damaged cache file must not fail the read: go to the source. */
		log_warn("cache %s: reading %s: %s; reading from the store", c->dir,
			 path, strerror(-rc));
		out->len = start;
		return store_get_range(c->inner, key, off, len, out);
	}
	c->stats.misses++;
	if (c->local_only) {
		pthread_mutex_unlock(&c->lock);
		return -ENOENT;
	}
	e = hash_add(c, key);
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return store_get_range(c->inner, key, off, len, out);
	}
	e->loading = true;
	pthread_mutex_unlock(&c->lock);
	return fill(c, e, key, off, len, out);
}

/* After a write or remove of @key, no older copy may be served. */
static void invalidate(struct cache_store *c, const char *key)
{
	struct centry *e;

	if (!caches(c, key))
		return;
	pthread_mutex_lock(&c->lock);
	e = find(c, key);
	if (e && e->loading)
		e->stale = true;
	else if (e)
		drop(c, e);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Write-through for chunks: they are immutable and named by their content,
 * so the copy just stored is the copy anyone will read, and the mount that
 * wrote a base reads it back for every delta it writes next.
 */
static void keep_copy(struct cache_store *c, const char *key, const void *data,
		      size_t len)
{
	struct buf b = { .data = (uint8_t *)data, .len = len, .cap = len };
	char tmp[64] = "", path[PATH_MAX];
	struct centry *e;

	if (len > c->max_bytes / 4 || write_tmp(c, &b, tmp) < 0)
		return;
	pthread_mutex_lock(&c->lock);
	e = find(c, key);
	if (e && e->loading) {	/* a fetch in flight must not be served */
		e->stale = true;
		pthread_mutex_unlock(&c->lock);
		unlinkat(c->dir_fd, tmp, 0);
		return;
	}
	if (e)			/* put replaces: the old copy goes */
		drop(c, e);
	e = hash_add(c, key);
	obj_path(path, sizeof(path), key);
	if (e)
		make_room(c, len);
	if (!e || make_parents(c, path) < 0 ||
	    renameat(c->dir_fd, tmp, c->dir_fd, path) < 0) {
		if (e)
			hash_del(c, e);
		pthread_mutex_unlock(&c->lock);
		unlinkat(c->dir_fd, tmp, 0);
		return;
	}
	e->loading = false;
	e->size = len;
	c->stats.cached_bytes += len;
	c->stats.cached_objects++;
	lru_push_front(c, e);
	pthread_mutex_unlock(&c->lock);
}

static int cache_put(struct store *st, const char *key, const void *data, size_t len)
{
	struct cache_store *c = to_cache(st);
	int rc;

	if (c->local_only) {
		/* A copy that cannot be kept is not an error: it is a cache. */
		if (store_key_check(key) == 0)
			keep_copy(c, key, data, len);
		return 0;
	}
	rc = store_put(c->inner, key, data, len);
	if (rc == 0 && c->write_through && is_cached_key(key))
		keep_copy(c, key, data, len);
	else
		invalidate(c, key);
	return rc;
}

static int cache_put_if_absent(struct store *st, const char *key, const void *data,
			       size_t len)
{
	struct cache_store *c = to_cache(st);
	int rc;

	if (c->local_only)
		return cache_put(st, key, data, len);
	rc = store_put_if_absent(c->inner, key, data, len);
	if (rc != -EEXIST)
		invalidate(c, key);
	return rc;
}

static int cache_head(struct store *st, const char *key, struct store_stat *out)
{
	struct cache_store *c = to_cache(st);

	return c->local_only ? -ENOTSUP : store_head(c->inner, key, out);
}

static int cache_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct cache_store *c = to_cache(st);

	return c->local_only ? -ENOTSUP : store_list(c->inner, prefix, cb, arg);
}

static int cache_remove(struct store *st, const char *key)
{
	struct cache_store *c = to_cache(st);
	int rc = c->local_only ? 0 : store_remove(c->inner, key);

	invalidate(c, key);
	return rc;
}

static void cache_destroy(struct store *st)
{
	struct cache_store *c = to_cache(st);
	size_t i;

	for (i = 0; c->table && i < c->nbuckets; i++) {
		struct centry *e = c->table[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			free(e->key);
			free(e);
		}
	}
	free(c->table);
	store_free(c->inner);
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	if (c->lock_fd >= 0)
		close(c->lock_fd);	/* releases the flock */
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->loaded);
	free(c->dir);
	free(c);
}

static int cache_touch(struct store *st, const char *key)
{
	struct cache_store *c = to_cache(st);

	return c->local_only ? -ENOTSUP : store_touch(c->inner, key);
}

static const struct store_ops cache_ops = {
	.name          = "cache",
	.put           = cache_put,
	.put_if_absent = cache_put_if_absent,
	.get_range     = cache_get_range,
	.head          = cache_head,
	.list          = cache_list,
	.remove        = cache_remove,
	.touch         = cache_touch,
	.destroy       = cache_destroy,
};

int store_cache_set_write_through(struct store *st, int on)
{
	if (!st || st->ops != &cache_ops)
		return -EINVAL;
	to_cache(st)->write_through = on;
	return 0;
}

int store_cache_stats(struct store *st, struct store_cache_stats *out)
{
	struct cache_store *c;

	if (!st || st->ops != &cache_ops)
		return -EINVAL;
	c = to_cache(st);
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- open: rebuild the index from the files ---- */

/* Delete every entry of directory @rel (relative to dir_fd), recursively. */
static void clear_dir(struct cache_store *c, const char *rel)
{
	int fd = openat(c->dir_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char sub[PATH_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
		if (unlinkat(c->dir_fd, sub, 0) < 0 && (errno == EISDIR || errno == EPERM)) {
			clear_dir(c, sub);
			unlinkat(c->dir_fd, sub, AT_REMOVEDIR);
		}
	}
	closedir(d);
}

/* Add every file under objects/@rel to the index; delete what is not a
 * valid cached key (a foreign or damaged entry is cheaper refetched). */
static int scan(struct cache_store *c, const char *rel)
{
	char dpath[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	snprintf(dpath, sizeof(dpath), "objects%s%s", rel[0] ? "/" : "", rel);
	fd = openat(c->dir_fd, dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char key[1024], path[1100];	/* keys are at most 1000 bytes */
		struct centry *e;
		struct stat sb;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(key, sizeof(key), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
		obj_path(path, sizeof(path), key);
		if (fstatat(c->dir_fd, path, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			rc = scan(c, key);
			continue;
		}
		if (!S_ISREG(sb.st_mode) || !caches(c, key) ||
		    store_key_check(key) < 0 || find(c, key)) {
			unlinkat(c->dir_fd, path, 0);
			continue;
		}
		e = hash_add(c, key);
		if (!e) {
			rc = -ENOMEM;
			break;
		}
		e->size = (uint64_t)sb.st_size;
		e->stamp = sb.st_atime > sb.st_mtime ? sb.st_atime : sb.st_mtime;
		c->stats.cached_bytes += e->size;
		c->stats.cached_objects++;
	}
	closedir(d);
	return rc;
}

static int cmp_stamp(const void *a, const void *b)
{
	const struct centry *x = *(struct centry *const *)a;
	const struct centry *y = *(struct centry *const *)b;

	return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

/* Put the scanned entries on the LRU list, newest first. */
static int order_lru(struct cache_store *c)
{
	struct centry **all, *e;
	size_t i, n = 0;

	all = malloc((c->count ? c->count : 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (i = 0; i < c->nbuckets; i++)
		for (e = c->table[i]; e; e = e->hnext)
			all[n++] = e;
	qsort(all, n, sizeof(*all), cmp_stamp);
	for (i = 0; i < n; i++)
		lru_push_front(c, all[i]);	/* oldest pushed first ends last */
	free(all);
	return 0;
}

static int open_dir(struct cache_store *c)
{
	int rc;

	if (mkdir(c->dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	c->dir_fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0)
		return -errno;
	if (c->local_only) {
		struct stat sb;

		/* Its objects are trusted without a hash of their key: only a
		 * directory nobody else may write is fit for that. */
		if (fstat(c->dir_fd, &sb) < 0)
			return -errno;
		if (sb.st_uid != geteuid() || (sb.st_mode & 022)) {
			log_error("cache %s: refused: owned by uid %u with mode %03o; it must be "
				  "owned by uid %u and writable by nobody else",
				  c->dir, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 0777),
				  (unsigned)geteuid());
			return -EPERM;
		}
	}
	c->lock_fd = openat(c->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->lock_fd < 0)
		return -errno;
	/* Two processes evicting each other's files would corrupt both indexes. */
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK)
			log_error("cache %s: in use by another process", c->dir);
		return rc == -EWOULDBLOCK ? -EBUSY : rc;
	}
	if (mkdirat(c->dir_fd, "objects", 0700) < 0 && errno != EEXIST)
		return -errno;
	if (mkdirat(c->dir_fd, "tmp", 0700) < 0 && errno != EEXIST)
		return -errno;
	clear_dir(c, "tmp");	/* downloads a crash interrupted */
	return 0;
}

static int open_cache(struct store *inner, const char *dir, uint64_t max_bytes,
		      struct store **out)
{
	struct cache_store *c;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c) {
		store_free(inner);
		return -ENOMEM;
	}
	c->base.ops = &cache_ops;
	c->inner = inner;
	c->local_only = !inner;
	c->dir_fd = c->lock_fd = -1;
	c->max_bytes = max_bytes ? max_bytes : CACHE_DEFAULT_BYTES;
	c->lru.next = c->lru.prev = &c->lru;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	c->dir = strdup(dir);
	c->nbuckets = 256;
	c->table = calloc(c->nbuckets, sizeof(*c->table));
	if (!c->dir || !c->table) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = open_dir(c);
	if (rc < 0) {
		if (rc != -EBUSY && rc != -EPERM)	/* those were logged */
			log_error("cache %s: %s", dir, strerror(-rc));
		goto fail;
	}
	rc = scan(c, "");
	if (rc == 0)
		rc = order_lru(c);
	if (rc < 0) {
		log_error("cache %s: reading the index: %s", dir, strerror(-rc));
		goto fail;
	}
	make_room(c, 0);	/* max_bytes may have shrunk since last time */
	log_debug("cache %s: %llu objects, %llu bytes", dir,
		  (unsigned long long)c->stats.cached_objects,
		  (unsigned long long)c->stats.cached_bytes);
	*out = &c->base;
	return 0;
fail:
	cache_destroy(&c->base);	/* frees inner too: we own it */
	return rc;
}

int store_cache_open(struct store *inner, const char *dir, uint64_t max_bytes,
		     struct store **out)
{
	if (!inner)
		return -EINVAL;
	return open_cache(inner, dir, max_bytes, out);
}

int store_cache_open_local(const char *dir, uint64_t max_bytes, struct store **out)
{
	return open_cache(NULL, dir, max_bytes, out);
}
