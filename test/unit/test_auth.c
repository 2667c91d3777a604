#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/grpc.h>

#include "skyrelay/auth.h"

static grpc_metadata md_of(const char *k, const char *v)
{
    grpc_metadata m;
    memset(&m, 0, sizeof(m));
    m.key = grpc_slice_from_static_string(k);
    m.value = grpc_slice_from_static_string(v);
    return m;
}

static grpc_metadata_array arr(grpc_metadata *m, size_t n)
{
    grpc_metadata_array a;
    memset(&a, 0, sizeof(a));
    a.count = n;
    a.capacity = n;
    a.metadata = m;
    return a;
}

static void no_token_configured_lets_every_call_in(void **state)
{
    grpc_metadata_array a = arr(NULL, 0);
    (void)state;
    assert_true(sr_auth_ok(&a, NULL));
    assert_true(sr_auth_ok(&a, ""));
}

static void matching_token_passes(void **state)
{
    grpc_metadata m[2] = {md_of("user-agent", "grpc-java"), md_of("authentication", "s3cret")};
    grpc_metadata_array a = arr(m, 2);
    (void)state;
    assert_true(sr_auth_ok(&a, "s3cret"));
}

static void missing_wrong_prefix_or_longer_token_is_refused(void **state)
{
    grpc_metadata none[1] = {md_of("user-agent", "x")};
    grpc_metadata wrong[1] = {md_of("authentication", "s3creT")};
    grpc_metadata prefix[1] = {md_of("authentication", "s3c")};
    grpc_metadata longer[1] = {md_of("authentication", "s3cret!")};
    grpc_metadata empty[1] = {md_of("authentication", "")};
    grpc_metadata other_key[1] = {md_of("authorization", "s3cret")};
    grpc_metadata_array a;
    (void)state;
    a = arr(none, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
    a = arr(wrong, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
    a = arr(prefix, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
    a = arr(longer, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
    a = arr(empty, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
    a = arr(other_key, 1);
    assert_false(sr_auth_ok(&a, "s3cret"));
}

static void first_authentication_entry_decides(void **state)
{
    grpc_metadata m[2] = {md_of("authentication", "bad"), md_of("authentication", "s3cret")};
    grpc_metadata_array a = arr(m, 2);
    (void)state;
    assert_false(sr_auth_ok(&a, "s3cret"));
}

/* The digests are compared, not the bytes: equal only when equal, whatever the lengths. */
static void equal_compares_whole_values_of_any_length(void **state)
{
    (void)state;
    assert_true(sr_auth_equal("s3cret", 6, "s3cret", 6));
    assert_true(sr_auth_equal("", 0, "", 0));
    assert_false(sr_auth_equal("s3cre", 5, "s3cret", 6));
    assert_false(sr_auth_equal("s3cret\0", 7, "s3cret", 6));
    assert_false(sr_auth_equal("", 0, "s3cret", 6));
    assert_false(sr_auth_equal("S3cret", 6, "s3cret", 6));
}

/* kubelet's gRPC probe cannot send metadata: the health check, and only it, is exempt. */
static void only_the_health_check_is_exempt(void **state)
{
    static const char *const not_exempt[] = {
        "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/Check2",
        "/skywalking.v3.TraceSegmentReportService/collect", "grpc.health.v1.Health/Check", ""};
    (void)state;
    assert_true(sr_auth_exempt("/grpc.health.v1.Health/Check", 28));
    for (size_t i = 0; i < sizeof not_exempt / sizeof not_exempt[0]; i++)
        assert_false(sr_auth_exempt(not_exempt[i], strlen(not_exempt[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_token_configured_lets_every_call_in),
        cmocka_unit_test(matching_token_passes),
        cmocka_unit_test(missing_wrong_prefix_or_longer_token_is_refused),
        cmocka_unit_test(first_authentication_entry_decides),
        cmocka_unit_test(equal_compares_whole_values_of_any_length),
        cmocka_unit_test(only_the_health_check_is_exempt),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
