/* Node load for least-loaded routing: a peak-sensitive moving average of
 * call latency (Finagle's "peak EWMA", also used by Linkerd). A sample above
 * the average replaces it at once (a node that slows down is noticed on its
 * first slow answer); a sample below decays in with weight exp(-dt / tau), so
 * recovery is judged over seconds, not one lucky call. Workers update the
 * shared atomics without a lock; a lost update between two concurrent samples
 * only loses one sample. */
#include <math.h>

#include "skyrelay/upstream.h"

void sr_node_observe_latency(struct sr_node *n, uint64_t us, int64_t now_us)
{
    uint64_t cur = atomic_load_explicit(&n->ewma_us, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&n->ewma_stamp_us, memory_order_relaxed);
    uint64_t next;

    sr_latency_observe_shared(&n->latency, us);
    if (cur == 0 || us >= cur) {
        next = us ? us : 1;
    } else {
        double dt = (double)(now_us > last ? now_us - last : 0);
        double w = exp(-dt / (double)SR_EWMA_TAU_US);
        next = (uint64_t)((double)cur * w + (double)us * (1.0 - w));
        if (next == 0) next = 1;
    }
    atomic_store_explicit(&n->ewma_us, next, memory_order_relaxed);
    atomic_store_explicit(&n->ewma_stamp_us, now_us, memory_order_relaxed);
}

double sr_node_load_score(const struct sr_node *n, uint64_t default_us, int64_t now_us)
{
    uint64_t e = atomic_load_explicit(&n->ewma_us, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&n->ewma_stamp_us, memory_order_relaxed);
    int inflight = atomic_load_explicit(&n->inflight, memory_order_relaxed);
    double lat;

    if (e == 0) {
        lat = (double)default_us;
    } else {
        double dt = (double)(now_us > last ? now_us - last : 0);
        lat = (double)e * exp(-dt / (double)SR_EWMA_TAU_US);
        if (lat < 1.0) lat = 1.0;
    }
    return lat * (double)((inflight > 0 ? inflight : 0) + 1);
}
