/* Unit tests for src/server/method.c: the method table and the upstream plans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/method.h"

/* The method table's rows (sr_method_table). */
static const struct sr_method *methods(void)
{
    size_t n;
    return sr_method_table(&n);
}

static size_t n_methods(void)
{
    size_t n;
    (void)sr_method_table(&n);
    return n;
}

static const struct sr_method *find(const char *path)
{
    return sr_method_find(path, strlen(path));
}

static void expect_method(const char *path, enum sr_pipe_id pipe, enum sr_recv_kind kind,
                          const struct sr_ctx_spec *ctx)
{
    const struct sr_method *m = find(path);
    if (!m) fail_msg("%s: not served", path);
    assert_string_equal(m->path, path);
    assert_int_equal(m->pipe, pipe);
    assert_int_equal(m->kind, kind);
    assert_ptr_equal(m->ctx, ctx);
}

static void segment_paths_map_to_segment_pipe(void **state)
{
    (void)state;
    expect_method("/skywalking.v3.TraceSegmentReportService/collect", SR_PIPE_SEGMENT, SR_RK_MESSAGE,
                  NULL);
    expect_method("/TraceSegmentReportService/collect", SR_PIPE_SEGMENT, SR_RK_MESSAGE, NULL);
    expect_method("/skywalking.v3.TraceSegmentReportService/collectInSync", SR_PIPE_SEGMENT,
                  SR_RK_SEGMENT_COLLECTION, NULL);
    expect_method("/TraceSegmentReportService/collectInSync", SR_PIPE_SEGMENT,
                  SR_RK_SEGMENT_COLLECTION, NULL);
}

static void log_paths_map_to_log_pipe_with_log_context(void **state)
{
    (void)state;
    expect_method("/skywalking.v3.LogReportService/collect", SR_PIPE_LOG, SR_RK_MESSAGE, &sr_ctx_log);
    expect_method("/LogReportService/collect", SR_PIPE_LOG, SR_RK_MESSAGE, &sr_ctx_log);
}

static void meter_paths_map_to_meter_pipe(void **state)
{
    (void)state;
    expect_method("/skywalking.v3.MeterReportService/collect", SR_PIPE_METER, SR_RK_MESSAGE,
                  &sr_ctx_meter);
    expect_method("/MeterReportService/collect", SR_PIPE_METER, SR_RK_MESSAGE, &sr_ctx_meter);
    expect_method("/skywalking.v3.MeterReportService/collectBatch", SR_PIPE_METER,
                  SR_RK_METER_COLLECTION, NULL);
    expect_method("/MeterReportService/collectBatch", SR_PIPE_METER, SR_RK_METER_COLLECTION, NULL);
}

static void als_v2_and_v3_paths_map_to_als_pipe_with_identifier_context(void **state)
{
    (void)state;
    expect_method("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", SR_PIPE_ALS,
                  SR_RK_MESSAGE, &sr_ctx_als);
    expect_method("/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs", SR_PIPE_ALS,
                  SR_RK_MESSAGE, &sr_ctx_als);
}

static void context_specs_name_the_protocol_fields(void **state)
{
    (void)state;
    assert_int_equal(sr_ctx_log.n_fields, 2);
    assert_int_equal(sr_ctx_log.fields[0], 2);
    assert_int_equal(sr_ctx_log.fields[1], 3);
    assert_int_equal(sr_ctx_log.n_key, 2);
    assert_int_equal(sr_ctx_meter.n_fields, 3);
    assert_int_equal(sr_ctx_meter.fields[0], 3);
    assert_int_equal(sr_ctx_meter.fields[1], 4);
    assert_int_equal(sr_ctx_meter.fields[2], 5);
    assert_int_equal(sr_ctx_meter.n_key, 2);
    assert_int_equal(sr_ctx_als.n_fields, 1);
    assert_int_equal(sr_ctx_als.fields[0], 1);
    assert_int_equal(sr_ctx_als.n_key, 1);
}

static void every_table_entry_is_found_by_its_own_path(void **state)
{
    (void)state;
    assert_int_equal(n_methods(), 54);
    for (size_t i = 0; i < n_methods(); i++) {
        assert_ptr_equal(find(methods()[i].path), &methods()[i]);
        for (size_t j = 0; j < i; j++) assert_string_not_equal(methods()[i].path, methods()[j].path);
    }
}

static void unknown_paths_are_not_in_the_table(void **state)
{
    static const char *unknown[] = {
        "",
        "/",
        "/skywalking.v3.ManagementService/keepalive",
        "/skywalking.v3.LogReportService/collectBatch",
        "/skywalking.v3.logreportservice/collect",
        "/skywalking.v3.LogReportService/Collect",
        "/skywalking.v2.LogReportService/collect",
        "skywalking.v3.LogReportService/collect",
        "/envoy.service.accesslog.v4.AccessLogService/StreamAccessLogs",
        "/AccessLogService/StreamAccessLogs",
        "/envoy.service.metrics.v4.MetricsService/StreamMetrics",
        "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        if (find(unknown[i])) fail_msg("%s: unexpectedly served", unknown[i]);
}

static void prefixes_and_extensions_of_paths_are_not_served(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_methods(); i++) {
        const char *p = methods()[i].path;
        size_t n = strlen(p);
        /* every proper prefix is unknown, unless it is a path of its own
         * (".../collect" of ".../collectInSync") and then it is that entry */
        for (size_t k = 0; k < n; k++) {
            const struct sr_method *m = sr_method_find(p, k);
            if (m && !(strlen(m->path) == k && memcmp(m->path, p, k) == 0))
                fail_msg("prefix %.*s of %s found as %s", (int)k, p, p, m->path);
        }
        char longer[256];
        assert_true(n + 2 < sizeof(longer));
        memcpy(longer, p, n);
        memcpy(longer + n, "/x", 2);
        assert_null(sr_method_find(longer, n + 2));
        memcpy(longer + n, "X", 1);
        assert_null(sr_method_find(longer, n + 1));
    }
}

static void collect_is_not_confused_with_collect_in_sync_or_collect_batch(void **state)
{
    (void)state;
    assert_int_equal(find("/skywalking.v3.TraceSegmentReportService/collect")->kind, SR_RK_MESSAGE);
    assert_int_equal(find("/skywalking.v3.TraceSegmentReportService/collectInSync")->kind,
                     SR_RK_SEGMENT_COLLECTION);
    assert_int_equal(find("/skywalking.v3.MeterReportService/collect")->kind, SR_RK_MESSAGE);
    assert_int_equal(find("/skywalking.v3.MeterReportService/collectBatch")->kind,
                     SR_RK_METER_COLLECTION);
    assert_null(find("/skywalking.v3.TraceSegmentReportService/collectIn"));
    assert_null(find("/skywalking.v3.MeterReportService/collectB"));
    assert_null(find("/skywalking.v3.TraceSegmentReportService/"));
    assert_null(find("/skywalking.v3.TraceSegmentReportService"));
}

static void lookup_uses_the_given_length_not_a_terminator(void **state)
{
    /* a grpc_slice is not NUL-terminated: the path is the first len bytes */
    static const char buf[] = "/LogReportService/collect\x7f garbage after the path";
    (void)state;
    const struct sr_method *m = sr_method_find(buf, strlen("/LogReportService/collect"));
    assert_non_null(m);
    assert_int_equal(m->pipe, SR_PIPE_LOG);
    char exact[64];
    size_t n = strlen("/MeterReportService/collectBatch");
    memcpy(exact, "/MeterReportService/collectBatch", n);
    memset(exact + n, 'Z', sizeof(exact) - n);
    m = sr_method_find(exact, n);
    assert_non_null(m);
    assert_int_equal(m->kind, SR_RK_METER_COLLECTION);
}

/* ---- plans ---- */

static void segment_plan_follows_upstream_method_mode(void **state)
{
    (void)state;
    const struct sr_plan *p = sr_plan_for(SR_PIPE_SEGMENT, SR_SEGMENT_COLLECT);
    assert_non_null(p);
    assert_string_equal(p->method, "/skywalking.v3.TraceSegmentReportService/collect");
    assert_int_equal(p->unit, SR_UNIT_EVENT);
    assert_false(p->unary);
    assert_false(p->group_by_key);
    assert_false(p->call_per_group);

    p = sr_plan_for(SR_PIPE_SEGMENT, SR_SEGMENT_COLLECT_IN_SYNC);
    assert_non_null(p);
    assert_string_equal(p->method, "/skywalking.v3.TraceSegmentReportService/collectInSync");
    assert_int_equal(p->unit, SR_UNIT_CALL);
    assert_true(p->unary);
    assert_false(p->group_by_key);
    assert_false(p->call_per_group);
}

/* OAP writes a stream's first service onto every later LogData of it: one
 * upstream stream per (service, instance), one message per event. */
static void log_plan_streams_one_upstream_stream_per_identity(void **state)
{
    (void)state;
    const struct sr_plan *p = sr_plan_for(SR_PIPE_LOG, 0);
    assert_non_null(p);
    assert_string_equal(p->method, "/skywalking.v3.LogReportService/collect");
    assert_int_equal(p->unit, SR_UNIT_EVENT);
    assert_false(p->unary);
    assert_true(p->group_by_key);
    assert_true(p->call_per_group);
}

static void meter_plan_sends_one_collection_per_key(void **state)
{
    (void)state;
    const struct sr_plan *p = sr_plan_for(SR_PIPE_METER, 0);
    assert_non_null(p);
    assert_string_equal(p->method, "/skywalking.v3.MeterReportService/collectBatch");
    assert_int_equal(p->unit, SR_UNIT_GROUP);
    assert_true(p->group_by_key);
    assert_false(p->call_per_group);
    assert_false(p->unary);
}

static void als_per_identifier_plan_opens_one_standard_stream_per_identity(void **state)
{
    (void)state;
    const struct sr_plan *p = sr_plan_for(SR_PIPE_ALS, SR_ALS_PER_IDENTIFIER);
    assert_non_null(p);
    assert_string_equal(p->method, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs");
    assert_int_equal(p->unit, SR_UNIT_EVENT);
    assert_true(p->group_by_key);
    assert_true(p->call_per_group);
    assert_false(p->unary);
}

static void als_satellite_plan_uses_one_satellite_stream(void **state)
{
    (void)state;
    const struct sr_plan *p = sr_plan_for(SR_PIPE_ALS, SR_ALS_SATELLITE);
    assert_non_null(p);
    assert_string_equal(p->method,
                        "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs");
    assert_int_equal(p->unit, SR_UNIT_EVENT);
    assert_false(p->group_by_key);
    assert_false(p->call_per_group);
    assert_false(p->unary);
}

static void every_pipe_is_fed_by_a_method(void **state)
{
    (void)state;
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        bool fed = false;
        for (size_t i = 0; i < n_methods(); i++)
            if (methods()[i].mode == SR_MODE_ASYNC && methods()[i].pipe == (enum sr_pipe_id)p)
                fed = true;
        assert_true(fed);
    }
}

static void management_and_jvm_are_batched_sync_methods_pass_through(void **state)
{
    (void)state;
    const struct sr_method *m = find("/skywalking.v3.ManagementService/keepAlive");
    assert_non_null(m);
    assert_int_equal(m->mode, SR_MODE_ASYNC);
    assert_int_equal(m->pipe, SR_PIPE_KEEPALIVE);
    assert_int_equal(m->key_fields[0], 1);
    assert_int_equal(m->key_fields[1], 2);
    m = find("/ManagementService/reportInstanceProperties");
    assert_non_null(m);
    assert_int_equal(m->pipe, SR_PIPE_INSTANCE_PROPERTIES);
    m = find("/skywalking.v3.JVMMetricReportService/collect");
    assert_non_null(m);
    assert_int_equal(m->pipe, SR_PIPE_JVM);
    assert_int_equal(m->key_fields[0], 2);
    assert_int_equal(m->key_fields[1], 3);
    m = find("/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations");
    assert_non_null(m);
    assert_int_equal(m->mode, SR_MODE_SYNC);
    m = find("/skywalking.v10.AsyncProfilerTask/collect");
    assert_non_null(m);
    assert_int_equal(m->mode, SR_MODE_RELAY);
    m = find("/envoy.service.metrics.v2.MetricsService/StreamMetrics");
    assert_non_null(m);
    assert_int_equal(m->pipe, SR_PIPE_ENVOY_METRICS);
    assert_ptr_equal(m->ctx, &sr_ctx_als);
    m = find("/skywalking.v3.EBPFAccessLogService/collect");
    assert_non_null(m);
    assert_ptr_equal(m->ctx, &sr_ctx_als); /* node=1, like the ALS identifier */
    /* unary reports of one instance are merged or collapsed, one call per instance */
    const struct sr_plan *pl = sr_plan_for(SR_PIPE_KEEPALIVE, 0);
    assert_int_equal(pl->unit, SR_UNIT_LAST);
    assert_true(pl->group_by_key && pl->call_per_group && pl->unary);
    pl = sr_plan_for(SR_PIPE_JVM, 0);
    assert_int_equal(pl->unit, SR_UNIT_GROUP);
    assert_false(pl->wrap);
    assert_true(pl->group_by_key && pl->call_per_group && pl->unary);
    pl = sr_plan_for(SR_PIPE_ENVOY_METRICS, 0);
    assert_string_equal(pl->method, "/envoy.service.metrics.v3.MetricsService/StreamMetrics");
    assert_true(pl->group_by_key && pl->call_per_group);
}

static void every_served_pipe_has_a_plan(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_methods(); i++)
        if (methods()[i].mode == SR_MODE_ASYNC)
            assert_non_null(sr_plan_for(methods()[i].pipe, 0));
        else
            assert_int_equal(methods()[i].pipe, SR_PIPE_COUNT);
    assert_null(sr_plan_for(SR_PIPE_COUNT, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segment_paths_map_to_segment_pipe),
        cmocka_unit_test(log_paths_map_to_log_pipe_with_log_context),
        cmocka_unit_test(meter_paths_map_to_meter_pipe),
        cmocka_unit_test(als_v2_and_v3_paths_map_to_als_pipe_with_identifier_context),
        cmocka_unit_test(context_specs_name_the_protocol_fields),
        cmocka_unit_test(every_table_entry_is_found_by_its_own_path),
        cmocka_unit_test(unknown_paths_are_not_in_the_table),
        cmocka_unit_test(prefixes_and_extensions_of_paths_are_not_served),
        cmocka_unit_test(collect_is_not_confused_with_collect_in_sync_or_collect_batch),
        cmocka_unit_test(lookup_uses_the_given_length_not_a_terminator),
        cmocka_unit_test(segment_plan_follows_upstream_method_mode),
        cmocka_unit_test(log_plan_streams_one_upstream_stream_per_identity),
        cmocka_unit_test(meter_plan_sends_one_collection_per_key),
        cmocka_unit_test(als_per_identifier_plan_opens_one_standard_stream_per_identity),
        cmocka_unit_test(als_satellite_plan_uses_one_satellite_stream),
        cmocka_unit_test(every_served_pipe_has_a_plan),
        cmocka_unit_test(every_pipe_is_fed_by_a_method),
        cmocka_unit_test(management_and_jvm_are_batched_sync_methods_pass_through),
    };
    return cmocka_run_group_tests_name("method", tests, NULL, NULL);
}
