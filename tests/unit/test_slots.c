/*
 * test_slots.c - the slot table: attach refusals, claims and releases,
 * concurrent claims from many processes, reclaim of an owner killed with
 * SIGKILL, pid-reuse and generation guards, the ready bitmap and the
 * doorbell (a lost doorbell shows up as a timeout).
 */
#include "sp_unit.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_atomic.h"
#include "sp_error.h"
#include "sp_mark.h"
#include "sp_slots.h"

#define NREG 8
#define NOVER 4
#define NSEG 4
#define SEGSZ 256
#define GEN 7

static void *table_mem;
static size_t table_size;
static sp_slots_t tab;

static void make_table(uint32_t nreg, uint32_t nover)
{
    table_size = sp_slots_bytes(nreg, nover, NSEG, SEGSZ);
    ck_assert_uint_gt(table_size, 0);
    table_mem = sp_test_shared(table_size);
    ck_assert_int_eq(sp_slots_create(&tab, table_mem, table_size, nreg, nover,
                                     NSEG, SEGSZ, GEN), 0);
}

static void drop_table(void)
{
    sp_slots_close(&tab);
    sp_test_unshare(table_mem, table_size);
}

START_TEST(slots_attach_refusals)
{
    make_table(NREG, NOVER);
    sp_slots_t t2;
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, GEN, -1), 0);
    ck_assert_uint_eq(t2.nslots, NREG + NOVER);
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, 0, -1), 0);
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, GEN + 1, -1),
                     SP_ESTALE);
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, 100, GEN, -1),
                     SP_EMSGSIZE);
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size - 1, GEN, -1),
                     SP_EMSGSIZE);
    sp_slots_hdr_t *h = table_mem;
    h->nslots++; /* geometry scribbled: the header checksum catches it */
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, GEN, -1),
                     SP_ECHECKSUM);
    h->nslots--;
    h->seg.magic ^= 1;
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, GEN, -1),
                     SP_EBADMAGIC);
    h->seg.magic ^= 1;
    ck_assert_int_eq(sp_slots_attach(&t2, table_mem, table_size, GEN, -1), 0);
    /* Impossible geometries are refused at creation. */
    ck_assert_uint_eq(sp_slots_bytes(4, 0, 3, SEGSZ), 0);
    ck_assert_uint_eq(sp_slots_bytes(0, 0, NSEG, SEGSZ), 0);
    sp_slots_t t3;
    ck_assert_int_eq(sp_slots_create(&t3, table_mem, table_size, NREG, NOVER,
                                     NSEG, SEGSZ, 0), SP_EINVAL);
    ck_assert_int_eq(sp_slots_create(&t3, table_mem, table_size / 2, NREG,
                                     NOVER, NSEG, SEGSZ, GEN), SP_EINVAL);
    drop_table();
}
END_TEST

START_TEST(slots_claim_release)
{
    make_table(NREG, NOVER);
    long a = sp_slot_claim(&tab, 3);
    ck_assert_int_eq(a, 3);
    sp_slot_t *s = sp_slot(&tab, 3);
    ck_assert_uint_eq(sp_mark_get(&s->state), SP_SLOT_WRITING);
    ck_assert_int_eq(s->owner_pid, getpid());
    ck_assert_uint_eq(s->owner_gen, GEN);
    ck_assert_uint_eq(s->seq, 1);
    ck_assert_uint_eq(sp_slots_inflight(&tab), 1);
    ck_assert_int_eq(sp_slot_owner_check(&tab, 3), 0);
    /* The preferred slot is taken: the overflow pool serves. */
    long b = sp_slot_claim(&tab, 3);
    ck_assert_int_ge(b, NREG);
    ck_assert(sp_slot(&tab, (uint32_t)b)->flags & SP_SLOTF_OVERFLOW);
    long more[NOVER];
    for (int k = 1; k < NOVER; k++) {
        more[k] = sp_slot_claim(&tab, UINT32_MAX);
        ck_assert_int_ge(more[k], NREG);
        ck_assert_int_ne(more[k], b);
    }
    ck_assert_int_eq(sp_slot_claim(&tab, 3), SP_ENOSPC);
    ck_assert_int_eq(sp_slot_claim(&tab, UINT32_MAX), SP_ENOSPC);
    ck_assert_uint_eq(sp_slots_inflight(&tab), NOVER + 1);

    /* Release only from WRITING or DONE. */
    ck_assert_int_eq(sp_slot_transition(&tab, 3, SP_SLOT_WRITING,
                                        SP_SLOT_QUEUED, NULL), 0);
    ck_assert_int_eq(sp_slot_release(&tab, 3), SP_ESTATE);
    uint32_t seen = 99;
    ck_assert_int_eq(sp_slot_transition(&tab, 3, SP_SLOT_WRITING,
                                        SP_SLOT_SENT, &seen), SP_ESTATE);
    ck_assert_uint_eq(seen, SP_SLOT_QUEUED);
    ck_assert_int_eq(sp_slot_transition(&tab, 3, SP_SLOT_QUEUED,
                                        SP_SLOT_DONE, NULL), 0);
    /* Somebody else may not release it. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(sp_slot_release(&tab, 3) == SP_EINVAL ? 0 : 1);
    sp_test_wait_ok(pid);
    ck_assert_int_eq(sp_slot_release(&tab, 3), 0);
    ck_assert_uint_eq(sp_mark_get(&s->state), SP_SLOT_FREE);
    ck_assert_int_eq(s->owner_pid, 0);
    ck_assert_int_eq(sp_slot_owner_check(&tab, 3), SP_ESTATE);
    /* Claimed again: a new request sequence. */
    ck_assert_int_eq(sp_slot_claim(&tab, 3), 3);
    ck_assert_uint_eq(s->seq, 2);
    ck_assert_int_eq(sp_slot_release(&tab, 3), 0);
    ck_assert_int_eq(sp_slot_release(&tab, (uint32_t)b), 0);
    for (int k = 1; k < NOVER; k++)
        ck_assert_int_eq(sp_slot_release(&tab, (uint32_t)more[k]), 0);
    ck_assert_uint_eq(sp_slots_inflight(&tab), 0);
    drop_table();
}
END_TEST

START_TEST(slots_release_resets_rings)
{
    make_table(NREG, NOVER);
    ck_assert_int_eq(sp_slot_claim(&tab, 0), 0);
    sp_ring_t in;
    ck_assert_int_eq(sp_slot_ring_in(&tab, 0, &in), 0);
    ck_assert_int_eq(sp_ring_write(&in, 1, "abc", 3, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&in), 1);
    ck_assert_int_eq(sp_slot_release(&tab, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&in), 0);
    drop_table();
}
END_TEST

/* Many processes claim and release at once; a per-slot holder count in
 * shared memory must never exceed 1. */
START_TEST(slots_concurrent_claims)
{
    enum { NPROC = 16, ITER = 3000 };
    make_table(NREG, NOVER);
    uint32_t *holders = sp_test_shared(4096);
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            srand((unsigned)getpid());
            int bad = 0;
            for (int k = 0; k < ITER && !bad; k++) {
                uint32_t pref = (uint32_t)(rand() % (NREG + 1));
                long i = sp_slot_claim(&tab, pref == NREG ? UINT32_MAX : pref);
                if (i == SP_ENOSPC)
                    continue;
                if (i < 0 || sp_fetch_add(&holders[i], 1) != 0)
                    bad = 1;
                if (sp_slot(&tab, (uint32_t)i)->owner_pid != getpid())
                    bad = 1;
                sp_fetch_sub(&holders[i], 1);
                if (sp_slot_release(&tab, (uint32_t)i) != 0)
                    bad = 1;
            }
            _exit(bad);
        }
    }
    for (int p = 0; p < NPROC; p++)
        sp_test_wait_ok(pids[p]);
    ck_assert_uint_eq(sp_slots_inflight(&tab), 0);
    uint32_t counts[SP_SLOT_NSTATES];
    sp_slots_count(&tab, counts);
    ck_assert_uint_eq(counts[SP_SLOT_FREE], NREG + NOVER);
    ck_assert_uint_gt(tab.live->claims, 0);
    drop_table();
}
END_TEST

struct reclaim_log {
    int calls;
    uint32_t idx, state, seq;
};

static void on_reclaim(void *arg, uint32_t i, uint32_t state, uint32_t seq)
{
    struct reclaim_log *l = arg;
    l->calls++;
    l->idx = i;
    l->state = state;
    l->seq = seq;
}

START_TEST(slots_reclaim_killed_owner)
{
    make_table(NREG, NOVER);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        long i = sp_slot_claim(&tab, 5);
        sp_ring_t in;
        sp_slot_ring_in(&tab, (uint32_t)i, &in);
        sp_ring_write(&in, 1, "request head", 12, 0);
        sp_slot_transition(&tab, (uint32_t)i, SP_SLOT_WRITING, SP_SLOT_QUEUED,
                           NULL);
        sp_slots_notify(&tab, (uint32_t)i);
        char c = (char)i;
        if (write(fds[1], &c, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    char c = 0;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    ck_assert_int_eq(c, 5);
    struct reclaim_log log = {0};
    /* A live owner is never touched. */
    ck_assert_int_eq(sp_slots_reclaim(&tab, on_reclaim, &log), 0);
    ck_assert_int_eq(sp_slot_owner_check(&tab, 5), 0);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(sp_slot_owner_check(&tab, 5), SP_EPEERDEAD);
    ck_assert_uint_eq(sp_slots_inflight(&tab), 1);
    ck_assert_int_eq(sp_slots_reclaim(&tab, on_reclaim, &log), 1);
    ck_assert_int_eq(log.calls, 1);
    ck_assert_uint_eq(log.idx, 5);
    ck_assert_uint_eq(log.state, SP_SLOT_QUEUED);
    ck_assert_uint_eq(log.seq, 1);
    sp_slot_t *s = sp_slot(&tab, 5);
    ck_assert_uint_eq(sp_mark_get(&s->state), SP_SLOT_FREE);
    ck_assert_int_eq(s->owner_pid, 0);
    ck_assert_uint_eq(sp_slots_inflight(&tab), 0);
    ck_assert_uint_eq(tab.live->reclaimed, 1);
    sp_ring_t in;
    ck_assert_int_eq(sp_slot_ring_in(&tab, 5, &in), 0);
    ck_assert_uint_eq(sp_ring_used(&in), 0);
    uint32_t ready[4];
    ck_assert_uint_eq(sp_slots_ready_take(&tab, ready, 4), 0);
    /* Reclaimed once only, and the slot is usable again. */
    ck_assert_int_eq(sp_slots_reclaim(&tab, on_reclaim, &log), 0);
    ck_assert_int_eq(sp_slot_claim(&tab, 5), 5);
    ck_assert_uint_eq(s->seq, 2);
    close(fds[0]);
    close(fds[1]);
    drop_table();
}
END_TEST

START_TEST(slots_pid_reuse_and_generation)
{
    make_table(NREG, NOVER);
    ck_assert_int_eq(sp_slot_claim(&tab, 2), 2);
    sp_slot_t *s = sp_slot(&tab, 2);
    ck_assert_int_eq(sp_slot_owner_check(&tab, 2), 0);
    /* A different start time means "the pid was reused": owner is dead. */
    uint64_t start = s->owner_start;
    ck_assert_uint_ne(start, 0);
    s->owner_start = start + 12345;
    ck_assert_int_eq(sp_slot_owner_check(&tab, 2), SP_EPEERDEAD);
    s->owner_start = start;
    /* An owner stamped with another generation is detected. */
    s->owner_gen = GEN - 1;
    ck_assert_int_eq(sp_slot_owner_check(&tab, 2), SP_ESTALE);
    s->owner_gen = GEN;
    ck_assert_int_eq(sp_slot_owner_check(&tab, 2), 0);
    ck_assert_int_eq(sp_slot_release(&tab, 2), 0);
    drop_table();
}
END_TEST

START_TEST(slots_replayable)
{
    make_table(NREG, NOVER);
    ck_assert_int_eq(sp_slot_claim(&tab, 1), 1);
    sp_slot_t *s = sp_slot(&tab, 1);
    ck_assert(!sp_slot_replayable(s));
    sp_slot_transition(&tab, 1, SP_SLOT_WRITING, SP_SLOT_QUEUED, NULL);
    ck_assert(sp_slot_replayable(s));
    sp_slot_transition(&tab, 1, SP_SLOT_QUEUED, SP_SLOT_SENT, NULL);
    ck_assert(sp_slot_replayable(s));
    s->flags |= SP_SLOTF_BODY_CONSUMED;
    ck_assert(!sp_slot_replayable(s));
    s->flags &= ~SP_SLOTF_BODY_CONSUMED;
    sp_slot_transition(&tab, 1, SP_SLOT_SENT, SP_SLOT_ACCEPTED, NULL);
    ck_assert(!sp_slot_replayable(s));
    /* Even if the state went back (it must not), the sticky flag holds. */
    sp_slot_transition(&tab, 1, SP_SLOT_ACCEPTED, SP_SLOT_SENT, NULL);
    ck_assert(!sp_slot_replayable(s));
    drop_table();
}
END_TEST

START_TEST(slots_ready_bitmap)
{
    make_table(100, 30); /* 130 slots: three bitmap words */
    uint32_t out[200];
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 200), 0);
    /* No proxy waiting: the bit is set, nobody rings. */
    ck_assert_int_eq(sp_slots_notify(&tab, 0), 0);
    ck_assert_int_eq(sp_slots_notify(&tab, 64), 0);
    ck_assert_int_eq(sp_slots_notify(&tab, 129), 0);
    ck_assert_int_eq(sp_slots_notify(&tab, 64), 0);
    ck_assert_uint_eq(tab.live->doorbells, 0);
    /* Batches: take 2, then the rest. */
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 2), 2);
    ck_assert_uint_eq(out[0], 0);
    ck_assert_uint_eq(out[1], 64);
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 200), 1);
    ck_assert_uint_eq(out[0], 129);
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 200), 0);
    /* Idle with nothing ready: may sleep; a notify then rings. */
    ck_assert_int_eq(sp_slots_proxy_idle(&tab), 0);
    struct pollfd pfd = {.fd = tab.doorbell_fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    ck_assert_int_eq(sp_slots_notify(&tab, 7), 1);
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    /* The first notification took the flag: the next one does not ring. */
    ck_assert_uint_eq(tab.live->proxy_waiting, 0);
    ck_assert_int_eq(sp_slots_notify(&tab, 8), 0);
    uint64_t cnt = 0;
    ck_assert_int_eq(read(tab.doorbell_fd, &cnt, sizeof(cnt)), sizeof(cnt));
    ck_assert_uint_eq(cnt, 1);
    ck_assert_int_eq(sp_slots_notify(&tab, 7), 0);
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    sp_slots_proxy_awake(&tab, 0);
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    /* Idle with something ready: do not sleep. */
    ck_assert_int_eq(sp_slots_proxy_idle(&tab), 1);
    ck_assert_uint_eq(tab.live->proxy_waiting, 0);
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 200), 2);
    ck_assert_uint_eq(out[0], 7);
    ck_assert_uint_eq(out[1], 8);
    /* Out-of-range indices are ignored. */
    ck_assert_int_eq(sp_slots_notify(&tab, 130), 0);
    ck_assert_uint_eq(sp_slots_ready_take(&tab, out, 200), 0);
    drop_table();
}
END_TEST

/* A proxy process sleeps in epoll on the doorbell exactly as the real one
 * will; the parent notifies slots one by one and waits for each to be
 * acknowledged.  A lost doorbell leaves the proxy asleep and the parent's
 * wait times out, failing the test. */
START_TEST(slots_doorbell_no_lost_wakeup)
{
    enum { ROUNDS = 20000 };
    make_table(NREG, NOVER);
    sp_mark_t *acks = sp_test_shared(4096); /* one mark per slot */
    for (int i = 0; i < NREG + NOVER; i++)
        sp_mark_init(&acks[i], 0);
    pid_t pid = fork();
    if (pid == 0) {
        int ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN};
        epoll_ctl(ep, EPOLL_CTL_ADD, tab.doorbell_fd, &ev);
        int done = 0;
        while (done < ROUNDS) {
            uint32_t ready[16];
            uint32_t n = sp_slots_ready_take(&tab, ready, 16);
            for (uint32_t k = 0; k < n; k++) {
                sp_mark_set(&acks[ready[k]], sp_mark_get(&acks[ready[k]]) + 1);
                done++;
            }
            if (n == 0 && !sp_slots_proxy_idle(&tab)) {
                if (epoll_wait(ep, &ev, 1, 10000) == 0)
                    _exit(3); /* slept 10 s: a doorbell was lost */
                sp_slots_proxy_awake(&tab, 1);
            }
        }
        _exit(0);
    }
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t i = (uint32_t)(r % (NREG + NOVER));
        uint32_t before = sp_mark_get(&acks[i]);
        sp_slots_notify(&tab, i);
        int rc = sp_mark_wait(&acks[i], before, sp_deadline_ms(5000), NULL,
                              NULL);
        ck_assert_msg(rc == (int)before + 1, "round %d: ack wait %d", r, rc);
    }
    sp_test_wait_ok(pid);
    ck_assert_uint_gt(tab.live->doorbells, 0);
    drop_table();
}
END_TEST

/* The owner waits on its slot's mark while another process drives the
 * life cycle, as the proxy will. */
START_TEST(slots_lifecycle_across_processes)
{
    make_table(NREG, NOVER);
    ck_assert_int_eq(sp_slot_claim(&tab, 4), 4);
    sp_slot_transition(&tab, 4, SP_SLOT_WRITING, SP_SLOT_QUEUED, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        static const uint32_t path[] = {SP_SLOT_QUEUED, SP_SLOT_SENT,
                                        SP_SLOT_ACCEPTED, SP_SLOT_RESPONDING,
                                        SP_SLOT_DONE};
        for (int k = 0; k + 1 < 5; k++) {
            usleep(2000);
            if (sp_slot_transition(&tab, 4, path[k], path[k + 1], NULL) != 0)
                _exit(1);
        }
        _exit(0);
    }
    uint32_t st = SP_SLOT_QUEUED;
    while (st != SP_SLOT_DONE) {
        int rc = sp_slot_wait(&tab, 4, st, sp_deadline_ms(5000), NULL, NULL);
        ck_assert_int_gt(rc, (int)st);
        st = (uint32_t)rc;
    }
    sp_test_wait_ok(pid);
    ck_assert(sp_slot(&tab, 4)->flags & SP_SLOTF_WAS_ACCEPTED);
    ck_assert_int_eq(sp_slot_release(&tab, 4), 0);
    ck_assert_str_eq(sp_slot_state_name(SP_SLOT_RESPONDING), "responding");
    drop_table();
}
END_TEST

Suite *suite_slots(void)
{
    Suite *s = suite_create("slots");
    TCase *tc = tcase_create("slots");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, slots_attach_refusals);
    tcase_add_test(tc, slots_claim_release);
    tcase_add_test(tc, slots_release_resets_rings);
    tcase_add_test(tc, slots_concurrent_claims);
    tcase_add_test(tc, slots_reclaim_killed_owner);
    tcase_add_test(tc, slots_pid_reuse_and_generation);
    tcase_add_test(tc, slots_replayable);
    tcase_add_test(tc, slots_ready_bitmap);
    tcase_add_test(tc, slots_doorbell_no_lost_wakeup);
    tcase_add_test(tc, slots_lifecycle_across_processes);
    suite_add_tcase(s, tc);
    return s;
}
