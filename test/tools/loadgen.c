/* loadgen — a load generator that reports to skyrelay (or fake_oap) the way SkyWalking agents
 * and Envoy do, on the gRPC C core.
 *
 * N long-lived client streams run concurrently, spread over --threads completion queues and
 * --connections channels (each channel gets a distinct dummy arg, otherwise gRPC's global
 * subchannel pool would put them all on one TCP connection). Each stream keeps one
 * SEND_MESSAGE in flight and sets GRPC_WRITE_BUFFER_HINT on every write except every K-th
 * and the last, so chttp2 coalesces writes like a batching agent; the last message goes
 * with the half-close, then the stream waits for its status.
 *
 * Identity follows the agents: stream s is service "svc-(s%S)", instance
 * "inst-(s%S)-((s/S)%I)"; logs and meters carry it on the first message of the stream only
 * (meter-batch: on the first MeterData of each collection), Envoy ALS carries its identifier
 * on the first message only. Every item has a unique id "<prefix>-<stream>-<seq>[-<k>]" so
 * the receiver can count duplicates. The summary's "expected" block is what a correct
 * pipeline must credit, counted over the calls that ended OK.
 *
 * --rate N paces the streams: message i of stream s (0-based) is due at
 * t0 + (i*streams + s)/N seconds, so the N messages per second are spread evenly over time and
 * streams; a stream ahead of its schedule waits in its worker's list and the completion-queue
 * timeout wakes it. --poison-id ID --poison-at K gives item K of stream 0 the id ID (fake_oap
 * --fail-id refuses it), for fault-containment tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common.pb-c.h"
#include "envoy_als.pb-c.h"
#include "logging.pb-c.h"
#include "meter.pb-c.h"
#include "tracing.pb-c.h"

#include "common/tool_json.h"
#include "common/tool_map.h"
#include "common/tool_stamp.h"
#include "common/tool_util.h"

#define MAX_THREADS 16
#define MAX_STATUS 17
#define DEFAULT_DEADLINE_MS 600000 /* so that a stuck target cannot keep us forever */

enum kind {
    K_SEGMENT,
    K_SEGMENT_SYNC,
    K_SEGMENT_LEGACY,
    K_LOG,
    K_METER,
    K_METER_BATCH,
    K_ALS,
    K_ALS_V2,
};

static const struct kind_info {
    const char *name;
    const char *path;
} kinds[] = {
    [K_SEGMENT] = {"segment", "/skywalking.v3.TraceSegmentReportService/collect"},
    [K_SEGMENT_SYNC] = {"segment-sync", "/skywalking.v3.TraceSegmentReportService/collectInSync"},
    [K_SEGMENT_LEGACY] = {"segment-legacy", "/TraceSegmentReportService/collect"},
    [K_LOG] = {"log", "/skywalking.v3.LogReportService/collect"},
    [K_METER] = {"meter", "/skywalking.v3.MeterReportService/collect"},
    [K_METER_BATCH] = {"meter-batch", "/skywalking.v3.MeterReportService/collectBatch"},
    [K_ALS] = {"als", "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"},
    [K_ALS_V2] = {"als-v2", "/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs"},
};

static struct options {
    const char *target;
    enum kind kind;
    const char *method; /* overrides the kind's path */
    uint64_t streams, messages, size, services, instances, hint, batch, connections, threads;
    int64_t deadline_ms;
    uint64_t stamp_every; /* streaming kinds: every N-th message carries its send time; 0 = off */
    const char *prefix;
    const char *summary;
    const char *token;
    uint64_t rate;          /* messages per second over all streams; 0 = as fast as possible */
    const char *poison_id;  /* item poison_at (1-based) of stream 0 carries this id */
    uint64_t poison_at;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name; /* TLS (default: h2c) */
} opt = {
    .kind = (enum kind)-1,
    .size = 500,
    .services = 1,
    .instances = 1,
    .hint = 16,
    .batch = 10,
    .connections = 1,
    .threads = 1,
    .deadline_ms = DEFAULT_DEADLINE_MS,
    .prefix = "g",
};

static bool is_sw_segment(void)
{
    return opt.kind == K_SEGMENT || opt.kind == K_SEGMENT_SYNC || opt.kind == K_SEGMENT_LEGACY;
}

static bool is_als(void)
{
    return opt.kind == K_ALS || opt.kind == K_ALS_V2;
}

static bool is_batched(void)
{
    return opt.kind == K_METER_BATCH || is_als();
}

/* ---------------------------------------------------------------- messages ------------ */

static char *g_pad; /* 'x' * g_pad_cap, NUL-terminated */
static size_t g_pad_cap;
static size_t g_pad_len; /* padding per item so that an item encodes to about --size bytes */
static int64_t g_start_ms;

/* Identity of stream s. */
struct ident {
    char svc[32];
    char inst[64];
    char node[128]; /* ALS node id */
};

static void ident_of(uint64_t s, struct ident *id)
{
    uint64_t svc = s % opt.services;
    uint64_t inst = (s / opt.services) % opt.instances;
    snprintf(id->svc, sizeof(id->svc), "svc-%" PRIu64, svc);
    snprintf(id->inst, sizeof(id->inst), "inst-%" PRIu64 "-%" PRIu64, svc, inst);
    snprintf(id->node, sizeof(id->node), "%s-envoy-%" PRIu64, opt.prefix, s);
}

/* The padding: the last g_pad_len bytes of the NUL-terminated 'x' buffer. */
static char *pad_str(void)
{
    return g_pad + (g_pad_cap - g_pad_len);
}

static bool g_poison_on; /* off while size_padding() measures */

/* The unique id of an item: "<P>-<s>-<seq>", or "<P>-<s>-<seq>-<k>" when k >= 0; or
 * --poison-id when this is item number --poison-at (1-based, in sending order) of stream 0. */
static void item_id(char *buf, size_t n, uint64_t s, uint64_t seq, int64_t k, uint64_t item)
{
    if (g_poison_on && opt.poison_id && s == 0 && item == opt.poison_at)
        snprintf(buf, n, "%s", opt.poison_id);
    else if (k < 0)
        snprintf(buf, n, "%s-%" PRIu64 "-%" PRIu64, opt.prefix, s, seq);
    else
        snprintf(buf, n, "%s-%" PRIu64 "-%" PRIu64 "-%" PRIu64, opt.prefix, s, seq, (uint64_t)k);
}

/* Every builder packs the message for (stream s, message seq >= 1) into a new slice and
 * returns the number of items (segments, log records, meter data, ALS entries) in it. */

static void fill_segment(Skywalking__V3__SegmentObject *seg, Skywalking__V3__SpanObject *span,
                         Skywalking__V3__SpanObject **spans, Skywalking__V3__KeyStringValuePair *tag,
                         Skywalking__V3__KeyStringValuePair **tags, const struct ident *id,
                         char *segid, char *traceid)
{
    skywalking__v3__segment_object__init(seg);
    skywalking__v3__span_object__init(span);
    skywalking__v3__key_string_value_pair__init(tag);
    tag->key = "pad";
    tag->value = pad_str();
    tags[0] = tag;
    span->spanid = 0;
    span->parentspanid = -1;
    span->starttime = g_start_ms;
    span->endtime = g_start_ms + 1;
    span->operationname = "/loadgen/op";
    span->spantype = SKYWALKING__V3__SPAN_TYPE__Entry;
    span->spanlayer = SKYWALKING__V3__SPAN_LAYER__Http;
    span->componentid = 1;
    span->n_tags = 1;
    span->tags = tags;
    spans[0] = span;
    seg->traceid = traceid;
    seg->tracesegmentid = segid;
    seg->n_spans = 1;
    seg->spans = spans;
    seg->service = (char *)id->svc;
    seg->serviceinstance = (char *)id->inst;
}

/* --stamp-every: for message seq of a stream that is due a stamp, a copy of the padding whose
 * first bytes are the wall-clock send time (fake_oap --latency finds it); else NULL. The
 * message keeps its size. The caller frees it after packing. */
static char *stamp_pad(uint64_t seq)
{
    if (!opt.stamp_every || seq % opt.stamp_every != 0 || g_pad_len < TOOL_STAMP_LEN)
        return NULL;
    char *stamped = malloc(g_pad_len + 1);
    if (!stamped)
        abort();
    memcpy(stamped, pad_str(), g_pad_len + 1);
    tool_stamp_put(stamped, tool_wall_us());
    return stamped;
}

#define PACK_INTO_SLICE(fn, msg, out)                                                           \
    do {                                                                                        \
        size_t n_ = fn##__get_packed_size(msg);                                                 \
        *(out) = grpc_slice_malloc(n_);                                                         \
        fn##__pack(msg, GRPC_SLICE_START_PTR(*(out)));                                          \
    } while (0)

static uint64_t build_segment(uint64_t s, uint64_t seq, const struct ident *id, grpc_slice *out)
{
    Skywalking__V3__SegmentObject seg;
    Skywalking__V3__SpanObject span, *spans[1];
    Skywalking__V3__KeyStringValuePair tag, *tags[1];
    char segid[96], traceid[96];
    item_id(segid, sizeof(segid), s, seq, -1, seq);
    snprintf(traceid, sizeof(traceid), "%s-trace-%" PRIu64 "-%" PRIu64, opt.prefix, s, seq);
    fill_segment(&seg, &span, spans, &tag, tags, id, segid, traceid);
    char *stamped = stamp_pad(seq);
    if (stamped)
        tag.value = stamped;
    PACK_INTO_SLICE(skywalking__v3__segment_object, &seg, out);
    free(stamped);
    return 1;
}

/* segment-sync: call number seq carries segments [first, first + count). */
static uint64_t build_segment_collection(uint64_t s, uint64_t seq, uint64_t count,
                                         const struct ident *id, grpc_slice *out)
{
    Skywalking__V3__SegmentCollection col;
    skywalking__v3__segment_collection__init(&col);
    Skywalking__V3__SegmentObject *segs = calloc(count, sizeof(*segs));
    Skywalking__V3__SegmentObject **psegs = calloc(count, sizeof(*psegs));
    Skywalking__V3__SpanObject *spans = calloc(count, sizeof(*spans));
    Skywalking__V3__SpanObject **pspans = calloc(count, sizeof(*pspans));
    Skywalking__V3__KeyStringValuePair *tags = calloc(count, sizeof(*tags));
    Skywalking__V3__KeyStringValuePair **ptags = calloc(count, sizeof(*ptags));
    char(*segid)[96] = calloc(count, sizeof(*segid));
    char(*traceid)[96] = calloc(count, sizeof(*traceid));
    if (!segs || !psegs || !spans || !pspans || !tags || !ptags || !segid || !traceid)
        abort();
    for (uint64_t k = 0; k < count; k++) {
        item_id(segid[k], sizeof(segid[k]), s, seq, (int64_t)k, (seq - 1) * opt.batch + k + 1);
        snprintf(traceid[k], sizeof(traceid[k]), "%s-trace-%" PRIu64 "-%" PRIu64 "-%" PRIu64,
                 opt.prefix, s, seq, k);
        fill_segment(&segs[k], &spans[k], &pspans[k], &tags[k], &ptags[k], id, segid[k],
                     traceid[k]);
        psegs[k] = &segs[k];
    }
    col.n_segments = count;
    col.segments = psegs;
    PACK_INTO_SLICE(skywalking__v3__segment_collection, &col, out);
    free(segs);
    free(psegs);
    free(spans);
    free(pspans);
    free(tags);
    free(ptags);
    free(segid);
    free(traceid);
    return count;
}

static uint64_t build_log(uint64_t s, uint64_t seq, const struct ident *id, grpc_slice *out)
{
    Skywalking__V3__LogData ld;
    Skywalking__V3__LogDataBody body;
    Skywalking__V3__TextLog text;
    Skywalking__V3__LogTags tags;
    Skywalking__V3__KeyStringValuePair tag, *ptag[1];
    char logid[96];
    item_id(logid, sizeof(logid), s, seq, -1, seq);
    skywalking__v3__log_data__init(&ld);
    skywalking__v3__log_data_body__init(&body);
    skywalking__v3__text_log__init(&text);
    skywalking__v3__log_tags__init(&tags);
    skywalking__v3__key_string_value_pair__init(&tag);
    text.text = logid;
    body.type = "text";
    body.content_case = SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT;
    body.text = &text;
    tag.key = "pad";
    tag.value = pad_str();
    ptag[0] = &tag;
    tags.n_data = 1;
    tags.data = ptag;
    ld.timestamp = g_start_ms;
    if (seq == 1) { /* like the agents: identity on the first LogData of the stream only */
        ld.service = (char *)id->svc;
        ld.serviceinstance = (char *)id->inst;
    }
    ld.endpoint = "/loadgen";
    ld.body = &body;
    ld.tags = &tags;
    char *stamped = stamp_pad(seq); /* in the padding tag */
    if (stamped)
        tag.value = stamped;
    PACK_INTO_SLICE(skywalking__v3__log_data, &ld, out);
    free(stamped);
    return 1;
}

static void fill_meter(Skywalking__V3__MeterData *md, Skywalking__V3__MeterSingleValue *sv,
                       Skywalking__V3__Label *label, Skywalking__V3__Label **plabel, char *name,
                       double value, const struct ident *id, bool first)
{
    skywalking__v3__meter_data__init(md);
    skywalking__v3__meter_single_value__init(sv);
    skywalking__v3__label__init(label);
    label->name = "pad";
    label->value = pad_str();
    plabel[0] = label;
    sv->name = name;
    sv->n_labels = 1;
    sv->labels = plabel;
    sv->value = value;
    md->metric_case = SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE;
    md->singlevalue = sv;
    if (first) {
        md->service = (char *)id->svc;
        md->serviceinstance = (char *)id->inst;
        md->timestamp = g_start_ms;
    }
}

static uint64_t build_meter(uint64_t s, uint64_t seq, const struct ident *id, grpc_slice *out)
{
    Skywalking__V3__MeterData md;
    Skywalking__V3__MeterSingleValue sv;
    Skywalking__V3__Label label, *plabel[1];
    char name[96];
    item_id(name, sizeof(name), s, seq, -1, seq);
    fill_meter(&md, &sv, &label, plabel, name, (double)seq, id, seq == 1);
    char *stamped = stamp_pad(seq); /* in the padding label */
    if (stamped)
        label.value = stamped;
    PACK_INTO_SLICE(skywalking__v3__meter_data, &md, out);
    free(stamped);
    return 1;
}

static uint64_t build_meter_batch(uint64_t s, uint64_t seq, const struct ident *id,
                                  grpc_slice *out)
{
    uint64_t b = opt.batch;
    Skywalking__V3__MeterDataCollection col;
    skywalking__v3__meter_data_collection__init(&col);
    Skywalking__V3__MeterData *md = calloc(b, sizeof(*md));
    Skywalking__V3__MeterData **pmd = calloc(b, sizeof(*pmd));
    Skywalking__V3__MeterSingleValue *sv = calloc(b, sizeof(*sv));
    Skywalking__V3__Label *label = calloc(b, sizeof(*label));
    Skywalking__V3__Label **plabel = calloc(b, sizeof(*plabel));
    char(*name)[96] = calloc(b, sizeof(*name));
    if (!md || !pmd || !sv || !label || !plabel || !name)
        abort();
    for (uint64_t k = 0; k < b; k++) {
        item_id(name[k], sizeof(name[k]), s, seq, (int64_t)k, (seq - 1) * b + k + 1);
        fill_meter(&md[k], &sv[k], &label[k], &plabel[k], name[k], (double)k, id, k == 0);
        pmd[k] = &md[k];
    }
    col.n_meterdata = b;
    col.meterdata = pmd;
    char *stamped = stamp_pad(seq); /* in the padding label of the collection's first MeterData */
    if (stamped)
        label[0].value = stamped;
    PACK_INTO_SLICE(skywalking__v3__meter_data_collection, &col, out);
    free(stamped);
    free(md);
    free(pmd);
    free(sv);
    free(label);
    free(plabel);
    free(name);
    return b;
}

static uint64_t build_als(uint64_t s, uint64_t seq, const struct ident *id, grpc_slice *out)
{
    uint64_t b = opt.batch;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage m;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier ident;
    Envoy__Config__Core__V3__Node node;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__HTTPAccessLogEntries http;
    envoy__service__accesslog__v3__stream_access_logs_message__init(&m);
    envoy__service__accesslog__v3__stream_access_logs_message__identifier__init(&ident);
    envoy__config__core__v3__node__init(&node);
    envoy__service__accesslog__v3__stream_access_logs_message__httpaccess_log_entries__init(&http);
    if (seq == 1) { /* like Envoy: the identifier only in the first message of the stream */
        node.id = (char *)id->node;
        node.cluster = (char *)id->svc;
        node.user_agent_name = "envoy";
        ident.node = &node;
        ident.log_name = "als";
        m.identifier = &ident;
    }
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *e = calloc(b, sizeof(*e));
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry **pe = calloc(b, sizeof(*pe));
    Envoy__Data__Accesslog__V3__AccessLogCommon *common = calloc(b, sizeof(*common));
    Envoy__Data__Accesslog__V3__HTTPRequestProperties *req = calloc(b, sizeof(*req));
    Envoy__Data__Accesslog__V3__HTTPResponseProperties *resp = calloc(b, sizeof(*resp));
    char(*rid)[96] = calloc(b, sizeof(*rid));
    if (!e || !pe || !common || !req || !resp || !rid)
        abort();
    for (uint64_t k = 0; k < b; k++) {
        envoy__data__accesslog__v3__httpaccess_log_entry__init(&e[k]);
        envoy__data__accesslog__v3__access_log_common__init(&common[k]);
        envoy__data__accesslog__v3__httprequest_properties__init(&req[k]);
        envoy__data__accesslog__v3__httpresponse_properties__init(&resp[k]);
        item_id(rid[k], sizeof(rid[k]), s, seq, (int64_t)k, (seq - 1) * b + k + 1);
        common[k].sample_rate = 1.0;
        common[k].upstream_cluster = (char *)id->svc;
        common[k].route_name = "loadgen";
        req[k].request_method = ENVOY__CONFIG__CORE__V3__REQUEST_METHOD__GET;
        req[k].scheme = "http";
        req[k].authority = (char *)id->svc;
        req[k].path = "/loadgen";
        req[k].user_agent = pad_str();
        req[k].request_id = rid[k];
        resp[k].response_body_bytes = 100;
        resp[k].response_code_details = "via_upstream";
        e[k].common_properties = &common[k];
        e[k].protocol_version = ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__HTTPVERSION__HTTP11;
        e[k].request = &req[k];
        e[k].response = &resp[k];
        pe[k] = &e[k];
    }
    http.n_log_entry = b;
    http.log_entry = pe;
    m.log_entries_case =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS;
    m.http_logs = &http;
    char *stamped = stamp_pad(seq); /* in the padding user_agent of the message's first entry */
    if (stamped)
        req[0].user_agent = stamped;
    PACK_INTO_SLICE(envoy__service__accesslog__v3__stream_access_logs_message, &m, out);
    free(stamped);
    free(e);
    free(pe);
    free(common);
    free(req);
    free(resp);
    free(rid);
    return b;
}

/* Message seq (1-based) of stream s; for segment-sync, count = segments in this call. */
static uint64_t build_message(uint64_t s, uint64_t seq, uint64_t count, const struct ident *id,
                              grpc_slice *out)
{
    switch (opt.kind) {
    case K_SEGMENT:
    case K_SEGMENT_LEGACY: return build_segment(s, seq, id, out);
    case K_SEGMENT_SYNC: return build_segment_collection(s, seq, count, id, out);
    case K_LOG: return build_log(s, seq, id, out);
    case K_METER: return build_meter(s, seq, id, out);
    case K_METER_BATCH: return build_meter_batch(s, seq, id, out);
    case K_ALS:
    case K_ALS_V2: return build_als(s, seq, id, out);
    }
    return 0;
}

/* Chooses the padding so that one item encodes to about --size bytes: measure an item of
 * the largest stream/seq numbers without padding, subtract. */
static void size_padding(void)
{
    g_pad_cap = opt.size + 16;
    g_pad = malloc(g_pad_cap + 1);
    if (!g_pad)
        abort();
    memset(g_pad, 'x', g_pad_cap);
    g_pad[g_pad_cap] = '\0';
    g_pad_len = 0;
    struct ident id;
    ident_of(opt.streams - 1, &id);
    uint64_t saved = opt.batch;
    opt.batch = 1;
    grpc_slice s;
    uint64_t seq = opt.messages > 1 ? opt.messages : 2; /* seq 1 carries identity: measure a later one */
    build_message(opt.streams - 1, seq, 1, &id, &s);
    size_t base = GRPC_SLICE_LENGTH(s);
    grpc_slice_unref(s);
    opt.batch = saved;
    /* the padding's length prefix grows by up to 2 bytes (varint) with the padding */
    size_t overhead = opt.size >= 128 ? (opt.size >= 16384 ? 2 : 1) : 0;
    g_pad_len = opt.size > base + overhead ? opt.size - base - overhead : 0;
    if (g_pad_len > g_pad_cap)
        g_pad_len = g_pad_cap;
}

/* ---------------------------------------------------------------- streams ------------- */

enum tag_type { TAG_SEND, TAG_STATUS };

struct tag {
    enum tag_type type;
};

struct lworker;

#define MAX_ERRORS 64 /* failed calls listed in the summary's "errors", per worker thread */

/* One failed call, for the summary: which stream, its status, after how many messages. */
struct stream_error {
    uint64_t stream;
    int status;
    uint64_t messages; /* messages (sync: segments) this call had sent */
    char *details;
};

struct stream {
    struct tag t_send, t_status;
    struct lworker *w;
    uint64_t s;
    struct ident id;
    grpc_channel *channel;
    grpc_call *call;
    uint64_t seq;            /* messages (streaming) or segments (sync) started so far */
    uint64_t call_entries;   /* items sent on the current call */
    uint64_t send_entries;   /* items in the SEND_MESSAGE in flight */
    uint64_t call_messages;  /* messages sent on the current call */
    uint64_t items_sent;     /* items of this stream sent (sync: in calls that ended OK) */
    bool call_send_failed;
    bool done;
    bool waiting;            /* --rate: ahead of schedule, in its worker's waiting list */
    size_t wait_idx;
    int64_t due_us;
    grpc_byte_buffer *send_buf;
    grpc_metadata md[1];
    grpc_metadata_array recv_initial_md, trailing_md;
    grpc_byte_buffer *resp;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
};

struct lworker {
    int idx;
    pthread_t thread;
    grpc_completion_queue *cq;
    uint64_t live;
    double end_s;
    /* results */
    uint64_t sent_messages, sent_entries, calls_ok, calls_failed;
    uint64_t status[MAX_STATUS + 1]; /* [MAX_STATUS] = other codes */
    char *first_error;
    struct tool_map by_service, by_key;
    struct stream_error *errors; /* failed calls, in order, at most MAX_ERRORS per worker */
    size_t nerrors;
    struct stream **waiting;     /* --rate: streams ahead of schedule */
    size_t nwaiting, capwaiting;
};

static grpc_channel **g_channels;
static struct lworker g_workers[MAX_THREADS];
static grpc_slice g_method;
static struct stream *g_streams;

static grpc_op *op_send_initial_md(grpc_op *op, struct stream *st)
{
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    if (opt.token) {
        st->md[0].key = grpc_slice_from_static_string("authentication");
        st->md[0].value = grpc_slice_from_static_string(opt.token);
        op->data.send_initial_metadata.count = 1;
        op->data.send_initial_metadata.metadata = st->md;
    }
    return op + 1;
}

static grpc_op *op_recv_status(grpc_op *op, struct stream *st)
{
    memset(op, 0, 3 * sizeof(*op));
    op[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    op[0].data.recv_initial_metadata.recv_initial_metadata = &st->recv_initial_md;
    op[1].op = GRPC_OP_RECV_MESSAGE;
    op[1].data.recv_message.recv_message = &st->resp;
    op[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op[2].data.recv_status_on_client.trailing_metadata = &st->trailing_md;
    op[2].data.recv_status_on_client.status = &st->status;
    op[2].data.recv_status_on_client.status_details = &st->details;
    op[2].data.recv_status_on_client.error_string = &st->error_string;
    return op + 3;
}

static void start_batch(struct stream *st, const grpc_op *ops, size_t n, struct tag *tag)
{
    grpc_call_error err = grpc_call_start_batch(st->call, ops, n, tag, NULL);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "loadgen: start_batch: %s\n", grpc_call_error_to_string(err));
        abort(); /* a programming error: never expected */
    }
}

static void new_call(struct stream *st)
{
    gpr_timespec deadline = tool_deadline_ms(opt.deadline_ms > 0 ? opt.deadline_ms : -1);
    st->call = grpc_channel_create_call(st->channel, NULL, GRPC_PROPAGATE_DEFAULTS, st->w->cq,
                                        g_method, NULL, deadline, NULL);
    st->call_entries = 0;
    st->call_messages = 0;
    st->call_send_failed = false;
    grpc_metadata_array_init(&st->recv_initial_md);
    grpc_metadata_array_init(&st->trailing_md);
    st->resp = NULL;
    st->details = grpc_empty_slice();
    st->error_string = NULL;
}

/* ---- --rate pacing ---- */

static int64_t g_t0_us; /* the schedule's origin */

static int64_t now_us(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* When message (segment-sync: segment) number idx (0-based) of the stream is due. */
static int64_t due_us(const struct stream *st, uint64_t idx)
{
    return g_t0_us + (int64_t)(((double)idx * (double)opt.streams + (double)st->s) * 1e6 /
                               (double)opt.rate);
}

/* With --rate: true if the stream's next message (segment-sync: next call) is not due yet;
 * the stream then waits in its worker's list until it is (fire_due). */
static bool pace_wait(struct stream *st)
{
    if (!opt.rate)
        return false;
    int64_t due = due_us(st, st->seq);
    if (due <= now_us())
        return false;
    struct lworker *w = st->w;
    if (w->nwaiting == w->capwaiting) {
        w->capwaiting = w->capwaiting ? w->capwaiting * 2 : 16;
        struct stream **n = realloc(w->waiting, w->capwaiting * sizeof(*n));
        if (!n)
            abort();
        w->waiting = n;
    }
    st->due_us = due;
    st->waiting = true;
    st->wait_idx = w->nwaiting;
    w->waiting[w->nwaiting++] = st;
    return true;
}

static void pace_remove(struct stream *st)
{
    if (!st->waiting)
        return;
    struct lworker *w = st->w;
    struct stream *last = w->waiting[--w->nwaiting];
    w->waiting[st->wait_idx] = last;
    last->wait_idx = st->wait_idx;
    st->waiting = false;
}

/* The completion-queue deadline: the earliest due time of a waiting stream, or never. */
static gpr_timespec pace_deadline(const struct lworker *w)
{
    if (!w->nwaiting)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    int64_t next = w->waiting[0]->due_us;
    for (size_t i = 1; i < w->nwaiting; i++)
        if (w->waiting[i]->due_us < next)
            next = w->waiting[i]->due_us;
    int64_t d = next - now_us();
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_micros(d > 0 ? d : 0, GPR_TIMESPAN));
}

static void send_next(struct stream *st);
static void start_sync_call(struct stream *st);

/* Starts every waiting stream whose next message is due. */
static void fire_due(struct lworker *w)
{
    int64_t now = now_us();
    for (size_t i = 0; i < w->nwaiting;) {
        struct stream *st = w->waiting[i];
        if (st->due_us > now) {
            i++;
            continue;
        }
        pace_remove(st); /* moves the last one to i */
        if (opt.kind == K_SEGMENT_SYNC)
            start_sync_call(st);
        else
            send_next(st);
    }
}

/* Streaming kinds: the next SEND_MESSAGE (with the initial metadata on the first one and the
 * half-close on the last one). */
static void send_next(struct stream *st)
{
    grpc_op ops[3], *op = ops;
    st->seq++;
    if (st->seq == 1)
        op = op_send_initial_md(op, st);
    grpc_slice payload;
    st->send_entries = build_message(st->s, st->seq, 1, &st->id, &payload);
    st->send_buf = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);
    bool last = st->seq == opt.messages;
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = st->send_buf;
    /* with --rate, coalesce only when the next message is already due (catching up) */
    if (opt.hint > 1 && st->seq % opt.hint != 0 && !last &&
        (!opt.rate || due_us(st, st->seq) <= now_us()))
        op->flags = GRPC_WRITE_BUFFER_HINT;
    op++;
    if (last) {
        memset(op, 0, sizeof(*op));
        op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        op++;
    }
    start_batch(st, ops, (size_t)(op - ops), &st->t_send);
}

/* segment-sync: one unary call with the next --batch segments. */
static void start_sync_call(struct stream *st)
{
    new_call(st);
    uint64_t count = opt.messages - st->seq < opt.batch ? opt.messages - st->seq : opt.batch;
    uint64_t callno = st->seq / opt.batch + 1;
    grpc_slice payload;
    st->call_entries = build_message(st->s, callno, count, &st->id, &payload);
    st->call_messages = 1;
    st->seq += count;
    st->send_buf = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);
    grpc_op ops[6], *op = ops;
    op = op_send_initial_md(op, st);
    memset(op, 0, 2 * sizeof(*op));
    op[0].op = GRPC_OP_SEND_MESSAGE;
    op[0].data.send_message.send_message = st->send_buf;
    op[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op += 2;
    op = op_recv_status(op, st);
    start_batch(st, ops, (size_t)(op - ops), &st->t_status);
}

static void start_stream(struct stream *st)
{
    st->w->live++;
    if (opt.kind == K_SEGMENT_SYNC) {
        if (!pace_wait(st))
            start_sync_call(st);
        return;
    }
    new_call(st);
    grpc_op ops[3];
    op_recv_status(ops, st);
    start_batch(st, ops, 3, &st->t_status);
    if (!pace_wait(st))
        send_next(st);
}

static void on_send(struct stream *st, bool ok)
{
    grpc_byte_buffer_destroy(st->send_buf);
    st->send_buf = NULL;
    if (!ok || st->done) {
        st->call_send_failed = true; /* the status tells (or told) why */
        return;
    }
    struct lworker *w = st->w;
    w->sent_messages++;
    w->sent_entries += st->send_entries;
    st->items_sent += st->send_entries;
    st->call_messages++;
    st->call_entries += st->send_entries;
    if (st->seq < opt.messages && !pace_wait(st))
        send_next(st);
}

static void credit_expected(struct stream *st)
{
    struct lworker *w = st->w;
    if (is_als()) {
        tool_map_add(&w->by_key, st->id.node, strlen(st->id.node), st->call_entries);
        return;
    }
    char key[sizeof(st->id.svc) + sizeof(st->id.inst) + 1];
    int n = snprintf(key, sizeof(key), "%s|%s", st->id.svc, st->id.inst);
    tool_map_add(&w->by_key, key, (size_t)n, st->call_entries);
    if (is_sw_segment())
        tool_map_add(&w->by_service, st->id.svc, strlen(st->id.svc), st->call_entries);
}

static void on_status(struct stream *st)
{
    struct lworker *w = st->w;
    if (opt.kind == K_SEGMENT_SYNC && st->status == GRPC_STATUS_OK) {
        /* one batch carries the whole unary call: it counts as sent once it succeeded */
        w->sent_messages++;
        w->sent_entries += st->call_entries;
        st->items_sent += st->call_entries;
    }
    if (st->status == GRPC_STATUS_OK) {
        w->calls_ok++;
        credit_expected(st);
    } else {
        w->calls_failed++;
        w->status[st->status >= 0 && st->status < MAX_STATUS ? st->status : MAX_STATUS]++;
        if (!w->first_error) {
            /* the status details; gRPC's verbose error string only when they are empty */
            char *d = grpc_slice_to_c_string(st->details);
            const char *why = *d || !st->error_string ? d : st->error_string;
            size_t len = strlen(why) + 64;
            w->first_error = malloc(len);
            if (w->first_error)
                snprintf(w->first_error, len, "%d %s: %s", st->status,
                         tool_status_name(st->status), why);
            gpr_free(d);
        }
        if (w->nerrors < MAX_ERRORS) {
            if (!w->errors && !(w->errors = calloc(MAX_ERRORS, sizeof(*w->errors))))
                abort();
            struct stream_error *e = &w->errors[w->nerrors++];
            e->stream = st->s;
            e->status = st->status;
            e->messages = opt.kind == K_SEGMENT_SYNC ? st->call_entries : st->call_messages;
            char *d = grpc_slice_to_c_string(st->details);
            e->details = strdup(*d || !st->error_string ? d : st->error_string);
            gpr_free(d);
        }
    }
    if (st->resp)
        grpc_byte_buffer_destroy(st->resp);
    st->resp = NULL;
    grpc_slice_unref(st->details);
    if (st->error_string)
        gpr_free((void *)st->error_string);
    grpc_metadata_array_destroy(&st->recv_initial_md);
    grpc_metadata_array_destroy(&st->trailing_md);
    grpc_call_unref(st->call);
    st->call = NULL;
    if (opt.kind == K_SEGMENT_SYNC) {
        grpc_byte_buffer_destroy(st->send_buf);
        st->send_buf = NULL;
        if (st->status == GRPC_STATUS_OK && st->seq < opt.messages) {
            if (!pace_wait(st))
                start_sync_call(st);
            return;
        }
    }
    pace_remove(st); /* a stream cut while it waited for its next message */
    /* a streaming call's send batch may still complete after its status (a call the server
     * ended early): on_send or the drain below frees its buffer */
    st->done = true;
    w->live--;
    w->end_s = tool_now_s();
}

/* Each worker starts its own streams (s % threads == idx) and then drives them: every
 * stream is touched by one thread only. */
static void *worker_main(void *arg)
{
    struct lworker *w = arg;
    for (uint64_t s = (uint64_t)w->idx; s < opt.streams; s += opt.threads)
        start_stream(&g_streams[s]);
    while (w->live > 0) {
        grpc_event ev = grpc_completion_queue_next(w->cq, pace_deadline(w), NULL);
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            if (t->type == TAG_SEND)
                on_send((struct stream *)((char *)t - offsetof(struct stream, t_send)),
                        ev.success);
            else
                on_status((struct stream *)((char *)t - offsetof(struct stream, t_status)));
        } else if (ev.type != GRPC_QUEUE_TIMEOUT) {
            break;
        }
        if (w->nwaiting)
            fire_due(w);
    }
    grpc_completion_queue_shutdown(w->cq);
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        struct tag *t = ev.tag;
        if (ev.type == GRPC_OP_COMPLETE && t->type == TAG_SEND) {
            /* a send that completed after its call's status */
            struct stream *st = (struct stream *)((char *)t - offsetof(struct stream, t_send));
            grpc_byte_buffer_destroy(st->send_buf);
            st->send_buf = NULL;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- main ---------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --target HOST:PORT --kind KIND --streams N --messages M\n"
            "               [--size BYTES] [--services S] [--instances I] [--hint K] [--stamp-every N]\n"
            "               [--batch B] [--id-prefix P] [--connections C] [--threads T]\n"
            "               [--summary FILE] [--deadline-ms MS] [--token T] [--method PATH]\n"
            "               [--rate N] [--poison-id ID --poison-at K]\n"
            "               [--tls-ca PEM [--tls-cert PEM --tls-key PEM] [--tls-server-name N]]\n"
            "KIND: segment segment-sync segment-legacy log meter meter-batch als als-v2\n"
            "  --streams       concurrent client streams\n"
            "  --messages      messages per stream (segment-sync: segments per stream)\n"
            "  --size          approximate encoded size of one item (default 500)\n"
            "  --services      services S (stream s is svc-(s%%S)) (default 1)\n"
            "  --instances     instances per service I (inst-(s%%S)-((s/S)%%I)) (default 1)\n"
            "  --hint          un-hinted write every K messages; 1 disables hinting (default 16)\n"
            "  --stamp-every   every N-th message of a stream carries its send time in its padding\n"
            "                  (batched kinds: the first item's), for fake_oap --latency; all kinds\n"
            "                  but segment-sync (default 0 = off)\n"
            "  --batch         items per message for segment-sync, meter-batch, als (default 10)\n"
            "  --id-prefix     prefix of the unique ids (default g)\n"
            "  --connections   channels/TCP connections the streams are spread over (default 1)\n"
            "  --threads       completion-queue threads (default 1)\n"
            "  --summary       write the JSON summary to this file too\n"
            "  --deadline-ms   per-call deadline; 0 = none (default 600000)\n"
            "  --token         send metadata 'authentication: T'\n"
            "  --method        send to this path instead of the kind's\n"
            "  --rate          messages per second over all streams (segment-sync: segments),\n"
            "                  paced evenly; 0 = as fast as possible (default 0)\n"
            "  --poison-id     id given to item --poison-at (1-based) of stream 0 instead of its\n"
            "                  normal id (fake_oap --fail-id refuses it)\n"
            "  --tls-ca        connect with TLS, verifying the server against these CAs (PEM)\n"
            "  --tls-cert, --tls-key  with TLS: present this client certificate and key (PEM)\n"
            "  --tls-server-name  with TLS: the name checked in the server's certificate\n"
            "                  instead of the target's host\n"
            "Exit status 0 if every call ended OK, 1 otherwise, 2 on bad usage.\n");
}

static const struct num_flag {
    const char *flag;
    uint64_t *field;
    uint64_t min, max;
} num_flags[] = {
    {"--streams", &opt.streams, 1, 1000000},
    {"--messages", &opt.messages, 1, UINT64_MAX / 2},
    {"--size", &opt.size, 0, 64u << 20},
    {"--services", &opt.services, 1, 1000000},
    {"--instances", &opt.instances, 1, 1000000},
    {"--hint", &opt.hint, 1, 1000000},
    {"--stamp-every", &opt.stamp_every, 0, 1000000},
    {"--batch", &opt.batch, 1, 1000000},
    {"--connections", &opt.connections, 1, 10000},
    {"--threads", &opt.threads, 1, MAX_THREADS},
    {"--rate", &opt.rate, 0, 100000000},
    {"--poison-at", &opt.poison_at, 1, UINT64_MAX / 2},
};

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "loadgen: %s needs a value\n", a);
            return -1;
        }
        i++;
        bool bad = false, known = true;
        uint64_t n;
        if (strcmp(a, "--target") == 0)
            opt.target = v;
        else if (strcmp(a, "--id-prefix") == 0)
            opt.prefix = v;
        else if (strcmp(a, "--summary") == 0)
            opt.summary = v;
        else if (strcmp(a, "--token") == 0)
            opt.token = v;
        else if (strcmp(a, "--method") == 0)
            opt.method = v;
        else if (strcmp(a, "--tls-ca") == 0)
            opt.tls_ca = v;
        else if (strcmp(a, "--tls-cert") == 0)
            opt.tls_cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            opt.tls_key = v;
        else if (strcmp(a, "--tls-server-name") == 0)
            opt.tls_server_name = v;
        else if (strcmp(a, "--poison-id") == 0) {
            bad = !*v || strlen(v) > 80; /* ids live in 96-byte buffers */
            opt.poison_id = v;
        }
        else if (strcmp(a, "--deadline-ms") == 0) {
            bad = tool_parse_u64(v, 0, INT64_MAX / 2, &n) != 0;
            opt.deadline_ms = (int64_t)n;
        } else if (strcmp(a, "--kind") == 0) {
            bad = true;
            for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
                if (strcmp(v, kinds[k].name) == 0) {
                    opt.kind = (enum kind)k;
                    bad = false;
                }
        } else {
            known = false;
            for (size_t k = 0; k < sizeof(num_flags) / sizeof(num_flags[0]); k++)
                if (strcmp(a, num_flags[k].flag) == 0) {
                    known = true;
                    bad = tool_parse_u64(v, num_flags[k].min, num_flags[k].max,
                                         num_flags[k].field) != 0;
                }
        }
        if (bad || !known) {
            fprintf(stderr, "loadgen: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!opt.target || (int)opt.kind < 0 || !opt.streams || !opt.messages) {
        fprintf(stderr, "loadgen: --target, --kind, --streams and --messages are required\n");
        return -1;
    }
    if (!opt.tls_cert != !opt.tls_key || ((opt.tls_cert || opt.tls_server_name) && !opt.tls_ca)) {
        fprintf(stderr, "loadgen: --tls-cert and --tls-key go together, and need --tls-ca\n");
        return -1;
    }
    if (!opt.poison_id != !opt.poison_at) {
        fprintf(stderr, "loadgen: --poison-id and --poison-at go together\n");
        return -1;
    }
    if (opt.threads > opt.streams)
        opt.threads = opt.streams;
    if (opt.connections > opt.streams)
        opt.connections = opt.streams;
    return 0;
}

static void summary_json(struct tool_json *j, double seconds)
{
    uint64_t sent_messages = 0, sent_entries = 0, ok = 0, failed = 0;
    uint64_t status[MAX_STATUS + 1] = {0};
    const char *first_error = NULL;
    struct tool_map by_service, by_key;
    tool_map_init(&by_service);
    tool_map_init(&by_key);
    for (uint64_t i = 0; i < opt.threads; i++) {
        struct lworker *w = &g_workers[i];
        sent_messages += w->sent_messages;
        sent_entries += w->sent_entries;
        ok += w->calls_ok;
        failed += w->calls_failed;
        for (int k = 0; k <= MAX_STATUS; k++)
            status[k] += w->status[k];
        if (!first_error)
            first_error = w->first_error;
        tool_map_merge(&by_service, &w->by_service);
        tool_map_merge(&by_key, &w->by_key);
    }
    tool_json_obj_open(j, NULL);
    tool_json_str_member(j, "kind", kinds[opt.kind].name);
    tool_json_str_member(j, "target", opt.target);
    tool_json_str_member(j, "method", opt.method ? opt.method : kinds[opt.kind].path);
    tool_json_u64(j, "streams", opt.streams);
    tool_json_u64(j, "messages_per_stream", opt.messages);
    tool_json_u64(j, "sent_messages", sent_messages);
    tool_json_u64(j, "sent_entries", sent_entries);
    tool_json_u64(j, "calls_ok", ok);
    tool_json_u64(j, "calls_failed", failed);
    tool_json_obj_open(j, "status");
    for (int k = 0; k <= MAX_STATUS; k++) {
        if (!status[k])
            continue;
        char key[16];
        snprintf(key, sizeof(key), k < MAX_STATUS ? "%d" : "other", k);
        tool_json_u64(j, key, status[k]);
    }
    tool_json_obj_close(j);
    if (first_error)
        tool_json_str_member(j, "first_error", first_error);
    /* every failed call (up to MAX_ERRORS per thread), by stream */
    tool_json_arr_open(j, "errors");
    for (uint64_t s = 0; s < opt.streams; s++) {
        struct lworker *w = &g_workers[s % opt.threads];
        for (size_t k = 0; k < w->nerrors; k++) {
            const struct stream_error *e = &w->errors[k];
            if (e->stream != s)
                continue;
            tool_json_obj_open(j, NULL);
            tool_json_u64(j, "stream", e->stream);
            tool_json_i64(j, "code", e->status);
            tool_json_str_member(j, "status", tool_status_name(e->status));
            tool_json_u64(j, "messages", e->messages);
            tool_json_str_member(j, "details", e->details ? e->details : "");
            tool_json_obj_close(j);
        }
    }
    tool_json_arr_close(j);
    if (opt.rate)
        tool_json_u64(j, "target_rate", opt.rate);
    if (opt.poison_id) {
        tool_json_obj_open(j, "poison");
        tool_json_str_member(j, "id", opt.poison_id);
        tool_json_u64(j, "at", opt.poison_at);
        tool_json_bool(j, "sent", g_streams[0].items_sent >= opt.poison_at);
        tool_json_obj_close(j);
    }
    tool_json_double(j, "seconds", seconds, 3);
    tool_json_double(j, "rate", seconds > 0 ? (double)sent_messages / seconds : 0, 0);
    tool_json_double(j, "entry_rate", seconds > 0 ? (double)sent_entries / seconds : 0, 0);
    tool_json_obj_open(j, "expected");
    tool_json_u64(j, "total", tool_map_sum(&by_key));
    if (is_sw_segment())
        tool_map_to_json(&by_service, j, "by_service");
    tool_map_to_json(&by_key, j, is_als() ? "by_identifier" : "by_instance");
    tool_json_obj_close(j);
    tool_json_obj_close(j);
    tool_map_deinit(&by_service);
    tool_map_deinit(&by_key);
}

/* h2c, or TLS with --tls-ca (and a client certificate with --tls-cert/--tls-key). */
static grpc_channel_credentials *channel_credentials(void)
{
    grpc_channel_credentials *creds;
    grpc_ssl_pem_key_cert_pair pair;
    char *ca, *cert = NULL, *key = NULL;

    if (!opt.tls_ca)
        return grpc_insecure_credentials_create();
    ca = tool_read_file("loadgen", opt.tls_ca);
    if (opt.tls_cert) {
        cert = tool_read_file("loadgen", opt.tls_cert);
        key = tool_read_file("loadgen", opt.tls_key);
    }
    if (!ca || (opt.tls_cert && (!cert || !key))) {
        free(ca);
        free(cert);
        free(key);
        return NULL;
    }
    pair.private_key = key;
    pair.cert_chain = cert;
    creds = grpc_ssl_credentials_create_ex(ca, cert ? &pair : NULL, NULL, NULL);
    free(ca);
    free(cert);
    free(key);
    return creds;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    if (!is_batched() && opt.kind != K_SEGMENT_SYNC)
        opt.batch = 1;
    signal(SIGPIPE, SIG_IGN); /* SIGINT/SIGTERM keep their default: stop at once */
    g_start_ms = (int64_t)time(NULL) * 1000;
    size_padding();
    g_poison_on = true;

    grpc_init();
    g_method = grpc_slice_from_static_string(opt.method ? opt.method : kinds[opt.kind].path);
    grpc_channel_credentials *creds = channel_credentials();
    if (!creds)
        return 2;
    g_channels = calloc(opt.connections, sizeof(*g_channels));
    for (uint64_t i = 0; i < opt.connections; i++) {
        /* a distinct arg per channel: separate subchannels, hence separate TCP connections */
        grpc_arg args[2];
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = "skyrelay.loadgen.connection";
        args[0].value.integer = (int)i;
        args[1].type = GRPC_ARG_STRING;
        args[1].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[1].value.string = (char *)opt.tls_server_name;
        grpc_channel_args chargs = {opt.tls_server_name ? 2 : 1, args};
        g_channels[i] = grpc_channel_create(opt.target, creds, &chargs);
    }
    grpc_channel_credentials_release(creds);

    struct stream *streams = calloc(opt.streams, sizeof(*streams));
    if (!g_channels || !streams)
        abort();
    for (uint64_t i = 0; i < opt.threads; i++) {
        struct lworker *w = &g_workers[i];
        w->idx = (int)i;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        tool_map_init(&w->by_service);
        tool_map_init(&w->by_key);
    }
    double t0 = tool_now_s();
    for (uint64_t s = 0; s < opt.streams; s++) {
        struct stream *st = &streams[s];
        st->t_send.type = TAG_SEND;
        st->t_status.type = TAG_STATUS;
        st->s = s;
        st->w = &g_workers[s % opt.threads];
        st->channel = g_channels[s % opt.connections];
        ident_of(s, &st->id);
    }
    g_streams = streams;
    g_t0_us = now_us();
    for (uint64_t i = 0; i < opt.threads; i++)
        pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]);
    for (uint64_t i = 0; i < opt.threads; i++)
        pthread_join(g_workers[i].thread, NULL);
    double t1 = t0;
    for (uint64_t i = 0; i < opt.threads; i++)
        if (g_workers[i].end_s > t1)
            t1 = g_workers[i].end_s;

    struct tool_json j;
    tool_json_init(&j);
    summary_json(&j, t1 - t0);
    printf("%s\n", tool_json_str(&j));
    fflush(stdout);
    if (opt.summary && tool_write_file_atomic(opt.summary, tool_json_str(&j), j.len) != 0)
        fprintf(stderr, "loadgen: cannot write %s: %s\n", opt.summary, strerror(errno));
    tool_json_deinit(&j);

    uint64_t failed = 0;
    for (uint64_t i = 0; i < opt.threads; i++) {
        struct lworker *w = &g_workers[i];
        failed += w->calls_failed;
        grpc_completion_queue_destroy(w->cq);
        free(w->first_error);
        for (size_t k = 0; k < w->nerrors; k++)
            free(w->errors[k].details);
        free(w->errors);
        free(w->waiting);
        tool_map_deinit(&w->by_service);
        tool_map_deinit(&w->by_key);
    }
    for (uint64_t i = 0; i < opt.connections; i++)
        grpc_channel_destroy(g_channels[i]);
    free(g_channels);
    free(streams);
    free(g_pad);
    grpc_shutdown();
    return failed ? 1 : 0;
}
