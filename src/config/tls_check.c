/* The TLS keys that only make sense together. A half-configured TLS listener or
 * client identity must stop the start, not fall back to cleartext: a forgotten
 * key_file would otherwise silently expose the port as h2c. */
#include <stddef.h>

#include "internal.h"

int sr_config_tls_check(const struct sr_config *cfg,
                        void (*bad)(void *arg, const char *key, const char *reason), void *arg)
{
    const struct sr_server_tls_config *s = &cfg->server.tls;
    const struct sr_upstream_tls_config *u = &cfg->upstream.tls;
    int n = 0;

    if (s->cert_file && !s->key_file) {
        bad(arg, "server.tls.cert_file", "set without server.tls.key_file (both or neither)");
        n++;
    }
    if (s->key_file && !s->cert_file) {
        bad(arg, "server.tls.key_file", "set without server.tls.cert_file (both or neither)");
        n++;
    }
    if (s->client_ca_file && !(s->cert_file && s->key_file)) {
        bad(arg, "server.tls.client_ca_file",
            "client certificates need TLS: set server.tls.cert_file and server.tls.key_file");
        n++;
    }
    if (u->cert_file && !u->key_file) {
        bad(arg, "upstream.tls.cert_file", "set without upstream.tls.key_file (both or neither)");
        n++;
    }
    if (u->key_file && !u->cert_file) {
        bad(arg, "upstream.tls.key_file", "set without upstream.tls.cert_file (both or neither)");
        n++;
    }
    return n;
}
