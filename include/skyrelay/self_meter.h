/* skyrelay's own metrics as SkyWalking meters (telemetry.export: metrics_service).
 *
 * Every telemetry.interval, worker 0 builds one MeterDataCollection of sw_stl_*
 * meters, named and labelled as OAP's Satellite rules (meter-analyzer-config
 * satellite.yaml) expect, so OAP's satellite_service_grpc_connect_count and the
 * SWCK HPA adapter work unchanged, and pushes it into its own meter partition:
 * the self meters are batched, routed (fixed by instance), retried and counted
 * like any agent's meters. */
#ifndef SKYRELAY_SELF_METER_H
#define SKYRELAY_SELF_METER_H

#include <grpc/slice.h>
#include <stdint.h>

#include "skyrelay/worker.h"

/* Builds the collection from rt's counters at now (epoch ms for the timestamp).
 * *cpu_state keeps the previous CPU reading (start at {0,0}) for the CPU gauge.
 * Returns 0 and an owned slice, or -1. Any thread (reads counters relaxed). */
int sr_self_meter_build(struct sr_runtime *rt, int64_t epoch_ms, struct sr_cpu_sample *cpu_state,
                        grpc_slice *out, uint64_t *key);

/* Process CPU seconds (user + system) from /proc/self/stat; -1 on error. */
double sr_process_cpu_seconds(void);

#endif
