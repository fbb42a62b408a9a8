/*
 * sp_net.h - link endpoint addresses and sockets.
 *
 * Address syntax (configuration files of both binaries):
 *   tcp://HOST:PORT      HOST a name, an IPv4 address or [IPv6]; PORT 0 in a
 *                        listener means "pick one" (tests)
 *   unix:/abs/path       a Unix stream socket
 *   shm:/abs/path        a shared-memory link's rendezvous socket
 *
 * Sockets made here are non-blocking and close-on-exec; TCP ones have
 * TCP_NODELAY.  Nothing here logs; failures return SP_E* with a message
 * in err where a caller passes one.
 */
#ifndef SP_NET_H
#define SP_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum sp_addr_kind { SP_ADDR_TCP = 1, SP_ADDR_UNIX = 2, SP_ADDR_SHM = 3 };

typedef struct sp_addr {
    int kind;
    char host[256];  /* tcp: as written, without brackets */
    uint16_t port;   /* tcp */
    char path[108];  /* unix, shm */
    struct sockaddr_storage sa; /* resolved (tcp; unix, shm: AF_UNIX) */
    socklen_t salen;
} sp_addr_t;

/* Parse and resolve.  0, or SP_EINVAL with a reason in err. */
int sp_addr_parse(const char *s, sp_addr_t *a, char *err, size_t errlen);

/* "tcp://127.0.0.1:8080", "unix:/run/x.sock" (for logs). */
const char *sp_addr_format(const sp_addr_t *a, char *buf, size_t len);

/* 1 for unix:, shm:, and tcp: bound to a loopback address (127.0.0.0/8,
 * ::1); 0 otherwise (such a listener requires authentication). */
int sp_addr_is_local(const sp_addr_t *a);

/* Listening socket (SO_REUSEADDR; a stale unix socket file is removed
 * first; shm: listens on a Unix socket at its path, the rendezvous).
 * Returns the fd, or SP_ESYS with errno set.  For tcp port 0 the chosen port is written back to
 * a->port. */
int sp_addr_listen(sp_addr_t *a, int backlog);

/* Start a non-blocking connect.  Returns the fd (connected or in
 * progress: wait for writability, then sp_net_connect_result()), or
 * SP_ESYS with errno set.  unix: and shm: connect at once or fail. */
int sp_addr_connect(const sp_addr_t *a);

/* After a non-blocking connect became writable: 0 if connected, else
 * SP_ESYS with errno set to the connect error. */
int sp_net_connect_result(int fd);

/* Accept one connection (non-blocking, close-on-exec, TCP_NODELAY).  fd,
 * SP_EAGAIN, or SP_ESYS. */
int sp_net_accept(int lfd);

#endif /* SP_NET_H */
