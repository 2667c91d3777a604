/* Unit tests for the message readers of src/server/cds.c: what a
 * ConfigurationSyncRequest asks and what a Commands answer says (the cache's
 * rules depend on both; the cache itself is tested end to end in
 * test/integration/test_config_discovery.py). Field numbers as in
 * skywalking-data-collect-protocol: ConfigurationSyncRequest {service 1, uuid 2},
 * Commands {commands 1}, Command {command 1, args 2}, KeyStringValuePair {key 1,
 * value 2}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/cds.h"
#include "skyrelay/wire.h"

/* Appends a LEN field (lengths < 128) to b at *n. */
static void put(uint8_t *b, size_t *n, uint32_t field, const void *v, size_t len)
{
    b[(*n)++] = (uint8_t)(field << 3 | 2);
    b[(*n)++] = (uint8_t)len;
    memcpy(b + *n, v, len);
    *n += len;
}

static size_t pair(uint8_t *b, const char *k, const char *v)
{
    size_t n = 0;
    put(b, &n, 1, k, strlen(k));
    put(b, &n, 2, v, strlen(v));
    return n;
}

/* Commands with one command named `name`, args (key, value)... */
static size_t commands(uint8_t *out, const char *name, const char *const *kv, int n_kv)
{
    uint8_t cmd[512], p[128];
    size_t c = 0, n = 0;
    put(cmd, &c, 1, name, strlen(name));
    for (int i = 0; i < n_kv; i++) {
        size_t m = pair(p, kv[2 * i], kv[2 * i + 1]);
        put(cmd, &c, 2, p, m);
    }
    put(out, &n, 1, cmd, c);
    return n;
}

static void request_fields_are_read_and_default_to_empty(void **state)
{
    uint8_t b[64];
    size_t n = 0, sl, ul;
    const uint8_t *s, *u;
    (void)state;
    put(b, &n, 1, "svc", 3);
    put(b, &n, 2, "u-1", 3);
    assert_int_equal(sr_cds_read_request(b, n, &s, &sl, &u, &ul), 0);
    assert_memory_equal(s, "svc", 3);
    assert_int_equal(sl, 3);
    assert_memory_equal(u, "u-1", 3);
    assert_int_equal(ul, 3);
    assert_int_equal(sr_cds_read_request(b, 0, &s, &sl, &u, &ul), 0); /* empty message */
    assert_int_equal(sl, 0);
    assert_int_equal(ul, 0);
}

static void malformed_requests_are_refused(void **state)
{
    static const uint8_t varint_service[] = {0x08, 0x01};    /* field 1 as a varint */
    static const uint8_t truncated[] = {0x0a, 0x05, 's', 'v'}; /* length past the end */
    size_t sl, ul;
    const uint8_t *s, *u;
    (void)state;
    assert_int_equal(sr_cds_read_request(varint_service, 2, &s, &sl, &u, &ul), SR_PB_EMALFORMED);
    assert_int_equal(sr_cds_read_request(truncated, 4, &s, &sl, &u, &ul), SR_PB_EMALFORMED);
}

static void a_configuration_command_gives_its_uuid(void **state)
{
    static const char *const kv[] = {"SerialNumber", "sn-1", "UUID", "abc", "x.y", "1"};
    uint8_t b[512];
    size_t n = commands(b, "ConfigurationDiscoveryCommand", kv, 3), ul;
    const uint8_t *u;
    (void)state;
    assert_int_equal(sr_cds_read_answer(b, n, &u, &ul), SR_CDS_ANS_CONFIG);
    assert_int_equal(ul, 3);
    assert_memory_equal(u, "abc", 3);
    /* without a UUID argument it is still a configuration, valid for every uuid */
    n = commands(b, "ConfigurationDiscoveryCommand", kv, 1);
    assert_int_equal(sr_cds_read_answer(b, n, &u, &ul), SR_CDS_ANS_CONFIG);
    assert_null(u);
}

static void an_empty_answer_is_empty(void **state)
{
    size_t ul;
    const uint8_t *u;
    (void)state;
    assert_int_equal(sr_cds_read_answer((const uint8_t *)"", 0, &u, &ul), SR_CDS_ANS_EMPTY);
}

static void anything_else_is_not_cacheable(void **state)
{
    static const char *const kv[] = {"UUID", "abc"};
    static const uint8_t garbage[] = {0x0a, 0x02, 'n', '1'}; /* a Command that is not one */
    uint8_t b[1024];
    size_t n, ul;
    const uint8_t *u;
    (void)state;
    n = commands(b, "SomeOtherCommand", kv, 1);
    assert_int_equal(sr_cds_read_answer(b, n, &u, &ul), SR_CDS_ANS_OTHER);
    n = commands(b, "ConfigurationDiscoveryCommand", kv, 1);
    n += commands(b + n, "ConfigurationDiscoveryCommand", kv, 1); /* two commands */
    assert_int_equal(sr_cds_read_answer(b, n, &u, &ul), SR_CDS_ANS_OTHER);
    assert_int_equal(sr_cds_read_answer(garbage, sizeof garbage, &u, &ul), SR_CDS_ANS_OTHER);
    n = 0;
    put(b, &n, 2, "x", 1); /* a field Commands does not have */
    assert_int_equal(sr_cds_read_answer(b, n, &u, &ul), SR_CDS_ANS_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_fields_are_read_and_default_to_empty),
        cmocka_unit_test(malformed_requests_are_refused),
        cmocka_unit_test(a_configuration_command_gives_its_uuid),
        cmocka_unit_test(an_empty_answer_is_empty),
        cmocka_unit_test(anything_else_is_not_cacheable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
