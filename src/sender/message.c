/* A batch's units, and the upstream messages made of them. Messages are
 * built from the events' slices by reference (grpc_slice_buffer_add of a
 * ref): the events keep their own refs until the batch is released, so a
 * unit can be re-sent unchanged. See src/sender/sender.c. */
#include <grpc/byte_buffer.h>
#include <grpc/slice_buffer.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/wire.h"
#include "skyrelay/worker.h"
#include "internal.h"

/* Fills b->order and b->units: events grouped by key (stable), or one unit
 * holding every event in order when by_key is false. Room is made for the
 * splits of poison isolation (at most 2 * count units). */
int sr_sender_build_units(struct sr_batch *b, bool by_key, int64_t now_ms)
{
    uint32_t tsize = 16, *tab = NULL, *gid = NULL, *cur;
    uint32_t need = 2 * b->count + 1;
    int rc = -1;

    if (b->units_cap < need) {
        uint32_t *order = realloc(b->order, sizeof(*order) * need);
        struct sr_unit *units;
        if (!order) return -1;
        b->order = order;
        units = realloc(b->units, sizeof(*units) * need);
        if (!units) return -1;
        b->units = units;
        b->units_cap = need;
    }
    if (!by_key) {
        memset(&b->units[0], 0, sizeof(b->units[0]));
        b->n_units = 1;
        b->units[0].n = b->count;
        b->units[0].not_before_ms = now_ms;
        for (uint32_t i = 0; i < b->count; i++) b->order[i] = i;
        return 0;
    }
    while (tsize < b->count * 2) tsize <<= 1;
    tab = calloc(tsize, sizeof(*tab));
    gid = malloc(sizeof(*gid) * b->count);
    if (!tab || !gid) goto out;

    b->n_units = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        uint64_t key = b->ev[i].key;
        uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (tsize - 1);
        while (tab[h] && b->units[tab[h] - 1].key != key) h = (h + 1) & (tsize - 1);
        if (!tab[h]) {
            struct sr_unit *u = &b->units[b->n_units];
            memset(u, 0, sizeof(*u));
            u->key = key;
            u->not_before_ms = now_ms;
            tab[h] = ++b->n_units;
        }
        gid[i] = tab[h] - 1;
        b->units[gid[i]].n++;
    }
    cur = tab; /* reuse: running offsets per unit */
    for (uint32_t g = 0, off = 0; g < b->n_units; g++) {
        b->units[g].off = off;
        cur[g] = off;
        off += b->units[g].n;
    }
    for (uint32_t i = 0; i < b->count; i++) b->order[cur[gid[i]]++] = i;
    rc = 0;
out:
    free(tab);
    free(gid);
    return rc;
}

static void add_ref(grpc_slice_buffer *sb, grpc_slice s)
{
    if (GRPC_SLICE_LENGTH(s)) grpc_slice_buffer_add(sb, grpc_slice_ref(s));
}

/* Appends an event as one `repeated X = 1` record of a collection (wrap), or
 * as it is (a whole message to merge with the others of its key). */
static void add_wrapped(grpc_slice_buffer *sb, const struct sr_event *e, bool wrap)
{
    if (wrap && !(e->flags & SR_EV_FRAGMENT)) {
        uint8_t hdr[11];
        size_t k;
        hdr[0] = 0x0a; /* field 1, wire type LEN */
        k = 1 + sr_pb_put_varint(hdr + 1, e->bytes);
        memcpy(grpc_slice_buffer_tiny_add(sb, k), hdr, k);
    }
    add_ref(sb, e->prefix);
    add_ref(sb, e->body);
}

static void add_unit_wrapped(grpc_slice_buffer *sb, struct sr_pipe_rt *p, struct sr_batch *b,
                             const struct sr_unit *u)
{
    for (uint32_t k = 0; k < u->n; k++) add_wrapped(sb, ev_of(b, u, k), p->plan->wrap);
}

/* Builds the call's next message (messages are sent in order, one at a time). */
grpc_byte_buffer *sr_sender_build_message(struct sr_ucall *uc)
{
    struct sr_pipe_rt *p = uc->pipe;
    struct sr_batch *b = uc->batch;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(NULL, 0);
    grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;

    switch (p->plan->unit) {
    case SR_UNIT_EVENT: {
        struct sr_unit *u = &b->units[uc->ul[uc->cur_u]];
        struct sr_event *e = ev_of(b, u, uc->cur_e);
        add_ref(sb, e->prefix);
        add_ref(sb, e->body);
        if (++uc->cur_e == u->n) {
            uc->cur_u++;
            uc->cur_e = 0;
        }
        break;
    }
    case SR_UNIT_GROUP:
        add_unit_wrapped(sb, p, b, &b->units[uc->ul[uc->next_msg]]);
        break;
    case SR_UNIT_CALL:
        for (uint32_t k = 0; k < uc->n_ul; k++) add_unit_wrapped(sb, p, b, &b->units[uc->ul[k]]);
        break;
    case SR_UNIT_LAST: {
        struct sr_unit *u = &b->units[uc->ul[uc->next_msg]];
        struct sr_event *e = ev_of(b, u, u->n - 1);
        add_ref(sb, e->prefix);
        add_ref(sb, e->body);
        break;
    }
    }
    return bb;
}
