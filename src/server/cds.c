/* fetchConfigurations: coalesced, cached, and answered from the last good
 * answer while OAP does not answer. See include/skyrelay/cds.h for the rules.
 *
 * Three objects, all owned by worker 0's thread:
 * - struct cds_call: one agent's poll, from its registered request to the end
 *   of its last op (`refs`). While it waits for an upstream answer it is on
 *   its fetch's waiter list (one ref);
 * - struct cds_fetch: one upstream call, keyed by (token, service, uuid), in a
 *   hash while in flight. Its answer's metadata and details are borrowed by
 *   every poll it answers, so it lives until their sends complete (`refs`);
 * - struct cds_svc: what OAP last said about (token, service), in a hash and
 *   an LRU list, bounded by max_services and max_bytes.
 * The token is part of both keys unless upstream.authentication replaces every
 * caller's token: an answer got with one token never answers another. */
#include "skyrelay/cds.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/auth.h"
#include "skyrelay/log.h"
#include "skyrelay/receiver.h"
#include "skyrelay/relay.h"
#include "skyrelay/wire.h"

#define CDS_PENDING 4   /* registered requests kept outstanding per path */
#define SWEEP_MS 1000   /* expiry and bound checks at most this often */
#define CMD_CDS "ConfigurationDiscoveryCommand"

#define CDS_NAME_(e, name) name,
const char *const sr_cds_source_names[SR_CDS_SOURCE_COUNT] = {SR_CDS_SOURCES(CDS_NAME_)};
#undef CDS_NAME_

static const char *const cds_paths[2] = {SR_CDS_PATH, SR_CDS_PATH_COMPAT};

/* ---- a small intrusive hash of byte-string keys ---- */

struct hnode {
    struct hnode *next;
    uint64_t hash;
    uint8_t *key;
    size_t len;
};

struct htab {
    struct hnode **b;
    size_t mask; /* buckets - 1 */
    size_t n;
};

static int htab_init(struct htab *t)
{
    t->b = calloc(256, sizeof(*t->b));
    t->mask = 255;
    t->n = 0;
    return t->b ? 0 : -ENOMEM;
}

static struct hnode *htab_find(const struct htab *t, uint64_t h, const uint8_t *k, size_t n)
{
    for (struct hnode *e = t->b[h & t->mask]; e; e = e->next)
        if (e->hash == h && e->len == n && memcmp(e->key, k, n) == 0) return e;
    return NULL;
}

static void htab_add(struct htab *t, struct hnode *e)
{
    if (t->n >= t->mask + 1) { /* grow at load 1; on failure just get longer chains */
        size_t nb = (t->mask + 1) * 2;
        struct hnode **b = calloc(nb, sizeof(*b));
        if (b) {
            for (size_t i = 0; i <= t->mask; i++)
                for (struct hnode *x = t->b[i], *nx; x; x = nx) {
                    nx = x->next;
                    x->next = b[x->hash & (nb - 1)];
                    b[x->hash & (nb - 1)] = x;
                }
            free(t->b);
            t->b = b;
            t->mask = nb - 1;
        }
    }
    e->next = t->b[e->hash & t->mask];
    t->b[e->hash & t->mask] = e;
    t->n++;
}

static void htab_del(struct htab *t, struct hnode *e)
{
    for (struct hnode **pp = &t->b[e->hash & t->mask]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            t->n--;
            return;
        }
}

/* ---- objects ---- */

enum svc_kind {
    SVC_NONE,    /* the service has no configuration: every uuid gets an empty Commands */
    SVC_FULL,    /* answer (UUID uuid) answers every other uuid; uuid gets an empty one */
    SVC_CURRENT, /* uuid is current (no answer kept): only uuid can be answered */
};

struct cds_svc {
    struct hnode h;               /* key: token \0 service */
    struct cds_svc *prev, *next; /* LRU, most recent first */
    enum svc_kind kind;
    uint8_t *answer;
    size_t answer_len;
    uint8_t *uuid; /* NULL with SVC_FULL: the answer names none (it answers every uuid) */
    size_t uuid_len;
    int64_t seen_ms; /* when OAP last said it */
    size_t bytes;    /* charged to the cache */
};

struct cds_fetch;

struct cds_call {
    struct sr_tag t_new, t_send, t_close;
    struct sr_cds *cds;
    int path; /* index in cds_paths */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *req; /* as request_registered_call gave it; taken into body */
    grpc_slice body;
    grpc_byte_buffer *resp;
    grpc_slice details;
    int cancelled;
    int refs;
    bool answered;
    struct cds_fetch *fetch; /* the answer's metadata are its: held until our send completes */
    struct cds_call *next;   /* on fetch->waiters */
};

struct cds_fetch {
    struct hnode h; /* key: token \0 service \0 uuid */
    struct sr_tag t_done;
    struct sr_cds *cds;
    size_t svc_key_len; /* the key's token \0 service prefix */
    grpc_call *up;
    struct sr_node *node;
    grpc_byte_buffer *send, *recv;
    grpc_metadata *fwd, *down_init, *down_trail;
    size_t n_fwd, n_down_init, n_down_trail;
    grpc_metadata_array umd, utrail;
    grpc_status_code status;
    grpc_slice details;
    const char *err;
    struct cds_call *waiters, **tail;
    int refs; /* the upstream call, and each answered poll whose send is in flight */
    bool in_table;
};

struct sr_cds {
    struct sr_worker *w;
    struct htab fetches, svcs;
    struct cds_svc *lru_head, *lru_tail;
    uint64_t bytes;
    int64_t sweep_ms;
    bool cancelled; /* the fetches in flight were cancelled at shutdown */
};

static const struct sr_config *cfg_of(const struct sr_cds *cds)
{
    return cds->w->rt->cfg;
}

/* ---- reading the messages ---- */

static bool bytes_eq(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

int sr_cds_read_request(const uint8_t *b, size_t n, const uint8_t **svc, size_t *svc_len,
                        const uint8_t **uuid, size_t *uuid_len)
{
    static const uint32_t want[2] = {1, 2};
    struct sr_pb_field f[2];
    if (sr_pb_scan(b, n, want, 2, f) < 0) return SR_PB_EMALFORMED;
    for (int i = 0; i < 2; i++)
        if (f[i].present && f[i].wire_type != SR_WT_LEN) return SR_PB_EMALFORMED;
    *svc = f[0].present ? b + f[0].val_off : (const uint8_t *)"";
    *svc_len = f[0].present ? f[0].val_len : 0;
    *uuid = f[1].present ? b + f[1].val_off : (const uint8_t *)"";
    *uuid_len = f[1].present ? f[1].val_len : 0;
    return 0;
}

/* One Command: true when it is a ConfigurationDiscoveryCommand; its UUID
 * argument (KeyStringValuePair {key 1, value 2} in field 2) in *uuid. */
static int read_command(const uint8_t *b, size_t n, const uint8_t **uuid, size_t *uuid_len)
{
    struct sr_pb_field f;
    size_t pos = 0;
    int r;
    bool cds = false;

    *uuid = NULL;
    *uuid_len = 0;
    while ((r = sr_pb_next(b, n, &pos, &f)) == 1) {
        if (f.wire_type != SR_WT_LEN) continue;
        if (f.number == 1) {
            cds = bytes_eq(b + f.val_off, f.val_len, (const uint8_t *)CMD_CDS, strlen(CMD_CDS));
        } else if (f.number == 2) {
            const uint8_t *kv = b + f.val_off;
            struct sr_pb_field g;
            size_t p2 = 0;
            const uint8_t *key = NULL, *val = (const uint8_t *)"";
            size_t key_len = 0, val_len = 0;
            int r2;
            while ((r2 = sr_pb_next(kv, f.val_len, &p2, &g)) == 1) {
                if (g.wire_type != SR_WT_LEN) continue;
                if (g.number == 1) {
                    key = kv + g.val_off;
                    key_len = g.val_len;
                } else if (g.number == 2) {
                    val = kv + g.val_off;
                    val_len = g.val_len;
                }
            }
            if (r2 < 0) return r2;
            if (key && bytes_eq(key, key_len, (const uint8_t *)"UUID", 4)) {
                *uuid = val;
                *uuid_len = val_len;
            }
        }
    }
    return r < 0 ? r : cds;
}

enum sr_cds_answer sr_cds_read_answer(const uint8_t *b, size_t n, const uint8_t **uuid,
                                      size_t *uuid_len)
{
    struct sr_pb_field f;
    size_t pos = 0;
    int r, commands = 0;

    *uuid = NULL;
    *uuid_len = 0;
    while ((r = sr_pb_next(b, n, &pos, &f)) == 1) {
        if (f.number != 1 || f.wire_type != SR_WT_LEN) return SR_CDS_ANS_OTHER;
        if (++commands > 1 || read_command(b + f.val_off, f.val_len, uuid, uuid_len) != 1)
            return SR_CDS_ANS_OTHER;
    }
    if (r < 0) return SR_CDS_ANS_OTHER;
    return commands ? SR_CDS_ANS_CONFIG : SR_CDS_ANS_EMPTY;
}

/* ---- the cache ---- */

static void lru_unlink(struct sr_cds *cds, struct cds_svc *s)
{
    if (s->prev) s->prev->next = s->next; else cds->lru_head = s->next;
    if (s->next) s->next->prev = s->prev; else cds->lru_tail = s->prev;
    s->prev = s->next = NULL;
}

static void lru_front(struct sr_cds *cds, struct cds_svc *s)
{
    s->next = cds->lru_head;
    s->prev = NULL;
    if (cds->lru_head) cds->lru_head->prev = s; else cds->lru_tail = s;
    cds->lru_head = s;
}

static void svc_free(struct sr_cds *cds, struct cds_svc *s)
{
    htab_del(&cds->svcs, &s->h);
    lru_unlink(cds, s);
    cds->bytes -= s->bytes;
    free(s->h.key);
    free(s->answer);
    free(s->uuid);
    free(s);
}

static void publish(struct sr_cds *cds)
{
    atomic_store_explicit(&cds->w->ctr.cds_entries, cds->svcs.n, memory_order_relaxed);
    atomic_store_explicit(&cds->w->ctr.cds_bytes, cds->bytes, memory_order_relaxed);
}

/* Evicts from the least recently used end until `need` more bytes and one more
 * entry fit (need = 0, entries = 0: just the bounds). */
static void make_room(struct sr_cds *cds, size_t need, size_t entries)
{
    const struct sr_config *cfg = cfg_of(cds);
    uint64_t max_bytes = cfg->upstream.config_discovery.max_bytes;
    size_t max_n = cfg->upstream.config_discovery.max_services;
    while (cds->lru_tail &&
           (cds->svcs.n + entries > max_n || cds->bytes + need > max_bytes))
        svc_free(cds, cds->lru_tail);
}

/* What OAP would answer `uuid` if it still said what *s records: 1 and the
 * bytes (an empty Commands is zero bytes), or 0 when *s cannot tell. */
static int svc_answer(const struct cds_svc *s, const uint8_t *uuid, size_t uuid_len,
                      const uint8_t **out, size_t *out_len)
{
    *out = (const uint8_t *)"";
    *out_len = 0;
    switch (s->kind) {
    case SVC_NONE:
        return 1;
    case SVC_FULL:
        if (!(s->uuid && bytes_eq(s->uuid, s->uuid_len, uuid, uuid_len))) {
            *out = s->answer;
            *out_len = s->answer_len;
        }
        return 1;
    case SVC_CURRENT:
        return bytes_eq(s->uuid, s->uuid_len, uuid, uuid_len);
    }
    return 0;
}

static struct cds_svc *svc_find(struct sr_cds *cds, const uint8_t *key, size_t len)
{
    struct hnode *h = htab_find(&cds->svcs, sr_hash64(SR_HASH64_INIT, key, len), key, len);
    return h ? (struct cds_svc *)h : NULL;
}

/* Records what OAP answered to (key's service, uuid). */
static void learn(struct sr_cds *cds, const uint8_t *key, size_t key_len, const uint8_t *uuid,
                  size_t uuid_len, const uint8_t *ans, size_t ans_len, int64_t now)
{
    const uint8_t *auuid;
    size_t auuid_len;
    enum sr_cds_answer what = sr_cds_read_answer(ans, ans_len, &auuid, &auuid_len);
    struct cds_svc *s = svc_find(cds, key, key_len), next;
    size_t bytes;

    if (what == SR_CDS_ANS_OTHER) return; /* not something we can reason about: not kept */
    memset(&next, 0, sizeof(next));
    if (what == SR_CDS_ANS_CONFIG) {
        next.kind = SVC_FULL;
        next.answer = (uint8_t *)ans;
        next.answer_len = ans_len;
        next.uuid = (uint8_t *)auuid;
        next.uuid_len = auuid_len;
    } else if (uuid_len == 0) {
        next.kind = SVC_NONE; /* no uuid asked and nothing answered: no configuration */
    } else if (s && s->kind == SVC_FULL && s->uuid && bytes_eq(s->uuid, s->uuid_len, uuid, uuid_len)) {
        s->seen_ms = now; /* "uuid is current" confirms the full answer we keep */
        lru_unlink(cds, s);
        lru_front(cds, s);
        return;
    } else {
        next.kind = SVC_CURRENT;
        next.uuid = (uint8_t *)uuid;
        next.uuid_len = uuid_len;
    }
    bytes = sizeof(*s) + key_len + next.answer_len + next.uuid_len;
    if (s) svc_free(cds, s);
    if (bytes > cfg_of(cds)->upstream.config_discovery.max_bytes) return;
    make_room(cds, bytes, 1);
    s = calloc(1, sizeof(*s));
    if (!s) return;
    *s = next;
    s->answer = next.answer_len ? malloc(next.answer_len) : NULL;
    s->uuid = next.uuid ? malloc(next.uuid_len ? next.uuid_len : 1) : NULL;
    s->h.key = malloc(key_len ? key_len : 1);
    if ((next.answer_len && !s->answer) || (next.uuid && !s->uuid) || !s->h.key) {
        free(s->answer);
        free(s->uuid);
        free(s->h.key);
        free(s);
        return;
    }
    if (next.answer_len) memcpy(s->answer, next.answer, next.answer_len);
    if (next.uuid_len) memcpy(s->uuid, next.uuid, next.uuid_len);
    memcpy(s->h.key, key, key_len);
    s->h.len = key_len;
    s->h.hash = sr_hash64(SR_HASH64_INIT, key, key_len);
    s->seen_ms = now;
    s->bytes = bytes;
    htab_add(&cds->svcs, &s->h);
    lru_front(cds, s);
    cds->bytes += bytes;
    publish(cds);
}

/* ---- polls ---- */

static void arm(struct sr_cds *cds, int path);
static void fetch_unref(struct sr_cds *cds, struct cds_fetch *f);

static void call_unref(struct sr_cds *cds, struct cds_call *c)
{
    if (--c->refs > 0) return;
    if (c->fetch) fetch_unref(cds, c->fetch);
    if (c->req) grpc_byte_buffer_destroy(c->req);
    if (c->resp) grpc_byte_buffer_destroy(c->resp);
    if (c->call) grpc_call_unref(c->call);
    grpc_slice_unref(c->body);
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->md);
    free(c);
    cds->w->live_dcalls--;
}

static bool start(struct cds_call *c, const grpc_op *ops, size_t n, struct sr_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "cds", "start_batch: %s", grpc_call_error_to_string(e));
        return false;
    }
    c->refs++;
    return true;
}

/* Ends a poll: status (with `details`, borrowed from f or static), and the
 * message when OK. `f` (may be NULL) lends its metadata and is held until the
 * send completes. */
static void answer(struct cds_call *c, enum sr_cds_source src, grpc_status_code status,
                   grpc_slice details, const uint8_t *msg, size_t msg_len, struct cds_fetch *f)
{
    struct sr_worker *w = c->cds->w;
    grpc_op ops[3];
    size_t n = 0;

    if (c->answered) return;
    c->answered = true;
    if (f) {
        c->fetch = f;
        f->refs++;
    }
    c->details = grpc_slice_ref(details);
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (f && f->down_init) {
        ops[n].data.send_initial_metadata.metadata = f->down_init;
        ops[n].data.send_initial_metadata.count = f->n_down_init;
    }
    n++;
    if (status == GRPC_STATUS_OK) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, msg_len);
        c->resp = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->resp;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details =
        GRPC_SLICE_LENGTH(c->details) ? &c->details : NULL;
    if (f && f->down_trail) {
        ops[n].data.send_status_from_server.trailing_metadata = f->down_trail;
        ops[n].data.send_status_from_server.trailing_metadata_count = f->n_down_trail;
    }
    n++;
    SR_CNT_ADD(w->ctr.cds_answers[status == GRPC_STATUS_OK ? src : SR_CDS_ERROR], 1);
    start(c, ops, n, &c->t_send);
}

static void answer_error(struct cds_call *c, grpc_status_code status, const char *why)
{
    answer(c, SR_CDS_ERROR, status, grpc_slice_from_static_string(why), NULL, 0, NULL);
}

static void on_send(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct cds_call *c = (struct cds_call *)((char *)t - offsetof(struct cds_call, t_send));
    (void)ok; /* a poll whose caller went away: nothing more to do */
    call_unref(w->cds, c);
}

static void on_close(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct cds_call *c = (struct cds_call *)((char *)t - offsetof(struct cds_call, t_close));
    (void)ok; /* a waiting poll stays on its fetch's list: the fetch ends by its deadline */
    call_unref(w->cds, c);
}

/* ---- upstream calls ---- */

static void fetch_unref(struct sr_cds *cds, struct cds_fetch *f)
{
    if (--f->refs > 0) return;
    if (f->in_table) htab_del(&cds->fetches, &f->h);
    if (f->up) {
        grpc_call_unref(f->up);
        atomic_fetch_sub_explicit(&f->node->inflight, 1, memory_order_relaxed);
    }
    if (f->send) grpc_byte_buffer_destroy(f->send);
    if (f->recv) grpc_byte_buffer_destroy(f->recv);
    free(f->fwd);
    free(f->down_init);
    free(f->down_trail);
    grpc_metadata_array_destroy(&f->umd);
    grpc_metadata_array_destroy(&f->utrail);
    grpc_slice_unref(f->details);
    if (f->err) gpr_free((void *)f->err);
    free(f->h.key);
    free(f);
    cds->w->live_dcalls--;
}

/* The key's uuid: what follows token \0 service \0. */
static const uint8_t *fetch_uuid(const struct cds_fetch *f, size_t *len)
{
    *len = f->h.len - f->svc_key_len - 1;
    return f->h.key + f->svc_key_len + 1;
}

/* Answers every waiter of f from its upstream result, or, when that was a
 * transport failure, from the service's entry if it is young enough. */
static void fetch_finish(struct sr_cds *cds, struct cds_fetch *f)
{
    struct sr_worker *w = cds->w;
    const struct sr_config *cfg = cfg_of(cds);
    struct cds_call *c = f->waiters, *next;
    size_t uuid_len;
    const uint8_t *uuid = fetch_uuid(f, &uuid_len);
    grpc_slice body = grpc_empty_slice();
    bool first = true;

    if (f->in_table) {
        htab_del(&cds->fetches, &f->h);
        f->in_table = false;
    }
    f->waiters = NULL;
    if (f->status == GRPC_STATUS_OK) {
        if (f->recv) {
            body = sr_rx_take_body(f->recv);
            f->recv = NULL;
            learn(cds, f->h.key, f->svc_key_len, uuid, uuid_len, GRPC_SLICE_START_PTR(body),
                  GRPC_SLICE_LENGTH(body), w->now_ms);
        } else { /* OK without a message: not a valid unary answer */
            f->status = GRPC_STATUS_INTERNAL;
            grpc_slice_unref(f->details);
            f->details = grpc_slice_from_static_string("skyrelay: OAP answered without a message");
        }
    }
    for (; c; c = next, first = false) {
        next = c->next;
        if (f->status == GRPC_STATUS_OK) {
            answer(c, first ? SR_CDS_UPSTREAM : SR_CDS_COALESCED, GRPC_STATUS_OK, f->details,
                   GRPC_SLICE_START_PTR(body), GRPC_SLICE_LENGTH(body), f);
        } else {
            const struct cds_svc *s = NULL;
            const uint8_t *b;
            size_t n;
            uint32_t stale = cfg->upstream.config_discovery.stale_ttl_ms;
            if (sr_status_class(f->status) == SR_SC_TRANSPORT && stale)
                s = svc_find(cds, f->h.key, f->svc_key_len);
            if (s && w->now_ms - s->seen_ms < (int64_t)stale && svc_answer(s, uuid, uuid_len, &b, &n)) {
                answer(c, SR_CDS_STALE, GRPC_STATUS_OK, grpc_empty_slice(), b, n, NULL);
                const uint8_t *name = (const uint8_t *)memchr(f->h.key, 0, f->svc_key_len) + 1;
                SR_LOG_RL(SR_LOG_WARN, "cds",
                          "fetchConfigurations: OAP did not answer (status %d); service %.*s "
                          "answered with what OAP said %lld s ago",
                          (int)f->status, (int)(f->h.key + f->svc_key_len - name),
                          (const char *)name, (long long)((w->now_ms - s->seen_ms) / 1000));
            } else {
                answer(c, SR_CDS_ERROR, f->status, f->details, NULL, 0, f);
            }
        }
        call_unref(cds, c); /* the waiter's ref */
    }
    grpc_slice_unref(body);
}

/* What the end of the upstream call says about its node: as for the other
 * synchronous calls (src/server/relay.c), except that the call has no parent,
 * so a CANCELLED is ours (shutdown) and says nothing. */
static void settle_node(struct sr_cds *cds, struct cds_fetch *f)
{
    struct sr_worker *w = cds->w;
    bool ok;
    switch (sr_status_class(f->status)) {
    case SR_SC_OK:
        ok = true;
        break;
    case SR_SC_TRANSPORT:
        if (f->status == GRPC_STATUS_CANCELLED) return;
        ok = false;
        break;
    default:
        return; /* OAP's answer about the request: the node is fine */
    }
    if (!atomic_load(&w->rt->draining)) sr_node_report(&w->rt->up, f->node, ok, w->now_ms, &w->rng);
}

static void on_fetch_done(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct cds_fetch *f = (struct cds_fetch *)((char *)t - offsetof(struct cds_fetch, t_done));
    if (!ok && f->status == GRPC_STATUS_OK) f->status = GRPC_STATUS_UNKNOWN;
    settle_node(w->cds, f);
    if (f->status == GRPC_STATUS_OK || sr_status_class(f->status) != SR_SC_TRANSPORT) {
        f->down_init = sr_relay_answer_md(&f->umd, false, &f->n_down_init);
        f->down_trail = sr_relay_answer_md(&f->utrail, true, &f->n_down_trail);
    }
    fetch_finish(w->cds, f);
    fetch_unref(w->cds, f);
}

/* Starts the upstream call for c's key; c is its first waiter. */
static void fetch_start(struct sr_cds *cds, struct cds_call *c, uint8_t *key, size_t key_len,
                        size_t svc_key_len, uint64_t hash)
{
    struct sr_worker *w = cds->w;
    const struct sr_config *cfg = cfg_of(cds);
    struct cds_fetch *f = calloc(1, sizeof(*f));
    int64_t retry_at = INT64_MAX, cap, caller;
    gpr_timespec deadline;
    grpc_channel *ch;
    grpc_slice method;
    grpc_op ops[6];
    grpc_call_error e;

    if (!f) {
        free(key);
        answer_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "skyrelay: out of memory");
        return;
    }
    w->live_dcalls++;
    f->cds = cds;
    f->t_done.fn = on_fetch_done;
    f->h.key = key;
    f->h.len = key_len;
    f->h.hash = hash;
    f->svc_key_len = svc_key_len;
    f->details = grpc_empty_slice();
    f->refs = 1;
    f->tail = &f->waiters;
    grpc_metadata_array_init(&f->umd);
    grpc_metadata_array_init(&f->utrail);
    htab_add(&cds->fetches, &f->h);
    f->in_table = true;
    c->refs++; /* held while waiting */
    *f->tail = c;
    f->tail = &c->next;

    f->node = w->relay_balancer->type->pick(w->relay_balancer, 0, 0, w->now_ms, &retry_at);
    if (!f->node) {
        f->status = GRPC_STATUS_UNAVAILABLE;
        f->details = grpc_slice_from_static_string("skyrelay: no upstream node available");
        SR_LOG_RL(SR_LOG_WARN, "cds", "fetchConfigurations: no upstream node available");
        goto fail;
    }
    /* No parent: the call answers every poll that joins it. Its deadline is
     * sync_timeout, or earlier so that a stale answer still reaches the first
     * caller before its own deadline (4/5 of what it has left). */
    cap = w->now_ms + cfg->upstream.sync_timeout_ms;
    caller = sr_caller_deadline_ms(c->deadline);
    if (caller != INT64_MAX && caller > w->now_ms && w->now_ms + (caller - w->now_ms) * 4 / 5 < cap)
        cap = w->now_ms + (caller - w->now_ms) * 4 / 5;
    deadline = sr_ms_to_deadline(cap);
    method = grpc_slice_from_static_string(cds_paths[c->path]);
    ch = atomic_load(&f->node->channel);
    f->up = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, method, NULL,
                                     deadline, NULL);
    if (f->up) atomic_fetch_add_explicit(&f->node->inflight, 1, memory_order_relaxed);
    f->fwd = sr_relay_request_md(&c->md, cfg->upstream.authentication, &f->n_fwd);
    f->send = grpc_raw_byte_buffer_create(&c->body, 1); /* a ref, no copy */
    if (!f->up || !f->fwd || !f->send) {
        f->status = GRPC_STATUS_INTERNAL;
        f->details = grpc_slice_from_static_string("skyrelay: cannot create upstream call");
        goto fail;
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.metadata = f->fwd;
    ops[0].data.send_initial_metadata.count = f->n_fwd;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = f->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &f->umd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &f->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &f->utrail;
    ops[5].data.recv_status_on_client.status = &f->status;
    ops[5].data.recv_status_on_client.status_details = &f->details;
    ops[5].data.recv_status_on_client.error_string = &f->err;
    e = grpc_call_start_batch(f->up, ops, 6, &f->t_done, NULL);
    if (e != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "cds", "start_batch: %s", grpc_call_error_to_string(e));
        f->status = GRPC_STATUS_INTERNAL;
        f->details = grpc_slice_from_static_string("skyrelay: cannot start upstream call");
        goto fail;
    }
    SR_CNT_ADD(w->ctr.cds_upstream_calls, 1);
    return;
fail:
    if (f->status == GRPC_STATUS_INTERNAL) { /* ours, not the node's: no stale answer */
        f->down_init = sr_relay_answer_md(&f->umd, false, &f->n_down_init);
        f->down_trail = sr_relay_answer_md(&f->utrail, true, &f->n_down_trail);
    }
    fetch_finish(cds, f);
    fetch_unref(cds, f);
}

/* A poll with its request read: from the cache, joined to a fetch in flight,
 * or a new fetch. */
static void poll_one(struct sr_cds *cds, struct cds_call *c)
{
    struct sr_worker *w = cds->w;
    const struct sr_config *cfg = cfg_of(cds);
    const grpc_slice *t;
    const uint8_t *svc, *uuid, *b;
    size_t req_len, svc_len, uuid_len, n, key_len, svc_key_len, tok_len = 0;
    const uint8_t *tok = (const uint8_t *)"";
    uint8_t *key;
    uint64_t hash;
    struct cds_svc *s;
    struct hnode *h;

    req_len = grpc_byte_buffer_length(c->req);
    c->body = sr_rx_take_body(c->req); /* also what goes upstream */
    c->req = NULL;
    if (req_len && !GRPC_SLICE_LENGTH(c->body)) {
        answer_error(c, GRPC_STATUS_INVALID_ARGUMENT, "skyrelay: unreadable request message");
        return;
    }
    if (sr_cds_read_request(GRPC_SLICE_START_PTR(c->body), GRPC_SLICE_LENGTH(c->body), &svc,
                            &svc_len, &uuid, &uuid_len) != 0) {
        answer_error(c, GRPC_STATUS_INVALID_ARGUMENT, "skyrelay: malformed protobuf message");
        return;
    }
    /* the caller's token is part of the key, unless upstream.authentication replaces it */
    if (!(cfg->upstream.authentication && cfg->upstream.authentication[0]) &&
        (t = sr_auth_token(&c->md)) != NULL) {
        tok = GRPC_SLICE_START_PTR(*t);
        tok_len = GRPC_SLICE_LENGTH(*t);
    }
    svc_key_len = tok_len + 1 + svc_len;
    key_len = svc_key_len + 1 + uuid_len;
    key = malloc(key_len);
    if (!key) {
        answer_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "skyrelay: out of memory");
        return;
    }
    memcpy(key, tok, tok_len);
    key[tok_len] = 0;
    memcpy(key + tok_len + 1, svc, svc_len);
    key[svc_key_len] = 0;
    memcpy(key + svc_key_len + 1, uuid, uuid_len);

    s = svc_find(cds, key, svc_key_len);
    if (s && w->now_ms - s->seen_ms < (int64_t)cfg->upstream.config_discovery.cache_ttl_ms &&
        svc_answer(s, key + svc_key_len + 1, uuid_len, &b, &n)) {
        lru_unlink(cds, s);
        lru_front(cds, s);
        answer(c, SR_CDS_CACHE, GRPC_STATUS_OK, grpc_empty_slice(), b, n, NULL);
        free(key);
        return;
    }
    hash = sr_hash64(SR_HASH64_INIT, key, key_len);
    h = htab_find(&cds->fetches, hash, key, key_len);
    if (h) {
        struct cds_fetch *f = (struct cds_fetch *)h;
        c->refs++;
        *f->tail = c;
        f->tail = &c->next;
        free(key);
        return;
    }
    fetch_start(cds, c, key, key_len, svc_key_len, hash);
}

static void on_new(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    struct cds_call *c = (struct cds_call *)((char *)t - offsetof(struct cds_call, t_new));
    struct sr_cds *cds = w->cds;
    grpc_op op;

    w->pending_requests--;
    if (!ok) { /* server shutting down */
        grpc_metadata_array_destroy(&c->md);
        if (c->req) grpc_byte_buffer_destroy(c->req);
        free(c);
        return;
    }
    w->live_dcalls++;
    c->refs = 1; /* this function's */
    if (!atomic_load(&w->rt->draining)) arm(cds, c->path);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    start(c, &op, 1, &c->t_close);
    if (!sr_auth_ok(&c->md, w->rt->cfg->server.authentication)) {
        SR_CNT_ADD(w->ctr.unauthenticated_calls, 1);
        SR_LOG_RL(SR_LOG_WARN, "server", "%s: missing or wrong authentication token, UNAUTHENTICATED",
                  cds_paths[c->path]);
        answer_error(c, GRPC_STATUS_UNAUTHENTICATED, "skyrelay: missing or wrong authentication");
    } else if (!c->req) {
        answer_error(c, GRPC_STATUS_INVALID_ARGUMENT, "skyrelay: no request message");
    } else {
        poll_one(cds, c);
    }
    call_unref(cds, c);
}

static void arm(struct sr_cds *cds, int path)
{
    struct sr_worker *w = cds->w;
    struct cds_call *c = calloc(1, sizeof(*c));
    grpc_call_error e;

    if (!c) {
        SR_LOG_RL(SR_LOG_ERROR, "cds", "out of memory arming a call");
        return;
    }
    c->cds = cds;
    c->path = path;
    c->t_new.fn = on_new;
    c->t_send.fn = on_send;
    c->t_close.fn = on_close;
    c->details = grpc_empty_slice();
    c->body = grpc_empty_slice();
    grpc_metadata_array_init(&c->md);
    e = grpc_server_request_registered_call(w->rt->server, w->rt->cds_method[path], &c->call,
                                            &c->deadline, &c->md, &c->req, w->cq, w->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        SR_LOG_RL(SR_LOG_ERROR, "cds", "request_registered_call: %s", grpc_call_error_to_string(e));
        grpc_metadata_array_destroy(&c->md);
        free(c);
        return;
    }
    w->pending_requests++;
}

/* ---- life cycle ---- */

int sr_cds_register(struct sr_runtime *rt)
{
    for (int i = 0; i < 2; i++) {
        rt->cds_method[i] = grpc_server_register_method(
            rt->server, cds_paths[i], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!rt->cds_method[i]) return -ENOMEM;
    }
    return 0;
}

int sr_cds_init(struct sr_worker *w)
{
    struct sr_cds *cds = calloc(1, sizeof(*cds));
    if (!cds || htab_init(&cds->fetches) != 0 || htab_init(&cds->svcs) != 0) {
        if (cds) {
            free(cds->fetches.b);
            free(cds);
        }
        return -ENOMEM;
    }
    cds->w = w;
    w->cds = cds;
    return 0;
}

void sr_cds_start(struct sr_worker *w)
{
    for (int path = 0; path < 2; path++)
        for (int i = 0; i < CDS_PENDING; i++) arm(w->cds, path);
}

int64_t sr_cds_tick(struct sr_worker *w)
{
    struct sr_cds *cds = w->cds;
    const struct sr_config *cfg;
    int64_t keep;

    if (!cds) return INT64_MAX;
    if (!cds->cancelled && atomic_load_explicit(&w->rt->server_shutdown_done, memory_order_relaxed)) {
        /* every poll has ended: what is still in flight answers nobody (no fetch starts after) */
        cds->cancelled = true;
        for (size_t i = 0; i <= cds->fetches.mask; i++)
            for (struct hnode *h = cds->fetches.b[i]; h; h = h->next) {
                struct cds_fetch *f = (struct cds_fetch *)h;
                if (f->up) grpc_call_cancel(f->up, NULL);
            }
    }
    if (w->now_ms < cds->sweep_ms) return cds->sweep_ms;
    cds->sweep_ms = w->now_ms + SWEEP_MS;
    cfg = cfg_of(cds);
    keep = cfg->upstream.config_discovery.cache_ttl_ms > cfg->upstream.config_discovery.stale_ttl_ms
               ? cfg->upstream.config_discovery.cache_ttl_ms
               : cfg->upstream.config_discovery.stale_ttl_ms;
    for (struct cds_svc *s = cds->lru_head, *next; s; s = next) {
        next = s->next;
        if (w->now_ms - s->seen_ms >= keep) svc_free(cds, s);
    }
    make_room(cds, 0, 0); /* the bounds may have shrunk with a reload */
    publish(cds);
    return cds->sweep_ms;
}

void sr_cds_deinit(struct sr_worker *w)
{
    struct sr_cds *cds = w->cds;
    if (!cds) return;
    while (cds->lru_head) svc_free(cds, cds->lru_head);
    free(cds->svcs.b);
    free(cds->fetches.b); /* fetches end with their calls, before the loop does */
    free(cds);
    w->cds = NULL;
}
