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
 * a connection open; a once-a-second sweep catches a bare close(2)).
 *
 * Each admitted connection holds 2 fds; init raises the soft RLIMIT_NOFILE to
 * 2 * max + 1024 if the hard limit allows (and warns if not). Out of fds, the
 * pending connections are refused rather than reported to gRPC as EMFILE,
 * which would make gRPC 1.51 stop listening for good.
 *
 * The executable only gets the interposer if it links src/server/conn_limit.o,
 * i.e. if it calls one of these functions (main calls sr_conn_limit_init).
 * Without init (tools, unit tests of other modules) accept4 passes everything
 * through. */
#ifndef SKYRELAY_CONN_LIMIT_H
#define SKYRELAY_CONN_LIMIT_H

#include <stdint.h>

struct sr_conn_stats {
    uint64_t live;     /* connections open now */
    uint64_t accepted; /* admitted since start */
    uint64_t refused;  /* closed at once: over the limit (or out of fds) */
    uint64_t closed;   /* admitted, then closed */
};

/* Resets the counters and starts the monitor thread; max =
 * server.max_connections (0 = no limit, count only). Call once, before the
 * gRPC server starts listening (main thread; again only after shutdown).
 * Returns 0, or -1 if already started or out of resources (logged). */
int sr_conn_limit_init(uint32_t max);

/* The TCP port of the gRPC listener (after grpc_server_add_http2_port):
 * only accepts on listening sockets bound to this port (any address, v4 or
 * v6) are limited and counted. 0 = none. Any thread. */
void sr_conn_limit_set_port(int port);

/* A snapshot of the counters (each read atomically; live = accepted - closed
 * up to concurrent changes). Any thread, also before init and after shutdown. */
void sr_conn_limit_stats(struct sr_conn_stats *out);

/* Stops the monitor thread and closes the dups (counted closed); accept4
 * passes everything through afterwards. At exit, after grpc_server_destroy;
 * a no-op if not started. */
void sr_conn_limit_shutdown(void);

#endif
