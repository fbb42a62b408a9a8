/*
 * test_module_load.c - the module under load (see test_module.c):
 *
 *   load       256 concurrent keep-alive clients, every answer checked,
 *              while the ESTABLISHED connections to the backend's tcp port
 *              (/proc/net/tcp, sampled during the run) stay exactly
 *              `links`, however many httpd children and threads there are
 *   proxykill  kill -9 of the proxy child under load: httpd restarts it,
 *              requests started once the new one is there succeed, and no
 *              slot stays taken afterwards
 */
#include "test_module.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOAD_LINKS 2
#define LOAD_CLIENTS 256

/* Room for 256 clients at once under either MPM, plus spare workers for
 * the status requests (and so that httpd never logs that it reached
 * MaxRequestWorkers). */
static const char *load_mpm_conf(int mpm)
{
    return mpm == 0 ? "ServerLimit 288\nStartServers 288\n"
                      "MaxRequestWorkers 288\nMinSpareServers 1\n"
                      "MaxSpareServers 288\n"
                    : "StartServers 6\nMaxRequestWorkers 384\n"
                      "MinSpareThreads 64\nMaxSpareThreads 384\n";
}

START_TEST(module_load)
{
    tm_env_t e;
    tm_start(&e, _i, "Workers 8\nMaxQueue 4096\n", TM_TCP, "links=2",
             load_mpm_conf(_i), LOAD_LINKS);
    int port = tm_backend_port(&e);
    ck_assert_int_eq(spt_tcp_established_to(port), LOAD_LINKS);

    double t0 = spt_ms();
    tm_load_t *l = tm_load_start(&e.h, LOAD_CLIENTS);
    while (tm_load_started(l) < LOAD_CLIENTS && spt_ms() - t0 < 60000)
        usleep(10000);
    int started = tm_load_started(l);
    double t_all = spt_ms() - t0;

    /* Sample while every client is busy. */
    int samples[40], nsamples = 0, bad = 0;
    long max_inflight = 0;
    for (int i = 0; i < 40; i++) {
        samples[nsamples] = spt_tcp_established_to(port);
        if (samples[nsamples] != LOAD_LINKS)
            bad++;
        nsamples++;
        if (i % 4 == 0) {
            spt_status_t st;
            if (spt_httpd_status(&e.h, &st) == 0 && st.inflight > max_inflight)
                max_inflight = st.inflight;
        }
        usleep(50000);
    }
    long ok_during = tm_load_ok(l);
    tm_load_stop(l);
    double secs = (spt_ms() - t0) / 1000.0;

    char list[400];
    size_t off = 0;
    for (int i = 0; i < nsamples && off < sizeof(list) - 8; i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d",
                                i ? "," : "", samples[i]);
    fprintf(stderr,
            "figure: %s: %d clients, %ld requests in %.1f s (%.0f/s), all "
            "busy after %.0f ms, up to %ld in flight; established "
            "connections to the backend port in %d samples: %s\n",
            e.mpm, LOAD_CLIENTS, tm_load_ok(l) + tm_load_failed(l), secs,
            (double)(tm_load_ok(l) + tm_load_failed(l)) / secs, t_all,
            max_inflight, nsamples, list);
    ck_assert_msg(started == LOAD_CLIENTS, "only %d of %d clients got going",
                  started, LOAD_CLIENTS);
    ck_assert_msg(tm_load_failed(l) == 0, "%ld of %ld answers wrong; first: %s",
                  tm_load_failed(l), tm_load_ok(l) + tm_load_failed(l),
                  tm_load_first_error(l));
    ck_assert_msg(bad == 0,
                  "%d of %d samples had another count of connections to the "
                  "backend than links=%d: %s",
                  bad, nsamples, LOAD_LINKS, list);
    ck_assert_msg(ok_during > LOAD_CLIENTS, "only %ld requests during the run",
                  ok_during);
    tm_load_free(l);

    spt_status_t st;
    ck_assert_msg(spt_httpd_wait_idle(&e.h, &st, 5000) == 0,
                  "slots still taken: inflight %ld, busy %ld",
                  st.inflight, st.by_state_busy);
    ck_assert_int_eq(spt_tcp_established_to(port), LOAD_LINKS);
    tm_finish(&e, NULL, NULL);
}
END_TEST

/* Lines a killed proxy child leaves behind in httpd's log: the restart
 * itself (SPM0003) and the requests in flight at the kill, answered 502
 * by the replacement (SPM0214) or cut after their head (SPM0216). */
static const char *const kill_httpd_allowed[] = {"SPM0003", "SPM0214",
                                                 "SPM0216", NULL};

/* Loop index as in module_basic: unix: then shm: links. */
START_TEST(module_proxy_kill)
{
    tm_env_t e;
    int transport = _i < TM_NMPMS ? TM_UNIX : TM_SHM;
    /* prefork: a worker per client from the start. */
    tm_start(&e, _i % TM_NMPMS, "Workers 4\n", transport, "links=2",
             _i % TM_NMPMS == 0 ? "StartServers 48\nMaxSpareServers 64\n"
                                : NULL,
             2);
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
    pid_t old = (pid_t)st.proxy_pid;
    ck_assert_int_gt(old, 0);
    ck_assert(st.proxy_alive);

    tm_load_t *l = tm_load_start(&e.h, 32);
    double t0 = spt_ms();
    while (tm_load_started(l) < 32 && spt_ms() - t0 < 20000)
        usleep(10000);
    /* A proxy child that dies within 2 s of its start is restarted after
     * a delay (against respawn loops): kill an established one. */
    while (spt_httpd_status(&e.h, &st) == 0 && st.proxy_uptime_s < 3 &&
           spt_ms() - t0 < 20000)
        usleep(50000);
    ck_assert_int_ge(st.proxy_uptime_s, 3);
    ck_assert_int_eq(st.proxy_pid, old);
    long before = tm_load_ok(l);
    ck_assert_int_gt(before, 0);

    /* Requests started from here on must all succeed: those that arrive
     * before the replacement is there wait for it.  Only the ones in flight
     * at the kill may fail (502). */
    tm_load_mark(l);
    double t_kill = spt_ms();
    ck_assert_int_eq(kill(old, SIGKILL), 0);
    pid_t fresh = 0;
    while (spt_ms() - t_kill < 10000) {
        if (spt_httpd_status(&e.h, &st) == 0 && st.proxy_pid > 0 &&
            st.proxy_pid != old && st.proxy_alive) {
            fresh = (pid_t)st.proxy_pid;
            break;
        }
        usleep(20000);
    }
    double t_new = spt_ms() - t_kill;
    ck_assert_msg(fresh > 0, "no new proxy child within 10 s of kill -9");
    /* The load goes on with the new proxy child. */
    usleep(1500000);
    tm_load_stop(l);

    long in_flight_failed = tm_load_failed(l) - tm_load_failed_after_mark(l);
    fprintf(stderr,
            "figure: %s, %s link: proxy child %d killed under load (32 "
            "clients): "
            "%d forked %.0f ms later, first request started after the kill "
            "answered %.0f ms after it; %ld in flight at the kill failed, "
            "%ld started after it ok, %ld failed\n",
            e.mpm, tm_transports[transport], (int)old, (int)fresh, t_new,
            tm_load_first_ok_after_mark(l), in_flight_failed,
            tm_load_ok_after_mark(l), tm_load_failed_after_mark(l));
    if (in_flight_failed > 0)
        fprintf(stderr, "figure: %s: first failure: %s\n", e.mpm,
                tm_load_first_error(l));
    ck_assert_msg(tm_load_failed_after_mark(l) == 0,
                  "%ld requests started after the kill failed: %s",
                  tm_load_failed_after_mark(l),
                  tm_load_first_error_after_mark(l));
    ck_assert_int_gt(tm_load_ok_after_mark(l), 100);
    /* At most the requests that were in flight (one per client). */
    ck_assert_int_le(in_flight_failed, 32);
    tm_load_free(l);

    ck_assert_msg(spt_httpd_wait_idle(&e.h, &st, 5000) == 0,
                  "slots still taken 5 s after the load: inflight %ld, "
                  "admitted %ld, busy %ld, free %ld of %ld",
                  st.inflight, st.admitted, st.by_state_busy,
                  st.by_state_free, st.slots_total);
    ck_assert_int_eq(st.restarts, 1);
    ck_assert_int_eq(st.proxy_pid, fresh);
    ck_assert(!spt_pid_alive(old));
    ck_assert_int_eq(spt_httpd_log_count(&e.h, "SPM0003"), 1);
    ck_assert_int_eq(spt_httpd_log_count(&e.h, "restarting it in 0 ms"), 1);
    tm_finish(&e, kill_httpd_allowed, NULL);
}
END_TEST

void tm_add_load_cases(Suite *s)
{
    TCase *tc = tcase_create("load");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_load, 0, TM_NMPMS);
    suite_add_tcase(s, tc);

    tc = tcase_create("proxykill");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_proxy_kill, 0, 2 * TM_NMPMS);
    suite_add_tcase(s, tc);
}
