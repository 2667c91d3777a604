/* A growable byte buffer for text built off the data path: the /metrics body,
 * the stats log lines. Always NUL-terminated once anything was appended.
 *
 * An allocation failure is sticky: the buffer remembers it, later appends do
 * nothing, and sr_buf_steal() returns NULL. A writer can append a whole
 * document and check once at the end (like a FILE's error flag).
 *
 *     struct sr_buf b;
 *     sr_buf_init(&b);
 *     sr_buf_appendf(&b, "%s=%llu", key, value);
 *     ...
 *     body = sr_buf_steal(&b, &len);   // NULL if out of memory
 *
 * Not thread-safe: one owner at a time. */
#ifndef SKYRELAY_BUF_H
#define SKYRELAY_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct sr_buf {
    char *p;    /* owned; NULL until the first allocation */
    size_t len; /* bytes in p, not counting the terminating NUL */
    size_t cap; /* bytes allocated at p */
    bool oom;   /* an allocation failed: the content is incomplete */
};

/* An empty buffer (allocates nothing). A zeroed struct is the same. */
void sr_buf_init(struct sr_buf *b);

/* Makes room for `more` bytes after len (and the NUL). 0, or -1 when the
 * allocation fails (the buffer is then marked oom). */
int sr_buf_reserve(struct sr_buf *b, size_t more);

/* Appends n bytes of s (s may hold NULs). 0, or -1 (oom). */
int sr_buf_append(struct sr_buf *b, const void *s, size_t n);

/* Appends a NUL-terminated string. 0, or -1 (oom). */
int sr_buf_puts(struct sr_buf *b, const char *s);

/* Appends printf output. 0, or -1 (oom or an encoding error). */
int sr_buf_appendf(struct sr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empties the buffer, keeps its memory, clears oom. */
void sr_buf_reset(struct sr_buf *b);

/* Frees the memory; the buffer is empty again (reusable). */
void sr_buf_free(struct sr_buf *b);

/* Returns the content, owned by the caller (free()), NUL-terminated, with its
 * length in *len (len may be NULL), and empties the buffer. NULL if an
 * allocation failed at any point (the memory is freed). An untouched buffer
 * gives "" (allocated). */
char *sr_buf_steal(struct sr_buf *b, size_t *len);

#endif
