/* Unit tests for src/upstream/node.c: backoff schedule, node ejection with
 * jitter, recovery, and the xorshift generator. Hand-built nodes, no channels;
 * the clock is passed explicitly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/log.h"
#include "skyrelay/upstream.h"

struct fixture {
    struct sr_node node;
    struct sr_upstream up;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->node.address = "oap-0:11800";
    f->node.weight = 1;
    f->node.index = 0;
    f->up.nodes = &f->node;
    f->up.n_nodes = 1;
    f->up.backoff_initial_ms = 200;
    f->up.backoff_max_ms = 10000;
}

static int64_t down_until(const struct fixture *f)
{
    return atomic_load(&f->node.down_until_ms);
}

static uint32_t failures(const struct fixture *f)
{
    return atomic_load(&f->node.failures);
}

/* ---- sr_backoff_ms ---- */

static void backoff_doubles_from_initial_and_caps_at_max(void **state)
{
    static const uint32_t want[] = {200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
    (void)state;
    for (uint32_t k = 1; k <= sizeof(want) / sizeof(want[0]); k++)
        assert_int_equal(sr_backoff_ms(200, 10000, k), want[k - 1]);
}

static void backoff_for_zero_failures_is_zero(void **state)
{
    (void)state;
    assert_int_equal(sr_backoff_ms(200, 10000, 0), 0);
}

static void backoff_stays_capped_for_huge_failure_counts(void **state)
{
    (void)state;
    assert_int_equal(sr_backoff_ms(200, 10000, 64), 10000);
    assert_int_equal(sr_backoff_ms(200, 10000, 1000), 10000);
    assert_int_equal(sr_backoff_ms(200, 10000, UINT32_MAX), 10000);
    assert_int_equal(sr_backoff_ms(1, UINT32_MAX, 40), UINT32_MAX);
    assert_int_equal(sr_backoff_ms(1, UINT32_MAX, 32), 1U << 31);
}

static void backoff_caps_at_a_max_that_is_not_a_power_of_two_multiple(void **state)
{
    (void)state;
    assert_int_equal(sr_backoff_ms(300, 1000, 1), 300);
    assert_int_equal(sr_backoff_ms(300, 1000, 2), 600);
    assert_int_equal(sr_backoff_ms(300, 1000, 3), 1000);
    /* an initial above the max is capped too */
    assert_int_equal(sr_backoff_ms(5000, 1000, 1), 1000);
}

/* ---- sr_node_report ---- */

static void failure_ejects_node_for_backoff_within_20_percent(void **state)
{
    int64_t seen_min = INT64_MAX, seen_max = INT64_MIN;
    (void)state;
    for (uint64_t seed = 1; seed <= 500; seed++) {
        struct fixture f;
        uint64_t rng = seed * 0x9E3779B97F4A7C15ULL;
        fixture_init(&f);
        sr_node_report(&f.up, &f.node, false, 1000000, &rng);
        int64_t d = down_until(&f) - 1000000;
        assert_in_range(d, 160, 240);
        assert_int_equal(failures(&f), 1);
        assert_false(sr_node_is_up(&f.node, 1000000));
        assert_false(sr_node_is_up(&f.node, down_until(&f) - 1));
        assert_true(sr_node_is_up(&f.node, down_until(&f)));
        if (d < seen_min) seen_min = d;
        if (d > seen_max) seen_max = d;
    }
    /* the jitter is real: both sides of the nominal 200 ms are drawn */
    assert_true(seen_min < 200);
    assert_true(seen_max > 200);
}

static void consecutive_failures_grow_the_ejection(void **state)
{
    static const int64_t nominal[] = {200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
    struct fixture f;
    uint64_t rng = 42;
    int64_t now = 5000;
    (void)state;
    fixture_init(&f);
    for (uint32_t k = 1; k <= sizeof(nominal) / sizeof(nominal[0]); k++) {
        sr_node_report(&f.up, &f.node, false, now, &rng);
        int64_t d = down_until(&f) - now;
        int64_t j = nominal[k - 1] / 5;
        assert_in_range(d, nominal[k - 1] - j, nominal[k - 1] + j);
        assert_int_equal(failures(&f), k);
        now = down_until(&f); /* the retry happens when the node comes back */
    }
}

static void success_resets_failures_and_down_until(void **state)
{
    struct fixture f;
    uint64_t rng = 7;
    (void)state;
    fixture_init(&f);
    sr_node_report(&f.up, &f.node, false, 1000, &rng);
    sr_node_report(&f.up, &f.node, false, 1000, &rng);
    sr_node_report(&f.up, &f.node, false, 1000, &rng);
    assert_int_equal(failures(&f), 3);
    assert_true(down_until(&f) > 1000);
    sr_node_report(&f.up, &f.node, true, 1100, &rng);
    assert_int_equal(failures(&f), 0);
    assert_true(down_until(&f) == 0);
    assert_true(sr_node_is_up(&f.node, 1100));
    /* the next failure starts the schedule over */
    sr_node_report(&f.up, &f.node, false, 2000, &rng);
    assert_int_equal(failures(&f), 1);
    assert_in_range(down_until(&f) - 2000, 160, 240);
}

static void success_on_a_healthy_node_changes_nothing(void **state)
{
    struct fixture f;
    uint64_t rng = 7;
    (void)state;
    fixture_init(&f);
    sr_node_report(&f.up, &f.node, true, 1000, &rng);
    assert_int_equal(failures(&f), 0);
    assert_true(down_until(&f) == 0);
    assert_true(rng == 7); /* no random draw on success */
}

static void failure_never_shortens_a_longer_ejection(void **state)
{
    struct fixture f;
    uint64_t rng = 99;
    (void)state;
    fixture_init(&f);
    /* another worker already ejected the node for longer */
    atomic_store(&f.node.down_until_ms, 1000000);
    sr_node_report(&f.up, &f.node, false, 1000, &rng);
    assert_true(down_until(&f) == 1000000);
    assert_int_equal(failures(&f), 1);
}

static void failure_with_zero_backoff_config_keeps_node_up(void **state)
{
    struct fixture f;
    uint64_t rng = 5;
    (void)state;
    fixture_init(&f);
    f.up.backoff_initial_ms = 0;
    f.up.backoff_max_ms = 0;
    sr_node_report(&f.up, &f.node, false, 1000, &rng);
    assert_true(down_until(&f) == 1000);
    assert_true(sr_node_is_up(&f.node, 1000));
}

static void failure_jitter_is_deterministic_for_a_seed(void **state)
{
    struct fixture a, b;
    uint64_t ra = 12345, rb = 12345;
    (void)state;
    fixture_init(&a);
    fixture_init(&b);
    for (int i = 0; i < 5; i++) {
        sr_node_report(&a.up, &a.node, false, 1000 * i, &ra);
        sr_node_report(&b.up, &b.node, false, 1000 * i, &rb);
        assert_true(down_until(&a) == down_until(&b));
    }
}

/* ---- sr_rand64 ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void rand64_yields_nonzero_distinct_values_and_state(void **state)
{
    enum { N = 4096 };
    uint64_t *v = malloc(N * sizeof(*v));
    uint64_t s = 1;
    int high = 0;
    (void)state;
    assert_non_null(v);
    for (int i = 0; i < N; i++) {
        v[i] = sr_rand64(&s);
        assert_true(v[i] != 0);
        assert_true(s != 0);
        if (v[i] >> 63) high++;
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    for (int i = 1; i < N; i++) assert_true(v[i] != v[i - 1]);
    /* the top bit is set about half of the time */
    assert_in_range(high, N / 2 - N / 8, N / 2 + N / 8);
    free(v);
}

static void rand64_is_reproducible_from_a_seed(void **state)
{
    uint64_t a = 0xdeadbeef, b = 0xdeadbeef, c = 0xdeadbef0;
    int differs = 0;
    (void)state;
    for (int i = 0; i < 100; i++) {
        uint64_t x = sr_rand64(&a), y = sr_rand64(&b), z = sr_rand64(&c);
        assert_true(x == y);
        if (x != z) differs++;
    }
    assert_true(differs > 90);
}

static int group_setup(void **state)
{
    (void)state;
    sr_log_level = SR_LOG_ERROR; /* node reports log at INFO/WARN */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_from_initial_and_caps_at_max),
        cmocka_unit_test(backoff_for_zero_failures_is_zero),
        cmocka_unit_test(backoff_stays_capped_for_huge_failure_counts),
        cmocka_unit_test(backoff_caps_at_a_max_that_is_not_a_power_of_two_multiple),
        cmocka_unit_test(failure_ejects_node_for_backoff_within_20_percent),
        cmocka_unit_test(consecutive_failures_grow_the_ejection),
        cmocka_unit_test(success_resets_failures_and_down_until),
        cmocka_unit_test(success_on_a_healthy_node_changes_nothing),
        cmocka_unit_test(failure_never_shortens_a_longer_ejection),
        cmocka_unit_test(failure_with_zero_backoff_config_keeps_node_up),
        cmocka_unit_test(failure_jitter_is_deterministic_for_a_seed),
        cmocka_unit_test(rand64_yields_nonzero_distinct_values_and_state),
        cmocka_unit_test(rand64_is_reproducible_from_a_seed),
    };
    return cmocka_run_group_tests_name("backoff", tests, group_setup, NULL);
}
