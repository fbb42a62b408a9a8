/*
 * test_backend_peers.c - peers that do not play by the rules: a wrong or
 * missing secret, garbage, truncated and oversized frames, frames for
 * streams that do not exist, stream-level violations.  Each bad peer gets
 * its own link, which must end (GOAWAY and close) or keep working with
 * only the offending stream aborted, while a good link has an upload in
 * flight that must complete intact; the daemon must be alive at the end.
 *
 * Raw peers are written by hand on a blocking socket (spc_raw_*), so the
 * test chooses exactly which byte is wrong.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_auth.h"
#include "sp_crc.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "test_backend.h"

#define SECRET "correct horse battery staple 42"
#define WRONG "incorrect horse battery staple 4"

static const char *const peer_tags[] = {"SPB0302", "SPB0303", NULL};

/* The good link: one upload of GOOD_LEN bytes that advances a piece at a
 * time between the bad peers. */
#define GOOD_LEN (4u << 20)
#define GOOD_STEP (128u * 1024)

typedef struct good {
    spc_t c;
    size_t sent;
    uint32_t crc;
    uint8_t piece[GOOD_STEP];
} good_t;

static uint8_t good_byte(size_t i)
{
    return (uint8_t)(i * 11 + (i >> 12) + 5);
}

static void good_start(good_t *g, const spt_backend_t *b)
{
    tb_connect(&g->c, b->tcp_addr, SECRET, 4);
    g->sent = 0;
    g->crc = 0;
    ck_assert_int_eq(spc_request(&g->c, 0, "POST", "/echo?bodyonly=1", NULL,
                                 1, GOOD_LEN),
                     0);
    /* A second stream in flight too: a response that takes a while. */
    g->c.streams[1].check_pattern = 1;
    tb_get(&g->c, 1, "/echo?sleep=500&size=3000000");
}

static void good_step(good_t *g)
{
    if (g->sent >= GOOD_LEN)
        return;
    for (size_t j = 0; j < GOOD_STEP; j++)
        g->piece[j] = good_byte(g->sent + j);
    g->crc = sp_crc32c(g->crc, g->piece, GOOD_STEP);
    ck_assert_int_eq(spc_send_body(&g->c, 0, g->piece, GOOD_STEP, 5000), 0);
    g->sent += GOOD_STEP;
    ck_assert_int_eq(spc_pump(&g->c, 0), 0);
    ck_assert_msg(!g->c.streams[0].aborted && !g->c.streams[1].aborted,
                  "the good link's streams were aborted");
}

static void good_finish(good_t *g)
{
    while (g->sent < GOOD_LEN)
        good_step(g);
    spc_end(&g->c, 0);
    tb_wait(&g->c, 0, 10000);
    tb_wait(&g->c, 1, 10000);
    tb_expect_ok(&g->c, 0, 200);
    ck_assert_uint_eq(g->c.streams[0].body_total, GOOD_LEN);
    ck_assert_uint_eq(g->c.streams[0].body_crc, g->crc);
    tb_expect_ok(&g->c, 1, 200);
    ck_assert_uint_eq(g->c.streams[1].body_total, 3000000);
    ck_assert_int_eq(g->c.streams[1].pattern_bad, 0);
    spc_close(&g->c);
}

/* Expect the daemon to send GOAWAY(code) and close fd within 3 s. */
static void expect_goaway_close(int fd, int code, const char *what)
{
    int got;
    int rc = spc_raw_wait_close(fd, 3000, &got);
    ck_assert_msg(rc == 0, "%s: the link stayed open", what);
    ck_assert_msg(got == code, "%s: GOAWAY %d, want %d", what, got, code);
    close(fd);
}

/* A raw link through the whole handshake, with the right secret. */
static int raw_up(const spt_backend_t *b)
{
    int fd = spc_raw_connect(b->tcp_addr, 3000);
    ck_assert_int_ge(fd, 0);
    uint8_t nc[32], ns[32], proof[32];
    ck_assert_int_eq(spc_raw_hello(fd, nc, ns, 3000), 0);
    sp_auth_proof((const uint8_t *)SECRET, strlen(SECRET), 1, nc, ns, proof);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_AUTH, 0, 0, 0, proof, 32), 0);
    /* A PING/PONG round trip proves the server took AUTH. */
    uint8_t op[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_PING, 0, 0, 0, op, 8), 0);
    static uint8_t buf[SP_FRAME_HDR_SIZE + 65536];
    sp_frame_t f;
    ck_assert_int_eq(spc_raw_read(fd, buf, sizeof(buf), &f, 3000), 0);
    ck_assert_int_eq(f.hdr.type, SP_FT_PONG);
    ck_assert(memcmp(f.payload, op, 8) == 0);
    return fd;
}

/* Streams the daemon already aborted: a late frame of ours may draw
 * another ABORT for them, which is harmless. */
static struct {
    uint32_t stream, gen;
} gone[64];
static int ngone;

static int is_gone(uint32_t stream, uint32_t gen)
{
    for (int i = 0; i < ngone; i++)
        if (gone[i].stream == stream && gone[i].gen == gen)
            return 1;
    return 0;
}

/* Read frames until one of type arrives on (stream, gen); others are
 * skipped, but an ABORT of any other stream fails the test. */
static void raw_expect(int fd, uint8_t type, uint32_t stream, uint32_t gen,
                       sp_abort_t *abort_out)
{
    static uint8_t buf[SP_FRAME_HDR_SIZE + 65536];
    sp_frame_t f;
    for (;;) {
        int rc = spc_raw_read(fd, buf, sizeof(buf), &f, 3000);
        ck_assert_msg(rc == 0, "waiting for %s on %u/%u: %s",
                      sp_frame_type_name(type), stream, gen, sp_strerror(rc));
        if (f.hdr.type == type && f.hdr.stream == stream && f.hdr.gen == gen)
            break;
        ck_assert_msg(f.hdr.type != SP_FT_ABORT ||
                          is_gone(f.hdr.stream, f.hdr.gen),
                      "unexpected ABORT on %u/%u while waiting for %s on "
                      "%u/%u",
                      f.hdr.stream, f.hdr.gen, sp_frame_type_name(type),
                      stream, gen);
    }
    if (type == SP_FT_ABORT && ngone < 64) {
        gone[ngone].stream = stream;
        gone[ngone].gen = gen;
        ngone++;
    }
    if (abort_out != NULL) {
        ck_assert_int_eq(sp_abort_decode(f.payload, f.hdr.len, abort_out), 0);
    }
}

/* PING, and expect its PONG as the very next frame: nothing else (no
 * ABORT) came first. */
static void raw_ping_next(int fd)
{
    uint8_t op[8] = {9, 9, 9, 9, 1, 2, 3, 4};
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_PING, 0, 0, 0, op, 8), 0);
    static uint8_t buf[SP_FRAME_HDR_SIZE + 65536];
    sp_frame_t f;
    ck_assert_int_eq(spc_raw_read(fd, buf, sizeof(buf), &f, 3000), 0);
    ck_assert_msg(f.hdr.type == SP_FT_PONG, "got %s (stream %u) before PONG",
                  sp_frame_type_name(f.hdr.type), f.hdr.stream);
}

static int raw_head(uint8_t *buf, size_t cap, const char *uri, int body,
                    int64_t cl)
{
    int n = spc_head_encode("GET", uri, NULL, body, cl, buf, cap);
    ck_assert_int_gt(n, 0);
    return n;
}

START_TEST(backend_bad_auth)
{
    spt_backend_t b;
    spt_backend_start_secret(&b, "Workers 4\n", SECRET);
    good_t *g = malloc(sizeof(*g));
    good_start(g, &b);
    char err[256];
    spc_t c;
    int nbad = 0;

    /* Wrong secret, through the real client: its check of the server's
     * proof fails, it says GOAWAY(AUTH), the daemon logs it. */
    int rc = spc_connect(&c, b.tcp_addr, WRONG, 4, 3000, err, sizeof(err));
    ck_assert_msg(rc == SP_EAUTH, "wrong secret: %s", sp_strerror(rc));
    spc_close(&c);
    nbad++;
    good_step(g);

    /* No secret at all, on tcp and on unix. */
    rc = spc_connect(&c, b.tcp_addr, NULL, 4, 3000, err, sizeof(err));
    ck_assert_msg(rc == SP_EAUTH, "no secret: %s", sp_strerror(rc));
    spc_close(&c);
    rc = spc_connect(&c, b.unix_addr, NULL, 4, 3000, err, sizeof(err));
    ck_assert_msg(rc == SP_EAUTH, "no secret (unix): %s", sp_strerror(rc));
    spc_close(&c);
    nbad += 2;
    good_step(g);

    /* The daemon's own check: AUTH proofs made with a wrong secret, with
     * none (zeros), with the server's label, and a replayed one. */
    uint8_t nc[32], ns[32], proof[32];
    for (int k = 0; k < 4; k++) {
        int fd = spc_raw_connect(b.tcp_addr, 3000);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(spc_raw_hello(fd, nc, ns, 3000), 0);
        if (k == 0)
            sp_auth_proof((const uint8_t *)WRONG, strlen(WRONG), 1, nc, ns,
                          proof);
        else if (k == 1)
            memset(proof, 0, sizeof(proof));
        else if (k == 2) /* reflected: the server's own proof */
            sp_auth_proof((const uint8_t *)SECRET, strlen(SECRET), 0, nc, ns,
                          proof);
        else { /* a proof for other nonces */
            uint8_t other[32];
            memset(other, 7, sizeof(other));
            sp_auth_proof((const uint8_t *)SECRET, strlen(SECRET), 1, other,
                          ns, proof);
        }
        ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_AUTH, 0, 0, 0, proof, 32),
                         0);
        /* A request pipelined behind the bad AUTH must never run. */
        uint8_t head[512];
        int hl = raw_head(head, sizeof(head), "/echo?crash=1", 0, 0);
        spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 0, 1, head, (uint32_t)hl);
        expect_goaway_close(fd, SP_GOAWAY_AUTH, "bad AUTH proof");
        nbad++;
        good_step(g);
    }

    /* The right secret works, over both listeners. */
    tb_connect(&c, b.unix_addr, SECRET, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    int fd = raw_up(&b);
    close(fd);

    good_finish(g);
    free(g);
    ck_assert_int_eq(kill(b.pid, 0), 0);
    ck_assert_int_eq(spt_log_count(&b, "SPB0302"), nbad);
    spt_backend_finish(&b, peer_tags);
}
END_TEST

START_TEST(backend_bad_frames)
{
    spt_backend_t b;
    spt_backend_start_secret(&b, "Workers 4\n", SECRET);
    good_t *g = malloc(sizeof(*g));
    good_start(g, &b);
    uint8_t head[1024];
    int hl = raw_head(head, sizeof(head), "/hello", 0, 0);
    int fd;

    /* Garbage instead of a HELLO: an HTTP request, random bytes. */
    fd = spc_raw_connect(b.tcp_addr, 3000);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(write(fd, http, sizeof(http) - 1),
                     (ssize_t)sizeof(http) - 1);
    expect_goaway_close(fd, SP_GOAWAY_PROTOCOL, "HTTP request");
    good_step(g);
    srand(42);
    for (int k = 0; k < 4; k++) {
        uint8_t junk[4096];
        for (size_t j = 0; j < sizeof(junk); j++)
            junk[j] = (uint8_t)rand();
        junk[0] = (uint8_t)(k == 0 ? 1 : 2 + k); /* version 1 once */
        fd = spc_raw_connect(b.tcp_addr, 3000);
        ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
        int got;
        ck_assert_int_eq(spc_raw_wait_close(fd, 3000, &got), 0);
        ck_assert_msg(got == SP_GOAWAY_PROTOCOL || got == SP_GOAWAY_LIMIT,
                      "junk %d: GOAWAY %d", k, got);
        close(fd);
        good_step(g);
    }

    /* Garbage after a good handshake. */
    fd = raw_up(&b);
    ck_assert_int_eq(write(fd, http, sizeof(http) - 1),
                     (ssize_t)sizeof(http) - 1);
    expect_goaway_close(fd, SP_GOAWAY_PROTOCOL, "garbage after handshake");
    good_step(g);

    /* Unknown frame type, bad flags, a link frame with a stream id, a
     * stream frame before the handshake, a frame the server never gets. */
    struct {
        uint8_t version, type;
        uint16_t flags;
        uint32_t stream, gen, len;
        int after_handshake;
        int code;
        const char *what;
    } bad[] = {
        {1, 99, 0, 0, 0, 0, 1, SP_GOAWAY_PROTOCOL, "unknown type"},
        {2, SP_FT_PING, 0, 0, 0, 8, 1, SP_GOAWAY_PROTOCOL, "version 2"},
        {1, SP_FT_BODY, 0x8000, 1, 1, 0, 1, SP_GOAWAY_PROTOCOL, "flags"},
        {1, SP_FT_PING, 0, 3, 0, 8, 1, SP_GOAWAY_PROTOCOL, "PING stream 3"},
        {1, SP_FT_END, 0, 1, 1, 4, 1, SP_GOAWAY_PROTOCOL, "END with payload"},
        {1, SP_FT_REQUEST_HEAD, 0, 1, 1, (uint32_t)hl, 0, SP_GOAWAY_PROTOCOL,
         "REQUEST_HEAD before HELLO"},
        {1, SP_FT_ACCEPT, 0, 1, 1, 0, 1, SP_GOAWAY_PROTOCOL,
         "ACCEPT from a frontend"},
        {1, SP_FT_HELLO_ACK, 0, 0, 0, 89, 1, SP_GOAWAY_PROTOCOL,
         "HELLO_ACK to a server"},
        {1, SP_FT_HELLO, 0, 0, 0, 57, 1, SP_GOAWAY_PROTOCOL, "second HELLO"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        if (bad[k].after_handshake) {
            fd = raw_up(&b);
        } else {
            fd = spc_raw_connect(b.tcp_addr, 3000);
            ck_assert_int_ge(fd, 0);
        }
        uint8_t payload[1024];
        memset(payload, 0, sizeof(payload));
        if (bad[k].type == SP_FT_REQUEST_HEAD)
            memcpy(payload, head, (size_t)hl);
        ck_assert_int_eq(spc_raw_frame(fd, bad[k].version, bad[k].type,
                                       bad[k].flags, bad[k].stream,
                                       bad[k].gen, payload, bad[k].len),
                         0);
        expect_goaway_close(fd, bad[k].code, bad[k].what);
        good_step(g);
    }

    /* Oversized: a link frame over 4096, a stream frame over max_payload,
     * a length of 2^31 - 1 (only the header is sent). */
    fd = spc_raw_connect(b.tcp_addr, 3000);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_HELLO, 0, 0, 0, NULL, 0), 0);
    close(fd); /* an empty HELLO: closed early, the daemon must not care */
    fd = spc_raw_connect(b.tcp_addr, 3000);
    uint8_t hdr[16] = {1, SP_FT_HELLO, 0, 0, 0, 0, 0, 0,
                       0, 0, 0, 0, 0, 0, 0x13, 0x88}; /* len 5000 */
    ck_assert_int_eq(write(fd, hdr, 16), 16);
    expect_goaway_close(fd, SP_GOAWAY_LIMIT, "HELLO of 5000 bytes");
    good_step(g);
    fd = raw_up(&b);
    uint8_t big[16] = {1, SP_FT_BODY, 0, 0, 0, 0, 0, 1,
                       0, 0, 0, 1, 0, 1, 0, 1}; /* len 65537 */
    ck_assert_int_eq(write(fd, big, 16), 16);
    expect_goaway_close(fd, SP_GOAWAY_LIMIT, "BODY of 65537 bytes");
    good_step(g);
    fd = raw_up(&b);
    uint8_t huge[16] = {1, SP_FT_REQUEST_HEAD, 0, 0, 0, 0, 0, 1,
                        0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff};
    ck_assert_int_eq(write(fd, huge, 16), 16);
    expect_goaway_close(fd, SP_GOAWAY_LIMIT, "REQUEST_HEAD of 2^31-1 bytes");
    good_step(g);

    /* Truncated frames, then close: before the handshake, after it, and
     * in the middle of a request the worker is running. */
    fd = spc_raw_connect(b.tcp_addr, 3000);
    uint8_t part[16] = {1, SP_FT_HELLO, 0, 0, 0, 0, 0, 0,
                        0, 0, 0, 0, 0, 0, 0, 100};
    ck_assert_int_eq(write(fd, part, 16), 16);
    ck_assert_int_eq(write(fd, "0123456789", 10), 10);
    close(fd);
    good_step(g);
    fd = spc_raw_connect(b.tcp_addr, 3000);
    ck_assert_int_eq(write(fd, part, 7), 7); /* half a header */
    close(fd);
    good_step(g);
    fd = raw_up(&b);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 5, 1, head,
                                   (uint32_t)hl),
                     0);
    raw_expect(fd, SP_FT_ACCEPT, 5, 1, NULL);
    uint8_t slow[1024];
    int sl = raw_head(slow, sizeof(slow), "/echo?sleep=300&size=1000000", 0,
                      0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 6, 1, slow,
                                   (uint32_t)sl),
                     0);
    raw_expect(fd, SP_FT_ACCEPT, 6, 1, NULL);
    uint8_t frame[64];
    sp_frame_hdr_t fh = {.version = 1, .type = SP_FT_REQUEST_HEAD,
                         .stream = 7, .gen = 1, .len = (uint32_t)hl};
    sp_frame_hdr_encode(&fh, frame);
    memcpy(frame + 16, head, 20);
    ck_assert_int_eq(write(fd, frame, 36), 36);
    close(fd); /* mid-frame, with stream 6 in a worker */
    good_step(g);

    /* The two free workers serve (stream 6's was freed). */
    spc_t c;
    tb_connect(&c, b.unix_addr, SECRET, 4);
    tb_get(&c, 0, "/echo?sleep=100");
    tb_get(&c, 1, "/echo?sleep=100");
    tb_wait(&c, 0, 3000);
    tb_wait(&c, 1, 3000);
    tb_expect_ok(&c, 0, 200);
    tb_expect_ok(&c, 1, 200);
    spc_close(&c);

    good_finish(g);
    free(g);
    ck_assert_int_eq(kill(b.pid, 0), 0);
    ck_assert_int_eq(spt_wait_children(b.pid, 4, 3000), 4);
    spt_backend_finish(&b, peer_tags);
}
END_TEST

START_TEST(backend_bad_streams)
{
    spt_backend_t b;
    spt_backend_start_secret(&b, "Workers 4\n", SECRET);
    good_t *g = malloc(sizeof(*g));
    good_start(g, &b);
    uint8_t head[1024];
    int hl = raw_head(head, sizeof(head), "/hello", 0, 0);
    sp_abort_t a;

    int fd = raw_up(&b);
    /* BODY and END for streams never opened: ABORT(PROTOCOL) each. */
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 77, 5, "abc", 3), 0);
    raw_expect(fd, SP_FT_ABORT, 77, 5, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_END, 0, 78, 1, NULL, 0), 0);
    raw_expect(fd, SP_FT_ABORT, 78, 1, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    /* CREDIT and ABORT for unknown streams: ignored, never answered. */
    uint8_t cr[4] = {0, 0, 1, 0};
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_CREDIT, 0, 79, 1, cr, 4), 0);
    uint8_t ab[64];
    sp_abort_t mine = {.code = SP_ABORT_CANCEL, .reason = sp_str("x")};
    int al = sp_abort_encode(&mine, ab, sizeof(ab));
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_ABORT, 0, 80, 1, ab,
                                   (uint32_t)al),
                     0);
    raw_ping_next(fd);
    /* The link still serves. */
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 1, 1, head,
                                   (uint32_t)hl),
                     0);
    raw_expect(fd, SP_FT_END, 1, 1, NULL);
    good_step(g);

    /* A late frame for an earlier generation of a live stream id. */
    uint8_t up[1024];
    int ul = raw_head(up, sizeof(up), "/echo?bodyonly=1", 1, 6);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 2, 9, up,
                                   (uint32_t)ul),
                     0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 2, 8, "old", 3), 0);
    raw_expect(fd, SP_FT_ABORT, 2, 8, &a);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 2, 9, "new!!!", 6),
                     0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_END, 0, 2, 9, NULL, 0), 0);
    raw_expect(fd, SP_FT_END, 2, 9, NULL);

    /* A REQUEST_HEAD for an id still open: ABORT on the new one only. */
    uint8_t sl[1024];
    int sll = raw_head(sl, sizeof(sl), "/echo?sleep=200&bodyonly=1", 0, 0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 3, 1, sl,
                                   (uint32_t)sll),
                     0);
    raw_expect(fd, SP_FT_ACCEPT, 3, 1, NULL);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 3, 2, head,
                                   (uint32_t)hl),
                     0);
    raw_expect(fd, SP_FT_ABORT, 3, 2, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    raw_expect(fd, SP_FT_END, 3, 1, NULL);

    /* BODY beyond the window: that stream is aborted, the link lives.
     * The application sleeps before it reads, so the window is the
     * initial 256 KiB plus what the daemon could pass into the worker's
     * 256 KiB ring (and credited): 12 x 64 KiB are too many, whenever
     * the credits would have come back. */
    int bl = raw_head(up, sizeof(up), "/echo?bodyonly=1&sleep=2000", 1,
                      1 << 20);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 4, 1, up,
                                   (uint32_t)bl),
                     0);
    static uint8_t chunk[65536];
    for (int k = 0; k < 12; k++)
        ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 4, 1, chunk,
                                       sizeof(chunk)),
                         0);
    raw_expect(fd, SP_FT_ABORT, 4, 1, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    /* Data after END. */
    ul = raw_head(up, sizeof(up), "/echo?bodyonly=1&sleep=100", 1, 3);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 5, 1, up,
                                   (uint32_t)ul),
                     0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 5, 1, "abc", 3), 0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_END, 0, 5, 1, NULL, 0), 0);
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_BODY, 0, 5, 1, "x", 1), 0);
    raw_expect(fd, SP_FT_ABORT, 5, 1, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    /* A CREDIT that overflows the window. */
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 6, 1, sl,
                                   (uint32_t)sll),
                     0);
    raw_expect(fd, SP_FT_ACCEPT, 6, 1, NULL);
    uint8_t cmax[4] = {0x7f, 0xff, 0xff, 0xff};
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_CREDIT, 0, 6, 1, cmax, 4), 0);
    raw_expect(fd, SP_FT_ABORT, 6, 1, &a);
    ck_assert_int_eq(a.code, SP_ABORT_PROTOCOL);
    /* A malformed request head: that stream only. */
    uint8_t junk[100];
    memset(junk, 0xff, sizeof(junk));
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 7, 1, junk,
                                   sizeof(junk)),
                     0);
    raw_expect(fd, SP_FT_ABORT, 7, 1, &a);
    ck_assert_msg(a.code == SP_ABORT_PROTOCOL, "bad head: ABORT %s",
                  sp_abort_code_name(a.code));
    ck_assert_int_eq(spc_raw_frame(fd, 1, SP_FT_REQUEST_HEAD, 0, 8, 1, head,
                                   (uint32_t)hl),
                     0);
    raw_expect(fd, SP_FT_END, 8, 1, NULL);
    good_step(g);

    /* A flood of frames for unknown streams ends the link. */
    static uint8_t flood[1100 * 19];
    for (int k = 0; k < 1100; k++) {
        sp_frame_hdr_t h = {.version = 1, .type = SP_FT_BODY,
                            .stream = 1000 + (uint32_t)k, .gen = 1, .len = 3};
        sp_frame_hdr_encode(&h, flood + k * 19);
        memcpy(flood + k * 19 + 16, "abc", 3);
    }
    ck_assert_int_eq(spc_raw_write(fd, flood, sizeof(flood)), 0);
    /* The daemon closes with our last frames unread, so TCP may reset
     * the connection and drop its GOAWAY(LIMIT) on our side; the log
     * says it too. */
    int got;
    ck_assert_int_eq(spc_raw_wait_close(fd, 3000, &got), 0);
    ck_assert_msg(got == -1 || got == SP_GOAWAY_LIMIT, "flood: GOAWAY %d",
                  got);
    close(fd);
    ck_assert_int_eq(spt_wait_log(&b, "closed by application (over limit)",
                                  1, 2000),
                     1);
    good_step(g);

    good_finish(g);
    free(g);
    /* The daemon is alive and a new link works. */
    ck_assert_int_eq(kill(b.pid, 0), 0);
    spc_t c;
    tb_connect(&c, b.tcp_addr, SECRET, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    spt_backend_finish(&b, peer_tags);
}
END_TEST

void tb_add_peer_cases(Suite *s)
{
    TCase *tc = tcase_create("peers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_bad_auth);
    tcase_add_test(tc, backend_bad_frames);
    tcase_add_test(tc, backend_bad_streams);
    suite_add_tcase(s, tc);
}
