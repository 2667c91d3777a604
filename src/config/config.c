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
 * Values are bound into a scratch copy (struct sr_config_scratch): the public struct is
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

/* from the one list in config.h (SR_ROUTING_POLICIES) */
static const char *const routing_policies[] = {
#define NAME_(id, name, type) name,
    SR_ROUTING_POLICIES(NAME_)
#undef NAME_
    NULL};

const char *sr_routing_policy_name(int policy)
{
    return policy >= 0 && policy < SR_ROUTE_COUNT ? routing_policies[policy] : "unknown";
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
    cfg->upstream.config_discovery.cache_ttl_ms = 10 * SEC;
    cfg->upstream.config_discovery.stale_ttl_ms = 24 * HOUR;
    cfg->upstream.config_discovery.max_services = 10000;
    cfg->upstream.config_discovery.max_bytes = 16 * MIB;
    cfg->upstream.stall_timeout_ms = 2 * SEC;
    cfg->upstream.refresh_interval_ms = 10 * SEC;
    cfg->upstream.kubernetes.extra_port = 11800;
    cfg->upstream.max_receive_message_size = 50 * MIB;

    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        cfg->pipes[i].enabled = true;
        cfg->pipes[i].mode = sr_pipe_defs[i].default_mode; /* segment: collect_in_sync */
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
    cfg->server.tls.client_auth = SR_TLS_CLIENT_AUTH_REQUIRE; /* effective only with a client CA */
    cfg->server.tls.reload_interval_ms = 60 * SEC;
    cfg->upstream.tls.reload_interval_ms = 60 * SEC;
    cfg->telemetry.prometheus_address = default_admin;
    cfg->telemetry.export_prometheus = true;
    cfg->telemetry.service = default_telemetry_service;
    cfg->telemetry.interval_ms = 10 * SEC;
    cfg->telemetry.admin.max_connections = 64;
    cfg->telemetry.admin.max_connections_per_peer = 16;
    cfg->telemetry.admin.header_timeout_ms = 2 * SEC;
    cfg->queue.disk.max_bytes = 1 * GIB;
    cfg->queue.disk.min_free = 64 * MIB;
    cfg->queue.disk.segment_size = 16 * MIB;
    cfg->queue.disk.sync = SR_DISK_SYNC_INTERVAL;
    cfg->queue.disk.sync_interval_ms = 1 * SEC;
    cfg->shutdown.grace_period_ms = 20 * SEC;
    cfg->shutdown.stream_grace_ms = 5 * SEC;
}

void sr_config_free_nodes(struct sr_node_config *nodes, size_t n)
{
    if (nodes == default_nodes) return;
    for (size_t i = 0; i < n; i++) free(nodes[i].address);
    free(nodes);
}

bool sr_config_is_default_string(const char *p)
{
    return p == default_listen || p == default_admin || p == default_telemetry_service;
}

/* A string field: free it unless it is built-in static storage. */
static void free_string(char *p)
{
    if (!sr_config_is_default_string(p)) free(p);
}

const char *sr_config_unset_env_of(const struct sr_config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n_unset_env; i++)
        if (strcmp(cfg->unset_env[i].key, key) == 0) return cfg->unset_env[i].name;
    return NULL;
}

void sr_config_deinit(struct sr_config *cfg)
{
    free(cfg->path);
    for (size_t i = 0; i < cfg->n_unset_env; i++) free(cfg->unset_env[i].name);
    free(cfg->unset_env);
    free_string(cfg->server.address);
    free(cfg->server.authentication);
    free_string(cfg->telemetry.prometheus_address);
    free_string(cfg->telemetry.service);
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
    free(cfg->telemetry.admin.token);
    free(cfg->server.tls.cert_file);
    free(cfg->server.tls.key_file);
    free(cfg->server.tls.client_ca_file);
    free(cfg->upstream.tls.ca_file);
    free(cfg->upstream.tls.cert_file);
    free(cfg->upstream.tls.key_file);
    free(cfg->upstream.tls.server_name);
    sr_config_free_nodes(cfg->upstream.nodes, cfg->upstream.n_nodes);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- the schema ---- */


/* The row type, struct sr_config_key, is in internal.h: the printer (print.c) walks the
 * same table. */

static const char *const finders[] = { /* from the one list in config.h (SR_FINDERS) */
#define NAME_(id, name, type) name,
    SR_FINDERS(NAME_)
#undef NAME_
    NULL};
static const char *const k8s_kinds[] = {"pod", "endpoints", NULL};
static const char *const disk_syncs[] = {[SR_DISK_SYNC_NONE] = "none",
                                          [SR_DISK_SYNC_INTERVAL] = "interval",
                                          [SR_DISK_SYNC_ALWAYS] = "always", NULL};
static const char *const client_auths[] = {[SR_TLS_CLIENT_AUTH_NONE] = "none",
                                            [SR_TLS_CLIENT_AUTH_OPTIONAL] = "optional",
                                            [SR_TLS_CLIENT_AUTH_REQUIRE] = "require", NULL};
static const char *const validate_depths[] = {[SR_VALIDATE_DEEP] = "deep",
                                               [SR_VALIDATE_TOP] = "top", NULL};

#define OFF(member) SR_CFG_OFF(member)

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
    {"server.tls.cert_file", K_STRING, OFF(cfg.server.tls.cert_file), 0, 0, NULL},
    {"server.tls.key_file", K_STRING, OFF(cfg.server.tls.key_file), 0, 0, NULL},
    {"server.tls.client_ca_file", K_STRING, OFF(cfg.server.tls.client_ca_file), 0, 0, NULL},
    {"server.tls.client_auth", K_ENUM, OFF(cfg.server.tls.client_auth), 0, 0, client_auths},
    {"server.tls.reload_interval", K_DURATION, OFF(cfg.server.tls.reload_interval_ms), 0, DAY,
     NULL},

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
    {"upstream.kubernetes.allow_insecure_http", K_BOOL,
     OFF(cfg.upstream.kubernetes.allow_insecure_http), 0, 0, NULL},
    {"upstream.addresses", K_NODES, OFF(cfg.upstream.nodes), 0, 0, NULL},
    {"upstream.call_timeout", K_DURATION, OFF(cfg.upstream.call_timeout_ms), 10, HOUR, NULL},
    {"upstream.backoff_initial", K_DURATION, OFF(cfg.upstream.backoff_initial_ms), 1, 10 * MIN,
     NULL},
    {"upstream.backoff_max", K_DURATION, OFF(cfg.upstream.backoff_max_ms), 1, HOUR, NULL},
    {"upstream.retry_max", K_DURATION, OFF(cfg.upstream.retry_max_ms), 0, 24 * HOUR, NULL},
    {"upstream.authentication", K_STRING, OFF(cfg.upstream.authentication), 0, 0, NULL},
    {"upstream.sync_timeout", K_DURATION, OFF(cfg.upstream.sync_timeout_ms), 10, HOUR, NULL},
    {"upstream.config_discovery.cache_ttl", K_DURATION,
     OFF(cfg.upstream.config_discovery.cache_ttl_ms), 0, HOUR, NULL},
    {"upstream.config_discovery.stale_ttl", K_DURATION,
     OFF(cfg.upstream.config_discovery.stale_ttl_ms), 0, 7 * DAY, NULL},
    {"upstream.config_discovery.max_services", K_U32,
     OFF(cfg.upstream.config_discovery.max_services), 1, 10000000, NULL},
    {"upstream.config_discovery.max_bytes", K_SIZE, OFF(cfg.upstream.config_discovery.max_bytes),
     0, 16 * GIB, NULL},
    {"upstream.stall_timeout", K_DURATION, OFF(cfg.upstream.stall_timeout_ms), 0, HOUR, NULL},
    {"upstream.max_inflight_per_node", K_U32, OFF(cfg.upstream.max_inflight_per_node), 0, 64, NULL},
    {"upstream.max_receive_message_size", K_SIZE, OFF(cfg.upstream.max_receive_message_size), 1,
     1 * GIB, NULL},
    {"upstream.tls.enabled", K_BOOL, OFF(cfg.upstream.tls.enabled), 0, 0, NULL},
    {"upstream.tls.ca_file", K_STRING, OFF(cfg.upstream.tls.ca_file), 0, 0, NULL},
    {"upstream.tls.cert_file", K_STRING, OFF(cfg.upstream.tls.cert_file), 0, 0, NULL},
    {"upstream.tls.key_file", K_STRING, OFF(cfg.upstream.tls.key_file), 0, 0, NULL},
    {"upstream.tls.server_name", K_STRING, OFF(cfg.upstream.tls.server_name), 0, 0, NULL},
    {"upstream.tls.insecure_skip_verify", K_BOOL, OFF(cfg.upstream.tls.insecure_skip_verify), 0, 0,
     NULL},
    {"upstream.tls.reload_interval", K_DURATION, OFF(cfg.upstream.tls.reload_interval_ms), 0, DAY,
     NULL},

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
    {"telemetry.admin.max_connections", K_U32, OFF(cfg.telemetry.admin.max_connections), 1, 100000,
     NULL},
    {"telemetry.admin.max_connections_per_peer", K_U32,
     OFF(cfg.telemetry.admin.max_connections_per_peer), 1, 100000, NULL},
    {"telemetry.admin.header_timeout", K_DURATION, OFF(cfg.telemetry.admin.header_timeout_ms), 100,
     MIN, NULL},
    {"telemetry.admin.token", K_STRING, OFF(cfg.telemetry.admin.token), 0, 0, NULL},
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

void sr_config_generic_pipe(struct sr_pipe_config *out)
{
    memset(out, 0, sizeof(*out));
    out->queue = default_queue;
    out->sender = default_sender;
    out->routing = default_routing;
}
