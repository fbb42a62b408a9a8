/*
 * fuzz_link.c - libFuzzer target for a link (sp_link.c) fed by a hostile
 * peer: the handshake, link frames and stream frames, through a real
 * socketpair so the read/flush paths are the production ones.
 *
 * Input: one mode byte, then the bytes the peer sends.
 *   bit 0     1 = our link is the client (the input plays the server and
 *             should start with HELLO_ACK), 0 = our link is the server
 *             (the input should start with HELLO)
 *   bit 1     our side has a secret (the input cannot know the random
 *             nonces, so this exercises the refusals)
 *   bit 2     max_payload 4096 instead of 65536
 *   bits 3-7  write size: the peer's bytes arrive in pieces of
 *             1 + 41 * n bytes (at least size / 64 + 1), each followed
 *             by on_readable + flush
 *
 * The callback answers stream frames the way a proxy loop would (echo
 * BODY back, grant CREDIT, PING now and then) so the output queue and
 * the soft limit are exercised too.  Invariants checked (abort on
 * failure): a delivered frame is within our max_payload and arrives only
 * when the link is UP; an error leaves the link CLOSED with a printable
 * reason; no error leaves it open.  With no secret the all-zero proofs
 * let the fuzzer reach UP.
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -Icommon \
 *       -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_link.c \
 *       common/sp_*.c -lcrypto -o /tmp/fl
 *   /tmp/fl -max_total_time=60 tests/fuzz/corpus/link
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_link.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c))                                                              \
            abort();                                                           \
    } while (0)

static const char secret[] = "fuzzing secret, 32 bytes long...";

static int on_frame(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    unsigned *count = arg;

    CHECK(l->state == SP_LINK_UP);
    CHECK(f->hdr.len <= l->cfg.max_payload);
    CHECK(f->hdr.type >= SP_FT_REQUEST_HEAD);
    (*count)++;
    switch (f->hdr.type) {
    case SP_FT_BODY:
        /* SP_EAGAIN past the soft limit, SP_ELIMIT over the peer's max:
         * both fine, anything else is a bug. */
        {
            int rc = sp_link_send(l, SP_FT_BODY, f->hdr.stream, f->hdr.gen,
                                  f->payload, f->hdr.len);
            CHECK(rc == 0 || rc == SP_EAGAIN || rc == SP_ELIMIT);
            CHECK(sp_link_send_credit(l, f->hdr.stream, f->hdr.gen,
                                      f->hdr.len + 1) == 0);
        }
        break;
    case SP_FT_REQUEST_HEAD:
        CHECK(!l->client);
        CHECK(sp_link_send(l, SP_FT_ACCEPT, f->hdr.stream, f->hdr.gen, NULL,
                           0) == 0);
        break;
    case SP_FT_RESPONSE_HEAD:
        CHECK(l->client);
        break;
    case SP_FT_END:
        CHECK(sp_link_send_abort(l, f->hdr.stream, f->hdr.gen, SP_ABORT_CANCEL,
                                 499, "fuzz\x01end") == 0);
        break;
    }
    if (*count % 7 == 0)
        CHECK(sp_link_ping(l) == 0);
    if (*count % 50 == 0)
        CHECK(sp_link_send_goaway(l, SP_GOAWAY_RELOAD, "fuzz") == 0);
    return (*count % 997 == 0) ? SP_EINVAL : 0;
}

static void drain(int fd)
{
    static uint8_t sink[65536];
    while (read(fd, sink, sizeof(sink)) > 0)
        ;
}

static void check_after(const sp_link_t *l, int rc)
{
    if (rc < 0) {
        CHECK(l->state == SP_LINK_CLOSED);
        CHECK(l->err[0] != '\0');
        for (const char *p = l->err; *p; p++)
            CHECK(*p >= 0x20 && *p < 0x7f);
    } else {
        CHECK(rc == 0);
        CHECK(l->state != SP_LINK_CLOSED);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_link_config_t cfg;
    sp_link_t l;
    unsigned count = 0;
    int sv[2], rc = 0;

    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    memset(&cfg, 0, sizeof(cfg));
    if (mode & 2) {
        cfg.secret = (const uint8_t *)secret;
        cfg.secret_len = sizeof(secret) - 1;
    }
    cfg.max_payload = (mode & 4) ? 4096 : 65536;
    cfg.initial_window = 65536;
    cfg.max_streams = 8;
    cfg.node = "fuzz";
    size_t piece = 1 + 41 * (size_t)(mode >> 3);
    /* At most 64 pieces: byte-by-byte splits of short inputs, still fast
     * on long ones (each piece costs four system calls). */
    if (piece < size / 64 + 1)
        piece = size / 64 + 1;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) != 0)
        return 0;
    if (sp_link_init(&l, sv[0], mode & 1, &cfg) != 0) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    while (size > 0 && l.state != SP_LINK_CLOSED) {
        size_t n = size < piece ? size : piece;
        ssize_t w = write(sv[1], data, n);
        if (w > 0) {
            data += w;
            size -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN) {
            break;
        }
        rc = sp_link_on_readable(&l, on_frame, &count);
        check_after(&l, rc);
        int fr = sp_link_flush(&l);
        CHECK(fr == 0 || fr == SP_EAGAIN || fr == SP_ECLOSED || fr == SP_ESYS);
        drain(sv[1]);
    }
    if (l.state != SP_LINK_CLOSED) {
        /* EOF: whatever state the link is in, it must end cleanly. */
        shutdown(sv[1], SHUT_WR);
        rc = sp_link_on_readable(&l, on_frame, &count);
        CHECK(rc < 0);
        check_after(&l, rc);
    }
    /* The one flush a closed link still allows (a GOAWAY, say). */
    (void)sp_link_flush(&l);
    sp_link_free(&l);
    close(sv[1]);
    return 0;
}
