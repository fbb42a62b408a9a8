/*
 * handler.h - the content handler of mod_slotproxy (handler.c): one
 * request through a slot to backend `backend` (index into conf->backends).
 * Called by the glue (mod_slotproxy.c) once it decided that r goes to a
 * backend (SlotProxyPass or SetHandler slotproxy:NAME).
 */
#ifndef SPM_HANDLER_H
#define SPM_HANDLER_H

#include "httpd.h"
#include "slotproxy.h"

/* Process-wide view of the current generation's segment, set by the glue
 * in post_config (parent, before any fork) and valid in every child. */
typedef struct spm_runtime {
    const spm_conf_t *conf;
    sp_slots_t slots;
    spm_shared_t *shared;
    uint32_t nregular;
    uint32_t thread_limit; /* AP_MPMQ_HARD_LIMIT_THREADS */
} spm_runtime_t;

/* Returns an HTTP status (or OK / DONE) as a handler does. */
int spm_handle(request_rec *r, spm_runtime_t *rt, int backend);

#endif
