/*
 * test_backend_shm.c - the backend's shm: listener against peers that are
 * not what they should be, through the real rendezvous socket:
 *
 *   hostile   a peer that sends plain bytes, one whose ring is not sealed,
 *             one whose ring is smaller than it claims, one that hangs up
 *             at once: each is closed and logged (SPB0303), the backend
 *             goes on serving a proper shm: link
 *   stall     8 large responses on one shm: link whose frontend stops
 *             reading for 300 ms: the backend's ring and its link queue
 *             fill, streams wait for room; when the frontend reads again
 *             every stream must go on (room arriving while the dispatcher
 *             reads the link once left them waiting for minutes)
 *   killed    a frontend SIGKILLed while its response waits for credit:
 *             the backend sees the rendezvous socket close, aborts the
 *             stream and frees the only worker at once (without that the
 *             worker would wait for credit until RequestTimeout)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_error.h"
#include "test_backend.h"

/* The connect message of sp_shmlink.c, mirrored: a test of the wire. */
typedef struct shm_msg {
    char magic[8];
    uint32_t version;
    uint32_t ring_size;
} shm_msg_t;

static int raw_rendezvous(const spt_backend_t *b)
{
    int fd = spc_raw_connect(b->shm_addr, 2000);
    ck_assert_msg(fd >= 0, "connect %s: %s", b->shm_addr, strerror(errno));
    return fd;
}

/* Send the message with the ring's descriptor. */
static void send_msg(int fd, uint32_t ring_size, int ring)
{
    shm_msg_t m;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {&m, sizeof(m)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};

    memset(&m, 0, sizeof(m));
    memcpy(m.magic, "SPSHMLK", 8);
    m.version = 1;
    m.ring_size = ring_size;
    memset(u.buf, 0, sizeof(u.buf));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(ring));
    memcpy(CMSG_DATA(c), &ring, sizeof(ring));
    ck_assert_int_eq(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)sizeof(m));
}

/* The backend closes fd within timeout_ms: ms it took. */
static double expect_closed(int fd, int timeout_ms, const char *what)
{
    double t0 = spt_ms();
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = timeout_ms - (int)(spt_ms() - t0);
        ck_assert_msg(left > 0, "%s: still open after %d ms", what,
                      timeout_ms);
        if (poll(&p, 1, left) == 1) {
            char buf[64];
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno == ECONNRESET))
                break;
            ck_assert_msg(n < 0 && errno == EAGAIN,
                          "%s: the backend wrote %zd bytes", what, n);
        }
    }
    close(fd);
    return spt_ms() - t0;
}

/* A sealed-or-not memfd of len bytes. */
static int memfd_of(size_t len, int seal)
{
    int fd = memfd_create("spt-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
    if (seal)
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW),
                         0);
    return fd;
}

static void hello_over_shm(const spt_backend_t *b)
{
    spc_t c;
    tb_connect(&c, b->shm_addr, NULL, 4);
    c.streams[1].keep_body = 1;
    tb_get(&c, 1, "/hello");
    tb_wait(&c, 1, 5000);
    tb_expect_ok(&c, 1, 200);
    ck_assert_uint_eq(c.streams[1].body_len, 13);
    ck_assert(memcmp(c.streams[1].body, "Hello, world\n", 13) == 0);
    spc_close(&c);
}

static const char *const hostile_allowed[] = {"SPB0303", NULL};

START_TEST(backend_shm_hostile)
{
    spt_backend_t b;
    spt_backend_start(&b, NULL);
    hello_over_shm(&b);

    /* Plain bytes, no descriptors. */
    int fd = raw_rendezvous(&b);
    ck_assert_int_eq(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
    double ms = expect_closed(fd, 3000, "plain bytes");
    fprintf(stderr, "figure: shm: rendezvous with plain bytes closed in "
                    "%.1f ms\n",
            ms);

    /* A ring that is not sealed against shrinking. */
    int mfd = memfd_of(256 + 4096, 0);
    fd = raw_rendezvous(&b);
    send_msg(fd, 4096, mfd);
    expect_closed(fd, 3000, "unsealed ring");
    close(mfd);

    /* A sealed ring smaller than the size it claims. */
    mfd = memfd_of(256 + 4096, 1);
    fd = raw_rendezvous(&b);
    send_msg(fd, 65536, mfd);
    expect_closed(fd, 3000, "short ring");
    close(mfd);

    /* Hung up at once. */
    fd = raw_rendezvous(&b);
    close(fd);

    /* Still serving, over shm: and over unix:. */
    hello_over_shm(&b);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_get(&c, 1, "/hello");
    tb_wait(&c, 1, 5000);
    tb_expect_ok(&c, 1, 200);
    spc_close(&c);

    ck_assert_int_ge(spt_log_count(&b, "not a shm: link connect message"), 1);
    ck_assert_int_ge(spt_log_count(&b, "not sealed"), 1);
    ck_assert_int_ge(spt_log_count(&b, "smaller than it says"), 1);
    spt_backend_finish(&b, hostile_allowed);
}
END_TEST

START_TEST(backend_shm_stall)
{
    enum { NSTR = 8 };
    const long size = 16 * 1000 * 1000;
    spt_backend_t b;
    spt_backend_start(&b, "Workers 8\n");
    spc_t c;
    tb_connect(&c, b.shm_addr, NULL, 16);
    char uri[64];
    snprintf(uri, sizeof(uri), "/echo?size=%ld", size);
    for (int i = 1; i <= NSTR; i++)
        tb_get(&c, (uint32_t)i, uri);
    spc_pump(&c, 0);   /* the heads go out */
    usleep(300000);    /* a frontend busy elsewhere: everything fills */
    double t0 = spt_ms(), last = t0, gap = 0;
    uint64_t prev = 0;
    for (;;) {
        ck_assert_int_eq(spc_pump(&c, 50), 0);
        uint64_t tot = 0;
        int open = 0;
        for (int i = 1; i <= NSTR; i++) {
            tot += c.streams[i].body_total;
            open += c.streams[i].open;
        }
        double now = spt_ms();
        if (tot != prev) {
            if (now - last > gap)
                gap = now - last;
            last = now;
            prev = tot;
        }
        if (!open)
            break;
        ck_assert_msg(now - last < 5000,
                      "no response byte for 5 s: %llu of %llu bytes after "
                      "%.0f ms",
                      (unsigned long long)tot,
                      (unsigned long long)(size * NSTR), now - t0);
    }
    for (int i = 1; i <= NSTR; i++) {
        tb_expect_ok(&c, (uint32_t)i, 200);
        ck_assert_uint_eq(c.streams[i].body_total, (uint64_t)size);
    }
    fprintf(stderr, "figure: shm: %d x %ld bytes after a 300 ms pause in "
                    "%.0f ms, longest silence %.1f ms\n",
            NSTR, size, spt_ms() - t0, gap);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_shm_killed_frontend)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 1\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 1, 5000), 1);

    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A frontend that asks for 50 MB and never reads: the response
         * stops at the stream's window and the worker waits for credit. */
        spc_t c;
        char err[256];
        if (spc_connect(&c, b.shm_addr, NULL, 4, 5000, err, sizeof(err)) < 0 ||
            spc_request(&c, 1, "GET", "/echo?size=50000000", NULL, 0, 0) < 0)
            _exit(1);
        for (int i = 0; i < 20; i++)
            spc_pump(&c, 10); /* the head goes out; read a little */
        char one = 1;
        if (write(ready[1], &one, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char one = 0;
    ck_assert_int_eq(read(ready[0], &one, 1), 1);
    close(ready[0]);
    usleep(200000); /* the worker is now blocked on credit */
    double t0 = spt_ms();
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

    /* The only worker is free again at once. */
    spc_t c;
    tb_connect(&c, b.shm_addr, NULL, 4);
    tb_get(&c, 1, "/hello");
    tb_wait(&c, 1, 5000);
    tb_expect_ok(&c, 1, 200);
    double ms = spt_ms() - t0;
    spc_close(&c);
    fprintf(stderr, "figure: shm: frontend killed with its response waiting "
                    "for credit: the only worker answered again %.1f ms "
                    "after the kill\n",
            ms);
    ck_assert_msg(ms < 3000, "the worker was held %.0f ms after the kill", ms);
    ck_assert_int_eq(spt_log_count(&b, "SPB0702"), 0);
    spt_backend_finish(&b, NULL);
}
END_TEST

void tb_add_shm_cases(Suite *s)
{
    TCase *tc = tcase_create("shm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, backend_shm_hostile);
    tcase_add_test(tc, backend_shm_stall);
    tcase_add_test(tc, backend_shm_killed_frontend);
    suite_add_tcase(s, tc);
}
