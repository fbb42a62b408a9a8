/*
 * apps.h - the handler table: how the backend's worker core finds and runs
 * the application mapped to a request's URI.
 *
 * A configuration line
 *
 *     Handler PREFIX SPEC [ARG]
 *
 * becomes one sp_handler_t.  SPEC is one of
 *
 *     builtin:hello          the fixed 13-byte benchmark page
 *     builtin:echo           the test handler (docs/applications.md)
 *     plugin:/abs/app.so     a shared object exporting `slotproxy_app`
 *     cgi:/abs/dir           RFC 3875 scripts inside dir
 *
 * Life cycle and who calls what:
 *
 *     parent, config time:  sp_handler_load()   (dlopen, checks; no app code
 *                                                runs except the .so's
 *                                                constructors)
 *                           sp_handler_set_cgi_timeout() / h->cgi.*
 *                                               (CGI handlers only)
 *     each worker, after fork:
 *                           sp_handler_init()   (app->init, per process)
 *                           sp_handler_match() + sp_handler_handle()
 *                                               once per request
 *                           sp_handler_fini()   (app->fini) before exit
 *     parent, reload/exit:  sp_handler_unload() (dlclose, free)
 *
 * Every application - the builtins and the CGI runner included - is driven
 * through the same slotproxy_app_t table as a plugin, so the worker core
 * has one code path.  Nothing here prints: errors go to the caller's err
 * buffer at load/init time and to req->log while handling a request.  Log
 * lines carry tags SPA0001..SPA0099 (this directory's range).
 *
 * Workers are single-threaded; an sp_handler_t is used by one process at a
 * time (the parent's copy is inherited by fork and then private).
 */
#ifndef SP_APPS_H
#define SP_APPS_H

#include <stddef.h>

/* Relative, so the unit runner builds without extra -I flags. */
#include "../include/slotproxy_app.h"

enum {
    SP_HANDLER_BUILTIN = 1,
    SP_HANDLER_PLUGIN = 2,
    SP_HANDLER_CGI = 3,
};

/* Options of a cgi: handler.  sp_handler_load() sets the defaults; the
 * config parser may change them before sp_handler_init(). */
typedef struct sp_cgi_opts {
    unsigned timeout_sec;    /* whole script run; default 60; 0 = none */
    size_t max_header_bytes; /* script's header block; default 64 KiB */
} sp_cgi_opts_t;

#define SP_CGI_DEFAULT_TIMEOUT 60
#define SP_CGI_DEFAULT_MAX_HEADER (64 * 1024)

typedef struct sp_handler {
    char *prefix; /* URI prefix, starts with '/' (owned) */
    size_t prefix_len;
    int kind;     /* SP_HANDLER_* */
    char *target; /* builtin name, .so path or CGI dir (owned; for
                   * CGI the canonical realpath) */
    char *arg;    /* the Handler line's argument, "" if none (owned) */
    const slotproxy_app_t *app;
    void *dso;       /* dlopen handle of a plugin, else NULL */
    void *ctx;       /* app's per-worker context (after init) */
    int inited;      /* init succeeded in this process */
    int init_failed; /* init failed: handle answers 500, logs init_err */
    char init_err[256];
    sp_cgi_opts_t cgi; /* CGI handlers only */
} sp_handler_t;

/*
 * Fill *h from a Handler line.  Runs in the parent at config time.  Returns
 * 0, or -1 with a message in err naming the spec (and file) and what is
 * wrong; *h is then left empty (safe to unload).  Plugins are opened with
 * dlopen(RTLD_NOW | RTLD_LOCAL) and must export `slotproxy_app` with
 * abi_version == SLOTPROXY_APP_ABI and a handle function.  Plugin paths and
 * CGI directories must be absolute; the CGI directory must exist.
 */
int sp_handler_load(sp_handler_t *h, const char *prefix, const char *spec,
                    const char *arg, char *err, size_t errlen);

/* In a worker after fork: the app's init.  0, or -1 with err filled (the
 * handler then answers every request with 500 and logs err). */
int sp_handler_init(sp_handler_t *h, char *err, size_t errlen);

/* Run one request: sets req->prefix and req->arg, calls app->handle and
 * returns its result (negative: the core answers 500 or aborts). */
int sp_handler_handle(sp_handler_t *h, slotproxy_request_t *req);

/* In a worker before exit: the app's fini (if init succeeded). */
void sp_handler_fini(sp_handler_t *h);

/* CGITimeout: the script time limit of a cgi: handler, before init
 * (seconds >= 0; 0 = none).  Ignored for other kinds and negative values.
 * Equivalent to setting h->cgi.timeout_sec. */
void sp_handler_set_cgi_timeout(sp_handler_t *h, int seconds);

/* Release everything load() took (fini first if still inited).  Idempotent;
 * leaves *h zeroed. */
void sp_handler_unload(sp_handler_t *h);

/*
 * The handler for path (the path part of the request URI, no query):
 * longest prefix wins, earliest line on a tie.  Prefixes match on segment
 * boundaries: "/app" matches "/app", "/app/x", not "/application"; "/app/"
 * matches "/app/x" and also "/app" itself.  "/" matches everything.
 * NULL if none matches.
 */
const sp_handler_t *sp_handler_match(const sp_handler_t *hs, size_t n,
                                     const char *path);

/* ---- internal to apps/: the built-in application tables ---------------- */

extern const slotproxy_app_t sp_app_hello;
extern const slotproxy_app_t sp_app_echo;
extern const slotproxy_app_t sp_app_session_demo;
extern const slotproxy_app_t sp_app_cgi;

/* The CGI runner's per-worker context (its init needs more than an arg). */
int sp_cgi_init(void **ctx, const char *dir, const sp_cgi_opts_t *opts,
                char *err, size_t errlen);

#endif /* SP_APPS_H */
