/* libFuzzer target: the config loader on arbitrary documents. Every load
 * either succeeds or reports at least one "name:line:col: key: reason" error;
 * nothing leaks either way. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skyrelay/config.h"

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
    sr_config_deinit(&cfg);
    free(buf);
    return 0;
}
