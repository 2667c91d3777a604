/* Latency stamps for the benchmarks: loadgen --stamp-every writes the wall-clock time of the
 * write into a segment's padding tag, fake_oap --latency finds the stamps in what it receives
 * and records receive time - stamp. Both run on one machine: CLOCK_REALTIME of one kernel. */
#ifndef SKYRELAY_TOOL_STAMP_H
#define SKYRELAY_TOOL_STAMP_H

#include <stddef.h>
#include <stdint.h>

#define TOOL_STAMP_MARK "~SRTS"
#define TOOL_STAMP_MARK_LEN 5
#define TOOL_STAMP_LEN (TOOL_STAMP_MARK_LEN + 16) /* the mark, then 16 lower-case hex digits */

/* CLOCK_REALTIME in microseconds. */
int64_t tool_wall_us(void);

/* Writes the TOOL_STAMP_LEN bytes of a stamp of time us to dst (no NUL). */
void tool_stamp_put(char *dst, int64_t us);

/* Finds every stamp in p[0..n) and records now_us - stamp (thread-safe). Returns how many. */
size_t tool_stamp_scan(const uint8_t *p, size_t n, int64_t now_us);

/* Writes the recorded latencies, one decimal microsecond figure per line; 0 or -1. */
int tool_stamp_write_file(const char *path);

#endif
