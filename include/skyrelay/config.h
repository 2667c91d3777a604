/* Configuration: config/skyrelay.yaml loaded with libyaml into a node tree,
 * then bound to struct sr_config through a table of keys.
 *
 * Scalars may contain ${ENV_NAME:default} placeholders (Satellite syntax),
 * substituted before the value is parsed. Durations accept "250ms", "5s",
 * "2m", "1h" or a bare integer in milliseconds; sizes accept "512", "64KiB",
 * "50MiB", "1GiB", "64KB", "64MB" (KB/MB = 1000-based, KiB/MiB = 1024-based).
 * Errors are reported as "file:line:col: key.path: reason", all of them, and
 * the load fails as a whole (never a half-valid config). */
#ifndef SKYRELAY_CONFIG_H
#define SKYRELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The async batched pipes. One queue, sender and routing policy each. Each has its row in
 * the pipe definition table (src/core/pipes.c, include/skyrelay/pipes.h): its name, methods,
 * plans and modes; config keys, method table, schema map and plans derive from it. */
enum sr_pipe_id {
    SR_PIPE_SEGMENT = 0, /* TraceSegmentReportService/collect + /collectInSync */
    SR_PIPE_LOG,         /* LogReportService/collect */
    SR_PIPE_METER,       /* MeterReportService/collect + /collectBatch */
    SR_PIPE_ALS,         /* envoy AccessLogService v2 + v3 StreamAccessLogs */
    SR_PIPE_JVM, /* JVMMetricReportService/collect (unary) */
    SR_PIPE_CLR, /* CLRMetricReportService/collect (unary) */
    SR_PIPE_EVENT, /* EventService/collect */
    SR_PIPE_SPAN_EVENT, /* SpanAttachedEventReportService/collect */
    SR_PIPE_PROFILE, /* ProfileTask/collectSnapshot */
    SR_PIPE_EBPF_PROFILING, /* EBPFProfilingService/collectProfilingData */
    SR_PIPE_EBPF_ACCESS_LOG, /* EBPFAccessLogService/collect */
    SR_PIPE_KEEPALIVE, /* ManagementService/keepAlive (unary) */
    SR_PIPE_INSTANCE_PROPERTIES, /* ManagementService/reportInstanceProperties (unary) */
    SR_PIPE_ENVOY_METRICS, /* envoy MetricsService v2/v3 StreamMetrics */
    SR_PIPE_COUNT
};

/* pipes.segment.upstream_method (the index of the mode's name and plan in its pipe row) */
enum sr_segment_mode { SR_SEGMENT_COLLECT = 0, SR_SEGMENT_COLLECT_IN_SYNC };
/* pipes.als.upstream_method */
enum sr_als_mode { SR_ALS_PER_IDENTIFIER = 0, SR_ALS_SATELLITE };

struct sr_queue_config {
    uint32_t max_events;  /* whole pipe; split evenly over the worker partitions */
    uint64_t max_bytes;   /* whole pipe; split evenly over the worker partitions */
    uint32_t full_wait_ms; /* how long a receiver waits for room before RESOURCE_EXHAUSTED */
    bool persistent;       /* with queue.disk.dir set: events are kept on disk until acknowledged */
};

struct sr_sender_config {
    uint32_t max_batch_events; /* flush when a batch holds this many events */
    uint64_t max_batch_bytes;  /* ... or this many bytes */
    uint32_t linger_ms;        /* ... or when its oldest event is this old */
    uint32_t max_inflight;     /* upstream batches in flight per worker partition */
};

/* pipes.<name>.routing.policy: the routing policies, one line each — the enum
 * constant, the YAML name, and the balancer type that implements it
 * (src/router/). The enum, the config's names and the balancer registry
 * (src/router/router.c) are all made from this list: adding a balancer is its
 * file and one line here. */
#define SR_ROUTING_POLICIES(X)                                                                     \
    X(ROUND_ROBIN, "round_robin", sr_balancer_round_robin) /* per batch, in order */               \
    X(WEIGHTED_ROUND_ROBIN, "weighted_round_robin",                                                \
      sr_balancer_weighted_round_robin) /* smooth WRR over node weights (nginx semantics) */      \
    X(FIXED, "fixed", sr_balancer_fixed) /* rendezvous hashing of the event key + LRU pin */       \
    X(LEAST_LOADED, "least_loaded",                                                                \
      sr_balancer_least_loaded) /* power of two choices by outstanding work x peak-EWMA latency */

enum sr_routing_policy {
#define SR_ROUTING_POLICY_ENUM_(id, name, type) SR_ROUTE_##id,
    SR_ROUTING_POLICIES(SR_ROUTING_POLICY_ENUM_)
#undef SR_ROUTING_POLICY_ENUM_
    SR_ROUTE_COUNT
};

struct sr_routing_config {
    int policy;           /* enum sr_routing_policy */
    uint32_t lru_size;    /* fixed: keys pinned to their node */
    uint32_t lru_ttl_ms;  /* fixed: a pin unused this long expires (sliding) */
};

/* pipes.<name>.validate: how deep a received message is checked before the agent is told OK */
enum sr_validate_depth {
    SR_VALIDATE_DEEP = 0, /* the whole message against its schema (src/receiver/schema.c) */
    SR_VALIDATE_TOP,      /* top-level framing only; OAP refusals are isolated upstream */
};

struct sr_pipe_config {
    bool enabled;
    int validate; /* enum sr_validate_depth */
    int mode; /* enum sr_segment_mode for SR_PIPE_SEGMENT, enum sr_als_mode for SR_PIPE_ALS, else 0 */
    struct sr_queue_config queue;
    struct sr_sender_config sender;
    struct sr_routing_config routing;
};

/* server.tls.client_auth: what a client certificate must be (with server.tls.client_ca_file) */
enum sr_tls_client_auth {
    SR_TLS_CLIENT_AUTH_NONE = 0, /* not requested */
    SR_TLS_CLIENT_AUTH_OPTIONAL, /* requested; verified when the client sends one */
    SR_TLS_CLIENT_AUTH_REQUIRE,  /* a valid one or the handshake fails */
};

/* upstream.finder */
/* upstream.finder: the finders, one line each — the enum constant, the YAML name and
 * the finder type (include/skyrelay/discovery.h). The enum, the config's names and the
 * finder registry (src/discovery/registry.c) are made from this list. */
#define SR_FINDERS(X)                                                                              \
    X(STATIC, "static", sr_finder_static)             /* upstream.addresses as written */          \
    X(DNS, "dns", sr_finder_dns)                      /* the addresses' names, re-resolved */      \
    X(KUBERNETES, "kubernetes", sr_finder_kubernetes) /* pods/endpoints by label, list + watch */

enum sr_finder {
#define SR_FINDER_ENUM_(id, name, type) SR_FINDER_##id,
    SR_FINDERS(SR_FINDER_ENUM_)
#undef SR_FINDER_ENUM_
    SR_FINDER_COUNT
};

/* upstream.kubernetes (Satellite's SATELLITE_GRPC_CLIENT_KUBERNETES_* names) */
struct sr_k8s_config {
    char *namespaces;      /* comma-separated; NULL = the pod's own namespace (service account) */
    int kind;              /* 0 = pod, 1 = endpoints (EndpointSlices) */
    char *label_selector;  /* e.g. "app=oap" */
    char *field_selector;  /* optional */
    uint32_t extra_port;   /* the OAP gRPC port on each pod / endpoint */
    char *api_server;      /* "https://host:port"; NULL = in-cluster (KUBERNETES_SERVICE_HOST/PORT) */
    char *bearer_token_file; /* NULL = the service account token */
    char *ca_file;         /* NULL = the service account CA */
    bool insecure_skip_verify;
    bool allow_insecure_http; /* an http:// api_server is refused unless set (the token in clear) */
};

struct sr_node_config {
    char *address; /* "host:port" as given to grpc_channel_create (owned) */
    uint32_t weight; /* from "host:port#weight"; 1 when absent */
};

/* A string key that came out empty because the variable of its ${NAME} placeholder was
 * unset or empty: start-up names the variable for the secrets (src/main.c). */
struct sr_config_unset_env {
    const char *key; /* the key's dotted path (static storage) */
    char *name;      /* the variable's name (owned) */
};

struct sr_config {
    char *path; /* owned copy of the file name */
    struct sr_config_unset_env *unset_env; /* owned array, in file order */
    size_t n_unset_env;

    struct {
        char *address;           /* listen address, "0.0.0.0:11800" */
        uint32_t workers;        /* 0 = number of online CPUs */
        uint64_t max_receive_message_size;
        uint32_t max_concurrent_streams;
        uint32_t keepalive_time_ms;
        uint32_t keepalive_timeout_ms;
        bool http2_bdp_probe; /* let gRPC grow flow-control windows (more memory per stream) */
        char *authentication; /* token agents must send as `authentication` metadata; NULL = off */
        uint32_t max_connections;           /* live downstream connections; N+1 is refused */
        uint32_t max_connection_age_ms;     /* 0 = off; older connections get GOAWAY */
        uint32_t max_connection_age_grace_ms; /* then in-flight calls get this long */
        struct sr_server_tls_config {
            char *cert_file;      /* PEM chain; with key_file: the port speaks TLS (NULL = h2c) */
            char *key_file;       /* PEM private key of cert_file */
            char *client_ca_file; /* PEM CAs client certificates are verified against (mTLS) */
            int client_auth;      /* enum sr_tls_client_auth; only with client_ca_file */
            uint32_t reload_interval_ms; /* files re-checked at most this often; 0 = never */
        } tls;
    } server;

    struct {
        int finder;                   /* enum sr_finder */
        struct sr_node_config *nodes; /* owned array: static nodes, or the DNS names to resolve */
        size_t n_nodes;
        uint32_t refresh_interval_ms; /* dns: re-resolve this often */
        struct sr_k8s_config kubernetes;
        uint32_t call_timeout_ms;    /* deadline of one upstream batch call */
        uint32_t backoff_initial_ms; /* a failed node is skipped this long, doubling ... */
        uint32_t backoff_max_ms;     /* ... up to this */
        uint32_t retry_max_ms;       /* a batch is retried on other nodes this long, then dropped */
        uint32_t sync_timeout_ms;    /* cap of a synchronous pass-through call's deadline */
        uint32_t stall_timeout_ms;   /* a call outstanding this long marks its node stalled; 0 = off */
        uint32_t max_inflight_per_node; /* a pipe's batches in flight on one node, per worker;
                                         * 0 = auto (all with one node, else half, >= 1) */
        char *authentication;        /* sent as `authentication` on every upstream call; NULL = none */
        uint64_t max_receive_message_size;
        struct {                    /* fetchConfigurations (src/server/cds.c) */
            uint32_t cache_ttl_ms;  /* an answer this young answers polls itself; 0 = off */
            uint32_t stale_ttl_ms;  /* one this young answers when OAP does not; 0 = off */
            uint32_t max_services;  /* entries kept; then the least recently used goes */
            uint64_t max_bytes;     /* their bytes; likewise */
        } config_discovery;
        struct sr_upstream_tls_config {
            bool enabled;          /* TLS to OAP; the files below are ignored when false */
            char *ca_file;         /* PEM CAs OAP's certificate is verified against; NULL = system roots */
            char *cert_file;       /* client certificate (mTLS to OAP), with key_file */
            char *key_file;
            char *server_name;     /* name checked in OAP's certificate instead of the host */
            bool insecure_skip_verify; /* accept any OAP certificate (a warning at start) */
            uint32_t reload_interval_ms; /* files re-checked this often; 0 = never */
        } tls;
    } upstream;

    struct sr_pipe_config pipes[SR_PIPE_COUNT];

    struct {
        uint64_t total_max_bytes; /* all pipes, split over the workers; 0 = auto (a fraction of
                                   * the cgroup memory limit, else 512 MiB) */
        char *dead_letter_dir;    /* poison events are written here; NULL = not kept */
        struct {
            char *dir;             /* NULL or "" = memory only (src/queue/disklog.c) */
            uint64_t max_bytes;    /* all segment files together; then backpressure */
            uint64_t min_free;     /* refuse when the filesystem has less free than this */
            uint64_t segment_size; /* a segment file is closed at this size */
            int sync;              /* enum sr_disk_sync (include/skyrelay/disklog.h) */
            uint32_t sync_interval_ms;
        } disk;
    } queue;

    struct {
        int level; /* enum sr_log_level */
    } log;

    struct {
        char *prometheus_address; /* admin HTTP: /metrics, /healthz, /readyz ("host:port", ":port") */
        bool export_prometheus;   /* telemetry.export contains "prometheus" */
        bool export_metrics_service; /* telemetry.export contains "metrics_service": self meters to OAP */
        char *service;            /* self meters' service name */
        char *instance;           /* self meters' instance name (default: hostname) */
        uint32_t interval_ms;     /* self meters are sent this often */
        struct {
            uint32_t max_connections;          /* admin connections in all; then the oldest
                                                * still reading is closed for a new one */
            uint32_t max_connections_per_peer; /* from one IP address; more are refused */
            uint32_t header_timeout_ms;        /* a request head must arrive within this */
            char *token;                       /* bearer token for /metrics; NULL = none */
        } admin;
    } telemetry;

    struct {
        uint32_t grace_period_ms; /* SIGTERM: drain queues upstream for at most this long */
        uint32_t stream_grace_ms; /* SIGTERM: in-flight agent calls may finish this long, then are cancelled */
    } shutdown;
};

/* Fills *cfg with the built-in defaults (the same values config/skyrelay.yaml documents).
 * Never fails and allocates nothing: server.address and upstream.nodes point at static
 * storage (read-only) until a load replaces them. sr_config_deinit is safe on the result. */
void sr_config_defaults(struct sr_config *cfg);

/* Loads and validates `path` into *cfg (which it first fills with defaults; *cfg is
 * treated as uninitialized, so deinit a previously loaded one first or load into a new one).
 * Every error is written to `err` (may be NULL) as "file:line:col: key: reason\n".
 * Returns 0, or -1 when the file cannot be read or any error was found; on
 * error *cfg holds only defaults (and must still be passed to sr_config_deinit). */
int sr_config_load(struct sr_config *cfg, const char *path, FILE *err);

/* Same as sr_config_load on an in-memory document; `name` is used in messages. */
int sr_config_load_string(struct sr_config *cfg, const char *name, const char *text, size_t len,
                          FILE *err);

/* Parses a comma-separated "host:port[#weight]" list into nodes (appends; *nodes must be
 * NULL or a heap array from an earlier call, owned by the caller: free each address and
 * the array). All or nothing: on error nothing is appended. An empty list is an error.
 * Returns 0 or -1 with a reason in *why (static string). */
int sr_config_parse_nodes(const char *list, struct sr_node_config **nodes, size_t *n_nodes,
                          const char **why);

struct sr_buf;

/* A reload (src/server/reload.c): gives `next` the running value of every setting
 * that cannot change while skyrelay runs (ports, threads, queue sizes, plans, the
 * finder, the admin port: the list is in src/config/merge.c) and that differs in
 * `next`. Appends "path (running: X, file: Y)" for each to notes (may be NULL).
 * Returns how many were kept, or -ENOMEM (next is then still valid to deinit). */
int sr_config_keep_restart_only(struct sr_config *next, const struct sr_config *cur,
                                struct sr_buf *notes);

/* Frees what sr_config_load allocated and zeroes *cfg (calling it twice is harmless). */
void sr_config_deinit(struct sr_config *cfg);

/* Writes the effective configuration to `out` as YAML (skyrelay --print-config): every key,
 * every pipe in full, placeholders already substituted. sr_config_load reads it back to the
 * same config, except that server.authentication and upstream.authentication, when set,
 * are written as "<redacted>". Borrows cfg. Returns 0, or -1 when writing failed. */
int sr_config_print(const struct sr_config *cfg, FILE *out);

/* The variable whose absence (unset or empty) left string key `key` (dotted path) empty,
 * or NULL when the key has a value or is empty without a placeholder. Borrowed from cfg. */
const char *sr_config_unset_env_of(const struct sr_config *cfg, const char *key);

/* Name of a routing policy as used in YAML and by the balancer registry. */
const char *sr_routing_policy_name(int policy);

/* Name of a pipe as used in YAML and metrics ("segment", "log", "meter", "als", ...): its
 * pipe definition's name (src/core/pipes.c); "unknown" past the last pipe. */
const char *sr_pipe_name(enum sr_pipe_id id);

#endif
