/*
 * fuzz_frame.c - libFuzzer target for the link frame decoder.
 *
 * The input is a byte stream as a link would deliver it.  Frames are
 * decoded one after another until the decoder asks for more bytes or
 * refuses; each decoded frame's payload goes through its typed decoder
 * (heads included).  Beyond "no crash, no out-of-bounds read" (ASan,
 * UBSan), the target checks the codec's promises and aborts if one
 * breaks:
 *   - a frame's size is 16 + len, lies inside the input, and its payload
 *     points right after its header;
 *   - one byte less of the same frame is SP_EAGAIN (the decoder is
 *     incremental);
 *   - a typed payload that decodes re-encodes to exactly the same bytes
 *     (canonical encoding: encoders and decoders agree);
 *   - errors are only the documented ones.
 *
 * Build: make fuzz (or see the Makefile's build-fuzz rule).  Seeds:
 * tests/fuzz/corpus/frame/ (made by tests/fuzz/mkcorpus.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

static uint8_t re[SP_FRAME_MAX_PAYLOAD_DEFAULT + 64];
static sp_kv_t kv[SP_HEAD_MAX_FIELDS_DEFAULT];

static void same(int rc, int n, const uint8_t *p, size_t len)
{
    if (rc != 0) {
        CHECK(rc == SP_EPROTO || rc == SP_ELIMIT);
        return;
    }
    CHECK(n >= 0 && (size_t)n == len);
    CHECK(memcmp(re, p, len) == 0);
}

static void str_inside(sp_str_t s, const uint8_t *p, size_t len)
{
    CHECK(s.ptr != NULL && s.ptr[s.len] == '\0');
    if (s.len > 0)
        CHECK((const uint8_t *)s.ptr >= p &&
              (const uint8_t *)s.ptr + s.len < p + len);
}

static void payload(const sp_frame_t *f)
{
    const uint8_t *p = f->payload;
    size_t len = f->hdr.len;
    int rc, n = -1;

    switch (f->hdr.type) {
    case SP_FT_HELLO: {
        sp_hello_t m;
        if ((rc = sp_hello_decode(p, len, &m)) == 0) {
            str_inside(m.node, p, len);
            n = sp_hello_encode(&m, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    case SP_FT_HELLO_ACK: {
        sp_hello_ack_t m;
        if ((rc = sp_hello_ack_decode(p, len, &m)) == 0) {
            str_inside(m.node, p, len);
            n = sp_hello_ack_encode(&m, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    case SP_FT_AUTH: {
        uint8_t proof[SP_PROOF_SIZE];
        if ((rc = sp_auth_decode(p, len, proof)) == 0)
            n = sp_auth_encode(proof, re, sizeof(re));
        CHECK(rc == 0); /* the header check guarantees the size */
        same(rc, n, p, len);
        break;
    }
    case SP_FT_PING:
    case SP_FT_PONG: {
        uint8_t o[SP_PING_SIZE];
        if ((rc = sp_ping_decode(p, len, o)) == 0)
            n = sp_ping_encode(o, re, sizeof(re));
        CHECK(rc == 0);
        same(rc, n, p, len);
        break;
    }
    case SP_FT_GOAWAY: {
        sp_goaway_t m;
        if ((rc = sp_goaway_decode(p, len, &m)) == 0) {
            str_inside(m.reason, p, len);
            n = sp_goaway_encode(&m, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    case SP_FT_ABORT: {
        sp_abort_t m;
        if ((rc = sp_abort_decode(p, len, &m)) == 0) {
            str_inside(m.reason, p, len);
            n = sp_abort_encode(&m, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    case SP_FT_CREDIT: {
        uint32_t incr;
        if ((rc = sp_credit_decode(p, len, &incr)) == 0)
            n = sp_credit_encode(incr, re, sizeof(re));
        same(rc, n, p, len);
        break;
    }
    case SP_FT_REQUEST_HEAD: {
        sp_reqhead_t h;
        if ((rc = sp_reqhead_decode(p, len, NULL, &h, kv,
                                    SP_HEAD_MAX_FIELDS_DEFAULT)) == 0) {
            str_inside(h.uri, p, len);
            CHECK(h.nheaders + h.nenv <= SP_HEAD_MAX_FIELDS_DEFAULT);
            CHECK(sp_reqhead_size(&h) == len);
            n = sp_reqhead_encode(&h, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    case SP_FT_RESPONSE_HEAD: {
        sp_resphead_t h;
        if ((rc = sp_resphead_decode(p, len, NULL, &h, kv,
                                     SP_HEAD_MAX_FIELDS_DEFAULT)) == 0) {
            str_inside(h.reason, p, len);
            CHECK(h.status >= 100 && h.status <= 999);
            CHECK(sp_resphead_size(&h) == len);
            n = sp_resphead_encode(&h, re, sizeof(re));
        }
        same(rc, n, p, len);
        break;
    }
    default: /* ACCEPT, END: empty; BODY: opaque */
        CHECK(f->hdr.type != SP_FT_ACCEPT || len == 0);
        CHECK(f->hdr.type != SP_FT_END || len == 0);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        const uint8_t *b = data + off;
        size_t left = size - off;
        sp_frame_t f, g;
        int n = sp_frame_decode(b, left, NULL, &f);

        if (n < 0) {
            CHECK(n == SP_EAGAIN || n == SP_EBADVER || n == SP_EUNKNOWN ||
                  n == SP_EPROTO || n == SP_ELIMIT);
            CHECK(n != SP_EAGAIN || left < SP_FRAME_HDR_SIZE ||
                  left < SP_FRAME_HDR_SIZE + (size_t)f.hdr.len);
            break;
        }
        CHECK(n >= SP_FRAME_HDR_SIZE && (size_t)n <= left);
        CHECK((size_t)n == SP_FRAME_HDR_SIZE + (size_t)f.hdr.len);
        CHECK(f.payload == b + SP_FRAME_HDR_SIZE);
        CHECK(f.hdr.len <= (f.hdr.type < SP_FT_REQUEST_HEAD
                                ? SP_FRAME_CTL_MAX
                                : SP_FRAME_MAX_PAYLOAD_DEFAULT));
        CHECK(sp_frame_decode(b, (size_t)n - 1, NULL, &g) == SP_EAGAIN);
        payload(&f);
        off += (size_t)n;
    }
    return 0;
}
