/*
 * spc.h - a small blocking test client for slotproxy links, built on
 * common/ (sp_link, sp_head).  It speaks to the real backend over real
 * sockets; integration tests use it the way the module's proxy child will
 * use a link, but one request per stream id at a time and with explicit
 * control over credit (so a test can play a client that stops reading).
 */
#ifndef SPC_H
#define SPC_H

#include <stddef.h>
#include <stdint.h>

#include "sp_head.h"
#include "sp_link.h"

#define SPC_MAX_RESP_HEADERS 128

typedef struct spc_stream {
    uint32_t gen;
    int open;      /* a request is in progress on this id */
    int accepted;  /* ACCEPT seen */
    int got_head;  /* RESPONSE_HEAD seen */
    int ended;     /* END seen */
    int aborted;   /* ABORT seen */
    uint32_t abort_code;
    uint16_t abort_status;
    char abort_reason[128];
    int status;
    uint8_t *head_copy; /* RESPONSE_HEAD payload (kv point into it) */
    sp_resphead_t rh;
    sp_kv_t kv[SPC_MAX_RESP_HEADERS];
    /* response body */
    int keep_body;      /* store it (else only count + crc); survives
                           spc_request */
    uint8_t *body;
    size_t body_len, body_cap;
    uint64_t body_total;
    uint32_t body_crc;
    int auto_credit;    /* grant CREDIT back as body arrives (default 1) */
    int64_t send_credit; /* request body bytes we may still send */
    int64_t t_head_ns, t_end_ns;
    /* Check the response body against the builtin:echo size=N pattern,
     * byte[i] = (i*7+3) & 0xff, as it arrives (keep_body may be 0).  Like
     * keep_body, a setting that survives spc_request. */
    int check_pattern;
    int64_t pattern_bad; /* offset of the first wrong byte + 1; 0 = none */
    int lost;            /* the link closed while the stream was open */
    int64_t t_start_ns;  /* when spc_request sent the head */
} spc_stream_t;

typedef struct spc {
    sp_link_t l;
    sp_link_config_t cfg;
    uint8_t secret[1024];
    spc_stream_t *streams;
    uint32_t nstreams;
    int closed;
    int close_rc;
} spc_t;

/* Connect to addr ("tcp://..", "unix:..", "shm:..") and complete the handshake
 * within timeout_ms.  secret may be NULL.  0, or a negative SP_E* with a
 * message in err. */
int spc_connect(spc_t *c, const char *addr, const char *secret,
                uint32_t nstreams, int timeout_ms, char *err, size_t errlen);
void spc_close(spc_t *c);

/* Start a request on stream id.  headers: NULL-terminated name/value
 * pairs (may be NULL).  body: 0 none, 1 content_length bytes follow,
 * 2 chunked (length unknown).  Resets the stream's response state.
 * Like a frontend, refuses (SP_ESTATE) to open a stream on a link that is
 * not usable: closed, or draining after a GOAWAY either way (open a new
 * link instead; see spc_usable). */
/* The REQUEST_HEAD payload spc_request sends, into buf.  Its length or a
 * negative SP_E*. */
int spc_head_encode(const char *method, const char *uri,
                    const char *const *headers, int body,
                    int64_t content_length, uint8_t *buf, size_t cap);

int spc_request(spc_t *c, uint32_t id, const char *method, const char *uri,
                const char *const *headers, int body, int64_t content_length);

/* Send body bytes, waiting (pumping) for credit as needed.  0, or a
 * negative code (SP_ETIMEDOUT, SP_ECLOSED, SP_ESTATE if the stream was
 * aborted). */
int spc_send_body(spc_t *c, uint32_t id, const void *data, size_t len,
                  int timeout_ms);
int spc_end(spc_t *c, uint32_t id);
int spc_abort(spc_t *c, uint32_t id);
/* Grant credit by hand (for streams with auto_credit = 0). */
int spc_credit(spc_t *c, uint32_t id, uint32_t n);

/* Read and dispatch whatever arrives within timeout_ms (one poll), and
 * flush.  0, or SP_ECLOSED once the link is gone. */
int spc_pump(spc_t *c, int timeout_ms);

/* Pump until stream id ended or was aborted.  0, SP_ETIMEDOUT or
 * SP_ECLOSED. */
int spc_wait(spc_t *c, uint32_t id, int timeout_ms);

/* First response header of that name, or NULL. */
const char *spc_header(const spc_stream_t *s, const char *name);

/* Write raw bytes on the link's socket (for garbage tests). */
int spc_raw(spc_t *c, const void *buf, size_t len);

/* 1 if new streams may be opened on the link: handshake done, no GOAWAY
 * either way, not closed. */
int spc_usable(const spc_t *c);

/* Streams with a request in progress. */
uint32_t spc_open_streams(const spc_t *c);

/* The builtin:echo size=N pattern byte at offset i. */
static inline uint8_t spc_pattern_byte(uint64_t i)
{
    return (uint8_t)((i * 7 + 3) & 0xff);
}

/* ---- raw peers: a blocking socket and frames by hand ------------------ */

/* Connect (blocking, with timeout).  fd or a negative SP_E*. */
int spc_raw_connect(const char *addr, int timeout_ms);

/* Write all of buf (waiting for room up to 5 s per step).  0 or
 * negative. */
int spc_raw_write(int fd, const void *buf, size_t len);

/* Send one frame built from its parts (the header as given, even if
 * invalid: the caller chooses what to break). */
int spc_raw_frame(int fd, uint8_t version, uint8_t type, uint16_t flags,
                  uint32_t stream, uint32_t gen, const void *payload,
                  uint32_t len);

/* Read one whole frame into buf (cap bytes: header + payload) within
 * timeout_ms, without checking it beyond its header's length.  0 with *f
 * filled, SP_ECLOSED on EOF/reset, SP_ETIMEDOUT, SP_EMSGSIZE. */
int spc_raw_read(int fd, uint8_t *buf, size_t cap, sp_frame_t *f,
                 int timeout_ms);

/* Wait until the peer closes fd, discarding what arrives; records the
 * first GOAWAY code seen in *goaway (-1 if none).  0 when closed,
 * SP_ETIMEDOUT otherwise. */
int spc_raw_wait_close(int fd, int timeout_ms, int *goaway);

/* Raw handshake up to HELLO_ACK: HELLO out, HELLO_ACK in; nonces for the
 * proofs.  0 or negative. */
int spc_raw_hello(int fd, uint8_t nonce_c[32], uint8_t nonce_s[32],
                  int timeout_ms);

#endif
