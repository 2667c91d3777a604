/* Upstream nodes and their channels. See include/skyrelay/upstream.h. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/upstream.h"

uint64_t sr_rand64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint32_t sr_backoff_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t k)
{
    uint64_t b = initial_ms;
    if (k == 0) return 0;
    for (uint32_t i = 1; i < k && b < max_ms; i++) b *= 2;
    return (uint32_t)(b < max_ms ? b : max_ms);
}

int sr_upstream_init(struct sr_upstream *up, const struct sr_config *cfg)
{
    grpc_channel_credentials *creds;
    grpc_arg args[2];
    grpc_channel_args chargs = {.num_args = 2, .args = args};
    int max_recv = cfg->upstream.max_receive_message_size > INT_MAX
                       ? INT_MAX
                       : (int)cfg->upstream.max_receive_message_size;

    memset(up, 0, sizeof(*up));
    up->backoff_initial_ms = cfg->upstream.backoff_initial_ms;
    up->backoff_max_ms = cfg->upstream.backoff_max_ms;
    up->nodes = calloc(cfg->upstream.n_nodes, sizeof(*up->nodes));
    if (!up->nodes) return -1;
    up->n_nodes = cfg->upstream.n_nodes;

    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max_recv;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;

    creds = grpc_insecure_credentials_create();
    for (size_t i = 0; i < up->n_nodes; i++) {
        struct sr_node *n = &up->nodes[i];
        n->address = strdup(cfg->upstream.nodes[i].address);
        n->weight = cfg->upstream.nodes[i].weight ? cfg->upstream.nodes[i].weight : 1;
        n->index = (uint32_t)i;
        n->channel = grpc_channel_create(n->address, creds, &chargs);
        if (!n->address || !n->channel) {
            grpc_channel_credentials_release(creds);
            return -1;
        }
        SR_INFO("upstream", "node %s (weight %u)", n->address, n->weight);
    }
    grpc_channel_credentials_release(creds);
    return 0;
}

void sr_upstream_deinit(struct sr_upstream *up)
{
    for (size_t i = 0; i < up->n_nodes; i++) {
        if (up->nodes[i].channel) grpc_channel_destroy(up->nodes[i].channel);
        free(up->nodes[i].address);
    }
    free(up->nodes);
    memset(up, 0, sizeof(*up));
}

void sr_node_report(struct sr_upstream *up, struct sr_node *n, bool ok, int64_t now_ms,
                    uint64_t *rng)
{
    if (ok) {
        if (atomic_load_explicit(&n->failures, memory_order_relaxed)) {
            atomic_store(&n->failures, 0);
            atomic_store(&n->down_until_ms, 0);
            SR_INFO("upstream", "node %s is back", n->address);
        }
        return;
    }
    uint32_t k = atomic_fetch_add(&n->failures, 1) + 1;
    uint32_t b = sr_backoff_ms(up->backoff_initial_ms, up->backoff_max_ms, k);
    /* +-20 % jitter so that workers and replicas do not retry in lockstep */
    int64_t jitter = b ? (int64_t)(sr_rand64(rng) % (b / 5 * 2 + 1)) - b / 5 : 0;
    int64_t until = now_ms + b + jitter;
    int64_t cur = atomic_load(&n->down_until_ms);
    if (until > cur) atomic_store(&n->down_until_ms, until);
    SR_LOG_RL(SR_LOG_WARN, "upstream", "node %s failed (%u in a row), ejected for %lld ms",
              n->address, k, (long long)(until - now_ms));
}
