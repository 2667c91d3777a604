/* libFuzzer target: the schema validation (src/receiver/schema.c) on
 * arbitrary bytes. The first byte picks the message type (one per async
 * method's schema), the rest is the message; the rest is also checked as a
 * SegmentObject. Beyond "no crash, no UB, no leak":
 *
 * - ACCEPTED => protobuf-c unpacks it. What we accept must be a message a
 *   real parser reads. Three exceptions, all protobuf-c's limits, not
 *   malformed input: an unknown group (protobuf, OAP's Java parser included,
 *   skips it; protobuf-c refuses groups at all); a non-repeated message field
 *   that occurs twice (protobuf merges the two; protobuf-c 1.4 fails to merge
 *   a message whose oneof is unset); a tag or length written with more than
 *   5 bytes (padded with 0x80 bytes: Java and upb read up to 10, protobuf-c
 *   5). An accepted message holding any of these is not held to this. For
 *   SegmentObject only the groups and the padding can apply (its schema has
 *   no non-repeated message field).
 * - The other direction (protobuf-c unpacks => accepted) does not hold as
 *   such: protobuf-c checks no UTF-8, has no depth limit, reads some known
 *   fields sent with another wire type (a bool sent as LEN) and truncates a
 *   tag varint to 32 bits, all of which we refuse on purpose. It is asserted
 *   with exactly those four exceptions: a message protobuf-c reads that we
 *   refuse must be refused for invalid UTF-8, depth, a wrong wire type or a
 *   tag beyond 32 bits, nothing else (so no other framing error is ours
 *   alone).
 * - the reason is a NUL-terminated string whenever a message is refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/schema.h"

#include "envoy_als.pb-c.h"
#include "tracing.pb-c.h"

static const char *const methods[] = {
    "/skywalking.v3.TraceSegmentReportService/collect",
    "/skywalking.v3.TraceSegmentReportService/collectInSync",
    "/skywalking.v3.LogReportService/collect",
    "/skywalking.v3.MeterReportService/collect",
    "/skywalking.v3.MeterReportService/collectBatch",
    "/skywalking.v3.JVMMetricReportService/collect",
    "/skywalking.v3.CLRMetricReportService/collect",
    "/skywalking.v3.EventService/collect",
    "/skywalking.v3.SpanAttachedEventReportService/collect",
    "/skywalking.v3.ProfileTask/collectSnapshot",
    "/skywalking.v3.EBPFProfilingService/collectProfilingData",
    "/skywalking.v3.EBPFAccessLogService/collect",
    "/skywalking.v3.ManagementService/keepAlive",
    "/skywalking.v3.ManagementService/reportInstanceProperties",
    "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
    "/envoy.service.metrics.v3.MetricsService/StreamMetrics",
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static int field(const ProtobufCMessageDescriptor *d, uint32_t num)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].id == num) return (int)i;
    return -1;
}

/* Whether a message sr_schema_check accepted holds, anywhere, an unknown group
 * or a non-repeated message field twice (see above). A plain recursive walk:
 * the framing is known to be valid. */
static int beyond_protobuf_c(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n)
{
    size_t i = 0;
    uint64_t seen = 0;
    while (i < n) {
        uint64_t tag, v;
        size_t k = varint(p + i, n - i, &tag);
        if (k > 5) return 1;
        i += k;
        switch (tag & 7) {
        case 0:
            i += varint(p + i, n - i, &v);
            break;
        case 1:
            i += 8;
            break;
        case 5:
            i += 4;
            break;
        case 2: {
            k = varint(p + i, n - i, &v);
            if (k > 5) return 1;
            i += k;
            int x = field(d, (uint32_t)(tag >> 3));
            const ProtobufCFieldDescriptor *f = x < 0 ? NULL : &d->fields[x];
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (f->label != PROTOBUF_C_LABEL_REPEATED) {
                    if (x < 64 && (seen & (1ULL << x))) return 1;
                    if (x < 64) seen |= 1ULL << x;
                }
                if (beyond_protobuf_c(f->descriptor, p + i, v)) return 1;
            }
            i += v;
            break;
        }
        default:
            return 1;
        }
    }
    return 0;
}

static void check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n)
{
    const char *why = NULL;
    int r = sr_schema_check(d, p, n, &why);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);

    if (r == 0) {
        if (!m && !beyond_protobuf_c(d, p, n)) {
            fprintf(stderr, "%s: accepted, protobuf-c refuses\n", d->name);
            abort();
        }
    } else {
        if (!why || strlen(why) == 0) abort();
        if (m && !strstr(why, "UTF-8") && !strstr(why, "nested deeper") &&
            !strstr(why, "wrong wire type") && !strstr(why, "invalid field number")) {
            fprintf(stderr, "%s: protobuf-c reads it, refused: %s\n", d->name, why);
            abort();
        }
    }
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n == 0) return 0;
    const char *path = methods[d[0] % N_METHODS];
    const ProtobufCMessageDescriptor *desc = sr_schema_for_method(path, strlen(path));
    if (!desc) abort();
    check(desc, d + 1, n - 1);
    check(&skywalking__v3__segment_object__descriptor, d + 1, n - 1);
    return 0;
}
