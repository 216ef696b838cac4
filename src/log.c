/*
 * log.c - stderr or syslog sink for log.h. Owns only the current level and sink;
 * each message is formatted into a local buffer and written with one call.
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
	log_use_syslog = use_syslog;
}

int log_level_parse(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

void log_msg(int level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char buf[2048];
	va_list ap;

	if (level > log_level_current)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log_use_syslog) {
		syslog(prio[level], "%s", buf);
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
