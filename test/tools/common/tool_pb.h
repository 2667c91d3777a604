/* A minimal protobuf wire-format reader and writer for the test tools, for the few messages
 * that are decoded or built by hand (fake_oap: ManagementService requests, the synchronous
 * methods' deterministic responses) instead of through protobuf-c.
 *
 * The reader walks the top-level fields of one message; it does not know the schema, so it
 * only checks that the wire format is well formed (tags, varints, lengths, fixed widths). */
#ifndef SKYRELAY_TOOL_PB_H
#define SKYRELAY_TOOL_PB_H

#include <stddef.h>
#include <stdint.h>

enum {
    TOOL_PB_VARINT = 0,
    TOOL_PB_I64 = 1,
    TOOL_PB_LEN = 2,
    TOOL_PB_I32 = 5,
};

struct tool_pb_field {
    uint32_t number;
    int wire_type;
    uint64_t varint;    /* TOOL_PB_VARINT, TOOL_PB_I64, TOOL_PB_I32 */
    const uint8_t *data; /* TOOL_PB_LEN: the payload (borrowed from the input) */
    size_t len;
};

/* Reads the field at *p (p < end) into *f and advances *p past it.
 * Returns 1 for a field, 0 at the end of the input, -1 for malformed input
 * (group wire types 3/4 are rejected as malformed: proto3 has none). */
int tool_pb_next(const uint8_t **p, const uint8_t *end, struct tool_pb_field *f);

/* Bytes needed by tool_pb_put_len for a LEN field of n payload bytes and field number f. */
size_t tool_pb_len_size(uint32_t field, size_t n);
/* Writes a LEN field (tag, varint length, payload) at out; returns the bytes written.
 * out must have tool_pb_len_size(field, n) bytes. */
size_t tool_pb_put_len(uint8_t *out, uint32_t field, const void *data, size_t n);

#endif
