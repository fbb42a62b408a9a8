/*
 * sp_pool.h - the block pool: a buddy allocator shared by processes, with
 * all of its state in an administrative region apart from the data
 * (layout and invariants in sp_pool-t.h).
 *
 * Owners.  Every block in use belongs to one owner record in the admin
 * region (seed 002 claims 26-27): the calling process's own record, which
 * it registers on its first allocation (pid + start time), or the shared
 * record SP_POOL_SHARED, which no process owns and which is never reaped.
 * A process frees its own blocks with sp_pool_free(); it may hand one to
 * the shared record with sp_pool_share(), after which sp_pool_free_shared()
 * frees it.  sp_pool_reap() sweeps back the blocks of owners that died.
 *
 * Errors.  Bad sizes are SP_EMSGSIZE (over the largest block) or SP_EINVAL
 * (0); an exhausted pool is SP_ENOSPC.  Frees are checked against the admin
 * region and refused without touching anything:
 *   SP_EINVAL  the offset names no block (out of range, not aligned to the
 *              smallest block, or inside a block rather than at its head);
 *   SP_ESTATE  the block is free already (double free) or is held by
 *              another owner (foreign free).
 * Both are counted in bad_frees.
 *
 * Lock.  One mutex in the admin region serialises every change: a futex
 * word holding the holder's thread id (plus its start time beside it), so a
 * waiter that times out can tell that the holder died (sp_ident_alive on
 * tid + start) and take the lock over.  It then rebuilds the free and owner
 * lists from the per-block records (a dead holder may have left a list half
 * linked; the record writes are ordered so that the records alone always
 * describe a valid tiling) and calls the repair hook, if any, before going
 * on.  pthread robust mutexes are deliberately not used (APR hides
 * EOWNERDEAD; see HTTPD-NOTES).  Ordering:
 *
 *   take:    CAS lock 0 -> tid (acq_rel): everything the previous holder
 *            wrote before its release is visible; then lock_start = start.
 *   release: lock_start = 0, then XCHG lock -> 0 (acq_rel), and FUTEX_WAKE
 *            one if the old word had SP_POOL_LOCK_WAITERS.
 *   wait:    CAS lock w -> w|WAITERS, FUTEX_WAIT(lock, w|WAITERS); after a
 *            wake-up take with CAS 0 -> tid|WAITERS (others may still
 *            sleep: the waker cannot know, so the bit is kept).
 *
 * Because lock_start is cleared before the releasing XCHG and written after
 * the taking CAS, a waiter that reads the holder's tid from the word and
 * then lock_start sees either 0 (it then checks the tid alone) or the
 * holder's own start time, never a predecessor's.
 *
 * Every call that takes the lock waits at most p->lock_timeout_ns and
 * returns SP_ETIMEDOUT after that (a holder that is alive but stuck).
 * Functions ending in _locked require the caller to hold the lock (checked
 * with assert() in debug builds).
 */
#ifndef SP_POOL_H
#define SP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "sp_pool-t.h"
#include "sp_proc.h"

/* Where common/ code reports what it found and repaired (never logs by
 * itself): msg is one line starting with a unique tag (SPPnnnn here). */
typedef void (*sp_pool_log_fn)(void *arg, const char *msg);

typedef struct sp_pool sp_pool_t;

/* Called with the lock held right after it was taken over from a dead
 * holder and the lists were rebuilt (the session store sweeps there what
 * the dead holder left unpublished). */
typedef void (*sp_pool_repair_fn)(void *arg, sp_pool_t *p);

/* A process-local handle on a pool. */
struct sp_pool {
    sp_pool_hdr_t *hdr;
    sp_pool_live_t *live;
    sp_pool_owner_t *owners;
    sp_pool_meta_t *meta;
    unsigned char *data;
    uint64_t data_size;
    uint32_t nblocks;
    uint32_t max_owners;
    unsigned min_shift;
    unsigned max_order;
    int32_t self_pid; /* process whose record self_owner is (fork-safe) */
    uint32_t self_owner;
    int64_t lock_timeout_ns;
    sp_pool_log_fn log;
    void *log_arg;
    sp_pool_repair_fn repair;
    void *repair_arg;
};

typedef struct sp_pool_stats {
    uint64_t data_bytes; /* managed bytes */
    uint64_t min_block;  /* bytes */
    uint64_t max_block;
    uint64_t free_bytes;
    uint64_t used_bytes;
    uint64_t largest_free;  /* bytes of the largest free block */
    uint32_t frag_permille; /* 1000 * (1 - largest_free / free_bytes) */
    uint32_t norders;       /* entries used in the arrays below */
    uint32_t nused[SP_POOL_ORDERS];
    uint32_t nfree[SP_POOL_ORDERS];
    uint32_t owners; /* owner records in use (shared included) */
    uint64_t allocs, frees, failed_allocs, bad_frees;
    uint64_t reaped_blocks, reaped_owners, shares, lock_steals, repairs;
} sp_pool_stats_t;

#define SP_POOL_LOCK_TIMEOUT_NS (10 * SP_NSEC_PER_SEC)
/* How long a waiter sleeps before it checks that the holder lives. */
#define SP_POOL_LIVENESS_NS (20 * SP_NSEC_PER_MSEC)

/* Bytes of admin region for data_size bytes of data cut in blocks of
 * 2^min_shift .. 2^(min_shift+max_order) bytes and max_owners owner
 * records; 0 if the geometry is invalid (min_shift 4..24, max_order 0..31,
 * max_owners 2..65535, at least one min-block, fewer than 2^32-1). */
size_t sp_pool_admin_bytes(uint64_t data_size, unsigned min_shift,
                           unsigned max_order, unsigned max_owners);

/* Format admin (sp_pool_admin_bytes() bytes, 64-aligned) as an empty pool
 * over data (data_size bytes; a tail smaller than a min-block is unused)
 * and attach p.  The data region is not touched.  generation != 0. */
int sp_pool_format(sp_pool_t *p, void *admin, size_t admin_size, void *data,
                   uint64_t data_size, unsigned min_shift, unsigned max_order,
                   unsigned max_owners, uint64_t generation);

/* Attach to a pool formatted by any process.  Refusals as in
 * sp_seghdr_check(), SP_EINVAL if the geometry does not match the sizes
 * given. */
int sp_pool_attach(sp_pool_t *p, void *admin, size_t admin_size, void *data,
                   uint64_t data_size);

/* Rewrite only the header of a pool whose header was damaged, leaving the
 * allocator state as it is (follow with sp_pool_attach() and
 * sp_pool_check(p, 1)).  Same arguments as sp_pool_format(). */
int sp_pool_restamp(void *admin, size_t admin_size, uint64_t data_size,
                    unsigned min_shift, unsigned max_order, unsigned max_owners,
                    uint64_t generation);

static inline void *sp_pool_ptr(const sp_pool_t *p, uint64_t off)
{
    return p->data + off;
}

/* Bytes of the block that sp_pool_alloc() would give for size; 0 if size
 * is 0 or larger than the largest block. */
uint64_t sp_pool_block_bytes(const sp_pool_t *p, size_t size);

/* Allocate a block of at least size bytes for the calling process;
 * *off is its offset in the data region.  O(log n).  SP_ENOSPC when no
 * block is large enough even after reaping dead owners. */
int sp_pool_alloc(sp_pool_t *p, size_t size, uint64_t *off);
/* Free a block of the calling process (errors: see top). */
int sp_pool_free(sp_pool_t *p, uint64_t off);
/* Hand a block of the calling process to SP_POOL_SHARED. */
int sp_pool_share(sp_pool_t *p, uint64_t off);
/* Free a shared block. */
int sp_pool_free_shared(sp_pool_t *p, uint64_t off);

/* Sweep back every block of every owner whose process died, and free their
 * records.  Liveness is checked outside the lock.  Returns the number of
 * blocks freed, or a negative SP_E* if the lock could not be taken. */
int sp_pool_reap(sp_pool_t *p);

/* Full consistency check of the admin region (see sp_pool-t.h); returns
 * the number of problems found (0 = consistent; the first few are sent to
 * the log callback), or a negative SP_E* if the lock could not be taken.
 * With repair, lists and counts are rebuilt from the block records when a
 * problem was found. */
int sp_pool_check(sp_pool_t *p, int repair);

void sp_pool_stats(const sp_pool_t *p, sp_pool_stats_t *st);

void sp_pool_set_log(sp_pool_t *p, sp_pool_log_fn fn, void *arg);
void sp_pool_set_repair(sp_pool_t *p, sp_pool_repair_fn fn, void *arg);

/* ---- explicit locking, for callers that combine pool changes with their
 * own (the session store publishes index entries under this lock) ---- */

/* Take the lock before deadline_ns (0: try once).  0, SP_EAGAIN (deadline
 * 0 and held), SP_ETIMEDOUT.  Takes it over from a dead holder (and
 * repairs, see top). */
int sp_pool_lock(sp_pool_t *p, int64_t deadline_ns);
/* The same with deadline now + p->lock_timeout_ns; the uncontended case
 * costs one CAS and no clock read. */
int sp_pool_lock_bounded(sp_pool_t *p);
void sp_pool_unlock(sp_pool_t *p);
/* 1 if the calling thread holds the lock. */
int sp_pool_lock_held(const sp_pool_t *p);

/* The calling process's owner record, registered on first use. */
int sp_pool_self_owner(sp_pool_t *p, uint32_t *owner);
int sp_pool_self_owner_locked(sp_pool_t *p, uint32_t *owner);

int sp_pool_alloc_locked(sp_pool_t *p, size_t size, uint32_t owner,
                         uint64_t *off);
/* Free a block held by owner (errors: see top). */
int sp_pool_free_locked(sp_pool_t *p, uint64_t off, uint32_t owner);
/* Move a block from owner `from` to owner `to`. */
int sp_pool_give_locked(sp_pool_t *p, uint64_t off, uint32_t from, uint32_t to);

/* What the admin region says about the block at off: 0 and its state,
 * order and owner if off is a block head, SP_EINVAL if not. */
int sp_pool_block_locked(const sp_pool_t *p, uint64_t off, unsigned *state,
                         unsigned *order, uint32_t *owner);

/* Free every shared block for which keep(arg, off, order) returns 0.
 * Returns how many were freed. */
typedef int (*sp_pool_keep_fn)(void *arg, uint64_t off, unsigned order);
long sp_pool_sweep_shared_locked(sp_pool_t *p, sp_pool_keep_fn keep, void *arg);

/* Rebuild from an outside description (the session store on open, when
 * no other process uses the pool): begin forgets every block and owner,
 * take marks one block in use by owner (0 = shared, the only one that
 * exists after begin), end turns everything not taken into free blocks.
 * take refuses (SP_EINVAL) a block that is misaligned, out of range, or
 * overlaps one taken before.  No locking: the caller is alone. */
void sp_pool_rebuild_begin(sp_pool_t *p);
int sp_pool_rebuild_take(sp_pool_t *p, uint64_t off, unsigned order);
void sp_pool_rebuild_end(sp_pool_t *p);

/* The calling thread's identity (kernel tid + start time), cached and
 * fork-safe; what lock and busy words hold. */
sp_ident_t sp_pool_thread_self(void);
/* The calling process's identity, cached and fork-safe (unlike
 * sp_ident_self(), no getpid() system call per call). */
sp_ident_t sp_pool_process_self(void);

#endif /* SP_POOL_H */
