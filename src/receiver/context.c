/* Stream context rewrite (see include/skyrelay/context.h for the why).
 *
 * Steady state for a stream whose context is known and whose messages carry
 * none of it (the common case: identity only on the first message) costs one
 * top-level scan and one slice ref: the prefix is the cached `all` slice. A
 * message that carries some fields and lacks others gets a fresh prefix slice
 * built from the lacking fields (rare: only when an agent sends partial
 * context). */
#include "skyrelay/context.h"

#include <string.h>

#include "skyrelay/wire.h"

const struct sr_ctx_spec sr_ctx_log = {.n_fields = 2, .n_key = 2, .fields = {2, 3}};
const struct sr_ctx_spec sr_ctx_meter = {.n_fields = 3, .n_key = 2, .fields = {3, 4, 5}};
const struct sr_ctx_spec sr_ctx_als = {.n_fields = 1, .n_key = 1, .fields = {1}};

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

int sr_stream_ctx_apply(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx,
                        const uint8_t *msg, size_t len, grpc_slice *prefix, uint64_t *key)
{
    struct sr_pb_field f[SR_CTX_MAX_FIELDS];
    int changed = 0, n_missing = 0, n_known = 0;

    *prefix = grpc_empty_slice();
    if (sr_pb_scan(msg, len, spec->fields, spec->n_fields, f) < 0) return SR_PB_EMALFORMED;

    for (int i = 0; i < spec->n_fields; i++) {
        int nonempty = f[i].present && !(f[i].wire_type == SR_WT_LEN && f[i].val_len == 0) &&
                       !(f[i].wire_type == SR_WT_VARINT && f[i].varint == 0);
        if (nonempty) {
            grpc_slice cur = ctx->field[i];
            if (GRPC_SLICE_LENGTH(cur) != f[i].size ||
                memcmp(GRPC_SLICE_START_PTR(cur), msg + f[i].off, f[i].size) != 0) {
                grpc_slice_unref(cur);
                ctx->field[i] = grpc_slice_from_copied_buffer((const char *)msg + f[i].off, f[i].size);
                changed = 1;
            }
        }
        if (GRPC_SLICE_LENGTH(ctx->field[i])) {
            n_known++;
            if (!f[i].present) n_missing++;
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
            if (!f[i].present) total += GRPC_SLICE_LENGTH(ctx->field[i]);
        *prefix = grpc_slice_malloc(total);
        for (int i = 0; i < spec->n_fields; i++) {
            size_t n = GRPC_SLICE_LENGTH(ctx->field[i]);
            if (f[i].present || !n) continue;
            memcpy(GRPC_SLICE_START_PTR(*prefix) + at, GRPC_SLICE_START_PTR(ctx->field[i]), n);
            at += n;
        }
    }
    return 0;
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
