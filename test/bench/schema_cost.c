/* Cost of sr_schema_check per message, for callgrind (test/bench/schema_cost.sh).
 *
 * Two ~500-byte SegmentObjects, packed by protobuf-c:
 *  - "loadgen": the shape build/loadgen sends in the data-path benchmark
 *    (docs/performance.md): one span, one tag padded with ASCII to ~500 B;
 *  - "rich": about the same size spread over 3 spans with 2 tags each, a ref
 *    and a log: many short fields, the costly case per byte.
 * Each is checked ITERATIONS times; callgrind counts only inside
 * sr_schema_check (--toggle-collect), so instructions / ITERATIONS is the cost
 * of one message. Prints the sizes; exits non-zero if a check fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/schema.h"
#include "tracing.pb-c.h"

#define ITERATIONS 100000

static size_t pack_loadgen(uint8_t *out)
{
    static char pad[512];
    Skywalking__V3__KeyStringValuePair tag = SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT;
    Skywalking__V3__KeyStringValuePair *tags[1] = {&tag};
    Skywalking__V3__SpanObject span = SKYWALKING__V3__SPAN_OBJECT__INIT;
    Skywalking__V3__SpanObject *spans[1] = {&span};
    Skywalking__V3__SegmentObject seg = SKYWALKING__V3__SEGMENT_OBJECT__INIT;

    memset(pad, 'x', 380);
    tag.key = "pad", tag.value = pad;
    span.spanid = 0, span.parentspanid = -1;
    span.starttime = 1700000000000, span.endtime = 1700000000001;
    span.operationname = "/loadgen/op", span.spantype = SKYWALKING__V3__SPAN_TYPE__Entry;
    span.spanlayer = SKYWALKING__V3__SPAN_LAYER__Http, span.componentid = 1;
    span.n_tags = 1, span.tags = tags;
    seg.traceid = "lg-trace-3-1234", seg.tracesegmentid = "lg-3-1234";
    seg.n_spans = 1, seg.spans = spans;
    seg.service = "loadgen-svc-3", seg.serviceinstance = "loadgen-inst-3";
    return skywalking__v3__segment_object__pack(&seg, out);
}

static size_t pack_rich(uint8_t *out)
{
    static const char *const keys[2] = {"http.method", "url"};
    static const char *const vals[2] = {"GET", "/api/orders/42?expand=items"};
    Skywalking__V3__KeyStringValuePair kv[3][2], *pkv[3][2];
    Skywalking__V3__KeyStringValuePair lkv = SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT;
    Skywalking__V3__KeyStringValuePair *plkv[1] = {&lkv};
    Skywalking__V3__Log log = SKYWALKING__V3__LOG__INIT;
    Skywalking__V3__Log *logs[1] = {&log};
    Skywalking__V3__SegmentReference ref = SKYWALKING__V3__SEGMENT_REFERENCE__INIT;
    Skywalking__V3__SegmentReference *refs[1] = {&ref};
    Skywalking__V3__SpanObject span[3], *spans[3];
    Skywalking__V3__SegmentObject seg = SKYWALKING__V3__SEGMENT_OBJECT__INIT;

    for (int s = 0; s < 3; s++) {
        skywalking__v3__span_object__init(&span[s]);
        for (int t = 0; t < 2; t++) {
            skywalking__v3__key_string_value_pair__init(&kv[s][t]);
            kv[s][t].key = (char *)keys[t], kv[s][t].value = (char *)vals[t];
            pkv[s][t] = &kv[s][t];
        }
        span[s].spanid = s, span[s].parentspanid = s - 1;
        span[s].starttime = 1700000000000 + s, span[s].endtime = 1700000000100;
        span[s].operationname = "/api/orders/{id}", span[s].peer = s ? "db-0.orders:5432" : "";
        span[s].spantype = s ? SKYWALKING__V3__SPAN_TYPE__Exit : SKYWALKING__V3__SPAN_TYPE__Entry;
        span[s].spanlayer = SKYWALKING__V3__SPAN_LAYER__Http, span[s].componentid = 14;
        span[s].n_tags = 2, span[s].tags = pkv[s];
        spans[s] = &span[s];
    }
    ref.traceid = "a1b2c3d4e5f6.71.17000000000000001", ref.parenttracesegmentid = "a1b2c3.70.1";
    ref.parentspanid = 2, ref.parentservice = "gateway", ref.parentserviceinstance = "gw-1";
    ref.parentendpoint = "/api", ref.networkaddressusedatpeer = "10.0.0.1:8080";
    span[0].n_refs = 1, span[0].refs = refs;
    lkv.key = "event", lkv.value = "error";
    log.time = 1700000000050, log.n_data = 1, log.data = plkv;
    span[2].n_logs = 1, span[2].logs = logs;
    seg.traceid = "a1b2c3d4e5f6.71.17000000000000001";
    seg.tracesegmentid = "a1b2c3d4e5f6.72.17000000000000002";
    seg.n_spans = 3, seg.spans = spans;
    seg.service = "orders", seg.serviceinstance = "orders-7d9f@10.0.0.7";
    return skywalking__v3__segment_object__pack(&seg, out);
}

int main(int argc, char **argv)
{
    static uint8_t buf[4096];
    const char *which = argc > 1 ? argv[1] : "loadgen";
    size_t n = strcmp(which, "rich") == 0 ? pack_rich(buf) : pack_loadgen(buf);
    const char *why = NULL;
    int bad = 0;

    for (int i = 0; i < ITERATIONS; i++)
        bad |= sr_schema_check(&skywalking__v3__segment_object__descriptor, buf, n, &why);
    if (bad) {
        fprintf(stderr, "schema_cost: %s refused: %s\n", which, why);
        return 1;
    }
    printf("shape=%s bytes=%zu iterations=%d\n", which, n, ITERATIONS);
    return 0;
}
