/* Readiness of the upstream side (/readyz, skyrelay_server_ready, the gRPC
 * health check), next to the node state it reads.
 *
 * Ready means: the gRPC server exists and is not draining (the caller's part,
 * sr_ready in src/admin/), and at least one upstream node is reachable. A node
 * is reachable when
 *
 *   - it is not ejected (sr_node_is_up: no failure backoff running), and
 *   - its channel is READY, or it is IDLE or CONNECTING and the node has
 *     already taken a batch (sent_batches > 0).
 *
 * READY alone would flap: a gRPC channel goes IDLE when it has had no call
 * for a while, and CONNECTING again after a GOAWAY, although the node is fine;
 * a node that has answered OK before and has not failed since (a failure ejects
 * it) is trusted through those states. A node that has never answered must
 * show a connected channel. TRANSIENT_FAILURE and SHUTDOWN never count.
 * Asking the state with try_to_connect = 1 makes an IDLE channel connect, so
 * a fresh relay turns ready within a probe or two without any traffic.
 * A node without a channel (unit tests) is judged as IDLE.
 *
 * Any thread: it reads atomics and asks channels for their state (thread-safe
 * in gRPC); the main thread (/readyz) and the workers (grpc.health.v1) call it. */
#include <grpc/grpc.h>

#include "skyrelay/upstream.h"

bool sr_node_reachable(struct sr_node *n, int64_t now_ms)
{
    grpc_connectivity_state st = GRPC_CHANNEL_IDLE;
    if (!sr_node_is_up(n, now_ms)) return false;
    if (n->channel) st = grpc_channel_check_connectivity_state(n->channel, 1);
    switch (st) {
    case GRPC_CHANNEL_READY:
        return true;
    case GRPC_CHANNEL_IDLE:
    case GRPC_CHANNEL_CONNECTING:
        return atomic_load_explicit(&n->sent_batches, memory_order_relaxed) > 0;
    default:
        return false;
    }
}

bool sr_upstream_reachable(struct sr_upstream *up, int64_t now_ms)
{
    bool any = false;
    size_t n = atomic_load_explicit(&up->n_nodes, memory_order_acquire);
    /* every node is asked (not just up to the first reachable one), so that
     * every idle channel is told to connect */
    for (size_t i = 0; i < n; i++)
        if (sr_node_reachable(&up->nodes[i], now_ms)) any = true;
    return any;
}
