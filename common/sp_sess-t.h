/*
 * sp_sess-t.h - layout of the session file (DESIGN §3.5, seed 003 claims
 * 6-9, 15-18, 28-33; on the block pool of sp_pool-t.h, seed 002).
 *
 * One memory-mapped file holds everything, in four regions; every process
 * maps it MAP_SHARED wherever it likes, so all references are offsets.
 *
 *   offset      size          region
 *   ----------  ------------  -------------------------------------------
 *   0           256           sp_sess_hdr_t: sp_seghdr_t (48, SP_MAGIC_SESS,
 *                             generation = random file id) + geometry;
 *                             immutable, checksummed over all 256 bytes
 *   256         256           sp_sess_live_t: counters (relaxed)
 *   512         64*nentries   index: nentries sp_sess_entry_t (one cache
 *                             line each), nentries a power of two
 *   admin_off   admin_size    the pool's administrative region (allocator
 *                             state, owner records; sp_pool-t.h)
 *   data_off    data_size     the pool's data region: one record per
 *                             block; data_off is 4096-aligned
 *
 * The index and the allocator state live apart from the data, so a stray
 * write into a value can damage that value (its checksum then fails)
 * but not the allocator or another entry.
 *
 * sp_sess_hdr_t (file offset 0):
 *     0  48  seg          sp_seghdr_t; total_size = file bytes
 *    48   4  nentries     index entries (power of two)
 *    52   4  hood         neighbourhood: an id lives within hood entries
 *                         of its home slot (SP_SESS_HOOD)
 *    56   4  max_value    largest value in bytes
 *    60   1  min_shift    pool: log2 of the smallest block
 *    61   1  max_order    pool: largest block = 2^(min_shift+max_order)
 *    62   2  max_owners   pool: owner records
 *    64   8  index_off
 *    72   8  admin_off
 *    80   8  admin_size
 *    88   8  data_off
 *    96   8  data_size
 *   104 152  reserved (0)
 *
 * sp_sess_entry_t (64 bytes; the index slot of one session):
 *     0   8  ref          the PUBLICATION WORD: 0 = empty, else
 *                         bit 63     SP_SESS_REF_PRESENT
 *                         bits 40-62 tag: low 23 bits of the version
 *                         bits 32-39 block order (pool-relative)
 *                         bits 0-31  block index (in min-blocks)
 *                         naming an immutable record in the data region
 *     8  16  id           the session id, 128 random bits
 *    24   8  expires      CLOCK_REALTIME ns after which the session is
 *                         gone; 0 = never
 *    32   4  busy         the BUSY INDICATOR (seed 003 claims 9, 18, 27):
 *                         0 = free, else the holder's thread id |
 *                         SP_SESS_BUSY_WAITERS; a futex word
 *    36   4  pad
 *    40   8  busy_start   holder's /proc start time (0 while changing)
 *    48   8  version      version of the published record
 *    56   8  reserved
 *
 * Record (at the start of its block in the data region; immutable once
 * published, seed 003 claims 7, 16: a serialized byte stream):
 *     0   4  magic        SP_SESS_REC_MAGIC
 *     4   4  crc          CRC-32C of bytes 8..48 and of the value
 *     8   4  length       value bytes
 *    12   4  flags        0
 *    16  16  id           the session it belongs to
 *    32   8  version      1 at creation, +1 per put
 *    40   8  written_ns   CLOCK_REALTIME when written
 *    48  ...  value
 *
 * Publication: a writer fills a fresh block, then stores the entry's ref
 * with one 8-byte release store; readers load ref (acquire), copy, and load
 * ref again.  Nothing a reader needs is in more than one word, so no 16-byte
 * update can tear; see sp_sess.c.
 */
#ifndef SP_SESS_T_H
#define SP_SESS_T_H

#include <stddef.h>
#include <stdint.h>

#include "sp_atomic.h"
#include "sp_seghdr-t.h"

#define SP_SESS_VERSION 1
#define SP_SESS_HOOD 32
#define SP_SESS_REC_MAGIC 0x43455253u /* "SREC" */
#define SP_SESS_REC_HDR 48
#define SP_SESS_REF_PRESENT (1ull << 63)
#define SP_SESS_TAG_MASK 0x7fffffull
#define SP_SESS_BUSY_WAITERS 0x80000000u

#define SP_SESS_HDR_BYTES 256
#define SP_SESS_LIVE_OFF 256
#define SP_SESS_INDEX_OFF 512

typedef struct sp_sess_hdr {
    sp_seghdr_t seg;
    uint32_t nentries;
    uint32_t hood;
    uint32_t max_value;
    uint8_t min_shift;
    uint8_t max_order;
    uint16_t max_owners;
    uint64_t index_off;
    uint64_t admin_off;
    uint64_t admin_size;
    uint64_t data_off;
    uint64_t data_size;
    uint8_t reserved[152];
} sp_sess_hdr_t;

/* Counters: shared by every process, relaxed (statistics only).  Hot ones
 * (gets, puts) are added in batches from each handle. */
typedef struct sp_sess_live {
    uint64_t nlive; /* sessions in the index (changed under the lock) */
    uint64_t opens;
    uint64_t recoveries; /* opens that rebuilt the allocator (alone) */
    int64_t last_sweep_ns;
    uint64_t creates;
    uint64_t gets;
    uint64_t get_misses;
    uint64_t puts;
    uint64_t deletes;
    uint64_t touches;
    uint64_t expired;
    uint64_t evicted;
    uint64_t enospc;
    uint64_t busy_waits;
    uint64_t busy_timeouts;
    uint64_t busy_reclaimed;
    uint64_t checksum_errors;
    uint64_t dropped_on_open;
    uint64_t swept_blocks;
    uint8_t reserved[104];
} sp_sess_live_t;

typedef struct sp_sess_entry {
    uint64_t ref;
    uint8_t id[16];
    int64_t expires;
    uint32_t busy;
    uint32_t pad;
    uint64_t busy_start;
    uint64_t version;
    uint64_t reserved;
} sp_sess_entry_t;

typedef struct sp_sess_rec {
    uint32_t magic;
    uint32_t crc;
    uint32_t length;
    uint32_t flags;
    uint8_t id[16];
    uint64_t version;
    int64_t written_ns;
} sp_sess_rec_t;

_Static_assert(sizeof(sp_sess_hdr_t) == SP_SESS_HDR_BYTES, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, nentries) == 48, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, max_value) == 56, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, min_shift) == 60, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, max_owners) == 62, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, index_off) == 64, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, admin_size) == 80, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, data_off) == 88, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, data_size) == 96, "sess hdr layout");
_Static_assert(offsetof(sp_sess_hdr_t, reserved) == 104, "sess hdr layout");
_Static_assert(sizeof(sp_sess_live_t) == SP_SESS_INDEX_OFF - SP_SESS_LIVE_OFF,
               "sess live layout");
_Static_assert(offsetof(sp_sess_entry_t, id) == 8, "sess entry layout");
_Static_assert(offsetof(sp_sess_entry_t, expires) == 24, "sess entry layout");
_Static_assert(offsetof(sp_sess_entry_t, busy) == 32, "sess entry layout");
_Static_assert(offsetof(sp_sess_entry_t, busy_start) == 40,
               "sess entry layout");
_Static_assert(offsetof(sp_sess_entry_t, version) == 48, "sess entry layout");
_Static_assert(sizeof(sp_sess_entry_t) == SP_CACHELINE,
               "one entry per cache line");
_Static_assert(offsetof(sp_sess_rec_t, crc) == 4, "sess record layout");
_Static_assert(offsetof(sp_sess_rec_t, length) == 8, "sess record layout");
_Static_assert(offsetof(sp_sess_rec_t, id) == 16, "sess record layout");
_Static_assert(offsetof(sp_sess_rec_t, version) == 32, "sess record layout");
_Static_assert(offsetof(sp_sess_rec_t, written_ns) == 40, "sess record layout");
_Static_assert(sizeof(sp_sess_rec_t) == SP_SESS_REC_HDR, "sess record layout");

#endif /* SP_SESS_T_H */
