/* Config loader: placeholders, units, node lists, and errors that name the place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/config.h"
#include "skyrelay/log.h"

#define SHIPPED "config/skyrelay.yaml" /* tests run from the repository root */

struct run {
    struct sr_config cfg;
    int rc;
    char *err; /* everything written to `err` */
};

static void load(struct run *r, const char *yaml)
{
    size_t n;
    FILE *f = open_memstream(&r->err, &n);
    assert_non_null(f);
    r->rc = sr_config_load_string(&r->cfg, "t.yaml", yaml, strlen(yaml), f);
    fclose(f);
}

static void done(struct run *r)
{
    sr_config_deinit(&r->cfg);
    free(r->err);
}

/* Loads yaml, expects success and no output. */
static void load_ok(struct run *r, const char *yaml)
{
    load(r, yaml);
    assert_string_equal(r->err, "");
    assert_int_equal(r->rc, 0);
}

/* Loads yaml, expects failure with exactly `want` as output. */
static void expect_errors(const char *yaml, const char *want)
{
    struct run r;
    load(&r, yaml);
    assert_string_equal(r.err, want);
    assert_int_equal(r.rc, -1);
    done(&r);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long n;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return text;
}

/* Unsets every variable the shipped file names in a ${...}, nested ones included. */
static void unset_shipped_env(void)
{
    char *text = read_file(SHIPPED);
    for (char *p = strstr(text, "${"); p; p = strstr(p + 2, "${")) {
        char name[256];
        size_t n = strspn(p + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
        assert_true(n > 0 && n < sizeof name);
        memcpy(name, p + 2, n);
        name[n] = '\0';
        unsetenv(name);
    }
    free(text);
}

/* Equal strings, or both NULL. */
static void assert_str_same(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_config_equal(const struct sr_config *a, const struct sr_config *b)
{
    assert_string_equal(a->server.address, b->server.address);
    assert_int_equal(a->server.workers, b->server.workers);
    assert_int_equal(a->server.max_receive_message_size, b->server.max_receive_message_size);
    assert_int_equal(a->server.max_concurrent_streams, b->server.max_concurrent_streams);
    assert_int_equal(a->server.keepalive_time_ms, b->server.keepalive_time_ms);
    assert_int_equal(a->server.keepalive_timeout_ms, b->server.keepalive_timeout_ms);
    assert_int_equal(a->server.http2_bdp_probe, b->server.http2_bdp_probe);
    assert_str_same(a->server.authentication, b->server.authentication);
    assert_str_same(a->upstream.authentication, b->upstream.authentication);
    assert_int_equal(a->upstream.sync_timeout_ms, b->upstream.sync_timeout_ms);
    assert_int_equal(a->upstream.stall_timeout_ms, b->upstream.stall_timeout_ms);
    assert_int_equal(a->upstream.max_inflight_per_node, b->upstream.max_inflight_per_node);
    assert_int_equal(a->queue.total_max_bytes, b->queue.total_max_bytes);
    assert_str_same(a->queue.dead_letter_dir, b->queue.dead_letter_dir);
    assert_int_equal(a->upstream.finder, b->upstream.finder);
    assert_int_equal(a->upstream.refresh_interval_ms, b->upstream.refresh_interval_ms);
    assert_int_equal(a->upstream.kubernetes.kind, b->upstream.kubernetes.kind);
    assert_int_equal(a->upstream.kubernetes.extra_port, b->upstream.kubernetes.extra_port);
    assert_int_equal(a->upstream.kubernetes.insecure_skip_verify,
                     b->upstream.kubernetes.insecure_skip_verify);
    assert_str_same(a->upstream.kubernetes.namespaces, b->upstream.kubernetes.namespaces);
    assert_str_same(a->upstream.kubernetes.label_selector, b->upstream.kubernetes.label_selector);
    assert_str_same(a->upstream.kubernetes.field_selector, b->upstream.kubernetes.field_selector);
    assert_str_same(a->upstream.kubernetes.api_server, b->upstream.kubernetes.api_server);
    assert_str_same(a->upstream.kubernetes.bearer_token_file,
                    b->upstream.kubernetes.bearer_token_file);
    assert_str_same(a->upstream.kubernetes.ca_file, b->upstream.kubernetes.ca_file);
    assert_int_equal(a->server.max_connections, b->server.max_connections);
    assert_int_equal(a->server.max_connection_age_ms, b->server.max_connection_age_ms);
    assert_int_equal(a->server.max_connection_age_grace_ms, b->server.max_connection_age_grace_ms);
    assert_str_same(a->server.tls.cert_file, b->server.tls.cert_file);
    assert_str_same(a->server.tls.key_file, b->server.tls.key_file);
    assert_str_same(a->server.tls.client_ca_file, b->server.tls.client_ca_file);
    assert_int_equal(a->server.tls.client_auth, b->server.tls.client_auth);
    assert_int_equal(a->server.tls.reload_interval_ms, b->server.tls.reload_interval_ms);
    assert_int_equal(a->upstream.tls.enabled, b->upstream.tls.enabled);
    assert_str_same(a->upstream.tls.ca_file, b->upstream.tls.ca_file);
    assert_str_same(a->upstream.tls.cert_file, b->upstream.tls.cert_file);
    assert_str_same(a->upstream.tls.key_file, b->upstream.tls.key_file);
    assert_str_same(a->upstream.tls.server_name, b->upstream.tls.server_name);
    assert_int_equal(a->upstream.tls.insecure_skip_verify, b->upstream.tls.insecure_skip_verify);
    assert_int_equal(a->upstream.tls.reload_interval_ms, b->upstream.tls.reload_interval_ms);
    assert_string_equal(a->telemetry.prometheus_address, b->telemetry.prometheus_address);
    assert_int_equal(a->telemetry.export_prometheus, b->telemetry.export_prometheus);
    assert_int_equal(a->telemetry.export_metrics_service, b->telemetry.export_metrics_service);
    assert_string_equal(a->telemetry.service, b->telemetry.service);
    assert_str_same(a->telemetry.instance, b->telemetry.instance);
    assert_int_equal(a->telemetry.interval_ms, b->telemetry.interval_ms);
    assert_int_equal(a->telemetry.admin.max_connections, b->telemetry.admin.max_connections);
    assert_int_equal(a->telemetry.admin.max_connections_per_peer,
                     b->telemetry.admin.max_connections_per_peer);
    assert_int_equal(a->telemetry.admin.header_timeout_ms, b->telemetry.admin.header_timeout_ms);
    assert_str_same(a->telemetry.admin.token, b->telemetry.admin.token);
    assert_int_equal(a->upstream.kubernetes.allow_insecure_http,
                     b->upstream.kubernetes.allow_insecure_http);

    assert_int_equal(a->upstream.n_nodes, b->upstream.n_nodes);
    for (size_t i = 0; i < a->upstream.n_nodes; i++) {
        assert_string_equal(a->upstream.nodes[i].address, b->upstream.nodes[i].address);
        assert_int_equal(a->upstream.nodes[i].weight, b->upstream.nodes[i].weight);
    }
    assert_int_equal(a->upstream.call_timeout_ms, b->upstream.call_timeout_ms);
    assert_int_equal(a->upstream.backoff_initial_ms, b->upstream.backoff_initial_ms);
    assert_int_equal(a->upstream.backoff_max_ms, b->upstream.backoff_max_ms);
    assert_int_equal(a->upstream.retry_max_ms, b->upstream.retry_max_ms);
    assert_int_equal(a->upstream.max_receive_message_size, b->upstream.max_receive_message_size);

    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const struct sr_pipe_config *p = &a->pipes[i], *q = &b->pipes[i];
        assert_int_equal(p->enabled, q->enabled);
        assert_int_equal(p->mode, q->mode);
        assert_int_equal(p->queue.max_events, q->queue.max_events);
        assert_int_equal(p->queue.max_bytes, q->queue.max_bytes);
        assert_int_equal(p->queue.full_wait_ms, q->queue.full_wait_ms);
        assert_int_equal(p->sender.max_batch_events, q->sender.max_batch_events);
        assert_int_equal(p->sender.max_batch_bytes, q->sender.max_batch_bytes);
        assert_int_equal(p->sender.linger_ms, q->sender.linger_ms);
        assert_int_equal(p->sender.max_inflight, q->sender.max_inflight);
        assert_int_equal(p->routing.policy, q->routing.policy);
        assert_int_equal(p->routing.lru_size, q->routing.lru_size);
        assert_int_equal(p->routing.lru_ttl_ms, q->routing.lru_ttl_ms);
        assert_int_equal(p->validate, q->validate);
    }
    assert_int_equal(a->log.level, b->log.level);
    assert_int_equal(a->shutdown.grace_period_ms, b->shutdown.grace_period_ms);
    assert_int_equal(a->shutdown.stream_grace_ms, b->shutdown.stream_grace_ms);
}

static void defaults_match_shipped_yaml(void **state)
{
    struct sr_config defaults;
    struct run r;
    size_t n;
    FILE *f = open_memstream(&r.err, &n);

    unset_shipped_env();
    sr_config_defaults(&defaults);
    r.rc = sr_config_load(&r.cfg, SHIPPED, f);
    fclose(f);
    assert_string_equal(r.err, "");
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.cfg.path, SHIPPED);
    assert_config_equal(&r.cfg, &defaults);
    /* spot-check the values themselves, not only their agreement */
    assert_string_equal(defaults.server.address, "0.0.0.0:11800");
    assert_string_equal(defaults.upstream.nodes[0].address, "127.0.0.1:11801");
    assert_int_equal(defaults.pipes[SR_PIPE_METER].queue.max_events, 20000);
    assert_int_equal(defaults.pipes[SR_PIPE_LOG].sender.linger_ms, 1000);
    assert_int_equal(defaults.pipes[SR_PIPE_ALS].mode, SR_ALS_PER_IDENTIFIER);
    assert_int_equal(defaults.log.level, SR_LOG_INFO);
    sr_config_deinit(&defaults);
    done(&r);
}

/* Each variable the shipped file reads per pipe (or for all pipes) lands on the same
 * settings whatever the layout of the file: loading with it set gives the defaults with
 * exactly those fields changed. */
static void shipped_yaml_wires_env_names_to_their_settings(void **state)
{
#define PF(m) offsetof(struct sr_pipe_config, m)
#define ONE(p) (1u << (p))
#define ALL ((1u << SR_PIPE_COUNT) - 1)
    static const struct {
        const char *env, *value;
        size_t field; /* a 32-bit field of struct sr_pipe_config */
        uint32_t want;
        unsigned pipes; /* the pipes that get it */
    } cases[] = {
        {"SATELLITE_TRACINGPIPE_SENDER_MAX_BUFFER_SIZE", "17", PF(sender.max_batch_events), 17,
         ONE(SR_PIPE_SEGMENT)},
        {"SATELLITE_TRACINGPIPE_SENDER_FLUSH_TIME", "21", PF(sender.linger_ms), 21,
         ONE(SR_PIPE_SEGMENT)},
        {"SATELLITE_LOGPIPE_SENDER_MAX_BUFFER_SIZE", "18", PF(sender.max_batch_events), 18,
         ONE(SR_PIPE_LOG)},
        {"SATELLITE_LOGPIPE_SENDER_FLUSH_TIME", "22", PF(sender.linger_ms), 22, ONE(SR_PIPE_LOG)},
        {"SATELLITE_METERPIPE_SENDER_MAX_BUFFER_SIZE", "19", PF(sender.max_batch_events), 19,
         ONE(SR_PIPE_METER)},
        {"SATELLITE_METERPIPE_SENDER_FLUSH_TIME", "23", PF(sender.linger_ms), 23,
         ONE(SR_PIPE_METER)},
        {"SATELLITE_ENVOY_ALS_V3_PIPE_SENDER_MAX_BUFFER_SIZE", "24", PF(sender.max_batch_events),
         24, ONE(SR_PIPE_ALS)},
        {"SATELLITE_ENVOY_ALS_V2_PIPE_SENDER_MAX_BUFFER_SIZE", "25", PF(sender.max_batch_events),
         25, ONE(SR_PIPE_ALS)},
        {"SATELLITE_ENVOY_ALS_V3_PIPE_SENDER_FLUSH_TIME", "26", PF(sender.linger_ms), 26,
         ONE(SR_PIPE_ALS)},
        {"SATELLITE_ENVOY_ALS_V2_PIPE_SENDER_FLUSH_TIME", "27", PF(sender.linger_ms), 27,
         ONE(SR_PIPE_ALS)},
        {"SATELLITE_QUEUE_EVENT_BUFFER_SIZE", "77", PF(queue.max_events), 77, ALL},
        /* the meter pipe routes by instance whatever the variable says */
        {"SKYRELAY_ROUTING_POLICY", "least_loaded", PF(routing.policy), SR_ROUTE_LEAST_LOADED,
         ALL & ~ONE(SR_PIPE_METER)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sr_config want;
        struct run r;
        size_t n;
        FILE *f = open_memstream(&r.err, &n);
        unset_shipped_env();
        setenv(cases[i].env, cases[i].value, 1);
        r.rc = sr_config_load(&r.cfg, SHIPPED, f);
        fclose(f);
        unsetenv(cases[i].env);
        assert_string_equal(r.err, "");
        assert_int_equal(r.rc, 0);
        sr_config_defaults(&want);
        for (int p = 0; p < SR_PIPE_COUNT; p++)
            if (cases[i].pipes & ONE(p))
                memcpy((char *)&want.pipes[p] + cases[i].field, &cases[i].want, sizeof(uint32_t));
        assert_config_equal(&r.cfg, &want);
        sr_config_deinit(&want);
        done(&r);
    }
    /* the V3 name wins over the V2 one */
    setenv("SATELLITE_ENVOY_ALS_V3_PIPE_SENDER_FLUSH_TIME", "31", 1);
    setenv("SATELLITE_ENVOY_ALS_V2_PIPE_SENDER_FLUSH_TIME", "32", 1);
    struct run r;
    size_t n;
    FILE *f = open_memstream(&r.err, &n);
    r.rc = sr_config_load(&r.cfg, SHIPPED, f);
    fclose(f);
    unset_shipped_env();
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].sender.linger_ms, 31);
    done(&r);
#undef PF
#undef ONE
#undef ALL
}

/* Every setting of the effective config, as --print-config spells it: all pipes in full. */
static const char *const all_settings[] = {
    "server.address", "server.workers", "server.max_receive_message_size",
    "server.max_concurrent_streams", "server.keepalive_time", "server.keepalive_timeout",
    "server.http2_bdp_probe", "server.authentication", "server.max_connections",
    "server.max_connection_age", "server.max_connection_age_grace",
    "server.tls.cert_file", "server.tls.key_file", "server.tls.client_ca_file",
    "server.tls.client_auth", "server.tls.reload_interval",
    "telemetry.export", "telemetry.prometheus_address", "telemetry.service", "telemetry.instance",
    "telemetry.interval", "telemetry.admin.max_connections",
    "telemetry.admin.max_connections_per_peer", "telemetry.admin.header_timeout",
    "telemetry.admin.token",
    "upstream.finder", "upstream.addresses", "upstream.refresh_interval",
    "upstream.kubernetes.namespaces", "upstream.kubernetes.kind",
    "upstream.kubernetes.label_selector", "upstream.kubernetes.field_selector",
    "upstream.kubernetes.extra_port", "upstream.kubernetes.api_server",
    "upstream.kubernetes.bearer_token_file", "upstream.kubernetes.ca_file",
    "upstream.kubernetes.insecure_skip_verify", "upstream.kubernetes.allow_insecure_http",
    "upstream.call_timeout",
    "upstream.backoff_initial", "upstream.backoff_max", "upstream.retry_max",
    "upstream.sync_timeout", "upstream.config_discovery.cache_ttl",
    "upstream.config_discovery.stale_ttl", "upstream.config_discovery.max_services",
    "upstream.config_discovery.max_bytes", "upstream.stall_timeout", "upstream.max_inflight_per_node",
    "upstream.authentication", "upstream.max_receive_message_size",
    "upstream.tls.enabled", "upstream.tls.ca_file", "upstream.tls.cert_file",
    "upstream.tls.key_file", "upstream.tls.server_name", "upstream.tls.insecure_skip_verify",
    "upstream.tls.reload_interval",
    "queue.total_max_bytes", "queue.dead_letter_dir", "queue.disk.dir", "queue.disk.max_bytes",
    "queue.disk.min_free", "queue.disk.segment_size", "queue.disk.sync",
    "queue.disk.sync_interval",
#define PIPE(name)                                                                                \
    "pipes." name ".enabled", "pipes." name ".queue.max_events", "pipes." name ".queue.max_bytes", \
        "pipes." name ".queue.full_wait", "pipes." name ".queue.persistent",                      \
        "pipes." name ".sender.max_batch_events",               \
        "pipes." name ".sender.max_batch_bytes", "pipes." name ".sender.linger",                  \
        "pipes." name ".sender.max_inflight", "pipes." name ".routing.policy",                    \
        "pipes." name ".routing.lru_size", "pipes." name ".routing.lru_ttl",                  \
        "pipes." name ".validate"
    PIPE("segment"), "pipes.segment.upstream_method", PIPE("log"), PIPE("meter"), PIPE("als"),
    "pipes.als.upstream_method", PIPE("jvm"), PIPE("clr"), PIPE("event"),
    PIPE("span_attached_event"), PIPE("profile_snapshot"), PIPE("ebpf_profiling"),
    PIPE("ebpf_access_log"), PIPE("keepalive"), PIPE("instance_properties"),
    PIPE("envoy_metrics"),
#undef PIPE
    "log.level", "shutdown.grace_period", "shutdown.stream_grace",
};

/* The keys that only supply defaults of every pipe: not settings of their own.
 * pipe_defaults.queue stands for its three keys (the top-level queue documents them). */
static const char *const default_only_keys[] = {
    "queue.max_events", "queue.max_bytes", "queue.full_wait", "queue.persistent",
    "pipe_defaults.queue",
    "pipe_defaults.sender.max_batch_events", "pipe_defaults.sender.max_batch_bytes",
    "pipe_defaults.sender.linger", "pipe_defaults.sender.max_inflight",
    "pipe_defaults.routing.policy", "pipe_defaults.routing.lru_size",
    "pipe_defaults.routing.lru_ttl", "pipe_defaults.validate",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct paths {
    char *v[512];
    size_t n;
};

static bool has_path(const struct paths *p, const char *path)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i], path) == 0) return true;
    return false;
}

static bool in_list(const char *const *list, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], path) == 0) return true;
    return false;
}

static void free_paths(struct paths *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->v[i]);
    p->n = 0;
}

/* Walks a block-style YAML text by indentation and collects the dotted path of
 * every line that has a value (a scalar, a flow collection); each at most once.
 * With need_comment, each such line must also carry a " # " comment. */
static void collect_paths(const char *yaml, struct paths *out, bool need_comment)
{
    char *text = strdup(yaml), *save = NULL;
    char stack[8][64] = {{0}};

    assert_non_null(text);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t indent = strspn(line, " ");
        char *key = line + indent, *colon = strchr(key, ':'), path[256];
        if (*key == '#' || *key == '\0') continue;
        assert_non_null(colon);
        assert_true(indent % 2 == 0 && indent / 2 < 8);
        snprintf(stack[indent / 2], sizeof stack[0], "%.*s", (int)(colon - key), key);
        char *value = colon + 1 + strspn(colon + 1, " ");
        if (*value == '#' || *value == '\0') continue; /* a section */
        path[0] = '\0';
        for (size_t d = 0; d <= indent / 2; d++)
            snprintf(path + strlen(path), sizeof path - strlen(path), "%s%s", d ? "." : "",
                     stack[d]);
        if (has_path(out, path)) fail_msg("%s appears twice", path);
        if (need_comment && !strstr(value, " # ")) fail_msg("%s has no comment", path);
        assert_true(out->n < COUNT(out->v));
        out->v[out->n++] = strdup(path);
    }
    free(text);
}

static char *print_to_string(const struct sr_config *cfg)
{
    char *buf = NULL;
    size_t n;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    assert_int_equal(sr_config_print(cfg, f), 0);
    fclose(f);
    return buf;
}

/* The printed text after its opening comment (which names the file). */
static const char *body(const char *printed)
{
    while (*printed == '#') printed = strchr(printed, '\n') + 1;
    return printed;
}

/* print -> load gives the same config, and printing that gives the same text. */
static void assert_print_round_trips(const struct sr_config *cfg)
{
    char *text = print_to_string(cfg), *again;
    struct run r;
    load(&r, text);
    if (r.rc != 0) fail_msg("the printed config does not load:\n%s\n%s", r.err, text);
    assert_string_equal(r.err, "");
    assert_config_equal(&r.cfg, cfg);
    again = print_to_string(&r.cfg);
    assert_string_equal(body(again), body(text));
    free(again);
    free(text);
    done(&r);
}

/* What the test checks, precisely:
 * - every line of the shipped file that has a value carries a comment, and no key twice;
 * - every setting of the effective config (all_settings, which print_config_prints_every_setting
 *   ties to --print-config) is written in the shipped file: as itself, or, for a pipe's
 *   pipes.<name>.<key>, as pipe_defaults.<key>, or for its queue keys as the top-level queue.<key>;
 * - every key that only supplies defaults (default_only_keys) is written there too;
 * - nothing else is (a key of neither list would be unknown or undocumented).
 * defaults_match_shipped_yaml checks the values. */
static void shipped_yaml_documents_every_setting_with_a_comment(void **state)
{
    char *text = read_file(SHIPPED);
    struct paths shipped = {.n = 0};
    char alt[256];

    collect_paths(text, &shipped, true);
    for (size_t i = 0; i < COUNT(all_settings); i++) {
        const char *s = all_settings[i], *rest;
        if (has_path(&shipped, s)) continue;
        if (strncmp(s, "pipes.", 6) == 0 && (rest = strchr(s + 6, '.')) != NULL) {
            rest++;
            snprintf(alt, sizeof alt, "pipe_defaults.%s", rest);
            if (has_path(&shipped, alt)) continue;
            if (strncmp(rest, "queue.", 6) == 0 && has_path(&shipped, rest)) continue;
        }
        fail_msg("%s is not in the shipped file (nor under pipe_defaults)", s);
    }
    for (size_t i = 0; i < COUNT(default_only_keys); i++)
        if (!has_path(&shipped, default_only_keys[i]))
            fail_msg("%s is missing from the shipped file", default_only_keys[i]);
    for (size_t i = 0; i < shipped.n; i++)
        if (!in_list(all_settings, COUNT(all_settings), shipped.v[i]) &&
            !in_list(default_only_keys, COUNT(default_only_keys), shipped.v[i]))
            fail_msg("%s is in the shipped file but not documented here", shipped.v[i]);
    free_paths(&shipped);
    free(text);
}

/* --print-config writes exactly the settings listed above, every pipe in full. */
static void print_config_prints_every_setting(void **state)
{
    struct sr_config defaults;
    struct paths printed = {.n = 0};
    char *text;

    sr_config_defaults(&defaults);
    text = print_to_string(&defaults);
    collect_paths(text, &printed, false);
    for (size_t i = 0; i < COUNT(all_settings); i++)
        if (!has_path(&printed, all_settings[i])) fail_msg("%s is not printed", all_settings[i]);
    for (size_t i = 0; i < printed.n; i++)
        if (!in_list(all_settings, COUNT(all_settings), printed.v[i]))
            fail_msg("%s is printed but not listed in all_settings", printed.v[i]);
    assert_int_equal(printed.n, COUNT(all_settings));
    free_paths(&printed);
    free(text);
    sr_config_deinit(&defaults);
}

static void print_config_round_trips_defaults_and_the_shipped_file(void **state)
{
    struct sr_config defaults;
    struct run r;
    size_t n;
    FILE *f = open_memstream(&r.err, &n);

    sr_config_defaults(&defaults);
    assert_print_round_trips(&defaults);
    sr_config_deinit(&defaults);

    unset_shipped_env();
    setenv("SATELLITE_LOGPIPE_SENDER_FLUSH_TIME", "333", 1);
    setenv("SKYRELAY_ROUTING_POLICY", "weighted_round_robin", 1);
    setenv("SATELLITE_GRPC_CLIENT", "a:1#3,b:2", 1);
    r.rc = sr_config_load(&r.cfg, SHIPPED, f);
    fclose(f);
    unset_shipped_env();
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.pipes[SR_PIPE_LOG].sender.linger_ms, 333);
    assert_print_round_trips(&r.cfg);
    done(&r);
}

/* No secrets here: they would come back as "<redacted>" (print_config_redacts_secrets). */
static void print_config_round_trips_every_kind_of_value(void **state)
{
    static const char *const exports[] = {"none", "metrics_service", "prometheus",
                                          "metrics_service, prometheus"};
    struct run r;
    load_ok(&r, "server:\n"
                "  address: \"[::1]:9000\"\n"
                "  workers: 3\n"
                "  max_receive_message_size: 1000KB\n"
                "  max_concurrent_streams: 7\n"
                "  keepalive_time: 90s\n"
                "  keepalive_timeout: 2s\n"
                "  http2_bdp_probe: yes\n"
                "  max_connections: 12\n"
                "  max_connection_age: 1h\n"
                "  max_connection_age_grace: 0\n"
                "upstream:\n"
                "  finder: dns\n"
                "  addresses: [\"oap-0.oap:11800#5\", \"[2001:db8::7]:11801\", 10.0.0.3:1#1000]\n"
                "  refresh_interval: 250ms\n"
                "  kubernetes:\n"
                "    namespaces: a,b\n"
                "    kind: endpoints\n"
                "    label_selector: \"app=oap, tier in (x)\"\n"
                "    field_selector: \"a\\u2028b\\x85c\\x80d\\uFEFFe\\U0001F600f\\x01\"\n"
                "    extra_port: 1\n"
                "    api_server: \"https://k8s:6443\"\n"
                "    bearer_token_file: \"/t \\\"q\\\" \\\\ \\t x\"\n"
                "    ca_file: \"/ca.pem # not a comment: [{'\"\n"
                "    insecure_skip_verify: on\n"
                "  call_timeout: 15ms\n"
                "  backoff_initial: 1ms\n"
                "  backoff_max: 1h\n"
                "  retry_max: 0\n"
                "  sync_timeout: 3s\n"
                "  stall_timeout: 0\n"
                "  max_inflight_per_node: 2\n"
                "  max_receive_message_size: 1GiB\n"
                "queue:\n"
                "  max_events: 100\n"
                "  max_bytes: 3MiB\n"
                "  total_max_bytes: 5GB\n"
                "  dead_letter_dir: /var/lib/skyrelay/dead letters\n"
                "pipe_defaults:\n"
                "  sender: {linger: 20ms, max_inflight: 9}\n"
                "  routing: {policy: least_loaded, lru_ttl: 1h}\n"
                "pipes:\n"
                "  segment: {upstream_method: collect_in_sync, enabled: false}\n"
                "  als: {upstream_method: satellite, queue: {full_wait: 0}}\n"
                "  meter: {sender: {max_batch_bytes: 1}}\n"
                "  keepalive: {routing: {policy: weighted_round_robin, lru_size: 1}}\n"
                "log: {level: debug}\n"
                "telemetry:\n"
                "  export: metrics_service, prometheus\n"
                "  prometheus_address: \":9100\"\n"
                "  service: \"svc: with colon\"\n"
                "  instance: pod-\xc3\xbc\n"
                "  interval: 2s\n"
                "shutdown:\n"
                "  grace_period: 0\n"
                "  stream_grace: 1h\n");
    /* the values above reached the config (not defaults printed twice) */
    assert_string_equal(r.cfg.upstream.kubernetes.bearer_token_file, "/t \"q\" \\ \t x");
    assert_string_equal(r.cfg.upstream.kubernetes.field_selector, "a\xe2\x80\xa8" "b\xc2\x85"
                                                                  "c\xc2\x80" "d\xef\xbb\xbf"
                                                                  "e\xf0\x9f\x98\x80" "f\x01");
    assert_int_equal(r.cfg.upstream.nodes[2].weight, 1000);
    assert_int_equal(r.cfg.pipes[SR_PIPE_LOG].sender.linger_ms, 20);
    assert_int_equal(r.cfg.pipes[SR_PIPE_METER].routing.policy, SR_ROUTE_FIXED);
    assert_false(r.cfg.pipes[SR_PIPE_SEGMENT].enabled);
    assert_print_round_trips(&r.cfg);
    done(&r);

    for (size_t i = 0; i < COUNT(exports); i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "telemetry:\n  export: %s\n", exports[i]);
        load_ok(&r, yaml);
        assert_print_round_trips(&r.cfg);
        done(&r);
    }
}

static void print_config_redacts_secrets(void **state)
{
    struct run r;
    char *text;
    load_ok(&r, "server:\n  authentication: s3cret\nupstream:\n  authentication: t0ken\n");
    text = print_to_string(&r.cfg);
    assert_null(strstr(text, "s3cret"));
    assert_null(strstr(text, "t0ken"));
    const char *first = strstr(text, "\n  authentication: \"<redacted>\"\n");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "\n  authentication: \"<redacted>\"\n"));
    free(text);
    done(&r);

    /* unset, they print as empty: nothing to hide, and the round trip holds */
    load_ok(&r, "");
    text = print_to_string(&r.cfg);
    assert_non_null(strstr(text, "\n  authentication: \"\"\n"));
    free(text);
    done(&r);
}

/* There is no escape for "${": a value holding one (only a placeholder's result can)
 * is printed as it is, with a comment saying a reload would substitute it. */
static void print_config_marks_a_value_that_would_read_as_a_placeholder(void **state)
{
    struct run r;
    char *text;
    unsetenv("SR_TEST_X");
    load_ok(&r, "telemetry:\n  service: $${SR_TEST_X:{}\n");
    assert_string_equal(r.cfg.telemetry.service, "${");
    text = print_to_string(&r.cfg);
    assert_non_null(strstr(text, "  service: \"${\"  # holds \"${\": a reload substitutes it\n"));
    free(text);
    done(&r);
}

/* built-in < top-level queue < pipe_defaults < pipes.<name>, in any order in the file. */
static void pipe_settings_precedence(void **state)
{
    static const char *const sections[] = {
        "queue:\n  max_events: 100\n  max_bytes: 1MiB\n",
        "pipe_defaults:\n  queue:\n    max_events: 200\n  sender:\n    linger: 50ms\n"
        "  routing:\n    policy: least_loaded\n    lru_size: 10\n",
        "pipes:\n  log:\n    queue:\n      max_events: 300\n    sender:\n      linger: 70ms\n"
        "    routing:\n      policy: weighted_round_robin\n",
    };
    static const int orders[][3] = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}};
    for (size_t o = 0; o < COUNT(orders); o++) {
        char yaml[1024] = "";
        struct run r;
        for (int i = 0; i < 3; i++) strcat(yaml, sections[orders[o][i]]);
        load_ok(&r, yaml);
        for (int p = 0; p < SR_PIPE_COUNT; p++) {
            const struct sr_pipe_config *c = &r.cfg.pipes[p];
            bool log = p == SR_PIPE_LOG;
            assert_int_equal(c->queue.max_events, log ? 300 : 200); /* pipe > defaults > queue */
            assert_int_equal(c->queue.max_bytes, 1u << 20);          /* queue > built-in */
            assert_int_equal(c->queue.full_wait_ms, 5000);           /* built-in */
            assert_int_equal(c->sender.linger_ms, log ? 70 : 50);
            assert_int_equal(c->sender.max_batch_events, 200);
            assert_int_equal(c->routing.lru_size, 10);
            /* the meter pipe's built-in fixed counts as set at pipe level */
            assert_int_equal(c->routing.policy, log                 ? SR_ROUTE_WEIGHTED_ROUND_ROBIN
                                                : p == SR_PIPE_METER ? SR_ROUTE_FIXED
                                                                     : SR_ROUTE_LEAST_LOADED);
        }
        done(&r);
    }
}

static void meter_policy_set_at_pipe_level_wins_over_its_builtin(void **state)
{
    struct run r;
    load_ok(&r, "pipe_defaults: {routing: {policy: least_loaded}}\n"
                "pipes: {meter: {routing: {policy: round_robin}}}\n");
    assert_int_equal(r.cfg.pipes[SR_PIPE_METER].routing.policy, SR_ROUTE_ROUND_ROBIN);
    assert_int_equal(r.cfg.pipes[SR_PIPE_LOG].routing.policy, SR_ROUTE_LEAST_LOADED);
    done(&r);
    load_ok(&r, "pipe_defaults: {routing: {policy: fixed}}\n");
    for (int p = 0; p < SR_PIPE_COUNT; p++)
        assert_int_equal(r.cfg.pipes[p].routing.policy, SR_ROUTE_FIXED);
    done(&r);
}

static void pipe_defaults_errors_name_the_place(void **state)
{
    setenv("SR_TEST_LINGER", "2m", 1);
    expect_errors("pipe_defaults:\n"
                  "  sender:\n"
                  "    max_batch_events: 0\n"
                  "    linger: ${SR_TEST_LINGER:1s}\n"
                  "  routing:\n"
                  "    policy: random\n"
                  "  queue:\n"
                  "    total_max_bytes: 1GiB\n"
                  "  enabled: false\n"
                  "  upstream_method: collect\n",
                  "t.yaml:3:23: pipe_defaults.sender.max_batch_events: must be between 1 and "
                  "100000\n"
                  "t.yaml:4:13: pipe_defaults.sender.linger: must be between 1ms and 1m (got '2m' "
                  "from environment SR_TEST_LINGER)\n"
                  "t.yaml:6:13: pipe_defaults.routing.policy: unknown value 'random' (expected "
                  "round_robin, weighted_round_robin, fixed or least_loaded)\n"
                  "t.yaml:8:5: pipe_defaults.queue.total_max_bytes: unknown key\n"
                  "t.yaml:9:3: pipe_defaults.enabled: unknown key\n"
                  "t.yaml:10:3: pipe_defaults.upstream_method: unknown key\n");
    unsetenv("SR_TEST_LINGER");
    expect_errors("pipe_defaults: [1]\n",
                  "t.yaml:1:16: pipe_defaults: must be a mapping, not a sequence\n");
}

static void env_placeholder_uses_env_then_default(void **state)
{
    struct run r;
    unsetenv("SR_TEST_WORKERS");
    load_ok(&r, "server:\n  workers: ${SR_TEST_WORKERS:3}\n");
    assert_int_equal(r.cfg.server.workers, 3);
    done(&r);

    setenv("SR_TEST_WORKERS", "7", 1);
    load_ok(&r, "server:\n  workers: ${SR_TEST_WORKERS:3}\n");
    assert_int_equal(r.cfg.server.workers, 7);
    done(&r);
    unsetenv("SR_TEST_WORKERS");
}

static void empty_env_falls_back_to_default(void **state)
{
    struct run r;
    setenv("SR_TEST_WORKERS", "", 1);
    load_ok(&r, "server:\n  workers: ${SR_TEST_WORKERS:3}\n");
    assert_int_equal(r.cfg.server.workers, 3);
    done(&r);
    unsetenv("SR_TEST_WORKERS");
}

static void placeholder_without_default_is_empty_when_unset(void **state)
{
    struct run r;
    unsetenv("SR_TEST_PREFIX");
    load_ok(&r, "upstream:\n  addresses: ${SR_TEST_PREFIX}oap:11800\n");
    assert_int_equal(r.cfg.upstream.n_nodes, 1);
    assert_string_equal(r.cfg.upstream.nodes[0].address, "oap:11800");
    done(&r);

    /* alone, an unset placeholder without default leaves nothing: an error, said plainly */
    expect_errors("server:\n  workers: ${SR_TEST_PREFIX}\n",
                  "t.yaml:2:12: server.workers: empty value after substituting ${...}\n");
}

static void several_placeholders_in_one_scalar(void **state)
{
    struct run r;
    setenv("SR_TEST_HOST", "10.0.0.9", 1);
    unsetenv("SR_TEST_PORT");
    setenv("SR_TEST_WEIGHT", "4", 1);
    load_ok(&r, "upstream:\n"
                "  addresses: ${SR_TEST_HOST:oap}:${SR_TEST_PORT:11800}#${SR_TEST_WEIGHT:1}\n");
    assert_int_equal(r.cfg.upstream.n_nodes, 1);
    assert_string_equal(r.cfg.upstream.nodes[0].address, "10.0.0.9:11800");
    assert_int_equal(r.cfg.upstream.nodes[0].weight, 4);
    done(&r);
    unsetenv("SR_TEST_HOST");
    unsetenv("SR_TEST_WEIGHT");
}

static void nested_placeholder_default_reads_second_variable(void **state)
{
    const char *yaml = "pipes:\n  als:\n    sender:\n"
                       "      linger: ${SR_TEST_V3:${SR_TEST_V2:1000}}\n";
    struct run r;
    unsetenv("SR_TEST_V3");
    unsetenv("SR_TEST_V2");
    load_ok(&r, yaml);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].sender.linger_ms, 1000);
    done(&r);

    setenv("SR_TEST_V2", "5s", 1);
    load_ok(&r, yaml);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].sender.linger_ms, 5000);
    done(&r);

    setenv("SR_TEST_V3", "250ms", 1);
    load_ok(&r, yaml);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].sender.linger_ms, 250);
    done(&r);
    unsetenv("SR_TEST_V3");
    unsetenv("SR_TEST_V2");
}

/* Satellite's own file says ${SATELLITE_GRPC_ADDRESS:":11800"}: same meaning here. */
static void satellite_quoted_default_and_port_only_address_accepted(void **state)
{
    struct run r;
    unsetenv("SR_TEST_ADDR");
    load_ok(&r, "server:\n  address: ${SR_TEST_ADDR:\":11800\"}\n");
    assert_string_equal(r.cfg.server.address, "0.0.0.0:11800");
    done(&r);

    setenv("SR_TEST_ADDR", "[::]:9000", 1);
    load_ok(&r, "server:\n  address: ${SR_TEST_ADDR:\":11800\"}\n");
    assert_string_equal(r.cfg.server.address, "[::]:9000");
    done(&r);
    unsetenv("SR_TEST_ADDR");
}

static void bad_env_value_error_names_the_variable(void **state)
{
    setenv("SR_TEST_BATCH", "0", 1);
    expect_errors("pipes:\n  meter:\n    sender:\n"
                  "      max_batch_events: ${SR_TEST_BATCH:200}\n",
                  "t.yaml:4:25: pipes.meter.sender.max_batch_events: must be between 1 and 100000 "
                  "(got '0' from environment SR_TEST_BATCH)\n");
    setenv("SR_TEST_BATCH", "lots", 1);
    expect_errors("pipes:\n  meter:\n    sender:\n"
                  "      max_batch_events: ${SR_TEST_BATCH:200}\n",
                  "t.yaml:4:25: pipes.meter.sender.max_batch_events: invalid number 'lots' "
                  "(expected a non-negative integer) (from environment SR_TEST_BATCH)\n");
    unsetenv("SR_TEST_BATCH");
}

static void malformed_placeholders_rejected(void **state)
{
    expect_errors("server:\n  workers: ${SR_TEST_X:1\n  address: ${}:1\n",
                  "t.yaml:2:12: server.workers: unterminated ${ placeholder\n"
                  "t.yaml:3:12: server.address: invalid placeholder (expected ${NAME} or "
                  "${NAME:default}, NAME of letters, digits, '_', '-', '.')\n");
}

static void node_list_from_comma_string_with_weights(void **state)
{
    struct run r;
    load_ok(&r,
            "upstream:\n  addresses: oap-0.oap:11800#5, oap-1.oap:11800 ,10.0.0.3:11801#1000\n");
    assert_int_equal(r.cfg.upstream.n_nodes, 3);
    assert_string_equal(r.cfg.upstream.nodes[0].address, "oap-0.oap:11800");
    assert_int_equal(r.cfg.upstream.nodes[0].weight, 5);
    assert_string_equal(r.cfg.upstream.nodes[1].address, "oap-1.oap:11800");
    assert_int_equal(r.cfg.upstream.nodes[1].weight, 1);
    assert_string_equal(r.cfg.upstream.nodes[2].address, "10.0.0.3:11801");
    assert_int_equal(r.cfg.upstream.nodes[2].weight, 1000);
    done(&r);
}

static void node_list_from_sequence(void **state)
{
    struct run r;
    load_ok(&r, "upstream:\n  addresses:\n    - a:1#2\n    - \"b:2\"\n    - c:3, d:4\n");
    assert_int_equal(r.cfg.upstream.n_nodes, 4);
    assert_string_equal(r.cfg.upstream.nodes[0].address, "a:1");
    assert_int_equal(r.cfg.upstream.nodes[0].weight, 2);
    assert_string_equal(r.cfg.upstream.nodes[1].address, "b:2");
    assert_string_equal(r.cfg.upstream.nodes[2].address, "c:3");
    assert_string_equal(r.cfg.upstream.nodes[3].address, "d:4");
    done(&r);

    expect_errors("upstream:\n  addresses:\n    - a:1\n    - {host: b}\n    - a:1\n",
                  "t.yaml:4:7: upstream.addresses[1]: must be a \"host:port[#weight]\" string, "
                  "not a mapping\n"
                  "t.yaml:5:7: upstream.addresses[2]: 'a:1': duplicate node\n");
}

static void ipv6_node(void **state)
{
    struct run r;
    load_ok(&r, "upstream:\n  addresses: \"[::1]:11800#2,[2001:db8::7]:11801\"\n");
    assert_int_equal(r.cfg.upstream.n_nodes, 2);
    assert_string_equal(r.cfg.upstream.nodes[0].address, "[::1]:11800");
    assert_int_equal(r.cfg.upstream.nodes[0].weight, 2);
    assert_string_equal(r.cfg.upstream.nodes[1].address, "[2001:db8::7]:11801");
    assert_int_equal(r.cfg.upstream.nodes[1].weight, 1);
    done(&r);
}

static void bad_port_reports_file_line_col_key(void **state)
{
    expect_errors("# upstream OAP nodes\nupstream:\n  addresses: oap-0:11800,oap-1:0\n",
                  "t.yaml:3:14: upstream.addresses: 'oap-1:0': port must be a number between 1 "
                  "and 65535\n");
}

static void bad_node_entries_give_reasons(void **state)
{
    static const struct {
        const char *list, *why;
    } cases[] = {
        {"oap", "missing port (expected host:port)"},
        {"oap:", "missing port (expected host:port)"},
        {":11800", "missing host (expected host:port)"},
        {"oap:0", "port must be a number between 1 and 65535"},
        {"oap:65536", "port must be a number between 1 and 65535"},
        {"oap:http", "port must be a number between 1 and 65535"},
        {"oap:1#0", "weight must be a number between 1 and 1000"},
        {"oap:1#1001", "weight must be a number between 1 and 1000"},
        {"oap:1#", "weight must be a number between 1 and 1000"},
        {"::1:11800", "an IPv6 address must be in brackets, e.g. [::1]:11800"},
        {"[::1:11800", "unterminated '[' in IPv6 address"},
        {"[oap]:11800", "invalid IPv6 address"},
        {"[::1]11800", "missing port (expected host:port)"},
        {"o/ap:1", "invalid character in host name"},
        {"a:1,,b:2", "empty entry in node list"},
        {"a:1,", "empty entry in node list"},
        {"a:1,a:1", "duplicate node"},
        {"", "empty node list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sr_node_config *nodes = NULL;
        size_t n = 0;
        const char *why = NULL;
        if (sr_config_parse_nodes(cases[i].list, &nodes, &n, &why) != -1)
            fail_msg("'%s' was accepted", cases[i].list);
        assert_string_equal(why, cases[i].why);
        assert_int_equal(n, 0); /* nothing appended on error */
        free(nodes);
    }
}

static void parse_nodes_appends_all_or_nothing(void **state)
{
    struct sr_node_config *nodes = NULL;
    size_t n = 0;
    const char *why;
    assert_int_equal(sr_config_parse_nodes("a:1", &nodes, &n, &why), 0);
    assert_int_equal(sr_config_parse_nodes("b:2#3, c:3", &nodes, &n, &why), 0);
    assert_int_equal(sr_config_parse_nodes("d:4,e:0", &nodes, &n, &why), -1);
    assert_int_equal(sr_config_parse_nodes("a:1", &nodes, &n, &why), -1);
    assert_string_equal(why, "duplicate node");
    assert_int_equal(n, 3);
    assert_string_equal(nodes[0].address, "a:1");
    assert_string_equal(nodes[1].address, "b:2");
    assert_int_equal(nodes[1].weight, 3);
    assert_string_equal(nodes[2].address, "c:3");
    for (size_t i = 0; i < n; i++) free(nodes[i].address);
    free(nodes);
}

static void unknown_key_is_an_error_with_path(void **state)
{
    expect_errors("pipes:\n  meter:\n    sender:\n      max_batch: 5\n  traces: {}\nlogging: {}\n",
                  "t.yaml:4:7: pipes.meter.sender.max_batch: unknown key\n"
                  "t.yaml:5:3: pipes.traces: unknown key\n"
                  "t.yaml:6:1: logging: unknown key\n");
}

static void upstream_method_exists_only_on_segment_and_als(void **state)
{
    struct run r;
    load_ok(&r, "pipes:\n  segment: {upstream_method: collect_in_sync}\n"
                "  als: {upstream_method: satellite}\n");
    assert_int_equal(r.cfg.pipes[SR_PIPE_SEGMENT].mode, SR_SEGMENT_COLLECT_IN_SYNC);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].mode, SR_ALS_SATELLITE);
    done(&r);

    expect_errors("pipes:\n  log: {upstream_method: collect}\n"
                  "  segment: {upstream_method: satellite}\n",
                  "t.yaml:2:9: pipes.log.upstream_method: unknown key\n"
                  "t.yaml:3:30: pipes.segment.upstream_method: unknown value 'satellite' "
                  "(expected collect or collect_in_sync)\n");
}

static void all_errors_reported_not_just_first(void **state)
{
    struct sr_config defaults;
    struct run r;
    load(&r, "server:\n"
             "  workers: 65\n"
             "  keepalive: 10s\n"
             "upstream:\n"
             "  addresses: oap\n"
             "queue:\n"
             "  max_events: 50\n"); /* valid, but must not survive a failed load */
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "t.yaml:2:12: server.workers: must be between 0 and 64\n"
                               "t.yaml:3:3: server.keepalive: unknown key\n"
                               "t.yaml:5:14: upstream.addresses: 'oap': missing port (expected "
                               "host:port)\n");
    sr_config_defaults(&defaults);
    assert_null(r.cfg.path);
    assert_config_equal(&r.cfg, &defaults);
    done(&r);
}

static void yaml_syntax_error_has_position(void **state)
{
    expect_errors("server:\n  workers: 4\n   address: x\n",
                  "t.yaml:3:11: syntax error: mapping values are not allowed in this context\n");
    expect_errors("server: {workers: 4\n",
                  "t.yaml:2:1: syntax error: did not find expected ',' or '}' (while parsing a "
                  "flow mapping at 1:9)\n");
}

static void only_one_document_accepted(void **state)
{
    expect_errors("server: {workers: 1}\n---\nserver: {workers: 2}\n",
                  "t.yaml:3:1: only one YAML document is allowed\n");
}

static void empty_document_and_empty_sections_give_defaults(void **state)
{
    struct sr_config defaults;
    struct run r;
    sr_config_defaults(&defaults);
    load_ok(&r, "# nothing set\n");
    assert_config_equal(&r.cfg, &defaults);
    done(&r);
    load_ok(&r, "server:\nqueue: ~\npipes:\n  meter: {}\n");
    assert_config_equal(&r.cfg, &defaults);
    done(&r);
}

static void durations_and_sizes_parse_units(void **state)
{
    static const struct {
        const char *text;
        uint32_t ms;
    } durations[] = {
        {"1500", 1500}, {"250ms", 250}, {"5s", 5000}, {"2m", 120000},
        {"1h", 3600000}, {"1m30s", 90000}, {"0", 0}, {"\"10s\"", 10000},
    };
    static const struct {
        const char *text;
        uint64_t bytes;
    } sizes[] = {
        {"512", 512},           {"512B", 512},          {"64KiB", 65536},
        {"64KB", 64000},        {"50MiB", 52428800},    {"64MB", 64000000},
        {"1GiB", 1073741824},   {"2GB", 2000000000},    {"64 mib", 67108864},
    };
    char yaml[256];
    struct run r;
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        snprintf(yaml, sizeof yaml, "shutdown:\n  grace_period: %s\n", durations[i].text);
        load_ok(&r, yaml);
        assert_int_equal(r.cfg.shutdown.grace_period_ms, durations[i].ms);
        done(&r);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(yaml, sizeof yaml, "queue:\n  max_bytes: %s\n", sizes[i].text);
        load_ok(&r, yaml);
        for (int p = 0; p < SR_PIPE_COUNT; p++)
            assert_int_equal(r.cfg.pipes[p].queue.max_bytes, sizes[i].bytes);
        done(&r);
    }
}

static void malformed_durations_and_sizes_rejected(void **state)
{
    expect_errors("shutdown:\n  grace_period: 1.5s\n",
                  "t.yaml:2:17: shutdown.grace_period: invalid duration '1.5s' (expected e.g. "
                  "250ms, 5s, 2m, 1h; a bare number is ms)\n");
    expect_errors("shutdown:\n  grace_period: 5sec\n",
                  "t.yaml:2:17: shutdown.grace_period: invalid duration '5sec' (expected e.g. "
                  "250ms, 5s, 2m, 1h; a bare number is ms)\n");
    expect_errors("shutdown:\n  grace_period: -1\n",
                  "t.yaml:2:17: shutdown.grace_period: invalid duration '-1' (expected e.g. "
                  "250ms, 5s, 2m, 1h; a bare number is ms)\n");
    expect_errors("queue:\n  max_bytes: 64M\n",
                  "t.yaml:2:14: queue.max_bytes: invalid size '64M' (expected e.g. 512, 64KiB, "
                  "50MiB, 1GiB)\n");
    expect_errors("server:\n  workers: 0x10\n",
                  "t.yaml:2:12: server.workers: invalid number '0x10' (expected a non-negative "
                  "integer)\n");
}

static void out_of_range_rejected(void **state)
{
    expect_errors("pipes:\n"
                  "  meter:\n"
                  "    sender:\n"
                  "      max_batch_events: 0\n"
                  "      linger: 61s\n"
                  "      max_batch_bytes: 2GiB\n"
                  "queue:\n"
                  "  max_events: 99999999999999999999999\n",
                  "t.yaml:4:25: pipes.meter.sender.max_batch_events: must be between 1 and 100000\n"
                  "t.yaml:5:15: pipes.meter.sender.linger: must be between 1ms and 1m\n"
                  "t.yaml:6:24: pipes.meter.sender.max_batch_bytes: must be between 1 and 1GiB\n"
                  "t.yaml:8:15: queue.max_events: must be between 1 and 100000000\n");
}

/* gRPC takes the connection age as an int of milliseconds: 25 days would wrap
 * (and silently disable it); the loader refuses it instead. */
static void max_connection_age_above_int_max_ms_rejected(void **state)
{
    struct run r;
    expect_errors("server:\n"
                  "  max_connection_age: 577h\n",
                  "t.yaml:2:23: server.max_connection_age: must be between 0ms and 576h\n");
    load(&r, "server:\n  max_connection_age: 576h\n");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.server.max_connection_age_ms, 24u * 86400u * 1000u);
    done(&r);
}

static void fault_containment_keys_parse(void **state)
{
    struct run r;
    load(&r, "upstream:\n  stall_timeout: 500ms\n  max_inflight_per_node: 3\n"
                        "queue:\n  total_max_bytes: 1GiB\n  dead_letter_dir: /tmp/dl\n"
                        "pipes:\n  log:\n    routing:\n      policy: least_loaded\n");
    assert_string_equal(r.err, "");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.cfg.upstream.stall_timeout_ms, 500);
    assert_int_equal(r.cfg.upstream.max_inflight_per_node, 3);
    assert_int_equal(r.cfg.queue.total_max_bytes, 1ull << 30);
    assert_string_equal(r.cfg.queue.dead_letter_dir, "/tmp/dl");
    assert_int_equal(r.cfg.pipes[SR_PIPE_LOG].routing.policy, SR_ROUTE_LEAST_LOADED);
    assert_string_equal(sr_routing_policy_name(SR_ROUTE_LEAST_LOADED), "least_loaded");
    done(&r);
}

static void duplicate_key_rejected(void **state)
{
    expect_errors("server:\n  workers: 2\nupstream: {}\nserver:\n  workers: 3\n  workers: 4\n",
                  "t.yaml:4:1: server: duplicate key (first at 1:1)\n");
    expect_errors("server:\n  workers: 2\n  workers: 4\n",
                  "t.yaml:3:3: server.workers: duplicate key (first at 2:3)\n");
}

static void empty_node_list_rejected(void **state)
{
    unsetenv("SR_TEST_NODES");
    expect_errors("upstream:\n  addresses: \"\"\n",
                  "t.yaml:2:14: upstream.addresses: must list at least one upstream node\n");
    expect_errors("upstream:\n  addresses: []\n",
                  "t.yaml:2:14: upstream.addresses: must list at least one upstream node\n");
    expect_errors("upstream:\n  addresses: ${SR_TEST_NODES}\n",
                  "t.yaml:2:14: upstream.addresses: must list at least one upstream node\n");
}

static void unsupported_finder_rejected(void **state)
{
    struct run r;
    load_ok(&r, "upstream:\n  finder: static\n");
    done(&r);
    load_ok(&r, "upstream:\n  finder: kubernetes\n  kubernetes:\n    label_selector: app=oap\n");
    assert_int_equal(r.cfg.upstream.finder, SR_FINDER_KUBERNETES);
    assert_string_equal(r.cfg.upstream.kubernetes.label_selector, "app=oap");
    done(&r);
    load_ok(&r, "upstream:\n  finder: dns\n  addresses: oap-headless:11800\n");
    assert_int_equal(r.cfg.upstream.finder, SR_FINDER_DNS);
    done(&r);
    expect_errors("upstream:\n  finder: consul\n",
                  "t.yaml:2:11: upstream.finder: unknown value 'consul' (expected static, dns or "
                  "kubernetes)\n");
}

static void top_level_queue_is_every_pipes_default_and_pipe_queue_overrides(void **state)
{
    struct run r;
    /* pipes before queue: the order in the file does not matter */
    load_ok(&r, "pipes:\n  meter:\n    queue:\n      max_events: 7\n"
                "queue:\n  max_events: 100\n  full_wait: 0\n");
    assert_int_equal(r.cfg.pipes[SR_PIPE_SEGMENT].queue.max_events, 100);
    assert_int_equal(r.cfg.pipes[SR_PIPE_LOG].queue.max_events, 100);
    assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].queue.max_events, 100);
    assert_int_equal(r.cfg.pipes[SR_PIPE_METER].queue.max_events, 7);
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        assert_int_equal(r.cfg.pipes[p].queue.full_wait_ms, 0);
        assert_int_equal(r.cfg.pipes[p].queue.max_bytes, 64u << 20);
    }
    done(&r);
}

static void wrong_node_kinds_rejected(void **state)
{
    expect_errors("server: [1, 2]\n"
                  "upstream:\n"
                  "  call_timeout: {s: 1}\n"
                  "  addresses: {a: 1}\n"
                  "pipes:\n"
                  "  log: on\n",
                  "t.yaml:1:9: server: must be a mapping, not a sequence\n"
                  "t.yaml:3:17: upstream.call_timeout: must be a scalar, not a mapping\n"
                  "t.yaml:4:14: upstream.addresses: must be a \"host:port[#weight]\" list: a "
                  "string or a sequence of strings, not a mapping\n"
                  "t.yaml:6:8: pipes.log: must be a mapping, not a scalar\n");
    expect_errors("- a\n- b\n", "t.yaml:1:1: the document must be a mapping, not a sequence\n");
}

static void booleans_and_log_levels(void **state)
{
    static const struct {
        const char *text;
        bool value;
    } bools[] = {{"true", true}, {"yes", true}, {"On", true},
                 {"false", false}, {"no", false}, {"OFF", false}};
    static const struct {
        const char *text;
        int level;
    } levels[] = {{"error", SR_LOG_ERROR}, {"warn", SR_LOG_WARN},   {"warning", SR_LOG_WARN},
                  {"INFO", SR_LOG_INFO},   {"debug", SR_LOG_DEBUG}, {"trace", SR_LOG_DEBUG}};
    char yaml[128];
    struct run r;
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        snprintf(yaml, sizeof yaml, "pipes:\n  als:\n    enabled: %s\n", bools[i].text);
        load_ok(&r, yaml);
        assert_int_equal(r.cfg.pipes[SR_PIPE_ALS].enabled, bools[i].value);
        assert_true(r.cfg.pipes[SR_PIPE_LOG].enabled);
        done(&r);
    }
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        snprintf(yaml, sizeof yaml, "log:\n  level: %s\n", levels[i].text);
        load_ok(&r, yaml);
        assert_int_equal(r.cfg.log.level, levels[i].level);
        done(&r);
    }
    expect_errors("pipes:\n  als:\n    enabled: maybe\nlog:\n  level: loud\n",
                  "t.yaml:3:14: pipes.als.enabled: invalid boolean 'maybe' (expected true/false, "
                  "yes/no or on/off)\n"
                  "t.yaml:5:10: log.level: unknown log level 'loud' (expected error, warn, info "
                  "or debug)\n");
}

static void listen_address_validated(void **state)
{
    struct run r;
    load_ok(&r, "server:\n  address: 127.0.0.1:0\n"); /* port 0: the kernel picks (tests) */
    assert_string_equal(r.cfg.server.address, "127.0.0.1:0");
    done(&r);
    expect_errors("server:\n  address: 0.0.0.0\n",
                  "t.yaml:2:12: server.address: '0.0.0.0': missing port (expected host:port)\n");
}

static void backoff_max_below_initial_rejected(void **state)
{
    expect_errors("upstream:\n  backoff_initial: 2s\n  backoff_max: 500ms\n",
                  "t.yaml:3:16: upstream.backoff_max: upstream.backoff_max (500ms) must not be "
                  "less than upstream.backoff_initial (2s)\n");
    expect_errors("upstream:\n  backoff_initial: 1m\n",
                  "t.yaml:2:20: upstream.backoff_initial: upstream.backoff_max (10s) must not be "
                  "less than upstream.backoff_initial (1m)\n");
}

static void missing_file_reported_with_path(void **state)
{
    struct run r;
    size_t n;
    FILE *f = open_memstream(&r.err, &n);
    r.rc = sr_config_load(&r.cfg, "test/unit/no-such-config.yaml", f);
    fclose(f);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err,
                        "test/unit/no-such-config.yaml: cannot read: No such file or directory\n");
    assert_string_equal(r.cfg.upstream.nodes[0].address, "127.0.0.1:11801");
    done(&r);
}

static void pipe_names_match_yaml_sections(void **state)
{
    assert_string_equal(sr_pipe_name(SR_PIPE_SEGMENT), "segment");
    assert_string_equal(sr_pipe_name(SR_PIPE_LOG), "log");
    assert_string_equal(sr_pipe_name(SR_PIPE_METER), "meter");
    assert_string_equal(sr_pipe_name(SR_PIPE_ALS), "als");
    assert_string_equal(sr_pipe_name(SR_PIPE_COUNT), "unknown");
}

/* A token left empty by a missing variable is named, so that start-up can warn about it
 * (a Kubernetes secretKeyRef that found nothing leaves the variable unset). */
static void empty_secret_names_its_unset_variable(void **state)
{
    struct run r = {0};
    (void)state;
    unsetenv("SR_TEST_TOKEN_UNSET");
    setenv("SR_TEST_TOKEN_SET", "s3cret", 1);
    load_ok(&r, "server:\n  authentication: ${SR_TEST_TOKEN_UNSET:}\n"
                "upstream:\n  authentication: ${SR_TEST_TOKEN_SET:}\n"
                "telemetry:\n  admin:\n    token: \"\"\n    header_timeout: 500ms\n");
    assert_null(r.cfg.server.authentication);
    assert_string_equal(sr_config_unset_env_of(&r.cfg, "server.authentication"),
                        "SR_TEST_TOKEN_UNSET");
    assert_string_equal(r.cfg.upstream.authentication, "s3cret");
    assert_null(sr_config_unset_env_of(&r.cfg, "upstream.authentication"));
    assert_null(r.cfg.telemetry.admin.token); /* empty on purpose: nothing to name */
    assert_null(sr_config_unset_env_of(&r.cfg, "telemetry.admin.token"));
    assert_int_equal(r.cfg.telemetry.admin.header_timeout_ms, 500);
    done(&r);
    unsetenv("SR_TEST_TOKEN_SET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_shipped_yaml),
        cmocka_unit_test(shipped_yaml_documents_every_setting_with_a_comment),
        cmocka_unit_test(print_config_prints_every_setting),
        cmocka_unit_test(print_config_round_trips_defaults_and_the_shipped_file),
        cmocka_unit_test(print_config_round_trips_every_kind_of_value),
        cmocka_unit_test(print_config_redacts_secrets),
        cmocka_unit_test(print_config_marks_a_value_that_would_read_as_a_placeholder),
        cmocka_unit_test(pipe_settings_precedence),
        cmocka_unit_test(meter_policy_set_at_pipe_level_wins_over_its_builtin),
        cmocka_unit_test(pipe_defaults_errors_name_the_place),
        cmocka_unit_test(shipped_yaml_wires_env_names_to_their_settings),
        cmocka_unit_test(env_placeholder_uses_env_then_default),
        cmocka_unit_test(empty_env_falls_back_to_default),
        cmocka_unit_test(placeholder_without_default_is_empty_when_unset),
        cmocka_unit_test(several_placeholders_in_one_scalar),
        cmocka_unit_test(nested_placeholder_default_reads_second_variable),
        cmocka_unit_test(satellite_quoted_default_and_port_only_address_accepted),
        cmocka_unit_test(bad_env_value_error_names_the_variable),
        cmocka_unit_test(malformed_placeholders_rejected),
        cmocka_unit_test(node_list_from_comma_string_with_weights),
        cmocka_unit_test(node_list_from_sequence),
        cmocka_unit_test(ipv6_node),
        cmocka_unit_test(bad_port_reports_file_line_col_key),
        cmocka_unit_test(bad_node_entries_give_reasons),
        cmocka_unit_test(parse_nodes_appends_all_or_nothing),
        cmocka_unit_test(unknown_key_is_an_error_with_path),
        cmocka_unit_test(upstream_method_exists_only_on_segment_and_als),
        cmocka_unit_test(all_errors_reported_not_just_first),
        cmocka_unit_test(yaml_syntax_error_has_position),
        cmocka_unit_test(only_one_document_accepted),
        cmocka_unit_test(empty_document_and_empty_sections_give_defaults),
        cmocka_unit_test(durations_and_sizes_parse_units),
        cmocka_unit_test(malformed_durations_and_sizes_rejected),
        cmocka_unit_test(out_of_range_rejected),
        cmocka_unit_test(duplicate_key_rejected),
        cmocka_unit_test(max_connection_age_above_int_max_ms_rejected),
        cmocka_unit_test(fault_containment_keys_parse),
        cmocka_unit_test(empty_node_list_rejected),
        cmocka_unit_test(unsupported_finder_rejected),
        cmocka_unit_test(top_level_queue_is_every_pipes_default_and_pipe_queue_overrides),
        cmocka_unit_test(wrong_node_kinds_rejected),
        cmocka_unit_test(booleans_and_log_levels),
        cmocka_unit_test(listen_address_validated),
        cmocka_unit_test(backoff_max_below_initial_rejected),
        cmocka_unit_test(missing_file_reported_with_path),
        cmocka_unit_test(pipe_names_match_yaml_sections),
        cmocka_unit_test(empty_secret_names_its_unset_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
