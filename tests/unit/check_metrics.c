/*
 * check_metrics.c: the metric registry (src/util/metrics.c) and its
 * Prometheus text rendering: counters, gauges, histograms (cumulative
 * buckets, sum, count), label escaping, the cap on label sets ("other"),
 * collectors, and many threads counting at once.
 */
#include <check.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/buf.h"
#include "util/metrics.h"

static char *render(void)
{
	struct buf b = BUF_INIT;
	char *s;

	ck_assert_int_eq(metrics_render(&b), 0);
	s = malloc(b.len + 1);
	ck_assert_ptr_nonnull(s);
	memcpy(s, b.data, b.len);
	s[b.len] = '\0';
	buf_release(&b);
	return s;
}

/* Does @text hold @line as a whole line? */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n'))
			return 1;
		p++;
	}
	return 0;
}

START_TEST(test_counter_and_labels)
{
	char *t;

	metrics_reset();
	metrics_inc(M_COMMITS, "base", "ok", NULL);
	metrics_inc(M_COMMITS, "base", "ok", NULL);
	metrics_add(M_COMMITS, 3, "delta", "ok", NULL);
	metrics_add(M_COMMITS, -5, "delta", "ok", NULL);	/* counters never go down */
	ck_assert(metrics_get(M_COMMITS, "base", "ok", NULL) == 2);
	ck_assert(metrics_get(M_COMMITS, "delta", "ok", NULL) == 3);
	ck_assert(metrics_get(M_COMMITS, "lora", "ok", NULL) == 0);
	t = render();
	ck_assert(has_line(t, "# TYPE ckptfs_commits_total counter"));
	ck_assert(has_line(t, "ckptfs_commits_total{kind=\"base\",result=\"ok\"} 2"));
	ck_assert(has_line(t, "ckptfs_commits_total{kind=\"delta\",result=\"ok\"} 3"));
	/* A counter without labels shows 0 before anything happened. */
	ck_assert(has_line(t, "ckptfs_gc_deleted_objects_total 0"));
	free(t);
}
END_TEST

START_TEST(test_gauge_and_bytes)
{
	char *t;

	metrics_reset();
	metrics_set(M_CACHE_BYTES, 123456789012.0, "disk", NULL, NULL);
	metrics_set(M_CACHE_BYTES, 42, "disk", NULL, NULL);
	metrics_add(M_LOGICAL_BYTES, 1e15, "base", NULL, NULL);
	t = render();
	ck_assert(has_line(t, "ckptfs_cache_bytes{cache=\"disk\"} 42"));
	/* Large integers print exactly, not in exponent form. */
	ck_assert(has_line(t, "ckptfs_logical_bytes_written_total{kind=\"base\"} 1000000000000000"));
	ck_assert(strstr(t, "\nprocess_resident_memory_bytes "));
	ck_assert(strstr(t, "\nckptfs_build_info{version=\""));
	free(t);
}
END_TEST

START_TEST(test_histogram)
{
	char *t;

	metrics_reset();
	metrics_observe(M_COMMIT_SECONDS, 0.0005, "base", NULL, NULL);
	metrics_observe(M_COMMIT_SECONDS, 0.003, "base", NULL, NULL);
	metrics_observe(M_COMMIT_SECONDS, 0.75, "base", NULL, NULL);
	metrics_observe(M_COMMIT_SECONDS, 9999, "base", NULL, NULL);	/* past every bound */
	ck_assert(metrics_get(M_COMMIT_SECONDS, "base", NULL, NULL) == 4);
	t = render();
	ck_assert(has_line(t, "# TYPE ckptfs_commit_seconds histogram"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"0.001\"} 1"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"0.005\"} 2"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"0.5\"} 2"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"1\"} 3"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"600\"} 3"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_bucket{kind=\"base\",le=\"+Inf\"} 4"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_count{kind=\"base\"} 4"));
	ck_assert(has_line(t, "ckptfs_commit_seconds_sum{kind=\"base\"} 9999.7535"));
	free(t);
}
END_TEST

START_TEST(test_label_escaping)
{
	char *t;

	metrics_reset();
	metrics_inc(M_HOTLOADS, "a\"b\\c\nd", "ok", NULL);
	t = render();
	ck_assert(has_line(t, "ckptfs_hotloads_total{deployment=\"a\\\"b\\\\c\\nd\",result=\"ok\"} 1"));
	free(t);
}
END_TEST

START_TEST(test_cap_folds_into_other)
{
	char name[32], *t, *p;
	int i, series = 0;

	metrics_reset();
	/* The hotload family keeps 128 series: 127 names, then "other". */
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "dep-%d", i);
		metrics_inc(M_HOTLOADS, name, "ok", NULL);
	}
	ck_assert(metrics_get(M_HOTLOADS, "dep-0", "ok", NULL) == 1);
	ck_assert(metrics_get(M_HOTLOADS, "dep-126", "ok", NULL) == 1);
	ck_assert(metrics_get(M_HOTLOADS, "dep-127", "ok", NULL) == 0);
	ck_assert(metrics_get(M_HOTLOADS, "other", "other", NULL) == 1000 - 127);
	t = render();
	for (p = t; (p = strstr(p, "\nckptfs_hotloads_total{")); p++)
		series++;
	ck_assert_int_eq(series, 128);
	free(t);
}
END_TEST

static void collect(void *arg)
{
	int *calls = arg;

	(*calls)++;
	metrics_set(M_CACHE_HITS, 7, "disk", NULL, NULL);
}

START_TEST(test_collector)
{
	int calls = 0;
	char *t;

	metrics_reset();
	ck_assert_int_eq(metrics_add_collector(collect, &calls), 0);
	t = render();
	ck_assert_int_eq(calls, 1);
	ck_assert(has_line(t, "ckptfs_cache_hits_total{cache=\"disk\"} 7"));
	free(t);
	metrics_remove_collector(collect, &calls);
	free(render());
	ck_assert_int_eq(calls, 1);
}
END_TEST

START_TEST(test_errno_names)
{
	ck_assert_str_eq(metrics_errno_name(-ENOENT), "ENOENT");
	ck_assert_str_eq(metrics_errno_name(EIO), "EIO");
	ck_assert_str_eq(metrics_errno_name(-ETIMEDOUT), "ETIMEDOUT");
	ck_assert_str_eq(metrics_errno_name(-4095), "other");
}
END_TEST

/* Every family renders its HELP and TYPE once, in a valid name. */
START_TEST(test_every_family_renders)
{
	char *t = render(), line[160];
	int i;

	for (i = 0; metrics_family_name((enum metric_id)i); i++) {
		const char *n = metrics_family_name((enum metric_id)i);

		snprintf(line, sizeof(line), "# TYPE %s ", n);
		ck_assert_msg(strstr(t, line), "%s", n);
		ck_assert_ptr_eq(strstr(strstr(t, line) + 1, line), NULL);
	}
	ck_assert_int_eq(i, M__COUNT);
	free(t);
}
END_TEST

static void *hammer(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < 20000; i++) {
		metrics_inc(M_FUSE_OPS, (i & 1) ? "read" : "write", NULL, NULL);
		metrics_observe(M_STORE_SECONDS, 0.01, "local", "get", NULL);
		if (i % 1000 == 0)
			free(render());
	}
	return NULL;
}

START_TEST(test_threads)
{
	pthread_t t[4];
	int i;

	metrics_reset();
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert(metrics_get(M_FUSE_OPS, "read", NULL, NULL) == 40000);
	ck_assert(metrics_get(M_FUSE_OPS, "write", NULL, NULL) == 40000);
	ck_assert(metrics_get(M_STORE_SECONDS, "local", "get", NULL) == 80000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("registry");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_counter_and_labels);
	tcase_add_test(tc, test_gauge_and_bytes);
	tcase_add_test(tc, test_histogram);
	tcase_add_test(tc, test_label_escaping);
	tcase_add_test(tc, test_cap_folds_into_other);
	tcase_add_test(tc, test_collector);
	tcase_add_test(tc, test_errno_names);
	tcase_add_test(tc, test_every_family_renders);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
