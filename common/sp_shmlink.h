/*
 * sp_shmlink.h - a shared-memory link: the byte stream of a link over two
 * rings in shared memory, one per direction (DESIGN.md §3.6, [S004]).
 *
 * Rendezvous.  The backend listens on a Unix stream socket at the shm:
 * path (sp_addr_listen).  A connecting proxy makes its ring (a memfd
 * sealed against shrinking and growing) and sends it with a connect
 * message (SCM_RIGHTS) on the socket; the backend checks it, maps the
 * ring, makes the reverse ring and answers the same way: connected.  The
 * socket stays open for the link's life: it carries the wake-ups, and
 * each side sees the other close or die on it (EOF).
 *
 * Data.  Each ring has one producer and one consumer: the producer
 * advances head, the consumer tail (64-bit counters; each side keeps its
 * own counter privately and only trusts the peer's after a range check:
 * the peer is another process and its bytes are input).  The link code
 * above treats the stream as it treats a socket; frames are the same.
 *
 * Wake-ups.  A consumer that finds its ring empty takes the wake-up bytes
 * off the socket, raises rd_waiting and looks again; a producer that
 * finds the ring full raises wr_waiting and looks again; each side, after
 * moving its counter, takes the peer's flag with an exchange and, if it
 * was raised, sends the peer one byte (MSG_DONTWAIT: never blocks, what
 * ever the peer does with its end).  Full fences between each counter
 * store and flag load, and between each flag store and counter re-check:
 * no lost wake-up; bytes stay queued, so a flag taken late can never
 * swallow a later sleep's wake-up.
 *
 * Pollable fd.  sp_shmlink_fd() is the socket: readable when data or room
 * arrived (a wake-up byte), when the peer's answer came, or when the peer
 * closed.  Do not wait for it to be writable: a writer that got EAGAIN
 * learns of room through readability (the link code then flushes).
 *
 * Process-private handle; nothing here blocks (every descriptor call is
 * non-blocking whatever the peer does) or logs.
 */
#ifndef SP_SHMLINK_H
#define SP_SHMLINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes per ring (each direction); what a producer offers.  A consumer
 * accepts any power of two in [SP_SHMLINK_RING_MIN, SP_SHMLINK_RING_MAX]. */
#define SP_SHMLINK_RING_DEFAULT (512u * 1024)
#define SP_SHMLINK_RING_MIN 4096u
#define SP_SHMLINK_RING_MAX (64u * 1024 * 1024)

typedef struct sp_shmlink sp_shmlink_t;

/* Client side, over a connected non-blocking Unix socket ctl (taken over:
 * closed by sp_shmlink_free): make the outgoing ring of ring_size bytes
 * and send the connect message.  Writes may start at once; reads
 * give EAGAIN until the backend's answer arrives.  Returns the handle, or
 * NULL with errno and a reason in err (ctl then stays the caller's). */
sp_shmlink_t *sp_shmlink_client(int ctl, uint32_t ring_size, char *err,
                                size_t errlen);

/* Server side, over an accepted socket ctl (taken over as above).  The
 * connect message is read, and the answer sent, by the first
 * sp_shmlink_read() that finds it: until then reads give EAGAIN. */
sp_shmlink_t *sp_shmlink_server(int ctl, uint32_t ring_size, char *err,
                                size_t errlen);

/* The pollable fd (see above). */
int sp_shmlink_fd(const sp_shmlink_t *s);

/* Copy up to cap bytes out.  > 0 bytes; 0 when the peer closed and
 * everything it wrote was read; -1 with errno: EAGAIN (nothing yet),
 * EPROTO (a malformed rendezvous or ring: the reason is in
 * sp_shmlink_err), or a system call's error. */
ssize_t sp_shmlink_read(sp_shmlink_t *s, void *buf, size_t cap);

/* Copy up to len bytes in.  > 0 bytes, or -1 with errno EAGAIN (ring
 * full: readability tells of room) or EPROTO. */
ssize_t sp_shmlink_write(sp_shmlink_t *s, const void *buf, size_t len);

/* Why the last EPROTO. */
const char *sp_shmlink_err(const sp_shmlink_t *s);

/* Unmap, close everything, free. */
void sp_shmlink_free(sp_shmlink_t *s);

/* In a child forked with the handle: close its socket and unmap its rings
 * in this process only (the parent's link is untouched). */
void sp_shmlink_drop(sp_shmlink_t *s);

#endif /* SP_SHMLINK_H */
