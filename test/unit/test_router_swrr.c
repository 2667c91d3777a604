/* Unit tests for src/router/swrr.c (smooth weighted round-robin) and the
 * registry in src/router/router.c, on a hand-built upstream (no channels, no
 * gRPC) and a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/router.h"

#define MAX_NODES 8

struct fixture {
    struct sr_node nodes[MAX_NODES];
    struct sr_upstream up;
    struct sr_balancer *b;
};

static void fixture_init(struct fixture *f, const uint32_t *weights, size_t n)
{
    static char *names[] = {"oap-0:11800", "oap-1:11800", "oap-2:11800", "oap-3:11800",
                            "oap-4:11800", "oap-5:11800", "oap-6:11800", "oap-7:11800"};
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f->nodes[i].address = names[i];
        f->nodes[i].weight = weights[i];
        f->nodes[i].index = (uint32_t)i;
        atomic_store(&f->nodes[i].down_until_ms, 0);
    }
    f->up.nodes = f->nodes;
    f->up.n_nodes = n;
    f->b = sr_balancer_weighted_round_robin.create(&f->up, NULL);
    assert_non_null(f->b);
}

static void fixture_deinit(struct fixture *f)
{
    f->b->type->destroy(f->b);
}

static int pick_index(struct fixture *f, uint64_t tried, int64_t now)
{
    int64_t retry = 12345;
    struct sr_node *n = f->b->type->pick(f->b, 0, tried, now, &retry);
    if (!n) return -1;
    assert_true(n >= f->nodes && n < f->nodes + f->up.n_nodes);
    return (int)(n - f->nodes);
}

/* The picks as letters, node 0 = 'a'. */
static void pick_string(struct fixture *f, char *out, size_t picks, uint64_t tried, int64_t now)
{
    for (size_t i = 0; i < picks; i++) {
        int k = pick_index(f, tried, now);
        out[i] = k < 0 ? '-' : (char)('a' + k);
    }
    out[picks] = '\0';
}

static void count_picks(struct fixture *f, unsigned *count, size_t picks, uint64_t tried,
                        int64_t now)
{
    memset(count, 0, MAX_NODES * sizeof(*count));
    for (size_t i = 0; i < picks; i++) {
        int k = pick_index(f, tried, now);
        assert_true(k >= 0);
        count[k]++;
    }
}

static void set_down(struct fixture *f, size_t i, int64_t until)
{
    atomic_store(&f->nodes[i].down_until_ms, until);
}

/* Passes if |got - want| <= slack. */
static void assert_near(unsigned got, unsigned want, unsigned slack)
{
    if (got + slack < want || got > want + slack)
        fail_msg("got %u, want %u +- %u", got, want, slack);
}

static void swrr_create_binds_type_and_upstream(void **state)
{
    static const uint32_t w[] = {1, 2};
    struct fixture f;
    (void)state;
    fixture_init(&f, w, 2);
    assert_ptr_equal(f.b->type, &sr_balancer_weighted_round_robin);
    assert_ptr_equal(f.b->up, &f.up);
    fixture_deinit(&f);
}

static void swrr_interleaves_5_1_1_as_aabacaa(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    char got[15];
    (void)state;
    fixture_init(&f, w, 3);
    pick_string(&f, got, 14, 0, 0);
    assert_string_equal(got, "aabacaa" "aabacaa");
    fixture_deinit(&f);
}

static void swrr_7000_picks_of_5_1_1_are_exactly_5000_1000_1000(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    count_picks(&f, c, 7000, 0, 0);
    assert_int_equal(c[0], 5000);
    assert_int_equal(c[1], 1000);
    assert_int_equal(c[2], 1000);
    fixture_deinit(&f);
}

static void swrr_6000_picks_of_3_2_1_are_exactly_3000_2000_1000(void **state)
{
    static const uint32_t w[] = {3, 2, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    char got[7];
    (void)state;
    fixture_init(&f, w, 3);
    pick_string(&f, got, 6, 0, 0);
    assert_string_equal(got, "abacba"); /* spread out, not aaabbc */
    count_picks(&f, c, 6000, 0, 0);
    assert_int_equal(c[0], 3000);
    assert_int_equal(c[1], 2000);
    assert_int_equal(c[2], 1000);
    fixture_deinit(&f);
}

static void swrr_equal_weights_are_plain_round_robin(void **state)
{
    static const uint32_t w[] = {4, 4, 4};
    struct fixture f;
    char got[10];
    (void)state;
    fixture_init(&f, w, 3);
    pick_string(&f, got, 9, 0, 0);
    assert_string_equal(got, "abcabcabc");
    fixture_deinit(&f);
}

static void swrr_skips_a_down_node_and_keeps_the_others_in_proportion(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    set_down(&f, 2, 100000);
    count_picks(&f, c, 6000, 0, 1000);
    assert_int_equal(c[0], 5000);
    assert_int_equal(c[1], 1000);
    assert_int_equal(c[2], 0);
    /* the heavy node down: the two light ones share evenly */
    set_down(&f, 2, 0);
    set_down(&f, 0, 100000);
    count_picks(&f, c, 2000, 0, 1000);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 1000);
    assert_int_equal(c[2], 1000);
    /* back up at its down_until: 5:1:1 again, up to the carried-over state */
    count_picks(&f, c, 7000, 0, 100000);
    assert_near(c[0], 5000, 1);
    assert_near(c[1], 1000, 1);
    assert_near(c[2], 1000, 1);
    fixture_deinit(&f);
}

static void swrr_never_picks_a_tried_node(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    /* a retried batch whose heavy node failed goes to the light ones, evenly */
    count_picks(&f, c, 100, sr_node_bit(&f.nodes[0]), 0);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 50);
    assert_int_equal(c[2], 50);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]), 0), 2);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]), 0), 0);
    fixture_deinit(&f);
}

static void swrr_returns_null_when_every_node_is_tried(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    uint64_t all;
    (void)state;
    fixture_init(&f, w, 3);
    all = sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]);
    assert_int_equal(pick_index(&f, all, 0), -1);
    set_down(&f, 0, 500); /* a down node does not make up for tried ones */
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]), 0), -1);
    fixture_deinit(&f);
}

static void swrr_returns_null_and_earliest_retry_when_all_down(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    int64_t retry = 0;
    (void)state;
    fixture_init(&f, w, 3);
    set_down(&f, 0, 5000);
    set_down(&f, 1, 3000);
    set_down(&f, 2, 4000);
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == 3000);
    assert_int_equal(pick_index(&f, 0, 3000), 1);
    assert_int_equal(pick_index(&f, 0, 3999), 1);
    fixture_deinit(&f);
}

static void swrr_with_no_nodes_returns_null_and_unknown_retry(void **state)
{
    struct fixture f;
    int64_t retry = 0;
    (void)state;
    fixture_init(&f, NULL, 0);
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == INT64_MAX);
    fixture_deinit(&f);
}

static void swrr_failure_lowers_the_share_and_successes_restore_it(void **state)
{
    static const uint32_t w[] = {8, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    count_picks(&f, c, 1000, 0, 0);
    assert_int_equal(c[0], 800);
    /* each failure costs max(1, 8 / 4) = 2: effective weight 8 -> 4 */
    sr_balancer_report(f.b, &f.nodes[0], false);
    sr_balancer_report(f.b, &f.nodes[0], false);
    count_picks(&f, c, 600, 0, 0); /* 4:1:1 */
    assert_near(c[0], 400, 1);
    assert_near(c[1], 100, 1);
    assert_near(c[2], 100, 1);
    /* each success gives back 1 */
    sr_balancer_report(f.b, &f.nodes[0], true);
    sr_balancer_report(f.b, &f.nodes[0], true);
    count_picks(&f, c, 800, 0, 0); /* 6:1:1 */
    assert_near(c[0], 600, 1);
    sr_balancer_report(f.b, &f.nodes[0], true);
    sr_balancer_report(f.b, &f.nodes[0], true);
    count_picks(&f, c, 1000, 0, 0); /* 8:1:1: full weight again */
    assert_near(c[0], 800, 1);
    assert_near(c[1], 100, 1);
    /* and not beyond the configured weight */
    for (int i = 0; i < 10; i++) sr_balancer_report(f.b, &f.nodes[0], true);
    count_picks(&f, c, 1000, 0, 0);
    assert_near(c[0], 800, 1);
    fixture_deinit(&f);
}

static void swrr_repeated_failures_leave_a_node_a_trickle_not_nothing(void **state)
{
    static const uint32_t w[] = {8, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    for (int i = 0; i < 20; i++) sr_balancer_report(f.b, &f.nodes[0], false);
    count_picks(&f, c, 300, 0, 0); /* floor 1: 1:1:1 */
    assert_near(c[0], 100, 1);
    assert_near(c[1], 100, 1);
    /* a weight-1 node cannot go lower: its failures change nothing */
    sr_balancer_report(f.b, &f.nodes[1], false);
    count_picks(&f, c, 300, 0, 0);
    assert_near(c[1], 100, 1);
    fixture_deinit(&f);
}

static void swrr_failure_cost_is_a_quarter_of_a_large_weight(void **state)
{
    static const uint32_t w[] = {100, 100};
    struct fixture f;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 2);
    sr_balancer_report(f.b, &f.nodes[0], false); /* 100 -> 75 */
    count_picks(&f, c, 1750, 0, 0);
    assert_near(c[0], 750, 1);
    assert_near(c[1], 1000, 1);
    fixture_deinit(&f);
}

static void swrr_reports_only_shape_their_own_instance(void **state)
{
    static const uint32_t w[] = {8, 1, 1};
    struct fixture f;
    unsigned c[MAX_NODES];
    struct sr_balancer *other;
    (void)state;
    fixture_init(&f, w, 3);
    other = sr_balancer_weighted_round_robin.create(&f.up, NULL);
    assert_non_null(other);
    for (int i = 0; i < 4; i++) sr_balancer_report(other, &f.nodes[0], false);
    count_picks(&f, c, 1000, 0, 0);
    assert_int_equal(c[0], 800);
    other->type->destroy(other);
    fixture_deinit(&f);
}

static void swrr_ignores_reports_about_nodes_of_another_set(void **state)
{
    static const uint32_t w[] = {8, 1, 1};
    struct fixture f, g;
    unsigned c[MAX_NODES];
    (void)state;
    fixture_init(&f, w, 3);
    fixture_init(&g, w, 3);
    for (int i = 0; i < 4; i++) sr_balancer_report(f.b, &g.nodes[0], false);
    count_picks(&f, c, 1000, 0, 0);
    assert_int_equal(c[0], 800);
    fixture_deinit(&g);
    fixture_deinit(&f);
}

static void swrr_ignores_the_key(void **state)
{
    static const uint32_t w[] = {5, 1, 1};
    struct fixture f;
    char got[8];
    int64_t retry;
    (void)state;
    fixture_init(&f, w, 3);
    for (int i = 0; i < 7; i++) {
        struct sr_node *n = f.b->type->pick(f.b, 0x9e3779b9ULL * (uint64_t)i, 0, 0, &retry);
        got[i] = (char)('a' + (n - f.nodes));
    }
    got[7] = '\0';
    assert_string_equal(got, "aabacaa");
    fixture_deinit(&f);
}

static void balancer_find_knows_all_three_balancers(void **state)
{
    (void)state;
    assert_ptr_equal(sr_balancer_find("round_robin"), &sr_balancer_round_robin);
    assert_ptr_equal(sr_balancer_find("weighted_round_robin"), &sr_balancer_weighted_round_robin);
    assert_ptr_equal(sr_balancer_find("fixed"), &sr_balancer_fixed);
    assert_string_equal(sr_balancer_weighted_round_robin.name, "weighted_round_robin");
    assert_string_equal(sr_balancer_fixed.name, "fixed");
    assert_null(sr_balancer_find("swrr"));
    assert_null(sr_balancer_find("weighted"));
    assert_null(sr_balancer_find("hash"));
}

static void report_is_a_no_op_for_round_robin(void **state)
{
    static const uint32_t w[] = {1, 1};
    struct fixture f;
    int64_t retry;
    struct sr_balancer *rr;
    (void)state;
    fixture_init(&f, w, 2);
    rr = sr_balancer_round_robin.create(&f.up, NULL);
    assert_non_null(rr);
    assert_null(sr_balancer_round_robin.report);
    sr_balancer_report(rr, &f.nodes[0], false);
    assert_ptr_equal(rr->type->pick(rr, 0, 0, 0, &retry), &f.nodes[0]);
    rr->type->destroy(rr);
    fixture_deinit(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swrr_create_binds_type_and_upstream),
        cmocka_unit_test(swrr_interleaves_5_1_1_as_aabacaa),
        cmocka_unit_test(swrr_7000_picks_of_5_1_1_are_exactly_5000_1000_1000),
        cmocka_unit_test(swrr_6000_picks_of_3_2_1_are_exactly_3000_2000_1000),
        cmocka_unit_test(swrr_equal_weights_are_plain_round_robin),
        cmocka_unit_test(swrr_skips_a_down_node_and_keeps_the_others_in_proportion),
        cmocka_unit_test(swrr_never_picks_a_tried_node),
        cmocka_unit_test(swrr_returns_null_when_every_node_is_tried),
        cmocka_unit_test(swrr_returns_null_and_earliest_retry_when_all_down),
        cmocka_unit_test(swrr_with_no_nodes_returns_null_and_unknown_retry),
        cmocka_unit_test(swrr_failure_lowers_the_share_and_successes_restore_it),
        cmocka_unit_test(swrr_repeated_failures_leave_a_node_a_trickle_not_nothing),
        cmocka_unit_test(swrr_failure_cost_is_a_quarter_of_a_large_weight),
        cmocka_unit_test(swrr_reports_only_shape_their_own_instance),
        cmocka_unit_test(swrr_ignores_reports_about_nodes_of_another_set),
        cmocka_unit_test(swrr_ignores_the_key),
        cmocka_unit_test(balancer_find_knows_all_three_balancers),
        cmocka_unit_test(report_is_a_no_op_for_round_robin),
    };
    return cmocka_run_group_tests_name("router_swrr", tests, NULL, NULL);
}
