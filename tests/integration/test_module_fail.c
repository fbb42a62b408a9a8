/*
 * test_module_fail.c - the module when things go away (see test_module.c):
 *
 *   backenddown  the backend stops: requests get 503 (with Retry-After)
 *                at once (its address refuses the connect: no wait for
 *                the default 3 s connect_timeout), never a hang; it
 *                starts again on the same address: requests succeed
 *                within the retry interval, httpd untouched
 *   graceful     `apache2 -k graceful -f CONF` while downloads, uploads
 *                and slow answers stream: none of them fails, requests
 *                during and after the restart succeed, the old
 *                generation's proxy child exits once its children are gone
 *   abort        the client closes the connection during a 100 MB
 *                download: the backend's only worker is free again at once
 *                (the next request is answered promptly) and no slot stays
 *                taken
 */
#include "test_module.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char hello[] = "Hello, world\n";

static void get_hello(spt_client_t *c, spt_resp_t *r)
{
    spt_req_t q = {.method = "GET", .path = "/hello", .body_len = -1,
                   .check = SPT_CHECK_EXACT, .expect = hello, .expect_n = 13,
                   .timeout_ms = 30000};
    spt_client_do(c, &q, r);
}

static int hello_ok(const spt_resp_t *r)
{
    return r->curl_code == 0 && r->status == 200 && r->received == 13 &&
           r->mismatch == UINT64_MAX;
}

/* ---- backenddown ---------------------------------------------------------- */

/* The 503s the module answers while no link is up. */
static const char *const down_httpd_allowed[] = {"SPM0214", NULL};

/* Loop index as in module_basic: unix: then shm: links. */
START_TEST(module_backend_down)
{
    tm_env_t e;
    int transport = _i < TM_NMPMS ? TM_UNIX : TM_SHM;
    tm_start(&e, _i % TM_NMPMS, NULL, transport, "links=2", NULL, 2);
    spt_client_t *c = spt_client_new(&e.h);
    spt_resp_t *r = malloc(sizeof(*r));
    get_hello(c, r);
    ck_assert(hello_ok(r));

    ck_assert_int_eq(spt_backend_stop_keep(&e.b), 0);
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        /* GETs, and a POST whose body cannot go anywhere. */
        spt_req_t q = {.method = "GET", .path = "/hello", .body_len = -1,
                       .timeout_ms = 10000};
        if (i == 3) {
            q.method = "POST";
            q.path = "/echo?bodyonly=1";
            q.body_len = 1024 * 1024;
            q.seed = 3;
        }
        spt_client_do(c, &q, r);
        ck_assert_msg(r->curl_code == 0, "request %d: curl %s", i, r->err);
        ck_assert_msg(r->status == 503, "request %d: status %ld", i,
                      r->status);
        ck_assert_msg(r->ms < 500,
                      "request %d: 503 after %.0f ms (the backend refuses "
                      "the connect: expected at once)", i, r->ms);
        char ra[2][256];
        ck_assert_int_eq(spt_resp_headers(r, "Retry-After", ra, 2), 1);
        if (r->ms > worst)
            worst = r->ms;
    }
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
    ck_assert_int_eq(st.links_up, 0);
    ck_assert_int_ge(st.answered_503, 4);

    /* Back on the same socket: requests succeed again (a request that
     * finds the backend refusing makes the proxy child try again, at most
     * every retry interval, 250 ms; refused: 503 at once). */
    double t0 = spt_ms();
    spt_backend_restart(&e.b);
    int n503 = 0;
    for (;;) {
        get_hello(c, r);
        if (hello_ok(r))
            break;
        ck_assert_msg(r->curl_code == 0 && r->status == 503,
                      "while reconnecting: status %ld, curl %s", r->status,
                      r->err);
        ck_assert_msg(r->ms < 500, "503 after %.0f ms", r->ms);
        n503++;
        ck_assert_msg(spt_ms() - t0 < 5000,
                      "no answer 5 s after the backend came back");
    }
    double back = spt_ms() - t0;
    for (int i = 0; i < 50; i++) {
        get_hello(c, r);
        ck_assert_msg(hello_ok(r), "request %d after the restart: status "
                                   "%ld, curl %s",
                      i, r->status, r->err);
    }
    fprintf(stderr,
            "figure: %s, %s link: backend down -> 503 in at most %.0f ms "
            "(default connect_timeout); back: first 200 %.0f ms after the "
            "backend restarted (%d more 503 meanwhile)\n",
            e.mpm, tm_transports[transport], worst, back, n503);

    free(r);
    spt_client_free(c);
    tm_finish(&e, down_httpd_allowed, NULL);
}
END_TEST

/* ---- graceful -------------------------------------------------------------- */

typedef struct longreq {
    spt_client_t *c;
    spt_req_t q;
    spt_resp_t r;
    char path[128];
    double t_end;
    pthread_t t;
} longreq_t;

static void *longreq_run(void *arg)
{
    longreq_t *lr = arg;
    spt_client_do(lr->c, &lr->q, &lr->r);
    lr->t_end = spt_ms();
    return NULL;
}

#define NLONG 9

/* Loop index as in module_basic: unix: then shm: links (the old
 * generation's proxy child keeps its shm: links while its streams end). */
START_TEST(module_graceful)
{
    tm_env_t e;
    int transport = _i < TM_NMPMS ? TM_UNIX : TM_SHM;
    /* prefork: a worker per client from the start. */
    tm_start(&e, _i % TM_NMPMS, "Workers 16\n", transport, "links=2",
             _i % TM_NMPMS == 0 ? "StartServers 32\nMaxSpareServers 64\n"
                                : NULL,
             2);
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
    pid_t old = (pid_t)st.proxy_pid;
    long gen = st.generation;

    /* Three slow downloads (60 MB at 15 MB/s), three slow uploads echoed
     * back (24 MB at 6 MB/s) and three answers that take 3 s: each lasts
     * about 4 s or more, and the restart comes once all are running. */
    longreq_t *lr = calloc(NLONG, sizeof(*lr));
    for (int i = 0; i < NLONG; i++) {
        lr[i].c = spt_client_new(&e.h);
        spt_req_t *q = &lr[i].q;
        q->timeout_ms = 60000;
        q->body_len = -1;
        q->method = "GET";
        if (i < 3) {
            q->path = "/echo?size=60000000";
            q->check = SPT_CHECK_SIZE;
            q->expect_len = 60000000;
            q->max_recv_speed = 15 * 1000 * 1000;
        } else if (i < 6) {
            q->method = "PUT";
            q->path = "/echo?bodyonly=1";
            q->body_len = 24 * 1000 * 1000;
            q->seed = 500 + (uint64_t)i;
            q->check = SPT_CHECK_ECHO;
            q->max_send_speed = 6 * 1000 * 1000;
        } else {
            snprintf(lr[i].path, sizeof(lr[i].path),
                     "/echo?sleep=3000&size=%d", 1000 + i);
            q->path = lr[i].path;
            q->check = SPT_CHECK_SIZE;
            q->expect_len = 1000 + (uint64_t)i;
        }
    }
    tm_load_t *l = tm_load_start(&e.h, 4);
    for (int i = 0; i < NLONG; i++)
        ck_assert_int_eq(pthread_create(&lr[i].t, NULL, longreq_run, &lr[i]),
                         0);
    /* Every long request in flight (the short ones come and go). */
    double t0 = spt_ms();
    long inflight = 0;
    while (spt_ms() - t0 < 5000) {
        ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
        inflight = st.inflight;
        if (inflight >= NLONG)
            break;
        usleep(20000);
    }
    ck_assert_msg(inflight >= NLONG, "only %ld requests in flight", inflight);
    usleep(200000);

    double tg = spt_ms();
    spt_httpd_graceful(&e.h);
    double tg_done = spt_ms();
    /* Wait for the new generation's proxy. */
    pid_t fresh = 0;
    while (spt_ms() - tg < 10000) {
        if (spt_httpd_status(&e.h, &st) == 0 && st.generation != gen &&
            st.proxy_pid > 0 && st.proxy_pid != old) {
            fresh = (pid_t)st.proxy_pid;
            break;
        }
        usleep(20000);
    }
    double t_new = spt_ms() - tg;
    ck_assert_msg(fresh > 0, "no new generation 10 s after the restart");
    tm_load_mark(l);

    for (int i = 0; i < NLONG; i++)
        pthread_join(lr[i].t, NULL);
    double t_long = spt_ms() - tg;
    usleep(500000);
    tm_load_stop(l);

    for (int i = 0; i < NLONG; i++) {
        ck_assert_msg(lr[i].r.status == 200 && spt_resp_ok(&lr[i].q, &lr[i].r),
                      "%s %s across the graceful restart: status %ld, curl "
                      "%d (%s), %llu bytes, mismatch at %lld",
                      lr[i].q.method, lr[i].q.path, lr[i].r.status,
                      lr[i].r.curl_code, lr[i].r.err,
                      (unsigned long long)lr[i].r.received,
                      lr[i].r.mismatch == UINT64_MAX
                          ? -1LL
                          : (long long)lr[i].r.mismatch);
        ck_assert_msg(lr[i].t_end > tg_done + 300,
                      "%s was over %.0f ms after the restart began: not "
                      "across it",
                      lr[i].q.path, lr[i].t_end - tg);
        spt_client_free(lr[i].c);
    }
    ck_assert_msg(tm_load_failed(l) == 0,
                  "%ld of %ld short requests failed around the restart: %s",
                  tm_load_failed(l), tm_load_ok(l) + tm_load_failed(l),
                  tm_load_first_error(l));
    ck_assert_int_gt(tm_load_ok_after_mark(l), 10);

    /* The old proxy child goes once its generation's children are gone. */
    t0 = spt_ms();
    while (spt_pid_alive(old) && spt_ms() - t0 < 20000)
        usleep(50000);
    double t_old = spt_ms() - tg;
    ck_assert_msg(!spt_pid_alive(old),
                  "old proxy child %d still there 20 s after its requests "
                  "ended",
                  (int)old);
    ck_assert_int_ge(spt_httpd_log_count(&e.h, "SPM0006"), 1);
    fprintf(stderr,
            "figure: %s, %s link: graceful restart with %ld requests in "
            "flight: new "
            "proxy child after %.0f ms, long requests done %.0f ms after "
            "it, old proxy child gone after %.0f ms; %ld short requests "
            "around it (%ld after), 0 failed\n",
            e.mpm, tm_transports[transport], inflight, t_new, t_long, t_old,
            tm_load_ok(l), tm_load_ok_after_mark(l));
    tm_load_free(l);
    free(lr);

    ck_assert_msg(spt_httpd_wait_idle(&e.h, &st, 5000) == 0,
                  "slots still taken: inflight %ld, busy %ld", st.inflight,
                  st.by_state_busy);
    tm_finish(&e, NULL, NULL);
}
END_TEST

/* ---- abort -------------------------------------------------------------------- */

START_TEST(module_client_abort)
{
    tm_env_t e;
    tm_start(&e, _i, "Workers 1\n", 0, "links=2", NULL, 2);
    spt_client_t *c = spt_client_new(&e.h);
    spt_resp_t *r = malloc(sizeof(*r));
    double worst = 0;
    for (int round = 0; round < 3; round++) {
        spt_req_t q = {.method = "GET", .path = "/echo?size=100000000",
                       .body_len = -1, .check = SPT_CHECK_SIZE,
                       .expect_len = 100000000,
                       .abort_after = (uint64_t)(1 + round) * 1000 * 1000};
        spt_client_do(c, &q, r);
        ck_assert_msg(r->curl_code == CURLE_WRITE_ERROR,
                      "round %d: curl %d (%s)", round, r->curl_code, r->err);
        ck_assert_int_eq(r->status, 200);
        ck_assert(r->received < 100000000);
        ck_assert(r->mismatch == UINT64_MAX);
        /* The only worker must be free for this one. */
        get_hello(c, r);
        ck_assert_msg(hello_ok(r), "round %d: /hello: status %ld, curl %s",
                      round, r->status, r->err);
        ck_assert_msg(r->ms < 1000,
                      "round %d: /hello took %.0f ms after the abort", round,
                      r->ms);
        if (r->ms > worst)
            worst = r->ms;
    }
    spt_status_t st;
    ck_assert_msg(spt_httpd_wait_idle(&e.h, &st, 3000) == 0,
                  "slots still taken after the aborts: inflight %ld, "
                  "admitted %ld, busy %ld",
                  st.inflight, st.admitted, st.by_state_busy);
    ck_assert_int_ge(st.client_aborts, 3);
    fprintf(stderr,
            "figure: %s: client abort mid-download -> next request on the "
            "only backend worker in at most %.1f ms\n",
            e.mpm, worst);
    free(r);
    spt_client_free(c);
    tm_finish(&e, NULL, NULL);
}
END_TEST

void tm_add_fail_cases(Suite *s)
{
    TCase *tc = tcase_create("backenddown");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_backend_down, 0, 2 * TM_NMPMS);
    suite_add_tcase(s, tc);

    tc = tcase_create("graceful");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_graceful, 0, 2 * TM_NMPMS);
    suite_add_tcase(s, tc);

    tc = tcase_create("abort");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_client_abort, 0, TM_NMPMS);
    suite_add_tcase(s, tc);
}
