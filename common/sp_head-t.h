/*
 * sp_head-t.h - request and response heads as they cross a link.
 *
 * The HTTP mapping of the link protocol, kept apart from the framing
 * (sp_frame-t.h) the way httpd keeps ajp_header.c apart from ajp_msg.c.
 * A REQUEST_HEAD frame's payload is one encoded sp_reqhead_t, a
 * RESPONSE_HEAD frame's payload one encoded sp_resphead_t.  The codec is in
 * sp_head.c, the wire spec in docs/protocol.md.
 *
 * Strings.  sp_str_t is a counted string.  On the wire every string is
 *
 *      u32 len | len bytes | 0x00
 *
 * (the NUL is not counted by len), and a decoded string points into the
 * receive buffer, so ptr[len] == '\0' and it is also a valid C string.
 * {NULL, 0} is the empty string when encoding; decoders never produce NULL.
 *
 * Request head payload (network byte order; "str" is the form above):
 *
 *   offset  size  field
 *   ------  ----  ---------------------------------------------------------
 *        0     4  flags            SP_REQ_* (unknown bits: SP_EPROTO)
 *        4     2  remote_port
 *        6     2  local_port
 *        8     8  content_length   two's complement; -1 = unknown
 *       16   str  method           "GET"
 *            str  uri              unparsed, with query: "/a/b?c=d"
 *            str  protocol         "HTTP/1.1"
 *            str  scheme           "https"
 *            str  server_name      "www.example.com"
 *            str  remote_addr      "192.0.2.7" / "2001:db8::7"
 *            str  local_addr
 *            str  remote_user      "" when none
 *            str  auth_type        "" when none
 *              4  nheaders
 *            str  name, str value  nheaders times, in request order
 *              4  nenv
 *            str  name, str value  nenv times (subprocess env, SSL_*)
 *   ------
 *   >= 69 bytes; nothing may follow the last pair.
 *
 * Response head payload:
 *
 *   offset  size  field
 *   ------  ----  ---------------------------------------------------------
 *        0     2  status           100..999
 *        2     2  reserved         0
 *        4     4  flags            none defined yet: must be 0
 *        8     8  content_length   two's complement; -1 = unknown
 *       16   str  reason           "" = the standard phrase for status
 *              4  nheaders
 *            str  name, str value  nheaders times, in order
 *   ------
 *   >= 25 bytes; nothing may follow the last pair.
 *
 * What each string may contain (enforced by encode with SP_EINVAL and by
 * decode with SP_EPROTO, so whatever encodes also decodes):
 *   header names      at least one byte; no control, space, DEL or ':'
 *   env names         at least one byte; no '='
 *   env values        anything but NUL (SSL_CLIENT_CERT holds newlines)
 *   everything else   anything but NUL, CR and LF (no header injection)
 *
 * How a direction ends (docs/protocol.md, "Streams"):
 *  - request: with SP_REQ_BODY, BODY frames and one END follow the head;
 *    without it the head alone is the whole request (no END).
 *    SP_REQ_CHUNKED (length unknown) requires SP_REQ_BODY and
 *    content_length == -1; SP_REQ_BODY without it requires
 *    content_length >= 0.
 *  - response: always BODY frames (maybe none) and one END.  No response
 *    flag is defined yet; content_length is the Content-Length the
 *    application set (-1: none), exact except where HTTP says no body is
 *    sent (HEAD, 1xx, 204, 304).
 * Either direction may instead be cut short by an ABORT.
 */
#ifndef SP_HEAD_T_H
#define SP_HEAD_T_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_str {
    const char *ptr;
    uint32_t len;
} sp_str_t;

typedef struct sp_kv {
    sp_str_t name, value;
} sp_kv_t;

/* sp_reqhead_t.flags */
#define SP_REQ_HTTPS 1u   /* the client connection is TLS */
#define SP_REQ_BODY 2u    /* BODY frames and an END follow the head */
#define SP_REQ_CHUNKED 4u /* body length unknown (content_length == -1) */
#define SP_REQ_KNOWN (SP_REQ_HTTPS | SP_REQ_BODY | SP_REQ_CHUNKED)

/* sp_resphead_t.flags: none defined yet (any bit is refused). */
#define SP_RESP_KNOWN 0u

#define SP_REQHEAD_MIN_SIZE 69u  /* fixed part, nine empty strings, counts */
#define SP_RESPHEAD_MIN_SIZE 25u /* fixed part, empty reason, count */

typedef struct sp_reqhead {
    sp_str_t method, uri, protocol, scheme, server_name, remote_addr,
        local_addr, remote_user, auth_type;
    uint16_t remote_port, local_port;
    uint32_t flags;         /* SP_REQ_* */
    int64_t content_length; /* -1 unknown */
    sp_kv_t *headers;       /* in order; repeated names stay separate */
    uint32_t nheaders;
    sp_kv_t *env; /* subprocess env, SSL_* variables etc. */
    uint32_t nenv;
} sp_reqhead_t;

typedef struct sp_resphead {
    uint16_t status; /* 100..999 */
    sp_str_t reason;
    uint32_t flags;         /* 0 (SP_RESP_KNOWN) */
    int64_t content_length; /* -1 unknown */
    sp_kv_t *headers;
    uint32_t nheaders;
} sp_resphead_t;

/* Receive limits for a decoded head. */
typedef struct sp_head_limits {
    uint32_t max_fields;    /* headers + env entries */
    uint32_t max_field_len; /* one name, one value, or one fixed string */
} sp_head_limits_t;

#define SP_HEAD_MAX_FIELDS_DEFAULT 200u
#define SP_HEAD_MAX_FIELD_LEN_DEFAULT 65536u
#define SP_HEAD_LIMITS_DEFAULT                                                 \
    {                                                                          \
        SP_HEAD_MAX_FIELDS_DEFAULT, SP_HEAD_MAX_FIELD_LEN_DEFAULT              \
    }

#endif /* SP_HEAD_T_H */
