/* Hot reload (SIGHUP): the configuration file is read again; a valid one is
 * published to the workers without dropping a connection or a queued event.
 * See src/server/reload.c. Main thread only. */
#ifndef SKYRELAY_RELOAD_H
#define SKYRELAY_RELOAD_H

#include <stdint.h>

struct sr_runtime;

/* Reads rt->cfg->path again. Invalid: every error is logged (file:line:col:
 * key: reason), the running configuration stays, -EINVAL. Valid: settings
 * that cannot change live keep their running value (logged as "needs
 * restart", src/config/merge.c), the rest is published (the workers pick it
 * up at their next loop turn: routing policies, tokens, sender settings,
 * timeouts, ...), the log level and the static node list are applied at once;
 * returns how many settings need a restart (>= 0). Counted in
 * rt->reloads_ok / reloads_failed. */
int sr_reload(struct sr_runtime *rt);

/* Frees the configurations replaced more than a minute before now_ms
 * (INT64_MAX: all, at exit, once the workers have stopped). */
void sr_reload_collect(struct sr_runtime *rt, int64_t now_ms);

#endif
