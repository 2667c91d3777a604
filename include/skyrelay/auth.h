/* Token checks (server.authentication). */
#ifndef SKYRELAY_AUTH_H
#define SKYRELAY_AUTH_H

#include <grpc/grpc.h>
#include <stdbool.h>

/* True when `token` is NULL or empty (no check), or when `md` carries
 * `authentication` with exactly that value (SkyWalking agents send the bare
 * token; the comparison is constant-time in the token's length). The first
 * `authentication` entry decides. Any thread. */
bool sr_auth_ok(const grpc_metadata_array *md, const char *token);

#endif
