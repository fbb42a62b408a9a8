/*
 * sp_slots.c - the slot table (layout in sp_slots-t.h, protocol in
 * sp_slots.h).
 *
 * Ownership word.  owner_pid is the lock of a slot: 0 = free, a pid = held,
 * SP_SLOT_RECLAIMING (-1) = being reset by a reaper.  It changes only by
 * CAS (claim 0 -> pid, reclaim pid -> -1) or by a release store back to 0
 * from whoever holds it, after the state went back to FREE.  The owner's
 * start time is written after the claiming CAS and zeroed before the
 * releasing store, so a reaper that reads a fresh pid sees either 0 (it
 * then checks the pid alone: alive) or the right start time, never a dead
 * predecessor's (it would wrongly reclaim a live owner).
 *
 * Ready bitmap and doorbell.  sp_slots_notify(): fetch_or(bit), full fence,
 * read proxy_waiting.  sp_slots_proxy_idle(): store proxy_waiting, full
 * fence, scan the bitmap.  One of the two sees the other (rule 2 of
 * sp_atomic.h), so a ready slot is never left while the proxy sleeps.
 */
#include "sp_slots.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_mark.h"
#include "sp_seghdr.h"

#define SP_SLOT_RECLAIMING (-1)
#define SLOT_HDR_BYTES ((uint64_t)sizeof(sp_slot_t))

static uint64_t align64(uint64_t v)
{
    return (v + SP_CACHELINE - 1) & ~(uint64_t)(SP_CACHELINE - 1);
}

typedef struct slots_geom {
    uint64_t ring_bytes, slot_size, bitmap_off, bitmap_words, slots_off,
        total;
} slots_geom_t;

static int slots_geometry(uint32_t nslots, uint32_t nseg, uint32_t seg_size,
                          slots_geom_t *g)
{
    size_t rb = sp_ring_bytes(nseg, seg_size);
    if (rb == 0 || nslots == 0 || nslots > (1u << 24))
        return SP_EINVAL;
    g->ring_bytes = align64(rb);
    g->slot_size = SLOT_HDR_BYTES + 2 * g->ring_bytes;
    g->bitmap_off = sizeof(sp_slots_hdr_t) + sizeof(sp_slots_live_t);
    g->bitmap_words = (nslots + 63) / 64;
    g->slots_off = align64(g->bitmap_off + g->bitmap_words * 8);
    g->total = g->slots_off + (uint64_t)nslots * g->slot_size;
    return 0;
}

size_t sp_slots_bytes(uint32_t nregular, uint32_t noverflow, uint32_t nseg,
                      uint32_t seg_size)
{
    slots_geom_t g;
    if ((uint64_t)nregular + noverflow > UINT32_MAX ||
        slots_geometry(nregular + noverflow, nseg, seg_size, &g) < 0)
        return 0;
    return (size_t)g.total;
}

static void slots_bind(sp_slots_t *t, void *mem, size_t size)
{
    sp_slots_hdr_t *h = mem;
    t->hdr = h;
    t->live = (sp_slots_live_t *)((char *)mem + sizeof(*h));
    t->bitmap = (uint64_t *)((char *)mem + h->bitmap_off);
    t->base = mem;
    t->size = size;
    t->nslots = h->nslots;
    t->nregular = h->nregular;
    t->slot_size = h->slot_size;
    t->ring_bytes = h->ring_bytes;
    t->generation = h->seg.generation;
}

int sp_slots_create(sp_slots_t *t, void *mem, size_t size, uint32_t nregular,
                    uint32_t noverflow, uint32_t nseg, uint32_t seg_size,
                    uint64_t generation)
{
    slots_geom_t g;
    memset(t, 0, sizeof(*t));
    t->doorbell_fd = -1;
    if (generation == 0 || ((uintptr_t)mem & (SP_CACHELINE - 1)) != 0 ||
        (uint64_t)nregular + noverflow > UINT32_MAX)
        return SP_EINVAL;
    uint32_t nslots = nregular + noverflow;
    if (slots_geometry(nslots, nseg, seg_size, &g) < 0 || g.total > size)
        return SP_EINVAL;
    memset(mem, 0, g.slots_off);
    sp_slots_hdr_t *h = mem;
    h->nslots = nslots;
    h->nregular = nregular;
    h->ring_nseg = nseg;
    h->ring_seg_size = seg_size;
    h->slot_size = g.slot_size;
    h->ring_bytes = g.ring_bytes;
    h->bitmap_off = g.bitmap_off;
    h->bitmap_words = g.bitmap_words;
    h->slots_off = g.slots_off;
    for (uint32_t i = 0; i < nslots; i++) {
        unsigned char *s = (unsigned char *)mem + g.slots_off + i * g.slot_size;
        memset(s, 0, SLOT_HDR_BYTES);
        if (sp_ring_format(s + SLOT_HDR_BYTES, nseg, seg_size) < 0 ||
            sp_ring_format(s + SLOT_HDR_BYTES + g.ring_bytes, nseg,
                           seg_size) < 0)
            return SP_EINVAL;
    }
    /* The stamp goes last: the header checksum makes it the commit point. */
    sp_seghdr_stamp(&h->seg, SP_MAGIC_SLOTS, SP_SLOTS_VERSION,
                    sizeof(sp_slots_hdr_t), g.total, generation);
    sp_fence_release();
    slots_bind(t, mem, size);
    t->doorbell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->doorbell_fd < 0)
        return SP_ESYS;
    return 0;
}

int sp_slots_attach(sp_slots_t *t, void *mem, size_t size,
                    uint64_t generation, int doorbell_fd)
{
    memset(t, 0, sizeof(*t));
    t->doorbell_fd = -1;
    const sp_slots_hdr_t *h = mem;
    int rc = sp_seghdr_check(&h->seg, size, SP_MAGIC_SLOTS, SP_SLOTS_VERSION,
                             sizeof(sp_slots_hdr_t), generation);
    if (rc < 0)
        return rc;
    slots_geom_t g;
    if (slots_geometry(h->nslots, h->ring_nseg, h->ring_seg_size, &g) < 0 ||
        h->nregular > h->nslots || g.total != h->seg.total_size ||
        g.slot_size != h->slot_size || g.slots_off != h->slots_off ||
        g.bitmap_off != h->bitmap_off || g.ring_bytes != h->ring_bytes)
        return SP_EINVAL;
    slots_bind(t, mem, size);
    t->doorbell_fd = doorbell_fd;
    return 0;
}

void sp_slots_close(sp_slots_t *t)
{
    if (t->doorbell_fd >= 0)
        close(t->doorbell_fd);
    t->doorbell_fd = -1;
}

int sp_slot_ring_in(const sp_slots_t *t, uint32_t i, sp_ring_t *r)
{
    if (i >= t->nslots)
        return SP_EINVAL;
    return sp_ring_attach(r, (unsigned char *)sp_slot(t, i) + SLOT_HDR_BYTES,
                          t->ring_bytes);
}

int sp_slot_ring_out(const sp_slots_t *t, uint32_t i, sp_ring_t *r)
{
    if (i >= t->nslots)
        return SP_EINVAL;
    return sp_ring_attach(r,
                          (unsigned char *)sp_slot(t, i) + SLOT_HDR_BYTES +
                              t->ring_bytes,
                          t->ring_bytes);
}

/* Reset both rings of a slot nobody else touches any more. */
static void slot_reset_rings(sp_slots_t *t, uint32_t i)
{
    sp_ring_t r;
    if (sp_slot_ring_in(t, i, &r) == 0)
        sp_ring_reset(&r);
    if (sp_slot_ring_out(t, i, &r) == 0)
        sp_ring_reset(&r);
}

static int slot_try_claim(sp_slots_t *t, uint32_t i, const sp_ident_t *self,
                          uint32_t flags)
{
    sp_slot_t *s = sp_slot(t, i);
    int32_t expected = 0;
    /* Relaxed pre-check saves a locked CAS on busy slots; the CAS decides. */
    if (sp_load_relaxed(&s->owner_pid) != 0 ||
        !sp_cas(&s->owner_pid, &expected, self->pid))
        return 0;
    sp_store_relaxed(&s->owner_start, self->start);
    s->owner_gen = t->generation;
    s->seq++;
    s->flags = flags;
    s->t_claim_ns = sp_now_ns();
    s->t_state_ns = s->t_claim_ns;
    s->bytes_in = s->bytes_out = 0;
    s->link = s->backend = UINT32_MAX;
    s->status = 0;
    sp_fetch_add(&t->live->inflight, 1);
    uint32_t seen = 0;
    if (sp_mark_cas(&s->state, SP_SLOT_FREE, SP_SLOT_WRITING, &seen) < 0) {
        /* An owner word of 0 with a non-FREE state: only a crash between
         * a reaper's two stores does this.  Repair it and go on. */
        sp_mark_set(&s->state, SP_SLOT_WRITING);
    }
    return 1;
}

long sp_slot_claim(sp_slots_t *t, uint32_t preferred)
{
    sp_ident_t self = sp_ident_self();
    sp_stat_add(&t->live->claims, 1);
    if (preferred < t->nregular && slot_try_claim(t, preferred, &self, 0))
        return preferred;
    uint32_t nover = t->nslots - t->nregular;
    if (nover > 0) {
        /* Relaxed: only a hint where to start scanning. */
        uint32_t start = sp_load_relaxed(&t->live->overflow_hint) % nover;
        for (uint32_t k = 0; k < nover; k++) {
            uint32_t i = t->nregular + (start + k) % nover;
            if (slot_try_claim(t, i, &self, SP_SLOTF_OVERFLOW)) {
                sp_store_relaxed(&t->live->overflow_hint, i - t->nregular + 1);
                sp_stat_add(&t->live->overflow_claims, 1);
                return i;
            }
        }
    }
    sp_stat_add(&t->live->claim_failures, 1);
    return SP_ENOSPC;
}

/* Give a slot back; the caller holds it (owner or reaper). */
static void slot_free(sp_slots_t *t, uint32_t i)
{
    sp_slot_t *s = sp_slot(t, i);
    slot_reset_rings(t, i);
    s->flags = 0;
    s->owner_gen = 0;
    sp_store_relaxed(&s->owner_start, 0);
    s->t_state_ns = sp_now_ns();
    sp_mark_set(&s->state, SP_SLOT_FREE);
    /* Clear a stale ready bit: nobody may find a FREE slot "ready". */
    sp_fetch_and(&t->bitmap[i / 64], ~(1ull << (i % 64)));
    sp_fetch_sub(&t->live->inflight, 1);
    /* The release store of the owner word publishes all of the above to
     * the next claimer's CAS. */
    sp_store_release(&s->owner_pid, 0);
}

int sp_slot_release(sp_slots_t *t, uint32_t i)
{
    if (i >= t->nslots)
        return SP_EINVAL;
    sp_slot_t *s = sp_slot(t, i);
    if (sp_load_acquire(&s->owner_pid) != sp_ident_self().pid)
        return SP_EINVAL;
    uint32_t st = sp_mark_get(&s->state);
    if (st != SP_SLOT_WRITING && st != SP_SLOT_DONE && st != SP_SLOT_IDLE)
        return SP_ESTATE;
    slot_free(t, i);
    return 0;
}

int sp_slot_transition(sp_slots_t *t, uint32_t i, uint32_t from, uint32_t to,
                       uint32_t *seen)
{
    if (i >= t->nslots || to >= SP_SLOT_NSTATES)
        return SP_EINVAL;
    sp_slot_t *s = sp_slot(t, i);
    if (to == SP_SLOT_ACCEPTED)
        sp_fetch_or(&s->flags, SP_SLOTF_WAS_ACCEPTED);
    int rc = sp_mark_cas(&s->state, from, to, seen);
    if (rc == 0)
        s->t_state_ns = sp_now_ns();
    return rc;
}

int sp_slot_wait(sp_slots_t *t, uint32_t i, uint32_t cur, int64_t deadline_ns,
                 sp_spin_t *spin, const sp_ident_t *peer)
{
    if (i >= t->nslots)
        return SP_EINVAL;
    return sp_mark_wait(&sp_slot(t, i)->state, cur, deadline_ns, spin, peer);
}

void sp_slot_kick(sp_slots_t *t, uint32_t i)
{
    sp_slot_t *s = sp_slot(t, i);
    sp_fetch_add(&s->kick, 1);
    sp_fence_full(); /* pairs with the fence in sp_slot_wait_kick() */
    /* The flag is the owner's to clear: taking it here could take the
     * flag of the owner's next wait (see ring_futex_wake in sp_ring.c). */
    if (sp_load_relaxed(&s->kick_waiting))
        sp_futex_wake(&s->kick, INT_MAX);
}

uint32_t sp_slot_kick_seen(sp_slots_t *t, uint32_t i)
{
    return sp_load_acquire(&sp_slot(t, i)->kick);
}

int sp_slot_wait_kick(sp_slots_t *t, uint32_t i, uint32_t seen,
                      int64_t deadline_ns)
{
    sp_slot_t *s = sp_slot(t, i);
    sp_store_relaxed(&s->kick_waiting, 1);
    sp_fence_full(); /* pairs with the fence in sp_slot_kick() */
    int rc = 0;
    if (sp_load_acquire(&s->kick) == seen)
        rc = sp_futex_wait(&s->kick, seen, deadline_ns);
    sp_store_relaxed(&s->kick_waiting, 0);
    return rc == SP_ETIMEDOUT ? SP_ETIMEDOUT : 0;
}

int sp_slot_replayable(const sp_slot_t *s)
{
    uint32_t st = sp_mark_get(&s->state);
    uint32_t fl = sp_load_acquire(&s->flags);
    return (st == SP_SLOT_QUEUED || st == SP_SLOT_SENT) &&
           !(fl & (SP_SLOTF_WAS_ACCEPTED | SP_SLOTF_BODY_CONSUMED));
}

int sp_slot_owner_check(const sp_slots_t *t, uint32_t i)
{
    if (i >= t->nslots)
        return SP_EINVAL;
    const sp_slot_t *s = sp_slot(t, i);
    int32_t pid = sp_load_acquire(&s->owner_pid);
    if (pid == 0 || pid == SP_SLOT_RECLAIMING)
        return SP_ESTATE;
    sp_ident_t id = {.pid = pid, .start = sp_load_relaxed(&s->owner_start)};
    if (!sp_ident_alive(&id))
        return SP_EPEERDEAD;
    if (s->owner_gen != t->generation)
        return SP_ESTALE;
    return 0;
}

int sp_slots_notify(sp_slots_t *t, uint32_t i)
{
    if (i >= t->nslots)
        return 0;
    sp_fetch_or(&t->bitmap[i / 64], 1ull << (i % 64));
    sp_fence_full(); /* pairs with the fence in sp_slots_proxy_idle() */
    if (!sp_load_relaxed(&t->live->proxy_waiting) || t->doorbell_fd < 0)
        return 0;
    /* Take the flag: of several notifications before the proxy runs, only
     * the first writes the eventfd.  The others' bits are set before the
     * flag was taken, so the proxy's scan after this wake-up finds them.
     * A notifier that takes the flag of the proxy's next sleep (it read the
     * old one as set) still writes the eventfd, whose count stays until the
     * proxy drains it: an early wake-up at worst, never a lost one. */
    uint32_t one32 = 1;
    if (!sp_cas(&t->live->proxy_waiting, &one32, 0))
        return 0;
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(t->doorbell_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    sp_stat_add(&t->live->doorbells, 1);
    return 1;
}

uint32_t sp_slots_ready_take(sp_slots_t *t, uint32_t *out, uint32_t max)
{
    uint32_t n = 0;
    uint64_t words = t->hdr->bitmap_words;
    for (uint64_t w = 0; w < words && n < max; w++) {
        /* Relaxed: a hint; the exchange below is what takes the bits. */
        if (sp_load_relaxed(&t->bitmap[w]) == 0)
            continue;
        uint64_t bits = sp_xchg(&t->bitmap[w], 0);
        while (bits != 0) {
            if (n == max) {
                sp_fetch_or(&t->bitmap[w], bits); /* leave the rest */
                return n;
            }
            unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            uint32_t i = (uint32_t)(w * 64 + b);
            if (i < t->nslots)
                out[n++] = i;
        }
    }
    return n;
}

static int slots_any_ready(const sp_slots_t *t)
{
    uint64_t words = t->hdr->bitmap_words;
    for (uint64_t w = 0; w < words; w++)
        if (sp_load_relaxed(&t->bitmap[w]) != 0)
            return 1;
    return 0;
}

int sp_slots_poll_events(sp_slots_t *t, int ep, struct epoll_event *evs,
                         int max, sp_spin_t *spin)
{
    if (spin == NULL || spin->max_ns == 0)
        return 0;
    int64_t budget = sp_spin_budget(spin);
    if (budget == 0)
        return 0;
    int64_t end = sp_now_ns() + budget;
    int n = 0;
    for (;;) {
        int bits = 0;
        for (int i = 0; i < 16 && !bits; i++) {
            bits = slots_any_ready(t);
            sp_cpu_relax();
        }
        /* Look at ep even when bits came up: steady slot traffic must not
         * keep links, timers and signals waiting. */
        if ((n = epoll_wait(ep, evs, max, 0)) < 0)
            n = 0; /* EINTR: the caller's loop looks again */
        if (n == 0 && bits)
            n = -1;
        if (n != 0) {
            sp_spin_adapt(spin, 1);
            return n;
        }
        if (sp_now_ns() >= end || !sp_yield_idle())
            break;
    }
    sp_spin_adapt(spin, 0);
    return 0;
}

int sp_slots_proxy_idle(sp_slots_t *t)
{
    sp_store_relaxed(&t->live->proxy_waiting, 1);
    sp_fence_full(); /* pairs with the fence in sp_slots_notify() */
    uint64_t words = t->hdr->bitmap_words;
    for (uint64_t w = 0; w < words; w++) {
        if (sp_load_relaxed(&t->bitmap[w]) != 0) {
            sp_store_relaxed(&t->live->proxy_waiting, 0);
            return 1;
        }
    }
    return 0;
}

void sp_slots_proxy_awake(sp_slots_t *t, int rung)
{
    sp_store_relaxed(&t->live->proxy_waiting, 0);
    if (rung && t->doorbell_fd >= 0) {
        uint64_t v;
        while (read(t->doorbell_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            ;
    }
}

void sp_slots_set_proxy(sp_slots_t *t)
{
    sp_ident_t self = sp_ident_self();
    sp_store_relaxed(&t->live->proxy_start, self.start);
    sp_store_release(&t->live->proxy_pid, self.pid);
}

int sp_slots_reclaim(sp_slots_t *t, sp_slot_reclaim_fn cb, void *arg)
{
    int n = 0;
    for (uint32_t i = 0; i < t->nslots; i++) {
        sp_slot_t *s = sp_slot(t, i);
        int32_t pid = sp_load_acquire(&s->owner_pid);
        if (pid == 0 || pid == SP_SLOT_RECLAIMING)
            continue;
        sp_ident_t id = {.pid = pid, .start = sp_load_relaxed(&s->owner_start)};
        if (sp_ident_alive(&id))
            continue;
        if (!sp_cas(&s->owner_pid, &pid, SP_SLOT_RECLAIMING))
            continue; /* released or reclaimed by someone else meanwhile */
        if (cb != NULL)
            cb(arg, i, sp_mark_get(&s->state), s->seq);
        slot_free(t, i);
        sp_stat_add(&t->live->reclaimed, 1);
        n++;
    }
    return n;
}

void sp_slots_count(const sp_slots_t *t, uint32_t *counts)
{
    memset(counts, 0, SP_SLOT_NSTATES * sizeof(*counts));
    for (uint32_t i = 0; i < t->nslots; i++) {
        uint32_t st = sp_mark_get(&sp_slot(t, i)->state);
        if (st < SP_SLOT_NSTATES)
            counts[st]++;
    }
}

uint32_t sp_slots_inflight(const sp_slots_t *t)
{
    return sp_load_acquire(&t->live->inflight);
}

const char *sp_slot_state_name(uint32_t state)
{
    static const char *const names[SP_SLOT_NSTATES] = {
        "free", "writing", "queued", "sent",
        "accepted", "responding", "done", "cancelled", "idle"};
    return state < SP_SLOT_NSTATES ? names[state] : "?";
}
