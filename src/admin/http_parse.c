/* The admin port's request-head parser, kept apart from the libuv server
 * (http.c) so that it is pure (no I/O, no allocation, borrows its input) and
 * can be fuzzed on its own (test/fuzz/fuzz_http.c).
 *
 * Deliberately strict: the only clients are Prometheus, kubelet and curl, so
 * anything a proxy could read differently from us (obsolete line folding, a
 * space before the colon, two Authorization headers, control bytes, bare LF)
 * is refused with 400 instead of being guessed at. */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "skyrelay/auth.h"

/* RFC 9110 tchar: the characters of a method or a header name. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte of a request target (RFC 3986 characters; no space, no control, no DEL). */
static bool is_target_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f;
}

/* A byte of a header value: visible, space, tab or obs-text; no other control byte. */
static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int parse_request_line(const char *s, size_t n, struct sr_admin_request *req)
{
    size_t i = 0, start;

    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ' ') return -EINVAL;
    req->method = s;
    req->method_len = i;

    start = ++i;
    while (i < n && is_target_char((unsigned char)s[i])) i++;
    if (i == start || i == n || s[i] != ' ' || s[start] != '/') return -EINVAL;
    req->path = s + start;
    req->path_len = i - start;
    {
        const char *q = memchr(req->path, '?', req->path_len);
        if (q) req->path_len = (size_t)(q - req->path); /* no route takes parameters */
    }

    start = ++i;
    if (n - start != 8 || memcmp(s + start, "HTTP/1.", 7) != 0 ||
        (s[start + 7] != '0' && s[start + 7] != '1'))
        return -EINVAL;
    return 0;
}

/* One "name: value" line; remembers the Authorization value. */
static int parse_header(const char *s, size_t n, struct sr_admin_request *req)
{
    size_t i = 0, v, e;

    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ':') return -EINVAL; /* also a folded line (leading SP) */
    for (size_t j = i + 1; j < n; j++)
        if (!is_value_char((unsigned char)s[j])) return -EINVAL;
    if (i != 13 || strncasecmp(s, "authorization", 13) != 0) return 0;
    if (req->authorization) return -EINVAL; /* two of them: which one would a proxy check? */
    v = i + 1;
    while (v < n && (s[v] == ' ' || s[v] == '\t')) v++;
    e = n;
    while (e > v && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    req->authorization = s + v;
    req->authorization_len = e - v;
    return 0;
}

int sr_admin_parse_head(const char *head, size_t len, struct sr_admin_request *req)
{
    const char *p = head, *end = head + len;
    bool first = true;

    memset(req, 0, sizeof(*req));
    for (;;) {
        const char *cr = p < end ? memchr(p, '\r', (size_t)(end - p)) : NULL;
        size_t n;
        int rc;

        if (!cr || cr + 1 >= end || cr[1] != '\n') return -EINVAL; /* no CRLF: incomplete */
        n = (size_t)(cr - p);
        if (memchr(p, '\n', n)) return -EINVAL; /* a bare LF inside a line */
        if (n == 0) {
            if (first) return -EINVAL; /* no request line */
            req->head_len = (size_t)(cr + 2 - head);
            return 0;
        }
        rc = first ? parse_request_line(p, n, req) : parse_header(p, n, req);
        if (rc < 0) return rc;
        first = false;
        p = cr + 2;
    }
}

bool sr_admin_bearer_ok(const struct sr_admin_request *req, const char *token)
{
    const char *v = req->authorization;
    size_t n = req->authorization_len, i = 6;

    if (!token || !token[0]) return true;
    if (!v || n < 7 || strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
        return false; /* tells only that the header is malformed, nothing of the token */
    while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    return sr_auth_equal(v + i, n - i, token, strlen(token));
}
