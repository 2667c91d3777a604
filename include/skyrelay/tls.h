/* TLS on both hops: the agents' gRPC port (server credentials whose certificate
 * is re-read through gRPC core's certificate-config fetcher) and the channels to
 * OAP (channel credentials rebuilt, and the nodes' channels replaced, when the
 * files change). The files are PEM; a set of files is only ever replaced by a set
 * that loads and matches (certificate and key), so a half-written file keeps the
 * old set in force (docs/security.md). */
#ifndef SKYRELAY_TLS_H
#define SKYRELAY_TLS_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "skyrelay/config.h"

struct sr_upstream;
struct uv_loop_s;

/* ---- files (src/tls/files.c) ---- */

#define SR_TLS_MAX_FILES 3
#define SR_TLS_MAX_PEM (1u << 20) /* a PEM file larger than 1 MiB is refused */

/* What identifies a file's content cheaply: a rename over it changes the inode, an
 * in-place write the size or the modification time. stat() follows symlinks, so a
 * Kubernetes secret volume (..data symlink swapped) shows as a new inode. */
struct sr_tls_file_sig {
    int err; /* 0, or the errno of stat() */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* Up to SR_TLS_MAX_FILES paths (NULL entries are skipped) and their last signature. */
struct sr_tls_watch {
    const char *path[SR_TLS_MAX_FILES]; /* borrowed: live as long as the watch */
    struct sr_tls_file_sig sig[SR_TLS_MAX_FILES];
};

/* Records the current signature of each path (borrows the paths). */
void sr_tls_watch_init(struct sr_tls_watch *w, const char *a, const char *b, const char *c);

/* Whether any file's signature differs from the recorded one; records the new ones, so a
 * change is reported once (a broken new file is not retried until it changes again).
 * Any thread, but one caller at a time. */
bool sr_tls_watch_changed(struct sr_tls_watch *w);

/* PEM texts, NUL-terminated, owned; NULL when not configured. */
struct sr_tls_pem {
    char *cert; /* certificate chain */
    char *key;  /* its private key */
    char *ca;   /* trusted CAs */
};

/* Reads and checks the given files (NULL = not used): the chain's first certificate and
 * the key parse and belong together, the CA file holds at least one certificate.
 * All or nothing: on error *p is zeroed and `why` (n bytes) says which file and what.
 * Returns 0 or -EINVAL / -ENOMEM. */
int sr_tls_pem_load(struct sr_tls_pem *p, const char *cert_file, const char *key_file,
                    const char *ca_file, char *why, size_t n);

/* Frees the texts (the key is wiped first) and zeroes *p. */
void sr_tls_pem_free(struct sr_tls_pem *p);

/* skyrelay --check-config: opens and checks every TLS file the configuration names, as a
 * start would (server.tls.* always; upstream.tls.* when enabled, its ca_file unless
 * insecure_skip_verify): each certificate and key parses, each key belongs to its
 * certificate, each CA file holds a certificate. Each problem is written to `err` (may be
 * NULL) as "<config file>: <key>: <what, naming the file>\n". Returns how many were found. */
int sr_tls_check_files(const struct sr_config *cfg, FILE *err);

/* ---- reload counters (skyrelay_tls_reloads_total) ---- */

enum sr_tls_side { SR_TLS_SIDE_SERVER = 0, SR_TLS_SIDE_UPSTREAM, SR_TLS_SIDES };

/* Counts a reload attempt of `side` (a changed set of files): ok = the new set is in use. */
void sr_tls_count_reload(enum sr_tls_side side, bool ok);

/* Reads the counters (any thread). */
void sr_tls_reloads(enum sr_tls_side side, uint64_t *ok, uint64_t *failed);

/* ---- the agents' port (src/tls/server.c) ---- */

/* The credentials of the gRPC port: with server.tls.cert_file, TLS through a certificate
 * fetcher that re-reads the files (at most every reload_interval, on a new handshake)
 * and client certificates per client_ca_file / client_auth; else insecure (h2c). The
 * files are loaded now: NULL (reason logged) when they do not load. Returns owned
 * credentials. Main thread, once (the fetcher's state is process-wide). */
grpc_server_credentials *sr_tls_server_credentials(const struct sr_config *cfg);

/* ---- upstream (src/tls/upstream.c) ---- */

/* Channel credentials for OAP from cfg->upstream.tls, the files read now: insecure when
 * not enabled; with insecure_skip_verify, TLS that accepts any certificate. NULL (reason
 * logged) when the files do not load. Returns owned credentials. Any thread. */
grpc_channel_credentials *sr_tls_upstream_credentials(const struct sr_upstream_tls_config *t);

/* With upstream TLS and a reload interval: a timer on `loop` that checks the files every
 * interval and, when they changed and load, gives every node a new channel
 * (sr_upstream_set_credentials); it also destroys the replaced channels once their calls
 * are over. Logs the insecure_skip_verify warning. Borrows up and cfg for the loop's
 * life. Returns 0 or a negative libuv error. Main thread. */
int sr_tls_upstream_watch_start(struct uv_loop_s *loop, struct sr_upstream *up,
                                const struct sr_config *cfg);

#endif
