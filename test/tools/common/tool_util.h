/* Helpers shared by fake_oap and loadgen: clocks, byte buffers, number parsing, signal
 * masks, atomic summary files. Nothing here keeps state. */
#ifndef SKYRELAY_TOOL_UTIL_H
#define SKYRELAY_TOOL_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

/* Monotonic clock in milliseconds / seconds. */
int64_t tool_now_ms(void);
double tool_now_s(void);

/* A GPR_CLOCK_MONOTONIC deadline ms from now; ms < 0 means no deadline (infinite future). */
gpr_timespec tool_deadline_ms(int64_t ms);

/* Returns a new byte buffer holding a copy of data[0..n) (owned by the caller). */
grpc_byte_buffer *tool_bb_copy(const void *data, size_t n);
/* Returns the contents of bb as one contiguous slice (owned: grpc_slice_unref it).
 * bb is borrowed. */
grpc_slice tool_bb_flatten(grpc_byte_buffer *bb);

/* Parses a decimal unsigned integer that must fit in [min, max]; returns 0 or -1. */
int tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Upper-case name of a grpc_status_code ("UNAVAILABLE"), "UNKNOWN_CODE" for others. */
const char *tool_status_name(int code);

/* Blocks SIGINT and SIGTERM in the calling thread (call it before grpc_init and before
 * creating threads so every thread inherits the mask), ignores SIGPIPE, and stores the
 * blocked set in *set for sigtimedwait. */
void tool_block_signals(sigset_t *set);

/* The whole file as a NUL-terminated string (malloc'd; the caller frees), or NULL with
 * a message on stderr naming the tool and the file (TLS PEM files). */
char *tool_read_file(const char *tool, const char *path);

/* Writes data to path atomically (path.tmp + rename); returns 0 or -1 (errno set). */
int tool_write_file_atomic(const char *path, const char *data, size_t n);

#endif
