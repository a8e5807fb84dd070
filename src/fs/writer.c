/*
 * writer.c: streaming and spooled writes of one file (see writer.h).
 */
#include "fs/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"
#include "util/io.h"
#include "util/log.h"

#define MAX_SPANS 256
/* size, mtime_ns, mode and dirty are read without the lock (getattr under
 * fs->lock, which never waits for a writer): stored atomically. */
#define SET(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)

struct writer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct writer_env env;

	struct entry *base;		/* delta base file, or NULL */
	/* Base files this one may turn out to be a version of, when its name
	 * matched none (writer_offer_bases); settled at the first chunk. */
	struct entry *cands;
	size_t n_cands;
	struct st_layout layout;
	int layout_state;		/* 0 not tried, 1 parsed, -1 none */

	uint64_t size;
	uint32_t mode;
	int64_t mtime_ns;

	int spool_fd;			/* -1: streaming */
	struct chunk_ref *chunks;	/* results; [0, n_full) in streaming mode */
	size_t chunks_cap;
	size_t n_full;			/* full chunks handed to the pool */
	uint8_t *cur;			/* the partial chunk after them */
	size_t cur_len;

	int inflight;
	int err;			/* sticky background error */
	int dirty;
	/* A write, truncate or commit is running. Each may wait with the lock
	 * released (for pool room, for encoders); the others wait for it to
	 * end rather than change the buffers, the mode or the size under it
	 * (an append that detached a buffer a truncate had already spooled
	 * stored a chunk ref that was never filled). */
	int busy;
};

struct encode_task {
	struct writer *w;
	size_t index;
	uint8_t *data;
	size_t len;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int ensure_chunks(struct writer *w, size_t n)
{
	struct chunk_ref *c;
	size_t cap;

	if (n <= w->chunks_cap)
		return 0;
	cap = w->chunks_cap ? w->chunks_cap * 2 : 16;
	while (cap < n)
		cap *= 2;
	c = realloc(w->chunks, cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	memset(c + w->chunks_cap, 0, (cap - w->chunks_cap) * sizeof(*c));
	w->chunks = c;
	w->chunks_cap = cap;
	return 0;
}

static void drop_cands(struct writer *w)
{
	for (size_t i = 0; i < w->n_cands; i++)
		entry_release(&w->cands[i]);
	free(w->cands);
	w->cands = NULL;
	w->n_cands = 0;
}

/*
 * A file whose name matched nothing in the base (a temporary name, say)
 * is a version of the candidate whose safetensors header is byte for byte
 * the one at @head and whose size is the one that header implies. Lock
 * held, at the first chunk, with no chunk encoding (so no encoder reads
 * w->base while it is set). Reading a candidate's first chunk goes to the
 * store under the writer lock only (lock order: writer before chunks).
 */
static void pair_by_header(struct writer *w, const uint8_t *head, size_t len)
{
	size_t i, hdr = (size_t)w->layout.data_start;

	for (i = 0; !w->base && i < w->n_cands && w->inflight == 0 && hdr <= len; i++) {
		struct entry *e = &w->cands[i];
		const struct chunk_data *d;
		size_t clen;

		if (e->size != w->layout.data_end || !e->n_chunks ||
		    e->chunk_size != w->env.chunk_size || !e->chunks[0].key[0] ||
		    e->chunks[0].base_key[0])
			continue;
		clen = e->size < e->chunk_size ? (size_t)e->size : e->chunk_size;
		if (clen < hdr || chunks_get(w->env.chunks, &e->chunks[0], clen, &d) < 0)
			continue;
		if (!memcmp(d->data, head, hdr)) {
			w->base = malloc(sizeof(*w->base));
			if (w->base) {
				*w->base = *e;		/* moved, not copied */
				memset(e, 0, sizeof(*e));
			}
		}
		chunks_put(w->env.chunks, d);
	}
	drop_cands(w);
}

/* Parse the safetensors header from the first chunk, once. */
static void detect_layout(struct writer *w, const uint8_t *head, size_t len)
{
	if (w->layout_state != 0)
		return;
	w->layout_state = st_layout_parse(head, len, &w->layout) == 0 ? 1 : -1;
	if (w->layout_state == 1 && w->n_cands)
		pair_by_header(w, head, len);
	drop_cands(w);
}

void writer_offer_bases(struct writer *w, struct entry *cands, size_t n)
{
	pthread_mutex_lock(&w->lock);
	if (w->base || w->layout_state != 0) {
		pthread_mutex_unlock(&w->lock);
		for (size_t i = 0; i < n; i++)
			entry_release(&cands[i]);
		free(cands);
		return;
	}
	drop_cands(w);
	w->cands = cands;
	w->n_cands = n;
	pthread_mutex_unlock(&w->lock);
}

/*
 * Encode and store chunk @index. Runs on a pool thread without the writer
 * lock: it reads only its own buffer, the immutable base entry and layout.
 */
static int encode_chunk(struct writer *w, size_t index, const uint8_t *data,
			size_t len, struct chunk_ref *ref)
{
	uint64_t off = (uint64_t)index * w->env.chunk_size;
	struct codec_span spans[MAX_SPANS];
	const struct chunk_data *base = NULL;
	const struct chunk_ref *bref = NULL;
	size_t nspans = 0;
	int rc;

	if (w->layout_state == 1)
		nspans = st_layout_chunk_spans(&w->layout, off, len, spans, MAX_SPANS);
	/* XOR only against a base chunk at the same offset and of the same
	 * length; anything else is stored whole (per chunk). */
	if (w->base && w->base->chunk_size == w->env.chunk_size &&
	    index < w->base->n_chunks) {
		uint64_t blen = w->base->size - off;

		if (blen > w->base->chunk_size)
			blen = w->base->chunk_size;
		/* A base chunk that is itself a delta cannot be one: a
		 * reader decodes one level only. Stored whole then. */
		if (blen == len && !(w->base->chunks[index].key[0] &&
				     w->base->chunks[index].base_key[0]))
			bref = &w->base->chunks[index];
	}
	if (bref) {
		rc = chunks_get(w->env.chunks, bref, len, &base);
		if (rc < 0)
			return rc;
	}
	rc = chunks_store(w->env.chunks, data, len, base ? base->data : NULL,
			  bref ? (bref->key[0] ? bref->key : bref->base_key) : NULL,
			  spans, nspans, w->base ? 0 : CHUNKS_KEEP_RAW, ref);
	chunks_put(w->env.chunks, base);
	return rc;
}

static void encode_task_run(void *arg)
{
	struct encode_task *t = arg;
	struct writer *w = t->w;
	struct chunk_ref ref;
	int rc;

	rc = encode_chunk(w, t->index, t->data, t->len, &ref);
	pool_buf_put(w->env.pool, t->data, t->len);
	pthread_mutex_lock(&w->lock);
	if (rc < 0 && !w->err)
		w->err = rc;
	else if (rc == 0)
		w->chunks[t->index] = ref;
	w->inflight--;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	free(t);
}

/* Hand @data (ownership passes) to the pool as chunk @index. Lock held. */
static int submit(struct writer *w, size_t index, uint8_t *data, size_t len)
{
	struct encode_task *t;
	int rc;

	rc = ensure_chunks(w, index + 1);
	if (rc < 0)
		goto fail;
	if (index == 0)
		detect_layout(w, data, len);
	while (w->inflight >= w->env.max_inflight)
		pthread_cond_wait(&w->cond, &w->lock);
	t = malloc(sizeof(*t));
	if (!t) {
		rc = -ENOMEM;
		goto fail;
	}
	*t = (struct encode_task){ .w = w, .index = index, .data = data, .len = len };
	w->inflight++;
	rc = pool_submit(w->env.pool, encode_task_run, t);
	if (rc < 0) {
		w->inflight--;
		free(t);
		goto fail;
	}
	return 0;
fail:
	free(data);
	return rc;
}

static void wait_idle(struct writer *w)
{
	while (w->inflight > 0)
		pthread_cond_wait(&w->cond, &w->lock);
}

/* Lock held: wait for the running write, truncate or commit, then run. */
static void begin_busy(struct writer *w)
{
	while (w->busy)
		pthread_cond_wait(&w->cond, &w->lock);
	w->busy = 1;
}

static void end_busy(struct writer *w)
{
	w->busy = 0;
	pthread_cond_broadcast(&w->cond);
}

static int open_spool(struct writer *w)
{
	int fd = open(w->env.spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		int e = errno;

		log_error("spool file in %s: %s", w->env.spool_dir, strerror(e));
		return -e;
	}
	w->spool_fd = fd;
	return 0;
}

/* Decode @ref into the spool at @off (used when leaving streaming mode
 * and when starting from committed content). */
static int spool_chunk(struct writer *w, const struct chunk_ref *ref, size_t len,
		       uint64_t off)
{
	const struct chunk_data *d;
	int rc = chunks_get(w->env.chunks, ref, len, &d);

	if (rc < 0)
		return rc;
	rc = io_pwrite_all(w->spool_fd, d->data, len, off);
	chunks_put(w->env.chunks, d);
	return rc;
}

/* Leave streaming mode: everything so far goes into a spool file. Lock held. */
static int to_spool(struct writer *w)
{
	size_t i;
	int rc;

	if (w->spool_fd >= 0)
		return 0;
	wait_idle(w);
	if (w->err)
		return w->err;
	rc = open_spool(w);
	if (rc < 0)
		return rc;
	for (i = 0; i < w->n_full && rc == 0; i++)
		rc = spool_chunk(w, &w->chunks[i], w->env.chunk_size,
				 (uint64_t)i * w->env.chunk_size);
	if (rc == 0 && w->cur_len)
		rc = io_pwrite_all(w->spool_fd, w->cur, w->cur_len,
				(uint64_t)w->n_full * w->env.chunk_size);
	if (rc < 0) {
		close(w->spool_fd);
		w->spool_fd = -1;
		return rc;
	}
	free(w->cur);
	w->cur = NULL;
	w->cur_len = 0;
	w->n_full = 0;
	return 0;
}

int writer_new(const struct writer_env *env, uint32_t mode,
	       const struct entry *initial, const struct entry *base,
	       struct writer **out)
{
	struct writer *w = calloc(1, sizeof(*w));
	size_t i;
	int rc = 0;

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->env = *env;
	w->spool_fd = -1;
	w->mode = mode;
	w->mtime_ns = now_ns();
	if (base) {
		w->base = calloc(1, sizeof(*w->base));
		if (!w->base || entry_copy(base, w->base) < 0) {
			free(w->base);
			w->base = NULL;
			rc = -ENOMEM;
			goto out;
		}
	}
	if (initial && initial->size > 0) {
		/* Modifying committed content in place: work on a spool copy. */
		rc = open_spool(w);
		for (i = 0; rc == 0 && i < initial->n_chunks; i++) {
			uint64_t off = (uint64_t)i * initial->chunk_size;
			uint64_t len = initial->size - off;

			if (len > initial->chunk_size)
				len = initial->chunk_size;
			rc = spool_chunk(w, &initial->chunks[i], (size_t)len, off);
		}
		w->size = initial->size;
	}
	if (initial) {
		w->mode = initial->mode;
		w->mtime_ns = initial->mtime_ns;
	}
out:
	if (rc < 0) {
		writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	wait_idle(w);
	pthread_mutex_unlock(&w->lock);
	if (w->spool_fd >= 0)
		close(w->spool_fd);
	entry_free(w->base);
	drop_cands(w);
	st_layout_release(&w->layout);
	free(w->chunks);
	free(w->cur);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

static int stream_append(struct writer *w, writer_src_fn src, void *arg, size_t size)
{
	size_t cs = w->env.chunk_size;
	int rc;

	while (size > 0) {
		size_t n;

		if (!w->cur) {
			w->cur = pool_buf_get(w->env.pool, cs);
			if (!w->cur)
				return -ENOMEM;
		}
		n = cs - w->cur_len;
		if (n > size)
			n = size;
		rc = src(arg, w->cur + w->cur_len, n);
		if (rc < 0)
			return rc;
		w->cur_len += n;
		SET(w->size, w->size + n);
		size -= n;
		if (w->cur_len == cs) {
			uint8_t *full;

			/* Wait for room before detaching the buffer: while we
			 * wait (lock released) the file must look consistent
			 * to a commit — a full buffer is still a valid tail. */
			while (w->inflight >= w->env.max_inflight)
				pthread_cond_wait(&w->cond, &w->lock);
			full = w->cur;
			w->cur = NULL;
			w->cur_len = 0;
			rc = submit(w, w->n_full, full, cs);
			w->n_full++;
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static int mem_src(void *arg, uint8_t *dst, size_t n)
{
	const char **p = arg;

	memcpy(dst, *p, n);
	*p += n;
	return 0;
}

long writer_write(struct writer *w, const char *buf, size_t size, uint64_t off)
{
	return writer_write_src(w, mem_src, &buf, size, off);
}

long writer_write_src(struct writer *w, writer_src_fn src, void *arg, size_t size,
		      uint64_t off)
{
	uint8_t *bounce = NULL;
	int rc;

	pthread_mutex_lock(&w->lock);
	begin_busy(w);
	rc = w->err;
	if (rc < 0)
		goto out;
	SET(w->dirty, 1);
	SET(w->mtime_ns, now_ns());
	if (w->spool_fd < 0 && off == w->size) {
		rc = stream_append(w, src, arg, size);
	} else {
		const void *data = src == mem_src ? *(const char **)arg : NULL;

		rc = to_spool(w);
		if (rc == 0 && size && !data) {
			/* A write that is not an append: its data has to exist
			 * whole first (a rare path: out-of-order writers). */
			bounce = malloc(size);
			rc = bounce ? src(arg, bounce, size) : -ENOMEM;
			data = bounce;
		}
		if (rc == 0)
			rc = io_pwrite_all(w->spool_fd, data, size, off);
		if (rc == 0 && off + size > w->size)
			SET(w->size, off + size);
	}
	if (rc < 0 && !w->err)
		w->err = rc;
out:
	end_busy(w);
	pthread_mutex_unlock(&w->lock);
	free(bounce);
	return rc < 0 ? rc : (long)size;
}

long writer_read(struct writer *w, char *buf, size_t size, uint64_t off)
{
	size_t cs = w->env.chunk_size, done = 0;
	long rc = 0;

	pthread_mutex_lock(&w->lock);
	/* First: waiting releases the lock, and a truncate meanwhile can
	 * change the size and the mode (a read planned before it looped on
	 * an empty tail buffer forever). */
	wait_idle(w);
	if (off >= w->size)
		goto out;
	if (off + size > w->size)
		size = (size_t)(w->size - off);
	if (w->spool_fd >= 0) {
		rc = io_pread_full(w->spool_fd, buf, size, off);
		goto out;
	}
	if (w->err) {
		rc = w->err;
		goto out;
	}
	while (done < size) {
		uint64_t pos = off + done;
		size_t index = (size_t)(pos / cs), in = (size_t)(pos % cs), n;

		if (index < w->n_full) {
			const struct chunk_data *d;

			rc = chunks_get(w->env.chunks, &w->chunks[index], cs, &d);
			if (rc < 0)
				goto out;	/* an error, never a short read */
			n = cs - in < size - done ? cs - in : size - done;
			memcpy(buf + done, d->data + in, n);
			chunks_put(w->env.chunks, d);
		} else {
			n = w->cur_len - in < size - done ? w->cur_len - in : size - done;
			memcpy(buf + done, w->cur + in, n);
		}
		done += n;
	}
	rc = (long)done;
out:
	pthread_mutex_unlock(&w->lock);
	return rc;
}

int writer_truncate(struct writer *w, uint64_t size)
{
	int rc = 0;

	pthread_mutex_lock(&w->lock);
	begin_busy(w);
	if (w->err) {
		rc = w->err;
		goto out;
	}
	SET(w->dirty, 1);
	SET(w->mtime_ns, now_ns());
	if (size == 0) {
		/* Back to an empty streaming file: the cheap, common case. */
		wait_idle(w);
		if (w->spool_fd >= 0)
			close(w->spool_fd);
		w->spool_fd = -1;
		free(w->cur);
		w->cur = NULL;
		w->cur_len = 0;
		w->n_full = 0;
		SET(w->size, 0);
		w->layout_state = 0;
		st_layout_release(&w->layout);
		goto out;
	}
	if (size == w->size)
		goto out;
	rc = to_spool(w);
	if (rc == 0 && ftruncate(w->spool_fd, (off_t)size) < 0)
		rc = -errno;
	if (rc == 0)
		SET(w->size, size);
out:
	if (rc < 0 && !w->err)
		w->err = rc;
	end_busy(w);
	pthread_mutex_unlock(&w->lock);
	return rc;
}

void writer_set_mtime(struct writer *w, int64_t mtime_ns)
{
	pthread_mutex_lock(&w->lock);
	SET(w->mtime_ns, mtime_ns);
	SET(w->dirty, 1);
	pthread_mutex_unlock(&w->lock);
}

void writer_set_mode(struct writer *w, uint32_t mode)
{
	pthread_mutex_lock(&w->lock);
	SET(w->mode, mode);
	SET(w->dirty, 1);
	pthread_mutex_unlock(&w->lock);
}

/* Readers of these take no lock (the fs lock may be held, and the writer
 * lock nests inside it only through commit); a torn read is impossible for
 * aligned 64-bit values on the platforms we build for. */
uint64_t writer_size(const struct writer *w)
{
	return __atomic_load_n(&w->size, __ATOMIC_RELAXED);
}

int64_t writer_mtime(const struct writer *w)
{
	return __atomic_load_n(&w->mtime_ns, __ATOMIC_RELAXED);
}

uint32_t writer_mode(const struct writer *w)
{
	return __atomic_load_n(&w->mode, __ATOMIC_RELAXED);
}

int writer_is_dirty(const struct writer *w)
{
	return __atomic_load_n(&w->dirty, __ATOMIC_RELAXED);
}

void writer_lock(struct writer *w) { pthread_mutex_lock(&w->lock); }
void writer_unlock(struct writer *w) { pthread_mutex_unlock(&w->lock); }

/* Encode the spool file chunk by chunk through the pool. Lock held. */
static int commit_spool(struct writer *w, size_t n_chunks)
{
	size_t cs = w->env.chunk_size, i;
	int rc = ensure_chunks(w, n_chunks);

	w->layout_state = 0;
	st_layout_release(&w->layout);
	for (i = 0; rc == 0 && i < n_chunks; i++) {
		uint64_t off = (uint64_t)i * cs;
		size_t len = w->size - off < cs ? (size_t)(w->size - off) : cs;
		uint8_t *data = len == cs ? pool_buf_get(w->env.pool, cs) : malloc(len);
		long got;

		if (!data) {
			rc = -ENOMEM;
			break;
		}
		got = io_pread_full(w->spool_fd, data, len, off);
		if (got != (long)len) {
			pool_buf_put(w->env.pool, data, len);
			rc = got < 0 ? (int)got : -EIO;
			break;
		}
		rc = submit(w, i, data, len);
	}
	wait_idle(w);
	return rc;
}

/*
 * Waiting for the pool releases the writer lock, so a concurrent write
 * could change the file between the chunks we wait for and the size we
 * record: writers are held off (busy) until the entry is built.
 */
static int prepare_commit(struct writer *w, struct entry *e);

int writer_prepare_commit(struct writer *w, struct entry *e)
{
	int rc;

	begin_busy(w);
	rc = prepare_commit(w, e);
	end_busy(w);
	return rc;
}

static int prepare_commit(struct writer *w, struct entry *e)
{
	size_t cs = w->env.chunk_size;
	size_t n_chunks = (size_t)((w->size + cs - 1) / cs);
	int rc;

	memset(e, 0, sizeof(*e));
	wait_idle(w);		/* an append may still be submitting a chunk */
	if (w->err)
		return w->err;
	if (w->spool_fd >= 0) {
		rc = commit_spool(w, n_chunks);
	} else {
		rc = 0;
		if (w->cur_len) {
			/* The partial last chunk is stored now but kept in
			 * memory, so later appends can still extend it. */
			uint8_t *copy = malloc(w->cur_len);

			if (!copy)
				return -ENOMEM;
			memcpy(copy, w->cur, w->cur_len);
			rc = submit(w, w->n_full, copy, w->cur_len);
		}
		wait_idle(w);
	}
	if (rc == 0)
		rc = w->err;
	if (rc < 0) {
		if (!w->err)
			w->err = rc;
		return rc;
	}
	e->mode = w->mode;
	e->mtime_ns = w->mtime_ns;
	e->size = w->size;
	e->chunk_size = w->env.chunk_size;
	e->n_chunks = n_chunks;
	if (n_chunks) {
		e->chunks = malloc(n_chunks * sizeof(*e->chunks));
		if (!e->chunks)
			return -ENOMEM;
		memcpy(e->chunks, w->chunks, n_chunks * sizeof(*e->chunks));
	}
	return 0;
}

void writer_mark_clean(struct writer *w)
{
	SET(w->dirty, 0);
}
