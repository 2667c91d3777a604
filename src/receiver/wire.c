/* Top-level protobuf field walker. See include/skyrelay/wire.h. */
#include "skyrelay/wire.h"

size_t sr_pb_varint(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    size_t i;
    for (i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i == 9 && p[i] > 1) return 0; /* overflows 64 bits */
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

size_t sr_pb_put_varint(uint8_t *out, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        out[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[i++] = (uint8_t)v;
    return i;
}

/* Tags and lengths are almost always 1 or 2 bytes: decode those inline. */
static inline size_t varint_fast(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n >= 1 && p[0] < 0x80) {
        *v = p[0];
        return 1;
    }
    if (n >= 2 && p[1] < 0x80) {
        *v = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
        return 2;
    }
    return sr_pb_varint(p, n, v);
}

int sr_pb_next(const uint8_t *p, size_t n, size_t *pos, struct sr_pb_field *f)
{
    size_t at = *pos, k;
    uint64_t tag, len;

    if (at >= n) return 0;
    k = varint_fast(p + at, n - at, &tag);
    if (k == 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return SR_PB_EMALFORMED;
    f->number = (uint32_t)(tag >> 3);
    f->wire_type = (uint8_t)(tag & 7);
    f->present = 1;
    f->off = (uint32_t)at;
    at += k;
    switch (f->wire_type) {
    case SR_WT_VARINT:
        k = varint_fast(p + at, n - at, &f->varint);
        if (k == 0) return SR_PB_EMALFORMED;
        f->val_off = (uint32_t)at;
        f->val_len = (uint32_t)k;
        at += k;
        break;
    case SR_WT_I64:
    case SR_WT_I32:
        k = f->wire_type == SR_WT_I64 ? 8 : 4;
        if (n - at < k) return SR_PB_EMALFORMED;
        f->val_off = (uint32_t)at;
        f->val_len = (uint32_t)k;
        at += k;
        break;
    case SR_WT_LEN:
        k = varint_fast(p + at, n - at, &len);
        if (k == 0) return SR_PB_EMALFORMED;
        at += k;
        if (len > n - at) return SR_PB_EMALFORMED;
        f->val_off = (uint32_t)at;
        f->val_len = (uint32_t)len;
        at += (size_t)len;
        break;
    default: /* groups (3, 4) are deprecated and never used by the protocols we carry */
        return SR_PB_EMALFORMED;
    }
    f->size = (uint32_t)(at - f->off);
    *pos = at;
    return 1;
}

int sr_pb_scan(const uint8_t *p, size_t n, const uint32_t *wanted, size_t n_wanted,
               struct sr_pb_field *out)
{
    struct sr_pb_field f;
    size_t pos = 0, i;
    int count = 0, r;

    if (n > UINT32_MAX) return SR_PB_EMALFORMED;
    for (i = 0; i < n_wanted; i++) out[i].present = 0;
    while ((r = sr_pb_next(p, n, &pos, &f)) == 1) {
        count++;
        for (i = 0; i < n_wanted; i++)
            if (wanted[i] == f.number) out[i] = f;
    }
    return r < 0 ? SR_PB_EMALFORMED : count;
}

uint64_t sr_hash64(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
