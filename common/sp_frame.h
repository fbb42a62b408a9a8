/*
 * sp_frame.h - the link frame codec (layouts in sp_frame-t.h, the wire
 * spec in docs/protocol.md).
 *
 * Pure functions over caller buffers: no allocation, no logging, no state
 * beyond what the caller passes.  Decoders never read outside [buf,
 * buf+len) and return pointers into buf; encoders never write outside
 * [buf, buf+cap).  Whatever an encoder accepts, the decoder accepts too.
 */
#ifndef SP_FRAME_H
#define SP_FRAME_H

#include "sp_frame-t.h"

/* "HELLO", "BODY", ... for logs; "?" for an unknown type. */
const char *sp_frame_type_name(unsigned type);
/* "CANCEL", ... / "NORMAL", ...; "?" for an unknown code. */
const char *sp_abort_code_name(uint32_t code);
const char *sp_goaway_code_name(uint32_t code);

/* ---- frame header and whole frames ------------------------------------ */

void sp_frame_hdr_encode(const sp_frame_hdr_t *h,
                         uint8_t out[SP_FRAME_HDR_SIZE]);

/* Decode and check the 16-byte header at buf.  lim NULL means the default
 * limits.  Returns 0, or
 *   SP_EAGAIN    len < 16 (*h untouched),
 *   SP_EBADVER   version != SP_PROTO_VERSION,
 *   SP_EUNKNOWN  unknown type,
 *   SP_EPROTO    a flag outside SP_FF_KNOWN, or a link frame with stream
 *                or gen != 0,
 *   SP_ELIMIT    len over the limit for the type (known as soon as the
 *                header is complete, before any payload arrives),
 *   SP_EPROTO    a fixed-size type with another length (ACCEPT, END: 0;
 *                CREDIT: 4; PING, PONG: 8; AUTH: 32),
 * checked in that order.  After any error but SP_EAGAIN *h holds the raw
 * fields, for the log line. */
int sp_frame_hdr_decode(const uint8_t *buf, size_t len,
                        const sp_frame_limits_t *lim, sp_frame_hdr_t *h);

/* Incremental decoder: buf holds len received bytes starting at a frame
 * boundary.  Returns the size of the first frame (16 + payload) when it is
 * complete, with f->payload pointing into buf; SP_EAGAIN when more bytes
 * are needed (append and call again); or a header error as above, which
 * the caller treats as fatal for the link. */
int sp_frame_decode(const uint8_t *buf, size_t len,
                    const sp_frame_limits_t *lim, sp_frame_t *f);

/* Write a whole frame.  payload may be NULL when len is 0, and may point
 * anywhere in buf, in particular at buf + SP_FRAME_HDR_SIZE when the
 * payload was encoded in place (it is then not copied).  Returns the bytes
 * written (16 + len), SP_EMSGSIZE if cap is too small or len is above
 * SP_FRAME_MAX_PAYLOAD_CEIL, or SP_EINVAL for a frame the decoder refuses
 * (unknown type or flag, link frame on a stream, wrong fixed size, link
 * frame over SP_FRAME_CTL_MAX).  The caller checks len against the peer's
 * announced max_payload. */
int sp_frame_encode(uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
                    uint32_t stream, uint32_t gen, const void *payload,
                    uint32_t len);

/* ---- typed payloads ---------------------------------------------------- */
/*
 * Encoders write the payload only (not the frame header) and return its
 * size, SP_EMSGSIZE when cap is too small, or SP_EINVAL for a value the
 * decoder refuses.  Decoders take the payload of a received frame and
 * return 0, SP_EPROTO (malformed, a bad value, trailing bytes) or
 * SP_ELIMIT; strings in the result point into p.
 *
 *   n = sp_hello_encode(&m, buf + SP_FRAME_HDR_SIZE,
 *                       cap - SP_FRAME_HDR_SIZE);
 *   if (n >= 0)
 *       n = sp_frame_encode(buf, cap, SP_FT_HELLO, 0, 0, 0,
 *                           buf + SP_FRAME_HDR_SIZE, n);
 */

/* HELLO: min_version 1..max_version; max_payload in
 * [SP_FRAME_MAX_PAYLOAD_MIN, SP_FRAME_MAX_PAYLOAD_CEIL] (above: SP_ELIMIT,
 * below: SP_EPROTO); initial_window <= SP_FRAME_WINDOW_MAX. */
int sp_hello_encode(const sp_hello_t *m, uint8_t *buf, size_t cap);
int sp_hello_decode(const uint8_t *p, size_t len, sp_hello_t *m);

/* HELLO_ACK: version >= 1, reserved 0, limits as in HELLO. */
int sp_hello_ack_encode(const sp_hello_ack_t *m, uint8_t *buf, size_t cap);
int sp_hello_ack_decode(const uint8_t *p, size_t len, sp_hello_ack_t *m);

int sp_auth_encode(const uint8_t proof[SP_PROOF_SIZE], uint8_t *buf,
                   size_t cap);
int sp_auth_decode(const uint8_t *p, size_t len, uint8_t proof[SP_PROOF_SIZE]);

/* PING and PONG payloads. */
int sp_ping_encode(const uint8_t opaque[SP_PING_SIZE], uint8_t *buf,
                   size_t cap);
int sp_ping_decode(const uint8_t *p, size_t len, uint8_t opaque[SP_PING_SIZE]);

int sp_goaway_encode(const sp_goaway_t *m, uint8_t *buf, size_t cap);
int sp_goaway_decode(const uint8_t *p, size_t len, sp_goaway_t *m);

/* ABORT: status 0 or 100..999, reserved 0. */
int sp_abort_encode(const sp_abort_t *m, uint8_t *buf, size_t cap);
int sp_abort_decode(const uint8_t *p, size_t len, sp_abort_t *m);

/* CREDIT: increment > 0. */
int sp_credit_encode(uint32_t increment, uint8_t *buf, size_t cap);
int sp_credit_decode(const uint8_t *p, size_t len, uint32_t *increment);

/* The message both sides feed to HMAC-SHA256(secret, msg) for the
 * handshake proofs (docs/protocol.md, "Handshake"):
 *   server (HELLO_ACK.proof): "slotproxy-v1 server" nonce_c nonce_s
 *   client (AUTH.proof):      "slotproxy-v1 client" nonce_s nonce_c
 * Distinct labels and nonce order keep a proof from being reflected. */
void sp_auth_msg(uint8_t out[SP_AUTH_MSG_SIZE], int client,
                 const uint8_t nonce_c[SP_NONCE_SIZE],
                 const uint8_t nonce_s[SP_NONCE_SIZE]);

/* ---- wire cursors (also used by sp_head.c) ----------------------------- */

void sp_wire_wr_init(sp_wire_wr_t *w, void *buf, size_t cap);
void sp_wire_put_u8(sp_wire_wr_t *w, uint8_t v);
void sp_wire_put_u16(sp_wire_wr_t *w, uint16_t v);
void sp_wire_put_u32(sp_wire_wr_t *w, uint32_t v);
void sp_wire_put_u64(sp_wire_wr_t *w, uint64_t v);
void sp_wire_put_bytes(sp_wire_wr_t *w, const void *p, size_t n);
/* Write a string of class cls (enum sp_wire_str_class); SP_EINVAL if it
 * does not fit the class, is NULL with len > 0, or cls is unknown. */
void sp_wire_put_str(sp_wire_wr_t *w, sp_str_t s, unsigned cls);
/* Mark the encoding invalid (SP_EINVAL), e.g. after a value check. */
void sp_wire_wr_invalid(sp_wire_wr_t *w);
/* The bytes written, or the sticky error (SP_EINVAL wins over
 * SP_EMSGSIZE); SP_EMSGSIZE too if the size does not fit an int. */
int sp_wire_wr_done(const sp_wire_wr_t *w);

void sp_wire_rd_init(sp_wire_rd_t *r, const void *buf, size_t len);
/* Getters return 0 / NULL after an error (SP_EPROTO: past the end). */
uint8_t sp_wire_get_u8(sp_wire_rd_t *r);
uint16_t sp_wire_get_u16(sp_wire_rd_t *r);
uint32_t sp_wire_get_u32(sp_wire_rd_t *r);
uint64_t sp_wire_get_u64(sp_wire_rd_t *r);
const uint8_t *sp_wire_get_bytes(sp_wire_rd_t *r, size_t n);
/* Read a string: SP_ELIMIT if its length is over maxlen (checked first),
 * SP_EPROTO if it runs past the end, lacks its NUL, or does not fit cls.
 * Returns {"", 0} after an error. */
sp_str_t sp_wire_get_str(sp_wire_rd_t *r, uint32_t maxlen, unsigned cls);
/* Read a u32 count of items that each take at least min_item bytes:
 * SP_ELIMIT if over max, SP_EPROTO if the rest cannot hold them. */
uint32_t sp_wire_get_count(sp_wire_rd_t *r, uint32_t max, size_t min_item);
/* Mark the input malformed (SP_EPROTO), e.g. after a value check. */
void sp_wire_rd_invalid(sp_wire_rd_t *r);
/* 0 if every byte was consumed without error, the sticky error, or
 * SP_EPROTO for trailing bytes. */
int sp_wire_rd_done(const sp_wire_rd_t *r);

/* Whether s may be sent as class cls (1) or not (0). */
int sp_wire_str_ok(sp_str_t s, unsigned cls);

#endif /* SP_FRAME_H */
