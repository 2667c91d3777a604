/* Transparent relay of one downstream call to one upstream node.
 *
 * A struct sr_rcall pairs the downstream (server) call with an upstream
 * (client) call created with the downstream call as parent and
 * GRPC_PROPAGATE_DEFAULTS, so the caller's deadline and cancellation reach
 * upstream by themselves. Both run on the worker's completion queue.
 *
 * Each direction keeps one message in flight: the next downstream message is
 * read only when the previous one was written upstream, and the next upstream
 * message only when the previous one was written downstream. So neither side
 * is buffered by skyrelay beyond one message, and HTTP/2 flow control works end
 * to end. Downstream writes are sequenced: initial metadata (as upstream sent
 * it, filtered), messages, then the status with upstream's trailing metadata
 * once upstream has ended.
 *
 * What passes and what does not:
 * - metadata both ways minus gRPC's own keys and the hop-by-hop headers
 *   (sr_metadata_reserved); upstream's grpc-status-details-bin (rich error
 *   details) is a gRPC key but belongs to the answer, so it goes back with
 *   the status;
 * - the node is judged by the status class (include/skyrelay/upstream.h):
 *   OK restores it, a transport failure it caused ejects it, and an answer
 *   about the request (INTERNAL, INVALID_ARGUMENT, UNAUTHENTICATED, ...) only
 *   goes back to the caller. A deadline or cancellation that came from the
 *   caller says nothing about the node;
 * - a call without a caller deadline is capped at upstream.sync_timeout, a
 *   synchronous one always (the earlier deadline wins through the parent);
 * - every message held (received, not yet written on) is charged to the
 *   worker's memory budget until it is written or freed. */
#include "skyrelay/relay.h"

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/queue.h"
#include "skyrelay/upstream.h"

struct sr_rcall {
    struct sr_tag t_dclose, t_drecv, t_dsend, t_usend, t_umd, t_urecv, t_ustatus;
    grpc_call *down, *up;
    grpc_call_details details;
    grpc_metadata_array dmd; /* the caller's request metadata */
    grpc_metadata *fwd;      /* forwarded to upstream (slices borrowed from dmd) */
    size_t n_fwd;
    grpc_metadata_array umd, utrail; /* upstream initial and trailing metadata */
    grpc_metadata *dout;             /* filtered copy sent downstream (borrowed slices) */
    size_t n_dout;
    grpc_byte_buffer *drecv, *urecv, *dsend, *usend, *pending;
    /* bytes charged to the worker's budget for usend / pending / dsend (a sent
     * buffer is empty afterwards: its length cannot be read back) */
    uint32_t usend_bytes, pending_bytes, dsend_bytes;
    grpc_status_code ustatus;
    grpc_slice udetails;
    const char *uerr;
    int dcancelled;
    int refs;
    struct sr_node *node;
    enum sr_call_mode mode;
    bool own_deadline; /* the upstream deadline is our cap, earlier than the caller's */
    bool dsend_busy, dsend_was_msg, usend_busy, usend_was_msg;
    bool d_initial_sent, d_status_sent, d_half_closed, d_dead, d_closed;
    bool u_md, u_recv_done, u_status, node_settled;
};

#define RC_OF(t, m) ((struct sr_rcall *)((char *)(t)-offsetof(struct sr_rcall, m)))

static bool key_is(grpc_slice key, const char *s)
{
    return GRPC_SLICE_LENGTH(key) == strlen(s) &&
           memcmp(GRPC_SLICE_START_PTR(key), s, GRPC_SLICE_LENGTH(key)) == 0;
}

bool sr_metadata_reserved(grpc_slice key, grpc_slice value)
{
    const char *k = (const char *)GRPC_SLICE_START_PTR(key);
    size_t n = GRPC_SLICE_LENGTH(key);
    /* gRPC's and HTTP's own, then the hop-by-hop headers (RFC 9110 7.6.1, RFC 9113
     * 8.2.2): they describe one connection, not the call */
    static const char *const drop[] = {"content-type", "user-agent", "host",
                                       "connection", "keep-alive", "proxy-connection",
                                       "transfer-encoding", "upgrade"};
    if (n == 0 || k[0] == ':') return true;
    if (n >= 5 && memcmp(k, "grpc-", 5) == 0) return true;
    if (key_is(key, "te")) return !key_is(value, "trailers");
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (key_is(key, drop[i])) return true;
    return false;
}

/* Copies the forwardable entries of `in` (slices borrowed). With `status`,
 * upstream's rich error details go along (they end the call, with its status). */
static grpc_metadata *filter_md(const grpc_metadata_array *in, size_t extra, bool status,
                                size_t *n_out)
{
    grpc_metadata *out = calloc(in->count + extra + 1, sizeof(*out));
    size_t n = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < in->count; i++) {
        const grpc_metadata *m = &in->metadata[i];
        if ((status && key_is(m->key, "grpc-status-details-bin")) ||
            !sr_metadata_reserved(m->key, m->value))
            out[n++] = *m;
    }
    *n_out = n;
    return out;
}

grpc_metadata *sr_relay_request_md(const grpc_metadata_array *in, const char *auth, size_t *n_out)
{
    grpc_metadata *out = filter_md(in, 1, false, n_out);
    if (out && auth && auth[0]) { /* upstream.authentication replaces the caller's token */
        size_t k = 0;
        for (size_t i = 0; i < *n_out; i++)
            if (!key_is(out[i].key, "authentication")) out[k++] = out[i];
        out[k].key = grpc_slice_from_static_string("authentication");
        out[k].value = grpc_slice_from_static_string(auth);
        *n_out = k + 1;
    }
    return out;
}

grpc_metadata *sr_relay_answer_md(const grpc_metadata_array *in, bool status, size_t *n_out)
{
    return filter_md(in, 0, status, n_out);
}

/* Budget accounting of one held message slot. */
static void hold(struct sr_worker *w, grpc_byte_buffer *bb, uint32_t *bytes)
{
    size_t n = grpc_byte_buffer_length(bb);
    *bytes = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    sr_budget_charge(&w->budget, *bytes);
}

/* Destroys the buffer of a slot (if any) and releases its charge. */
static void let_go(struct sr_worker *w, grpc_byte_buffer **bb, uint32_t *bytes)
{
    if (*bb) grpc_byte_buffer_destroy(*bb);
    *bb = NULL;
    sr_budget_release(&w->budget, *bytes);
    *bytes = 0;
}

static void maybe_free(struct sr_worker *w, struct sr_rcall *rc)
{
    if (rc->refs > 0) return;
    if (rc->drecv) grpc_byte_buffer_destroy(rc->drecv); /* not charged yet */
    if (rc->urecv) grpc_byte_buffer_destroy(rc->urecv);
    let_go(w, &rc->dsend, &rc->dsend_bytes);
    let_go(w, &rc->usend, &rc->usend_bytes);
    let_go(w, &rc->pending, &rc->pending_bytes);
    if (rc->up) {
        grpc_call_unref(rc->up);
        atomic_fetch_sub_explicit(&rc->node->inflight, 1, memory_order_relaxed);
    }
    if (rc->down) grpc_call_unref(rc->down);
    free(rc->fwd);
    free(rc->dout);
    grpc_metadata_array_destroy(&rc->umd);
    grpc_metadata_array_destroy(&rc->utrail);
    grpc_metadata_array_destroy(&rc->dmd);
    grpc_call_details_destroy(&rc->details);
    grpc_slice_unref(rc->udetails);
    if (rc->uerr) gpr_free((void *)rc->uerr);
    free(rc);
    w->live_dcalls--;
}

static bool start_ops(struct sr_rcall *rc, grpc_call *call, const grpc_op *ops, size_t n,
                      struct sr_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "relay", "start_batch: %s", grpc_call_error_to_string(e));
        return false;
    }
    rc->refs++;
    return true;
}

/* Sends the final status downstream (with initial metadata if none went yet). */
static void send_status(struct sr_worker *w, struct sr_rcall *rc, grpc_status_code status,
                        grpc_slice *details, const grpc_metadata *trail, size_t n_trail)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!rc->d_initial_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        rc->d_initial_sent = true;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = details;
    ops[n].data.send_status_from_server.trailing_metadata = (grpc_metadata *)trail;
    ops[n].data.send_status_from_server.trailing_metadata_count = n_trail;
    n++;
    rc->d_status_sent = true;
    rc->dsend_busy = true;
    rc->dsend_was_msg = false;
    if (!start_ops(rc, rc->down, ops, n, &rc->t_dsend)) rc->dsend_busy = false;
    SR_CNT_ADD(w->ctr.relay_calls[rc->mode == SR_MODE_SYNC ? 0 : 1], 1);
    if (status != GRPC_STATUS_OK) SR_CNT_ADD(w->ctr.relay_failed, 1);
}

static void arm_urecv(struct sr_rcall *rc)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &rc->urecv;
    if (!start_ops(rc, rc->up, &op, 1, &rc->t_urecv)) rc->u_recv_done = true;
}

static void arm_drecv(struct sr_rcall *rc)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &rc->drecv;
    if (!start_ops(rc, rc->down, &op, 1, &rc->t_drecv)) rc->d_dead = true;
}

/* Moves whatever is next downstream: initial metadata, a message, the status. */
static void pump_down(struct sr_worker *w, struct sr_rcall *rc)
{
    grpc_op op;
    if (rc->dsend_busy || rc->d_status_sent || rc->d_dead) return;
    memset(&op, 0, sizeof(op));
    if (!rc->d_initial_sent && rc->u_md) {
        free(rc->dout);
        rc->dout = filter_md(&rc->umd, 0, false, &rc->n_dout);
        op.op = GRPC_OP_SEND_INITIAL_METADATA;
        op.data.send_initial_metadata.metadata = rc->dout;
        op.data.send_initial_metadata.count = rc->dout ? rc->n_dout : 0;
        rc->d_initial_sent = true;
        rc->dsend_busy = true;
        rc->dsend_was_msg = false;
        if (!start_ops(rc, rc->down, &op, 1, &rc->t_dsend)) rc->dsend_busy = false;
        return;
    }
    if (rc->pending && rc->d_initial_sent) {
        rc->dsend = rc->pending;
        rc->dsend_bytes = rc->pending_bytes;
        rc->pending = NULL;
        rc->pending_bytes = 0;
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = rc->dsend;
        rc->dsend_busy = true;
        rc->dsend_was_msg = true;
        if (!start_ops(rc, rc->down, &op, 1, &rc->t_dsend)) {
            rc->dsend_busy = false;
            let_go(w, &rc->dsend, &rc->dsend_bytes);
        }
        return;
    }
    if (rc->u_status && rc->u_recv_done && !rc->pending) {
        free(rc->dout);
        rc->dout = filter_md(&rc->utrail, 0, true, &rc->n_dout);
        send_status(w, rc, rc->ustatus, &rc->udetails, rc->dout, rc->dout ? rc->n_dout : 0);
    }
}

/* What the end of the upstream call says about the node, once it is known:
 * OK restores it; a transport failure ejects it unless the caller caused it
 * (the caller's own deadline, its cancellation, or our cancel after the caller
 * went away); an answer about the request (content or reject class) leaves it
 * alone. A CANCELLED waits for the caller's side to end to tell whose it was. */
static void settle_node(struct sr_worker *w, struct sr_rcall *rc)
{
    bool ok;
    if (!rc->node || rc->node_settled || !rc->u_status) return;
    switch (sr_status_class(rc->ustatus)) {
    case SR_SC_OK:
        ok = true;
        break;
    case SR_SC_TRANSPORT:
        ok = false;
        if (rc->ustatus == GRPC_STATUS_DEADLINE_EXCEEDED && !rc->own_deadline) {
            rc->node_settled = true; /* the caller's deadline: its budget, not the node */
            return;
        }
        if (rc->ustatus == GRPC_STATUS_CANCELLED) {
            if (!rc->d_closed && !rc->d_dead) return;
            if (rc->dcancelled || rc->d_dead) {
                rc->node_settled = true;
                return;
            }
        }
        break;
    default: /* OAP's answer about this request: the caller gets it, the node stays */
        rc->node_settled = true;
        return;
    }
    rc->node_settled = true;
    if (!atomic_load(&w->rt->draining)) sr_node_report(&w->rt->up, rc->node, ok, w->now_ms, &w->rng);
}

static void on_dclose(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_dclose);
    rc->refs--;
    rc->d_closed = true;
    if (rc->dcancelled || !ok) {
        rc->d_dead = true;
        if (rc->up) grpc_call_cancel(rc->up, NULL);
    }
    settle_node(w, rc);
    maybe_free(w, rc);
}

static void on_drecv(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_drecv);
    grpc_op ops[1];
    rc->refs--;
    memset(ops, 0, sizeof(ops));
    if (!ok || rc->d_dead || rc->u_status) {
        if (rc->drecv) grpc_byte_buffer_destroy(rc->drecv);
        rc->drecv = NULL;
        if (!ok) rc->d_dead = true;
        maybe_free(w, rc);
        return;
    }
    if (!rc->drecv) { /* the caller half-closed */
        rc->d_half_closed = true;
        ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        rc->usend_was_msg = false;
    } else {
        rc->usend = rc->drecv;
        rc->drecv = NULL;
        hold(w, rc->usend, &rc->usend_bytes);
        ops[0].op = GRPC_OP_SEND_MESSAGE;
        ops[0].data.send_message.send_message = rc->usend;
        rc->usend_was_msg = true;
    }
    rc->usend_busy = true;
    if (!start_ops(rc, rc->up, ops, 1, &rc->t_usend)) {
        rc->usend_busy = false;
        let_go(w, &rc->usend, &rc->usend_bytes);
    }
    maybe_free(w, rc);
}

static void on_usend(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_usend);
    rc->refs--;
    rc->usend_busy = false;
    /* counted only once written: a failed write was not relayed */
    if (ok && rc->usend_was_msg) SR_CNT_ADD(w->ctr.relay_msgs_up, 1);
    rc->usend_was_msg = false;
    let_go(w, &rc->usend, &rc->usend_bytes);
    /* not ok: upstream is gone; its status will tell */
    if (ok && !rc->d_half_closed && !rc->d_dead && !rc->u_status) arm_drecv(rc);
    maybe_free(w, rc);
}

static void on_umd(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_umd);
    rc->refs--;
    rc->u_md = true;
    if (ok)
        arm_urecv(rc);
    else
        rc->u_recv_done = true;
    pump_down(w, rc);
    maybe_free(w, rc);
}

static void on_urecv(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_urecv);
    rc->refs--;
    if (!ok || !rc->urecv) {
        if (rc->urecv) grpc_byte_buffer_destroy(rc->urecv);
        rc->urecv = NULL;
        rc->u_recv_done = true;
    } else {
        rc->pending = rc->urecv;
        rc->urecv = NULL;
        hold(w, rc->pending, &rc->pending_bytes);
    }
    pump_down(w, rc);
    maybe_free(w, rc);
}

static void on_ustatus(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_ustatus);
    rc->refs--;
    rc->u_status = true;
    if (!ok && rc->ustatus == GRPC_STATUS_OK) rc->ustatus = GRPC_STATUS_UNKNOWN;
    settle_node(w, rc);
    pump_down(w, rc);
    maybe_free(w, rc);
}

static void on_dsend(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_dsend);
    rc->refs--;
    rc->dsend_busy = false;
    if (ok && rc->dsend_was_msg) SR_CNT_ADD(w->ctr.relay_msgs_down, 1);
    let_go(w, &rc->dsend, &rc->dsend_bytes);
    if (!ok) {
        rc->d_dead = true;
        if (rc->up) grpc_call_cancel(rc->up, NULL);
        let_go(w, &rc->pending, &rc->pending_bytes); /* nobody to write it to */
    } else if (rc->dsend_was_msg && !rc->u_recv_done) {
        arm_urecv(rc);
    }
    pump_down(w, rc);
    maybe_free(w, rc);
}

int64_t sr_caller_deadline_ms(gpr_timespec d)
{
    if (d.tv_sec >= INT64_MAX / 2000) return INT64_MAX; /* inf_future: no deadline */
    d = gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC);
    if (d.tv_sec >= INT64_MAX / 2000) return INT64_MAX;
    return (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
}

void sr_relay_start(struct sr_worker *w, grpc_call *call, grpc_call_details *details,
                    grpc_metadata_array *md, enum sr_call_mode mode)
{
    const struct sr_config *cfg = w->rt->cfg;
    struct sr_rcall *rc = calloc(1, sizeof(*rc));
    int64_t retry_at = INT64_MAX, caller_ms, cap_ms = INT64_MAX;
    gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_op ops[1];

    if (!rc) {
        grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "skyrelay: out of memory",
                                     NULL);
        grpc_call_unref(call);
        grpc_call_details_destroy(details);
        grpc_metadata_array_destroy(md);
        grpc_call_details_init(details);
        grpc_metadata_array_init(md);
        w->live_dcalls--;
        return;
    }
    rc->t_dclose.fn = on_dclose;
    rc->t_drecv.fn = on_drecv;
    rc->t_dsend.fn = on_dsend;
    rc->t_usend.fn = on_usend;
    rc->t_umd.fn = on_umd;
    rc->t_urecv.fn = on_urecv;
    rc->t_ustatus.fn = on_ustatus;
    rc->down = call;
    rc->details = *details;
    rc->dmd = *md;
    grpc_call_details_init(details);
    grpc_metadata_array_init(md);
    grpc_metadata_array_init(&rc->umd);
    grpc_metadata_array_init(&rc->utrail);
    rc->udetails = grpc_empty_slice();
    rc->mode = mode;

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &rc->dcancelled;
    start_ops(rc, rc->down, ops, 1, &rc->t_dclose);

    rc->node = w->relay_balancer->type->pick(w->relay_balancer, 0, 0, w->now_ms, &retry_at);
    if (!rc->node) {
        grpc_slice d = grpc_slice_from_static_string("skyrelay: no upstream node available");
        SR_LOG_RL(SR_LOG_WARN, "relay", "no upstream node available for %.*s",
                  (int)GRPC_SLICE_LENGTH(rc->details.method),
                  (const char *)GRPC_SLICE_START_PTR(rc->details.method));
        send_status(w, rc, GRPC_STATUS_UNAVAILABLE, &d, NULL, 0);
        return;
    }
    /* A synchronous call is always capped; a relayed one only when the caller
     * set no deadline, so that a call to a node that never answers cannot hold
     * its buffers and the node's slot forever. With the downstream call as
     * parent, the caller's own deadline also applies (the earlier of the two)
     * and its cancellation propagates. */
    caller_ms = sr_caller_deadline_ms(rc->details.deadline);
    if (mode == SR_MODE_SYNC || caller_ms == INT64_MAX)
        cap_ms = w->now_ms + cfg->upstream.sync_timeout_ms;
    if (cap_ms < caller_ms) {
        rc->own_deadline = true;
        deadline.tv_sec = cap_ms / 1000;
        deadline.tv_nsec = (int32_t)((cap_ms % 1000) * 1000000);
    }
    rc->up = grpc_channel_create_call(rc->node->channel, rc->down, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                      rc->details.method, NULL, deadline, NULL);
    if (rc->up) atomic_fetch_add_explicit(&rc->node->inflight, 1, memory_order_relaxed);
    rc->fwd = sr_relay_request_md(&rc->dmd, cfg->upstream.authentication, &rc->n_fwd);
    if (!rc->up || !rc->fwd) {
        grpc_slice d = grpc_slice_from_static_string("skyrelay: cannot create upstream call");
        send_status(w, rc, GRPC_STATUS_INTERNAL, &d, NULL, 0);
        return;
    }

    {
        grpc_op uops[1];
        memset(uops, 0, sizeof(uops));
        uops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        uops[0].data.send_initial_metadata.metadata = rc->fwd;
        uops[0].data.send_initial_metadata.count = rc->n_fwd;
        rc->usend_busy = true;
        if (!start_ops(rc, rc->up, uops, 1, &rc->t_usend)) rc->usend_busy = false;
        memset(uops, 0, sizeof(uops));
        uops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
        uops[0].data.recv_initial_metadata.recv_initial_metadata = &rc->umd;
        start_ops(rc, rc->up, uops, 1, &rc->t_umd);
        memset(uops, 0, sizeof(uops));
        uops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        uops[0].data.recv_status_on_client.trailing_metadata = &rc->utrail;
        uops[0].data.recv_status_on_client.status = &rc->ustatus;
        uops[0].data.recv_status_on_client.status_details = &rc->udetails;
        uops[0].data.recv_status_on_client.error_string = &rc->uerr;
        start_ops(rc, rc->up, uops, 1, &rc->t_ustatus);
    }
    /* the first downstream read is armed when the initial metadata went out (on_usend) */
}
