/* The registry of balancers, and helpers shared by them. */
#include <stdint.h>
#include <string.h>

#include "skyrelay/router.h"

static const struct sr_balancer_type *const registry[] = {
    &sr_balancer_round_robin,
    &sr_balancer_weighted_round_robin,
    &sr_balancer_fixed,
    &sr_balancer_least_loaded,
};

const struct sr_balancer_type *sr_balancer_find(const char *name)
{
    for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

int64_t sr_router_earliest_up(const struct sr_upstream *up)
{
    int64_t best = INT64_MAX;
    for (size_t i = 0; i < up->n_nodes; i++) {
        int64_t t;
        if (!sr_node_present(&up->nodes[i])) continue; /* gone nodes never come back by time */
        t = atomic_load_explicit(&up->nodes[i].down_until_ms, memory_order_relaxed);
        if (t < best) best = t;
    }
    return best;
}
