/*
 * test_backend_accept.c - when ACCEPT reaches the frontend.  Workers do
 * not tell the dispatcher when they take a request: it sends ACCEPT with
 * the worker's first response output, or from its scan at most ~100 us (ACCEPT_DELAY_NS)
 * after the worker took the request (accept_scan() in dispatcher.c).
 * Through a real link, frame by frame and timed as they arrive:
 *
 *   slow    an application that sleeps 400 ms before answering: ACCEPT
 *           within 100 ms, RESPONSE_HEAD only after the sleep
 *   fast    50 requests in a row on one link, then 16 at once on 4
 *           workers: on every stream exactly one ACCEPT, before
 *           RESPONSE_HEAD, BODY and END
 *   queued  4 workers busy for 300 ms and a 5th request queued: its ACCEPT
 *           comes only after a worker's END, then promptly, then its
 *           response after its own sleep
 *
 * The link is a raw one (spc_raw_*), so every frame is seen in link order
 * and timed when it is read; a frame out of order fails the test at once.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "test_backend.h"

/* Bounds, generous for a loaded machine yet far from the sleeps. */
#define ACCEPT_MAX_MS 100.0

typedef struct acc_stream {
    uint32_t gen;
    int open;
    int accepts, heads, bodies, ends;
    long seq_accept, seq_head, seq_end; /* frame number on the link */
    double t_sent, t_accept, t_head, t_end;
    int status;
    char uri[96];
} acc_stream_t;

typedef struct acc_link {
    int fd;
    long seq; /* frames read so far */
    acc_stream_t st[16];
} acc_link_t;

/* A raw link through the handshake: the test backends have no secret,
 * so the proof is 32 zero bytes; a PING/PONG proves AUTH was taken. */
static void acc_up(acc_link_t *L, const spt_backend_t *b)
{
    memset(L, 0, sizeof(*L));
    L->fd = spc_raw_connect(b->unix_addr, 3000);
    ck_assert_int_ge(L->fd, 0);
    uint8_t nc[32], ns[32], zero[32];
    memset(zero, 0, sizeof(zero));
    ck_assert_int_eq(spc_raw_hello(L->fd, nc, ns, 3000), 0);
    ck_assert_int_eq(spc_raw_frame(L->fd, 1, SP_FT_AUTH, 0, 0, 0, zero, 32),
                     0);
    uint8_t op[8] = {'a', 'c', 'c', 'e', 'p', 't', 0, 1};
    ck_assert_int_eq(spc_raw_frame(L->fd, 1, SP_FT_PING, 0, 0, 0, op, 8), 0);
    static uint8_t buf[SP_FRAME_HDR_SIZE + 4096];
    sp_frame_t f;
    ck_assert_int_eq(spc_raw_read(L->fd, buf, sizeof(buf), &f, 3000), 0);
    ck_assert_msg(f.hdr.type == SP_FT_PONG, "handshake: got %s, want PONG",
                  sp_frame_type_name(f.hdr.type));
}

/* GET uri on stream id (its next generation). */
static void acc_get(acc_link_t *L, uint32_t id, const char *uri)
{
    acc_stream_t *s = &L->st[id];
    ck_assert_msg(!s->open, "stream %u still open", id);
    uint32_t gen = s->gen + 1;
    memset(s, 0, sizeof(*s));
    s->gen = gen;
    s->open = 1;
    snprintf(s->uri, sizeof(s->uri), "%s", uri);
    uint8_t head[1024];
    int n = spc_head_encode("GET", uri, NULL, 0, 0, head, sizeof(head));
    ck_assert_int_gt(n, 0);
    s->t_sent = spt_ms();
    ck_assert_int_eq(spc_raw_frame(L->fd, 1, SP_FT_REQUEST_HEAD, 0, id, gen,
                                   head, (uint32_t)n),
                     0);
}

/* Read one frame, time it and check it against its stream's story so
 * far: ACCEPT once and first, then RESPONSE_HEAD, BODY*, END.  Anything
 * else (an ABORT, a frame for a stream not open, a GOAWAY) fails. */
static void acc_next(acc_link_t *L, int timeout_ms)
{
    static uint8_t buf[SP_FRAME_HDR_SIZE + 65536];
    sp_frame_t f;
    int rc = spc_raw_read(L->fd, buf, sizeof(buf), &f, timeout_ms);
    double t = spt_ms();
    ck_assert_msg(rc == 0, "reading the link: %s", sp_strerror(rc));
    long seq = ++L->seq;
    const char *name = sp_frame_type_name(f.hdr.type);
    if (f.hdr.type == SP_FT_PONG)
        return;
    ck_assert_msg(f.hdr.type >= SP_FT_REQUEST_HEAD, "link frame %s", name);
    uint32_t id = f.hdr.stream;
    ck_assert_msg(id < 16 && L->st[id].open && L->st[id].gen == f.hdr.gen,
                  "%s for %u/%u, which is not open", name, id, f.hdr.gen);
    acc_stream_t *s = &L->st[id];
    switch (f.hdr.type) {
    case SP_FT_ACCEPT:
        ck_assert_msg(s->accepts == 0, "stream %u (%s): a second ACCEPT", id,
                      s->uri);
        ck_assert_msg(s->heads == 0 && s->bodies == 0,
                      "stream %u (%s): ACCEPT after the response started", id,
                      s->uri);
        s->accepts = 1;
        s->seq_accept = seq;
        s->t_accept = t;
        break;
    case SP_FT_RESPONSE_HEAD:
        ck_assert_msg(s->accepts == 1,
                      "stream %u (%s): RESPONSE_HEAD before ACCEPT", id,
                      s->uri);
        ck_assert_msg(s->heads == 0, "stream %u: a second RESPONSE_HEAD", id);
        ck_assert_uint_ge(f.hdr.len, 2);
        s->heads = 1;
        s->seq_head = seq;
        s->t_head = t;
        s->status = f.payload[0] << 8 | f.payload[1];
        break;
    case SP_FT_BODY:
        ck_assert_msg(s->accepts == 1 && s->heads == 1,
                      "stream %u (%s): BODY before ACCEPT and RESPONSE_HEAD",
                      id, s->uri);
        s->bodies++;
        break;
    case SP_FT_END:
        ck_assert_msg(s->accepts == 1 && s->heads == 1,
                      "stream %u (%s): END before ACCEPT and RESPONSE_HEAD",
                      id, s->uri);
        s->ends = 1;
        s->seq_end = seq;
        s->t_end = t;
        s->open = 0;
        break;
    case SP_FT_ABORT: {
        sp_abort_t a;
        int ok = sp_abort_decode(f.payload, f.hdr.len, &a) == 0;
        ck_abort_msg("stream %u (%s): ABORT %s %u (%s)", id, s->uri,
                     ok ? sp_abort_code_name(a.code) : "?",
                     ok ? a.status : 0, ok ? a.reason.ptr : "undecodable");
        break;
    }
    default:
        ck_abort_msg("stream %u (%s): unexpected %s", id, s->uri, name);
    }
}

/* Read frames until stream id ended (within timeout_ms overall); the
 * caller checks the status. */
static void acc_wait_end(acc_link_t *L, uint32_t id, int timeout_ms)
{
    double end = spt_ms() + timeout_ms;
    while (L->st[id].open) {
        int left = (int)(end - spt_ms());
        ck_assert_msg(left > 0, "stream %u (%s): no END within %d ms", id,
                      L->st[id].uri, timeout_ms);
        acc_next(L, left);
    }
}

/* ---- slow: the application sleeps before its answer -------------------- */

START_TEST(backend_accept_slow)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 2, 5000), 2);
    acc_link_t L;
    acc_up(&L, &b);
    double worst_accept = 0, first_head = 1e9;
    for (int round = 0; round < 3; round++) {
        acc_get(&L, 1, "/echo?sleep=400&bodyonly=1");
        acc_wait_end(&L, 1, 3000);
        acc_stream_t *s = &L.st[1];
        ck_assert_int_eq(s->status, 200);
        double accept = s->t_accept - s->t_sent;
        double head = s->t_head - s->t_sent;
        fprintf(stderr, "figure: sleep=400 round %d: ACCEPT after %.2f ms, "
                        "RESPONSE_HEAD after %.1f ms\n",
                round, accept, head);
        /* Not held back until the response: the sleep is 400 ms. */
        ck_assert_msg(accept < ACCEPT_MAX_MS,
                      "round %d: ACCEPT %.1f ms after the request (the "
                      "application sleeps 400 ms)",
                      round, accept);
        ck_assert_msg(head >= 350, "round %d: RESPONSE_HEAD after only "
                                   "%.1f ms, the application sleeps 400 ms",
                      round, head);
        ck_assert_msg(s->seq_accept < s->seq_head, "round %d: order", round);
        if (accept > worst_accept)
            worst_accept = accept;
        if (head < first_head)
            first_head = head;
    }
    fprintf(stderr, "figure: sleep=400: ACCEPT worst %.2f ms after the "
                    "request, RESPONSE_HEAD earliest %.1f ms\n",
            worst_accept, first_head);
    close(L.fd);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- fast: the response is ready at once -------------------------------- */

static const char *const fast_uris[] = {
    "/hello",
    "/echo",
    "/echo?flush=1&size=100000", /* head flushed alone, then 2 BODYs */
    "/echo?status=404&bodyonly=1",
};

START_TEST(backend_accept_fast)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 4\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 4, 5000), 4);
    acc_link_t L;
    acc_up(&L, &b);

    /* 50 in a row, stream ids 0..3 reused. */
    double t0 = spt_ms(), worst_gap = 0, worst_total = 0;
    for (int i = 0; i < 50; i++) {
        uint32_t id = (uint32_t)i % 4;
        const char *uri = fast_uris[i % 4];
        acc_get(&L, id, uri);
        acc_stream_t *s = &L.st[id];
        double end = spt_ms() + 3000;
        while (s->open) {
            ck_assert_msg(spt_ms() < end, "request %d (%s): no END", i, uri);
            acc_next(&L, 3000);
        }
        ck_assert_int_eq(s->status, i % 4 == 3 ? 404 : 200);
        ck_assert(s->seq_accept < s->seq_head && s->seq_head < s->seq_end);
        if (i % 4 == 2)
            ck_assert_int_eq(s->bodies, 2);
        double gap = s->t_head - s->t_accept;
        double total = s->t_end - s->t_sent;
        if (gap > worst_gap)
            worst_gap = gap;
        if (total > worst_total)
            worst_total = total;
    }
    fprintf(stderr, "figure: 50 fast requests in a row in %.1f ms: slowest "
                    "%.2f ms, ACCEPT to RESPONSE_HEAD at most %.2f ms\n",
            spt_ms() - t0, worst_total, worst_gap);

    /* 16 at once on 4 workers: 12 wait in the queue and are answered as
     * workers come free, while other streams' frames interleave. */
    t0 = spt_ms();
    for (uint32_t id = 0; id < 16; id++)
        acc_get(&L, id, fast_uris[id % 4]);
    for (uint32_t id = 0; id < 16; id++)
        acc_wait_end(&L, id, 3000);
    for (uint32_t id = 0; id < 16; id++) {
        acc_stream_t *s = &L.st[id];
        ck_assert_int_eq(s->status, id % 4 == 3 ? 404 : 200);
        ck_assert(s->seq_accept < s->seq_head && s->seq_head < s->seq_end);
    }
    fprintf(stderr, "figure: 16 fast requests at once on 4 workers in "
                    "%.1f ms, ACCEPT first on each\n",
            spt_ms() - t0);
    close(L.fd);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- queued: no ACCEPT before a worker takes the request ---------------- */

START_TEST(backend_accept_queued)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 4\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 4, 5000), 4);
    acc_link_t L;
    acc_up(&L, &b);
    /* Every worker up and idle: a request through each first. */
    for (uint32_t id = 0; id < 4; id++)
        acc_get(&L, id, "/hello");
    for (uint32_t id = 0; id < 4; id++) {
        acc_wait_end(&L, id, 3000);
        ck_assert_int_eq(L.st[id].status, 200);
    }

    for (uint32_t id = 0; id < 5; id++)
        acc_get(&L, id, "/echo?sleep=300&bodyonly=1");
    double t0 = L.st[0].t_sent;
    acc_stream_t *q = &L.st[4];
    /* The four sleepers are accepted at once; the fifth not yet. */
    double end = t0 + 3000;
    while (L.st[0].accepts + L.st[1].accepts + L.st[2].accepts +
               L.st[3].accepts + q->accepts <
           4) {
        ck_assert_msg(spt_ms() < end, "four sleepers not all accepted");
        acc_next(&L, 3000);
    }
    ck_assert_msg(q->accepts == 0, "queued request ACCEPTed after %.1f ms, "
                                   "while every worker was busy",
                  q->t_accept - q->t_sent);
    double worst = 0;
    for (uint32_t id = 0; id < 4; id++) {
        acc_stream_t *s = &L.st[id];
        double ms = s->t_accept - s->t_sent;
        if (ms > worst)
            worst = ms;
        ck_assert_msg(ms < ACCEPT_MAX_MS, "sleeper %u: ACCEPT after %.1f ms",
                      id, ms);
    }
    /* The queued request: until a sleeper ends, nothing may come for it;
     * then its ACCEPT, then (after its own 300 ms) its response. */
    acc_wait_end(&L, 4, 3000);
    ck_assert_int_eq(q->status, 200);
    long first_end = 0;
    double t_first_end = 0;
    for (uint32_t id = 0; id < 4; id++)
        if (L.st[id].ends &&
            (first_end == 0 || L.st[id].seq_end < first_end)) {
            first_end = L.st[id].seq_end;
            t_first_end = L.st[id].t_end;
        }
    double acc = q->t_accept - q->t_sent;
    fprintf(stderr, "figure: queued behind 4 sleepers (300 ms): sleepers "
                    "ACCEPTed within %.2f ms; queued ACCEPT after %.1f ms "
                    "(%.2f ms after the first END), RESPONSE_HEAD after "
                    "%.1f ms\n",
            worst, acc, first_end ? q->t_accept - t_first_end : -1.0,
            q->t_head - q->t_sent);
    ck_assert_msg(first_end != 0 && first_end < q->seq_accept,
                  "queued request ACCEPTed after %.1f ms, before any worker "
                  "was free",
                  acc);
    ck_assert_msg(acc >= 290, "queued request ACCEPTed after %.1f ms, "
                              "while every worker sleeps 300 ms",
                  acc);
    ck_assert_msg(q->t_accept - t_first_end < ACCEPT_MAX_MS,
                  "queued request ACCEPTed %.1f ms after a worker was free",
                  q->t_accept - t_first_end);
    ck_assert_msg(q->t_head - q->t_accept >= 200,
                  "queued request: RESPONSE_HEAD %.1f ms after its ACCEPT, "
                  "its application sleeps 300 ms",
                  q->t_head - q->t_accept);
    for (uint32_t id = 0; id < 4; id++) {
        acc_wait_end(&L, id, 3000);
        ck_assert_int_eq(L.st[id].status, 200);
    }
    close(L.fd);
    spt_backend_finish(&b, NULL);
}
END_TEST

void tb_add_accept_cases(Suite *s)
{
    TCase *tc = tcase_create("accept");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backend_accept_slow);
    tcase_add_test(tc, backend_accept_fast);
    tcase_add_test(tc, backend_accept_queued);
    suite_add_tcase(s, tc);
}
