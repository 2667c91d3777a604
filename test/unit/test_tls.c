/* Unit tests for the TLS pure logic: the cross-key config rules
 * (src/config/tls_check.c, reported by the loader with file:line:col), file
 * change detection and all-or-nothing PEM loading (src/tls/files.c). The
 * certificates are made with the openssl CLI in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "skyrelay/config.h"
#include "skyrelay/tls.h"

static char dir[] = "/tmp/sr-tls-unit-XXXXXX";
static char path_buf[8][256];

static const char *at(int slot, const char *name)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static int make_pki(void **state)
{
    char cmd[2048];
    (void)state;
    if (!mkdtemp(dir)) return -1;
    /* two self-signed EC certificates: a.crt/a.key and b.crt/b.key */
    snprintf(cmd, sizeof cmd,
             "cd %s && for n in a b; do openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.crt -days 1 "
             "-subj /CN=$n >/dev/null 2>&1 || exit 1; done",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_pki(void **state)
{
    char cmd[512];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void copy(const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s %s", from, to);
    assert_int_equal(system(cmd), 0);
}

/* ---- config: keys that only make sense together ---- */

static void expect_errors(const char *yaml, const char *want)
{
    struct sr_config cfg;
    char *err = NULL;
    size_t n;
    FILE *f = open_memstream(&err, &n);
    int rc = sr_config_load_string(&cfg, "t.yaml", yaml, strlen(yaml), f);
    fclose(f);
    assert_string_equal(err, want);
    assert_int_equal(rc, -1);
    sr_config_deinit(&cfg);
    free(err);
}

static void server_cert_without_key_is_an_error_at_the_cert(void **state)
{
    expect_errors("server:\n  tls:\n    cert_file: /x.crt\n",
                  "t.yaml:3:16: server.tls.cert_file: set without server.tls.key_file (both or "
                  "neither)\n");
    expect_errors("server:\n  tls: {key_file: /x.key}\n",
                  "t.yaml:2:19: server.tls.key_file: set without server.tls.cert_file (both or "
                  "neither)\n");
}

static void client_ca_without_server_tls_is_an_error(void **state)
{
    expect_errors("server:\n  tls:\n    client_ca_file: /ca.crt\n",
                  "t.yaml:3:21: server.tls.client_ca_file: client certificates need TLS: set "
                  "server.tls.cert_file and server.tls.key_file\n");
}

static void upstream_client_cert_without_key_is_an_error(void **state)
{
    expect_errors("upstream:\n  tls: {enabled: true, cert_file: /c.crt}\n",
                  "t.yaml:2:35: upstream.tls.cert_file: set without upstream.tls.key_file (both "
                  "or neither)\n");
}

static void complete_tls_settings_load(void **state)
{
    struct sr_config cfg;
    const char *yaml = "server:\n  tls: {cert_file: /s.crt, key_file: /s.key, client_ca_file: "
                       "/ca.crt, client_auth: optional, reload_interval: 2s}\n"
                       "upstream:\n  tls: {enabled: true, ca_file: /ca.crt, server_name: oap.test, "
                       "reload_interval: 0}\n";
    assert_int_equal(sr_config_load_string(&cfg, "t.yaml", yaml, strlen(yaml), stderr), 0);
    assert_string_equal(cfg.server.tls.client_ca_file, "/ca.crt");
    assert_int_equal(cfg.server.tls.client_auth, SR_TLS_CLIENT_AUTH_OPTIONAL);
    assert_int_equal(cfg.server.tls.reload_interval_ms, 2000);
    assert_true(cfg.upstream.tls.enabled);
    assert_string_equal(cfg.upstream.tls.server_name, "oap.test");
    assert_int_equal(cfg.upstream.tls.reload_interval_ms, 0);
    sr_config_deinit(&cfg);
    /* the defaults: require once a client CA is set; files re-checked every minute */
    sr_config_defaults(&cfg);
    assert_int_equal(cfg.server.tls.client_auth, SR_TLS_CLIENT_AUTH_REQUIRE);
    assert_int_equal(cfg.server.tls.reload_interval_ms, 60000);
    assert_int_equal(cfg.upstream.tls.reload_interval_ms, 60000);
    assert_false(cfg.upstream.tls.enabled);
}

/* ---- change detection ---- */

static void watch_sees_rename_in_place_write_and_removal_once_each(void **state)
{
    struct sr_tls_watch w;
    const char *cert = at(0, "w.crt"), *tmp = at(1, "w.crt.tmp");
    FILE *f;

    copy(at(2, "a.crt"), cert);
    sr_tls_watch_init(&w, cert, NULL, NULL);
    assert_false(sr_tls_watch_changed(&w)); /* nothing happened */

    copy(at(2, "b.crt"), tmp); /* a new file renamed over it: new inode */
    assert_int_equal(rename(tmp, cert), 0);
    assert_true(sr_tls_watch_changed(&w));
    assert_false(sr_tls_watch_changed(&w)); /* reported once */

    f = fopen(cert, "ab"); /* written in place: new size */
    assert_non_null(f);
    fputs("\n", f);
    fclose(f);
    assert_true(sr_tls_watch_changed(&w));
    assert_false(sr_tls_watch_changed(&w));

    assert_int_equal(unlink(cert), 0); /* gone: a change too (stat fails) */
    assert_true(sr_tls_watch_changed(&w));
    assert_false(sr_tls_watch_changed(&w));
}

/* ---- loading ---- */

static void matching_pair_and_ca_load(void **state)
{
    struct sr_tls_pem p;
    char why[256];
    assert_int_equal(sr_tls_pem_load(&p, at(0, "a.crt"), at(1, "a.key"), at(2, "b.crt"), why,
                                     sizeof why), 0);
    assert_non_null(strstr(p.cert, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(p.key, "PRIVATE KEY"));
    assert_non_null(strstr(p.ca, "BEGIN CERTIFICATE"));
    sr_tls_pem_free(&p);
    assert_null(p.cert);
}

static void key_of_another_certificate_is_refused(void **state)
{
    struct sr_tls_pem p;
    char why[256];
    assert_int_equal(sr_tls_pem_load(&p, at(0, "a.crt"), at(1, "b.key"), NULL, why, sizeof why),
                     -22);
    assert_non_null(strstr(why, "does not belong to certificate"));
    assert_null(p.cert); /* all or nothing */
    assert_null(p.key);
}

static void half_written_or_empty_files_are_refused(void **state)
{
    struct sr_tls_pem p;
    char why[256], cmd[1024];
    const char *half = at(3, "half.crt"), *empty = at(4, "empty.key");

    /* the first 100 bytes of a certificate: what a reader may see during an in-place write */
    snprintf(cmd, sizeof cmd, "head -c 100 %s > %s && : > %s", at(0, "a.crt"), half, empty);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sr_tls_pem_load(&p, half, at(1, "a.key"), NULL, why, sizeof why), -22);
    assert_non_null(strstr(why, "no PEM certificate"));
    assert_int_equal(sr_tls_pem_load(&p, at(0, "a.crt"), empty, NULL, why, sizeof why), -22);
    assert_non_null(strstr(why, "empty"));
    assert_int_equal(sr_tls_pem_load(&p, at(0, "a.crt"), at(1, "missing.key"), NULL, why,
                                     sizeof why), -22);
    assert_non_null(strstr(why, "cannot open"));
    assert_int_equal(sr_tls_pem_load(&p, NULL, NULL, half, why, sizeof why), -22);
    assert_non_null(strstr(why, "CA file"));
}

static void reload_counters_count_per_side(void **state)
{
    uint64_t ok, failed;
    sr_tls_count_reload(SR_TLS_SIDE_SERVER, true);
    sr_tls_count_reload(SR_TLS_SIDE_UPSTREAM, false);
    sr_tls_count_reload(SR_TLS_SIDE_UPSTREAM, false);
    sr_tls_reloads(SR_TLS_SIDE_SERVER, &ok, &failed);
    assert_int_equal(ok, 1);
    assert_int_equal(failed, 0);
    sr_tls_reloads(SR_TLS_SIDE_UPSTREAM, &ok, &failed);
    assert_int_equal(ok, 0);
    assert_int_equal(failed, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_cert_without_key_is_an_error_at_the_cert),
        cmocka_unit_test(client_ca_without_server_tls_is_an_error),
        cmocka_unit_test(upstream_client_cert_without_key_is_an_error),
        cmocka_unit_test(complete_tls_settings_load),
        cmocka_unit_test(watch_sees_rename_in_place_write_and_removal_once_each),
        cmocka_unit_test(matching_pair_and_ca_load),
        cmocka_unit_test(key_of_another_certificate_is_refused),
        cmocka_unit_test(half_written_or_empty_files_are_refused),
        cmocka_unit_test(reload_counters_count_per_side),
    };
    return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
