/* The registry of finders: main starts, stops and reads the stats of the one
 * upstream.finder names through its table. */
#include <string.h>

#include "skyrelay/discovery.h"

/* static: the configured list is applied once at start (sr_upstream_init). */
static const struct sr_config *static_cfg;

static int static_start(struct uv_loop_s *loop, const struct sr_config *cfg,
                        sr_nodes_publish_fn publish, void *arg)
{
    (void)loop;
    (void)publish;
    (void)arg;
    static_cfg = cfg;
    return 0;
}

static void static_stop(void)
{
}

static void static_stats(struct sr_discovery_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (static_cfg) {
        out->updates = 1;
        out->nodes = static_cfg->upstream.n_nodes;
    }
}

static int dns_start(struct uv_loop_s *loop, const struct sr_config *cfg,
                     sr_nodes_publish_fn publish, void *arg)
{
    return sr_dns_finder_start(loop, cfg, publish, arg);
}

static int k8s_start(struct uv_loop_s *loop, const struct sr_config *cfg,
                     sr_nodes_publish_fn publish, void *arg)
{
    (void)loop;
    return sr_k8s_finder_start(&cfg->upstream.kubernetes, publish, arg);
}

static const struct sr_finder_type finders[] = {
    [SR_FINDER_STATIC] = {"static", false, static_start, static_stop, static_stats},
    [SR_FINDER_DNS] = {"dns", false, dns_start, sr_dns_finder_stop, sr_dns_finder_stats},
    [SR_FINDER_KUBERNETES] = {"kubernetes", true, k8s_start, sr_k8s_finder_stop,
                              sr_k8s_finder_stats},
};

const struct sr_finder_type *sr_finder_for(int finder)
{
    if (finder < 0 || (size_t)finder >= sizeof(finders) / sizeof(finders[0])) return NULL;
    return &finders[finder];
}
