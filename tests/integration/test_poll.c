/*
 * test_poll.c - PollTime (backend) and SlotProxyPollTime (module) on the
 * real processes: what they cost in CPU time, read from outside in
 * /proc/PID/task/TID/schedstat (its first field: nanoseconds on a CPU) of
 * every thread of the processes concerned.
 *
 * The "poll" suite, one TCase per part:
 *
 *   poll_backend  PollTime 0: right after a request, and after a
 *            sequence of requests, the dispatcher and the 4 workers stay
 *            asleep (500 ms cost them < 5 ms of CPU).  PollTime 10000: 10
 *            requests 20 ms apart cost the worker >= 10 ms more CPU than
 *            the same under PollTime 0 (it polls for its next request
 *            after each), and 100 ms after the last answer the polls have
 *            ended by themselves: 1.2 s (longer than a worker's 1 s wait
 *            slice) cost the whole backend < 5 ms.  No PollTime line: the
 *            default 200 us polls (40 requests 10 ms apart: a median of
 *            >= 1 ms more than PollTime 0).
 *   poll_module  the same with httpd (prefork) in front of a backend that
 *            never polls: SlotProxyPollTime 0 leaves the proxy child and
 *            httpd's processes asleep after a request; under
 *            SlotProxyPollTime 10000, 20 requests answered in 5 ms
 *            (builtin:echo sleep=5), 20 ms apart, cost them >= 15 ms more
 *            CPU (the handler and the proxy child poll for the answer),
 *            and the polls end by themselves.
 *   poll_gate  the poll gate (sp_spin_gate()): with ncpu + 1 requests
 *            held in progress (asleep in builtin:echo), a backend worker
 *            does not poll for its next request (PollTime 10000: 10
 *            requests cost the ncpu + 2 workers < 5 ms), nor an httpd
 *            handler for its answer (SlotProxyPollTime 10000: 20 requests
 *            of 5 ms cost the handlers < 5 ms more than under 0; the
 *            proxy child, not gated, is not counted); once the held
 *            requests have ended, the same sequences show the polls again
 *            (>= 10 and >= 15 ms more).
 *   poll_config  bad SlotProxyPollTime values, and the directive where
 *            only the main server may have it, are refused by `apache2 -t`
 *            (and at start) naming SlotProxyPollTime; 0, 200 and 10000
 *            pass.
 *
 * Polling gives way to any other work on its CPU (sp_yield_idle()): the
 * "it polls" tests give each poller a CPU of its own (see "placing the
 * processes" below), and as other work on this machine (a concurrent
 * build) may still cut polls short, they compare up to SEQ_TRIES times
 * and pass on the first pair of sequences that shows the polls (or, for
 * the small default, take a median).  The "it sleeps"
 * checks need no retry: other work only makes polls shorter.  Idle, a
 * backend or an httpd costs ~1-3 ms of CPU a second (peer checks every
 * 100 ms, the proxy child's 50 ms tick).
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sp_mark.h"
#include "sp_proc.h"
#include "test_backend.h"
#include "test_module.h"

#define MS_NS 1000000LL

/* ---- CPU time of process trees ------------------------------------------ */

#define SNAP_MAX 2048

typedef struct cpu_snap {
    int n;
    pid_t tid[SNAP_MAX];
    int64_t ns[SNAP_MAX];
} cpu_snap_t;

/* The first field of /proc/PID/task/TID/schedstat, or -1. */
static int64_t thread_ns(pid_t pid, pid_t tid)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid,
             (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long ns = -1;
    if (fscanf(f, "%lld", &ns) != 1)
        ns = -1;
    fclose(f);
    return ns;
}

/* Every thread of pid, and with tree of all its descendants but the
 * tree of skip. */
static void snap_add(cpu_snap_t *s, pid_t pid, int tree, pid_t skip)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL && s->n < SNAP_MAX) {
            pid_t tid = (pid_t)atoi(e->d_name);
            if (tid <= 0)
                continue;
            int64_t ns = thread_ns(pid, tid);
            if (ns < 0)
                continue;
            s->tid[s->n] = tid;
            s->ns[s->n] = ns;
            s->n++;
        }
        closedir(d);
    }
    if (!tree)
        return;
    pid_t kids[512];
    int n = spt_children(pid, kids, 512);
    for (int i = 0; i < n; i++)
        if (kids[i] != skip)
            snap_add(s, kids[i], 1, skip);
}

/* CPU time the threads of b used since a: each thread's growth, the whole
 * time of a thread that is new in b (a thread gone by b is not counted:
 * a process that exits meanwhile is none of ours here). */
static int64_t snap_delta(const cpu_snap_t *a, const cpu_snap_t *b)
{
    int64_t sum = 0;
    for (int i = 0; i < b->n; i++) {
        int64_t before = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i]) {
                before = a->ns[j];
                break;
            }
        if (b->ns[i] > before)
            sum += b->ns[i] - before;
    }
    return sum;
}

/* What we watch: a backend (dispatcher alone, its workers' trees) or an
 * httpd (the parent and its children, apart from the proxy child). */
typedef struct watch {
    pid_t backend; /* 0 = none */
    pid_t httpd;   /* 0 = none */
    pid_t proxy;   /* httpd's proxy child */
} watch_t;

typedef struct cpu_use {
    int64_t dispatcher, workers; /* backend */
    int64_t httpd, proxy;        /* httpd's tree but the proxy child; it */
    int64_t total;
} cpu_use_t;

typedef struct cpu_mark {
    cpu_snap_t disp, work, httpd, proxy;
} cpu_mark_t;

static void mark_take(const watch_t *w, cpu_mark_t *m)
{
    m->disp.n = m->work.n = m->httpd.n = m->proxy.n = 0;
    if (w->backend > 0) {
        snap_add(&m->disp, w->backend, 0, 0);
        pid_t kids[512];
        int n = spt_children(w->backend, kids, 512);
        for (int i = 0; i < n; i++)
            snap_add(&m->work, kids[i], 1, 0);
    }
    if (w->httpd > 0)
        snap_add(&m->httpd, w->httpd, 1, w->proxy);
    if (w->proxy > 0)
        snap_add(&m->proxy, w->proxy, 1, 0);
}

static cpu_use_t mark_since(const watch_t *w, const cpu_mark_t *a)
{
    cpu_mark_t *b = malloc(sizeof(*b));
    ck_assert_ptr_nonnull(b);
    mark_take(w, b);
    cpu_use_t u = {
        snap_delta(&a->disp, &b->disp), snap_delta(&a->work, &b->work),
        snap_delta(&a->httpd, &b->httpd), snap_delta(&a->proxy, &b->proxy), 0};
    u.total = u.dispatcher + u.workers + u.httpd + u.proxy;
    free(b);
    return u;
}

/* CPU time used during the next ms milliseconds. */
static cpu_use_t cpu_over(const watch_t *w, int ms)
{
    cpu_mark_t *a = malloc(sizeof(*a));
    ck_assert_ptr_nonnull(a);
    mark_take(w, a);
    usleep((useconds_t)ms * 1000);
    cpu_use_t u = mark_since(w, a);
    free(a);
    return u;
}

static double ms_of(int64_t ns)
{
    return (double)ns / 1e6;
}

/* Asleep: the whole watch used less than this in a quiet window. */
#define ASLEEP_MAX_NS (5 * MS_NS)

static void expect_asleep(const cpu_use_t *u, int window_ms, const char *what)
{
    ck_assert_msg(u->total < ASLEEP_MAX_NS,
                  "%s: %.2f ms of CPU in %d ms (dispatcher %.2f, workers "
                  "%.2f, httpd %.2f, proxy child %.2f): something still "
                  "polls",
                  what, ms_of(u->total), window_ms, ms_of(u->dispatcher),
                  ms_of(u->workers), ms_of(u->httpd), ms_of(u->proxy));
}

/* A sequence: SEQ_N requests, SEQ_GAP_MS apart (each worker's poll after
 * a request, up to 10 ms, fits in a gap). */
#define SEQ_N 10
#define SEQ_GAP_MS 60
#define SEQ_TRIES 8    /* "it polls": until one pair shows it */
#define MEDIAN_PAIRS 5 /* "it polls a little": the median of these */

/* ---- placing the processes ---------------------------------------------
 *
 * A poll gives way as soon as one of its yields takes 3 us or more
 * (sp_yield_idle()): when anything else runs on its CPU, often the very
 * process the poller has just woken (the dispatcher a worker notified,
 * the backend the proxy child wrote to) placed on the poller's CPU; and,
 * measured on a two-CPU VM, at the first yield after a sleep one time in
 * three even on an idle CPU.  So that the polls show at all, the "it polls" tests give the pollers a CPU
 * of their own: they pin them there, and what they talk to (and this
 * test process) on the other one; the "it sleeps" tests place them the
 * same way, where a poll would show.  And they send their requests 10-20
 * ms apart: after 60 ms the polls that follow showed 2-5 times less
 * (more of them ended at their first yield, the CPU having been idle). */

static cpu_set_t saved_mask;
static int have_saved_mask;

/* Two CPUs we may run on (-1 where there are fewer). */
static void pick_cpus(int cpu[2])
{
    cpu_set_t set;
    cpu[0] = cpu[1] = -1;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return;
    if (!have_saved_mask) {
        saved_mask = set;
        have_saved_mask = 1;
    }
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[k++] = c;
}

/* Every thread of pid (and with tree, of its descendants) onto cpu. */
static void pin_tree(pid_t pid, int cpu, int tree)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: gone", path);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0)
            ck_assert_msg(sched_setaffinity(tid, sizeof(set), &set) == 0 ||
                              errno == ESRCH,
                          "sched_setaffinity(%d, CPU %d): %s", (int)tid, cpu,
                          strerror(errno));
    }
    closedir(d);
    if (!tree)
        return;
    pid_t kids[512];
    int n = spt_children(pid, kids, 512);
    for (int i = 0; i < n; i++)
        pin_tree(kids[i], cpu, 1);
}

/* How often, in PROBE_N tries, the first sched_yield() after a 20 ms
 * sleep on cpu took SP_YIELD_BUSY_NS or more: how often a poll that
 * starts right after a wake-up ends at its first yield there (measured by
 * a child pinned to cpu; about half the time on an idle two-CPU VM, in
 * spells all the time).  For the failure messages; the 0.4 s it takes
 * also spaces the tries. */
#define PROBE_N 20

static int probe_slow_first_yields(int cpu)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
        int slow = 0;
        for (int i = 0; i < PROBE_N; i++) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            int64_t t0 = sp_now_ns();
            sched_yield();
            slow += sp_now_ns() - t0 >= SP_YIELD_BUSY_NS;
        }
        _exit(write(fd[1], &slow, sizeof(slow)) == sizeof(slow) ? 0 : 1);
    }
    close(fd[1]);
    int slow = -1;
    if (read(fd[0], &slow, sizeof(slow)) != sizeof(slow))
        slow = -1;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    ck_assert_int_ge(slow, 0);
    return slow;
}

/* This process back on the CPUs it had (for CK_FORK=no). */
static void unpin_self(void)
{
    if (have_saved_mask)
        sched_setaffinity(0, sizeof(saved_mask), &saved_mask);
}

/* ---- backend ------------------------------------------------------------ */

static void backend_start_poll(spt_backend_t *b, int poll_us, int workers)
{
    char extra[96];
    if (poll_us >= 0)
        snprintf(extra, sizeof(extra), "PollTime %d\nWorkers %d\n", poll_us,
                 workers);
    else
        snprintf(extra, sizeof(extra), "Workers %d\n", workers);
    spt_backend_start(b, extra);
    ck_assert_int_eq(spt_wait_children(b->pid, workers, 5000), workers);
}

/* The workers on cpu[1], the dispatcher and this process on cpu[0]. */
static void backend_pin(const spt_backend_t *b, const int cpu[2])
{
    pin_tree(b->pid, cpu[0], 0);
    pin_tree(getpid(), cpu[0], 0);
    pid_t kids[64];
    int n = spt_children(b->pid, kids, 64);
    for (int i = 0; i < n; i++)
        pin_tree(kids[i], cpu[1], 1);
}

/* n requests (one call of req each), gap_ms apart; the CPU they cost. */
static cpu_use_t cpu_sequence(const watch_t *w, void (*req)(void *),
                              void *arg, int n, int gap_ms)
{
    cpu_mark_t *a = malloc(sizeof(*a));
    ck_assert_ptr_nonnull(a);
    mark_take(w, a);
    for (int i = 0; i < n; i++) {
        req(arg);
        usleep((useconds_t)gap_ms * 1000);
    }
    cpu_use_t u = mark_since(w, a);
    free(a);
    return u;
}

static void backend_hello(void *c)
{
    tb_hello(c, 0, 5000);
}

/* n GETs of /hello on c, gap_ms apart; the CPU they cost. */
static cpu_use_t backend_sequence(const watch_t *w, spc_t *c, int n, int gap_ms)
{
    return cpu_sequence(w, backend_hello, c, n, gap_ms);
}

/* PollTime 0: right after an answer, and after a sequence, nothing of the
 * backend polls.  4 workers, on a CPU apart from the dispatcher's (where
 * a poll would show). */
START_TEST(poll_backend_off)
{
    spt_backend_t b;
    int cpu[2];
    pick_cpus(cpu);
    backend_start_poll(&b, 0, 4);
    if (cpu[1] >= 0)
        backend_pin(&b, cpu);
    watch_t w = {.backend = b.pid};
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 5000);
    cpu_use_t after = cpu_over(&w, 500);
    expect_asleep(&after, 500, "PollTime 0, right after a request");
    cpu_use_t seq = backend_sequence(&w, &c, SEQ_N, SEQ_GAP_MS);
    cpu_use_t end = cpu_over(&w, 500);
    expect_asleep(&end, 500, "PollTime 0, right after a sequence");
    fprintf(stderr,
            "figure: poll: backend PollTime 0: 500 ms after a request "
            "%.3f ms CPU (dispatcher %.3f, workers %.3f); a sequence of %d "
            "requests %d ms apart: workers %.3f ms, dispatcher %.3f ms; "
            "500 ms after it %.3f ms\n",
            ms_of(after.total), ms_of(after.dispatcher), ms_of(after.workers),
            SEQ_N, SEQ_GAP_MS, ms_of(seq.workers), ms_of(seq.dispatcher),
            ms_of(end.total));
    spc_close(&c);
    spt_backend_finish(&b, NULL);
    unpin_self();
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The same sequence of n requests on a backend of poll_us (-1: no
 * PollTime line) and on one of PollTime 0, each with one worker on a CPU
 * of its own, after a warm-up of n requests each.  With median 0: up to
 * SEQ_TRIES pairs, until the worker of the first costs `more` than the
 * other's once (for a large effect); with median 1: MEDIAN_PAIRS pairs,
 * and the median of the differences must reach `more` (for a small one:
 * a chance difference of one pair neither passes nor fails it).  Leaves
 * the first backend running (its link in c1) for more checks. */
static void backend_compare(int poll_us, int n, int gap_ms, int64_t more,
                            int median, spt_backend_t *b1, spc_t *c1)
{
    int cpu[2];
    pick_cpus(cpu);
    ck_assert_msg(cpu[1] >= 0, "one CPU only: a poller cannot have one of "
                               "its own");
    char label[48];
    if (poll_us < 0)
        snprintf(label, sizeof(label), "no PollTime (the default, 200)");
    else
        snprintf(label, sizeof(label), "PollTime %d", poll_us);
    spt_backend_t b0;
    backend_start_poll(&b0, 0, 1);
    backend_start_poll(b1, poll_us, 1);
    backend_pin(&b0, cpu);
    backend_pin(b1, cpu);
    watch_t w0 = {.backend = b0.pid}, w1 = {.backend = b1->pid};
    spc_t c0;
    tb_connect(&c0, b0.unix_addr, NULL, 4);
    tb_connect(c1, b1->unix_addr, NULL, 4);
    backend_sequence(&w0, &c0, n, gap_ms);
    backend_sequence(&w1, c1, n, gap_ms);
    cpu_use_t off = {0}, on = {0};
    int64_t diff[SEQ_TRIES];
    int shown = 0, tries = 0, slow = -1;
    while (median ? tries < MEDIAN_PAIRS : tries < SEQ_TRIES && !shown) {
        /* In turn first and second: whichever runs second may find the
         * machine in another state (the other's polls just ended). */
        if (tries % 2 == 0) {
            off = backend_sequence(&w0, &c0, n, gap_ms);
            on = backend_sequence(&w1, c1, n, gap_ms);
        } else {
            on = backend_sequence(&w1, c1, n, gap_ms);
            off = backend_sequence(&w0, &c0, n, gap_ms);
        }
        fprintf(stderr,
                "figure: poll: backend, %d requests %d ms apart, the worker "
                "alone on CPU %d: it used %.3f ms CPU under PollTime 0, "
                "%.3f ms under %s (dispatcher %.3f / %.3f ms)\n",
                n, gap_ms, cpu[1], ms_of(off.workers), ms_of(on.workers), label,
                ms_of(off.dispatcher), ms_of(on.dispatcher));
        diff[tries++] = on.workers - off.workers;
        shown = on.workers - off.workers >= more;
        if (!shown) /* also a pause: a bad spell may pass */
            slow = probe_slow_first_yields(cpu[1]);
    }
    if (median) {
        qsort(diff, (size_t)tries, sizeof(diff[0]), cmp_i64);
        int64_t m = diff[tries / 2];
        fprintf(stderr,
                "figure: poll: backend %s: a median of %.3f ms "
                "more than PollTime 0 over %d pairs\n",
                label, ms_of(m), tries);
        ck_assert_msg(m >= more,
                      "%s: %d requests cost the worker a median of %.3f ms "
                      "more CPU than under PollTime 0 over %d pairs (from "
                      "%.3f to %.3f), not %.2f: it does not poll for its "
                      "next request (on CPU %d, %d of %d first yields after "
                      "a sleep gave way)",
                      label, n, ms_of(m), tries, ms_of(diff[0]),
                      ms_of(diff[tries - 1]), ms_of(more), cpu[1], slow,
                      PROBE_N);
    } else {
        ck_assert_msg(shown,
                      "%s: in %d tries, %d requests never cost the worker "
                      "%.1f ms more CPU than under PollTime 0 (last: %.3f vs "
                      "%.3f ms): it does not poll for its next request (on "
                      "CPU %d, %d of %d first yields after a sleep gave "
                      "way)",
                      label, tries, n, ms_of(more), ms_of(on.workers),
                      ms_of(off.workers), cpu[1], slow, PROBE_N);
    }
    spc_close(&c0);
    spt_backend_finish(&b0, NULL);
}

/* PollTime 10000: after each request the worker polls for the next one
 * (10 polls of up to 10 ms, 20 ms apart: ~100 ms on a free CPU, 25-50 ms
 * measured); at least 10 ms more than without in one of up to SEQ_TRIES
 * pairs.  And the polls end by themselves. */
START_TEST(poll_backend_on)
{
    spt_backend_t b;
    spc_t c;
    backend_compare(10000, SEQ_N, 20, 10 * MS_NS, 0, &b, &c);
    /* 100 ms after the last answer, quiet over more than the worker's
     * 1 s wait slice and ten 100 ms peer checks: nothing polls on. */
    watch_t w = {.backend = b.pid};
    tb_hello(&c, 0, 5000);
    usleep(100 * 1000);
    cpu_use_t end = cpu_over(&w, 1200);
    expect_asleep(&end, 1200, "PollTime 10000, 100 ms after a request");
    fprintf(stderr,
            "figure: poll: backend PollTime 10000: 1.2 s starting 100 ms "
            "after a request: %.3f ms CPU (dispatcher %.3f, worker %.3f)\n",
            ms_of(end.total), ms_of(end.dispatcher), ms_of(end.workers));
    spc_close(&c);
    spt_backend_finish(&b, NULL);
    unpin_self();
}
END_TEST

/* No PollTime line: the default, 200 us after each request (~8 ms for
 * 40 requests 10 ms apart on a free CPU; a median of 2.7-7 ms measured),
 * which PollTime 0 turns off: a median of at least 1 ms more than without
 * over MEDIAN_PAIRS pairs (with no poll on either side, within +-0.5). */
START_TEST(poll_backend_default)
{
    spt_backend_t b;
    spc_t c;
    backend_compare(-1, 4 * SEQ_N, 10, MS_NS, 1, &b, &c);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
    unpin_self();
}
END_TEST

/* ---- module ------------------------------------------------------------- */

/* Answered after 5 ms by the backend's worker: long enough for a poll to
 * show, short enough for one of 10 ms to catch it. */
#define SLOW_PATH "/echo?sleep=5&bodyonly=1"

static void module_get(spt_client_t *c, const char *path)
{
    spt_resp_t *r = malloc(sizeof(*r));
    ck_assert_ptr_nonnull(r);
    spt_req_t q = {.method = "GET",
                   .path = path,
                   .body_len = -1,
                   .check = SPT_CHECK_NONE,
                   .timeout_ms = 10000};
    spt_client_do(c, &q, r);
    ck_assert_msg(r->curl_code == 0 && r->status == 200,
                  "GET %s: status %ld, curl %d (%s)", path, r->status,
                  r->curl_code, r->err);
    free(r);
}

static void module_start_poll(tm_env_t *e, int poll_us)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "SlotProxyPollTime %d\n", poll_us);
    /* The backend never polls: its processes are not watched, and they
     * must not take the CPUs the module's pollers would use. */
    tm_start(e, 0, "PollTime 0\n", TM_UNIX, "", extra, 2);
    ck_assert_str_eq(e->mpm, "prefork");
}

static pid_t module_proxy_pid(tm_env_t *e)
{
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e->h, &st), 0);
    ck_assert_msg(st.proxy_pid > 0 && st.proxy_alive, "no live proxy child");
    return (pid_t)st.proxy_pid;
}

/* httpd's children (the handlers) on cpu[1]; the proxy child, the
 * backend and this process on cpu[0].  While a backend worker sleeps, a
 * handler polls alone on cpu[1]; the proxy child shares cpu[0] with the
 * backend it has just woken (its polls mostly give way: the handler's
 * show). */
static void module_pin(tm_env_t *e, const int cpu[2])
{
    pid_t proxy = module_proxy_pid(e);
    pin_tree(e->h.pid, cpu[1], 1);
    pin_tree(proxy, cpu[0], 0);
    pin_tree(e->b.pid, cpu[0], 1);
    pin_tree(getpid(), cpu[0], 0);
}

/* n requests answered in 5 ms, gap_ms apart; the CPU they cost. */
static void module_slow(void *c)
{
    module_get(c, SLOW_PATH);
}

static cpu_use_t module_sequence(const watch_t *w, spt_client_t *c, int n,
                                 int gap_ms)
{
    return cpu_sequence(w, module_slow, c, n, gap_ms);
}

/* The module's "it polls" comparison: pairs of sequences on an httpd of
 * SlotProxyPollTime 0 (w0, c0) and one of 10000 (w1, c1), in turn first
 * and second (whichever runs second may find the machine in another
 * state), until the second costs `more` than the first (the handlers,
 * and with with_proxy the proxy child too) or SEQ_TRIES pairs have run.
 * Returns whether it showed; the last pair in off and on, the pairs run
 * in *tries, and for the failure message how many first yields gave way
 * on cpu (-1: not probed). */
typedef struct pairs {
    cpu_use_t off, on;
    int tries, slow;
} pairs_t;

static int module_pairs(const watch_t *w0, spt_client_t *c0,
                        const watch_t *w1, spt_client_t *c1, int n,
                        int gap_ms, int with_proxy, int64_t more, int cpu,
                        const char *what, pairs_t *p)
{
    int shown = 0;
    p->tries = 0;
    p->slow = -1;
    while (!shown && p->tries < SEQ_TRIES) {
        if (p->tries++ % 2 == 0) {
            p->off = module_sequence(w0, c0, n, gap_ms);
            p->on = module_sequence(w1, c1, n, gap_ms);
        } else {
            p->on = module_sequence(w1, c1, n, gap_ms);
            p->off = module_sequence(w0, c0, n, gap_ms);
        }
        fprintf(stderr,
                "figure: poll: %s, %d requests of 5 ms %d ms apart: "
                "handlers %.3f ms CPU and proxy child %.3f ms under "
                "SlotProxyPollTime 0; %.3f ms and %.3f ms under 10000\n",
                what, n, gap_ms, ms_of(p->off.httpd), ms_of(p->off.proxy),
                ms_of(p->on.httpd), ms_of(p->on.proxy));
        int64_t gain = p->on.httpd - p->off.httpd;
        if (with_proxy)
            gain += p->on.proxy - p->off.proxy;
        shown = gain >= more;
        if (!shown) /* also a pause: a bad spell may pass */
            p->slow = probe_slow_first_yields(cpu);
    }
    return shown;
}

/* SlotProxyPollTime 0: right after an answer, and after a sequence of
 * answers 5 ms in coming, neither the proxy child nor httpd's processes
 * poll.  Placed as for poll_module_on, where a poll would show. */
START_TEST(poll_module_off)
{
    tm_env_t e;
    int cpu[2];
    pick_cpus(cpu);
    module_start_poll(&e, 0);
    if (cpu[1] >= 0)
        module_pin(&e, cpu);
    watch_t w = {.httpd = e.h.pid, .proxy = module_proxy_pid(&e)};
    spt_client_t *c = spt_client_new(&e.h);
    module_get(c, "/hello");
    cpu_use_t after = cpu_over(&w, 500);
    expect_asleep(&after, 500, "SlotProxyPollTime 0, right after a request");
    cpu_use_t seq = module_sequence(&w, c, SEQ_N, SEQ_GAP_MS);
    cpu_use_t end = cpu_over(&w, 500);
    expect_asleep(&end, 500, "SlotProxyPollTime 0, right after a sequence");
    fprintf(stderr,
            "figure: poll: module SlotProxyPollTime 0 (prefork): 500 ms "
            "after a request %.3f ms CPU (proxy child %.3f); %d requests "
            "of 5 ms %d ms apart: handlers %.3f ms, proxy child %.3f ms; "
            "500 ms after them %.3f ms\n",
            ms_of(after.total), ms_of(after.proxy), SEQ_N, SEQ_GAP_MS,
            ms_of(seq.httpd), ms_of(seq.proxy), ms_of(end.total));
    ck_assert_int_eq(module_proxy_pid(&e), w.proxy);
    spt_client_free(c);
    tm_finish(&e, NULL, NULL);
    unpin_self();
}
END_TEST

/* SlotProxyPollTime 10000: while a request is out, the handler waiting
 * for its answer and the proxy child poll (each up to the 5 ms the answer
 * takes: ~200 ms for 20 requests at most; 70-90 ms measured, nearly all
 * the handler's); together at least 15 ms more than without, in one of up
 * to SEQ_TRIES pairs of sequences (two sequences without polls differ by
 * ~1 ms).  And the polls end by themselves. */
START_TEST(poll_module_on)
{
    const int64_t more = 15 * MS_NS;
    const int n = 2 * SEQ_N, gap_ms = 20;
    int cpu[2];
    pick_cpus(cpu);
    ck_assert_msg(cpu[1] >= 0, "one CPU only: a poller cannot have one of "
                               "its own");
    tm_env_t e0, e1;
    module_start_poll(&e0, 0);
    module_start_poll(&e1, 10000);
    module_pin(&e0, cpu);
    module_pin(&e1, cpu);
    watch_t w0 = {.httpd = e0.h.pid, .proxy = module_proxy_pid(&e0)};
    watch_t w1 = {.httpd = e1.h.pid, .proxy = module_proxy_pid(&e1)};
    spt_client_t *c0 = spt_client_new(&e0.h), *c1 = spt_client_new(&e1.h);
    module_get(c0, "/hello");
    module_get(c1, "/hello");
    usleep(100 * 1000);
    pairs_t p;
    int shown = module_pairs(&w0, c0, &w1, c1, n, gap_ms, 1, more, cpu[1],
                             "module (prefork)", &p);
    ck_assert_msg(shown,
                  "SlotProxyPollTime 10000: in %d tries, %d requests never "
                  "cost the handlers and the proxy child %.0f ms more CPU "
                  "than under 0 (last: handlers %.3f vs %.3f ms, proxy "
                  "child %.3f vs %.3f ms): they do not poll for the answers "
                  "(on CPU %d, %d of %d first yields after a sleep gave way)",
                  p.tries, n, ms_of(more), ms_of(p.on.httpd),
                  ms_of(p.off.httpd), ms_of(p.on.proxy), ms_of(p.off.proxy),
                  cpu[1], p.slow, PROBE_N);
    module_get(c1, SLOW_PATH);
    usleep(100 * 1000);
    cpu_use_t end = cpu_over(&w1, 1200);
    expect_asleep(&end, 1200,
                  "SlotProxyPollTime 10000, 100 ms after a request");
    fprintf(stderr,
            "figure: poll: module SlotProxyPollTime 10000: 1.2 s starting "
            "100 ms after a request: %.3f ms CPU (proxy child %.3f)\n",
            ms_of(end.total), ms_of(end.proxy));
    /* The same proxy children throughout: no restart hid a poll. */
    ck_assert_int_eq(module_proxy_pid(&e0), w0.proxy);
    ck_assert_int_eq(module_proxy_pid(&e1), w1.proxy);
    spt_client_free(c0);
    spt_client_free(c1);
    tm_finish(&e0, NULL, NULL);
    tm_finish(&e1, NULL, NULL);
    unpin_self();
}
END_TEST

/* ---- the poll gate -------------------------------------------------------
 *
 * A handler polls for its answer only while no more requests are in
 * flight in httpd (slots taken) than the machine has CPUs online, and a
 * backend worker polls for its next request only while the dispatcher
 * holds no more streams than that (sp_spin_gate()): more requests in
 * progress than CPUs keep every CPU busy, and a poll would only cost a
 * yield and a process switch.  The proxy child and the dispatcher are not
 * gated.  Here ncpu + 1 requests are held in progress, asleep in
 * builtin:echo (which wakes every 10 ms to check for an abort: ~nothing
 * of CPU), while a sequence of quick requests runs beside them: it must
 * cost the gated pollers no poll; once the held requests have ended, the
 * same sequence must show the polls again (so that the first check could
 * have seen them).  Placed as the tests above: the poller that would poll
 * alone on cpu[1], where a poll would show. */

/* How long the held requests sleep: past the gated sequences (~0.3 s for
 * the backend, ~1.2 s for the module, both checked), and short enough for
 * the TCase to stay brief. */
#define GATE_HOLD_MS 3000

/* The third field of /proc/PID/schedstat: how many times pid's main
 * thread was given a CPU; -1 if gone. */
static long run_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long ns, wait, runs = -1;
    if (fscanf(f, "%lld %lld %lld", &ns, &wait, &runs) != 3)
        runs = -1;
    fclose(f);
    return (long)runs;
}

/* CPU time of pid and its descendants so far. */
static int64_t tree_ns(pid_t pid)
{
    cpu_snap_t *s = malloc(sizeof(*s));
    ck_assert_ptr_nonnull(s);
    s->n = 0;
    snap_add(s, pid, 1, 0);
    int64_t sum = 0;
    for (int i = 0; i < s->n; i++)
        sum += s->ns[i];
    free(s);
    return sum;
}

/* With nheld requests asleep in builtin:echo on as many workers, tell
 * those workers from the idle one by how often they ran in 100 ms (~10
 * times, at each 10 ms check, against 0-1 for a worker asleep on its
 * slot), and place them: the held ones with the dispatcher and this
 * process on cpu[0], the idle one alone on cpu[1] (where its poll would
 * show, and no held worker's wake-up would cut it short).  The dispatcher
 * hands a request to the first idle worker: the sequence goes to that
 * one.  Returns it. */
static pid_t backend_pin_held(const spt_backend_t *b, const int cpu[2],
                              int nheld)
{
    pid_t kids[512];
    long before[512];
    int n = spt_children(b->pid, kids, 512);
    for (int i = 0; i < n; i++)
        before[i] = run_count(kids[i]);
    usleep(100 * 1000);
    int held = 0, idle = 0;
    pid_t free_worker = 0;
    char runs[256] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        long r = run_count(kids[i]) - before[i];
        if (len < sizeof(runs))
            len += (size_t)snprintf(runs + len, sizeof(runs) - len, " %ld", r);
        if (r >= 5) {
            held++;
            pin_tree(kids[i], cpu[0], 1);
        } else {
            idle++;
            free_worker = kids[i];
            pin_tree(kids[i], cpu[1], 1);
        }
    }
    pin_tree(b->pid, cpu[0], 0);
    pin_tree(getpid(), cpu[0], 0);
    ck_assert_msg(held == nheld && idle == 1,
                  "%d workers: %d ran 5 times or more in 100 ms (held in "
                  "builtin:echo's sleep), %d less; wanted %d and 1 (runs:%s)",
                  n, held, idle, nheld, runs);
    return free_worker;
}

/* Backend, PollTime 10000, ncpu + 2 workers: with ncpu + 1 requests held
 * on others, a sequence of requests costs the workers no poll (< 5 ms for
 * all of them, 1.4-2.2 measured; 33-58 ms with the gate taken out of a
 * throwaway build); once the held requests have ended, the same sequence
 * costs them >= 10 ms more (20-55 measured), in one of up to SEQ_TRIES
 * tries. */
START_TEST(poll_gate_backend)
{
    const int64_t quiet = 5 * MS_NS, more = 10 * MS_NS;
    const int ncpu = (int)sp_cpus_online(), nheld = ncpu + 1;
    const int n = SEQ_N, gap_ms = 20;
    int cpu[2];
    pick_cpus(cpu);
    ck_assert_msg(cpu[1] >= 0, "one CPU only: a poller cannot have one of "
                               "its own");
    spt_backend_t b;
    backend_start_poll(&b, 10000, ncpu + 2);
    backend_pin(&b, cpu);
    watch_t w = {.backend = b.pid};
    spc_t c, held;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_connect(&held, b.unix_addr, NULL, (uint32_t)nheld);
    backend_sequence(&w, &c, n, gap_ms); /* warm-up */

    /* Held: ncpu + 1 streams on a link of their own, each on a worker. */
    char uri[64];
    snprintf(uri, sizeof(uri), "/echo?sleep=%d&bodyonly=1", GATE_HOLD_MS);
    for (int i = 0; i < nheld; i++)
        tb_get(&held, (uint32_t)i, uri);
    ck_assert_int_eq(spc_pump(&held, 0), 0);
    int64_t t_held = sp_now_ns();
    pid_t idle = backend_pin_held(&b, cpu, nheld);
    int64_t idle0 = tree_ns(idle);
    cpu_use_t gated = backend_sequence(&w, &c, n, gap_ms);
    int64_t idle_used = tree_ns(idle) - idle0;
    /* Still held at the end: the gate was shut all along. */
    ck_assert_int_eq(spc_pump(&held, 0), 0);
    for (int i = 0; i < nheld; i++)
        ck_assert_msg(!held.streams[i].ended && !held.streams[i].aborted,
                      "held request %d ended %.0f ms after it started, "
                      "before the gated sequence did (sleep %d ms)",
                      i, (double)(sp_now_ns() - t_held) / 1e6, GATE_HOLD_MS);
    fprintf(stderr,
            "figure: poll: gate: backend PollTime 10000, %d CPUs, %d "
            "workers, %d requests held: %d requests %d ms apart cost the "
            "workers %.3f ms CPU (the idle one %.3f ms), the dispatcher "
            "%.3f ms\n",
            ncpu, ncpu + 2, nheld, n, gap_ms, ms_of(gated.workers),
            ms_of(idle_used), ms_of(gated.dispatcher));
    ck_assert_msg(gated.workers < quiet,
                  "PollTime 10000 with %d requests held on %d CPUs: %d "
                  "requests cost the workers %.3f ms of CPU (the idle one "
                  "%.3f ms), not under %.0f: a worker polled for its next "
                  "request while the dispatcher held more streams than CPUs",
                  nheld, ncpu, n, ms_of(gated.workers), ms_of(idle_used),
                  ms_of(quiet));

    /* The held requests end; the first idle worker takes the sequence
     * now: all of them alone on cpu[1] again. */
    for (int i = 0; i < nheld; i++) {
        tb_wait(&held, (uint32_t)i, GATE_HOLD_MS + 10000);
        tb_expect_ok(&held, (uint32_t)i, 200);
    }
    backend_pin(&b, cpu);
    cpu_use_t open = {0};
    int shown = 0, tries = 0, slow = -1;
    while (!shown && tries < SEQ_TRIES) {
        open = backend_sequence(&w, &c, n, gap_ms);
        tries++;
        fprintf(stderr,
                "figure: poll: gate: backend, the held requests over: %d "
                "requests %d ms apart cost the workers %.3f ms CPU (%.3f "
                "held), the dispatcher %.3f ms\n",
                n, gap_ms, ms_of(open.workers), ms_of(gated.workers),
                ms_of(open.dispatcher));
        shown = open.workers - gated.workers >= more;
        if (!shown) /* also a pause: a bad spell may pass */
            slow = probe_slow_first_yields(cpu[1]);
    }
    ck_assert_msg(shown,
                  "PollTime 10000, the held requests over: in %d tries, %d "
                  "requests never cost the workers %.0f ms more CPU than "
                  "while held (last: %.3f vs %.3f ms): no poll to gate, the "
                  "check above proves nothing (on CPU %d, %d of %d first "
                  "yields after a sleep gave way)",
                  tries, n, ms_of(more), ms_of(open.workers),
                  ms_of(gated.workers), cpu[1], slow, PROBE_N);
    spc_close(&held);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
    unpin_self();
}
END_TEST

/* One request held through httpd by a thread of this process. */
typedef struct hold {
    const spt_httpd_t *h;
    pthread_t thread;
    long status;
    int curl_code;
    char err[256];
} hold_t;

static void *hold_run(void *arg)
{
    hold_t *x = arg;
    char path[64];
    snprintf(path, sizeof(path), "/echo?sleep=%d&bodyonly=1", GATE_HOLD_MS);
    spt_resp_t *r = malloc(sizeof(*r));
    if (r == NULL) {
        snprintf(x->err, sizeof(x->err), "out of memory");
        return NULL;
    }
    spt_req_t q = {.method = "GET",
                   .path = path,
                   .body_len = -1,
                   .check = SPT_CHECK_NONE,
                   .timeout_ms = GATE_HOLD_MS + 10000};
    spt_client_t *c = spt_client_new(x->h);
    spt_client_do(c, &q, r);
    x->status = r->status;
    x->curl_code = r->curl_code;
    snprintf(x->err, sizeof(x->err), "%s", r->err);
    spt_client_free(c);
    free(r);
    return NULL;
}

/* As module_start_poll, with ncpu + 2 backend workers and enough prefork
 * children started for the held requests, the sequence and the status
 * requests (MinSpareServers 1: no child forked in a measure). */
static void module_start_gate(tm_env_t *e, int poll_us, int nheld)
{
    char bextra[64], hextra[192];
    snprintf(bextra, sizeof(bextra), "PollTime 0\nWorkers %d\n", nheld + 1);
    snprintf(hextra, sizeof(hextra),
             "SlotProxyPollTime %d\nStartServers %d\nMinSpareServers 1\n"
             "MaxSpareServers %d\n",
             poll_us, nheld + 4, nheld + 8);
    tm_start(e, 0, bextra, TM_UNIX, "", hextra, 2);
    ck_assert_str_eq(e->mpm, "prefork");
}

static long module_inflight(tm_env_t *e)
{
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e->h, &st), 0);
    return st.inflight;
}

/* Module (prefork), SlotProxyPollTime 10000 against 0, backend PollTime 0:
 * with ncpu + 1 requests held in flight through httpd, 20 requests of 5 ms
 * cost httpd's handlers < 5 ms more than under SlotProxyPollTime 0 (-1.2
 * to +1.2 measured; 66-78 more with the gate taken out of a throwaway
 * build; the proxy child, not gated, polls on and is not counted); once
 * they have ended, the same sequence costs the handlers >= 15 ms more
 * (32-70 measured), in one of up to SEQ_TRIES pairs. */
START_TEST(poll_gate_module)
{
    const int64_t quiet = 5 * MS_NS, more = 15 * MS_NS;
    const int ncpu = (int)sp_cpus_online(), nheld = ncpu + 1;
    const int n = 2 * SEQ_N, gap_ms = 20;
    int cpu[2];
    pick_cpus(cpu);
    ck_assert_msg(cpu[1] >= 0, "one CPU only: a poller cannot have one of "
                               "its own");
    tm_env_t e0, e1;
    module_start_gate(&e0, 0, nheld);
    module_start_gate(&e1, 10000, nheld);
    module_pin(&e0, cpu);
    module_pin(&e1, cpu);
    watch_t w0 = {.httpd = e0.h.pid, .proxy = module_proxy_pid(&e0)};
    watch_t w1 = {.httpd = e1.h.pid, .proxy = module_proxy_pid(&e1)};
    spt_client_t *c0 = spt_client_new(&e0.h), *c1 = spt_client_new(&e1.h);
    module_get(c0, "/hello");
    module_get(c1, "/hello");

    /* Held: ncpu + 1 requests on connections of their own (threads of
     * this process: on cpu[0]).  Their handlers polled for 10 ms at most
     * (the last ones not at all) and sleep: 100 ms later, nothing polls
     * but the proxy child. */
    hold_t *hold = calloc((size_t)nheld, sizeof(*hold));
    ck_assert_ptr_nonnull(hold);
    for (int i = 0; i < nheld; i++) {
        hold[i].h = &e1.h;
        ck_assert_int_eq(
            pthread_create(&hold[i].thread, NULL, hold_run, &hold[i]), 0);
    }
    long inflight = 0;
    int64_t t_held = sp_now_ns();
    while ((inflight = module_inflight(&e1)) < nheld &&
           sp_now_ns() - t_held < 5000 * MS_NS)
        usleep(10 * 1000);
    ck_assert_msg(inflight >= nheld,
                  "%d requests held, but httpd has %ld in flight after 5 s",
                  nheld, inflight);
    usleep(100 * 1000);
    cpu_use_t gated = module_sequence(&w1, c1, n, gap_ms);
    cpu_use_t ref = module_sequence(&w0, c0, n, gap_ms);
    /* Still held at the end: the gate was shut all along. */
    inflight = module_inflight(&e1);
    ck_assert_msg(inflight >= nheld,
                  "%ld requests in flight %.0f ms after %d were held (sleep "
                  "%d ms): they ended before the gated sequence did",
                  inflight, (double)(sp_now_ns() - t_held) / 1e6, nheld,
                  GATE_HOLD_MS);
    fprintf(stderr,
            "figure: poll: gate: module (prefork), %d CPUs, %d requests "
            "held under SlotProxyPollTime 10000: %d requests of 5 ms %d ms "
            "apart cost the handlers %.3f ms CPU (proxy child %.3f); "
            "%.3f ms (%.3f) under 0, none held\n",
            ncpu, nheld, n, gap_ms, ms_of(gated.httpd), ms_of(gated.proxy),
            ms_of(ref.httpd), ms_of(ref.proxy));
    ck_assert_msg(gated.httpd - ref.httpd < quiet,
                  "SlotProxyPollTime 10000 with %d requests held on %d "
                  "CPUs: %d requests cost the handlers %.3f ms of CPU, "
                  "%.3f under 0: not under %.0f ms more: a handler polled "
                  "for its answer while more requests were in flight than "
                  "CPUs",
                  nheld, ncpu, n, ms_of(gated.httpd), ms_of(ref.httpd),
                  ms_of(quiet));
    for (int i = 0; i < nheld; i++) {
        ck_assert_int_eq(pthread_join(hold[i].thread, NULL), 0);
        ck_assert_msg(hold[i].curl_code == 0 && hold[i].status == 200,
                      "held request %d: status %ld, curl %d (%s)", i,
                      hold[i].status, hold[i].curl_code, hold[i].err);
    }
    free(hold);

    /* The held requests over: the handlers poll again (as in
     * poll_module_on, the handlers alone counted). */
    pairs_t p;
    int shown = module_pairs(&w0, c0, &w1, c1, n, gap_ms, 0, more, cpu[1],
                             "gate: module (prefork), the held requests "
                             "over",
                             &p);
    ck_assert_msg(shown,
                  "SlotProxyPollTime 10000, the held requests over: in %d "
                  "tries, %d requests never cost the handlers %.0f ms more "
                  "CPU than under 0 (last: %.3f vs %.3f ms): no poll to "
                  "gate, the check above proves nothing (on CPU %d, %d of "
                  "%d first yields after a sleep gave way)",
                  p.tries, n, ms_of(more), ms_of(p.on.httpd),
                  ms_of(p.off.httpd), cpu[1], p.slow, PROBE_N);
    /* The same proxy children throughout. */
    ck_assert_int_eq(module_proxy_pid(&e0), w0.proxy);
    ck_assert_int_eq(module_proxy_pid(&e1), w1.proxy);
    spt_client_free(c0);
    spt_client_free(c1);
    tm_finish(&e0, NULL, NULL);
    tm_finish(&e1, NULL, NULL);
    unpin_self();
}
END_TEST

/* ---- configuration ------------------------------------------------------ */

START_TEST(poll_module_bad)
{
    const char *mpm = tm_mpms[0];
    char *out = malloc(16384);
    ck_assert_ptr_nonnull(out);
    static const char *const t[] = {"-t", NULL};
    static const char *const fg[] = {"-DFOREGROUND", NULL};
    char site[512];

    static const char *const good[] = {"0", "200", "10000"};
    for (int i = 0; i < 3; i++) {
        snprintf(site, sizeof(site), "SlotProxyPollTime %s\n", good[i]);
        int rc = spt_httpd_run_conf(
            mpm, spt_httpd_site("unix:/tmp/none.sock", "", site), t, 20000, out,
            16384);
        ck_assert_msg(rc == 0 && strstr(out, "Syntax OK") != NULL,
                      "SlotProxyPollTime %s: apache2 -t exit %d: %s", good[i],
                      rc, out);
    }

    int port = spt_free_port();
    static const struct {
        const char *fmt; /* %d: a free port */
        const char *want;
    } bad[] = {
        {"SlotProxyPollTime abc\n", "SlotProxyPollTime: 'abc' is not an "
                                    "integer"},
        {"SlotProxyPollTime -1\n", "SlotProxyPollTime: '-1' is not an "
                                   "integer"},
        {"SlotProxyPollTime 10001\n", "SlotProxyPollTime: '10001' is out of "
                                      "range (0..10000)"},
        {"SlotProxyPollTime 99999999999999999999999\n",
         "SlotProxyPollTime: '99999999999999999999999' is out of range "
         "(0..10000)"},
        {"SlotProxyPollTime\n", "SlotProxyPollTime takes one argument"},
        {"SlotProxyPollTime 1 2\n", "SlotProxyPollTime takes one argument"},
        {"<VirtualHost 127.0.0.1:%d>\n"
         "    ServerName other.invalid\n"
         "    SlotProxyPollTime 100\n"
         "</VirtualHost>\n",
         "SlotProxyPollTime cannot occur within <VirtualHost> section"},
        {"<Location /x>\n"
         "    SlotProxyPollTime 100\n"
         "</Location>\n",
         "SlotProxyPollTime not allowed in <Location> context"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(site, sizeof(site), bad[i].fmt, port);
        int rc = spt_httpd_run_conf(
            mpm, spt_httpd_site("unix:/tmp/none.sock", "", site), t, 20000, out,
            16384);
        ck_assert_msg(rc != 0 && rc != -1, "%sapache2 -t exit %d: %s", site, rc,
                      out);
        ck_assert_msg(strstr(out, bad[i].want) != NULL,
                      "%sapache2 -t did not say \"%s\": %s", site, bad[i].want,
                      out);
        ck_assert_msg(strstr(out, "Syntax OK") == NULL, "%s", out);
    }

    /* Started for real: it exits at once, saying why. */
    const char *b =
        spt_httpd_site("unix:/tmp/none.sock", "", "SlotProxyPollTime 10001\n");
    int rc = spt_httpd_run_conf(mpm, b, fg, 10000, out, 16384);
    ck_assert_msg(rc != 0 && rc != -1,
                  "10001: apache2 -DFOREGROUND exit %d "
                  "(-1: still running after 10 s): %s",
                  rc, out);
    ck_assert_msg(strstr(out, "SlotProxyPollTime: '10001' is out of range") !=
                      NULL,
                  "10001: apache2 -DFOREGROUND said: %s", out);
    free(out);
}
END_TEST

Suite *suite_poll(void)
{
    Suite *s = suite_create("poll");
    TCase *tc = tcase_create("poll_backend");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, poll_backend_off);
    tcase_add_test(tc, poll_backend_on);
    tcase_add_test(tc, poll_backend_default);
    suite_add_tcase(s, tc);

    tc = tcase_create("poll_module");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, poll_module_off);
    tcase_add_test(tc, poll_module_on);
    suite_add_tcase(s, tc);

    tc = tcase_create("poll_gate");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, poll_gate_backend);
    tcase_add_test(tc, poll_gate_module);
    suite_add_tcase(s, tc);

    tc = tcase_create("poll_config");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, poll_module_bad);
    suite_add_tcase(s, tc);
    return s;
}
