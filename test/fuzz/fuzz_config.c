/* libFuzzer target: the config loader on arbitrary documents. Every load
 * either succeeds or reports at least one "name:line:col: key: reason" error;
 * nothing leaks either way. A config that loads also survives --print-config:
 * the printed text loads again and prints the same (the one documented
 * exception: a value holding "${", which has no escape). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/config.h"

static char *print(const struct sr_config *cfg, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f || sr_config_print(cfg, f) != 0) abort();
    fclose(f);
    return buf;
}

static void print_round_trip(const struct sr_config *cfg)
{
    struct sr_config again;
    size_t len, len2;
    char *text = print(cfg, &len), *text2;

    if (strstr(text, "# holds \"${\"")) {
        free(text);
        return;
    }
    if (sr_config_load_string(&again, "fuzz.yaml", text, len, stderr) != 0) {
        fprintf(stderr, "the printed config does not load:\n%s", text);
        abort();
    }
    text2 = print(&again, &len2);
    if (len != len2 || memcmp(text, text2, len) != 0) {
        fprintf(stderr, "printed twice, differently:\n%s\n---\n%s", text, text2);
        abort();
    }
    sr_config_deinit(&again);
    free(text2);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sr_config cfg;
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    int rc = sr_config_load_string(&cfg, "fuzz.yaml", (const char *)d, n, err);
    fclose(err);
    if (rc != 0 && (len == 0 || strncmp(buf, "fuzz.yaml:", 10) != 0)) abort();
    if (rc == 0 && cfg.upstream.n_nodes == 0 && cfg.upstream.finder == SR_FINDER_STATIC) abort();
    if (rc == 0) print_round_trip(&cfg);
    sr_config_deinit(&cfg);
    free(buf);
    return 0;
}
