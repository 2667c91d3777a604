/* Batch senders (src/sender/): how a pipe's batch becomes upstream calls
 * (the plans: defined with each pipe in src/core/pipes.c, looked up by
 * src/sender/plan.c) and the sender's entry points, called by the worker
 * loop (src/sender/sender.c). The sender never calls back into the worker:
 * it sets flags on the pipe (dirty, room) that the loop acts on. */
#ifndef SKYRELAY_SENDER_H
#define SKYRELAY_SENDER_H

#include <stdint.h>

#include "skyrelay/config.h"
#include "skyrelay/metrics.h"

/* How a pipe's batch is sent upstream. */
enum sr_plan_unit {
    SR_UNIT_EVENT = 0, /* one upstream message per event */
    SR_UNIT_GROUP,     /* one upstream message per key group, events wrapped as field 1 */
    SR_UNIT_CALL,      /* one upstream message per call, events wrapped as field 1 */
    SR_UNIT_LAST,      /* one upstream message per group: its last event (idempotent reports) */
};

struct sr_plan {
    const char *method;   /* upstream method path */
    enum sr_plan_unit unit;
    uint8_t group_by_key; /* group the batch's events by key */
    uint8_t call_per_group; /* one upstream call per key group */
    uint8_t unary;        /* upstream method is unary (one message, then close) */
    uint8_t wrap;         /* GROUP/CALL: wrap each event as a field-1 record; else the events
                           * are whole messages of one key, concatenated (they merge) */
};

/* The plan for a pipe under its configured mode (struct sr_pipe_config.mode): the
 * pipe definition's plan of that mode (include/skyrelay/pipes.h), its first plan for a
 * mode it does not have. Returns static storage, or NULL past the last pipe. Any thread. */
const struct sr_plan *sr_plan_for(enum sr_pipe_id pipe, int mode);

struct sr_worker;
struct sr_pipe_rt;

/* Entry points, worker thread only. */

/* Cuts and starts batches that are due, restarts batches whose retry time has
 * come. Returns the earliest time it needs to run again (INT64_MAX = none). */
int64_t sr_sender_service(struct sr_worker *w, struct sr_pipe_rt *p, int64_t now_ms);

/* Looks for upstream calls unanswered for upstream.stall_timeout: marks their
 * nodes stalled and re-sends (hedges) every call still on a stalled node.
 * Returns when to look again (INT64_MAX = never). */
int64_t sr_sender_check_stalls(struct sr_worker *w, int64_t now_ms);

/* A node came back before its backoff ended (sr_upstream_watch): units of p
 * waiting for a node to be up may be sent now. Worker thread. */
void sr_sender_nodes_back(struct sr_worker *w, struct sr_pipe_rt *p);

/* Gives up every batch that is not in flight, counting its events as dropped
 * with `reason`; cancels in-flight upstream calls (their completions then drop). */
void sr_sender_abandon(struct sr_worker *w, struct sr_pipe_rt *p, enum sr_drop_reason reason);

#endif
