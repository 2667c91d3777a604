/* The contract every balancer (include/skyrelay/router.h) must keep, as a
 * header-only cmocka fixture: each test/unit/test_*.c is its own binary, so
 * the clauses are static functions run for one balancer type at a time.
 *
 *   static struct sr_contract_subject s = {"round_robin", SR_CONTRACT_WEIGHTS_IGNORED};
 *   failed += sr_contract_run(&s);   // one cmocka group "contract:round_robin"
 *
 * The clauses:
 * - create with NULL (or zeroed) options works and binds the type and the set;
 * - a pick returns only a node of the set that is up at now (not ejected:
 *   down_until_ms <= now; not gone), and every up node gets picks;
 * - never a node in `tried` while another node qualifies;
 * - NULL when no node qualifies; when every node is down, *retry_at_ms is
 *   the earliest time a present node comes back (gone nodes never do;
 *   INT64_MAX with no present node);
 * - weights: ignored, favoured (a heavier node gets clearly more picks), or
 *   proportional (each node's share is its weight's), as the subject claims;
 * - node churn (a node added, one removed, the list reordered, a node gone in
 *   place): a fresh instance over the new set, after inheriting from the old
 *   one, picks only nodes of the new set that are present, and all of them;
 *   a keyed balancer (keeps_keys) keeps every key whose node stayed on it;
 * - reported outcomes never take an up node out of rotation (the backoff in
 *   sr_node_report does that), and a report about a node of another set is
 *   harmless;
 * - destroy frees everything (the unit tests run under ASan/LSan: a leak
 *   fails the binary at exit).
 *
 * Node sets are hand-built (no channels, no gRPC), like the router tests,
 * and heap-allocated so that an instance still reading a set it was not
 * built over is a use-after-free ASan reports. Clock: now_ms arguments. */
#ifndef SKYRELAY_TEST_BALANCER_CONTRACT_H
#define SKYRELAY_TEST_BALANCER_CONTRACT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skyrelay/router.h"

enum sr_contract_weights {
    SR_CONTRACT_WEIGHTS_IGNORED = 0, /* claims nothing about weights */
    SR_CONTRACT_WEIGHTS_FAVOUR,      /* a heavier node gets clearly (10 %) more picks than a lighter one */
    SR_CONTRACT_WEIGHTS_PROPORTIONAL /* a node's share is weight / sum(weights), +-1.5 points */
};

struct sr_contract_subject {
    const char *name; /* the config name: the type is sr_balancer_find(name) */
    enum sr_contract_weights weights;
    /* keyed: a key goes to the same node while nothing changes, and through
     * inherit keeps its node across a node set change when its node stays */
    bool keeps_keys;
    /* optional: reseeds an instance's random draws, for reproducible picks */
    void (*seed)(struct sr_balancer *b, uint64_t seed);
    const struct sr_balancer_type *type; /* set by sr_contract_run */
};

#define SRC_MAX_NODES 8
#define SRC_SEED      7

static const char *const src_names[SRC_MAX_NODES] = {
    "10.9.0.1:11800", "10.9.0.2:11800", "10.9.0.3:11800", "10.9.0.4:11800",
    "10.9.0.5:11800", "10.9.0.6:11800", "10.9.0.7:11800", "10.9.0.8:11800"};

/* A node set: src_names[which[i]] at position i (index = position). */
struct src_set {
    struct sr_node *nodes; /* heap */
    struct sr_upstream up;
};

static void src_set_init(struct src_set *s, const int *which, const uint32_t *weights, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->nodes = calloc(n ? n : 1, sizeof(*s->nodes));
    assert_non_null(s->nodes);
    for (size_t i = 0; i < n; i++) {
        s->nodes[i].address = (char *)src_names[which ? which[i] : (int)i];
        s->nodes[i].weight = weights ? weights[i] : 1;
        s->nodes[i].index = (uint32_t)i;
    }
    s->up.nodes = s->nodes;
    s->up.n_nodes = n;
    s->up.backoff_initial_ms = 200;
    s->up.backoff_max_ms = 10000;
}

static void src_set_deinit(struct src_set *s)
{
    free(s->nodes);
    s->nodes = NULL;
}

static void src_down(struct src_set *s, size_t i, int64_t until_ms)
{
    atomic_store(&s->nodes[i].down_until_ms, until_ms);
}

static void src_gone(struct src_set *s, size_t i)
{
    atomic_store(&s->nodes[i].gone, 1);
}

static struct sr_balancer *src_create(const struct sr_contract_subject *c, struct src_set *s,
                                      uint64_t seed)
{
    struct sr_balancer *b = c->type->create(&s->up, NULL);
    assert_non_null(b);
    assert_ptr_equal(b->type, c->type);
    assert_ptr_equal(b->up, &s->up);
    if (c->seed) c->seed(b, seed);
    return b;
}

static void src_destroy(struct sr_balancer *b)
{
    b->type->destroy(b);
}

/* Picks; fails unless the result is NULL or a node of s. Returns its
 * position, or -1 for NULL. */
static int src_pick(struct sr_balancer *b, struct src_set *s, uint64_t key, uint64_t tried,
                    int64_t now_ms, int64_t *retry_at_ms)
{
    int64_t retry = 12345;
    struct sr_node *n = b->type->pick(b, key, tried, now_ms, retry_at_ms ? retry_at_ms : &retry);
    if (!n) return -1;
    if (n < s->nodes || n >= s->nodes + s->up.n_nodes)
        fail_msg("%s: picked a node outside the set", b->type->name);
    return (int)(n - s->nodes);
}

/* Position in s of the node called address, or -1. */
static int src_find(const struct src_set *s, const char *address)
{
    for (size_t i = 0; i < s->up.n_nodes; i++)
        if (strcmp(s->nodes[i].address, address) == 0) return (int)i;
    return -1;
}

/* Keys spread over 64 bits (sequential keys are fine too; these also vary
 * the high bits). */
static uint64_t src_key(uint64_t i)
{
    return i * 0x9E3779B97F4A7C15ULL + 1;
}

/* ---- clauses ---- */

static void src_create_with_null_opts_binds_type_and_set(void **state)
{
    const struct sr_contract_subject *c = *state;
    struct sr_balancer_opts zero;
    struct src_set s, empty;
    struct sr_balancer *b, *b0, *be;
    int64_t retry = 0;

    src_set_init(&s, NULL, NULL, 3);
    src_set_init(&empty, NULL, NULL, 0);
    b = src_create(c, &s, SRC_SEED);
    assert_true(src_pick(b, &s, 1, 0, 0, NULL) >= 0);
    /* every field 0 means the default, like NULL */
    memset(&zero, 0, sizeof(zero));
    b0 = c->type->create(&s.up, &zero);
    assert_non_null(b0);
    assert_ptr_equal(b0->type, c->type);
    assert_true(src_pick(b0, &s, 1, 0, 0, NULL) >= 0);
    /* an empty set (discovery found nothing yet) is a valid set */
    be = src_create(c, &empty, SRC_SEED);
    assert_int_equal(src_pick(be, &empty, 1, 0, 0, &retry), -1);
    assert_true(retry == INT64_MAX);
    src_destroy(b);
    src_destroy(b0);
    src_destroy(be);
    src_set_deinit(&s);
    src_set_deinit(&empty);
}

static void src_picks_only_up_nodes_and_every_up_node(void **state)
{
    const struct sr_contract_subject *c = *state;
    /* at now = 1000: 0 up, 1 down until 2000, 2 gone, 3 down until exactly
     * now (so up), 4 up, 5 gone and down */
    static const bool up_at_1000[6] = {true, false, false, true, true, false};
    static const bool up_at_2000[6] = {true, true, false, true, true, false};
    unsigned count[6] = {0};
    struct src_set s;
    struct sr_balancer *b;

    src_set_init(&s, NULL, NULL, 6);
    b = src_create(c, &s, SRC_SEED);
    /* all up first, so that whatever state the balancer keeps (cursor, pins)
     * points at every node */
    for (uint64_t i = 0; i < 600; i++) assert_true(src_pick(b, &s, src_key(i), 0, 0, NULL) >= 0);
    src_down(&s, 1, 2000);
    src_gone(&s, 2);
    src_down(&s, 3, 1000);
    src_gone(&s, 5);
    src_down(&s, 5, 1500);
    for (uint64_t i = 0; i < 600; i++) {
        int k = src_pick(b, &s, src_key(i), 0, 1000, NULL);
        if (k < 0) fail_msg("%s: no pick with 3 nodes up", c->name);
        if (!up_at_1000[k]) fail_msg("%s: picked node %d, which is not up", c->name, k);
        count[k]++;
    }
    for (int k = 0; k < 6; k++)
        if (up_at_1000[k] && count[k] == 0) fail_msg("%s: up node %d never picked", c->name, k);
    /* node 1 comes back at 2000; the gone ones never do */
    memset(count, 0, sizeof(count));
    for (uint64_t i = 0; i < 800; i++) {
        int k = src_pick(b, &s, src_key(i), 0, 2000, NULL);
        if (k < 0 || !up_at_2000[k]) fail_msg("%s: picked node %d at 2000", c->name, k);
        count[k]++;
    }
    if (count[1] == 0) fail_msg("%s: node 1 is not picked once it is back", c->name);
    src_destroy(b);
    src_set_deinit(&s);
}

static void src_never_picks_a_tried_node_when_another_qualifies(void **state)
{
    const struct sr_contract_subject *c = *state;
    struct src_set s;
    struct sr_balancer *b;
    uint64_t all;

    src_set_init(&s, NULL, NULL, 4);
    b = src_create(c, &s, SRC_SEED);
    all = sr_node_bit(&s.nodes[0]) | sr_node_bit(&s.nodes[1]) | sr_node_bit(&s.nodes[2]) |
          sr_node_bit(&s.nodes[3]);
    for (uint64_t tried = 0; tried < all; tried++)
        for (uint64_t i = 0; i < 64; i++) {
            int k = src_pick(b, &s, src_key(i), tried, 0, NULL);
            if (k < 0) fail_msg("%s: NULL with tried %#llx", c->name, (unsigned long long)tried);
            if (tried & sr_node_bit(&s.nodes[k]))
                fail_msg("%s: picked tried node %d (tried %#llx)", c->name, k,
                         (unsigned long long)tried);
        }
    for (uint64_t i = 0; i < 64; i++) assert_int_equal(src_pick(b, &s, src_key(i), all, 0, NULL), -1);
    /* tried and down together: only node 3 is left */
    src_down(&s, 0, 5000);
    for (uint64_t i = 0; i < 64; i++)
        assert_int_equal(src_pick(b, &s, src_key(i),
                                  sr_node_bit(&s.nodes[1]) | sr_node_bit(&s.nodes[2]), 0, NULL),
                         3);
    for (uint64_t i = 0; i < 64; i++)
        assert_int_equal(src_pick(b, &s, src_key(i), all & ~sr_node_bit(&s.nodes[0]), 0, NULL), -1);
    src_destroy(b);
    src_set_deinit(&s);
}

static void src_all_down_returns_null_and_the_earliest_comeback(void **state)
{
    const struct sr_contract_subject *c = *state;
    struct src_set s;
    struct sr_balancer *b;
    int64_t retry;

    src_set_init(&s, NULL, NULL, 4);
    b = src_create(c, &s, SRC_SEED);
    for (uint64_t i = 0; i < 64; i++) assert_true(src_pick(b, &s, src_key(i), 0, 0, NULL) >= 0);
    src_down(&s, 0, 5000);
    src_down(&s, 1, 3000);
    src_down(&s, 2, 4000);
    src_gone(&s, 3);
    src_down(&s, 3, 2000); /* gone: its down_until does not bring it back */
    for (uint64_t i = 0; i < 64; i++) {
        retry = 0;
        assert_int_equal(src_pick(b, &s, src_key(i), 0, 1000, &retry), -1);
        if (retry != 3000) fail_msg("%s: retry_at %lld, want 3000", c->name, (long long)retry);
        retry = 0;
        assert_int_equal(src_pick(b, &s, src_key(i), 0, 2999, &retry), -1);
        assert_true(retry == 3000);
    }
    /* at 3000, node 1 is the only one up */
    for (uint64_t i = 0; i < 64; i++) assert_int_equal(src_pick(b, &s, src_key(i), 0, 3000, NULL), 1);
    /* every node gone: nothing comes back by time */
    src_gone(&s, 0);
    src_gone(&s, 1);
    src_gone(&s, 2);
    retry = 0;
    assert_int_equal(src_pick(b, &s, 1, 0, 9000, &retry), -1);
    assert_true(retry == INT64_MAX);
    src_destroy(b);
    src_set_deinit(&s);
}

static void src_honours_weights_as_claimed(void **state)
{
    const struct sr_contract_subject *c = *state;
    static const uint32_t w[3] = {3, 2, 1};
    const unsigned picks = 60000;
    unsigned count[3] = {0};
    struct src_set s;
    struct sr_balancer *b;

    if (c->weights == SR_CONTRACT_WEIGHTS_IGNORED) skip();
    src_set_init(&s, NULL, w, 3);
    b = src_create(c, &s, SRC_SEED);
    for (unsigned i = 0; i < picks; i++) {
        int k = src_pick(b, &s, src_key(i), 0, 0, NULL);
        assert_true(k >= 0);
        count[k]++;
    }
    if (c->weights == SR_CONTRACT_WEIGHTS_FAVOUR) {
        /* clearly more: 10 % above the next lighter node, far beyond the noise */
        if (!(count[0] > count[1] + count[1] / 10 && count[1] > count[2] + count[2] / 10))
            fail_msg("%s: weights 3,2,1 got %u,%u,%u picks", c->name, count[0], count[1], count[2]);
    } else {
        for (int k = 0; k < 3; k++) {
            double pct = 100.0 * count[k] / picks, want = 100.0 * w[k] / 6;
            if (pct < want - 1.5 || pct > want + 1.5)
                fail_msg("%s: node %d (weight %u) got %.2f%%, want %.2f%%", c->name, k, w[k], pct,
                         want);
        }
    }
    src_destroy(b);
    src_set_deinit(&s);
}

static void src_a_key_keeps_its_node_while_nothing_changes(void **state)
{
    const struct sr_contract_subject *c = *state;
    struct src_set s;
    struct sr_balancer *b, *other;

    if (!c->keeps_keys) skip();
    src_set_init(&s, NULL, NULL, 5);
    b = src_create(c, &s, SRC_SEED);
    other = src_create(c, &s, SRC_SEED + 1);
    for (uint64_t i = 0; i < 2000; i++) {
        int k = src_pick(b, &s, src_key(i), 0, 0, NULL);
        assert_int_equal(src_pick(b, &s, src_key(i), 0, 1, NULL), k);
        /* and every instance (worker) agrees */
        assert_int_equal(src_pick(other, &s, src_key(i), 0, 2, NULL), k);
    }
    src_destroy(b);
    src_destroy(other);
    src_set_deinit(&s);
}

#define SRC_WARM_KEYS 1000
#define SRC_KEYS      4000

/* The old set is names 0..3. If in_place, the new set is the old node array
 * with node `gone` marked gone (what sr_upstream_apply does); else it is a
 * separate array of names which[0..n). A fresh instance over the new set
 * inherits from the old one, the old one is destroyed and (unless in place)
 * its node array freed; then every pick must be a present node of the new
 * set, every present node must get picks, and a keyed balancer must keep
 * every warm key whose node stayed. */
static void src_churn(const struct sr_contract_subject *c, const int *which, size_t n, bool in_place,
                      int gone)
{
    static const int old_names[4] = {0, 1, 2, 3};
    const char *owner[SRC_WARM_KEYS];
    unsigned count[SRC_MAX_NODES] = {0};
    struct src_set a, fresh, *s;
    struct sr_balancer *ba, *bb;

    src_set_init(&a, old_names, NULL, 4);
    ba = src_create(c, &a, SRC_SEED);
    for (uint64_t i = 0; i < SRC_WARM_KEYS; i++) {
        int k = src_pick(ba, &a, src_key(i), 0, 0, NULL);
        assert_true(k >= 0);
        owner[i] = a.nodes[k].address; /* a static string: survives the set */
    }
    if (in_place) {
        src_gone(&a, (size_t)gone);
        s = &a;
    } else {
        src_set_init(&fresh, which, NULL, n);
        s = &fresh;
    }
    bb = src_create(c, s, SRC_SEED + 1);
    sr_balancer_inherit(bb, ba);
    src_destroy(ba);
    if (!in_place) src_set_deinit(&a);

    for (uint64_t i = 0; i < SRC_KEYS; i++) {
        int k = src_pick(bb, s, src_key(i), 0, 10, NULL);
        if (k < 0) fail_msg("%s: no pick after the change", c->name);
        if (!sr_node_present(&s->nodes[k]))
            fail_msg("%s: picked %s, gone from the set", c->name, s->nodes[k].address);
        count[k]++;
        if (c->keeps_keys && i < SRC_WARM_KEYS) {
            int was = src_find(s, owner[i]);
            if (was >= 0 && sr_node_present(&s->nodes[was]) && was != k)
                fail_msg("%s: key %llu moved from %s to %s, which stayed", c->name,
                         (unsigned long long)i, owner[i], s->nodes[k].address);
        }
    }
    for (size_t k = 0; k < s->up.n_nodes; k++)
        if (sr_node_present(&s->nodes[k]) && count[k] == 0)
            fail_msg("%s: %s never picked after the change", c->name, s->nodes[k].address);
    src_destroy(bb);
    src_set_deinit(s);
}

static void src_churn_a_node_added(void **state)
{
    static const int added[5] = {0, 1, 2, 3, 4};
    src_churn(*state, added, 5, false, -1);
}

static void src_churn_a_node_removed(void **state)
{
    static const int removed[3] = {0, 1, 3};
    src_churn(*state, removed, 3, false, -1);
}

static void src_churn_the_list_reordered(void **state)
{
    static const int reordered[4] = {3, 1, 0, 2};
    src_churn(*state, reordered, 4, false, -1);
}

static void src_churn_a_node_gone_in_place(void **state)
{
    src_churn(*state, NULL, 0, true, 2);
}

static void src_churn_a_node_added_and_one_removed(void **state)
{
    static const int both[4] = {4, 0, 2, 3};
    src_churn(*state, both, 4, false, -1);
}

static void src_reports_never_take_an_up_node_out(void **state)
{
    const struct sr_contract_subject *c = *state;
    unsigned count[3] = {0};
    struct src_set s, other;
    struct sr_balancer *b;

    src_set_init(&s, NULL, NULL, 3);
    src_set_init(&other, NULL, NULL, 3);
    b = src_create(c, &s, SRC_SEED);
    for (int i = 0; i < 20; i++) {
        assert_true(src_pick(b, &s, src_key((uint64_t)i), 0, 0, NULL) >= 0);
        sr_balancer_report(b, &s.nodes[0], false);
        sr_balancer_report(b, &s.nodes[1], true);
        /* a node of another set (a call picked before a rebuild): ignored */
        sr_balancer_report(b, &other.nodes[2], false);
    }
    for (uint64_t i = 0; i < 3000; i++) {
        int k = src_pick(b, &s, src_key(i), 0, 0, NULL);
        assert_true(k >= 0);
        count[k]++;
    }
    for (int k = 0; k < 3; k++)
        if (count[k] == 0) fail_msg("%s: node %d out of rotation after reports", c->name, k);
    src_destroy(b);
    src_set_deinit(&s);
    src_set_deinit(&other);
}

/* Exercises every path that allocates; LSan (at exit) finds what destroy
 * missed. */
static void src_destroy_frees_everything(void **state)
{
    const struct sr_contract_subject *c = *state;
    struct sr_balancer_opts small = {.lru_size = 16, .lru_ttl_ms = 1000};
    struct src_set s;
    struct sr_balancer *prev = NULL;

    src_set_init(&s, NULL, NULL, 5);
    for (int gen = 0; gen < 50; gen++) {
        struct sr_balancer *b = gen % 2 ? c->type->create(&s.up, &small) : src_create(c, &s, 1);
        assert_non_null(b);
        if (prev) {
            sr_balancer_inherit(b, prev);
            src_destroy(prev);
        }
        for (uint64_t i = 0; i < 100; i++) {
            int k = src_pick(b, &s, src_key(i + (uint64_t)gen * 37), 0, gen * 500, NULL);
            assert_true(k >= 0);
            sr_balancer_report(b, &s.nodes[k], i % 3 != 0);
        }
        prev = b;
    }
    src_destroy(prev);
    src_set_deinit(&s);
}

struct src_clause {
    const char *name;
    CMUnitTestFunction fn;
};

static const struct src_clause src_clauses[] = {
    {"create_with_null_opts_binds_type_and_set", src_create_with_null_opts_binds_type_and_set},
    {"picks_only_up_nodes_and_every_up_node", src_picks_only_up_nodes_and_every_up_node},
    {"never_picks_a_tried_node_when_another_qualifies",
     src_never_picks_a_tried_node_when_another_qualifies},
    {"all_down_returns_null_and_the_earliest_comeback",
     src_all_down_returns_null_and_the_earliest_comeback},
    {"honours_weights_as_claimed", src_honours_weights_as_claimed},
    {"a_key_keeps_its_node_while_nothing_changes", src_a_key_keeps_its_node_while_nothing_changes},
    {"churn_a_node_added", src_churn_a_node_added},
    {"churn_a_node_removed", src_churn_a_node_removed},
    {"churn_the_list_reordered", src_churn_the_list_reordered},
    {"churn_a_node_gone_in_place", src_churn_a_node_gone_in_place},
    {"churn_a_node_added_and_one_removed", src_churn_a_node_added_and_one_removed},
    {"reports_never_take_an_up_node_out", src_reports_never_take_an_up_node_out},
    {"destroy_frees_everything", src_destroy_frees_everything},
};

#define SRC_N_CLAUSES (sizeof(src_clauses) / sizeof(src_clauses[0]))

/* Runs the contract for s (its type is looked up by name) as one cmocka
 * group. Returns the number of failed clauses (1 if the name is unknown). */
static int sr_contract_run(struct sr_contract_subject *s)
{
    struct CMUnitTest tests[SRC_N_CLAUSES];
    char names[SRC_N_CLAUSES][96], group[96];

    s->type = sr_balancer_find(s->name);
    if (!s->type || strcmp(s->type->name, s->name) != 0) {
        fprintf(stderr, "contract: no balancer named %s\n", s->name);
        return 1;
    }
    for (size_t i = 0; i < SRC_N_CLAUSES; i++) {
        snprintf(names[i], sizeof(names[i]), "%s:%s", s->name, src_clauses[i].name);
        tests[i] = (struct CMUnitTest){
            .name = names[i], .test_func = src_clauses[i].fn, .initial_state = s};
    }
    snprintf(group, sizeof(group), "contract:%s", s->name);
    return _cmocka_run_group_tests(group, tests, SRC_N_CLAUSES, NULL, NULL);
}

#endif
