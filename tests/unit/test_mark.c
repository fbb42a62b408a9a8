/*
 * test_mark.c - futex marks (common/sp_mark.c, DESIGN §3.1).
 *
 * Single-process tests pin down the word semantics: the state lives in bits
 * 0..30, SP_MARK_WAITING in bit 31 is only ever set by a waiter that is
 * about to sleep, and set/cas drop it.  Two-process tests use fork() and
 * sp_test_shared() memory:
 *
 *   - a sleeping waiter (seen in state S on a futex, with the WAITING bit
 *     in the word) is woken by sp_mark_set / sp_mark_cas long before its
 *     deadline; several sleepers on one mark all wake;
 *   - a waiter SIGKILLed while asleep leaves the bit behind, the next set
 *     clears it and the mark keeps working;
 *   - a wait naming a peer returns SP_EPEERDEAD once the peer is killed
 *     (zombie or reaped) and SP_ETIMEDOUT while it lives;
 *   - the lost-wake-up stress: two processes hand a mark back and forth
 *     100,000 times each way without spinning, every wait with a deadline;
 *     a lost wake-up makes a wait sleep to its deadline (after which its
 *     re-check finds the new state), so a wait that returns after its
 *     deadline counts as SP_ETIMEDOUT.
 *
 * Poll budgets (SP_SPIN_POLL, PollTime): 0 never spins; a change made by
 * another thread 2 ms into a poll is caught; without a change a poll ends
 * by its budget (not much later); with a CPU-bound process on its CPU a
 * 500 ms poll gives way at once; gated on a load above the CPUs online
 * it does not poll at all; and none of this ever changes the budget (the
 * adaptive one, SP_SPIN_INIT, is mark_spin_budget_adapts).
 *
 * Children never call ck_assert (Check's reporting belongs to the test
 * process): they _exit() with a distinct code, or leave their result in
 * shared memory for the parent to check.
 */
#include "sp_unit.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_mark.h"
#include "sp_proc.h"

#define MS SP_NSEC_PER_MSEC

/* ---- helpers ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * MS};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Raw word, bypassing sp_mark_get's masking. */
static uint32_t raw(const sp_mark_t *m)
{
    return __atomic_load_n(&m->word, __ATOMIC_ACQUIRE);
}

/* Wait (at most 10 s) until pid sleeps on a futex with the WAITING bit in
 * the mark word, i.e. it declared itself and went to sleep. */
static void wait_asleep(pid_t pid, const sp_mark_t *m)
{
    int64_t end = sp_deadline_ms(10000);
    while (!((raw(m) & SP_MARK_WAITING) && sp_test_sleeps_on_futex(pid))) {
        ck_assert_msg(sp_now_ns() < end,
                      "child %d never went to sleep (word %#x)", (int)pid,
                      raw(m));
        sleep_ms(1);
    }
}

/* What a waiting child leaves for the parent. */
typedef struct wait_result {
    int rc;       /* sp_mark_wait's return */
    int done;     /* 1 when rc and t_ns are valid */
    int64_t t_ns; /* sp_now_ns() when the wait returned */
    int64_t deadline;
} wait_result_t;

/* Fork a child that waits on m while its state is cur (deadline in ms from
 * now, optional peer), records the result and exits 0. */
static pid_t spawn_waiter(sp_mark_t *m, uint32_t cur, int64_t ms,
                          const sp_ident_t *peer, wait_result_t *out)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        out->deadline = sp_deadline_ms(ms);
        int rc = sp_mark_wait(m, cur, out->deadline, NULL, peer);
        out->t_ns = sp_now_ns();
        out->rc = rc;
        __atomic_store_n(&out->done, 1, __ATOMIC_RELEASE);
        _exit(0);
    }
    return pid;
}

/* ---- single process ---- */

START_TEST(mark_init_get_set_cas)
{
    sp_mark_t m;
    sp_mark_init(&m, 5);
    ck_assert_uint_eq(sp_mark_get(&m), 5);
    ck_assert_uint_eq(raw(&m), 5);
    /* The WAITING bit can never be passed in as part of a state. */
    sp_mark_init(&m, SP_MARK_WAITING | 6);
    ck_assert_uint_eq(raw(&m), 6);
    sp_mark_set(&m, SP_MARK_WAITING | 7);
    ck_assert_uint_eq(raw(&m), 7);
    sp_mark_set(&m, SP_MARK_STATE);
    ck_assert_uint_eq(sp_mark_get(&m), SP_MARK_STATE);
    sp_mark_set(&m, 7);

    uint32_t seen = 12345;
    ck_assert_int_eq(sp_mark_cas(&m, 7, 9, &seen), 0);
    ck_assert_uint_eq(seen, 12345); /* untouched on success */
    ck_assert_uint_eq(sp_mark_get(&m), 9);
    ck_assert_int_eq(sp_mark_cas(&m, 7, 1, &seen), SP_ESTATE);
    ck_assert_uint_eq(seen, 9);
    ck_assert_uint_eq(sp_mark_get(&m), 9);
    ck_assert_int_eq(sp_mark_cas(&m, 8, 1, NULL), SP_ESTATE);
    ck_assert_uint_eq(sp_mark_get(&m), 9);

    /* A declared waiter's bit is invisible to get, does not disturb cas's
     * comparison, and is dropped by cas and set. */
    m.word = 9 | SP_MARK_WAITING;
    ck_assert_uint_eq(sp_mark_get(&m), 9);
    ck_assert_int_eq(sp_mark_cas(&m, 4, 1, &seen), SP_ESTATE);
    ck_assert_uint_eq(seen, 9);
    ck_assert_uint_eq(raw(&m), 9 | SP_MARK_WAITING);
    ck_assert_int_eq(sp_mark_cas(&m, 9, 10, NULL), 0);
    ck_assert_uint_eq(raw(&m), 10);
    m.word = 10 | SP_MARK_WAITING;
    sp_mark_set(&m, 11);
    ck_assert_uint_eq(raw(&m), 11);
}
END_TEST

START_TEST(mark_wait_returns_at_once_when_state_differs)
{
    sp_mark_t m;
    sp_mark_init(&m, 3);
    int64_t t0 = sp_now_ns();
    ck_assert_int_eq(sp_mark_wait(&m, 2, sp_deadline_ms(10000), NULL, NULL), 3);
    sp_spin_t spin = SP_SPIN_INIT(20000);
    ck_assert_int_eq(sp_mark_wait(&m, 0, sp_deadline_ms(10000), &spin, NULL),
                     3);
    /* Even a deadline in the past reports the state, not a timeout. */
    ck_assert_int_eq(sp_mark_wait(&m, 4, 1, NULL, NULL), 3);
    ck_assert_int_lt(sp_now_ns() - t0, 500 * MS);
    /* It never declared itself: no WAITING bit. */
    ck_assert_uint_eq(raw(&m), 3);
    /* The largest state survives the int return. */
    sp_mark_set(&m, SP_MARK_STATE);
    ck_assert_int_eq(sp_mark_wait(&m, 0, sp_deadline_ms(1000), NULL, NULL),
                     (int)SP_MARK_STATE);
}
END_TEST

START_TEST(mark_wait_times_out_at_deadline)
{
    sp_mark_t m;
    sp_mark_init(&m, 1);
    int64_t t0 = sp_now_ns();
    int64_t deadline = t0 + 200 * MS;
    ck_assert_int_eq(sp_mark_wait(&m, 1, deadline, NULL, NULL), SP_ETIMEDOUT);
    int64_t t1 = sp_now_ns();
    ck_assert_msg(t1 >= deadline, "timed out %lld ns early",
                  (long long)(deadline - t1));
    ck_assert_msg(t1 - deadline < 2000 * MS, "timed out %lld ms late",
                  (long long)((t1 - deadline) / MS));
    /* It slept declared; get still reports the bare state. */
    ck_assert_uint_eq(raw(&m), 1 | SP_MARK_WAITING);
    ck_assert_uint_eq(sp_mark_get(&m), 1);
    sp_mark_set(&m, 2);
    ck_assert_uint_eq(raw(&m), 2);

    /* The same with a spin budget first, and with a peer that lives. */
    sp_spin_t spin = SP_SPIN_INIT(20000);
    sp_ident_t self = sp_ident_self();
    deadline = sp_now_ns() + 150 * MS;
    ck_assert_int_eq(sp_mark_wait(&m, 2, deadline, &spin, &self), SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    /* A deadline already past times out without sleeping. */
    t0 = sp_now_ns();
    ck_assert_int_eq(sp_mark_wait(&m, 2, t0 - 1, NULL, NULL), SP_ETIMEDOUT);
    ck_assert_int_lt(sp_now_ns() - t0, 100 * MS);
}
END_TEST

START_TEST(mark_futex_primitives)
{
    uint32_t w = 5;
    int64_t t0 = sp_now_ns();
    /* Value differs: returns at once. */
    ck_assert_int_eq(sp_futex_wait(&w, 4, sp_deadline_ms(5000)), 0);
    ck_assert_int_lt(sp_now_ns() - t0, 500 * MS);
    int64_t deadline = sp_now_ns() + 50 * MS;
    ck_assert_int_eq(sp_futex_wait(&w, 5, deadline), SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    sp_futex_wake(&w, 1); /* nobody there: harmless */
    ck_assert_uint_eq(w, 5);
}
END_TEST

START_TEST(mark_spin_budget_adapts)
{
    uint32_t word = 7;
    /* No budget, or none at all: never spins. */
    ck_assert_int_eq(sp_spin_until_ne(&word, 7, NULL), 0);
    sp_spin_t none = SP_SPIN_INIT(0);
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &none), 0);
    ck_assert_uint_eq(none.limit_ns, 0);

    sp_spin_t s = {.limit_ns = 40000, .max_ns = 100000};
    int64_t t0 = sp_now_ns();
    ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
    ck_assert_int_ge(sp_now_ns() - t0, 40000);
    ck_assert_uint_eq(s.limit_ns, 20000); /* halved: spinning did not pay */
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 1);
    ck_assert_uint_eq(s.limit_ns, 41000); /* doubled + 1 us */
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 1);
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 1);
    ck_assert_uint_eq(s.limit_ns, 100000); /* capped at max */
    /* A budget that decayed to 0 probes again with 1 us... */
    s.limit_ns = 0;
    ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
    ck_assert_uint_eq(s.limit_ns, 500);
    /* ...but never with more than max_ns. */
    sp_spin_t small = {.limit_ns = 0, .max_ns = 400};
    ck_assert_int_eq(sp_spin_until_ne(&word, 7, &small), 0);
    ck_assert_uint_eq(small.limit_ns, 200);
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &small), 1);
    ck_assert_uint_eq(small.limit_ns, 400);
}
END_TEST

/* ---- two processes ---- */

START_TEST(mark_set_wakes_only_a_declared_sleeper)
{
    sp_mark_t *m = sp_test_shared(4096);
    wait_result_t *res = (wait_result_t *)((char *)m + 64);

    /* Nobody waits: set leaves the bare state (so a later set makes no
     * futex call) and the word never grows a WAITING bit. */
    sp_mark_init(m, 0);
    sp_mark_set(m, 1);
    ck_assert_uint_eq(raw(m), 1);
    ck_assert_int_eq(sp_mark_cas(m, 1, 0, NULL), 0);
    ck_assert_uint_eq(raw(m), 0);

    /* A sleeper in another process is woken by set, long before its
     * 20 s deadline. */
    pid_t pid = spawn_waiter(m, 0, 20000, NULL, res);
    wait_asleep(pid, m);
    ck_assert_int_eq(__atomic_load_n(&res->done, __ATOMIC_ACQUIRE), 0);
    int64_t t_set = sp_now_ns();
    sp_mark_set(m, 1);
    ck_assert_uint_eq(raw(m), 1); /* the set took the bit away */
    sp_test_wait_ok(pid);
    ck_assert_int_eq(res->done, 1);
    ck_assert_int_eq(res->rc, 1);
    ck_assert_msg(res->t_ns - t_set < 1000 * MS,
                  "woke %lld ms after the set (deadline was %lld ms away)",
                  (long long)((res->t_ns - t_set) / MS),
                  (long long)((res->deadline - t_set) / MS));

    /* Same with sp_mark_cas as the waker. */
    memset(res, 0, sizeof(*res));
    pid = spawn_waiter(m, 1, 20000, NULL, res);
    wait_asleep(pid, m);
    t_set = sp_now_ns();
    ck_assert_int_eq(sp_mark_cas(m, 1, 2, NULL), 0);
    ck_assert_uint_eq(raw(m), 2);
    sp_test_wait_ok(pid);
    ck_assert_int_eq(res->rc, 2);
    ck_assert_int_lt(res->t_ns - t_set, 1000 * MS);
    sp_test_unshare(m, 4096);
}
END_TEST

START_TEST(mark_many_waiters_all_wake)
{
    enum { NW = 5 };
    sp_mark_t *m = sp_test_shared(4096);
    wait_result_t *res = (wait_result_t *)((char *)m + 64);
    sp_mark_init(m, 0);
    pid_t pid[NW];
    for (int i = 0; i < NW; i++)
        pid[i] = spawn_waiter(m, 0, 20000, NULL, &res[i]);
    for (int i = 0; i < NW; i++)
        wait_asleep(pid[i], m);
    for (int i = 0; i < NW; i++)
        ck_assert_int_eq(__atomic_load_n(&res[i].done, __ATOMIC_ACQUIRE), 0);
    int64_t t_set = sp_now_ns();
    sp_mark_set(m, 4);
    for (int i = 0; i < NW; i++) {
        sp_test_wait_ok(pid[i]);
        ck_assert_int_eq(res[i].rc, 4);
        ck_assert_msg(res[i].t_ns - t_set < 2000 * MS,
                      "waiter %d woke %lld ms after the set", i,
                      (long long)((res[i].t_ns - t_set) / MS));
    }
    ck_assert_uint_eq(raw(m), 4);
    sp_test_unshare(m, 4096);
}
END_TEST

START_TEST(mark_waiter_killed_while_asleep)
{
    sp_mark_t *m = sp_test_shared(4096);
    wait_result_t *res = (wait_result_t *)((char *)m + 64);
    sp_mark_init(m, 0);
    pid_t pid = spawn_waiter(m, 0, 30000, NULL, res);
    wait_asleep(pid, m);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(res->done, 0);
    /* The dead waiter's declaration is still in the word... */
    ck_assert_uint_eq(raw(m), SP_MARK_WAITING);
    ck_assert_uint_eq(sp_mark_get(m), 0);
    /* ...the next set pays one spurious wake and clears it. */
    sp_mark_set(m, 1);
    ck_assert_uint_eq(raw(m), 1);
    /* And the mark works as before. */
    ck_assert_int_eq(sp_mark_wait(m, 0, sp_deadline_ms(5000), NULL, NULL), 1);
    memset(res, 0, sizeof(*res));
    pid = spawn_waiter(m, 1, 20000, NULL, res);
    wait_asleep(pid, m);
    int64_t t_set = sp_now_ns();
    sp_mark_set(m, 2);
    sp_test_wait_ok(pid);
    ck_assert_int_eq(res->rc, 2);
    ck_assert_int_lt(res->t_ns - t_set, 1000 * MS);
    ck_assert_uint_eq(raw(m), 2);
    sp_test_unshare(m, 4096);
}
END_TEST

/* A peer that lives until killed. */
static pid_t spawn_peer(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* A process that SIGKILLs victim after ms, then exits. */
static pid_t spawn_killer(pid_t victim, long ms)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sleep_ms(ms);
        _exit(kill(victim, SIGKILL) == 0 ? 0 : 3);
    }
    return pid;
}

START_TEST(mark_wait_detects_dead_peer)
{
    sp_mark_t *m = sp_test_shared(4096);
    sp_mark_init(m, 0);
    pid_t peer = spawn_peer();
    sp_ident_t id = {.pid = peer, .start = sp_proc_starttime(peer)};
    ck_assert_uint_ne(id.start, 0);
    ck_assert_int_eq(sp_ident_alive(&id), 1);

    /* While the peer lives, a wait runs to its deadline. */
    int64_t deadline = sp_now_ns() + 350 * MS;
    ck_assert_int_eq(sp_mark_wait(m, 0, deadline, NULL, &id), SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);

    /* Killed 300 ms into a 30 s wait (and left a zombie: we reap it only
     * afterwards): SP_EPEERDEAD within a few peer-check periods. */
    pid_t killer = spawn_killer(peer, 300);
    int64_t t0 = sp_now_ns();
    int rc = sp_mark_wait(m, 0, t0 + 30000 * MS, NULL, &id);
    int64_t took = sp_now_ns() - t0;
    ck_assert_int_eq(rc, SP_EPEERDEAD);
    ck_assert_msg(took >= 200 * MS,
                  "peer declared dead after %lld ms, "
                  "before it was killed",
                  (long long)(took / MS));
    ck_assert_msg(took < 5000 * MS, "peer death seen after %lld ms",
                  (long long)(took / MS));
    sp_test_wait_ok(killer);
    int status = 0;
    ck_assert_int_eq(waitpid(peer, &status, 0), peer);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Reaped, it is still dead. */
    t0 = sp_now_ns();
    ck_assert_int_eq(sp_mark_wait(m, 0, t0 + 30000 * MS, NULL, &id),
                     SP_EPEERDEAD);
    ck_assert_int_lt(sp_now_ns() - t0, 5000 * MS);

    /* A state change beats the death verdict. */
    sp_mark_set(m, 5);
    ck_assert_int_eq(sp_mark_wait(m, 0, sp_deadline_ms(30000), NULL, &id), 5);

    /* Pid reuse: our own pid with another start time is not us. */
    sp_ident_t other = sp_ident_self();
    other.start += 1;
    t0 = sp_now_ns();
    ck_assert_int_eq(sp_mark_wait(m, 5, t0 + 30000 * MS, NULL, &other),
                     SP_EPEERDEAD);
    ck_assert_int_lt(sp_now_ns() - t0, 5000 * MS);
    sp_test_unshare(m, 4096);
}
END_TEST

/* Ping-pong: the parent moves the state 2i -> 2i+1, the child 2i+1 -> 2i+2,
 * each sleeping (no spin) until the other moves.  Every wait carries a
 * deadline, so one lost wake-up fails (as SP_ETIMEDOUT) instead of
 * hanging.  The first half runs with the two processes on different CPUs
 * (the racy case: setter and waiter truly in parallel), the second with
 * both on one CPU, where every hand-off needs a sleep and a wake-up. */
#define PINGPONG_ROUNDS 100000

typedef struct pingpong {
    sp_mark_t m;
    uint8_t pad[60];
    int child_rc;
    uint32_t child_round;
    long child_nvcsw;
    int cpu[2]; /* phase 1: parent, child; phase 2: both on cpu[0] */
} pingpong_t;

static long voluntary_switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw;
}

static void pin_to(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* Two CPUs we may run on (-1 where there are fewer). */
static void pick_cpus(int cpu[2])
{
    cpu_set_t set;
    cpu[0] = cpu[1] = -1;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return;
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[k++] = c;
}

START_TEST(mark_pingpong_no_lost_wakeup)
{
    pingpong_t *pp = sp_test_shared(sizeof(pingpong_t));
    sp_mark_init(&pp->m, 0);
    pick_cpus(pp->cpu);
    const uint32_t half = PINGPONG_ROUNDS / 2;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        long sw0 = voluntary_switches();
        pin_to(pp->cpu[1]);
        for (uint32_t i = 0; i < PINGPONG_ROUNDS; i++) {
            if (i == half)
                pin_to(pp->cpu[0]);
            int64_t deadline = sp_deadline_ms(5000);
            int rc = sp_mark_wait(&pp->m, 2 * i, deadline, NULL, NULL);
            /* A lost wake-up sleeps to the deadline, then the re-check
             * finds the new state: returning late is the symptom. */
            if (rc >= 0 && sp_now_ns() > deadline)
                rc = SP_ETIMEDOUT;
            if (rc != (int)(2 * i + 1)) {
                pp->child_rc = rc;
                pp->child_round = i;
                _exit(1);
            }
            sp_mark_set(&pp->m, 2 * i + 2);
        }
        pp->child_nvcsw = voluntary_switches() - sw0;
        _exit(0);
    }
    long sw0 = voluntary_switches();
    pin_to(pp->cpu[0]);
    int64_t t0 = sp_now_ns(), t_half = t0;
    uint32_t i;
    int rc = 0;
    for (i = 0; i < PINGPONG_ROUNDS; i++) {
        if (i == half)
            t_half = sp_now_ns();
        sp_mark_set(&pp->m, 2 * i + 1);
        int64_t deadline = sp_deadline_ms(5000);
        rc = sp_mark_wait(&pp->m, 2 * i + 1, deadline, NULL, NULL);
        if (rc >= 0 && sp_now_ns() > deadline)
            rc = SP_ETIMEDOUT; /* woken by the deadline, not the child */
        if (rc != (int)(2 * i + 2))
            break;
    }
    int64_t t1 = sp_now_ns();
    long nvcsw = voluntary_switches() - sw0;
    if (i != PINGPONG_ROUNDS)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(i == PINGPONG_ROUNDS,
                  "parent: round %u got %d (child rc %d at round %u)", i, rc,
                  pp->child_rc, pp->child_round);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child failed: rc %d at round %u", pp->child_rc,
                  pp->child_round);
    fprintf(stderr,
            "mark ping-pong: %u round trips, %.1f us each on two CPUs, "
            "%.1f us on one; sleeps: parent %ld, child %ld\n",
            PINGPONG_ROUNDS, (t_half - t0) / 1e3 / half,
            (t1 - t_half) / 1e3 / (PINGPONG_ROUNDS - half), nvcsw,
            pp->child_nvcsw);
    /* They really slept: on one CPU every hand-off needs the waiter off
     * the CPU, so sleeps add up to at least a good part of the rounds. */
    ck_assert_msg(nvcsw >= 1000 && pp->child_nvcsw >= 1000 &&
                      nvcsw + pp->child_nvcsw >= (long)half / 2,
                  "too few sleeps: parent %ld, child %ld", nvcsw,
                  pp->child_nvcsw);
    sp_test_unshare(pp, sizeof(pingpong_t));
}
END_TEST

/* ---- poll budgets (SP_SPIN_POLL) ---- */

/* A poll budget is a constant: neither catching the change nor running
 * out (nor giving way) may touch it. */
static int poll_budget_is(const sp_spin_t *s, uint32_t max_ns)
{
    return s->limit_ns == max_ns && s->max_ns == max_ns && s->poll == 1;
}

static void assert_poll_budget(const sp_spin_t *s, uint32_t max_ns)
{
    ck_assert_msg(poll_budget_is(s, max_ns),
                  "poll budget changed: limit_ns %u, max_ns %u, poll %u "
                  "(was %u, %u, 1)",
                  s->limit_ns, s->max_ns, s->poll, max_ns, max_ns);
}

/* The setter thread of mark_spin_poll_catches_change, on a CPU of its own
 * from the start: for each round r the poller sets `go` to r; the setter
 * (asleep on it) sleeps delay_ms, then stores r into word. */
#define POLL_SETTER_STOP 0x7ffffff0u

typedef struct poll_setter {
    sp_mark_t go;
    uint32_t word;
    long delay_ms;
    int64_t t_set; /* sp_now_ns() right after the last store */
} poll_setter_t;

static void *poll_setter(void *arg)
{
    poll_setter_t *p = arg;
    uint32_t seen = 0;
    for (;;) {
        int st = sp_mark_wait(&p->go, seen, sp_deadline_ms(30000), NULL, NULL);
        if (st < 0 || (uint32_t)st == POLL_SETTER_STOP)
            return NULL;
        seen = (uint32_t)st;
        sleep_ms(p->delay_ms);
        __atomic_store_n(&p->word, seen, __ATOMIC_RELEASE);
        p->t_set = sp_now_ns();
    }
}

START_TEST(mark_spin_poll_none)
{
    uint32_t word = 7;
    sp_spin_t s = SP_SPIN_POLL(0);
    assert_poll_budget(&s, 0);
    /* max_ns 0 never spins, never even looks: 0 whether or not the word
     * differs, at once. */
    int64_t t0 = sp_now_ns();
    for (int i = 0; i < 10000; i++) {
        ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
        ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 0);
    }
    int64_t took = sp_now_ns() - t0;
    assert_poll_budget(&s, 0);
    /* 20,000 calls: a few hundred microseconds even in a sanitizer build;
     * a single round of 64 pauses each would already be ~0.1-1 s. */
    ck_assert_msg(took < 50 * MS, "20000 polls with a 0 budget took %lld us",
                  (long long)(took / 1000));
}
END_TEST

/* Another thread changes the word 2 ms into a 200 ms poll: caught (1),
 * and only after the change.  The setter runs on another CPU than the
 * poller, so it never needs the poller's CPU; other work on this machine
 * (a concurrent build) may still make a poll give way early (0, before
 * the change): then it is tried again, up to 30 times. */
START_TEST(mark_spin_poll_catches_change)
{
    int cpu[2];
    pick_cpus(cpu);
    if (cpu[1] < 0) {
        fprintf(stderr, "mark_spin_poll_catches_change: one CPU only, "
                        "skipped\n");
        return;
    }
    pin_to(cpu[0]);
    /* The setter starts on its CPU: a thread that began on ours would take
     * it (to move away) and end the poll at once. */
    static poll_setter_t p;
    memset(&p, 0, sizeof(p));
    sp_mark_init(&p.go, 0);
    p.delay_ms = 2;
    pthread_attr_t attr;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu[1], &set);
    ck_assert_int_eq(pthread_attr_init(&attr), 0);
    ck_assert_int_eq(pthread_attr_setaffinity_np(&attr, sizeof(set), &set), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, &attr, poll_setter, &p), 0);
    pthread_attr_destroy(&attr);
    sleep_ms(10);

    const uint32_t budget = 200 * MS;
    int caught = 0, gave_way = 0;
    int64_t lag = -1, took = -1;
    for (uint32_t r = 1; r <= 100 && !caught; r++) {
        sp_spin_t s = SP_SPIN_POLL(budget);
        uint32_t old = __atomic_load_n(&p.word, __ATOMIC_ACQUIRE);
        ck_assert_uint_eq(old, r - 1); /* the last round's store is in */
        int64_t t0 = sp_now_ns();
        sp_mark_set(&p.go, r);
        int rc = sp_spin_until_ne(&p.word, old, &s);
        int64_t t1 = sp_now_ns();
        assert_poll_budget(&s, budget);
        if (rc == 1) {
            /* Caught the change itself: the word moved, and not before
             * the setter's 2 ms sleep. */
            ck_assert_uint_eq(__atomic_load_n(&p.word, __ATOMIC_ACQUIRE), r);
            ck_assert_msg(t1 - t0 >= 2 * MS,
                          "returned 1 after %lld us, before the change",
                          (long long)((t1 - t0) / 1000));
            ck_assert_msg(t1 - t0 < budget, "returned 1 after %lld ms",
                          (long long)((t1 - t0) / MS));
            took = t1 - t0;
            lag = t1 - __atomic_load_n(&p.t_set, __ATOMIC_ACQUIRE);
            caught = 1;
        } else {
            ck_assert_int_eq(rc, 0);
            /* Gave way: only ever before its budget ran out. */
            ck_assert_msg(t1 - t0 < budget,
                          "ran its whole %u ms budget "
                          "(%lld ms) past a change at 2 ms",
                          budget / (uint32_t)MS, (long long)((t1 - t0) / MS));
            gave_way++;
        }
        /* Wait for this round's store before the next one. */
        int64_t end = sp_deadline_ms(5000);
        while (__atomic_load_n(&p.word, __ATOMIC_ACQUIRE) != r) {
            ck_assert_msg(sp_now_ns() < end, "the setter is stuck");
            sleep_ms(1);
        }
    }
    sp_mark_set(&p.go, POLL_SETTER_STOP);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_msg(caught, "100 polls of 200 ms each gave way before a "
                          "change 2 ms in");
    fprintf(stderr,
            "mark poll: caught a change %.2f ms in (%lld us after "
            "the store) after %d poll(s) that gave way\n",
            took / 1e6, (long long)(lag / 1000), gave_way);
}
END_TEST

/* No change: 0, within the budget (plus slack for a preemption between
 * two clock reads), and the budget unchanged.  How much of it the poll
 * spends depends on the machine: it gives way to any other work (and on
 * a VM a timer tick in a yield looks like other work), so a long poll
 * mostly ends by a yield; short ones (200 us) mostly by the clock. */
START_TEST(mark_spin_poll_no_change)
{
    uint32_t word = 7;
    const uint32_t budget = 20 * MS;
    int64_t fastest = INT64_MAX, slowest = 0;
    for (int i = 0; i < 5; i++) {
        sp_spin_t s = SP_SPIN_POLL(budget);
        int64_t t0 = sp_now_ns();
        ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
        int64_t took = sp_now_ns() - t0;
        assert_poll_budget(&s, budget);
        ck_assert_uint_eq(word, 7);
        /* Never far beyond: a preemption may stretch one poll. */
        ck_assert_msg(took < budget + 500 * MS, "a %u ms poll took %lld ms",
                      budget / (uint32_t)MS, (long long)(took / MS));
        if (took < fastest)
            fastest = took;
        if (took > slowest)
            slowest = took;
    }
    ck_assert_msg(fastest <= budget + 5 * MS,
                  "every %u ms poll ran past its budget, the shortest %lld us",
                  budget / (uint32_t)MS, (long long)(fastest / 1000));

    /* 200 us polls: the clock ends them (the median of 21 within 500 us,
     * whatever a preemption does to one), and the budget stays whole. */
    enum { NSHORT = 21 };
    const uint32_t small = 200 * 1000;
    int64_t took[NSHORT];
    for (int i = 0; i < NSHORT; i++) {
        sp_spin_t s = SP_SPIN_POLL(small);
        int64_t t0 = sp_now_ns();
        ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
        took[i] = sp_now_ns() - t0;
        assert_poll_budget(&s, small);
    }
    for (int i = 1; i < NSHORT; i++) /* insertion sort */
        for (int j = i; j > 0 && took[j] < took[j - 1]; j--) {
            int64_t x = took[j];
            took[j] = took[j - 1];
            took[j - 1] = x;
        }
    ck_assert_msg(took[NSHORT / 2] <= 500 * 1000,
                  "200 us polls without a change: the median took %lld us "
                  "(shortest %lld, longest %lld): the clock does not end "
                  "them",
                  (long long)(took[NSHORT / 2] / 1000),
                  (long long)(took[0] / 1000),
                  (long long)(took[NSHORT - 1] / 1000));
    fprintf(stderr,
            "mark poll: a %u ms poll without a change returned 0 "
            "after %.2f-%.2f ms; 200 us ones after %.0f us "
            "(median; %.0f-%.0f)\n",
            budget / (uint32_t)MS, fastest / 1e6, slowest / 1e6,
            took[NSHORT / 2] / 1e3, took[0] / 1e3, took[NSHORT - 1] / 1e3);
}
END_TEST

/* A gated poll (sp_spin_gate, the handler's and the backend worker's):
 * while its load word is above the CPUs online it does not poll at all (0
 * at once, without even looking at a word that already changed); at the
 * limit and below it polls as before.  The load is read on each wait, not
 * when the gate is set, and the budget never changes. */
START_TEST(mark_spin_poll_gated)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(sp_cpus_online(), online > 0 ? (uint32_t)online : 1u);
    uint32_t word = 7;
    uint32_t load = sp_cpus_online() + 1;
    const uint32_t budget = 20 * MS;
    sp_spin_t s = SP_SPIN_POLL(budget);
    ck_assert_ptr_null(s.load); /* ungated unless asked */
    sp_spin_gate(&s, &load);
    ck_assert_ptr_eq(s.load, &load);
    ck_assert_uint_eq(s.load_max, sp_cpus_online());
    int64_t t0 = sp_now_ns();
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(sp_spin_until_ne(&word, 7, &s), 0);
        ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 0);
    }
    int64_t took = sp_now_ns() - t0;
    assert_poll_budget(&s, budget);
    ck_assert_msg(took < 50 * MS,
                  "2000 gated polls took %lld us: they poll",
                  (long long)(took / 1000));
    load = sp_cpus_online();
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 1);
    load = 0;
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 1);
    load = UINT32_MAX;
    ck_assert_int_eq(sp_spin_until_ne(&word, 6, &s), 0);
    assert_poll_budget(&s, budget);
}
END_TEST

/* A poll gives way to other work: with a CPU-bound process on its CPU, a
 * 500 ms poll ends at its first yield, in far less than its budget. */
START_TEST(mark_spin_poll_gives_way)
{
    int cpu[2];
    pick_cpus(cpu);
    ck_assert_int_ge(cpu[0], 0);
    pin_to(cpu[0]);
    volatile uint64_t *spins = sp_test_shared(4096);
    pid_t hog = fork();
    ck_assert_int_ge(hog, 0);
    if (hog == 0) {
        /* Inherits the pinning: same CPU as the poller. */
        for (;;)
            __atomic_fetch_add(spins, 1, __ATOMIC_RELAXED);
    }
    /* Wait until the hog runs (we sleep, it gets the CPU). */
    int64_t end = sp_deadline_ms(10000);
    while (__atomic_load_n(spins, __ATOMIC_RELAXED) == 0) {
        if (sp_now_ns() > end)
            break;
        sleep_ms(1);
    }
    uint64_t ran = __atomic_load_n(spins, __ATOMIC_RELAXED);

    uint32_t word = 7;
    const uint32_t budget = 500 * MS;
    int64_t took[5];
    int rc[5];
    for (int i = 0; i < 5; i++) {
        sp_spin_t s = SP_SPIN_POLL(budget);
        int64_t t0 = sp_now_ns();
        rc[i] = sp_spin_until_ne(&word, 7, &s);
        took[i] = sp_now_ns() - t0;
        if (!poll_budget_is(&s, budget))
            rc[i] = -100; /* budget changed */
    }
    kill(hog, SIGKILL);
    int status = 0;
    ck_assert_int_eq(waitpid(hog, &status, 0), hog);
    sp_test_unshare((void *)spins, 4096);
    ck_assert_msg(ran > 0, "the CPU hog never ran");
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(rc[i] == 0,
                      "poll %d with a hog on its CPU returned %d "
                      "(-100: budget changed)",
                      i, rc[i]);
        ck_assert_msg(took[i] < 200 * MS,
                      "poll %d ran %lld ms of its 500 ms budget with a "
                      "CPU-bound process on its CPU",
                      i, (long long)(took[i] / MS));
    }
    fprintf(stderr,
            "mark poll: 500 ms polls with a CPU hog on the same "
            "CPU %d returned after %.3f, %.3f, %.3f, %.3f, %.3f ms\n",
            cpu[0], took[0] / 1e6, took[1] / 1e6, took[2] / 1e6, took[3] / 1e6,
            took[4] / 1e6);
}
END_TEST

Suite *suite_mark(void)
{
    Suite *s = suite_create("mark");
    TCase *tc = tcase_create("single");
    tcase_add_test(tc, mark_init_get_set_cas);
    tcase_add_test(tc, mark_wait_returns_at_once_when_state_differs);
    tcase_add_test(tc, mark_wait_times_out_at_deadline);
    tcase_add_test(tc, mark_futex_primitives);
    tcase_add_test(tc, mark_spin_budget_adapts);
    tcase_add_test(tc, mark_spin_poll_none);
    tcase_add_test(tc, mark_spin_poll_no_change);
    tcase_add_test(tc, mark_spin_poll_gated);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mark_set_wakes_only_a_declared_sleeper);
    tcase_add_test(tc, mark_many_waiters_all_wake);
    tcase_add_test(tc, mark_waiter_killed_while_asleep);
    tcase_add_test(tc, mark_wait_detects_dead_peer);
    tcase_add_test(tc, mark_pingpong_no_lost_wakeup);
    tcase_add_test(tc, mark_spin_poll_catches_change);
    tcase_add_test(tc, mark_spin_poll_gives_way);
    suite_add_tcase(s, tc);
    return s;
}
