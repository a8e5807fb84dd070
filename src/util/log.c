/* log.c: line-oriented logging to stderr or syslog, thread-safe. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static enum log_level max_level = LOG_LVL_INFO;
static int use_syslog;
static log_hook_fn hook;
static void *hook_arg;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum log_level max) { max_level = max; }

void log_use_syslog(int on)
{
	use_syslog = on;
	if (on)
		openlog("ckptfs", LOG_PID, LOG_DAEMON);
}

void log_set_hook(log_hook_fn fn, void *arg)
{
	pthread_mutex_lock(&log_lock);
	hook = fn;
	hook_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024];
	va_list ap;

	if (lvl > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	if (hook) {
		hook(lvl, line, hook_arg);
	} else if (use_syslog) {
		syslog(prio[lvl], "%s", line);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(stderr, "%02d:%02d:%02d.%03ld ckptfs %s: %s\n",
			tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			names[lvl], line);
	}
	pthread_mutex_unlock(&log_lock);
}
