/* The disk queue (queue.disk.dir): one append-only log per worker partition.
 *
 *   <dir>/LOCK                            flock()ed by the running process (its pid inside)
 *   <dir>/<pipe>/<worker>/<id>.seg        segment files, id = 16 hex digits, in write order
 *
 * Every event accepted into a pipe with a disk queue is appended to the log
 * of the partition that takes it (the worker's own: no lock per event) before
 * the agent's call is answered OK (sr_disklog_commit). A record carries the
 * event (context prefix + body, key, items, flags, arrival time) and a CRC-32
 * of everything after its checksum field, so a torn tail or a corrupted record
 * is detected, skipped and counted, never replayed as garbage.
 *
 * Each record has a sequence number (its position in the log). While memory
 * has room the event also goes into the partition's ring, and the log is only
 * written (the zero-copy path stays the fast path). When memory is full, or
 * older events still wait on disk, the event is kept on disk only ("spilled")
 * and read back in order when its turn comes (sr_disklog_peek/take). An event
 * is acknowledged (sr_disklog_ack) once the batch that carried it ended
 * delivered or dropped for good; a segment whose records are all acknowledged
 * is deleted (the one being written is replaced by a new file). The log also
 * keeps the point below which every record is acknowledged and writes it to
 * <dir>/<pipe>/<worker>/ACK once a tick. What is not acknowledged (the process
 * died, or stopped with OAP unreachable) is replayed at the next start from
 * that point: at-least-once, the replayed events are counted.
 *
 * Records (little endian, 48-byte header, then payload = prefix bytes + body):
 *   u32 magic "SRQ1" | u32 header crc (of header bytes 8..47) | u32 payload crc |
 *   u32 payload length | u32 prefix length | u32 items | u64 key | i64 arrival ms |
 *   u8 flags | 7 zero bytes
 * The header has its own checksum so that a corrupted length is never
 * trusted: a bad header is skipped by scanning for the next valid one; a good
 * header with a bad payload is skipped by its length; a record that runs past
 * the end of its file is a torn tail.
 *
 * Single-threaded: a log belongs to its worker. The stats are atomics so that
 * a metrics scrape on another thread can read them. The process-wide budget
 * (struct sr_disk_shared) is shared by every worker through one atomic. */
#ifndef SKYRELAY_DISKLOG_H
#define SKYRELAY_DISKLOG_H

#include <grpc/slice.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* queue.disk.sync */
enum sr_disk_sync {
    SR_DISK_SYNC_NONE = 0,  /* write(): a process crash loses nothing, a machine crash may */
    SR_DISK_SYNC_INTERVAL,  /* + fdatasync every queue.disk.sync_interval */
    SR_DISK_SYNC_ALWAYS,    /* + fdatasync before an agent's call is answered OK */
};

#define SR_DISK_RECORD_HEADER 48u
#define SR_DISK_ACK_WINDOW 65536u /* acknowledgements tracked past the mark (8 KiB per log);
                                   * one further out holds the mark back: more replayed after
                                   * a crash, never fewer */

/* Process-wide: the directory, its lock and the byte budget of all logs. */
struct sr_disk_shared {
    char *dir;
    int lock_fd;
    uint64_t max_bytes;      /* queue.disk.max_bytes: all segment files together */
    uint64_t min_free;       /* queue.disk.min_free: refuse when the filesystem has less free */
    uint64_t segment_bytes;  /* a segment is closed at this size (at most max_bytes / 16) */
    int sync;                /* enum sr_disk_sync */
    _Atomic uint64_t used;   /* bytes in all segment files */
};

/* One segment file. */
struct sr_dseg {
    uint64_t id;
    uint64_t first_seq; /* sequence number of its first record */
    uint64_t first_idx; /* index in the file of that record (records before it were
                         * acknowledged in an earlier run) */
    uint64_t n;         /* records in it */
    uint64_t acked;     /* of those, acknowledged */
    uint64_t size;      /* bytes (written + still buffered) */
    int64_t first_ms;   /* arrival time of its first record (wall clock) */
};

/* A record read back, not yet taken. */
struct sr_disk_rec {
    uint32_t len, prefix_len, items;
    uint64_t key;
    int64_t arrival_ms;
    uint8_t flags;
};

struct sr_disklog {
    struct sr_disk_shared *sh; /* borrowed */
    char *dir;                 /* <dir>/<pipe>/<worker> */
    const char *name;          /* for logs: "<pipe>/<worker>" (points into dir) */
    struct sr_dseg *segs;      /* in id order; the last one is written to */
    uint32_t n_segs, cap_segs;
    int wfd;                   /* the last segment */
    uint64_t flushed;          /* bytes of the last segment on file */
    uint8_t *wbuf;             /* records not written yet (the last segment's tail) */
    uint32_t wlen, wcap;
    bool unsynced;             /* written since the last fdatasync */
    bool write_failed;         /* the last write failed: refuse until one succeeds */
    uint64_t next_seq;         /* of the next appended record */
    uint64_t next_id;          /* of the next segment file: ids are never reused */
    /* the acknowledgement mark (<dir>/ACK, written by the tick): every record below low_seq
     * is acknowledged, so a restart replays from there, not from the segment's start */
    int ackfd;
    uint64_t low_seq;
    uint64_t *ackbits;         /* acknowledged records in [low_seq, + SR_DISK_ACK_WINDOW) */
    uint64_t ack_saved;        /* low_seq + 1 when the mark was last written; 0 = never */
    uint64_t recovered_end;    /* records below this were found at start */
    /* read cursor: the first record not yet handed to memory */
    uint64_t read_seq, read_id, read_off;
    int rfd;                   /* open segment read_id, or -1 */
    uint64_t rfd_id;
    uint8_t *rbuf;             /* file bytes [rbuf_off, rbuf_off + rbuf_len) of rfd_id */
    uint64_t rbuf_off;
    uint32_t rbuf_len, rbuf_cap;
    struct sr_disk_rec cur;    /* peeked record */
    const uint8_t *cur_data;   /* its payload, valid until the next call */
    uint32_t cur_size;         /* header + payload */
    bool cur_valid;
    int64_t wall_off;          /* wall clock - monotonic clock: records carry wall time (the
                                * monotonic clock of gRPC starts with the process) */
    int64_t free_checked_ms;   /* free space: statvfs at most once a second */
    uint64_t free_bytes, written_since_check;
    /* stats, read by scrapes */
    _Atomic uint64_t st_bytes, st_events, st_replayed, st_recovered, st_corrupt, st_refused,
        st_write_errors, st_syncs;
    _Atomic int64_t st_oldest_ms; /* arrival (wall clock) of the oldest unacknowledged record,
                                   * 0 = none */
};

/* Creates sh->dir if needed and takes its lock (the pid is written into it).
 * Fills *sh from the arguments. Returns 0, or a negative errno with *why set
 * ("in use by another skyrelay (pid N)", ...). */
int sr_disk_shared_open(struct sr_disk_shared *sh, const char *dir, uint64_t max_bytes,
                        uint64_t min_free, uint64_t segment_bytes, int sync, const char **why);

/* Releases the lock and frees what sr_disk_shared_open allocated. */
void sr_disk_shared_close(struct sr_disk_shared *sh);

/* Moves the segments of worker directories >= n_workers of `pipe` (left by a
 * run with more workers) after the segments of worker (w mod n_workers), in
 * order. Call before the logs are opened. Returns 0 or a negative errno. */
int sr_disk_adopt_orphans(struct sr_disk_shared *sh, const char *pipe, uint32_t n_workers);

/* Opens the log of (pipe, worker): creates its directory, scans the segments
 * left by an earlier run (every record checked: torn and corrupt records are
 * counted in st_corrupt and skipped), makes them the backlog to read back, and
 * starts a new segment. Returns 0 or a negative errno (*why set). */
int sr_disklog_open(struct sr_disklog *d, struct sr_disk_shared *sh, const char *pipe,
                    uint32_t worker, const char **why);

/* Writes what is buffered, syncs when the policy asks, closes the files and
 * frees the memory. The files stay: what is not acknowledged is replayed at
 * the next start. */
void sr_disklog_close(struct sr_disklog *d);

/* Appends an event (borrows the slices); arrival_ms and now_ms are monotonic
 * (sr_now_ms). `spill`: it stays on disk only (the
 * caller keeps no copy; it is read back later); else it is in memory too.
 * Returns its sequence number (>= 0), or -ENOSPC when queue.disk.max_bytes or
 * queue.disk.min_free is reached, -EIO after a write error (counted in
 * st_refused / st_write_errors). */
int64_t sr_disklog_append(struct sr_disklog *d, grpc_slice prefix, grpc_slice body, uint64_t key,
                          uint32_t items, uint8_t flags, int64_t arrival_ms, bool spill,
                          int64_t now_ms);

/* Events on disk that memory has not taken yet (spilled or recovered). */
static inline bool sr_disklog_backlog(const struct sr_disklog *d)
{
    return d->read_seq < d->next_seq;
}

/* The next backlog record, without taking it: 1 (*bytes = prefix + body
 * length), 0 when there is none, a negative errno on a read error. */
int sr_disklog_peek(struct sr_disklog *d, uint32_t *bytes);

/* Takes the record peek returned: fills the event fields (new slice refs,
 * owned by the caller) and its sequence number. The arrival time comes back
 * on the monotonic clock, never later than now. */
void sr_disklog_take(struct sr_disklog *d, grpc_slice *prefix, grpc_slice *body, uint64_t *key,
                     uint32_t *items, uint8_t *flags, int64_t *arrival_ms, uint64_t *seq);

/* The event `seq` was delivered or dropped for good. */
void sr_disklog_ack(struct sr_disklog *d, uint64_t seq);

/* Before an agent is told OK: writes what is buffered (and fdatasyncs under
 * sync: always). Returns 0 or a negative errno. */
int sr_disklog_commit(struct sr_disklog *d);

/* Periodic (the worker's housekeeping): writes what is buffered, fdatasyncs
 * under sync: interval, replaces the last segment by an empty one when all its
 * records are acknowledged, and writes the acknowledgement mark. */
void sr_disklog_tick(struct sr_disklog *d, int64_t now_ms);

/* CRC-32 (the gzip/zlib polynomial; ISA-L) of n bytes; exposed for tests. */
uint32_t sr_disk_crc(const void *p, size_t n);

#endif
