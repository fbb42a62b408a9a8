/*
 * sp_head.h - request/response head codec (layouts in sp_head-t.h) and
 * counted-string helpers.
 *
 * Decoders take a REQUEST_HEAD / RESPONSE_HEAD frame's payload and fill a
 * head whose strings point into that payload and whose header and env
 * arrays are taken from a caller-provided sp_kv_t array: no allocation.
 * The payload must stay put while the head is used.
 */
#ifndef SP_HEAD_H
#define SP_HEAD_H

#include "sp_head-t.h"

/* A counted view of a C string; NULL gives the empty string {"", 0}. */
sp_str_t sp_str(const char *cstr);
/* 1 if s equals the C string b (NULL = ""), byte for byte, else 0. */
int sp_str_eq(sp_str_t s, const char *b);
/* The same, ASCII case-insensitive (for header names). */
int sp_str_caseeq(sp_str_t s, const char *b);
/* The first entry of kv[0..n) whose name is name (ASCII case-insensitive),
 * or NULL. */
const sp_kv_t *sp_kv_find(const sp_kv_t *kv, uint32_t n, const char *name);

/* Exact encoded size of h (also when h would not encode). */
size_t sp_reqhead_size(const sp_reqhead_t *h);

/* Encode h into buf.  Returns the bytes written, SP_EMSGSIZE if cap is
 * too small, or SP_EINVAL if a string is NULL with len > 0 or breaks the
 * rules of sp_head-t.h (NUL anywhere; CR/LF outside env values; bad
 * header or env name), or the flags or content_length are inconsistent. */
int sp_reqhead_encode(const sp_reqhead_t *h, uint8_t *buf, size_t cap);

/* Decode a request head from buf[0..len) (all of it: trailing bytes are
 * an error).  lim NULL means SP_HEAD_LIMITS_DEFAULT.  h->headers =
 * kv[0..nheaders), h->env = kv[nheaders..nheaders+nenv).  Returns 0, or
 *   SP_ELIMIT  more headers + env than lim->max_fields or kvcap, or a
 *              string longer than lim->max_field_len;
 *   SP_EPROTO  anything malformed: truncated, trailing bytes, a string
 *              without its NUL or breaking the rules, unknown flags,
 *              content_length < -1 or inconsistent with the flags.
 * On error *h and kv[] hold garbage. */
int sp_reqhead_decode(const uint8_t *buf, size_t len,
                      const sp_head_limits_t *lim, sp_reqhead_t *h, sp_kv_t *kv,
                      uint32_t kvcap);

/* The same for response heads: status must be 100..999, flags 0,
 * content_length >= -1. */
size_t sp_resphead_size(const sp_resphead_t *h);
int sp_resphead_encode(const sp_resphead_t *h, uint8_t *buf, size_t cap);
int sp_resphead_decode(const uint8_t *buf, size_t len,
                       const sp_head_limits_t *lim, sp_resphead_t *h,
                       sp_kv_t *kv, uint32_t kvcap);

#endif /* SP_HEAD_H */
