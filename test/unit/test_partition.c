/* Unit tests for src/queue/partition.c: bounds, batch cutting rules (with a
 * fake clock: every call takes now_ms), out-of-order completion, depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "unit_grpc.h"
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "skyrelay/queue.h"

#define BIG (1ULL << 40)

/* A refcounted (heap) slice of n bytes filled with `fill`, so that a double unref or
 * a leak is caught by ASan. */
static grpc_slice mk(size_t n, uint8_t fill)
{
    grpc_slice s = grpc_slice_malloc_large(n);
    memset(GRPC_SLICE_START_PTR(s), fill, n);
    return s;
}

/* Pushes an event whose body is `bytes` bytes (no prefix). Returns the push result and
 * releases the slice when the push did not take it. */
static int push(struct sr_partition *p, uint32_t bytes, uint8_t tag, int64_t now_ms)
{
    grpc_slice body = mk(bytes, tag);
    int r = sr_partition_push(p, grpc_empty_slice(), body, tag, 1, 0, now_ms);
    if (r != 0) grpc_slice_unref(body);
    return r;
}

static uint64_t depth_events(const struct sr_partition *p)
{
    return atomic_load(&p->depth_events);
}

static uint64_t depth_bytes(const struct sr_partition *p)
{
    return atomic_load(&p->depth_bytes);
}

/* ---- bounds ---- */

static void push_fails_when_event_bound_reached_and_takes_nothing(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 4, BIG, 2), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(push(&p, 100, (uint8_t)i, 0), 0);
    assert_false(sr_partition_has_room(&p, 1));

    grpc_slice prefix = mk(40, 0xee), body = mk(60, 0xff);
    assert_int_equal(sr_partition_push(&p, prefix, body, 9, 1, 0, 0), -1);
    /* still ours: readable and released exactly once below */
    assert_int_equal(GRPC_SLICE_START_PTR(body)[59], 0xff);
    grpc_slice_unref(prefix);
    grpc_slice_unref(body);

    assert_int_equal(depth_events(&p), 4);
    assert_int_equal(depth_bytes(&p), 400);
    assert_int_equal(sr_partition_unbatched(&p), 4);
    sr_partition_deinit(&p);
}

static void event_bound_is_max_events_not_ring_capacity(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 5, BIG, 1), 0); /* ring rounds up to 8 */
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    assert_int_equal(push(&p, 10, 5, 0), -1);
    assert_int_equal(depth_events(&p), 5);
    sr_partition_deinit(&p);
}

static void push_fails_when_byte_bound_would_be_exceeded(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, 100, 2), 0);
    assert_int_equal(push(&p, 60, 1, 0), 0);
    assert_false(sr_partition_has_room(&p, 41));
    assert_int_equal(push(&p, 41, 2, 0), -1);
    assert_true(sr_partition_has_room(&p, 40));
    assert_int_equal(push(&p, 40, 3, 0), 0); /* exactly max_bytes */
    assert_int_equal(push(&p, 1, 4, 0), -1);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 100);
    sr_partition_deinit(&p);
}

static void prefix_bytes_count_toward_the_bound(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, 100, 2), 0);
    assert_int_equal(sr_partition_push(&p, mk(30, 1), mk(30, 2), 7, 1, 0, 0), 0);
    assert_int_equal(sr_partition_at(&p, 0)->bytes, 60);
    assert_int_equal(depth_bytes(&p), 60);
    grpc_slice pre = mk(30, 3), body = mk(11, 4);
    assert_int_equal(sr_partition_push(&p, pre, body, 7, 1, 0, 0), -1); /* 60 + 41 > 100 */
    grpc_slice_unref(pre);
    grpc_slice_unref(body);
    sr_partition_deinit(&p);
}

static void oversized_event_fits_only_into_an_empty_partition(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, 100, 1), 0);
    assert_true(sr_partition_has_room(&p, 500));
    assert_int_equal(push(&p, 500, 1, 0), 0);
    assert_int_equal(depth_bytes(&p), 500);
    assert_int_equal(push(&p, 1, 2, 0), -1); /* over the bound now: nothing more */
    assert_int_equal(push(&p, 500, 3, 0), -1);

    /* once it is sent, the partition takes events again */
    assert_int_equal(sr_partition_ready(&p, 10, 100, 0, true, 0, &wake), 1);
    struct sr_batch *b = sr_partition_cut(&p, 1, 0);
    assert_int_equal(sr_partition_complete(&p, b), 1);
    assert_int_equal(push(&p, 1, 4, 1), 0);
    sr_partition_deinit(&p);
}

/* ---- sr_partition_ready ---- */

static void ready_on_empty_partition_is_zero_and_never_wakes(void **state)
{
    struct sr_partition p;
    int64_t wake = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, BIG, 2), 0);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 100, false, 1000, &wake), 0);
    assert_true(wake == INT64_MAX);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 100, true, 1000, &wake), 0);
    assert_true(wake == INT64_MAX);
    sr_partition_deinit(&p);
}

static void ready_waits_for_linger_of_the_oldest_event(void **state)
{
    struct sr_partition p;
    int64_t wake = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    assert_int_equal(push(&p, 10, 1, 1000), 0);
    assert_int_equal(push(&p, 10, 2, 1030), 0);

    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1000, &wake), 0);
    assert_true(wake == 1050);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1049, &wake), 0);
    assert_true(wake == 1050);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1050, &wake), 2);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 5000, &wake), 2);
    sr_partition_deinit(&p);
}

static void ready_linger_restarts_from_the_next_unbatched_event(void **state)
{
    struct sr_partition p;
    int64_t wake = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 4), 0);
    assert_int_equal(push(&p, 10, 1, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1050, &wake), 1);
    sr_partition_cut(&p, 1, 1050);
    assert_int_equal(push(&p, 10, 2, 1070), 0);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1100, &wake), 0);
    assert_true(wake == 1120);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1120, &wake), 1);
    sr_partition_deinit(&p);
}

static void ready_cuts_at_max_events_without_waiting(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 5, BIG, 1000, false, 1000, &wake), 0);
    assert_true(wake == 2000);
    assert_int_equal(push(&p, 10, 4, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 5, BIG, 1000, false, 1000, &wake), 5);
    for (int i = 5; i < 7; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 5, BIG, 1000, false, 1000, &wake), 5); /* at most 5 */
    sr_partition_deinit(&p);
}

static void ready_cuts_when_bytes_reach_max_and_stops_before_exceeding(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    assert_int_equal(push(&p, 40, 1, 0), 0);
    assert_int_equal(push(&p, 40, 2, 0), 0);
    /* 80 < 100: the linger rule still applies */
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 0);
    assert_true(wake == 1000);
    assert_int_equal(push(&p, 40, 3, 0), 0);
    /* 120 >= 100: cut now, two events (80 bytes); a third would exceed 100 */
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 2);
    struct sr_batch *b = sr_partition_cut(&p, 2, 0);
    assert_int_equal(b->bytes, 80);
    /* the remaining 40 bytes wait for linger again */
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 0);
    assert_true(wake == 1000);
    sr_partition_deinit(&p);
}

static void ready_cuts_when_bytes_reach_max_exactly(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    assert_int_equal(push(&p, 50, 1, 0), 0);
    assert_int_equal(push(&p, 50, 2, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 2);
    sr_partition_deinit(&p);
}

static void ready_takes_one_oversized_event_alone(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    assert_int_equal(push(&p, 500, 1, 0), 0);
    assert_int_equal(push(&p, 10, 2, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 1);
    struct sr_batch *b = sr_partition_cut(&p, 1, 0);
    assert_int_equal(b->bytes, 500);
    assert_int_equal(sr_partition_unbatched(&p), 1);
    sr_partition_deinit(&p);
}

static void ready_with_flush_cuts_at_once(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    assert_int_equal(push(&p, 10, 1, 1000), 0);
    assert_int_equal(push(&p, 10, 2, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 60000, false, 1000, &wake), 0);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 60000, true, 1000, &wake), 2);
    /* flush still honours max_events */
    assert_int_equal(sr_partition_ready(&p, 1, BIG, 60000, true, 1000, &wake), 1);
    sr_partition_deinit(&p);
}

static void ready_is_zero_without_a_free_batch_slot(void **state)
{
    struct sr_partition p;
    int64_t wake = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 1), 0);
    assert_int_equal(push(&p, 10, 1, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 0, true, 0, &wake), 1);
    struct sr_batch *b = sr_partition_cut(&p, 1, 0);
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, 2, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 0, true, 10000, &wake), 0);
    assert_int_equal(sr_partition_ready(&p, 5, BIG, 0, false, 10000, &wake), 0);
    /* a completion frees the slot */
    assert_int_equal(sr_partition_complete(&p, b), 1);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 0, true, 10000, &wake), 5);
    sr_partition_deinit(&p);
}

/* ---- cut / complete ---- */

static void cut_fills_the_batch_from_the_oldest_unbatched_events(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2), 0);
    for (int i = 0; i < 3; i++) {
        grpc_slice pre = mk(5, 0xaa);
        assert_int_equal(sr_partition_push(&p, pre, mk(10 + (size_t)i, (uint8_t)i), 100 + (uint64_t)i,
                                           (uint32_t)i + 2, SR_EV_FRAGMENT, 500 + i),
                         0);
    }
    struct sr_batch *b = sr_partition_cut(&p, 2, 777);
    assert_int_equal(b->state, SR_BATCH_SENDING);
    assert_int_equal(b->start, 0);
    assert_int_equal(b->count, 2);
    assert_int_equal(b->bytes, 15 + 16);
    assert_int_equal(b->items, 2 + 3);
    assert_int_equal(b->attempts, 0);
    assert_true(b->first_attempt_ms == 777);
    assert_int_equal(sr_partition_unbatched(&p), 1);
    assert_int_equal(p.unbatched_bytes, 17);
    for (uint32_t i = 0; i < b->count; i++) {
        struct sr_event *e = sr_partition_at(&p, b->start + i);
        assert_int_equal(e->key, 100 + i);
        assert_int_equal(e->items, i + 2);
        assert_int_equal(e->flags, SR_EV_FRAGMENT);
        assert_true(e->arrival_ms == 500 + (int64_t)i);
        assert_int_equal(GRPC_SLICE_LENGTH(e->body), 10 + i);
        assert_int_equal(GRPC_SLICE_START_PTR(e->body)[0], i);
        assert_int_equal(GRPC_SLICE_LENGTH(e->prefix), 5);
    }
    /* cutting does not release anything */
    assert_int_equal(depth_events(&p), 3);
    assert_int_equal(depth_bytes(&p), 15 + 16 + 17);
    sr_partition_deinit(&p);
}

static void complete_releases_the_batch_and_makes_room(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 3, 300, 2), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(push(&p, 100, (uint8_t)i, 0), 0);
    assert_int_equal(push(&p, 1, 9, 0), -1);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 0, false, 0, &wake), 3);
    struct sr_batch *b = sr_partition_cut(&p, 3, 0);
    assert_int_equal(push(&p, 1, 9, 0), -1); /* in flight still counts */
    assert_int_equal(sr_partition_complete(&p, b), 3);
    assert_int_equal(b->state, SR_BATCH_FREE);
    assert_int_equal(p.head, 3);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(depth_bytes(&p), 0);
    assert_int_equal(p.slot_count, 0);
    assert_int_equal(push(&p, 100, 9, 0), 0);
    sr_partition_deinit(&p);
}

static void out_of_order_completion_releases_only_in_order(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 5, BIG, 3), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 2, BIG, 0, false, 0, &wake), 2);
    struct sr_batch *b1 = sr_partition_cut(&p, 2, 0);
    assert_int_equal(sr_partition_ready(&p, 3, BIG, 0, false, 0, &wake), 3);
    struct sr_batch *b2 = sr_partition_cut(&p, 3, 0);
    assert_int_equal(p.slot_count, 2);
    assert_ptr_equal(sr_partition_batch(&p, 0), b1);
    assert_ptr_equal(sr_partition_batch(&p, 1), b2);

    /* batch 2 done first: nothing is released, no room */
    assert_int_equal(sr_partition_complete(&p, b2), 0);
    assert_int_equal(b2->state, SR_BATCH_DONE);
    assert_int_equal(p.head, 0);
    assert_int_equal(depth_events(&p), 5);
    assert_int_equal(depth_bytes(&p), 50);
    assert_int_equal(p.slot_count, 2);
    assert_false(sr_partition_has_room(&p, 1));
    /* batch 1's events are still intact */
    assert_int_equal(GRPC_SLICE_START_PTR(sr_partition_at(&p, 1)->body)[0], 1);

    /* then batch 1: both released */
    assert_int_equal(sr_partition_complete(&p, b1), 5);
    assert_int_equal(p.head, 5);
    assert_int_equal(p.slot_count, 0);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(depth_bytes(&p), 0);
    assert_true(sr_partition_has_room(&p, 1));
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    sr_partition_deinit(&p);
}

static void completing_the_oldest_of_three_releases_only_it(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 6, BIG, 3), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    struct sr_batch *b1 = sr_partition_cut(&p, 2, 0);
    struct sr_batch *b2 = sr_partition_cut(&p, 2, 0);
    struct sr_batch *b3 = sr_partition_cut(&p, 2, 0);
    assert_int_equal(sr_partition_complete(&p, b3), 0);
    assert_int_equal(sr_partition_complete(&p, b1), 2); /* b2 still in flight */
    assert_int_equal(p.head, 2);
    assert_int_equal(depth_events(&p), 4);
    assert_int_equal(depth_bytes(&p), 40);
    assert_int_equal(sr_partition_complete(&p, b2), 4); /* b2 and the done b3 */
    assert_int_equal(p.head, 6);
    assert_int_equal(depth_events(&p), 0);
    sr_partition_deinit(&p);
}

static void ring_and_batch_slots_wrap_around(void **state)
{
    struct sr_partition p;
    int64_t wake;
    int64_t now = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 4, BIG, 2), 0); /* cap 4 */
    for (int round = 0; round < 25; round++, now += 10) {
        uint8_t base = (uint8_t)(round * 3);
        for (int i = 0; i < 3; i++) assert_int_equal(push(&p, 8, (uint8_t)(base + i), now), 0);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now, &wake), 2);
        struct sr_batch *a = sr_partition_cut(&p, 2, now);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now, &wake), 0);
        assert_true(wake == now + 5);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now + 5, &wake), 1);
        struct sr_batch *b = sr_partition_cut(&p, 1, now + 5);
        assert_int_equal(a->start, (uint64_t)round * 3);
        assert_int_equal(b->start, (uint64_t)round * 3 + 2);
        for (uint32_t i = 0; i < 2; i++)
            assert_int_equal(GRPC_SLICE_START_PTR(sr_partition_at(&p, a->start + i)->body)[0],
                             (uint8_t)(base + i));
        assert_int_equal(GRPC_SLICE_START_PTR(sr_partition_at(&p, b->start)->body)[0],
                         (uint8_t)(base + 2));
        if (round % 2) {
            assert_int_equal(sr_partition_complete(&p, b), 0);
            assert_int_equal(sr_partition_complete(&p, a), 3);
        } else {
            assert_int_equal(sr_partition_complete(&p, a), 2);
            assert_int_equal(sr_partition_complete(&p, b), 1);
        }
        assert_int_equal(depth_events(&p), 0);
        assert_int_equal(depth_bytes(&p), 0);
    }
    assert_int_equal(p.head, 75);
    assert_int_equal(p.tail, 75);
    sr_partition_deinit(&p);
}

static void depth_counters_follow_push_and_complete(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, BIG, 2), 0);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(push(&p, 30, 1, 0), 0);
    assert_int_equal(push(&p, 20, 2, 0), 0);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 50);
    struct sr_batch *b = sr_partition_cut(&p, 1, 0);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 50);
    assert_int_equal(push(&p, 5, 3, 0), 0);
    assert_int_equal(depth_events(&p), 3);
    assert_int_equal(depth_bytes(&p), 55);
    sr_partition_complete(&p, b);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 25);
    sr_partition_deinit(&p);
}

static void deinit_releases_events_still_held(void **state)
{
    struct sr_partition p;
    (void)state;
    /* LeakSanitizer fails the run if any of these slices is not released */
    assert_int_equal(sr_partition_init(&p, 8, BIG, 2), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(sr_partition_push(&p, mk(40, 1), mk(100, (uint8_t)i), 0, 1, 0, 0), 0);
    struct sr_batch *b = sr_partition_cut(&p, 2, 0);
    sr_partition_cut(&p, 2, 0);
    assert_int_equal(sr_partition_complete(&p, b), 2);
    sr_partition_deinit(&p);
    assert_null(p.ring);
    sr_partition_deinit(&p); /* harmless twice */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(push_fails_when_event_bound_reached_and_takes_nothing),
        cmocka_unit_test(event_bound_is_max_events_not_ring_capacity),
        cmocka_unit_test(push_fails_when_byte_bound_would_be_exceeded),
        cmocka_unit_test(prefix_bytes_count_toward_the_bound),
        cmocka_unit_test(oversized_event_fits_only_into_an_empty_partition),
        cmocka_unit_test(ready_on_empty_partition_is_zero_and_never_wakes),
        cmocka_unit_test(ready_waits_for_linger_of_the_oldest_event),
        cmocka_unit_test(ready_linger_restarts_from_the_next_unbatched_event),
        cmocka_unit_test(ready_cuts_at_max_events_without_waiting),
        cmocka_unit_test(ready_cuts_when_bytes_reach_max_and_stops_before_exceeding),
        cmocka_unit_test(ready_cuts_when_bytes_reach_max_exactly),
        cmocka_unit_test(ready_takes_one_oversized_event_alone),
        cmocka_unit_test(ready_with_flush_cuts_at_once),
        cmocka_unit_test(ready_is_zero_without_a_free_batch_slot),
        cmocka_unit_test(cut_fills_the_batch_from_the_oldest_unbatched_events),
        cmocka_unit_test(complete_releases_the_batch_and_makes_room),
        cmocka_unit_test(out_of_order_completion_releases_only_in_order),
        cmocka_unit_test(completing_the_oldest_of_three_releases_only_it),
        cmocka_unit_test(ring_and_batch_slots_wrap_around),
        cmocka_unit_test(depth_counters_follow_push_and_complete),
        cmocka_unit_test(deinit_releases_events_still_held),
    };
    return cmocka_run_group_tests_name("partition", tests, sr_test_grpc_setup, sr_test_grpc_teardown);
}
