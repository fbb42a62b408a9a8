/*
 * sp_mark-t.h - the mark word (DESIGN §3.1, seed 000 claims 31-38).
 *
 * A mark is one 32-bit word in shared memory:
 *
 *   bit 31      SP_MARK_WAITING: some process sleeps (or is about to sleep)
 *               on this word with FUTEX_WAIT and must be woken on change
 *   bits 0..30  the state, whose meaning belongs to the structure that
 *               holds the mark (slot life cycle, space writable/readable...)
 *
 * It is waited on with a shared futex (never FUTEX_PRIVATE_FLAG: the
 * waiters are other processes).
 */
#ifndef SP_MARK_T_H
#define SP_MARK_T_H

#include <stdint.h>

#define SP_MARK_WAITING 0x80000000u
#define SP_MARK_STATE 0x7fffffffu

typedef struct sp_mark {
    uint32_t word;
} sp_mark_t;

/* Adaptive spin budget, kept in process-private memory by each waiter.
 * limit_ns grows when spinning caught the change and shrinks when it had
 * to sleep anyway, between 0 and max_ns.  max_ns == 0 never spins. */
typedef struct sp_spin {
    uint32_t limit_ns;
    uint32_t max_ns;
} sp_spin_t;

#define SP_SPIN_INIT(max_ns) {(max_ns) / 4, (max_ns)}

#endif /* SP_MARK_T_H */
