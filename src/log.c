/*
 * log.c - stderr or syslog sink for log.h. Owns only the current level and sink;
 * each message is formatted into a local buffer and written with one call. The sink flag is
 * read and written atomically (mount.c switches to syslog after its threads have started).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int log_level_current = LOG_LEVEL_WARN;
static bool log_use_syslog;
static const char *log_ident = "objfs";

void log_init(const char *ident, int level, bool use_syslog)
{
	if (ident)
		log_ident = ident;
	log_level_current = level;
	if (use_syslog && !log_use_syslog)
		openlog(log_ident, LOG_PID, LOG_DAEMON);
	/* other threads may be logging when a daemon switches to syslog */
	__atomic_store_n(&log_use_syslog, use_syslog, __ATOMIC_RELEASE);
}

int log_level_parse(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

/* One message at syslog priority prio, or "ident: message" on stderr in one write(). */
static void log_emit(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void log_emit(int prio, const char *fmt, va_list ap)
{
	char buf[2048];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (__atomic_load_n(&log_use_syslog, __ATOMIC_ACQUIRE)) {
		syslog(prio, "%s", buf);
		return;
	}
	char line[2200];
	int n = snprintf(line, sizeof(line), "%s: %s\n", log_ident, buf);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nothing sensible to do */
	}
}

void log_msg(int level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	va_list ap;

	if (level > log_level_current)
		return;
	va_start(ap, fmt);
	log_emit(prio[level], fmt, ap);
	va_end(ap);
}

void log_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_NOTICE, fmt, ap);
	va_end(ap);
}
