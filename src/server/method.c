/* The method table: which pipe and receiver kind each gRPC method path feeds.
 *
 * The async rows are derived, once, from the pipe definition table
 * (src/core/pipes.c): a SkyWalking method ("Service/method") gives two rows,
 * "/skywalking.v3.Service/method" and the package-less "/Service/method" that
 * old agents call; a full path gives one. The sync pass-through and relay
 * methods, which feed no pipe, are listed here. Methods not listed are relayed
 * transparently. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/method.h"
#include "skyrelay/pipes.h"

#define SW SR_PIPE_SW_PACKAGE

#define SYNC(path) {path, SR_PIPE_COUNT, SR_RK_MESSAGE, NULL, {0, 0}, SR_MODE_SYNC}
#define SYNC2(svc, m) SYNC(SW svc "/" m), SYNC("/" svc "/" m)
#define RELAY(path) {path, SR_PIPE_COUNT, SR_RK_MESSAGE, NULL, {0, 0}, SR_MODE_RELAY}

static const struct sr_method passthrough[] = {
    SYNC2("ConfigurationDiscoveryService", "fetchConfigurations"),
    SYNC2("ProfileTask", "getProfileTaskCommands"),
    SYNC2("ProfileTask", "reportTaskFinish"),
    SYNC2("EBPFProcessService", "reportProcesses"),
    SYNC2("EBPFProcessService", "keepAlive"),
    SYNC2("EBPFProfilingService", "queryTasks"),
    SYNC2("ContinuousProfilingService", "queryPolicies"),
    SYNC2("ContinuousProfilingService", "reportProfilingTask"),
    SYNC("/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands"),
    SYNC("/skywalking.v10.PprofTask/getPprofTaskCommands"),

    RELAY("/skywalking.v10.AsyncProfilerTask/collect"),
    RELAY("/skywalking.v10.PprofTask/collect"),
    RELAY(SW "ProfileTask/goProfileReport"),
    RELAY("/ProfileTask/goProfileReport"),
};

#define N_PASSTHROUGH (sizeof passthrough / sizeof passthrough[0])
#define MAX_METHODS 160  /* rows; a pipe's method gives at most 2 */
#define PATH_POOL 12288  /* bytes of the derived async paths */

static struct sr_method table[MAX_METHODS];
static size_t table_len;
static char pool[PATH_POOL];
static size_t pool_len;
static pthread_once_t built = PTHREAD_ONCE_INIT;

/* A copy of a ‖ b in the pool. The table is fixed at build time: overflowing the pool
 * is a programming error (raise PATH_POOL), not a runtime condition. */
static const char *pool_path(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *p = pool + pool_len;

    if (n > PATH_POOL - pool_len || table_len >= MAX_METHODS) {
        fprintf(stderr, "skyrelay: method table too large (src/server/method.c)\n");
        abort();
    }
    snprintf(p, n, "%s%s", a, b);
    pool_len += n;
    return p;
}

static void add(const char *path, enum sr_pipe_id pipe, const struct sr_pipe_method *pm)
{
    table[table_len++] = (struct sr_method){path, pipe, pm->kind, pm->ctx,
                                            {pm->key_fields[0], pm->key_fields[1]}, SR_MODE_ASYNC};
}

static void build(void)
{
    for (int i = 0; i < SR_PIPE_COUNT; i++)
        for (const struct sr_pipe_method *pm = sr_pipe_defs[i].methods; pm->path; pm++) {
            if (pm->path[0] == '/') {
                add(pm->path, (enum sr_pipe_id)i, pm);
            } else {
                add(pool_path(SW, pm->path), (enum sr_pipe_id)i, pm);
                add(pool_path("/", pm->path), (enum sr_pipe_id)i, pm);
            }
        }
    if (table_len + N_PASSTHROUGH > MAX_METHODS) {
        fprintf(stderr, "skyrelay: method table too large (src/server/method.c)\n");
        abort();
    }
    memcpy(table + table_len, passthrough, sizeof passthrough);
    table_len += N_PASSTHROUGH;
}

const struct sr_method *sr_method_table(size_t *n)
{
    pthread_once(&built, build);
    *n = table_len;
    return table;
}

const struct sr_method *sr_method_find(const char *path, size_t len)
{
    size_t n;
    const struct sr_method *t = sr_method_table(&n);

    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].path) == len && memcmp(t[i].path, path, len) == 0) return &t[i];
    return NULL;
}
