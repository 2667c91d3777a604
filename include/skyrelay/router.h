/* Routing: which upstream node a batch goes to.
 *
 * A balancer is a const table of functions (struct sr_balancer_type) and an
 * instance whose first member is `struct sr_balancer` (h2o style). Instances
 * are per worker and per pipe, so picking needs no lock; node health is read
 * from the shared node atomics. Implementations are listed in router.c. */
#ifndef SKYRELAY_ROUTER_H
#define SKYRELAY_ROUTER_H

#include <stdint.h>

#include "skyrelay/upstream.h"

struct sr_balancer;

struct sr_balancer_type {
    const char *name;
    /* returns owned, or NULL on allocation failure */
    struct sr_balancer *(*create)(struct sr_upstream *up);
    void (*destroy)(struct sr_balancer *b);
    /* Picks a node that is up at now_ms and not in `tried` (bit i = node index
     * i % 64). Returns NULL when none qualifies; then *retry_at_ms is the
     * earliest time a node comes back (INT64_MAX when unknown). */
    struct sr_node *(*pick)(struct sr_balancer *b, uint64_t key, uint64_t tried, int64_t now_ms,
                            int64_t *retry_at_ms);
};

struct sr_balancer {
    const struct sr_balancer_type *type;
    struct sr_upstream *up;
};

extern const struct sr_balancer_type sr_balancer_round_robin;

/* Finds a balancer type by its config name ("round_robin"). NULL if unknown. */
const struct sr_balancer_type *sr_balancer_find(const char *name);

static inline uint64_t sr_node_bit(const struct sr_node *n)
{
    return 1ULL << (n->index % 64);
}

/* Earliest down_until over all nodes (helper for balancers). */
int64_t sr_router_earliest_up(const struct sr_upstream *up);

#endif
