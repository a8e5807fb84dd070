/*
 * log.h: one line per event, to stderr (foreground) or syslog (daemon).
 *
 * Every user-visible failure is logged once, where its cause is known, with
 * the errno the user will see. Tests may install a hook to capture lines.
 */
#ifndef CKPT_LOG_H
#define CKPT_LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

typedef void (*log_hook_fn)(enum log_level lvl, const char *line, void *arg);

void log_set_level(enum log_level max);
void log_use_syslog(int on);
/* Replace output with @hook (NULL restores stderr/syslog). */
void log_set_hook(log_hook_fn hook, void *arg);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
