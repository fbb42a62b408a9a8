/*
 * mkcorpus.c - write the seed corpora of fuzz_frame and fuzz_head.
 *
 * Not built by the Makefile (only fuzz_*.c are targets).  Run it again
 * after a wire-format change:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Icommon tests/fuzz/mkcorpus.c \
 *      common/sp_frame.c common/sp_head.c -o /tmp/mkcorpus &&
 *   /tmp/mkcorpus tests/fuzz/corpus
 *
 * Seeds are small valid inputs covering every frame type and both heads,
 * so the fuzzer starts from the deep paths rather than from the header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_frame.h"
#include "sp_head.h"

static const char *outdir;
static uint8_t buf[8192];
static size_t used;

static void emit(const char *sub, const char *name)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(buf, 1, used, f) != used ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    used = 0;
}

static void must(int n)
{
    if (n < 0) {
        fprintf(stderr, "mkcorpus: encoding failed (%d)\n", n);
        exit(1);
    }
}

/* Append one frame whose payload the callback encodes in place. */
#define FRAME(type, stream, gen, encode_expr)                                  \
    do {                                                                       \
        uint8_t *pl_ = buf + used + SP_FRAME_HDR_SIZE;                         \
        size_t cap_ = sizeof(buf) - used - SP_FRAME_HDR_SIZE;                  \
        int n_ = (encode_expr);                                                \
        must(n_);                                                              \
        (void)cap_;                                                            \
        n_ = sp_frame_encode(buf + used, sizeof(buf) - used, type, 0, stream,  \
                             gen, pl_, (uint32_t)n_);                          \
        must(n_);                                                              \
        used += (size_t)n_;                                                    \
    } while (0)

/* clang-format off */
#define KV(n, v) {{n, sizeof(n) - 1}, {v, sizeof(v) - 1}}
/* clang-format on */

static sp_kv_t req_kv[] = {
    KV("Host", "example.com"),     KV("Cookie", "a=1"),
    KV("Cookie", "b=2"),           KV("Transfer-Encoding", "chunked"),
    KV("SSL_PROTOCOL", "TLSv1.3"), KV("SSL_CLIENT_S_DN", "CN=x"),
};

static sp_kv_t resp_kv[] = {
    KV("Content-Type", "text/plain"),
    KV("Set-Cookie", "a=1; Path=/"),
    KV("Set-Cookie", "b=2"),
};

static sp_reqhead_t req(void)
{
    sp_reqhead_t h;
    memset(&h, 0, sizeof(h));
    h.method = sp_str("POST");
    h.uri = sp_str("/app?x=1");
    h.protocol = sp_str("HTTP/1.1");
    h.scheme = sp_str("https");
    h.server_name = sp_str("example.com");
    h.remote_addr = sp_str("192.0.2.7");
    h.local_addr = sp_str("192.0.2.1");
    h.remote_user = sp_str("bob");
    h.auth_type = sp_str("Basic");
    h.remote_port = 50000;
    h.local_port = 443;
    h.flags = SP_REQ_HTTPS | SP_REQ_BODY | SP_REQ_CHUNKED;
    h.content_length = -1;
    h.headers = req_kv;
    h.nheaders = 4;
    h.env = req_kv + 4;
    h.nenv = 2;
    return h;
}

static sp_resphead_t resp(void)
{
    sp_resphead_t h;
    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.reason = sp_str("OK");
    h.content_length = 5;
    h.headers = resp_kv;
    h.nheaders = 3;
    return h;
}

static void frames(void)
{
    sp_hello_t hello = {1, 1, 65536, 262144, 256, 0, {0}, sp_str("proxy")};
    sp_hello_ack_t ack = {1, 65536, 65536, 64, 0, {0}, {0}, sp_str("be")};
    sp_goaway_t ga = {SP_GOAWAY_RELOAD, sp_str("reload")};
    sp_abort_t ab = {SP_ABORT_CANCEL, 0, sp_str("client gone")};
    sp_abort_t ab2 = {SP_ABORT_OVERLOAD, 503, sp_str("")};
    uint8_t proof[SP_PROOF_SIZE], ping[SP_PING_SIZE] = {1, 2, 3, 4, 5, 6, 7};
    sp_reqhead_t rq = req();
    sp_resphead_t rs = resp();

    memset(hello.nonce, 0x11, sizeof(hello.nonce));
    memset(ack.nonce, 0x22, sizeof(ack.nonce));
    memset(ack.proof, 0x33, sizeof(ack.proof));
    memset(proof, 0x44, sizeof(proof));

    /* one file per type */
    FRAME(SP_FT_HELLO, 0, 0, sp_hello_encode(&hello, pl_, cap_));
    emit("frame", "hello");
    FRAME(SP_FT_HELLO_ACK, 0, 0, sp_hello_ack_encode(&ack, pl_, cap_));
    emit("frame", "hello_ack");
    FRAME(SP_FT_AUTH, 0, 0, sp_auth_encode(proof, pl_, cap_));
    emit("frame", "auth");
    FRAME(SP_FT_PING, 0, 0, sp_ping_encode(ping, pl_, cap_));
    emit("frame", "ping");
    FRAME(SP_FT_PONG, 0, 0, sp_ping_encode(ping, pl_, cap_));
    emit("frame", "pong");
    FRAME(SP_FT_GOAWAY, 0, 0, sp_goaway_encode(&ga, pl_, cap_));
    emit("frame", "goaway");
    FRAME(SP_FT_REQUEST_HEAD, 3, 7, sp_reqhead_encode(&rq, pl_, cap_));
    emit("frame", "request_head");
    FRAME(SP_FT_ACCEPT, 3, 7, 0);
    emit("frame", "accept");
    FRAME(SP_FT_BODY, 3, 7, (memcpy(pl_, "hello", 5), 5));
    emit("frame", "body");
    FRAME(SP_FT_END, 3, 7, 0);
    emit("frame", "end");
    FRAME(SP_FT_RESPONSE_HEAD, 3, 7, sp_resphead_encode(&rs, pl_, cap_));
    emit("frame", "response_head");
    FRAME(SP_FT_ABORT, 3, 7, sp_abort_encode(&ab, pl_, cap_));
    emit("frame", "abort");
    FRAME(SP_FT_CREDIT, 3, 7, sp_credit_encode(65536, pl_, cap_));
    emit("frame", "credit");

    /* whole conversations */
    FRAME(SP_FT_HELLO, 0, 0, sp_hello_encode(&hello, pl_, cap_));
    FRAME(SP_FT_HELLO_ACK, 0, 0, sp_hello_ack_encode(&ack, pl_, cap_));
    FRAME(SP_FT_AUTH, 0, 0, sp_auth_encode(proof, pl_, cap_));
    emit("frame", "handshake");
    FRAME(SP_FT_REQUEST_HEAD, 0, 1, sp_reqhead_encode(&rq, pl_, cap_));
    FRAME(SP_FT_BODY, 0, 1, (memcpy(pl_, "abc", 3), 3));
    FRAME(SP_FT_END, 0, 1, 0);
    FRAME(SP_FT_ACCEPT, 0, 1, 0);
    FRAME(SP_FT_CREDIT, 0, 1, sp_credit_encode(3, pl_, cap_));
    FRAME(SP_FT_RESPONSE_HEAD, 0, 1, sp_resphead_encode(&rs, pl_, cap_));
    FRAME(SP_FT_BODY, 0, 1, (memcpy(pl_, "hello", 5), 5));
    FRAME(SP_FT_END, 0, 1, 0);
    FRAME(SP_FT_PING, 0, 0, sp_ping_encode(ping, pl_, cap_));
    FRAME(SP_FT_PONG, 0, 0, sp_ping_encode(ping, pl_, cap_));
    FRAME(SP_FT_REQUEST_HEAD, 5, 2, sp_reqhead_encode(&rq, pl_, cap_));
    FRAME(SP_FT_ABORT, 5, 2, sp_abort_encode(&ab2, pl_, cap_));
    FRAME(SP_FT_GOAWAY, 0, 0, sp_goaway_encode(&ga, pl_, cap_));
    emit("frame", "conversation");
}

static void heads(void)
{
    sp_reqhead_t rq = req(), empty_rq;
    sp_resphead_t rs = resp(), empty_rs;
    int n;

    /* selector byte: bit 0 request, bits 1-6 kvcap, bit 7 tight limits */
    buf[0] = 1 | (16 << 1);
    must(n = sp_reqhead_encode(&rq, buf + 1, sizeof(buf) - 1));
    used = 1 + (size_t)n;
    emit("head", "request");

    memset(&empty_rq, 0, sizeof(empty_rq));
    empty_rq.method = sp_str("GET");
    empty_rq.uri = sp_str("/");
    empty_rq.content_length = -1;
    buf[0] = 1 | (2 << 1) | 0x80;
    must(n = sp_reqhead_encode(&empty_rq, buf + 1, sizeof(buf) - 1));
    used = 1 + (size_t)n;
    emit("head", "request_min");

    buf[0] = 0 | (8 << 1);
    must(n = sp_resphead_encode(&rs, buf + 1, sizeof(buf) - 1));
    used = 1 + (size_t)n;
    emit("head", "response");

    memset(&empty_rs, 0, sizeof(empty_rs));
    empty_rs.status = 204;
    empty_rs.content_length = -1;
    buf[0] = 0x80;
    must(n = sp_resphead_encode(&empty_rs, buf + 1, sizeof(buf) - 1));
    used = 1 + (size_t)n;
    emit("head", "response_min");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkcorpus DIR (holding frame/ and head/)\n");
        return 2;
    }
    outdir = argv[1];
    frames();
    heads();
    return 0;
}
