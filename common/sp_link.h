/*
 * sp_link.h - one link: the frame protocol over a non-blocking byte stream
 * (TCP or Unix socket now; a shared-memory ring pair later, behind the
 * same calls).  Used by the module's proxy child (client side) and by the
 * backend's dispatcher (server side), each from a single-threaded epoll
 * loop.  A link is process-private; nothing here blocks or logs.
 *
 * What the link does itself:
 *  - the handshake: the client queues HELLO at init; the server answers
 *    HELLO_ACK with its proof; the client checks that proof (when it has a
 *    secret) and sends AUTH; the server checks AUTH.  With a secret
 *    configured on a side, that side requires the peer to prove it; a
 *    side without a secret accepts an all-zero proof only.  Stream frames
 *    before the handshake completes are a protocol error.  A failed proof
 *    closes the link (SP_EAUTH) after queueing GOAWAY(AUTH).
 *  - PING -> PONG (echoed), PONG -> rtt; GOAWAY received -> draining
 *    (NORMAL, RELOAD) or closed (AUTH: SP_EAUTH; PROTOCOL, LIMIT and
 *    unknown codes: SP_ECLOSED).
 *  - framing: incremental decode with the limits of sp_frame.h; every
 *    error closes the link with a reason in l->err.
 *  - output queue: frames are appended to a buffer (no system call) and
 *    written by sp_link_flush().  Stream frames are refused with SP_EAGAIN
 *    while more than out_soft_limit bytes are queued (the caller retries
 *    after the next flush); control frames (CREDIT, ABORT, ACCEPT, END,
 *    PING/PONG, GOAWAY) always queue, so flow control can never deadlock
 *    on a full queue.
 *
 * What it leaves to the caller: streams (which stream ids exist, per-stream
 * credit windows: a sender may have at most the granted BODY bytes in
 * flight on a stream, starting from the peer's initial_window), timeouts,
 * reconnects, and closing the fd's epoll registration.
 */
#ifndef SP_LINK_H
#define SP_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "sp_frame-t.h"

typedef struct sp_link_config {
    const uint8_t *secret; /* NULL: no authentication offered/required */
    size_t secret_len;
    uint32_t max_payload;    /* largest stream-frame payload we accept */
    uint32_t initial_window; /* BODY bytes we accept per new stream */
    uint32_t max_streams;    /* advisory */
    size_t out_soft_limit;   /* queued bytes beyond which stream frames
                                get SP_EAGAIN; 0 = 4 * max_payload */
    const char *node;        /* our name, shown in the peer's logs */
} sp_link_config_t;

enum sp_link_state {
    SP_LINK_HELLO_SENT = 1, /* client: waiting for HELLO_ACK */
    SP_LINK_WAIT_HELLO,     /* server: waiting for HELLO */
    SP_LINK_WAIT_AUTH,      /* server: HELLO_ACK sent, waiting for AUTH */
    SP_LINK_UP,             /* streams may flow */
    SP_LINK_CLOSED          /* error or EOF: only sp_link_free() is left */
};

typedef struct sp_link sp_link_t;

/* Called for each stream frame (REQUEST_HEAD, ACCEPT, BODY, END,
 * RESPONSE_HEAD, ABORT, CREDIT) in order; f->payload is valid only during
 * the call.  Return 0, or a negative SP_E* to close the link (the link's
 * err then says "closed by application").  The callback may queue frames
 * and flush, but must not free the link. */
typedef int (*sp_link_frame_fn)(void *arg, sp_link_t *l, const sp_frame_t *f);

struct sp_link {
    int fd;
    struct sp_shmlink *shm; /* a shm: link's rings, or NULL (a socket) */
    int client;
    int state;
    sp_link_config_t cfg;
    /* what the peer said in its HELLO / HELLO_ACK */
    uint32_t peer_max_payload;
    uint32_t peer_initial_window;
    uint32_t peer_max_streams;
    uint32_t peer_features;
    char peer_node[64];
    /* GOAWAY seen / sent (SP_GOAWAY_* code + 1; 0 = none) */
    uint32_t goaway_rx;
    uint32_t goaway_tx;
    /* buffers (private) */
    uint8_t *ibuf;
    size_t ipos, ilen, icap;
    uint8_t *obuf;
    size_t opos, olen, ocap;
    uint8_t nonce_c[SP_NONCE_SIZE];
    uint8_t nonce_s[SP_NONCE_SIZE];
    /* liveness */
    int64_t last_rx_ns;
    int64_t ping_sent_ns; /* 0 = no PING outstanding */
    int64_t rtt_ns;
    /* statistics */
    uint64_t frames_in, frames_out, bytes_in, bytes_out;
    char err[160]; /* why the link closed */
    void *user;    /* the caller's */
};

/* Set up a link over a connected (or connecting) non-blocking fd, taking
 * ownership of it.  The config (and the secret it points to) must outlive
 * the link.  A client link queues its HELLO now.  0, SP_ESYS (memory,
 * getrandom) or SP_EINVAL (cfg->node over 255 bytes or with control
 * characters); on failure the fd stays the caller's and sp_link_free() is
 * a harmless no-op. */
int sp_link_init(sp_link_t *l, int fd, int client, const sp_link_config_t *cfg);

/* The same over a shm: link (sp_shmlink.h): ctl is the connected (client)
 * or accepted (server) rendezvous socket, taken over in every case (closed
 * on failure); l->fd stays that socket, the link's pollable fd (never
 * wait for it to be writable: room comes as readability).  ring_size as
 * for sp_shmlink_client.  0, or SP_ESYS (also for a bad ring size) or
 * SP_EINVAL with the reason in l->err. */
int sp_link_init_shm(sp_link_t *l, int ctl, int client, uint32_t ring_size,
                     const sp_link_config_t *cfg);

/* Close the fd and free the buffers. */
void sp_link_free(sp_link_t *l);

/* In a child forked with the link: close its descriptor (and unmap a shm:
 * link's rings) in this process only; the parent's link goes on. */
void sp_link_drop(sp_link_t *l);

/* The fd is readable: read until EAGAIN (or until the input buffer holds a
 * whole frame that the callback must see first), handle link frames,
 * deliver stream frames to fn.  Returns 0, or the reason the link is now
 * CLOSED: SP_ECLOSED (peer closed), SP_EPROTO, SP_ELIMIT, SP_EBADVER,
 * SP_EUNKNOWN, SP_EAUTH, SP_ESYS, or the callback's error.  After an
 * error, queued output (e.g. a GOAWAY) may still be flushed once. */
int sp_link_on_readable(sp_link_t *l, sp_link_frame_fn fn, void *arg);

/* Write queued output.  0 when the queue is empty, SP_EAGAIN when some
 * remains (wait for EPOLLOUT), SP_ESYS / SP_ECLOSED on a dead socket. */
int sp_link_flush(sp_link_t *l);

/* Whether to wait for the fd's writability when output is left (want):
 * for a socket, want; for a shm: link, never (its fd is a socket that is
 * nearly always writable; room in its ring comes as readability, and
 * sp_link_on_readable then writes). */
int sp_link_pollout(const sp_link_t *l, int want);

/* Bytes queued and not yet written. */
size_t sp_link_pending(const sp_link_t *l);

/* 1 if streams may be opened: state UP and no GOAWAY either way. */
int sp_link_usable(const sp_link_t *l);

/* Queue a stream frame.  SP_ESTATE if the link is not UP, SP_ELIMIT if len
 * is over the peer's max_payload, SP_EAGAIN for REQUEST_HEAD /
 * RESPONSE_HEAD / BODY while the queue is over the soft limit, SP_EINVAL
 * for a link frame type, a wrong fixed size, or a frame in the wrong
 * direction (REQUEST_HEAD goes client -> server; ACCEPT and RESPONSE_HEAD
 * server -> client). */
int sp_link_send(sp_link_t *l, uint8_t type, uint32_t stream, uint32_t gen,
                 const void *payload, uint32_t len);
int sp_link_sendv(sp_link_t *l, uint8_t type, uint32_t stream, uint32_t gen,
                  const struct iovec *iov, int iovcnt);

/* Control frames: never refused for the soft limit.  ABORT, CREDIT and
 * PING need state UP (SP_ESTATE otherwise: the peer would take them for a
 * protocol error); GOAWAY may be queued in any state but CLOSED. */
int sp_link_send_abort(sp_link_t *l, uint32_t stream, uint32_t gen,
                       uint32_t code, uint16_t status, const char *reason);
int sp_link_send_credit(sp_link_t *l, uint32_t stream, uint32_t gen,
                        uint32_t increment);
int sp_link_send_goaway(sp_link_t *l, uint32_t code, const char *reason);
int sp_link_ping(sp_link_t *l); /* no-op if one is outstanding */

#endif /* SP_LINK_H */
