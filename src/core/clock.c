/* See include/skyrelay/clock.h. */
#include "skyrelay/clock.h"

int64_t sr_now_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t sr_now_us(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_MONOTONIC);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int64_t sr_wall_ms(void)
{
    gpr_timespec t = gpr_now(GPR_CLOCK_REALTIME);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

gpr_timespec sr_ms_to_deadline(int64_t ms)
{
    gpr_timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (int32_t)((ms % 1000) * 1000000);
    t.clock_type = GPR_CLOCK_MONOTONIC;
    return t;
}
