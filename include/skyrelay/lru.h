/* A bounded LRU map from a 64-bit key to a 64-bit value, with a sliding TTL.
 *
 * Used by the "fixed" balancer to pin a key to a node identity. All memory is
 * allocated at create time (a chained hash table over a preallocated entry
 * array, and a doubly linked recency list through the same entries), so get,
 * put and evict are O(1) and never allocate. Time is passed in by the caller
 * (the worker's clock, or a fake one in tests). Not thread-safe: one owner. */
#ifndef SKYRELAY_LRU_H
#define SKYRELAY_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SR_LRU_DEFAULT_SIZE 5000u
#define SR_LRU_DEFAULT_TTL_MS 180000u
/* Largest accepted capacity (keeps indexes in 32 bits with room for the table). */
#define SR_LRU_MAX_SIZE (1u << 28)

struct sr_lru;

/* Returns owned, or NULL on allocation failure or capacity > SR_LRU_MAX_SIZE.
 * capacity 0 means SR_LRU_DEFAULT_SIZE, ttl_ms 0 means SR_LRU_DEFAULT_TTL_MS. */
struct sr_lru *sr_lru_create(uint32_t capacity, uint32_t ttl_ms);
void sr_lru_destroy(struct sr_lru *l);

/* If key is present and was last used less than ttl ago (now_ms - last use <
 * ttl), stores its value in *value, makes it the most recently used, restarts
 * its TTL at now_ms and returns true. An expired entry is removed. */
bool sr_lru_get(struct sr_lru *l, uint64_t key, int64_t now_ms, uint64_t *value);

/* Sets key to value, used at now_ms (most recently used, TTL restarted).
 * Makes room first by dropping expired entries, then, if still full, the
 * least recently used one. */
void sr_lru_put(struct sr_lru *l, uint64_t key, uint64_t value, int64_t now_ms);

/* Removes key. Returns true if it was present (expired or not). */
bool sr_lru_remove(struct sr_lru *l, uint64_t key);

/* Moves every entry of src into dst, keeping their last-use times and their
 * recency order (dst's capacity applies: the least recent go first). Meant
 * for a fresh dst; src is left empty. */
void sr_lru_move(struct sr_lru *dst, struct sr_lru *src);

/* Entries held, including expired ones not yet dropped. */
size_t sr_lru_size(const struct sr_lru *l);
uint32_t sr_lru_capacity(const struct sr_lru *l);
uint32_t sr_lru_ttl_ms(const struct sr_lru *l);

#endif
