/* Bounded event ring with in-order batch cutting and out-of-order completion.
 * See include/skyrelay/queue.h. */
#include "skyrelay/queue.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sr_partition_init(struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                      uint32_t max_inflight)
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
    return 0;
}

static void release(struct sr_partition *p, uint64_t pos)
{
    struct sr_event *e = sr_partition_at(p, pos);
    grpc_slice_unref(e->prefix);
    grpc_slice_unref(e->body);
    e->prefix = grpc_empty_slice();
    e->body = grpc_empty_slice();
}

void sr_partition_deinit(struct sr_partition *p)
{
    if (!p->ring) return;
    for (uint64_t pos = p->head; pos != p->tail; pos++) release(p, pos);
    for (uint32_t i = 0; i < p->n_slots; i++) {
        free(p->batches[i].order);
        free(p->batches[i].groups);
    }
    free(p->ring);
    free(p->batches);
    memset(p, 0, sizeof(*p));
}

bool sr_partition_has_room(const struct sr_partition *p, uint32_t bytes)
{
    uint64_t n = p->tail - p->head;
    if (n >= p->max_events) return false;
    if (n == 0) return true;
    return atomic_load_explicit(&p->depth_bytes, memory_order_relaxed) + bytes <= p->max_bytes;
}

static void publish_depth(struct sr_partition *p, uint64_t bytes)
{
    atomic_store_explicit(&p->depth_events, p->tail - p->head, memory_order_relaxed);
    atomic_store_explicit(&p->depth_bytes, bytes, memory_order_relaxed);
}

int sr_partition_push(struct sr_partition *p, grpc_slice prefix, grpc_slice body, uint64_t key,
                      uint32_t items, uint8_t flags, int64_t now_ms)
{
    uint32_t bytes = (uint32_t)(GRPC_SLICE_LENGTH(prefix) + GRPC_SLICE_LENGTH(body));
    struct sr_event *e;

    if (!sr_partition_has_room(p, bytes)) return -1;
    e = sr_partition_at(p, p->tail);
    e->prefix = prefix;
    e->body = body;
    e->key = key;
    e->arrival_ms = now_ms;
    e->bytes = bytes;
    e->items = items;
    e->flags = flags;
    p->tail++;
    p->unbatched_bytes += bytes;
    publish_depth(p, atomic_load_explicit(&p->depth_bytes, memory_order_relaxed) + bytes);
    return 0;
}

uint32_t sr_partition_ready(const struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                            uint32_t linger_ms, bool flush, int64_t now_ms, int64_t *wake_ms)
{
    uint32_t n = sr_partition_unbatched(p), take = 0;
    uint64_t bytes = 0;
    int64_t due;

    *wake_ms = INT64_MAX;
    if (n == 0) return 0;
    due = sr_partition_at(p, p->next)->arrival_ms + linger_ms;
    if (p->slot_count == p->n_slots) {
        /* No free slot: a completion will call us again; the linger time is moot. */
        return 0;
    }
    if (n < max_events && p->unbatched_bytes < max_bytes && !flush && now_ms < due) {
        *wake_ms = due;
        return 0;
    }
    /* Take up to max_events, and stop before exceeding max_bytes (but always >= 1). */
    while (take < n && take < max_events) {
        uint32_t b = sr_partition_at(p, p->next + take)->bytes;
        if (take > 0 && bytes + b > max_bytes) break;
        bytes += b;
        take++;
    }
    return take;
}

struct sr_batch *sr_partition_cut(struct sr_partition *p, uint32_t count, int64_t now_ms)
{
    uint32_t slot = (p->slot_head + p->slot_count) % p->n_slots;
    struct sr_batch *b = &p->batches[slot];
    uint32_t *order = b->order;
    struct sr_group *groups = b->groups;

    memset(b, 0, sizeof(*b));
    b->order = order;
    b->groups = groups;
    b->state = SR_BATCH_SENDING;
    b->start = p->next;
    b->count = count;
    b->first_attempt_ms = now_ms;
    for (uint32_t i = 0; i < count; i++) {
        struct sr_event *e = sr_partition_at(p, p->next + i);
        b->bytes += e->bytes;
        b->items += e->items;
    }
    p->next += count;
    p->unbatched_bytes -= b->bytes;
    p->slot_count++;
    return b;
}

uint32_t sr_partition_complete(struct sr_partition *p, struct sr_batch *b)
{
    uint32_t released = 0;
    uint64_t bytes = atomic_load_explicit(&p->depth_bytes, memory_order_relaxed);

    b->state = SR_BATCH_DONE;
    while (p->slot_count > 0) {
        struct sr_batch *h = &p->batches[p->slot_head];
        if (h->state != SR_BATCH_DONE) break;
        for (uint32_t i = 0; i < h->count; i++) release(p, h->start + i);
        p->head = h->start + h->count;
        bytes -= h->bytes;
        released += h->count;
        h->state = SR_BATCH_FREE;
        p->slot_head = (p->slot_head + 1) % p->n_slots;
        p->slot_count--;
    }
    publish_depth(p, bytes);
    return released;
}
