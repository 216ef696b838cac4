/*
 * strbuf.h - a growable NUL-terminated string for building requests and documents.
 *
 * Appends never fail on the spot: an allocation failure sets oom and later appends do
 * nothing, so a builder checks once, at strbuf_finish(). Not shared between threads.
 */
#ifndef OBJFS_STRBUF_H
#define OBJFS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *s;    /* NUL-terminated once anything was added; NULL before */
	size_t len;
	size_t cap;
	bool oom;   /* an append failed; s is kept only to be freed */
};

#define STRBUF_INIT {NULL, 0, 0, false}

void strbuf_put(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_putc(struct strbuf *b, char c);
/* The finished string (malloc'd, "" when nothing was added; the caller frees it), or NULL
 * with errno ENOMEM after a failed append. The buffer is empty afterwards either way. */
char *strbuf_finish(struct strbuf *b);
/* Drop the contents. */
void strbuf_free(struct strbuf *b);

#endif
