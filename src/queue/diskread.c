/* The disk queue's read-back: the records that memory has not taken yet
 * (spilled when memory was full, or found at start) are read in order, from
 * the segment files or, when they are that recent, from the write buffer.
 * See include/skyrelay/disklog.h; the log itself is src/queue/disklog.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_internal.h"
#include "skyrelay/clock.h"
#include "skyrelay/disklog.h"
#include "skyrelay/log.h"

#define RBUF_CAP (128u * 1024)

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
        sr_dlog_close_reader(d);
        sr_dfile_path(d->dir, id, path, sizeof path);
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
        int32_t i = sr_dlog_find_seg(d, d->read_seq);
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
            k = sr_dfile_parse(win, (size_t)avail, &d->cur, &need);
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
                d->read_off += sr_dfile_resync(win, (size_t)avail);
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
        sr_dlog_close_reader(d);
        free(d->rbuf);
        d->rbuf = NULL;
    }
}
