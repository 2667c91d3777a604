/* Unit tests for src/queue/partition.c: bounds on what is held (queued + in
 * batches), the worker budget, batch cutting rules (with a fake clock: every
 * call takes now_ms), batches that own their events and complete in any order,
 * slot reuse, and slice ownership (every pushed slice released exactly once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

static uint64_t budget_used(struct sr_budget *b)
{
    return atomic_load(&b->used);
}

/* First byte of event i of batch b: the tag it was pushed with. */
static uint8_t batch_tag(const struct sr_batch *b, uint32_t i)
{
    return GRPC_SLICE_START_PTR(sr_batch_event(b, i)->body)[0];
}

/* Cuts whatever sr_partition_ready allows with max_events = n (flush), and checks
 * that it is exactly n events. */
static struct sr_batch *cut_n(struct sr_partition *p, uint32_t n, int64_t now_ms)
{
    int64_t wake;
    assert_int_equal(sr_partition_ready(p, n, BIG, 0, true, now_ms, &wake), n);
    struct sr_batch *b = sr_partition_cut(p, n, now_ms);
    assert_non_null(b);
    assert_int_equal(b->count, n);
    return b;
}

/* ---- observable slices ----
 * A tracked slice calls back when gRPC destroys it (its last ref is gone). The
 * tracker keeps a ref of its own on every slice it made, so the partition never
 * drops the last one: an extra unref by the partition destroys the slice while
 * the tracker still holds it (caught: destroyed too early), and a missing unref
 * leaves it alive once the tracker lets go (caught: not destroyed). gRPC itself
 * is not instrumented, so ASan alone would not see a double unref. */

#define TRACK_MAX 256

struct tracker {
    uint32_t n;
    uint32_t destroyed[TRACK_MAX];
    bool settled[TRACK_MAX];
    grpc_slice mine[TRACK_MAX]; /* the tracker's own ref */
};

struct tracked {
    struct tracker *t;
    uint32_t id;
    uint8_t data[];
};

static void tracked_destroy(void *user_data)
{
    struct tracked *s = user_data;
    s->t->destroyed[s->id]++;
    free(s);
}

/* A slice of n bytes filled with `fill`; its id is the order of creation.
 * Returns a ref for the caller; the tracker keeps another. */
static grpc_slice tracked_slice(struct tracker *t, size_t n, uint8_t fill)
{
    struct tracked *s = malloc(sizeof(*s) + n);
    assert_non_null(s);
    assert_true(t->n < TRACK_MAX);
    s->t = t;
    s->id = t->n++;
    memset(s->data, fill, n);
    t->mine[s->id] = grpc_slice_new_with_user_data(s->data, n, tracked_destroy, s);
    return grpc_slice_ref(t->mine[s->id]);
}

/* Pushes an event with a tracked prefix (prefix_len bytes) and a tracked body
 * (body_len bytes, filled with tag). The k-th tracked event of a tracker owns
 * slices 2k and 2k+1. A refused push gives the refs back (unrefs them here). */
static int push_tracked(struct sr_partition *p, struct tracker *t, uint32_t prefix_len,
                        uint32_t body_len, uint8_t tag, int64_t now_ms)
{
    grpc_slice pre = tracked_slice(t, prefix_len, 0xaa);
    grpc_slice body = tracked_slice(t, body_len, tag);
    int r = sr_partition_push(p, pre, body, tag, 1, 0, now_ms);
    if (r != 0) {
        grpc_slice_unref(pre);
        grpc_slice_unref(body);
    }
    return r;
}

/* Slice id is still alive: not over-released by anyone but the tracker... */
static void assert_slice_alive(const struct tracker *t, uint32_t id)
{
    assert_true(id < t->n);
    assert_false(t->settled[id]);
    assert_int_equal(t->destroyed[id], 0);
}

/* ...or that every other ref is gone: dropping the tracker's destroys it, once. */
static void settle_slice(struct tracker *t, uint32_t id)
{
    assert_slice_alive(t, id);
    grpc_slice_unref(t->mine[id]);
    t->settled[id] = true;
    assert_int_equal(t->destroyed[id], 1);
}

/* Tracked events [first, first + n) have been released exactly once (both slices). */
static void assert_events_released(struct tracker *t, uint32_t first, uint32_t n)
{
    for (uint32_t k = first; k < first + n; k++) {
        settle_slice(t, 2 * k);
        settle_slice(t, 2 * k + 1);
    }
}

/* Tracked events [first, first + n) have not been over-released. */
static void assert_events_alive(const struct tracker *t, uint32_t first, uint32_t n)
{
    for (uint32_t k = first; k < first + n; k++) {
        assert_slice_alive(t, 2 * k);
        assert_slice_alive(t, 2 * k + 1);
    }
}

/* Every tracked slice was settled: destroyed exactly once, nothing leaked. */
static void assert_all_settled(const struct tracker *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        assert_true(t->settled[i]);
        assert_int_equal(t->destroyed[i], 1);
    }
}

/* ---- bounds ---- */

static void push_fails_when_event_bound_reached_and_takes_nothing(void **state)
{
    struct sr_partition p;
    struct tracker t = {0};
    (void)state;
    assert_int_equal(sr_partition_init(&p, 4, BIG, 2, NULL), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(push(&p, 100, (uint8_t)i, 0), 0);
    assert_false(sr_partition_has_room(&p, 1));

    grpc_slice prefix = tracked_slice(&t, 40, 0xee), body = tracked_slice(&t, 60, 0xff);
    assert_int_equal(sr_partition_push(&p, prefix, body, 9, 1, 0, 0), -1);
    /* still ours: readable, and our refs are the ones to drop (not the partition's) */
    assert_events_alive(&t, 0, 1);
    assert_int_equal(GRPC_SLICE_START_PTR(body)[59], 0xff);
    grpc_slice_unref(prefix);
    grpc_slice_unref(body);
    assert_events_released(&t, 0, 1);

    assert_int_equal(depth_events(&p), 4);
    assert_int_equal(depth_bytes(&p), 400);
    assert_int_equal(sr_partition_unbatched(&p), 4);
    sr_partition_deinit(&p);
}

static void event_bound_is_max_events_not_ring_capacity(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 5, BIG, 1, NULL), 0);
    assert_int_equal(p.cap, 8); /* the ring rounds up */
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    assert_int_equal(push(&p, 10, 5, 0), -1);
    assert_int_equal(depth_events(&p), 5);
    sr_partition_deinit(&p);
}

static void push_fails_when_byte_bound_would_be_exceeded(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, 100, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, 100, 2, NULL), 0);
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
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, 100, 1, NULL), 0);
    assert_true(sr_partition_has_room(&p, 500));
    assert_int_equal(push(&p, 500, 1, 0), 0);
    assert_int_equal(depth_bytes(&p), 500);
    assert_int_equal(push(&p, 1, 2, 0), -1); /* over the bound now: nothing more */
    assert_int_equal(push(&p, 500, 3, 0), -1);

    /* cut, it still holds the partition; once completed, events are taken again */
    struct sr_batch *b = cut_n(&p, 1, 0);
    assert_int_equal(push(&p, 1, 4, 0), -1);
    assert_int_equal(sr_partition_complete(&p, b), 1);
    assert_int_equal(push(&p, 1, 4, 1), 0);
    sr_partition_deinit(&p);
}

static void events_in_batches_count_toward_both_bounds(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 3, 300, 2, NULL), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(push(&p, 100, (uint8_t)i, 0), 0);
    struct sr_batch *b = cut_n(&p, 2, 0);
    assert_int_equal(sr_partition_unbatched(&p), 1);
    assert_int_equal(p.queued_bytes, 100);
    assert_int_equal(p.held_events, 3);
    assert_int_equal(p.held_bytes, 300);
    assert_false(sr_partition_has_room(&p, 1)); /* events */
    assert_int_equal(push(&p, 1, 9, 0), -1);
    assert_int_equal(sr_partition_complete(&p, b), 2);
    assert_int_equal(push(&p, 100, 9, 0), 0);
    assert_false(sr_partition_has_room(&p, 101)); /* bytes: 200 held + 101 > 300 */
    assert_true(sr_partition_has_room(&p, 100));
    sr_partition_deinit(&p);
}

/* ---- the worker budget ---- */

static void budget_is_shared_refuses_a_nonempty_partition_and_complete_gives_it_back(void **state)
{
    struct sr_budget budget = {.max = 1000};
    struct sr_partition p1, p2;
    (void)state;
    atomic_init(&budget.used, 0);
    /* the partitions' own bounds are far away: only the budget limits them */
    assert_int_equal(sr_partition_init(&p1, 100, BIG, 2, &budget), 0);
    assert_int_equal(sr_partition_init(&p2, 100, BIG, 2, &budget), 0);

    for (int i = 0; i < 4; i++) assert_int_equal(push(&p1, 200, (uint8_t)i, 0), 0);
    assert_int_equal(budget_used(&budget), 800);
    assert_true(sr_partition_has_room(&p1, 200)); /* exactly the budget */
    assert_false(sr_partition_has_room(&p1, 201));

    /* p2 is empty: its first event fits even past what the budget has left */
    assert_false(sr_partition_has_room(&p1, 300));
    assert_true(sr_partition_has_room(&p2, 300));
    assert_int_equal(push(&p2, 300, 10, 0), 0);
    assert_int_equal(budget_used(&budget), 1100);

    /* now both are refused: p1 used the budget */
    assert_false(sr_partition_has_room(&p2, 1));
    assert_int_equal(push(&p2, 1, 11, 0), -1);
    assert_false(sr_partition_has_room(&p1, 1));
    assert_int_equal(push(&p1, 1, 12, 0), -1);
    assert_int_equal(budget_used(&budget), 1100); /* a refused push charges nothing */

    /* p1 completes a batch: the budget is released at once, p2 takes events again */
    struct sr_batch *b = cut_n(&p1, 2, 0);
    assert_int_equal(budget_used(&budget), 1100); /* cutting releases nothing */
    assert_int_equal(sr_partition_complete(&p1, b), 2);
    assert_int_equal(budget_used(&budget), 700);
    assert_true(sr_partition_has_room(&p2, 300));
    assert_false(sr_partition_has_room(&p2, 301));
    assert_int_equal(push(&p2, 300, 13, 0), 0);
    assert_int_equal(budget_used(&budget), 1000);

    /* deinit gives back what is still held: p1 400 (queued), p2 600 (one batch, one queued) */
    b = cut_n(&p2, 1, 0);
    assert_int_equal(b->bytes, 300);
    sr_partition_deinit(&p1);
    assert_int_equal(budget_used(&budget), 600);
    sr_partition_deinit(&p2);
    assert_int_equal(budget_used(&budget), 0);
}

static void budget_is_released_by_deinit_for_queued_and_batched_events(void **state)
{
    struct sr_budget budget = {.max = 1000};
    struct sr_partition p;
    (void)state;
    atomic_init(&budget.used, 0);
    assert_int_equal(sr_partition_init(&p, 10, BIG, 3, &budget), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(push(&p, 50, (uint8_t)i, 0), 0);
    struct sr_batch *a = cut_n(&p, 2, 0);
    cut_n(&p, 2, 0); /* never completed */
    assert_int_equal(budget_used(&budget), 300);
    assert_int_equal(sr_partition_complete(&p, a), 2);
    assert_int_equal(budget_used(&budget), 200);
    sr_partition_deinit(&p);
    assert_int_equal(budget_used(&budget), 0);
}

/* ---- sr_partition_ready ---- */

static void ready_on_empty_partition_is_zero_and_never_wakes(void **state)
{
    struct sr_partition p;
    int64_t wake = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, BIG, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 4, NULL), 0);
    assert_int_equal(push(&p, 10, 1, 1000), 0);
    assert_int_equal(sr_partition_ready(&p, 10, BIG, 50, false, 1050, &wake), 1);
    assert_non_null(sr_partition_cut(&p, 1, 1050));
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
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
    assert_int_equal(p.queued_bytes, 40);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
    assert_int_equal(push(&p, 50, 1, 0), 0);
    assert_int_equal(push(&p, 50, 2, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 2);
    sr_partition_deinit(&p);
}

static void ready_counts_only_queued_bytes_not_bytes_in_batches(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
    assert_int_equal(push(&p, 90, 1, 0), 0);
    cut_n(&p, 1, 0); /* 90 bytes in flight */
    assert_int_equal(push(&p, 20, 2, 0), 0);
    /* 110 held, but only 20 queued: below max_bytes, linger applies */
    assert_int_equal(sr_partition_ready(&p, 100, 100, 1000, false, 0, &wake), 0);
    assert_true(wake == 1000);
    sr_partition_deinit(&p);
}

static void ready_takes_one_oversized_event_alone(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
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
    assert_int_equal(sr_partition_init(&p, 100, BIG, 1, NULL), 0);
    assert_int_equal(push(&p, 10, 1, 0), 0);
    struct sr_batch *b = cut_n(&p, 1, 0);
    for (int i = 0; i < 5; i++) assert_int_equal(push(&p, 10, 2, 0), 0);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 0, true, 10000, &wake), 0);
    assert_int_equal(sr_partition_ready(&p, 5, BIG, 0, false, 10000, &wake), 0);
    /* a completion frees the slot */
    assert_int_equal(sr_partition_complete(&p, b), 1);
    assert_int_equal(sr_partition_ready(&p, 100, BIG, 0, true, 10000, &wake), 5);
    sr_partition_deinit(&p);
}

/* ---- cut / complete ---- */

static void cut_moves_the_oldest_unbatched_events_into_the_batch(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
    for (int i = 0; i < 3; i++) {
        grpc_slice pre = mk(5, 0xaa);
        assert_int_equal(sr_partition_push(&p, pre, mk(10 + (size_t)i, (uint8_t)i),
                                           100 + (uint64_t)i, (uint32_t)i + 2, SR_EV_FRAGMENT,
                                           500 + i),
                         0);
    }
    struct sr_batch *b = sr_partition_cut(&p, 2, 777);
    assert_non_null(b);
    assert_true(b->used);
    assert_int_equal(b->count, 2);
    assert_int_equal(b->bytes, 15 + 16);
    assert_int_equal(b->items, 2 + 3);
    assert_int_equal(b->sends, 0);
    assert_int_equal(b->n_units, 0);
    assert_int_equal(b->calls_pending, 0);
    assert_true(b->first_attempt_ms == 777);
    assert_int_equal(p.slots_used, 1);
    for (uint32_t i = 0; i < b->count; i++) {
        struct sr_event *e = sr_batch_event(b, i);
        assert_int_equal(e->key, 100 + i);
        assert_int_equal(e->items, i + 2);
        assert_int_equal(e->bytes, 15 + i);
        assert_int_equal(e->flags, SR_EV_FRAGMENT);
        assert_true(e->arrival_ms == 500 + (int64_t)i);
        assert_int_equal(GRPC_SLICE_LENGTH(e->body), 10 + i);
        assert_int_equal(GRPC_SLICE_START_PTR(e->body)[0], i);
        assert_int_equal(GRPC_SLICE_LENGTH(e->prefix), 5);
    }
    /* the third event stays queued, at the head */
    assert_int_equal(sr_partition_unbatched(&p), 1);
    assert_int_equal(p.queued_bytes, 17);
    assert_int_equal(sr_partition_at(&p, p.head)->key, 102);
    /* cutting does not release anything */
    assert_int_equal(depth_events(&p), 3);
    assert_int_equal(depth_bytes(&p), 15 + 16 + 17);
    sr_partition_deinit(&p);
}

static void complete_releases_the_batch_and_makes_room(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 3, 300, 2, NULL), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(push(&p, 100, (uint8_t)i, 0), 0);
    assert_int_equal(push(&p, 1, 9, 0), -1);
    struct sr_batch *b = cut_n(&p, 3, 0);
    assert_int_equal(push(&p, 1, 9, 0), -1); /* in flight still counts */
    assert_int_equal(sr_partition_complete(&p, b), 3);
    assert_false(b->used);
    assert_int_equal(p.slots_used, 0);
    assert_int_equal(p.held_events, 0);
    assert_int_equal(p.held_bytes, 0);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(depth_bytes(&p), 0);
    assert_int_equal(push(&p, 100, 9, 0), 0);
    sr_partition_deinit(&p);
}

static void out_of_order_completion_releases_at_once(void **state)
{
    struct sr_budget budget = {.max = BIG};
    struct sr_partition p;
    struct tracker t = {0};
    (void)state;
    atomic_init(&budget.used, 0);
    assert_int_equal(sr_partition_init(&p, 6, BIG, 3, &budget), 0);
    /* events 0-1 are 10+10 bytes, 2-3 10+20, 4-5 10+30 */
    for (uint32_t i = 0; i < 6; i++)
        assert_int_equal(push_tracked(&p, &t, 10, 10 * (i / 2 + 1), (uint8_t)i, 0), 0);
    struct sr_batch *a = cut_n(&p, 2, 0);
    struct sr_batch *b = cut_n(&p, 2, 0);
    struct sr_batch *c = cut_n(&p, 2, 0);
    assert_int_equal(p.slots_used, 3);
    assert_int_equal(depth_events(&p), 6);
    assert_int_equal(depth_bytes(&p), 40 + 60 + 80);
    assert_int_equal(budget_used(&budget), 180);
    assert_false(sr_partition_has_room(&p, 1));
    assert_events_alive(&t, 0, 6);

    /* the last batch first: its events are released now, the others still held */
    assert_int_equal(sr_partition_complete(&p, c), 2);
    assert_events_released(&t, 4, 2);
    assert_events_alive(&t, 0, 4);
    assert_int_equal(p.held_events, 4);
    assert_int_equal(p.held_bytes, 100);
    assert_int_equal(depth_events(&p), 4);
    assert_int_equal(depth_bytes(&p), 100);
    assert_int_equal(budget_used(&budget), 100);
    assert_int_equal(p.slots_used, 2);
    assert_true(sr_partition_has_room(&p, 1));
    assert_true(a->used);
    assert_true(b->used);
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(batch_tag(a, i), i);
        assert_int_equal(batch_tag(b, i), 2 + i);
    }

    /* then the middle one */
    assert_int_equal(sr_partition_complete(&p, b), 2);
    assert_events_released(&t, 2, 2);
    assert_events_alive(&t, 0, 2);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 40);
    assert_int_equal(budget_used(&budget), 40);
    assert_int_equal(batch_tag(a, 1), 1);

    /* then the first */
    assert_int_equal(sr_partition_complete(&p, a), 2);
    assert_events_released(&t, 0, 2);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(depth_bytes(&p), 0);
    assert_int_equal(budget_used(&budget), 0);
    assert_int_equal(p.slots_used, 0);
    for (int i = 0; i < 6; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    sr_partition_deinit(&p);
    assert_all_settled(&t);
}

static void stuck_batch_does_not_block_pushes(void **state)
{
    enum { BATCH = 4, ROUNDS = 50 };
    struct sr_partition p;
    int64_t wake;
    int64_t now = 0;
    (void)state;
    /* room for the stuck batch and one more; the ring (cap 8) wraps many times */
    assert_int_equal(sr_partition_init(&p, 2 * BATCH, BIG, 2, NULL), 0);
    for (int i = 0; i < BATCH; i++) assert_int_equal(push(&p, 10, (uint8_t)(0xa0 + i), now), 0);
    struct sr_batch *stuck = cut_n(&p, BATCH, now); /* never completed */

    for (int round = 0; round < ROUNDS; round++, now += 10) {
        for (int i = 0; i < BATCH; i++)
            assert_int_equal(push(&p, 10, (uint8_t)(round * BATCH + i), now), 0);
        assert_false(sr_partition_has_room(&p, 1)); /* the stuck batch still counts */
        assert_int_equal(sr_partition_ready(&p, BATCH, BIG, 1000, false, now, &wake), BATCH);
        struct sr_batch *b = sr_partition_cut(&p, BATCH, now);
        assert_non_null(b);
        assert_ptr_not_equal(b, stuck);
        for (uint32_t i = 0; i < BATCH; i++)
            assert_int_equal(batch_tag(b, i), (uint8_t)(round * BATCH + (int)i));
        assert_int_equal(sr_partition_complete(&p, b), BATCH);
        assert_int_equal(depth_events(&p), BATCH);
        assert_true(sr_partition_has_room(&p, 1));
    }
    assert_int_equal(p.tail, (uint64_t)BATCH * (ROUNDS + 1));
    /* the stuck batch's events were never overwritten by the wrapping ring */
    assert_true(stuck->used);
    for (uint32_t i = 0; i < BATCH; i++) assert_int_equal(batch_tag(stuck, i), 0xa0 + i);
    assert_int_equal(sr_partition_complete(&p, stuck), BATCH);
    assert_int_equal(depth_events(&p), 0);
    sr_partition_deinit(&p);
}

static void freed_batch_slot_is_reused_by_the_next_cut(void **state)
{
    struct sr_partition p;
    int64_t wake;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 3, NULL), 0);
    for (int i = 0; i < 8; i++) assert_int_equal(push(&p, 10, (uint8_t)i, 0), 0);
    struct sr_batch *a = cut_n(&p, 2, 0);
    struct sr_batch *b = cut_n(&p, 2, 0);
    struct sr_batch *c = cut_n(&p, 2, 0);
    assert_int_equal(p.slots_used, 3);
    assert_true(a != b && b != c && a != c);
    assert_int_equal(sr_partition_ready(&p, 2, BIG, 0, true, 0, &wake), 0); /* all slots taken */

    /* the middle batch went through sends before it completed */
    b->sends = 3;
    b->last_status = 14;
    assert_int_equal(sr_partition_complete(&p, b), 2);
    assert_int_equal(p.slots_used, 2);

    struct sr_batch *d = cut_n(&p, 2, 50);
    assert_ptr_equal(d, b); /* the only free slot */
    assert_int_equal(p.slots_used, 3);
    assert_true(d->used);
    assert_int_equal(d->sends, 0);
    assert_int_equal(d->last_status, 0);
    assert_int_equal(d->n_units, 0);
    assert_true(d->first_attempt_ms == 50);
    assert_int_equal(d->bytes, 20);
    assert_int_equal(batch_tag(d, 0), 6);
    assert_int_equal(batch_tag(d, 1), 7);

    assert_int_equal(sr_partition_complete(&p, a), 2);
    assert_int_equal(sr_partition_complete(&p, c), 2);
    assert_int_equal(sr_partition_complete(&p, d), 2);
    assert_int_equal(p.slots_used, 0);
    sr_partition_deinit(&p);
}

static void ring_wraps_around_with_batches_completing_in_any_order(void **state)
{
    struct sr_partition p;
    int64_t wake;
    int64_t now = 0;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 4, BIG, 2, NULL), 0);
    assert_int_equal(p.cap, 4);
    for (int round = 0; round < 25; round++, now += 10) {
        uint8_t base = (uint8_t)(round * 3);
        for (int i = 0; i < 3; i++) assert_int_equal(push(&p, 8, (uint8_t)(base + i), now), 0);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now, &wake), 2);
        struct sr_batch *a = sr_partition_cut(&p, 2, now);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now, &wake), 0);
        assert_true(wake == now + 5);
        assert_int_equal(sr_partition_ready(&p, 2, BIG, 5, false, now + 5, &wake), 1);
        struct sr_batch *b = sr_partition_cut(&p, 1, now + 5);
        for (uint32_t i = 0; i < 2; i++) assert_int_equal(batch_tag(a, i), (uint8_t)(base + i));
        assert_int_equal(batch_tag(b, 0), (uint8_t)(base + 2));
        if (round % 2) {
            assert_int_equal(sr_partition_complete(&p, b), 1);
            assert_int_equal(depth_events(&p), 2);
            assert_int_equal(sr_partition_complete(&p, a), 2);
        } else {
            assert_int_equal(sr_partition_complete(&p, a), 2);
            assert_int_equal(depth_events(&p), 1);
            assert_int_equal(sr_partition_complete(&p, b), 1);
        }
        assert_int_equal(depth_events(&p), 0);
        assert_int_equal(depth_bytes(&p), 0);
        assert_int_equal(p.slots_used, 0);
    }
    assert_int_equal(p.head, 75);
    assert_int_equal(p.tail, 75);
    sr_partition_deinit(&p);
}

static void depth_counters_follow_push_and_complete(void **state)
{
    struct sr_partition p;
    (void)state;
    assert_int_equal(sr_partition_init(&p, 10, BIG, 2, NULL), 0);
    assert_int_equal(depth_events(&p), 0);
    assert_int_equal(push(&p, 30, 1, 0), 0);
    assert_int_equal(push(&p, 20, 2, 0), 0);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 50);
    struct sr_batch *b = cut_n(&p, 1, 0);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 50);
    assert_int_equal(push(&p, 5, 3, 0), 0);
    assert_int_equal(depth_events(&p), 3);
    assert_int_equal(depth_bytes(&p), 55);
    assert_int_equal(sr_partition_complete(&p, b), 1);
    assert_int_equal(depth_events(&p), 2);
    assert_int_equal(depth_bytes(&p), 25);
    sr_partition_deinit(&p);
}

/* ---- slice ownership ---- */

static void every_pushed_slice_is_released_exactly_once(void **state)
{
    struct sr_partition p;
    struct tracker t = {0};
    (void)state;
    assert_int_equal(sr_partition_init(&p, 8, BIG, 3, NULL), 0);
    for (int i = 0; i < 8; i++) assert_int_equal(push_tracked(&p, &t, 8, 16, (uint8_t)i, 0), 0);
    assert_int_equal(push_tracked(&p, &t, 8, 16, 8, 0), -1); /* full: returned to us */
    assert_events_released(&t, 8, 1);

    /* cutting moves events, it neither refs nor unrefs */
    struct sr_batch *a = cut_n(&p, 2, 0);
    struct sr_batch *b = cut_n(&p, 3, 0);
    assert_events_alive(&t, 0, 8);

    assert_int_equal(sr_partition_complete(&p, b), 3);
    assert_events_released(&t, 2, 3);
    assert_events_alive(&t, 0, 2);
    assert_events_alive(&t, 5, 3);

    /* refill the room b made, cut part of it; a stays in flight */
    for (int i = 9; i < 12; i++) assert_int_equal(push_tracked(&p, &t, 8, 16, (uint8_t)i, 0), 0);
    struct sr_batch *c = cut_n(&p, 4, 0); /* events 5, 6, 7, 9 */
    assert_int_equal(batch_tag(c, 3), 9);
    assert_events_alive(&t, 0, 2);
    assert_events_alive(&t, 5, 3);
    assert_events_alive(&t, 9, 3);

    /* deinit releases the rest: a (0-1), c (5-7, 9), queued (10-11) */
    assert_true(a->used);
    sr_partition_deinit(&p);
    assert_events_released(&t, 0, 2);
    assert_events_released(&t, 5, 3);
    assert_events_released(&t, 9, 3);
    assert_all_settled(&t);
}

static void deinit_releases_events_still_held(void **state)
{
    struct sr_partition p;
    struct tracker t = {0};
    (void)state;
    assert_int_equal(sr_partition_init(&p, 8, BIG, 2, NULL), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(push_tracked(&p, &t, 40, 100, (uint8_t)i, 0), 0);
    struct sr_batch *b = cut_n(&p, 2, 0);
    cut_n(&p, 2, 0); /* in flight at deinit */
    assert_int_equal(sr_partition_complete(&p, b), 2);
    assert_events_released(&t, 0, 2);
    assert_events_alive(&t, 2, 4);
    sr_partition_deinit(&p);
    assert_events_released(&t, 2, 4);
    assert_null(p.ring);
    assert_null(p.batches);
    sr_partition_deinit(&p); /* harmless twice */
    assert_all_settled(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(push_fails_when_event_bound_reached_and_takes_nothing),
        cmocka_unit_test(event_bound_is_max_events_not_ring_capacity),
        cmocka_unit_test(push_fails_when_byte_bound_would_be_exceeded),
        cmocka_unit_test(prefix_bytes_count_toward_the_bound),
        cmocka_unit_test(oversized_event_fits_only_into_an_empty_partition),
        cmocka_unit_test(events_in_batches_count_toward_both_bounds),
        cmocka_unit_test(budget_is_shared_refuses_a_nonempty_partition_and_complete_gives_it_back),
        cmocka_unit_test(budget_is_released_by_deinit_for_queued_and_batched_events),
        cmocka_unit_test(ready_on_empty_partition_is_zero_and_never_wakes),
        cmocka_unit_test(ready_waits_for_linger_of_the_oldest_event),
        cmocka_unit_test(ready_linger_restarts_from_the_next_unbatched_event),
        cmocka_unit_test(ready_cuts_at_max_events_without_waiting),
        cmocka_unit_test(ready_cuts_when_bytes_reach_max_and_stops_before_exceeding),
        cmocka_unit_test(ready_cuts_when_bytes_reach_max_exactly),
        cmocka_unit_test(ready_counts_only_queued_bytes_not_bytes_in_batches),
        cmocka_unit_test(ready_takes_one_oversized_event_alone),
        cmocka_unit_test(ready_with_flush_cuts_at_once),
        cmocka_unit_test(ready_is_zero_without_a_free_batch_slot),
        cmocka_unit_test(cut_moves_the_oldest_unbatched_events_into_the_batch),
        cmocka_unit_test(complete_releases_the_batch_and_makes_room),
        cmocka_unit_test(out_of_order_completion_releases_at_once),
        cmocka_unit_test(stuck_batch_does_not_block_pushes),
        cmocka_unit_test(freed_batch_slot_is_reused_by_the_next_cut),
        cmocka_unit_test(ring_wraps_around_with_batches_completing_in_any_order),
        cmocka_unit_test(depth_counters_follow_push_and_complete),
        cmocka_unit_test(every_pushed_slice_is_released_exactly_once),
        cmocka_unit_test(deinit_releases_events_still_held),
    };
    return cmocka_run_group_tests_name("partition", tests, sr_test_grpc_setup,
                                       sr_test_grpc_teardown);
}
