/*
 * sp_mark.c - marks and futexes (see sp_mark.h for the pairing rules).
 *
 * Spinning: a hand-off between two spinning processes on different cores
 * costs ~0.15 us on the project's machines, a futex wake of a sleeper
 * 7-80 us.  So a waiter whose peer answers quickly gains by spinning a few
 * microseconds, and one whose peer is slow must not burn a core.  An
 * adaptive budget adapts per waiter: doubled (+1 us) when spinning caught
 * the change, halved when it did not.  A poll budget is spent whole, but
 * only while this CPU has nothing else to run (a yield every 64 pauses
 * tells).  The clock is read once every 64 pauses.
 */
#include "sp_mark.h"

#include <errno.h>
#include <sched.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sp_atomic.h"
#include "sp_error.h"

int sp_futex_wait(uint32_t *addr, uint32_t val, int64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = deadline_ns / SP_NSEC_PER_SEC,
        .tv_nsec = deadline_ns % SP_NSEC_PER_SEC,
    };
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout, so
     * EINTR and spurious wake-ups never stretch the deadline. */
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, &ts, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    if (errno == ETIMEDOUT)
        return SP_ETIMEDOUT;
    return 0; /* EAGAIN (value changed) or EINTR: caller re-checks */
}

void sp_futex_wake(uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

uint32_t sp_cpus_online(void)
{
    static uint32_t n; /* racy first calls all store the same value */
    if (n == 0) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v > 0 ? (uint32_t)v : 1;
    }
    return n;
}

void sp_spin_gate(sp_spin_t *spin, const uint32_t *load)
{
    spin->load = load;
    spin->load_max = sp_cpus_online();
}

int64_t sp_spin_budget(sp_spin_t *spin)
{
    if (spin->poll) {
        /* Relaxed: a hint, read once per wait. */
        if (spin->load && sp_load_relaxed(spin->load) > spin->load_max)
            return 0;
        return spin->max_ns;
    }
    if (spin->limit_ns == 0) {
        /* Probe again now and then so a budget that fell to 0 can grow
         * (never beyond max_ns). */
        spin->limit_ns = spin->max_ns < 1000 ? spin->max_ns : 1000;
    }
    return spin->limit_ns;
}

void sp_spin_adapt(sp_spin_t *spin, int caught)
{
    if (spin->poll)
        return;
    if (caught) {
        uint32_t grown = spin->limit_ns * 2 + 1000;
        spin->limit_ns = grown > spin->max_ns ? spin->max_ns : grown;
    } else {
        spin->limit_ns /= 2;
    }
}

int sp_spin_until_ne(const uint32_t *word, uint32_t val, sp_spin_t *spin)
{
    if (spin == NULL || spin->max_ns == 0)
        return 0;
    int64_t budget = sp_spin_budget(spin);
    if (budget == 0)
        return 0; /* a gated poll (an adaptive budget is never 0 here) */
    int64_t end = sp_now_ns() + budget;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            /* Relaxed: a hint; the caller re-reads with acquire. */
            if (sp_load_relaxed(word) != val) {
                sp_spin_adapt(spin, 1);
                return 1;
            }
            sp_cpu_relax();
        }
        if (sp_now_ns() >= end || (spin->poll && !sp_yield_idle()))
            break;
    }
    sp_spin_adapt(spin, 0);
    return 0;
}

int sp_yield_idle(void)
{
    int64_t t0 = sp_now_ns();
    sched_yield(); /* whoever is runnable here goes first */
    return sp_now_ns() - t0 < SP_YIELD_BUSY_NS;
}

void sp_mark_init(sp_mark_t *m, uint32_t state)
{
    sp_store_release(&m->word, state & SP_MARK_STATE);
}

uint32_t sp_mark_get(const sp_mark_t *m)
{
    return sp_load_acquire(&m->word) & SP_MARK_STATE;
}

void sp_mark_set(sp_mark_t *m, uint32_t state)
{
    /* Pairs with the waiter's CAS in sp_mark_wait(). */
    uint32_t old = sp_xchg(&m->word, state & SP_MARK_STATE);
    if (old & SP_MARK_WAITING)
        sp_futex_wake(&m->word, INT_MAX);
}

int sp_mark_cas(sp_mark_t *m, uint32_t from, uint32_t to, uint32_t *seen)
{
    uint32_t cur = sp_load_relaxed(&m->word); /* re-validated by the CAS */
    for (;;) {
        if ((cur & SP_MARK_STATE) != from) {
            if (seen)
                *seen = cur & SP_MARK_STATE;
            return SP_ESTATE;
        }
        /* Pairs with the waiter's CAS in sp_mark_wait(): the new value
         * drops the WAITING bit, and we wake if it was set. */
        if (sp_cas(&m->word, &cur, to & SP_MARK_STATE)) {
            if (cur & SP_MARK_WAITING)
                sp_futex_wake(&m->word, INT_MAX);
            return 0;
        }
    }
}

int sp_mark_wait(sp_mark_t *m, uint32_t cur, int64_t deadline_ns,
                 sp_spin_t *spin, const sp_ident_t *peer)
{
    uint32_t w = sp_load_acquire(&m->word);
    if ((w & SP_MARK_STATE) != cur)
        return (int)(w & SP_MARK_STATE);
    if (sp_spin_until_ne(&m->word, w, spin)) {
        w = sp_load_acquire(&m->word);
        if ((w & SP_MARK_STATE) != cur)
            return (int)(w & SP_MARK_STATE);
    }
    for (;;) {
        w = sp_load_acquire(&m->word);
        if ((w & SP_MARK_STATE) != cur)
            return (int)(w & SP_MARK_STATE);
        int64_t now = sp_now_ns();
        if (now >= deadline_ns)
            return SP_ETIMEDOUT;
        if (!(w & SP_MARK_WAITING)) {
            /* Declare ourselves; pairs with the setter's XCHG/CAS. */
            uint32_t want = w | SP_MARK_WAITING;
            if (!sp_cas(&m->word, &w, want))
                continue; /* the state moved under us: re-check */
            w = want;
        }
        int64_t until = deadline_ns;
        if (peer != NULL && until - now > SP_MARK_PEER_CHECK_NS)
            until = now + SP_MARK_PEER_CHECK_NS;
        int rc = sp_futex_wait(&m->word, w, until);
        if (rc == SP_ETIMEDOUT && peer != NULL && !sp_ident_alive(peer)) {
            w = sp_load_acquire(&m->word);
            if ((w & SP_MARK_STATE) != cur)
                return (int)(w & SP_MARK_STATE);
            return SP_EPEERDEAD;
        }
    }
}
