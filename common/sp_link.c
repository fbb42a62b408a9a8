/*
 * sp_link.c - one link: the frame protocol over a non-blocking byte stream
 * (see sp_link.h for the contract, sp_frame-t.h for the wire layouts).
 *
 * Handshake (client on the left; "proof" is sp_auth_proof(), an all-zero
 * proof where a side has no secret):
 *
 *   HELLO_SENT  HELLO(versions 1..1, limits, nonce_c, node) -->  WAIT_HELLO
 *               <--  HELLO_ACK(version 1, limits, nonce_s,        WAIT_AUTH
 *                              server proof, node)
 *   check proof
 *   UP          AUTH(client proof)                          -->  check proof
 *                                                                UP
 *
 * The client is UP as soon as it has queued AUTH, so it may pipeline its
 * first requests behind it; the server reads them only after AUTH (frames
 * are processed in order).  A side with a secret requires the peer's proof
 * to be the HMAC of the same secret; a side without one requires the
 * all-zero proof, so a secret on one side only fails on both.  A proof
 * that does not verify queues GOAWAY(AUTH) and closes with SP_EAUTH; the
 * peer, receiving GOAWAY(AUTH), closes with SP_EAUTH too.
 *
 * Every other violation - a link frame in the wrong state or direction
 * (HELLO to a client, a second HELLO, AUTH before HELLO, PING before the
 * handshake), a stream frame before UP, REQUEST_HEAD sent to a client or
 * ACCEPT / RESPONSE_HEAD to a server, a malformed payload, a bad header -
 * queues GOAWAY(PROTOCOL) (GOAWAY(LIMIT) for a length over our limit) and
 * closes the link with the codec's error.  A GOAWAY received with a
 * closing code (PROTOCOL, LIMIT, or one we do not know) closes the link
 * with SP_ECLOSED, without an answer; NORMAL and RELOAD only mark it
 * draining (sp_link_usable() says 0, open streams go on).  l->err then says
 * why, with the frame's type name and numbers, never with bytes the peer chose
 * (a peer's node name and GOAWAY reason are not copied into it).
 *
 * Input.  One buffer of 16 + max(max_payload, SP_FRAME_CTL_MAX) bytes:
 * the largest frame we accept always fits, so a frame is always decoded
 * from contiguous memory and delivered to the callback without a copy.
 * After each read every complete frame is handled, then the partial frame
 * left (if any) is moved to the front; a frame's length is checked as soon
 * as its 16 header bytes are in (sp_frame_decode), so we never wait for,
 * or buffer, a frame we will refuse.
 *
 * Output.  One linear buffer (opos..olen pending), 64 KiB at first, grown
 * by doubling and compacted only when at least half of it would then be
 * free, so the moves cost O(1) per byte.  Frames are encoded straight into
 * it - the hot path (BODY, RESPONSE_HEAD, REQUEST_HEAD via sp_link_sendv)
 * makes no allocation and one copy per payload byte.  sp_link_flush()
 * writes it with send(MSG_NOSIGNAL) so a dead peer is an error, never a
 * SIGPIPE.  Stream frames are refused while more than out_soft_limit bytes
 * are pending; control frames always queue.  The one queue growth a peer
 * can drive without reading is PONG replies to its PINGs: past the soft
 * limit plus SP_LINK_CTL_SLACK the link is closed with SP_ELIMIT instead.
 *
 * Single-threaded: a link belongs to one event loop.  The callback may
 * queue frames on its link (and others) but must not free it.
 */
#include "sp_link.h"
#include "sp_shmlink.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_auth.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "sp_proc.h"

#define SP_LINK_OBUF_INIT (64u * 1024)
#define SP_LINK_CTL_SLACK (1u << 20) /* PONGs beyond the soft limit */
#define SP_LINK_REASON_MAX 200u      /* GOAWAY / ABORT reasons we send */
#define SP_LINK_NODE_MAX 255u        /* our node name in HELLO / HELLO_ACK */

/* A HELLO_ACK with the longest node name still fits a link frame. */
_Static_assert(SP_HELLO_ACK_MIN_SIZE + SP_LINK_NODE_MAX <= SP_FRAME_CTL_MAX,
               "node name too long for a link frame");

static const uint8_t zero_proof[SP_PROOF_SIZE];

static const char *state_name(int s)
{
    switch (s) {
    case SP_LINK_HELLO_SENT:
        return "HELLO_SENT";
    case SP_LINK_WAIT_HELLO:
        return "WAIT_HELLO";
    case SP_LINK_WAIT_AUTH:
        return "WAIT_AUTH";
    case SP_LINK_UP:
        return "UP";
    case SP_LINK_CLOSED:
        return "CLOSED";
    }
    return "?";
}

static int has_secret(const sp_link_t *l)
{
    return l->cfg.secret != NULL;
}

/* ---- closing ---------------------------------------------------------- */

static int link_fail(sp_link_t *l, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Close the link with rc and a reason (the first reason wins).  errno is
 * kept for SP_ESYS callers. */
static int link_fail(sp_link_t *l, int rc, const char *fmt, ...)
{
    int e = errno;

    if (l->state != SP_LINK_CLOSED) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err, sizeof(l->err), fmt, ap);
        va_end(ap);
        l->state = SP_LINK_CLOSED;
    }
    errno = e;
    return rc;
}

/* ---- output queue ----------------------------------------------------- */

/* Room for n more bytes at obuf + olen, or NULL (out of memory). */
static uint8_t *out_reserve(sp_link_t *l, size_t n)
{
    size_t used = l->olen - l->opos, cap;
    uint8_t *nb;

    if (l->ocap - l->olen >= n)
        return l->obuf + l->olen;
    if (n > SIZE_MAX / 4 - used) {
        errno = ENOMEM;
        return NULL;
    }
    if (l->opos > 0) {
        memmove(l->obuf, l->obuf + l->opos, used);
        l->opos = 0;
        l->olen = used;
        if (used + n <= l->ocap / 2)
            return l->obuf + l->olen;
    }
    cap = l->ocap ? l->ocap : SP_LINK_OBUF_INIT;
    while (cap < 2 * (used + n))
        cap *= 2;
    if ((nb = realloc(l->obuf, cap)) == NULL)
        return l->ocap - l->olen >= n ? l->obuf + l->olen : NULL;
    l->obuf = nb;
    l->ocap = cap;
    return l->obuf + l->olen;
}

/* Append a whole frame whose payload is elsewhere. */
static int queue_frame(sp_link_t *l, uint8_t type, uint32_t stream,
                       uint32_t gen, const void *payload, uint32_t len)
{
    uint8_t *dst = out_reserve(l, SP_FRAME_HDR_SIZE + (size_t)len);
    int n;

    if (dst == NULL)
        return SP_ESYS;
    n = sp_frame_encode(dst, SP_FRAME_HDR_SIZE + (size_t)len, type, SP_FF_NONE,
                        stream, gen, payload, len);
    if (n < 0)
        return n;
    l->olen += (size_t)n;
    l->frames_out++;
    return 0;
}

/* A reason string we may send: at most SP_LINK_REASON_MAX bytes, control
 * characters replaced (the peer's decoder refuses them). */
static sp_str_t reason_copy(const char *reason, char *buf, size_t cap)
{
    size_t n = 0;
    sp_str_t s;

    if (reason != NULL)
        for (; reason[n] != '\0' && n + 1 < cap && n < SP_LINK_REASON_MAX; n++)
            buf[n] = ((unsigned char)reason[n] < 0x20 || reason[n] == 0x7f)
                         ? '?'
                         : reason[n];
    buf[n] = '\0';
    s.ptr = buf;
    s.len = (uint32_t)n;
    return s;
}

static int queue_goaway(sp_link_t *l, uint32_t code, const char *reason)
{
    uint8_t pl[SP_GOAWAY_MIN_SIZE + SP_LINK_REASON_MAX + 8];
    char rb[SP_LINK_REASON_MAX + 1];
    sp_goaway_t g;
    int n;

    g.code = code;
    g.reason = reason_copy(reason, rb, sizeof(rb));
    if ((n = sp_goaway_encode(&g, pl, sizeof(pl))) < 0)
        return n;
    if ((n = queue_frame(l, SP_FT_GOAWAY, 0, 0, pl, (uint32_t)n)) < 0)
        return n;
    l->goaway_tx = code < UINT32_MAX ? code + 1 : UINT32_MAX;
    return 0;
}

/* Queue GOAWAY(code) saying why, then close with rc. */
static int proto_fail(sp_link_t *l, int rc, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int proto_fail(sp_link_t *l, int rc, uint32_t code, const char *fmt, ...)
{
    va_list ap;

    if (l->state == SP_LINK_CLOSED)
        return rc;
    va_start(ap, fmt);
    vsnprintf(l->err, sizeof(l->err), fmt, ap);
    va_end(ap);
    /* Our own text (names and numbers only): fine to show the peer. */
    (void)queue_goaway(l, code, l->err);
    l->state = SP_LINK_CLOSED;
    return rc;
}

/* ---- setup ------------------------------------------------------------ */

int sp_link_init(sp_link_t *l, int fd, int client, const sp_link_config_t *cfg)
{
    sp_link_config_t c = *cfg;
    size_t node_len;
    int rc;

    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->state = SP_LINK_CLOSED;
    if (c.max_payload == 0)
        c.max_payload = SP_FRAME_MAX_PAYLOAD_DEFAULT;
    if (c.max_payload < SP_FRAME_MAX_PAYLOAD_MIN)
        c.max_payload = SP_FRAME_MAX_PAYLOAD_MIN;
    if (c.max_payload > SP_FRAME_MAX_PAYLOAD_CEIL)
        c.max_payload = SP_FRAME_MAX_PAYLOAD_CEIL;
    if (c.initial_window > SP_FRAME_WINDOW_MAX)
        c.initial_window = SP_FRAME_WINDOW_MAX;
    if (c.out_soft_limit == 0)
        c.out_soft_limit = 4 * (size_t)c.max_payload;
    if (c.secret == NULL || c.secret_len == 0) {
        c.secret = NULL;
        c.secret_len = 0;
    }
    if (c.node == NULL)
        c.node = "";
    node_len = strlen(c.node);
    if (node_len > SP_LINK_NODE_MAX ||
        !sp_wire_str_ok((sp_str_t){c.node, (uint32_t)node_len}, SP_WIRE_TEXT)) {
        snprintf(l->err, sizeof(l->err),
                 "node name must be up to %u printable bytes",
                 SP_LINK_NODE_MAX);
        return SP_EINVAL;
    }
    l->cfg = c;
    l->client = client != 0;
    l->icap =
        SP_FRAME_HDR_SIZE +
        (c.max_payload > SP_FRAME_CTL_MAX ? c.max_payload : SP_FRAME_CTL_MAX);
    l->ibuf = malloc(l->icap);
    l->obuf = malloc(SP_LINK_OBUF_INIT);
    if (l->ibuf == NULL || l->obuf == NULL) {
        errno = ENOMEM;
        snprintf(l->err, sizeof(l->err), "out of memory for link buffers");
        rc = SP_ESYS;
        goto fail;
    }
    l->ocap = SP_LINK_OBUF_INIT;
    if (sp_auth_nonce(l->client ? l->nonce_c : l->nonce_s) != 0) {
        snprintf(l->err, sizeof(l->err), "getrandom: %s", strerror(errno));
        rc = SP_ESYS;
        goto fail;
    }
    l->last_rx_ns = sp_now_ns();
    if (l->client) {
        uint8_t pl[SP_HELLO_MIN_SIZE + SP_LINK_NODE_MAX];
        sp_hello_t h;
        int n;

        memset(&h, 0, sizeof(h));
        h.min_version = SP_PROTO_VERSION;
        h.max_version = SP_PROTO_VERSION;
        h.max_payload = c.max_payload;
        h.initial_window = c.initial_window;
        h.max_streams = c.max_streams;
        h.features = SP_FEAT_NONE;
        memcpy(h.nonce, l->nonce_c, SP_NONCE_SIZE);
        h.node = (sp_str_t){c.node, (uint32_t)node_len};
        n = sp_hello_encode(&h, pl, sizeof(pl));
        if (n < 0 ||
            (n = queue_frame(l, SP_FT_HELLO, 0, 0, pl, (uint32_t)n)) < 0) {
            rc = n == SP_ESYS ? SP_ESYS : SP_EINVAL;
            goto fail;
        }
        l->state = SP_LINK_HELLO_SENT;
    } else {
        l->state = SP_LINK_WAIT_HELLO;
    }
    l->fd = fd;
    return 0;
fail:
    free(l->obuf);
    free(l->ibuf);
    l->obuf = l->ibuf = NULL;
    l->ocap = l->icap = 0;
    l->olen = 0;
    l->state = SP_LINK_CLOSED;
    return rc;
}

int sp_link_init_shm(sp_link_t *l, int ctl, int client, uint32_t ring_size,
                     const sp_link_config_t *cfg)
{
    char err[sizeof(l->err)];
    sp_shmlink_t *shm = client ? sp_shmlink_client(ctl, ring_size, err,
                                                   sizeof(err))
                               : sp_shmlink_server(ctl, ring_size, err,
                                                   sizeof(err));
    if (shm == NULL) {
        int e = errno;
        close(ctl);
        memset(l, 0, sizeof(*l));
        l->fd = -1;
        l->state = SP_LINK_CLOSED;
        snprintf(l->err, sizeof(l->err), "%s", err);
        errno = e;
        return SP_ESYS;
    }
    int rc = sp_link_init(l, sp_shmlink_fd(shm), client, cfg);
    if (rc < 0) {
        sp_shmlink_free(shm); /* closes ctl and the pollable fd */
        return rc;
    }
    l->shm = shm;
    return 0;
}

void sp_link_drop(sp_link_t *l)
{
    if (l->shm != NULL)
        sp_shmlink_drop(l->shm); /* l->fd is one of its */
    else if (l->fd >= 0)
        close(l->fd);
}

void sp_link_free(sp_link_t *l)
{
    if (l->shm != NULL) {
        sp_shmlink_free(l->shm); /* l->fd is one of its */
        l->shm = NULL;
    } else if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    free(l->ibuf);
    free(l->obuf);
    l->ibuf = l->obuf = NULL;
    l->ipos = l->ilen = l->icap = 0;
    l->opos = l->olen = l->ocap = 0;
    memset(l->nonce_c, 0, sizeof(l->nonce_c));
    memset(l->nonce_s, 0, sizeof(l->nonce_s));
    l->state = SP_LINK_CLOSED;
}

/* ---- receiving: link frames ------------------------------------------- */

static void copy_node(sp_link_t *l, sp_str_t node)
{
    size_t n = node.len < sizeof(l->peer_node) - 1 ? node.len
                                                   : sizeof(l->peer_node) - 1;
    /* The decoder allowed printable bytes only (SP_WIRE_TEXT). */
    memcpy(l->peer_node, node.ptr, n);
    l->peer_node[n] = '\0';
}

static int payload_fail(sp_link_t *l, const sp_frame_t *f, int rc)
{
    return proto_fail(
        l, rc, rc == SP_ELIMIT ? SP_GOAWAY_LIMIT : SP_GOAWAY_PROTOCOL,
        "malformed %s payload (%u bytes): %s", sp_frame_type_name(f->hdr.type),
        f->hdr.len, sp_strerror(rc));
}

static int unexpected(sp_link_t *l, const sp_frame_t *f)
{
    if (l->state == SP_LINK_UP)
        return proto_fail(l, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                          "%s frame after the handshake",
                          sp_frame_type_name(f->hdr.type));
    return proto_fail(l, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                      "%s frame (stream %u) before the handshake completed "
                      "(%s side, state %s)",
                      sp_frame_type_name(f->hdr.type), f->hdr.stream,
                      l->client ? "client" : "server", state_name(l->state));
}

static int auth_fail(sp_link_t *l, const char *why)
{
    return proto_fail(l, SP_EAUTH, SP_GOAWAY_AUTH, "authentication failed: %s",
                      why);
}

static int on_hello(sp_link_t *l, const sp_frame_t *f)
{
    uint8_t pl[SP_HELLO_ACK_MIN_SIZE + SP_LINK_NODE_MAX];
    sp_hello_ack_t a;
    sp_hello_t h;
    int rc, n;

    if (l->client || l->state != SP_LINK_WAIT_HELLO)
        return unexpected(l, f);
    if ((rc = sp_hello_decode(f->payload, f->hdr.len, &h)) != 0)
        return payload_fail(l, f, rc);
    if (h.min_version > SP_PROTO_VERSION || h.max_version < SP_PROTO_VERSION)
        return proto_fail(l, SP_EBADVER, SP_GOAWAY_PROTOCOL,
                          "HELLO offers versions %u..%u, this side speaks %u",
                          h.min_version, h.max_version, SP_PROTO_VERSION);
    l->peer_max_payload = h.max_payload;
    l->peer_initial_window = h.initial_window;
    l->peer_max_streams = h.max_streams;
    l->peer_features = h.features;
    copy_node(l, h.node);
    memcpy(l->nonce_c, h.nonce, SP_NONCE_SIZE);

    memset(&a, 0, sizeof(a));
    a.version = SP_PROTO_VERSION;
    a.max_payload = l->cfg.max_payload;
    a.initial_window = l->cfg.initial_window;
    a.max_streams = l->cfg.max_streams;
    a.features = SP_FEAT_NONE;
    memcpy(a.nonce, l->nonce_s, SP_NONCE_SIZE);
    if (has_secret(l))
        sp_auth_proof(l->cfg.secret, l->cfg.secret_len, 0, l->nonce_c,
                      l->nonce_s, a.proof);
    a.node = (sp_str_t){l->cfg.node, (uint32_t)strlen(l->cfg.node)};
    n = sp_hello_ack_encode(&a, pl, sizeof(pl));
    if (n < 0 ||
        (n = queue_frame(l, SP_FT_HELLO_ACK, 0, 0, pl, (uint32_t)n)) < 0)
        return link_fail(l, n == SP_ESYS ? SP_ESYS : SP_EINVAL,
                         "cannot queue HELLO_ACK: %s", sp_strerror(n));
    l->state = SP_LINK_WAIT_AUTH;
    return 0;
}

static int on_hello_ack(sp_link_t *l, const sp_frame_t *f)
{
    uint8_t proof[SP_PROOF_SIZE];
    sp_hello_ack_t a;
    int rc;

    if (!l->client || l->state != SP_LINK_HELLO_SENT)
        return unexpected(l, f);
    if ((rc = sp_hello_ack_decode(f->payload, f->hdr.len, &a)) != 0)
        return payload_fail(l, f, rc);
    if (a.version != SP_PROTO_VERSION)
        return proto_fail(l, SP_EBADVER, SP_GOAWAY_PROTOCOL,
                          "HELLO_ACK chose version %u, this side offered "
                          "%u..%u",
                          a.version, SP_PROTO_VERSION, SP_PROTO_VERSION);
    l->peer_max_payload = a.max_payload;
    l->peer_initial_window = a.initial_window;
    l->peer_max_streams = a.max_streams;
    l->peer_features = a.features;
    copy_node(l, a.node);
    memcpy(l->nonce_s, a.nonce, SP_NONCE_SIZE);
    if (has_secret(l)) {
        if (!sp_auth_verify(l->cfg.secret, l->cfg.secret_len, 0, l->nonce_c,
                            l->nonce_s, a.proof))
            return auth_fail(l, "the server's HELLO_ACK proof does not match "
                                "our secret");
        sp_auth_proof(l->cfg.secret, l->cfg.secret_len, 1, l->nonce_c,
                      l->nonce_s, proof);
    } else {
        if (memcmp(a.proof, zero_proof, SP_PROOF_SIZE) != 0)
            return auth_fail(l, "the server proves a secret and this side "
                                "has none");
        memset(proof, 0, sizeof(proof));
    }
    rc = queue_frame(l, SP_FT_AUTH, 0, 0, proof, SP_PROOF_SIZE);
    if (rc < 0)
        return link_fail(l, rc, "cannot queue AUTH: %s", sp_strerror(rc));
    l->state = SP_LINK_UP;
    return 0;
}

static int on_auth(sp_link_t *l, const sp_frame_t *f)
{
    uint8_t proof[SP_PROOF_SIZE];
    int rc;

    if (l->client || l->state != SP_LINK_WAIT_AUTH)
        return unexpected(l, f);
    if ((rc = sp_auth_decode(f->payload, f->hdr.len, proof)) != 0)
        return payload_fail(l, f, rc);
    if (has_secret(l)) {
        if (!sp_auth_verify(l->cfg.secret, l->cfg.secret_len, 1, l->nonce_c,
                            l->nonce_s, proof))
            return auth_fail(l, "the client's AUTH proof does not match our "
                                "secret");
    } else if (memcmp(proof, zero_proof, SP_PROOF_SIZE) != 0) {
        return auth_fail(l, "the client proves a secret and this side has "
                            "none");
    }
    l->state = SP_LINK_UP;
    return 0;
}

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int on_ping(sp_link_t *l, const sp_frame_t *f)
{
    int rc;

    if (l->state != SP_LINK_UP)
        return unexpected(l, f);
    if (sp_link_pending(l) > l->cfg.out_soft_limit + SP_LINK_CTL_SLACK)
        return link_fail(l, SP_ELIMIT,
                         "output queue at %zu bytes while the peer keeps "
                         "sending PINGs without reading",
                         sp_link_pending(l));
    rc = queue_frame(l, SP_FT_PONG, 0, 0, f->payload, SP_PING_SIZE);
    if (rc < 0)
        return link_fail(l, rc, "cannot queue PONG: %s", sp_strerror(rc));
    return 0;
}

static int on_pong(sp_link_t *l, const sp_frame_t *f)
{
    uint8_t want[SP_PING_SIZE];

    if (l->state != SP_LINK_UP)
        return unexpected(l, f);
    if (l->ping_sent_ns == 0)
        return 0; /* unsolicited: harmless */
    be64(want, (uint64_t)l->ping_sent_ns);
    if (memcmp(want, f->payload, SP_PING_SIZE) != 0)
        return 0; /* not an echo of ours: ignore */
    l->rtt_ns = sp_now_ns() - l->ping_sent_ns;
    l->ping_sent_ns = 0;
    return 0;
}

static int on_goaway(sp_link_t *l, const sp_frame_t *f)
{
    sp_goaway_t g;
    int rc;

    if ((rc = sp_goaway_decode(f->payload, f->hdr.len, &g)) != 0)
        return payload_fail(l, f, rc);
    l->goaway_rx = g.code < UINT32_MAX ? g.code + 1 : UINT32_MAX;
    /* The peer's reason is its own text: it is for the caller to log from
     * the frame if at all, never copied into l->err. */
    switch (g.code) {
    case SP_GOAWAY_AUTH:
        return link_fail(l, SP_EAUTH,
                         "the peer refused authentication (GOAWAY %s, "
                         "code %u, in state %s)",
                         sp_goaway_code_name(g.code), g.code,
                         state_name(l->state));
    case SP_GOAWAY_NORMAL:
    case SP_GOAWAY_RELOAD:
        return 0; /* drain */
    }
    /* PROTOCOL, LIMIT, and unknown codes (docs/protocol.md 2.6): the peer
     * closes right after. */
    return link_fail(l, SP_ECLOSED,
                     "the peer is closing the link (GOAWAY %s, code %u)",
                     sp_goaway_code_name(g.code), g.code);
}

/* ---- receiving: dispatch ---------------------------------------------- */

static int hdr_fail(sp_link_t *l, int rc, const sp_frame_hdr_t *h)
{
    const char *name = sp_frame_type_name(h->type);

    switch (rc) {
    case SP_EBADVER:
        return proto_fail(l, rc, SP_GOAWAY_PROTOCOL,
                          "frame version %u (type %u), this side speaks %u",
                          h->version, h->type, SP_PROTO_VERSION);
    case SP_EUNKNOWN:
        return proto_fail(l, rc, SP_GOAWAY_PROTOCOL,
                          "unknown frame type %u (len %u)", h->type, h->len);
    case SP_ELIMIT:
        return proto_fail(l, rc, SP_GOAWAY_LIMIT,
                          "%s frame of %u bytes on stream %u is over the "
                          "limit of %u",
                          name, h->len, h->stream,
                          h->type < SP_FT_REQUEST_HEAD ? SP_FRAME_CTL_MAX
                                                       : l->cfg.max_payload);
    default:
        return proto_fail(l, rc, SP_GOAWAY_PROTOCOL,
                          "bad %s frame header (flags 0x%04x, stream %u, "
                          "gen %u, len %u)",
                          name, h->flags, h->stream, h->gen, h->len);
    }
}

/* Whether a stream frame of this type may travel to the server (to_server)
 * or to the client: heads and ACCEPT go one way only (docs/protocol.md
 * 1.2). */
static int direction_ok(uint8_t type, int to_server)
{
    switch (type) {
    case SP_FT_REQUEST_HEAD:
        return to_server;
    case SP_FT_ACCEPT:
    case SP_FT_RESPONSE_HEAD:
        return !to_server;
    }
    return 1;
}

static int handle(sp_link_t *l, const sp_frame_t *f, sp_link_frame_fn fn,
                  void *arg)
{
    int rc;

    switch (f->hdr.type) {
    case SP_FT_HELLO:
        return on_hello(l, f);
    case SP_FT_HELLO_ACK:
        return on_hello_ack(l, f);
    case SP_FT_AUTH:
        return on_auth(l, f);
    case SP_FT_PING:
        return on_ping(l, f);
    case SP_FT_PONG:
        return on_pong(l, f);
    case SP_FT_GOAWAY:
        return on_goaway(l, f);
    }
    /* A stream frame (the codec knows no other types). */
    if (l->state != SP_LINK_UP)
        return unexpected(l, f);
    if (!direction_ok(f->hdr.type, !l->client))
        return proto_fail(l, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                          "%s frame (stream %u) sent to the %s",
                          sp_frame_type_name(f->hdr.type), f->hdr.stream,
                          l->client ? "client" : "server");
    if (fn == NULL)
        return 0;
    rc = fn(arg, l, f);
    if (rc < 0)
        return link_fail(l, rc,
                         "closed by application (%s) at a %s frame on "
                         "stream %u gen %u",
                         sp_strerror(rc), sp_frame_type_name(f->hdr.type),
                         f->hdr.stream, f->hdr.gen);
    /* The callback may flush, and a flush may find the socket dead; l->err
     * already says so. */
    if (l->state == SP_LINK_CLOSED)
        return SP_ECLOSED;
    return 0;
}

/* Handle every complete frame in the input buffer. */
static int drain_input(sp_link_t *l, sp_link_frame_fn fn, void *arg)
{
    const sp_frame_limits_t lim = {l->cfg.max_payload};
    sp_frame_t f;
    int n, rc;

    while (l->ipos < l->ilen) {
        n = sp_frame_decode(l->ibuf + l->ipos, l->ilen - l->ipos, &lim, &f);
        if (n == SP_EAGAIN)
            break;
        if (n < 0)
            return hdr_fail(l, n, &f.hdr);
        /* The buffer is not moved until the loop ends, so f.payload stays
         * valid through the callback. */
        l->ipos += (size_t)n;
        l->frames_in++;
        if ((rc = handle(l, &f, fn, arg)) < 0)
            return rc;
    }
    if (l->ipos == l->ilen) {
        l->ipos = l->ilen = 0;
    } else if (l->ipos > 0) {
        memmove(l->ibuf, l->ibuf + l->ipos, l->ilen - l->ipos);
        l->ilen -= l->ipos;
        l->ipos = 0;
    }
    return 0;
}

/* The byte stream: a socket (or a pipe, in tests) or a shm: link. */
static ssize_t link_read(sp_link_t *l, void *buf, size_t cap)
{
    if (l->shm != NULL)
        return sp_shmlink_read(l->shm, buf, cap);
    return read(l->fd, buf, cap);
}

static ssize_t link_write(sp_link_t *l, const void *buf, size_t len)
{
    if (l->shm != NULL)
        return sp_shmlink_write(l->shm, buf, len);
    ssize_t n = send(l->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK) /* a pipe-like test shim */
        n = write(l->fd, buf, len);
    return n;
}

int sp_link_on_readable(sp_link_t *l, sp_link_frame_fn fn, void *arg)
{
    int rc;

    if (l->state == SP_LINK_CLOSED || l->ibuf == NULL)
        return SP_ESTATE;
    for (;;) {
        if ((rc = drain_input(l, fn, arg)) < 0)
            return rc;
        /* A partial frame is shorter than the largest one we accept, which
         * fits the buffer: there is always room to read into. */
        ssize_t r = link_read(l, l->ibuf + l->ilen, l->icap - l->ilen);
        if (r > 0) {
            l->ilen += (size_t)r;
            l->bytes_in += (uint64_t)r;
            l->last_rx_ns = sp_now_ns();
            continue;
        }
        if (r == 0) {
            if (l->ilen > 0)
                return link_fail(l, SP_ECLOSED,
                                 "the peer closed the link in the middle of "
                                 "a frame (%zu bytes of it received)",
                                 l->ilen);
            if (l->goaway_rx)
                return link_fail(l, SP_ECLOSED,
                                 "the peer closed the link after GOAWAY %s",
                                 sp_goaway_code_name(l->goaway_rx - 1));
            return link_fail(l, SP_ECLOSED, "the peer closed the link (%s)",
                             state_name(l->state));
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) {
            /* A shm: link learns of room through readability: write what
             * waited for it. */
            if (l->shm != NULL && l->opos < l->olen) {
                rc = sp_link_flush(l);
                if (rc < 0 && rc != SP_EAGAIN)
                    return rc;
            }
            return 0;
        }
        if (errno == EPROTO && l->shm != NULL)
            return link_fail(l, SP_EPROTO, "shm: link: %s",
                             sp_shmlink_err(l->shm));
        if (errno == ECONNRESET)
            return link_fail(l, SP_ECLOSED,
                             "the peer reset the link (read: %s)",
                             strerror(errno));
        return link_fail(l, SP_ESYS, "read: %s", strerror(errno));
    }
}

/* ---- sending ---------------------------------------------------------- */

int sp_link_pollout(const sp_link_t *l, int want)
{
    return want && l->shm == NULL;
}

int sp_link_flush(sp_link_t *l)
{
    while (l->opos < l->olen) {
        ssize_t n = link_write(l, l->obuf + l->opos, l->olen - l->opos);
        if (n > 0) {
            l->opos += (size_t)n;
            l->bytes_out += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK ||
            errno == ENOTCONN)
            return SP_EAGAIN;
        /* Dead socket: nothing queued can ever be written. */
        l->opos = l->olen = 0;
        if (errno == EPROTO && l->shm != NULL)
            return link_fail(l, SP_EPROTO, "shm: link: %s",
                             sp_shmlink_err(l->shm));
        if (errno == EPIPE || errno == ECONNRESET)
            return link_fail(l, SP_ECLOSED,
                             "the peer closed the link (write: %s)",
                             strerror(errno));
        return link_fail(l, SP_ESYS, "write: %s", strerror(errno));
    }
    l->opos = l->olen = 0;
    /* Give back what a burst (huge frames, a PONG flood) made us grow. */
    if (l->ocap > 16 * (size_t)SP_LINK_OBUF_INIT &&
        l->ocap > 4 * l->cfg.out_soft_limit) {
        uint8_t *nb = realloc(l->obuf, SP_LINK_OBUF_INIT);
        if (nb != NULL) {
            l->obuf = nb;
            l->ocap = SP_LINK_OBUF_INIT;
        }
    }
    return 0;
}

size_t sp_link_pending(const sp_link_t *l)
{
    return l->olen - l->opos;
}

int sp_link_usable(const sp_link_t *l)
{
    return l->state == SP_LINK_UP && l->goaway_rx == 0 && l->goaway_tx == 0;
}

static int is_stream_type(uint8_t type)
{
    switch (type) {
    case SP_FT_REQUEST_HEAD:
    case SP_FT_ACCEPT:
    case SP_FT_BODY:
    case SP_FT_END:
    case SP_FT_RESPONSE_HEAD:
    case SP_FT_ABORT:
    case SP_FT_CREDIT:
        return 1;
    }
    return 0;
}

int sp_link_sendv(sp_link_t *l, uint8_t type, uint32_t stream, uint32_t gen,
                  const struct iovec *iov, int iovcnt)
{
    size_t len = 0, off;
    uint8_t *dst;
    int i, n;

    if (l->state != SP_LINK_UP)
        return SP_ESTATE;
    if (!is_stream_type(type) || !direction_ok(type, l->client) || iovcnt < 0 ||
        (iovcnt > 0 && iov == NULL))
        return SP_EINVAL;
    for (i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0 && iov[i].iov_base == NULL)
            return SP_EINVAL;
        if (iov[i].iov_len > l->peer_max_payload - len)
            return SP_ELIMIT;
        len += iov[i].iov_len;
    }
    if ((type == SP_FT_BODY || type == SP_FT_REQUEST_HEAD ||
         type == SP_FT_RESPONSE_HEAD) &&
        sp_link_pending(l) > l->cfg.out_soft_limit)
        return SP_EAGAIN;
    if ((dst = out_reserve(l, SP_FRAME_HDR_SIZE + len)) == NULL)
        return SP_ESYS;
    for (i = 0, off = SP_FRAME_HDR_SIZE; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(dst + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    /* In place: the codec checks the frame (fixed sizes of END, ACCEPT,
     * CREDIT) without copying the payload again. */
    n = sp_frame_encode(dst, SP_FRAME_HDR_SIZE + len, type, SP_FF_NONE, stream,
                        gen, dst + SP_FRAME_HDR_SIZE, (uint32_t)len);
    if (n < 0)
        return n == SP_EMSGSIZE ? SP_ELIMIT : SP_EINVAL;
    l->olen += (size_t)n;
    l->frames_out++;
    return 0;
}

int sp_link_send(sp_link_t *l, uint8_t type, uint32_t stream, uint32_t gen,
                 const void *payload, uint32_t len)
{
    struct iovec iov = {(void *)(uintptr_t)payload, len};

    if (len > 0 && payload == NULL)
        return SP_EINVAL;
    return sp_link_sendv(l, type, stream, gen, &iov, len > 0 ? 1 : 0);
}

int sp_link_send_abort(sp_link_t *l, uint32_t stream, uint32_t gen,
                       uint32_t code, uint16_t status, const char *reason)
{
    uint8_t pl[SP_ABORT_MIN_SIZE + SP_LINK_REASON_MAX + 8];
    char rb[SP_LINK_REASON_MAX + 1];
    sp_abort_t a;
    int n;

    if (l->state != SP_LINK_UP)
        return SP_ESTATE;
    a.code = code;
    a.status = status;
    a.reason = reason_copy(reason, rb, sizeof(rb));
    if ((n = sp_abort_encode(&a, pl, sizeof(pl))) < 0)
        return n;
    return queue_frame(l, SP_FT_ABORT, stream, gen, pl, (uint32_t)n);
}

int sp_link_send_credit(sp_link_t *l, uint32_t stream, uint32_t gen,
                        uint32_t increment)
{
    uint8_t pl[SP_CREDIT_SIZE];
    int n;

    if (l->state != SP_LINK_UP)
        return SP_ESTATE;
    if ((n = sp_credit_encode(increment, pl, sizeof(pl))) < 0)
        return n;
    return queue_frame(l, SP_FT_CREDIT, stream, gen, pl, SP_CREDIT_SIZE);
}

int sp_link_send_goaway(sp_link_t *l, uint32_t code, const char *reason)
{
    if (l->state == SP_LINK_CLOSED)
        return SP_ESTATE;
    return queue_goaway(l, code, reason);
}

int sp_link_ping(sp_link_t *l)
{
    uint8_t pl[SP_PING_SIZE];
    int64_t now;
    int rc;

    if (l->state != SP_LINK_UP)
        return SP_ESTATE;
    if (l->ping_sent_ns != 0)
        return 0;
    if ((now = sp_now_ns()) == 0)
        now = 1;
    be64(pl, (uint64_t)now);
    if ((rc = queue_frame(l, SP_FT_PING, 0, 0, pl, SP_PING_SIZE)) < 0)
        return rc;
    l->ping_sent_ns = now;
    return 0;
}
