/*
 * test_shmlink.c - shm: links (sp_shmlink.c): the rendezvous over a Unix
 * stream socket, the two rings, the wake-ups through the pollable fd, and
 * peers that close, die (SIGKILL), or lie.
 *
 * Both ends usually run in this process over a socketpair, one call at a
 * time, so every wake-up can be predicted exactly: a wake-up is one byte
 * on the rendezvous socket (the pollable fd), so a side's fd must hold
 * exactly as many bytes as the peer owed it wake-ups since it last took
 * them (readable when one was owed, not when none was: no lost and no
 * spurious wake-ups).  The crash, fork and stress cases
 * use real processes and signals (SIGKILL, SIGSTOP/SIGCONT).  A "raw" peer
 * - memfd, ring header and connect message built here by hand, mirroring
 * the layout in sp_shmlink.c - plays a hostile or broken client (or
 * server) where a test needs one.
 *
 * Lost wake-ups are looked for three ways: a stream stress (1M messages
 * through a 4 KiB ring, either side asleep in poll() with a 2 s limit), a
 * ping-pong where every single wake-up is needed, and - deterministically -
 * a SIGSEGV from a read-only header page that puts the peer's move between
 * a side's first look and its flag store (shmlink_flag_store_race).
 *
 * Children never call ck_assert (Check's failure channel belongs to the
 * test process): they report through their exit status or shared memory.
 */
#include "sp_unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_proc.h"
#include "sp_shmlink.h"

/* ---- the layout, mirrored from sp_shmlink.c ---------------------------- */

#define RAW_RING_MAGIC 0x53505368u /* "SPSh" */
#define RAW_HDR 256u               /* header bytes before the data */
#define OFF_MAGIC 0u
#define OFF_SIZE 4u
#define OFF_HEAD 64u
#define OFF_TAIL 128u
#define OFF_RDW 192u /* consumer waits for data */
#define OFF_WRW 196u /* producer waits for room */

typedef struct raw_msg {
    char magic[8]; /* "SPSHMLK" with its NUL */
    uint32_t version;
    uint32_t ring_size;
} raw_msg_t;

_Static_assert(sizeof(raw_msg_t) == 16, "connect message layout");

#define MIN SP_SHMLINK_RING_MIN
#define TEST_RING_NAME "sp-test-ring" /* our memfds, for /proc/self/maps */

#define h32(b, off) ((uint32_t *)((uint8_t *)(b) + (off)))
#define h64(b, off) ((uint64_t *)((uint8_t *)(b) + (off)))

/* ---- helpers ---------------------------------------------------------- */

#define CK_EAGAIN(expr)                                                        \
    do {                                                                       \
        errno = 0;                                                             \
        ssize_t rc_ = (expr);                                                  \
        int e_ = errno;                                                        \
        ck_assert_msg(rc_ == -1 && e_ == EAGAIN,                               \
                      "%s: %zd, errno %d (%s), want EAGAIN", #expr, rc_, e_,   \
                      strerror(e_));                                           \
    } while (0)

static void mkpair(int sv[2])
{
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
}

/* poll() for POLLIN; 1 readable, 0 timeout, -1 error (no assert: children
 * use it too). */
static int poll_in(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    for (;;) {
        int n = poll(&p, 1, ms);
        if (n >= 0 || errno != EINTR)
            return n;
    }
}

static int readable(const sp_shmlink_t *s, int ms)
{
    int n = poll_in(sp_shmlink_fd(s), ms);
    ck_assert_int_ge(n, 0);
    return n;
}

/* Bytes queued to be read on a socket: a side's wake-ups not yet taken. */
static int queued(int fd)
{
    int n = -1;
    ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

/* Mappings of this process whose name contains name. */
static int count_maps(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, name) != NULL)
            n++;
    fclose(f);
    return n;
}

/* Byte i of a stream (the two directions start far apart: 0 and 2^40). */
static uint8_t pat(uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull;
    return (uint8_t)((x >> 56) ^ (x >> 29) ^ i);
}

/* Write up to len stream bytes from *wpos; what the write returned. */
static ssize_t put_pat(sp_shmlink_t *s, uint64_t *wpos, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len; i++)
        b[i] = pat(*wpos + i);
    ssize_t n = sp_shmlink_write(s, b, len);
    int e = errno;
    if (n > 0) {
        ck_assert_uint_le((size_t)n, len);
        *wpos += (uint64_t)n;
    }
    free(b);
    errno = e;
    return n;
}

/* Read up to cap bytes into a buffer of exactly cap bytes (ASan sees any
 * write past it) and check them against the stream at *rpos. */
static ssize_t get_pat(sp_shmlink_t *s, uint64_t *rpos, size_t cap)
{
    uint8_t *b = malloc(cap ? cap : 1);
    ck_assert_ptr_nonnull(b);
    ssize_t n = sp_shmlink_read(s, b, cap);
    int e = errno;
    if (n > 0) {
        ck_assert_uint_le((size_t)n, cap);
        for (ssize_t i = 0; i < n; i++)
            if (b[i] != pat(*rpos + (uint64_t)i))
                ck_abort_msg("stream byte %llu: %u, want %u",
                             (unsigned long long)(*rpos + (uint64_t)i), b[i],
                             pat(*rpos + (uint64_t)i));
        *rpos += (uint64_t)n;
    }
    free(b);
    errno = e;
    return n;
}

/* Read exactly n stream bytes, in pieces of at most piece, sleeping in
 * poll() on EAGAIN (the bytes must already be on their way). */
static void get_pat_all(sp_shmlink_t *s, uint64_t *rpos, uint64_t n,
                        size_t piece)
{
    uint64_t end = *rpos + n; /* may wrap past 2^64: compare differences */
    while (end - *rpos > 0) {
        uint64_t due = end - *rpos;
        size_t cap = due < piece ? (size_t)due : piece;
        ssize_t r = get_pat(s, rpos, cap);
        if (r > 0)
            continue;
        ck_assert_msg(r < 0 && errno == EAGAIN,
                      "read %zd (%s) with %llu bytes still due", r,
                      strerror(errno), (unsigned long long)due);
        ck_assert_msg(readable(s, 2000), "no wake-up with %llu bytes due",
                      (unsigned long long)due);
    }
}

/* The peer closed and everything was read: 0 at once (the read that
 * finds the ring empty takes the wake-up bytes off the socket down to the
 * EOF behind them: no EAGAIN first, whatever wake-ups were still queued). */
static void expect_eof(sp_shmlink_t *s)
{
    uint8_t b[16];
    errno = 0;
    ssize_t n = sp_shmlink_read(s, b, sizeof(b));
    ck_assert_msg(n == 0, "read at EOF: %zd (%s)", n,
                  n < 0 ? strerror(errno) : "data");
    /* EOF stays: readable, and 0 again. */
    ck_assert_int_eq(readable(s, 0), 1);
    ck_assert_int_eq(sp_shmlink_read(s, b, sizeof(b)), 0);
}

/* For children (no ck_assert there): write n stream bytes at *wpos in
 * one call; 0 if all went in. */
static int child_put(sp_shmlink_t *s, uint64_t *wpos, size_t n)
{
    uint8_t *b = malloc(n);
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        b[i] = pat(*wpos + i);
    ssize_t w = sp_shmlink_write(s, b, n);
    free(b);
    if (w != (ssize_t)n)
        return -1;
    *wpos += n;
    return 0;
}

/* A client and a server over one socketpair. */
typedef struct pair {
    sp_shmlink_t *c, *s;
} pair_t;

static void pair_open(pair_t *p, uint32_t csize, uint32_t ssize)
{
    char err[160] = "";
    int sv[2];
    mkpair(sv);
    p->s = sp_shmlink_server(sv[1], ssize, err, sizeof(err));
    ck_assert_msg(p->s != NULL, "server: %s", err);
    p->c = sp_shmlink_client(sv[0], csize, err, sizeof(err));
    ck_assert_msg(p->c != NULL, "client: %s", err);
}

/* Both past the rendezvous, both asleep on empty rings, no bell rung. */
static void pair_ready(pair_t *p, uint32_t csize, uint32_t ssize)
{
    uint8_t b[8];
    pair_open(p, csize, ssize);
    CK_EAGAIN(sp_shmlink_read(p->s, b, sizeof(b))); /* answers */
    CK_EAGAIN(sp_shmlink_read(p->c, b, sizeof(b))); /* maps the answer */
    ck_assert_int_eq(readable(p->s, 0), 0);
    ck_assert_int_eq(readable(p->c, 0), 0);
}

static void pair_free(pair_t *p)
{
    sp_shmlink_free(p->c);
    sp_shmlink_free(p->s);
    p->c = p->s = NULL;
}

/* ---- raw peers -------------------------------------------------------- */

/* A memfd of len bytes with a ring header (magic, size, head = tail =
 * start) written with pwrite (never mapped here, so /proc/self/maps shows
 * only the mappings the code under test made), then sealed with seals. */
static int raw_ring_fd(size_t len, int seals, uint32_t magic, uint32_t size,
                       uint64_t start)
{
    int fd = memfd_create(TEST_RING_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
    uint8_t h[RAW_HDR];
    memset(h, 0, sizeof(h));
    memcpy(h + OFF_MAGIC, &magic, 4);
    memcpy(h + OFF_SIZE, &size, 4);
    memcpy(h + OFF_HEAD, &start, 8);
    memcpy(h + OFF_TAIL, &start, 8);
    size_t hl = len < RAW_HDR ? len : RAW_HDR;
    if (hl > 0)
        ck_assert_int_eq(pwrite(fd, h, hl, 0), (ssize_t)hl);
    if (seals)
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
    return fd;
}

#define GOOD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static raw_msg_t raw_msg(const char *magic, uint32_t version, uint32_t size)
{
    raw_msg_t m;
    memset(&m, 0, sizeof(m));
    memcpy(m.magic, magic, strlen(magic) + 1 < 8 ? strlen(magic) + 1 : 8);
    m.version = version;
    m.ring_size = size;
    return m;
}

/* n bytes with nfds descriptors (SCM_RIGHTS) in one sendmsg. */
static void raw_send(int sock, const void *bytes, size_t n, const int *fds,
                     int nfds)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)bytes, n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ck_assert_int_le(nfds, 8);
    memset(&u, 0, sizeof(u));
    if (nfds > 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ck_assert_int_eq(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)n);
}

/* The other side's message: its 16 bytes and exactly one descriptor
 * (returned). */
static int raw_recv(int sock, raw_msg_t *m)
{
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {m, sizeof(*m)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    ck_assert_int_eq(recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC),
                     (ssize_t)sizeof(*m));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->cmsg_type, SCM_RIGHTS);
    ck_assert_uint_eq(c->cmsg_len, CMSG_LEN(sizeof(int)));
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    ck_assert_ptr_null(CMSG_NXTHDR(&mh, c));
    ck_assert_int_eq(mh.msg_flags & MSG_CTRUNC, 0);
    return fd;
}

/* A hand-made client talking to a real server: its ring (mapped here)
 * and the server's ring from the answer.  Wake-ups both ways are single
 * bytes on the rendezvous socket. */
typedef struct raw {
    int sock;            /* our end of the rendezvous */
    sp_shmlink_t *s;     /* the server under test */
    uint32_t size;       /* both rings */
    uint8_t *mine;       /* client -> server */
    size_t mine_len;
    uint8_t *theirs;     /* server -> client */
    size_t theirs_len;
} raw_t;

/* Wake the server: one byte on our end (async-signal-safe: the injection
 * handler uses it). */
static int raw_wake(raw_t *r)
{
    return send(r->sock, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* Take the server's wake-ups off our end: how many bytes there were. */
static int raw_wakeups(raw_t *r)
{
    char b[512];
    int n = 0;
    for (;;) {
        ssize_t k = recv(r->sock, b, sizeof(b), MSG_DONTWAIT);
        if (k > 0) {
            n += (int)k;
            continue;
        }
        ck_assert_msg(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
                      "our end of the socket: %zd (%s)", k, strerror(errno));
        return n;
    }
}

static void raw_open(raw_t *r, uint32_t size, uint64_t start)
{
    int sv[2];
    char err[160] = "";
    memset(r, 0, sizeof(*r));
    mkpair(sv);
    r->sock = sv[0];
    r->size = size;
    r->mine_len = RAW_HDR + size;
    int mfd = raw_ring_fd(r->mine_len, GOOD_SEALS, RAW_RING_MAGIC, size, start);
    r->mine = mmap(NULL, r->mine_len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd,
                   0);
    ck_assert_ptr_ne(r->mine, MAP_FAILED);
    raw_msg_t m = raw_msg("SPSHMLK", 1, size);
    raw_send(r->sock, &m, sizeof(m), &mfd, 1);
    close(mfd);

    r->s = sp_shmlink_server(sv[1], size, err, sizeof(err));
    ck_assert_msg(r->s != NULL, "%s", err);
    uint8_t b[8];
    CK_EAGAIN(sp_shmlink_read(r->s, b, sizeof(b)));
    /* The server found our ring empty and went to sleep on it. */
    ck_assert_uint_eq(__atomic_load_n(h32(r->mine, OFF_RDW), __ATOMIC_SEQ_CST),
                      1);

    /* Its answer: the same message and its own sealed ring, nothing more
     * (no wake-up owed yet). */
    int afd = raw_recv(r->sock, &m);
    ck_assert_int_eq(queued(r->sock), 0);
    ck_assert_mem_eq(m.magic, "SPSHMLK", 8);
    ck_assert_uint_eq(m.version, 1);
    ck_assert_uint_eq(m.ring_size, size);
    int seals = fcntl(afd, F_GET_SEALS);
    ck_assert_int_ge(seals, 0);
    ck_assert(seals & F_SEAL_SHRINK);
    r->theirs_len = RAW_HDR + size;
    r->theirs = mmap(NULL, r->theirs_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                     afd, 0);
    ck_assert_ptr_ne(r->theirs, MAP_FAILED);
    close(afd);
    ck_assert_uint_eq(*h32(r->theirs, OFF_MAGIC), RAW_RING_MAGIC);
    ck_assert_uint_eq(*h32(r->theirs, OFF_SIZE), size);
    ck_assert_uint_eq(*h64(r->theirs, OFF_HEAD), 0);
    ck_assert_uint_eq(*h64(r->theirs, OFF_TAIL), 0);
}

/* Produce n bytes of stream into our ring at *head (no room check: the
 * caller knows), publish head, wake the server (one byte) if it waits. */
static void raw_produce(raw_t *r, uint64_t *head, uint64_t n)
{
    uint8_t *data = r->mine + RAW_HDR;
    for (uint64_t i = 0; i < n; i++)
        data[(*head + i) & (r->size - 1)] = pat(*head + i);
    *head += n;
    __atomic_store_n(h64(r->mine, OFF_HEAD), *head, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(h32(r->mine, OFF_RDW), 0, __ATOMIC_SEQ_CST))
        ck_assert_int_eq(raw_wake(r), 0);
}

static void raw_close(raw_t *r)
{
    sp_shmlink_free(r->s);
    munmap(r->mine, r->mine_len);
    munmap(r->theirs, r->theirs_len);
    close(r->sock);
}

/* ---- rendezvous and round trip ---------------------------------------- */

START_TEST(shmlink_rendezvous_round_trip)
{
    char err[160] = "";
    uint8_t buf[256];
    int sv[2];
    mkpair(sv);
    sp_shmlink_t *s = sp_shmlink_server(sv[1], 65536, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);

    /* No client yet: nothing to read, nowhere to write, no readability. */
    CK_EAGAIN(sp_shmlink_read(s, buf, sizeof(buf)));
    CK_EAGAIN(sp_shmlink_write(s, "x", 1));
    ck_assert_int_eq(readable(s, 0), 0);

    sp_shmlink_t *c = sp_shmlink_client(sv[0], 65536, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    /* The connect message makes the server's fd readable. */
    ck_assert_int_eq(readable(s, 1000), 1);
    /* The client writes at once, but reads nothing before the answer. */
    ck_assert_int_eq(sp_shmlink_write(c, "hello, ", 7), 7);
    ck_assert_int_eq(sp_shmlink_write(c, "server", 6), 6);
    CK_EAGAIN(sp_shmlink_read(c, buf, sizeof(buf)));
    ck_assert_int_eq(readable(c, 0), 0);

    /* The server's first read takes the message, answers, and finds the
     * bytes written before it, intact. */
    memset(buf, 0, sizeof(buf));
    ck_assert_int_eq(sp_shmlink_read(s, buf, sizeof(buf)), 13);
    ck_assert_mem_eq(buf, "hello, server", 13);
    CK_EAGAIN(sp_shmlink_read(s, buf, sizeof(buf)));
    ck_assert_int_eq(readable(s, 0), 0);

    /* The answer makes the client's fd readable; the server may write. */
    ck_assert_int_eq(readable(c, 1000), 1);
    ck_assert_int_eq(sp_shmlink_write(s, "hi", 2), 2);
    ck_assert_int_eq(sp_shmlink_read(c, buf, 1), 1);
    ck_assert_int_eq(buf[0], 'h');
    ck_assert_int_eq(sp_shmlink_read(c, buf, sizeof(buf)), 1);
    ck_assert_int_eq(buf[0], 'i');
    CK_EAGAIN(sp_shmlink_read(c, buf, sizeof(buf)));
    ck_assert_int_eq(readable(c, 0), 0);
    ck_assert_str_eq(sp_shmlink_err(c), "");
    ck_assert_str_eq(sp_shmlink_err(s), "");

    /* A reader that got EAGAIN is woken by the peer's write, each way,
     * and is not woken when nothing came. */
    uint64_t cw = 0, sr = 0, sw = 1ull << 40, cr = 1ull << 40;
    for (int i = 0; i < 64; i++) {
        size_t n = 1 + (size_t)i * 97;
        ck_assert_int_eq(readable(s, 0), 0);
        ck_assert_int_eq(put_pat(c, &cw, n), (ssize_t)n);
        ck_assert_msg(readable(s, 1000), "server not woken (round %d)", i);
        ck_assert_int_eq(get_pat(s, &sr, 65536), (ssize_t)n);
        CK_EAGAIN(get_pat(s, &sr, 65536));
        ck_assert_int_eq(readable(s, 0), 0);

        ck_assert_int_eq(readable(c, 0), 0);
        ck_assert_int_eq(put_pat(s, &sw, n + 3), (ssize_t)n + 3);
        ck_assert_msg(readable(c, 1000), "client not woken (round %d)", i);
        ck_assert_int_eq(get_pat(c, &cr, 65536), (ssize_t)n + 3);
        CK_EAGAIN(get_pat(c, &cr, 65536));
        ck_assert_int_eq(readable(c, 0), 0);
    }

    /* A process asleep in poll() on its fd wakes when the peer, in
     * another process, writes. */
    int64_t t_fork = sp_now_ns();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_shmlink_drop(s);
        usleep(100 * 1000);
        if (sp_shmlink_write(c, "late", 4) != 4)
            _exit(2);
        pause(); /* until killed: our close would wake the parent too */
        _exit(3);
    }
    sp_shmlink_drop(c); /* the child's now */
    ck_assert_int_eq(readable(s, 5000), 1);
    int64_t slept_ms = (sp_now_ns() - t_fork) / 1000000;
    ck_assert_msg(slept_ms >= 90, "woken after %lld ms, before the write",
                  (long long)slept_ms);
    ck_assert_int_eq(sp_shmlink_read(s, buf, sizeof(buf)), 4);
    ck_assert_mem_eq(buf, "late", 4);
    CK_EAGAIN(sp_shmlink_read(s, buf, sizeof(buf)));
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(readable(s, 1000), 1);
    expect_eof(s);
    sp_shmlink_free(c);
    sp_shmlink_free(s);
}
END_TEST

/* The client's writes before it took the answer: the server that went to
 * sleep meanwhile is woken at once (the wake-up is a byte on the socket,
 * which the client has from the start).  And a byte queued right behind
 * the answer does not disturb the client's rendezvous: it is a wake-up. */
START_TEST(shmlink_wake_before_answer)
{
    pair_t p;
    uint8_t buf[64];
    pair_open(&p, MIN, MIN);
    CK_EAGAIN(sp_shmlink_read(p.s, buf, sizeof(buf))); /* answers, sleeps */
    ck_assert_int_eq(readable(p.s, 0), 0);
    ck_assert_int_eq(sp_shmlink_write(p.c, "abc", 3), 3);
    ck_assert_msg(readable(p.s, 1000), "the server was not woken");
    ck_assert_int_eq(queued(sp_shmlink_fd(p.s)), 1);
    ck_assert_int_eq(sp_shmlink_read(p.s, buf, sizeof(buf)), 3);
    ck_assert_mem_eq(buf, "abc", 3);
    /* The server is awake now and writes without a wake-up (the client
     * never slept on its ring); it sleeps again. */
    ck_assert_int_eq(sp_shmlink_write(p.s, "xy", 2), 2);
    CK_EAGAIN(sp_shmlink_read(p.s, buf, sizeof(buf)));
    ck_assert_int_eq(readable(p.s, 0), 0);
    /* The client's fd says the answer is there (and nothing behind it);
     * its read takes it and finds the bytes. */
    ck_assert_int_eq(readable(p.c, 1000), 1);
    ck_assert_int_eq(queued(sp_shmlink_fd(p.c)), (int)sizeof(raw_msg_t));
    ck_assert_int_eq(sp_shmlink_read(p.c, buf, sizeof(buf)), 2);
    ck_assert_mem_eq(buf, "xy", 2);
    CK_EAGAIN(sp_shmlink_read(p.c, buf, sizeof(buf)));
    ck_assert_int_eq(readable(p.c, 0), 0);
    /* A byte right behind the answer (sent here on the server's socket):
     * the client takes the answer, its data, and the byte as a wake-up. */
    pair_free(&p);
    pair_open(&p, MIN, MIN);
    CK_EAGAIN(sp_shmlink_read(p.s, buf, sizeof(buf)));
    ck_assert_int_eq(send(sp_shmlink_fd(p.s), "w", 1, MSG_DONTWAIT), 1);
    ck_assert_int_eq(sp_shmlink_write(p.s, "12", 2), 2);
    ck_assert_int_eq(queued(sp_shmlink_fd(p.c)), (int)sizeof(raw_msg_t) + 1);
    ck_assert_int_eq(sp_shmlink_read(p.c, buf, sizeof(buf)), 2);
    ck_assert_mem_eq(buf, "12", 2);
    CK_EAGAIN(sp_shmlink_read(p.c, buf, sizeof(buf)));
    ck_assert_int_eq(queued(sp_shmlink_fd(p.c)), 0);
    ck_assert_int_eq(readable(p.c, 0), 0);
    ck_assert_int_eq(sp_shmlink_write(p.s, "3", 1), 1);
    ck_assert_msg(readable(p.c, 1000), "the client was not woken");
    ck_assert_int_eq(queued(sp_shmlink_fd(p.c)), 1);
    ck_assert_int_eq(sp_shmlink_read(p.c, buf, sizeof(buf)), 1);
    ck_assert_str_eq(sp_shmlink_err(p.c), "");
    ck_assert_str_eq(sp_shmlink_err(p.s), "");
    pair_free(&p);
}
END_TEST

START_TEST(shmlink_ring_sizes)
{
    static const uint32_t bad[] = {0,
                                   1,
                                   2048,
                                   MIN - 1,
                                   MIN + 1,
                                   6000,
                                   65535,
                                   3u << 20,
                                   SP_SHMLINK_RING_MAX + 1,
                                   SP_SHMLINK_RING_MAX * 2u,
                                   0x80000000u,
                                   0xffffffffu};
    int fds0 = count_fds();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int sv[2];
        char err[160];
        mkpair(sv);
        for (int client = 0; client < 2; client++) {
            int fd = sv[client ? 0 : 1];
            err[0] = '\0';
            errno = 0;
            sp_shmlink_t *l =
                client ? sp_shmlink_client(fd, bad[i], err, sizeof(err))
                       : sp_shmlink_server(fd, bad[i], err, sizeof(err));
            ck_assert_msg(l == NULL, "ring size %u accepted", bad[i]);
            ck_assert_int_eq(errno, EINVAL);
            ck_assert_msg(err[0] != '\0', "no reason for ring size %u", bad[i]);
            /* The socket stays the caller's: open, and nothing was sent. */
            ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
        }
        char c;
        ck_assert_int_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), -1);
        ck_assert_int_eq(errno, EAGAIN);
        close(sv[0]);
        close(sv[1]);
    }
    ck_assert_int_eq(count_fds(), fds0);

    /* Each direction has its own size: the smallest one way, the largest
     * the other. */
    pair_t p;
    pair_ready(&p, MIN, SP_SHMLINK_RING_MAX);
    uint64_t cw = 0, sr = 0, sw = 1ull << 40, cr = 1ull << 40;
    ck_assert_int_eq(put_pat(p.c, &cw, 100000), MIN);
    ck_assert_int_eq(put_pat(p.s, &sw, 100000), 100000);
    get_pat_all(p.s, &sr, MIN, 100000);
    get_pat_all(p.c, &cr, 100000, 100000);
    pair_free(&p);
    ck_assert_int_eq(count_fds(), fds0);
    ck_assert_int_eq(count_maps("slotproxy-link"), 0);
}
END_TEST

/* ---- full ring, wrap-around, wake-ups --------------------------------- */

/* One direction of a pair: the writer, the reader, and what each one's fd
 * must say after every step (the model of sp_shmlink.h's wake-ups). */
typedef struct dir {
    sp_shmlink_t *w, *r;
    uint32_t size;
    uint64_t wpos, rpos;
    int r_waits, w_waits; /* flag raised by an EAGAIN, not yet taken */
    int r_bell, w_bell;   /* wake-up bytes owed to the side's fd */
    uint32_t wakes_r, wakes_w, fulls;
} dir_t;

static void dir_check_bells(const dir_t *d, const char *after, int k)
{
    /* Exactly the bytes owed (none spurious, none lost), and readability
     * exactly when one is. */
    int qr = queued(sp_shmlink_fd(d->r)), qw = queued(sp_shmlink_fd(d->w));
    ck_assert_msg(qr == d->r_bell && qw == d->w_bell,
                  "after %s (step %d): %d wake-up bytes queued for the "
                  "reader, %d owed; %d for the writer, %d owed",
                  after, k, qr, d->r_bell, qw, d->w_bell);
    ck_assert_msg(readable(d->r, 0) == (d->r_bell > 0),
                  "after %s (step %d): reader's fd %s", after, k,
                  d->r_bell ? "not readable: lost wake-up"
                            : "readable: spurious wake-up");
    ck_assert_msg(readable(d->w, 0) == (d->w_bell > 0),
                  "after %s (step %d): writer's fd %s", after, k,
                  d->w_bell ? "not readable: lost wake-up"
                            : "readable: spurious wake-up");
}

static size_t rand_len(uint32_t size)
{
    switch (sp_test_rng_below(4)) {
    case 0:
        return 1 + sp_test_rng_below(16);
    case 1:
        return 1 + sp_test_rng_below(size / 4);
    case 2:
        return 1 + sp_test_rng_below(size);
    default:
        return 1 + sp_test_rng_below(2 * size);
    }
}

static void dir_run(dir_t *d, int steps)
{
    for (int k = 0; k < steps; k++) {
        uint32_t op = sp_test_rng_below(20);
        uint64_t used = d->wpos - d->rpos;
        if (op < 9) {
            size_t len = rand_len(d->size);
            uint64_t room = d->size - used;
            ssize_t n = put_pat(d->w, &d->wpos, len);
            if (room == 0) {
                ck_assert_msg(n == -1 && errno == EAGAIN,
                              "write to a full ring: %zd (%s)", n,
                              strerror(errno));
                d->w_waits = 1;
                d->fulls++;
            } else {
                ck_assert_int_eq(n, (ssize_t)(len < room ? len : room));
                if (d->r_waits) {
                    d->r_waits = 0;
                    d->r_bell++;
                    d->wakes_r++;
                }
            }
            dir_check_bells(d, "a write", k);
        } else if (op < 18) {
            size_t cap = rand_len(d->size);
            ssize_t n = get_pat(d->r, &d->rpos, cap);
            if (used == 0) {
                ck_assert_msg(n == -1 && errno == EAGAIN,
                              "read of an empty ring: %zd (%s)", n,
                              strerror(errno));
                d->r_waits = 1;
                d->r_bell = 0;
            } else {
                ck_assert_int_eq(n, (ssize_t)(cap < used ? cap : used));
                if (d->w_waits) {
                    d->w_waits = 0;
                    d->w_bell++;
                    d->wakes_w++;
                }
            }
            dir_check_bells(d, "a read", k);
        } else {
            /* The writer's own read (its input is empty in this phase):
             * what a link does on readability; it resets the bell. */
            uint8_t b[4];
            CK_EAGAIN(sp_shmlink_read(d->w, b, sizeof(b)));
            d->w_bell = 0;
            dir_check_bells(d, "the writer's read", k);
        }
    }
    /* Drain, so the next phase starts with both rings empty. */
    while (d->rpos < d->wpos) {
        ck_assert_int_gt(get_pat(d->r, &d->rpos, d->size), 0);
        if (d->w_waits) {
            d->w_waits = 0;
            d->w_bell++;
        }
    }
    ck_assert_int_eq(queued(sp_shmlink_fd(d->w)), d->w_bell);
    ck_assert_int_eq(readable(d->w, 0), d->w_bell > 0);
    CK_EAGAIN(get_pat(d->r, &d->rpos, 1));
    uint8_t b[4];
    CK_EAGAIN(sp_shmlink_read(d->w, b, sizeof(b)));
    d->r_waits = 1;
    d->r_bell = d->w_bell = 0;
    ck_assert_int_eq(readable(d->r, 0), 0);
    ck_assert_int_eq(readable(d->w, 0), 0);
}

START_TEST(shmlink_full_ring_wrap)
{
    pair_t p;
    pair_ready(&p, MIN, MIN);
    uint64_t cw = 0, sr = 0;

    /* Exactly the ring's size goes in, then EAGAIN. */
    ck_assert_int_eq(put_pat(p.c, &cw, 10000), MIN);
    CK_EAGAIN(put_pat(p.c, &cw, 1));
    CK_EAGAIN(put_pat(p.c, &cw, 10000));
    ck_assert_int_eq(readable(p.c, 0), 0);
    /* The server's fd was readable since the first write (it slept). */
    ck_assert_int_eq(readable(p.s, 0), 1);
    /* A partial read makes room: the writer's fd becomes readable. */
    ck_assert_int_eq(get_pat(p.s, &sr, 1000), 1000);
    ck_assert_msg(readable(p.c, 1000), "no room wake-up");
    /* Exactly the room goes in, wrapping around the ring's end. */
    ck_assert_int_eq(put_pat(p.c, &cw, 5000), 1000);
    CK_EAGAIN(put_pat(p.c, &cw, 1));
    /* The client's own read resets its bell (a link reads on readability). */
    uint8_t b[4];
    CK_EAGAIN(sp_shmlink_read(p.c, b, sizeof(b)));
    ck_assert_int_eq(readable(p.c, 0), 0);
    /* Across the wrap, byte for byte. */
    ck_assert_int_eq(get_pat(p.s, &sr, 10000), MIN);
    ck_assert_msg(readable(p.c, 1000), "no room wake-up (2)");
    CK_EAGAIN(get_pat(p.s, &sr, 1));
    CK_EAGAIN(sp_shmlink_read(p.c, b, sizeof(b)));
    ck_assert_int_eq(readable(p.c, 0), 0);
    ck_assert_int_eq(readable(p.s, 0), 0);

    /* Many rounds of random writes and reads, one direction at a time
     * (so each side's fd is predictable), with every fd checked against
     * the wake-up model after every step. */
    sp_test_rng_seed(0x5eed0001);
    dir_t d[2];
    memset(d, 0, sizeof(d));
    d[0] = (dir_t){.w = p.c, .r = p.s, .size = MIN, .wpos = cw, .rpos = sr};
    d[1] = (dir_t){.w = p.s, .r = p.c, .size = MIN, .wpos = 1ull << 40,
                   .rpos = 1ull << 40};
    /* Both sides are asleep on empty rings now. */
    d[0].r_waits = d[1].r_waits = 1;
    for (int phase = 0; phase < 12; phase++)
        dir_run(&d[phase % 2], 2500);
    for (int i = 0; i < 2; i++) {
        /* The test went through the cases it is about. */
        ck_assert_uint_gt(d[i].fulls, 100);
        ck_assert_uint_gt(d[i].wakes_w, 100);
        ck_assert_uint_gt(d[i].wakes_r, 100);
        ck_assert_uint_gt(d[i].wpos - (i ? 1ull << 40 : 0), 100 * MIN);
    }
    ck_assert_str_eq(sp_shmlink_err(p.c), "");
    ck_assert_str_eq(sp_shmlink_err(p.s), "");
    pair_free(&p);
}
END_TEST

/* ---- EOF -------------------------------------------------------------- */

START_TEST(shmlink_eof_after_free)
{
    uint8_t b[16];
    /* Each way: what was written before the free is read, then 0. */
    for (int way = 0; way < 2; way++) {
        pair_t p;
        pair_ready(&p, MIN, MIN);
        sp_shmlink_t *w = way ? p.s : p.c, *r = way ? p.c : p.s;
        uint64_t wpos = 0, rpos = 0;
        ck_assert_int_eq(put_pat(w, &wpos, 3000), 3000);
        sp_shmlink_free(w);
        ck_assert_int_eq(readable(r, 1000), 1);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(get_pat(r, &rpos, 700), 700);
        ck_assert_int_eq(get_pat(r, &rpos, 700), 200);
        expect_eof(r);
        sp_shmlink_free(r);
    }

    /* A reader asleep on an empty ring is woken by the close. */
    pair_t p;
    pair_ready(&p, MIN, MIN);
    ck_assert_int_eq(readable(p.s, 0), 0);
    sp_shmlink_free(p.c);
    ck_assert_msg(readable(p.s, 1000), "the close did not wake the reader");
    ck_assert_int_eq(sp_shmlink_read(p.s, b, sizeof(b)), 0);
    ck_assert_int_eq(readable(p.s, 0), 1);
    sp_shmlink_free(p.s);

    /* A writer asleep on a full ring learns of the close through
     * readability, and its read says EOF. */
    pair_ready(&p, MIN, MIN);
    uint64_t wpos = 0;
    ck_assert_int_eq(put_pat(p.s, &wpos, 2 * MIN), MIN);
    CK_EAGAIN(put_pat(p.s, &wpos, 1));
    ck_assert_int_eq(readable(p.s, 0), 0);
    sp_shmlink_free(p.c);
    ck_assert_msg(readable(p.s, 1000), "the close did not wake the writer");
    ck_assert_int_eq(sp_shmlink_read(p.s, b, sizeof(b)), 0);
    sp_shmlink_free(p.s);

    /* The client closes without ever taking the server's answer (the
     * socket then reports a reset): still its bytes, then EOF, not an
     * error. */
    pair_open(&p, MIN, MIN);
    CK_EAGAIN(sp_shmlink_read(p.s, b, sizeof(b)));
    wpos = 0;
    uint64_t rpos = 0;
    ck_assert_int_eq(put_pat(p.c, &wpos, 10), 10);
    sp_shmlink_free(p.c);
    ck_assert_int_eq(readable(p.s, 1000), 1);
    ck_assert_int_eq(get_pat(p.s, &rpos, 100), 10);
    errno = 0;
    ssize_t n = sp_shmlink_read(p.s, b, sizeof(b));
    ck_assert_msg(n == 0, "read after a reset: %zd (%s)", n, strerror(errno));
    sp_shmlink_free(p.s);

    /* The server closes before it ever read: the client's read says so -
     * EOF, or ECONNRESET as a socket would (its connect message was never
     * read), which sp_link takes for a close too - never EAGAIN. */
    pair_open(&p, MIN, MIN);
    ck_assert_int_eq(sp_shmlink_write(p.c, "x", 1), 1);
    sp_shmlink_free(p.s);
    ck_assert_int_eq(readable(p.c, 1000), 1);
    errno = 0;
    n = sp_shmlink_read(p.c, b, sizeof(b));
    ck_assert_msg(n == 0 || (n == -1 && errno == ECONNRESET),
                  "client read after the server closed: %zd (%s)", n,
                  strerror(errno));
    sp_shmlink_free(p.c);

    /* The same after the answer, before the client took it. */
    pair_open(&p, MIN, MIN);
    CK_EAGAIN(sp_shmlink_read(p.s, b, sizeof(b)));
    sp_shmlink_free(p.s);
    ck_assert_int_eq(readable(p.c, 1000), 1);
    expect_eof(p.c);
    sp_shmlink_free(p.c);
}
END_TEST

/* A client that writes and closes (or dies) before the server took its
 * connect message: as with a socket, the server must read the bytes, then
 * EOF.
 * (The server answers into a socket whose peer is gone: EPIPE, which must
 * not lose the ring's bytes.) */
START_TEST(shmlink_eof_before_first_read)
{
    char why[2][160];
    int ok[2];
    for (int v = 0; v < 2; v++) {
        char err[160] = "";
        uint8_t b[64];
        int sv[2];
        mkpair(sv);
        sp_shmlink_t *s = sp_shmlink_server(sv[1], MIN, err, sizeof(err));
        ck_assert_msg(s != NULL, "%s", err);
        if (v == 0) { /* in this process: write, free */
            sp_shmlink_t *c = sp_shmlink_client(sv[0], MIN, err, sizeof(err));
            ck_assert_msg(c != NULL, "%s", err);
            ck_assert_int_eq(sp_shmlink_write(c, "early bytes", 11), 11);
            sp_shmlink_free(c);
        } else { /* a child: write, then SIGKILL */
            pid_t pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0) {
                sp_shmlink_drop(s);
                sp_shmlink_t *c = sp_shmlink_client(sv[0], MIN, err,
                                                    sizeof(err));
                if (c == NULL || sp_shmlink_write(c, "early bytes", 11) != 11)
                    _exit(2);
                raise(SIGKILL);
                _exit(3);
            }
            close(sv[0]);
            int status;
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
            ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                          "child status %#x", status);
        }
        ck_assert_int_eq(readable(s, 1000), 1);
        errno = 0;
        ssize_t n = sp_shmlink_read(s, b, sizeof(b));
        ok[v] = n == 11 && memcmp(b, "early bytes", 11) == 0;
        snprintf(why[v], sizeof(why[v]), "first read: %zd (%s)", n,
                 n < 0 ? strerror(errno) : "");
        if (ok[v])
            expect_eof(s);
        sp_shmlink_free(s);
    }
    ck_assert_msg(ok[0] && ok[1],
                  "client closed before the server's first read: %s; "
                  "client killed before it: %s",
                  ok[0] ? "ok" : why[0], ok[1] ? "ok" : why[1]);
}
END_TEST

/* The client's process is SIGKILLed: the server reads what it wrote, then
 * EOF. */
START_TEST(shmlink_peer_killed)
{
    char err[160] = "";
    int sv[2], note[2];
    mkpair(sv);
    ck_assert_int_eq(pipe2(note, O_CLOEXEC), 0);
    sp_shmlink_t *s = sp_shmlink_server(sv[1], 65536, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_shmlink_drop(s); /* the parent's */
        close(note[0]);
        sp_shmlink_t *c = sp_shmlink_client(sv[0], 65536, err, sizeof(err));
        if (c == NULL)
            _exit(2);
        uint64_t wpos = 0;
        uint8_t x;
        if (child_put(c, &wpos, 20000) != 0 || write(note[1], "a", 1) != 1)
            _exit(3);
        /* Take the answer, then more bytes, then wait for the end. */
        if (poll_in(sp_shmlink_fd(c), 5000) != 1 ||
            sp_shmlink_read(c, &x, 1) != -1 || errno != EAGAIN)
            _exit(4);
        if (child_put(c, &wpos, 30000) != 0 || write(note[1], "b", 1) != 1)
            _exit(5);
        pause();
        _exit(6);
    }
    close(sv[0]);
    close(note[1]);
    char c;
    ck_assert_int_eq(read(note[0], &c, 1), 1); /* 20000 written */
    uint64_t rpos = 0;
    ck_assert_int_eq(get_pat(s, &rpos, 5000), 5000); /* rendezvous */
    ck_assert_int_eq(read(note[0], &c, 1), 1);       /* 50000 written */
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child status %#x", status);
    ck_assert_int_eq(readable(s, 1000), 1);
    get_pat_all(s, &rpos, 45000, 4096);
    expect_eof(s);
    close(note[0]);
    sp_shmlink_free(s);
}
END_TEST

/* ---- malformed rendezvous --------------------------------------------- */

enum {
    BAD_PLAIN,
    BAD_NO_FDS,
    BAD_SHORT,
    BAD_LONG_PREFIX,
    BAD_MAGIC,
    BAD_TWO_FDS,
    BAD_TWO_RINGS,
    BAD_THREE_FDS,
    BAD_SIX_FDS,
    BAD_VERSION,
    BAD_SIZE_6000,
    BAD_SIZE_2048,
    BAD_SIZE_0,
    BAD_SIZE_128M,
    BAD_SIZE_2G,
    BAD_UNSEALED,
    BAD_GROW_SEAL_ONLY,
    BAD_NOT_MEMFD,
    BAD_EVENTFD_RING,
    BAD_SMALLER,
    BAD_HEADER_ONLY,
    BAD_EMPTY,
    BAD_RING_MAGIC,
    BAD_RING_SIZE_FIELD,
    BAD_WRITE_SEALED,
    BAD_COUNT
};

typedef struct bad {
    const char *what;
    const char *reason; /* a word of sp_shmlink_err; NULL: any -1 */
    uint8_t bytes[32];
    size_t n;
    int fds[8];
    int nfds;
} bad_t;

static void bad_msg(bad_t *b, raw_msg_t m)
{
    memcpy(b->bytes, &m, sizeof(m));
    b->n = sizeof(m);
}

/* The case's message and descriptors (ours: closed after sending). */
static void bad_build(int k, uint32_t good, bad_t *b)
{
    memset(b, 0, sizeof(*b));
    b->reason = "not a shm";
    bad_msg(b, raw_msg("SPSHMLK", 1, good));
    int ring = -2; /* -2: a good ring */
    int extra[8], nextra = 0; /* descriptors sent after the ring */
    size_t len = RAW_HDR + good;
    switch (k) {
    case BAD_PLAIN:
        b->what = "plain bytes, no descriptors";
        memcpy(b->bytes, "GET / HTTP/1.1\r\n", 16);
        ring = -1;
        break;
    case BAD_NO_FDS:
        b->what = "a good message without descriptors";
        ring = -1;
        break;
    case BAD_SHORT:
        b->what = "7 bytes with the ring";
        b->n = 7;
        break;
    case BAD_LONG_PREFIX:
        b->what = "8 bytes of magic only, with the ring";
        b->n = 8;
        break;
    case BAD_MAGIC:
        b->what = "a wrong magic";
        bad_msg(b, raw_msg("SPSHMLX", 1, good));
        break;
    case BAD_TWO_FDS:
        b->what = "the ring and an eventfd (the old two-descriptor format)";
        extra[nextra++] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        break;
    case BAD_TWO_RINGS:
        b->what = "two good rings";
        extra[nextra++] =
            raw_ring_fd(len, GOOD_SEALS, RAW_RING_MAGIC, good, 0);
        break;
    case BAD_THREE_FDS:
        b->what = "three descriptors";
        for (int i = 0; i < 2; i++)
            extra[nextra++] = eventfd(0, EFD_CLOEXEC);
        break;
    case BAD_SIX_FDS:
        b->what = "six descriptors (more than the control buffer takes)";
        for (int i = 0; i < 5; i++)
            extra[nextra++] = eventfd(0, EFD_CLOEXEC);
        break;
    case BAD_VERSION:
        b->what = "version 2";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 2, good));
        break;
    case BAD_SIZE_6000:
        b->what = "ring size 6000 (not a power of two)";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 1, 6000));
        ring = raw_ring_fd(RAW_HDR + 8192, GOOD_SEALS, RAW_RING_MAGIC, 6000, 0);
        break;
    case BAD_SIZE_2048:
        b->what = "ring size 2048 (under the minimum)";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 1, 2048));
        ring = raw_ring_fd(RAW_HDR + 2048, GOOD_SEALS, RAW_RING_MAGIC, 2048, 0);
        break;
    case BAD_SIZE_0:
        b->what = "ring size 0";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 1, 0));
        ring = raw_ring_fd(RAW_HDR, GOOD_SEALS, RAW_RING_MAGIC, 0, 0);
        break;
    case BAD_SIZE_128M:
        b->what = "ring size 128 MiB (over the maximum)";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 1, 128u << 20));
        ring = raw_ring_fd(RAW_HDR + (128u << 20), GOOD_SEALS, RAW_RING_MAGIC,
                           128u << 20, 0);
        break;
    case BAD_SIZE_2G:
        b->what = "ring size 2 GiB";
        b->reason = "not supported";
        bad_msg(b, raw_msg("SPSHMLK", 1, 0x80000000u));
        break;
    case BAD_UNSEALED:
        b->what = "a ring that is not sealed";
        b->reason = "sealed";
        ring = raw_ring_fd(len, 0, RAW_RING_MAGIC, good, 0);
        break;
    case BAD_GROW_SEAL_ONLY:
        b->what = "a ring sealed against growing only";
        b->reason = "sealed";
        ring = raw_ring_fd(len, F_SEAL_GROW, RAW_RING_MAGIC, good, 0);
        break;
    case BAD_NOT_MEMFD: {
        b->what = "a pipe for the ring";
        b->reason = "sealed";
        int pp[2];
        ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
        close(pp[1]);
        ring = pp[0];
        break;
    }
    case BAD_EVENTFD_RING:
        b->what = "an eventfd for the ring";
        b->reason = "sealed";
        ring = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        break;
    case BAD_SMALLER:
        b->what = "a ring smaller than the size it claims";
        b->reason = "smaller";
        bad_msg(b, raw_msg("SPSHMLK", 1, 2 * good));
        ring = raw_ring_fd(len, GOOD_SEALS, RAW_RING_MAGIC, 2 * good, 0);
        break;
    case BAD_HEADER_ONLY:
        b->what = "a ring of its header only";
        b->reason = "smaller";
        ring = raw_ring_fd(RAW_HDR, GOOD_SEALS, RAW_RING_MAGIC, good, 0);
        break;
    case BAD_EMPTY:
        b->what = "an empty memfd";
        b->reason = "smaller";
        ring = raw_ring_fd(0, GOOD_SEALS, RAW_RING_MAGIC, good, 0);
        break;
    case BAD_RING_MAGIC:
        b->what = "a ring header with a bad magic";
        b->reason = "header";
        ring = raw_ring_fd(len, GOOD_SEALS, 0xdeadbeefu, good, 0);
        break;
    case BAD_RING_SIZE_FIELD:
        b->what = "a ring header with another size than the message";
        b->reason = "header";
        ring = raw_ring_fd(RAW_HDR + 2 * good, GOOD_SEALS, RAW_RING_MAGIC,
                           2 * good, 0);
        break;
    case BAD_WRITE_SEALED:
        /* A ring the server cannot map writable: refused, EPROTO with
         * the mmap's reason. */
        b->what = "a write-sealed ring";
        b->reason = "cannot map";
        ring = raw_ring_fd(len, GOOD_SEALS & ~F_SEAL_SEAL, RAW_RING_MAGIC,
                           good, 0);
        ck_assert_int_eq(fcntl(ring, F_ADD_SEALS, F_SEAL_WRITE), 0);
        break;
    }
    if (ring == -2)
        ring = raw_ring_fd(len, GOOD_SEALS, RAW_RING_MAGIC, good, 0);
    /* the ring, then the extra ones built above */
    b->nfds = 0;
    if (ring >= 0)
        b->fds[b->nfds++] = ring;
    for (int i = 0; i < nextra; i++) {
        ck_assert_int_ge(extra[i], 0);
        b->fds[b->nfds++] = extra[i];
    }
}

START_TEST(shmlink_malformed_rendezvous)
{
    /* Each malformed connect message makes the server's read fail with
     * EPROTO and a reason - never a crash, never a kept descriptor or
     * mapping. */
    for (int k = 0; k < BAD_COUNT; k++) {
        int fds0 = count_fds();
        bad_t b;
        char err[160] = "";
        int sv[2];
        bad_build(k, MIN, &b);
        mkpair(sv);
        sp_shmlink_t *s = sp_shmlink_server(sv[1], MIN, err, sizeof(err));
        ck_assert_msg(s != NULL, "%s", err);
        raw_send(sv[0], b.bytes, b.n, b.fds, b.nfds);
        for (int i = 0; i < b.nfds; i++)
            close(b.fds[i]);
        ck_assert_int_eq(readable(s, 1000), 1);

        uint8_t *buf = malloc(64);
        errno = 0;
        ssize_t n = sp_shmlink_read(s, buf, 64);
        int e = errno;
        ck_assert_msg(n == -1, "%s: read %zd", b.what, n);
        if (b.reason != NULL) {
            ck_assert_msg(e == EPROTO, "%s: errno %d (%s), want EPROTO",
                          b.what, e, strerror(e));
            ck_assert_msg(strstr(sp_shmlink_err(s), b.reason) != NULL,
                          "%s: reason \"%s\", want one with \"%s\"", b.what,
                          sp_shmlink_err(s), b.reason);
        }
        /* Refused means refused: no ring of the peer's left mapped, no
         * data afterwards, no answer sent. */
        ck_assert_msg(count_maps(TEST_RING_NAME) == 0, "%s: ring left mapped",
                      b.what);
        errno = 0;
        n = sp_shmlink_read(s, buf, 64);
        ck_assert_msg(n == -1, "%s: second read %zd (%s)", b.what, n,
                      strerror(errno));
        CK_EAGAIN(sp_shmlink_write(s, "x", 1));
        char c;
        ck_assert_msg(recv(sv[0], &c, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN,
                      "%s: the server answered", b.what);
        free(buf);
        sp_shmlink_free(s);
        close(sv[0]);
        ck_assert_msg(count_fds() == fds0, "%s: %d descriptors leaked", b.what,
                      count_fds() - fds0);
        ck_assert_int_eq(count_maps("slotproxy-link"), 0);
    }
}
END_TEST

/* The same from the other side: a server that answers badly. */
START_TEST(shmlink_malformed_answer)
{
    static const int cases[] = {
        BAD_PLAIN,        BAD_NO_FDS,     BAD_MAGIC,     BAD_TWO_FDS,
        BAD_TWO_RINGS,    BAD_SIX_FDS,    BAD_SIZE_6000, BAD_UNSEALED,
        BAD_NOT_MEMFD,    BAD_EVENTFD_RING, BAD_SMALLER, BAD_RING_MAGIC,
        BAD_RING_SIZE_FIELD};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fds0 = count_fds();
        bad_t b;
        char err[160] = "";
        int sv[2];
        mkpair(sv);
        sp_shmlink_t *c = sp_shmlink_client(sv[0], MIN, err, sizeof(err));
        ck_assert_msg(c != NULL, "%s", err);
        raw_msg_t m;
        close(raw_recv(sv[1], &m));
        bad_build(cases[i], MIN, &b);
        raw_send(sv[1], b.bytes, b.n, b.fds, b.nfds);
        for (int j = 0; j < b.nfds; j++)
            close(b.fds[j]);
        ck_assert_int_eq(readable(c, 1000), 1);
        uint8_t buf[16];
        errno = 0;
        ssize_t n = sp_shmlink_read(c, buf, sizeof(buf));
        int e = errno;
        ck_assert_msg(n == -1 && e == EPROTO, "answer with %s: %zd (%s)",
                      b.what, n, strerror(e));
        ck_assert_msg(strstr(sp_shmlink_err(c), b.reason) != NULL,
                      "answer with %s: reason \"%s\"", b.what,
                      sp_shmlink_err(c));
        ck_assert_int_eq(count_maps(TEST_RING_NAME), 0);
        sp_shmlink_free(c);
        close(sv[1]);
        ck_assert_msg(count_fds() == fds0, "answer with %s: %d fds leaked",
                      b.what, count_fds() - fds0);
    }
}
END_TEST

/* ---- hostile peers ----------------------------------------------------- */

/* Our layout is the code's: a hand-made client's bytes arrive, and the
 * server's ring and wake-ups behave as sp_shmlink.c's header says. */
START_TEST(shmlink_raw_layout)
{
    raw_t r;
    raw_open(&r, MIN, 0);
    uint64_t head = 0, rpos = 0;
    ck_assert_int_eq(readable(r.s, 0), 0);
    raw_produce(&r, &head, 5);
    ck_assert_msg(readable(r.s, 1000), "our wake-up did not arrive");
    ck_assert_int_eq(get_pat(r.s, &rpos, 64), 5);
    ck_assert_uint_eq(*h64(r.mine, OFF_TAIL), 5);
    CK_EAGAIN(get_pat(r.s, &rpos, 64));
    ck_assert_uint_eq(*h32(r.mine, OFF_RDW), 1);

    /* Our wake-up byte was taken off by the read that slept. */
    ck_assert_int_eq(queued(sp_shmlink_fd(r.s)), 0);
    ck_assert_int_eq(queued(r.sock), 0);

    /* The server writes; we raised rd_waiting on its ring, so it sends
     * us one byte on the socket and takes the flag. */
    __atomic_store_n(h32(r.theirs, OFF_RDW), 1, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(sp_shmlink_write(r.s, "pong", 4), 4);
    ck_assert_uint_eq(*h64(r.theirs, OFF_HEAD), 4);
    ck_assert_mem_eq(r.theirs + RAW_HDR, "pong", 4);
    ck_assert_uint_eq(*h32(r.theirs, OFF_RDW), 0);
    ck_assert_int_eq(poll_in(r.sock, 1000), 1);
    ck_assert_int_eq(raw_wakeups(&r), 1);
    /* Without the flag, no wake-up. */
    ck_assert_int_eq(sp_shmlink_write(r.s, "!", 1), 1);
    ck_assert_int_eq(raw_wakeups(&r), 0);

    /* The server fills its ring, raises wr_waiting; our tail move and
     * bell wake it. */
    ck_assert_int_eq(sp_shmlink_write(r.s, "x", 1), 1); /* 6 */
    uint8_t *fill = malloc(MIN);
    memset(fill, 'f', MIN);
    ck_assert_int_eq(sp_shmlink_write(r.s, fill, MIN), MIN - 6);
    CK_EAGAIN(sp_shmlink_write(r.s, fill, 1));
    ck_assert_uint_eq(*h32(r.theirs, OFF_WRW), 1);
    /* (its own read resets its bell before it sleeps) */
    CK_EAGAIN(get_pat(r.s, &rpos, 64));
    ck_assert_int_eq(readable(r.s, 0), 0);
    __atomic_store_n(h64(r.theirs, OFF_TAIL), 100, __ATOMIC_SEQ_CST);
    ck_assert_uint_eq(__atomic_exchange_n(h32(r.theirs, OFF_WRW), 0,
                                          __ATOMIC_SEQ_CST),
                      1);
    ck_assert_int_eq(raw_wake(&r), 0);
    ck_assert_int_eq(readable(r.s, 1000), 1);
    ck_assert_int_eq(sp_shmlink_write(r.s, fill, MIN), 100);
    /* It did not raise its flag again (it found room at once), and its
     * read takes our byte. */
    ck_assert_uint_eq(*h32(r.theirs, OFF_WRW), 0);
    CK_EAGAIN(get_pat(r.s, &rpos, 64));
    ck_assert_int_eq(readable(r.s, 0), 0);
    /* When we consume while it waits for room, it is our byte that wakes
     * it; the other way, its read of our bytes wakes us when we wait for
     * room in our ring (we raise wr_waiting on it). */
    __atomic_store_n(h32(r.mine, OFF_WRW), 1, __ATOMIC_SEQ_CST);
    raw_produce(&r, &head, 7); /* it sleeps: rd_waiting was up */
    ck_assert_int_eq(readable(r.s, 1000), 1);
    ck_assert_int_eq(get_pat(r.s, &rpos, 3), 3);
    ck_assert_uint_eq(*h32(r.mine, OFF_WRW), 0);
    ck_assert_int_eq(poll_in(r.sock, 1000), 1);
    ck_assert_int_eq(raw_wakeups(&r), 1);
    ck_assert_int_eq(get_pat(r.s, &rpos, 64), 4);
    ck_assert_int_eq(raw_wakeups(&r), 0); /* flag taken: only once */
    free(fill);
    raw_close(&r);
}
END_TEST

/* A client whose counters start near 2^64 (legal: only differences
 * count): the server's arithmetic wraps with them. */
START_TEST(shmlink_raw_counter_wrap)
{
    raw_t r;
    uint64_t start = UINT64_MAX - 1000;
    raw_open(&r, MIN, start);
    uint64_t head = start, rpos = start;
    for (int i = 0; i < 8; i++) {
        raw_produce(&r, &head, 1500 + (uint64_t)i * 300);
        get_pat_all(r.s, &rpos, 1500 + (uint64_t)i * 300, 777);
        ck_assert_uint_eq(*h64(r.mine, OFF_TAIL), head);
    }
    ck_assert_uint_lt(head, start); /* it did wrap */
    raw_close(&r);
}
END_TEST

START_TEST(shmlink_hostile_counters)
{
    /* Each corruption of a counter the peer owns: EPROTO with a reason,
     * and no byte read from or written to outside the ring (reads go
     * into exact heap buffers; ASan builds check the copies). */
    for (int k = 0; k < 6; k++) {
        raw_t r;
        raw_open(&r, MIN, 0);
        uint64_t head = 0, rpos = 0, wpos = 0;
        raw_produce(&r, &head, 1000);
        ck_assert_int_eq(get_pat(r.s, &rpos, 600), 600);
        ck_assert_int_eq(put_pat(r.s, &wpos, 300), 300);
        const char *want = "head";
        int writes = 0;
        uint64_t *hp = h64(r.mine, OFF_HEAD), *tp = h64(r.theirs, OFF_TAIL);
        switch (k) {
        case 0: /* one byte more than the ring holds */
            __atomic_store_n(hp, rpos + MIN + 1, __ATOMIC_SEQ_CST);
            break;
        case 1: /* head far beyond */
            __atomic_store_n(hp, rpos + (1ull << 40), __ATOMIC_SEQ_CST);
            break;
        case 2: /* head moved back behind what was read */
            __atomic_store_n(hp, rpos - 1, __ATOMIC_SEQ_CST);
            break;
        case 3: /* head at UINT64_MAX */
            __atomic_store_n(hp, UINT64_MAX, __ATOMIC_SEQ_CST);
            break;
        case 4: /* the server's ring: tail past what it wrote */
            __atomic_store_n(tp, wpos + 1, __ATOMIC_SEQ_CST);
            want = "tail";
            writes = 1;
            break;
        case 5: /* tail so far back the ring would hold more than it can */
            __atomic_store_n(tp, wpos - MIN - 1, __ATOMIC_SEQ_CST);
            want = "tail";
            writes = 1;
            break;
        }
        for (int rep = 0; rep < 2; rep++) {
            size_t cap = 1 + (size_t)rep * (2 * MIN);
            uint8_t *buf = malloc(cap);
            memset(buf, 0, cap);
            errno = 0;
            ssize_t n = writes ? sp_shmlink_write(r.s, buf, cap)
                               : sp_shmlink_read(r.s, buf, cap);
            int e = errno;
            ck_assert_msg(n == -1 && e == EPROTO, "case %d: %zd (%s)", k, n,
                          strerror(e));
            ck_assert_msg(strstr(sp_shmlink_err(r.s), want) != NULL,
                          "case %d: reason \"%s\", want \"%s\"", k,
                          sp_shmlink_err(r.s), want);
            free(buf);
        }
        raw_close(&r);
    }

    /* A full ring from a peer that then lies about wr_waiting and
     * rd_waiting with any value: extra wake-ups, no harm. */
    raw_t r;
    raw_open(&r, MIN, 0);
    uint64_t head = 0, rpos = 0;
    raw_produce(&r, &head, MIN);
    __atomic_store_n(h32(r.mine, OFF_WRW), 0xdeadbeefu, __ATOMIC_SEQ_CST);
    get_pat_all(r.s, &rpos, MIN, 999);
    ck_assert_int_eq(raw_wakeups(&r), 1); /* it took the "flag": once */
    ck_assert_uint_eq(*h32(r.mine, OFF_WRW), 0);
    __atomic_store_n(h32(r.theirs, OFF_RDW), 0xffffffffu, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(sp_shmlink_write(r.s, "z", 1), 1);
    ck_assert_int_eq(raw_wakeups(&r), 1);
    ck_assert_int_eq(sp_shmlink_write(r.s, "z", 1), 1);
    ck_assert_int_eq(raw_wakeups(&r), 0);

    /* Bytes on the socket after the rendezvous are wake-ups, however
     * many and whenever they come: never an error; the read that finds
     * the ring empty takes them all off, and the stream goes on. */
    CK_EAGAIN(get_pat(r.s, &rpos, 64));
    ck_assert_int_eq(readable(r.s, 0), 0);
    static const char junk[5000] = {'?'};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(send(r.sock, junk, 1 + (size_t)i * 2000,
                              MSG_DONTWAIT),
                         1 + i * 2000);
        ck_assert_int_eq(readable(r.s, 1000), 1);
        CK_EAGAIN(get_pat(r.s, &rpos, 64));
        ck_assert_int_eq(readable(r.s, 0), 0);
        ck_assert_str_eq(sp_shmlink_err(r.s), "");
        /* with data behind them: the data first, then they go */
        ck_assert_int_eq(send(r.sock, junk, 10, MSG_DONTWAIT), 10);
        raw_produce(&r, &head, 100 + (uint64_t)i);
        get_pat_all(r.s, &rpos, 100 + (uint64_t)i, 4096);
        CK_EAGAIN(get_pat(r.s, &rpos, 64));
        ck_assert_int_eq(queued(sp_shmlink_fd(r.s)), 0);
    }
    ck_assert_str_eq(sp_shmlink_err(r.s), "");
    raw_close(&r);
}
END_TEST

/* Send on fd (never blocking) until the peer's end takes no more: what
 * a peer that never reads its end of the socket comes to. */
static size_t fill_socket(int fd)
{
    static const char big[4096];
    size_t total = 0;
    ssize_t n;
    while ((n = send(fd, big, sizeof(big), MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
        total += (size_t)n;
    while ((n = send(fd, big, 1, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
        total += (size_t)n;
    ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK,
                  "filling the socket: %s", strerror(errno));
    ck_assert_uint_gt(total, 0);
    return total;
}

/* A peer that never reads its end of the socket: the wake-ups it is owed
 * have nowhere to go (its receive buffer is full).  The code under test
 * must never block in any call - its socket is even made blocking here,
 * as a careless caller might hand it over; every call must still return
 * at once (a hang dies of the alarm) - and once the peer reads again,
 * the wake-ups and the stream flow as before. */
START_TEST(shmlink_deaf_peer)
{
    signal(SIGALRM, SIG_DFL); /* a hang dies of "Alarm clock" */
    alarm(20);

    /* A raw client that never reads its end. */
    raw_t r;
    raw_open(&r, MIN, 0);
    int sfd = sp_shmlink_fd(r.s);
    int fl = fcntl(sfd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    ck_assert_int_eq(fcntl(sfd, F_SETFL, fl & ~O_NONBLOCK), 0);
    size_t filled = fill_socket(sfd);
    uint64_t head = 0, rpos = 0, wpos = 0, cpos = 0; /* its counters */
    uint8_t *data = r.theirs + RAW_HDR;
    uint32_t wakes = 0;
    for (int i = 0; i < 2000; i++) {
        /* Our ring: we sleep for data (rd_waiting), it writes: it owes us
         * a byte it cannot send. */
        __atomic_store_n(h32(r.theirs, OFF_RDW), 1, __ATOMIC_SEQ_CST);
        size_t n = 1 + (size_t)(i % 1000);
        ck_assert_int_eq(put_pat(r.s, &wpos, n), (ssize_t)n);
        ck_assert_uint_eq(*h32(r.theirs, OFF_RDW), 0);
        /* It fills its ring and sleeps for room; we take the bytes. */
        ssize_t w;
        while ((w = put_pat(r.s, &wpos, MIN)) > 0)
            ;
        ck_assert_msg(w == -1 && errno == EAGAIN, "write: %zd (%s)", w,
                      strerror(errno));
        ck_assert_uint_eq(*h32(r.theirs, OFF_WRW), 1);
        for (; cpos != wpos; cpos++)
            if (data[cpos & (MIN - 1)] != pat(cpos))
                ck_abort_msg("server's stream byte %llu",
                             (unsigned long long)cpos);
        __atomic_store_n(h64(r.theirs, OFF_TAIL), cpos, __ATOMIC_SEQ_CST);
        if (__atomic_exchange_n(h32(r.theirs, OFF_WRW), 0, __ATOMIC_SEQ_CST)) {
            ck_assert_int_eq(raw_wake(&r), 0);
            wakes++;
        }
        ck_assert_int_eq(readable(r.s, 1000), 1);
        /* Our writes: we sleep for room (wr_waiting), it reads: it owes
         * us a byte it cannot send. */
        __atomic_store_n(h32(r.mine, OFF_WRW), 1, __ATOMIC_SEQ_CST);
        raw_produce(&r, &head, 1 + (uint64_t)(i % 3000));
        get_pat_all(r.s, &rpos, 1 + (uint64_t)(i % 3000), MIN);
        ck_assert_uint_eq(*h32(r.mine, OFF_WRW), 0);
        CK_EAGAIN(get_pat(r.s, &rpos, 64));
        ck_assert_int_eq(readable(r.s, 0), 0);
    }
    ck_assert_uint_eq(wakes, 2000);
    ck_assert_str_eq(sp_shmlink_err(r.s), "");

    /* We read again: the filler and whatever wake-ups fitted, then each
     * wake-up owed arrives as one byte, as before. */
    ck_assert_uint_ge((size_t)raw_wakeups(&r), filled);
    ck_assert_int_eq(raw_wakeups(&r), 0);
    for (int i = 0; i < 10; i++) {
        __atomic_store_n(h32(r.theirs, OFF_RDW), 1, __ATOMIC_SEQ_CST);
        ck_assert_int_eq(put_pat(r.s, &wpos, 10), 10);
        ck_assert_int_eq(poll_in(r.sock, 1000), 1);
        ck_assert_int_eq(raw_wakeups(&r), 1);
        for (; cpos != wpos; cpos++)
            ck_assert_uint_eq(data[cpos & (MIN - 1)], pat(cpos));
        __atomic_store_n(h64(r.theirs, OFF_TAIL), cpos, __ATOMIC_SEQ_CST);
    }
    raw_close(&r);

    /* Two real ends; the client's owner stops reading its fd, and its
     * socket is full.  The server's calls, that owe it wake-ups, return
     * at once; the client's first read afterwards finds everything. */
    pair_t p;
    pair_ready(&p, MIN, MIN);
    sfd = sp_shmlink_fd(p.s);
    ck_assert_int_eq(fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) & ~O_NONBLOCK),
                     0);
    fill_socket(sfd);
    uint64_t cw = 0, sr = 0, sw = 1ull << 40, cr = 1ull << 40;
    ck_assert_int_eq(put_pat(p.c, &cw, 2 * MIN), MIN);
    CK_EAGAIN(put_pat(p.c, &cw, 1)); /* the client sleeps for room */
    ck_assert_int_eq(put_pat(p.s, &sw, 100), 100); /* owes it data */
    get_pat_all(p.s, &sr, MIN, 100);                /* owes it room */
    CK_EAGAIN(get_pat(p.s, &sr, 1));
    ck_assert_int_eq(put_pat(p.s, &sw, 2 * MIN), MIN - 100);
    CK_EAGAIN(put_pat(p.s, &sw, 1));
    /* The client reads again: the data, then room, the stream flows
     * both ways with wake-ups as before. */
    get_pat_all(p.c, &cr, MIN, MIN);
    ck_assert_msg(readable(p.s, 1000), "the server was not woken for room");
    /* A read takes a bounded number of wake-up bytes (a flooding peer
     * cannot hold it): the full socket takes a few reads to empty. */
    int drains = 0;
    do {
        CK_EAGAIN(get_pat(p.c, &cr, 1));
        drains++;
    } while (readable(p.c, 0) && drains < 1000);
    ck_assert_int_eq(readable(p.c, 0), 0);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(put_pat(p.c, &cw, 3000), 3000);
        get_pat_all(p.s, &sr, 3000, 1000);
        ck_assert_int_eq(put_pat(p.s, &sw, 3000), 3000);
        ck_assert_msg(readable(p.c, 1000), "client not woken (round %d)", i);
        get_pat_all(p.c, &cr, 3000, 1000);
        CK_EAGAIN(get_pat(p.c, &cr, 1));
        CK_EAGAIN(get_pat(p.s, &sr, 1));
    }
    ck_assert_str_eq(sp_shmlink_err(p.c), "");
    ck_assert_str_eq(sp_shmlink_err(p.s), "");
    alarm(0);
    pair_free(&p);
}
END_TEST

/* ---- an interleaving injected with a real SIGSEGV ---------------------- */

/* The Dekker pair of sp_shmlink.h: a side that finds its ring empty (or
 * full) raises its flag and must then look again, because the peer may
 * have moved its counter after the first look and before the flag - and
 * then, not seeing the flag, not rung.  To put the peer exactly there, the
 * page of the header in the code's own mapping is made read-only: its
 * flag store faults, and the handler plays the peer (moves the counter,
 * finds no flag, rings nothing), then lets the store go on. */

static struct {
    uint8_t *page;      /* read-only until the fault */
    int action;         /* 1: produce into mine; 2: consume all of theirs */
    raw_t *r;
    uint64_t *head;     /* action 1: our head */
    uint64_t n;         /* action 1: bytes to produce */
    int hits;
    long fault_off;     /* where in the page the store faulted */
    uint32_t flag_seen; /* the flag as the "peer" found it */
    int close_after;    /* action 1: then close (shut down) our end */
} inj;

static void inj_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uint8_t *a = si->si_addr;
    if (inj.page == NULL || a < inj.page || a >= inj.page + 4096) {
        signal(sig, SIG_DFL); /* a real crash: let it happen */
        return;
    }
    inj.hits++;
    inj.fault_off = (long)(a - inj.page);
    raw_t *r = inj.r;
    if (inj.action == 1) {
        uint8_t *data = r->mine + RAW_HDR;
        for (uint64_t i = 0; i < inj.n; i++)
            data[(*inj.head + i) & (r->size - 1)] = pat(*inj.head + i);
        *inj.head += inj.n;
        __atomic_store_n(h64(r->mine, OFF_HEAD), *inj.head, __ATOMIC_SEQ_CST);
        inj.flag_seen =
            __atomic_exchange_n(h32(r->mine, OFF_RDW), 0, __ATOMIC_SEQ_CST);
        if (inj.flag_seen && raw_wake(r) != 0)
            _exit(90);
        if (inj.close_after && shutdown(r->sock, SHUT_WR) != 0)
            _exit(93);
    } else {
        uint64_t h = __atomic_load_n(h64(r->theirs, OFF_HEAD), __ATOMIC_SEQ_CST);
        __atomic_store_n(h64(r->theirs, OFF_TAIL), h, __ATOMIC_SEQ_CST);
        inj.flag_seen =
            __atomic_exchange_n(h32(r->theirs, OFF_WRW), 0, __ATOMIC_SEQ_CST);
        if (inj.flag_seen && raw_wake(r) != 0)
            _exit(91);
    }
    if (mprotect(inj.page, 4096, PROT_READ | PROT_WRITE) != 0)
        _exit(92);
    inj.page = NULL;
}

/* The code's own mapping of the memfd called name: not ours. */
static uint8_t *code_mapping(const char *name, const void *ours)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    uint8_t *found = NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo;
        if (strstr(line, name) == NULL || sscanf(line, "%lx-", &lo) != 1 ||
            (void *)lo == ours)
            continue;
        ck_assert_ptr_null(found);
        found = (uint8_t *)lo;
    }
    fclose(f);
    ck_assert_ptr_nonnull(found);
    return found;
}

START_TEST(shmlink_flag_store_race)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = inj_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGSEGV, &sa, &old), 0);

    /* The reader: empty ring; the producer writes just before rd_waiting
     * goes up.  The reader's second look must find the bytes. */
    raw_t r;
    raw_open(&r, MIN, 0);
    uint64_t head = 0, rpos = 0;
    raw_produce(&r, &head, 10); /* takes the flag raised in raw_open */
    ck_assert_int_eq(get_pat(r.s, &rpos, 64), 10);
    ck_assert_uint_eq(*h32(r.mine, OFF_RDW), 0);
    memset(&inj, 0, sizeof(inj));
    inj.r = &r;
    inj.action = 1;
    inj.head = &head;
    inj.n = 100;
    inj.page = code_mapping("memfd:" TEST_RING_NAME, r.mine);
    ck_assert_int_eq(mprotect(inj.page, 4096, PROT_READ), 0);
    errno = 0;
    ssize_t n = get_pat(r.s, &rpos, 4096);
    int e = errno;
    ck_assert_int_eq(inj.hits, 1);
    ck_assert_int_eq(inj.fault_off, OFF_RDW); /* the flag store, first */
    ck_assert_uint_eq(inj.flag_seen, 0);
    ck_assert_msg(n == 100,
                  "lost wake-up: data written while rd_waiting went up, "
                  "read gave %zd (%s)",
                  n, strerror(e));
    /* It took its flag back (no stray wake-up later). */
    ck_assert_uint_eq(*h32(r.mine, OFF_RDW), 0);

    /* The writer: full ring; the consumer empties it just before
     * wr_waiting goes up.  The writer's second look must find the room. */
    uint64_t wpos = 0;
    ck_assert_int_eq(put_pat(r.s, &wpos, 2 * MIN), MIN);
    ck_assert_uint_eq(*h32(r.theirs, OFF_WRW), 0);
    memset(&inj, 0, sizeof(inj));
    inj.r = &r;
    inj.action = 2;
    inj.page = code_mapping("memfd:slotproxy-link", r.theirs);
    ck_assert_int_eq(mprotect(inj.page, 4096, PROT_READ), 0);
    errno = 0;
    n = put_pat(r.s, &wpos, 100);
    e = errno;
    ck_assert_int_eq(inj.hits, 1);
    ck_assert_int_eq(inj.fault_off, OFF_WRW);
    ck_assert_uint_eq(inj.flag_seen, 0);
    ck_assert_msg(n == 100,
                  "lost wake-up: room made while wr_waiting went up, "
                  "write gave %zd (%s)",
                  n, strerror(e));
    ck_assert_uint_eq(*h32(r.theirs, OFF_WRW), 0);

    /* The reader again, and the producer writes its last bytes and closes
     * just before rd_waiting goes up (after the reader took the socket's
     * bytes off): the bytes first, then EOF - never EOF with bytes left
     * in the ring, never a sleep with neither. */
    get_pat_all(r.s, &rpos, head - rpos, 4096);
    CK_EAGAIN(get_pat(r.s, &rpos, 64));
    ck_assert_uint_eq(*h32(r.mine, OFF_RDW), 1);
    __atomic_store_n(h32(r.mine, OFF_RDW), 0, __ATOMIC_SEQ_CST);
    ck_assert_int_eq(raw_wakeups(&r), 0); /* none was owed to us */
    memset(&inj, 0, sizeof(inj));
    inj.r = &r;
    inj.action = 1;
    inj.head = &head;
    inj.n = 77;
    inj.close_after = 1;
    inj.page = code_mapping("memfd:" TEST_RING_NAME, r.mine);
    ck_assert_int_eq(mprotect(inj.page, 4096, PROT_READ), 0);
    errno = 0;
    n = get_pat(r.s, &rpos, 4096);
    e = errno;
    ck_assert_int_eq(inj.hits, 1);
    ck_assert_int_eq(inj.fault_off, OFF_RDW);
    ck_assert_msg(n == 77, "last bytes before a close: read gave %zd (%s)", n,
                  n < 0 ? strerror(e) : "");
    ck_assert_int_eq(readable(r.s, 0), 1); /* the EOF */
    expect_eof(r.s);
    ck_assert_int_eq(sigaction(SIGSEGV, &old, NULL), 0);
    raw_close(&r);
}
END_TEST

/* ---- an interleaving injected at the socket ------------------------------ */

/* recv() of this binary, interposed: the same system call, but armed with
 * a hook it first lets the "peer" act, once, when the code under test
 * calls it on fd - between a reader's first look at an empty ring and its
 * taking the wake-ups (and a close) off the socket.  Unarmed it is plain
 * recvfrom for every caller. */
static struct {
    int fd;
    void (*fn)(void);
    int hits;
} recv_hook = {-1, NULL, 0};

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (recv_hook.fn != NULL && fd == recv_hook.fd) {
        void (*fn)(void) = recv_hook.fn;
        recv_hook.fn = NULL;
        recv_hook.hits++;
        fn();
    }
    return (ssize_t)syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
}

static struct {
    sp_shmlink_t *peer;
    uint64_t *wpos;
    size_t n;
} eof_inj;

/* The peer writes its last bytes and closes. */
static void eof_inj_fn(void)
{
    if (child_put(eof_inj.peer, eof_inj.wpos, eof_inj.n) != 0)
        _exit(94);
    sp_shmlink_free(eof_inj.peer);
}

/* The reader found its ring empty; before it takes the socket's bytes
 * off, the peer writes and closes: the drain sees the EOF, yet the bytes
 * are in the ring - they must come first, EOF after (the old design
 * could answer 0 with bytes left in the ring). */
START_TEST(shmlink_eof_race)
{
    for (int v = 0; v < 4; v++) {
        pair_t p;
        pair_ready(&p, MIN, MIN);
        int way = v & 1; /* 0: client writes, 1: server writes */
        sp_shmlink_t *w = way ? p.s : p.c, *r = way ? p.c : p.s;
        uint64_t wpos = 0, rpos = 0;
        if (v >> 1) {
            /* The reader's flag taken by an earlier write (its byte still
             * queued): the last write owes no wake-up, only the close
             * tells. */
            ck_assert_int_eq(put_pat(w, &wpos, 5), 5);
            ck_assert_int_eq(get_pat(r, &rpos, 64), 5);
        }
        memset(&eof_inj, 0, sizeof(eof_inj));
        eof_inj.peer = w;
        eof_inj.wpos = &wpos;
        eof_inj.n = 123;
        recv_hook.fd = sp_shmlink_fd(r);
        recv_hook.hits = 0;
        recv_hook.fn = eof_inj_fn;
        errno = 0;
        ssize_t n = get_pat(r, &rpos, 4096);
        int e = errno;
        recv_hook.fn = NULL;
        ck_assert_int_eq(recv_hook.hits, 1);
        ck_assert_msg(n == 123 && rpos == wpos,
                      "variant %d: bytes written just before a close: read "
                      "gave %zd (%s)",
                      v, n, n < 0 ? strerror(e) : "EOF");
        expect_eof(r);
        sp_shmlink_free(r);
    }
}
END_TEST

/* ---- fork ------------------------------------------------------------- */

/* Mappings of this process whose name contains name, or -1 (no
 * ck_assert: for children). */
static int child_count_maps(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, name) != NULL)
            n++;
    fclose(f);
    return n;
}

/* A child forked with both ends drops them: its socket copies are closed
 * and the rings unmapped in the child (it runs application code: it must
 * not touch them), the parent's link goes on, wake-ups and all, and its
 * close still reaches the peer although the child lives on. */
START_TEST(shmlink_drop_in_child)
{
    pair_t p;
    int note[2];
    pair_ready(&p, MIN, MIN);
    uint64_t cw = 0, sr = 0, sw = 1ull << 40, cr = 1ull << 40;
    ck_assert_int_eq(put_pat(p.c, &cw, 100), 100); /* in flight */
    ck_assert_int_eq(pipe2(note, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int before = child_count_maps("slotproxy-link");
        sp_shmlink_drop(p.c);
        sp_shmlink_drop(p.s);
        int after = child_count_maps("slotproxy-link");
        /* 'd': dropped and unmapped; 'm': rings still mapped */
        char r = before == 4 && after == 0 ? 'd' : 'm';
        if (write(note[1], &r, 1) != 1)
            _exit(2);
        pause();
        _exit(3);
    }
    close(note[1]);
    char c;
    ck_assert_int_eq(read(note[0], &c, 1), 1);
    close(note[0]);
    ck_assert_msg(c == 'd', "the child's drop left rings mapped");
    /* The parent's mappings are its own: untouched. */
    ck_assert_int_eq(count_maps("slotproxy-link"), 4);
    /* The bytes written before the fork are intact, and more flow, with
     * the wake-ups (the child's close of its socket copies does not
     * matter: the parent's own stay open). */
    ck_assert_int_eq(readable(p.s, 1000), 1);
    ck_assert_int_eq(get_pat(p.s, &sr, 1000), 100);
    CK_EAGAIN(get_pat(p.s, &sr, 1000));
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(readable(p.s, 0), 0);
        ck_assert_int_eq(put_pat(p.c, &cw, 3000), 3000);
        ck_assert_int_eq(readable(p.s, 1000), 1);
        get_pat_all(p.s, &sr, 3000, 512);
        CK_EAGAIN(get_pat(p.s, &sr, 1000));
        ck_assert_int_eq(put_pat(p.s, &sw, 5000), MIN);
        ck_assert_int_eq(readable(p.c, 1000), 1);
        get_pat_all(p.c, &cr, MIN, 4096);
        CK_EAGAIN(get_pat(p.c, &cr, 1000));
    }
    /* The child still runs; the parent's close is still an EOF. */
    sp_shmlink_free(p.c);
    ck_assert_msg(readable(p.s, 1000), "no EOF: the child kept the socket");
    expect_eof(p.s);
    sp_shmlink_free(p.s);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

/* ---- cross-process stress with a lost-wake-up detector ---------------- */

#define STRESS_N 1000000u
#define STRESS_WAIT_MS 2000
#define STRESS_MAX_LEN 6000u

typedef struct stress {
    uint32_t sent;   /* messages the producer finished */
    uint32_t sleeps; /* its polls */
    char why[200];   /* why it failed */
} stress_t;

static uint32_t stress_len(void)
{
    uint32_t r = sp_test_rng(), k = r % 100;
    if (k < 70)
        return (r >> 8) % 33;
    if (k < 99)
        return 33 + (r >> 8) % 568;
    return 601 + (r >> 8) % (STRESS_MAX_LEN - 600);
}

static uint8_t stress_byte(uint32_t seq, uint32_t j)
{
    return (uint8_t)(seq * 131u + j * 7u + (j >> 8));
}

/* The child: a client writing STRESS_N messages (seq, len, payload),
 * asleep in poll() whenever the ring is full.  Its exit code says how it
 * ended; st->why says why. */
static int stress_produce(sp_shmlink_t *c, stress_t *st)
{
    static uint8_t msg[6 + STRESS_MAX_LEN];
    int fd = sp_shmlink_fd(c);
    sp_test_rng_seed(0x5eed0006);
    for (uint32_t seq = 0; seq < STRESS_N; seq++) {
        uint32_t len = stress_len();
        uint16_t l16 = (uint16_t)len;
        memcpy(msg, &seq, 4);
        memcpy(msg + 4, &l16, 2);
        for (uint32_t j = 0; j < len; j++)
            msg[6 + j] = stress_byte(seq, j);
        size_t off = 0, total = 6 + len;
        while (off < total) {
            ssize_t w = sp_shmlink_write(c, msg + off, total - off);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w == 0 || errno != EAGAIN) {
                snprintf(st->why, sizeof(st->why), "write: %zd (%s: %s)", w,
                         strerror(errno), sp_shmlink_err(c));
                return 3;
            }
            st->sleeps++;
            int pr = poll_in(fd, STRESS_WAIT_MS);
            if (pr != 1) {
                snprintf(st->why, sizeof(st->why),
                         "lost wake-up: no room for %d ms at message %u",
                         STRESS_WAIT_MS, seq);
                return 4;
            }
            /* Readable: room, the answer, or a close.  Read as a link
             * would (it resets the bell; nothing ever comes this way). */
            uint8_t x;
            ssize_t r = sp_shmlink_read(c, &x, 1);
            if (r != -1 || errno != EAGAIN) {
                snprintf(st->why, sizeof(st->why), "read: %zd (%s)", r,
                         r < 0 ? strerror(errno) : "");
                return 5;
            }
        }
        __atomic_store_n(&st->sent, seq + 1, __ATOMIC_RELAXED);
    }
    return 0;
}

START_TEST(shmlink_stress_cross_process)
{
    int sv[2];
    char err[160] = "";
    mkpair(sv);
    stress_t *st = sp_test_shared(sizeof(*st));
    memset(st, 0, sizeof(*st));
    int64_t t0 = sp_now_ns();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[1]);
        sp_shmlink_t *c = sp_shmlink_client(sv[0], MIN, st->why,
                                            sizeof(st->why));
        if (c == NULL)
            _exit(2);
        int rc = stress_produce(c, st);
        sp_shmlink_free(c);
        _exit(rc);
    }
    close(sv[0]);
    sp_shmlink_t *s = sp_shmlink_server(sv[1], MIN, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    int fd = sp_shmlink_fd(s);

    sp_test_rng_seed(0x5eed0007);
    const size_t cap_all = 65536;
    uint8_t *buf = malloc(cap_all);
    ck_assert_ptr_nonnull(buf);
    size_t have = 0;
    uint32_t next = 0, sleeps = 0, stops = 0;
    while (next < STRESS_N) {
        size_t cap = 1 + sp_test_rng_below(8192);
        if (cap > cap_all - have)
            cap = cap_all - have;
        ssize_t r = sp_shmlink_read(s, buf + have, cap);
        if (r > 0) {
            have += (size_t)r;
            size_t p = 0;
            while (have - p >= 6) {
                uint32_t seq;
                uint16_t len;
                memcpy(&seq, buf + p, 4);
                memcpy(&len, buf + p + 4, 2);
                if (have - p < 6u + len)
                    break;
                if (seq != next)
                    ck_abort_msg("message %u where %u was due", seq, next);
                for (uint32_t j = 0; j < len; j++)
                    if (buf[p + 6 + j] != stress_byte(seq, j))
                        ck_abort_msg("message %u byte %u: %u, want %u", seq, j,
                                     buf[p + 6 + j], stress_byte(seq, j));
                p += 6u + len;
                next++;
                /* Stop the producer a few times with a real signal: it is
                 * frozen mid-write or asleep, we drain and sleep, and its
                 * first write after SIGCONT must wake us. */
                if (next % (STRESS_N / 5) == 0) {
                    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
                    usleep(20 * 1000);
                    ck_assert_int_eq(kill(pid, SIGCONT), 0);
                    stops++;
                }
            }
            memmove(buf, buf + p, have - p);
            have -= p;
            continue;
        }
        ck_assert_msg(r != 0, "EOF after %u of %u messages (producer: %s)",
                      next, STRESS_N, st->why);
        ck_assert_msg(errno == EAGAIN, "read: %s (%s)", strerror(errno),
                      sp_shmlink_err(s));
        sleeps++;
        int pr = poll_in(fd, STRESS_WAIT_MS);
        ck_assert_msg(pr == 1,
                      "lost wake-up: the consumer slept %d ms at message %u "
                      "(the producer finished %u, slept %u times; %s)",
                      STRESS_WAIT_MS, next,
                      __atomic_load_n(&st->sent, __ATOMIC_RELAXED), st->sleeps,
                      st->why[0] ? st->why : "no error");
    }
    ck_assert_uint_eq(have, 0);
    /* Then the producer's close: EOF, and nothing more. */
    for (;;) {
        uint8_t x;
        ssize_t r = sp_shmlink_read(s, &x, 1);
        if (r == 0)
            break;
        ck_assert_msg(r == -1 && errno == EAGAIN, "after the last message: %zd",
                      r);
        ck_assert_msg(poll_in(fd, STRESS_WAIT_MS) == 1,
                      "no EOF after the last message");
    }
    sp_test_wait_ok(pid);
    double secs = (double)(sp_now_ns() - t0) / 1e9;
    fprintf(stderr,
            "shmlink stress: %u messages through a %u-byte ring in %.2f s; "
            "sleeps: producer %u, consumer %u; %u SIGSTOPs\n",
            STRESS_N, MIN, secs, st->sleeps, sleeps, stops);
    /* Both sides slept and were woken, many times. */
    ck_assert_msg(st->sleeps >= 100 && sleeps >= 100,
                  "too few sleeps: producer %u, consumer %u", st->sleeps,
                  sleeps);
    free(buf);
    sp_shmlink_free(s);
    sp_test_unshare(st, sizeof(*st));
}
END_TEST

/* Ping-pong: every message waits for its echo, so every data wake-up is
 * needed (in a stream a missed one heals at the producer's next write,
 * which finds the flag still raised).  Both sides spin a random number of
 * reads before they sleep, so one side's flag store and the other's write
 * overlap often; a lost wake-up leaves both asleep: 2 s, failure. */

#define PP_ROUNDS 200000u

typedef struct pp {
    uint32_t round;
    char why[200];
} pp_t;

/* Read exactly n bytes: spin reads, then sleep in poll().  0, or -1 with
 * why filled (no ck_assert: the child uses it too). */
static int pp_read(sp_shmlink_t *s, uint8_t *buf, size_t n, uint32_t spin,
                   char *why, size_t whylen)
{
    size_t got = 0;
    uint32_t tries = 0;
    while (got < n) {
        ssize_t r = sp_shmlink_read(s, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0 || errno != EAGAIN) {
            snprintf(why, whylen, "read: %zd (%s)", r,
                     r < 0 ? strerror(errno) : "EOF");
            return -1;
        }
        if (tries++ < spin)
            continue;
        if (poll_in(sp_shmlink_fd(s), STRESS_WAIT_MS) != 1) {
            snprintf(why, whylen, "lost wake-up: nothing for %d ms",
                     STRESS_WAIT_MS);
            return -1;
        }
    }
    return 0;
}

static int pp_write(sp_shmlink_t *s, const uint8_t *buf, size_t n, char *why,
                    size_t whylen)
{
    ssize_t w = sp_shmlink_write(s, buf, n); /* one message in flight: room */
    if (w == (ssize_t)n)
        return 0;
    snprintf(why, whylen, "write: %zd (%s)", w, w < 0 ? strerror(errno) : "");
    return -1;
}

/* Message i: a length byte (1..64) and bytes derived from i. */
static size_t pp_msg(uint32_t i, uint8_t *m)
{
    size_t len = 1 + (i * 2654435761u >> 26); /* 1..64 */
    m[0] = (uint8_t)len;
    for (size_t j = 1; j <= len; j++)
        m[j] = (uint8_t)(i + j * 13);
    return len + 1;
}

START_TEST(shmlink_pingpong_cross_process)
{
    int sv[2];
    char err[160] = "";
    mkpair(sv);
    pp_t *sh = sp_test_shared(sizeof(*sh));
    memset(sh, 0, sizeof(*sh));
    int64_t t0 = sp_now_ns();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* the client: sends message i, waits for its echo */
        close(sv[1]);
        sp_shmlink_t *c = sp_shmlink_client(sv[0], MIN, sh->why,
                                            sizeof(sh->why));
        if (c == NULL)
            _exit(2);
        sp_test_rng_seed(0x5eed0008);
        uint8_t m[65], e[65];
        for (uint32_t i = 0; i < PP_ROUNDS; i++) {
            size_t n = pp_msg(i, m);
            if (pp_write(c, m, n, sh->why, sizeof(sh->why)) != 0 ||
                pp_read(c, e, n, sp_test_rng_below(64), sh->why,
                        sizeof(sh->why)) != 0)
                _exit(3);
            if (memcmp(m, e, n) != 0) {
                snprintf(sh->why, sizeof(sh->why), "echo %u differs", i);
                _exit(4);
            }
            __atomic_store_n(&sh->round, i + 1, __ATOMIC_RELAXED);
        }
        sp_shmlink_free(c);
        _exit(0);
    }
    close(sv[0]);
    sp_shmlink_t *s = sp_shmlink_server(sv[1], MIN, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    sp_test_rng_seed(0x5eed0009);
    uint8_t m[65], want[65];
    char why[200] = "";
    for (uint32_t i = 0; i < PP_ROUNDS; i++) {
        size_t n = pp_msg(i, want);
        int rc = pp_read(s, m, 1, sp_test_rng_below(64), why, sizeof(why));
        if (rc == 0)
            rc = pp_read(s, m + 1, m[0], 0, why, sizeof(why));
        ck_assert_msg(rc == 0, "server, round %u: %s (client at %u: %s)", i,
                      why, __atomic_load_n(&sh->round, __ATOMIC_RELAXED),
                      sh->why[0] ? sh->why : "no error");
        ck_assert_msg(memcmp(m, want, n) == 0, "message %u differs", i);
        ck_assert_msg(pp_write(s, m, n, why, sizeof(why)) == 0, "%s", why);
    }
    for (;;) { /* then EOF */
        uint8_t x;
        ssize_t r = sp_shmlink_read(s, &x, 1);
        if (r == 0)
            break;
        ck_assert_msg(r == -1 && errno == EAGAIN, "after the last round: %zd",
                      r);
        ck_assert_msg(poll_in(sp_shmlink_fd(s), STRESS_WAIT_MS) == 1,
                      "no EOF after the last round");
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "client status %#x: %s", status, sh->why);
    fprintf(stderr, "shmlink ping-pong: %u round trips in %.2f s\n", PP_ROUNDS,
            (double)(sp_now_ns() - t0) / 1e9);
    sp_shmlink_free(s);
    sp_test_unshare(sh, sizeof(*sh));
}
END_TEST

Suite *suite_shmlink(void)
{
    Suite *s = suite_create("shmlink");
    TCase *tc = tcase_create("shmlink");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, shmlink_rendezvous_round_trip);
    tcase_add_test(tc, shmlink_wake_before_answer);
    tcase_add_test(tc, shmlink_ring_sizes);
    tcase_add_test(tc, shmlink_full_ring_wrap);
    tcase_add_test(tc, shmlink_eof_after_free);
    tcase_add_test(tc, shmlink_eof_before_first_read);
    tcase_add_test(tc, shmlink_peer_killed);
    tcase_add_test(tc, shmlink_malformed_rendezvous);
    tcase_add_test(tc, shmlink_malformed_answer);
    tcase_add_test(tc, shmlink_raw_layout);
    tcase_add_test(tc, shmlink_raw_counter_wrap);
    tcase_add_test(tc, shmlink_hostile_counters);
    tcase_add_test(tc, shmlink_deaf_peer);
    tcase_add_test(tc, shmlink_flag_store_race);
    tcase_add_test(tc, shmlink_eof_race);
    tcase_add_test(tc, shmlink_drop_in_child);
    suite_add_tcase(s, tc);

    TCase *ts = tcase_create("stress");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, shmlink_stress_cross_process);
    tcase_add_test(ts, shmlink_pingpong_cross_process);
    suite_add_tcase(s, ts);
    return s;
}
