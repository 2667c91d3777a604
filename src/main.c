/* skyrelay: arguments, boot order, signals, drain.
 *
 * Boot: config -> block signals (gRPC's internal threads inherit the mask)
 * -> grpc_init -> upstream channels -> server + one completion queue per
 * worker -> start -> libuv loop on the main thread (signals, timers).
 * SIGTERM/SIGINT: stop accepting and cancel downstream calls (what was
 * received is already queued), flush every queue upstream, wait for the acks
 * up to shutdown.grace_period, count what is left, exit. A second signal
 * skips the wait. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "skyrelay/admin.h"
#include "skyrelay/cds.h"
#include "skyrelay/config.h"
#include "skyrelay/conn_limit.h"
#include "skyrelay/discovery.h"
#include "skyrelay/log.h"
#include "skyrelay/metrics.h"
#include "skyrelay/reload.h"
#include "skyrelay/tls.h"
#include "skyrelay/worker.h"

#define DEFAULT_CONFIG "config/skyrelay.yaml"

static struct sr_runtime rt;
static int64_t drain_deadline;
static int64_t streams_deadline; /* in-flight downstream calls are cancelled at this time */
static bool calls_cancelled;
static int signals_seen;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: skyrelay [--config FILE] [--check-config | --print-config] [--version]\n"
            "                [--help]\n"
            "\n"
            "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
            "      --check-config  load and validate the configuration and open its TLS\n"
            "                      files, then exit (0 = valid; errors as\n"
            "                      file:line:col: key: reason, or file: key: TLS problem)\n"
            "      --print-config  load it, print the effective configuration as YAML\n"
            "                      (every key, every pipe; secrets <redacted>), then exit\n"
            "  -v, --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain the queues upstream and exit (a second one\n"
            "exits at once, counting what was not delivered).\n");
}

static void on_server_shutdown(struct sr_worker *w, struct sr_tag *t, bool ok)
{
    (void)w;
    (void)t;
    (void)ok;
    atomic_store(&rt.server_shutdown_done, 1);
}

static void log_stats(const char *when)
{
    struct sr_buf fields;

    sr_buf_init(&fields);
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        struct sr_pipe_totals c;
        if (!rt.cfg->pipes[p].enabled) continue;
        sr_pipe_snapshot(&rt, (enum sr_pipe_id)p, &c);
        sr_buf_reset(&fields);
        sr_pipe_stats_format(&fields, &c);
        SR_INFO("stats", "%s pipe=%s%s", when, sr_pipe_name((enum sr_pipe_id)p),
                fields.p ? fields.p : "");
    }
    sr_buf_free(&fields);
    {
        struct sr_call_totals t;
        sr_call_snapshot(&rt, &t);
        SR_INFO("stats",
                "%s calls sync=%llu relay=%llu passthrough_failed=%llu relay_msgs_up=%llu "
                "relay_msgs_down=%llu unauthenticated=%llu unimplemented=%llu cds_upstream=%llu "
                "cds_coalesced=%llu cds_cache=%llu cds_stale=%llu cds_error=%llu",
                when, (unsigned long long)t.relay_calls[0], (unsigned long long)t.relay_calls[1],
                (unsigned long long)t.relay_failed, (unsigned long long)t.msgs_up,
                (unsigned long long)t.msgs_down, (unsigned long long)t.unauthenticated,
                (unsigned long long)t.unimplemented,
                (unsigned long long)t.cds_answers[SR_CDS_UPSTREAM],
                (unsigned long long)t.cds_answers[SR_CDS_COALESCED],
                (unsigned long long)t.cds_answers[SR_CDS_CACHE],
                (unsigned long long)t.cds_answers[SR_CDS_STALE],
                (unsigned long long)t.cds_answers[SR_CDS_ERROR]);
    }
    {
        struct sr_conn_stats cs;
        sr_conn_limit_stats(&cs);
        SR_INFO("stats", "%s connections live=%llu accepted=%llu refused=%llu closed=%llu", when,
                (unsigned long long)cs.live, (unsigned long long)cs.accepted,
                (unsigned long long)cs.refused, (unsigned long long)cs.closed);
    }
    for (size_t i = 0; i < rt.up.n_nodes; i++) {
        struct sr_node *n = &rt.up.nodes[i];
        if (!sr_node_present(n)) continue;
        SR_INFO("stats",
                "%s node=%s sent=%llu batches=%llu failed_calls=%llu up=%d stalls=%llu "
                "hedged_events=%llu content_refused_events=%llu",
                when, n->address, (unsigned long long)atomic_load(&n->sent_events),
                (unsigned long long)atomic_load(&n->sent_batches),
                (unsigned long long)atomic_load(&n->failed_calls), sr_node_is_up(n, sr_now_ms()),
                (unsigned long long)atomic_load(&n->stalls),
                (unsigned long long)atomic_load(&n->hedged_events),
                (unsigned long long)atomic_load(&n->poison_events));
    }
}

static void on_drain_tick(uv_timer_t *t)
{
    bool all_idle = true;
    if (!calls_cancelled &&
        (atomic_load(&rt.server_shutdown_done) || sr_now_ms() >= streams_deadline)) {
        /* Agents' streams still open now are cut: what they sent is queued,
         * the rest they see fail and resend elsewhere. */
        calls_cancelled = true;
        grpc_server_cancel_all_calls(rt.server);
    }
    for (uint32_t i = 0; i < rt.n_workers; i++)
        if (!atomic_load(&rt.workers[i].idle)) all_idle = false;
    if (all_idle) {
        uv_stop(t->loop);
        return;
    }
    if (sr_now_ms() >= drain_deadline && !atomic_load(&rt.force_stop)) {
        SR_ERROR("main", "shutdown grace period (%u ms) over: giving up what is still queued",
                 rt.cfg->shutdown.grace_period_ms);
        atomic_store(&rt.force_stop, 1);
    }
    if (sr_now_ms() >= drain_deadline + 10000) {
        SR_ERROR("main", "workers did not stop 10 s after the grace period; exiting");
        uv_stop(t->loop);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    static uv_timer_t drain_timer;
    signals_seen++;
    if (signals_seen > 1) {
        SR_WARN("main", "signal %d again: stopping now", signum);
        drain_deadline = sr_now_ms();
        streams_deadline = drain_deadline;
        return;
    }
    SR_INFO("main", "signal %d: draining (stop accepting, flush queues, grace %u ms)", signum,
            rt.cfg->shutdown.grace_period_ms);
    atomic_store(&rt.draining, 1);
    /* No new calls (GOAWAY); calls in flight may finish for shutdown.stream_grace. */
    grpc_server_shutdown_and_notify(rt.server, rt.workers[0].cq, &rt.shutdown_tag);
    drain_deadline = sr_now_ms() + rt.cfg->shutdown.grace_period_ms;
    streams_deadline = sr_now_ms() + rt.cfg->shutdown.stream_grace_ms;
    if (streams_deadline > drain_deadline) streams_deadline = drain_deadline;
    uv_timer_init(s->loop, &drain_timer);
    uv_timer_start(&drain_timer, on_drain_tick, 20, 20);
}

/* SIGHUP: read the configuration file again (src/server/reload.c). */
static void on_hup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (atomic_load(&rt.draining)) {
        SR_WARN("reload", "SIGHUP while stopping: ignored");
        return;
    }
    (void)sr_reload(&rt);
}

static void on_stats_tick(uv_timer_t *t)
{
    (void)t;
    sr_reload_collect(&rt, sr_now_ms()); /* configurations replaced a minute ago */
    log_stats("periodic");
}

static void on_watch_tick(uv_timer_t *t)
{
    (void)t;
    sr_upstream_watch(&rt.up, sr_now_ms());
}

static void free_node_list(struct sr_node_config *nodes, size_t n)
{
    sr_discovery_free_nodes(nodes, n);
}

/* A finder's new node list, on the main thread: the router follows it. */
static void apply_nodes(struct sr_node_config *nodes, size_t n)
{
    size_t changes = sr_upstream_apply(&rt.up, nodes, n, sr_now_ms());
    if (changes)
        SR_INFO("discovery", "node set: %zu node(s), %zu change(s)", (size_t)rt.up.present, changes);
    if (n == 0) SR_WARN("discovery", "the node set is empty: batches wait in the queues");
    free_node_list(nodes, n);
}

static void publish_on_main(void *arg, struct sr_node_config *nodes, size_t n)
{
    (void)arg;
    apply_nodes(nodes, n);
}

/* Finders on other threads hand their list over through an async handle. */
static struct {
    pthread_mutex_t mu;
    struct sr_node_config *nodes;
    size_t n;
    bool have;
    uv_async_t async;
} pending_nodes = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void publish_from_thread(void *arg, struct sr_node_config *nodes, size_t n)
{
    (void)arg;
    pthread_mutex_lock(&pending_nodes.mu);
    if (pending_nodes.have) free_node_list(pending_nodes.nodes, pending_nodes.n); /* superseded */
    pending_nodes.nodes = nodes;
    pending_nodes.n = n;
    pending_nodes.have = true;
    pthread_mutex_unlock(&pending_nodes.mu);
    uv_async_send(&pending_nodes.async);
}

static void on_pending_nodes(uv_async_t *a)
{
    struct sr_node_config *nodes;
    size_t n;
    bool have;
    (void)a;
    pthread_mutex_lock(&pending_nodes.mu);
    nodes = pending_nodes.nodes;
    n = pending_nodes.n;
    have = pending_nodes.have;
    pending_nodes.have = false;
    pthread_mutex_unlock(&pending_nodes.mu);
    if (have) apply_nodes(nodes, n);
}

/* A token whose variable is missing turns its check off (an empty token means none): say so
 * at start, naming the variable, since a Secret key that is not there leaves it unset. */
static void warn_missing_secrets(const struct sr_config *cfg)
{
    const char *var = sr_config_unset_env_of(cfg, "server.authentication");
    if (var)
        SR_WARN("main", "server.authentication is empty because environment variable %s is not "
                "set (or empty): agents are NOT authenticated; set %s to require a token",
                var, var);
}


/* Debian's abseil is built without NDEBUG, so every absl::Mutex lock (each gpr_mu inside gRPC)
 * also updates the lock-order graph of abseil's deadlock detection: ~950 instructions per
 * received message, 13 % of gRPC's own receive cost (docs/performance.md, "Receive side and the
 * gRPC floor"). A release abseil does not have it; turn it off the same way, with
 * absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore) before gRPC starts. It is
 * C++, found with dlsym under abseil's inline namespace (Debian's, then upstream 20220623's);
 * when absent nothing changes. */
static void absl_deadlock_detection_off(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        void (*set_mode)(int);
        if (!sym) continue;
        memcpy(&set_mode, &sym, sizeof(set_mode));
        set_mode(0); /* kIgnore */
        SR_DEBUG("main", "abseil mutex deadlock detection off");
        return;
    }
    SR_DEBUG("main", "abseil's SetMutexDeadlockDetectionMode not found: left as it is");
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int run(const struct sr_config *cfg)
{
    grpc_arg args[8];
    grpc_channel_args chargs = {.num_args = 6, .args = args};
    grpc_server_credentials *creds;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t stats_timer, watch_timer;
    sigset_t set;
    const char *addr = cfg->server.address; /* the loader made ":port" 0.0.0.0:port */
    int port, rc = 1;
    bool start_failed = false;
    const struct sr_finder_type *finder = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(&rt, 0, sizeof(rt));
    rt.cfg = cfg;
    rt.cfg_boot = cfg;
    rt.shutdown_tag.fn = on_server_shutdown;
    rt.n_workers = cfg->server.workers ? cfg->server.workers : (uint32_t)(ncpu > 0 ? ncpu : 1);

    /* gRPC's threads must not take the signals: block them before grpc_init. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    absl_deadlock_detection_off();
    grpc_init();
    if (sr_upstream_init(&rt.up, cfg) != 0) {
        SR_ERROR("main", "cannot create upstream channels");
        goto out_grpc;
    }
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = cfg->server.max_receive_message_size > INT_MAX
                                ? INT_MAX
                                : (int)cfg->server.max_receive_message_size;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[1].value.integer = (int)cfg->server.max_concurrent_streams;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS;
    args[2].value.integer = (int)cfg->server.keepalive_time_ms;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[3].value.integer = (int)cfg->server.keepalive_timeout_ms;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[4].value.integer = 1;
    /* Off by default: with probing, chttp2 grows every stream's window to
     * megabytes and buffers there, outside our bounded queues. */
    args[5].type = GRPC_ARG_INTEGER;
    args[5].key = (char *)GRPC_ARG_HTTP2_BDP_PROBE;
    args[5].value.integer = cfg->server.http2_bdp_probe ? 1 : 0;
    if (cfg->server.max_connection_age_ms) {
        /* connections older than this get GOAWAY: long-lived agents re-spread */
        args[chargs.num_args].type = GRPC_ARG_INTEGER;
        args[chargs.num_args].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_MS;
        args[chargs.num_args].value.integer = (int)cfg->server.max_connection_age_ms;
        chargs.num_args++;
        args[chargs.num_args].type = GRPC_ARG_INTEGER;
        args[chargs.num_args].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS;
        args[chargs.num_args].value.integer = (int)cfg->server.max_connection_age_grace_ms;
        chargs.num_args++;
    }
    rt.server = grpc_server_create(&chargs, NULL);
    if (sr_cds_register(&rt) != 0) { /* fetchConfigurations: all to worker 0 (src/server/cds.c) */
        SR_ERROR("main", "cannot register fetchConfigurations");
        goto out_server;
    }

    if (cfg->queue.disk.dir && cfg->queue.disk.dir[0]) {
        const char *why = NULL;
        if (sr_disk_shared_open(&rt.disk, cfg->queue.disk.dir, cfg->queue.disk.max_bytes,
                                cfg->queue.disk.min_free, cfg->queue.disk.segment_size,
                                cfg->queue.disk.sync, &why) != 0) {
            SR_ERROR("main", "%s", why);
            goto out_server;
        }
        for (int i = 0; i < SR_PIPE_COUNT; i++)
            if (sr_disk_adopt_orphans(&rt.disk, sr_pipe_name((enum sr_pipe_id)i), rt.n_workers) != 0)
                SR_WARN("main", "disk queue of pipe %s: segments of a run with more workers could "
                        "not be moved; they stay where they are", sr_pipe_name((enum sr_pipe_id)i));
    }
    rt.workers = calloc(rt.n_workers, sizeof(*rt.workers));
    if (!rt.workers) goto out_server;
    for (uint32_t i = 0; i < rt.n_workers; i++)
        if (sr_worker_init(&rt.workers[i], &rt, i) != 0) {
            SR_ERROR("main", "cannot set up worker %u", i);
            goto out_workers;
        }

    if (sr_conn_limit_init(cfg->server.max_connections) != 0) {
        SR_ERROR("main", "cannot start the connection monitor");
        goto out_workers;
    }
    creds = sr_tls_server_credentials(cfg); /* h2c, or TLS with the certificate fetcher */
    if (!creds) {
        SR_ERROR("main", "cannot set up TLS on the gRPC port");
        goto out_workers;
    }
    port = grpc_server_add_http2_port(rt.server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port > 0) sr_conn_limit_set_port(port);
    if (port == 0) {
        SR_ERROR("main", "cannot listen on %s", cfg->server.address);
        goto out_workers;
    }
    grpc_server_start(rt.server);
    for (uint32_t i = 0; i < rt.n_workers; i++)
        if (sr_worker_start(&rt.workers[i]) != 0) {
            SR_ERROR("main", "cannot start worker %u", i);
            abort(); /* threads already running: no clean way back */
        }
    SR_INFO("main", "skyrelay %s listening on %s (port %d), %u workers, %zu upstream nodes",
            SR_VERSION, addr, port, rt.n_workers, (size_t)rt.up.present);
    warn_missing_secrets(cfg);
    {
        const char *src = NULL;
        uint64_t total = sr_queue_budget_total(rt.cfg, &src);
        SR_INFO("main", "queue budget %llu MiB for all pipes (%s); stall_timeout %u ms%s",
                (unsigned long long)(total >> 20), src, rt.cfg->upstream.stall_timeout_ms,
                rt.cfg->upstream.stall_timeout_ms ? "" : " (stall detection off)");
    }
    if (rt.disk.dir) {
        static const char *const syncs[] = {"none", "interval", "always"};
        uint64_t events = 0, bad = 0;
        uint32_t logs = 0;
        for (uint32_t i = 0; i < rt.n_workers; i++)
            for (int p = 0; p < SR_PIPE_COUNT; p++) {
                const struct sr_disklog *d = rt.workers[i].pipes[p].part.disk;
                if (!d) continue;
                logs++;
                events += atomic_load(&d->st_recovered);
                bad += atomic_load(&d->st_corrupt);
            }
        SR_INFO("main", "disk queue %s: %u logs, %llu events recovered to replay, %llu damaged "
                "records skipped; budget %llu MiB, sync %s", rt.disk.dir, logs,
                (unsigned long long)events, (unsigned long long)bad,
                (unsigned long long)(rt.disk.max_bytes >> 20),
                syncs[rt.cfg->queue.disk.sync % 3]);
    }

    uv_loop_init(&loop);
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_init(&loop, &sig_hup);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    uv_timer_init(&loop, &stats_timer);
    uv_timer_start(&stats_timer, on_stats_tick, 60000, 60000);
    uv_timer_init(&loop, &watch_timer); /* ejected nodes that reconnected get a probe at once */
    uv_timer_start(&watch_timer, on_watch_tick, SR_WATCH_MS, SR_WATCH_MS);
    /* admin port: probes always, /metrics when telemetry.export has prometheus */
    if (cfg->telemetry.prometheus_address && cfg->telemetry.prometheus_address[0]) {
        int admin_port = sr_admin_start(&loop, cfg->telemetry.prometheus_address, &rt);
        if (admin_port < 0) {
            /* a probe port that is not there is a misconfiguration: do not run half-visible */
            SR_ERROR("main", "cannot serve the admin port on %s; stopping",
                     cfg->telemetry.prometheus_address);
            on_signal(&sig_term, SIGTERM);
            start_failed = true;
        } else {
            SR_INFO("main", "admin port %d (/metrics, /healthz, /readyz)", admin_port);
        }
    }
    uv_async_init(&loop, &pending_nodes.async, on_pending_nodes);
    if (sr_tls_upstream_watch_start(&loop, &rt.up, cfg) != 0)
        SR_WARN("main", "cannot start the upstream TLS file check: no rotation");
    finder = sr_finder_for(cfg->upstream.finder);
    if (finder && finder->start(&loop, cfg, finder->own_thread ? publish_from_thread : publish_on_main,
                                NULL) != 0) {
        SR_ERROR("main", "cannot start the %s finder; stopping", finder->name);
        on_signal(&sig_term, SIGTERM);
        start_failed = true;
    }
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* Drained (or gave up): tear down in gRPC's order. */
    sr_admin_stop(); /* before the walk: it frees its connections itself */
    if (finder) finder->stop();
    uv_walk(&loop, close_handle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    grpc_server_destroy(rt.server);
    rt.server = NULL;
    for (uint32_t i = 0; i < rt.n_workers; i++) grpc_completion_queue_shutdown(rt.workers[i].cq);
    for (uint32_t i = 0; i < rt.n_workers; i++) pthread_join(rt.workers[i].thread, NULL);
    log_stats("final");
    /* the workers are gone: every configuration a reload replaced can go */
    sr_reload_collect(&rt, INT64_MAX);
    if (rt.cfg != rt.cfg_boot) {
        struct sr_config *last = (struct sr_config *)rt.cfg;
        rt.cfg = rt.cfg_boot;
        sr_config_deinit(last);
        free(last);
    }
    rc = start_failed ? 1 : 0;
out_workers:
    for (uint32_t i = 0; i < rt.n_workers && rt.workers; i++) sr_worker_deinit(&rt.workers[i]);
    free(rt.workers);
out_server:
    if (rt.server) grpc_server_destroy(rt.server);
    sr_disk_shared_close(&rt.disk);
    sr_upstream_deinit(&rt.up);
out_grpc:
    sr_conn_limit_shutdown(); /* after grpc_server_destroy; a no-op if never started */
    grpc_shutdown();
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"print-config", no_argument, NULL, 'p'}, {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONFIG;
    struct sr_config cfg;
    bool check = false, print = false;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'p':
            print = true;
            break;
        case 'v':
            printf("skyrelay %s (grpc core %s)\n", SR_VERSION, grpc_version_string());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "skyrelay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (sr_config_load(&cfg, path, stderr) != 0) {
        fprintf(stderr, "skyrelay: invalid configuration %s\n", path);
        sr_config_deinit(&cfg);
        return 1;
    }
    if (print) {
        rc = sr_config_print(&cfg, stdout) == 0 ? 0 : 1;
        sr_config_deinit(&cfg);
        return rc;
    }
    if (check) {
        /* the TLS files too: a certificate that does not load, or a key of another
         * certificate, would stop the start */
        if (sr_tls_check_files(&cfg, stderr) != 0) {
            fprintf(stderr, "skyrelay: invalid TLS files in configuration %s\n", path);
            sr_config_deinit(&cfg);
            return 1;
        }
        printf("%s: OK (listen %s, %zu upstream nodes)\n", path, cfg.server.address,
               cfg.upstream.n_nodes);
        sr_config_deinit(&cfg);
        return 0;
    }
    sr_log_level = cfg.log.level;
    rc = run(&cfg);
    sr_config_deinit(&cfg);
    return rc;
}
