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
 * once upstream has ended. */
#include "skyrelay/relay.h"

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/log.h"

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
    grpc_status_code ustatus;
    grpc_slice udetails;
    const char *uerr;
    int dcancelled;
    int refs;
    struct sr_node *node;
    enum sr_call_mode mode;
    bool dsend_busy, dsend_was_msg, usend_busy;
    bool d_initial_sent, d_status_sent, d_half_closed, d_dead;
    bool u_md, u_recv_done, u_status;
};

#define RC_OF(t, m) ((struct sr_rcall *)((char *)(t)-offsetof(struct sr_rcall, m)))

bool sr_metadata_reserved(grpc_slice key)
{
    const char *k = (const char *)GRPC_SLICE_START_PTR(key);
    size_t n = GRPC_SLICE_LENGTH(key);
    static const char *const drop[] = {"te", "content-type", "user-agent", "host", "connection"};
    if (n == 0 || k[0] == ':') return true;
    if (n >= 5 && memcmp(k, "grpc-", 5) == 0) return true;
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == n && memcmp(drop[i], k, n) == 0) return true;
    return false;
}

static bool key_is(grpc_slice key, const char *s)
{
    return GRPC_SLICE_LENGTH(key) == strlen(s) &&
           memcmp(GRPC_SLICE_START_PTR(key), s, GRPC_SLICE_LENGTH(key)) == 0;
}

/* Copies the forwardable entries of `in` (slices borrowed). */
static grpc_metadata *filter_md(const grpc_metadata_array *in, size_t extra, size_t *n_out)
{
    grpc_metadata *out = calloc(in->count + extra + 1, sizeof(*out));
    size_t n = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < in->count; i++)
        if (!sr_metadata_reserved(in->metadata[i].key)) out[n++] = in->metadata[i];
    *n_out = n;
    return out;
}

static void maybe_free(struct sr_worker *w, struct sr_rcall *rc)
{
    if (rc->refs > 0) return;
    if (rc->drecv) grpc_byte_buffer_destroy(rc->drecv);
    if (rc->urecv) grpc_byte_buffer_destroy(rc->urecv);
    if (rc->dsend) grpc_byte_buffer_destroy(rc->dsend);
    if (rc->usend) grpc_byte_buffer_destroy(rc->usend);
    if (rc->pending) grpc_byte_buffer_destroy(rc->pending);
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
        rc->dout = filter_md(&rc->umd, 0, &rc->n_dout);
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
        rc->pending = NULL;
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = rc->dsend;
        rc->dsend_busy = true;
        rc->dsend_was_msg = true;
        SR_CNT_ADD(w->ctr.relay_msgs_down, 1);
        if (!start_ops(rc, rc->down, &op, 1, &rc->t_dsend)) rc->dsend_busy = false;
        return;
    }
    if (rc->u_status && rc->u_recv_done && !rc->pending) {
        free(rc->dout);
        rc->dout = filter_md(&rc->utrail, 0, &rc->n_dout);
        send_status(w, rc, rc->ustatus, &rc->udetails, rc->dout, rc->dout ? rc->n_dout : 0);
    }
}

static void on_dclose(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_dclose);
    rc->refs--;
    if (rc->dcancelled || !ok) {
        rc->d_dead = true;
        if (rc->up) grpc_call_cancel(rc->up, NULL);
    }
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
    } else {
        rc->usend = rc->drecv;
        rc->drecv = NULL;
        ops[0].op = GRPC_OP_SEND_MESSAGE;
        ops[0].data.send_message.send_message = rc->usend;
        SR_CNT_ADD(w->ctr.relay_msgs_up, 1);
    }
    rc->usend_busy = true;
    if (!start_ops(rc, rc->up, ops, 1, &rc->t_usend)) rc->usend_busy = false;
    maybe_free(w, rc);
}

static void on_usend(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_usend);
    rc->refs--;
    rc->usend_busy = false;
    if (rc->usend) grpc_byte_buffer_destroy(rc->usend);
    rc->usend = NULL;
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
    if (rc->node && !atomic_load(&w->rt->draining)) {
        /* connection-level trouble ejects the node; anything else is the method's answer */
        if (rc->ustatus == GRPC_STATUS_UNAVAILABLE)
            sr_node_report(&w->rt->up, rc->node, false, w->now_ms, &w->rng);
        else if (rc->ustatus == GRPC_STATUS_OK)
            sr_node_report(&w->rt->up, rc->node, true, w->now_ms, &w->rng);
    }
    pump_down(w, rc);
    maybe_free(w, rc);
}

static void on_dsend(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_rcall *rc = RC_OF(t, t_dsend);
    rc->refs--;
    rc->dsend_busy = false;
    if (rc->dsend) grpc_byte_buffer_destroy(rc->dsend);
    rc->dsend = NULL;
    if (!ok) {
        rc->d_dead = true;
        if (rc->up) grpc_call_cancel(rc->up, NULL);
    } else if (rc->dsend_was_msg && !rc->u_recv_done) {
        arm_urecv(rc);
    }
    pump_down(w, rc);
    maybe_free(w, rc);
}

void sr_relay_start(struct sr_worker *w, grpc_call *call, grpc_call_details *details,
                    grpc_metadata_array *md, enum sr_call_mode mode)
{
    const struct sr_config *cfg = w->rt->cfg;
    struct sr_rcall *rc = calloc(1, sizeof(*rc));
    int64_t retry_at = INT64_MAX;
    gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_op ops[1];
    const char *auth = cfg->upstream.authentication;

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
    if (mode == SR_MODE_SYNC) {
        int64_t cap = w->now_ms + cfg->upstream.sync_timeout_ms;
        deadline.tv_sec = cap / 1000;
        deadline.tv_nsec = (int32_t)((cap % 1000) * 1000000);
    }
    /* With the downstream call as parent, the caller's own deadline also applies
     * (the earlier of the two) and its cancellation propagates. */
    rc->up = grpc_channel_create_call(rc->node->channel, rc->down, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                      rc->details.method, NULL, deadline, NULL);
    if (rc->up) atomic_fetch_add_explicit(&rc->node->inflight, 1, memory_order_relaxed);
    rc->fwd = filter_md(&rc->dmd, 1, &rc->n_fwd);
    if (!rc->up || !rc->fwd) {
        grpc_slice d = grpc_slice_from_static_string("skyrelay: cannot create upstream call");
        send_status(w, rc, GRPC_STATUS_INTERNAL, &d, NULL, 0);
        return;
    }
    if (auth && auth[0]) { /* upstream.authentication replaces the caller's token */
        size_t k = 0;
        for (size_t i = 0; i < rc->n_fwd; i++)
            if (!key_is(rc->fwd[i].key, "authentication")) rc->fwd[k++] = rc->fwd[i];
        rc->n_fwd = k;
        rc->fwd[rc->n_fwd].key = grpc_slice_from_static_string("authentication");
        rc->fwd[rc->n_fwd].value = grpc_slice_from_static_string(auth);
        rc->n_fwd++;
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
