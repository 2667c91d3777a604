/* The method table: one entry per gRPC method path skyrelay serves, saying
 * which pipe it feeds and how a message becomes events. Both the packaged
 * ("/skywalking.v3.X/y") and the package-less ("/X/y", old agents) names are
 * listed. The async rows are derived from the pipe definition table
 * (include/skyrelay/pipes.h); the sync and relay rows are src/server/method.c's.
 * Read-only, any thread. */
#ifndef SKYRELAY_METHOD_H
#define SKYRELAY_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "skyrelay/config.h"
#include "skyrelay/context.h"
#include "skyrelay/sender.h" /* the upstream plans (sr_plan_for) */

enum sr_recv_kind {
    SR_RK_MESSAGE = 0,        /* each message is one event (stream context applied if ctx) */
    SR_RK_SEGMENT_COLLECTION, /* SegmentCollection: each segment (field 1) becomes one event */
    SR_RK_METER_COLLECTION,   /* MeterDataCollection: one event keyed by its identity */
};

/* How a call is handled. */
enum sr_call_mode {
    SR_MODE_ASYNC = 0, /* async batched: messages become events of a pipe */
    SR_MODE_SYNC,      /* synchronous pass-through: forwarded at once, the answer returned;
                        * deadline capped by upstream.sync_timeout */
    SR_MODE_RELAY,     /* transparent relay, stream to stream, both directions, one node */
};

struct sr_method {
    const char *path;
    enum sr_pipe_id pipe;
    enum sr_recv_kind kind;
    const struct sr_ctx_spec *ctx; /* NULL: no stream context */
    /* Without stream context: the fields of the message (or of each segment of a
     * collection) whose values form the event key for keyed routing:
     * (service, serviceInstance). 0 = none. */
    uint32_t key_fields[2];
    enum sr_call_mode mode;
};

/* Looks the method path[0..len) up (no NUL needed). Returns static storage, or NULL for
 * a method not in the table (relayed). Any thread. */
const struct sr_method *sr_method_find(const char *path, size_t len);

/* The whole table (for docs and tests): *n gets its length. Static storage, any thread. */
const struct sr_method *sr_method_table(size_t *n);

#endif
