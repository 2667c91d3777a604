/* The growable buffer: content and length after appends of every kind, growth
 * far past the first allocation, reset/steal/free, and the sticky failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/buf.h"

static void appends_of_each_kind_concatenate(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    assert_int_equal(sr_buf_puts(&b, "pipe="), 0);
    assert_int_equal(sr_buf_append(&b, "segment!", 7), 0);
    assert_int_equal(sr_buf_appendf(&b, " sent=%llu %s", 42ULL, "ok"), 0);
    assert_string_equal(b.p, "pipe=segment sent=42 ok");
    assert_int_equal(b.len, strlen("pipe=segment sent=42 ok"));
    assert_false(b.oom);
    sr_buf_free(&b);
}

static void append_keeps_embedded_nul_bytes(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    assert_int_equal(sr_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "a\0b", 4); /* and the terminating NUL */
    sr_buf_free(&b);
}

static void an_empty_append_gives_an_empty_string(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    assert_int_equal(sr_buf_append(&b, "", 0), 0);
    assert_non_null(b.p);
    assert_string_equal(b.p, "");
    assert_int_equal(b.len, 0);
    sr_buf_free(&b);
}

static void appendf_longer_than_the_room_left_is_whole(void **state)
{
    struct sr_buf b;
    char *big = malloc(10001);
    (void)state;
    assert_non_null(big);
    memset(big, 'x', 10000);
    big[10000] = '\0';
    sr_buf_init(&b);
    assert_int_equal(sr_buf_puts(&b, "<"), 0);
    assert_int_equal(sr_buf_appendf(&b, "%s>%d", big, 7), 0);
    assert_int_equal(b.len, 1 + 10000 + 2);
    assert_int_equal(b.p[0], '<');
    assert_int_equal(b.p[10000], 'x');
    assert_string_equal(b.p + 10001, ">7");
    free(big);
    sr_buf_free(&b);
}

static void many_small_appends_grow_the_buffer(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    for (int i = 0; i < 100000; i++) assert_int_equal(sr_buf_appendf(&b, "%d,", i % 10), 0);
    assert_int_equal(b.len, 200000);
    assert_true(b.cap > b.len);
    for (size_t i = 0; i < b.len; i += 2) {
        assert_int_equal(b.p[i], '0' + (int)((i / 2) % 10));
        assert_int_equal(b.p[i + 1], ',');
    }
    assert_int_equal(b.p[b.len], '\0');
    sr_buf_free(&b);
}

static void reserve_makes_room_without_content(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    assert_int_equal(sr_buf_reserve(&b, 5000), 0);
    assert_true(b.cap >= 5001);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    sr_buf_free(&b);
}

static void reset_empties_and_keeps_the_memory(void **state)
{
    struct sr_buf b;
    size_t cap;
    (void)state;
    sr_buf_init(&b);
    sr_buf_puts(&b, "first line that is long enough to allocate");
    cap = b.cap;
    sr_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.p, "");
    sr_buf_puts(&b, "second");
    assert_string_equal(b.p, "second");
    sr_buf_free(&b);
}

static void steal_hands_over_the_content_and_empties(void **state)
{
    struct sr_buf b;
    size_t len = 0;
    char *s;
    (void)state;
    sr_buf_init(&b);
    sr_buf_appendf(&b, "%s %d", "metrics", 1);
    s = sr_buf_steal(&b, &len);
    assert_string_equal(s, "metrics 1");
    assert_int_equal(len, 9);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(s);
    /* the buffer is usable again */
    sr_buf_puts(&b, "again");
    assert_string_equal(b.p, "again");
    sr_buf_free(&b);
}

static void steal_of_an_untouched_buffer_is_an_empty_string(void **state)
{
    struct sr_buf b;
    size_t len = 99;
    char *s;
    (void)state;
    sr_buf_init(&b);
    s = sr_buf_steal(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
}

static void a_failed_allocation_is_sticky_and_steal_refuses(void **state)
{
    struct sr_buf b;
    size_t len = 99;
    (void)state;
    sr_buf_init(&b);
    sr_buf_puts(&b, "partial");
    /* a size that cannot be represented fails without allocating */
    assert_int_equal(sr_buf_reserve(&b, SIZE_MAX - 2), -1);
    assert_true(b.oom);
    assert_int_equal(sr_buf_puts(&b, "more"), -1);
    assert_int_equal(sr_buf_appendf(&b, "%d", 1), -1);
    assert_int_equal(sr_buf_append(&b, "x", 1), -1);
    assert_string_equal(b.p, "partial");       /* nothing appended after the failure */
    assert_null(sr_buf_steal(&b, &len));       /* and the result is refused */
    assert_null(b.p);                          /* its memory freed, */
    assert_int_equal(sr_buf_puts(&b, "x"), 0); /* the buffer usable again */
    assert_string_equal(b.p, "x");
    sr_buf_free(&b);
}

static void reset_clears_a_failure(void **state)
{
    struct sr_buf b;
    (void)state;
    sr_buf_init(&b);
    sr_buf_puts(&b, "a");
    assert_int_equal(sr_buf_reserve(&b, SIZE_MAX), -1);
    sr_buf_reset(&b);
    assert_false(b.oom);
    assert_int_equal(sr_buf_puts(&b, "b"), 0);
    assert_string_equal(b.p, "b");
    sr_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.cap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_of_each_kind_concatenate),
        cmocka_unit_test(append_keeps_embedded_nul_bytes),
        cmocka_unit_test(an_empty_append_gives_an_empty_string),
        cmocka_unit_test(appendf_longer_than_the_room_left_is_whole),
        cmocka_unit_test(many_small_appends_grow_the_buffer),
        cmocka_unit_test(reserve_makes_room_without_content),
        cmocka_unit_test(reset_empties_and_keeps_the_memory),
        cmocka_unit_test(steal_hands_over_the_content_and_empties),
        cmocka_unit_test(steal_of_an_untouched_buffer_is_an_empty_string),
        cmocka_unit_test(a_failed_allocation_is_sticky_and_steal_refuses),
        cmocka_unit_test(reset_clears_a_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
