/* /metrics rendering and readiness, from a hand-built runtime: exact sample
 * lines, sums over workers, cumulative histogram buckets, one HELP/TYPE per
 * family, label escaping, and the readiness rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/admin.h"
#include "skyrelay/conn_limit.h"
#include "skyrelay/config.h"
#include "skyrelay/metrics.h"
#include "skyrelay/worker.h"

/* The connection monitor is faked: its numbers must show up as they are. */
void sr_conn_limit_stats(struct sr_conn_stats *out)
{
    out->live = 3;
    out->accepted = 10;
    out->refused = 2;
    out->closed = 7;
}

struct fixture {
    struct sr_config cfg;
    struct sr_runtime rt;
    char *body;
    size_t len;
};

#define N_WORKERS 2

static struct fixture *fixture_new(size_t n_nodes)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    sr_config_defaults(&f->cfg);
    f->cfg.pipes[SR_PIPE_CLR].enabled = false; /* disabled pipes have no series */
    f->rt.cfg = &f->cfg;
    f->rt.server = (grpc_server *)(uintptr_t)1; /* never dereferenced */
    f->rt.n_workers = N_WORKERS;
    f->rt.workers = calloc(N_WORKERS, sizeof(*f->rt.workers));
    assert_non_null(f->rt.workers);
    f->rt.up.n_nodes = n_nodes;
    f->rt.up.nodes = calloc(n_nodes ? n_nodes : 1, sizeof(*f->rt.up.nodes));
    assert_non_null(f->rt.up.nodes);
    for (size_t i = 0; i < n_nodes; i++) {
        char a[64];
        snprintf(a, sizeof(a), "10.0.%zu.%zu:11800", i / 250, i % 250);
        f->rt.up.nodes[i].address = strdup(a);
        f->rt.up.nodes[i].index = (uint32_t)i;
    }
    return f;
}

static void fixture_free(struct fixture *f)
{
    for (size_t i = 0; i < f->rt.up.n_nodes; i++) free(f->rt.up.nodes[i].address);
    free(f->rt.up.nodes);
    free(f->rt.workers);
    free(f->body);
    sr_config_deinit(&f->cfg);
    free(f);
}

static const char *render(struct fixture *f)
{
    free(f->body);
    f->body = sr_metrics_render(&f->rt, &f->len);
    assert_non_null(f->body);
    assert_int_equal(strlen(f->body), f->len);
    return f->body;
}

/* True if `line` is a whole line of body. */
static bool has_line(const char *body, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = body; (p = strstr(p, line)) != NULL; p++)
        if ((p == body || p[-1] == '\n') && p[n] == '\n') return true;
    return false;
}

#define assert_line(body, line)                                                                    \
    do {                                                                                           \
        if (!has_line((body), (line)))                                                             \
            fail_msg("missing line: %s\n--- body:\n%s", (line), (body));                           \
    } while (0)

static struct sr_pipe_counters *pc(struct fixture *f, int worker, enum sr_pipe_id p)
{
    return &f->rt.workers[worker].ctr.pipe[p];
}

static void pipe_counters_are_summed_over_workers(void **state)
{
    struct fixture *f = fixture_new(1);
    const char *b;
    (void)state;
    SR_CNT_ADD(pc(f, 0, SR_PIPE_LOG)->recv_events, 40);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_LOG)->recv_events, 2);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_LOG)->recv_bytes, 1000);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_LOG)->recv_bytes, 24);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_SEGMENT)->sent_events, 7);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_SEGMENT)->sent_events, 8);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_SEGMENT)->sent_batches, 3);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_SEGMENT)->upstream_calls, 5);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_SEGMENT)->upstream_failed, 2);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_SEGMENT)->retried_batches, 2);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_SEGMENT)->retried_events, 20);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_METER)->rejected_events, 4);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_METER)->paused, 9);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_ALS)->ok_calls, 6);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_ALS)->ok_calls, 1);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_ALS)->invalid_calls, 2);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_ALS)->refused_calls, 3);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_ALS)->broken_calls, 4);
    SR_CNT_ADD(pc(f, 0, SR_PIPE_LOG)->dropped_events[SR_DROP_RETRY_EXHAUSTED], 11);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_LOG)->dropped_events[SR_DROP_UPSTREAM_REJECTED], 12);
    SR_CNT_ADD(pc(f, 1, SR_PIPE_LOG)->dropped_events[SR_DROP_SHUTDOWN], 13);

    b = render(f);
    assert_line(b, "skyrelay_pipe_received_events_total{pipe=\"log\"} 42");
    assert_line(b, "skyrelay_pipe_received_bytes_total{pipe=\"log\"} 1024");
    assert_line(b, "skyrelay_pipe_received_events_total{pipe=\"segment\"} 0");
    assert_line(b, "skyrelay_sender_sent_events_total{pipe=\"segment\"} 15");
    assert_line(b, "skyrelay_sender_batches_total{pipe=\"segment\"} 3");
    assert_line(b, "skyrelay_sender_upstream_calls_total{pipe=\"segment\"} 5");
    assert_line(b, "skyrelay_sender_upstream_failed_calls_total{pipe=\"segment\"} 2");
    assert_line(b, "skyrelay_sender_retried_batches_total{pipe=\"segment\"} 2");
    assert_line(b, "skyrelay_sender_retried_events_total{pipe=\"segment\"} 20");
    assert_line(b, "skyrelay_pipe_rejected_events_total{pipe=\"meter\"} 4");
    assert_line(b, "skyrelay_pipe_paused_total{pipe=\"meter\"} 9");
    assert_line(b, "skyrelay_pipe_calls_total{pipe=\"als\",status=\"ok\"} 7");
    assert_line(b, "skyrelay_pipe_calls_total{pipe=\"als\",status=\"invalid_argument\"} 2");
    assert_line(b, "skyrelay_pipe_calls_total{pipe=\"als\",status=\"resource_exhausted\"} 3");
    assert_line(b, "skyrelay_pipe_calls_total{pipe=\"als\",status=\"broken\"} 4");
    assert_line(b, "skyrelay_dropped_events_total{pipe=\"log\",reason=\"retry_exhausted\"} 11");
    assert_line(b, "skyrelay_dropped_events_total{pipe=\"log\",reason=\"upstream_rejected\"} 12");
    assert_line(b, "skyrelay_dropped_events_total{pipe=\"log\",reason=\"shutdown\"} 13");
    assert_line(b, "skyrelay_pipe_received_events_total{pipe=\"envoy_metrics\"} 0");
    fixture_free(f);
}

static void disabled_pipes_have_no_series(void **state)
{
    struct fixture *f = fixture_new(1);
    char needle[64];
    const char *b;
    (void)state;
    b = render(f);
    snprintf(needle, sizeof(needle), "pipe=\"%s\"", sr_pipe_name(SR_PIPE_CLR));
    assert_null(strstr(b, needle));
    snprintf(needle, sizeof(needle), "pipe=\"%s\"", sr_pipe_name(SR_PIPE_JVM));
    assert_non_null(strstr(b, needle));
    fixture_free(f);
}

static void queue_gauges_sum_depth_and_bounds_of_partitions(void **state)
{
    struct fixture *f = fixture_new(1);
    const char *b;
    (void)state;
    for (int w = 0; w < N_WORKERS; w++) {
        struct sr_partition *p = &f->rt.workers[w].pipes[SR_PIPE_SEGMENT].part;
        p->max_events = 5000;
        p->max_bytes = 1 << 20;
        atomic_store(&p->depth_events, (uint64_t)(5 + 2 * w));
        atomic_store(&p->depth_bytes, (uint64_t)(500 + 200 * w));
    }
    b = render(f);
    assert_line(b, "skyrelay_queue_events{pipe=\"segment\"} 12");
    assert_line(b, "skyrelay_queue_bytes{pipe=\"segment\"} 1200");
    assert_line(b, "skyrelay_queue_capacity_events{pipe=\"segment\"} 10000");
    assert_line(b, "skyrelay_queue_capacity_bytes{pipe=\"segment\"} 2097152");
    assert_line(b, "skyrelay_queue_events{pipe=\"log\"} 0");
    fixture_free(f);
}

/* Reads the value of the bucket line `le` of pipe segment; -1 if absent. */
static long long bucket(const char *b, const char *le)
{
    char needle[160];
    const char *p;
    snprintf(needle, sizeof(needle),
             "\nskyrelay_upstream_call_duration_seconds_bucket{pipe=\"segment\",le=\"%s\"} ", le);
    p = strstr(b, needle);
    return p ? atoll(p + strlen(needle)) : -1;
}

static void latency_histogram_is_cumulative_in_seconds(void **state)
{
    static const char *const les[SR_LAT_BUCKETS] = {
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25",  "0.5",    "1",     "2.5",  "5",     "10",  "+Inf"};
    struct fixture *f = fixture_new(1);
    const char *b;
    long long prev = 0;
    (void)state;
    sr_latency_observe(&f->rt.workers[0].ctr.upstream_latency[SR_PIPE_SEGMENT], 500);
    sr_latency_observe(&f->rt.workers[1].ctr.upstream_latency[SR_PIPE_SEGMENT], 3000);
    sr_latency_observe(&f->rt.workers[1].ctr.upstream_latency[SR_PIPE_SEGMENT], 3000);
    sr_latency_observe(&f->rt.workers[0].ctr.upstream_latency[SR_PIPE_SEGMENT], 300000);
    sr_latency_observe(&f->rt.workers[0].ctr.upstream_latency[SR_PIPE_SEGMENT], 20000000);
    b = render(f);
    for (int i = 0; i < SR_LAT_BUCKETS; i++) {
        long long v = bucket(b, les[i]);
        assert_true(v >= prev); /* present and monotone */
        prev = v;
    }
    assert_int_equal(bucket(b, "0.001"), 1);
    assert_int_equal(bucket(b, "0.0025"), 1);
    assert_int_equal(bucket(b, "0.005"), 3);
    assert_int_equal(bucket(b, "0.25"), 3);
    assert_int_equal(bucket(b, "0.5"), 4);
    assert_int_equal(bucket(b, "10"), 4);
    assert_int_equal(bucket(b, "+Inf"), 5);
    assert_line(b, "skyrelay_upstream_call_duration_seconds_count{pipe=\"segment\"} 5");
    assert_line(b, "skyrelay_upstream_call_duration_seconds_sum{pipe=\"segment\"} 20.306500");
    assert_line(b, "skyrelay_upstream_call_duration_seconds_bucket{pipe=\"log\",le=\"+Inf\"} 0");
    assert_line(b, "skyrelay_upstream_call_duration_seconds_sum{pipe=\"log\"} 0.000000");
    fixture_free(f);
}

static void node_series_escape_the_address_label(void **state)
{
    struct fixture *f = fixture_new(2);
    struct sr_node *n = &f->rt.up.nodes[1];
    const char *b;
    (void)state;
    free(n->address);
    n->address = strdup("we\"ird\\node\n:1");
    atomic_store(&n->down_until_ms, sr_now_ms() + 60000); /* ejected */
    atomic_store(&n->failed_calls, 4);
    atomic_store(&f->rt.up.nodes[0].sent_events, 1500);
    atomic_store(&f->rt.up.nodes[0].sent_batches, 30);
    b = render(f);
    assert_line(b, "skyrelay_upstream_node_up{node=\"10.0.0.0:11800\"} 1");
    assert_line(b, "skyrelay_upstream_node_sent_events_total{node=\"10.0.0.0:11800\"} 1500");
    assert_line(b, "skyrelay_upstream_node_batches_total{node=\"10.0.0.0:11800\"} 30");
    assert_line(b, "skyrelay_upstream_node_reachable{node=\"10.0.0.0:11800\"} 1");
    assert_line(b, "skyrelay_upstream_node_up{node=\"we\\\"ird\\\\node\\n:1\"} 0");
    assert_line(b, "skyrelay_upstream_node_failed_calls_total{node=\"we\\\"ird\\\\node\\n:1\"} 4");
    assert_line(b, "skyrelay_upstream_node_reachable{node=\"we\\\"ird\\\\node\\n:1\"} 0");
    fixture_free(f);
}

static void server_and_passthrough_counters(void **state)
{
    struct fixture *f = fixture_new(1);
    char build[128];
    const char *b;
    (void)state;
    SR_CNT_ADD(f->rt.workers[0].ctr.relay_calls[0], 5);
    SR_CNT_ADD(f->rt.workers[1].ctr.relay_calls[1], 6);
    SR_CNT_ADD(f->rt.workers[1].ctr.relay_failed, 1);
    SR_CNT_ADD(f->rt.workers[0].ctr.relay_msgs_up, 100);
    SR_CNT_ADD(f->rt.workers[1].ctr.relay_msgs_down, 50);
    SR_CNT_ADD(f->rt.workers[0].ctr.unauthenticated_calls, 8);
    SR_CNT_ADD(f->rt.workers[1].ctr.unknown_method_calls, 9);
    b = render(f);
    assert_line(b, "skyrelay_server_connections 3");
    assert_line(b, "skyrelay_server_connections_accepted_total 10");
    assert_line(b, "skyrelay_server_connections_refused_total 2");
    assert_line(b, "skyrelay_server_connections_closed_total 7");
    assert_line(b, "skyrelay_passthrough_calls_total{mode=\"sync\"} 5");
    assert_line(b, "skyrelay_passthrough_calls_total{mode=\"relay\"} 6");
    assert_line(b, "skyrelay_passthrough_failed_calls_total 1");
    assert_line(b, "skyrelay_relay_messages_total{direction=\"up\"} 100");
    assert_line(b, "skyrelay_relay_messages_total{direction=\"down\"} 50");
    assert_line(b, "skyrelay_server_unauthenticated_calls_total 8");
    assert_line(b, "skyrelay_server_unimplemented_calls_total 9");
    snprintf(build, sizeof(build), "skyrelay_build_info{version=\"%s\"} 1", SR_VERSION);
    assert_line(b, build);
    assert_non_null(strstr(b, "\nprocess_cpu_seconds_total "));
    assert_non_null(strstr(b, "\nprocess_start_time_seconds "));
    {
        const char *r = strstr(b, "\nprocess_resident_memory_bytes ");
        assert_non_null(r);
        assert_true(atoll(r + strlen("\nprocess_resident_memory_bytes ")) > 0);
    }
    fixture_free(f);
}

/* The metric name of a sample line, its family (histogram series folded). */
static void family_of(const char *line, char *out, size_t cap, const char *hist)
{
    size_t n = strcspn(line, "{ ");
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    assert_true(n < cap);
    memcpy(out, line, n);
    out[n] = '\0';
    for (int i = 0; i < 3; i++) {
        size_t s = strlen(suffixes[i]);
        if (n > s && strcmp(out + n - s, suffixes[i]) == 0 && strlen(hist) == n - s &&
            strncmp(out, hist, n - s) == 0)
            out[n - s] = '\0';
    }
}

static void every_family_has_one_help_and_type_before_its_samples(void **state)
{
    struct fixture *f = fixture_new(3);
    char *copy, *save = NULL, *line;
    char seen[128][96], current[96] = "", hist[96] = "";
    int n_seen = 0, samples = 0;
    (void)state;
    copy = strdup(render(f));
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[96], type[32];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%95s", name), 1);
            for (int i = 0; i < n_seen; i++)
                if (strcmp(seen[i], name) == 0) fail_msg("family %s twice", name);
            assert_true(n_seen < 128);
            strcpy(seen[n_seen++], name);
            strcpy(current, name);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%95s %31s", name, type), 2);
            assert_string_equal(name, current); /* right after its HELP */
            strcpy(hist, strcmp(type, "histogram") == 0 ? name : "");
            continue;
        }
        assert_true(line[0] != '#');
        family_of(line, name, sizeof(name), hist);
        if (strcmp(name, current) != 0) fail_msg("sample %s outside its family %s", line, current);
        samples++;
    }
    assert_true(n_seen > 30);
    assert_true(samples > 200);
    free(copy);
    fixture_free(f);
}

static void a_large_render_is_not_truncated(void **state)
{
    struct fixture *f = fixture_new(3000); /* far over the initial buffer */
    const char *b;
    (void)state;
    atomic_store(&f->rt.up.nodes[2999].sent_events, 77);
    b = render(f);
    assert_true(f->len > 3000 * 5 * 40);
    assert_line(b, "skyrelay_upstream_node_sent_events_total{node=\"10.0.11.249:11800\"} 77");
    assert_int_equal(b[f->len - 1], '\n');
    fixture_free(f);
}

static void ready_needs_a_server_not_draining_and_a_reachable_node(void **state)
{
    struct fixture *f = fixture_new(2);
    struct sr_node *a = &f->rt.up.nodes[0], *b = &f->rt.up.nodes[1];
    (void)state;
    /* no channel (judged as IDLE): reachable only after a delivered batch */
    assert_false(sr_ready(&f->rt));
    atomic_store(&b->sent_batches, 1);
    assert_true(sr_ready(&f->rt));
    /* the only node that ever answered is ejected */
    atomic_store(&b->down_until_ms, sr_now_ms() + 60000);
    assert_false(sr_ready(&f->rt));
    atomic_store(&a->sent_batches, 5);
    assert_true(sr_ready(&f->rt));
    render(f);
    assert_line(f->body, "skyrelay_server_ready 1");
    /* backoff over: up again */
    atomic_store(&b->down_until_ms, sr_now_ms() - 1);
    atomic_store(&a->down_until_ms, sr_now_ms() + 60000);
    assert_true(sr_ready(&f->rt));
    atomic_store(&f->rt.draining, 1);
    assert_false(sr_ready(&f->rt));
    render(f);
    assert_line(f->body, "skyrelay_server_ready 0");
    atomic_store(&f->rt.draining, 0);
    f->rt.server = NULL;
    assert_false(sr_ready(&f->rt));
    fixture_free(f);
}

/* ---- the SR_PIPE_COUNTERS list against the outputs ---- */

/* Distinct per-metric values: worker 0 holds 1000 * (index + 1), worker 1
 * holds index + 1, so a sum is 1001 * (index + 1) and a mix-up shows. */
static uint64_t list_value(const char *field, int worker)
{
    for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++)
        if (strcmp(sr_pipe_metrics[m].field, field) == 0)
            return (uint64_t)(m + 1) * (worker == 0 ? 1000 : 1);
    fail_msg("%s is not in sr_pipe_metrics", field);
    return 0;
}

static uint64_t list_total(int m)
{
    if (strcmp(sr_pipe_metrics[m].field, "disk_oldest_age_s") == 0) /* the max, worker 0's */
        return (uint64_t)(m + 1) * 1000;
    return (uint64_t)(m + 1) * 1001;
}

/* Sets every list entry of pipe p on both workers (the SUM counters through
 * the list itself; the QUEUE gauges on the partitions) and the drops. */
static void fill_from_list(struct fixture *f, enum sr_pipe_id p)
{
    for (int w = 0; w < N_WORKERS; w++) {
        struct sr_pipe_counters *c = pc(f, w, p);
        struct sr_partition *part = &f->rt.workers[w].pipes[p].part;
#define SET_SUM(field)                SR_CNT_ADD(c->field, list_value(#field, w));
#define SET_QUEUE(field)              /* below */
#define SET_(field, src, stats, prom) SET_##src(field)
        SR_PIPE_COUNTERS(SET_)
#undef SET_
#undef SET_QUEUE
#undef SET_SUM
        atomic_store(&part->depth_events, list_value("depth_events", w));
        atomic_store(&part->depth_bytes, list_value("depth_bytes", w));
        part->max_events = (uint32_t)list_value("cap_events", w);
        part->max_bytes = list_value("cap_bytes", w);
        {
            struct sr_disklog *d = &f->rt.workers[w].pipes[p].disk;
            part->disk = d;
            atomic_store(&d->st_events, list_value("disk_events", w));
            atomic_store(&d->st_bytes, list_value("disk_bytes", w));
            atomic_store(&d->st_replayed, list_value("disk_replayed", w));
            atomic_store(&d->st_recovered, list_value("disk_recovered", w));
            atomic_store(&d->st_corrupt, list_value("disk_corrupt", w));
            atomic_store(&d->st_refused, list_value("disk_refused", w));
            atomic_store(&d->st_write_errors, list_value("disk_write_errors", w));
            atomic_store(&d->st_syncs, list_value("disk_syncs", w));
            /* an age: the oldest over the workers, not a sum (half a second of slack) */
            atomic_store(&d->st_oldest_ms,
                         sr_wall_ms() - (int64_t)list_value("disk_oldest_age_s", w) * 1000 - 500);
        }
        for (int r = 0; r < SR_DROP_COUNT; r++)
            SR_CNT_ADD(c->dropped_events[r], (uint64_t)(r + 1) * (w == 0 ? 100000 : 1));
    }
}

/* Lines of body that start with prefix. */
static int count_lines_starting(const char *body, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, len) == 0) n++;
    return n;
}

static void every_listed_pipe_counter_is_in_metrics_once(void **state)
{
    struct fixture *f = fixture_new(1);
    char line[512];
    const char *b;
    int own_families = 0, calls_samples = 0;
    (void)state;
    fill_from_list(f, SR_PIPE_SEGMENT);
    b = render(f);
    for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++) {
        const struct sr_pipe_metric *pm = &sr_pipe_metrics[m];
        unsigned long long v = (unsigned long long)list_total(m);
        if (pm->prom_status) {
            assert_null(pm->prom_help);
            assert_string_equal(pm->prom_name, "skyrelay_pipe_calls_total");
            snprintf(line, sizeof(line),
                     "skyrelay_pipe_calls_total{pipe=\"segment\",status=\"%s\"} %llu",
                     pm->prom_status, v);
            assert_line(b, line);
            calls_samples++;
            continue;
        }
        own_families++;
        snprintf(line, sizeof(line), "# HELP %s %s", pm->prom_name, pm->prom_help);
        assert_line(b, line);
        snprintf(line, sizeof(line), "# HELP %s ", pm->prom_name);
        assert_int_equal(count_lines_starting(b, line), 1);
        snprintf(line, sizeof(line), "# TYPE %s %s", pm->prom_name, pm->prom_type);
        assert_line(b, line);
        snprintf(line, sizeof(line), "%s{pipe=\"segment\"} %llu", pm->prom_name, v);
        assert_line(b, line);
        /* one sample per enabled pipe, no other series in the family */
        snprintf(line, sizeof(line), "%s{", pm->prom_name);
        assert_int_equal(count_lines_starting(b, line), SR_PIPE_COUNT - 1); /* CLR is off */
    }
    assert_int_equal(calls_samples, 4);
    assert_int_equal(count_lines_starting(b, "skyrelay_pipe_calls_total{pipe=\"segment\","), 4);
    assert_line(b, "skyrelay_dropped_events_total{pipe=\"segment\",reason=\"poison\"} 400004");
    /* and the other way: every family with a pipe label is a list entry, the
     * calls family, the drops or the latency histogram */
    {
        int pipe_families = 0;
        char *copy = strdup(b), *save = NULL;
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            char name[128];
            if (strncmp(l, "# TYPE ", 7) != 0) continue;
            assert_int_equal(sscanf(l + 7, "%127s", name), 1);
            snprintf(line, sizeof(line), "\n%s%s{pipe=\"segment\"", name,
                     strstr(l, " histogram") ? "_count" : "");
            if (strstr(b, line)) pipe_families++;
        }
        free(copy);
        assert_int_equal(pipe_families, own_families + 3);
    }
    fixture_free(f);
}

/* Scrapers and dashboards may depend on the order of the families: the ones
 * that exist keep their relative order (new ones may go anywhere). */
static void pipe_families_keep_their_order(void **state)
{
    static const char *const order[] = {
        "skyrelay_pipe_received_events_total",
        "skyrelay_pipe_received_bytes_total",
        "skyrelay_pipe_rejected_events_total",
        "skyrelay_pipe_paused_total",
        "skyrelay_queue_events",
        "skyrelay_queue_bytes",
        "skyrelay_queue_capacity_events",
        "skyrelay_queue_capacity_bytes",
        "skyrelay_sender_sent_events_total",
        "skyrelay_sender_batches_total",
        "skyrelay_sender_upstream_calls_total",
        "skyrelay_sender_upstream_failed_calls_total",
        "skyrelay_sender_retried_batches_total",
        "skyrelay_sender_retried_events_total",
        "skyrelay_sender_hedged_events_total",
        "skyrelay_sender_content_failed_calls_total",
        "skyrelay_sender_split_batches_total",
        "skyrelay_pipe_calls_total",
        "skyrelay_dropped_events_total",
        "skyrelay_upstream_call_duration_seconds",
    };
    struct fixture *f = fixture_new(1);
    const char *b, *prev = NULL;
    (void)state;
    b = render(f);
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        char help[128];
        const char *at;
        snprintf(help, sizeof(help), "\n# HELP %s ", order[i]);
        at = strstr(b, help);
        if (!at) fail_msg("no family %s", order[i]);
        if (prev && at < prev) fail_msg("family %s moved before %s", order[i], order[i - 1]);
        prev = at;
    }
    fixture_free(f);
}

static void list_stats_positions_are_1_to_n(void **state)
{
    int n = 0;
    (void)state;
    for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++)
        if (sr_pipe_metrics[m].stats_pos) {
            n++;
            assert_non_null(sr_pipe_metrics[m].stats_key);
        } else {
            assert_null(sr_pipe_metrics[m].stats_key);
        }
    for (int pos = 1; pos <= n; pos++) {
        int found = 0;
        for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++)
            if (sr_pipe_metrics[m].stats_pos == pos) found++;
        if (found != 1) fail_msg("stats position %d is used %d times", pos, found);
    }
}

/* The stats log line's pipe fields keep the order and keys users parse:
 * the format below is the line as it was written before the list existed. */
static void stats_line_fields_keep_their_keys_and_order(void **state)
{
    struct fixture *f = fixture_new(1);
    struct sr_pipe_totals t;
    struct sr_buf got;
    char want[2048];
    (void)state;
    fill_from_list(f, SR_PIPE_LOG);
    sr_pipe_snapshot(&f->rt, SR_PIPE_LOG, &t);
    snprintf(want, sizeof(want),
             " received=%llu sent=%llu queued=%llu batches=%llu calls_ok=%llu "
             "rejected=%llu refused_calls=%llu invalid_calls=%llu broken_calls=%llu "
             "paused=%llu upstream_failed=%llu retried_events=%llu hedged_events=%llu "
             "content_failed_calls=%llu split_batches=%llu "
             "on_disk=%llu replayed=%llu disk_full=%llu "
             "dropped_retry_exhausted=%llu dropped_upstream_rejected=%llu dropped_shutdown=%llu "
             "dropped_poison=%llu",
             (unsigned long long)t.recv_events, (unsigned long long)t.sent_events,
             (unsigned long long)t.depth_events, (unsigned long long)t.sent_batches,
             (unsigned long long)t.ok_calls, (unsigned long long)t.rejected_events,
             (unsigned long long)t.refused_calls, (unsigned long long)t.invalid_calls,
             (unsigned long long)t.broken_calls, (unsigned long long)t.paused,
             (unsigned long long)t.upstream_failed, (unsigned long long)t.retried_events,
             (unsigned long long)t.hedged_events, (unsigned long long)t.content_failed_calls,
             (unsigned long long)t.split_batches, (unsigned long long)t.disk_events,
             (unsigned long long)t.disk_replayed, (unsigned long long)t.disk_refused,
             (unsigned long long)t.dropped[SR_DROP_RETRY_EXHAUSTED],
             (unsigned long long)t.dropped[SR_DROP_UPSTREAM_REJECTED],
             (unsigned long long)t.dropped[SR_DROP_SHUTDOWN],
             (unsigned long long)t.dropped[SR_DROP_POISON]);
    sr_buf_init(&got);
    sr_pipe_stats_format(&got, &t);
    assert_non_null(got.p);
    assert_string_equal(got.p, want);
    /* the values are the sums over the workers */
    for (int m = 0; m < SR_PIPE_METRIC_COUNT; m++) {
        char kv[128];
        if (!sr_pipe_metrics[m].stats_pos) continue;
        snprintf(kv, sizeof(kv), " %s=%llu ", sr_pipe_metrics[m].stats_key,
                 (unsigned long long)list_total(m));
        assert_non_null(strstr(got.p, kv));
    }
    sr_buf_free(&got);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipe_counters_are_summed_over_workers),
        cmocka_unit_test(disabled_pipes_have_no_series),
        cmocka_unit_test(queue_gauges_sum_depth_and_bounds_of_partitions),
        cmocka_unit_test(latency_histogram_is_cumulative_in_seconds),
        cmocka_unit_test(node_series_escape_the_address_label),
        cmocka_unit_test(server_and_passthrough_counters),
        cmocka_unit_test(every_family_has_one_help_and_type_before_its_samples),
        cmocka_unit_test(a_large_render_is_not_truncated),
        cmocka_unit_test(ready_needs_a_server_not_draining_and_a_reachable_node),
        cmocka_unit_test(every_listed_pipe_counter_is_in_metrics_once),
        cmocka_unit_test(pipe_families_keep_their_order),
        cmocka_unit_test(list_stats_positions_are_1_to_n),
        cmocka_unit_test(stats_line_fields_keep_their_keys_and_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
