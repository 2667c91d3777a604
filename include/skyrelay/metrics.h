/* Counters. Each worker owns one struct sr_worker_counters and is its only
 * writer: an increment is a relaxed load + store (no locked instruction on the
 * data path). Readers on other threads (stats log, /metrics) sum the workers'
 * counters with relaxed loads. */
#ifndef SKYRELAY_METRICS_H
#define SKYRELAY_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "skyrelay/config.h"

enum sr_drop_reason {
    SR_DROP_RETRY_EXHAUSTED = 0, /* retried on other nodes for upstream.retry_max, gave up */
    SR_DROP_UPSTREAM_REJECTED,   /* upstream answered a non-retryable status */
    SR_DROP_SHUTDOWN,            /* still queued when the shutdown grace period ended */
    SR_DROP_POISON,              /* one event refused as content by two nodes (dead-lettered) */
    SR_DROP_COUNT
};

struct sr_pipe_counters {
    _Atomic uint64_t recv_events;     /* events accepted into the queue */
    _Atomic uint64_t recv_bytes;
    _Atomic uint64_t rejected_events; /* messages refused because the queue stayed full */
    _Atomic uint64_t refused_calls;   /* calls failed with RESOURCE_EXHAUSTED (queue full) */
    _Atomic uint64_t invalid_calls;   /* calls failed with INVALID_ARGUMENT (malformed message) */
    _Atomic uint64_t broken_calls;    /* downstream calls cancelled or broken by the client/transport */
    _Atomic uint64_t ok_calls;        /* downstream calls answered OK */
    _Atomic uint64_t paused;          /* times a stream was paused on a full queue */
    _Atomic uint64_t sent_events;     /* events delivered (upstream call OK) */
    _Atomic uint64_t sent_batches;
    _Atomic uint64_t upstream_calls;  /* upstream calls started */
    _Atomic uint64_t upstream_failed; /* upstream calls that did not end OK */
    _Atomic uint64_t retried_batches;
    _Atomic uint64_t retried_events;
    _Atomic uint64_t hedged_events;   /* events re-sent elsewhere because their node stalled */
    _Atomic uint64_t content_failed_calls; /* upstream calls refused for their content (no eject) */
    _Atomic uint64_t split_batches;   /* suspect batches split in halves to isolate a bad event */
    _Atomic uint64_t dropped_events[SR_DROP_COUNT];
};

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

struct sr_worker_counters {
    struct sr_pipe_counters pipe[SR_PIPE_COUNT];
    struct sr_latency upstream_latency[SR_PIPE_COUNT]; /* batch calls, start to status */
    _Atomic uint64_t unknown_method_calls;  /* calls to a disabled pipe (UNIMPLEMENTED) */
    _Atomic uint64_t unauthenticated_calls; /* calls refused: missing or wrong token */
    _Atomic uint64_t relay_calls[2];        /* ended pass-through calls: [0] sync, [1] relay */
    _Atomic uint64_t relay_failed;          /* of those, ended with a status other than OK */
    _Atomic uint64_t relay_msgs_up;         /* messages relayed caller -> OAP */
    _Atomic uint64_t relay_msgs_down;       /* messages relayed OAP -> caller */
};

#define SR_CNT_ADD(c, v)                                                                           \
    atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (v),            \
                          memory_order_relaxed)
#define SR_CNT_GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

/* A plain snapshot of pipe counters, summed over workers for display. */
struct sr_pipe_totals {
    uint64_t recv_events, recv_bytes, rejected_events, refused_calls, invalid_calls, broken_calls,
        ok_calls, paused, sent_events, sent_batches, upstream_calls, upstream_failed,
        retried_batches, retried_events, hedged_events, content_failed_calls, split_batches,
        dropped[SR_DROP_COUNT];
};

/* Adds one worker's counters of a pipe to *t (relaxed loads). Any thread. */
void sr_pipe_totals_add(struct sr_pipe_totals *t, const struct sr_pipe_counters *c);

const char *sr_drop_reason_name(enum sr_drop_reason r);

#endif
