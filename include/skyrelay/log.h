/* Logging: one line per event, "ts level module: message".
 *
 * The macros check the level before evaluating their arguments, and are
 * printf-checked. SR_LOG_RL rate-limits a call site (data-path errors): at most
 * one line per second per call site, with the number of suppressed lines
 * reported on the next one that gets through.
 * Thread-safe: a line is written with one write(2). */
#ifndef SKYRELAY_LOG_H
#define SKYRELAY_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum sr_log_level { SR_LOG_ERROR = 0, SR_LOG_WARN, SR_LOG_INFO, SR_LOG_DEBUG };

/* Read by every thread at each log call; written at start and by a reload (SIGHUP,
 * main thread): atomic, so a reload never races the workers' checks. */
extern _Atomic int sr_log_level;

/* Parses "error|warn|warning|info|debug" (case-insensitive). Returns the level or -1. */
int sr_log_level_parse(const char *s);

void sr_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct sr_log_ratelimit {
    _Atomic int64_t next_ms;
    _Atomic uint64_t suppressed;
};

/* Returns 1 if a rate-limited line may be written now (and how many were
 * suppressed since the last one in *suppressed), 0 otherwise. */
int sr_log_ratelimit_pass(struct sr_log_ratelimit *rl, uint64_t *suppressed);

#define SR_LOG(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) <= sr_log_level) sr_log_write((level), (module), __VA_ARGS__);                \
    } while (0)

#define SR_ERROR(module, ...) SR_LOG(SR_LOG_ERROR, module, __VA_ARGS__)
#define SR_WARN(module, ...)  SR_LOG(SR_LOG_WARN, module, __VA_ARGS__)
#define SR_INFO(module, ...)  SR_LOG(SR_LOG_INFO, module, __VA_ARGS__)
#define SR_DEBUG(module, ...) SR_LOG(SR_LOG_DEBUG, module, __VA_ARGS__)

/* Rate-limited: one line per second per call site. */
#define SR_LOG_RL(level, module, fmt, ...)                                                         \
    do {                                                                                           \
        static struct sr_log_ratelimit rl__;                                                       \
        uint64_t sup__;                                                                            \
        if ((level) <= sr_log_level && sr_log_ratelimit_pass(&rl__, &sup__)) {                     \
            if (sup__)                                                                             \
                sr_log_write((level), (module), fmt " (%llu similar suppressed)", ##__VA_ARGS__,   \
                             (unsigned long long)sup__);                                           \
            else                                                                                   \
                sr_log_write((level), (module), fmt, ##__VA_ARGS__);                               \
        }                                                                                          \
    } while (0)

#endif
