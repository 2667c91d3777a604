/* Shared by the admin files (src/admin/), not part of the module's API. */
#ifndef SKYRELAY_ADMIN_INTERNAL_H
#define SKYRELAY_ADMIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "skyrelay/upstream.h"

/* True if n counts for readiness at now_ms (the rule is in ready.c). May ask
 * n's channel to connect. Main thread (any thread is safe). */
bool sr_node_reachable(struct sr_node *n, int64_t now_ms);

#endif
