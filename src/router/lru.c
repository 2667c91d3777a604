/* Bounded LRU with a sliding TTL (see include/skyrelay/lru.h).
 *
 * Every entry lives in one preallocated array and is on exactly one of two
 * lists: the free list (through hnext), or a hash bucket chain (through
 * hnext) plus the recency list (through prev/next, head = most recent). All
 * links are 32-bit array indexes, NIL terminated. Since the TTL is sliding
 * and the same for every entry, the recency list is also ordered by expiry:
 * expired entries are always at the tail, so dropping them is O(1) each. */
#include <stdlib.h>

#include "skyrelay/wire.h"
#include "skyrelay/lru.h"

#define NIL UINT32_MAX

struct entry {
    uint64_t key;
    uint64_t value;
    int64_t used_ms;
    uint32_t hnext; /* bucket chain, or free list */
    uint32_t prev, next;
};

struct sr_lru {
    struct entry *e;
    uint32_t *bucket;
    uint32_t mask; /* bucket count - 1 */
    uint32_t capacity;
    uint32_t ttl_ms;
    uint32_t size;
    uint32_t head, tail;
    uint32_t free;
};

static uint32_t *slot(struct sr_lru *l, uint64_t key)
{
    return &l->bucket[sr_mix64(key) & l->mask];
}

static bool expired(const struct sr_lru *l, const struct entry *x, int64_t now_ms)
{
    return now_ms - x->used_ms >= (int64_t)l->ttl_ms;
}

struct sr_lru *sr_lru_create(uint32_t capacity, uint32_t ttl_ms)
{
    struct sr_lru *l;
    uint32_t nb = 1;

    if (capacity == 0) capacity = SR_LRU_DEFAULT_SIZE;
    if (ttl_ms == 0) ttl_ms = SR_LRU_DEFAULT_TTL_MS;
    if (capacity > SR_LRU_MAX_SIZE) return NULL;
    while (nb < capacity * 2) nb *= 2; /* load factor <= 1/2 */

    l = calloc(1, sizeof(*l));
    if (!l) goto fail;
    l->e = malloc((size_t)capacity * sizeof(*l->e));
    l->bucket = malloc((size_t)nb * sizeof(*l->bucket));
    if (!l->e || !l->bucket) goto fail;
    for (uint32_t i = 0; i < nb; i++) l->bucket[i] = NIL;
    for (uint32_t i = 0; i < capacity; i++) l->e[i].hnext = i + 1 < capacity ? i + 1 : NIL;
    l->mask = nb - 1;
    l->capacity = capacity;
    l->ttl_ms = ttl_ms;
    l->head = l->tail = NIL;
    l->free = 0;
    return l;

fail:
    sr_lru_destroy(l);
    return NULL;
}

void sr_lru_destroy(struct sr_lru *l)
{
    if (!l) return;
    free(l->e);
    free(l->bucket);
    free(l);
}

static uint32_t find(struct sr_lru *l, uint64_t key)
{
    uint32_t i = *slot(l, key);
    while (i != NIL && l->e[i].key != key) i = l->e[i].hnext;
    return i;
}

static void unlink_recency(struct sr_lru *l, uint32_t i)
{
    struct entry *x = &l->e[i];
    if (x->prev != NIL) l->e[x->prev].next = x->next;
    else l->head = x->next;
    if (x->next != NIL) l->e[x->next].prev = x->prev;
    else l->tail = x->prev;
}

static void push_head(struct sr_lru *l, uint32_t i)
{
    struct entry *x = &l->e[i];
    x->prev = NIL;
    x->next = l->head;
    if (l->head != NIL) l->e[l->head].prev = i;
    l->head = i;
    if (l->tail == NIL) l->tail = i;
}

static void touch(struct sr_lru *l, uint32_t i, int64_t now_ms)
{
    l->e[i].used_ms = now_ms;
    if (l->head == i) return;
    unlink_recency(l, i);
    push_head(l, i);
}

/* Unlinks entry i from its bucket and the recency list and frees it. */
static void drop(struct sr_lru *l, uint32_t i)
{
    uint32_t *p = slot(l, l->e[i].key);
    while (*p != i) p = &l->e[*p].hnext;
    *p = l->e[i].hnext;
    unlink_recency(l, i);
    l->e[i].hnext = l->free;
    l->free = i;
    l->size--;
}

bool sr_lru_get(struct sr_lru *l, uint64_t key, int64_t now_ms, uint64_t *value)
{
    uint32_t i = find(l, key);
    if (i == NIL) return false;
    if (expired(l, &l->e[i], now_ms)) {
        drop(l, i);
        return false;
    }
    touch(l, i, now_ms);
    *value = l->e[i].value;
    return true;
}

void sr_lru_put(struct sr_lru *l, uint64_t key, uint64_t value, int64_t now_ms)
{
    uint32_t i = find(l, key);
    uint32_t *b;

    if (i != NIL) {
        l->e[i].value = value;
        touch(l, i, now_ms);
        return;
    }
    while (l->tail != NIL && expired(l, &l->e[l->tail], now_ms)) drop(l, l->tail);
    if (l->free == NIL) drop(l, l->tail); /* full: evict the least recently used */

    i = l->free;
    l->free = l->e[i].hnext;
    b = slot(l, key);
    l->e[i].key = key;
    l->e[i].value = value;
    l->e[i].used_ms = now_ms;
    l->e[i].hnext = *b;
    *b = i;
    push_head(l, i);
    l->size++;
}

bool sr_lru_remove(struct sr_lru *l, uint64_t key)
{
    uint32_t i = find(l, key);
    if (i == NIL) return false;
    drop(l, i);
    return true;
}

void sr_lru_move(struct sr_lru *dst, struct sr_lru *src)
{
    while (src->tail != NIL) {
        struct entry x = src->e[src->tail];
        drop(src, src->tail);
        sr_lru_put(dst, x.key, x.value, x.used_ms);
    }
}

size_t sr_lru_size(const struct sr_lru *l)
{
    return l->size;
}

uint32_t sr_lru_capacity(const struct sr_lru *l)
{
    return l->capacity;
}

uint32_t sr_lru_ttl_ms(const struct sr_lru *l)
{
    return l->ttl_ms;
}
