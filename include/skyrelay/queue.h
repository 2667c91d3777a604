/* A worker's partition of a pipe queue: a ring of events bounded by event
 * count AND bytes, plus the batches cut from it.
 *
 * Events stay in the ring from the moment a receiver pushes them until the
 * upstream call that carries them ends OK (at-least-once): the ring is
 *
 *     head ........ next ........ tail
 *     [in batches, in flight]  [queued, not yet batched]
 *
 * Batches are cut in order from `next` and may complete out of order; `head`
 * advances over the oldest completed batches and releases their events. The
 * bounds cover both regions, so a slow or dead upstream fills the ring and the
 * receivers push back on the agents.
 *
 * Single-threaded: a partition belongs to one worker. The depth fields are
 * _Atomic only so that a metrics scrape on another thread can read them. */
#ifndef SKYRELAY_QUEUE_H
#define SKYRELAY_QUEUE_H

#include <grpc/slice.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A worker's share of queue.total_max_bytes, shared by all its pipes: the
 * events queued and in flight, the messages held by paused calls, and the
 * buffers of sync/relay calls. Single writer (the worker); `used` is atomic
 * only for scrapes. */
struct sr_budget {
    uint64_t max;
    _Atomic uint64_t used;
};

static inline void sr_budget_charge(struct sr_budget *b, uint64_t n)
{
    atomic_store_explicit(&b->used, atomic_load_explicit(&b->used, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void sr_budget_release(struct sr_budget *b, uint64_t n)
{
    uint64_t u = atomic_load_explicit(&b->used, memory_order_relaxed);
    atomic_store_explicit(&b->used, u >= n ? u - n : 0, memory_order_relaxed);
}

/* Event flags */
#define SR_EV_FRAGMENT 0x1 /* body is already a sequence of field-1 records (MeterDataCollection) */

struct sr_event {
    grpc_slice prefix; /* context fields to prepend; may be empty (owned ref) */
    grpc_slice body;   /* the message bytes as received (owned ref) */
    uint64_t key;      /* group / route key, 0 = none */
    int64_t arrival_ms;
    uint32_t bytes; /* prefix + body */
    uint32_t items; /* telemetry items in the event (segments, log records, meter data, ALS messages) */
    uint8_t flags;
};

enum sr_batch_state { SR_BATCH_FREE = 0, SR_BATCH_SENDING, SR_BATCH_WAIT, SR_BATCH_DONE };

struct sr_group {
    uint64_t key;
    uint32_t off; /* into sr_batch.order */
    uint32_t n;
    uint8_t done;     /* delivered */
    uint8_t assigned; /* scratch: already put into a call of this attempt */
    void *node;       /* node of the current attempt (struct sr_node *) */
};

struct sr_batch {
    enum sr_batch_state state;
    uint64_t start; /* ring position of the first event */
    uint32_t count;
    uint32_t items;
    uint64_t bytes;
    uint32_t attempts;
    int64_t first_attempt_ms;
    int64_t not_before_ms; /* SR_BATCH_WAIT: earliest retry */
    uint64_t tried;        /* bitmap of node indexes whose call failed in the current round */
    /* grouping (filled by the sender on the first attempt; one group when the
     * pipe neither groups nor routes by key) */
    uint32_t *order; /* event offsets (0..count) grouped by key, stable */
    struct sr_group *groups;
    uint32_t n_groups;
    uint32_t calls_pending;
    int failed_status; /* worst status of this attempt's calls, 0 = all OK */
};

struct sr_partition {
    struct sr_event *ring;
    uint32_t cap; /* power of two >= max_events */
    uint32_t max_events;
    uint64_t max_bytes;
    uint64_t head, next, tail;
    uint64_t unbatched_bytes;
    _Atomic uint64_t depth_events; /* tail - head, for scrapes */
    _Atomic uint64_t depth_bytes;
    struct sr_batch *batches; /* ring of max_inflight batch slots, cut in order */
    uint32_t n_slots;
    uint32_t slot_head; /* oldest batch */
    uint32_t slot_count;
};

/* Initializes p for max_events / max_bytes and max_inflight batches.
 * Returns 0 or -ENOMEM. */
int sr_partition_init(struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                      uint32_t max_inflight);

/* Releases every event still held (their slices) and the storage. */
void sr_partition_deinit(struct sr_partition *p);

/* True if an event of `bytes` fits now. An event always fits into an empty
 * partition (so one message larger than max_bytes is not refused forever). */
bool sr_partition_has_room(const struct sr_partition *p, uint32_t bytes);

/* Appends an event; TAKES prefix and body on success. Returns 0, or -1 when
 * there is no room (nothing taken). */
int sr_partition_push(struct sr_partition *p, grpc_slice prefix, grpc_slice body, uint64_t key,
                      uint32_t items, uint8_t flags, int64_t now_ms);

static inline uint32_t sr_partition_unbatched(const struct sr_partition *p)
{
    return (uint32_t)(p->tail - p->next);
}

static inline struct sr_event *sr_partition_at(const struct sr_partition *p, uint64_t pos)
{
    return &p->ring[pos & (p->cap - 1)];
}

/* Decides whether a batch should be cut now: the unbatched events reach
 * max_events or max_bytes, or the oldest is linger_ms old, or `flush` is set
 * (drain). Also requires a free batch slot. Returns the number of events the
 * batch would take (0 = not now). *wake_ms gets the time at which the linger
 * rule fires (INT64_MAX if nothing waits). */
uint32_t sr_partition_ready(const struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                            uint32_t linger_ms, bool flush, int64_t now_ms, int64_t *wake_ms);

/* Cuts the next `count` unbatched events into a new batch slot (state SENDING)
 * and returns it. Call only after sr_partition_ready returned count > 0. */
struct sr_batch *sr_partition_cut(struct sr_partition *p, uint32_t count, int64_t now_ms);

/* Marks b delivered (or given up) and releases every leading completed batch.
 * Returns the number of events released (room made). */
uint32_t sr_partition_complete(struct sr_partition *p, struct sr_batch *b);

/* Iterates the batch slots in cut order: i in [0, slot_count). */
static inline struct sr_batch *sr_partition_batch(const struct sr_partition *p, uint32_t i)
{
    return &p->batches[(p->slot_head + i) % p->n_slots];
}

#endif
