/* Edge validation: checks a received message against the protocol schema.
 *
 * The wire scanner (wire.h) walks only the top level of a message. This
 * module walks it as deep as the schema in proto/ describes, driven by the
 * protobuf-c descriptors generated from it, without decoding, unpacking or
 * allocating: a message OAP would refuse is refused at the edge, on the call
 * that sent it. Thread-safe, allocation-free. */
#ifndef SKYRELAY_SCHEMA_H
#define SKYRELAY_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Nested messages (and unknown groups) deeper than this are refused. */
#define SR_SCHEMA_MAX_DEPTH 64

/* Checks that b[0..n) is a valid encoding of the message d: tags, wire types
 * (a known field must have its declared wire type; a repeated scalar may come
 * packed or not), varints (at most 10 bytes), fixed sizes, lengths, nested
 * messages to SR_SCHEMA_MAX_DEPTH, UTF-8 of string fields; unknown fields
 * (groups included) must be well framed. Returns 0 if valid, else -EBADMSG with
 * *why (if why is not NULL) pointing at a description of the first problem,
 * e.g. "field 3 (spans): field 1 (spanId): truncated varint". The description
 * is in thread-local storage, valid until the next call on the same thread.
 * Borrows d and b for the call. Any thread. */
int sr_schema_check(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n,
                    const char **why);

/* The descriptor of the message a client sends on the async method path[0..len)
 * (the packaged "/skywalking.v3.X/y" and the package-less "/X/y" forms, Envoy
 * ALS and metrics v2/v3), as the pipe definition table gives it
 * (src/core/pipes.c). Returns a static descriptor, or NULL for a method
 * without a schema. Any thread. */
const ProtobufCMessageDescriptor *sr_schema_for_method(const char *path, size_t len);

#endif
