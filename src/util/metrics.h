/*
 * metrics.h: the process's metric registry (counters, gauges, histograms)
 * and its rendering in the Prometheus text exposition format (0.0.4).
 *
 * Owns:         the list of every series ckptfs exports (enum metric_id;
 *               names, help and label names in metrics.c, documented in
 *               doc/METRICS.md), their values, and the text rendering.
 * Does not own: serving it (src/fuse/metrics_http.c, the .stats file).
 *
 * Bounded: each family holds at most its cap of label sets; a new label
 * set beyond the cap is counted in one series whose label values are all
 * "other". Label values are never checkpoint names.
 *
 * Locking: one leaf mutex per family, held only to find a series and add
 * to it, never while calling out. Collectors (functions that refresh
 * gauges from elsewhere, e.g. the disk cache's counters) run at the start
 * of metrics_render() with no metrics lock held.
 */
#ifndef CKPT_METRICS_H
#define CKPT_METRICS_H

#include <stdint.h>

#include "util/buf.h"

enum metric_id {
	M_FUSE_OPS,		/* counter {op} */
	M_FUSE_ERRORS,		/* counter {op, errno} */
	M_STORE_REQUESTS,	/* counter {backend, op, status} */
	M_STORE_SECONDS,	/* histogram {backend, op} */
	M_STORE_RETRIES,	/* counter {backend, op} */
	M_CACHE_HITS,		/* counter {cache} */
	M_CACHE_MISSES,		/* counter {cache} */
	M_CACHE_FETCHED_BYTES,	/* counter {cache} */
	M_CACHE_BYTES,		/* gauge {cache} */
	M_COMMITS,		/* counter {kind, result} */
	M_LOGICAL_BYTES,	/* counter {kind} */
	M_STORED_BYTES,		/* counter {kind} */
	M_COMMIT_SECONDS,	/* histogram {kind} */
	M_HOTLOADS,		/* counter {deployment, result} */
	M_HOTLOAD_SECONDS,	/* histogram {deployment} */
	M_PROMOTIONS,		/* counter {result} */
	M_GC_RUNS,		/* counter {result} */
	M_GC_DELETED_OBJECTS,	/* counter */
	M_GC_DELETED_BYTES,	/* counter */
	M_GC_EXPIRED,		/* counter */
	M_CHECKSUM_FAILURES,	/* counter {object} */
	M_RSS_BYTES,		/* gauge (process_resident_memory_bytes) */
	M_START_TIME,		/* gauge (process_start_time_seconds) */
	M_BUILD_INFO,		/* gauge {version}, always 1 */
	M__COUNT
};

/* Add @v (>= 0) to a counter, or set a gauge, or observe a histogram
 * sample. Labels are given in the family's order; missing trailing labels
 * are "". Cheap and thread-safe; never fails (out of room: "other"). */
void metrics_add(enum metric_id id, double v, const char *l1, const char *l2,
		 const char *l3);
void metrics_set(enum metric_id id, double v, const char *l1, const char *l2,
		 const char *l3);
void metrics_observe(enum metric_id id, double v, const char *l1, const char *l2,
		     const char *l3);

#define metrics_inc(id, l1, l2, l3) metrics_add((id), 1, (l1), (l2), (l3))

/* Current value of a counter or gauge series, or the count of a
 * histogram's; 0 if the series does not exist. For tests. */
double metrics_get(enum metric_id id, const char *l1, const char *l2, const char *l3);

/* Bounded label value for an errno: "ENOENT", ..., or "other". */
const char *metrics_errno_name(int err);

/* A function called at each render, before any series is read, to set
 * gauges (or counters it mirrors) from state it owns. At most 8. */
typedef void (*metrics_collect_fn)(void *arg);
int metrics_add_collector(metrics_collect_fn fn, void *arg);	/* 0 or -ENOSPC */
void metrics_remove_collector(metrics_collect_fn fn, void *arg);

/* Append the whole registry to @out in the text format. 0 or -ENOMEM. */
int metrics_render(struct buf *out);

/* Family names, for tests and docs: NULL past the end. */
const char *metrics_family_name(enum metric_id id);

/* Forget every series (tests only). */
void metrics_reset(void);

/* Monotonic seconds, for latencies. */
double metrics_now(void);

#endif
