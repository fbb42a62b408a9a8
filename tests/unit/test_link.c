/*
 * test_link.c - links (sp_link.c) and the handshake proofs (sp_auth.c).
 *
 * Two links run in this one process over a socketpair (or real TCP and
 * unix sockets from sp_net.c), driven by alternating sp_link_on_readable
 * and sp_link_flush; a "raw" peer - plain frames written with the codec -
 * plays the other side where a test needs a peer that misbehaves in one
 * precise way.  Stream traffic goes through a relay that feeds the
 * receiver its bytes in random small pieces, so every frame boundary falls
 * everywhere.  Random inputs are seeded and reproducible.
 *
 * Cases: auth (known-answer HMAC vector, nonces, secret files), link
 * (handshake with and without secrets, every refusal, PING/PONG, GOAWAY,
 * ordered delivery across partial reads, limits, garbage, truncation, the
 * soft limit, dead peers without SIGPIPE, real sockets), shm (the same
 * link over a shm: link's rings - sp_link_init_shm - with the handshake,
 * stream frames larger than the ring moved by readability alone, the
 * peer's close, a malformed rendezvous socket, and sp_link_drop in a
 * forked child).
 */
#include "sp_unit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_auth.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "sp_link.h"
#include "sp_net.h"
#include "sp_proc.h"
#include "sp_shmlink.h"

/* ---- helpers ---------------------------------------------------------- */

#define SECRET_A "correct horse battery staple"
#define SECRET_B "another secret, same length.."

static uint64_t mix(uint64_t x)
{
    /* splitmix64: frame k's shape, the same on both ends */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static sp_link_config_t config(const char *secret, const char *node)
{
    sp_link_config_t c;
    memset(&c, 0, sizeof(c));
    c.secret = (const uint8_t *)secret;
    c.secret_len = secret ? strlen(secret) : 0;
    c.max_payload = SP_FRAME_MAX_PAYLOAD_DEFAULT;
    c.initial_window = 262144;
    c.max_streams = 64;
    c.node = node;
    return c;
}

static void mkpair(int sv[2])
{
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
}

static void wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
}

/* A recorder of delivered stream frames. */
typedef struct rec {
    int n;
    uint8_t type[64];
    uint32_t stream[64], gen[64], len[64];
    uint8_t first[64]; /* first payload byte, 0 if none */
    int fail_at;       /* return SP_EINVAL at this frame (1-based) */
} rec_t;

static int rec_fn(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    rec_t *r = arg;
    (void)l;
    if (r->fail_at && r->n + 1 == r->fail_at)
        return SP_EINVAL;
    if (r->n < 64) {
        r->type[r->n] = f->hdr.type;
        r->stream[r->n] = f->hdr.stream;
        r->gen[r->n] = f->hdr.gen;
        r->len[r->n] = f->hdr.len;
        r->first[r->n] = f->hdr.len ? f->payload[0] : 0;
    }
    r->n++;
    return 0;
}

/* One end driven by pump(). */
typedef struct side {
    sp_link_t *l;
    sp_link_frame_fn fn;
    void *arg;
    int rc;          /* first error of on_readable / flush */
    int flushed_out; /* the one flush after CLOSED happened */
} side_t;

static uint64_t activity(const sp_link_t *l)
{
    return l->frames_in + l->frames_out + l->bytes_in + l->bytes_out +
           (uint64_t)l->state;
}

static void step(side_t *s)
{
    int rc;
    if (s->l->state != SP_LINK_CLOSED) {
        rc = sp_link_on_readable(s->l, s->fn, s->arg);
        if (rc < 0 && s->rc == 0)
            s->rc = rc;
    }
    if (s->l->ibuf == NULL || s->flushed_out)
        return;
    if (s->l->state == SP_LINK_CLOSED)
        s->flushed_out = 1;
    rc = sp_link_flush(s->l);
    if (rc < 0 && rc != SP_EAGAIN && s->rc == 0)
        s->rc = rc;
}

/* Alternate both ends until nothing moves any more. */
static void pump(side_t *a, side_t *b)
{
    for (int i = 0; i < 10000; i++) {
        uint64_t before = activity(a->l) + activity(b->l);
        step(a);
        step(b);
        if (activity(a->l) + activity(b->l) == before)
            return;
    }
    ck_abort_msg("pump: no quiescence");
}

/* A client and a server link over one socketpair, handshake pumped. */
typedef struct duo {
    sp_link_t c, s;
    sp_link_config_t cc, sc;
    rec_t cr, sr;
    side_t cs, ss;
} duo_t;

static void duo_start(duo_t *d, const char *csecret, const char *ssecret)
{
    int sv[2];
    memset(d, 0, sizeof(*d));
    mkpair(sv);
    d->cc = config(csecret, "proxy-1");
    d->sc = config(ssecret, "backend-1");
    d->sc.max_payload = 32768;
    d->sc.initial_window = 131072;
    d->sc.max_streams = 16;
    ck_assert_int_eq(sp_link_init(&d->c, sv[0], 1, &d->cc), 0);
    ck_assert_int_eq(sp_link_init(&d->s, sv[1], 0, &d->sc), 0);
    ck_assert_int_eq(d->c.state, SP_LINK_HELLO_SENT);
    ck_assert_int_eq(d->s.state, SP_LINK_WAIT_HELLO);
    ck_assert_uint_gt(sp_link_pending(&d->c), 0); /* the HELLO */
    ck_assert_uint_eq(sp_link_pending(&d->s), 0);
    d->cs = (side_t){&d->c, rec_fn, &d->cr, 0, 0};
    d->ss = (side_t){&d->s, rec_fn, &d->sr, 0, 0};
    pump(&d->cs, &d->ss);
}

static void duo_up(duo_t *d, const char *csecret, const char *ssecret)
{
    duo_start(d, csecret, ssecret);
    ck_assert_msg(d->c.state == SP_LINK_UP, "client %d: %s", d->c.state,
                  d->c.err);
    ck_assert_msg(d->s.state == SP_LINK_UP, "server %d: %s", d->s.state,
                  d->s.err);
    ck_assert_int_eq(d->cs.rc, 0);
    ck_assert_int_eq(d->ss.rc, 0);
}

static void duo_free(duo_t *d)
{
    sp_link_free(&d->c);
    sp_link_free(&d->s);
}

/* ---- raw peer --------------------------------------------------------- */

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EAGAIN) {
            wait_fd(fd, POLLOUT);
            continue;
        }
        ck_assert_int_gt(w, 0);
        b += w;
        n -= (size_t)w;
    }
}

static void raw_send(int fd, uint8_t type, uint32_t stream, uint32_t gen,
                     const void *p, uint32_t len)
{
    static uint8_t buf[SP_FRAME_HDR_SIZE + SP_FRAME_MAX_PAYLOAD_DEFAULT];
    int n = sp_frame_encode(buf, sizeof(buf), type, 0, stream, gen, p, len);
    ck_assert_int_gt(n, 0);
    write_all(fd, buf, (size_t)n);
}

static void raw_hdr(int fd, uint8_t ver, uint8_t type, uint16_t flags,
                    uint32_t stream, uint32_t gen, uint32_t len)
{
    uint8_t b[SP_FRAME_HDR_SIZE];
    sp_frame_hdr_t h = {ver, type, flags, stream, gen, len};
    sp_frame_hdr_encode(&h, b);
    write_all(fd, b, sizeof(b));
}

static int read_exact(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, 2000) != 1)
                return -1;
            continue;
        }
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Read one frame into buf; -1 on EOF or timeout. */
static int raw_recv(int fd, sp_frame_t *f, uint8_t *buf, size_t cap)
{
    if (read_exact(fd, buf, SP_FRAME_HDR_SIZE) != 0)
        return -1;
    const sp_frame_limits_t lim = {SP_FRAME_MAX_PAYLOAD_CEIL};
    ck_assert_int_eq(sp_frame_hdr_decode(buf, SP_FRAME_HDR_SIZE, &lim, &f->hdr),
                     0);
    ck_assert_uint_le(SP_FRAME_HDR_SIZE + f->hdr.len, cap);
    if (read_exact(fd, buf + SP_FRAME_HDR_SIZE, f->hdr.len) != 0)
        return -1;
    f->payload = buf + SP_FRAME_HDR_SIZE;
    return 0;
}

/* Skip frames up to a GOAWAY and check its code; it must be there. */
static void raw_expect_goaway(int fd, uint32_t code)
{
    uint8_t buf[SP_FRAME_HDR_SIZE + SP_FRAME_CTL_MAX];
    sp_frame_t f;
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(raw_recv(fd, &f, buf, sizeof(buf)), 0);
        if (f.hdr.type != SP_FT_GOAWAY)
            continue;
        sp_goaway_t g;
        ck_assert_int_eq(sp_goaway_decode(f.payload, f.hdr.len, &g), 0);
        ck_assert_msg(g.code == code, "GOAWAY %u, want %u", g.code, code);
        return;
    }
    ck_abort_msg("no GOAWAY");
}

static void raw_hello(int fd, uint16_t minv, uint16_t maxv,
                      const uint8_t nonce[SP_NONCE_SIZE])
{
    uint8_t pl[256];
    sp_hello_t h;
    memset(&h, 0, sizeof(h));
    h.min_version = minv;
    h.max_version = maxv;
    h.max_payload = SP_FRAME_MAX_PAYLOAD_DEFAULT;
    h.initial_window = 65536;
    h.max_streams = 4;
    memcpy(h.nonce, nonce, SP_NONCE_SIZE);
    h.node = (sp_str_t){"raw", 3};
    int n = sp_hello_encode(&h, pl, sizeof(pl));
    ck_assert_int_gt(n, 0);
    raw_send(fd, SP_FT_HELLO, 0, 0, pl, (uint32_t)n);
}

/* A server link on sv[1], a raw client on sv[0]. */
typedef struct rawduo {
    int raw;
    sp_link_t s;
    sp_link_config_t sc;
    rec_t sr;
    uint8_t nonce_c[SP_NONCE_SIZE];
    sp_hello_ack_t ack;
    uint8_t ackbuf[SP_FRAME_HDR_SIZE + SP_FRAME_CTL_MAX];
} rawduo_t;

static void rawduo_start(rawduo_t *d, const char *ssecret, uint32_t max_payload)
{
    int sv[2];
    memset(d, 0, sizeof(*d));
    mkpair(sv);
    d->raw = sv[0];
    d->sc = config(ssecret, "backend-raw");
    d->sc.max_payload = max_payload;
    ck_assert_int_eq(sp_link_init(&d->s, sv[1], 0, &d->sc), 0);
    for (int i = 0; i < SP_NONCE_SIZE; i++)
        d->nonce_c[i] = (uint8_t)(0xa0 + i);
}

static int srv_read(rawduo_t *d)
{
    int rc = sp_link_on_readable(&d->s, rec_fn, &d->sr);
    int fr = sp_link_flush(&d->s);
    ck_assert(fr == 0 || fr == SP_EAGAIN || d->s.state == SP_LINK_CLOSED);
    return rc;
}

/* HELLO, read HELLO_ACK (server proof checked when we know the secret). */
static void rawduo_hello(rawduo_t *d, const char *ssecret)
{
    sp_frame_t f;
    raw_hello(d->raw, 1, 1, d->nonce_c);
    ck_assert_int_eq(srv_read(d), 0);
    ck_assert_int_eq(d->s.state, SP_LINK_WAIT_AUTH);
    ck_assert_int_eq(raw_recv(d->raw, &f, d->ackbuf, sizeof(d->ackbuf)), 0);
    ck_assert_int_eq(f.hdr.type, SP_FT_HELLO_ACK);
    ck_assert_int_eq(sp_hello_ack_decode(f.payload, f.hdr.len, &d->ack), 0);
    ck_assert_uint_eq(d->ack.version, SP_PROTO_VERSION);
    ck_assert_uint_eq(d->ack.max_payload, d->sc.max_payload);
    ck_assert_str_eq(d->ack.node.ptr, "backend-raw");
    ck_assert_str_eq(d->s.peer_node, "raw");
    if (ssecret)
        ck_assert(sp_auth_verify((const uint8_t *)ssecret, strlen(ssecret), 0,
                                 d->nonce_c, d->ack.nonce, d->ack.proof));
    else
        for (int i = 0; i < SP_PROOF_SIZE; i++)
            ck_assert_uint_eq(d->ack.proof[i], 0);
}

/* Send AUTH proving secret (NULL: the all-zero proof). */
static int rawduo_auth(rawduo_t *d, const char *secret)
{
    uint8_t proof[SP_PROOF_SIZE] = {0};
    if (secret)
        sp_auth_proof((const uint8_t *)secret, strlen(secret), 1, d->nonce_c,
                      d->ack.nonce, proof);
    raw_send(d->raw, SP_FT_AUTH, 0, 0, proof, SP_PROOF_SIZE);
    return srv_read(d);
}

static void rawduo_up(rawduo_t *d, const char *ssecret, uint32_t max_payload)
{
    rawduo_start(d, ssecret, max_payload);
    rawduo_hello(d, ssecret);
    ck_assert_int_eq(rawduo_auth(d, ssecret), 0);
    ck_assert_int_eq(d->s.state, SP_LINK_UP);
}

static void rawduo_free(rawduo_t *d)
{
    sp_link_free(&d->s);
    close(d->raw);
}

/* ---- auth ------------------------------------------------------------- */

static void unhex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

START_TEST(auth_known_answer)
{
    /* Computed independently (Python hmac/hashlib) from the documented
     * message: label, then nonce_c nonce_s (server) or nonce_s nonce_c
     * (client). */
    const uint8_t *k = (const uint8_t *)"0123456789abcdef0123";
    uint8_t nc[SP_NONCE_SIZE], ns[SP_NONCE_SIZE], p[SP_PROOF_SIZE];
    uint8_t want_s[SP_PROOF_SIZE], want_c[SP_PROOF_SIZE];
    for (int i = 0; i < SP_NONCE_SIZE; i++) {
        nc[i] = (uint8_t)i;
        ns[i] = (uint8_t)(32 + i);
    }
    unhex("5eb282d4d9b0b33c63b467e40bc44df3279691ab0846fd11045ed82a20756438",
          want_s, SP_PROOF_SIZE);
    unhex("6aad4a37f1818ade8b043caa054a36d5d0e2357a79ece4f3e01ee8af860bd2a8",
          want_c, SP_PROOF_SIZE);
    sp_auth_proof(k, 20, 0, nc, ns, p);
    ck_assert_mem_eq(p, want_s, SP_PROOF_SIZE);
    ck_assert_int_eq(sp_auth_verify(k, 20, 0, nc, ns, want_s), 1);
    sp_auth_proof(k, 20, 1, nc, ns, p);
    ck_assert_mem_eq(p, want_c, SP_PROOF_SIZE);
    ck_assert_int_eq(sp_auth_verify(k, 20, 1, nc, ns, want_c), 1);

    /* Wrong side (a reflected proof), other secret, swapped nonces, one
     * flipped bit anywhere: all refused. */
    ck_assert_int_eq(sp_auth_verify(k, 20, 1, nc, ns, want_s), 0);
    ck_assert_int_eq(sp_auth_verify(k, 20, 0, nc, ns, want_c), 0);
    ck_assert_int_eq(sp_auth_verify(k, 19, 0, nc, ns, want_s), 0);
    ck_assert_int_eq(sp_auth_verify(k, 20, 0, ns, nc, want_s), 0);
    for (int i = 0; i < SP_PROOF_SIZE * 8; i++) {
        memcpy(p, want_s, SP_PROOF_SIZE);
        p[i / 8] ^= (uint8_t)(1u << (i % 8));
        ck_assert_int_eq(sp_auth_verify(k, 20, 0, nc, ns, p), 0);
    }
    /* The all-zero proof of a secret-less side never verifies. */
    memset(p, 0, sizeof(p));
    ck_assert_int_eq(sp_auth_verify(k, 20, 0, nc, ns, p), 0);
}
END_TEST

START_TEST(auth_nonce)
{
    uint8_t a[SP_NONCE_SIZE], b[SP_NONCE_SIZE], z[SP_NONCE_SIZE] = {0};
    ck_assert_int_eq(sp_auth_nonce(a), 0);
    ck_assert_int_eq(sp_auth_nonce(b), 0);
    ck_assert(memcmp(a, b, SP_NONCE_SIZE) != 0);
    ck_assert(memcmp(a, z, SP_NONCE_SIZE) != 0);
}
END_TEST

static char sdir[64];

static const char *secret_file(const char *name, const void *data, size_t n,
                               mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", sdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    if (n)
        ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

static int load(const char *path, uint8_t *buf, size_t cap, size_t *len,
                char *err)
{
    memset(buf, 0, cap);
    return sp_auth_load_secret(path, buf, cap, len, err, 256);
}

START_TEST(auth_load_secret)
{
    uint8_t buf[SP_SECRET_MAX + 8], big[SP_SECRET_MAX + 4];
    char err[256];
    size_t len = 99;

    snprintf(sdir, sizeof(sdir), "/tmp/sp_auth_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(sdir));

    ck_assert_int_eq(load(secret_file("a", "0123456789abcdef\n", 17, 0600), buf,
                          sizeof(buf), &len, err),
                     0);
    ck_assert_uint_eq(len, 16);
    ck_assert_mem_eq(buf, "0123456789abcdef", 16);
    ck_assert_int_eq(load(secret_file("b", "0123456789abcdefXY\r\n", 20, 0640),
                          buf, sizeof(buf), &len, err),
                     0);
    ck_assert_uint_eq(len, 18);
    ck_assert_mem_eq(buf, "0123456789abcdefXY", 18);
    /* Only one newline goes; binary bytes stay. */
    ck_assert_int_eq(load(secret_file("c", "0123456789abcde\0\n\n", 18, 0400),
                          buf, sizeof(buf), &len, err),
                     0);
    ck_assert_uint_eq(len, 17);
    ck_assert_mem_eq(buf, "0123456789abcde\0\n", 17);
    /* Without a newline. */
    ck_assert_int_eq(load(secret_file("d", "0123456789abcdef", 16, 0600), buf,
                          sizeof(buf), &len, err),
                     0);
    ck_assert_uint_eq(len, 16);

    /* Too short: 15 bytes, with or without a newline; empty. */
    len = 99;
    ck_assert_int_eq(load(secret_file("e", "0123456789abcde\n", 16, 0600), buf,
                          sizeof(buf), &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "holds 15 bytes, at least 16"));
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(
        load(secret_file("f", "", 0, 0600), buf, sizeof(buf), &len, err),
        SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "holds 0 bytes"));

    /* SP_SECRET_MAX is fine (with its newline too), one more is not. */
    memset(big, 'k', sizeof(big));
    big[SP_SECRET_MAX] = '\n';
    ck_assert_int_eq(load(secret_file("g", big, SP_SECRET_MAX + 1, 0600), buf,
                          sizeof(buf), &len, err),
                     0);
    ck_assert_uint_eq(len, SP_SECRET_MAX);
    memset(big, 'k', sizeof(big));
    ck_assert_int_eq(load(secret_file("h", big, SP_SECRET_MAX + 1, 0600), buf,
                          sizeof(buf), &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "over the limit of 1024"));
    ck_assert_int_eq(load(secret_file("i", big, sizeof(big), 0600), buf,
                          sizeof(buf), &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "over the limit"));
    /* A buffer too small for a valid secret. */
    ck_assert_int_eq(load(secret_file("j", big, 100, 0600), buf, 50, &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "do not fit"));

    /* Readable or writable by others: refused whatever it holds. */
    ck_assert_int_eq(load(secret_file("k", "0123456789abcdef", 16, 0604), buf,
                          sizeof(buf), &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "accessible by others (mode 0604)"));
    ck_assert_int_eq(load(secret_file("l", "0123456789abcdef", 16, 0602), buf,
                          sizeof(buf), &len, err),
                     SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "accessible by others"));
    ck_assert_int_eq(load(secret_file("m", "0123456789abcdef", 16, 0660), buf,
                          sizeof(buf), &len, err),
                     0);

    /* Missing, a directory. */
    char p[128];
    snprintf(p, sizeof(p), "%s/none", sdir);
    ck_assert_int_eq(load(p, buf, sizeof(buf), &len, err), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    ck_assert_int_eq(load(sdir, buf, sizeof(buf), &len, err), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    /* No err buffer. */
    ck_assert_int_eq(sp_auth_load_secret(p, buf, sizeof(buf), &len, NULL, 0),
                     SP_EINVAL);

    const char *names = "abcdefghijklm";
    for (const char *n = names; *n; n++) {
        snprintf(p, sizeof(p), "%s/%c", sdir, *n);
        unlink(p);
    }
    ck_assert_int_eq(rmdir(sdir), 0);
}
END_TEST

/* ---- handshake -------------------------------------------------------- */

START_TEST(link_handshake_plain)
{
    duo_t d;
    duo_up(&d, NULL, NULL);
    /* Each side learned the other's limits and name. */
    ck_assert_uint_eq(d.c.peer_max_payload, 32768);
    ck_assert_uint_eq(d.c.peer_initial_window, 131072);
    ck_assert_uint_eq(d.c.peer_max_streams, 16);
    ck_assert_str_eq(d.c.peer_node, "backend-1");
    ck_assert_uint_eq(d.s.peer_max_payload, SP_FRAME_MAX_PAYLOAD_DEFAULT);
    ck_assert_uint_eq(d.s.peer_initial_window, 262144);
    ck_assert_uint_eq(d.s.peer_max_streams, 64);
    ck_assert_str_eq(d.s.peer_node, "proxy-1");
    ck_assert_mem_eq(d.c.nonce_c, d.s.nonce_c, SP_NONCE_SIZE);
    ck_assert_mem_eq(d.c.nonce_s, d.s.nonce_s, SP_NONCE_SIZE);
    ck_assert(memcmp(d.c.nonce_c, d.c.nonce_s, SP_NONCE_SIZE) != 0);
    ck_assert_int_eq(sp_link_usable(&d.c), 1);
    ck_assert_int_eq(sp_link_usable(&d.s), 1);
    /* HELLO + AUTH one way, HELLO_ACK the other. */
    ck_assert_uint_eq(d.c.frames_out, 2);
    ck_assert_uint_eq(d.s.frames_in, 2);
    ck_assert_uint_eq(d.s.frames_out, 1);
    ck_assert_uint_eq(d.c.frames_in, 1);
    ck_assert_uint_eq(d.c.bytes_out, d.s.bytes_in);
    ck_assert_uint_eq(d.s.bytes_out, d.c.bytes_in);
    ck_assert_int_eq(d.cr.n + d.sr.n, 0); /* link frames stay inside */
    ck_assert_int_gt(d.s.last_rx_ns, 0);

    /* Streams flow both ways. */
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 3, 9, "abc", 3), 0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_BODY, 3, 9, "xy", 2), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 1);
    ck_assert_int_eq(d.sr.type[0], SP_FT_BODY);
    ck_assert_uint_eq(d.sr.stream[0], 3);
    ck_assert_uint_eq(d.sr.gen[0], 9);
    ck_assert_uint_eq(d.sr.len[0], 3);
    ck_assert_uint_eq(d.sr.first[0], 'a');
    ck_assert_int_eq(d.cr.n, 1);
    ck_assert_uint_eq(d.cr.len[0], 2);
    ck_assert_uint_eq(d.cr.first[0], 'x');
    duo_free(&d);
}
END_TEST

START_TEST(link_handshake_secret)
{
    duo_t d;
    duo_up(&d, SECRET_A, SECRET_A);
    ck_assert_int_eq(sp_link_usable(&d.c), 1);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_END, 1, 1, NULL, 0), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 1);
    ck_assert_int_eq(d.sr.type[0], SP_FT_END);
    duo_free(&d);

    /* A raw client that computes the proof itself gets in too, and the
     * server's proof checks out with sp_auth_verify (done in
     * rawduo_hello). */
    rawduo_t r;
    rawduo_up(&r, SECRET_A, 65536);
    raw_send(r.raw, SP_FT_BODY, 1, 2, "z", 1);
    ck_assert_int_eq(srv_read(&r), 0);
    ck_assert_int_eq(r.sr.n, 1);
    rawduo_free(&r);
}
END_TEST

START_TEST(link_wrong_secret_client_detects)
{
    /* The server proves SECRET_B; the client knows SECRET_A. */
    duo_t d;
    duo_start(&d, SECRET_A, SECRET_B);
    ck_assert_int_eq(d.cs.rc, SP_EAUTH);
    ck_assert_int_eq(d.c.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(d.c.err, "HELLO_ACK proof does not match"));
    ck_assert_uint_eq(d.c.goaway_tx, SP_GOAWAY_AUTH + 1);
    /* The server got GOAWAY(AUTH) instead of AUTH. */
    ck_assert_int_eq(d.ss.rc, SP_EAUTH);
    ck_assert_int_eq(d.s.state, SP_LINK_CLOSED);
    ck_assert_uint_eq(d.s.goaway_rx, SP_GOAWAY_AUTH + 1);
    ck_assert_ptr_nonnull(strstr(d.s.err, "refused authentication"));
    ck_assert_ptr_nonnull(strstr(d.s.err, "WAIT_AUTH"));
    ck_assert_int_eq(sp_link_usable(&d.c), 0);
    ck_assert_int_eq(d.cr.n + d.sr.n, 0);
    /* Closed links refuse everything but free. */
    ck_assert_int_eq(sp_link_on_readable(&d.c, rec_fn, &d.cr), SP_ESTATE);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "x", 1), SP_ESTATE);
    ck_assert_int_eq(sp_link_send_goaway(&d.c, 0, NULL), SP_ESTATE);
    duo_free(&d);
}
END_TEST

START_TEST(link_wrong_secret_server_detects)
{
    /* The raw client accepts the server's proof (it knows SECRET_A) but
     * proves SECRET_B. */
    rawduo_t r;
    rawduo_start(&r, SECRET_A, 65536);
    rawduo_hello(&r, SECRET_A);
    ck_assert_int_eq(rawduo_auth(&r, SECRET_B), SP_EAUTH);
    ck_assert_int_eq(r.s.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(r.s.err, "AUTH proof does not match"));
    raw_expect_goaway(r.raw, SP_GOAWAY_AUTH);
    /* Frames the client pipelined after its AUTH are never delivered. */
    raw_send(r.raw, SP_FT_BODY, 1, 1, "x", 1);
    ck_assert_int_eq(srv_read(&r), SP_ESTATE);
    ck_assert_int_eq(r.sr.n, 0);
    rawduo_free(&r);

    /* The all-zero proof against a secret: refused as well. */
    rawduo_start(&r, SECRET_A, 65536);
    rawduo_hello(&r, SECRET_A);
    ck_assert_int_eq(rawduo_auth(&r, NULL), SP_EAUTH);
    raw_expect_goaway(r.raw, SP_GOAWAY_AUTH);
    rawduo_free(&r);

    /* A real client with the wrong secret sees GOAWAY / close. */
    duo_t d;
    duo_start(&d, SECRET_B, SECRET_A);
    ck_assert_int_eq(d.cs.rc, SP_EAUTH);
    ck_assert_int_eq(d.ss.rc, SP_EAUTH);
    duo_free(&d);
}
END_TEST

START_TEST(link_secret_on_one_side_only)
{
    /* Client with a secret, server without: the server's zero proof does
     * not verify, the client refuses; the server then sees GOAWAY(AUTH). */
    duo_t d;
    duo_start(&d, SECRET_A, NULL);
    ck_assert_int_eq(d.cs.rc, SP_EAUTH);
    ck_assert_ptr_nonnull(strstr(d.c.err, "HELLO_ACK proof does not match"));
    ck_assert_int_eq(d.ss.rc, SP_EAUTH);
    ck_assert_int_eq(d.s.state, SP_LINK_CLOSED);
    duo_free(&d);

    /* Client without, server with: a real proof where none is expected. */
    duo_start(&d, NULL, SECRET_A);
    ck_assert_int_eq(d.cs.rc, SP_EAUTH);
    ck_assert_ptr_nonnull(strstr(d.c.err, "proves a secret"));
    ck_assert_int_eq(d.ss.rc, SP_EAUTH);
    duo_free(&d);

    /* A server without a secret refuses a client that proves one. */
    rawduo_t r;
    rawduo_start(&r, NULL, 65536);
    rawduo_hello(&r, NULL);
    ck_assert_int_eq(rawduo_auth(&r, SECRET_A), SP_EAUTH);
    ck_assert_ptr_nonnull(strstr(r.s.err, "client proves a secret"));
    raw_expect_goaway(r.raw, SP_GOAWAY_AUTH);
    rawduo_free(&r);
}
END_TEST

/* One violation against a fresh server link: rc, GOAWAY code, a word of
 * the reason. */
static void server_violation(void (*feed)(rawduo_t *), int want_rc,
                             uint32_t goaway, const char *word)
{
    rawduo_t r;
    rawduo_start(&r, NULL, 65536);
    feed(&r);
    int rc = srv_read(&r);
    ck_assert_msg(rc == want_rc, "rc %d (%s), want %d; err: %s", rc,
                  sp_strerror(rc), want_rc, r.s.err);
    ck_assert_int_eq(r.s.state, SP_LINK_CLOSED);
    ck_assert_msg(strstr(r.s.err, word) != NULL, "err \"%s\" lacks \"%s\"",
                  r.s.err, word);
    raw_expect_goaway(r.raw, goaway);
    ck_assert_int_eq(r.sr.n, 0);
    rawduo_free(&r);
}

static void feed_body_first(rawduo_t *r)
{
    raw_send(r->raw, SP_FT_BODY, 1, 1, "x", 1);
}

static void feed_auth_first(rawduo_t *r)
{
    uint8_t z[SP_PROOF_SIZE] = {0};
    raw_send(r->raw, SP_FT_AUTH, 0, 0, z, sizeof(z));
}

static void feed_ping_first(rawduo_t *r)
{
    raw_send(r->raw, SP_FT_PING, 0, 0, "12345678", 8);
}

static void feed_hello_ack(rawduo_t *r)
{
    uint8_t pl[256];
    sp_hello_ack_t a;
    memset(&a, 0, sizeof(a));
    a.version = 1;
    a.max_payload = 65536;
    int n = sp_hello_ack_encode(&a, pl, sizeof(pl));
    ck_assert_int_gt(n, 0);
    raw_send(r->raw, SP_FT_HELLO_ACK, 0, 0, pl, (uint32_t)n);
}

static void feed_two_hellos(rawduo_t *r)
{
    raw_hello(r->raw, 1, 1, r->nonce_c);
    raw_hello(r->raw, 1, 1, r->nonce_c);
}

static void feed_hello_then_body(rawduo_t *r)
{
    raw_hello(r->raw, 1, 1, r->nonce_c);
    raw_send(r->raw, SP_FT_BODY, 1, 1, "x", 1);
}

static void feed_hello_v2(rawduo_t *r)
{
    raw_hello(r->raw, 2, 3, r->nonce_c);
}

static void feed_bad_hello(rawduo_t *r)
{
    uint8_t pl[SP_HELLO_MIN_SIZE];
    memset(pl, 0, sizeof(pl)); /* min_version 0, max_payload 0 */
    raw_send(r->raw, SP_FT_HELLO, 0, 0, pl, sizeof(pl));
}

static void feed_bad_version_byte(rawduo_t *r)
{
    raw_hdr(r->raw, 2, SP_FT_HELLO, 0, 0, 0, 0);
}

static void feed_unknown_type(rawduo_t *r)
{
    raw_hdr(r->raw, 1, 99, 0, 0, 0, 0);
}

static void feed_flags(rawduo_t *r)
{
    raw_hdr(r->raw, 1, SP_FT_BODY, 0x8000, 1, 1, 0);
}

static void feed_ctl_too_long(rawduo_t *r)
{
    raw_hdr(r->raw, 1, SP_FT_HELLO, 0, 0, 0, SP_FRAME_CTL_MAX + 1);
}

START_TEST(link_handshake_violations)
{
    server_violation(feed_body_first, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "BODY frame (stream 1) before the handshake");
    server_violation(feed_auth_first, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "AUTH frame (stream 0) before the handshake completed "
                     "(server side, state WAIT_HELLO)");
    server_violation(feed_ping_first, SP_EPROTO, SP_GOAWAY_PROTOCOL, "PING");
    server_violation(feed_hello_ack, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "HELLO_ACK");
    server_violation(feed_two_hellos, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "HELLO frame (stream 0) before the handshake completed "
                     "(server side, state WAIT_AUTH)");
    server_violation(feed_hello_then_body, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "BODY");
    server_violation(feed_hello_v2, SP_EBADVER, SP_GOAWAY_PROTOCOL,
                     "HELLO offers versions 2..3, this side speaks 1");
    server_violation(feed_bad_hello, SP_EPROTO, SP_GOAWAY_PROTOCOL,
                     "malformed HELLO payload (57 bytes)");
    server_violation(feed_bad_version_byte, SP_EBADVER, SP_GOAWAY_PROTOCOL,
                     "frame version 2");
    server_violation(feed_unknown_type, SP_EUNKNOWN, SP_GOAWAY_PROTOCOL,
                     "unknown frame type 99");
    server_violation(feed_flags, SP_EPROTO, SP_GOAWAY_PROTOCOL, "flags 0x8000");
    server_violation(feed_ctl_too_long, SP_ELIMIT, SP_GOAWAY_LIMIT,
                     "HELLO frame of 4097 bytes on stream 0 is over the "
                     "limit of 4096");
}
END_TEST

/* A client link on sv[0] against a raw server on sv[1]: the raw side
 * reads the HELLO, then writes what feed() sends. */
static void client_violation(void (*feed)(int raw, const sp_hello_t *h),
                             int want_rc, const char *word)
{
    int sv[2];
    sp_link_t c;
    rec_t cr;
    uint8_t buf[SP_FRAME_HDR_SIZE + SP_FRAME_CTL_MAX];
    sp_frame_t f;
    sp_hello_t h;

    memset(&cr, 0, sizeof(cr));
    mkpair(sv);
    sp_link_config_t cc = config(NULL, "proxy-raw");
    ck_assert_int_eq(sp_link_init(&c, sv[0], 1, &cc), 0);
    ck_assert_int_eq(sp_link_flush(&c), 0);
    ck_assert_int_eq(raw_recv(sv[1], &f, buf, sizeof(buf)), 0);
    ck_assert_int_eq(f.hdr.type, SP_FT_HELLO);
    ck_assert_int_eq(sp_hello_decode(f.payload, f.hdr.len, &h), 0);
    ck_assert_uint_eq(h.min_version, 1);
    ck_assert_uint_eq(h.max_version, 1);
    ck_assert_str_eq(h.node.ptr, "proxy-raw");
    feed(sv[1], &h);
    int rc = sp_link_on_readable(&c, rec_fn, &cr);
    ck_assert_msg(rc == want_rc, "rc %d, want %d; err: %s", rc, want_rc, c.err);
    ck_assert_int_eq(c.state, SP_LINK_CLOSED);
    ck_assert_msg(strstr(c.err, word) != NULL, "err \"%s\" lacks \"%s\"", c.err,
                  word);
    ck_assert_int_eq(cr.n, 0);
    ck_assert_int_eq(sp_link_flush(&c), 0);
    raw_expect_goaway(sv[1], SP_GOAWAY_PROTOCOL);
    sp_link_free(&c);
    close(sv[1]);
}

static void cfeed_hello(int raw, const sp_hello_t *h)
{
    uint8_t n[SP_NONCE_SIZE] = {1};
    (void)h;
    raw_hello(raw, 1, 1, n);
}

static void cfeed_body(int raw, const sp_hello_t *h)
{
    (void)h;
    raw_send(raw, SP_FT_BODY, 5, 5, "x", 1);
}

static void cfeed_ack_v2(int raw, const sp_hello_t *h)
{
    uint8_t pl[256];
    sp_hello_ack_t a;
    (void)h;
    memset(&a, 0, sizeof(a));
    a.version = 2;
    a.max_payload = 65536;
    int n = sp_hello_ack_encode(&a, pl, sizeof(pl));
    ck_assert_int_gt(n, 0);
    raw_send(raw, SP_FT_HELLO_ACK, 0, 0, pl, (uint32_t)n);
}

static void cfeed_ack_then_head(int raw, const sp_hello_t *h)
{
    uint8_t pl[256];
    sp_hello_ack_t a;
    (void)h;
    memset(&a, 0, sizeof(a));
    a.version = 1;
    a.max_payload = 65536;
    int n = sp_hello_ack_encode(&a, pl, sizeof(pl));
    ck_assert_int_gt(n, 0);
    raw_send(raw, SP_FT_HELLO_ACK, 0, 0, pl, (uint32_t)n);
    raw_send(raw, SP_FT_REQUEST_HEAD, 2, 2, "h", 1);
}

START_TEST(link_client_violations)
{
    client_violation(cfeed_hello, SP_EPROTO,
                     "HELLO frame (stream 0) before the handshake completed "
                     "(client side, state HELLO_SENT)");
    client_violation(cfeed_body, SP_EPROTO,
                     "BODY frame (stream 5) before the handshake");
    client_violation(cfeed_ack_v2, SP_EBADVER, "HELLO_ACK chose version 2");
    /* REQUEST_HEAD only ever goes to the server. */
    client_violation(cfeed_ack_then_head, SP_EPROTO,
                     "REQUEST_HEAD frame (stream 2) sent to the client");

    /* After the handshake: a HELLO again, RESPONSE_HEAD to the server. */
    rawduo_t r;
    rawduo_up(&r, NULL, 65536);
    raw_hello(r.raw, 1, 1, r.nonce_c);
    ck_assert_int_eq(srv_read(&r), SP_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.s.err, "HELLO frame after the handshake"));
    raw_expect_goaway(r.raw, SP_GOAWAY_PROTOCOL);
    rawduo_free(&r);
    rawduo_up(&r, NULL, 65536);
    raw_send(r.raw, SP_FT_RESPONSE_HEAD, 4, 1, "h", 1);
    ck_assert_int_eq(srv_read(&r), SP_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.s.err, "RESPONSE_HEAD frame (stream 4) "
                                          "sent to the server"));
    rawduo_free(&r);
    rawduo_up(&r, NULL, 65536);
    raw_send(r.raw, SP_FT_ACCEPT, 4, 1, NULL, 0);
    ck_assert_int_eq(srv_read(&r), SP_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.s.err, "ACCEPT frame (stream 4) "
                                          "sent to the server"));
    raw_expect_goaway(r.raw, SP_GOAWAY_PROTOCOL);
    rawduo_free(&r);
}
END_TEST

/* ---- link frames ------------------------------------------------------ */

START_TEST(link_ping_pong)
{
    /* Not before the handshake. */
    duo_t d;
    int sv[2];
    mkpair(sv);
    sp_link_t c;
    sp_link_config_t cc = config(NULL, "c");
    ck_assert_int_eq(sp_link_init(&c, sv[0], 1, &cc), 0);
    ck_assert_int_eq(sp_link_ping(&c), SP_ESTATE);
    sp_link_free(&c);
    close(sv[1]);

    duo_up(&d, SECRET_A, SECRET_A);
    uint64_t out = d.c.frames_out;
    ck_assert_int_eq(sp_link_ping(&d.c), 0);
    ck_assert_int_gt(d.c.ping_sent_ns, 0);
    ck_assert_uint_eq(d.c.frames_out, out + 1);
    ck_assert_int_eq(sp_link_ping(&d.c), 0); /* outstanding: no-op */
    ck_assert_uint_eq(d.c.frames_out, out + 1);
    usleep(1000);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.c.ping_sent_ns, 0);
    ck_assert_int_ge(d.c.rtt_ns, 1000000); /* we slept 1 ms in between */
    ck_assert_int_lt(d.c.rtt_ns, 10 * 1000000000LL);
    ck_assert_uint_eq(d.s.frames_out, 2); /* HELLO_ACK, PONG */
    ck_assert_int_eq(d.cr.n + d.sr.n, 0);
    /* The other way round. */
    ck_assert_int_eq(sp_link_ping(&d.s), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.s.ping_sent_ns, 0);
    ck_assert_int_gt(d.s.rtt_ns, 0);
    duo_free(&d);

    /* An unsolicited or foreign PONG is ignored; PING gets an exact echo. */
    rawduo_t r;
    rawduo_up(&r, NULL, 65536);
    raw_send(r.raw, SP_FT_PONG, 0, 0, "abcdefgh", 8);
    raw_send(r.raw, SP_FT_PING, 0, 0, "12345678", 8);
    ck_assert_int_eq(srv_read(&r), 0);
    ck_assert_int_eq(r.s.state, SP_LINK_UP);
    ck_assert_int_eq(r.s.rtt_ns, 0);
    uint8_t buf[64];
    sp_frame_t f;
    ck_assert_int_eq(raw_recv(r.raw, &f, buf, sizeof(buf)), 0);
    ck_assert_int_eq(f.hdr.type, SP_FT_PONG);
    ck_assert_mem_eq(f.payload, "12345678", 8);
    ck_assert_int_eq(sp_link_ping(&r.s), 0);
    ck_assert_int_eq(sp_link_flush(&r.s), 0);
    ck_assert_int_eq(raw_recv(r.raw, &f, buf, sizeof(buf)), 0);
    ck_assert_int_eq(f.hdr.type, SP_FT_PING);
    raw_send(r.raw, SP_FT_PONG, 0, 0, "nomatch!", 8);
    ck_assert_int_eq(srv_read(&r), 0);
    ck_assert_int_ne(r.s.ping_sent_ns, 0); /* still outstanding */
    raw_send(r.raw, SP_FT_PONG, 0, 0, f.payload, 8);
    ck_assert_int_eq(srv_read(&r), 0);
    ck_assert_int_eq(r.s.ping_sent_ns, 0);
    ck_assert_int_gt(r.s.rtt_ns, 0);
    rawduo_free(&r);
}
END_TEST

START_TEST(link_goaway)
{
    duo_t d;
    duo_up(&d, NULL, NULL);
    ck_assert_int_eq(sp_link_send_goaway(&d.s, SP_GOAWAY_RELOAD, "reload"), 0);
    ck_assert_int_eq(sp_link_usable(&d.s), 0);
    ck_assert_uint_eq(d.s.goaway_tx, SP_GOAWAY_RELOAD + 1);
    pump(&d.cs, &d.ss);
    ck_assert_uint_eq(d.c.goaway_rx, SP_GOAWAY_RELOAD + 1);
    ck_assert_int_eq(sp_link_usable(&d.c), 0);
    /* Draining: open streams still finish. */
    ck_assert_int_eq(d.c.state, SP_LINK_UP);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "tail", 4), 0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_END, 1, 1, NULL, 0), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 1);
    ck_assert_int_eq(d.cr.n, 1);
    ck_assert_int_eq(d.cr.type[0], SP_FT_END);
    /* Then the server closes; the client sees why. */
    sp_link_free(&d.s);
    ck_assert_int_eq(sp_link_on_readable(&d.c, rec_fn, &d.cr), SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(d.c.err, "after GOAWAY RELOAD"));
    sp_link_free(&d.c);

    /* A GOAWAY that closes (PROTOCOL) ends the link at once; the reason
     * we send has its control characters replaced. */
    rawduo_t r;
    rawduo_up(&r, NULL, 65536);
    ck_assert_int_eq(
        sp_link_send_goaway(&r.s, SP_GOAWAY_NORMAL, "bye\r\nforged: line"), 0);
    ck_assert_int_eq(sp_link_flush(&r.s), 0);
    uint8_t buf[256];
    sp_frame_t f;
    sp_goaway_t g;
    ck_assert_int_eq(raw_recv(r.raw, &f, buf, sizeof(buf)), 0);
    ck_assert_int_eq(sp_goaway_decode(f.payload, f.hdr.len, &g), 0);
    ck_assert_str_eq(g.reason.ptr, "bye??forged: line");
    uint8_t pl[64];
    g.code = SP_GOAWAY_PROTOCOL;
    g.reason = (sp_str_t){"you broke it", 12};
    int n = sp_goaway_encode(&g, pl, sizeof(pl));
    ck_assert_int_gt(n, 0);
    raw_send(r.raw, SP_FT_GOAWAY, 0, 0, pl, (uint32_t)n);
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(r.s.err, "GOAWAY PROTOCOL, code 3"));
    ck_assert_ptr_null(strstr(r.s.err, "you broke it")); /* peer's text */
    rawduo_free(&r);

    /* An unknown code closes like PROTOCOL (docs/protocol.md 2.6). */
    rawduo_up(&r, NULL, 65536);
    g.code = 77;
    g.reason = (sp_str_t){NULL, 0};
    n = sp_goaway_encode(&g, pl, sizeof(pl));
    raw_send(r.raw, SP_FT_GOAWAY, 0, 0, pl, (uint32_t)n);
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_uint_eq(r.s.goaway_rx, 78);
    ck_assert_ptr_nonnull(strstr(r.s.err, "GOAWAY ?, code 77"));
    rawduo_free(&r);

    /* NORMAL from a client drains the server side the same way. */
    rawduo_up(&r, NULL, 65536);
    g.code = SP_GOAWAY_NORMAL;
    n = sp_goaway_encode(&g, pl, sizeof(pl));
    raw_send(r.raw, SP_FT_GOAWAY, 0, 0, pl, (uint32_t)n);
    raw_send(r.raw, SP_FT_END, 1, 1, NULL, 0);
    ck_assert_int_eq(srv_read(&r), 0);
    ck_assert_uint_eq(r.s.goaway_rx, SP_GOAWAY_NORMAL + 1);
    ck_assert_int_eq(sp_link_usable(&r.s), 0);
    ck_assert_int_eq(r.s.state, SP_LINK_UP);
    ck_assert_int_eq(r.sr.n, 1);
    rawduo_free(&r);
}
END_TEST

/* ---- streams ---------------------------------------------------------- */

/* Frame k of a stream direction: its shape is a function of (seed, k), so
 * the receiver checks every byte without a copy of what was sent. */
typedef struct shape {
    uint8_t type;
    uint32_t stream, gen, len;
    uint32_t credit;
    uint32_t abort_code;
} shape_t;

static shape_t shape_of(uint64_t seed, uint32_t k, uint32_t max, int to_srv)
{
    uint64_t h = mix(seed * 1000003u + k);
    shape_t s;
    memset(&s, 0, sizeof(s));
    s.stream = (uint32_t)(h % 7);
    s.gen = (uint32_t)(h >> 8) % 3 + k;
    switch ((h >> 16) % 8) {
    case 0:
        s.type = to_srv ? SP_FT_REQUEST_HEAD : SP_FT_RESPONSE_HEAD;
        break;
    case 1:
        s.type = SP_FT_END;
        break;
    case 2:
        s.type = SP_FT_CREDIT;
        break;
    case 3:
        s.type = to_srv ? SP_FT_ABORT : SP_FT_ACCEPT;
        break;
    default:
        s.type = SP_FT_BODY;
        break;
    }
    uint64_t h2 = mix(h);
    switch (s.type) {
    case SP_FT_END:
    case SP_FT_ACCEPT:
        break;
    case SP_FT_CREDIT:
        s.credit = (uint32_t)(h2 % 100000) + 1;
        s.len = SP_CREDIT_SIZE;
        break;
    case SP_FT_ABORT:
        s.abort_code = (uint32_t)(h2 % 8) + 1;
        break;
    default:
        /* a quarter tiny, the rest anywhere up to the limit, a few at it */
        if (h2 % 4 == 0)
            s.len = (uint32_t)(h2 >> 8) % 64;
        else if (h2 % 16 == 1)
            s.len = max;
        else
            s.len = (uint32_t)((h2 >> 8) % (max + 1u));
        break;
    }
    return s;
}

static uint8_t byte_of(uint32_t k, uint32_t i)
{
    return (uint8_t)((k * 131u + i * 7u + (i >> 8)) ^ (k >> 3));
}

typedef struct flow {
    uint64_t seed;
    uint32_t max;
    int to_srv;
    uint32_t got; /* frames checked so far */
} flow_t;

static int flow_check(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    flow_t *fl = arg;
    shape_t s = shape_of(fl->seed, fl->got, fl->max, fl->to_srv);
    (void)l;
    ck_assert_msg(f->hdr.type == s.type, "frame %u: type %u, want %u", fl->got,
                  f->hdr.type, s.type);
    ck_assert_uint_eq(f->hdr.stream, s.stream);
    ck_assert_uint_eq(f->hdr.gen, s.gen);
    if (s.type == SP_FT_CREDIT) {
        uint32_t inc = 0;
        ck_assert_int_eq(sp_credit_decode(f->payload, f->hdr.len, &inc), 0);
        ck_assert_uint_eq(inc, s.credit);
    } else if (s.type == SP_FT_ABORT) {
        sp_abort_t a;
        ck_assert_int_eq(sp_abort_decode(f->payload, f->hdr.len, &a), 0);
        ck_assert_uint_eq(a.code, s.abort_code);
        ck_assert_uint_eq(a.status, 502);
        ck_assert_str_eq(a.reason.ptr, "worker gone");
    } else {
        ck_assert_msg(f->hdr.len == s.len, "frame %u: len %u, want %u", fl->got,
                      f->hdr.len, s.len);
        for (uint32_t i = 0; i < s.len; i++)
            if (f->payload[i] != byte_of(fl->got, i))
                ck_abort_msg("frame %u byte %u differs", fl->got, i);
    }
    fl->got++;
    return 0;
}

/* Queue frame k; SP_EAGAIN when the soft limit says wait. */
static int flow_send(sp_link_t *l, uint64_t seed, uint32_t k, uint32_t max,
                     int to_srv, uint8_t *scratch)
{
    shape_t s = shape_of(seed, k, max, to_srv);
    switch (s.type) {
    case SP_FT_CREDIT:
        return sp_link_send_credit(l, s.stream, s.gen, s.credit);
    case SP_FT_ABORT:
        return sp_link_send_abort(l, s.stream, s.gen, s.abort_code, 502,
                                  "worker gone");
    case SP_FT_END:
    case SP_FT_ACCEPT:
        return sp_link_send(l, s.type, s.stream, s.gen, NULL, 0);
    }
    for (uint32_t i = 0; i < s.len; i++)
        scratch[i] = byte_of(k, i);
    if (k % 2 == 0)
        return sp_link_send(l, s.type, s.stream, s.gen, scratch, s.len);
    /* the iovec path: three pieces, one of them possibly empty */
    uint32_t a = s.len / 3, b = s.len / 2;
    struct iovec iov[3] = {
        {scratch, a}, {scratch + a, b - a}, {scratch + b, s.len - b}};
    return sp_link_sendv(l, s.type, s.stream, s.gen, iov, 3);
}

/* Client link on c[0], server link on s[0]; the test moves c[1] <-> s[1]
 * in random pieces, letting the receiver read after each one. */
typedef struct relay {
    sp_link_t c, s;
    int cx, sx; /* the relay's ends */
    flow_t to_srv, to_cli;
    uint32_t piece_max;
} relay_t;

static void relay_move(relay_t *r, int from, int to, sp_link_t *rx, flow_t *fl)
{
    static uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(from, buf, sizeof(buf));
        if (n < 0 && errno == EAGAIN)
            return;
        ck_assert_int_gt(n, 0);
        for (ssize_t off = 0; off < n;) {
            uint32_t piece = 1 + sp_test_rng() % (sp_test_rng() % 2 ? 16 : r->piece_max);
            if (piece > (size_t)(n - off))
                piece = (uint32_t)(n - off);
            write_all(to, buf + off, piece);
            off += piece;
            int rc = sp_link_on_readable(rx, flow_check, fl);
            ck_assert_msg(rc == 0, "on_readable %d: %s", rc, rx->err);
        }
    }
}

static void relay_round(relay_t *r)
{
    int rc = sp_link_flush(&r->c);
    ck_assert(rc == 0 || rc == SP_EAGAIN);
    rc = sp_link_flush(&r->s);
    ck_assert(rc == 0 || rc == SP_EAGAIN);
    relay_move(r, r->cx, r->sx, &r->s, &r->to_srv);
    relay_move(r, r->sx, r->cx, &r->c, &r->to_cli);
}

static void relay_run(uint64_t seed, uint32_t cmax, uint32_t smax,
                      uint32_t nframes, uint32_t piece_max)
{
    relay_t *r = calloc(1, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    int a[2], b[2];
    mkpair(a);
    mkpair(b);
    r->cx = a[1];
    r->sx = b[1];
    r->piece_max = piece_max;
    sp_link_config_t cc = config(SECRET_A, "relay-c");
    sp_link_config_t sc = config(SECRET_A, "relay-s");
    cc.max_payload = cmax;
    sc.max_payload = smax;
    ck_assert_int_eq(sp_link_init(&r->c, a[0], 1, &cc), 0);
    ck_assert_int_eq(sp_link_init(&r->s, b[0], 0, &sc), 0);
    r->to_srv = (flow_t){seed, smax, 1, 0};
    r->to_cli = (flow_t){seed + 1, cmax, 0, 0};
    sp_test_rng_seed(seed);
    for (int i = 0; i < 10 && r->c.state != SP_LINK_UP; i++)
        relay_round(r);
    for (int i = 0; i < 10 && r->s.state != SP_LINK_UP; i++)
        relay_round(r);
    ck_assert_int_eq(r->c.state, SP_LINK_UP);
    ck_assert_int_eq(r->s.state, SP_LINK_UP);

    uint8_t *scratch = malloc(smax > cmax ? smax : cmax);
    ck_assert_ptr_nonnull(scratch);
    uint32_t kc = 0, ks = 0, stalls = 0;
    while (kc < nframes || ks < nframes) {
        int progressed = 0;
        while (kc < nframes) {
            int rc = flow_send(&r->c, seed, kc, smax, 1, scratch);
            if (rc == SP_EAGAIN)
                break;
            ck_assert_msg(rc == 0, "client frame %u: %d", kc, rc);
            kc++;
            progressed = 1;
        }
        while (ks < nframes) {
            int rc = flow_send(&r->s, seed + 1, ks, cmax, 0, scratch);
            if (rc == SP_EAGAIN)
                break;
            ck_assert_msg(rc == 0, "server frame %u: %d", ks, rc);
            ks++;
            progressed = 1;
        }
        stalls = progressed ? 0 : stalls + 1;
        ck_assert_uint_lt(stalls, 100);
        relay_round(r);
    }
    for (int i = 0;
         i < 100 && (r->to_srv.got < nframes || r->to_cli.got < nframes); i++)
        relay_round(r);
    ck_assert_uint_eq(r->to_srv.got, nframes);
    ck_assert_uint_eq(r->to_cli.got, nframes);
    ck_assert_uint_eq(sp_link_pending(&r->c), 0);
    ck_assert_uint_eq(sp_link_pending(&r->s), 0);
    ck_assert_uint_eq(r->c.bytes_out, r->s.bytes_in);
    ck_assert_uint_eq(r->s.bytes_out, r->c.bytes_in);
    ck_assert_uint_eq(r->c.frames_out, r->s.frames_in);
    ck_assert_uint_eq(r->s.frames_out, r->c.frames_in);
    free(scratch);
    sp_link_free(&r->c);
    sp_link_free(&r->s);
    close(r->cx);
    close(r->sx);
    free(r);
}

START_TEST(link_stream_order_pieces)
{
    /* Many frames of every stream type, random sizes up to each side's
     * max_payload, both ways, fed in pieces of 1..16 or 1..N bytes. */
    relay_run(1, 65536, 16384, 1500, 300);
    relay_run(2, 4096, 8192, 1500, 64);
}
END_TEST

START_TEST(link_stream_big_frames)
{
    /* A 1 MiB max_payload: the output buffer grows past its 64 KiB start
     * and frames that size still arrive whole. */
    relay_run(3, 1u << 20, 1u << 20, 40, 65536);
}
END_TEST

/* ---- limits and bad input --------------------------------------------- */

START_TEST(link_oversized_frame)
{
    rawduo_t r1, r2;
    rawduo_up(&r1, SECRET_A, 4096);
    rawduo_up(&r2, SECRET_A, 4096);

    /* Header only: refused before any payload byte arrives. */
    raw_hdr(r1.raw, 1, SP_FT_BODY, 0, 7, 1, 4097);
    ck_assert_int_eq(srv_read(&r1), SP_ELIMIT);
    ck_assert_int_eq(r1.s.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(r1.s.err, "BODY frame of 4097 bytes on "
                                           "stream 7 is over the limit of "
                                           "4096"));
    raw_expect_goaway(r1.raw, SP_GOAWAY_LIMIT);

    /* The other link is untouched and takes a frame exactly at the
     * limit. */
    static uint8_t big[4096];
    memset(big, 0x42, sizeof(big));
    raw_send(r2.raw, SP_FT_BODY, 7, 1, big, sizeof(big));
    ck_assert_int_eq(srv_read(&r2), 0);
    ck_assert_int_eq(r2.sr.n, 1);
    ck_assert_uint_eq(r2.sr.len[0], 4096);
    ck_assert_int_eq(r2.s.state, SP_LINK_UP);

    /* The sender side refuses what the peer would: over its max_payload
     * (65536 from the raw HELLO), and over it through an iovec sum. */
    static uint8_t huge[65537];
    ck_assert_int_eq(sp_link_send(&r2.s, SP_FT_BODY, 1, 1, huge, 65537),
                     SP_ELIMIT);
    struct iovec iov[2] = {{huge, 65536}, {huge, 1}};
    ck_assert_int_eq(sp_link_sendv(&r2.s, SP_FT_BODY, 1, 1, iov, 2), SP_ELIMIT);
    ck_assert_int_eq(sp_link_send(&r2.s, SP_FT_BODY, 1, 1, huge, 65536), 0);
    ck_assert_int_eq(r2.s.state, SP_LINK_UP);
    rawduo_free(&r1);
    rawduo_free(&r2);
}
END_TEST

START_TEST(link_garbage)
{
    uint8_t buf[4096];
    for (uint64_t seed = 1; seed <= 200; seed++) {
        rawduo_t r;
        sp_test_rng_seed(seed);
        /* Half before the handshake, half after it; half the time the
         * first byte is a valid version so the header checks get further. */
        if (seed % 2)
            rawduo_up(&r, NULL, 4096);
        else
            rawduo_start(&r, NULL, 4096);
        size_t n = 1 + sp_test_rng() % sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)sp_test_rng();
        if (seed % 4 < 2)
            buf[0] = 1;
        write_all(r.raw, buf, n);
        shutdown(r.raw, SHUT_WR);
        int rc = 0;
        for (int i = 0; i < 4 && rc == 0; i++)
            rc = srv_read(&r);
        ck_assert_msg(rc < 0, "seed %llu: garbage accepted",
                      (unsigned long long)seed);
        ck_assert_int_eq(r.s.state, SP_LINK_CLOSED);
        ck_assert_uint_gt(strlen(r.s.err), 0);
        /* The reason shows no peer bytes: printable ASCII only. */
        for (const char *p = r.s.err; *p; p++)
            ck_assert(*p >= 0x20 && *p < 0x7f);
        rawduo_free(&r);
    }
}
END_TEST

START_TEST(link_truncated_then_eof)
{
    rawduo_t r;
    uint8_t part[50];
    memset(part, 7, sizeof(part));

    /* Mid-payload. */
    rawduo_up(&r, NULL, 65536);
    raw_hdr(r.raw, 1, SP_FT_BODY, 0, 1, 1, 100);
    write_all(r.raw, part, sizeof(part));
    ck_assert_int_eq(srv_read(&r), 0); /* waits for the rest */
    ck_assert_int_eq(r.s.state, SP_LINK_UP);
    shutdown(r.raw, SHUT_WR);
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(r.s.err, "middle of a frame (66 bytes"));
    ck_assert_int_eq(r.sr.n, 0);
    rawduo_free(&r);

    /* Mid-header. */
    rawduo_up(&r, NULL, 65536);
    write_all(r.raw, part, 10);
    shutdown(r.raw, SHUT_WR);
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(r.s.err, "(10 bytes"));
    rawduo_free(&r);

    /* At a frame boundary, during the handshake and after it. */
    rawduo_start(&r, NULL, 65536);
    close(r.raw);
    r.raw = -1;
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(r.s.err, "closed the link (WAIT_HELLO)"));
    sp_link_free(&r.s);
    rawduo_up(&r, NULL, 65536);
    raw_send(r.raw, SP_FT_END, 1, 1, NULL, 0);
    shutdown(r.raw, SHUT_WR);
    ck_assert_int_eq(srv_read(&r), SP_ECLOSED);
    ck_assert_int_eq(r.sr.n, 1); /* the whole frame before EOF counts */
    ck_assert_ptr_nonnull(strstr(r.s.err, "closed the link (UP)"));
    rawduo_free(&r);
}
END_TEST

START_TEST(link_soft_limit)
{
    duo_t d;
    memset(&d, 0, sizeof(d));
    int sv[2];
    mkpair(sv);
    d.cc = config(NULL, "c");
    d.cc.out_soft_limit = 10000;
    d.sc = config(NULL, "s");
    ck_assert_int_eq(sp_link_init(&d.c, sv[0], 1, &d.cc), 0);
    ck_assert_int_eq(sp_link_init(&d.s, sv[1], 0, &d.sc), 0);
    d.cs = (side_t){&d.c, rec_fn, &d.cr, 0, 0};
    d.ss = (side_t){&d.s, rec_fn, &d.sr, 0, 0};
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.c.state, SP_LINK_UP);

    static uint8_t body[4000];
    memset(body, 'b', sizeof(body));
    int queued = 0;
    while (sp_link_send(&d.c, SP_FT_BODY, 1, 1, body, sizeof(body)) == 0)
        queued++;
    /* Refused only once more than the limit is queued. */
    ck_assert_int_eq(queued, 3);
    ck_assert_uint_gt(sp_link_pending(&d.c), 10000);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "x", 1), SP_EAGAIN);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_REQUEST_HEAD, 2, 1, "h", 1),
                     SP_EAGAIN);
    /* Control frames still queue: flow control cannot deadlock. */
    size_t before = sp_link_pending(&d.c);
    ck_assert_int_eq(sp_link_send_credit(&d.c, 1, 1, 65536), 0);
    ck_assert_int_eq(
        sp_link_send_abort(&d.c, 3, 1, SP_ABORT_CANCEL, 0, "client went away"),
        0);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_END, 1, 1, NULL, 0), 0);
    ck_assert_int_eq(sp_link_ping(&d.c), 0);
    ck_assert_int_eq(sp_link_send_goaway(&d.c, SP_GOAWAY_NORMAL, NULL), 0);
    ck_assert_uint_gt(sp_link_pending(&d.c), before);
    /* After a flush the queue takes stream frames again. */
    pump(&d.cs, &d.ss);
    ck_assert_uint_eq(sp_link_pending(&d.c), 0);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "x", 1), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 3 + 3 + 1);
    ck_assert_int_eq(d.sr.type[2], SP_FT_BODY);
    ck_assert_int_eq(d.sr.type[3], SP_FT_CREDIT);
    ck_assert_int_eq(d.sr.type[4], SP_FT_ABORT);
    ck_assert_int_eq(d.sr.type[5], SP_FT_END);
    ck_assert_int_eq(d.sr.type[6], SP_FT_BODY);
    ck_assert_uint_eq(d.s.goaway_rx, SP_GOAWAY_NORMAL + 1);
    ck_assert_int_gt(d.c.rtt_ns, 0);
    duo_free(&d);
}
END_TEST

START_TEST(link_ping_flood_bounded)
{
    /* A peer that sends PINGs but never reads cannot grow our queue
     * without bound. */
    rawduo_t r;
    rawduo_up(&r, NULL, 4096);
    int one = 4096;
    setsockopt(r.raw, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
    static uint8_t pings[24 * 1024];
    for (size_t i = 0; i < sizeof(pings); i += 24) {
        sp_frame_encode(pings + i, 24, SP_FT_PING, 0, 0, 0, "pingping", 8);
    }
    int rc = 0;
    for (int i = 0; i < 20000 && rc == 0; i++) {
        write_all(r.raw, pings, sizeof(pings));
        rc = srv_read(&r);
    }
    ck_assert_int_eq(rc, SP_ELIMIT);
    ck_assert_ptr_nonnull(strstr(r.s.err, "PINGs without reading"));
    ck_assert_uint_le(sp_link_pending(&r.s), 4 * 4096 + (1u << 20) + 24);
    rawduo_free(&r);
}
END_TEST

START_TEST(link_dead_peer_no_sigpipe)
{
    /* SIGPIPE at its default (terminate): a write to a dead peer must not
     * raise it. */
    signal(SIGPIPE, SIG_DFL);
    duo_t d;
    duo_up(&d, NULL, NULL);
    sp_link_free(&d.s);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "abc", 3), 0);
    ck_assert_int_eq(sp_link_flush(&d.c), SP_ECLOSED);
    ck_assert_int_eq(d.c.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(d.c.err, "write"));
    ck_assert_uint_eq(sp_link_pending(&d.c), 0);
    ck_assert_int_eq(sp_link_flush(&d.c), 0);
    ck_assert_int_eq(sp_link_on_readable(&d.c, rec_fn, &d.cr), SP_ESTATE);
    sp_link_free(&d.c);
    sp_link_free(&d.c); /* twice is harmless */
}
END_TEST

/* Pump two links over real sockets until both are UP (or one closed). */
static void pump_until_up(side_t *a, side_t *b)
{
    for (int i = 0; i < 2000; i++) {
        step(a);
        step(b);
        if ((a->l->state == SP_LINK_UP && b->l->state == SP_LINK_UP &&
             sp_link_pending(a->l) == 0 && sp_link_pending(b->l) == 0) ||
            a->rc || b->rc)
            return;
        usleep(1000);
    }
}

static void real_socket_link(const char *addr, int reset)
{
    sp_addr_t a;
    char err[256];
    ck_assert_int_eq(sp_addr_parse(addr, &a, err, sizeof(err)), 0);
    int lfd = sp_addr_listen(&a, 4);
    ck_assert_int_ge(lfd, 0);
    int cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    int afd = SP_EAGAIN;
    for (int i = 0; i < 2000 && afd == SP_EAGAIN; i++) {
        afd = sp_net_accept(lfd);
        if (afd == SP_EAGAIN)
            usleep(1000);
    }
    ck_assert_int_ge(afd, 0);
    close(lfd);

    duo_t d;
    memset(&d, 0, sizeof(d));
    d.cc = config(SECRET_B, "c");
    d.sc = config(SECRET_B, "s");
    ck_assert_int_eq(sp_link_init(&d.c, cfd, 1, &d.cc), 0);
    ck_assert_int_eq(sp_link_init(&d.s, afd, 0, &d.sc), 0);
    d.cs = (side_t){&d.c, rec_fn, &d.cr, 0, 0};
    d.ss = (side_t){&d.s, rec_fn, &d.sr, 0, 0};
    pump_until_up(&d.cs, &d.ss);
    ck_assert_msg(d.c.state == SP_LINK_UP && d.s.state == SP_LINK_UP, "%s / %s",
                  d.c.err, d.s.err);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "hi", 2), 0);
    for (int i = 0; i < 2000 && d.sr.n == 0; i++) {
        step(&d.cs);
        step(&d.ss);
        usleep(500);
    }
    ck_assert_int_eq(d.sr.n, 1);

    if (reset) {
        /* An abortive close sends RST: the client's read fails with
         * ECONNRESET, and that is "peer closed", not a crash. */
        struct linger lg = {1, 0};
        ck_assert_int_eq(
            setsockopt(d.s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        sp_link_free(&d.s);
        struct pollfd p = {d.c.fd, POLLIN, 0};
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        ck_assert_int_eq(sp_link_on_readable(&d.c, rec_fn, &d.cr), SP_ECLOSED);
        ck_assert_ptr_nonnull(strstr(d.c.err, "reset"));
        sp_link_free(&d.c);
        return;
    }
    duo_free(&d);
}

START_TEST(link_real_sockets)
{
    real_socket_link("tcp://127.0.0.1:0", 0);
    char dir[64], addr[128];
    snprintf(dir, sizeof(dir), "/tmp/sp_link_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(addr, sizeof(addr), "unix:%s/l.sock", dir);
    real_socket_link(addr, 0);
    unlink(addr + 5);
    rmdir(dir);
}
END_TEST

START_TEST(link_tcp_reset)
{
    signal(SIGPIPE, SIG_DFL);
    real_socket_link("tcp://127.0.0.1:0", 1);

    /* Writes after the peer reset: SP_ECLOSED, never SIGPIPE. */
    sp_addr_t a;
    char err[256];
    ck_assert_int_eq(sp_addr_parse("tcp://127.0.0.1:0", &a, err, sizeof(err)),
                     0);
    int lfd = sp_addr_listen(&a, 4);
    int cfd = sp_addr_connect(&a);
    ck_assert_int_ge(cfd, 0);
    struct pollfd p = {lfd, POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    int afd = sp_net_accept(lfd);
    ck_assert_int_ge(afd, 0);
    sp_link_t c;
    sp_link_config_t cc = config(NULL, "c");
    ck_assert_int_eq(sp_link_init(&c, cfd, 1, &cc), 0);
    struct linger lg = {1, 0};
    ck_assert_int_eq(setsockopt(afd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
                     0);
    close(afd);
    usleep(20000);
    int rc = SP_EAGAIN;
    for (int i = 0; i < 100 && rc != SP_ECLOSED; i++) {
        rc = sp_link_flush(&c);
        ck_assert(rc == 0 || rc == SP_ECLOSED);
        if (rc == 0) /* the first write may still go out before the RST */
            ck_assert_int_eq(sp_link_send_goaway(&c, 0, "x"), 0);
        usleep(1000);
    }
    ck_assert_int_eq(rc, SP_ECLOSED);
    ck_assert_ptr_nonnull(strstr(c.err, "write"));
    sp_link_free(&c);
    close(lfd);
}
END_TEST

/* ---- shm: links ------------------------------------------------------- */

/* A client and a server link over a shm: link whose rendezvous is a
 * socketpair (client 1 on sv[0], server 0 on sv[1]), handshake pumped.
 * *spare, when not NULL, gets a duplicate of the client's socket. */
static void shm_duo_up(duo_t *d, uint32_t ring, int *spare)
{
    int sv[2];
    memset(d, 0, sizeof(*d));
    mkpair(sv);
    if (spare != NULL)
        ck_assert_int_ge(*spare = dup(sv[0]), 0);
    d->cc = config(SECRET_A, "proxy-shm");
    d->sc = config(SECRET_A, "backend-shm");
    ck_assert_int_eq(sp_link_init_shm(&d->c, sv[0], 1, ring, &d->cc), 0);
    ck_assert_int_eq(sp_link_init_shm(&d->s, sv[1], 0, ring, &d->sc), 0);
    ck_assert_ptr_nonnull(d->c.shm);
    ck_assert_ptr_nonnull(d->s.shm);
    ck_assert_int_eq(d->c.state, SP_LINK_HELLO_SENT);
    ck_assert_int_eq(d->s.state, SP_LINK_WAIT_HELLO);
    ck_assert_uint_gt(sp_link_pending(&d->c), 0); /* the HELLO */
    d->cs = (side_t){&d->c, rec_fn, &d->cr, 0, 0};
    d->ss = (side_t){&d->s, rec_fn, &d->sr, 0, 0};
    pump(&d->cs, &d->ss);
    ck_assert_msg(d->c.state == SP_LINK_UP, "client %d: %s", d->c.state,
                  d->c.err);
    ck_assert_msg(d->s.state == SP_LINK_UP, "server %d: %s", d->s.state,
                  d->s.err);
    ck_assert_int_eq(d->cs.rc, 0);
    ck_assert_int_eq(d->ss.rc, 0);
    ck_assert_str_eq(d->c.peer_node, "backend-shm");
    ck_assert_str_eq(d->s.peer_node, "proxy-shm");
}

/* Call on_readable while the fd is readable, until it reports an error
 * (at most a few times: the EOF may come one call after the last data). */
static int shm_until_error(sp_link_t *l, rec_t *r)
{
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {l->fd, POLLIN, 0};
        ck_assert_msg(poll(&p, 1, 2000) == 1, "fd not readable (call %d)", i);
        int rc = sp_link_on_readable(l, rec_fn, r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

START_TEST(link_shm_frames)
{
    duo_t d;
    shm_duo_up(&d, SP_SHMLINK_RING_MIN, NULL);
    ck_assert_uint_eq(d.c.bytes_out, d.s.bytes_in);
    ck_assert_uint_eq(d.s.bytes_out, d.c.bytes_in);

    /* A request, with a body five times the ring, and its response. */
    static uint8_t body[20000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7 + (i >> 9));
    const char *req = "GET /shm HTTP/1.1";
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_REQUEST_HEAD, 1, 1, req,
                                  (uint32_t)strlen(req)),
                     0);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, body, sizeof(body)),
                     0);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_END, 1, 1, NULL, 0), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 3);
    ck_assert_int_eq(d.sr.type[0], SP_FT_REQUEST_HEAD);
    ck_assert_uint_eq(d.sr.len[0], strlen(req));
    ck_assert_uint_eq(d.sr.first[0], 'G');
    ck_assert_int_eq(d.sr.type[1], SP_FT_BODY);
    ck_assert_uint_eq(d.sr.len[1], sizeof(body));
    ck_assert_int_eq(d.sr.type[2], SP_FT_END);
    ck_assert_uint_eq(d.sr.stream[2], 1);
    ck_assert_uint_eq(d.sr.gen[2], 1);

    const char *resp = "HTTP/1.1 200 OK";
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_RESPONSE_HEAD, 1, 1, resp,
                                  (uint32_t)strlen(resp)),
                     0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_BODY, 1, 1, body + 1, 9999), 0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_END, 1, 1, NULL, 0), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.cr.n, 3);
    ck_assert_int_eq(d.cr.type[0], SP_FT_RESPONSE_HEAD);
    ck_assert_uint_eq(d.cr.first[0], 'H');
    ck_assert_int_eq(d.cr.type[1], SP_FT_BODY);
    ck_assert_uint_eq(d.cr.len[1], 9999);
    ck_assert_uint_eq(d.cr.first[1], body[1]);
    ck_assert_int_eq(d.cr.type[2], SP_FT_END);
    ck_assert_uint_eq(d.c.bytes_out, d.s.bytes_in);
    ck_assert_uint_eq(d.s.bytes_out, d.c.bytes_in);
    ck_assert_uint_eq(d.c.frames_out, d.s.frames_in);
    ck_assert_uint_eq(d.s.frames_out, d.c.frames_in);
    ck_assert_uint_eq(sp_link_pending(&d.c), 0);
    ck_assert_uint_eq(sp_link_pending(&d.s), 0);

    /* One side goes: the other's fd becomes readable and says closed. */
    sp_link_free(&d.s);
    ck_assert_int_eq(shm_until_error(&d.c, &d.cr), SP_ECLOSED);
    ck_assert_int_eq(d.c.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(d.c.err, "closed"));
    sp_link_free(&d.c);

    /* The same the other way, with a frame still in flight: it is
     * delivered first. */
    shm_duo_up(&d, SP_SHMLINK_RING_MIN, NULL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 2, 1, "tail", 4), 0);
    ck_assert_int_eq(sp_link_flush(&d.c), 0);
    sp_link_free(&d.c);
    ck_assert_int_eq(shm_until_error(&d.s, &d.sr), SP_ECLOSED);
    ck_assert_int_eq(d.sr.n, 1);
    ck_assert_uint_eq(d.sr.len[0], 4);
    ck_assert_uint_eq(d.sr.first[0], 't');
    sp_link_free(&d.s);
}
END_TEST

/* BODY frames, each checked byte for byte, counted per direction. */
typedef struct shm_flow {
    uint32_t got;
    uint64_t bytes;
} shm_flow_t;

static uint8_t shm_flow_byte(uint32_t k, uint32_t j)
{
    return (uint8_t)(k * 31u + j + (j >> 8));
}

static int shm_flow_fn(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    shm_flow_t *fl = arg;
    (void)l;
    ck_assert_int_eq(f->hdr.type, SP_FT_BODY);
    ck_assert_uint_eq(f->hdr.stream, fl->got + 1);
    for (uint32_t j = 0; j < f->hdr.len; j++)
        if (f->payload[j] != shm_flow_byte(fl->got, j))
            ck_abort_msg("frame %u byte %u", fl->got, j);
    fl->got++;
    fl->bytes += f->hdr.len;
    return 0;
}

/* Queue frame k (stream k + 1) of a flow; SP_EAGAIN past the soft limit. */
static int shm_flow_send(sp_link_t *l, uint32_t k, uint8_t *scratch)
{
    uint32_t len = 1 + (k * 7919u) % 60000u;
    for (uint32_t j = 0; j < len; j++)
        scratch[j] = shm_flow_byte(k, j);
    return sp_link_send(l, SP_FT_BODY, k + 1, 1, scratch, len);
}

START_TEST(link_shm_readability_driven)
{
    /* Frames up to 15 times the ring, both ways at once, driven the way
     * an event loop drives a link: on_readable when poll() says the fd is
     * readable, one flush after queueing - never a blind retry.  Room in
     * the ring is learnt through readability alone; a lost wake-up shows
     * as 2 s without readability while work remains. */
    const uint32_t nframes = 150;
    duo_t d;
    shm_duo_up(&d, SP_SHMLINK_RING_MIN, NULL);
    shm_flow_t to_s = {0, 0}, to_c = {0, 0};
    uint32_t kc = 0, ks = 0;
    uint8_t *scratch = malloc(60000);
    ck_assert_ptr_nonnull(scratch);
    int64_t t0 = sp_now_ns();
    while (to_s.got < nframes || to_c.got < nframes) {
        int queued = 0;
        while (kc < nframes && shm_flow_send(&d.c, kc, scratch) == 0)
            kc++, queued |= 1;
        while (ks < nframes && shm_flow_send(&d.s, ks, scratch) == 0)
            ks++, queued |= 2;
        if (queued & 1) {
            int rc = sp_link_flush(&d.c);
            ck_assert(rc == 0 || rc == SP_EAGAIN);
        }
        if (queued & 2) {
            int rc = sp_link_flush(&d.s);
            ck_assert(rc == 0 || rc == SP_EAGAIN);
        }
        struct pollfd p[2] = {{d.c.fd, POLLIN, 0}, {d.s.fd, POLLIN, 0}};
        int n = poll(p, 2, 2000);
        ck_assert_msg(n > 0,
                      "lost wake-up: nothing readable for 2 s (to server "
                      "%u/%u, to client %u/%u; pending %zu / %zu)",
                      to_s.got, nframes, to_c.got, nframes,
                      sp_link_pending(&d.c), sp_link_pending(&d.s));
        if (p[0].revents & POLLIN) {
            int rc = sp_link_on_readable(&d.c, shm_flow_fn, &to_c);
            ck_assert_msg(rc == 0, "client: %d %s", rc, d.c.err);
        }
        if (p[1].revents & POLLIN) {
            int rc = sp_link_on_readable(&d.s, shm_flow_fn, &to_s);
            ck_assert_msg(rc == 0, "server: %d %s", rc, d.s.err);
        }
        ck_assert_msg(sp_now_ns() - t0 < 30ll * 1000000000, "too slow");
    }
    ck_assert_uint_eq(d.c.bytes_out, d.s.bytes_in);
    ck_assert_uint_eq(d.s.bytes_out, d.c.bytes_in);
    ck_assert_uint_gt(to_s.bytes, 100 * SP_SHMLINK_RING_MIN);
    ck_assert_uint_eq(sp_link_pending(&d.c), 0);
    ck_assert_uint_eq(sp_link_pending(&d.s), 0);
    free(scratch);
    duo_free(&d);
}
END_TEST

START_TEST(link_shm_init_failure)
{
    /* ctl is taken over in every case: closed when init fails. */
    int sv[2];
    sp_link_t l;
    sp_link_config_t c = config(NULL, "n");
    for (int client = 0; client < 2; client++) {
        mkpair(sv);
        ck_assert_int_eq(sp_link_init_shm(&l, sv[0], client, 5000, &c),
                         SP_ESYS);
        ck_assert_int_eq(errno, EINVAL);
        ck_assert_ptr_nonnull(strstr(l.err, "ring size"));
        ck_assert_int_eq(l.state, SP_LINK_CLOSED);
        ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
        ck_assert_int_eq(errno, EBADF);
        sp_link_free(&l); /* harmless */
        close(sv[1]);
    }
    sp_link_config_t bad = config(NULL, "bad\nnode");
    for (int client = 0; client < 2; client++) {
        mkpair(sv);
        ck_assert_int_eq(sp_link_init_shm(&l, sv[0], client,
                                          SP_SHMLINK_RING_MIN, &bad),
                         SP_EINVAL);
        ck_assert_ptr_nonnull(strstr(l.err, "node name"));
        ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
        sp_link_free(&l);
        close(sv[1]);
    }
}
END_TEST

START_TEST(link_shm_socket_bytes)
{
    /* After the rendezvous the socket carries the wake-ups: single bytes.
     * A stray byte (or many) on it is one more wake-up - harmless: the
     * link stays up, takes the bytes off, and frames flow both ways. */
    int spare;
    duo_t d;
    shm_duo_up(&d, SP_SHMLINK_RING_MIN, &spare);
    ck_assert_int_eq(write(spare, "?", 1), 1);
    struct pollfd p = {d.s.fd, POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert_int_eq(sp_link_on_readable(&d.s, rec_fn, &d.sr), 0);
    ck_assert_int_eq(d.s.state, SP_LINK_UP);
    ck_assert_int_eq(d.sr.n, 0);
    /* Taken off: no longer readable (no busy loop on a stray byte). */
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    /* Many, with a frame behind them; and the other way round. */
    static const char junk[3000] = {'?'};
    ck_assert_int_eq(write(spare, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "after", 5), 0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_BODY, 1, 1, "back", 4), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.cs.rc, 0);
    ck_assert_int_eq(d.ss.rc, 0);
    ck_assert_int_eq(d.c.state, SP_LINK_UP);
    ck_assert_int_eq(d.s.state, SP_LINK_UP);
    ck_assert_int_eq(d.sr.n, 1);
    ck_assert_uint_eq(d.sr.len[0], 5);
    ck_assert_uint_eq(d.sr.first[0], 'a');
    ck_assert_int_eq(d.cr.n, 1);
    ck_assert_uint_eq(d.cr.first[0], 'b');
    ck_assert_str_eq(d.s.err, "");
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    /* Once the last copy of the client's socket is gone (spare too), the
     * server's link says closed. */
    close(spare);
    sp_link_free(&d.c);
    ck_assert_int_eq(shm_until_error(&d.s, &d.sr), SP_ECLOSED);
    duo_free(&d);
}
END_TEST

/* Child and parent report through a pipe: one byte. */
static void note_wait(int fd)
{
    char c;
    ck_assert_int_eq(read(fd, &c, 1), 1);
}

START_TEST(link_shm_drop_in_child)
{
    duo_t d;
    shm_duo_up(&d, SP_SHMLINK_RING_MIN, NULL);

    /* A child that drops both links and exits: the parent's go on. */
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "before", 6), 0);
    ck_assert_int_eq(sp_link_flush(&d.c), 0); /* in the ring at fork */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_link_drop(&d.c);
        sp_link_drop(&d.s);
        _exit(0);
    }
    sp_test_wait_ok(pid);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "after", 5), 0);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_BODY, 1, 1, "back", 4), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.cs.rc, 0);
    ck_assert_int_eq(d.ss.rc, 0);
    ck_assert_int_eq(d.sr.n, 2);
    ck_assert_uint_eq(d.sr.first[0], 'b');
    ck_assert_uint_eq(d.sr.first[1], 'a');
    ck_assert_int_eq(d.cr.n, 1);
    ck_assert_uint_eq(d.cr.first[0], 'b');

    /* A child that drops both and lives on: frames still flow with
     * wake-ups (poll-driven), and the parent's close still reaches the
     * peer - the child holds no copy of the socket any more. */
    int note[2];
    ck_assert_int_eq(pipe2(note, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        sp_link_drop(&d.c);
        sp_link_drop(&d.s);
        if (write(note[1], "d", 1) != 1)
            _exit(2);
        pause();
        _exit(3);
    }
    close(note[1]);
    note_wait(note[0]);
    close(note[0]);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 3, 1, "ping", 4), 0);
        ck_assert_int_eq(sp_link_flush(&d.c), 0);
        wait_fd(d.s.fd, POLLIN);
        ck_assert_int_eq(sp_link_on_readable(&d.s, rec_fn, &d.sr), 0);
        ck_assert_int_eq(d.sr.n, 3 + i);
        ck_assert_int_eq(sp_link_send(&d.s, SP_FT_BODY, 3, 1, "pong", 4), 0);
        ck_assert_int_eq(sp_link_flush(&d.s), 0);
        wait_fd(d.c.fd, POLLIN);
        ck_assert_int_eq(sp_link_on_readable(&d.c, rec_fn, &d.cr), 0);
        ck_assert_int_eq(d.cr.n, 2 + i);
    }
    sp_link_free(&d.c);
    ck_assert_int_eq(shm_until_error(&d.s, &d.sr), SP_ECLOSED);
    sp_link_free(&d.s);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

/* ---- API misuse ------------------------------------------------------- */

START_TEST(link_api_misuse)
{
    int sv[2];
    mkpair(sv);
    sp_link_t l;
    sp_link_config_t c = config(NULL, "bad\nnode");
    ck_assert_int_eq(sp_link_init(&l, sv[0], 1, &c), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(l.err, "node name"));
    sp_link_free(&l); /* harmless; the fd is still ours */
    ck_assert_int_ge(fcntl(sv[0], F_GETFD), 0);
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[299] = '\0';
    c = config(NULL, longname);
    ck_assert_int_eq(sp_link_init(&l, sv[0], 1, &c), SP_EINVAL);
    ck_assert_int_ge(fcntl(sv[0], F_GETFD), 0);
    close(sv[0]);
    close(sv[1]);

    /* Out-of-range config values are clamped, not sent as they are. */
    mkpair(sv);
    c = config(NULL, NULL);
    c.max_payload = 10;
    c.initial_window = 0xffffffffu;
    ck_assert_int_eq(sp_link_init(&l, sv[0], 1, &c), 0);
    ck_assert_uint_eq(l.cfg.max_payload, SP_FRAME_MAX_PAYLOAD_MIN);
    ck_assert_uint_eq(l.cfg.initial_window, SP_FRAME_WINDOW_MAX);
    ck_assert_uint_eq(l.cfg.out_soft_limit, 4 * SP_FRAME_MAX_PAYLOAD_MIN);
    ck_assert_uint_eq(l.icap, SP_FRAME_HDR_SIZE + SP_FRAME_CTL_MAX);
    /* Before the handshake: stream and control frames wait. */
    ck_assert_int_eq(sp_link_send(&l, SP_FT_BODY, 1, 1, "x", 1), SP_ESTATE);
    ck_assert_int_eq(sp_link_send_credit(&l, 1, 1, 5), SP_ESTATE);
    ck_assert_int_eq(sp_link_send_abort(&l, 1, 1, 1, 0, NULL), SP_ESTATE);
    ck_assert_int_eq(sp_link_usable(&l), 0);
    ck_assert_int_eq(sp_link_send_goaway(&l, SP_GOAWAY_NORMAL, NULL), 0);
    sp_link_free(&l);
    close(sv[1]);

    duo_t d;
    duo_up(&d, NULL, NULL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_HELLO, 0, 0, NULL, 0), SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_PING, 0, 0, "12345678", 8),
                     SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, 99, 1, 1, NULL, 0), SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_END, 1, 1, "x", 1), SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_CREDIT, 1, 1, "x", 1), SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, NULL, 5), SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_RESPONSE_HEAD, 1, 1, "h", 1),
                     SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.s, SP_FT_REQUEST_HEAD, 1, 1, "h", 1),
                     SP_EINVAL);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_ACCEPT, 1, 1, NULL, 0),
                     SP_EINVAL);
    ck_assert_int_eq(sp_link_sendv(&d.c, SP_FT_BODY, 1, 1, NULL, 1), SP_EINVAL);
    ck_assert_int_eq(sp_link_sendv(&d.c, SP_FT_BODY, 1, 1, NULL, -1),
                     SP_EINVAL);
    ck_assert_int_eq(sp_link_send_credit(&d.c, 1, 1, 0), SP_EINVAL);
    ck_assert_int_eq(sp_link_send_abort(&d.c, 1, 1, 1, 42, NULL), SP_EINVAL);
    ck_assert_uint_eq(sp_link_pending(&d.c), 0); /* nothing half-queued */
    /* An empty BODY and an empty sendv are fine. */
    ck_assert_int_eq(sp_link_sendv(&d.c, SP_FT_BODY, 1, 1, NULL, 0), 0);
    ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, NULL, 0), 0);
    pump(&d.cs, &d.ss);
    ck_assert_int_eq(d.sr.n, 2);
    ck_assert_uint_eq(d.sr.len[1], 0);
    duo_free(&d);
}
END_TEST

START_TEST(link_callback_error)
{
    duo_t d;
    duo_up(&d, NULL, NULL);
    d.sr.fail_at = 2;
    for (uint32_t i = 0; i < 3; i++)
        ck_assert_int_eq(sp_link_send(&d.c, SP_FT_BODY, 1, 1, "abc", 3), 0);
    ck_assert_int_eq(sp_link_flush(&d.c), 0);
    ck_assert_int_eq(sp_link_on_readable(&d.s, rec_fn, &d.sr), SP_EINVAL);
    ck_assert_int_eq(d.sr.n, 1); /* the third frame is never delivered */
    ck_assert_int_eq(d.s.state, SP_LINK_CLOSED);
    ck_assert_ptr_nonnull(strstr(d.s.err, "closed by application"));
    ck_assert_ptr_nonnull(strstr(d.s.err, "BODY frame on stream 1"));
    ck_assert_uint_eq(sp_link_pending(&d.s), 0); /* no GOAWAY of ours */
    duo_free(&d);
}
END_TEST

Suite *suite_link(void)
{
    Suite *s = suite_create("link");
    TCase *ta = tcase_create("auth");
    tcase_set_timeout(ta, 60);
    tcase_add_test(ta, auth_known_answer);
    tcase_add_test(ta, auth_nonce);
    tcase_add_test(ta, auth_load_secret);
    suite_add_tcase(s, ta);

    TCase *tc = tcase_create("link");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, link_handshake_plain);
    tcase_add_test(tc, link_handshake_secret);
    tcase_add_test(tc, link_wrong_secret_client_detects);
    tcase_add_test(tc, link_wrong_secret_server_detects);
    tcase_add_test(tc, link_secret_on_one_side_only);
    tcase_add_test(tc, link_handshake_violations);
    tcase_add_test(tc, link_client_violations);
    tcase_add_test(tc, link_ping_pong);
    tcase_add_test(tc, link_goaway);
    tcase_add_test(tc, link_stream_order_pieces);
    tcase_add_test(tc, link_stream_big_frames);
    tcase_add_test(tc, link_oversized_frame);
    tcase_add_test(tc, link_garbage);
    tcase_add_test(tc, link_truncated_then_eof);
    tcase_add_test(tc, link_soft_limit);
    tcase_add_test(tc, link_ping_flood_bounded);
    tcase_add_test(tc, link_dead_peer_no_sigpipe);
    tcase_add_test(tc, link_real_sockets);
    tcase_add_test(tc, link_tcp_reset);
    tcase_add_test(tc, link_api_misuse);
    tcase_add_test(tc, link_callback_error);
    tcase_add_test(tc, link_shm_frames);
    tcase_add_test(tc, link_shm_readability_driven);
    tcase_add_test(tc, link_shm_init_failure);
    tcase_add_test(tc, link_shm_socket_bytes);
    tcase_add_test(tc, link_shm_drop_in_child);
    suite_add_tcase(s, tc);
    return s;
}
