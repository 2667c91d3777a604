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
#include <stdint.h>
#include <uv.h>

#include "skyrelay/worker.h"

/* Listens on `address` ("host:port"). Returns the bound port (> 0) or -1. */
int sr_admin_start(uv_loop_t *loop, const char *address, struct sr_runtime *rt);

/* Closes the listener and open admin connections (their handles close on the loop). */
void sr_admin_stop(void);

/* The admin port's refusals and closes since start (docs/metrics.md, skyrelay_admin_*). */
struct sr_admin_stats {
    uint64_t open;                /* connections open now */
    uint64_t refused_peer_limit;  /* closed at accept: telemetry.admin.max_connections_per_peer */
    uint64_t refused_total_limit; /* closed at accept: max_connections, every one busy writing */
    uint64_t evicted;             /* the oldest idle one, closed for a new one (max_connections) */
    uint64_t header_timeouts;     /* request head not complete within header_timeout */
    uint64_t unauthorized;        /* /metrics answered 401 (telemetry.admin.token) */
};

/* Fills *out. Main thread (the counters are atomics: any thread reads a recent value). */
void sr_admin_stats(struct sr_admin_stats *out);

/* Renders the metrics of rt (summed over workers) in Prometheus text format.
 * Returns owned (free()), NUL-terminated; *len gets the length. NULL on ENOMEM. */
char *sr_metrics_render(struct sr_runtime *rt, size_t *len);

/* True when skyrelay is listening and at least one upstream node is reachable
 * (not ejected, and its channel connected or connecting successfully). */
bool sr_ready(struct sr_runtime *rt);

#endif
