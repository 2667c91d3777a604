/* Unit tests for src/config/merge.c: what a reload may change live. Two
 * configurations loaded from text; the running one's restart-only values win
 * (and are reported), every other value comes from the new file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/buf.h"
#include "skyrelay/config.h"
#include "skyrelay/log.h"

static void load(struct sr_config *c, const char *text)
{
    assert_int_equal(sr_config_load_string(c, "test.yaml", text, strlen(text), stderr), 0);
}

static const char running[] = "server:\n  address: 127.0.0.1:11800\n  authentication: old\n"
                              "upstream:\n  addresses: [\"10.0.0.1:11800\", \"10.0.0.2:11800\"]\n"
                              "  stall_timeout: 2s\n"
                              "pipes:\n  segment:\n    queue: {max_events: 1000}\n"
                              "    sender: {linger: 100ms}\n"
                              "log:\n  level: info\n";

static void restart_only_settings_keep_their_running_value_and_are_named(void **state)
{
    struct sr_config cur, next;
    struct sr_buf notes;
    (void)state;
    load(&cur, running);
    load(&next, "server:\n  address: 127.0.0.1:22800\n  workers: 7\n"
                "pipes:\n  segment:\n    queue: {max_events: 5000}\n"
                "telemetry:\n  prometheus_address: 127.0.0.1:9999\n");
    sr_buf_init(&notes);
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, &notes), 4);
    assert_string_equal(next.server.address, "127.0.0.1:11800");
    assert_int_equal(next.server.workers, cur.server.workers);
    assert_int_equal(next.pipes[SR_PIPE_SEGMENT].queue.max_events, 1000);
    assert_string_equal(next.telemetry.prometheus_address, cur.telemetry.prometheus_address);
    assert_non_null(strstr(notes.p, "server.address (running: \"127.0.0.1:11800\", file: \"127.0.0.1:22800\")"));
    assert_non_null(strstr(notes.p, "pipes.segment.queue.max_events"));
    assert_non_null(strstr(notes.p, "server.workers"));
    assert_non_null(strstr(notes.p, "telemetry.prometheus_address"));
    sr_buf_free(&notes);
    sr_config_deinit(&next);
    sr_config_deinit(&cur);
}

static void live_settings_come_from_the_file(void **state)
{
    struct sr_config cur, next;
    (void)state;
    load(&cur, running);
    load(&next, "server:\n  address: 127.0.0.1:11800\n  authentication: new\n"
                "upstream:\n  addresses: [\"10.0.0.3:11800#3\"]\n  stall_timeout: 5s\n"
                "  authentication: up\n"
                "pipes:\n  segment:\n    queue: {max_events: 1000}\n"
                "    sender: {linger: 2s}\n    routing: {policy: least_loaded}\n"
                "log:\n  level: debug\n");
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, NULL), 0);
    assert_string_equal(next.server.authentication, "new");
    assert_string_equal(next.upstream.authentication, "up");
    assert_int_equal(next.upstream.n_nodes, 1);
    assert_string_equal(next.upstream.nodes[0].address, "10.0.0.3:11800");
    assert_int_equal(next.upstream.nodes[0].weight, 3);
    assert_int_equal(next.upstream.stall_timeout_ms, 5000);
    assert_int_equal(next.pipes[SR_PIPE_SEGMENT].sender.linger_ms, 2000);
    assert_int_equal(next.pipes[SR_PIPE_SEGMENT].routing.policy, SR_ROUTE_LEAST_LOADED);
    assert_int_equal(next.log.level, SR_LOG_DEBUG);
    sr_config_deinit(&next);
    sr_config_deinit(&cur);
}

static void dns_names_need_a_restart_static_nodes_do_not(void **state)
{
    struct sr_config cur, next;
    struct sr_buf notes;
    (void)state;
    load(&cur, "upstream:\n  finder: dns\n  addresses: [\"oap-a:11800\"]\n");
    load(&next, "upstream:\n  finder: dns\n  addresses: [\"oap-b:11800\", \"oap-c:11800\"]\n");
    sr_buf_init(&notes);
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, &notes), 1);
    assert_int_equal(next.upstream.n_nodes, 1);
    assert_string_equal(next.upstream.nodes[0].address, "oap-a:11800");
    assert_non_null(strstr(notes.p, "upstream.addresses"));
    sr_buf_free(&notes);
    sr_config_deinit(&next);
    sr_config_deinit(&cur);
}

static void a_file_with_nothing_new_keeps_nothing(void **state)
{
    struct sr_config cur, next;
    (void)state;
    load(&cur, running);
    load(&next, running);
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, NULL), 0);
    sr_config_deinit(&next);
    sr_config_deinit(&cur);
}

static void defaults_and_set_values_are_compared_by_value(void **state)
{
    struct sr_config cur, next;
    (void)state;
    /* the built-in listen address (static storage) against the same one written out */
    load(&cur, "log:\n  level: info\n");
    load(&next, "server:\n  address: 0.0.0.0:11800\n");
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, NULL), 0);
    /* and back: a written value replaced by the running built-in one (no double free) */
    sr_config_deinit(&next);
    load(&next, "server:\n  address: 0.0.0.0:1\n");
    assert_int_equal(sr_config_keep_restart_only(&next, &cur, NULL), 1);
    assert_string_equal(next.server.address, "0.0.0.0:11800");
    sr_config_deinit(&next);
    sr_config_deinit(&cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restart_only_settings_keep_their_running_value_and_are_named),
        cmocka_unit_test(live_settings_come_from_the_file),
        cmocka_unit_test(dns_names_need_a_restart_static_nodes_do_not),
        cmocka_unit_test(a_file_with_nothing_new_keeps_nothing),
        cmocka_unit_test(defaults_and_set_values_are_compared_by_value),
    };
    return cmocka_run_group_tests_name("merge", tests, NULL, NULL);
}
