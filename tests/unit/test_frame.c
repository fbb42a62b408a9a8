/*
 * test_frame.c - the link frame codec (sp_frame.c): header layout, every
 * type round-tripping, every refusal, truncation at every byte, a random
 * split feed, and seeded random garbage.
 *
 * Inputs that end early are copied into malloc'd buffers of exactly their
 * length, so the ASan build (make unit SANITIZE=address,undefined) turns
 * any read past len into a failure.
 */
#include "sp_unit.h"

#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"

/* ---- helpers ---------------------------------------------------------- */

static void hdr_put(uint8_t *b, uint8_t ver, uint8_t type, uint16_t flags,
                    uint32_t stream, uint32_t gen, uint32_t len)
{
    sp_frame_hdr_t h = {ver, type, flags, stream, gen, len};
    sp_frame_hdr_encode(&h, b);
}

static const uint8_t all_types[] = {
    SP_FT_HELLO,  SP_FT_HELLO_ACK, SP_FT_AUTH,          SP_FT_PING,
    SP_FT_PONG,   SP_FT_GOAWAY,    SP_FT_REQUEST_HEAD,  SP_FT_ACCEPT,
    SP_FT_BODY,   SP_FT_END,       SP_FT_RESPONSE_HEAD, SP_FT_ABORT,
    SP_FT_CREDIT,
};
#define NALL (sizeof(all_types) / sizeof(all_types[0]))

static int is_link(uint8_t type)
{
    return type >= SP_FT_HELLO && type <= SP_FT_GOAWAY;
}

static void fill_random(uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)sp_test_rng();
}

/* A printable random string of up to max bytes, in storage. */
static sp_str_t rand_text(char *storage, uint32_t max)
{
    uint32_t n = sp_test_rng_below(max + 1), i;
    for (i = 0; i < n; i++)
        storage[i] = (char)(' ' + sp_test_rng_below(95));
    storage[n] = 0;
    return (sp_str_t){storage, n};
}

/*
 * Encode one valid frame of the given type with random contents into buf
 * (cap bytes).  Returns the frame size.  The stream-level ids are random,
 * link frames get 0/0.
 */
static int make_frame(uint8_t type, uint8_t *buf, size_t cap)
{
    uint8_t *pl = buf + SP_FRAME_HDR_SIZE;
    size_t pcap = cap - SP_FRAME_HDR_SIZE;
    uint32_t stream = is_link(type) ? 0 : sp_test_rng();
    uint32_t gen = is_link(type) ? 0 : sp_test_rng();
    char s1[200], s2[200], s3[200];
    sp_kv_t kv[3];
    int n = 0;

    switch (type) {
    case SP_FT_HELLO: {
        sp_hello_t m = {1,
                        (uint16_t)(1 + sp_test_rng_below(3)),
                        SP_FRAME_MAX_PAYLOAD_MIN + sp_test_rng_below(100000),
                        sp_test_rng(),
                        sp_test_rng(),
                        sp_test_rng(),
                        {0},
                        rand_text(s1, 100)};
        m.initial_window &= SP_FRAME_WINDOW_MAX;
        fill_random(m.nonce, sizeof(m.nonce));
        n = sp_hello_encode(&m, pl, pcap);
        break;
    }
    case SP_FT_HELLO_ACK: {
        sp_hello_ack_t m = {1,   SP_FRAME_MAX_PAYLOAD_CEIL, 0, sp_test_rng(), 0, {0},
                            {0}, rand_text(s1, 100)};
        fill_random(m.nonce, sizeof(m.nonce));
        fill_random(m.proof, sizeof(m.proof));
        n = sp_hello_ack_encode(&m, pl, pcap);
        break;
    }
    case SP_FT_AUTH: {
        uint8_t proof[SP_PROOF_SIZE];
        fill_random(proof, sizeof(proof));
        n = sp_auth_encode(proof, pl, pcap);
        break;
    }
    case SP_FT_PING:
    case SP_FT_PONG: {
        uint8_t o[SP_PING_SIZE];
        fill_random(o, sizeof(o));
        n = sp_ping_encode(o, pl, pcap);
        break;
    }
    case SP_FT_GOAWAY: {
        sp_goaway_t m = {sp_test_rng_below(6), rand_text(s1, 150)};
        n = sp_goaway_encode(&m, pl, pcap);
        break;
    }
    case SP_FT_REQUEST_HEAD: {
        sp_reqhead_t h;
        memset(&h, 0, sizeof(h));
        h.method = sp_str("POST");
        h.uri = rand_text(s1, 150);
        h.protocol = sp_str("HTTP/1.1");
        h.content_length = sp_test_rng_below(1000);
        h.flags = SP_REQ_BODY;
        kv[0].name = sp_str("Host");
        kv[0].value = rand_text(s2, 50);
        kv[1].name = sp_str("HTTPS");
        kv[1].value = rand_text(s3, 10);
        h.headers = kv;
        h.nheaders = 1;
        h.env = kv + 1;
        h.nenv = 1;
        n = sp_reqhead_encode(&h, pl, pcap);
        break;
    }
    case SP_FT_RESPONSE_HEAD: {
        sp_resphead_t h;
        memset(&h, 0, sizeof(h));
        h.status = (uint16_t)(100 + sp_test_rng_below(900));
        h.reason = rand_text(s1, 30);
        h.content_length = -1;
        kv[0].name = sp_str("Set-Cookie");
        kv[0].value = rand_text(s2, 100);
        h.headers = kv;
        h.nheaders = 1;
        n = sp_resphead_encode(&h, pl, pcap);
        break;
    }
    case SP_FT_ABORT: {
        sp_abort_t m = {1 + sp_test_rng_below(8), (uint16_t)(sp_test_rng_below(2) ? 502 : 0),
                        rand_text(s1, 60)};
        n = sp_abort_encode(&m, pl, pcap);
        break;
    }
    case SP_FT_CREDIT:
        n = sp_credit_encode(1 + sp_test_rng_below(1u << 20), pl, pcap);
        break;
    case SP_FT_BODY: {
        /* mostly small, now and then a big one */
        uint32_t len = sp_test_rng_below(8) == 0 ? sp_test_rng_below(20000) : sp_test_rng_below(300);
        ck_assert_uint_le(len, pcap);
        fill_random(pl, len);
        n = (int)len;
        break;
    }
    case SP_FT_ACCEPT:
    case SP_FT_END:
        n = 0;
        break;
    default:
        ck_abort_msg("no sample for type %u", type);
    }
    ck_assert_int_ge(n, 0);
    n = sp_frame_encode(buf, cap, type, 0, stream, gen, pl, (uint32_t)n);
    ck_assert_int_gt(n, 0);
    return n;
}

/* ---- header ----------------------------------------------------------- */

START_TEST(frame_hdr_layout)
{
    /* clang-format off */
    static const uint8_t want[SP_FRAME_HDR_SIZE] = {
        0x01, 0x12, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,
        0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x01, 0x0a};
    /* clang-format on */
    sp_frame_hdr_t h = {SP_PROTO_VERSION, SP_FT_BODY, 0,
                        0x01020304,       0x05060708, 0x10a};
    sp_frame_hdr_t d;
    uint8_t b[SP_FRAME_HDR_SIZE];

    sp_frame_hdr_encode(&h, b);
    ck_assert_mem_eq(b, want, sizeof(want));
    memset(&d, 0xff, sizeof(d));
    ck_assert_int_eq(sp_frame_hdr_decode(b, sizeof(b), NULL, &d), 0);
    ck_assert_uint_eq(d.version, 1);
    ck_assert_uint_eq(d.type, SP_FT_BODY);
    ck_assert_uint_eq(d.flags, 0);
    ck_assert_uint_eq(d.stream, 0x01020304);
    ck_assert_uint_eq(d.gen, 0x05060708);
    ck_assert_uint_eq(d.len, 0x10a);
}
END_TEST

START_TEST(frame_hdr_roundtrip_every_type)
{
    static const int fixed[256] = {[SP_FT_AUTH] = 32,
                                   [SP_FT_PING] = 8,
                                   [SP_FT_PONG] = 8,
                                   [SP_FT_CREDIT] = 4};
    size_t i;

    for (i = 0; i < NALL; i++) {
        uint8_t t = all_types[i];
        uint32_t len = fixed[t] ? (uint32_t)fixed[t] : 0;
        uint32_t id = is_link(t) ? 0 : 0xdeadbeef;
        sp_frame_hdr_t h = {SP_PROTO_VERSION, t, 0, id, id & 0x55, len};
        sp_frame_hdr_t d;
        uint8_t b[SP_FRAME_HDR_SIZE];

        sp_frame_hdr_encode(&h, b);
        ck_assert_msg(sp_frame_hdr_decode(b, sizeof(b), NULL, &d) == 0,
                      "type %s", sp_frame_type_name(t));
        ck_assert_uint_eq(d.type, t);
        ck_assert_uint_eq(d.stream, h.stream);
        ck_assert_uint_eq(d.gen, h.gen);
        ck_assert_uint_eq(d.len, len);
    }
}
END_TEST

START_TEST(frame_hdr_length_limits)
{
    uint8_t b[SP_FRAME_HDR_SIZE];
    sp_frame_limits_t small = {100}, huge = {UINT32_MAX};
    sp_frame_hdr_t h;
    sp_frame_t f;

    /* Default limit: the 16 header bytes alone are enough to refuse. */
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, SP_FRAME_MAX_PAYLOAD_DEFAULT + 1);
    ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_ELIMIT);
    ck_assert_int_eq(sp_frame_decode(b, 16, NULL, &f), SP_ELIMIT);
    ck_assert_uint_eq(f.hdr.len, SP_FRAME_MAX_PAYLOAD_DEFAULT + 1);
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, SP_FRAME_MAX_PAYLOAD_DEFAULT);
    ck_assert_int_eq(sp_frame_decode(b, 16, NULL, &f), SP_EAGAIN);

    /* A caller's limit, for every stream type with a variable size. */
    hdr_put(b, 1, SP_FT_REQUEST_HEAD, 0, 3, 4, 101);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_RESPONSE_HEAD, 0, 3, 4, 101);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_ABORT, 0, 3, 4, 101);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, 101);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, 100);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_EAGAIN);

    /* No limit goes above the ceiling. */
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, SP_FRAME_MAX_PAYLOAD_CEIL + 1);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, UINT32_MAX);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_BODY, 0, 3, 4, SP_FRAME_MAX_PAYLOAD_CEIL);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_EAGAIN);

    /* Link frames: SP_FRAME_CTL_MAX whatever the negotiated limit. */
    hdr_put(b, 1, SP_FT_HELLO, 0, 0, 0, SP_FRAME_CTL_MAX + 1);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_HELLO_ACK, 0, 0, 0, SP_FRAME_CTL_MAX + 1);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_GOAWAY, 0, 0, 0, SP_FRAME_CTL_MAX + 1);
    ck_assert_int_eq(sp_frame_decode(b, 16, &huge, &f), SP_ELIMIT);
    hdr_put(b, 1, SP_FT_GOAWAY, 0, 0, 0, SP_FRAME_CTL_MAX);
    ck_assert_int_eq(sp_frame_decode(b, 16, &small, &f), SP_EAGAIN);
}
END_TEST

START_TEST(frame_hdr_refusals)
{
    static const uint8_t bad_types[] = {0, 7, 8, 15, 23, 24, 128, 255};
    static const uint8_t bad_versions[] = {0, 2, 3, 255};
    uint8_t b[SP_FRAME_HDR_SIZE];
    sp_frame_hdr_t h;
    size_t i;
    unsigned bit;

    for (i = 0; i < sizeof(bad_versions); i++) {
        hdr_put(b, bad_versions[i], SP_FT_END, 0, 1, 1, 0);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EBADVER);
        ck_assert_uint_eq(h.version, bad_versions[i]);
    }
    /* The version is judged before anything else. */
    hdr_put(b, 2, 99, 0xffff, 1, 1, UINT32_MAX);
    ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EBADVER);

    for (i = 0; i < sizeof(bad_types); i++) {
        hdr_put(b, 1, bad_types[i], 0, 0, 0, 0);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EUNKNOWN);
        ck_assert_uint_eq(h.type, bad_types[i]);
    }
    for (bit = 0; bit < 16; bit++) {
        hdr_put(b, 1, SP_FT_BODY, (uint16_t)(1u << bit), 1, 1, 0);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EPROTO);
    }
    for (i = 0; i < NALL; i++) {
        uint8_t t = all_types[i];
        uint32_t len = t == SP_FT_AUTH ? 32 : t <= SP_FT_PONG ? 8 : 0;
        if (!is_link(t))
            continue;
        hdr_put(b, 1, t, 0, 1, 0, len);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EPROTO);
        hdr_put(b, 1, t, 0, 0, 1, len);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EPROTO);
        hdr_put(b, 1, t, 0, 0, 0, len);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), 0);
    }
    /* Stream frames may use stream 0 and gen 0 (slot 0, first request). */
    hdr_put(b, 1, SP_FT_ACCEPT, 0, 0, 0, 0);
    ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), 0);
}
END_TEST

START_TEST(frame_hdr_fixed_sizes)
{
    static const struct {
        uint8_t type;
        uint32_t size;
    } fx[] = {{SP_FT_ACCEPT, 0}, {SP_FT_END, 0},  {SP_FT_CREDIT, 4},
              {SP_FT_PING, 8},   {SP_FT_PONG, 8}, {SP_FT_AUTH, 32}};
    uint8_t b[SP_FRAME_HDR_SIZE];
    sp_frame_hdr_t h;
    size_t i;

    for (i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
        uint32_t id = is_link(fx[i].type) ? 0 : 9;
        hdr_put(b, 1, fx[i].type, 0, id, id, fx[i].size);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), 0);
        hdr_put(b, 1, fx[i].type, 0, id, id, fx[i].size + 1);
        ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EPROTO);
        if (fx[i].size > 0) {
            hdr_put(b, 1, fx[i].type, 0, id, id, fx[i].size - 1);
            ck_assert_int_eq(sp_frame_hdr_decode(b, 16, NULL, &h), SP_EPROTO);
        }
    }
}
END_TEST

START_TEST(frame_type_names)
{
    static const char *want[] = {
        "HELLO",         "HELLO_ACK",    "AUTH",   "PING", "PONG",
        "GOAWAY",        "REQUEST_HEAD", "ACCEPT", "BODY", "END",
        "RESPONSE_HEAD", "ABORT",        "CREDIT"};
    size_t i;

    for (i = 0; i < NALL; i++)
        ck_assert_str_eq(sp_frame_type_name(all_types[i]), want[i]);
    ck_assert_str_eq(sp_frame_type_name(0), "?");
    ck_assert_str_eq(sp_frame_type_name(7), "?");
    ck_assert_str_eq(sp_frame_type_name(23), "?");
    ck_assert_str_eq(sp_frame_type_name(100000), "?");
    ck_assert_str_eq(sp_abort_code_name(SP_ABORT_CANCEL), "CANCEL");
    ck_assert_str_eq(sp_abort_code_name(SP_ABORT_SHUTDOWN), "SHUTDOWN");
    ck_assert_str_eq(sp_abort_code_name(0), "?");
    ck_assert_str_eq(sp_abort_code_name(9), "?");
    ck_assert_str_eq(sp_goaway_code_name(SP_GOAWAY_NORMAL), "NORMAL");
    ck_assert_str_eq(sp_goaway_code_name(SP_GOAWAY_LIMIT), "LIMIT");
    ck_assert_str_eq(sp_goaway_code_name(5), "?");
}
END_TEST

/* ---- whole frames ----------------------------------------------------- */

START_TEST(frame_encode_and_decode)
{
    uint8_t buf[64], *c;
    sp_frame_t f;
    int n, cap;

    n = sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 7, 8, "hello", 5);
    ck_assert_int_eq(n, 21);
    ck_assert_mem_eq(buf + 16, "hello", 5);
    c = sp_test_dup_exact(buf, 21);
    ck_assert_int_eq(sp_frame_decode(c, 21, NULL, &f), 21);
    ck_assert_ptr_eq(f.payload, c + 16);
    ck_assert_uint_eq(f.hdr.stream, 7);
    ck_assert_uint_eq(f.hdr.gen, 8);
    ck_assert_uint_eq(f.hdr.len, 5);
    free(c);

    /* Too small a buffer, at every size. */
    for (cap = 0; cap < 21; cap++)
        ck_assert_int_eq(
            sp_frame_encode(buf, (size_t)cap, SP_FT_BODY, 0, 7, 8, "hello", 5),
            SP_EMSGSIZE);
    /* Payload encoded in place, and payload elsewhere inside buf. */
    memcpy(buf + 16, "world", 5);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 1, 2, buf + 16, 5),
        21);
    ck_assert_mem_eq(buf + 16, "world", 5);
    memcpy(buf + 4, "abcdefghijklmnopqrst", 20);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 1, 2, buf + 4, 20),
        36);
    ck_assert_mem_eq(buf + 16, "abcdefghijklmnopqrst", 20);
    ck_assert_int_eq(sp_frame_decode(buf, 36, NULL, &f), 36);
    ck_assert_uint_eq(f.hdr.len, 20);

    /* What the decoder would refuse is not encoded. */
    ck_assert_int_eq(sp_frame_encode(buf, sizeof(buf), 7, 0, 0, 0, NULL, 0),
                     SP_EINVAL);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_END, 1, 0, 0, NULL, 0),
        SP_EINVAL);
    ck_assert_int_eq(sp_frame_encode(buf, sizeof(buf), SP_FT_GOAWAY, 0, 1, 0,
                                     "\0\0\0\0\0\0\0\0\0", 9),
                     SP_EINVAL);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_END, 0, 1, 1, "x", 1),
        SP_EINVAL);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 1, 1, NULL, 1),
        SP_EINVAL);
    ck_assert_int_eq(sp_frame_encode(buf, sizeof(buf), SP_FT_HELLO, 0, 0, 0,
                                     buf, SP_FRAME_CTL_MAX + 1),
                     SP_EINVAL);
    ck_assert_int_eq(sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 1, 1, buf,
                                     SP_FRAME_MAX_PAYLOAD_CEIL + 1),
                     SP_EMSGSIZE);
    ck_assert_int_eq(
        sp_frame_encode(buf, sizeof(buf), SP_FT_END, 0, 1, 1, NULL, 0), 16);
}
END_TEST

/* Every type: build, decode the frame, decode the typed payload, compare
 * with what went in. */
START_TEST(frame_typed_roundtrip)
{
    uint8_t buf[4096], *c;
    sp_frame_t f;
    int n, i;

    {
        sp_hello_t m = {1, 3, 1 << 20, 1 << 18, 512, 0x5, {0}, sp_str("px")};
        sp_hello_t d;
        for (i = 0; i < SP_NONCE_SIZE; i++)
            m.nonce[i] = (uint8_t)(i * 7);
        n = sp_hello_encode(&m, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, (int)SP_HELLO_MIN_SIZE + 2);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_HELLO, 0, 0, 0, buf + 16,
                            (uint32_t)n);
        c = sp_test_dup_exact(buf, (size_t)n);
        ck_assert_int_eq(sp_frame_decode(c, (size_t)n, NULL, &f), n);
        ck_assert_uint_eq(f.hdr.type, SP_FT_HELLO);
        ck_assert_int_eq(sp_hello_decode(f.payload, f.hdr.len, &d), 0);
        ck_assert_uint_eq(d.min_version, 1);
        ck_assert_uint_eq(d.max_version, 3);
        ck_assert_uint_eq(d.max_payload, 1 << 20);
        ck_assert_uint_eq(d.initial_window, 1 << 18);
        ck_assert_uint_eq(d.max_streams, 512);
        ck_assert_uint_eq(d.features, 5);
        ck_assert_mem_eq(d.nonce, m.nonce, SP_NONCE_SIZE);
        ck_assert_uint_eq(d.node.len, 2);
        ck_assert_str_eq(d.node.ptr, "px");
        ck_assert_ptr_eq(d.node.ptr, (const char *)f.payload + 56);
        /* layout: node's length at offset 52 */
        ck_assert_uint_eq(f.payload[55], 2);
        ck_assert_uint_eq(f.payload[4], 0x00);
        ck_assert_uint_eq(f.payload[5], 0x10);
        free(c);
    }
    {
        sp_hello_ack_t m = {1,          65536, 0,   100,
                            0xffffffff, {0},   {0}, sp_str("backend-1:4242")};
        sp_hello_ack_t d;
        memset(m.nonce, 0xaa, sizeof(m.nonce));
        memset(m.proof, 0x55, sizeof(m.proof));
        n = sp_hello_ack_encode(&m, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, (int)SP_HELLO_ACK_MIN_SIZE + 14);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_HELLO_ACK, 0, 0, 0,
                            buf + 16, (uint32_t)n);
        c = sp_test_dup_exact(buf, (size_t)n);
        ck_assert_int_eq(sp_frame_decode(c, (size_t)n, NULL, &f), n);
        ck_assert_int_eq(sp_hello_ack_decode(f.payload, f.hdr.len, &d), 0);
        ck_assert_uint_eq(d.version, 1);
        ck_assert_uint_eq(d.max_payload, 65536);
        ck_assert_uint_eq(d.initial_window, 0);
        ck_assert_uint_eq(d.max_streams, 100);
        ck_assert_uint_eq(d.features, 0xffffffff);
        ck_assert_mem_eq(d.nonce, m.nonce, SP_NONCE_SIZE);
        ck_assert_mem_eq(d.proof, m.proof, SP_PROOF_SIZE);
        ck_assert_str_eq(d.node.ptr, "backend-1:4242");
        free(c);
    }
    {
        uint8_t proof[SP_PROOF_SIZE], got[SP_PROOF_SIZE];
        for (i = 0; i < SP_PROOF_SIZE; i++)
            proof[i] = (uint8_t)(255 - i);
        n = sp_auth_encode(proof, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, SP_PROOF_SIZE);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_AUTH, 0, 0, 0, buf + 16,
                            (uint32_t)n);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), 48);
        ck_assert_int_eq(sp_auth_decode(f.payload, f.hdr.len, got), 0);
        ck_assert_mem_eq(got, proof, SP_PROOF_SIZE);
    }
    for (i = 0; i < 2; i++) {
        uint8_t t = i ? SP_FT_PONG : SP_FT_PING;
        uint8_t o[SP_PING_SIZE] = {1, 2, 3, 4, 5, 6, 7, (uint8_t)i}, got[8];
        n = sp_ping_encode(o, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, SP_PING_SIZE);
        n = sp_frame_encode(buf, sizeof(buf), t, 0, 0, 0, buf + 16, 8);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), 24);
        ck_assert_uint_eq(f.hdr.type, t);
        ck_assert_int_eq(sp_ping_decode(f.payload, f.hdr.len, got), 0);
        ck_assert_mem_eq(got, o, SP_PING_SIZE);
    }
    {
        sp_goaway_t m = {SP_GOAWAY_RELOAD, sp_str("graceful reload")}, d;
        n = sp_goaway_encode(&m, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, 4 + 4 + 15 + 1);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_GOAWAY, 0, 0, 0, buf + 16,
                            (uint32_t)n);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), n);
        ck_assert_int_eq(sp_goaway_decode(f.payload, f.hdr.len, &d), 0);
        ck_assert_uint_eq(d.code, SP_GOAWAY_RELOAD);
        ck_assert_str_eq(d.reason.ptr, "graceful reload");
        ck_assert_uint_eq(d.reason.len, 15);
    }
    {
        /* clang-format off */
        static const uint8_t want[] = {
            0, 0, 0, 3,             /* code WORKER_CRASH */
            0x01, 0xf6, 0, 0,       /* status 502, reserved */
            0, 0, 0, 4, 'd', 'e', 'a', 'd', 0};
        /* clang-format on */
        sp_abort_t m = {SP_ABORT_WORKER_CRASH, 502, sp_str("dead")}, d;
        n = sp_abort_encode(&m, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, (int)sizeof(want));
        ck_assert_mem_eq(buf + 16, want, sizeof(want));
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_ABORT, 0, 12, 34, buf + 16,
                            (uint32_t)n);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), n);
        ck_assert_uint_eq(f.hdr.stream, 12);
        ck_assert_uint_eq(f.hdr.gen, 34);
        ck_assert_int_eq(sp_abort_decode(f.payload, f.hdr.len, &d), 0);
        ck_assert_uint_eq(d.code, SP_ABORT_WORKER_CRASH);
        ck_assert_uint_eq(d.status, 502);
        ck_assert_str_eq(d.reason.ptr, "dead");
    }
    {
        uint32_t incr = 0;
        n = sp_credit_encode(0x01020304, buf + 16, sizeof(buf) - 16);
        ck_assert_int_eq(n, 4);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_CREDIT, 0, 5, 6, buf + 16,
                            4);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), 20);
        ck_assert_uint_eq(f.payload[0], 1);
        ck_assert_int_eq(sp_credit_decode(f.payload, f.hdr.len, &incr), 0);
        ck_assert_uint_eq(incr, 0x01020304);
    }
    for (i = 0; i < 2; i++) {
        uint8_t t = i ? SP_FT_END : SP_FT_ACCEPT;
        n = sp_frame_encode(buf, sizeof(buf), t, 0, 5, 6, NULL, 0);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), 16);
        ck_assert_uint_eq(f.hdr.type, t);
        ck_assert_uint_eq(f.hdr.len, 0);
    }
    {
        sp_reqhead_t h, d;
        sp_kv_t kv[4];
        memset(&h, 0, sizeof(h));
        h.method = sp_str("GET");
        h.uri = sp_str("/x?y=1");
        h.protocol = sp_str("HTTP/1.1");
        h.content_length = -1;
        n = sp_reqhead_encode(&h, buf + 16, sizeof(buf) - 16);
        ck_assert_int_gt(n, 0);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_REQUEST_HEAD, 0, 3, 1,
                            buf + 16, (uint32_t)n);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), n);
        ck_assert_int_eq(
            sp_reqhead_decode(f.payload, f.hdr.len, NULL, &d, kv, 4), 0);
        ck_assert_str_eq(d.uri.ptr, "/x?y=1");
    }
    {
        sp_resphead_t h, d;
        sp_kv_t kv[4];
        memset(&h, 0, sizeof(h));
        h.status = 204;
        h.content_length = -1;
        n = sp_resphead_encode(&h, buf + 16, sizeof(buf) - 16);
        ck_assert_int_gt(n, 0);
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_RESPONSE_HEAD, 0, 3, 1,
                            buf + 16, (uint32_t)n);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), n);
        ck_assert_int_eq(
            sp_resphead_decode(f.payload, f.hdr.len, NULL, &d, kv, 4), 0);
        ck_assert_uint_eq(d.status, 204);
    }
    {
        n = sp_frame_encode(buf, sizeof(buf), SP_FT_BODY, 0, 3, 1, "\0\1\2", 3);
        ck_assert_int_eq(sp_frame_decode(buf, (size_t)n, NULL, &f), 19);
        ck_assert_mem_eq(f.payload, "\0\1\2", 3);
    }
}
END_TEST

/* Every proper prefix of every kind of frame asks for more bytes, and
 * never reads past its end; the whole frame, alone or followed by more
 * bytes, decodes to its exact size. */
START_TEST(frame_every_truncation_is_eagain)
{
    static uint8_t buf[65536];
    size_t i, k;

    sp_test_rng_seed(1);
    for (i = 0; i < NALL; i++) {
        int n = make_frame(all_types[i], buf, sizeof(buf) - 16);
        sp_frame_t f;
        uint8_t *c;

        for (k = 0; k < (size_t)n; k++) {
            c = sp_test_dup_exact(buf, k);
            ck_assert_msg(sp_frame_decode(c, k, NULL, &f) == SP_EAGAIN,
                          "%s prefix %zu of %d",
                          sp_frame_type_name(all_types[i]), k, n);
            free(c);
        }
        c = sp_test_dup_exact(buf, (size_t)n);
        ck_assert_int_eq(sp_frame_decode(c, (size_t)n, NULL, &f), n);
        ck_assert_ptr_eq(f.payload, c + 16);
        ck_assert_uint_eq(f.hdr.type, all_types[i]);
        free(c);
        /* the next frame's first bytes do not change the answer */
        memset(buf + n, 0xee, 7);
        c = sp_test_dup_exact(buf, (size_t)n + 7);
        ck_assert_int_eq(sp_frame_decode(c, (size_t)n + 7, NULL, &f), n);
        free(c);
    }
}
END_TEST

/* ---- typed payload refusals ------------------------------------------- */

/* A GOAWAY payload with a hand-made reason string. */
static size_t goaway_raw(uint8_t *p, uint32_t slen, const char *bytes,
                         size_t nbytes)
{
    memset(p, 0, 4);
    p[4] = (uint8_t)(slen >> 24);
    p[5] = (uint8_t)(slen >> 16);
    p[6] = (uint8_t)(slen >> 8);
    p[7] = (uint8_t)slen;
    memcpy(p + 8, bytes, nbytes);
    return 8 + nbytes;
}

START_TEST(frame_typed_string_refusals)
{
    uint8_t p[64], *c;
    sp_goaway_t g;
    size_t n;

    n = goaway_raw(p, 3, "abc", 4); /* with its NUL */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), 0);
    ck_assert_str_eq(g.reason.ptr, "abc");
    free(c);
    n = goaway_raw(p, 3, "abcd", 4); /* missing NUL */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 3, "abc", 3); /* NUL cut off */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 3, "a\0c", 4); /* inner NUL */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 4, "abc", 4); /* length one past the end */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, UINT32_MAX, "abc", 4); /* length far past the end */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 3, "a\nc", 4); /* control character in a log text */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 3,
                   "a\x7f"
                   "c",
                   4);
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 3, "abc\0x", 5); /* trailing garbage */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
    free(c);
    n = goaway_raw(p, 0, "", 1); /* empty reason */
    c = sp_test_dup_exact(p, n);
    ck_assert_int_eq(sp_goaway_decode(c, n, &g), 0);
    ck_assert_uint_eq(g.reason.len, 0);
    ck_assert_str_eq(g.reason.ptr, "");
    free(c);
    for (n = 0; n < 9; n++) { /* anything shorter than the minimum */
        c = sp_test_dup_exact(p, n);
        ck_assert_int_eq(sp_goaway_decode(c, n, &g), SP_EPROTO);
        free(c);
    }

    /* The encoders refuse the same strings. */
    g.code = 0;
    g.reason = (sp_str_t){"a\0c", 3};
    ck_assert_int_eq(sp_goaway_encode(&g, p, sizeof(p)), SP_EINVAL);
    g.reason = (sp_str_t){"a\rc", 3};
    ck_assert_int_eq(sp_goaway_encode(&g, p, sizeof(p)), SP_EINVAL);
    g.reason = (sp_str_t){NULL, 3};
    ck_assert_int_eq(sp_goaway_encode(&g, p, sizeof(p)), SP_EINVAL);
    g.reason = (sp_str_t){NULL, 0};
    ck_assert_int_eq(sp_goaway_encode(&g, p, sizeof(p)), 9);
    ck_assert_uint_eq(p[8], 0);
}
END_TEST

/* Encode m with enc, then decode the bytes plus one extra: refused. */
#define TRAILING_REFUSED(enc, dec, m, out)                                     \
    do {                                                                       \
        uint8_t tb_[256], *tc_;                                                \
        int tn_ = enc(m, tb_, sizeof(tb_));                                    \
        ck_assert_int_gt(tn_, 0);                                              \
        tc_ = sp_test_dup_exact(tb_, (size_t)tn_);                                     \
        ck_assert_int_eq(dec(tc_, (size_t)tn_, out), 0);                       \
        free(tc_);                                                             \
        tb_[tn_] = 0;                                                          \
        tc_ = sp_test_dup_exact(tb_, (size_t)tn_ + 1);                                 \
        ck_assert_int_eq(dec(tc_, (size_t)tn_ + 1, out), SP_EPROTO);           \
        free(tc_);                                                             \
    } while (0)

START_TEST(frame_typed_trailing_garbage)
{
    sp_hello_t h = {1, 1, 65536, 65536, 16, 0, {0}, sp_str("a")}, hd;
    sp_hello_ack_t a = {1, 65536, 65536, 16, 0, {0}, {0}, sp_str("b")}, ad;
    sp_goaway_t g = {1, sp_str("bye")}, gd;
    sp_abort_t ab = {SP_ABORT_TIMEOUT, 504, sp_str("slow")}, abd;
    uint8_t p[64], out[64];
    uint32_t incr;

    TRAILING_REFUSED(sp_hello_encode, sp_hello_decode, &h, &hd);
    TRAILING_REFUSED(sp_hello_ack_encode, sp_hello_ack_decode, &a, &ad);
    TRAILING_REFUSED(sp_goaway_encode, sp_goaway_decode, &g, &gd);
    TRAILING_REFUSED(sp_abort_encode, sp_abort_decode, &ab, &abd);
    memset(p, 1, sizeof(p));
    ck_assert_int_eq(sp_auth_decode(p, 32, out), 0);
    ck_assert_int_eq(sp_auth_decode(p, 33, out), SP_EPROTO);
    ck_assert_int_eq(sp_auth_decode(p, 31, out), SP_EPROTO);
    ck_assert_int_eq(sp_ping_decode(p, 8, out), 0);
    ck_assert_int_eq(sp_ping_decode(p, 9, out), SP_EPROTO);
    ck_assert_int_eq(sp_ping_decode(p, 7, out), SP_EPROTO);
    ck_assert_int_eq(sp_credit_decode(p, 4, &incr), 0);
    ck_assert_uint_eq(incr, 0x01010101);
    ck_assert_int_eq(sp_credit_decode(p, 5, &incr), SP_EPROTO);
    ck_assert_int_eq(sp_credit_decode(p, 3, &incr), SP_EPROTO);
}
END_TEST

START_TEST(frame_typed_value_refusals)
{
    static const uint8_t zero[4];
    uint8_t p[256], *c;
    uint32_t incr = 7;
    int n;

    /* CREDIT 0 */
    ck_assert_int_eq(sp_credit_decode(zero, 4, &incr), SP_EPROTO);
    ck_assert_int_eq(sp_credit_encode(0, p, sizeof(p)), SP_EINVAL);
    ck_assert_int_eq(sp_credit_encode(1, p, 3), SP_EMSGSIZE);

    /* HELLO: versions and limits */
    {
        sp_hello_t m = {1, 1, 65536, 65536, 16, 0, {0}, sp_str("n")}, d;
        n = sp_hello_encode(&m, p, sizeof(p));
        ck_assert_int_eq(n, 58);
        /* offsets of the fields patched below */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), 0);
        p[1] = 0; /* min_version 0 */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), SP_EPROTO);
        p[1] = 2; /* min 2 > max 1 */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), SP_EPROTO);
        p[1] = 1;
        p[4] = 0x01; /* max_payload 16 MiB + 64 KiB */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), SP_ELIMIT);
        p[4] = 0x01, p[5] = 0x00; /* exactly 16 MiB */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), 0);
        p[4] = 0, p[5] = 0, p[6] = 0x0f, p[7] = 0xff; /* 4095 */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), SP_EPROTO);
        p[6] = 0x10, p[7] = 0; /* 4096 */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), 0);
        p[8] = 0x80; /* initial_window 2^31 + 64 KiB */
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), SP_EPROTO);
        p[8] = 0x7f;
        ck_assert_int_eq(sp_hello_decode(p, (size_t)n, &d), 0);

        m.min_version = 0;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.min_version = 2;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.min_version = 1;
        m.max_payload = SP_FRAME_MAX_PAYLOAD_CEIL + 1;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.max_payload = SP_FRAME_MAX_PAYLOAD_MIN - 1;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.max_payload = 65536;
        m.initial_window = SP_FRAME_WINDOW_MAX + 1;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.initial_window = SP_FRAME_WINDOW_MAX;
        ck_assert_int_eq(sp_hello_encode(&m, p, sizeof(p)), 58);
    }
    /* HELLO_ACK: version, reserved */
    {
        sp_hello_ack_t m = {1, 65536, 65536, 16, 0, {0}, {0}, sp_str("")}, d;
        n = sp_hello_ack_encode(&m, p, sizeof(p));
        ck_assert_int_eq(n, 89);
        ck_assert_int_eq(sp_hello_ack_decode(p, (size_t)n, &d), 0);
        p[3] = 1; /* reserved */
        ck_assert_int_eq(sp_hello_ack_decode(p, (size_t)n, &d), SP_EPROTO);
        p[3] = 0;
        p[1] = 0; /* version 0 */
        ck_assert_int_eq(sp_hello_ack_decode(p, (size_t)n, &d), SP_EPROTO);
        m.version = 0;
        ck_assert_int_eq(sp_hello_ack_encode(&m, p, sizeof(p)), SP_EINVAL);
        m.version = 1;
        m.max_payload = 1;
        ck_assert_int_eq(sp_hello_ack_encode(&m, p, sizeof(p)), SP_EINVAL);
    }
    /* ABORT: status hint and reserved */
    {
        sp_abort_t m = {SP_ABORT_OVERLOAD, 503, sp_str("queue full")}, d;
        n = sp_abort_encode(&m, p, sizeof(p));
        c = sp_test_dup_exact(p, (size_t)n);
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), 0);
        c[7] = 1; /* reserved */
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), SP_EPROTO);
        c[7] = 0;
        c[4] = 0, c[5] = 99;
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), SP_EPROTO);
        c[4] = 0x03, c[5] = 0xe8; /* 1000 */
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), SP_EPROTO);
        c[4] = 0x03, c[5] = 0xe7; /* 999 */
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), 0);
        c[4] = 0, c[5] = 0; /* no hint */
        ck_assert_int_eq(sp_abort_decode(c, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.status, 0);
        free(c);
        m.status = 42;
        ck_assert_int_eq(sp_abort_encode(&m, p, sizeof(p)), SP_EINVAL);
        /* unknown codes pass (forward compatible) */
        m.status = 0;
        m.code = 1000;
        n = sp_abort_encode(&m, p, sizeof(p));
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(sp_abort_decode(p, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.code, 1000);
    }
}
END_TEST

/* Every encoder reports SP_EMSGSIZE for every buffer one byte too small
 * or smaller, and writes nothing past cap. */
START_TEST(frame_typed_encode_short_buffers)
{
    sp_hello_t h = {1, 2, 65536, 65536, 16, 0, {0}, sp_str("node")};
    sp_hello_ack_t a = {1, 65536, 65536, 16, 0, {0}, {0}, sp_str("node")};
    sp_goaway_t g = {1, sp_str("bye")};
    sp_abort_t ab = {SP_ABORT_CANCEL, 0, sp_str("gone")};
    uint8_t pad[SP_PROOF_SIZE] = {0};
    uint8_t *b;
    size_t cap;

    for (cap = 0; cap < 120; cap++) {
        int want_h = cap >= 61 ? 61 : SP_EMSGSIZE;
        int want_a = cap >= 93 ? 93 : SP_EMSGSIZE;
        int want_g = cap >= 12 ? 12 : SP_EMSGSIZE;
        int want_ab = cap >= 17 ? 17 : SP_EMSGSIZE;

        b = malloc(cap ? cap : 1);
        ck_assert_int_eq(sp_hello_encode(&h, b, cap), want_h);
        ck_assert_int_eq(sp_hello_ack_encode(&a, b, cap), want_a);
        ck_assert_int_eq(sp_goaway_encode(&g, b, cap), want_g);
        ck_assert_int_eq(sp_abort_encode(&ab, b, cap), want_ab);
        ck_assert_int_eq(sp_auth_encode(pad, b, cap),
                         cap >= 32 ? 32 : SP_EMSGSIZE);
        ck_assert_int_eq(sp_ping_encode(pad, b, cap),
                         cap >= 8 ? 8 : SP_EMSGSIZE);
        ck_assert_int_eq(sp_credit_encode(9, b, cap),
                         cap >= 4 ? 4 : SP_EMSGSIZE);
        free(b);
    }
}
END_TEST

START_TEST(frame_auth_msg)
{
    uint8_t nc[SP_NONCE_SIZE], ns[SP_NONCE_SIZE];
    uint8_t ms[SP_AUTH_MSG_SIZE], mc[SP_AUTH_MSG_SIZE];

    memset(nc, 'c', sizeof(nc));
    memset(ns, 's', sizeof(ns));
    sp_auth_msg(ms, 0, nc, ns);
    sp_auth_msg(mc, 1, nc, ns);
    ck_assert_mem_eq(ms, "slotproxy-v1 server", 19);
    ck_assert_mem_eq(ms + 19, nc, SP_NONCE_SIZE);
    ck_assert_mem_eq(ms + 51, ns, SP_NONCE_SIZE);
    ck_assert_mem_eq(mc, "slotproxy-v1 client", 19);
    ck_assert_mem_eq(mc + 19, ns, SP_NONCE_SIZE);
    ck_assert_mem_eq(mc + 51, nc, SP_NONCE_SIZE);
}
END_TEST

START_TEST(frame_wire_cursors)
{
    uint8_t b[8];
    sp_wire_wr_t w;
    sp_wire_rd_t r;

    /* cap 0 measures */
    sp_wire_wr_init(&w, NULL, 0);
    sp_wire_put_u32(&w, 1);
    sp_wire_put_str(&w, sp_str("abc"), SP_WIRE_ANY);
    ck_assert_uint_eq(w.pos, 12);
    ck_assert_int_eq(sp_wire_wr_done(&w), SP_EMSGSIZE);
    /* SP_EINVAL wins over SP_EMSGSIZE, and measuring goes on */
    sp_wire_wr_init(&w, b, 2);
    sp_wire_put_u32(&w, 1);
    sp_wire_put_str(&w, sp_str("a:b"), SP_WIRE_HNAME);
    ck_assert_uint_eq(w.pos, 12);
    ck_assert_int_eq(sp_wire_wr_done(&w), SP_EINVAL);
    /* a string class that does not exist */
    sp_wire_wr_init(&w, b, sizeof(b));
    sp_wire_put_str(&w, sp_str("a"), 99);
    ck_assert_int_eq(sp_wire_wr_done(&w), SP_EINVAL);
    ck_assert_int_eq(sp_wire_str_ok((sp_str_t){NULL, 0}, 99), 0);
    ck_assert_int_eq(sp_wire_str_ok((sp_str_t){NULL, 0}, SP_WIRE_LINE), 1);
    ck_assert_int_eq(sp_wire_str_ok((sp_str_t){NULL, 0}, SP_WIRE_HNAME), 0);

    /* reader: sticky error, count checks */
    memcpy(b, "\0\0\0\x05\0\0\0\x01", 8);
    sp_wire_rd_init(&r, b, 8);
    ck_assert_uint_eq(sp_wire_get_count(&r, 4, 1), 0);
    ck_assert_int_eq(sp_wire_rd_done(&r), SP_ELIMIT);
    sp_wire_rd_init(&r, b, 8);
    ck_assert_uint_eq(sp_wire_get_count(&r, 5, 1), 0); /* 5 > 4 left */
    ck_assert_int_eq(sp_wire_rd_done(&r), SP_EPROTO);
    sp_wire_rd_init(&r, b, 8);
    ck_assert_uint_eq(sp_wire_get_count(&r, 5, 0), 5);
    ck_assert_uint_eq(sp_wire_get_u64(&r), 0); /* past the end */
    ck_assert_uint_eq(sp_wire_get_u8(&r), 0);  /* sticky */
    ck_assert_int_eq(sp_wire_rd_done(&r), SP_EPROTO);
    sp_wire_rd_init(&r, b, 8);
    ck_assert_uint_eq(sp_wire_get_u32(&r), 5);
    ck_assert_uint_eq(sp_wire_get_u16(&r), 0);
    ck_assert_int_eq(sp_wire_rd_done(&r), SP_EPROTO); /* 2 bytes left */
    ck_assert_uint_eq(sp_wire_get_u16(&r), 1);
    ck_assert_int_eq(sp_wire_rd_done(&r), 0);
}
END_TEST

/* ---- streams and garbage ---------------------------------------------- */

/*
 * Many frames of every type, concatenated, fed to an incremental receiver
 * in random slices (often one byte): the receiver decodes exactly the
 * frames that were sent, in order.
 */
START_TEST(frame_split_feed)
{
    enum { NFRAMES = 3000 };
    static uint8_t stream[4 << 20];
    static size_t off[NFRAMES + 1];
    size_t total = 0, fed = 0, start = 0, nf = 0, i;
    uint64_t seed;

    for (seed = 1; seed <= 3; seed++) {
        sp_test_rng_seed(seed * 7919);
        total = 0;
        for (i = 0; i < NFRAMES; i++) {
            uint8_t t = all_types[sp_test_rng_below(NALL)];
            off[i] = total;
            total +=
                (size_t)make_frame(t, stream + total, sizeof(stream) - total);
        }
        off[NFRAMES] = total;

        fed = start = nf = 0;
        while (fed < total) {
            size_t chunk = sp_test_rng_below(4) == 0 ? 1 : 1 + sp_test_rng_below(700);
            if (chunk > total - fed)
                chunk = total - fed;
            fed += chunk;
            /* decode every complete frame in stream[start..fed) */
            while (start < fed) {
                uint8_t *c = sp_test_dup_exact(stream + start, fed - start);
                sp_frame_t f;
                int n = sp_frame_decode(c, fed - start, NULL, &f);
                if (n == SP_EAGAIN) {
                    ck_assert_uint_lt(fed - start, off[nf + 1] - off[nf]);
                    free(c);
                    break;
                }
                ck_assert_int_gt(n, 0);
                ck_assert_uint_lt(nf, NFRAMES);
                ck_assert_uint_eq((size_t)n, off[nf + 1] - off[nf]);
                ck_assert_ptr_eq(f.payload, c + 16);
                ck_assert_mem_eq(c, stream + off[nf], (size_t)n);
                free(c);
                start += (size_t)n;
                nf++;
            }
        }
        ck_assert_uint_eq(nf, NFRAMES);
        ck_assert_uint_eq(start, total);
    }
}
END_TEST

/* On a decoded frame of a typed kind, the typed decoder either refuses or
 * returns strings inside the payload, and re-encodes to the same bytes. */
static void check_typed(const sp_frame_t *f)
{
    const uint8_t *p = f->payload;
    size_t len = f->hdr.len;
    uint8_t re[SP_FRAME_CTL_MAX + 64];
    const char *lo = (const char *)p, *hi = (const char *)p + len;
    sp_str_t s = {"", 0};
    int rc = 0, n = -1;

    switch (f->hdr.type) {
    case SP_FT_HELLO: {
        sp_hello_t m;
        if ((rc = sp_hello_decode(p, len, &m)) == 0) {
            s = m.node;
            n = sp_hello_encode(&m, re, sizeof(re));
        }
        break;
    }
    case SP_FT_HELLO_ACK: {
        sp_hello_ack_t m;
        if ((rc = sp_hello_ack_decode(p, len, &m)) == 0) {
            s = m.node;
            n = sp_hello_ack_encode(&m, re, sizeof(re));
        }
        break;
    }
    case SP_FT_GOAWAY: {
        sp_goaway_t m;
        if ((rc = sp_goaway_decode(p, len, &m)) == 0) {
            s = m.reason;
            n = sp_goaway_encode(&m, re, sizeof(re));
        }
        break;
    }
    case SP_FT_ABORT: {
        sp_abort_t m;
        if ((rc = sp_abort_decode(p, len, &m)) == 0) {
            s = m.reason;
            n = sp_abort_encode(&m, re, sizeof(re));
        }
        break;
    }
    case SP_FT_CREDIT: {
        uint32_t incr;
        if ((rc = sp_credit_decode(p, len, &incr)) == 0)
            n = sp_credit_encode(incr, re, sizeof(re));
        break;
    }
    default:
        return;
    }
    if (rc != 0) {
        ck_assert_msg(rc == SP_EPROTO || rc == SP_ELIMIT, "rc %d", rc);
        return;
    }
    if (s.len > 0) {
        ck_assert(s.ptr >= lo && s.ptr + s.len < hi);
        ck_assert_int_eq(s.ptr[s.len], 0);
    }
    ck_assert_int_eq(n, (int)len);
    ck_assert_mem_eq(re, p, len);
}

START_TEST(frame_random_garbage)
{
    enum { ROUNDS = 100000, MAXLEN = 96 };
    static const uint8_t typed[] = {SP_FT_HELLO, SP_FT_HELLO_ACK, SP_FT_GOAWAY,
                                    SP_FT_ABORT, SP_FT_CREDIT,    SP_FT_BODY,
                                    SP_FT_END};
    uint8_t tmp[MAXLEN];
    sp_frame_limits_t lim = {64};
    unsigned ok = 0;
    int i;

    sp_test_rng_seed(20261121);
    for (i = 0; i < ROUNDS; i++) {
        size_t len = sp_test_rng_below(MAXLEN + 1);
        sp_frame_t f;
        uint8_t *c;
        int n;

        fill_random(tmp, len);
        /* Steer half the inputs past the header checks, so the payload
         * paths see garbage too. */
        if (len >= 16 && sp_test_rng_below(2)) {
            uint8_t t = sp_test_rng_below(2) ? typed[sp_test_rng_below(sizeof(typed))]
                                     : all_types[sp_test_rng_below(NALL)];
            hdr_put(
                tmp, 1, t, 0, is_link(t) ? 0 : sp_test_rng(), is_link(t) ? 0 : sp_test_rng(),
                sp_test_rng_below(4) ? sp_test_rng_below((uint32_t)len - 15) : sp_test_rng_below(200));
            if (t == SP_FT_GOAWAY && len >= 24 && sp_test_rng_below(2)) {
                /* a plausible string length */
                memset(tmp + 20, 0, 3);
                tmp[23] = (uint8_t)sp_test_rng_below((uint32_t)len - 23);
            }
        }
        c = sp_test_dup_exact(tmp, len);
        n = sp_frame_decode(c, len, &lim, &f);
        if (n > 0) {
            ok++;
            ck_assert_uint_le((size_t)n, len);
            ck_assert_ptr_eq(f.payload, c + 16);
            ck_assert_uint_eq((size_t)n, 16 + (size_t)f.hdr.len);
            ck_assert_uint_le(f.hdr.len, is_link(f.hdr.type) ? SP_FRAME_CTL_MAX
                                                             : lim.max_payload);
            check_typed(&f);
        } else {
            ck_assert_msg(n == SP_EAGAIN || n == SP_EBADVER ||
                              n == SP_EUNKNOWN || n == SP_EPROTO ||
                              n == SP_ELIMIT,
                          "unexpected %d", n);
        }
        /* The typed decoders see raw garbage too. */
        {
            sp_frame_t g = {{1, typed[sp_test_rng_below(5)], 0, 0, 0, (uint32_t)len},
                            c};
            check_typed(&g);
        }
        free(c);
    }
    /* the steering works: a good share of inputs decode as frames */
    ck_assert_uint_gt(ok, ROUNDS / 20);
}
END_TEST

Suite *suite_frame(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, frame_hdr_layout);
    tcase_add_test(tc, frame_hdr_roundtrip_every_type);
    tcase_add_test(tc, frame_hdr_length_limits);
    tcase_add_test(tc, frame_hdr_refusals);
    tcase_add_test(tc, frame_hdr_fixed_sizes);
    tcase_add_test(tc, frame_type_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("frames");
    tcase_add_test(tc, frame_encode_and_decode);
    tcase_add_test(tc, frame_typed_roundtrip);
    tcase_add_test(tc, frame_every_truncation_is_eagain);
    tcase_add_test(tc, frame_typed_string_refusals);
    tcase_add_test(tc, frame_typed_trailing_garbage);
    tcase_add_test(tc, frame_typed_value_refusals);
    tcase_add_test(tc, frame_typed_encode_short_buffers);
    tcase_add_test(tc, frame_auth_msg);
    tcase_add_test(tc, frame_wire_cursors);
    suite_add_tcase(s, tc);

    tc = tcase_create("streams");
    tcase_add_test(tc, frame_split_feed);
    tcase_add_test(tc, frame_random_garbage);
    suite_add_tcase(s, tc);
    return s;
}
