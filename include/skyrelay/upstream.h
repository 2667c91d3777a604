/* Upstream OAP nodes: one gRPC channel per node (channels are thread-safe and
 * shared by all workers), and the node's health as seen by the senders.
 *
 * Health is shared across workers through atomics: a failed call ejects the
 * node for an exponential backoff with jitter; a successful call restores it.
 * The node set is static in this version (finders come later). */
#ifndef SKYRELAY_UPSTREAM_H
#define SKYRELAY_UPSTREAM_H

#include <grpc/grpc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/config.h"

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
};

struct sr_upstream {
    struct sr_node *nodes;
    size_t n_nodes;
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
};

/* Creates one channel per configured node. Call after grpc_init. Returns 0 or -1. */
int sr_upstream_init(struct sr_upstream *up, const struct sr_config *cfg);
void sr_upstream_deinit(struct sr_upstream *up);

static inline bool sr_node_is_up(const struct sr_node *n, int64_t now_ms)
{
    return atomic_load_explicit(&n->down_until_ms, memory_order_relaxed) <= now_ms;
}

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
