/* ConfigurationDiscoveryService/fetchConfigurations: coalesced, cached, and
 * answered from the last good answer while OAP does not answer.
 *
 * Agents poll fetchConfigurations (the Java agent every 20 s) with their
 * service name and the UUID of the configuration they hold. OAP answers with
 * the service's dynamic configuration as one ConfigurationDiscoveryCommand
 * (whose `UUID` argument names that configuration), or with an empty Commands
 * when the agent's UUID is already current or the service has none.
 *
 * Both method paths are registered with the server and requested by worker 0
 * only, so every poll lands on one thread and the whole cache is
 * single-threaded (no lock). For each poll, keyed by (token, service, uuid):
 * - fresh: what OAP said about the service less than cache_ttl ago answers it
 *   without an upstream call;
 * - coalesced: a poll whose key already has an upstream call in flight waits
 *   for that call's answer (one call answers all of them);
 * - otherwise one upstream call (round robin over the healthy nodes, like the
 *   other synchronous calls); its answer, OAP's metadata and status go back to
 *   every poll that waited for it, and update the service's entry;
 * - stale: when that call fails for a transport reason (no node, UNAVAILABLE,
 *   DEADLINE_EXCEEDED, ...), an entry younger than stale_ttl answers instead.
 * What an entry can answer follows OAP's rule: the last full answer (UUID X)
 * answers every uuid but X, an empty Commands answers X. Answers skyrelay
 * cannot read as Commands are passed on and never cached. Worker 0 only, except
 * sr_cds_register. */
#ifndef SKYRELAY_CDS_H
#define SKYRELAY_CDS_H

#include <stddef.h>
#include <stdint.h>

#include "skyrelay/worker.h"

#define SR_CDS_PATH "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations"
#define SR_CDS_PATH_COMPAT "/ConfigurationDiscoveryService/fetchConfigurations"

/* The answer sources are enum sr_cds_source (SR_CDS_SOURCES in metrics.h). */
extern const char *const sr_cds_source_names[SR_CDS_SOURCE_COUNT];

/* Registers both method paths on rt->server (before grpc_server_start) so that
 * only worker 0's registered requests receive them. Returns 0 or -ENOMEM. */
int sr_cds_register(struct sr_runtime *rt);

/* Worker 0, in sr_worker_init: creates the cache. Returns 0 or -ENOMEM. */
int sr_cds_init(struct sr_worker *w);

/* Worker 0's thread, once the server started: arms the registered requests. */
void sr_cds_start(struct sr_worker *w);

/* Worker 0's loop, each turn: expires old entries, cancels what is left in
 * flight at shutdown. Returns the next time it wants to run (ms). */
int64_t sr_cds_tick(struct sr_worker *w);

/* Worker 0, after its loop ended: frees the cache. */
void sr_cds_deinit(struct sr_worker *w);

/* Pure helpers, exposed for the unit test. */

/* What an answer says. SR_CDS_ANS_CONFIG: one ConfigurationDiscoveryCommand,
 * its UUID argument in *uuid (NULL, 0 when it has none); SR_CDS_ANS_EMPTY: no
 * command; SR_CDS_ANS_OTHER: anything else (not cacheable). */
enum sr_cds_answer { SR_CDS_ANS_EMPTY = 0, SR_CDS_ANS_CONFIG, SR_CDS_ANS_OTHER };
enum sr_cds_answer sr_cds_read_answer(const uint8_t *b, size_t n, const uint8_t **uuid,
                                      size_t *uuid_len);

/* Reads a ConfigurationSyncRequest: service (1) and uuid (2), borrowed from b
 * (empty when absent). Returns 0, or SR_PB_EMALFORMED. */
int sr_cds_read_request(const uint8_t *b, size_t n, const uint8_t **svc, size_t *svc_len,
                        const uint8_t **uuid, size_t *uuid_len);

#endif
