/*
 * test_net.c - link endpoint addresses and sockets (sp_net.c): every parse
 * refusal with its message, formatting, locality, TCP listen on port 0 +
 * connect + accept on loopback (IPv4, and IPv6 where the host has it), a
 * refused connect, unix listeners that replace a stale socket file but
 * leave a live listener's socket and a regular file alone, and shm:
 * endpoints that parse but do not open yet.
 */
#include "sp_unit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_net.h"

/* ---- helpers ---------------------------------------------------------- */

static void assert_nb_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    ck_assert_int_ge(fl, 0);
    ck_assert_msg(fl & O_NONBLOCK, "fd %d is blocking", fd);
    ck_assert_msg(fdfl & FD_CLOEXEC, "fd %d lacks FD_CLOEXEC", fd);
}

static void assert_nodelay(int fd)
{
    int v = 0;
    socklen_t vl = sizeof(v);
    ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    ck_assert_int_ne(v, 0);
}

static void wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
}

/* Accept with a deadline (the listener is non-blocking). */
static int accept_wait(int lfd)
{
    for (int i = 0; i < 500; i++) {
        int fd = sp_net_accept(lfd);
        if (fd != SP_EAGAIN)
            return fd;
        wait_fd(lfd, POLLIN);
    }
    return SP_EAGAIN;
}

/* One byte each way over a connected pair. */
static void exchange(int a, int b)
{
    char c = 0;
    wait_fd(a, POLLOUT);
    ck_assert_int_eq(write(a, "x", 1), 1);
    wait_fd(b, POLLIN);
    ck_assert_int_eq(read(b, &c, 1), 1);
    ck_assert_int_eq(c, 'x');
    ck_assert_int_eq(write(b, "y", 1), 1);
    wait_fd(a, POLLIN);
    ck_assert_int_eq(read(a, &c, 1), 1);
    ck_assert_int_eq(c, 'y');
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sp_net_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(const char *file)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, file);
    unlink(p);
    rmdir(tmpdir);
}

/* ---- parsing ---------------------------------------------------------- */

START_TEST(net_parse_tcp)
{
    sp_addr_t a;
    char err[256], buf[300];

    ck_assert_int_eq(
        sp_addr_parse("tcp://127.0.0.1:8080", &a, err, sizeof(err)), 0);
    ck_assert_int_eq(a.kind, SP_ADDR_TCP);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_uint_eq(a.port, 8080);
    ck_assert_int_eq(a.sa.ss_family, AF_INET);
    ck_assert_uint_eq(a.salen, sizeof(struct sockaddr_in));
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a.sa;
    ck_assert_uint_eq(ntohs(in->sin_port), 8080);
    ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x7f000001u);
    ck_assert_str_eq(sp_addr_format(&a, buf, sizeof(buf)),
                     "tcp://127.0.0.1:8080");

    ck_assert_int_eq(sp_addr_parse("tcp://[::1]:9", &a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.host, "::1");
    ck_assert_uint_eq(a.port, 9);
    ck_assert_int_eq(a.sa.ss_family, AF_INET6);
    ck_assert_uint_eq(ntohs(((const struct sockaddr_in6 *)&a.sa)->sin6_port),
                      9);
    ck_assert_str_eq(sp_addr_format(&a, buf, sizeof(buf)), "tcp://[::1]:9");

    /* A name goes through the resolver (/etc/hosts has localhost). */
    ck_assert_int_eq(sp_addr_parse("tcp://localhost:0", &a, err, sizeof(err)),
                     0);
    ck_assert_str_eq(a.host, "localhost");
    ck_assert_uint_eq(a.port, 0);
    ck_assert(a.sa.ss_family == AF_INET || a.sa.ss_family == AF_INET6);

    ck_assert_int_eq(sp_addr_parse("tcp://0.0.0.0:65535", &a, NULL, 0), 0);
    ck_assert_uint_eq(a.port, 65535);
    ck_assert_str_eq(sp_addr_format(&a, buf, sizeof(buf)),
                     "tcp://0.0.0.0:65535");
    /* A short buffer truncates, never overflows. */
    ck_assert_str_eq(sp_addr_format(&a, buf, 7), "tcp://");
}
END_TEST

START_TEST(net_parse_paths)
{
    sp_addr_t a;
    char err[256], buf[300];

    ck_assert_int_eq(sp_addr_parse("unix:/run/sp.sock", &a, err, sizeof(err)),
                     0);
    ck_assert_int_eq(a.kind, SP_ADDR_UNIX);
    ck_assert_str_eq(a.path, "/run/sp.sock");
    ck_assert_int_eq(a.sa.ss_family, AF_UNIX);
    ck_assert_str_eq(((struct sockaddr_un *)&a.sa)->sun_path, "/run/sp.sock");
    ck_assert_str_eq(sp_addr_format(&a, buf, sizeof(buf)), "unix:/run/sp.sock");

    ck_assert_int_eq(sp_addr_parse("shm:/dev/shm/sp", &a, err, sizeof(err)), 0);
    ck_assert_int_eq(a.kind, SP_ADDR_SHM);
    ck_assert_str_eq(a.path, "/dev/shm/sp");
    ck_assert_str_eq(sp_addr_format(&a, buf, sizeof(buf)), "shm:/dev/shm/sp");

    /* The longest path that fits sun_path with its NUL. */
    char s[200] = "unix:";
    memset(s + 5, 'p', 107);
    s[5] = '/';
    s[5 + 107] = '\0';
    ck_assert_int_eq(sp_addr_parse(s, &a, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(a.path), 107);
}
END_TEST

START_TEST(net_parse_refusals)
{
    static char longhost[300], longpath[200];
    memcpy(longhost, "tcp://", 6);
    memset(longhost + 6, 'h', 256);
    memcpy(longhost + 262, ":80", 4);
    memcpy(longpath, "unix:/", 6);
    memset(longpath + 6, 'p', 107);
    longpath[113] = '\0';

    const struct {
        const char *in, *msg;
    } bad[] = {
        {"", "empty address"},
        {"http://x:80", "unknown address scheme"},
        {"tcp:/x:80", "unknown address scheme"},
        {"127.0.0.1:80", "unknown address scheme"},
        {"tcp://", "needs a port"},
        {"tcp://host", "needs a port"},
        {"tcp://host:", "needs a port"},
        {"tcp://:80", "needs a host"},
        {"tcp://h:99999", "0..65535"},
        {"tcp://h:65536", "0..65535"},
        {"tcp://h:8x", "0..65535"},
        {"tcp://h:-1", "0..65535"},
        {"tcp://h: 80", "0..65535"},
        {"tcp://::1:80", "in brackets"},
        {"tcp://[::1", "unclosed"},
        {"tcp://[::1]", "needs a port"},
        {"tcp://[::1]80", "':' after ']'"},
        {"tcp://[::1]:", "needs a port"},
        {"tcp://[]:80", "needs a host"},
        {"tcp://[127.0.0.1]:80", "not an IPv6 address"},
        {"tcp://[zz::1]:80", "not an IPv6 address"},
        {longhost, "too long"},
        {"unix:", "needs a path"},
        {"unix:run/sp.sock", "absolute"},
        {longpath, "at most 107 fit"},
        {"shm:", "needs a path"},
        {"shm:x", "absolute"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sp_addr_t a;
        char err[256] = "untouched";
        memset(&a, 0x5a, sizeof(a));
        ck_assert_msg(sp_addr_parse(bad[i].in, &a, err, sizeof(err)) ==
                          SP_EINVAL,
                      "accepted %s", bad[i].in);
        ck_assert_msg(strstr(err, bad[i].msg) != NULL,
                      "%s: message \"%s\" lacks \"%s\"", bad[i].in, err,
                      bad[i].msg);
        ck_assert_int_eq(a.kind, 0); /* cleared, not half-filled */
        /* No err buffer, or a tiny one: still refused, no overflow. */
        ck_assert_int_eq(sp_addr_parse(bad[i].in, &a, NULL, 0), SP_EINVAL);
        char tiny[4];
        ck_assert_int_eq(sp_addr_parse(bad[i].in, &a, tiny, sizeof(tiny)),
                         SP_EINVAL);
        ck_assert_uint_le(strlen(tiny), 3);
    }
    sp_addr_t a;
    ck_assert_int_eq(sp_addr_parse(NULL, &a, NULL, 0), SP_EINVAL);
    /* A bad address is quoted in the message (it is configuration). */
    char err[256];
    ck_assert_int_eq(sp_addr_parse("tcp://backend", &a, err, sizeof(err)),
                     SP_EINVAL);
    ck_assert_str_eq(err, "tcp address needs a port: tcp://backend");
}
END_TEST

START_TEST(net_is_local)
{
    const struct {
        const char *in;
        int local;
    } t[] = {
        {"tcp://127.0.0.1:1", 1},
        {"tcp://127.255.0.9:1", 1},
        {"tcp://localhost:1", 1},
        {"tcp://[::1]:1", 1},
        {"tcp://[::ffff:127.0.0.2]:1", 1},
        {"tcp://0.0.0.0:1", 0},
        {"tcp://[::]:1", 0},
        {"tcp://10.0.0.1:1", 0},
        {"tcp://128.0.0.1:1", 0},
        {"tcp://[2001:db8::1]:1", 0},
        {"tcp://[::ffff:10.0.0.1]:1", 0},
        {"unix:/x", 1},
        {"shm:/x", 1},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        sp_addr_t a;
        char err[256];
        ck_assert_msg(sp_addr_parse(t[i].in, &a, err, sizeof(err)) == 0,
                      "%s: %s", t[i].in, err);
        ck_assert_msg(sp_addr_is_local(&a) == t[i].local, "%s: local %d",
                      t[i].in, sp_addr_is_local(&a));
    }
    sp_addr_t z;
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(sp_addr_is_local(&z), 0);
}
END_TEST

/* ---- sockets ---------------------------------------------------------- */

static void tcp_roundtrip(const char *addr)
{
    sp_addr_t a;
    char err[256];

    ck_assert_int_eq(sp_addr_parse(addr, &a, err, sizeof(err)), 0);
    int lfd = sp_addr_listen(&a, 16);
    if (lfd < 0 && a.sa.ss_family == AF_INET6 &&
        (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT))
        return; /* no IPv6 loopback on this host */
    ck_assert_int_ge(lfd, 0);
    assert_nb_cloexec(lfd);
    ck_assert_uint_ne(a.port, 0); /* the chosen port is written back */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
    uint16_t bound = ss.ss_family == AF_INET
                         ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                         : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    ck_assert_uint_eq(bound, a.port);

    ck_assert_int_eq(sp_net_accept(lfd), SP_EAGAIN);
    int cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    assert_nb_cloexec(cfd);
    assert_nodelay(cfd);
    wait_fd(cfd, POLLOUT);
    ck_assert_int_eq(sp_net_connect_result(cfd), 0);
    int afd = accept_wait(lfd);
    ck_assert_int_ge(afd, 0);
    assert_nb_cloexec(afd);
    assert_nodelay(afd);
    exchange(cfd, afd);
    ck_assert_int_eq(sp_net_accept(lfd), SP_EAGAIN);
    close(afd);
    close(cfd);
    close(lfd);
}

START_TEST(net_tcp_listen_connect_accept)
{
    tcp_roundtrip("tcp://127.0.0.1:0");
    tcp_roundtrip("tcp://[::1]:0");
}
END_TEST

START_TEST(net_tcp_connect_refused)
{
    sp_addr_t a;
    char err[256];

    ck_assert_int_eq(sp_addr_parse("tcp://127.0.0.1:0", &a, err, sizeof(err)),
                     0);
    int lfd = sp_addr_listen(&a, 1);
    ck_assert_int_ge(lfd, 0);
    close(lfd); /* nobody listens on a.port now */
    int cfd = sp_addr_connect(&a);
    if (cfd >= 0) {
        wait_fd(cfd, POLLOUT);
        errno = 0;
        ck_assert_int_eq(sp_net_connect_result(cfd), SP_ESYS);
        ck_assert_int_eq(errno, ECONNREFUSED);
        close(cfd);
    } else {
        ck_assert_int_eq(cfd, SP_ESYS);
        ck_assert_int_eq(errno, ECONNREFUSED);
    }
    /* Not a socket at all. */
    ck_assert_int_eq(sp_net_connect_result(-1), SP_ESYS);
    ck_assert_int_eq(sp_net_accept(-1), SP_ESYS);
    ck_assert_int_eq(errno, EBADF);
    /* An address that was never parsed. */
    sp_addr_t z;
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(sp_addr_listen(&z, 1), SP_EINVAL);
    ck_assert_int_eq(sp_addr_connect(&z), SP_EINVAL);
}
END_TEST

START_TEST(net_tcp_addr_in_use)
{
    sp_addr_t a, b;
    char err[256], s[64];

    ck_assert_int_eq(sp_addr_parse("tcp://127.0.0.1:0", &a, err, sizeof(err)),
                     0);
    int lfd = sp_addr_listen(&a, 1);
    ck_assert_int_ge(lfd, 0);
    snprintf(s, sizeof(s), "tcp://127.0.0.1:%u", (unsigned)a.port);
    ck_assert_int_eq(sp_addr_parse(s, &b, err, sizeof(err)), 0);
    errno = 0;
    ck_assert_int_eq(sp_addr_listen(&b, 1), SP_ESYS);
    ck_assert_int_eq(errno, EADDRINUSE);
    close(lfd);
}
END_TEST

START_TEST(net_unix_listen_stale_and_live)
{
    sp_addr_t a;
    char err[256], s[128], path[100];
    struct stat st;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/l.sock", tmpdir);
    snprintf(s, sizeof(s), "unix:%s", path);
    ck_assert_int_eq(sp_addr_parse(s, &a, err, sizeof(err)), 0);

    int lfd = sp_addr_listen(&a, 4);
    ck_assert_int_ge(lfd, 0);
    assert_nb_cloexec(lfd);
    int cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    assert_nb_cloexec(cfd);
    ck_assert_int_eq(sp_net_connect_result(cfd), 0);
    int afd = accept_wait(lfd);
    ck_assert_int_ge(afd, 0);
    assert_nb_cloexec(afd);
    exchange(cfd, afd);
    close(afd);
    close(cfd);

    /* A live listener keeps its socket: the second bind fails and the
     * first still accepts. */
    errno = 0;
    ck_assert_int_eq(sp_addr_listen(&a, 4), SP_ESYS);
    ck_assert_int_eq(errno, EADDRINUSE);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    /* The probe connect of that attempt sits in the backlog; drain it. */
    int probe = accept_wait(lfd);
    if (probe >= 0)
        close(probe);
    cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    afd = accept_wait(lfd);
    ck_assert_int_ge(afd, 0);
    exchange(cfd, afd);
    close(afd);
    close(cfd);

    /* The listener dies, its file stays: the next listen replaces it. */
    close(lfd);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    /* Mark the stale file (inode numbers get reused at once, modes do
     * not carry over): the new socket has the umask's mode. */
    ck_assert_int_eq(chmod(path, 0600), 0);
    umask(022);
    lfd = sp_addr_listen(&a, 4);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0755);
    cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    afd = accept_wait(lfd);
    ck_assert_int_ge(afd, 0);
    exchange(cfd, afd);
    close(afd);
    close(cfd);
    close(lfd);
    rm_tmpdir("l.sock");
}
END_TEST

START_TEST(net_unix_listen_keeps_regular_file)
{
    sp_addr_t a;
    char err[256], s[128], path[100], buf[16] = {0};
    struct stat st;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/data", tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "precious", 8), 8);
    close(fd);

    snprintf(s, sizeof(s), "unix:%s", path);
    ck_assert_int_eq(sp_addr_parse(s, &a, err, sizeof(err)), 0);
    errno = 0;
    ck_assert_int_eq(sp_addr_listen(&a, 4), SP_ESYS);
    ck_assert_int_eq(errno, EADDRINUSE);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(read(fd, buf, sizeof(buf)), 8);
    ck_assert_str_eq(buf, "precious");
    close(fd);
    /* Nobody listening: connect fails at once. */
    errno = 0;
    ck_assert_int_eq(sp_addr_connect(&a), SP_ESYS);
    ck_assert_int_eq(errno, ECONNREFUSED);
    rm_tmpdir("data");
}
END_TEST

START_TEST(net_shm_rendezvous_socket)
{
    sp_addr_t a;
    char err[256];
    struct stat st;
    const char *path = "/tmp/sp-shm-test.sock";

    (void)unlink(path);
    ck_assert_int_eq(sp_addr_parse("shm:/tmp/sp-shm-test.sock", &a, err,
                                   sizeof(err)),
                     0);
    /* Nobody listening: connect fails at once. */
    errno = 0;
    ck_assert_int_eq(sp_addr_connect(&a), SP_ESYS);
    ck_assert_int_eq(errno, ENOENT);
    /* The rendezvous is a Unix stream socket at the path. */
    int lfd = sp_addr_listen(&a, 4);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    int cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    int afd = sp_net_accept(lfd);
    ck_assert_int_ge(afd, 0);
    ck_assert_int_eq(write(cfd, "x", 1), 1);
    char c = 0;
    ck_assert_int_eq(read(afd, &c, 1), 1);
    ck_assert_int_eq(c, 'x');
    close(afd);
    close(cfd);
    close(lfd);
    ck_assert_int_eq(unlink(path), 0);
}
END_TEST

Suite *suite_net(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, net_parse_tcp);
    tcase_add_test(tc, net_parse_paths);
    tcase_add_test(tc, net_parse_refusals);
    tcase_add_test(tc, net_is_local);
    tcase_add_test(tc, net_tcp_listen_connect_accept);
    tcase_add_test(tc, net_tcp_connect_refused);
    tcase_add_test(tc, net_tcp_addr_in_use);
    tcase_add_test(tc, net_unix_listen_stale_and_live);
    tcase_add_test(tc, net_unix_listen_keeps_regular_file);
    tcase_add_test(tc, net_shm_rendezvous_socket);
    suite_add_tcase(s, tc);
    return s;
}
