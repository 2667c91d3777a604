/* Unit tests for sr_upstream_apply (src/upstream/node.c): applying a new
 * node list to the slots of a live node set.
 *
 * apply creates a real gRPC channel for every new node (new_channel), so the
 * group runs between grpc_init and grpc_shutdown; the addresses are
 * 127.0.0.1 ports nobody listens on, and no call is ever made on them. The
 * clock is the now_ms argument: no sleeping. Under ASan: a retired address
 * string read after its slot was reused is a use-after-free, and whatever
 * sr_upstream_deinit does not free is a leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/log.h"
#include "skyrelay/upstream.h"
#include "unit_grpc.h"

#define REUSE_MS 60000 /* a gone slot may take another address this long after it left */

/* Node "A".."H" is 127.0.0.1:1990x. */
static const char *addr(char name)
{
    static char buf[8][24];
    int i = name - 'A';
    assert_true(i >= 0 && i < 8);
    snprintf(buf[i], sizeof(buf[i]), "127.0.0.1:%d", 19901 + i);
    return buf[i];
}

/* Applies a list written "A B#3 C" (a letter per node, an optional
 * #weight; "" for the empty list) at now_ms. Returns the number of changes. */
static size_t apply(struct sr_upstream *up, const char *list, int64_t now_ms)
{
    struct sr_node_config nodes[16];
    size_t n = 0;

    for (const char *p = list; *p; p++) {
        if (*p == ' ') continue;
        assert_true(n < 16);
        nodes[n].address = (char *)addr(*p);
        nodes[n].weight = 1;
        if (p[1] == '#') {
            nodes[n].weight = (uint32_t)strtoul(p + 2, NULL, 10);
            p += 2;
            while (p[1] >= '0' && p[1] <= '9') p++;
        }
        n++;
    }
    return sr_upstream_apply(up, nodes, n, now_ms);
}

static void up_init(struct sr_upstream *up)
{
    memset(up, 0, sizeof(*up));
    up->nodes = calloc(SR_MAX_NODES, sizeof(*up->nodes));
    assert_non_null(up->nodes);
    up->backoff_initial_ms = 200;
    up->backoff_max_ms = 10000;
    up->max_recv = 4 << 20;
}

static struct sr_node *slot_of(struct sr_upstream *up, char name)
{
    for (size_t i = 0; i < up->n_nodes; i++)
        if (up->nodes[i].address && strcmp(up->nodes[i].address, addr(name)) == 0)
            return &up->nodes[i];
    fail_msg("%s has no slot", addr(name));
    return NULL;
}

static uint64_t gen(struct sr_upstream *up)
{
    return atomic_load(&up->gen);
}

static size_t present(struct sr_upstream *up)
{
    size_t k = 0;
    for (size_t i = 0; i < up->n_nodes; i++) k += sr_node_present(&up->nodes[i]);
    assert_int_equal(atomic_load(&up->present), k);
    return k;
}

static int group_setup(void **state)
{
    sr_log_level = SR_LOG_ERROR; /* the joins and leaves are logged at info */
    return sr_test_grpc_setup(state);
}

static void apply_to_an_empty_set_adds_every_node_in_list_order(void **state)
{
    struct sr_upstream up;
    (void)state;
    up_init(&up);
    assert_int_equal(apply(&up, "A B#3 C", 0), 3);
    assert_int_equal(up.n_nodes, 3);
    assert_int_equal(present(&up), 3);
    assert_true(gen(&up) == 1);
    for (size_t i = 0; i < 3; i++) {
        struct sr_node *n = &up.nodes[i];
        assert_string_equal(n->address, addr((char)('A' + i)));
        assert_int_equal(n->index, i);
        assert_non_null(n->channel);
        assert_true(sr_node_present(n));
        assert_true(sr_node_is_up(n, 0));
    }
    assert_int_equal(up.nodes[0].weight, 1);
    assert_int_equal(up.nodes[1].weight, 3);
    assert_int_equal(up.nodes[2].weight, 1);
    sr_upstream_deinit(&up);
}

static void the_same_list_in_any_order_changes_nothing(void **state)
{
    struct sr_upstream up;
    (void)state;
    up_init(&up);
    apply(&up, "A B C", 0);
    assert_int_equal(apply(&up, "A B C", 1000), 0);
    assert_true(gen(&up) == 1);
    /* slots never move: a reordered list is the same set */
    assert_int_equal(apply(&up, "C A B", 2000), 0);
    assert_true(gen(&up) == 1);
    assert_int_equal(slot_of(&up, 'A')->index, 0);
    assert_int_equal(slot_of(&up, 'C')->index, 2);
    sr_upstream_deinit(&up);
}

static void a_node_that_stays_keeps_its_slot_health_and_counters(void **state)
{
    struct sr_upstream up;
    struct sr_node *b;
    grpc_channel *ch;
    (void)state;
    up_init(&up);
    apply(&up, "A B C", 0);
    b = slot_of(&up, 'B');
    ch = b->channel;
    atomic_store(&b->failures, 2);
    atomic_store(&b->down_until_ms, 5000);
    atomic_store(&b->sent_events, 700);
    atomic_store(&b->sent_batches, 7);
    atomic_store(&b->failed_calls, 3);
    atomic_store(&b->hedged_events, 11);
    atomic_store(&b->stalls, 1);
    atomic_store(&b->ewma_us, 1234);
    atomic_store(&b->inflight, 2);

    assert_int_equal(apply(&up, "C B D", 1000), 2); /* A leaves, D joins */
    assert_ptr_equal(slot_of(&up, 'B'), b);
    assert_ptr_equal(b->channel, ch);
    assert_int_equal(b->index, 1);
    assert_true(sr_node_present(b));
    assert_int_equal(atomic_load(&b->failures), 2);
    assert_true(atomic_load(&b->down_until_ms) == 5000); /* still ejected */
    assert_false(sr_node_is_up(b, 1000));
    assert_true(atomic_load(&b->sent_events) == 700);
    assert_true(atomic_load(&b->sent_batches) == 7);
    assert_true(atomic_load(&b->failed_calls) == 3);
    assert_true(atomic_load(&b->hedged_events) == 11);
    assert_true(atomic_load(&b->stalls) == 1);
    assert_true(atomic_load(&b->ewma_us) == 1234);
    assert_int_equal(atomic_load(&b->inflight), 2);
    sr_upstream_deinit(&up);
}

static void a_node_that_left_is_marked_gone_and_keeps_its_slot(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    grpc_channel *ch;
    (void)state;
    up_init(&up);
    apply(&up, "A B C", 0);
    a = slot_of(&up, 'A');
    ch = a->channel;
    assert_int_equal(apply(&up, "B C", 5000), 1);
    assert_true(gen(&up) == 2);
    assert_false(sr_node_present(a));
    assert_false(sr_node_is_up(a, 5000));
    assert_true(a->gone_since_ms == 5000);
    /* the slot, its address and its channel stay until the slot is reused */
    assert_int_equal(up.n_nodes, 3);
    assert_string_equal(a->address, addr('A'));
    assert_ptr_equal(a->channel, ch);
    assert_int_equal(present(&up), 2);
    /* leaving again is no change */
    assert_int_equal(apply(&up, "B C", 6000), 0);
    assert_true(a->gone_since_ms == 5000);
    assert_true(gen(&up) == 2);
    sr_upstream_deinit(&up);
}

static void a_gone_slot_is_not_reused_before_60_s(void **state)
{
    struct sr_upstream up;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    apply(&up, "B", 1000);
    assert_int_equal(apply(&up, "B D", 1000 + REUSE_MS - 1), 1);
    assert_int_equal(up.n_nodes, 3);
    assert_string_equal(up.nodes[0].address, addr('A'));
    assert_false(sr_node_present(&up.nodes[0]));
    assert_int_equal(slot_of(&up, 'D')->index, 2);
    sr_upstream_deinit(&up);
}

static void a_gone_slot_is_reused_after_60_s_with_fresh_health_and_counters(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    (void)state;
    up_init(&up);
    apply(&up, "A#5 B", 0);
    a = slot_of(&up, 'A');
    atomic_store(&a->failures, 4);
    atomic_store(&a->down_until_ms, 999999);
    atomic_store(&a->sent_events, 100);
    atomic_store(&a->sent_batches, 10);
    atomic_store(&a->failed_calls, 4);
    atomic_store(&a->stalled, 1);
    atomic_store(&a->stalled_at_ms, 900);
    atomic_store(&a->hedged_events, 9);
    atomic_store(&a->poison_events, 8);
    atomic_store(&a->stalls, 2);
    atomic_store(&a->ewma_us, 5000);
    apply(&up, "B", 1000);
    assert_int_equal(apply(&up, "B D", 1000 + REUSE_MS), 1);
    assert_true(gen(&up) == 3);
    assert_int_equal(up.n_nodes, 2); /* no new slot */
    assert_ptr_equal(slot_of(&up, 'D'), a);
    assert_int_equal(a->index, 0);
    assert_int_equal(a->weight, 1);
    assert_non_null(a->channel);
    assert_true(sr_node_present(a));
    assert_true(sr_node_is_up(a, 1000 + REUSE_MS));
    assert_int_equal(atomic_load(&a->failures), 0);
    assert_true(atomic_load(&a->down_until_ms) == 0);
    assert_true(atomic_load(&a->sent_events) == 0);
    assert_true(atomic_load(&a->sent_batches) == 0);
    assert_true(atomic_load(&a->failed_calls) == 0);
    assert_int_equal(atomic_load(&a->stalled), 0);
    assert_true(atomic_load(&a->stalled_at_ms) == 0);
    assert_true(atomic_load(&a->hedged_events) == 0);
    assert_true(atomic_load(&a->poison_events) == 0);
    assert_true(atomic_load(&a->stalls) == 0);
    assert_true(atomic_load(&a->ewma_us) == 0);
    assert_int_equal(present(&up), 2);
    sr_upstream_deinit(&up);
}

static void a_gone_slot_with_a_call_in_flight_is_not_reused(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    a = slot_of(&up, 'A');
    apply(&up, "B", 1000);
    atomic_store(&a->inflight, 1); /* a worker still has a call on A's channel */
    assert_int_equal(apply(&up, "B D", 1000 + 10 * REUSE_MS), 1);
    assert_string_equal(a->address, addr('A'));
    assert_int_equal(slot_of(&up, 'D')->index, 2);
    /* the call ended: the next new address takes the slot */
    atomic_store(&a->inflight, 0);
    assert_int_equal(apply(&up, "B D E", 1000 + 10 * REUSE_MS), 1);
    assert_ptr_equal(slot_of(&up, 'E'), a);
    assert_int_equal(up.n_nodes, 3);
    sr_upstream_deinit(&up);
}

static void a_gone_node_that_returns_gets_its_slot_back_with_health_reset(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    grpc_channel *ch;
    uint64_t g;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    a = slot_of(&up, 'A');
    ch = a->channel;
    atomic_store(&a->failures, 3);
    atomic_store(&a->down_until_ms, 90000);
    atomic_store(&a->sent_events, 42);
    apply(&up, "B", 1000);
    g = gen(&up);
    /* back before its slot was taken (even after 60 s) */
    assert_int_equal(apply(&up, "A B", 1000 + 2 * REUSE_MS), 1);
    assert_true(gen(&up) == g + 1);
    assert_int_equal(up.n_nodes, 2);
    assert_ptr_equal(slot_of(&up, 'A'), a);
    assert_ptr_equal(a->channel, ch);
    assert_true(sr_node_present(a));
    assert_true(sr_node_is_up(a, 1000 + 2 * REUSE_MS));
    assert_int_equal(atomic_load(&a->failures), 0);
    assert_true(atomic_load(&a->sent_events) == 42); /* the same node: counters go on */
    sr_upstream_deinit(&up);
}

static void a_weight_change_is_applied_and_bumps_the_generation(void **state)
{
    struct sr_upstream up;
    grpc_channel *ch;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    ch = slot_of(&up, 'A')->channel;
    assert_int_equal(apply(&up, "A#3 B", 1000), 1);
    assert_true(gen(&up) == 2);
    assert_int_equal(slot_of(&up, 'A')->weight, 3);
    assert_ptr_equal(slot_of(&up, 'A')->channel, ch); /* same node, new weight */
    assert_int_equal(apply(&up, "A#3 B", 2000), 0);
    assert_true(gen(&up) == 2);
    /* weight 0 means 1 */
    assert_int_equal(apply(&up, "A#0 B#0", 3000), 1);
    assert_int_equal(slot_of(&up, 'A')->weight, 1);
    assert_int_equal(slot_of(&up, 'B')->weight, 1);
    assert_true(gen(&up) == 3);
    sr_upstream_deinit(&up);
}

static void duplicates_in_the_list_are_ignored(void **state)
{
    struct sr_upstream up;
    (void)state;
    up_init(&up);
    assert_int_equal(apply(&up, "A#2 A#5 B A", 0), 2);
    assert_int_equal(up.n_nodes, 2);
    assert_int_equal(present(&up), 2);
    assert_int_equal(slot_of(&up, 'A')->weight, 2); /* the first listing counts */
    assert_int_equal(apply(&up, "B A#2 B A", 1000), 0); /* A#2 first: the same weight */
    assert_true(gen(&up) == 1);
    assert_int_equal(apply(&up, "A#2 B C C", 2000), 1);
    assert_int_equal(up.n_nodes, 3);
    sr_upstream_deinit(&up);
}

static void an_empty_list_marks_every_node_gone(void **state)
{
    struct sr_upstream up;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    assert_int_equal(apply(&up, "", 1000), 2);
    assert_true(gen(&up) == 2);
    assert_int_equal(present(&up), 0);
    assert_int_equal(up.n_nodes, 2);
    for (size_t i = 0; i < 2; i++) assert_false(sr_node_is_up(&up.nodes[i], 1000));
    assert_int_equal(apply(&up, "", 2000), 0);
    assert_true(gen(&up) == 2);
    sr_upstream_deinit(&up);
}

/* A worker rebuilding its balancers may still read the address of a slot
 * that was just reused: the old string lives until sr_upstream_deinit. */
static void retired_addresses_stay_valid_until_deinit(void **state)
{
    struct sr_upstream up;
    const char *old[3];
    int64_t t = 0;
    (void)state;
    up_init(&up);
    apply(&up, "A", t);
    old[0] = slot_of(&up, 'A')->address;
    apply(&up, "", t += 1000);
    apply(&up, "B", t += REUSE_MS);
    assert_int_equal(up.n_nodes, 1);
    old[1] = up.nodes[0].address;
    apply(&up, "", t += 1000);
    apply(&up, "C", t += REUSE_MS);
    old[2] = up.nodes[0].address;
    assert_int_equal(up.n_nodes, 1);
    assert_string_equal(up.nodes[0].address, addr('C'));
    /* ASan: a freed string is a heap-use-after-free here */
    assert_string_equal(old[0], addr('A'));
    assert_string_equal(old[1], addr('B'));
    assert_string_equal(old[2], addr('C'));
    assert_int_equal(up.n_retired, 2);
    sr_upstream_deinit(&up); /* LSan: every retired string is freed */
}

/* Slots are handed out in order and a node pointer stays valid over many
 * changes: the churn of a rolling restart of 4 nodes, 3 times. */
static void slots_are_stable_over_a_rolling_restart(void **state)
{
    static const char *const rounds[] = {"A B C D", "B C D E", "C D E F",
                                          "D E F G", "E F G H", "F G H A"};
    struct sr_upstream up;
    struct sr_node *nodes;
    int64_t t = 0;
    (void)state;
    up_init(&up);
    nodes = up.nodes;
    for (size_t r = 0; r < sizeof(rounds) / sizeof(rounds[0]); r++) {
        apply(&up, rounds[r], t);
        t += REUSE_MS / 2; /* faster than slots free up */
        assert_ptr_equal(up.nodes, nodes);
        assert_int_equal(present(&up), 4);
        for (const char *p = rounds[r]; *p; p++) {
            struct sr_node *n;
            if (*p == ' ') continue;
            n = slot_of(&up, *p);
            assert_true(sr_node_present(n));
            assert_ptr_equal(&up.nodes[n->index], n);
        }
    }
    /* 8 distinct addresses, slots freed after 60 s: fewer than 9 slots */
    assert_true(up.n_nodes <= 8);
    sr_upstream_deinit(&up);
}

/* A reused slot must not keep the previous node's latency histogram
 * (its latency histogram would show under the new address). */
static void reused_slot_starts_with_an_empty_latency_histogram(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    a = slot_of(&up, 'A');
    sr_node_observe_latency(a, 1500, 0);
    sr_node_observe_latency(a, 2500, 1);
    assert_true(atomic_load(&a->latency.count) == 2);
    apply(&up, "B", 1000);
    apply(&up, "B D", 1000 + REUSE_MS);
    assert_ptr_equal(slot_of(&up, 'D'), a);
    assert_true(atomic_load(&a->latency.count) == 0);
    assert_true(atomic_load(&a->latency.sum_us) == 0);
    for (int b = 0; b < SR_LAT_BUCKETS; b++) assert_true(atomic_load(&a->latency.bucket[b]) == 0);
    sr_upstream_deinit(&up);
}

/* A gone node that comes back in the same list as a new
 * address listed before it keeps its own slot (the new address must not take
 * it because it is free for reuse after 60 s). */
static void returning_node_listed_after_a_new_one_keeps_its_slot(void **state)
{
    struct sr_upstream up;
    struct sr_node *a;
    (void)state;
    up_init(&up);
    apply(&up, "A B", 0);
    a = slot_of(&up, 'A');
    atomic_store(&a->sent_events, 42);
    apply(&up, "B", 1000);
    apply(&up, "D A B", 1000 + REUSE_MS);
    assert_ptr_equal(slot_of(&up, 'A'), a);
    assert_true(atomic_load(&a->sent_events) == 42);
    sr_upstream_deinit(&up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apply_to_an_empty_set_adds_every_node_in_list_order),
        cmocka_unit_test(the_same_list_in_any_order_changes_nothing),
        cmocka_unit_test(a_node_that_stays_keeps_its_slot_health_and_counters),
        cmocka_unit_test(a_node_that_left_is_marked_gone_and_keeps_its_slot),
        cmocka_unit_test(a_gone_slot_is_not_reused_before_60_s),
        cmocka_unit_test(a_gone_slot_is_reused_after_60_s_with_fresh_health_and_counters),
        cmocka_unit_test(a_gone_slot_with_a_call_in_flight_is_not_reused),
        cmocka_unit_test(a_gone_node_that_returns_gets_its_slot_back_with_health_reset),
        cmocka_unit_test(a_weight_change_is_applied_and_bumps_the_generation),
        cmocka_unit_test(duplicates_in_the_list_are_ignored),
        cmocka_unit_test(an_empty_list_marks_every_node_gone),
        cmocka_unit_test(retired_addresses_stay_valid_until_deinit),
        cmocka_unit_test(slots_are_stable_over_a_rolling_restart),
        cmocka_unit_test(reused_slot_starts_with_an_empty_latency_histogram),
        cmocka_unit_test(returning_node_listed_after_a_new_one_keeps_its_slot),
    };
    return cmocka_run_group_tests_name("node_set", tests, group_setup, sr_test_grpc_teardown);
}
