/* The method table: which pipe and receiver kind each gRPC method path feeds
 * (the upstream plans are in src/sender/plan.c). */
#include <string.h>

#include "skyrelay/method.h"

#define SW "/skywalking.v3."

#define ASYNC(svc, m, pipe, kind, ctx, k1, k2)                                                    \
    {SW svc "/" m, pipe, kind, ctx, {k1, k2}, SR_MODE_ASYNC},                                      \
    {"/" svc "/" m, pipe, kind, ctx, {k1, k2}, SR_MODE_ASYNC}
#define SYNC(path) {path, SR_PIPE_COUNT, SR_RK_MESSAGE, NULL, {0, 0}, SR_MODE_SYNC}
#define SYNC2(svc, m) SYNC(SW svc "/" m), SYNC("/" svc "/" m)
#define RELAY(path) {path, SR_PIPE_COUNT, SR_RK_MESSAGE, NULL, {0, 0}, SR_MODE_RELAY}

/* Old agents call the skywalking.v3 services without the package: both names
 * are listed. Methods not listed are relayed transparently. */
const struct sr_method sr_methods[] = {
    ASYNC("TraceSegmentReportService", "collect", SR_PIPE_SEGMENT, SR_RK_MESSAGE, NULL, 4, 5),
    ASYNC("TraceSegmentReportService", "collectInSync", SR_PIPE_SEGMENT, SR_RK_SEGMENT_COLLECTION,
          NULL, 4, 5),
    ASYNC("LogReportService", "collect", SR_PIPE_LOG, SR_RK_MESSAGE, &sr_ctx_log, 0, 0),
    ASYNC("MeterReportService", "collect", SR_PIPE_METER, SR_RK_MESSAGE, &sr_ctx_meter, 0, 0),
    ASYNC("MeterReportService", "collectBatch", SR_PIPE_METER, SR_RK_METER_COLLECTION, NULL, 0, 0),
    {"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", SR_PIPE_ALS, SR_RK_MESSAGE,
     &sr_ctx_als, {0, 0}, SR_MODE_ASYNC},
    {"/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs", SR_PIPE_ALS, SR_RK_MESSAGE,
     &sr_ctx_als, {0, 0}, SR_MODE_ASYNC},
    /* JVMMetricCollection / CLRMetricCollection: service=2, serviceInstance=3 */
    ASYNC("JVMMetricReportService", "collect", SR_PIPE_JVM, SR_RK_MESSAGE, NULL, 2, 3),
    ASYNC("CLRMetricReportService", "collect", SR_PIPE_CLR, SR_RK_MESSAGE, NULL, 2, 3),
    ASYNC("EventService", "collect", SR_PIPE_EVENT, SR_RK_MESSAGE, NULL, 0, 0),
    ASYNC("SpanAttachedEventReportService", "collect", SR_PIPE_SPAN_EVENT, SR_RK_MESSAGE, NULL, 0,
          0),
    ASYNC("ProfileTask", "collectSnapshot", SR_PIPE_PROFILE, SR_RK_MESSAGE, NULL, 0, 0),
    ASYNC("EBPFProfilingService", "collectProfilingData", SR_PIPE_EBPF_PROFILING, SR_RK_MESSAGE,
          NULL, 0, 0),
    /* EBPFAccessLogMessage: node=1 only on the first message and when it changes */
    ASYNC("EBPFAccessLogService", "collect", SR_PIPE_EBPF_ACCESS_LOG, SR_RK_MESSAGE, &sr_ctx_als,
          0, 0),
    /* InstancePingPkg / InstanceProperties: service=1, serviceInstance=2 */
    ASYNC("ManagementService", "keepAlive", SR_PIPE_KEEPALIVE, SR_RK_MESSAGE, NULL, 1, 2),
    ASYNC("ManagementService", "reportInstanceProperties", SR_PIPE_INSTANCE_PROPERTIES,
          SR_RK_MESSAGE, NULL, 1, 2),
    {"/envoy.service.metrics.v3.MetricsService/StreamMetrics", SR_PIPE_ENVOY_METRICS,
     SR_RK_MESSAGE, &sr_ctx_als, {0, 0}, SR_MODE_ASYNC},
    {"/envoy.service.metrics.v2.MetricsService/StreamMetrics", SR_PIPE_ENVOY_METRICS,
     SR_RK_MESSAGE, &sr_ctx_als, {0, 0}, SR_MODE_ASYNC},

    SYNC2("ConfigurationDiscoveryService", "fetchConfigurations"),
    SYNC2("ProfileTask", "getProfileTaskCommands"),
    SYNC2("ProfileTask", "reportTaskFinish"),
    SYNC2("EBPFProcessService", "reportProcesses"),
    SYNC2("EBPFProcessService", "keepAlive"),
    SYNC2("EBPFProfilingService", "queryTasks"),
    SYNC2("ContinuousProfilingService", "queryPolicies"),
    SYNC2("ContinuousProfilingService", "reportProfilingTask"),
    SYNC("/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands"),
    SYNC("/skywalking.v10.PprofTask/getPprofTaskCommands"),

    RELAY("/skywalking.v10.AsyncProfilerTask/collect"),
    RELAY("/skywalking.v10.PprofTask/collect"),
    RELAY(SW "ProfileTask/goProfileReport"),
    RELAY("/ProfileTask/goProfileReport"),
};

const size_t sr_methods_count = sizeof(sr_methods) / sizeof(sr_methods[0]);

const struct sr_method *sr_method_find(const char *path, size_t len)
{
    for (size_t i = 0; i < sr_methods_count; i++)
        if (strlen(sr_methods[i].path) == len && memcmp(sr_methods[i].path, path, len) == 0)
            return &sr_methods[i];
    return NULL;
}
