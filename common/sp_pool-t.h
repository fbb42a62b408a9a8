/*
 * sp_pool-t.h - shared layout of the block pool (DESIGN §3.4, seed 002
 * claims 24, 26-27, 29-31, 36): a buddy allocator over a DATA region of
 * 2^k-byte blocks whose whole state lives in a separate ADMINISTRATIVE
 * region.
 *
 * The two regions are given by the caller and may live anywhere (anonymous
 * shared memory for a cache, two sections of a mapped file for the session
 * store); both are addressed by offsets only.  Nothing of the allocator is
 * ever stored in the data region, so a stray write into a block can damage
 * that block's contents and nothing else.
 *
 * Units.  The data region is cut into nblocks MIN-BLOCKS of 2^min_shift
 * bytes; a block of (relative) order k spans 2^k min-blocks, starts at a
 * min-block index that is a multiple of 2^k, and is named by its byte
 * offset (index << min_shift).  Orders run from 0 to max_order (<= 31).
 *
 * Administrative region:
 *
 *   offset        size   what
 *   ------------  -----  ------------------------------------------------
 *   0             128    sp_pool_hdr_t: sp_seghdr_t (48, SP_MAGIC_POOL) +
 *                        geometry; immutable, covered by the checksum
 *   128           896    sp_pool_live_t (layout below)
 *   1024          64*N   N = max_owners owner records (sp_pool_owner_t);
 *                        record 0 is SP_POOL_SHARED, never reaped
 *   meta_off      16*M   M = nblocks block records (sp_pool_meta_t), one
 *                        per min-block; only those at block heads mean
 *                        anything
 *
 *   sp_pool_live_t (offsets from its start, i.e. admin + 128):
 *     0    4  lock         0 = free, else holder's tid | SP_POOL_LOCK_WAITERS
 *     4    4  pad
 *     8    8  lock_start   holder's /proc start time (0 while changing)
 *    16    8  lock_steals  locks taken over from a dead holder
 *    24    8  repairs      list rebuilds (after a steal or a failed check)
 *    32   32  pad          (the lock has its own cache line)
 *    64  128  free_head[32]  first free block of each order, or NIL
 *   192  128  nfree[32]      free blocks per order
 *   320  128  nused[32]      blocks in use per order
 *   448    4  free_mask      bit k set iff free_head[k] != NIL
 *   452    4  owners_used    owner records in use (shared one included)
 *   456    8  free_units     free min-blocks
 *   464    8  allocs         successful allocations
 *   472    8  frees          successful frees
 *   480    8  failed_allocs  allocations refused for lack of space
 *   488    8  bad_frees      double, foreign and bad-offset frees refused
 *   496    8  reaped_blocks  blocks of dead owners swept back
 *   504    8  reaped_owners  owner records of dead processes freed
 *   512    8  shares         blocks handed to SP_POOL_SHARED
 *   520    8  checks         consistency checks run
 *   528  368  reserved
 *
 *   sp_pool_owner_t (64 bytes; seed 002's "memory management object",
 *   one per process, claims 26-27):
 *     0    4  pid      0 = record free; SP_POOL_SHARED has SP_POOL_PID_SHARED
 *     4    4  flags    SP_POOL_OWNF_*
 *     8    8  start    /proc start time of the process
 *    16    4  head     first block of the owner's list (claim 31), or NIL
 *    20    4  pad
 *    24    8  nblocks  blocks held
 *    32    8  nunits   min-blocks held
 *    40   24  reserved
 *
 *   sp_pool_meta_t (16 bytes, one per min-block):
 *     0    1  state    SP_POOL_BLK_NONE (not a block head), _FREE, _USED
 *     1    1  order
 *     2    2  owner    owner record index (USED heads)
 *     4    4  next     next block in its list (free list of its order, or
 *                      its owner's list), NIL at the end
 *     8    4  prev     previous block in that list, NIL at the front
 *    12    4  seq      times this head was allocated (diagnostics)
 *
 * Invariants (outside the lock): the heads tile [0, nblocks) exactly; every
 * min-block inside a block other than its head is NONE; every FREE head is
 * on the free list of its order and every USED head on its owner's list;
 * no two free buddies of the same order exist (they are merged); the counts
 * above match the lists.  sp_pool_check() verifies all of it.
 */
#ifndef SP_POOL_T_H
#define SP_POOL_T_H

#include <stddef.h>
#include <stdint.h>

#include "sp_atomic.h"
#include "sp_seghdr-t.h"

#define SP_POOL_VERSION 1
#define SP_POOL_ORDERS 32       /* relative orders 0..31 */
#define SP_POOL_NIL 0xffffffffu /* "no block" in lists */
#define SP_POOL_SHARED 0u       /* owner record of shared blocks */
#define SP_POOL_PID_SHARED (-2) /* pid stamped in the shared record */
#define SP_POOL_LOCK_WAITERS 0x80000000u

#define SP_POOL_OWNF_PERSISTENT 1u /* never reaped (the shared record) */

enum sp_pool_blk_state {
    SP_POOL_BLK_NONE = 0,
    SP_POOL_BLK_FREE = 1,
    SP_POOL_BLK_USED = 2,
};

typedef struct sp_pool_hdr {
    sp_seghdr_t seg;     /* magic SP_MAGIC_POOL; total_size = admin bytes */
    uint64_t data_size;  /* bytes managed: nblocks << min_shift */
    uint32_t nblocks;    /* min-blocks */
    uint8_t min_shift;   /* log2 of the smallest block */
    uint8_t max_order;   /* largest block: 2^(min_shift + max_order) */
    uint16_t max_owners; /* owner records */
    uint64_t owners_off; /* from the admin start */
    uint64_t meta_off;
    uint8_t pad[48];
} sp_pool_hdr_t;

typedef struct sp_pool_live {
    uint32_t lock;
    uint32_t pad0;
    uint64_t lock_start;
    uint64_t lock_steals;
    uint64_t repairs;
    uint8_t pad1[SP_CACHELINE - 32];
    uint32_t free_head[SP_POOL_ORDERS];
    uint32_t nfree[SP_POOL_ORDERS];
    uint32_t nused[SP_POOL_ORDERS];
    uint32_t free_mask;
    uint32_t owners_used;
    uint64_t free_units;
    uint64_t allocs;
    uint64_t frees;
    uint64_t failed_allocs;
    uint64_t bad_frees;
    uint64_t reaped_blocks;
    uint64_t reaped_owners;
    uint64_t shares;
    uint64_t checks;
    uint8_t reserved[368];
} sp_pool_live_t;

typedef struct sp_pool_owner {
    int32_t pid;
    uint32_t flags;
    uint64_t start;
    uint32_t head;
    uint32_t pad;
    uint64_t nblocks;
    uint64_t nunits;
    uint8_t reserved[24];
} sp_pool_owner_t;

typedef struct sp_pool_meta {
    uint8_t state;
    uint8_t order;
    uint16_t owner;
    uint32_t next;
    uint32_t prev;
    uint32_t seq;
} sp_pool_meta_t;

#define SP_POOL_HDR_BYTES 128
#define SP_POOL_LIVE_OFF 128
#define SP_POOL_OWNERS_OFF 1024

_Static_assert(sizeof(sp_pool_hdr_t) == SP_POOL_HDR_BYTES, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, data_size) == 48, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, nblocks) == 56, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, min_shift) == 60, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, max_owners) == 62, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, owners_off) == 64, "pool hdr layout");
_Static_assert(offsetof(sp_pool_hdr_t, meta_off) == 72, "pool hdr layout");
_Static_assert(offsetof(sp_pool_live_t, lock_start) == 8, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, repairs) == 24, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, free_head) == SP_CACHELINE,
               "the lock has its own cache line");
_Static_assert(offsetof(sp_pool_live_t, nfree) == 192, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, nused) == 320, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, free_mask) == 448, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, free_units) == 456, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, allocs) == 464, "pool live layout");
_Static_assert(offsetof(sp_pool_live_t, checks) == 520, "pool live layout");
_Static_assert(sizeof(sp_pool_live_t) == SP_POOL_OWNERS_OFF - SP_POOL_LIVE_OFF,
               "pool live layout");
_Static_assert(offsetof(sp_pool_owner_t, start) == 8, "pool owner layout");
_Static_assert(offsetof(sp_pool_owner_t, head) == 16, "pool owner layout");
_Static_assert(offsetof(sp_pool_owner_t, nblocks) == 24, "pool owner layout");
_Static_assert(offsetof(sp_pool_owner_t, nunits) == 32, "pool owner layout");
_Static_assert(sizeof(sp_pool_owner_t) == 64, "pool owner layout");
_Static_assert(offsetof(sp_pool_meta_t, owner) == 2, "pool meta layout");
_Static_assert(offsetof(sp_pool_meta_t, next) == 4, "pool meta layout");
_Static_assert(offsetof(sp_pool_meta_t, prev) == 8, "pool meta layout");
_Static_assert(offsetof(sp_pool_meta_t, seq) == 12, "pool meta layout");
_Static_assert(sizeof(sp_pool_meta_t) == 16, "pool meta layout");

#endif /* SP_POOL_T_H */
