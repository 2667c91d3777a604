/* Unit tests for src/router/lru.c: the bounded, sliding-TTL pin cache, on a
 * fake clock. ASan checks that create/destroy and every path leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "skyrelay/lru.h"

static bool has(struct sr_lru *l, uint64_t key, int64_t now, uint64_t want)
{
    uint64_t v = ~want;
    if (!sr_lru_get(l, key, now, &v)) return false;
    assert_true(v == want);
    return true;
}

static void lru_get_returns_what_put_stored(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    uint64_t v = 7;
    (void)state;
    assert_non_null(l);
    assert_false(sr_lru_get(l, 1, 0, &v));
    assert_true(v == 7); /* untouched on a miss */
    sr_lru_put(l, 1, 100, 0);
    sr_lru_put(l, 0, 200, 0); /* key 0 is a key like any other */
    sr_lru_put(l, UINT64_MAX, 300, 0);
    assert_true(has(l, 1, 10, 100));
    assert_true(has(l, 0, 10, 200));
    assert_true(has(l, UINT64_MAX, 10, 300));
    assert_false(has(l, 2, 10, 0));
    assert_int_equal(sr_lru_size(l), 3);
    sr_lru_destroy(l);
}

static void lru_put_on_an_existing_key_replaces_its_value(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    (void)state;
    sr_lru_put(l, 9, 1, 0);
    sr_lru_put(l, 9, 2, 5);
    assert_int_equal(sr_lru_size(l), 1);
    assert_true(has(l, 9, 6, 2));
    sr_lru_destroy(l);
}

static void lru_full_evicts_the_least_recently_used(void **state)
{
    struct sr_lru *l = sr_lru_create(3, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 0);
    sr_lru_put(l, 2, 20, 1);
    sr_lru_put(l, 3, 30, 2);
    assert_true(has(l, 1, 3, 10)); /* 1 is now the most recent; 2 the least */
    sr_lru_put(l, 4, 40, 4);
    assert_int_equal(sr_lru_size(l), 3);
    assert_false(has(l, 2, 5, 20));
    assert_true(has(l, 1, 5, 10));
    assert_true(has(l, 3, 5, 30));
    assert_true(has(l, 4, 5, 40));
    /* a put on an existing key also counts as a use */
    sr_lru_put(l, 1, 11, 6); /* order, least recent first: 3 4 1 */
    sr_lru_put(l, 5, 50, 7);
    assert_false(has(l, 3, 8, 30));
    assert_true(has(l, 1, 8, 11));
    sr_lru_destroy(l);
}

static void lru_never_holds_more_than_its_capacity(void **state)
{
    struct sr_lru *l = sr_lru_create(100, 1000000);
    (void)state;
    for (uint64_t k = 0; k < 1000; k++) {
        sr_lru_put(l, k * 0x10000, k, (int64_t)k);
        assert_true(sr_lru_size(l) <= 100);
    }
    assert_int_equal(sr_lru_size(l), 100);
    for (uint64_t k = 0; k < 900; k++) assert_false(has(l, k * 0x10000, 1000, k));
    for (uint64_t k = 900; k < 1000; k++) assert_true(has(l, k * 0x10000, 1000, k));
    sr_lru_destroy(l);
}

static void lru_get_after_the_ttl_misses_and_drops_the_entry(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 5000);
    sr_lru_put(l, 2, 20, 5000);
    assert_true(has(l, 1, 5999, 10)); /* 999 ms after its last use: live */
    assert_false(has(l, 2, 6000, 20)); /* exactly ttl after its last use: gone */
    assert_int_equal(sr_lru_size(l), 1);
    assert_false(has(l, 2, 6000, 20));
    sr_lru_destroy(l);
}

static void lru_ttl_slides_with_every_get(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 0);
    /* used every 900 ms, the entry outlives its first TTL many times over */
    for (int64_t t = 900; t <= 9000; t += 900) assert_true(has(l, 1, t, 10));
    assert_true(has(l, 1, 9999, 10));
    assert_false(has(l, 1, 9999 + 1000, 10));
    sr_lru_destroy(l);
}

static void lru_ttl_restarts_on_put_of_an_existing_key(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 0);
    sr_lru_put(l, 1, 11, 800);
    assert_true(has(l, 1, 1700, 11));
    sr_lru_destroy(l);
}

static void lru_put_reclaims_expired_entries_before_evicting_live_ones(void **state)
{
    struct sr_lru *l = sr_lru_create(3, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 0);
    sr_lru_put(l, 2, 20, 0);
    sr_lru_put(l, 3, 30, 900);
    sr_lru_put(l, 4, 40, 1500); /* 1 and 2 expired at 1000: both go, 3 stays */
    assert_int_equal(sr_lru_size(l), 2);
    assert_true(has(l, 3, 1500, 30));
    assert_true(has(l, 4, 1500, 40));
    sr_lru_destroy(l);
}

static void lru_remove_forgets_a_key(void **state)
{
    struct sr_lru *l = sr_lru_create(4, 1000);
    (void)state;
    sr_lru_put(l, 1, 10, 0);
    sr_lru_put(l, 2, 20, 0);
    assert_true(sr_lru_remove(l, 1));
    assert_false(sr_lru_remove(l, 1));
    assert_false(has(l, 1, 0, 10));
    assert_true(has(l, 2, 0, 20));
    assert_int_equal(sr_lru_size(l), 1);
    /* the freed slot is reused: three more fill it to 4 without evicting 2 */
    for (uint64_t k = 10; k < 13; k++) sr_lru_put(l, k, k, 1);
    assert_int_equal(sr_lru_size(l), 4);
    assert_true(has(l, 2, 2, 20));
    sr_lru_destroy(l);
}

static void lru_zero_arguments_mean_5000_keys_and_180_seconds(void **state)
{
    struct sr_lru *l = sr_lru_create(0, 0);
    (void)state;
    assert_non_null(l);
    assert_int_equal(sr_lru_capacity(l), 5000);
    assert_int_equal(sr_lru_ttl_ms(l), 180000);
    for (uint64_t k = 0; k <= 5000; k++) sr_lru_put(l, k, k + 1, 0);
    assert_int_equal(sr_lru_size(l), 5000);
    assert_false(has(l, 0, 0, 1)); /* the 5001st put evicted the first */
    assert_true(has(l, 1, 179999, 2));
    assert_false(has(l, 2, 180000, 3));
    sr_lru_destroy(l);
}

static void lru_rejects_a_capacity_beyond_the_maximum(void **state)
{
    (void)state;
    assert_null(sr_lru_create(SR_LRU_MAX_SIZE + 1, 1000));
    sr_lru_destroy(NULL); /* a no-op, like free */
}

static void lru_keys_colliding_in_a_bucket_stay_distinct(void **state)
{
    /* 64 keys in 128 buckets share some buckets (birthday bound: ~15 pairs);
     * every third one is removed, from the head, middle or tail of a chain */
    struct sr_lru *l = sr_lru_create(64, 1000000);
    (void)state;
    for (uint64_t k = 0; k < 64; k++) sr_lru_put(l, k, k * 3, 0);
    for (uint64_t k = 0; k < 64; k += 3) assert_true(sr_lru_remove(l, k));
    for (uint64_t k = 0; k < 64; k++) assert_true(has(l, k, 1, k * 3) == (k % 3 != 0));
    sr_lru_destroy(l);
}

static void lru_move_keeps_entries_their_times_and_order(void **state)
{
    struct sr_lru *src = sr_lru_create(4, 1000000);
    struct sr_lru *dst = sr_lru_create(3, 1000000);
    (void)state;
    sr_lru_put(src, 1, 10, 0);
    sr_lru_put(src, 2, 20, 100);
    sr_lru_put(src, 3, 30, 200);
    sr_lru_put(src, 4, 40, 300);
    sr_lru_move(dst, src);
    assert_int_equal(sr_lru_size(src), 0);
    assert_false(has(src, 4, 300, 40));
    /* dst holds 3: the least recent (1) did not fit */
    assert_int_equal(sr_lru_size(dst), 3);
    assert_false(has(dst, 1, 300, 10));
    /* recency came along: 2 is the least recent, so a new key evicts it */
    sr_lru_put(dst, 5, 50, 400);
    assert_false(has(dst, 2, 400, 20));
    /* and last-use times: 3 is live until 200 + ttl, 4 expires at 300 + ttl */
    assert_true(has(dst, 3, 1000199, 30));
    assert_false(has(dst, 4, 1000300, 40));
    sr_lru_destroy(src);
    sr_lru_destroy(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lru_get_returns_what_put_stored),
        cmocka_unit_test(lru_put_on_an_existing_key_replaces_its_value),
        cmocka_unit_test(lru_full_evicts_the_least_recently_used),
        cmocka_unit_test(lru_never_holds_more_than_its_capacity),
        cmocka_unit_test(lru_get_after_the_ttl_misses_and_drops_the_entry),
        cmocka_unit_test(lru_ttl_slides_with_every_get),
        cmocka_unit_test(lru_ttl_restarts_on_put_of_an_existing_key),
        cmocka_unit_test(lru_put_reclaims_expired_entries_before_evicting_live_ones),
        cmocka_unit_test(lru_remove_forgets_a_key),
        cmocka_unit_test(lru_zero_arguments_mean_5000_keys_and_180_seconds),
        cmocka_unit_test(lru_rejects_a_capacity_beyond_the_maximum),
        cmocka_unit_test(lru_keys_colliding_in_a_bucket_stay_distinct),
        cmocka_unit_test(lru_move_keeps_entries_their_times_and_order),
    };
    return cmocka_run_group_tests_name("lru", tests, NULL, NULL);
}
