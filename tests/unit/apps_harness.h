/*
 * apps_harness.h - a slotproxy_request_t over memory, for testing the
 * application layer (slotproxy-backend/apps/) without the worker core.
 *
 * The test fills in the request (method, URI, headers, env, body), runs a
 * handler, and reads back what the application produced: status, reason,
 * headers in order, body bytes, flushes and log lines.  The callbacks keep
 * the contract of slotproxy_app.h as the worker's ring-backed request does:
 * set_status/add_header fail once the head is sent (first write or flush),
 * read/write fail once aborted, and a negative return from handle() turns
 * into 500 if no head was sent.  Header names and values are validated
 * (token name, no CR/LF in value) so an application bug shows up as a
 * failed call.
 *
 * Switches: read_chunk limits each read() (to exercise short reads);
 * abort_after aborts the stream once that many body bytes were written;
 * abort_at_ns aborts at a CLOCK_MONOTONIC time; on_body receives the body
 * instead of it being stored (for very large responses).
 */
#ifndef APPS_HARNESS_H
#define APPS_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "../../slotproxy-backend/apps/apps.h"

typedef struct sp_harness_log {
    int level;
    char *line;
} sp_harness_log_t;

typedef struct sp_harness sp_harness_t;

struct sp_harness {
    slotproxy_request_t req;

    /* request (owned copies) */
    char *uri, *path, *query;
    slotproxy_header_t *hdrs;
    size_t nhdrs, caphdrs;
    slotproxy_header_t *envs;
    size_t nenvs, capenvs;
    const unsigned char *body; /* not owned */
    size_t body_len, body_off;
    size_t read_chunk;     /* 0: no limit */
    long long abort_after; /* -1: never */
    int64_t abort_at_ns;   /* 0: never */
    void (*on_body)(sp_harness_t *h, const void *buf, size_t len);
    void *user;

    /* response */
    int aborted;
    int head_sent;
    int status;
    char reason[128];
    slotproxy_header_t *rh;
    size_t nrh, caprh;
    unsigned char *out;
    size_t out_len, out_cap;
    unsigned long long out_total; /* including bytes passed to on_body */
    unsigned writes, flushes, reads;
    int rc; /* handle()'s return */

    sp_harness_log_t *logs;
    size_t nlogs, caplogs;
};

/* A GET-like request for uri ("/path?query"); defaults: HTTP/1.1, http,
 * server "localhost", remote 127.0.0.1:40000, local 127.0.0.1:8080, no
 * body (content_length 0). */
void sp_harness_init(sp_harness_t *h, const char *method, const char *uri);
void sp_harness_add_header(sp_harness_t *h, const char *name,
                           const char *value);
void sp_harness_add_env(sp_harness_t *h, const char *name, const char *value);
/* Body of len bytes (not copied).  chunked: content_length -1. */
void sp_harness_set_body(sp_harness_t *h, const void *body, size_t len,
                         int chunked);

/* Run handler h on the request; returns handle()'s result. */
int sp_harness_run(sp_harness_t *h, sp_handler_t *handler);

/* The nth (0-based) response header of that name (case-insensitive), or
 * NULL; and how many there are. */
const char *sp_harness_resp_header(const sp_harness_t *h, const char *name,
                                   size_t nth);
size_t sp_harness_resp_count(const sp_harness_t *h, const char *name);

/* 1 if a log line at level contains needle. */
int sp_harness_logged(const sp_harness_t *h, int level, const char *needle);

/* The body as a NUL-terminated string (the buffer always has room). */
const char *sp_harness_body(const sp_harness_t *h);

void sp_harness_free(sp_harness_t *h);

#endif /* APPS_HARNESS_H */
