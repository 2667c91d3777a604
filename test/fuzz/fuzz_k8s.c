/* libFuzzer target: the Kubernetes finder's parsing (src/discovery/k8s_parse.c)
 * and object table (k8s_table.c) on arbitrary bytes, both as a watch stream
 * (newline-delimited events, cut into chunks at positions the input chooses)
 * and as a list answer, the way kubernetes.c reads them. Properties beyond
 * "no crash, no UB, no leak":
 * - the stream splitter hands out the same values however the bytes are cut;
 * - every address read from a Pod or an EndpointSlice is "ip:port" with an IP
 *   literal that formats back to itself;
 * - the table stays a map to sorted, non-empty, duplicate-free sets. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/discovery/k8s_internal.h"

#define PORT 11800

struct run {
    struct sr_k8s_table t;
    uint64_t hash; /* of the values seen, in order: equal for every chunking */
};

static void check_address(const char *a)
{
    char ip[64], again[SR_K8S_ADDR_MAX];
    const char *colon = strrchr(a, ':');
    size_t n;
    if (!colon || strcmp(colon + 1, "11800") != 0) abort();
    n = (size_t)(colon - a);
    if (a[0] == '[') {
        if (n < 3 || a[n - 1] != ']') abort();
        memcpy(ip, a + 1, n - 2);
        ip[n - 2] = '\0';
    } else {
        if (n >= sizeof ip) abort();
        memcpy(ip, a, n);
        ip[n] = '\0';
    }
    if (sr_k8s_format_address(ip, PORT, again, sizeof again) != 0 || strcmp(again, a) != 0)
        abort();
}

static void check_table(const struct sr_k8s_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct sr_k8s_strv *s = &t->v[i].addrs;
        if (s->n == 0) abort();
        for (size_t j = 0; j < s->n; j++) {
            check_address(s->v[j]);
            if (j && strcmp(s->v[j - 1], s->v[j]) >= 0) abort();
        }
    }
}

/* What kubernetes.c does with one object: its addresses as a pod and as a slice. */
static void apply(struct run *r, json_object *obj, bool deleted)
{
    struct sr_k8s_strv addrs = {0};
    char addr[SR_K8S_ADDR_MAX];
    const char *name = sr_k8s_meta_string(obj, "name");
    int rc = sr_k8s_pod_ready_address(obj, PORT, addr, sizeof addr);

    if (rc == 1) {
        check_address(addr);
        if (sr_k8s_strv_add(&addrs, addr) < 0) abort();
    }
    if (sr_k8s_slice_addresses(obj, PORT, &addrs) < 0) abort();
    for (size_t i = 0; i < addrs.n; i++) check_address(addrs.v[i]);
    sr_k8s_strv_sort_unique(&addrs);
    if (name && !deleted) {
        if (sr_k8s_table_set(&r->t, name, &addrs) < 0) abort();
        memset(&addrs, 0, sizeof addrs); /* taken by the table */
    } else if (name) {
        (void)sr_k8s_table_remove(&r->t, name);
    }
    sr_k8s_strv_clear(&addrs);
    check_table(&r->t);
}

static int on_value(void *arg, json_object *v)
{
    struct run *r = arg;
    enum sr_k8s_event_type type;
    json_object *obj;
    const char *js = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    for (; js && *js; js++) r->hash = (r->hash ^ (unsigned char)*js) * 0x100000001b3ull;
    if (sr_k8s_event_parse(v, &type, &obj) != 0) return 0;
    if (type == SR_K8S_EV_ERROR) {
        const char *msg;
        (void)sr_k8s_status_code(obj, &msg);
        return 0;
    }
    if (type != SR_K8S_EV_BOOKMARK) apply(r, obj, type == SR_K8S_EV_DELETED);
    return 0;
}

/* Feeds d[0..n) in chunks of sizes taken from `cuts`; returns the splitter's result. */
static int stream(const uint8_t *d, size_t n, const uint8_t *cuts, size_t n_cuts, struct run *r)
{
    struct sr_k8s_lines l;
    size_t off = 0, c = 0;
    int rc = 0;
    if (sr_k8s_lines_init(&l, 1u << 16) != 0) abort();
    while (off < n && rc == 0) {
        size_t step = n_cuts ? (size_t)cuts[c++ % n_cuts] + 1 : n - off;
        if (step > n - off) step = n - off;
        rc = sr_k8s_lines_feed(&l, (const char *)d + off, step, on_value, r);
        off += step;
    }
    sr_k8s_lines_deinit(&l);
    return rc;
}

static void list(const uint8_t *d, size_t n)
{
    struct run r = {0};
    json_tokener *tok = json_tokener_new_ex(64);
    json_object *lst, *items = NULL;
    if (!tok) abort();
    lst = json_tokener_parse_ex(tok, (const char *)d, (int)n);
    if (lst && sr_k8s_meta_string(lst, "resourceVersion") &&
        json_object_object_get_ex(lst, "items", &items) &&
        json_object_is_type(items, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(items); i++)
            apply(&r, json_object_array_get_idx(items, i), false);
    }
    if (lst) json_object_put(lst);
    json_tokener_free(tok);
    sr_k8s_table_clear(&r.t);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct run whole = {0}, cut = {0};
    size_t n_cuts;
    int rc_whole, rc_cut;

    if (n == 0 || n > (1u << 20)) return 0;
    /* the first byte says how many of the next bytes are chunk sizes */
    n_cuts = d[0] % 8;
    if (n_cuts + 1 > n) return 0;
    const uint8_t *cuts = d + 1, *body = d + 1 + n_cuts;
    size_t len = n - 1 - n_cuts;

    rc_whole = stream(body, len, NULL, 0, &whole);
    rc_cut = stream(body, len, cuts, n_cuts, &cut);
    if (rc_whole != rc_cut || whole.hash != cut.hash || whole.t.n != cut.t.n) abort();
    sr_k8s_table_clear(&whole.t);
    sr_k8s_table_clear(&cut.t);
    list(body, len);
    return 0;
}
