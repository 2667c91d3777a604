/* Smooth weighted round-robin, with nginx's semantics
 * (ngx_http_upstream_get_peer in ngx_http_upstream_round_robin.c).
 *
 * Each pick adds every eligible node's effective weight to its current
 * weight, takes the node with the highest current weight (the first in list
 * order on a tie) and subtracts the sum of the effective weights from it.
 * Over sum(weights) picks each node is chosen exactly weight times, spread
 * out: weights 5,1,1 give a a b a c a a. Ejected and already tried nodes are
 * not eligible and their current weight stands still.
 *
 * A reported failure lowers the node's effective weight, and so its share,
 * by max(1, weight / 4), never below 1; each reported success raises it by 1
 * up to the configured weight. Two departures from nginx, and why:
 * - nginx subtracts weight / max_fails, which with its default max_fails = 1
 *   is the whole weight. Here the sender also ejects a failed node for a
 *   backoff, so the penalty only has to shape the ramp back: a quarter per
 *   failure needs four failures in a row to reach the floor, and one
 *   transient error costs a node a quarter of its share, not all of it.
 * - nginx restores one unit of effective weight each time a node is merely
 *   considered by a pick, whatever the outcome. Here it is restored by
 *   successes only, so a node that keeps failing stays down-weighted. The
 *   floor of 1 keeps a trickle of traffic on the node to prove itself with.
 *
 * State is per instance (per worker and pipe) and indexed by node index, so
 * reports only shape the picks of the worker that saw them. */
#include <stdlib.h>

#include "skyrelay/router.h"

/* A failure costs max(1, weight / SWRR_FAIL_DIVISOR) of effective weight. */
#define SWRR_FAIL_DIVISOR 4

struct peer {
    int64_t current;
    int32_t effective;
    int32_t weight;
};

struct swrr {
    struct sr_balancer super;
    size_t n;
    struct peer peer[];
};

static struct sr_balancer *swrr_create(struct sr_upstream *up, const struct sr_balancer_opts *opts)
{
    struct swrr *s = calloc(1, sizeof(*s) + up->n_nodes * sizeof(s->peer[0]));

    (void)opts;
    if (!s) return NULL;
    s->super.type = &sr_balancer_weighted_round_robin;
    s->super.up = up;
    s->n = up->n_nodes;
    for (size_t i = 0; i < s->n; i++) {
        /* config bounds weights to 1..1000; 0 would starve the node forever */
        int32_t w = up->nodes[i].weight ? (int32_t)up->nodes[i].weight : 1;
        s->peer[i].weight = w;
        s->peer[i].effective = w;
    }
    return &s->super;
}

static void swrr_destroy(struct sr_balancer *b)
{
    free(b);
}

static struct sr_node *swrr_pick(struct sr_balancer *b, uint64_t key, uint64_t tried,
                                 int64_t now_ms, int64_t *retry_at_ms)
{
    struct swrr *s = (struct swrr *)b;
    struct peer *best = NULL;
    struct sr_node *pick = NULL;
    int64_t total = 0;

    (void)key;
    for (size_t i = 0; i < s->n; i++) {
        struct sr_node *node = &b->up->nodes[i];
        struct peer *p = &s->peer[i];
        if (!sr_node_is_up(node, now_ms) || (tried & sr_node_bit(node))) continue;
        p->current += p->effective;
        total += p->effective;
        if (!best || p->current > best->current) {
            best = p;
            pick = node;
        }
    }
    if (!best) {
        *retry_at_ms = sr_router_earliest_up(b->up);
        return NULL;
    }
    best->current -= total;
    return pick;
}

/* Position of n in the node set, or s->n if it is not one of ours. */
static size_t position(const struct swrr *s, const struct sr_node *n)
{
    size_t i = n->index;
    if (i < s->n && &s->super.up->nodes[i] == n) return i; /* the usual case */
    for (i = 0; i < s->n; i++)
        if (&s->super.up->nodes[i] == n) break;
    return i;
}

static void swrr_report(struct sr_balancer *b, struct sr_node *n, bool ok)
{
    struct swrr *s = (struct swrr *)b;
    size_t i = position(s, n);
    struct peer *p;

    if (i == s->n) return; /* not a node of this set */
    p = &s->peer[i];
    if (ok) {
        if (p->effective < p->weight) p->effective++;
    } else {
        int32_t cut = p->weight / SWRR_FAIL_DIVISOR;
        p->effective -= cut > 1 ? cut : 1;
        if (p->effective < 1) p->effective = 1;
    }
}

const struct sr_balancer_type sr_balancer_weighted_round_robin = {
    .name = "weighted_round_robin",
    .create = swrr_create,
    .destroy = swrr_destroy,
    .pick = swrr_pick,
    .report = swrr_report,
};
