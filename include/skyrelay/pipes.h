/* The pipe definition table: one row per async batched pipe, the single
 * place a pipe is described (src/core/pipes.c). Everything else that is per
 * pipe is derived from it:
 *
 *   name, modes           config keys pipes.<name>.* and pipes.<name>.upstream_method,
 *                         sr_pipe_name (YAML, /metrics labels, logs)
 *   methods               the method table (sr_method_find), the method → message
 *                         descriptor map (sr_schema_for_method)
 *   plans                 sr_plan_for (one plan per mode)
 *   routing               the pipe's built-in routing policy (sr_config_defaults)
 *
 * The rows are indexed by enum sr_pipe_id (config.h). Read-only, any thread. */
#ifndef SKYRELAY_PIPES_H
#define SKYRELAY_PIPES_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "skyrelay/config.h"
#include "skyrelay/context.h"
#include "skyrelay/method.h"
#include "skyrelay/sender.h"

/* A method that feeds a pipe. */
struct sr_pipe_method {
    /* "Service/method": a skywalking.v3 service, served both as "/skywalking.v3.Service/method"
     * and as the package-less "/Service/method" (old agents); or a full path ("/envoy..."),
     * served as written. NULL ends a pipe's list. */
    const char *path;
    enum sr_recv_kind kind;
    const struct sr_ctx_spec *ctx; /* stream context; NULL: none */
    uint32_t key_fields[2];        /* without ctx: (service, serviceInstance) fields; 0 = none */
    const ProtobufCMessageDescriptor *schema; /* the message the client sends (validation) */
};

struct sr_pipe_def {
    const char *name; /* YAML (pipes.<name>), /metrics label, logs */
    const struct sr_pipe_method *methods; /* ended by a NULL path */
    /* The upstream plan of each mode, indexed by the mode (struct sr_pipe_config.mode),
     * NULL-terminated. */
    const struct sr_plan *const *plans;
    /* The pipes.<name>.upstream_method values, one per plan, NULL-terminated; NULL for a
     * pipe with one mode (it has no upstream_method key). */
    const char *const *modes;
    /* The built-in upstream_method: an index into modes (0: the first). */
    int default_mode;
    /* The built-in routing.policy (a balancer name, e.g. "fixed"); NULL: the generic default. */
    const char *routing;
    /* Its events carry an identity (stream context, key fields or a collection's identity):
     * keyed routing and grouping by key see distinct keys. false: every key is 0. */
    bool keyed;
};

/* The table, SR_PIPE_COUNT rows indexed by enum sr_pipe_id. */
extern const struct sr_pipe_def sr_pipe_defs[SR_PIPE_COUNT];

/* The row of a pipe, or NULL past the last pipe. */
const struct sr_pipe_def *sr_pipe_def(enum sr_pipe_id id);

/* How many modes (plans) a pipe has: 1 for a pipe without upstream_method. */
int sr_pipe_mode_count(const struct sr_pipe_def *d);

/* The SkyWalking package served in front of a relative method path. */
#define SR_PIPE_SW_PACKAGE "/skywalking.v3."

#endif
