/* Unit tests for src/receiver/wire.c: varints, the top-level field walker,
 * the scanner (on hand-written and on protobuf-c encodings) and FNV-1a. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "unit_grpc.h"
#include <grpc/grpc.h>

#include "logging.pb-c.h"
#include "skyrelay/wire.h"
#include "tracing.pb-c.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- varints ---- */

static void varint_round_trips_boundary_values(void **state)
{
    static const struct {
        uint64_t v;
        size_t len;
    } cases[] = {
        {0, 1},
        {1, 1},
        {127, 1},
        {128, 2},
        {300, 2},
        {16383, 2},
        {16384, 3},
        {(1ULL << 32) - 1, 5},
        {1ULL << 32, 5},
        {1ULL << 63, 10},
        {UINT64_MAX, 10},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t buf[16];
        uint64_t back = 0xdeadbeef;
        memset(buf, 0xaa, sizeof(buf));
        size_t k = sr_pb_put_varint(buf, cases[i].v);
        assert_int_equal(k, cases[i].len);
        assert_int_equal(buf[k], 0xaa); /* wrote nothing past the varint */
        assert_int_equal(sr_pb_varint(buf, k, &back), k);
        assert_true(back == cases[i].v);
        /* trailing bytes are not consumed */
        assert_int_equal(sr_pb_varint(buf, sizeof(buf), &back), k);
        assert_true(back == cases[i].v);
    }
}

static void varint_encodes_300_as_ac_02(void **state)
{
    uint8_t buf[10];
    (void)state;
    assert_int_equal(sr_pb_put_varint(buf, 300), 2);
    assert_int_equal(buf[0], 0xac);
    assert_int_equal(buf[1], 0x02);
}

static void varint_truncated_is_malformed(void **state)
{
    static const uint8_t one_cont[] = {0x80};
    static const uint8_t two_cont[] = {0xff, 0xff};
    uint8_t buf[10];
    uint64_t v = 7;
    (void)state;
    assert_int_equal(sr_pb_varint(one_cont, 0, &v), 0); /* nothing at all */
    assert_int_equal(sr_pb_varint(one_cont, sizeof(one_cont), &v), 0);
    assert_int_equal(sr_pb_varint(two_cont, sizeof(two_cont), &v), 0);
    size_t k = sr_pb_put_varint(buf, UINT64_MAX);
    assert_int_equal(sr_pb_varint(buf, k - 1, &v), 0); /* cut one byte short */
    assert_int_equal(v, 7);                             /* untouched on failure */
}

static void varint_of_11_bytes_is_malformed(void **state)
{
    uint8_t buf[11];
    uint64_t v;
    (void)state;
    memset(buf, 0x80, 10);
    buf[10] = 0x00;
    assert_int_equal(sr_pb_varint(buf, sizeof(buf), &v), 0);
}

static void varint_overflowing_in_10th_byte_is_malformed(void **state)
{
    uint8_t buf[10];
    uint64_t v = 0;
    (void)state;
    memset(buf, 0xff, 9);
    buf[9] = 0x01; /* exactly 64 bits: UINT64_MAX */
    assert_int_equal(sr_pb_varint(buf, 10, &v), 10);
    assert_true(v == UINT64_MAX);
    buf[9] = 0x02; /* bit 64 set: overflow */
    assert_int_equal(sr_pb_varint(buf, 10, &v), 0);
    buf[9] = 0x7f;
    assert_int_equal(sr_pb_varint(buf, 10, &v), 0);
}

static void varint_non_canonical_10_byte_zero_is_accepted(void **state)
{
    uint8_t buf[10];
    uint64_t v = 1;
    (void)state;
    memset(buf, 0x80, 9);
    buf[9] = 0x00;
    assert_int_equal(sr_pb_varint(buf, 10, &v), 10);
    assert_true(v == 0);
}

/* ---- sr_pb_next ---- */

/* field 1 varint 150, field 2 LEN "abc", field 3 fixed32, field 4 fixed64 */
static const uint8_t four_fields[] = {
    0x08, 0x96, 0x01,                               /* 0: 1:VARINT 150 */
    0x12, 0x03, 'a',  'b',  'c',                    /* 3: 2:LEN "abc" */
    0x1d, 0x01, 0x02, 0x03, 0x04,                   /* 8: 3:I32 */
    0x21, 1,    2,    3,    4,    5,   6,   7,  8, /* 13: 4:I64 */
};

static void next_walks_every_wire_type_with_offsets(void **state)
{
    struct sr_pb_field f;
    size_t pos = 0;
    (void)state;

    assert_int_equal(sr_pb_next(four_fields, sizeof(four_fields), &pos, &f), 1);
    assert_int_equal(f.number, 1);
    assert_int_equal(f.wire_type, SR_WT_VARINT);
    assert_int_equal(f.present, 1);
    assert_int_equal(f.off, 0);
    assert_int_equal(f.size, 3);
    assert_int_equal(f.val_off, 1);
    assert_int_equal(f.val_len, 2);
    assert_int_equal(f.varint, 150);
    assert_int_equal(pos, 3);

    assert_int_equal(sr_pb_next(four_fields, sizeof(four_fields), &pos, &f), 1);
    assert_int_equal(f.number, 2);
    assert_int_equal(f.wire_type, SR_WT_LEN);
    assert_int_equal(f.off, 3);
    assert_int_equal(f.size, 5);
    assert_int_equal(f.val_off, 5);
    assert_int_equal(f.val_len, 3);
    assert_memory_equal(four_fields + f.val_off, "abc", 3);
    assert_int_equal(pos, 8);

    assert_int_equal(sr_pb_next(four_fields, sizeof(four_fields), &pos, &f), 1);
    assert_int_equal(f.number, 3);
    assert_int_equal(f.wire_type, SR_WT_I32);
    assert_int_equal(f.off, 8);
    assert_int_equal(f.size, 5);
    assert_int_equal(f.val_off, 9);
    assert_int_equal(f.val_len, 4);
    assert_int_equal(pos, 13);

    assert_int_equal(sr_pb_next(four_fields, sizeof(four_fields), &pos, &f), 1);
    assert_int_equal(f.number, 4);
    assert_int_equal(f.wire_type, SR_WT_I64);
    assert_int_equal(f.off, 13);
    assert_int_equal(f.size, 9);
    assert_int_equal(f.val_off, 14);
    assert_int_equal(f.val_len, 8);
    assert_int_equal(pos, sizeof(four_fields));

    assert_int_equal(sr_pb_next(four_fields, sizeof(four_fields), &pos, &f), 0);
    assert_int_equal(pos, sizeof(four_fields));
}

static void next_on_empty_message_is_end(void **state)
{
    struct sr_pb_field f;
    size_t pos = 0;
    (void)state;
    assert_int_equal(sr_pb_next(four_fields, 0, &pos, &f), 0);
}

static void next_handles_large_field_numbers(void **state)
{
    /* field 536870911 (max), wire type 0, value 1; tag = (2^29-1)<<3 = 0xFFFFFFF8 */
    uint8_t buf[16];
    struct sr_pb_field f;
    size_t pos = 0, k;
    (void)state;
    k = sr_pb_put_varint(buf, ((uint64_t)0x1fffffff << 3) | SR_WT_VARINT);
    buf[k++] = 0x01;
    assert_int_equal(sr_pb_next(buf, k, &pos, &f), 1);
    assert_int_equal(f.number, 0x1fffffff);
    assert_int_equal(f.varint, 1);

    /* one more than the max field number is malformed */
    pos = 0;
    k = sr_pb_put_varint(buf, ((uint64_t)0x20000000 << 3) | SR_WT_VARINT);
    buf[k++] = 0x01;
    assert_int_equal(sr_pb_next(buf, k, &pos, &f), SR_PB_EMALFORMED);
}

/* ---- sr_pb_scan ---- */

static void scan_reports_last_occurrence_of_a_repeated_field(void **state)
{
    static const uint8_t msg[] = {
        0x12, 0x01, 'x',      /* 2: "x" */
        0x08, 0x05,           /* 1: 5 */
        0x12, 0x02, 'y', 'z', /* 2: "yz" */
        0x08, 0x07,           /* 1: 7 */
    };
    static const uint32_t want[] = {2, 1};
    struct sr_pb_field out[2];
    (void)state;
    assert_int_equal(sr_pb_scan(msg, sizeof(msg), want, 2, out), 4);
    assert_true(out[0].present);
    assert_int_equal(out[0].off, 5);
    assert_int_equal(out[0].size, 4);
    assert_int_equal(out[0].val_len, 2);
    assert_memory_equal(msg + out[0].val_off, "yz", 2);
    assert_true(out[1].present);
    assert_int_equal(out[1].off, 9);
    assert_int_equal(out[1].varint, 7);
}

static void scan_reports_absent_fields_as_not_present(void **state)
{
    static const uint32_t want[] = {9, 2, 5};
    struct sr_pb_field out[3];
    (void)state;
    memset(out, 0xff, sizeof(out)); /* stale garbage must be cleared */
    assert_int_equal(sr_pb_scan(four_fields, sizeof(four_fields), want, 3, out), 4);
    assert_false(out[0].present);
    assert_true(out[1].present);
    assert_int_equal(out[1].off, 3);
    assert_false(out[2].present);
}

static void scan_counts_top_level_fields_only(void **state)
{
    /* field 1 LEN holding three nested fields, then field 2 varint */
    static const uint8_t msg[] = {0x0a, 0x06, 0x08, 0x01, 0x08, 0x02, 0x08, 0x03, 0x10, 0x01};
    struct sr_pb_field out[1];
    static const uint32_t want[] = {1};
    (void)state;
    assert_int_equal(sr_pb_scan(msg, sizeof(msg), want, 1, out), 2);
    assert_int_equal(out[0].val_len, 6);
    assert_int_equal(sr_pb_scan(msg, sizeof(msg), NULL, 0, NULL), 2);
    assert_int_equal(sr_pb_scan(msg, 0, want, 1, out), 0);
    assert_false(out[0].present);
}

static void scan_accepts_zero_length_len_field_at_the_end(void **state)
{
    static const uint8_t msg[] = {0x08, 0x01, 0x12, 0x00};
    static const uint32_t want[] = {2};
    struct sr_pb_field out[1];
    (void)state;
    assert_int_equal(sr_pb_scan(msg, sizeof(msg), want, 1, out), 2);
    assert_true(out[0].present);
    assert_int_equal(out[0].val_len, 0);
    assert_int_equal(out[0].val_off, 4);
    assert_int_equal(out[0].size, 2);
}

static void expect_malformed(const uint8_t *msg, size_t n)
{
    static const uint32_t want[] = {1, 2};
    struct sr_pb_field out[2], f;
    size_t pos = 0;
    int r;
    assert_int_equal(sr_pb_scan(msg, n, want, 2, out), SR_PB_EMALFORMED);
    /* the walker reaches the same verdict */
    while ((r = sr_pb_next(msg, n, &pos, &f)) == 1) {
    }
    assert_int_equal(r, SR_PB_EMALFORMED);
}

static void scan_rejects_len_beyond_end(void **state)
{
    static const uint8_t msg[] = {0x08, 0x01, 0x12, 0x05, 'a', 'b', 'c', 'd'};
    static const uint8_t huge[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'}; /* len 2^32-1 */
    static const uint8_t max[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    (void)state;
    expect_malformed(msg, sizeof(msg));
    expect_malformed(huge, sizeof(huge));
    expect_malformed(max, sizeof(max)); /* len = UINT64_MAX must not wrap */
}

static void scan_rejects_truncated_length_and_tag(void **state)
{
    static const uint8_t trunc_len[] = {0x08, 0x01, 0x12, 0x80};
    static const uint8_t trunc_tag[] = {0x08, 0x01, 0x80};
    static const uint8_t trunc_varint[] = {0x08, 0x01, 0x10, 0xff};
    static const uint8_t missing_varint[] = {0x08};
    static const uint8_t missing_len[] = {0x12};
    (void)state;
    expect_malformed(trunc_len, sizeof(trunc_len));
    expect_malformed(trunc_tag, sizeof(trunc_tag));
    expect_malformed(trunc_varint, sizeof(trunc_varint));
    expect_malformed(missing_varint, sizeof(missing_varint));
    expect_malformed(missing_len, sizeof(missing_len));
}

static void scan_rejects_group_wire_types(void **state)
{
    static const uint8_t start_group[] = {0x08, 0x01, 0x1b, 0x08, 0x01, 0x1c}; /* 3:SGROUP ... 3:EGROUP */
    static const uint8_t end_group[] = {0x1c};
    (void)state;
    expect_malformed(start_group, sizeof(start_group));
    expect_malformed(end_group, sizeof(end_group));
}

static void scan_rejects_wire_types_6_and_7(void **state)
{
    static const uint8_t wt6[] = {0x0e, 0x00};
    static const uint8_t wt7[] = {0x08, 0x01, 0x0f, 0x00};
    (void)state;
    expect_malformed(wt6, sizeof(wt6));
    expect_malformed(wt7, sizeof(wt7));
}

static void scan_rejects_field_number_0(void **state)
{
    static const uint8_t f0_varint[] = {0x00, 0x01};
    static const uint8_t f0_len[] = {0x08, 0x01, 0x02, 0x00};
    (void)state;
    expect_malformed(f0_varint, sizeof(f0_varint));
    expect_malformed(f0_len, sizeof(f0_len));
}

static void scan_rejects_truncated_fixed32_and_fixed64(void **state)
{
    static const uint8_t i32[] = {0x08, 0x01, 0x1d, 0x01, 0x02, 0x03};
    static const uint8_t i64[] = {0x21, 1, 2, 3, 4, 5, 6, 7};
    static const uint8_t i32_empty[] = {0x1d};
    (void)state;
    expect_malformed(i32, sizeof(i32));
    expect_malformed(i64, sizeof(i64));
    expect_malformed(i32_empty, sizeof(i32_empty));
    /* exact lengths are fine */
    assert_int_equal(sr_pb_scan(four_fields, sizeof(four_fields), NULL, 0, NULL), 4);
    /* cutting the trailing fixed64 by one byte is not */
    expect_malformed(four_fields, sizeof(four_fields) - 1);
}

static void scan_rejects_malformed_tail_after_wanted_field(void **state)
{
    /* the wanted field is complete and valid, but the message is not: no partial result */
    static const uint8_t msg[] = {0x12, 0x01, 'x', 0x1a, 0x09, 'a'};
    (void)state;
    expect_malformed(msg, sizeof(msg));
}

static void scan_rejects_messages_of_4gib_or_more_without_reading(void **state)
{
    /* offsets are 32-bit: a larger message is refused up front (the buffer here is
     * tiny, so reading it would be caught by ASan) */
    static const uint8_t msg[] = {0x08, 0x01};
    static const uint32_t want[] = {1};
    struct sr_pb_field out[1];
    (void)state;
    assert_int_equal(sr_pb_scan(msg, (size_t)UINT32_MAX + 1, want, 1, out), SR_PB_EMALFORMED);
}

/* ---- real encodings from protobuf-c ---- */

static uint8_t *pack_msg(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void scan_finds_fields_of_packed_segment_object(void **state)
{
    Skywalking__V3__SegmentObject seg = SKYWALKING__V3__SEGMENT_OBJECT__INIT;
    Skywalking__V3__SpanObject s1 = SKYWALKING__V3__SPAN_OBJECT__INIT;
    Skywalking__V3__SpanObject s2 = SKYWALKING__V3__SPAN_OBJECT__INIT;
    Skywalking__V3__SpanObject *spans[2] = {&s1, &s2};
    static const uint32_t want[] = {1, 2, 3, 4, 5, 6, 7};
    struct sr_pb_field out[7];
    size_t len;
    (void)state;

    s1.spanid = 1;
    s1.operationname = "GET /a";
    s2.spanid = 2;
    s2.parentspanid = 1;
    s2.operationname = "SELECT";
    seg.traceid = "trace-1";
    seg.tracesegmentid = "segment-1";
    seg.n_spans = 2;
    seg.spans = spans;
    seg.service = "checkout";
    seg.serviceinstance = "checkout-7f9c@10.0.0.3";
    seg.issizelimited = 1;

    uint8_t *buf = pack_msg(&seg.base, &len);
    assert_int_equal(sr_pb_scan(buf, len, want, ARRAY_LEN(want), out), 7);

    assert_true(out[0].present);
    assert_int_equal(out[0].val_len, strlen("trace-1"));
    assert_memory_equal(buf + out[0].val_off, "trace-1", out[0].val_len);
    assert_memory_equal(buf + out[1].val_off, "segment-1", out[1].val_len);
    assert_int_equal(out[3].wire_type, SR_WT_LEN);
    assert_int_equal(out[3].val_len, strlen("checkout"));
    assert_memory_equal(buf + out[3].val_off, "checkout", out[3].val_len);
    assert_int_equal(out[4].val_len, strlen("checkout-7f9c@10.0.0.3"));
    assert_memory_equal(buf + out[4].val_off, "checkout-7f9c@10.0.0.3", out[4].val_len);
    assert_int_equal(out[5].wire_type, SR_WT_VARINT);
    assert_int_equal(out[5].varint, 1);
    assert_false(out[6].present);
    /* the whole-field ranges tile the message */
    assert_int_equal(out[5].off + out[5].size, len);

    /* field 3 is repeated: the last occurrence is the second span */
    assert_true(out[2].present);
    Skywalking__V3__SpanObject *back =
        skywalking__v3__span_object__unpack(NULL, out[2].val_len, buf + out[2].val_off);
    assert_non_null(back);
    assert_int_equal(back->spanid, 2);
    assert_string_equal(back->operationname, "SELECT");
    skywalking__v3__span_object__free_unpacked(back, NULL);

    /* cutting the encoding anywhere inside the last field makes it malformed */
    for (size_t cut = out[5].off + 1; cut < len; cut++)
        assert_int_equal(sr_pb_scan(buf, cut, want, ARRAY_LEN(want), out), SR_PB_EMALFORMED);
    free(buf);
}

static void scan_finds_fields_of_packed_log_data(void **state)
{
    Skywalking__V3__LogData log = SKYWALKING__V3__LOG_DATA__INIT;
    Skywalking__V3__LogDataBody body = SKYWALKING__V3__LOG_DATA_BODY__INIT;
    Skywalking__V3__TextLog text = SKYWALKING__V3__TEXT_LOG__INIT;
    Skywalking__V3__TraceContext tc = SKYWALKING__V3__TRACE_CONTEXT__INIT;
    static const uint32_t want[] = {1, 2, 3, 4, 5, 6, 8};
    struct sr_pb_field out[7], f;
    size_t len, pos = 0;
    int count = 0;
    (void)state;

    text.text = "user 42 logged in";
    body.type = "text";
    body.content_case = SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT;
    body.text = &text;
    tc.traceid = "t-1";
    tc.spanid = -1; /* negative int32: a 10-byte varint */
    log.timestamp = 1700000000123LL;
    log.service = "auth";
    log.serviceinstance = "auth-0";
    log.endpoint = "/login";
    log.body = &body;
    log.tracecontext = &tc;

    uint8_t *buf = pack_msg(&log.base, &len);
    assert_int_equal(sr_pb_scan(buf, len, want, ARRAY_LEN(want), out), 6);
    assert_int_equal(out[0].wire_type, SR_WT_VARINT);
    assert_true(out[0].varint == 1700000000123ULL);
    assert_memory_equal(buf + out[1].val_off, "auth", out[1].val_len);
    assert_int_equal(out[1].val_len, 4);
    assert_memory_equal(buf + out[2].val_off, "auth-0", out[2].val_len);
    assert_memory_equal(buf + out[3].val_off, "/login", out[3].val_len);
    assert_true(out[4].present);
    assert_true(out[5].present);
    assert_false(out[6].present);

    /* the walker visits the same fields in encoding order, back to back */
    size_t expect_off = 0;
    while (sr_pb_next(buf, len, &pos, &f) == 1) {
        assert_int_equal(f.off, expect_off);
        expect_off += f.size;
        count++;
    }
    assert_int_equal(count, 6);
    assert_int_equal(expect_off, len);

    /* nested: the trace context's spanId = -1 is a 10-byte varint of UINT64_MAX */
    static const uint32_t want_span[] = {3};
    struct sr_pb_field sp[1];
    assert_int_equal(sr_pb_scan(buf + out[5].val_off, out[5].val_len, want_span, 1, sp), 2);
    assert_true(sp[0].present);
    assert_int_equal(sp[0].val_len, 10);
    assert_true(sp[0].varint == UINT64_MAX);
    free(buf);
}

/* ---- hash ---- */

static void hash64_matches_fnv1a_reference_vectors(void **state)
{
    (void)state;
    assert_true(sr_hash64(SR_HASH64_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(sr_hash64(SR_HASH64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(sr_hash64(SR_HASH64_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
}

static void hash64_chained_equals_one_shot(void **state)
{
    (void)state;
    uint64_t h = sr_hash64(SR_HASH64_INIT, "foo", 3);
    h = sr_hash64(h, "bar", 3);
    assert_true(h == sr_hash64(SR_HASH64_INIT, "foobar", 6));
    assert_true(sr_hash64(SR_HASH64_INIT, "foobar", 6) != sr_hash64(SR_HASH64_INIT, "foobaz", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(varint_round_trips_boundary_values),
        cmocka_unit_test(varint_encodes_300_as_ac_02),
        cmocka_unit_test(varint_truncated_is_malformed),
        cmocka_unit_test(varint_of_11_bytes_is_malformed),
        cmocka_unit_test(varint_overflowing_in_10th_byte_is_malformed),
        cmocka_unit_test(varint_non_canonical_10_byte_zero_is_accepted),
        cmocka_unit_test(next_walks_every_wire_type_with_offsets),
        cmocka_unit_test(next_on_empty_message_is_end),
        cmocka_unit_test(next_handles_large_field_numbers),
        cmocka_unit_test(scan_reports_last_occurrence_of_a_repeated_field),
        cmocka_unit_test(scan_reports_absent_fields_as_not_present),
        cmocka_unit_test(scan_counts_top_level_fields_only),
        cmocka_unit_test(scan_accepts_zero_length_len_field_at_the_end),
        cmocka_unit_test(scan_rejects_len_beyond_end),
        cmocka_unit_test(scan_rejects_truncated_length_and_tag),
        cmocka_unit_test(scan_rejects_group_wire_types),
        cmocka_unit_test(scan_rejects_wire_types_6_and_7),
        cmocka_unit_test(scan_rejects_field_number_0),
        cmocka_unit_test(scan_rejects_truncated_fixed32_and_fixed64),
        cmocka_unit_test(scan_rejects_malformed_tail_after_wanted_field),
        cmocka_unit_test(scan_rejects_messages_of_4gib_or_more_without_reading),
        cmocka_unit_test(scan_finds_fields_of_packed_segment_object),
        cmocka_unit_test(scan_finds_fields_of_packed_log_data),
        cmocka_unit_test(hash64_matches_fnv1a_reference_vectors),
        cmocka_unit_test(hash64_chained_equals_one_shot),
    };
    return cmocka_run_group_tests_name("wire", tests, sr_test_grpc_setup, sr_test_grpc_teardown);
}
