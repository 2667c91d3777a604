/* The upstream plan of a pipe under its mode: the row's plan of that mode in
 * the pipe definition table (src/core/pipes.c, where the plans are defined
 * with the OAP rule behind each). See include/skyrelay/sender.h. */
#include "skyrelay/pipes.h"
#include "skyrelay/sender.h"

const struct sr_plan *sr_plan_for(enum sr_pipe_id pipe, int mode)
{
    const struct sr_pipe_def *d = sr_pipe_def(pipe);

    if (!d) return NULL;
    /* a mode the pipe does not have (a pipe without upstream_method) is its first */
    return mode > 0 && mode < sr_pipe_mode_count(d) ? d->plans[mode] : d->plans[0];
}
