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
    uint32_t group; /* group index when the plan has one call per group, else UINT32_MAX */
    uint32_t n_msgs, next_msg;
    uint32_t events;
    bool send_done, recv_done;
    grpc_byte_buffer *sbuf;
    grpc_byte_buffer *rbuf;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
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

/* Groups the batch's events by key, stable: fills b->order and b->groups. */
static int build_groups(struct sr_pipe_rt *p, struct sr_batch *b)
{
    uint32_t tsize = 16, *tab = NULL, *gid = NULL, *cur = NULL;
    int rc = -1;

    if (!b->order) b->order = malloc(sizeof(*b->order) * p->cfg->sender.max_batch_events);
    if (!b->groups) b->groups = malloc(sizeof(*b->groups) * p->cfg->sender.max_batch_events);
    while (tsize < b->count * 2) tsize <<= 1;
    tab = calloc(tsize, sizeof(*tab));
    gid = malloc(sizeof(*gid) * b->count);
    if (!b->order || !b->groups || !tab || !gid) goto out;

    b->n_groups = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        uint64_t key = ev_at(p, b, i)->key;
        uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (tsize - 1);
        while (tab[h] && b->groups[tab[h] - 1].key != key) h = (h + 1) & (tsize - 1);
        if (!tab[h]) {
            struct sr_group *g = &b->groups[b->n_groups];
            g->key = key;
            g->n = 0;
            g->done = 0;
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

/* Appends an event as one `repeated X = 1` record of a collection. */
static void add_wrapped(grpc_slice_buffer *sb, const struct sr_event *e)
{
    if (!(e->flags & SR_EV_FRAGMENT)) {
        uint8_t hdr[11];
        size_t k;
        hdr[0] = 0x0a; /* field 1, wire type LEN */
        k = 1 + sr_pb_put_varint(hdr + 1, e->bytes);
        memcpy(grpc_slice_buffer_tiny_add(sb, k), hdr, k);
    }
    add_ref(sb, e->prefix);
    add_ref(sb, e->body);
}

static grpc_byte_buffer *build_message(struct sr_ucall *uc, uint32_t i)
{
    struct sr_pipe_rt *p = uc->pipe;
    struct sr_batch *b = uc->batch;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(NULL, 0);
    grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

    switch (p->plan->unit) {
    case SR_UNIT_EVENT: {
        uint32_t idx = i;
        if (uc->group != UINT32_MAX) idx = b->order[b->groups[uc->group].off + i];
        struct sr_event *e = ev_at(p, b, idx);
        add_ref(sb, e->prefix);
        add_ref(sb, e->body);
        break;
    }
    case SR_UNIT_GROUP: {
        struct sr_group *g = &b->groups[i];
        for (uint32_t k = 0; k < g->n; k++) add_wrapped(sb, ev_at(p, b, b->order[g->off + k]));
        break;
    }
    case SR_UNIT_CALL:
        for (uint32_t k = 0; k < b->count; k++) add_wrapped(sb, ev_at(p, b, k));
        break;
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
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
    }
    uc->sbuf = build_message(uc, uc->next_msg);
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

static void start_call(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                       struct sr_node *node, uint32_t group)
{
    struct sr_ucall *uc = calloc(1, sizeof(*uc));
    const struct sr_config *cfg = w->rt->cfg;
    gpr_timespec deadline;
    grpc_op ops[3];

    if (!uc) {
        b->failed_status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return;
    }
    uc->t_send.fn = on_send;
    uc->t_recv.fn = on_recv;
    uc->pipe = p;
    uc->batch = b;
    uc->node = node;
    uc->group = group;
    uc->details = grpc_empty_slice();
    grpc_metadata_array_init(&uc->init_md);
    grpc_metadata_array_init(&uc->trail_md);
    switch (p->plan->unit) {
    case SR_UNIT_EVENT:
        uc->n_msgs = group == UINT32_MAX ? b->count : b->groups[group].n;
        break;
    case SR_UNIT_GROUP:
        uc->n_msgs = b->n_groups;
        break;
    case SR_UNIT_CALL:
        uc->n_msgs = 1;
        break;
    }
    uc->events = group == UINT32_MAX ? b->count : b->groups[group].n;

    deadline.tv_sec = (w->now_ms + cfg->upstream.call_timeout_ms) / 1000;
    deadline.tv_nsec = (int32_t)(((w->now_ms + cfg->upstream.call_timeout_ms) % 1000) * 1000000);
    deadline.clock_type = GPR_CLOCK_MONOTONIC;
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
        grpc_metadata_array_destroy(&uc->init_md);
        grpc_metadata_array_destroy(&uc->trail_md);
        free(uc);
        b->failed_status = GRPC_STATUS_UNAVAILABLE;
        return;
    }
    if (!send_next(uc, true)) uc->send_done = true; /* the recv batch reports the status */

    uc->next = w->ucalls;
    uc->prev = NULL;
    if (uc->next) uc->next->prev = uc;
    w->ucalls = uc;
    b->calls_pending++;
    w->live_ucalls++;
    SR_CNT_ADD(w->ctr.pipe[p->id].upstream_calls, 1);
}

static void free_ucall(struct sr_worker *w, struct sr_ucall *uc)
{
    if (uc->prev)
        uc->prev->next = uc->next;
    else
        w->ucalls = uc->next;
    if (uc->next) uc->next->prev = uc->prev;
    if (uc->sbuf) grpc_byte_buffer_destroy(uc->sbuf);
    if (uc->rbuf) grpc_byte_buffer_destroy(uc->rbuf);
    grpc_metadata_array_destroy(&uc->init_md);
    grpc_metadata_array_destroy(&uc->trail_md);
    grpc_slice_unref(uc->details);
    if (uc->error_string) gpr_free((void *)uc->error_string);
    grpc_call_unref(uc->call);
    free(uc);
    w->live_ucalls--;
}

/* Starts (or restarts) an attempt of batch b on the next node. */
static void attempt(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    int64_t retry_at = INT64_MAX;
    struct sr_node *node;

    node = p->balancer->type->pick(p->balancer, 0, b->tried, w->now_ms, &retry_at);
    if (!node && b->tried) { /* every untried node is down: start a new round */
        b->tried = 0;
        node = p->balancer->type->pick(p->balancer, 0, 0, w->now_ms, &retry_at);
    }
    if (!node) {
        b->state = SR_BATCH_WAIT;
        b->not_before_ms = retry_at == INT64_MAX ? w->now_ms + 100 : retry_at;
        if (b->not_before_ms <= w->now_ms) b->not_before_ms = w->now_ms + 1;
        return;
    }
    if (p->plan->group_by_key && b->attempts == 0 && build_groups(p, b) != 0) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "out of memory grouping a batch; will retry");
        b->state = SR_BATCH_WAIT;
        b->not_before_ms = w->now_ms + 100;
        return;
    }
    if (b->attempts > 0) {
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_batches, 1);
        SR_CNT_ADD(w->ctr.pipe[p->id].retried_events, b->count);
    }
    b->attempts++;
    b->node = node;
    b->tried |= sr_node_bit(node);
    b->state = SR_BATCH_SENDING;
    b->failed_status = 0;
    b->calls_pending = 0;
    if (p->plan->call_per_group) {
        for (uint32_t g = 0; g < b->n_groups; g++)
            if (!b->groups[g].done) start_call(w, p, b, node, g);
    } else {
        start_call(w, p, b, node, UINT32_MAX);
    }
    if (b->calls_pending == 0) batch_done(w, p, b); /* nothing could start */
}

static void drop_batch(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                       enum sr_drop_reason reason)
{
    uint32_t left = b->count;
    if (p->plan->call_per_group && b->n_groups) {
        left = 0;
        for (uint32_t g = 0; g < b->n_groups; g++)
            if (!b->groups[g].done) left += b->groups[g].n;
    }
    SR_CNT_ADD(w->ctr.pipe[p->id].dropped_events[reason], left);
    SR_LOG_RL(SR_LOG_ERROR, "sender", "pipe %s: dropped a batch of %u events: %s (last status %d)",
              sr_pipe_name(p->id), left, sr_drop_reason_name(reason), b->failed_status);
    if (sr_partition_complete(&p->part, b)) sr_worker_room(w, p);
}

/* All calls of an attempt ended. */
static void batch_done(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b)
{
    p->dirty = true; /* a slot may be free, or a retry is due */
    if (b->failed_status == 0) {
        SR_CNT_ADD(w->ctr.pipe[p->id].sent_batches, 1);
        if (sr_partition_complete(&p->part, b)) sr_worker_room(w, p);
        return;
    }
    if (atomic_load(&w->rt->force_stop)) {
        drop_batch(w, p, b, SR_DROP_SHUTDOWN);
    } else if (!retryable((grpc_status_code)b->failed_status)) {
        drop_batch(w, p, b, SR_DROP_UPSTREAM_REJECTED);
    } else if (w->now_ms - b->first_attempt_ms >= (int64_t)w->rt->cfg->upstream.retry_max_ms) {
        drop_batch(w, p, b, SR_DROP_RETRY_EXHAUSTED);
    } else {
        b->state = SR_BATCH_WAIT; /* re-sent to the next node by sr_sender_service */
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
    if (ok) {
        SR_CNT_ADD(w->ctr.pipe[p->id].sent_events, uc->events);
        atomic_fetch_add_explicit(&uc->node->sent_events, uc->events, memory_order_relaxed);
        atomic_fetch_add_explicit(&uc->node->sent_batches, 1, memory_order_relaxed);
        if (uc->group != UINT32_MAX) b->groups[uc->group].done = 1;
    } else {
        char *d = grpc_slice_to_c_string(uc->details);
        SR_CNT_ADD(w->ctr.pipe[p->id].upstream_failed, 1);
        atomic_fetch_add_explicit(&uc->node->failed_calls, 1, memory_order_relaxed);
        SR_LOG_RL(SR_LOG_WARN, "sender", "pipe %s: upstream call to %s failed: status %d %s",
                  sr_pipe_name(p->id), uc->node->address, uc->status, d ? d : "");
        gpr_free(d);
        if (b->failed_status == 0 || retryable((grpc_status_code)b->failed_status))
            b->failed_status = uc->status; /* a non-retryable status wins */
    }
    /* Only transport-level trouble says something about the node's health. */
    if (ok || (retryable(uc->status) && !atomic_load(&w->rt->force_stop)))
        sr_node_report(&w->rt->up, uc->node, ok, w->now_ms, &w->rng);
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
