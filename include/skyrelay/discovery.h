/* Node discovery. A finder produces the complete current list of OAP nodes
 * and hands it to `publish`; the main thread turns it into a new node set for
 * the router without a restart (queued batches for a vanished node go to the
 * next candidate). Finders: static (config), dns (src/discovery/dns.c, on the
 * libuv loop), kubernetes (src/discovery/kubernetes.c, its own thread). */
#ifndef SKYRELAY_DISCOVERY_H
#define SKYRELAY_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "skyrelay/config.h"

/* Receives a complete node list. TAKES `nodes` (a malloc'd array whose
 * `address` strings are malloc'd; free with sr_discovery_free_nodes; may be NULL when
 * n == 0). May be called from any thread (the kubernetes finder calls it from
 * its own threads, one call at a time); must not block. */
typedef void (*sr_nodes_publish_fn)(void *arg, struct sr_node_config *nodes, size_t n);

/* Frees a list handed to sr_nodes_publish_fn (each address, then the array).
 * NULL is fine. Any thread. */
void sr_discovery_free_nodes(struct sr_node_config *nodes, size_t n);

/* Discovery counters, any thread (relaxed). */
struct sr_discovery_stats {
    uint64_t updates;    /* node lists published */
    uint64_t errors;     /* failed list/watch/resolve attempts */
    uint64_t relists;    /* kubernetes: LIST requests made (start, 410 Gone, broken watch,
                          * retries after errors) */
    uint64_t nodes;      /* nodes in the last list */
};

struct uv_loop_s;

/* A finder, as main sees it: one const table per implementation, listed in
 * src/discovery/registry.c (adding a finder = its file + one registry line). */
struct sr_finder_type {
    const char *name; /* as in upstream.finder */
    bool own_thread;  /* publishes from its own threads (else on the main loop) */
    /* Starts producing node lists (cfg borrowed; must outlive the finder).
     * Returns 0 or -1 (the finder logged why). Main thread. */
    int (*start)(struct uv_loop_s *loop, const struct sr_config *cfg, sr_nodes_publish_fn publish,
                 void *arg);
    /* Stops it; publish is not called after it returns. Main thread. */
    void (*stop)(void);
    /* Its counters. Any thread. */
    void (*stats)(struct sr_discovery_stats *out);
};

/* The finders (src/discovery/registry.c), listed in config.h SR_FINDERS. */
extern const struct sr_finder_type sr_finder_static, sr_finder_dns, sr_finder_kubernetes;

/* The finder of upstream.finder (enum sr_finder). NULL for an unknown value. */
const struct sr_finder_type *sr_finder_for(int finder);

/* DNS finder: every upstream.refresh_interval (first at once), resolves each
 * upstream.addresses entry "name:port" with uv_getaddrinfo on `loop` (libuv's
 * thread pool: the loop never blocks); every A/AAAA record is a node
 * "ip:port" with the entry's weight (a headless Service gives one per pod).
 * A name that fails to resolve keeps its previous records (a DNS hiccup does
 * not empty the node set). Publishes when the set changed. Main thread. */
int sr_dns_finder_start(struct uv_loop_s *loop, const struct sr_config *cfg,
                        sr_nodes_publish_fn publish, void *arg);
void sr_dns_finder_stop(void);
void sr_dns_finder_stats(struct sr_discovery_stats *out);

/* Kubernetes finder: list then watch Pods (kind pod) or EndpointSlices (kind
 * endpoints) matching cfg->label_selector (and field_selector) in each
 * namespace, through the API server's REST API with libcurl and json-c, in its
 * own thread. Only Ready pods with an IP count (Ready condition /
 * endpoints[].conditions.ready), port cfg->extra_port. Watches with
 * resourceVersion and allowWatchBookmarks; on 410 Gone or a broken watch,
 * re-lists (with backoff on errors). Every change of the ready set calls
 * publish with the whole set. In-cluster defaults: KUBERNETES_SERVICE_HOST/PORT,
 * /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}.
 * One thread per namespace, all signals blocked; the union of the namespaces'
 * nodes is published, sorted and de-duplicated, only when it changed (the
 * first complete list is published even when empty). Errors (connection, TLS,
 * HTTP status, broken stream) are counted and retried with backoff 1 s..30 s,
 * keeping the last published set: an error never publishes an empty list.
 * See docs/discovery-kubernetes.md. `cfg` is borrowed for the call only.
 * Main thread; one finder at a time. Returns 0 or -1 (bad settings, logged). */
int sr_k8s_finder_start(const struct sr_k8s_config *cfg, sr_nodes_publish_fn publish, void *arg);
/* Stops the finder and joins its threads (promptly, even mid-watch); publish is
 * not called after it returns. Main thread; harmless when not running. */
void sr_k8s_finder_stop(void);
/* Counters since the last sr_k8s_finder_start; any thread. */
void sr_k8s_finder_stats(struct sr_discovery_stats *out);

#endif
