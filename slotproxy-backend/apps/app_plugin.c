/*
 * app_plugin.c - the handler table: turning a Handler line into an
 * application (builtin table, plugin shared object or CGI runner), running
 * its per-worker init/fini, dispatching requests to it, and matching a
 * request path to the right handler.
 *
 * Plugins.  The parent opens each .so once at config time with
 * dlopen(RTLD_NOW | RTLD_LOCAL): RTLD_NOW makes an unresolved symbol a
 * config error instead of a crash in a worker mid-request, RTLD_LOCAL
 * keeps two plugins from binding to each other's symbols.  Workers inherit
 * the mapping through fork and never call dlopen.  The plugin must export
 * `slotproxy_app` (slotproxy_app_t) with abi_version == SLOTPROXY_APP_ABI;
 * the ABI word is read before anything else in the struct, so a plugin
 * built for another ABI is refused without touching its other fields.
 *
 * Ownership.  An sp_handler_t owns its prefix, target and arg strings and
 * the dlopen handle; sp_handler_unload() releases them.  The app's ctx is
 * per worker: created by init in the worker, released by fini there.
 */
#include "apps.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int load_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int load_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int load_builtin(sp_handler_t *h, const char *name, char *err,
                        size_t errlen)
{
    if (strcmp(name, "hello") == 0)
        h->app = &sp_app_hello;
    else if (strcmp(name, "echo") == 0)
        h->app = &sp_app_echo;
    else if (strcmp(name, "session-demo") == 0)
        h->app = &sp_app_session_demo;
    else
        return load_fail(err, errlen,
                         "builtin:%s: unknown builtin handler (known: hello, "
                         "echo, session-demo)",
                         name);
    return 0;
}

static int load_plugin(sp_handler_t *h, const char *path, char *err,
                       size_t errlen)
{
    struct stat st;
    if (path[0] != '/')
        return load_fail(err, errlen,
                         "plugin:%s: the path of a plugin must be absolute",
                         path);
    if (stat(path, &st) < 0)
        return load_fail(err, errlen, "plugin:%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return load_fail(err, errlen, "plugin:%s: not a regular file", path);

    dlerror();
    void *dso = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dso) {
        const char *why = dlerror();
        return load_fail(err, errlen, "plugin:%s: cannot load: %s", path,
                         why ? why : "unknown dlopen error");
    }
    dlerror();
    const slotproxy_app_t *app = dlsym(dso, "slotproxy_app");
    if (!app) {
        dlclose(dso);
        return load_fail(err, errlen,
                         "plugin:%s: not a slotproxy plugin (no symbol "
                         "`slotproxy_app`)",
                         path);
    }
    if (app->abi_version != SLOTPROXY_APP_ABI) {
        unsigned v = app->abi_version;
        dlclose(dso);
        return load_fail(
            err, errlen,
            "plugin:%s: built for application ABI %u, this backend "
            "supports ABI %u",
            path, v, (unsigned)SLOTPROXY_APP_ABI);
    }
    if (!app->handle) {
        dlclose(dso);
        return load_fail(err, errlen, "plugin:%s: slotproxy_app.handle is NULL",
                         path);
    }
    h->dso = dso;
    h->app = app;
    return 0;
}

static int load_cgi(sp_handler_t *h, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    char real[PATH_MAX];
    if (dir[0] != '/')
        return load_fail(
            err, errlen,
            "cgi:%s: the script directory must be an absolute path", dir);
    if (stat(dir, &st) < 0)
        return load_fail(err, errlen, "cgi:%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return load_fail(err, errlen, "cgi:%s: not a directory", dir);
    if (!realpath(dir, real))
        return load_fail(err, errlen, "cgi:%s: %s", dir, strerror(errno));
    char *canon = strdup(real);
    if (!canon)
        return load_fail(err, errlen, "cgi:%s: out of memory", dir);
    free(h->target);
    h->target = canon;
    h->app = &sp_app_cgi;
    return 0;
}

int sp_handler_load(sp_handler_t *h, const char *prefix, const char *spec,
                    const char *arg, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->cgi.timeout_sec = SP_CGI_DEFAULT_TIMEOUT;
    h->cgi.max_header_bytes = SP_CGI_DEFAULT_MAX_HEADER;

    if (!prefix || prefix[0] != '/')
        return load_fail(err, errlen,
                         "handler prefix \"%s\" must start with '/'",
                         prefix ? prefix : "");
    if (!spec)
        return load_fail(err, errlen, "handler %s: no application given",
                         prefix);
    const char *colon = strchr(spec, ':');
    if (!colon || colon[1] == '\0')
        return load_fail(
            err, errlen,
            "handler %s: \"%s\" is not builtin:NAME, plugin:/path.so "
            "or cgi:/dir",
            prefix, spec);

    h->prefix = strdup(prefix);
    h->prefix_len = strlen(prefix);
    h->target = strdup(colon + 1);
    h->arg = strdup(arg ? arg : "");
    if (!h->prefix || !h->target || !h->arg) {
        load_fail(err, errlen, "handler %s: out of memory", prefix);
        goto fail;
    }

    size_t slen = (size_t)(colon - spec);
    int rc;
    if (slen == 7 && memcmp(spec, "builtin", 7) == 0) {
        h->kind = SP_HANDLER_BUILTIN;
        rc = load_builtin(h, h->target, err, errlen);
    } else if (slen == 6 && memcmp(spec, "plugin", 6) == 0) {
        h->kind = SP_HANDLER_PLUGIN;
        rc = load_plugin(h, h->target, err, errlen);
    } else if (slen == 3 && memcmp(spec, "cgi", 3) == 0) {
        h->kind = SP_HANDLER_CGI;
        rc = load_cgi(h, h->target, err, errlen);
    } else {
        rc =
            load_fail(err, errlen,
                      "handler %s: unknown application type \"%.*s\" in \"%s\" "
                      "(known: builtin, plugin, cgi)",
                      prefix, (int)slen, spec, spec);
    }
    if (rc < 0)
        goto fail;
    return 0;

fail:
    sp_handler_unload(h);
    return -1;
}

int sp_handler_init(sp_handler_t *h, char *err, size_t errlen)
{
    int rc = 0;
    char local[sizeof(h->init_err)];

    if (h->inited)
        return 0;
    local[0] = '\0';
    h->ctx = NULL;
    if (h->kind == SP_HANDLER_CGI)
        rc = sp_cgi_init(&h->ctx, h->target, &h->cgi, local, sizeof(local));
    else if (h->app && h->app->init)
        rc = h->app->init(&h->ctx, h->arg, local, sizeof(local));
    else if (!h->app)
        rc = load_fail(local, sizeof(local), "handler not loaded");
    if (rc != 0) {
        if (local[0] == '\0')
            snprintf(local, sizeof(local), "init failed");
        h->init_failed = 1;
        snprintf(h->init_err, sizeof(h->init_err), "%s", local);
        return load_fail(err, errlen, "handler %s (%s): %s", h->prefix,
                         h->app && h->app->name ? h->app->name : h->target,
                         local);
    }
    h->init_failed = 0;
    h->init_err[0] = '\0';
    h->inited = 1;
    return 0;
}

int sp_handler_handle(sp_handler_t *h, slotproxy_request_t *req)
{
    req->prefix = h->prefix;
    req->arg = h->arg;
    if (!h->inited) {
        req->log(req, SLOTPROXY_LOG_ERR,
                 "SPA0001: handler %s: application not initialised: %s",
                 h->prefix, h->init_failed ? h->init_err : "init not run");
        return -1;
    }
    return h->app->handle(h->ctx, req);
}

void sp_handler_set_cgi_timeout(sp_handler_t *h, int seconds)
{
    if (h->kind == SP_HANDLER_CGI && seconds >= 0)
        h->cgi.timeout_sec = (unsigned)seconds;
}

void sp_handler_fini(sp_handler_t *h)
{
    if (h->inited && h->app && h->app->fini)
        h->app->fini(h->ctx);
    h->inited = 0;
    h->ctx = NULL;
}

void sp_handler_unload(sp_handler_t *h)
{
    sp_handler_fini(h);
    if (h->dso)
        dlclose(h->dso);
    free(h->prefix);
    free(h->target);
    free(h->arg);
    memset(h, 0, sizeof(*h));
}

/* Length matched by prefix p (len plen) against path, or 0 if no match. */
static size_t prefix_match(const char *p, size_t plen, const char *path)
{
    if (plen == 0)
        return 0;
    if (p[plen - 1] == '/') {
        if (strncmp(path, p, plen) == 0)
            return plen;
        /* "/app/" also takes "/app" (scoring what really matched, so an
         * exact "/app" line ties and the earlier line wins) */
        if (plen > 1 && strlen(path) == plen - 1 &&
            strncmp(path, p, plen - 1) == 0)
            return plen - 1;
        return 0;
    }
    if (strncmp(path, p, plen) == 0 &&
        (path[plen] == '\0' || path[plen] == '/'))
        return plen;
    return 0;
}

const sp_handler_t *sp_handler_match(const sp_handler_t *hs, size_t n,
                                     const char *path)
{
    const sp_handler_t *best = NULL;
    size_t best_len = 0;
    if (!path)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!hs[i].prefix)
            continue;
        size_t m = prefix_match(hs[i].prefix, hs[i].prefix_len, path);
        if (m > best_len) {
            best = &hs[i];
            best_len = m;
        }
    }
    return best;
}
