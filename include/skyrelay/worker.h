/* Workers: the data path threads.
 *
 * Each worker owns one completion queue, keeps its own grpc_server_request_call
 * pending on it, and owns a partition of every pipe's queue. A message it
 * receives goes into its own partition; the same worker cuts batches from that
 * partition and runs the upstream calls on the same completion queue. So
 * receive, queue, batch and send of a message happen on one thread, without a
 * lock. The linger deadline is the timeout of the worker's cq_next. While a
 * partition is full, the worker does not re-arm RECV_MESSAGE on the calls that
 * feed it (HTTP/2 flow control pushes back on the agent). */
#ifndef SKYRELAY_WORKER_H
#define SKYRELAY_WORKER_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/clock.h"
#include "skyrelay/config.h"
#include "skyrelay/disklog.h"
#include "skyrelay/method.h"
#include "skyrelay/metrics.h"
#include "skyrelay/queue.h"
#include "skyrelay/router.h"
#include "skyrelay/sender.h"
#include "skyrelay/upstream.h"

struct sr_worker;
struct sr_tag;

/* Every completion-queue tag is a struct sr_tag embedded in the object it belongs to. */
typedef void (*sr_tag_fn)(struct sr_worker *w, struct sr_tag *t, bool ok);
struct sr_tag {
    sr_tag_fn fn;
};

struct sr_dcall;
struct sr_ucall;
struct sr_cds;

/* A process CPU reading (self meters' CPU gauge). */
struct sr_cpu_sample {
    double cpu_seconds;
    int64_t wall_ms;
};

/* One pipe as seen by one worker. */
struct sr_pipe_rt {
    enum sr_pipe_id id;
    const struct sr_pipe_config *cfg;
    const struct sr_plan *plan;
    grpc_slice method; /* upstream method path, static slice */
    const char *token; /* upstream.authentication, NULL = none */
    struct sr_partition part;
    struct sr_disklog disk; /* queue.disk: the partition's log (part.disk points here when on) */
    struct sr_balancer *balancer;
    struct sr_dcall *wait_head, *wait_tail; /* calls paused on the full partition, FIFO */
    bool keyed;      /* events need their key: grouped plan or keyed routing */
    bool key_routing; /* the balancer routes by key (units picked one by one) */
    bool cap_wait;   /* a unit waits for a node under its in-flight cap */
    uint16_t *node_calls; /* this pipe's calls in flight per node index (SR_MAX_NODES) */
    bool dirty;      /* something changed (push, completion): run the sender */
    bool room;       /* the sender released a batch: resume paused calls */
    int64_t wake_ms; /* else run it at this time (linger, retry); INT64_MAX = never */
};

struct sr_runtime;
struct sr_retired_cfg;

struct sr_worker {
    uint32_t id;
    pthread_t thread;
    grpc_completion_queue *cq;
    struct sr_runtime *rt;
    struct sr_pipe_rt pipes[SR_PIPE_COUNT];
    struct sr_worker_counters ctr;
    struct sr_budget budget;          /* this worker's share of queue.total_max_bytes */
    uint32_t live_dcalls;    /* accepted downstream calls not yet freed */
    uint32_t live_ucalls;    /* upstream calls in flight */
    uint32_t pending_requests; /* request_call outstanding */
    struct sr_ucall *ucalls;   /* upstream calls in flight (for cancellation) */
    struct sr_balancer *relay_balancer; /* node choice of sync and relayed calls */
    uint64_t node_gen;                  /* node-set generation the balancers were built on */
    uint64_t readmits;                  /* up.readmits its senders' timers have seen */
    uint64_t rng;
    int64_t now_ms; /* cached at each loop turn */
    bool drained;   /* reported idle to the main thread */
    int64_t self_meter_next_ms;        /* worker 0: next self-meter report */
    struct sr_cpu_sample cpu_state;    /* previous CPU reading, for the CPU gauge */
    _Atomic int idle;
    int64_t stall_check_ms;  /* next look for stalled upstream calls */
    int64_t disk_tick_ms;    /* next disk queue housekeeping (flush, sync, truncate) */
    uint64_t cfg_gen;        /* the configuration generation its pipes were set up from */
    uint64_t dead_letters;   /* files written to queue.dead_letter_dir */
    struct sr_cds *cds;      /* worker 0: fetchConfigurations (src/server/cds.c) */
};

struct sr_runtime {
    const struct sr_config *_Atomic cfg; /* swapped by a reload (src/server/reload.c); the old one is freed a minute later */
    grpc_server *server;
    struct sr_upstream up;
    struct sr_worker *workers;
    uint32_t n_workers;
    _Atomic int draining;   /* SIGTERM: the server stopped accepting; flush everything */
    _Atomic int force_stop; /* the grace period ended: give up what is left, counted */
    struct sr_tag shutdown_tag;
    _Atomic int server_shutdown_done;
    struct sr_disk_shared disk; /* queue.disk.dir; disk.dir NULL = memory only */
    /* reload (src/server/reload.c) */
    const struct sr_config *cfg_boot;  /* loaded at start, owned by main() */
    _Atomic uint64_t cfg_gen;          /* bumped when a reload publishes a new cfg */
    struct sr_retired_cfg *retired;    /* replaced configs, freed a minute later (main thread) */
    _Atomic uint64_t reloads_ok, reloads_failed;
    _Atomic uint32_t reload_restart_pending; /* settings the last reload could not apply */
    void *cds_method[2]; /* registered fetchConfigurations paths (sr_cds_register) */
};


/* Sets up w (its completion queue, registered with rt->server, and partitions).
 * Call before grpc_server_start. Returns 0 or -1. */
int sr_worker_init(struct sr_worker *w, struct sr_runtime *rt, uint32_t id);

/* Starts the thread (after grpc_server_start). Returns 0 or -1. */
int sr_worker_start(struct sr_worker *w);

/* Frees what sr_worker_init allocated; the thread must have ended. */
void sr_worker_deinit(struct sr_worker *w);

/* Resumes the calls paused on p's partition while it has room (in order).
 * The loop calls it when the sender set p->room. Worker thread. */
void sr_worker_room(struct sr_worker *w, struct sr_pipe_rt *p);

#endif
