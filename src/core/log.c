/* Log lines: "2026-11-26T21:07:21.123Z info  module: message". */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "skyrelay/log.h"

_Atomic int sr_log_level = SR_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

int sr_log_level_parse(const char *s)
{
    if (!s) return -1;
    if (strcasecmp(s, "warning") == 0) return SR_LOG_WARN;
    if (strcasecmp(s, "fatal") == 0 || strcasecmp(s, "panic") == 0) return SR_LOG_ERROR;
    if (strcasecmp(s, "trace") == 0) return SR_LOG_DEBUG;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    return -1;
}

void sr_log_write(int level, const char *module, const char *fmt, ...)
{
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03dZ %-5s %s: ", (int)(tv.tv_usec / 1000),
                          names[level < 0 ? 0 : level > 3 ? 3 : level], module);
    va_start(ap, fmt);
    if (n < sizeof(buf)) {
        int k = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
        if (k > 0) n += (size_t)k;
    }
    va_end(ap);
    if (n > sizeof(buf) - 2) n = sizeof(buf) - 2;
    buf[n++] = '\n';
    /* one write(2) per line so that lines of concurrent threads do not interleave */
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sr_log_ratelimit_pass(struct sr_log_ratelimit *rl, uint64_t *suppressed)
{
    int64_t now = mono_ms();
    int64_t next = atomic_load_explicit(&rl->next_ms, memory_order_relaxed);
    if (now < next ||
        !atomic_compare_exchange_strong(&rl->next_ms, &next, now + 1000)) {
        atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
        return 0;
    }
    *suppressed = atomic_exchange(&rl->suppressed, 0);
    return 1;
}
