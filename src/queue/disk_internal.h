/* Shared by src/queue/diskfile.c (the files and the record format) and
 * src/queue/disklog.c (the log): not an API outside src/queue/. */
#ifndef SKYRELAY_QUEUE_DISK_INTERNAL_H
#define SKYRELAY_QUEUE_DISK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "skyrelay/disklog.h"

#define MAGIC 0x31515253u      /* "SRQ1" read as a little-endian u32 */
#define HDR SR_DISK_RECORD_HEADER
#define MAX_PAYLOAD (1u << 30) /* larger than any accepted message */
#define PATH_LEN 4096

/* CRC-32 continued over n more bytes. */
uint32_t sr_dfile_crc_more(uint32_t c, const void *p, size_t n);

/* Writes a record header (HDR bytes) for a payload of len bytes with checksum pcrc. */
void sr_dfile_encode(uint8_t *h, uint32_t pcrc, uint32_t len, uint32_t plen, uint32_t items,
                     uint64_t key, int64_t arrival_ms, uint8_t flags);

/* Parses the record at b (avail bytes). Returns its size (header + payload)
 * when whole and valid; 0 when more bytes are needed (*need = how many in
 * all); -1 when the header is not a record header (scan on with
 * sr_dfile_resync); -2 when the header is good but the payload's checksum is
 * not (*need = the record's size: skip it). */
int64_t sr_dfile_parse(const uint8_t *b, size_t avail, struct sr_disk_rec *r, uint64_t *need);

/* The offset (> 0) of the next place in b that may start a valid header, or avail. */
size_t sr_dfile_resync(const uint8_t *b, size_t avail);

/* "a/b", malloc'ed (NULL when out of memory). */
char *sr_dfile_join(const char *a, const char *b);

/* mkdir -p with mode 0750. Returns 0 or a negative errno. */
int sr_dfile_mkdir(const char *path);

/* The path of segment `id` in dir. */
void sr_dfile_path(const char *dir, uint64_t id, char *out, size_t n);

/* The segment ids in dir, sorted (*ids malloc'ed, NULL when none). Returns the
 * count (0 when dir does not exist) or a negative errno. */
int64_t sr_dfile_list(const char *dir, uint64_t **ids);

/* Counts the valid records of a segment file of `size` bytes left by an
 * earlier run. *bad gets the damaged records skipped (a torn tail counts as
 * one); *start_off the offset of valid record number `skip` (acknowledged
 * before: not replayed), the end of the data when there are not that many;
 * *first_ms that record's arrival. */
uint64_t sr_dfile_scan(const char *path, uint64_t size, uint64_t skip, int64_t *first_ms,
                       uint64_t *bad, uint64_t *start_off);

/* The acknowledgement mark (<log dir>/ACK): every record before record `idx`
 * of segment `id`, and every record of a segment with a smaller id, was
 * acknowledged. read: 0, or -1 when absent or damaged. write: 0 or a negative
 * errno. */
int sr_dfile_read_ack(int fd, uint64_t *id, uint64_t *idx);
int sr_dfile_write_ack(int fd, uint64_t id, uint64_t idx);

/* Shared by disklog.c and diskread.c: the segment holding record seq (index
 * into d->segs, -1 when none), and closing the read file. */
int32_t sr_dlog_find_seg(const struct sr_disklog *d, uint64_t seq);
void sr_dlog_close_reader(struct sr_disklog *d);

#endif
