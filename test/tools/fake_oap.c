/* fake_oap — a fake SkyWalking OAP node for skyrelay's integration tests and benchmark.
 *
 * A generic gRPC server on the C core: every worker thread owns one GRPC_CQ_NEXT completion
 * queue and keeps REQS_PER_WORKER grpc_server_request_call()s armed on it, so any method
 * path arrives here. Known report methods are read to the end of the client stream, one
 * RECV_MESSAGE at a time, then answered with an empty message and OK (after --delay-ms, via
 * a per-worker FIFO of due replies checked with the cq_next timeout: the loop never sleeps).
 * Other paths get UNIMPLEMENTED.
 *
 * Every received item is decoded with protobuf-c and credited the way the OAP receivers do
 * (see docs/test-tools.md): segments per message; logs with the first service/previous instance of
 * the stream; meters per stream (collect) or per collection (collectBatch) to the LAST
 * identity seen, dropped without service, instance or timestamp; Envoy ALS entries to the
 * identifier of the FIRST message of the stream (standard service) or of the latest
 * message that carried one (satellite service). Ids are deduplicated globally.
 * ManagementService requests are decoded by hand (common/tool_pb) and credited per
 * "service|instance"; the other report methods skyrelay forwards are only counted.
 *
 * Synchronous methods (fetchConfigurations, getProfileTaskCommands, ...) answer at once with
 * a deterministic message built from the node name and the request bytes, plus metadata, so
 * a test can check that a proxy returns them byte-exact. Relay methods (PprofTask/collect,
 * AsyncProfilerTask/collect, /relay.test.Echo/...) echo every message back as it arrives,
 * one SEND_MESSAGE in flight and the rest queued; goProfileReport answers once at the end.
 * --hang-method and --status-method override any path (deadline and error tests).
 *
 * Threads: per-call state is touched only by the worker owning the call's CQ. The crediting
 * tables are global and guarded by g_lock (test mode only: --count-only skips them). Message
 * and call counters are per worker, written by their owner only and read by the main
 * thread, which waits for SIGINT/SIGTERM with sigtimedwait and rewrites the summary file
 * every 100 ms when it changed.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <inttypes.h>
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
#include "common/tool_pb.h"
#include "common/tool_stamp.h"
#include "common/tool_util.h"

#define MAX_WORKERS 16
#define MAX_METHODS 128 /* distinct paths counted by name; the rest go to "(other)" */
#define REQS_PER_WORKER 32
#define SUMMARY_PERIOD_MS 100
#define MAX_OVERRIDES 32   /* --hang-method + --status-method paths */
#define ECHO_MAX_QUEUE 64  /* echo replies queued before the call stops reading */
#define MAX_REPLY_MD 8     /* --reply-metadata entries */

enum kind {
    K_UNIMPLEMENTED,
    K_HEALTH,
    K_SEGMENT,      /* stream SegmentObject */
    K_SEGMENT_SYNC, /* unary SegmentCollection */
    K_LOG,          /* stream LogData */
    K_METER,        /* stream MeterData, one processor per stream */
    K_METER_BATCH,  /* stream MeterDataCollection, one processor per message */
    K_ALS,          /* StreamAccessLogs, identifier of the first message */
    K_ALS_SATELLITE, /* StreamAccessLogs, identifier applies from the message carrying it */
    K_REPORT,        /* other report methods: counted, not decoded, empty reply */
    K_MGMT_KEEPALIVE, /* unary InstancePingPkg, credited per "svc|inst" */
    K_MGMT_PROPS,    /* unary InstanceProperties, credited per "svc|inst" */
    K_SYNC,          /* unary, answered at once with {1: node name, 2: request bytes} */
    K_ECHO,          /* bidi relay: every message echoed back as "<name>:" + bytes */
    K_GO_PROFILE,    /* client stream, one reply at the end: "<name>:" + all bytes */
    K_HANG,          /* --hang-method: never answered */
    K_STATUS         /* --status-method: answered with a given status code */
};

/* Kinds that send the test metadata (x-fake-oap-initial, x-fake-oap, x-request-auth). */
static bool kind_has_test_md(int kind)
{
    return kind == K_SYNC || kind == K_ECHO || kind == K_GO_PROFILE || kind == K_HANG ||
           kind == K_STATUS;
}

static const struct route {
    const char *path;
    enum kind kind;
} routes[] = {
    {"/skywalking.v3.TraceSegmentReportService/collect", K_SEGMENT},
    {"/skywalking.v3.TraceSegmentReportService/collectInSync", K_SEGMENT_SYNC},
    {"/skywalking.v3.LogReportService/collect", K_LOG},
    {"/skywalking.v3.MeterReportService/collect", K_METER},
    {"/skywalking.v3.MeterReportService/collectBatch", K_METER_BATCH},
    {"/TraceSegmentReportService/collect", K_SEGMENT},
    {"/TraceSegmentReportService/collectInSync", K_SEGMENT_SYNC},
    {"/LogReportService/collect", K_LOG},
    {"/MeterReportService/collect", K_METER},
    {"/MeterReportService/collectBatch", K_METER_BATCH},
    {"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", K_ALS},
    {"/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs", K_ALS},
    {"/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs", K_ALS_SATELLITE},
    {"/satellite.envoy.accesslog.v2.SatelliteAccessLogService/StreamAccessLogs", K_ALS_SATELLITE},
    {"/grpc.health.v1.Health/Check", K_HEALTH},

    /* report methods that are only counted (the package-less names exist in SkyWalking's
     * *Compat.proto services) */
    {"/skywalking.v3.JVMMetricReportService/collect", K_REPORT},
    {"/JVMMetricReportService/collect", K_REPORT},
    {"/skywalking.v3.CLRMetricReportService/collect", K_REPORT},
    {"/CLRMetricReportService/collect", K_REPORT},
    {"/skywalking.v3.EventService/collect", K_REPORT},
    {"/skywalking.v3.SpanAttachedEventReportService/collect", K_REPORT},
    {"/skywalking.v3.ProfileTask/collectSnapshot", K_REPORT},
    {"/ProfileTask/collectSnapshot", K_REPORT},
    {"/skywalking.v3.EBPFProfilingService/collectProfilingData", K_REPORT},
    {"/skywalking.v3.EBPFAccessLogService/collect", K_REPORT},
    {"/envoy.service.metrics.v2.MetricsService/StreamMetrics", K_REPORT},
    {"/envoy.service.metrics.v3.MetricsService/StreamMetrics", K_REPORT},
    {"/skywalking.v3.ManagementService/keepAlive", K_MGMT_KEEPALIVE},
    {"/ManagementService/keepAlive", K_MGMT_KEEPALIVE},
    {"/skywalking.v3.ManagementService/reportInstanceProperties", K_MGMT_PROPS},
    {"/ManagementService/reportInstanceProperties", K_MGMT_PROPS},

    /* synchronous methods */
    {"/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations", K_SYNC},
    {"/skywalking.v3.ProfileTask/getProfileTaskCommands", K_SYNC},
    {"/ProfileTask/getProfileTaskCommands", K_SYNC},
    {"/skywalking.v3.ProfileTask/reportTaskFinish", K_SYNC},
    {"/ProfileTask/reportTaskFinish", K_SYNC},
    {"/skywalking.v3.EBPFProcessService/reportProcesses", K_SYNC},
    {"/skywalking.v3.EBPFProcessService/keepAlive", K_SYNC},
    {"/skywalking.v3.EBPFProfilingService/queryTasks", K_SYNC},
    {"/skywalking.v3.ContinuousProfilingService/queryPolicies", K_SYNC},
    {"/skywalking.v3.ContinuousProfilingService/reportProfilingTask", K_SYNC},
    {"/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands", K_SYNC},
    {"/skywalking.v10.PprofTask/getPprofTaskCommands", K_SYNC},

    /* transparent relay methods */
    {"/skywalking.v10.AsyncProfilerTask/collect", K_ECHO},
    {"/skywalking.v10.PprofTask/collect", K_ECHO},
    {"/skywalking.v3.ProfileTask/goProfileReport", K_GO_PROFILE},
};

#define ECHO_PREFIX "/relay.test.Echo/" /* any method under it echoes */

static struct options {
    const char *listen;
    const char *name;
    const char *summary;
    const char *port_file;
    const char *latency; /* at exit: receive time - loadgen stamp, us, one per line */
    bool count_only;
    uint64_t fail_after; /* 0 = never */
    int fail_status;
    int64_t delay_ms;
    int max_recv;
    int threads;
    const char *token; /* required "authentication" metadata, as OAP checks it */
    const char *cds_uuid; /* fetchConfigurations answers like OAP with this config UUID */
    const char *ids;   /* at exit: the id hashes seen, "<kind> <hex>" per line */
    const char *tls_cert, *tls_key; /* PEM files: listen with TLS (default: h2c) */
    const char *tls_client_ca;      /* PEM CAs: require and verify a client certificate */
    struct override {
        const char *path;
        int status; /* 0 = hang */
    } overrides[MAX_OVERRIDES];
    int noverrides;
} opt = {
    .name = "oap",
    .fail_status = GRPC_STATUS_UNAVAILABLE,
    .max_recv = 50 * 1024 * 1024,
    .threads = 2,
};

/* ---------------------------------------------------------------- statistics ---------- */

/* Counts of one kind of item. total = unique + duplicates = credited + uncredited. */
struct item_stats {
    uint64_t total, unique, duplicates, uncredited;
    struct tool_set seen;
    struct tool_map by_service; /* segments only */
    struct tool_map by_key;     /* "svc|inst" or the Envoy node id */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t calls_failed, calls_cancelled, decode_errors, rejected_messages, auth_rejected;
    struct tool_map unimplemented;
    struct item_stats seg, log, met, als;
    uint64_t keepalive, properties;
    struct tool_map keepalive_by_instance, properties_by_instance;
} g_st; /* guarded by g_lock */

static struct tool_map g_stl_names; /* sw_stl_* meter names seen, guarded by g_lock */
static char *g_method_names[MAX_METHODS]; /* append-only, guarded by g_lock */
static int g_nmethods;

static atomic_uint_fast64_t g_accepted; /* messages accepted, counted only with --fail-after */
static atomic_int g_failing;            /* --fail-after reached: fail everything */
static atomic_int g_stopping;           /* shutdown started */

static grpc_server *g_server;
static int g_port;

/* ---------------------------------------------------------------- calls and workers --- */

enum tag_type { TAG_REQUEST, TAG_RECV, TAG_SEND, TAG_STATUS, TAG_META, TAG_CLOSE, TAG_SHUTDOWN };

struct tag {
    enum tag_type type;
};

struct worker;

struct request {
    struct tag tag;
    struct worker *w;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
};

/* An echo reply waiting for the SEND_MESSAGE in flight. */
struct out_msg {
    grpc_byte_buffer *bb;
    struct out_msg *next;
};

struct call {
    /* t_send: echo SEND_MESSAGE batches (send_buf); t_status: the final batch, with the
     * initial metadata and the reply message if not sent yet (final_buf); t_meta: initial
     * metadata sent alone at the start of an echo call. One tag per op type in flight. */
    struct tag t_recv, t_send, t_status, t_meta, t_close;
    struct worker *w;
    grpc_call *call;
    enum kind kind;
    int method;
    int pending;           /* batches in flight + a queued delayed reply */
    bool status_sent;      /* the final status batch was started */
    bool initial_sent;     /* SEND_INITIAL_METADATA was started */
    bool finalized;        /* end-of-stream crediting done (meters) */
    bool we_failed;        /* we ended it with a non-OK status */
    bool close_done;       /* RECV_CLOSE_ON_SERVER completed */
    int cancelled;         /* RECV_CLOSE_ON_SERVER result */
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;  /* echo message in flight */
    grpc_byte_buffer *final_buf; /* reply message of the final batch */
    grpc_slice status_details;
    int status_code;             /* K_STATUS */

    /* test metadata (kind_has_test_md): slices owned here, freed with the call */
    grpc_metadata init_md[1 + MAX_REPLY_MD];
    size_t n_init_md;
    grpc_metadata trail_md[4 + MAX_REPLY_MD];
    size_t n_trail_md;

    bool cds; /* --cds-uuid: a fetchConfigurations answered like OAP */
    /* K_SYNC, K_GO_PROFILE: the request bytes received so far */
    uint8_t *req;
    size_t req_len, req_cap;

    /* K_ECHO */
    struct out_msg *out_head, *out_tail;
    size_t out_len;
    bool send_inflight, recv_inflight, recv_paused, half_closed;
    uint64_t echoed;
    int64_t due_ms;
    struct call *timer_next;
    struct call *prev, *next; /* the worker's active list */

    /* protocol state of the stream */
    char *svc, *inst;       /* logs: previous non-empty; meters: last non-empty */
    bool have_ts;           /* meters: a timestamp > 0 was seen */
    uint64_t *ids;          /* meters: id hashes read so far (0 = no id) */
    size_t nids, capids;
    bool als_first_seen;    /* ALS: the first message was read */
    bool als_identified;
    char *als_id;

    /* --fail-id: collectBatch messages held until the half-close (the call is all or nothing) */
    grpc_byte_buffer **held;
    size_t nheld, capheld;
};

struct worker {
    int idx;
    pthread_t thread;
    grpc_completion_queue *cq;
    struct request reqs[REQS_PER_WORKER];
    struct call *active;
    struct call *timer_head, *timer_tail;
    bool failed_all;
    /* written by the owner only, read by the summary writer */
    atomic_uint_fast64_t msgs[MAX_METHODS];
    atomic_uint_fast64_t calls[MAX_METHODS];
};

static struct worker g_workers[MAX_WORKERS];
static struct tag g_shutdown_tag = {TAG_SHUTDOWN};
static pthread_mutex_t g_shutdown_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_shutdown_cv = PTHREAD_COND_INITIALIZER;
static bool g_shutdown_done;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "fake_oap: out of memory\n");
        abort();
    }
    return p;
}

static void bump(atomic_uint_fast64_t *c)
{
    /* single writer: a relaxed load + store, no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The kind of a method path: --hang-method / --status-method first (any path), then the
 * served methods, then the echo service. *status gets the --status-method code. */
static enum kind route_of(grpc_slice method, int *status)
{
    for (int i = 0; i < opt.noverrides; i++)
        if (grpc_slice_str_cmp(method, opt.overrides[i].path) == 0) {
            *status = opt.overrides[i].status;
            return opt.overrides[i].status ? K_STATUS : K_HANG;
        }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (grpc_slice_str_cmp(method, routes[i].path) == 0)
            return routes[i].kind;
    size_t plen = strlen(ECHO_PREFIX);
    if (GRPC_SLICE_LENGTH(method) > plen &&
        memcmp(GRPC_SLICE_START_PTR(method), ECHO_PREFIX, plen) == 0)
        return K_ECHO;
    return K_UNIMPLEMENTED;
}

/* Index of the method's counters; called once per call. */
static int method_index(const char *path, size_t len)
{
    pthread_mutex_lock(&g_lock);
    int i;
    for (i = 0; i < g_nmethods; i++)
        if (strlen(g_method_names[i]) == len && memcmp(g_method_names[i], path, len) == 0)
            goto out;
    if (g_nmethods >= MAX_METHODS - 1) {
        path = "(other)";
        len = strlen(path);
        for (i = 0; i < g_nmethods; i++)
            if (strcmp(g_method_names[i], path) == 0)
                goto out;
    }
    g_method_names[i] = xcalloc(1, len + 1);
    memcpy(g_method_names[i], path, len);
    g_nmethods++;
out:
    pthread_mutex_unlock(&g_lock);
    return i;
}

static void set_str(char **dst, const char *src)
{
    if (*dst && strcmp(*dst, src) == 0)
        return;
    free(*dst);
    *dst = strdup(src);
    if (!*dst)
        abort();
}

static bool nonempty(const char *s)
{
    return s && *s;
}

/* ---------------------------------------------------------------- crediting ----------- */

/* Counts one item: total and dedup. Caller holds g_lock. */
static void count_item(struct item_stats *st, const char *id, size_t idlen)
{
    st->total++;
    if (idlen == 0 || tool_set_insert(&st->seen, tool_hash(id, idlen)))
        st->unique++;
    else
        st->duplicates++;
}

static void count_item_hash(struct item_stats *st, uint64_t h)
{
    st->total++;
    if (h == 0 || tool_set_insert(&st->seen, h))
        st->unique++;
    else
        st->duplicates++;
}

/* key = svc "|" inst */
static void credit_instance(struct item_stats *st, const char *svc, const char *inst, uint64_t n)
{
    size_t ls = strlen(svc), li = strlen(inst);
    char stackbuf[256];
    char *k = ls + li + 2 <= sizeof(stackbuf) ? stackbuf : xcalloc(1, ls + li + 2);
    memcpy(k, svc, ls);
    k[ls] = '|';
    memcpy(k + ls + 1, inst, li);
    tool_map_add(&st->by_key, k, ls + 1 + li, n);
    if (k != stackbuf)
        free(k);
}

static void credit_segment(const Skywalking__V3__SegmentObject *seg)
{
    const char *svc = seg->service ? seg->service : "";
    const char *inst = seg->serviceinstance ? seg->serviceinstance : "";
    const char *id = seg->tracesegmentid ? seg->tracesegmentid : "";
    count_item(&g_st.seg, id, strlen(id));
    tool_map_add(&g_st.seg.by_service, svc, strlen(svc), 1);
    credit_instance(&g_st.seg, svc, inst, 1);
}

static int on_segment(struct call *c, const uint8_t *data, size_t len)
{
    (void)c;
    Skywalking__V3__SegmentObject *seg = skywalking__v3__segment_object__unpack(NULL, len, data);
    if (!seg)
        return -1;
    pthread_mutex_lock(&g_lock);
    credit_segment(seg);
    pthread_mutex_unlock(&g_lock);
    skywalking__v3__segment_object__free_unpacked(seg, NULL);
    return 0;
}

static int on_segment_sync(struct call *c, const uint8_t *data, size_t len)
{
    (void)c;
    Skywalking__V3__SegmentCollection *col =
        skywalking__v3__segment_collection__unpack(NULL, len, data);
    if (!col)
        return -1;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < col->n_segments; i++)
        credit_segment(col->segments[i]);
    pthread_mutex_unlock(&g_lock);
    skywalking__v3__segment_collection__free_unpacked(col, NULL);
    return 0;
}

static const char *log_id(const Skywalking__V3__LogData *ld)
{
    const Skywalking__V3__LogDataBody *b = ld->body;
    if (!b)
        return "";
    switch (b->content_case) {
    case SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT:
        return b->text && b->text->text ? b->text->text : "";
    case SKYWALKING__V3__LOG_DATA_BODY__CONTENT_JSON:
        return b->json && b->json->json ? b->json->json : "";
    case SKYWALKING__V3__LOG_DATA_BODY__CONTENT_YAML:
        return b->yaml && b->yaml->yaml ? b->yaml->yaml : "";
    default:
        return "";
    }
}

/* OAP's LogReportServiceGrpcHandler: the first non-empty service of a stream
 * sticks and is written onto every later LogData of the stream, even one that
 * carries its own service; serviceInstance is taken as the message has it
 * (the previous non-empty one when it has none: skyrelay's context rewrite). */
static int on_log(struct call *c, const uint8_t *data, size_t len)
{
    Skywalking__V3__LogData *ld = skywalking__v3__log_data__unpack(NULL, len, data);
    if (!ld)
        return -1;
    if (!c->svc && nonempty(ld->service))
        set_str(&c->svc, ld->service);
    if (nonempty(ld->serviceinstance))
        set_str(&c->inst, ld->serviceinstance);
    const char *id = log_id(ld);
    pthread_mutex_lock(&g_lock);
    count_item(&g_st.log, id, strlen(id));
    if (c->svc)
        credit_instance(&g_st.log, c->svc, c->inst ? c->inst : "", 1);
    else
        g_st.log.uncredited++;
    pthread_mutex_unlock(&g_lock);
    skywalking__v3__log_data__free_unpacked(ld, NULL);
    return 0;
}

/* One OAP MeterProcessor: read() every MeterData, then process() once. */
struct meter_proc {
    char **svc, **inst;
    bool *have_ts;
    uint64_t **ids;
    size_t *nids, *capids;
};

static void meter_read(struct meter_proc *p, const Skywalking__V3__MeterData *md)
{
    const char *name;
    switch (md->metric_case) {
    case SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE:
        name = md->singlevalue && md->singlevalue->name ? md->singlevalue->name : "";
        break;
    case SKYWALKING__V3__METER_DATA__METRIC_HISTOGRAM:
        name = md->histogram && md->histogram->name ? md->histogram->name : "";
        break;
    default:
        return; /* OAP ignores a MeterData without a metric, identity included */
    }
    if (*p->nids == *p->capids) {
        *p->capids = *p->capids ? *p->capids * 2 : 64;
        uint64_t *n = realloc(*p->ids, *p->capids * sizeof(uint64_t));
        if (!n)
            abort();
        *p->ids = n;
    }
    (*p->ids)[(*p->nids)++] = *name ? tool_hash(name, strlen(name)) : 0;
    if (nonempty(md->service))
        set_str(p->svc, md->service);
    if (nonempty(md->serviceinstance))
        set_str(p->inst, md->serviceinstance);
    if (md->timestamp > 0)
        *p->have_ts = true;
}

static void meter_process(struct meter_proc *p)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < *p->nids; i++)
        count_item_hash(&g_st.met, (*p->ids)[i]);
    if (nonempty(*p->svc) && nonempty(*p->inst) && *p->have_ts)
        credit_instance(&g_st.met, *p->svc, *p->inst, *p->nids);
    else
        g_st.met.uncredited += *p->nids;
    pthread_mutex_unlock(&g_lock);
    *p->nids = 0;
}

static struct meter_proc call_meter_proc(struct call *c)
{
    return (struct meter_proc){&c->svc, &c->inst, &c->have_ts, &c->ids, &c->nids, &c->capids};
}

static int on_meter(struct call *c, const uint8_t *data, size_t len)
{
    Skywalking__V3__MeterData *md = skywalking__v3__meter_data__unpack(NULL, len, data);
    if (!md)
        return -1;
    struct meter_proc p = call_meter_proc(c);
    meter_read(&p, md);
    skywalking__v3__meter_data__free_unpacked(md, NULL);
    return 0;
}

static int on_meter_batch(struct call *c, const uint8_t *data, size_t len)
{
    (void)c;
    Skywalking__V3__MeterDataCollection *col =
        skywalking__v3__meter_data_collection__unpack(NULL, len, data);
    if (!col)
        return -1;
    char *svc = NULL, *inst = NULL;
    bool have_ts = false;
    uint64_t *ids = NULL;
    size_t nids = 0, capids = 0;
    struct meter_proc p = {&svc, &inst, &have_ts, &ids, &nids, &capids};
    for (size_t i = 0; i < col->n_meterdata; i++)
        meter_read(&p, col->meterdata[i]);
    meter_process(&p);
    /* skyrelay's and Satellite's self meters (sw_stl_*): counted by name */
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < col->n_meterdata; i++) {
        const Skywalking__V3__MeterData *md = col->meterdata[i];
        const char *nm = md->metric_case == SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE &&
                                 md->singlevalue && md->singlevalue->name
                             ? md->singlevalue->name
                             : "";
        if (strncmp(nm, "sw_stl_", 7) == 0) tool_map_add(&g_stl_names, nm, strlen(nm), 1);
    }
    pthread_mutex_unlock(&g_lock);
    free(svc);
    free(inst);
    free(ids);
    skywalking__v3__meter_data_collection__free_unpacked(col, NULL);
    return 0;
}

static int on_als(struct call *c, const uint8_t *data, size_t len)
{
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage *m =
        envoy__service__accesslog__v3__stream_access_logs_message__unpack(NULL, len, data);
    if (!m)
        return -1;
    bool take = c->kind == K_ALS_SATELLITE ? m->identifier != NULL : !c->als_first_seen;
    c->als_first_seen = true;
    if (take && m->identifier) {
        const Envoy__Config__Core__V3__Node *node = m->identifier->node;
        set_str(&c->als_id, node && node->id ? node->id : "");
        c->als_identified = true;
    }
    pthread_mutex_lock(&g_lock);
    uint64_t n = 0;
    if (m->log_entries_case ==
            ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS &&
        m->http_logs) {
        for (size_t i = 0; i < m->http_logs->n_log_entry; i++) {
            const Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *e = m->http_logs->log_entry[i];
            const char *id = e->request && e->request->request_id ? e->request->request_id : "";
            count_item(&g_st.als, id, strlen(id));
            n++;
        }
    } else if (m->log_entries_case ==
                   ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_TCP_LOGS &&
               m->tcp_logs) {
        for (size_t i = 0; i < m->tcp_logs->n_log_entry; i++)
            count_item(&g_st.als, "", 0);
        n += m->tcp_logs->n_log_entry;
    }
    if (n) {
        if (c->als_identified)
            tool_map_add(&g_st.als.by_key, c->als_id, strlen(c->als_id), n);
        else
            g_st.als.uncredited += n;
    }
    pthread_mutex_unlock(&g_lock);
    envoy__service__accesslog__v3__stream_access_logs_message__free_unpacked(m, NULL);
    return 0;
}

/* ManagementService: InstancePingPkg {service=1, serviceInstance=2, layer=3} and
 * InstanceProperties {service=1, serviceInstance=2, properties=3, layer=4}, numbers as in
 * skywalking-data-collect-protocol management/Management.proto. Only service and instance
 * are read (the last occurrence wins, as in protobuf); the rest is only checked to be
 * well-formed wire format. Credited per "svc|inst", empty names included. */
static int on_management(struct call *c, const uint8_t *data, size_t len)
{
    const uint8_t *p = data, *end = data + len;
    const uint8_t *name[2] = {(const uint8_t *)"", (const uint8_t *)""};
    size_t nlen[2] = {0, 0};
    struct tool_pb_field f;
    int r;
    while ((r = tool_pb_next(&p, end, &f)) == 1) {
        if (f.number == 1 || f.number == 2) {
            if (f.wire_type != TOOL_PB_LEN)
                return -1;
            name[f.number - 1] = f.data;
            nlen[f.number - 1] = f.len;
        }
    }
    if (r < 0)
        return -1;
    char stackbuf[256];
    size_t klen = nlen[0] + 1 + nlen[1];
    char *k = klen <= sizeof(stackbuf) ? stackbuf : xcalloc(1, klen);
    memcpy(k, name[0], nlen[0]);
    k[nlen[0]] = '|';
    memcpy(k + nlen[0] + 1, name[1], nlen[1]);
    pthread_mutex_lock(&g_lock);
    if (c->kind == K_MGMT_KEEPALIVE) {
        g_st.keepalive++;
        tool_map_add(&g_st.keepalive_by_instance, k, klen, 1);
    } else {
        g_st.properties++;
        tool_map_add(&g_st.properties_by_instance, k, klen, 1);
    }
    pthread_mutex_unlock(&g_lock);
    if (k != stackbuf)
        free(k);
    return 0;
}

static int decode_and_credit(struct call *c, grpc_byte_buffer *bb)
{
    grpc_slice s = tool_bb_flatten(bb);
    const uint8_t *data = GRPC_SLICE_START_PTR(s);
    size_t len = GRPC_SLICE_LENGTH(s);
    int rc = 0;
    switch (c->kind) {
    case K_SEGMENT: rc = on_segment(c, data, len); break;
    case K_SEGMENT_SYNC: rc = on_segment_sync(c, data, len); break;
    case K_LOG: rc = on_log(c, data, len); break;
    case K_METER: rc = on_meter(c, data, len); break;
    case K_METER_BATCH: rc = on_meter_batch(c, data, len); break;
    case K_ALS:
    case K_ALS_SATELLITE: rc = on_als(c, data, len); break;
    case K_MGMT_KEEPALIVE:
    case K_MGMT_PROPS: rc = on_management(c, data, len); break;
    default: break;
    }
    grpc_slice_unref(s);
    return rc;
}

/* End of stream, however it ended: OAP's meter handler process()es what it read, also in
 * onError. Runs once. */
static void finalize(struct call *c)
{
    if (c->finalized)
        return;
    c->finalized = true;
    if (c->kind == K_METER && !opt.count_only) {
        struct meter_proc p = call_meter_proc(c);
        meter_process(&p);
    }
}

/* ---------------------------------------------------------------- call flow ----------- */

static void out_free_all(struct call *c)
{
    while (c->out_head) {
        struct out_msg *m = c->out_head;
        c->out_head = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
    }
    c->out_tail = NULL;
    c->out_len = 0;
}

static void call_free(struct call *c)
{
    struct worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->active = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf)
        grpc_byte_buffer_destroy(c->send_buf);
    if (c->final_buf)
        grpc_byte_buffer_destroy(c->final_buf);
    out_free_all(c);
    for (size_t i = 0; i < c->nheld; i++)
        grpc_byte_buffer_destroy(c->held[i]);
    free(c->held);
    for (size_t i = 0; i < c->n_init_md; i++) {
        grpc_slice_unref(c->init_md[i].key);
        grpc_slice_unref(c->init_md[i].value);
    }
    for (size_t i = 0; i < c->n_trail_md; i++) {
        grpc_slice_unref(c->trail_md[i].key);
        grpc_slice_unref(c->trail_md[i].value);
    }
    grpc_slice_unref(c->status_details);
    grpc_call_unref(c->call);
    free(c->req);
    free(c->svc);
    free(c->inst);
    free(c->ids);
    free(c->als_id);
    free(c);
}

static void maybe_free(struct call *c)
{
    if (c->pending == 0)
        call_free(c);
}

static void start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *tag)
{
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "fake_oap: start_batch: %s\n", grpc_call_error_to_string(err));
        abort(); /* a programming error: never expected */
    }
    c->pending++;
}

static void md_set(grpc_metadata *m, const char *key, const void *val, size_t vlen)
{
    memset(m, 0, sizeof(*m));
    m->key = grpc_slice_from_copied_string(key);
    m->value = grpc_slice_from_copied_buffer(val, vlen);
}

/* ------------------------------------ metadata tests (--record-metadata, --reply-metadata,
 * --status-details): what a proxy forwards, filters and passes back. */
static const char *g_reply_md[MAX_REPLY_MD]; /* "key=value" */
static int g_n_reply_md;
static uint8_t *g_status_details; /* --status-details HEX, decoded */
static size_t g_status_details_len;
static FILE *g_md_log; /* --record-metadata */
static pthread_mutex_t g_md_log_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line per call: the path, then "key=value" per request metadata entry, tab-separated
 * (value bytes outside printable ASCII, and backslash, as \xHH). */
static void record_metadata(const grpc_slice *method, const grpc_metadata_array *md)
{
    if (!g_md_log)
        return;
    pthread_mutex_lock(&g_md_log_lock);
    fprintf(g_md_log, "%.*s", (int)GRPC_SLICE_LENGTH(*method),
            (const char *)GRPC_SLICE_START_PTR(*method));
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key, *v = &md->metadata[i].value;
        fprintf(g_md_log, "\t%.*s=", (int)GRPC_SLICE_LENGTH(*k), (const char *)GRPC_SLICE_START_PTR(*k));
        for (size_t j = 0; j < GRPC_SLICE_LENGTH(*v); j++) {
            uint8_t b = GRPC_SLICE_START_PTR(*v)[j];
            if (b >= 0x20 && b < 0x7f && b != '\\')
                fputc(b, g_md_log);
            else
                fprintf(g_md_log, "\\x%02x", b);
        }
    }
    fputc('\n', g_md_log);
    fflush(g_md_log);
    pthread_mutex_unlock(&g_md_log_lock);
}

/* --reply-metadata entries go into the initial and the trailing metadata of the kinds that
 * send test metadata; --status-details into the trailers of --status-method answers. */
static void add_reply_metadata(struct call *c)
{
    for (int i = 0; i < g_n_reply_md; i++) {
        const char *eq = strchr(g_reply_md[i], '=');
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - g_reply_md[i]), g_reply_md[i]);
        md_set(&c->init_md[c->n_init_md++], key, eq + 1, strlen(eq + 1));
        md_set(&c->trail_md[c->n_trail_md++], key, eq + 1, strlen(eq + 1));
    }
    if (c->kind == K_STATUS && g_status_details)
        md_set(&c->trail_md[c->n_trail_md++], "grpc-status-details-bin", g_status_details,
               g_status_details_len);
}

static int parse_hex(const char *h, uint8_t **out, size_t *n)
{
    size_t len = strlen(h);
    if (len == 0 || len % 2)
        return -1;
    *out = xcalloc(1, len / 2);
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        (*out)[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

/* Sends the initial metadata (unless already sent), an optional message and the final
 * status with the call's trailing metadata. */
static void send_final(struct call *c, grpc_status_code code, const char *details,
                       const void *payload, size_t plen, bool with_message)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->initial_sent) {
        c->initial_sent = true;
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = c->n_init_md;
        ops[n++].data.send_initial_metadata.metadata = c->n_init_md ? c->init_md : NULL;
    }
    if (with_message) {
        c->final_buf = payload ? tool_bb_copy(payload, plen) : grpc_raw_byte_buffer_create(NULL, 0);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->final_buf;
    }
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_slice_from_copied_string(details ? details : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->n_trail_md;
    ops[n].data.send_status_from_server.trailing_metadata = c->n_trail_md ? c->trail_md : NULL;
    ops[n++].data.send_status_from_server.status_details = details ? &c->status_details : NULL;
    c->status_sent = true;
    start_batch(c, ops, n, &c->t_status);
}

static void fail_call(struct call *c, grpc_status_code code, const char *details)
{
    finalize(c);
    c->we_failed = true;
    pthread_mutex_lock(&g_lock);
    g_st.calls_failed++;
    pthread_mutex_unlock(&g_lock);
    send_final(c, code, details, NULL, 0, false);
}

static void fail_dead(struct call *c)
{
    fail_call(c, (grpc_status_code)opt.fail_status, "fake_oap: node failing (--fail-after)");
}

static void start_recv(struct call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    c->recv_inflight = true;
    start_batch(c, &op, 1, &c->t_recv);
}

/* K_SYNC, K_GO_PROFILE: keeps the request bytes. */
static void req_append(struct call *c, const uint8_t *data, size_t n)
{
    if (c->req_len + n > c->req_cap) {
        size_t cap = c->req_cap ? c->req_cap : 256;
        while (cap < c->req_len + n)
            cap *= 2;
        uint8_t *p = realloc(c->req, cap);
        if (!p)
            abort();
        c->req = p;
        c->req_cap = cap;
    }
    if (n)
        memcpy(c->req + c->req_len, data, n);
    c->req_len += n;
}

/* "<name>:" + data, as one message (echo replies). */
static grpc_byte_buffer *prefixed(const uint8_t *data, size_t n)
{
    size_t ln = strlen(opt.name);
    uint8_t *buf = xcalloc(1, ln + 1 + n + 1);
    memcpy(buf, opt.name, ln);
    buf[ln] = ':';
    if (n)
        memcpy(buf + ln + 1, data, n);
    grpc_byte_buffer *bb = tool_bb_copy(buf, ln + 1 + n);
    free(buf);
    return bb;
}

static void add_count_md(struct call *c, const char *key, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);
    if (c->n_trail_md < sizeof(c->trail_md) / sizeof(c->trail_md[0]))
        md_set(&c->trail_md[c->n_trail_md++], key, num, (size_t)n);
}

/* --cds-uuid: OAP's fetchConfigurations rule. The request's uuid (2) equal to
 * the configuration's: an empty Commands; else one ConfigurationDiscoveryCommand
 * with SerialNumber "sn-<name>-<n>" (n counts the answers of this node), UUID,
 * fake.node = the node name and fake.service = the request's service (1). */
static void cds_reply(struct call *c)
{
    static _Atomic uint64_t serial;
    const uint8_t *p = c->req, *end = c->req + c->req_len;
    const uint8_t *svc = (const uint8_t *)"", *uuid = (const uint8_t *)"";
    size_t svc_len = 0, uuid_len = 0;
    struct tool_pb_field f;
    int r;

    while (p && (r = tool_pb_next(&p, end, &f)) == 1) {
        if (f.wire_type == TOOL_PB_LEN && f.number == 1) {
            svc = f.data;
            svc_len = f.len;
        } else if (f.wire_type == TOOL_PB_LEN && f.number == 2) {
            uuid = f.data;
            uuid_len = f.len;
        }
    }
    if (p && r < 0) {
        fail_call(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed ConfigurationSyncRequest");
        return;
    }
    if (uuid_len == strlen(opt.cds_uuid) && memcmp(uuid, opt.cds_uuid, uuid_len) == 0) {
        send_final(c, GRPC_STATUS_OK, NULL, NULL, 0, true);
        return;
    }
    char sn[64];
    snprintf(sn, sizeof(sn), "sn-%s-%" PRIu64, opt.name, (uint64_t)atomic_fetch_add(&serial, 1) + 1);
    const char *kv[4][2] = {{"SerialNumber", sn}, {"UUID", opt.cds_uuid},
                            {"fake.node", opt.name}, {"fake.service", NULL}};
    size_t cap = 256 + svc_len + strlen(sn) + strlen(opt.cds_uuid) + 2 * strlen(opt.name);
    uint8_t *cmd = xcalloc(1, cap), *pair = xcalloc(1, cap), *out = xcalloc(1, cap);
    size_t k = tool_pb_put_len(cmd, 1, "ConfigurationDiscoveryCommand", 29);
    for (int i = 0; i < 4; i++) {
        const void *v = kv[i][1] ? (const void *)kv[i][1] : (const void *)svc;
        size_t vl = kv[i][1] ? strlen(kv[i][1]) : svc_len;
        size_t m = tool_pb_put_len(pair, 1, kv[i][0], strlen(kv[i][0]));
        m += tool_pb_put_len(pair + m, 2, v, vl);
        k += tool_pb_put_len(cmd + k, 2, pair, m);
    }
    size_t n = tool_pb_put_len(out, 1, cmd, k);
    send_final(c, GRPC_STATUS_OK, NULL, out, n, true);
    free(cmd);
    free(pair);
    free(out);
}

/* The reply at the end of the client stream, by kind. */
static void reply_ok(struct call *c)
{
    if (atomic_load(&g_failing)) {
        fail_dead(c);
        return;
    }
    switch (c->kind) {
    case K_SYNC: {
        if (c->cds) {
            cds_reply(c);
            break;
        }
        /* {1: node name, 2: the request bytes as received}: deterministic, and tells
         * which node answered which request */
        size_t ln = strlen(opt.name);
        size_t n = tool_pb_len_size(1, ln) + tool_pb_len_size(2, c->req_len);
        uint8_t *buf = xcalloc(1, n);
        size_t k = tool_pb_put_len(buf, 1, opt.name, ln);
        k += tool_pb_put_len(buf + k, 2, c->req, c->req_len);
        send_final(c, GRPC_STATUS_OK, NULL, buf, k, true);
        free(buf);
        break;
    }
    case K_GO_PROFILE: {
        add_count_md(c, "x-echo-count", c->echoed);
        grpc_byte_buffer *bb = prefixed(c->req, c->req_len);
        grpc_slice sl = tool_bb_flatten(bb);
        send_final(c, GRPC_STATUS_OK, NULL, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl),
                   true);
        grpc_slice_unref(sl);
        grpc_byte_buffer_destroy(bb);
        break;
    }
    case K_STATUS:
        fail_call(c, (grpc_status_code)c->status_code, "fake status");
        break;
    default:
        send_final(c, GRPC_STATUS_OK, NULL, NULL, 0, true);
        break;
    }
}

/* K_ECHO: sends the next queued reply, resumes reading, ends the call once the client has
 * half-closed and every reply went out. One SEND_MESSAGE in flight at a time. */
static void echo_pump(struct call *c)
{
    if (c->status_sent) {
        out_free_all(c);
        return;
    }
    if (!c->send_inflight && c->out_head) {
        struct out_msg *m = c->out_head;
        c->out_head = m->next;
        if (!c->out_head)
            c->out_tail = NULL;
        c->out_len--;
        c->send_buf = m->bb;
        free(m);
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->send_buf;
        c->send_inflight = true;
        start_batch(c, &op, 1, &c->t_send);
    }
    if (c->recv_paused && c->out_len < ECHO_MAX_QUEUE) {
        c->recv_paused = false;
        start_recv(c);
    }
    if (c->half_closed && !c->send_inflight && !c->out_head) {
        add_count_md(c, "x-echo-count", c->echoed);
        send_final(c, GRPC_STATUS_OK, NULL, NULL, 0, false);
    }
}

static void echo_message(struct call *c, grpc_byte_buffer *bb)
{
    grpc_slice s = tool_bb_flatten(bb);
    struct out_msg *m = xcalloc(1, sizeof(*m));
    m->bb = prefixed(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
    if (c->out_tail)
        c->out_tail->next = m;
    else
        c->out_head = m;
    c->out_tail = m;
    c->out_len++;
    c->echoed++;
    if (c->out_len < ECHO_MAX_QUEUE)
        start_recv(c);
    else
        c->recv_paused = true; /* the client does not read: stop reading too */
    echo_pump(c);
}

/* ---------------------------------------------------------------- poison (--fail-id) -- */

/* --fail-id ID: an OAP that throws on one specific item. A report call carrying an item whose
 * id (its dedup key: traceSegmentId, the log text, the meter name, the ALS request_id) is a
 * fail id ends with INTERNAL "fake_oap: poison <id>". Streams (segment, log and meter
 * `collect`, ALS): the messages read before the poison stay credited, as OAP processed them;
 * the poison message and the rest of the call are not. collectInSync and collectBatch: the
 * whole call is refused and nothing of it is credited (collectBatch messages are held until
 * the half-close for that). */
#define MAX_FAIL_IDS 16
static const char *g_fail_ids[MAX_FAIL_IDS];
static int g_nfail_ids;
static uint64_t g_poison_refusals; /* calls refused by --fail-id; guarded by g_lock */

/* Copies id into out and returns true if it is a fail id. */
static bool poison_match(const char *id, char *out, size_t outsz)
{
    if (!id || !*id)
        return false;
    for (int i = 0; i < g_nfail_ids; i++)
        if (strcmp(id, g_fail_ids[i]) == 0) {
            snprintf(out, outsz, "%s", id);
            return true;
        }
    return false;
}

static const char *poison_meter_name(const Skywalking__V3__MeterData *md)
{
    if (md->metric_case == SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE && md->singlevalue)
        return md->singlevalue->name;
    if (md->metric_case == SKYWALKING__V3__METER_DATA__METRIC_HISTOGRAM && md->histogram)
        return md->histogram->name;
    return NULL;
}

/* 1 if the message carries a fail id (copied to out), 0 if not, -1 if it does not decode
 * (the normal path then reports the decode error). */
static int poison_scan(const struct call *c, grpc_byte_buffer *bb, char *out, size_t outsz)
{
    grpc_slice s = tool_bb_flatten(bb);
    const uint8_t *data = GRPC_SLICE_START_PTR(s);
    size_t len = GRPC_SLICE_LENGTH(s);
    int hit = -1;
    switch (c->kind) {
    case K_SEGMENT: {
        Skywalking__V3__SegmentObject *m = skywalking__v3__segment_object__unpack(NULL, len, data);
        if (m) {
            hit = poison_match(m->tracesegmentid, out, outsz);
            skywalking__v3__segment_object__free_unpacked(m, NULL);
        }
        break;
    }
    case K_SEGMENT_SYNC: {
        Skywalking__V3__SegmentCollection *m =
            skywalking__v3__segment_collection__unpack(NULL, len, data);
        if (m) {
            hit = 0;
            for (size_t i = 0; i < m->n_segments && !hit; i++)
                hit = poison_match(m->segments[i]->tracesegmentid, out, outsz);
            skywalking__v3__segment_collection__free_unpacked(m, NULL);
        }
        break;
    }
    case K_LOG: {
        Skywalking__V3__LogData *m = skywalking__v3__log_data__unpack(NULL, len, data);
        if (m) {
            hit = poison_match(log_id(m), out, outsz);
            skywalking__v3__log_data__free_unpacked(m, NULL);
        }
        break;
    }
    case K_METER: {
        Skywalking__V3__MeterData *m = skywalking__v3__meter_data__unpack(NULL, len, data);
        if (m) {
            hit = poison_match(poison_meter_name(m), out, outsz);
            skywalking__v3__meter_data__free_unpacked(m, NULL);
        }
        break;
    }
    case K_METER_BATCH: {
        Skywalking__V3__MeterDataCollection *m =
            skywalking__v3__meter_data_collection__unpack(NULL, len, data);
        if (m) {
            hit = 0;
            for (size_t i = 0; i < m->n_meterdata && !hit; i++)
                hit = poison_match(poison_meter_name(m->meterdata[i]), out, outsz);
            skywalking__v3__meter_data_collection__free_unpacked(m, NULL);
        }
        break;
    }
    case K_ALS:
    case K_ALS_SATELLITE: {
        Envoy__Service__Accesslog__V3__StreamAccessLogsMessage *m =
            envoy__service__accesslog__v3__stream_access_logs_message__unpack(NULL, len, data);
        if (m) {
            hit = 0;
            if (m->log_entries_case ==
                    ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS &&
                m->http_logs)
                for (size_t i = 0; i < m->http_logs->n_log_entry && !hit; i++) {
                    const Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *e =
                        m->http_logs->log_entry[i];
                    hit = poison_match(e->request ? e->request->request_id : NULL, out, outsz);
                }
            envoy__service__accesslog__v3__stream_access_logs_message__free_unpacked(m, NULL);
        }
        break;
    }
    default:
        hit = 0; /* other methods carry no ids */
        break;
    }
    grpc_slice_unref(s);
    return hit;
}

/* on_recv, with --fail-id: returns true if it took bb (the call refused as poison, or a
 * collectBatch message held until the half-close). */
static bool poison_intercept(struct call *c, grpc_byte_buffer *bb)
{
    char id[256];
    int hit = poison_scan(c, bb, id, sizeof(id));
    if (hit > 0) {
        grpc_byte_buffer_destroy(bb);
        for (size_t i = 0; i < c->nheld; i++) /* collectBatch: nothing of the call counts */
            grpc_byte_buffer_destroy(c->held[i]);
        c->nheld = 0;
        pthread_mutex_lock(&g_lock);
        g_poison_refusals++;
        pthread_mutex_unlock(&g_lock);
        char details[300];
        snprintf(details, sizeof(details), "fake_oap: poison %s", id);
        fail_call(c, GRPC_STATUS_INTERNAL, details);
        return true;
    }
    if (hit == 0 && c->kind == K_METER_BATCH) {
        if (c->nheld == c->capheld) {
            c->capheld = c->capheld ? c->capheld * 2 : 16;
            grpc_byte_buffer **n = realloc(c->held, c->capheld * sizeof(*n));
            if (!n)
                abort();
            c->held = n;
        }
        c->held[c->nheld++] = bb;
        start_recv(c);
        return true;
    }
    return false;
}

/* Half-close of a collectBatch call without poison: its held messages count now. */
static void poison_release_held(struct call *c)
{
    for (size_t i = 0; i < c->nheld; i++) {
        bump(&c->w->msgs[c->method]);
        (void)decode_and_credit(c, c->held[i]); /* decoded once already in poison_scan */
        grpc_byte_buffer_destroy(c->held[i]);
    }
    c->nheld = 0;
}

/* Half-close seen: answer now or queue the reply until due_ms. */
static void end_of_stream(struct call *c)
{
    if (c->nheld)
        poison_release_held(c);
    finalize(c);
    switch (c->kind) {
    case K_HANG:
        return; /* never answered: the client's deadline or cancel ends the call */
    case K_ECHO:
        c->half_closed = true;
        echo_pump(c);
        return;
    case K_SYNC:
        if (c->cds && opt.delay_ms > 0)
            break; /* --cds-uuid: fetchConfigurations waits --delay-ms like the reports */
        reply_ok(c); /* synchronous methods answer at once, --delay-ms or not */
        return;
    case K_GO_PROFILE:
    case K_STATUS:
        reply_ok(c); /* synchronous methods answer at once, --delay-ms or not */
        return;
    default:
        break;
    }
    if (opt.delay_ms <= 0) {
        reply_ok(c);
        return;
    }
    struct worker *w = c->w;
    c->due_ms = tool_now_ms() + opt.delay_ms;
    c->timer_next = NULL;
    /* every reply waits the same delay, so due times are already in order: a FIFO will do */
    if (w->timer_tail)
        w->timer_tail->timer_next = c;
    else
        w->timer_head = c;
    w->timer_tail = c;
    c->pending++;
}

static void arm_request(struct worker *w, struct request *r)
{
    if (atomic_load(&g_stopping))
        return;
    grpc_call_error err = grpc_server_request_call(g_server, &r->call, &r->details, &r->md,
                                                   w->cq, w->cq, &r->tag);
    if (err != GRPC_CALL_OK)
        fprintf(stderr, "fake_oap: request_call: %s\n", grpc_call_error_to_string(err));
}

static void on_new_call(struct worker *w, struct request *r, bool ok)
{
    if (!ok)
        return; /* server shutting down */
    grpc_call *gc = r->call;
    r->call = NULL;
    int status_code = 0;
    enum kind kind = route_of(r->details.method, &status_code);
    bool auth_ok = !opt.token || kind == K_HEALTH || kind == K_UNIMPLEMENTED;
    for (size_t i = 0; !auth_ok && i < r->md.count; i++)
        auth_ok = grpc_slice_str_cmp(r->md.metadata[i].key, "authentication") == 0 &&
                  grpc_slice_str_cmp(r->md.metadata[i].value, opt.token) == 0;
    int method = method_index((const char *)GRPC_SLICE_START_PTR(r->details.method),
                              GRPC_SLICE_LENGTH(r->details.method));
    if (kind == K_UNIMPLEMENTED) {
        pthread_mutex_lock(&g_lock);
        tool_map_add(&g_st.unimplemented, (const char *)GRPC_SLICE_START_PTR(r->details.method),
                     GRPC_SLICE_LENGTH(r->details.method), 1);
        pthread_mutex_unlock(&g_lock);
    }

    struct call *c = xcalloc(1, sizeof(*c));
    c->t_recv.type = TAG_RECV;
    c->t_send.type = TAG_SEND;
    c->t_status.type = TAG_STATUS;
    c->t_meta.type = TAG_META;
    c->t_close.type = TAG_CLOSE;
    c->w = w;
    c->call = gc;
    c->kind = kind;
    c->method = method;
    c->cds = opt.cds_uuid && kind == K_SYNC &&
             (grpc_slice_str_cmp(r->details.method,
                                 "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations") == 0 ||
              grpc_slice_str_cmp(r->details.method,
                                 "/ConfigurationDiscoveryService/fetchConfigurations") == 0);
    c->status_code = status_code;
    c->status_details = grpc_empty_slice();
    if (kind_has_test_md(kind)) {
        const char *auth = "none";
        size_t alen = 4;
        for (size_t i = 0; i < r->md.count; i++)
            if (grpc_slice_str_cmp(r->md.metadata[i].key, "authentication") == 0) {
                auth = (const char *)GRPC_SLICE_START_PTR(r->md.metadata[i].value);
                alen = GRPC_SLICE_LENGTH(r->md.metadata[i].value);
                break;
            }
        md_set(&c->init_md[c->n_init_md++], "x-fake-oap-initial", opt.name, strlen(opt.name));
        md_set(&c->trail_md[c->n_trail_md++], "x-fake-oap", opt.name, strlen(opt.name));
        md_set(&c->trail_md[c->n_trail_md++], "x-request-auth", auth, alen);
        add_reply_metadata(c);
    }
    record_metadata(&r->details.method, &r->md);
    grpc_call_details_destroy(&r->details);
    grpc_metadata_array_destroy(&r->md);
    grpc_call_details_init(&r->details);
    grpc_metadata_array_init(&r->md);
    arm_request(w, r);

    c->next = w->active;
    if (w->active)
        w->active->prev = c;
    w->active = c;
    bump(&w->calls[method]);

    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    start_batch(c, &op, 1, &c->t_close);

    if (kind == K_UNIMPLEMENTED) {
        fail_call(c, GRPC_STATUS_UNIMPLEMENTED, "fake_oap: method not implemented");
    } else if (!auth_ok) {
        pthread_mutex_lock(&g_lock);
        g_st.auth_rejected++;
        pthread_mutex_unlock(&g_lock);
        fail_call(c, GRPC_STATUS_PERMISSION_DENIED, "fake_oap: bad or missing authentication");
    } else if (atomic_load(&g_failing)) {
        fail_dead(c);
    } else if (kind == K_HEALTH) {
        static const uint8_t serving[] = {0x08, 0x01}; /* HealthCheckResponse{SERVING} */
        c->finalized = true;
        send_final(c, GRPC_STATUS_OK, NULL, serving, sizeof(serving), true);
    } else {
        if (kind == K_ECHO) {
            /* a bidi peer may wait for the headers before it sends: send them at once */
            memset(&op, 0, sizeof(op));
            op.op = GRPC_OP_SEND_INITIAL_METADATA;
            op.data.send_initial_metadata.count = c->n_init_md;
            op.data.send_initial_metadata.metadata = c->init_md;
            c->initial_sent = true;
            start_batch(c, &op, 1, &c->t_meta);
        }
        start_recv(c);
    }
}

static void on_recv(struct call *c, bool ok)
{
    c->pending--;
    c->recv_inflight = false;
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    if (c->status_sent) {
        /* failed meanwhile (fail-after): nothing more is credited */
        if (bb) {
            grpc_byte_buffer_destroy(bb);
            pthread_mutex_lock(&g_lock);
            g_st.rejected_messages++;
            pthread_mutex_unlock(&g_lock);
        }
        maybe_free(c);
        return;
    }
    if (!ok) {
        /* the call broke (client cancel, deadline, transport): credit what was read */
        finalize(c);
        grpc_call_cancel(c->call, NULL);
        maybe_free(c);
        return;
    }
    if (!bb) {
        /* a cancelled call also ends its message stream with NULL; the close may have told
         * us already, else the reply simply fails */
        if (c->close_done && c->cancelled) {
            finalize(c);
        } else {
            end_of_stream(c);
        }
        maybe_free(c);
        return;
    }
    if (opt.fail_after) {
        uint64_t n = atomic_fetch_add(&g_accepted, 1) + 1;
        if (n > opt.fail_after) {
            atomic_store(&g_failing, 1);
            grpc_byte_buffer_destroy(bb);
            pthread_mutex_lock(&g_lock);
            g_st.rejected_messages++;
            pthread_mutex_unlock(&g_lock);
            fail_dead(c);
            maybe_free(c);
            return;
        }
    }
    if (g_nfail_ids && !opt.count_only && poison_intercept(c, bb)) {
        maybe_free(c);
        return;
    }
    bump(&c->w->msgs[c->method]);
    if (c->kind == K_ECHO) {
        echo_message(c, bb);
        grpc_byte_buffer_destroy(bb);
        maybe_free(c);
        return;
    }
    if (c->kind == K_SYNC || c->kind == K_GO_PROFILE) {
        grpc_slice s = tool_bb_flatten(bb);
        req_append(c, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
        grpc_slice_unref(s);
        c->echoed++;
    }
    if (opt.latency) {
        grpc_slice flat = tool_bb_flatten(bb);
        tool_stamp_scan(GRPC_SLICE_START_PTR(flat), GRPC_SLICE_LENGTH(flat), tool_wall_us());
        grpc_slice_unref(flat);
    }
    int rc = opt.count_only ? 0 : decode_and_credit(c, bb);
    grpc_byte_buffer_destroy(bb);
    if (rc < 0) {
        pthread_mutex_lock(&g_lock);
        g_st.decode_errors++;
        pthread_mutex_unlock(&g_lock);
        fail_call(c, GRPC_STATUS_INVALID_ARGUMENT, "fake_oap: cannot decode message");
    } else {
        start_recv(c);
    }
    maybe_free(c);
}

/* An echo SEND_MESSAGE completed. */
static void on_send(struct call *c, bool ok)
{
    c->pending--;
    c->send_inflight = false;
    if (c->send_buf) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    if (ok)
        echo_pump(c);
    else
        out_free_all(c); /* the call is gone: its close or recv ends it */
    maybe_free(c);
}

/* The final batch (status, with the reply and the initial metadata if not sent) completed. */
static void on_status(struct call *c)
{
    c->pending--;
    if (c->final_buf) {
        grpc_byte_buffer_destroy(c->final_buf);
        c->final_buf = NULL;
    }
    maybe_free(c);
}

static void on_meta(struct call *c)
{
    c->pending--;
    maybe_free(c);
}

static void on_close(struct call *c)
{
    c->pending--;
    c->close_done = true;
    /* RECV_CLOSE and the last RECV_MESSAGE complete in either order: count by the flag */
    if (c->cancelled && !c->we_failed) {
        pthread_mutex_lock(&g_lock);
        g_st.calls_cancelled++;
        pthread_mutex_unlock(&g_lock);
    }
    finalize(c);
    maybe_free(c);
}

static void fire_timers(struct worker *w)
{
    bool stopping = atomic_load(&g_stopping);
    int64_t now = tool_now_ms();
    while (w->timer_head && (stopping || w->timer_head->due_ms <= now)) {
        struct call *c = w->timer_head;
        w->timer_head = c->timer_next;
        if (!w->timer_head)
            w->timer_tail = NULL;
        c->pending--;
        if (!c->status_sent) {
            if (stopping) {
                /* a node going down does not acknowledge what it still holds */
                c->status_sent = true;
                grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAVAILABLE,
                                             "fake_oap: shutting down", NULL);
            } else {
                reply_ok(c);
            }
        }
        maybe_free(c);
    }
}

/* --fail-after reached: end every live call of this worker with the failure status. */
static void fail_all(struct worker *w)
{
    w->failed_all = true;
    struct call *c = w->active;
    while (c) {
        struct call *next = c->next;
        if (!c->status_sent)
            fail_dead(c);
        c = next;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        int64_t wait = SUMMARY_PERIOD_MS;
        if (w->timer_head) {
            int64_t d = w->timer_head->due_ms - tool_now_ms();
            wait = d < 0 ? 0 : d < wait ? d : wait;
        }
        grpc_event ev = grpc_completion_queue_next(w->cq, tool_deadline_ms(wait), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            switch (t->type) {
            case TAG_REQUEST:
                on_new_call(w, (struct request *)t, ev.success);
                break;
            case TAG_RECV:
                on_recv((struct call *)((char *)t - offsetof(struct call, t_recv)), ev.success);
                break;
            case TAG_SEND:
                on_send((struct call *)((char *)t - offsetof(struct call, t_send)), ev.success);
                break;
            case TAG_STATUS:
                on_status((struct call *)((char *)t - offsetof(struct call, t_status)));
                break;
            case TAG_META:
                on_meta((struct call *)((char *)t - offsetof(struct call, t_meta)));
                break;
            case TAG_CLOSE:
                on_close((struct call *)((char *)t - offsetof(struct call, t_close)));
                break;
            case TAG_SHUTDOWN:
                pthread_mutex_lock(&g_shutdown_mu);
                g_shutdown_done = true;
                pthread_cond_signal(&g_shutdown_cv);
                pthread_mutex_unlock(&g_shutdown_mu);
                break;
            }
        }
        if (!w->failed_all && atomic_load(&g_failing))
            fail_all(w);
        fire_timers(w);
    }
    return NULL;
}

/* ---------------------------------------------------------------- summary ------------- */

static void item_stats_init(struct item_stats *st)
{
    memset(st, 0, sizeof(*st));
    tool_set_init(&st->seen);
    tool_map_init(&st->by_service);
    tool_map_init(&st->by_key);
}

static void item_stats_deinit(struct item_stats *st)
{
    tool_set_deinit(&st->seen);
    tool_map_deinit(&st->by_service);
    tool_map_deinit(&st->by_key);
}

static void item_stats_json(struct tool_json *j, const char *name, const struct item_stats *st,
                            const char *key_name, const char *uncredited_name, bool services)
{
    tool_json_obj_open(j, name);
    tool_json_u64(j, "total", st->total);
    tool_json_u64(j, "unique", st->unique);
    tool_json_u64(j, "duplicates", st->duplicates);
    if (services)
        tool_map_to_json(&st->by_service, j, "by_service");
    tool_map_to_json(&st->by_key, j, key_name);
    if (uncredited_name)
        tool_json_u64(j, uncredited_name, st->uncredited);
    tool_json_obj_close(j);
}

static void method_counts_json(struct tool_json *j, const char *name, bool calls, int nmethods)
{
    struct tool_map m;
    tool_map_init(&m);
    for (int i = 0; i < nmethods; i++) {
        uint64_t sum = 0;
        for (int k = 0; k < opt.threads; k++)
            sum += atomic_load_explicit(calls ? &g_workers[k].calls[i] : &g_workers[k].msgs[i],
                                        memory_order_relaxed);
        if (sum)
            tool_map_add(&m, g_method_names[i], strlen(g_method_names[i]), sum);
    }
    tool_map_to_json(&m, j, name);
    tool_map_deinit(&m);
}

static void build_summary(struct tool_json *j)
{
    pthread_mutex_lock(&g_lock);
    tool_json_obj_open(j, NULL);
    tool_json_str_member(j, "name", opt.name);
    tool_json_u64(j, "port", (uint64_t)g_port);
    tool_json_bool(j, "failing", atomic_load(&g_failing));
    method_counts_json(j, "messages", false, g_nmethods);
    method_counts_json(j, "calls", true, g_nmethods);
    tool_json_u64(j, "calls_failed", g_st.calls_failed);
    tool_json_u64(j, "calls_cancelled", g_st.calls_cancelled);
    tool_json_u64(j, "decode_errors", g_st.decode_errors);
    tool_json_u64(j, "rejected_messages", g_st.rejected_messages);
    tool_json_u64(j, "auth_rejected", g_st.auth_rejected);
    tool_json_u64(j, "poison_refusals", g_poison_refusals);
    tool_map_to_json(&g_st.unimplemented, j, "unimplemented");
    item_stats_json(j, "segments", &g_st.seg, "by_instance", NULL, true);
    item_stats_json(j, "logs", &g_st.log, "by_instance", "unattributed", false);
    item_stats_json(j, "meters", &g_st.met, "by_instance", "dropped", false);
    tool_map_to_json(&g_stl_names, j, "self_meters");
    item_stats_json(j, "als", &g_st.als, "by_identifier", "unidentified", false);
    tool_json_obj_open(j, "management");
    tool_json_u64(j, "keepalive", g_st.keepalive);
    tool_json_u64(j, "properties", g_st.properties);
    tool_map_to_json(&g_st.keepalive_by_instance, j, "keepalive_by_instance");
    tool_map_to_json(&g_st.properties_by_instance, j, "properties_by_instance");
    tool_json_obj_close(j);
    tool_json_obj_close(j);
    pthread_mutex_unlock(&g_lock);
}

/* Rewrites the summary file if the text changed since the last write. */
/* Writes every id hash seen, so that a test can take the union over several
 * nodes: a message re-sent to another node is unique on each node, so only
 * the union tells whether anything was lost. */
static void write_ids(const char *path)
{
    static const char *const kinds[] = {"segment", "log", "meter", "als"};
    const struct item_stats *st[] = {&g_st.seg, &g_st.log, &g_st.met, &g_st.als};
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fake_oap: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < st[k]->seen.cap; i++)
            if (st[k]->seen.slots[i]) fprintf(f, "%s %016" PRIx64 "\n", kinds[k], st[k]->seen.slots[i]);
    fclose(f);
}

static void write_summary(char **last, bool print)
{
    struct tool_json j;
    tool_json_init(&j);
    build_summary(&j);
    const char *s = tool_json_str(&j);
    if (opt.summary && (!*last || strcmp(*last, s) != 0)) {
        if (tool_write_file_atomic(opt.summary, s, j.len) != 0)
            fprintf(stderr, "fake_oap: cannot write %s: %s\n", opt.summary, strerror(errno));
        free(*last);
        *last = strdup(s);
    }
    if (print) {
        printf("%s\n", s);
        fflush(stdout);
    }
    tool_json_deinit(&j);
}

/* ---------------------------------------------------------------- main ---------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fake_oap --listen HOST:PORT [--name NAME] [--summary FILE] [--port-file FILE]\n"
            "                [--count-only] [--fail-after N] [--fail-status CODE] [--delay-ms MS]\n"
            "                [--max-recv-size BYTES] [--threads N] [--token T] [--ids FILE]\n"
            "                [--latency FILE]\n"
            "                [--hang-method PATH]... [--status-method PATH=CODE]...\n"
            "                [--fail-id ID]...\n"
            "                [--record-metadata FILE] [--reply-metadata K=V]... [--status-details HEX]\n"
            "                [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--cds-uuid U]\n"
            "A fake SkyWalking OAP node: counts and credits what it receives (docs/test-tools.md).\n"
            "  --listen          address to listen on; port 0 picks a free port, printed as\n"
            "                    'listening HOST:PORT' on stdout\n"
            "  --name            name in the summary (default oap)\n"
            "  --summary         JSON summary, rewritten atomically every 100 ms when it changed\n"
            "  --ids FILE        at exit, write the hash of every id seen (\"<kind> <hex>\" per line)\n"
            "  --port-file       write the chosen port number to this file\n"
            "  --count-only      do not decode, only count messages per method (benchmark)\n"
            "  --latency FILE    at exit, write receive time - send time (us) of every message\n"
            "                    stamped by loadgen --stamp-every, one per line (benchmark)\n"
            "  --fail-after N    after N accepted messages, fail every further message and call\n"
            "  --fail-status     status code used then (default 14 UNAVAILABLE)\n"
            "  --delay-ms        wait this long before answering a finished stream\n"
            "  --max-recv-size   max inbound message size (default 52428800 = 50 MiB)\n"
            "  --threads         worker threads, one completion queue each (default 2)\n"
            "  --token           require metadata 'authentication: T' on report calls, else\n"
            "                    PERMISSION_DENIED (as OAP does when a token is configured)\n"
            "  --hang-method P   never answer calls to path P (repeatable): the client's\n"
            "                    deadline or cancel ends them\n"
            "  --status-method P=CODE  answer calls to path P with status CODE (1..16) and\n"
            "                    details 'fake status' (repeatable)\n"
            "  --fail-id ID      a report call carrying an item with this id (traceSegmentId, log\n"
            "                    text, meter name, ALS request_id) ends with INTERNAL 'fake_oap:\n"
            "                    poison ID'; items read before it in a stream stay credited,\n"
            "                    collectInSync/collectBatch calls are refused whole (repeatable)\n"
            "  --record-metadata FILE  append one line per call: the path, then each request\n"
            "                    metadata entry as key=value, tab-separated\n"
            "  --reply-metadata K=V  add K: V to the initial and trailing metadata of synchronous,\n"
            "                    relay, --hang-method and --status-method calls (repeatable)\n"
            "  --status-details HEX  --status-method answers also carry these bytes as\n"
            "                    trailing metadata grpc-status-details-bin\n"
            "  --tls-cert, --tls-key  listen with TLS using this certificate chain and key\n"
            "                    (PEM files; default: cleartext h2c)\n"
            "  --tls-client-ca   with TLS: require a client certificate signed by these CAs\n"
            "  --cds-uuid U      fetchConfigurations answers as OAP does for a configuration\n"
            "                    whose UUID is U (empty Commands for uuid U, else one\n"
            "                    ConfigurationDiscoveryCommand), after --delay-ms if set\n");
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--count-only") == 0) {
            opt.count_only = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "fake_oap: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--listen") == 0)
            opt.listen = v;
        else if (strcmp(a, "--name") == 0)
            opt.name = v;
        else if (strcmp(a, "--summary") == 0)
            opt.summary = v;
        else if (strcmp(a, "--latency") == 0)
            opt.latency = v;
        else if (strcmp(a, "--ids") == 0)
            opt.ids = v;
        else if (strcmp(a, "--port-file") == 0)
            opt.port_file = v;
        else if (strcmp(a, "--cds-uuid") == 0)
            opt.cds_uuid = v;
        else if (strcmp(a, "--token") == 0)
            opt.token = v;
        else if (strcmp(a, "--tls-cert") == 0)
            opt.tls_cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            opt.tls_key = v;
        else if (strcmp(a, "--tls-client-ca") == 0)
            opt.tls_client_ca = v;
        else if (strcmp(a, "--fail-id") == 0) {
            if (g_nfail_ids >= MAX_FAIL_IDS || !*v) {
                fprintf(stderr, "fake_oap: bad option or value: %s %s\n", a, v);
                return -1;
            }
            g_fail_ids[g_nfail_ids++] = v;
        } else if (strcmp(a, "--hang-method") == 0 || strcmp(a, "--status-method") == 0) {
            if (opt.noverrides >= MAX_OVERRIDES || v[0] != '/') {
                fprintf(stderr, "fake_oap: bad option or value: %s %s\n", a, v);
                return -1;
            }
            struct override *o = &opt.overrides[opt.noverrides];
            if (a[2] == 'h') {
                o->path = v;
                o->status = 0;
            } else {
                const char *eq = strrchr(v, '=');
                if (!eq || eq == v || tool_parse_u64(eq + 1, 1, 16, &n) != 0) {
                    fprintf(stderr, "fake_oap: --status-method wants PATH=CODE (1..16): %s\n", v);
                    return -1;
                }
                char *path = strndup(v, (size_t)(eq - v));
                if (!path)
                    abort();
                o->path = path; /* lives until exit */
                o->status = (int)n;
            }
            opt.noverrides++;
        } else if (strcmp(a, "--record-metadata") == 0) {
            g_md_log = fopen(v, "a");
            if (!g_md_log) {
                fprintf(stderr, "fake_oap: cannot open %s: %s\n", v, strerror(errno));
                return -1;
            }
        } else if (strcmp(a, "--reply-metadata") == 0) {
            const char *eq = strchr(v, '=');
            if (g_n_reply_md >= MAX_REPLY_MD || !eq || eq == v || eq - v >= 128) {
                fprintf(stderr, "fake_oap: --reply-metadata wants KEY=VALUE: %s\n", v);
                return -1;
            }
            g_reply_md[g_n_reply_md++] = v;
        } else if (strcmp(a, "--status-details") == 0) {
            if (parse_hex(v, &g_status_details, &g_status_details_len) != 0) {
                fprintf(stderr, "fake_oap: --status-details wants hex bytes: %s\n", v);
                return -1;
            }
        } else if (strcmp(a, "--fail-after") == 0 && tool_parse_u64(v, 1, UINT64_MAX, &n) == 0)
            opt.fail_after = n;
        else if (strcmp(a, "--fail-status") == 0 && tool_parse_u64(v, 1, 16, &n) == 0)
            opt.fail_status = (int)n;
        else if (strcmp(a, "--delay-ms") == 0 && tool_parse_u64(v, 0, 3600000, &n) == 0)
            opt.delay_ms = (int64_t)n;
        else if (strcmp(a, "--max-recv-size") == 0 && tool_parse_u64(v, 1, INT32_MAX, &n) == 0)
            opt.max_recv = (int)n;
        else if (strcmp(a, "--threads") == 0 && tool_parse_u64(v, 1, MAX_WORKERS, &n) == 0)
            opt.threads = (int)n;
        else {
            fprintf(stderr, "fake_oap: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (!opt.listen) {
        fprintf(stderr, "fake_oap: --listen is required\n");
        return -1;
    }
    return 0;
}

static void write_port_file(void)
{
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d", g_port);
    if (tool_write_file_atomic(opt.port_file, buf, (size_t)n) != 0)
        fprintf(stderr, "fake_oap: cannot write %s: %s\n", opt.port_file, strerror(errno));
}

/* h2c, or TLS (and mTLS) with --tls-cert/--tls-key[/--tls-client-ca]; NULL on a bad file. */
static grpc_server_credentials *server_credentials(void)
{
    grpc_server_credentials *creds;
    grpc_ssl_pem_key_cert_pair pair;
    char *cert, *key, *ca = NULL;

    if (!opt.tls_cert && !opt.tls_key)
        return grpc_insecure_server_credentials_create();
    if (!opt.tls_cert || !opt.tls_key) {
        fprintf(stderr, "fake_oap: --tls-cert and --tls-key go together\n");
        return NULL;
    }
    cert = tool_read_file("fake_oap", opt.tls_cert);
    key = tool_read_file("fake_oap", opt.tls_key);
    if (opt.tls_client_ca)
        ca = tool_read_file("fake_oap", opt.tls_client_ca);
    if (!cert || !key || (opt.tls_client_ca && !ca)) {
        free(cert);
        free(key);
        free(ca);
        return NULL;
    }
    pair.private_key = key;
    pair.cert_chain = cert;
    creds = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    free(cert);
    free(key);
    free(ca);
    return creds;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    sigset_t sigs;
    tool_block_signals(&sigs); /* before grpc_init: gRPC's threads inherit the mask */

    item_stats_init(&g_st.seg);
    item_stats_init(&g_st.log);
    item_stats_init(&g_st.met);
    item_stats_init(&g_st.als);
    tool_map_init(&g_st.unimplemented);
    tool_map_init(&g_stl_names);
    tool_map_init(&g_st.keepalive_by_instance);
    tool_map_init(&g_st.properties_by_instance);

    grpc_init();
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = opt.max_recv;
    grpc_channel_args chargs = {1, args};
    g_server = grpc_server_create(&chargs, NULL);
    for (int i = 0; i < opt.threads; i++) {
        g_workers[i].idx = i;
        g_workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(g_server, g_workers[i].cq, NULL);
    }
    grpc_server_credentials *creds = server_credentials();
    g_port = creds ? grpc_server_add_http2_port(g_server, opt.listen, creds) : 0;
    if (creds)
        grpc_server_credentials_release(creds);
    int rc = 0;
    if (g_port == 0) {
        fprintf(stderr, "fake_oap: cannot listen on %s\n", opt.listen);
        rc = 1;
    }
    grpc_server_start(g_server);

    if (rc == 0) {
        const char *colon = strrchr(opt.listen, ':');
        int hostlen = colon ? (int)(colon - opt.listen) : (int)strlen(opt.listen);
        printf("listening %.*s:%d\n", hostlen, opt.listen, g_port);
        fflush(stdout);
        if (opt.port_file)
            write_port_file();
        for (int i = 0; i < opt.threads; i++) {
            struct worker *w = &g_workers[i];
            for (int k = 0; k < REQS_PER_WORKER; k++) {
                w->reqs[k].tag.type = TAG_REQUEST;
                w->reqs[k].w = w;
                grpc_call_details_init(&w->reqs[k].details);
                grpc_metadata_array_init(&w->reqs[k].md);
                arm_request(w, &w->reqs[k]);
            }
        }
    }
    for (int i = 0; i < opt.threads; i++)
        pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]);

    char *last = NULL;
    if (rc == 0) {
        struct timespec period = {0, SUMMARY_PERIOD_MS * 1000000L};
        for (;;) {
            int sig = sigtimedwait(&sigs, NULL, &period);
            if (sig == SIGINT || sig == SIGTERM)
                break;
            write_summary(&last, false);
        }
    }

    /* shutdown order: grpc-core-notes §4(g) */
    atomic_store(&g_stopping, 1);
    grpc_server_shutdown_and_notify(g_server, g_workers[0].cq, &g_shutdown_tag);
    grpc_server_cancel_all_calls(g_server);
    pthread_mutex_lock(&g_shutdown_mu);
    while (!g_shutdown_done)
        pthread_cond_wait(&g_shutdown_cv, &g_shutdown_mu);
    pthread_mutex_unlock(&g_shutdown_mu);
    grpc_server_destroy(g_server);
    for (int i = 0; i < opt.threads; i++)
        grpc_completion_queue_shutdown(g_workers[i].cq);
    for (int i = 0; i < opt.threads; i++) {
        pthread_join(g_workers[i].thread, NULL);
        grpc_completion_queue_destroy(g_workers[i].cq);
        for (int k = 0; k < REQS_PER_WORKER; k++) {
            grpc_call_details_destroy(&g_workers[i].reqs[k].details);
            grpc_metadata_array_destroy(&g_workers[i].reqs[k].md);
        }
    }

    if (rc == 0 && opt.ids)
        write_ids(opt.ids);
    if (rc == 0 && opt.latency && tool_stamp_write_file(opt.latency) != 0)
        fprintf(stderr, "fake_oap: cannot write %s: %s\n", opt.latency, strerror(errno));
    if (rc == 0)
        write_summary(&last, true);
    free(last);
    item_stats_deinit(&g_st.seg);
    item_stats_deinit(&g_st.log);
    item_stats_deinit(&g_st.met);
    item_stats_deinit(&g_st.als);
    tool_map_deinit(&g_st.unimplemented);
    tool_map_deinit(&g_stl_names);
    tool_map_deinit(&g_st.keepalive_by_instance);
    tool_map_deinit(&g_st.properties_by_instance);
    for (int i = 0; i < g_nmethods; i++)
        free(g_method_names[i]);
    grpc_shutdown();
    return rc;
}
