/* Receivers: where a received message becomes events (src/receiver/dispatch.c).
 *
 * A downstream call's receive state (struct sr_rx) knows its method, pipe,
 * schema and stream context, and holds the message that did not fit into the
 * pipe's partition yet. The worker owns the call's lifecycle (ops, status,
 * pausing); the receiver only validates, rewrites and queues. Worker thread. */
#ifndef SKYRELAY_RECEIVER_H
#define SKYRELAY_RECEIVER_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/context.h"
#include "skyrelay/method.h"

struct sr_worker;
struct sr_pipe_rt;

struct sr_rx {
    const struct sr_method *m;
    const ProtobufCMessageDescriptor *schema; /* of the messages the client sends; NULL = none */
    struct sr_pipe_rt *pipe;
    struct sr_stream_ctx ctx;
    /* a message waiting for room (the call is paused meanwhile) */
    grpc_slice held_body, held_prefix;
    uint64_t held_key;
    uint32_t held_items;
    uint8_t held_flags;
    size_t held_pos;      /* SegmentCollection cursor */
    uint64_t held_charge; /* bytes of the held message charged to the worker's budget */
};

enum sr_rx_result {
    SR_RX_QUEUED = 0,   /* every event is in the partition: read the next message */
    SR_RX_FULL = 1,     /* held: pause the call until sr_rx_resume succeeds */
    SR_RX_INVALID = -1, /* malformed: fail the call with INVALID_ARGUMENT (counted, logged) */
};

void sr_rx_init(struct sr_rx *rx);
/* Drops what is held (and its budget charge) and the stream context. */
void sr_rx_deinit(struct sr_worker *w, struct sr_rx *rx);

/* Takes bb and returns its bytes as one slice (returns owned): a ref to the
 * buffer's own slice when it has exactly one (no copy), a contiguous copy
 * otherwise. */
grpc_slice sr_rx_take_body(grpc_byte_buffer *bb);

/* Turns one received message (TAKES body) into events of rx->pipe: schema
 * check, stream context, key, push. SR_RX_FULL leaves the rest held, charged
 * to the worker's budget; a new message also waits while other calls of the
 * pipe wait (they are served in order). */
enum sr_rx_result sr_rx_process(struct sr_worker *w, struct sr_rx *rx, grpc_slice body);

/* Pushes what rx holds, in its turn (the pipe's first waiter). Returns true
 * when all of it went in; else it stays held and charged. */
bool sr_rx_resume(struct sr_worker *w, struct sr_rx *rx);

/* Drops what rx holds (and its charge). */
void sr_rx_drop_held(struct sr_worker *w, struct sr_rx *rx);

/* Charges what rx holds to the worker's budget (the call pauses with it). */
void sr_rx_charge_held(struct sr_worker *w, struct sr_rx *rx);

#endif
