/* The admin HTTP port on the main thread's libuv loop (telemetry.prometheus_address):
 *   GET /metrics  Prometheus text exposition of every counter (docs/metrics.md)
 *   GET /healthz  200 while the process runs
 *   GET /readyz   200 when listening and at least one upstream node is reachable, else 503
 * sr_admin_start/stop and sr_metrics_render: main thread only; sr_ready: any thread
 * (the workers answer grpc.health.v1.Health/Check with it). */
#ifndef SKYRELAY_ADMIN_H
#define SKYRELAY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "skyrelay/worker.h"

/* Listens on `address` ("host:port"). Returns the bound port (> 0) or -1. */
int sr_admin_start(uv_loop_t *loop, const char *address, struct sr_runtime *rt);

/* Closes the listener and open admin connections (their handles close on the loop). */
void sr_admin_stop(void);

/* Renders the metrics of rt (summed over workers) in Prometheus text format.
 * Returns owned (free()), NUL-terminated; *len gets the length. NULL on ENOMEM. */
char *sr_metrics_render(struct sr_runtime *rt, size_t *len);

/* True when skyrelay is listening and at least one upstream node is reachable
 * (not ejected, and its channel connected or connecting successfully). */
bool sr_ready(struct sr_runtime *rt);

#endif
