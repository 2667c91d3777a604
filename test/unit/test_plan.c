/* Unit tests for the upstream plans of the pipe rows, src/core/pipes.c (sr_plan_for):
 * for every pipe and every mode of it, how a batch goes upstream (the
 * method, the unit of an upstream message, grouping by key, one call per
 * group, unary, field-1 wrapping), each row stating the OAP rule that
 * forces it. One cmocka test per row, named after the rule; then the
 * invariants every plan must keep for the sender (src/sender/sender.c) to
 * build valid calls from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/method.h"

#define SW "/skywalking.v3."

struct row {
    const char *name; /* the test name: the behaviour */
    enum sr_pipe_id pipe;
    int mode;
    const char *method;
    enum sr_plan_unit unit;
    bool group_by_key, call_per_group, unary, wrap;
    const char *rule; /* why OAP needs it (printed on failure) */
};

static const struct row rows[] = {
    {"segment_collect_streams_one_message_per_segment", SR_PIPE_SEGMENT, SR_SEGMENT_COLLECT,
     SW "TraceSegmentReportService/collect", SR_UNIT_EVENT, false, false, false, false,
     "a SegmentObject carries its own service and instance: one stream per batch takes any mix"},
    {"segment_collect_in_sync_wraps_the_batch_in_one_unary_collection", SR_PIPE_SEGMENT,
     SR_SEGMENT_COLLECT_IN_SYNC, SW "TraceSegmentReportService/collectInSync", SR_UNIT_CALL, false,
     false, true, true,
     "collectInSync is unary: one SegmentCollection, every segment a field-1 record"},
    {"log_one_upstream_stream_per_service_instance", SR_PIPE_LOG, 0,
     SW "LogReportService/collect", SR_UNIT_EVENT, true, true, false, false,
     "OAP's LogReportServiceGrpcHandler writes a stream's first service onto every later "
     "LogData: one upstream stream per (service, instance)"},
    {"meter_one_collection_per_key", SR_PIPE_METER, 0, SW "MeterReportService/collectBatch",
     SR_UNIT_GROUP, true, false, false, true,
     "OAP credits a whole MeterDataCollection to one service instance: one collection per key "
     "(field-1 MeterData records), several collections may share a stream"},
    {"als_one_standard_stream_per_identifier", SR_PIPE_ALS, SR_ALS_PER_IDENTIFIER,
     "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", SR_UNIT_EVENT, true, true,
     false, false,
     "OAP's standard ALS handler reads the identifier of a stream's first message only: one "
     "stream per identifier"},
    {"als_satellite_one_stream_on_the_satellite_service", SR_PIPE_ALS, SR_ALS_SATELLITE,
     "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs", SR_UNIT_EVENT,
     false, false, false, false,
     "OAP's satellite ALS service reads the identifier of every message: one stream for all"},
    {"jvm_merged_into_one_unary_call_per_instance", SR_PIPE_JVM, 0,
     SW "JVMMetricReportService/collect", SR_UNIT_GROUP, true, true, true, false,
     "JVMMetricCollection is unary and names one instance; collections of one instance "
     "concatenate into one (repeated metrics, equal service and instance)"},
    {"clr_merged_into_one_unary_call_per_instance", SR_PIPE_CLR, 0,
     SW "CLRMetricReportService/collect", SR_UNIT_GROUP, true, true, true, false,
     "CLRMetricCollection is unary and names one instance; collections of one instance "
     "concatenate into one"},
    {"event_streams_one_message_per_event", SR_PIPE_EVENT, 0, SW "EventService/collect",
     SR_UNIT_EVENT, false, false, false, false, "an Event carries its own source"},
    {"span_event_streams_one_message_per_event", SR_PIPE_SPAN_EVENT, 0,
     SW "SpanAttachedEventReportService/collect", SR_UNIT_EVENT, false, false, false, false,
     "a SpanAttachedEvent carries its own trace context"},
    {"profile_snapshot_streams_one_message_per_snapshot", SR_PIPE_PROFILE, 0,
     SW "ProfileTask/collectSnapshot", SR_UNIT_EVENT, false, false, false, false,
     "a ThreadSnapshot carries its own task and segment"},
    {"ebpf_profiling_streams_one_message_per_event", SR_PIPE_EBPF_PROFILING, 0,
     SW "EBPFProfilingService/collectProfilingData", SR_UNIT_EVENT, false, false, false, false,
     "EBPFProfilingData carries its own task"},
    {"ebpf_access_log_one_upstream_stream_per_node", SR_PIPE_EBPF_ACCESS_LOG, 0,
     SW "EBPFAccessLogService/collect", SR_UNIT_EVENT, true, true, false, false,
     "OAP reads the node of a stream's first message (like the ALS identifier): one stream "
     "per node"},
    {"keepalive_last_per_instance_in_one_unary_call", SR_PIPE_KEEPALIVE, 0,
     SW "ManagementService/keepAlive", SR_UNIT_LAST, true, true, true, false,
     "keepAlive is unary and idempotent per instance: the latest one of each instance"},
    {"instance_properties_last_per_instance_in_one_unary_call", SR_PIPE_INSTANCE_PROPERTIES, 0,
     SW "ManagementService/reportInstanceProperties", SR_UNIT_LAST, true, true, true, false,
     "reportInstanceProperties is unary and replaces the instance's properties: the latest one "
     "of each instance"},
    {"envoy_metrics_one_upstream_stream_per_identifier", SR_PIPE_ENVOY_METRICS, 0,
     "/envoy.service.metrics.v3.MetricsService/StreamMetrics", SR_UNIT_EVENT, true, true, false,
     false,
     "OAP reads the identifier of a stream's first message only: one stream per identifier"},
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static void expect_field(const struct row *r, const char *field, long got, long want)
{
    if (got != want)
        fail_msg("pipe %d mode %d: %s is %ld, want %ld (%s)", (int)r->pipe, r->mode, field, got,
                 want, r->rule);
}

static void plan_row_holds(void **state)
{
    const struct row *r = *state;
    const struct sr_plan *p = sr_plan_for(r->pipe, r->mode);

    if (!p) fail_msg("pipe %d mode %d: no plan (%s)", (int)r->pipe, r->mode, r->rule);
    if (!p->method || strcmp(p->method, r->method) != 0)
        fail_msg("pipe %d mode %d: method %s, want %s (%s)", (int)r->pipe, r->mode,
                 p->method ? p->method : "(null)", r->method, r->rule);
    expect_field(r, "unit", p->unit, r->unit);
    expect_field(r, "group_by_key", p->group_by_key, r->group_by_key);
    expect_field(r, "call_per_group", p->call_per_group, r->call_per_group);
    expect_field(r, "unary", p->unary, r->unary);
    expect_field(r, "wrap", p->wrap, r->wrap);
}

/* The pipes with modes, and how many (config.h: enum sr_segment_mode, sr_als_mode). */
static int modes_of(enum sr_pipe_id pipe)
{
    return pipe == SR_PIPE_SEGMENT || pipe == SR_PIPE_ALS ? 2 : 1;
}

static void every_pipe_and_mode_has_exactly_one_row(void **state)
{
    (void)state;
    for (int pipe = 0; pipe < SR_PIPE_COUNT; pipe++)
        for (int mode = 0; mode < modes_of((enum sr_pipe_id)pipe); mode++) {
            int found = 0;
            for (size_t i = 0; i < N_ROWS; i++)
                if ((int)rows[i].pipe == pipe && rows[i].mode == mode) found++;
            if (found != 1) fail_msg("pipe %d mode %d: %d rows in the table", pipe, mode, found);
        }
    for (size_t i = 0; i < N_ROWS; i++) assert_true(rows[i].mode < modes_of(rows[i].pipe));
}

/* A pipe without modes gets its plan whatever the (unused) mode says. */
static void pipes_without_modes_ignore_the_mode(void **state)
{
    (void)state;
    for (int pipe = 0; pipe < SR_PIPE_COUNT; pipe++) {
        if (modes_of((enum sr_pipe_id)pipe) > 1) continue;
        assert_ptr_equal(sr_plan_for((enum sr_pipe_id)pipe, 1), sr_plan_for((enum sr_pipe_id)pipe, 0));
    }
}

static void no_plan_past_the_last_pipe(void **state)
{
    (void)state;
    assert_null(sr_plan_for(SR_PIPE_COUNT, 0));
    assert_null(sr_plan_for((enum sr_pipe_id)(SR_PIPE_COUNT + 1), 0));
}

/* What the sender relies on, for every plan:
 * - one upstream call per group, one message per group or the last event of
 *   a group all need the groups: they imply group_by_key;
 * - a unary method takes exactly one message per call: the whole call
 *   (CALL) or one group per call (GROUP/LAST with call_per_group), never
 *   one message per event;
 * - wrapping applies to messages built from several events (GROUP, CALL). */
static void every_plan_is_one_the_sender_can_build(void **state)
{
    (void)state;
    for (int pipe = 0; pipe < SR_PIPE_COUNT; pipe++)
        for (int mode = 0; mode < modes_of((enum sr_pipe_id)pipe); mode++) {
            const struct sr_plan *p = sr_plan_for((enum sr_pipe_id)pipe, mode);
            assert_non_null(p);
            assert_non_null(p->method);
            assert_true(p->method[0] == '/' && strchr(p->method + 1, '/') != NULL);
            if (p->call_per_group || p->unit == SR_UNIT_GROUP || p->unit == SR_UNIT_LAST)
                if (!p->group_by_key) fail_msg("%s: groups without group_by_key", p->method);
            if (p->unary && !(p->unit == SR_UNIT_CALL ||
                              (p->call_per_group &&
                               (p->unit == SR_UNIT_GROUP || p->unit == SR_UNIT_LAST))))
                fail_msg("%s: unary but more than one message per call", p->method);
            if (p->wrap && p->unit != SR_UNIT_GROUP && p->unit != SR_UNIT_CALL)
                fail_msg("%s: wraps single events", p->method);
        }
}

/* Except the satellite ALS service (OAP-only), a plan calls upstream a
 * method skyrelay itself serves on the same pipe: OAP is given what an
 * agent could have sent it directly. */
static void plans_call_a_method_the_pipe_is_fed_by(void **state)
{
    (void)state;
    for (int pipe = 0; pipe < SR_PIPE_COUNT; pipe++)
        for (int mode = 0; mode < modes_of((enum sr_pipe_id)pipe); mode++) {
            const struct sr_plan *p = sr_plan_for((enum sr_pipe_id)pipe, mode);
            const struct sr_method *m;
            if (pipe == SR_PIPE_ALS && mode == SR_ALS_SATELLITE) continue;
            m = sr_method_find(p->method, strlen(p->method));
            if (!m) fail_msg("%s: not a served method", p->method);
            assert_int_equal(m->mode, SR_MODE_ASYNC);
            assert_int_equal(m->pipe, pipe);
        }
}

int main(void)
{
    static const struct CMUnitTest invariants[] = {
        cmocka_unit_test(every_pipe_and_mode_has_exactly_one_row),
        cmocka_unit_test(pipes_without_modes_ignore_the_mode),
        cmocka_unit_test(no_plan_past_the_last_pipe),
        cmocka_unit_test(every_plan_is_one_the_sender_can_build),
        cmocka_unit_test(plans_call_a_method_the_pipe_is_fed_by),
    };
    struct CMUnitTest tests[N_ROWS];
    int failed;

    for (size_t i = 0; i < N_ROWS; i++)
        tests[i] = (struct CMUnitTest){.name = rows[i].name,
                                       .test_func = plan_row_holds,
                                       .initial_state = (void *)&rows[i]};
    failed = _cmocka_run_group_tests("plan_rows", tests, N_ROWS, NULL, NULL);
    failed += cmocka_run_group_tests_name("plan_invariants", invariants, NULL, NULL);
    return failed;
}
