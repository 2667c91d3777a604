/* A worker's partition of a pipe queue: a FIFO of queued events plus the
 * batches in flight, bounded together by event count AND bytes.
 *
 *     ring: head ........ tail        queued, not yet batched (FIFO)
 *     batch slots: [b0] [b1] ...      cut from the ring, each owning its events
 *
 * Cutting a batch MOVES its events out of the ring into the batch slot, so a
 * batch holds only its own events: when it is acknowledged (or given up) its
 * memory and its share of the bounds are released at once, whatever the other
 * batches are doing. A batch stuck on a frozen node holds nothing but itself
 * (no head-of-line blocking). The bounds count what is held: queued + in
 * batches; the worker's budget (struct sr_budget) additionally sees paused
 * calls' messages and relay buffers.
 *
 * A batch is made of units: ranges of its events sent together (one per key
 * group at first; a unit is split in halves to isolate an event upstream
 * refuses). Each unit has its own state, so parts of one batch can be retried,
 * split or dropped independently (src/sender/sender.c).
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

struct sr_config;

/* queue.total_max_bytes resolved: the configured value, or (0 = auto) half of
 * the cgroup memory limit (v2 memory.max, v1 memory.limit_in_bytes) when one
 * is set, else 512 MiB. *source (may be NULL) says which. Any thread. */
uint64_t sr_queue_budget_total(const struct sr_config *cfg, const char **source);

/* Event flags */
#define SR_EV_FRAGMENT 0x1 /* body is already a sequence of field-1 records (MeterDataCollection) */
#define SR_EV_KEEP 0x80    /* released without being delivered or dropped for good (shutdown):
                            * its disk record stays, to be replayed at the next start */

struct sr_disklog;

struct sr_event {
    grpc_slice prefix; /* context fields to prepend; may be empty (owned ref) */
    grpc_slice body;   /* the message bytes as received (owned ref) */
    uint64_t key;      /* group / route key, 0 = none */
    int64_t arrival_ms;
    uint32_t bytes; /* prefix + body */
    uint32_t items; /* telemetry items in the event (segments, log records, meter data, ALS messages) */
    uint8_t flags;
    uint64_t seq;   /* its record in the partition's disk log (when it has one) */
};

enum sr_unit_state { SR_UNIT_PENDING = 0, SR_UNIT_SENDING, SR_UNIT_DONE, SR_UNIT_DROPPED };

struct sr_unit {
    uint64_t key;
    uint32_t off; /* into sr_batch.order */
    uint32_t n;
    uint8_t state;         /* enum sr_unit_state */
    uint8_t suspect;       /* refused as content: sent alone, split on the next refusal */
    uint8_t content_fails; /* content refusals at this size */
    uint8_t assigned;      /* scratch: put into a call of this round */
    uint64_t tried;        /* bits of the nodes that failed it (sr_node_bit) */
    int64_t not_before_ms; /* PENDING: earliest (re)send */
    void *node;            /* node of the current call (struct sr_node *) */
};

struct sr_batch {
    bool used;
    struct sr_event *ev; /* the batch's events, moved out of the ring (owned refs) */
    uint32_t ev_cap;
    uint32_t count;
    uint32_t items;
    uint64_t bytes;
    uint32_t sends;     /* calls started for it (> units: something was re-sent) */
    int64_t first_attempt_ms;
    /* units (filled by the sender on the first attempt) */
    uint32_t *order; /* event offsets (0..count) grouped by key, stable */
    struct sr_unit *units;
    uint32_t n_units, units_cap;
    uint32_t calls_pending;
    int last_status; /* last failed status, for logs */
};

struct sr_partition {
    struct sr_event *ring; /* queued events */
    uint32_t cap;          /* power of two >= max_events */
    uint32_t max_events;
    uint64_t max_bytes;
    uint64_t head, tail;   /* queued: [head, tail) */
    uint64_t queued_bytes;
    uint64_t held_events, held_bytes; /* queued + in batches */
    struct sr_budget *budget;         /* the worker's; NULL = none */
    _Atomic uint64_t depth_events;    /* held_events, for scrapes */
    _Atomic uint64_t depth_bytes;
    struct sr_batch *batches; /* max_inflight slots, any order */
    uint32_t n_slots;
    uint32_t slots_used;
    struct sr_disklog *disk;  /* queue.disk: every event is also in this log; NULL = memory only */
};

/* Initializes p for max_events / max_bytes and max_inflight batches; budget
 * (borrowed, may be NULL) is charged for every byte held. Returns 0 or -ENOMEM. */
int sr_partition_init(struct sr_partition *p, uint32_t max_events, uint64_t max_bytes,
                      uint32_t max_inflight, struct sr_budget *budget);

/* Releases every event still held (their slices) and the storage. */
void sr_partition_deinit(struct sr_partition *p);

/* True if an event of `bytes` fits now: under both bounds and the budget. An
 * event always fits into an empty partition (so one message larger than
 * max_bytes, or than what the budget has left, is not refused forever). */
bool sr_partition_has_room(const struct sr_partition *p, uint32_t bytes);

/* Appends an event; TAKES prefix and body on success. Returns 0, or -1 when
 * there is no room (nothing taken).
 * With a disk log, the event is first appended to it; it goes into memory
 * too while memory has room and no older event waits on disk, else it stays
 * on disk only (sr_partition_refill brings it in later). No room then means
 * the disk budget is reached (or a write failed). */
int sr_partition_push(struct sr_partition *p, grpc_slice prefix, grpc_slice body, uint64_t key,
                      uint32_t items, uint8_t flags, int64_t now_ms);

/* Moves events waiting in the disk log into memory, in order, while memory
 * has room. Returns how many moved. */
uint32_t sr_partition_refill(struct sr_partition *p);

/* Events held in memory or waiting on disk. */
bool sr_partition_empty(const struct sr_partition *p);

static inline uint32_t sr_partition_unbatched(const struct sr_partition *p)
{
    return (uint32_t)(p->tail - p->head);
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

/* Moves the next `count` queued events into a free batch slot and returns it
 * (NULL, nothing moved, when out of memory). Call only after
 * sr_partition_ready returned count > 0. */
struct sr_batch *sr_partition_cut(struct sr_partition *p, uint32_t count, int64_t now_ms);

/* Releases b's events (delivered or given up) and frees its slot; their disk
 * records are acknowledged, except those flagged SR_EV_KEEP.
 * Returns the number of events released (room made). */
uint32_t sr_partition_complete(struct sr_partition *p, struct sr_batch *b);

/* Event i of batch b. */
static inline struct sr_event *sr_batch_event(const struct sr_batch *b, uint32_t i)
{
    return &b->ev[i];
}

#endif
