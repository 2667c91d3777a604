/* Readiness of the process (/readyz, skyrelay_server_ready): the gRPC server
 * exists and is not draining, and an upstream node is reachable (the rule is
 * sr_upstream_reachable's, src/upstream/ready.c). Any thread. */
#include "skyrelay/admin.h"
#include "internal.h"

bool sr_ready(struct sr_runtime *rt)
{
    if (!rt || !rt->server || atomic_load(&rt->draining)) return false;
    return sr_upstream_reachable(&rt->up, sr_now_ms());
}
