/*
 * readahead.c: sequential and tensor-aware read-ahead (see readahead.h).
 *
 * Locks: a file's ra_file.lock, then ra->lock (budget and counters) or
 * ra->parse_lock, then the chunk cache's and the pool's locks. None is
 * held while a chunk is loaded, except parse_lock around loading and
 * parsing one header (it bounds the memory of parsing, not the reads).
 */
#include "fs/readahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct readahead {
	struct chunks *chunks;
	struct pool *pool;
	uint64_t budget;
	int seq_chunks;

	pthread_mutex_t lock;
	uint64_t inflight;		/* bytes queued or decoding */
	struct ra_stats stats;

	/* File-order fill (see fill_top_up) */
	int fill_depth;			/* fill tasks queued or decoding, at most */
	int fill_inflight;
	uint64_t fill_max;		/* filled bytes not read yet, mount-wide */
	uint64_t fill_outstanding;

	pthread_mutex_t parse_lock;	/* one header parse at a time */
};

struct ra_task {
	struct readahead *ra;
	struct chunk_ref ref;
	size_t len;
	int fill;
};

struct readahead *ra_new(struct chunks *c, uint64_t budget, int seq_chunks)
{
	struct readahead *ra = calloc(1, sizeof(*ra));

	if (!ra)
		return NULL;
	ra->chunks = c;
	ra->budget = budget;
	ra->seq_chunks = seq_chunks;
	/* One fill decode at a time locally (the other core serves the
	 * reader's own misses); more to hide a remote store's round trips. */
	ra->fill_depth = seq_chunks > 2 ? seq_chunks / 2 : 1;
	ra->fill_max = budget;
	pthread_mutex_init(&ra->lock, NULL);
	pthread_mutex_init(&ra->parse_lock, NULL);
	return ra;
}

void ra_set_pool(struct readahead *ra, struct pool *p)
{
	ra->pool = p;
}

void ra_free(struct readahead *ra)
{
	if (!ra)
		return;
	pthread_mutex_destroy(&ra->lock);
	pthread_mutex_destroy(&ra->parse_lock);
	free(ra);
}

void ra_get_stats(struct readahead *ra, struct ra_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!ra)
		return;
	pthread_mutex_lock(&ra->lock);
	*out = ra->stats;
	pthread_mutex_unlock(&ra->lock);
}

void ra_file_init(struct ra_file *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->last_chunk = -2;
	f->last_tensor = -1;
}

static size_t popcount_map(const uint64_t *m, size_t n_chunks)
{
	size_t i, k = 0;

	for (i = 0; m && i < (n_chunks + 63) / 64; i++)
		k += (size_t)__builtin_popcountll(m[i]);
	return k;
}

void ra_file_release(struct readahead *ra, struct ra_file *f)
{
	if (ra && f->fill_pending) {
		pthread_mutex_lock(&ra->lock);
		ra->fill_outstanding -= f->fill_pending;
		ra->stats.fill_unused += popcount_map(f->filled, f->n_chunks);
		pthread_mutex_unlock(&ra->lock);
	}
	free(f->touched);
	free(f->filled);
	f->touched = f->filled = NULL;
	free(f->tensors);
	f->tensors = NULL;
	pthread_mutex_destroy(&f->lock);
}

int ra_parse_layout(const uint8_t *head, size_t avail, uint64_t file_size,
		    struct st_tensor **out, size_t *n)
{
	struct st_layout l = ST_LAYOUT_INIT;
	uint64_t hlen;
	size_t i, k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (avail < 8)
		return -EAGAIN;
	hlen = (uint64_t)head[0] | (uint64_t)head[1] << 8 | (uint64_t)head[2] << 16 |
	       (uint64_t)head[3] << 24 | (uint64_t)head[4] << 32 |
	       (uint64_t)head[5] << 40 | (uint64_t)head[6] << 48 |
	       (uint64_t)head[7] << 56;
	if (hlen > RA_HEADER_MAX - 8)
		return -E2BIG;
	if (8 + hlen > file_size)
		return -EINVAL;
	rc = st_layout_parse(head, avail, &l);
	if (rc < 0)
		return rc;
	/* Clamp to the file: a header may claim bytes the file lacks. */
	for (i = 0; i < l.n; i++) {
		struct st_tensor t = l.tensors[i];

		if (t.off >= file_size)
			break;	/* sorted: the rest lies beyond too */
		if (t.len > file_size - t.off)
			t.len = file_size - t.off;
		l.tensors[k++] = t;
	}
	if (k == 0) {
		st_layout_release(&l);
		return -EINVAL;
	}
	*out = l.tensors;
	*n = k;
	return 0;
}

/* Copy bytes [0, len) of @e out of its chunks. 0 or -EIO. */
static int read_head(struct readahead *ra, const struct entry *e, uint8_t *out, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t i = done / e->chunk_size, in = done % e->chunk_size;
		uint64_t coff = (uint64_t)i * e->chunk_size;
		size_t clen = e->size - coff < e->chunk_size ? (size_t)(e->size - coff)
							     : e->chunk_size;
		size_t n = clen - in < len - done ? clen - in : len - done;
		const struct chunk_data *d;
		int rc;

		if (i >= e->n_chunks)
			return -EIO;
		rc = chunks_get(ra->chunks, &e->chunks[i], clen, &d);
		if (rc < 0)
			return rc;
		memcpy(out + done, d->data + in, n);
		chunks_put(ra->chunks, d);
		done += n;
	}
	return 0;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && !strcmp(s + a - b, suf);
}

/* Learn @e's tensor layout (f->lock not held). 0 or -errno. */
static int load_layout(struct readahead *ra, const struct entry *e,
		       struct st_tensor **out, size_t *n)
{
	uint8_t len8[8], *head = NULL;
	uint64_t hlen;
	int rc;

	if (!has_suffix(e->path, ".safetensors") || e->size < 10 || !e->chunk_size)
		return -EINVAL;
	pthread_mutex_lock(&ra->parse_lock);
	rc = read_head(ra, e, len8, sizeof(len8));
	if (rc < 0)
		goto out;
	rc = ra_parse_layout(len8, sizeof(len8), e->size, out, n);
	if (rc != -EAGAIN)
		goto out;	/* rejected from the length alone */
	hlen = (uint64_t)len8[0] | (uint64_t)len8[1] << 8 | (uint64_t)len8[2] << 16 |
	       (uint64_t)len8[3] << 24;	/* < RA_HEADER_MAX: checked above */
	head = malloc((size_t)(8 + hlen));
	if (!head) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_head(ra, e, head, (size_t)(8 + hlen));
	if (rc == 0)
		rc = ra_parse_layout(head, (size_t)(8 + hlen), e->size, out, n);
out:
	pthread_mutex_unlock(&ra->parse_lock);
	free(head);
	return rc;
}

static void task_run(void *arg)
{
	struct ra_task *t = arg;
	struct readahead *ra = t->ra;
	const struct chunk_data *d;

	/* Errors are the reader's to report, when it gets there. */
	if (chunks_get(ra->chunks, &t->ref, t->len, &d) == 0)
		chunks_put(ra->chunks, d);
	pthread_mutex_lock(&ra->lock);
	if (t->fill)
		ra->fill_inflight--;
	else
		ra->inflight -= t->len;
	pthread_mutex_unlock(&ra->lock);
	free(t);
}

static size_t chunk_len(const struct entry *e, size_t i)
{
	uint64_t off = (uint64_t)i * e->chunk_size;

	return e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
}

/*
 * Queue chunks [from, to] of @e within the budget; those up to @tensor_last
 * count as queued for a tensor. Returns the first chunk not queued (to + 1
 * when all were). f->lock held.
 */
static size_t queue_range(struct readahead *ra, const struct entry *e, size_t from,
			  size_t to, size_t tensor_last)
{
	size_t k;

	for (k = from; k <= to && k < e->n_chunks; k++) {
		size_t len = chunk_len(e, k);
		struct ra_task *t;

		if (chunks_cached(ra->chunks, &e->chunks[k]))
			continue;
		pthread_mutex_lock(&ra->lock);
		if (ra->inflight + len > ra->budget) {
			ra->stats.skipped += to - k + 1;
			pthread_mutex_unlock(&ra->lock);
			return k;
		}
		ra->inflight += len;
		ra->stats.queued++;
		if (k <= tensor_last)
			ra->stats.tensor_queued++;
		pthread_mutex_unlock(&ra->lock);
		t = malloc(sizeof(*t));
		if (t) {
			t->ra = ra;
			t->ref = e->chunks[k];
			t->len = len;
			t->fill = 0;
		}
		if (!t || pool_submit(ra->pool, task_run, t) < 0) {
			free(t);
			pthread_mutex_lock(&ra->lock);
			ra->inflight -= len;
			pthread_mutex_unlock(&ra->lock);
			return k;
		}
	}
	return k;
}

/* The tensor holding byte @pos, or NULL. */
static const struct st_tensor *find_tensor(const struct ra_file *f, uint64_t pos)
{
	size_t lo = 0, hi = f->n_tensors;

	/* Last tensor starting at or before pos. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->tensors[mid].off <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	if (pos - f->tensors[lo - 1].off >= f->tensors[lo - 1].len)
		return NULL;
	return &f->tensors[lo - 1];
}

#define BIT_GET(m, k)	((m)[(k) / 64] >> ((k) % 64) & 1)
#define BIT_SET(m, k)	((m)[(k) / 64] |= 1ull << ((k) % 64))
#define BIT_CLR(m, k)	((m)[(k) / 64] &= ~(1ull << ((k) % 64)))

/* Chunk @k is worth filling: not read, not filled, not queued, not cached. */
static int fill_wanted(struct readahead *ra, const struct ra_file *f,
		       const struct entry *e, size_t k)
{
	if (k >= f->n_chunks || BIT_GET(f->touched, k) || BIT_GET(f->filled, k))
		return 0;
	if (f->queued_from <= k && k < f->queued_until)
		return 0;
	return !chunks_cached(ra->chunks, &e->chunks[k]);
}

/* The next chunk to fill, or SIZE_MAX when the pass is over. f->lock held. */
static size_t fill_pick(struct readahead *ra, struct ra_file *f, const struct entry *e)
{
	/* A jump waits for its tensor's first chunk: those first. */
	while (f->fill_tensor < f->n_tensors) {
		size_t k = (size_t)(f->tensors[f->fill_tensor++].off / e->chunk_size);

		if (fill_wanted(ra, f, e, k))
			return k;
	}
	while (f->fill_next < f->n_chunks) {
		size_t k = f->fill_next++;

		if (fill_wanted(ra, f, e, k))
			return k;
	}
	return SIZE_MAX;
}

/*
 * A loader that jumps from tensor to tensor waits, at every jump, for the
 * new tensor's first chunk to be fetched and decoded, and read-ahead can
 * only start there (its order is unknown). But every chunk will be read:
 * decode the ones not read yet in file order (first chunks of tensors
 * first), at most fill_depth at a time (a core for the fill, one for the
 * reader's own misses) and at most fill_max bytes decoded and not yet read
 * (mount-wide), so they are still cached when the reader gets there.
 * f->lock held.
 */
static void fill_top_up(struct readahead *ra, struct ra_file *f, const struct entry *e)
{
	while (f->fill == 1) {
		struct ra_task *t;
		size_t k, len;

		pthread_mutex_lock(&ra->lock);
		if (ra->fill_inflight >= ra->fill_depth ||
		    ra->fill_outstanding + e->chunk_size > ra->fill_max) {
			pthread_mutex_unlock(&ra->lock);
			return;
		}
		pthread_mutex_unlock(&ra->lock);
		k = fill_pick(ra, f, e);
		if (k == SIZE_MAX) {
			f->fill = 2;
			return;
		}
		len = chunk_len(e, k);
		t = malloc(sizeof(*t));
		if (!t)
			return;
		t->ra = ra;
		t->ref = e->chunks[k];
		t->len = len;
		t->fill = 1;
		pthread_mutex_lock(&ra->lock);
		ra->fill_inflight++;
		ra->fill_outstanding += len;
		ra->stats.fill_queued++;
		pthread_mutex_unlock(&ra->lock);
		BIT_SET(f->filled, k);
		f->fill_pending += len;
		if (pool_submit(ra->pool, task_run, t) < 0) {
			free(t);
			BIT_CLR(f->filled, k);
			f->fill_pending -= len;
			pthread_mutex_lock(&ra->lock);
			ra->fill_inflight--;
			ra->fill_outstanding -= len;
			pthread_mutex_unlock(&ra->lock);
			return;
		}
	}
}

/* The reader reads chunk @i: it is no longer pending. f->lock held. */
static void fill_touch(struct readahead *ra, struct ra_file *f, const struct entry *e,
		       size_t i)
{
	if (!f->touched || i >= f->n_chunks)
		return;
	BIT_SET(f->touched, i);
	if (BIT_GET(f->filled, i)) {
		size_t len = chunk_len(e, i);

		BIT_CLR(f->filled, i);
		f->fill_pending -= len;
		pthread_mutex_lock(&ra->lock);
		ra->fill_outstanding -= len;
		pthread_mutex_unlock(&ra->lock);
	}
}

/* The fill's bitmaps, once the layout is known (f->lock held). Without
 * them (ENOMEM) there is no fill. */
static void fill_init(struct ra_file *f, const struct entry *e)
{
	size_t words = (e->n_chunks + 63) / 64;

	f->touched = calloc(words, sizeof(uint64_t));
	f->filled = calloc(words, sizeof(uint64_t));
	if (!f->touched || !f->filled) {
		free(f->touched);
		free(f->filled);
		f->touched = f->filled = NULL;
		f->fill = 2;
		return;
	}
	f->n_chunks = e->n_chunks;
}

void ra_on_read(struct readahead *ra, struct ra_file *f, const struct entry *e,
		uint64_t pos)
{
	const struct st_tensor *t = NULL;
	size_t i, window, from, to, tensor_last = 0;
	int seq;

	if (!ra || !ra->pool || !ra->budget || !e->chunk_size || !e->n_chunks ||
	    pos >= e->size)
		return;
	i = (size_t)(pos / e->chunk_size);
	/*
	 * No chunk further ahead than the budget: what was decoded ahead of
	 * a reader stays bounded, and the reader gets to it before the cache
	 * evicts it. Nor further than seq_chunks: decoding is CPU-bound, and
	 * more decodes at once than cores only slows the one the reader
	 * waits for (measured: 16 ahead was 5-10% slower than 2 on 2 cores
	 * locally); a remote store sets seq_chunks to hide round trips.
	 */
	window = (size_t)(ra->budget / e->chunk_size);
	if (window > (size_t)ra->seq_chunks)
		window = (size_t)ra->seq_chunks;
	if (window == 0)
		window = 1;

	pthread_mutex_lock(&f->lock);
	if (f->layout_state == 0) {
		struct st_tensor *ts = NULL;
		size_t n = 0;
		int rc;

		f->layout_state = 2;	/* parsing: other readers go on without it */
		pthread_mutex_unlock(&f->lock);
		rc = load_layout(ra, e, &ts, &n);
		pthread_mutex_lock(&f->lock);
		if (rc == 0) {
			f->tensors = ts;
			f->n_tensors = n;
			f->layout_state = 1;
			fill_init(f, e);
			pthread_mutex_lock(&ra->lock);
			ra->stats.layouts++;
			pthread_mutex_unlock(&ra->lock);
		} else {
			f->layout_state = -1;
		}
	}
	if (f->layout_state == 1)
		t = find_tensor(f, pos);
	/* Sequential: this read follows the last one's chunk (or stays in it
	 * after having followed). */
	seq = (long)i == f->last_chunk + 1 || ((long)i == f->last_chunk && f->seq);
	f->seq = seq;
	/*
	 * A reader in file order (cp, cat) goes on into the next tensor; an
	 * mmap loader reads a tensor to its end and then jumps. It looks
	 * sequential at one tensor end now and then (the kernel reads around
	 * a fault, into the previous tensor), so read-ahead crosses tensor
	 * ends only after two crossings in a row.
	 */
	if (!seq)
		f->crossed = 0;
	else if (t && f->last_tensor >= 0 && t - f->tensors == f->last_tensor + 1)
		f->crossed++;
	/* A jump into another tensor: two make a loader (an mmap loader
	 * faults in tensors in its own order; cp and cat never jump). */
	if (!seq && t && (long)i != f->last_chunk && t - f->tensors != f->last_tensor &&
	    ++f->jumps >= 2 && !f->fill && f->touched && ra->fill_max)
		f->fill = 1;
	fill_touch(ra, f, e, i);
	if (t)
		f->last_tensor = (long)(t - f->tensors);
	to = i;		/* a jump outside any tensor: wait and see */
	if (t) {
		/* Inside a tensor: everything up to its end will be read. */
		size_t last = (size_t)((t->off + t->len - 1) / e->chunk_size);

		to = last < i + window ? last : i + window;
		tensor_last = last;
	}
	if (seq && (!t || f->crossed >= 2) && i + window > to)
		to = i + window;	/* across tensor ends too */
	if (to >= e->n_chunks)
		to = e->n_chunks - 1;
	/* Chunks queued by an earlier read are not queued again. */
	from = f->queued_from <= i + 1 && i + 1 < f->queued_until ? f->queued_until : i + 1;
	if (to >= from) {
		if (from != f->queued_until)	/* else the queued run grows */
			f->queued_from = from;
		f->queued_until = queue_range(ra, e, from, to, tensor_last);
	}
	f->last_chunk = (long)i;
	if (f->fill == 1)
		fill_top_up(ra, f, e);
	pthread_mutex_unlock(&f->lock);
}
