/* Unit tests for src/queue/disklog.c and the disk path of src/queue/partition.c,
 * on real files in a fresh temporary directory per test: records written and
 * read back in order (from the file and from the write buffer), segments
 * deleted once every record is acknowledged (in any order), recovery after a
 * close and after a crash (torn tail, damaged payload, damaged header), the
 * directory lock, the byte budget, and adopting the segments of a run with
 * more workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <limits.h>
#include <unistd.h>

#include "unit_grpc.h"
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "skyrelay/clock.h"
#include "skyrelay/disklog.h"
#include "skyrelay/queue.h"

#define BIG (1ULL << 40)
#define MIB (1ULL << 20)

struct fx {
    char dir[64];
    struct sr_disk_shared sh;
    struct sr_disklog d;
};

static int rm_rf(const char *path)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *why = NULL;
    snprintf(f->dir, sizeof f->dir, "/tmp/sr-disklog-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    if (sr_disk_shared_open(&f->sh, f->dir, BIG, 0, 1 * MIB, SR_DISK_SYNC_NONE, &why) != 0)
        return -1;
    if (sr_disklog_open(&f->d, &f->sh, "segment", 0, &why) != 0) return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    sr_disklog_close(&f->d);
    sr_disk_shared_close(&f->sh);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* Re-opens the log as a new process would (the lock released and taken again). */
static void reopen(struct fx *f)
{
    const char *why = NULL;
    sr_disklog_close(&f->d);
    sr_disk_shared_close(&f->sh);
    assert_int_equal(sr_disk_shared_open(&f->sh, f->dir, BIG, 0, 1 * MIB, SR_DISK_SYNC_NONE, &why),
                     0);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
}

/* A body of n bytes: "ev<i>" then filler derived from i, so every byte is checked. */
static grpc_slice body_of(uint32_t i, size_t n)
{
    grpc_slice s = grpc_slice_malloc(n);
    uint8_t *p = GRPC_SLICE_START_PTR(s);
    for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(i * 31 + k * 7);
    snprintf((char *)p, n, "ev%u", i);
    return s;
}

static int64_t append(struct fx *f, uint32_t i, size_t n, bool spill)
{
    grpc_slice prefix = grpc_slice_from_copied_string("ctx");
    grpc_slice body = body_of(i, n);
    int64_t seq = sr_disklog_append(&f->d, prefix, body, 1000 + i, 1, 0, sr_now_ms(), spill,
                                    sr_now_ms());
    grpc_slice_unref(prefix);
    grpc_slice_unref(body);
    return seq;
}

/* Reads the next backlog record and checks it is event i of n bytes. */
static void expect_next(struct fx *f, uint32_t i, size_t n)
{
    grpc_slice prefix, body, want = body_of(i, n);
    uint64_t key, seq;
    uint32_t items, bytes;
    uint8_t flags;
    int64_t arrival;

    assert_int_equal(sr_disklog_peek(&f->d, &bytes), 1);
    assert_int_equal(bytes, 3 + n);
    sr_disklog_take(&f->d, &prefix, &body, &key, &items, &flags, &arrival, &seq);
    assert_int_equal(GRPC_SLICE_LENGTH(prefix), 3);
    assert_memory_equal(GRPC_SLICE_START_PTR(prefix), "ctx", 3);
    assert_int_equal(GRPC_SLICE_LENGTH(body), n);
    assert_memory_equal(GRPC_SLICE_START_PTR(body), GRPC_SLICE_START_PTR(want), n);
    assert_int_equal(key, 1000 + i);
    assert_true(arrival <= sr_now_ms());
    grpc_slice_unref(prefix);
    grpc_slice_unref(body);
    grpc_slice_unref(want);
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg")) n++;
    closedir(d);
    return n;
}

static void seg_file(const struct fx *f, const char *sub, uint64_t id, char *out, size_t n)
{
    snprintf(out, n, "%s/%s/%016llx.seg", f->dir, sub, (unsigned long long)id);
}

static void spilled_records_are_read_back_in_order_from_buffer_and_file(void **state)
{
    struct fx *f = *state;
    /* 40 KiB each: the 64 KiB write buffer is written out as they come, so the
     * reads cross from the file to the buffer */
    for (uint32_t i = 0; i < 10; i++) assert_int_equal(append(f, i, 40000, true), i);
    assert_true(sr_disklog_backlog(&f->d));
    for (uint32_t i = 0; i < 10; i++) expect_next(f, i, 40000);
    assert_false(sr_disklog_backlog(&f->d));
    assert_int_equal(atomic_load(&f->d.st_events), 10); /* read is not acknowledged */
}

static void a_record_peeked_before_an_append_is_still_read_right(void **state)
{
    struct fx *f = *state;
    uint32_t bytes;
    append(f, 0, 1000, true);
    assert_int_equal(sr_disklog_peek(&f->d, &bytes), 1); /* no room in memory: not taken */
    for (uint32_t i = 1; i < 200; i++) append(f, i, 1000, true); /* the buffer is reused */
    for (uint32_t i = 0; i < 200; i++) expect_next(f, i, 1000);
}

static void records_in_memory_are_not_read_back(void **state)
{
    struct fx *f = *state;
    uint32_t bytes;
    for (uint32_t i = 0; i < 5; i++) append(f, i, 100, false);
    assert_false(sr_disklog_backlog(&f->d));
    assert_int_equal(sr_disklog_peek(&f->d, &bytes), 0);
    append(f, 5, 100, true);
    expect_next(f, 5, 100);
}

static void acknowledged_segments_are_deleted_in_any_order(void **state)
{
    struct fx *f = *state;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/segment/0", f->dir);
    /* 1 MiB segments, ~100 KB records: 10 per segment, 35 records = 4 segments */
    for (uint32_t i = 0; i < 35; i++) append(f, i, 100000, false);
    assert_int_equal(sr_disklog_commit(&f->d), 0);
    assert_int_equal(count_segments(sub), 4);
    /* the second segment's records first, backwards */
    for (int64_t q = 19; q >= 10; q--) sr_disklog_ack(&f->d, (uint64_t)q);
    assert_int_equal(count_segments(sub), 3);
    for (uint64_t q = 0; q < 10; q++) sr_disklog_ack(&f->d, q);
    assert_int_equal(count_segments(sub), 2);
    assert_int_equal(atomic_load(&f->d.st_events), 15);
    for (uint64_t q = 20; q < 35; q++) sr_disklog_ack(&f->d, q);
    /* the last one is written to: emptied, not deleted */
    assert_int_equal(count_segments(sub), 1);
    assert_int_equal(atomic_load(&f->d.st_events), 0);
    assert_int_equal(atomic_load(&f->sh.used), 0);
    assert_int_equal(atomic_load(&f->d.st_oldest_ms), 0);
}

static void tick_empties_an_acknowledged_small_log(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX], sub[PATH_MAX];
    struct stat st;
    snprintf(sub, sizeof sub, "%s/segment/0", f->dir);
    append(f, 0, 100, false);
    sr_disklog_commit(&f->d);
    sr_disklog_ack(&f->d, 0);
    seg_file(f, "segment/0", 1, path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 0); /* small: left for the tick */
    sr_disklog_tick(&f->d, sr_now_ms());
    assert_int_not_equal(stat(path, &st), 0); /* replaced by a new, empty file */
    assert_int_equal(count_segments(sub), 1);
    assert_int_equal(atomic_load(&f->sh.used), 0);
    /* and the log goes on */
    append(f, 1, 100, true);
    expect_next(f, 1, 100);
}

static void replay_starts_at_the_first_unacknowledged_record(void **state)
{
    struct fx *f = *state;
    for (uint32_t i = 0; i < 50; i++) append(f, i, 30000, false);
    for (uint64_t q = 0; q < 10; q++) sr_disklog_ack(&f->d, q); /* not the whole segment */
    reopen(f);
    assert_int_equal(atomic_load(&f->d.st_recovered), 40);
    assert_int_equal(atomic_load(&f->d.st_corrupt), 0);
    for (uint32_t i = 10; i < 50; i++) expect_next(f, i, 30000);
    assert_int_equal(atomic_load(&f->d.st_replayed), 40);
    /* acknowledging them all removes the files of the earlier run */
    for (uint64_t q = 0; q < 40; q++) sr_disklog_ack(&f->d, q);
    assert_int_equal(atomic_load(&f->sh.used), 0);
    reopen(f);
    assert_int_equal(atomic_load(&f->d.st_recovered), 0);
    assert_false(sr_disklog_backlog(&f->d));
}

static void out_of_order_acknowledgements_replay_from_the_first_gap(void **state)
{
    struct fx *f = *state;
    static const uint64_t acked[] = {1, 0, 2, 5, 6, 4};
    for (uint32_t i = 0; i < 10; i++) append(f, i, 1000, false);
    for (size_t k = 0; k < sizeof acked / sizeof acked[0]; k++) sr_disklog_ack(&f->d, acked[k]);
    reopen(f);
    /* 0, 1, 2 before the gap at 3 are not sent again; 4, 5, 6 are (at least once) */
    assert_int_equal(atomic_load(&f->d.st_recovered), 7);
    for (uint32_t i = 3; i < 10; i++) expect_next(f, i, 1000);
}

/* The child process pid ended with status 0. */
static void child_ok(pid_t pid)
{
    int st = -1;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* A child process appends, acknowledges and ticks, then dies without closing. */
static void crash_child(struct fx *f, uint32_t first, uint32_t n, uint32_t acks_before_tick,
                        uint32_t acks_after_tick)
{
    const char *why;
    pid_t pid;
    sr_disklog_close(&f->d); /* the child has the log to itself */
    pid = fork();
    if (pid == 0) {
        if (sr_disklog_open(&f->d, &f->sh, "segment", 0, &why) != 0) _exit(2);
        for (uint32_t i = 0; i < n; i++) append(f, first + i, 1000, false);
        for (uint32_t q = 0; q < acks_before_tick; q++) sr_disklog_ack(&f->d, q);
        sr_disklog_tick(&f->d, sr_now_ms());
        for (uint32_t q = 0; q < acks_after_tick; q++)
            sr_disklog_ack(&f->d, acks_before_tick + q);
        sr_disklog_commit(&f->d);
        _exit(0); /* no close: what kill -9 leaves (the page cache has the files) */
    }
    child_ok(pid);
}

static void after_a_crash_the_mark_of_the_last_tick_counts(void **state)
{
    struct fx *f = *state;
    const char *why;
    crash_child(f, 0, 20, 8, 5); /* acks 8..12 came after the last tick: lost with the process */
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(atomic_load(&f->d.st_recovered), 12);
    for (uint32_t i = 8; i < 20; i++) expect_next(f, i, 1000);
}

static void a_mark_never_skips_records_written_after_it(void **state)
{
    struct fx *f = *state;
    const char *why;
    /* all 5 acknowledged, the tick replaces the segment and writes the mark; 7 more are
     * written into the new segment, then the process dies before the next tick */
    pid_t pid;
    sr_disklog_close(&f->d);
    pid = fork();
    if (pid == 0) {
        if (sr_disklog_open(&f->d, &f->sh, "segment", 0, &why) != 0) _exit(2);
        for (uint32_t i = 0; i < 5; i++) append(f, i, 1000, false);
        for (uint32_t q = 0; q < 5; q++) sr_disklog_ack(&f->d, q);
        sr_disklog_tick(&f->d, sr_now_ms());
        for (uint32_t i = 5; i < 12; i++) append(f, i, 1000, false);
        sr_disklog_commit(&f->d);
        _exit(0);
    }
    child_ok(pid);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(atomic_load(&f->d.st_recovered), 7);
    for (uint32_t i = 5; i < 12; i++) expect_next(f, i, 1000);
}

static void new_records_queue_behind_recovered_ones(void **state)
{
    struct fx *f = *state;
    for (uint32_t i = 0; i < 3; i++) append(f, i, 500, false);
    reopen(f);
    append(f, 3, 500, true);
    for (uint32_t i = 0; i < 4; i++) expect_next(f, i, 500);
    assert_int_equal(atomic_load(&f->d.st_replayed), 3);
}

static void truncate_file(const char *path, off_t cut)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - cut), 0);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    uint8_t c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* Record i of 1000-byte bodies with the "ctx" prefix starts here. */
static off_t rec_off(uint32_t i)
{
    return (off_t)i * (SR_DISK_RECORD_HEADER + 3 + 1000);
}

static void torn_tail_is_skipped_and_counted(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    for (uint32_t i = 0; i < 20; i++) append(f, i, 1000, false);
    sr_disklog_close(&f->d); /* what a crash leaves, once the page cache has it */
    seg_file(f, "segment/0", 1, path, sizeof path);
    truncate_file(path, 500); /* the last record loses its end */
    {
        const char *why;
        assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    }
    assert_int_equal(atomic_load(&f->d.st_recovered), 19);
    assert_int_equal(atomic_load(&f->d.st_corrupt), 1);
    for (uint32_t i = 0; i < 19; i++) expect_next(f, i, 1000);
    assert_false(sr_disklog_backlog(&f->d));
}

static void damaged_payload_is_skipped_the_rest_replayed(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    const char *why;
    for (uint32_t i = 0; i < 20; i++) append(f, i, 1000, false);
    sr_disklog_close(&f->d);
    seg_file(f, "segment/0", 1, path, sizeof path);
    flip_byte(path, rec_off(7) + SR_DISK_RECORD_HEADER + 500);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(atomic_load(&f->d.st_recovered), 19);
    assert_int_equal(atomic_load(&f->d.st_corrupt), 1);
    for (uint32_t i = 0; i < 20; i++)
        if (i != 7) expect_next(f, i, 1000);
    assert_false(sr_disklog_backlog(&f->d));
}

static void damaged_length_is_not_trusted(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    const char *why;
    for (uint32_t i = 0; i < 20; i++) append(f, i, 1000, false);
    sr_disklog_close(&f->d);
    seg_file(f, "segment/0", 1, path, sizeof path);
    flip_byte(path, rec_off(3) + 13); /* a byte of record 3's payload length */
    flip_byte(path, rec_off(11));     /* record 11's magic */
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(atomic_load(&f->d.st_recovered), 18);
    assert_int_equal(atomic_load(&f->d.st_corrupt), 2);
    for (uint32_t i = 0; i < 20; i++)
        if (i != 3 && i != 11) expect_next(f, i, 1000);
    assert_false(sr_disklog_backlog(&f->d));
}

static void a_second_process_cannot_take_the_directory(void **state)
{
    struct fx *f = *state;
    struct sr_disk_shared other;
    const char *why = NULL;
    pid_t pid = fork();
    if (pid == 0) { /* flock is per open file description: another process is needed */
        int r = sr_disk_shared_open(&other, f->dir, BIG, 0, MIB, SR_DISK_SYNC_NONE, &why);
        _exit(r == -EWOULDBLOCK && why && strstr(why, "in use by another skyrelay") ? 0 : 1);
    }
    child_ok(pid);
}

static void budget_refuses_then_frees_with_acknowledgements(void **state)
{
    struct fx *f = *state;
    const char *why;
    int64_t seq;
    uint32_t n = 0;
    sr_disklog_close(&f->d);
    sr_disk_shared_close(&f->sh);
    assert_int_equal(sr_disk_shared_open(&f->sh, f->dir, 1 * MIB, 0, 256 * 1024, SR_DISK_SYNC_NONE,
                                         &why),
                     0);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    while ((seq = append(f, n, 10000, false)) >= 0) n++;
    assert_int_equal(seq, -ENOSPC);
    assert_true(n > 90 && n < 105); /* 1 MiB / ~10 KB */
    assert_int_equal(atomic_load(&f->d.st_refused), 1);
    for (uint64_t q = 0; q < 30; q++) sr_disklog_ack(&f->d, q); /* the first segment (25) */
    assert_true(append(f, n, 10000, false) >= 0);
}

static void free_space_floor_refuses(void **state)
{
    struct fx *f = *state;
    const char *why;
    sr_disklog_close(&f->d);
    sr_disk_shared_close(&f->sh);
    /* a floor above any real filesystem's free space */
    assert_int_equal(sr_disk_shared_open(&f->sh, f->dir, BIG, 1ULL << 60, MIB, SR_DISK_SYNC_NONE,
                                         &why),
                     0);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(append(f, 0, 100, false), -ENOSPC);
    assert_int_equal(atomic_load(&f->d.st_refused), 1);
    assert_int_equal(atomic_load(&f->sh.used), 0);
}

static void sync_always_syncs_on_commit_only_when_written(void **state)
{
    struct fx *f = *state;
    const char *why;
    sr_disklog_close(&f->d);
    sr_disk_shared_close(&f->sh);
    assert_int_equal(sr_disk_shared_open(&f->sh, f->dir, BIG, 0, MIB, SR_DISK_SYNC_ALWAYS, &why), 0);
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    append(f, 0, 100, false);
    assert_int_equal(sr_disklog_commit(&f->d), 0);
    assert_int_equal(atomic_load(&f->d.st_syncs), 1);
    assert_int_equal(sr_disklog_commit(&f->d), 0); /* nothing new: no second fdatasync */
    assert_int_equal(atomic_load(&f->d.st_syncs), 1);
}

static void segments_of_a_run_with_more_workers_are_adopted_in_order(void **state)
{
    struct fx *f = *state;
    struct sr_disklog w2;
    const char *why;
    char sub[PATH_MAX];
    /* worker 0 has 3 records; worker 2 (of a run with 3 workers) has 2 */
    for (uint32_t i = 0; i < 3; i++) append(f, i, 500, false);
    sr_disklog_close(&f->d);
    assert_int_equal(sr_disklog_open(&w2, &f->sh, "segment", 2, &why), 0);
    {
        struct fx g = *f;
        g.d = w2;
        append(&g, 10, 500, false);
        append(&g, 11, 500, false);
        w2 = g.d;
    }
    sr_disklog_close(&w2);
    assert_int_equal(sr_disk_adopt_orphans(&f->sh, "segment", 2), 0);
    snprintf(sub, sizeof sub, "%s/segment/2", f->dir);
    assert_int_equal(count_segments(sub), -1); /* gone */
    assert_int_equal(sr_disklog_open(&f->d, &f->sh, "segment", 0, &why), 0);
    assert_int_equal(atomic_load(&f->d.st_recovered), 5);
    expect_next(f, 0, 500);
    expect_next(f, 1, 500);
    expect_next(f, 2, 500);
    expect_next(f, 10, 500);
    expect_next(f, 11, 500);
}

/* ---- the partition with a disk log ---- */

static int push(struct sr_partition *p, uint32_t i, size_t n)
{
    grpc_slice body = body_of(i, n);
    int r = sr_partition_push(p, grpc_empty_slice(), body, i, 1, 0, sr_now_ms());
    if (r != 0) grpc_slice_unref(body);
    return r;
}

static uint32_t first_index(const struct sr_batch *b, uint32_t k)
{
    return (uint32_t)strtoul((const char *)GRPC_SLICE_START_PTR(sr_batch_event(b, k)->body) + 2,
                             NULL, 10);
}

static void partition_spills_when_full_and_refills_in_order(void **state)
{
    struct fx *f = *state;
    struct sr_partition p;
    uint32_t next = 0;
    assert_int_equal(sr_partition_init(&p, 10, BIG, 2, NULL), 0);
    p.disk = &f->d;
    for (uint32_t i = 0; i < 35; i++) assert_int_equal(push(&p, i, 200), 0); /* 10 in memory */
    assert_int_equal(p.held_events, 10);
    assert_true(sr_disklog_backlog(&f->d));
    while (next < 36) {
        struct sr_batch *b;
        uint32_t n = sr_partition_unbatched(&p);
        assert_true(n > 0);
        b = sr_partition_cut(&p, n, sr_now_ms());
        for (uint32_t k = 0; k < b->count; k++) assert_int_equal(first_index(b, k), next++);
        sr_partition_complete(&p, b);
        sr_partition_refill(&p);
        if (next == 20) assert_int_equal(push(&p, 35, 200), 0); /* waits behind the backlog */
        if (next == 20) assert_int_equal(p.held_events, 10);
    }
    assert_true(sr_partition_empty(&p));
    assert_int_equal(atomic_load(&f->d.st_events), 0);
    sr_partition_deinit(&p);
}

static void events_released_with_keep_stay_on_disk(void **state)
{
    struct fx *f = *state;
    struct sr_partition p;
    struct sr_batch *b;
    assert_int_equal(sr_partition_init(&p, 100, BIG, 2, NULL), 0);
    p.disk = &f->d;
    for (uint32_t i = 0; i < 4; i++) push(&p, i, 100);
    b = sr_partition_cut(&p, 4, sr_now_ms());
    b->ev[1].flags |= SR_EV_KEEP; /* shutdown: not delivered */
    b->ev[3].flags |= SR_EV_KEEP;
    sr_partition_complete(&p, b);
    sr_partition_deinit(&p);
    assert_int_equal(atomic_load(&f->d.st_events), 2);
    reopen(f);
    /* from the first one kept on: 1, 2 (acknowledged, at least once) and 3 */
    assert_int_equal(atomic_load(&f->d.st_recovered), 3);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(spilled_records_are_read_back_in_order_from_buffer_and_file),
        T(a_record_peeked_before_an_append_is_still_read_right),
        T(records_in_memory_are_not_read_back),
        T(acknowledged_segments_are_deleted_in_any_order),
        T(tick_empties_an_acknowledged_small_log),
        T(replay_starts_at_the_first_unacknowledged_record),
        T(out_of_order_acknowledgements_replay_from_the_first_gap),
        T(after_a_crash_the_mark_of_the_last_tick_counts),
        T(a_mark_never_skips_records_written_after_it),
        T(new_records_queue_behind_recovered_ones),
        T(torn_tail_is_skipped_and_counted),
        T(damaged_payload_is_skipped_the_rest_replayed),
        T(damaged_length_is_not_trusted),
        T(a_second_process_cannot_take_the_directory),
        T(budget_refuses_then_frees_with_acknowledgements),
        T(free_space_floor_refuses),
        T(sync_always_syncs_on_commit_only_when_written),
        T(segments_of_a_run_with_more_workers_are_adopted_in_order),
        T(partition_spills_when_full_and_refills_in_order),
        T(events_released_with_keep_stay_on_disk),
    };
#undef T
    return cmocka_run_group_tests_name("disklog", tests, sr_test_grpc_setup, sr_test_grpc_teardown);
}
