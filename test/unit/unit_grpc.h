/* cmocka group fixtures for the unit tests that use gRPC slices. */
#ifndef SKYRELAY_TEST_UNIT_GRPC_H
#define SKYRELAY_TEST_UNIT_GRPC_H

#include <grpc/grpc.h>

static inline int sr_test_grpc_setup(void **state)
{
    (void)state;
    grpc_init();
    return 0;
}

static inline int sr_test_grpc_teardown(void **state)
{
    (void)state;
    grpc_shutdown();
    return 0;
}

#endif
