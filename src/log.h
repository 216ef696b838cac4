/*
 * log.h - the one logger: stderr in the foreground, syslog once daemonized.
 *
 * Thread-safe (one write per message). Debug logging costs one branch when off.
 * Never pass a secret to these functions.
 */
#ifndef OBJFS_LOG_H
#define OBJFS_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern int log_level_current;

/* Set the program name, level and sink. Safe to call again (e.g. after daemonizing). */
void log_init(const char *ident, int level, bool use_syslog);
/* Parse "error", "warn", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *name);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logged whatever the level (syslog priority LOG_NOTICE): what the user asked for by a
 * signal, e.g. the counters on SIGUSR1 or the credential re-read on SIGHUP. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)                                                                  \
	do {                                                                           \
		if (log_level_current >= LOG_LEVEL_INFO)                               \
			log_msg(LOG_LEVEL_INFO, __VA_ARGS__);                          \
	} while (0)
#define log_debug(...)                                                                 \
	do {                                                                           \
		if (log_level_current >= LOG_LEVEL_DEBUG)                              \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                         \
	} while (0)

#endif
