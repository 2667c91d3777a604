/* Stream context rewrite (see include/skyrelay/context.h for the why).
 *
 * Steady state for a stream whose context is known and whose messages carry
 * none of it (the common case: identity only on the first message) costs one
 * top-level scan and one slice ref: the prefix is the cached `all` slice. A
 * message that carries some fields and lacks others gets a fresh prefix slice
 * built from the lacking fields (rare: only when an agent sends partial
 * context).
 *
 * What is remembered is what a protobuf parser (OAP's, Java) makes of the
 * message, so that `prefix || message` on a later message means the same:
 * - a scalar: its last occurrence (the last one wins);
 * - a message (the ALS / Envoy metrics `identifier`, the eBPF `node`): every
 *   occurrence merges into the previous field by field, and the merge of two
 *   encodings of a message is their concatenation. So the remembered value is
 *   one record holding all the occurrences' payloads, in order (`0a 03 X
 *   0a 04 Y` is remembered as `0a 07 X Y`; `0a 05 X 0a 00` as X), and the key is
 *   hashed over that merged value: the same bytes give the same key, however
 *   they were split into records;
 * - an occurrence with another wire type than the field's is an unknown field
 *   to the parser: ignored here too (and the context is prepended).
 *
 * Empty values. A proto3 scalar has no presence: `service = ""` written out
 * (`12 00`) and no service at all are the same value to every reader, OAP's
 * included. OAP's LogReportService keeps, per upstream stream, the first
 * non-empty service it sees and sets it on every later LogData of that stream
 * (the proto says "use the previous not-null"; the code overwrites even a
 * LogData that has its own service). Agent-direct, a LogData with service ""
 * is therefore credited to its own stream's service (or to none, first in its
 * stream); the agent cannot say "no service" there. Through skyrelay, on an
 * upstream stream shared with other agents' messages, it would be credited to
 * whatever service came first on that upstream stream: another agent's. So
 * the correct behaviour is agent-direct's: the message takes its own stream's
 * context. A prefix cannot do that (the message's own empty field comes later
 * and wins), so sr_stream_ctx_strip_empty gives the receiver a copy without
 * the empty field when the stream knows a value for it (a copy only for this
 * case: proto3 encoders never write an empty value), and the prefix then
 * applies. Either way such a value is never remembered (the stream keeps its
 * context for the following messages) and the event keeps its own stream's
 * key: with one upstream stream per key (the sender must group logs by key,
 * because of OAP's first-service rule) no other stream's service can reach it.
 * A stream whose first message says "" has no context: the field stays, the
 * key is 0, and key 0 only ever holds messages without any service.
 * A message field does have presence: OAP's satellite ALS and eBPF handlers
 * take the identifier/node of any message that has one (`hasIdentifier()`),
 * even an empty one. So an empty merged message value is remembered like any
 * other (as `0a 00`, key 0), and prepended to the messages that follow. */
#include "skyrelay/context.h"

#include <stdbool.h>
#include <string.h>

#include "skyrelay/wire.h"

/* The key of a log is its service alone, sr_ctx_key2(service, none): OAP makes only the
 * service sticky on an upstream stream (docs/protocols.md), and every LogData carries its own
 * instance after the rewrite, so one upstream stream per service carries all of that service's
 * instances (per (service, instance), a batch of many instances became many small calls). */
const struct sr_ctx_spec sr_ctx_log = {
    .n_fields = 2, .n_key = 2, .key_first_only = 1, .fields = {2, 3},
    .wire = {SR_WT_LEN, SR_WT_LEN}};
const struct sr_ctx_spec sr_ctx_meter = {.n_fields = 3,
                                         .n_key = 2,
                                         .fields = {3, 4, 5},
                                         .wire = {SR_WT_LEN, SR_WT_LEN, SR_WT_VARINT}};
const struct sr_ctx_spec sr_ctx_als = {
    .n_fields = 1, .n_key = 1, .messages = 0x1, .fields = {1}, .wire = {SR_WT_LEN}};

void sr_stream_ctx_init(struct sr_stream_ctx *ctx)
{
    for (int i = 0; i < SR_CTX_MAX_FIELDS; i++) ctx->field[i] = grpc_empty_slice();
    ctx->all = grpc_empty_slice();
    ctx->key = 0;
}

void sr_stream_ctx_deinit(struct sr_stream_ctx *ctx)
{
    for (int i = 0; i < SR_CTX_MAX_FIELDS; i++) grpc_slice_unref(ctx->field[i]);
    grpc_slice_unref(ctx->all);
    sr_stream_ctx_init(ctx);
}

uint64_t sr_ctx_key2(const uint8_t *svc, size_t svc_len, const uint8_t *inst, size_t inst_len)
{
    uint64_t h = SR_HASH64_INIT;
    uint8_t lens[8];
    size_t k = sr_pb_put_varint(lens, svc_len);
    /* length-prefix each part so ("ab","c") and ("a","bc") differ */
    h = sr_hash64(h, lens, k);
    h = sr_hash64(h, svc, svc_len);
    k = sr_pb_put_varint(lens, inst_len);
    h = sr_hash64(h, lens, k);
    h = sr_hash64(h, inst, inst_len);
    return h ? h : 1;
}

/* Value bytes of a remembered encoded field (skip tag and length). Takes a
 * pointer: a short slice is inlined, so its bytes live inside the struct. */
static void field_value(const grpc_slice *f, const uint8_t **v, size_t *n)
{
    struct sr_pb_field pf;
    size_t pos = 0;
    *v = NULL;
    *n = 0;
    if (GRPC_SLICE_LENGTH(*f) == 0) return;
    if (sr_pb_next(GRPC_SLICE_START_PTR(*f), GRPC_SLICE_LENGTH(*f), &pos, &pf) == 1) {
        *v = GRPC_SLICE_START_PTR(*f) + pf.val_off;
        *n = pf.val_len;
    }
}

static void rebuild(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx)
{
    size_t total = 0, at = 0;
    uint64_t h = SR_HASH64_INIT;
    int known = 0;

    for (int i = 0; i < spec->n_fields; i++) total += GRPC_SLICE_LENGTH(ctx->field[i]);
    grpc_slice_unref(ctx->all);
    ctx->all = total ? grpc_slice_malloc(total) : grpc_empty_slice();
    for (int i = 0; i < spec->n_fields; i++) {
        size_t n = GRPC_SLICE_LENGTH(ctx->field[i]);
        memcpy(GRPC_SLICE_START_PTR(ctx->all) + at, GRPC_SLICE_START_PTR(ctx->field[i]), n);
        at += n;
    }
    if (spec->n_key == 2) {
        const uint8_t *a, *b;
        size_t na, nb;
        field_value(&ctx->field[0], &a, &na);
        field_value(&ctx->field[1], &b, &nb);
        if (spec->key_first_only) nb = 0;
        ctx->key = (na || nb) ? sr_ctx_key2(a, na, b, nb) : 0;
        return;
    }
    for (int i = 0; i < spec->n_key; i++) {
        const uint8_t *v;
        size_t n;
        field_value(&ctx->field[i], &v, &n);
        if (n) known = 1;
        h = sr_hash64(h, v, n);
        h = sr_hash64(h, "\0", 1);
    }
    ctx->key = known ? (h ? h : 1) : 0;
}

/* A scalar written with its default value: no value to a proto3 reader. */
static bool empty_scalar(const struct sr_pb_field *f)
{
    return (f->wire_type == SR_WT_LEN && f->val_len == 0) ||
           (f->wire_type == SR_WT_VARINT && f->varint == 0);
}

/* The occurrences of one context field in a message. */
struct seen {
    struct sr_pb_field last; /* the last occurrence */
    uint32_t count;
    size_t total; /* LEN: payload bytes of all occurrences */
};

static int scan(const struct sr_ctx_spec *spec, const uint8_t *msg, size_t len, struct seen *s)
{
    struct sr_pb_field f;
    size_t pos = 0;
    int r;

    memset(s, 0, sizeof(*s) * SR_CTX_MAX_FIELDS);
    if (len > UINT32_MAX) return SR_PB_EMALFORMED;
    while ((r = sr_pb_next(msg, len, &pos, &f)) == 1)
        for (int i = 0; i < spec->n_fields; i++)
            if (f.number == spec->fields[i] && f.wire_type == spec->wire[i]) {
                s[i].last = f;
                s[i].count++;
                s[i].total += f.val_len;
            }
    return r < 0 ? SR_PB_EMALFORMED : 0;
}

/* One record holding the payloads of every LEN occurrence of `number` in the
 * (already validated) message: their merge. Returns owned. */
static grpc_slice merged_record(uint32_t number, const uint8_t *msg, size_t len, size_t total)
{
    uint8_t hdr[20];
    size_t at = sr_pb_put_varint(hdr, (uint64_t)number << 3 | SR_WT_LEN), pos = 0;
    struct sr_pb_field f;
    grpc_slice out;

    at += sr_pb_put_varint(hdr + at, total);
    out = grpc_slice_malloc(at + total);
    memcpy(GRPC_SLICE_START_PTR(out), hdr, at);
    while (sr_pb_next(msg, len, &pos, &f) == 1)
        if (f.number == number && f.wire_type == SR_WT_LEN) {
            memcpy(GRPC_SLICE_START_PTR(out) + at, msg + f.val_off, f.val_len);
            at += f.val_len;
        }
    return out;
}

int sr_stream_ctx_apply(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx,
                        const uint8_t *msg, size_t len, grpc_slice *prefix, uint64_t *key)
{
    struct seen f[SR_CTX_MAX_FIELDS];
    int changed = 0, n_missing = 0, n_known = 0;

    *prefix = grpc_empty_slice();
    if (scan(spec, msg, len, f) < 0) return SR_PB_EMALFORMED;

    for (int i = 0; i < spec->n_fields; i++) {
        bool message = spec->messages & (1u << i);
        const struct sr_pb_field *l = &f[i].last;
        /* a scalar's empty value is no value (see the top of the file) */
        bool remember = f[i].count && (message || !empty_scalar(l));
        if (remember) {
            grpc_slice cur = ctx->field[i], v;
            if (message && f[i].count > 1)
                v = merged_record(spec->fields[i], msg, len, f[i].total);
            else
                v = grpc_slice_from_static_buffer(msg + l->off, l->size); /* borrowed */
            if (GRPC_SLICE_LENGTH(cur) != GRPC_SLICE_LENGTH(v) ||
                memcmp(GRPC_SLICE_START_PTR(cur), GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v)) != 0) {
                grpc_slice_unref(cur);
                ctx->field[i] = message && f[i].count > 1
                                    ? grpc_slice_ref(v)
                                    : grpc_slice_from_copied_buffer((const char *)msg + l->off, l->size);
                changed = 1;
            }
            grpc_slice_unref(v);
        }
        if (GRPC_SLICE_LENGTH(ctx->field[i])) {
            n_known++;
            if (!f[i].count) n_missing++;
        }
    }
    if (changed) rebuild(spec, ctx);
    *key = ctx->key;

    if (n_missing == 0) return 0;
    if (n_missing == n_known) {
        /* Lacks every known field: the cached concatenation is exactly the prefix. */
        *prefix = grpc_slice_ref(ctx->all);
        return 0;
    }
    {
        size_t total = 0, at = 0;
        for (int i = 0; i < spec->n_fields; i++)
            if (!f[i].count) total += GRPC_SLICE_LENGTH(ctx->field[i]);
        *prefix = grpc_slice_malloc(total);
        for (int i = 0; i < spec->n_fields; i++) {
            size_t n = GRPC_SLICE_LENGTH(ctx->field[i]);
            if (f[i].count || !n) continue;
            memcpy(GRPC_SLICE_START_PTR(*prefix) + at, GRPC_SLICE_START_PTR(ctx->field[i]), n);
            at += n;
        }
    }
    return 0;
}

int sr_stream_ctx_strip_empty(const struct sr_ctx_spec *spec, const struct sr_stream_ctx *ctx,
                              const uint8_t *msg, size_t len, grpc_slice *out)
{
    struct seen f[SR_CTX_MAX_FIELDS];
    struct sr_pb_field g;
    unsigned strip = 0;
    size_t keep = 0, at = 0, pos;

    *out = grpc_empty_slice();
    if (scan(spec, msg, len, f) < 0) return SR_PB_EMALFORMED;
    for (int i = 0; i < spec->n_fields; i++)
        if (!(spec->messages & (1u << i)) && f[i].count && empty_scalar(&f[i].last) &&
            GRPC_SLICE_LENGTH(ctx->field[i]))
            strip |= 1u << i;
    if (!strip) return 0;
    /* drop every occurrence of such a field: its value is the last one, empty */
    for (int pass = 0; pass < 2; pass++) {
        pos = 0;
        while (sr_pb_next(msg, len, &pos, &g) == 1) {
            bool drop = false;
            for (int i = 0; i < spec->n_fields; i++)
                if ((strip & (1u << i)) && g.number == spec->fields[i] && g.wire_type == spec->wire[i])
                    drop = true;
            if (drop) continue;
            if (pass == 0) {
                keep += g.size;
            } else {
                memcpy(GRPC_SLICE_START_PTR(*out) + at, msg + g.off, g.size);
                at += g.size;
            }
        }
        if (pass == 0) *out = grpc_slice_malloc(keep);
    }
    return 1;
}

int sr_meter_collection_key(const uint8_t *msg, size_t len, uint64_t *key, uint32_t *n_items)
{
    static const uint32_t want[2] = {3, 4};
    struct sr_pb_field f, in[2];
    const uint8_t *svc = NULL, *inst = NULL;
    size_t svc_len = 0, inst_len = 0, pos = 0;
    uint32_t n = 0;
    int r;

    while ((r = sr_pb_next(msg, len, &pos, &f)) == 1) {
        if (f.number != 1) continue; /* unknown fields are carried, not interpreted */
        if (f.wire_type != SR_WT_LEN) return SR_PB_EMALFORMED;
        if (sr_pb_scan(msg + f.val_off, f.val_len, want, 2, in) < 0) return SR_PB_EMALFORMED;
        if (in[0].present && in[0].wire_type == SR_WT_LEN && in[0].val_len) {
            svc = msg + f.val_off + in[0].val_off;
            svc_len = in[0].val_len;
        }
        if (in[1].present && in[1].wire_type == SR_WT_LEN && in[1].val_len) {
            inst = msg + f.val_off + in[1].val_off;
            inst_len = in[1].val_len;
        }
        n++;
    }
    if (r < 0) return SR_PB_EMALFORMED;
    *n_items = n;
    *key = (svc_len || inst_len) ? sr_ctx_key2(svc, svc_len, inst, inst_len) : 0;
    return 0;
}
