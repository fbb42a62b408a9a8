/*
 * test_head.c - the request/response head codec (sp_head.c): exact round
 * trips, the byte layout, limits, every truncation, every content rule,
 * and seeded random mutations of valid heads.
 *
 * Decoded inputs are malloc'd copies of exactly their length, so the ASan
 * build catches any read past the end.
 */
#include "sp_unit.h"

#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"

/* got (decoded from buf[0..len)) equals want, lies inside buf and is
 * NUL-terminated there. */
static void str_same(sp_str_t got, sp_str_t want, const uint8_t *buf,
                     size_t len)
{
    ck_assert_uint_eq(got.len, want.len);
    ck_assert_ptr_nonnull(got.ptr);
    ck_assert((const uint8_t *)got.ptr >= buf &&
              (const uint8_t *)got.ptr + got.len < buf + len);
    ck_assert_int_eq(got.ptr[got.len], 0);
    if (want.len)
        ck_assert_mem_eq(got.ptr, want.ptr, want.len);
}

static void kv_same(const sp_kv_t *got, const sp_kv_t *want, uint32_t n,
                    const uint8_t *buf, size_t len)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        str_same(got[i].name, want[i].name, buf, len);
        str_same(got[i].value, want[i].value, buf, len);
    }
}

/* clang-format off */
#define KV(n, v) {{n, sizeof(n) - 1}, {v, sizeof(v) - 1}}
/* clang-format on */

static sp_kv_t req_headers[] = {
    KV("Host", "www.example.com"),
    KV("Cookie", "a=1"),
    KV("Cookie", "b=2"),
    KV("X-Empty", ""),
    KV("Accept", "text/html, */*;q=0.1"),
    KV("cookie", "c=3"),
};

static sp_kv_t req_env[] = {
    KV("HTTPS", "on"),
    KV("SSL_PROTOCOL", "TLSv1.3"),
    KV("SSL_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\nMIIB\r\n"
                          "-----END CERTIFICATE-----\n"),
    KV("EMPTY", ""),
};

static sp_kv_t resp_headers[] = {
    KV("Content-Type", "text/plain; charset=utf-8"),
    KV("Set-Cookie", "a=1; Path=/; HttpOnly"),
    KV("Set-Cookie", ""),
    KV("Set-Cookie", "b=2; Secure"),
};

#define NREQH (sizeof(req_headers) / sizeof(req_headers[0]))
#define NREQE (sizeof(req_env) / sizeof(req_env[0]))
#define NRESPH (sizeof(resp_headers) / sizeof(resp_headers[0]))

static sp_reqhead_t sample_req(void)
{
    sp_reqhead_t h;
    memset(&h, 0, sizeof(h));
    h.method = sp_str("POST");
    h.uri = sp_str("/app/upload?x=1&y=%20#frag");
    h.protocol = sp_str("HTTP/1.1");
    h.scheme = sp_str("https");
    h.server_name = sp_str("www.example.com");
    h.remote_addr = sp_str("2001:db8::7");
    h.local_addr = sp_str("192.0.2.1");
    h.remote_user = sp_str("");
    h.auth_type = (sp_str_t){NULL, 0};
    h.remote_port = 54321;
    h.local_port = 443;
    h.flags = SP_REQ_HTTPS | SP_REQ_BODY | SP_REQ_CHUNKED;
    h.content_length = -1;
    h.headers = req_headers;
    h.nheaders = NREQH;
    h.env = req_env;
    h.nenv = NREQE;
    return h;
}

static sp_resphead_t sample_resp(void)
{
    sp_resphead_t h;
    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.reason = sp_str("OK");
    h.content_length = 5;
    h.headers = resp_headers;
    h.nheaders = NRESPH;
    return h;
}

/* Encode h into a fresh exact-size buffer; *n gets the size. */
static uint8_t *req_encode(const sp_reqhead_t *h, size_t *n)
{
    size_t size = sp_reqhead_size(h);
    uint8_t *b = malloc(size);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sp_reqhead_encode(h, b, size), (int)size);
    *n = size;
    return b;
}

static uint8_t *resp_encode(const sp_resphead_t *h, size_t *n)
{
    size_t size = sp_resphead_size(h);
    uint8_t *b = malloc(size);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(sp_resphead_encode(h, b, size), (int)size);
    *n = size;
    return b;
}

static void req_same(const sp_reqhead_t *d, const sp_reqhead_t *h,
                     const uint8_t *b, size_t n)
{
    str_same(d->method, h->method, b, n);
    str_same(d->uri, h->uri, b, n);
    str_same(d->protocol, h->protocol, b, n);
    str_same(d->scheme, h->scheme, b, n);
    str_same(d->server_name, h->server_name, b, n);
    str_same(d->remote_addr, h->remote_addr, b, n);
    str_same(d->local_addr, h->local_addr, b, n);
    str_same(d->remote_user, h->remote_user, b, n);
    str_same(d->auth_type, h->auth_type, b, n);
    ck_assert_uint_eq(d->remote_port, h->remote_port);
    ck_assert_uint_eq(d->local_port, h->local_port);
    ck_assert_uint_eq(d->flags, h->flags);
    ck_assert_int_eq(d->content_length, h->content_length);
    ck_assert_uint_eq(d->nheaders, h->nheaders);
    ck_assert_uint_eq(d->nenv, h->nenv);
    kv_same(d->headers, h->headers, h->nheaders, b, n);
    kv_same(d->env, h->env, h->nenv, b, n);
}

/* ---- round trips ------------------------------------------------------ */

START_TEST(head_req_roundtrip)
{
    static const int64_t lengths[] = {-1, 0, 1, 1234567890123ll, INT64_MAX};
    sp_reqhead_t h = sample_req(), d;
    sp_kv_t kv[16];
    size_t n, i;
    uint8_t *b;

    b = req_encode(&h, &n);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(sp_reqhead_decode(b, n, NULL, &d, kv, 16), 0);
    req_same(&d, &h, b, n);
    /* headers first in kv[], env right after, order kept */
    ck_assert_ptr_eq(d.headers, kv);
    ck_assert_ptr_eq(d.env, kv + NREQH);
    ck_assert(sp_str_eq(d.headers[2].value, "b=2"));
    ck_assert(sp_str_eq(d.headers[5].name, "cookie"));
    ck_assert(sp_str_eq(d.auth_type, ""));
    free(b);

    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        h.flags = lengths[i] < 0 ? 0 : SP_REQ_BODY;
        h.content_length = lengths[i];
        b = req_encode(&h, &n);
        ck_assert_int_eq(sp_reqhead_decode(b, n, NULL, &d, kv, 16), 0);
        req_same(&d, &h, b, n);
        free(b);
    }

    /* all strings empty, no headers, no env, no kv array */
    memset(&h, 0, sizeof(h));
    h.content_length = -1;
    b = req_encode(&h, &n);
    ck_assert_uint_eq(n, SP_REQHEAD_MIN_SIZE);
    ck_assert_int_eq(sp_reqhead_decode(b, n, NULL, &d, NULL, 0), 0);
    req_same(&d, &h, b, n);
    free(b);
}
END_TEST

START_TEST(head_resp_roundtrip)
{
    static const uint16_t statuses[] = {100, 101, 204, 304, 502, 999};
    sp_resphead_t h = sample_resp(), d;
    sp_kv_t kv[8];
    size_t n, i;
    uint8_t *b;

    b = resp_encode(&h, &n);
    ck_assert_int_eq(sp_resphead_decode(b, n, NULL, &d, kv, 8), 0);
    ck_assert_uint_eq(d.status, 200);
    str_same(d.reason, h.reason, b, n);
    ck_assert_uint_eq(d.flags, 0);
    ck_assert_int_eq(d.content_length, 5);
    ck_assert_uint_eq(d.nheaders, NRESPH);
    ck_assert_ptr_eq(d.headers, kv);
    kv_same(d.headers, resp_headers, NRESPH, b, n);
    ck_assert(sp_str_eq(d.headers[3].value, "b=2; Secure"));
    free(b);

    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        h.status = statuses[i];
        h.reason = (sp_str_t){NULL, 0};
        h.content_length = -1;
        h.nheaders = 0;
        b = resp_encode(&h, &n);
        ck_assert_uint_eq(n, SP_RESPHEAD_MIN_SIZE);
        ck_assert_int_eq(sp_resphead_decode(b, n, NULL, &d, NULL, 0), 0);
        ck_assert_uint_eq(d.status, statuses[i]);
        ck_assert_uint_eq(d.flags, 0);
        ck_assert_int_eq(d.content_length, -1);
        str_same(d.reason, h.reason, b, n);
        free(b);
    }
}
END_TEST

/* The layout drawn in sp_head-t.h and docs/protocol.md, byte by byte. */
START_TEST(head_layout)
{
    /* clang-format off */
    static const uint8_t want_req[] = {
        0, 0, 0, 3,             /* flags HTTPS|BODY */
        0x1f, 0x90, 0x01, 0xbb, /* ports 8080, 443 */
        0, 0, 0, 0, 0, 0, 1, 0, /* content_length 256 */
        0, 0, 0, 3, 'G', 'E', 'T', 0,
        0, 0, 0, 1, '/', 0,
        0, 0, 0, 0, 0, /* protocol */
        0, 0, 0, 0, 0, /* scheme */
        0, 0, 0, 0, 0, /* server_name */
        0, 0, 0, 0, 0, /* remote_addr */
        0, 0, 0, 0, 0, /* local_addr */
        0, 0, 0, 0, 0, /* remote_user */
        0, 0, 0, 1, 'B', 0,
        0, 0, 0, 1, /* nheaders */
        0, 0, 0, 1, 'A', 0, 0, 0, 0, 1, 'b', 0,
        0, 0, 0, 1, /* nenv */
        0, 0, 0, 1, 'E', 0, 0, 0, 0, 0, 0,
    };
    static const uint8_t want_resp[] = {
        0x01, 0xf4, 0, 0,       /* status 500, reserved */
        0, 0, 0, 0,             /* flags */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* -1 */
        0, 0, 0, 2, 'N', 'O', 0,
        0, 0, 0, 0,
    };
    /* clang-format on */
    sp_kv_t hk = {{"A", 1}, {"b", 1}}, ek = {{"E", 1}, {"", 0}};
    sp_reqhead_t h;
    sp_resphead_t r;
    uint8_t b[256];

    memset(&h, 0, sizeof(h));
    h.flags = SP_REQ_HTTPS | SP_REQ_BODY;
    h.remote_port = 8080;
    h.local_port = 443;
    h.content_length = 256;
    h.method = sp_str("GET");
    h.uri = sp_str("/");
    h.auth_type = sp_str("B");
    h.headers = &hk;
    h.nheaders = 1;
    h.env = &ek;
    h.nenv = 1;
    ck_assert_uint_eq(sp_reqhead_size(&h), sizeof(want_req));
    ck_assert_int_eq(sp_reqhead_encode(&h, b, sizeof(b)),
                     (int)sizeof(want_req));
    ck_assert_mem_eq(b, want_req, sizeof(want_req));

    memset(&r, 0, sizeof(r));
    r.status = 500;
    r.reason = sp_str("NO");
    r.content_length = -1;
    ck_assert_uint_eq(sp_resphead_size(&r), sizeof(want_resp));
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)),
                     (int)sizeof(want_resp));
    ck_assert_mem_eq(b, want_resp, sizeof(want_resp));
}
END_TEST

/* ---- limits ----------------------------------------------------------- */

START_TEST(head_limits)
{
    sp_reqhead_t h = sample_req(), d;
    sp_resphead_t r = sample_resp(), rd;
    sp_head_limits_t lim = SP_HEAD_LIMITS_DEFAULT;
    sp_kv_t kv[16];
    uint32_t longest = 0, i;
    size_t n;
    uint8_t *b;

    ck_assert_uint_eq(lim.max_fields, 200);
    ck_assert_uint_eq(lim.max_field_len, 65536);

    b = req_encode(&h, &n);
    /* fields = headers + env = 10 */
    lim.max_fields = NREQH + NREQE;
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), 0);
    lim.max_fields = NREQH + NREQE - 1;
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), SP_ELIMIT);
    lim.max_fields = NREQH - 1; /* already the headers are too many */
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), SP_ELIMIT);
    lim.max_fields = 1000;
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, NREQH + NREQE), 0);
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, NREQH + NREQE - 1),
                     SP_ELIMIT);
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 2), SP_ELIMIT);
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, NULL, 16), SP_ELIMIT);

    /* the longest field is the certificate */
    for (i = 0; i < NREQE; i++)
        if (req_env[i].value.len > longest)
            longest = req_env[i].value.len;
    ck_assert_uint_gt(longest, h.uri.len);
    lim.max_field_len = longest;
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), 0);
    lim.max_field_len = longest - 1;
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), SP_ELIMIT);
    lim.max_field_len = h.uri.len - 1; /* a fixed string over the limit */
    ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), SP_ELIMIT);
    free(b);

    /* a header name over the limit, all else short */
    {
        sp_kv_t one = {sp_str("X-A-Rather-Long-Name"), sp_str("v")};
        memset(&h, 0, sizeof(h));
        h.content_length = -1;
        h.headers = &one;
        h.nheaders = 1;
        b = req_encode(&h, &n);
        lim.max_field_len = 19;
        ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), SP_ELIMIT);
        lim.max_field_len = 20;
        ck_assert_int_eq(sp_reqhead_decode(b, n, &lim, &d, kv, 16), 0);
        free(b);
    }

    b = resp_encode(&r, &n);
    lim.max_fields = NRESPH;
    lim.max_field_len = 65536;
    ck_assert_int_eq(sp_resphead_decode(b, n, &lim, &rd, kv, 16), 0);
    lim.max_fields = NRESPH - 1;
    ck_assert_int_eq(sp_resphead_decode(b, n, &lim, &rd, kv, 16), SP_ELIMIT);
    lim.max_fields = 100;
    ck_assert_int_eq(sp_resphead_decode(b, n, &lim, &rd, kv, NRESPH - 1),
                     SP_ELIMIT);
    lim.max_field_len = resp_headers[0].value.len - 1;
    ck_assert_int_eq(sp_resphead_decode(b, n, &lim, &rd, kv, 16), SP_ELIMIT);
    free(b);
}
END_TEST

/* The default limit on fields. */
START_TEST(head_limits_default_fields)
{
    enum { N = SP_HEAD_MAX_FIELDS_DEFAULT + 1 };
    static sp_kv_t many[N], kv[N];
    static uint8_t buf[N * 16 + 256];
    sp_reqhead_t h, d;
    int n, i;

    for (i = 0; i < N; i++) {
        many[i].name = sp_str("X");
        many[i].value = sp_str("y");
    }
    memset(&h, 0, sizeof(h));
    h.content_length = -1;
    h.headers = many;
    h.nheaders = N - 1;
    n = sp_reqhead_encode(&h, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(sp_reqhead_decode(buf, (size_t)n, NULL, &d, kv, N), 0);
    ck_assert_uint_eq(d.nheaders, N - 1);
    h.nheaders = N - 2;
    h.env = many + N - 2;
    h.nenv = 2; /* 201 fields in all, split between headers and env */
    n = sp_reqhead_encode(&h, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(sp_reqhead_decode(buf, (size_t)n, NULL, &d, kv, N),
                     SP_ELIMIT);
}
END_TEST

/* ---- truncation and trailing bytes ------------------------------------ */

START_TEST(head_every_truncation_refused)
{
    sp_reqhead_t h = sample_req(), d;
    sp_resphead_t r = sample_resp(), rd;
    sp_kv_t kv[16];
    size_t n, k;
    uint8_t *b, *c;

    b = req_encode(&h, &n);
    for (k = 0; k < n; k++) {
        c = sp_test_dup_exact(b, k);
        ck_assert_msg(sp_reqhead_decode(c, k, NULL, &d, kv, 16) == SP_EPROTO,
                      "prefix %zu of %zu", k, n);
        free(c);
    }
    c = malloc(n + 5);
    memcpy(c, b, n);
    memset(c + n, 0, 5);
    ck_assert_int_eq(sp_reqhead_decode(c, n, NULL, &d, kv, 16), 0);
    ck_assert_int_eq(sp_reqhead_decode(c, n + 1, NULL, &d, kv, 16), SP_EPROTO);
    ck_assert_int_eq(sp_reqhead_decode(c, n + 5, NULL, &d, kv, 16), SP_EPROTO);
    free(c);
    free(b);

    b = resp_encode(&r, &n);
    for (k = 0; k < n; k++) {
        c = sp_test_dup_exact(b, k);
        ck_assert_msg(sp_resphead_decode(c, k, NULL, &rd, kv, 16) == SP_EPROTO,
                      "prefix %zu of %zu", k, n);
        free(c);
    }
    c = malloc(n + 1);
    memcpy(c, b, n);
    c[n] = 0;
    ck_assert_int_eq(sp_resphead_decode(c, n + 1, NULL, &rd, kv, 16),
                     SP_EPROTO);
    free(c);
    free(b);
}
END_TEST

/* ---- content rules ---------------------------------------------------- */

START_TEST(head_encode_refusals)
{
    sp_reqhead_t h;
    sp_resphead_t r;
    sp_kv_t kv;
    uint8_t b[2048];
    size_t size, cap;

#define REQ_EINVAL(stmt)                                                       \
    do {                                                                       \
        h = sample_req();                                                      \
        stmt;                                                                  \
        ck_assert_int_eq(sp_reqhead_encode(&h, b, sizeof(b)), SP_EINVAL);      \
        ck_assert_int_eq(sp_reqhead_encode(&h, b, 10), SP_EINVAL);             \
    } while (0)

    h = sample_req();
    ck_assert_int_gt(sp_reqhead_encode(&h, b, sizeof(b)), 0);
    REQ_EINVAL(h.method = ((sp_str_t){"G\0T", 3}));
    REQ_EINVAL(h.uri = ((sp_str_t){NULL, 1}));
    REQ_EINVAL(h.uri = sp_str("/a\nb"));
    REQ_EINVAL(h.protocol = sp_str("HTTP/1.1\r"));
    REQ_EINVAL(h.remote_user = sp_str("bob\n"));
    REQ_EINVAL(h.flags = 8);
    REQ_EINVAL(h.flags = SP_REQ_CHUNKED);
    REQ_EINVAL((h.flags = SP_REQ_BODY | SP_REQ_CHUNKED, h.content_length = 5));
    REQ_EINVAL((h.flags = SP_REQ_BODY, h.content_length = -1));
    REQ_EINVAL((h.flags = 0, h.content_length = -2));
    REQ_EINVAL(h.headers = NULL);
    REQ_EINVAL(h.env = NULL);

    kv.value = sp_str("v");
#define HNAME_EINVAL(nm)                                                       \
    REQ_EINVAL((kv.name = (sp_str_t){nm, sizeof(nm) - 1}, h.headers = &kv,     \
                h.nheaders = 1))
    HNAME_EINVAL("");
    HNAME_EINVAL("A:B");
    HNAME_EINVAL("A B");
    HNAME_EINVAL("A\tB");
    HNAME_EINVAL("A\x7f");
    HNAME_EINVAL("A\nB");
    kv.name = sp_str("X");
    REQ_EINVAL((kv.value = sp_str("a\r\nInjected: 1"), h.headers = &kv,
                h.nheaders = 1));
    /* env: names without '=', values anything but NUL */
    kv.value = sp_str("v");
    REQ_EINVAL((kv.name = sp_str("A=B"), h.env = &kv, h.nenv = 1));
    REQ_EINVAL((kv.name = sp_str(""), h.env = &kv, h.nenv = 1));
    REQ_EINVAL((kv.name = sp_str("A"), kv.value = ((sp_str_t){"\0", 1}),
                h.env = &kv, h.nenv = 1));
    h = sample_req();
    kv.name = sp_str("A");
    kv.value = sp_str("line1\nline2\r\n");
    h.env = &kv;
    h.nenv = 1;
    ck_assert_int_gt(sp_reqhead_encode(&h, b, sizeof(b)), 0);

    /* too small, at every size */
    h = sample_req();
    size = sp_reqhead_size(&h);
    ck_assert_uint_lt(size, sizeof(b));
    for (cap = 0; cap < size; cap++)
        ck_assert_int_eq(sp_reqhead_encode(&h, b, cap), SP_EMSGSIZE);
    ck_assert_int_eq(sp_reqhead_encode(&h, b, size), (int)size);

    /* response */
    r = sample_resp();
    ck_assert_int_gt(sp_resphead_encode(&r, b, sizeof(b)), 0);
    r.status = 99;
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r.status = 1000;
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r = sample_resp();
    r.flags = SP_REQ_HTTPS; /* no response flag is defined */
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r.flags = SP_REQ_BODY;
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r = sample_resp();
    r.reason = sp_str("OK\r\nX: y");
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r = sample_resp();
    r.content_length = -2;
    ck_assert_int_eq(sp_resphead_encode(&r, b, sizeof(b)), SP_EINVAL);
    r.content_length = -1;
    ck_assert_int_gt(sp_resphead_encode(&r, b, sizeof(b)), 0);
    r = sample_resp();
    size = sp_resphead_size(&r);
    for (cap = 0; cap < size; cap++)
        ck_assert_int_eq(sp_resphead_encode(&r, b, cap), SP_EMSGSIZE);
#undef HNAME_EINVAL
#undef REQ_EINVAL
}
END_TEST

/* Find the first occurrence of needle in hay (test helper). */
static size_t find(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return i;
    ck_abort_msg("'%s' not in the encoding", needle);
    return 0;
}

START_TEST(head_decode_refusals)
{
    sp_reqhead_t h = sample_req(), d;
    sp_resphead_t r = sample_resp(), rd;
    static sp_kv_t kv[1000];
    sp_head_limits_t big = {1000, 1u << 24};
    size_t n, at;
    uint8_t *b, save;

    b = req_encode(&h, &n);
    ck_assert_int_eq(sp_reqhead_decode(b, n, NULL, &d, kv, 16), 0);
/* off must not depend on b's contents: it is evaluated three times */
#define PATCHED(off, val, want)                                                \
    do {                                                                       \
        save = b[off];                                                         \
        b[off] = (val);                                                        \
        ck_assert_int_eq(sp_reqhead_decode(b, n, &big, &d, kv, 1000), want);   \
        b[off] = save;                                                         \
    } while (0)
    PATCHED(3, 0x0f, SP_EPROTO);  /* unknown flag bit 8 */
    PATCHED(3, 0x04, SP_EPROTO);  /* CHUNKED without BODY */
    PATCHED(15, 0xfe, SP_EPROTO); /* content_length -2 */
    PATCHED(8, 0x7f, SP_EPROTO);  /* CHUNKED with a length */
    at = find(b, n, "POST");
    PATCHED(at + 1, 0, SP_EPROTO);    /* inner NUL */
    PATCHED(at + 4, 'x', SP_EPROTO);  /* missing NUL */
    PATCHED(at + 1, '\r', SP_EPROTO); /* CR in the method */
    PATCHED(at - 1, 5, SP_EPROTO);    /* length past its NUL */
    PATCHED(at - 3, 0x01, SP_EPROTO); /* length past the end */
    PATCHED(at - 4, 0x80, SP_ELIMIT); /* length over the limit */
    at = find(b, n, "Accept");
    PATCHED(at + 2, ':', SP_EPROTO); /* bad header name */
    PATCHED(at + 2, ' ', SP_EPROTO);
    at = find(b, n, "text/html");
    PATCHED(at + 4, '\n', SP_EPROTO); /* LF in a header value */
    at = find(b, n, "SSL_PROTOCOL");
    PATCHED(at + 3, '=', SP_EPROTO); /* '=' in an env name */
    /* nheaders: over the limits, or more than the bytes can hold */
    at = find(b, n, "Host") - 8;
    ck_assert_uint_eq(b[at + 3], NREQH);
    PATCHED(at, 0xff, SP_ELIMIT);
    PATCHED(at + 2, 0x03, SP_EPROTO);      /* 774: more than the bytes hold */
    PATCHED(at + 3, NREQH + 1, SP_EPROTO); /* eats into the env */
    free(b);
#undef PATCHED

    b = resp_encode(&r, &n);
    ck_assert_int_eq(sp_resphead_decode(b, n, NULL, &rd, kv, 16), 0);
#define PATCHED(off, val, want)                                                \
    do {                                                                       \
        save = b[off];                                                         \
        b[off] = (val);                                                        \
        ck_assert_int_eq(sp_resphead_decode(b, n, NULL, &rd, kv, 16), want);   \
        b[off] = save;                                                         \
    } while (0)
    PATCHED(1, 99, SP_EPROTO);   /* status 99 */
    PATCHED(0, 0x04, SP_EPROTO); /* status 1224 */
    PATCHED(3, 1, SP_EPROTO);    /* reserved */
    PATCHED(7, 0x01, SP_EPROTO); /* no response flag is defined */
    PATCHED(4, 0x80, SP_EPROTO);
    PATCHED(8, 0xff, SP_EPROTO); /* content_length < -1 */
    at = find(b, n, "HttpOnly");
    PATCHED(at + 1, '\r', SP_EPROTO);
#undef PATCHED
    free(b);
}
END_TEST

/* ---- random mutations ------------------------------------------------- */

/* A decoded request head re-encodes to exactly the input bytes. */
static void req_reencodes(const sp_reqhead_t *d, const uint8_t *b, size_t n)
{
    uint8_t *re = malloc(n + 1);
    ck_assert_uint_eq(sp_reqhead_size(d), n);
    ck_assert_int_eq(sp_reqhead_encode(d, re, n + 1), (int)n);
    ck_assert_mem_eq(re, b, n);
    free(re);
}

static void resp_reencodes(const sp_resphead_t *d, const uint8_t *b, size_t n)
{
    uint8_t *re = malloc(n + 1);
    ck_assert_uint_eq(sp_resphead_size(d), n);
    ck_assert_int_eq(sp_resphead_encode(d, re, n + 1), (int)n);
    ck_assert_mem_eq(re, b, n);
    free(re);
}

START_TEST(head_random_mutations)
{
    enum { ROUNDS = 100000 };
    sp_reqhead_t h = sample_req(), d;
    sp_resphead_t r = sample_resp(), rd;
    sp_head_limits_t lim = {12, 4096};
    sp_kv_t kv[12];
    size_t nreq, nresp;
    uint8_t *req = req_encode(&h, &nreq), *resp = resp_encode(&r, &nresp);
    uint8_t tmp[1024];
    unsigned ok = 0;
    int i;

    ck_assert_uint_le(nreq, sizeof(tmp));
    sp_test_rng_seed(42);
    for (i = 0; i < ROUNDS; i++) {
        int is_req = (i & 1) == 0;
        const uint8_t *src = is_req ? req : resp;
        size_t n = is_req ? nreq : nresp, flips, k;
        uint8_t *c;
        int rc;

        memcpy(tmp, src, n);
        switch (sp_test_rng_below(4)) {
        case 0: /* flip a few bytes */
            for (flips = 1 + sp_test_rng_below(4), k = 0; k < flips; k++)
                tmp[sp_test_rng_below((uint32_t)n)] = (uint8_t)sp_test_rng();
            break;
        case 1: /* small values where lengths and counts live */
            for (flips = 1 + sp_test_rng_below(3), k = 0; k < flips; k++)
                tmp[sp_test_rng_below((uint32_t)n)] = (uint8_t)sp_test_rng_below(4);
            break;
        case 2: /* cut or extend */
            n = sp_test_rng_below((uint32_t)n + 8);
            break;
        default: /* pure garbage */
            n = sp_test_rng_below(200);
            for (k = 0; k < n; k++)
                tmp[k] = (uint8_t)sp_test_rng();
        }
        c = sp_test_dup_exact(tmp, n);
        if (is_req) {
            rc = sp_reqhead_decode(c, n, &lim, &d, kv, 12);
            if (rc == 0)
                req_reencodes(&d, c, n);
        } else {
            rc = sp_resphead_decode(c, n, &lim, &rd, kv, 12);
            if (rc == 0)
                resp_reencodes(&rd, c, n);
        }
        ck_assert_msg(rc == 0 || rc == SP_EPROTO || rc == SP_ELIMIT, "rc %d",
                      rc);
        ok += rc == 0;
        free(c);
    }
    /* some mutations (inside strings) leave a valid head */
    ck_assert_uint_gt(ok, 100);
    free(req);
    free(resp);
}
END_TEST

/* ---- string helpers --------------------------------------------------- */

START_TEST(head_str_helpers)
{
    sp_str_t e = sp_str(NULL), s = sp_str("Content-Type");
    sp_kv_t kv[] = {KV("Host", "a"), KV("Set-Cookie", "1"),
                    KV("set-cookie", "2")};

    ck_assert_ptr_nonnull(e.ptr);
    ck_assert_uint_eq(e.len, 0);
    ck_assert_uint_eq(s.len, 12);
    ck_assert(sp_str_eq(e, ""));
    ck_assert(sp_str_eq(e, NULL));
    ck_assert(sp_str_eq((sp_str_t){NULL, 0}, ""));
    ck_assert(sp_str_eq(s, "Content-Type"));
    ck_assert(!sp_str_eq(s, "content-type"));
    ck_assert(!sp_str_eq(s, "Content-Typ"));
    ck_assert(!sp_str_eq(s, "Content-Types"));
    ck_assert(sp_str_caseeq(s, "content-TYPE"));
    ck_assert(!sp_str_caseeq(s, "content-typ"));
    ck_assert(!sp_str_caseeq(s, "content_type"));
    ck_assert(!sp_str_caseeq(sp_str("@[`{"), "`{@["));
    ck_assert(sp_str_caseeq(e, NULL));
    ck_assert_ptr_eq(sp_kv_find(kv, 3, "SET-COOKIE"), &kv[1]);
    ck_assert_ptr_eq(sp_kv_find(kv, 3, "host"), &kv[0]);
    ck_assert_ptr_null(sp_kv_find(kv, 3, "Accept"));
    ck_assert_ptr_null(sp_kv_find(kv, 0, "Host"));
}
END_TEST

Suite *suite_head(void)
{
    Suite *s = suite_create("head");
    TCase *tc = tcase_create("head");
    tcase_add_test(tc, head_req_roundtrip);
    tcase_add_test(tc, head_resp_roundtrip);
    tcase_add_test(tc, head_layout);
    tcase_add_test(tc, head_limits);
    tcase_add_test(tc, head_limits_default_fields);
    tcase_add_test(tc, head_every_truncation_refused);
    tcase_add_test(tc, head_encode_refusals);
    tcase_add_test(tc, head_decode_refusals);
    tcase_add_test(tc, head_random_mutations);
    tcase_add_test(tc, head_str_helpers);
    suite_add_tcase(s, tc);
    return s;
}
