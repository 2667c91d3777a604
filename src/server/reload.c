/* Hot reload. See include/skyrelay/reload.h.
 *
 * Why a new object rather than changing the running one: workers, the admin
 * thread and the finders read the configuration without a lock. A reload
 * builds a complete new struct sr_config, gives it back the settings that
 * cannot change live (src/config/merge.c), and swaps rt->cfg (an atomic
 * pointer); a generation counter tells each worker to re-read what it caches
 * (its pipes' settings, tokens, balancers) at its next loop turn. The old
 * object may still be read for a moment by a thread that loaded the pointer
 * before the swap, so it is freed a minute later (a loop turn is at most
 * 100 ms; a /metrics render takes milliseconds), not at once. */
#include "skyrelay/reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/buf.h"
#include "skyrelay/clock.h"
#include "skyrelay/config.h"
#include "skyrelay/log.h"
#include "skyrelay/worker.h"

#define RETIRE_MS 60000

struct sr_retired_cfg {
    struct sr_config *cfg;
    int64_t at_ms;
    struct sr_retired_cfg *next;
};

static void retire(struct sr_runtime *rt, const struct sr_config *old)
{
    struct sr_retired_cfg *r;
    if (old == rt->cfg_boot) return; /* main() owns it */
    r = malloc(sizeof(*r));
    if (!r) { /* leak it rather than free it under a reader */
        SR_WARN("reload", "out of memory retiring the previous configuration (kept)");
        return;
    }
    r->cfg = (struct sr_config *)old;
    r->at_ms = sr_now_ms();
    r->next = rt->retired;
    rt->retired = r;
}

void sr_reload_collect(struct sr_runtime *rt, int64_t now_ms)
{
    struct sr_retired_cfg **pp = &rt->retired;
    while (*pp) {
        struct sr_retired_cfg *r = *pp;
        if (now_ms != INT64_MAX && now_ms - r->at_ms < RETIRE_MS) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        sr_config_deinit(r->cfg);
        free(r->cfg);
        free(r);
    }
}

/* Logs the loader's messages, one line each. */
static void log_errors(char *text)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        SR_ERROR("reload", "%s", line);
}

int sr_reload(struct sr_runtime *rt)
{
    const struct sr_config *cur = rt->cfg;
    struct sr_config *next = calloc(1, sizeof(*next));
    char *errors = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&errors, &len);
    struct sr_buf notes;
    int kept, rc;

    sr_buf_init(&notes);
    SR_INFO("reload", "SIGHUP: reading %s", cur->path);
    if (!next || !err) {
        SR_ERROR("reload", "out of memory; the running configuration stays");
        rc = -ENOMEM;
        goto failed;
    }
    if (sr_config_load(next, cur->path, err) != 0) {
        fclose(err);
        err = NULL;
        if (errors) log_errors(errors);
        SR_ERROR("reload", "%s is not valid: the running configuration stays", cur->path);
        rc = -EINVAL;
        goto failed;
    }
    fclose(err);
    err = NULL;
    kept = sr_config_keep_restart_only(next, cur, &notes);
    if (kept < 0) {
        SR_ERROR("reload", "out of memory; the running configuration stays");
        rc = kept;
        goto failed;
    }
    if (kept)
        SR_WARN("reload", "%d setting(s) need a restart and keep their running value: %s", kept,
                notes.p);
    sr_buf_free(&notes);

    /* publish: workers re-read their pipes' settings at their next loop turn */
    atomic_store(&rt->cfg, next);
    atomic_fetch_add(&rt->cfg_gen, 1);
    if (next->upstream.finder == SR_FINDER_STATIC) {
        size_t changes = sr_upstream_apply(&rt->up, next->upstream.nodes, next->upstream.n_nodes,
                                           sr_now_ms());
        if (changes)
            SR_INFO("reload", "node set: %zu node(s), %zu change(s)", (size_t)rt->up.present,
                    changes);
    }
    retire(rt, cur);
    sr_reload_collect(rt, sr_now_ms());
    atomic_fetch_add(&rt->reloads_ok, 1);
    atomic_store(&rt->reload_restart_pending, (uint32_t)kept);
    SR_INFO("reload", "%s applied%s", next->path, kept ? " (see: needs a restart)" : "");
    sr_log_level = next->log.level; /* last: the line above is written at the old level */
    free(errors);
    return kept;
failed:
    if (err) fclose(err);
    free(errors);
    sr_buf_free(&notes);
    if (next) {
        sr_config_deinit(next);
        free(next);
    }
    atomic_fetch_add(&rt->reloads_failed, 1);
    return rc;
}
