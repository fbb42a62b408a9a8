/*
 * test_backend_sched.c - `Scheduling batch|normal` on the real processes:
 * sched_getscheduler() of every thread of the dispatcher and of each
 * worker (its children), read from outside.
 *
 *   sched   default: dispatcher and workers SCHED_BATCH; `Scheduling
 *           normal`: SCHED_OTHER; a reload to normal and back: the
 *           dispatcher and the new generation of workers follow; a CGI
 *           script of a batch backend runs SCHED_OTHER (what it reads of
 *           itself in /proc/$$/stat and from chrt) while its worker stays
 *           SCHED_BATCH
 *
 * So that each policy is one the backend set and not one it inherited,
 * the backend is launched from a test process that runs the other policy
 * (spt_launch_under()): batch is checked on a daemon started from SCHED_OTHER,
 * normal on one started from SCHED_BATCH.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_backend.h"

#define SCHED_WORKERS 4 /* spt_backend_start's Workers */

static void start_under(spt_backend_t *b, int policy, const char *extra)
{
    spt_launch_under(policy);
    spt_backend_start(b, extra);
    spt_launch_under(SCHED_OTHER);
}

/* The dispatcher and its n workers all run policy; the workers' pids
 * into kids (n of them). */
static void expect_daemon(const spt_backend_t *b, int n, int policy,
                          pid_t *kids)
{
    ck_assert_int_eq(spt_wait_children(b->pid, n, 5000), n);
    ck_assert_int_eq(spt_children(b->pid, kids, n), n);
    spt_expect_policy(b->pid, policy, "dispatcher");
    for (int i = 0; i < n; i++)
        spt_expect_policy(kids[i], policy, "worker");
}

START_TEST(backend_sched_default)
{
    spt_backend_t b;
    start_under(&b, SCHED_OTHER, NULL);
    pid_t kids[SCHED_WORKERS];
    expect_daemon(&b, SCHED_WORKERS, SCHED_BATCH, kids);
    /* They serve as such. */
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    expect_daemon(&b, SCHED_WORKERS, SCHED_BATCH, kids);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_sched_normal)
{
    spt_backend_t b;
    start_under(&b, SCHED_BATCH, "Scheduling normal\n");
    pid_t kids[SCHED_WORKERS];
    expect_daemon(&b, SCHED_WORKERS, SCHED_OTHER, kids);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* Reload (SIGHUP) to normal, then back to batch: each time the dispatcher
 * switches and a whole new generation of workers runs the new policy. */
START_TEST(backend_sched_reload)
{
    spt_backend_t b;
    start_under(&b, SCHED_OTHER, NULL);
    pid_t old[SCHED_WORKERS], now[SCHED_WORKERS];
    expect_daemon(&b, SCHED_WORKERS, SCHED_BATCH, old);
    char *orig = spt_read_file(b.conf);
    ck_assert_ptr_nonnull(orig);

    static const char *const step[] = {"Scheduling normal\n",
                                       "Scheduling batch\n"};
    static const int want[] = {SCHED_OTHER, SCHED_BATCH};
    for (int k = 0; k < 2; k++) {
        spt_write_file(b.conf, orig, 0644);
        spt_backend_append_conf(&b, step[k]);
        double t0 = spt_ms();
        spt_backend_signal(&b, SIGHUP);
        ck_assert_int_eq(spt_wait_log(&b, "SPB0606", k + 1, 3000), k + 1);
        ck_assert_msg(spt_new_generation(b.pid, SCHED_WORKERS, old,
                                     SCHED_WORKERS, 5000),
                      "reload %d: no whole new generation of %d workers",
                      k + 1, SCHED_WORKERS);
        double ms = spt_ms() - t0;
        expect_daemon(&b, SCHED_WORKERS, want[k], now);
        fprintf(stderr, "figure: sched: reload to %s: new generation of %d "
                        "workers %.0f ms after the HUP\n",
                spt_policy_name(want[k]), SCHED_WORKERS, ms);
        spc_t c;
        tb_connect(&c, b.unix_addr, NULL, 4);
        tb_hello(&c, 0, 3000);
        spc_close(&c);
        memcpy(old, now, sizeof(old));
    }
    free(orig);
    spt_backend_finish(&b, NULL);
}
END_TEST

/* A CGI script of a batch backend reads its own policy: field 41 of
 * /proc/$$/stat, and chrt's words. */
static const char sched_script[] =
    "#!/bin/sh\n"
    "printf 'Content-Type: text/plain\\n\\n'\n"
    "printf 'ppid %s\\n' \"$PPID\"\n"
    "printf 'stat '; cat /proc/$$/stat\n"
    "if command -v chrt >/dev/null 2>&1; then\n"
    "    printf 'chrt '; chrt -p $$ 2>&1\n"
    "fi\n";

/* The policy field of a /proc/PID/stat line (41st; the 3rd follows the
 * last ')'), or -1. */
static int stat_policy(const char *stat)
{
    const char *p = strrchr(stat, ')');
    if (p == NULL)
        return -1;
    p++;
    for (int field = 3; field <= 41; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return -1;
        if (field == 41)
            return atoi(p);
        p += strcspn(p, " \n");
    }
    return -1;
}

START_TEST(backend_sched_cgi)
{
    char dir[] = "/tmp/spt-cgi-XXXXXX", script[64], extra[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    chmod(dir, 0755);
    snprintf(script, sizeof(script), "%s/sched.sh", dir);
    spt_write_file(script, sched_script, 0755);
    chmod(script, 0755);
    snprintf(extra, sizeof(extra), "Handler /sched/ cgi:%s\n", dir);

    spt_backend_t b;
    start_under(&b, SCHED_OTHER, extra);
    pid_t kids[SCHED_WORKERS];
    expect_daemon(&b, SCHED_WORKERS, SCHED_BATCH, kids);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    for (uint32_t id = 0; id < 3; id++) {
        spc_stream_t *s = &c.streams[id];
        s->keep_body = 1;
        tb_get(&c, id, "/sched/sched.sh");
        tb_wait(&c, id, 5000);
        tb_expect_ok(&c, id, 200);
        char body[4096];
        size_t n = s->body_len < sizeof(body) - 1 ? s->body_len
                                                  : sizeof(body) - 1;
        memcpy(body, s->body, n);
        body[n] = '\0';
        /* Run by a worker of this backend. */
        const char *pp = strstr(body, "ppid ");
        ck_assert_msg(pp != NULL, "no ppid in: %s", body);
        pid_t ppid = (pid_t)atoi(pp + 5);
        int mine = 0;
        for (int i = 0; i < SCHED_WORKERS; i++)
            mine += ppid == kids[i];
        ck_assert_msg(mine == 1, "script's parent %d is not a worker: %s",
                      (int)ppid, body);
        const char *st = strstr(body, "stat ");
        ck_assert_msg(st != NULL, "no stat in: %s", body);
        int p = stat_policy(st);
        ck_assert_msg(p == SCHED_OTHER, "the CGI script ran %s (%d), not "
                                        "SCHED_OTHER: %s",
                      spt_policy_name(p), p, body);
        const char *ch = strstr(body, "chrt ");
        if (id == 0)
            fprintf(stderr, "figure: sched: CGI script of a batch backend: "
                            "policy %d in /proc/$$/stat; %s\n",
                    p, ch ? ch : "(no chrt)");
        if (ch != NULL) {
            ck_assert_msg(strstr(ch, "scheduling policy: SCHED_OTHER") !=
                              NULL,
                          "chrt said: %s", ch);
            ck_assert_msg(strstr(ch, "SCHED_BATCH") == NULL,
                          "chrt said: %s", ch);
        }
    }
    spc_close(&c);
    /* The reset was the script's own: the workers are still batch. */
    expect_daemon(&b, SCHED_WORKERS, SCHED_BATCH, kids);
    spt_backend_finish(&b, NULL);
    unlink(script);
    rmdir(dir);
}
END_TEST

void tb_add_sched_cases(Suite *s)
{
    TCase *tc = tcase_create("sched");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backend_sched_default);
    tcase_add_test(tc, backend_sched_normal);
    tcase_add_test(tc, backend_sched_reload);
    tcase_add_test(tc, backend_sched_cgi);
    suite_add_tcase(s, tc);
}
