/*
 * sp_ring.h - the segment ring: typed messages between two processes.
 *
 * The shared layout and its invariants are drawn in sp_ring-t.h.  A process
 * uses a ring through an sp_ring_t handle in its private memory, made by
 * sp_ring_attach(): it caches the geometry (validated once, so a scribbled
 * control block cannot send us out of bounds) and the producer's pending
 * reservation.  Exactly one process may produce and one consume at a time.
 *
 * Blocking calls take an absolute CLOCK_MONOTONIC deadline in ns: 0 means
 * "never block" (SP_EAGAIN instead), anything else spins within the
 * handle's budget (r->spin, none by default) and then sleeps on a futex
 * until the deadline (SP_ETIMEDOUT), checking every 100 ms whether the peer
 * (r->peer, if set) still lives (SP_EPEERDEAD).  An event loop that must
 * not block registers as a poller with sp_ring_poll_readable() /
 * sp_ring_poll_writable() before it sleeps; the other side then sets
 * wake_poller in its handle and must ring that loop's doorbell.
 */
#ifndef SP_RING_H
#define SP_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "sp_proc.h"
#include "sp_ring-t.h"

typedef struct sp_ring {
    sp_ring_ctl_t *ctl;
    sp_ring_segctl_t *seg;
    unsigned char *data;
    uint32_t nseg;
    uint32_t mask;
    uint32_t seg_size;
    /* producer's reservation (sp_ring_reserve .. sp_ring_commit) */
    uint32_t res_nseg;
    size_t res_len;
    /* waiting policy */
    sp_spin_t spin;
    const sp_ident_t *peer;
    /* Set by any call that found the peer flagged SP_RING_WAIT_POLL: the
     * caller must ring the peer's doorbell, then clear it. */
    int wake_poller;
    /* Deferred wake-ups (sp_ring_defer_wake): publications and releases
     * only note here that the peer sleeps in a futex; sp_ring_wake_flush()
     * wakes it once.  A producer that writes several messages in one batch
     * wakes its consumer once instead of once per message. */
    int defer_wake;
    int wake_pending;
} sp_ring_t;

/* Description of the message at the consumer's position (sp_ring_peek). */
typedef struct sp_ring_msg {
    unsigned type;
    size_t length;    /* whole message, as written */
    size_t remaining; /* not yet consumed */
    unsigned nfrag;   /* segments still holding unread bytes */
} sp_ring_msg_t;

/* Bytes needed for a ring of nseg segments of seg_size bytes (0 if the
 * geometry is invalid: nseg not a power of two in 1..65536, seg_size not a
 * multiple of 64 or 0). */
size_t sp_ring_bytes(uint32_t nseg, uint32_t seg_size);

/* Lay out an empty ring in mem (sp_ring_bytes() bytes, 64-aligned). */
int sp_ring_format(void *mem, uint32_t nseg, uint32_t seg_size);

/* Build a handle over a formatted ring of at most avail bytes.  Returns 0,
 * SP_EBADMAGIC or SP_EINVAL for an impossible geometry. */
int sp_ring_attach(sp_ring_t *r, void *mem, size_t avail);

/* Reset an idle ring to empty (both sides must be quiescent, e.g. when a
 * slot is reclaimed). */
void sp_ring_reset(sp_ring_t *r);

/* From now on, wake a sleeping peer only in sp_ring_wake_flush() (on) or
 * at once (off, the default). */
void sp_ring_defer_wake(sp_ring_t *r, int on);

/* Wake the peer if a deferred publication or release found it asleep.
 * 1 if a wake-up was due. */
int sp_ring_wake_flush(sp_ring_t *r);

/* Largest message the ring can carry: nseg * seg_size. */
size_t sp_ring_capacity(const sp_ring_t *r);

/* Segments published but not released (0 = empty). */
uint32_t sp_ring_used(const sp_ring_t *r);

/* ---- producer ---- */

/* Write one message of type made of iov[0..iovcnt).  The message is
 * published whole or not at all.  SP_EMSGSIZE if it can never fit. */
int sp_ring_writev(sp_ring_t *r, unsigned type, const struct iovec *iov,
                   int iovcnt, int64_t deadline_ns);
int sp_ring_write(sp_ring_t *r, unsigned type, const void *buf, size_t len,
                  int64_t deadline_ns);

/* Zero-copy: reserve room for a message of len bytes and get the spaces to
 * fill (at most *iovcnt entries in; the number used out; needs
 * ceil(len/seg_size) entries).  Then sp_ring_commit() publishes it.  One
 * reservation at a time; sp_ring_cancel() drops it. */
int sp_ring_reserve(sp_ring_t *r, size_t len, struct iovec *iov, int *iovcnt,
                    int64_t deadline_ns);
int sp_ring_commit(sp_ring_t *r, unsigned type);
void sp_ring_cancel(sp_ring_t *r);

/* Free segments the producer could take now. */
uint32_t sp_ring_free_segs(const sp_ring_t *r);

/* ---- consumer ---- */

/* Wait until a message is available.  0, SP_EAGAIN (deadline 0),
 * SP_ETIMEDOUT, SP_EPEERDEAD. */
int sp_ring_wait_readable(sp_ring_t *r, int64_t deadline_ns);

/* Read the next whole (unconsumed part of the) message into buf.  Returns
 * its length, SP_EMSGSIZE (nothing consumed) if cap is too small, or a wait
 * error.  *type gets the message type. */
long sp_ring_read(sp_ring_t *r, unsigned *type, void *buf, size_t cap,
                  int64_t deadline_ns);

/* Zero-copy: describe the next message and point iov[] at its unread bytes
 * (up to iovmax entries).  Returns the number of iov entries filled (0 for
 * an empty message) or SP_EAGAIN if nothing is there.  Does not wait. */
int sp_ring_peek(sp_ring_t *r, sp_ring_msg_t *msg, struct iovec *iov,
                 int iovmax);

/* Cut an iovec list (e.g. from sp_ring_peek) down to at most max bytes,
 * in place: *n becomes the number of entries kept.  Returns the bytes
 * kept (less than max if the list held less). */
size_t sp_iov_trim(struct iovec *iov, int *n, size_t max);

/* Consume n bytes of the current message (n <= remaining); releases every
 * segment read to the end; consuming the last byte (or 0 bytes of an empty
 * message) finishes the message.  SP_EINVAL if n is too large. */
int sp_ring_consume(sp_ring_t *r, size_t n);

/* Mark this side as an event-loop poller waiting for data (consumer) or
 * space (producer), then re-check: returns 1 if the condition already holds
 * (do not sleep), 0 if the caller may sleep until its doorbell rings.
 * sp_ring_unpoll() clears the flag. */
int sp_ring_poll_readable(sp_ring_t *r);
int sp_ring_poll_writable(sp_ring_t *r, uint32_t nseg_wanted);
void sp_ring_unpoll_reader(sp_ring_t *r);
void sp_ring_unpoll_writer(sp_ring_t *r);

#endif /* SP_RING_H */
