/* Internals of the Kubernetes finder shared with its unit tests
 * (test/unit/test_k8s_parse.c): reading Pod and EndpointSlice JSON, splitting a
 * watch stream into events, and a small string set. No I/O, no curl, no
 * threads: everything here is pure and owned by the caller. */
#ifndef SKYRELAY_K8S_INTERNAL_H
#define SKYRELAY_K8S_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

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
    char *buf;     /* the incomplete last line (owned) */
    size_t len;
    size_t cap;
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

#endif
