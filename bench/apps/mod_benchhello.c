/*
 * mod_benchhello.c - the benchmark's in-process baseline: an httpd content
 * handler that answers "Hello, world\n" (13 bytes, text/plain, with
 * Content-Length), the same body as slotproxy-backend's builtin:hello and
 * the nginx location of bench/httpd_bench.sh.
 *
 *     LoadModule benchhello_module .../mod_benchhello.so
 *     BenchHelloPass /hello
 *
 * BenchHelloPass maps a URL path (that path, or below it on a segment
 * boundary) the way ProxyPass and SlotProxyPass do: translate_name claims
 * it and map_to_storage returns OK, so httpd does no <Directory> walk and
 * no file lookup.  This matters for a fair baseline: with `SetHandler
 * benchhello` in a <Location> instead, httpd stats every directory from /
 * down to DocumentRoot and tries to open a .htaccess in each (15 failing
 * system calls per request with the benchmark's DocumentRoot), which the
 * two proxies never do.  `SetHandler benchhello` still works.
 *
 * The handler sets the content type and length, writes the body and
 * flushes before returning.  The flush matters under the event MPM: a
 * small response left in the core output filter sends the connection
 * through write completion and the listener thread before its next
 * request, which doubled the latency at one connection on the benchmark
 * machine (mod_slotproxy's handler flushes at the end for the same
 * reason).  Its figures are the ceiling of this httpd configuration on
 * this machine, with no backend at all.  Not part of the product; built
 * only by `make bench`.
 */
#include <string.h>

#include "apr_strings.h"
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"

#define BH_HANDLER "benchhello"
#define BH_PREFIX "benchhello:"

module AP_MODULE_DECLARE_DATA benchhello_module;

typedef struct bh_srv {
    const char *path; /* BenchHelloPass, NULL if none */
    size_t len;
} bh_srv_t;

static const char body[] = "Hello, world\n";

static void *bh_create_srv(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return apr_pcalloc(p, sizeof(bh_srv_t));
}

static const char *bh_pass(cmd_parms *cmd, void *dummy, const char *arg)
{
    (void)dummy;
    bh_srv_t *sc =
        ap_get_module_config(cmd->server->module_config, &benchhello_module);
    if (arg[0] != '/')
        return "BenchHelloPass: the path must start with '/'";
    sc->path = arg;
    sc->len = strlen(arg);
    return NULL;
}

/* PATH itself, or below it on a segment boundary (as SlotProxyPass). */
static int bh_match(const bh_srv_t *sc, const char *uri)
{
    if (sc->path == NULL || strncmp(uri, sc->path, sc->len) != 0)
        return 0;
    return sc->path[sc->len - 1] == '/' || uri[sc->len] == '\0' ||
           uri[sc->len] == '/';
}

static int bh_translate(request_rec *r)
{
    bh_srv_t *sc =
        ap_get_module_config(r->server->module_config, &benchhello_module);
    if (r->proxyreq != PROXYREQ_NONE || r->uri == NULL || !bh_match(sc, r->uri))
        return DECLINED;
    r->handler = BH_HANDLER;
    r->filename = apr_pstrcat(r->pool, BH_PREFIX, r->uri, NULL);
    return OK;
}

static int bh_map_to_storage(request_rec *r)
{
    if (r->filename != NULL &&
        strncmp(r->filename, BH_PREFIX, sizeof(BH_PREFIX) - 1) == 0)
        return OK; /* no directory walk, no file lookup */
    return DECLINED;
}

static int bh_handler(request_rec *r)
{
    if (r->handler == NULL || strcmp(r->handler, BH_HANDLER) != 0)
        return DECLINED;
    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET)
        return HTTP_METHOD_NOT_ALLOWED;
    ap_set_content_type(r, "text/plain");
    ap_set_content_length(r, sizeof(body) - 1);
    if (!r->header_only)
        ap_rwrite(body, sizeof(body) - 1, r);
    ap_rflush(r);
    return OK;
}

static const command_rec bh_cmds[] = {
    AP_INIT_TAKE1("BenchHelloPass", bh_pass, NULL, RSRC_CONF,
                  "URL path answered by the benchmark's hello handler"),
    {NULL}};

static void bh_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_translate_name(bh_translate, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_map_to_storage(bh_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(bh_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(benchhello) = {STANDARD20_MODULE_STUFF,
                                 NULL,
                                 NULL,
                                 bh_create_srv,
                                 NULL,
                                 bh_cmds,
                                 bh_hooks,
                                 AP_MODULE_FLAG_NONE};
