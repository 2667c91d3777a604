/* Unit tests for src/core/pipes.c: the pipe definition table, and that what
 * is derived from it (config keys, method table, schema map, plans, names,
 * built-in routing) agrees with every row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/pipes.h"
#include "skyrelay/schema.h"

static void every_pipe_has_a_unique_name_a_method_and_a_plan(void **state)
{
    (void)state;
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const struct sr_pipe_def *d = sr_pipe_def((enum sr_pipe_id)i);
        assert_ptr_equal(d, &sr_pipe_defs[i]);
        if (!d->name || !d->name[0]) fail_msg("pipe %d has no name", i);
        assert_string_equal(sr_pipe_name((enum sr_pipe_id)i), d->name);
        if (!d->methods || !d->methods[0].path) fail_msg("%s: fed by no method", d->name);
        if (!d->plans || !d->plans[0]) fail_msg("%s: no plan", d->name);
        for (int j = 0; j < i; j++) assert_string_not_equal(d->name, sr_pipe_defs[j].name);
    }
    assert_null(sr_pipe_def(SR_PIPE_COUNT));
    assert_string_equal(sr_pipe_name(SR_PIPE_COUNT), "unknown");
}

/* upstream_method values and plans go by the same index; one mode means no values. */
static void modes_name_every_plan_or_none(void **state)
{
    (void)state;
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const struct sr_pipe_def *d = &sr_pipe_defs[i];
        int n = sr_pipe_mode_count(d), names = 0;
        if (!d->modes) {
            if (n != 1) fail_msg("%s: %d plans but no upstream_method names", d->name, n);
            continue;
        }
        while (d->modes[names]) names++;
        if (names != n || n < 2) fail_msg("%s: %d mode names, %d plans", d->name, names, n);
        for (int m = 0; m < n; m++)
            assert_ptr_equal(sr_plan_for((enum sr_pipe_id)i, m), d->plans[m]);
    }
}

/* Each method of a row is served on its pipe, under both names for a SkyWalking one, with
 * the row's kind, context and key fields; and validated against the row's message. */
static void methods_derive_the_method_table_and_the_schema_map(void **state)
{
    size_t n_table, n_async = 0;
    const struct sr_method *t = sr_method_table(&n_table);
    (void)state;
    for (int i = 0; i < SR_PIPE_COUNT; i++)
        for (const struct sr_pipe_method *pm = sr_pipe_defs[i].methods; pm->path; pm++) {
            char paths[2][256];
            int n_paths = 1;
            if (pm->path[0] == '/') {
                snprintf(paths[0], sizeof paths[0], "%s", pm->path);
            } else {
                snprintf(paths[0], sizeof paths[0], "/skywalking.v3.%s", pm->path);
                snprintf(paths[1], sizeof paths[1], "/%s", pm->path);
                n_paths = 2;
            }
            assert_non_null(pm->schema);
            for (int k = 0; k < n_paths; k++) {
                const struct sr_method *m = sr_method_find(paths[k], strlen(paths[k]));
                if (!m) fail_msg("%s: not served", paths[k]);
                assert_int_equal(m->mode, SR_MODE_ASYNC);
                assert_int_equal(m->pipe, i);
                assert_int_equal(m->kind, pm->kind);
                assert_ptr_equal(m->ctx, pm->ctx);
                assert_int_equal(m->key_fields[0], pm->key_fields[0]);
                assert_int_equal(m->key_fields[1], pm->key_fields[1]);
                assert_ptr_equal(sr_schema_for_method(paths[k], strlen(paths[k])), pm->schema);
                n_async++;
            }
        }
    /* and the table holds no other async row */
    for (size_t j = 0; j < n_table; j++)
        if (t[j].mode == SR_MODE_ASYNC) n_async--;
    assert_int_equal(n_async, 0);
}

/* keyed says whether events can carry an identity: stream context, key fields or a
 * meter collection's identity. A pipe whose plan groups by key must be keyed. */
static void keyed_matches_the_methods_and_the_plans(void **state)
{
    (void)state;
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const struct sr_pipe_def *d = &sr_pipe_defs[i];
        bool identity = false;
        for (const struct sr_pipe_method *pm = d->methods; pm->path; pm++)
            identity |= pm->ctx || pm->key_fields[0] || pm->kind == SR_RK_METER_COLLECTION;
        if (identity != d->keyed)
            fail_msg("%s: keyed is %d, its methods say %d", d->name, d->keyed, identity);
        for (int m = 0; d->plans[m]; m++)
            if (d->plans[m]->group_by_key && !d->keyed)
                fail_msg("%s: groups by key but is not keyed", d->name);
    }
}

/* The built-in routing of a row is a policy name the config knows, and is the default. */
static void routing_names_a_policy_and_is_the_pipes_default(void **state)
{
    struct sr_config cfg;
    (void)state;
    sr_config_defaults(&cfg);
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const char *want = sr_pipe_defs[i].routing ? sr_pipe_defs[i].routing : "round_robin";
        assert_string_equal(sr_routing_policy_name(cfg.pipes[i].routing.policy), want);
        assert_int_equal(cfg.pipes[i].mode, sr_pipe_defs[i].default_mode);
    }
    assert_string_equal(sr_pipe_defs[SR_PIPE_METER].routing, "fixed");
    assert_int_equal(cfg.pipes[SR_PIPE_SEGMENT].mode, SR_SEGMENT_COLLECT_IN_SYNC);
    sr_config_deinit(&cfg);
}

/* A pipe's modes are its pipes.<name>.upstream_method values: loading each selects it. */
static void each_mode_name_loads_as_upstream_method(void **state)
{
    (void)state;
    for (int i = 0; i < SR_PIPE_COUNT; i++) {
        const struct sr_pipe_def *d = &sr_pipe_defs[i];
        char yaml[256];
        struct sr_config cfg;
        int n = d->modes ? sr_pipe_mode_count(d) : 1;
        for (int m = 0; m < n; m++) {
            snprintf(yaml, sizeof yaml, "pipes:\n  %s:\n    upstream_method: %s\n", d->name,
                     d->modes ? d->modes[m] : "collect");
            int rc = sr_config_load_string(&cfg, "t.yaml", yaml, strlen(yaml), NULL);
            if (d->modes) {
                if (rc != 0) fail_msg("%s: upstream_method %s refused", d->name, d->modes[m]);
                assert_int_equal(cfg.pipes[i].mode, m);
            } else if (rc == 0) {
                fail_msg("%s has one mode but accepts upstream_method", d->name);
            }
            sr_config_deinit(&cfg);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_pipe_has_a_unique_name_a_method_and_a_plan),
        cmocka_unit_test(modes_name_every_plan_or_none),
        cmocka_unit_test(methods_derive_the_method_table_and_the_schema_map),
        cmocka_unit_test(keyed_matches_the_methods_and_the_plans),
        cmocka_unit_test(routing_names_a_policy_and_is_the_pipes_default),
        cmocka_unit_test(each_mode_name_loads_as_upstream_method),
    };
    return cmocka_run_group_tests_name("pipes", tests, NULL, NULL);
}
