/*
 * test_ring.c - the segment ring (common/sp_ring.c, DESIGN §3.2).
 *
 * Single-process tests drive one ring through every call and refusal:
 * geometry checks of format/attach, the empty ring, round trips, zero-length
 * and multi-segment messages around the segment size, wrap-around of the
 * segment positions and of the free-running counters, the full ring,
 * reads into short buffers, peek/consume in odd pieces, reserve/commit
 * filled with readv(), types, and the poller flags.
 *
 * Two-process tests fork a producer and a consumer over sp_test_shared()
 * memory:
 *   - a sleeping reader / writer is woken by the other side's write / read;
 *   - the stress: 1,000,000 messages of pseudo-random sizes (0 .. 3 segments,
 *     now and then the whole capacity) through a 16 x 256-byte ring with no
 *     spinning, so both sides keep filling, draining, sleeping and waking.
 *     Every message's length, type and bytes derive from its sequence
 *     number and are checked.  Every blocking call has a 5 s deadline: a
 *     lost wake-up fails as SP_ETIMEDOUT, or, when the data did arrive and
 *     the waiter's re-check at the deadline finds it, as a call that
 *     returned after its deadline.  A second run mixes write / writev /
 *     reserve+commit on one side and read / peek+consume on the other;
 *   - ping-pong over a pair of rings, 100,000 round trips, where every
 *     wake-up is needed (nothing later would rescue a lost one), first
 *     without spinning, then with the adaptive spin budget;
 *   - a waiter whose peer (r->peer) is SIGKILLed gets SP_EPEERDEAD.
 *
 * Children never call ck_assert: they report through shared memory and
 * their exit status.
 */
#include "sp_unit.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_mark.h"
#include "sp_ring.h"

#define MS SP_NSEC_PER_MSEC

/* ---- helpers ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * MS};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Pseudo-random bytes; message seq's content starts at pattern_at(seq), so
 * a byte out of place, a stale segment or a skipped message all show. */
#define PATTERN_OFFS 4096
#define PATTERN_MAX_MSG 8192
static unsigned char pattern[PATTERN_OFFS + PATTERN_MAX_MSG];

static void pattern_init(void)
{
    uint32_t x = 0x12345679u;
    for (size_t i = 0; i < sizeof(pattern); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)(x >> 11);
    }
}

static const unsigned char *pattern_at(uint32_t seq)
{
    return pattern + mix(seq * 3u + 1u) % PATTERN_OFFS;
}

static unsigned type_of(uint32_t seq)
{
    return mix(seq ^ 0x5a5a5a5au) & 0xffffu;
}

/* Wait (at most 10 s) until pid sleeps on a futex with *flag == want. */
static void wait_asleep(pid_t pid, const uint32_t *flag, uint32_t want)
{
    int64_t end = sp_deadline_ms(10000);
    while (!(__atomic_load_n(flag, __ATOMIC_ACQUIRE) == want &&
             sp_test_sleeps_on_futex(pid))) {
        ck_assert_msg(sp_now_ns() < end, "child %d never went to sleep",
                      (int)pid);
        sleep_ms(1);
    }
}

/* A ring of nseg x seg_size in fresh shared memory, formatted and attached;
 * *size gets the mapping's size (for sp_test_unshare). */
static void *ring_new(sp_ring_t *r, uint32_t nseg, uint32_t seg_size,
                      size_t *size)
{
    size_t bytes = sp_ring_bytes(nseg, seg_size);
    ck_assert_uint_ne(bytes, 0);
    *size = bytes;
    void *mem = sp_test_shared(bytes);
    ck_assert_int_eq(sp_ring_format(mem, nseg, seg_size), 0);
    ck_assert_int_eq(sp_ring_attach(r, mem, bytes), 0);
    return mem;
}

/* Write seq's message (len bytes) with sp_ring_write. */
static int put(sp_ring_t *r, uint32_t seq, size_t len, int64_t deadline)
{
    return sp_ring_write(r, type_of(seq), pattern_at(seq), len, deadline);
}

/* Read one message and check it is seq's, len bytes long. */
static void get_check(sp_ring_t *r, uint32_t seq, size_t len)
{
    static unsigned char buf[PATTERN_MAX_MSG];
    unsigned type = 0xdeadu;
    memset(buf, 0xee, len < sizeof(buf) ? len + 1 : sizeof(buf));
    long got = sp_ring_read(r, &type, buf, sizeof(buf), 0);
    ck_assert_msg(got == (long)len, "seq %u: read %ld, want %zu", seq, got,
                  len);
    ck_assert_uint_eq(type, type_of(seq));
    ck_assert_msg(memcmp(buf, pattern_at(seq), len) == 0,
                  "seq %u: content differs", seq);
}

static void check_circle(const sp_ring_t *r)
{
    uint32_t i = 0;
    for (uint32_t step = 1; step <= r->nseg; step++) {
        ck_assert_uint_eq(r->seg[i].next, (i + 1) % r->nseg);
        i = r->seg[i].next;
        ck_assert_uint_lt(i, r->nseg);
        if (step < r->nseg)
            ck_assert_uint_ne(i, 0); /* no shorter circle */
    }
    ck_assert_uint_eq(i, 0);
}

/* ---- geometry ---- */

START_TEST(ring_geometry_and_refusals)
{
    /* Sizes: 192-byte control, 24 bytes per segctl rounded up to 64. */
    ck_assert_uint_eq(sp_ring_bytes(1, 64), 256 + 64);
    ck_assert_uint_eq(sp_ring_bytes(8, 256), 384 + 8 * 256);
    ck_assert_uint_eq(sp_ring_bytes(4, 128), 320 + 4 * 128);
    ck_assert_uint_eq(sp_ring_bytes(65536, 64), 192 + 65536 * 24 + 65536 * 64);
    /* Refused: nseg not a power of two or out of 1..65536, seg_size not a
     * non-zero multiple of 64. */
    ck_assert_uint_eq(sp_ring_bytes(0, 256), 0);
    ck_assert_uint_eq(sp_ring_bytes(3, 256), 0);
    ck_assert_uint_eq(sp_ring_bytes(6, 256), 0);
    ck_assert_uint_eq(sp_ring_bytes(131072, 64), 0);
    ck_assert_uint_eq(sp_ring_bytes(8, 0), 0);
    ck_assert_uint_eq(sp_ring_bytes(8, 32), 0);
    ck_assert_uint_eq(sp_ring_bytes(8, 100), 0);
    ck_assert_uint_eq(sp_ring_bytes(8, 255), 0);

    size_t bytes = sp_ring_bytes(8, 256);
    unsigned char *mem = sp_test_shared(bytes + 4096);
    ck_assert_int_eq(sp_ring_format(mem, 3, 256), SP_EINVAL);
    ck_assert_int_eq(sp_ring_format(mem, 8, 100), SP_EINVAL);
    ck_assert_int_eq(sp_ring_format(mem, 0, 256), SP_EINVAL);
    ck_assert_int_eq(sp_ring_format(mem + 8, 8, 256), SP_EINVAL);
    ck_assert_int_eq(sp_ring_format(mem + 32, 8, 256), SP_EINVAL);

    sp_ring_t r;
    /* Never formatted: no magic. */
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EBADMAGIC);

    ck_assert_int_eq(sp_ring_format(mem, 8, 256), 0);
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), 0);
    ck_assert_uint_eq(r.nseg, 8);
    ck_assert_uint_eq(r.seg_size, 256);
    ck_assert_uint_eq(sp_ring_capacity(&r), 2048);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    ck_assert_uint_eq(sp_ring_free_segs(&r), 8);
    ck_assert_ptr_eq(r.data, mem + 384);
    check_circle(&r);
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes + 4096), 0);

    /* Too little memory for the geometry, or not even a control block. */
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes - 1), SP_EINVAL);
    ck_assert_int_eq(sp_ring_attach(&r, mem, 191), SP_EINVAL);
    ck_assert_int_eq(sp_ring_attach(&r, mem, 0), SP_EINVAL);

    /* A scribbled control block is refused, field by field. */
    sp_ring_ctl_t *ctl = (sp_ring_ctl_t *)mem;
    ctl->magic ^= 1;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EBADMAGIC);
    ctl->magic ^= 1;
    ctl->nseg = 6;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->nseg = 0;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->nseg = 16; /* valid, but then data_off and size disagree */
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->nseg = 8;
    ctl->seg_size = 100;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->seg_size = 320; /* valid, but larger than the memory */
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->seg_size = 256;
    ctl->data_off += 64;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes + 4096), SP_EINVAL);
    ctl->data_off -= 64;
    ctl->segctl_off = 256;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), SP_EINVAL);
    ctl->segctl_off = 192;
    ck_assert_int_eq(sp_ring_attach(&r, mem, bytes), 0);

    /* One segment: the circle closes on itself. */
    ck_assert_int_eq(sp_ring_format(mem, 1, 64), 0);
    ck_assert_int_eq(sp_ring_attach(&r, mem, sp_ring_bytes(1, 64)), 0);
    check_circle(&r);
    sp_test_unshare(mem, bytes + 4096);
}
END_TEST

/* ---- single process ---- */

START_TEST(ring_empty_and_roundtrip)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 256, &size);
    unsigned char buf[64];
    unsigned type = 77;
    sp_ring_msg_t msg;
    struct iovec iov[4];
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), SP_EAGAIN);
    ck_assert_uint_eq(type, 77);
    ck_assert_int_eq(sp_ring_wait_readable(&r, 0), SP_EAGAIN);
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 4), SP_EAGAIN);
    ck_assert_int_eq(sp_ring_consume(&r, 0), SP_EAGAIN);
    int64_t deadline = sp_now_ns() + 100 * MS;
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), deadline),
                     SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    /* Waiting did not leave the flag behind. */
    ck_assert_uint_eq(r.ctl->receiver_waiting, SP_RING_WAIT_NONE);

    ck_assert_int_eq(sp_ring_write(&r, 5, "hello", 5, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 1);
    ck_assert_uint_eq(sp_ring_free_segs(&r), 7);
    ck_assert_int_eq(sp_ring_wait_readable(&r, 0), 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), 5);
    ck_assert_uint_eq(type, 5);
    ck_assert_mem_eq(buf, "hello", 5);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), SP_EAGAIN);

    /* Reset empties a ring holding data. */
    ck_assert_int_eq(sp_ring_write(&r, 5, "abc", 3, 0), 0);
    ck_assert_int_eq(sp_ring_write(&r, 6, "def", 3, 0), 0);
    sp_ring_reset(&r);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    ck_assert_uint_eq(r.ctl->head, 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), SP_EAGAIN);
    check_circle(&r);
    ck_assert_int_eq(sp_ring_write(&r, 7, "xyz", 3, 0), 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), 3);
    ck_assert_uint_eq(type, 7);
    ck_assert_mem_eq(buf, "xyz", 3);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_zero_length_messages)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 4, 64, &size);
    unsigned char buf[8];
    unsigned type = 0;
    sp_ring_msg_t msg;
    struct iovec iov[2];
    ck_assert_int_eq(sp_ring_write(&r, 9, NULL, 0, 0), 0);
    ck_assert_int_eq(sp_ring_writev(&r, 10, NULL, 0, 0), 0);
    struct iovec empty[2] = {{NULL, 0}, {NULL, 0}};
    ck_assert_int_eq(sp_ring_writev(&r, 11, empty, 2, 0), 0);
    int n = 1;
    ck_assert_int_eq(sp_ring_reserve(&r, 0, iov, &n, 0), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_uint_eq(iov[0].iov_len, 0);
    ck_assert_int_eq(sp_ring_commit(&r, 12), 0);
    /* Each takes one segment. */
    ck_assert_uint_eq(sp_ring_used(&r), 4);
    ck_assert_int_eq(sp_ring_write(&r, 13, NULL, 0, 0), SP_EAGAIN);

    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 2), 0);
    ck_assert_uint_eq(msg.type, 9);
    ck_assert_uint_eq(msg.length, 0);
    ck_assert_uint_eq(msg.remaining, 0);
    ck_assert_uint_eq(msg.nfrag, 0);
    ck_assert_int_eq(sp_ring_consume(&r, 1), SP_EINVAL);
    ck_assert_int_eq(sp_ring_consume(&r, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 3);
    /* A zero-length read needs no buffer room. */
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, 0, 0), 0);
    ck_assert_uint_eq(type, 10);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), 0);
    ck_assert_uint_eq(type, 11);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), 0);
    ck_assert_uint_eq(type, 12);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_wraparound)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 4, 64, &size);
    pattern_init();
    /* 5000 messages of 0..128 bytes (1-2 segments) with up to three in
     * flight, so every segment is the start, middle and end of messages at
     * every ring position. */
    uint32_t wseq = 0, rseq = 0;
    while (rseq < 5000) {
        size_t len = mix(wseq) % 129;
        int rc = wseq < 5000 ? put(&r, wseq, len, 0) : SP_EAGAIN;
        if (rc == 0) {
            wseq++;
            if (mix(wseq ^ 77) % 3 != 0)
                continue;
        } else {
            ck_assert_int_eq(rc, SP_EAGAIN);
        }
        if (rseq < wseq) {
            get_check(&r, rseq, mix(rseq) % 129);
            rseq++;
        }
    }
    ck_assert_uint_gt(r.ctl->head, 1000 * r.nseg);
    ck_assert_uint_eq(sp_ring_used(&r), 0);

    /* The free-running counters wrap past 2^32 without a hiccup. */
    r.ctl->head = r.ctl->tail = 0xfffffff0u;
    for (uint32_t s = 0; s < 100; s++) {
        size_t len = mix(s) % 200; /* 1..4 segments */
        ck_assert_int_eq(put(&r, s, len, 0), 0);
        get_check(&r, s, len);
    }
    ck_assert_uint_lt(r.ctl->head, 0x1000u);
    /* A full ring across the wrap. */
    r.ctl->head = r.ctl->tail = 0xfffffffeu;
    for (uint32_t s = 0; s < 4; s++)
        ck_assert_int_eq(put(&r, s, 64, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 4);
    ck_assert_int_eq(put(&r, 4, 1, 0), SP_EAGAIN);
    for (uint32_t s = 0; s < 4; s++)
        get_check(&r, s, 64);
    ck_assert_uint_eq(r.ctl->head, 2);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_multisegment_sizes)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 256, &size);
    pattern_init();
    static const size_t lens[] = {1,   63,  64,  255, 256,  257,  511, 512,
                                  513, 767, 768, 769, 1791, 2047, 2048};
    uint32_t seq = 0;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++, seq++) {
        size_t len = lens[i];
        uint32_t k = (uint32_t)((len + 255) / 256);
        ck_assert_int_eq(put(&r, seq, len, 0), 0);
        ck_assert_uint_eq(sp_ring_used(&r), k);
        sp_ring_msg_t msg;
        struct iovec iov[8];
        ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 8), (int)k);
        ck_assert_uint_eq(msg.length, len);
        ck_assert_uint_eq(msg.remaining, len);
        ck_assert_uint_eq(msg.nfrag, k);
        size_t off = 0;
        for (uint32_t f = 0; f < k; f++) {
            size_t want = len - off < 256 ? len - off : 256;
            ck_assert_uint_eq(iov[f].iov_len, want);
            ck_assert(memcmp(iov[f].iov_base, pattern_at(seq) + off, want) ==
                      0);
            off += want;
        }
        /* The segment flags and lengths as drawn in sp_ring-t.h. */
        uint32_t t = r.ctl->tail;
        for (uint32_t f = 0; f < k; f++) {
            const sp_ring_segctl_t *sc = &r.seg[(t + f) & r.mask];
            ck_assert_uint_eq(sc->flags, (f == 0 ? SP_RING_FIRST : 0) |
                                             (f == k - 1 ? SP_RING_LAST : 0));
            ck_assert_uint_eq(sc->length, len - f * 256);
            ck_assert_uint_eq(sc->begin, 0);
        }
        get_check(&r, seq, len);
        ck_assert_uint_eq(sp_ring_used(&r), 0);
    }
    /* Capacity + 1 can never fit, by any route; nothing is published. */
    ck_assert_int_eq(put(&r, seq, 2049, 0), SP_EMSGSIZE);
    ck_assert_int_eq(put(&r, seq, 2049, sp_deadline_ms(10000)), SP_EMSGSIZE);
    struct iovec two[2] = {{(void *)pattern, 2000}, {(void *)pattern, 49}};
    ck_assert_int_eq(sp_ring_writev(&r, 1, two, 2, 0), SP_EMSGSIZE);
    struct iovec res[9];
    int n = 9;
    ck_assert_int_eq(sp_ring_reserve(&r, 2049, res, &n, 0), SP_EMSGSIZE);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    /* The whole capacity needs an empty ring. */
    ck_assert_int_eq(put(&r, seq, 1, 0), 0);
    ck_assert_int_eq(put(&r, seq + 1, 2048, 0), SP_EAGAIN);
    get_check(&r, seq, 1);
    ck_assert_int_eq(put(&r, seq + 1, 2048, 0), 0);
    ck_assert_uint_eq(sp_ring_free_segs(&r), 0);
    get_check(&r, seq + 1, 2048);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_full_blocks_with_deadline)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 256, &size);
    pattern_init();
    for (uint32_t s = 0; s < 7; s++)
        ck_assert_int_eq(put(&r, s, 200, 0), 0);
    /* One segment free: a 2-segment message waits, a 1-segment one fits. */
    ck_assert_uint_eq(sp_ring_free_segs(&r), 1);
    ck_assert_int_eq(put(&r, 7, 300, 0), SP_EAGAIN);
    ck_assert_int_eq(put(&r, 7, 256, 0), 0);
    ck_assert_uint_eq(sp_ring_free_segs(&r), 0);
    ck_assert_int_eq(put(&r, 8, 0, 0), SP_EAGAIN);
    struct iovec iov[2];
    int n = 2;
    ck_assert_int_eq(sp_ring_reserve(&r, 10, iov, &n, 0), SP_EAGAIN);
    int64_t deadline = sp_now_ns() + 150 * MS;
    ck_assert_int_eq(put(&r, 8, 10, deadline), SP_ETIMEDOUT);
    int64_t late = sp_now_ns() - deadline;
    ck_assert_msg(late >= 0, "timed out %lld ns early", (long long)-late);
    ck_assert_msg(late < 2000 * MS, "timed out %lld ms late",
                  (long long)(late / MS));
    ck_assert_uint_eq(r.ctl->sender_waiting, SP_RING_WAIT_NONE);
    n = 2;
    deadline = sp_now_ns() + 50 * MS;
    ck_assert_int_eq(sp_ring_reserve(&r, 10, iov, &n, deadline), SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    /* Nothing was overwritten: everything reads back in order. */
    ck_assert_uint_eq(sp_ring_used(&r), 8);
    for (uint32_t s = 0; s < 7; s++)
        get_check(&r, s, 200);
    get_check(&r, 7, 256);
    ck_assert_int_eq(put(&r, 8, 10, sp_deadline_ms(1000)), 0);
    get_check(&r, 8, 10);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_read_into_small_buffer)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 256, &size);
    pattern_init();
    unsigned char buf[600];
    unsigned type = 4242;
    ck_assert_int_eq(put(&r, 1, 300, 0), 0);
    ck_assert_int_eq(put(&r, 2, 5, 0), 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, 299, 0), SP_EMSGSIZE);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, 0, 0), SP_EMSGSIZE);
    ck_assert_uint_eq(type, 4242);
    ck_assert_uint_eq(sp_ring_used(&r), 3);
    sp_ring_msg_t msg;
    struct iovec iov[4];
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 4), 2);
    ck_assert_uint_eq(msg.remaining, 300);
    ck_assert_uint_eq(msg.type, type_of(1));
    /* After a partial consume, the rest must fit. */
    ck_assert_int_eq(sp_ring_consume(&r, 100), 0);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, 199, 0), SP_EMSGSIZE);
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, 200, 0), 200);
    ck_assert(memcmp(buf, pattern_at(1) + 100, 200) == 0);
    ck_assert_uint_eq(type, type_of(1));
    get_check(&r, 2, 5);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_peek_and_consume_in_pieces)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 64, &size);
    pattern_init();
    /* 300 bytes: 4 full segments and 44 bytes, then a second message. */
    ck_assert_int_eq(put(&r, 1, 300, 0), 0);
    ck_assert_int_eq(put(&r, 2, 70, 0), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 7);
    sp_ring_msg_t msg;
    struct iovec iov[8];
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 8), 5);
    ck_assert_uint_eq(msg.length, 300);
    ck_assert_uint_eq(msg.nfrag, 5);
    /* Fewer iov slots than fragments: fills what it can, counts all. */
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 2), 2);
    ck_assert_uint_eq(msg.nfrag, 5);
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 0), 0);
    ck_assert_uint_eq(msg.remaining, 300);

    ck_assert_int_eq(sp_ring_consume(&r, 301), SP_EINVAL);
    ck_assert_uint_eq(sp_ring_used(&r), 7);
    static const size_t pieces[] = {7, 13, 0, 61, 1, 63, 64, 47, 44};
    size_t done = 0;
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        ck_assert_int_eq(sp_ring_consume(&r, pieces[i]), 0);
        done += pieces[i];
        if (done == 300)
            break;
        int nf = sp_ring_peek(&r, &msg, iov, 8);
        ck_assert_uint_eq(msg.remaining, 300 - done);
        ck_assert_uint_eq(msg.type, type_of(1));
        /* Segments fully read went back to the producer. */
        uint32_t unread = (uint32_t)(5 - done / 64);
        ck_assert_uint_eq(sp_ring_used(&r), unread + 2);
        ck_assert_int_eq(nf, (int)unread);
        ck_assert_uint_eq(msg.nfrag, unread);
        ck_assert_uint_eq(iov[0].iov_len, 64 - done % 64 < 300 - done
                                              ? 64 - done % 64
                                              : 300 - done);
        /* The bytes seen are the unread ones, in order. */
        size_t off = done;
        for (int f = 0; f < nf; f++) {
            ck_assert(memcmp(iov[f].iov_base, pattern_at(1) + off,
                             iov[f].iov_len) == 0);
            off += iov[f].iov_len;
        }
        ck_assert_uint_eq(off, 300);
        ck_assert_int_eq(sp_ring_consume(&r, 300 - done + 1), SP_EINVAL);
    }
    ck_assert_uint_eq(done, 300);
    /* The last piece finished message 1 and did not touch message 2. */
    ck_assert_uint_eq(sp_ring_used(&r), 2);
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 8), 2);
    ck_assert_uint_eq(msg.length, 70);
    ck_assert_uint_eq(msg.remaining, 70);
    ck_assert_uint_eq(msg.type, type_of(2));
    ck_assert_int_eq(sp_ring_consume(&r, 71), SP_EINVAL);
    /* Consuming a whole fragment exactly stops at the fragment's end. */
    ck_assert_int_eq(sp_ring_consume(&r, 64), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 1);
    ck_assert_int_eq(sp_ring_peek(&r, &msg, iov, 8), 1);
    ck_assert_uint_eq(msg.remaining, 6);
    ck_assert(memcmp(iov[0].iov_base, pattern_at(2) + 64, 6) == 0);
    ck_assert_int_eq(sp_ring_consume(&r, 6), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    ck_assert_int_eq(sp_ring_consume(&r, 0), SP_EAGAIN);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_reserve_commit_cancel)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 256, &size);
    pattern_init();
    struct iovec iov[8];
    int n = 2;
    /* 600 bytes need 3 entries; a negative count is no room at all. */
    ck_assert_int_eq(sp_ring_reserve(&r, 600, iov, &n, 0), SP_EINVAL);
    n = -1;
    ck_assert_int_eq(sp_ring_reserve(&r, 600, iov, &n, 0), SP_EINVAL);
    ck_assert_int_eq(sp_ring_reserve(&r, 0, iov, &n, 0), SP_EINVAL);
    n = 8;
    ck_assert_int_eq(sp_ring_reserve(&r, 600, iov, &n, 0), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_uint_eq(iov[0].iov_len, 256);
    ck_assert_uint_eq(iov[1].iov_len, 256);
    ck_assert_uint_eq(iov[2].iov_len, 88);
    /* Nothing is visible before the commit. */
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    /* One reservation at a time; no plain write in between. */
    int m = 8;
    struct iovec other[8];
    ck_assert_int_eq(sp_ring_reserve(&r, 10, other, &m, 0), SP_ESTATE);
    ck_assert_int_eq(put(&r, 9, 10, 0), SP_ESTATE);
    /* Fill the segments the way a socket read would: readv. */
    ck_assert_int_eq(write(fds[1], pattern_at(1), 600), 600);
    ck_assert_int_eq(readv(fds[0], iov, n), 600);
    ck_assert_int_eq(sp_ring_commit(&r, type_of(1)), 0);
    ck_assert_uint_eq(sp_ring_used(&r), 3);
    ck_assert_int_eq(sp_ring_commit(&r, 1), SP_ESTATE);
    get_check(&r, 1, 600);

    /* Cancel drops the reservation; nothing is published. */
    n = 8;
    ck_assert_int_eq(sp_ring_reserve(&r, 300, iov, &n, 0), 0);
    memset(iov[0].iov_base, 0xab, iov[0].iov_len);
    sp_ring_cancel(&r);
    ck_assert_uint_eq(sp_ring_used(&r), 0);
    ck_assert_int_eq(sp_ring_commit(&r, 1), SP_ESTATE);
    unsigned type;
    unsigned char buf[16];
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0), SP_EAGAIN);
    /* The segments are reused by the next message. */
    ck_assert_int_eq(put(&r, 2, 300, 0), 0);
    get_check(&r, 2, 300);

    /* A reservation lands at the producer's position after wrapping. */
    for (uint32_t s = 3; s < 3 + 20; s++) {
        size_t len = 1 + mix(s) % 700;
        n = 8;
        ck_assert_int_eq(sp_ring_reserve(&r, len, iov, &n, 0), 0);
        size_t off = 0;
        for (int f = 0; f < n; f++) {
            memcpy(iov[f].iov_base, pattern_at(s) + off, iov[f].iov_len);
            off += iov[f].iov_len;
        }
        ck_assert_uint_eq(off, len);
        ck_assert_int_eq(sp_ring_commit(&r, type_of(s)), 0);
        get_check(&r, s, len);
    }
    close(fds[0]);
    close(fds[1]);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_types_preserved)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 8, 64, &size);
    static const unsigned types[] = {0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff};
    const size_t nt = sizeof(types) / sizeof(types[0]);
    for (size_t i = 0; i < nt; i++)
        ck_assert_int_eq(sp_ring_write(&r, types[i], "t", (i % 2) ? 1 : 0, 0),
                         0);
    for (size_t i = 0; i < nt; i++) {
        sp_ring_msg_t msg;
        struct iovec iov[1];
        ck_assert_int_ge(sp_ring_peek(&r, &msg, iov, 1), 0);
        ck_assert_uint_eq(msg.type, types[i]);
        unsigned type = 12345;
        char buf[4];
        ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), 0),
                         (i % 2) ? 1 : 0);
        ck_assert_uint_eq(type, types[i]);
    }
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_poller_flags)
{
    sp_ring_t prod, cons;
    size_t size;
    void *mem = ring_new(&prod, 4, 64, &size);
    ck_assert_int_eq(sp_ring_attach(&cons, mem, size), 0);
    unsigned type;
    char buf[64];
    memset(buf, 'p', sizeof(buf));

    /* Reader registers on an empty ring: may sleep. */
    ck_assert_int_eq(sp_ring_poll_readable(&cons), 0);
    ck_assert_uint_eq(cons.ctl->receiver_waiting, SP_RING_WAIT_POLL);
    ck_assert_int_eq(prod.wake_poller, 0);
    ck_assert_int_eq(sp_ring_write(&prod, 1, "a", 1, 0), 0);
    ck_assert_int_eq(prod.wake_poller, 1); /* ring the reader's doorbell */
    prod.wake_poller = 0;
    /* Data is there: do not sleep, and the flag is withdrawn. */
    ck_assert_int_eq(sp_ring_poll_readable(&cons), 1);
    ck_assert_uint_eq(cons.ctl->receiver_waiting, SP_RING_WAIT_NONE);
    ck_assert_int_eq(sp_ring_write(&prod, 1, "b", 1, 0), 0);
    ck_assert_int_eq(prod.wake_poller, 0); /* nobody polls */
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 1);
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 1);
    ck_assert_int_eq(sp_ring_poll_readable(&cons), 0);
    sp_ring_unpoll_reader(&cons);
    ck_assert_uint_eq(cons.ctl->receiver_waiting, SP_RING_WAIT_NONE);
    ck_assert_int_eq(sp_ring_write(&prod, 1, "c", 1, 0), 0);
    ck_assert_int_eq(prod.wake_poller, 0);
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 1);

    /* Writer registers on a full ring. */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(sp_ring_write(&prod, 2, buf, 64, 0), 0);
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 1), 0);
    ck_assert_uint_eq(prod.ctl->sender_waiting, SP_RING_WAIT_POLL);
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 64);
    ck_assert_int_eq(cons.wake_poller, 1);
    cons.wake_poller = 0;
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 1), 1);
    ck_assert_uint_eq(prod.ctl->sender_waiting, SP_RING_WAIT_NONE);
    /* Asking for more room than is free (or than exists) may sleep. */
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 2), 0);
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 64);
    ck_assert_int_eq(cons.wake_poller, 1);
    cons.wake_poller = 0;
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 2), 1);
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 5), 0);
    sp_ring_unpoll_writer(&prod);
    ck_assert_uint_eq(prod.ctl->sender_waiting, SP_RING_WAIT_NONE);
    ck_assert_int_eq(sp_ring_read(&cons, &type, buf, sizeof(buf), 0), 64);
    ck_assert_int_eq(cons.wake_poller, 0);
    /* Peek + consume wakes the poller too. */
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 4), 0);
    sp_ring_msg_t msg;
    struct iovec iov[1];
    ck_assert_int_eq(sp_ring_peek(&cons, &msg, iov, 1), 1);
    ck_assert_int_eq(sp_ring_consume(&cons, 10), 0);
    ck_assert_int_eq(cons.wake_poller, 0); /* nothing released yet */
    ck_assert_int_eq(sp_ring_consume(&cons, 54), 0);
    ck_assert_int_eq(cons.wake_poller, 1);
    ck_assert_int_eq(sp_ring_poll_writable(&prod, 4), 1);
    sp_test_unshare(mem, size);
}
END_TEST

/* ---- two processes: wake-ups ---- */

typedef struct wake_result {
    long rc;
    int64_t t_ns;
    unsigned char buf[512];
} wake_result_t;

START_TEST(ring_sleeping_reader_and_writer_wake)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 4, 128, &size);
    wake_result_t *res = sp_test_shared(sizeof(*res));
    pattern_init();

    /* A reader asleep on the empty ring wakes on the write. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_ring_t c;
        unsigned type = 0;
        if (sp_ring_attach(&c, mem, size) != 0)
            _exit(2);
        res->rc = sp_ring_read(&c, &type, res->buf, sizeof(res->buf),
                               sp_deadline_ms(20000));
        res->t_ns = sp_now_ns();
        _exit(type == type_of(1) ? 0 : 3);
    }
    wait_asleep(pid, &r.ctl->receiver_waiting, SP_RING_WAIT_FUTEX);
    int64_t t_write = sp_now_ns();
    ck_assert_int_eq(put(&r, 1, 300, 0), 0);
    sp_test_wait_ok(pid);
    ck_assert_int_eq(res->rc, 300);
    ck_assert(memcmp(res->buf, pattern_at(1), 300) == 0);
    ck_assert_msg(res->t_ns - t_write < 1000 * MS, "reader woke %lld ms late",
                  (long long)((res->t_ns - t_write) / MS));
    ck_assert_uint_eq(r.ctl->receiver_waiting, SP_RING_WAIT_NONE);

    /* A writer asleep on the full ring wakes when a read frees room. */
    for (uint32_t s = 0; s < 4; s++)
        ck_assert_int_eq(put(&r, 10 + s, 128, 0), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_ring_t p;
        if (sp_ring_attach(&p, mem, size) != 0)
            _exit(2);
        res->rc = put(&p, 20, 100, sp_deadline_ms(20000));
        res->t_ns = sp_now_ns();
        _exit(0);
    }
    wait_asleep(pid, &r.ctl->sender_waiting, SP_RING_WAIT_FUTEX);
    int64_t t_read = sp_now_ns();
    get_check(&r, 10, 128);
    sp_test_wait_ok(pid);
    ck_assert_int_eq(res->rc, 0);
    ck_assert_msg(res->t_ns - t_read < 1000 * MS, "writer woke %lld ms late",
                  (long long)((res->t_ns - t_read) / MS));
    ck_assert_uint_eq(r.ctl->sender_waiting, SP_RING_WAIT_NONE);
    for (uint32_t s = 1; s < 4; s++)
        get_check(&r, 10 + s, 128);
    get_check(&r, 20, 100);
    sp_test_unshare(res, sizeof(*res));
    sp_test_unshare(mem, size);
}
END_TEST

/* ---- two processes: the stress ---- */

/* 16 segments, not 8: the ring still fills all the time, but the sides
 * sleep about half as often (~0.13 sleeps per message each instead of
 * ~0.3), which keeps the test under ~10 s on machines where a cross-CPU
 * wake-up costs 20-50 us (seen on this project's 2-vCPU VMs). */
#define STRESS_NSEG 16
#define STRESS_SEG 256
#define STRESS_DEADLINE_MS 5000
/* The issue asks for >= 1,000,000 messages.  ASan+UBSan builds run the
 * same count: the test is bound by sleeps and wake-ups, not by code. */
#define STRESS_COUNT 1000000u

typedef struct stress_side {
    int failed;
    uint32_t seq; /* progress, for the report */
    long nvcsw;
    char why[200];
} stress_side_t;

typedef struct stress_shared {
    stress_side_t side[2]; /* 0 producer, 1 consumer */
    int mixed;
    uint32_t count;
} stress_shared_t;

static size_t stress_len(uint32_t seq)
{
    uint32_t h = mix(seq);
    if (h % 997 == 0)
        return STRESS_NSEG * STRESS_SEG; /* the whole ring */
    return (h >> 10) % (3 * STRESS_SEG + 1);
}

static void stress_fail(stress_side_t *me, uint32_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(me->why, sizeof(me->why), "seq %u: ", seq);
    vsnprintf(me->why + n, sizeof(me->why) - (size_t)n, fmt, ap);
    va_end(ap);
    me->seq = seq;
    me->failed = 1;
    _exit(1);
}

static long nvcsw_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw;
}

static void stress_producer(stress_shared_t *sh, void *ring, size_t size)
{
    stress_side_t *me = &sh->side[0];
    sp_ring_t r;
    if (sp_ring_attach(&r, ring, size) != 0)
        stress_fail(me, 0, "attach");
    long sw0 = nvcsw_now();
    for (uint32_t seq = 0; seq < sh->count; seq++) {
        size_t len = stress_len(seq);
        const unsigned char *p = pattern_at(seq);
        unsigned type = type_of(seq);
        int64_t deadline = sp_deadline_ms(STRESS_DEADLINE_MS);
        uint32_t how = sh->mixed ? mix(seq ^ 0xc0ffeeu) % 3 : 0;
        int rc;
        if (how == 0) {
            rc = sp_ring_write(&r, type, p, len, deadline);
        } else if (how == 1) {
            /* Three pieces cut at pseudo-random places (some empty). */
            size_t a = len ? mix(seq + 7) % (len + 1) : 0;
            size_t b = a + (len - a ? mix(seq + 11) % (len - a + 1) : 0);
            struct iovec iov[3] = {{(void *)p, a},
                                   {(void *)(p + a), b - a},
                                   {(void *)(p + b), len - b}};
            rc = sp_ring_writev(&r, type, iov, 3, deadline);
        } else {
            struct iovec iov[STRESS_NSEG];
            int n = STRESS_NSEG;
            rc = sp_ring_reserve(&r, len, iov, &n, deadline);
            if (rc == 0) {
                size_t off = 0;
                for (int f = 0; f < n; f++) {
                    memcpy(iov[f].iov_base, p + off, iov[f].iov_len);
                    off += iov[f].iov_len;
                }
                if (off != len)
                    stress_fail(me, seq, "reserve gave %zu of %zu bytes", off,
                                len);
                rc = sp_ring_commit(&r, type);
            }
        }
        if ((seq & 0xffff) == 0)
            me->seq = seq;
        if (rc != 0)
            stress_fail(me, seq, "write (method %u, %zu bytes): %s", how, len,
                        sp_strerror(rc));
        if (sp_now_ns() > deadline)
            stress_fail(me, seq,
                        "write returned after its deadline: a "
                        "lost wake-up, rescued by the final re-check");
    }
    me->seq = sh->count;
    me->nvcsw = nvcsw_now() - sw0;
    _exit(0);
}

static void stress_consumer(stress_shared_t *sh, void *ring, size_t size)
{
    stress_side_t *me = &sh->side[1];
    static unsigned char buf[STRESS_NSEG * STRESS_SEG + 64];
    sp_ring_t r;
    if (sp_ring_attach(&r, ring, size) != 0)
        stress_fail(me, 0, "attach");
    long sw0 = nvcsw_now();
    for (uint32_t seq = 0; seq < sh->count; seq++) {
        size_t len = stress_len(seq);
        const unsigned char *p = pattern_at(seq);
        unsigned want_type = type_of(seq);
        uint32_t h = mix(seq ^ 0xfeedu);
        uint32_t how = sh->mixed ? h % 2 : 0;
        int64_t deadline = sp_deadline_ms(STRESS_DEADLINE_MS);
        if (how == 0) {
            unsigned type = 0x10000;
            if (sh->mixed && len > 0 && h % 17 == 0) {
                /* Too small a buffer: refused, nothing consumed. */
                long rc = sp_ring_read(&r, &type, buf, len - 1, deadline);
                if (rc != SP_EMSGSIZE)
                    stress_fail(me, seq, "short read gave %ld", rc);
            }
            long got = sp_ring_read(&r, &type, buf, sizeof(buf), deadline);
            if (got < 0)
                stress_fail(me, seq, "read: %s", sp_strerror((int)got));
            if ((size_t)got != len)
                stress_fail(me, seq, "read %ld bytes, want %zu", got, len);
            if (type != want_type)
                stress_fail(me, seq, "type %u, want %u", type, want_type);
            if (memcmp(buf, p, len) != 0)
                stress_fail(me, seq, "content differs (%zu bytes)", len);
        } else {
            int rc = sp_ring_wait_readable(&r, deadline);
            if (rc != 0)
                stress_fail(me, seq, "wait_readable: %s", sp_strerror(rc));
            size_t done = 0;
            uint32_t k = 0;
            do {
                sp_ring_msg_t msg;
                struct iovec iov[STRESS_NSEG];
                int n = sp_ring_peek(&r, &msg, iov, STRESS_NSEG);
                if (n < 0)
                    stress_fail(me, seq, "peek: %s", sp_strerror(n));
                if (msg.type != want_type || msg.remaining != len - done ||
                    (done == 0 && msg.length != len))
                    stress_fail(me, seq,
                                "peek: type %u len %zu remaining %zu after "
                                "%zu of %zu",
                                msg.type, msg.length, msg.remaining, done, len);
                size_t off = done;
                for (int f = 0; f < n; f++) {
                    if (memcmp(iov[f].iov_base, p + off, iov[f].iov_len))
                        stress_fail(me, seq, "content differs at %zu", off);
                    off += iov[f].iov_len;
                }
                if (off != len)
                    stress_fail(me, seq, "peek shows %zu of %zu", off, len);
                /* Consume in pieces of 1..300 bytes, the last one exact. */
                size_t piece = 1 + mix(seq * 31u + k++) % 300;
                if (piece > len - done)
                    piece = len - done;
                rc = sp_ring_consume(&r, piece);
                if (rc != 0)
                    stress_fail(me, seq, "consume %zu: %s", piece,
                                sp_strerror(rc));
                done += piece;
            } while (done < len);
        }
        if (sp_now_ns() > deadline)
            stress_fail(me, seq,
                        "read returned after its deadline: a "
                        "lost wake-up, rescued by the final re-check");
        if ((seq & 0xffff) == 0)
            me->seq = seq;
    }
    me->seq = sh->count;
    me->nvcsw = nvcsw_now() - sw0;
    _exit(0);
}

/* Reap the two children of a two-process test; when one fails, the other
 * cannot finish, so kill it (its report then says so). */
static void reap_pair(const pid_t pid[2], stress_side_t side[2], int ok[2])
{
    ok[0] = ok[1] = 0;
    for (int left = 2; left > 0; left--) {
        int status = 0;
        pid_t w = waitpid(-1, &status, 0);
        ck_assert_int_gt(w, 0);
        int i = w == pid[0] ? 0 : 1;
        ok[i] = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok[i] && left == 2) {
            kill(pid[1 - i], SIGKILL);
            if (!side[1 - i].failed)
                snprintf(side[1 - i].why, sizeof(side[1 - i].why),
                         "killed at %u after the other side failed",
                         side[1 - i].seq);
        }
    }
}

static void run_stress(int mixed)
{
    size_t size = sp_ring_bytes(STRESS_NSEG, STRESS_SEG);
    void *ring = sp_test_shared(size);
    stress_shared_t *sh = sp_test_shared(sizeof(*sh));
    ck_assert_int_eq(sp_ring_format(ring, STRESS_NSEG, STRESS_SEG), 0);
    pattern_init();
    sh->mixed = mixed;
    sh->count = STRESS_COUNT;

    int64_t t0 = sp_now_ns();
    pid_t pid[2];
    pid[0] = fork();
    ck_assert_int_ge(pid[0], 0);
    if (pid[0] == 0)
        stress_producer(sh, ring, size);
    pid[1] = fork();
    ck_assert_int_ge(pid[1], 0);
    if (pid[1] == 0)
        stress_consumer(sh, ring, size);

    /* Reap both; if one fails, the other cannot finish: kill it. */
    int ok[2];
    reap_pair(pid, sh->side, ok);
    double secs = (sp_now_ns() - t0) / 1e9;
    ck_assert_msg(ok[0] && ok[1],
                  "producer %s (at %u: %s); consumer %s (at %u: %s)",
                  ok[0] ? "ok" : "FAILED", sh->side[0].seq, sh->side[0].why,
                  ok[1] ? "ok" : "FAILED", sh->side[1].seq, sh->side[1].why);
    ck_assert_uint_eq(sh->side[1].seq, STRESS_COUNT);
    fprintf(stderr,
            "ring stress%s: %u messages in %.2f s; sleeps: producer %ld, "
            "consumer %ld\n",
            mixed ? " (mixed calls)" : "", STRESS_COUNT, secs,
            sh->side[0].nvcsw, sh->side[1].nvcsw);
    /* Both sides took the futex path, not just the fast one. */
    ck_assert_msg(sh->side[0].nvcsw >= 1000 && sh->side[1].nvcsw >= 1000,
                  "too few sleeps: producer %ld, consumer %ld",
                  sh->side[0].nvcsw, sh->side[1].nvcsw);
    sp_test_unshare(sh, sizeof(*sh));
    sp_test_unshare(ring, size);
}

START_TEST(ring_stress_million_messages)
{
    run_stress(0);
}
END_TEST

START_TEST(ring_stress_mixed_calls)
{
    run_stress(1);
}
END_TEST

/* ---- two processes: ping-pong over a ring pair ---- */

#define PP_ROUNDS 100000u
#define PP_SPIN_FROM 60000u /* rounds from here on spin first */

typedef struct pp_shared {
    stress_side_t side[2]; /* 0 client, 1 server */
    int64_t t[3];          /* client: start, start of spinning, end */
} pp_shared_t;

/* Read the message numbered seq from in and check it. */
static void pp_read(stress_side_t *me, sp_ring_t *in, uint32_t seq)
{
    static unsigned char buf[512];
    unsigned type = 0;
    int64_t deadline = sp_deadline_ms(STRESS_DEADLINE_MS);
    long got = sp_ring_read(in, &type, buf, sizeof(buf), deadline);
    if (got < 0)
        stress_fail(me, seq, "read: %s", sp_strerror((int)got));
    if (sp_now_ns() > deadline)
        stress_fail(me, seq,
                    "read returned after its deadline: lost "
                    "wake-up");
    size_t len = mix(seq) % 300;
    if ((size_t)got != len || type != type_of(seq) ||
        memcmp(buf, pattern_at(seq), len) != 0)
        stress_fail(me, seq, "wrong message (%ld bytes, type %u)", got, type);
}

static void pp_write(stress_side_t *me, sp_ring_t *out, uint32_t seq)
{
    int rc = put(out, seq, mix(seq) % 300, sp_deadline_ms(STRESS_DEADLINE_MS));
    if (rc != 0)
        stress_fail(me, seq, "write: %s", sp_strerror(rc));
}

/* Client (side 0) sends the even numbers on ring 0 and reads the odd ones
 * from ring 1; the server the other way round. */
static void pp_side(pp_shared_t *sh, unsigned char *mem, size_t size,
                    int server)
{
    stress_side_t *me = &sh->side[server];
    sp_ring_t ring[2];
    if (sp_ring_attach(&ring[0], mem, size) != 0 ||
        sp_ring_attach(&ring[1], mem + size, size) != 0)
        stress_fail(me, 0, "attach");
    sp_ring_t *out = &ring[server], *in = &ring[1 - server];
    const sp_spin_t adaptive = SP_SPIN_INIT(20000);
    long sw0 = nvcsw_now();
    if (!server)
        sh->t[0] = sp_now_ns();
    for (uint32_t i = 0; i < PP_ROUNDS; i++) {
        if (i == PP_SPIN_FROM) {
            me->nvcsw = nvcsw_now() - sw0;
            if (!server)
                sh->t[1] = sp_now_ns();
            ring[0].spin = ring[1].spin = adaptive;
        }
        if (server) {
            pp_read(me, in, 2 * i);
            pp_write(me, out, 2 * i + 1);
        } else {
            pp_write(me, out, 2 * i);
            pp_read(me, in, 2 * i + 1);
        }
    }
    if (!server)
        sh->t[2] = sp_now_ns();
    me->seq = PP_ROUNDS;
    _exit(0);
}

START_TEST(ring_pingpong_no_lost_wakeup)
{
    size_t size = sp_ring_bytes(4, 128);
    unsigned char *mem = sp_test_shared(2 * size);
    pp_shared_t *sh = sp_test_shared(sizeof(*sh));
    ck_assert_int_eq(sp_ring_format(mem, 4, 128), 0);
    ck_assert_int_eq(sp_ring_format(mem + size, 4, 128), 0);
    pattern_init();
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0)
            pp_side(sh, mem, size, i);
    }
    int ok[2];
    reap_pair(pid, sh->side, ok);
    ck_assert_msg(ok[0] && ok[1], "client %s (%s); server %s (%s)",
                  ok[0] ? "ok" : "FAILED", sh->side[0].why,
                  ok[1] ? "ok" : "FAILED", sh->side[1].why);
    fprintf(stderr,
            "ring ping-pong: %u round trips; %.1f us each sleeping, %.1f us "
            "with adaptive spin; sleeps in the first part: client %ld, "
            "server %ld\n",
            PP_ROUNDS, (sh->t[1] - sh->t[0]) / 1e3 / PP_SPIN_FROM,
            (sh->t[2] - sh->t[1]) / 1e3 / (PP_ROUNDS - PP_SPIN_FROM),
            sh->side[0].nvcsw, sh->side[1].nvcsw);
    ck_assert_msg(sh->side[0].nvcsw >= 1000 && sh->side[1].nvcsw >= 1000,
                  "too few sleeps: client %ld, server %ld", sh->side[0].nvcsw,
                  sh->side[1].nvcsw);
    sp_test_unshare(sh, sizeof(*sh));
    sp_test_unshare(mem, 2 * size);
}
END_TEST

/* ---- two processes: peer death ---- */

/* A producer that writes nmsg messages, then lives until killed. */
static pid_t spawn_writer_then_pause(void *mem, size_t size, uint32_t nmsg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_ring_t p;
        if (sp_ring_attach(&p, mem, size) != 0)
            _exit(2);
        for (uint32_t s = 0; s < nmsg; s++)
            if (put(&p, s, 100, sp_deadline_ms(5000)) != 0)
                _exit(3);
        for (;;)
            pause();
    }
    return pid;
}

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

static void reap_killed(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child %d was not killed (status %#x)", (int)pid, status);
}

static sp_ident_t ident_of(pid_t pid)
{
    sp_ident_t id = {.pid = pid, .start = sp_proc_starttime(pid)};
    ck_assert_uint_ne(id.start, 0);
    return id;
}

START_TEST(ring_reader_sees_dead_writer)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 4, 128, &size);
    pattern_init();
    pid_t peer = spawn_writer_then_pause(mem, size, 1);
    sp_ident_t id = ident_of(peer);
    r.peer = &id;
    unsigned type;
    unsigned char buf[256];
    ck_assert_int_eq(
        sp_ring_read(&r, &type, buf, sizeof(buf), sp_deadline_ms(10000)), 100);
    /* Alive and silent: the wait runs to its deadline. */
    int64_t deadline = sp_now_ns() + 300 * MS;
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), deadline),
                     SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    /* Killed 300 ms into a 30 s wait: SP_EPEERDEAD soon after. */
    pid_t killer = spawn_killer(peer, 300);
    int64_t t0 = sp_now_ns();
    long rc = sp_ring_read(&r, &type, buf, sizeof(buf), t0 + 30000 * MS);
    int64_t took = sp_now_ns() - t0;
    ck_assert_int_eq(rc, SP_EPEERDEAD);
    ck_assert_msg(took >= 200 * MS && took < 5000 * MS,
                  "dead peer reported after %lld ms", (long long)(took / MS));
    ck_assert_uint_eq(r.ctl->receiver_waiting, SP_RING_WAIT_NONE);
    sp_test_wait_ok(killer);
    reap_killed(peer);

    /* What a dead writer published is still delivered, then the death. */
    peer = spawn_writer_then_pause(mem, size, 2);
    id = ident_of(peer);
    while (sp_ring_used(&r) < 2)
        sleep_ms(1);
    ck_assert_int_eq(kill(peer, SIGKILL), 0);
    reap_killed(peer);
    get_check(&r, 0, 100);
    ck_assert_int_eq(
        sp_ring_read(&r, &type, buf, sizeof(buf), sp_deadline_ms(30000)), 100);
    t0 = sp_now_ns();
    ck_assert_int_eq(sp_ring_read(&r, &type, buf, sizeof(buf), t0 + 30000 * MS),
                     SP_EPEERDEAD);
    ck_assert_int_lt(sp_now_ns() - t0, 5000 * MS);
    sp_test_unshare(mem, size);
}
END_TEST

START_TEST(ring_writer_sees_dead_reader)
{
    sp_ring_t r;
    size_t size;
    void *mem = ring_new(&r, 4, 128, &size);
    pattern_init();
    for (uint32_t s = 0; s < 4; s++)
        ck_assert_int_eq(put(&r, s, 128, 0), 0);
    pid_t peer = fork();
    ck_assert_int_ge(peer, 0);
    if (peer == 0) {
        for (;;)
            pause();
    }
    sp_ident_t id = ident_of(peer);
    r.peer = &id;
    int64_t deadline = sp_now_ns() + 300 * MS;
    ck_assert_int_eq(put(&r, 4, 10, deadline), SP_ETIMEDOUT);
    ck_assert_int_ge(sp_now_ns(), deadline);
    pid_t killer = spawn_killer(peer, 300);
    int64_t t0 = sp_now_ns();
    int rc = put(&r, 4, 10, t0 + 30000 * MS);
    int64_t took = sp_now_ns() - t0;
    ck_assert_int_eq(rc, SP_EPEERDEAD);
    ck_assert_msg(took >= 200 * MS && took < 5000 * MS,
                  "dead peer reported after %lld ms", (long long)(took / MS));
    ck_assert_uint_eq(r.ctl->sender_waiting, SP_RING_WAIT_NONE);
    struct iovec iov[1];
    int n = 1;
    ck_assert_int_eq(sp_ring_reserve(&r, 10, iov, &n, sp_deadline_ms(30000)),
                     SP_EPEERDEAD);
    sp_test_wait_ok(killer);
    reap_killed(peer);
    /* The ring itself is intact. */
    ck_assert_uint_eq(sp_ring_used(&r), 4);
    get_check(&r, 0, 128);
    sp_test_unshare(mem, size);
}
END_TEST

Suite *suite_ring(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("single");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ring_geometry_and_refusals);
    tcase_add_test(tc, ring_empty_and_roundtrip);
    tcase_add_test(tc, ring_zero_length_messages);
    tcase_add_test(tc, ring_wraparound);
    tcase_add_test(tc, ring_multisegment_sizes);
    tcase_add_test(tc, ring_full_blocks_with_deadline);
    tcase_add_test(tc, ring_read_into_small_buffer);
    tcase_add_test(tc, ring_peek_and_consume_in_pieces);
    tcase_add_test(tc, ring_reserve_commit_cancel);
    tcase_add_test(tc, ring_types_preserved);
    tcase_add_test(tc, ring_poller_flags);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ring_sleeping_reader_and_writer_wake);
    tcase_add_test(tc, ring_stress_million_messages);
    tcase_add_test(tc, ring_stress_mixed_calls);
    tcase_add_test(tc, ring_pingpong_no_lost_wakeup);
    tcase_add_test(tc, ring_reader_sees_dead_writer);
    tcase_add_test(tc, ring_writer_sees_dead_reader);
    suite_add_tcase(s, tc);
    return s;
}

/* sp_iov_trim: the prefix of a peeked message that fits a frame/credit. */
START_TEST(ring_iov_trim)
{
    char a[10], b[20], c[30];
    struct iovec iov[3] = {{a, 10}, {b, 20}, {c, 30}};
    int n = 3;
    ck_assert_uint_eq(sp_iov_trim(iov, &n, 25), 25);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_eq(iov[0].iov_len, 10);
    ck_assert_uint_eq(iov[1].iov_len, 15);
    struct iovec all[2] = {{a, 10}, {b, 20}};
    n = 2;
    ck_assert_uint_eq(sp_iov_trim(all, &n, 1000), 30);
    ck_assert_int_eq(n, 2);
    n = 2;
    ck_assert_uint_eq(sp_iov_trim(all, &n, 10), 10);
    ck_assert_int_eq(n, 1);
    n = 1;
    ck_assert_uint_eq(sp_iov_trim(all, &n, 0), 0);
    ck_assert_int_eq(n, 0);
}
END_TEST

Suite *suite_ring_extra(void)
{
    Suite *s = suite_create("ring_iov");
    TCase *tc = tcase_create("ring_iov");
    tcase_add_test(tc, ring_iov_trim);
    suite_add_tcase(s, tc);
    return s;
}
