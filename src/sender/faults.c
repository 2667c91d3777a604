/* Batch senders, the fault side: what a failure costs.
 *
 * Faults cost only what they touch (docs/reliability.md):
 * - TRANSPORT failure (UNAVAILABLE, DEADLINE_EXCEEDED, a broken stream): the
 *   node is ejected with backoff and the call's units go to the next node.
 * - Silence: a call outstanding longer than upstream.stall_timeout marks its
 *   node stalled (ejected with backoff); every call of this worker still on
 *   that node is cancelled and its units re-sent elsewhere ("hedged",
 *   counted: the node may have processed part of them). The node rejoins on
 *   its first answer after the backoff.
 * - CONTENT failure (INTERNAL, INVALID_ARGUMENT, ...): the node is fine, some
 *   event is bad. The unit is retried once on another node; refused again, it
 *   is split in halves sent alone, recursively; a single event refused by two
 *   nodes is dropped as poison (counted, logged with its first bytes, written
 *   to queue.dead_letter_dir). Every good event of the batch is delivered.
 * - REJECT (UNAUTHENTICATED, UNIMPLEMENTED, ...): every node would say the
 *   same; the units are dropped, counted as upstream_rejected.
 * - A per-node cap on calls in flight (upstream.max_inflight_per_node) keeps
 *   one bad node from holding all of a pipe's batch slots. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "skyrelay/log.h"
#include "internal.h"

static void write_dead_letter(struct sr_worker *w, struct sr_pipe_rt *p, const struct sr_event *e,
                              char *path, size_t path_len)
{
    const char *dir = w->rt->cfg->queue.dead_letter_dir;
    struct timespec ts;
    int fd;
    bool ok = true;

    path[0] = '\0';
    if (!dir || !dir[0]) return;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(path, path_len, "%s/%s-%lld%03ld-w%u-%llu.pb", dir, sr_pipe_name(p->id),
             (long long)ts.tv_sec, ts.tv_nsec / 1000000, w->id,
             (unsigned long long)++w->dead_letters);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "dead letter %s: %s", path, strerror(errno));
        path[0] = '\0';
        return;
    }
    /* the event as it would be sent upstream: context prefix + message */
    for (int i = 0; i < 2 && ok; i++) {
        grpc_slice s = i == 0 ? e->prefix : e->body;
        const uint8_t *b = GRPC_SLICE_START_PTR(s);
        size_t n = GRPC_SLICE_LENGTH(s);
        while (n > 0) {
            ssize_t r = write(fd, b, n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                ok = false;
                break;
            }
            b += r;
            n -= (size_t)r;
        }
    }
    if (close(fd) != 0) ok = false;
    if (!ok) {
        SR_LOG_RL(SR_LOG_ERROR, "sender", "dead letter %s: write failed: %s", path, strerror(errno));
        unlink(path);
        path[0] = '\0';
    }
}

void sr_sender_drop_unit(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                         struct sr_unit *u, enum sr_drop_reason reason, int status)
{
    u->state = SR_UNIT_DROPPED;
    if (reason == SR_DROP_SHUTDOWN && p->part.disk) {
        /* not lost: its disk records stay, the next start replays them */
        for (uint32_t i = 0; i < u->n; i++) b->ev[b->order[u->off + i]].flags |= SR_EV_KEEP;
        return;
    }
    SR_CNT_ADD(w->ctr.pipe[p->id].dropped_events[reason], u->n);
    if (reason == SR_DROP_POISON) {
        const struct sr_event *e = ev_of(b, u, 0);
        char path[512], hex[3 * 32 + 1];
        size_t k = 0, np = GRPC_SLICE_LENGTH(e->prefix);
        for (uint32_t i = 0; i < e->bytes && i < 32; i++) {
            uint8_t c = i < np ? GRPC_SLICE_START_PTR(e->prefix)[i]
                               : GRPC_SLICE_START_PTR(e->body)[i - np];
            k += (size_t)snprintf(hex + k, sizeof(hex) - k, "%02x", c);
        }
        hex[k] = '\0';
        write_dead_letter(w, p, e, path, sizeof path);
        SR_LOG_RL(SR_LOG_ERROR, "sender",
                  "pipe %s: poison event dropped: %s refused it on two nodes (last status %d); "
                  "%u bytes, first bytes %s%s%s",
                  sr_pipe_name(p->id), p->plan->method, status, e->bytes, hex,
                  path[0] ? "; written to " : "", path);
        return;
    }
    SR_LOG_RL(SR_LOG_ERROR, "sender", "pipe %s: dropped %u events: %s (last status %d)",
              sr_pipe_name(p->id), u->n, sr_drop_reason_name(reason), status);
}

/* Splits unit u of b in halves, both suspect: each is sent alone. */
static void split_unit(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b, uint32_t ui)
{
    struct sr_unit *u = &b->units[ui], *v;
    uint32_t half = u->n / 2;

    if (b->n_units >= b->units_cap) { /* cannot happen: 2 * count units at most */
        u->suspect = 1;
        u->state = SR_UNIT_PENDING;
        u->not_before_ms = w->now_ms;
        return;
    }
    v = &b->units[b->n_units++];
    *v = *u;
    u->n = half;
    v->off = u->off + half;
    v->n -= half;
    for (struct sr_unit *x = u; x; x = x == u ? v : NULL) {
        x->state = SR_UNIT_PENDING;
        x->suspect = 1;
        x->content_fails = 0;
        x->tried = 0;
        x->not_before_ms = w->now_ms;
        x->node = NULL;
    }
    SR_CNT_ADD(w->ctr.pipe[p->id].split_batches, 1);
}

/* A content refusal of unit ui by `node`: retry once elsewhere, then split;
 * a single event refused twice is poison. */
void sr_sender_content_refused(struct sr_worker *w, struct sr_pipe_rt *p, struct sr_batch *b,
                               uint32_t ui, const struct sr_node *node, int status)
{
    struct sr_unit *u = &b->units[ui];
    u->content_fails++;
    u->tried |= sr_node_bit(node);
    if (u->suspect && u->n > 1) {
        split_unit(w, p, b, ui);
    } else if (u->content_fails >= 2) {
        if (u->n > 1)
            split_unit(w, p, b, ui);
        else
            sr_sender_drop_unit(w, p, b, u, SR_DROP_POISON, status);
    } else {
        u->state = SR_UNIT_PENDING;
        u->not_before_ms = w->now_ms;
    }
}

/* Cancels uc and lets its units go elsewhere: its node stalled. */
static void hedge(struct sr_worker *w, struct sr_ucall *uc)
{
    uc->hedged = true;
    SR_CNT_ADD(w->ctr.pipe[uc->pipe->id].hedged_events, uc->events);
    atomic_fetch_add_explicit(&uc->node->hedged_events, uc->events, memory_order_relaxed);
    grpc_call_cancel(uc->call, NULL);
}

int64_t sr_sender_check_stalls(struct sr_worker *w, int64_t now_ms)
{
    uint32_t stall = w->rt->cfg->upstream.stall_timeout_ms;
    int64_t next = INT64_MAX;

    if (stall == 0) return INT64_MAX;
    /* 1. a call unanswered for stall_timeout marks its node stalled */
    for (struct sr_ucall *uc = w->ucalls; uc; uc = uc->next) {
        struct sr_node *n = uc->node;
        if (uc->hedged || uc->recv_done) continue;
        if (now_ms - uc->start_ms < (int64_t)stall) {
            if (uc->start_ms + stall < next) next = uc->start_ms + stall;
            continue;
        }
        if (atomic_load_explicit(&n->stalled, memory_order_acquire) &&
            uc->start_ms <= atomic_load_explicit(&n->stalled_at_ms, memory_order_relaxed))
            continue; /* known; hedged below */
        /* newly stalled, or stalled again after the backoff let probes through.
         * Every worker and pipe may have sent a probe when the backoff ended:
         * the first one found unanswered counts the stall (and lengthens the
         * backoff); the others of the same round are only re-sent elsewhere. */
        {
            bool was = atomic_load_explicit(&n->stalled, memory_order_acquire);
            int64_t at = atomic_load_explicit(&n->stalled_at_ms, memory_order_relaxed);
            atomic_store_explicit(&n->stalled_at_ms, now_ms, memory_order_relaxed);
            atomic_store_explicit(&n->stalled, 1, memory_order_release);
            if (was && now_ms - at < (int64_t)stall) continue;
        }
        atomic_fetch_add_explicit(&n->stalls, 1, memory_order_relaxed);
        sr_node_report(&w->rt->up, n, false, now_ms, &w->rng);
        SR_LOG_RL(SR_LOG_WARN, "sender",
                  "node %s stalled: a call has been unanswered for %lld ms; its batches go to "
                  "other nodes",
                  n->address, (long long)(now_ms - uc->start_ms));
    }
    /* 2. every call still on a stalled node that started before the stall was
     * seen goes elsewhere (later calls are the node's probes, judged by age) */
    for (struct sr_ucall *uc = w->ucalls; uc; uc = uc->next) {
        struct sr_node *n = uc->node;
        if (uc->hedged || uc->recv_done) continue;
        if (atomic_load_explicit(&n->stalled, memory_order_acquire) &&
            uc->start_ms <= atomic_load_explicit(&n->stalled_at_ms, memory_order_relaxed))
            hedge(w, uc);
    }
    return next;
}

