/* The registry of balancers, and helpers shared by them. */
#include <stdint.h>
#include <string.h>

#include "skyrelay/config.h"
#include "skyrelay/router.h"

/* from the one list in config.h: registry[policy] implements routing policy `policy`
 * (test_balancer_contract checks that each type's name is the policy's name) */
static const struct sr_balancer_type *const registry[] = {
#define TYPE_(id, name, type) &type,
    SR_ROUTING_POLICIES(TYPE_)
#undef TYPE_
};

const struct sr_balancer_type *sr_balancer_for_policy(int policy)
{
    return policy >= 0 && policy < SR_ROUTE_COUNT ? registry[policy] : NULL;
}

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
