/* "fixed": keyed routing by rendezvous (highest random weight) hashing.
 *
 * Every node gets a score for the key, computed from the key and the node's
 * identity (a hash of its address, never its list position); the key goes to
 * the node with the highest score, and when that node is down or already
 * tried, to the next one in score order. So every replica and every worker,
 * whatever order its node list is in, sends a key to the same node; removing
 * a node moves only its own keys, and adding one moves to it only the keys it
 * now scores highest for (1/N of them). With unequal weights the score is
 * -weight / ln(u), u the hash mapped into (0, 1), which gives each node a
 * weight / sum(weights) share (the exponential race: the node with the
 * smallest Exp(weight) draw -ln(u) / weight wins); with equal weights this
 * ranks nodes exactly like the raw hash, which is then compared directly.
 *
 * On top of the hash, an LRU pins each live key to the identity of the node
 * it was last sent to, so that a scale-out does not move series that are in
 * flight: a pinned key stays where it is until it goes unused for the TTL.
 * A pin to a node that is down, tried, or no longer in the node set is
 * replaced by the key's next node in rendezvous order. Pins are keyed by node
 * identity so that they survive into the instance built for the next node
 * set (sr_balancer_inherit). A pick is O(nodes) plus O(1) in the LRU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/wire.h"
#include "skyrelay/lru.h"
#include "skyrelay/router.h"

struct fixed {
    struct sr_balancer super;
    struct sr_lru *pins; /* key -> node identity */
    bool weighted;       /* the weights differ */
    size_t n;
    uint64_t id[]; /* sr_node_id_hash of nodes[i].address */
};

uint64_t sr_node_id_hash(const char *address)
{
    uint64_t h = 0xCBF29CE484222325ULL; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)address; *p; p++) {
        h ^= *p;
        h *= 0x100000001B3ULL;
    }
    return sr_mix64(h);
}

uint64_t sr_rendezvous_hash(uint64_t key, uint64_t node_id)
{
    return sr_mix64(key ^ node_id ^ 0x9E3779B97F4A7C15ULL);
}

static double score(uint64_t h, uint32_t weight)
{
    /* the top 53 bits, centred in their interval: u is never 0 or 1 */
    double u = ((double)(h >> 11) + 0.5) * 0x1p-53;
    return -(double)weight / log(u);
}

double sr_rendezvous_score(uint64_t key, uint64_t node_id, uint32_t weight)
{
    return score(sr_rendezvous_hash(key, node_id), weight);
}

static uint32_t weight_of(const struct sr_node *n)
{
    return n->weight ? n->weight : 1;
}

static struct sr_balancer *fixed_create(struct sr_upstream *up, const struct sr_balancer_opts *opts)
{
    struct fixed *f = calloc(1, sizeof(*f) + up->n_nodes * sizeof(f->id[0]));

    if (!f) goto fail;
    f->super.type = &sr_balancer_fixed;
    f->super.up = up;
    f->n = up->n_nodes;
    for (size_t i = 0; i < f->n; i++) {
        f->id[i] = sr_node_id_hash(up->nodes[i].address);
        if (weight_of(&up->nodes[i]) != weight_of(&up->nodes[0])) f->weighted = true;
    }
    f->pins = sr_lru_create(opts ? opts->lru_size : 0, opts ? opts->lru_ttl_ms : 0);
    if (!f->pins) goto fail;
    return &f->super;

fail:
    free(f);
    return NULL;
}

static void fixed_destroy(struct sr_balancer *b)
{
    struct fixed *f = (struct fixed *)b;
    sr_lru_destroy(f->pins);
    free(f);
}

static bool eligible(const struct sr_node *n, uint64_t tried, int64_t now_ms)
{
    return sr_node_is_up(n, now_ms) && !(tried & sr_node_bit(n));
}

/* Position of the node with identity id, or f->n if it left the set. */
static size_t find_id(const struct fixed *f, uint64_t id)
{
    size_t i = 0;
    while (i < f->n && f->id[i] != id) i++;
    return i;
}

/* Position of the eligible node that ranks highest for key, or f->n. Ties
 * (which need a 64-bit collision) go to the higher identity, then to the
 * greater address, so that list order never decides. */
static size_t rendezvous(struct fixed *f, uint64_t key, uint64_t tried, int64_t now_ms)
{
    struct sr_node *nodes = f->super.up->nodes;
    size_t best = f->n;
    uint64_t best_h = 0;
    double best_s = 0;

    for (size_t i = 0; i < f->n; i++) {
        uint64_t h;
        double s = 0;
        int cmp;
        if (!eligible(&nodes[i], tried, now_ms)) continue;
        h = sr_rendezvous_hash(key, f->id[i]);
        if (f->weighted) s = score(h, weight_of(&nodes[i]));
        if (best == f->n) cmp = 1;
        else if (f->weighted && s != best_s) cmp = s > best_s ? 1 : -1;
        else if (h != best_h) cmp = h > best_h ? 1 : -1;
        else if (f->id[i] != f->id[best]) cmp = f->id[i] > f->id[best] ? 1 : -1;
        else cmp = strcmp(nodes[i].address, nodes[best].address);
        if (cmp > 0) {
            best = i;
            best_h = h;
            best_s = s;
        }
    }
    return best;
}

static struct sr_node *fixed_pick(struct sr_balancer *b, uint64_t key, uint64_t tried,
                                  int64_t now_ms, int64_t *retry_at_ms)
{
    struct fixed *f = (struct fixed *)b;
    uint64_t pinned;
    size_t i;

    if (sr_lru_get(f->pins, key, now_ms, &pinned)) {
        i = find_id(f, pinned);
        if (i < f->n && eligible(&b->up->nodes[i], tried, now_ms)) return &b->up->nodes[i];
        /* gone, down or tried: fall through to the next node in rendezvous order */
    }
    i = rendezvous(f, key, tried, now_ms);
    if (i == f->n) {
        *retry_at_ms = sr_router_earliest_up(b->up);
        return NULL;
    }
    sr_lru_put(f->pins, key, f->id[i], now_ms);
    return &b->up->nodes[i];
}

static void fixed_inherit(struct sr_balancer *b, struct sr_balancer *prev)
{
    sr_lru_move(((struct fixed *)b)->pins, ((struct fixed *)prev)->pins);
}

const struct sr_balancer_type sr_balancer_fixed = {
    .name = "fixed",
    .keyed = true,
    .create = fixed_create,
    .destroy = fixed_destroy,
    .pick = fixed_pick,
    .inherit = fixed_inherit,
};
