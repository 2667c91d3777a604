/* Self meters (see include/skyrelay/self_meter.h). Built with protobuf-c: these
 * are messages skyrelay writes itself, not traffic. */
#include "skyrelay/self_meter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meter.pb-c.h"
#include "skyrelay/conn_limit.h"
#include "skyrelay/context.h"

#define MAX_METERS 512

double sr_process_cpu_seconds(void)
{
    char buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n;
    if (!f) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command may contain spaces */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct builder {
    Skywalking__V3__MeterData md[MAX_METERS];
    Skywalking__V3__MeterData *pmd[MAX_METERS];
    Skywalking__V3__MeterSingleValue sv[MAX_METERS];
    Skywalking__V3__Label lab[MAX_METERS][2];
    Skywalking__V3__Label *plab[MAX_METERS][2];
    char val[MAX_METERS][2][24];
    size_t n;
};

static void add(struct builder *b, const char *name, const char *k1, const char *v1, const char *k2,
                const char *v2, double value)
{
    size_t i = b->n, nl = 0;
    if (i >= MAX_METERS) return;
    skywalking__v3__meter_data__init(&b->md[i]);
    skywalking__v3__meter_single_value__init(&b->sv[i]);
    if (k1) {
        skywalking__v3__label__init(&b->lab[i][nl]);
        b->lab[i][nl].name = (char *)k1;
        snprintf(b->val[i][nl], sizeof(b->val[i][nl]), "%s", v1);
        b->lab[i][nl].value = b->val[i][nl];
        b->plab[i][nl] = &b->lab[i][nl];
        nl++;
    }
    if (k2) {
        skywalking__v3__label__init(&b->lab[i][nl]);
        b->lab[i][nl].name = (char *)k2;
        snprintf(b->val[i][nl], sizeof(b->val[i][nl]), "%s", v2);
        b->lab[i][nl].value = b->val[i][nl];
        b->plab[i][nl] = &b->lab[i][nl];
        nl++;
    }
    b->sv[i].name = (char *)name;
    b->sv[i].n_labels = nl;
    b->sv[i].labels = b->plab[i];
    b->sv[i].value = value;
    b->md[i].metric_case = SKYWALKING__V3__METER_DATA__METRIC_SINGLE_VALUE;
    b->md[i].singlevalue = &b->sv[i];
    b->pmd[i] = &b->md[i];
    b->n++;
}

int sr_self_meter_build(struct sr_runtime *rt, int64_t epoch_ms, struct sr_cpu_sample *cpu_state,
                        grpc_slice *out, uint64_t *key)
{
    const struct sr_config *cfg = rt->cfg;
    struct builder *b = calloc(1, sizeof(*b));
    Skywalking__V3__MeterDataCollection col = SKYWALKING__V3__METER_DATA_COLLECTION__INIT;
    struct sr_conn_stats cs;
    char host[256] = "", part[16];
    const char *service = cfg->telemetry.service ? cfg->telemetry.service : "skyrelay";
    const char *instance = cfg->telemetry.instance;
    double cpu = sr_process_cpu_seconds(), cpu_pct = 0;
    size_t len;

    if (!b) return -1;
    if (!instance) {
        if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) snprintf(host, sizeof(host), "skyrelay");
        instance = host;
    }
    for (int p = 0; p < SR_PIPE_COUNT; p++) {
        struct sr_pipe_totals t;
        uint64_t bad, dropped = 0;
        const char *name = sr_pipe_name((enum sr_pipe_id)p);
        if (!cfg->pipes[p].enabled) continue;
        for (uint32_t i = 0; i < rt->n_workers; i++) {
            const struct sr_partition *part_ = &rt->workers[i].pipes[p].part;
            snprintf(part, sizeof(part), "%u", i);
            add(b, "sw_stl_pipeline_queue_partition_size", "pipeline", name, "partition", part,
                (double)SR_CNT_GET(part_->depth_events));
        }
        sr_pipe_snapshot(rt, (enum sr_pipe_id)p, &t);
        bad = t.rejected_events + t.invalid_calls;
        for (int r = 0; r < SR_DROP_COUNT; r++) dropped += t.dropped[r];
        add(b, "sw_stl_gatherer_receive_count", "pipe", name, "status", "success",
            (double)t.recv_events);
        add(b, "sw_stl_gatherer_receive_count", "pipe", name, "status", "failure", (double)bad);
        add(b, "sw_stl_queue_output_count", "pipe", name, "status", "success",
            (double)t.sent_events);
        add(b, "sw_stl_queue_output_count", "pipe", name, "status", "failure", (double)dropped);
        add(b, "sw_stl_sender_output_count", "pipe", name, "status", "success",
            (double)t.sent_events);
        add(b, "sw_stl_sender_output_count", "pipe", name, "status", "failure", (double)dropped);
        add(b, "sw_stl_pipeline_queue_total_capacity", "pipeline", name, NULL, NULL,
            (double)t.cap_events);
    }
    if (cpu >= 0 && cpu_state->wall_ms > 0 && epoch_ms > cpu_state->wall_ms)
        cpu_pct = (cpu - cpu_state->cpu_seconds) * 100000.0 / (double)(epoch_ms - cpu_state->wall_ms);
    if (cpu >= 0) {
        cpu_state->cpu_seconds = cpu;
        cpu_state->wall_ms = epoch_ms;
    }
    add(b, "sw_stl_grpc_server_cpu_gauge", NULL, NULL, NULL, NULL, cpu_pct);
    sr_conn_limit_stats(&cs);
    add(b, "sw_stl_grpc_server_connection_count", NULL, NULL, NULL, NULL, (double)cs.live);

    /* OAP reads the identity and the timestamp from the first MeterData */
    b->md[0].service = (char *)service;
    b->md[0].serviceinstance = (char *)instance;
    b->md[0].timestamp = epoch_ms;
    col.n_meterdata = b->n;
    col.meterdata = b->pmd;
    len = skywalking__v3__meter_data_collection__get_packed_size(&col);
    *out = grpc_slice_malloc(len);
    skywalking__v3__meter_data_collection__pack(&col, GRPC_SLICE_START_PTR(*out));
    *key = sr_ctx_key2((const uint8_t *)service, strlen(service), (const uint8_t *)instance,
                       strlen(instance));
    free(b);
    return 0;
}
