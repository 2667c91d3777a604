/* The counters' tables and sums: latency histograms, the per-pipe metric
 * list (SR_PIPE_COUNTERS) as data, the snapshot of a pipe over the workers,
 * the stats log fields, label values. */
#include "skyrelay/metrics.h"

#include <string.h>

#include "skyrelay/buf.h"
#include "skyrelay/worker.h"

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

#define SR_PIPE_METRIC_(field, src, stats, prom)                                                  \
    {#field, offsetof(struct sr_pipe_totals, field), stats, prom},
const struct sr_pipe_metric sr_pipe_metrics[SR_PIPE_METRIC_COUNT] = {
    SR_PIPE_COUNTERS(SR_PIPE_METRIC_)};
#undef SR_PIPE_METRIC_

#define ADD_SUM(field)   t->field += SR_CNT_GET(c->field);
#define ADD_QUEUE(field) /* sr_pipe_snapshot reads the partitions */
#define ADD_(field, src, stats, prom) ADD_##src(field)
void sr_pipe_totals_add(struct sr_pipe_totals *t, const struct sr_pipe_counters *c)
{
    SR_PIPE_COUNTERS(ADD_)
    for (int r = 0; r < SR_DROP_COUNT; r++) t->dropped[r] += SR_CNT_GET(c->dropped_events[r]);
}
#undef ADD_
#undef ADD_QUEUE
#undef ADD_SUM

void sr_pipe_snapshot(const struct sr_runtime *rt, enum sr_pipe_id id, struct sr_pipe_totals *out)
{
    int64_t now = sr_wall_ms();
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        const struct sr_worker *w = &rt->workers[i];
        const struct sr_latency *l = &w->ctr.upstream_latency[id];
        const struct sr_partition *part = &w->pipes[id].part;
        sr_pipe_totals_add(out, &w->ctr.pipe[id]);
        for (int b = 0; b < SR_LAT_BUCKETS; b++) out->lat_bucket[b] += SR_CNT_GET(l->bucket[b]);
        out->lat_sum_us += SR_CNT_GET(l->sum_us);
        /* the QUEUE entries of SR_PIPE_COUNTERS */
        out->depth_events += atomic_load_explicit(&part->depth_events, memory_order_relaxed);
        out->depth_bytes += atomic_load_explicit(&part->depth_bytes, memory_order_relaxed);
        /* set once by sr_partition_init, before the workers start */
        out->cap_events += part->max_events;
        out->cap_bytes += part->max_bytes;
        if (part->disk) { /* set before the workers start too */
            const struct sr_disklog *d = part->disk;
            int64_t oldest = atomic_load_explicit(&d->st_oldest_ms, memory_order_relaxed);
            uint64_t age = oldest > 0 && now > oldest ? (uint64_t)(now - oldest) / 1000 : 0;
            out->disk_events += atomic_load_explicit(&d->st_events, memory_order_relaxed);
            out->disk_bytes += atomic_load_explicit(&d->st_bytes, memory_order_relaxed);
            if (age > out->disk_oldest_age_s) out->disk_oldest_age_s = age;
            out->disk_replayed += atomic_load_explicit(&d->st_replayed, memory_order_relaxed);
            out->disk_recovered += atomic_load_explicit(&d->st_recovered, memory_order_relaxed);
            out->disk_corrupt += atomic_load_explicit(&d->st_corrupt, memory_order_relaxed);
            out->disk_refused += atomic_load_explicit(&d->st_refused, memory_order_relaxed);
            out->disk_write_errors += atomic_load_explicit(&d->st_write_errors, memory_order_relaxed);
            out->disk_syncs += atomic_load_explicit(&d->st_syncs, memory_order_relaxed);
        }
    }
}

void sr_call_snapshot(const struct sr_runtime *rt, struct sr_call_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < rt->n_workers; i++) {
        const struct sr_worker_counters *c = &rt->workers[i].ctr;
        out->relay_calls[0] += SR_CNT_GET(c->relay_calls[0]);
        out->relay_calls[1] += SR_CNT_GET(c->relay_calls[1]);
        out->relay_failed += SR_CNT_GET(c->relay_failed);
        out->msgs_up += SR_CNT_GET(c->relay_msgs_up);
        out->msgs_down += SR_CNT_GET(c->relay_msgs_down);
        out->unauthenticated += SR_CNT_GET(c->unauthenticated_calls);
        out->unimplemented += SR_CNT_GET(c->unknown_method_calls);
        for (int k = 0; k < SR_CDS_SOURCE_COUNT; k++) out->cds_answers[k] += SR_CNT_GET(c->cds_answers[k]);
        out->cds_upstream_calls += SR_CNT_GET(c->cds_upstream_calls);
        out->cds_entries += SR_CNT_GET(c->cds_entries);
        out->cds_bytes += SR_CNT_GET(c->cds_bytes);
    }
}

void sr_pipe_stats_format(struct sr_buf *b, const struct sr_pipe_totals *t)
{
    /* in stats_pos order; a few dozen entries, once a minute */
    for (int pos = 1; pos <= SR_PIPE_METRIC_COUNT; pos++)
        for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++)
            if (sr_pipe_metrics[m].stats_pos == pos)
                sr_buf_appendf(b, " %s=%llu", sr_pipe_metrics[m].stats_key,
                               (unsigned long long)sr_pipe_totals_get(t, &sr_pipe_metrics[m]));
    for (int r = 0; r < SR_DROP_COUNT; r++)
        sr_buf_appendf(b, " dropped_%s=%llu", sr_drop_reason_name((enum sr_drop_reason)r),
                       (unsigned long long)t->dropped[r]);
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
