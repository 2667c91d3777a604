/* Bounded event FIFO with batches that own their events and complete in any
 * order. See include/skyrelay/queue.h. */
#include "skyrelay/queue.h"

#include "skyrelay/disklog.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sr_partition_init(struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                      uint32_t max_inflight, struct sr_budget *budget)
{
    uint32_t cap = 1;
    memset(p, 0, sizeof(*p));
    if (max_events == 0) max_events = 1;
    if (max_inflight == 0) max_inflight = 1;
    while (cap < max_events) cap <<= 1;
    p->ring = calloc(cap, sizeof(*p->ring));
    p->batches = calloc(max_inflight, sizeof(*p->batches));
    if (!p->ring || !p->batches) {
        free(p->ring);
        free(p->batches);
        p->ring = NULL;
        p->batches = NULL;
        return -ENOMEM;
    }
    p->cap = cap;
    p->max_events = max_events;
    p->max_bytes = max_bytes;
    p->n_slots = max_inflight;
    p->budget = budget;
    return 0;
}

static void release_event(struct sr_event *e)
{
    grpc_slice_unref(e->prefix);
    grpc_slice_unref(e->body);
    e->prefix = grpc_empty_slice();
    e->body = grpc_empty_slice();
}

static void publish_depth(struct sr_partition *p)
{
    atomic_store_explicit(&p->depth_events, p->held_events, memory_order_relaxed);
    atomic_store_explicit(&p->depth_bytes, p->held_bytes, memory_order_relaxed);
}

void sr_partition_deinit(struct sr_partition *p)
{
    if (!p->ring) return;
    for (uint64_t pos = p->head; pos != p->tail; pos++) release_event(sr_partition_at(p, pos));
    for (uint32_t i = 0; i < p->n_slots; i++) {
        struct sr_batch *b = &p->batches[i];
        if (b->used)
            for (uint32_t k = 0; k < b->count; k++) release_event(&b->ev[k]);
        free(b->ev);
        free(b->order);
        free(b->units);
    }
    if (p->budget) sr_budget_release(p->budget, p->held_bytes);
    free(p->ring);
    free(p->batches);
    memset(p, 0, sizeof(*p));
}

bool sr_partition_has_room(const struct sr_partition *p, uint32_t bytes)
{
    if (p->held_events >= p->max_events) return false;
    if (p->held_events == 0) return true;
    if (p->held_bytes + bytes > p->max_bytes) return false;
    if (p->budget &&
        atomic_load_explicit(&p->budget->used, memory_order_relaxed) + bytes > p->budget->max)
        return false;
    return true;
}

static void ring_push(struct sr_partition *p, grpc_slice prefix, grpc_slice body, uint64_t key,
                      uint32_t items, uint8_t flags, int64_t arrival_ms, uint64_t seq)
{
    uint32_t bytes = (uint32_t)(GRPC_SLICE_LENGTH(prefix) + GRPC_SLICE_LENGTH(body));
    struct sr_event *e = sr_partition_at(p, p->tail);
    e->prefix = prefix;
    e->body = body;
    e->key = key;
    e->arrival_ms = arrival_ms;
    e->bytes = bytes;
    e->items = items;
    e->flags = flags;
    e->seq = seq;
    p->tail++;
    p->queued_bytes += bytes;
    p->held_events++;
    p->held_bytes += bytes;
    if (p->budget) sr_budget_charge(p->budget, bytes);
    publish_depth(p);
}

int sr_partition_push(struct sr_partition *p, grpc_slice prefix, grpc_slice body, uint64_t key,
                      uint32_t items, uint8_t flags, int64_t now_ms)
{
    uint32_t bytes = (uint32_t)(GRPC_SLICE_LENGTH(prefix) + GRPC_SLICE_LENGTH(body));
    int64_t seq = 0;

    if (p->disk) {
        /* in order: while older events wait on disk, a new one waits behind them */
        bool spill = sr_disklog_backlog(p->disk) || !sr_partition_has_room(p, bytes);
        seq = sr_disklog_append(p->disk, prefix, body, key, items, flags, now_ms, spill, now_ms);
        if (seq < 0) return -1;
        if (spill) {
            grpc_slice_unref(prefix);
            grpc_slice_unref(body);
            return 0;
        }
    } else if (!sr_partition_has_room(p, bytes)) {
        return -1;
    }
    ring_push(p, prefix, body, key, items, flags, now_ms, (uint64_t)seq);
    return 0;
}

uint32_t sr_partition_refill(struct sr_partition *p)
{
    uint32_t n = 0, bytes;
    while (p->disk && sr_disklog_peek(p->disk, &bytes) == 1 && sr_partition_has_room(p, bytes)) {
        grpc_slice prefix, body;
        uint64_t key, seq;
        uint32_t items;
        uint8_t flags;
        int64_t arrival_ms;
        sr_disklog_take(p->disk, &prefix, &body, &key, &items, &flags, &arrival_ms, &seq);
        ring_push(p, prefix, body, key, items, flags, arrival_ms, seq);
        n++;
    }
    return n;
}

bool sr_partition_empty(const struct sr_partition *p)
{
    return p->held_events == 0 && !(p->disk && sr_disklog_backlog(p->disk));
}

uint32_t sr_partition_ready(const struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                            uint32_t linger_ms, bool flush, int64_t now_ms, int64_t *wake_ms)
{
    uint32_t n = sr_partition_unbatched(p), take = 0;
    uint64_t bytes = 0;
    int64_t due;

    *wake_ms = INT64_MAX;
    if (n == 0) return 0;
    due = sr_partition_at(p, p->head)->arrival_ms + linger_ms;
    if (p->slots_used == p->n_slots) {
        /* No free slot: a completion will call us again; the linger time is moot. */
        return 0;
    }
    if (n < max_events && p->queued_bytes < max_bytes && !flush && now_ms < due) {
        *wake_ms = due;
        return 0;
    }
    /* Take up to max_events, and stop before exceeding max_bytes (but always >= 1). */
    while (take < n && take < max_events) {
        uint32_t b = sr_partition_at(p, p->head + take)->bytes;
        if (take > 0 && bytes + b > max_bytes) break;
        bytes += b;
        take++;
    }
    return take;
}

struct sr_batch *sr_partition_cut(struct sr_partition *p, uint32_t count, int64_t now_ms)
{
    struct sr_batch *b = NULL;

    for (uint32_t i = 0; i < p->n_slots; i++)
        if (!p->batches[i].used) {
            b = &p->batches[i];
            break;
        }
    if (!b) return NULL;
    if (b->ev_cap < count) {
        struct sr_event *ev = realloc(b->ev, sizeof(*ev) * count);
        if (!ev) return NULL;
        b->ev = ev;
        b->ev_cap = count;
    }
    b->used = true;
    b->count = count;
    b->items = 0;
    b->bytes = 0;
    b->sends = 0;
    b->first_attempt_ms = now_ms;
    b->n_units = 0;
    b->calls_pending = 0;
    b->last_status = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct sr_event *e = sr_partition_at(p, p->head + i);
        b->ev[i] = *e;
        e->prefix = grpc_empty_slice();
        e->body = grpc_empty_slice();
        b->bytes += b->ev[i].bytes;
        b->items += b->ev[i].items;
    }
    p->head += count;
    p->queued_bytes -= b->bytes;
    p->slots_used++;
    return b;
}

uint32_t sr_partition_complete(struct sr_partition *p, struct sr_batch *b)
{
    uint32_t released = b->count;

    if (!b->used) return 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (p->disk && !(b->ev[i].flags & SR_EV_KEEP)) sr_disklog_ack(p->disk, b->ev[i].seq);
        release_event(&b->ev[i]);
    }
    p->held_events -= b->count;
    p->held_bytes -= b->bytes;
    if (p->budget) sr_budget_release(p->budget, b->bytes);
    b->used = false;
    b->count = 0;
    b->n_units = 0;
    p->slots_used--;
    publish_depth(p);
    return released;
}
