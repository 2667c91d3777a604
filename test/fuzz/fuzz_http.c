/* libFuzzer target: the admin port's request-head parser (src/admin/http_parse.c)
 * and its bearer-token check on arbitrary bytes. Properties beyond "no crash,
 * no UB, no leak, no read past the input":
 * - an accepted head's pointers lie inside it, the method is a token, the path
 *   starts with '/' and holds no '?', the head ends with CRLFCRLF at head_len;
 * - parsing is a function of the head alone: the same bytes followed by
 *   anything parse the same (what http.c relies on when a client pipelines);
 * - a request carrying "Authorization: Bearer <t>" passes the check for token
 *   t and fails it for t with one byte more. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/admin/internal.h"

static void inside(const uint8_t *d, size_t n, const char *p, size_t len)
{
    if (p && ((const uint8_t *)p < d || (const uint8_t *)p + len > d + n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sr_admin_request req, again;
    char *more;

    if (sr_admin_parse_head((const char *)d, n, &req) != 0) return 0;
    inside(d, n, req.method, req.method_len);
    inside(d, n, req.path, req.path_len);
    inside(d, n, req.authorization, req.authorization_len);
    if (req.method_len == 0 || memchr(req.method, ' ', req.method_len)) abort();
    if (req.path_len == 0 || req.path[0] != '/' || memchr(req.path, '?', req.path_len)) abort();
    if (req.head_len < 4 || req.head_len > n || memcmp(d + req.head_len - 4, "\r\n\r\n", 4) != 0)
        abort();

    more = malloc(n + 5);
    memcpy(more, d, n);
    memcpy(more + n, "x\r\n\r\n", 5);
    if (sr_admin_parse_head(more, n + 5, &again) != 0 || again.head_len != req.head_len ||
        again.method_len != req.method_len || again.path_len != req.path_len ||
        again.authorization_len != req.authorization_len ||
        (req.authorization == NULL) != (again.authorization == NULL))
        abort();
    free(more);

    if (req.authorization && req.authorization_len > 7 &&
        strncasecmp(req.authorization, "Bearer ", 7) == 0) {
        size_t skip = 7;
        while (skip < req.authorization_len &&
               (req.authorization[skip] == ' ' || req.authorization[skip] == '\t'))
            skip++;
        if (skip < req.authorization_len && memchr(req.authorization + skip, '\0',
                                                   req.authorization_len - skip) == NULL) {
            size_t tl = req.authorization_len - skip;
            char *tok = malloc(tl + 2);
            memcpy(tok, req.authorization + skip, tl);
            tok[tl] = '\0';
            if (!sr_admin_bearer_ok(&req, tok)) abort();
            tok[tl] = 'x';
            tok[tl + 1] = '\0';
            if (sr_admin_bearer_ok(&req, tok)) abort();
            free(tok);
        }
    }
    return 0;
}
