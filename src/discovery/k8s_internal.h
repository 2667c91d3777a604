/* Internals of the Kubernetes finder, shared between its files and with its
 * unit tests (test/unit/test_k8s_parse.c):
 *   - k8s_parse.c: reading Pod and EndpointSlice JSON, splitting a watch
 *     stream into events, a small string set. Pure: no I/O, no curl, no
 *     threads; everything is owned by the caller.
 *   - k8s_http.c: the HTTP client one namespace thread of kubernetes.c uses
 *     (libcurl handles, TLS and token settings, the body buffer).
 *   - k8s_table.c: a namespace's objects and the addresses each contributes.
 *   - k8s_settings.c: upstream.kubernetes.* and the in-cluster defaults,
 *     checked once at start.
 * Not an API for other modules: the finder's entry points are in
 * include/skyrelay/discovery.h. */
#ifndef SKYRELAY_K8S_INTERNAL_H
#define SKYRELAY_K8S_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "skyrelay/buf.h"

/* Longest node address we build: "[" + IPv6 text (45) + "]:" + port (5) + NUL. */
#define SR_K8S_ADDR_MAX 56

/* ---- string vector (a set once sorted and de-duplicated) ---- */

struct sr_k8s_strv {
    char **v;  /* owned strings */
    size_t n;
    size_t cap;
};

/* Appends a copy of s. Returns 0 or -1 (out of memory). */
int sr_k8s_strv_add(struct sr_k8s_strv *s, const char *str);
/* Appends copies of every string of `from`. Returns 0 or -1 (nothing appended on -1). */
int sr_k8s_strv_extend(struct sr_k8s_strv *s, const struct sr_k8s_strv *from);
/* Sorts (strcmp order) and removes duplicates in place. */
void sr_k8s_strv_sort_unique(struct sr_k8s_strv *s);
/* True when both hold the same strings in the same order. */
bool sr_k8s_strv_equal(const struct sr_k8s_strv *a, const struct sr_k8s_strv *b);
/* Frees the strings and the array and zeroes *s (harmless twice). */
void sr_k8s_strv_clear(struct sr_k8s_strv *s);

/* ---- object readers (all borrow their json_object arguments) ---- */

/* Writes "ip:port" ("[ip]:port" for IPv6) for a literal IP address into out[n].
 * Returns 0, or -1 when ip is not an IPv4/IPv6 literal or out is too small. */
int sr_k8s_format_address(const char *ip, uint32_t port, char *out, size_t n);

/* A Pod counts when it has no metadata.deletionTimestamp, status.phase is
 * "Running", status.podIP is set and its Ready condition has status "True".
 * Returns 1 and writes "podIP:port" to out[n] when it counts, 0 when it does
 * not, -1 when podIP is not an IP literal (the pod is then ignored). */
int sr_k8s_pod_ready_address(json_object *pod, uint32_t port, char *out, size_t n);

/* Appends "addr:port" to *out for every address of every endpoint of an
 * EndpointSlice (discovery.k8s.io/v1) whose conditions.ready is true or absent
 * (the API says nil means ready). Only addressType IPv4 and IPv6 are used
 * (FQDN slices are skipped; invalid addresses too). Returns the number of
 * addresses appended (>= 0) or -1 (out of memory; *out may be partly
 * extended). */
int sr_k8s_slice_addresses(json_object *slice, uint32_t port, struct sr_k8s_strv *out);

/* Returns obj.metadata.<field> as a string (borrowed from obj) or NULL. */
const char *sr_k8s_meta_string(json_object *obj, const char *field);

/* Watch event types. */
enum sr_k8s_event_type {
    SR_K8S_EV_ADDED = 0,
    SR_K8S_EV_MODIFIED,
    SR_K8S_EV_DELETED,
    SR_K8S_EV_BOOKMARK,
    SR_K8S_EV_ERROR,
};

/* Reads a watch event {"type": ..., "object": {...}}. On success sets *type
 * and *object (borrowed from ev) and returns 0; returns -1 for a line that is
 * not a watch event (unknown type, no object). */
int sr_k8s_event_parse(json_object *ev, enum sr_k8s_event_type *type, json_object **object);

/* For an ERROR event's object (a meta/v1 Status): returns its `code` (410 for
 * an expired resourceVersion), or 0 when there is none. *message (borrowed,
 * may be NULL) gets its message. */
int sr_k8s_status_code(json_object *status, const char **message);

/* ---- watch stream: newline-delimited JSON split across arbitrary chunks ---- */

/* Called with each complete JSON value (borrowed: valid during the call only).
 * Returns 0 to go on, < 0 to stop feeding (sr_k8s_lines_feed returns it). */
typedef int (*sr_k8s_line_fn)(void *arg, json_object *value);

struct sr_k8s_lines {
    struct sr_buf line; /* the incomplete last line */
    size_t max;    /* a line longer than this fails the stream */
    struct json_tokener *tok;
    uint64_t values; /* complete values handed to the callback */
};

/* Prepares a splitter for lines up to max_line bytes. Returns 0 or -1. */
int sr_k8s_lines_init(struct sr_k8s_lines *l, size_t max_line);
/* Forgets any partial line (a new stream starts). */
void sr_k8s_lines_reset(struct sr_k8s_lines *l);
void sr_k8s_lines_deinit(struct sr_k8s_lines *l);

/* Feeds a chunk of the stream: every complete line is parsed with json-c and
 * handed to fn; the tail after the last newline is kept for the next chunk.
 * Blank lines are skipped. Returns 0; -1 when a line is not valid JSON, is too
 * long, or memory runs out; or fn's negative return value. */
int sr_k8s_lines_feed(struct sr_k8s_lines *l, const char *data, size_t n, sr_k8s_line_fn fn,
                      void *arg);

/* ---- object table (k8s_table.c) ---- */

/* One object (pod or slice) that contributes at least one node address. */
struct sr_k8s_object {
    char *name;               /* owned */
    struct sr_k8s_strv addrs; /* sorted, never empty */
};

/* Object name -> addresses. Linear: OAP clusters are tens of pods. */
struct sr_k8s_table {
    struct sr_k8s_object *v;
    size_t n;
    size_t cap;
};

/* The object called name (borrowed from t: valid until t changes), or NULL. */
struct sr_k8s_object *sr_k8s_table_find(struct sr_k8s_table *t, const char *name);
/* Removes name; returns true when it was there. */
bool sr_k8s_table_remove(struct sr_k8s_table *t, const char *name);
/* Sets name's addresses (TAKES *addrs, sorted; an empty set removes the
 * object). Returns 1 when the table changed, 0 when not, -1 out of memory. */
int sr_k8s_table_set(struct sr_k8s_table *t, const char *name, struct sr_k8s_strv *addrs);
/* Frees everything and zeroes *t (harmless twice). */
void sr_k8s_table_clear(struct sr_k8s_table *t);

/* ---- HTTP client (k8s_http.c) ---- */

/* The server ends a healthy watch after this many seconds (timeoutSeconds);
 * the client gives up on a silent one a little later. */
#define SR_K8S_WATCH_TIMEOUT_S 300

/* How to reach the API server; set before the threads start, read-only after. */
struct sr_k8s_http_conf {
    char *token_file;    /* re-read for every request (tokens are rotated) */
    bool token_optional; /* the default token path: no Authorization when it is absent */
    char *ca_file;       /* NULL = curl's default CA bundle */
    bool insecure;
};

/* One client, used by one thread at a time: a private multi handle (so that
 * sr_k8s_http_wakeup can interrupt a long-poll at once) and one easy handle
 * reused for every request (which keeps the connection). */
struct sr_k8s_http {
    const struct sr_k8s_http_conf *conf; /* borrowed */
    const atomic_bool *stop;             /* borrowed: a transfer ends when it turns true */
    CURLM *multi;
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
    struct sr_buf body;     /* a list's answer, or the start of a non-200 watch answer */
    bool body_truncated;    /* the list answer was too large */
};

/* curl_global_init, once per process (never cleaned up). Returns 0 or -1 (logged).
 * Main thread. */
int sr_k8s_http_global_init(void);

/* Prepares h (conf and stop borrowed: they must outlive h). Returns 0 or -1
 * (out of memory; sr_k8s_http_deinit still required). */
int sr_k8s_http_init(struct sr_k8s_http *h, const struct sr_k8s_http_conf *conf,
                     const atomic_bool *stop);
/* Frees the handles and the body. Harmless on a zeroed h. */
void sr_k8s_http_deinit(struct sr_k8s_http *h);
/* Interrupts a transfer in progress (it then sees *stop). Any thread. */
void sr_k8s_http_wakeup(struct sr_k8s_http *h);

/* GETs url (Accept: application/json, the bearer token if any) and returns
 * when the transfer completes or *stop turns true. With stream NULL this is a
 * list: the answer goes to h->body (bounded; h->body_truncated when it did not
 * fit). Otherwise a watch: the answer goes to stream(data, 1, n, arg), with
 * timeouts past SR_K8S_WATCH_TIMEOUT_S. Returns -1 when no request could be
 * made (token unreadable, out of memory; logged), else 0 with *res set (not
 * CURLE_OK when stopped or failed). The owning thread only. */
int sr_k8s_http_get(struct sr_k8s_http *h, const char *url, curl_write_callback stream, void *arg,
                    CURLcode *res);

/* The HTTP status of the last answer (0 when none). */
long sr_k8s_http_status(struct sr_k8s_http *h);
/* Why a transfer failed: curl's error buffer, or its text for res. Borrowed
 * (valid until the next request). */
const char *sr_k8s_http_reason(const struct sr_k8s_http *h, CURLcode res);

/* For a watch's stream callback: when the answer is not a 200, keeps the start
 * of its body (a meta/v1 Status, for sr_k8s_http_log_error) and returns true;
 * the data is then not a watch stream. Returns false for a 200 answer. */
bool sr_k8s_http_error_body(struct sr_k8s_http *h, const char *data, size_t n);
/* Logs (rate-limited) "<what> <kind> in namespace <ns>: HTTP <code>: <message>"
 * with the Status message of the body, or the body itself (bounded). */
void sr_k8s_http_log_error(struct sr_k8s_http *h, const char *what, const char *kind,
                           const char *ns, long code);

/* Percent-encodes everything but RFC 3986 unreserved characters. Returns owned or NULL. */
char *sr_k8s_url_escape(const char *s);
/* vasprintf. Returns owned or NULL. */
char *sr_k8s_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a small file (a token, a namespace) and trims surrounding whitespace.
 * Returns owned or NULL (errno set). */
char *sr_k8s_read_trimmed(const char *path);

/* ---- settings (k8s_settings.c) ---- */

struct sr_k8s_config;

/* What the finder needs from upstream.kubernetes.* and the in-cluster defaults. */
struct sr_k8s_settings {
    char *base_url;  /* "https://host:port", no trailing slash */
    char *selectors; /* "labelSelector=...[&fieldSelector=...]", escaped */
    struct sr_k8s_http_conf http;
    struct sr_k8s_strv namespaces; /* valid names, in the order given, no duplicates */
};

/* Fills *s from cfg (borrowed), reading the environment and the service
 * account files where cfg leaves a setting empty. Returns 0, or -1 with the
 * reason logged (naming the key); sr_k8s_settings_deinit is needed either
 * way. Main thread. */
int sr_k8s_settings_resolve(struct sr_k8s_settings *s, const struct sr_k8s_config *cfg);
void sr_k8s_settings_deinit(struct sr_k8s_settings *s);

#endif
