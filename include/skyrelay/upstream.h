/* Upstream OAP nodes: one gRPC channel per node (channels are thread-safe and
 * shared by all workers), and the node's health as seen by the senders.
 *
 * Health is shared across workers through atomics: a failed call ejects the
 * node for an exponential backoff with jitter; a successful call restores it.
 *
 * The node set can change at run time (discovery): nodes live in a fixed array
 * of slots that never moves, so a worker's pointer to a node stays valid. The
 * main thread applies a new list with sr_upstream_apply: a node that left is
 * marked `gone` (every balancer skips it: sr_node_is_up is false; its channel
 * stays until the slot is reused, at least 60 s later and only with no call in
 * flight); a new node takes a free slot with a new channel; then the set's
 * generation is bumped and every worker rebuilds its balancers on its next
 * loop turn. Batches bound to a gone node go to the next candidate. */
#ifndef SKYRELAY_UPSTREAM_H
#define SKYRELAY_UPSTREAM_H

#include <grpc/grpc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/config.h"
#include "skyrelay/metrics.h"

#define SR_MAX_NODES 4096 /* node slots (distinct addresses seen, reused after 60 s gone) */

struct sr_node {
    char *address; /* owned */
    uint32_t weight;
    uint32_t index; /* position in sr_upstream.nodes */
    /* Replaced (main thread) when the upstream TLS files change: workers load it once
     * per call they create; the old one lives on until its calls are over. */
    grpc_channel *_Atomic channel;
    _Atomic int64_t down_until_ms; /* 0 = up */
    _Atomic uint32_t failures;     /* consecutive */
    _Atomic uint64_t sent_events;
    _Atomic uint64_t sent_batches;
    _Atomic uint64_t failed_calls;
    _Atomic int gone;      /* left the node set (discovery); 0 for a present node */
    _Atomic int inflight;  /* upstream calls using the channel now (batch calls, all workers) */
    /* fault containment (src/sender/sender.c, docs/reliability.md) */
    _Atomic int stalled;             /* a call went unanswered for upstream.stall_timeout */
    _Atomic int64_t stalled_at_ms;   /* when; calls started before it are re-sent elsewhere */
    _Atomic uint64_t hedged_events;  /* events re-sent elsewhere because this node stalled */
    _Atomic uint64_t poison_events;  /* events this node refused as content (counted per call) */
    _Atomic uint64_t stalls;         /* times it was found stalled */
    /* load (src/upstream/load.c): peak-sensitive EWMA of call latency */
    _Atomic uint64_t ewma_us;        /* 0 = no sample yet */
    _Atomic int64_t ewma_stamp_us;   /* time of the last sample */
    struct sr_latency latency;       /* batch call latency, all workers (atomic adds) */
    int64_t gone_since_ms; /* main thread */
    bool watch_lost;       /* main thread (sr_upstream_watch): seen without a connection while ejected */
    _Atomic uint64_t readmitted; /* ejections ended early because the node reconnected */
};

struct sr_upstream {
    struct sr_node *nodes; /* SR_MAX_NODES slots (tests: any array) */
    _Atomic size_t n_nodes; /* slots in use (present or gone) */
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    _Atomic uint64_t gen;   /* bumped by every change of the node set */
    _Atomic uint64_t readmits; /* bumped when sr_upstream_watch ends an ejection early */
    int max_recv;           /* channel arg for new nodes */
    _Atomic uint64_t present; /* nodes present after the last apply (written by main) */
    char **retired;         /* main thread: addresses of reused slots, freed at deinit */
    size_t n_retired;
    /* TLS (src/tls/upstream.c): the credentials of new channels (NULL = insecure), the
     * name checked in OAP's certificate, and channels replaced by a credentials change,
     * destroyed once no call can still use them (main thread) */
    grpc_channel_credentials *creds;
    char *server_name;
    uint32_t retire_grace_ms;
    struct sr_old_channel {
        grpc_channel *channel;
        int64_t destroy_at_ms;
    } *old;
    size_t n_old;
};

/* Creates one channel per configured node. Call after grpc_init. Returns 0 or -1. */
int sr_upstream_init(struct sr_upstream *up, const struct sr_config *cfg);
void sr_upstream_deinit(struct sr_upstream *up);

/* New channel credentials (takes creds): every node gets a new channel made with them,
 * for the calls created from now on; calls in flight finish on the old channel, which
 * is destroyed retire_grace_ms later (sr_upstream_collect_old). Nodes added later use
 * them too. Returns how many channels were replaced. Main thread. */
size_t sr_upstream_set_credentials(struct sr_upstream *up, grpc_channel_credentials *creds,
                                   int64_t now_ms);

/* Destroys the replaced channels whose grace is over (all of them with now_ms =
 * INT64_MAX). Main thread. */
void sr_upstream_collect_old(struct sr_upstream *up, int64_t now_ms);

/* Present in the node set and not ejected. */
static inline bool sr_node_is_up(const struct sr_node *n, int64_t now_ms)
{
    return !atomic_load_explicit(&n->gone, memory_order_acquire) &&
           atomic_load_explicit(&n->down_until_ms, memory_order_relaxed) <= now_ms;
}

static inline bool sr_node_present(const struct sr_node *n)
{
    return !atomic_load_explicit(&n->gone, memory_order_acquire);
}

/* Makes `nodes` the node set (main thread; borrows nodes). Nodes already
 * present keep their channel, health and counters; the others are marked gone.
 * Returns the number of changes (0 = same set). */
size_t sr_upstream_apply(struct sr_upstream *up, const struct sr_node_config *nodes, size_t n,
                         int64_t now_ms);

/* Upstream channels try to reconnect at least this often (gRPC's reconnect backoff
 * is capped here, whatever upstream.backoff_max says). */
#define SR_RECONNECT_MAX_MS 1000
/* sr_upstream_watch runs this often (main thread). */
#define SR_WATCH_MS 200

/* Ends the ejection of every node that was seen without a connection while
 * ejected and has one again (a restarted or reachable-again OAP): it gets a
 * probe batch now rather than at the end of its backoff, which after a long
 * outage is upstream.backoff_max. A node ejected with its connection up
 * (frozen, or refusing calls) keeps its backoff. Asks ejected nodes' channels to
 * connect. Returns how many nodes were readmitted. Main thread, every SR_WATCH_MS. */
size_t sr_upstream_watch(struct sr_upstream *up, int64_t now_ms);

/* Records the outcome of a call to n. A failure ejects n for
 * min(initial * 2^(failures-1), max) ms with +-20% jitter drawn from *rng.
 * Any thread. */
void sr_node_report(struct sr_upstream *up, struct sr_node *n, bool ok, int64_t now_ms,
                    uint64_t *rng);

/* How an upstream status reflects on the node and on the batch:
 * - TRANSPORT: the node is unwell (unreachable, timed out, connection broke,
 *   we cancelled a stalled call): eject/skip the node, re-send elsewhere;
 * - CONTENT: the node is fine but refused this batch (malformed or oversize
 *   message, a bug triggered by one event): keep the node, isolate the event;
 * - REJECT: a configuration problem every node shares (token, method):
 *   re-sending cannot help; the batch is dropped and counted. */
enum sr_status_class { SR_SC_OK = 0, SR_SC_TRANSPORT, SR_SC_CONTENT, SR_SC_REJECT };

static inline enum sr_status_class sr_status_class(int status)
{
    switch (status) {
    case 0: /* GRPC_STATUS_OK */
        return SR_SC_OK;
    case 14: /* UNAVAILABLE */
    case 4:  /* DEADLINE_EXCEEDED */
    case 1:  /* CANCELLED */
    case 10: /* ABORTED */
        return SR_SC_TRANSPORT;
    case 16: /* UNAUTHENTICATED */
    case 7:  /* PERMISSION_DENIED */
    case 12: /* UNIMPLEMENTED */
        return SR_SC_REJECT;
    default: /* INTERNAL, UNKNOWN, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, DATA_LOSS, ... */
        return SR_SC_CONTENT;
    }
}

/* Records the latency of one finished batch call to n (any worker): the
 * peak-sensitive EWMA (a slower sample takes over at once, a faster one
 * decays in with time constant SR_EWMA_TAU_US) and the latency histogram. */
#define SR_EWMA_TAU_US 10000000LL
void sr_node_observe_latency(struct sr_node *n, uint64_t us, int64_t now_us);

/* The node's load score for least-loaded routing: the latency EWMA (or
 * `default_us` when it has no sample yet) times (outstanding calls + 1),
 * with the EWMA decayed towards 0 for the time since the last sample, so an
 * idle node's old peak does not keep it out forever. Any thread. */
double sr_node_load_score(const struct sr_node *n, uint64_t default_us, int64_t now_us);

/* A node counts for readiness: not ejected, and its channel READY, or IDLE /
 * CONNECTING after an earlier successful call (src/upstream/ready.c says why).
 * Asks the channel to connect. Any thread. */
bool sr_node_reachable(struct sr_node *n, int64_t now_ms);

/* At least one node of up is reachable (every node is asked, so every idle
 * channel connects). Any thread. */
bool sr_upstream_reachable(struct sr_upstream *up, int64_t now_ms);

/* The backoff for the k-th consecutive failure (k >= 1), before jitter. Pure. */
uint32_t sr_backoff_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t k);

/* xorshift64* step; *state must be non-zero. */
uint64_t sr_rand64(uint64_t *state);

#endif
