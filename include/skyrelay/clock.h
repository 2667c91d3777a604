/* The data path's clock: gRPC's GPR_CLOCK_MONOTONIC, so that completion-queue
 * deadlines and our own timestamps agree. Any thread. */
#ifndef SKYRELAY_CLOCK_H
#define SKYRELAY_CLOCK_H

#include <grpc/support/time.h>
#include <stdint.h>

/* Monotonic milliseconds. */
int64_t sr_now_ms(void);
/* Same clock, microseconds. */
int64_t sr_now_us(void);
/* Wall-clock milliseconds since the epoch (records that outlive the process). */
int64_t sr_wall_ms(void);
/* A monotonic deadline for grpc_completion_queue_next / call deadlines. */
gpr_timespec sr_ms_to_deadline(int64_t ms);

#endif
