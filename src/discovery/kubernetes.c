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
 *   ERROR 410 (RV too old, "Expired") -> LIST again at once.
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
 * HTTP is libcurl driven through a private multi handle per thread, so that
 * sr_k8s_finder_stop can interrupt a long-poll at once with
 * curl_multi_wakeup (a transfer callback would only notice a flag about once
 * a second). A dead connection is noticed by TCP keepalive and, as a last
 * resort, by a low-speed limit slightly longer than the watch's own timeout.
 * The bearer token is re-read for every request: projected service-account
 * tokens are rotated by the kubelet.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

#ifndef SR_VERSION
#define SR_VERSION "dev"
#endif

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define WATCH_TIMEOUT_S 300
#define LIST_TIMEOUT_S 60
#define CONNECT_TIMEOUT_S 10
#define BACKOFF_INITIAL_MS 1000
#define BACKOFF_MAX_MS 30000
#define MAX_LIST_BODY (64u << 20) /* a PodList of a label selector is far smaller */
#define MAX_EVENT_LINE (16u << 20)
#define MAX_ERROR_BODY 4096       /* kept of a non-200 answer, for its Status message */
#define MAX_TOKEN 65536

enum outcome {
    W_END = 0,  /* the watch ended normally (timeoutSeconds): watch again from RV */
    W_GONE,     /* 410: the RV is too old, list again */
    W_FAIL,     /* error (logged): back off, list again */
    W_STOP,     /* sr_k8s_finder_stop */
};

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* One object (pod or slice) that contributes at least one node address. */
struct object {
    char *name;
    struct sr_k8s_strv addrs;
};

struct table {
    struct object *v;
    size_t n;
    size_t cap;
};

struct finder;

/* One namespace: its thread, curl handles and list/watch state. */
struct watcher {
    struct finder *f;
    char *ns;
    char *path; /* "/api/v1/namespaces/<ns>/pods" */
    pthread_t thread;
    bool started;
    CURLM *multi;
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];

    /* owned by the watcher thread */
    struct table objs;
    char *rv;
    struct sr_k8s_lines lines;
    struct buf body;       /* the list answer, or the start of a non-200 watch answer */
    bool body_truncated;
    enum outcome outcome;  /* set by the watch event handler */
    bool dirty;            /* objs changed since the last hand-over */
    uint64_t events;       /* events of the current watch */

    /* guarded by f->mu */
    struct sr_k8s_strv ready; /* this namespace's node addresses, sorted */
    bool listed;              /* listed successfully at least once */
};

struct finder {
    char *base_url;  /* "https://host:port", no trailing slash */
    char *selectors; /* "labelSelector=...[&fieldSelector=...]", escaped */
    char *token_file;
    bool token_optional; /* the default token path: no Authorization when it is absent */
    char *ca_file;       /* NULL = curl's default CA bundle */
    bool insecure;
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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    /* never cleaned up: curl_global_cleanup is not thread-safe and gRPC shares OpenSSL */
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

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

/* ---- small helpers ---- */

static int buf_append(struct buf *b, const void *data, size_t n, size_t max)
{
    if (b->len + n > max) return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Percent-encodes everything but RFC 3986 unreserved characters. Returns owned or NULL. */
static char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *p = out;
    if (!out) return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

/* Reads a small file and trims surrounding whitespace. Returns owned or NULL (errno set). */
static char *read_trimmed(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (!fp) return NULL;
    char *s = malloc(MAX_TOKEN + 1);
    size_t n = s ? fread(s, 1, MAX_TOKEN, fp) : 0;
    int err = ferror(fp) ? EIO : 0;
    fclose(fp);
    if (!s || err) {
        free(s);
        errno = s ? err : ENOMEM;
        return NULL;
    }
    s[n] = '\0';
    while (n > 0 && strchr(" \t\r\n", s[n - 1])) s[--n] = '\0';
    size_t lead = strspn(s, " \t\r\n");
    memmove(s, s + lead, n - lead + 1);
    return s;
}

static bool readable(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (fp) fclose(fp);
    return fp != NULL;
}

/* A namespace is a DNS label: lower-case alphanumerics and '-', at most 63. */
static bool valid_namespace(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* ---- object table ---- */

static struct object *table_find(struct table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) /* OAP clusters are tens of pods: linear is fine */
        if (strcmp(t->v[i].name, name) == 0) return &t->v[i];
    return NULL;
}

/* Removes name; returns true when it was there. */
static bool table_remove(struct table *t, const char *name)
{
    struct object *o = table_find(t, name);
    if (!o) return false;
    free(o->name);
    sr_k8s_strv_clear(&o->addrs);
    *o = t->v[--t->n];
    return true;
}

/* Sets name's addresses (TAKES *addrs, sorted; an empty set removes the object).
 * Returns 1 when the table changed, 0 when not, -1 out of memory. */
static int table_set(struct table *t, const char *name, struct sr_k8s_strv *addrs)
{
    struct object *o = table_find(t, name);
    int rc;
    if (addrs->n == 0) {
        sr_k8s_strv_clear(addrs);
        return table_remove(t, name) ? 1 : 0;
    }
    if (o) {
        rc = sr_k8s_strv_equal(&o->addrs, addrs) ? 0 : 1;
        sr_k8s_strv_clear(&o->addrs);
        o->addrs = *addrs;
        return rc;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct object *v = realloc(t->v, cap * sizeof(*v));
        if (!v) goto fail;
        t->v = v;
        t->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) goto fail;
    t->v[t->n].name = copy;
    t->v[t->n].addrs = *addrs;
    t->n++;
    return 1;
fail:
    sr_k8s_strv_clear(addrs);
    return -1;
}

static void table_clear(struct table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        sr_k8s_strv_clear(&t->v[i].addrs);
    }
    free(t->v);
    memset(t, 0, sizeof(*t));
}

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

/* ---- HTTP ---- */

static size_t body_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct watcher *w = arg;
    size_t n = size * nmemb;
    if (buf_append(&w->body, data, n, MAX_LIST_BODY) < 0) {
        w->body_truncated = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

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
        if (table_remove(&w->objs, name)) w->dirty = true;
        return 0;
    }
    struct sr_k8s_strv addrs;
    if (object_addresses(w, obj, &addrs) < 0) goto oom;
    int rc = table_set(&w->objs, name, &addrs);
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
    long code = 0;

    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) { /* keep the start of the Status body for the log line */
        size_t room = w->body.len < MAX_ERROR_BODY ? MAX_ERROR_BODY - w->body.len : 0;
        buf_append(&w->body, data, n < room ? n : room, MAX_ERROR_BODY);
        return n;
    }
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

/* Bearer token header, or NULL with *err set when it cannot be read (and is needed). */
static struct curl_slist *request_headers(struct watcher *w, bool *err)
{
    const struct finder *f = w->f;
    struct curl_slist *h = NULL, *t;
    *err = false;
    h = curl_slist_append(NULL, "Accept: application/json");
    if (!h) goto fail;
    if (f->token_file) {
        char *token = read_trimmed(f->token_file);
        if (!token && !(f->token_optional && errno == ENOENT)) {
            SR_LOG_RL(SR_LOG_ERROR, "k8s", "cannot read bearer token %s: %s", f->token_file,
                      strerror(errno));
            goto fail;
        }
        if (token) {
            char *line = xasprintf("Authorization: Bearer %s", token);
            explicit_bzero(token, strlen(token));
            free(token);
            if (!line) goto fail;
            t = curl_slist_append(h, line);
            explicit_bzero(line, strlen(line));
            free(line);
            if (!t) goto fail;
            h = t;
        }
    }
    return h;
fail:
    curl_slist_free_all(h);
    *err = true;
    return NULL;
}

static void request_setup(struct watcher *w, const char *url, bool watch,
                          struct curl_slist *headers)
{
    const struct finder *f = w->f;
    CURL *e = w->easy;

    curl_easy_reset(e); /* keeps the live connection */
    curl_easy_setopt(e, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    /* HTTP/1.1, one connection per namespace: the protocol the tests exercise
     * (the fake API server), and a watch that never shares a connection whose
     * stream limit or GOAWAY could cut it */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "skyrelay/" SR_VERSION);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* big lists come gzip'd */
    if (f->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file);
    if (f->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (watch) {
        /* the server ends a healthy watch after timeoutSeconds; silence well past
         * that means the connection is dead */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)WATCH_TIMEOUT_S + 30);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)WATCH_TIMEOUT_S + 60);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, watch_write);
    } else {
        curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)LIST_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
    }
    curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
    w->errbuf[0] = '\0';
    w->body.len = 0;
    w->body_truncated = false;
}

/* Runs the transfer set up on w->easy until it completes or the finder stops. */
static CURLcode perform(struct watcher *w)
{
    CURLcode res = CURLE_ABORTED_BY_CALLBACK;
    int running = 1;

    if (curl_multi_add_handle(w->multi, w->easy) != CURLM_OK) return CURLE_FAILED_INIT;
    for (;;) {
        if (curl_multi_perform(w->multi, &running) != CURLM_OK) {
            res = CURLE_FAILED_INIT;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m;
            while ((m = curl_multi_info_read(w->multi, &left)))
                if (m->msg == CURLMSG_DONE) res = m->data.result;
            break;
        }
        if (stopping(w->f)) break;
        if (curl_multi_poll(w->multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            res = CURLE_FAILED_INIT;
            break;
        }
    }
    curl_multi_remove_handle(w->multi, w->easy);
    return res;
}

static const char *curl_reason(const struct watcher *w, CURLcode res)
{
    return w->errbuf[0] ? w->errbuf : curl_easy_strerror(res);
}

/* The message of a Status body, or the body itself (bounded). */
static void http_error(struct watcher *w, const char *what, long code)
{
    const char *msg = NULL;
    json_object *st = w->body.len ? json_tokener_parse(w->body.data) : NULL;
    if (st) sr_k8s_status_code(st, &msg);
    if (!msg) msg = w->body.len ? w->body.data : "(empty body)";
    SR_LOG_RL(SR_LOG_WARN, "k8s", "%s %s in namespace %s: HTTP %ld: %.300s", what,
              kind_name(w->f), w->ns, code, msg);
    if (st) json_object_put(st);
}

/* LIST: replaces the object table and RV. Returns 0, -1 (error, logged) or 1 (stopping). */
static int do_list(struct watcher *w)
{
    struct finder *f = w->f;
    struct table fresh = {0};
    json_object *list = NULL;
    bool hdr_err;
    long code = 0;
    int rc = -1;

    char *url = xasprintf("%s%s?%s", f->base_url, w->path, f->selectors);
    struct curl_slist *headers = request_headers(w, &hdr_err);
    if (!url || hdr_err) goto out;
    request_setup(w, url, false, headers);
    CURLcode res = perform(w);
    if (stopping(f)) {
        rc = 1;
        goto out;
    }
    if (res != CURLE_OK) {
        SR_LOG_RL(SR_LOG_WARN, "k8s", "list %s in namespace %s: %s", kind_name(f), w->ns,
                  w->body_truncated ? "answer too large" : curl_reason(w, res));
        goto out;
    }
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        http_error(w, "list", code);
        goto out;
    }

    json_tokener *tok = w->lines.tok;
    json_tokener_reset(tok);
    list = json_tokener_parse_ex(tok, w->body.data ? w->body.data : "", (int)w->body.len);
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
        if (object_addresses(w, obj, &addrs) < 0 || table_set(&fresh, name, &addrs) < 0) {
            SR_LOG_RL(SR_LOG_ERROR, "k8s", "namespace %s: out of memory reading the list", w->ns);
            goto out;
        }
    }
    if (set_rv(w, rv) < 0) goto out;
    table_clear(&w->objs);
    w->objs = fresh;
    memset(&fresh, 0, sizeof(fresh));
    SR_INFO("k8s", "namespace %s: %zu %s listed, %zu with ready addresses (resourceVersion %s)",
            w->ns, n, kind_name(f), w->objs.n, w->rv);
    hand_over(w, true);
    rc = 0;
out:
    if (list) json_object_put(list);
    table_clear(&fresh);
    curl_slist_free_all(headers);
    free(url);
    return rc;
}

/* WATCH from w->rv until the server ends it, it fails, or the finder stops. */
static enum outcome do_watch(struct watcher *w)
{
    struct finder *f = w->f;
    enum outcome out = W_FAIL;
    bool hdr_err;
    long code = 0;

    char *rv = url_escape(w->rv);
    char *url = rv ? xasprintf("%s%s?%s&watch=1&resourceVersion=%s&allowWatchBookmarks=true"
                               "&timeoutSeconds=%d",
                               f->base_url, w->path, f->selectors, rv, WATCH_TIMEOUT_S)
                   : NULL;
    struct curl_slist *headers = request_headers(w, &hdr_err);
    if (!url || hdr_err) goto done;
    request_setup(w, url, true, headers);
    sr_k8s_lines_reset(&w->lines);
    w->outcome = W_END;
    w->events = 0;
    int64_t started = now_ms();
    CURLcode res = perform(w);
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
                  curl_reason(w, res));
        goto done;
    }
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code == 410) {
        SR_INFO("k8s", "namespace %s: watch answered 410 Gone, listing again", w->ns);
        out = W_GONE;
    } else if (code != 200) {
        http_error(w, "watch", code);
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
    curl_slist_free_all(headers);
    free(url);
    free(rv);
    return out;
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;
    struct finder *f = w->f;
    uint32_t backoff = 0;
    bool need_list = true;

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
            continue;
        case W_GONE:
            need_list = true;
            continue;
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
        if (w->easy) curl_easy_cleanup(w->easy);
        if (w->multi) curl_multi_cleanup(w->multi);
        table_clear(&w->objs);
        sr_k8s_lines_deinit(&w->lines);
        sr_k8s_strv_clear(&w->ready);
        free(w->body.data);
        free(w->rv);
        free(w->path);
        free(w->ns);
    }
    free(f->w);
    sr_k8s_strv_clear(&f->published);
    free(f->base_url);
    free(f->selectors);
    free(f->token_file);
    free(f->ca_file);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static bool empty(const char *s)
{
    return !s || !*s;
}

static int resolve_server(struct finder *f, const struct sr_k8s_config *cfg)
{
    if (!empty(cfg->api_server)) {
        if (strncmp(cfg->api_server, "https://", 8) != 0 &&
            strncmp(cfg->api_server, "http://", 7) != 0) {
            SR_ERROR("k8s", "upstream.kubernetes.api_server: must start with https:// or http://");
            return -1;
        }
        f->base_url = strdup(cfg->api_server);
        if (!f->base_url) return -1;
        size_t n = strlen(f->base_url);
        while (n > 0 && f->base_url[n - 1] == '/') f->base_url[--n] = '\0';
        return 0;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (empty(host)) {
        SR_ERROR("k8s", "upstream.kubernetes.api_server is empty and KUBERNETES_SERVICE_HOST is "
                        "not set (not running in a pod?)");
        return -1;
    }
    bool v6 = strchr(host, ':') != NULL;
    f->base_url = xasprintf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                            empty(port) ? "443" : port);
    return f->base_url ? 0 : -1;
}

static int resolve_credentials(struct finder *f, const struct sr_k8s_config *cfg)
{
    if (!empty(cfg->bearer_token_file)) {
        if (!readable(cfg->bearer_token_file)) {
            SR_ERROR("k8s", "upstream.kubernetes.bearer_token_file: cannot read %s: %s",
                     cfg->bearer_token_file, strerror(errno));
            return -1;
        }
        f->token_file = strdup(cfg->bearer_token_file);
    } else {
        /* outside a pod (kubectl proxy) there is no token and none is needed */
        f->token_file = strdup(SA_DIR "/token");
        f->token_optional = true;
    }
    if (!f->token_file) return -1;

    if (!empty(cfg->ca_file)) {
        if (!readable(cfg->ca_file)) {
            SR_ERROR("k8s", "upstream.kubernetes.ca_file: cannot read %s: %s", cfg->ca_file,
                     strerror(errno));
            return -1;
        }
        f->ca_file = strdup(cfg->ca_file);
        if (!f->ca_file) return -1;
    } else if (readable(SA_DIR "/ca.crt")) {
        f->ca_file = strdup(SA_DIR "/ca.crt");
        if (!f->ca_file) return -1;
    }
    f->insecure = cfg->insecure_skip_verify;
    return 0;
}

static int resolve_selectors(struct finder *f, const struct sr_k8s_config *cfg)
{
    if (empty(cfg->label_selector)) {
        SR_ERROR("k8s", "upstream.kubernetes.label_selector: required with finder kubernetes "
                        "(e.g. app=oap)");
        return -1;
    }
    char *label = url_escape(cfg->label_selector);
    char *field = empty(cfg->field_selector) ? NULL : url_escape(cfg->field_selector);
    if (label && (field || empty(cfg->field_selector)))
        f->selectors = field ? xasprintf("labelSelector=%s&fieldSelector=%s", label, field)
                             : xasprintf("labelSelector=%s", label);
    free(label);
    free(field);
    return f->selectors ? 0 : -1;
}

static int add_watcher(struct finder *f, const char *ns)
{
    if (!valid_namespace(ns)) {
        SR_ERROR("k8s", "upstream.kubernetes.namespaces: '%s' is not a namespace name", ns);
        return -1;
    }
    for (size_t i = 0; i < f->n_w; i++)
        if (strcmp(f->w[i].ns, ns) == 0) return 0;
    struct watcher *v = realloc(f->w, (f->n_w + 1) * sizeof(*v));
    if (!v) return -1;
    f->w = v;
    struct watcher *w = &f->w[f->n_w++];
    memset(w, 0, sizeof(*w));
    w->ns = strdup(ns);
    w->path = f->kind ? xasprintf("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices", ns)
                      : xasprintf("/api/v1/namespaces/%s/pods", ns);
    w->multi = curl_multi_init();
    w->easy = curl_easy_init();
    if (!w->ns || !w->path || !w->multi || !w->easy ||
        sr_k8s_lines_init(&w->lines, MAX_EVENT_LINE) < 0)
        return -1;
    return 0;
}

static int resolve_namespaces(struct finder *f, const struct sr_k8s_config *cfg)
{
    char *list;
    if (!empty(cfg->namespaces)) {
        list = strdup(cfg->namespaces);
    } else {
        list = read_trimmed(SA_DIR "/namespace");
        if (!list) {
            SR_ERROR("k8s", "upstream.kubernetes.namespaces is empty and %s/namespace cannot be "
                            "read: %s",
                     SA_DIR, strerror(errno));
            return -1;
        }
    }
    if (!list) return -1;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        tok += strspn(tok, " \t");
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t')) tok[--n] = '\0';
        if (n) rc = add_watcher(f, tok);
    }
    free(list);
    if (rc == 0 && f->n_w == 0) {
        SR_ERROR("k8s", "upstream.kubernetes.namespaces: no namespace given");
        rc = -1;
    }
    return rc;
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
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        SR_ERROR("k8s", "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return -1;
    }
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
    if (resolve_selectors(f, cfg) < 0 || resolve_server(f, cfg) < 0 ||
        resolve_credentials(f, cfg) < 0 || resolve_namespaces(f, cfg) < 0)
        goto fail;

    atomic_store(&st_updates, 0);
    atomic_store(&st_errors, 0);
    atomic_store(&st_relists, 0);
    atomic_store(&st_nodes, 0);

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < f->n_w; i++) {
        f->w[i].f = f;
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
            empty(cfg->field_selector) ? "" : "'", f->n_w, f->base_url, (unsigned)f->port);
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
    for (size_t i = 0; i < f->n_w; i++) curl_multi_wakeup(f->w[i].multi);
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
