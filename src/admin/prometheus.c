/* The /metrics body: Prometheus text exposition format 0.0.4.
 *
 * Every number is read at scrape time from where the data path already keeps
 * it: the workers' counters (summed with relaxed loads; each worker is the only
 * writer of its own), the partitions' depth atomics, the nodes' atomics and the
 * connection monitor. The per-pipe families come from the SR_PIPE_COUNTERS
 * list (metrics.h) and sr_pipe_snapshot. Nothing is counted for the scrape, so a scrape costs the
 * workers nothing. The sums are not a snapshot across workers (a batch may be
 * counted as sent on one worker while another's received is read a moment
 * earlier); each series is still monotone, which is all Prometheus needs.
 *
 * Label sets are bounded by configuration: pipe (the enabled pipes), node
 * (the configured upstream addresses), and fixed enums (status, reason, mode,
 * direction). No client address or agent identity ever becomes a label.
 * The list of families with their meaning is docs/metrics.md. */
#include <dirent.h>
#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "skyrelay/admin.h"
#include "skyrelay/cds.h"
#include "skyrelay/discovery.h"
#include "skyrelay/buf.h"
#include "skyrelay/conn_limit.h"
#include "skyrelay/tls.h"
#include "skyrelay/metrics.h"
#include "skyrelay/queue.h"
#include "skyrelay/upstream.h"
#include "skyrelay/worker.h"
#include "internal.h"

/* ---- writing ---- */

/* A label value: backslash, double quote and line feed are escaped (the
 * exposition format's rule); everything else is written as is. */
static void put_label_value(struct sr_buf *o, const char *v)
{
    for (const char *s = v ? v : ""; *s; s++) {
        if (*s == '\\')
            sr_buf_puts(o, "\\\\");
        else if (*s == '"')
            sr_buf_puts(o, "\\\"");
        else if (*s == '\n')
            sr_buf_puts(o, "\\n");
        else
            sr_buf_append(o, s, 1);
    }
}

/* "# HELP" and "# TYPE" of a family, written once before its samples. The
 * help texts are constants without backslashes or line feeds. */
static void family(struct sr_buf *o, const char *name, const char *type, const char *help)
{
    sr_buf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k="v"} value: one label (k NULL = none). */
static void sample(struct sr_buf *o, const char *name, const char *k, const char *v, uint64_t value)
{
    sr_buf_puts(o, name);
    if (k) {
        sr_buf_appendf(o, "{%s=\"", k);
        put_label_value(o, v);
        sr_buf_puts(o, "\"}");
    }
    sr_buf_appendf(o, " %llu\n", (unsigned long long)value);
}

/* A family with one unlabelled sample. */
static void single(struct sr_buf *o, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    family(o, name, type, help);
    sample(o, name, NULL, NULL, value);
}

/* name{k1="v1",k2="v2"} value */
static void sample2(struct sr_buf *o, const char *name, const char *k1, const char *v1,
                    const char *k2, const char *v2, uint64_t value)
{
    sr_buf_appendf(o, "%s{%s=\"", name, k1);
    put_label_value(o, v1);
    sr_buf_appendf(o, "\",%s=\"", k2);
    put_label_value(o, v2);
    sr_buf_appendf(o, "\"} %llu\n", (unsigned long long)value);
}

/* ---- sums over the workers ---- */

/* ---- per-pipe families ---- */

/* bounds are in milliseconds; le is in seconds */
static void put_le(struct sr_buf *o, int b)
{
    if (b >= SR_LAT_BUCKETS - 1)
        sr_buf_puts(o, "+Inf");
    else
        sr_buf_appendf(o, "%.6g", sr_latency_bounds_ms[b] / 1000.0);
}

/* The per-pipe families: one per SR_PIPE_COUNTERS entry with SR_PROM (list
 * order), then skyrelay_pipe_calls_total from the SR_PROM_CALLS entries, the
 * drops and the latency histogram. */
static void render_pipes(struct sr_buf *o, const struct sr_runtime *rt)
{
    struct sr_pipe_totals *sums;
    bool enabled[SR_PIPE_COUNT];

    sums = calloc(SR_PIPE_COUNT, sizeof(*sums));
    if (!sums) {
        o->oom = true;
        return;
    }
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        enabled[p] = rt->cfg && rt->cfg->pipes[p].enabled;
        if (enabled[p]) sr_pipe_snapshot(rt, (enum sr_pipe_id)p, &sums[p]);
    }

    for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++) {
        const struct sr_pipe_metric *pm = &sr_pipe_metrics[m];
        if (pm->prom_status) continue;
        family(o, pm->prom_name, pm->prom_type, pm->prom_help);
        for (int p = 0; p < SR_PIPE_COUNT; p++)
            if (enabled[p])
                sample(o, pm->prom_name, "pipe", sr_pipe_name((enum sr_pipe_id)p),
                       sr_pipe_totals_get(&sums[p], pm));
    }

    family(o, SR_PIPE_CALLS_FAMILY, "counter",
           "Downstream calls ended, by outcome: ok, invalid_argument (malformed message), "
           "resource_exhausted (queue full for queue.full_wait), broken (cancelled by the client "
           "or the transport).");
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        if (!enabled[p]) continue;
        for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++) {
            const struct sr_pipe_metric *pm = &sr_pipe_metrics[m];
            if (pm->prom_status)
                sample2(o, SR_PIPE_CALLS_FAMILY, "pipe", sr_pipe_name((enum sr_pipe_id)p), "status",
                        pm->prom_status, sr_pipe_totals_get(&sums[p], pm));
        }
    }

    family(o, "skyrelay_dropped_events_total", "counter",
           "Events given up, by reason: retry_exhausted (upstream.retry_max passed), "
           "upstream_rejected (UNAUTHENTICATED, PERMISSION_DENIED or UNIMPLEMENTED from OAP), "
           "shutdown (grace period ended), poison (one event refused as content by two nodes; "
           "written to queue.dead_letter_dir when set).");
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        if (!enabled[p]) continue;
        for (int r = 0; r < SR_DROP_COUNT; r++)
            sample2(o, "skyrelay_dropped_events_total", "pipe", sr_pipe_name((enum sr_pipe_id)p),
                    "reason", sr_drop_reason_name((enum sr_drop_reason)r), sums[p].dropped[r]);
    }

    family(o, "skyrelay_upstream_call_duration_seconds", "histogram",
           "Duration of upstream batch calls, from start to status.");
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        const char *name = sr_pipe_name((enum sr_pipe_id)p);
        uint64_t cum = 0;
        if (!enabled[p]) continue;
        /* The buckets are kept non-cumulative; _count is their total, so that
         * the +Inf bucket equals _count even while workers observe. */
        for (int b = 0; b < SR_LAT_BUCKETS; b++) {
            cum += sums[p].lat_bucket[b];
            sr_buf_puts(o, "skyrelay_upstream_call_duration_seconds_bucket{pipe=\"");
            put_label_value(o, name);
            sr_buf_puts(o, "\",le=\"");
            put_le(o, b);
            sr_buf_appendf(o, "\"} %llu\n", (unsigned long long)cum);
        }
        sr_buf_puts(o, "skyrelay_upstream_call_duration_seconds_sum{pipe=\"");
        put_label_value(o, name);
        sr_buf_appendf(o, "\"} %llu.%06llu\n", (unsigned long long)(sums[p].lat_sum_us / 1000000),
                       (unsigned long long)(sums[p].lat_sum_us % 1000000));
        sample(o, "skyrelay_upstream_call_duration_seconds_count", "pipe", name, cum);
    }
    free(sums);
}

/* ---- nodes ---- */

/* One sample per present node: value(node). */
#define NODE_SAMPLES(o, up, name, expr)                                                            \
    for (size_t i_ = 0; i_ < (up)->n_nodes; i_++) {                                                \
        const struct sr_node *n_ = &(up)->nodes[i_];                                               \
        if (sr_node_present(n_)) sample(o, name, "node", n_->address, (uint64_t)(expr));           \
    }

/* The per-node counters (_Atomic uint64_t fields of struct sr_node), in output order. */
struct node_family {
    const char *name, *help;
    size_t off;
};

static const struct node_family node_counters[] = {
    {"skyrelay_upstream_node_sent_events_total", "Events delivered to the node.",
     offsetof(struct sr_node, sent_events)},
    {"skyrelay_upstream_node_batches_total", "Upstream calls to the node that ended OK.",
     offsetof(struct sr_node, sent_batches)},
    {"skyrelay_upstream_node_failed_calls_total",
     "Upstream calls to the node that did not end OK (transport or content failures, hedged "
     "calls).",
     offsetof(struct sr_node, failed_calls)},
    {"skyrelay_upstream_node_stalls_total",
     "Times the node was found stalled (a call unanswered for upstream.stall_timeout).",
     offsetof(struct sr_node, stalls)},
    {"skyrelay_upstream_node_readmitted_total",
     "Ejections of the node ended early because it had lost its connection and reconnected "
     "(a restarted OAP gets a probe batch at once, not after its backoff).",
     offsetof(struct sr_node, readmitted)},
    {"skyrelay_upstream_node_hedged_events_total",
     "Events taken back from the node because it stalled, and re-sent to other nodes.",
     offsetof(struct sr_node, hedged_events)},
    {"skyrelay_upstream_node_content_refused_events_total",
     "Events in calls the node refused for their content (the node stays up).",
     offsetof(struct sr_node, poison_events)},
};

/* The state that decides whether the node gets batches now: stalled or ejected
 * while its backoff runs; up once it may be picked again (a stalled node then
 * gets a probe batch, and its first answer clears the stall). */
static const char *node_state(const struct sr_node *n, int64_t now)
{
    if (sr_node_is_up(n, now)) return "up";
    if (atomic_load_explicit(&n->stalled, memory_order_relaxed)) return "stalled";
    return "ejected";
}

static void render_nodes(struct sr_buf *o, struct sr_runtime *rt)
{
    static const char *const states[] = {"up", "stalled", "ejected"};
    const struct sr_upstream *up = &rt->up;
    int64_t now = sr_now_ms();

    family(o, "skyrelay_upstream_node_up", "gauge",
           "1 unless the node is ejected (failure backoff, or stalled) right now.");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_up", sr_node_is_up(n_, now) ? 1 : 0);
    family(o, "skyrelay_upstream_node_state", "gauge",
           "1 for the node's current state: up (gets batches), stalled (a call went unanswered "
           "for upstream.stall_timeout: no batches during its backoff, then a probe batch) or "
           "ejected (failure backoff).");
    for (size_t i = 0; i < up->n_nodes; i++) {
        const struct sr_node *n = &up->nodes[i];
        const char *st;
        if (!sr_node_present(n)) continue;
        st = node_state(n, now);
        for (int k = 0; k < 3; k++)
            sample2(o, "skyrelay_upstream_node_state", "node", n->address, "state", states[k],
                    strcmp(st, states[k]) == 0 ? 1 : 0);
    }
    family(o, "skyrelay_upstream_node_reachable", "gauge",
           "1 if the node counts for readiness: not ejected, and its channel is connected "
           "(or idle/connecting after an earlier successful call).");
    for (size_t i = 0; i < up->n_nodes; i++)
        if (sr_node_present(&up->nodes[i]))
            sample(o, "skyrelay_upstream_node_reachable", "node", up->nodes[i].address,
                   sr_node_reachable(&up->nodes[i], now) ? 1 : 0);
    family(o, "skyrelay_upstream_node_outstanding_calls", "gauge",
           "Upstream batch calls in flight on the node now (all workers and pipes).");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_outstanding_calls",
                 atomic_load_explicit(&n_->inflight, memory_order_relaxed));
    for (size_t f = 0; f < sizeof(node_counters) / sizeof(node_counters[0]); f++) {
        const struct node_family *nf = &node_counters[f];
        family(o, nf->name, "counter", nf->help);
        NODE_SAMPLES(o, up, nf->name,
                     atomic_load_explicit((const _Atomic uint64_t *)((const char *)n_ + nf->off),
                                          memory_order_relaxed));
    }
    family(o, "skyrelay_upstream_node_latency_ewma_seconds", "gauge",
           "Peak-sensitive moving average of the node's batch call latency (least_loaded "
           "routing).");
    for (size_t i = 0; i < up->n_nodes; i++) {
        const struct sr_node *n = &up->nodes[i];
        uint64_t us = atomic_load_explicit(&n->ewma_us, memory_order_relaxed);
        if (!sr_node_present(n)) continue;
        sr_buf_puts(o, "skyrelay_upstream_node_latency_ewma_seconds{node=\"");
        put_label_value(o, n->address);
        sr_buf_appendf(o, "\"} %llu.%06llu\n", (unsigned long long)(us / 1000000),
                       (unsigned long long)(us % 1000000));
    }
    family(o, "skyrelay_upstream_node_call_duration_seconds", "histogram",
           "Duration of upstream batch calls to the node, from start to status.");
    for (size_t i = 0; i < up->n_nodes; i++) {
        const struct sr_node *n = &up->nodes[i];
        uint64_t cum = 0, sum_us = SR_CNT_GET(n->latency.sum_us);
        if (!sr_node_present(n)) continue;
        for (int b = 0; b < SR_LAT_BUCKETS; b++) {
            cum += SR_CNT_GET(n->latency.bucket[b]);
            sr_buf_puts(o, "skyrelay_upstream_node_call_duration_seconds_bucket{node=\"");
            put_label_value(o, n->address);
            sr_buf_puts(o, "\",le=\"");
            put_le(o, b);
            sr_buf_appendf(o, "\"} %llu\n", (unsigned long long)cum);
        }
        sr_buf_puts(o, "skyrelay_upstream_node_call_duration_seconds_sum{node=\"");
        put_label_value(o, n->address);
        sr_buf_appendf(o, "\"} %llu.%06llu\n", (unsigned long long)(sum_us / 1000000),
                       (unsigned long long)(sum_us % 1000000));
        sample(o, "skyrelay_upstream_node_call_duration_seconds_count", "node", n->address, cum);
    }
}

/* ---- server and pass-through ---- */

static void render_server(struct sr_buf *o, struct sr_runtime *rt)
{
    struct sr_conn_stats cs;
    struct sr_call_totals s;

    memset(&cs, 0, sizeof(cs));
    sr_conn_limit_stats(&cs);
    sr_call_snapshot(rt, &s);

    single(o, "skyrelay_server_ready", "gauge",
           "1 when /readyz answers 200: listening, not draining, and an upstream node reachable.", sr_ready(rt) ? 1 : 0);
    {
        uint64_t used = 0, max = 0;
        for (uint32_t i = 0; i < rt->n_workers; i++) {
            used += atomic_load_explicit(&rt->workers[i].budget.used, memory_order_relaxed);
            max += rt->workers[i].budget.max;
        }
        single(o, "skyrelay_queue_budget_used_bytes", "gauge",
               "Bytes held now against queue.total_max_bytes: events queued and in flight in every "
               "pipe, messages held by paused calls, sync/relay buffers.", used);
        single(o, "skyrelay_queue_budget_bytes", "gauge",
               "queue.total_max_bytes as resolved (configured, or half the cgroup memory limit, "
               "or 512 MiB).", max);
    }
    family(o, "skyrelay_config_reloads_total", "counter",
           "Configuration reloads (SIGHUP) by result: ok (published) or failed (invalid file: the "
           "running configuration stayed).");
    sample(o, "skyrelay_config_reloads_total", "result", "ok", atomic_load(&rt->reloads_ok));
    sample(o, "skyrelay_config_reloads_total", "result", "failed",
           atomic_load(&rt->reloads_failed));
    single(o, "skyrelay_config_restart_pending_settings", "gauge",
           "Settings the last reload could not apply live (they keep their running value until a "
           "restart).",
           atomic_load(&rt->reload_restart_pending));
    single(o, "skyrelay_server_connections", "gauge",
           "Downstream (agent) connections open now on the gRPC port.", cs.live);
    single(o, "skyrelay_server_connections_accepted_total", "counter",
           "Downstream connections admitted.", cs.accepted);
    single(o, "skyrelay_server_connections_refused_total", "counter",
           "Downstream connections closed at once because server.max_connections were open.", cs.refused);
    single(o, "skyrelay_server_connections_closed_total", "counter",
           "Admitted downstream connections that have closed.", cs.closed);
    single(o, "skyrelay_server_unauthenticated_calls_total", "counter",
           "Downstream calls refused with UNAUTHENTICATED: missing or wrong authentication token.", s.unauthenticated);
    single(o, "skyrelay_server_unimplemented_calls_total", "counter",
           "Downstream calls to a disabled pipe, answered UNIMPLEMENTED.", s.unimplemented);

    family(o, "skyrelay_passthrough_calls_total", "counter",
           "Pass-through calls ended, by mode: sync (unary with a reply) or relay (streams, "
           "unknown methods).");
    sample(o, "skyrelay_passthrough_calls_total", "mode", "sync", s.relay_calls[0]);
    sample(o, "skyrelay_passthrough_calls_total", "mode", "relay", s.relay_calls[1]);
    single(o, "skyrelay_passthrough_failed_calls_total", "counter",
           "Pass-through calls that ended with a status other than OK.", s.relay_failed);
    family(o, "skyrelay_config_discovery_answers_total", "counter",
           "fetchConfigurations polls answered, by source: upstream (the call it started), "
           "coalesced (a call another poll started), cache (a fresh answer, no call), stale (the "
           "last answer, because OAP did not answer), error (a status other than OK).");
    for (int k = 0; k < SR_CDS_SOURCE_COUNT; k++)
        sample(o, "skyrelay_config_discovery_answers_total", "source", sr_cds_source_names[k],
               s.cds_answers[k]);
    single(o, "skyrelay_config_discovery_upstream_calls_total", "counter",
           "fetchConfigurations calls sent to OAP.", s.cds_upstream_calls);
    single(o, "skyrelay_config_discovery_cached_services", "gauge",
           "Services whose last fetchConfigurations answer is kept.", s.cds_entries);
    single(o, "skyrelay_config_discovery_cache_bytes", "gauge",
           "Bytes of the kept fetchConfigurations answers.", s.cds_bytes);
    family(o, "skyrelay_relay_messages_total", "counter",
           "Messages relayed by pass-through calls, by direction: up (agent to OAP) or down "
           "(OAP to agent).");
    sample(o, "skyrelay_relay_messages_total", "direction", "up", s.msgs_up);
    sample(o, "skyrelay_relay_messages_total", "direction", "down", s.msgs_down);

    family(o, "skyrelay_tls_reloads_total", "counter",
           "Changed TLS files loaded (ok: in use for new handshakes or channels) or refused "
           "(failed: the old ones stay), by side: server (the agents' port) or upstream.");
    for (int side = 0; side < SR_TLS_SIDES; side++) {
        static const char *const names[] = {"server", "upstream"};
        uint64_t ok, failed;
        sr_tls_reloads((enum sr_tls_side)side, &ok, &failed);
        sample2(o, "skyrelay_tls_reloads_total", "side", names[side], "result", "ok", ok);
        sample2(o, "skyrelay_tls_reloads_total", "side", names[side], "result", "failed", failed);
    }
}

/* ---- process ---- */

static int read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t n;
    if (!f) return -1;
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

static void render_process(struct sr_buf *o)
{
    char buf[4096];
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;

    /* /proc/self/stat: after the ")" closing comm come fields 3 (state) ...;
     * utime and stime are fields 14 and 15, starttime field 22 (clock ticks
     * since boot). */
    if (tck > 0 && read_small_file("/proc/self/stat", buf, sizeof(buf)) == 0) {
        const char *s = strrchr(buf, ')');
        unsigned long long utime = 0, stime = 0, start = 0;
        if (s &&
            sscanf(s + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                   "%*d %llu",
                   &utime, &stime, &start) == 3) {
            char stat[4096];
            family(o, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.");
            sr_buf_appendf(o, "process_cpu_seconds_total %.3f\n",
                           (double)(utime + stime) / (double)tck);
            if (read_small_file("/proc/stat", stat, sizeof(stat)) == 0) {
                const char *b = strstr(stat, "\nbtime ");
                unsigned long long btime;
                if (b && sscanf(b + 7, "%llu", &btime) == 1) {
                    family(o, "process_start_time_seconds", "gauge",
                           "Start time of the process since unix epoch in seconds.");
                    sr_buf_appendf(o, "process_start_time_seconds %.10g\n",
                                   (double)btime + (double)start / (double)tck);
                }
            }
        }
    }
    /* /proc/self/statm: size resident ... in pages */
    if (page > 0 && read_small_file("/proc/self/statm", buf, sizeof(buf)) == 0) {
        unsigned long long size, resident;
        if (sscanf(buf, "%llu %llu", &size, &resident) == 2) {
            family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            sample(o, "process_resident_memory_bytes", NULL, NULL, resident * (uint64_t)page);
            family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
            sample(o, "process_virtual_memory_bytes", NULL, NULL, size * (uint64_t)page);
        }
    }
    {
        DIR *d = opendir("/proc/self/fd");
        if (d) {
            uint64_t n = 0;
            struct dirent *e;
            while ((e = readdir(d)) != NULL)
                if (e->d_name[0] != '.') n++;
            closedir(d);
            family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
            sample(o, "process_open_fds", NULL, NULL, n > 0 ? n - 1 : 0); /* not opendir's own */
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        family(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        sample(o, "process_max_fds", NULL, NULL, (uint64_t)rl.rlim_cur);
    }
}

/* The active finder's counters (upstream.finder). */
static void render_discovery(struct sr_buf *o, const struct sr_runtime *rt)
{
    const struct sr_finder_type *f = rt->cfg ? sr_finder_for(rt->cfg->upstream.finder) : NULL;
    struct sr_discovery_stats st;

    if (!f) return;
    memset(&st, 0, sizeof(st));
    f->stats(&st);
    family(o, "skyrelay_discovery_updates_total", "counter",
           "Node lists the finder published (static: the configured list, once).");
    sample(o, "skyrelay_discovery_updates_total", "finder", f->name, st.updates);
    family(o, "skyrelay_discovery_errors_total", "counter",
           "Failed resolve / list / watch attempts of the finder (retried; the last node set "
           "stays).");
    sample(o, "skyrelay_discovery_errors_total", "finder", f->name, st.errors);
    family(o, "skyrelay_discovery_relists_total", "counter",
           "Kubernetes LIST requests (start, 410 Gone, broken watch, retries); 0 for other "
           "finders.");
    sample(o, "skyrelay_discovery_relists_total", "finder", f->name, st.relists);
    family(o, "skyrelay_discovery_nodes", "gauge", "Nodes in the finder's last list.");
    sample(o, "skyrelay_discovery_nodes", "finder", f->name, st.nodes);
}

/* The admin port's own refusals (src/admin/http.c): what a starved probe would look like. */
static void render_admin(struct sr_buf *o)
{
    struct sr_admin_stats st;
    sr_admin_stats(&st);
    family(o, "skyrelay_admin_connections", "gauge", "Admin HTTP connections open.");
    sample(o, "skyrelay_admin_connections", NULL, NULL, st.open);
    family(o, "skyrelay_admin_connections_refused_total", "counter",
           "Admin connections closed at accept: reason peer_limit "
           "(telemetry.admin.max_connections_per_peer) or total_limit (max_connections, all busy).");
    sample(o, "skyrelay_admin_connections_refused_total", "reason", "peer_limit",
           st.refused_peer_limit);
    sample(o, "skyrelay_admin_connections_refused_total", "reason", "total_limit",
           st.refused_total_limit);
    family(o, "skyrelay_admin_connections_closed_total", "counter",
           "Admin connections skyrelay closed early: reason header_timeout (request head not "
           "complete within telemetry.admin.header_timeout) or evicted (oldest idle one, for a "
           "new connection at max_connections).");
    sample(o, "skyrelay_admin_connections_closed_total", "reason", "header_timeout",
           st.header_timeouts);
    sample(o, "skyrelay_admin_connections_closed_total", "reason", "evicted", st.evicted);
    family(o, "skyrelay_admin_unauthorized_total", "counter",
           "/metrics requests answered 401: missing or wrong bearer token (telemetry.admin.token).");
    sample(o, "skyrelay_admin_unauthorized_total", NULL, NULL, st.unauthorized);
}

char *sr_metrics_render(struct sr_runtime *rt, size_t *len)
{
    struct sr_buf o;

    sr_buf_init(&o);
    sr_buf_reserve(&o, 64 * 1024); /* a typical body: one allocation */
    family(&o, "skyrelay_build_info", "gauge", "Always 1; the version is a label.");
    sr_buf_puts(&o, "skyrelay_build_info{version=\"");
    put_label_value(&o, SR_VERSION);
    sr_buf_puts(&o, "\"} 1\n");
    render_server(&o, rt);
    render_pipes(&o, rt);
    render_nodes(&o, rt);
    render_discovery(&o, rt);
    render_admin(&o);
    render_process(&o);
    return sr_buf_steal(&o, len); /* NULL if an allocation failed */
}
