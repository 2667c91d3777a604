/* Protobuf wire scanning without decoding.
 *
 * skyrelay never decodes the messages it forwards. It only walks the
 * top-level tags of a message (a few varints per message) to validate the
 * framing and to find the handful of fields that stream context and routing
 * need. Thread-safe, allocation-free. */
#ifndef SKYRELAY_WIRE_H
#define SKYRELAY_WIRE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

enum sr_wire_type { SR_WT_VARINT = 0, SR_WT_I64 = 1, SR_WT_LEN = 2, SR_WT_I32 = 5 };

/* One top-level field occurrence. */
struct sr_pb_field {
    uint32_t number;
    uint8_t wire_type;
    uint8_t present;
    uint32_t off;     /* offset of the tag in the message */
    uint32_t size;    /* bytes of the whole field: tag + (length) + value */
    uint32_t val_off; /* offset of the value (LEN: of the payload after the length) */
    uint32_t val_len; /* LEN: payload length; VARINT: bytes of the varint; I32/I64: 4/8 */
    uint64_t varint;  /* VARINT: the value */
};

#define SR_PB_EMALFORMED (-EBADMSG) /* 0 or a negative errno, as everywhere */

/* Decodes a varint at p[0..n). Returns bytes consumed (1..10) or 0 if malformed/truncated. */
size_t sr_pb_varint(const uint8_t *p, size_t n, uint64_t *v);

/* Encodes v as a varint into out (>= 10 bytes). Returns bytes written. */
size_t sr_pb_put_varint(uint8_t *out, uint64_t v);

/* Walks every top-level field of the message p[0..n) and validates the framing
 * (tags, wire types 0/1/2/5, lengths inside the message). For each number in
 * wanted[0..n_wanted) fills out[i] with its LAST occurrence (out[i].present = 0
 * when absent). Groups (wire types 3/4) and field number 0 are malformed.
 * Returns the number of top-level fields, or SR_PB_EMALFORMED. */
int sr_pb_scan(const uint8_t *p, size_t n, const uint32_t *wanted, size_t n_wanted,
               struct sr_pb_field *out);

/* Iterates over the top-level fields one by one: *pos is the cursor (start at 0).
 * Returns 1 and fills *f, 0 at the end, SR_PB_EMALFORMED on bad framing. */
int sr_pb_next(const uint8_t *p, size_t n, size_t *pos, struct sr_pb_field *f);

/* 64-bit FNV-1a, chained: h = sr_hash64(h, p, n); start with SR_HASH64_INIT. */
#define SR_HASH64_INIT 0xcbf29ce484222325ULL
uint64_t sr_hash64(uint64_t h, const void *p, size_t n);

/* splitmix64's finalizer (Stafford's mix 13): a bijection with full avalanche,
 * for keys that are small or sequential. Changing it changes routing decisions
 * (replicas of different versions would disagree). */
static inline uint64_t sr_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

#endif
