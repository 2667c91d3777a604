/* Batch senders: the upstream side of a worker.
 *
 * A batch owns the events cut from its partition (include/skyrelay/queue.h).
 * It is made of units: one per key group at first (one unit when the pipe
 * neither groups nor routes by key). Each unit is sent, retried, split or
 * dropped on its own; the batch is released when every unit is delivered or
 * given up. Messages are built from the events' slices by reference
 * (grpc_slice_buffer_add of a ref): the events keep their own refs until the
 * batch is released, so a unit can be re-sent unchanged. Writes carry
 * GRPC_WRITE_BUFFER_HINT except the last, which goes out with the half-close.
 * Faults (stalls, poison, drops) are handled in src/sender/faults.c; units and
 * upstream messages are built in src/sender/message.c. */
#include <grpc/byte_buffer.h>
#include <grpc/slice_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/wire.h"
#include "skyrelay/worker.h"
#include "internal.h"

#define UCALL_OF(t, member) ((struct sr_ucall *)((char *)(t)-offsetof(struct sr_ucall, member)))

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok);
static void on_recv(struct sr_worker *w, struct sr_tag *t, bool ok);

static bool send_next(struct sr_ucall *uc, bool first)
{
    grpc_op ops[3];
    size_t n = 0;
    bool last = uc->next_msg + 1 >= uc->n_msgs;

    memset(ops, 0, sizeof(ops));
    if (first) {
        /* upstream.authentication goes on every upstream call */
        const char *token = uc->pipe->token;
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (token) {
            uc->auth_md.key = grpc_slice_from_static_string("authentication");
            uc->auth_md.value = grpc_slice_from_static_string(token);
            ops[n].data.send_initial_metadata.metadata = &uc->auth_md;
            ops[n].data.send_initial_metadata.count = 1;
        }
        n++;
    }
    uc->sbuf = sr_sender_build_message(uc);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].flags = last ? 0 : GRPC_WRITE_BUFFER_HINT;
    ops[n].data.send_message.send_message = uc->sbuf;
    n++;
    if (last) {
        ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        n++;
    }
    if (grpc_call_start_batch(uc->call, ops, n, &uc->t_send, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(uc->sbuf);
        uc->sbuf = NULL;
        return false;
    }
    return true;
}

/* The call no longer counts as in flight (node load, per-node cap, drain). */
static void detach_ucall(struct sr_worker *w, struct sr_ucall *uc)
{
    if (!uc->counted) return;
    uc->counted = false;
    atomic_fetch_sub_explicit(&uc->node->inflight, 1, memory_order_relaxed);
    if (uc->pipe->node_calls[uc->node->index]) uc->pipe->node_calls[uc->node->index]--;
    w->live_ucalls--;
}

static void free_ucall(struct sr_worker *w, struct sr_ucall *uc)
{
    detach_ucall(w, uc);
    if (uc->call) {
        if (uc->prev)
            uc->prev->next = uc->next;
        else
            w->ucalls = uc->next;
        if (uc->next) uc->next->prev = uc->prev;
        grpc_call_unref(uc->call);
    }
    if (uc->sbuf) grpc_byte_buffer_destroy(uc->sbuf);
    if (uc->rbuf) grpc_byte_buffer_destroy(uc->rbuf);
    grpc_metadata_array_destroy(&uc->init_md);
    grpc_metadata_array_destroy(&uc->trail_md);
    grpc_slice_unref(uc->details);
    if (uc->error_string) gpr_free((void *)uc->error_string);
    if (uc->ul != &uc->u1) free(uc->ul);
    free(uc);
}

/* Puts the units ul[0..n) back to PENDING after a failure on `node` (NULL:
 * none was reached), to be re-sent after not_before. */
static void units_pending(struct sr_batch *b, const uint32_t *ul, uint32_t n,
                          const struct sr_node *node, int64_t not_before)
{
    for (uint32_t k = 0; k < n; k++) {
        struct sr_unit *u = &b->units[ul[k]];
        u->state = SR_UNIT_PENDING;
        u->not_before_ms = not_before;
        if (node) u->tried |= sr_node_bit(node);
    }
}

/* Starts one upstream call to `node` carrying the units ul[0..n) (takes ul
 * unless n == 1). On failure to start, the units go back to PENDING. */
static void start_call(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                       struct sr_node *node, uint32_t *ul, uint32_t n_ul)
{
    struct sr_ucall *uc = calloc(1, sizeof(*uc));
    const struct sr_config *cfg = w->rt->cfg;
    int64_t dl = w->now_ms + cfg->upstream.call_timeout_ms;
    gpr_timespec deadline = {dl / 1000, (int32_t)((dl % 1000) * 1000000), GPR_CLOCK_MONOTONIC};
    grpc_op ops[3];

    if (!uc) {
        units_pending(b, ul, n_ul, NULL, w->now_ms + 100);
        if (n_ul > 1) free(ul);
        return;
    }
    uc->t_send.fn = on_send;
    uc->t_recv.fn = on_recv;
    uc->start_us = sr_now_us();
    uc->start_ms = w->now_ms;
    uc->pipe = p;
    uc->batch = b;
    uc->node = node;
    uc->details = grpc_empty_slice();
    grpc_metadata_array_init(&uc->init_md);
    grpc_metadata_array_init(&uc->trail_md);
    if (n_ul == 1) {
        uc->u1 = ul[0];
        uc->ul = &uc->u1;
    } else {
        uc->ul = ul;
    }
    uc->n_ul = n_ul;
    for (uint32_t k = 0; k < n_ul; k++) {
        struct sr_unit *u = &b->units[uc->ul[k]];
        uc->events += u->n;
        u->state = SR_UNIT_SENDING;
        u->node = node;
    }
    switch (p->plan->unit) {
    case SR_UNIT_EVENT:
        uc->n_msgs = uc->events;
        break;
    case SR_UNIT_GROUP:
    case SR_UNIT_LAST:
        uc->n_msgs = n_ul;
        break;
    case SR_UNIT_CALL:
        uc->n_msgs = 1;
        break;
    }

    uc->call = grpc_channel_create_call(node->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                        p->method, NULL, deadline, NULL);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &uc->init_md;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &uc->rbuf;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &uc->trail_md;
    ops[2].data.recv_status_on_client.status = &uc->status;
    ops[2].data.recv_status_on_client.status_details = &uc->details;
    ops[2].data.recv_status_on_client.error_string = &uc->error_string;
    if (!uc->call || grpc_call_start_batch(uc->call, ops, 3, &uc->t_recv, NULL) != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "cannot start upstream call to %s", node->address);
        if (uc->call) grpc_call_unref(uc->call);
        uc->call = NULL;
        units_pending(b, uc->ul, uc->n_ul, node, w->now_ms + 100);
        free_ucall(w, uc);
        return;
    }
    atomic_fetch_add_explicit(&node->inflight, 1, memory_order_relaxed);
    p->node_calls[node->index]++;
    uc->counted = true;
    uc->next = w->ucalls;
    uc->prev = NULL;
    if (uc->next) uc->next->prev = uc;
    w->ucalls = uc;
    b->calls_pending++;
    b->sends++;
    w->live_ucalls++;
    SR_CNT_ADD(w->ctr.pipe[p->id].upstream_calls, 1);
    if (!send_next(uc, true)) {
        uc->send_done = true; /* the recv batch reports the status */
        uc->send_failed = true;
    }
}

/* upstream.max_inflight_per_node for this pipe: 0 = auto (every slot with one
 * node present, else all but one, so one node can never hold every slot). */
static uint32_t node_cap(const struct sr_worker *w, const struct sr_pipe_rt *p)
{
    uint32_t cap = w->rt->cfg->upstream.max_inflight_per_node;
    uint32_t slots = p->cfg->sender.max_inflight;
    if (cap) return cap;
    if (atomic_load_explicit(&w->rt->up.present, memory_order_relaxed) <= 1) return slots;
    return slots > 1 ? slots - 1 : 1;
}

/* Nodes at their in-flight cap for this pipe (*full), and those of them
 * whose oldest call of this pipe is older than a quarter of stall_timeout
 * (*slow): a full node is waited for (its calls are answered at the usual
 * pace; skipping it would skew the balance), a slow one is skipped. */
static void cap_masks(const struct sr_worker *w, const struct sr_pipe_rt *p, uint64_t *full,
                      uint64_t *slow)
{
    const struct sr_upstream *up = &w->rt->up;
    size_t n = atomic_load_explicit(&up->n_nodes, memory_order_acquire);
    uint32_t cap = node_cap(w, p), stall = w->rt->cfg->upstream.stall_timeout_ms;
    int64_t old = w->now_ms - (stall ? stall : w->rt->cfg->upstream.call_timeout_ms) / 4;

    *full = *slow = 0;
    for (size_t i = 0; i < n; i++)
        if (p->node_calls[i] >= cap) *full |= sr_node_bit(&up->nodes[i]);
    if (!*full) return;
    for (const struct sr_ucall *uc = w->ucalls; uc; uc = uc->next)
        if (uc->pipe == p && !uc->recv_done && uc->start_ms <= old &&
            (*full & sr_node_bit(uc->node)))
            *slow |= sr_node_bit(uc->node);
}

/* Picks a node for unit u. NULL when none is up (*retry_at: when one comes
 * back) or the one chosen is at its in-flight cap (*cap_wait set). */
static struct sr_node *pick(struct sr_pipe_rt *p, const struct sr_unit *u, bool keyed,
                            uint64_t full, uint64_t slow, int64_t now, int64_t *retry_at,
                            bool *cap_wait)
{
    uint64_t key = keyed ? u->key : 0, skip = keyed ? 0 : slow;
    struct sr_node *node = p->balancer->type->pick(p->balancer, key, u->tried | skip, now, retry_at);
    if (!node && u->tried) /* every untried candidate is down: try the others again */
        node = p->balancer->type->pick(p->balancer, key, skip, now, retry_at);
    if (node && (full & sr_node_bit(node))) {
        *cap_wait = true;
        return NULL;
    }
    return node;
}

/* Releases b when every unit is delivered or dropped. */
static void batch_check(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    bool any_done = false;
    if (b->calls_pending) return;
    for (uint32_t i = 0; i < b->n_units; i++) {
        uint8_t st = b->units[i].state;
        if (st == SR_UNIT_PENDING || st == SR_UNIT_SENDING) return;
        if (st == SR_UNIT_DONE) any_done = true;
    }
    if (b->n_units == 0) return; /* never grouped: waiting for memory */
    if (any_done) SR_CNT_ADD(w->ctr.pipe[p->id].sent_batches, 1);
    p->dirty = true;
    if (sr_partition_complete(&p->part, b)) p->room = true;
}

/* Starts the sends of b whose time has come: chooses a node per pending
 * unit, then one call per node (or per unit: call-per-group plans and
 * suspect units, which must fail or pass alone). */
static void attempt(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    bool keyed = p->key_routing;
    uint64_t full, slow;
    struct sr_node *shared = NULL;
    uint32_t retried = 0;
    bool any = false;

    if (b->n_units == 0 && sr_sender_build_units(b, p->plan->group_by_key || keyed, w->now_ms) != 0) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "out of memory grouping a batch; will retry");
        return;
    }
    cap_masks(w, p, &full, &slow);
    for (uint32_t i = 0; i < b->n_units; i++) {
        struct sr_unit *u = &b->units[i];
        int64_t retry_at = INT64_MAX;
        bool cap_wait = false;
        struct sr_node *node;

        u->assigned = 1;
        if (u->state != SR_UNIT_PENDING || u->not_before_ms > w->now_ms) continue;
        if (!keyed && !u->suspect && shared && !(u->tried & sr_node_bit(shared)))
            node = shared;
        else
            node = pick(p, u, keyed, full, slow, w->now_ms, &retry_at, &cap_wait);
        if (!node) {
            /* no node now: when one comes back, or when a call of this pipe ends */
            u->not_before_ms = cap_wait ? w->now_ms + 50
                               : retry_at == INT64_MAX ? w->now_ms + 100
                                                       : retry_at;
            if (u->not_before_ms <= w->now_ms) u->not_before_ms = w->now_ms + 1;
            if (cap_wait) p->cap_wait = true;
            continue;
        }
        if (!keyed && !u->suspect) shared = node;
        u->node = node;
        u->assigned = 0;
        any = true;
        if (u->tried || u->content_fails || u->suspect) retried += u->n;
    }
    if (!any) return;
    if (retried) {
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_batches, 1);
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_events, retried);
    }
    for (uint32_t g = 0; g < b->n_units; g++) {
        struct sr_unit *u = &b->units[g];
        uint32_t n = 0, *ul;
        if (u->assigned) continue;
        if (p->plan->call_per_group || u->suspect) {
            u->assigned = 1;
            start_call(w, p, b, u->node, &g, 1);
            continue;
        }
        /* every chosen unit bound for the same node goes into one call */
        for (uint32_t h = g; h < b->n_units; h++)
            if (!b->units[h].assigned && !b->units[h].suspect && b->units[h].node == u->node) n++;
        if (n == 1) {
            u->assigned = 1;
            start_call(w, p, b, u->node, &g, 1);
            continue;
        }
        ul = malloc(sizeof(*ul) * n);
        if (!ul) {
            u->assigned = 1;
            start_call(w, p, b, u->node, &g, 1); /* one by one, then */
            continue;
        }
        n = 0;
        for (uint32_t h = g; h < b->n_units; h++)
            if (!b->units[h].assigned && !b->units[h].suspect && b->units[h].node == u->node) {
                b->units[h].assigned = 1;
                ul[n++] = h;
            }
        start_call(w, p, b, u->node, ul, n);
    }
    batch_check(w, p, b);
}

static void ucall_maybe_done(struct sr_worker *w, struct sr_ucall *uc)
{
    struct sr_pipe_rt *p = uc->pipe;
    struct sr_batch *b = uc->batch;
    struct sr_node *node = uc->node;
    int status = uc->status;
    enum sr_status_class cls;
    bool stopping = atomic_load_explicit(&w->rt->force_stop, memory_order_relaxed);
    int64_t now_us;

    if (!uc->recv_done) return;
    if (uc->settled) { /* outcome applied earlier; now its last send completed */
        if (uc->send_done) free_ucall(w, uc);
        return;
    }
    /* The status decides, even while a send is still pending: gRPC can hold a
     * send after the call ended (seen with its transparent retries after the
     * node closed the connection), and a batch must never wait on that. */
    uc->settled = true;
    /* OK before every message was written: the node did not get them all. (An
     * OK that arrives while the last send, the one carrying the half-close, is
     * still to be reported is fine: the node answered after reading it.) */
    if (status == GRPC_STATUS_OK &&
        (uc->send_failed || (!uc->send_done && uc->next_msg + 1 < uc->n_msgs)))
        status = GRPC_STATUS_UNAVAILABLE;
    cls = sr_status_class(status);
    now_us = sr_now_us();
    sr_latency_observe(&w->ctr.upstream_latency[p->id], (uint64_t)(now_us - uc->start_us));
    /* only answers that did the work say how loaded the node is: a node that
     * sheds load with quick errors must not look fast to least_loaded */
    if (!uc->hedged && status == GRPC_STATUS_OK)
        sr_node_observe_latency(node, (uint64_t)(now_us - uc->start_us), now_us);
    if (cls != SR_SC_OK) {
        char *d = grpc_slice_to_c_string(uc->details);
        SR_CNT_ADD(w->ctr.pipe[p->id].upstream_failed, 1);
        atomic_fetch_add_explicit(&node->failed_calls, 1, memory_order_relaxed);
        if (!uc->hedged)
            SR_LOG_RL(SR_LOG_WARN, "sender", "pipe %s: upstream call to %s failed: status %d %s",
                      sr_pipe_name(p->id), node->address, status, d ? d : "");
        gpr_free(d);
        b->last_status = status;
    }
    switch (cls) {
    case SR_SC_OK:
        SR_CNT_ADD(w->ctr.pipe[p->id].sent_events, uc->events);
        atomic_fetch_add_explicit(&node->sent_events, uc->events, memory_order_relaxed);
        atomic_fetch_add_explicit(&node->sent_batches, 1, memory_order_relaxed);
        for (uint32_t k = 0; k < uc->n_ul; k++) b->units[uc->ul[k]].state = SR_UNIT_DONE;
        sr_node_report(&w->rt->up, node, true, w->now_ms, &w->rng);
        sr_balancer_report(p->balancer, node, true);
        break;
    case SR_SC_TRANSPORT:
        if (!uc->hedged && !stopping) {
            sr_node_report(&w->rt->up, node, false, w->now_ms, &w->rng);
            sr_balancer_report(p->balancer, node, false);
        }
        units_pending(b, uc->ul, uc->n_ul, node, w->now_ms);
        for (uint32_t k = 0; k < uc->n_ul; k++) {
            struct sr_unit *u = &b->units[uc->ul[k]];
            if (stopping)
                sr_sender_drop_unit(w, p, b, u, SR_DROP_SHUTDOWN, status);
            else if (!p->part.disk && /* with a disk queue, a batch waits for OAP */
                     w->now_ms - b->first_attempt_ms >= (int64_t)w->rt->cfg->upstream.retry_max_ms)
                sr_sender_drop_unit(w, p, b, u, SR_DROP_RETRY_EXHAUSTED, status);
        }
        break;
    case SR_SC_CONTENT:
        /* the node answered: it is alive; the batch is what it refused */
        SR_CNT_ADD(w->ctr.pipe[p->id].content_failed_calls, 1);
        atomic_fetch_add_explicit(&node->poison_events, uc->events, memory_order_relaxed);
        sr_node_report(&w->rt->up, node, true, w->now_ms, &w->rng);
        for (uint32_t k = 0; k < uc->n_ul; k++) {
            if (stopping)
                sr_sender_drop_unit(w, p, b, &b->units[uc->ul[k]], SR_DROP_SHUTDOWN, status);
            else
                sr_sender_content_refused(w, p, b, uc->ul[k], node, status);
        }
        break;
    case SR_SC_REJECT:
        for (uint32_t k = 0; k < uc->n_ul; k++)
            sr_sender_drop_unit(w, p, b, &b->units[uc->ul[k]], SR_DROP_UPSTREAM_REJECTED, status);
        break;
    }
    b->calls_pending--;
    if (uc->send_done) {
        free_ucall(w, uc);
    } else {
        detach_ucall(w, uc);
        grpc_call_cancel(uc->call, NULL); /* the pending send: freed when it completes */
    }
    p->dirty = true; /* a slot or a node's capacity may be free, a retry may be due */
    if (p->cap_wait) {
        /* units waiting for a node's capacity may go now */
        p->cap_wait = false;
        for (uint32_t i = 0; i < p->part.n_slots; i++) {
            struct sr_batch *x = &p->part.batches[i];
            if (!x->used) continue;
            for (uint32_t k = 0; k < x->n_units; k++)
                if (x->units[k].state == SR_UNIT_PENDING && x->units[k].not_before_ms > w->now_ms &&
                    x->units[k].not_before_ms <= w->now_ms + 50)
                    x->units[k].not_before_ms = w->now_ms;
        }
    }
    batch_check(w, p, b);
}

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_ucall *uc = UCALL_OF(t, t_send);
    grpc_byte_buffer_destroy(uc->sbuf);
    uc->sbuf = NULL;
    if (!ok) uc->send_failed = true;
    /* settled: its batch may be gone already; send nothing more */
    if (ok && !uc->settled && ++uc->next_msg < uc->n_msgs) {
        if (send_next(uc, false)) return;
        uc->send_failed = true;
    }
    uc->send_done = true;
    ucall_maybe_done(w, uc);
}

static void on_recv(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_ucall *uc = UCALL_OF(t, t_recv);
    if (!ok && uc->status == GRPC_STATUS_OK) uc->status = GRPC_STATUS_UNKNOWN;
    uc->recv_done = true;
    ucall_maybe_done(w, uc);
}

/* The earliest of `wake` and the time b needs the sender again: its first
 * pending unit's not_before, or a retry of the grouping after 100 ms. */
static int64_t batch_wake(const struct sr_batch *b, int64_t now_ms, int64_t wake)
{
    if (b->n_units == 0 && now_ms + 100 < wake) wake = now_ms + 100;
    for (uint32_t k = 0; k < b->n_units; k++)
        if (b->units[k].state == SR_UNIT_PENDING && b->units[k].not_before_ms < wake)
            wake = b->units[k].not_before_ms;
    return wake;
}

void sr_sender_nodes_back(struct sr_worker *w, struct sr_pipe_rt *p)
{
    for (uint32_t i = 0; i < p->part.n_slots; i++) {
        struct sr_batch *x = &p->part.batches[i];
        if (!x->used) continue;
        for (uint32_t k = 0; k < x->n_units; k++)
            if (x->units[k].state == SR_UNIT_PENDING && x->units[k].not_before_ms > w->now_ms)
                x->units[k].not_before_ms = w->now_ms;
    }
    p->wake_ms = w->now_ms;
}

int64_t sr_sender_service(struct sr_worker *w, struct sr_pipe_rt *p, int64_t now_ms)
{
    const struct sr_sender_config *sc = &p->cfg->sender;
    bool flush = atomic_load_explicit(&w->rt->draining, memory_order_relaxed);
    int64_t wake = INT64_MAX, due;
    uint32_t n;

    for (uint32_t i = 0; i < p->part.n_slots; i++) {
        struct sr_batch *b = &p->part.batches[i];
        bool due_now = b->used && b->n_units == 0;
        if (!b->used) continue;
        for (uint32_t k = 0; k < b->n_units && !due_now; k++)
            if (b->units[k].state == SR_UNIT_PENDING && b->units[k].not_before_ms <= now_ms)
                due_now = true;
        if (due_now) attempt(w, p, b);
        if (!b->used) continue;
        wake = batch_wake(b, now_ms, wake);
    }
    sr_partition_refill(&p->part); /* events waiting on disk, while memory has room */
    while ((n = sr_partition_ready(&p->part, sc->max_batch_events, sc->max_batch_bytes,
                                   sc->linger_ms, flush, now_ms, &due)) > 0) {
        struct sr_batch *b = sr_partition_cut(&p->part, n, now_ms);
        if (!b) {
            SR_LOG_RL(SR_LOG_ERROR, "sender", "out of memory cutting a batch; will retry");
            due = now_ms + 100;
            break;
        }
        attempt(w, p, b);
        if (!b->used) continue;
        wake = batch_wake(b, now_ms, wake);
    }
    return due < wake ? due : wake;
}

void sr_sender_abandon(struct sr_worker *w, struct sr_pipe_rt *p, enum sr_drop_reason reason)
{
    for (struct sr_ucall *uc = w->ucalls; uc; uc = uc->next)
        if (uc->pipe == p) grpc_call_cancel(uc->call, NULL);
    for (uint32_t i = 0; i < p->part.n_slots; i++) {
        struct sr_batch *b = &p->part.batches[i];
        if (!b->used) continue;
        if (b->n_units == 0 && b->calls_pending == 0) {
            if (reason == SR_DROP_SHUTDOWN && p->part.disk) /* kept on disk for the next start */
                for (uint32_t k = 0; k < b->count; k++) b->ev[k].flags |= SR_EV_KEEP;
            else
                SR_CNT_ADD(w->ctr.pipe[p->id].dropped_events[reason], b->count);
            if (sr_partition_complete(&p->part, b)) p->room = true;
            continue;
        }
        for (uint32_t k = 0; k < b->n_units; k++)
            if (b->units[k].state == SR_UNIT_PENDING)
                sr_sender_drop_unit(w, p, b, &b->units[k], reason, b->last_status);
        batch_check(w, p, b);
    }
}
