/*
 * mod_slotproxy.c - httpd glue of mod_slotproxy: directives, URL mapping,
 * the shared segment and the proxy child's life cycle, the status pages.
 * handler.c moves requests through slots; proxy.c is the proxy child
 * (slotproxy.h draws how the three fit together).
 *
 * Configuration.  SlotProxyBackend and the global limits fill one
 * spm_conf_t kept in the main server's config (pconf memory, inherited by
 * every child and by the proxy child through fork).  SlotProxyPass entries
 * are per server; a virtual host sees the main server's entries first,
 * then its own (mod_proxy's merge order), and the first match wins.
 * Backend names in SlotProxyPass are resolved, and secret files read (as
 * root, before anything forks), in check_config: a backend may be declared
 * after its use, and `apache2 -t` reports a typo or a bad secret file.
 *
 * Mapping.  translate_name (after mod_rewrite, like mod_proxy's) sets
 * r->handler = "slotproxy:NAME", r->filename = "slotproxy:NAME" + r->uri
 * and the request note "slotproxy-backend"; map_to_storage returns OK for
 * such a filename, so no <Directory> walk and no filesystem lookup happen
 * (<Location> sections still apply).  The handler honours the note even if
 * a SetHandler or AddHandler replaced r->handler afterwards: like
 * ProxyPass, a SlotProxyPass mapping wins; exclude a path with
 * `SlotProxyPass PATH !`.  `SetHandler slotproxy:NAME` works on its own.
 *
 * One segment and one proxy child per generation.  post_config's second
 * pass (never the first, throw-away one: its process exits when httpd
 * detaches) creates an anonymous shared segment in pconf (slot table +
 * spm_shared_t) and forks the proxy child, in the style of mod_cgid but
 * with two differences:
 *   - the proxy is NOT noted as a pconf subprocess: a graceful restart
 *     clears pconf at once, while old-generation children still run
 *     requests through the old segment and the old proxy.  The parent
 *     unmaps the old segment; the old children and the old proxy keep
 *     their mappings.
 *   - the proxy records live in retained data (s->process->pool), so they
 *     survive restarts.  Each post_config re-registers the old proxies
 *     that are still around as "other children" (the registration lives
 *     in pconf and is dropped on each restart), so httpd reaps them and
 *     tells us.
 * A proxy is retired (SIGTERM; SIGKILL from the monitor hook if it is
 * still there 10 s later) when the last child of its MPM generation has
 * exited: end_generation says so; child_status is counted as well,
 * because end_generation fires without our hook when a generation ends
 * during the pconf teardown (hard restart, every child already reaped),
 * and because a generation that never started a child never ends.
 * On a hard restart httpd's reclaim sends APR_OC_REASON_RESTART: the
 * proxy goes with the children.  On a stop the MPM signals the process
 * group, and PR_SET_PDEATHSIG covers the parent's exit.
 *
 * Restart of a dead proxy.  Only the current generation's proxy is
 * restarted (an old one has no segment in the parent any more; its
 * children finish their last request and exit), never while the MPM is
 * stopping, and never one we retired.  A proxy reaped less than 2 s after
 * it started (httpd reaps once a second) counts as a quick death; the
 * replacement is forked at once but sleeps 1, 2, 4 ... 30 s before it
 * starts, so the parent never blocks and never loops on fork.
 *
 * The proxy child, right after fork: every signal back to its default
 * (SIGPIPE and SIGUSR1 ignored, see slotproxy_proxy_child), an empty
 * signal mask, listeners closed, privileges dropped the way httpd's
 * children drop them (ap_run_drop_privileges), then PR_SET_PDEATHSIG
 * (after the drop: a credential change clears it) and a check that the
 * parent is still there; spm_proxy_main() never returns.  It leaves with
 * exit(), never by destroying pconf.
 *
 * Everything here that touches the retained records runs in the parent's
 * single main thread (post_config, the other-child callbacks, monitor,
 * child_status, end_generation), so none of it needs a lock.
 *
 * Log tags SPM0001-SPM0199 belong to this file.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h" /* first: it pulls in apr.h/apu.h the others need */

#include "apr_lib.h"
#include "apr_optional_hooks.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "ap_listen.h"
#include "ap_mpm.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_status.h"
#include "mpm_common.h"

#include "handler.h"
#include "session.h"
#include "slotproxy.h"
#include "sp_auth.h"
#include "sp_error.h"
#include "sp_proc.h"

module AP_MODULE_DECLARE_DATA slotproxy_module;
APLOG_USE_MODULE(slotproxy);

#define SLOTPROXY_HANDLER_PREFIX "slotproxy:"
#define SLOTPROXY_HANDLER_PREFIX_LEN (sizeof(SLOTPROXY_HANDLER_PREFIX) - 1)
#define SLOTPROXY_STATUS_HANDLER "slotproxy-status"
#define SLOTPROXY_NOTE "slotproxy-backend"
/* Bump the version when slotproxy_retained_t changes layout. */
#define SLOTPROXY_RETAINED_KEY "mod_slotproxy.c retained v1"
#define SLOTPROXY_MAX_PROXIES 64
#define SLOTPROXY_QUICK_DEATH_MS 2000 /* httpd reaps once a second */
#define SLOTPROXY_MAX_DELAY_MS 30000
#define SLOTPROXY_KILL_AFTER_SEC 10

/* ---- configuration ------------------------------------------------------ */

typedef struct slotproxy_pass {
    const char *path;
    apr_size_t len;
    const char *name; /* NULL: an exclusion ("!") */
    int backend;      /* index into spm_conf_t.backends, -1 until resolved */
    const char *file; /* where it was written, for error messages */
    unsigned line;
} slotproxy_pass_t;

typedef struct slotproxy_srv {
    apr_array_header_t *passes; /* slotproxy_pass_t, first match wins */
    spm_conf_t *spm;            /* the main server's only (global settings) */
} slotproxy_srv_t;

static spm_conf_t *slotproxy_spm_new(apr_pool_t *p)
{
    spm_conf_t *c = apr_pcalloc(p, sizeof(*c));
    c->max_inflight = 0;
    c->queue_len = 100;
    c->queue_timeout_ms = 5000;
    c->buffer_size = 65536;
    c->overflow_slots = 64;
    c->max_payload = 65536;
    c->sched_batch = 1;
    c->poll_us = 200;
    return c;
}

static void *slotproxy_create_srv(apr_pool_t *p, server_rec *s)
{
    slotproxy_srv_t *sc = apr_pcalloc(p, sizeof(*sc));
    sc->passes = apr_array_make(p, 4, sizeof(slotproxy_pass_t));
    return sc;
}

static void *slotproxy_merge_srv(apr_pool_t *p, void *basev, void *addv)
{
    const slotproxy_srv_t *base = basev, *add = addv;
    slotproxy_srv_t *sc = apr_pcalloc(p, sizeof(*sc));
    sc->passes = apr_array_append(p, base->passes, add->passes);
    sc->spm = base->spm;
    return sc;
}

/* The global settings, created with their defaults on first use.  Only
 * called for GLOBAL_ONLY directives, so cmd->server is the main server. */
static spm_conf_t *slotproxy_spm_of(cmd_parms *cmd)
{
    slotproxy_srv_t *sc =
        ap_get_module_config(cmd->server->module_config, &slotproxy_module);
    if (sc->spm == NULL)
        sc->spm = slotproxy_spm_new(cmd->pool);
    return sc->spm;
}

/* Backend names: 1..63 of [A-Za-z0-9._-], compared without case (httpd
 * may lower-case handler names). */
static const char *slotproxy_check_name(apr_pool_t *p, const char *what,
                                        const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(((spm_backend_conf_t *)0)->name))
        return apr_psprintf(p,
                            "%s: backend name '%s' must be 1 to %d "
                            "characters",
                            what, name,
                            (int)sizeof(((spm_backend_conf_t *)0)->name) - 1);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!apr_isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
            return apr_psprintf(p,
                                "%s: backend name '%s' may only hold "
                                "letters, digits, '.', '_' and '-'",
                                what, name);
    }
    return NULL;
}

/* Strict unsigned decimal: digits only, no sign, no blanks. */
static int slotproxy_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (max - (uint64_t)(*s - '0')) / 10)
            return -2;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static const char *slotproxy_parse_int(apr_pool_t *p, const char *what,
                                       const char *arg, uint64_t min,
                                       uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    int rc = slotproxy_parse_u64(arg, UINT64_MAX, &v);
    if (rc == -1)
        return apr_psprintf(p, "%s: '%s' is not an integer", what, arg);
    if (rc < 0 || v < min || v > max)
        return apr_psprintf(
            p, "%s: '%s' is out of range (%" PRIu64 "..%" PRIu64 ")", what, arg,
            min, max);
    *out = v;
    return NULL;
}

/* A duration: an integer with an optional unit, "ms" or "s"; without a
 * unit, default_ms milliseconds per unit (1000 for seconds, 1 for ms). */
static const char *slotproxy_parse_duration(apr_pool_t *p, const char *what,
                                            const char *arg, int64_t default_ms,
                                            int64_t min_ms, int64_t max_ms,
                                            int *out_ms)
{
    char num[32];
    size_t n = 0;
    int64_t unit = default_ms;
    uint64_t v;
    while (arg[n] >= '0' && arg[n] <= '9')
        n++;
    if (n == 0 || n >= sizeof(num))
        return apr_psprintf(p,
                            "%s: '%s' is not a duration (an integer, "
                            "optionally followed by ms or s)",
                            what, arg);
    if (strcmp(arg + n, "ms") == 0)
        unit = 1;
    else if (strcmp(arg + n, "s") == 0)
        unit = 1000;
    else if (arg[n] != '\0')
        return apr_psprintf(p,
                            "%s: '%s' is not a duration (an integer, "
                            "optionally followed by ms or s)",
                            what, arg);
    memcpy(num, arg, n);
    num[n] = '\0';
    if (slotproxy_parse_u64(num, (uint64_t)INT32_MAX, &v) < 0 ||
        (int64_t)v * unit < min_ms || (int64_t)v * unit > max_ms)
        return apr_psprintf(
            p, "%s: '%s' is out of range (%" PRId64 " ms..%" PRId64 " s)", what,
            arg, min_ms, max_ms / 1000);
    *out_ms = (int)((int64_t)v * unit);
    return NULL;
}

/* A size: bytes, or a number followed by K or M (either case). */
static const char *slotproxy_parse_size(apr_pool_t *p, const char *what,
                                        const char *arg, uint64_t min,
                                        uint64_t max, uint64_t *out)
{
    char num[32];
    size_t n = 0;
    uint64_t mult = 1, v = 0;
    while (arg[n] >= '0' && arg[n] <= '9')
        n++;
    if (n > 0 && n < sizeof(num) && arg[n] != '\0' && arg[n + 1] == '\0') {
        if (arg[n] == 'k' || arg[n] == 'K')
            mult = 1024;
        else if (arg[n] == 'm' || arg[n] == 'M')
            mult = 1024 * 1024;
    }
    if (n == 0 || n >= sizeof(num) || (arg[n] != '\0' && mult == 1))
        return apr_psprintf(p,
                            "%s: '%s' is not a size (bytes, or a number "
                            "with K or M)",
                            what, arg);
    memcpy(num, arg, n);
    num[n] = '\0';
    if (slotproxy_parse_u64(num, UINT32_MAX, &v) < 0 || v * mult < min ||
        v * mult > max)
        return apr_psprintf(
            p, "%s: '%s' is out of range (%" PRIu64 "..%" PRIu64 " bytes)",
            what, arg, min, max);
    *out = v * mult;
    return NULL;
}

static int slotproxy_find_backend(const spm_conf_t *c, const char *name)
{
    for (int i = 0; i < c->nbackends; i++)
        if (strcasecmp(c->backends[i].name, name) == 0)
            return i;
    return -1;
}

/* SlotProxyBackend NAME ADDRESS [key=value ...] */
static const char *slotproxy_cmd_backend(cmd_parms *cmd, void *dummy, int argc,
                                         char *const argv[])
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    spm_conf_t *c;
    spm_backend_conf_t *b;
    char reason[256];
    const char *what;
    if (err != NULL)
        return err;
    if (argc < 2)
        return "SlotProxyBackend takes NAME ADDRESS [key=value ...]";
    c = slotproxy_spm_of(cmd);
    if ((err = slotproxy_check_name(cmd->pool, "SlotProxyBackend", argv[0])))
        return err;
    what = apr_psprintf(cmd->pool, "SlotProxyBackend %s", argv[0]);
    if (slotproxy_find_backend(c, argv[0]) >= 0)
        return apr_psprintf(cmd->pool,
                            "%s: a backend of that name is "
                            "already declared",
                            what);
    if (c->nbackends >= SPM_MAX_BACKENDS)
        return apr_psprintf(cmd->pool, "%s: too many backends (at most %d)",
                            what, SPM_MAX_BACKENDS);
    b = &c->backends[c->nbackends];
    memset(b, 0, sizeof(*b));
    apr_cpystrn(b->name, argv[0], sizeof(b->name));
    if (strlen(argv[1]) >= sizeof(b->address))
        return apr_psprintf(cmd->pool, "%s: address too long", what);
    apr_cpystrn(b->address, argv[1], sizeof(b->address));
    reason[0] = '\0';
    if (sp_addr_parse(argv[1], &b->addr, reason, sizeof(reason)) < 0)
        return apr_psprintf(cmd->pool, "%s: bad address '%s': %s", what,
                            argv[1], reason[0] ? reason : "invalid");
    b->links = 2;
    b->connect_timeout_ms = 3000;
    b->timeout_ms = 300000;
    b->ping_interval_ms = 10000;
    b->retry_ms = 250;

    for (int i = 2; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *key, *val, *kwhat;
        uint64_t v;
        if (eq == NULL || eq == argv[i] || eq[1] == '\0')
            return apr_psprintf(cmd->pool, "%s: expected key=value, got '%s'",
                                what, argv[i]);
        key =
            apr_pstrmemdup(cmd->temp_pool, argv[i], (apr_size_t)(eq - argv[i]));
        val = eq + 1;
        kwhat = apr_psprintf(cmd->temp_pool, "%s %s", what, key);
        if (strcasecmp(key, "links") == 0) {
            if ((err = slotproxy_parse_int(cmd->pool, kwhat, val, 1,
                                           SPM_MAX_LINKS, &v)))
                return err;
            b->links = (int)v;
        } else if (strcasecmp(key, "connect_timeout") == 0) {
            if ((err = slotproxy_parse_duration(cmd->pool, kwhat, val, 1000, 1,
                                                3600 * 1000LL,
                                                &b->connect_timeout_ms)))
                return err;
        } else if (strcasecmp(key, "timeout") == 0) {
            if ((err =
                     slotproxy_parse_duration(cmd->pool, kwhat, val, 1000, 1,
                                              86400 * 1000LL, &b->timeout_ms)))
                return err;
        } else if (strcasecmp(key, "ping") == 0) {
            if ((err = slotproxy_parse_duration(cmd->pool, kwhat, val, 1000,
                                                100, 3600 * 1000LL,
                                                &b->ping_interval_ms)))
                return err;
        } else if (strcasecmp(key, "retry") == 0) {
            if ((err = slotproxy_parse_duration(cmd->pool, kwhat, val, 1, 1,
                                                60 * 1000LL, &b->retry_ms)))
                return err;
        } else if (strcasecmp(key, "secret") == 0) {
            const char *path = ap_server_root_relative(cmd->pool, val);
            if (path == NULL || strlen(path) >= sizeof(b->secret_file))
                return apr_psprintf(cmd->pool,
                                    "%s: bad or too long path "
                                    "'%s'",
                                    kwhat, val);
            apr_cpystrn(b->secret_file, path, sizeof(b->secret_file));
        } else {
            return apr_psprintf(cmd->pool,
                                "%s: unknown parameter '%s' "
                                "(known: links, connect_timeout, "
                                "timeout, ping, retry, secret)",
                                what, key);
        }
    }
    c->nbackends++;
    return NULL;
}

/* SlotProxyPass PATH NAME|! */
static const char *slotproxy_cmd_pass(cmd_parms *cmd, void *dummy,
                                      const char *path, const char *name)
{
    slotproxy_srv_t *sc =
        ap_get_module_config(cmd->server->module_config, &slotproxy_module);
    slotproxy_pass_t *pe;
    const char *err;
    if (path[0] != '/')
        return apr_psprintf(cmd->pool,
                            "SlotProxyPass: path '%s' must start "
                            "with '/'",
                            path);
    if (strcmp(name, "!") != 0 &&
        (err = slotproxy_check_name(cmd->pool, "SlotProxyPass", name)))
        return err;
    for (int i = 0; i < sc->passes->nelts; i++) {
        pe = &APR_ARRAY_IDX(sc->passes, i, slotproxy_pass_t);
        if (strcmp(pe->path, path) == 0)
            return apr_psprintf(cmd->pool,
                                "SlotProxyPass: path '%s' is "
                                "already mapped on line %u",
                                path, pe->line);
    }
    pe = apr_array_push(sc->passes);
    pe->path = apr_pstrdup(cmd->pool, path);
    pe->len = strlen(path);
    pe->name = strcmp(name, "!") == 0 ? NULL : apr_pstrdup(cmd->pool, name);
    pe->backend = -1;
    pe->file = cmd->directive ? cmd->directive->filename : "?";
    pe->line = cmd->directive ? cmd->directive->line_num : 0;
    return NULL;
}

enum {
    SLOTPROXY_MAX_INFLIGHT,
    SLOTPROXY_QUEUE,
    SLOTPROXY_QUEUE_TIMEOUT,
    SLOTPROXY_BUFFER_SIZE,
    SLOTPROXY_OVERFLOW_SLOTS,
    SLOTPROXY_MAX_PAYLOAD,
    SLOTPROXY_POLL_TIME
};

/* The global limits; cmd->info says which one. */
static const char *slotproxy_cmd_limit(cmd_parms *cmd, void *dummy,
                                       const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *what = cmd->cmd->name;
    spm_conf_t *c;
    uint64_t v;
    if (err != NULL)
        return err;
    c = slotproxy_spm_of(cmd);
    switch ((int)(intptr_t)cmd->info) {
    case SLOTPROXY_MAX_INFLIGHT:
        if ((err = slotproxy_parse_int(cmd->pool, what, arg, 0, 1000000, &v)))
            return err;
        c->max_inflight = (uint32_t)v;
        break;
    case SLOTPROXY_QUEUE:
        if ((err = slotproxy_parse_int(cmd->pool, what, arg, 0, 1000000, &v)))
            return err;
        c->queue_len = (uint32_t)v;
        break;
    case SLOTPROXY_QUEUE_TIMEOUT:
        return slotproxy_parse_duration(cmd->pool, what, arg, 1000, 0,
                                        3600 * 1000LL, &c->queue_timeout_ms);
    case SLOTPROXY_BUFFER_SIZE:
        if ((err = slotproxy_parse_size(cmd->pool, what, arg, 16 * 1024,
                                        16 * 1024 * 1024, &v)))
            return err;
        if ((v & (v - 1)) != 0)
            return apr_psprintf(cmd->pool, "%s: '%s' is not a power of two",
                                what, arg);
        c->buffer_size = (uint32_t)v;
        break;
    case SLOTPROXY_OVERFLOW_SLOTS:
        if ((err = slotproxy_parse_int(cmd->pool, what, arg, 0, 65536, &v)))
            return err;
        c->overflow_slots = (uint32_t)v;
        break;
    case SLOTPROXY_MAX_PAYLOAD:
        if ((err = slotproxy_parse_size(cmd->pool, what, arg, 4096,
                                        16 * 1024 * 1024, &v)))
            return err;
        c->max_payload = (uint32_t)v;
        break;
    case SLOTPROXY_POLL_TIME:
        if ((err = slotproxy_parse_int(cmd->pool, what, arg, 0,
                                       SPM_POLL_US_MAX, &v)))
            return err;
        c->poll_us = (uint32_t)v;
        break;
    default:
        return "mod_slotproxy: unknown limit directive";
    }
    return NULL;
}

/* SlotProxyScheduling batch|normal */
static const char *slotproxy_cmd_scheduling(cmd_parms *cmd, void *dummy,
                                            const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    spm_conf_t *c;
    if (err != NULL)
        return err;
    c = slotproxy_spm_of(cmd);
    if (strcasecmp(arg, "batch") == 0)
        c->sched_batch = 1;
    else if (strcasecmp(arg, "normal") == 0)
        c->sched_batch = 0;
    else
        return apr_psprintf(cmd->pool,
                            "SlotProxyScheduling: '%s' is not one of batch, "
                            "normal",
                            arg);
    return NULL;
}

/* SlotProxySessionStore PATH [max_sessions=N] [max_value=BYTES]
 * [data=BYTES] */
static const char *slotproxy_cmd_sess_store(cmd_parms *cmd, void *dummy,
                                            int argc, char *const argv[])
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    sp_sess_conf_t c;
    uint64_t v;
    if (err != NULL)
        return err;
    if (argc < 1)
        return "SlotProxySessionStore: PATH [max_sessions=N] "
               "[max_value=BYTES] [data=BYTES]";
    memset(&c, 0, sizeof(c));
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *key =
            eq ? apr_pstrndup(cmd->pool, argv[i], (apr_size_t)(eq - argv[i]))
               : argv[i];
        if (eq == NULL)
            return apr_psprintf(cmd->pool,
                                "SlotProxySessionStore: '%s' is not "
                                "key=value",
                                argv[i]);
        if (strcmp(key, "max_sessions") == 0) {
            err = slotproxy_parse_int(cmd->pool, "max_sessions", eq + 1, 16,
                                      1u << 24, &v);
            c.max_sessions = (uint32_t)v;
        } else if (strcmp(key, "max_value") == 0) {
            err = slotproxy_parse_size(cmd->pool, "max_value", eq + 1, 256,
                                       16u << 20, &v);
            c.max_value = (uint32_t)v;
        } else if (strcmp(key, "data") == 0) {
            err = slotproxy_parse_size(cmd->pool, "data", eq + 1, 64u << 10,
                                       UINT32_MAX, &v);
            c.data_bytes = v;
        } else
            return apr_psprintf(cmd->pool,
                                "SlotProxySessionStore: unknown parameter "
                                "'%s' (max_sessions, max_value, data)",
                                key);
        if (err != NULL)
            return apr_pstrcat(cmd->pool, "SlotProxySessionStore: ", err, NULL);
    }
    return spm_sess_cmd_store(cmd, dummy, argv[0], &c);
}

static const command_rec slotproxy_cmds[] = {
    AP_INIT_TAKE_ARGV("SlotProxyBackend", slotproxy_cmd_backend, NULL,
                      RSRC_CONF,
                      "NAME ADDRESS [key=value ...]: declare a backend "
                      "(tcp://host:port, unix:/path or shm:/path; links, "
                      "connect_timeout, timeout, ping, retry, secret)"),
    AP_INIT_TAKE2("SlotProxyPass", slotproxy_cmd_pass, NULL, RSRC_CONF,
                  "PATH NAME: send URLs under PATH to backend NAME "
                  "(NAME '!' excludes PATH)"),
    AP_INIT_TAKE1("SlotProxyMaxInflight", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_MAX_INFLIGHT, RSRC_CONF,
                  "requests in flight across all children (0 = one per slot)"),
    AP_INIT_TAKE1("SlotProxyQueue", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_QUEUE, RSRC_CONF,
                  "requests that may wait for admission (0 = none)"),
    AP_INIT_TAKE1("SlotProxyQueueTimeout", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_QUEUE_TIMEOUT, RSRC_CONF,
                  "longest wait for admission (seconds, or Nms)"),
    AP_INIT_TAKE1("SlotProxyBufferSize", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_BUFFER_SIZE, RSRC_CONF,
                  "bytes per slot ring (power of two, 16K..16M)"),
    AP_INIT_TAKE1("SlotProxyOverflowSlots", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_OVERFLOW_SLOTS, RSRC_CONF,
                  "slots for requests without a scoreboard slot (HTTP/2)"),
    AP_INIT_TAKE1("SlotProxyMaxPayload", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_MAX_PAYLOAD, RSRC_CONF,
                  "largest link frame payload (4K..16M)"),
    AP_INIT_TAKE1("SlotProxyPollTime", slotproxy_cmd_limit,
                  (void *)SLOTPROXY_POLL_TIME, RSRC_CONF,
                  "microseconds the proxy child and a waiting handler poll "
                  "for an answer while the CPU is free (0..10000, default "
                  "200; 0 = sleep at once)"),
    AP_INIT_TAKE1("SlotProxyScheduling", slotproxy_cmd_scheduling, NULL,
                  RSRC_CONF,
                  "batch|normal: the proxy child's scheduling policy "
                  "(default batch)"),
    AP_INIT_TAKE_ARGV("SlotProxySessionStore", slotproxy_cmd_sess_store, NULL,
                      RSRC_CONF,
                      "PATH [max_sessions=N] [max_value=BYTES] [data=BYTES]: "
                      "the session file (mod_session store)"),
    AP_INIT_FLAG("SlotProxySession", spm_sess_cmd_enable, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On: keep this location's mod_session sessions in the "
                 "SlotProxySessionStore"),
    AP_INIT_RAW_ARGS("SlotProxySessionCookie", spm_sess_cmd_cookie, NULL,
                     RSRC_CONF | ACCESS_CONF,
                     "NAME [attributes]: the cookie carrying the session id"),
    {NULL}};

/* ---- process-wide state --------------------------------------------------
 *
 * slotproxy_runtime: this generation's segment, filled in post_config
 * before the MPM forks its children (so every child has it), zeroed by a
 * pconf cleanup in the parent.  The retained records outlive pconf. */

static spm_runtime_t slotproxy_runtime;
static apr_pool_t *slotproxy_pconf;

typedef struct slotproxy_proxy {
    apr_proc_t proc;  /* registered as an other child */
    sp_ident_t ident; /* pid + start time: kill() only this one */
    int in_use;
    int registered;          /* other-child registration is live */
    int retiring;            /* SIGTERM sent: never restart it */
    ap_generation_t mpm_gen; /* the MPM generation it serves */
    uint64_t seg_gen;        /* its segment's generation */
    int children;            /* live MPM children of mpm_gen */
    unsigned quick_deaths;   /* consecutive deaths within 2 s of start */
    apr_time_t started;      /* when spm_proxy_main was (to be) entered */
    apr_time_t retired_at;
} slotproxy_proxy_t;

typedef struct slotproxy_retained {
    uint64_t seg_gen; /* last segment generation handed out */
    slotproxy_proxy_t proxy[SLOTPROXY_MAX_PROXIES];
} slotproxy_retained_t;

static slotproxy_retained_t *slotproxy_retained;
static slotproxy_proxy_t *slotproxy_cur; /* this generation's proxy */

static slotproxy_retained_t *slotproxy_retained_get(void)
{
    if (slotproxy_retained == NULL) {
        slotproxy_retained = ap_retained_data_get(SLOTPROXY_RETAINED_KEY);
        if (slotproxy_retained == NULL)
            slotproxy_retained = ap_retained_data_create(
                SLOTPROXY_RETAINED_KEY, sizeof(*slotproxy_retained));
    }
    return slotproxy_retained;
}

static int slotproxy_mpm_stopping(void)
{
    int st;
    return ap_mpm_query(AP_MPMQ_MPM_STATE, &st) == APR_SUCCESS &&
           st == AP_MPMQ_STOPPING;
}

/* Is the process of this record still there (a zombie counts: it still
 * needs reaping), and not some other process that reused its pid? */
static int slotproxy_proxy_exists(const slotproxy_proxy_t *px)
{
    uint64_t st = sp_proc_starttime(px->proc.pid);
    return st != 0 && (px->ident.start == 0 || st == px->ident.start);
}

static void slotproxy_free(slotproxy_proxy_t *px)
{
    memset(px, 0, sizeof(*px));
}

static void slotproxy_retire(slotproxy_proxy_t *px, const char *why)
{
    if (!px->in_use || px->retiring)
        return;
    px->retiring = 1;
    px->retired_at = apr_time_now();
    if (slotproxy_proxy_exists(px))
        kill(px->proc.pid, SIGTERM);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                 "SPM0006: retiring proxy child %" APR_PID_T_FMT
                 " of generation %" PRIu64 " (%s)",
                 px->proc.pid, px->seg_gen, why);
}

static void slotproxy_maint(int reason, void *data, int status);

static void slotproxy_register(slotproxy_proxy_t *px, apr_pool_t *pconf)
{
    apr_proc_other_child_register(&px->proc, slotproxy_maint, px, NULL, pconf);
    px->registered = 1;
}

static void slotproxy_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* In the freshly forked proxy child.  Never returns. */
static void slotproxy_proxy_child(apr_pool_t *pconf, sp_ident_t parent,
                                  int delay_ms) __attribute__((noreturn));
static void slotproxy_proxy_child(apr_pool_t *pconf, sp_ident_t parent,
                                  int delay_ms)
{
    struct sigaction sa;
    sigset_t none;
    apr_pool_t *pchild = NULL;
    int rc;

    /* The MPM's handlers (and, after the first generation, its ignored
     * SIGTERM) must not survive into the proxy.  SIGPIPE: links report
     * EPIPE instead.  SIGUSR1 is httpd's "graceful" signal: the MPMs send
     * it per pid, but `kill -USR1` to the process group or by name must
     * not take the proxy down mid-request; the parent retires it
     * explicitly.  SIGHUP keeps its default: a hard restart (prefork
     * signals the whole group) ends this generation's proxy too. */
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &sa, NULL); /* EINVAL for libc's own */
    sa.sa_handler = SIG_IGN;
    (void)sigaction(SIGPIPE, &sa, NULL);
    (void)sigaction(SIGUSR1, &sa, NULL);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);

    ap_close_listeners();

    apr_pool_create(&pchild, pconf);
    rc = ap_run_drop_privileges(pchild, ap_server_conf);
    if (rc != OK && rc != DECLINED) {
        ap_log_error(APLOG_MARK, APLOG_ALERT, 0, ap_server_conf,
                     "SPM0030: proxy child %ld cannot drop privileges; "
                     "exiting",
                     (long)getpid());
        /* Like an httpd child that cannot drop privileges: fatal. */
        exit(APEXIT_CHILDFATAL);
    }

    /* After the drop: a change of credentials clears the setting. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, ap_server_conf,
                     "SPM0031: proxy child: prctl(PR_SET_PDEATHSIG)");
    if (getppid() != (pid_t)parent.pid)
        exit(0); /* the parent is already gone */
    /* SCHED_BATCH: woken by a handler's doorbell or a link, the proxy
     * waits for the waker to go to sleep instead of preempting it. */
    if (sp_proc_sched_batch(slotproxy_runtime.conf->sched_batch) < 0)
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, ap_server_conf,
                     "SPM0033: proxy child: SlotProxyScheduling %s: "
                     "sched_setscheduler",
                     slotproxy_runtime.conf->sched_batch ? "batch"
                                                          : "normal");

    if (delay_ms > 0)
        slotproxy_sleep_ms(delay_ms);

    spm_proxy_main(slotproxy_runtime.conf, &slotproxy_runtime.slots,
                   slotproxy_runtime.shared, parent);
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                 "SPM0032: spm_proxy_main returned");
    exit(1);
}

/* Fork this generation's proxy into record px (parent side). */
static apr_status_t slotproxy_spawn(slotproxy_proxy_t *px, int delay_ms)
{
    sp_ident_t parent = sp_ident_self();
    spm_shared_t *sh = slotproxy_runtime.shared;
    apr_status_t rv = apr_proc_fork(&px->proc, slotproxy_pconf);

    if (rv == APR_INCHILD)
        slotproxy_proxy_child(slotproxy_pconf, parent, delay_ms);
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, ap_server_conf,
                     "SPM0002: cannot fork the proxy child");
        return rv;
    }
    px->ident.pid = px->proc.pid;
    px->ident.start = sp_proc_starttime(px->proc.pid);
    px->started = apr_time_now() + apr_time_from_msec(delay_ms);
    /* The pair handlers use as the proxy's identity (sp_ident_t): start
     * first, pid last with release, as proxy.c itself writes them. */
    sp_store_relaxed(&sh->proxy_start, px->ident.start);
    sp_store_release(&sh->proxy_pid, (int32_t)px->proc.pid);
    slotproxy_register(px, slotproxy_pconf);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                 "SPM0001: proxy child %" APR_PID_T_FMT " started for "
                 "generation %" PRIu64 "%s",
                 px->proc.pid, px->seg_gen, delay_ms > 0 ? " (delayed)" : "");
    return APR_SUCCESS;
}

/* httpd reaped (or lost) the proxy of record px. */
static void slotproxy_proxy_gone(slotproxy_proxy_t *px, int reason, int status)
{
    apr_time_t now = apr_time_now();
    int delay_ms = 0;

    if (px != slotproxy_cur || px->retiring || slotproxy_mpm_stopping()) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                     "SPM0005: proxy child %" APR_PID_T_FMT " of generation "
                     "%" PRIu64 " has exited",
                     px->proc.pid, px->seg_gen);
        if (px == slotproxy_cur)
            slotproxy_cur = NULL;
        slotproxy_free(px);
        return;
    }
    if (now - px->started < apr_time_from_msec(SLOTPROXY_QUICK_DEATH_MS)) {
        unsigned q = px->quick_deaths < 16 ? px->quick_deaths : 15;
        delay_ms = 1000 << q;
        if (delay_ms > SLOTPROXY_MAX_DELAY_MS)
            delay_ms = SLOTPROXY_MAX_DELAY_MS;
        px->quick_deaths++;
    } else {
        px->quick_deaths = 0;
    }
    /* status: exit code or signal number as httpd reports it. */
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                 "SPM0003: proxy child %" APR_PID_T_FMT " %s (exit code or "
                 "signal %d); restarting it in %d ms",
                 px->proc.pid,
                 reason == APR_OC_REASON_LOST ? "was lost" : "died", status,
                 delay_ms);
    sp_stat_add(&slotproxy_runtime.shared->proxy_restarts, 1);
    if (slotproxy_spawn(px, delay_ms) != APR_SUCCESS) {
        slotproxy_cur = NULL;
        slotproxy_free(px);
    }
}

/* The other-child callback (parent, MPM main loop or pool cleanup). */
static void slotproxy_maint(int reason, void *data, int status)
{
    slotproxy_proxy_t *px = data;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        /* APR set the record's proc to NULL: drop it now, or a later
         * alert for another pid would dereference it. */
        px->registered = 0;
        apr_proc_other_child_unregister(px);
        slotproxy_proxy_gone(px, reason, status);
        break;
    case APR_OC_REASON_RESTART:
        /* ap_reclaim_child_processes: httpd is killing every child (hard
         * restart or stop); the proxy goes with them.  A graceful restart
         * never gets here. */
        slotproxy_retire(px, "httpd reclaims its children");
        break;
    case APR_OC_REASON_UNREGISTER:
        /* pconf cleared (restart) or our own unregister: the proxy keeps
         * running; the next post_config registers it again. */
        px->registered = 0;
        break;
    default:
        break;
    }
}

static apr_status_t slotproxy_pconf_cleanup(void *data)
{
    /* The parent's mapping goes with pconf; the children and the proxy
     * keep theirs.  Close the parent's doorbell copy so restarts do not
     * pile up descriptors. */
    if (slotproxy_runtime.slots.doorbell_fd >= 0 && slotproxy_runtime.shared)
        sp_slots_close(&slotproxy_runtime.slots);
    memset(&slotproxy_runtime, 0, sizeof(slotproxy_runtime));
    slotproxy_runtime.slots.doorbell_fd = -1;
    slotproxy_cur = NULL;
    slotproxy_pconf = NULL;
    return APR_SUCCESS;
}

/* ---- configuration checks and post_config ------------------------------- */

static spm_conf_t *slotproxy_main_spm(server_rec *s, apr_pool_t *p)
{
    slotproxy_srv_t *sc =
        ap_get_module_config(s->module_config, &slotproxy_module);
    if (sc->spm == NULL)
        sc->spm = slotproxy_spm_new(p);
    return sc->spm;
}

/* Secrets are read as root, before anything forks; the proxy child gets
 * them through fork and never opens the files. */
static int slotproxy_load_secrets(spm_conf_t *c, server_rec *s, int warn)
{
    for (int i = 0; i < c->nbackends; i++) {
        spm_backend_conf_t *b = &c->backends[i];
        char reason[256];
        if (b->secret_file[0] == '\0') {
            if (warn && b->addr.kind == SP_ADDR_TCP &&
                !sp_addr_is_local(&b->addr))
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                             "SPM0012: SlotProxyBackend %s at %s is not on "
                             "loopback and has no secret=: the backend will "
                             "refuse the link unless it listens on loopback",
                             b->name, b->address);
            continue;
        }
        reason[0] = '\0';
        if (sp_auth_load_secret(b->secret_file, b->secret, sizeof(b->secret),
                                &b->secret_len, reason, sizeof(reason)) < 0) {
            /* sp_auth's reasons name the file already. */
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_ERR, 0, NULL,
                         "SPM0011: SlotProxyBackend %s: %s", b->name,
                         reason[0] ? reason
                                   : apr_pstrcat(s->process->pconf,
                                                 "cannot read secret file ",
                                                 b->secret_file, NULL));
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* Resolve every SlotProxyPass name (in every server: vhosts hold merged
 * copies) and read the secret files.  Runs for `apache2 -t` as well, and
 * as root before anything forks. */
static int slotproxy_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                  apr_pool_t *ptemp, server_rec *s)
{
    spm_conf_t *c = slotproxy_main_spm(s, pconf);
    for (server_rec *sv = s; sv; sv = sv->next) {
        slotproxy_srv_t *sc =
            ap_get_module_config(sv->module_config, &slotproxy_module);
        for (int i = 0; i < sc->passes->nelts; i++) {
            slotproxy_pass_t *pe =
                &APR_ARRAY_IDX(sc->passes, i, slotproxy_pass_t);
            if (pe->name == NULL)
                continue;
            pe->backend = slotproxy_find_backend(c, pe->name);
            if (pe->backend < 0) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_ERR, 0, NULL,
                             "SPM0010: SlotProxyPass %s %s (%s:%u): no "
                             "SlotProxyBackend named '%s'",
                             pe->path, pe->name, pe->file, pe->line, pe->name);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }
    /* Warn once per start (the second pass), or under -t. */
    return slotproxy_load_secrets(
        c, s,
        ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG ||
            ap_state_query(AP_SQ_RUN_MODE) == AP_SQ_RM_CONFIG_TEST);
}

static slotproxy_proxy_t *slotproxy_record_new(slotproxy_retained_t *rd,
                                               server_rec *s)
{
    slotproxy_proxy_t *oldest = NULL;
    for (int i = 0; i < SLOTPROXY_MAX_PROXIES; i++) {
        slotproxy_proxy_t *px = &rd->proxy[i];
        if (!px->in_use)
            return px;
        if (oldest == NULL || px->seg_gen < oldest->seg_gen)
            oldest = px;
    }
    /* 64 generations still draining: drop the oldest (killed; if httpd
     * reaps it later it logs an unknown child). */
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                 "SPM0008: %d proxy children of old generations are still "
                 "running; killing the oldest (%" APR_PID_T_FMT ")",
                 SLOTPROXY_MAX_PROXIES, oldest->proc.pid);
    if (slotproxy_proxy_exists(oldest))
        kill(oldest->proc.pid, SIGKILL);
    if (oldest->registered)
        apr_proc_other_child_unregister(oldest);
    slotproxy_free(oldest);
    return oldest;
}

static int slotproxy_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                 apr_pool_t *ptemp, server_rec *s)
{
    int first_pass =
        ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG;
    spm_conf_t *c = slotproxy_main_spm(s, pconf);
    slotproxy_retained_t *rd;
    slotproxy_proxy_t *px;
    int daemons = 0, threads = 0, mpm_gen = 0;
    uint32_t nregular;
    size_t size;
    apr_shm_t *shm;
    apr_status_t rv;
    uintptr_t base;
    int rc;

    memset(&slotproxy_runtime, 0, sizeof(slotproxy_runtime));
    slotproxy_runtime.slots.doorbell_fd = -1;
    if (first_pass)
        return OK; /* this process exits when httpd detaches */

    slotproxy_pconf = pconf;
    apr_pool_cleanup_register(pconf, NULL, slotproxy_pconf_cleanup,
                              apr_pool_cleanup_null);

    rd = slotproxy_retained_get();
    rd->seg_gen++;
    if (ap_mpm_query(AP_MPMQ_GENERATION, &mpm_gen) != APR_SUCCESS)
        mpm_gen = ap_state_query(AP_SQ_CONFIG_GEN) - 1;

    /* Proxies of earlier generations: let httpd reap them through us
     * again, and retire those whose children are all gone already. */
    for (int i = 0; i < SLOTPROXY_MAX_PROXIES; i++) {
        px = &rd->proxy[i];
        if (!px->in_use)
            continue;
        if (!slotproxy_proxy_exists(px)) {
            slotproxy_free(px); /* reaped elsewhere */
            continue;
        }
        if (!px->registered)
            slotproxy_register(px, pconf);
        if (px->children <= 0)
            slotproxy_retire(px, "its generation has no children left");
    }

    /* The session store: opened here as root, inherited by the children
     * and the proxy child (which sweeps it). */
    rc = spm_sess_post_config(pconf, s);
    if (rc != OK)
        return rc;

    if (c->nbackends == 0)
        return OK; /* nothing to proxy: no segment, no proxy child */

    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons) != APR_SUCCESS ||
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads) != APR_SUCCESS ||
        daemons <= 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "SPM0013: cannot ask the MPM for ServerLimit/ThreadLimit");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (threads <= 0)
        threads = 1;
    nregular = (uint32_t)daemons * (uint32_t)threads;
    size = spm_segment_bytes(c, nregular);
    if (size == 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "SPM0014: no valid slot table for %u slots of %u bytes "
                     "per ring (+%u overflow)",
                     nregular, c->buffer_size, c->overflow_slots);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* Anonymous: every child and the proxy inherit the mapping.  APR puts
     * its own header first, so over-allocate and align to a cache line. */
    rv = apr_shm_create(&shm, size + SP_CACHELINE, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(
            APLOG_MARK, APLOG_CRIT, rv, s,
            "SPM0015: cannot create the shared segment (%" APR_SIZE_T_FMT
            " bytes)",
            size);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    base = ((uintptr_t)apr_shm_baseaddr_get(shm) + SP_CACHELINE - 1) &
           ~(uintptr_t)(SP_CACHELINE - 1);
    rc =
        spm_segment_create(c, (void *)base, size, nregular, rd->seg_gen,
                           &slotproxy_runtime.slots, &slotproxy_runtime.shared);
    if (rc < 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "SPM0016: cannot lay out the shared segment: %s",
                     sp_strerror(rc));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    slotproxy_runtime.conf = c;
    slotproxy_runtime.nregular = nregular;
    slotproxy_runtime.thread_limit = (uint32_t)threads;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "SPM0017: generation %" PRIu64 ": %u slots (%u + %u "
                 "overflow), %u-byte rings, %" APR_SIZE_T_FMT " bytes of "
                 "shared memory, %d backend(s)",
                 rd->seg_gen, slotproxy_runtime.slots.nslots, nregular,
                 c->overflow_slots, c->buffer_size, size, c->nbackends);

    px = slotproxy_record_new(rd, s);
    px->in_use = 1;
    px->mpm_gen = mpm_gen;
    px->seg_gen = rd->seg_gen;
    if (slotproxy_spawn(px, 0) != APR_SUCCESS) {
        slotproxy_free(px);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    slotproxy_cur = px;
    return OK;
}

static void slotproxy_child_init(apr_pool_t *p, server_rec *s)
{
    spm_shared_t *sh = slotproxy_runtime.shared;
    if (sh != NULL && sp_load_acquire(&sh->magic) != SPM_SHARED_MAGIC) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "SPM0018: the shared segment is not valid in this "
                     "child (magic %08x); slotproxy requests will fail",
                     (unsigned)sh->magic);
        slotproxy_runtime.shared = NULL;
    }
}

/* ---- generations ---------------------------------------------------------
 * These run in the parent with the current configuration's hooks. */

static void slotproxy_child_status(server_rec *s, pid_t pid,
                                   ap_generation_t gen, int slot,
                                   mpm_child_status status)
{
    slotproxy_retained_t *rd = slotproxy_retained;
    if (rd == NULL)
        return;
    for (int i = 0; i < SLOTPROXY_MAX_PROXIES; i++) {
        slotproxy_proxy_t *px = &rd->proxy[i];
        if (!px->in_use || px->mpm_gen != gen)
            continue;
        if (status == MPM_CHILD_STARTED) {
            px->children++;
        } else if (status == MPM_CHILD_EXITED) {
            if (px->children > 0)
                px->children--;
            if (px->children == 0 && px != slotproxy_cur)
                slotproxy_retire(px, "the last child of its generation "
                                     "exited");
        }
    }
}

static void slotproxy_end_generation(server_rec *s, ap_generation_t gen)
{
    slotproxy_retained_t *rd = slotproxy_retained;
    if (rd == NULL)
        return;
    for (int i = 0; i < SLOTPROXY_MAX_PROXIES; i++)
        if (rd->proxy[i].in_use && rd->proxy[i].mpm_gen == gen)
            slotproxy_retire(&rd->proxy[i], "end of its generation");
}

/* Every ~10 s in the parent: a retired proxy that ignored SIGTERM. */
static int slotproxy_monitor(apr_pool_t *p, server_rec *s)
{
    slotproxy_retained_t *rd = slotproxy_retained;
    apr_time_t now = apr_time_now();
    if (rd == NULL)
        return DECLINED;
    for (int i = 0; i < SLOTPROXY_MAX_PROXIES; i++) {
        slotproxy_proxy_t *px = &rd->proxy[i];
        if (px->in_use && px->retiring &&
            now - px->retired_at >
                apr_time_from_sec(SLOTPROXY_KILL_AFTER_SEC) &&
            slotproxy_proxy_exists(px) && kill(px->proc.pid, SIGKILL) == 0)
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "SPM0007: proxy child %" APR_PID_T_FMT " of "
                         "generation %" PRIu64 " ignored SIGTERM for %d s; "
                         "killed",
                         px->proc.pid, px->seg_gen, SLOTPROXY_KILL_AFTER_SEC);
    }
    return DECLINED;
}

/* ---- URL mapping -------------------------------------------------------- */

/* PATH matches the URI itself and everything below it: "/app" matches
 * "/app", "/app/x" but not "/apple"; "/app/" matches "/app/x". */
static int slotproxy_pass_match(const slotproxy_pass_t *pe, const char *uri)
{
    if (strncmp(uri, pe->path, pe->len) != 0)
        return 0;
    return pe->path[pe->len - 1] == '/' || uri[pe->len] == '\0' ||
           uri[pe->len] == '/';
}

static int slotproxy_translate(request_rec *r)
{
    slotproxy_srv_t *sc =
        ap_get_module_config(r->server->module_config, &slotproxy_module);
    if (r->proxyreq != PROXYREQ_NONE || r->uri == NULL || r->uri[0] != '/' ||
        sc->passes->nelts == 0)
        return DECLINED;
    for (int i = 0; i < sc->passes->nelts; i++) {
        const slotproxy_pass_t *pe =
            &APR_ARRAY_IDX(sc->passes, i, slotproxy_pass_t);
        if (!slotproxy_pass_match(pe, r->uri))
            continue;
        if (pe->name == NULL)
            return DECLINED; /* excluded */
        r->handler =
            apr_pstrcat(r->pool, SLOTPROXY_HANDLER_PREFIX, pe->name, NULL);
        r->filename = apr_pstrcat(r->pool, SLOTPROXY_HANDLER_PREFIX, pe->name,
                                  r->uri, NULL);
        apr_table_setn(r->notes, SLOTPROXY_NOTE, pe->name);
        return OK;
    }
    return DECLINED;
}

static int slotproxy_map_to_storage(request_rec *r)
{
    if (r->filename != NULL &&
        strncmp(r->filename, SLOTPROXY_HANDLER_PREFIX,
                SLOTPROXY_HANDLER_PREFIX_LEN) == 0 &&
        apr_table_get(r->notes, SLOTPROXY_NOTE) != NULL)
        return OK; /* no directory walk, no file lookup */
    return DECLINED;
}

/* ---- status pages ------------------------------------------------------- */

static const char *slotproxy_link_state_name(uint32_t st)
{
    switch (st) {
    case SPM_LINK_DOWN:
        return "down";
    case SPM_LINK_CONNECTING:
        return "connecting";
    case SPM_LINK_HANDSHAKE:
        return "handshake";
    case SPM_LINK_UP:
        return "up";
    case SPM_LINK_DRAINING:
        return "draining";
    default:
        return "?";
    }
}

/* A consistent-enough copy of the shared figures (each word read relaxed:
 * they are statistics for humans). */
typedef struct slotproxy_snap {
    int active;
    uint64_t generation;
    int mpm_gen;
    int32_t proxy_pid;
    int proxy_alive;
    int64_t proxy_uptime_s; /* -1 unknown */
    uint64_t proxy_restarts, output_stalls;
    uint32_t nslots, nregular, noverflow, inflight, limit;
    uint32_t counts[SP_SLOT_NSTATES];
    uint32_t admitted, queued;
    uint64_t admitted_total, rejected_full, rejected_timeout, client_aborts;
} slotproxy_snap_t;

/* Seconds since a /proc starttime (clock ticks since boot). */
static int64_t slotproxy_uptime_since(uint64_t start_ticks)
{
    struct timespec ts;
    long hz = sysconf(_SC_CLK_TCK);
    if (start_ticks == 0 || hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return -1;
    int64_t up = (int64_t)ts.tv_sec - (int64_t)(start_ticks / (uint64_t)hz);
    return up < 0 ? 0 : up;
}

static void slotproxy_snapshot(slotproxy_snap_t *sn)
{
    const spm_runtime_t *rt = &slotproxy_runtime;
    spm_shared_t *sh = rt->shared;
    memset(sn, 0, sizeof(*sn));
    sn->proxy_uptime_s = -1;
    if (sh == NULL || rt->conf == NULL)
        return;
    sn->active = 1;
    sn->generation = sh->generation;
    if (ap_mpm_query(AP_MPMQ_GENERATION, &sn->mpm_gen) != APR_SUCCESS)
        sn->mpm_gen = -1;
    sn->proxy_pid = sp_load_acquire(&sh->proxy_pid);
    sn->proxy_alive =
        sn->proxy_pid > 0 && (kill(sn->proxy_pid, 0) == 0 || errno == EPERM);
    if (sn->proxy_alive)
        sn->proxy_uptime_s =
            slotproxy_uptime_since(sp_load_relaxed(&sh->proxy_start));
    sn->proxy_restarts = sp_load_relaxed(&sh->proxy_restarts);
    sn->output_stalls = sp_load_relaxed(&sh->output_stalls);
    sn->nslots = rt->slots.nslots;
    sn->nregular = rt->slots.nregular;
    sn->noverflow = sn->nslots - sn->nregular;
    sn->inflight = sp_slots_inflight(&rt->slots);
    sn->limit = rt->conf->max_inflight ? rt->conf->max_inflight : sn->nslots;
    sp_slots_count(&rt->slots, sn->counts);
    sn->admitted = sp_load_relaxed(&sh->admitted);
    sn->queued = sp_load_relaxed(&sh->queued);
    sn->admitted_total = sp_load_relaxed(&sh->admitted_total);
    sn->rejected_full = sp_load_relaxed(&sh->rejected_full);
    sn->rejected_timeout = sp_load_relaxed(&sh->rejected_timeout);
    sn->client_aborts = sp_load_relaxed(&sh->client_aborts);
}

static void slotproxy_json_str(request_rec *r, const char *s)
{
    ap_rputc('"', r);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            ap_rprintf(r, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            ap_rprintf(r, "\\u%04x", ch);
        else
            ap_rputc(ch, r);
    }
    ap_rputc('"', r);
}

static void slotproxy_status_json(request_rec *r, const slotproxy_snap_t *sn)
{
    const spm_conf_t *c = slotproxy_runtime.conf;
    spm_shared_t *sh = slotproxy_runtime.shared;

    ap_set_content_type(r, "application/json");
    if (r->header_only)
        return;
    if (!sn->active) {
        ap_rputs("{\"active\":false}\n", r);
        return;
    }
    ap_rprintf(r,
               "{\"active\":true,\"generation\":%" PRIu64
               ",\"mpm_generation\":%d,\n",
               sn->generation, sn->mpm_gen);
    ap_rprintf(r,
               "\"proxy\":{\"pid\":%d,\"alive\":%s,\"uptime_s\":%" PRId64
               ",\"restarts\":%" PRIu64 ",\"output_stalls\":%" PRIu64 "},\n",
               (int)sn->proxy_pid, sn->proxy_alive ? "true" : "false",
               sn->proxy_uptime_s, sn->proxy_restarts, sn->output_stalls);
    ap_rprintf(r,
               "\"slots\":{\"total\":%u,\"regular\":%u,\"overflow\":%u,"
               "\"inflight\":%u,\"buffer_size\":%u,\"by_state\":{",
               sn->nslots, sn->nregular, sn->noverflow, sn->inflight,
               c->buffer_size);
    for (uint32_t st = 0; st < SP_SLOT_NSTATES; st++)
        ap_rprintf(r, "%s\"%s\":%u", st ? "," : "", sp_slot_state_name(st),
                   sn->counts[st]);
    ap_rputs("}},\n", r);
    ap_rprintf(r,
               "\"admission\":{\"limit\":%u,\"admitted\":%u,\"queued\":%u,"
               "\"queue_limit\":%u,\"queue_timeout_ms\":%d,"
               "\"admitted_total\":%" PRIu64 ",\"rejected_full\":%" PRIu64
               ",\"rejected_timeout\":%" PRIu64 ",\"client_aborts\":%" PRIu64
               "},\n",
               sn->limit, sn->admitted, sn->queued, c->queue_len,
               c->queue_timeout_ms, sn->admitted_total, sn->rejected_full,
               sn->rejected_timeout, sn->client_aborts);
    ap_rputs("\"backends\":[", r);
    for (int i = 0; i < c->nbackends; i++) {
        const spm_backend_conf_t *b = &c->backends[i];
        spm_backend_shared_t *bs = &sh->backends[i];
        int64_t now = sp_now_ns();
        ap_rputs(i ? ",\n{\"name\":" : "\n{\"name\":", r);
        slotproxy_json_str(r, b->name);
        ap_rputs(",\"address\":", r);
        slotproxy_json_str(r, b->address);
        ap_rprintf(
            r,
            ",\"links_configured\":%d,\"links_up\":%u,"
            "\"outstanding\":%u,\"requests\":%" PRIu64 ",\"retries\":%" PRIu64
            ",\"answered_502\":%" PRIu64 ",\"answered_503\":%" PRIu64
            ",\"answered_504\":%" PRIu64 ",\"links\":[",
            b->links, sp_load_relaxed(&bs->links_up),
            sp_load_relaxed(&bs->outstanding), sp_load_relaxed(&bs->requests),
            sp_load_relaxed(&bs->retries), sp_load_relaxed(&bs->answered_502),
            sp_load_relaxed(&bs->answered_503),
            sp_load_relaxed(&bs->answered_504));
        for (int l = 0; l < b->links && l < SPM_MAX_LINKS; l++) {
            spm_link_shared_t *ls = &bs->link[l];
            uint32_t st = sp_load_relaxed(&ls->state);
            int64_t since = sp_load_relaxed(&ls->up_since_ns);
            ap_rprintf(r,
                       "%s{\"state\":\"%s\",\"streams\":%u,\"rtt_us\":%" PRId64
                       ",\"up_s\":%" PRId64 ",\"connects\":%" PRIu64
                       ",\"failures\":%" PRIu64 ",\"frames_in\":%" PRIu64
                       ",\"frames_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
                       ",\"bytes_out\":%" PRIu64 "}",
                       l ? "," : "", slotproxy_link_state_name(st),
                       sp_load_relaxed(&ls->streams),
                       sp_load_relaxed(&ls->rtt_ns) / 1000,
                       st == SPM_LINK_UP && since > 0
                           ? (int64_t)((now - since) / SP_NSEC_PER_SEC)
                           : (int64_t)0,
                       sp_load_relaxed(&ls->connects),
                       sp_load_relaxed(&ls->failures),
                       sp_load_relaxed(&ls->frames_in),
                       sp_load_relaxed(&ls->frames_out),
                       sp_load_relaxed(&ls->bytes_in),
                       sp_load_relaxed(&ls->bytes_out));
        }
        ap_rputs("]}", r);
    }
    ap_rputs("\n]}\n", r);
}

/* "Key: value" lines; prefix "SlotProxy" in mod_status's ?auto. */
static void slotproxy_status_auto(request_rec *r, const slotproxy_snap_t *sn,
                                  const char *pfx, int full)
{
    const spm_conf_t *c = slotproxy_runtime.conf;
    spm_shared_t *sh = slotproxy_runtime.shared;

    ap_rprintf(r, "%sActive: %d\n", pfx, sn->active);
    if (!sn->active)
        return;
    ap_rprintf(r, "%sGeneration: %" PRIu64 "\n", pfx, sn->generation);
    ap_rprintf(r, "%sProxyPid: %d\n", pfx, (int)sn->proxy_pid);
    ap_rprintf(r, "%sProxyAlive: %d\n", pfx, sn->proxy_alive);
    ap_rprintf(r, "%sProxyRestarts: %" PRIu64 "\n", pfx, sn->proxy_restarts);
    ap_rprintf(r, "%sOutputStalls: %" PRIu64 "\n", pfx, sn->output_stalls);
    ap_rprintf(r, "%sSlots: %u\n", pfx, sn->nslots);
    ap_rprintf(r, "%sInflight: %u\n", pfx, sn->inflight);
    ap_rprintf(r, "%sInflightLimit: %u\n", pfx, sn->limit);
    ap_rprintf(r, "%sQueued: %u\n", pfx, sn->queued);
    ap_rprintf(r, "%sAdmittedTotal: %" PRIu64 "\n", pfx, sn->admitted_total);
    ap_rprintf(r, "%sRejectedFull: %" PRIu64 "\n", pfx, sn->rejected_full);
    ap_rprintf(r, "%sRejectedTimeout: %" PRIu64 "\n", pfx,
               sn->rejected_timeout);
    ap_rprintf(r, "%sClientAborts: %" PRIu64 "\n", pfx, sn->client_aborts);
    {
        sp_sess_stats_t ss;
        if (spm_sess_stats(&ss)) {
            ap_rprintf(r, "%sSessions: %" PRIu64 "\n", pfx, ss.live);
            ap_rprintf(r, "%sSessionGets: %" PRIu64 "\n", pfx, ss.gets);
            ap_rprintf(r, "%sSessionPuts: %" PRIu64 "\n", pfx, ss.puts);
            ap_rprintf(r, "%sSessionCreates: %" PRIu64 "\n", pfx, ss.creates);
            ap_rprintf(r, "%sSessionExpired: %" PRIu64 "\n", pfx, ss.expired);
            ap_rprintf(r, "%sSessionBusyWaits: %" PRIu64 "\n", pfx,
                       ss.busy_waits);
            ap_rprintf(r, "%sSessionChecksumErrors: %" PRIu64 "\n", pfx,
                       ss.checksum_errors);
        }
    }
    if (full) {
        ap_rprintf(r, "%sMpmGeneration: %d\n", pfx, sn->mpm_gen);
        ap_rprintf(r, "%sProxyUptime: %" PRId64 "\n", pfx, sn->proxy_uptime_s);
        ap_rprintf(r, "%sSlotsRegular: %u\n", pfx, sn->nregular);
        ap_rprintf(r, "%sSlotsOverflow: %u\n", pfx, sn->noverflow);
        ap_rprintf(r, "%sAdmitted: %u\n", pfx, sn->admitted);
        ap_rprintf(r, "%sQueueLimit: %u\n", pfx, c->queue_len);
        ap_rprintf(r, "%sQueueTimeoutMs: %d\n", pfx, c->queue_timeout_ms);
        ap_rprintf(r, "%sBufferSize: %u\n", pfx, c->buffer_size);
    }
    for (uint32_t st = 0; st < SP_SLOT_NSTATES; st++) {
        const char *nm = sp_slot_state_name(st);
        ap_rprintf(r, "%sSlots%c%s: %u\n", pfx, apr_toupper(nm[0]), nm + 1,
                   sn->counts[st]);
    }
    ap_rprintf(r, "%sBackends: %d\n", pfx, c->nbackends);
    for (int i = 0; i < c->nbackends; i++) {
        const spm_backend_conf_t *b = &c->backends[i];
        spm_backend_shared_t *bs = &sh->backends[i];
        ap_rprintf(r, "%sBackend%dName: %s\n", pfx, i, b->name);
        ap_rprintf(r, "%sBackend%dLinks: %d\n", pfx, i, b->links);
        ap_rprintf(r, "%sBackend%dLinksUp: %u\n", pfx, i,
                   sp_load_relaxed(&bs->links_up));
        ap_rprintf(r, "%sBackend%dOutstanding: %u\n", pfx, i,
                   sp_load_relaxed(&bs->outstanding));
        ap_rprintf(r, "%sBackend%dRequests: %" PRIu64 "\n", pfx, i,
                   sp_load_relaxed(&bs->requests));
        if (!full)
            continue;
        ap_rprintf(r, "%sBackend%dAddress: %s\n", pfx, i, b->address);
        ap_rprintf(r, "%sBackend%dRetries: %" PRIu64 "\n", pfx, i,
                   sp_load_relaxed(&bs->retries));
        ap_rprintf(r, "%sBackend%dAnswered502: %" PRIu64 "\n", pfx, i,
                   sp_load_relaxed(&bs->answered_502));
        ap_rprintf(r, "%sBackend%dAnswered503: %" PRIu64 "\n", pfx, i,
                   sp_load_relaxed(&bs->answered_503));
        ap_rprintf(r, "%sBackend%dAnswered504: %" PRIu64 "\n", pfx, i,
                   sp_load_relaxed(&bs->answered_504));
        for (int l = 0; l < b->links && l < SPM_MAX_LINKS; l++) {
            spm_link_shared_t *ls = &bs->link[l];
            ap_rprintf(r, "%sBackend%dLink%dState: %s\n", pfx, i, l,
                       slotproxy_link_state_name(sp_load_relaxed(&ls->state)));
            ap_rprintf(r, "%sBackend%dLink%dStreams: %u\n", pfx, i, l,
                       sp_load_relaxed(&ls->streams));
            ap_rprintf(r, "%sBackend%dLink%dRttUs: %" PRId64 "\n", pfx, i, l,
                       sp_load_relaxed(&ls->rtt_ns) / 1000);
            ap_rprintf(r, "%sBackend%dLink%dConnects: %" PRIu64 "\n", pfx, i, l,
                       sp_load_relaxed(&ls->connects));
            ap_rprintf(r, "%sBackend%dLink%dFailures: %" PRIu64 "\n", pfx, i, l,
                       sp_load_relaxed(&ls->failures));
            ap_rprintf(r, "%sBackend%dLink%dBytesIn: %" PRIu64 "\n", pfx, i, l,
                       sp_load_relaxed(&ls->bytes_in));
            ap_rprintf(r, "%sBackend%dLink%dBytesOut: %" PRIu64 "\n", pfx, i, l,
                       sp_load_relaxed(&ls->bytes_out));
        }
    }
}

static void slotproxy_status_html_body(request_rec *r,
                                       const slotproxy_snap_t *sn, int full)
{
    const spm_conf_t *c = slotproxy_runtime.conf;
    spm_shared_t *sh = slotproxy_runtime.shared;

    if (!sn->active) {
        ap_rputs("<p>slotproxy is not active (no SlotProxyBackend).</p>\n", r);
        return;
    }
    ap_rprintf(r, "<dl><dt>Generation %" PRIu64 " (MPM generation %d)</dt>\n",
               sn->generation, sn->mpm_gen);
    ap_rprintf(r, "<dt>Proxy child: pid %d, %s", (int)sn->proxy_pid,
               sn->proxy_alive ? "running" : "<b>not running</b>");
    if (sn->proxy_uptime_s >= 0)
        ap_rprintf(r, " for %" PRId64 " s", sn->proxy_uptime_s);
    ap_rprintf(r, ", %" PRIu64 " restart(s)</dt>\n", sn->proxy_restarts);
    ap_rprintf(r,
               "<dt>Slots: %u (%u regular + %u overflow), %u-byte rings; "
               "%u in flight</dt>\n",
               sn->nslots, sn->nregular, sn->noverflow, c->buffer_size,
               sn->inflight);
    ap_rprintf(r,
               "<dt>Admission: %u of %u admitted, %u queued (at most %u, "
               "%d ms); %" PRIu64 " admitted in all, %" PRIu64
               " rejected (queue full), %" PRIu64
               " rejected (timeout), %" PRIu64 " client aborts</dt></dl>\n",
               sn->admitted, sn->limit, sn->queued, c->queue_len,
               c->queue_timeout_ms, sn->admitted_total, sn->rejected_full,
               sn->rejected_timeout, sn->client_aborts);
    ap_rputs("<table border=\"1\"><tr>", r);
    for (uint32_t st = 0; st < SP_SLOT_NSTATES; st++)
        ap_rprintf(r, "<th>%s</th>", sp_slot_state_name(st));
    ap_rputs("</tr>\n<tr>", r);
    for (uint32_t st = 0; st < SP_SLOT_NSTATES; st++)
        ap_rprintf(r, "<td>%u</td>", sn->counts[st]);
    ap_rputs("</tr></table>\n", r);

    ap_rputs("<table border=\"1\"><tr><th>Backend</th><th>Address</th>"
             "<th>Links up</th><th>Outstanding</th><th>Requests</th>"
             "<th>Retries</th><th>502</th><th>503</th><th>504</th></tr>\n",
             r);
    for (int i = 0; i < c->nbackends; i++) {
        const spm_backend_conf_t *b = &c->backends[i];
        spm_backend_shared_t *bs = &sh->backends[i];
        ap_rprintf(
            r,
            "<tr><td>%s</td><td>%s</td><td>%u / %d</td><td>%u</td>"
            "<td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
            "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td></tr>\n",
            ap_escape_html(r->pool, b->name),
            ap_escape_html(r->pool, b->address), sp_load_relaxed(&bs->links_up),
            b->links, sp_load_relaxed(&bs->outstanding),
            sp_load_relaxed(&bs->requests), sp_load_relaxed(&bs->retries),
            sp_load_relaxed(&bs->answered_502),
            sp_load_relaxed(&bs->answered_503),
            sp_load_relaxed(&bs->answered_504));
    }
    ap_rputs("</table>\n", r);
    if (!full)
        return;

    ap_rputs("<table border=\"1\"><tr><th>Backend</th><th>Link</th>"
             "<th>State</th><th>Streams</th><th>RTT (us)</th><th>Up (s)</th>"
             "<th>Connects</th><th>Failures</th><th>Frames in/out</th>"
             "<th>Bytes in/out</th></tr>\n",
             r);
    for (int i = 0; i < c->nbackends; i++) {
        const spm_backend_conf_t *b = &c->backends[i];
        spm_backend_shared_t *bs = &sh->backends[i];
        int64_t now = sp_now_ns();
        for (int l = 0; l < b->links && l < SPM_MAX_LINKS; l++) {
            spm_link_shared_t *ls = &bs->link[l];
            uint32_t st = sp_load_relaxed(&ls->state);
            int64_t since = sp_load_relaxed(&ls->up_since_ns);
            ap_rprintf(
                r,
                "<tr><td>%s</td><td>%d</td><td>%s</td><td>%u</td>"
                "<td>%" PRId64 "</td><td>%" PRId64 "</td><td>%" PRIu64
                "</td><td>%" PRIu64 "</td><td>%" PRIu64 " / %" PRIu64
                "</td><td>%" PRIu64 " / %" PRIu64 "</td></tr>\n",
                ap_escape_html(r->pool, b->name), l,
                slotproxy_link_state_name(st), sp_load_relaxed(&ls->streams),
                sp_load_relaxed(&ls->rtt_ns) / 1000,
                st == SPM_LINK_UP && since > 0
                    ? (int64_t)((now - since) / SP_NSEC_PER_SEC)
                    : (int64_t)0,
                sp_load_relaxed(&ls->connects), sp_load_relaxed(&ls->failures),
                sp_load_relaxed(&ls->frames_in),
                sp_load_relaxed(&ls->frames_out),
                sp_load_relaxed(&ls->bytes_in),
                sp_load_relaxed(&ls->bytes_out));
        }
    }
    ap_rputs("</table>\n", r);
}

/* Does the query string hold the word `w` (between '&' or ';')? */
static int slotproxy_arg(const request_rec *r, const char *w)
{
    const char *a = r->args;
    size_t n = strlen(w);
    while (a && *a) {
        size_t k = strcspn(a, "&;");
        if (k == n && strncmp(a, w, n) == 0)
            return 1;
        a += k;
        if (*a)
            a++;
    }
    return 0;
}

static int slotproxy_status_handler(request_rec *r)
{
    slotproxy_snap_t sn;
    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET)
        return DECLINED;
    slotproxy_snapshot(&sn);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (slotproxy_arg(r, "json")) {
        slotproxy_status_json(r, &sn);
    } else if (slotproxy_arg(r, "auto")) {
        ap_set_content_type(r, "text/plain; charset=ISO-8859-1");
        if (!r->header_only)
            slotproxy_status_auto(r, &sn, "", 1);
    } else {
        ap_set_content_type(r, "text/html; charset=ISO-8859-1");
        if (!r->header_only) {
            ap_rputs(DOCTYPE_HTML_3_2 "<html><head><title>slotproxy status"
                                      "</title></head><body>\n"
                                      "<h1>slotproxy status</h1>\n",
                     r);
            slotproxy_status_html_body(r, &sn, 1);
            ap_rputs("<p>Also as <a href=\"?json\">JSON</a> and "
                     "<a href=\"?auto\">Key: value</a>.</p>\n"
                     "</body></html>\n",
                     r);
        }
    }
    return OK;
}

/* The section in /server-status. */
static int slotproxy_status_hook(request_rec *r, int flags)
{
    slotproxy_snap_t sn;
    slotproxy_snapshot(&sn);
    if (flags & AP_STATUS_SHORT) {
        slotproxy_status_auto(r, &sn, "SlotProxy", 0);
        return OK;
    }
    ap_rputs("<hr />\n<h2>slotproxy</h2>\n", r);
    slotproxy_status_html_body(r, &sn, 0);
    return OK;
}

/* ---- the handler -------------------------------------------------------- */

static int slotproxy_handler(request_rec *r)
{
    const char *name = apr_table_get(r->notes, SLOTPROXY_NOTE);
    int idx;

    if (name == NULL && r->handler != NULL) {
        if (strncasecmp(r->handler, SLOTPROXY_HANDLER_PREFIX,
                        SLOTPROXY_HANDLER_PREFIX_LEN) == 0)
            name = r->handler + SLOTPROXY_HANDLER_PREFIX_LEN;
        else if (strcmp(r->handler, SLOTPROXY_STATUS_HANDLER) == 0)
            return slotproxy_status_handler(r);
    }
    if (name == NULL)
        return DECLINED;
    if (slotproxy_runtime.conf == NULL ||
        (idx = slotproxy_find_backend(slotproxy_runtime.conf, name)) < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0020: handler slotproxy:%s: no SlotProxyBackend of "
                      "that name",
                      name);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (slotproxy_runtime.shared == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0021: slotproxy has no shared segment in this "
                      "process");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return spm_handle(r, &slotproxy_runtime, idx);
}

static int slotproxy_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp)
{
    spm_sess_pre_config();
    return OK;
}

static void slotproxy_register_hooks(apr_pool_t *p)
{
    static const char *const before_us[] = {"mod_rewrite.c", NULL};

    ap_hook_pre_config(slotproxy_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(slotproxy_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(slotproxy_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(slotproxy_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_status(slotproxy_child_status, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_end_generation(slotproxy_end_generation, NULL, NULL,
                           APR_HOOK_MIDDLE);
    ap_hook_monitor(slotproxy_monitor, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_translate_name(slotproxy_translate, before_us, NULL,
                           APR_HOOK_FIRST);
    ap_hook_map_to_storage(slotproxy_map_to_storage, NULL, NULL,
                           APR_HOOK_FIRST);
    ap_hook_handler(slotproxy_handler, NULL, NULL, APR_HOOK_FIRST);
    APR_OPTIONAL_HOOK(ap, status_hook, slotproxy_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
    spm_sess_register_hooks(p);
}

module AP_MODULE_DECLARE_DATA slotproxy_module = {
    STANDARD20_MODULE_STUFF,
    spm_sess_create_dir,      /* create per-directory config */
    spm_sess_merge_dir,       /* merge per-directory config */
    slotproxy_create_srv,     /* create per-server config */
    slotproxy_merge_srv,      /* merge per-server config */
    slotproxy_cmds,           /* directives */
    slotproxy_register_hooks, /* hooks */
    AP_MODULE_FLAG_NONE       /* flags */
};
