/*
 * sp_frame-t.h - frames of the link protocol (types and constants).
 *
 * A link is any reliable byte stream (TCP, Unix socket, shared-memory
 * ring) between a proxy child (the client) and a backend dispatcher (the
 * server).  It carries frames; many streams, one per frontend slot, are
 * multiplexed over it.  docs/protocol.md is the full wire spec: handshake,
 * flow control, aborts.  The codec is sp_frame.c; the HTTP heads carried
 * by REQUEST_HEAD and RESPONSE_HEAD are sp_head-t.h.
 *
 * Frame header, 16 bytes, network byte order:
 *
 *   offset  size  field
 *   ------  ----  ---------------------------------------------------------
 *        0     1  version    SP_PROTO_VERSION
 *        1     1  type       SP_FT_*
 *        2     2  flags      SP_FF_* (none defined: any bit is an error)
 *        4     4  stream     frontend slot index (0 for link frames)
 *        8     4  gen        stream generation = the slot's request
 *                            sequence, so a late frame of an earlier
 *                            request in the same slot is recognised
 *                            (0 for link frames)
 *       12     4  len        payload length; the payload follows
 *   ------  ----
 *       16
 *
 * Every length is checked before any payload is read: link frames (HELLO
 * .. GOAWAY) against SP_FRAME_CTL_MAX whatever was negotiated, stream
 * frames against the receiver's max_payload (never above
 * SP_FRAME_MAX_PAYLOAD_CEIL), fixed-size types against their size.
 *
 * Typed payloads (offsets within the payload; "str" is u32 len, the bytes,
 * one NUL not counted by len, as in sp_head-t.h):
 *
 *   HELLO (client -> server), >= 57 bytes
 *        0  2  min_version        4  4  max_payload     12  4  max_streams
 *        2  2  max_version        8  4  initial_window  16  4  features
 *       20 32  nonce             52  str node
 *
 *   HELLO_ACK (server -> client), >= 89 bytes
 *        0  2  version            4  4  max_payload     12  4  max_streams
 *        2  2  reserved (0)       8  4  initial_window  16  4  features
 *       20 32  nonce             52 32  proof           84  str node
 *
 *   AUTH (client -> server)   0 32  proof
 *   PING, PONG                0  8  opaque (PONG echoes the PING's bytes)
 *   GOAWAY                    0  4  code (SP_GOAWAY_*)   4  str reason
 *   ABORT                     0  4  code (SP_ABORT_*)    4  2  status hint
 *                             6  2  reserved (0)         8  str reason
 *   CREDIT                    0  4  increment (> 0)
 *   ACCEPT, END               empty
 *   BODY                      opaque bytes
 *   REQUEST_HEAD              sp_reqhead_t (sp_head-t.h)
 *   RESPONSE_HEAD             sp_resphead_t (sp_head-t.h)
 *
 * Strings in link frames (node, reason) are for logs and may hold no
 * control characters at all (bytes 0x00-0x1f and 0x7f), so a hostile peer
 * cannot forge log lines.
 */
#ifndef SP_FRAME_T_H
#define SP_FRAME_T_H

#include <stddef.h>
#include <stdint.h>

#include "sp_head-t.h"

#define SP_PROTO_VERSION 1
#define SP_FRAME_HDR_SIZE 16

/* Frame types; the values are on the wire and never change. */
enum sp_frame_type {
    /* link frames: stream and gen must be 0 */
    SP_FT_HELLO = 1,
    SP_FT_HELLO_ACK = 2,
    SP_FT_AUTH = 3,
    SP_FT_PING = 4,
    SP_FT_PONG = 5,
    SP_FT_GOAWAY = 6,
    /* stream frames */
    SP_FT_REQUEST_HEAD = 16,
    SP_FT_ACCEPT = 17,
    SP_FT_BODY = 18,
    SP_FT_END = 19,
    SP_FT_RESPONSE_HEAD = 20,
    SP_FT_ABORT = 21,
    SP_FT_CREDIT = 22,
};

/* Frame flags.  None is defined in version 1; a frame with a bit outside
 * SP_FF_KNOWN is refused, so adding a flag means adding it here. */
#define SP_FF_NONE 0u
#define SP_FF_KNOWN 0u

/* Payload limits. */
#define SP_FRAME_MAX_PAYLOAD_DEFAULT 65536u
#define SP_FRAME_MAX_PAYLOAD_CEIL (16u * 1024 * 1024)
#define SP_FRAME_MAX_PAYLOAD_MIN 4096u  /* a HELLO may not offer less */
#define SP_FRAME_CTL_MAX 4096u          /* any link frame's payload */
#define SP_FRAME_WINDOW_MAX 0x7fffffffu /* largest flow-control window */

#define SP_NONCE_SIZE 32
#define SP_PROOF_SIZE 32 /* HMAC-SHA256 */
#define SP_PING_SIZE 8
#define SP_CREDIT_SIZE 4
#define SP_HELLO_MIN_SIZE 57u
#define SP_HELLO_ACK_MIN_SIZE 89u
#define SP_GOAWAY_MIN_SIZE 9u
#define SP_ABORT_MIN_SIZE 13u

/* The HMAC message of the handshake proofs (sp_auth_msg):
 * a 19-byte label, then two nonces. */
#define SP_AUTH_MSG_SIZE (19 + 2 * SP_NONCE_SIZE)

/* ABORT codes (either direction). */
enum sp_abort_code {
    SP_ABORT_CANCEL = 1,       /* the HTTP client went away */
    SP_ABORT_TIMEOUT = 2,      /* a request deadline passed */
    SP_ABORT_WORKER_CRASH = 3, /* the worker died while handling it */
    SP_ABORT_OVERLOAD = 4,     /* queue full: never seen by the app */
    SP_ABORT_PROTOCOL = 5,     /* stream protocol violation */
    SP_ABORT_INTERNAL = 6,     /* the sender failed */
    SP_ABORT_UNAVAILABLE = 7,  /* no handler / no worker: never seen */
    SP_ABORT_SHUTDOWN = 8,     /* draining: never seen by the app */
};

/* GOAWAY codes (either direction). */
enum sp_goaway_code {
    SP_GOAWAY_NORMAL = 0,   /* drain: finish open streams, open no more */
    SP_GOAWAY_RELOAD = 1,   /* as NORMAL, the server is reloading */
    SP_GOAWAY_AUTH = 2,     /* handshake/authentication failed; closing */
    SP_GOAWAY_PROTOCOL = 3, /* the peer broke the protocol; closing */
    SP_GOAWAY_LIMIT = 4,    /* the peer exceeded a limit; closing */
};

typedef struct sp_frame_hdr {
    uint8_t version, type;
    uint16_t flags;
    uint32_t stream, gen, len;
} sp_frame_hdr_t;

/* Receive limits of one link direction. */
typedef struct sp_frame_limits {
    uint32_t max_payload; /* for stream frames; capped at the CEIL */
} sp_frame_limits_t;

#define SP_FRAME_LIMITS_DEFAULT                                                \
    {                                                                          \
        SP_FRAME_MAX_PAYLOAD_DEFAULT                                           \
    }

/* A decoded frame; payload points into the receive buffer. */
typedef struct sp_frame {
    sp_frame_hdr_t hdr;
    const uint8_t *payload;
} sp_frame_t;

typedef struct sp_hello {
    uint16_t min_version, max_version; /* 1 <= min <= max */
    uint32_t max_payload;              /* largest payload the sender accepts */
    uint32_t initial_window; /* BODY bytes the sender accepts per new stream */
    uint32_t max_streams;    /* advisory: the client's slot count */
    uint32_t features;       /* SP_FEAT_* bits the sender supports */
    uint8_t nonce[SP_NONCE_SIZE];
    sp_str_t node; /* the sender's name, for logs */
} sp_hello_t;

typedef struct sp_hello_ack {
    uint16_t version;        /* chosen, within the HELLO's range */
    uint32_t max_payload;    /* largest payload the server accepts */
    uint32_t initial_window; /* request BODY bytes per new stream */
    uint32_t max_streams;    /* concurrent streams the client may open */
    uint32_t features;       /* the server's bits; in use: the AND of both */
    uint8_t nonce[SP_NONCE_SIZE];
    uint8_t proof[SP_PROOF_SIZE];
    sp_str_t node;
} sp_hello_ack_t;

typedef struct sp_goaway {
    uint32_t code; /* SP_GOAWAY_*; unknown codes are accepted */
    sp_str_t reason;
} sp_goaway_t;

typedef struct sp_abort {
    uint32_t code;   /* SP_ABORT_*; unknown codes are accepted */
    uint16_t status; /* HTTP status hint, 0 or 100..999 */
    sp_str_t reason;
} sp_abort_t;

/* No feature is defined in version 1. */
#define SP_FEAT_NONE 0u

/*
 * Wire cursors shared by the frame and head codecs (the ajp_msg.c of this
 * protocol).  Both have a sticky error: after the first failure every
 * further call is a no-op, so a codec checks once at the end.
 *
 * The writer keeps counting pos past cap, so running an encoder over a
 * writer with cap 0 measures the encoding.
 */
typedef struct sp_wire_wr {
    uint8_t *buf;
    size_t cap, pos;
    int err; /* 0, SP_EMSGSIZE (pos > cap), or SP_EINVAL */
} sp_wire_wr_t;

typedef struct sp_wire_rd {
    const uint8_t *buf;
    size_t len, pos;
    int err; /* 0, SP_EPROTO or SP_ELIMIT */
} sp_wire_rd_t;

/* What a string on the wire may contain (see sp_head-t.h). */
enum sp_wire_str_class {
    SP_WIRE_ANY = 0,   /* anything but NUL */
    SP_WIRE_LINE = 1,  /* no NUL, CR, LF */
    SP_WIRE_TEXT = 2,  /* no control character (< 0x20, 0x7f) */
    SP_WIRE_HNAME = 3, /* header name: >= 1 byte, no control, SP, DEL, ':' */
    SP_WIRE_ENAME = 4, /* env name: >= 1 byte, no NUL, no '=' */
};

#endif /* SP_FRAME_T_H */
