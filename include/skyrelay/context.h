/* Stream-scoped context carried onto every message by a wire rewrite.
 *
 * Several protocols send context only in the first message of a stream
 * (LogData service/serviceInstance, MeterData service/serviceInstance/timestamp,
 * the Envoy ALS identifier). Protobuf merges concatenated encodings and, for
 * scalars, the last value wins; so a message that lacks a context field is made
 * self-describing by PREPENDING the remembered encoded field in front of it:
 * no decode, no re-encode, one shared slice in front of the original bytes.
 * A field present in the message is remembered as the new context and never
 * prepended (a message-typed field would otherwise be merged field by field).
 * What is remembered is the value a protobuf parser sees: the last occurrence
 * of a scalar, the merge (the concatenated payloads) of every occurrence of a
 * message. src/receiver/context.c explains the empty-value cases.
 *
 * One struct sr_stream_ctx per downstream call; owned by the worker thread that
 * owns the call. */
#ifndef SKYRELAY_CONTEXT_H
#define SKYRELAY_CONTEXT_H

#include <grpc/slice.h>
#include <stdint.h>

#define SR_CTX_MAX_FIELDS 3

struct sr_ctx_spec {
    uint8_t n_fields;
    uint8_t n_key;    /* the first n_key context fields form the event key */
    uint8_t key_first_only; /* n_key 2: the key is sr_ctx_key2(first, none) (logs: by service) */
    uint8_t messages; /* bit i set: fields[i] is message-typed (occurrences merge) */
    uint32_t fields[SR_CTX_MAX_FIELDS];
    uint8_t wire[SR_CTX_MAX_FIELDS]; /* the field's wire type (enum sr_wire_type); an
                                      * occurrence of another type is an unknown field */
};

struct sr_stream_ctx {
    grpc_slice field[SR_CTX_MAX_FIELDS]; /* remembered value as one record (tag..value) or empty */
    grpc_slice all;                      /* all remembered fields, concatenated in spec order */
    uint64_t key;                        /* hash of the key fields' values (0 = none known) */
};

/* Context specs of the protocols (static, read-only). */
extern const struct sr_ctx_spec sr_ctx_log;   /* LogData: service=2, serviceInstance=3 */
extern const struct sr_ctx_spec sr_ctx_meter; /* MeterData: service=3, serviceInstance=4, timestamp=5 */
extern const struct sr_ctx_spec sr_ctx_als;   /* StreamAccessLogsMessage / StreamMetricsMessage:
                                                * identifier=1; EBPFAccessLogMessage: node=1 (messages) */

void sr_stream_ctx_init(struct sr_stream_ctx *ctx);
void sr_stream_ctx_deinit(struct sr_stream_ctx *ctx);

/* Scans msg[0..len) (validating its top-level framing), remembers the context
 * fields it carries, and sets *prefix to the encoded context fields the message
 * lacks (returns owned: a new ref the caller unrefs; empty when nothing is
 * missing or nothing is known). *key receives the event key (the stream's
 * current context key). A scalar field written with its empty value ("" or 0)
 * is not remembered and not prefixed (see sr_stream_ctx_strip_empty); a
 * message field is remembered as the merge of its occurrences, even empty.
 * Returns 0 or SR_PB_EMALFORMED (ctx unchanged, *prefix empty). */
int sr_stream_ctx_apply(const struct sr_ctx_spec *spec, struct sr_stream_ctx *ctx,
                        const uint8_t *msg, size_t len, grpc_slice *prefix, uint64_t *key);

/* For a message that writes a scalar context field with its empty value ("" or
 * 0) while the stream knows a value for it: sets *out to a copy of msg without
 * that field (returns owned), so that the prefix of sr_stream_ctx_apply, run on
 * the copy, gives the message its stream's value, as OAP would agent-direct
 * (src/receiver/context.c says why). Call before sr_stream_ctx_apply, with the
 * same ctx (borrowed, unchanged). Returns 1 (*out set), 0 when there is
 * nothing to strip (*out empty, nothing allocated), or SR_PB_EMALFORMED. */
int sr_stream_ctx_strip_empty(const struct sr_ctx_spec *spec, const struct sr_stream_ctx *ctx,
                              const uint8_t *msg, size_t len, grpc_slice *out);

/* The key of a MeterDataCollection as OAP credits it: hash of the LAST
 * non-empty service and serviceInstance over its MeterData elements.
 * Validates the framing of the collection and of each element.
 * Returns 0 or SR_PB_EMALFORMED; *n_items gets the number of MeterData. */
int sr_meter_collection_key(const uint8_t *msg, size_t len, uint64_t *key, uint32_t *n_items);

/* Key of (service, instance) values as used by the meter context; exposed for tests
 * and for consistency between the two meter paths. */
uint64_t sr_ctx_key2(const uint8_t *svc, size_t svc_len, const uint8_t *inst, size_t inst_len);

#endif
