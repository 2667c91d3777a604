/* DNS finder (see include/skyrelay/discovery.h). */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "skyrelay/discovery.h"
#include "skyrelay/log.h"

struct name {
    char host[256];
    char port[8];
    uint32_t weight;
    uv_getaddrinfo_t req;
    bool busy;
    char **addrs; /* last good resolution: "ip:port" */
    size_t n_addrs;
};

static struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    struct name *names;
    size_t n_names;
    size_t pending;
    uint32_t interval_ms;
    sr_nodes_publish_fn publish;
    void *arg;
    char **last; /* last published, sorted */
    size_t n_last;
    bool started, stopping;
    _Atomic uint64_t updates, errors, nodes;
} g;

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t weight_of(const char *addr)
{
    for (size_t i = 0; i < g.n_names; i++)
        for (size_t k = 0; k < g.names[i].n_addrs; k++)
            if (strcmp(g.names[i].addrs[k], addr) == 0) return g.names[i].weight;
    return 1;
}

/* All names of the round resolved: publish the union if it changed. */
static void round_done(void)
{
    size_t total = 0, n = 0, j;
    char **all;
    struct sr_node_config *nodes;

    for (size_t i = 0; i < g.n_names; i++) total += g.names[i].n_addrs;
    all = calloc(total + 1, sizeof(*all));
    if (!all) {
        atomic_fetch_add(&g.errors, 1);
        return;
    }
    for (size_t i = 0; i < g.n_names; i++)
        for (size_t k = 0; k < g.names[i].n_addrs; k++) {
            bool dup = false;
            for (j = 0; j < n && !dup; j++) dup = strcmp(all[j], g.names[i].addrs[k]) == 0;
            if (!dup) all[n++] = g.names[i].addrs[k];
        }
    qsort(all, n, sizeof(*all), cmp_str);
    if (g.started && n == g.n_last) {
        for (j = 0; j < n && strcmp(all[j], g.last[j]) == 0; j++) {
        }
        if (j == n) { /* same set */
            free(all);
            return;
        }
    }
    nodes = calloc(n + 1, sizeof(*nodes));
    if (!nodes) {
        free(all);
        atomic_fetch_add(&g.errors, 1);
        return;
    }
    g.started = true;
    free_list(g.last, g.n_last);
    g.last = calloc(n + 1, sizeof(*g.last));
    g.n_last = 0;
    for (j = 0; j < n; j++) {
        nodes[j].address = strdup(all[j]);
        nodes[j].weight = weight_of(all[j]);
        if (g.last) g.last[g.n_last++] = strdup(all[j]);
    }
    free(all);
    atomic_fetch_add(&g.updates, 1);
    atomic_store(&g.nodes, n);
    SR_INFO("discovery", "dns: %zu node(s)", n);
    g.publish(g.arg, nodes, n);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct name *nm = req->data;
    nm->busy = false;
    if (status < 0) {
        atomic_fetch_add(&g.errors, 1);
        if (status != UV_ECANCELED)
            SR_LOG_RL(SR_LOG_WARN, "discovery", "dns: cannot resolve %s: %s (keeping %zu old record(s))",
                      nm->host, uv_strerror(status), nm->n_addrs);
    } else {
        size_t cnt = 0, k = 0;
        char **addrs;
        for (struct addrinfo *a = res; a; a = a->ai_next) cnt++;
        addrs = calloc(cnt + 1, sizeof(*addrs));
        for (struct addrinfo *a = res; a && addrs; a = a->ai_next) {
            char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];
            if (a->ai_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof(ip));
            else if (a->ai_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof(ip));
            else
                continue;
            snprintf(buf, sizeof(buf), a->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", ip, nm->port);
            addrs[k++] = strdup(buf);
        }
        if (addrs) {
            free_list(nm->addrs, nm->n_addrs);
            nm->addrs = addrs;
            nm->n_addrs = k;
        }
        uv_freeaddrinfo(res);
    }
    if (--g.pending == 0 && !g.stopping) round_done();
}

static void on_tick(uv_timer_t *t)
{
    struct addrinfo hints;
    (void)t;
    if (g.pending) return; /* the previous round is still resolving */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    for (size_t i = 0; i < g.n_names; i++) {
        struct name *nm = &g.names[i];
        nm->req.data = nm;
        if (uv_getaddrinfo(g.loop, &nm->req, on_resolved, nm->host, nm->port, &hints) == 0) {
            nm->busy = true;
            g.pending++;
        } else {
            atomic_fetch_add(&g.errors, 1);
        }
    }
}

int sr_dns_finder_start(uv_loop_t *loop, const struct sr_config *cfg, sr_nodes_publish_fn publish,
                        void *arg)
{
    memset(&g, 0, sizeof(g));
    g.loop = loop;
    g.publish = publish;
    g.arg = arg;
    g.interval_ms = cfg->upstream.refresh_interval_ms;
    g.names = calloc(cfg->upstream.n_nodes + 1, sizeof(*g.names));
    if (!g.names) return -1;
    for (size_t i = 0; i < cfg->upstream.n_nodes; i++) {
        const char *a = cfg->upstream.nodes[i].address, *colon = strrchr(a, ':');
        struct name *nm = &g.names[g.n_names];
        size_t hl;
        if (!colon) continue; /* the config loader guarantees host:port */
        hl = (size_t)(colon - a);
        if (a[0] == '[' && hl >= 2 && a[hl - 1] == ']') { /* [v6]:port */
            a++;
            hl -= 2;
        }
        if (hl >= sizeof(nm->host) || strlen(colon + 1) >= sizeof(nm->port)) continue;
        memcpy(nm->host, a, hl);
        nm->host[hl] = '\0';
        snprintf(nm->port, sizeof(nm->port), "%s", colon + 1);
        nm->weight = cfg->upstream.nodes[i].weight ? cfg->upstream.nodes[i].weight : 1;
        g.n_names++;
    }
    uv_timer_init(loop, &g.timer);
    uv_timer_start(&g.timer, on_tick, 0, g.interval_ms);
    SR_INFO("discovery", "dns: resolving %zu name(s) every %u ms", g.n_names, g.interval_ms);
    return 0;
}

void sr_dns_finder_stop(void)
{
    if (!g.loop || g.stopping) return;
    g.stopping = true;
    uv_timer_stop(&g.timer);
    for (size_t i = 0; i < g.n_names; i++)
        if (g.names[i].busy) uv_cancel((uv_req_t *)&g.names[i].req);
    /* the timer handle is closed by the loop's final walk; the name records are
     * released at exit (the pending resolutions may still reference them) */
}

void sr_dns_finder_stats(struct sr_discovery_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->updates = atomic_load(&g.updates);
    out->errors = atomic_load(&g.errors);
    out->nodes = atomic_load(&g.nodes);
}
