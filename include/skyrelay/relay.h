/* Transparent relay of one downstream call to one upstream node: messages in
 * both directions, one at a time each way (so flow control holds end to end),
 * initial and trailing metadata (hop-by-hop headers removed) and the final
 * status passed back, with upstream's grpc-status-details-bin. Used for the
 * synchronous pass-through methods and for every method skyrelay does not
 * batch: bidirectional streams and methods it does not know, so it never
 * answers UNIMPLEMENTED for something OAP implements.
 *
 * Deadline: the caller's, capped by upstream.sync_timeout for a synchronous
 * call, and set to upstream.sync_timeout for a relayed call without one.
 * Node health: only a transport-class status the node caused (unavailable,
 * our own deadline, a cancel or abort that did not come from the caller)
 * ejects the node; OAP's answers about the request go back to the caller and
 * leave the node up. The messages a call holds are charged to the worker's
 * memory budget. Worker thread only. */
#ifndef SKYRELAY_RELAY_H
#define SKYRELAY_RELAY_H

#include <grpc/grpc.h>
#include <stdbool.h>

#include "skyrelay/method.h"
#include "skyrelay/worker.h"

/* Takes over a downstream call that request_call just delivered: `call`, and
 * the contents of *details and *md (both are left empty and re-initialized).
 * `mode` is SR_MODE_SYNC or SR_MODE_RELAY. Answers the call itself on any
 * error (UNAVAILABLE when no node is up). */
void sr_relay_start(struct sr_worker *w, grpc_call *call, grpc_call_details *details,
                    grpc_metadata_array *md, enum sr_call_mode mode);

/* True if a metadata entry must not be forwarded in either direction: HTTP/2
 * pseudo headers (":*"), gRPC's own ("grpc-*", "content-type", "user-agent"),
 * "host", and the hop-by-hop headers "connection", "keep-alive",
 * "proxy-connection", "transfer-encoding", "upgrade", and "te" unless its value
 * is "trailers". Borrows key and value. Any thread. */
bool sr_metadata_reserved(grpc_slice key, grpc_slice value);

/* The caller's request metadata to send upstream: its forwardable entries
 * (slices borrowed from `in`), with `auth` (upstream.authentication, may be
 * NULL or "") replacing the caller's `authentication`. *n_out gets the count.
 * Returns a heap array (free()), or NULL when out of memory. Any thread. */
grpc_metadata *sr_relay_request_md(const grpc_metadata_array *in, const char *auth, size_t *n_out);

/* Upstream's initial (status false) or trailing (status true: with rich error
 * details) metadata to send to the caller, slices borrowed from `in`. Returns a
 * heap array (free()), or NULL when out of memory. Any thread. */
grpc_metadata *sr_relay_answer_md(const grpc_metadata_array *in, bool status, size_t *n_out);

/* A caller's deadline (as request_call gave it) in sr_now_ms() milliseconds;
 * INT64_MAX when it has none. Any thread. */
int64_t sr_caller_deadline_ms(gpr_timespec d);

#endif
