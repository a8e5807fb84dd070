/* testutil.c: helpers shared by the Check unit tests. */
#include "testutil.h"

#include <check.h>
#include <pthread.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"

char *testutil_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char path[4096];

	snprintf(path, sizeof(path), "%s/ckptfs-test-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(path))
		return NULL;
	return strdup(path);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

void testutil_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void testutil_fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
	}
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct buf log_text;
static int log_errors;

static void log_capture(enum log_level lvl, const char *line, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&log_lock);
	buf_printf(&log_text, "%s\n", line);
	if (lvl == LOG_LVL_ERROR)
		log_errors++;
	pthread_mutex_unlock(&log_lock);
}

void testutil_log_start(void)
{
	pthread_mutex_lock(&log_lock);
	buf_release(&log_text);
	log_errors = 0;
	pthread_mutex_unlock(&log_lock);
	log_set_hook(log_capture, NULL);
}

void testutil_log_stop(void)
{
	log_set_hook(NULL, NULL);
	pthread_mutex_lock(&log_lock);
	buf_release(&log_text);
	pthread_mutex_unlock(&log_lock);
}

int testutil_log_has(const char *needle)
{
	int found;

	pthread_mutex_lock(&log_lock);
	buf_append(&log_text, "", 1);
	log_text.len--;
	found = strstr((char *)log_text.data, needle) != NULL;
	pthread_mutex_unlock(&log_lock);
	return found;
}

int testutil_log_errors(void)
{
	int n;

	pthread_mutex_lock(&log_lock);
	n = log_errors;
	pthread_mutex_unlock(&log_lock);
	return n;
}

void testutil_assert_no_errors(void)
{
	pthread_mutex_lock(&log_lock);
	buf_append(&log_text, "", 1);
	log_text.len--;
	ck_assert_msg(log_errors == 0, "unexpected errors logged:\n%s", (char *)log_text.data);
	pthread_mutex_unlock(&log_lock);
}

static char *basedir;

void testutil_base_setup(void)
{
	basedir = testutil_mkdtemp();
	ck_assert_ptr_nonnull(basedir);
}

void testutil_base_teardown(void)
{
	testutil_rmtree(basedir);
	free(basedir);
	basedir = NULL;
}

char *testutil_workdir(void)
{
	char *d = NULL;

	ck_assert_int_gt(asprintf(&d, "%s/t-XXXXXX", basedir), 0);
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}
