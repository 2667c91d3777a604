/* TLS files: cheap change detection and all-or-nothing PEM loading.
 *
 * cert-manager and Kubernetes replace secret files under a running process:
 * a secret volume swaps a symlink (new inode), other tools rename a new file
 * over the old one (new inode) or rewrite it in place (new size or mtime).
 * stat() of each path tells all three apart from "unchanged" without reading
 * a byte. A reader can still catch a file half-written in place, or a new
 * certificate next to the old key: so a set of files is only handed on when
 * every file parses and the key belongs to the certificate (OpenSSL's own
 * check), and the caller keeps the old set otherwise. */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "skyrelay/tls.h"

static void sig_of(const char *path, struct sr_tls_file_sig *s)
{
    struct stat st;
    memset(s, 0, sizeof(*s));
    if (stat(path, &st) != 0) {
        s->err = errno ? errno : EIO;
        return;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->size = st.st_size;
    s->mtime = st.st_mtim;
}

static bool sig_equal(const struct sr_tls_file_sig *a, const struct sr_tls_file_sig *b)
{
    return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

void sr_tls_watch_init(struct sr_tls_watch *w, const char *a, const char *b, const char *c)
{
    memset(w, 0, sizeof(*w));
    w->path[0] = a;
    w->path[1] = b;
    w->path[2] = c;
    for (int i = 0; i < SR_TLS_MAX_FILES; i++)
        if (w->path[i]) sig_of(w->path[i], &w->sig[i]);
}

bool sr_tls_watch_changed(struct sr_tls_watch *w)
{
    bool changed = false;
    for (int i = 0; i < SR_TLS_MAX_FILES; i++) {
        struct sr_tls_file_sig now;
        if (!w->path[i]) continue;
        sig_of(w->path[i], &now);
        if (!sig_equal(&now, &w->sig[i])) {
            w->sig[i] = now;
            changed = true;
        }
    }
    return changed;
}

/* The whole file as a NUL-terminated string, or NULL with why set. */
static char *read_pem(const char *path, const char *what, char *why, size_t n)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    if (!f) {
        snprintf(why, n, "%s %s: cannot open: %s", what, path, strerror(errno));
        return NULL;
    }
    buf = malloc(SR_TLS_MAX_PEM + 1);
    if (buf) len = fread(buf, 1, SR_TLS_MAX_PEM + 1, f);
    if (!buf || ferror(f) || len > SR_TLS_MAX_PEM || len == 0) {
        snprintf(why, n, "%s %s: %s", what, path,
                 !buf ? "out of memory" : ferror(f) ? "read error" : len ? "larger than 1 MiB"
                                                                        : "empty");
        free(buf);
        buf = NULL;
    } else {
        buf[len] = '\0';
    }
    fclose(f);
    return buf;
}

/* The first certificate in pem, or NULL. */
static X509 *first_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static EVP_PKEY *private_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

int sr_tls_pem_load(struct sr_tls_pem *p, const char *cert_file, const char *key_file,
                    const char *ca_file, char *why, size_t n)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    int rc = -EINVAL;

    memset(p, 0, sizeof(*p));
    why[0] = '\0';
    if (cert_file && !(p->cert = read_pem(cert_file, "certificate", why, n))) goto out;
    if (key_file && !(p->key = read_pem(key_file, "key", why, n))) goto out;
    if (ca_file && !(p->ca = read_pem(ca_file, "CA file", why, n))) goto out;
    if (p->cert && !(x = first_cert(p->cert))) {
        snprintf(why, n, "certificate %s: no PEM certificate in it", cert_file);
        goto out;
    }
    if (p->key && !(k = private_key(p->key))) {
        snprintf(why, n, "key %s: no PEM private key in it", key_file);
        goto out;
    }
    if (x && k && X509_check_private_key(x, k) != 1) {
        snprintf(why, n, "key %s does not belong to certificate %s", key_file, cert_file);
        goto out;
    }
    if (p->ca) {
        X509 *c = first_cert(p->ca);
        if (!c) {
            snprintf(why, n, "CA file %s: no PEM certificate in it", ca_file);
            goto out;
        }
        X509_free(c);
    }
    rc = 0;
out:
    ERR_clear_error(); /* OpenSSL's error queue is per thread: leave gRPC's clean */
    X509_free(x);
    EVP_PKEY_free(k);
    if (rc) sr_tls_pem_free(p);
    return rc;
}

void sr_tls_pem_free(struct sr_tls_pem *p)
{
    if (p->key) OPENSSL_cleanse(p->key, strlen(p->key));
    free(p->cert);
    free(p->key);
    free(p->ca);
    memset(p, 0, sizeof(*p));
}

/* One key's file(s) through sr_tls_pem_load; a problem is reported under `key`. */
static int check_one(const struct sr_config *cfg, FILE *err, const char *key, const char *cert,
                     const char *pkey, const char *ca)
{
    struct sr_tls_pem p;
    char why[512];

    if (sr_tls_pem_load(&p, cert, pkey, ca, why, sizeof why) == 0) {
        sr_tls_pem_free(&p);
        return 0;
    }
    if (err) fprintf(err, "%s: %s: %s\n", cfg->path ? cfg->path : "config", key, why);
    return 1;
}

static const char *set_or_null(const char *s)
{
    return s && *s ? s : NULL;
}

/* A certificate and its key: each alone (so the message names the broken one's key), then
 * the pair (reported under the key file: the certificate is the one the key must match). */
static int check_pair(const struct sr_config *cfg, FILE *err, const char *side, const char *cert,
                      const char *key)
{
    char kc[64], kk[64];
    int bad = 0;

    snprintf(kc, sizeof kc, "%s.tls.cert_file", side);
    snprintf(kk, sizeof kk, "%s.tls.key_file", side);
    if (cert) bad += check_one(cfg, err, kc, cert, NULL, NULL);
    if (key) bad += check_one(cfg, err, kk, NULL, key, NULL);
    if (cert && key && !bad) bad += check_one(cfg, err, kk, cert, key, NULL);
    return bad;
}

int sr_tls_check_files(const struct sr_config *cfg, FILE *err)
{
    const struct sr_server_tls_config *s = &cfg->server.tls;
    const struct sr_upstream_tls_config *u = &cfg->upstream.tls;
    const char *ca;
    int bad = 0;

    bad += check_pair(cfg, err, "server", set_or_null(s->cert_file), set_or_null(s->key_file));
    if ((ca = set_or_null(s->client_ca_file)))
        bad += check_one(cfg, err, "server.tls.client_ca_file", NULL, NULL, ca);
    if (u->enabled) {
        bad += check_pair(cfg, err, "upstream", set_or_null(u->cert_file),
                          set_or_null(u->key_file));
        /* with insecure_skip_verify the CA file is not used (src/tls/upstream.c) */
        if (!u->insecure_skip_verify && (ca = set_or_null(u->ca_file)))
            bad += check_one(cfg, err, "upstream.tls.ca_file", NULL, NULL, ca);
    }
    return bad;
}

static _Atomic uint64_t reloads[SR_TLS_SIDES][2]; /* [side][ok] */

void sr_tls_count_reload(enum sr_tls_side side, bool ok)
{
    atomic_fetch_add_explicit(&reloads[side][ok ? 1 : 0], 1, memory_order_relaxed);
}

void sr_tls_reloads(enum sr_tls_side side, uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load_explicit(&reloads[side][1], memory_order_relaxed);
    *failed = atomic_load_explicit(&reloads[side][0], memory_order_relaxed);
}
