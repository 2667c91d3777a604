/* Receivers: one received message becomes events of its pipe. See
 * include/skyrelay/receiver.h.
 *
 * Order of work per message: the schema walk of the whole message (a broken
 * one fails only its call), then, by receiver kind, the stream context rewrite
 * (prefix the remembered context fields, src/receiver/context.c) or the key of
 * the message, then the push into the worker's partition of the pipe. What
 * does not fit is held in the call's sr_rx and the worker pauses the call. */
#include <grpc/byte_buffer_reader.h>
#include <string.h>

#include "skyrelay/log.h"
#include "skyrelay/receiver.h"
#include "skyrelay/schema.h"
#include "skyrelay/wire.h"
#include "skyrelay/worker.h"

void sr_rx_init(struct sr_rx *rx)
{
    memset(rx, 0, sizeof(*rx));
    rx->held_body = grpc_empty_slice();
    rx->held_prefix = grpc_empty_slice();
    sr_stream_ctx_init(&rx->ctx);
}

static void uncharge_held(struct sr_worker *w, struct sr_rx *rx)
{
    if (rx->held_charge) sr_budget_release(&w->budget, rx->held_charge);
    rx->held_charge = 0;
}

void sr_rx_drop_held(struct sr_worker *w, struct sr_rx *rx)
{
    uncharge_held(w, rx);
    grpc_slice_unref(rx->held_body);
    grpc_slice_unref(rx->held_prefix);
    rx->held_body = grpc_empty_slice();
    rx->held_prefix = grpc_empty_slice();
    rx->held_items = 0;
}


void sr_rx_charge_held(struct sr_worker *w, struct sr_rx *rx)
{
    rx->held_charge = GRPC_SLICE_LENGTH(rx->held_prefix) + GRPC_SLICE_LENGTH(rx->held_body);
    sr_budget_charge(&w->budget, rx->held_charge);
}

void sr_rx_deinit(struct sr_worker *w, struct sr_rx *rx)
{
    sr_rx_drop_held(w, rx);
    sr_stream_ctx_deinit(&rx->ctx);
}

/* See receiver.h. */
grpc_slice sr_rx_take_body(grpc_byte_buffer *bb)
{
    grpc_slice s;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        s = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    } else {
        grpc_byte_buffer_reader r;
        if (!grpc_byte_buffer_reader_init(&r, bb)) {
            grpc_byte_buffer_destroy(bb);
            return grpc_empty_slice();
        }
        s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(bb);
    return s;
}

/* Pushes the held event. Returns true if it went in (held is then empty). */
static bool push_held(struct sr_worker *w, struct sr_rx *rx, bool in_turn)
{
    struct sr_pipe_rt *p = rx->pipe;
    uint32_t bytes = (uint32_t)(GRPC_SLICE_LENGTH(rx->held_prefix) + GRPC_SLICE_LENGTH(rx->held_body));
    /* waiters are served in order: a new message queues behind them, so a
     * large message is never starved by smaller ones that happen to fit */
    if (p->wait_head && !in_turn) return false;
    if (sr_partition_push(&p->part, rx->held_prefix, rx->held_body, rx->held_key, rx->held_items,
                          rx->held_flags, w->now_ms) != 0)
        return false;
    SR_CNT_ADD(w->ctr.pipe[p->id].recv_events, 1);
    SR_CNT_ADD(w->ctr.pipe[p->id].recv_bytes, bytes);
    p->dirty = true;
    rx->held_prefix = grpc_empty_slice();
    rx->held_body = grpc_empty_slice();
    rx->held_items = 0;
    return true;
}

/* The event key of a message without stream context: (service, serviceInstance)
 * from the method's key fields (SegmentObject 4 and 5). 0 when it has none.
 * Returns SR_PB_EMALFORMED on bad framing. `framed`: the framing is already known to be good
 * (the deep schema check walked the whole message, or its collection was validated). */
static int message_key(const struct sr_rx *rx, const uint8_t *b, size_t n, bool framed,
                       uint64_t *key)
{
    const struct sr_method *m = rx->m;
    struct sr_pb_field f[2];
    *key = 0;
    /* Only keyed routing and grouping read the key: skip the hash otherwise, and the
     * framing scan too when the schema check already walked the message (~450
     * instructions per segment, docs/performance.md "Receive side and the gRPC floor"). */
    if (!m->key_fields[0] || !rx->pipe->keyed)
        return framed || sr_pb_scan(b, n, NULL, 0, NULL) >= 0 ? 0 : SR_PB_EMALFORMED;
    if (sr_pb_scan(b, n, m->key_fields, 2, f) < 0) return SR_PB_EMALFORMED;
    if ((f[0].present && f[0].val_len) || (f[1].present && f[1].val_len))
        *key = sr_ctx_key2(f[0].present ? b + f[0].val_off : NULL, f[0].present ? f[0].val_len : 0,
                           f[1].present ? b + f[1].val_off : NULL, f[1].present ? f[1].val_len : 0);
    return 0;
}

/* Pushes the segments of a held SegmentCollection from held_pos on.
 * Returns true when all went in. */
static bool push_collection(struct sr_worker *w, struct sr_rx *rx, bool in_turn)
{
    struct sr_pipe_rt *p = rx->pipe;
    const uint8_t *b = GRPC_SLICE_START_PTR(rx->held_body);
    size_t n = GRPC_SLICE_LENGTH(rx->held_body), pos = rx->held_pos, at;
    struct sr_pb_field f;

    if (p->wait_head && !in_turn) return false; /* waiters first (see push_held) */
    for (;;) {
        at = pos;
        if (sr_pb_next(b, n, &pos, &f) != 1) break; /* validated before: only the end gets here */
        if (f.number != 1) continue;
        uint64_t key;
        (void)message_key(rx, b + f.val_off, f.val_len, true, &key); /* validated before */
        grpc_slice seg = grpc_slice_sub(rx->held_body, f.val_off, f.val_off + f.val_len);
        if (sr_partition_push(&p->part, grpc_empty_slice(), seg, key, 1, 0, w->now_ms) != 0) {
            grpc_slice_unref(seg);
            rx->held_pos = at;
            return false;
        }
        SR_CNT_ADD(w->ctr.pipe[p->id].recv_events, 1);
        SR_CNT_ADD(w->ctr.pipe[p->id].recv_bytes, f.val_len);
        p->dirty = true;
    }
    sr_rx_drop_held(w, rx);
    rx->held_pos = 0;
    return true;
}

bool sr_rx_resume(struct sr_worker *w, struct sr_rx *rx)
{
    bool in;
    uint64_t charge = rx->held_charge;
    uncharge_held(w, rx); /* the push charges what goes into the queue */
    in = rx->m->kind == SR_RK_SEGMENT_COLLECTION ? push_collection(w, rx, true)
                                                  : push_held(w, rx, true);
    if (!in) {
        rx->held_charge = charge;
        sr_budget_charge(&w->budget, charge);
    }
    return in;
}

static enum sr_rx_result invalid(struct sr_worker *w, struct sr_rx *rx, const char *what)
{
    SR_CNT_ADD(w->ctr.pipe[rx->pipe->id].invalid_calls, 1);
    SR_LOG_RL(SR_LOG_WARN, "receiver", "%s: malformed message (%s), call failed with INVALID_ARGUMENT",
              rx->m->path, what);
    return SR_RX_INVALID;
}

/* See receiver.h. */
enum sr_rx_result sr_rx_process(struct sr_worker *w, struct sr_rx *rx, grpc_slice body)
{
    const uint8_t *b = GRPC_SLICE_START_PTR(body);
    size_t n = GRPC_SLICE_LENGTH(body);
    const char *why = NULL;
    bool in, deep = rx->schema && rx->pipe->cfg->validate == SR_VALIDATE_DEEP;

    /* the whole message against its schema, before the agent can be told OK */
    if (deep && sr_schema_check(rx->schema, b, n, &why) < 0) {
        grpc_slice_unref(body);
        return invalid(w, rx, why ? why : "schema");
    }
    switch (rx->m->kind) {
    case SR_RK_MESSAGE: {
        grpc_slice prefix = grpc_empty_slice(), stripped;
        uint64_t key = 0;
        int r;
        /* an explicit empty context value ("" service) takes the stream's own,
         * as OAP would give it agent-direct (src/receiver/context.c) */
        if (rx->m->ctx && sr_stream_ctx_strip_empty(rx->m->ctx, &rx->ctx, b, n, &stripped) == 1) {
            grpc_slice_unref(body);
            body = stripped;
            b = GRPC_SLICE_START_PTR(body);
            n = GRPC_SLICE_LENGTH(body);
        }
        r = rx->m->ctx ? sr_stream_ctx_apply(rx->m->ctx, &rx->ctx, b, n, &prefix, &key)
                           : message_key(rx, b, n, deep, &key);
        if (r < 0) {
            grpc_slice_unref(body);
            return invalid(w, rx, "message");
        }
        rx->held_prefix = prefix;
        rx->held_body = body;
        rx->held_key = key;
        rx->held_items = 1;
        rx->held_flags = 0;
        in = push_held(w, rx, false);
        break;
    }
    case SR_RK_SEGMENT_COLLECTION: {
        struct sr_pb_field f, seg;
        size_t pos = 0, spos;
        int r;
        /* Validate everything first: a malformed collection is refused whole. */
        while ((r = sr_pb_next(b, n, &pos, &f)) == 1) {
            if (f.number != 1) continue;
            if (f.wire_type != SR_WT_LEN) break;
            spos = 0;
            while ((r = sr_pb_next(b + f.val_off, f.val_len, &spos, &seg)) == 1) {
            }
            if (r < 0) break;
        }
        if (r != 0) {
            grpc_slice_unref(body);
            return invalid(w, rx, "SegmentCollection");
        }
        rx->held_body = body;
        rx->held_pos = 0;
        in = push_collection(w, rx, false);
        break;
    }
    case SR_RK_METER_COLLECTION: {
        uint64_t key;
        uint32_t items;
        if (sr_meter_collection_key(b, n, &key, &items) < 0) {
            grpc_slice_unref(body);
            return invalid(w, rx, "MeterDataCollection");
        }
        if (items == 0) { /* nothing OAP would read */
            grpc_slice_unref(body);
            in = true;
            break;
        }
        rx->held_prefix = grpc_empty_slice();
        rx->held_body = body;
        rx->held_key = key;
        rx->held_items = items;
        rx->held_flags = SR_EV_FRAGMENT;
        in = push_held(w, rx, false);
        break;
    }
    default:
        grpc_slice_unref(body);
        in = true;
    }
    return in ? SR_RX_QUEUED : SR_RX_FULL;
}
