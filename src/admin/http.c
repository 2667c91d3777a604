/* The admin HTTP port: a deliberately small HTTP/1.1 server on the main
 * thread's libuv loop, for Prometheus scrapes and Kubernetes probes.
 *
 * One request per connection: read until the end of the headers, answer with
 * Content-Length and "Connection: close", half-close (FIN), then wait for the
 * client to close before closing ourselves. Closing at once could reset the
 * connection (RST) when the client sent more than we read, and a reset may
 * destroy the response in flight; waiting is bounded by the same timer.
 *
 * Bounded so that the port cannot hurt the relay, and so that one client
 * cannot keep kubelet's probes from being answered (telemetry.admin.*):
 *   - at most max_connections_per_peer connections from one IP address: more
 *     are accepted and closed at once;
 *   - at most max_connections in all: a new connection then closes the oldest
 *     one that is still sending its request or already answered (a probe needs
 *     a millisecond, so what is old is idle or slow), and is refused only when
 *     every connection is busy writing a response;
 *   - the request head (at most MAX_HEAD bytes, else 431) must be complete
 *     within header_timeout of the accept, however slowly it trickles in; the
 *     write and the wait for the client's close get WRITE_TIMEOUT_MS, then
 *     header_timeout.
 * Each refusal and close is counted (sr_admin_stats, /metrics). /metrics
 * may require a bearer token (telemetry.admin.token); /healthz and /readyz
 * never do, since probes cannot send one. The request head is parsed by the
 * pure function in http_parse.c (fuzzed). The data path never sees any of
 * it: a scrape reads the counters the workers keep anyway. */
#include <netdb.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "skyrelay/admin.h"
#include "skyrelay/log.h"

#define MAX_HEAD 8192
#define WRITE_TIMEOUT_MS 10000
/* used until a config is there (tests start the port without one) */
#define DEFAULT_MAX_CONNS 64
#define DEFAULT_MAX_PER_PEER 16
#define DEFAULT_HEADER_TIMEOUT_MS 2000

enum conn_state {
    C_READING,    /* collecting the request head */
    C_RESPONDING, /* response being written */
    C_LINGERING,  /* response written and FIN sent: waiting for the client's close */
};

/* A peer's IP address (an IPv4-mapped IPv6 address counts as the IPv4 one). */
struct peer {
    int family; /* AF_INET, AF_INET6, 0 = unknown */
    uint8_t addr[16];
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    uv_shutdown_t shutdown;
    struct conn *prev, *next;
    enum conn_state state;
    int open_handles; /* freed when both tcp and timer have closed */
    bool closing;
    bool listed; /* in admin.conns (a refused connection never is) */
    bool peer_eof;
    struct peer peer;
    uint64_t seq; /* accept order: the lowest is the oldest */
    size_t len;
    char head[MAX_HEAD];
    char status[256]; /* response status line and headers */
    char *body;       /* owned (malloc) or static, see body_owned */
    size_t body_len;
    bool body_owned;
};

static struct {
    uv_loop_t *loop;
    struct sr_runtime *rt;
    uv_tcp_t listener;
    bool listening;
    struct conn *conns;
    unsigned n_conns;
    uint64_t next_seq;
    struct {
        _Atomic uint64_t refused_peer, refused_total, evicted, header_timeout, unauthorized;
    } st;
} admin;

/* ---- settings (read per connection: a reloaded config applies to the next one) ---- */

static const struct sr_config *cfg_of(void)
{
    return admin.rt ? admin.rt->cfg : NULL;
}

static uint32_t header_timeout_ms(void)
{
    const struct sr_config *cfg = cfg_of();
    return cfg && cfg->telemetry.admin.header_timeout_ms ? cfg->telemetry.admin.header_timeout_ms
                                                         : DEFAULT_HEADER_TIMEOUT_MS;
}

static unsigned max_conns(void)
{
    const struct sr_config *cfg = cfg_of();
    return cfg && cfg->telemetry.admin.max_connections ? cfg->telemetry.admin.max_connections
                                                       : DEFAULT_MAX_CONNS;
}

static unsigned max_per_peer(void)
{
    const struct sr_config *cfg = cfg_of();
    return cfg && cfg->telemetry.admin.max_connections_per_peer
               ? cfg->telemetry.admin.max_connections_per_peer
               : DEFAULT_MAX_PER_PEER;
}

/* ---- connection lifetime ---- */

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0) return;
    if (c->body_owned) free(c->body);
    free(c);
}

static void close_handle(struct conn *c, uv_handle_t *h)
{
    /* A uv_walk over the loop (main's teardown) may have closed it already:
     * then the conn is never freed, which only happens at exit. */
    if (!uv_is_closing(h)) uv_close(h, on_conn_handle_closed);
}

static void conn_close(struct conn *c)
{
    if (c->closing) return;
    c->closing = true;
    if (c->listed) {
        if (c->prev)
            c->prev->next = c->next;
        else
            admin.conns = c->next;
        if (c->next) c->next->prev = c->prev;
        admin.n_conns--;
    }
    close_handle(c, (uv_handle_t *)&c->tcp);
    close_handle(c, (uv_handle_t *)&c->timer);
}

static void on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == C_READING) {
        atomic_fetch_add_explicit(&admin.st.header_timeout, 1, memory_order_relaxed);
        SR_LOG_RL(SR_LOG_WARN, "admin", "request head not complete within %u ms: closing",
                  header_timeout_ms());
    }
    conn_close(c);
}

/* ---- response ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing) return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    c->state = C_LINGERING; /* on_read closes on the client's EOF; the timer bounds it */
    uv_timer_start(&c->timer, on_timeout, header_timeout_ms(), 0);
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing) return;
    if (status < 0 || uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

/* Sends the response; takes `body` when `owned` (free()d with the conn). */
static void respond(struct conn *c, int code, const char *reason, const char *type,
                    const char *extra_headers, char *body, size_t body_len, bool owned)
{
    uv_buf_t bufs[2];
    int n = snprintf(c->status, sizeof(c->status),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, type, body_len, extra_headers ? extra_headers : "");
    c->body = body;
    c->body_len = body_len;
    c->body_owned = owned;
    c->state = C_RESPONDING;
    uv_timer_start(&c->timer, on_timeout, WRITE_TIMEOUT_MS, 0); /* a fresh budget to write */
    bufs[0] = uv_buf_init(c->status, (unsigned)n);
    bufs[1] = uv_buf_init(body, (unsigned)body_len);
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_written) != 0)
        conn_close(c);
}

static void respond_text(struct conn *c, int code, const char *reason, const char *text,
                         const char *extra_headers)
{
    respond(c, code, reason, "text/plain; charset=utf-8", extra_headers, (char *)text,
            strlen(text), false);
}

static bool path_is(const struct sr_admin_request *r, const char *path)
{
    return r->path_len == strlen(path) && memcmp(r->path, path, r->path_len) == 0;
}

/* The head is complete (c->head[0..c->len) ends with CRLFCRLF): route it. */
static void handle_request(struct conn *c)
{
    struct sr_admin_request req;
    const struct sr_config *cfg = cfg_of();

    if (sr_admin_parse_head(c->head, c->len, &req) != 0) {
        respond_text(c, 400, "Bad Request", "bad request\n", NULL);
        return;
    }
    if (req.method_len != 3 || memcmp(req.method, "GET", 3) != 0) {
        respond_text(c, 405, "Method Not Allowed", "method not allowed\n", "Allow: GET\r\n");
        return;
    }
    if (path_is(&req, "/metrics") && cfg && !cfg->telemetry.export_prometheus) {
        respond_text(c, 404, "Not Found", "metrics export is off (telemetry.export)\n", NULL);
    } else if (path_is(&req, "/metrics") &&
               !sr_admin_bearer_ok(&req, cfg ? cfg->telemetry.admin.token : NULL)) {
        atomic_fetch_add_explicit(&admin.st.unauthorized, 1, memory_order_relaxed);
        respond_text(c, 401, "Unauthorized", "missing or wrong bearer token\n",
                     "WWW-Authenticate: Bearer realm=\"skyrelay\"\r\n");
    } else if (path_is(&req, "/metrics")) {
        size_t len = 0;
        char *body = sr_metrics_render(admin.rt, &len);
        if (!body) {
            respond_text(c, 500, "Internal Server Error", "out of memory\n", NULL);
            return;
        }
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, body, len, true);
    } else if (path_is(&req, "/healthz")) {
        respond_text(c, 200, "OK", "ok", NULL);
    } else if (path_is(&req, "/readyz")) {
        if (sr_ready(admin.rt))
            respond_text(c, 200, "OK", "ready", NULL);
        else
            respond_text(c, 503, "Service Unavailable", "not ready", NULL);
    } else {
        respond_text(c, 404, "Not Found", "not found\n", NULL);
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    static char discard[1024]; /* after the head: read and thrown away */
    (void)suggested;
    if (c->state == C_READING)
        *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof(c->head) - c->len));
    else
        *buf = uv_buf_init(discard, sizeof(discard));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    char *end;
    size_t from;
    (void)buf;
    if (c->closing) return;
    if (n < 0) {
        /* EOF or error. While responding, the write still goes on: a client
         * may half-close after its request. */
        if (c->state == C_RESPONDING && n == UV_EOF) {
            c->peer_eof = true;
            uv_read_stop(s);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->state != C_READING || n == 0) return;
    /* search from 3 bytes before the new data: the terminator may straddle reads */
    from = c->len > 3 ? c->len - 3 : 0;
    c->len += (size_t)n;
    end = memmem(c->head + from, c->len - from, "\r\n\r\n", 4);
    if (end) {
        handle_request(c);
        return;
    }
    if (c->len == sizeof(c->head))
        respond_text(c, 431, "Request Header Fields Too Large", "request head too large\n",
                     NULL);
}

/* ---- listener ---- */

static void peer_of(uv_tcp_t *t, struct peer *p)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(p, 0, sizeof(*p));
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        p->family = AF_INET;
        memcpy(p->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            p->family = AF_INET;
            memcpy(p->addr, a->s6_addr + 12, 4);
        } else {
            p->family = AF_INET6;
            memcpy(p->addr, a->s6_addr, 16);
        }
    }
}

static unsigned count_peer(const struct peer *p)
{
    unsigned n = 0;
    if (p->family == 0) return 0; /* unknown: only the total cap applies */
    for (const struct conn *c = admin.conns; c; c = c->next)
        if (c->peer.family == p->family && memcmp(c->peer.addr, p->addr, 16) == 0) n++;
    return n;
}

/* The oldest connection that is still reading its request or already answered. */
static struct conn *oldest_idle(void)
{
    struct conn *best = NULL;
    for (struct conn *c = admin.conns; c; c = c->next)
        if (c->state != C_RESPONDING && (!best || c->seq < best->seq)) best = c;
    return best;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;
    char why[64];

    if (status < 0) {
        SR_LOG_RL(SR_LOG_WARN, "admin", "accept: %s", uv_strerror(status));
        return;
    }
    /* accepted even when it is refused: left in the backlog, libuv would only call back again */
    c = calloc(1, sizeof(*c));
    if (!c) return;
    uv_tcp_init(admin.loop, &c->tcp);
    uv_timer_init(admin.loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->write.data = c;
    c->shutdown.data = c;
    c->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    peer_of(&c->tcp, &c->peer);
    if (count_peer(&c->peer) >= max_per_peer()) {
        atomic_fetch_add_explicit(&admin.st.refused_peer, 1, memory_order_relaxed);
        SR_LOG_RL(SR_LOG_WARN, "admin", "%u admin connections from %s: closing a new one",
                  max_per_peer(),
                  uv_inet_ntop(c->peer.family, c->peer.addr, why, sizeof why) == 0 ? why : "?");
        conn_close(c);
        return;
    }
    if (admin.n_conns >= max_conns()) {
        struct conn *old = oldest_idle();
        if (!old) {
            atomic_fetch_add_explicit(&admin.st.refused_total, 1, memory_order_relaxed);
            SR_LOG_RL(SR_LOG_WARN, "admin", "%u admin connections busy: closing a new one",
                      max_conns());
            conn_close(c);
            return;
        }
        atomic_fetch_add_explicit(&admin.st.evicted, 1, memory_order_relaxed);
        SR_LOG_RL(SR_LOG_WARN, "admin", "%u admin connections open: closing the oldest idle one",
                  max_conns());
        conn_close(old);
    }
    c->seq = admin.next_seq++;
    c->listed = true;
    c->next = admin.conns;
    if (admin.conns) admin.conns->prev = c;
    admin.conns = c;
    admin.n_conns++;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* from the accept, not from the last byte: a client trickling its head is not renewed */
    uv_timer_start(&c->timer, on_timeout, header_timeout_ms(), 0);
}

void sr_admin_stats(struct sr_admin_stats *out)
{
    out->open = admin.n_conns;
    out->refused_peer_limit = atomic_load_explicit(&admin.st.refused_peer, memory_order_relaxed);
    out->refused_total_limit = atomic_load_explicit(&admin.st.refused_total, memory_order_relaxed);
    out->evicted = atomic_load_explicit(&admin.st.evicted, memory_order_relaxed);
    out->header_timeouts = atomic_load_explicit(&admin.st.header_timeout, memory_order_relaxed);
    out->unauthorized = atomic_load_explicit(&admin.st.unauthorized, memory_order_relaxed);
}

/* "host:port", ":port" (every interface), "[v6]:port". A host that is not a
 * numeric address is resolved (at startup, so blocking is fine). */
static int parse_address(const char *address, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon, *h = address;
    size_t hlen;
    char *endp;
    long port;
    int rc = -1;

    if (address[0] == '[') {
        const char *rb = strchr(address, ']');
        if (!rb || rb[1] != ':') return -1;
        h = address + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon) return -1;
        hlen = (size_t)(colon - address);
    }
    if (hlen >= sizeof(host)) return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    port = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || port < 0 || port > 65535) return -1;
    if (host[0] == '\0' || strcmp(host, "*") == 0) strcpy(host, "0.0.0.0");

    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
    {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &res) == 0 && res &&
            res->ai_addrlen <= sizeof(*ss)) {
            memcpy(ss, res->ai_addr, res->ai_addrlen);
            if (ss->ss_family == AF_INET)
                ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
            rc = 0;
        }
        if (res) freeaddrinfo(res);
    }
    return rc;
}

int sr_admin_start(uv_loop_t *loop, const char *address, struct sr_runtime *rt)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss), rc;

    if (admin.listening) return -1;
    if (!address || parse_address(address, &ss) != 0) {
        SR_ERROR("admin", "invalid admin address '%s' (expected host:port, :port or [v6]:port)",
                 address ? address : "");
        return -1;
    }
    admin.loop = loop;
    admin.rt = rt;
    admin.conns = NULL;
    admin.n_conns = 0;
    uv_tcp_init(loop, &admin.listener);
    admin.listening = true;
    if ((rc = uv_tcp_bind(&admin.listener, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&admin.listener, 128, on_connection)) != 0 ||
        (rc = uv_tcp_getsockname(&admin.listener, (struct sockaddr *)&ss, &namelen)) != 0) {
        SR_ERROR("admin", "cannot listen on %s: %s", address, uv_strerror(rc));
        sr_admin_stop();
        return -1;
    }
    rc = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);
    SR_INFO("admin", "admin HTTP on %s (port %d): /metrics /healthz /readyz", address, rc);
    return rc;
}

void sr_admin_stop(void)
{
    if (!admin.listening) return;
    admin.listening = false;
    while (admin.conns) conn_close(admin.conns);
    /* the handle may have been closed already by a uv_walk over the loop */
    if (!uv_is_closing((uv_handle_t *)&admin.listener))
        uv_close((uv_handle_t *)&admin.listener, NULL);
}
