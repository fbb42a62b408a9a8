/*
 * proxy.c - mod_slotproxy's proxy child and the shared segment.
 *
 * The proxy child is one process per httpd generation, forked by the
 * module in post_config.  It owns every link to every backend and moves
 * each slot's request and response over them (slotproxy.h draws the
 * protocol with the handler).  It is single-threaded: one epoll loop over
 * the links, the slot table's doorbell, a 50 ms timerfd and a signalfd.
 * No APR and no httpd API are used here: it is plain C over common/.
 *
 * Streams.  A stream is a slot index plus the slot's request sequence,
 * which is also the stream id and generation on the wire.  pstream_t
 * (indexed by slot) is the proxy's private state of it: which link carries
 * it, the credit windows, a copy of the request head while a replay is
 * still allowed, and response data that did not fit in the slot's output
 * ring yet.
 *
 * Links.  Each backend keeps `links` usable links: connected with
 * exponential backoff (retry .. 8 s), PINGed when idle, closed after three
 * silent intervals.  A link that received GOAWAY drains (no new streams)
 * and is replaced at once; it closes when its last stream ends.  A new
 * stream goes to the usable link with the fewest streams.
 *
 * Flow control.  Request body: BODY frames only within the backend's
 * credit; without credit the input ring fills and the handler's write
 * blocks (its client is throttled, nobody else).  Response body: the
 * backend may send our initial window; we grant CREDIT back as bytes enter
 * the slot's output ring (in batches of half the window), so a slow client
 * holds back only its own stream.
 *
 * Failure answers go into the output ring as ABORT messages carrying an
 * HTTP status hint (503 no link, 504 timeout, 502 lost after ACCEPT); a
 * request that never reached ACCEPTED and whose body was not consumed is
 * replayed once on another link.
 */
#include "slotproxy.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"
#include "sp_link.h"
#include "sp_mark.h"
#include "sp_proc.h"
#include "sp_ring.h"
#include "sp_shmlink.h"

/* ---- the segment ------------------------------------------------------- */

/* 16 segments per ring (a small message takes a whole segment, so the
 * count matters more than the size), at least 1 KiB each. */
static uint32_t ring_geometry(uint32_t buffer_size, uint32_t *seg_size)
{
    uint32_t seg = buffer_size / 16;
    if (seg < 1024)
        seg = 1024;
    *seg_size = seg;
    return buffer_size / seg;
}

size_t spm_segment_bytes(const spm_conf_t *conf, uint32_t nregular)
{
    uint32_t seg, nseg = ring_geometry(conf->buffer_size, &seg);
    size_t t = sp_slots_bytes(nregular, conf->overflow_slots, nseg, seg);
    if (t == 0)
        return 0;
    t = (t + SP_CACHELINE - 1) & ~(size_t)(SP_CACHELINE - 1);
    return t + sizeof(spm_shared_t);
}

int spm_segment_create(const spm_conf_t *conf, void *mem, size_t size,
                       uint32_t nregular, uint64_t generation,
                       sp_slots_t *slots, spm_shared_t **shared)
{
    uint32_t seg, nseg = ring_geometry(conf->buffer_size, &seg);
    size_t t = sp_slots_bytes(nregular, conf->overflow_slots, nseg, seg);
    if (t == 0 || spm_segment_bytes(conf, nregular) > size)
        return SP_EINVAL;
    int rc = sp_slots_create(slots, mem, t, nregular, conf->overflow_slots,
                             nseg, seg, generation);
    if (rc < 0)
        return rc;
    t = (t + SP_CACHELINE - 1) & ~(size_t)(SP_CACHELINE - 1);
    spm_shared_t *sh = (spm_shared_t *)((char *)mem + t);
    memset(sh, 0, sizeof(*sh));
    sh->nbackends = (uint32_t)conf->nbackends;
    sh->generation = generation;
    sp_store_release(&sh->magic, SPM_SHARED_MAGIC);
    *shared = sh;
    return 0;
}

/* ---- admission ----------------------------------------------------------
 *
 * `admitted` counts requests holding a place; it only grows by CAS below
 * the limit.  A handler that finds no place joins the bounded queue
 * (`queued`, also CAS-bounded) and sleeps on the futex at `admitted`;
 * spm_release() decrements and wakes one sleeper if admit_waiting says
 * somebody sleeps.  Pairing: waiter stores admit_waiting, full fence,
 * re-reads admitted; releaser decrements (RMW), full fence, reads
 * admit_waiting.  The waiter sleeps on the exact value it saw, so a release
 * between its check and its sleep makes FUTEX_WAIT return at once.
 */

static int admit_try(spm_shared_t *sh, uint32_t limit)
{
    uint32_t cur = sp_load_relaxed(&sh->admitted); /* CAS re-validates */
    while (cur < limit)
        if (sp_cas(&sh->admitted, &cur, cur + 1))
            return 1;
    return 0;
}

int spm_admit(spm_shared_t *sh, const spm_conf_t *conf, uint32_t limit)
{
    if (admit_try(sh, limit)) {
        sp_stat_add(&sh->admitted_total, 1);
        return 0;
    }
    uint32_t q = sp_load_relaxed(&sh->queued);
    for (;;) {
        if (q >= conf->queue_len) {
            sp_stat_add(&sh->rejected_full, 1);
            return SP_ENOSPC;
        }
        if (sp_cas(&sh->queued, &q, q + 1))
            break;
    }
    int64_t deadline = sp_deadline_ms(conf->queue_timeout_ms);
    int rc = SP_ETIMEDOUT;
    for (;;) {
        if (admit_try(sh, limit)) {
            rc = 0;
            break;
        }
        uint32_t seen = sp_load_acquire(&sh->admitted);
        sp_store_relaxed(&sh->admit_waiting, 1);
        sp_fence_full(); /* pairs with the fence in spm_release() */
        if (sp_load_acquire(&sh->admitted) != seen)
            continue;
        if (sp_now_ns() >= deadline)
            break;
        sp_futex_wait(&sh->admitted, seen, deadline);
    }
    sp_fetch_sub(&sh->queued, 1);
    if (rc == 0)
        sp_stat_add(&sh->admitted_total, 1);
    else
        sp_stat_add(&sh->rejected_timeout, 1);
    return rc;
}

void spm_release(spm_shared_t *sh)
{
    sp_fetch_sub(&sh->admitted, 1);
    sp_fence_full(); /* pairs with the fence in spm_admit() */
    if (sp_load_relaxed(&sh->admit_waiting)) {
        sp_store_relaxed(&sh->admit_waiting, 0);
        /* Wake all: each re-checks; the losers set the flag again. */
        sp_futex_wake(&sh->admitted, 1 << 30);
    }
}

/* ---- the proxy child ---------------------------------------------------- */

enum { EV_LINK = 1, EV_DOORBELL, EV_TIMER, EV_SIGNAL };

typedef struct ev_tag {
    int kind;
} ev_tag_t;

typedef struct pstream pstream_t;

typedef struct plink {
    int kind; /* EV_LINK */
    sp_link_t l;
    int backend;
    int state;      /* SPM_LINK_* */
    int shared_idx; /* index in spm_backend_shared_t.link[], -1 = none */
    int in_epoll;
    int want_out;
    int blocked; /* a stream waits for room in the output queue */
    int dead;
    int64_t connect_deadline;
    pstream_t *streams;
    uint32_t nstreams;
    struct plink *next; /* in its backend's list */
    struct plink *gnext; /* graveyard */
} plink_t;

typedef struct chunk {
    struct chunk *next;
    uint32_t type, len;
    uint8_t data[];
} chunk_t;

struct pstream {
    int active;
    uint32_t slot;
    uint32_t seq;
    int backend;
    plink_t *link;
    uint8_t *head; /* REQUEST_HEAD copy while a replay is possible */
    uint32_t head_len;
    int retried;
    int head_sent, accepted, req_done, resp_done;
    int64_t send_credit; /* request BODY bytes the backend allows */
    int64_t resp_window; /* response BODY bytes the backend may still send */
    int64_t credit_owed; /* BODY bytes in the output ring not granted back */
    chunk_t *pend, *pend_last; /* for the output ring */
    int64_t deadline;
    int64_t t_wait;      /* waiting for a link since */
    pstream_t *lprev, *lnext; /* on its link */
    pstream_t *wnext;         /* waiting for a link */
    int wake_queued;          /* on P.wakes */
    int stall_ticks;          /* ticks that saw output wait with room */
    sp_ring_t in, out;
};

typedef struct pbackend {
    const spm_backend_conf_t *conf;
    spm_backend_shared_t *sh;
    plink_t *links;
    int64_t next_try_ns;
    int64_t backoff_ms;
    int64_t last_try_ns; /* last connect attempt */
    int refused;         /* it refused the last one; no link up since */
    pstream_t *wait_head, *wait_tail;
    sp_link_config_t lcfg;
} pbackend_t;

#define TICK_NS (50 * 1000000LL)
#define MAX_BACKOFF_MS 8000

static struct {
    const spm_conf_t *conf;
    sp_slots_t *slots;
    spm_shared_t *sh;
    sp_ident_t parent;
    int ep, timerfd, sigfd;
    ev_tag_t ev_doorbell, ev_timer, ev_signal;
    pstream_t *streams;
    pbackend_t backends[SPM_MAX_BACKENDS];
    plink_t *graveyard;
    int stopping;
    int64_t next_reclaim;
    /* Slots whose handler may need a wake-up: the rings defer theirs
     * (sp_ring_defer_wake), so a response head, body and end written in
     * one pass wake the handler once, after the slot state is final. */
    uint32_t *wakes;
    uint32_t nwakes;
    sp_spin_t poll; /* sp_slots_poll_events() budget */
} P;

/* Requests out on a link, waiting for their answers. */
static int streams_on_links(void)
{
    for (int bi = 0; bi < P.conf->nbackends; bi++)
        if (sp_load_relaxed(&P.backends[bi].sh->outstanding) > 0)
            return 1;
    return 0;
}

/* The handler of ps is woken in wakes_flush(), before the proxy sleeps. */
static void wake_later(pstream_t *ps)
{
    if (!ps->wake_queued) {
        ps->wake_queued = 1;
        P.wakes[P.nwakes++] = ps->slot;
    }
}

static void wakes_flush(void)
{
    for (uint32_t k = 0; k < P.nwakes; k++) {
        pstream_t *ps = &P.streams[P.wakes[k]];
        ps->wake_queued = 0;
        sp_ring_wake_flush(&ps->out);
        sp_ring_wake_flush(&ps->in);
        sp_slot_kick(P.slots, ps->slot);
    }
    P.nwakes = 0;
}

static void stream_start_on_link(pstream_t *ps);

static void plog(const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The proxy child writes to httpd's error log through inherited stderr
 * (httpd points fd 2 at the main ErrorLog). */
static void plog(const char *tag, const char *fmt, ...)
{
    char msg[1024], line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[64];
    strftime(when, sizeof(when), "%a %b %d %H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line),
                     "[%s.%06ld %d] [slotproxy:error] [pid %d] %s: %s\n", when,
                     ts.tv_nsec / 1000, tm.tm_year + 1900, (int)getpid(), tag,
                     msg);
    if (n > 0) {
        ssize_t w = write(2, line, (size_t)n < sizeof(line) ? (size_t)n
                                                            : sizeof(line) - 1);
        (void)w;
    }
}

/* ---- output ring ------------------------------------------------------- */

static void out_abort(pstream_t *ps, uint32_t code, uint16_t status,
                      const char *reason);

/* Can we still write into this stream's slot?  Only while the slot holds
 * the same request. */
static int stream_current(const pstream_t *ps)
{
    const sp_slot_t *s = sp_slot(P.slots, ps->slot);
    return ps->active && s->seq == ps->seq &&
           sp_load_acquire(&s->owner_pid) > 0;
}

/* Response BODY bytes entered the output ring: grant them back to the
 * backend, in batches of half the initial window (as an HTTP/2 receiver
 * sends WINDOW_UPDATE).  A response smaller than half the window, most of
 * them, then costs no CREDIT frame at all: no write on the link and no
 * wake-up of the backend's dispatcher for nothing (one per request before,
 * measured with bench/httpd_bench.sh).  No stall: the backend stops only
 * with its whole window used, and once that much has entered the ring at
 * least half of it is owed, so it is granted. */
static void stream_grant(pstream_t *ps, uint32_t len)
{
    if (ps->link == NULL || ps->resp_done)
        return;
    ps->credit_owed += len;
    int64_t half = (int64_t)P.backends[ps->backend].lcfg.initial_window / 2;
    if (ps->credit_owed < half)
        return;
    sp_link_send_credit(&ps->link->l, ps->slot, ps->seq,
                        (uint32_t)ps->credit_owed);
    ps->resp_window += ps->credit_owed;
    ps->credit_owed = 0;
}

/* Queue a message for the output ring, writing what fits now.  For BODY,
 * credit goes back to the backend as bytes enter the ring. */
static void out_push_one(pstream_t *ps, uint32_t type, const void *data,
                         uint32_t len);
static int out_flush(pstream_t *ps);

/* Response bodies go into the ring in pieces of a quarter ring, so the
 * handler drains one piece while the next is written (a message as large
 * as the ring would need the whole ring empty: no pipelining). */
static void out_push(pstream_t *ps, uint32_t type, const void *data,
                     uint32_t len)
{
    uint32_t piece = (uint32_t)(sp_ring_capacity(&ps->out) / 4);
    if (type != SP_FT_BODY || len <= piece || piece == 0) {
        out_push_one(ps, type, data, len);
        return;
    }
    const uint8_t *p = data;
    while (len > 0) {
        uint32_t n = len < piece ? len : piece;
        out_push_one(ps, type, p, n);
        p += n;
        len -= n;
    }
}

static void out_push_one(pstream_t *ps, uint32_t type, const void *data,
                         uint32_t len)
{
    if (ps->pend == NULL && stream_current(ps) &&
        sp_ring_write(&ps->out, type, data, len, 0) == 0) {
        if (type == SP_FT_BODY)
            stream_grant(ps, len);
        wake_later(ps);
        return;
    }
    chunk_t *c = malloc(sizeof(*c) + len);
    if (c == NULL)
        return;
    c->next = NULL;
    c->type = type;
    c->len = len;
    if (len)
        memcpy(c->data, data, len);
    if (ps->pend_last)
        ps->pend_last->next = c;
    else
        ps->pend = c;
    ps->pend_last = c;
    /* The first piece that does not fit: ask the handler to tell us when
     * it made room (out_flush() flags us as polling the ring), or the rest
     * would wait for the tick. */
    if (c == ps->pend && stream_current(ps))
        out_flush(ps);
}

/* Move pending messages into the output ring.  1 when none is left. */
static int out_flush(pstream_t *ps)
{
    if (!stream_current(ps)) {
        while (ps->pend) {
            chunk_t *c = ps->pend;
            ps->pend = c->next;
            free(c);
        }
        ps->pend_last = NULL;
        return 1;
    }
    int wrote = 0;
    while (ps->pend) {
        chunk_t *c = ps->pend;
        if (sp_ring_write(&ps->out, c->type, c->data, c->len, 0) < 0) {
            uint32_t segs = (c->len + ps->out.seg_size - 1) / ps->out.seg_size;
            if (segs == 0)
                segs = 1;
            if (sp_ring_poll_writable(&ps->out, segs))
                continue;
            if (wrote)
                wake_later(ps);
            return 0; /* the handler's consume rings our doorbell */
        }
        wrote = 1;
        if (c->type == SP_FT_BODY)
            stream_grant(ps, c->len);
        ps->pend = c->next;
        if (ps->pend == NULL)
            ps->pend_last = NULL;
        free(c);
    }
    sp_ring_unpoll_writer(&ps->out);
    if (wrote)
        wake_later(ps);
    return 1;
}

/* ---- streams ------------------------------------------------------------ */

static void stream_unlink(pstream_t *ps)
{
    plink_t *pl = ps->link;
    if (pl == NULL)
        return;
    if (ps->lprev)
        ps->lprev->lnext = ps->lnext;
    else
        pl->streams = ps->lnext;
    if (ps->lnext)
        ps->lnext->lprev = ps->lprev;
    ps->lprev = ps->lnext = NULL;
    pl->nstreams--;
    if (pl->shared_idx >= 0)
        P.backends[pl->backend].sh->link[pl->shared_idx].streams =
            pl->nstreams;
    ps->link = NULL;
    sp_fetch_sub(&P.backends[ps->backend].sh->outstanding, 1);
}

static void wait_remove(pstream_t *ps)
{
    pbackend_t *b = &P.backends[ps->backend];
    pstream_t **pp = &b->wait_head;
    pstream_t *prev = NULL;
    while (*pp && *pp != ps) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (*pp) {
        *pp = ps->wnext;
        if (b->wait_tail == ps)
            b->wait_tail = prev;
    }
    ps->wnext = NULL;
    ps->t_wait = 0;
}

/* The stream is over for the proxy: mark the slot DONE once the last
 * message is in the output ring. */
static void stream_try_finish(pstream_t *ps)
{
    if (!ps->active || !ps->resp_done || !out_flush(ps))
        return;
    int cur = stream_current(ps);
    stream_unlink(ps);
    if (ps->t_wait)
        wait_remove(ps);
    free(ps->head);
    ps->head = NULL;
    ps->active = 0;
    if (cur) {
        sp_slot_t *s = sp_slot(P.slots, ps->slot);
        uint32_t st = sp_mark_get(&s->state);
        while (st != SP_SLOT_DONE && st != SP_SLOT_FREE &&
               sp_slot_transition(P.slots, ps->slot, st, SP_SLOT_DONE, &st) <
                   0)
            ;
    }
}

static void out_abort(pstream_t *ps, uint32_t code, uint16_t status,
                      const char *reason)
{
    if (ps->resp_done)
        return;
    pbackend_t *b = &P.backends[ps->backend];
    if (status == 503)
        sp_stat_add(&b->sh->answered_503, 1);
    else if (status == 504)
        sp_stat_add(&b->sh->answered_504, 1);
    else if (status == 502)
        sp_stat_add(&b->sh->answered_502, 1);
    uint8_t buf[256];
    sp_abort_t a = {.code = code, .status = status, .reason = sp_str(reason)};
    int n = sp_abort_encode(&a, buf, sizeof(buf));
    ps->resp_done = 1;
    if (n > 0)
        out_push(ps, SP_FT_ABORT, buf, (uint32_t)n);
    stream_try_finish(ps);
}

/* Choose the usable link of a backend with the fewest streams. */
static plink_t *link_pick(pbackend_t *b)
{
    plink_t *best = NULL;
    for (plink_t *pl = b->links; pl; pl = pl->next)
        if (pl->state == SPM_LINK_UP && sp_link_usable(&pl->l) &&
            (best == NULL || pl->nstreams < best->nstreams))
            best = pl;
    return best;
}

static void wait_push(pstream_t *ps)
{
    pbackend_t *b = &P.backends[ps->backend];
    ps->t_wait = sp_now_ns();
    ps->wnext = NULL;
    if (b->wait_tail)
        b->wait_tail->wnext = ps;
    else
        b->wait_head = ps;
    b->wait_tail = ps;
}

/* Take the oldest stream waiting for a link of b (there is one). */
static pstream_t *wait_pop(pbackend_t *b)
{
    pstream_t *ps = b->wait_head;
    b->wait_head = ps->wnext;
    if (b->wait_head == NULL)
        b->wait_tail = NULL;
    ps->wnext = NULL;
    ps->t_wait = 0;
    return ps;
}

/* Forward request body messages from the input ring, within credit. */
static void stream_forward_body(pstream_t *ps)
{
    plink_t *pl = ps->link;
    if (pl == NULL || !ps->head_sent || ps->req_done || !stream_current(ps))
        return;
    sp_slot_t *slot = sp_slot(P.slots, ps->slot);
    for (;;) {
        sp_ring_msg_t msg;
        struct iovec iov[64];
        int n = sp_ring_peek(&ps->in, &msg, iov, 64);
        if (n < 0)
            return;
        if (msg.type == SP_FT_END) {
            if (sp_link_send(&pl->l, SP_FT_END, ps->slot, ps->seq, NULL, 0) <
                0)
                return;
            sp_ring_consume(&ps->in, msg.remaining);
            wake_later(ps);
            ps->req_done = 1;
            return;
        }
        if (msg.type != SP_FT_BODY) {
            sp_ring_consume(&ps->in, msg.remaining);
            wake_later(ps);
            continue;
        }
        if (msg.remaining == 0) {
            sp_ring_consume(&ps->in, 0);
            wake_later(ps);
            continue;
        }
        int64_t k = (int64_t)msg.remaining;
        if (k > ps->send_credit)
            k = ps->send_credit;
        if (k > (int64_t)pl->l.peer_max_payload)
            k = pl->l.peer_max_payload;
        if (k <= 0)
            return; /* wait for CREDIT */
        k = (int64_t)sp_iov_trim(iov, &n, (size_t)k);
        int rc = sp_link_sendv(&pl->l, SP_FT_BODY, ps->slot, ps->seq, iov, n);
        if (rc == SP_EAGAIN) {
            pl->blocked = 1;
            return;
        }
        if (rc < 0)
            return;
        sp_ring_consume(&ps->in, (size_t)k);
        wake_later(ps);
        ps->send_credit -= k;
        if (!(slot->flags & SP_SLOTF_BODY_CONSUMED)) {
            sp_fetch_or(&slot->flags, SP_SLOTF_BODY_CONSUMED);
            free(ps->head); /* no replay from here on */
            ps->head = NULL;
        }
    }
}

static void backend_connect(pbackend_t *b, int bi);
static int backend_connecting(const pbackend_t *b);

/* The backend refused our last connect and no link is up or on its way:
 * the streams waiting for a link get their 503 now, not after
 * connect_timeout (a stopped backend answers a connect at once). */
static void backend_fail_waiting(pbackend_t *b)
{
    if (!b->refused || backend_connecting(b))
        return;
    while (b->wait_head) {
        pstream_t *ps = wait_pop(b);
        out_abort(ps, SP_ABORT_UNAVAILABLE, 503,
                  "backend refused the connection");
    }
}

static void stream_start_on_link(pstream_t *ps)
{
    pbackend_t *b = &P.backends[ps->backend];
    plink_t *pl = link_pick(b);
    if (pl == NULL) {
        wait_push(ps);
        /* A refusing backend: try again now (at most every retry
         * interval, whatever the backoff says: the backend may be back),
         * and answer 503 at once if it still refuses. */
        if (b->refused && !backend_connecting(b)) {
            int64_t floor = (int64_t)b->conf->retry_ms * SP_NSEC_PER_MSEC;
            if (sp_now_ns() - b->last_try_ns >= floor)
                backend_connect(b, (int)(b - P.backends));
            backend_fail_waiting(b);
        }
        return;
    }
    int rc = sp_link_send(&pl->l, SP_FT_REQUEST_HEAD, ps->slot, ps->seq,
                          ps->head, ps->head_len);
    if (rc == SP_EAGAIN) {
        pl->blocked = 1;
        wait_push(ps);
        return;
    }
    if (rc < 0) {
        out_abort(ps, SP_ABORT_INTERNAL, 502, "request head refused");
        return;
    }
    ps->link = pl;
    ps->head_sent = 1;
    ps->send_credit = pl->l.peer_initial_window;
    ps->resp_window = b->lcfg.initial_window;
    ps->credit_owed = 0;
    ps->lnext = pl->streams;
    ps->lprev = NULL;
    if (pl->streams)
        pl->streams->lprev = ps;
    pl->streams = ps;
    pl->nstreams++;
    if (pl->shared_idx >= 0)
        b->sh->link[pl->shared_idx].streams = pl->nstreams;
    sp_fetch_add(&b->sh->outstanding, 1);
    uint32_t st = SP_SLOT_QUEUED;
    sp_slot_transition(P.slots, ps->slot, st, SP_SLOT_SENT, NULL);
    stream_forward_body(ps);
}

/* A new request in slot i (state QUEUED with a fresh sequence). */
static void stream_begin(uint32_t i)
{
    pstream_t *ps = &P.streams[i];
    sp_slot_t *s = sp_slot(P.slots, i);
    ps->active = 1;
    ps->slot = i;
    ps->seq = s->seq;
    ps->backend = (int)s->backend;
    ps->link = NULL;
    ps->retried = 0;
    ps->head_sent = ps->accepted = ps->req_done = ps->resp_done = 0;
    ps->pend = ps->pend_last = NULL;
    ps->t_wait = 0;
    ps->stall_ticks = 0;
    ps->wnext = ps->lnext = ps->lprev = NULL;
    if (ps->backend < 0 || ps->backend >= P.conf->nbackends) {
        ps->backend = 0;
        out_abort(ps, SP_ABORT_INTERNAL, 500, "no such backend");
        return;
    }
    pbackend_t *b = &P.backends[ps->backend];
    sp_stat_add(&b->sh->requests, 1);
    ps->deadline = sp_now_ns() +
                   (int64_t)b->conf->timeout_ms * SP_NSEC_PER_MSEC;
    sp_ring_msg_t msg;
    struct iovec iov[64];
    int n = sp_ring_peek(&ps->in, &msg, iov, 64);
    if (n < 0 || msg.type != SP_FT_REQUEST_HEAD || msg.remaining == 0 ||
        msg.remaining > (1u << 24)) {
        if (n >= 0) {
            sp_ring_consume(&ps->in, msg.remaining);
            wake_later(ps);
        }
        /* Only a proxy child that died after taking the head (while the
         * request waited for a link) leaves a slot like this; nothing
         * reached a backend, so this is "try again", not a server error. */
        out_abort(ps, SP_ABORT_UNAVAILABLE, 503,
                  "request lost in a proxy child restart");
        return;
    }
    ps->head = malloc(msg.remaining);
    if (ps->head == NULL) {
        out_abort(ps, SP_ABORT_INTERNAL, 503, "out of memory");
        return;
    }
    size_t got = 0;
    for (int k = 0; k < n; k++) {
        memcpy(ps->head + got, iov[k].iov_base, iov[k].iov_len);
        got += iov[k].iov_len;
    }
    ps->head_len = (uint32_t)got;
    sp_ring_consume(&ps->in, msg.remaining);
    wake_later(ps);
    stream_start_on_link(ps);
}

/* Slot i wants attention (ready bit). */
static void slot_event(uint32_t i)
{
    pstream_t *ps = &P.streams[i];
    sp_slot_t *s = sp_slot(P.slots, i);
    uint32_t st = sp_mark_get(&s->state);
    if (ps->active && ps->seq != s->seq) {
        /* The owner moved on (reclaim raced us): drop the old stream. */
        if (ps->link)
            sp_link_send_abort(&ps->link->l, ps->slot, ps->seq,
                               SP_ABORT_CANCEL, 0, "slot reused");
        ps->resp_done = 1;
        stream_try_finish(ps);
        ps->active = 0;
    }
    if (st == SP_SLOT_CANCELLED) {
        if (ps->active) {
            if (ps->link && !ps->resp_done)
                sp_link_send_abort(&ps->link->l, ps->slot, ps->seq,
                                   SP_ABORT_CANCEL, 0, "client gone");
            while (ps->pend) {
                chunk_t *c = ps->pend;
                ps->pend = c->next;
                free(c);
            }
            ps->pend_last = NULL;
            ps->resp_done = 1;
            stream_try_finish(ps);
        }
        sp_slot_transition(P.slots, i, SP_SLOT_CANCELLED, SP_SLOT_DONE, NULL);
        return;
    }
    if (!ps->active) {
        if (st == SP_SLOT_QUEUED)
            stream_begin(i);
        return;
    }
    if (ps->pend)
        out_flush(ps); /* the handler made room in the output ring */
    stream_forward_body(ps);
    stream_try_finish(ps);
}

/* ---- frames from the backends ------------------------------------------ */

static int link_frame(void *arg, sp_link_t *l, const sp_frame_t *f)
{
    plink_t *pl = arg;
    uint32_t i = f->hdr.stream;
    if (i >= P.slots->nslots)
        return 0;
    pstream_t *ps = &P.streams[i];
    if (!ps->active || ps->seq != f->hdr.gen || ps->link != pl)
        return 0; /* late frame of a stream that ended */
    switch (f->hdr.type) {
    case SP_FT_ACCEPT:
        ps->accepted = 1;
        free(ps->head);
        ps->head = NULL;
        if (stream_current(ps))
            sp_slot_transition(P.slots, i, SP_SLOT_SENT, SP_SLOT_ACCEPTED,
                               NULL);
        break;
    case SP_FT_RESPONSE_HEAD:
        if (stream_current(ps)) {
            uint32_t st = sp_mark_get(&sp_slot(P.slots, i)->state);
            if (st == SP_SLOT_SENT || st == SP_SLOT_ACCEPTED)
                sp_slot_transition(P.slots, i, st, SP_SLOT_RESPONDING, NULL);
        }
        out_push(ps, SP_FT_RESPONSE_HEAD, f->payload, f->hdr.len);
        break;
    case SP_FT_BODY:
        if ((int64_t)f->hdr.len > ps->resp_window) {
            snprintf(l->err, sizeof(l->err),
                     "stream %u: BODY over the granted window", i);
            return SP_EPROTO;
        }
        ps->resp_window -= f->hdr.len;
        if (f->hdr.len)
            out_push(ps, SP_FT_BODY, f->payload, f->hdr.len);
        break;
    case SP_FT_END:
        ps->resp_done = 1;
        out_push(ps, SP_FT_END, NULL, 0);
        if (!ps->req_done)
            ps->req_done = 1; /* the backend needs no more body */
        stream_try_finish(ps);
        break;
    case SP_FT_ABORT: {
        sp_abort_t a;
        if (sp_abort_decode(f->payload, f->hdr.len, &a) < 0) {
            a.code = SP_ABORT_INTERNAL;
            a.status = 502;
            a.reason = sp_str("malformed abort");
        }
        /* Refused before a worker took it: safe to try another link. */
        if ((a.code == SP_ABORT_SHUTDOWN || a.code == SP_ABORT_UNAVAILABLE) &&
            !ps->accepted && ps->head != NULL && !ps->retried &&
            sp_slot_replayable(sp_slot(P.slots, i))) {
            stream_unlink(ps);
            ps->retried = 1;
            ps->head_sent = 0;
            sp_stat_add(&P.backends[ps->backend].sh->retries, 1);
            uint32_t st = sp_mark_get(&sp_slot(P.slots, i)->state);
            if (st == SP_SLOT_SENT)
                sp_slot_transition(P.slots, i, st, SP_SLOT_QUEUED, NULL);
            stream_start_on_link(ps);
            break;
        }
        stream_unlink(ps); /* the backend forgot it already */
        out_abort(ps, a.code, a.status ? a.status : 502, a.reason.ptr);
        break;
    }
    case SP_FT_CREDIT: {
        uint32_t inc;
        if (sp_credit_decode(f->payload, f->hdr.len, &inc) == 0) {
            ps->send_credit += inc;
            stream_forward_body(ps);
        }
        break;
    }
    }
    return 0;
}

/* ---- links ---------------------------------------------------------------*/

static void link_set_events(plink_t *pl, int out)
{
    out = sp_link_pollout(&pl->l, out);
    if (pl->want_out == out && pl->in_epoll)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                             .data.ptr = pl};
    epoll_ctl(P.ep, pl->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, pl->l.fd,
              &ev);
    pl->in_epoll = 1;
    pl->want_out = out;
}

static void link_shared_state(plink_t *pl, int state)
{
    pl->state = state;
    if (pl->shared_idx >= 0) {
        spm_link_shared_t *ls =
            &P.backends[pl->backend].sh->link[pl->shared_idx];
        ls->state = (uint32_t)state;
        if (state == SPM_LINK_UP)
            ls->up_since_ns = sp_now_ns();
    }
    uint32_t up = 0;
    for (plink_t *x = P.backends[pl->backend].links; x; x = x->next)
        if (x->state == SPM_LINK_UP)
            up++;
    P.backends[pl->backend].sh->links_up = up;
}

static int shared_idx_free(pbackend_t *b)
{
    for (int k = 0; k < SPM_MAX_LINKS; k++) {
        int used = 0;
        for (plink_t *x = b->links; x; x = x->next)
            if (x->shared_idx == k)
                used = 1;
        if (!used)
            return k;
    }
    return -1;
}

/* The link is gone: replay or fail its streams, schedule a reconnect. */
static void link_close(plink_t *pl, const char *why)
{
    pbackend_t *b = &P.backends[pl->backend];
    if (why)
        plog("SPM0201", "backend %s: link closed: %s", b->conf->name, why);
    if (pl->shared_idx >= 0) {
        spm_link_shared_t *ls = &b->sh->link[pl->shared_idx];
        ls->state = SPM_LINK_DOWN;
        ls->streams = 0;
        if (why)
            ls->failures++;
    }
    pl->state = SPM_LINK_DOWN;
    pl->dead = 1;
    for (plink_t **pp = &b->links; *pp; pp = &(*pp)->next)
        if (*pp == pl) {
            *pp = pl->next;
            break;
        }
    uint32_t up = 0;
    for (plink_t *x = b->links; x; x = x->next)
        if (x->state == SPM_LINK_UP)
            up++;
    b->sh->links_up = up;
    while (pl->streams) {
        pstream_t *ps = pl->streams;
        stream_unlink(ps);
        if (!ps->accepted && ps->head != NULL && !ps->retried &&
            stream_current(ps) && sp_slot_replayable(sp_slot(P.slots, ps->slot))) {
            ps->retried = 1;
            ps->head_sent = 0;
            sp_stat_add(&b->sh->retries, 1);
            uint32_t st = sp_mark_get(&sp_slot(P.slots, ps->slot)->state);
            if (st == SP_SLOT_SENT)
                sp_slot_transition(P.slots, ps->slot, st, SP_SLOT_QUEUED,
                                   NULL);
            wait_push(ps); /* started when a link is usable */
        } else {
            out_abort(ps, SP_ABORT_UNAVAILABLE, 502, "link to backend lost");
        }
    }
    if (pl->in_epoll)
        epoll_ctl(P.ep, EPOLL_CTL_DEL, pl->l.fd, NULL);
    sp_link_free(&pl->l);
    pl->gnext = P.graveyard;
    P.graveyard = pl;
}

/* A link of b is up or on its way up. */
static int backend_connecting(const pbackend_t *b)
{
    for (const plink_t *pl = b->links; pl; pl = pl->next)
        if (pl->state == SPM_LINK_CONNECTING ||
            pl->state == SPM_LINK_HANDSHAKE || pl->state == SPM_LINK_UP)
            return 1;
    return 0;
}

static void backend_connect(pbackend_t *b, int bi)
{
    plink_t *pl = calloc(1, sizeof(*pl));
    if (pl == NULL)
        return;
    pl->kind = EV_LINK;
    pl->backend = bi;
    pl->shared_idx = shared_idx_free(b);
    b->last_try_ns = sp_now_ns();
    int fd = sp_addr_connect(&b->conf->addr);
    if (fd < 0)
        b->refused = 1; /* refused, no such socket, unreachable... */
    int shm = b->conf->addr.kind == SP_ADDR_SHM;
    int rc = fd < 0 ? SP_ESYS
             : shm  ? sp_link_init_shm(&pl->l, fd, 1, SP_SHMLINK_RING_DEFAULT,
                                       &b->lcfg)
                    : sp_link_init(&pl->l, fd, 1, &b->lcfg);
    if (rc < 0) {
        if (fd >= 0 && !shm) /* sp_link_init_shm closed it */
            close(fd);
        if (pl->shared_idx >= 0)
            b->sh->link[pl->shared_idx].failures++;
        free(pl);
        b->next_try_ns = sp_now_ns() + b->backoff_ms * SP_NSEC_PER_MSEC;
        b->backoff_ms = b->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
                                                           : b->backoff_ms * 2;
        backend_fail_waiting(b);
        return;
    }
    pl->next = b->links;
    b->links = pl;
    pl->connect_deadline = sp_now_ns() +
                           (int64_t)b->conf->connect_timeout_ms *
                               SP_NSEC_PER_MSEC;
    pl->l.last_rx_ns = sp_now_ns();
    if (pl->shared_idx >= 0)
        b->sh->link[pl->shared_idx].connects++;
    /* A shm: link's socket connected at once (a Unix socket does): the
     * handshake runs over the rings from here. */
    link_shared_state(pl, shm ? SPM_LINK_HANDSHAKE : SPM_LINK_CONNECTING);
    link_set_events(pl, 1);
}

/* Keep `links` usable links per backend. */
static void backends_maintain(void)
{
    int64_t now = sp_now_ns();
    for (int bi = 0; bi < P.conf->nbackends; bi++) {
        pbackend_t *b = &P.backends[bi];
        int usable = 0;
        for (plink_t *pl = b->links; pl; pl = pl->next)
            if (pl->state != SPM_LINK_DRAINING && !pl->l.goaway_rx)
                usable++;
        while (!P.stopping && usable < b->conf->links && now >= b->next_try_ns) {
            int before = 0;
            for (plink_t *pl = b->links; pl; pl = pl->next)
                before++;
            backend_connect(b, bi);
            int after = 0;
            for (plink_t *pl = b->links; pl; pl = pl->next)
                after++;
            if (after == before)
                break; /* failed: backoff set */
            usable++;
        }
    }
}

/* Streams waiting for a link get one if any is usable now. */
static void backend_dispatch_waiting(pbackend_t *b)
{
    while (b->wait_head && link_pick(b) != NULL) {
        pstream_t *ps = wait_pop(b);
        if (!stream_current(ps)) {
            ps->resp_done = 1;
            stream_try_finish(ps);
            continue;
        }
        stream_start_on_link(ps);
        if (ps->t_wait) /* went back to waiting: link queue full */
            break;
    }
}

static void link_event(plink_t *pl, uint32_t events)
{
    pbackend_t *b = &P.backends[pl->backend];
    if (pl->state == SPM_LINK_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (sp_net_connect_result(pl->l.fd) < 0) {
            char why[160];
            snprintf(why, sizeof(why), "connect to %.100s: %.40s",
                     b->conf->address,
                     strerror(errno));
            link_close(pl, b->backoff_ms >= MAX_BACKOFF_MS ? NULL : why);
            b->next_try_ns = sp_now_ns() + b->backoff_ms * SP_NSEC_PER_MSEC;
            b->backoff_ms = b->backoff_ms * 2 > MAX_BACKOFF_MS
                                ? MAX_BACKOFF_MS
                                : b->backoff_ms * 2;
            b->refused = 1;
            backend_fail_waiting(b);
            return;
        }
        link_shared_state(pl, SPM_LINK_HANDSHAKE);
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int rc = sp_link_on_readable(&pl->l, link_frame, pl);
        if (rc < 0) {
            if (pl->state != SPM_LINK_UP && pl->state != SPM_LINK_DRAINING) {
                /* Refused during the handshake (e.g. a wrong secret):
                 * back off as for a failed connect. */
                b->next_try_ns = sp_now_ns() + b->backoff_ms * SP_NSEC_PER_MSEC;
                b->backoff_ms = b->backoff_ms * 2 > MAX_BACKOFF_MS
                                    ? MAX_BACKOFF_MS
                                    : b->backoff_ms * 2;
            }
            char why[200];
            snprintf(why, sizeof(why), "%.150s (%.40s)", pl->l.err,
                     sp_strerror(rc));
            sp_link_flush(&pl->l);
            /* A backend that said GOAWAY and then closed is stopping or
             * reloading: expected, not an error worth a log line. */
            int quiet = rc == SP_ECLOSED && pl->l.goaway_rx;
            link_close(pl, quiet ? NULL : why);
            return;
        }
        if (pl->state == SPM_LINK_HANDSHAKE && pl->l.state == SP_LINK_UP) {
            link_shared_state(pl, SPM_LINK_UP);
            b->backoff_ms = b->conf->retry_ms;
            b->refused = 0;
            backend_dispatch_waiting(b);
        }
        if (pl->l.goaway_rx && pl->state == SPM_LINK_UP) {
            link_shared_state(pl, SPM_LINK_DRAINING);
            backends_maintain(); /* open the replacement now */
        }
    }
}

static void links_flush(void)
{
    for (int bi = 0; bi < P.conf->nbackends; bi++) {
        pbackend_t *b = &P.backends[bi];
        plink_t *next;
        for (plink_t *pl = b->links; pl; pl = next) {
            next = pl->next;
            if (pl->state == SPM_LINK_CONNECTING)
                continue;
            if (pl->shared_idx >= 0) {
                spm_link_shared_t *ls = &b->sh->link[pl->shared_idx];
                ls->frames_in = pl->l.frames_in;
                ls->frames_out = pl->l.frames_out;
                ls->bytes_in = pl->l.bytes_in;
                ls->bytes_out = pl->l.bytes_out;
                ls->rtt_ns = pl->l.rtt_ns;
            }
            int rc = sp_link_pending(&pl->l) ? sp_link_flush(&pl->l) : 0;
            if (rc < 0 && rc != SP_EAGAIN) {
                link_close(pl, "write failed");
                continue;
            }
            link_set_events(pl, rc == SP_EAGAIN);
            if (rc == 0 && pl->blocked) {
                pl->blocked = 0;
                pstream_t *sn;
                for (pstream_t *ps = pl->streams; ps; ps = sn) {
                    sn = ps->lnext;
                    stream_forward_body(ps);
                }
                backend_dispatch_waiting(b);
                /* Write what they queued now: a shm: link is never
                 * writable, so EPOLLOUT would not come for it. */
                rc = sp_link_pending(&pl->l) ? sp_link_flush(&pl->l) : 0;
                if (rc < 0 && rc != SP_EAGAIN) {
                    link_close(pl, "write failed");
                    continue;
                }
                link_set_events(pl, rc == SP_EAGAIN);
            }
            /* A drained link with nothing left closes. */
            if (pl->state == SPM_LINK_DRAINING && pl->nstreams == 0 &&
                sp_link_pending(&pl->l) == 0)
                link_close(pl, NULL);
        }
    }
}

/* ---- time --------------------------------------------------------------- */

static void on_reclaim(void *arg, uint32_t i, uint32_t state, uint32_t seq)
{
    (void)arg;
    (void)state;
    pstream_t *ps = &P.streams[i];
    if (!ps->active || ps->seq != seq)
        return;
    if (ps->link)
        sp_link_send_abort(&ps->link->l, i, seq, SP_ABORT_CANCEL, 0,
                           "httpd child died");
    stream_unlink(ps);
    if (ps->t_wait)
        wait_remove(ps);
    while (ps->pend) {
        chunk_t *c = ps->pend;
        ps->pend = c->next;
        free(c);
    }
    ps->pend_last = NULL;
    free(ps->head);
    ps->head = NULL;
    ps->active = 0;
}

static void tick(void)
{
    int64_t now = sp_now_ns();
    backends_maintain();
    for (int bi = 0; bi < P.conf->nbackends; bi++) {
        pbackend_t *b = &P.backends[bi];
        int64_t iv = (int64_t)b->conf->ping_interval_ms * SP_NSEC_PER_MSEC;
        plink_t *next;
        for (plink_t *pl = b->links; pl; pl = next) {
            next = pl->next;
            if (pl->state == SPM_LINK_CONNECTING ||
                pl->state == SPM_LINK_HANDSHAKE) {
                if (now > pl->connect_deadline)
                    link_close(pl, "connect/handshake timed out");
                continue;
            }
            if (now - pl->l.last_rx_ns > 3 * iv)
                link_close(pl, "backend silent for 3 ping intervals");
            else if (now - pl->l.last_rx_ns > iv)
                sp_link_ping(&pl->l);
        }
        /* Streams waiting for a link too long: 503. */
        int64_t limit = (int64_t)b->conf->connect_timeout_ms * SP_NSEC_PER_MSEC;
        while (b->wait_head && now - b->wait_head->t_wait > limit) {
            pstream_t *ps = wait_pop(b);
            out_abort(ps, SP_ABORT_UNAVAILABLE, 503, "backend unreachable");
        }
    }
    /* Request timeouts and stalled output. */
    for (uint32_t i = 0; i < P.slots->nslots; i++) {
        pstream_t *ps = &P.streams[i];
        if (!ps->active)
            continue;
        if (!ps->resp_done && now > ps->deadline) {
            if (ps->link)
                sp_link_send_abort(&ps->link->l, i, ps->seq, SP_ABORT_TIMEOUT,
                                   0, "request timeout");
            stream_unlink(ps);
            if (ps->t_wait)
                wait_remove(ps);
            out_abort(ps, SP_ABORT_TIMEOUT, 504, "backend request timeout");
        } else if (ps->pend) {
            /* Output waiting while the ring has room for it, two ticks in a
             * row and with no ready bit from the handler: a missed wake-up
             * (one tick could fall between the handler's consume and its
             * notification).  Count it, then move the data. */
            uint32_t need = (ps->pend->len + ps->out.seg_size - 1) /
                            ps->out.seg_size;
            int room = ps->out.nseg - sp_ring_used(&ps->out) >=
                       (need ? need : 1);
            int told = (sp_load_relaxed(&P.slots->bitmap[i / 64]) >>
                        (i % 64)) & 1;
            if (!stream_current(ps)) {
                /* The handler let go: drop what waits, end the stream. */
                ps->stall_ticks = 0;
                stream_try_finish(ps);
                if (ps->active && ps->pend)
                    out_flush(ps);
            } else if (!room || told) {
                ps->stall_ticks = 0;
            } else if (++ps->stall_ticks >= 2) {
                ps->stall_ticks = 0;
                sp_stat_add(&P.sh->output_stalls, 1);
                stream_try_finish(ps);
                if (ps->active && ps->pend)
                    out_flush(ps);
            }
        } else {
            ps->stall_ticks = 0;
        }
    }
    if (now >= P.next_reclaim) {
        P.next_reclaim = now + 500 * SP_NSEC_PER_MSEC;
        sp_slots_reclaim(P.slots, on_reclaim, NULL);
    }
    spm_sess_tick(now); /* session store sweep, once a second */
    if (getppid() != P.parent.pid)
        P.stopping = 1;
}

/* Slots that a previous proxy child left mid-flight cannot be resumed. */
static void adopt_slots(void)
{
    for (uint32_t i = 0; i < P.slots->nslots; i++) {
        sp_slot_t *s = sp_slot(P.slots, i);
        uint32_t st = sp_mark_get(&s->state);
        if (st == SP_SLOT_SENT || st == SP_SLOT_ACCEPTED ||
            st == SP_SLOT_RESPONDING) {
            pstream_t *ps = &P.streams[i];
            ps->active = 1;
            ps->slot = i;
            ps->seq = s->seq;
            ps->backend = s->backend < (uint32_t)P.conf->nbackends
                              ? (int)s->backend
                              : 0;
            out_abort(ps, SP_ABORT_INTERNAL, 502, "proxy child restarted");
        } else if (st == SP_SLOT_CANCELLED) {
            sp_slot_transition(P.slots, i, st, SP_SLOT_DONE, NULL);
        } else if (st == SP_SLOT_QUEUED) {
            sp_slots_notify(P.slots, i);
        }
    }
}

static void graveyard_free(void)
{
    while (P.graveyard) {
        plink_t *pl = P.graveyard;
        P.graveyard = pl->gnext;
        free(pl);
    }
}

void spm_proxy_main(const spm_conf_t *conf, sp_slots_t *slots,
                    spm_shared_t *shared, sp_ident_t parent)
{
    memset(&P, 0, sizeof(P));
    P.conf = conf;
    P.slots = slots;
    P.sh = shared;
    P.parent = parent;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    P.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    P.ep = epoll_create1(EPOLL_CLOEXEC);
    P.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    P.streams = calloc(slots->nslots, sizeof(*P.streams));
    P.wakes = calloc(slots->nslots, sizeof(*P.wakes));
    P.poll = (sp_spin_t)SP_SPIN_POLL(conf->poll_us * 1000u);
    if (P.sigfd < 0 || P.ep < 0 || P.timerfd < 0 || P.streams == NULL ||
        P.wakes == NULL) {
        plog("SPM0202", "proxy child cannot start: %s", strerror(errno));
        _exit(70);
    }
    for (uint32_t i = 0; i < slots->nslots; i++) {
        P.streams[i].slot = i;
        sp_slot_ring_in(slots, i, &P.streams[i].in);
        sp_slot_ring_out(slots, i, &P.streams[i].out);
        sp_ring_defer_wake(&P.streams[i].in, 1);
        sp_ring_defer_wake(&P.streams[i].out, 1);
    }
    for (int bi = 0; bi < conf->nbackends; bi++) {
        pbackend_t *b = &P.backends[bi];
        b->conf = &conf->backends[bi];
        b->sh = &shared->backends[bi];
        /* Ours alone to count; a predecessor that died left its figure. */
        sp_store_relaxed(&b->sh->outstanding, 0);
        b->backoff_ms = b->conf->retry_ms > 0 ? b->conf->retry_ms : 250;
        b->lcfg.secret = b->conf->secret_len ? b->conf->secret : NULL;
        b->lcfg.secret_len = b->conf->secret_len;
        b->lcfg.max_payload = conf->max_payload;
        /* What the backend may send ahead per stream: four output rings'
         * worth, so the backend, the proxy and the handler work in
         * parallel; what does not fit in the ring waits in the stream's
         * pending list, so this bounds the proxy's memory per stream. */
        b->lcfg.initial_window = 4 * conf->buffer_size;
        b->lcfg.max_streams = slots->nslots;
        b->lcfg.node = "mod_slotproxy";
    }
    struct itimerspec its = {.it_interval = {0, TICK_NS},
                             .it_value = {0, TICK_NS}};
    timerfd_settime(P.timerfd, 0, &its, NULL);
    P.ev_doorbell.kind = EV_DOORBELL;
    P.ev_timer.kind = EV_TIMER;
    P.ev_signal.kind = EV_SIGNAL;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = &P.ev_doorbell;
    epoll_ctl(P.ep, EPOLL_CTL_ADD, slots->doorbell_fd, &ev);
    ev.data.ptr = &P.ev_timer;
    epoll_ctl(P.ep, EPOLL_CTL_ADD, P.timerfd, &ev);
    ev.data.ptr = &P.ev_signal;
    epoll_ctl(P.ep, EPOLL_CTL_ADD, P.sigfd, &ev);

    sp_slots_set_proxy(slots);
    sp_ident_t self = sp_ident_self();
    shared->proxy_start = self.start;
    sp_store_release(&shared->proxy_pid, self.pid);
    adopt_slots();
    backends_maintain();

    struct epoll_event evs[64];
    uint32_t ready[256];
    int64_t stop_deadline = 0;
    for (;;) {
        uint32_t n;
        while ((n = sp_slots_ready_take(slots, ready, 256)) > 0)
            for (uint32_t k = 0; k < n; k++)
                slot_event(ready[k]);
        links_flush();
        wakes_flush();
        graveyard_free();
        if (P.stopping) {
            int busy = 0;
            for (uint32_t i = 0; i < slots->nslots; i++)
                if (P.streams[i].active)
                    busy = 1;
            if (stop_deadline == 0)
                stop_deadline = sp_now_ns() + 5 * SP_NSEC_PER_SEC;
            if (!busy || sp_now_ns() > stop_deadline)
                break;
        }
        /* With requests out on a link, their answers usually come back
         * sooner than a sleep and a wake-up take (docs/decisions.md). */
        int ne = 0;
        if (P.conf->nbackends > 0 && streams_on_links() &&
            (ne = sp_slots_poll_events(slots, P.ep, evs, 64, &P.poll)) != 0) {
            if (ne < 0)
                ne = 0; /* only ready bits: the top of the loop takes them */
        } else {
            int timeout = sp_slots_proxy_idle(slots) ? 0 : -1;
            ne = epoll_wait(P.ep, evs, 64, timeout);
        }
        sp_slots_proxy_awake(slots, 0);
        for (int e = 0; e < ne; e++) {
            ev_tag_t *t = evs[e].data.ptr;
            switch (t->kind) {
            case EV_LINK: {
                plink_t *pl = (plink_t *)t;
                if (!pl->dead)
                    link_event(pl, evs[e].events);
                break;
            }
            case EV_TIMER: {
                uint64_t x;
                while (read(P.timerfd, &x, sizeof(x)) > 0)
                    ;
                tick();
                break;
            }
            case EV_SIGNAL: {
                struct signalfd_siginfo si;
                while (read(P.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    P.stopping = 1;
                break;
            }
            case EV_DOORBELL:
                sp_slots_proxy_awake(slots, 1); /* drain it */
                break;
            default:
                break;
            }
        }
    }
    for (int bi = 0; bi < conf->nbackends; bi++)
        while (P.backends[bi].links)
            link_close(P.backends[bi].links, NULL);
    wakes_flush(); /* handlers waiting for the ABORTs just written */
    graveyard_free();
    _exit(0);
}
