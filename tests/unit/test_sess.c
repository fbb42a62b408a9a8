/*
 * test_sess.c - the session store: the API (create, get, put, delete,
 * touch, iterate, stats), persistence across close/open, expiry on access
 * and by sweep, the busy indicator between processes and between threads
 * (including a holder killed with SIGKILL), counters incremented by 2 and
 * by 8 processes with no lost update, crash rounds (a writer killed at
 * random moments of a put loop; every session is then the old or the new
 * value, and nothing leaks), a process killed holding the store lock
 * between handing a block over and publishing it, corruption (header,
 * index entries, values on disk and in memory, truncation, garbage),
 * full stores with and without eviction, and resizing by configuration.
 */
#include "sp_unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_atomic.h"
#include "sp_crc.h"
#include "sp_error.h"
#include "sp_sess.h"

static char dir[64], path[128];
static char logbuf[16384];
static sp_sess_t st;

static void test_log(void *arg, const char *msg)
{
    (void)arg;
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", msg);
}

static int logged(const char *tag)
{
    return strstr(logbuf, tag) != NULL;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sp_sess_XXXXXX");
    ck_assert_ptr_ne(mkdtemp(dir), NULL);
    snprintf(path, sizeof(path), "%s/sessions", dir);
    logbuf[0] = '\0';
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        char p[512];
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static sp_sess_conf_t small_conf(void)
{
    sp_sess_conf_t c;
    memset(&c, 0, sizeof(c));
    c.max_sessions = 256; /* 512 entries */
    c.data_bytes = 1 << 20;
    c.max_value = 4096;
    c.min_block = 64;
    c.create = 1;
    return c;
}

static void open_small(void)
{
    sp_sess_conf_t c = small_conf();
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
}

static uint64_t used_blocks(const sp_sess_t *s)
{
    sp_sess_stats_t ss;
    sp_sess_stats(s, &ss);
    uint64_t n = 0;
    for (unsigned k = 0; k < ss.pool.norders; k++)
        n += ss.pool.nused[k];
    return n;
}

static uint64_t live_count(const sp_sess_t *s)
{
    sp_sess_stats_t ss;
    sp_sess_stats(s, &ss);
    return ss.live;
}

static int64_t later(int64_t ms)
{
    return sp_sess_now() + ms * SP_NSEC_PER_MSEC;
}

START_TEST(sess_basic)
{
    setup();
    open_small();
    char id[SP_SESS_ID_LEN + 1], buf[4096];
    size_t len = 0;
    ck_assert_int_eq(sp_sess_create(&st, "hello", 5, 0, id), 0);
    ck_assert_uint_eq(strlen(id), 32);
    for (int i = 0; i < 32; i++)
        ck_assert(strchr("0123456789abcdef", id[i]) != NULL);
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0), 0);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    /* Upper-case hex names the same session. */
    char up[SP_SESS_ID_LEN + 1];
    for (int i = 0; i <= 32; i++)
        up[i] = (char)(id[i] >= 'a' ? id[i] - 32 : id[i]);
    ck_assert_int_eq(sp_sess_get(&st, up, buf, sizeof(buf), &len, 0), 0);
    /* Buffer too small: the size needed. */
    ck_assert_int_eq(sp_sess_get(&st, id, buf, 3, &len, 0), SP_EMSGSIZE);
    ck_assert_uint_eq(len, 5);
    /* Copy-on-write update, then an empty value. */
    ck_assert_int_eq(sp_sess_put(&st, id, "world!", 6, SP_SESS_KEEP_EXPIRY, 0),
                     0);
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0), 0);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(buf, "world!", 6), 0);
    ck_assert_int_eq(sp_sess_put(&st, id, NULL, 0, 0, 0), 0);
    ck_assert_int_eq(sp_sess_get(&st, id, NULL, 0, &len, 0), 0);
    ck_assert_uint_eq(len, 0);
    /* Refusals. */
    ck_assert_int_eq(sp_sess_get(&st, "abc", buf, 10, &len, 0), SP_EINVAL);
    ck_assert_int_eq(
        sp_sess_get(&st, "0123456789abcdef0123456789abcdeg", buf, 10, &len, 0),
        SP_EINVAL);
    char longer[40];
    snprintf(longer, sizeof(longer), "%s0", id);
    ck_assert_int_eq(sp_sess_get(&st, longer, buf, 10, &len, 0), SP_EINVAL);
    ck_assert_int_eq(
        sp_sess_get(&st, "0123456789abcdef0123456789abcdef", buf, 10, &len, 0),
        SP_EUNKNOWN);
    static char big[4097];
    ck_assert_int_eq(sp_sess_create(&st, big, 4097, 0, id), SP_EMSGSIZE);
    ck_assert_int_eq(sp_sess_put(&st, id, big, 4097, 0, 0), SP_EMSGSIZE);
    ck_assert_int_eq(sp_sess_put(&st, id, big, 4096, 0, 0), 0);
    /* Delete. */
    ck_assert_int_eq(sp_sess_delete(&st, id, 0), 0);
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0),
                     SP_EUNKNOWN);
    ck_assert_int_eq(sp_sess_delete(&st, id, 0), SP_EUNKNOWN);
    ck_assert_int_eq(sp_sess_put(&st, id, "x", 1, 0, 0), SP_EUNKNOWN);
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.live, 0);
    ck_assert_uint_eq(ss.creates, 1);
    ck_assert_uint_eq(ss.puts, 3);
    ck_assert_uint_eq(ss.deletes, 1);
    ck_assert_uint_eq(ss.pool.used_bytes, 0);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    ck_assert_str_eq(logbuf, "");
    sp_sess_close(&st);
    teardown();
}
END_TEST

struct iter_acc {
    int n;
    uint64_t versions;
    int stop_after;
};

static int on_iter(void *arg, const sp_sess_info_t *info)
{
    struct iter_acc *a = arg;
    a->n++;
    a->versions += info->version;
    ck_assert_uint_eq(strlen(info->id), 32);
    return a->stop_after != 0 && a->n == a->stop_after;
}

START_TEST(sess_persist_and_iterate)
{
    enum { N = 100 };
    setup();
    open_small();
    static char ids[N][SP_SESS_ID_LEN + 1];
    char val[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(val, sizeof(val), "value %d", i);
        ck_assert_int_eq(sp_sess_create(&st, val, (size_t)n, 0, ids[i]), 0);
    }
    /* Version 2 for the first half. */
    for (int i = 0; i < N / 2; i++) {
        int n = snprintf(val, sizeof(val), "value %d v2", i);
        ck_assert_int_eq(
            sp_sess_put(&st, ids[i], val, (size_t)n, SP_SESS_KEEP_EXPIRY, 0),
            0);
    }
    struct iter_acc a = {0};
    ck_assert_int_eq(sp_sess_iterate(&st, on_iter, &a), 0);
    ck_assert_int_eq(a.n, N);
    ck_assert_uint_eq(a.versions, N + N / 2);
    struct iter_acc b = {.stop_after = 7};
    ck_assert_int_eq(sp_sess_iterate(&st, on_iter, &b), 1);
    ck_assert_int_eq(b.n, 7);
    sp_sess_close(&st);
    /* Reopened alone: recovery keeps everything, reports nothing. */
    open_small();
    ck_assert_str_eq(logbuf, "");
    ck_assert_uint_eq(live_count(&st), N);
    ck_assert_uint_eq(used_blocks(&st), N);
    for (int i = 0; i < N; i++) {
        char buf[64], want[64];
        size_t len;
        snprintf(want, sizeof(want), i < N / 2 ? "value %d v2" : "value %d", i);
        ck_assert_int_eq(sp_sess_get(&st, ids[i], buf, sizeof(buf), &len, 0),
                         0);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert_int_eq(memcmp(buf, want, len), 0);
    }
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.opens, 2);
    ck_assert_uint_eq(ss.recoveries, 1); /* the first open created it */
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    /* A second handle in another process attaches to the live state. */
    pid_t pid = fork();
    if (pid == 0) {
        sp_sess_t s2;
        sp_sess_conf_t c = small_conf();
        char buf[64];
        size_t len;
        if (sp_sess_open(&s2, path, &c, NULL, NULL) != 0 ||
            sp_sess_get(&s2, ids[N - 1], buf, sizeof(buf), &len, 0) != 0 ||
            sp_sess_put(&s2, ids[N - 1], "from child", 10, 0, 0) != 0)
            _exit(1);
        sp_sess_close(&s2);
        _exit(0);
    }
    sp_test_wait_ok(pid);
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.recoveries, 1); /* the child was not alone */
    char buf[64];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, ids[N - 1], buf, sizeof(buf), &len, 0),
                     0);
    ck_assert_int_eq(memcmp(buf, "from child", 10), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

START_TEST(sess_expiry)
{
    setup();
    open_small();
    char a[33], b[33], c[33], d[33], buf[16];
    size_t len;
    ck_assert_int_eq(sp_sess_create(&st, "a", 1, later(100), a), 0);
    ck_assert_int_eq(sp_sess_create(&st, "b", 1, later(100), b), 0);
    ck_assert_int_eq(sp_sess_create(&st, "c", 1, 0, c), 0);
    ck_assert_int_eq(sp_sess_create(&st, "d", 1, later(100), d), 0);
    ck_assert_int_eq(sp_sess_create(&st, "x", 1, -5, buf), SP_EINVAL);
    ck_assert_int_eq(sp_sess_get(&st, a, buf, sizeof(buf), &len, 0), 0);
    ck_assert_int_eq(sp_sess_touch(&st, d, later(60000), 0), 0);
    usleep(150 * 1000);
    /* On access. */
    ck_assert_int_eq(sp_sess_get(&st, a, buf, sizeof(buf), &len, 0),
                     SP_EUNKNOWN);
    ck_assert_int_eq(sp_sess_put(&st, b, "z", 1, 0, 0), SP_EUNKNOWN);
    ck_assert_uint_eq(live_count(&st), 2);
    ck_assert_int_eq(sp_sess_get(&st, d, buf, sizeof(buf), &len, 0), 0);
    /* By sweep. */
    ck_assert_int_eq(sp_sess_touch(&st, c, later(50), 0), 0);
    ck_assert_int_eq(sp_sess_expire(&st), 0);
    usleep(80 * 1000);
    ck_assert_int_eq(sp_sess_expire(&st), 1);
    ck_assert_int_eq(sp_sess_get(&st, c, buf, sizeof(buf), &len, 0),
                     SP_EUNKNOWN);
    ck_assert_uint_eq(live_count(&st), 1);
    /* Expired while the file was closed: dropped on open, silently. */
    ck_assert_int_eq(sp_sess_touch(&st, d, later(30), 0), 0);
    sp_sess_close(&st);
    usleep(50 * 1000);
    open_small();
    ck_assert_uint_eq(live_count(&st), 0);
    ck_assert_uint_eq(used_blocks(&st), 0);
    ck_assert_str_eq(logbuf, "");
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.expired, 4);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* The busy indicator between two processes. */
START_TEST(sess_busy_two_processes)
{
    setup();
    open_small();
    char id[33];
    ck_assert_int_eq(sp_sess_create(&st, "v1", 2, 0, id), 0);
    sp_sess_hold_t h;
    ck_assert_int_eq(sp_sess_acquire(&st, id, 0, &h), 0);
    ck_assert_int_eq(sp_sess_acquire(&st, id, 0, &h), SP_ESTATE);
    int go[2], done[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(done), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char buf[16];
        size_t len;
        sp_sess_hold_t h2;
        int bad = 0;
        if (sp_sess_get(&st, id, buf, sizeof(buf), &len, 0) != SP_EBUSY)
            bad |= 1;
        int64_t t0 = sp_now_ns();
        if (sp_sess_get(&st, id, buf, sizeof(buf), &len, sp_deadline_ms(60)) !=
                SP_EBUSY ||
            sp_now_ns() - t0 < 55 * SP_NSEC_PER_MSEC)
            bad |= 2;
        if (sp_sess_put(&st, id, "no", 2, 0, 0) != SP_EBUSY ||
            sp_sess_delete(&st, id, 0) != SP_EBUSY ||
            sp_sess_touch(&st, id, 0, 0) != SP_EBUSY ||
            sp_sess_acquire(&st, id, 0, &h2) != SP_EBUSY ||
            sp_sess_release(&st, &h) != SP_ESTATE)
            bad |= 4;
        if (write(go[1], "x", 1) != 1)
            bad |= 8;
        /* Now wait for real: the parent writes v2 and releases. */
        if (sp_sess_get(&st, id, buf, sizeof(buf), &len,
                        sp_deadline_ms(5000)) != 0 ||
            len != 2 || memcmp(buf, "v2", 2) != 0)
            bad |= 16;
        if (sp_sess_acquire(&st, id, sp_deadline_ms(5000), &h2) != 0 ||
            sp_sess_put(&st, id, "v3", 2, 0, 0) != 0 ||
            sp_sess_release(&st, &h2) != 0)
            bad |= 32;
        _exit(bad);
    }
    char c;
    ck_assert_int_eq(read(go[0], &c, 1), 1);
    usleep(20 * 1000); /* the child sleeps in its get */
    ck_assert_int_eq(sp_sess_put(&st, id, "v2", 2, 0, 0), 0); /* holder */
    ck_assert_int_eq(sp_sess_release(&st, &h), 0);
    ck_assert_int_eq(sp_sess_release(&st, &h), SP_ESTATE);
    sp_test_wait_ok(pid);
    char buf[16];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0), 0);
    ck_assert_int_eq(memcmp(buf, "v3", 2), 0);
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_ge(ss.busy_timeouts, 6);
    ck_assert_uint_ge(ss.busy_waits, 2);
    close(go[0]);
    close(go[1]);
    close(done[0]);
    close(done[1]);
    sp_sess_close(&st);
    teardown();
}
END_TEST

struct thr_arg {
    const char *id;
    int step; /* 1: acquired, 2: may release, 3: released */
    int rc;
};

static void *holder_thread(void *p)
{
    struct thr_arg *a = p;
    sp_sess_hold_t h;
    a->rc = sp_sess_acquire(&st, a->id, 0, &h);
    sp_store_release(&a->step, 1);
    while (sp_load_acquire(&a->step) != 2)
        usleep(1000);
    if (a->rc == 0)
        a->rc = sp_sess_release(&st, &h);
    sp_store_release(&a->step, 3);
    return NULL;
}

/* Threads of one process are distinct holders. */
START_TEST(sess_busy_threads)
{
    setup();
    open_small();
    char id[33], buf[8];
    size_t len;
    ck_assert_int_eq(sp_sess_create(&st, "t", 1, 0, id), 0);
    struct thr_arg a = {.id = id};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, holder_thread, &a), 0);
    while (sp_load_acquire(&a.step) != 1)
        usleep(1000);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0), SP_EBUSY);
    sp_store_release(&a.step, 2);
    ck_assert_int_eq(
        sp_sess_get(&st, id, buf, sizeof(buf), &len, sp_deadline_ms(5000)), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(a.rc, 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* A holder killed with SIGKILL: a waiter takes the indicator over; the
 * sweep frees it too. */
START_TEST(sess_busy_holder_killed)
{
    setup();
    open_small();
    char id[2][33];
    ck_assert_int_eq(sp_sess_create(&st, "a", 1, 0, id[0]), 0);
    ck_assert_int_eq(sp_sess_create(&st, "b", 1, 0, id[1]), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        sp_sess_hold_t h0, h1;
        if (sp_sess_acquire(&st, id[0], 0, &h0) != 0 ||
            sp_sess_acquire(&st, id[1], 0, &h1) != 0 ||
            write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    sp_sess_hold_t h;
    ck_assert_int_eq(sp_sess_acquire(&st, id[0], 0, &h), SP_EBUSY);
    ck_assert_int_eq(sp_sess_expire(&st), 0); /* live holders stay */
    ck_assert_int_eq(sp_sess_acquire(&st, id[1], 0, &h), SP_EBUSY);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    /* A waiter with a deadline finds the holder dead. */
    int64_t t0 = sp_now_ns();
    ck_assert_int_eq(sp_sess_acquire(&st, id[0], sp_deadline_ms(5000), &h), 0);
    ck_assert_int_lt(sp_now_ns() - t0, 1000 * SP_NSEC_PER_MSEC);
    ck_assert_msg(logged("SPS0015"), "log: %s", logbuf);
    ck_assert_int_eq(sp_sess_put(&st, id[0], "A", 1, 0, 0), 0);
    ck_assert_int_eq(sp_sess_release(&st, &h), 0);
    /* The sweep releases the other. */
    ck_assert_int_eq(sp_sess_expire(&st), 0);
    ck_assert_int_eq(sp_sess_acquire(&st, id[1], 0, &h), 0);
    ck_assert_int_eq(sp_sess_release(&st, &h), 0);
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.busy_reclaimed, 2);
    close(fds[0]);
    close(fds[1]);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* nproc processes each add `incs` to every one of nsess counters, under
 * the busy indicator; odd children use the inherited handle, even ones
 * open their own. */
static void counters(int nproc, int incs, int nsess)
{
    setup();
    open_small();
    char ids[8][33];
    for (int k = 0; k < nsess; k++)
        ck_assert_int_eq(sp_sess_create(&st, "0", 1, 0, ids[k]), 0);
    pid_t pids[16];
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        if (pids[p] != 0)
            continue;
        sp_sess_t own, *s = &st;
        if (p % 2 == 0) {
            sp_sess_conf_t c = small_conf();
            if (sp_sess_open(&own, path, &c, NULL, NULL) != 0)
                _exit(1);
            s = &own;
        }
        for (int i = 0; i < incs; i++) {
            for (int k = 0; k < nsess; k++) {
                sp_sess_hold_t h;
                char buf[32];
                size_t len;
                if (sp_sess_acquire(s, ids[k], sp_deadline_ms(10000), &h) !=
                        0 ||
                    sp_sess_get(s, ids[k], buf, sizeof(buf) - 1, &len, 0) != 0)
                    _exit(2);
                buf[len] = '\0';
                int n = snprintf(buf, sizeof(buf), "%ld", atol(buf) + 1);
                if (sp_sess_put(s, ids[k], buf, (size_t)n, SP_SESS_KEEP_EXPIRY,
                                0) != 0 ||
                    sp_sess_release(s, &h) != 0)
                    _exit(3);
            }
        }
        _exit(0);
    }
    for (int p = 0; p < nproc; p++)
        sp_test_wait_ok(pids[p]);
    for (int k = 0; k < nsess; k++) {
        char buf[32];
        size_t len;
        ck_assert_int_eq(
            sp_sess_get(&st, ids[k], buf, sizeof(buf) - 1, &len, 0), 0);
        buf[len] = '\0';
        ck_assert_int_eq(atol(buf), nproc * incs);
    }
    ck_assert_uint_eq(used_blocks(&st), (uint64_t)nsess);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    sp_sess_close(&st);
    teardown();
}

START_TEST(sess_counter_two_processes)
{
    counters(2, 600, 1);
}
END_TEST

START_TEST(sess_counter_many_processes)
{
    counters(8, 150, 3);
}
END_TEST

/* ---- crash rounds ---- */

enum { CR_SESS = 16 };

struct crash_shared {
    char ids[CR_SESS][33];
    uint32_t committed[CR_SESS];
};

static size_t make_val(unsigned char *buf, uint32_t k, uint32_t c)
{
    uint32_t len = 16 + (c * 37u + k * 11u) % 3000;
    memcpy(buf, &k, 4);
    memcpy(buf + 4, &c, 4);
    memcpy(buf + 8, &len, 4);
    for (uint32_t i = 12; i < len; i++)
        buf[i] = (unsigned char)(k * 131u + c * 7u + i);
    return len;
}

/* The counter stored in a well-formed value of session k, or -1. */
static long val_counter(const unsigned char *buf, size_t len, uint32_t k)
{
    uint32_t kk, c, l;
    if (len < 12)
        return -1;
    memcpy(&kk, buf, 4);
    memcpy(&c, buf + 4, 4);
    memcpy(&l, buf + 8, 4);
    if (kk != k || l != len)
        return -1;
    for (uint32_t i = 12; i < len; i++)
        if (buf[i] != (unsigned char)(k * 131u + c * 7u + i))
            return -1;
    return c;
}

static void writer_loop(sp_sess_t *s, struct crash_shared *sh, unsigned seed)
{
    static unsigned char buf[4096];
    srand(seed);
    for (;;) {
        uint32_t k = (uint32_t)rand() % CR_SESS;
        uint32_t c = sp_load_acquire(&sh->committed[k]) + 1;
        size_t len = make_val(buf, k, c);
        int rc = sp_sess_put(s, sh->ids[k], buf, len, SP_SESS_KEEP_EXPIRY,
                             sp_deadline_ms(5000));
        if (rc != 0)
            _exit(10 + (rc < 0 ? -rc : rc));
        sp_store_release(&sh->committed[k], c);
    }
}

static void verify_round(sp_sess_t *s, struct crash_shared *sh, int round)
{
    static unsigned char buf[4096];
    for (uint32_t k = 0; k < CR_SESS; k++) {
        size_t len;
        int rc = sp_sess_get(s, sh->ids[k], buf, sizeof(buf), &len,
                             sp_deadline_ms(5000));
        ck_assert_msg(rc == 0, "round %d session %u: get %d", round, k, rc);
        long c = val_counter(buf, len, k);
        uint32_t want = sh->committed[k];
        ck_assert_msg(c == want || c == (long)want + 1,
                      "round %d session %u: counter %ld, committed %u", round,
                      k, c, want);
        sh->committed[k] = (uint32_t)c;
    }
}

/* Writer killed at random moments of its put loop, many rounds.  keep_open:
 * the parent keeps the store open (the survivors repair: lock takeover,
 * busy reclaim, reaping); otherwise it reopens alone after each kill (the
 * open-time recovery repairs). */
static void crash_rounds(int keep_open, int rounds)
{
    setup();
    open_small();
    struct crash_shared *sh = sp_test_shared(sizeof(*sh));
    static unsigned char buf[4096];
    for (uint32_t k = 0; k < CR_SESS; k++) {
        size_t len = make_val(buf, k, 0);
        ck_assert_int_eq(sp_sess_create(&st, buf, len, 0, sh->ids[k]), 0);
    }
    if (!keep_open)
        sp_sess_close(&st);
    srand(4242 + keep_open);
    for (int r = 0; r < rounds; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (!keep_open) {
                sp_sess_conf_t c = small_conf();
                if (sp_sess_open(&st, path, &c, NULL, NULL) != 0)
                    _exit(2);
            }
            writer_loop(&st, sh, (unsigned)r + 1);
        }
        usleep((useconds_t)(500 + rand() % 4000));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "writer exited %d",
                      WEXITSTATUS(status));
        if (!keep_open)
            open_small();
        verify_round(&st, sh, r);
        sp_sess_expire(&st); /* reap what the writer held */
        ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
        ck_assert_uint_eq(live_count(&st), CR_SESS);
        ck_assert_msg(used_blocks(&st) == CR_SESS,
                      "round %d: %llu blocks in use for %d sessions", r,
                      (unsigned long long)used_blocks(&st), CR_SESS);
        if (!keep_open)
            sp_sess_close(&st);
    }
    uint64_t total = 0;
    for (uint32_t k = 0; k < CR_SESS; k++)
        total += sh->committed[k];
    ck_assert_uint_gt(total, (uint64_t)rounds);
    /* No entry was ever dropped as damaged. */
    ck_assert_msg(!logged("SPS0010") && !logged("SPS0016"), "log: %s", logbuf);
    if (keep_open)
        sp_sess_close(&st);
    fprintf(stderr,
            "crash rounds (%s): %d rounds, %llu puts committed; "
            "lock takeovers logged: %s\n",
            keep_open ? "kept open" : "reopened", rounds,
            (unsigned long long)total, logged("SPP0001") ? "yes" : "no");
    sp_test_unshare(sh, sizeof(*sh));
    teardown();
}

START_TEST(sess_crash_kept_open)
{
    crash_rounds(1, 80);
}
END_TEST

START_TEST(sess_crash_reopened)
{
    crash_rounds(0, 60);
}
END_TEST

/* Killed holding the store lock after handing its new block to the shared
 * owner, before publishing: the next locker sweeps the block. */
START_TEST(sess_lock_holder_killed)
{
    setup();
    open_small();
    char id[33];
    ck_assert_int_eq(sp_sess_create(&st, "old", 3, 0, id), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t off;
        uint32_t me;
        if (sp_pool_alloc(&st.pool, 1000, &off) != 0 ||
            sp_pool_lock(&st.pool, sp_deadline_ms(1000)) != 0 ||
            sp_pool_self_owner_locked(&st.pool, &me) != 0 ||
            sp_pool_give_locked(&st.pool, off, me, SP_POOL_SHARED) != 0 ||
            write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_uint_eq(used_blocks(&st), 2);
    ck_assert_int_eq(sp_sess_put(&st, id, "new", 3, 0, 0), 0);
    ck_assert_msg(logged("SPP0001") && logged("SPS0012"), "log: %s", logbuf);
    char buf[8];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, id, buf, sizeof(buf), &len, 0), 0);
    ck_assert_int_eq(memcmp(buf, "new", 3), 0);
    sp_sess_expire(&st);
    ck_assert_uint_eq(used_blocks(&st), 1);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    close(fds[0]);
    close(fds[1]);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* ---- corruption ---- */

static void flip(uint64_t off, unsigned char mask)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

struct layout {
    uint64_t index_off, data_off, total;
    unsigned min_shift;
};

static struct layout layout_of(const sp_sess_t *s)
{
    struct layout l = {s->hdr->index_off, s->hdr->data_off,
                       s->hdr->seg.total_size, s->hdr->min_shift};
    return l;
}

/* File offset of the value of session id (open store). */
static uint64_t value_off(const sp_sess_t *s, const char *id, uint32_t *slot)
{
    for (uint32_t i = 0; i < s->nentries; i++) {
        const sp_sess_entry_t *e = &s->ent[i];
        char hex[33];
        static const char digits[] = "0123456789abcdef";
        if (e->ref == 0)
            continue;
        for (int j = 0; j < 16; j++) {
            hex[2 * j] = digits[e->id[j] >> 4];
            hex[2 * j + 1] = digits[e->id[j] & 15];
        }
        hex[32] = '\0';
        if (strcmp(hex, id) == 0) {
            *slot = i;
            return s->hdr->data_off +
                   ((e->ref & 0xffffffffull) << s->hdr->min_shift);
        }
    }
    ck_abort_msg("session not found");
    return 0;
}

static int gets_ok(char ids[][33], int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char buf[4096];
        size_t len;
        int rc = sp_sess_get(&st, ids[i], buf, sizeof(buf), &len, 0);
        if (rc == 0) {
            char want[64];
            snprintf(want, sizeof(want), "value-%d", i);
            ck_assert_int_eq(memcmp(buf, want, strlen(want)), 0);
            ok++;
        } else {
            ck_assert_int_eq(rc, SP_EUNKNOWN);
        }
    }
    return ok;
}

static void fill_sessions(char ids[][33], int n, size_t size)
{
    static char val[4096];
    for (int i = 0; i < n; i++) {
        memset(val, 'v', size);
        int m = snprintf(val, sizeof(val), "value-%d", i);
        val[m] = '.';
        ck_assert_int_eq(sp_sess_create(&st, val, size, 0, ids[i]), 0);
    }
}

START_TEST(sess_corrupt_index_and_values)
{
    enum { N = 60 };
    setup();
    open_small();
    static char ids[N][33];
    fill_sessions(ids, N, 100);
    struct layout l = layout_of(&st);
    uint32_t slot[10];
    uint64_t voff[10];
    for (int i = 0; i < 10; i++)
        voff[i] = value_off(&st, ids[i], &slot[i]);
    sp_sess_close(&st);
    uint64_t eoff[10];
    for (int i = 0; i < 10; i++)
        eoff[i] = l.index_off + (uint64_t)slot[i] * 64;
    flip(eoff[0] + 8, 0x01);      /* id: another session's record */
    flip(eoff[1] + 0, 0x01);      /* ref: block index moves */
    flip(eoff[2] + 4, 0x40);      /* ref: order out of range */
    flip(eoff[3] + 6, 0x02);      /* ref: version tag */
    flip(eoff[4] + 7, 0x80);      /* ref: "present" bit gone */
    flip(voff[5] + 48 + 3, 0x10); /* value byte */
    flip(voff[6] + 8, 0x01);      /* record length */
    flip(voff[7] + 0, 0xff);      /* record magic */
    flip(voff[8] + 20, 0x01);     /* record id */
    flip(voff[9] + 33, 0x01);     /* record version */
    open_small();
    ck_assert_msg(logged("SPS0010") && logged("SPS0011"), "log: %s", logbuf);
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_eq(ss.dropped_on_open, 10);
    ck_assert_uint_eq(ss.live, N - 10);
    ck_assert_uint_eq(used_blocks(&st), N - 10);
    ck_assert_int_eq(gets_ok(ids, N), N - 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(sp_sess_get(&st, ids[i], NULL, 0, &(size_t){0}, 0),
                         SP_EUNKNOWN);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    /* The store keeps working. */
    char id[33];
    ck_assert_int_eq(sp_sess_create(&st, "fresh", 5, 0, id), 0);
    /* Damage in memory while open: the reader catches it, drops it. */
    logbuf[0] = '\0';
    uint32_t s11;
    uint64_t v11 = value_off(&st, ids[11], &s11);
    st.base[v11 + 48] ^= 0x20;
    char buf[256];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, ids[11], buf, sizeof(buf), &len, 0),
                     SP_ECHECKSUM);
    ck_assert_msg(logged("SPS0016"), "log: %s", logbuf);
    ck_assert_int_eq(sp_sess_get(&st, ids[11], buf, sizeof(buf), &len, 0),
                     SP_EUNKNOWN);
    ck_assert_uint_eq(used_blocks(&st), N - 10);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

START_TEST(sess_corrupt_header)
{
    setup();
    open_small();
    static char ids[5][33];
    fill_sessions(ids, 5, 10);
    sp_sess_close(&st);
    flip(50, 0x01); /* nentries: the header checksum fails */
    open_small();
    ck_assert_msg(logged("SPS0003"), "log: %s", logbuf);
    ck_assert_int_eq(gets_ok(ids, 5), 0);
    char id[33];
    ck_assert_int_eq(sp_sess_create(&st, "value-0", 7, 0, id), 0);
    ck_assert_uint_eq(live_count(&st), 1);
    sp_sess_close(&st);
    /* A header that is not ours at all. */
    logbuf[0] = '\0';
    flip(0, 0xff);
    open_small();
    ck_assert_msg(logged("SPS0003") && strstr(logbuf, "bad magic"), "log: %s",
                  logbuf);
    ck_assert_uint_eq(live_count(&st), 0);
    /* While another process has it open, a bad header is not recreated
     * under it: the opener is refused. */
    pid_t pid = fork();
    if (pid == 0) {
        logbuf[0] = '\0';
        flip(60, 0x01);
        sp_sess_t s2;
        sp_sess_conf_t c = small_conf();
        _exit(sp_sess_open(&s2, path, &c, test_log, NULL) == SP_ECHECKSUM &&
                      logged("SPS0002")
                  ? 0
                  : 1);
    }
    sp_test_wait_ok(pid);
    ck_assert_int_eq(sp_sess_create(&st, "still", 5, 0, id), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

START_TEST(sess_truncated_and_garbage)
{
    enum { N = 150 };
    setup();
    open_small();
    static char ids[N][33];
    fill_sessions(ids, N, 2100); /* 4 KiB blocks: most of the data */
    struct layout l = layout_of(&st);
    sp_sess_close(&st);
    /* Cut in the middle of the data region. */
    ck_assert_int_eq(
        truncate(path, (off_t)(l.data_off + (l.total - l.data_off) / 2)), 0);
    open_small();
    ck_assert_msg(logged("SPS0006") && logged("SPS0010"), "log: %s", logbuf);
    int ok = gets_ok(ids, N);
    ck_assert_int_gt(ok, 0);
    ck_assert_int_lt(ok, N);
    ck_assert_uint_eq(live_count(&st), (uint64_t)ok);
    ck_assert_uint_eq(used_blocks(&st), (uint64_t)ok);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq((uint64_t)sb.st_size, l.total);
    char id[33];
    ck_assert_int_eq(sp_sess_create(&st, "after", 5, 0, id), 0);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    sp_sess_close(&st);
    /* Cut inside the header: recreated. */
    logbuf[0] = '\0';
    ck_assert_int_eq(truncate(path, 100), 0);
    open_small();
    ck_assert_msg(logged("SPS0003"), "log: %s", logbuf);
    ck_assert_uint_eq(live_count(&st), 0);
    sp_sess_close(&st);
    /* Garbage. */
    logbuf[0] = '\0';
    int fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    srand(5);
    for (int i = 0; i < 20000; i++) {
        unsigned char b = (unsigned char)rand();
        ck_assert_int_eq(write(fd, &b, 1), 1);
    }
    close(fd);
    open_small();
    ck_assert_msg(logged("SPS0003"), "log: %s", logbuf);
    ck_assert_int_eq(sp_sess_create(&st, "works", 5, 0, id), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* ---- full stores ---- */

START_TEST(sess_full_enospc)
{
    setup();
    sp_sess_conf_t c = small_conf();
    c.data_bytes = 256 << 10; /* 128 blocks of 2 KiB */
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
    static char val[1000], ids[200][33];
    int n = 0, rc;
    while ((rc = sp_sess_create(&st, val, sizeof(val), 0, ids[n])) == 0)
        n++;
    ck_assert_int_eq(rc, SP_ENOSPC);
    ck_assert_int_eq(n, 128);
    /* A put that needs a new block fails too, and changes nothing. */
    ck_assert_int_eq(sp_sess_put(&st, ids[0], "x", 1, 0, 0), SP_ENOSPC);
    char buf[1000];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, ids[0], buf, sizeof(buf), &len, 0), 0);
    ck_assert_uint_eq(len, sizeof(val));
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_ge(ss.enospc, 2);
    ck_assert_uint_eq(ss.evicted, 0);
    /* Expired sessions make room by themselves. */
    ck_assert_int_eq(sp_sess_touch(&st, ids[5], later(1), 0), 0);
    usleep(5000);
    st.live->last_sweep_ns = 0; /* allow the once-a-second sweep now */
    ck_assert_int_eq(sp_sess_create(&st, val, sizeof(val), 0, ids[n]), 0);
    ck_assert_int_eq(sp_sess_delete(&st, ids[6], 0), 0);
    ck_assert_int_eq(sp_sess_create(&st, val, sizeof(val), 0, ids[n]), 0);
    sp_sess_close(&st);
    /* Index full: 64 entries. */
    teardown();
    setup();
    c = small_conf();
    c.max_sessions = 16;
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
    n = 0;
    while ((rc = sp_sess_create(&st, "i", 1, 0, ids[n])) == 0)
        n++;
    ck_assert_int_eq(rc, SP_ENOSPC);
    ck_assert_int_ge(n, 33);
    ck_assert_int_le(n, 64);
    sp_sess_close(&st);
    teardown();
}
END_TEST

START_TEST(sess_full_evict)
{
    enum { N = 300 };
    setup();
    sp_sess_conf_t c = small_conf();
    c.data_bytes = 256 << 10;
    c.evict = 1;
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
    static char val[1000], ids[N][33];
    int64_t base = later(3600 * 1000);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(sp_sess_create(&st, val, sizeof(val),
                                        base + i * SP_NSEC_PER_SEC, ids[i]),
                         0);
    sp_sess_stats_t ss;
    sp_sess_stats(&st, &ss);
    ck_assert_uint_ge(ss.evicted, N - 128);
    ck_assert_uint_eq(ss.enospc, 0);
    /* The newest (furthest from expiry) are all there. */
    for (int i = N - 20; i < N; i++) {
        char buf[1000];
        size_t len;
        ck_assert_int_eq(sp_sess_get(&st, ids[i], buf, sizeof(buf), &len, 0),
                         0);
    }
    /* A held session is never evicted. */
    sp_sess_hold_t h;
    ck_assert_int_eq(sp_sess_acquire(&st, ids[N - 1], 0, &h), 0);
    ck_assert_int_eq(sp_sess_touch(&st, ids[N - 1], later(1000), 0), 0);
    for (int i = 0; i < 200; i++) {
        char id[33];
        ck_assert_int_eq(sp_sess_create(&st, val, sizeof(val),
                                        base + (N + i) * SP_NSEC_PER_SEC, id),
                         0);
    }
    ck_assert_int_eq(sp_sess_release(&st, &h), 0);
    char buf[1000];
    size_t len;
    ck_assert_int_eq(sp_sess_get(&st, ids[N - 1], buf, sizeof(buf), &len, 0),
                     0);
    ck_assert_int_eq(sp_pool_check(&st.pool, 0), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* Configured sizes change: the file is rewritten, sessions carried over. */
START_TEST(sess_resize)
{
    enum { N = 80 };
    setup();
    open_small();
    static char ids[N][33];
    fill_sessions(ids, N, 3000);
    sp_sess_close(&st);
    sp_sess_conf_t c = small_conf();
    c.max_sessions = 2048;
    c.data_bytes = 4 << 20;
    c.max_value = 8192;
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
    ck_assert_msg(logged("SPS0005"), "log: %s", logbuf);
    ck_assert_uint_eq(st.nentries, 4096);
    ck_assert_int_eq(gets_ok(ids, N), N);
    sp_sess_close(&st);
    /* Smaller values allowed: the big ones do not fit any more. */
    logbuf[0] = '\0';
    c.max_value = 1000;
    ck_assert_int_eq(sp_sess_open(&st, path, &c, test_log, NULL), 0);
    ck_assert_msg(strstr(logbuf, "0 sessions carried over, 0 damaged, 80 did "
                                 "not fit") != NULL,
                  "log: %s", logbuf);
    ck_assert_int_eq(gets_ok(ids, N), 0);
    sp_sess_close(&st);
    teardown();
}
END_TEST

/* The record on file is exactly what sp_sess-t.h draws, and its checksum
 * is sp_crc32c()'s (whichever CRC code path wrote it), so files move
 * between machines. */
START_TEST(sess_record_format)
{
    setup();
    open_small();
    static unsigned char val[3000];
    srand(11);
    for (size_t i = 0; i < sizeof(val); i++)
        val[i] = (unsigned char)rand();
    char id[33];
    int64_t exp = later(60000);
    ck_assert_int_eq(sp_sess_create(&st, val, 1000, exp, id), 0);
    ck_assert_int_eq(
        sp_sess_put(&st, id, val, sizeof(val), SP_SESS_KEEP_EXPIRY, 0), 0);
    uint32_t slot;
    uint64_t off = value_off(&st, id, &slot);
    const sp_sess_entry_t *e = &st.ent[slot];
    ck_assert_uint_eq(e->version, 2);
    ck_assert_int_eq(e->expires, exp);
    ck_assert_uint_eq(e->ref >> 63, 1);
    ck_assert_uint_eq((e->ref >> 40) & SP_SESS_TAG_MASK, 2);
    ck_assert_uint_eq((e->ref >> 32) & 0xff, 6); /* 3048 B: 4 KiB of 64 B */
    const unsigned char *r = st.base + off;
    sp_sess_rec_t h;
    memcpy(&h, r, sizeof(h));
    ck_assert_uint_eq(h.magic, SP_SESS_REC_MAGIC);
    ck_assert_uint_eq(h.length, sizeof(val));
    ck_assert_uint_eq(h.version, 2);
    ck_assert_int_eq(memcmp(h.id, e->id, 16), 0);
    ck_assert_int_eq(memcmp(r + SP_SESS_REC_HDR, val, sizeof(val)), 0);
    uint32_t crc = sp_crc32c(0, r + 8, SP_SESS_REC_HDR - 8);
    crc = sp_crc32c(crc, r + SP_SESS_REC_HDR, sizeof(val));
    ck_assert_uint_eq(crc, h.crc);
    /* Odd lengths too (the CRC's tail bytes). */
    for (size_t len = 1; len < 20; len++) {
        ck_assert_int_eq(sp_sess_put(&st, id, val, len, SP_SESS_KEEP_EXPIRY, 0),
                         0);
        off = value_off(&st, id, &slot);
        r = st.base + off;
        memcpy(&h, r, sizeof(h));
        crc = sp_crc32c(0, r + 8, SP_SESS_REC_HDR - 8);
        crc = sp_crc32c(crc, r + SP_SESS_REC_HDR, len);
        ck_assert_uint_eq(crc, h.crc);
    }
    sp_sess_close(&st);
    teardown();
}
END_TEST

Suite *suite_sess(void)
{
    Suite *s = suite_create("sess");
    TCase *tc = tcase_create("sess");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sess_basic);
    tcase_add_test(tc, sess_persist_and_iterate);
    tcase_add_test(tc, sess_expiry);
    tcase_add_test(tc, sess_busy_two_processes);
    tcase_add_test(tc, sess_busy_threads);
    tcase_add_test(tc, sess_busy_holder_killed);
    tcase_add_test(tc, sess_counter_two_processes);
    tcase_add_test(tc, sess_counter_many_processes);
    tcase_add_test(tc, sess_crash_kept_open);
    tcase_add_test(tc, sess_crash_reopened);
    tcase_add_test(tc, sess_lock_holder_killed);
    tcase_add_test(tc, sess_corrupt_index_and_values);
    tcase_add_test(tc, sess_corrupt_header);
    tcase_add_test(tc, sess_truncated_and_garbage);
    tcase_add_test(tc, sess_full_enospc);
    tcase_add_test(tc, sess_full_evict);
    tcase_add_test(tc, sess_resize);
    tcase_add_test(tc, sess_record_format);
    suite_add_tcase(s, tc);
    return s;
}
