/* Routing: which upstream node a batch goes to.
 *
 * A balancer is a const table of functions (struct sr_balancer_type) and an
 * instance whose first member is `struct sr_balancer` (h2o style). Instances
 * are per worker and per pipe, so picking needs no lock; node health is read
 * from the shared node atomics. Implementations are listed in router.c.
 *
 * An instance is bound to one node set (struct sr_upstream). When the node
 * set changes, a new instance is created for the new set (its nodes may be in
 * any order) and may inherit the per-key state of the instance it replaces. */
#ifndef SKYRELAY_ROUTER_H
#define SKYRELAY_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/upstream.h"

struct sr_balancer;

/* Create-time options. A NULL pointer, or a field left 0, means the default. */
struct sr_balancer_opts {
    uint32_t lru_size;   /* "fixed": most keys pinned (SR_LRU_DEFAULT_SIZE: 5000) */
    uint32_t lru_ttl_ms; /* "fixed": an unused pin expires after (SR_LRU_DEFAULT_TTL_MS: 180 s) */
};

struct sr_balancer_type {
    const char *name;
    /* Routes by the event key: batches are split into key groups, each
     * picked on its own (and never moved to another node to even out load). */
    bool keyed;
    /* Returns owned, or NULL on allocation failure. Borrows up (must outlive
     * the instance) and opts (only during the call; may be NULL). */
    struct sr_balancer *(*create)(struct sr_upstream *up, const struct sr_balancer_opts *opts);
    void (*destroy)(struct sr_balancer *b);
    /* Picks a node that is up at now_ms and not in `tried` (bit i = node index
     * i % 64). Returns NULL when none qualifies; then *retry_at_ms is the
     * earliest time a node comes back (INT64_MAX when unknown). */
    struct sr_node *(*pick)(struct sr_balancer *b, uint64_t key, uint64_t tried, int64_t now_ms,
                            int64_t *retry_at_ms);
    /* Optional (NULL: outcomes do not matter to this balancer). The outcome
     * of a call to n, a node of b->up, picked by b. Call through
     * sr_balancer_report(). */
    void (*report)(struct sr_balancer *b, struct sr_node *n, bool ok);
    /* Optional (NULL: nothing to carry over). Moves the per-key state of
     * prev, an instance of the same type bound to the previous node set, into
     * the fresh instance b; the caller then destroys prev. Node identities,
     * not positions, carry over, so the two node sets may differ in members
     * and order. Call through sr_balancer_inherit(). */
    void (*inherit)(struct sr_balancer *b, struct sr_balancer *prev);
};

struct sr_balancer {
    const struct sr_balancer_type *type;
    struct sr_upstream *up;
};

/* "round_robin": in list order, per batch; ignores the key. */
extern const struct sr_balancer_type sr_balancer_round_robin;
/* "weighted_round_robin": smooth weighted round-robin (nginx); ignores the
 * key; a reported failure lowers the node's share, successes restore it. */
extern const struct sr_balancer_type sr_balancer_weighted_round_robin;
/* "fixed": weighted rendezvous hashing of the key over node identities, with
 * an LRU that pins live keys to their node across node set changes. */
extern const struct sr_balancer_type sr_balancer_fixed;
/* "least_loaded": power of two random choices among the eligible nodes; the
 * lower (calls in flight + 1) x peak-EWMA latency / weight wins, latencies
 * within twice the median counting as equal and a node without a sample as
 * the median one; ignores the key. */
extern const struct sr_balancer_type sr_balancer_least_loaded;

/* Reseeds the random draws of b, a "least_loaded" instance (instances are
 * seeded apart at create; tests use this for reproducible picks). The thread
 * that owns b. */
void sr_least_loaded_seed(struct sr_balancer *b, uint64_t seed);

/* Finds a balancer type by its config name ("round_robin",
 * "weighted_round_robin", "fixed", "least_loaded"). NULL if unknown. */
/* The balancer of routing policy `policy` (enum sr_routing_policy, the index of
 * its line in SR_ROUTING_POLICIES), or NULL. Static storage, any thread. */
const struct sr_balancer_type *sr_balancer_for_policy(int policy);

const struct sr_balancer_type *sr_balancer_find(const char *name);

/* Tells b the outcome of a call to n (a node b picked). No-op for balancers
 * without a report callback. The thread that owns b. */
static inline void sr_balancer_report(struct sr_balancer *b, struct sr_node *n, bool ok)
{
    if (b->type->report) b->type->report(b, n, ok);
}

/* Moves prev's per-key state into the fresh instance b (see `inherit`). A
 * no-op when the types differ or the type carries nothing. prev is still
 * owned by the caller. The thread that owns both. */
static inline void sr_balancer_inherit(struct sr_balancer *b, struct sr_balancer *prev)
{
    if (prev && prev->type == b->type && b->type->inherit) b->type->inherit(b, prev);
}

static inline uint64_t sr_node_bit(const struct sr_node *n)
{
    return 1ULL << (n->index % 64);
}

/* Earliest down_until over all nodes (helper for balancers). */
int64_t sr_router_earliest_up(const struct sr_upstream *up);

/* The identity of a node for hashing: a 64-bit hash of its address string
 * (FNV-1a, then a 64-bit finalizer). Depends only on the bytes of the
 * address, so every replica and every instance agrees on it. Changing this
 * function moves keys between nodes: treat it as a wire format. Pure. */
uint64_t sr_node_id_hash(const char *address);

/* The rendezvous hash of key on the node with identity node_id: uniform over
 * 64 bits, independent across nodes. With equal weights the node with the
 * highest value owns the key. Pure. */
uint64_t sr_rendezvous_hash(uint64_t key, uint64_t node_id);

/* The weighted rendezvous score -weight / ln(u), u = the rendezvous hash
 * mapped into (0, 1): the node with the highest score owns the key, and a
 * node owns a weight / sum(weights) share of the keys. Monotonic in the
 * hash for a given weight. Pure. */
double sr_rendezvous_score(uint64_t key, uint64_t node_id, uint32_t weight);

#endif
