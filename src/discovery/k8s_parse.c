/* Reading Kubernetes API objects for the Kubernetes finder (kubernetes.c):
 * which Pods and EndpointSlice endpoints count as OAP nodes, watch events, and
 * the newline-delimited JSON stream of a watch. Kept apart from the HTTP code
 * so that test/unit/test_k8s_parse.c can feed it literal API JSON. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_internal.h"

/* ---- string vector ---- */

int sr_k8s_strv_add(struct sr_k8s_strv *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    char *copy = strdup(str);
    if (!copy) return -1;
    s->v[s->n++] = copy;
    return 0;
}

int sr_k8s_strv_extend(struct sr_k8s_strv *s, const struct sr_k8s_strv *from)
{
    size_t before = s->n;
    for (size_t i = 0; i < from->n; i++) {
        if (sr_k8s_strv_add(s, from->v[i]) < 0) {
            while (s->n > before) free(s->v[--s->n]);
            return -1;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sr_k8s_strv_sort_unique(struct sr_k8s_strv *s)
{
    if (s->n < 2) return;
    qsort(s->v, s->n, sizeof(*s->v), cmp_str);
    size_t w = 1;
    for (size_t r = 1; r < s->n; r++) {
        if (strcmp(s->v[r], s->v[w - 1]) == 0)
            free(s->v[r]);
        else
            s->v[w++] = s->v[r];
    }
    s->n = w;
}

bool sr_k8s_strv_equal(const struct sr_k8s_strv *a, const struct sr_k8s_strv *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return false;
    return true;
}

void sr_k8s_strv_clear(struct sr_k8s_strv *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- object readers ---- */

/* obj[key] when it exists and has type `type`, else NULL. A JSON null counts as absent. */
static json_object *get(json_object *obj, const char *key, json_type type)
{
    json_object *v;
    if (!obj || !json_object_is_type(obj, json_type_object)) return NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type)) return NULL;
    return v;
}

static const char *get_string(json_object *obj, const char *key)
{
    json_object *v = get(obj, key, json_type_string);
    return v ? json_object_get_string(v) : NULL;
}

const char *sr_k8s_meta_string(json_object *obj, const char *field)
{
    return get_string(get(obj, "metadata", json_type_object), field);
}

int sr_k8s_format_address(const char *ip, uint32_t port, char *out, size_t n)
{
    unsigned char bin[16];
    int len;
    if (inet_pton(AF_INET, ip, bin) == 1)
        len = snprintf(out, n, "%s:%u", ip, (unsigned)port);
    else if (inet_pton(AF_INET6, ip, bin) == 1)
        len = snprintf(out, n, "[%s]:%u", ip, (unsigned)port);
    else
        return -1;
    return len > 0 && (size_t)len < n ? 0 : -1;
}

static bool pod_condition_ready(json_object *status)
{
    json_object *conds = get(status, "conditions", json_type_array);
    size_t n = conds ? json_object_array_length(conds) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(conds, i);
        const char *type = get_string(c, "type");
        if (type && strcmp(type, "Ready") == 0) {
            const char *st = get_string(c, "status");
            return st && strcmp(st, "True") == 0;
        }
    }
    return false;
}

int sr_k8s_pod_ready_address(json_object *pod, uint32_t port, char *out, size_t n)
{
    json_object *meta = get(pod, "metadata", json_type_object);
    json_object *status = get(pod, "status", json_type_object);
    json_object *deleting;

    /* a terminating pod may still be Ready for its grace period; OAP is shutting down */
    if (meta && json_object_object_get_ex(meta, "deletionTimestamp", &deleting) &&
        !json_object_is_type(deleting, json_type_null))
        return 0;
    const char *phase = get_string(status, "phase");
    const char *ip = get_string(status, "podIP");
    if (!phase || strcmp(phase, "Running") != 0 || !ip || !*ip || !pod_condition_ready(status))
        return 0;
    return sr_k8s_format_address(ip, port, out, n) < 0 ? -1 : 1;
}

int sr_k8s_slice_addresses(json_object *slice, uint32_t port, struct sr_k8s_strv *out)
{
    const char *type = get_string(slice, "addressType");
    json_object *eps = get(slice, "endpoints", json_type_array);
    char addr[SR_K8S_ADDR_MAX];
    int added = 0;

    if (!type || (strcmp(type, "IPv4") != 0 && strcmp(type, "IPv6") != 0)) return 0;
    size_t n = eps ? json_object_array_length(eps) : 0; /* "endpoints": null when empty */
    for (size_t i = 0; i < n; i++) {
        json_object *ep = json_object_array_get_idx(eps, i);
        json_object *ready = get(get(ep, "conditions", json_type_object), "ready",
                                 json_type_boolean);
        if (ready && !json_object_get_boolean(ready)) continue;
        json_object *addrs = get(ep, "addresses", json_type_array);
        size_t na = addrs ? json_object_array_length(addrs) : 0;
        for (size_t k = 0; k < na; k++) {
            json_object *a = json_object_array_get_idx(addrs, k);
            if (!json_object_is_type(a, json_type_string)) continue;
            if (sr_k8s_format_address(json_object_get_string(a), port, addr, sizeof addr) < 0)
                continue;
            if (sr_k8s_strv_add(out, addr) < 0) return -1;
            added++;
        }
    }
    return added;
}

int sr_k8s_event_parse(json_object *ev, enum sr_k8s_event_type *type, json_object **object)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    const char *t = get_string(ev, "type");
    json_object *obj = get(ev, "object", json_type_object);
    if (!t || !obj) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(t, names[i]) == 0) {
            *type = (enum sr_k8s_event_type)i;
            *object = obj;
            return 0;
        }
    }
    return -1;
}

int sr_k8s_status_code(json_object *status, const char **message)
{
    json_object *code = get(status, "code", json_type_int);
    if (message) *message = get_string(status, "message");
    return code ? (int)json_object_get_int(code) : 0;
}

/* ---- watch stream ---- */

int sr_k8s_lines_init(struct sr_k8s_lines *l, size_t max_line)
{
    memset(l, 0, sizeof(*l));
    l->max = max_line;
    /* Pods carry deep managedFields: allow more nesting than json-c's default 32 */
    l->tok = json_tokener_new_ex(64);
    return l->tok ? 0 : -1;
}

void sr_k8s_lines_reset(struct sr_k8s_lines *l)
{
    sr_buf_reset(&l->line);
}

void sr_k8s_lines_deinit(struct sr_k8s_lines *l)
{
    sr_buf_free(&l->line);
    if (l->tok) json_tokener_free(l->tok);
    memset(l, 0, sizeof(*l));
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* Parses one complete line (without its newline). */
static int parse_line(struct sr_k8s_lines *l, const char *s, size_t n, sr_k8s_line_fn fn,
                      void *arg)
{
    if (blank(s, n)) return 0;
    if (n > (size_t)INT32_MAX) return -1;
    json_tokener_reset(l->tok);
    json_object *v = json_tokener_parse_ex(l->tok, s, (int)n);
    if (!v) return -1; /* invalid, or valid but incomplete: both break the stream */
    size_t end = json_tokener_get_parse_end(l->tok);
    int rc = blank(s + end, n - end) ? 0 : -1;
    if (rc == 0) {
        l->values++;
        rc = fn(arg, v);
    }
    json_object_put(v);
    return rc;
}

static int append(struct sr_k8s_lines *l, const char *data, size_t n)
{
    if (l->line.len + n > l->max) return -1;
    return sr_buf_append(&l->line, data, n);
}

int sr_k8s_lines_feed(struct sr_k8s_lines *l, const char *data, size_t n, sr_k8s_line_fn fn,
                      void *arg)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        if (!nl) return append(l, data, n);
        size_t part = (size_t)(nl - data);
        int rc;
        if (l->line.len == 0) {
            rc = part > l->max ? -1 : parse_line(l, data, part, fn, arg); /* no copy */
        } else {
            rc = append(l, data, part);
            if (rc == 0) rc = parse_line(l, l->line.p, l->line.len, fn, arg);
            sr_buf_reset(&l->line);
        }
        if (rc < 0) return rc;
        data = nl + 1;
        n -= part + 1;
    }
    return 0;
}
