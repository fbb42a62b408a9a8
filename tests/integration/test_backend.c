/*
 * test_backend.c - slotproxy-backend through its real network interface,
 * with the test client (spc.c) over real unix and tcp sockets.
 *
 * The "backend" suite holds every integration test of the daemon, one
 * TCase per theme so CK_RUN_CASE can pick one:
 *
 *   basic      hello over unix and tcp; the command line (-t, -v)
 *   load       200+ concurrent streams on one link, byte-exact; one
 *              long-lived link with its stream ids reused at once
 *   bigbody    100 MB request and response with flat memory; a chunked
 *              body through a CGI script
 *   slowreader one stream that stops granting credit does not delay the
 *              others on its link; an answer queued behind a full link
 *              goes out as soon as the link drains
 *   failures   (test_backend_fail.c) worker SIGKILL -> 502, RequestTimeout
 *              -> 504, full queue / QueueTimeout -> 503, crash -> 502,
 *              client ABORT frees the worker, MaxRequestsPerWorker
 *   peers      (test_backend_peers.c) wrong or missing secret, garbage,
 *              truncated and oversized frames, unknown streams
 *   reload     (test_backend_reload.c) HUP under load, HUP with a broken
 *              configuration
 *   accept     (test_backend_accept.c) ACCEPT timing: early for a slow
 *              application, first for a fast one, not before a worker
 *              takes a queued request
 *   abortdone  (test_backend_abort_done.c) ABORT or link close for a
 *              stream whose worker finished but whose response waits for
 *              credit: the worker is free at once, not at RequestTimeout
 *   sched      (test_backend_sched.c) Scheduling: the policy of the
 *              dispatcher and the workers, at start and across a reload;
 *              CGI scripts run SCHED_OTHER
 *
 * Every test starts its own backend and ends with spt_backend_finish():
 * exit status 0 and no [error]/[warn] line but the tags it expects.
 * Figures (latencies, RSS) are printed on stderr with a "figure:" prefix.
 */
#include "test_backend.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_crc.h"
#include "sp_error.h"

void tb_connect(spc_t *c, const char *addr, const char *secret,
                uint32_t nstreams)
{
    char err[256];
    int rc = spc_connect(c, addr, secret, nstreams, 5000, err, sizeof(err));
    ck_assert_msg(rc == 0, "connect %s: %s (%s)", addr, err, sp_strerror(rc));
}

void tb_get(spc_t *c, uint32_t id, const char *uri)
{
    int rc = spc_request(c, id, "GET", uri, NULL, 0, 0);
    ck_assert_msg(rc == 0, "GET %s: %s", uri, sp_strerror(rc));
}

void tb_wait(spc_t *c, uint32_t id, int timeout_ms)
{
    int rc = spc_wait(c, id, timeout_ms);
    ck_assert_msg(rc == 0, "stream %u: %s", id, sp_strerror(rc));
}

void tb_expect_ok(spc_t *c, uint32_t id, int status)
{
    spc_stream_t *s = &c->streams[id];
    ck_assert_msg(!s->aborted, "stream %u aborted: code %u status %u (%s)",
                  id, s->abort_code, s->abort_status, s->abort_reason);
    ck_assert_msg(!s->lost, "stream %u: link lost", id);
    ck_assert_msg(s->accepted, "stream %u: no ACCEPT", id);
    ck_assert_msg(s->got_head && s->ended, "stream %u: incomplete", id);
    ck_assert_int_eq(s->status, status);
}

void tb_hello(spc_t *c, uint32_t id, int timeout_ms)
{
    spc_stream_t *s = &c->streams[id];
    s->keep_body = 1;
    tb_get(c, id, "/hello");
    tb_wait(c, id, timeout_ms);
    tb_expect_ok(c, id, 200);
    ck_assert_uint_eq(s->body_len, 13);
    ck_assert(memcmp(s->body, "Hello, world\n", 13) == 0);
}

/* ---- basic ------------------------------------------------------------ */

START_TEST(backend_hello)
{
    spt_backend_t b;
    spt_backend_start(&b, NULL);
    const char *addrs[2] = {b.unix_addr, b.tcp_addr};
    for (int k = 0; k < 2; k++) {
        spc_t c;
        tb_connect(&c, addrs[k], NULL, 4);
        tb_hello(&c, 0, 5000);
        ck_assert_str_eq(spc_header(&c.streams[0], "Content-Length"), "13");
        spc_close(&c);
    }
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_cli)
{
    char dir[] = "/tmp/spt-cli-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char good[300], bad[300], out[8192];
    snprintf(good, sizeof(good), "%s/good.conf", dir);
    snprintf(bad, sizeof(bad), "%s/bad.conf", dir);
    spt_write_file(good,
                   "# a good file\n"
                   "Listen tcp://127.0.0.1:0\n"
                   "Workers 2\n"
                   "Handler /hello builtin:hello\n",
                   0644);
    spt_write_file(bad,
                   "Listen tcp://127.0.0.1:0\n"
                   "Workers 2\n"
                   "\n"
                   "Wrokers 3\n",
                   0644);

    const char *t_good[] = {"-t", "-f", good, NULL};
    ck_assert_int_eq(spt_run_backend_cmd(t_good, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "Syntax OK") != NULL, "-t said: %s", out);

    const char *t_bad[] = {"-t", "-f", bad, NULL};
    ck_assert_int_ne(spt_run_backend_cmd(t_bad, out, sizeof(out)), 0);
    char where[320];
    snprintf(where, sizeof(where), "%s:4", bad);
    ck_assert_msg(strstr(out, where) != NULL, "no %s in: %s", where, out);
    ck_assert_msg(strstr(out, "Wrokers") != NULL, "directive not named: %s",
                  out);
    ck_assert_msg(strstr(out, "Syntax OK") == NULL, "%s", out);

    /* A bad value is named with its line too. */
    spt_write_file(bad, "Listen tcp://127.0.0.1:0\nWorkers many\n", 0644);
    ck_assert_int_ne(spt_run_backend_cmd(t_bad, out, sizeof(out)), 0);
    snprintf(where, sizeof(where), "%s:2", bad);
    ck_assert_msg(strstr(out, where) != NULL, "no %s in: %s", where, out);

    /* A missing file. */
    const char *t_none[] = {"-t", "-f", "/nonexistent/slotproxy.conf", NULL};
    ck_assert_int_ne(spt_run_backend_cmd(t_none, out, sizeof(out)), 0);
    ck_assert_msg(strstr(out, "/nonexistent/slotproxy.conf") != NULL, "%s",
                  out);

    const char *v[] = {"-v", NULL};
    ck_assert_int_eq(spt_run_backend_cmd(v, out, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "slotproxy-backend ", 18) == 0 &&
                      out[18] >= '0' && out[18] <= '9',
                  "-v said: %s", out);

    unlink(good);
    unlink(bad);
    rmdir(dir);
}
END_TEST

/* ---- load: 256 concurrent streams on one link ------------------------- */

#define LOAD_STREAMS 256

static size_t load_body_len(uint32_t i)
{
    /* 0 .. ~200 KB, a few over the 256 KiB window (credit needed). */
    if (i % 32 == 6)
        return 600 * 1024 + i;
    return ((size_t)i * 7919u) % (200 * 1024);
}

static uint8_t load_byte(uint32_t i, size_t j)
{
    return (uint8_t)(i * 131u + j * 7u + (j >> 9) + 1u);
}

/* _i: 0 over a unix: link, 1 over a shm: link. */
START_TEST(backend_streams_200)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 8\nMaxQueue 512\n");
    spc_t c;
    tb_connect(&c, _i ? b.shm_addr : b.unix_addr, NULL, LOAD_STREAMS);
    double t0 = spt_ms();
    /* Open every stream first: all heads go out before any body. */
    for (uint32_t i = 0; i < LOAD_STREAMS; i++) {
        c.streams[i].keep_body = 1;
        int rc;
        if (i % 2 == 0)
            rc = spc_request(&c, i, "GET", "/hello", NULL, 0, 0);
        else
            rc = spc_request(&c, i, "POST", "/echo?bodyonly=1", NULL, 1,
                             (int64_t)load_body_len(i));
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_uint_ge(spc_open_streams(&c), 200);
    /* Bodies, stream after stream (each waits for credit as needed). */
    uint8_t *buf = malloc(700 * 1024);
    for (uint32_t i = 1; i < LOAD_STREAMS; i += 2) {
        size_t n = load_body_len(i);
        for (size_t j = 0; j < n; j++)
            buf[j] = load_byte(i, j);
        ck_assert_int_eq(spc_send_body(&c, i, buf, n, 20000), 0);
        ck_assert_int_eq(spc_end(&c, i), 0);
    }
    for (uint32_t i = 0; i < LOAD_STREAMS; i++)
        tb_wait(&c, i, 20000);
    double ms = spt_ms() - t0;
    for (uint32_t i = 0; i < LOAD_STREAMS; i++) {
        spc_stream_t *s = &c.streams[i];
        tb_expect_ok(&c, i, 200);
        if (i % 2 == 0) {
            ck_assert_uint_eq(s->body_len, 13);
            ck_assert(memcmp(s->body, "Hello, world\n", 13) == 0);
            continue;
        }
        size_t n = load_body_len(i);
        ck_assert_msg(s->body_len == n, "stream %u: %zu bytes, want %zu", i,
                      s->body_len, n);
        for (size_t j = 0; j < n; j++)
            if (s->body[j] != load_byte(i, j))
                ck_abort_msg("stream %u: byte %zu differs", i, j);
    }
    free(buf);
    fprintf(stderr,
            "figure: %d concurrent streams on one %s link in %.0f ms\n",
            LOAD_STREAMS, _i ? "shm:" : "unix:", ms);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* A long-lived link, as a frontend keeps one: thousands of requests, each
 * stream id reused the moment its previous request ended.  (The daemon
 * used to count the CREDITs that cross its END as frames for unknown
 * streams and closed the link with GOAWAY(LIMIT) after ~1000 requests,
 * and refused a reused id while its worker had not yet said DONE.) */
START_TEST(backend_link_reuse)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 4\n");
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    const int total = 4000;
    int started = 0, done = 0;
    uint8_t body[300];
    double t0 = spt_ms();
    while (done < total) {
        ck_assert_msg(spt_ms() - t0 < 60000, "only %d of %d done", done,
                      total);
        for (uint32_t id = 0; id < 4; id++) {
            spc_stream_t *s = &c.streams[id];
            if (s->open)
                continue;
            if (s->gen > 0) { /* a request ended on this id: check it */
                tb_expect_ok(&c, id, 200);
                size_t want = (s->gen - 1) % 2 ? 13 : 1 + (s->gen % 250);
                ck_assert_uint_eq(s->body_len, want);
                done++;
            }
            if (started == total)
                continue;
            s->keep_body = 1;
            if (s->gen % 2) { /* the next one is gen + 1 */
                ck_assert_int_eq(spc_request(&c, id, "GET", "/hello", NULL,
                                             0, 0),
                                 0);
            } else {
                size_t n = 1 + ((s->gen + 1) % 250);
                memset(body, 'a' + (int)(id + s->gen) % 26, n);
                ck_assert_int_eq(spc_request(&c, id, "POST",
                                             "/echo?bodyonly=1", NULL, 1,
                                             (int64_t)n),
                                 0);
                ck_assert_int_eq(spc_send_body(&c, id, body, n, 5000), 0);
                ck_assert_int_eq(spc_end(&c, id), 0);
            }
            started++;
        }
        ck_assert_int_eq(spc_pump(&c, 10), 0);
    }
    ck_assert(spc_usable(&c));
    fprintf(stderr, "figure: %d requests on one link, ids reused at once: "
                    "%.0f ms\n",
            total, spt_ms() - t0);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- bigbody ------------------------------------------------------------ */

#define BIG (100u * 1024 * 1024)
#define RSS_SLACK_KB (8 * 1024)

static uint8_t big_byte(uint64_t i)
{
    return (uint8_t)((i * 13 + (i >> 16) * 5 + 1) & 0xff);
}

START_TEST(backend_big_bodies)
{
    spt_backend_t b;
    /* One worker: the warm-up touches the very rings the big transfers
     * use, so the baseline is fair. */
    spt_backend_start(&b, "Workers 1\n");
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);

    /* Warm-up: a few MB each way through the same worker. */
    c.streams[0].check_pattern = 1;
    tb_get(&c, 0, "/echo?size=4194304");
    tb_wait(&c, 0, 20000);
    tb_expect_ok(&c, 0, 200);
    ck_assert_int_eq(c.streams[0].pattern_bad, 0);
    static uint8_t chunk[256 * 1024];
    ck_assert_int_eq(spc_request(&c, 1, "POST", "/echo?bodyonly=1", NULL, 1,
                                 4 << 20),
                     0);
    for (int k = 0; k < 16; k++)
        ck_assert_int_eq(spc_send_body(&c, 1, chunk, sizeof(chunk), 20000), 0);
    spc_end(&c, 1);
    tb_wait(&c, 1, 20000);
    tb_expect_ok(&c, 1, 200);
    ck_assert_uint_eq(c.streams[1].body_total, 4 << 20);
    usleep(100000);
    long base = spt_rss_tree_kb(b.pid);
    ck_assert_int_gt(base, 0);
    long peak = base;

    /* 100 MB up, echoed back: check length and CRC; keep nothing. */
    double t0 = spt_ms();
    ck_assert_int_eq(spc_request(&c, 2, "POST", "/echo?bodyonly=1", NULL, 1,
                                 BIG),
                     0);
    uint32_t crc = 0;
    for (uint64_t off = 0; off < BIG; off += sizeof(chunk)) {
        for (size_t j = 0; j < sizeof(chunk); j++)
            chunk[j] = big_byte(off + j);
        crc = sp_crc32c(crc, chunk, sizeof(chunk));
        ck_assert_int_eq(spc_send_body(&c, 2, chunk, sizeof(chunk), 30000), 0);
        if ((off / sizeof(chunk)) % 16 == 0) {
            long r = spt_rss_tree_kb(b.pid);
            if (r > peak)
                peak = r;
        }
    }
    spc_end(&c, 2);
    tb_wait(&c, 2, 60000);
    double up_ms = spt_ms() - t0;
    tb_expect_ok(&c, 2, 200);
    ck_assert_uint_eq(c.streams[2].body_total, BIG);
    ck_assert_uint_eq(c.streams[2].body_crc, crc);
    long peak_up = peak;

    /* 100 MB down: the pattern, checked byte by byte as it arrives. */
    t0 = spt_ms();
    c.streams[3].check_pattern = 1;
    tb_get(&c, 3, "/echo?size=104857600");
    int samples = 0;
    while (!c.streams[3].ended && !c.streams[3].aborted) {
        ck_assert_int_eq(spc_pump(&c, 50), 0);
        ck_assert_msg(spt_ms() - t0 < 60000, "100 MB response too slow");
        if (++samples % 64 == 0) {
            long r = spt_rss_tree_kb(b.pid);
            if (r > peak)
                peak = r;
        }
    }
    double down_ms = spt_ms() - t0;
    tb_expect_ok(&c, 3, 200);
    ck_assert_str_eq(spc_header(&c.streams[3], "Content-Length"),
                     "104857600");
    ck_assert_uint_eq(c.streams[3].body_total, BIG);
    ck_assert_msg(c.streams[3].pattern_bad == 0, "pattern wrong at byte %lld",
                  (long long)c.streams[3].pattern_bad - 1);
    long r = spt_rss_tree_kb(b.pid);
    if (r > peak)
        peak = r;
    fprintf(stderr,
            "figure: 100 MB echo up+down %.0f ms, 100 MB response %.0f ms; "
            "backend RSS %ld KB before, peak %ld KB during the upload, "
            "%ld KB overall (growth %ld KB)\n",
            up_ms, down_ms, base, peak_up, peak, peak - base);
    ck_assert_msg(peak - base < RSS_SLACK_KB,
                  "backend RSS grew by %ld KB (from %ld KB)", peak - base,
                  base);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_cgi_chunked)
{
    spt_backend_t b;
    spt_backend_start(&b, NULL);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    const size_t n = 3 * 1024 * 1024 + 12345;
    uint8_t *body = malloc(n);
    for (size_t j = 0; j < n; j++)
        body[j] = big_byte(j * 3 + 7);
    static const char *const hdrs[] = {"Content-Type", "application/x-spt",
                                       NULL};
    c.streams[0].keep_body = 1;
    ck_assert_int_eq(spc_request(&c, 0, "POST", "/cgi-bin/echo.sh", hdrs, 2,
                                 -1),
                     0);
    /* Odd-sized pieces, as a chunked upload would arrive. */
    for (size_t off = 0; off < n;) {
        size_t k = 1000 + (off * 31) % 70000;
        if (k > n - off)
            k = n - off;
        ck_assert_int_eq(spc_send_body(&c, 0, body + off, k, 20000), 0);
        off += k;
    }
    spc_end(&c, 0);
    tb_wait(&c, 0, 30000);
    spc_stream_t *s = &c.streams[0];
    tb_expect_ok(&c, 0, 200);
    ck_assert_str_eq(spc_header(s, "X-Request-Method"), "POST");
    ck_assert_str_eq(spc_header(s, "Content-Type"), "application/x-spt");
    /* CONTENT_LENGTH was unset for the script, so it sent none. */
    ck_assert_ptr_null(spc_header(s, "Content-Length"));
    ck_assert_uint_eq(s->body_len, n);
    ck_assert(memcmp(s->body, body, n) == 0);
    free(body);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- slowreader --------------------------------------------------------- */

START_TEST(backend_slow_reader)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 12\n");
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 16);
    uint32_t window = 262144; /* spc's HELLO initial_window */

    /* A: a 50 MB response whose reader never grants credit. */
    spc_stream_t *a = &c.streams[0];
    a->check_pattern = 1;
    tb_get(&c, 0, "/echo?size=52428800");
    a->auto_credit = 0;
    double t0 = spt_ms();
    while (a->body_total < window && spt_ms() - t0 < 5000)
        ck_assert_int_eq(spc_pump(&c, 20), 0);
    ck_assert_uint_eq(a->body_total, window);

    /* B..K on the same link, while A is stuck. */
    static uint8_t up[512 * 1024];
    for (size_t j = 0; j < sizeof(up); j++)
        up[j] = big_byte(j);
    double worst = 0;
    for (int round = 0; round < 2; round++) {
        double start = spt_ms();
        for (uint32_t id = 1; id <= 10; id++) {
            spc_stream_t *s = &c.streams[id];
            s->check_pattern = 0;
            s->keep_body = 0;
            if (id % 3 == 0) {
                tb_get(&c, id, "/hello");
            } else if (id % 3 == 1) {
                s->check_pattern = 1;
                tb_get(&c, id, "/echo?size=1048576");
            } else {
                ck_assert_int_eq(spc_request(&c, id, "POST",
                                             "/echo?bodyonly=1", NULL, 1,
                                             sizeof(up)),
                                 0);
            }
        }
        for (uint32_t id = 2; id <= 10; id += 3) {
            ck_assert_int_eq(spc_send_body(&c, id, up, sizeof(up), 5000), 0);
            spc_end(&c, id);
        }
        for (uint32_t id = 1; id <= 10; id++) {
            tb_wait(&c, id, 5000);
            spc_stream_t *s = &c.streams[id];
            tb_expect_ok(&c, id, 200);
            double ms = (double)(s->t_end_ns - s->t_start_ns) / 1e6;
            if (ms > worst)
                worst = ms;
            ck_assert_msg(ms < 2000, "stream %u took %.0f ms next to a "
                                     "stalled stream", id, ms);
            if (id % 3 == 1) {
                ck_assert_uint_eq(s->body_total, 1048576);
                ck_assert_int_eq(s->pattern_bad, 0);
            } else if (id % 3 == 2) {
                ck_assert_uint_eq(s->body_total, sizeof(up));
                ck_assert_uint_eq(s->body_crc,
                                  sp_crc32c(0, up, sizeof(up)));
            }
        }
        fprintf(stderr, "figure: slow reader round %d: 10 streams done in "
                        "%.0f ms, slowest %.0f ms\n",
                round, spt_ms() - start, worst);
    }
    /* A got not a byte past its window, and is still open. */
    ck_assert_uint_eq(a->body_total, window);
    ck_assert(a->open && !a->ended && !a->aborted);

    /* Now A reads again and completes intact. */
    a->auto_credit = 1;
    ck_assert_int_eq(spc_credit(&c, 0, window), 0);
    tb_wait(&c, 0, 30000);
    tb_expect_ok(&c, 0, 200);
    ck_assert_uint_eq(a->body_total, 52428800);
    ck_assert_int_eq(a->pattern_bad, 0);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* A stream whose answer is ready while the link's output queue is over
 * its limit waits for the queue to drain, then must go out at once - not
 * at the daemon's next timer tick (that took ~100 ms before a fix).  The
 * queue is filled by a big response the client stops reading, then
 * cancels; a /hello on the other worker answers meanwhile. */
START_TEST(backend_blocked_link)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\n");
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    int slow = 0;
    double worst = 0;
    for (int it = 0; it < 20; it++) {
        tb_get(&c, 0, "/echo?size=104857600");
        double t0 = spt_ms();
        while (c.streams[0].body_total < (1u << 20)) {
            ck_assert_msg(spt_ms() - t0 < 5000, "response does not flow");
            ck_assert_int_eq(spc_pump(&c, 10), 0);
        }
        /* Credit galore, then no reading for a while. */
        ck_assert_int_eq(spc_credit(&c, 0, 16u << 20), 0);
        sp_link_flush(&c.l);
        usleep(30000);
        ck_assert_int_eq(spc_abort(&c, 0), 0);
        ck_assert_int_eq(spc_request(&c, 1, "GET", "/hello", NULL, 0, 0), 0);
        sp_link_flush(&c.l);
        usleep(30000);
        /* Read again: the queue drains, then /hello's answer follows. */
        t0 = spt_ms();
        c.streams[1].keep_body = 1;
        tb_wait(&c, 1, 3000);
        double ms = spt_ms() - t0;
        tb_expect_ok(&c, 1, 200);
        ck_assert_uint_eq(c.streams[1].body_len, 13);
        if (ms > 50)
            slow++;
        if (ms > worst)
            worst = ms;
    }
    /* The stall was up to a tick (100 ms) in about half the rounds; two
     * slow rounds of 20 are left to a loaded machine. */
    fprintf(stderr, "figure: answer behind a full link queue: worst %.1f ms "
                    "of 20, %d over 50 ms\n",
            worst, slow);
    ck_assert_msg(slow <= 2, "%d of 20 answers waited over 50 ms (worst %.0f)",
                  slow, worst);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

Suite *suite_backend(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_hello);
    tcase_add_test(tc, backend_cli);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, backend_streams_200, 0, 2);
    tcase_add_test(tc, backend_link_reuse);
    suite_add_tcase(s, tc);

    tc = tcase_create("bigbody");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, backend_big_bodies);
    tcase_add_test(tc, backend_cgi_chunked);
    suite_add_tcase(s, tc);

    tc = tcase_create("slowreader");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_slow_reader);
    tcase_add_test(tc, backend_blocked_link);
    suite_add_tcase(s, tc);

    tb_add_fail_cases(s);
    tb_add_peer_cases(s);
    tb_add_reload_cases(s);
    tb_add_accept_cases(s);
    tb_add_abort_done_cases(s);
    tb_add_sched_cases(s);
    tb_add_shm_cases(s);
    return s;
}
