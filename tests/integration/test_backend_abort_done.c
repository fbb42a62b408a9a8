/*
 * test_backend_abort_done.c - a stream whose worker has finished (its
 * whole response and END are in the ring, the worker is back to IDLE)
 * while the dispatcher still holds part of that response back for want
 * of credit, and the frontend then gives the stream up.  The stream must
 * end at once and free the worker - not stay "busy" until RequestTimeout
 * kills the worker (SPB0702) while requests behind it wait (fixed in
 * stream_abort(), dispatcher.c).
 *
 *   abortdone  on one worker with RequestTimeout 4: a 400000-byte
 *              /echo read up to the 256 KiB window only, then
 *                abort  ABORT(CANCEL) for it, and /hello on the same link
 *                close  the link closed, and /hello on a second link
 *              /hello is answered within 1 s (the bug made it ~4 s), by
 *              the same worker, and no SPB0702 is logged
 */
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "sp_error.h"
#include "test_backend.h"

#define AD_CONF "Workers 1\nRequestTimeout 4\n"
#define AD_WINDOW 262144 /* spc's HELLO initial_window */
#define AD_MAX_MS 1000.0 /* generous: the bug took RequestTimeout, ~4000 */

/* Start /echo?size=AD_SIZE on stream id of c without granting any
 * credit, read the window's worth, then keep reading for a while: the
 * worker writes the rest and its END into its ring (the ring, 256 KiB,
 * holds it) and goes back to IDLE, while nothing more may reach us. */
static void ad_stall(spc_t *c, uint32_t id)
{
    spc_stream_t *s = &c->streams[id];
    s->keep_body = 0;
    s->check_pattern = 1;
    tb_get(c, id, "/echo?size=400000");
    s->auto_credit = 0;
    double t0 = spt_ms();
    while (s->body_total < AD_WINDOW) {
        ck_assert_msg(spt_ms() - t0 < 5000, "only %llu bytes of the window "
                                            "arrived",
                      (unsigned long long)s->body_total);
        ck_assert_int_eq(spc_pump(c, 20), 0);
    }
    /* Time for the worker to finish (a memcpy of ~140 KB). */
    t0 = spt_ms();
    while (spt_ms() - t0 < 100)
        ck_assert_int_eq(spc_pump(c, 20), 0);
    ck_assert_uint_eq(s->body_total, AD_WINDOW);
    ck_assert_int_eq(s->pattern_bad, 0);
    ck_assert_msg(s->open && !s->ended && !s->aborted,
                  "stream %u went past its window (ended %d, aborted %d)",
                  id, s->ended, s->aborted);
}

/* /hello on stream id of c, timed from t0; the figure is printed before
 * any assertion, so a failing run shows how long it took. */
static void ad_hello_after(spt_backend_t *b, spc_t *c, uint32_t id,
                           double t0, const char *how, pid_t worker)
{
    spc_stream_t *s = &c->streams[id];
    s->keep_body = 1;
    tb_get(c, id, "/hello");
    int rc = spc_wait(c, id, 8000);
    double ms = spt_ms() - t0;
    int timeouts = spt_log_count(b, "SPB0702");
    fprintf(stderr, "figure: /hello after %s of a finished worker's "
                    "stalled stream: %.1f ms (%s), SPB0702 lines: %d\n",
            how, ms, rc == 0 ? "answered" : sp_strerror(rc), timeouts);
    ck_assert_msg(rc == 0, "/hello after %s: %s", how, sp_strerror(rc));
    tb_expect_ok(c, id, 200);
    ck_assert_uint_eq(s->body_len, 13);
    ck_assert(memcmp(s->body, "Hello, world\n", 13) == 0);
    ck_assert_msg(ms < AD_MAX_MS, "/hello after %s waited %.0f ms (the "
                                  "stalled stream held the only worker)",
                  how, ms);
    ck_assert_msg(timeouts == 0, "SPB0702 in the log: the worker of the "
                                 "stream given up was killed by "
                                 "RequestTimeout");
    pid_t now;
    ck_assert_int_eq(spt_children(b->pid, &now, 1), 1);
    ck_assert_msg(now == worker, "the worker was replaced (%d, was %d)",
                  (int)now, (int)worker);
}

/* The only worker, up and idle: its pid. */
static pid_t ad_worker(spt_backend_t *b, spc_t *c)
{
    ck_assert_int_eq(spt_wait_children(b->pid, 1, 5000), 1);
    tb_hello(c, 1, 3000);
    pid_t worker;
    ck_assert_int_eq(spt_children(b->pid, &worker, 1), 1);
    return worker;
}

START_TEST(backend_abort_done_abort)
{
    spt_backend_t b;
    spt_backend_start(&b, AD_CONF);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    pid_t worker = ad_worker(&b, &c);

    ad_stall(&c, 0);
    ck_assert_int_eq(spc_abort(&c, 0), 0);
    ad_hello_after(&b, &c, 1, spt_ms(), "ABORT", worker);

    /* The worker serves on, the stream id too. */
    tb_hello(&c, 0, 2000);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_abort_done_close)
{
    spt_backend_t b;
    spt_backend_start(&b, AD_CONF);
    spc_t c, c2;
    tb_connect(&c, b.unix_addr, NULL, 4);
    pid_t worker = ad_worker(&b, &c);
    /* The second link is up before the first goes: only /hello is timed. */
    tb_connect(&c2, b.unix_addr, NULL, 4);

    ad_stall(&c, 0);
    double t0 = spt_ms();
    spc_close(&c);
    ad_hello_after(&b, &c2, 0, t0, "link close", worker);

    tb_hello(&c2, 1, 2000);
    spc_close(&c2);
    spt_backend_finish(&b, NULL);
}
END_TEST

void tb_add_abort_done_cases(Suite *s)
{
    TCase *tc = tcase_create("abortdone");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backend_abort_done_abort);
    tcase_add_test(tc, backend_abort_done_close);
    suite_add_tcase(s, tc);
}
