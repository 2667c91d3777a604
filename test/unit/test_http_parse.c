/* The admin port's request-head parser (src/admin/http_parse.c) and its bearer check:
 * what probes and Prometheus send is read, anything ambiguous is refused (400). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/admin/internal.h"

static int parse(const char *head, struct sr_admin_request *r)
{
    return sr_admin_parse_head(head, strlen(head), r);
}

static void kubelet_probe_and_prometheus_scrape_are_read(void **state)
{
    struct sr_admin_request r;
    const char *probe = "GET /readyz HTTP/1.1\r\nHost: 10.0.0.5:1234\r\nUser-Agent: kube-probe/1.29"
                        "\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    (void)state;
    assert_int_equal(parse(probe, &r), 0);
    assert_int_equal(r.method_len, 3);
    assert_memory_equal(r.path, "/readyz", 7);
    assert_int_equal(r.path_len, 7);
    assert_null(r.authorization);
    assert_int_equal(r.head_len, strlen(probe));

    assert_int_equal(parse("GET /metrics?name[]=x HTTP/1.0\r\nauthorization:  Bearer  tok \r\n"
                           "\r\nbody", &r), 0);
    assert_int_equal(r.path_len, 8); /* the query is not part of the path */
    assert_int_equal(r.authorization_len, 11);
    assert_memory_equal(r.authorization, "Bearer  tok", 11);
    assert_true(sr_admin_bearer_ok(&r, "tok"));
    assert_false(sr_admin_bearer_ok(&r, "to"));
    assert_false(sr_admin_bearer_ok(&r, "tok2"));
    assert_true(sr_admin_bearer_ok(&r, NULL));
}

static void ambiguous_or_incomplete_heads_are_refused(void **state)
{
    static const char *const bad[] = {
        "GET /metrics HTTP/1.1\r\n",                        /* no empty line yet */
        "GET  /metrics HTTP/1.1\r\n\r\n",                   /* two spaces */
        "GET metrics HTTP/1.1\r\n\r\n",                     /* not origin-form */
        "GET /metrics HTTP/2.0\r\n\r\n",
        "GET /metrics HTTP/1.1\nHost: x\r\n\r\n",           /* bare LF */
        "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",        /* space before the colon */
        "GET /metrics HTTP/1.1\r\nX: a\r\n b\r\n\r\n",      /* obsolete folding */
        "GET /metrics HTTP/1.1\r\nX: a\001\r\n\r\n",        /* control byte */
        "GET /metrics HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        "\r\n\r\n",
    };
    struct sr_admin_request r;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(bad[i], &r), -EINVAL);
}

static void bearer_scheme_is_required_for_a_token(void **state)
{
    struct sr_admin_request r;
    (void)state;
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\nAuthorization: Basic dG9rOg==\r\n\r\n", &r), 0);
    assert_false(sr_admin_bearer_ok(&r, "dG9rOg=="));
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\nAuthorization: bearer tok\r\n\r\n", &r), 0);
    assert_true(sr_admin_bearer_ok(&r, "tok"));
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\n\r\n", &r), 0);
    assert_false(sr_admin_bearer_ok(&r, "tok"));
    assert_true(sr_admin_bearer_ok(&r, ""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kubelet_probe_and_prometheus_scrape_are_read),
        cmocka_unit_test(ambiguous_or_incomplete_heads_are_refused),
        cmocka_unit_test(bearer_scheme_is_required_for_a_token),
    };
    return cmocka_run_group_tests_name("http_parse", tests, NULL, NULL);
}
