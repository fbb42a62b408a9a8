/*
 * handler.c - mod_slotproxy's content handler: one request through a slot.
 *
 * Runs in an httpd worker (prefork child or worker/event thread).  The
 * protocol with the proxy child is drawn in slotproxy.h.  In short:
 * admission, claim a slot (the scoreboard index, or one from the overflow
 * pool), write the request head into the slot's input ring, stream the
 * request body into it as httpd reads it (no spooling, chunked uploads
 * included), then stream the response out of the output ring into the
 * filter chain, flushing whenever the ring runs dry.
 *
 * Every wait has a deadline and names the proxy child as the peer.
 * Errors become HTTP answers, each logged once with its own tag:
 *   SPM0210 queue full -> 503 at once      SPM0211 queue wait -> 503
 *   SPM0212 no slot -> 503                 SPM0213 head too large -> 431
 *   SPM0214 backend error before head      SPM0215 proxy child gone
 *   SPM0216 cut after the head was sent    SPM0217 client went away
 */
#include "handler.h"

#include <string.h>

#include "apr_strings.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_ssl.h"
#include "util_filter.h"

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"
#include "sp_mark.h"

APLOG_USE_MODULE(slotproxy);

#define H_MAX_FIELDS 1000
#define H_CHUNK (64 * 1024)
#define H_SLICE_NS (100 * 1000000LL)

static const char *const hop_by_hop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", NULL};

static int is_hop_by_hop(const char *name)
{
    for (int i = 0; hop_by_hop[i]; i++)
        if (strcasecmp(name, hop_by_hop[i]) == 0)
            return 1;
    return 0;
}

typedef struct kvbuild {
    sp_kv_t *kv;
    uint32_t n, cap;
} kvbuild_t;

static void kv_add(kvbuild_t *b, const char *name, const char *value)
{
    if (b->n < b->cap && name && value) {
        b->kv[b->n].name = sp_str(name);
        b->kv[b->n].value = sp_str(value);
        b->n++;
    }
}

static int add_header_cb(void *rec, const char *key, const char *value)
{
    kvbuild_t *b = rec;
    if (!is_hop_by_hop(key) && strcasecmp(key, "X-Forwarded-For") != 0 &&
        strcasecmp(key, "X-Forwarded-Host") != 0 &&
        strcasecmp(key, "X-Forwarded-Proto") != 0)
        kv_add(b, key, value);
    return 1;
}

static int add_env_cb(void *rec, const char *key, const char *value)
{
    kvbuild_t *b = rec;
    /* The env may hold anything but NUL, and a non-empty name without '='. */
    if (key[0] != '\0' && strchr(key, '=') == NULL)
        kv_add(b, key, value);
    return 1;
}

static const char *const ssl_vars[] = {
    "SSL_PROTOCOL", "SSL_CIPHER", "SSL_CIPHER_USEKEYSIZE", "SSL_SESSION_ID",
    "SSL_CLIENT_VERIFY", "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN",
    "SSL_CLIENT_M_SERIAL", "SSL_CLIENT_V_START", "SSL_CLIENT_V_END",
    "SSL_CLIENT_CERT", "SSL_SERVER_S_DN", "SSL_TLS_SNI", NULL};

/* Encode the request head.  Returns its length, or a negative SP_E*. */
static long build_head(request_rec *r, uint8_t **out)
{
    conn_rec *c = r->connection;
    kvbuild_t hb = {apr_pcalloc(r->pool, H_MAX_FIELDS * sizeof(sp_kv_t)), 0,
                    H_MAX_FIELDS / 2};
    apr_table_do(add_header_cb, &hb, r->headers_in, NULL);
    /* X-Forwarded-*: what mod_proxy_http adds. */
    const char *xff = apr_table_get(r->headers_in, "X-Forwarded-For");
    kv_add(&hb, "X-Forwarded-For",
           xff ? apr_pstrcat(r->pool, xff, ", ", r->useragent_ip, NULL)
               : r->useragent_ip);
    const char *host = apr_table_get(r->headers_in, "Host");
    if (host)
        kv_add(&hb, "X-Forwarded-Host", host);
    kv_add(&hb, "X-Forwarded-Proto", ap_http_scheme(r));

    kvbuild_t eb = {hb.kv + hb.cap, 0, H_MAX_FIELDS / 2};
    apr_table_do(add_env_cb, &eb, r->subprocess_env, NULL);
    APR_OPTIONAL_FN_TYPE(ssl_is_https) *is_https =
        APR_RETRIEVE_OPTIONAL_FN(ssl_is_https);
    APR_OPTIONAL_FN_TYPE(ssl_var_lookup) *var =
        APR_RETRIEVE_OPTIONAL_FN(ssl_var_lookup);
    int https = is_https && is_https(c);
    if (https && var) {
        for (int i = 0; ssl_vars[i]; i++) {
            if (apr_table_get(r->subprocess_env, ssl_vars[i]))
                continue;
            char *v = var(r->pool, r->server, c, r, (char *)ssl_vars[i]);
            if (v && *v)
                kv_add(&eb, ssl_vars[i], v);
        }
    }
    /* Move the env entries right after the headers. */
    memmove(hb.kv + hb.n, eb.kv, eb.n * sizeof(sp_kv_t));

    sp_reqhead_t h;
    memset(&h, 0, sizeof(h));
    h.method = sp_str(r->method);
    h.uri = sp_str(r->unparsed_uri);
    h.protocol = sp_str(r->protocol);
    h.scheme = sp_str(ap_http_scheme(r));
    h.server_name = sp_str(ap_get_server_name_for_url(r));
    h.remote_addr = sp_str(r->useragent_ip);
    h.local_addr = sp_str(c->local_ip);
    h.remote_user = sp_str(r->user);
    h.auth_type = sp_str(r->ap_auth_type);
    h.remote_port = r->useragent_addr ? r->useragent_addr->port : 0;
    h.local_port = c->local_addr ? c->local_addr->port : 0;
    h.flags = https ? SP_REQ_HTTPS : 0;
    h.content_length = -1;
    if (ap_request_has_body(r)) {
        h.flags |= SP_REQ_BODY;
        const char *cl = apr_table_get(r->headers_in, "Content-Length");
        apr_off_t len;
        if (cl && !apr_table_get(r->headers_in, "Transfer-Encoding") &&
            apr_strtoff(&len, cl, NULL, 10) == APR_SUCCESS && len >= 0)
            h.content_length = len;
        else
            h.flags |= SP_REQ_CHUNKED;
    }
    h.headers = hb.kv;
    h.nheaders = hb.n;
    h.env = hb.kv + hb.n;
    h.nenv = eb.n;
    size_t size = sp_reqhead_size(&h);
    *out = apr_palloc(r->pool, size);
    return sp_reqhead_encode(&h, *out, size);
}

typedef struct hctx {
    request_rec *r;
    spm_runtime_t *rt;
    const spm_backend_conf_t *bc;
    uint32_t slot;
    sp_ring_t in, out;
    sp_ident_t proxy;
    int64_t deadline;
    /* response state (pump_response) */
    apr_bucket_brigade *bb;
    sp_kv_t *kv;
    apr_size_t pending;
    int got_head;
    int finished;  /* END or ABORT read: the response is complete */
    int cancelled; /* the client went away or the stream broke */
    int result;
} hctx_t;

/* Keep following the proxy child if it was replaced. */
static int proxy_refresh(hctx_t *h)
{
    spm_shared_t *sh = h->rt->shared;
    sp_ident_t now = {.pid = sp_load_acquire(&sh->proxy_pid),
                      .start = sp_load_relaxed(&sh->proxy_start)};
    if (now.pid > 0 && (now.pid != h->proxy.pid || now.start != h->proxy.start)
        && sp_ident_alive(&now)) {
        h->proxy = now;
        return 1;
    }
    return 0;
}

/* The proxy child died and httpd has not forked its replacement yet (it
 * reaps dead children about once a second).  Wait for the replacement as
 * for a usable link, up to the backend's connect_timeout: it adopts the
 * slot (a request it never took is sent, one in flight is answered 502).
 * 1 when a replacement is there, 0 when the wait is over. */
static int proxy_await(hctx_t *h)
{
    int64_t end = sp_now_ns() +
                  (int64_t)h->bc->connect_timeout_ms * SP_NSEC_PER_MSEC;
    if (end > h->deadline)
        end = h->deadline;
    while (sp_now_ns() < end) {
        apr_sleep(apr_time_from_msec(20));
        if (proxy_refresh(h))
            return 1;
    }
    return 0;
}

/* Wait for the output ring; 0 readable, or SP_ETIMEDOUT / SP_EPEERDEAD. */
static int wait_out(hctx_t *h)
{
    for (;;) {
        int64_t until = sp_now_ns() + H_SLICE_NS * 10;
        if (until > h->deadline)
            until = h->deadline;
        int rc = sp_ring_wait_readable(&h->out, until);
        if (rc == 0)
            return 0;
        if (rc == SP_EPEERDEAD && (proxy_refresh(h) || proxy_await(h)))
            continue;
        if (rc == SP_ETIMEDOUT && sp_now_ns() < h->deadline)
            continue;
        return rc;
    }
}

/* After consuming from the output ring: the proxy may poll for room. */
static void out_consumed(hctx_t *h)
{
    if (h->out.wake_poller) {
        h->out.wake_poller = 0;
        sp_slots_notify(&h->rt->slots, h->slot);
    }
}

static void set_response_head(request_rec *r, const sp_resphead_t *rh);
static int error_status(request_rec *r, const sp_abort_t *a);

static int pass(hctx_t *h, int flush)
{
    conn_rec *c = h->r->connection;
    if (flush)
        APR_BRIGADE_INSERT_TAIL(h->bb, apr_bucket_flush_create(c->bucket_alloc));
    if (ap_pass_brigade(h->r->output_filters, h->bb) != APR_SUCCESS ||
        c->aborted) {
        h->cancelled = 1;
        return -1;
    }
    apr_brigade_cleanup(h->bb);
    h->pending = 0;
    return 0;
}

/* Move what the output ring holds into the filter chain.  With wait, block
 * until the response is complete; without, return when the ring is empty.
 * Sets h->finished / h->cancelled / h->result. */
static void pump_response(hctx_t *h, int wait)
{
    request_rec *r = h->r;
    conn_rec *c = r->connection;
    while (!h->finished && !h->cancelled) {
        sp_ring_msg_t msg;
        struct iovec iov[64];
        int n = sp_ring_peek(&h->out, &msg, iov, 64);
        if (n == SP_EAGAIN) {
            if (h->pending > 0 && pass(h, 1) < 0)
                return;
            if (!wait)
                return;
            int wrc = wait_out(h);
            if (wrc < 0) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              "SPM0215: no answer from the proxy child (%s)",
                              sp_strerror(wrc));
                if (!h->got_head) {
                    h->result = wrc == SP_ETIMEDOUT ? HTTP_GATEWAY_TIME_OUT
                                                    : HTTP_SERVICE_UNAVAILABLE;
                } else {
                    c->keepalive = AP_CONN_CLOSE;
                    h->result = DONE;
                }
                h->cancelled = 1;
                return;
            }
            continue;
        }
        if (n < 0) {
            h->result = h->got_head ? DONE : HTTP_BAD_GATEWAY;
            h->cancelled = 1;
            return;
        }
        if (msg.type == SP_FT_RESPONSE_HEAD && !h->got_head) {
            uint8_t *buf = apr_palloc(r->pool, msg.remaining + 1);
            size_t got = 0;
            for (int k = 0; k < n; k++) {
                memcpy(buf + got, iov[k].iov_base, iov[k].iov_len);
                got += iov[k].iov_len;
            }
            sp_ring_consume(&h->out, msg.remaining);
            out_consumed(h);
            sp_resphead_t rh;
            sp_head_limits_t lim = {H_MAX_FIELDS, 1u << 20};
            if (sp_resphead_decode(buf, got, &lim, &rh, h->kv, H_MAX_FIELDS) <
                0) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              "SPM0214: malformed response head from "
                              "backend %s: 502", h->bc->name);
                h->result = HTTP_BAD_GATEWAY;
                h->cancelled = 1;
                return;
            }
            set_response_head(r, &rh);
            h->got_head = 1;
            continue;
        }
        if (msg.type == SP_FT_BODY) {
            if (!r->header_only)
                for (int k = 0; k < n; k++) {
                    apr_bucket *b = apr_bucket_heap_create(
                        iov[k].iov_base, iov[k].iov_len, NULL, c->bucket_alloc);
                    APR_BRIGADE_INSERT_TAIL(h->bb, b);
                    h->pending += iov[k].iov_len;
                }
            sp_ring_consume(&h->out, msg.remaining);
            out_consumed(h);
            if (h->pending >= 256 * 1024 && pass(h, 0) < 0)
                return;
            continue;
        }
        if (msg.type == SP_FT_END) {
            sp_ring_consume(&h->out, msg.remaining);
            h->finished = 1;
            if (!h->got_head) {
                h->result = HTTP_BAD_GATEWAY;
                return;
            }
            /* Flush with the end: under event, a small response left in
             * the core output filter sends the connection through write
             * completion and the listener thread before its next request
             * (two more thread hand-offs; ../shared/HTTPD-NOTES.md). */
            APR_BRIGADE_INSERT_TAIL(h->bb,
                                    apr_bucket_flush_create(c->bucket_alloc));
            APR_BRIGADE_INSERT_TAIL(h->bb, apr_bucket_eos_create(c->bucket_alloc));
            ap_pass_brigade(r->output_filters, h->bb);
            apr_brigade_cleanup(h->bb);
            h->result = OK;
            return;
        }
        if (msg.type == SP_FT_ABORT) {
            uint8_t buf[512];
            size_t got = 0;
            for (int k = 0; k < n && got + iov[k].iov_len <= sizeof(buf); k++) {
                memcpy(buf + got, iov[k].iov_base, iov[k].iov_len);
                got += iov[k].iov_len;
            }
            sp_ring_consume(&h->out, msg.remaining);
            h->finished = 1;
            sp_abort_t a;
            if (sp_abort_decode(buf, got, &a) < 0) {
                a.code = SP_ABORT_INTERNAL;
                a.status = 502;
                a.reason = sp_str("?");
            }
            if (!h->got_head) {
                h->result = error_status(r, &a);
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              "SPM0214: backend %s: %s (%s): %d", h->bc->name,
                              a.reason.ptr, sp_abort_code_name(a.code),
                              h->result);
            } else {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              "SPM0216: backend %s cut the response: %s (%s)",
                              h->bc->name, a.reason.ptr,
                              sp_abort_code_name(a.code));
                c->keepalive = AP_CONN_CLOSE;
                apr_brigade_cleanup(h->bb);
                APR_BRIGADE_INSERT_TAIL(
                    h->bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL,
                                                  r->pool, c->bucket_alloc));
                ap_pass_brigade(r->output_filters, h->bb);
                h->result = DONE;
            }
            return;
        }
        sp_ring_consume(&h->out, msg.remaining); /* unknown: skip */
    }
}

/* Write one message into the input ring, forwarding response data to the
 * client while the ring is full (a full-duplex application answers while
 * it reads).  0; 1 if the response is already complete (stop sending the
 * body); negative on failure. */
static int in_write(hctx_t *h, unsigned type, const void *buf, size_t len)
{
    sp_slots_t *t = &h->rt->slots;
    for (;;) {
        /* Read the kick word before looking at the rings: a proxy move
         * after this point changes it and ends the wait below at once. */
        uint32_t seen = sp_slot_kick_seen(t, h->slot);
        int rc = sp_ring_write(&h->in, type, buf, len, 0);
        if (rc == 0) {
            sp_slots_notify(t, h->slot);
            return 0;
        }
        if (rc != SP_EAGAIN)
            return rc;
        pump_response(h, 0);
        if (h->finished || h->cancelled)
            return 1;
        int64_t now = sp_now_ns();
        if (now > h->deadline)
            return SP_ETIMEDOUT;
        if (!sp_ident_alive(&h->proxy) && !proxy_refresh(h) &&
            !proxy_await(h))
            return SP_EPEERDEAD;
        sp_slot_wait_kick(t, h->slot, seen, now + H_SLICE_NS);
    }
}

/* Give the slot back whatever state it is in. */
static void slot_finish(hctx_t *h, int cancelled)
{
    sp_slots_t *t = &h->rt->slots;
    sp_slot_t *s = sp_slot(t, h->slot);
    uint32_t st = sp_mark_get(&s->state);
    if (cancelled && st != SP_SLOT_DONE && st != SP_SLOT_WRITING) {
        while (st != SP_SLOT_DONE && st != SP_SLOT_CANCELLED &&
               sp_slot_transition(t, h->slot, st, SP_SLOT_CANCELLED, &st) < 0)
            ;
        sp_slots_notify(t, h->slot);
    }
    int64_t end = sp_now_ns() + 5 * SP_NSEC_PER_SEC;
    while (st != SP_SLOT_DONE && st != SP_SLOT_WRITING) {
        int rc = sp_slot_wait(t, h->slot, st, end, NULL, &h->proxy);
        if (rc >= 0) {
            st = (uint32_t)rc;
            continue;
        }
        if (rc == SP_EPEERDEAD && proxy_refresh(h))
            continue;
        /* The proxy child is gone or stuck: take the slot back. */
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, h->r,
                      "SPM0218: slot %u not released by the proxy child "
                      "(%s); reclaiming it", h->slot,
                      sp_slot_state_name(st));
        sp_mark_set(&s->state, SP_SLOT_DONE);
        break;
    }
    sp_slot_release(t, h->slot);
    spm_release(h->rt->shared);
}

/* Stream the request body into the input ring.  Reads are coalesced: after
 * a blocking read, whatever else is already there is read without
 * blocking, up to H_CHUNK, so a ring message is rarely a few bytes. */
static int send_body(hctx_t *h, int *early)
{
    request_rec *r = h->r;
    apr_bucket_brigade *bb =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    char *acc = apr_palloc(r->pool, H_CHUNK);
    size_t n = 0;
    int seen_eos = 0;
    *early = 0;
    while (!seen_eos) {
        apr_status_t st = ap_get_brigade(
            r->input_filters, bb, AP_MODE_READBYTES,
            n == 0 ? APR_BLOCK_READ : APR_NONBLOCK_READ, H_CHUNK - n);
        if (n > 0 && (APR_STATUS_IS_EAGAIN(st) ||
                      (st == APR_SUCCESS && APR_BRIGADE_EMPTY(bb)))) {
            int rc = in_write(h, SP_FT_BODY, acc, n);
            n = 0;
            if (rc == 1) {
                *early = 1;
                return 0;
            }
            if (rc < 0)
                return -2;
            continue;
        }
        if (st != APR_SUCCESS)
            return -1; /* client gone or bad chunking */
        for (apr_bucket *b = APR_BRIGADE_FIRST(bb);
             b != APR_BRIGADE_SENTINEL(bb); b = APR_BUCKET_NEXT(b)) {
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            const char *data;
            apr_size_t len;
            if (apr_bucket_read(b, &data, &len, APR_BLOCK_READ) != APR_SUCCESS)
                return -1;
            while (len > 0) {
                size_t take = len < H_CHUNK - n ? len : H_CHUNK - n;
                memcpy(acc + n, data, take);
                n += take;
                data += take;
                len -= take;
                if (n == H_CHUNK) {
                    int rc = in_write(h, SP_FT_BODY, acc, n);
                    n = 0;
                    if (rc == 1) {
                        *early = 1;
                        return 0;
                    }
                    if (rc < 0)
                        return -2;
                }
            }
        }
        apr_brigade_cleanup(bb);
    }
    if (n > 0) {
        int rc = in_write(h, SP_FT_BODY, acc, n);
        if (rc == 1) {
            *early = 1;
            return 0;
        }
        if (rc < 0)
            return -2;
    }
    int rc = in_write(h, SP_FT_END, NULL, 0);
    if (rc == 1)
        *early = 1;
    return rc < 0 ? -2 : 0;
}

static void set_response_head(request_rec *r, const sp_resphead_t *rh)
{
    r->status = rh->status;
    if (rh->reason.len > 0)
        r->status_line = apr_psprintf(r->pool, "%d %s", rh->status,
                                      rh->reason.ptr);
    else /* without a status line httpd sends a code it does not know
          * (299, 599...) as "500 Internal Server Error" */
        r->status_line = ap_get_status_line_ex(r->pool, rh->status);
    for (uint32_t i = 0; i < rh->nheaders; i++) {
        const char *name = rh->headers[i].name.ptr;
        const char *value = rh->headers[i].value.ptr;
        if (is_hop_by_hop(name))
            continue;
        if (strcasecmp(name, "Content-Type") == 0)
            ap_set_content_type(r, apr_pstrdup(r->pool, value));
        else
            apr_table_add(r->headers_out, name, value);
    }
}

static int error_status(request_rec *r, const sp_abort_t *a)
{
    int status = a->status >= 400 && a->status <= 599 ? a->status : 502;
    if (status == 503)
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
    return status;
}

int spm_handle(request_rec *r, spm_runtime_t *rt, int backend)
{
    const spm_conf_t *conf = rt->conf;
    if (rt->shared == NULL || rt->shared->magic != SPM_SHARED_MAGIC)
        return HTTP_INTERNAL_SERVER_ERROR;
    uint32_t limit = conf->max_inflight ? conf->max_inflight
                                        : rt->slots.nslots;
    int rc = spm_admit(rt->shared, conf, limit);
    if (rc == SP_ENOSPC) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "SPM0210: admission queue full (%u in flight, %u "
                      "waiting): 503",
                      limit, conf->queue_len);
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (rc < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "SPM0211: waited %d ms for admission: 503",
                      conf->queue_timeout_ms);
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    conn_rec *c = r->connection;
    uint32_t pref = c->master == NULL && (uint64_t)c->id < rt->nregular
                        ? (uint32_t)c->id
                        : UINT32_MAX;
    long idx = sp_slot_claim(&rt->slots, pref);
    if (idx < 0) {
        spm_release(rt->shared);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0212: no free slot (all %u taken): 503",
                      rt->slots.nslots);
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    hctx_t h;
    memset(&h, 0, sizeof(h));
    h.r = r;
    h.rt = rt;
    h.bc = &conf->backends[backend];
    h.slot = (uint32_t)idx;
    h.proxy.pid = sp_load_acquire(&rt->shared->proxy_pid);
    h.proxy.start = sp_load_relaxed(&rt->shared->proxy_start);
    h.deadline = sp_now_ns() + (int64_t)h.bc->timeout_ms * SP_NSEC_PER_MSEC +
                 5 * SP_NSEC_PER_SEC;
    sp_slot_ring_in(&rt->slots, h.slot, &h.in);
    sp_slot_ring_out(&rt->slots, h.slot, &h.out);
    /* Spin for room in the input ring, which the proxy child drains
     * within microseconds (adaptive).  Poll for the answer for up to
     * SlotProxyPollTime, but only while the CPU is free: not at all while
     * more requests are in flight than there are CPUs, and never past a
     * yield that let other work run.  On a busy machine a polling worker
     * would take the CPU from the processes that produce the answer
     * (docs/decisions.md). */
    h.in.spin = (sp_spin_t)SP_SPIN_INIT(20000);
    h.out.spin = (sp_spin_t)SP_SPIN_POLL(conf->poll_us * 1000u);
    sp_spin_gate(&h.out.spin, &rt->slots.live->inflight);
    h.in.peer = h.out.peer = &h.proxy;
    h.bb = apr_brigade_create(r->pool, c->bucket_alloc);
    h.kv = apr_palloc(r->pool, H_MAX_FIELDS * sizeof(sp_kv_t));
    h.result = OK;
    sp_slot(&rt->slots, h.slot)->backend = (uint32_t)backend;

    uint8_t *head;
    long hl = build_head(r, &head);
    if (hl < 0 || (size_t)hl > conf->max_payload ||
        (size_t)hl > sp_ring_capacity(&h.in)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "SPM0213: request head of %ld bytes does not fit "
                      "(%s): 431",
                      hl, hl < 0 ? sp_strerror((int)hl) : "too large");
        slot_finish(&h, 0);
        return hl == SP_EINVAL ? HTTP_BAD_REQUEST
                               : HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
    }
    sp_ring_write(&h.in, SP_FT_REQUEST_HEAD, head, (size_t)hl, 0);
    sp_slot_transition(&rt->slots, h.slot, SP_SLOT_WRITING, SP_SLOT_QUEUED,
                       NULL);
    sp_slots_notify(&rt->slots, h.slot);

    if (ap_request_has_body(r)) {
        int early = 0;
        int brc = send_body(&h, &early);
        if (brc == -1 || (h.cancelled && !h.finished)) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                          "SPM0217: client went away during the upload");
            sp_stat_add(&rt->shared->client_aborts, 1);
            slot_finish(&h, 1);
            return h.got_head ? DONE : HTTP_BAD_REQUEST;
        }
        /* brc == -2: the proxy stopped taking the body; its answer is in
         * the output ring (or the wait below times out). */
    }

    /* The response. */
    pump_response(&h, 1);
    if (h.cancelled && h.result == OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "SPM0217: client went away; stream cancelled");
        sp_stat_add(&rt->shared->client_aborts, 1);
        h.result = DONE;
    }
    slot_finish(&h, h.cancelled && !h.finished);
    return h.result;
}
