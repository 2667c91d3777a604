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
 * written, is replaced by a new file instead. A bitmap past the
 * acknowledgement mark (low_seq) lets the mark move over out-of-order
 * acknowledgements; the tick writes it to ACK, so a restart after a crash
 * replays from the first unacknowledged record, not from the segment's start. Sequence numbers are contiguous over the
 * segments, so the segment of an event is found by its number alone. */
#include "skyrelay/disklog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "disk_internal.h"
#include "skyrelay/clock.h"
#include "skyrelay/log.h"

#define WBUF_CAP (64u * 1024)  /* allocated on first use: most partitions of most pipes stay idle */
#define TRUNCATE_MIN (256u * 1024)    /* the last segment is replaced by an empty one from this
                                       * size when all its records are acknowledged (else by the
                                       * tick) */
#define FREE_CHECK_MS 1000
#define FREE_CHECK_BYTES (8u << 20)

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

static int open_new_segment(struct sr_disklog *d)
{
    char path[PATH_LEN];
    uint64_t id = d->next_id;
    int fd;

    sr_dfile_path(d->dir, id, path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return -errno;
    if (add_seg(d, id, d->next_seq) != 0) {
        close(fd);
        unlink(path);
        return -ENOMEM;
    }
    d->next_id++;
    d->wfd = fd;
    d->flushed = 0;
    return 0;
}

int sr_disklog_open(struct sr_disklog *d, struct sr_disk_shared *sh, const char *pipe,
                    uint32_t worker, const char **why)
{
    static __thread char msg[PATH_LEN + 128];
    char sub[64];
    uint64_t *ids = NULL, recovered = 0, bad = 0, bytes = 0, ack_id = 0, ack_idx = 0, start_off = 0;
    bool have_ack;
    int64_t n;
    int r;

    memset(d, 0, sizeof(*d));
    d->wfd = d->rfd = d->ackfd = -1;
    d->sh = sh;
    d->wall_off = sr_wall_ms() - sr_now_ms();
    snprintf(sub, sizeof sub, "%s/%u", pipe, worker);
    d->dir = sr_dfile_join(sh->dir, sub);
    if (!d->dir) {
        r = -ENOMEM;
        goto fail;
    }
    d->name = d->dir + strlen(sh->dir) + 1;
    if ((r = sr_dfile_mkdir(d->dir)) != 0) goto fail;
    {
        char *ack = sr_dfile_join(d->dir, "ACK");
        d->ackfd = ack ? open(ack, O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
        free(ack);
        if (d->ackfd < 0) {
            r = ack ? -errno : -ENOMEM;
            goto fail;
        }
        have_ack = sr_dfile_read_ack(d->ackfd, &ack_id, &ack_idx) == 0;
    }
    if ((n = sr_dfile_list(d->dir, &ids)) < 0) {
        r = (int)n;
        goto fail;
    }
    d->next_id = 1;
    if (n > 0) d->next_id = ids[n - 1] + 1;
    if (have_ack && ack_id >= d->next_id) d->next_id = ack_id + 1;
    for (int64_t i = 0; i < n; i++) {
        char path[PATH_LEN];
        struct stat st;
        int64_t first_ms;
        uint64_t k, b, skip = have_ack && ids[i] == ack_id ? ack_idx : 0, off;

        sr_dfile_path(d->dir, ids[i], path, sizeof path);
        if (stat(path, &st) != 0) continue;
        if (have_ack && ids[i] < ack_id) { /* acknowledged before the stop */
            unlink(path);
            continue;
        }
        k = sr_dfile_scan(path, (uint64_t)st.st_size, skip, &first_ms, &b, &off);
        bad += b;
        if (k <= skip) { /* nothing to replay in it */
            unlink(path);
            continue;
        }
        if (d->n_segs == 0) start_off = off; /* the backlog starts here */
        if ((r = add_seg(d, ids[i], d->next_seq)) != 0) goto fail;
        last_seg(d)->n = k - skip;
        last_seg(d)->first_idx = skip;
        last_seg(d)->size = (uint64_t)st.st_size;
        last_seg(d)->first_ms = first_ms;
        atomic_fetch_add_explicit(&sh->used, (uint64_t)st.st_size, memory_order_relaxed);
        d->next_seq += k - skip;
        recovered += k - skip;
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
    d->read_off = start_off;
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

void sr_dlog_close_reader(struct sr_disklog *d)
{
    if (d->rfd >= 0) close(d->rfd);
    d->rfd = -1;
    d->rbuf_len = 0;
    d->cur_valid = false;
}

static void save_ack(struct sr_disklog *d);

void sr_disklog_close(struct sr_disklog *d)
{
    if (d->ackfd >= 0) {
        save_ack(d);
        close(d->ackfd);
    }
    free(d->ackbits);
    if (d->wfd >= 0) {
        (void)flush(d);
        if (d->sh->sync != SR_DISK_SYNC_NONE) (void)sync_file(d);
        close(d->wfd);
        /* nothing to replay in it (never written, or every record acknowledged): no file */
        if (d->n_segs && last_seg(d)->acked == last_seg(d)->n) {
            char path[PATH_LEN];
            sr_dfile_path(d->dir, last_seg(d)->id, path, sizeof path);
            unlink(path);
        }
    }
    sr_dlog_close_reader(d);
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
    d->wfd = d->rfd = d->ackfd = -1;
}

/* Deletes segment i (all its records acknowledged; not the last one). */
static void delete_seg(struct sr_disklog *d, uint32_t i)
{
    char path[PATH_LEN];
    struct sr_dseg *s = &d->segs[i];
    sr_dfile_path(d->dir, s->id, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue: cannot delete %s: %s", path, strerror(errno));
    if (d->rfd >= 0 && d->rfd_id == s->id) sr_dlog_close_reader(d);
    atomic_fetch_sub_explicit(&d->sh->used, s->size, memory_order_relaxed);
    memmove(s, s + 1, sizeof(*s) * (d->n_segs - i - 1));
    d->n_segs--;
}

/* Replaces the last segment, all of whose records are acknowledged, by a new
 * empty file (a new id: the acknowledgement mark never names a file that was
 * rewritten). On failure the old one stays in use. */
static void replace_last(struct sr_disklog *d)
{
    struct sr_dseg old = *last_seg(d);
    int old_fd = d->wfd, r;
    char path[PATH_LEN];

    if ((r = open_new_segment(d)) != 0) {
        d->wfd = old_fd;
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue %s: cannot start a new segment: %s", d->name,
                  strerror(-r));
        return;
    }
    close(old_fd);
    sr_dfile_path(d->dir, old.id, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        SR_LOG_RL(SR_LOG_ERROR, "queue", "disk queue: cannot delete %s: %s", path, strerror(errno));
    atomic_fetch_sub_explicit(&d->sh->used, old.size, memory_order_relaxed);
    if (d->rfd >= 0 && d->rfd_id == old.id) sr_dlog_close_reader(d);
    d->segs[d->n_segs - 2] = d->segs[d->n_segs - 1];
    d->n_segs--;
    d->wlen = 0; /* buffered records are acknowledged too: never written */
    d->unsynced = false;
}

/* Rotates when the last segment would grow past segment_bytes. */
static int rotate(struct sr_disklog *d)
{
    int r;
    if ((r = flush(d)) != 0) return r;
    if (d->sh->sync != SR_DISK_SYNC_NONE && (r = sync_file(d)) != 0) return r;
    if (last_seg(d)->acked == last_seg(d)->n) { /* nothing to keep: start it over */
        replace_last(d);
        return 0;
    }
    close(d->wfd);
    d->wfd = -1;
    if ((r = open_new_segment(d)) != 0) {
        /* reopen the old one, so that the log stays usable */
        char path[PATH_LEN];
        sr_dfile_path(d->dir, last_seg(d)->id, path, sizeof path);
        d->wfd = open(path, O_RDWR | O_CLOEXEC);
        d->flushed = last_seg(d)->size;
        return r;
    }
    return 0;
}

/* Reserves need bytes of the budget (all workers share it: the check and the
 * reservation are one atomic step, or two workers could both take the last
 * room) and checks the free-space floor. False: nothing reserved. */
static bool free_space(struct sr_disklog *d, uint64_t need, int64_t now_ms);

static bool reserve(struct sr_disklog *d, uint64_t need, int64_t now_ms)
{
    struct sr_disk_shared *sh = d->sh;
    uint64_t used = atomic_fetch_add_explicit(&sh->used, need, memory_order_relaxed);
    if (used + need > sh->max_bytes || !free_space(d, need, now_ms)) {
        atomic_fetch_sub_explicit(&sh->used, need, memory_order_relaxed);
        return false;
    }
    return true;
}

static bool free_space(struct sr_disklog *d, uint64_t need, int64_t now_ms)
{
    struct sr_disk_shared *sh = d->sh;
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
    if (!reserve(d, size, now_ms)) {
        atomic_fetch_add_explicit(&d->st_refused, 1, memory_order_relaxed);
        return -ENOSPC;
    }
    s = last_seg(d);
    if (s->size > 0 && s->size + size > d->sh->segment_bytes && rotate(d) != 0) {
        atomic_fetch_sub_explicit(&d->sh->used, size, memory_order_relaxed);
        return -EIO;
    }
    s = last_seg(d);
    pcrc = sr_dfile_crc_more(sr_disk_crc(NULL, 0), GRPC_SLICE_START_PTR(prefix), plen);
    pcrc = sr_dfile_crc_more(pcrc, GRPC_SLICE_START_PTR(body), blen);
    arrival_ms += d->wall_off;
    sr_dfile_encode(h, pcrc, plen + blen, plen, items, key, arrival_ms, flags);
    if (!d->wbuf && (d->wbuf = malloc(WBUF_CAP))) d->wcap = WBUF_CAP; /* on first use */
    if (d->wlen + size > d->wcap && flush(d) != 0) {
        atomic_fetch_sub_explicit(&d->sh->used, size, memory_order_relaxed);
        return -EIO;
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
            atomic_fetch_sub_explicit(&d->sh->used, size, memory_order_relaxed);
            return -EIO;
        }
        d->flushed += size;
        d->unsynced = true;
    }
    if (s->n == 0) s->first_ms = arrival_ms;
    s->n++;
    s->size += size;
    d->written_since_check += size; /* sh->used: reserved above */
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
int32_t sr_dlog_find_seg(const struct sr_disklog *d, uint64_t seq)
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

/* Moves the mark past every acknowledged record at its front. */
static void mark_acked(struct sr_disklog *d, uint64_t seq)
{
    const uint64_t W = SR_DISK_ACK_WINDOW;
    if (seq < d->low_seq || seq - d->low_seq >= W) return; /* out of the window: holds it back */
    if (!d->ackbits && !(d->ackbits = calloc(W / 64, sizeof(uint64_t)))) return;
    d->ackbits[(seq % W) / 64] |= 1ull << (seq % 64);
    while (d->ackbits[(d->low_seq % W) / 64] & (1ull << (d->low_seq % 64))) {
        d->ackbits[(d->low_seq % W) / 64] &= ~(1ull << (d->low_seq % 64));
        d->low_seq++;
    }
}

/* Writes the mark when it moved: the segment and file index of low_seq. */
static void save_ack(struct sr_disklog *d)
{
    uint64_t id, idx;
    int32_t i;
    if (d->ackfd < 0 || d->ack_saved == d->low_seq + 1 || d->n_segs == 0) return;
    if (d->low_seq == d->next_seq) { /* everything: the end of the last segment */
        id = last_seg(d)->id;
        idx = last_seg(d)->first_idx + last_seg(d)->n;
    } else if ((i = sr_dlog_find_seg(d, d->low_seq)) >= 0) {
        id = d->segs[i].id;
        idx = d->segs[i].first_idx + (d->low_seq - d->segs[i].first_seq);
    } else {
        return;
    }
    if (sr_dfile_write_ack(d->ackfd, id, idx) != 0) {
        SR_LOG_RL(SR_LOG_WARN, "queue", "disk queue %s: cannot write ACK: %s (a restart replays "
                  "more)", d->name, strerror(errno));
        return;
    }
    if (d->sh->sync != SR_DISK_SYNC_NONE) (void)fdatasync(d->ackfd);
    d->ack_saved = d->low_seq + 1;
}

void sr_disklog_ack(struct sr_disklog *d, uint64_t seq)
{
    int32_t i = sr_dlog_find_seg(d, seq);
    struct sr_dseg *s;
    if (i < 0) return;
    mark_acked(d, seq);
    s = &d->segs[i];
    s->acked++;
    atomic_fetch_sub_explicit(&d->st_events, 1, memory_order_relaxed);
    if (s->acked < s->n) return;
    if (i < (int32_t)d->n_segs - 1)
        delete_seg(d, (uint32_t)i);
    else if (s->size >= TRUNCATE_MIN)
        replace_last(d);
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
        replace_last(d);
        publish(d);
    } else if (flush(d) == 0 && d->sh->sync == SR_DISK_SYNC_INTERVAL) {
        (void)sync_file(d);
    }
    save_ack(d);
}
