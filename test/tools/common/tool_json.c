#include "tool_json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(struct tool_json *j, size_t extra)
{
    if (j->len + extra + 1 <= j->cap)
        return;
    size_t cap = j->cap ? j->cap : 256;
    while (cap < j->len + extra + 1)
        cap *= 2;
    char *p = realloc(j->buf, cap);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    j->buf = p;
    j->cap = cap;
}

static void put(struct tool_json *j, const char *s, size_t n)
{
    reserve(j, n);
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void putf(struct tool_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct tool_json *j, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(j, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

void tool_json_init(struct tool_json *j)
{
    memset(j, 0, sizeof(*j));
    reserve(j, 0);
    j->buf[0] = '\0';
}

void tool_json_deinit(struct tool_json *j)
{
    free(j->buf);
    memset(j, 0, sizeof(*j));
}

const char *tool_json_str(const struct tool_json *j)
{
    return j->buf ? j->buf : "";
}

void tool_json_escape(struct tool_json *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    reserve(j, n + 2);
    put(j, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': put(j, "\\\"", 2); break;
        case '\\': put(j, "\\\\", 2); break;
        case '\n': put(j, "\\n", 2); break;
        case '\r': put(j, "\\r", 2); break;
        case '\t': put(j, "\\t", 2); break;
        case '\b': put(j, "\\b", 2); break;
        case '\f': put(j, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(j, u, 6);
            } else {
                put(j, (const char *)&s[i], 1);
            }
        }
    }
    put(j, "\"", 1);
}

/* Comma and key before a member at the current depth. */
static void member(struct tool_json *j, const char *key)
{
    if (j->depth > 0 && j->count[j->depth - 1]++ > 0)
        put(j, ",", 1);
    if (key) {
        tool_json_escape(j, key, strlen(key));
        put(j, ":", 1);
    }
}

static void open_(struct tool_json *j, const char *key, char c)
{
    member(j, key);
    put(j, &c, 1);
    if (j->depth < TOOL_JSON_MAX_DEPTH)
        j->count[j->depth] = 0;
    j->depth++;
}

static void close_(struct tool_json *j, char c)
{
    put(j, &c, 1);
    if (j->depth > 0)
        j->depth--;
}

void tool_json_obj_open(struct tool_json *j, const char *key) { open_(j, key, '{'); }
void tool_json_obj_close(struct tool_json *j) { close_(j, '}'); }
void tool_json_arr_open(struct tool_json *j, const char *key) { open_(j, key, '['); }
void tool_json_arr_close(struct tool_json *j) { close_(j, ']'); }

void tool_json_u64(struct tool_json *j, const char *key, uint64_t v)
{
    member(j, key);
    putf(j, "%" PRIu64, v);
}

void tool_json_u64_kn(struct tool_json *j, const char *key, size_t klen, uint64_t v)
{
    member(j, NULL);
    tool_json_escape(j, key, klen);
    putf(j, ":%" PRIu64, v);
}

void tool_json_i64(struct tool_json *j, const char *key, int64_t v)
{
    member(j, key);
    putf(j, "%" PRId64, v);
}

void tool_json_double(struct tool_json *j, const char *key, double v, int decimals)
{
    member(j, key);
    if (v != v || v > 1e300 || v < -1e300) /* NaN/inf are not JSON */
        v = 0;
    putf(j, "%.*f", decimals, v);
}

void tool_json_bool(struct tool_json *j, const char *key, int v)
{
    member(j, key);
    if (v)
        put(j, "true", 4);
    else
        put(j, "false", 5);
}

void tool_json_strn_member(struct tool_json *j, const char *key, const char *s, size_t n)
{
    member(j, key);
    tool_json_escape(j, s, n);
}

void tool_json_str_member(struct tool_json *j, const char *key, const char *s)
{
    tool_json_strn_member(j, key, s ? s : "", s ? strlen(s) : 0);
}
