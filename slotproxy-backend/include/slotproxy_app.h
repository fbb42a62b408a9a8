/*
 * slotproxy_app.h - the C API between slotproxy-backend and the
 * applications it runs (plugins, and the built-in and CGI handlers, which
 * use the same API).  Installed with the backend; a plugin includes only
 * this header and links against nothing of the backend.
 *
 * ABI version 1.
 *
 * A plugin is a shared object mapped with a `Handler` line of the backend
 * configuration:
 *
 *     Handler /app/  plugin:/usr/lib/slotproxy/myapp.so  [argument]
 *
 * It exports one symbol, `slotproxy_app` (type slotproxy_app_t), whose
 * abi_version must equal SLOTPROXY_APP_ABI.  Every worker process loads it
 * and calls init() once, handle() once per request, and fini() before it
 * exits.  Workers are single-threaded processes: handle() runs alone in
 * its process, may block, and may keep per-process state in *ctx.
 *
 * Streaming.  req->read() returns request body bytes as the client sends
 * them (0 at the end; content_length is -1 for a chunked upload).  The
 * response head (status and headers) is sent with the first write() or
 * flush(), or when handle() returns; after that set_status() and
 * add_header() fail.  write() blocks only while the client (through the
 * link's flow control) is not draining; it never buffers the whole body.
 * Written bytes leave the worker at the next flush(), when the slot's ring
 * is full, when read() waits for more body, or when handle() returns.
 *
 * Aborts.  When the client goes away or the frontend cancels the request,
 * aborted() turns true and read()/write() return -1: the application should
 * stop and return.  A handler that runs past the backend's RequestTimeout is
 * killed (the worker is replaced and the client gets 504).
 *
 * Return value of handle(): 0 when it produced a response (even an error
 * page); a negative value makes the backend answer 500 if no head was sent
 * yet, or abort the stream if one was.
 */
#ifndef SLOTPROXY_APP_H
#define SLOTPROXY_APP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLOTPROXY_APP_ABI 1

enum slotproxy_log_level {
    SLOTPROXY_LOG_ERR = 3,
    SLOTPROXY_LOG_WARN = 4,
    SLOTPROXY_LOG_INFO = 6,
    SLOTPROXY_LOG_DEBUG = 7
};

typedef struct slotproxy_header {
    const char *name;
    const char *value;
} slotproxy_header_t;

typedef struct slotproxy_request slotproxy_request_t;

struct slotproxy_request {
    uint32_t abi_version; /* SLOTPROXY_APP_ABI of the backend */
    uint32_t size;        /* sizeof(slotproxy_request_t) of the backend */

    /* The request, as the frontend saw it.  All strings are NUL-terminated
     * and valid until handle() returns. */
    const char *method;
    const char *uri;      /* unparsed: path and query as sent */
    const char *path;     /* decoded-free path part of uri */
    const char *query;    /* after '?', or "" */
    const char *protocol; /* "HTTP/1.1" */
    const char *scheme;   /* "http" / "https" */
    const char *server_name;
    const char *remote_addr;
    const char *local_addr;
    const char *remote_user; /* "" if none */
    const char *auth_type;   /* "" if none */
    unsigned remote_port;
    unsigned local_port;
    int https;
    long long content_length; /* -1: unknown (chunked) */
    const slotproxy_header_t *headers; /* in order, repeats kept */
    size_t nheaders;
    const slotproxy_header_t *env; /* httpd's subprocess env, SSL_* ... */
    size_t nenv;
    const char *prefix; /* the URI prefix of the Handler line */
    const char *arg;    /* the Handler line's argument, or "" */

    /* First request header of that name (ASCII case-insensitive), or
     * NULL. */
    const char *(*header)(slotproxy_request_t *r, const char *name);
    /* Variable of the frontend's subprocess env, or NULL. */
    const char *(*getenv)(slotproxy_request_t *r, const char *name);
    /* Up to len body bytes; 0 at the end of the body; -1 if aborted. */
    long (*read)(slotproxy_request_t *r, void *buf, size_t len);
    /* Status and reason (reason NULL: the standard one).  0, or -1 when the
     * head is already sent. */
    int (*set_status)(slotproxy_request_t *r, int status, const char *reason);
    /* Append a response header (repeats allowed: Set-Cookie).  0 or -1. */
    int (*add_header)(slotproxy_request_t *r, const char *name,
                      const char *value);
    /* Send body bytes (sends the head first if needed).  Returns len, or
     * -1 if the stream was aborted. */
    long (*write)(slotproxy_request_t *r, const void *buf, size_t len);
    /* Push out what was written so far (and the head).  0 or -1. */
    int (*flush)(slotproxy_request_t *r);
    /* Non-zero once the client went away or the frontend cancelled. */
    int (*aborted)(slotproxy_request_t *r);
    /* A line in the backend's error log, tagged with the request. */
    void (*log)(slotproxy_request_t *r, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    void *backend_private; /* the backend's; do not touch */
};

typedef struct slotproxy_app {
    uint32_t abi_version; /* SLOTPROXY_APP_ABI */
    const char *name;
    /* Once per worker.  arg: the Handler line's argument or "".  Return 0,
     * or -1 with a message in err (the worker then answers 500 for this
     * handler and logs the message). */
    int (*init)(void **ctx, const char *arg, char *err, size_t errlen);
    /* Once per request. */
    int (*handle)(void *ctx, slotproxy_request_t *req);
    /* Once per worker, before it exits (may be NULL). */
    void (*fini)(void *ctx);
} slotproxy_app_t;

#ifdef __cplusplus
}
#endif

#endif /* SLOTPROXY_APP_H */
