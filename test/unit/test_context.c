/* Unit tests for src/receiver/context.c: the stream context wire rewrite.
 *
 * The property under test is the one the upstream sees: for every message of a
 * stream, prefix + original bytes decodes (with protobuf-c, on real encodings)
 * to the message with the stream's context filled in and its own fields
 * unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "unit_grpc.h"
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "envoy_als.pb-c.h"
#include "logging.pb-c.h"
#include "meter.pb-c.h"
#include "skyrelay/context.h"
#include "skyrelay/wire.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The context keeps encoded fields in grpc_slices, which are stored inline (in the
 * struct itself) when short: a pointer taken into a slice passed by value dangles.
 * Make ASan report such stack-use-after-return instead of hashing garbage. */
const char *__asan_default_options(void);
__attribute__((used, no_sanitize_address)) const char *__asan_default_options(void)
{
    return "detect_stack_use_after_return=1";
}

/* ---- helpers ---- */

struct buf {
    uint8_t *p;
    size_t n;
};

static struct buf pack_msg(const ProtobufCMessage *m)
{
    struct buf b;
    b.n = protobuf_c_message_get_packed_size(m);
    b.p = malloc(b.n ? b.n : 1);
    assert_non_null(b.p);
    assert_int_equal(protobuf_c_message_pack(m, b.p), b.n);
    return b;
}

static struct buf concat(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    struct buf r;
    r.n = na + nb;
    r.p = malloc(r.n ? r.n : 1);
    assert_non_null(r.p);
    if (na) memcpy(r.p, a, na);
    if (nb) memcpy(r.p + na, b, nb);
    return r;
}

static void assert_slice_equals_buf(grpc_slice s, struct buf b)
{
    assert_int_equal(GRPC_SLICE_LENGTH(s), b.n);
    if (b.n) assert_memory_equal(GRPC_SLICE_START_PTR(s), b.p, b.n);
}

/* Applies msg to the stream; returns prefix + msg decoded with descriptor d (owned:
 * protobuf_c_message_free_unpacked). The prefix is returned in *prefix_out (owned) when
 * non-NULL, else released. */
static ProtobufCMessage *apply_decode(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx,
                                      const ProtobufCMessageDescriptor *d, struct buf msg,
                                      grpc_slice *prefix_out, uint64_t *key)
{
    grpc_slice prefix;
    uint64_t k = 0xabcdef;
    assert_int_equal(sr_stream_ctx_apply(spec, ctx, msg.p, msg.n, &prefix, &k), 0);
    /* the prefix is itself a well-formed sequence of fields */
    assert_true(sr_pb_scan(GRPC_SLICE_START_PTR(prefix), GRPC_SLICE_LENGTH(prefix), NULL, 0, NULL) >=
                0);
    struct buf joined = concat(GRPC_SLICE_START_PTR(prefix), GRPC_SLICE_LENGTH(prefix), msg.p, msg.n);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, joined.n, joined.p);
    assert_non_null(m);
    free(joined.p);
    if (prefix_out)
        *prefix_out = prefix;
    else
        grpc_slice_unref(prefix);
    if (key) *key = k;
    return m;
}

/* ---- LogData ---- */

static struct buf pack_log(const char *svc, const char *inst, int64_t ts, const char *endpoint,
                           const char *text)
{
    Skywalking__V3__LogData log = SKYWALKING__V3__LOG_DATA__INIT;
    Skywalking__V3__LogDataBody body = SKYWALKING__V3__LOG_DATA_BODY__INIT;
    Skywalking__V3__TextLog tl = SKYWALKING__V3__TEXT_LOG__INIT;
    Skywalking__V3__TraceContext tc = SKYWALKING__V3__TRACE_CONTEXT__INIT;
    Skywalking__V3__KeyStringValuePair kv = SKYWALKING__V3__KEY_STRING_VALUE_PAIR__INIT;
    Skywalking__V3__KeyStringValuePair *kvs[1] = {&kv};
    Skywalking__V3__LogTags tags = SKYWALKING__V3__LOG_TAGS__INIT;

    if (svc) log.service = (char *)svc;
    if (inst) log.serviceinstance = (char *)inst;
    log.timestamp = ts;
    if (endpoint) log.endpoint = (char *)endpoint;
    if (text) {
        tl.text = (char *)text;
        body.type = "text";
        body.content_case = SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT;
        body.text = &tl;
        log.body = &body;
        tc.traceid = "trace-xyz";
        tc.spanid = (int32_t)ts;
        log.tracecontext = &tc;
        kv.key = "level";
        kv.value = "INFO";
        tags.n_data = 1;
        tags.data = kvs;
        log.tags = &tags;
        log.layer = "GENERAL";
    }
    return pack_msg(&log.base);
}

static Skywalking__V3__LogData *apply_log(struct sr_stream_ctx *ctx, struct buf msg,
                                          grpc_slice *prefix_out, uint64_t *key)
{
    return (Skywalking__V3__LogData *)apply_decode(&sr_ctx_log, ctx, &skywalking__v3__log_data__descriptor,
                                                   msg, prefix_out, key);
}

static void assert_log_own_fields(const Skywalking__V3__LogData *l, int64_t ts, const char *endpoint,
                                  const char *text)
{
    assert_true(l->timestamp == ts);
    assert_string_equal(l->endpoint, endpoint);
    assert_non_null(l->body);
    assert_string_equal(l->body->type, "text");
    assert_int_equal(l->body->content_case, SKYWALKING__V3__LOG_DATA_BODY__CONTENT_TEXT);
    assert_string_equal(l->body->text->text, text);
    assert_non_null(l->tracecontext);
    assert_string_equal(l->tracecontext->traceid, "trace-xyz");
    assert_int_equal(l->tracecontext->spanid, (int32_t)ts);
    assert_non_null(l->tags);
    assert_int_equal(l->tags->n_data, 1);
    assert_string_equal(l->tags->data[0]->key, "level");
    assert_string_equal(l->tags->data[0]->value, "INFO");
    assert_string_equal(l->layer, "GENERAL");
}

static void log_first_message_gets_empty_prefix(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t key;
    (void)state;
    sr_stream_ctx_init(&ctx);
    struct buf m0 = pack_log("checkout", "checkout-1", 1000, "/pay", "first");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, &prefix, &key);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_string_equal(l->service, "checkout");
    assert_string_equal(l->serviceinstance, "checkout-1");
    assert_log_own_fields(l, 1000, "/pay", "first");
    assert_true(key != 0);
    assert_true(key == sr_ctx_key2((const uint8_t *)"checkout", 8, NULL, 0)); /* logs: by service */
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    free(m0.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_context_prepended_to_messages_without_service(void **state)
{
    struct sr_stream_ctx ctx;
    uint64_t key0, key;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("checkout", "checkout-1", 1000, "/pay", "first");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, &key0);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    free(m0.p);

    /* the prefix is exactly {service, serviceInstance} as an encoder would write them */
    Skywalking__V3__LogData idonly = SKYWALKING__V3__LOG_DATA__INIT;
    idonly.service = "checkout";
    idonly.serviceinstance = "checkout-1";
    struct buf want_prefix = pack_msg(&idonly.base);

    for (int i = 1; i <= 5; i++) {
        char endpoint[32], text[32];
        grpc_slice prefix;
        snprintf(endpoint, sizeof(endpoint), "/endpoint/%d", i);
        snprintf(text, sizeof(text), "log line %d", i);
        struct buf mi = pack_log(NULL, NULL, 1000 + i, endpoint, text);
        l = apply_log(&ctx, mi, &prefix, &key);
        assert_slice_equals_buf(prefix, want_prefix);
        assert_string_equal(l->service, "checkout");
        assert_string_equal(l->serviceinstance, "checkout-1");
        assert_log_own_fields(l, 1000 + i, endpoint, text);
        assert_true(key == key0); /* stable across the stream */
        grpc_slice_unref(prefix);
        protobuf_c_message_free_unpacked(&l->base, NULL);
        free(mi.p);
    }
    free(want_prefix.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_message_with_new_service_updates_context_for_following_messages(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k1, k2, k3;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a0");
    struct buf m1 = pack_log(NULL, NULL, 2, "/a", "a1");
    struct buf m2 = pack_log("svc-b", "inst-b", 3, "/b", "b0");
    struct buf m3 = pack_log(NULL, NULL, 4, "/b", "b1");

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m1, NULL, &k1);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-a");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m2, &prefix, &k2);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0); /* carries all of its context */
    assert_string_equal(l->service, "svc-b");
    assert_string_equal(l->serviceinstance, "inst-b");
    assert_log_own_fields(l, 3, "/b", "b0");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m3, NULL, &k3);
    assert_string_equal(l->service, "svc-b");
    assert_string_equal(l->serviceinstance, "inst-b");
    assert_log_own_fields(l, 4, "/b", "b1");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    assert_true(k0 == k1);
    assert_true(k2 == k3);
    assert_true(k0 != k2);
    assert_true(k2 == sr_ctx_key2((const uint8_t *)"svc-b", 5, NULL, 0));

    free(m0.p);
    free(m1.p);
    free(m2.p);
    free(m3.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_message_with_only_service_gets_only_instance_prepended(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t key;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a0");
    struct buf m1 = pack_log("svc-b", NULL, 2, "/b", "b-only-service");
    struct buf m2 = pack_log(NULL, NULL, 3, "/c", "none");

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    Skywalking__V3__LogData inst_only = SKYWALKING__V3__LOG_DATA__INIT;
    inst_only.serviceinstance = "inst-a";
    struct buf want = pack_msg(&inst_only.base);

    l = apply_log(&ctx, m1, &prefix, &key);
    assert_slice_equals_buf(prefix, want); /* the instance only: never its own service */
    assert_string_equal(l->service, "svc-b");
    assert_string_equal(l->serviceinstance, "inst-a");
    assert_log_own_fields(l, 2, "/b", "b-only-service");
    assert_true(key == sr_ctx_key2((const uint8_t *)"svc-b", 5, NULL, 0));
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    /* "use the previous not-null": the next message gets svc-b and inst-a */
    l = apply_log(&ctx, m2, NULL, NULL);
    assert_string_equal(l->service, "svc-b");
    assert_string_equal(l->serviceinstance, "inst-a");
    assert_log_own_fields(l, 3, "/c", "none");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    free(want.p);
    free(m0.p);
    free(m1.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_message_with_only_instance_gets_only_service_prepended(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a0");
    struct buf m1 = pack_log(NULL, "inst-z", 2, "/z", "z");

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    Skywalking__V3__LogData svc_only = SKYWALKING__V3__LOG_DATA__INIT;
    svc_only.service = "svc-a";
    struct buf want = pack_msg(&svc_only.base);

    l = apply_log(&ctx, m1, &prefix, NULL);
    assert_slice_equals_buf(prefix, want);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-z");
    assert_log_own_fields(l, 2, "/z", "z");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    free(want.p);
    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_stream_without_identity_gets_no_prefix_and_no_key(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t key;
    (void)state;
    sr_stream_ctx_init(&ctx);
    for (int i = 0; i < 3; i++) {
        struct buf m = pack_log(NULL, NULL, i, "/x", "anonymous");
        Skywalking__V3__LogData *l = apply_log(&ctx, m, &prefix, &key);
        assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
        assert_true(key == 0);
        assert_string_equal(l->service, "");
        assert_log_own_fields(l, i, "/x", "anonymous");
        grpc_slice_unref(prefix);
        protobuf_c_message_free_unpacked(&l->base, NULL);
        free(m.p);
    }
    sr_stream_ctx_deinit(&ctx);
}

static void log_first_message_with_only_service_then_instance_builds_up_context(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k1, k2;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", NULL, 1, "/a", "a");
    struct buf m1 = pack_log(NULL, "inst-a", 2, "/b", "b");
    struct buf m2 = pack_log(NULL, NULL, 3, "/c", "c");

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, &prefix, &k0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0); /* nothing known to add */
    assert_true(k0 == sr_ctx_key2((const uint8_t *)"svc-a", 5, NULL, 0));
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m1, NULL, &k1);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-a");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m2, NULL, &k2);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-a");
    assert_log_own_fields(l, 3, "/c", "c");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    assert_true(k1 == k2);
    assert_true(k0 == k1); /* the key of a log is its service (the instance is carried) */
    free(m0.p);
    free(m1.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_repeated_service_in_one_message_remembers_the_last(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    (void)state;
    sr_stream_ctx_init(&ctx);

    /* two encodings concatenated = one message where the later fields win */
    struct buf a = pack_log("svc-x", "inst-x", 1, NULL, NULL);
    struct buf b = pack_log("svc-y", "inst-y", 0, "/y", NULL);
    struct buf m0 = concat(a.p, a.n, b.p, b.n);
    struct buf m1 = pack_log(NULL, NULL, 2, "/next", "next");

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, &prefix, NULL);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_string_equal(l->service, "svc-y");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    l = apply_log(&ctx, m1, NULL, NULL);
    assert_string_equal(l->service, "svc-y");
    assert_string_equal(l->serviceinstance, "inst-y");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    free(a.p);
    free(b.p);
    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_explicitly_empty_service_does_not_replace_context(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    /* service = "" and serviceInstance = "" written explicitly (proto3 encoders omit them) */
    static const uint8_t empty_ids[] = {0x12, 0x00, 0x1a, 0x00, 0x22, 0x02, '/', 'e'};
    struct buf m1 = {(uint8_t *)empty_ids, sizeof(empty_ids)};
    struct buf m2 = pack_log(NULL, NULL, 3, "/c", "c");
    uint64_t k0, k1, k2;

    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    l = apply_log(&ctx, m1, &prefix, &k1);
    assert_string_equal(l->endpoint, "/e");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    l = apply_log(&ctx, m2, NULL, &k2);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-a");
    protobuf_c_message_free_unpacked(&l->base, NULL);
    assert_true(k0 == k1);
    assert_true(k0 == k2);

    free(m0.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

/* OAP's LogReportService on one upstream stream: the first non-empty service it
 * sees sticks and is set on every later LogData (the handler's setServiceName). */
struct oap_log_stream {
    char service[64];
};

static const char *oap_log_credit(struct oap_log_stream *s, const char *service)
{
    if (!s->service[0] && service[0]) {
        snprintf(s->service, sizeof(s->service), "%s", service);
        return s->service;
    }
    return s->service[0] ? s->service : service;
}

/* What the receiver does with one message of a stream: strip an explicit empty
 * context value the stream knows, then apply the context. Returns the message as
 * sent upstream (prefix + body, owned) and its key. */
static struct buf receive_log(struct sr_stream_ctx *ctx, struct buf msg, uint64_t *key)
{
    grpc_slice stripped, prefix;
    int r = sr_stream_ctx_strip_empty(&sr_ctx_log, ctx, msg.p, msg.n, &stripped);
    assert_true(r == 0 || r == 1);
    if (r == 1) {
        msg.p = GRPC_SLICE_START_PTR(stripped);
        msg.n = GRPC_SLICE_LENGTH(stripped);
    }
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_log, ctx, msg.p, msg.n, &prefix, key), 0);
    struct buf out = concat(GRPC_SLICE_START_PTR(prefix), GRPC_SLICE_LENGTH(prefix), msg.p, msg.n);
    grpc_slice_unref(prefix);
    grpc_slice_unref(stripped);
    return out;
}

static void log_explicit_empty_service_is_credited_to_its_own_stream_as_agent_direct(void **state)
{
    /* three agents' streams, interleaved as one worker receives them: A and B with an
     * identity, C whose first message says service "" explicitly */
    static const uint8_t a_empty[] = {0x12, 0x00, 0x22, 0x03, '/', 'a', '2'}; /* service "" */
    static const uint8_t b_empty[] = {0x12, 0x00, 0x1a, 0x03, 'i', '-', 'b',  /* "", inst i-b */
                                      0x22, 0x03, '/', 'b', '2'};
    static const uint8_t c_empty[] = {0x12, 0x00, 0x22, 0x03, '/', 'c', '1'};
    struct sr_stream_ctx ctx[3];
    struct oap_log_stream direct[3], up[8];
    uint64_t up_key[8];
    size_t n_up = 0;
    const uint64_t key_a = sr_ctx_key2((const uint8_t *)"svc-a", 5, NULL, 0); /* logs: by service */
    const char *own[3] = {"svc-a", "svc-b", ""};
    struct {
        int stream;
        struct buf msg;
        int owned;
    } seq[] = {
        {0, pack_log("svc-a", "inst-a", 1, "/a1", "a1"), 1},
        {1, pack_log("svc-b", "inst-b", 2, "/b1", "b1"), 1},
        {0, {(uint8_t *)a_empty, sizeof(a_empty)}, 0},
        {2, {(uint8_t *)c_empty, sizeof(c_empty)}, 0},
        {1, {(uint8_t *)b_empty, sizeof(b_empty)}, 0},
        {0, pack_log(NULL, NULL, 3, "/a3", "a3"), 1},
        {1, pack_log(NULL, NULL, 4, "/b3", "b3"), 1},
    };
    (void)state;
    memset(direct, 0, sizeof(direct));
    memset(up, 0, sizeof(up));
    for (int i = 0; i < 3; i++) sr_stream_ctx_init(&ctx[i]);

    for (size_t i = 0; i < ARRAY_LEN(seq); i++) {
        int st = seq[i].stream;
        uint64_t key;
        Skywalking__V3__LogData *raw = skywalking__v3__log_data__unpack(NULL, seq[i].msg.n, seq[i].msg.p);
        struct buf sent = receive_log(&ctx[st], seq[i].msg, &key);
        Skywalking__V3__LogData *l = skywalking__v3__log_data__unpack(NULL, sent.n, sent.p);
        assert_non_null(raw);
        assert_non_null(l);

        /* every message leaves with its own stream's service (none for C) and its
         * own fields, and with its own stream's key (0 for C) */
        assert_string_equal(l->service, own[st]);
        assert_string_equal(l->endpoint, raw->endpoint);
        if (raw->serviceinstance[0]) assert_string_equal(l->serviceinstance, raw->serviceinstance);
        if (st == 0) assert_true(key == key_a);
        if (st == 1)
            assert_true(key == sr_ctx_key2((const uint8_t *)"svc-b", 5, NULL, 0));
        if (st == 2) assert_true(key == 0);

        /* what OAP credits: agent-direct (one upstream stream per agent stream, the
         * agent's own bytes) and through skyrelay (one upstream stream per key, the
         * rewritten bytes) agree */
        const char *want = oap_log_credit(&direct[st], raw->service);
        size_t u;
        for (u = 0; u < n_up && up_key[u] != key; u++) {
        }
        if (u == n_up) {
            assert_true(n_up < ARRAY_LEN(up));
            up_key[n_up++] = key;
        }
        const char *got = oap_log_credit(&up[u], l->service);
        if (strcmp(got, want) != 0)
            fail_msg("message %zu of stream %d: OAP would credit \"%s\" through skyrelay, \"%s\" direct",
                     i, st, got, want);

        free(sent.p);
        skywalking__v3__log_data__free_unpacked(l, NULL);
        skywalking__v3__log_data__free_unpacked(raw, NULL);
    }
    /* the explicit "" did not replace A's context */
    assert_true(ctx[0].key == key_a);
    for (size_t i = 0; i < ARRAY_LEN(seq); i++)
        if (seq[i].owned) free(seq[i].msg.p);
    for (int i = 0; i < 3; i++) sr_stream_ctx_deinit(&ctx[i]);
}

static void log_contexts_of_two_streams_do_not_mix(void **state)
{
    struct sr_stream_ctx c1, c2;
    uint64_t k1, k2;
    (void)state;
    sr_stream_ctx_init(&c1);
    sr_stream_ctx_init(&c2);

    struct buf a0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    struct buf b0 = pack_log("svc-b", "inst-b", 1, "/b", "b");
    struct buf n = pack_log(NULL, NULL, 2, "/n", "n");
    Skywalking__V3__LogData *l = apply_log(&c1, a0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    l = apply_log(&c2, b0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    for (int i = 0; i < 3; i++) {
        l = apply_log(&c1, n, NULL, &k1);
        assert_string_equal(l->service, "svc-a");
        assert_string_equal(l->serviceinstance, "inst-a");
        protobuf_c_message_free_unpacked(&l->base, NULL);
        l = apply_log(&c2, n, NULL, &k2);
        assert_string_equal(l->service, "svc-b");
        assert_string_equal(l->serviceinstance, "inst-b");
        protobuf_c_message_free_unpacked(&l->base, NULL);
        assert_true(k1 != k2);
    }
    free(a0.p);
    free(b0.p);
    free(n.p);
    sr_stream_ctx_deinit(&c1);
    sr_stream_ctx_deinit(&c2);
}

static void log_same_service_gives_same_key_across_streams(void **state)
{
    static const char *ids[][2] = {
        {"svc-a", "inst-1"}, {"svc-a", "inst-1"}, {"svc-a", "inst-2"}, {"svc-b", "inst-1"},
    };
    struct sr_stream_ctx ctx[4];
    uint64_t first[4], later[4];
    (void)state;

    for (int i = 0; i < 4; i++) {
        sr_stream_ctx_init(&ctx[i]);
        struct buf m0 = pack_log(ids[i][0], ids[i][1], 1, "/x", "x");
        struct buf m1 = pack_log(NULL, NULL, 2, "/y", "y");
        Skywalking__V3__LogData *l = apply_log(&ctx[i], m0, NULL, &first[i]);
        protobuf_c_message_free_unpacked(&l->base, NULL);
        l = apply_log(&ctx[i], m1, NULL, &later[i]);
        protobuf_c_message_free_unpacked(&l->base, NULL);
        assert_true(first[i] == later[i]);
        assert_true(first[i] != 0);
        free(m0.p);
        free(m1.p);
    }
    assert_true(first[0] == first[1]);
    assert_true(first[0] == first[2]); /* another instance of the service: the same stream */
    assert_true(first[0] != first[3]);
    assert_true(first[2] != first[3]);
    for (int i = 0; i < 4; i++) sr_stream_ctx_deinit(&ctx[i]);
}

static void log_long_identity_key_matches_key2_and_is_carried(void **state)
{
    /* long enough that the remembered fields live in heap slices */
    static const char svc[] = "payments-gateway-service-with-a-long-name";
    static const char inst[] = "payments-gateway-7d9f8c6b5-x2x4q@10.244.3.17";
    struct sr_stream_ctx ctx;
    uint64_t k0, k1;
    (void)state;
    sr_stream_ctx_init(&ctx);
    struct buf m0 = pack_log(svc, inst, 1, "/a", "a");
    struct buf m1 = pack_log(NULL, NULL, 2, "/b", "b");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    l = apply_log(&ctx, m1, NULL, &k1);
    assert_string_equal(l->service, svc);
    assert_string_equal(l->serviceinstance, inst);
    assert_log_own_fields(l, 2, "/b", "b");
    protobuf_c_message_free_unpacked(&l->base, NULL);
    assert_true(k0 == k1);
    assert_true(k0 == sr_ctx_key2((const uint8_t *)svc, strlen(svc), NULL, 0)); /* logs: by service */
    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

static void log_malformed_message_is_rejected_and_context_unchanged(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k = 0, k2;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    /* a valid new service and instance, then a LEN field running past the end */
    static const uint8_t bad[] = {0x12, 0x03, 'e', 'v', 'l', 0x1a, 0x02, 'e', '1', 0x22, 0x09, '/'};
    prefix = grpc_slice_from_static_string("junk");
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_log, &ctx, bad, sizeof(bad), &prefix, &k),
                     SR_PB_EMALFORMED);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    grpc_slice_unref(prefix);

    /* group wire type, field 0: same */
    static const uint8_t group[] = {0x12, 0x01, 'x', 0x0b};
    static const uint8_t field0[] = {0x12, 0x01, 'x', 0x02, 0x00};
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_log, &ctx, group, sizeof(group), &prefix, &k),
                     SR_PB_EMALFORMED);
    grpc_slice_unref(prefix);
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_log, &ctx, field0, sizeof(field0), &prefix, &k),
                     SR_PB_EMALFORMED);
    grpc_slice_unref(prefix);

    struct buf m1 = pack_log(NULL, NULL, 2, "/b", "b");
    l = apply_log(&ctx, m1, NULL, &k2);
    assert_string_equal(l->service, "svc-a");
    assert_string_equal(l->serviceinstance, "inst-a");
    assert_true(k2 == k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

static void ctx_deinit_forgets_the_context(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t key;
    (void)state;
    sr_stream_ctx_init(&ctx);
    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    struct buf m1 = pack_log(NULL, NULL, 2, "/b", "b");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    sr_stream_ctx_deinit(&ctx);
    sr_stream_ctx_deinit(&ctx); /* harmless twice */
    sr_stream_ctx_init(&ctx);
    l = apply_log(&ctx, m1, &prefix, &key);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_true(key == 0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

/* ---- keys ---- */

static void key2_separates_service_from_instance(void **state)
{
    (void)state;
    uint64_t ab_c = sr_ctx_key2((const uint8_t *)"ab", 2, (const uint8_t *)"c", 1);
    uint64_t a_bc = sr_ctx_key2((const uint8_t *)"a", 1, (const uint8_t *)"bc", 2);
    uint64_t a_ = sr_ctx_key2((const uint8_t *)"a", 1, (const uint8_t *)"", 0);
    uint64_t _a = sr_ctx_key2((const uint8_t *)"", 0, (const uint8_t *)"a", 1);
    assert_true(ab_c != a_bc);
    assert_true(a_ != _a);
    assert_true(ab_c != 0 && a_bc != 0 && a_ != 0 && _a != 0);
    assert_true(ab_c == sr_ctx_key2((const uint8_t *)"ab", 2, (const uint8_t *)"c", 1));
}

/* ---- MeterData ---- */

static struct buf pack_meter(const char *svc, const char *inst, int64_t ts, const char *name,
                             double value, int histogram)
{
    Skywalking__V3__MeterData md = SKYWALKING__V3__METER_DATA__INIT;
    Skywalking__V3__MeterSingleValue sv = SKYWALKING__V3__METER_SINGLE_VALUE__INIT;
    Skywalking__V3__MeterHistogram h = SKYWALKING__V3__METER_HISTOGRAM__INIT;
    Skywalking__V3__MeterBucketValue b0 = SKYWALKING__V3__METER_BUCKET_VALUE__INIT;
    Skywalking__V3__MeterBucketValue b1 = SKYWALKING__V3__METER_BUCKET_VALUE__INIT;
    Skywalking__V3__MeterBucketValue *bs[2] = {&b0, &b1};
    Skywalking__V3__Label lab = SKYWALKING__V3__LABEL__INIT;
    Skywalking__V3__Label *labs[1] = {&lab};

    if (svc) md.service = (char *)svc;
    if (inst) md.serviceinstance = (char *)inst;
    md.timestamp = ts;
    lab.name = "pool";
    lab.value = "main";
    if (name && !histogram) {
        sv.name = (char *)name;
        sv.value = value;
        sv.n_labels = 1;
        sv.labels = labs;
        md.metric_case = SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE;
        md.singlevalue = &sv;
    } else if (name) {
        h.name = (char *)name;
        h.n_labels = 1;
        h.labels = labs;
        b0.bucket = 0;
        b0.count = 3;
        b1.bucket = value;
        b1.count = 7;
        h.n_values = 2;
        h.values = bs;
        md.metric_case = SKYWALKING__V3__METER_DATA__METRIC_HISTOGRAM;
        md.histogram = &h;
    }
    return pack_msg(&md.base);
}

static Skywalking__V3__MeterData *apply_meter(struct sr_stream_ctx *ctx, struct buf msg,
                                              grpc_slice *prefix_out, uint64_t *key)
{
    return (Skywalking__V3__MeterData *)apply_decode(
        &sr_ctx_meter, ctx, &skywalking__v3__meter_data__descriptor, msg, prefix_out, key);
}

static void meter_service_instance_timestamp_carried_to_later_messages(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_meter("svc-m", "inst-m", 1700000000000LL, "cpu", 0.5, 0);
    Skywalking__V3__MeterData *d = apply_meter(&ctx, m0, &prefix, &k0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_true(k0 == sr_ctx_key2((const uint8_t *)"svc-m", 5, (const uint8_t *)"inst-m", 6));
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&d->base, NULL);

    Skywalking__V3__MeterData ids = SKYWALKING__V3__METER_DATA__INIT;
    ids.service = "svc-m";
    ids.serviceinstance = "inst-m";
    ids.timestamp = 1700000000000LL;
    struct buf want = pack_msg(&ids.base);

    for (int i = 1; i <= 4; i++) {
        char name[16];
        int hist = i % 2;
        snprintf(name, sizeof(name), "m%d", i);
        struct buf mi = pack_meter(NULL, NULL, 0, name, 1.25 * i, hist);
        d = apply_meter(&ctx, mi, &prefix, &k);
        assert_slice_equals_buf(prefix, want);
        assert_string_equal(d->service, "svc-m");
        assert_string_equal(d->serviceinstance, "inst-m");
        assert_true(d->timestamp == 1700000000000LL);
        assert_true(k == k0);
        if (hist) {
            assert_int_equal(d->metric_case, SKYWALKING__V3__METER_DATA__METRIC_HISTOGRAM);
            assert_string_equal(d->histogram->name, name);
            assert_int_equal(d->histogram->n_values, 2);
            assert_true(d->histogram->values[1]->bucket == 1.25 * i);
            assert_int_equal(d->histogram->values[1]->count, 7);
            assert_string_equal(d->histogram->labels[0]->value, "main");
        } else {
            assert_int_equal(d->metric_case, SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE);
            assert_string_equal(d->singlevalue->name, name);
            assert_true(d->singlevalue->value == 1.25 * i);
            assert_string_equal(d->singlevalue->labels[0]->name, "pool");
        }
        grpc_slice_unref(prefix);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        free(mi.p);
    }
    free(want.p);
    free(m0.p);
    sr_stream_ctx_deinit(&ctx);
}

static void meter_message_with_own_timestamp_keeps_it_and_gets_identity(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_meter("svc-m", "inst-m", 1000, "cpu", 0.5, 0);
    struct buf m1 = pack_meter(NULL, NULL, 2000, "mem", 7, 0);
    struct buf m2 = pack_meter("svc-n", NULL, 0, "disk", 8, 0);

    Skywalking__V3__MeterData *d = apply_meter(&ctx, m0, NULL, NULL);
    protobuf_c_message_free_unpacked(&d->base, NULL);

    Skywalking__V3__MeterData ids = SKYWALKING__V3__METER_DATA__INIT;
    ids.service = "svc-m";
    ids.serviceinstance = "inst-m";
    struct buf want = pack_msg(&ids.base);
    d = apply_meter(&ctx, m1, &prefix, NULL);
    assert_slice_equals_buf(prefix, want); /* service + instance, not the timestamp */
    assert_string_equal(d->service, "svc-m");
    assert_string_equal(d->serviceinstance, "inst-m");
    assert_true(d->timestamp == 2000);
    assert_string_equal(d->singlevalue->name, "mem");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    free(want.p);

    /* only a service: instance and (latest) timestamp prepended */
    Skywalking__V3__MeterData rest = SKYWALKING__V3__METER_DATA__INIT;
    rest.serviceinstance = "inst-m";
    rest.timestamp = 2000;
    want = pack_msg(&rest.base);
    d = apply_meter(&ctx, m2, &prefix, NULL);
    assert_slice_equals_buf(prefix, want);
    assert_string_equal(d->service, "svc-n");
    assert_string_equal(d->serviceinstance, "inst-m");
    assert_true(d->timestamp == 2000);
    assert_string_equal(d->singlevalue->name, "disk");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    free(want.p);

    free(m0.p);
    free(m1.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

static void meter_malformed_message_is_rejected_and_context_unchanged(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k;
    (void)state;
    sr_stream_ctx_init(&ctx);
    struct buf m0 = pack_meter("svc-m", "inst-m", 1000, "cpu", 0.5, 0);
    Skywalking__V3__MeterData *d = apply_meter(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&d->base, NULL);

    /* new identity, then a truncated timestamp varint */
    static const uint8_t bad[] = {0x1a, 0x01, 'x', 0x22, 0x01, 'y', 0x28, 0xff};
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_meter, &ctx, bad, sizeof(bad), &prefix, &k),
                     SR_PB_EMALFORMED);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    grpc_slice_unref(prefix);

    struct buf m1 = pack_meter(NULL, NULL, 0, "mem", 1, 0);
    d = apply_meter(&ctx, m1, NULL, &k);
    assert_string_equal(d->service, "svc-m");
    assert_string_equal(d->serviceinstance, "inst-m");
    assert_true(d->timestamp == 1000);
    assert_true(k == k0);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    free(m0.p);
    free(m1.p);
    sr_stream_ctx_deinit(&ctx);
}

/* ---- Envoy ALS ---- */

static struct buf pack_als(const char *node_id, const char *cluster, const char *log_name,
                           int tcp, uint64_t n)
{
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage m =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier id =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__IDENTIFIER__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__HTTPAccessLogEntries http =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__HTTPACCESS_LOG_ENTRIES__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__TCPAccessLogEntries tcpe =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__TCPACCESS_LOG_ENTRIES__INIT;
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry he = ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__INIT;
    Envoy__Data__Accesslog__V3__TCPAccessLogEntry te = ENVOY__DATA__ACCESSLOG__V3__TCPACCESS_LOG_ENTRY__INIT;
    Envoy__Data__Accesslog__V3__AccessLogCommon common = ENVOY__DATA__ACCESSLOG__V3__ACCESS_LOG_COMMON__INIT;
    Envoy__Data__Accesslog__V3__ConnectionProperties cp =
        ENVOY__DATA__ACCESSLOG__V3__CONNECTION_PROPERTIES__INIT;
    Envoy__Data__Accesslog__V3__HTTPAccessLogEntry *hes[1] = {&he};
    Envoy__Data__Accesslog__V3__TCPAccessLogEntry *tes[1] = {&te};

    if (node_id || cluster) {
        if (node_id) node.id = (char *)node_id;
        if (cluster) node.cluster = (char *)cluster;
        id.node = &node;
    }
    if (log_name) id.log_name = (char *)log_name;
    if (node_id || cluster || log_name) m.identifier = &id;

    common.upstream_cluster = "outbound|9080||reviews";
    common.upstream_request_attempt_count = (uint32_t)n;
    if (tcp) {
        cp.received_bytes = n;
        cp.sent_bytes = 2 * n;
        te.common_properties = &common;
        te.connection_properties = &cp;
        tcpe.n_log_entry = 1;
        tcpe.log_entry = tes;
        m.log_entries_case = ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_TCP_LOGS;
        m.tcp_logs = &tcpe;
    } else {
        he.common_properties = &common;
        he.protocol_version = ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__HTTPVERSION__HTTP2;
        http.n_log_entry = 1;
        http.log_entry = hes;
        m.log_entries_case = ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS;
        m.http_logs = &http;
    }
    return pack_msg(&m.base);
}

typedef Envoy__Service__Accesslog__V3__StreamAccessLogsMessage als_msg;

static als_msg *apply_als(struct sr_stream_ctx *ctx, struct buf msg, grpc_slice *prefix_out,
                          uint64_t *key)
{
    return (als_msg *)apply_decode(&sr_ctx_als, ctx,
                                   &envoy__service__accesslog__v3__stream_access_logs_message__descriptor,
                                   msg, prefix_out, key);
}

static void assert_als_entries(const als_msg *m, int tcp, uint64_t n)
{
    const Envoy__Data__Accesslog__V3__AccessLogCommon *c;
    if (tcp) {
        assert_int_equal(m->log_entries_case,
                         ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_TCP_LOGS);
        assert_int_equal(m->tcp_logs->n_log_entry, 1);
        assert_true(m->tcp_logs->log_entry[0]->connection_properties->received_bytes == n);
        assert_true(m->tcp_logs->log_entry[0]->connection_properties->sent_bytes == 2 * n);
        c = m->tcp_logs->log_entry[0]->common_properties;
    } else {
        assert_int_equal(m->log_entries_case,
                         ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__LOG_ENTRIES_HTTP_LOGS);
        assert_int_equal(m->http_logs->n_log_entry, 1);
        assert_int_equal(m->http_logs->log_entry[0]->protocol_version,
                         ENVOY__DATA__ACCESSLOG__V3__HTTPACCESS_LOG_ENTRY__HTTPVERSION__HTTP2);
        c = m->http_logs->log_entry[0]->common_properties;
    }
    assert_string_equal(c->upstream_cluster, "outbound|9080||reviews");
    assert_true(c->upstream_request_attempt_count == n);
}

static void als_identifier_prepended_to_messages_without_it(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_als("sidecar~10.0.0.5~reviews-v1.default", "reviews.default", "als", 0, 1);
    als_msg *m = apply_als(&ctx, m0, &prefix, &k0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_true(k0 != 0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* the prefix is exactly the identifier field as Envoy encoded it */
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage idm =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__INIT;
    Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier id =
        ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__IDENTIFIER__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    node.id = "sidecar~10.0.0.5~reviews-v1.default";
    node.cluster = "reviews.default";
    id.node = &node;
    id.log_name = "als";
    idm.identifier = &id;
    struct buf want = pack_msg(&idm.base);

    for (uint64_t i = 2; i <= 5; i++) {
        int tcp = (int)(i % 2);
        struct buf mi = pack_als(NULL, NULL, NULL, tcp, i);
        m = apply_als(&ctx, mi, &prefix, &k);
        assert_slice_equals_buf(prefix, want);
        assert_non_null(m->identifier);
        assert_non_null(m->identifier->node);
        assert_string_equal(m->identifier->node->id, "sidecar~10.0.0.5~reviews-v1.default");
        assert_string_equal(m->identifier->node->cluster, "reviews.default");
        assert_string_equal(m->identifier->log_name, "als");
        assert_als_entries(m, tcp, i);
        assert_true(k == k0);
        grpc_slice_unref(prefix);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        free(mi.p);
    }
    free(want.p);
    free(m0.p);
    sr_stream_ctx_deinit(&ctx);
}

static void als_message_with_identifier_is_never_prefixed(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k1, k2, k3;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_als("node-1", "cluster-1", "als", 0, 1);
    struct buf m1 = pack_als("node-1", "cluster-1", "als", 1, 2);   /* same identifier again */
    struct buf m2 = pack_als(NULL, NULL, "other-log", 0, 3);        /* partial identifier */
    struct buf m3 = pack_als(NULL, NULL, NULL, 1, 4);

    als_msg *m = apply_als(&ctx, m0, &prefix, &k0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = apply_als(&ctx, m1, &prefix, &k1);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_true(k1 == k0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* a message-typed field would merge: the node of the context must not leak in */
    m = apply_als(&ctx, m2, &prefix, &k2);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_non_null(m->identifier);
    assert_null(m->identifier->node);
    assert_string_equal(m->identifier->log_name, "other-log");
    assert_als_entries(m, 0, 3);
    assert_true(k2 != k0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* and it is the context from now on */
    m = apply_als(&ctx, m3, &prefix, &k3);
    assert_true(GRPC_SLICE_LENGTH(prefix) > 0);
    assert_null(m->identifier->node);
    assert_string_equal(m->identifier->log_name, "other-log");
    assert_als_entries(m, 1, 4);
    assert_true(k3 == k2);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    free(m0.p);
    free(m1.p);
    free(m2.p);
    free(m3.p);
    sr_stream_ctx_deinit(&ctx);
}

static void als_same_identifier_gives_same_key_across_streams(void **state)
{
    struct sr_stream_ctx a, b, c;
    uint64_t ka, kb, kc, ka2;
    (void)state;
    sr_stream_ctx_init(&a);
    sr_stream_ctx_init(&b);
    sr_stream_ctx_init(&c);
    struct buf ma = pack_als("node-1", "cluster-1", "als", 0, 1);
    struct buf mb = pack_als("node-1", "cluster-1", "als", 1, 9); /* different entries */
    struct buf mc = pack_als("node-2", "cluster-1", "als", 0, 1);
    struct buf mn = pack_als(NULL, NULL, NULL, 0, 5);
    als_msg *m = apply_als(&a, ma, NULL, &ka);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = apply_als(&b, mb, NULL, &kb);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = apply_als(&c, mc, NULL, &kc);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = apply_als(&a, mn, NULL, &ka2);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    assert_true(ka != 0 && kc != 0);
    assert_true(ka == kb);
    assert_true(ka != kc);
    assert_true(ka2 == ka);
    free(ma.p);
    free(mb.p);
    free(mc.p);
    free(mn.p);
    sr_stream_ctx_deinit(&a);
    sr_stream_ctx_deinit(&b);
    sr_stream_ctx_deinit(&c);
}

static void als_short_identifiers_give_distinct_keys(void **state)
{
    /* identifiers short enough to be stored inline in a grpc_slice (< 24 bytes) */
    static const char *names[] = {"a", "b", "ab"};
    struct sr_stream_ctx ctx[3];
    uint64_t k[3], later;
    (void)state;
    for (int i = 0; i < 3; i++) {
        sr_stream_ctx_init(&ctx[i]);
        struct buf m0 = pack_als(NULL, NULL, names[i], 0, 1);
        struct buf m1 = pack_als(NULL, NULL, NULL, 0, 2);
        als_msg *m = apply_als(&ctx[i], m0, NULL, &k[i]);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        m = apply_als(&ctx[i], m1, NULL, &later);
        assert_string_equal(m->identifier->log_name, names[i]);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        assert_true(k[i] != 0);
        assert_true(later == k[i]);
        free(m0.p);
        free(m1.p);
    }
    for (int i = 0; i < 3; i++) sr_stream_ctx_deinit(&ctx[i]);
    assert_true(k[0] != k[1]);
    assert_true(k[0] != k[2]);
    assert_true(k[1] != k[2]);
}

static void als_malformed_message_is_rejected_and_context_unchanged(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k;
    (void)state;
    sr_stream_ctx_init(&ctx);
    struct buf m0 = pack_als("node-1", "cluster-1", "als", 0, 1);
    als_msg *m = apply_als(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    static const uint8_t bad[] = {0x0a, 0x04, 0x12, 0x02, 'x', 'y', 0x12, 0x7f, 0x00};
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_als, &ctx, bad, sizeof(bad), &prefix, &k),
                     SR_PB_EMALFORMED);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    grpc_slice_unref(prefix);

    struct buf mn = pack_als(NULL, NULL, NULL, 0, 2);
    m = apply_als(&ctx, mn, NULL, &k);
    assert_string_equal(m->identifier->node->id, "node-1");
    assert_string_equal(m->identifier->log_name, "als");
    assert_true(k == k0);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    free(m0.p);
    free(mn.p);
    sr_stream_ctx_deinit(&ctx);
}

/* ---- message-typed context: occurrences merge ---- */

typedef Envoy__Service__Accesslog__V3__StreamAccessLogsMessage__Identifier als_ident;

/* The payload of an Identifier{node{id, cluster}, log_name} (NULL = unset). */
static struct buf pack_ident(const char *node_id, const char *cluster, const char *log_name)
{
    als_ident id = ENVOY__SERVICE__ACCESSLOG__V3__STREAM_ACCESS_LOGS_MESSAGE__IDENTIFIER__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    if (node_id || cluster) {
        if (node_id) node.id = (char *)node_id;
        if (cluster) node.cluster = (char *)cluster;
        id.node = &node;
    }
    if (log_name) id.log_name = (char *)log_name;
    return pack_msg(&id.base);
}

/* `0a len payload`: one identifier record (payloads here are < 128 bytes). */
static struct buf ident_record(struct buf payload)
{
    uint8_t hdr[2] = {0x0a, (uint8_t)payload.n};
    assert_true(payload.n < 128);
    return concat(hdr, 2, payload.p, payload.n);
}

/* A message: the given identifier records, then HTTP entries (no identifier of its own). */
static struct buf als_with_records(struct buf records, uint64_t n)
{
    struct buf entries = pack_als(NULL, NULL, NULL, 0, n);
    struct buf m = concat(records.p, records.n, entries.p, entries.n);
    free(entries.p);
    return m;
}

static void als_identifier_in_two_records_is_remembered_as_their_merge(void **state)
{
    struct sr_stream_ctx ctx, single;
    grpc_slice prefix;
    uint64_t k0, k1, ks;
    (void)state;
    sr_stream_ctx_init(&ctx);
    sr_stream_ctx_init(&single);

    /* Identifier{node{id, cluster}} then Identifier{log_name}: a parser merges them */
    struct buf pa = pack_ident("sidecar~10.0.0.7~ratings-v1", "ratings", NULL);
    struct buf pb = pack_ident(NULL, NULL, "als");
    struct buf ra = ident_record(pa), rb = ident_record(pb);
    struct buf recs = concat(ra.p, ra.n, rb.p, rb.n);
    struct buf m0 = als_with_records(recs, 1);
    struct buf m1 = pack_als(NULL, NULL, NULL, 1, 2);

    als_msg *m = apply_als(&ctx, m0, &prefix, &k0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0); /* it carries its identifier */
    assert_string_equal(m->identifier->node->id, "sidecar~10.0.0.7~ratings-v1");
    assert_string_equal(m->identifier->log_name, "als");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* the next message gets ONE record holding both payloads: the merged identifier */
    struct buf merged_payload = concat(pa.p, pa.n, pb.p, pb.n);
    struct buf want = ident_record(merged_payload);
    m = apply_als(&ctx, m1, &prefix, &k1);
    assert_slice_equals_buf(prefix, want);
    assert_string_equal(m->identifier->node->id, "sidecar~10.0.0.7~ratings-v1");
    assert_string_equal(m->identifier->node->cluster, "ratings");
    assert_string_equal(m->identifier->log_name, "als");
    assert_als_entries(m, 1, 2);
    assert_true(k1 == k0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* the key is over the merged value: one record with the same bytes, same key */
    struct buf s0 = als_with_records(want, 3);
    m = apply_als(&single, s0, NULL, &ks);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    assert_true(ks != 0);
    assert_true(ks == k0);

    free(pa.p);
    free(pb.p);
    free(ra.p);
    free(rb.p);
    free(recs.p);
    free(m0.p);
    free(m1.p);
    free(merged_payload.p);
    free(want.p);
    free(s0.p);
    sr_stream_ctx_deinit(&ctx);
    sr_stream_ctx_deinit(&single);
}

static void als_identifier_records_merging_the_node_are_kept_whole(void **state)
{
    /* Identifier{node{id, cluster}, log_name} then Identifier{node{id}}: protobuf merges
     * them into node{id: new, cluster}, log_name. The remembered record must be exactly
     * that merge, i.e. both payloads in one record. (protobuf-c 1.4 cannot decode a
     * nested message set twice, so bytes are checked here; Java, OAP's, merges them.) */
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k1;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf pa = pack_ident("node-old", "cluster-1", "als");
    struct buf pb = pack_ident("node-new", NULL, NULL);
    struct buf ra = ident_record(pa), rb = ident_record(pb);
    struct buf recs = concat(ra.p, ra.n, rb.p, rb.n);
    struct buf m0 = als_with_records(recs, 1);
    struct buf m1 = pack_als(NULL, NULL, NULL, 0, 2);
    struct buf merged_payload = concat(pa.p, pa.n, pb.p, pb.n);
    struct buf want = ident_record(merged_payload);

    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_als, &ctx, m0.p, m0.n, &prefix, &k0), 0);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_als, &ctx, m1.p, m1.n, &prefix, &k1), 0);
    assert_slice_equals_buf(prefix, want);
    assert_true(k1 == k0 && k0 != 0);
    grpc_slice_unref(prefix);

    free(pa.p);
    free(pb.p);
    free(ra.p);
    free(rb.p);
    free(recs.p);
    free(m0.p);
    free(m1.p);
    free(merged_payload.p);
    free(want.p);
    sr_stream_ctx_deinit(&ctx);
}

static void als_identifier_followed_by_empty_record_replaces_the_context(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k1, k2;
    (void)state;
    sr_stream_ctx_init(&ctx);

    struct buf m0 = pack_als("node-1", "cluster-1", "als", 0, 1);
    /* a new identifier written as a record and an empty record: the merge is the record */
    struct buf pa = pack_ident("node-2", "cluster-2", "als");
    struct buf ra = ident_record(pa);
    static const uint8_t empty_rec[] = {0x0a, 0x00};
    struct buf recs = concat(ra.p, ra.n, empty_rec, sizeof(empty_rec));
    struct buf m1 = als_with_records(recs, 2);
    struct buf m2 = pack_als(NULL, NULL, NULL, 1, 3);

    als_msg *m = apply_als(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = apply_als(&ctx, m1, &prefix, &k1);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    assert_string_equal(m->identifier->node->id, "node-2");
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    assert_true(k1 != k0);

    m = apply_als(&ctx, m2, &prefix, &k2);
    assert_slice_equals_buf(prefix, ra);
    assert_string_equal(m->identifier->node->id, "node-2");
    assert_string_equal(m->identifier->node->cluster, "cluster-2");
    assert_true(k2 == k1);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    free(m0.p);
    free(pa.p);
    free(ra.p);
    free(recs.p);
    free(m1.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

static void als_explicitly_empty_identifier_is_the_context_from_then_on(void **state)
{
    /* a message field has presence: OAP's satellite ALS and eBPF handlers take an
     * empty identifier/node as the new one (hasIdentifier()), so it is remembered */
    struct sr_stream_ctx ctx;
    grpc_slice prefix;
    uint64_t k0, k2;
    (void)state;
    sr_stream_ctx_init(&ctx);

    static const uint8_t empty_rec[] = {0x0a, 0x00};
    struct buf m0 = pack_als("node-1", "cluster-1", "als", 0, 1);
    struct buf e = {(uint8_t *)empty_rec, sizeof(empty_rec)};
    struct buf m1 = als_with_records(e, 2);
    struct buf m2 = pack_als(NULL, NULL, NULL, 1, 3);

    als_msg *m = apply_als(&ctx, m0, NULL, &k0);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = apply_als(&ctx, m1, &prefix, NULL);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 0);
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = apply_als(&ctx, m2, &prefix, &k2);
    assert_slice_equals_buf(prefix, e);
    assert_non_null(m->identifier);
    assert_null(m->identifier->node);
    assert_als_entries(m, 1, 3);
    assert_true(k0 != 0);
    assert_true(k2 == 0); /* an empty identity, as a stream without one */
    grpc_slice_unref(prefix);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    free(m0.p);
    free(m1.p);
    free(m2.p);
    sr_stream_ctx_deinit(&ctx);
}

static void context_field_with_another_wire_type_is_an_unknown_field(void **state)
{
    /* field 2 of LogData as a varint, field 1 of the ALS message as a varint: a parser
     * files them as unknown fields, so they neither set nor replace the context */
    struct sr_stream_ctx log, als;
    grpc_slice prefix;
    uint64_t k0, k;
    (void)state;
    sr_stream_ctx_init(&log);
    sr_stream_ctx_init(&als);

    struct buf l0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    Skywalking__V3__LogData *l = apply_log(&log, l0, NULL, &k0);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    static const uint8_t l1[] = {0x10, 0x05, 0x22, 0x02, '/', 'b'};
    Skywalking__V3__LogData idonly = SKYWALKING__V3__LOG_DATA__INIT;
    idonly.service = "svc-a";
    struct buf want = pack_msg(&idonly.base);
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_log, &log, l1, sizeof(l1), &prefix, &k), 0);
    /* service prepended (the varint is not a service); instance too */
    assert_true(GRPC_SLICE_LENGTH(prefix) > want.n);
    assert_memory_equal(GRPC_SLICE_START_PTR(prefix), want.p, want.n);
    assert_true(k == k0);
    grpc_slice_unref(prefix);

    struct buf a0 = pack_als("node-1", NULL, "als", 0, 1);
    als_msg *m = apply_als(&als, a0, NULL, &k0);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    static const uint8_t a1[] = {0x08, 0x07};
    assert_int_equal(sr_stream_ctx_apply(&sr_ctx_als, &als, a1, sizeof(a1), &prefix, &k), 0);
    assert_true(GRPC_SLICE_LENGTH(prefix) > 0);
    assert_int_equal(GRPC_SLICE_START_PTR(prefix)[0], 0x0a);
    assert_true(k == k0);
    grpc_slice_unref(prefix);

    free(l0.p);
    free(want.p);
    free(a0.p);
    sr_stream_ctx_deinit(&log);
    sr_stream_ctx_deinit(&als);
}

static void strip_empty_drops_only_explicit_empty_values_the_stream_knows(void **state)
{
    struct sr_stream_ctx ctx;
    grpc_slice out;
    (void)state;
    sr_stream_ctx_init(&ctx);

    /* nothing known yet: an explicit "" stays (there is nothing to replace it with) */
    static const uint8_t first[] = {0x12, 0x00, 0x22, 0x01, '/'};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, first, sizeof(first), &out), 0);
    assert_int_equal(GRPC_SLICE_LENGTH(out), 0);

    struct buf m0 = pack_log("svc-a", "inst-a", 1, "/a", "a");
    Skywalking__V3__LogData *l = apply_log(&ctx, m0, NULL, NULL);
    protobuf_c_message_free_unpacked(&l->base, NULL);

    /* service "x" then "" (the last wins: ""), instance "" and a non-context field
     * between them: both context fields go, every other byte stays, in order */
    static const uint8_t m1[] = {0x12, 0x01, 'x', 0x22, 0x02, '/', 'e', 0x12, 0x00, 0x1a, 0x00,
                                 0x08, 0x07};
    static const uint8_t want1[] = {0x22, 0x02, '/', 'e', 0x08, 0x07};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, m1, sizeof(m1), &out), 1);
    assert_int_equal(GRPC_SLICE_LENGTH(out), sizeof(want1));
    assert_memory_equal(GRPC_SLICE_START_PTR(out), want1, sizeof(want1));
    grpc_slice_unref(out);

    /* "" then "y": the value is "y", nothing to strip; no empty at all: nothing either */
    static const uint8_t m2[] = {0x12, 0x00, 0x12, 0x01, 'y'};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, m2, sizeof(m2), &out), 0);
    struct buf m3 = pack_log(NULL, NULL, 2, "/b", "b");
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, m3.p, m3.n, &out), 0);
    assert_int_equal(GRPC_SLICE_LENGTH(out), 0);

    /* a message consisting of the empty field only */
    static const uint8_t m4[] = {0x12, 0x00};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, m4, sizeof(m4), &out), 1);
    assert_int_equal(GRPC_SLICE_LENGTH(out), 0);
    grpc_slice_unref(out);

    /* malformed */
    static const uint8_t bad[] = {0x12, 0x05, 'x'};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_log, &ctx, bad, sizeof(bad), &out),
                     SR_PB_EMALFORMED);

    /* a message field is never stripped: an empty one has a meaning (presence) */
    struct sr_stream_ctx als;
    sr_stream_ctx_init(&als);
    struct buf a0 = pack_als("node-1", NULL, "als", 0, 1);
    als_msg *m = apply_als(&als, a0, NULL, NULL);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    static const uint8_t a1[] = {0x0a, 0x00};
    assert_int_equal(sr_stream_ctx_strip_empty(&sr_ctx_als, &als, a1, sizeof(a1), &out), 0);

    free(m0.p);
    free(m3.p);
    free(a0.p);
    sr_stream_ctx_deinit(&als);
    sr_stream_ctx_deinit(&ctx);
}

/* ---- MeterDataCollection ---- */

static struct buf pack_collection(Skywalking__V3__MeterData **items, size_t n)
{
    Skywalking__V3__MeterDataCollection c = SKYWALKING__V3__METER_DATA_COLLECTION__INIT;
    c.n_meterdata = n;
    c.meterdata = items;
    return pack_msg(&c.base);
}

static void meter_collection_key_uses_last_nonempty_service_and_instance(void **state)
{
    Skywalking__V3__MeterData d[5];
    Skywalking__V3__MeterSingleValue sv = SKYWALKING__V3__METER_SINGLE_VALUE__INIT;
    Skywalking__V3__MeterData *items[5];
    uint64_t key = 0;
    uint32_t n = 0;
    (void)state;
    sv.name = "cpu";
    sv.value = 1;
    for (int i = 0; i < 5; i++) {
        Skywalking__V3__MeterData init = SKYWALKING__V3__METER_DATA__INIT;
        d[i] = init;
        d[i].metric_case = SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE;
        d[i].singlevalue = &sv;
        items[i] = &d[i];
    }
    d[0].service = "svc-a";
    d[0].serviceinstance = "inst-a";
    d[0].timestamp = 1000;
    d[2].service = "svc-b"; /* later service wins, instance kept from d[0] */
    d[3].serviceinstance = "";

    struct buf c = pack_collection(items, 5);
    assert_int_equal(sr_meter_collection_key(c.p, c.n, &key, &n), 0);
    assert_int_equal(n, 5);
    assert_true(key == sr_ctx_key2((const uint8_t *)"svc-b", 5, (const uint8_t *)"inst-a", 6));
    free(c.p);

    /* the first element alone: its identity */
    c = pack_collection(items, 1);
    assert_int_equal(sr_meter_collection_key(c.p, c.n, &key, &n), 0);
    assert_int_equal(n, 1);
    assert_true(key == sr_ctx_key2((const uint8_t *)"svc-a", 5, (const uint8_t *)"inst-a", 6));
    free(c.p);
}

static void meter_collection_key_matches_stream_key_for_same_identity(void **state)
{
    Skywalking__V3__MeterData d = SKYWALKING__V3__METER_DATA__INIT;
    Skywalking__V3__MeterData *items[1] = {&d};
    struct sr_stream_ctx ctx;
    uint64_t kc = 0, ks = 0;
    uint32_t n = 0;
    (void)state;
    d.service = "svc-m";
    d.serviceinstance = "inst-m";
    d.timestamp = 5;
    struct buf c = pack_collection(items, 1);
    struct buf s = pack_meter("svc-m", "inst-m", 5, "cpu", 1, 0);
    assert_int_equal(sr_meter_collection_key(c.p, c.n, &kc, &n), 0);
    sr_stream_ctx_init(&ctx);
    Skywalking__V3__MeterData *back = apply_meter(&ctx, s, NULL, &ks);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    sr_stream_ctx_deinit(&ctx);
    assert_true(kc != 0);
    assert_true(kc == ks);
    free(c.p);
    free(s.p);
}

static void meter_collection_without_identity_has_zero_key_and_counts_items(void **state)
{
    Skywalking__V3__MeterData d = SKYWALKING__V3__METER_DATA__INIT;
    Skywalking__V3__MeterData *items[3] = {&d, &d, &d};
    uint64_t key = 1;
    uint32_t n = 0;
    (void)state;
    d.timestamp = 7;
    struct buf c = pack_collection(items, 3);
    assert_int_equal(sr_meter_collection_key(c.p, c.n, &key, &n), 0);
    assert_int_equal(n, 3);
    assert_true(key == 0);
    free(c.p);

    /* an empty collection */
    assert_int_equal(sr_meter_collection_key((const uint8_t *)"", 0, &key, &n), 0);
    assert_int_equal(n, 0);
    assert_true(key == 0);
}

static void meter_collection_ignores_unknown_top_level_fields(void **state)
{
    /* unknown field 2 (varint) and 3 (LEN) around one MeterData{service "s", instance "i"} */
    static const uint8_t msg[] = {0x10, 0x05, 0x0a, 0x06, 0x1a, 0x01, 's',  0x22,
                                  0x01, 'i',  0x1a, 0x02, 0x01, 0x02};
    uint64_t key = 0;
    uint32_t n = 0;
    (void)state;
    assert_int_equal(sr_meter_collection_key(msg, sizeof(msg), &key, &n), 0);
    assert_int_equal(n, 1);
    assert_true(key == sr_ctx_key2((const uint8_t *)"s", 1, (const uint8_t *)"i", 1));
}

static void meter_collection_rejects_malformed_nested_meter_data(void **state)
{
    /* element 1 is fine; element 2's service length runs past the element */
    static const uint8_t nested_bad[] = {0x0a, 0x03, 0x1a, 0x01, 's', 0x0a, 0x03, 0x1a, 0x05, 's'};
    /* meterData with a varint wire type */
    static const uint8_t wrong_type[] = {0x08, 0x01};
    /* a group inside an element */
    static const uint8_t nested_group[] = {0x0a, 0x01, 0x0b};
    /* top-level framing broken after a good element */
    static const uint8_t top_bad[] = {0x0a, 0x03, 0x1a, 0x01, 's', 0x0a, 0x09, 0x00};
    uint64_t key;
    uint32_t n;
    (void)state;
    assert_int_equal(sr_meter_collection_key(nested_bad, sizeof(nested_bad), &key, &n),
                     SR_PB_EMALFORMED);
    assert_int_equal(sr_meter_collection_key(wrong_type, sizeof(wrong_type), &key, &n),
                     SR_PB_EMALFORMED);
    assert_int_equal(sr_meter_collection_key(nested_group, sizeof(nested_group), &key, &n),
                     SR_PB_EMALFORMED);
    assert_int_equal(sr_meter_collection_key(top_bad, sizeof(top_bad), &key, &n), SR_PB_EMALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_first_message_gets_empty_prefix),
        cmocka_unit_test(log_context_prepended_to_messages_without_service),
        cmocka_unit_test(log_message_with_new_service_updates_context_for_following_messages),
        cmocka_unit_test(log_message_with_only_service_gets_only_instance_prepended),
        cmocka_unit_test(log_message_with_only_instance_gets_only_service_prepended),
        cmocka_unit_test(log_stream_without_identity_gets_no_prefix_and_no_key),
        cmocka_unit_test(log_first_message_with_only_service_then_instance_builds_up_context),
        cmocka_unit_test(log_repeated_service_in_one_message_remembers_the_last),
        cmocka_unit_test(log_explicitly_empty_service_does_not_replace_context),
        cmocka_unit_test(log_explicit_empty_service_is_credited_to_its_own_stream_as_agent_direct),
        cmocka_unit_test(strip_empty_drops_only_explicit_empty_values_the_stream_knows),
        cmocka_unit_test(log_contexts_of_two_streams_do_not_mix),
        cmocka_unit_test(log_same_service_gives_same_key_across_streams),
        cmocka_unit_test(log_long_identity_key_matches_key2_and_is_carried),
        cmocka_unit_test(log_malformed_message_is_rejected_and_context_unchanged),
        cmocka_unit_test(ctx_deinit_forgets_the_context),
        cmocka_unit_test(key2_separates_service_from_instance),
        cmocka_unit_test(meter_service_instance_timestamp_carried_to_later_messages),
        cmocka_unit_test(meter_message_with_own_timestamp_keeps_it_and_gets_identity),
        cmocka_unit_test(meter_malformed_message_is_rejected_and_context_unchanged),
        cmocka_unit_test(als_identifier_prepended_to_messages_without_it),
        cmocka_unit_test(als_message_with_identifier_is_never_prefixed),
        cmocka_unit_test(als_same_identifier_gives_same_key_across_streams),
        cmocka_unit_test(als_short_identifiers_give_distinct_keys),
        cmocka_unit_test(als_malformed_message_is_rejected_and_context_unchanged),
        cmocka_unit_test(als_identifier_in_two_records_is_remembered_as_their_merge),
        cmocka_unit_test(als_identifier_records_merging_the_node_are_kept_whole),
        cmocka_unit_test(als_identifier_followed_by_empty_record_replaces_the_context),
        cmocka_unit_test(als_explicitly_empty_identifier_is_the_context_from_then_on),
        cmocka_unit_test(context_field_with_another_wire_type_is_an_unknown_field),
        cmocka_unit_test(meter_collection_key_uses_last_nonempty_service_and_instance),
        cmocka_unit_test(meter_collection_key_matches_stream_key_for_same_identity),
        cmocka_unit_test(meter_collection_without_identity_has_zero_key_and_counts_items),
        cmocka_unit_test(meter_collection_ignores_unknown_top_level_fields),
        cmocka_unit_test(meter_collection_rejects_malformed_nested_meter_data),
    };
    return cmocka_run_group_tests_name("context", tests, sr_test_grpc_setup, sr_test_grpc_teardown);
}
