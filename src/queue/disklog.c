/* The disk queue's append-only logs. See include/skyrelay/disklog.h.
 *
 * Why this shape: a worker owns its partitions, so it owns their logs too and
 * writes them sequentially without a lock; the only shared state is the byte
 * budget (one relaxed atomic per record). Records are gathered in a buffer
 * that is written out before an agent is told OK (sr_disklog_commit), when it
 * is full, and by the housekeeping tick: one write() per call or per 256 KiB,
 * not one per event. Acknowledgements come in any order (batches complete in
 * any order), so each segment counts its acknowledged records and is deleted
 * when the count reaches its records; the last segment, which is being
 * written, is truncated instead. Sequence numbers are contiguous over the
 * segments, so the segment of an event is found by its number alone. */
#include "skyrelay/disklog.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "skyrelay/clock.h"
#include "skyrelay/log.h"

#define MAGIC 0x31515253u             /* "SRQ1" read as little-endian u32 */
#define HDR SR_DISK_RECORD_HEADER
#define MAX_PAYLOAD (1u << 30)        /* larger than any accepted message */
#define WBUF_CAP (64u * 1024)  /* allocated on first use: most partitions of most pipes stay idle */
#define RBUF_CAP (128u * 1024)
#define TRUNCATE_MIN (256u * 1024)    /* the last segment is truncated from this size when all
                                       * its records are acknowledged (else by the tick) */
#define FREE_CHECK_MS 1000
#define FREE_CHECK_BYTES (8u << 20)
#define PATH_LEN 4096

uint32_t sr_disk_crc(const void *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) { /* zlib takes uInt lengths */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static uint32_t crc_more(uint32_t c, const void *p, size_t n)
{
    return n ? (uint32_t)crc32(c, p, (uInt)n) : c;
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

static void encode_header(uint8_t *h, uint32_t pcrc, uint32_t len, uint32_t plen, uint32_t items,
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
static int64_t parse(const uint8_t *b, size_t avail, struct sr_disk_rec *r, uint64_t *need)
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
static size_t resync(const uint8_t *b, size_t avail)
{
    struct sr_disk_rec r;
    uint64_t need;
    for (size_t i = 1; i + 4 <= avail; i++)
        if (get32(b + i) == MAGIC && (avail - i < HDR || parse(b + i, avail - i, &r, &need) != -1))
            return i;
    return avail;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int mkdir_p(const char *path)
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

static void seg_path(const char *dir, uint64_t id, char *out, size_t n)
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
    sh->sync = sync;
    if ((r = mkdir_p(dir)) != 0) {
        snprintf(msg, sizeof msg, "queue.disk.dir %s: cannot create: %s", dir, strerror(-r));
        *why = msg;
        return r;
    }
    sh->dir = strdup(dir);
    lock = path_join(dir, "LOCK");
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
static int64_t list_segments(const char *dir, uint64_t **ids)
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

int sr_disk_adopt_orphans(struct sr_disk_shared *sh, const char *pipe, uint32_t n_workers)
{
    char *pdir = path_join(sh->dir, pipe);
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
        uint64_t *have = NULL, *mine = NULL, next = 1;
        int64_t nh, nm;

        if (end == e->d_name || *end || idx < n_workers) continue;
        snprintf(from, sizeof from, "%s/%s", pdir, e->d_name);
        snprintf(to, sizeof to, "%s/%lu", pdir, idx % n_workers);
        if ((r = mkdir_p(to)) != 0) break;
        nh = list_segments(to, &have);
        nm = list_segments(from, &mine);
        if (nh < 0 || nm < 0) {
            r = nh < 0 ? (int)nh : (int)nm;
            free(have);
            free(mine);
            break;
        }
        if (nh > 0) next = have[nh - 1] + 1;
        for (int64_t i = 0; i < nm && r == 0; i++) {
            seg_path(from, mine[i], src, sizeof src);
            seg_path(to, next++, dst, sizeof dst);
            if (rename(src, dst) != 0) r = -errno;
        }
        if (r == 0) {
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

/* ---- one log ---- */

static struct sr_dseg *last_seg(struct sr_disklog *d)
{
    return &d->segs[d->n_segs - 1];
}

static int add_seg(struct sr_disklog *d, uint64_t id, uint64_t first_seq)
{
    struct sr_dseg *s;
    if (d->n_segs == d->cap_segs) {
        uint32_t cap = d->cap_segs ? d->cap_segs * 2 : 8;
        struct sr_dseg *v = realloc(d->segs, sizeof(*v) * cap);
        if (!v) return -ENOMEM;
        d->segs = v;
        d->cap_segs = cap;
    }
    s = &d->segs[d->n_segs++];
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->first_seq = first_seq;
    return 0;
}

static void publish(struct sr_disklog *d)
{
    uint64_t bytes = 0, events = 0;
    int64_t oldest = 0;
    for (uint32_t i = 0; i < d->n_segs; i++) {
        bytes += d->segs[i].size;
        events += d->segs[i].n - d->segs[i].acked;
        if (!oldest && d->segs[i].acked < d->segs[i].n) oldest = d->segs[i].first_ms;
    }
    atomic_store_explicit(&d->st_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&d->st_events, events, memory_order_relaxed);
    atomic_store_explicit(&d->st_oldest_ms, oldest, memory_order_relaxed);
}

/* Counts the valid records of a segment left by an earlier run. Returns the
 * count; *first_ms gets the first one's arrival; *bad the records skipped. */
static uint64_t scan_segment(const char *path, uint64_t size, int64_t *first_ms, uint64_t *bad)
{
    uint64_t n = 0, need, pos = 0;
    struct sr_disk_rec r;
    uint8_t *m;
    int fd;

    *first_ms = 0;
    *bad = 0;
    if (size == 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return 0;
    m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return 0;
    while (pos < size) {
        int64_t k = parse(m + pos, size - pos, &r, &need);
        if (k > 0) {
            if (n++ == 0) *first_ms = r.arrival_ms;
            pos += (uint64_t)k;
        } else if (k == -2) {
            (*bad)++; /* a good header, a damaged payload: skip it whole */
            pos += need;
        } else if (k == 0) {
            (*bad)++; /* runs past the end: a torn tail */
            break;
        } else {
            (*bad)++; /* not a record here: on to the next valid header */
            pos += resync(m + pos, size - pos);
        }
    }
    munmap(m, size);
    return n;
}

static int open_new_segment(struct sr_disklog *d)
{
    char path[PATH_LEN];
    uint64_t id = d->n_segs ? last_seg(d)->id + 1 : 1;
    int fd;

    seg_path(d->dir, id, path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    if (add_seg(d, id, d->next_seq) != 0) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    d->wfd = fd;
    d->flushed = 0;
    return 0;
}

int sr_disklog_open(struct sr_disklog *d, struct sr_disk_shared *sh, const char *pipe,
                    uint32_t worker, const char **why)
{
    static __thread char msg[PATH_LEN + 128];
    char sub[64];
    uint64_t *ids = NULL, recovered = 0, bad = 0, bytes = 0;
    int64_t n;
    int r;

    memset(d, 0, sizeof(*d));
    d->wfd = d->rfd = -1;
    d->sh = sh;
    d->wall_off = sr_wall_ms() - sr_now_ms();
    snprintf(sub, sizeof sub, "%s/%u", pipe, worker);
    d->dir = path_join(sh->dir, sub);
    if (!d->dir) {
        r = -ENOMEM;
        goto fail;
    }
    d->name = d->dir + strlen(sh->dir) + 1;
    if ((r = mkdir_p(d->dir)) != 0) goto fail;
    if ((n = list_segments(d->dir, &ids)) < 0) {
        r = (int)n;
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        char path[PATH_LEN];
        struct stat st;
        int64_t first_ms;
        uint64_t k, b;

        seg_path(d->dir, ids[i], path, sizeof path);
        if (stat(path, &st) != 0) continue;
        k = scan_segment(path, (uint64_t)st.st_size, &first_ms, &b);
        bad += b;
        if (k == 0) { /* nothing to replay in it */
            unlink(path);
            continue;
        }
        if ((r = add_seg(d, ids[i], d->next_seq)) != 0) goto fail;
        last_seg(d)->n = k;
        last_seg(d)->size = (uint64_t)st.st_size;
        last_seg(d)->first_ms = first_ms;
        atomic_fetch_add_explicit(&sh->used, (uint64_t)st.st_size, memory_order_relaxed);
        d->next_seq += k;
        recovered += k;
        bytes += (uint64_t)st.st_size;
    }
    free(ids);
    ids = NULL;
    d->recovered_end = d->next_seq;
    /* the backlog starts at the first record found; new records go to a new segment, never
     * after a tail that may be torn */
    if ((r = open_new_segment(d)) != 0) goto fail;
    d->read_seq = 0;
    d->read_id = d->segs[0].id;
    d->read_off = 0;
    atomic_store_explicit(&d->st_recovered, recovered, memory_order_relaxed);
    atomic_store_explicit(&d->st_corrupt, bad, memory_order_relaxed);
    publish(d);
    if (recovered || bad)
        SR_INFO("queue", "disk queue %s: recovered %llu events (%llu bytes) to replay, %llu "
                "damaged records skipped",
                d->name, (unsigned long long)recovered, (unsigned long long)bytes,
                (unsigned long long)bad);
    return 0;
fail:
    snprintf(msg, sizeof msg, "queue.disk.dir %s: %s", d->dir ? d->dir : sh->dir, strerror(-r));
    *why = msg;
    free(ids);
    sr_disklog_close(d);
    return r;
}

/* Writes out the buffer. Returns 0 or a negative errno (what was not written stays). */
static int flush(struct sr_disklog *d)
{
    uint32_t done = 0;
    while (done < d->wlen) {
        ssize_t k = pwrite(d->wfd, d->wbuf + done, d->wlen - done, (off_t)(d->flushed + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            memmove(d->wbuf, d->wbuf + done, d->wlen - done);
            d->wlen -= done;
            d->flushed += done;
            if (!d->write_failed)
                SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: write failed: %s", d->name,
                          strerror(e));
            d->write_failed = true;
            atomic_fetch_add_explicit(&d->st_write_errors, 1, memory_order_relaxed);
            return -e;
        }
        done += (uint32_t)k;
    }
    d->flushed += d->wlen;
    if (d->wlen) d->unsynced = true;
    d->wlen = 0;
    if (d->write_failed) SR_WARN("queue", "disk queue %s: writes work again", d->name);
    d->write_failed = false;
    return 0;
}

static int sync_file(struct sr_disklog *d)
{
    if (!d->unsynced) return 0;
    if (fdatasync(d->wfd) != 0) {
        int e = errno;
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: fdatasync failed: %s", d->name,
                  strerror(e));
        atomic_fetch_add_explicit(&d->st_write_errors, 1, memory_order_relaxed);
        return -e;
    }
    d->unsynced = false;
    atomic_fetch_add_explicit(&d->st_syncs, 1, memory_order_relaxed);
    return 0;
}

static void close_reader(struct sr_disklog *d)
{
    if (d->rfd >= 0) close(d->rfd);
    d->rfd = -1;
    d->rbuf_len = 0;
    d->cur_valid = false;
}

void sr_disklog_close(struct sr_disklog *d)
{
    if (d->wfd >= 0) {
        (void)flush(d);
        if (d->sh->sync != SR_DISK_SYNC_NONE) (void)sync_file(d);
        close(d->wfd);
        /* nothing to replay in it (never written, or every record acknowledged): no file */
        if (d->n_segs && last_seg(d)->acked == last_seg(d)->n) {
            char path[PATH_LEN];
            seg_path(d->dir, last_seg(d)->id, path, sizeof path);
            unlink(path);
        }
    }
    close_reader(d);
    if (d->sh && d->n_segs) {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < d->n_segs; i++) bytes += d->segs[i].size;
        atomic_fetch_sub_explicit(&d->sh->used, bytes, memory_order_relaxed);
    }
    free(d->segs);
    free(d->wbuf);
    free(d->rbuf);
    free(d->dir);
    memset(d, 0, sizeof(*d));
    d->wfd = d->rfd = -1;
}

/* Deletes segment i (all its records acknowledged; not the last one). */
static void delete_seg(struct sr_disklog *d, uint32_t i)
{
    char path[PATH_LEN];
    struct sr_dseg *s = &d->segs[i];
    seg_path(d->dir, s->id, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue: cannot delete %s: %s", path, strerror(errno));
    if (d->rfd >= 0 && d->rfd_id == s->id) close_reader(d);
    atomic_fetch_sub_explicit(&d->sh->used, s->size, memory_order_relaxed);
    memmove(s, s + 1, sizeof(*s) * (d->n_segs - i - 1));
    d->n_segs--;
}

/* Empties the last segment (all its records acknowledged). */
static void truncate_last(struct sr_disklog *d)
{
    struct sr_dseg *s = last_seg(d);
    if (ftruncate(d->wfd, 0) != 0) {
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: ftruncate failed: %s", d->name,
                  strerror(errno));
        return;
    }
    atomic_fetch_sub_explicit(&d->sh->used, s->size, memory_order_relaxed);
    d->wlen = 0; /* buffered records are acknowledged too: never written */
    d->flushed = 0;
    d->unsynced = false;
    s->size = 0;
    s->n = s->acked = 0;
    s->first_seq = d->next_seq;
    s->first_ms = 0;
    if (d->read_id == s->id) d->read_off = 0;
    if (d->rfd >= 0 && d->rfd_id == s->id) close_reader(d);
}

/* Rotates when the last segment would grow past segment_bytes. */
static int rotate(struct sr_disklog *d)
{
    int r;
    if ((r = flush(d)) != 0) return r;
    if (d->sh->sync != SR_DISK_SYNC_NONE && (r = sync_file(d)) != 0) return r;
    if (last_seg(d)->acked == last_seg(d)->n) { /* nothing to keep: start it over */
        truncate_last(d);
        return 0;
    }
    close(d->wfd);
    d->wfd = -1;
    if ((r = open_new_segment(d)) != 0) {
        /* reopen the old one, so that the log stays usable */
        char path[PATH_LEN];
        seg_path(d->dir, last_seg(d)->id, path, sizeof path);
        d->wfd = open(path, O_RDWR | O_CLOEXEC);
        d->flushed = last_seg(d)->size;
        return r;
    }
    return 0;
}

static bool has_space(struct sr_disklog *d, uint64_t need, int64_t now_ms)
{
    struct sr_disk_shared *sh = d->sh;
    if (atomic_load_explicit(&sh->used, memory_order_relaxed) + need > sh->max_bytes) return false;
    if (!sh->min_free) return true;
    if (now_ms - d->free_checked_ms >= FREE_CHECK_MS || d->written_since_check >= FREE_CHECK_BYTES) {
        struct statvfs v;
        /* what cannot be measured does not refuse */
        d->free_bytes = statvfs(d->dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : UINT64_MAX / 2;
        d->free_checked_ms = now_ms;
        d->written_since_check = 0;
    }
    return d->free_bytes >= sh->min_free + d->written_since_check + need;
}

int64_t sr_disklog_append(struct sr_disklog *d, grpc_slice prefix, grpc_slice body, uint64_t key,
                          uint32_t items, uint8_t flags, int64_t arrival_ms, bool spill,
                          int64_t now_ms)
{
    uint32_t plen = (uint32_t)GRPC_SLICE_LENGTH(prefix), blen = (uint32_t)GRPC_SLICE_LENGTH(body);
    uint64_t size = HDR + (uint64_t)plen + blen;
    uint32_t pcrc;
    uint8_t h[HDR];
    struct sr_dseg *s;

    if (d->write_failed && flush(d) != 0) return -EIO;
    if (!has_space(d, size, now_ms)) {
        atomic_fetch_add_explicit(&d->st_refused, 1, memory_order_relaxed);
        return -ENOSPC;
    }
    s = last_seg(d);
    if (s->size > 0 && s->size + size > d->sh->segment_bytes && rotate(d) != 0) return -EIO;
    s = last_seg(d);
    pcrc = crc_more(crc_more(sr_disk_crc(NULL, 0), GRPC_SLICE_START_PTR(prefix), plen),
                    GRPC_SLICE_START_PTR(body), blen);
    arrival_ms += d->wall_off;
    encode_header(h, pcrc, plen + blen, plen, items, key, arrival_ms, flags);
    if (!d->wbuf && (d->wbuf = malloc(WBUF_CAP))) d->wcap = WBUF_CAP; /* on first use */
    if (d->wlen + size > d->wcap) {
        if (flush(d) != 0) return -EIO;
    }
    if (size <= d->wcap) {
        memcpy(d->wbuf + d->wlen, h, HDR);
        memcpy(d->wbuf + d->wlen + HDR, GRPC_SLICE_START_PTR(prefix), plen);
        memcpy(d->wbuf + d->wlen + HDR + plen, GRPC_SLICE_START_PTR(body), blen);
        d->wlen += (uint32_t)size;
    } else { /* larger than the buffer (empty now): straight to the file */
        struct iovec iov[3] = {{h, HDR},
                               {GRPC_SLICE_START_PTR(prefix), plen},
                               {GRPC_SLICE_START_PTR(body), blen}};
        ssize_t k = pwritev(d->wfd, iov, 3, (off_t)d->flushed);
        if (k != (ssize_t)size) {
            int e = k < 0 ? errno : ENOSPC;
            SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: write failed: %s", d->name,
                      strerror(e));
            atomic_fetch_add_explicit(&d->st_write_errors, 1, memory_order_relaxed);
            if (k > 0 && ftruncate(d->wfd, (off_t)d->flushed) != 0) d->write_failed = true;
            return -EIO;
        }
        d->flushed += size;
        d->unsynced = true;
    }
    if (s->n == 0) s->first_ms = arrival_ms;
    s->n++;
    s->size += size;
    d->written_since_check += size;
    atomic_fetch_add_explicit(&d->sh->used, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->st_bytes, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->st_events, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&d->st_oldest_ms, memory_order_relaxed))
        atomic_store_explicit(&d->st_oldest_ms, arrival_ms, memory_order_relaxed);
    if (!spill) { /* in memory as well: the read cursor passes it */
        d->read_seq = d->next_seq + 1;
        d->read_id = s->id;
        d->read_off = s->size;
        d->cur_valid = false;
    }
    return (int64_t)d->next_seq++;
}

/* The segment holding seq (binary search: sequence numbers are contiguous). */
static int32_t find_seg(const struct sr_disklog *d, uint64_t seq)
{
    uint32_t lo = 0, hi = d->n_segs;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (d->segs[mid].first_seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    if (d->n_segs == 0 || seq < d->segs[lo].first_seq || seq >= d->segs[lo].first_seq + d->segs[lo].n)
        return -1;
    return (int32_t)lo;
}

/* Makes [off, off + need) of segment id readable in rbuf. Returns the bytes
 * available from off (>= need unless the file ends first), or a negative errno. */
static int64_t fill(struct sr_disklog *d, uint64_t id, uint64_t off, uint64_t need)
{
    ssize_t k;
    if (d->rfd >= 0 && d->rfd_id == id && off >= d->rbuf_off &&
        off + need <= d->rbuf_off + d->rbuf_len)
        return (int64_t)(d->rbuf_off + d->rbuf_len - off);
    if (d->rfd < 0 || d->rfd_id != id) {
        char path[PATH_LEN];
        close_reader(d);
        seg_path(d->dir, id, path, sizeof path);
        if ((d->rfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return -errno;
        d->rfd_id = id;
    }
    if (need > d->rbuf_cap) {
        uint8_t *b = realloc(d->rbuf, need);
        if (!b) return -ENOMEM;
        d->rbuf = b;
        d->rbuf_cap = (uint32_t)need;
    }
    do
        k = pread(d->rfd, d->rbuf, d->rbuf_cap, (off_t)off);
    while (k < 0 && errno == EINTR);
    if (k < 0) {
        d->rbuf_len = 0;
        return -errno;
    }
    d->rbuf_off = off;
    d->rbuf_len = (uint32_t)k;
    return k;
}

int sr_disklog_peek(struct sr_disklog *d, uint32_t *bytes)
{
    /* parsed again on every call: a record peeked earlier may sit in the write
     * buffer, which an append since may have written out and reused */
    d->cur_valid = false;
    while (sr_disklog_backlog(d)) {
        int32_t i = find_seg(d, d->read_seq);
        struct sr_dseg *s;
        const uint8_t *win;
        uint64_t need = HDR;
        int64_t avail, k;

        if (i < 0) { /* cannot happen: the backlog is in the segments */
            SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: record %llu not found; skipped",
                      d->name, (unsigned long long)d->read_seq);
            d->read_seq++;
            continue;
        }
        s = &d->segs[i];
        if (s->id != d->read_id) {
            d->read_id = s->id;
            d->read_off = 0;
        }
        for (;;) {
            bool from_wbuf = i == (int32_t)d->n_segs - 1 && d->read_off >= d->flushed;
            if (from_wbuf) {
                /* not written yet: read it from the buffer */
                win = d->wbuf + (d->read_off - d->flushed);
                avail = (int64_t)(d->wlen - (d->read_off - d->flushed));
            } else {
                if (!d->rbuf && !(d->rbuf = malloc(d->rbuf_cap = RBUF_CAP))) return -ENOMEM;
                avail = fill(d, s->id, d->read_off, need);
                if (avail < 0) {
                    SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: read failed: %s", d->name,
                              strerror((int)-avail));
                    return (int)avail;
                }
                win = d->rbuf + (d->read_off - d->rbuf_off);
            }
            k = parse(win, (size_t)avail, &d->cur, &need);
            if (k > 0) {
                d->cur_data = win + HDR;
                d->cur_size = (uint32_t)k;
                d->cur_valid = true;
                *bytes = d->cur.len;
                return 1;
            }
            if (k == -2) {
                d->read_off += need; /* damaged payload: counted by the scan at start */
                need = HDR;
                continue;
            }
            if (k == -1) {
                d->read_off += resync(win, (size_t)avail);
                need = HDR;
                continue;
            }
            /* k == 0: the record goes on past what is in the window */
            if (from_wbuf) return -EIO; /* cannot happen: the buffer holds whole records */
            avail = fill(d, s->id, d->read_off, need);
            if (avail < 0) return (int)avail;
            if ((uint64_t)avail < need) {
                /* the file ends before the records it was counted with: give them up */
                uint64_t end = s->first_seq + s->n, q = d->read_seq;
                SR_LOG_RL(SR_LOG_ERROR, "queue",
                          "disk queue %s: segment %016llx ends early; %llu records lost", d->name,
                          (unsigned long long)s->id, (unsigned long long)(end - q));
                atomic_fetch_add_explicit(&d->st_corrupt, end - q, memory_order_relaxed);
                d->read_seq = end;
                for (; q < end; q++) sr_disklog_ack(d, q);
                break;
            }
        }
    }
    return 0;
}

static grpc_slice copy_slice(const uint8_t *p, uint32_t n)
{
    return n ? grpc_slice_from_copied_buffer((const char *)p, n) : grpc_empty_slice();
}

void sr_disklog_take(struct sr_disklog *d, grpc_slice *prefix, grpc_slice *body, uint64_t *key,
                     uint32_t *items, uint8_t *flags, int64_t *arrival_ms, uint64_t *seq)
{
    *prefix = copy_slice(d->cur_data, d->cur.prefix_len);
    *body = copy_slice(d->cur_data + d->cur.prefix_len, d->cur.len - d->cur.prefix_len);
    *key = d->cur.key;
    *items = d->cur.items;
    *flags = d->cur.flags;
    *arrival_ms = d->cur.arrival_ms - d->wall_off;
    if (*arrival_ms > sr_now_ms()) *arrival_ms = sr_now_ms(); /* clocks moved since */
    *seq = d->read_seq;
    if (d->read_seq < d->recovered_end)
        atomic_fetch_add_explicit(&d->st_replayed, 1, memory_order_relaxed);
    d->read_off += d->cur_size;
    d->read_seq++;
    d->cur_valid = false;
    if (!sr_disklog_backlog(d)) { /* caught up: the read buffer waits for the next backlog */
        close_reader(d);
        free(d->rbuf);
        d->rbuf = NULL;
    }
}

void sr_disklog_ack(struct sr_disklog *d, uint64_t seq)
{
    int32_t i = find_seg(d, seq);
    struct sr_dseg *s;
    if (i < 0) return;
    s = &d->segs[i];
    s->acked++;
    atomic_fetch_sub_explicit(&d->st_events, 1, memory_order_relaxed);
    if (s->acked < s->n) return;
    if (i < (int32_t)d->n_segs - 1)
        delete_seg(d, (uint32_t)i);
    else if (s->size >= TRUNCATE_MIN)
        truncate_last(d);
    publish(d);
}

int sr_disklog_commit(struct sr_disklog *d)
{
    int r = flush(d);
    if (r == 0 && d->sh->sync == SR_DISK_SYNC_ALWAYS) r = sync_file(d);
    return r;
}

void sr_disklog_tick(struct sr_disklog *d, int64_t now_ms)
{
    struct sr_dseg *s = last_seg(d);
    if (s->n && s->acked == s->n) {
        truncate_last(d);
        publish(d);
        return;
    }
    if (flush(d) == 0 && d->sh->sync == SR_DISK_SYNC_INTERVAL) (void)sync_file(d);
}
