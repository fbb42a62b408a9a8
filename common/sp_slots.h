/*
 * sp_slots.h - the slot table: one slot per httpd worker (or backend
 * worker), each with an input and an output ring, a ready bitmap that tells
 * the proxy which slots want attention, and a doorbell eventfd.
 *
 * Protocol between an owner (httpd handler / backend dispatcher side) and
 * the proxy, in terms of the calls below:
 *
 *   owner                                  proxy
 *   -----                                  -----
 *   sp_slot_claim()      FREE -> WRITING
 *   write REQUEST_HEAD (+ body) to in ring
 *   sp_slot_transition(WRITING -> QUEUED)
 *   sp_slots_notify(i)   ready bit + doorbell
 *                                          sp_slots_ready_take() finds i
 *                                          QUEUED -> SENT, ACCEPTED,
 *                                          RESPONDING, writes out ring,
 *                                          then -> DONE and forgets i
 *   read out ring until the end message
 *   (client gone: -> CANCELLED, notify;    sees CANCELLED: aborts the
 *    wait for DONE)                        stream, -> DONE)
 *   sp_slot_release()    DONE -> FREE
 *
 * The backend uses the same table with roles swapped: each worker owns its
 * slot for its whole life and waits in IDLE; the dispatcher (the "proxy"
 * of that table) queues a request into the out ring, the worker answers
 * into the in ring.
 *
 * Every state change goes through the slot's mark, so either side can
 * sp_slot_wait() for the other.  A slot whose owner died is reset by
 * sp_slots_reclaim(), which hands its index to a callback first so the
 * proxy can abort the stream on its link.
 *
 * The doorbell (DESIGN §3.3): the proxy sleeps in epoll with the eventfd in
 * its set.  Before sleeping it calls sp_slots_proxy_idle(), which sets
 * proxy_waiting and re-scans; owners call sp_slots_notify(), which sets the
 * ready bit and writes the eventfd only if proxy_waiting is set.  Under load
 * the proxy never sleeps, so nobody rings.
 */
#ifndef SP_SLOTS_H
#define SP_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#include "sp_proc.h"
#include "sp_ring.h"
#include "sp_slots-t.h"

typedef struct sp_slots {
    sp_slots_hdr_t *hdr;
    sp_slots_live_t *live;
    uint64_t *bitmap;
    unsigned char *base;
    size_t size;
    uint32_t nslots;
    uint32_t nregular;
    uint64_t slot_size;
    uint64_t ring_bytes;
    uint64_t generation;
    int doorbell_fd; /* eventfd, inherited across fork; -1 if none */
} sp_slots_t;

/* Bytes of a table with nregular + noverflow slots whose rings have nseg
 * segments of seg_size bytes; 0 if the geometry is invalid. */
size_t sp_slots_bytes(uint32_t nregular, uint32_t noverflow, uint32_t nseg,
                      uint32_t seg_size);

/* Format mem (sp_slots_bytes() bytes, 64-aligned, zeroed or not) as an
 * empty table and attach t to it; creates the doorbell eventfd (call before
 * fork so every process inherits it).  generation must not be 0. */
int sp_slots_create(sp_slots_t *t, void *mem, size_t size, uint32_t nregular,
                    uint32_t noverflow, uint32_t nseg, uint32_t seg_size,
                    uint64_t generation);

/* Attach to a table made by sp_slots_create() in this or an ancestor
 * process.  generation 0 accepts any; otherwise a different one is
 * SP_ESTALE.  Other refusals: see sp_seghdr_check(). */
int sp_slots_attach(sp_slots_t *t, void *mem, size_t size,
                    uint64_t generation, int doorbell_fd);

/* Close the doorbell (the mapping belongs to the caller). */
void sp_slots_close(sp_slots_t *t);

static inline sp_slot_t *sp_slot(const sp_slots_t *t, uint32_t i)
{
    return (sp_slot_t *)(t->base + t->hdr->slots_off + (uint64_t)i * t->slot_size);
}

/* Handles on slot i's rings (in: owner produces; out: owner consumes). */
int sp_slot_ring_in(const sp_slots_t *t, uint32_t i, sp_ring_t *r);
int sp_slot_ring_out(const sp_slots_t *t, uint32_t i, sp_ring_t *r);

/* Claim a slot for the calling process: the regular slot `preferred` if it
 * is free (pass UINT32_MAX for none), else one from the overflow pool.
 * Stamps owner pid, start time and the table's generation, bumps seq, and
 * moves FREE -> WRITING.  Returns the index, or SP_ENOSPC. */
long sp_slot_claim(sp_slots_t *t, uint32_t preferred);

/* Owner gives the slot back: allowed in WRITING (never handed over), DONE
 * (the proxy let go) and IDLE (a backend worker between requests);
 * SP_ESTATE otherwise, SP_EINVAL if the caller is
 * not the owner.  Resets both rings. */
int sp_slot_release(sp_slots_t *t, uint32_t i);

/* from -> to on slot i's state mark; wakes waiters; stamps t_state_ns.
 * Sets SP_SLOTF_WAS_ACCEPTED when entering ACCEPTED.  0 or SP_ESTATE (with
 * *seen the state found, seen may be NULL). */
int sp_slot_transition(sp_slots_t *t, uint32_t i, uint32_t from, uint32_t to,
                       uint32_t *seen);

/* Wait while slot i's state is cur (see sp_mark_wait). */
int sp_slot_wait(sp_slots_t *t, uint32_t i, uint32_t cur, int64_t deadline_ns,
                 sp_spin_t *spin, const sp_ident_t *peer);

/* The proxy moved data for slot i (consumed from its in ring or wrote to
 * its out ring): bump the kick word and wake the owner if it sleeps on it.
 * Pairs with sp_slot_wait_kick(). */
void sp_slot_kick(sp_slots_t *t, uint32_t i);

/* Owner: read the kick word (before checking its rings), then, if neither
 * ring lets it progress, sleep until the word differs from seen or the
 * deadline.  0, or SP_ETIMEDOUT. */
uint32_t sp_slot_kick_seen(sp_slots_t *t, uint32_t i);
int sp_slot_wait_kick(sp_slots_t *t, uint32_t i, uint32_t seen,
                      int64_t deadline_ns);

/* May this request be replayed on another link/backend? */
int sp_slot_replayable(const sp_slot_t *s);

/* Check that slot i is held by a live owner of the table's generation:
 * 0, SP_EPEERDEAD (owner gone), SP_ESTALE (other generation), SP_ESTATE
 * (slot is free). */
int sp_slot_owner_check(const sp_slots_t *t, uint32_t i);

/* ---- the proxy side ---- */

/* Set slot i's ready bit and ring the doorbell if the proxy sleeps.
 * Returns 1 if it rang. */
int sp_slots_notify(sp_slots_t *t, uint32_t i);

/* Take up to max ready slot indices, clearing their bits (a batch).
 * Returns how many were written to out. */
uint32_t sp_slots_ready_take(sp_slots_t *t, uint32_t *out, uint32_t max);

/* Before sleeping in epoll on ep, when an answer is expected within
 * microseconds (a request is out): watch the ready bitmap and ep (without
 * waiting) for up to spin's budget, yielding the CPU between rounds and
 * giving up as soon as a yield shows that something else wants the CPU
 * (sp_yield_idle()).  Returns the number of events written to evs, -1 if
 * only ready bits came up, 0 if nothing did.  An adaptive budget adapts
 * like sp_spin_until_ne()'s: it grows while polls succeed, halves when one
 * runs out; a poll budget (SP_SPIN_POLL) is spent whole each time. */
struct epoll_event;
int sp_slots_poll_events(sp_slots_t *t, int ep, struct epoll_event *evs,
                         int max, sp_spin_t *spin);

/* About to sleep: flag the proxy waiting, then re-check the bitmap.
 * Returns 1 if something is ready (the flag is cleared again: do not
 * sleep), 0 if the caller may sleep on the doorbell. */
int sp_slots_proxy_idle(sp_slots_t *t);

/* Woke up: clear the flag, and drain the eventfd if it rang (rung: the
 * caller's poll reported it readable; only then is there anything to read,
 * and a notifier that took the flag wrote it exactly once). */
void sp_slots_proxy_awake(sp_slots_t *t, int rung);

/* Record the calling process as the table's proxy (shown on status pages,
 * and the peer owners wait on). */
void sp_slots_set_proxy(sp_slots_t *t);

/* Reset every slot whose owner died.  Before resetting slot i, calls
 * cb(arg, i, state, seq) if cb is not NULL (the proxy aborts the stream).
 * Returns how many slots were reclaimed. */
typedef void (*sp_slot_reclaim_fn)(void *arg, uint32_t i, uint32_t state,
                                   uint32_t seq);
int sp_slots_reclaim(sp_slots_t *t, sp_slot_reclaim_fn cb, void *arg);

/* Slots by state, for status pages: counts[SP_SLOT_NSTATES]. */
void sp_slots_count(const sp_slots_t *t, uint32_t *counts);

/* Requests in flight right now (claimed slots), exact. */
uint32_t sp_slots_inflight(const sp_slots_t *t);

const char *sp_slot_state_name(uint32_t state);

#endif /* SP_SLOTS_H */
