/*
 * sp_frame.c - link frame codec: header, whole frames, typed payloads, and
 * the wire cursors the head codec (sp_head.c) builds on.
 *
 * Layouts are drawn in sp_frame-t.h and docs/protocol.md.  The design
 * rules, all from "a peer may be hostile until the handshake says
 * otherwise, and buggy after it":
 *
 *  - The decoder is resumable in the jsmn manner: it holds no state, the
 *    caller keeps appending bytes and calls again from the frame boundary;
 *    SP_EAGAIN means "incomplete", any other error is fatal for the link.
 *  - A length is checked against its limit as soon as the 16 header bytes
 *    are in (httpd's ajp_msg_check_header does the same), so a receiver
 *    never waits for, or buffers, a payload it will refuse.
 *  - Every read goes through a bounds-checked cursor with a sticky error;
 *    typed decoders read field by field and finish with "consumed exactly
 *    everything" (trailing bytes are an error).
 *  - Encodings are canonical (one byte string per value), and encoders
 *    refuse with SP_EINVAL exactly what decoders refuse, so decode followed
 *    by encode reproduces the input bytes; the fuzz targets check that.
 *
 * No allocation, no logging, no global state: safe from any thread.
 */
#include "sp_frame.h"

#include <string.h>

#include "sp_error.h"

/* ---- big-endian load/store -------------------------------------------- */

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- names ------------------------------------------------------------ */

/* Per-type facts.  fixed: the only valid payload length, or -1. */
static const struct frame_type {
    const char *name;
    int link;
    int fixed;
} frame_types[] = {
    [SP_FT_HELLO] = {"HELLO", 1, -1},
    [SP_FT_HELLO_ACK] = {"HELLO_ACK", 1, -1},
    [SP_FT_AUTH] = {"AUTH", 1, SP_PROOF_SIZE},
    [SP_FT_PING] = {"PING", 1, SP_PING_SIZE},
    [SP_FT_PONG] = {"PONG", 1, SP_PING_SIZE},
    [SP_FT_GOAWAY] = {"GOAWAY", 1, -1},
    [SP_FT_REQUEST_HEAD] = {"REQUEST_HEAD", 0, -1},
    [SP_FT_ACCEPT] = {"ACCEPT", 0, 0},
    [SP_FT_BODY] = {"BODY", 0, -1},
    [SP_FT_END] = {"END", 0, 0},
    [SP_FT_RESPONSE_HEAD] = {"RESPONSE_HEAD", 0, -1},
    [SP_FT_ABORT] = {"ABORT", 0, -1},
    [SP_FT_CREDIT] = {"CREDIT", 0, SP_CREDIT_SIZE},
};

#define NTYPES (sizeof(frame_types) / sizeof(frame_types[0]))

static const struct frame_type *frame_type(unsigned type)
{
    if (type >= NTYPES || frame_types[type].name == NULL)
        return NULL;
    return &frame_types[type];
}

const char *sp_frame_type_name(unsigned type)
{
    const struct frame_type *t = frame_type(type);
    return t ? t->name : "?";
}

/* clang-format off */
const char *sp_abort_code_name(uint32_t code)
{
    switch (code) {
    case SP_ABORT_CANCEL: return "CANCEL";
    case SP_ABORT_TIMEOUT: return "TIMEOUT";
    case SP_ABORT_WORKER_CRASH: return "WORKER_CRASH";
    case SP_ABORT_OVERLOAD: return "OVERLOAD";
    case SP_ABORT_PROTOCOL: return "PROTOCOL";
    case SP_ABORT_INTERNAL: return "INTERNAL";
    case SP_ABORT_UNAVAILABLE: return "UNAVAILABLE";
    case SP_ABORT_SHUTDOWN: return "SHUTDOWN";
    }
    return "?";
}

const char *sp_goaway_code_name(uint32_t code)
{
    switch (code) {
    case SP_GOAWAY_NORMAL: return "NORMAL";
    case SP_GOAWAY_RELOAD: return "RELOAD";
    case SP_GOAWAY_AUTH: return "AUTH";
    case SP_GOAWAY_PROTOCOL: return "PROTOCOL";
    case SP_GOAWAY_LIMIT: return "LIMIT";
    }
    return "?";
}
/* clang-format on */

/* ---- header ----------------------------------------------------------- */

void sp_frame_hdr_encode(const sp_frame_hdr_t *h,
                         uint8_t out[SP_FRAME_HDR_SIZE])
{
    out[0] = h->version;
    out[1] = h->type;
    st16(out + 2, h->flags);
    st32(out + 4, h->stream);
    st32(out + 8, h->gen);
    st32(out + 12, h->len);
}

/* The checks of sp_frame_hdr_decode on an already split header; the
 * order is the documented one. */
static int frame_hdr_check(const sp_frame_hdr_t *h, uint32_t max_payload)
{
    const struct frame_type *t;

    if (h->version != SP_PROTO_VERSION)
        return SP_EBADVER;
    if ((t = frame_type(h->type)) == NULL)
        return SP_EUNKNOWN;
    if (h->flags & ~SP_FF_KNOWN)
        return SP_EPROTO;
    if (t->link && (h->stream != 0 || h->gen != 0))
        return SP_EPROTO;
    if (h->len > (t->link ? SP_FRAME_CTL_MAX : max_payload))
        return SP_ELIMIT;
    if (t->fixed >= 0 && h->len != (uint32_t)t->fixed)
        return SP_EPROTO;
    return 0;
}

static uint32_t limit_of(const sp_frame_limits_t *lim)
{
    uint32_t max = lim ? lim->max_payload : SP_FRAME_MAX_PAYLOAD_DEFAULT;
    return max < SP_FRAME_MAX_PAYLOAD_CEIL ? max : SP_FRAME_MAX_PAYLOAD_CEIL;
}

int sp_frame_hdr_decode(const uint8_t *buf, size_t len,
                        const sp_frame_limits_t *lim, sp_frame_hdr_t *h)
{
    if (len < SP_FRAME_HDR_SIZE)
        return SP_EAGAIN;
    h->version = buf[0];
    h->type = buf[1];
    h->flags = ld16(buf + 2);
    h->stream = ld32(buf + 4);
    h->gen = ld32(buf + 8);
    h->len = ld32(buf + 12);
    return frame_hdr_check(h, limit_of(lim));
}

int sp_frame_decode(const uint8_t *buf, size_t len,
                    const sp_frame_limits_t *lim, sp_frame_t *f)
{
    int rc = sp_frame_hdr_decode(buf, len, lim, &f->hdr);
    if (rc < 0)
        return rc;
    /* hdr.len <= SP_FRAME_MAX_PAYLOAD_CEIL here, so the sum fits an int. */
    if (len - SP_FRAME_HDR_SIZE < f->hdr.len)
        return SP_EAGAIN;
    f->payload = buf + SP_FRAME_HDR_SIZE;
    return (int)(SP_FRAME_HDR_SIZE + f->hdr.len);
}

int sp_frame_encode(uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
                    uint32_t stream, uint32_t gen, const void *payload,
                    uint32_t len)
{
    sp_frame_hdr_t h = {SP_PROTO_VERSION, type, flags, stream, gen, len};
    int rc = frame_hdr_check(&h, SP_FRAME_MAX_PAYLOAD_CEIL);

    if (rc == SP_ELIMIT && !frame_type(type)->link)
        return SP_EMSGSIZE;
    if (rc < 0)
        return SP_EINVAL;
    if (len > 0 && payload == NULL)
        return SP_EINVAL;
    if (cap < SP_FRAME_HDR_SIZE || cap - SP_FRAME_HDR_SIZE < len)
        return SP_EMSGSIZE;
    /* memmove: the payload may have been encoded in place, or anywhere in
     * buf; copy it before the header can overwrite it. */
    if (len > 0 && payload != buf + SP_FRAME_HDR_SIZE)
        memmove(buf + SP_FRAME_HDR_SIZE, payload, len);
    sp_frame_hdr_encode(&h, buf);
    return (int)(SP_FRAME_HDR_SIZE + len);
}

/* ---- wire cursors ----------------------------------------------------- */

void sp_wire_wr_init(sp_wire_wr_t *w, void *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->pos = 0;
    w->err = 0;
}

/* Reserve n bytes; returns where to write them, or NULL when they do not
 * fit (pos still advances, saturating, so the total is measured). */
static uint8_t *wr_take(sp_wire_wr_t *w, size_t n)
{
    size_t at = w->pos;

    w->pos = (n > SIZE_MAX - at) ? SIZE_MAX : at + n;
    if (w->err != 0)
        return NULL;
    if (w->pos > w->cap || w->pos == SIZE_MAX) {
        w->err = SP_EMSGSIZE;
        return NULL;
    }
    return w->buf + at;
}

void sp_wire_put_u8(sp_wire_wr_t *w, uint8_t v)
{
    uint8_t *p = wr_take(w, 1);
    if (p)
        p[0] = v;
}

void sp_wire_put_u16(sp_wire_wr_t *w, uint16_t v)
{
    uint8_t *p = wr_take(w, 2);
    if (p)
        st16(p, v);
}

void sp_wire_put_u32(sp_wire_wr_t *w, uint32_t v)
{
    uint8_t *p = wr_take(w, 4);
    if (p)
        st32(p, v);
}

void sp_wire_put_u64(sp_wire_wr_t *w, uint64_t v)
{
    uint8_t *p = wr_take(w, 8);
    if (p) {
        st32(p, (uint32_t)(v >> 32));
        st32(p + 4, (uint32_t)v);
    }
}

void sp_wire_put_bytes(sp_wire_wr_t *w, const void *src, size_t n)
{
    uint8_t *p = wr_take(w, n);
    if (p && n > 0)
        memcpy(p, src, n);
}

void sp_wire_wr_invalid(sp_wire_wr_t *w)
{
    w->err = SP_EINVAL;
}

int sp_wire_str_ok(sp_str_t s, unsigned cls)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    uint32_t i;

    if (cls > SP_WIRE_ENAME)
        return 0;
    if (s.ptr == NULL)
        return s.len == 0 && cls != SP_WIRE_HNAME && cls != SP_WIRE_ENAME;
    switch (cls) {
    case SP_WIRE_ANY:
        return memchr(p, 0, s.len) == NULL;
    case SP_WIRE_LINE:
        for (i = 0; i < s.len; i++)
            if (p[i] == 0 || p[i] == '\r' || p[i] == '\n')
                return 0;
        return 1;
    case SP_WIRE_TEXT:
        for (i = 0; i < s.len; i++)
            if (p[i] < 0x20 || p[i] == 0x7f)
                return 0;
        return 1;
    case SP_WIRE_HNAME:
        if (s.len == 0)
            return 0;
        for (i = 0; i < s.len; i++)
            if (p[i] <= 0x20 || p[i] == 0x7f || p[i] == ':')
                return 0;
        return 1;
    case SP_WIRE_ENAME:
        if (s.len == 0)
            return 0;
        for (i = 0; i < s.len; i++)
            if (p[i] == 0 || p[i] == '=')
                return 0;
        return 1;
    }
    return 0;
}

void sp_wire_put_str(sp_wire_wr_t *w, sp_str_t s, unsigned cls)
{
    if (!sp_wire_str_ok(s, cls)) {
        /* keep measuring as if the string had been written */
        (void)wr_take(w, (size_t)s.len + 5);
        w->err = SP_EINVAL;
        return;
    }
    sp_wire_put_u32(w, s.len);
    sp_wire_put_bytes(w, s.ptr, s.len);
    sp_wire_put_u8(w, 0);
}

int sp_wire_wr_done(const sp_wire_wr_t *w)
{
    if (w->err != 0)
        return w->err;
    if (w->pos > (size_t)INT32_MAX)
        return SP_EMSGSIZE;
    return (int)w->pos;
}

void sp_wire_rd_init(sp_wire_rd_t *r, const void *buf, size_t len)
{
    r->buf = buf;
    r->len = buf ? len : 0;
    r->pos = 0;
    r->err = 0;
}

/* n bytes at the cursor, or NULL (and SP_EPROTO) if fewer remain. */
static const uint8_t *rd_take(sp_wire_rd_t *r, size_t n)
{
    const uint8_t *p;

    if (r->err != 0)
        return NULL;
    if (n > r->len - r->pos) {
        r->err = SP_EPROTO;
        return NULL;
    }
    p = r->buf + r->pos;
    r->pos += n;
    return p;
}

uint8_t sp_wire_get_u8(sp_wire_rd_t *r)
{
    const uint8_t *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

uint16_t sp_wire_get_u16(sp_wire_rd_t *r)
{
    const uint8_t *p = rd_take(r, 2);
    return p ? ld16(p) : 0;
}

uint32_t sp_wire_get_u32(sp_wire_rd_t *r)
{
    const uint8_t *p = rd_take(r, 4);
    return p ? ld32(p) : 0;
}

uint64_t sp_wire_get_u64(sp_wire_rd_t *r)
{
    const uint8_t *p = rd_take(r, 8);
    return p ? (uint64_t)ld32(p) << 32 | ld32(p + 4) : 0;
}

const uint8_t *sp_wire_get_bytes(sp_wire_rd_t *r, size_t n)
{
    return rd_take(r, n);
}

void sp_wire_rd_invalid(sp_wire_rd_t *r)
{
    if (r->err == 0)
        r->err = SP_EPROTO;
}

sp_str_t sp_wire_get_str(sp_wire_rd_t *r, uint32_t maxlen, unsigned cls)
{
    sp_str_t s = {"", 0};
    uint32_t n = sp_wire_get_u32(r);
    const uint8_t *p;

    if (r->err != 0)
        return s;
    if (n > maxlen) {
        r->err = SP_ELIMIT;
        return s;
    }
    /* n + 1 cannot wrap in size_t; rd_take checks it against the rest. */
    if ((p = rd_take(r, (size_t)n + 1)) == NULL)
        return s;
    if (p[n] != 0) {
        r->err = SP_EPROTO;
        return s;
    }
    s.ptr = (const char *)p;
    s.len = n;
    if (!sp_wire_str_ok(s, cls)) {
        r->err = SP_EPROTO;
        s.ptr = "";
        s.len = 0;
    }
    return s;
}

uint32_t sp_wire_get_count(sp_wire_rd_t *r, uint32_t max, size_t min_item)
{
    uint32_t n = sp_wire_get_u32(r);

    if (r->err != 0)
        return 0;
    if (n > max) {
        r->err = SP_ELIMIT;
        return 0;
    }
    if (min_item > 0 && n > (r->len - r->pos) / min_item) {
        r->err = SP_EPROTO;
        return 0;
    }
    return n;
}

int sp_wire_rd_done(const sp_wire_rd_t *r)
{
    if (r->err != 0)
        return r->err;
    return r->pos == r->len ? 0 : SP_EPROTO;
}

/* ---- typed payloads --------------------------------------------------- */

/* Limits a HELLO or HELLO_ACK may announce. */
static int limits_check(uint32_t max_payload, uint32_t initial_window)
{
    if (max_payload > SP_FRAME_MAX_PAYLOAD_CEIL)
        return SP_ELIMIT;
    if (max_payload < SP_FRAME_MAX_PAYLOAD_MIN ||
        initial_window > SP_FRAME_WINDOW_MAX)
        return SP_EPROTO;
    return 0;
}

int sp_hello_encode(const sp_hello_t *m, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;

    sp_wire_wr_init(&w, buf, cap);
    if (m->min_version < 1 || m->min_version > m->max_version ||
        limits_check(m->max_payload, m->initial_window) != 0)
        sp_wire_wr_invalid(&w);
    sp_wire_put_u16(&w, m->min_version);
    sp_wire_put_u16(&w, m->max_version);
    sp_wire_put_u32(&w, m->max_payload);
    sp_wire_put_u32(&w, m->initial_window);
    sp_wire_put_u32(&w, m->max_streams);
    sp_wire_put_u32(&w, m->features);
    sp_wire_put_bytes(&w, m->nonce, SP_NONCE_SIZE);
    sp_wire_put_str(&w, m->node, SP_WIRE_TEXT);
    return sp_wire_wr_done(&w);
}

int sp_hello_decode(const uint8_t *p, size_t len, sp_hello_t *m)
{
    sp_wire_rd_t r;
    const uint8_t *nonce;
    int rc;

    sp_wire_rd_init(&r, p, len);
    m->min_version = sp_wire_get_u16(&r);
    m->max_version = sp_wire_get_u16(&r);
    m->max_payload = sp_wire_get_u32(&r);
    m->initial_window = sp_wire_get_u32(&r);
    m->max_streams = sp_wire_get_u32(&r);
    m->features = sp_wire_get_u32(&r);
    if ((nonce = sp_wire_get_bytes(&r, SP_NONCE_SIZE)) != NULL)
        memcpy(m->nonce, nonce, SP_NONCE_SIZE);
    m->node = sp_wire_get_str(&r, UINT32_MAX, SP_WIRE_TEXT);
    if ((rc = sp_wire_rd_done(&r)) != 0)
        return rc;
    if (m->min_version < 1 || m->min_version > m->max_version)
        return SP_EPROTO;
    return limits_check(m->max_payload, m->initial_window);
}

int sp_hello_ack_encode(const sp_hello_ack_t *m, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;

    sp_wire_wr_init(&w, buf, cap);
    if (m->version < 1 || limits_check(m->max_payload, m->initial_window) != 0)
        sp_wire_wr_invalid(&w);
    sp_wire_put_u16(&w, m->version);
    sp_wire_put_u16(&w, 0);
    sp_wire_put_u32(&w, m->max_payload);
    sp_wire_put_u32(&w, m->initial_window);
    sp_wire_put_u32(&w, m->max_streams);
    sp_wire_put_u32(&w, m->features);
    sp_wire_put_bytes(&w, m->nonce, SP_NONCE_SIZE);
    sp_wire_put_bytes(&w, m->proof, SP_PROOF_SIZE);
    sp_wire_put_str(&w, m->node, SP_WIRE_TEXT);
    return sp_wire_wr_done(&w);
}

int sp_hello_ack_decode(const uint8_t *p, size_t len, sp_hello_ack_t *m)
{
    sp_wire_rd_t r;
    const uint8_t *b;
    uint16_t reserved;
    int rc;

    sp_wire_rd_init(&r, p, len);
    m->version = sp_wire_get_u16(&r);
    reserved = sp_wire_get_u16(&r);
    m->max_payload = sp_wire_get_u32(&r);
    m->initial_window = sp_wire_get_u32(&r);
    m->max_streams = sp_wire_get_u32(&r);
    m->features = sp_wire_get_u32(&r);
    if ((b = sp_wire_get_bytes(&r, SP_NONCE_SIZE)) != NULL)
        memcpy(m->nonce, b, SP_NONCE_SIZE);
    if ((b = sp_wire_get_bytes(&r, SP_PROOF_SIZE)) != NULL)
        memcpy(m->proof, b, SP_PROOF_SIZE);
    m->node = sp_wire_get_str(&r, UINT32_MAX, SP_WIRE_TEXT);
    if ((rc = sp_wire_rd_done(&r)) != 0)
        return rc;
    if (m->version < 1 || reserved != 0)
        return SP_EPROTO;
    return limits_check(m->max_payload, m->initial_window);
}

/* Fixed-size opaque payloads: AUTH, PING, PONG. */
static int fixed_encode(const uint8_t *src, size_t n, uint8_t *buf, size_t cap)
{
    if (cap < n)
        return SP_EMSGSIZE;
    memcpy(buf, src, n);
    return (int)n;
}

static int fixed_decode(const uint8_t *p, size_t len, uint8_t *dst, size_t n)
{
    if (len != n)
        return SP_EPROTO;
    memcpy(dst, p, n);
    return 0;
}

int sp_auth_encode(const uint8_t proof[SP_PROOF_SIZE], uint8_t *buf, size_t cap)
{
    return fixed_encode(proof, SP_PROOF_SIZE, buf, cap);
}

int sp_auth_decode(const uint8_t *p, size_t len, uint8_t proof[SP_PROOF_SIZE])
{
    return fixed_decode(p, len, proof, SP_PROOF_SIZE);
}

int sp_ping_encode(const uint8_t opaque[SP_PING_SIZE], uint8_t *buf, size_t cap)
{
    return fixed_encode(opaque, SP_PING_SIZE, buf, cap);
}

int sp_ping_decode(const uint8_t *p, size_t len, uint8_t opaque[SP_PING_SIZE])
{
    return fixed_decode(p, len, opaque, SP_PING_SIZE);
}

int sp_goaway_encode(const sp_goaway_t *m, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;

    sp_wire_wr_init(&w, buf, cap);
    sp_wire_put_u32(&w, m->code);
    sp_wire_put_str(&w, m->reason, SP_WIRE_TEXT);
    return sp_wire_wr_done(&w);
}

int sp_goaway_decode(const uint8_t *p, size_t len, sp_goaway_t *m)
{
    sp_wire_rd_t r;

    sp_wire_rd_init(&r, p, len);
    m->code = sp_wire_get_u32(&r);
    m->reason = sp_wire_get_str(&r, UINT32_MAX, SP_WIRE_TEXT);
    return sp_wire_rd_done(&r);
}

static int status_ok(uint16_t status)
{
    return status == 0 || (status >= 100 && status <= 999);
}

int sp_abort_encode(const sp_abort_t *m, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;

    sp_wire_wr_init(&w, buf, cap);
    if (!status_ok(m->status))
        sp_wire_wr_invalid(&w);
    sp_wire_put_u32(&w, m->code);
    sp_wire_put_u16(&w, m->status);
    sp_wire_put_u16(&w, 0);
    sp_wire_put_str(&w, m->reason, SP_WIRE_TEXT);
    return sp_wire_wr_done(&w);
}

int sp_abort_decode(const uint8_t *p, size_t len, sp_abort_t *m)
{
    sp_wire_rd_t r;
    uint16_t reserved;
    int rc;

    sp_wire_rd_init(&r, p, len);
    m->code = sp_wire_get_u32(&r);
    m->status = sp_wire_get_u16(&r);
    reserved = sp_wire_get_u16(&r);
    m->reason = sp_wire_get_str(&r, UINT32_MAX, SP_WIRE_TEXT);
    if ((rc = sp_wire_rd_done(&r)) != 0)
        return rc;
    if (reserved != 0 || !status_ok(m->status))
        return SP_EPROTO;
    return 0;
}

int sp_credit_encode(uint32_t increment, uint8_t *buf, size_t cap)
{
    if (increment == 0)
        return SP_EINVAL;
    if (cap < SP_CREDIT_SIZE)
        return SP_EMSGSIZE;
    st32(buf, increment);
    return SP_CREDIT_SIZE;
}

int sp_credit_decode(const uint8_t *p, size_t len, uint32_t *increment)
{
    if (len != SP_CREDIT_SIZE)
        return SP_EPROTO;
    *increment = ld32(p);
    return *increment == 0 ? SP_EPROTO : 0;
}

void sp_auth_msg(uint8_t out[SP_AUTH_MSG_SIZE], int client,
                 const uint8_t nonce_c[SP_NONCE_SIZE],
                 const uint8_t nonce_s[SP_NONCE_SIZE])
{
    /* Both labels are 19 bytes, no NUL. */
    memcpy(out, client ? "slotproxy-v1 client" : "slotproxy-v1 server", 19);
    memcpy(out + 19, client ? nonce_s : nonce_c, SP_NONCE_SIZE);
    memcpy(out + 19 + SP_NONCE_SIZE, client ? nonce_c : nonce_s, SP_NONCE_SIZE);
}
