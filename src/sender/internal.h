/* The sender's files share these (src/sender/sender.c: batches to calls;
 * src/sender/faults.c: what a failure costs). Worker thread only. */
#ifndef SKYRELAY_SENDER_INTERNAL_H
#define SKYRELAY_SENDER_INTERNAL_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/worker.h"

struct sr_ucall {
    struct sr_tag t_send, t_recv;
    grpc_call *call;
    struct sr_pipe_rt *pipe;
    struct sr_batch *batch;
    struct sr_node *node;
    uint32_t *ul; /* units carried by this call (indexes into batch->units) */
    uint32_t n_ul;
    uint32_t u1; /* storage for ul when the call carries one unit */
    uint32_t n_msgs, next_msg;
    uint32_t cur_u, cur_e; /* SR_UNIT_EVENT cursor: unit (in ul) and event within it */
    uint32_t events;
    bool send_done, recv_done;
    bool send_failed; /* a write failed: not every message reached the node */
    bool hedged;      /* cancelled by us: the node stalled, its units went elsewhere */
    bool settled;     /* its status arrived and its outcome was applied; the memory waits
                       * for a send still pending (gRPC may hold it after the status) */
    bool counted;     /* counted in inflight / node_calls / live_ucalls */
    grpc_byte_buffer *sbuf;
    grpc_byte_buffer *rbuf;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    grpc_metadata auth_md;
    int64_t start_us;
    int64_t start_ms;
    struct sr_ucall *next, *prev; /* the worker's in-flight list */
};

static inline struct sr_event *ev_of(struct sr_batch *b, const struct sr_unit *u, uint32_t k)
{
    return &b->ev[b->order[u->off + k]];
}

/* Fills b->order and b->units: events grouped by key (stable), or one unit
 * holding every event in order. Returns 0, or -1 when out of memory (src/sender/message.c). */
int sr_sender_build_units(struct sr_batch *b, bool by_key, int64_t now_ms);

/* The call's next upstream message, built by reference from its units' events
 * (src/sender/message.c). */
grpc_byte_buffer *sr_sender_build_message(struct sr_ucall *uc);

/* Gives up unit u (counted as `reason`; a poison event is also logged with
 * its first bytes and written to queue.dead_letter_dir). */
void sr_sender_drop_unit(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                         struct sr_unit *u, enum sr_drop_reason reason, int status);

/* Unit ui of b was refused as content by `node`: retried once elsewhere, then
 * split; a single event refused twice is poison. */
void sr_sender_content_refused(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                               uint32_t ui, const struct sr_node *node, int status);

#endif
