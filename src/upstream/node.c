/* Upstream nodes and their channels. See include/skyrelay/upstream.h. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/tls.h"
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

static grpc_channel *new_channel(const struct sr_upstream *up, const char *address)
{
    grpc_channel_credentials *creds = up->creds;
    grpc_arg args[6];
    grpc_channel_args chargs = {.num_args = 5, .args = args};
    grpc_channel *ch;

    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = up->max_recv;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    /* skyrelay retries batches itself, on another node; gRPC's transparent
     * retries could hold a call's send past its status (a batch stuck behind a
     * node that closed its connection) */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ENABLE_RETRIES;
    args[2].value.integer = 0;
    /* gRPC's own reconnect backoff (1 s x 1.6 up to 120 s by default) would keep a node
     * that is back unreachable long after it returned. A connection attempt to a node
     * that is down costs a SYN: try at least every SR_RECONNECT_MAX_MS, so that
     * sr_upstream_watch sees a restarted node within about a second */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[3].value.integer = (int)(up->backoff_initial_ms < SR_RECONNECT_MAX_MS ? up->backoff_initial_ms
                                                                               : SR_RECONNECT_MAX_MS);
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[4].value.integer = (int)(up->backoff_max_ms < SR_RECONNECT_MAX_MS ? up->backoff_max_ms
                                                                           : SR_RECONNECT_MAX_MS);
    /* OAP pods reached by IP (kubernetes finder) present a certificate for a name */
    if (up->server_name) {
        args[5].type = GRPC_ARG_STRING;
        args[5].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[5].value.string = up->server_name;
        chargs.num_args = 6;
    }
    if (!creds) creds = grpc_insecure_credentials_create();
    ch = grpc_channel_create(address, creds, &chargs);
    if (creds != up->creds) grpc_channel_credentials_release(creds);
    /* connect now: the first batch's latency should not include the handshake */
    if (ch) (void)grpc_channel_check_connectivity_state(ch, 1);
    return ch;
}

int sr_upstream_init(struct sr_upstream *up, const struct sr_config *cfg)
{
    memset(up, 0, sizeof(*up));
    up->backoff_initial_ms = cfg->upstream.backoff_initial_ms;
    up->backoff_max_ms = cfg->upstream.backoff_max_ms;
    up->max_recv = cfg->upstream.max_receive_message_size > INT_MAX
                       ? INT_MAX
                       : (int)cfg->upstream.max_receive_message_size;
    up->nodes = calloc(SR_MAX_NODES, sizeof(*up->nodes));
    if (!up->nodes) return -1;
    /* a replaced channel may carry a call created just before: wait out the longest deadline */
    up->retire_grace_ms = (cfg->upstream.call_timeout_ms > cfg->upstream.sync_timeout_ms
                               ? cfg->upstream.call_timeout_ms
                               : cfg->upstream.sync_timeout_ms) + 10000;
    up->creds = sr_tls_upstream_credentials(&cfg->upstream.tls);
    if (!up->creds) return -1;
    if (cfg->upstream.tls.enabled && cfg->upstream.tls.server_name) {
        up->server_name = strdup(cfg->upstream.tls.server_name);
        if (!up->server_name) return -1;
    }
    /* static finder: the configured list now; dns/kubernetes publish theirs later */
    if (cfg->upstream.finder == SR_FINDER_STATIC)
        sr_upstream_apply(up, cfg->upstream.nodes, cfg->upstream.n_nodes, 0);
    return 0;
}

size_t sr_upstream_set_credentials(struct sr_upstream *up, grpc_channel_credentials *creds,
                                   int64_t now_ms)
{
    size_t replaced = 0;

    if (up->creds) grpc_channel_credentials_release(up->creds);
    up->creds = creds;
    for (size_t i = 0; i < up->n_nodes; i++) {
        struct sr_node *nd = &up->nodes[i];
        grpc_channel *old = nd->channel, *ch;
        struct sr_old_channel *o;
        if (!old || !nd->address) continue;
        o = realloc(up->old, sizeof(*o) * (up->n_old + 1));
        if (!o) {
            SR_ERROR("upstream", "out of memory: node %s keeps its channel", nd->address);
            continue;
        }
        up->old = o;
        ch = new_channel(up, nd->address);
        if (!ch) {
            SR_ERROR("upstream", "cannot create a new channel to %s; it keeps the old one",
                     nd->address);
            continue;
        }
        /* Workers read the pointer when they create a call: a call either gets the old
         * channel (and finishes there) or the new one. Nothing queued is touched. */
        atomic_store_explicit(&nd->channel, ch, memory_order_release);
        up->old[up->n_old].channel = old;
        up->old[up->n_old].destroy_at_ms = now_ms + up->retire_grace_ms;
        up->n_old++;
        replaced++;
    }
    return replaced;
}

void sr_upstream_collect_old(struct sr_upstream *up, int64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < up->n_old; i++) {
        if (up->old[i].destroy_at_ms <= now_ms)
            grpc_channel_destroy(up->old[i].channel);
        else
            up->old[k++] = up->old[i];
    }
    up->n_old = k;
}

void sr_upstream_deinit(struct sr_upstream *up)
{
    sr_upstream_collect_old(up, INT64_MAX);
    free(up->old);
    if (up->creds) grpc_channel_credentials_release(up->creds);
    free(up->server_name);
    for (size_t i = 0; i < up->n_nodes; i++) {
        if (up->nodes[i].channel) grpc_channel_destroy(up->nodes[i].channel);
        free(up->nodes[i].address);
    }
    for (size_t i = 0; i < up->n_retired; i++) free(up->retired[i]);
    free(up->retired);
    free(up->nodes);
    memset(up, 0, sizeof(*up));
}

#define SLOT_REUSE_MS 60000

/* Main thread: keeps a replaced address string until sr_upstream_deinit. */
static void retire(struct sr_upstream *up, char *address)
{
    char **r;
    if (!address) return;
    r = realloc(up->retired, sizeof(*r) * (up->n_retired + 1));
    if (!r) {
        /* leak it rather than free it under a reader */
        SR_LOG_RL(SR_LOG_WARN, "upstream", "out of memory retiring a node address");
        return;
    }
    r[up->n_retired++] = address;
    up->retired = r;
}

size_t sr_upstream_apply(struct sr_upstream *up, const struct sr_node_config *nodes, size_t n,
                         int64_t now_ms)
{
    size_t changes = 0, used = up->n_nodes, present = 0;
    bool *wanted = calloc(used + n + 1, sizeof(*wanted));

    if (!wanted) {
        SR_ERROR("upstream", "out of memory applying a node list; keeping the current one");
        return 0;
    }
    /* Two passes: the addresses that already have a slot first, then the new
     * ones, so that a returning node keeps its own slot whatever the order of
     * the list (a new address must not take it first). */
    for (int phase = 0; phase < 2; phase++)
    for (size_t k = 0; k < n; k++) {
        struct sr_node *slot = NULL, *reuse = NULL;
        uint32_t w = nodes[k].weight ? nodes[k].weight : 1;
        for (size_t i = 0; i < used; i++) {
            struct sr_node *nd = &up->nodes[i];
            if (nd->address && strcmp(nd->address, nodes[k].address) == 0) {
                slot = nd;
                break;
            }
            if (!reuse && sr_node_present(nd) == false && now_ms - nd->gone_since_ms >= SLOT_REUSE_MS &&
                atomic_load(&nd->inflight) == 0)
                reuse = nd;
        }
        if ((slot != NULL) != (phase == 0)) continue; /* not this pass's kind */
        if (slot) {
            if (wanted[slot->index]) continue; /* listed twice */
            wanted[slot->index] = true;
            if (!sr_node_present(slot)) {
                atomic_store(&slot->failures, 0);
                atomic_store(&slot->down_until_ms, 0);
                atomic_store_explicit(&slot->gone, 0, memory_order_release);
                SR_INFO("upstream", "node %s is back in the node set", slot->address);
                changes++;
            }
            if (slot->weight != w) {
                slot->weight = w;
                changes++;
            }
            continue;
        }
        if (!reuse && used < SR_MAX_NODES) {
            reuse = &up->nodes[used];
            reuse->index = (uint32_t)used;
            used++;
        }
        if (!reuse) {
            SR_LOG_RL(SR_LOG_ERROR, "upstream", "no free node slot for %s (%d in use)",
                      nodes[k].address, SR_MAX_NODES);
            continue;
        }
        if (reuse->channel) grpc_channel_destroy(reuse->channel);
        /* A worker rebuilding its balancers may still be reading the old
         * address (it sees the new generation only after this apply): keep
         * the string alive until deinit instead of freeing it here. */
        retire(up, reuse->address);
        reuse->address = strdup(nodes[k].address);
        reuse->weight = w;
        reuse->channel = reuse->address ? new_channel(up, reuse->address) : NULL;
        atomic_store(&reuse->failures, 0);
        atomic_store(&reuse->down_until_ms, 0);
        atomic_store(&reuse->sent_events, 0);
        atomic_store(&reuse->sent_batches, 0);
        atomic_store(&reuse->failed_calls, 0);
        atomic_store(&reuse->stalled, 0);
        atomic_store(&reuse->stalled_at_ms, 0);
        atomic_store(&reuse->hedged_events, 0);
        atomic_store(&reuse->poison_events, 0);
        atomic_store(&reuse->stalls, 0);
        atomic_store(&reuse->ewma_us, 0);
        atomic_store(&reuse->ewma_stamp_us, 0);
        for (int b = 0; b < SR_LAT_BUCKETS; b++) atomic_store(&reuse->latency.bucket[b], 0);
        atomic_store(&reuse->latency.sum_us, 0);
        atomic_store(&reuse->latency.count, 0);
        if (!reuse->address || !reuse->channel) {
            SR_ERROR("upstream", "cannot create a channel to %s", nodes[k].address);
            atomic_store(&reuse->gone, 1);
            reuse->gone_since_ms = now_ms;
            continue;
        }
        atomic_store_explicit(&reuse->gone, 0, memory_order_release);
        wanted[reuse->index] = true;
        SR_INFO("upstream", "node %s (weight %u) joins the node set", reuse->address, w);
        changes++;
    }
    /* publish the slots before the workers may look at them */
    atomic_store_explicit(&up->n_nodes, used, memory_order_release);
    for (size_t i = 0; i < used; i++) {
        struct sr_node *nd = &up->nodes[i];
        if (wanted[i]) {
            present++;
            continue;
        }
        if (sr_node_present(nd) && nd->address) {
            atomic_store_explicit(&nd->gone, 1, memory_order_release);
            nd->gone_since_ms = now_ms;
            SR_INFO("upstream", "node %s left the node set", nd->address);
            changes++;
        }
    }
    up->present = present;
    if (changes) atomic_fetch_add(&up->gen, 1);
    free(wanted);
    return changes;
}

size_t sr_upstream_watch(struct sr_upstream *up, int64_t now_ms)
{
    size_t n = atomic_load(&up->n_nodes), readmitted = 0;
    for (size_t i = 0; i < n; i++) {
        struct sr_node *nd = &up->nodes[i];
        grpc_connectivity_state st;
        if (!sr_node_present(nd) || atomic_load(&nd->down_until_ms) <= now_ms) {
            nd->watch_lost = false;
            continue;
        }
        st = grpc_channel_check_connectivity_state(atomic_load(&nd->channel), 1);
        if (st != GRPC_CHANNEL_READY) {
            nd->watch_lost = true; /* no connection while ejected */
            continue;
        }
        if (!nd->watch_lost) continue; /* connected all along: frozen or refusing, keep the backoff */
        nd->watch_lost = false;
        atomic_store(&nd->down_until_ms, 0);
        atomic_fetch_add_explicit(&nd->readmitted, 1, memory_order_relaxed);
        readmitted++;
        atomic_fetch_add(&up->readmits, 1); /* workers look at their senders' timers again */
        SR_INFO("upstream", "node %s accepts connections again: it gets a probe batch now "
                "instead of after its backoff", nd->address);
    }
    return readmitted;
}

void sr_node_report(struct sr_upstream *up, struct sr_node *n, bool ok, int64_t now_ms,
                    uint64_t *rng)
{
    if (ok) {
        if (atomic_load_explicit(&n->stalled, memory_order_relaxed)) {
            atomic_store_explicit(&n->stalled, 0, memory_order_release);
            SR_INFO("upstream", "node %s answers again (no longer stalled)", n->address);
        }
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
