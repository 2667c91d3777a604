/* Schema-driven validation of received messages.
 *
 * The descriptors protoc-c generates from proto/ are tables: for each message,
 * its fields sorted by number with their types and, for message fields, the
 * nested descriptor. sr_schema_check walks the encoded bytes once, front to
 * back, looking each tag up in the descriptor of the message it is in:
 *
 *  - a known field must carry its declared wire type (a repeated scalar may
 *    also come packed, as every protobuf parser accepts both);
 *  - a LEN field must fit in the message that contains it; a proto3 string
 *    must be UTF-8 (proto3 parsers, OAP's Java one included, refuse it
 *    otherwise; proto2 strings are bytes); a message field is entered and
 *    walked the same way;
 *  - an unknown field only has to be well framed (groups included).
 *
 * Nesting is an explicit stack of SR_SCHEMA_MAX_DEPTH frames (message or
 * unknown group, each with the offset where it ends), not recursion, and
 * nothing is allocated or decoded. The error text is built only on failure,
 * from the stack. The walk is the data path's per-field cost (about 70
 * instructions a field, docs/performance.md): one-byte tags, varints and
 * ASCII strings take word-at-a-time fast paths. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "skyrelay/pipes.h"
#include "skyrelay/schema.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* The wire type each protobuf-c type is encoded with. */
static const uint8_t wire_of[] = {
    [PROTOBUF_C_TYPE_INT32] = WT_VARINT,  [PROTOBUF_C_TYPE_SINT32] = WT_VARINT,
    [PROTOBUF_C_TYPE_SFIXED32] = WT_I32,  [PROTOBUF_C_TYPE_INT64] = WT_VARINT,
    [PROTOBUF_C_TYPE_SINT64] = WT_VARINT, [PROTOBUF_C_TYPE_SFIXED64] = WT_I64,
    [PROTOBUF_C_TYPE_UINT32] = WT_VARINT, [PROTOBUF_C_TYPE_FIXED32] = WT_I32,
    [PROTOBUF_C_TYPE_UINT64] = WT_VARINT, [PROTOBUF_C_TYPE_FIXED64] = WT_I64,
    [PROTOBUF_C_TYPE_FLOAT] = WT_I32,     [PROTOBUF_C_TYPE_DOUBLE] = WT_I64,
    [PROTOBUF_C_TYPE_BOOL] = WT_VARINT,   [PROTOBUF_C_TYPE_ENUM] = WT_VARINT,
    [PROTOBUF_C_TYPE_STRING] = WT_LEN,    [PROTOBUF_C_TYPE_BYTES] = WT_LEN,
    [PROTOBUF_C_TYPE_MESSAGE] = WT_LEN,
};

/* One level of nesting: a message (d != NULL) or an unknown group (group != 0,
 * everything inside it is unknown). */
struct frame {
    const ProtobufCMessageDescriptor *d;
    const ProtobufCFieldDescriptor *via; /* the field of the parent that opened it */
    uint32_t num;                        /* its number */
    uint32_t group;                      /* group: the number its end tag must carry */
    size_t end;                          /* offset where it ends (a group: its parent's end) */
};

/* Returns bytes consumed (1..10), 0 if truncated or longer than 10 bytes. Like
 * protobuf's Java parser (OAP), the 10th byte only has to end the varint. */
static inline size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n >= 1 && p[0] < 0x80) {
        *v = p[0];
        return 1;
    }
    if (n >= 2 && p[1] < 0x80) {
        *v = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
        return 2;
    }
    uint64_t r = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Length of the varint at p[0..n) without its value (VARINT fields are only
 * skipped): the first byte without the continuation bit, found in one 8-byte
 * word. Returns 1..10, 0 if truncated or longer than 10 bytes. */
static inline size_t varint_skip(const uint8_t *p, size_t n)
{
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n >= 8) {
        uint64_t stop = ~load64(p) & 0x8080808080808080ULL;
        if (stop) return (size_t)(__builtin_ctzll(stop) >> 3) + 1;
        if (n > 8 && p[8] < 0x80) return 9;
        if (n > 9 && p[9] < 0x80) return 10;
        return 0;
    }
#endif
    for (size_t i = 0; i < n && i < 10; i++)
        if (p[i] < 0x80) return i + 1;
    return 0;
}

static inline const char *varint_error(size_t avail)
{
    return avail >= 10 ? "varint longer than 10 bytes" : "truncated varint";
}

/* Reads a length prefix at *pos and checks that many bytes follow before
 * `end`; advances *pos past the prefix. NULL, or why it is broken. */
static inline const char *read_len(const uint8_t *b, size_t *pos, size_t end, uint64_t *v)
{
    size_t k = varint(b + *pos, end - *pos, v);
    if (!k) return varint_error(end - *pos);
    *pos += k;
    if (*v > end - *pos) return "length beyond the end of the enclosing message";
    return NULL;
}

/* Whether p[0..n) is all ASCII: the bytes OR-ed 16 at a time, the tail read as
 * one overlapping word, so a short or long string costs no per-byte loop. */
static inline int all_ascii(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    if (n >= 8) {
        const uint8_t *q = p, *e = p + n;
        while (e - q >= 16) {
            acc |= load64(q) | load64(q + 8);
            q += 16;
        }
        acc |= load64(e - 8) | (e - q > 8 ? load64(q) : 0);
    } else if (n >= 4) {
        uint32_t a, z;
        memcpy(&a, p, 4);
        memcpy(&z, p + n - 4, 4);
        acc = a | z;
    } else {
        if (n) acc = p[0] | p[n / 2] | p[n - 1]; /* every byte of 1..3 */
    }
    return (acc & 0x8080808080808080ULL) == 0;
}

/* Returns NULL if p[0..n) is valid UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), else what is wrong. The caller tried all_ascii. */
static const char *utf8_check(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0xc2)
            return c < 0xc0 ? "invalid UTF-8 (stray continuation byte)"
                            : "invalid UTF-8 (overlong encoding)";
        else if (c < 0xe0)
            k = 1;
        else if (c < 0xf0) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..DFFF */
        } else if (c < 0xf5) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else
            return "invalid UTF-8 (above U+10FFFF)";
        if (n - i - 1 < k) return "invalid UTF-8 (truncated sequence)";
        uint8_t c1 = p[i + 1];
        if (c1 < lo || c1 > hi) {
            if (c1 < 0x80 || c1 > 0xbf) return "invalid UTF-8 (truncated sequence)";
            if (c == 0xed) return "invalid UTF-8 (surrogate)";
            if (c == 0xf4) return "invalid UTF-8 (above U+10FFFF)";
            return "invalid UTF-8 (overlong encoding)";
        }
        for (size_t j = 2; j <= k; j++)
            if ((p[i + j] & 0xc0) != 0x80) return "invalid UTF-8 (truncated sequence)";
        i += k + 1;
    }
    return NULL;
}

/* protoc-c emits the fields sorted by number: usually field i has number i+1. */
static inline const ProtobufCFieldDescriptor *field_find(const ProtobufCMessageDescriptor *d,
                                                         uint32_t num)
{
    const ProtobufCFieldDescriptor *f = d->fields;
    size_t lo = 0, hi = d->n_fields;
    if (num - 1 < hi && f[num - 1].id == num) return &f[num - 1];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f[mid].id == num) return &f[mid];
        if (f[mid].id < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Every element of a packed repeated scalar of wire type wt must be whole. */
static const char *packed_check(const uint8_t *p, size_t n, int wt)
{
    if (wt == WT_I32) return n % 4 ? "packed fixed32 length not a multiple of 4" : NULL;
    if (wt == WT_I64) return n % 8 ? "packed fixed64 length not a multiple of 8" : NULL;
    for (size_t i = 0; i < n;) {
        uint64_t v;
        size_t k = varint(p + i, n - i, &v);
        if (!k)
            return n - i >= 10 ? "packed: varint longer than 10 bytes" : "packed: truncated varint";
        i += k;
    }
    return NULL;
}

static _Thread_local char why_buf[512];

/* "field 3 (spans): field 12 (tags): field 2 (value): invalid UTF-8 (...)": the
 * path from the top-level message to the problem. A deep path keeps its first
 * two and last three levels so the reason always fits. */
static const char *explain(const struct frame *st, unsigned top, uint32_t num,
                           const ProtobufCFieldDescriptor *fd, const char *reason)
{
    size_t o = 0;
    int k;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        k = snprintf(why_buf + o, sizeof why_buf - o, __VA_ARGS__);                                \
        if (k < 0 || (size_t)k >= sizeof why_buf - o) return why_buf;                              \
        o += (size_t)k;                                                                            \
    } while (0)
    for (unsigned i = 1; i <= top; i++) {
        if (top > 5 && i == 3) {
            PUT("... %u levels ...: ", top - 5);
            i = top - 3;
            continue;
        }
        if (st[i].group)
            PUT("group %u: ", st[i].num);
        else
            PUT("field %u (%s): ", st[i].num, st[i].via->name);
    }
    if (fd)
        PUT("field %u (%s): ", num, fd->name);
    else if (num)
        PUT("field %u: ", num);
    PUT("%s", reason);
#undef PUT
    return why_buf;
}

int sr_schema_check(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n,
                    const char **why)
{
    struct frame st[SR_SCHEMA_MAX_DEPTH];
    unsigned top = 0;
    const ProtobufCMessageDescriptor *md = d; /* the current message; NULL in a group */
    size_t pos = 0, end = n;                  /* end of the current message or group */
    const char *reason = NULL;
    const ProtobufCFieldDescriptor *fd = NULL;
    uint32_t num = 0;

    st[0] = (struct frame){.d = d, .end = n};
    for (;;) {
        uint64_t tag, v;
        size_t k;
        int wt, want;

        if (pos == end) {
            if (st[top].group) {
                num = 0, fd = NULL;
                reason = "unterminated group";
                goto fail;
            }
            if (top == 0) return 0;
            top--;
            md = st[top].d, end = st[top].end;
            continue;
        }
        fd = NULL;
        if (b[pos] < 0x80) { /* the tags of fields 1..15: one byte */
            tag = b[pos++];
        } else {
            num = 0;
            if (!(k = varint(b + pos, end - pos, &tag))) {
                reason =
                    end - pos >= 10 ? "tag: varint longer than 10 bytes" : "tag: truncated varint";
                goto fail;
            }
            pos += k;
            if (tag > UINT32_MAX) {
                reason = "invalid field number";
                goto fail;
            }
        }
        num = (uint32_t)(tag >> 3); /* 0 is never a known field: refused below */
        wt = (int)(tag & 7);

        if (md && (fd = field_find(md, num))) {
            switch (fd->type) {
            case PROTOBUF_C_TYPE_STRING:
            case PROTOBUF_C_TYPE_BYTES:
            case PROTOBUF_C_TYPE_MESSAGE:
                if (wt != WT_LEN) goto wrong_type;
                if ((reason = read_len(b, &pos, end, &v))) goto fail;
                if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                    if (top + 1 >= SR_SCHEMA_MAX_DEPTH) {
                        reason = "nested deeper than the limit (64)";
                        goto fail;
                    }
                    md = fd->descriptor, end = pos + (size_t)v;
                    st[++top] = (struct frame){.d = md, .via = fd, .num = num, .end = end};
                    continue;
                }
                /* proto2 strings (label OPTIONAL/REQUIRED; proto/ uses no proto3
                 * `optional`) are bytes to every parser: no UTF-8 check */
                if (fd->type == PROTOBUF_C_TYPE_STRING &&
                    (fd->label == PROTOBUF_C_LABEL_NONE ||
                     fd->label == PROTOBUF_C_LABEL_REPEATED) &&
                    !all_ascii(b + pos, (size_t)v) && (reason = utf8_check(b + pos, (size_t)v)))
                    goto fail;
                pos += (size_t)v;
                continue;
            default:
                want = wire_of[fd->type];
                if (wt == want) break; /* skipped below like an unknown scalar */
                if (wt != WT_LEN || fd->label != PROTOBUF_C_LABEL_REPEATED) goto wrong_type;
                /* a packed repeated scalar */
                if ((reason = read_len(b, &pos, end, &v))) goto fail;
                if ((reason = packed_check(b + pos, (size_t)v, want))) goto fail;
                pos += (size_t)v;
                continue;
            }
        } else if (num == 0) {
            reason = "invalid field number";
            goto fail;
        }

        /* a known scalar of the right wire type, or an unknown field */
        switch (wt) {
        case WT_VARINT:
            if (!(k = varint_skip(b + pos, end - pos))) {
                reason = varint_error(end - pos);
                goto fail;
            }
            pos += k;
            break;
        case WT_I64:
        case WT_I32:
            k = wt == WT_I64 ? 8 : 4;
            if (end - pos < k) {
                reason = wt == WT_I64 ? "truncated fixed64" : "truncated fixed32";
                goto fail;
            }
            pos += k;
            break;
        case WT_LEN: /* unknown: bytes */
            if ((reason = read_len(b, &pos, end, &v))) goto fail;
            pos += (size_t)v;
            break;
        case WT_SGROUP: /* unknown only: a known field of wire type 3 is wrong_type */
            if (top + 1 >= SR_SCHEMA_MAX_DEPTH) {
                reason = "nested deeper than the limit (64)";
                goto fail;
            }
            md = NULL;
            st[++top] = (struct frame){.num = num, .group = num, .end = end};
            break;
        case WT_EGROUP:
            if (!st[top].group) {
                reason = "end of group outside a group";
                goto fail;
            }
            if (st[top].group != num) {
                reason = "end of group does not match its start";
                goto fail;
            }
            top--;
            md = st[top].d, end = st[top].end;
            break;
        default:
            reason = "invalid wire type";
            goto fail;
        }
        continue;
    wrong_type:
        if (wt > WT_I32) {
            fd = NULL;
            reason = "invalid wire type";
        } else {
            reason = "wrong wire type for its declared type";
        }
        goto fail;
    }
fail:
    if (why) *why = explain(st, top, num, fd, reason);
    return -EBADMSG;
}

/* Async methods and the message their client sends: the pipe definition table
 * (src/core/pipes.c). A SkyWalking method is listed there without the package:
 * both "/skywalking.v3.S/m" and "/S/m" match it; a full path matches as written. */
static bool path_is(const char *want, const char *path, size_t len)
{
    return strlen(want) == len && memcmp(want, path, len) == 0;
}

const ProtobufCMessageDescriptor *sr_schema_for_method(const char *path, size_t len)
{
    static const char sw[] = SR_PIPE_SW_PACKAGE;
    const char *rel = NULL; /* path without "/skywalking.v3." or "/" */
    size_t rel_len = 0;

    if (len > sizeof sw - 1 && memcmp(path, sw, sizeof sw - 1) == 0) {
        rel = path + sizeof sw - 1;
        rel_len = len - (sizeof sw - 1);
    } else if (len > 1 && path[0] == '/') {
        rel = path + 1;
        rel_len = len - 1;
    }
    for (int i = 0; i < SR_PIPE_COUNT; i++)
        for (const struct sr_pipe_method *m = sr_pipe_defs[i].methods; m->path; m++)
            if (m->path[0] == '/' ? path_is(m->path, path, len)
                                  : rel && path_is(m->path, rel, rel_len))
                return m->schema;
    return NULL;
}
