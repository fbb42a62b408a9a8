/*
 * sp_shmlink.c - a link's byte stream over two shared-memory rings (see
 * sp_shmlink.h).
 */
#include "sp_shmlink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_atomic.h"

#define RING_MAGIC 0x53505368u /* "SPSh" */
#define MSG_MAGIC "SPSHMLK"    /* 8 bytes with its NUL */
#define MSG_VERSION 1u

/* The shared header of one ring: counters and flags on lines of their
 * own so that the producer's and the consumer's stores do not share one. */
typedef struct ring_hdr {
    uint32_t magic;
    uint32_t size;
    uint8_t pad0[SP_CACHELINE - 8];
    uint64_t head; /* producer */
    uint8_t pad1[SP_CACHELINE - 8];
    uint64_t tail; /* consumer */
    uint8_t pad2[SP_CACHELINE - 8];
    uint32_t rd_waiting; /* consumer sleeps for data */
    uint32_t wr_waiting; /* producer sleeps for room */
    uint8_t pad3[SP_CACHELINE - 8];
} ring_hdr_t;

_Static_assert(sizeof(ring_hdr_t) == 4 * SP_CACHELINE, "ring header");

typedef struct ring {
    ring_hdr_t *h;
    uint8_t *data;
    uint32_t size;
    uint64_t pos; /* our own head (out) or tail (in); never read back */
    size_t maplen;
} ring_t;

/* The connect message and its answer (with one fd: the ring's memfd). */
typedef struct shm_msg {
    char magic[8];
    uint32_t version;
    uint32_t ring_size;
} shm_msg_t;

struct sp_shmlink {
    int ctl; /* the rendezvous socket: the pollable fd, wake-ups, EOF */
    int client;
    int ready; /* both rings mapped */
    int eof;   /* the peer closed its end of ctl */
    uint32_t ring_size;
    ring_t out, in;
    char err[160];
};

static ssize_t proto(sp_shmlink_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static ssize_t proto(sp_shmlink_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    errno = EPROTO;
    return -1;
}

static int ring_size_ok(uint32_t n)
{
    return n >= SP_SHMLINK_RING_MIN && n <= SP_SHMLINK_RING_MAX &&
           (n & (n - 1)) == 0;
}

static void ring_unmap(ring_t *r)
{
    if (r->h != NULL)
        munmap(r->h, r->maplen);
    memset(r, 0, sizeof(*r));
}

/* Our outgoing ring in a fresh sealed memfd.  Returns the memfd (to send;
 * the mapping stays when it is closed) or -1 with errno. */
static int ring_make(ring_t *r, uint32_t size)
{
    size_t len = sizeof(ring_hdr_t) + size;
    int fd = memfd_create("slotproxy-link", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    /* Sealed against shrinking: the peer maps it too and could otherwise
     * make our accesses fault (and we its). */
    if (ftruncate(fd, (off_t)len) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    r->h = p;
    r->data = (uint8_t *)p + sizeof(ring_hdr_t);
    r->size = size;
    r->pos = 0;
    r->maplen = len;
    r->h->magic = RING_MAGIC;
    r->h->size = size;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* Map the peer's ring from the memfd it sent. */
static int ring_map_peer(sp_shmlink_t *s, ring_t *r, int fd, uint32_t size)
{
    size_t len = sizeof(ring_hdr_t) + size;
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);

    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return (int)proto(s, "the peer's ring is not sealed against "
                             "shrinking");
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)len)
        return (int)proto(s, "the peer's ring is smaller than it says");
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) /* e.g. a ring sealed against writing */
        return (int)proto(s, "cannot map the peer's ring: %s",
                          strerror(errno));
    r->h = p;
    r->data = (uint8_t *)p + sizeof(ring_hdr_t);
    r->size = size;
    r->maplen = len;
    if (sp_load_relaxed(&r->h->magic) != RING_MAGIC ||
        sp_load_relaxed(&r->h->size) != size) {
        ring_unmap(r);
        return (int)proto(s, "the peer's ring has a bad header");
    }
    r->pos = sp_load_acquire(&r->h->tail);
    return 0;
}

static int msg_send(int ctl, uint32_t ring_size, int fd)
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
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

    memset(&m, 0, sizeof(m));
    memcpy(m.magic, MSG_MAGIC, sizeof(m.magic));
    m.version = MSG_VERSION;
    m.ring_size = ring_size;
    memset(u.buf, 0, sizeof(u.buf));
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(fd));
    memcpy(CMSG_DATA(c), &fd, sizeof(fd));
    ssize_t n = sendmsg(ctl, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)sizeof(m))
        return 0;
    if (n >= 0) /* a fresh socket takes 16 bytes whole */
        errno = EIO;
    return -1;
}

/* The peer's message: 1 with m and *fd filled, 0 at EOF, -1 with errno
 * (EAGAIN: not yet; EPROTO: malformed, reason in s->err). */
static int msg_recv(sp_shmlink_t *s, shm_msg_t *m, int *fd)
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
    int got[4], ngot = 0;

    *fd = -1;
    ssize_t n = recvmsg(s->ctl, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k && ngot < 4; i++)
                memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int),
                       sizeof(int));
        }
    if (n != (ssize_t)sizeof(*m) || ngot != 1 ||
        (mh.msg_flags & MSG_CTRUNC) ||
        memcmp(m->magic, MSG_MAGIC, sizeof(m->magic)) != 0) {
        for (int i = 0; i < ngot; i++)
            close(got[i]);
        return (int)proto(s, "not a shm: link connect message (%zd bytes, "
                             "%d descriptors)",
                          n, ngot);
    }
    *fd = got[0];
    if (m->version != MSG_VERSION || !ring_size_ok(m->ring_size)) {
        close(*fd);
        *fd = -1;
        return (int)proto(s, "shm: link message version %u, ring size %u "
                             "not supported",
                          m->version, m->ring_size);
    }
    return 1;
}

/* A wake-up is a byte on the socket.  MSG_DONTWAIT makes this one call
 * non-blocking whatever the peer does with its end: a peer that never
 * reads fills its buffer, and then it has wake-ups pending anyway. */
static void wake_peer(sp_shmlink_t *s)
{
    ssize_t w = send(s->ctl, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w; /* EAGAIN: already woken; EPIPE: gone, EOF tells */
}

static sp_shmlink_t *shmlink_new(int ctl, int client, uint32_t ring_size,
                                 char *err, size_t errlen)
{
    sp_shmlink_t *s;

    if (!ring_size_ok(ring_size)) {
        snprintf(err, errlen, "ring size %u is not a power of two in "
                              "4K..64M",
                 ring_size);
        errno = EINVAL;
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->ctl = ctl;
    s->client = client;
    s->ring_size = ring_size;
    return s;
}

sp_shmlink_t *sp_shmlink_client(int ctl, uint32_t ring_size, char *err,
                                size_t errlen)
{
    sp_shmlink_t *s = shmlink_new(ctl, 1, ring_size, err, errlen);
    if (s == NULL)
        return NULL;
    int mfd = ring_make(&s->out, ring_size);
    if (mfd < 0 || msg_send(ctl, ring_size, mfd) < 0) {
        int e = errno;
        snprintf(err, errlen, "shm: link connect: %s", strerror(e));
        if (mfd >= 0)
            close(mfd);
        s->ctl = -1; /* stays the caller's */
        sp_shmlink_free(s);
        errno = e;
        return NULL;
    }
    close(mfd); /* the mapping stays */
    return s;
}

sp_shmlink_t *sp_shmlink_server(int ctl, uint32_t ring_size, char *err,
                                size_t errlen)
{
    return shmlink_new(ctl, 0, ring_size, err, errlen);
}

/* The peer's message, when !ready: map its ring; a server answers with
 * its own.  1 when ready now; 0 at EOF; -1 with errno (EAGAIN: no message
 * yet; EPROTO: a bad one). */
static ssize_t rendezvous(sp_shmlink_t *s)
{
    shm_msg_t m;
    int fd;
    int rc = msg_recv(s, &m, &fd);
    if (rc <= 0)
        return rc; /* EOF, EAGAIN, EPROTO */
    rc = ring_map_peer(s, &s->in, fd, m.ring_size);
    int e = errno;
    close(fd); /* the mapping stays */
    if (rc < 0) {
        errno = e;
        return -1;
    }
    if (!s->client) {
        int mfd = ring_make(&s->out, s->ring_size);
        if (mfd < 0)
            return -1;
        rc = msg_send(s->ctl, s->ring_size, mfd);
        e = errno;
        close(mfd);
        /* A client already gone (EPIPE, ECONNRESET) cannot take the
         * answer, but what it wrote before it went is still to be read:
         * go on, and the read reports EOF after it. */
        if (rc < 0 && e != EPIPE && e != ECONNRESET) {
            errno = e;
            return -1;
        }
    }
    s->ready = 1;
    return 1;
}

int sp_shmlink_fd(const sp_shmlink_t *s)
{
    return s->ctl;
}

const char *sp_shmlink_err(const sp_shmlink_t *s)
{
    return s->err;
}

/* Take the wake-up bytes off the socket, down to EAGAIN, noting EOF (a
 * close behind the bytes is seen now, not one wake-up later).  A peer
 * that keeps sending cannot hold us here: after 16 full reads we stop,
 * and what is left keeps the socket readable.  0, or -1 with errno for a
 * socket error. */
static int drain_ctl(sp_shmlink_t *s)
{
    char buf[256];
    for (int full = 0; full < 16;) {
        ssize_t n = recv(s->ctl, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == (ssize_t)sizeof(buf))
            full++;
        if (n > 0)
            continue;
        if (n == 0 || errno == ECONNRESET) {
            s->eof = 1;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

ssize_t sp_shmlink_read(sp_shmlink_t *s, void *buf, size_t cap)
{
    if (!s->ready) {
        ssize_t rc = rendezvous(s);
        if (rc <= 0)
            return rc;
    }
    ring_t *r = &s->in;
    uint64_t head = sp_load_acquire(&r->h->head);
    uint64_t avail = head - r->pos;
    if (avail == 0) {
        /* Take the wake-ups (and a close) first, then raise the flag and
         * look again: a wake-up sent after this drain stays queued on
         * the socket (readable again: nothing is lost), and a close seen
         * here is looked past: the peer's last bytes, written before it
         * closed, are visible to the load below. */
        if (drain_ctl(s) < 0)
            return -1;
        sp_store_relaxed(&r->h->rd_waiting, 1);
        sp_fence_full();
        head = sp_load_acquire(&r->h->head);
        avail = head - r->pos;
        if (avail == 0) {
            if (s->eof)
                return 0;
            errno = EAGAIN;
            return -1;
        }
        (void)sp_xchg(&r->h->rd_waiting, 0);
    }
    if (avail > r->size)
        return proto(s, "the peer's ring head is out of range");
    size_t n = avail < cap ? (size_t)avail : cap;
    size_t off = (size_t)(r->pos & (r->size - 1));
    size_t first = r->size - off < n ? r->size - off : n;
    memcpy(buf, r->data + off, first);
    memcpy((uint8_t *)buf + first, r->data, n - first);
    r->pos += n;
    sp_store_release(&r->h->tail, r->pos);
    sp_fence_full();
    if (sp_load_relaxed(&r->h->wr_waiting) && sp_xchg(&r->h->wr_waiting, 0))
        wake_peer(s);
    return (ssize_t)n;
}

ssize_t sp_shmlink_write(sp_shmlink_t *s, const void *buf, size_t len)
{
    ring_t *r = &s->out;
    if (r->h == NULL) { /* a server before the connect message */
        errno = EAGAIN;
        return -1;
    }
    uint64_t used = r->pos - sp_load_acquire(&r->h->tail);
    if (used > r->size)
        return proto(s, "the peer's ring tail is out of range");
    if (used == r->size) {
        sp_store_relaxed(&r->h->wr_waiting, 1);
        sp_fence_full();
        used = r->pos - sp_load_acquire(&r->h->tail);
        if (used > r->size)
            return proto(s, "the peer's ring tail is out of range");
        if (used == r->size) {
            errno = EAGAIN;
            return -1;
        }
        (void)sp_xchg(&r->h->wr_waiting, 0);
    }
    size_t room = (size_t)(r->size - used);
    size_t n = len < room ? len : room;
    size_t off = (size_t)(r->pos & (r->size - 1));
    size_t first = r->size - off < n ? r->size - off : n;
    memcpy(r->data + off, buf, first);
    memcpy(r->data, (const uint8_t *)buf + first, n - first);
    r->pos += n;
    sp_store_release(&r->h->head, r->pos);
    sp_fence_full();
    if (sp_load_relaxed(&r->h->rd_waiting) && sp_xchg(&r->h->rd_waiting, 0))
        wake_peer(s);
    return (ssize_t)n;
}

void sp_shmlink_free(sp_shmlink_t *s)
{
    if (s == NULL)
        return;
    if (s->ctl >= 0)
        close(s->ctl);
    ring_unmap(&s->out);
    ring_unmap(&s->in);
    free(s);
}

void sp_shmlink_drop(sp_shmlink_t *s)
{
    /* The child neither needs nor may touch the rings (a worker runs
     * application code): unmap them too. */
    if (s == NULL)
        return;
    if (s->ctl >= 0)
        close(s->ctl);
    s->ctl = -1;
    ring_unmap(&s->out);
    ring_unmap(&s->in);
}
