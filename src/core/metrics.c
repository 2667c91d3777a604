/* Names for counters' label values. */
#include "skyrelay/metrics.h"

const double sr_latency_bounds_ms[SR_LAT_BUCKETS - 1] = {1,   2.5, 5,    10,   25,   50,   100,
                                                         250, 500, 1000, 2500, 5000, 10000};

void sr_latency_observe(struct sr_latency *l, uint64_t us)
{
    int i = 0;
    while (i < SR_LAT_BUCKETS - 1 && (double)us > sr_latency_bounds_ms[i] * 1000.0) i++;
    SR_CNT_ADD(l->bucket[i], 1);
    SR_CNT_ADD(l->sum_us, us);
    SR_CNT_ADD(l->count, 1);
}

void sr_latency_observe_shared(struct sr_latency *l, uint64_t us)
{
    int i = 0;
    while (i < SR_LAT_BUCKETS - 1 && (double)us > sr_latency_bounds_ms[i] * 1000.0) i++;
    atomic_fetch_add_explicit(&l->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->count, 1, memory_order_relaxed);
}

void sr_pipe_totals_add(struct sr_pipe_totals *t, const struct sr_pipe_counters *c)
{
#define ADD(f) t->f += SR_CNT_GET(c->f)
    ADD(recv_events);
    ADD(recv_bytes);
    ADD(rejected_events);
    ADD(refused_calls);
    ADD(invalid_calls);
    ADD(broken_calls);
    ADD(ok_calls);
    ADD(paused);
    ADD(sent_events);
    ADD(sent_batches);
    ADD(upstream_calls);
    ADD(upstream_failed);
    ADD(retried_batches);
    ADD(retried_events);
    ADD(hedged_events);
    ADD(content_failed_calls);
    ADD(split_batches);
#undef ADD
    for (int r = 0; r < SR_DROP_COUNT; r++) t->dropped[r] += SR_CNT_GET(c->dropped_events[r]);
}

const char *sr_drop_reason_name(enum sr_drop_reason r)
{
    switch (r) {
    case SR_DROP_RETRY_EXHAUSTED:
        return "retry_exhausted";
    case SR_DROP_UPSTREAM_REJECTED:
        return "upstream_rejected";
    case SR_DROP_SHUTDOWN:
        return "shutdown";
    case SR_DROP_POISON:
        return "poison";
    default:
        return "unknown";
    }
}
