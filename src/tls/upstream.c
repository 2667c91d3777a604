/* TLS to OAP, with rotation of the CA, client certificate and key.
 *
 * gRPC's SSL channel credentials hold the PEM texts they were made with, so a
 * new CA or client certificate needs new credentials and channels made with
 * them (sr_upstream_set_credentials swaps every node's channel; calls in
 * flight finish on the old one, queued batches simply go out on the new one).
 * A libuv timer on the main thread, where the node set is also changed
 * (discovery), checks the files every upstream.tls.reload_interval.
 *
 * insecure_skip_verify: the verify_peer_options callback of 1.51's SSL
 * credentials runs only after OpenSSL has verified the chain (an unknown CA
 * fails the handshake first: "certificate verify failed", the callback is
 * never called), so it cannot skip anything. The TLS credentials API
 * (grpc_tls_credentials_options, experimental in 1.51) can: no server
 * certificate verification and a no-op verifier. */
#include <errno.h>
#include <stdlib.h>
#include <uv.h>

#include "skyrelay/clock.h"
#include "skyrelay/log.h"
#include "skyrelay/tls.h"
#include "skyrelay/upstream.h"

static grpc_channel_credentials *skip_verify_credentials(const struct sr_tls_pem *pem)
{
    grpc_tls_credentials_options *opts = grpc_tls_credentials_options_create();
    grpc_tls_certificate_verifier *none;

    if (!opts) return NULL;
    if (pem->cert) {
        grpc_tls_identity_pairs *pairs = grpc_tls_identity_pairs_create();
        grpc_tls_certificate_provider *p;
        grpc_tls_identity_pairs_add_pair(pairs, pem->key, pem->cert);
        p = grpc_tls_certificate_provider_static_data_create(pem->ca, pairs); /* takes pairs */
        grpc_tls_credentials_options_set_certificate_provider(opts, p);
        grpc_tls_credentials_options_watch_identity_key_cert_pairs(opts);
        grpc_tls_certificate_provider_release(p);
    }
    grpc_tls_credentials_options_set_verify_server_cert(opts, 0);
    none = grpc_tls_certificate_verifier_no_op_create();
    grpc_tls_credentials_options_set_certificate_verifier(opts, none);
    grpc_tls_certificate_verifier_release(none);
    grpc_tls_credentials_options_set_check_call_host(opts, 0);
    return grpc_tls_credentials_create(opts); /* takes opts */
}

grpc_channel_credentials *sr_tls_upstream_credentials(const struct sr_upstream_tls_config *t)
{
    struct sr_tls_pem pem;
    grpc_channel_credentials *creds;
    char why[512];

    if (!t->enabled) return grpc_insecure_credentials_create();
    if (sr_tls_pem_load(&pem, t->cert_file, t->key_file, t->insecure_skip_verify ? NULL : t->ca_file,
                        why, sizeof why) != 0) {
        SR_ERROR("tls", "upstream TLS: %s", why);
        return NULL;
    }
    if (t->insecure_skip_verify) {
        creds = skip_verify_credentials(&pem);
    } else {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = pem.key, .cert_chain = pem.cert};
        /* a NULL CA means gRPC's default roots (the system's) */
        creds = grpc_ssl_credentials_create_ex(pem.ca, pem.cert ? &pair : NULL, NULL, NULL);
    }
    sr_tls_pem_free(&pem);
    if (!creds) SR_ERROR("tls", "upstream TLS: gRPC refused the credentials");
    return creds;
}

static struct {
    uv_timer_t timer;
    struct sr_upstream *up;
    const struct sr_upstream_tls_config *tls;
    struct sr_tls_watch watch;
} wt;

static void on_tick(uv_timer_t *t)
{
    int64_t now = sr_now_ms();
    (void)t;
    sr_upstream_collect_old(wt.up, now);
    if (!sr_tls_watch_changed(&wt.watch)) return;
    grpc_channel_credentials *creds = sr_tls_upstream_credentials(wt.tls);
    if (!creds) {
        sr_tls_count_reload(SR_TLS_SIDE_UPSTREAM, false);
        SR_WARN("tls", "upstream TLS files changed but do not load (above); the nodes keep "
                "their current channels");
        return;
    }
    size_t n = sr_upstream_set_credentials(wt.up, creds, now);
    sr_tls_count_reload(SR_TLS_SIDE_UPSTREAM, true);
    SR_INFO("tls", "upstream TLS files reloaded: %zu node channel(s) replaced (calls in flight "
            "finish on the old ones)", n);
}

int sr_tls_upstream_watch_start(struct uv_loop_s *loop, struct sr_upstream *up,
                                const struct sr_config *cfg)
{
    const struct sr_upstream_tls_config *t = &cfg->upstream.tls;
    int rc;

    if (!t->enabled) return 0;
    if (t->insecure_skip_verify)
        SR_WARN("tls", "upstream.tls.insecure_skip_verify: OAP's certificate is NOT verified; "
                "anyone on the path can read and change the telemetry");
    SR_INFO("tls", "upstream: TLS%s%s%s%s, files re-checked every %u ms (0 = never)",
            t->ca_file && !t->insecure_skip_verify ? ", CA " : "",
            t->ca_file && !t->insecure_skip_verify ? t->ca_file : "",
            t->cert_file ? ", client certificate " : "", t->cert_file ? t->cert_file : "",
            t->reload_interval_ms);
    if (!t->reload_interval_ms) return 0;
    wt.up = up;
    wt.tls = t;
    sr_tls_watch_init(&wt.watch, t->ca_file, t->cert_file, t->key_file);
    if ((rc = uv_timer_init(loop, &wt.timer)) != 0) return rc;
    return uv_timer_start(&wt.timer, on_tick, t->reload_interval_ms, t->reload_interval_ms);
}
