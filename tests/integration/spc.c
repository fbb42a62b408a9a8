/*
 * spc.c - the test client (see spc.h).
 */
#include "spc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_auth.h"
#include "sp_crc.h"
#include "sp_shmlink.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "sp_net.h"
#include "sp_proc.h"

static int spc_frame(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    spc_t *c = arg;
    if (f->hdr.stream >= c->nstreams)
        return 0;
    spc_stream_t *s = &c->streams[f->hdr.stream];
    if (!s->open || s->gen != f->hdr.gen)
        return 0; /* late frame of an earlier request */
    switch (f->hdr.type) {
    case SP_FT_ACCEPT:
        s->accepted = 1;
        break;
    case SP_FT_RESPONSE_HEAD: {
        free(s->head_copy);
        s->head_copy = malloc(f->hdr.len + 1);
        memcpy(s->head_copy, f->payload, f->hdr.len);
        sp_head_limits_t lim = {SPC_MAX_RESP_HEADERS, 1u << 20};
        if (sp_resphead_decode(s->head_copy, f->hdr.len, &lim, &s->rh, s->kv,
                               SPC_MAX_RESP_HEADERS) < 0)
            return SP_EPROTO;
        s->status = s->rh.status;
        s->got_head = 1;
        s->t_head_ns = sp_now_ns();
        break;
    }
    case SP_FT_BODY:
        if (s->check_pattern && s->pattern_bad == 0)
            for (uint32_t i = 0; i < f->hdr.len; i++)
                if (f->payload[i] != spc_pattern_byte(s->body_total + i)) {
                    s->pattern_bad = (int64_t)(s->body_total + i) + 1;
                    break;
                }
        s->body_total += f->hdr.len;
        s->body_crc = sp_crc32c(s->body_crc, f->payload, f->hdr.len);
        if (s->keep_body) {
            if (s->body_len + f->hdr.len > s->body_cap) {
                size_t cap = s->body_cap ? s->body_cap * 2 : 65536;
                while (cap < s->body_len + f->hdr.len)
                    cap *= 2;
                s->body = realloc(s->body, cap);
                s->body_cap = cap;
            }
            memcpy(s->body + s->body_len, f->payload, f->hdr.len);
            s->body_len += f->hdr.len;
        }
        if (s->auto_credit && f->hdr.len > 0)
            sp_link_send_credit(l, f->hdr.stream, s->gen, f->hdr.len);
        break;
    case SP_FT_END:
        s->ended = 1;
        s->open = 0;
        s->t_end_ns = sp_now_ns();
        break;
    case SP_FT_ABORT: {
        sp_abort_t a;
        if (sp_abort_decode(f->payload, f->hdr.len, &a) == 0) {
            s->abort_code = a.code;
            s->abort_status = a.status;
            snprintf(s->abort_reason, sizeof(s->abort_reason), "%s",
                     a.reason.ptr);
        }
        s->aborted = 1;
        s->open = 0;
        s->t_end_ns = sp_now_ns();
        break;
    }
    case SP_FT_CREDIT: {
        uint32_t inc;
        if (sp_credit_decode(f->payload, f->hdr.len, &inc) == 0)
            s->send_credit += inc;
        break;
    }
    }
    return 0;
}

/* The link is gone: every stream still open on it is over (lost). */
static int spc_closed(spc_t *c, int rc)
{
    c->closed = 1;
    c->close_rc = rc;
    for (uint32_t i = 0; i < c->nstreams; i++) {
        spc_stream_t *s = &c->streams[i];
        if (s->open) {
            s->open = 0;
            s->lost = 1;
            s->t_end_ns = sp_now_ns();
        }
    }
    return SP_ECLOSED;
}

int spc_pump(spc_t *c, int timeout_ms)
{
    if (c->closed)
        return SP_ECLOSED;
    struct pollfd p = {.fd = c->l.fd, .events = POLLIN};
    if (sp_link_pending(&c->l))
        p.events |= POLLOUT;
    int n = poll(&p, 1, timeout_ms);
    if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
        int rc = sp_link_on_readable(&c->l, spc_frame, c);
        if (rc < 0) {
            sp_link_flush(&c->l); /* our GOAWAY, if any */
            return spc_closed(c, rc);
        }
    }
    int rc = sp_link_flush(&c->l);
    if (rc < 0 && rc != SP_EAGAIN)
        return spc_closed(c, rc);
    return 0;
}

int spc_connect(spc_t *c, const char *addr, const char *secret,
                uint32_t nstreams, int timeout_ms, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->l.fd = -1; /* spc_close after a failed connect closes nothing */
    c->closed = 1;
    sp_addr_t a;
    int rc = sp_addr_parse(addr, &a, err, errlen);
    if (rc < 0)
        return rc;
    c->cfg.max_payload = 65536;
    c->cfg.initial_window = 262144;
    c->cfg.max_streams = nstreams;
    c->cfg.node = "spc";
    if (secret != NULL) {
        size_t n = strlen(secret);
        memcpy(c->secret, secret, n);
        c->cfg.secret = c->secret;
        c->cfg.secret_len = n;
    }
    c->streams = calloc(nstreams, sizeof(*c->streams));
    c->nstreams = nstreams;
    int fd = sp_addr_connect(&a);
    if (fd < 0) {
        snprintf(err, errlen, "connect %s: %s", addr, strerror(errno));
        return fd;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_ms) != 1 || sp_net_connect_result(fd) < 0) {
        snprintf(err, errlen, "connect %s: %s", addr, strerror(errno));
        close(fd);
        return SP_ESYS;
    }
    if (a.kind == SP_ADDR_SHM) {
        /* The rendezvous socket is connected: move onto the rings. */
        rc = sp_link_init_shm(&c->l, fd, 1, SP_SHMLINK_RING_DEFAULT, &c->cfg);
        if (rc < 0) {
            snprintf(err, errlen, "shm: link: %s", c->l.err);
            return rc;
        }
    } else if ((rc = sp_link_init(&c->l, fd, 1, &c->cfg)) < 0) {
        close(fd);
        return rc;
    }
    c->closed = 0;
    int64_t end = sp_now_ns() + (int64_t)timeout_ms * SP_NSEC_PER_MSEC;
    while (c->l.state != SP_LINK_UP) {
        if (spc_pump(c, 50) < 0) {
            snprintf(err, errlen, "handshake: %s (%s)", c->l.err,
                     sp_strerror(c->close_rc));
            return c->close_rc ? c->close_rc : SP_ECLOSED;
        }
        if (sp_now_ns() > end) {
            snprintf(err, errlen, "handshake timed out");
            return SP_ETIMEDOUT;
        }
    }
    return 0;
}

void spc_close(spc_t *c)
{
    for (uint32_t i = 0; i < c->nstreams; i++) {
        free(c->streams[i].head_copy);
        free(c->streams[i].body);
    }
    free(c->streams);
    c->streams = NULL;
    sp_link_free(&c->l);
}

int spc_head_encode(const char *method, const char *uri,
                    const char *const *headers, int body,
                    int64_t content_length, uint8_t *buf, size_t cap)
{
    sp_kv_t kv[128];
    uint32_t n = 0;
    for (; headers && headers[2 * n] && n < 128; n++) {
        kv[n].name = sp_str(headers[2 * n]);
        kv[n].value = sp_str(headers[2 * n + 1]);
    }
    sp_reqhead_t h;
    memset(&h, 0, sizeof(h));
    h.method = sp_str(method);
    h.uri = sp_str(uri);
    h.protocol = sp_str("HTTP/1.1");
    h.scheme = sp_str("http");
    h.server_name = sp_str("localhost");
    h.remote_addr = sp_str("127.0.0.1");
    h.local_addr = sp_str("127.0.0.1");
    h.remote_port = 40000;
    h.local_port = 80;
    h.content_length = body == 1 ? content_length : -1;
    h.flags = body ? SP_REQ_BODY : 0;
    if (body == 2)
        h.flags |= SP_REQ_CHUNKED;
    h.headers = kv;
    h.nheaders = n;
    return sp_reqhead_encode(&h, buf, cap);
}

int spc_request(spc_t *c, uint32_t id, const char *method, const char *uri,
                const char *const *headers, int body, int64_t content_length)
{
    if (id >= c->nstreams)
        return SP_EINVAL;
    if (!spc_usable(c))
        return SP_ESTATE;
    spc_stream_t *s = &c->streams[id];
    uint32_t gen = s->gen + 1;
    int keep = s->keep_body, pattern = s->check_pattern;
    free(s->head_copy);
    uint8_t *b = s->body;
    size_t cap = s->body_cap;
    memset(s, 0, sizeof(*s));
    s->body = b;
    s->body_cap = cap;
    s->keep_body = keep;
    s->check_pattern = pattern;
    s->gen = gen;
    s->open = 1;
    s->auto_credit = 1;
    s->send_credit = c->l.peer_initial_window;
    s->t_start_ns = sp_now_ns();
    static uint8_t buf[65536];
    int len = spc_head_encode(method, uri, headers, body, content_length, buf,
                              sizeof(buf));
    if (len < 0)
        return len;
    for (;;) {
        int rc = sp_link_send(&c->l, SP_FT_REQUEST_HEAD, id, gen, buf,
                              (uint32_t)len);
        if (rc != SP_EAGAIN)
            return rc;
        if (spc_pump(c, 100) < 0)
            return SP_ECLOSED;
    }
}

int spc_send_body(spc_t *c, uint32_t id, const void *data, size_t len,
                  int timeout_ms)
{
    spc_stream_t *s = &c->streams[id];
    int64_t end = sp_now_ns() + (int64_t)timeout_ms * SP_NSEC_PER_MSEC;
    size_t max = c->l.peer_max_payload;
    while (len > 0) {
        if (!s->open)
            return SP_ESTATE;
        if (s->send_credit <= 0 || sp_link_pending(&c->l) > (1u << 20)) {
            if (sp_now_ns() > end)
                return SP_ETIMEDOUT;
            if (spc_pump(c, 20) < 0)
                return SP_ECLOSED;
            continue;
        }
        size_t n = len;
        if ((int64_t)n > s->send_credit)
            n = (size_t)s->send_credit;
        if (n > max)
            n = max;
        int rc = sp_link_send(&c->l, SP_FT_BODY, id, s->gen, data, (uint32_t)n);
        if (rc == SP_EAGAIN) {
            if (spc_pump(c, 20) < 0)
                return SP_ECLOSED;
            continue;
        }
        if (rc < 0)
            return rc;
        s->send_credit -= (int64_t)n;
        data = (const char *)data + n;
        len -= n;
        if (sp_link_pending(&c->l) > 65536 && spc_pump(c, 0) < 0)
            return SP_ECLOSED;
    }
    return 0;
}

int spc_end(spc_t *c, uint32_t id)
{
    int rc = sp_link_send(&c->l, SP_FT_END, id, c->streams[id].gen, NULL, 0);
    sp_link_flush(&c->l);
    return rc;
}

int spc_abort(spc_t *c, uint32_t id)
{
    spc_stream_t *s = &c->streams[id];
    int rc = sp_link_send_abort(&c->l, id, s->gen, SP_ABORT_CANCEL, 0,
                                "client gone");
    s->open = 0;
    sp_link_flush(&c->l);
    return rc;
}

int spc_credit(spc_t *c, uint32_t id, uint32_t n)
{
    return sp_link_send_credit(&c->l, id, c->streams[id].gen, n);
}

int spc_wait(spc_t *c, uint32_t id, int timeout_ms)
{
    spc_stream_t *s = &c->streams[id];
    int64_t end = sp_now_ns() + (int64_t)timeout_ms * SP_NSEC_PER_MSEC;
    while (!s->ended && !s->aborted) {
        if (s->lost)
            return SP_ECLOSED;
        if (sp_now_ns() > end)
            return SP_ETIMEDOUT;
        if (spc_pump(c, 50) < 0)
            return SP_ECLOSED;
    }
    return 0;
}

const char *spc_header(const spc_stream_t *s, const char *name)
{
    const sp_kv_t *kv = sp_kv_find(s->rh.headers, s->rh.nheaders, name);
    return kv ? kv->value.ptr : NULL;
}

int spc_raw(spc_t *c, const void *buf, size_t len)
{
    ssize_t n = write(c->l.fd, buf, len);
    return n == (ssize_t)len ? 0 : SP_ESYS;
}

int spc_usable(const spc_t *c)
{
    return !c->closed && sp_link_usable(&c->l);
}

uint32_t spc_open_streams(const spc_t *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->nstreams; i++)
        n += c->streams[i].open != 0;
    return n;
}

/* ---- raw peers ---------------------------------------------------------- */

int spc_raw_connect(const char *addr, int timeout_ms)
{
    sp_addr_t a;
    char err[256];
    if (sp_addr_parse(addr, &a, err, sizeof(err)) < 0)
        return SP_EINVAL;
    int fd = sp_addr_connect(&a);
    if (fd < 0)
        return fd;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_ms) != 1 || sp_net_connect_result(fd) < 0) {
        close(fd);
        return SP_ESYS;
    }
    return fd;
}

static int raw_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 5000) != 1)
            return SP_ETIMEDOUT;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return SP_ECLOSED;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int spc_raw_write(int fd, const void *buf, size_t len)
{
    return raw_write_all(fd, buf, len);
}

int spc_raw_frame(int fd, uint8_t version, uint8_t type, uint16_t flags,
                  uint32_t stream, uint32_t gen, const void *payload,
                  uint32_t len)
{
    uint8_t h[SP_FRAME_HDR_SIZE];
    sp_frame_hdr_t hdr = {.version = version, .type = type, .flags = flags,
                          .stream = stream, .gen = gen, .len = len};
    sp_frame_hdr_encode(&hdr, h);
    int rc = raw_write_all(fd, h, sizeof(h));
    if (rc == 0 && len > 0)
        rc = raw_write_all(fd, payload, len);
    return rc;
}

/* Read exactly len bytes by the deadline. */
static int raw_read_full(int fd, uint8_t *p, size_t len, int64_t end)
{
    while (len > 0) {
        int64_t left = (end - sp_now_ns()) / SP_NSEC_PER_MSEC;
        if (left <= 0)
            return SP_ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)left) != 1)
            continue;
        ssize_t n = read(fd, p, len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return SP_ECLOSED;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int spc_raw_read(int fd, uint8_t *buf, size_t cap, sp_frame_t *f,
                 int timeout_ms)
{
    int64_t end = sp_now_ns() + (int64_t)timeout_ms * SP_NSEC_PER_MSEC;
    int rc = raw_read_full(fd, buf, SP_FRAME_HDR_SIZE, end);
    if (rc < 0)
        return rc;
    sp_frame_hdr_t h;
    h.version = buf[0];
    h.type = buf[1];
    h.flags = (uint16_t)(buf[2] << 8 | buf[3]);
    h.stream = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
               (uint32_t)buf[6] << 8 | buf[7];
    h.gen = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 |
            (uint32_t)buf[10] << 8 | buf[11];
    h.len = (uint32_t)buf[12] << 24 | (uint32_t)buf[13] << 16 |
            (uint32_t)buf[14] << 8 | buf[15];
    if (h.len > cap - SP_FRAME_HDR_SIZE)
        return SP_EMSGSIZE;
    rc = raw_read_full(fd, buf + SP_FRAME_HDR_SIZE, h.len, end);
    if (rc < 0)
        return rc;
    f->hdr = h;
    f->payload = buf + SP_FRAME_HDR_SIZE;
    return 0;
}

int spc_raw_wait_close(int fd, int timeout_ms, int *goaway)
{
    static uint8_t buf[SP_FRAME_HDR_SIZE + (1u << 20)];
    int64_t end = sp_now_ns() + (int64_t)timeout_ms * SP_NSEC_PER_MSEC;
    *goaway = -1;
    for (;;) {
        int64_t left = (end - sp_now_ns()) / SP_NSEC_PER_MSEC;
        if (left <= 0)
            return SP_ETIMEDOUT;
        sp_frame_t f;
        int rc = spc_raw_read(fd, buf, sizeof(buf), &f, (int)left);
        if (rc == SP_ECLOSED)
            return 0;
        if (rc < 0)
            return rc;
        if (f.hdr.type == SP_FT_GOAWAY && *goaway < 0) {
            sp_goaway_t g;
            if (sp_goaway_decode(f.payload, f.hdr.len, &g) == 0)
                *goaway = (int)g.code;
        }
    }
}

int spc_raw_hello(int fd, uint8_t nonce_c[32], uint8_t nonce_s[32],
                  int timeout_ms)
{
    uint8_t pl[512];
    sp_hello_t h;
    memset(&h, 0, sizeof(h));
    h.min_version = h.max_version = SP_PROTO_VERSION;
    h.max_payload = 65536;
    h.initial_window = 262144;
    h.max_streams = 16;
    if (sp_auth_nonce(nonce_c) < 0)
        return SP_ESYS;
    memcpy(h.nonce, nonce_c, SP_NONCE_SIZE);
    h.node = sp_str("spc-raw");
    int n = sp_hello_encode(&h, pl, sizeof(pl));
    if (n < 0)
        return n;
    int rc = spc_raw_frame(fd, SP_PROTO_VERSION, SP_FT_HELLO, 0, 0, 0, pl,
                           (uint32_t)n);
    if (rc < 0)
        return rc;
    uint8_t buf[SP_FRAME_HDR_SIZE + 4096];
    sp_frame_t f;
    rc = spc_raw_read(fd, buf, sizeof(buf), &f, timeout_ms);
    if (rc < 0)
        return rc;
    sp_hello_ack_t a;
    if (f.hdr.type != SP_FT_HELLO_ACK ||
        sp_hello_ack_decode(f.payload, f.hdr.len, &a) < 0)
        return SP_EPROTO;
    memcpy(nonce_s, a.nonce, SP_NONCE_SIZE);
    return 0;
}
