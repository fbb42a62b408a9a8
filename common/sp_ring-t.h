/*
 * sp_ring-t.h - shared layout of the segment ring (DESIGN §3.2,
 * seed 004 claims 65-71 and 85-88).
 *
 * One producer, one consumer, in different processes.  The ring lives at
 * some offset inside a shared segment (a slot, a shm link); everything in it
 * is relative to its own start, so each process may map it anywhere.
 *
 *   offset            size      field
 *   ----------------  --------  -----------------------------------------
 *   control segment, cache line 0 (written by the producer only)
 *        0               4      head            segments published (free-
 *                                               running counter; the newest
 *                                               data is in segment
 *                                               (head-1) & (nseg-1))
 *        4               4      sender_waiting  0, SP_RING_WAIT_FUTEX, or
 *                                               SP_RING_WAIT_POLL
 *        8              56      (padding)
 *   control segment, cache line 1 (written by the consumer only)
 *       64               4      tail            segments released; the
 *                                               earliest unread data is in
 *                                               segment tail & (nseg-1)
 *       68               4      receiver_waiting
 *       72              56      (padding)
 *   control segment, cache line 2 (immutable after sp_ring_format)
 *      128               4      magic           SP_RING_MAGIC
 *      132               4      nseg            power of two, 1..65536
 *      136               4      seg_size        bytes per data segment,
 *                                               multiple of 64
 *      140               4      segctl_off      = 192
 *      144               4      data_off        = 192 + nseg*24 rounded up
 *                                               to 64
 *      148              44      (padding)
 *   per-segment control, nseg entries of 24 bytes (sp_ring_segctl_t)
 *      192 + 24*i        4      begin    first unread byte in the segment
 *                                        (consumer; producer sets 0)
 *                        4      end      one past the last byte (producer)
 *                        4      length   bytes of the message from this
 *                                        fragment to its end, as written
 *                                        (so the first fragment holds the
 *                                        whole message length)
 *                        4      next     index of the next segment in the
 *                                        circle ((i+1) % nseg)
 *                        2      type     message type (caller's meaning)
 *                        2      flags    SP_RING_FIRST, SP_RING_LAST
 *                        4      reserved
 *   data segments
 *   data_off + seg_size*i   seg_size
 *
 * A message of L bytes takes max(1, ceil(L / seg_size)) consecutive
 * segments, the first flagged FIRST and the last LAST.  The producer fills
 * all of them and then publishes them with one release store of head, so
 * a consumer only ever sees whole messages.  The consumer may read a
 * message in pieces (begin advances) and releases each segment (tail++)
 * when it has read all of it.
 *
 * Waiting flags (claim 86): sender_waiting is written by the producer only
 * (set when it waits for space, cleared when it stops waiting), and
 * receiver_waiting by the consumer only.  The other side reads them after a
 * full fence to decide whether to wake: SP_RING_WAIT_FUTEX means "sleeping
 * on the futex at &tail (sender) / &head (receiver)", SP_RING_WAIT_POLL
 * means "an event loop wants a doorbell", which the ring cannot ring itself;
 * it reports it through the handle (sp_ring_t.wake_poller).
 */
#ifndef SP_RING_T_H
#define SP_RING_T_H

#include <stddef.h>
#include <stdint.h>

#include "sp_atomic.h"
#include "sp_mark-t.h"

#define SP_RING_MAGIC 0x53505247u /* "SPRG" */
#define SP_RING_MAX_SEGS 65536u

#define SP_RING_FIRST 1u
#define SP_RING_LAST 2u

#define SP_RING_WAIT_NONE 0u
#define SP_RING_WAIT_FUTEX 1u
#define SP_RING_WAIT_POLL 2u

typedef struct sp_ring_ctl {
    uint32_t head;
    uint32_t sender_waiting;
    uint8_t pad0[SP_CACHELINE - 8];
    uint32_t tail;
    uint32_t receiver_waiting;
    uint8_t pad1[SP_CACHELINE - 8];
    uint32_t magic;
    uint32_t nseg;
    uint32_t seg_size;
    uint32_t segctl_off;
    uint32_t data_off;
    uint8_t pad2[SP_CACHELINE - 20];
} sp_ring_ctl_t;

typedef struct sp_ring_segctl {
    uint32_t begin;
    uint32_t end;
    uint32_t length;
    uint32_t next;
    uint16_t type;
    uint16_t flags;
    uint32_t reserved;
} sp_ring_segctl_t;

_Static_assert(offsetof(sp_ring_ctl_t, head) == 0, "ring layout");
_Static_assert(offsetof(sp_ring_ctl_t, sender_waiting) == 4, "ring layout");
_Static_assert(offsetof(sp_ring_ctl_t, tail) == 64, "ring layout");
_Static_assert(offsetof(sp_ring_ctl_t, receiver_waiting) == 68,
               "ring layout");
_Static_assert(offsetof(sp_ring_ctl_t, magic) == 128, "ring layout");
_Static_assert(offsetof(sp_ring_ctl_t, data_off) == 144, "ring layout");
_Static_assert(sizeof(sp_ring_ctl_t) == 192, "ring layout");
_Static_assert(sizeof(sp_ring_segctl_t) == 24, "ring layout");
/* Producer and consumer words on different cache lines. */
_Static_assert(offsetof(sp_ring_ctl_t, tail) / SP_CACHELINE !=
                   offsetof(sp_ring_ctl_t, head) / SP_CACHELINE,
               "head and tail share a cache line");

#endif /* SP_RING_T_H */
