/* Unit tests for src/receiver/schema.c: messages packed by protobuf-c pass,
 * every kind of corruption fails with a reason that names where it is, and
 * every async method of the method table has a schema. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envoy_als.pb-c.h"
#include "envoy_metrics.pb-c.h"
#include "logging.pb-c.h"
#include "management.pb-c.h"
#include "meter.pb-c.h"
#include "profile.pb-c.h"
#include "prometheus_metrics.pb-c.h"
#include "skyrelay/method.h"
#include "skyrelay/schema.h"
#include "tracing.pb-c.h"
#include "wellknown.pb-c.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const ProtobufCMessageDescriptor *const SEGMENT =
    &skywalking__v3__segment_object__descriptor;

/* A small byte builder for hand-written encodings. */
struct buf {
    uint8_t b[8192];
    size_t n;
};

static void put(struct buf *o, const void *p, size_t n)
{
    assert_true(o->n + n <= sizeof o->b);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_varint(struct buf *o, uint64_t v)
{
    uint8_t t[10];
    size_t k = 0;
    while (v >= 0x80) {
        t[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[k++] = (uint8_t)v;
    put(o, t, k);
}

static void put_tag(struct buf *o, uint32_t num, int wt)
{
    put_varint(o, ((uint64_t)num << 3) | (uint64_t)wt);
}

static void put_len(struct buf *o, uint32_t num, const void *p, size_t n)
{
    put_tag(o, num, 2);
    put_varint(o, n);
    put(o, p, n);
}

static void put_str(struct buf *o, uint32_t num, const char *s)
{
    put_len(o, num, s, strlen(s));
}

/* packs m into o */
static void pack(const ProtobufCMessage *m, struct buf *o)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    assert_true(n <= sizeof o->b);
    o->n = protobuf_c_message_pack(m, o->b);
    assert_int_equal(o->n, n);
}

static const char *check(const ProtobufCMessageDescriptor *d, const void *b, size_t n)
{
    const char *why = NULL;
    int r = sr_schema_check(d, b, n, &why);
    if (r == 0) return NULL;
    assert_int_equal(r, -EBADMSG);
    assert_non_null(why);
    return why;
}

#define assert_valid(d, b, n)                                                                      \
    do {                                                                                           \
        const char *why_ = check((d), (b), (n));                                                   \
        if (why_) fail_msg("refused: %s", why_);                                                   \
    } while (0)

/* refused, and the reason contains every one of the given fragments */
#define assert_refused(d, b, n, ...)                                                               \
    do {                                                                                           \
        const char *why_ = check((d), (b), (n));                                                   \
        const char *want_[] = {__VA_ARGS__};                                                       \
        if (!why_) fail_msg("accepted");                                                           \
        for (size_t i_ = 0; i_ < ARRAY_LEN(want_); i_++)                                           \
            if (!strstr(why_, want_[i_])) fail_msg("why \"%s\" lacks \"%s\"", why_, want_[i_]);    \
    } while (0)

/* ---- a full segment ---- */

/* A segment with two spans, refs, tags and logs, packed by protobuf-c. */
static void pack_segment(struct buf *o)
{
    Skywalking__V3__KeyStringValuePair kv[3] = {SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT,
                                                SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT,
                                                SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT};
    Skywalking__V3__KeyStringValuePair *tags[2] = {&kv[0], &kv[1]}, *logkv[1] = {&kv[2]};
    Skywalking__V3__Log log = SKYWALKING__V3__LOG__INIT;
    Skywalking__V3__Log *logs[1] = {&log};
    Skywalking__V3__SegmentReference ref = SKYWALKING__V3__SEGMENT_REFERENCE__INIT;
    Skywalking__V3__SegmentReference *refs[1] = {&ref};
    Skywalking__V3__SpanObject span[2] = {SKYWALKING__V3__SPAN_OBJECT__INIT,
                                          SKYWALKING__V3__SPAN_OBJECT__INIT};
    Skywalking__V3__SpanObject *spans[2] = {&span[0], &span[1]};
    Skywalking__V3__SegmentObject seg = SKYWALKING__V3__SEGMENT_OBJECT__INIT;

    kv[0].key = "http.method", kv[0].value = "GET";
    kv[1].key = "url", kv[1].value = "/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80"; /* é € 😀 */
    kv[2].key = "event", kv[2].value = "error";
    log.time = 1700000000123, log.n_data = 1, log.data = logkv;
    ref.reftype = SKYWALKING__V3__REF_TYPE__CrossThread;
    ref.traceid = "t-1", ref.parenttracesegmentid = "s-0", ref.parentspanid = 3;
    ref.parentservice = "gateway", ref.parentserviceinstance = "gw-1";
    ref.parentendpoint = "/api", ref.networkaddressusedatpeer = "10.0.0.1:8080";
    span[0].spanid = 0, span[0].parentspanid = -1, span[0].starttime = 1700000000000;
    span[0].endtime = 1700000000120, span[0].operationname = "/api/orders";
    span[0].spantype = SKYWALKING__V3__SPAN_TYPE__Entry;
    span[0].spanlayer = SKYWALKING__V3__SPAN_LAYER__Http, span[0].componentid = 1;
    span[0].n_tags = 2, span[0].tags = tags, span[0].n_refs = 1, span[0].refs = refs;
    span[0].n_logs = 1, span[0].logs = logs;
    span[1].spanid = 1, span[1].parentspanid = 0, span[1].peer = "db:5432";
    span[1].spantype = SKYWALKING__V3__SPAN_TYPE__Exit, span[1].iserror = 1;
    seg.traceid = "t-1", seg.tracesegmentid = "s-1", seg.service = "orders";
    seg.serviceinstance = "orders-1", seg.n_spans = 2, seg.spans = spans;
    pack(&seg.base, o);
}

static void segment_with_spans_refs_tags_logs_passes(void **state)
{
    struct buf o = {.n = 0};
    (void)state;
    pack_segment(&o);
    assert_true(o.n > 200);
    assert_valid(SEGMENT, o.b, o.n);
    /* and as the only element of a SegmentCollection */
    struct buf c = {.n = 0};
    put_len(&c, 1, o.b, o.n);
    put_len(&c, 1, o.b, o.n);
    assert_valid(&skywalking__v3__segment_collection__descriptor, c.b, c.n);
}

static void empty_message_passes(void **state)
{
    (void)state;
    assert_valid(SEGMENT, "", 0);
    assert_valid(&envoy__service__accesslog__v3__stream_access_logs_message__descriptor, "", 0);
}

static void every_truncation_of_a_segment_is_refused_or_a_valid_prefix(void **state)
{
    struct buf o = {.n = 0};
    (void)state;
    pack_segment(&o);
    /* a cut at a field boundary is a valid message; a cut anywhere else is not,
     * and protobuf-c agrees on each */
    for (size_t n = 0; n < o.n; n++) {
        int ours = sr_schema_check(SEGMENT, o.b, n, NULL) == 0;
        ProtobufCMessage *m = protobuf_c_message_unpack(SEGMENT, NULL, n, o.b);
        assert_int_equal(ours, m != NULL);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
    }
}

/* ---- logs, meters, ALS ---- */

static void log_with_text_and_json_body_passes(void **state)
{
    Skywalking__V3__TextLog text = SKYWALKING__V3__TEXT_LOG__INIT;
    Skywalking__V3__JSONLog json = SKYWALKING__V3__JSONLOG__INIT;
    Skywalking__V3__LogDataBody body = SKYWALKING__V3__LOG_DATA_BODY__INIT;
    Skywalking__V3__TraceContext tc = SKYWALKING__V3__TRACE_CONTEXT__INIT;
    Skywalking__V3__KeyStringValuePair kv = SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT;
    Skywalking__V3__KeyStringValuePair *kvs[1] = {&kv};
    Skywalking__V3__LogTags tags = SKYWALKING__V3__LOG_TAGS__INIT;
    Skywalking__V3__LogData log = SKYWALKING__V3__LOG_DATA__INIT;
    struct buf o = {.n = 0};
    (void)state;

    kv.key = "level", kv.value = "ERROR";
    tags.n_data = 1, tags.data = kvs;
    tc.traceid = "t-1", tc.tracesegmentid = "s-1", tc.spanid = 2;
    text.text = "connection refused";
    body.type = "text", body.content_case = SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT;
    body.text = &text;
    log.timestamp = 1700000000000, log.service = "orders", log.serviceinstance = "orders-1";
    log.endpoint = "/api", log.body = &body, log.tracecontext = &tc, log.tags = &tags;
    pack(&log.base, &o);
    assert_valid(&skywalking__v3__log_data__descriptor, o.b, o.n);

    json.json = "{\"msg\":\"d\xc3\xa9j\xc3\xa0 vu\"}";
    body.type = "json", body.content_case = SKYWALKING__V3__LOG_DATA_BODY__CONTENT_JSON;
    body.json = &json;
    pack(&log.base, &o);
    assert_valid(&skywalking__v3__log_data__descriptor, o.b, o.n);
}

static void log_body_with_invalid_utf8_is_refused_with_its_path(void **state)
{
    struct buf text = {.n = 0}, body = {.n = 0}, log = {.n = 0};
    (void)state;
    put_str(&text, 1, "bad \xc0\xaf slash");
    put_str(&body, 1, "text");
    put_len(&body, 2, text.b, text.n);
    put_str(&log, 2, "orders");
    put_len(&log, 5, body.b, body.n);
    assert_refused(&skywalking__v3__log_data__descriptor, log.b, log.n,
                   "field 5 (body): field 2 (text): field 1 (text): invalid UTF-8 (overlong");
}

static void meter_collection_passes(void **state)
{
    Skywalking__V3__Label l = SKYWALKING__V3__LABEL__INIT;
    Skywalking__V3__Label *ls[1] = {&l};
    Skywalking__V3__MeterSingleValue sv = SKYWALKING__V3__METER_SINGLE_VALUE__INIT;
    Skywalking__V3__MeterBucketValue bv[2] = {SKYWALKING__V3__METER_BUCKET_VALUE__INIT,
                                              SKYWALKING__V3__METER_BUCKET_VALUE__INIT};
    Skywalking__V3__MeterBucketValue *bvs[2] = {&bv[0], &bv[1]};
    Skywalking__V3__MeterHistogram h = SKYWALKING__V3__METER_HISTOGRAM__INIT;
    Skywalking__V3__MeterData md[2] = {SKYWALKING__V3__METER_DATA__INIT,
                                       SKYWALKING__V3__METER_DATA__INIT};
    Skywalking__V3__MeterData *mds[2] = {&md[0], &md[1]};
    Skywalking__V3__MeterDataCollection c = SKYWALKING__V3__METER_DATA_COLLECTION__INIT;
    struct buf o = {.n = 0};
    (void)state;

    l.name = "pool", l.value = "default";
    sv.name = "thread_active", sv.n_labels = 1, sv.labels = ls, sv.value = 7.5;
    bv[0].bucket = 0, bv[0].count = 3, bv[0].isnegativeinfinity = 1;
    bv[1].bucket = 10, bv[1].count = 4;
    h.name = "latency", h.n_values = 2, h.values = bvs;
    md[0].metric_case = SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE;
    md[0].singlevalue = &sv;
    md[0].service = "orders", md[0].serviceinstance = "orders-1";
    md[0].timestamp = 1700000000000;
    md[1].metric_case = SKYWALKING__V3__METER_DATA__METRIC_HISTOGRAM;
    md[1].histogram = &h;
    c.n_meterdata = 2, c.meterdata = mds;
    pack(&c.base, &o);
    assert_valid(&skywalking__v3__meter_data_collection__descriptor, o.b, o.n);
    pack(&md[1].base, &o);
    assert_valid(&skywalking__v3__meter_data__descriptor, o.b, o.n);
}

static void als_message_with_http_entries_passes(void **state)
{
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier id =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__IDENTIFIER__INIT;
    Envoy__Config__Core__V3__SocketAddress sa = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__INIT;
    Envoy__Config__Core__V3__Address addr = ENVOY__CONFIG__CORE__V3__ADDRESS__INIT;
    Skyrelay__Wellknown__Timestamp ts = SKYRELAY__WELLKNOWN__TIMESTAMP__INIT;
    Skyrelay__Wellknown__UInt32Value code = SKYRELAY__WELLKNOWN__UINT32_VALUE__INIT;
    Envoy__Data__Accesslog__V3__AccessLogCommon common =
        ENVOY__DATA__ACCESSLOG__V3__ACCESS_LOG_COMMON__INIT;
    Envoy__Data__Accesslog__V3__HTTPRequestProperties req =
        ENVOY__DATA__ACCESSLOG__V3__HTTPREQUEST_PROPERTIES__INIT;
    Envoy__Data__Accesslog__V3__HTTPResponseProperties resp =
        ENVOY__DATA__ACCESSLOG__V3__HTTPRESPONSE_PROPERTIES__INIT;
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry e[2] = {
        ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__INIT,
        ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__INIT};
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *es[2] = {&e[0], &e[1]};
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__HTTPAccessLogEntries http =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__HTTPACCESS_LOG_ENTRIES__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage m =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__INIT;
    struct buf o = {.n = 0};
    (void)state;

    node.id = "sidecar~10.0.0.7~orders-5d8f.default~default.svc.cluster.local";
    node.cluster = "orders.default";
    id.node = &node, id.log_name = "als";
    sa.address = "10.0.0.7",
    sa.port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    sa.port_value = 8080;
    addr.address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    addr.socket_address = &sa;
    ts.seconds = 1700000000, ts.nanos = 5000;
    common.sample_rate = 1.0, common.downstream_remote_address = &addr;
    common.upstream_remote_address = &addr, common.start_time = &ts;
    common.upstream_cluster = "outbound|8080||db", common.stream_id = "c0ffee";
    req.request_method = ENVOY__CONFIG__CORE__V3__REQUEST_METHOD__POST;
    req.scheme = "http", req.authority = "orders", req.path = "/api/orders";
    code.value = 201;
    resp.response_code = &code, resp.response_body_bytes = 42;
    for (int i = 0; i < 2; i++) {
        e[i].common_properties = &common;
        e[i].protocol_version =
            ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__HTTPVERSION__HTTP2;
        e[i].request = &req, e[i].response = &resp;
    }
    http.n_log_entry = 2, http.log_entry = es;
    m.identifier = &id;
    m.log_entries_case =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS;
    m.http_logs = &http;
    pack(&m.base, &o);
    static const char path[] = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";
    assert_valid(sr_schema_for_method(path, strlen(path)), o.b, o.n);
}

/* AccessLogCommon.stream_id = 26 is a string (intermediate_log_entry is 27): a
 * real Envoy sets it on every entry. */
static void als_stream_id_26_is_a_string(void **state)
{
    struct buf common = {.n = 0};
    (void)state;
    put_str(&common, 26, "4f1c2a");
    assert_valid(&envoy__data__accesslog__v3__access_log_common__descriptor, common.b, common.n);
    common.n = 0;
    put_tag(&common, 27, 0);
    put_varint(&common, 1);
    assert_valid(&envoy__data__accesslog__v3__access_log_common__descriptor, common.b, common.n);
}

/* ---- corruptions ---- */

static void nested_garbage_in_a_span_is_refused(void **state)
{
    static const uint8_t seg[] = {0x0a, 0x01, 't', 0x1a, 0x02, 0xff, 0xff};
    (void)state;
    assert_int_equal(sr_schema_check(SEGMENT, seg, sizeof seg, NULL), -EBADMSG);
    assert_refused(SEGMENT, seg, sizeof seg, "field 3 (spans): ", "truncated varint");
    /* and inside a collection, one level deeper */
    struct buf c = {.n = 0};
    put_len(&c, 1, seg, sizeof seg);
    assert_refused(&skywalking__v3__segment_collection__descriptor, c.b, c.n,
                   "field 1 (segments): field 3 (spans): ");
}

static void truncated_varint_is_refused(void **state)
{
    static const uint8_t top[] = {0x30, 0x80};              /* isSizeLimited = <cut> */
    static const uint8_t tag[] = {0x0a, 0x00, 0x80};        /* a tag cut short */
    static const uint8_t len[] = {0x0a, 0xff};              /* traceId length cut short */
    static const uint8_t span[] = {0x1a, 0x02, 0x08, 0x80}; /* spans[0].spanId cut */
    (void)state;
    assert_refused(SEGMENT, top, sizeof top, "field 6 (isSizeLimited): truncated varint");
    assert_refused(SEGMENT, tag, sizeof tag, "tag: truncated varint");
    assert_refused(SEGMENT, len, sizeof len, "field 1 (traceId): truncated varint");
    assert_refused(SEGMENT, span, sizeof span,
                   "field 3 (spans): field 1 (spanId): truncated varint");
}

static void varint_of_11_bytes_is_refused(void **state)
{
    uint8_t ten[12] = {0x30}, eleven[13] = {0x30};
    (void)state;
    memset(ten + 1, 0xff, 9);
    ten[10] = 0x01; /* 10 bytes: the most a varint has */
    assert_valid(SEGMENT, ten, 11);
    memset(eleven + 1, 0xff, 10);
    eleven[11] = 0x01;
    assert_refused(SEGMENT, eleven, 12, "field 6 (isSizeLimited): varint longer than 10 bytes");
    /* as a tag too */
    memset(eleven, 0xff, 10);
    eleven[10] = 0x01;
    assert_refused(SEGMENT, eleven, 11, "tag: varint longer than 10 bytes");
}

static void len_overrun_is_refused_at_top_and_nested_levels(void **state)
{
    static const uint8_t top[] = {0x0a, 0x05, 'a', 'b'};
    static const uint8_t span_past_message[] = {0x0a, 0x01, 't', 0x1a, 0x09, 0x08, 0x01};
    /* the span holds 3 bytes; its operationName claims 4: the bytes exist in
     * the message, but not in the span */
    static const uint8_t past_parent[] = {0x1a, 0x03, 0x32, 0x04, 'o', 'p', 'e', 'r'};
    (void)state;
    assert_refused(SEGMENT, top, sizeof top,
                   "field 1 (traceId): length beyond the end of the enclosing message");
    assert_refused(SEGMENT, span_past_message, sizeof span_past_message,
                   "field 3 (spans): length beyond the end of the enclosing message");
    assert_refused(SEGMENT, past_parent, sizeof past_parent,
                   "field 3 (spans): field 6 (operationName): length beyond");
    struct buf c = {.n = 0};
    put_len(&c, 1, past_parent, sizeof past_parent);
    assert_refused(&skywalking__v3__segment_collection__descriptor, c.b, c.n,
                   "field 1 (segments): field 3 (spans): field 6 (operationName): length beyond");
}

static void huge_length_is_refused_without_overflow(void **state)
{
    struct buf o = {.n = 0};
    (void)state;
    put_tag(&o, 1, 2);
    put_varint(&o, UINT64_MAX - 1);
    put(&o, "ab", 2);
    assert_refused(SEGMENT, o.b, o.n, "length beyond");
}

static void wrong_wire_type_for_a_known_field_is_refused(void **state)
{
    static const uint8_t str_as_varint[] = {0x08, 0x01};                 /* traceId: varint */
    static const uint8_t msg_as_i32[] = {0x1d, 0, 0, 0, 0};              /* spans: fixed32 */
    static const uint8_t int_as_len[] = {0x1a, 0x03, 0x0a, 0x01, 0x01};  /* spanId: LEN */
    static const uint8_t bool_as_i64[] = {0x31, 0, 0, 0, 0, 0, 0, 0, 0}; /* isSizeLimited */
    static const uint8_t msg_as_group[] = {0x1b, 0x1c};                  /* spans: group */
    (void)state;
    assert_refused(SEGMENT, str_as_varint, sizeof str_as_varint,
                   "field 1 (traceId): wrong wire type");
    assert_refused(SEGMENT, msg_as_i32, sizeof msg_as_i32, "field 3 (spans): wrong wire type");
    /* a non-repeated scalar does not come packed */
    assert_refused(SEGMENT, int_as_len, sizeof int_as_len,
                   "field 3 (spans): field 1 (spanId): wrong wire type");
    assert_refused(SEGMENT, bool_as_i64, sizeof bool_as_i64,
                   "field 6 (isSizeLimited): wrong wire type");
    assert_refused(SEGMENT, msg_as_group, sizeof msg_as_group, "field 3 (spans): wrong wire type");
}

static void invalid_field_numbers_and_wire_types_are_refused(void **state)
{
    static const uint8_t zero[] = {0x00, 0x01};                          /* field 0 */
    static const uint8_t wt6[] = {0x0e, 0x01};                           /* field 1, wire type 6 */
    static const uint8_t wt7[] = {0xff, 0x01, 0x01};                     /* field 31, wire type 7 */
    static const uint8_t tag33[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0x00}; /* tag 2^32 */
    static const uint8_t max[] = {0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01};   /* field 2^29-1 */
    static const uint8_t fixed32[] = {0x7d, 1, 2, 3};                    /* unknown fixed32 cut */
    static const uint8_t fixed64[] = {0x79, 1, 2, 3, 4, 5, 6, 7};        /* unknown fixed64 cut */
    (void)state;
    assert_refused(SEGMENT, zero, sizeof zero, "invalid field number");
    assert_refused(SEGMENT, wt6, sizeof wt6, "field 1: invalid wire type");
    assert_refused(SEGMENT, wt7, sizeof wt7, "invalid wire type");
    assert_refused(SEGMENT, tag33, sizeof tag33, "invalid field number");
    assert_valid(SEGMENT, max, sizeof max);
    assert_refused(SEGMENT, fixed32, sizeof fixed32, "field 15: truncated fixed32");
    assert_refused(SEGMENT, fixed64, sizeof fixed64, "field 15: truncated fixed64");
}

/* traceId = s, in a span's tag value, and in SegmentCollection > segment */
static void assert_utf8(const char *s, const char *want)
{
    struct buf seg = {.n = 0}, kv = {.n = 0}, span = {.n = 0}, wrap = {.n = 0};
    put_str(&seg, 1, s);
    if (want)
        assert_refused(SEGMENT, seg.b, seg.n, "field 1 (traceId): ", want);
    else
        assert_valid(SEGMENT, seg.b, seg.n);
    put_str(&kv, 1, "k");
    put_str(&kv, 2, s);
    put_len(&span, 12, kv.b, kv.n);
    put_len(&wrap, 3, span.b, span.n);
    if (want)
        assert_refused(SEGMENT, wrap.b, wrap.n,
                       "field 3 (spans): field 12 (tags): field 2 (value): ", want);
    else
        assert_valid(SEGMENT, wrap.b, wrap.n);
}

static void invalid_utf8_in_a_string_is_refused(void **state)
{
    (void)state;
    assert_utf8("plain ascii, long enough for the 8-byte path", NULL);
    assert_utf8("\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf", NULL);
    assert_utf8("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf", NULL); /* U+10000, U+10FFFF */
    assert_utf8("\xc0\x80", "overlong");                    /* NUL in 2 bytes */
    assert_utf8("\xc1\xbf", "overlong");
    assert_utf8("\xe0\x80\xaf", "overlong");
    assert_utf8("\xe0\x9f\xbf", "overlong");
    assert_utf8("\xf0\x80\x80\xaf", "overlong");
    assert_utf8("\xf0\x8f\xbf\xbf", "overlong");
    assert_utf8("\xed\xa0\x80", "surrogate"); /* U+D800 */
    assert_utf8("\xed\xbf\xbf", "surrogate"); /* U+DFFF */
    assert_utf8("\xf4\x90\x80\x80", "above U+10FFFF");
    assert_utf8("\xf5\x80\x80\x80", "above U+10FFFF");
    assert_utf8("\xff", "above U+10FFFF");
    assert_utf8("abc\xe2\x82", "truncated sequence"); /* € cut at the end */
    assert_utf8("\xe2\x82z", "truncated sequence");   /* € cut in the middle */
    assert_utf8("\xf0\x9f\x98", "truncated sequence");
    assert_utf8("\x80", "stray continuation byte");
    assert_utf8("12345678\xbf", "stray continuation byte");
}

/* proto2 strings (Prometheus MetricFamily.name) are bytes to every parser. */
static void proto2_strings_are_not_checked_for_utf8(void **state)
{
    struct buf o = {.n = 0};
    (void)state;
    put_str(&o, 1, "envoy_\xff\xfe");
    assert_valid(&io__prometheus__client__metric_family__descriptor, o.b, o.n);
}

/* ---- nesting ---- */

/* Value{list_value: ListValue{values: Value{...}}}: `levels` messages deep
 * counting the top-level Value (levels odd). */
static void nest_values(struct buf *o, int levels)
{
    struct buf *tmp = malloc(sizeof *tmp);
    assert_non_null(tmp);
    o->n = 0; /* the innermost Value: empty */
    for (int l = 1; l < levels; l++) {
        tmp->n = 0;
        put_len(tmp, (l % 2) ? 1 : 6, o->b, o->n); /* ListValue.values = 1, Value.list_value = 6 */
        memcpy(o->b, tmp->b, tmp->n);
        o->n = tmp->n;
    }
    free(tmp);
}

static void nesting_deeper_than_the_limit_is_refused(void **state)
{
    struct buf o;
    (void)state;
    assert_int_equal(SR_SCHEMA_MAX_DEPTH, 64);
    nest_values(&o, 63);
    assert_valid(&skyrelay__wellknown__value__descriptor, o.b, o.n);
    nest_values(&o, 65);
    assert_refused(&skyrelay__wellknown__value__descriptor, o.b, o.n,
                   "nested deeper than the limit (64)");
    /* a ListValue around 63 levels: 64 levels in all pass */
    nest_values(&o, 63);
    struct buf l = {.n = 0};
    put_len(&l, 1, o.b, o.n);
    assert_valid(&skyrelay__wellknown__list_value__descriptor, l.b, l.n);
}

static void unknown_groups_count_against_the_depth_limit(void **state)
{
    struct buf o = {.n = 0};
    (void)state;
    for (int i = 0; i < 63; i++) put_tag(&o, 9, 3);
    for (int i = 0; i < 63; i++) put_tag(&o, 9, 4);
    assert_valid(SEGMENT, o.b, o.n);
    o.n = 0;
    for (int i = 0; i < 64; i++) put_tag(&o, 9, 3);
    for (int i = 0; i < 64; i++) put_tag(&o, 9, 4);
    assert_refused(SEGMENT, o.b, o.n, "nested deeper");
}

/* ---- repeated scalars, unknown fields, groups ---- */

static void packed_and_unpacked_repeated_ints_both_pass(void **state)
{
    const ProtobufCMessageDescriptor *h = &io__prometheus__client__histogram__descriptor;
    struct buf o = {.n = 0}, p = {.n = 0};
    double d[2] = {1.5, 2.5};
    (void)state;
    /* positive_delta = 13 (sint64), positive_count = 14 (double): unpacked */
    for (int i = 0; i < 3; i++) {
        put_tag(&o, 13, 0);
        put_varint(&o, (uint64_t)i * 300);
    }
    put_tag(&o, 14, 1);
    put(&o, &d[0], 8);
    assert_valid(h, o.b, o.n);
    /* packed, and both forms in one message */
    put_varint(&p, 1);
    put_varint(&p, 300);
    put_varint(&p, UINT64_MAX);
    put_len(&o, 13, p.b, p.n);
    put_len(&o, 14, d, sizeof d);
    put_len(&o, 13, "", 0); /* an empty packed run */
    assert_valid(h, o.b, o.n);

    o.n = 0;
    put_len(&o, 13, "\x01\x80", 2);
    assert_refused(h, o.b, o.n, "field 13 (positive_delta): packed: truncated varint");
    o.n = 0;
    put_len(&o, 14, d, 12);
    assert_refused(h, o.b, o.n,
                   "field 14 (positive_count): packed fixed64 length not a multiple of 8");
    o.n = 0;
    put_tag(&o, 14, 0); /* a double as a varint */
    put_varint(&o, 1);
    assert_refused(h, o.b, o.n, "field 14 (positive_count): wrong wire type");
}

static void well_framed_unknown_fields_pass(void **state)
{
    struct buf span = {.n = 0}, seg = {.n = 0};
    uint8_t eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    (void)state;
    put_tag(&span, 1, 0);
    put_varint(&span, 5);
    put_tag(&span, 99, 0); /* unknown varint */
    put_varint(&span, UINT64_MAX);
    put_tag(&span, 100, 5); /* unknown fixed32 */
    put(&span, eight, 4);
    put_tag(&span, 101, 1); /* unknown fixed64 */
    put(&span, eight, 8);
    put_str(&span, 102, "\xff\xfe not UTF-8: unknown LEN is bytes");
    put_len(&seg, 3, span.b, span.n);
    put_len(&seg, 536870911, "x", 1);
    assert_valid(SEGMENT, seg.b, seg.n);
}

/* group 20 { 1: 5, 2: "\xff", group 21 { } } */
static void put_group(struct buf *o)
{
    put_tag(o, 20, 3);
    put_tag(o, 1, 0);
    put_varint(o, 5);
    put_str(o, 2, "\xff"); /* inside an unknown group: bytes, not checked */
    put_tag(o, 21, 3);
    put_tag(o, 21, 4);
    put_tag(o, 20, 4);
}

static void unknown_group_passes_and_unterminated_group_fails(void **state)
{
    struct buf o = {.n = 0}, span = {.n = 0};
    (void)state;
    put_str(&o, 1, "t");
    put_group(&o);
    put_str(&o, 4, "svc");
    assert_valid(SEGMENT, o.b, o.n);

    /* the same group inside a span */
    o.n = 0;
    put_group(&o);
    put_len(&span, 3, o.b, o.n);
    assert_valid(SEGMENT, span.b, span.n);

    o.n = 0;
    put_tag(&o, 20, 3);
    put_tag(&o, 1, 0);
    put_varint(&o, 5);
    assert_refused(SEGMENT, o.b, o.n, "group 20: unterminated group");

    /* a group may not run past the end of the span it starts in */
    span.n = 0;
    put_len(&span, 3, o.b, o.n);
    put_tag(&span, 20, 4);
    assert_refused(SEGMENT, span.b, span.n, "field 3 (spans): group 20: unterminated group");

    o.n = 0;
    put_tag(&o, 20, 3);
    put_tag(&o, 21, 4);
    assert_refused(SEGMENT, o.b, o.n, "group 20: field 21: end of group does not match");

    o.n = 0;
    put_tag(&o, 20, 4);
    assert_refused(SEGMENT, o.b, o.n, "field 20: end of group outside a group");
}

static void any_varint_is_accepted_for_enums_and_bools(void **state)
{
    struct buf span = {.n = 0}, seg = {.n = 0};
    (void)state;
    put_tag(&span, 8, 0); /* spanType = 77 (not a SpanType) */
    put_varint(&span, 77);
    put_tag(&span, 11, 0); /* isError = 2 */
    put_varint(&span, 2);
    put_len(&seg, 3, span.b, span.n);
    assert_valid(SEGMENT, seg.b, seg.n);
}

static void why_may_be_null(void **state)
{
    static const uint8_t bad[] = {0x0a, 0x05};
    (void)state;
    assert_int_equal(sr_schema_check(SEGMENT, bad, sizeof bad, NULL), -EBADMSG);
}

/* ---- methods ---- */

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

static void every_async_method_has_a_schema(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_methods(); i++) {
        const char *p = methods()[i].path;
        const ProtobufCMessageDescriptor *d = sr_schema_for_method(p, strlen(p));
        if (methods()[i].mode == SR_MODE_ASYNC) {
            if (!d) fail_msg("%s has no schema", p);
        } else if (d) {
            fail_msg("%s is not async but has a schema", p);
        }
    }
}

static void method_paths_map_to_what_the_client_sends(void **state)
{
    static const struct {
        const char *path;
        const ProtobufCMessageDescriptor *d;
    } cases[] = {
        {"/skywalking.v3.TraceSegmentReportService/collect",
         &skywalking__v3__segment_object__descriptor},
        {"/TraceSegmentReportService/collect", &skywalking__v3__segment_object__descriptor},
        {"/skywalking.v3.TraceSegmentReportService/collectInSync",
         &skywalking__v3__segment_collection__descriptor},
        {"/TraceSegmentReportService/collectInSync",
         &skywalking__v3__segment_collection__descriptor},
        {"/skywalking.v3.MeterReportService/collectBatch",
         &skywalking__v3__meter_data_collection__descriptor},
        {"/MeterReportService/collect", &skywalking__v3__meter_data__descriptor},
        {"/LogReportService/collect", &skywalking__v3__log_data__descriptor},
        {"/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs",
         &envoy__service__accesslog__v3__stream_access_logs_message__descriptor},
        {"/envoy.service.metrics.v2.MetricsService/StreamMetrics",
         &envoy__service__metrics__v3__stream_metrics_message__descriptor},
        {"/skywalking.v3.ManagementService/keepAlive",
         &skywalking__v3__instance_ping_pkg__descriptor},
        {"/ProfileTask/collectSnapshot", &skywalking__v3__thread_snapshot__descriptor},
    };
    static const char *const none[] = {
        "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations",
        "/skywalking.v3.ProfileTask/goProfileReport",
        "/skywalking.v3.TraceSegmentReportService/collectX",
        "/skywalking.v3.TraceSegmentReportService/collec",
        "/skywalking.v4.TraceSegmentReportService/collect",
        "TraceSegmentReportService/collect",
        "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs",
        "/",
        "",
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        assert_ptr_equal(sr_schema_for_method(cases[i].path, strlen(cases[i].path)), cases[i].d);
    for (size_t i = 0; i < ARRAY_LEN(none); i++)
        assert_null(sr_schema_for_method(none[i], strlen(none[i])));
    /* the length bounds the path: no NUL is needed */
    assert_ptr_equal(sr_schema_for_method("/LogReportService/collectXYZ", 25),
                     &skywalking__v3__log_data__descriptor);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segment_with_spans_refs_tags_logs_passes),
        cmocka_unit_test(empty_message_passes),
        cmocka_unit_test(every_truncation_of_a_segment_is_refused_or_a_valid_prefix),
        cmocka_unit_test(log_with_text_and_json_body_passes),
        cmocka_unit_test(log_body_with_invalid_utf8_is_refused_with_its_path),
        cmocka_unit_test(meter_collection_passes),
        cmocka_unit_test(als_message_with_http_entries_passes),
        cmocka_unit_test(als_stream_id_26_is_a_string),
        cmocka_unit_test(nested_garbage_in_a_span_is_refused),
        cmocka_unit_test(truncated_varint_is_refused),
        cmocka_unit_test(varint_of_11_bytes_is_refused),
        cmocka_unit_test(len_overrun_is_refused_at_top_and_nested_levels),
        cmocka_unit_test(huge_length_is_refused_without_overflow),
        cmocka_unit_test(wrong_wire_type_for_a_known_field_is_refused),
        cmocka_unit_test(invalid_field_numbers_and_wire_types_are_refused),
        cmocka_unit_test(invalid_utf8_in_a_string_is_refused),
        cmocka_unit_test(proto2_strings_are_not_checked_for_utf8),
        cmocka_unit_test(nesting_deeper_than_the_limit_is_refused),
        cmocka_unit_test(unknown_groups_count_against_the_depth_limit),
        cmocka_unit_test(packed_and_unpacked_repeated_ints_both_pass),
        cmocka_unit_test(well_framed_unknown_fields_pass),
        cmocka_unit_test(unknown_group_passes_and_unterminated_group_fails),
        cmocka_unit_test(any_varint_is_accepted_for_enums_and_bools),
        cmocka_unit_test(why_may_be_null),
        cmocka_unit_test(every_async_method_has_a_schema),
        cmocka_unit_test(method_paths_map_to_what_the_client_sends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
