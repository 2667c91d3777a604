/* Worker threads: the downstream (server) side of the data path and the loop
 * that drives everything a worker owns.
 *
 * A downstream call (struct sr_dcall) lives from its request_call tag to the
 * moment its last outstanding op completes (`refs`). At most one RECV_MESSAGE
 * is outstanding; it is re-armed only after the previous message became
 * events in the worker's partition. When the partition is full the call is
 * paused: the message is held, the call waits in the pipe's FIFO, and no
 * RECV_MESSAGE is posted, so the transport stops reading the stream and HTTP/2
 * flow control pushes back on the agent. When the partition makes room (a batch
 * acknowledged upstream) the paused calls resume in order; a call paused for
 * longer than queue.full_wait fails with RESOURCE_EXHAUSTED (counted). */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice_buffer.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skyrelay/auth.h"
#include "skyrelay/cds.h"
#include "skyrelay/context.h"
#include "skyrelay/log.h"
#include "skyrelay/pipes.h"
#include "skyrelay/relay.h"
#include "skyrelay/receiver.h"
#include "skyrelay/schema.h"
#include "skyrelay/wire.h"
#include "skyrelay/worker.h"

#include "worker_internal.h"

#define HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define PENDING_REQUESTS 32 /* request_call kept outstanding per worker (grpc-core-notes 4g) */
#define MAX_WAIT_MS 100     /* housekeeping period of the loop */
#define STALL_CHECK_MS 100  /* look for stalled upstream calls at least this often */

struct sr_dcall {
    struct sr_tag t_new, t_recv, t_send, t_close;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *rbuf; /* RECV_MESSAGE target */
    grpc_byte_buffer *sbuf; /* response message */
    struct sr_rx rx; /* method, pipe, schema, stream context, held message */
    int refs;
    int cancelled; /* RECV_CLOSE_ON_SERVER result */
    grpc_status_code status;
    bool finished; /* status sent, or the call is dead: no further RECV */
    bool broken_counted;
    /* paused on a full partition */
    bool paused;
    int64_t wait_deadline;
    struct sr_dcall *wait_next;
};

static void on_new(struct sr_worker *w, struct sr_tag *t, bool ok);
static void on_recv(struct sr_worker *w, struct sr_tag *t, bool ok);
static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok);
static void on_close(struct sr_worker *w, struct sr_tag *t, bool ok);

#define DCALL_OF(t, member) ((struct sr_dcall *)((char *)(t)-offsetof(struct sr_dcall, member)))

static void arm_request(struct sr_worker *w)
{
    struct sr_dcall *dc = calloc(1, sizeof(*dc));
    grpc_call_error e;

    if (!dc) {
        SR_LOG_RL(SR_LOG_ERROR, "server", "out of memory arming a call");
        return;
    }
    dc->t_new.fn = on_new;
    dc->t_recv.fn = on_recv;
    dc->t_send.fn = on_send;
    dc->t_close.fn = on_close;
    sr_rx_init(&dc->rx);
    grpc_call_details_init(&dc->details);
    grpc_metadata_array_init(&dc->md);
    e = grpc_server_request_call(w->rt->server, &dc->call, &dc->details, &dc->md, w->cq, w->cq,
                                 &dc->t_new);
    if (e != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "server", "request_call: %s", grpc_call_error_to_string(e));
        grpc_call_details_destroy(&dc->details);
        grpc_metadata_array_destroy(&dc->md);
        free(dc);
        return;
    }
    w->pending_requests++;
}

static void maybe_free(struct sr_worker *w, struct sr_dcall *dc)
{
    if (dc->refs > 0) return;
    sr_rx_deinit(w, &dc->rx);
    if (dc->rbuf) grpc_byte_buffer_destroy(dc->rbuf);
    if (dc->sbuf) grpc_byte_buffer_destroy(dc->sbuf);
    if (dc->call) grpc_call_unref(dc->call);
    grpc_call_details_destroy(&dc->details);
    grpc_metadata_array_destroy(&dc->md);
    free(dc);
    w->live_dcalls--;
}

static void start(struct sr_dcall *dc, const grpc_op *ops, size_t n, struct sr_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(dc->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a programming error gets here; make it loud, keep the process. */
        SR_LOG_RL(SR_LOG_ERROR, "server", "start_batch: %s", grpc_call_error_to_string(e));
        return;
    }
    dc->refs++;
}

static void finish_with(struct sr_dcall *dc, grpc_status_code status, const char *msg,
                        const uint8_t *payload, size_t n_payload);

/* Sends the final status (and, when OK, the method's empty response message:
 * an empty Commands / StreamAccessLogsResponse encodes as zero bytes). */
static void finish(struct sr_dcall *dc, grpc_status_code status, const char *msg)
{
    finish_with(dc, status, msg, NULL, 0);
}

static void finish_with(struct sr_dcall *dc, grpc_status_code status, const char *msg,
                        const uint8_t *payload, size_t n_payload)
{
    grpc_op ops[3];
    size_t n = 0;
    grpc_slice details = grpc_slice_from_static_string(msg ? msg : "");

    if (dc->finished) return;
    dc->finished = true;
    dc->status = status;
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (status == GRPC_STATUS_OK) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)payload, n_payload);
        dc->sbuf = grpc_raw_byte_buffer_create(n_payload ? &s : NULL, n_payload ? 1 : 0);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = dc->sbuf;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = msg ? &details : NULL;
    n++;
    start(dc, ops, n, &dc->t_send);
}

static void arm_recv(struct sr_dcall *dc)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &dc->rbuf;
    start(dc, &op, 1, &dc->t_recv);
}

static void pause_call(struct sr_worker *w, struct sr_dcall *dc)
{
    struct sr_pipe_rt *p = dc->rx.pipe;
    dc->paused = true;
    dc->wait_deadline = w->now_ms + p->cfg->queue.full_wait_ms;
    /* the held message counts against the worker's budget while it waits */
    sr_rx_charge_held(w, &dc->rx);
    dc->wait_next = NULL;
    if (p->wait_tail)
        p->wait_tail->wait_next = dc;
    else
        p->wait_head = dc;
    p->wait_tail = dc;
    SR_CNT_ADD(w->ctr.pipe[p->id].paused, 1);
}

static void unlink_waiter(struct sr_pipe_rt *p, struct sr_dcall *dc)
{
    struct sr_dcall **pp = &p->wait_head, *prev = NULL;
    while (*pp && *pp != dc) {
        prev = *pp;
        pp = &(*pp)->wait_next;
    }
    if (!*pp) return;
    *pp = dc->wait_next;
    if (p->wait_tail == dc) p->wait_tail = prev;
    dc->wait_next = NULL;
    dc->paused = false;
}

/* server.authentication: the call must carry `authentication: <token>`. */
static bool authenticated(struct sr_worker *w, struct sr_dcall *dc)
{
    return sr_auth_ok(&dc->md, w->rt->cfg->server.authentication);
}

/* Answers a call that was never started (auth refused): status + close. */
static void finish_early(struct sr_dcall *dc, grpc_status_code status, const char *msg)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &dc->cancelled;
    start(dc, &op, 1, &dc->t_close);
    finish(dc, status, msg);
}

static void on_new(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_dcall *dc = DCALL_OF(t, t_new);
    grpc_op op;

    w->pending_requests--;
    if (!ok) { /* server shutting down */
        grpc_call_details_destroy(&dc->details);
        grpc_metadata_array_destroy(&dc->md);
        sr_stream_ctx_deinit(&dc->rx.ctx);
        free(dc);
        return;
    }
    w->live_dcalls++;
    if (!atomic_load(&w->rt->draining)) arm_request(w);

    dc->rx.m = sr_method_find((const char *)GRPC_SLICE_START_PTR(dc->details.method),
                           GRPC_SLICE_LENGTH(dc->details.method));
    /* the gRPC health check is exempt (sr_auth_exempt): kubelet's gRPC probe sends no metadata */
    if (!sr_auth_exempt((const char *)GRPC_SLICE_START_PTR(dc->details.method),
                        GRPC_SLICE_LENGTH(dc->details.method)) &&
        !authenticated(w, dc)) {
        SR_CNT_ADD(w->ctr.unauthenticated_calls, 1);
        SR_LOG_RL(SR_LOG_WARN, "server", "%.*s: missing or wrong authentication token, UNAUTHENTICATED",
                  (int)GRPC_SLICE_LENGTH(dc->details.method),
                  (const char *)GRPC_SLICE_START_PTR(dc->details.method));
        finish_early(dc, GRPC_STATUS_UNAUTHENTICATED, "skyrelay: missing or wrong authentication");
        return;
    }
    if (GRPC_SLICE_LENGTH(dc->details.method) == sizeof(HEALTH_CHECK) - 1 &&
        memcmp(GRPC_SLICE_START_PTR(dc->details.method), HEALTH_CHECK, sizeof(HEALTH_CHECK) - 1) == 0) {
        /* grpc.health.v1.Health/Check answered here: HealthCheckResponse{status=1 SERVING | 2 NOT_SERVING} */
        static const uint8_t serving[] = {0x08, 0x01}, not_serving[] = {0x08, 0x02};
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &dc->cancelled;
        start(dc, &op, 1, &dc->t_close);
        finish_with(dc, GRPC_STATUS_OK, NULL,
                    !atomic_load(&w->rt->draining) && sr_upstream_reachable(&w->rt->up, w->now_ms)
                        ? serving
                        : not_serving,
                    2);
        return;
    }
    if (!dc->rx.m || dc->rx.m->mode != SR_MODE_ASYNC) {
        /* synchronous pass-through, bidi streams and unknown methods: relayed */
        sr_relay_start(w, dc->call, &dc->details, &dc->md, dc->rx.m ? dc->rx.m->mode : SR_MODE_RELAY);
        dc->call = NULL;
        w->live_dcalls++; /* the relay owns the call now; this dcall is freed below */
        maybe_free(w, dc);
        return;
    }

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &dc->cancelled;
    start(dc, &op, 1, &dc->t_close);

    if (!w->rt->cfg->pipes[dc->rx.m->pipe].enabled) {
        SR_CNT_ADD(w->ctr.unknown_method_calls, 1);
        SR_LOG_RL(SR_LOG_WARN, "server", "pipe %s is disabled: %.*s answered UNIMPLEMENTED",
                  sr_pipe_name(dc->rx.m->pipe), (int)GRPC_SLICE_LENGTH(dc->details.method),
                  (const char *)GRPC_SLICE_START_PTR(dc->details.method));
        finish(dc, GRPC_STATUS_UNIMPLEMENTED, "skyrelay: pipe disabled");
        return;
    }
    dc->rx.pipe = &w->pipes[dc->rx.m->pipe];
    dc->rx.schema = sr_schema_for_method((const char *)GRPC_SLICE_START_PTR(dc->details.method),
                                      GRPC_SLICE_LENGTH(dc->details.method));
    arm_recv(dc);
}

static void on_recv(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_dcall *dc = DCALL_OF(t, t_recv);
    grpc_byte_buffer *bb = dc->rbuf;

    dc->refs--;
    dc->rbuf = NULL;
    if (!ok || dc->finished) {
        if (bb) grpc_byte_buffer_destroy(bb);
        if (!ok && !dc->finished) {
            dc->finished = true; /* broken: counted in on_close */
        }
        maybe_free(w, dc);
        return;
    }
    if (!bb) { /* half-close: every message of the stream is in the queue */
        struct sr_pipe_rt *p = dc->rx.pipe;
        /* ... and, with a disk queue, written to it before the agent hears OK */
        if (p->part.disk && sr_disklog_commit(p->part.disk) != 0) {
            SR_CNT_ADD(w->ctr.pipe[p->id].refused_calls, 1);
            finish(dc, GRPC_STATUS_UNAVAILABLE, "skyrelay: disk queue write failed");
            return;
        }
        finish(dc, GRPC_STATUS_OK, NULL);
        return;
    }
    switch (sr_rx_process(w, &dc->rx, sr_rx_take_body(bb))) {
    case SR_RX_QUEUED:
        arm_recv(dc);
        break;
    case SR_RX_FULL:
        pause_call(w, dc);
        break;
    case SR_RX_INVALID:
        finish(dc, GRPC_STATUS_INVALID_ARGUMENT, "skyrelay: malformed protobuf message");
        break;
    }
    maybe_free(w, dc);
}

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_dcall *dc = DCALL_OF(t, t_send);
    dc->refs--;
    if (dc->sbuf) {
        grpc_byte_buffer_destroy(dc->sbuf);
        dc->sbuf = NULL;
    }
    if (ok && dc->status == GRPC_STATUS_OK && dc->rx.pipe) SR_CNT_ADD(w->ctr.pipe[dc->rx.pipe->id].ok_calls, 1);
    maybe_free(w, dc);
}

static void on_close(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct sr_dcall *dc = DCALL_OF(t, t_close);
    dc->refs--;
    if ((dc->cancelled || !ok) && dc->rx.pipe && !dc->broken_counted) {
        dc->broken_counted = true;
        SR_CNT_ADD(w->ctr.pipe[dc->rx.pipe->id].broken_calls, 1);
        if (dc->paused) {
            /* The held message was never accepted; the client sees its call fail. */
            SR_CNT_ADD(w->ctr.pipe[dc->rx.pipe->id].rejected_events, dc->rx.held_items ? dc->rx.held_items : 1);
            unlink_waiter(dc->rx.pipe, dc);
            sr_rx_drop_held(w, &dc->rx);
        }
        dc->finished = true;
    }
    maybe_free(w, dc);
}

void sr_worker_room(struct sr_worker *w, struct sr_pipe_rt *p)
{
    while (p->wait_head) {
        struct sr_dcall *dc = p->wait_head;
        if (!sr_rx_resume(w, &dc->rx)) return;
        p->wait_head = dc->wait_next;
        if (!p->wait_head) p->wait_tail = NULL;
        dc->wait_next = NULL;
        dc->paused = false;
        arm_recv(dc);
    }
}

/* Fails calls that waited longer than queue.full_wait. Returns the next deadline. */
static int64_t expire_waiters(struct sr_worker *w, struct sr_pipe_rt *p)
{
    while (p->wait_head && p->wait_head->wait_deadline <= w->now_ms) {
        struct sr_dcall *dc = p->wait_head;
        unlink_waiter(p, dc);
        SR_CNT_ADD(w->ctr.pipe[p->id].rejected_events, dc->rx.held_items ? dc->rx.held_items : 1);
        SR_CNT_ADD(w->ctr.pipe[p->id].refused_calls, 1);
        SR_LOG_RL(SR_LOG_WARN, "queue",
                  "pipe %s: queue full for %u ms, call failed with RESOURCE_EXHAUSTED",
                  sr_pipe_name(p->id), p->cfg->queue.full_wait_ms);
        sr_rx_drop_held(w, &dc->rx);
        finish(dc, GRPC_STATUS_RESOURCE_EXHAUSTED, "skyrelay: queue full");
    }
    return p->wait_head ? p->wait_head->wait_deadline : INT64_MAX;
}

static bool partitions_empty(struct sr_worker *w)
{
    for (int i = 0; i < SR_PIPE_COUNT; i++)
        if (!sr_partition_empty(&w->pipes[i].part)) return false;
    return true;
}

static void *worker_main(void *arg)
{
    struct sr_worker *w = arg;
    bool abandoned = false;

    for (int i = 0; i < PENDING_REQUESTS; i++) arm_request(w);
    if (w->cds) sr_cds_start(w);
    w->now_ms = sr_now_ms();
    for (;;) {
        int64_t wake = INT64_MAX, t;
        bool draining;
        grpc_event ev;

        /* now_ms was read when the last event arrived (or the wait timed out):
         * one clock read per loop turn. */
        t = (int64_t)atomic_load_explicit(&w->rt->up.gen, memory_order_acquire);
        if ((uint64_t)t != w->node_gen) {
            w->node_gen = (uint64_t)t;
            sr_worker_rebuild_balancers(w);
        }
        t = (int64_t)atomic_load_explicit(&w->rt->up.readmits, memory_order_relaxed);
        if ((uint64_t)t != w->readmits) { /* a node came back before its backoff ended: */
            w->readmits = (uint64_t)t;     /* batches waiting for one may go now */
            for (int i = 0; i < SR_PIPE_COUNT; i++)
                if (w->pipes[i].cfg->enabled) sr_sender_nodes_back(w, &w->pipes[i]);
        }
        t = (int64_t)atomic_load_explicit(&w->rt->cfg_gen, memory_order_acquire);
        if ((uint64_t)t != w->cfg_gen) {
            w->cfg_gen = (uint64_t)t;
            sr_worker_apply_reload(w);
        }
        if (atomic_load_explicit(&w->rt->force_stop, memory_order_relaxed) && !abandoned) {
            abandoned = true;
            for (int i = 0; i < SR_PIPE_COUNT; i++)
                sr_sender_abandon(w, &w->pipes[i], SR_DROP_SHUTDOWN);
        }
        if (w->now_ms >= w->stall_check_ms) {
            /* silence is a failure too: calls unanswered for stall_timeout */
            t = sr_sender_check_stalls(w, w->now_ms);
            w->stall_check_ms = w->now_ms + STALL_CHECK_MS;
            if (t < w->stall_check_ms) w->stall_check_ms = t;
        }
        if (w->stall_check_ms < wake) wake = w->stall_check_ms;
        t = sr_worker_disk_tick(w);
        if (t < wake) wake = t;
        t = sr_cds_tick(w);
        if (t < wake) wake = t;
        draining = atomic_load_explicit(&w->rt->draining, memory_order_relaxed);
        if (!draining) {
            t = sr_worker_self_meter(w);
            if (t < wake) wake = t;
        }
        for (int i = 0; i < SR_PIPE_COUNT; i++) {
            struct sr_pipe_rt *p = &w->pipes[i];
            if (!p->cfg->enabled) continue;
            if (p->room) {
                p->room = false;
                sr_worker_room(w, p);
            }
            if (p->wait_head) {
                t = p->wait_head->wait_deadline <= w->now_ms ? expire_waiters(w, p)
                                                             : p->wait_head->wait_deadline;
                if (t < wake) wake = t;
            }
            /* The sender runs only when its pipe changed or its timer is due. */
            if (!abandoned && (p->dirty || draining || w->now_ms >= p->wake_ms)) {
                p->dirty = false;
                p->wake_ms = sr_sender_service(w, p, w->now_ms);
            }
            if (p->wake_ms < wake) wake = p->wake_ms;
        }
        if (!w->drained && draining &&
            atomic_load_explicit(&w->rt->server_shutdown_done, memory_order_relaxed) &&
            w->live_dcalls == 0 && w->pending_requests == 0 && w->live_ucalls == 0 &&
            (abandoned || partitions_empty(w))) {
            w->drained = true;
            atomic_store(&w->idle, 1);
        }
        if (wake > w->now_ms + MAX_WAIT_MS) wake = w->now_ms + MAX_WAIT_MS;
        ev = grpc_completion_queue_next(w->cq, sr_ms_to_deadline(wake), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        w->now_ms = sr_now_ms();
        if (ev.type == GRPC_OP_COMPLETE) {
            struct sr_tag *tag = ev.tag;
            tag->fn(w, tag, ev.success != 0);
        }
    }
    /* Whatever is still queued was not delivered: count it, never hide it. */
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        struct sr_partition *part = &w->pipes[i].part;
        uint64_t left = part->held_events;
        if (left && part->disk) {
            SR_INFO("worker", "worker %u pipe %s: %llu undelivered events kept in the disk queue "
                    "for the next start", w->id, sr_pipe_name(i), (unsigned long long)left);
        } else if (left) {
            SR_CNT_ADD(w->ctr.pipe[i].dropped_events[SR_DROP_SHUTDOWN], left);
            SR_ERROR("worker", "worker %u pipe %s: %llu events undelivered at shutdown", w->id,
                     sr_pipe_name(i), (unsigned long long)left);
        }
    }
    return NULL;
}

int sr_worker_init(struct sr_worker *w, struct sr_runtime *rt, uint32_t id)
{
    const struct sr_config *cfg = rt->cfg;
    uint32_t nw = rt->n_workers;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = rt;
    w->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ULL);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    if (!w->cq) return -1;
    grpc_server_register_completion_queue(rt->server, w->cq, NULL);
    w->node_gen = atomic_load(&rt->up.gen);
    w->budget.max = (sr_queue_budget_total(cfg, NULL) + nw - 1) / nw;
    w->relay_balancer = sr_balancer_round_robin.create(&rt->up, NULL);
    if (!w->relay_balancer) return -1;
    if (id == 0 && sr_cds_init(w) != 0) return -1; /* every fetchConfigurations lands here */
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        struct sr_pipe_rt *p = &w->pipes[i];
        const struct sr_pipe_config *pc = &cfg->pipes[i];
        p->id = (enum sr_pipe_id)i;
        p->wake_ms = INT64_MAX;
        sr_worker_pipe_settings(p, cfg);
        if (!pc->enabled) continue;
        /* The pipe's bounds are split evenly over the worker partitions. */
        if (sr_partition_init(&p->part, (pc->queue.max_events + nw - 1) / nw,
                              (pc->queue.max_bytes + nw - 1) / nw, pc->sender.max_inflight,
                              &w->budget) != 0)
            return -1;
        if (rt->disk.dir && pc->queue.persistent) {
            const char *why = NULL;
            if (sr_disklog_open(&p->disk, &rt->disk, sr_pipe_name(p->id), id, &why) != 0) {
                SR_ERROR("worker", "disk queue of pipe %s: %s", sr_pipe_name(p->id), why);
                return -1;
            }
            p->part.disk = &p->disk;
            p->dirty = sr_disklog_backlog(&p->disk); /* recovered events: send them */
        }
        p->node_calls = calloc(SR_MAX_NODES, sizeof(*p->node_calls));
        if (!p->node_calls) return -1;
        p->balancer = sr_worker_new_balancer(rt, pc);
        if (!p->balancer) return -1;
    }
    return 0;
}

int sr_worker_start(struct sr_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void sr_worker_deinit(struct sr_worker *w)
{
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        struct sr_pipe_rt *p = &w->pipes[i];
        struct sr_disklog *disk = p->part.disk;
        sr_partition_deinit(&p->part); /* what it held stays on disk, unacknowledged */
        if (disk) sr_disklog_close(disk);
        free(p->node_calls);
        p->node_calls = NULL;
        if (p->balancer) p->balancer->type->destroy(p->balancer);
        p->balancer = NULL;
    }
    sr_cds_deinit(w);
    if (w->relay_balancer) w->relay_balancer->type->destroy(w->relay_balancer);
    w->relay_balancer = NULL;
    if (w->cq) grpc_completion_queue_destroy(w->cq);
    w->cq = NULL;
}
