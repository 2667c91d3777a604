/* k8s_watch — runs the Kubernetes finder (src/discovery/kubernetes.c) alone, for
 * test/integration/test_k8s_finder_api.py.
 *
 *   k8s_watch --config skyrelay.yaml
 *
 * Loads the config with sr_config_load, starts sr_k8s_finder_start on
 * upstream.kubernetes and prints, one JSON line each on stdout (flushed):
 *   {"nodes":["10.0.0.1:11800",...]}     every list the finder publishes
 *   {"stats":{...}}                      on SIGUSR1
 *   {"stats":{...},"stop_ms":N}          after SIGTERM/SIGINT, once the finder stopped
 * Logs go to stderr. Exit 0, or 2 on bad arguments / config / start.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skyrelay/config.h"
#include "skyrelay/discovery.h"
#include "skyrelay/log.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Node addresses are "ip:port" or "[ip6]:port": nothing to escape in JSON. */
static void on_publish(void *arg, struct sr_node_config *nodes, size_t n)
{
    (void)arg;
    pthread_mutex_lock(&out_mu);
    fputs("{\"nodes\":[", stdout);
    for (size_t i = 0; i < n; i++) printf("%s\"%s\"", i ? "," : "", nodes[i].address);
    fputs("]}\n", stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    sr_discovery_free_nodes(nodes, n);
}

static void print_stats(long stop_ms)
{
    struct sr_discovery_stats st;
    sr_k8s_finder_stats(&st);
    pthread_mutex_lock(&out_mu);
    printf("{\"stats\":{\"updates\":%llu,\"errors\":%llu,\"relists\":%llu,\"nodes\":%llu}",
           (unsigned long long)st.updates, (unsigned long long)st.errors,
           (unsigned long long)st.relists, (unsigned long long)st.nodes);
    if (stop_ms >= 0) printf(",\"stop_ms\":%ld", stop_ms);
    fputs("}\n", stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int main(int argc, char **argv)
{
    struct sr_config cfg;
    sigset_t set;
    int sig = 0;

    if (argc != 3 || strcmp(argv[1], "--config") != 0) {
        fprintf(stderr, "usage: k8s_watch --config FILE\n");
        return 2;
    }
    /* before any thread exists, so that every thread inherits the mask */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (sr_config_load(&cfg, argv[2], stderr) != 0) {
        sr_config_deinit(&cfg);
        return 2;
    }
    sr_log_level = cfg.log.level;
    if (sr_k8s_finder_start(&cfg.upstream.kubernetes, on_publish, NULL) != 0) {
        sr_config_deinit(&cfg);
        return 2;
    }
    for (;;) {
        if (sigwait(&set, &sig) != 0) continue;
        if (sig != SIGUSR1) break;
        print_stats(-1);
    }
    long t0 = now_ms();
    sr_k8s_finder_stop();
    print_stats(now_ms() - t0);
    sr_config_deinit(&cfg);
    return 0;
}
