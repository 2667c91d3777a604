/* The Kubernetes finder's settings: turns upstream.kubernetes.* and, where
 * they are empty, the in-cluster defaults (KUBERNETES_SERVICE_HOST/PORT,
 * /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace})
 * into the API server URL, the escaped selectors, the token and TLS settings
 * and the namespace list. Separate from kubernetes.c because it runs once, on
 * the main thread, before any thread exists: validation and the messages that
 * name the bad key, nothing of the list/watch loop.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_internal.h"
#include "skyrelay/config.h"
#include "skyrelay/log.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static bool empty(const char *s)
{
    return !s || !*s;
}

static bool readable(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (fp) fclose(fp);
    return fp != NULL;
}

/* A namespace is a DNS label: lower-case alphanumerics and '-', at most 63. */
static bool valid_namespace(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int resolve_server(struct sr_k8s_settings *s, const struct sr_k8s_config *cfg)
{
    if (!empty(cfg->api_server)) {
        if (strncmp(cfg->api_server, "https://", 8) != 0 &&
            strncmp(cfg->api_server, "http://", 7) != 0) {
            SR_ERROR("k8s", "upstream.kubernetes.api_server: must start with https:// or http://");
            return -1;
        }
        /* the service account token would travel in cleartext: only on explicit request
         * (kubectl proxy on loopback, a test server) */
        if (strncmp(cfg->api_server, "http://", 7) == 0 && !cfg->allow_insecure_http) {
            SR_ERROR("k8s", "upstream.kubernetes.api_server: %s is cleartext http://, which would "
                     "send the bearer token unencrypted; use https://, or set "
                     "upstream.kubernetes.allow_insecure_http: true (e.g. for kubectl proxy on "
                     "localhost)", cfg->api_server);
            return -1;
        }
        if (strncmp(cfg->api_server, "http://", 7) == 0)
            SR_WARN("k8s", "upstream.kubernetes.api_server %s is cleartext http:// "
                    "(allow_insecure_http): the bearer token is sent unencrypted",
                    cfg->api_server);
        s->base_url = strdup(cfg->api_server);
        if (!s->base_url) return -1;
        size_t n = strlen(s->base_url);
        while (n > 0 && s->base_url[n - 1] == '/') s->base_url[--n] = '\0';
        return 0;
    }
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (empty(host)) {
        SR_ERROR("k8s", "upstream.kubernetes.api_server is empty and KUBERNETES_SERVICE_HOST is "
                        "not set (not running in a pod?)");
        return -1;
    }
    bool v6 = strchr(host, ':') != NULL;
    s->base_url = sr_k8s_asprintf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                                  empty(port) ? "443" : port);
    return s->base_url ? 0 : -1;
}

static int resolve_credentials(struct sr_k8s_http_conf *c, const struct sr_k8s_config *cfg)
{
    if (!empty(cfg->bearer_token_file)) {
        if (!readable(cfg->bearer_token_file)) {
            SR_ERROR("k8s", "upstream.kubernetes.bearer_token_file: cannot read %s: %s",
                     cfg->bearer_token_file, strerror(errno));
            return -1;
        }
        c->token_file = strdup(cfg->bearer_token_file);
    } else {
        /* outside a pod (kubectl proxy) there is no token and none is needed */
        c->token_file = strdup(SA_DIR "/token");
        c->token_optional = true;
    }
    if (!c->token_file) return -1;

    if (!empty(cfg->ca_file)) {
        if (!readable(cfg->ca_file)) {
            SR_ERROR("k8s", "upstream.kubernetes.ca_file: cannot read %s: %s", cfg->ca_file,
                     strerror(errno));
            return -1;
        }
        c->ca_file = strdup(cfg->ca_file);
        if (!c->ca_file) return -1;
    } else if (readable(SA_DIR "/ca.crt")) {
        c->ca_file = strdup(SA_DIR "/ca.crt");
        if (!c->ca_file) return -1;
    }
    c->insecure = cfg->insecure_skip_verify;
    return 0;
}

static int resolve_selectors(struct sr_k8s_settings *s, const struct sr_k8s_config *cfg)
{
    if (empty(cfg->label_selector)) {
        SR_ERROR("k8s", "upstream.kubernetes.label_selector: required with finder kubernetes "
                        "(e.g. app=oap)");
        return -1;
    }
    char *label = sr_k8s_url_escape(cfg->label_selector);
    char *field = empty(cfg->field_selector) ? NULL : sr_k8s_url_escape(cfg->field_selector);
    if (label && (field || empty(cfg->field_selector)))
        s->selectors = field ? sr_k8s_asprintf("labelSelector=%s&fieldSelector=%s", label, field)
                             : sr_k8s_asprintf("labelSelector=%s", label);
    free(label);
    free(field);
    return s->selectors ? 0 : -1;
}

static int add_namespace(struct sr_k8s_strv *v, const char *ns)
{
    if (!valid_namespace(ns)) {
        SR_ERROR("k8s", "upstream.kubernetes.namespaces: '%s' is not a namespace name", ns);
        return -1;
    }
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], ns) == 0) return 0;
    return sr_k8s_strv_add(v, ns);
}

static int resolve_namespaces(struct sr_k8s_settings *s, const struct sr_k8s_config *cfg)
{
    char *list;
    if (!empty(cfg->namespaces)) {
        list = strdup(cfg->namespaces);
    } else {
        list = sr_k8s_read_trimmed(SA_DIR "/namespace");
        if (!list) {
            SR_ERROR("k8s", "upstream.kubernetes.namespaces is empty and %s/namespace cannot be "
                            "read: %s",
                     SA_DIR, strerror(errno));
            return -1;
        }
    }
    if (!list) return -1;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        tok += strspn(tok, " \t");
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t')) tok[--n] = '\0';
        if (n) rc = add_namespace(&s->namespaces, tok);
    }
    free(list);
    if (rc == 0 && s->namespaces.n == 0) {
        SR_ERROR("k8s", "upstream.kubernetes.namespaces: no namespace given");
        rc = -1;
    }
    return rc;
}

int sr_k8s_settings_resolve(struct sr_k8s_settings *s, const struct sr_k8s_config *cfg)
{
    memset(s, 0, sizeof(*s));
    if (resolve_selectors(s, cfg) < 0 || resolve_server(s, cfg) < 0 ||
        resolve_credentials(&s->http, cfg) < 0 || resolve_namespaces(s, cfg) < 0)
        return -1;
    return 0;
}

void sr_k8s_settings_deinit(struct sr_k8s_settings *s)
{
    free(s->base_url);
    free(s->selectors);
    free(s->http.token_file);
    free(s->http.ca_file);
    sr_k8s_strv_clear(&s->namespaces);
    memset(s, 0, sizeof(*s));
}
