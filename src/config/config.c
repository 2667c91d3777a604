/* Configuration loader.
 *
 * libyaml's loader (yaml_parser_load) turns the file into a document: a tree
 * of mapping, sequence and scalar nodes, each with its start mark. bind_map()
 * then walks the mappings, builds the dotted key path of every entry and looks
 * it up in `keys`, one row per leaf: path, type, offset, range. A path that is
 * the prefix of some row is a section and is walked in turn; anything else is
 * an unknown key. So the schema is this one table, not a state machine, and
 * every error knows its line, column and key path. The rows of each pipe
 * (pipes.<name>.*, and upstream_method for a pipe with modes) are made once
 * from the pipe definition table (src/core/pipes.c), between the fixed rows.
 *
 * Values are bound into a scratch copy (struct scratch): the public struct is
 * only written when the whole document is valid. The scratch also holds the
 * sections that only supply defaults of every pipe, the top-level `queue:`
 * and `pipe_defaults:`, which may come before or after `pipes:`; the per-pipe
 * values are resolved after the walk, from which keys were actually set
 * (resolve_pipes: built-in < queue < pipe_defaults < pipes.<name>, and a
 * pipe's built-in specific, such as meter routing `fixed`, counts as set at
 * pipe level).
 *
 * Defaults allocate nothing: the two pointer fields point at static storage
 * until a value is bound, and sr_config_deinit frees only what is not static. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "internal.h"
#include "skyrelay/config.h"
#include "skyrelay/disklog.h"
#include "skyrelay/log.h"
#include "skyrelay/pipes.h"

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define SEC 1000ull
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

/* ---- defaults ---- */

static char default_listen[] = "0.0.0.0:11800";
static char default_admin[] = "0.0.0.0:1234";
static char default_telemetry_service[] = "skyrelay";
static char default_node_address[] = "127.0.0.1:11801";
static struct sr_node_config default_nodes[] = {{default_node_address, 1}};

static const struct sr_queue_config default_queue = {
    .max_events = 20000,
    .max_bytes = 64 * MIB,
    .full_wait_ms = 5 * SEC,
    .persistent = true,
};

static const struct sr_sender_config default_sender = {
    .max_batch_events = 200,
    .max_batch_bytes = 4 * MIB,
    .linger_ms = 1000,
    .max_inflight = 4,
};

static const struct sr_routing_config default_routing = {
    .policy = SR_ROUTE_ROUND_ROBIN,
    .lru_size = 5000,
    .lru_ttl_ms = 180 * SEC,
};

static const char *const routing_policies[] = {"round_robin", "weighted_round_robin", "fixed",
                                               "least_loaded", NULL};

const char *sr_routing_policy_name(int policy)
{
    return policy >= 0 && policy <= SR_ROUTE_LEAST_LOADED ? routing_policies[policy] : "unknown";
}

/* The index of a policy name, or -1. */
static int routing_policy(const char *name)
{
    for (int i = 0; routing_policies[i]; i++)
        if (strcmp(routing_policies[i], name) == 0) return i;
    return -1;
}

void sr_config_defaults(struct sr_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->server.address = default_listen;
    cfg->server.workers = 0;
    cfg->server.max_receive_message_size = 50 * MIB;
    cfg->server.max_concurrent_streams = 1000;
    cfg->server.keepalive_time_ms = 60 * SEC;
    cfg->server.keepalive_timeout_ms = 20 * SEC;

    cfg->upstream.nodes = default_nodes;
    cfg->upstream.n_nodes = sizeof default_nodes / sizeof default_nodes[0];
    cfg->upstream.call_timeout_ms = 10 * SEC;
    cfg->upstream.backoff_initial_ms = 200;
    cfg->upstream.backoff_max_ms = 10 * SEC;
    cfg->upstream.retry_max_ms = 60 * SEC;
    cfg->upstream.sync_timeout_ms = 20 * SEC;
    cfg->upstream.stall_timeout_ms = 2 * SEC;
    cfg->upstream.refresh_interval_ms = 10 * SEC;
    cfg->upstream.kubernetes.extra_port = 11800;
    cfg->upstream.max_receive_message_size = 50 * MIB;

    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        cfg->pipes[i].enabled = true;
        cfg->pipes[i].mode = 0; /* its first mode: SR_SEGMENT_COLLECT, SR_ALS_PER_IDENTIFIER */
        cfg->pipes[i].queue = default_queue;
        cfg->pipes[i].sender = default_sender;
        cfg->pipes[i].routing = default_routing;
    }
    /* Per-pipe specifics, from the pipe definitions (src/core/pipes.c; meter: fixed):
     * whatever differs here from default_queue/_sender/_routing behaves as if set under
     * pipes.<name>, so pipe_defaults does not override it (resolve_pipes). */
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        int policy = sr_pipe_defs[i].routing ? routing_policy(sr_pipe_defs[i].routing) : -1;
        if (policy >= 0) cfg->pipes[i].routing.policy = policy;
    }

    cfg->log.level = SR_LOG_INFO;
    cfg->server.max_connections = 4000;
    cfg->server.max_connection_age_ms = 0;
    cfg->server.max_connection_age_grace_ms = 30 * SEC;
    cfg->telemetry.prometheus_address = default_admin;
    cfg->telemetry.export_prometheus = true;
    cfg->telemetry.service = default_telemetry_service;
    cfg->telemetry.interval_ms = 10 * SEC;
    cfg->queue.disk.max_bytes = 1 * GIB;
    cfg->queue.disk.min_free = 64 * MIB;
    cfg->queue.disk.segment_size = 16 * MIB;
    cfg->queue.disk.sync = SR_DISK_SYNC_INTERVAL;
    cfg->queue.disk.sync_interval_ms = 1 * SEC;
    cfg->shutdown.grace_period_ms = 20 * SEC;
    cfg->shutdown.stream_grace_ms = 5 * SEC;
}

static void free_nodes(struct sr_node_config *nodes, size_t n)
{
    if (nodes == default_nodes) return;
    for (size_t i = 0; i < n; i++) free(nodes[i].address);
    free(nodes);
}

void sr_config_deinit(struct sr_config *cfg)
{
    free(cfg->path);
    if (cfg->server.address != default_listen) free(cfg->server.address);
    free(cfg->server.authentication);
    if (cfg->telemetry.prometheus_address != default_admin) free(cfg->telemetry.prometheus_address);
    if (cfg->telemetry.service != default_telemetry_service) free(cfg->telemetry.service);
    free(cfg->telemetry.instance);
    free(cfg->upstream.authentication);
    free(cfg->queue.dead_letter_dir);
    free(cfg->queue.disk.dir);
    free(cfg->upstream.kubernetes.namespaces);
    free(cfg->upstream.kubernetes.label_selector);
    free(cfg->upstream.kubernetes.field_selector);
    free(cfg->upstream.kubernetes.api_server);
    free(cfg->upstream.kubernetes.bearer_token_file);
    free(cfg->upstream.kubernetes.ca_file);
    free_nodes(cfg->upstream.nodes, cfg->upstream.n_nodes);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- the schema ---- */

struct scratch {
    struct sr_config cfg; /* first: a key of cfg has the same offset in both */
    struct sr_queue_config queue; /* top-level `queue:`: the default of every pipe */
    struct sr_pipe_config pd;     /* `pipe_defaults:` (queue, sender, routing; set keys only) */
};

/* The row type, struct sr_config_key, is in internal.h: the printer (print.c) walks the
 * same table. */

static const char *const finders[] = {"static", "dns", "kubernetes", NULL};
static const char *const k8s_kinds[] = {"pod", "endpoints", NULL};
static const char *const disk_syncs[] = {[SR_DISK_SYNC_NONE] = "none",
                                          [SR_DISK_SYNC_INTERVAL] = "interval",
                                          [SR_DISK_SYNC_ALWAYS] = "always", NULL};
static const char *const validate_depths[] = {[SR_VALIDATE_DEEP] = "deep",
                                               [SR_VALIDATE_TOP] = "top", NULL};

#define OFF(member) offsetof(struct scratch, member)

/* off(member): the row's offset macro (OFF, or PIPE_OFF for the per-pipe template). */
#define QUEUE_KEYS(prefix, off, q)                                                                \
    {prefix "queue.max_events", K_U32, off(q.max_events), 1, 100000000, NULL},                    \
    {prefix "queue.max_bytes", K_SIZE, off(q.max_bytes), 1, 64 * GIB, NULL},                      \
    {prefix "queue.full_wait", K_DURATION, off(q.full_wait_ms), 0, 10 * MIN, NULL},               \
    {prefix "queue.persistent", K_BOOL, off(q.persistent), 0, 0, NULL}

/* The keys a pipe inherits: under pipes.<name>. and pipe_defaults. (p: a struct sr_pipe_config) */
#define PIPE_SETTINGS(prefix, off, p)                                                             \
    QUEUE_KEYS(prefix, off, p.queue),                                                             \
    {prefix "sender.max_batch_events", K_U32, off(p.sender.max_batch_events), 1, 100000, NULL},   \
    {prefix "sender.max_batch_bytes", K_SIZE, off(p.sender.max_batch_bytes), 1, 1 * GIB, NULL},   \
    {prefix "sender.linger", K_DURATION, off(p.sender.linger_ms), 1, 60 * SEC, NULL},             \
    {prefix "sender.max_inflight", K_U32, off(p.sender.max_inflight), 1, 64, NULL},               \
    {prefix "routing.policy", K_ENUM, off(p.routing.policy), 0, 0, routing_policies},             \
    {prefix "routing.lru_size", K_U32, off(p.routing.lru_size), 1, 1u << 24, NULL},               \
    {prefix "routing.lru_ttl", K_DURATION, off(p.routing.lru_ttl_ms), 1000, 24 * HOUR, NULL},     \
    {prefix "validate", K_ENUM, off(p.validate), 0, 0, validate_depths}

/* The keys before pipes: in file order (--print-config prints in table order). */
static const struct sr_config_key head[] = {
    {"server.address", K_LISTEN, OFF(cfg.server.address), 0, 0, NULL},
    {"server.workers", K_U32, OFF(cfg.server.workers), 0, 64, NULL},
    {"server.max_receive_message_size", K_SIZE, OFF(cfg.server.max_receive_message_size), 1,
     1 * GIB, NULL},
    {"server.max_concurrent_streams", K_U32, OFF(cfg.server.max_concurrent_streams), 1, 1000000,
     NULL},
    {"server.keepalive_time", K_DURATION, OFF(cfg.server.keepalive_time_ms), SEC, 24 * HOUR, NULL},
    {"server.keepalive_timeout", K_DURATION, OFF(cfg.server.keepalive_timeout_ms), SEC, HOUR, NULL},
    {"server.http2_bdp_probe", K_BOOL, OFF(cfg.server.http2_bdp_probe), 0, 0, NULL},
    {"server.authentication", K_STRING, OFF(cfg.server.authentication), 0, 0, NULL},
    {"server.max_connections", K_U32, OFF(cfg.server.max_connections), 1, 10000000, NULL},
    /* gRPC takes the age as an int of milliseconds: INT_MAX ms is 24.8 days */
    {"server.max_connection_age", K_DURATION, OFF(cfg.server.max_connection_age_ms), 0, 24 * DAY,
     NULL},
    {"server.max_connection_age_grace", K_DURATION, OFF(cfg.server.max_connection_age_grace_ms), 0,
     HOUR, NULL},

    {"upstream.finder", K_ENUM, OFF(cfg.upstream.finder), 0, 0, finders},
    {"upstream.refresh_interval", K_DURATION, OFF(cfg.upstream.refresh_interval_ms), 100, HOUR,
     NULL},
    {"upstream.kubernetes.namespaces", K_STRING, OFF(cfg.upstream.kubernetes.namespaces), 0, 0,
     NULL},
    {"upstream.kubernetes.kind", K_ENUM, OFF(cfg.upstream.kubernetes.kind), 0, 0, k8s_kinds},
    {"upstream.kubernetes.label_selector", K_STRING, OFF(cfg.upstream.kubernetes.label_selector),
     0, 0, NULL},
    {"upstream.kubernetes.field_selector", K_STRING, OFF(cfg.upstream.kubernetes.field_selector),
     0, 0, NULL},
    {"upstream.kubernetes.extra_port", K_U32, OFF(cfg.upstream.kubernetes.extra_port), 1, 65535,
     NULL},
    {"upstream.kubernetes.api_server", K_STRING, OFF(cfg.upstream.kubernetes.api_server), 0, 0,
     NULL},
    {"upstream.kubernetes.bearer_token_file", K_STRING,
     OFF(cfg.upstream.kubernetes.bearer_token_file), 0, 0, NULL},
    {"upstream.kubernetes.ca_file", K_STRING, OFF(cfg.upstream.kubernetes.ca_file), 0, 0, NULL},
    {"upstream.kubernetes.insecure_skip_verify", K_BOOL,
     OFF(cfg.upstream.kubernetes.insecure_skip_verify), 0, 0, NULL},
    {"upstream.addresses", K_NODES, OFF(cfg.upstream.nodes), 0, 0, NULL},
    {"upstream.call_timeout", K_DURATION, OFF(cfg.upstream.call_timeout_ms), 10, HOUR, NULL},
    {"upstream.backoff_initial", K_DURATION, OFF(cfg.upstream.backoff_initial_ms), 1, 10 * MIN,
     NULL},
    {"upstream.backoff_max", K_DURATION, OFF(cfg.upstream.backoff_max_ms), 1, HOUR, NULL},
    {"upstream.retry_max", K_DURATION, OFF(cfg.upstream.retry_max_ms), 0, 24 * HOUR, NULL},
    {"upstream.authentication", K_STRING, OFF(cfg.upstream.authentication), 0, 0, NULL},
    {"upstream.sync_timeout", K_DURATION, OFF(cfg.upstream.sync_timeout_ms), 10, HOUR, NULL},
    {"upstream.stall_timeout", K_DURATION, OFF(cfg.upstream.stall_timeout_ms), 0, HOUR, NULL},
    {"upstream.max_inflight_per_node", K_U32, OFF(cfg.upstream.max_inflight_per_node), 0, 64, NULL},
    {"upstream.max_receive_message_size", K_SIZE, OFF(cfg.upstream.max_receive_message_size), 1,
     1 * GIB, NULL},

    QUEUE_KEYS("", OFF, queue),
    {"queue.total_max_bytes", K_SIZE, OFF(cfg.queue.total_max_bytes), 0, 1024 * GIB, NULL},
    {"queue.dead_letter_dir", K_STRING, OFF(cfg.queue.dead_letter_dir), 0, 0, NULL},
    {"queue.disk.dir", K_STRING, OFF(cfg.queue.disk.dir), 0, 0, NULL},
    {"queue.disk.max_bytes", K_SIZE, OFF(cfg.queue.disk.max_bytes), 1 * MIB, 64 * 1024 * GIB, NULL},
    {"queue.disk.min_free", K_SIZE, OFF(cfg.queue.disk.min_free), 0, 64 * 1024 * GIB, NULL},
    {"queue.disk.segment_size", K_SIZE, OFF(cfg.queue.disk.segment_size), 64 * KIB, 1 * GIB, NULL},
    {"queue.disk.sync", K_ENUM, OFF(cfg.queue.disk.sync), 0, 0, disk_syncs},
    {"queue.disk.sync_interval", K_DURATION, OFF(cfg.queue.disk.sync_interval_ms), 10, HOUR, NULL},

    PIPE_SETTINGS("pipe_defaults.", OFF, pd),
};

/* The keys of one pipe, relative: "pipes.<name>." is put in front, and the offset is into
 * the pipe's struct sr_pipe_config (its first member p). Then, for a pipe with modes,
 * pipes.<name>.upstream_method (build_keys). */
struct pipe_template {
    struct sr_pipe_config p;
};
#define PIPE_OFF(member) offsetof(struct pipe_template, member)
static const struct sr_config_key pipe_keys[] = {
    {"enabled", K_BOOL, PIPE_OFF(p.enabled), 0, 0, NULL},
    PIPE_SETTINGS("", PIPE_OFF, p),
};

/* The keys after pipes. */
static const struct sr_config_key tail[] = {
    {"log.level", K_LEVEL, OFF(cfg.log.level), 0, 0, NULL},
    {"telemetry.export", K_EXPORT, OFF(cfg.telemetry.export_prometheus), 0, 0, NULL},
    {"telemetry.prometheus_address", K_LISTEN, OFF(cfg.telemetry.prometheus_address), 0, 0, NULL},
    {"telemetry.service", K_STRING, OFF(cfg.telemetry.service), 0, 0, NULL},
    {"telemetry.instance", K_STRING, OFF(cfg.telemetry.instance), 0, 0, NULL},
    {"telemetry.interval", K_DURATION, OFF(cfg.telemetry.interval_ms), 1000, HOUR, NULL},
    {"shutdown.grace_period", K_DURATION, OFF(cfg.shutdown.grace_period_ms), 0, HOUR, NULL},
    {"shutdown.stream_grace", K_DURATION, OFF(cfg.shutdown.stream_grace_ms), 0, HOUR, NULL},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define PIPE_ROWS (COUNT(pipe_keys) + 1) /* + upstream_method */
#define KEYS_MAX (COUNT(head) + SR_PIPE_COUNT * PIPE_ROWS + COUNT(tail))
#define PATH_MAX_LEN 96

/* The table: head, each pipe's rows in enum sr_pipe_id order, tail; built once from the
 * pipe definitions (src/core/pipes.c). */
static struct sr_config_key keys[KEYS_MAX];
static size_t n_keys;
static char pipe_paths[SR_PIPE_COUNT * PIPE_ROWS][PATH_MAX_LEN];
static pthread_once_t keys_built = PTHREAD_ONCE_INIT;

static void add_pipe_key(const struct sr_config_key *tpl, int pipe, const char *suffix,
                         size_t off)
{
    char *path = pipe_paths[n_keys - COUNT(head)];
    int n = snprintf(path, PATH_MAX_LEN, "pipes.%s.%s", sr_pipe_defs[pipe].name, suffix);

    if (n < 0 || n >= PATH_MAX_LEN) { /* a pipe name of 50 characters: a programming error */
        fprintf(stderr, "skyrelay: pipe name '%s' too long (src/config/config.c)\n",
                sr_pipe_defs[pipe].name);
        abort();
    }
    keys[n_keys] = *tpl;
    keys[n_keys].path = path;
    keys[n_keys].off = OFF(cfg.pipes) + (size_t)pipe * sizeof(struct sr_pipe_config) + off;
    n_keys++;
}

static void build_keys(void)
{
    memcpy(keys, head, sizeof head);
    n_keys = COUNT(head);
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        for (size_t j = 0; j < COUNT(pipe_keys); j++)
            add_pipe_key(&pipe_keys[j], i, pipe_keys[j].path, pipe_keys[j].off);
        if (sr_pipe_defs[i].modes) {
            const struct sr_config_key mode = {"", K_ENUM, 0, 0, 0, sr_pipe_defs[i].modes};
            add_pipe_key(&mode, i, "upstream_method", offsetof(struct sr_pipe_config, mode));
        }
    }
    memcpy(keys + n_keys, tail, sizeof tail);
    n_keys += COUNT(tail);
}

const struct sr_config_key *sr_config_keys(size_t *n)
{
    pthread_once(&keys_built, build_keys);
    *n = n_keys;
    return keys;
}

const void *sr_config_key_field(const struct sr_config *cfg, const struct sr_config_key *k)
{
    return k->off < sizeof *cfg ? (const char *)cfg + k->off : NULL;
}

/* ---- the walk ---- */

struct ctx {
    const char *name; /* file name in messages */
    FILE *err;
    int errors;
    yaml_document_t *doc;
    struct scratch s;
    struct {
        bool set;
        size_t line, col;
    } seen[KEYS_MAX];
};

static void verror(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt,
                   va_list ap)
{
    c->errors++;
    if (!c->err) return;
    fprintf(c->err, "%s:", c->name);
    if (line) fprintf(c->err, "%zu:%zu:", line, col);
    if (path) fprintf(c->err, " %s:", path);
    fputc(' ', c->err);
    vfprintf(c->err, fmt, ap);
    fputc('\n', c->err);
}

static void __attribute__((format(printf, 5, 6)))
report_at(struct ctx *c, size_t line, size_t col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, line, col, path, fmt, ap);
    va_end(ap);
}

/* An error about node n (yaml marks are 0-based). */
static void __attribute__((format(printf, 4, 5)))
report(struct ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, n->start_mark.line + 1, n->start_mark.column + 1, path, fmt, ap);
    va_end(ap);
}

static const char *kind_name(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "mapping" : n->type == YAML_SEQUENCE_NODE ? "sequence"
                                                                                    : "scalar";
}

/* `key:` with nothing after it, `~` or `null`: an empty section. */
static bool is_null(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
            strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
}

static int find_key(const char *path)
{
    for (size_t i = 0; i < n_keys; i++)
        if (strcmp(keys[i].path, path) == 0) return (int)i;
    return -1;
}

static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < n_keys; i++)
        if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.') return true;
    return false;
}

/* Whether the key bound to field `f` (inside c->s) was set in the document. */
static bool key_set(const struct ctx *c, const void *f)
{
    size_t off = (size_t)((const char *)f - (const char *)&c->s);
    for (size_t i = 0; i < n_keys; i++)
        if (keys[i].off == off) return c->seen[i].set;
    return false;
}

/* " (from environment NAME)", or with the value for messages that do not quote it. */
static const char *env_note(const struct sr_config_expanded *x, bool with_value, char *buf,
                            size_t n)
{
    buf[0] = '\0';
    if (x->env_name && with_value)
        snprintf(buf, n, " (got '%s' from environment %.*s)", x->text, (int)x->env_name_len,
                 x->env_name);
    else if (x->env_name)
        snprintf(buf, n, " (from environment %.*s)", (int)x->env_name_len, x->env_name);
    return buf;
}

static void format_bound(const struct sr_config_key *k, uint64_t v, char *buf, size_t n)
{
    if (k->type == K_SIZE)
        sr_config_format_size(v, buf, n);
    else if (k->type == K_DURATION)
        sr_config_format_duration(v, buf, n);
    else
        snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* A number-like leaf: parse, range-check, store. */
static void bind_number(struct ctx *c, const struct sr_config_key *k, const yaml_node_t *v,
                        const char *path, const struct sr_config_expanded *x)
{
    static const char *const expected[] = {
        [K_U32] = "number 'N' (expected a non-negative integer)",
        [K_SIZE] = "size 'N' (expected e.g. 512, 64KiB, 50MiB, 1GiB)",
        [K_DURATION] = "duration 'N' (expected e.g. 250ms, 5s, 2m, 1h; a bare number is ms)",
    };
    char note[512], lo[32], hi[32];
    void *field = (char *)&c->s + k->off;
    uint64_t val = 0;
    int rc;

    if (k->type == K_SIZE)
        rc = sr_config_value_size(x->text, &val);
    else if (k->type == K_DURATION)
        rc = sr_config_value_duration(x->text, &val);
    else
        rc = sr_config_value_uint(x->text, &val);

    if (rc == SR_CFG_EINVAL) {
        const char *e = expected[k->type], *q = strchr(e, 'N');
        report(c, v, path, "invalid %.*s%s%s%s", (int)(q - e), e, x->text, q + 1,
               env_note(x, false, note, sizeof note));
        return;
    }
    if (rc == SR_CFG_ERANGE || val < k->min || val > k->max) {
        format_bound(k, k->min, lo, sizeof lo);
        format_bound(k, k->max, hi, sizeof hi);
        report(c, v, path, "must be between %s and %s%s", lo, hi,
               env_note(x, true, note, sizeof note));
        return;
    }
    if (k->type == K_SIZE)
        *(uint64_t *)field = val;
    else
        *(uint32_t *)field = (uint32_t)val;
}

/* Expands and appends the node list in scalar v; 0 or -1 (reported). */
static int add_nodes(struct ctx *c, const yaml_node_t *v, const char *path, bool item,
                     struct sr_node_config **nodes, size_t *n)
{
    struct sr_config_expanded x;
    const char *why, *bad;
    size_t bad_len, n0 = *n;
    char note[512];
    int rc = -1;

    if (sr_config_expand((const char *)v->data.scalar.value, v->data.scalar.length, &x, &why)) {
        report(c, v, path, "%s", why);
        return -1;
    }
    if (sr_config_nodes_append(x.text, strlen(x.text), nodes, n, &why, &bad, &bad_len) != 0) {
        if (bad_len)
            report(c, v, path, "'%.*s': %s%s", (int)bad_len, bad, why,
                   env_note(&x, false, note, sizeof note));
        else
            report(c, v, path, "%s%s", why, env_note(&x, false, note, sizeof note));
        goto done;
    }
    if (item && *n == n0) {
        report(c, v, path, "empty entry in node list%s", env_note(&x, false, note, sizeof note));
        goto done;
    }
    rc = 0;
done:
    free(x.text);
    return rc;
}

static void bind_nodes(struct ctx *c, const yaml_node_t *v, const char *path)
{
    struct sr_node_config *nodes = NULL;
    size_t n = 0;
    int failed = 0;

    if (v->type == YAML_SCALAR_NODE) {
        failed = add_nodes(c, v, path, false, &nodes, &n);
    } else if (v->type == YAML_SEQUENCE_NODE) {
        size_t i = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++, i++) {
            const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            char ipath[300];
            snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
            if (item->type != YAML_SCALAR_NODE) {
                report(c, item, ipath, "must be a \"host:port[#weight]\" string, not a %s",
                       kind_name(item));
                failed = -1;
            } else if (add_nodes(c, item, ipath, true, &nodes, &n) != 0) {
                failed = -1;
            }
        }
    } else {
        report(c, v, path, "must be a \"host:port[#weight]\" list: a string or a sequence of "
                           "strings, not a mapping");
        failed = -1;
    }
    if (!failed && n == 0) {
        report(c, v, path, "must list at least one upstream node");
        failed = -1;
    }
    if (failed) {
        free_nodes(nodes, n);
        return;
    }
    free_nodes(c->s.cfg.upstream.nodes, c->s.cfg.upstream.n_nodes);
    c->s.cfg.upstream.nodes = nodes;
    c->s.cfg.upstream.n_nodes = n;
}

/* "a, b or c" */
static void join_names(const char *const *names, char *buf, size_t n)
{
    size_t len = 0, count = 0;
    while (names[count]) count++;
    buf[0] = '\0';
    for (size_t i = 0; i < count && len < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, names[i]);
    }
}

static void bind_leaf(struct ctx *c, size_t ki, const yaml_node_t *v, const char *path)
{
    const struct sr_config_key *k = &keys[ki];
    void *field = (char *)&c->s + k->off;
    struct sr_config_expanded x = {0};
    const char *why;
    char note[512], list[128], *addr;
    int errors = c->errors, rc, level;
    bool b;

    if (k->type == K_NODES) {
        bind_nodes(c, v, path);
        goto check;
    }
    if (v->type != YAML_SCALAR_NODE) {
        report(c, v, path, "must be a scalar, not a %s", kind_name(v));
        goto done;
    }
    if (sr_config_expand((const char *)v->data.scalar.value, v->data.scalar.length, &x, &why)) {
        report(c, v, path, "%s", why);
        goto done;
    }
    if (x.text[0] == '\0' && k->type != K_STRING) { /* a string may be empty: "off" */
        report(c, v, path, "%s",
               x.placeholders ? "empty value after substituting ${...}" : "missing value");
        goto done;
    }
    env_note(&x, false, note, sizeof note);
    switch (k->type) {
    case K_BOOL:
        if (sr_config_value_bool(x.text, &b) != 0)
            report(c, v, path, "invalid boolean '%s' (expected true/false, yes/no or on/off)%s",
                   x.text, note);
        else
            *(bool *)field = b;
        break;
    case K_U32:
    case K_SIZE:
    case K_DURATION:
        bind_number(c, k, v, path, &x);
        break;
    case K_LISTEN:
        rc = sr_config_listen_address(x.text, &addr, &why);
        if (rc == -ENOMEM) {
            report(c, v, path, "out of memory");
        } else if (rc != 0) {
            report(c, v, path, "'%s': %s%s", x.text, why, note);
        } else {
            char **dst = (char **)field;
            if (*dst != default_listen && *dst != default_admin) free(*dst);
            *dst = addr;
        }
        break;
    case K_EXPORT: {
        char *items = strdup(x.text), *save = NULL, *tok;
        bool prom = false, ms = false, bad = false;
        if (!items) {
            report(c, v, path, "out of memory");
            break;
        }
        for (tok = strtok_r(items, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
            if (strcmp(tok, "prometheus") == 0)
                prom = true;
            else if (strcmp(tok, "metrics_service") == 0)
                ms = true;
            else if (strcmp(tok, "none") != 0 && !bad) {
                report(c, v, path, "unknown export '%s' (expected prometheus, metrics_service or none)%s",
                       tok, note);
                bad = true;
            }
        }
        free(items);
        c->s.cfg.telemetry.export_prometheus = prom;
        c->s.cfg.telemetry.export_metrics_service = ms;
        break;
    }
    case K_STRING: {
        char **dst = (char **)((char *)&c->s + k->off);
        char *copy = x.text[0] ? strdup(x.text) : NULL;
        if (x.text[0] && !copy) {
            report(c, v, path, "out of memory");
            break;
        }
        if (*dst != default_telemetry_service) free(*dst);
        *dst = copy;
        break;
    }
    case K_LEVEL:
        level = sr_config_value_log_level(x.text);
        if (level < 0)
            report(c, v, path, "unknown log level '%s' (expected error, warn, info or debug)%s",
                   x.text, note);
        else
            *(int *)field = level;
        break;
    case K_ENUM:
        level = -1;
        for (int i = 0; k->names[i] && level < 0; i++)
            if (strcmp(k->names[i], x.text) == 0) level = i;
        join_names(k->names, list, sizeof list);
        if (level < 0)
            report(c, v, path, "unknown value '%s' (expected %s)%s", x.text, list, note);
        else
            *(int *)field = level;
        break;
    case K_NODES:
        break;
    }
check:
    if (c->errors != errors) goto done;
    c->seen[ki].set = true;
    c->seen[ki].line = v->start_mark.line + 1;
    c->seen[ki].col = v->start_mark.column + 1;
done:
    free(x.text);
}

static void bind_map(struct ctx *c, const yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const yaml_node_t *first = NULL;
        char path[256];
        int ki;

        if (k->type != YAML_SCALAR_NODE) {
            report(c, k, *prefix ? prefix : NULL, "a key must be a scalar, not a %s",
                  kind_name(k));
            continue;
        }
        snprintf(path, sizeof path, "%s%s%.*s", prefix, *prefix ? "." : "",
                 (int)k->data.scalar.length, (const char *)k->data.scalar.value);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p && !first; q++) {
            const yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
            if (qk->type == YAML_SCALAR_NODE && qk->data.scalar.length == k->data.scalar.length &&
                memcmp(qk->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
                first = qk;
        }
        if (first) {
            report(c, k, path, "duplicate key (first at %zu:%zu)", first->start_mark.line + 1,
                   first->start_mark.column + 1);
        } else if ((ki = find_key(path)) >= 0) {
            bind_leaf(c, (size_t)ki, v, path);
        } else if (!is_section(path)) {
            report(c, k, path, "unknown key");
        } else if (v->type == YAML_MAPPING_NODE) {
            bind_map(c, v, path);
        } else if (!is_null(v)) {
            report(c, v, path, "must be a mapping, not a %s", kind_name(v));
        }
    }
}

static size_t field_size(const struct sr_config_key *k)
{
    switch (k->type) {
    case K_BOOL: return sizeof(bool);
    case K_SIZE: return sizeof(uint64_t);
    case K_U32:
    case K_DURATION: return sizeof(uint32_t);
    case K_ENUM:
    case K_LEVEL: return sizeof(int);
    default: return sizeof(char *);
    }
}

/* Every pipe setting that pipes.<name> leaves unset comes from, highest first:
 * the pipe's built-in specific (sr_config_defaults sets it apart from the
 * generic default: it counts as written under pipes.<name>), pipe_defaults,
 * the top-level queue (queue keys), the built-in default. Driven by the
 * pipe_defaults rows of `keys`, whose offsets mirror struct sr_pipe_config. */
static void resolve_pipes(struct ctx *c)
{
    const struct sr_pipe_config generic = {
        .queue = default_queue, .sender = default_sender, .routing = default_routing};
    const size_t pd = OFF(pd), q0 = offsetof(struct sr_pipe_config, queue);
    struct sr_config builtin; /* allocates nothing */

    sr_config_defaults(&builtin);
    for (size_t ki = 0; ki < n_keys; ki++) {
        size_t rel = keys[ki].off - pd, size = field_size(&keys[ki]);
        if (keys[ki].off < pd || rel >= sizeof(struct sr_pipe_config)) continue;
        bool from_queue = rel >= q0 && rel < q0 + sizeof(struct sr_queue_config);
        for (int i = 0; i < SR_PIPE_COUNT; i++) {
            char *dst = (char *)&c->s.cfg.pipes[i] + rel;
            const char *src = NULL;
            if (key_set(c, dst) ||
                memcmp((const char *)&builtin.pipes[i] + rel, (const char *)&generic + rel, size))
                continue;
            if (c->seen[ki].set)
                src = (const char *)&c->s.pd + rel;
            else if (from_queue && key_set(c, (char *)&c->s.queue + (rel - q0)))
                src = (const char *)&c->s.queue + (rel - q0);
            if (src) memcpy(dst, src, size);
        }
    }
}

/* After the walk: the per-pipe settings, and the checks that involve more than one key. */
static void finish(struct ctx *c)
{
    struct sr_config *cfg = &c->s.cfg;
    char a[32], b[32];

    resolve_pipes(c);

    /* only on an otherwise valid config: a rejected value would compare as its default */
    if (c->errors) return;
    if (cfg->upstream.backoff_max_ms < cfg->upstream.backoff_initial_ms) {
        int ki = find_key("upstream.backoff_max");
        if (!c->seen[ki].set) ki = find_key("upstream.backoff_initial");
        sr_config_format_duration(cfg->upstream.backoff_max_ms, a, sizeof a);
        sr_config_format_duration(cfg->upstream.backoff_initial_ms, b, sizeof b);
        report_at(c, c->seen[ki].line, c->seen[ki].col, keys[ki].path,
                  "upstream.backoff_max (%s) must not be less than upstream.backoff_initial (%s)",
                  a, b);
    }
}

/* libyaml stops at the first syntax error: report it where it is. */
static void syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;

    if (p->error == YAML_MEMORY_ERROR) {
        report_at(c, 0, 0, NULL, "out of memory");
        return;
    }
    if (p->error == YAML_READER_ERROR) { /* only a byte offset is known */
        line = 1;
        col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
                col++;
            }
        }
    }
    if (p->context)
        report_at(c, line, col, NULL, "syntax error: %s (%s at %zu:%zu)",
                  p->problem ? p->problem : "?", p->context, p->context_mark.line + 1,
                  p->context_mark.column + 1);
    else
        report_at(c, line, col, NULL, "syntax error: %s", p->problem ? p->problem : "?");
}

int sr_config_load_string(struct sr_config *cfg, const char *name, const char *text, size_t len,
                          FILE *err)
{
    struct ctx c;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_parser = false, have_doc = false;
    const yaml_node_t *root;
    int rc = -1;

    sr_config_defaults(cfg);
    pthread_once(&keys_built, build_keys);
    memset(&c, 0, sizeof c);
    c.name = name;
    c.err = err;
    c.doc = &doc;
    sr_config_defaults(&c.s.cfg);
    c.s.queue = default_queue;

    if (!yaml_parser_initialize(&parser)) {
        report_at(&c, 0, 0, NULL, "out of memory");
        goto done;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&c, &parser, text, len);
        goto done;
    }
    have_doc = true;

    root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        bind_map(&c, root, "");
    else if (root && !is_null(root))
        report(&c, root, NULL, "the document must be a mapping, not a %s", kind_name(root));

    if (root) { /* a second document would be silently ignored: refuse it */
        if (!yaml_parser_load(&parser, &extra)) {
            syntax_error(&c, &parser, text, len);
        } else {
            const yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2) report(&c, r2, NULL, "only one YAML document is allowed");
            yaml_document_delete(&extra);
        }
    }

    finish(&c);
    if (c.errors) goto done;
    c.s.cfg.path = strdup(name);
    if (!c.s.cfg.path) {
        report_at(&c, 0, 0, NULL, "out of memory");
        goto done;
    }
    *cfg = c.s.cfg;
    memset(&c.s.cfg, 0, sizeof c.s.cfg); /* moved */
    rc = 0;
done:
    sr_config_deinit(&c.s.cfg);
    if (have_doc) yaml_document_delete(&doc);
    if (have_parser) yaml_parser_delete(&parser);
    return rc;
}

int sr_config_load(struct sr_config *cfg, const char *path, FILE *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;

    sr_config_defaults(cfg);
    if (!f) goto io_error;
    for (;;) {
        if (len == cap) {
            char *p = realloc(text, cap ? cap * 2 : 16384);
            if (!p) {
                errno = ENOMEM;
                goto io_error;
            }
            text = p;
            cap = cap ? cap * 2 : 16384;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) goto io_error;
    rc = sr_config_load_string(cfg, path, text, len, err);
    goto done;
io_error:
    if (err) fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
done:
    if (f) fclose(f);
    free(text);
    return rc;
}
