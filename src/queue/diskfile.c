/* The disk queue's files: the record format (encode, parse with checksums,
 * resynchronisation after damage), segment file names and listing, the scan
 * of a segment left by an earlier run, the directory and its lock, and the
 * adoption of segments left by a run with more workers. The log that uses
 * them is src/queue/disklog.c; the format is described in
 * include/skyrelay/disklog.h. */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <isa-l/crc.h>

#include "disk_internal.h"
#include "skyrelay/disklog.h"
#include "skyrelay/log.h"

/* ISA-L's CRC-32 (the gzip/zlib polynomial, same values as zlib's crc32) folds
 * with PCLMULQDQ where the CPU has it: 0.04 us for a 548-byte record where
 * zlib takes 0.39 us (docs/performance.md), a tenth of the disk path's cost. */
uint32_t sr_disk_crc(const void *p, size_t n)
{
    return sr_dfile_crc_more(0, p, n);
}

uint32_t sr_dfile_crc_more(uint32_t c, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n > 0) { /* ISA-L takes uint64_t lengths, but stay in step with the record limit */
        size_t k = n > MAX_PAYLOAD ? MAX_PAYLOAD : n;
        c = crc32_gzip_refl(c, (unsigned char *)b, k);
        b += k;
        n -= k;
    }
    return c;
}

static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

void sr_dfile_encode(uint8_t *h, uint32_t pcrc, uint32_t len, uint32_t plen, uint32_t items,
                          uint64_t key, int64_t arrival_ms, uint8_t flags)
{
    memset(h, 0, HDR);
    put32(h, MAGIC);
    put32(h + 8, pcrc);
    put32(h + 12, len);
    put32(h + 16, plen);
    put32(h + 20, items);
    put64(h + 24, key);
    put64(h + 32, (uint64_t)arrival_ms);
    h[40] = flags;
    put32(h + 4, sr_disk_crc(h + 8, HDR - 8));
}

/* Parses the record at b (avail bytes). Returns its size (header + payload)
 * when whole and valid; 0 when more bytes are needed (*need = how many in
 * all); -1 when the header is not a record header (scan on); -2 when the
 * header is good but the payload's checksum is not (*need = its size: skip). */
int64_t sr_dfile_parse(const uint8_t *b, size_t avail, struct sr_disk_rec *r, uint64_t *need)
{
    uint32_t len;
    if (avail < 4) {
        *need = HDR;
        return 0;
    }
    if (get32(b) != MAGIC) return -1;
    if (avail < HDR) {
        *need = HDR;
        return 0;
    }
    if (get32(b + 4) != sr_disk_crc(b + 8, HDR - 8)) return -1;
    len = get32(b + 12);
    r->len = len;
    r->prefix_len = get32(b + 16);
    r->items = get32(b + 20);
    r->key = get64(b + 24);
    r->arrival_ms = (int64_t)get64(b + 32);
    r->flags = b[40];
    if (len > MAX_PAYLOAD || r->prefix_len > len) return -1; /* cannot come from us */
    *need = HDR + (uint64_t)len;
    if (avail < *need) return 0;
    if (get32(b + 8) != sr_disk_crc(b + HDR, len)) return -2;
    return (int64_t)*need;
}

/* The offset of the next byte sequence that starts a valid header in b after
 * position 0, or avail when there is none. */
size_t sr_dfile_resync(const uint8_t *b, size_t avail)
{
    struct sr_disk_rec r;
    uint64_t need;
    for (size_t i = 1; i + 4 <= avail; i++)
        if (get32(b + i) == MAGIC && (avail - i < HDR || sr_dfile_parse(b + i, avail - i, &r, &need) != -1))
            return i;
    return avail;
}

char *sr_dfile_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

int sr_dfile_mkdir(const char *path)
{
    char tmp[PATH_LEN];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
    return 0;
}

void sr_dfile_path(const char *dir, uint64_t id, char *out, size_t n)
{
    snprintf(out, n, "%s/%016" PRIx64 ".seg", dir, id);
}

/* ---- the shared part ---- */

int sr_disk_shared_open(struct sr_disk_shared *sh, const char *dir, uint64_t max_bytes,
                        uint64_t min_free, uint64_t segment_bytes, int sync, const char **why)
{
    static __thread char msg[PATH_LEN + 128];
    char *lock;
    int r;

    memset(sh, 0, sizeof(*sh));
    sh->lock_fd = -1;
    sh->max_bytes = max_bytes;
    sh->min_free = min_free;
    sh->segment_bytes = segment_bytes ? segment_bytes : 16u << 20;
    /* space comes back a whole segment at a time: keep segments small next to the budget */
    if (sh->segment_bytes > max_bytes / 16)
        sh->segment_bytes = max_bytes / 16 > (64u << 10) ? max_bytes / 16 : (64u << 10);
    sh->sync = sync;
    if ((r = sr_dfile_mkdir(dir)) != 0) {
        snprintf(msg, sizeof msg, "queue.disk.dir %s: cannot create: %s", dir, strerror(-r));
        *why = msg;
        return r;
    }
    sh->dir = strdup(dir);
    lock = sr_dfile_join(dir, "LOCK");
    if (!sh->dir || !lock) {
        free(lock);
        free(sh->dir);
        sh->dir = NULL;
        *why = "out of memory";
        return -ENOMEM;
    }
    sh->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    free(lock);
    if (sh->lock_fd < 0) {
        r = -errno;
        snprintf(msg, sizeof msg, "queue.disk.dir %s: cannot open its LOCK file: %s", dir,
                 strerror(errno));
        goto fail;
    }
    if (flock(sh->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t k;
        r = -errno;
        k = pread(sh->lock_fd, pid, sizeof pid - 1, 0);
        pid[k > 0 ? k : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        if (r == -EWOULDBLOCK)
            snprintf(msg, sizeof msg,
                     "queue.disk.dir %s is in use by another skyrelay (pid %s); each process "
                     "needs its own directory",
                     dir, pid[0] ? pid : "unknown");
        else
            snprintf(msg, sizeof msg, "queue.disk.dir %s: cannot lock: %s", dir, strerror(-r));
        goto fail;
    }
    {
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(sh->lock_fd, 0) != 0 || pwrite(sh->lock_fd, pid, (size_t)n, 0) != n)
            SR_WARN("queue", "queue.disk.dir %s: cannot write the pid into LOCK: %s", dir,
                    strerror(errno));
    }
    return 0;
fail:
    *why = msg;
    if (sh->lock_fd >= 0) close(sh->lock_fd);
    sh->lock_fd = -1;
    free(sh->dir);
    sh->dir = NULL;
    return r;
}

void sr_disk_shared_close(struct sr_disk_shared *sh)
{
    if (!sh->dir) return; /* never opened (zeroed) */
    if (sh->lock_fd >= 0) close(sh->lock_fd); /* releases the flock */
    sh->lock_fd = -1;
    free(sh->dir);
    sh->dir = NULL;
}

/* ---- segment lists ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment ids in dir, sorted. Returns the count (>= 0) or a negative errno. */
int64_t sr_dfile_list(const char *dir, uint64_t **ids)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;

    *ids = NULL;
    if (!d) return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d)) != NULL) {
        char *end;
        uint64_t id;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".seg") != 0) continue;
        id = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16) continue;
        if (n == cap) {
            uint64_t *nv = realloc(v, sizeof(*v) * (cap = cap ? cap * 2 : 16));
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[n++] = id;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof(*v), cmp_u64);
    *ids = v;
    return (int64_t)n;
}

/* ---- the acknowledgement mark: <log dir>/ACK ----
 * 24 bytes: u32 "SRA1", u32 crc of bytes 8..23, u64 segment id, u64 index of the first
 * record of that segment not acknowledged. Every record before it, in that segment and in
 * every segment with a smaller id, was acknowledged. Segment ids are never reused, so a
 * mark written before a crash can only be behind (more replayed), never ahead. */
#define ACK_MAGIC 0x31415253u /* "SRA1" */

int sr_dfile_read_ack(int fd, uint64_t *id, uint64_t *idx)
{
    uint8_t b[24];
    uint32_t v;
    if (pread(fd, b, sizeof b, 0) != (ssize_t)sizeof b) return -1;
    memcpy(&v, b, 4);
    if (le32toh(v) != ACK_MAGIC) return -1;
    memcpy(&v, b + 4, 4);
    if (le32toh(v) != sr_disk_crc(b + 8, 16)) return -1;
    *id = get64(b + 8);
    *idx = get64(b + 16);
    return 0;
}

int sr_dfile_write_ack(int fd, uint64_t id, uint64_t idx)
{
    uint8_t b[24];
    put32(b, ACK_MAGIC);
    put64(b + 8, id);
    put64(b + 16, idx);
    put32(b + 4, sr_disk_crc(b + 8, 16));
    return pwrite(fd, b, sizeof b, 0) == (ssize_t)sizeof b ? 0 : -errno;
}

/* The mark of the log in dir: 0 and (id, idx), or -1 when it has none (or a damaged one). */
static int ack_of_dir(const char *dir, uint64_t *id, uint64_t *idx)
{
    char *path = sr_dfile_join(dir, "ACK");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1, r = -1;
    free(path);
    if (fd >= 0) {
        r = sr_dfile_read_ack(fd, id, idx);
        close(fd);
    }
    return r;
}

int sr_disk_adopt_orphans(struct sr_disk_shared *sh, const char *pipe, uint32_t n_workers)
{
    char *pdir = sr_dfile_join(sh->dir, pipe);
    DIR *d;
    struct dirent *e;
    int r = 0;

    if (!pdir) return -ENOMEM;
    if (!(d = opendir(pdir))) {
        r = errno == ENOENT ? 0 : -errno;
        free(pdir);
        return r;
    }
    while ((e = readdir(d)) != NULL && r == 0) {
        char *end, from[PATH_LEN], to[PATH_LEN], src[PATH_LEN + 32], dst[PATH_LEN + 32];
        unsigned long idx = strtoul(e->d_name, &end, 10);
        uint64_t *have = NULL, *mine = NULL, next = 1, ack_id = 0, ack_idx = 0;
        int64_t nh, nm;
        bool have_ack;

        if (end == e->d_name || *end || idx < n_workers) continue;
        snprintf(from, sizeof from, "%s/%s", pdir, e->d_name);
        snprintf(to, sizeof to, "%s/%lu", pdir, idx % n_workers);
        if ((r = sr_dfile_mkdir(to)) != 0) break;
        nh = sr_dfile_list(to, &have);
        nm = sr_dfile_list(from, &mine);
        if (nh < 0 || nm < 0) {
            r = nh < 0 ? (int)nh : (int)nm;
            free(have);
            free(mine);
            break;
        }
        if (nh > 0) next = have[nh - 1] + 1;
        /* never an id the destination's mark names: it would skip records of the moved ones */
        if (ack_of_dir(to, &ack_id, &ack_idx) == 0 && ack_id >= next) next = ack_id + 1;
        have_ack = ack_of_dir(from, &ack_id, &ack_idx) == 0;
        for (int64_t i = 0; i < nm && r == 0; i++) {
            sr_dfile_path(from, mine[i], src, sizeof src);
            if (have_ack && mine[i] < ack_id) { /* every record acknowledged */
                unlink(src);
                continue;
            }
            /* the one the mark points into is moved whole: replayed from its start */
            sr_dfile_path(to, next++, dst, sizeof dst);
            if (rename(src, dst) != 0) r = -errno;
        }
        if (r == 0) {
            char *ack = sr_dfile_join(from, "ACK");
            if (ack) unlink(ack);
            free(ack);
            SR_INFO("queue", "disk queue: %lld segment files of %s/%s (a run with more workers) "
                    "moved to worker %lu", (long long)nm, pipe, e->d_name, idx % n_workers);
            rmdir(from);
        }
        free(have);
        free(mine);
    }
    closedir(d);
    free(pdir);
    return r;
}

/* Counts the valid records of a segment left by an earlier run. Returns the
 * count; *first_ms gets the first one's arrival; *bad the records skipped. */
uint64_t sr_dfile_scan(const char *path, uint64_t size, uint64_t skip, int64_t *first_ms,
                       uint64_t *bad, uint64_t *start_off)
{
    uint64_t n = 0, need, pos = 0;
    struct sr_disk_rec r;
    uint8_t *m;
    int fd;

    *first_ms = 0;
    *bad = 0;
    *start_off = 0;
    if (size == 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return 0;
    m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return 0;
    while (pos < size) {
        int64_t k = sr_dfile_parse(m + pos, size - pos, &r, &need);
        if (k > 0) {
            if (n == skip) {
                *first_ms = r.arrival_ms;
                *start_off = pos;
            }
            n++;
            pos += (uint64_t)k;
        } else if (k == -2) {
            (*bad)++; /* a good header, a damaged payload: skip it whole */
            pos += need;
        } else if (k == 0) {
            (*bad)++; /* runs past the end: a torn tail */
            break;
        } else {
            (*bad)++; /* not a record here: on to the next valid header */
            pos += sr_dfile_resync(m + pos, size - pos);
        }
    }
    if (n <= skip) *start_off = pos;
    munmap(m, size);
    return n;
}
