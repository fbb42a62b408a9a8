/*
 * sp_atomic.h - the one place where atomics, fences and CPU hints live.
 *
 * Everything that other processes can see goes through these macros, so a
 * reader can find every cross-process ordering decision with one grep.
 * They are thin wrappers over C11 <stdatomic.h> on plain (non-_Atomic)
 * objects via the GCC/Clang __atomic builtins, because the shared
 * structures are laid out by hand with explicit offsets and must stay
 * plain integers for offsetof() and _Static_assert().
 *
 * Ordering rules used throughout slotproxy:
 *
 *  1. Publication.  A producer fills data with plain stores, then makes it
 *     visible with sp_store_release() of an index or state word.  The
 *     consumer reads that word with sp_load_acquire() before touching the
 *     data.  (ring head/tail, slot state, segment headers.)
 *
 *  2. Sleep/wake (the Dekker pair).  A waiter stores its "waiting" flag and
 *     then re-reads the condition; the waker stores the condition and then
 *     reads the flag.  Both sides put sp_fence_full() between their store
 *     and their load, otherwise each may read the other's old value and
 *     the wake-up is lost.  Every use names its partner in a comment.
 *
 *  3. Read-modify-write on shared words (state transitions, bitmap bits,
 *     owner stamps) use sp_cas() / sp_fetch_or() etc. with acq_rel
 *     ordering: they both publish and observe.
 *
 *  4. Relaxed loads are only for statistics and for hints that are
 *     re-validated by an acquire load or a CAS afterwards.  Each one says
 *     so where it is used.
 */
#ifndef SP_ATOMIC_H
#define SP_ATOMIC_H

#include <stdint.h>

#define SP_CACHELINE 64

#define sp_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define sp_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define sp_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define sp_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Compare-and-swap: *p == *expected ? (*p = desired, true)
 *                                    : (*expected = *p, false). */
#define sp_cas(p, expected, desired)                                           \
    __atomic_compare_exchange_n((p), (expected), (desired), 0,                \
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define sp_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
#define sp_fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define sp_fetch_sub(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_ACQ_REL)
#define sp_fetch_or(p, v) __atomic_fetch_or((p), (v), __ATOMIC_ACQ_REL)
#define sp_fetch_and(p, v) __atomic_fetch_and((p), (v), __ATOMIC_ACQ_REL)
/* Statistics counters: nobody orders anything against them. */
#define sp_stat_add(p, v) ((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))

/* Full barrier: the store-load fence of rule 2. */
#define sp_fence_full() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define sp_fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define sp_fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Tell the CPU we are spinning (frees the sibling hyperthread). */
static inline void sp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* SP_ATOMIC_H */
