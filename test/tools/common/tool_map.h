/* Small hash containers for the test tools.
 *
 * tool_map: string key -> uint64 counter (open addressing, keys copied). Used for
 *   per-service / per-instance / per-method counts; JSON output is sorted by key.
 * tool_set: a set of 64-bit hashes of ids, used to count duplicates. Storing the hash
 *   instead of the id keeps a few million ids in tens of MB; with a 64-bit hash the chance
 *   that two distinct ids of a test run collide is negligible (~n^2 / 2^65).
 * Not thread-safe: callers lock. Allocation failure aborts. */
#ifndef SKYRELAY_TOOL_MAP_H
#define SKYRELAY_TOOL_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "tool_json.h"

struct tool_map_entry {
    char *key; /* NUL-terminated copy; NULL = empty slot */
    size_t klen;
    uint64_t hash;
    uint64_t value;
};

struct tool_map {
    struct tool_map_entry *slots;
    size_t cap; /* power of two */
    size_t used;
};

struct tool_set {
    uint64_t *slots; /* 0 = empty */
    size_t cap;
    size_t used;
};

/* 64-bit hash of a byte string (FNV-1a with a murmur3 finaliser); never returns 0. */
uint64_t tool_hash(const void *data, size_t n);

void tool_map_init(struct tool_map *m);
void tool_map_deinit(struct tool_map *m);
/* Adds delta to key's counter (created at 0); returns the new value. */
uint64_t tool_map_add(struct tool_map *m, const char *key, size_t klen, uint64_t delta);
/* Returns key's counter, 0 if absent. */
uint64_t tool_map_get(const struct tool_map *m, const char *key, size_t klen);
/* Sum of all counters. */
uint64_t tool_map_sum(const struct tool_map *m);
/* Writes the map as a JSON object member {"key": value, ...} sorted by key. */
void tool_map_to_json(const struct tool_map *m, struct tool_json *j, const char *name);
/* Adds every counter of src into dst. */
void tool_map_merge(struct tool_map *dst, const struct tool_map *src);

void tool_set_init(struct tool_set *s);
void tool_set_deinit(struct tool_set *s);
/* Inserts hash h; returns 1 if it was new, 0 if it was already there. */
int tool_set_insert(struct tool_set *s, uint64_t h);

#endif
