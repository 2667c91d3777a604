/* What a reload may change while skyrelay runs (src/server/reload.c).
 *
 * A reload loads the file into a new struct sr_config; before it is
 * published, every setting that the running process cannot change (it sized a
 * queue, opened a port, started a thread or a finder with it) gets the
 * running value back, and is reported as "needs restart". The list below is
 * the only place that decides: a key not in it is live (read again by the
 * workers at their next loop turn). Patterns are dotted paths of the key table
 * where `*` stands for one segment, and a trailing `.*` for everything under
 * the section. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "skyrelay/buf.h"
#include "skyrelay/config.h"

static const char *const restart_only[] = {
    /* the gRPC server's port, threads and channel arguments */
    "server.address", "server.workers", "server.max_receive_message_size",
    "server.max_concurrent_streams", "server.keepalive_time", "server.keepalive_timeout",
    "server.http2_bdp_probe", "server.max_connections", "server.max_connection_age",
    "server.max_connection_age_grace", "server.tls.*",
    /* the finder thread, the upstream channels' arguments and credentials */
    "upstream.finder", "upstream.refresh_interval", "upstream.kubernetes.*",
    "upstream.backoff_initial", "upstream.backoff_max", "upstream.max_receive_message_size",
    "upstream.tls.*",
    /* queues sized at start, plans chosen at start */
    "pipes.*.enabled", "pipes.*.upstream_method", "pipes.*.queue.max_events",
    "pipes.*.queue.max_bytes", "pipes.*.queue.persistent", "pipes.*.sender.max_inflight",
    "queue.total_max_bytes", "queue.disk.*",
    /* the admin port and the self meters */
    "telemetry.*",
};

/* Whether path matches pattern (see the file comment). */
static bool matches(const char *pattern, const char *path)
{
    while (*pattern) {
        if (pattern[0] == '*' && pattern[1] == '\0') return *path != '\0'; /* trailing: the rest */
        if (*pattern == '*') {                                           /* one segment */
            if (*path == '\0' || *path == '.') return false;
            while (*path && *path != '.') path++;
            pattern++;
            continue;
        }
        if (*pattern != *path) return false;
        pattern++;
        path++;
    }
    return *path == '\0';
}

static bool is_restart_only(const char *path, const struct sr_config *cur)
{
    /* the static finder's list is applied live; a DNS finder resolves its names at start */
    if (strcmp(path, "upstream.addresses") == 0) return cur->upstream.finder != SR_FINDER_STATIC;
    for (size_t i = 0; i < sizeof restart_only / sizeof restart_only[0]; i++)
        if (matches(restart_only[i], path)) return true;
    return false;
}

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_value(const struct sr_config_key *k, const struct sr_config *a, const void *fa,
                       const struct sr_config *b, const void *fb)
{
    switch (k->type) {
    case K_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case K_U32:
    case K_DURATION:
        return *(const uint32_t *)fa == *(const uint32_t *)fb;
    case K_SIZE:
        return *(const uint64_t *)fa == *(const uint64_t *)fb;
    case K_LEVEL:
    case K_ENUM:
        return *(const int *)fa == *(const int *)fb;
    case K_LISTEN:
    case K_STRING:
        return same_str(*(char *const *)fa, *(char *const *)fb);
    case K_EXPORT:
        return a->telemetry.export_prometheus == b->telemetry.export_prometheus &&
               a->telemetry.export_metrics_service == b->telemetry.export_metrics_service;
    case K_NODES:
        if (a->upstream.n_nodes != b->upstream.n_nodes) return false;
        for (size_t i = 0; i < a->upstream.n_nodes; i++)
            if (!same_str(a->upstream.nodes[i].address, b->upstream.nodes[i].address) ||
                a->upstream.nodes[i].weight != b->upstream.nodes[i].weight)
                return false;
        return true;
    }
    return true;
}

/* Gives next the running value of row k. Returns 0 or -ENOMEM. */
static int keep_running(const struct sr_config_key *k, struct sr_config *next, void *fn,
                        const struct sr_config *cur, const void *fc)
{
    switch (k->type) {
    case K_BOOL:
        *(bool *)fn = *(const bool *)fc;
        break;
    case K_U32:
    case K_DURATION:
        *(uint32_t *)fn = *(const uint32_t *)fc;
        break;
    case K_SIZE:
        *(uint64_t *)fn = *(const uint64_t *)fc;
        break;
    case K_LEVEL:
    case K_ENUM:
        *(int *)fn = *(const int *)fc;
        break;
    case K_LISTEN:
    case K_STRING: {
        char **dst = fn, *src = *(char *const *)fc, *copy = src;
        if (src && !sr_config_is_default_string(src) && !(copy = strdup(src))) return -ENOMEM;
        if (!sr_config_is_default_string(*dst)) free(*dst);
        *dst = copy;
        break;
    }
    case K_EXPORT:
        next->telemetry.export_prometheus = cur->telemetry.export_prometheus;
        next->telemetry.export_metrics_service = cur->telemetry.export_metrics_service;
        break;
    case K_NODES: {
        struct sr_node_config *v = calloc(cur->upstream.n_nodes ? cur->upstream.n_nodes : 1,
                                          sizeof(*v));
        if (!v) return -ENOMEM;
        for (size_t i = 0; i < cur->upstream.n_nodes; i++) {
            v[i].weight = cur->upstream.nodes[i].weight;
            if (!(v[i].address = strdup(cur->upstream.nodes[i].address))) {
                sr_config_free_nodes(v, i);
                return -ENOMEM;
            }
        }
        sr_config_free_nodes(next->upstream.nodes, next->upstream.n_nodes);
        next->upstream.nodes = v;
        next->upstream.n_nodes = cur->upstream.n_nodes;
        break;
    }
    }
    return 0;
}

int sr_config_keep_restart_only(struct sr_config *next, const struct sr_config *cur,
                                struct sr_buf *notes)
{
    size_t n_keys;
    const struct sr_config_key *keys = sr_config_keys(&n_keys);
    int kept = 0;

    for (size_t i = 0; i < n_keys; i++) {
        const struct sr_config_key *k = &keys[i];
        const void *fc = sr_config_key_field(cur, k);
        void *fn = (void *)sr_config_key_field(next, k);
        if (!fc || !fn || !is_restart_only(k->path, cur) || same_value(k, cur, fc, next, fn))
            continue;
        if (notes) {
            char *v = NULL;
            size_t len = 0;
            FILE *m = open_memstream(&v, &len);
            if (m) {
                fputs(" (running: ", m);
                sr_config_put_value(m, cur, k);
                fputs(", file: ", m);
                sr_config_put_value(m, next, k);
                fputc(')', m);
                fclose(m);
            }
            sr_buf_appendf(notes, "%s%s%s", kept ? ", " : "", k->path, v ? v : "");
            free(v);
        }
        if (keep_running(k, next, fn, cur, fc) != 0) return -ENOMEM;
        kept++;
    }
    return kept;
}
