/* Upstream OAP nodes: one gRPC channel per node (channels are thread-safe and
 * shared by all workers), and the node's health as seen by the senders.
 *
 * Health is shared across workers through atomics: a failed call ejects the
 * node for an exponential backoff with jitter; a successful call restores it.
 *
 * The node set can change at run time (discovery): nodes live in a fixed array
 * of slots that never moves, so a worker's pointer to a node stays valid. The
 * main thread applies a new list with sr_upstream_apply: a node that left is
 * marked `gone` (every balancer skips it: sr_node_is_up is false; its channel
 * stays until the slot is reused, at least 60 s later and only with no call in
 * flight); a new node takes a free slot with a new channel; then the set's
 * generation is bumped and every worker rebuilds its balancers on its next
 * loop turn. Batches bound to a gone node go to the next candidate. */
#ifndef SKYRELAY_UPSTREAM_H
#define SKYRELAY_UPSTREAM_H

#include <grpc/grpc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/config.h"

#define SR_MAX_NODES 4096 /* node slots (distinct addresses seen, reused after 60 s gone) */

struct sr_node {
    char *address; /* owned */
    uint32_t weight;
    uint32_t index; /* position in sr_upstream.nodes */
    grpc_channel *channel;
    _Atomic int64_t down_until_ms; /* 0 = up */
    _Atomic uint32_t failures;     /* consecutive */
    _Atomic uint64_t sent_events;
    _Atomic uint64_t sent_batches;
    _Atomic uint64_t failed_calls;
    _Atomic int gone;      /* left the node set (discovery); 0 for a present node */
    _Atomic int inflight;  /* upstream calls using the channel now */
    int64_t gone_since_ms; /* main thread */
};

struct sr_upstream {
    struct sr_node *nodes; /* SR_MAX_NODES slots (tests: any array) */
    _Atomic size_t n_nodes; /* slots in use (present or gone) */
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    _Atomic uint64_t gen;   /* bumped by every change of the node set */
    int max_recv;           /* channel arg for new nodes */
    uint64_t present;       /* main thread: nodes present after the last apply */
};

/* Creates one channel per configured node. Call after grpc_init. Returns 0 or -1. */
int sr_upstream_init(struct sr_upstream *up, const struct sr_config *cfg);
void sr_upstream_deinit(struct sr_upstream *up);

/* Present in the node set and not ejected. */
static inline bool sr_node_is_up(const struct sr_node *n, int64_t now_ms)
{
    return !atomic_load_explicit(&n->gone, memory_order_acquire) &&
           atomic_load_explicit(&n->down_until_ms, memory_order_relaxed) <= now_ms;
}

static inline bool sr_node_present(const struct sr_node *n)
{
    return !atomic_load_explicit(&n->gone, memory_order_acquire);
}

/* Makes `nodes` the node set (main thread; borrows nodes). Nodes already
 * present keep their channel, health and counters; the others are marked gone.
 * Returns the number of changes (0 = same set). */
size_t sr_upstream_apply(struct sr_upstream *up, const struct sr_node_config *nodes, size_t n,
                         int64_t now_ms);

/* Records the outcome of a call to n. A failure ejects n for
 * min(initial * 2^(failures-1), max) ms with +-20% jitter drawn from *rng.
 * Any thread. */
void sr_node_report(struct sr_upstream *up, struct sr_node *n, bool ok, int64_t now_ms,
                    uint64_t *rng);

/* The backoff for the k-th consecutive failure (k >= 1), before jitter. Pure. */
uint32_t sr_backoff_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t k);

/* xorshift64* step; *state must be non-zero. */
uint64_t sr_rand64(uint64_t *state);

#endif
