/*
 * metrics.c: the metric registry and its Prometheus text rendering.
 *
 * Every family ckptfs exports is declared once, in families[] below, in
 * the order of enum metric_id; doc/METRICS.md lists the same names (a test
 * compares them with the endpoint). Each family keeps up to its cap of
 * series in a fixed array under its own leaf mutex; nothing else is taken
 * while it is held, and no callback runs under it.
 */
#include "util/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LABELS 3
#define MAX_BUCKETS 16
#define LABEL_LEN 48

enum mtype { COUNTER, GAUGE, HISTOGRAM };

struct series {
	char labels[MAX_LABELS][LABEL_LEN];
	double value;			/* counter/gauge; histogram: sum */
	uint64_t count;			/* histogram */
	uint64_t buckets[MAX_BUCKETS];	/* histogram, not cumulative */
};

struct family {
	const char *name;
	const char *help;
	enum mtype type;
	const char *label_names[MAX_LABELS];	/* NULL-terminated */
	const double *bounds;			/* histogram upper bounds */
	int nbounds;
	int cap;				/* series kept at most */
	pthread_mutex_t lock;
	int n;
	struct series *series;			/* cap of them, allocated once */
};

/* Latencies from a millisecond to ten minutes. */
static const double lat_bounds[] = {
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600
};
#define NLAT ((int)(sizeof(lat_bounds) / sizeof(lat_bounds[0])))

#define F(n, h, t, cap_, ...) \
	{ n, h, t, { __VA_ARGS__ }, NULL, 0, cap_, PTHREAD_MUTEX_INITIALIZER, 0, NULL }
#define H(n, h, cap_, ...) \
	{ n, h, HISTOGRAM, { __VA_ARGS__ }, lat_bounds, NLAT, cap_, \
	  PTHREAD_MUTEX_INITIALIZER, 0, NULL }

static struct family families[M__COUNT] = {
	[M_FUSE_OPS] = F("ckptfs_fuse_operations_total",
		"FUSE requests served, by operation.", COUNTER, 40, "op"),
	[M_FUSE_ERRORS] = F("ckptfs_fuse_errors_total",
		"FUSE requests answered with an error, by operation and errno.",
		COUNTER, 128, "op", "errno"),
	[M_STORE_REQUESTS] = F("ckptfs_store_requests_total",
		"Store operations, by backend (local, s3, cache), operation and status "
		"(ok or the errno name).", COUNTER, 128, "backend", "op", "status"),
	[M_STORE_SECONDS] = H("ckptfs_store_request_seconds",
		"Latency of store operations, retries included.", 32, "backend", "op"),
	[M_STORE_RETRIES] = F("ckptfs_store_retries_total",
		"Requests to the object store that were tried again (5xx, 429, "
		"connection failures), by backend and HTTP method.", COUNTER, 16,
		"backend", "op"),
	[M_CACHE_HITS] = F("ckptfs_cache_hits_total",
		"Chunk reads served by a cache (memory: decoded chunks; disk: "
		"--cache-dir of an S3 store).", COUNTER, 4, "cache"),
	[M_CACHE_MISSES] = F("ckptfs_cache_misses_total",
		"Chunk reads a cache could not serve.", COUNTER, 4, "cache"),
	[M_CACHE_FETCHED_BYTES] = F("ckptfs_cache_fetched_bytes_total",
		"Bytes fetched because of cache misses.", COUNTER, 4, "cache"),
	[M_CACHE_BYTES] = F("ckptfs_cache_bytes",
		"Bytes held by a cache now.", GAUGE, 4, "cache"),
	[M_COMMITS] = F("ckptfs_commits_total",
		"Files committed (close or fsync made them durable), by checkpoint "
		"kind and result.", COUNTER, 16, "kind", "result"),
	[M_LOGICAL_BYTES] = F("ckptfs_logical_bytes_written_total",
		"Bytes of files committed, as the user wrote them.", COUNTER, 8, "kind"),
	[M_STORED_BYTES] = F("ckptfs_stored_bytes_written_total",
		"Bytes of chunk objects those files occupy in the store (after "
		"delta, planes and zstd).", COUNTER, 8, "kind"),
	[M_COMMIT_SECONDS] = H("ckptfs_commit_seconds",
		"Time from close (or fsync) to durable, per committed file.", 8, "kind"),
	[M_HOTLOADS] = F("ckptfs_hotloads_total",
		"Hotload attempts, by deployment (at most 32 names, then \"other\") "
		"and result (ok or the errno name).", COUNTER, 128, "deployment", "result"),
	[M_HOTLOAD_SECONDS] = H("ckptfs_hotload_seconds",
		"Time from the write to the hotload file until the deployment "
		"confirmed or failed.", 33, "deployment"),
	[M_PROMOTIONS] = F("ckptfs_promotions_total",
		"Promotions of checkpoints to models, by result.", COUNTER, 16, "result"),
	[M_GC_RUNS] = F("ckptfs_gc_runs_total",
		"Garbage collection passes, by result.", COUNTER, 16, "result"),
	[M_GC_DELETED_OBJECTS] = F("ckptfs_gc_deleted_objects_total",
		"Unreferenced chunk objects deleted by gc.", COUNTER, 1, NULL),
	[M_GC_DELETED_BYTES] = F("ckptfs_gc_deleted_bytes_total",
		"Bytes of the chunk objects gc deleted.", COUNTER, 1, NULL),
	[M_GC_EXPIRED] = F("ckptfs_gc_expired_checkpoints_total",
		"Checkpoints gc removed because their TTL passed.", COUNTER, 1, NULL),
	[M_CHECKSUM_FAILURES] = F("ckptfs_checksum_failures_total",
		"Store objects that failed verification (EIO to the reader), by "
		"object (chunk, entry, record).", COUNTER, 4, "object"),
	[M_RSS_BYTES] = F("process_resident_memory_bytes",
		"Resident memory size of the ckptfs process in bytes.", GAUGE, 1, NULL),
	[M_START_TIME] = F("process_start_time_seconds",
		"Start time of the process since the unix epoch in seconds.", GAUGE, 1, NULL),
	[M_BUILD_INFO] = F("ckptfs_build_info",
		"Always 1; the version label says which ckptfs runs.", GAUGE, 1, "version"),
};

static struct {
	pthread_mutex_t lock;
	metrics_collect_fn fn[8];
	void *arg[8];
} collectors = { PTHREAD_MUTEX_INITIALIZER, { 0 }, { 0 } };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static double start_time;

double metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void init_all(void)
{
	struct timespec ts;
	int i;

	for (i = 0; i < M__COUNT; i++)
		families[i].series = calloc((size_t)families[i].cap, sizeof(struct series));
	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int nlabels(const struct family *f)
{
	int n = 0;

	while (n < MAX_LABELS && f->label_names[n])
		n++;
	return n;
}

/* Family lock held. The series for these label values, made if missing;
 * NULL only if the allocation at start failed. */
static struct series *find(struct family *f, const char *const lv[MAX_LABELS])
{
	int nl = nlabels(f), i, k;
	char v[MAX_LABELS][LABEL_LEN];

	if (!f->series)
		return NULL;
	for (k = 0; k < nl; k++)
		snprintf(v[k], LABEL_LEN, "%s", lv[k] ? lv[k] : "");
	for (i = 0; i < f->n; i++) {
		for (k = 0; k < nl; k++)
			if (strcmp(f->series[i].labels[k], v[k]))
				break;
		if (k == nl)
			return &f->series[i];
	}
	/* The last slot is kept for "other", so the cap is never exceeded. */
	if (f->n < f->cap - 1 || (f->cap == 1 && f->n == 0)) {
		struct series *s = &f->series[f->n++];

		memset(s, 0, sizeof(*s));
		for (k = 0; k < nl; k++)
			memcpy(s->labels[k], v[k], LABEL_LEN);
		return s;
	}
	for (i = 0; i < f->n; i++) {
		for (k = 0; k < nl; k++)
			if (strcmp(f->series[i].labels[k], "other"))
				break;
		if (k == nl)
			return &f->series[i];
	}
	if (f->n < f->cap) {
		struct series *s = &f->series[f->n++];

		memset(s, 0, sizeof(*s));
		for (k = 0; k < nl; k++)
			strcpy(s->labels[k], "other");
		return s;
	}
	return &f->series[f->n - 1];	/* cap 1 with labels: cannot happen */
}

static void update(enum metric_id id, int how, double v, const char *l1,
		   const char *l2, const char *l3)
{
	const char *lv[MAX_LABELS] = { l1, l2, l3 };
	struct family *f;
	struct series *s;
	int b;

	if ((unsigned)id >= M__COUNT || isnan(v))
		return;
	pthread_once(&init_once, init_all);
	f = &families[id];
	pthread_mutex_lock(&f->lock);
	s = find(f, lv);
	if (s) {
		if (how == 0 && v > 0)
			s->value += v;
		else if (how == 1)
			s->value = v;
		else if (how == 2 && f->type == HISTOGRAM) {
			for (b = 0; b < f->nbounds && v > f->bounds[b]; b++)
				;
			if (b < f->nbounds)
				s->buckets[b]++;
			s->count++;
			s->value += v;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

void metrics_add(enum metric_id id, double v, const char *l1, const char *l2, const char *l3)
{
	update(id, 0, v, l1, l2, l3);
}

void metrics_set(enum metric_id id, double v, const char *l1, const char *l2, const char *l3)
{
	update(id, 1, v, l1, l2, l3);
}

void metrics_observe(enum metric_id id, double v, const char *l1, const char *l2,
		     const char *l3)
{
	update(id, 2, v, l1, l2, l3);
}

double metrics_get(enum metric_id id, const char *l1, const char *l2, const char *l3)
{
	const char *lv[MAX_LABELS] = { l1, l2, l3 };
	struct family *f;
	double r = 0;
	int i, k, nl;

	if ((unsigned)id >= M__COUNT)
		return 0;
	pthread_once(&init_once, init_all);
	f = &families[id];
	nl = nlabels(f);
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->n; i++) {
		for (k = 0; k < nl; k++)
			if (strcmp(f->series[i].labels[k], lv[k] ? lv[k] : ""))
				break;
		if (k == nl) {
			r = f->type == HISTOGRAM ? (double)f->series[i].count : f->series[i].value;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return r;
}

const char *metrics_errno_name(int err)
{
	static const struct { int e; const char *n; } names[] = {
		{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" },
		{ EBADF, "EBADF" }, { EAGAIN, "EAGAIN" }, { ENOMEM, "ENOMEM" },
		{ EACCES, "EACCES" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" },
		{ EXDEV, "EXDEV" }, { ENOTDIR, "ENOTDIR" }, { EISDIR, "EISDIR" },
		{ EINVAL, "EINVAL" }, { EFBIG, "EFBIG" }, { ENOSPC, "ENOSPC" },
		{ EROFS, "EROFS" }, { ERANGE, "ERANGE" }, { ENAMETOOLONG, "ENAMETOOLONG" },
		{ ENOSYS, "ENOSYS" }, { ENOTEMPTY, "ENOTEMPTY" }, { ENODATA, "ENODATA" },
		{ ENOTSUP, "ENOTSUP" }, { ETIMEDOUT, "ETIMEDOUT" }, { EBADMSG, "EBADMSG" },
		{ ECANCELED, "ECANCELED" }, { EPROTO, "EPROTO" }, { ECONNREFUSED, "ECONNREFUSED" },
	};
	size_t i;

	if (err < 0)
		err = -err;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == err)
			return names[i].n;
	return "other";
}

int metrics_add_collector(metrics_collect_fn fn, void *arg)
{
	int i, rc = -ENOSPC;

	pthread_mutex_lock(&collectors.lock);
	for (i = 0; i < 8; i++) {
		if (!collectors.fn[i]) {
			collectors.fn[i] = fn;
			collectors.arg[i] = arg;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&collectors.lock);
	return rc;
}

void metrics_remove_collector(metrics_collect_fn fn, void *arg)
{
	int i;

	pthread_mutex_lock(&collectors.lock);
	for (i = 0; i < 8; i++)
		if (collectors.fn[i] == fn && collectors.arg[i] == arg)
			collectors.fn[i] = NULL;
	pthread_mutex_unlock(&collectors.lock);
}

/* Resident set size from /proc/self/statm (pages). */
static void collect_process(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	metrics_set(M_RSS_BYTES, (double)rss * (double)sysconf(_SC_PAGESIZE), NULL, NULL, NULL);
	metrics_set(M_START_TIME, start_time, NULL, NULL, NULL);
#ifdef CKPTFS_VERSION
	metrics_set(M_BUILD_INFO, 1, CKPTFS_VERSION, NULL, NULL);
#else
	metrics_set(M_BUILD_INFO, 1, "unknown", NULL, NULL);
#endif
}

/* Label values may hold any byte but '\\', '"' and newline need escaping. */
static int put_label(struct buf *out, const char *name, const char *v, int first)
{
	int rc = buf_printf(out, "%s%s=\"", first ? "" : ",", name);

	for (; rc == 0 && *v; v++) {
		if (*v == '\\')
			rc = buf_append(out, "\\\\", 2);
		else if (*v == '"')
			rc = buf_append(out, "\\\"", 2);
		else if (*v == '\n')
			rc = buf_append(out, "\\n", 2);
		else
			rc = buf_append(out, v, 1);
	}
	return rc ? rc : buf_append(out, "\"", 1);
}

/* "{a="x",b="y"" (no closing brace: a histogram adds le) */
static int put_labels(struct buf *out, const struct family *f, const struct series *s)
{
	int k, nl = nlabels(f), rc = 0;

	for (k = 0; k < nl && rc == 0; k++)
		rc = put_label(out, f->label_names[k], s->labels[k], k == 0);
	return rc;
}

/* Prometheus floats: integers print exactly; others as the shorter of
 * %.15g and %.17g that reads back as the same double. */
/* "NAME[SUFFIX]{labels} " (no braces for a family without labels). */
static int put_sample_name(struct buf *out, const struct family *f, const struct series *s,
			   int nl, const char *suffix)
{
	int rc = buf_printf(out, "%s%s", f->name, suffix);

	if (rc == 0 && nl) {
		rc = buf_append(out, "{", 1);
		if (rc == 0)
			rc = put_labels(out, f, s);
		if (rc == 0)
			rc = buf_append(out, "}", 1);
	}
	if (rc == 0)
		rc = buf_append(out, " ", 1);
	return rc;
}

static int put_value(struct buf *out, double v)
{
	char tmp[40];

	if (isinf(v))
		return buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		return buf_printf(out, "%.0f", v);
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	return buf_append_str(out, tmp);
}

static int render_family(struct buf *out, struct family *f, struct series *snap, int n)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	int i, b, nl = nlabels(f), rc;

	rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
			types[f->type]);
	if (rc == 0 && n == 0 && nl == 0 && f->type != HISTOGRAM)
		rc = buf_printf(out, "%s 0\n", f->name);	/* a plain counter starts at 0 */
	for (i = 0; i < n && rc == 0; i++) {
		const struct series *s = &snap[i];

		if (f->type != HISTOGRAM) {
			rc = put_sample_name(out, f, s, nl, "");
			if (rc == 0)
				rc = put_value(out, s->value);
			if (rc == 0)
				rc = buf_append(out, "\n", 1);
			continue;
		}
		{
			uint64_t cum = 0;

			for (b = 0; b <= f->nbounds && rc == 0; b++) {
				cum += b < f->nbounds ? s->buckets[b] : 0;
				rc = buf_printf(out, "%s_bucket{", f->name);
				if (rc == 0 && nl)
					rc = put_labels(out, f, s);
				if (rc == 0 && b < f->nbounds)
					rc = buf_printf(out, "%sle=\"%g\"} %llu\n", nl ? "," : "",
							f->bounds[b], (unsigned long long)cum);
				else if (rc == 0)
					rc = buf_printf(out, "%sle=\"+Inf\"} %llu\n", nl ? "," : "",
							(unsigned long long)s->count);
			}
			for (b = 0; b < 2 && rc == 0; b++) {
				rc = put_sample_name(out, f, s, nl, b ? "_count" : "_sum");
				if (rc == 0)
					rc = b ? buf_printf(out, "%llu", (unsigned long long)s->count)
					       : put_value(out, s->value);
				if (rc == 0)
					rc = buf_append(out, "\n", 1);
			}
		}
	}
	return rc;
}

int metrics_render(struct buf *out)
{
	metrics_collect_fn fn[8];
	void *arg[8];
	struct series *snap;
	int i, rc = 0, maxcap = 0;

	pthread_once(&init_once, init_all);
	/* Collectors run with no metrics lock held (they take their own). */
	pthread_mutex_lock(&collectors.lock);
	memcpy(fn, collectors.fn, sizeof(fn));
	memcpy(arg, collectors.arg, sizeof(arg));
	pthread_mutex_unlock(&collectors.lock);
	for (i = 0; i < 8; i++)
		if (fn[i])
			fn[i](arg[i]);
	collect_process();

	for (i = 0; i < M__COUNT; i++)
		if (families[i].cap > maxcap)
			maxcap = families[i].cap;
	snap = malloc((size_t)maxcap * sizeof(*snap));
	if (!snap)
		return -ENOMEM;
	/* Copy each family under its lock, format without it. */
	for (i = 0; i < M__COUNT && rc == 0; i++) {
		struct family *f = &families[i];
		int n;

		if (!f->series)
			continue;
		pthread_mutex_lock(&f->lock);
		n = f->n;
		memcpy(snap, f->series, (size_t)n * sizeof(*snap));
		pthread_mutex_unlock(&f->lock);
		rc = render_family(out, f, snap, n);
	}
	free(snap);
	return rc;
}

const char *metrics_family_name(enum metric_id id)
{
	return (unsigned)id < M__COUNT ? families[id].name : NULL;
}

void metrics_reset(void)
{
	int i;

	pthread_once(&init_once, init_all);
	for (i = 0; i < M__COUNT; i++) {
		pthread_mutex_lock(&families[i].lock);
		families[i].n = 0;
		pthread_mutex_unlock(&families[i].lock);
	}
}
