/* What a worker does besides its calls (src/server/worker.c): it keeps its
 * pipes' settings and balancers in step with the configuration (reload) and
 * the node set (discovery), feeds the self meters, and keeps the disk queue's
 * logs (flush, sync, acknowledgement mark). All on the worker's thread. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skyrelay/disklog.h"
#include "skyrelay/log.h"
#include "skyrelay/pipes.h"
#include "skyrelay/self_meter.h"
#include "skyrelay/worker.h"

#include "worker_internal.h"

/* Worker 0 feeds skyrelay's own meters into its meter partition
 * (telemetry.export: metrics_service). Returns when to run again. */
int64_t sr_worker_self_meter(struct sr_worker *w)
{
    const struct sr_config *cfg = w->rt->cfg;
    struct sr_pipe_rt *p = &w->pipes[SR_PIPE_METER];
    struct timespec ts;
    grpc_slice s;
    uint64_t key;

    if (w->id != 0 || !cfg->telemetry.export_metrics_service || !p->cfg->enabled)
        return INT64_MAX;
    if (w->self_meter_next_ms == 0) w->self_meter_next_ms = w->now_ms + cfg->telemetry.interval_ms;
    if (w->now_ms < w->self_meter_next_ms) return w->self_meter_next_ms;
    w->self_meter_next_ms = w->now_ms + cfg->telemetry.interval_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (sr_self_meter_build(w->rt, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                            &w->cpu_state, &s, &key) != 0)
        return w->self_meter_next_ms;
    if (sr_partition_push(&p->part, grpc_empty_slice(), s, key, 1, SR_EV_FRAGMENT, w->now_ms) != 0) {
        grpc_slice_unref(s);
        SR_CNT_ADD(w->ctr.pipe[SR_PIPE_METER].rejected_events, 1);
        SR_LOG_RL(SR_LOG_WARN, "telemetry", "meter queue full: self meters of this interval dropped");
    } else {
        SR_CNT_ADD(w->ctr.pipe[SR_PIPE_METER].recv_events, 1);
        p->dirty = true;
    }
    return w->self_meter_next_ms;
}

/* Disk queue housekeeping: write what is buffered, sync under sync: interval,
 * truncate logs whose records are all acknowledged. Returns when to run again. */
int64_t sr_worker_disk_tick(struct sr_worker *w)
{
    const struct sr_config *cfg = w->rt->cfg;
    uint32_t every = cfg->queue.disk.sync == SR_DISK_SYNC_INTERVAL ? cfg->queue.disk.sync_interval_ms
                                                                  : 1000;
    if (!w->rt->disk.dir) return INT64_MAX;
    if (w->now_ms < w->disk_tick_ms) return w->disk_tick_ms;
    for (int i = 0; i < SR_PIPE_COUNT; i++)
        if (w->pipes[i].part.disk) sr_disklog_tick(w->pipes[i].part.disk, w->now_ms);
    w->disk_tick_ms = w->now_ms + every;
    return w->disk_tick_ms;
}

struct sr_balancer *sr_worker_new_balancer(struct sr_runtime *rt, const struct sr_pipe_config *pc)
{
    const struct sr_balancer_type *type = sr_balancer_for_policy(pc->routing.policy);
    struct sr_balancer_opts opts = {.lru_size = pc->routing.lru_size,
                                    .lru_ttl_ms = pc->routing.lru_ttl_ms};
    if (!type) {
        SR_ERROR("worker", "routing policy %s has no balancer", sr_routing_policy_name(pc->routing.policy));
        return NULL;
    }
    return type->create(&rt->up, &opts);
}

/* The node set changed (discovery): rebuild this worker's balancers over it,
 * keeping the fixed balancers' pins (inherit). On failure the old ones stay:
 * they skip gone nodes, they only miss the new ones until the next change. */
void sr_worker_rebuild_balancers(struct sr_worker *w)
{
    struct sr_balancer *rb = sr_balancer_round_robin.create(&w->rt->up, NULL);
    if (rb) {
        w->relay_balancer->type->destroy(w->relay_balancer);
        w->relay_balancer = rb;
    }
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        struct sr_pipe_rt *p = &w->pipes[i];
        struct sr_balancer *nb;
        if (!p->cfg->enabled || !p->balancer) continue;
        nb = sr_worker_new_balancer(w->rt, p->cfg);
        if (!nb) {
            SR_LOG_RL(SR_LOG_ERROR, "worker", "out of memory rebuilding a balancer");
            continue;
        }
        sr_balancer_inherit(nb, p->balancer);
        p->balancer->type->destroy(p->balancer);
        p->balancer = nb;
        p->dirty = true; /* batches waiting for a node may have one now */
    }
}

/* What a pipe takes from the configuration (again after a reload). */
void sr_worker_pipe_settings(struct sr_pipe_rt *p, const struct sr_config *cfg)
{
    const struct sr_pipe_config *pc = &cfg->pipes[p->id];
    const struct sr_balancer_type *bt = sr_balancer_for_policy(pc->routing.policy);
    p->cfg = pc;
    p->plan = sr_plan_for(p->id, pc->mode);
    p->method = grpc_slice_from_static_string(p->plan->method);
    p->token = cfg->upstream.authentication && cfg->upstream.authentication[0]
                   ? cfg->upstream.authentication
                   : NULL;
    p->key_routing = bt && bt->keyed;
    /* a pipe whose events carry no identity (pipes.h `keyed`) never reads a key */
    p->keyed = sr_pipe_def(p->id)->keyed && (p->plan->group_by_key || p->key_routing);
}

/* A reload published a new configuration: the pipes read it again and the
 * balancers are rebuilt (routing policies may have changed; fixed keeps its
 * pins when it stays fixed). Batches in flight keep the units they have. */
void sr_worker_apply_reload(struct sr_worker *w)
{
    const struct sr_config *cfg = w->rt->cfg;
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        sr_worker_pipe_settings(&w->pipes[i], cfg);
        w->pipes[i].dirty = true;
    }
    sr_worker_rebuild_balancers(w);
}
