/* "least_loaded": power of two random choices by load (Mitzenmacher), with
 * the peak-EWMA cost of Finagle and Linkerd.
 *
 * A pick draws two distinct nodes uniformly at random among the eligible
 * ones (up, not tried) and takes the one with the lower score: the node's
 * latency EWMA (src/upstream/load.c: a slow answer raises it at once, fast
 * answers lower it over seconds) times its calls in flight + 1, divided by
 * its weight. A node that slows down (GC pause, hot partition) answers late,
 * so its EWMA rises on its first slow answer and its calls pile up, and it
 * loses most duels before it stalls. Two random candidates rather than the
 * global minimum: every worker sees the shared load with some delay, and all
 * of them sending to the one least loaded node would overload it in turn
 * (herding), while two choices already cut the worst load exponentially
 * against one random choice.
 *
 * The noise floor. Finagle compares raw EWMAs (sr_node_load_score), which
 * suits thousands of requests in flight. A skyrelay pipe has a few batch
 * calls in flight per node, so the latency term decides most duels, and the
 * peak EWMA of a healthy node holds its worst answer of the last ~10 s (the
 * first call's connection handshake, a scheduling hiccup). On three
 * identical nodes that noise alone gave shares from 13 % to 54 % in
 * 60,000-segment runs (docs/routing.md). So a latency below LL_NOISE_FLOOR x
 * the reference (the lower median EWMA of the eligible nodes) counts as that
 * floor: among healthy nodes the duel is decided by the calls in flight
 * ("least request", which by Little's law still favours a faster node), and
 * a node clearly slower than its peers is penalized in proportion (10x the
 * median scores 5x). The lower median, so that one slow node, or half of
 * them, does not raise the reference.
 *
 * A node with no latency sample yet (new, or never picked) is scored with
 * the reference latency, so it starts as an average node: its calls in
 * flight soon put it at par; it is neither flooded (as Finagle's zero cost
 * would) nor starved (as a penalty would). With no sample on any eligible
 * node, LL_DEFAULT_US stands in.
 *
 * Keys are ignored. The shared load (inflight, EWMA) is updated by the
 * sender for every finished batch call, so there is no report callback.
 * Instances are per worker and per pipe: the random state and the scratch
 * arrays need no lock. A pick is O(eligible nodes). */
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "skyrelay/router.h"
#include "skyrelay/wire.h"

/* The latency assumed when no eligible node has a sample. */
#define LL_DEFAULT_US 1000

/* A latency below LL_NOISE_FLOOR x the reference (the lower median node)
 * counts as that floor: only a node clearly slower than its peers is
 * penalized for its latency. -DLL_NOISE_FLOOR=0 gives Finagle's plain
 * peak-EWMA score (for comparisons). */
#ifndef LL_NOISE_FLOOR
#define LL_NOISE_FLOOR 2.0
#endif

struct ll {
    struct sr_balancer super;
    uint64_t rng;   /* xorshift64* state, never 0 */
    size_t n;       /* nodes of up at create; the instance is rebuilt when the set changes */
    uint32_t *cand; /* n: indexes of the eligible nodes of one pick */
    double lat[];   /* n: scratch for the median */
};

static struct sr_balancer *ll_create(struct sr_upstream *up, const struct sr_balancer_opts *opts)
{
    static _Atomic uint64_t instances;
    size_t n = up->n_nodes;
    struct ll *l = calloc(1, sizeof(*l) + n * (sizeof(l->lat[0]) + sizeof(l->cand[0])));
    struct timespec ts;
    uint64_t seed;

    (void)opts;
    if (!l) return NULL;
    l->super.type = &sr_balancer_least_loaded;
    l->super.up = up;
    l->n = n;
    l->cand = (uint32_t *)(l->lat + n);
    /* distinct per instance and per process, so that workers and replicas do
     * not draw the same candidates in step */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = atomic_fetch_add(&instances, 1) ^ ((uint64_t)getpid() << 32);
    sr_least_loaded_seed(&l->super, seed ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20));
    return &l->super;
}

void sr_least_loaded_seed(struct sr_balancer *b, uint64_t seed)
{
    struct ll *l = (struct ll *)b;
    l->rng = sr_mix64(seed ^ 0x9E3779B97F4A7C15ULL);
    if (l->rng == 0) l->rng = 1;
}

static void ll_destroy(struct sr_balancer *b)
{
    free(b);
}

/* Uniform in [0, m), from the high bits (the better ones of xorshift64*). */
static uint32_t below(uint64_t *rng, uint32_t m)
{
    return (uint32_t)(((sr_rand64(rng) >> 32) * m) >> 32);
}

/* The node's EWMA decayed to now, as sr_node_load_score sees it; 0 without
 * a sample. */
static double decayed_ewma(const struct sr_node *n, int64_t now_us)
{
    uint64_t e = atomic_load_explicit(&n->ewma_us, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&n->ewma_stamp_us, memory_order_relaxed);
    double lat;

    if (e == 0) return 0;
    lat = (double)e * exp(-(double)(now_us > last ? now_us - last : 0) / (double)SR_EWMA_TAU_US);
    return lat < 1.0 ? 1.0 : lat;
}

/* The k-th smallest of a[0..n) (Wirth's selection; reorders a). */
static double kth(double *a, size_t n, size_t k)
{
    long lo = 0, hi = (long)n - 1, kk = (long)k;

    while (lo < hi) {
        double x = a[kk], t;
        long i = lo, j = hi;
        do {
            while (a[i] < x) i++;
            while (x < a[j]) j--;
            if (i <= j) {
                t = a[i], a[i] = a[j], a[j] = t;
                i++, j--;
            }
        } while (i <= j);
        if (j < kk) lo = i;
        if (kk < i) hi = j;
    }
    return a[kk];
}

/* The reference latency of a pick: the lower median of the decayed EWMAs of
 * the m eligible candidates that have one; LL_DEFAULT_US when none has. */
static uint64_t reference_latency(struct ll *l, size_t m, int64_t now_us)
{
    size_t k = 0;
    double med;

    for (size_t i = 0; i < m; i++) {
        double e = decayed_ewma(&l->super.up->nodes[l->cand[i]], now_us);
        if (e > 0) l->lat[k++] = e;
    }
    if (k == 0) return LL_DEFAULT_US;
    med = kth(l->lat, k, (k - 1) / 2);
    return med < 1.0 ? 1 : (uint64_t)med;
}

/* The score of sr_node_load_score (latency x (calls in flight + 1), ref_us
 * for a node without a sample) with the latency raised to the noise floor,
 * divided by the weight. Computed here from the same atomics rather than by
 * scaling sr_node_load_score, so that healthy nodes tie exactly. */
static double score(const struct sr_node *n, uint64_t ref_us, int64_t now_us)
{
    double lat = decayed_ewma(n, now_us), least = LL_NOISE_FLOOR * (double)ref_us;
    int calls = atomic_load_explicit(&n->inflight, memory_order_relaxed);

    if (lat == 0) lat = (double)ref_us;
    if (lat < least) lat = least;
    return lat * (double)((calls > 0 ? calls : 0) + 1) / (double)(n->weight ? n->weight : 1);
}

static struct sr_node *ll_pick(struct sr_balancer *b, uint64_t key, uint64_t tried, int64_t now_ms,
                               int64_t *retry_at_ms)
{
    struct ll *l = (struct ll *)b;
    struct sr_node *nodes = b->up->nodes, *x, *y;
    uint64_t ref;
    size_t m = 0;
    uint32_t i, j;

    (void)key;
    for (size_t k = 0; k < l->n; k++) {
        if (!sr_node_is_up(&nodes[k], now_ms) || (tried & sr_node_bit(&nodes[k]))) continue;
        l->cand[m++] = (uint32_t)k;
    }
    if (m == 0) {
        *retry_at_ms = sr_router_earliest_up(b->up);
        return NULL;
    }
    if (m == 1) return &nodes[l->cand[0]];

    i = below(&l->rng, (uint32_t)m);
    j = below(&l->rng, (uint32_t)m - 1);
    if (j >= i) j++;
    x = &nodes[l->cand[i]];
    y = &nodes[l->cand[j]];
    ref = reference_latency(l, m, now_ms * 1000);
    /* a tie goes to the first draw, itself uniform */
    return score(y, ref, now_ms * 1000) < score(x, ref, now_ms * 1000) ? y : x;
}

const struct sr_balancer_type sr_balancer_least_loaded = {
    .name = "least_loaded",
    .create = ll_create,
    .destroy = ll_destroy,
    .pick = ll_pick,
};
