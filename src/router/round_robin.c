/* Round-robin per batch: each worker/pipe instance walks the node list in
 * order, skipping nodes that are ejected or already tried for this batch. */
#include <stdlib.h>

#include "skyrelay/router.h"

struct rr {
    struct sr_balancer super;
    size_t cursor;
};

static struct sr_balancer *rr_create(struct sr_upstream *up, const struct sr_balancer_opts *opts)
{
    struct rr *r = calloc(1, sizeof(*r));
    (void)opts;
    if (!r) return NULL;
    r->super.type = &sr_balancer_round_robin;
    r->super.up = up;
    return &r->super;
}

static void rr_destroy(struct sr_balancer *b)
{
    free(b);
}

static struct sr_node *rr_pick(struct sr_balancer *b, uint64_t key, uint64_t tried, int64_t now_ms,
                               int64_t *retry_at_ms)
{
    struct rr *r = (struct rr *)b;
    size_t n = b->up->n_nodes;

    (void)key;
    for (size_t i = 0; i < n; i++) {
        struct sr_node *node = &b->up->nodes[(r->cursor + i) % n];
        if (!sr_node_is_up(node, now_ms) || (tried & sr_node_bit(node))) continue;
        r->cursor = (r->cursor + i + 1) % n;
        return node;
    }
    *retry_at_ms = sr_router_earliest_up(b->up);
    return NULL;
}

const struct sr_balancer_type sr_balancer_round_robin = {
    .name = "round_robin",
    .create = rr_create,
    .destroy = rr_destroy,
    .pick = rr_pick,
};
