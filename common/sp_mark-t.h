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

/* Spin budget, kept in process-private memory by each waiter.  max_ns ==
 * 0 never spins.
 * - Adaptive (SP_SPIN_INIT): limit_ns grows when spinning caught the
 *   change and shrinks when it had to sleep anyway, between 0 and max_ns.
 *   For waits that are short when they are short at all (room in a ring).
 * - Poll (SP_SPIN_POLL): always up to max_ns, but only while the CPU is
 *   free: between rounds the waiter yields and gives up as soon as a
 *   yield shows that something else wants the CPU (sp_yield_idle()).  For
 *   the waits on a request's path (PollTime, docs/decisions.md).  With a
 *   load word (sp_spin_gate()), a poll does not start while that count of
 *   requests in progress is above the CPUs online: their processes keep
 *   every CPU busy, and the poll would only cost a yield and a switch. */
typedef struct sp_spin {
    uint32_t limit_ns;
    uint32_t max_ns;
    uint32_t poll;
    uint32_t load_max;    /* poll only while *load <= load_max */
    const uint32_t *load; /* NULL: no gate */
} sp_spin_t;

#define SP_SPIN_INIT(max_ns) {(max_ns) / 4, (max_ns), 0, 0, NULL}
#define SP_SPIN_POLL(max_ns) {(max_ns), (max_ns), 1, 0, NULL}

#endif /* SP_MARK_T_H */
