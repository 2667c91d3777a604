/* Node lists handed from a finder to its publish callback. */
#include <stdlib.h>

#include "skyrelay/discovery.h"

void sr_discovery_free_nodes(struct sr_node_config *nodes, size_t n)
{
    if (!nodes) return;
    for (size_t i = 0; i < n; i++) free(nodes[i].address);
    free(nodes);
}
