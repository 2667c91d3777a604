/* The Kubernetes finder's HTTP client: libcurl handles, TLS (CA file,
 * insecure mode) and bearer-token settings, request building and the bounded
 * body buffer. Separate from kubernetes.c so that the list/watch loop reads
 * as Kubernetes logic, and what talks to libcurl sits in one place.
 *
 * Each namespace thread owns one client. Transfers run through a private
 * multi handle rather than curl_easy_perform so that sr_k8s_http_wakeup (from
 * sr_k8s_finder_stop) can interrupt a long-poll at once with
 * curl_multi_wakeup; a transfer callback would only notice a flag about once a
 * second. A dead connection is noticed by TCP keepalive and, as a last resort,
 * by a low-speed limit slightly longer than the watch's own timeout. The
 * bearer token is re-read for every request: projected service-account tokens
 * are rotated by the kubelet.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "k8s_internal.h"
#include "skyrelay/log.h"

#ifndef SR_VERSION
#define SR_VERSION "dev"
#endif

#define LIST_TIMEOUT_S 60
#define CONNECT_TIMEOUT_S 10
#define MAX_LIST_BODY (64u << 20) /* a PodList of a label selector is far smaller */
#define MAX_ERROR_BODY 4096       /* kept of a non-200 answer, for its Status message */
#define MAX_TOKEN 65536

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    /* never cleaned up: curl_global_cleanup is not thread-safe and gRPC shares OpenSSL */
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sr_k8s_http_global_init(void)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        SR_ERROR("k8s", "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return -1;
    }
    return 0;
}

/* ---- small helpers ---- */

static int buf_append(struct sr_buf *b, const void *data, size_t n, size_t max)
{
    if (b->len + n > max) return -1;
    return sr_buf_append(b, data, n);
}

char *sr_k8s_url_escape(const char *s)
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

char *sr_k8s_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *sr_k8s_read_trimmed(const char *path)
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

/* ---- client ---- */

int sr_k8s_http_init(struct sr_k8s_http *h, const struct sr_k8s_http_conf *conf,
                     const atomic_bool *stop)
{
    h->conf = conf;
    h->stop = stop;
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    return h->multi && h->easy ? 0 : -1;
}

void sr_k8s_http_deinit(struct sr_k8s_http *h)
{
    if (h->easy) curl_easy_cleanup(h->easy);
    if (h->multi) curl_multi_cleanup(h->multi);
    sr_buf_free(&h->body);
    memset(h, 0, sizeof(*h));
}

void sr_k8s_http_wakeup(struct sr_k8s_http *h)
{
    if (h->multi) curl_multi_wakeup(h->multi);
}

static bool stopping(const struct sr_k8s_http *h)
{
    return atomic_load_explicit(h->stop, memory_order_acquire);
}

static size_t body_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sr_k8s_http *h = arg;
    size_t n = size * nmemb;
    if (buf_append(&h->body, data, n, MAX_LIST_BODY) < 0) {
        h->body_truncated = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

/* Accept and bearer token headers, or NULL with *err set when the token
 * cannot be read (and is needed). */
static struct curl_slist *request_headers(const struct sr_k8s_http_conf *c, bool *err)
{
    struct curl_slist *h = NULL, *t;
    *err = false;
    h = curl_slist_append(NULL, "Accept: application/json");
    if (!h) goto fail;
    if (c->token_file) {
        char *token = sr_k8s_read_trimmed(c->token_file);
        if (!token && !(c->token_optional && errno == ENOENT)) {
            SR_LOG_RL(SR_LOG_ERROR, "k8s", "cannot read bearer token %s: %s", c->token_file,
                      strerror(errno));
            goto fail;
        }
        if (token) {
            char *line = sr_k8s_asprintf("Authorization: Bearer %s", token);
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

static void request_setup(struct sr_k8s_http *h, const char *url, curl_write_callback stream,
                          void *arg, struct curl_slist *headers)
{
    const struct sr_k8s_http_conf *c = h->conf;
    CURL *e = h->easy;

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
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* big lists come gzip'd */
    if (c->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (stream) {
        /* the server ends a healthy watch after timeoutSeconds; silence well past
         * that means the connection is dead */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)SR_K8S_WATCH_TIMEOUT_S + 30);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)SR_K8S_WATCH_TIMEOUT_S + 60);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stream);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, arg);
    } else {
        curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)LIST_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    }
    h->errbuf[0] = '\0';
    sr_buf_reset(&h->body);
    h->body_truncated = false;
}

/* Runs the transfer set up on h->easy until it completes or the finder stops. */
static CURLcode perform(struct sr_k8s_http *h)
{
    CURLcode res = CURLE_ABORTED_BY_CALLBACK;
    int running = 1;

    if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) return CURLE_FAILED_INIT;
    for (;;) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            res = CURLE_FAILED_INIT;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m;
            while ((m = curl_multi_info_read(h->multi, &left)))
                if (m->msg == CURLMSG_DONE) res = m->data.result;
            break;
        }
        if (stopping(h)) break;
        if (curl_multi_poll(h->multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            res = CURLE_FAILED_INIT;
            break;
        }
    }
    curl_multi_remove_handle(h->multi, h->easy);
    return res;
}

int sr_k8s_http_get(struct sr_k8s_http *h, const char *url, curl_write_callback stream, void *arg,
                    CURLcode *res)
{
    bool hdr_err;
    struct curl_slist *headers = request_headers(h->conf, &hdr_err);
    if (hdr_err) return -1;
    request_setup(h, url, stream, arg, headers);
    *res = perform(h);
    curl_slist_free_all(headers);
    return 0;
}

long sr_k8s_http_status(struct sr_k8s_http *h)
{
    long code = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

const char *sr_k8s_http_reason(const struct sr_k8s_http *h, CURLcode res)
{
    return h->errbuf[0] ? h->errbuf : curl_easy_strerror(res);
}

bool sr_k8s_http_error_body(struct sr_k8s_http *h, const char *data, size_t n)
{
    if (sr_k8s_http_status(h) == 200) return false;
    size_t room = h->body.len < MAX_ERROR_BODY ? MAX_ERROR_BODY - h->body.len : 0;
    buf_append(&h->body, data, n < room ? n : room, MAX_ERROR_BODY);
    return true;
}

void sr_k8s_http_log_error(struct sr_k8s_http *h, const char *what, const char *kind,
                           const char *ns, long code)
{
    const char *msg = NULL;
    json_object *st = h->body.len ? json_tokener_parse(h->body.p) : NULL;
    if (st) sr_k8s_status_code(st, &msg);
    if (!msg) msg = h->body.len ? h->body.p : "(empty body)";
    SR_LOG_RL(SR_LOG_WARN, "k8s", "%s %s in namespace %s: HTTP %ld: %.300s", what, kind, ns, code,
              msg);
    if (st) json_object_put(st);
}
