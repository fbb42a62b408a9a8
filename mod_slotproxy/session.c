/*
 * session.c - mod_slotproxy as a mod_session store.
 *
 * With `Session On`, `SlotProxySession On` and `SlotProxySessionStore`,
 * mod_session keeps its sessions in the memory-mapped session file of
 * common/sp_sess: every httpd child (and the proxy child) inherits the
 * handle the parent opened in post_config, so a session written by one
 * child is read by the next request whichever child serves it.  The
 * cookie carries only the 128-bit id.
 *
 * Per request: load (mod_session calls it several times; the record is
 * cached in the main request's notes) reads the id from the cookie,
 * takes the session's busy indicator (sp_sess_acquire, waiting up to
 * SPM_SESS_WAIT_NS for another request of the same session), and copies
 * the value out.  save writes the value back (or deletes the session when
 * mod_session encoded it empty), creating a session and setting the
 * cookie when there was none.  The indicator is given back by a small
 * output filter when the response's EOS goes by (the save happens on
 * mod_session's first brigade, before that), or by a request pool
 * cleanup for requests that never get there.  Holding it from load to
 * the end of the response serialises the requests of one session, so
 * read-modify-write cycles through the backend lose no update.
 *
 * mod_session's hooks are plain (non-optional) hooks exported by
 * mod_session.so; they are referenced weakly so that mod_slotproxy still
 * loads without mod_session (sessions are then unavailable and
 * SlotProxySessionStore is refused).  mod_session must be loaded before
 * mod_slotproxy.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_session.h"
#include "unixd.h"
#include "util_cookies.h"
#include "util_filter.h"

#include "session.h"
#include "sp_error.h"
#include "sp_proc.h"

#pragma weak ap_hook_session_load
#pragma weak ap_hook_session_save

extern module AP_MODULE_DECLARE_DATA slotproxy_module;
APLOG_USE_MODULE(slotproxy);

#define SPM_SESS_NOTE "mod_slotproxy session"
#define SPM_SESS_FILTER "SLOTPROXY_SESSION"
#define SPM_SESS_DEFAULT_COOKIE "slotproxy_session"
#define SPM_SESS_DEFAULT_ATTRS "HttpOnly;SameSite=Lax;Path=/"
#define SPM_SESS_WAIT_NS (10 * SP_NSEC_PER_SEC)
#define SPM_SESS_SWEEP_NS SP_NSEC_PER_SEC

typedef struct spm_sess_dir {
    int enabled; /* -1 unset */
    const char *cookie;
    const char *attrs;
} spm_sess_dir_t;

/* Configuration (main server only) and the open store.  The handle is
 * opened by the parent in post_config and inherited through fork. */
static const char *sess_path;
static sp_sess_conf_t sess_conf;
static sp_sess_t sess_store;
static int sess_open;
static server_rec *sess_server;
static int64_t sess_next_sweep;

/* Per request (main request), in its notes. */
typedef struct spm_sess_ctx {
    session_rec *z;
    char id[SP_SESS_ID_LEN + 1]; /* "" while there is none */
    sp_sess_hold_t hold;
    int held;
    int failed; /* store unusable for this request: never save */
} spm_sess_ctx_t;

void *spm_sess_create_dir(apr_pool_t *p, char *dir)
{
    spm_sess_dir_t *d = apr_pcalloc(p, sizeof(*d));
    (void)dir;
    d->enabled = -1;
    return d;
}

void *spm_sess_merge_dir(apr_pool_t *p, void *basev, void *addv)
{
    const spm_sess_dir_t *base = basev, *add = addv;
    spm_sess_dir_t *d = apr_pcalloc(p, sizeof(*d));
    d->enabled = add->enabled != -1 ? add->enabled : base->enabled;
    d->cookie = add->cookie ? add->cookie : base->cookie;
    d->attrs = add->cookie ? add->attrs : base->attrs;
    return d;
}

const char *spm_sess_cmd_store(cmd_parms *cmd, void *dummy, const char *path,
                               const sp_sess_conf_t *conf)
{
    (void)dummy;
    if (ap_hook_session_load == NULL || ap_hook_session_save == NULL)
        return "SlotProxySessionStore: mod_session is not loaded (its "
               "LoadModule line must come before mod_slotproxy's)";
    if (sess_path != NULL)
        return "SlotProxySessionStore: given twice";
    sess_path = ap_server_root_relative(cmd->pool, path);
    if (sess_path == NULL)
        return apr_psprintf(cmd->pool, "SlotProxySessionStore: bad path '%s'",
                            path);
    sess_conf = *conf;
    return NULL;
}

const char *spm_sess_cmd_enable(cmd_parms *cmd, void *dconf, int flag)
{
    spm_sess_dir_t *d = dconf;
    (void)cmd;
    d->enabled = flag;
    return NULL;
}

const char *spm_sess_cmd_cookie(cmd_parms *cmd, void *dconf, const char *args)
{
    spm_sess_dir_t *d = dconf;
    char *last = NULL;
    char *line = apr_pstrdup(cmd->pool, args);
    char *name = apr_strtok(line, " \t", &last);
    if (name == NULL || ap_cookie_check_string(name) != APR_SUCCESS)
        return "SlotProxySessionCookie: the name cannot be empty, or "
               "contain '=', ';' or '&'";
    while (last && apr_isspace(*last))
        last++;
    d->cookie = name;
    d->attrs = (last && *last) ? last : NULL;
    return NULL;
}

void spm_sess_pre_config(void)
{
    sess_path = NULL;
    memset(&sess_conf, 0, sizeof(sess_conf));
}

static void sess_log(void *arg, const char *msg)
{
    server_rec *s = arg ? arg : sess_server;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "SPM0100: %s", msg);
}

static apr_status_t sess_close(void *data)
{
    (void)data;
    if (sess_open) {
        sp_sess_close(&sess_store);
        sess_open = 0;
    }
    return APR_SUCCESS;
}

int spm_sess_post_config(apr_pool_t *pconf, server_rec *s)
{
    sp_sess_conf_t c;
    int rc;

    sess_server = s;
    if (sess_path == NULL)
        return OK;
    c = sess_conf;
    c.create = 1;
    c.mode = 0600;
    rc = sp_sess_open(&sess_store, sess_path, &c, sess_log, s);
    if (rc < 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rc == SP_ESYS ? errno : 0, s,
                     "SPM0101: cannot open the session store %s: %s", sess_path,
                     sp_strerror(rc));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    sess_open = 1;
    apr_pool_cleanup_register(pconf, NULL, sess_close, apr_pool_cleanup_null);
    /* The children inherit the mapping; give the file to User anyway, so
     * that a process of User may open it (and a later migration keeps
     * the owner). */
    if (geteuid() == 0 && fchown(sess_store.fd, ap_unixd_config.user_id,
                                 ap_unixd_config.group_id) != 0)
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s,
                     "SPM0102: cannot chown the session store %s to User",
                     sess_path);
    {
        sp_sess_stats_t st;
        sp_sess_stats(&sess_store, &st);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "SPM0103: session store %s: %" APR_UINT64_T_FMT
                     " session(s), %u entries, values up to %u bytes",
                     sess_path, (apr_uint64_t)st.live, st.entries,
                     st.max_value);
    }
    return OK;
}

void spm_sess_tick(int64_t now_ns)
{
    if (!sess_open || now_ns < sess_next_sweep)
        return;
    sess_next_sweep = now_ns + SPM_SESS_SWEEP_NS;
    (void)sp_sess_expire(&sess_store);
}

int spm_sess_stats(sp_sess_stats_t *st)
{
    if (!sess_open)
        return 0;
    sp_sess_stats(&sess_store, st);
    return 1;
}

/* ---- per request -------------------------------------------------------- */

static const spm_sess_dir_t *sess_dir(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &slotproxy_module);
}

static void sess_release(spm_sess_ctx_t *ctx)
{
    if (ctx->held) {
        ctx->held = 0;
        (void)sp_sess_release(&sess_store, &ctx->hold);
    }
}

static apr_status_t sess_cleanup(void *data)
{
    sess_release(data);
    return APR_SUCCESS;
}

static apr_status_t sess_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    spm_sess_ctx_t *ctx = f->ctx;
    for (apr_bucket *b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
         b = APR_BUCKET_NEXT(b)) {
        if (APR_BUCKET_IS_EOS(b)) {
            /* mod_session saved on its first brigade, upstream of us. */
            sess_release(ctx);
            ap_remove_output_filter(f);
            break;
        }
    }
    return ap_pass_brigade(f->next, bb);
}

static apr_status_t sess_load(request_rec *r, session_rec **z)
{
    const spm_sess_dir_t *d = sess_dir(r);
    request_rec *m = r->main ? r->main : r;
    spm_sess_ctx_t *ctx;
    const char *cookie = NULL;
    size_t len = 0, cap = 4096;
    char *buf;
    int rc;

    if (d == NULL || d->enabled != 1)
        return DECLINED;
    ctx = (spm_sess_ctx_t *)apr_table_get(m->notes, SPM_SESS_NOTE);
    if (ctx != NULL) {
        *z = ctx->z;
        return ctx->failed ? APR_EGENERAL : OK;
    }
    ctx = apr_pcalloc(m->pool, sizeof(*ctx));
    apr_table_setn(m->notes, SPM_SESS_NOTE, (const char *)ctx);
    if (!sess_open) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0104: SlotProxySession On but no "
                      "SlotProxySessionStore is configured");
        ctx->failed = 1;
        return APR_EGENERAL;
    }

    ctx->z = apr_pcalloc(m->pool, sizeof(session_rec));
    ctx->z->pool = m->pool;
    ctx->z->entries = apr_table_make(m->pool, 10);
    *z = ctx->z;

    ap_cookie_read(m, d->cookie ? d->cookie : SPM_SESS_DEFAULT_COOKIE, &cookie,
                   0);
    if (cookie == NULL || strlen(cookie) != SP_SESS_ID_LEN)
        return OK; /* a new session, created at save if it gets a value */

    rc = sp_sess_acquire(&sess_store, cookie, sp_now_ns() + SPM_SESS_WAIT_NS,
                         &ctx->hold);
    if (rc == SP_EUNKNOWN || rc == SP_EINVAL)
        return OK; /* expired, or never ours: start afresh */
    if (rc < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0105: session %.8s...: cannot take its busy "
                      "indicator: %s",
                      cookie, sp_strerror(rc));
        ctx->failed = 1;
        *z = NULL;
        return APR_EGENERAL;
    }
    ctx->held = 1;
    apr_pool_cleanup_register(m->pool, ctx, sess_cleanup,
                              apr_pool_cleanup_null);
    ap_add_output_filter(SPM_SESS_FILTER, ctx, m, m->connection);

    buf = apr_palloc(m->pool, cap + 1);
    rc = sp_sess_get(&sess_store, cookie, buf, cap, &len, 0);
    if (rc == SP_EMSGSIZE) {
        cap = len;
        buf = apr_palloc(m->pool, cap + 1);
        rc = sp_sess_get(&sess_store, cookie, buf, cap, &len, 0);
    }
    if (rc == SP_EUNKNOWN || rc == SP_ECHECKSUM) {
        sess_release(ctx); /* gone meanwhile, or dropped as corrupt */
        return OK;
    }
    if (rc < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0106: session %.8s...: cannot read it: %s", cookie,
                      sp_strerror(rc));
        sess_release(ctx);
        ctx->failed = 1;
        *z = NULL;
        return APR_EGENERAL;
    }
    buf[len] = '\0';
    memcpy(ctx->id, cookie, SP_SESS_ID_LEN + 1);
    ctx->z->encoded = buf;
    ctx->z->cached = 1;
    return OK;
}

static apr_status_t sess_save(request_rec *r, session_rec *z)
{
    const spm_sess_dir_t *d = sess_dir(r);
    request_rec *m = r->main ? r->main : r;
    spm_sess_ctx_t *ctx;
    const char *name, *attrs;
    int64_t expires = z->expiry > 0 ? (int64_t)z->expiry * 1000 : 0;
    int rc;

    if (d == NULL || d->enabled != 1)
        return DECLINED;
    ctx = (spm_sess_ctx_t *)apr_table_get(m->notes, SPM_SESS_NOTE);
    if (ctx == NULL || ctx->failed || !sess_open)
        return APR_EGENERAL;
    name = d->cookie ? d->cookie : SPM_SESS_DEFAULT_COOKIE;
    attrs = d->attrs ? d->attrs : SPM_SESS_DEFAULT_ATTRS;
    if (apr_strnatcasecmp(ap_http_scheme(r), "https") == 0 &&
        ap_strcasestr(attrs, "secure") == NULL)
        attrs = apr_pstrcat(r->pool, attrs, ";Secure", NULL);

    if (z->encoded == NULL || z->encoded[0] == '\0') {
        if (ctx->id[0]) {
            rc = sp_sess_delete(&sess_store, ctx->id,
                                sp_now_ns() + SPM_SESS_WAIT_NS);
            if (rc < 0 && rc != SP_EUNKNOWN)
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              "SPM0107: session %.8s...: cannot delete it: %s",
                              ctx->id, sp_strerror(rc));
            ctx->id[0] = '\0';
            ap_cookie_remove(r, name, attrs, r->err_headers_out, NULL);
        }
        sess_release(ctx);
        return OK;
    }

    size_t len = strlen(z->encoded);
    if (ctx->id[0]) {
        rc = sp_sess_put(&sess_store, ctx->id, z->encoded, len, expires,
                         sp_now_ns() + SPM_SESS_WAIT_NS);
        if (rc == SP_EUNKNOWN) /* expired or evicted meanwhile */
            ctx->id[0] = '\0';
        else if (rc < 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                          "SPM0108: session %.8s...: cannot store %lu "
                          "bytes: %s",
                          ctx->id, (unsigned long)len, sp_strerror(rc));
            return APR_EGENERAL;
        }
    }
    if (!ctx->id[0]) {
        char id[SP_SESS_ID_LEN + 1];
        rc = sp_sess_create(&sess_store, z->encoded, len, expires, id);
        if (rc < 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                          "SPM0109: cannot create a session of %lu bytes: %s",
                          (unsigned long)len, sp_strerror(rc));
            return APR_EGENERAL;
        }
        memcpy(ctx->id, id, sizeof(id));
        /* err_headers_out only: kept on errors and redirects, sent once. */
        ap_cookie_write(r, name, apr_pstrdup(r->pool, id), attrs, z->maxage,
                        r->err_headers_out, NULL);
    }
    sess_release(ctx);
    return OK;
}

void spm_sess_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_register_output_filter(SPM_SESS_FILTER, sess_filter, NULL,
                              AP_FTYPE_CONTENT_SET + 1);
    if (ap_hook_session_load != NULL && ap_hook_session_save != NULL) {
        ap_hook_session_load(sess_load, NULL, NULL, APR_HOOK_MIDDLE);
        ap_hook_session_save(sess_save, NULL, NULL, APR_HOOK_MIDDLE);
    }
}
