#include "tool_pb.h"

#include <string.h>

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1; /* more than 10 bytes */
}

int tool_pb_next(const uint8_t **p, const uint8_t *end, struct tool_pb_field *f)
{
    if (*p >= end)
        return 0;
    uint64_t tag;
    if (get_varint(p, end, &tag) != 0)
        return -1;
    uint64_t number = tag >> 3;
    if (number == 0 || number > 0x1fffffff)
        return -1;
    memset(f, 0, sizeof(*f));
    f->number = (uint32_t)number;
    f->wire_type = (int)(tag & 7);
    switch (f->wire_type) {
    case TOOL_PB_VARINT:
        return get_varint(p, end, &f->varint) == 0 ? 1 : -1;
    case TOOL_PB_I64:
        if (end - *p < 8)
            return -1;
        for (int i = 7; i >= 0; i--)
            f->varint = f->varint << 8 | (*p)[i];
        *p += 8;
        return 1;
    case TOOL_PB_I32:
        if (end - *p < 4)
            return -1;
        for (int i = 3; i >= 0; i--)
            f->varint = f->varint << 8 | (*p)[i];
        *p += 4;
        return 1;
    case TOOL_PB_LEN: {
        uint64_t n;
        if (get_varint(p, end, &n) != 0 || n > (uint64_t)(end - *p))
            return -1;
        f->data = *p;
        f->len = (size_t)n;
        *p += n;
        return 1;
    }
    default:
        return -1;
    }
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t tool_pb_len_size(uint32_t field, size_t n)
{
    return varint_size((uint64_t)field << 3 | TOOL_PB_LEN) + varint_size(n) + n;
}

size_t tool_pb_put_len(uint8_t *out, uint32_t field, const void *data, size_t n)
{
    size_t k = put_varint(out, (uint64_t)field << 3 | TOOL_PB_LEN);
    k += put_varint(out + k, n);
    if (n)
        memcpy(out + k, data, n);
    return k + n;
}
