/*
 * test_backend_fail.c - requests that fail, and the pool that survives
 * them: a worker SIGKILLed mid-request (502 on that stream only, the pool
 * refilled), RequestTimeout (504, worker replaced), a full queue and a
 * queue deadline (503), a crashing application (502), the frontend's
 * ABORT (the worker is freed at once), a body the application never
 * reads (discarded, nothing leaks into the next request),
 * MaxRequestsPerWorker (workers recycled, no request lost).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "test_backend.h"

static const char *const crash_tags[] = {"SPB0703", NULL};
static const char *const timeout_tags[] = {"SPB0702", NULL};

static int pid_in(pid_t p, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}

/* Pump until stream id is accepted. */
static void wait_accepted(spc_t *c, uint32_t id, int timeout_ms)
{
    double end = spt_ms() + timeout_ms;
    while (!c->streams[id].accepted) {
        ck_assert_msg(!c->streams[id].aborted && !c->streams[id].ended,
                      "stream %u over before ACCEPT", id);
        ck_assert_msg(spt_ms() < end, "stream %u: no ACCEPT", id);
        ck_assert_int_eq(spc_pump(c, 10), 0);
    }
}

static void expect_abort(spc_t *c, uint32_t id, uint32_t code, int status)
{
    spc_stream_t *s = &c->streams[id];
    ck_assert_msg(s->aborted, "stream %u: not aborted (status %d, ended %d)",
                  id, s->status, s->ended);
    ck_assert_msg(s->abort_code == code && s->abort_status == status,
                  "stream %u: ABORT %s %u (%s), want %s %d", id,
                  sp_abort_code_name(s->abort_code), s->abort_status,
                  s->abort_reason, sp_abort_code_name(code), status);
}

/* ---- SIGKILL mid-request -------------------------------------------------- */

START_TEST(backend_worker_killed)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 4\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 4, 5000), 4);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 8);
    /* Four sleepers, one per worker. */
    for (uint32_t id = 0; id < 4; id++) {
        c.streams[id].keep_body = 1;
        tb_get(&c, id, "/echo?sleep=2000&bodyonly=1");
    }
    for (uint32_t id = 0; id < 4; id++)
        wait_accepted(&c, id, 5000);
    pid_t before[8];
    ck_assert_int_eq(spt_children(b.pid, before, 8), 4);
    ck_assert_int_eq(kill(before[2], SIGKILL), 0);
    double t_kill = spt_ms();
    /* Exactly one stream gets 502 at once; the three others finish. */
    int aborted = -1;
    while (aborted < 0 && spt_ms() - t_kill < 1500) {
        ck_assert_int_eq(spc_pump(&c, 10), 0);
        for (uint32_t id = 0; id < 4; id++)
            if (c.streams[id].aborted)
                aborted = (int)id;
    }
    double ms_502 = spt_ms() - t_kill;
    ck_assert_msg(aborted >= 0, "no stream aborted after the SIGKILL");
    expect_abort(&c, (uint32_t)aborted, SP_ABORT_WORKER_CRASH, 502);
    for (uint32_t id = 0; id < 4; id++) {
        if ((int)id == aborted)
            continue;
        tb_wait(&c, id, 5000);
        tb_expect_ok(&c, id, 200);
        ck_assert_uint_eq(c.streams[id].body_len, 0);
    }
    /* The pool is whole again, with a new process in place of the dead. */
    ck_assert_int_eq(spt_wait_children(b.pid, 4, 5000), 4);
    pid_t after[8];
    ck_assert_int_eq(spt_children(b.pid, after, 8), 4);
    ck_assert(!pid_in(before[2], after, 4));
    /* ... and all four serve: four concurrent sleepers again. */
    for (uint32_t id = 4; id < 8; id++)
        tb_get(&c, id, "/echo?sleep=300");
    for (uint32_t id = 4; id < 8; id++)
        wait_accepted(&c, id, 2000);
    for (uint32_t id = 4; id < 8; id++) {
        tb_wait(&c, id, 5000);
        tb_expect_ok(&c, id, 200);
    }
    fprintf(stderr, "figure: SIGKILLed worker -> 502 in %.1f ms\n", ms_502);
    ck_assert_int_eq(spt_log_count(&b, "SPB0703"), 1);
    spc_close(&c);
    spt_backend_finish(&b, crash_tags);
}
END_TEST

/* ---- RequestTimeout ------------------------------------------------------ */

START_TEST(backend_request_timeout)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\nRequestTimeout 1\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 1, 5000), 1);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_get(&c, 0, "/echo?sleep=5000");
    wait_accepted(&c, 0, 5000);
    pid_t before;
    ck_assert_int_eq(spt_children(b.pid, &before, 1), 1);
    double t0 = spt_ms();
    tb_wait(&c, 0, 4000);
    double ms = (double)(c.streams[0].t_end_ns - c.streams[0].t_start_ns) / 1e6;
    expect_abort(&c, 0, SP_ABORT_TIMEOUT, 504);
    ck_assert_msg(ms >= 900 && ms < 2000, "504 after %.0f ms", ms);
    (void)t0;
    /* Replaced: another process serves the next request. */
    tb_hello(&c, 1, 5000);
    pid_t after;
    ck_assert_int_eq(spt_children(b.pid, &after, 1), 1);
    ck_assert_int_ne(after, before);
    fprintf(stderr, "figure: RequestTimeout 1 -> 504 after %.0f ms\n", ms);
    spc_close(&c);
    spt_backend_finish(&b, timeout_tags);
}
END_TEST

/* ---- the queue ------------------------------------------------------------ */

START_TEST(backend_queue_full)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\nMaxQueue 1\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 1, 5000), 1);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_get(&c, 0, "/echo?sleep=800");
    wait_accepted(&c, 0, 5000);
    tb_get(&c, 1, "/echo?sleep=10"); /* queued */
    tb_get(&c, 2, "/echo?sleep=10"); /* no room */
    tb_wait(&c, 2, 2000);
    spc_stream_t *s2 = &c.streams[2];
    double ms = (double)(s2->t_end_ns - s2->t_start_ns) / 1e6;
    expect_abort(&c, 2, SP_ABORT_OVERLOAD, 503);
    ck_assert(!s2->accepted); /* never seen by a worker: retry is safe */
    ck_assert_msg(ms < 500, "queue-full 503 after %.0f ms", ms);
    ck_assert(!c.streams[1].accepted && c.streams[1].open);
    tb_wait(&c, 0, 5000);
    tb_expect_ok(&c, 0, 200);
    tb_wait(&c, 1, 5000);
    tb_expect_ok(&c, 1, 200);
    fprintf(stderr, "figure: queue full -> 503 in %.1f ms\n", ms);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_queue_timeout)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\nMaxQueue 8\nQueueTimeout 1\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 1, 5000), 1);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_get(&c, 0, "/echo?sleep=2500");
    wait_accepted(&c, 0, 5000);
    tb_get(&c, 1, "/hello"); /* waits in the queue past its deadline */
    tb_wait(&c, 1, 3000);
    spc_stream_t *s1 = &c.streams[1];
    double ms = (double)(s1->t_end_ns - s1->t_start_ns) / 1e6;
    expect_abort(&c, 1, SP_ABORT_OVERLOAD, 503);
    ck_assert(!s1->accepted);
    ck_assert_msg(ms >= 900 && ms < 1800, "queue-timeout 503 after %.0f ms",
                  ms);
    ck_assert(c.streams[0].open);
    tb_wait(&c, 0, 5000);
    tb_expect_ok(&c, 0, 200);
    tb_hello(&c, 2, 2000);
    fprintf(stderr, "figure: QueueTimeout 1 -> 503 after %.0f ms\n", ms);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- the application crashes --------------------------------------------- */

START_TEST(backend_app_crash)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 2, 5000), 2);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    /* Before the head: a clean 502 the frontend can answer with. */
    tb_get(&c, 0, "/echo?crash=1");
    tb_wait(&c, 0, 5000);
    spc_stream_t *s = &c.streams[0];
    double ms = (double)(s->t_end_ns - s->t_start_ns) / 1e6;
    expect_abort(&c, 0, SP_ABORT_WORKER_CRASH, 502);
    ck_assert(s->accepted && !s->got_head);
    /* After the head: the response is cut (no status hint any more). */
    tb_get(&c, 1, "/echo?crash=1&flush=1&status=201");
    tb_wait(&c, 1, 5000);
    ck_assert(c.streams[1].got_head);
    ck_assert_int_eq(c.streams[1].status, 201);
    expect_abort(&c, 1, SP_ABORT_WORKER_CRASH, 0);
    /* The pool is refilled and serves. */
    ck_assert_int_eq(spt_wait_children(b.pid, 2, 5000), 2);
    tb_hello(&c, 2, 5000);
    tb_hello(&c, 3, 5000);
    fprintf(stderr, "figure: crash=1 -> 502 in %.1f ms\n", ms);
    ck_assert_int_eq(spt_log_count(&b, "SPB0703"), 2);
    spc_close(&c);
    spt_backend_finish(&b, crash_tags);
}
END_TEST

/* ---- the frontend aborts ------------------------------------------------- */

START_TEST(backend_client_abort)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 1, 5000), 1);
    pid_t worker;
    ck_assert_int_eq(spt_children(b.pid, &worker, 1), 1);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 8);

    /* Mid-response: 100 MB, cancelled after 1 MB. */
    tb_get(&c, 0, "/echo?size=104857600");
    double t0 = spt_ms();
    while (c.streams[0].body_total < (1u << 20)) {
        ck_assert_msg(spt_ms() - t0 < 5000, "response does not flow");
        ck_assert_int_eq(spc_pump(&c, 10), 0);
    }
    ck_assert_int_eq(spc_abort(&c, 0), 0);
    t0 = spt_ms();
    tb_hello(&c, 1, 2000);
    double ms_resp = spt_ms() - t0;

    /* Mid-request-body: 100 MB announced, 1 MB sent, then cancelled. */
    static uint8_t chunk[64 * 1024];
    ck_assert_int_eq(spc_request(&c, 2, "POST", "/echo?bodyonly=1", NULL, 1,
                                 100 << 20),
                     0);
    for (int k = 0; k < 16; k++)
        ck_assert_int_eq(spc_send_body(&c, 2, chunk, sizeof(chunk), 5000), 0);
    wait_accepted(&c, 2, 2000);
    ck_assert_int_eq(spc_abort(&c, 2), 0);
    t0 = spt_ms();
    tb_hello(&c, 3, 2000);
    double ms_req = spt_ms() - t0;

    /* While the application sleeps (it polls aborted()). */
    tb_get(&c, 4, "/echo?sleep=20000");
    wait_accepted(&c, 4, 2000);
    ck_assert_int_eq(spc_abort(&c, 4), 0);
    t0 = spt_ms();
    tb_hello(&c, 5, 2000);
    double ms_sleep = spt_ms() - t0;

    /* A stream still in the queue: it never reaches the worker. */
    tb_get(&c, 6, "/echo?sleep=300");
    wait_accepted(&c, 6, 2000);
    tb_get(&c, 7, "/echo?crash=1"); /* would kill the worker if it ran */
    ck_assert_int_eq(spc_abort(&c, 7), 0);
    tb_wait(&c, 6, 3000);
    tb_expect_ok(&c, 6, 200);
    tb_hello(&c, 0, 2000);

    /* The same worker did all of it: aborts never cost a process. */
    pid_t now;
    ck_assert_int_eq(spt_children(b.pid, &now, 1), 1);
    ck_assert_int_eq(now, worker);
    ck_assert(ms_resp < 1000 && ms_req < 1000 && ms_sleep < 1000);
    fprintf(stderr, "figure: worker free again after ABORT: %.1f ms "
                    "(response), %.1f ms (request body), %.1f ms (sleep)\n",
            ms_resp, ms_req, ms_sleep);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- the application does not read the body ---------------------------- */

/* "You do not have to read the body: the backend discards what is left"
 * (docs/applications.md) - and none of it may leak into the next request
 * of the same worker. */
START_TEST(backend_unread_body)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\n");
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    static uint8_t junk[1 << 20], mine[100000];
    memset(junk, 'J', sizeof(junk));
    for (size_t j = 0; j < sizeof(mine); j++)
        mine[j] = (uint8_t)(j * 5 + 1);
    for (int round = 0; round < 3; round++) {
        /* A body the handler never reads: small and complete, or 10 MB
         * that the client stops sending once the answer is there. */
        size_t len = round == 0 ? 1000 : 10u << 20;
        c.streams[0].keep_body = 1;
        ck_assert_int_eq(spc_request(&c, 0, "POST", "/hello", NULL, 1,
                                     (int64_t)len),
                         0);
        size_t sent = 0;
        int rc = 0;
        while (sent < len && rc == 0) {
            size_t k = len - sent < sizeof(junk) ? len - sent : sizeof(junk);
            rc = spc_send_body(&c, 0, junk, k, 5000);
            if (rc == 0)
                sent += k;
        }
        if (rc == 0) {
            spc_end(&c, 0);
        } else {
            /* The answer came first (docs/protocol.md 4.1): stop, cancel. */
            ck_assert_int_eq(rc, SP_ESTATE);
            ck_assert(c.streams[0].ended);
        }
        tb_wait(&c, 0, 5000);
        tb_expect_ok(&c, 0, 200);
        ck_assert_uint_eq(c.streams[0].body_len, 13);
        if (rc != 0)
            spc_abort(&c, 0);
        /* The same worker, next request: exactly its own body. */
        c.streams[1].keep_body = 1;
        ck_assert_int_eq(spc_request(&c, 1, "POST", "/echo?bodyonly=1", NULL,
                                     1, sizeof(mine)),
                         0);
        ck_assert_int_eq(spc_send_body(&c, 1, mine, sizeof(mine), 5000), 0);
        spc_end(&c, 1);
        tb_wait(&c, 1, 5000);
        tb_expect_ok(&c, 1, 200);
        ck_assert_uint_eq(c.streams[1].body_len, sizeof(mine));
        ck_assert(memcmp(c.streams[1].body, mine, sizeof(mine)) == 0);
    }
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* ---- MaxRequestsPerWorker ------------------------------------------------ */

START_TEST(backend_max_requests)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\nMaxRequestsPerWorker 3\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 2, 5000), 2);
    pid_t first[4];
    ck_assert_int_eq(spt_children(b.pid, first, 4), 2);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    int done = 0;
    /* Sequential and in pairs. */
    for (int k = 0; k < 10; k++, done++)
        tb_hello(&c, 0, 5000);
    for (int k = 0; k < 5; k++) {
        c.streams[1].keep_body = c.streams[2].keep_body = 1;
        tb_get(&c, 1, "/hello");
        tb_get(&c, 2, "/echo?sleep=20");
        tb_wait(&c, 1, 5000);
        tb_wait(&c, 2, 5000);
        tb_expect_ok(&c, 1, 200);
        tb_expect_ok(&c, 2, 200);
        done += 2;
    }
    ck_assert_int_eq(done, 20);
    ck_assert_int_eq(spt_wait_children(b.pid, 2, 5000), 2);
    pid_t last[4];
    ck_assert_int_eq(spt_children(b.pid, last, 4), 2);
    ck_assert(!pid_in(first[0], last, 2) && !pid_in(first[1], last, 2));
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

void tb_add_fail_cases(Suite *s)
{
    TCase *tc = tcase_create("failures");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_worker_killed);
    tcase_add_test(tc, backend_request_timeout);
    tcase_add_test(tc, backend_queue_full);
    tcase_add_test(tc, backend_queue_timeout);
    tcase_add_test(tc, backend_app_crash);
    tcase_add_test(tc, backend_client_abort);
    tcase_add_test(tc, backend_unread_body);
    tcase_add_test(tc, backend_max_requests);
    suite_add_tcase(s, tc);
}
