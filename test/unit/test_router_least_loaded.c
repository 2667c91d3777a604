/* Unit tests for src/router/least_loaded.c (power of two choices by
 * outstanding calls x peak-EWMA latency) and the EWMA of src/upstream/load.c,
 * on hand-built node sets (no channels, no gRPC), a fake clock and seeded
 * instances.
 *
 * Two kinds of test: static ones set each node's load (EWMA, calls in flight)
 * and count picks; simulated ones play a cluster where a call is issued
 * every `gap_us`, holds its node's `inflight` for the node's latency and then
 * feeds that latency to sr_node_observe_latency, as the sender does, so the
 * balancer sees the load its own picks create. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/router.h"

#define MAX_NODES 8
#define SEED      42

struct fixture {
    struct sr_node nodes[MAX_NODES];
    struct sr_upstream up;
    struct sr_balancer *b;
};

static char *const names[MAX_NODES] = {"oap-0:11800", "oap-1:11800", "oap-2:11800", "oap-3:11800",
                                       "oap-4:11800", "oap-5:11800", "oap-6:11800", "oap-7:11800"};

/* n nodes, weights 1 (or weights[i]), all up, no load and no sample. */
static void fixture_init(struct fixture *f, const uint32_t *weights, size_t n)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f->nodes[i].address = names[i];
        f->nodes[i].weight = weights ? weights[i] : 1;
        f->nodes[i].index = (uint32_t)i;
    }
    f->up.nodes = f->nodes;
    f->up.n_nodes = n;
    f->up.backoff_initial_ms = 200;
    f->up.backoff_max_ms = 10000;
    f->b = sr_balancer_least_loaded.create(&f->up, NULL);
    assert_non_null(f->b);
    sr_least_loaded_seed(f->b, SEED);
}

static void fixture_deinit(struct fixture *f)
{
    f->b->type->destroy(f->b);
}

/* A new instance over f's (possibly changed) node set, replacing f->b. */
static void rebuild(struct fixture *f, uint64_t seed)
{
    struct sr_balancer *nb = sr_balancer_least_loaded.create(&f->up, NULL);
    assert_non_null(nb);
    sr_least_loaded_seed(nb, seed);
    f->b->type->destroy(f->b);
    f->b = nb;
}

static int pick_index(struct fixture *f, uint64_t tried, int64_t now_ms)
{
    int64_t retry = 12345;
    struct sr_node *n = f->b->type->pick(f->b, 0, tried, now_ms, &retry);
    if (!n) return -1;
    assert_true(n >= f->nodes && n < f->nodes + f->up.n_nodes);
    return (int)(n - f->nodes);
}

static void count_picks(struct fixture *f, unsigned *count, unsigned picks, uint64_t tried,
                        int64_t now_ms)
{
    memset(count, 0, MAX_NODES * sizeof(*count));
    for (unsigned i = 0; i < picks; i++) {
        int k = pick_index(f, tried, now_ms);
        assert_true(k >= 0);
        count[k]++;
    }
}

/* The node's EWMA is `us`, last sampled at `stamp_us` (0 us = no sample). */
static void set_ewma(struct fixture *f, size_t i, uint64_t us, int64_t stamp_us)
{
    atomic_store(&f->nodes[i].ewma_us, us);
    atomic_store(&f->nodes[i].ewma_stamp_us, stamp_us);
}

static void set_inflight(struct fixture *f, size_t i, int calls)
{
    atomic_store(&f->nodes[i].inflight, calls);
}

static void set_down(struct fixture *f, size_t i, int64_t until_ms)
{
    atomic_store(&f->nodes[i].down_until_ms, until_ms);
}

/* Passes if got/total is within pp percentage points of want_pct. */
static void assert_share(unsigned got, unsigned total, double want_pct, double pp)
{
    double pct = 100.0 * got / total;
    if (pct < want_pct - pp || pct > want_pct + pp)
        fail_msg("share %.2f%% (%u of %u), want %.2f%% +- %.1f", pct, got, total, want_pct, pp);
}

/* ---- the simulated cluster ---- */

struct call {
    int64_t end_us;
    int node;
};

struct sim {
    struct fixture *f;
    uint64_t lat_us[MAX_NODES]; /* each node answers a call this long after it starts */
    int64_t gap_us;             /* a pick every gap_us */
    int64_t now_us;
    struct call calls[4096];
    size_t n_calls;
    unsigned count[MAX_NODES];
    int max_inflight[MAX_NODES];
};

static void sim_init(struct sim *s, struct fixture *f, const uint64_t *lat_us, int64_t gap_us)
{
    memset(s, 0, sizeof(*s));
    s->f = f;
    memcpy(s->lat_us, lat_us, f->up.n_nodes * sizeof(lat_us[0]));
    s->gap_us = gap_us;
    s->now_us = 1000000; /* the monotonic clock does not start at 0 */
}

/* Ends the calls due by now, as the sender does: inflight down, latency in. */
static void sim_complete(struct sim *s)
{
    for (size_t i = 0; i < s->n_calls;) {
        struct call *c = &s->calls[i];
        if (c->end_us > s->now_us) {
            i++;
            continue;
        }
        atomic_fetch_sub(&s->f->nodes[c->node].inflight, 1);
        sr_node_observe_latency(&s->f->nodes[c->node], s->lat_us[c->node], c->end_us);
        *c = s->calls[--s->n_calls];
    }
}

/* `picks` calls, one every gap_us, through balancer b (counted in s->count). */
static void sim_run(struct sim *s, struct sr_balancer *b, unsigned picks)
{
    memset(s->count, 0, sizeof(s->count));
    for (unsigned p = 0; p < picks; p++) {
        int64_t retry = 0;
        struct sr_node *n;
        int k, in;

        s->now_us += s->gap_us;
        sim_complete(s);
        n = b->type->pick(b, 0, 0, s->now_us / 1000, &retry);
        assert_non_null(n);
        k = (int)(n - s->f->nodes);
        s->count[k]++;
        in = atomic_fetch_add(&n->inflight, 1) + 1;
        if (in > s->max_inflight[k]) s->max_inflight[k] = in;
        assert_true(s->n_calls < sizeof(s->calls) / sizeof(s->calls[0]));
        s->calls[s->n_calls++] = (struct call){s->now_us + (int64_t)s->lat_us[k], k};
    }
}

/* ---- tests ---- */

static void ll_create_binds_type_and_upstream_and_is_registered(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, NULL, 3);
    assert_ptr_equal(f.b->type, &sr_balancer_least_loaded);
    assert_ptr_equal(f.b->up, &f.up);
    assert_string_equal(sr_balancer_least_loaded.name, "least_loaded");
    assert_ptr_equal(sr_balancer_find("least_loaded"), &sr_balancer_least_loaded);
    assert_null(sr_balancer_find("least"));
    assert_null(sr_balancer_find("least_loaded "));
    /* the sender keeps the shared load current: nothing to report, nothing to inherit */
    assert_null(sr_balancer_least_loaded.report);
    assert_null(sr_balancer_least_loaded.inherit);
    sr_balancer_report(f.b, &f.nodes[0], false);
    fixture_deinit(&f);
}

static void ll_picks_only_up_nodes_and_never_a_tried_one(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 5);
    set_down(&f, 1, 5000);             /* ejected until 5 s */
    atomic_store(&f.nodes[3].gone, 1); /* left the node set */
    count_picks(&f, c, 3000, 0, 1000);
    assert_int_equal(c[1], 0);
    assert_int_equal(c[3], 0);
    assert_share(c[0], 3000, 100 / 3.0, 5);
    assert_share(c[2], 3000, 100 / 3.0, 5);
    assert_share(c[4], 3000, 100 / 3.0, 5);
    /* a retry after node 0 failed: 2 and 4 only */
    count_picks(&f, c, 1000, sr_node_bit(&f.nodes[0]), 1000);
    assert_int_equal(c[0] + c[1] + c[3], 0);
    assert_share(c[2], 1000, 50, 6);
    /* node 1 is back at its down_until */
    count_picks(&f, c, 4000, 0, 5000);
    assert_share(c[1], 4000, 25, 4);
    assert_int_equal(c[3], 0);
    fixture_deinit(&f);
}

static void ll_a_single_eligible_node_is_picked_every_time(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, NULL, 3);
    set_inflight(&f, 2, 50); /* however loaded */
    set_ewma(&f, 2, 900000, 1000000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]), 1000),
                         2);
    fixture_deinit(&f);
    fixture_init(&f, NULL, 1);
    assert_int_equal(pick_index(&f, 0, 0), 0);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]), 0), -1);
    fixture_deinit(&f);
}

static void ll_returns_null_and_earliest_retry_when_none_is_eligible(void **state)
{
    struct fixture f;
    int64_t retry = 0;
    uint64_t all;
    (void)state;
    fixture_init(&f, NULL, 3);
    set_down(&f, 0, 5000);
    set_down(&f, 1, 3000);
    set_down(&f, 2, 4000);
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == 3000);
    assert_int_equal(pick_index(&f, 0, 3000), 1);
    /* all tried: NULL as well */
    set_down(&f, 0, 0);
    set_down(&f, 1, 0);
    set_down(&f, 2, 0);
    all = sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]);
    assert_int_equal(pick_index(&f, all, 1000), -1);
    fixture_deinit(&f);
    /* no node at all: unknown */
    fixture_init(&f, NULL, 0);
    retry = 0;
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == INT64_MAX);
    fixture_deinit(&f);
}

static void ll_equal_load_spreads_30000_picks_within_5_percent(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 3);
    /* no sample anywhere (a fresh start) */
    count_picks(&f, c, 30000, 0, 1000);
    for (int i = 0; i < 3; i++) assert_share(c[i], 30000, 100 / 3.0, 100 / 3.0 * 0.05);
    /* the same EWMA and calls in flight everywhere */
    for (int i = 0; i < 3; i++) {
        set_ewma(&f, (size_t)i, 2500, 1000000);
        set_inflight(&f, (size_t)i, 2);
    }
    count_picks(&f, c, 30000, 0, 1000);
    for (int i = 0; i < 3; i++) assert_share(c[i], 30000, 100 / 3.0, 100 / 3.0 * 0.05);
    fixture_deinit(&f);
}

static void ll_equal_nodes_stay_balanced_under_their_own_load(void **state)
{
    static const uint64_t lat[] = {2000, 2000, 2000};
    struct fixture f;
    struct sim s;
    (void)state;
    fixture_init(&f, NULL, 3);
    sim_init(&s, &f, lat, 100); /* ~20 calls in flight */
    sim_run(&s, f.b, 30000);
    for (int i = 0; i < 3; i++) assert_share(s.count[i], 30000, 100 / 3.0, 100 / 3.0 * 0.05);
    fixture_deinit(&f);
}

static void ll_of_two_candidates_the_lower_score_always_wins(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 2);
    /* distinct draws: a node 2.5x slower than the other never wins against it */
    set_ewma(&f, 0, 1000, 1000000);
    set_ewma(&f, 1, 2500, 1000000);
    count_picks(&f, c, 1000, 0, 1000);
    assert_int_equal(c[0], 1000);
    /* the same with the calls in flight */
    set_ewma(&f, 1, 1000, 1000000);
    set_inflight(&f, 1, 1);
    count_picks(&f, c, 1000, 0, 1000);
    assert_int_equal(c[0], 1000);
    fixture_deinit(&f);
}

static void ll_score_is_latency_times_calls_in_flight_plus_one(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 2);
    /* the reference is 1 ms, the noise floor 2 ms */
    set_ewma(&f, 0, 1000, 1000000);
    set_ewma(&f, 1, 6000, 1000000);
    set_inflight(&f, 0, 3); /* 2 ms x 4 = 8000 > 6 ms x 1 */
    count_picks(&f, c, 100, 0, 1000);
    assert_int_equal(c[1], 100);
    set_inflight(&f, 1, 1); /* 6 ms x 2 = 12000 > 8000 */
    count_picks(&f, c, 100, 0, 1000);
    assert_int_equal(c[0], 100);
    fixture_deinit(&f);
}

static void ll_a_node_with_many_calls_in_flight_gets_fewer_picks(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 4);
    for (size_t i = 0; i < 4; i++) set_ewma(&f, i, 2000, 1000000);
    set_inflight(&f, 0, 20);
    set_inflight(&f, 1, 2);
    count_picks(&f, c, 12000, 0, 1000);
    assert_int_equal(c[0], 0); /* the most loaded of the two always loses */
    /* node 1 wins only against node 0: 1/6 of the pairs */
    assert_share(c[1], 12000, 100 / 6.0, 2);
    assert_share(c[2], 12000, 100 * 5 / 12.0, 3);
    assert_share(c[3], 12000, 100 * 5 / 12.0, 3);
    fixture_deinit(&f);
}

static void ll_a_10x_slower_node_gets_under_10_percent_not_a_third(void **state)
{
    static const uint64_t lat[] = {1000, 1000, 10000};
    struct fixture f;
    struct sim s;
    struct sr_balancer *rr;
    int rr_max;
    (void)state;
    fixture_init(&f, NULL, 3);
    /* round robin over the same cluster: a third, and its calls pile up */
    rr = sr_balancer_round_robin.create(&f.up, NULL);
    assert_non_null(rr);
    sim_init(&s, &f, lat, 100);
    sim_run(&s, rr, 30000);
    assert_share(s.count[2], 30000, 100 / 3.0, 0.1);
    rr_max = s.max_inflight[2];
    assert_true(rr_max >= 30);
    rr->type->destroy(rr);
    /* least loaded, from a fresh start (no sample anywhere) */
    fixture_deinit(&f);
    fixture_init(&f, NULL, 3);
    sim_init(&s, &f, lat, 100);
    sim_run(&s, f.b, 30000);
    if (s.count[2] >= 3000) fail_msg("slow node got %u of 30000 picks", s.count[2]);
    assert_share(s.count[0], 30000, 50, 5);
    assert_share(s.count[1], 30000, 50, 5);
    if (s.max_inflight[2] * 2 > rr_max)
        fail_msg("slow node had %d calls in flight (round robin %d)", s.max_inflight[2], rr_max);
    fixture_deinit(&f);
}

static void ll_latency_within_twice_the_median_is_noise_not_load(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 3);
    /* healthy nodes whose peaks differ: equal shares (the plain peak-EWMA
     * score would give 2/3, 1/3 and 0) */
    set_ewma(&f, 0, 1000, 1000000);
    set_ewma(&f, 1, 1500, 1000000);
    set_ewma(&f, 2, 1900, 1000000);
    count_picks(&f, c, 30000, 0, 1000);
    for (int i = 0; i < 3; i++) assert_share(c[i], 30000, 100 / 3.0, 100 / 3.0 * 0.05);
    /* there the calls in flight decide */
    set_inflight(&f, 0, 1);
    count_picks(&f, c, 3000, 0, 1000);
    assert_int_equal(c[0], 0);
    /* beyond the floor latency counts: 2.5 ms against the floor of 2 x 1 ms */
    set_inflight(&f, 0, 0);
    set_ewma(&f, 1, 1000, 1000000);
    set_ewma(&f, 2, 2500, 1000000);
    count_picks(&f, c, 3000, 0, 1000);
    assert_int_equal(c[2], 0);
    fixture_deinit(&f);
}

static void ll_a_node_without_a_sample_counts_as_the_median_one(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    /* others at 2 ms: the new node is at par with them, not starved */
    fixture_init(&f, NULL, 3);
    set_ewma(&f, 0, 2000, 1000000);
    set_ewma(&f, 1, 2000, 1000000);
    count_picks(&f, c, 30000, 0, 1000);
    assert_share(c[2], 30000, 100 / 3.0, 2);
    /* others at 2 and 5 ms: it counts as the lower median, 2 ms (floor 4 ms):
     * at par with the 2 ms node, ahead of the 5 ms one */
    set_ewma(&f, 1, 5000, 1000000);
    count_picks(&f, c, 30000, 0, 1000);
    assert_int_equal(c[1], 0);
    assert_share(c[0], 30000, 50, 2);
    assert_share(c[2], 30000, 50, 2);
    fixture_deinit(&f);
    /* one slow node among three does not make the new one look slow */
    fixture_init(&f, NULL, 4);
    set_ewma(&f, 0, 1000, 1000000);
    set_ewma(&f, 1, 1000, 1000000);
    set_ewma(&f, 2, 100000, 1000000);
    count_picks(&f, c, 30000, 0, 1000);
    assert_int_equal(c[2], 0);
    assert_share(c[3], 30000, 100 / 3.0, 2);
    /* only eligible nodes count: with the 100 ms node down the reference is
     * 1 ms (floor 2 ms) and a 3 ms node loses; counting the down node it
     * would be 3 ms, and every node at par */
    set_ewma(&f, 1, 3000, 1000000);
    set_down(&f, 2, 5000);
    count_picks(&f, c, 10000, 0, 1000);
    assert_int_equal(c[1] + c[2], 0);
    assert_share(c[3], 10000, 50, 3);
    fixture_deinit(&f);
}

static void ll_a_new_node_is_neither_starved_nor_flooded(void **state)
{
    static const uint64_t lat[] = {2000, 2000, 2000};
    struct fixture f;
    struct sim s;
    (void)state;
    /* two nodes run alone for a while, then a third joins (a new instance) */
    fixture_init(&f, NULL, 3);
    sim_init(&s, &f, lat, 100);
    f.up.n_nodes = 2;
    rebuild(&f, 3);
    sim_run(&s, f.b, 10000);
    f.up.n_nodes = 3;
    rebuild(&f, 7);
    sim_run(&s, f.b, 60);
    /* at most its 2/3 of the duels while it catches up, not every pick */
    assert_true(s.count[2] > 0 && s.count[2] <= 45);
    sim_run(&s, f.b, 30000);
    for (int i = 0; i < 3; i++) assert_share(s.count[i], 30000, 100 / 3.0, 100 / 3.0 * 0.05);
    fixture_deinit(&f);
}

static void ll_weights_divide_the_score(void **state)
{
    static const uint32_t w[] = {3, 1, 1};
    static const uint64_t lat[] = {2000, 2000, 2000};
    struct fixture f;
    struct sim s;
    (void)state;
    fixture_init(&f, w, 3);
    sim_init(&s, &f, lat, 50); /* ~40 calls in flight */
    sim_run(&s, f.b, 30000);
    /* par at (calls of node 0 + 1) = 3 x (calls of node 1 + 1): ~62/19/19 with 40 in flight */
    assert_share(s.count[0], 30000, 60, 6);
    assert_share(s.count[1], 30000, 20, 4);
    assert_share(s.count[2], 30000, 20, 4);
    fixture_deinit(&f);
}

static void ll_an_idle_nodes_old_peak_decays_so_it_is_tried_again(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, NULL, 3);
    set_ewma(&f, 2, 100000, 0); /* a 100 ms peak at t = 0, nothing since */
    set_ewma(&f, 0, 1000, 1000000);
    set_ewma(&f, 1, 1000, 1000000);
    count_picks(&f, c, 1000, 0, 1000);
    assert_int_equal(c[2], 0);
    /* 60 s later (6 tau): 100 ms x e^-6 = 0.25 ms, below the busy nodes' 1 ms:
     * at par with them again */
    set_ewma(&f, 0, 1000, 60000000);
    set_ewma(&f, 1, 1000, 60000000);
    count_picks(&f, c, 3000, 0, 60000);
    assert_share(c[2], 3000, 100 / 3.0, 4);
    fixture_deinit(&f);
}

static void ll_ignores_the_key_and_a_seed_reproduces_the_picks(void **state)
{
    struct fixture f;
    struct sr_balancer *same, *other;
    int64_t retry;
    int differ = 0;
    (void)state;
    fixture_init(&f, NULL, 5);
    same = sr_balancer_least_loaded.create(&f.up, NULL);
    other = sr_balancer_least_loaded.create(&f.up, NULL);
    assert_non_null(same);
    assert_non_null(other);
    sr_least_loaded_seed(same, SEED);
    sr_least_loaded_seed(other, SEED + 1);
    for (uint64_t i = 0; i < 200; i++) {
        struct sr_node *a = f.b->type->pick(f.b, 0, 0, 1000, &retry);
        struct sr_node *b = same->type->pick(same, 0x9E3779B97F4A7C15ULL * i, 0, 1000, &retry);
        struct sr_node *o = other->type->pick(other, 0, 0, 1000, &retry);
        assert_ptr_equal(a, b);
        differ += a != o;
    }
    assert_true(differ > 100); /* another seed, another sequence */
    same->type->destroy(same);
    other->type->destroy(other);
    fixture_deinit(&f);
}

static void ll_stable_under_node_churn(void **state)
{
    struct fixture f;
    unsigned c[MAX_NODES];
    struct sr_balancer *old;
    (void)state;
    fixture_init(&f, NULL, 3);
    for (size_t i = 0; i < 3; i++) set_ewma(&f, i, 2000, 1000000);
    /* discovery: node 0 leaves, nodes 3 and 4 join (new slots, no sample) */
    atomic_store(&f.nodes[0].gone, 1);
    f.nodes[3].address = names[3];
    f.nodes[3].weight = 1;
    f.nodes[3].index = 3;
    f.nodes[4].address = names[4];
    f.nodes[4].weight = 1;
    f.nodes[4].index = 4;
    f.up.n_nodes = 5;
    /* the old instance, until the worker rebuilds it: skips the gone node, sees only its set */
    count_picks(&f, c, 2000, 0, 1000);
    assert_int_equal(c[0] + c[3] + c[4], 0);
    assert_share(c[1], 2000, 50, 5);
    /* the new instance: the four present nodes, the new ones at par */
    old = f.b;
    f.b = sr_balancer_least_loaded.create(&f.up, NULL);
    assert_non_null(f.b);
    sr_least_loaded_seed(f.b, 9);
    old->type->destroy(old);
    count_picks(&f, c, 20000, 0, 1000);
    assert_int_equal(c[0], 0);
    for (int i = 1; i < 5; i++) assert_share(c[i], 20000, 25, 2);
    /* shrink to one present node, then none */
    atomic_store(&f.nodes[1].gone, 1);
    atomic_store(&f.nodes[2].gone, 1);
    atomic_store(&f.nodes[3].gone, 1);
    rebuild(&f, 10);
    count_picks(&f, c, 100, 0, 1000);
    assert_int_equal(c[4], 100);
    atomic_store(&f.nodes[4].gone, 1);
    rebuild(&f, 11);
    assert_int_equal(pick_index(&f, 0, 1000), -1);
    fixture_deinit(&f);
}

/* src/upstream/load.c */

static void ewma_takes_a_peak_at_once_and_decays_a_drop_over_seconds(void **state)
{
    struct sr_node n;
    (void)state;
    memset(&n, 0, sizeof(n));
    assert_true(sr_node_load_score(&n, 1234, 0) == 1234.0); /* no sample: the default */
    sr_node_observe_latency(&n, 1000, 1000000);
    assert_int_equal(atomic_load(&n.ewma_us), 1000);
    sr_node_observe_latency(&n, 50000, 1001000); /* a peak replaces it */
    assert_int_equal(atomic_load(&n.ewma_us), 50000);
    /* a fast answer 1 ms later barely moves it (w = e^-0.0001) */
    sr_node_observe_latency(&n, 1000, 1002000);
    assert_true(atomic_load(&n.ewma_us) > 49000);
    /* one tau later it is mostly forgotten: 49,995 e^-1 + 1000 (1 - e^-1) ~ 19,000 */
    sr_node_observe_latency(&n, 1000, 11002000);
    assert_true(atomic_load(&n.ewma_us) > 18000 && atomic_load(&n.ewma_us) < 20000);
    /* the score multiplies by the calls in flight + 1 */
    atomic_store(&n.inflight, 3);
    assert_true(sr_node_load_score(&n, 0, 11002000) == 4.0 * (double)atomic_load(&n.ewma_us));
    /* and decays while the node is idle */
    assert_true(sr_node_load_score(&n, 0, 41002000) < 4.0 * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ll_create_binds_type_and_upstream_and_is_registered),
        cmocka_unit_test(ll_picks_only_up_nodes_and_never_a_tried_one),
        cmocka_unit_test(ll_a_single_eligible_node_is_picked_every_time),
        cmocka_unit_test(ll_returns_null_and_earliest_retry_when_none_is_eligible),
        cmocka_unit_test(ll_equal_load_spreads_30000_picks_within_5_percent),
        cmocka_unit_test(ll_equal_nodes_stay_balanced_under_their_own_load),
        cmocka_unit_test(ll_of_two_candidates_the_lower_score_always_wins),
        cmocka_unit_test(ll_score_is_latency_times_calls_in_flight_plus_one),
        cmocka_unit_test(ll_a_node_with_many_calls_in_flight_gets_fewer_picks),
        cmocka_unit_test(ll_a_10x_slower_node_gets_under_10_percent_not_a_third),
        cmocka_unit_test(ll_latency_within_twice_the_median_is_noise_not_load),
        cmocka_unit_test(ll_a_node_without_a_sample_counts_as_the_median_one),
        cmocka_unit_test(ll_a_new_node_is_neither_starved_nor_flooded),
        cmocka_unit_test(ll_weights_divide_the_score),
        cmocka_unit_test(ll_an_idle_nodes_old_peak_decays_so_it_is_tried_again),
        cmocka_unit_test(ll_ignores_the_key_and_a_seed_reproduces_the_picks),
        cmocka_unit_test(ll_stable_under_node_churn),
        cmocka_unit_test(ewma_takes_a_peak_at_once_and_decays_a_drop_over_seconds),
    };
    return cmocka_run_group_tests_name("router_least_loaded", tests, NULL, NULL);
}
