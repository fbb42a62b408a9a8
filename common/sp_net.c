/*
 * sp_net.c - link endpoint addresses and the sockets behind them (see
 * sp_net.h).
 *
 * Parsing.  An address is "scheme:rest" with three schemes:
 *
 *   tcp://HOST:PORT    HOST is a name (resolved now, with getaddrinfo, first
 *                      result wins), a dotted IPv4 address, or an IPv6
 *                      address in brackets ("[::1]"; without them the colons
 *                      would be ambiguous).  PORT is decimal 0..65535 and
 *                      required.
 *   unix:/abs/path     absolute, short enough for sun_path with its NUL
 *   shm:/abs/path      same rules; the path is the rendezvous socket of a
 *                      shared-memory link (sp_shmlink.h): listen and
 *                      connect make a Unix stream socket there, and the
 *                      link code then moves the stream onto the rings
 *
 * Every refusal carries a one-line reason in err naming the address as it
 * was written (it comes from a configuration file, never from a peer).
 *
 * Locality.  sp_addr_is_local() decides whether a listener needs a shared
 * secret: unix: and shm: are reachable from this host only; tcp: is local
 * only when bound to a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x
 * written in IPv6 form).  A wildcard (0.0.0.0, ::) is not local.
 *
 * Sockets.  Everything made here is SOCK_NONBLOCK | SOCK_CLOEXEC, so an
 * event loop can use it at once and no CGI child inherits it; TCP sockets
 * get TCP_NODELAY because frames are written whole and small control
 * frames (CREDIT, PONG) must not wait for Nagle.
 *
 * A unix listener first removes a stale socket file at its path: only if
 * the path is a socket (lstat, so never a regular file or a symlink's
 * target) and nobody accepts on it any more (a probe connect gets
 * ECONNREFUSED).  A live listener is left alone and the bind fails with
 * EADDRINUSE, so starting a second backend on the same path cannot steal
 * the first one's socket (that backend then accepts one connection that
 * closes at once: the probe).
 *
 * Nothing here logs or keeps state; the functions are safe from any thread
 * (getaddrinfo is).
 */
#include "sp_net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sp_error.h"

_Static_assert(sizeof(((sp_addr_t *)0)->path) ==
                   sizeof(((struct sockaddr_un *)0)->sun_path),
               "sp_addr_t.path must match sun_path");

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SP_EINVAL;
}

/* A path for unix: or shm:, written to a->path. */
static int parse_path(const char *s, const char *rest, sp_addr_t *a, char *err,
                      size_t errlen)
{
    size_t n = strlen(rest);

    if (n == 0)
        return fail(err, errlen, "address needs a path: %.200s", s);
    if (rest[0] != '/')
        return fail(err, errlen, "address path must be absolute: %.200s", s);
    if (n >= sizeof(a->path))
        return fail(err, errlen,
                    "address path is %zu bytes, at most %zu fit: %.200s", n,
                    sizeof(a->path) - 1, s);
    memcpy(a->path, rest, n + 1);
    return 0;
}

/* The Unix socket address of a unix: or shm: path. */
static void unix_sa(sp_addr_t *a)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, a->path, sizeof(un->sun_path));
    a->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                           strlen(a->path) + 1);
}

/* Decimal 0..65535, digits only. */
static int parse_port(const char *p, uint16_t *port)
{
    unsigned long v = 0;

    if (*p == '\0')
        return -1;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static int parse_tcp(const char *s, const char *rest, sp_addr_t *a, char *err,
                     size_t errlen)
{
    const char *host, *hend, *colon;
    int bracketed = 0;
    size_t hlen;

    if (rest[0] == '[') {
        bracketed = 1;
        host = rest + 1;
        if ((hend = strchr(host, ']')) == NULL)
            return fail(err, errlen, "tcp address has an unclosed '[': %.200s",
                        s);
        if (hend[1] == '\0')
            return fail(err, errlen, "tcp address needs a port: %.200s", s);
        if (hend[1] != ':')
            return fail(err, errlen, "tcp address needs ':' after ']': %.200s",
                        s);
        colon = hend + 1;
    } else {
        host = rest;
        if ((colon = strrchr(rest, ':')) == NULL)
            return fail(err, errlen, "tcp address needs a port: %.200s", s);
        hend = colon;
        if (memchr(host, ':', (size_t)(hend - host)) != NULL)
            return fail(err, errlen,
                        "tcp address: write an IPv6 address in brackets, "
                        "as in tcp://[::1]:8080: %.200s",
                        s);
    }
    hlen = (size_t)(hend - host);
    if (hlen == 0)
        return fail(err, errlen, "tcp address needs a host: %.200s", s);
    if (hlen >= sizeof(a->host))
        return fail(err, errlen, "tcp address host is too long (%zu bytes)",
                    hlen);
    if (colon[1] == '\0')
        return fail(err, errlen, "tcp address needs a port: %.200s", s);
    if (parse_port(colon + 1, &a->port) != 0)
        return fail(err, errlen,
                    "tcp address port must be a number 0..65535: %.200s", s);
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';

    struct addrinfo hints, *res = NULL;
    char portstr[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
    hints.ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0);
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)a->port);
    rc = getaddrinfo(a->host, portstr, &hints, &res);
    if (rc != 0 && bracketed)
        return fail(err, errlen,
                    "tcp address: not an IPv6 address in brackets: %.200s", s);
    if (rc != 0)
        return fail(err, errlen,
                    "tcp address: cannot resolve host (%s): %.200s",
                    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc), s);
    if (res == NULL || res->ai_addrlen > sizeof(a->sa)) {
        freeaddrinfo(res);
        return fail(err, errlen, "tcp address: no usable address: %.200s", s);
    }
    memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
    a->salen = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int sp_addr_parse(const char *s, sp_addr_t *a, char *err, size_t errlen)
{
    int rc;

    memset(a, 0, sizeof(*a));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL || *s == '\0')
        return fail(err, errlen, "empty address");
    if (strncmp(s, "tcp://", 6) == 0) {
        a->kind = SP_ADDR_TCP;
        rc = parse_tcp(s, s + 6, a, err, errlen);
    } else if (strncmp(s, "unix:", 5) == 0) {
        a->kind = SP_ADDR_UNIX;
        rc = parse_path(s, s + 5, a, err, errlen);
        if (rc == 0)
            unix_sa(a);
    } else if (strncmp(s, "shm:", 4) == 0) {
        a->kind = SP_ADDR_SHM;
        rc = parse_path(s, s + 4, a, err, errlen);
        if (rc == 0)
            unix_sa(a);
    } else {
        return fail(err, errlen,
                    "unknown address scheme (want tcp://HOST:PORT, "
                    "unix:/PATH or shm:/PATH): %.200s",
                    s);
    }
    if (rc != 0)
        memset(a, 0, sizeof(*a));
    return rc;
}

const char *sp_addr_format(const sp_addr_t *a, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return "";
    switch (a->kind) {
    case SP_ADDR_TCP:
        if (strchr(a->host, ':') != NULL)
            snprintf(buf, len, "tcp://[%s]:%u", a->host, (unsigned)a->port);
        else
            snprintf(buf, len, "tcp://%s:%u", a->host, (unsigned)a->port);
        break;
    case SP_ADDR_UNIX:
        snprintf(buf, len, "unix:%s", a->path);
        break;
    case SP_ADDR_SHM:
        snprintf(buf, len, "shm:%s", a->path);
        break;
    default:
        snprintf(buf, len, "?");
        break;
    }
    return buf;
}

int sp_addr_is_local(const sp_addr_t *a)
{
    switch (a->kind) {
    case SP_ADDR_UNIX:
    case SP_ADDR_SHM:
        return 1;
    case SP_ADDR_TCP:
        if (a->sa.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
            return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        }
        if (a->sa.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 =
                (const struct sockaddr_in6 *)&a->sa;
            if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                return 1;
            return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                   in6->sin6_addr.s6_addr[12] == 127;
        }
        return 0;
    }
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a socket without it still works, only slower. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int family_of(const sp_addr_t *a)
{
    return a->kind == SP_ADDR_TCP ? a->sa.ss_family : AF_UNIX;
}

/* Close fd keeping errno (close may clobber it). */
static int close_keep_errno(int fd)
{
    int e = errno;
    close(fd);
    errno = e;
    return SP_ESYS;
}

/* Remove a unix socket file nobody listens on any more.  Leaves anything
 * that is not a socket, and a socket with a live listener, in place (the
 * bind then fails with EADDRINUSE). */
static void unlink_stale_socket(const sp_addr_t *a)
{
    struct stat st;
    int fd, rc, e = errno;

    if (lstat(a->path, &st) != 0 || !S_ISSOCK(st.st_mode))
        goto out;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    rc = connect(fd, (const struct sockaddr *)&a->sa, a->salen);
    if (rc != 0 && errno == ECONNREFUSED)
        (void)unlink(a->path);
    close(fd);
out:
    errno = e;
}

int sp_addr_listen(sp_addr_t *a, int backlog)
{
    int fd, one = 1;

    if ((a->kind != SP_ADDR_TCP && a->kind != SP_ADDR_UNIX &&
         a->kind != SP_ADDR_SHM) ||
        a->salen == 0) {
        errno = EINVAL;
        return SP_EINVAL;
    }
    fd = socket(family_of(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SP_ESYS;
    if (a->kind == SP_ADDR_TCP) {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
            return close_keep_errno(fd);
        set_nodelay(fd);
    } else {
        unlink_stale_socket(a);
    }
    if (bind(fd, (const struct sockaddr *)&a->sa, a->salen) != 0)
        return close_keep_errno(fd);
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
        return close_keep_errno(fd);
    if (a->kind == SP_ADDR_TCP && a->port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
            return close_keep_errno(fd);
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            a->port = ntohs(in->sin_port);
            ((struct sockaddr_in *)&a->sa)->sin_port = in->sin_port;
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            a->port = ntohs(in6->sin6_port);
            ((struct sockaddr_in6 *)&a->sa)->sin6_port = in6->sin6_port;
        }
    }
    return fd;
}

int sp_addr_connect(const sp_addr_t *a)
{
    int fd;

    if ((a->kind != SP_ADDR_TCP && a->kind != SP_ADDR_UNIX &&
         a->kind != SP_ADDR_SHM) ||
        a->salen == 0) {
        errno = EINVAL;
        return SP_EINVAL;
    }
    fd = socket(family_of(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SP_ESYS;
    if (a->kind == SP_ADDR_TCP)
        set_nodelay(fd);
    /* EINTR cannot happen on a non-blocking socket; if it did, the connect
     * would go on in the background (POSIX), just as with EINPROGRESS. */
    if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) == 0 ||
        errno == EINPROGRESS || errno == EINTR)
        return fd;
    return close_keep_errno(fd);
}

int sp_net_connect_result(int fd)
{
    int e = 0;
    socklen_t el = sizeof(e);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
        return SP_ESYS;
    if (e != 0) {
        errno = e;
        return SP_ESYS;
    }
    /* SO_ERROR is also 0 while the connect is still in progress (the
     * caller asked too early) or after its error was already fetched. */
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return SP_ESYS;
    return 0;
}

int sp_net_accept(int lfd)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd;

    for (;;) {
        sl = sizeof(ss);
        fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SP_EAGAIN;
        /* A connection reset before we took it, or a signal: try the next
         * one (the caller loops until SP_EAGAIN anyway). */
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        return SP_ESYS;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
        set_nodelay(fd);
    return fd;
}
