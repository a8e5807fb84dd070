/*
 * codec_bench.c: ratio and speed of the chunk codec on synthetic checkpoints.
 *
 * Builds a safetensors file in memory (bf16 weights ~ N(0, 0.02) plus one
 * fp32 tensor, tensor edges not aligned to chunks), then measures, on one
 * thread:
 *   - full frames: stored/raw and encode/decode MB/s, for bf16 alone and
 *     for bf16 + fp32;
 *   - delta frames for a fraction p of values moved by +-1..2 ulp, against
 *     zstd -1 of the plain XOR of the whole file (the baseline);
 *   - the same for an "Adam step" model: each weight's hidden fp32 value
 *     moves by lr x N(0, 1) and is rounded to bf16 again, so small weights
 *     move by many ulp and large ones mostly not at all (closer to real
 *     checkpoints than the fixed-ulp model).
 * MB/s are raw (decoded) bytes per second of this thread's CPU time (best
 * of the repeats), so a busy shared machine does not distort them; one
 * core's speed is what the fs gets per writer or reader thread.
 * Not a test: nothing is asserted.
 *
 * usage: codec_bench [-s MiB (default 128)] [-c chunk KiB (default 4096)]
 *                    [-l level (default 0)] [-r repeats (default 3)]
 *
 * File mode (bench/save.sh): the codec alone on real files, on T threads:
 *   codec_bench -f FILE [-b BASE_FILE] [-t T] [-c chunk KiB] [-r repeats]
 * reads FILE (and BASE_FILE) into memory, then encodes every chunk as ckptfs's
 * writer does (safetensors spans, XOR against the same chunk of BASE_FILE when
 * given), chunks shared out to T threads, and prints the wall-clock MB/s of raw
 * bytes (best of the repeats). With a base it also times "decode the base
 * chunk from its frame, then encode", which is what a delta save must do when
 * the base is not in memory. No hashing, no I/O: the ceiling of a save.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "codec/codec.h"
#include "util/buf.h"

struct model {
	uint8_t *file;
	size_t size;
	struct st_layout layout;
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double unif(void)
{
	return (double)(next_rand() >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
	double u = unif() + 1e-300, v = unif();

	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* float32 -> bf16 with round-to-nearest-even, as torch does. */
static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/*
 * A safetensors file: up to 15 bf16 tensors of odd element counts, then one
 * fp32 tensor of @f32_bytes. Returns 0 or -ENOMEM.
 */
static int make_model(struct model *m, size_t bf16_bytes, size_t f32_bytes)
{
	char hdr[8192];
	size_t hl = 0, off = 0, n_el, i;
	size_t sizes[16];
	int nt = 0, rc;

	/* Odd element counts so tensor edges fall mid-chunk and mid-word. */
	while (off < bf16_bytes && nt < 15) {
		size_t want = ((bf16_bytes / 20) | 1) * 2 + 6 * (size_t)nt;

		if (nt == 14 || want > bf16_bytes - off)
			want = bf16_bytes - off;
		sizes[nt++] = want;
		off += want;
	}
	hl += (size_t)snprintf(hdr + hl, sizeof(hdr) - hl,
			       "{\"__metadata__\":{\"format\":\"pt\"}");
	off = 0;
	for (i = 0; i < (size_t)nt; i++) {
		hl += (size_t)snprintf(hdr + hl, sizeof(hdr) - hl,
				       ",\"layer.%zu.weight\":{\"dtype\":\"BF16\",\"shape\":[%zu],"
				       "\"data_offsets\":[%zu,%zu]}", i, sizes[i] / 2, off, off + sizes[i]);
		off += sizes[i];
	}
	hl += (size_t)snprintf(hdr + hl, sizeof(hdr) - hl,
			       ",\"master.fp32\":{\"dtype\":\"F32\",\"shape\":[%zu],"
			       "\"data_offsets\":[%zu,%zu]}}", f32_bytes / 4, off, off + f32_bytes);
	while (hl % 8)
		hdr[hl++] = ' ';
	m->size = 8 + hl + off + f32_bytes;
	m->file = malloc(m->size);
	if (!m->file)
		return -ENOMEM;
	for (i = 0; i < 8; i++)
		m->file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(m->file + 8, hdr, hl);
	n_el = off / 2;
	for (i = 0; i < n_el; i++) {
		uint16_t v = to_bf16((float)(gauss() * 0.02));

		m->file[8 + hl + 2 * i] = (uint8_t)v;
		m->file[8 + hl + 2 * i + 1] = (uint8_t)(v >> 8);
	}
	for (i = 0; i < f32_bytes / 4; i++) {
		float f = (float)(gauss() * 0.02);

		memcpy(m->file + 8 + hl + off + 4 * i, &f, 4);
	}
	m->layout = (struct st_layout)ST_LAYOUT_INIT;
	rc = st_layout_parse(m->file, m->size, &m->layout);
	if (rc < 0)
		fprintf(stderr, "st_layout_parse: %d\n", rc);
	return rc;
}

/* Move the magnitude of one LE element of @w bytes by @d ulp (sign kept). */
static void nudge(uint8_t *p, unsigned w, int d)
{
	uint64_t v = 0, sign, mag;
	unsigned i;

	for (i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	sign = v & (1ull << (8 * w - 1));
	mag = v & ((1ull << (8 * w - 1)) - 1);
	if (d < 0 && mag < (uint64_t)-d)
		mag = (uint64_t)-d - mag;	/* crosses zero: mirror */
	else
		mag += (uint64_t)(int64_t)d;
	v = sign | (mag & ((1ull << (8 * w - 1)) - 1));
	for (i = 0; i < w; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A fraction @p of the elements of every tensor moves by +-1 or +-2 ulp. */
static void make_delta(const struct model *m, uint8_t *out, double p)
{
	size_t i, k;

	memcpy(out, m->file, m->size);
	for (i = 0; i < m->layout.n; i++) {
		const struct st_tensor *t = &m->layout.tensors[i];

		for (k = 0; k + t->width <= t->len; k += t->width) {
			int d;

			if (unif() >= p)
				continue;
			d = (next_rand() & 1) ? 1 : 2;
			nudge(out + t->off + k, t->width, (next_rand() & 1) ? d : -d);
		}
	}
}

static float from_bf16(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/*
 * One optimizer step of size @lr on every element: bf16 values get a hidden
 * fp32 value inside their rounding interval, move, and are rounded again;
 * fp32 values just move.
 */
static void make_adam_delta(const struct model *m, uint8_t *out, double lr)
{
	size_t i, k;

	memcpy(out, m->file, m->size);
	for (i = 0; i < m->layout.n; i++) {
		const struct st_tensor *t = &m->layout.tensors[i];

		for (k = 0; k + t->width <= t->len; k += t->width) {
			uint8_t *p = out + t->off + k;

			if (t->width == 2) {
				uint16_t h = (uint16_t)(p[0] | p[1] << 8);
				float f = from_bf16(h), up = from_bf16((uint16_t)(h + 1));
				float half = (up - f) / 2;

				f += (float)((unif() - 0.5) * 2 * half * 0.999 + lr * gauss());
				h = to_bf16(f);
				p[0] = (uint8_t)h;
				p[1] = (uint8_t)(h >> 8);
			} else if (t->width == 4) {
				float f;

				memcpy(&f, p, 4);
				f += (float)(lr * gauss());
				memcpy(p, &f, 4);
			}
		}
	}
}

struct result {
	size_t stored;
	double enc_s, dec_s;
	size_t full_frames, zero_chunks;
};

static int run(struct codec_ctx *ctx, const struct model *m, const uint8_t *data,
	       const uint8_t *base, size_t chunk, int level, int reps,
	       struct result *res, uint8_t *scratch)
{
	struct codec_span spans[512];
	struct buf out = BUF_INIT;
	size_t *fofs, *flen, nch = (m->size + chunk - 1) / chunk, c;
	int *kind, r, rc = 0;
	double t0;

	fofs = calloc(nch, sizeof(*fofs));
	flen = calloc(nch, sizeof(*flen));
	kind = calloc(nch, sizeof(*kind));
	memset(res, 0, sizeof(*res));
	res->enc_s = res->dec_s = 1e9;
	for (r = 0; r < reps; r++) {
		buf_reset(&out);
		t0 = now();
		for (c = 0; c < nch; c++) {
			size_t off = c * chunk, len = m->size - off < chunk ? m->size - off : chunk;
			size_t ns = st_layout_chunk_spans(&m->layout, off, len, spans, 512);

			fofs[c] = out.len;
			kind[c] = codec_encode(ctx, data + off, len, base ? base + off : NULL,
					       spans, ns, level, &out);
			if (kind[c] < 0) {
				rc = kind[c];
				goto out;
			}
			flen[c] = out.len - fofs[c];
		}
		t0 = now() - t0;
		if (t0 < res->enc_s)
			res->enc_s = t0;
	}
	res->stored = out.len;
	for (c = 0; c < nch; c++) {
		struct codec_frame_info fi;

		if (kind[c] == CODEC_ALL_ZERO) {
			res->zero_chunks++;
			continue;
		}
		if (codec_frame_info(out.data + fofs[c], flen[c], &fi) == 0 && !fi.needs_base && base)
			res->full_frames++;
	}
	for (r = 0; r < reps; r++) {
		t0 = now();
		for (c = 0; c < nch; c++) {
			size_t off = c * chunk, len = m->size - off < chunk ? m->size - off : chunk;

			if (kind[c] == CODEC_ALL_ZERO) {
				memcpy(scratch + off, base + off, len);
				continue;
			}
			rc = codec_decode(ctx, out.data + fofs[c], flen[c],
					  base ? base + off : NULL, scratch + off, len);
			if (rc < 0)
				goto out;
		}
		t0 = now() - t0;
		if (t0 < res->dec_s)
			res->dec_s = t0;
	}
	if (memcmp(scratch, data, m->size)) {
		fprintf(stderr, "round trip mismatch\n");
		rc = -EIO;
	}
out:
	buf_release(&out);
	free(fofs);
	free(flen);
	free(kind);
	return rc;
}

/* ---- file mode ---- */

struct fjob {
	const uint8_t *data, *base;	/* base NULL: full frames */
	uint8_t **bframes;		/* with decode_base: the base chunks' frames */
	size_t *bflen;
	size_t size, chunk;
	const struct st_layout *layout;
	int decode_base;
	size_t next;			/* atomic: next chunk index */
	size_t stored;			/* atomic */
	int err;
};

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	struct stat sb;
	size_t done = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &sb) < 0)
		return -1;
	*out = malloc((size_t)sb.st_size + 1);
	if (!*out)
		return -1;
	while (done < (size_t)sb.st_size) {
		ssize_t n = read(fd, *out + done, (size_t)sb.st_size - done);

		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return 0;
}

static void *fworker(void *arg)
{
	struct fjob *j = arg;
	struct codec_ctx *ctx = codec_ctx_new();
	struct codec_span spans[256];
	struct buf out = BUF_INIT;
	uint8_t *bdec = malloc(j->chunk);

	if (!ctx || !bdec) {
		j->err = -ENOMEM;
		goto out;
	}
	for (;;) {
		size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		size_t off = i * j->chunk, len, ns = 0;
		const uint8_t *b = NULL;
		int rc;

		if (off >= j->size)
			break;
		len = j->size - off < j->chunk ? j->size - off : j->chunk;
		if (j->layout)
			ns = st_layout_chunk_spans(j->layout, off, len, spans, 256);
		if (j->base) {
			b = j->base + off;
			if (j->decode_base) {
				if (codec_decode(ctx, j->bframes[i], j->bflen[i], NULL, bdec, len) < 0) {
					j->err = -EBADMSG;
					break;
				}
				b = bdec;
			}
		}
		buf_reset(&out);
		rc = codec_encode(ctx, j->data + off, len, b, spans, ns, 0, &out);
		if (rc < 0) {
			j->err = rc;
			break;
		}
		__atomic_fetch_add(&j->stored, rc == CODEC_ALL_ZERO ? 0 : out.len, __ATOMIC_RELAXED);
	}
out:
	buf_release(&out);
	free(bdec);
	codec_ctx_free(ctx);
	return NULL;
}

static double wall(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Run @j on @threads threads; best wall seconds of @reps. */
static double frun(struct fjob *j, int threads, int reps)
{
	pthread_t tid[64];
	double best = 0;
	int r, t;

	for (r = 0; r < reps; r++) {
		double t0 = wall();

		j->next = 0;
		j->stored = 0;
		for (t = 0; t < threads; t++)
			pthread_create(&tid[t], NULL, fworker, j);
		for (t = 0; t < threads; t++)
			pthread_join(tid[t], NULL);
		t0 = wall() - t0;
		if (r == 0 || t0 < best)
			best = t0;
	}
	return best;
}

static int file_mode(const char *file, const char *bfile, int threads, size_t chunk, int reps)
{
	struct st_layout layout = ST_LAYOUT_INIT;
	struct fjob j = { 0 };
	uint8_t *data, *base = NULL;
	size_t size, bsize = 0, n, i;
	double t;

	if (threads < 1 || threads > 64 || read_file(file, &data, &size) < 0 ||
	    (bfile && read_file(bfile, &base, &bsize) < 0)) {
		fprintf(stderr, "codec_bench: cannot read %s\n", bfile ? bfile : file);
		return 1;
	}
	j.data = data;
	j.size = size;
	j.chunk = chunk;
	j.layout = st_layout_parse(data, size, &layout) == 0 ? &layout : NULL;
	if (base && bsize != size) {
		fprintf(stderr, "codec_bench: %s and %s differ in size\n", file, bfile);
		return 1;
	}
	n = (size + chunk - 1) / chunk;
	if (base) {
		/* The base's own frames, for the decode + encode figure. */
		struct codec_ctx *ctx = codec_ctx_new();
		struct codec_span spans[256];

		j.bframes = calloc(n, sizeof(*j.bframes));
		j.bflen = calloc(n, sizeof(*j.bflen));
		if (!ctx || !j.bframes || !j.bflen)
			return 1;
		for (i = 0; i < n; i++) {
			struct buf out = BUF_INIT;
			size_t off = i * chunk, len = size - off < chunk ? size - off : chunk;
			size_t ns = j.layout ? st_layout_chunk_spans(j.layout, off, len, spans, 256) : 0;

			if (codec_encode(ctx, base + off, len, NULL, spans, ns, 0, &out) < 0)
				return 1;
			j.bframes[i] = out.data;
			j.bflen[i] = out.len;
		}
		codec_ctx_free(ctx);
	}
	t = frun(&j, threads, reps);
	if (j.err)
		return 1;
	printf("codec alone: %s%s, %.1f MiB, %d threads: stored/raw %.4f, encode %.0f MB/s",
	       base ? "delta " : "base ", file, (double)size / 1048576, threads,
	       (double)j.stored / (double)size, (double)size / t / 1e6);
	if (base) {
		j.base = base;
		t = frun(&j, threads, reps);
		printf(" (against the raw base bytes: %.0f MB/s", (double)size / t / 1e6);
		j.decode_base = 1;
		t = frun(&j, threads, reps);
		if (j.err)
			return 1;
		printf("; decode base chunk + encode: %.0f MB/s)", (double)size / t / 1e6);
	}
	printf("\n");
	for (i = 0; base && i < n; i++)
		free(j.bframes[i]);
	free(j.bframes);
	free(j.bflen);
	st_layout_release(&layout);
	free(data);
	free(base);
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = 128, chunk_kib = 4096, zcap, z1, i;
	int level = 0, reps = 3, opt, rc;
	double ps[] = { 0.01, 0.05, 0.25, 0.60 };
	double lrs[] = { 1e-6, 1e-5, 3e-5, 1e-4 };
	struct codec_ctx *ctx;
	struct model m, mb;
	struct result res;
	uint8_t *delta, *x, *scratch, *zbuf;

	const char *file = NULL, *bfile = NULL;
	int threads = 1;

	while ((opt = getopt(argc, argv, "s:c:l:r:f:b:t:")) != -1) {
		switch (opt) {
		case 'f': file = optarg; break;
		case 'b': bfile = optarg; break;
		case 't': threads = atoi(optarg); break;
		case 's': mib = strtoul(optarg, NULL, 0); break;
		case 'c': chunk_kib = strtoul(optarg, NULL, 0); break;
		case 'l': level = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-s MiB] [-c chunk_KiB] [-l level] [-r reps]\n"
				"       %s -f FILE [-b BASE_FILE] [-t threads] [-c chunk_KiB] [-r reps]\n",
				argv[0], argv[0]);
			return 2;
		}
	}
	if (file)
		return file_mode(file, bfile, threads, chunk_kib * 1024, reps);
	if (!mib || !chunk_kib || chunk_kib * 1024 > CODEC_CHUNK_MAX || reps < 1) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	ctx = codec_ctx_new();
	if (!ctx || make_model(&mb, mib << 20, 0) < 0 ||
	    make_model(&m, mib << 20, (mib << 20) / 8) < 0)
		return 1;
	delta = malloc(m.size);
	x = malloc(m.size);
	scratch = malloc(m.size);
	zcap = ZSTD_compressBound(m.size);
	zbuf = malloc(zcap);
	if (!delta || !x || !scratch || !zbuf)
		return 1;
	printf("model: %.1f MiB (%zu tensors, bf16 + 1 fp32), chunk %zu KiB, level %d, 1 thread\n",
	       (double)m.size / (1 << 20), m.layout.n, chunk_kib, level);

	for (i = 0; i < 2; i++) {
		const struct model *mm = i ? &m : &mb;
		double t0 = now();

		rc = run(ctx, mm, mm->file, NULL, chunk_kib * 1024, level, reps, &res, scratch);
		if (rc < 0)
			return 1;
		t0 = now();
		z1 = ZSTD_compress(zbuf, zcap, mm->file, mm->size, 1);
		t0 = now() - t0;
		printf("full %-11s: stored/raw %.4f (%.3fx)  enc %6.0f MB/s  dec %6.0f MB/s"
		       "   [zstd -1: %.3fx, %.0f MB/s]\n",
		       i ? "bf16 + fp32" : "bf16",
		       (double)res.stored / (double)mm->size, (double)mm->size / (double)res.stored,
		       (double)mm->size / res.enc_s / 1e6, (double)mm->size / res.dec_s / 1e6,
		       (double)mm->size / (double)z1, (double)mm->size / t0 / 1e6);
	}

	for (i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t k;

		make_delta(&m, delta, ps[i]);
		for (k = 0; k < m.size; k++)
			x[k] = delta[k] ^ m.file[k];
		z1 = ZSTD_compress(zbuf, zcap, x, m.size, 1);
		rc = run(ctx, &m, delta, m.file, chunk_kib * 1024, level, reps, &res, scratch);
		if (rc < 0)
			return 1;
		printf("delta p=%4.0f%%: stored %9zu  zstd-1(XOR) %9zu  ratio %.3f  (%.1fx of raw)  "
		       "enc %6.0f MB/s  dec %6.0f MB/s  full-frames %zu\n",
		       ps[i] * 100, res.stored, z1, (double)res.stored / (double)z1,
		       (double)m.size / (double)res.stored,
		       (double)m.size / res.enc_s / 1e6, (double)m.size / res.dec_s / 1e6,
		       res.full_frames);
	}
	for (i = 0; i < sizeof(lrs) / sizeof(lrs[0]); i++) {
		size_t k, same = 0, n = 0;

		make_adam_delta(&m, delta, lrs[i]);
		for (k = 0; k < m.size; k++)
			x[k] = delta[k] ^ m.file[k];
		for (k = 0; k < m.layout.n; k++) {
			const struct st_tensor *t = &m.layout.tensors[k];
			size_t e;

			if (t->width != 2)
				continue;
			for (e = 0; e + 2 <= t->len; e += 2, n++)
				same += !x[t->off + e] && !x[t->off + e + 1];
		}
		z1 = ZSTD_compress(zbuf, zcap, x, m.size, 1);
		rc = run(ctx, &m, delta, m.file, chunk_kib * 1024, level, reps, &res, scratch);
		if (rc < 0)
			return 1;
		printf("adam lr=%.0e (bf16 changed %4.1f%%, fp32 all): stored %9zu  zstd-1(XOR) %9zu  "
		       "ratio %.3f  (%.1fx of raw)  enc %6.0f MB/s  dec %6.0f MB/s  full-frames %zu\n",
		       lrs[i], 100.0 * (double)(n - same) / (double)n, res.stored, z1,
		       (double)res.stored / (double)z1, (double)m.size / (double)res.stored,
		       (double)m.size / res.enc_s / 1e6, (double)m.size / res.dec_s / 1e6,
		       res.full_frames);
	}
	free(zbuf);
	free(scratch);
	free(x);
	free(delta);
	free(m.file);
	free(mb.file);
	st_layout_release(&m.layout);
	st_layout_release(&mb.layout);
	codec_ctx_free(ctx);
	return 0;
}
