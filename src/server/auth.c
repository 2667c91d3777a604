/* server.authentication: the agents' `authentication` metadata.
 *
 * A token comparison must not tell an attacker, through its time, how much of
 * a guess was right, nor how long the token is: both sides are hashed with
 * SHA-256 first and the digests compared with CRYPTO_memcmp. Hashing costs
 * time linear in the presented value's length, which the attacker already
 * knows; the configured token's length only changes the hash of a value the
 * attacker never sees. */
#include "skyrelay/auth.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

bool sr_auth_equal(const void *given, size_t given_len, const void *token, size_t token_len)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256(given_len ? given : (const void *)"", given_len, a);
    SHA256(token_len ? token : (const void *)"", token_len, b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

const grpc_slice *sr_auth_token(const grpc_metadata_array *md)
{
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == 14 && memcmp(GRPC_SLICE_START_PTR(k), "authentication", 14) == 0)
            return &md->metadata[i].value;
    }
    return NULL;
}

bool sr_auth_ok(const grpc_metadata_array *md, const char *token)
{
    const grpc_slice *v;
    if (!token || !token[0]) return true;
    v = sr_auth_token(md);
    if (v) return sr_auth_equal(GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v), token, strlen(token));
    /* no entry: the answer is the same as for a wrong token, and so is the work */
    (void)sr_auth_equal("", 0, token, strlen(token));
    return false;
}

bool sr_auth_exempt(const char *method, size_t len)
{
    static const char health[] = "/grpc.health.v1.Health/Check";
    return len == sizeof(health) - 1 && memcmp(method, health, len) == 0;
}
