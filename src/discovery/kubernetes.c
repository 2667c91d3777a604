/* Kubernetes finder: the OAP nodes are the Ready pods (or ready EndpointSlice
 * endpoints) matching a label selector in one or more namespaces.
 *
 * One thread per namespace runs the usual list-then-watch loop of a
 * Kubernetes client (client-go's reflector, reduced to what we need):
 *
 *   LIST  -> the complete set of objects and the collection's resourceVersion
 *   WATCH ?resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=300
 *         -> newline-delimited JSON events applied to that set; each event
 *            (bookmarks too) moves RV forward, so when the server ends the
 *            watch after timeoutSeconds we simply watch again from RV.
 *   ERROR 410 (RV too old, "Expired") -> LIST again at once; but when 410s
 *         follow each other with no event in between (a server or a caching
 *         proxy that cannot watch from the RV its own LIST gave), wait first:
 *         250 ms doubling to 30 s, jittered (gone_delay), so that a stuck
 *         server is not hammered with LISTs by every replica in step.
 *   anything else going wrong (connect, TLS, HTTP status, a cut stream, a
 *   line that is not an event) -> count an error, back off 1 s doubling to
 *   30 s, LIST again. The nodes found so far stay published meanwhile: an
 *   outage of the API server must never empty the upstream.
 *
 * Each namespace thread keeps its own object table (object name -> the node
 * addresses it contributes) and, after every change, hands its sorted address
 * set to the shared part (f->mu), which publishes the union of all namespaces
 * when it differs from the last one published. The first publication waits
 * until every namespace has been listed once, unless some node is known
 * earlier; it is made even when empty, so the router learns there is nothing.
 *
 * This file is the finder proper: threads, the list/watch loop, backoff and
 * publication. Talking HTTP to the API server (libcurl, TLS, the token) is in
 * k8s_http.c, reading the JSON objects and the watch stream in k8s_parse.c,
 * the object table in k8s_table.c, checking the settings in k8s_settings.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "k8s_internal.h"
#include "skyrelay/discovery.h"
#include "skyrelay/log.h"

#define BACKOFF_INITIAL_MS 1000
#define BACKOFF_MAX_MS 30000
#define GONE_BACKOFF_INITIAL_MS 250
#define MAX_EVENT_LINE (16u << 20)

enum outcome {
    W_END = 0,  /* the watch ended normally (timeoutSeconds): watch again from RV */
    W_GONE,     /* 410: the RV is too old, list again */
    W_FAIL,     /* error (logged): back off, list again */
    W_STOP,     /* sr_k8s_finder_stop */
};

struct finder;

/* One namespace: its thread, HTTP client and list/watch state. */
struct watcher {
    struct finder *f;
    char *ns;
    char *path; /* "/api/v1/namespaces/<ns>/pods" */
    pthread_t thread;
    bool started;

    /* owned by the watcher thread */
    struct sr_k8s_http http;
    struct sr_k8s_table objs;
    char *rv;
    struct sr_k8s_lines lines;
    enum outcome outcome;  /* set by the watch event handler */
    bool dirty;            /* objs changed since the last hand-over */
    uint64_t events;       /* events of the current watch */

    /* guarded by f->mu */
    struct sr_k8s_strv ready; /* this namespace's node addresses, sorted */
    bool listed;              /* listed successfully at least once */
};

struct finder {
    struct sr_k8s_settings set; /* URL, selectors, token and TLS, namespaces */
    int kind;            /* 0 = pods, 1 = endpointslices */
    uint32_t port;
    sr_nodes_publish_fn publish;
    void *arg;

    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* backoff sleeps; broadcast on stop */
    struct sr_k8s_strv published;
    bool published_once;

    struct watcher *w;
    size_t n_w;
};

/* Started and stopped by the main thread only. */
static struct finder *g_finder;

static _Atomic uint64_t st_updates, st_errors, st_relists, st_nodes;

static const char *kind_name(const struct finder *f)
{
    return f->kind ? "endpointslices" : "pods";
}

static bool stopping(const struct finder *f)
{
    return atomic_load_explicit(&f->stop, memory_order_acquire);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms or until stop. Returns false when stopping. */
static bool sleep_ms(struct finder *f, uint32_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&f->mu);
    while (!stopping(f) && pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&f->mu);
    return !stopping(f);
}

/* ---- objects ---- */

/* The node addresses one object contributes, sorted. Returns 0 or -1 (out of memory). */
static int object_addresses(struct watcher *w, json_object *obj, struct sr_k8s_strv *out)
{
    const struct finder *f = w->f;
    memset(out, 0, sizeof(*out));
    if (f->kind == 0) {
        char addr[SR_K8S_ADDR_MAX];
        int r = sr_k8s_pod_ready_address(obj, f->port, addr, sizeof addr);
        if (r < 0)
            SR_LOG_RL(SR_LOG_WARN, "k8s", "namespace %s: pod %s: status.podIP is not an IP address",
                      w->ns, sr_k8s_meta_string(obj, "name"));
        if (r > 0 && sr_k8s_strv_add(out, addr) < 0) return -1;
    } else if (sr_k8s_slice_addresses(obj, f->port, out) < 0) {
        sr_k8s_strv_clear(out);
        return -1;
    }
    sr_k8s_strv_sort_unique(out);
    return 0;
}

/* ---- publication (any watcher thread) ---- */

static void publish_locked(struct finder *f)
{
    struct sr_k8s_strv all = {0};
    struct sr_node_config *nodes = NULL;
    bool all_listed = true;

    for (size_t i = 0; i < f->n_w; i++) {
        all_listed = all_listed && f->w[i].listed;
        if (sr_k8s_strv_extend(&all, &f->w[i].ready) < 0) goto oom;
    }
    sr_k8s_strv_sort_unique(&all);
    if (f->published_once ? sr_k8s_strv_equal(&all, &f->published) : (all.n == 0 && !all_listed)) {
        sr_k8s_strv_clear(&all);
        return;
    }
    if (all.n) {
        nodes = calloc(all.n, sizeof(*nodes));
        if (!nodes) goto oom;
        for (size_t i = 0; i < all.n; i++) {
            nodes[i].address = strdup(all.v[i]);
            nodes[i].weight = 1;
            if (!nodes[i].address) {
                sr_discovery_free_nodes(nodes, i);
                goto oom;
            }
        }
    }
    SR_INFO("k8s", "publishing %zu OAP node(s)%s%s%s", all.n, all.n ? " (first " : "",
            all.n ? all.v[0] : "", all.n ? ")" : "");
    for (size_t i = 0; i < all.n; i++) SR_DEBUG("k8s", "node %s", all.v[i]);
    f->publish(f->arg, nodes, all.n);
    sr_k8s_strv_clear(&f->published);
    f->published = all;
    f->published_once = true;
    atomic_fetch_add_explicit(&st_updates, 1, memory_order_relaxed);
    atomic_store_explicit(&st_nodes, all.n, memory_order_relaxed);
    return;
oom:
    /* publish later (the next change retries); the last set stays in effect */
    sr_k8s_strv_clear(&all);
    SR_LOG_RL(SR_LOG_ERROR, "k8s", "out of memory building the node list");
}

/* Hands this namespace's current addresses to the shared part and publishes
 * the union if it changed. */
static void hand_over(struct watcher *w, bool listed)
{
    struct sr_k8s_strv mine = {0};
    for (size_t i = 0; i < w->objs.n; i++) {
        if (sr_k8s_strv_extend(&mine, &w->objs.v[i].addrs) < 0) {
            sr_k8s_strv_clear(&mine);
            SR_LOG_RL(SR_LOG_ERROR, "k8s", "out of memory building the node list");
            return; /* dirty stays set: retried after the next event */
        }
    }
    sr_k8s_strv_sort_unique(&mine);
    pthread_mutex_lock(&w->f->mu);
    sr_k8s_strv_clear(&w->ready);
    w->ready = mine;
    if (listed) w->listed = true;
    publish_locked(w->f);
    pthread_mutex_unlock(&w->f->mu);
    w->dirty = false;
}

/* ---- list and watch ---- */

static int set_rv(struct watcher *w, const char *rv)
{
    if (w->rv && strcmp(w->rv, rv) == 0) return 0;
    char *copy = strdup(rv);
    if (!copy) return -1;
    free(w->rv);
    w->rv = copy;
    return 0;
}

static int on_event(void *arg, json_object *ev)
{
    struct watcher *w = arg;
    enum sr_k8s_event_type type;
    json_object *obj;
    const char *msg;

    if (sr_k8s_event_parse(ev, &type, &obj) < 0) {
        SR_LOG_RL(SR_LOG_WARN, "k8s", "namespace %s: watch sent a line that is not an event",
                  w->ns);
        w->outcome = W_FAIL;
        return -1;
    }
    w->events++;
    if (type == SR_K8S_EV_ERROR) {
        int code = sr_k8s_status_code(obj, &msg);
        if (code == 410) {
            SR_INFO("k8s", "namespace %s: watch expired (%s), listing again", w->ns,
                    msg ? msg : "410 Gone");
            w->outcome = W_GONE;
        } else {
            SR_LOG_RL(SR_LOG_WARN, "k8s", "namespace %s: watch error %d: %s", w->ns, code,
                      msg ? msg : "(no message)");
            w->outcome = W_FAIL;
        }
        return -1;
    }
    const char *rv = sr_k8s_meta_string(obj, "resourceVersion");
    if (rv && set_rv(w, rv) < 0) goto oom;
    if (type == SR_K8S_EV_BOOKMARK) return 0;

    const char *name = sr_k8s_meta_string(obj, "name");
    if (!name) return 0;
    if (type == SR_K8S_EV_DELETED) {
        if (sr_k8s_table_remove(&w->objs, name)) w->dirty = true;
        return 0;
    }
    struct sr_k8s_strv addrs;
    if (object_addresses(w, obj, &addrs) < 0) goto oom;
    int rc = sr_k8s_table_set(&w->objs, name, &addrs);
    if (rc < 0) goto oom;
    if (rc > 0) w->dirty = true;
    return 0;
oom:
    SR_LOG_RL(SR_LOG_ERROR, "k8s", "namespace %s: out of memory applying a watch event", w->ns);
    w->outcome = W_FAIL;
    return -1;
}

static size_t watch_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct watcher *w = arg;
    size_t n = size * nmemb;

    /* keep the start of the Status body for the log line */
    if (sr_k8s_http_error_body(&w->http, data, n)) return n;
    int rc = sr_k8s_lines_feed(&w->lines, data, n, on_event, w);
    if (w->dirty) hand_over(w, false); /* one publication per chunk, not per event */
    if (rc < 0) {
        if (w->outcome == W_END) {
            SR_LOG_RL(SR_LOG_WARN, "k8s", "namespace %s: malformed watch stream", w->ns);
            w->outcome = W_FAIL;
        }
        return 0; /* aborts the transfer */
    }
    return n;
}

/* LIST: replaces the object table and RV. Returns 0, -1 (error, logged) or 1 (stopping). */
static int do_list(struct watcher *w)
{
    struct finder *f = w->f;
    struct sr_k8s_table fresh = {0};
    json_object *list = NULL;
    struct sr_buf *body = &w->http.body;
    CURLcode res;
    long code;
    int rc = -1;

    char *url = sr_k8s_asprintf("%s%s?%s", f->set.base_url, w->path, f->set.selectors);
    if (!url || sr_k8s_http_get(&w->http, url, NULL, NULL, &res) < 0) goto out;
    if (stopping(f)) {
        rc = 1;
        goto out;
    }
    if (res != CURLE_OK) {
        SR_LOG_RL(SR_LOG_WARN, "k8s", "list %s in namespace %s: %s", kind_name(f), w->ns,
                  w->http.body_truncated ? "answer too large" : sr_k8s_http_reason(&w->http, res));
        goto out;
    }
    code = sr_k8s_http_status(&w->http);
    if (code != 200) {
        sr_k8s_http_log_error(&w->http, "list", kind_name(f), w->ns, code);
        goto out;
    }

    json_tokener *tok = w->lines.tok;
    json_tokener_reset(tok);
    list = json_tokener_parse_ex(tok, body->p ? body->p : "", (int)body->len);
    json_object *items = NULL;
    const char *rv = sr_k8s_meta_string(list, "resourceVersion");
    if (!list || !rv || (json_object_object_get_ex(list, "items", &items) && items &&
                         !json_object_is_type(items, json_type_array))) {
        SR_LOG_RL(SR_LOG_WARN, "k8s", "list %s in namespace %s: not a list", kind_name(f), w->ns);
        goto out;
    }
    size_t n = items ? json_object_array_length(items) : 0; /* "items": null when empty */
    for (size_t i = 0; i < n; i++) {
        json_object *obj = json_object_array_get_idx(items, i);
        const char *name = sr_k8s_meta_string(obj, "name");
        struct sr_k8s_strv addrs;
        if (!name) continue;
        if (object_addresses(w, obj, &addrs) < 0 || sr_k8s_table_set(&fresh, name, &addrs) < 0) {
            SR_LOG_RL(SR_LOG_ERROR, "k8s", "namespace %s: out of memory reading the list", w->ns);
            goto out;
        }
    }
    if (set_rv(w, rv) < 0) goto out;
    sr_k8s_table_clear(&w->objs);
    w->objs = fresh;
    memset(&fresh, 0, sizeof(fresh));
    SR_INFO("k8s", "namespace %s: %zu %s listed, %zu with ready addresses (resourceVersion %s)",
            w->ns, n, kind_name(f), w->objs.n, w->rv);
    hand_over(w, true);
    rc = 0;
out:
    if (list) json_object_put(list);
    sr_k8s_table_clear(&fresh);
    free(url);
    return rc;
}

/* WATCH from w->rv until the server ends it, it fails, or the finder stops. */
static enum outcome do_watch(struct watcher *w)
{
    struct finder *f = w->f;
    enum outcome out = W_FAIL;
    CURLcode res;
    long code;

    char *rv = sr_k8s_url_escape(w->rv);
    char *url = rv ? sr_k8s_asprintf("%s%s?%s&watch=1&resourceVersion=%s&allowWatchBookmarks=true"
                                     "&timeoutSeconds=%d",
                                     f->set.base_url, w->path, f->set.selectors, rv,
                                     SR_K8S_WATCH_TIMEOUT_S)
                   : NULL;
    if (!url) goto done;
    sr_k8s_lines_reset(&w->lines);
    w->outcome = W_END;
    w->events = 0;
    int64_t started = now_ms();
    if (sr_k8s_http_get(&w->http, url, watch_write, w, &res) < 0) goto done;
    if (w->dirty) hand_over(w, false);
    if (stopping(f)) {
        out = W_STOP;
        goto done;
    }
    if (w->outcome != W_END) { /* an ERROR event or a bad line, logged */
        out = w->outcome;
        goto done;
    }
    if (res != CURLE_OK) {
        SR_LOG_RL(SR_LOG_WARN, "k8s", "watch %s in namespace %s broken: %s", kind_name(f), w->ns,
                  sr_k8s_http_reason(&w->http, res));
        goto done;
    }
    code = sr_k8s_http_status(&w->http);
    if (code == 410) {
        SR_INFO("k8s", "namespace %s: watch answered 410 Gone, listing again", w->ns);
        out = W_GONE;
    } else if (code != 200) {
        sr_k8s_http_log_error(&w->http, "watch", kind_name(f), w->ns, code);
    } else if (w->events == 0 && now_ms() - started < 1000) {
        /* a proxy ending every watch at once would otherwise make us spin */
        SR_LOG_RL(SR_LOG_WARN, "k8s", "watch %s in namespace %s ended at once", kind_name(f),
                  w->ns);
    } else {
        SR_DEBUG("k8s", "namespace %s: watch ended after %" PRId64 " ms, %llu events", w->ns,
                 now_ms() - started, (unsigned long long)w->events);
        out = W_END;
    }
done:
    free(url);
    free(rv);
    return out;
}

/* The wait before the LIST after the streak-th 410 in a row (1: none): doubling from
 * GONE_BACKOFF_INITIAL_MS up to BACKOFF_MAX_MS, then a random point in its upper half, so
 * that replicas that all got the 410 at once do not relist in step. */
static uint32_t gone_delay(uint32_t streak, unsigned *seed)
{
    uint32_t d = BACKOFF_MAX_MS;
    if (streak <= 1) return 0;
    if (streak - 2 < 8 && (GONE_BACKOFF_INITIAL_MS << (streak - 2)) < BACKOFF_MAX_MS)
        d = GONE_BACKOFF_INITIAL_MS << (streak - 2);
    return d / 2 + (uint32_t)rand_r(seed) % (d / 2 + 1);
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;
    struct finder *f = w->f;
    uint32_t backoff = 0, gone_streak = 0;
    bool need_list = true;
    unsigned seed = (unsigned)now_ms() ^ (unsigned)(uintptr_t)w;

    /* signals stay with the main thread: the mask was inherited full from sr_k8s_finder_start */
    while (!stopping(f)) {
        if (need_list) {
            atomic_fetch_add_explicit(&st_relists, 1, memory_order_relaxed);
            int rc = do_list(w);
            if (rc > 0) break;
            if (rc < 0) goto failed;
            need_list = false;
            backoff = 0;
        }
        switch (do_watch(w)) {
        case W_END:
            gone_streak = 0;
            continue;
        case W_GONE: {
            /* the 410 itself is the watch's only event when it brought no progress */
            uint32_t delay;
            gone_streak = w->events > 1 ? 1 : gone_streak + 1;
            delay = gone_delay(gone_streak, &seed);
            need_list = true;
            if (delay) {
                SR_LOG_RL(SR_LOG_WARN, "k8s", "namespace %s: %u watches in a row answered 410 "
                          "Gone at once; listing again in %u ms", w->ns, gone_streak, delay);
                if (!sleep_ms(f, delay)) return NULL;
            }
            continue;
        }
        case W_STOP:
            return NULL;
        case W_FAIL:
            need_list = true;
            goto failed;
        }
        continue;
    failed:
        atomic_fetch_add_explicit(&st_errors, 1, memory_order_relaxed);
        backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
                          : BACKOFF_INITIAL_MS;
        SR_DEBUG("k8s", "namespace %s: retrying in %u ms", w->ns, backoff);
        if (!sleep_ms(f, backoff)) break;
    }
    return NULL;
}

/* ---- start / stop ---- */

static void finder_free(struct finder *f)
{
    for (size_t i = 0; i < f->n_w; i++) {
        struct watcher *w = &f->w[i];
        sr_k8s_http_deinit(&w->http);
        sr_k8s_table_clear(&w->objs);
        sr_k8s_lines_deinit(&w->lines);
        sr_k8s_strv_clear(&w->ready);
        free(w->rv);
        free(w->path);
        free(w->ns);
    }
    free(f->w);
    sr_k8s_strv_clear(&f->published);
    sr_k8s_settings_deinit(&f->set);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static bool empty(const char *s)
{
    return !s || !*s;
}

static int watcher_init(struct finder *f, struct watcher *w, const char *ns)
{
    w->f = f;
    w->ns = strdup(ns);
    w->path = f->kind
                  ? sr_k8s_asprintf("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices", ns)
                  : sr_k8s_asprintf("/api/v1/namespaces/%s/pods", ns);
    if (!w->ns || !w->path || sr_k8s_http_init(&w->http, &f->set.http, &f->stop) < 0 ||
        sr_k8s_lines_init(&w->lines, MAX_EVENT_LINE) < 0)
        return -1;
    return 0;
}

/* One watcher per namespace (their threads start later). Returns 0 or -1. */
static int add_watchers(struct finder *f)
{
    f->w = calloc(f->set.namespaces.n, sizeof(*f->w));
    if (!f->w) return -1;
    while (f->n_w < f->set.namespaces.n) {
        struct watcher *w = &f->w[f->n_w++]; /* counted first: finder_free frees a partial one */
        if (watcher_init(f, w, f->set.namespaces.v[f->n_w - 1]) < 0) return -1;
    }
    return 0;
}

int sr_k8s_finder_start(const struct sr_k8s_config *cfg, sr_nodes_publish_fn publish, void *arg)
{
    struct finder *f;
    pthread_condattr_t ca;
    sigset_t all, old;
    size_t i;

    if (g_finder) {
        SR_ERROR("k8s", "finder already running");
        return -1;
    }
    if (sr_k8s_http_global_init() < 0) return -1;
    f = calloc(1, sizeof(*f));
    if (!f) return -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    f->kind = cfg->kind;
    f->port = cfg->extra_port;
    f->publish = publish;
    f->arg = arg;
    if (sr_k8s_settings_resolve(&f->set, cfg) < 0 || add_watchers(f) < 0) goto fail;

    atomic_store(&st_updates, 0);
    atomic_store(&st_errors, 0);
    atomic_store(&st_relists, 0);
    atomic_store(&st_nodes, 0);

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < f->n_w; i++) {
        if (pthread_create(&f->w[i].thread, NULL, watcher_main, &f->w[i]) != 0) break;
        f->w[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    g_finder = f;
    if (i < f->n_w) {
        SR_ERROR("k8s", "cannot start a watcher thread");
        sr_k8s_finder_stop();
        return -1;
    }
    SR_INFO("k8s", "watching %s labelled '%s'%s%s%s in %zu namespace(s) on %s, port %u",
            kind_name(f), cfg->label_selector, empty(cfg->field_selector) ? "" : " with fields '",
            empty(cfg->field_selector) ? "" : cfg->field_selector,
            empty(cfg->field_selector) ? "" : "'", f->n_w, f->set.base_url, (unsigned)f->port);
    return 0;
fail:
    finder_free(f);
    return -1;
}

void sr_k8s_finder_stop(void)
{
    struct finder *f = g_finder;
    if (!f) return;
    atomic_store_explicit(&f->stop, true, memory_order_release);
    pthread_mutex_lock(&f->mu);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < f->n_w; i++) sr_k8s_http_wakeup(&f->w[i].http);
    for (size_t i = 0; i < f->n_w; i++)
        if (f->w[i].started) pthread_join(f->w[i].thread, NULL);
    g_finder = NULL;
    finder_free(f);
}

void sr_k8s_finder_stats(struct sr_discovery_stats *out)
{
    out->updates = atomic_load_explicit(&st_updates, memory_order_relaxed);
    out->errors = atomic_load_explicit(&st_errors, memory_order_relaxed);
    out->relists = atomic_load_explicit(&st_relists, memory_order_relaxed);
    out->nodes = atomic_load_explicit(&st_nodes, memory_order_relaxed);
}
