/* Shared by the admin files (src/admin/), not part of the module's API. */
#ifndef SKYRELAY_ADMIN_INTERNAL_H
#define SKYRELAY_ADMIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "skyrelay/upstream.h"

/* True if n counts for readiness at now_ms (the rule is in ready.c). May ask
 * n's channel to connect. Main thread (any thread is safe). */
bool sr_node_reachable(struct sr_node *n, int64_t now_ms);

/* ---- request head (http_parse.c: pure, fuzzed by test/fuzz/fuzz_http.c) ---- */

/* What the admin port reads of a request; every pointer borrows the head. */
struct sr_admin_request {
    const char *method; /* e.g. "GET" (not NUL-terminated) */
    size_t method_len;
    const char *path;   /* the target up to '?', starts with '/' */
    size_t path_len;
    const char *authorization; /* the Authorization value, trimmed; NULL when absent */
    size_t authorization_len;
    size_t head_len;    /* bytes up to and including the empty line */
};

/* Parses head[0..len): an HTTP/1.0 or 1.1 request line and header lines, each ending in
 * CRLF, up to the first empty line (bytes after it are ignored). Fills *req with pointers
 * into head. Returns 0, or -EINVAL when the head is malformed or incomplete (answer 400).
 * Strict on purpose: no obsolete folding, no bare LF, no control bytes, at most one
 * Authorization header. Pure; any thread. */
int sr_admin_parse_head(const char *head, size_t len, struct sr_admin_request *req);

/* True when token is NULL or empty, or when req carries "Authorization: Bearer <token>"
 * (scheme case-insensitive); the token comparison is constant-time (sr_auth_equal). */
bool sr_admin_bearer_ok(const struct sr_admin_request *req, const char *token);

#endif
