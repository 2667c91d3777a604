/* Unit tests for src/router/rendezvous.c: the "fixed" balancer (weighted
 * rendezvous hashing over node identities, plus the LRU pins), on hand-built
 * node sets (no channels, no gRPC) and a fake clock. Keys are sequential
 * integers, the hardest case for the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/router.h"

#define MAX_NODES 8
#define N_KEYS 100000u
#define TTL_MS 180000u

static const char *const names[MAX_NODES] = {"10.0.0.1:11800", "10.0.0.2:11800", "10.0.0.3:11800",
                                             "10.0.0.4:11800", "10.0.0.5:11800", "10.0.0.6:11800",
                                             "10.0.0.7:11800", "10.0.0.8:11800"};

/* A node set: names[which[i]] for each i, in that order (index = position). */
struct set {
    struct sr_node nodes[MAX_NODES];
    struct sr_upstream up;
};

static void set_init(struct set *s, const int *which, const uint32_t *weights, size_t n)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        s->nodes[i].address = (char *)names[which[i]];
        s->nodes[i].weight = weights ? weights[i] : 1;
        s->nodes[i].index = (uint32_t)i;
        atomic_store(&s->nodes[i].down_until_ms, 0);
    }
    s->up.nodes = s->nodes;
    s->up.n_nodes = n;
}

static struct sr_balancer *fixed(struct set *s, uint32_t lru_size, uint32_t ttl_ms)
{
    struct sr_balancer_opts o = {.lru_size = lru_size, .lru_ttl_ms = ttl_ms};
    struct sr_balancer *b = sr_balancer_fixed.create(&s->up, &o);
    assert_non_null(b);
    assert_ptr_equal(b->type, &sr_balancer_fixed);
    assert_ptr_equal(b->up, &s->up);
    return b;
}

static const char *owner(struct sr_balancer *b, uint64_t key, uint64_t tried, int64_t now)
{
    int64_t retry = 12345;
    struct sr_node *n = b->type->pick(b, key, tried, now, &retry);
    return n ? n->address : NULL;
}

/* Position in s of the node called name. */
static size_t pos(const struct set *s, const char *name)
{
    for (size_t i = 0; i < s->up.n_nodes; i++)
        if (strcmp(s->nodes[i].address, name) == 0) return i;
    fail_msg("%s is not in the set", name);
    return 0;
}

/* Passes if got/total is within pp percentage points of want_pct. */
static void assert_share(unsigned got, unsigned total, double want_pct, double pp)
{
    double pct = 100.0 * got / total;
    if (pct < want_pct - pp || pct > want_pct + pp)
        fail_msg("share %.2f%%, want %.2f%% +- %.1f", pct, want_pct, pp);
}

static void fixed_removing_one_of_five_nodes_moves_only_its_keys(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, four[] = {0, 1, 3, 4};
    struct set s5, s4;
    struct sr_balancer *b5, *b4;
    unsigned on_removed = 0, moved_to[MAX_NODES] = {0};
    (void)state;
    set_init(&s5, five, NULL, 5);
    set_init(&s4, four, NULL, 4);
    b5 = fixed(&s5, 0, 0);
    b4 = fixed(&s4, 0, 0);
    for (uint64_t k = 0; k < N_KEYS; k++) {
        const char *before = owner(b5, k, 0, 0), *after = owner(b4, k, 0, 0);
        if (strcmp(before, names[2]) != 0) {
            assert_string_equal(after, before);
        } else {
            on_removed++;
            moved_to[pos(&s4, after)]++;
        }
    }
    assert_share(on_removed, N_KEYS, 20.0, 2.0);
    /* and the orphans spread over the survivors, not onto one of them */
    for (size_t i = 0; i < 4; i++) assert_share(moved_to[i], on_removed, 25.0, 2.0);
    b5->type->destroy(b5);
    b4->type->destroy(b4);
}

static void fixed_adding_a_sixth_node_moves_a_sixth_of_keys_all_to_it(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, six[] = {0, 1, 2, 3, 4, 5};
    struct set s5, s6;
    struct sr_balancer *b5, *b6;
    unsigned moved = 0;
    (void)state;
    set_init(&s5, five, NULL, 5);
    set_init(&s6, six, NULL, 6);
    b5 = fixed(&s5, 0, 0);
    b6 = fixed(&s6, 0, 0);
    for (uint64_t k = 0; k < N_KEYS; k++) {
        const char *before = owner(b5, k, 0, 0), *after = owner(b6, k, 0, 0);
        if (strcmp(before, after) == 0) continue;
        moved++;
        assert_string_equal(after, names[5]);
    }
    assert_share(moved, N_KEYS, 100.0 / 6, 2.0);
    b5->type->destroy(b5);
    b6->type->destroy(b6);
}

static void fixed_instances_agree_whatever_the_node_order(void **state)
{
    static const int order_a[] = {0, 1, 2, 3, 4}, order_b[] = {3, 0, 4, 2, 1};
    struct set sa, sb;
    struct sr_balancer *a, *b;
    unsigned per_node[MAX_NODES] = {0};
    (void)state;
    set_init(&sa, order_a, NULL, 5);
    set_init(&sb, order_b, NULL, 5);
    a = fixed(&sa, 0, 0);
    b = fixed(&sb, 0, 0);
    for (uint64_t k = 0; k < N_KEYS; k++) {
        const char *x = owner(a, k, 0, 0);
        assert_string_equal(owner(b, k, 0, 0), x);
        per_node[pos(&sa, x)]++;
    }
    /* equal weights: an even spread */
    for (size_t i = 0; i < 5; i++) assert_share(per_node[i], N_KEYS, 20.0, 2.0);
    a->type->destroy(a);
    b->type->destroy(b);
}

static void fixed_weighted_3_to_1_splits_keys_75_to_25(void **state)
{
    static const int two[] = {0, 1};
    static const uint32_t w[] = {3, 1};
    struct set s;
    struct sr_balancer *b;
    unsigned heavy = 0;
    (void)state;
    set_init(&s, two, w, 2);
    b = fixed(&s, 0, 0);
    for (uint64_t k = 0; k < N_KEYS; k++)
        if (strcmp(owner(b, k, 0, 0), names[0]) == 0) heavy++;
    assert_share(heavy, N_KEYS, 75.0, 2.0);
    b->type->destroy(b);
}

static void fixed_weighted_instances_agree_whatever_the_node_order(void **state)
{
    static const int order_a[] = {0, 1, 2}, order_b[] = {2, 0, 1};
    static const uint32_t wa[] = {5, 3, 2}, wb[] = {2, 5, 3};
    struct set sa, sb;
    struct sr_balancer *a, *b;
    unsigned per_node[MAX_NODES] = {0};
    (void)state;
    set_init(&sa, order_a, wa, 3);
    set_init(&sb, order_b, wb, 3);
    a = fixed(&sa, 0, 0);
    b = fixed(&sb, 0, 0);
    for (uint64_t k = 0; k < N_KEYS; k++) {
        const char *x = owner(a, k, 0, 0);
        assert_string_equal(owner(b, k, 0, 0), x);
        per_node[pos(&sa, x)]++;
    }
    assert_share(per_node[0], N_KEYS, 50.0, 2.0);
    assert_share(per_node[1], N_KEYS, 30.0, 2.0);
    assert_share(per_node[2], N_KEYS, 20.0, 2.0);
    a->type->destroy(a);
    b->type->destroy(b);
}

static void fixed_down_node_keys_go_to_their_second_choice_and_return_after_ttl(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, four[] = {0, 1, 3, 4};
    struct set s, ref;
    struct sr_balancer *b, *second;
    const unsigned keys = 10000;
    unsigned on_down = 0;
    (void)state;
    set_init(&s, five, NULL, 5);
    set_init(&ref, four, NULL, 4); /* the set without the down node: second choices */
    b = fixed(&s, 2 * keys, 1000);
    second = fixed(&ref, 0, 0);

    for (uint64_t k = 0; k < keys; k++) owner(b, k, 0, 0);
    atomic_store(&s.nodes[2].down_until_ms, 500);
    /* the down node's keys go to their second choice, the others stay */
    for (uint64_t k = 0; k < keys; k++)
        assert_string_equal(owner(b, k, 0, 100), owner(second, k, 0, 0));

    /* back up at 500, but the moved keys were used at 100: pinned where they are */
    for (uint64_t k = 0; k < keys; k++)
        assert_string_equal(owner(b, k, 0, 600), owner(second, k, 0, 0));
    /* unused for the TTL (1000 ms since 600): back to the node they hash to */
    for (uint64_t k = 0; k < keys; k++) {
        const char *got = owner(b, k, 0, 1600);
        const char *want = owner(second, k, 0, 0);
        if (strcmp(got, want) != 0) {
            assert_string_equal(got, names[2]);
            on_down++;
        }
    }
    assert_share(on_down, keys, 20.0, 2.0);
    b->type->destroy(b);
    second->type->destroy(second);
}

static void fixed_tried_node_sends_the_key_to_its_next_node_and_repins_it(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4};
    struct set s;
    struct sr_balancer *b;
    (void)state;
    set_init(&s, five, NULL, 5);
    b = fixed(&s, 0, 1000);
    for (uint64_t k = 0; k < 200; k++) {
        struct sr_node *first = &s.nodes[pos(&s, owner(b, k, 0, 0))];
        const char *next = owner(b, k, sr_node_bit(first), 0);
        struct sr_node *second = &s.nodes[pos(&s, next)];
        const char *third = owner(b, k, sr_node_bit(first) | sr_node_bit(second), 0);
        assert_string_not_equal(next, first->address);
        assert_string_not_equal(third, first->address);
        assert_string_not_equal(third, next);
        /* the retry re-pinned the key: the next batch goes there too ... */
        assert_string_equal(owner(b, k, 0, 10), third);
        /* ... until the pin expires, and the key goes home */
        assert_string_equal(owner(b, k, 0, 1010), first->address);
    }
    b->type->destroy(b);
}

static void fixed_next_choices_follow_rendezvous_order(void **state)
{
    /* the second choice with the first one tried is the owner in the set
     * without the first one: each key has one ranking of all nodes */
    static const int five[] = {0, 1, 2, 3, 4};
    struct set s, without;
    struct sr_balancer *b;
    (void)state;
    set_init(&s, five, NULL, 5);
    b = fixed(&s, 0, 0);
    for (uint64_t k = 0; k < 2000; k++) {
        size_t first = pos(&s, owner(b, k, 0, 0));
        int rest[4], n = 0;
        struct sr_balancer *r;
        for (int i = 0; i < 5; i++)
            if ((size_t)i != first) rest[n++] = i;
        set_init(&without, rest, NULL, 4);
        r = fixed(&without, 0, 0);
        assert_string_equal(owner(b, k, sr_node_bit(&s.nodes[first]), 0), owner(r, k, 0, 0));
        r->type->destroy(r);
    }
    b->type->destroy(b);
}

static void fixed_pinned_keys_stay_put_after_scale_out_until_idle_for_the_ttl(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, six[] = {5, 3, 0, 4, 1, 2};
    struct set s5, s6;
    struct sr_balancer *old, *b, *ref;
    const unsigned keys = 20000;
    const char *before[20000];
    unsigned moved_odd = 0, moved_even = 0;
    (void)state;
    set_init(&s5, five, NULL, 5);
    set_init(&s6, six, NULL, 6); /* a rebuilt set: one node more, another order */
    old = fixed(&s5, keys, TTL_MS);
    ref = fixed(&s6, 0, 0);
    for (uint64_t k = 0; k < keys; k++) before[k] = owner(old, k, 0, 0);

    b = fixed(&s6, keys, TTL_MS);
    sr_balancer_inherit(b, old);
    old->type->destroy(old);

    /* live series stay on their node, though a sixth of them hash to the new one */
    for (uint64_t k = 0; k < keys; k++) assert_string_equal(owner(b, k, 0, 1000), before[k]);
    /* even keys keep being used; odd ones go idle */
    for (uint64_t k = 0; k < keys; k += 2) assert_string_equal(owner(b, k, 0, 170000), before[k]);
    /* 180 s after their last use the odd keys move, to the new node only */
    for (uint64_t k = 1; k < keys; k += 2) {
        const char *now = owner(b, k, 0, 181000);
        assert_string_equal(now, owner(ref, k, 0, 0));
        if (strcmp(now, before[k]) != 0) {
            assert_string_equal(now, names[5]);
            moved_odd++;
        }
    }
    assert_share(moved_odd, keys / 2, 100.0 / 6, 2.0);
    /* the even keys are still within their TTL */
    for (uint64_t k = 0; k < keys; k += 2) assert_string_equal(owner(b, k, 0, 181000), before[k]);
    /* and move once they too go idle for the TTL */
    for (uint64_t k = 0; k < keys; k += 2) {
        const char *now = owner(b, k, 0, 181000 + TTL_MS);
        assert_string_equal(now, owner(ref, k, 0, 0));
        moved_even += strcmp(now, before[k]) != 0;
    }
    assert_share(moved_even, keys / 2, 100.0 / 6, 2.0);
    b->type->destroy(b);
    ref->type->destroy(ref);
}

static void fixed_key_pinned_to_a_node_that_left_moves_to_its_next_node(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, four[] = {4, 3, 1, 0};
    struct set s5, s4;
    struct sr_balancer *old, *b, *ref;
    const unsigned keys = 10000;
    const char *before[10000];
    unsigned orphans = 0;
    (void)state;
    set_init(&s5, five, NULL, 5);
    set_init(&s4, four, NULL, 4); /* node 2 left */
    old = fixed(&s5, keys, TTL_MS);
    ref = fixed(&s4, 0, 0);
    for (uint64_t k = 0; k < keys; k++) before[k] = owner(old, k, 0, 0);
    b = fixed(&s4, keys, TTL_MS);
    sr_balancer_inherit(b, old);
    old->type->destroy(old);
    for (uint64_t k = 0; k < keys; k++) {
        const char *now = owner(b, k, 0, 1000);
        if (strcmp(before[k], names[2]) == 0) {
            orphans++;
            assert_string_equal(now, owner(ref, k, 0, 0));
        } else {
            assert_string_equal(now, before[k]);
        }
    }
    assert_share(orphans, keys, 20.0, 2.0);
    b->type->destroy(b);
    ref->type->destroy(ref);
}

static void fixed_lru_size_bounds_the_keys_that_stay_pinned(void **state)
{
    static const int five[] = {0, 1, 2, 3, 4}, six[] = {0, 1, 2, 3, 4, 5};
    struct set s5, s6;
    struct sr_balancer *old, *b, *ref;
    unsigned moved_old = 0, moved_recent = 0;
    (void)state;
    set_init(&s5, five, NULL, 5);
    set_init(&s6, six, NULL, 6);
    old = fixed(&s5, 1000, TTL_MS);
    ref = fixed(&s6, 0, 0);
    for (uint64_t k = 0; k < 2000; k++) owner(old, k, 0, 0);
    b = fixed(&s6, 1000, TTL_MS);
    sr_balancer_inherit(b, old);
    old->type->destroy(old);
    /* keys 1000..1999 are pinned to their node among the first five (asked
     * first: each of the unpinned keys asked after them takes a pin slot) */
    for (uint64_t k = 1000; k < 2000; k++)
        moved_recent += strcmp(owner(b, k, 0, 1000), names[5]) == 0;
    assert_int_equal(moved_recent, 0);
    /* keys 0..999 were evicted before the scale-out: they route by hash */
    for (uint64_t k = 0; k < 1000; k++) {
        const char *now = owner(b, k, 0, 1000);
        assert_string_equal(now, owner(ref, k, 0, 0));
        moved_old += strcmp(now, names[5]) == 0;
    }
    assert_share(moved_old, 1000, 100.0 / 6, 4.0);
    b->type->destroy(b);
    ref->type->destroy(ref);
}

static void fixed_inherit_from_another_type_is_a_no_op(void **state)
{
    static const int two[] = {0, 1};
    struct set s;
    struct sr_balancer *b, *rr;
    (void)state;
    set_init(&s, two, NULL, 2);
    b = fixed(&s, 0, 0);
    rr = sr_balancer_round_robin.create(&s.up, NULL);
    assert_non_null(rr);
    sr_balancer_inherit(b, rr);
    sr_balancer_inherit(rr, b);
    sr_balancer_inherit(b, NULL);
    assert_non_null(owner(b, 1, 0, 0));
    rr->type->destroy(rr);
    b->type->destroy(b);
}

static void fixed_returns_null_and_earliest_retry_when_all_down(void **state)
{
    static const int three[] = {0, 1, 2};
    struct set s;
    struct sr_balancer *b;
    int64_t retry = 0;
    uint64_t all;
    (void)state;
    set_init(&s, three, NULL, 3);
    b = fixed(&s, 0, 0);
    atomic_store(&s.nodes[0].down_until_ms, 5000);
    atomic_store(&s.nodes[1].down_until_ms, 3000);
    atomic_store(&s.nodes[2].down_until_ms, 4000);
    assert_null(b->type->pick(b, 42, 0, 1000, &retry));
    assert_true(retry == 3000);
    assert_string_equal(owner(b, 42, 0, 3000), names[1]);
    /* every node tried: NULL as well */
    all = sr_node_bit(&s.nodes[0]) | sr_node_bit(&s.nodes[1]) | sr_node_bit(&s.nodes[2]);
    assert_null(owner(b, 42, all, 10000));
    b->type->destroy(b);
}

static void fixed_with_no_nodes_returns_null_and_unknown_retry(void **state)
{
    struct set s;
    struct sr_balancer *b;
    int64_t retry = 0;
    (void)state;
    set_init(&s, NULL, NULL, 0);
    b = fixed(&s, 0, 0);
    assert_null(b->type->pick(b, 7, 0, 1000, &retry));
    assert_true(retry == INT64_MAX);
    b->type->destroy(b);
}

static void fixed_null_opts_mean_the_defaults(void **state)
{
    static const int two[] = {0, 1};
    struct set s;
    struct sr_balancer *b = NULL;
    (void)state;
    set_init(&s, two, NULL, 2);
    b = sr_balancer_fixed.create(&s.up, NULL);
    assert_non_null(b);
    assert_non_null(owner(b, 1, 0, 0));
    b->type->destroy(b);
}

static void node_id_hash_depends_on_the_address_only(void **state)
{
    char copy[32];
    (void)state;
    strcpy(copy, names[0]);
    assert_true(sr_node_id_hash(copy) == sr_node_id_hash(names[0]));
    assert_true(sr_node_id_hash(names[0]) != sr_node_id_hash(names[1]));
    assert_true(sr_node_id_hash("") != sr_node_id_hash("a"));
    /* pinned values: changing the hash would move keys between replicas that
     * run different versions, so it must be a deliberate change */
    assert_true(sr_node_id_hash("10.0.0.1:11800") == 0xC7627373B194C20EULL);
    /* the mix is splitmix64: its published first output for seed 0 */
    assert_true(sr_rendezvous_hash(0, 0) == 0xE220A8397B1DCDAFULL);
}

static void rendezvous_score_ranks_like_the_hash_for_equal_weights(void **state)
{
    uint64_t a = sr_node_id_hash(names[0]), b = sr_node_id_hash(names[1]);
    (void)state;
    for (uint64_t k = 0; k < 10000; k++) {
        bool by_hash = sr_rendezvous_hash(k, a) > sr_rendezvous_hash(k, b);
        bool by_score = sr_rendezvous_score(k, a, 7) > sr_rendezvous_score(k, b, 7);
        assert_true(by_hash == by_score);
        assert_true(sr_rendezvous_score(k, a, 1) > 0);
        /* the score scales with the weight */
        assert_true(sr_rendezvous_score(k, a, 2) == 2 * sr_rendezvous_score(k, a, 1));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixed_removing_one_of_five_nodes_moves_only_its_keys),
        cmocka_unit_test(fixed_adding_a_sixth_node_moves_a_sixth_of_keys_all_to_it),
        cmocka_unit_test(fixed_instances_agree_whatever_the_node_order),
        cmocka_unit_test(fixed_weighted_3_to_1_splits_keys_75_to_25),
        cmocka_unit_test(fixed_weighted_instances_agree_whatever_the_node_order),
        cmocka_unit_test(fixed_down_node_keys_go_to_their_second_choice_and_return_after_ttl),
        cmocka_unit_test(fixed_tried_node_sends_the_key_to_its_next_node_and_repins_it),
        cmocka_unit_test(fixed_next_choices_follow_rendezvous_order),
        cmocka_unit_test(fixed_pinned_keys_stay_put_after_scale_out_until_idle_for_the_ttl),
        cmocka_unit_test(fixed_key_pinned_to_a_node_that_left_moves_to_its_next_node),
        cmocka_unit_test(fixed_lru_size_bounds_the_keys_that_stay_pinned),
        cmocka_unit_test(fixed_inherit_from_another_type_is_a_no_op),
        cmocka_unit_test(fixed_returns_null_and_earliest_retry_when_all_down),
        cmocka_unit_test(fixed_with_no_nodes_returns_null_and_unknown_retry),
        cmocka_unit_test(fixed_null_opts_mean_the_defaults),
        cmocka_unit_test(node_id_hash_depends_on_the_address_only),
        cmocka_unit_test(rendezvous_score_ranks_like_the_hash_for_equal_weights),
    };
    return cmocka_run_group_tests_name("router_rendezvous", tests, NULL, NULL);
}
