/* Unit tests for src/discovery/k8s_parse.c: which Pods and EndpointSlice
 * endpoints become OAP nodes, watch events, and the newline-delimited watch
 * stream cut into arbitrary chunks. The JSON literals follow the shapes the
 * API server sends (core/v1 Pod, discovery.k8s.io/v1 EndpointSlice, meta/v1
 * WatchEvent and Status), trimmed of fields the finder does not read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/discovery/k8s_internal.h"

/* A Running pod; the Ready condition's status and the IP are parameters. */
#define POD(name, phase, ip, ready, extra_meta)                                                   \
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"" name "\","             \
    "\"namespace\":\"skywalking\",\"uid\":\"0a6d1c5e-8f0e-4c8e-9c1a-2b7f1d3e4a5b\","              \
    "\"resourceVersion\":\"48213\",\"creationTimestamp\":\"2024-05-02T09:14:07Z\","              \
    "\"labels\":{\"app\":\"oap\",\"pod-template-hash\":\"6d9f7c8b5\"}" extra_meta "},"          \
    "\"spec\":{\"containers\":[{\"name\":\"oap\",\"image\":\"apache/skywalking-oap-server:10.0.0\"," \
    "\"ports\":[{\"name\":\"grpc\",\"containerPort\":11800,\"protocol\":\"TCP\"}]}]},"           \
    "\"status\":{\"phase\":\"" phase "\",\"conditions\":["                                         \
    "{\"type\":\"PodReadyToStartContainers\",\"status\":\"True\",\"lastProbeTime\":null,"        \
    "\"lastTransitionTime\":\"2024-05-02T09:14:09Z\"},"                                            \
    "{\"type\":\"Initialized\",\"status\":\"True\",\"lastProbeTime\":null,"                      \
    "\"lastTransitionTime\":\"2024-05-02T09:14:07Z\"},"                                            \
    "{\"type\":\"Ready\",\"status\":\"" ready "\",\"lastProbeTime\":null,"                        \
    "\"lastTransitionTime\":\"2024-05-02T09:15:01Z\"},"                                            \
    "{\"type\":\"ContainersReady\",\"status\":\"" ready "\",\"lastProbeTime\":null,"              \
    "\"lastTransitionTime\":\"2024-05-02T09:15:01Z\"},"                                            \
    "{\"type\":\"PodScheduled\",\"status\":\"True\",\"lastProbeTime\":null,"                     \
    "\"lastTransitionTime\":\"2024-05-02T09:14:07Z\"}],"                                           \
    "\"hostIP\":\"172.18.0.3\",\"hostIPs\":[{\"ip\":\"172.18.0.3\"}]" ip ","                      \
    "\"startTime\":\"2024-05-02T09:14:07Z\",\"qosClass\":\"Burstable\"}}"

#define IP(a) ",\"podIP\":\"" a "\",\"podIPs\":[{\"ip\":\"" a "\"}]"

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

/* Returns sr_k8s_pod_ready_address's result for a literal pod, address in out. */
static int pod_address(const char *json, char *out, size_t n)
{
    json_object *pod = parse(json);
    out[0] = '\0';
    int r = sr_k8s_pod_ready_address(pod, 11800, out, n);
    json_object_put(pod);
    return r;
}

/* ---- pods ---- */

static void pod_running_and_ready_gives_ip_and_extra_port(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-0", "Running", IP("10.244.1.17"), "True", ""), addr,
                                 sizeof addr),
                     1);
    assert_string_equal(addr, "10.244.1.17:11800");
}

static void pod_not_ready_counts_for_nothing(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-0", "Running", IP("10.244.1.17"), "False", ""), addr,
                                 sizeof addr),
                     0);
    assert_int_equal(pod_address(POD("oap-0", "Running", IP("10.244.1.17"), "Unknown", ""), addr,
                                 sizeof addr),
                     0);
}

static void pod_pending_without_ip_counts_for_nothing(void **state)
{
    /* what the API server sends for a pod still pulling its image: no podIP at all */
    static const char pending[] =
        "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"oap-1\","
        "\"namespace\":\"skywalking\",\"resourceVersion\":\"48190\",\"labels\":{\"app\":\"oap\"}},"
        "\"spec\":{\"containers\":[{\"name\":\"oap\",\"image\":\"apache/skywalking-oap-server\"}]},"
        "\"status\":{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\","
        "\"status\":\"True\",\"lastProbeTime\":null,"
        "\"lastTransitionTime\":\"2024-05-02T09:14:07Z\"}],\"qosClass\":\"Burstable\"}}";
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(pending, addr, sizeof addr), 0);
    /* Pending with an IP and (oddly) Ready is still not Running */
    assert_int_equal(pod_address(POD("oap-1", "Pending", IP("10.244.1.18"), "True", ""), addr,
                                 sizeof addr),
                     0);
    /* Succeeded/Failed pods keep their IP in status; they must not count */
    assert_int_equal(pod_address(POD("oap-1", "Failed", IP("10.244.1.18"), "False", ""), addr,
                                 sizeof addr),
                     0);
}

static void pod_running_ready_but_empty_ip_counts_for_nothing(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-2", "Running", IP(""), "True", ""), addr, sizeof addr),
                     0);
    assert_int_equal(pod_address(POD("oap-2", "Running", "", "True", ""), addr, sizeof addr), 0);
}

static void pod_terminating_counts_for_nothing_even_while_ready(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-3", "Running", IP("10.244.2.5"), "True",
                                     ",\"deletionTimestamp\":\"2024-05-02T10:00:00Z\","
                                     "\"deletionGracePeriodSeconds\":30"),
                                 addr, sizeof addr),
                     0);
    /* an explicit null is not a deletion */
    assert_int_equal(pod_address(POD("oap-3", "Running", IP("10.244.2.5"), "True",
                                     ",\"deletionTimestamp\":null"),
                                 addr, sizeof addr),
                     1);
}

static void pod_without_ready_condition_counts_for_nothing(void **state)
{
    static const char pod[] =
        "{\"metadata\":{\"name\":\"oap-4\"},\"status\":{\"phase\":\"Running\","
        "\"podIP\":\"10.0.0.4\",\"conditions\":[{\"type\":\"ContainersReady\",\"status\":\"True\"}]}}";
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(pod, addr, sizeof addr), 0);
}

static void pod_ipv6_address_is_bracketed(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-5", "Running", IP("fd00:10:244:1::17"), "True", ""),
                                 addr, sizeof addr),
                     1);
    assert_string_equal(addr, "[fd00:10:244:1::17]:11800");
}

static void pod_ip_that_is_not_an_address_is_rejected(void **state)
{
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(POD("oap-6", "Running", IP("10.0.0.1:80"), "True", ""), addr,
                                 sizeof addr),
                     -1);
    assert_int_equal(pod_address(POD("oap-6", "Running", IP("oap.example"), "True", ""), addr,
                                 sizeof addr),
                     -1);
}

static void pod_address_never_overflows_the_buffer(void **state)
{
    char small[8];
    (void)state;
    assert_int_equal(pod_address(POD("oap-7", "Running", IP("10.244.1.17"), "True", ""), small,
                                 sizeof small),
                     -1);
}

static void pod_with_wrong_field_types_counts_for_nothing(void **state)
{
    static const char pod[] = "{\"metadata\":[],\"status\":{\"phase\":1,\"podIP\":true,"
                              "\"conditions\":{\"type\":\"Ready\"}}}";
    char addr[SR_K8S_ADDR_MAX];
    (void)state;
    assert_int_equal(pod_address(pod, addr, sizeof addr), 0);
    assert_int_equal(pod_address("[]", addr, sizeof addr), 0);
}

/* ---- endpoint slices ---- */

static void slice_keeps_ready_and_absent_conditions_and_drops_not_ready(void **state)
{
    /* as the EndpointSlice controller writes them; 10.244.2.9 is terminating */
    static const char slice[] =
        "{\"kind\":\"EndpointSlice\",\"apiVersion\":\"discovery.k8s.io/v1\","
        "\"metadata\":{\"name\":\"oap-x7k2p\",\"generateName\":\"oap-\",\"namespace\":\"skywalking\","
        "\"resourceVersion\":\"51234\",\"labels\":{\"endpointslice.kubernetes.io/managed-by\":"
        "\"endpointslice-controller.k8s.io\",\"kubernetes.io/service-name\":\"oap\"}},"
        "\"addressType\":\"IPv4\","
        "\"endpoints\":["
        "{\"addresses\":[\"10.244.1.17\"],\"conditions\":{\"ready\":true,\"serving\":true,"
        "\"terminating\":false},\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"skywalking\","
        "\"name\":\"oap-0\",\"uid\":\"0a6d1c5e\"},\"nodeName\":\"kind-worker\"},"
        "{\"addresses\":[\"10.244.2.9\"],\"conditions\":{\"ready\":false,\"serving\":true,"
        "\"terminating\":true},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"oap-1\"}},"
        "{\"addresses\":[\"10.244.3.4\"],\"conditions\":{},\"nodeName\":\"kind-worker3\"},"
        "{\"addresses\":[\"10.244.3.5\"]},"
        "{\"addresses\":[\"10.244.3.6\"],\"conditions\":{\"ready\":null}},"
        "{\"addresses\":[\"10.244.4.1\",\"10.244.4.2\"],\"conditions\":{\"ready\":true}}"
        "],"
        "\"ports\":[{\"name\":\"grpc\",\"protocol\":\"TCP\",\"port\":11800}]}";
    struct sr_k8s_strv out = {0};
    json_object *o = parse(slice);
    (void)state;
    assert_int_equal(sr_k8s_slice_addresses(o, 11800, &out), 6);
    sr_k8s_strv_sort_unique(&out);
    assert_int_equal(out.n, 6);
    assert_string_equal(out.v[0], "10.244.1.17:11800");
    assert_string_equal(out.v[1], "10.244.3.4:11800");
    assert_string_equal(out.v[2], "10.244.3.5:11800");
    assert_string_equal(out.v[3], "10.244.3.6:11800");
    assert_string_equal(out.v[4], "10.244.4.1:11800");
    assert_string_equal(out.v[5], "10.244.4.2:11800");
    sr_k8s_strv_clear(&out);
    json_object_put(o);
}

static void slice_ipv6_addresses_are_bracketed(void **state)
{
    static const char slice[] =
        "{\"metadata\":{\"name\":\"oap-v6\"},\"addressType\":\"IPv6\",\"endpoints\":["
        "{\"addresses\":[\"fd00:10:244:1::17\"],\"conditions\":{\"ready\":true}}]}";
    struct sr_k8s_strv out = {0};
    json_object *o = parse(slice);
    (void)state;
    assert_int_equal(sr_k8s_slice_addresses(o, 12800, &out), 1);
    assert_string_equal(out.v[0], "[fd00:10:244:1::17]:12800");
    sr_k8s_strv_clear(&out);
    json_object_put(o);
}

static void slice_fqdn_and_empty_slices_give_nothing(void **state)
{
    static const char fqdn[] =
        "{\"metadata\":{\"name\":\"ext\"},\"addressType\":\"FQDN\",\"endpoints\":["
        "{\"addresses\":[\"oap.example.com\"],\"conditions\":{\"ready\":true}}]}";
    /* a Service with no pods: the controller writes "endpoints": null */
    static const char none[] =
        "{\"metadata\":{\"name\":\"oap-empty\"},\"addressType\":\"IPv4\",\"endpoints\":null}";
    struct sr_k8s_strv out = {0};
    json_object *a = parse(fqdn), *b = parse(none);
    (void)state;
    assert_int_equal(sr_k8s_slice_addresses(a, 11800, &out), 0);
    assert_int_equal(sr_k8s_slice_addresses(b, 11800, &out), 0);
    assert_int_equal(out.n, 0);
    json_object_put(a);
    json_object_put(b);
}

static void slice_skips_invalid_addresses(void **state)
{
    static const char slice[] =
        "{\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"not-an-ip\",42,\"10.1.1.1\"]}]}";
    struct sr_k8s_strv out = {0};
    json_object *o = parse(slice);
    (void)state;
    assert_int_equal(sr_k8s_slice_addresses(o, 11800, &out), 1);
    assert_string_equal(out.v[0], "10.1.1.1:11800");
    sr_k8s_strv_clear(&out);
    json_object_put(o);
}

/* ---- watch events ---- */

static void event_types_and_objects_are_read(void **state)
{
    static const char *const lines[] = {
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}}",
        "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}}",
        "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}}",
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
        "\"metadata\":{\"resourceVersion\":\"12746\",\"annotations\":"
        "{\"k8s.io/initial-events-end\":\"true\"}}}}",
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
        "\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource version: 100 (4711)\","
        "\"reason\":\"Expired\",\"code\":410}}",
    };
    enum sr_k8s_event_type type;
    json_object *obj;
    (void)state;
    for (size_t i = 0; i < 5; i++) {
        json_object *ev = parse(lines[i]);
        assert_int_equal(sr_k8s_event_parse(ev, &type, &obj), 0);
        assert_int_equal(type, (int)i);
        if (type == SR_K8S_EV_BOOKMARK)
            assert_string_equal(sr_k8s_meta_string(obj, "resourceVersion"), "12746");
        if (type == SR_K8S_EV_ERROR) {
            const char *msg = NULL;
            assert_int_equal(sr_k8s_status_code(obj, &msg), 410);
            assert_string_equal(msg, "too old resource version: 100 (4711)");
        }
        json_object_put(ev);
    }
}

static void event_that_is_not_a_watch_event_is_refused(void **state)
{
    enum sr_k8s_event_type type;
    json_object *obj;
    json_object *a = parse("{\"type\":\"SYNC\",\"object\":{}}");
    json_object *b = parse("{\"type\":\"ADDED\"}");
    json_object *c = parse("{\"kind\":\"PodList\",\"items\":[]}");
    (void)state;
    assert_int_equal(sr_k8s_event_parse(a, &type, &obj), -1);
    assert_int_equal(sr_k8s_event_parse(b, &type, &obj), -1);
    assert_int_equal(sr_k8s_event_parse(c, &type, &obj), -1);
    json_object_put(a);
    json_object_put(b);
    json_object_put(c);
}

static void status_without_code_is_zero(void **state)
{
    json_object *st = parse("{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"InternalError\"}");
    const char *msg = "x";
    (void)state;
    assert_int_equal(sr_k8s_status_code(st, &msg), 0);
    assert_null(msg);
    json_object_put(st);
}

/* ---- the watch stream ---- */

struct seen {
    char names[16][32];
    size_t n;
    int fail_at; /* callback returns -7 for this value (1-based), 0 = never */
};

static int collect(void *arg, json_object *v)
{
    struct seen *s = arg;
    enum sr_k8s_event_type type;
    json_object *obj;
    assert_int_equal(sr_k8s_event_parse(v, &type, &obj), 0);
    const char *name = sr_k8s_meta_string(obj, "name");
    assert_true(s->n < 16);
    snprintf(s->names[s->n], sizeof s->names[0], "%d:%s", (int)type, name ? name : "-");
    s->n++;
    return s->fail_at && (int)s->n == s->fail_at ? -7 : 0;
}

static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"oap-0\",\"resourceVersion\":\"5\"},"
    "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\"}}}\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"6\"}}}\r\n"
    "\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"oap-0\",\"resourceVersion\":\"7\","
    "\"annotations\":{\"note\":\"a line with \\n escaped and \\\"quotes\\\"\"}}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"oap-1\",\"resourceVersion\":\"8\"}}}\n";

static void assert_stream_seen(const struct seen *s)
{
    assert_int_equal(s->n, 4);
    assert_string_equal(s->names[0], "0:oap-0");
    assert_string_equal(s->names[1], "3:-");
    assert_string_equal(s->names[2], "1:oap-0");
    assert_string_equal(s->names[3], "2:oap-1");
}

static void stream_in_one_chunk_gives_every_event(void **state)
{
    struct sr_k8s_lines l;
    struct seen s = {0};
    (void)state;
    assert_int_equal(sr_k8s_lines_init(&l, 1 << 20), 0);
    assert_int_equal(sr_k8s_lines_feed(&l, stream, strlen(stream), collect, &s), 0);
    assert_stream_seen(&s);
    assert_int_equal(l.line.len, 0);
    sr_k8s_lines_deinit(&l);
}

static void stream_split_at_every_byte_gives_the_same_events(void **state)
{
    (void)state;
    size_t n = strlen(stream);
    /* every chunk size from 1 byte up: lines and JSON tokens cut anywhere */
    for (size_t chunk = 1; chunk <= n; chunk++) {
        struct sr_k8s_lines l;
        struct seen s = {0};
        assert_int_equal(sr_k8s_lines_init(&l, 1 << 20), 0);
        for (size_t off = 0; off < n; off += chunk) {
            size_t len = n - off < chunk ? n - off : chunk;
            assert_int_equal(sr_k8s_lines_feed(&l, stream + off, len, collect, &s), 0);
        }
        assert_stream_seen(&s);
        sr_k8s_lines_deinit(&l);
    }
}

static void stream_keeps_an_unfinished_line_for_later(void **state)
{
    static const char head[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}";
    struct sr_k8s_lines l;
    struct seen s = {0};
    (void)state;
    assert_int_equal(sr_k8s_lines_init(&l, 1 << 20), 0);
    assert_int_equal(sr_k8s_lines_feed(&l, head, strlen(head), collect, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(l.line.len, strlen(head));
    assert_int_equal(sr_k8s_lines_feed(&l, "}}\n", 3, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.names[0], "0:x");
    /* a new stream starts clean */
    assert_int_equal(sr_k8s_lines_feed(&l, head, strlen(head), collect, &s), 0);
    sr_k8s_lines_reset(&l);
    assert_int_equal(sr_k8s_lines_feed(&l, "}}\n", 3, collect, &s), -1);
    sr_k8s_lines_deinit(&l);
}

static void stream_with_invalid_json_fails(void **state)
{
    struct sr_k8s_lines l;
    struct seen s = {0};
    (void)state;
    assert_int_equal(sr_k8s_lines_init(&l, 1 << 20), 0);
    assert_int_equal(sr_k8s_lines_feed(&l, "{\"type\":\"ADDED\",\n", 17, collect, &s), -1);
    sr_k8s_lines_reset(&l);
    assert_int_equal(sr_k8s_lines_feed(&l, "{\"type\":1} trailing\n", 20, collect, &s), -1);
    sr_k8s_lines_reset(&l);
    assert_int_equal(sr_k8s_lines_feed(&l, "{} {}\n", 6, collect, &s), -1);
    assert_int_equal(s.n, 0);
    sr_k8s_lines_deinit(&l);
}

static void stream_line_longer_than_the_limit_fails(void **state)
{
    char big[200];
    struct sr_k8s_lines l;
    struct seen s = {0};
    (void)state;
    memset(big, ' ', sizeof big);
    assert_int_equal(sr_k8s_lines_init(&l, 64), 0);
    /* in pieces: the buffered tail grows past the limit */
    assert_int_equal(sr_k8s_lines_feed(&l, big, 60, collect, &s), 0);
    assert_int_equal(sr_k8s_lines_feed(&l, big, 60, collect, &s), -1);
    /* in one piece: a whole too-long line */
    sr_k8s_lines_reset(&l);
    big[sizeof big - 1] = '\n';
    assert_int_equal(sr_k8s_lines_feed(&l, big, sizeof big, collect, &s), -1);
    sr_k8s_lines_deinit(&l);
}

static void stream_callback_error_stops_feeding(void **state)
{
    struct sr_k8s_lines l;
    struct seen s = {.fail_at = 2};
    (void)state;
    assert_int_equal(sr_k8s_lines_init(&l, 1 << 20), 0);
    assert_int_equal(sr_k8s_lines_feed(&l, stream, strlen(stream), collect, &s), -7);
    assert_int_equal(s.n, 2);
    sr_k8s_lines_deinit(&l);
}

/* ---- string sets ---- */

static void strv_sort_unique_makes_a_set(void **state)
{
    struct sr_k8s_strv a = {0}, b = {0};
    static const char *const in[] = {"10.0.0.3:11800", "10.0.0.1:11800", "10.0.0.3:11800",
                                     "[fd00::1]:11800", "10.0.0.1:11800"};
    (void)state;
    for (size_t i = 0; i < 5; i++) assert_int_equal(sr_k8s_strv_add(&a, in[i]), 0);
    sr_k8s_strv_sort_unique(&a);
    assert_int_equal(a.n, 3);
    assert_string_equal(a.v[0], "10.0.0.1:11800");
    assert_string_equal(a.v[1], "10.0.0.3:11800");
    assert_string_equal(a.v[2], "[fd00::1]:11800");
    assert_false(sr_k8s_strv_equal(&a, &b));
    assert_int_equal(sr_k8s_strv_extend(&b, &a), 0);
    assert_true(sr_k8s_strv_equal(&a, &b));
    free(b.v[2]);
    b.v[2] = strdup("[fd00::2]:11800");
    assert_false(sr_k8s_strv_equal(&a, &b));
    sr_k8s_strv_clear(&a);
    sr_k8s_strv_clear(&b);
    sr_k8s_strv_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pod_running_and_ready_gives_ip_and_extra_port),
        cmocka_unit_test(pod_not_ready_counts_for_nothing),
        cmocka_unit_test(pod_pending_without_ip_counts_for_nothing),
        cmocka_unit_test(pod_running_ready_but_empty_ip_counts_for_nothing),
        cmocka_unit_test(pod_terminating_counts_for_nothing_even_while_ready),
        cmocka_unit_test(pod_without_ready_condition_counts_for_nothing),
        cmocka_unit_test(pod_ipv6_address_is_bracketed),
        cmocka_unit_test(pod_ip_that_is_not_an_address_is_rejected),
        cmocka_unit_test(pod_address_never_overflows_the_buffer),
        cmocka_unit_test(pod_with_wrong_field_types_counts_for_nothing),
        cmocka_unit_test(slice_keeps_ready_and_absent_conditions_and_drops_not_ready),
        cmocka_unit_test(slice_ipv6_addresses_are_bracketed),
        cmocka_unit_test(slice_fqdn_and_empty_slices_give_nothing),
        cmocka_unit_test(slice_skips_invalid_addresses),
        cmocka_unit_test(event_types_and_objects_are_read),
        cmocka_unit_test(event_that_is_not_a_watch_event_is_refused),
        cmocka_unit_test(status_without_code_is_zero),
        cmocka_unit_test(stream_in_one_chunk_gives_every_event),
        cmocka_unit_test(stream_split_at_every_byte_gives_the_same_events),
        cmocka_unit_test(stream_keeps_an_unfinished_line_for_later),
        cmocka_unit_test(stream_with_invalid_json_fails),
        cmocka_unit_test(stream_line_longer_than_the_limit_fails),
        cmocka_unit_test(stream_callback_error_stops_feeding),
        cmocka_unit_test(strv_sort_unique_makes_a_set),
    };
    return cmocka_run_group_tests_name("k8s_parse", tests, NULL, NULL);
}
