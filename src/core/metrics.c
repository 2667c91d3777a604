/* Names for counters' label values. */
#include "skyrelay/metrics.h"

const char *sr_drop_reason_name(enum sr_drop_reason r)
{
    switch (r) {
    case SR_DROP_RETRY_EXHAUSTED:
        return "retry_exhausted";
    case SR_DROP_UPSTREAM_REJECTED:
        return "upstream_rejected";
    case SR_DROP_SHUTDOWN:
        return "shutdown";
    default:
        return "unknown";
    }
}
