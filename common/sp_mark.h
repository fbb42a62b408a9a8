/*
 * sp_mark.h - futex-backed marks and the futex primitives under them.
 *
 * Pairing (the whole reason this file exists):
 *
 *   waiter                               setter
 *   ------                               ------
 *   CAS word: S -> S|WAITING             old = XCHG(word, T)   (T has no
 *   FUTEX_WAIT(word, S|WAITING)          if (old & WAITING)     WAITING bit)
 *                                            FUTEX_WAKE(word, all)
 *
 * The waiter's CAS and the setter's XCHG are read-modify-writes of the same
 * word, so they are totally ordered: either the setter's XCHG sees the
 * WAITING bit and wakes, or the waiter's CAS fails because the state
 * changed, or FUTEX_WAIT returns EAGAIN because the word is no longer
 * S|WAITING.  No interleaving loses a wake-up, and the setter makes the
 * system call only when someone declared it waits (seed 004 claim 86).
 * Several waiters may share one mark: the wake is FUTEX_WAKE(INT_MAX) and
 * each re-sets the bit if it must sleep again.
 *
 * A waiter that dies with the bit set costs the next setter one spurious
 * FUTEX_WAKE; the setter clears the bit, so nothing stays stuck.
 */
#ifndef SP_MARK_H
#define SP_MARK_H

#include "sp_mark-t.h"
#include "sp_proc.h"

/* Raw shared futex: sleep while *addr == val, until deadline (absolute
 * CLOCK_MONOTONIC ns).  Returns 0 when woken or the value differed,
 * SP_ETIMEDOUT.  Spurious returns are possible: callers loop. */
int sp_futex_wait(uint32_t *addr, uint32_t val, int64_t deadline_ns);
/* Wake up to n sleepers on addr. */
void sp_futex_wake(uint32_t *addr, int n);

void sp_mark_init(sp_mark_t *m, uint32_t state);

/* The current state (acquire: data published before the state change is
 * visible after this returns). */
uint32_t sp_mark_get(const sp_mark_t *m);

/* Publish a new state (release) and wake sleepers if any declared itself. */
void sp_mark_set(sp_mark_t *m, uint32_t state);

/* Change the state from `from` to `to` if it is `from`; wake sleepers.
 * Returns 0, or SP_ESTATE with *seen holding the state found (seen may be
 * NULL). */
int sp_mark_cas(sp_mark_t *m, uint32_t from, uint32_t to, uint32_t *seen);

/* Wait while the state equals `cur`.  Spins first within *spin (may be
 * NULL: no spin), then sleeps on the futex until deadline_ns.  If peer is
 * not NULL, checks every SP_MARK_PEER_CHECK_NS whether that process still
 * lives.  Returns the new state (>= 0), SP_ETIMEDOUT or SP_EPEERDEAD. */
int sp_mark_wait(sp_mark_t *m, uint32_t cur, int64_t deadline_ns,
                 sp_spin_t *spin, const sp_ident_t *peer);

#define SP_MARK_PEER_CHECK_NS (100 * 1000000LL)

/* Spin on an arbitrary condition word: returns 1 if *word != val became
 * true within the budget, 0 if not.  An adaptive budget grows on 1 and
 * shrinks on 0; a poll budget (SP_SPIN_POLL) stays, and its spin also ends
 * at the first yield that let other work run.  Shared by marks and rings. */
int sp_spin_until_ne(const uint32_t *word, uint32_t val, sp_spin_t *spin);

/* The two halves of a spin, for loops that watch something else than a
 * word (sp_slots_poll_events): the budget of this spin in ns, and after
 * it, whether it caught its change (adapts an adaptive budget; a poll
 * budget stays). */
int64_t sp_spin_budget(sp_spin_t *spin);
void sp_spin_adapt(sp_spin_t *spin, int caught);

/* Gate a poll budget on a shared count of requests in progress: the poll
 * runs only while *load is at most the number of CPUs online (budget 0
 * otherwise).  load must outlive the spin. */
void sp_spin_gate(sp_spin_t *spin, const uint32_t *load);

/* CPUs online (sysconf, read once; at least 1). */
uint32_t sp_cpus_online(void);

/* Give the CPU to whatever else is runnable on it; 1 if that took less
 * than SP_YIELD_BUSY_NS (nobody else wanted this CPU for long: polling
 * costs nothing here), 0 if other work ran (stop polling, sleep). */
#define SP_YIELD_BUSY_NS 3000
int sp_yield_idle(void);

#endif /* SP_MARK_H */
