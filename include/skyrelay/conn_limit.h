/* Downstream connection limit and count (server.max_connections).
 *
 * gRPC C core 1.51 has no connection limit and no connection count. skyrelay
 * interposes accept4(2): the executable defines accept4, so gRPC's listener
 * (and libuv's) call it instead of libc's. For the gRPC listen port only, a
 * connection over the limit is closed at once, before any TLS or HTTP/2
 * handshake (so this keeps working when the listener gets TLS), and counted as
 * refused; an admitted one is counted live until it closes, which a small
 * monitor thread sees through an epoll watch (EPOLLRDHUP|EPOLLHUP) on a dup of
 * the fd (gRPC shuts a connection down with shutdown(2), so the dup never keeps
 * a connection open). */
#ifndef SKYRELAY_CONN_LIMIT_H
#define SKYRELAY_CONN_LIMIT_H

#include <stdint.h>

struct sr_conn_stats {
    uint64_t live;     /* connections open now */
    uint64_t accepted; /* admitted since start */
    uint64_t refused;  /* closed at once: over the limit */
    uint64_t closed;   /* admitted, then closed */
};

/* Starts the monitor thread; max = server.max_connections. Call once, before
 * the gRPC server starts listening. Returns 0 or -1. */
int sr_conn_limit_init(uint32_t max);

/* The TCP port of the gRPC listener (after grpc_server_add_http2_port):
 * only accepts on this port are limited and counted. */
void sr_conn_limit_set_port(int port);

/* A snapshot of the counters. Any thread. */
void sr_conn_limit_stats(struct sr_conn_stats *out);

/* Stops the monitor thread (at exit). */
void sr_conn_limit_shutdown(void);

#endif
