/* libFuzzer target: the disk queue's recovery on arbitrary files. The input
 * is what an earlier run (or a damaged disk) left: byte 0 says whether an ACK
 * mark follows (bit 0), then 24 bytes of it, then the bytes of segment file
 * 0000000000000001.seg. Properties checked beyond "no crash, no UB, no leak":
 * - every record handed back has the length peek announced, and as many are
 *   handed back as the scan counted (st_recovered), in one pass;
 * - once every record read back is acknowledged, a reopen finds nothing to
 *   replay (the acknowledged files and mark are consistent). */
#include <dirent.h>
#include <fcntl.h>
#include <grpc/grpc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skyrelay/disklog.h"
#include "skyrelay/log.h"

static char root[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    grpc_init();
    sr_log_level = -1; /* quiet: the damaged records are the point */
    snprintf(root, sizeof root, "/tmp/sr-fuzz-disklog-%d", (int)getpid());
    return 0;
}

static void put(const char *path, const uint8_t *d, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if (n && write(fd, d, n) != (ssize_t)n) abort();
    close(fd);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[256];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static uint64_t drain(struct sr_disklog *d, uint64_t *seqs, uint64_t cap)
{
    uint64_t n = 0;
    uint32_t bytes;
    while (sr_disklog_peek(d, &bytes) == 1) {
        grpc_slice prefix, body;
        uint64_t key, seq;
        uint32_t items;
        uint8_t flags;
        int64_t arrival;
        sr_disklog_take(d, &prefix, &body, &key, &items, &flags, &arrival, &seq);
        if (GRPC_SLICE_LENGTH(prefix) + GRPC_SLICE_LENGTH(body) != bytes) abort();
        grpc_slice_unref(prefix);
        grpc_slice_unref(body);
        if (n < cap) seqs[n] = seq;
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint64_t seqs[1 << 16];
    struct sr_disk_shared sh;
    struct sr_disklog d;
    const char *why = NULL;
    char dir[128], path[160];
    uint64_t n;

    if (size < 1) return 0;
    snprintf(dir, sizeof dir, "%s/segment/0", root);
    if (sr_disk_shared_open(&sh, root, 1ULL << 40, 0, 1 << 20, SR_DISK_SYNC_NONE, &why) != 0) abort();
    snprintf(path, sizeof path, "%s/segment", root);
    mkdir(path, 0700);
    mkdir(dir, 0700);
    if ((data[0] & 1) && size >= 25) {
        snprintf(path, sizeof path, "%s/ACK", dir);
        put(path, data + 1, 24);
        data += 25;
        size -= 25;
    } else {
        data += 1;
        size -= 1;
    }
    snprintf(path, sizeof path, "%s/0000000000000001.seg", dir);
    put(path, data, size);

    if (sr_disklog_open(&d, &sh, "segment", 0, &why) != 0) abort();
    n = drain(&d, seqs, sizeof seqs / sizeof seqs[0]);
    if (n != atomic_load(&d.st_recovered)) abort();
    if (n <= sizeof seqs / sizeof seqs[0])
        for (uint64_t i = 0; i < n; i++) sr_disklog_ack(&d, seqs[n - 1 - i]); /* out of order */
    sr_disklog_close(&d);
    if (n <= sizeof seqs / sizeof seqs[0]) {
        if (sr_disklog_open(&d, &sh, "segment", 0, &why) != 0) abort();
        if (atomic_load(&d.st_recovered) != 0) abort();
        sr_disklog_close(&d);
    }
    sr_disk_shared_close(&sh);
    rm_dir(dir);
    snprintf(path, sizeof path, "%s/segment", root);
    rmdir(path);
    return 0;
}
