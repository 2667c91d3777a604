/* The global queue budget (queue.total_max_bytes). See include/skyrelay/queue.h.
 *
 * In a Kubernetes pod the memory limit is the cgroup's: a proxy that queues
 * more than it may hold is OOM-killed and loses everything it held. So by
 * default the queues may hold half of that limit (the other half is gRPC's
 * buffers, the code and the allocator's slack), and 512 MiB where no limit
 * is set. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "skyrelay/config.h"
#include "skyrelay/queue.h"

#define DEFAULT_BUDGET (512ull << 20)

/* The first number in `path`, or 0 when it is missing, "max" or absurdly large. */
static uint64_t read_limit(const char *path)
{
    char buf[64];
    uint64_t v = 0;
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0 &&
        sscanf(buf, "%" SCNu64, &v) != 1)
        v = 0;
    fclose(f);
    /* cgroup v1 reports "no limit" as a huge page-rounded number */
    if (v >= (1ull << 60)) v = 0;
    return v;
}

uint64_t sr_queue_budget_total(const struct sr_config *cfg, const char **source)
{
    uint64_t lim;
    if (cfg->queue.total_max_bytes) {
        if (source) *source = "queue.total_max_bytes";
        return cfg->queue.total_max_bytes;
    }
    lim = read_limit("/sys/fs/cgroup/memory.max");
    if (!lim) lim = read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (lim) {
        if (source) *source = "half of the cgroup memory limit";
        return lim / 2;
    }
    if (source) *source = "default (no cgroup memory limit)";
    return DEFAULT_BUDGET;
}
