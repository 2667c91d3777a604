#include "tool_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

uint64_t tool_hash(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= (uint64_t)n;
    /* murmur3 fmix64: spreads FNV's weak low bits over the whole word */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

void tool_map_init(struct tool_map *m)
{
    m->cap = 16;
    m->used = 0;
    m->slots = xcalloc(m->cap, sizeof(*m->slots));
}

void tool_map_deinit(struct tool_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static struct tool_map_entry *find(const struct tool_map *m, const char *key, size_t klen,
                                   uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct tool_map_entry *e = &m->slots[i];
        if (!e->key)
            return e;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
}

static void map_grow(struct tool_map *m)
{
    struct tool_map old = *m;
    m->cap *= 2;
    m->slots = xcalloc(m->cap, sizeof(*m->slots));
    for (size_t i = 0; i < old.cap; i++) {
        struct tool_map_entry *e = &old.slots[i];
        if (e->key)
            *find(m, e->key, e->klen, e->hash) = *e;
    }
    free(old.slots);
}

uint64_t tool_map_add(struct tool_map *m, const char *key, size_t klen, uint64_t delta)
{
    if ((m->used + 1) * 4 > m->cap * 3)
        map_grow(m);
    uint64_t h = tool_hash(key, klen);
    struct tool_map_entry *e = find(m, key, klen, h);
    if (!e->key) {
        e->key = xcalloc(1, klen + 1);
        memcpy(e->key, key, klen);
        e->klen = klen;
        e->hash = h;
        e->value = 0;
        m->used++;
    }
    e->value += delta;
    return e->value;
}

uint64_t tool_map_get(const struct tool_map *m, const char *key, size_t klen)
{
    const struct tool_map_entry *e = find(m, key, klen, tool_hash(key, klen));
    return e->key ? e->value : 0;
}

uint64_t tool_map_sum(const struct tool_map *m)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            sum += m->slots[i].value;
    return sum;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct tool_map_entry *x = *(const struct tool_map_entry *const *)a;
    const struct tool_map_entry *y = *(const struct tool_map_entry *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

void tool_map_to_json(const struct tool_map *m, struct tool_json *j, const char *name)
{
    const struct tool_map_entry **v = xcalloc(m->used ? m->used : 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            v[n++] = &m->slots[i];
    qsort(v, n, sizeof(*v), cmp_entry);
    tool_json_obj_open(j, name);
    for (size_t i = 0; i < n; i++)
        tool_json_u64_kn(j, v[i]->key, v[i]->klen, v[i]->value);
    tool_json_obj_close(j);
    free(v);
}

void tool_map_merge(struct tool_map *dst, const struct tool_map *src)
{
    for (size_t i = 0; i < src->cap; i++)
        if (src->slots[i].key)
            tool_map_add(dst, src->slots[i].key, src->slots[i].klen, src->slots[i].value);
}

void tool_set_init(struct tool_set *s)
{
    s->cap = 1024;
    s->used = 0;
    s->slots = xcalloc(s->cap, sizeof(*s->slots));
}

void tool_set_deinit(struct tool_set *s)
{
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

static uint64_t *set_find(uint64_t *slots, size_t cap, uint64_t h)
{
    size_t mask = cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
        if (slots[i] == 0 || slots[i] == h)
            return &slots[i];
}

int tool_set_insert(struct tool_set *s, uint64_t h)
{
    if (h == 0)
        h = 1;
    if ((s->used + 1) * 2 > s->cap) {
        size_t ncap = s->cap * 2;
        uint64_t *n = xcalloc(ncap, sizeof(*n));
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                *set_find(n, ncap, s->slots[i]) = s->slots[i];
        free(s->slots);
        s->slots = n;
        s->cap = ncap;
    }
    uint64_t *slot = set_find(s->slots, s->cap, h);
    if (*slot)
        return 0;
    *slot = h;
    s->used++;
    return 1;
}
