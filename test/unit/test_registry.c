/* Unit tests for src/discovery/registry.c: every finder of the one list
 * (config.h SR_FINDERS) has its type, named as upstream.finder spells it, and
 * nothing past the list resolves. (The balancers' registry is checked in
 * test_router_rr.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "skyrelay/config.h"
#include "skyrelay/discovery.h"

static void every_finder_has_its_type_under_its_config_name(void **state)
{
    static const char *const names[] = {
#define NAME_(id, name, type) name,
        SR_FINDERS(NAME_)
#undef NAME_
    };
    (void)state;
    assert_int_equal(sizeof names / sizeof names[0], SR_FINDER_COUNT);
    for (int f = 0; f < SR_FINDER_COUNT; f++) {
        const struct sr_finder_type *t = sr_finder_for(f);
        assert_non_null(t);
        assert_string_equal(t->name, names[f]);
        assert_non_null(t->start);
        assert_non_null(t->stop);
        assert_non_null(t->stats);
    }
    assert_ptr_equal(sr_finder_for(SR_FINDER_KUBERNETES), &sr_finder_kubernetes);
    assert_true(sr_finder_kubernetes.own_thread);
    assert_null(sr_finder_for(SR_FINDER_COUNT));
    assert_null(sr_finder_for(-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_finder_has_its_type_under_its_config_name),
    };
    return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
