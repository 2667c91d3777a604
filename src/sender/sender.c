/* Batch senders: the upstream side of a worker.
 *
 * A batch is a contiguous range of a partition's ring. Sending it means one
 * upstream call (or, for ALS on OAP's standard service, one call per distinct
 * Envoy identifier) to the node the balancer picks, on the worker's own
 * completion queue. Messages are built from the events' slices by reference
 * (grpc_slice_buffer_add of a ref): the events keep their own refs until the
 * batch is acknowledged, so a failed batch can be re-sent to the next node
 * unchanged. Writes carry GRPC_WRITE_BUFFER_HINT except the last, which goes
 * out with the half-close and flushes the stream.
 *
 * Outcomes: all calls OK -> delivered, the ring advances and paused receivers
 * resume. A retryable failure ejects the node (backoff) and the batch waits to
 * be re-sent to another node until upstream.retry_max has passed. A
 * non-retryable status drops the batch with a reason. Every outcome is
 * counted. */
#include <grpc/byte_buffer.h>
#include <grpc/slice_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/wire.h"
#include "skyrelay/worker.h"

struct sr_ucall {
    struct sr_tag t_send, t_recv;
    grpc_call *call;
    struct sr_pipe_rt *pipe;
    struct sr_batch *batch;
    struct sr_node *node;
    uint32_t *gl; /* groups carried by this call (indexes into batch->groups) */
    uint32_t n_gl;
    uint32_t g1;  /* storage for gl when the call carries one group */
    uint32_t n_msgs, next_msg;
    uint32_t cur_g, cur_e; /* SR_UNIT_EVENT cursor: group (in gl) and event within it */
    uint32_t events;
    bool send_done, recv_done;
    grpc_byte_buffer *sbuf;
    grpc_byte_buffer *rbuf;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    grpc_metadata auth_md;
    int64_t start_us;
    struct sr_ucall *next, *prev; /* the worker's in-flight list, for cancellation */
};

#define UCALL_OF(t, member) ((struct sr_ucall *)((char *)(t)-offsetof(struct sr_ucall, member)))

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok);
static void on_recv(struct sr_worker *w, struct sr_tag *t, bool ok);

static bool retryable(grpc_status_code s)
{
    switch (s) {
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_CANCELLED:
    case GRPC_STATUS_INTERNAL:
    case GRPC_STATUS_UNKNOWN:
        return true;
    default:
        return false;
    }
}

static struct sr_event *ev_at(struct sr_pipe_rt *p, struct sr_batch *b, uint32_t i)
{
    return sr_partition_at(&p->part, b->start + i);
}

/* Fills b->order and b->groups: events grouped by key (stable), or one group
 * holding every event in order when by_key is false. */
static int build_groups(struct sr_pipe_rt *p, struct sr_batch *b, bool by_key)
{
    uint32_t tsize = 16, *tab = NULL, *gid = NULL, *cur;
    int rc = -1;

    if (!b->order) b->order = malloc(sizeof(*b->order) * p->cfg->sender.max_batch_events);
    if (!b->groups) b->groups = malloc(sizeof(*b->groups) * p->cfg->sender.max_batch_events);
    if (!b->order || !b->groups) return -1;
    memset(b->groups, 0, sizeof(*b->groups));
    if (!by_key) {
        b->n_groups = 1;
        b->groups[0].n = b->count;
        for (uint32_t i = 0; i < b->count; i++) b->order[i] = i;
        return 0;
    }
    while (tsize < b->count * 2) tsize <<= 1;
    tab = calloc(tsize, sizeof(*tab));
    gid = malloc(sizeof(*gid) * b->count);
    if (!tab || !gid) goto out;

    b->n_groups = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        uint64_t key = ev_at(p, b, i)->key;
        uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (tsize - 1);
        while (tab[h] && b->groups[tab[h] - 1].key != key) h = (h + 1) & (tsize - 1);
        if (!tab[h]) {
            struct sr_group *g = &b->groups[b->n_groups];
            memset(g, 0, sizeof(*g));
            g->key = key;
            tab[h] = ++b->n_groups;
        }
        gid[i] = tab[h] - 1;
        b->groups[gid[i]].n++;
    }
    cur = tab; /* reuse: running offsets per group */
    for (uint32_t g = 0, off = 0; g < b->n_groups; g++) {
        b->groups[g].off = off;
        cur[g] = off;
        off += b->groups[g].n;
    }
    for (uint32_t i = 0; i < b->count; i++) b->order[cur[gid[i]]++] = i;
    rc = 0;
out:
    free(tab);
    free(gid);
    return rc;
}

static void add_ref(grpc_slice_buffer *sb, grpc_slice s)
{
    if (GRPC_SLICE_LENGTH(s)) grpc_slice_buffer_add(sb, grpc_slice_ref(s));
}

/* Appends an event as one `repeated X = 1` record of a collection (wrap), or
 * as it is (a whole message to merge with the others of its key). */
static void add_wrapped(grpc_slice_buffer *sb, const struct sr_event *e, bool wrap)
{
    if (wrap && !(e->flags & SR_EV_FRAGMENT)) {
        uint8_t hdr[11];
        size_t k;
        hdr[0] = 0x0a; /* field 1, wire type LEN */
        k = 1 + sr_pb_put_varint(hdr + 1, e->bytes);
        memcpy(grpc_slice_buffer_tiny_add(sb, k), hdr, k);
    }
    add_ref(sb, e->prefix);
    add_ref(sb, e->body);
}

static void add_group_wrapped(grpc_slice_buffer *sb, struct sr_pipe_rt *p, struct sr_batch *b,
                              const struct sr_group *g)
{
    for (uint32_t k = 0; k < g->n; k++)
        add_wrapped(sb, ev_at(p, b, b->order[g->off + k]), p->plan->wrap);
}

/* Builds the call's next message (messages are sent in order, one at a time). */
static grpc_byte_buffer *build_message(struct sr_ucall *uc)
{
    struct sr_pipe_rt *p = uc->pipe;
    struct sr_batch *b = uc->batch;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(NULL, 0);
    grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

    switch (p->plan->unit) {
    case SR_UNIT_EVENT: {
        struct sr_group *g = &b->groups[uc->gl[uc->cur_g]];
        struct sr_event *e = ev_at(p, b, b->order[g->off + uc->cur_e]);
        add_ref(sb, e->prefix);
        add_ref(sb, e->body);
        if (++uc->cur_e == g->n) {
            uc->cur_g++;
            uc->cur_e = 0;
        }
        break;
    }
    case SR_UNIT_GROUP:
        add_group_wrapped(sb, p, b, &b->groups[uc->gl[uc->next_msg]]);
        break;
    case SR_UNIT_CALL:
        for (uint32_t k = 0; k < uc->n_gl; k++) add_group_wrapped(sb, p, b, &b->groups[uc->gl[k]]);
        break;
    case SR_UNIT_LAST: {
        struct sr_group *g = &b->groups[uc->gl[uc->next_msg]];
        struct sr_event *e = ev_at(p, b, b->order[g->off + g->n - 1]);
        add_ref(sb, e->prefix);
        add_ref(sb, e->body);
        break;
    }
    }
    return bb;
}

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
    uc->sbuf = build_message(uc);
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

static void batch_done(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b);

static void free_ucall(struct sr_worker *w, struct sr_ucall *uc)
{
    if (uc->call) {
        if (uc->prev)
            uc->prev->next = uc->next;
        else
            w->ucalls = uc->next;
        if (uc->next) uc->next->prev = uc->prev;
        grpc_call_unref(uc->call);
        atomic_fetch_sub_explicit(&uc->node->inflight, 1, memory_order_relaxed);
        w->live_ucalls--;
    }
    if (uc->sbuf) grpc_byte_buffer_destroy(uc->sbuf);
    if (uc->rbuf) grpc_byte_buffer_destroy(uc->rbuf);
    grpc_metadata_array_destroy(&uc->init_md);
    grpc_metadata_array_destroy(&uc->trail_md);
    grpc_slice_unref(uc->details);
    if (uc->error_string) gpr_free((void *)uc->error_string);
    if (uc->gl != &uc->g1) free(uc->gl);
    free(uc);
}

/* Starts one upstream call to `node` carrying the groups gl[0..n) (takes gl
 * unless it is a single group). On failure to start, marks the attempt failed. */
static void start_call(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                       struct sr_node *node, uint32_t *gl, uint32_t n_gl)
{
    struct sr_ucall *uc = calloc(1, sizeof(*uc));
    const struct sr_config *cfg = w->rt->cfg;
    int64_t dl = w->now_ms + cfg->upstream.call_timeout_ms;
    gpr_timespec deadline = {dl / 1000, (int32_t)((dl % 1000) * 1000000), GPR_CLOCK_MONOTONIC};
    grpc_op ops[3];

    if (!uc) {
        if (n_gl > 1) free(gl);
        b->failed_status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return;
    }
    uc->t_send.fn = on_send;
    uc->t_recv.fn = on_recv;
    uc->start_us = sr_now_us();
    uc->pipe = p;
    uc->batch = b;
    uc->node = node;
    uc->details = grpc_empty_slice();
    grpc_metadata_array_init(&uc->init_md);
    grpc_metadata_array_init(&uc->trail_md);
    if (n_gl == 1) {
        uc->g1 = gl[0];
        uc->gl = &uc->g1;
    } else {
        uc->gl = gl;
    }
    uc->n_gl = n_gl;
    for (uint32_t k = 0; k < n_gl; k++) uc->events += b->groups[uc->gl[k]].n;
    switch (p->plan->unit) {
    case SR_UNIT_EVENT:
        uc->n_msgs = uc->events;
        break;
    case SR_UNIT_GROUP:
    case SR_UNIT_LAST:
        uc->n_msgs = n_gl;
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
        free_ucall(w, uc);
        b->failed_status = GRPC_STATUS_UNAVAILABLE;
        return;
    }
    atomic_fetch_add_explicit(&node->inflight, 1, memory_order_relaxed);
    uc->next = w->ucalls;
    uc->prev = NULL;
    if (uc->next) uc->next->prev = uc;
    w->ucalls = uc;
    b->calls_pending++;
    w->live_ucalls++;
    SR_CNT_ADD(w->ctr.pipe[p->id].upstream_calls, 1);
    if (!send_next(uc, true)) uc->send_done = true; /* the recv batch reports the status */
}

static struct sr_node *pick(struct sr_pipe_rt *p, struct sr_batch *b, uint64_t key, int64_t now,
                            int64_t *retry_at)
{
    struct sr_node *node = p->balancer->type->pick(p->balancer, key, b->tried, now, retry_at);
    if (!node && b->tried) /* every untried candidate is down: try the others again */
        node = p->balancer->type->pick(p->balancer, key, 0, now, retry_at);
    return node;
}

static void wait_for_node(struct sr_worker *w, struct sr_batch *b, int64_t retry_at)
{
    b->state = SR_BATCH_WAIT;
    b->not_before_ms = retry_at == INT64_MAX ? w->now_ms + 100 : retry_at;
    if (b->not_before_ms <= w->now_ms) b->not_before_ms = w->now_ms + 1;
}

/* Starts (or restarts) an attempt of batch b: chooses a node for every group
 * not yet delivered, then one call per node (or per group). */
static void attempt(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    bool keyed = p->cfg->routing.policy == SR_ROUTE_FIXED;
    int64_t retry_at = INT64_MAX;

    if (b->attempts == 0 && build_groups(p, b, p->plan->group_by_key || keyed) != 0) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "out of memory grouping a batch; will retry");
        wait_for_node(w, b, w->now_ms + 100);
        return;
    }
    if (keyed) {
        for (uint32_t g = 0; g < b->n_groups; g++) {
            struct sr_group *gr = &b->groups[g];
            if (gr->done) continue;
            gr->node = pick(p, b, gr->key, w->now_ms, &retry_at);
            if (!gr->node) {
                wait_for_node(w, b, retry_at);
                return;
            }
        }
    } else {
        struct sr_node *node = pick(p, b, 0, w->now_ms, &retry_at);
        if (!node) {
            wait_for_node(w, b, retry_at);
            return;
        }
        for (uint32_t g = 0; g < b->n_groups; g++) b->groups[g].node = node;
    }
    if (b->attempts > 0) {
        uint32_t left = 0;
        for (uint32_t g = 0; g < b->n_groups; g++)
            if (!b->groups[g].done) left += b->groups[g].n;
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_batches, 1);
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_events, left);
    }
    b->attempts++;
    b->state = SR_BATCH_SENDING;
    b->failed_status = 0;
    b->calls_pending = 0;
    for (uint32_t g = 0; g < b->n_groups; g++) b->groups[g].assigned = b->groups[g].done;

    for (uint32_t g = 0; g < b->n_groups; g++) {
        struct sr_group *gr = &b->groups[g];
        uint32_t n = 0, *gl;
        if (gr->assigned) continue;
        if (p->plan->call_per_group) {
            gr->assigned = 1;
            start_call(w, p, b, gr->node, &g, 1);
            continue;
        }
        /* every remaining group bound for the same node goes into one call */
        for (uint32_t h = g; h < b->n_groups; h++)
            if (!b->groups[h].assigned && b->groups[h].node == gr->node) n++;
        gl = n > 1 ? malloc(sizeof(*gl) * n) : NULL;
        if (n > 1 && !gl) {
            b->failed_status = GRPC_STATUS_RESOURCE_EXHAUSTED;
            break;
        }
        if (n == 1) {
            gr->assigned = 1;
            start_call(w, p, b, gr->node, &g, 1);
            continue;
        }
        n = 0;
        for (uint32_t h = g; h < b->n_groups; h++)
            if (!b->groups[h].assigned && b->groups[h].node == gr->node) {
                b->groups[h].assigned = 1;
                gl[n++] = h;
            }
        start_call(w, p, b, gr->node, gl, n);
    }
    if (b->calls_pending == 0) batch_done(w, p, b); /* nothing could start */
}

static uint32_t undelivered(const struct sr_batch *b)
{
    uint32_t left = 0;
    if (b->n_groups == 0) return b->count;
    for (uint32_t g = 0; g < b->n_groups; g++)
        if (!b->groups[g].done) left += b->groups[g].n;
    return left;
}

static void drop_batch(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                       enum sr_drop_reason reason)
{
    uint32_t left = undelivered(b);
    SR_CNT_ADD(w->ctr.pipe[p->id].dropped_events[reason], left);
    SR_LOG_RL(SR_LOG_ERROR, "sender", "pipe %s: dropped %u events: %s (last status %d)",
              sr_pipe_name(p->id), left, sr_drop_reason_name(reason), b->failed_status);
    p->dirty = true;
    if (sr_partition_complete(&p->part, b)) sr_worker_room(w, p);
}

/* Every call of an attempt ended. */
static void batch_done(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    p->dirty = true; /* a slot may be free, or a retry is due */
    if (undelivered(b) == 0) {
        SR_CNT_ADD(w->ctr.pipe[p->id].sent_batches, 1);
        if (sr_partition_complete(&p->part, b)) sr_worker_room(w, p);
        return;
    }
    if (b->failed_status == 0) b->failed_status = GRPC_STATUS_UNKNOWN;
    if (atomic_load(&w->rt->force_stop)) {
        drop_batch(w, p, b, SR_DROP_SHUTDOWN);
    } else if (!retryable((grpc_status_code)b->failed_status)) {
        drop_batch(w, p, b, SR_DROP_UPSTREAM_REJECTED);
    } else if (w->now_ms - b->first_attempt_ms >= (int64_t)w->rt->cfg->upstream.retry_max_ms) {
        drop_batch(w, p, b, SR_DROP_RETRY_EXHAUSTED);
    } else {
        b->state = SR_BATCH_WAIT; /* re-sent to the next candidate by sr_sender_service */
        b->not_before_ms = w->now_ms;
    }
}

static void ucall_maybe_done(struct sr_worker *w, struct sr_ucall *uc)
{
    struct sr_pipe_rt *p = uc->pipe;
    struct sr_batch *b = uc->batch;
    bool ok;

    if (!uc->send_done || !uc->recv_done) return;
    ok = uc->status == GRPC_STATUS_OK;
    sr_latency_observe(&w->ctr.upstream_latency[p->id], (uint64_t)(sr_now_us() - uc->start_us));
    if (ok) {
        SR_CNT_ADD(w->ctr.pipe[p->id].sent_events, uc->events);
        atomic_fetch_add_explicit(&uc->node->sent_events, uc->events, memory_order_relaxed);
        atomic_fetch_add_explicit(&uc->node->sent_batches, 1, memory_order_relaxed);
        for (uint32_t k = 0; k < uc->n_gl; k++) b->groups[uc->gl[k]].done = 1;
    } else {
        char *d = grpc_slice_to_c_string(uc->details);
        SR_CNT_ADD(w->ctr.pipe[p->id].upstream_failed, 1);
        atomic_fetch_add_explicit(&uc->node->failed_calls, 1, memory_order_relaxed);
        SR_LOG_RL(SR_LOG_WARN, "sender", "pipe %s: upstream call to %s failed: status %d %s",
                  sr_pipe_name(p->id), uc->node->address, uc->status, d ? d : "");
        gpr_free(d);
        if (b->failed_status == 0 || retryable((grpc_status_code)b->failed_status))
            b->failed_status = uc->status; /* a non-retryable status wins */
        /* the retry goes to the next candidate: the groups of this call skip this node
         * (nodes that took their groups fine stay candidates for the others) */
        b->tried |= sr_node_bit(uc->node);
    }
    /* Only transport-level trouble says something about the node's health. */
    if (ok || (retryable(uc->status) && !atomic_load(&w->rt->force_stop))) {
        sr_node_report(&w->rt->up, uc->node, ok, w->now_ms, &w->rng);
        sr_balancer_report(p->balancer, uc->node, ok);
    }
    b->calls_pending--;
    free_ucall(w, uc);
    if (b->calls_pending == 0) batch_done(w, p, b);
}

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_ucall *uc = UCALL_OF(t, t_send);
    grpc_byte_buffer_destroy(uc->sbuf);
    uc->sbuf = NULL;
    if (ok && ++uc->next_msg < uc->n_msgs) {
        if (send_next(uc, false)) return;
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

int64_t sr_sender_service(struct sr_worker *w, struct sr_pipe_rt *p, int64_t now_ms)
{
    const struct sr_sender_config *sc = &p->cfg->sender;
    bool flush = atomic_load_explicit(&w->rt->draining, memory_order_relaxed);
    int64_t wake = INT64_MAX, due;
    uint32_t n;

    for (uint32_t i = 0; i < p->part.slot_count; i++) {
        struct sr_batch *b = sr_partition_batch(&p->part, i);
        if (b->state != SR_BATCH_WAIT) continue;
        if (b->not_before_ms <= now_ms)
            attempt(w, p, b);
        if (b->state == SR_BATCH_WAIT && b->not_before_ms < wake) wake = b->not_before_ms;
    }
    while ((n = sr_partition_ready(&p->part, sc->max_batch_events, sc->max_batch_bytes,
                                   sc->linger_ms, flush, now_ms, &due)) > 0) {
        struct sr_batch *b = sr_partition_cut(&p->part, n, now_ms);
        attempt(w, p, b);
        if (b->state == SR_BATCH_WAIT && b->not_before_ms < wake) wake = b->not_before_ms;
    }
    return due < wake ? due : wake;
}

void sr_sender_abandon(struct sr_worker *w, struct sr_pipe_rt *p, enum sr_drop_reason reason)
{
    for (struct sr_ucall *uc = w->ucalls; uc; uc = uc->next)
        if (uc->pipe == p) grpc_call_cancel(uc->call, NULL);
    for (uint32_t i = 0; i < p->part.slot_count; i++) {
        struct sr_batch *b = sr_partition_batch(&p->part, i);
        if (b->state == SR_BATCH_WAIT) {
            drop_batch(w, p, b, reason);
            i = (uint32_t)-1; /* complete() may have moved slot_head: rescan */
        }
    }
}
