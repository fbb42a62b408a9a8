/*
 * test_module_sched.c - `SlotProxyScheduling batch|normal` (see
 * test_module.c): the proxy child's policy, read from outside with
 * sched_getscheduler() on the pid the status handler names.
 *
 *   sched   default: the proxy child runs SCHED_BATCH, httpd itself keeps
 *           the policy it was started with; a graceful restart with
 *           `SlotProxyScheduling normal` added: the new proxy child runs
 *           SCHED_OTHER.  Started with `normal` from a SCHED_BATCH
 *           process: the proxy child runs SCHED_OTHER (set, not
 *           inherited) while httpd stays SCHED_BATCH.  Under prefork and
 *           event.  A value other than batch or normal, or the directive
 *           in a <VirtualHost>, is refused by `apache2 -t` and at start.
 */
#include "test_module.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every thread of pid runs policy. */
static void expect_policy(pid_t pid, int policy, const char *who,
                          const char *mpm)
{
    char what[96];
    snprintf(what, sizeof(what), "%s: %s", mpm, who);
    spt_expect_policy(pid, policy, what);
}

/* The live proxy child's pid (status handler), and /hello through it. */
static pid_t proxy_pid(tm_env_t *e)
{
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e->h, &st), 0);
    ck_assert_msg(st.proxy_pid > 0 && st.proxy_alive,
                  "%s: no live proxy child (pid %ld)", e->mpm, st.proxy_pid);
    ck_assert(spt_pid_alive((pid_t)st.proxy_pid));
    return (pid_t)st.proxy_pid;
}

static void hello(tm_env_t *e)
{
    static const char want[] = "Hello, world\n";
    spt_client_t *c = spt_client_new(&e->h);
    spt_resp_t *r = malloc(sizeof(*r));
    spt_req_t q = {.method = "GET", .path = "/hello", .body_len = -1,
                   .check = SPT_CHECK_EXACT, .expect = want, .expect_n = 13,
                   .timeout_ms = 10000};
    spt_client_do(c, &q, r);
    ck_assert_msg(r->curl_code == 0 && r->status == 200 && spt_resp_ok(&q, r),
                  "%s: GET /hello: status %ld, curl %d (%s)", e->mpm,
                  r->status, r->curl_code, r->err);
    free(r);
    spt_client_free(c);
}

/* httpd's own: an event child stopping gracefully may log that it could
 * not put a keep-alive connection (here: a status poll in flight at the
 * restart) back into its pollset, already gone (mpm_event, AH03093). */
static const char *const graceful_allowed[] = {"AH03093", NULL};

START_TEST(module_sched_default)
{
    tm_env_t e;
    spt_launch_under(SCHED_OTHER);
    tm_start(&e, _i, NULL, 0, "", NULL, 2);
    pid_t proxy = proxy_pid(&e);
    expect_policy(proxy, SCHED_BATCH, "proxy child", e.mpm);
    expect_policy(e.h.pid, SCHED_OTHER, "httpd parent", e.mpm);
    hello(&e);
    ck_assert_int_eq(proxy_pid(&e), proxy);

    /* A graceful restart with `normal`: the new generation's proxy child
     * runs SCHED_OTHER. */
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
    long gen = st.generation;
    FILE *f = fopen(e.h.conf, "a");
    ck_assert_ptr_nonnull(f);
    fputs("SlotProxyScheduling normal\n", f);
    fclose(f);
    double t0 = spt_ms();
    spt_httpd_graceful(&e.h);
    pid_t fresh = 0;
    while (spt_ms() - t0 < 10000) {
        if (spt_httpd_status(&e.h, &st) == 0 && st.generation != gen &&
            st.proxy_pid > 0 && st.proxy_pid != proxy && st.proxy_alive) {
            fresh = (pid_t)st.proxy_pid;
            break;
        }
        usleep(20000);
    }
    ck_assert_msg(fresh > 0, "%s: no new proxy child 10 s after the "
                             "graceful restart",
                  e.mpm);
    double ms = spt_ms() - t0;
    expect_policy(fresh, SCHED_OTHER, "new proxy child", e.mpm);
    expect_policy(e.h.pid, SCHED_OTHER, "httpd parent", e.mpm);
    hello(&e);
    fprintf(stderr, "figure: %s: sched: proxy child %d SCHED_BATCH; after "
                    "a graceful restart with SlotProxyScheduling normal, "
                    "proxy child %d SCHED_OTHER (%.0f ms)\n",
            e.mpm, (int)proxy, (int)fresh, ms);
    tm_finish(&e, graceful_allowed, NULL);
}
END_TEST

START_TEST(module_sched_normal)
{
    tm_env_t e;
    spt_launch_under(SCHED_BATCH);
    tm_start(&e, _i, NULL, 0, "", "SlotProxyScheduling normal\n", 2);
    spt_launch_under(SCHED_OTHER);
    pid_t proxy = proxy_pid(&e);
    expect_policy(proxy, SCHED_OTHER, "proxy child", e.mpm);
    /* Only the proxy child is set: httpd keeps what it inherited. */
    expect_policy(e.h.pid, SCHED_BATCH, "httpd parent", e.mpm);
    hello(&e);
    ck_assert_int_eq(proxy_pid(&e), proxy);
    expect_policy(proxy, SCHED_OTHER, "proxy child", e.mpm);
    tm_finish(&e, NULL, NULL);
}
END_TEST

/* Refused by `apache2 -t` with the message, and at start; `batch` and
 * `normal` pass -t (so the refusals are the directive's). */
START_TEST(module_sched_bad)
{
    const char *mpm = tm_mpms[0];
    char *out = malloc(16384);
    static const char *const t[] = {"-t", NULL};
    static const char *const fg[] = {"-DFOREGROUND", NULL};
    char site[512];

    static const char *const good[] = {"batch", "normal"};
    for (int i = 0; i < 2; i++) {
        snprintf(site, sizeof(site), "SlotProxyScheduling %s\n", good[i]);
        int rc = spt_httpd_run_conf(mpm, spt_httpd_site("unix:/tmp/none.sock",
                                                        "", site),
                                    t, 20000, out, 16384);
        ck_assert_msg(rc == 0 && strstr(out, "Syntax OK") != NULL,
                      "SlotProxyScheduling %s: apache2 -t exit %d: %s",
                      good[i], rc, out);
    }

    double t0 = spt_ms();
    const char *bad = spt_httpd_site("unix:/tmp/none.sock", "",
                                     "SlotProxyScheduling fifo\n");
    static const char msg[] = "SlotProxyScheduling: 'fifo' is not one of "
                              "batch, normal";
    int rc = spt_httpd_run_conf(mpm, bad, t, 20000, out, 16384);
    ck_assert_msg(rc != 0 && rc != -1, "fifo: apache2 -t exit %d: %s", rc,
                  out);
    ck_assert_msg(strstr(out, msg) != NULL, "fifo: apache2 -t said: %s", out);
    ck_assert_msg(strstr(out, "Syntax OK") == NULL, "%s", out);
    fprintf(stderr, "figure: sched: apache2 -t on SlotProxyScheduling fifo: "
                    "exit %d in %.0f ms: %s",
            rc, spt_ms() - t0, out);
    /* Started for real: it exits at once, saying why. */
    rc = spt_httpd_run_conf(mpm, bad, fg, 10000, out, 16384);
    ck_assert_msg(rc != 0 && rc != -1, "fifo: apache2 -DFOREGROUND exit %d "
                                       "(-1: still running after 10 s): %s",
                  rc, out);
    ck_assert_msg(strstr(out, msg) != NULL,
                  "fifo: apache2 -DFOREGROUND said: %s", out);

    /* Server config only. */
    char vhost[512];
    snprintf(vhost, sizeof(vhost),
             "<VirtualHost 127.0.0.1:%d>\n"
             "    ServerName other.invalid\n"
             "    SlotProxyScheduling normal\n"
             "</VirtualHost>\n",
             spt_free_port());
    rc = spt_httpd_run_conf(mpm, spt_httpd_site("unix:/tmp/none.sock", "",
                                                vhost),
                            t, 20000, out, 16384);
    ck_assert_msg(rc != 0 && rc != -1, "<VirtualHost>: apache2 -t exit %d: "
                                       "%s",
                  rc, out);
    ck_assert_msg(strstr(out, "SlotProxyScheduling") != NULL &&
                      strstr(out, "VirtualHost") != NULL,
                  "<VirtualHost>: apache2 -t said: %s", out);
    free(out);
}
END_TEST

void tm_add_sched_cases(Suite *s)
{
    TCase *tc = tcase_create("sched");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, module_sched_default, 0, TM_NMPMS);
    tcase_add_loop_test(tc, module_sched_normal, 0, TM_NMPMS);
    tcase_add_test(tc, module_sched_bad);
    suite_add_tcase(s, tc);
}
