/*
 * sp_slots-t.h - shared layout of the slot table (DESIGN §3.3,
 * seed 000 claim 30, seed 001 claims 1, 4, 5, 10; seed 004 claims 71, 74,
 * 97 for the ready bitmap and the doorbell).
 *
 * One anonymous shared segment per httpd generation (and one per backend
 * instance), mapped at different addresses by different processes, so
 * everything below is an offset from the segment start.
 *
 *   offset        size   what
 *   ------------  -----  ----------------------------------------------
 *   0             128    sp_slots_hdr_t: sp_seghdr_t (48) + geometry;
 *                        immutable after format and covered by the
 *                        header checksum
 *   128            64    sp_slots_live_t line 0: proxy_waiting (doorbell
 *                        flag), proxy pid/start of the current proxy
 *   192            64    line 1: inflight (exact number of claimed slots,
 *                        the admission-control counter); streams (the
 *                        backend dispatcher's requests in progress, for
 *                        its workers' poll gate)
 *   256            64    line 2: statistics (relaxed)
 *   320            ...   ready bitmap: one bit per slot, u64 words,
 *                        rounded up to a cache line
 *   slots_off      ...   nslots slots of slot_size bytes each:
 *
 *   slot + 0       128   sp_slot_t (two cache lines, layout below)
 *   slot + 128     ...   input ring  (request going out: handler -> proxy)
 *   slot + in_sz   ...   output ring (response coming back: proxy -> handler)
 *
 *   sp_slot_t:
 *     0   4  state       sp_mark_t: the life cycle (SP_SLOT_*)
 *     4   4  owner_pid   0 = nobody; claimed by CAS 0 -> pid
 *     8   8  owner_start /proc starttime of the owner, 0 while claiming
 *    16   8  owner_gen   generation the owner belongs to
 *    24   4  seq         request sequence = stream generation on the wire
 *    28   4  flags       SP_SLOTF_*
 *    32   8  t_claim_ns  CLOCK_MONOTONIC when claimed
 *    40   8  t_state_ns  when the state last changed
 *    48   8  bytes_in    request bytes written by the handler
 *    56   8  bytes_out   response bytes written by the proxy
 *    64   4  link        proxy's link index for this stream (proxy only)
 *    68   4  backend     proxy's backend index (proxy only)
 *    72   4  status      final HTTP status / abort code (proxy writes)
 *    76   4  kick        bumped by the proxy after it moved data for this
 *                        slot (futex word: the owner waits on it when it
 *                        needs either direction, e.g. a full-duplex upload)
 *    80   4  kick_waiting  the owner sleeps on `kick`
 *    84  44  reserved
 *
 * Slots [0, nregular) are addressed by the scoreboard index (prefork child
 * or worker thread); slots [nregular, nslots) are the overflow pool taken
 * by CAS (HTTP/2 secondaries, or a regular slot still held by a live or
 * unreclaimed owner).
 */
#ifndef SP_SLOTS_T_H
#define SP_SLOTS_T_H

#include <stddef.h>
#include <stdint.h>

#include "sp_atomic.h"
#include "sp_mark-t.h"
#include "sp_seghdr-t.h"

#define SP_SLOTS_VERSION 1

/* The request life cycle, recorded exactly.  A request may be replayed on
 * another link or backend iff it never reached ACCEPTED and the proxy has
 * not consumed any of its body (sp_slot_replayable()). */
enum sp_slot_state {
    SP_SLOT_FREE = 0,       /* nobody owns it */
    SP_SLOT_WRITING = 1,    /* owner claimed it and writes the request */
    SP_SLOT_QUEUED = 2,     /* request head in the input ring, proxy told */
    SP_SLOT_SENT = 3,       /* proxy sent REQUEST_HEAD on a link */
    SP_SLOT_ACCEPTED = 4,   /* a backend worker took it (ACCEPT frame) */
    SP_SLOT_RESPONDING = 5, /* RESPONSE_HEAD arrived */
    SP_SLOT_DONE = 6,       /* proxy wrote the end (or an error) and let go */
    SP_SLOT_CANCELLED = 7,  /* owner gave up; proxy must abort and let go */
    SP_SLOT_IDLE = 8,       /* backend: a worker owns the slot and waits for
                               the dispatcher to queue a request (IDLE ->
                               QUEUED by the dispatcher, QUEUED -> ACCEPTED
                               by the worker, back to IDLE by the worker
                               after a clean request, or DONE -> IDLE by
                               the dispatcher once it drained the response) */
    SP_SLOT_NSTATES = 9
};

#define SP_SLOTF_BODY_CONSUMED 1u /* proxy took request body bytes */
#define SP_SLOTF_WAS_ACCEPTED 2u  /* sticky: reached ACCEPTED once */
#define SP_SLOTF_OVERFLOW 4u      /* claimed from the overflow pool */
#define SP_SLOTF_ABORTED 8u       /* the other side aborted the stream */

typedef struct sp_slot {
    sp_mark_t state;
    int32_t owner_pid;
    uint64_t owner_start;
    uint64_t owner_gen;
    uint32_t seq;
    uint32_t flags;
    int64_t t_claim_ns;
    int64_t t_state_ns;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint32_t link;
    uint32_t backend;
    uint32_t status;
    uint32_t kick;
    uint32_t kick_waiting;
    uint8_t reserved[44];
} sp_slot_t;

typedef struct sp_slots_hdr {
    sp_seghdr_t seg;
    uint32_t nslots;     /* regular + overflow */
    uint32_t nregular;
    uint32_t ring_nseg;  /* per ring */
    uint32_t ring_seg_size;
    uint64_t slot_size;  /* sp_slot_t + 2 rings, 64-aligned */
    uint64_t ring_bytes; /* one ring */
    uint64_t bitmap_off;
    uint64_t bitmap_words;
    uint64_t slots_off;
    uint8_t pad[24];
} sp_slots_hdr_t;

typedef struct sp_slots_live {
    /* line 0: the doorbell flag (seed 004 claim 71's "interrupt") */
    uint32_t proxy_waiting;
    int32_t proxy_pid;
    uint64_t proxy_start;
    uint8_t pad0[SP_CACHELINE - 16];
    /* line 1 */
    uint32_t inflight;
    uint32_t overflow_hint;
    /* Backend tables: the dispatcher's streams, queued or on a worker
     * (relaxed; the workers' sp_spin_gate() reads it).  0 elsewhere. */
    uint32_t streams;
    uint8_t pad1[SP_CACHELINE - 12];
    /* line 2: statistics, relaxed */
    uint64_t claims;
    uint64_t overflow_claims;
    uint64_t claim_failures;
    uint64_t reclaimed;
    uint64_t doorbells;
    uint8_t pad2[SP_CACHELINE - 40];
} sp_slots_live_t;

_Static_assert(offsetof(sp_slot_t, owner_pid) == 4, "slot layout");
_Static_assert(offsetof(sp_slot_t, owner_start) == 8, "slot layout");
_Static_assert(offsetof(sp_slot_t, seq) == 24, "slot layout");
_Static_assert(offsetof(sp_slot_t, t_claim_ns) == 32, "slot layout");
_Static_assert(offsetof(sp_slot_t, link) == 64, "slot layout");
_Static_assert(offsetof(sp_slot_t, kick) == 76, "slot layout");
_Static_assert(sizeof(sp_slot_t) == 128, "slot layout");
_Static_assert(sizeof(sp_slots_hdr_t) == 128, "slots header layout");
_Static_assert(offsetof(sp_slots_live_t, inflight) == SP_CACHELINE,
               "inflight on its own line");
_Static_assert(sizeof(sp_slots_live_t) == 3 * SP_CACHELINE, "live layout");

#endif /* SP_SLOTS_T_H */
