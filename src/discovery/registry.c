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

const struct sr_finder_type sr_finder_static = {"static", false, static_start, static_stop,
                                                 static_stats};
const struct sr_finder_type sr_finder_dns = {"dns", false, dns_start, sr_dns_finder_stop,
                                              sr_dns_finder_stats};
const struct sr_finder_type sr_finder_kubernetes = {"kubernetes", true, k8s_start,
                                                     sr_k8s_finder_stop, sr_k8s_finder_stats};

/* from the one list in config.h: finders[f] implements upstream.finder f */
static const struct sr_finder_type *const finders[] = {
#define TYPE_(id, name, type) &type,
    SR_FINDERS(TYPE_)
#undef TYPE_
};

const struct sr_finder_type *sr_finder_for(int finder)
{
    if (finder < 0 || finder >= SR_FINDER_COUNT) return NULL;
    return finders[finder];
}
