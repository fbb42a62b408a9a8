/*
 * test_pool.c - the block pool: geometry and attach refusals, sizes and
 * alignment, exhaustion and coalescing, double / foreign / bad-offset
 * frees, random churn checked against a model (every live block carries a
 * pattern that is verified), many processes allocating at once, owners
 * killed with SIGKILL (idle, mid-churn, and while holding the lock with the
 * lists half changed), scribbling over the data region, a pool over a
 * mapped file attached at another address, lock timeouts, owner records
 * recycled.
 */
#include "sp_unit.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_atomic.h"
#include "sp_error.h"
#include "sp_pool.h"

#define GEN 11

static sp_pool_t pool;
static void *admin_mem, *data_mem;
static size_t admin_size, data_size;

/* Log lines seen (tests look for tags). */
static char logbuf[8192];

static void test_log(void *arg, const char *msg)
{
    (void)arg;
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", msg);
}

static void make_pool(size_t dsize, unsigned min_shift, unsigned max_order,
                      unsigned owners)
{
    data_size = dsize;
    admin_size = sp_pool_admin_bytes(dsize, min_shift, max_order, owners);
    ck_assert_uint_gt(admin_size, 0);
    admin_mem = sp_test_shared(admin_size);
    data_mem = sp_test_shared(dsize);
    ck_assert_int_eq(sp_pool_format(&pool, admin_mem, admin_size, data_mem,
                                    dsize, min_shift, max_order, owners, GEN),
                     0);
    logbuf[0] = '\0';
    sp_pool_set_log(&pool, test_log, NULL);
}

static void drop_pool(void)
{
    sp_test_unshare(admin_mem, admin_size);
    sp_test_unshare(data_mem, data_size);
}

/* ---- patterns: every live block is filled with one 64-bit value ---- */

static uint64_t pat(uint64_t tag, uint64_t off)
{
    return (tag << 32) ^ off ^ 0x5a5a000000000000ull;
}

static void fill(uint64_t off, uint64_t bytes, uint64_t tag)
{
    uint64_t *w = sp_pool_ptr(&pool, off), v = pat(tag, off);
    for (uint64_t k = 0; k < bytes / 8; k++)
        w[k] = v;
}

static int intact(uint64_t off, uint64_t bytes, uint64_t tag)
{
    const uint64_t *w = sp_pool_ptr(&pool, off);
    uint64_t v = pat(tag, off);
    for (uint64_t k = 0; k < bytes / 8; k++)
        if (w[k] != v)
            return 0;
    return 1;
}

static uint64_t free_bytes(void)
{
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    return st.free_bytes;
}

START_TEST(pool_geometry_refusals)
{
    ck_assert_uint_eq(sp_pool_admin_bytes(4096, 3, 4, 8), 0);  /* min 16 B */
    ck_assert_uint_eq(sp_pool_admin_bytes(4096, 6, 32, 8), 0); /* order */
    ck_assert_uint_eq(sp_pool_admin_bytes(4096, 6, 4, 1), 0);  /* owners */
    ck_assert_uint_eq(sp_pool_admin_bytes(32, 6, 4, 8), 0);    /* no block */
    make_pool(1 << 16, 6, 6, 8);
    sp_pool_t p2;
    ck_assert_int_eq(sp_pool_format(&p2, admin_mem, admin_size, data_mem,
                                    data_size, 6, 6, 8, 0),
                     SP_EINVAL);
    ck_assert_int_eq(sp_pool_format(&p2, admin_mem, admin_size - 64, data_mem,
                                    data_size, 6, 6, 8, GEN),
                     SP_EINVAL);
    ck_assert_int_eq(
        sp_pool_attach(&p2, admin_mem, admin_size, data_mem, data_size), 0);
    ck_assert_uint_eq(p2.nblocks, 1024);
    /* A smaller data area than the header says is refused. */
    ck_assert_int_eq(
        sp_pool_attach(&p2, admin_mem, admin_size, data_mem, data_size / 2),
        SP_EINVAL);
    ck_assert_int_eq(sp_pool_attach(&p2, admin_mem, 64, data_mem, data_size),
                     SP_EMSGSIZE);
    sp_pool_hdr_t *h = admin_mem;
    h->nblocks++;
    ck_assert_int_eq(
        sp_pool_attach(&p2, admin_mem, admin_size, data_mem, data_size),
        SP_ECHECKSUM);
    h->nblocks--;
    h->seg.magic ^= 1;
    ck_assert_int_eq(
        sp_pool_attach(&p2, admin_mem, admin_size, data_mem, data_size),
        SP_EBADMAGIC);
    h->seg.magic ^= 1;
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    drop_pool();
}
END_TEST

START_TEST(pool_alloc_free_basic)
{
    make_pool(1 << 16, 6, 6, 8); /* 1024 blocks of 64 B, up to 4 KiB */
    ck_assert_uint_eq(sp_pool_block_bytes(&pool, 1), 64);
    ck_assert_uint_eq(sp_pool_block_bytes(&pool, 64), 64);
    ck_assert_uint_eq(sp_pool_block_bytes(&pool, 65), 128);
    ck_assert_uint_eq(sp_pool_block_bytes(&pool, 4096), 4096);
    ck_assert_uint_eq(sp_pool_block_bytes(&pool, 4097), 0);
    uint64_t off;
    ck_assert_int_eq(sp_pool_alloc(&pool, 0, &off), SP_EINVAL);
    ck_assert_int_eq(sp_pool_alloc(&pool, 4097, &off), SP_EMSGSIZE);
    /* Every size class is aligned to its own size. */
    for (size_t sz = 1; sz <= 4096; sz *= 2) {
        ck_assert_int_eq(sp_pool_alloc(&pool, sz, &off), 0);
        ck_assert_uint_eq(off % sp_pool_block_bytes(&pool, sz), 0);
        ck_assert_int_eq(sp_pool_free(&pool, off), 0);
    }
    /* Exhaust with min-blocks: exactly nblocks of them, then ENOSPC. */
    static uint64_t offs[1024];
    for (int i = 0; i < 1024; i++)
        ck_assert_int_eq(sp_pool_alloc(&pool, 40, &offs[i]), 0);
    ck_assert_int_eq(sp_pool_alloc(&pool, 1, &off), SP_ENOSPC);
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.failed_allocs, 1);
    ck_assert_uint_eq(st.free_bytes, 0);
    ck_assert_uint_eq(st.nused[0], 1024);
    ck_assert_uint_eq(st.largest_free, 0);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    /* Free every other one: 512 free blocks that cannot merge. */
    for (int i = 0; i < 1024; i += 2)
        ck_assert_int_eq(sp_pool_free(&pool, offs[i]), 0);
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.nfree[0], 512);
    ck_assert_uint_eq(st.largest_free, 64);
    ck_assert_uint_eq(st.frag_permille, 1000 - 1000 / 512);
    ck_assert_int_eq(sp_pool_alloc(&pool, 128, &off), SP_ENOSPC);
    /* Free the rest: everything coalesces back into 4 KiB blocks. */
    for (int i = 1; i < 1024; i += 2)
        ck_assert_int_eq(sp_pool_free(&pool, offs[i]), 0);
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.free_bytes, 1 << 16);
    ck_assert_uint_eq(st.nfree[6], 16);
    ck_assert_uint_eq(st.nfree[0], 0);
    ck_assert_uint_eq(st.frag_permille, 1000 - 1000 / 16);
    ck_assert_uint_eq(st.allocs, 1024 + 13);
    ck_assert_uint_eq(st.frees, 1024 + 13);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    drop_pool();
}
END_TEST

START_TEST(pool_bad_frees)
{
    make_pool(1 << 16, 6, 6, 8);
    uint64_t a, b;
    ck_assert_int_eq(sp_pool_alloc(&pool, 1024, &a), 0);
    ck_assert_int_eq(sp_pool_alloc(&pool, 64, &b), 0);
    ck_assert_int_eq(sp_pool_free(&pool, a + 64), SP_EINVAL);  /* interior */
    ck_assert_int_eq(sp_pool_free(&pool, a + 3), SP_EINVAL);   /* misaligned */
    ck_assert_int_eq(sp_pool_free(&pool, 1 << 16), SP_EINVAL); /* past end */
    ck_assert_int_eq(sp_pool_free(&pool, UINT64_MAX - 63), SP_EINVAL);
    ck_assert_int_eq(sp_pool_free_shared(&pool, a), SP_ESTATE); /* not shared */
    ck_assert_int_eq(sp_pool_free(&pool, a), 0);
    ck_assert_int_eq(sp_pool_free(&pool, a), SP_ESTATE); /* double free */
    /* Foreign: a block of another process. */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t c;
        int ok = sp_pool_alloc(&pool, 200, &c) == 0 &&
                 sp_pool_free(&pool, b) == SP_ESTATE; /* parent's block */
        if (write(fds[1], &c, sizeof(c)) != sizeof(c))
            ok = 0;
        _exit(ok ? 0 : 1);
    }
    sp_test_wait_ok(pid);
    uint64_t c;
    ck_assert_int_eq(read(fds[0], &c, sizeof(c)), sizeof(c));
    ck_assert_int_eq(sp_pool_free(&pool, c), SP_ESTATE);
    /* Shared blocks: only sp_pool_free_shared frees them. */
    ck_assert_int_eq(sp_pool_share(&pool, b), 0);
    ck_assert_int_eq(sp_pool_share(&pool, b), SP_ESTATE);
    ck_assert_int_eq(sp_pool_free(&pool, b), SP_ESTATE);
    ck_assert_int_eq(sp_pool_free_shared(&pool, b), 0);
    ck_assert_int_eq(sp_pool_free_shared(&pool, b), SP_ESTATE);
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.bad_frees, 11);
    ck_assert_uint_eq(st.shares, 1);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    /* The dead child's block comes back with the sweep. */
    ck_assert_int_eq(sp_pool_reap(&pool), 1);
    ck_assert_uint_eq(free_bytes(), 1 << 16);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    close(fds[0]);
    close(fds[1]);
    drop_pool();
}
END_TEST

/* One process, many thousands of random operations against a model. */
START_TEST(pool_churn_model)
{
    enum { OPS = 200000, MAXLIVE = 600 };
    make_pool(1 << 20, 5, 9, 8); /* 32 B .. 16 KiB, 1 MiB */
    static uint64_t off[MAXLIVE], bytes[MAXLIVE], tag[MAXLIVE];
    int nlive = 0, enospc = 0;
    uint64_t model_used = 0;
    srand(12345);
    for (int op = 0; op < OPS; op++) {
        int do_alloc = nlive == 0 || (nlive < MAXLIVE && rand() % 100 < 52);
        if (do_alloc) {
            size_t sz = 1 + (size_t)(rand() % (rand() % 8 == 0 ? 16384 : 600));
            uint64_t o;
            int rc = sp_pool_alloc(&pool, sz, &o);
            if (rc == SP_ENOSPC) {
                enospc++;
                continue;
            }
            ck_assert_int_eq(rc, 0);
            off[nlive] = o;
            bytes[nlive] = sp_pool_block_bytes(&pool, sz);
            tag[nlive] = (uint64_t)op;
            fill(o, bytes[nlive], tag[nlive]);
            model_used += bytes[nlive];
            nlive++;
        } else {
            int k = rand() % nlive;
            ck_assert_msg(intact(off[k], bytes[k], tag[k]),
                          "op %d: block at %llu overwritten", op,
                          (unsigned long long)off[k]);
            ck_assert_int_eq(sp_pool_free(&pool, off[k]), 0);
            model_used -= bytes[k];
            nlive--;
            off[k] = off[nlive];
            bytes[k] = bytes[nlive];
            tag[k] = tag[nlive];
        }
        if (op % 20000 == 0) {
            for (int k = 0; k < nlive; k++)
                ck_assert(intact(off[k], bytes[k], tag[k]));
            ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
            ck_assert_uint_eq(free_bytes(), (1 << 20) - model_used);
        }
    }
    for (int k = 0; k < nlive; k++) {
        ck_assert(intact(off[k], bytes[k], tag[k]));
        ck_assert_int_eq(sp_pool_free(&pool, off[k]), 0);
    }
    ck_assert_uint_eq(free_bytes(), 1 << 20);
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.nfree[9], (1 << 20) / (32 << 9));
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    drop_pool();
}
END_TEST

/* Churn in the calling process: keeps up to maxlive patterned blocks,
 * verifies each before freeing it.  Returns 0 or a failure code. */
static int churn(int ops, int maxlive, unsigned seed, uint64_t tagbase)
{
    uint64_t off[256], bytes[256], tag[256];
    int nlive = 0;
    if (maxlive > 256)
        maxlive = 256;
    srand(seed);
    for (int op = 0; op < ops; op++) {
        if (nlive == 0 || (nlive < maxlive && rand() % 2)) {
            size_t sz = 1 + (size_t)(rand() % 2000);
            uint64_t o;
            int rc = sp_pool_alloc(&pool, sz, &o);
            if (rc == SP_ENOSPC)
                continue;
            if (rc != 0)
                return 10;
            off[nlive] = o;
            bytes[nlive] = sp_pool_block_bytes(&pool, sz);
            tag[nlive] = tagbase + (uint64_t)op;
            fill(o, bytes[nlive], tag[nlive]);
            nlive++;
        } else {
            int k = rand() % nlive;
            if (!intact(off[k], bytes[k], tag[k]))
                return 11;
            if (sp_pool_free(&pool, off[k]) != 0)
                return 12;
            nlive--;
            off[k] = off[nlive];
            bytes[k] = bytes[nlive];
            tag[k] = tag[nlive];
        }
    }
    for (int k = 0; k < nlive; k++) {
        if (!intact(off[k], bytes[k], tag[k]))
            return 13;
        if (sp_pool_free(&pool, off[k]) != 0)
            return 14;
    }
    return 0;
}

START_TEST(pool_many_processes)
{
    enum { NPROC = 8, OPS = 20000 };
    make_pool(1 << 20, 6, 6, 16);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(churn(OPS, 100, (unsigned)(i + 1), (uint64_t)(i + 1) << 24));
    }
    for (int i = 0; i < NPROC; i++)
        sp_test_wait_ok(pids[i]);
    ck_assert_uint_eq(free_bytes(), 1 << 20);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_ge(st.allocs, NPROC * OPS / 3);
    ck_assert_uint_eq(st.allocs, st.frees);
    /* Each child registered an owner record; they are dead now. */
    ck_assert_uint_eq(st.owners, 1 + NPROC);
    ck_assert_int_eq(sp_pool_reap(&pool), 0);
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.owners, 1);
    ck_assert_uint_eq(st.reaped_owners, NPROC);
    drop_pool();
}
END_TEST

START_TEST(pool_reap_killed_owner)
{
    make_pool(1 << 16, 6, 6, 8);
    uint64_t mine;
    ck_assert_int_eq(sp_pool_alloc(&pool, 100, &mine), 0);
    fill(mine, 128, 1);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t o;
        for (int i = 0; i < 10; i++)
            if (sp_pool_alloc(&pool, 64u << (i % 4), &o) != 0)
                _exit(2);
        if (write(fds[1], "x", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    char c;
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    /* A live owner is never swept. */
    ck_assert_int_eq(sp_pool_reap(&pool), 0);
    ck_assert_uint_lt(free_bytes(), (1 << 16) - 128);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_int_eq(sp_pool_reap(&pool), 10);
    ck_assert_msg(strstr(logbuf, "SPP0002") != NULL, "log: %s", logbuf);
    ck_assert_uint_eq(free_bytes(), (1 << 16) - 128);
    ck_assert(intact(mine, 128, 1));
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    ck_assert_int_eq(sp_pool_reap(&pool), 0);
    close(fds[0]);
    close(fds[1]);
    drop_pool();
}
END_TEST

/* Kill a churning process at random moments; each time the pool must end
 * up consistent with nothing lost, and the parent's blocks untouched. */
START_TEST(pool_kill_mid_churn)
{
    enum { ROUNDS = 40 };
    make_pool(1 << 20, 6, 8, 16);
    uint64_t mine[16];
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(sp_pool_alloc(&pool, 256, &mine[i]), 0);
        fill(mine[i], 256, 77);
    }
    uint64_t base_free = free_bytes();
    srand(99);
    int held = 0;
    for (int r = 0; r < ROUNDS; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (unsigned s = 1;; s++)
                churn(2000, 64, s, (uint64_t)s << 20);
        }
        usleep((useconds_t)(200 + rand() % 3000));
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        if ((sp_load_relaxed(&pool.live->lock) & ~SP_POOL_LOCK_WAITERS) ==
            (uint32_t)pid)
            held++;
        ck_assert_int_ge(sp_pool_reap(&pool), 0);
        ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
        ck_assert_uint_eq(free_bytes(), base_free);
    }
    for (int i = 0; i < 16; i++) {
        ck_assert(intact(mine[i], 256, 77));
        ck_assert_int_eq(sp_pool_free(&pool, mine[i]), 0);
    }
    ck_assert_uint_eq(free_bytes(), 1 << 20);
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_eq(st.lock_steals, (uint64_t)held);
    fprintf(stderr,
            "pool_kill_mid_churn: %d of %d kills hit the lock "
            "holder\n",
            held, ROUNDS);
    drop_pool();
}
END_TEST

/* The holder dies with the lists half changed, in each of the ways a
 * split, a merge or an allocation can be interrupted. */
START_TEST(pool_lock_holder_killed)
{
    for (int variant = 0; variant < 4; variant++) {
        make_pool(1 << 16, 6, 6, 8);
        uint64_t keep;
        ck_assert_int_eq(sp_pool_alloc(&pool, 300, &keep), 0);
        fill(keep, 512, 5);
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t o;
            if (sp_pool_alloc(&pool, 64, &o) != 0 ||
                sp_pool_lock(&pool, sp_deadline_ms(1000)) != 0)
                _exit(2);
            sp_pool_live_t *l = pool.live;
            uint32_t i = l->free_head[6];
            switch (variant) {
            case 0: /* split interrupted: block unlinked, order lowered,
                       upper half not yet a head */
                l->free_head[6] = pool.meta[i].next;
                pool.meta[i].order = 5;
                break;
            case 1: /* merge interrupted: upper buddy already cleared,
                       lower one not yet grown; lists and counts stale */
                pool.meta[i].order = 5;
                l->nfree[6] += 3;
                break;
            case 2: /* allocation interrupted: USED, not on any list */
                l->free_head[6] = pool.meta[i].next;
                pool.meta[i].owner = (uint16_t)pool.self_owner;
                pool.meta[i].state = SP_POOL_BLK_USED;
                break;
            case 3: /* a free list made into a cycle */
                pool.meta[i].next = i;
                break;
            }
            if (write(fds[1], "x", 1) != 1)
                _exit(3);
            for (;;)
                pause();
        }
        char c;
        ck_assert_int_eq(read(fds[0], &c, 1), 1);
        /* Alive and holding: a bounded wait times out, a try fails. */
        ck_assert_int_eq(sp_pool_lock(&pool, sp_deadline_ms(30)), SP_ETIMEDOUT);
        ck_assert_int_eq(sp_pool_lock(&pool, 0), SP_EAGAIN);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        /* The next allocation takes the lock over and repairs. */
        uint64_t o;
        ck_assert_int_eq(sp_pool_alloc(&pool, 64, &o), 0);
        ck_assert_msg(strstr(logbuf, "SPP0001") != NULL, "log: %s", logbuf);
        sp_pool_stats_t st;
        sp_pool_stats(&pool, &st);
        ck_assert_uint_eq(st.lock_steals, 1);
        ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
        ck_assert(intact(keep, 512, 5));
        ck_assert_int_eq(sp_pool_free(&pool, o), 0);
        /* The dead child's blocks (variant 2: also the one it was
         * allocating) are swept; then everything is free again. */
        ck_assert_int_ge(sp_pool_reap(&pool), 1);
        ck_assert_int_eq(sp_pool_free(&pool, keep), 0);
        ck_assert_uint_eq(free_bytes(), 1 << 16);
        ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
        close(fds[0]);
        close(fds[1]);
        drop_pool();
    }
}
END_TEST

START_TEST(pool_scribbled_data)
{
    make_pool(1 << 18, 6, 8, 8);
    static uint64_t offs[2048];
    int n = 0;
    uint64_t o;
    while (n < 2048 &&
           sp_pool_alloc(&pool, 1 + (size_t)(n * 37 % 9000), &o) == 0)
        offs[n++] = o;
    for (int i = 0; i < n; i += 3) {
        ck_assert_int_eq(sp_pool_free(&pool, offs[i]), 0);
        offs[i] = UINT64_MAX;
    }
    /* Random bytes over the whole data region. */
    srand(7);
    unsigned char *d = data_mem;
    for (size_t i = 0; i < data_size; i++)
        d[i] = (unsigned char)rand();
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    for (int i = 0; i < n; i++)
        if (offs[i] != UINT64_MAX)
            ck_assert_int_eq(sp_pool_free(&pool, offs[i]), 0);
    ck_assert_uint_eq(free_bytes(), 1 << 18);
    ck_assert_int_eq(churn(20000, 200, 3, 1), 0);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    ck_assert_uint_eq(free_bytes(), 1 << 18);
    drop_pool();
}
END_TEST

/* Region-agnostic: admin and data are two areas of a mapped file; another
 * process maps the file at a different address and attaches. */
START_TEST(pool_over_mapped_file)
{
    char path[] = "/tmp/sp_pool_test_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    size_t asz = sp_pool_admin_bytes(1 << 16, 6, 6, 8);
    size_t total = asz + (1 << 16);
    ck_assert_int_eq(ftruncate(fd, (off_t)total), 0);
    unsigned char *m =
        mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    ck_assert_int_eq(
        sp_pool_format(&pool, m, asz, m + asz, 1 << 16, 6, 6, 8, GEN), 0);
    uint64_t a;
    ck_assert_int_eq(sp_pool_alloc(&pool, 1000, &a), 0);
    memcpy(sp_pool_ptr(&pool, a), "parent", 7);
    ck_assert_int_eq(sp_pool_share(&pool, a), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* A second mapping at another address. */
        unsigned char *m2 =
            mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        sp_pool_t p2;
        uint64_t b;
        if (m2 == MAP_FAILED || m2 == m ||
            sp_pool_attach(&p2, m2, asz, m2 + asz, 1 << 16) != 0 ||
            strcmp(sp_pool_ptr(&p2, a), "parent") != 0 ||
            sp_pool_alloc(&p2, 500, &b) != 0)
            _exit(2);
        memcpy(sp_pool_ptr(&p2, b), "child", 6);
        if (sp_pool_share(&p2, b) != 0 ||
            write(fds[1], &b, sizeof(b)) != sizeof(b))
            _exit(3);
        _exit(0);
    }
    sp_test_wait_ok(pid);
    uint64_t b;
    ck_assert_int_eq(read(fds[0], &b, sizeof(b)), sizeof(b));
    ck_assert_str_eq(sp_pool_ptr(&pool, b), "child");
    ck_assert_int_eq(sp_pool_reap(&pool), 0); /* shared: never reaped */
    ck_assert_int_eq(sp_pool_free_shared(&pool, b), 0);
    ck_assert_int_eq(sp_pool_free_shared(&pool, a), 0);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    munmap(m, total);
    close(fd);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* More processes than owner records over time: dead records are recycled
 * (their blocks swept) when a new process registers. */
START_TEST(pool_owner_records_recycled)
{
    make_pool(1 << 16, 6, 6, 4); /* shared + 3 process records */
    for (int i = 0; i < 10; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t o;
            _exit(sp_pool_alloc(&pool, 64, &o) == 0 ? 0 : 1);
        }
        sp_test_wait_ok(pid);
    }
    sp_pool_stats_t st;
    sp_pool_stats(&pool, &st);
    ck_assert_uint_le(st.owners, 4);
    ck_assert_uint_ge(st.reaped_owners, 7);
    ck_assert_int_eq(sp_pool_reap(&pool), (int)st.owners - 1);
    ck_assert_uint_eq(free_bytes(), 1 << 16);
    ck_assert_int_eq(sp_pool_check(&pool, 0), 0);
    drop_pool();
}
END_TEST

Suite *suite_pool(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pool_geometry_refusals);
    tcase_add_test(tc, pool_alloc_free_basic);
    tcase_add_test(tc, pool_bad_frees);
    tcase_add_test(tc, pool_churn_model);
    tcase_add_test(tc, pool_many_processes);
    tcase_add_test(tc, pool_reap_killed_owner);
    tcase_add_test(tc, pool_kill_mid_churn);
    tcase_add_test(tc, pool_lock_holder_killed);
    tcase_add_test(tc, pool_scribbled_data);
    tcase_add_test(tc, pool_over_mapped_file);
    tcase_add_test(tc, pool_owner_records_recycled);
    suite_add_tcase(s, tc);
    return s;
}
