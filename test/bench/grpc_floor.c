/* grpc_floor: the receive-only floor of the gRPC C core API (issue 13, docs/performance.md
 * "Receive side and the gRPC floor").
 *
 * A minimal server that does, per received message, only what skyrelay cannot avoid: one
 * RECV_MESSAGE batch and its completion. It accepts any call (grpc_server_request_call),
 * posts RECV_CLOSE_ON_SERVER, receives each message with one RECV_MESSAGE batch, counts it
 * (no decode, no queue) and answers the client's half-close with initial metadata, an empty
 * message and OK in one batch, as skyrelay does. Its CPU per message is what skyrelay's
 * receive side costs at best with this gRPC.
 *
 *   --cq next       N threads, each with its own GRPC_CQ_NEXT queue and a
 *                   grpc_completion_queue_next loop (skyrelay's worker model)
 *   --cq callback   N GRPC_CQ_CALLBACK queues (grpc_completion_queue_functor tags, inlineable:
 *                   run inside gRPC's own call stack when an ApplicationCallbackExecCtx is
 *                   there) and N threads that drive the poller by waiting on an empty
 *                   GRPC_CQ_NEXT queue each
 *
 * Server channel args: those skyrelay sets with its shipped config (max receive 50 MiB,
 * 1,000 streams per connection, keepalive 60 s / 20 s, permit without calls, BDP probe off),
 * then every --arg KEY=INT in order (a later one wins).
 *
 * --absl-deadlock-check off (the default, as skyrelay since 80fed40):
 * absl::SetMutexDeadlockDetectionMode(kIgnore) before grpc_init (found with dlsym; Debian's
 * abseil is built without NDEBUG, so every gpr_mu lock pays for the lock-order graph with on).
 *
 * Counting: relaxed atomics per thread; the main thread rewrites --summary (JSON) every
 * 100 ms when it changed and prints it on SIGTERM/SIGINT, then exits. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PENDING_REQUESTS 32 /* request_call kept outstanding per queue, as skyrelay */
#define MAX_THREADS 64
#define MAX_ARGS 32

struct counters {
    _Atomic uint64_t messages, bytes, calls, calls_ok, callbacks, callbacks_off_poller;
    struct counters *next;
    char pad[64];
};

static struct {
    const char *listen, *summary;
    int threads;
    bool callback;
    bool deadlock_check;
    grpc_arg args[MAX_ARGS];
    int nargs;
} opt = {.listen = "127.0.0.1:0", .threads = 2, .deadlock_check = false};

static grpc_server *server;
static grpc_completion_queue *cqs[MAX_THREADS];  /* calls live here */
static grpc_completion_queue *pcqs[MAX_THREADS]; /* callback mode: the pollers' empty queues */
static pthread_mutex_t ctr_mu = PTHREAD_MUTEX_INITIALIZER;
static struct counters *ctr_list;
static _Thread_local struct counters *tl_ctr;
static _Thread_local bool tl_poller;

static struct counters *ctr(void)
{
    if (!tl_ctr) {
        tl_ctr = calloc(1, sizeof(*tl_ctr));
        if (!tl_ctr) abort();
        pthread_mutex_lock(&ctr_mu);
        tl_ctr->next = ctr_list;
        ctr_list = tl_ctr;
        pthread_mutex_unlock(&ctr_mu);
    }
    return tl_ctr;
}

#define CNT(field, n) atomic_fetch_add_explicit(&ctr()->field, (n), memory_order_relaxed)

/* A tag: the functor first (callback queues call functor_run), fn for the next queues. */
struct fcall;
struct tag {
    grpc_completion_queue_functor f;
    void (*fn)(struct fcall *c, bool ok);
    struct fcall *c;
};

struct fcall {
    struct tag t_new, t_recv, t_send, t_close;
    int q; /* index of its queue */
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *rbuf;
    grpc_byte_buffer *sbuf;
    int cancelled;
    atomic_int refs;
};

static void arm_request(int q);

static void unref(struct fcall *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    if (c->rbuf) grpc_byte_buffer_destroy(c->rbuf);
    if (c->sbuf) grpc_byte_buffer_destroy(c->sbuf);
    if (c->call) grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

static void start(struct fcall *c, const grpc_op *ops, size_t n, struct tag *t)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "grpc_floor: start_batch: %s\n", grpc_call_error_to_string(e));
        abort();
    }
}

static void arm_recv(struct fcall *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->rbuf;
    start(c, &op, 1, &c->t_recv);
}

static void on_new(struct fcall *c, bool ok)
{
    grpc_op op;
    if (!ok) { /* shutting down */
        unref(c);
        return;
    }
    arm_request(c->q);
    CNT(calls, 1);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    start(c, &op, 1, &c->t_close);
    arm_recv(c);
    unref(c); /* the request's reference */
}

static void on_recv(struct fcall *c, bool ok)
{
    grpc_byte_buffer *bb = c->rbuf;
    c->rbuf = NULL;
    if (!ok) {
        if (bb) grpc_byte_buffer_destroy(bb);
    } else if (bb) {
        CNT(messages, 1);
        CNT(bytes, grpc_byte_buffer_length(bb));
        grpc_byte_buffer_destroy(bb);
        arm_recv(c);
    } else { /* half-close: empty response + OK, as skyrelay answers a collect stream */
        grpc_op ops[3];
        memset(ops, 0, sizeof(ops));
        c->sbuf = grpc_raw_byte_buffer_create(NULL, 0);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = c->sbuf;
        ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
        start(c, ops, 3, &c->t_send);
    }
    unref(c);
}

static void on_send(struct fcall *c, bool ok)
{
    if (ok) CNT(calls_ok, 1);
    unref(c);
}

static void on_close(struct fcall *c, bool ok)
{
    unref(c);
}

/* callback queues: gRPC calls this with the tag (the functor is its first member) */
static void functor_run(grpc_completion_queue_functor *f, int ok)
{
    struct tag *t = (struct tag *)f;
    CNT(callbacks, 1);
    if (!tl_poller) CNT(callbacks_off_poller, 1);
    t->fn(t->c, ok != 0);
}

static void init_tag(struct tag *t, struct fcall *c, void (*fn)(struct fcall *, bool))
{
    t->f.functor_run = functor_run;
    t->f.inlineable = 1;
    t->fn = fn;
    t->c = c;
}

static void arm_request(int q)
{
    struct fcall *c = calloc(1, sizeof(*c));
    grpc_call_error e;
    if (!c) abort();
    c->q = q;
    init_tag(&c->t_new, c, on_new);
    init_tag(&c->t_recv, c, on_recv);
    init_tag(&c->t_send, c, on_send);
    init_tag(&c->t_close, c, on_close);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    atomic_init(&c->refs, 1);
    e = grpc_server_request_call(server, &c->call, &c->details, &c->md, cqs[q], cqs[q], &c->t_new);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "grpc_floor: request_call: %s\n", grpc_call_error_to_string(e));
        abort();
    }
}

static void *thread_main(void *arg)
{
    int q = (int)(intptr_t)arg;
    grpc_completion_queue *cq = opt.callback ? pcqs[q] : cqs[q];
    tl_poller = true;
    (void)ctr();
    if (!opt.callback)
        for (int i = 0; i < PENDING_REQUESTS; i++) arm_request(q);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            t->fn(t->c, ev.success != 0);
        }
    }
    return NULL;
}

static void cq_shutdown_done(grpc_completion_queue_functor *f, int ok)
{
    (void)f;
    (void)ok;
}
static grpc_completion_queue_functor shutdown_functor = {.functor_run = cq_shutdown_done};

static int summary_text(char *buf, size_t n)
{
    uint64_t m = 0, b = 0, c = 0, ok = 0, cb = 0, off = 0;
    pthread_mutex_lock(&ctr_mu);
    for (struct counters *x = ctr_list; x; x = x->next) {
        m += atomic_load_explicit(&x->messages, memory_order_relaxed);
        b += atomic_load_explicit(&x->bytes, memory_order_relaxed);
        c += atomic_load_explicit(&x->calls, memory_order_relaxed);
        ok += atomic_load_explicit(&x->calls_ok, memory_order_relaxed);
        cb += atomic_load_explicit(&x->callbacks, memory_order_relaxed);
        off += atomic_load_explicit(&x->callbacks_off_poller, memory_order_relaxed);
    }
    pthread_mutex_unlock(&ctr_mu);
    return snprintf(buf, n,
                    "{\"messages\": %llu, \"bytes\": %llu, \"calls\": %llu, \"calls_ok\": %llu, "
                    "\"cq\": \"%s\", \"threads\": %d, \"callbacks\": %llu, "
                    "\"callbacks_off_poller\": %llu}\n",
                    (unsigned long long)m, (unsigned long long)b, (unsigned long long)c,
                    (unsigned long long)ok, opt.callback ? "callback" : "next", opt.threads,
                    (unsigned long long)cb, (unsigned long long)off);
}

static void write_summary(char *last, size_t n_last)
{
    char buf[512], tmp[4096];
    FILE *f;
    summary_text(buf, sizeof(buf));
    if (!opt.summary || strcmp(buf, last) == 0) return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", opt.summary);
    f = fopen(tmp, "w");
    if (!f) return;
    fputs(buf, f);
    if (fclose(f) == 0 && rename(tmp, opt.summary) == 0) snprintf(last, n_last, "%s", buf);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: grpc_floor [--listen HOST:PORT] [--threads N] [--cq next|callback]\n"
            "                  [--summary FILE] [--arg KEY=INT]... [--lookahead BYTES]\n"
            "                  [--max-frame BYTES] [--absl-deadlock-check on|off]\n"
            "  receive-only gRPC server: one RECV_MESSAGE per message, counted, not decoded;\n"
            "  OK + empty message at the half-close. Prints the counts on SIGTERM/SIGINT.\n"
            "  --arg             a server channel arg, e.g. grpc.http2.lookahead_bytes=1048576\n"
            "  --lookahead       = --arg " GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES "=BYTES\n"
            "  --max-frame       = --arg " GRPC_ARG_HTTP2_MAX_FRAME_SIZE "=BYTES\n");
    return 2;
}

static int add_arg(const char *key, long v)
{
    char *k;
    if (opt.nargs >= MAX_ARGS) return -1;
    for (int i = 0; i < opt.nargs; i++)
        if (strcmp(opt.args[i].key, key) == 0) {
            opt.args[i].value.integer = (int)v;
            return 0;
        }
    k = strdup(key);
    if (!k) return -1;
    opt.args[opt.nargs].type = GRPC_ARG_INTEGER;
    opt.args[opt.nargs].key = k;
    opt.args[opt.nargs].value.integer = (int)v;
    opt.nargs++;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    /* skyrelay's server args with the shipped config (src/main.c run()) */
    add_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 50L << 20);
    add_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1000);
    add_arg(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
    add_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
    add_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    add_arg(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char key[256], *eq, *end;
        long n;
        if (!v) return usage();
        i++;
        if (strcmp(a, "--listen") == 0) {
            opt.listen = v;
        } else if (strcmp(a, "--summary") == 0) {
            opt.summary = v;
        } else if (strcmp(a, "--threads") == 0) {
            opt.threads = atoi(v);
            if (opt.threads < 1 || opt.threads > MAX_THREADS) return usage();
        } else if (strcmp(a, "--cq") == 0) {
            if (strcmp(v, "next") == 0)
                opt.callback = false;
            else if (strcmp(v, "callback") == 0)
                opt.callback = true;
            else
                return usage();
        } else if (strcmp(a, "--absl-deadlock-check") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) return usage();
            opt.deadlock_check = strcmp(v, "on") == 0;
        } else if (strcmp(a, "--lookahead") == 0 || strcmp(a, "--max-frame") == 0) {
            n = strtol(v, &end, 10);
            if (*end || n < 0) return usage();
            add_arg(a[2] == 'l' ? GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES : GRPC_ARG_HTTP2_MAX_FRAME_SIZE,
                    n);
        } else if (strcmp(a, "--arg") == 0) {
            eq = strchr(v, '=');
            if (!eq || (size_t)(eq - v) >= sizeof(key)) return usage();
            memcpy(key, v, (size_t)(eq - v));
            key[eq - v] = 0;
            n = strtol(eq + 1, &end, 10);
            if (*end || end == eq + 1) return usage();
            if (add_arg(key, n) != 0) return usage();
        } else {
            return usage();
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    grpc_channel_args chargs;
    grpc_server_credentials *creds;
    pthread_t th[MAX_THREADS];
    sigset_t set;
    int port;
    char last[512] = "";
    char buf[512];

    if (parse_args(argc, argv) != 0) return 2;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (!opt.deadlock_check) {
        /* absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore) */
        void (*set_mode)(int) = (void (*)(int))dlsym(
            RTLD_DEFAULT, "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
        if (!set_mode) {
            fprintf(stderr, "grpc_floor: absl::SetMutexDeadlockDetectionMode not found\n");
            return 1;
        }
        set_mode(0);
    }
    grpc_init();
    chargs.num_args = (size_t)opt.nargs;
    chargs.args = opt.args;
    server = grpc_server_create(&chargs, NULL);
    for (int i = 0; i < opt.threads; i++) {
        if (opt.callback) {
            cqs[i] = grpc_completion_queue_create_for_callback(&shutdown_functor, NULL);
            pcqs[i] = grpc_completion_queue_create_for_next(NULL);
            grpc_server_register_completion_queue(server, pcqs[i], NULL);
        } else {
            cqs[i] = grpc_completion_queue_create_for_next(NULL);
        }
        grpc_server_register_completion_queue(server, cqs[i], NULL);
    }
    creds = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(server, opt.listen, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "grpc_floor: cannot listen on %s\n", opt.listen);
        return 1;
    }
    grpc_server_start(server);
    if (opt.callback)
        for (int q = 0; q < opt.threads; q++)
            for (int i = 0; i < PENDING_REQUESTS; i++) arm_request(q);
    for (int i = 0; i < opt.threads; i++)
        if (pthread_create(&th[i], NULL, thread_main, (void *)(intptr_t)i) != 0) return 1;
    printf("grpc_floor: listening on port %d, %d threads, %s completion queues, absl deadlock "
           "check %s, %d server args\n",
           port, opt.threads, opt.callback ? "callback" : "next", opt.deadlock_check ? "on" : "off",
           opt.nargs);
    for (int i = 0; i < opt.nargs; i++) printf("  %s=%d\n", opt.args[i].key, opt.args[i].value.integer);
    fflush(stdout);
    write_summary(last, sizeof(last));
    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        write_summary(last, sizeof(last));
        if (sig == SIGTERM || sig == SIGINT) break;
    }
    summary_text(buf, sizeof(buf));
    fputs(buf, stdout);
    fflush(stdout);
    /* counted and written: no orderly teardown, a benchmark's server just ends */
    exit(0);
}
