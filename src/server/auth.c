/* server.authentication: the agents' `authentication` metadata. */
#include "skyrelay/auth.h"

#include <string.h>

bool sr_auth_ok(const grpc_metadata_array *md, const char *token)
{
    size_t n;
    if (!token || !token[0]) return true;
    n = strlen(token);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key, v = md->metadata[i].value;
        unsigned char diff = 0;
        if (GRPC_SLICE_LENGTH(k) != 14 || memcmp(GRPC_SLICE_START_PTR(k), "authentication", 14) != 0)
            continue;
        if (GRPC_SLICE_LENGTH(v) != n) return false;
        /* no early exit: the time does not tell how much of the token matched */
        for (size_t j = 0; j < n; j++) diff |= GRPC_SLICE_START_PTR(v)[j] ^ (unsigned char)token[j];
        return diff == 0;
    }
    return false;
}
