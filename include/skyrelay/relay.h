/* Transparent relay of one downstream call to one upstream node: messages in
 * both directions, one at a time each way (so flow control holds end to end),
 * initial and trailing metadata and the final status passed back. Used for the
 * synchronous pass-through methods (deadline capped by upstream.sync_timeout)
 * and for every method skyrelay does not batch: bidirectional streams and
 * methods it does not know, so it never answers UNIMPLEMENTED for something
 * OAP implements. Worker thread only. */
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

/* True if a metadata key must not be forwarded (HTTP/2 pseudo headers, gRPC's
 * own, hop-by-hop): ":*", "grpc-*", "te", "content-type", "user-agent",
 * "host", "connection". */
bool sr_metadata_reserved(grpc_slice key);

#endif
