/* Shared by src/server/worker.c and src/server/worker_pipes.c; worker thread only. */
#ifndef SKYRELAY_SERVER_WORKER_INTERNAL_H
#define SKYRELAY_SERVER_WORKER_INTERNAL_H

#include <stdint.h>

#include "skyrelay/worker.h"

/* The balancer of a pipe's routing policy over rt's nodes, or NULL (logged). */
struct sr_balancer *sr_worker_new_balancer(struct sr_runtime *rt, const struct sr_pipe_config *pc);

/* The node set changed: rebuilds the worker's balancers (fixed keeps its pins). */
void sr_worker_rebuild_balancers(struct sr_worker *w);

/* What pipe p takes from cfg: its settings, plan, token, keyed routing. */
void sr_worker_pipe_settings(struct sr_pipe_rt *p, const struct sr_config *cfg);

/* A reload published a new configuration: the pipes and balancers follow it. */
void sr_worker_apply_reload(struct sr_worker *w);

/* Worker 0's self meters; returns when to run again (INT64_MAX = never). */
int64_t sr_worker_self_meter(struct sr_worker *w);

/* Disk queue housekeeping; returns when to run again (INT64_MAX = no disk queue). */
int64_t sr_worker_disk_tick(struct sr_worker *w);

#endif
