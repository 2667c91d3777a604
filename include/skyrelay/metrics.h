/* Counters. Each worker owns one struct sr_worker_counters and is its only
 * writer: an increment is a relaxed load + store (no locked instruction on the
 * data path). Readers on other threads (stats log, /metrics) sum the workers'
 * counters with relaxed loads. */
#ifndef SKYRELAY_METRICS_H
#define SKYRELAY_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "skyrelay/buf.h"
#include "skyrelay/config.h"

enum sr_drop_reason {
    SR_DROP_RETRY_EXHAUSTED = 0, /* retried on other nodes for upstream.retry_max, gave up */
    SR_DROP_UPSTREAM_REJECTED,   /* upstream answered a non-retryable status */
    SR_DROP_SHUTDOWN,            /* still queued when the shutdown grace period ended */
    SR_DROP_POISON,              /* one event refused as content by two nodes (dead-lettered) */
    SR_DROP_COUNT
};

/* The per-pipe numbers, in the order of their /metrics families. Everything
 * that shows a pipe's counters is generated from this list: struct
 * sr_pipe_counters (the workers' counters), struct sr_pipe_totals (their sum),
 * sr_pipe_totals_add, the "stats: ... pipe=" log line and the per-pipe
 * Prometheus families. Adding a counter is one X line here (and its row in
 * docs/metrics.md); the data path then increments it with SR_CNT_ADD.
 *
 * X(field, src, stats, prom):
 *   field  the member of struct sr_pipe_totals, and of struct sr_pipe_counters
 *          when src is SUM
 *   src    SUM: a worker counter, summed over the workers;
 *          QUEUE: a queue gauge, read from the partitions by sr_pipe_snapshot
 *   stats  SR_STATS(pos, "key"): key=value at place pos (1, 2, ...) of the
 *          stats log line, whose order users parse (a new field takes the next
 *          number); SR_NO_STATS: not in the line
 *   prom   SR_PROM("name", "type", "help"): a family of its own, one sample
 *          per pipe, written in list order;
 *          SR_PROM_CALLS("status"): the sample {pipe, status} of
 *          skyrelay_pipe_calls_total (one family for the four call outcomes)
 *
 * Not in the list: dropped_events[reason] (a family and stats fields per
 * enum sr_drop_reason) and the latency histogram (struct sr_latency). */
#define SR_PIPE_COUNTERS(X)                                                                        \
    X(recv_events, SUM, SR_STATS(1, "received"),                                                   \
      SR_PROM("skyrelay_pipe_received_events_total", "counter",                                    \
              "Events accepted into the pipe's queue (a segment, log record, meter message, ALS "  \
              "message, ...)."))                                                                   \
    X(recv_bytes, SUM, SR_NO_STATS,                                                                \
      SR_PROM("skyrelay_pipe_received_bytes_total", "counter",                                     \
              "Bytes of the events accepted into the pipe's queue (context prefix included)."))    \
    X(rejected_events, SUM, SR_STATS(6, "rejected"),                                               \
      SR_PROM("skyrelay_pipe_rejected_events_total", "counter",                                    \
              "Messages refused because the pipe's queue stayed full for queue.full_wait."))       \
    X(ok_calls, SUM, SR_STATS(5, "calls_ok"), SR_PROM_CALLS("ok"))                                 \
    X(invalid_calls, SUM, SR_STATS(8, "invalid_calls"), SR_PROM_CALLS("invalid_argument"))         \
    X(refused_calls, SUM, SR_STATS(7, "refused_calls"), SR_PROM_CALLS("resource_exhausted"))       \
    X(broken_calls, SUM, SR_STATS(9, "broken_calls"), SR_PROM_CALLS("broken"))                     \
    X(paused, SUM, SR_STATS(10, "paused"),                                                         \
      SR_PROM("skyrelay_pipe_paused_total", "counter",                                             \
              "Times a downstream stream was paused because its queue partition was full "         \
              "(backpressure)."))                                                                  \
    X(depth_events, QUEUE, SR_STATS(3, "queued"),                                                  \
      SR_PROM("skyrelay_queue_events", "gauge",                                                    \
              "Events in the pipe's queue now, waiting or in flight upstream (sum over worker "    \
              "partitions)."))                                                                     \
    X(depth_bytes, QUEUE, SR_NO_STATS,                                                             \
      SR_PROM("skyrelay_queue_bytes", "gauge",                                                     \
              "Bytes in the pipe's queue now, waiting or in flight upstream (sum over worker "     \
              "partitions)."))                                                                     \
    X(cap_events, QUEUE, SR_NO_STATS,                                                              \
      SR_PROM("skyrelay_queue_capacity_events", "gauge",                                           \
              "Bound of the pipe's queue in events (sum over worker partitions)."))                \
    X(cap_bytes, QUEUE, SR_NO_STATS,                                                               \
      SR_PROM("skyrelay_queue_capacity_bytes", "gauge",                                            \
              "Bound of the pipe's queue in bytes (sum over worker partitions)."))                 \
    X(sent_events, SUM, SR_STATS(2, "sent"),                                                       \
      SR_PROM("skyrelay_sender_sent_events_total", "counter",                                      \
              "Events delivered upstream: the call that carried them ended OK."))                  \
    X(sent_batches, SUM, SR_STATS(4, "batches"),                                                   \
      SR_PROM("skyrelay_sender_batches_total", "counter", "Batches delivered upstream."))          \
    X(upstream_calls, SUM, SR_NO_STATS,                                                            \
      SR_PROM("skyrelay_sender_upstream_calls_total", "counter", "Upstream batch calls started.")) \
    X(upstream_failed, SUM, SR_STATS(11, "upstream_failed"),                                       \
      SR_PROM("skyrelay_sender_upstream_failed_calls_total", "counter",                            \
              "Upstream batch calls that did not end OK."))                                        \
    X(retried_batches, SUM, SR_NO_STATS,                                                           \
      SR_PROM("skyrelay_sender_retried_batches_total", "counter",                                  \
              "Batch attempts re-sent after a failed attempt."))                                   \
    X(retried_events, SUM, SR_STATS(12, "retried_events"),                                         \
      SR_PROM("skyrelay_sender_retried_events_total", "counter",                                   \
              "Events re-sent after a failed attempt (a bound on possible duplicates upstream).")) \
    X(hedged_events, SUM, SR_STATS(13, "hedged_events"),                                           \
      SR_PROM("skyrelay_sender_hedged_events_total", "counter",                                    \
              "Events re-sent to another node because the node holding them stalled (no answer "   \
              "for upstream.stall_timeout); the stalled node may still process them: possible "    \
              "duplicates."))                                                                      \
    X(content_failed_calls, SUM, SR_STATS(14, "content_failed_calls"),                             \
      SR_PROM("skyrelay_sender_content_failed_calls_total", "counter",                             \
              "Upstream calls refused for their content (INTERNAL, INVALID_ARGUMENT, ...): the "   \
              "node is kept, the batch is retried elsewhere, then split to isolate the bad "       \
              "event."))                                                                           \
    X(split_batches, SUM, SR_STATS(15, "split_batches"),                                           \
      SR_PROM("skyrelay_sender_split_batches_total", "counter",                                    \
              "Times a refused batch (or part of one) was split in halves to isolate a poison "    \
              "event."))                                                                           \
    X(disk_events, QUEUE, SR_STATS(16, "on_disk"),                                                 \
      SR_PROM("skyrelay_queue_disk_events", "gauge",                                               \
              "Events in the pipe's disk queue not yet acknowledged upstream (in memory too, or "  \
              "on disk only)."))                                                                   \
    X(disk_bytes, QUEUE, SR_NO_STATS,                                                              \
      SR_PROM("skyrelay_queue_disk_bytes", "gauge",                                                \
              "Bytes of the pipe's disk queue segment files."))                                    \
    X(disk_oldest_age_s, QUEUE, SR_NO_STATS,                                                       \
      SR_PROM("skyrelay_queue_disk_oldest_event_age_seconds", "gauge",                             \
              "Age of the oldest unacknowledged event in the pipe's disk queue (the first event "  \
              "of the oldest segment that still holds one); 0 when empty."))                      \
    X(disk_replayed, QUEUE, SR_STATS(17, "replayed"),                                              \
      SR_PROM("skyrelay_queue_disk_replayed_events_total", "counter",                              \
              "Events found in the disk queue at start and sent again (at-least-once: some may "   \
              "have been delivered just before the stop)."))                                       \
    X(disk_recovered, QUEUE, SR_NO_STATS,                                                          \
      SR_PROM("skyrelay_queue_disk_recovered_events_total", "counter",                             \
              "Events found in the disk queue at start, to be replayed."))                         \
    X(disk_corrupt, QUEUE, SR_NO_STATS,                                                            \
      SR_PROM("skyrelay_queue_disk_corrupt_records_total", "counter",                              \
              "Damaged records found in the disk queue at start (torn tail or bad checksum): "     \
              "skipped, never sent."))                                                             \
    X(disk_refused, QUEUE, SR_STATS(18, "disk_full"),                                              \
      SR_PROM("skyrelay_queue_disk_full_refusals_total", "counter",                                \
              "Events the disk queue refused because queue.disk.max_bytes or queue.disk.min_free " \
              "was reached (the call then waits, as with a full memory queue)."))                  \
    X(disk_write_errors, QUEUE, SR_NO_STATS,                                                       \
      SR_PROM("skyrelay_queue_disk_write_errors_total", "counter",                                 \
              "Failed writes or syncs of the disk queue."))                                        \
    X(disk_syncs, QUEUE, SR_NO_STATS,                                                              \
      SR_PROM("skyrelay_queue_disk_syncs_total", "counter",                                        \
              "fdatasync calls of the disk queue (queue.disk.sync)."))

/* The column helpers of SR_PIPE_COUNTERS, as initializers of struct
 * sr_pipe_metric (below). */
#define SR_STATS(pos, key)        pos, key
#define SR_NO_STATS               0, NULL
#define SR_PROM(name, type, help) name, type, help, NULL
#define SR_PROM_CALLS(status)     SR_PIPE_CALLS_FAMILY, "counter", NULL, status
#define SR_PIPE_CALLS_FAMILY      "skyrelay_pipe_calls_total"

/* Per worker and pipe: only the SUM entries are counters. */
#define SR_PIPE_COUNTER_SUM(field)   _Atomic uint64_t field;
#define SR_PIPE_COUNTER_QUEUE(field) /* kept by the partition */
#define SR_PIPE_COUNTER_(field, src, stats, prom) SR_PIPE_COUNTER_##src(field)
struct sr_pipe_counters {
    SR_PIPE_COUNTERS(SR_PIPE_COUNTER_)
    _Atomic uint64_t dropped_events[SR_DROP_COUNT];
};
#undef SR_PIPE_COUNTER_

/* Upstream call latency buckets (upper bounds, milliseconds) for the
 * Prometheus histogram; the last bucket is +Inf. */
#define SR_LAT_BUCKETS 14
extern const double sr_latency_bounds_ms[SR_LAT_BUCKETS - 1];

struct sr_latency {
    _Atomic uint64_t bucket[SR_LAT_BUCKETS]; /* not cumulative: bucket i counts (b[i-1], b[i]] */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
};

/* Records one call of `us` microseconds. Owner thread only. */
void sr_latency_observe(struct sr_latency *l, uint64_t us);
/* Same, for a histogram several threads write (atomic adds). */
void sr_latency_observe_shared(struct sr_latency *l, uint64_t us);

/* How a fetchConfigurations poll was answered (src/server/cds.c): the label of
 * skyrelay_config_discovery_answers_total. */
#define SR_CDS_SOURCES(X)                                                                          \
    X(SR_CDS_UPSTREAM, "upstream")   /* by the upstream call it started */                         \
    X(SR_CDS_COALESCED, "coalesced") /* by an upstream call another poll started */                \
    X(SR_CDS_CACHE, "cache")         /* by a fresh entry, without an upstream call */              \
    X(SR_CDS_STALE, "stale")         /* by an old entry, because OAP did not answer */             \
    X(SR_CDS_ERROR, "error")         /* with a status other than OK */
#define SR_CDS_ENUM_(e, name) e,
enum sr_cds_source { SR_CDS_SOURCES(SR_CDS_ENUM_) SR_CDS_SOURCE_COUNT };
#undef SR_CDS_ENUM_

struct sr_worker_counters {
    struct sr_pipe_counters pipe[SR_PIPE_COUNT];
    struct sr_latency upstream_latency[SR_PIPE_COUNT]; /* batch calls, start to status */
    _Atomic uint64_t unknown_method_calls;  /* calls to a disabled pipe (UNIMPLEMENTED) */
    _Atomic uint64_t unauthenticated_calls; /* calls refused: missing or wrong token */
    _Atomic uint64_t relay_calls[2];        /* ended pass-through calls: [0] sync, [1] relay */
    _Atomic uint64_t relay_failed;          /* of those, ended with a status other than OK */
    _Atomic uint64_t relay_msgs_up;         /* messages relayed caller -> OAP */
    _Atomic uint64_t relay_msgs_down;       /* messages relayed OAP -> caller */
    /* fetchConfigurations (worker 0 only) */
    _Atomic uint64_t cds_answers[SR_CDS_SOURCE_COUNT];
    _Atomic uint64_t cds_upstream_calls; /* upstream calls started */
    _Atomic uint64_t cds_entries;        /* gauge: services in the cache */
    _Atomic uint64_t cds_bytes;          /* gauge: their bytes */
};

#define SR_CNT_ADD(c, v)                                                                           \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (v),            \
                          memory_order_relaxed)
#define SR_CNT_GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

/* A plain snapshot of one pipe, summed over the workers: every entry of
 * SR_PIPE_COUNTERS, the drops per reason and the latency histogram. */
#define SR_PIPE_TOTAL_(field, src, stats, prom) uint64_t field;
struct sr_pipe_totals {
    SR_PIPE_COUNTERS(SR_PIPE_TOTAL_)
    uint64_t dropped[SR_DROP_COUNT];
    uint64_t lat_bucket[SR_LAT_BUCKETS]; /* not cumulative, like struct sr_latency */
    uint64_t lat_sum_us;
};
#undef SR_PIPE_TOTAL_

/* One entry of SR_PIPE_COUNTERS, as data (sr_pipe_metrics[], list order). */
struct sr_pipe_metric {
    const char *field; /* the member's name */
    size_t offset;     /* of its uint64_t in struct sr_pipe_totals */
    int stats_pos;     /* place in the stats log line, from 1; 0: not in it */
    const char *stats_key;
    const char *prom_name, *prom_type;
    const char *prom_help;   /* NULL: a sample of SR_PIPE_CALLS_FAMILY */
    const char *prom_status; /* its status label value (NULL for a family of its own) */
};

#define SR_PIPE_METRIC_ONE_(field, src, stats, prom) +1
enum { SR_PIPE_METRIC_COUNT = 0 SR_PIPE_COUNTERS(SR_PIPE_METRIC_ONE_) };
#undef SR_PIPE_METRIC_ONE_

extern const struct sr_pipe_metric sr_pipe_metrics[SR_PIPE_METRIC_COUNT];

/* The value of metric m in t. */
static inline uint64_t sr_pipe_totals_get(const struct sr_pipe_totals *t,
                                          const struct sr_pipe_metric *m)
{
    return *(const uint64_t *)(const void *)((const char *)t + m->offset);
}

/* Adds one worker's counters of a pipe to *t (relaxed loads): the SUM entries
 * and the drops. Any thread. */
void sr_pipe_totals_add(struct sr_pipe_totals *t, const struct sr_pipe_counters *c);

struct sr_runtime;

/* Fills *out with pipe id summed over rt's workers: counters, drops, latency
 * histogram, queue depth and capacity. Relaxed loads: each number is exact,
 * the set is not one instant (a batch may be counted sent on one worker while
 * another's received was read a moment earlier). Any thread. */
void sr_pipe_snapshot(const struct sr_runtime *rt, enum sr_pipe_id id, struct sr_pipe_totals *out);

/* The worker counters that are not per pipe (pass-through calls and messages, refused
 * calls), summed over the workers: what the "stats: calls" line and /metrics show. */
struct sr_call_totals {
    uint64_t relay_calls[2]; /* [0] sync, [1] relay */
    uint64_t relay_failed, msgs_up, msgs_down, unauthenticated, unimplemented;
    uint64_t cds_answers[SR_CDS_SOURCE_COUNT], cds_upstream_calls, cds_entries, cds_bytes;
};
void sr_call_snapshot(const struct sr_runtime *rt, struct sr_call_totals *out);

/* Appends the pipe fields of the stats log line for t to b: " received=N
 * sent=N ... dropped_<reason>=N", each field preceded by a space, in the
 * line's fixed order (stats_pos, then the drop reasons). Any thread. */
void sr_pipe_stats_format(struct sr_buf *b, const struct sr_pipe_totals *t);

const char *sr_drop_reason_name(enum sr_drop_reason r);

#endif
