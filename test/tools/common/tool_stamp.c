/* Latency stamps (tool_stamp.h). */
#include "tool_stamp.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t *g_lat;
static size_t g_n, g_cap;

int64_t tool_wall_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

void tool_stamp_put(char *dst, int64_t us)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = (uint64_t)us;
    memcpy(dst, TOOL_STAMP_MARK, TOOL_STAMP_MARK_LEN);
    for (int i = 15; i >= 0; i--, v >>= 4)
        dst[TOOL_STAMP_MARK_LEN + i] = hex[v & 15];
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void record(const int64_t *v, size_t k)
{
    pthread_mutex_lock(&g_mu);
    if (g_n + k > g_cap) {
        size_t cap = g_cap ? g_cap * 2 : 65536;
        while (cap < g_n + k)
            cap *= 2;
        int64_t *nl = realloc(g_lat, cap * sizeof(*nl));
        if (!nl)
            abort();
        g_lat = nl;
        g_cap = cap;
    }
    memcpy(g_lat + g_n, v, k * sizeof(*v));
    g_n += k;
    pthread_mutex_unlock(&g_mu);
}

size_t tool_stamp_scan(const uint8_t *p, size_t n, int64_t now_us)
{
    int64_t found[64];
    size_t k = 0, total = 0;
    const uint8_t *end = p + n;
    while ((size_t)(end - p) >= TOOL_STAMP_LEN) {
        const uint8_t *m = memmem(p, (size_t)(end - p), TOOL_STAMP_MARK, TOOL_STAMP_MARK_LEN);
        if (!m || (size_t)(end - m) < TOOL_STAMP_LEN)
            break;
        uint64_t v = 0;
        int i;
        for (i = 0; i < 16; i++) {
            int h = hexval(m[TOOL_STAMP_MARK_LEN + i]);
            if (h < 0)
                break;
            v = v << 4 | (uint64_t)h;
        }
        if (i < 16) {
            p = m + TOOL_STAMP_MARK_LEN;
            continue;
        }
        p = m + TOOL_STAMP_LEN;
        found[k++] = now_us - (int64_t)v;
        if (k == sizeof(found) / sizeof(found[0])) {
            record(found, k);
            total += k;
            k = 0;
        }
    }
    if (k) {
        record(found, k);
        total += k;
    }
    return total;
}

int tool_stamp_write_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n; i++)
        fprintf(f, "%" PRId64 "\n", g_lat[i]);
    pthread_mutex_unlock(&g_mu);
    return fclose(f) == 0 ? 0 : -1;
}
