/* Token checks (server.authentication, telemetry.admin.token). docs/security.md
 * says which methods and routes need a token. */
#ifndef SKYRELAY_AUTH_H
#define SKYRELAY_AUTH_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>

/* True when `token` is NULL or empty (no check), or when `md` carries
 * `authentication` with exactly that value (SkyWalking agents send the bare
 * token). The first `authentication` entry decides. The comparison is
 * sr_auth_equal: its time tells neither how much matched nor the token's
 * length. Any thread. */
bool sr_auth_ok(const grpc_metadata_array *md, const char *token);

/* The value of the first `authentication` entry of md (the one sr_auth_ok
 * checks), borrowed; NULL when there is none. Any thread. */
const grpc_slice *sr_auth_token(const grpc_metadata_array *md);

/* True when given[0..given_len) equals token[0..token_len). Compares SHA-256
 * digests of both with CRYPTO_memcmp, so the time does not depend on where
 * they differ or on the token's length. Any thread. */
bool sr_auth_equal(const void *given, size_t given_len, const void *token, size_t token_len);

/* True for the methods served without a token: only
 * /grpc.health.v1.Health/Check (kubelet's gRPC probe cannot send metadata; the
 * answer is SERVING or NOT_SERVING, nothing else). Any thread. */
bool sr_auth_exempt(const char *method, size_t len);

#endif
