/*
 * session.h - mod_slotproxy as a mod_session store (session.c): sessions
 * in the memory-mapped session file of common/sp_sess, shared by every
 * httpd child, only the id in the cookie (docs/module-config.md,
 * "Sessions"; docs/sessions.md §2.10).
 */
#ifndef SLOTPROXY_SESSION_H
#define SLOTPROXY_SESSION_H

#include "httpd.h"
#include "http_config.h"

#include "sp_sess.h"

/* Per-directory settings (SlotProxySession, SlotProxySessionCookie). */
void *spm_sess_create_dir(apr_pool_t *p, char *dir);
void *spm_sess_merge_dir(apr_pool_t *p, void *basev, void *addv);

/* Directive handlers. */
const char *spm_sess_cmd_store(cmd_parms *cmd, void *dummy, const char *path,
                               const sp_sess_conf_t *conf);
const char *spm_sess_cmd_enable(cmd_parms *cmd, void *dconf, int flag);
const char *spm_sess_cmd_cookie(cmd_parms *cmd, void *dconf, const char *args);

/* pre_config: forget the previous configuration's store path. */
void spm_sess_pre_config(void);
/* post_config (second pass, as root): open the store, chown it to User.
 * OK or HTTP_INTERNAL_SERVER_ERROR. */
int spm_sess_post_config(apr_pool_t *pconf, server_rec *s);
/* Hooks (session_load/save, filter); call from register_hooks. */
void spm_sess_register_hooks(apr_pool_t *p);
/* The proxy child, every tick: sweeps expired sessions once a second. */
void spm_sess_tick(int64_t now_ns);
/* Status: 1 and *st filled when a store is open. */
int spm_sess_stats(sp_sess_stats_t *st);

#endif /* SLOTPROXY_SESSION_H */
