/*
 * sp_head.c - request/response head codec: the HTTP mapping of the link
 * protocol, on top of the wire cursors of sp_frame.c.
 *
 * Layouts are drawn in sp_head-t.h and docs/protocol.md: fixed fields,
 * then counted strings, then counted name/value pairs.  One encoder body
 * per head serves both for measuring (a writer with cap 0 only counts) and
 * for writing, so sp_*head_size() and sp_*head_encode() cannot disagree.
 *
 * Decoding is zero-copy: strings point into the payload (each is followed
 * by its NUL there, so it is also a C string) and pairs go into the
 * caller's kv[] array, headers first, env after them.  Counts are checked
 * against the limits and against the bytes left (a pair takes at least 10
 * bytes) before any pair is read, so a hostile count cannot make the
 * decoder loop or write past kv[kvcap].
 *
 * The content rules (header names, CR/LF, flags against content_length)
 * are checked identically on both sides, which makes the encoding
 * canonical: a head that decodes re-encodes to the same bytes.
 */
#include "sp_head.h"

#include <string.h>

#include "sp_error.h"
#include "sp_frame.h"

/* Smallest encoded pair: two empty strings. */
#define PAIR_MIN 10u

sp_str_t sp_str(const char *cstr)
{
    sp_str_t s = {"", 0};
    if (cstr != NULL) {
        s.ptr = cstr;
        s.len = (uint32_t)strlen(cstr);
    }
    return s;
}

int sp_str_eq(sp_str_t s, const char *b)
{
    size_t n = b ? strlen(b) : 0;
    if (n != s.len)
        return 0;
    return n == 0 || memcmp(s.ptr, b, n) == 0;
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

int sp_str_caseeq(sp_str_t s, const char *b)
{
    size_t n = b ? strlen(b) : 0;
    size_t i;

    if (n != s.len)
        return 0;
    for (i = 0; i < n; i++)
        if (ascii_lower((unsigned char)s.ptr[i]) !=
            ascii_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

const sp_kv_t *sp_kv_find(const sp_kv_t *kv, uint32_t n, const char *name)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        if (sp_str_caseeq(kv[i].name, name))
            return &kv[i];
    return NULL;
}

/* ---- shared pieces ---------------------------------------------------- */

/* A request's body flags against its content_length. */
static int body_ok(uint32_t flags, int64_t cl)
{
    uint32_t body = flags & SP_REQ_BODY, chunked = flags & SP_REQ_CHUNKED;

    if (cl < -1)
        return 0;
    if (chunked && (!body || cl != -1))
        return 0;
    if (body && !chunked && cl < 0)
        return 0;
    return 1;
}

/* int64 <-> the u64 on the wire, without implementation-defined casts. */
static uint64_t i64_to_wire(int64_t v)
{
    return v < 0 ? ~(uint64_t)(-(v + 1)) : (uint64_t)v;
}

static int64_t i64_from_wire(uint64_t u)
{
    return u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
}

static void put_pairs(sp_wire_wr_t *w, const sp_kv_t *kv, uint32_t n,
                      unsigned name_cls, unsigned value_cls)
{
    uint32_t i;

    sp_wire_put_u32(w, n);
    if (n > 0 && kv == NULL) {
        sp_wire_wr_invalid(w);
        return;
    }
    for (i = 0; i < n; i++) {
        sp_wire_put_str(w, kv[i].name, name_cls);
        sp_wire_put_str(w, kv[i].value, value_cls);
    }
}

static void get_pairs(sp_wire_rd_t *r, sp_kv_t *kv, uint32_t n, uint32_t maxlen,
                      unsigned name_cls, unsigned value_cls)
{
    uint32_t i;

    for (i = 0; i < n && r->err == 0; i++) {
        kv[i].name = sp_wire_get_str(r, maxlen, name_cls);
        kv[i].value = sp_wire_get_str(r, maxlen, value_cls);
    }
}

static sp_head_limits_t limits_of(const sp_head_limits_t *lim)
{
    sp_head_limits_t def = SP_HEAD_LIMITS_DEFAULT;
    return lim ? *lim : def;
}

/* ---- request head ----------------------------------------------------- */

static void reqhead_put(sp_wire_wr_t *w, const sp_reqhead_t *h)
{
    if ((h->flags & ~SP_REQ_KNOWN) || !body_ok(h->flags, h->content_length))
        sp_wire_wr_invalid(w);
    sp_wire_put_u32(w, h->flags);
    sp_wire_put_u16(w, h->remote_port);
    sp_wire_put_u16(w, h->local_port);
    sp_wire_put_u64(w, i64_to_wire(h->content_length));
    sp_wire_put_str(w, h->method, SP_WIRE_LINE);
    sp_wire_put_str(w, h->uri, SP_WIRE_LINE);
    sp_wire_put_str(w, h->protocol, SP_WIRE_LINE);
    sp_wire_put_str(w, h->scheme, SP_WIRE_LINE);
    sp_wire_put_str(w, h->server_name, SP_WIRE_LINE);
    sp_wire_put_str(w, h->remote_addr, SP_WIRE_LINE);
    sp_wire_put_str(w, h->local_addr, SP_WIRE_LINE);
    sp_wire_put_str(w, h->remote_user, SP_WIRE_LINE);
    sp_wire_put_str(w, h->auth_type, SP_WIRE_LINE);
    put_pairs(w, h->headers, h->nheaders, SP_WIRE_HNAME, SP_WIRE_LINE);
    put_pairs(w, h->env, h->nenv, SP_WIRE_ENAME, SP_WIRE_ANY);
}

size_t sp_reqhead_size(const sp_reqhead_t *h)
{
    sp_wire_wr_t w;
    sp_wire_wr_init(&w, NULL, 0);
    reqhead_put(&w, h);
    return w.pos;
}

int sp_reqhead_encode(const sp_reqhead_t *h, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;
    sp_wire_wr_init(&w, buf, cap);
    reqhead_put(&w, h);
    return sp_wire_wr_done(&w);
}

int sp_reqhead_decode(const uint8_t *buf, size_t len,
                      const sp_head_limits_t *lim, sp_reqhead_t *h, sp_kv_t *kv,
                      uint32_t kvcap)
{
    sp_head_limits_t l = limits_of(lim);
    uint32_t max = kv == NULL ? 0 : kvcap;
    uint32_t fl;
    sp_wire_rd_t r;
    int rc;

    if (l.max_fields < max)
        max = l.max_fields;
    fl = l.max_field_len;
    sp_wire_rd_init(&r, buf, len);
    h->flags = sp_wire_get_u32(&r);
    h->remote_port = sp_wire_get_u16(&r);
    h->local_port = sp_wire_get_u16(&r);
    h->content_length = i64_from_wire(sp_wire_get_u64(&r));
    h->method = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->uri = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->protocol = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->scheme = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->server_name = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->remote_addr = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->local_addr = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->remote_user = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->auth_type = sp_wire_get_str(&r, fl, SP_WIRE_LINE);
    h->headers = kv;
    h->nheaders = sp_wire_get_count(&r, max, PAIR_MIN);
    get_pairs(&r, kv, h->nheaders, fl, SP_WIRE_HNAME, SP_WIRE_LINE);
    h->env = kv ? kv + h->nheaders : NULL;
    h->nenv = sp_wire_get_count(&r, max - h->nheaders, PAIR_MIN);
    get_pairs(&r, h->env, h->nenv, fl, SP_WIRE_ENAME, SP_WIRE_ANY);
    if ((rc = sp_wire_rd_done(&r)) != 0)
        return rc;
    if ((h->flags & ~SP_REQ_KNOWN) || !body_ok(h->flags, h->content_length))
        return SP_EPROTO;
    return 0;
}

/* ---- response head ---------------------------------------------------- */

static void resphead_put(sp_wire_wr_t *w, const sp_resphead_t *h)
{
    if (h->status < 100 || h->status > 999 || (h->flags & ~SP_RESP_KNOWN) ||
        h->content_length < -1)
        sp_wire_wr_invalid(w);
    sp_wire_put_u16(w, h->status);
    sp_wire_put_u16(w, 0);
    sp_wire_put_u32(w, h->flags);
    sp_wire_put_u64(w, i64_to_wire(h->content_length));
    sp_wire_put_str(w, h->reason, SP_WIRE_LINE);
    put_pairs(w, h->headers, h->nheaders, SP_WIRE_HNAME, SP_WIRE_LINE);
}

size_t sp_resphead_size(const sp_resphead_t *h)
{
    sp_wire_wr_t w;
    sp_wire_wr_init(&w, NULL, 0);
    resphead_put(&w, h);
    return w.pos;
}

int sp_resphead_encode(const sp_resphead_t *h, uint8_t *buf, size_t cap)
{
    sp_wire_wr_t w;
    sp_wire_wr_init(&w, buf, cap);
    resphead_put(&w, h);
    return sp_wire_wr_done(&w);
}

int sp_resphead_decode(const uint8_t *buf, size_t len,
                       const sp_head_limits_t *lim, sp_resphead_t *h,
                       sp_kv_t *kv, uint32_t kvcap)
{
    sp_head_limits_t l = limits_of(lim);
    uint32_t max = kv == NULL ? 0 : kvcap;
    uint16_t reserved;
    sp_wire_rd_t r;
    int rc;

    if (l.max_fields < max)
        max = l.max_fields;
    sp_wire_rd_init(&r, buf, len);
    h->status = sp_wire_get_u16(&r);
    reserved = sp_wire_get_u16(&r);
    h->flags = sp_wire_get_u32(&r);
    h->content_length = i64_from_wire(sp_wire_get_u64(&r));
    h->reason = sp_wire_get_str(&r, l.max_field_len, SP_WIRE_LINE);
    h->headers = kv;
    h->nheaders = sp_wire_get_count(&r, max, PAIR_MIN);
    get_pairs(&r, kv, h->nheaders, l.max_field_len, SP_WIRE_HNAME,
              SP_WIRE_LINE);
    if ((rc = sp_wire_rd_done(&r)) != 0)
        return rc;
    if (reserved != 0 || h->status < 100 || h->status > 999 ||
        (h->flags & ~SP_RESP_KNOWN) || h->content_length < -1)
        return SP_EPROTO;
    return 0;
}
