/*
 * sp_pool.c - the block pool (layout and invariants in sp_pool-t.h, API and
 * lock protocol in sp_pool.h).
 *
 * Algorithm.  Classic binary buddy system over min-block indices.  Free
 * blocks of order k sit on a doubly linked free list (links in the admin
 * region's per-block records), and free_mask has bit k set while that list
 * is not empty, so the smallest order that can serve a request is one
 * count-trailing-zeros away.  Allocation pops that block and splits it down,
 * pushing the upper halves on their lists: O(max_order).  A free merges the
 * block with its buddy (index XOR 2^k) while the buddy is a free head of
 * the same order, unlinking it in O(1): O(max_order).  Blocks in use are on
 * their owner's list (the same links), so sweeping a dead owner costs what
 * it held, and a double, foreign or misaimed free is recognised from the
 * block records before anything changes.
 *
 * Crash safety of the records.  Every change happens under the lock.  A
 * holder that dies part-way leaves the lists possibly half linked, but the
 * per-block records are written in an order that keeps them a valid
 * description on their own:
 *   - split:  the lower half's order is lowered BEFORE the upper half is
 *     made a head, so heads never overlap;
 *   - merge:  the upper buddy's head is cleared BEFORE the lower one's order
 *     is raised;
 *   - alloc:  the owner field is set BEFORE the state becomes USED.
 * A block caught between states is at worst FREE-but-unlisted, or a hole
 * with no head at all; both are free space.  pool_relink_locked() therefore
 * rebuilds every list and count from the USED heads alone and fills the
 * gaps with maximal free blocks (which also re-merges what a dead holder
 * left split).  That is what a waiter runs after taking the lock over from
 * a dead holder, and what sp_pool_check(repair) runs on a bad check.
 *
 * Nothing here reads or writes the data region.
 */
#include "sp_pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_mark.h"
#include "sp_seghdr.h"

#define NIL SP_POOL_NIL
#define BLK_COVERED 3 /* rebuild only: inside a block taken by rebuild_take */
#define LOCK_SPINS 64

/* Counters in the live area are written only under the lock (a relaxed
 * store of the holder's own read) and read without it by sp_pool_stats()
 * (relaxed loads, rule 4 of sp_atomic.h: statistics only). */
#define LADD(field, d) sp_store_relaxed(&(field), (field) + (d))
#define LSUB(field, d) sp_store_relaxed(&(field), (field) - (d))

/* ---- identities, cached per thread / per process ---- */

static _Thread_local sp_ident_t tl_thread;
static int32_t g_pid;
static uint64_t g_pid_start;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Runs in the child of fork() on the forking thread, the only thread of the
 * child: both caches now describe the parent. */
static void pool_atfork_child(void)
{
    tl_thread.pid = 0;
    tl_thread.start = 0;
    __atomic_store_n(&g_pid, 0, __ATOMIC_RELAXED);
}

static void pool_once(void)
{
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

sp_ident_t sp_pool_thread_self(void)
{
    if (tl_thread.pid == 0) {
        pthread_once(&g_once, pool_once);
        pid_t tid = gettid();
        tl_thread.start = sp_proc_starttime(tid);
        tl_thread.pid = tid;
    }
    return tl_thread;
}

sp_ident_t sp_pool_process_self(void)
{
    /* Relaxed: racing initialisers write identical values. */
    int32_t pid = __atomic_load_n(&g_pid, __ATOMIC_RELAXED);
    if (pid == 0) {
        pthread_once(&g_once, pool_once);
        pid = getpid();
        __atomic_store_n(&g_pid_start, sp_proc_starttime(pid),
                         __ATOMIC_RELAXED);
        __atomic_store_n(&g_pid, pid, __ATOMIC_RELEASE);
    }
    sp_ident_t id = {.pid = pid,
                     .start = __atomic_load_n(&g_pid_start, __ATOMIC_RELAXED)};
    return id;
}

/* ---- small helpers ---- */

static void plog(const sp_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void plog(const sp_pool_t *p, const char *fmt, ...)
{
    if (p->log == NULL)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    p->log(p->log_arg, buf);
}

static uint64_t align64(uint64_t v)
{
    return (v + SP_CACHELINE - 1) & ~(uint64_t)(SP_CACHELINE - 1);
}

int sp_pool_lock_held(const sp_pool_t *p)
{
    uint32_t w = sp_load_relaxed(&p->live->lock) & ~SP_POOL_LOCK_WAITERS;
    return w == (uint32_t)sp_pool_thread_self().pid;
}

#define ASSERT_LOCKED(p) assert(sp_pool_lock_held(p))

static int owner_in_use(const sp_pool_t *p, uint32_t o)
{
    return o < p->max_owners && sp_load_relaxed(&p->owners[o].pid) != 0;
}

/* ---- geometry ---- */

typedef struct pool_geom {
    uint64_t nblocks, meta_off, total;
} pool_geom_t;

static int pool_geometry(uint64_t data_size, unsigned min_shift,
                         unsigned max_order, unsigned max_owners,
                         pool_geom_t *g)
{
    if (min_shift < 4 || min_shift > 24 || max_order >= SP_POOL_ORDERS ||
        max_owners < 2 || max_owners > 65535)
        return SP_EINVAL;
    g->nblocks = data_size >> min_shift;
    if (g->nblocks == 0 || g->nblocks >= NIL)
        return SP_EINVAL;
    g->meta_off = align64(SP_POOL_OWNERS_OFF +
                          (uint64_t)max_owners * sizeof(sp_pool_owner_t));
    g->total = align64(g->meta_off + g->nblocks * sizeof(sp_pool_meta_t));
    return 0;
}

size_t sp_pool_admin_bytes(uint64_t data_size, unsigned min_shift,
                           unsigned max_order, unsigned max_owners)
{
    pool_geom_t g;
    if (pool_geometry(data_size, min_shift, max_order, max_owners, &g) < 0 ||
        g.total > SIZE_MAX)
        return 0;
    return (size_t)g.total;
}

static void pool_bind(sp_pool_t *p, void *admin, void *data)
{
    sp_pool_hdr_t *h = admin;
    memset(p, 0, sizeof(*p));
    p->hdr = h;
    p->live = (sp_pool_live_t *)((char *)admin + SP_POOL_LIVE_OFF);
    p->owners = (sp_pool_owner_t *)((char *)admin + h->owners_off);
    p->meta = (sp_pool_meta_t *)((char *)admin + h->meta_off);
    p->data = data;
    p->data_size = h->data_size;
    p->nblocks = h->nblocks;
    p->max_owners = h->max_owners;
    p->min_shift = h->min_shift;
    p->max_order = h->max_order;
    p->lock_timeout_ns = SP_POOL_LOCK_TIMEOUT_NS;
}

/* ---- lists (all under the lock) ---- */

static void free_push(sp_pool_t *p, uint32_t i, unsigned k)
{
    sp_pool_live_t *l = p->live;
    sp_pool_meta_t *m = &p->meta[i];
    m->prev = NIL;
    m->next = l->free_head[k];
    if (m->next != NIL)
        p->meta[m->next].prev = i;
    sp_store_relaxed(&l->free_head[k], i);
    sp_store_relaxed(&l->free_mask, l->free_mask | (1u << k));
    LADD(l->nfree[k], 1);
    LADD(l->free_units, (uint64_t)1 << k);
}

static void free_unlink(sp_pool_t *p, uint32_t i, unsigned k)
{
    sp_pool_live_t *l = p->live;
    sp_pool_meta_t *m = &p->meta[i];
    if (m->prev != NIL)
        p->meta[m->prev].next = m->next;
    else
        sp_store_relaxed(&l->free_head[k], m->next);
    if (m->next != NIL)
        p->meta[m->next].prev = m->prev;
    m->next = m->prev = NIL;
    if (l->free_head[k] == NIL)
        sp_store_relaxed(&l->free_mask, l->free_mask & ~(1u << k));
    LSUB(l->nfree[k], 1);
    LSUB(l->free_units, (uint64_t)1 << k);
}

static void owner_push(sp_pool_t *p, uint32_t o, uint32_t i)
{
    sp_pool_owner_t *r = &p->owners[o];
    sp_pool_meta_t *m = &p->meta[i];
    m->prev = NIL;
    m->next = r->head;
    if (m->next != NIL)
        p->meta[m->next].prev = i;
    r->head = i;
    LADD(r->nblocks, 1);
    LADD(r->nunits, (uint64_t)1 << m->order);
}

static void owner_unlink(sp_pool_t *p, uint32_t o, uint32_t i)
{
    sp_pool_owner_t *r = &p->owners[o];
    sp_pool_meta_t *m = &p->meta[i];
    if (m->prev != NIL)
        p->meta[m->prev].next = m->next;
    else
        r->head = m->next;
    if (m->next != NIL)
        p->meta[m->next].prev = m->prev;
    m->next = m->prev = NIL;
    LSUB(r->nblocks, 1);
    LSUB(r->nunits, (uint64_t)1 << m->order);
}

/* Cut [a, b) into maximal aligned free blocks. */
static void fill_gap(sp_pool_t *p, uint32_t a, uint32_t b)
{
    while (a < b) {
        unsigned k = p->max_order;
        while (k > 0 &&
               (((a & ((1u << k) - 1)) != 0) || (uint64_t)a + (1u << k) > b))
            k--;
        sp_pool_meta_t *m = &p->meta[a];
        m->state = SP_POOL_BLK_FREE;
        m->order = (uint8_t)k;
        m->owner = 0;
        free_push(p, a, k);
        a += 1u << k;
    }
}

/* Rebuild every list and count from the USED heads (see the top).  Returns
 * the number of records that had to be dropped or corrected. */
static int pool_relink_locked(sp_pool_t *p, int count_repair)
{
    sp_pool_live_t *l = p->live;
    uint32_t n = p->nblocks;
    int dropped = 0;
    for (unsigned k = 0; k < SP_POOL_ORDERS; k++) {
        sp_store_relaxed(&l->free_head[k], NIL);
        sp_store_relaxed(&l->nfree[k], 0);
        sp_store_relaxed(&l->nused[k], 0);
    }
    sp_store_relaxed(&l->free_mask, 0);
    sp_store_relaxed(&l->free_units, 0);
    uint32_t owners_used = 0;
    for (uint32_t o = 0; o < p->max_owners; o++) {
        p->owners[o].head = NIL;
        sp_store_relaxed(&p->owners[o].nblocks, 0);
        sp_store_relaxed(&p->owners[o].nunits, 0);
        owners_used += p->owners[o].pid != 0;
    }
    sp_store_relaxed(&l->owners_used, owners_used);
    /* Pass 1: accept USED heads in address order; clear everything else
     * (interiors, stale FREE heads, heads of vanished owners). */
    uint32_t i = 0;
    while (i < n) {
        sp_pool_meta_t *m = &p->meta[i];
        unsigned k = m->order;
        if (m->state == SP_POOL_BLK_USED && k <= p->max_order &&
            (i & ((1u << k) - 1)) == 0 && (uint64_t)i + (1u << k) <= n &&
            owner_in_use(p, m->owner)) {
            for (uint32_t j = i + 1; j < i + (1u << k); j++) {
                if (p->meta[j].state == SP_POOL_BLK_USED)
                    dropped++;
                memset(&p->meta[j], 0, sizeof(p->meta[j]));
            }
            owner_push(p, m->owner, i);
            LADD(l->nused[k], 1);
            i += 1u << k;
            continue;
        }
        if (m->state == SP_POOL_BLK_USED || m->state > SP_POOL_BLK_USED)
            dropped++;
        uint32_t seq = m->seq;
        memset(m, 0, sizeof(*m));
        m->seq = seq;
        i++;
    }
    /* Pass 2: the gaps between USED blocks become maximal free blocks. */
    i = 0;
    while (i < n) {
        if (p->meta[i].state == SP_POOL_BLK_USED) {
            i += 1u << p->meta[i].order;
            continue;
        }
        uint32_t a = i;
        while (i < n && p->meta[i].state != SP_POOL_BLK_USED)
            i++;
        fill_gap(p, a, i);
    }
    if (count_repair)
        LADD(l->repairs, 1);
    return dropped;
}

/* ---- format / attach ---- */

static void pool_hdr_fill(sp_pool_hdr_t *h, const pool_geom_t *g,
                          unsigned min_shift, unsigned max_order,
                          unsigned max_owners)
{
    h->data_size = g->nblocks << min_shift;
    h->nblocks = (uint32_t)g->nblocks;
    h->min_shift = (uint8_t)min_shift;
    h->max_order = (uint8_t)max_order;
    h->max_owners = (uint16_t)max_owners;
    h->owners_off = SP_POOL_OWNERS_OFF;
    h->meta_off = g->meta_off;
    memset(h->pad, 0, sizeof(h->pad));
}

int sp_pool_restamp(void *admin, size_t admin_size, uint64_t data_size,
                    unsigned min_shift, unsigned max_order, unsigned max_owners,
                    uint64_t generation)
{
    pool_geom_t g;
    if (generation == 0 ||
        pool_geometry(data_size, min_shift, max_order, max_owners, &g) < 0 ||
        g.total > admin_size)
        return SP_EINVAL;
    sp_pool_hdr_t *h = admin;
    memset(h, 0, sizeof(*h));
    pool_hdr_fill(h, &g, min_shift, max_order, max_owners);
    sp_seghdr_stamp(&h->seg, SP_MAGIC_POOL, SP_POOL_VERSION,
                    sizeof(sp_pool_hdr_t), g.total, generation);
    return 0;
}

int sp_pool_format(sp_pool_t *p, void *admin, size_t admin_size, void *data,
                   uint64_t data_size, unsigned min_shift, unsigned max_order,
                   unsigned max_owners, uint64_t generation)
{
    pool_geom_t g;
    memset(p, 0, sizeof(*p));
    if (generation == 0 || ((uintptr_t)admin & (SP_CACHELINE - 1)) != 0 ||
        pool_geometry(data_size, min_shift, max_order, max_owners, &g) < 0 ||
        g.total > admin_size)
        return SP_EINVAL;
    memset(admin, 0, (size_t)g.total);
    sp_pool_hdr_t *h = admin;
    pool_hdr_fill(h, &g, min_shift, max_order, max_owners);
    pool_bind(p, admin, data);
    sp_pool_owner_t *sh = &p->owners[SP_POOL_SHARED];
    sh->flags = SP_POOL_OWNF_PERSISTENT;
    sh->pid = SP_POOL_PID_SHARED;
    p->live->owners_used = 1;
    for (uint32_t o = 0; o < max_owners; o++)
        p->owners[o].head = NIL;
    for (unsigned k = 0; k < SP_POOL_ORDERS; k++)
        p->live->free_head[k] = NIL;
    fill_gap(p, 0, p->nblocks);
    /* The stamp goes last: the header checksum makes it the commit point. */
    sp_seghdr_stamp(&h->seg, SP_MAGIC_POOL, SP_POOL_VERSION,
                    sizeof(sp_pool_hdr_t), g.total, generation);
    sp_fence_release();
    return 0;
}

int sp_pool_attach(sp_pool_t *p, void *admin, size_t admin_size, void *data,
                   uint64_t data_size)
{
    memset(p, 0, sizeof(*p));
    const sp_pool_hdr_t *h = admin;
    int rc = sp_seghdr_check(&h->seg, admin_size, SP_MAGIC_POOL,
                             SP_POOL_VERSION, sizeof(sp_pool_hdr_t), 0);
    if (rc < 0)
        return rc;
    pool_geom_t g;
    if (pool_geometry(h->data_size, h->min_shift, h->max_order, h->max_owners,
                      &g) < 0 ||
        g.nblocks != h->nblocks ||
        (g.nblocks << h->min_shift) != h->data_size ||
        h->data_size > data_size || g.total != h->seg.total_size ||
        g.meta_off != h->meta_off || h->owners_off != SP_POOL_OWNERS_OFF)
        return SP_EINVAL;
    pool_bind(p, admin, data);
    return 0;
}

void sp_pool_set_log(sp_pool_t *p, sp_pool_log_fn fn, void *arg)
{
    p->log = fn;
    p->log_arg = arg;
}

void sp_pool_set_repair(sp_pool_t *p, sp_pool_repair_fn fn, void *arg)
{
    p->repair = fn;
    p->repair_arg = arg;
}

/* ---- the lock ---- */

/* The holder recorded in w looks dead: take the lock over if the word is
 * still w.  Returns 1 if we now hold it. */
static int lock_try_steal(sp_pool_t *p, uint32_t w, uint32_t mine)
{
    uint32_t *word = &p->live->lock;
    /* Relaxed: see the ordering note in sp_pool.h; the start time read
     * after an acquire load of the word is 0 or the holder's own. */
    sp_ident_t holder = {.pid = (int32_t)(w & ~SP_POOL_LOCK_WAITERS),
                         .start = sp_load_relaxed(&p->live->lock_start)};
    if (sp_load_acquire(word) != w)
        return 0;
    if (holder.pid == sp_pool_thread_self().pid) {
        /* Our own tid in the word: a dead process that had our tid held
         * it, unless the start time is ours (then it is a recursion bug,
         * caught by the caller). */
        if (holder.start == sp_pool_thread_self().start)
            return 0;
    } else if (sp_ident_alive(&holder)) {
        return 0;
    }
    uint32_t expected = w;
    return sp_cas(word, &expected, mine);
}

static int check_locked(sp_pool_t *p);

/* We took the lock from a dead holder: rebuild what it may have left half
 * changed, verify the result, then let the owner of the pool repair its
 * own structures. */
static void lock_taken_over(sp_pool_t *p, uint32_t w)
{
    LADD(p->live->lock_steals, 1);
    int dropped = pool_relink_locked(p, 1);
    int problems = check_locked(p);
    plog(p,
         "SPP0001: block pool lock taken over from dead thread %u; "
         "lists rebuilt from the block records (%d records dropped, "
         "check: %d problems)",
         (unsigned)(w & ~SP_POOL_LOCK_WAITERS), dropped, problems);
    if (p->repair != NULL)
        p->repair(p->repair_arg, p);
}

int sp_pool_lock(sp_pool_t *p, int64_t deadline_ns)
{
    sp_ident_t me = sp_pool_thread_self();
    uint32_t mine = (uint32_t)me.pid;
    uint32_t *word = &p->live->lock;
    uint32_t w = 0;
    int stolen = 0;
    if (sp_cas(word, &w, mine))
        goto got;
    if ((w & ~SP_POOL_LOCK_WAITERS) == mine &&
        sp_load_relaxed(&p->live->lock_start) == me.start)
        return SP_ESTATE; /* recursive locking: a bug in the caller */
    for (int i = 0; i < LOCK_SPINS; i++) {
        sp_cpu_relax();
        /* Relaxed: a hint; the CAS decides. */
        if (sp_load_relaxed(word) == 0) {
            w = 0;
            if (sp_cas(word, &w, mine))
                goto got;
        }
    }
    for (;;) {
        w = sp_load_acquire(word);
        if (w == 0) {
            /* Keep the bit: other waiters may sleep (see sp_pool.h). */
            if (sp_cas(word, &w, mine | SP_POOL_LOCK_WAITERS))
                goto got;
            continue;
        }
        if (!(w & SP_POOL_LOCK_WAITERS)) {
            /* Declare ourselves; pairs with the XCHG in sp_pool_unlock(). */
            if (!sp_cas(word, &w, w | SP_POOL_LOCK_WAITERS))
                continue;
            w |= SP_POOL_LOCK_WAITERS;
        }
        int64_t now = sp_now_ns();
        if (now >= deadline_ns) {
            if (lock_try_steal(p, w, mine | SP_POOL_LOCK_WAITERS)) {
                stolen = 1;
                goto got;
            }
            return deadline_ns == 0 ? SP_EAGAIN : SP_ETIMEDOUT;
        }
        int64_t until = deadline_ns;
        if (until - now > SP_POOL_LIVENESS_NS)
            until = now + SP_POOL_LIVENESS_NS;
        if (sp_futex_wait(word, w, until) == SP_ETIMEDOUT &&
            lock_try_steal(p, w, mine | SP_POOL_LOCK_WAITERS)) {
            stolen = 1;
            goto got;
        }
    }
got:
    sp_store_relaxed(&p->live->lock_start, me.start);
    if (stolen)
        lock_taken_over(p, w);
    return 0;
}

void sp_pool_unlock(sp_pool_t *p)
{
    ASSERT_LOCKED(p);
    sp_store_relaxed(&p->live->lock_start, 0);
    /* Pairs with the waiter's CAS that set the WAITERS bit. */
    uint32_t old = sp_xchg(&p->live->lock, 0);
    if (old & SP_POOL_LOCK_WAITERS)
        sp_futex_wake(&p->live->lock, 1);
}

int sp_pool_lock_bounded(sp_pool_t *p)
{
    uint32_t w = 0;
    sp_ident_t me = sp_pool_thread_self();
    if (sp_cas(&p->live->lock, &w, (uint32_t)me.pid)) {
        sp_store_relaxed(&p->live->lock_start, me.start);
        return 0;
    }
    return sp_pool_lock(p, sp_now_ns() + p->lock_timeout_ns);
}

/* ---- owners ---- */

int sp_pool_self_owner_locked(sp_pool_t *p, uint32_t *owner)
{
    ASSERT_LOCKED(p);
    sp_ident_t me = sp_pool_process_self();
    if (p->self_pid == me.pid && p->owners[p->self_owner].pid == me.pid) {
        *owner = p->self_owner;
        return 0;
    }
    uint32_t found = NIL, first_free = NIL;
    for (uint32_t o = 1; o < p->max_owners; o++) {
        int32_t pid = p->owners[o].pid;
        if (pid == me.pid && p->owners[o].start == me.start) {
            found = o; /* another handle of this process registered */
            break;
        }
        if (pid == 0 && first_free == NIL)
            first_free = o;
    }
    if (found == NIL) {
        if (first_free == NIL)
            return SP_ENOSPC;
        found = first_free;
        sp_pool_owner_t *r = &p->owners[found];
        r->flags = 0;
        r->head = NIL;
        sp_store_relaxed(&r->nblocks, 0);
        sp_store_relaxed(&r->nunits, 0);
        /* Start before pid: a reaper that sees the pid sees its start. */
        sp_store_relaxed(&r->start, me.start);
        sp_store_release(&r->pid, me.pid);
        LADD(p->live->owners_used, 1);
    }
    p->self_pid = me.pid;
    p->self_owner = found;
    *owner = found;
    return 0;
}

int sp_pool_self_owner(sp_pool_t *p, uint32_t *owner)
{
    sp_ident_t me = sp_pool_process_self();
    if (p->self_pid == me.pid &&
        sp_load_relaxed(&p->owners[p->self_owner].pid) == me.pid) {
        *owner = p->self_owner;
        return 0;
    }
    for (int attempt = 0;; attempt++) {
        int rc = sp_pool_lock_bounded(p);
        if (rc < 0)
            return rc;
        rc = sp_pool_self_owner_locked(p, owner);
        sp_pool_unlock(p);
        if (rc != SP_ENOSPC || attempt > 0)
            return rc;
        if (sp_pool_reap(p) < 0)
            return rc;
    }
}

/* ---- blocks ---- */

static int size_order(const sp_pool_t *p, size_t size, unsigned *order)
{
    if (size == 0)
        return SP_EINVAL;
    unsigned k = 0;
    while (k <= p->max_order && ((uint64_t)1 << (p->min_shift + k)) < size)
        k++;
    if (k > p->max_order)
        return SP_EMSGSIZE;
    *order = k;
    return 0;
}

uint64_t sp_pool_block_bytes(const sp_pool_t *p, size_t size)
{
    unsigned k;
    if (size_order(p, size, &k) < 0)
        return 0;
    return (uint64_t)1 << (p->min_shift + k);
}

static int alloc_order_locked(sp_pool_t *p, unsigned order, uint32_t owner,
                              uint64_t *off)
{
    sp_pool_live_t *l = p->live;
    uint32_t mask = l->free_mask >> order;
    if (mask == 0)
        return SP_ENOSPC;
    unsigned k = order + (unsigned)__builtin_ctz(mask);
    uint32_t i = l->free_head[k];
    free_unlink(p, i, k);
    while (k > order) {
        k--;
        uint32_t b = i + (1u << k);
        /* Lower half first, then the new head (see the top). */
        p->meta[i].order = (uint8_t)k;
        sp_pool_meta_t *mb = &p->meta[b];
        mb->order = (uint8_t)k;
        mb->owner = 0;
        mb->state = SP_POOL_BLK_FREE;
        free_push(p, b, k);
    }
    sp_pool_meta_t *m = &p->meta[i];
    m->owner = (uint16_t)owner;
    m->seq++;
    m->state = SP_POOL_BLK_USED;
    owner_push(p, owner, i);
    LADD(l->nused[order], 1);
    LADD(l->allocs, 1);
    *off = (uint64_t)i << p->min_shift;
    return 0;
}

int sp_pool_alloc_locked(sp_pool_t *p, size_t size, uint32_t owner,
                         uint64_t *off)
{
    ASSERT_LOCKED(p);
    unsigned k;
    int rc = size_order(p, size, &k);
    if (rc < 0)
        return rc;
    if (!owner_in_use(p, owner))
        return SP_EINVAL;
    rc = alloc_order_locked(p, k, owner, off);
    if (rc == SP_ENOSPC)
        LADD(p->live->failed_allocs, 1);
    return rc;
}

int sp_pool_alloc(sp_pool_t *p, size_t size, uint64_t *off)
{
    unsigned k;
    uint32_t owner;
    int rc = size_order(p, size, &k);
    if (rc < 0)
        return rc;
    if ((rc = sp_pool_self_owner(p, &owner)) < 0)
        return rc;
    if ((rc = sp_pool_lock_bounded(p)) < 0)
        return rc;
    rc = alloc_order_locked(p, k, owner, off);
    if (rc == SP_ENOSPC) {
        /* Dead owners may hold what we need: sweep them, try once more. */
        sp_pool_unlock(p);
        int reaped = sp_pool_reap(p);
        if ((rc = sp_pool_lock_bounded(p)) < 0)
            return rc;
        rc = reaped > 0 ? alloc_order_locked(p, k, owner, off) : SP_ENOSPC;
        if (rc == SP_ENOSPC)
            LADD(p->live->failed_allocs, 1);
    }
    sp_pool_unlock(p);
    return rc;
}

/* Find the USED head at off held by owner (NIL: any owner).  Counts and
 * reports refusals. */
static int block_lookup(sp_pool_t *p, uint64_t off, uint32_t owner,
                        uint32_t *idx)
{
    uint64_t i = off >> p->min_shift;
    int rc = 0;
    if ((off & (((uint64_t)1 << p->min_shift) - 1)) != 0 || i >= p->nblocks) {
        rc = SP_EINVAL;
    } else {
        const sp_pool_meta_t *m = &p->meta[i];
        if (m->state == SP_POOL_BLK_FREE)
            rc = SP_ESTATE; /* double free */
        else if (m->state != SP_POOL_BLK_USED ||
                 (i & ((1u << m->order) - 1)) != 0)
            rc = SP_EINVAL; /* inside a block, not at its head */
        else if (owner != NIL && m->owner != owner)
            rc = SP_ESTATE; /* someone else's */
    }
    if (rc < 0) {
        LADD(p->live->bad_frees, 1);
        return rc;
    }
    *idx = (uint32_t)i;
    return 0;
}

static void free_index_locked(sp_pool_t *p, uint32_t i)
{
    sp_pool_live_t *l = p->live;
    sp_pool_meta_t *m = &p->meta[i];
    unsigned k = m->order;
    owner_unlink(p, m->owner, i);
    LSUB(l->nused[k], 1);
    LADD(l->frees, 1);
    m->state = SP_POOL_BLK_FREE;
    m->owner = 0;
    while (k < p->max_order) {
        uint32_t b = i ^ (1u << k);
        if ((uint64_t)b + (1u << k) > p->nblocks)
            break;
        sp_pool_meta_t *mb = &p->meta[b];
        if (mb->state != SP_POOL_BLK_FREE || mb->order != k)
            break;
        free_unlink(p, b, k);
        uint32_t lo = i < b ? i : b, hi = i < b ? b : i;
        /* Upper head cleared first, then the lower one grows (see top). */
        uint32_t seq = p->meta[hi].seq;
        memset(&p->meta[hi], 0, sizeof(p->meta[hi]));
        p->meta[hi].seq = seq;
        p->meta[lo].state = SP_POOL_BLK_FREE;
        p->meta[lo].order = (uint8_t)(k + 1);
        p->meta[lo].owner = 0;
        i = lo;
        k++;
    }
    free_push(p, i, k);
}

int sp_pool_free_locked(sp_pool_t *p, uint64_t off, uint32_t owner)
{
    ASSERT_LOCKED(p);
    uint32_t i;
    int rc = block_lookup(p, off, owner, &i);
    if (rc < 0)
        return rc;
    free_index_locked(p, i);
    return 0;
}

int sp_pool_give_locked(sp_pool_t *p, uint64_t off, uint32_t from, uint32_t to)
{
    ASSERT_LOCKED(p);
    uint32_t i;
    if (!owner_in_use(p, to))
        return SP_EINVAL;
    int rc = block_lookup(p, off, from, &i);
    if (rc < 0)
        return rc;
    owner_unlink(p, from, i);
    p->meta[i].owner = (uint16_t)to;
    owner_push(p, to, i);
    if (to == SP_POOL_SHARED)
        LADD(p->live->shares, 1);
    return 0;
}

static int pool_free_as(sp_pool_t *p, uint64_t off, int shared)
{
    uint32_t owner = SP_POOL_SHARED;
    int rc;
    if (!shared && (rc = sp_pool_self_owner(p, &owner)) < 0)
        return rc;
    if ((rc = sp_pool_lock_bounded(p)) < 0)
        return rc;
    rc = sp_pool_free_locked(p, off, owner);
    sp_pool_unlock(p);
    return rc;
}

int sp_pool_free(sp_pool_t *p, uint64_t off)
{
    return pool_free_as(p, off, 0);
}

int sp_pool_free_shared(sp_pool_t *p, uint64_t off)
{
    return pool_free_as(p, off, 1);
}

int sp_pool_share(sp_pool_t *p, uint64_t off)
{
    uint32_t owner;
    int rc = sp_pool_self_owner(p, &owner);
    if (rc < 0)
        return rc;
    if ((rc = sp_pool_lock_bounded(p)) < 0)
        return rc;
    rc = sp_pool_give_locked(p, off, owner, SP_POOL_SHARED);
    sp_pool_unlock(p);
    return rc;
}

int sp_pool_block_locked(const sp_pool_t *p, uint64_t off, unsigned *state,
                         unsigned *order, uint32_t *owner)
{
    uint64_t i = off >> p->min_shift;
    if ((off & (((uint64_t)1 << p->min_shift) - 1)) != 0 || i >= p->nblocks)
        return SP_EINVAL;
    const sp_pool_meta_t *m = &p->meta[i];
    if (m->state != SP_POOL_BLK_FREE && m->state != SP_POOL_BLK_USED)
        return SP_EINVAL;
    *state = m->state;
    *order = m->order;
    *owner = m->owner;
    return 0;
}

/* ---- owners that died ---- */

/* Free every block of record o and the record itself. */
static int reap_owner_locked(sp_pool_t *p, uint32_t o)
{
    sp_pool_owner_t *r = &p->owners[o];
    int freed = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint32_t i = r->head, steps = 0;
        while (i != NIL && i < p->nblocks && steps++ <= p->nblocks) {
            uint32_t next = p->meta[i].next;
            if (p->meta[i].state != SP_POOL_BLK_USED || p->meta[i].owner != o)
                break;
            free_index_locked(p, i);
            freed++;
            i = next;
        }
        if (r->head == NIL && r->nblocks == 0)
            break;
        /* The list was damaged: rebuild all lists, then walk again. */
        pool_relink_locked(p, 1);
    }
    LADD(p->live->reaped_blocks, (uint64_t)freed);
    LADD(p->live->reaped_owners, 1);
    LSUB(p->live->owners_used, 1);
    r->head = NIL;
    sp_store_relaxed(&r->start, 0);
    sp_store_release(&r->pid, 0);
    return freed;
}

int sp_pool_reap(sp_pool_t *p)
{
    int freed = 0;
    for (uint32_t o = 1; o < p->max_owners; o++) {
        /* Pairs with the release store of pid in registration: the start
         * read after it is the registrant's. */
        int32_t pid = sp_load_acquire(&p->owners[o].pid);
        if (pid <= 0)
            continue;
        sp_ident_t id = {.pid = pid,
                         .start = sp_load_relaxed(&p->owners[o].start)};
        if (sp_ident_alive(&id))
            continue;
        int rc = sp_pool_lock_bounded(p);
        if (rc < 0)
            return rc;
        if (p->owners[o].pid == pid && p->owners[o].start == id.start) {
            int n = reap_owner_locked(p, o);
            if (n > 0)
                plog(p, "SPP0002: swept %d block(s) of dead process %d", n,
                     (int)pid);
            freed += n;
        }
        sp_pool_unlock(p);
    }
    return freed;
}

/* ---- shared blocks ---- */

long sp_pool_sweep_shared_locked(sp_pool_t *p, sp_pool_keep_fn keep, void *arg)
{
    ASSERT_LOCKED(p);
    long freed = 0;
    uint32_t i = p->owners[SP_POOL_SHARED].head, steps = 0;
    while (i != NIL && i < p->nblocks && steps++ <= p->nblocks) {
        uint32_t next = p->meta[i].next;
        if (!keep(arg, (uint64_t)i << p->min_shift, p->meta[i].order)) {
            free_index_locked(p, i);
            freed++;
        }
        i = next;
    }
    return freed;
}

/* ---- rebuild from an outside description ---- */

void sp_pool_rebuild_begin(sp_pool_t *p)
{
    memset(p->meta, 0, (size_t)p->nblocks * sizeof(sp_pool_meta_t));
    for (uint32_t o = 0; o < p->max_owners; o++) {
        sp_pool_owner_t *r = &p->owners[o];
        if (o != SP_POOL_SHARED)
            memset(r, 0, sizeof(*r));
        r->head = NIL;
        r->nblocks = r->nunits = 0;
    }
    p->owners[SP_POOL_SHARED].pid = SP_POOL_PID_SHARED;
    p->owners[SP_POOL_SHARED].flags = SP_POOL_OWNF_PERSISTENT;
    p->live->owners_used = 1;
    p->live->lock = 0;
    p->live->lock_start = 0;
    p->self_pid = 0;
}

int sp_pool_rebuild_take(sp_pool_t *p, uint64_t off, unsigned order)
{
    uint64_t i = off >> p->min_shift;
    if (order > p->max_order ||
        (off & (((uint64_t)1 << (p->min_shift + order)) - 1)) != 0 ||
        i + ((uint64_t)1 << order) > p->nblocks)
        return SP_EINVAL;
    for (uint64_t j = i; j < i + ((uint64_t)1 << order); j++)
        if (p->meta[j].state != SP_POOL_BLK_NONE)
            return SP_EINVAL;
    for (uint64_t j = i + 1; j < i + ((uint64_t)1 << order); j++)
        p->meta[j].state = BLK_COVERED;
    p->meta[i].state = SP_POOL_BLK_USED;
    p->meta[i].order = (uint8_t)order;
    p->meta[i].owner = SP_POOL_SHARED;
    return 0;
}

void sp_pool_rebuild_end(sp_pool_t *p)
{
    /* Relinking clears the COVERED interiors and fills the gaps. */
    pool_relink_locked(p, 0);
}

/* ---- consistency check ---- */

#define PROBLEM(...)                                                           \
    do {                                                                       \
        if (problems++ < 5)                                                    \
            plog(p, __VA_ARGS__);                                              \
    } while (0)

static int check_locked(sp_pool_t *p)
{
    const sp_pool_live_t *l = p->live;
    uint32_t n = p->nblocks;
    uint32_t cnt_free[SP_POOL_ORDERS] = {0}, cnt_used[SP_POOL_ORDERS] = {0};
    uint64_t free_units = 0, total_used = 0;
    int problems = 0;

    /* 1. The heads tile [0, n). */
    uint32_t i = 0;
    while (i < n) {
        const sp_pool_meta_t *m = &p->meta[i];
        unsigned k = m->order;
        if ((m->state != SP_POOL_BLK_FREE && m->state != SP_POOL_BLK_USED) ||
            k > p->max_order || (i & ((1u << k) - 1)) != 0 ||
            (uint64_t)i + (1u << k) > n) {
            PROBLEM("SPP0003: pool check: no valid block head at min-block "
                    "%u (state %u order %u)",
                    i, m->state, k);
            i++;
            continue;
        }
        for (uint32_t j = i + 1; j < i + (1u << k); j++) {
            if (p->meta[j].state != SP_POOL_BLK_NONE) {
                PROBLEM("SPP0004: pool check: head at %u inside the block "
                        "at %u",
                        j, i);
                break;
            }
        }
        if (m->state == SP_POOL_BLK_FREE) {
            cnt_free[k]++;
            free_units += 1u << k;
            uint32_t b = i ^ (1u << k);
            if (k < p->max_order && (uint64_t)b + (1u << k) <= n &&
                p->meta[b].state == SP_POOL_BLK_FREE && p->meta[b].order == k)
                PROBLEM("SPP0005: pool check: free buddies %u and %u of "
                        "order %u not merged",
                        i, b, k);
        } else {
            cnt_used[k]++;
            if (!owner_in_use(p, m->owner))
                PROBLEM("SPP0006: pool check: block %u held by unused owner "
                        "record %u",
                        i, m->owner);
        }
        i += 1u << k;
    }
    /* 2. Free lists. */
    for (unsigned k = 0; k < SP_POOL_ORDERS; k++) {
        uint32_t x = l->free_head[k], prev = NIL, count = 0;
        while (x != NIL) {
            if (x >= n || count > n) {
                PROBLEM("SPP0007: pool check: free list %u broken", k);
                break;
            }
            const sp_pool_meta_t *m = &p->meta[x];
            if (m->state != SP_POOL_BLK_FREE || m->order != k ||
                m->prev != prev) {
                PROBLEM("SPP0008: pool check: bad node %u on free list %u", x,
                        k);
                break;
            }
            prev = x;
            x = m->next;
            count++;
        }
        if (count != cnt_free[k] || count != l->nfree[k] ||
            ((l->free_mask >> k) & 1u) != (count != 0))
            PROBLEM("SPP0009: pool check: order %u: %u free blocks, list %u, "
                    "count %u",
                    k, cnt_free[k], count, l->nfree[k]);
        if (l->nused[k] != cnt_used[k])
            PROBLEM("SPP0010: pool check: order %u: %u used blocks, count %u",
                    k, cnt_used[k], l->nused[k]);
    }
    if (free_units != l->free_units)
        PROBLEM("SPP0011: pool check: %llu free min-blocks, count %llu",
                (unsigned long long)free_units,
                (unsigned long long)l->free_units);
    /* 3. Owner lists: each a proper list of that owner's USED heads; with
     * the total equal to the number of USED heads, every one is listed. */
    uint32_t owners_used = 0;
    for (uint32_t o = 0; o < p->max_owners; o++) {
        const sp_pool_owner_t *r = &p->owners[o];
        if (r->pid == 0) {
            if (r->head != NIL)
                PROBLEM("SPP0012: pool check: free owner record %u has "
                        "blocks",
                        o);
            continue;
        }
        owners_used++;
        uint32_t x = r->head, prev = NIL;
        uint64_t count = 0, units = 0;
        while (x != NIL) {
            if (x >= n || count > n) {
                PROBLEM("SPP0013: pool check: owner %u list broken", o);
                break;
            }
            const sp_pool_meta_t *m = &p->meta[x];
            if (m->state != SP_POOL_BLK_USED || m->owner != o ||
                m->prev != prev) {
                PROBLEM("SPP0014: pool check: bad node %u on owner %u list", x,
                        o);
                break;
            }
            units += 1u << m->order;
            prev = x;
            x = m->next;
            count++;
        }
        if (count != r->nblocks || units != r->nunits)
            PROBLEM("SPP0015: pool check: owner %u holds %llu blocks, "
                    "count %llu",
                    o, (unsigned long long)count,
                    (unsigned long long)r->nblocks);
        total_used += count;
    }
    uint64_t heads_used = 0;
    for (unsigned k = 0; k < SP_POOL_ORDERS; k++)
        heads_used += cnt_used[k];
    if (total_used != heads_used)
        PROBLEM("SPP0016: pool check: %llu used blocks, %llu on owner lists",
                (unsigned long long)heads_used, (unsigned long long)total_used);
    if (owners_used != l->owners_used)
        PROBLEM("SPP0017: pool check: %u owner records in use, count %u",
                owners_used, l->owners_used);
    return problems;
}

int sp_pool_check(sp_pool_t *p, int repair)
{
    int rc = sp_pool_lock_bounded(p);
    if (rc < 0)
        return rc;
    LADD(p->live->checks, 1);
    int problems = check_locked(p);
    if (problems > 0 && repair) {
        int dropped = pool_relink_locked(p, 1);
        plog(p,
             "SPP0018: block pool repaired: %d problem(s), lists rebuilt "
             "from the block records (%d records dropped)",
             problems, dropped);
    }
    sp_pool_unlock(p);
    return problems;
}

/* ---- statistics ---- */

void sp_pool_stats(const sp_pool_t *p, sp_pool_stats_t *st)
{
    const sp_pool_live_t *l = p->live;
    memset(st, 0, sizeof(*st));
    st->data_bytes = p->data_size;
    st->min_block = (uint64_t)1 << p->min_shift;
    st->max_block = (uint64_t)1 << (p->min_shift + p->max_order);
    st->norders = p->max_order + 1;
    uint64_t used_units = 0;
    /* Relaxed loads: statistics (the figures may be from slightly
     * different moments). */
    for (unsigned k = 0; k < st->norders; k++) {
        st->nused[k] = sp_load_relaxed(&l->nused[k]);
        st->nfree[k] = sp_load_relaxed(&l->nfree[k]);
        used_units += (uint64_t)st->nused[k] << k;
    }
    st->free_bytes = sp_load_relaxed(&l->free_units) << p->min_shift;
    st->used_bytes = used_units << p->min_shift;
    uint32_t mask = sp_load_relaxed(&l->free_mask);
    if (mask != 0)
        st->largest_free = (uint64_t)1
                           << (p->min_shift + 31 - __builtin_clz(mask));
    if (st->free_bytes > 0 && st->largest_free <= st->free_bytes)
        st->frag_permille =
            (uint32_t)(1000 - st->largest_free * 1000 / st->free_bytes);
    st->owners = sp_load_relaxed(&l->owners_used);
    st->allocs = sp_load_relaxed(&l->allocs);
    st->frees = sp_load_relaxed(&l->frees);
    st->failed_allocs = sp_load_relaxed(&l->failed_allocs);
    st->bad_frees = sp_load_relaxed(&l->bad_frees);
    st->reaped_blocks = sp_load_relaxed(&l->reaped_blocks);
    st->reaped_owners = sp_load_relaxed(&l->reaped_owners);
    st->shares = sp_load_relaxed(&l->shares);
    st->lock_steals = sp_load_relaxed(&l->lock_steals);
    st->repairs = sp_load_relaxed(&l->repairs);
}
