/* A tiny JSON emitter for the test tools' summaries.
 *
 * The writer appends to a growable buffer and inserts commas itself: open an object or an
 * array, add members, close it. Keys and string values are escaped (RFC 8259: quote,
 * backslash and control characters; other bytes are copied as they are).
 * Allocation failure aborts: these are test tools. */
#ifndef SKYRELAY_TOOL_JSON_H
#define SKYRELAY_TOOL_JSON_H

#include <stddef.h>
#include <stdint.h>

#define TOOL_JSON_MAX_DEPTH 16

struct tool_json {
    char *buf;
    size_t len;
    size_t cap;
    int depth;
    int count[TOOL_JSON_MAX_DEPTH]; /* members written so far at each depth */
};

/* Initialises an empty writer. */
void tool_json_init(struct tool_json *j);
/* Frees the buffer; the writer can be initialised again. */
void tool_json_deinit(struct tool_json *j);
/* Returns the NUL-terminated text written so far (borrowed, valid until the next call). */
const char *tool_json_str(const struct tool_json *j);

/* Open/close an object or array. key is NULL at top level and inside arrays. */
void tool_json_obj_open(struct tool_json *j, const char *key);
void tool_json_obj_close(struct tool_json *j);
void tool_json_arr_open(struct tool_json *j, const char *key);
void tool_json_arr_close(struct tool_json *j);

/* Members; key is NULL inside arrays. */
void tool_json_u64(struct tool_json *j, const char *key, uint64_t v);
void tool_json_i64(struct tool_json *j, const char *key, int64_t v);
void tool_json_double(struct tool_json *j, const char *key, double v, int decimals);
void tool_json_bool(struct tool_json *j, const char *key, int v);
void tool_json_str_member(struct tool_json *j, const char *key, const char *s);
void tool_json_strn_member(struct tool_json *j, const char *key, const char *s, size_t n);
/* A number member whose key is given with its length (keys from the wire may hold any byte). */
void tool_json_u64_kn(struct tool_json *j, const char *key, size_t klen, uint64_t v);

/* Appends s escaped and quoted to the buffer, no comma logic (for keys built elsewhere). */
void tool_json_escape(struct tool_json *j, const char *s, size_t n);

#endif
