/* Growable buffer (include/skyrelay/buf.h). Capacity doubles from 64 bytes,
 * so n appends cost O(log n) reallocations. */
#include "skyrelay/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

void sr_buf_init(struct sr_buf *b)
{
    memset(b, 0, sizeof(*b));
}

int sr_buf_reserve(struct sr_buf *b, size_t more)
{
    size_t need, cap;
    char *p;

    if (b->oom) return -1;
    if (more > SIZE_MAX - b->len - 1) goto fail;
    need = b->len + more + 1; /* the NUL */
    if (need <= b->cap) return 0;
    cap = b->cap ? b->cap : MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (!p) goto fail;
    if (!b->p) p[0] = '\0';
    b->p = p;
    b->cap = cap;
    return 0;
fail:
    b->oom = true;
    return -1;
}

int sr_buf_append(struct sr_buf *b, const void *s, size_t n)
{
    if (sr_buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sr_buf_puts(struct sr_buf *b, const char *s)
{
    return sr_buf_append(b, s, strlen(s));
}

int sr_buf_appendf(struct sr_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    /* most lines fit in what is left: one vsnprintf */
    if (sr_buf_reserve(b, 128) != 0) return -1;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) goto fail;
    if ((size_t)n >= b->cap - b->len) {
        if (sr_buf_reserve(b, (size_t)n) != 0) {
            b->p[b->len] = '\0'; /* drop the truncated part */
            return -1;
        }
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
fail:
    b->p[b->len] = '\0';
    b->oom = true;
    return -1;
}

void sr_buf_reset(struct sr_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p) b->p[0] = '\0';
}

void sr_buf_free(struct sr_buf *b)
{
    free(b->p);
    sr_buf_init(b);
}

char *sr_buf_steal(struct sr_buf *b, size_t *len)
{
    char *p;

    if (sr_buf_reserve(b, 0) != 0) { /* oom now or earlier; also allocates an untouched buffer */
        sr_buf_free(b);
        return NULL;
    }
    p = b->p;
    if (len) *len = b->len;
    sr_buf_init(b);
    return p;
}
