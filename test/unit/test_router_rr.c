/* Unit tests for src/router/round_robin.c and src/router/router.c, on a
 * hand-built upstream (no channels, no gRPC). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/config.h"
#include "skyrelay/router.h"

#define N_NODES 3

struct fixture {
    struct sr_node nodes[8];
    struct sr_upstream up;
    struct sr_balancer *b;
};

static void fixture_init(struct fixture *f, size_t n)
{
    static char *names[] = {"oap-0:11800", "oap-1:11800", "oap-2:11800", "oap-3:11800",
                            "oap-4:11800", "oap-5:11800", "oap-6:11800", "oap-7:11800"};
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f->nodes[i].address = names[i];
        f->nodes[i].weight = 1;
        f->nodes[i].index = (uint32_t)i;
        f->nodes[i].channel = NULL;
        atomic_store(&f->nodes[i].down_until_ms, 0);
    }
    f->up.nodes = f->nodes;
    f->up.n_nodes = n;
    f->up.backoff_initial_ms = 200;
    f->up.backoff_max_ms = 10000;
    f->b = sr_balancer_round_robin.create(&f->up, NULL);
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

static void set_down(struct fixture *f, size_t i, int64_t until)
{
    atomic_store(&f->nodes[i].down_until_ms, until);
}

static void rr_create_binds_type_and_upstream(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    assert_ptr_equal(f.b->type, &sr_balancer_round_robin);
    assert_ptr_equal(f.b->up, &f.up);
    fixture_deinit(&f);
}

static void rr_cycles_nodes_in_order(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    for (int i = 0; i < 9; i++) assert_int_equal(pick_index(&f, 0, 1000), i % N_NODES);
    fixture_deinit(&f);
}

static void rr_ignores_the_key(void **state)
{
    struct fixture f;
    int64_t retry;
    (void)state;
    fixture_init(&f, N_NODES);
    for (int i = 0; i < 6; i++) {
        struct sr_node *n = f.b->type->pick(f.b, 0xfeedULL * (uint64_t)(i % 2), 0, 1000, &retry);
        assert_ptr_equal(n, &f.nodes[i % N_NODES]);
    }
    fixture_deinit(&f);
}

static void rr_skips_down_nodes_until_their_down_until(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    set_down(&f, 1, 2000);
    assert_int_equal(pick_index(&f, 0, 1000), 0);
    assert_int_equal(pick_index(&f, 0, 1000), 2);
    assert_int_equal(pick_index(&f, 0, 1000), 0);
    assert_int_equal(pick_index(&f, 0, 1999), 2);
    /* down_until <= now: up again, and the rotation continues where it was */
    assert_int_equal(pick_index(&f, 0, 2000), 0);
    assert_int_equal(pick_index(&f, 0, 2000), 1);
    assert_int_equal(pick_index(&f, 0, 2000), 2);
    fixture_deinit(&f);
}

static void rr_resumes_after_the_node_it_picked(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, 4);
    assert_int_equal(pick_index(&f, 0, 0), 0);
    set_down(&f, 1, 100);
    set_down(&f, 2, 100);
    assert_int_equal(pick_index(&f, 0, 0), 3);
    assert_int_equal(pick_index(&f, 0, 0), 0);
    assert_int_equal(pick_index(&f, 0, 100), 1); /* back up: next in order after 0 */
    fixture_deinit(&f);
}

static void rr_skips_tried_nodes(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]), 0), 1);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]), 0), 2);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[2]), 0), 0);
    /* a batch retried after node 1 failed goes to a different node */
    uint64_t tried = sr_node_bit(&f.nodes[1]);
    for (int i = 0; i < 6; i++) assert_int_not_equal(pick_index(&f, tried, 0), 1);
    fixture_deinit(&f);
}

static void rr_returns_null_when_every_node_is_tried(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    uint64_t all = sr_node_bit(&f.nodes[0]) | sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]);
    assert_int_equal(pick_index(&f, all, 0), -1);
    /* a tried node that is also down does not help either */
    set_down(&f, 0, 500);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[1]) | sr_node_bit(&f.nodes[2]), 0), -1);
    fixture_deinit(&f);
}

static void rr_returns_null_with_earliest_down_until_when_all_down(void **state)
{
    struct fixture f;
    int64_t retry = 0;
    (void)state;
    fixture_init(&f, N_NODES);
    set_down(&f, 0, 5000);
    set_down(&f, 1, 3000);
    set_down(&f, 2, 4000);
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == 3000);
    assert_true(sr_router_earliest_up(&f.up) == 3000);
    /* at the earliest time, that node is picked */
    assert_int_equal(pick_index(&f, 0, 3000), 1);
    assert_int_equal(pick_index(&f, 0, 3000), 1);
    assert_int_equal(pick_index(&f, 0, 4000), 2);
    fixture_deinit(&f);
}

static void rr_with_no_nodes_returns_null_and_unknown_retry(void **state)
{
    struct fixture f;
    int64_t retry = 0;
    (void)state;
    fixture_init(&f, 0);
    assert_null(f.b->type->pick(f.b, 0, 0, 1000, &retry));
    assert_true(retry == INT64_MAX);
    fixture_deinit(&f);
}

static void rr_single_node_is_picked_every_time(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, 1);
    for (int i = 0; i < 4; i++) assert_int_equal(pick_index(&f, 0, 0), 0);
    assert_int_equal(pick_index(&f, sr_node_bit(&f.nodes[0]), 0), -1);
    fixture_deinit(&f);
}

static void rr_instances_keep_independent_cursors(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, N_NODES);
    struct sr_balancer *other = sr_balancer_round_robin.create(&f.up, NULL);
    int64_t retry;
    assert_non_null(other);
    assert_int_equal(pick_index(&f, 0, 0), 0);
    assert_int_equal(pick_index(&f, 0, 0), 1);
    assert_ptr_equal(other->type->pick(other, 0, 0, 0, &retry), &f.nodes[0]);
    assert_int_equal(pick_index(&f, 0, 0), 2);
    assert_ptr_equal(other->type->pick(other, 0, 0, 0, &retry), &f.nodes[1]);
    other->type->destroy(other);
    fixture_deinit(&f);
}

static void node_bit_wraps_at_64(void **state)
{
    struct sr_node n;
    (void)state;
    memset(&n, 0, sizeof(n));
    n.index = 0;
    assert_true(sr_node_bit(&n) == 1);
    n.index = 63;
    assert_true(sr_node_bit(&n) == 1ULL << 63);
    n.index = 64;
    assert_true(sr_node_bit(&n) == 1);
}

static void earliest_up_is_int64_max_without_nodes_and_min_otherwise(void **state)
{
    struct fixture f;
    (void)state;
    fixture_init(&f, 0);
    assert_true(sr_router_earliest_up(&f.up) == INT64_MAX);
    fixture_deinit(&f);
    fixture_init(&f, N_NODES);
    set_down(&f, 0, 70);
    set_down(&f, 1, 50);
    set_down(&f, 2, 60);
    assert_true(sr_router_earliest_up(&f.up) == 50);
    fixture_deinit(&f);
}

static void balancer_find_knows_round_robin_only(void **state)
{
    (void)state;
    assert_ptr_equal(sr_balancer_find("round_robin"), &sr_balancer_round_robin);
    assert_string_equal(sr_balancer_round_robin.name, "round_robin");
    assert_null(sr_balancer_find("round_robin2"));
    assert_null(sr_balancer_find("round"));
    assert_null(sr_balancer_find("ROUND_ROBIN"));
    assert_null(sr_balancer_find(""));
    assert_null(sr_balancer_find("hash"));
}

/* Every routing policy of the one list (config.h SR_ROUTING_POLICIES) has the balancer
 * whose name is the policy's config name: the config, the enum and the registry agree. */
static void every_routing_policy_has_its_balancer(void **state)
{
    (void)state;
    for (int p = 0; p < SR_ROUTE_COUNT; p++) {
        const struct sr_balancer_type *t = sr_balancer_for_policy(p);
        assert_non_null(t);
        assert_string_equal(t->name, sr_routing_policy_name(p));
        assert_ptr_equal(sr_balancer_find(t->name), t);
    }
    assert_null(sr_balancer_for_policy(SR_ROUTE_COUNT));
    assert_null(sr_balancer_for_policy(-1));
    assert_ptr_equal(sr_balancer_for_policy(SR_ROUTE_FIXED), &sr_balancer_fixed);
    assert_true(sr_balancer_fixed.keyed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_routing_policy_has_its_balancer),
        cmocka_unit_test(rr_create_binds_type_and_upstream),
        cmocka_unit_test(rr_cycles_nodes_in_order),
        cmocka_unit_test(rr_ignores_the_key),
        cmocka_unit_test(rr_skips_down_nodes_until_their_down_until),
        cmocka_unit_test(rr_resumes_after_the_node_it_picked),
        cmocka_unit_test(rr_skips_tried_nodes),
        cmocka_unit_test(rr_returns_null_when_every_node_is_tried),
        cmocka_unit_test(rr_returns_null_with_earliest_down_until_when_all_down),
        cmocka_unit_test(rr_with_no_nodes_returns_null_and_unknown_retry),
        cmocka_unit_test(rr_single_node_is_picked_every_time),
        cmocka_unit_test(rr_instances_keep_independent_cursors),
        cmocka_unit_test(node_bit_wraps_at_64),
        cmocka_unit_test(earliest_up_is_int64_max_without_nodes_and_min_otherwise),
        cmocka_unit_test(balancer_find_knows_round_robin_only),
    };
    return cmocka_run_group_tests_name("router_rr", tests, NULL, NULL);
}
