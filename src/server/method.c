/* The method table and the upstream plans. */
#include <string.h>

#include "skyrelay/method.h"

#define SW "/skywalking.v3."

const struct sr_method sr_methods[] = {
    {SW "TraceSegmentReportService/collect", SR_PIPE_SEGMENT, SR_RK_MESSAGE, NULL, {4, 5}},
    {"/TraceSegmentReportService/collect", SR_PIPE_SEGMENT, SR_RK_MESSAGE, NULL, {4, 5}},
    {SW "TraceSegmentReportService/collectInSync", SR_PIPE_SEGMENT, SR_RK_SEGMENT_COLLECTION, NULL, {4, 5}},
    {"/TraceSegmentReportService/collectInSync", SR_PIPE_SEGMENT, SR_RK_SEGMENT_COLLECTION, NULL,
     {4, 5}},
    {SW "LogReportService/collect", SR_PIPE_LOG, SR_RK_MESSAGE, &sr_ctx_log, {0, 0}},
    {"/LogReportService/collect", SR_PIPE_LOG, SR_RK_MESSAGE, &sr_ctx_log, {0, 0}},
    {SW "MeterReportService/collect", SR_PIPE_METER, SR_RK_MESSAGE, &sr_ctx_meter, {0, 0}},
    {"/MeterReportService/collect", SR_PIPE_METER, SR_RK_MESSAGE, &sr_ctx_meter, {0, 0}},
    {SW "MeterReportService/collectBatch", SR_PIPE_METER, SR_RK_METER_COLLECTION, NULL, {0, 0}},
    {"/MeterReportService/collectBatch", SR_PIPE_METER, SR_RK_METER_COLLECTION, NULL, {0, 0}},
    {"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", SR_PIPE_ALS, SR_RK_MESSAGE,
     &sr_ctx_als, {0, 0}},
    {"/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs", SR_PIPE_ALS, SR_RK_MESSAGE,
     &sr_ctx_als, {0, 0}},
};

const size_t sr_methods_count = sizeof(sr_methods) / sizeof(sr_methods[0]);

const struct sr_method *sr_method_find(const char *path, size_t len)
{
    for (size_t i = 0; i < sr_methods_count; i++)
        if (strlen(sr_methods[i].path) == len && memcmp(sr_methods[i].path, path, len) == 0)
            return &sr_methods[i];
    return NULL;
}

static const struct sr_plan plan_segment_collect = {
    .method = SW "TraceSegmentReportService/collect", .unit = SR_UNIT_EVENT};
static const struct sr_plan plan_segment_sync = {
    .method = SW "TraceSegmentReportService/collectInSync", .unit = SR_UNIT_CALL, .unary = 1};
static const struct sr_plan plan_log = {.method = SW "LogReportService/collect",
                                        .unit = SR_UNIT_EVENT};
/* OAP credits a whole MeterDataCollection to one instance: one collection per key. */
static const struct sr_plan plan_meter = {
    .method = SW "MeterReportService/collectBatch", .unit = SR_UNIT_GROUP, .group_by_key = 1};
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
    default:
        return NULL;
    }
}
