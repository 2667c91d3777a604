/* The /metrics body: Prometheus text exposition format 0.0.4.
 *
 * Every number is read at scrape time from where the data path already keeps
 * it: the workers' counters (summed with relaxed loads; each worker is the only
 * writer of its own), the partitions' depth atomics, the nodes' atomics and the
 * connection monitor. Nothing is counted for the scrape, so a scrape costs the
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
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "skyrelay/admin.h"
#include "skyrelay/conn_limit.h"
#include "skyrelay/metrics.h"
#include "skyrelay/queue.h"
#include "skyrelay/upstream.h"
#include "skyrelay/worker.h"
#include "internal.h"

/* ---- a growing output buffer ---- */

struct out {
    char *p;
    size_t len, cap;
    bool oom; /* an allocation failed: the render returns NULL */
};

static bool reserve(struct out *o, size_t more)
{
    size_t cap;
    char *p;
    if (o->oom) return false;
    if (o->len + more + 1 <= o->cap) return true;
    cap = o->cap ? o->cap : 16384;
    while (cap < o->len + more + 1) cap *= 2;
    p = realloc(o->p, cap);
    if (!p) {
        o->oom = true;
        return false;
    }
    o->p = p;
    o->cap = cap;
    return true;
}

static void put(struct out *o, const char *s, size_t n)
{
    if (!reserve(o, n)) return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) putf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (!reserve(o, 128)) return;
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->oom = true;
        return;
    }
    if ((size_t)n >= o->cap - o->len) {
        if (!reserve(o, (size_t)n)) return;
        va_start(ap, fmt);
        vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
    }
    o->len += (size_t)n;
}

/* A label value: backslash, double quote and line feed are escaped (the
 * exposition format's rule); everything else is written as is. */
static void put_label_value(struct out *o, const char *v)
{
    for (const char *s = v ? v : ""; *s; s++) {
        if (*s == '\\')
            puts_(o, "\\\\");
        else if (*s == '"')
            puts_(o, "\\\"");
        else if (*s == '\n')
            puts_(o, "\\n");
        else
            put(o, s, 1);
    }
}

/* "# HELP" and "# TYPE" of a family, written once before its samples. The
 * help texts are constants without backslashes or line feeds. */
static void family(struct out *o, const char *name, const char *type, const char *help)
{
    putf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k="v"} value: one label (k NULL = none). */
static void sample(struct out *o, const char *name, const char *k, const char *v, uint64_t value)
{
    puts_(o, name);
    if (k) {
        putf(o, "{%s=\"", k);
        put_label_value(o, v);
        puts_(o, "\"}");
    }
    putf(o, " %llu\n", (unsigned long long)value);
}

/* name{k1="v1",k2="v2"} value */
/* A family with one unlabelled sample. */
static void single(struct out *o, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    family(o, name, type, help);
    sample(o, name, NULL, NULL, value);
}

static void sample2(struct out *o, const char *name, const char *k1, const char *v1,
                    const char *k2, const char *v2, uint64_t value)
{
    putf(o, "%s{%s=\"", name, k1);
    put_label_value(o, v1);
    putf(o, "\",%s=\"", k2);
    put_label_value(o, v2);
    putf(o, "\"} %llu\n", (unsigned long long)value);
}

/* ---- sums over the workers ---- */

struct pipe_sum {
    struct sr_pipe_totals t;
    uint64_t depth_events, depth_bytes, cap_events, cap_bytes;
    uint64_t bucket[SR_LAT_BUCKETS]; /* not cumulative, like struct sr_latency */
    uint64_t lat_sum_us;
};

static void sum_pipe(const struct sr_runtime *rt, enum sr_pipe_id id, struct pipe_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        struct sr_worker *w = &rt->workers[i];
        struct sr_pipe_counters *c = &w->ctr.pipe[id];
        struct sr_latency *l = &w->ctr.upstream_latency[id];
        struct sr_partition *part = &w->pipes[id].part;
        sr_pipe_totals_add(&s->t, c);
        for (int b = 0; b < SR_LAT_BUCKETS; b++) s->bucket[b] += SR_CNT_GET(l->bucket[b]);
        s->lat_sum_us += SR_CNT_GET(l->sum_us);
        s->depth_events += atomic_load_explicit(&part->depth_events, memory_order_relaxed);
        s->depth_bytes += atomic_load_explicit(&part->depth_bytes, memory_order_relaxed);
        /* set once by sr_partition_init, before the workers start */
        s->cap_events += part->max_events;
        s->cap_bytes += part->max_bytes;
    }
}

struct other_sum {
    uint64_t relay_calls[2], relay_failed, msgs_up, msgs_down, unauthenticated, unimplemented;
};

static void sum_other(const struct sr_runtime *rt, struct other_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        struct sr_worker_counters *c = &rt->workers[i].ctr;
        s->relay_calls[0] += SR_CNT_GET(c->relay_calls[0]);
        s->relay_calls[1] += SR_CNT_GET(c->relay_calls[1]);
        s->relay_failed += SR_CNT_GET(c->relay_failed);
        s->msgs_up += SR_CNT_GET(c->relay_msgs_up);
        s->msgs_down += SR_CNT_GET(c->relay_msgs_down);
        s->unauthenticated += SR_CNT_GET(c->unauthenticated_calls);
        s->unimplemented += SR_CNT_GET(c->unknown_method_calls);
    }
}

/* ---- per-pipe families ---- */

/* One counter or gauge family with one sample per enabled pipe. */
struct pipe_family {
    const char *name, *type, *help;
    size_t off; /* of a uint64_t in struct pipe_sum */
};

#define PS(f) offsetof(struct pipe_sum, f)

static const struct pipe_family simple_families[] = {
    {"skyrelay_pipe_received_events_total", "counter",
     "Events accepted into the pipe's queue (a segment, log record, meter message, ALS message, "
     "...).",
     PS(t.recv_events)},
    {"skyrelay_pipe_received_bytes_total", "counter",
     "Bytes of the events accepted into the pipe's queue (context prefix included).",
     PS(t.recv_bytes)},
    {"skyrelay_pipe_rejected_events_total", "counter",
     "Messages refused because the pipe's queue stayed full for queue.full_wait.",
     PS(t.rejected_events)},
    {"skyrelay_pipe_paused_total", "counter",
     "Times a downstream stream was paused because its queue partition was full (backpressure).",
     PS(t.paused)},
    {"skyrelay_queue_events", "gauge",
     "Events in the pipe's queue now, waiting or in flight upstream (sum over worker partitions).",
     PS(depth_events)},
    {"skyrelay_queue_bytes", "gauge",
     "Bytes in the pipe's queue now, waiting or in flight upstream (sum over worker partitions).",
     PS(depth_bytes)},
    {"skyrelay_queue_capacity_events", "gauge",
     "Bound of the pipe's queue in events (sum over worker partitions).", PS(cap_events)},
    {"skyrelay_queue_capacity_bytes", "gauge",
     "Bound of the pipe's queue in bytes (sum over worker partitions).", PS(cap_bytes)},
    {"skyrelay_sender_sent_events_total", "counter",
     "Events delivered upstream: the call that carried them ended OK.", PS(t.sent_events)},
    {"skyrelay_sender_batches_total", "counter", "Batches delivered upstream.", PS(t.sent_batches)},
    {"skyrelay_sender_upstream_calls_total", "counter", "Upstream batch calls started.",
     PS(t.upstream_calls)},
    {"skyrelay_sender_upstream_failed_calls_total", "counter",
     "Upstream batch calls that did not end OK.", PS(t.upstream_failed)},
    {"skyrelay_sender_retried_batches_total", "counter",
     "Batch attempts re-sent after a failed attempt.", PS(t.retried_batches)},
    {"skyrelay_sender_retried_events_total", "counter",
     "Events re-sent after a failed attempt (a bound on possible duplicates upstream).",
     PS(t.retried_events)},
    {"skyrelay_sender_hedged_events_total", "counter",
     "Events re-sent to another node because the node holding them stalled (no answer for "
     "upstream.stall_timeout); the stalled node may still process them: possible duplicates.",
     PS(t.hedged_events)},
    {"skyrelay_sender_content_failed_calls_total", "counter",
     "Upstream calls refused for their content (INTERNAL, INVALID_ARGUMENT, ...): the node is "
     "kept, the batch is retried elsewhere, then split to isolate the bad event.",
     PS(t.content_failed_calls)},
    {"skyrelay_sender_split_batches_total", "counter",
     "Times a refused batch (or part of one) was split in halves to isolate a poison event.",
     PS(t.split_batches)},
};

static uint64_t field(const struct pipe_sum *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

/* bounds are in milliseconds; le is in seconds */
static void put_le(struct out *o, int b)
{
    if (b >= SR_LAT_BUCKETS - 1)
        puts_(o, "+Inf");
    else
        putf(o, "%.6g", sr_latency_bounds_ms[b] / 1000.0);
}

static void render_pipes(struct out *o, const struct sr_runtime *rt)
{
    static const char *const call_status[4] = {"ok", "invalid_argument", "resource_exhausted",
                                               "broken"};
    struct pipe_sum *sums;
    bool enabled[SR_PIPE_COUNT];

    sums = calloc(SR_PIPE_COUNT, sizeof(*sums));
    if (!sums) {
        o->oom = true;
        return;
    }
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        enabled[p] = rt->cfg && rt->cfg->pipes[p].enabled;
        if (enabled[p]) sum_pipe(rt, (enum sr_pipe_id)p, &sums[p]);
    }

    for (size_t f = 0; f < sizeof(simple_families) / sizeof(simple_families[0]); f++) {
        const struct pipe_family *pf = &simple_families[f];
        family(o, pf->name, pf->type, pf->help);
        for (int p = 0; p < SR_PIPE_COUNT; p++)
            if (enabled[p])
                sample(o, pf->name, "pipe", sr_pipe_name((enum sr_pipe_id)p),
                       field(&sums[p], pf->off));
    }

    family(o, "skyrelay_pipe_calls_total", "counter",
           "Downstream calls ended, by outcome: ok, invalid_argument (malformed message), "
           "resource_exhausted (queue full for queue.full_wait), broken (cancelled by the client "
           "or the transport).");
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        const struct pipe_sum *c = &sums[p];
        const uint64_t v[4] = {c->t.ok_calls, c->t.invalid_calls, c->t.refused_calls,
                               c->t.broken_calls};
        if (!enabled[p]) continue;
        for (int s = 0; s < 4; s++)
            sample2(o, "skyrelay_pipe_calls_total", "pipe", sr_pipe_name((enum sr_pipe_id)p),
                    "status", call_status[s], v[s]);
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
                    "reason", sr_drop_reason_name((enum sr_drop_reason)r),
                    sums[p].t.dropped[r]);
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
            cum += sums[p].bucket[b];
            puts_(o, "skyrelay_upstream_call_duration_seconds_bucket{pipe=\"");
            put_label_value(o, name);
            puts_(o, "\",le=\"");
            put_le(o, b);
            putf(o, "\"} %llu\n", (unsigned long long)cum);
        }
        puts_(o, "skyrelay_upstream_call_duration_seconds_sum{pipe=\"");
        put_label_value(o, name);
        putf(o, "\"} %llu.%06llu\n", (unsigned long long)(sums[p].lat_sum_us / 1000000),
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

static const char *node_state(const struct sr_node *n, int64_t now)
{
    if (atomic_load_explicit(&n->stalled, memory_order_relaxed)) return "stalled";
    if (!sr_node_is_up(n, now)) return "ejected";
    return "up";
}

static void render_nodes(struct out *o, struct sr_runtime *rt)
{
    static const char *const states[] = {"up", "stalled", "ejected"};
    const struct sr_upstream *up = &rt->up;
    int64_t now = sr_now_ms();

    family(o, "skyrelay_upstream_node_up", "gauge",
           "1 unless the node is ejected (failure backoff, or stalled) right now.");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_up", sr_node_is_up(n_, now) ? 1 : 0);
    family(o, "skyrelay_upstream_node_state", "gauge",
           "1 for the node's current state: up, stalled (a call went unanswered for "
           "upstream.stall_timeout; no new batches until it answers again) or ejected (failure "
           "backoff).");
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
    family(o, "skyrelay_upstream_node_sent_events_total", "counter",
           "Events delivered to the node.");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_sent_events_total",
                 atomic_load_explicit(&n_->sent_events, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_batches_total", "counter",
           "Upstream calls to the node that ended OK.");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_batches_total",
                 atomic_load_explicit(&n_->sent_batches, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_failed_calls_total", "counter",
           "Upstream calls to the node that did not end OK (transport or content failures, "
           "hedged calls).");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_failed_calls_total",
                 atomic_load_explicit(&n_->failed_calls, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_stalls_total", "counter",
           "Times the node was found stalled (a call unanswered for upstream.stall_timeout).");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_stalls_total",
                 atomic_load_explicit(&n_->stalls, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_hedged_events_total", "counter",
           "Events taken back from the node because it stalled, and re-sent to other nodes.");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_hedged_events_total",
                 atomic_load_explicit(&n_->hedged_events, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_content_refused_events_total", "counter",
           "Events in calls the node refused for their content (the node stays up).");
    NODE_SAMPLES(o, up, "skyrelay_upstream_node_content_refused_events_total",
                 atomic_load_explicit(&n_->poison_events, memory_order_relaxed));
    family(o, "skyrelay_upstream_node_latency_ewma_seconds", "gauge",
           "Peak-sensitive moving average of the node's batch call latency (least_loaded "
           "routing).");
    for (size_t i = 0; i < up->n_nodes; i++) {
        const struct sr_node *n = &up->nodes[i];
        uint64_t us = atomic_load_explicit(&n->ewma_us, memory_order_relaxed);
        if (!sr_node_present(n)) continue;
        puts_(o, "skyrelay_upstream_node_latency_ewma_seconds{node=\"");
        put_label_value(o, n->address);
        putf(o, "\"} %llu.%06llu\n", (unsigned long long)(us / 1000000),
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
            puts_(o, "skyrelay_upstream_node_call_duration_seconds_bucket{node=\"");
            put_label_value(o, n->address);
            puts_(o, "\",le=\"");
            put_le(o, b);
            putf(o, "\"} %llu\n", (unsigned long long)cum);
        }
        puts_(o, "skyrelay_upstream_node_call_duration_seconds_sum{node=\"");
        put_label_value(o, n->address);
        putf(o, "\"} %llu.%06llu\n", (unsigned long long)(sum_us / 1000000),
             (unsigned long long)(sum_us % 1000000));
        sample(o, "skyrelay_upstream_node_call_duration_seconds_count", "node", n->address, cum);
    }
}

/* ---- server and pass-through ---- */

static void render_server(struct out *o, struct sr_runtime *rt)
{
    struct sr_conn_stats cs;
    struct other_sum s;

    memset(&cs, 0, sizeof(cs));
    sr_conn_limit_stats(&cs);
    sum_other(rt, &s);

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
    family(o, "skyrelay_relay_messages_total", "counter",
           "Messages relayed by pass-through calls, by direction: up (agent to OAP) or down "
           "(OAP to agent).");
    sample(o, "skyrelay_relay_messages_total", "direction", "up", s.msgs_up);
    sample(o, "skyrelay_relay_messages_total", "direction", "down", s.msgs_down);
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

static void render_process(struct out *o)
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
            putf(o, "process_cpu_seconds_total %.3f\n", (double)(utime + stime) / (double)tck);
            if (read_small_file("/proc/stat", stat, sizeof(stat)) == 0) {
                const char *b = strstr(stat, "\nbtime ");
                unsigned long long btime;
                if (b && sscanf(b + 7, "%llu", &btime) == 1) {
                    family(o, "process_start_time_seconds", "gauge",
                           "Start time of the process since unix epoch in seconds.");
                    putf(o, "process_start_time_seconds %.10g\n",
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

char *sr_metrics_render(struct sr_runtime *rt, size_t *len)
{
    struct out o = {0};

    family(&o, "skyrelay_build_info", "gauge", "Always 1; the version is a label.");
    puts_(&o, "skyrelay_build_info{version=\"");
    put_label_value(&o, SR_VERSION);
    puts_(&o, "\"} 1\n");
    render_server(&o, rt);
    render_pipes(&o, rt);
    render_nodes(&o, rt);
    render_process(&o);
    if (o.oom || !reserve(&o, 0)) {
        free(o.p);
        return NULL;
    }
    if (len) *len = o.len;
    return o.p;
}
