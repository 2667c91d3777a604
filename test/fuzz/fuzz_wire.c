/* libFuzzer target: the wire scanner and the stream-context rewrite on
 * arbitrary bytes. Properties checked beyond "no crash, no UB, no leak":
 * - a message the scanner accepts keeps being accepted with any prefix the
 *   context produced, and the prefixed message still carries every context
 *   field (so the rewrite never produces something OAP cannot read);
 * - a malformed message leaves the context unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/context.h"
#include "skyrelay/wire.h"

static void check_spec(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx, const uint8_t *d,
                       size_t n)
{
    grpc_slice prefix;
    uint64_t key, key_before = ctx->key;
    int r = sr_stream_ctx_apply(spec, ctx, d, n, &prefix, &key);
    if (r < 0) {
        if (ctx->key != key_before || GRPC_SLICE_LENGTH(prefix) != 0) abort();
        grpc_slice_unref(prefix);
        return;
    }
    if (GRPC_SLICE_LENGTH(prefix)) {
        size_t len = GRPC_SLICE_LENGTH(prefix) + n;
        uint8_t *joined = malloc(len ? len : 1);
        struct sr_pb_field f[SR_CTX_MAX_FIELDS];
        memcpy(joined, GRPC_SLICE_START_PTR(prefix), GRPC_SLICE_LENGTH(prefix));
        if (n) memcpy(joined + GRPC_SLICE_LENGTH(prefix), d, n);
        if (sr_pb_scan(joined, len, spec->fields, spec->n_fields, f) < 0) abort();
        for (int i = 0; i < spec->n_fields; i++)
            if (GRPC_SLICE_LENGTH(ctx->field[i]) && !f[i].present) abort();
        free(joined);
    }
    grpc_slice_unref(prefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sr_stream_ctx log, meter, als;
    uint64_t key;
    uint32_t items;
    size_t half = n / 2;

    (void)sr_pb_scan(d, n, NULL, 0, NULL);
    (void)sr_meter_collection_key(d, n, &key, &items);
    sr_stream_ctx_init(&log);
    sr_stream_ctx_init(&meter);
    sr_stream_ctx_init(&als);
    /* two messages of one stream: the first half, then the second */
    check_spec(&sr_ctx_log, &log, d, half);
    check_spec(&sr_ctx_log, &log, d + half, n - half);
    check_spec(&sr_ctx_meter, &meter, d, half);
    check_spec(&sr_ctx_meter, &meter, d + half, n - half);
    check_spec(&sr_ctx_als, &als, d, half);
    check_spec(&sr_ctx_als, &als, d + half, n - half);
    sr_stream_ctx_deinit(&log);
    sr_stream_ctx_deinit(&meter);
    sr_stream_ctx_deinit(&als);
    return 0;
}
