/* TLS on the agents' gRPC port, with certificate rotation.
 *
 * gRPC core asks a certificate-config fetcher for the server's certificate on
 * every new handshake (ssl_security_connector: try_fetch_ssl_server_credentials,
 * under its own lock), and starts using a config it returns as NEW for the
 * handshakes after it; connections already up keep theirs. So rotation costs
 * nothing between checks: the fetcher looks at the files at most once per
 * server.tls.reload_interval (three stat() calls), reads them only when one
 * changed, and returns NEW only for a set that loads and matches. A broken set
 * (half-written file, key of another certificate) is logged and counted, and
 * the running certificate stays: the port never goes down over a rotation.
 *
 * The connection limit (src/server/conn_limit.c) closes an over-limit
 * connection inside accept4(), before gRPC starts the handshake, so TLS does
 * not change it. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/clock.h"
#include "skyrelay/log.h"
#include "skyrelay/tls.h"

/* One gRPC server per process: the fetcher's state. gRPC calls the fetcher under
 * its connector's lock; ours also covers the first call (made while adding the port). */
static struct {
    pthread_mutex_t mu;
    char *cert_file, *key_file, *ca_file; /* owned copies */
    struct sr_tls_watch watch;
    struct sr_tls_pem pem; /* the set gRPC uses, or is about to */
    bool pending;          /* pem not yet handed to gRPC */
    uint32_t interval_ms;  /* 0 = never re-read */
    int64_t next_check_ms;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The files changed: load them; on success they become the pending set. */
static void reload(void)
{
    struct sr_tls_pem next;
    char why[512];

    if (sr_tls_pem_load(&next, srv.cert_file, srv.key_file, srv.ca_file, why, sizeof why) != 0) {
        sr_tls_count_reload(SR_TLS_SIDE_SERVER, false);
        SR_WARN("tls", "server certificate files changed but do not load (%s); the current "
                "certificate stays in use", why);
        return;
    }
    sr_tls_pem_free(&srv.pem);
    srv.pem = next;
    srv.pending = true;
    sr_tls_count_reload(SR_TLS_SIDE_SERVER, true);
    SR_INFO("tls", "server certificate reloaded from %s (new handshakes use it)", srv.cert_file);
}

static grpc_ssl_certificate_config_reload_status fetch(void *user_data,
                                                       grpc_ssl_server_certificate_config **config)
{
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    (void)user_data;

    pthread_mutex_lock(&srv.mu);
    if (!srv.pending && srv.interval_ms) {
        int64_t now = sr_now_ms();
        if (now >= srv.next_check_ms) {
            srv.next_check_ms = now + srv.interval_ms;
            if (sr_tls_watch_changed(&srv.watch)) reload();
        }
    }
    if (srv.pending) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = srv.pem.key, .cert_chain = srv.pem.cert};
        /* gRPC copies the texts and owns (destroys) the config it is given. 1.51 asserts
         * that a fetched config has root certificates (ssl_security_connector.cc,
         * try_replace_server_handshaker_factory) even when client certificates are not
         * requested: then the server's own chain stands in, and is never used. */
        *config = grpc_ssl_server_certificate_config_create(srv.pem.ca ? srv.pem.ca : srv.pem.cert,
                                                            &pair, 1);
        if (*config) {
            srv.pending = false;
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        }
    }
    pthread_mutex_unlock(&srv.mu);
    return st;
}

static grpc_ssl_client_certificate_request_type request_type(const struct sr_server_tls_config *t)
{
    if (!t->client_ca_file) return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    switch (t->client_auth) {
    case SR_TLS_CLIENT_AUTH_NONE:
        return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    case SR_TLS_CLIENT_AUTH_OPTIONAL:
        return GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    default:
        return GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
}

grpc_server_credentials *sr_tls_server_credentials(const struct sr_config *cfg)
{
    const struct sr_server_tls_config *t = &cfg->server.tls;
    static const char *const auth_names[] = {"none", "optional", "require"};
    grpc_ssl_server_credentials_options *opts;
    char why[512];

    if (!t->cert_file) return grpc_insecure_server_credentials_create();
    if (sr_tls_pem_load(&srv.pem, t->cert_file, t->key_file, t->client_ca_file, why,
                        sizeof why) != 0) {
        SR_ERROR("tls", "server TLS: %s", why);
        return NULL;
    }
    srv.cert_file = strdup(t->cert_file);
    srv.key_file = strdup(t->key_file);
    srv.ca_file = t->client_ca_file ? strdup(t->client_ca_file) : NULL;
    if (!srv.cert_file || !srv.key_file || (t->client_ca_file && !srv.ca_file)) {
        SR_ERROR("tls", "server TLS: out of memory");
        return NULL;
    }
    sr_tls_watch_init(&srv.watch, srv.cert_file, srv.key_file, srv.ca_file);
    srv.pending = true; /* gRPC fetches the first config while the port is added */
    srv.interval_ms = t->reload_interval_ms;
    srv.next_check_ms = sr_now_ms() + t->reload_interval_ms;
    opts = grpc_ssl_server_credentials_create_options_using_config_fetcher(request_type(t), fetch,
                                                                           NULL);
    if (!opts) return NULL;
    SR_INFO("tls", "gRPC port: TLS with %s; client certificates: %s%s%s; files re-checked %s",
            t->cert_file, t->client_ca_file ? auth_names[t->client_auth % 3] : "not requested",
            t->client_ca_file ? ", CA " : "", t->client_ca_file ? t->client_ca_file : "",
            t->reload_interval_ms ? "on new handshakes, at most every reload_interval" : "never");
    return grpc_ssl_server_credentials_create_with_options(opts);
}
