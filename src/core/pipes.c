/* The pipe definition table (include/skyrelay/pipes.h): every async pipe in
 * one row, with its methods, the message each method's client sends, its
 * upstream plans (with the OAP rule behind each) and its mode names. The
 * config keys, the method table, the schema map and sr_plan_for are derived
 * from these rows; adding a pipe is its enum sr_pipe_id line plus a row here.
 *
 * It lives in core because four modules read it (config, server, receiver,
 * sender) and it belongs to none of them. */
#include <stddef.h>

#include "skyrelay/pipes.h"

#include "clr_metric.pb-c.h"
#include "ebpf_accesslog.pb-c.h"
#include "ebpf_profiling.pb-c.h"
#include "envoy_als.pb-c.h"
#include "envoy_metrics.pb-c.h"
#include "event.pb-c.h"
#include "jvm_metric.pb-c.h"
#include "logging.pb-c.h"
#include "management.pb-c.h"
#include "meter.pb-c.h"
#include "profile.pb-c.h"
#include "tracing.pb-c.h"

#define SW SR_PIPE_SW_PACKAGE

/* File-scope compound literals: static storage, NULL-terminated lists. */
#define METHODS(...) ((const struct sr_pipe_method[]){__VA_ARGS__, {NULL, 0, NULL, {0, 0}, NULL}})
#define PLANS(...) ((const struct sr_plan *const[]){__VA_ARGS__, NULL})
#define MODES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define M(path, kind, ctx, k1, k2, msg) {path, kind, ctx, {k1, k2}, &msg##__descriptor}

/* ---- the upstream plans, each with the OAP rule that makes it so ---- */

/* A SegmentObject carries its own service and instance: one stream per batch takes any mix. */
static const struct sr_plan plan_segment_collect = {
    .method = SW "TraceSegmentReportService/collect", .unit = SR_UNIT_EVENT};
/* collectInSync is unary: one SegmentCollection, every segment a field-1 record. */
static const struct sr_plan plan_segment_sync = {
    .method = SW "TraceSegmentReportService/collectInSync",
    .unit = SR_UNIT_CALL,
    .unary = 1,
    .wrap = 1};
/* OAP's LogReportServiceGrpcHandler keeps the first non-empty service of an
 * upstream stream and writes it onto every later LogData of that stream, even
 * one that carries its own: one upstream stream per (service, instance). */
static const struct sr_plan plan_log = {.method = SW "LogReportService/collect",
                                        .unit = SR_UNIT_EVENT,
                                        .group_by_key = 1,
                                        .call_per_group = 1};
/* OAP credits a whole MeterDataCollection to one instance: one collection per key. */
static const struct sr_plan plan_meter = {.method = SW "MeterReportService/collectBatch",
                                          .unit = SR_UNIT_GROUP,
                                          .group_by_key = 1,
                                          .wrap = 1};
/* OAP's standard ALS handler reads the identifier of the first message of a
 * stream only: one upstream stream per identifier. */
static const struct sr_plan plan_als = {
    .method = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
    .unit = SR_UNIT_EVENT,
    .group_by_key = 1,
    .call_per_group = 1};
/* OAP's satellite ALS service reads the identifier of every message: one stream for all. */
static const struct sr_plan plan_als_satellite = {
    .method = "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs",
    .unit = SR_UNIT_EVENT};
/* JVM/CLR collections of one instance concatenate into one collection (the
 * metrics are repeated, service and instance equal): one unary call per instance. */
static const struct sr_plan plan_jvm = {.method = SW "JVMMetricReportService/collect",
                                        .unit = SR_UNIT_GROUP,
                                        .group_by_key = 1,
                                        .call_per_group = 1,
                                        .unary = 1};
static const struct sr_plan plan_clr = {.method = SW "CLRMetricReportService/collect",
                                        .unit = SR_UNIT_GROUP,
                                        .group_by_key = 1,
                                        .call_per_group = 1,
                                        .unary = 1};
/* Events, span events, snapshots and eBPF profiling data carry their own source. */
static const struct sr_plan plan_event = {.method = SW "EventService/collect",
                                          .unit = SR_UNIT_EVENT};
static const struct sr_plan plan_span_event = {
    .method = SW "SpanAttachedEventReportService/collect", .unit = SR_UNIT_EVENT};
static const struct sr_plan plan_profile = {.method = SW "ProfileTask/collectSnapshot",
                                            .unit = SR_UNIT_EVENT};
static const struct sr_plan plan_ebpf_profiling = {
    .method = SW "EBPFProfilingService/collectProfilingData", .unit = SR_UNIT_EVENT};
/* node context like ALS: one upstream stream per node */
static const struct sr_plan plan_ebpf_access_log = {.method = SW "EBPFAccessLogService/collect",
                                                    .unit = SR_UNIT_EVENT,
                                                    .group_by_key = 1,
                                                    .call_per_group = 1};
/* keepAlive and instance properties are idempotent per instance: a batch sends
 * the latest one of each instance. */
static const struct sr_plan plan_keepalive = {.method = SW "ManagementService/keepAlive",
                                              .unit = SR_UNIT_LAST,
                                              .group_by_key = 1,
                                              .call_per_group = 1,
                                              .unary = 1};
static const struct sr_plan plan_instance_properties = {
    .method = SW "ManagementService/reportInstanceProperties",
    .unit = SR_UNIT_LAST,
    .group_by_key = 1,
    .call_per_group = 1,
    .unary = 1};
/* like ALS: OAP reads the identifier of a stream's first message */
static const struct sr_plan plan_envoy_metrics = {
    .method = "/envoy.service.metrics.v3.MetricsService/StreamMetrics",
    .unit = SR_UNIT_EVENT,
    .group_by_key = 1,
    .call_per_group = 1};

/* ---- the pipes ---- */

const struct sr_pipe_def sr_pipe_defs[SR_PIPE_COUNT] = {
    [SR_PIPE_SEGMENT] = {
        .name = "segment",
        /* SegmentObject: service=4, serviceInstance=5 */
        .methods = METHODS(
            M("TraceSegmentReportService/collect", SR_RK_MESSAGE, NULL, 4, 5,
              skywalking__v3__segment_object),
            M("TraceSegmentReportService/collectInSync", SR_RK_SEGMENT_COLLECTION, NULL, 4, 5,
              skywalking__v3__segment_collection)),
        .plans = PLANS([SR_SEGMENT_COLLECT] = &plan_segment_collect,
                       [SR_SEGMENT_COLLECT_IN_SYNC] = &plan_segment_sync),
        .modes = MODES([SR_SEGMENT_COLLECT] = "collect",
                       [SR_SEGMENT_COLLECT_IN_SYNC] = "collect_in_sync"),
        /* OAP serves collectInSync since 8.2 (2020): one unary call per batch costs half
         * of a stream's per-segment messages, and a failed call delivers nothing (no
         * partial duplicates); `collect` stays for older OAP (docs/protocols.md) */
        .default_mode = SR_SEGMENT_COLLECT_IN_SYNC,
        .keyed = true,
    },
    [SR_PIPE_LOG] = {
        .name = "log",
        .methods = METHODS(M("LogReportService/collect", SR_RK_MESSAGE, &sr_ctx_log, 0, 0,
                             skywalking__v3__log_data)),
        .plans = PLANS(&plan_log),
        .keyed = true,
    },
    [SR_PIPE_METER] = {
        .name = "meter",
        .methods = METHODS(
            M("MeterReportService/collect", SR_RK_MESSAGE, &sr_ctx_meter, 0, 0,
              skywalking__v3__meter_data),
            M("MeterReportService/collectBatch", SR_RK_METER_COLLECTION, NULL, 0, 0,
              skywalking__v3__meter_data_collection)),
        .plans = PLANS(&plan_meter),
        /* OAP's meter analysis keeps per-instance state on one node: route meters by instance */
        .routing = "fixed",
        .keyed = true,
    },
    [SR_PIPE_ALS] = {
        .name = "als",
        .methods = METHODS(
            M("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", SR_RK_MESSAGE,
              &sr_ctx_als, 0, 0, envoy__service__accesslog__v3__stream_access_logs_message),
            M("/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs", SR_RK_MESSAGE,
              &sr_ctx_als, 0, 0, envoy__service__accesslog__v3__stream_access_logs_message)),
        .plans = PLANS([SR_ALS_PER_IDENTIFIER] = &plan_als,
                       [SR_ALS_SATELLITE] = &plan_als_satellite),
        .modes = MODES([SR_ALS_PER_IDENTIFIER] = "per_identifier",
                       [SR_ALS_SATELLITE] = "satellite"),
        .keyed = true,
    },
    [SR_PIPE_JVM] = {
        .name = "jvm",
        /* JVMMetricCollection: service=2, serviceInstance=3 */
        .methods = METHODS(M("JVMMetricReportService/collect", SR_RK_MESSAGE, NULL, 2, 3,
                             skywalking__v3__jvmmetric_collection)),
        .plans = PLANS(&plan_jvm),
        .keyed = true,
    },
    [SR_PIPE_CLR] = {
        .name = "clr",
        /* CLRMetricCollection: service=2, serviceInstance=3 */
        .methods = METHODS(M("CLRMetricReportService/collect", SR_RK_MESSAGE, NULL, 2, 3,
                             skywalking__v3__clrmetric_collection)),
        .plans = PLANS(&plan_clr),
        .keyed = true,
    },
    [SR_PIPE_EVENT] = {
        .name = "event",
        .methods = METHODS(M("EventService/collect", SR_RK_MESSAGE, NULL, 0, 0,
                             skywalking__v3__event)),
        .plans = PLANS(&plan_event),
    },
    [SR_PIPE_SPAN_EVENT] = {
        .name = "span_attached_event",
        .methods = METHODS(M("SpanAttachedEventReportService/collect", SR_RK_MESSAGE, NULL, 0, 0,
                             skywalking__v3__span_attached_event)),
        .plans = PLANS(&plan_span_event),
    },
    [SR_PIPE_PROFILE] = {
        .name = "profile_snapshot",
        .methods = METHODS(M("ProfileTask/collectSnapshot", SR_RK_MESSAGE, NULL, 0, 0,
                             skywalking__v3__thread_snapshot)),
        .plans = PLANS(&plan_profile),
    },
    [SR_PIPE_EBPF_PROFILING] = {
        .name = "ebpf_profiling",
        .methods = METHODS(M("EBPFProfilingService/collectProfilingData", SR_RK_MESSAGE, NULL, 0,
                             0, skywalking__v3__ebpfprofiling_data)),
        .plans = PLANS(&plan_ebpf_profiling),
    },
    [SR_PIPE_EBPF_ACCESS_LOG] = {
        .name = "ebpf_access_log",
        /* EBPFAccessLogMessage: node=1 only on the first message and when it changes */
        .methods = METHODS(M("EBPFAccessLogService/collect", SR_RK_MESSAGE, &sr_ctx_als, 0, 0,
                             skywalking__v3__ebpfaccess_log_message)),
        .plans = PLANS(&plan_ebpf_access_log),
        .keyed = true,
    },
    [SR_PIPE_KEEPALIVE] = {
        .name = "keepalive",
        /* InstancePingPkg: service=1, serviceInstance=2 */
        .methods = METHODS(M("ManagementService/keepAlive", SR_RK_MESSAGE, NULL, 1, 2,
                             skywalking__v3__instance_ping_pkg)),
        .plans = PLANS(&plan_keepalive),
        .keyed = true,
    },
    [SR_PIPE_INSTANCE_PROPERTIES] = {
        .name = "instance_properties",
        /* InstanceProperties: service=1, serviceInstance=2 */
        .methods = METHODS(M("ManagementService/reportInstanceProperties", SR_RK_MESSAGE, NULL, 1,
                             2, skywalking__v3__instance_properties)),
        .plans = PLANS(&plan_instance_properties),
        .keyed = true,
    },
    [SR_PIPE_ENVOY_METRICS] = {
        .name = "envoy_metrics",
        .methods = METHODS(
            M("/envoy.service.metrics.v3.MetricsService/StreamMetrics", SR_RK_MESSAGE,
              &sr_ctx_als, 0, 0, envoy__service__metrics__v3__stream_metrics_message),
            M("/envoy.service.metrics.v2.MetricsService/StreamMetrics", SR_RK_MESSAGE,
              &sr_ctx_als, 0, 0, envoy__service__metrics__v3__stream_metrics_message)),
        .plans = PLANS(&plan_envoy_metrics),
        .keyed = true,
    },
};

const struct sr_pipe_def *sr_pipe_def(enum sr_pipe_id id)
{
    return (unsigned)id < SR_PIPE_COUNT ? &sr_pipe_defs[id] : NULL;
}

int sr_pipe_mode_count(const struct sr_pipe_def *d)
{
    int n = 0;
    while (d->plans[n]) n++;
    return n;
}

const char *sr_pipe_name(enum sr_pipe_id id)
{
    return (unsigned)id < SR_PIPE_COUNT ? sr_pipe_defs[id].name : "unknown";
}
