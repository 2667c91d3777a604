/* The upstream plans: how each pipe's batch becomes upstream calls, and the
 * OAP rule that makes it so. See include/skyrelay/sender.h. */
#include "skyrelay/sender.h"

#define SW "/skywalking.v3."

static const struct sr_plan plan_segment_collect = {
    .method = SW "TraceSegmentReportService/collect", .unit = SR_UNIT_EVENT};
static const struct sr_plan plan_segment_sync = {.method = SW "TraceSegmentReportService/collectInSync",
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

const struct sr_plan *sr_plan_for(enum sr_pipe_id pipe, int mode)
{
    switch (pipe) {
    case SR_PIPE_SEGMENT:
        return mode == SR_SEGMENT_COLLECT_IN_SYNC ? &plan_segment_sync : &plan_segment_collect;
    case SR_PIPE_LOG:
        return &plan_log;
    case SR_PIPE_METER:
        return &plan_meter;
    case SR_PIPE_ALS:
        return mode == SR_ALS_SATELLITE ? &plan_als_satellite : &plan_als;
    case SR_PIPE_JVM:
        return &plan_jvm;
    case SR_PIPE_CLR:
        return &plan_clr;
    case SR_PIPE_EVENT:
        return &plan_event;
    case SR_PIPE_SPAN_EVENT:
        return &plan_span_event;
    case SR_PIPE_PROFILE:
        return &plan_profile;
    case SR_PIPE_EBPF_PROFILING:
        return &plan_ebpf_profiling;
    case SR_PIPE_EBPF_ACCESS_LOG:
        return &plan_ebpf_access_log;
    case SR_PIPE_KEEPALIVE:
        return &plan_keepalive;
    case SR_PIPE_INSTANCE_PROPERTIES:
        return &plan_instance_properties;
    case SR_PIPE_ENVOY_METRICS:
        return &plan_envoy_metrics;
    default:
        return NULL;
    }
}
