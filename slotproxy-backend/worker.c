/*
 * worker.c - a backend worker process: owns one slot, waits in IDLE, runs
 * one request at a time through the application API (slotproxy_app.h),
 * reading the request from the slot's out ring and writing the response
 * into its in ring.  The protocol with the dispatcher is drawn in
 * backend.h.
 *
 * Every blocking call has a deadline and names the dispatcher as the peer,
 * so a worker whose dispatcher died notices within 100 ms and exits.
 * Writes into the in ring block only while the frontend does not grant
 * credit (the dispatcher stops draining): that is the flow control a slow
 * client exerts on the application.
 */
#include "backend.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "sp_atomic.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"
#include "sp_mark.h"

#define W_MAX_FIELDS 1000
#define W_BODY_CHUNK (64 * 1024)
#define W_RESP_ARENA (64 * 1024)
#define W_MAX_RESP_HEADERS 200
#define W_WAIT_SLICE_NS (1000 * 1000000LL)

typedef struct wreq {
    slotproxy_request_t pub;
    sp_slots_t *slots;
    uint32_t slot;
    sp_ring_t *out; /* request side (we consume) */
    sp_ring_t *in;  /* response side (we produce) */
    const sp_ident_t *master;
    int64_t deadline_ns;
    int body_done;
    int aborted;
    int head_sent;
    int end_sent;
    int unnotified; /* written since the dispatcher was last notified */
    int status;
    char reason[128];
    sp_kv_t resp_kv[W_MAX_RESP_HEADERS];
    uint32_t resp_n;
    char arena[W_RESP_ARENA];
    size_t arena_used;
    char path[8192];
} wreq_t;

static wreq_t *wreq_of(slotproxy_request_t *r)
{
    return (wreq_t *)r; /* pub is the first member */
}

static int w_is_aborted(wreq_t *w)
{
    if (!w->aborted &&
        (sp_load_acquire(&sp_slot(w->slots, w->slot)->flags) &
         SP_SLOTF_ABORTED))
        w->aborted = 1;
    return w->aborted;
}

/* After we consumed from the out ring: the dispatcher may wait for room. */
static void w_after_consume(wreq_t *w)
{
    if (w->out->wake_poller) {
        w->out->wake_poller = 0;
        sp_slots_notify(w->slots, w->slot);
    }
}

/* Tell the dispatcher what we did since the last time: one notification
 * (one wake-up of a sleeping dispatcher, and one link write for ACCEPT,
 * head, body and end) per flush, wait, full ring, large piece or end of
 * the response, instead of one per message (docs/applications.md,
 * write()). */
static void w_notify(wreq_t *w)
{
    w->unnotified = 0;
    sp_slots_notify(w->slots, w->slot);
}

static int w_ring_write(wreq_t *w, unsigned type, const void *buf, size_t len)
{
    if (w_is_aborted(w))
        return -1;
    /* Without waiting first; if the ring is full, the dispatcher must
     * drain what we wrote before we can go on: tell it, then wait. */
    int rc = sp_ring_write(w->in, type, buf, len, 0);
    if (rc == SP_EAGAIN)
        w_notify(w);
    while (rc == SP_EAGAIN || (rc == SP_ETIMEDOUT &&
                               sp_now_ns() < w->deadline_ns)) {
        if (w_is_aborted(w))
            return -1;
        int64_t slice = sp_now_ns() + W_WAIT_SLICE_NS;
        rc = sp_ring_write(w->in, type, buf, len,
                           slice < w->deadline_ns ? slice : w->deadline_ns);
    }
    if (rc < 0)
        return -1;
    /* A large piece (a quarter ring or more: a streamed body) goes out at
     * once, so the dispatcher drains while we write the next; small ones
     * wait for the next notification. */
    if (len >= sp_ring_capacity(w->in) / 4)
        w_notify(w);
    else
        w->unnotified = 1;
    return 0;
}

static const char *w_header(slotproxy_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static const char *w_getenv(slotproxy_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nenv; i++)
        if (strcmp(r->env[i].name, name) == 0)
            return r->env[i].value;
    return NULL;
}

static long w_read(slotproxy_request_t *r, void *buf, size_t len)
{
    wreq_t *w = wreq_of(r);
    for (;;) {
        if (w->body_done)
            return 0;
        if (w_is_aborted(w))
            return -1;
        sp_ring_msg_t msg;
        struct iovec iov[64];
        int n = sp_ring_peek(w->out, &msg, iov, 64);
        if (n == SP_EAGAIN) {
            /* About to wait for the body: let the dispatcher see that we
             * took the request (ACCEPT) and what we answered so far. */
            if (w->unnotified)
                w_notify(w);
            int64_t slice = sp_now_ns() + W_WAIT_SLICE_NS;
            int rc = sp_ring_wait_readable(
                w->out, slice < w->deadline_ns ? slice : w->deadline_ns);
            if (rc == SP_ETIMEDOUT && sp_now_ns() < w->deadline_ns)
                continue;
            if (rc < 0) {
                w->aborted = 1;
                return -1;
            }
            continue;
        }
        if (n < 0) {
            w->aborted = 1;
            return -1;
        }
        if (msg.type == SP_FT_END) {
            sp_ring_consume(w->out, msg.remaining);
            w->body_done = 1;
            w_after_consume(w);
            return 0;
        }
        if (msg.type != SP_FT_BODY) { /* ABORT, or anything unexpected */
            sp_ring_consume(w->out, msg.remaining);
            w->aborted = 1;
            w_after_consume(w);
            return -1;
        }
        if (msg.remaining == 0) {
            sp_ring_consume(w->out, 0);
            w_after_consume(w);
            continue;
        }
        size_t got = 0;
        for (int k = 0; k < n && got < len; k++) {
            size_t take = iov[k].iov_len < len - got ? iov[k].iov_len
                                                     : len - got;
            memcpy((char *)buf + got, iov[k].iov_base, take);
            got += take;
        }
        sp_ring_consume(w->out, got);
        w_after_consume(w);
        return (long)got;
    }
}

static int w_set_status(slotproxy_request_t *r, int status, const char *reason)
{
    wreq_t *w = wreq_of(r);
    if (w->head_sent || status < 100 || status > 999)
        return -1;
    w->status = status;
    snprintf(w->reason, sizeof(w->reason), "%s", reason ? reason : "");
    return 0;
}

static const char *w_arena_dup(wreq_t *w, const char *s, uint32_t *len)
{
    size_t n = strlen(s);
    if (n > UINT32_MAX || w->arena_used + n + 1 > sizeof(w->arena))
        return NULL;
    char *p = w->arena + w->arena_used;
    memcpy(p, s, n + 1);
    w->arena_used += n + 1;
    *len = (uint32_t)n;
    return p;
}

static int w_add_header(slotproxy_request_t *r, const char *name,
                        const char *value)
{
    wreq_t *w = wreq_of(r);
    if (w->head_sent || w->resp_n >= W_MAX_RESP_HEADERS || name == NULL ||
        value == NULL || name[0] == '\0')
        return -1;
    sp_kv_t *kv = &w->resp_kv[w->resp_n];
    size_t mark = w->arena_used;
    kv->name.ptr = w_arena_dup(w, name, &kv->name.len);
    kv->value.ptr = kv->name.ptr ? w_arena_dup(w, value, &kv->value.len) : NULL;
    if (kv->value.ptr == NULL) {
        w->arena_used = mark;
        return -1;
    }
    w->resp_n++;
    return 0;
}

static int w_send_head(wreq_t *w)
{
    if (w->head_sent)
        return 0;
    sp_resphead_t h;
    memset(&h, 0, sizeof(h));
    h.status = (uint16_t)w->status;
    h.reason = sp_str(w->reason);
    h.content_length = -1;
    h.headers = w->resp_kv;
    h.nheaders = w->resp_n;
    for (uint32_t i = 0; i < w->resp_n; i++)
        if (sp_str_caseeq(w->resp_kv[i].name, "Content-Length")) {
            char *end = NULL;
            long long v = strtoll(w->resp_kv[i].value.ptr, &end, 10);
            if (end != w->resp_kv[i].value.ptr && *end == '\0' && v >= 0)
                h.content_length = v;
        }
    static uint8_t buf[W_RESP_ARENA + 4096];
    int len = sp_resphead_encode(&h, buf, sizeof(buf));
    if (len < 0) {
        SPB_ERR("SPB0101", "response head does not encode (%s)",
                sp_strerror(len));
        return -1;
    }
    w->head_sent = 1;
    sp_slot_transition(w->slots, w->slot, SP_SLOT_ACCEPTED,
                       SP_SLOT_RESPONDING, NULL);
    return w_ring_write(w, SP_FT_RESPONSE_HEAD, buf, (size_t)len);
}

static long w_write(slotproxy_request_t *r, const void *buf, size_t len)
{
    wreq_t *w = wreq_of(r);
    if (w->end_sent || w_send_head(w) < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < W_BODY_CHUNK ? len - done : W_BODY_CHUNK;
        if (w_ring_write(w, SP_FT_BODY, (const char *)buf + done, n) < 0)
            return -1;
        done += n;
    }
    sp_stat_add(&sp_slot(w->slots, w->slot)->bytes_out, len);
    return (long)len;
}

static int w_flush(slotproxy_request_t *r)
{
    wreq_t *w = wreq_of(r);
    if (w_send_head(w) < 0 || w_is_aborted(w))
        return -1;
    w_notify(w);
    return 0;
}

static int w_aborted(slotproxy_request_t *r)
{
    return w_is_aborted(wreq_of(r));
}

static void w_log(slotproxy_request_t *r, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    spb_log(level, "SPB0102", "%s %s: %s", r->method, r->uri, msg);
}

static void w_fill_headers(slotproxy_header_t *dst, const sp_kv_t *src,
                           uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        dst[i].name = src[i].name.ptr ? src[i].name.ptr : "";
        dst[i].value = src[i].value.ptr ? src[i].value.ptr : "";
    }
}

static const char *s_or_empty(sp_str_t s)
{
    return s.ptr ? s.ptr : "";
}

/* Serve the request queued in our slot.  Returns after END (or ABORT) is
 * in the in ring. */
static void w_serve(const spb_config_t *cfg, sp_handler_t *handlers,
                    size_t nhandlers, sp_slots_t *slots, uint32_t slot,
                    sp_ring_t *out, sp_ring_t *in, const sp_ident_t *master,
                    uint8_t *headbuf, size_t headcap, sp_kv_t *kv,
                    slotproxy_header_t *hdrs, wreq_t *w)
{
    memset(w, 0, offsetof(wreq_t, resp_kv));
    w->resp_n = 0;
    w->arena_used = 0;
    w->slots = slots;
    w->slot = slot;
    w->out = out;
    w->in = in;
    w->master = master;
    w->status = 200;
    w->deadline_ns = sp_now_ns() +
                     (int64_t)cfg->request_timeout_s * SP_NSEC_PER_SEC + 
                     SP_NSEC_PER_SEC;

    unsigned type = 0;
    long hl = sp_ring_read(out, &type, headbuf, headcap - 1,
                           sp_now_ns() + 5 * SP_NSEC_PER_SEC);
    sp_reqhead_t h;
    int rc = hl < 0 || type != SP_FT_REQUEST_HEAD ? SP_EPROTO : 0;
    if (rc == 0) {
        sp_head_limits_t lim = {W_MAX_FIELDS, 1u << 20};
        rc = sp_reqhead_decode(headbuf, (size_t)hl, &lim, &h, kv, W_MAX_FIELDS);
    }
    w_after_consume(w);
    slotproxy_request_t *r = &w->pub;
    r->abi_version = SLOTPROXY_APP_ABI;
    r->size = sizeof(*r);
    r->header = w_header;
    r->getenv = w_getenv;
    r->read = w_read;
    r->set_status = w_set_status;
    r->add_header = w_add_header;
    r->write = w_write;
    r->flush = w_flush;
    r->aborted = w_aborted;
    r->log = w_log;
    if (rc < 0) {
        SPB_ERR("SPB0103", "slot %u: unreadable request head (%s)", slot,
                sp_strerror(rc));
        r->method = r->uri = "?";
        w->status = 400;
        w_add_header(r, "Content-Type", "text/plain");
        w_write(r, "bad request head\n", 17);
    } else {
        r->method = s_or_empty(h.method);
        r->uri = s_or_empty(h.uri);
        r->protocol = s_or_empty(h.protocol);
        r->scheme = s_or_empty(h.scheme);
        r->server_name = s_or_empty(h.server_name);
        r->remote_addr = s_or_empty(h.remote_addr);
        r->local_addr = s_or_empty(h.local_addr);
        r->remote_user = s_or_empty(h.remote_user);
        r->auth_type = s_or_empty(h.auth_type);
        r->remote_port = h.remote_port;
        r->local_port = h.local_port;
        r->https = (h.flags & SP_REQ_HTTPS) != 0;
        r->content_length = h.content_length;
        if (!(h.flags & SP_REQ_BODY))
            w->body_done = 1;
        w_fill_headers(hdrs, h.headers, h.nheaders);
        r->headers = hdrs;
        r->nheaders = h.nheaders;
        w_fill_headers(hdrs + h.nheaders, h.env, h.nenv);
        r->env = hdrs + h.nheaders;
        r->nenv = h.nenv;
        const char *q = strchr(r->uri, '?');
        size_t plen = q ? (size_t)(q - r->uri) : strlen(r->uri);
        if (plen >= sizeof(w->path))
            plen = sizeof(w->path) - 1;
        memcpy(w->path, r->uri, plen);
        w->path[plen] = '\0';
        r->path = w->path;
        r->query = q ? q + 1 : "";
        sp_handler_t *hd =
            (sp_handler_t *)sp_handler_match(handlers, nhandlers, r->path);
        if (hd == NULL) {
            w->status = 404;
            w_add_header(r, "Content-Type", "text/plain");
            w_write(r, "no handler for this path\n", 25);
        } else {
            int hrc = sp_handler_handle(hd, r);
            if (hrc < 0 && !w->head_sent && !w_is_aborted(w)) {
                w->status = 500;
                w->resp_n = 0;
                w->arena_used = 0;
                w_add_header(r, "Content-Type", "text/plain");
                w_write(r, "application error\n", 18);
            } else if (hrc < 0 && !w_is_aborted(w)) {
                uint8_t ab[256];
                sp_abort_t a = {.code = SP_ABORT_INTERNAL, .status = 500,
                                .reason = sp_str("application failed")};
                int n = sp_abort_encode(&a, ab, sizeof(ab));
                if (n > 0 && w_ring_write(w, SP_FT_ABORT, ab, (size_t)n) == 0)
                    w->end_sent = 1;
            }
        }
    }
    if (!w_is_aborted(w)) {
        if (!w->end_sent && w_send_head(w) == 0 &&
            w_ring_write(w, SP_FT_END, NULL, 0) == 0)
            w->end_sent = 1;
    }
}

void spb_worker_main(const spb_config_t *cfg, sp_handler_t *handlers,
                     size_t nhandlers, sp_slots_t *slots, uint32_t slot,
                     sp_ident_t master)
{
    /* The dispatcher's signal handling does not apply here. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);

    for (size_t i = 0; i < nhandlers; i++) {
        char err[512] = "";
        if (sp_handler_init(&handlers[i], err, sizeof(err)) < 0)
            SPB_ERR("SPB0104", "handler %s: init failed: %s",
                    handlers[i].prefix, err);
    }
    long got = sp_slot_claim(slots, slot);
    if (got != (long)slot) {
        SPB_ERR("SPB0105", "worker cannot claim slot %u (%ld)", slot, got);
        _exit(3);
    }
    sp_ring_t out, in;
    if (sp_slot_ring_out(slots, slot, &out) < 0 ||
        sp_slot_ring_in(slots, slot, &in) < 0)
        _exit(3);
    out.peer = in.peer = &master;
    /* Spin a little for room and data: the dispatcher usually moves them
     * within microseconds. */
    sp_spin_t spin = SP_SPIN_INIT(20000);
    out.spin = spin;
    in.spin = spin;
    /* Between requests, poll for the next one for up to PollTime while
     * the CPU is free: a worker that sleeps costs the next request a
     * wake-up, 10-20 us where idle CPUs halt (docs/decisions.md).  Not
     * while the dispatcher holds more streams than there are CPUs: the
     * next one comes soon anyway, and the poll would cost a switch. */
    sp_spin_t idle_poll = SP_SPIN_POLL((uint32_t)cfg->poll_us * 1000u);
    sp_spin_gate(&idle_poll, &slots->live->streams);

    size_t headcap = cfg->max_payload + 1;
    uint8_t *headbuf = malloc(headcap);
    sp_kv_t *kv = calloc(W_MAX_FIELDS, sizeof(*kv));
    slotproxy_header_t *hdrs = calloc(W_MAX_FIELDS, sizeof(*hdrs));
    wreq_t *w = malloc(sizeof(*w));
    if (!headbuf || !kv || !hdrs || !w)
        _exit(3);

    sp_slot_transition(slots, slot, SP_SLOT_WRITING, SP_SLOT_IDLE, NULL);
    sp_slots_notify(slots, slot);
    int served = 0; /* poll only right after a request, not every slice */
    for (;;) {
        int st = sp_slot_wait(slots, slot, SP_SLOT_IDLE,
                              sp_now_ns() + W_WAIT_SLICE_NS,
                              served ? &idle_poll : NULL, &master);
        served = 0;
        if (st == SP_ETIMEDOUT)
            continue;
        if (st == SP_EPEERDEAD || st < 0)
            break;
        if (st == SP_SLOT_CANCELLED) {
            /* Retire: the dispatcher asked us to exit. */
            sp_slot_transition(slots, slot, SP_SLOT_CANCELLED, SP_SLOT_IDLE,
                               NULL);
            sp_slot_release(slots, slot);
            break;
        }
        if (st != SP_SLOT_QUEUED) {
            SPB_ERR("SPB0106", "slot %u: unexpected state %s", slot,
                    sp_slot_state_name((uint32_t)st));
            break;
        }
        /* No notification: the dispatcher sends ACCEPT with the response,
         * or from its ACCEPT scan if the application takes longer (see
         * accept_scan() in dispatcher.c). */
        sp_slot_transition(slots, slot, SP_SLOT_QUEUED, SP_SLOT_ACCEPTED,
                           NULL);
        w_serve(cfg, handlers, nhandlers, slots, slot, &out, &in, &master,
                headbuf, headcap, kv, hdrs, w);
        served = 1;
        uint32_t cur = sp_mark_get(&sp_slot(slots, slot)->state);
        /* A request read to its END and answered to its END leaves nothing
         * for the dispatcher to clean up: we go back to IDLE ourselves and
         * the dispatcher finishes the stream when it has passed our END on
         * (one wake-up less for us per request, one for the dispatcher).
         * Otherwise DONE, and the dispatcher drains and hands back. */
        int clean = w->body_done && w->end_sent && !w_is_aborted(w);
        sp_slot_transition(slots, slot, cur,
                           clean ? SP_SLOT_IDLE : SP_SLOT_DONE, NULL);
        w_notify(w);
        if (clean)
            continue;
        /* Wait for the dispatcher to drain and hand the slot back. */
        for (;;) {
            st = sp_slot_wait(slots, slot, SP_SLOT_DONE,
                              sp_now_ns() + W_WAIT_SLICE_NS, NULL, &master);
            if (st != SP_ETIMEDOUT)
                break;
        }
        if (st < 0)
            break;
        /* st is IDLE (next request) or CANCELLED (handled above). */
        if (st == SP_SLOT_CANCELLED) {
            sp_slot_transition(slots, slot, SP_SLOT_CANCELLED, SP_SLOT_IDLE,
                               NULL);
            sp_slot_release(slots, slot);
            break;
        }
    }
    for (size_t i = 0; i < nhandlers; i++)
        sp_handler_fini(&handlers[i]);
    _exit(0);
}
