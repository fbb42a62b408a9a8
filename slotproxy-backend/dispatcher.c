/*
 * dispatcher.c - slotproxy-backend's dispatcher: one epoll loop that owns
 * the listeners, the links, the streams, the queue and the worker pool.
 *
 * Objects:
 *   link    an accepted connection from a frontend (sp_link_t + its
 *           streams); many per frontend are allowed.
 *   stream  one request: (link, stream id, generation).  Found through a
 *           hash on (link, id).  QUEUED while it waits for a worker,
 *           ASSIGNED once it is in a worker's slot.
 *   worker  a process owning slot i (backend.h draws the protocol).
 *
 * Flow control, both directions per stream:
 *   request body   the frontend may send `InitialWindow` bytes; each BODY
 *                  frame is written into the worker's out ring, or kept in
 *                  the stream's pending list when the ring is full (or no
 *                  worker yet); a CREDIT for those bytes goes back only
 *                  when they enter the ring.  So memory per stream is
 *                  bounded by the window, and a worker that does not read
 *                  stalls only its own stream.
 *   response body  we may send as many BODY bytes as the frontend granted
 *                  (its initial window + CREDITs).  Without credit we stop
 *                  draining that worker's in ring; the worker then blocks
 *                  in write() — the slow client's pace reaches the app.
 *
 * Errors are answered on the stream with ABORT carrying an HTTP status
 * hint (the frontend turns it into the HTTP answer): 503 queue full or
 * queue timeout or shutting down, 504 RequestTimeout (the worker is
 * killed and replaced), 502 worker crash.  A link that breaks the
 * protocol is closed and logged; no other link or stream is touched.
 *
 * Signals arrive through a signalfd (CHLD, TERM, INT, HUP), time through a
 * 100 ms timerfd; the loop never blocks anywhere else.
 */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sp_atomic.h"
#include "sp_auth.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "sp_head.h"
#include "sp_mark.h"

enum { EV_LISTENER = 1, EV_LINK, EV_DOORBELL, EV_SIGNAL, EV_TIMER };

typedef struct ev_tag {
    int kind;
} ev_tag_t;

typedef struct listener {
    int kind; /* EV_LISTENER */
    int fd;
    int reused; /* listeners_open took it over from the old list */
    sp_addr_t addr;
    char name[300];
    struct listener *next;
} listener_t;

typedef struct blink {
    int kind; /* EV_LINK */
    sp_link_t l;
    struct blink *prev, *next;
    spb_stream_t *streams; /* every stream still tied to this link */
    int want_out;
    int blocked;     /* a stream waits for room in the output queue */
    int closing;     /* flush what is queued, then close */
    int dead;        /* closed; freed at the end of the loop iteration */
    int64_t drained_ns; /* GOAWAY sent and no stream left, since then */
    uint32_t unknown_frames; /* BODY/END for unknown streams, this tick */
    char peer[64];
} blink_t;

typedef struct chunk {
    struct chunk *next;
    uint32_t type;
    uint32_t len;
    uint8_t data[];
} chunk_t;

enum { S_QUEUED = 1, S_ASSIGNED };

struct spb_stream {
    blink_t *link; /* NULL once the link is gone */
    uint32_t id, gen;
    int state;
    spb_worker_t *worker;
    uint8_t *head;
    uint32_t head_len;
    chunk_t *pend, *pend_last;
    int64_t send_credit; /* response BODY bytes we may still send */
    int64_t recv_window; /* request BODY bytes the frontend may still send */
    unsigned end_rx : 1, head_tx : 1, end_tx : 1, accept_tx : 1,
        aborted : 1, hashed : 1, unaccepted : 1;
    int64_t t_start;
    int64_t deadline; /* queue deadline, then request deadline */
    spb_stream_t *hnext;
    spb_stream_t *lprev, *lnext;
    spb_stream_t *qprev, *qnext;
};

#define HASH_BUCKETS 16384
#define TICK_NS (100 * 1000000LL)
/* A worker does not wake us when it takes a request: ACCEPT goes out with
 * the first response bytes, or at the latest this long after the worker
 * took the request (accept_scan()). */
#define ACCEPT_DELAY_NS (100 * 1000LL)
#define MAX_UNKNOWN_FRAMES 1024
/* Request-head limits: the worker's (worker.c W_MAX_FIELDS, 1 MiB). */
#define HEAD_MAX_FIELDS 1000
#define HEAD_MAX_FIELD_LEN (1u << 20)

static struct {
    const char *config_path;
    spb_config_t *cfg;
    uint64_t gen;
    int ep, sigfd, timerfd;
    ev_tag_t ev_doorbell, ev_signal, ev_timer;
    sp_slots_t slots;
    void *slots_mem;
    size_t slots_size;
    spb_worker_t *workers;
    int nworkers_max;
    sp_handler_t *handlers;
    size_t nhandlers;
    listener_t *listeners;
    blink_t *links;
    blink_t *graveyard; /* closed links, freed after the event batch */
    int nlinks;
    spb_stream_t *hash[HASH_BUCKETS];
    spb_stream_t *qhead, *qtail;
    int qlen;
    int nstreams;
    uint8_t secret[SP_SECRET_MAX];
    size_t secret_len;
    sp_link_config_t lcfg;
    int stopping;
    int64_t stop_deadline;
    int64_t kill_deadline;
    int64_t accept_due; /* next accept_scan(), 0 = no stream waits for it */
    int n_unaccepted;   /* assigned streams without their ACCEPT yet */
    sp_spin_t poll;     /* PollTime: sp_slots_poll_events() before sleeping */
    sp_ident_t self;
    /* counters for the log on exit */
    uint64_t n_requests, n_503, n_504, n_502;
} S;

static void stream_pump(spb_stream_t *s);
static void worker_spawn(spb_worker_t *w);

/* ---- streams ---------------------------------------------------------- */

static unsigned hash_of(const blink_t *l, uint32_t id)
{
    uintptr_t v = (uintptr_t)l >> 4;
    return (unsigned)((v * 0x9E3779B97F4A7C15ull) ^ (id * 2654435761u)) &
           (HASH_BUCKETS - 1);
}

static spb_stream_t *stream_find(blink_t *l, uint32_t id)
{
    for (spb_stream_t *s = S.hash[hash_of(l, id)]; s; s = s->hnext)
        if (s->link == l && s->id == id && s->hashed)
            return s;
    return NULL;
}

static void stream_unhash(spb_stream_t *s)
{
    if (!s->hashed || s->link == NULL)
        return;
    spb_stream_t **pp = &S.hash[hash_of(s->link, s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    s->hashed = 0;
    s->hnext = NULL;
}

static void stream_unlink_link(spb_stream_t *s)
{
    if (s->link == NULL)
        return;
    stream_unhash(s);
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        s->link->streams = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    s->lprev = s->lnext = NULL;
    s->link = NULL;
}

static void queue_remove(spb_stream_t *s)
{
    if (s->qprev)
        s->qprev->qnext = s->qnext;
    else
        S.qhead = s->qnext;
    if (s->qnext)
        s->qnext->qprev = s->qprev;
    else
        S.qtail = s->qprev;
    s->qprev = s->qnext = NULL;
    S.qlen--;
}

static void pend_free(spb_stream_t *s)
{
    while (s->pend) {
        chunk_t *c = s->pend;
        s->pend = c->next;
        free(c);
    }
    s->pend_last = NULL;
}

/* The stream no longer waits for its ACCEPT (sent, or never will be). */
static void stream_uncount(spb_stream_t *s)
{
    if (s->unaccepted) {
        s->unaccepted = 0;
        S.n_unaccepted--;
    }
}

static void stream_accepted(spb_stream_t *s)
{
    s->accept_tx = 1;
    stream_uncount(s);
}

static void stream_free(spb_stream_t *s)
{
    stream_uncount(s);
    stream_unlink_link(s);
    if (s->state == S_QUEUED)
        queue_remove(s);
    pend_free(s);
    free(s->head);
    free(s);
    S.nstreams--;
    sp_store_relaxed(&S.slots.live->streams, (uint32_t)S.nstreams);
}

/* Tell the frontend this stream failed (if it can still hear us). */
static void stream_send_abort(spb_stream_t *s, uint32_t code, uint16_t status,
                              const char *reason)
{
    if (s->link == NULL || s->end_tx)
        return;
    if (s->head_tx)
        status = 0; /* too late for an HTTP status: the client sees a cut */
    sp_link_send_abort(&s->link->l, s->id, s->gen, code, status, reason);
    s->end_tx = 1;
    stream_unhash(s); /* the frontend forgets it at once, may reuse the id */
    if (status == 503)
        S.n_503++;
    else if (status == 504)
        S.n_504++;
    else if (status == 502)
        S.n_502++;
}

static void worker_discard_in(spb_worker_t *w)
{
    sp_ring_msg_t msg;
    struct iovec iov[1];
    while (sp_ring_peek(&w->in, &msg, iov, 0) >= 0)
        sp_ring_consume(&w->in, msg.remaining);
}

/* The stream ends for us without the worker's END: frontend ABORT, link
 * gone, or our own error answer. */
static void stream_abort(spb_stream_t *s)
{
    if (s->state == S_QUEUED) {
        stream_free(s);
        return;
    }
    if (s->aborted)
        return;
    s->aborted = 1;
    stream_unhash(s); /* the frontend may reuse the id at once */
    pend_free(s);
    spb_worker_t *w = s->worker;
    sp_fetch_or(&sp_slot(&S.slots, w->slot)->flags, SP_SLOTF_ABORTED);
    /* Wake a worker blocked reading the body (best effort: if the ring is
     * full the worker is not blocked reading). */
    uint8_t ab[64];
    sp_abort_t a = {.code = SP_ABORT_CANCEL, .reason = sp_str("")};
    int n = sp_abort_encode(&a, ab, sizeof(ab));
    if (n > 0)
        sp_ring_write(&w->out, SP_FT_ABORT, ab, (size_t)n, 0);
    /* ... and one blocked writing the response. */
    worker_discard_in(w);
    /* A worker that finished already (DONE, or back to IDLE) will not
     * notify again: look at its slot on the next pass, where stream_pump()
     * finishes the stream (not here: our callers still use s). */
    sp_slots_notify(&S.slots, w->slot);
}

/* ---- workers ------------------------------------------------------------ */

static int worker_should_retire(const spb_worker_t *w)
{
    return S.stopping || w->gen != S.gen ||
           (int)w->slot >= S.cfg->workers ||
           (S.cfg->max_requests_per_worker > 0 &&
            w->served >= (uint64_t)S.cfg->max_requests_per_worker);
}

static void worker_retire(spb_worker_t *w)
{
    /* IDLE (waiting for work, or back from a request by itself) or DONE
     * (waiting for our hand-back); anything else is not ours to change. */
    uint32_t from = sp_mark_get(&sp_slot(&S.slots, w->slot)->state);
    if ((from == SP_SLOT_IDLE || from == SP_SLOT_DONE) &&
        sp_slot_transition(&S.slots, w->slot, from, SP_SLOT_CANCELLED,
                           NULL) == 0)
        w->state = SPB_W_RETIRING;
}

static void stream_assign(spb_stream_t *s, spb_worker_t *w)
{
    if (sp_ring_write(&w->out, SP_FT_REQUEST_HEAD, s->head, s->head_len, 0) <
        0) {
        stream_send_abort(s, SP_ABORT_INTERNAL, 502, "request head too large");
        stream_free(s);
        return;
    }
    free(s->head);
    s->head = NULL;
    s->state = S_ASSIGNED;
    s->worker = w;
    s->deadline = sp_now_ns() +
                  (int64_t)S.cfg->request_timeout_s * SP_NSEC_PER_SEC;
    w->stream = s;
    w->state = SPB_W_BUSY;
    w->timed_out = 0;
    int64_t now = sp_now_ns();
    sp_slot(&S.slots, w->slot)->t_claim_ns = now;
    s->unaccepted = 1;
    S.n_unaccepted++;
    if (S.accept_due == 0)
        S.accept_due = now + ACCEPT_DELAY_NS;
    /* Publishes the head; pairs with the worker's sp_slot_wait(IDLE). */
    sp_slot_transition(&S.slots, w->slot, SP_SLOT_IDLE, SP_SLOT_QUEUED, NULL);
    stream_pump(s);
}

/* A worker became idle: give it the oldest queued stream. */
static void worker_idle(spb_worker_t *w)
{
    w->state = SPB_W_IDLE;
    if (worker_should_retire(w)) {
        worker_retire(w);
        return;
    }
    if (S.qhead != NULL) {
        spb_stream_t *s = S.qhead;
        queue_remove(s);
        stream_assign(s, w);
    }
}

static spb_worker_t *worker_find_idle(void)
{
    for (int i = 0; i < S.cfg->workers && i < S.nworkers_max; i++)
        if (S.workers[i].state == SPB_W_IDLE && S.workers[i].stream == NULL &&
            !worker_should_retire(&S.workers[i]))
            return &S.workers[i];
    return NULL;
}

/* The worker said DONE (or went back to IDLE by itself) and its in ring is
 * empty: the stream is over. */
static void stream_finish(spb_stream_t *s)
{
    spb_worker_t *w = s->worker;
    if (!s->end_tx && !s->aborted)
        stream_send_abort(s, SP_ABORT_INTERNAL, 502,
                          "worker ended without a response");
    w->stream = NULL;
    s->worker = NULL;
    s->state = 0;
    stream_free(s);
    sp_ring_reset(&w->out);
    sp_ring_reset(&w->in);
    sp_slot_t *slot = sp_slot(&S.slots, w->slot);
    sp_fetch_and(&slot->flags, ~(SP_SLOTF_ABORTED | SP_SLOTF_WAS_ACCEPTED |
                                 SP_SLOTF_BODY_CONSUMED));
    w->served++;
    if (worker_should_retire(w)) {
        worker_retire(w);
        return;
    }
    /* After DONE the worker waits for this; from IDLE it is a no-op. */
    sp_slot_transition(&S.slots, w->slot, SP_SLOT_DONE, SP_SLOT_IDLE, NULL);
    worker_idle(w);
}

/* ---- moving bytes ----------------------------------------------------- */

/* Request direction: pending chunks into the worker's out ring. */
static void pend_flush(spb_stream_t *s)
{
    spb_worker_t *w = s->worker;
    if (w == NULL)
        return;
    while (s->pend) {
        chunk_t *c = s->pend;
        int rc = sp_ring_write(&w->out, c->type, c->data, c->len, 0);
        if (rc == SP_EAGAIN) {
            uint32_t segs = c->len / w->out.seg_size + 1;
            if (sp_ring_poll_writable(&w->out, segs))
                continue;
            return; /* the worker's consume will notify us */
        }
        if (rc < 0) {
            stream_send_abort(s, SP_ABORT_INTERNAL, 502, "body chunk too large");
            stream_abort(s);
            return;
        }
        if (c->type == SP_FT_BODY && c->len > 0 && s->link) {
            sp_link_send_credit(&s->link->l, s->id, s->gen, c->len);
            s->recv_window += c->len;
        }
        s->pend = c->next;
        if (s->pend == NULL)
            s->pend_last = NULL;
        free(c);
    }
    sp_ring_unpoll_writer(&w->out);
}

/* Response direction: the worker's in ring onto the link, within credit. */
static void drain_in(spb_stream_t *s)
{
    spb_worker_t *w = s->worker;
    for (;;) {
        sp_ring_msg_t msg;
        struct iovec iov[64];
        int n = sp_ring_peek(&w->in, &msg, iov, 64);
        if (n == SP_EAGAIN)
            return;
        if (n < 0) {
            SPB_ERR("SPB0201", "worker %d (slot %u): corrupt response ring",
                    (int)w->pid, w->slot);
            stream_send_abort(s, SP_ABORT_INTERNAL, 502, "corrupt ring");
            stream_abort(s);
            if (w->pid > 0) /* 0 once reaped (on_worker_exit) */
                kill(w->pid, SIGKILL);
            return;
        }
        if (s->aborted || s->link == NULL || s->end_tx) {
            sp_ring_consume(&w->in, msg.remaining);
            continue;
        }
        sp_link_t *L = &s->link->l;
        int rc = 0;
        if (!s->accept_tx) {
            /* The worker writes here only after it took the stream, but it
             * may have done so (and its whole response) after stream_pump
             * looked at WAS_ACCEPTED: ACCEPT must still come first. */
            stream_accepted(s);
            sp_link_send(L, SP_FT_ACCEPT, s->id, s->gen, NULL, 0);
        }
        switch (msg.type) {
        case SP_FT_RESPONSE_HEAD:
            if (msg.remaining > L->peer_max_payload) {
                sp_ring_consume(&w->in, msg.remaining);
                stream_send_abort(s, SP_ABORT_INTERNAL, 502,
                                  "response head larger than the frontend "
                                  "accepts");
                stream_abort(s);
                return;
            }
            rc = sp_link_sendv(L, SP_FT_RESPONSE_HEAD, s->id, s->gen, iov, n);
            if (rc == SP_EAGAIN) {
                s->link->blocked = 1;
                return;
            }
            sp_ring_consume(&w->in, msg.remaining);
            s->head_tx = 1;
            break;
        case SP_FT_BODY: {
            if (msg.remaining == 0) {
                sp_ring_consume(&w->in, 0);
                break;
            }
            int64_t k = (int64_t)msg.remaining;
            if (k > s->send_credit)
                k = s->send_credit;
            if (k > (int64_t)L->peer_max_payload)
                k = L->peer_max_payload;
            if (k <= 0)
                return; /* wait for CREDIT */
            k = (int64_t)sp_iov_trim(iov, &n, (size_t)k);
            rc = sp_link_sendv(L, SP_FT_BODY, s->id, s->gen, iov, n);
            if (rc == SP_EAGAIN) {
                s->link->blocked = 1;
                return;
            }
            sp_ring_consume(&w->in, (size_t)k);
            s->send_credit -= k;
            break;
        }
        case SP_FT_END:
            sp_ring_consume(&w->in, msg.remaining);
            rc = sp_link_send(L, SP_FT_END, s->id, s->gen, NULL, 0);
            s->end_tx = 1;
            /* Both directions done: the frontend's view has ended and it
             * may reuse the id before our worker says DONE (4.1). */
            if (s->end_rx)
                stream_unhash(s);
            break;
        case SP_FT_ABORT: {
            uint8_t buf[512];
            size_t len = msg.remaining < sizeof(buf) ? msg.remaining : 0;
            size_t got = 0;
            for (int i = 0; i < n && got < len; i++) {
                memcpy(buf + got, iov[i].iov_base, iov[i].iov_len);
                got += iov[i].iov_len;
            }
            sp_ring_consume(&w->in, msg.remaining);
            sp_abort_t a;
            if (got == len && len > 0 && sp_abort_decode(buf, len, &a) == 0)
                stream_send_abort(s, a.code, a.status, a.reason.ptr);
            else
                stream_send_abort(s, SP_ABORT_INTERNAL, 502, "worker aborted");
            break;
        }
        default:
            SPB_ERR("SPB0202", "worker %d: unexpected message type %u",
                    (int)w->pid, msg.type);
            sp_ring_consume(&w->in, msg.remaining);
            break;
        }
        if (rc < 0 && rc != SP_EAGAIN) {
            /* The link is closed or broken: it is being torn down. */
            return;
        }
    }
}

static void stream_pump(spb_stream_t *s)
{
    spb_worker_t *w = s->worker;
    if (w == NULL)
        return;
    sp_slot_t *slot = sp_slot(&S.slots, w->slot);
    if (!s->accept_tx && (sp_load_acquire(&slot->flags) &
                          SP_SLOTF_WAS_ACCEPTED)) {
        stream_accepted(s);
        if (s->link && !s->aborted)
            sp_link_send(&s->link->l, SP_FT_ACCEPT, s->id, s->gen, NULL, 0);
    }
    if (!s->aborted)
        pend_flush(s);
    if (s->worker == NULL)
        return;
    drain_in(s);
    if (s->worker == NULL)
        return;
    /* IDLE while the stream is ours: the worker finished the request by
     * itself (worker.c); read the state before the ring, which it wrote
     * before it changed the state. */
    uint32_t st = sp_mark_get(&slot->state);
    if ((st == SP_SLOT_DONE || st == SP_SLOT_IDLE) &&
        sp_ring_used(&w->in) == 0)
        stream_finish(s);
}

/* Streams whose worker took them without telling us (it notifies with its
 * first output): send their ACCEPT now.  Returns 1 if some stream still
 * waits for a worker to take it. */
static int accept_scan(void)
{
    int waiting = 0;
    for (int i = 0; i < S.nworkers_max; i++) {
        spb_stream_t *s = S.workers[i].stream;
        if (s == NULL || s->accept_tx || s->aborted || s->link == NULL)
            continue;
        if (sp_load_acquire(&sp_slot(&S.slots, S.workers[i].slot)->flags) &
            SP_SLOTF_WAS_ACCEPTED)
            stream_pump(s);
        else
            waiting = 1;
    }
    return waiting;
}

static void worker_event(spb_worker_t *w)
{
    if (w->state == SPB_W_STARTING) {
        if (sp_mark_get(&sp_slot(&S.slots, w->slot)->state) == SP_SLOT_IDLE &&
            sp_slot(&S.slots, w->slot)->owner_pid == w->pid)
            worker_idle(w);
        return;
    }
    if (w->stream)
        stream_pump(w->stream);
    else if (w->state == SPB_W_BUSY)
        w->state = SPB_W_IDLE;
}

/* ---- frames from the frontend ----------------------------------------- */

static chunk_t *chunk_new(uint32_t type, const void *data, uint32_t len)
{
    chunk_t *c = malloc(sizeof(*c) + len);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->type = type;
    c->len = len;
    if (len)
        memcpy(c->data, data, len);
    return c;
}

static void pend_push(spb_stream_t *s, chunk_t *c)
{
    if (s->pend_last)
        s->pend_last->next = c;
    else
        s->pend = c;
    s->pend_last = c;
}

static int on_request_head(blink_t *bl, const sp_frame_t *f)
{
    sp_link_t *L = &bl->l;
    if (S.stopping || L->goaway_tx) {
        sp_link_send_abort(L, f->hdr.stream, f->hdr.gen, SP_ABORT_SHUTDOWN,
                           503, "backend is draining");
        S.n_503++;
        return 0;
    }
    if (stream_find(bl, f->hdr.stream) != NULL) {
        sp_link_send_abort(L, f->hdr.stream, f->hdr.gen, SP_ABORT_PROTOCOL, 502,
                           "stream id already in use");
        return 0;
    }
    /* Check the head here, with the worker's limits, so that a malformed
     * one is refused on its stream (docs/protocol.md 3.1) before any
     * worker ACCEPTs it or logs about it. */
    static sp_kv_t kv[HEAD_MAX_FIELDS];
    sp_reqhead_t h;
    sp_head_limits_t lim = {HEAD_MAX_FIELDS, HEAD_MAX_FIELD_LEN};
    int hrc = sp_reqhead_decode(f->payload, f->hdr.len, &lim, &h, kv,
                                HEAD_MAX_FIELDS);
    if (hrc < 0) {
        SPB_INFO("SPB0307", "link from %s: stream %u: bad request head (%s)",
                 bl->peer, f->hdr.stream, sp_strerror(hrc));
        sp_link_send_abort(L, f->hdr.stream, f->hdr.gen, SP_ABORT_PROTOCOL,
                           hrc == SP_ELIMIT ? 431 : 400, "bad request head");
        return 0;
    }
    spb_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->head = malloc(f->hdr.len ? f->hdr.len : 1)) == NULL) {
        free(s);
        sp_link_send_abort(L, f->hdr.stream, f->hdr.gen, SP_ABORT_INTERNAL, 503,
                           "out of memory");
        return 0;
    }
    S.nstreams++;
    sp_store_relaxed(&S.slots.live->streams, (uint32_t)S.nstreams);
    S.n_requests++;
    memcpy(s->head, f->payload, f->hdr.len);
    s->head_len = f->hdr.len;
    s->link = bl;
    s->id = f->hdr.stream;
    s->gen = f->hdr.gen;
    s->send_credit = L->peer_initial_window;
    s->recv_window = S.cfg->initial_window;
    s->t_start = sp_now_ns();
    s->end_rx = !(h.flags & SP_REQ_BODY); /* no BODY, no END will follow */
    s->hashed = 1;
    unsigned hb = hash_of(bl, s->id);
    s->hnext = S.hash[hb];
    S.hash[hb] = s;
    s->lnext = bl->streams;
    if (bl->streams)
        bl->streams->lprev = s;
    bl->streams = s;

    spb_worker_t *w = S.qhead == NULL ? worker_find_idle() : NULL;
    if (w != NULL) {
        stream_assign(s, w);
        return 0;
    }
    if (S.qlen >= S.cfg->max_queue) {
        stream_send_abort(s, SP_ABORT_OVERLOAD, 503, "queue full");
        stream_free(s);
        return 0;
    }
    s->state = S_QUEUED;
    s->deadline = s->t_start + (int64_t)S.cfg->queue_timeout_s *
                                   SP_NSEC_PER_SEC;
    s->qprev = S.qtail;
    if (S.qtail)
        S.qtail->qnext = s;
    else
        S.qhead = s;
    S.qtail = s;
    S.qlen++;
    return 0;
}

static int link_frame(void *arg, sp_link_t *L, const sp_frame_t *f)
{
    blink_t *bl = arg;
    if (f->hdr.type == SP_FT_REQUEST_HEAD)
        return on_request_head(bl, f);
    /* Errors returned to sp_link close the link without a GOAWAY (and it
     * rewrites L->err): queue the GOAWAY ourselves while the link is up. */
    if (f->hdr.type == SP_FT_ACCEPT || f->hdr.type == SP_FT_RESPONSE_HEAD) {
        sp_link_send_goaway(L, SP_GOAWAY_PROTOCOL, "server-bound frame type");
        return SP_EPROTO;
    }
    spb_stream_t *s = stream_find(bl, f->hdr.stream);
    if (s == NULL || s->gen != f->hdr.gen) {
        /* A late frame of a stream that ended here, or nonsense.  CREDIT
         * and ABORT for it are normal (they cross our END or ABORT) and
         * ignored; BODY and END are answered, and more of them in one
         * tick than MAX_UNKNOWN_FRAMES close the link. */
        if (f->hdr.type != SP_FT_BODY && f->hdr.type != SP_FT_END)
            return 0;
        if (++bl->unknown_frames > MAX_UNKNOWN_FRAMES) {
            sp_link_send_goaway(L, SP_GOAWAY_LIMIT,
                                "too many frames for unknown streams");
            return SP_ELIMIT;
        }
        sp_link_send_abort(L, f->hdr.stream, f->hdr.gen, SP_ABORT_PROTOCOL,
                           0, "unknown stream");
        return 0;
    }
    switch (f->hdr.type) {
    case SP_FT_BODY:
    case SP_FT_END:
        if (s->end_rx) {
            stream_send_abort(s, SP_ABORT_PROTOCOL, 400, "data after END");
            stream_abort(s);
            return 0;
        }
        if (f->hdr.type == SP_FT_BODY) {
            if ((int64_t)f->hdr.len > s->recv_window) {
                stream_send_abort(s, SP_ABORT_PROTOCOL, 400,
                                  "flow-control window exceeded");
                stream_abort(s);
                return 0;
            }
            s->recv_window -= f->hdr.len;
            if (f->hdr.len == 0)
                return 0;
        } else {
            s->end_rx = 1;
            if (s->end_tx) /* the response was complete already */
                stream_unhash(s);
        }
        if (s->pend == NULL && s->worker != NULL) {
            int rc = sp_ring_write(&s->worker->out, f->hdr.type, f->payload,
                                   f->hdr.len, 0);
            if (rc == 0) {
                if (f->hdr.type == SP_FT_BODY) {
                    sp_link_send_credit(L, s->id, s->gen, f->hdr.len);
                    s->recv_window += f->hdr.len;
                }
                return 0;
            }
        }
        chunk_t *c = chunk_new(f->hdr.type, f->payload, f->hdr.len);
        if (c == NULL) {
            stream_send_abort(s, SP_ABORT_INTERNAL, 503, "out of memory");
            stream_abort(s);
            return 0;
        }
        pend_push(s, c);
        pend_flush(s);
        return 0;
    case SP_FT_ABORT:
        s->end_tx = 1; /* the frontend does not want to hear more */
        stream_abort(s);
        return 0;
    case SP_FT_CREDIT: {
        uint32_t inc = 0;
        if (sp_credit_decode(f->payload, f->hdr.len, &inc) < 0 ||
            s->send_credit + inc > SP_FRAME_WINDOW_MAX) {
            stream_send_abort(s, SP_ABORT_PROTOCOL, 0, "credit overflow");
            stream_abort(s);
            return 0;
        }
        s->send_credit += inc;
        stream_pump(s);
        return 0;
    }
    default:
        return 0;
    }
}

/* ---- links ------------------------------------------------------------ */

static void link_set_out(blink_t *bl, int on)
{
    on = sp_link_pollout(&bl->l, on);
    if (bl->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = bl};
    epoll_ctl(S.ep, EPOLL_CTL_MOD, bl->l.fd, &ev);
    bl->want_out = on;
}

static void link_close(blink_t *bl, const char *why)
{
    if (why != NULL)
        SPB_INFO("SPB0301", "link from %s closed: %s", bl->peer, why);
    while (bl->streams) {
        spb_stream_t *s = bl->streams;
        stream_unlink_link(s);
        if (s->state == S_QUEUED)
            stream_free(s);
        else
            stream_abort(s);
    }
    epoll_ctl(S.ep, EPOLL_CTL_DEL, bl->l.fd, NULL);
    sp_link_free(&bl->l);
    if (bl->prev)
        bl->prev->next = bl->next;
    else
        S.links = bl->next;
    if (bl->next)
        bl->next->prev = bl->prev;
    S.nlinks--;
    /* Later events of the current epoll batch may still point here. */
    bl->dead = 1;
    bl->prev = NULL;
    bl->next = S.graveyard;
    S.graveyard = bl;
}

static void graveyard_free(void)
{
    while (S.graveyard) {
        blink_t *bl = S.graveyard;
        S.graveyard = bl->next;
        free(bl);
    }
}

static void link_readable(blink_t *bl)
{
    int rc = sp_link_on_readable(&bl->l, link_frame, bl);
    if (rc == 0)
        return;
    if (rc == SP_ECLOSED) {
        link_close(bl, "peer closed the connection");
        return;
    }
    if (rc == SP_EAUTH)
        SPB_WARN("SPB0302", "link from %s: authentication failed: %s",
                 bl->peer, bl->l.err);
    else
        SPB_WARN("SPB0303", "link from %s: %s (%s)", bl->peer, bl->l.err,
                 sp_strerror(rc));
    sp_link_flush(&bl->l); /* one chance for the GOAWAY to leave */
    link_close(bl, NULL);
}

static void link_accept(listener_t *ls)
{
    for (;;) {
        int fd = sp_net_accept(ls->fd);
        if (fd == SP_EAGAIN)
            return;
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                SPB_ERR("SPB0304", "accept on %s: %s", ls->name,
                        strerror(errno));
            return;
        }
        if (S.nlinks >= S.cfg->max_links || S.stopping) {
            SPB_WARN("SPB0305", "refusing a link on %s: %s", ls->name,
                     S.stopping ? "stopping" : "MaxLinks reached");
            close(fd);
            continue;
        }
        blink_t *bl = calloc(1, sizeof(*bl));
        if (bl == NULL) {
            close(fd);
            continue;
        }
        if (ls->addr.kind == SP_ADDR_SHM) {
            /* The connect message is read when the socket is readable. */
            if (sp_link_init_shm(&bl->l, fd, 0, SP_SHMLINK_RING_DEFAULT,
                                 &S.lcfg) < 0) {
                SPB_WARN("SPB0308", "link on %s: %s", ls->name, bl->l.err);
                free(bl);
                continue;
            }
        } else if (sp_link_init(&bl->l, fd, 0, &S.lcfg) < 0) {
            free(bl);
            close(fd);
            continue;
        }
        bl->kind = EV_LINK;
        snprintf(bl->peer, sizeof(bl->peer), "%.63s", ls->name);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = bl};
        if (epoll_ctl(S.ep, EPOLL_CTL_ADD, bl->l.fd, &ev) < 0) {
            sp_link_free(&bl->l);
            free(bl);
            continue;
        }
        bl->l.last_rx_ns = sp_now_ns();
        bl->next = S.links;
        if (S.links)
            S.links->prev = bl;
        S.links = bl;
        S.nlinks++;
        SPB_DEBUG("SPB0306", "link accepted on %s", ls->name);
    }
}

/* Write what every link has queued; unblock streams that waited for room. */
static void links_flush(void)
{
    blink_t *next;
    for (blink_t *bl = S.links; bl; bl = next) {
        next = bl->next;
        /* Nothing queued, but streams may still wait for room: a shm:
         * link writes its queue while it reads (sp_link_on_readable), so
         * room can come without a flush here. */
        if (sp_link_pending(&bl->l) == 0 && !bl->blocked) {
            link_set_out(bl, 0);
            if (bl->closing)
                link_close(bl, "drained after GOAWAY");
            continue;
        }
        int rc = sp_link_pending(&bl->l) ? sp_link_flush(&bl->l) : 0;
        if (rc == SP_EAGAIN) {
            link_set_out(bl, 1);
        } else if (rc < 0) {
            link_close(bl, "write failed");
            continue;
        } else {
            link_set_out(bl, 0);
            if (bl->closing) {
                link_close(bl, NULL);
                continue;
            }
        }
        if (bl->blocked) {
            bl->blocked = 0;
            spb_stream_t *sn;
            for (spb_stream_t *s = bl->streams; s; s = sn) {
                sn = s->lnext;
                if (s->state == S_ASSIGNED)
                    stream_pump(s);
            }
            /* What they queued was not in the flush above: write it now
             * (a shm: link is never writable: EPOLLOUT would not come),
             * and ask for EPOLLOUT for what does not fit. */
            if (!bl->dead && sp_link_pending(&bl->l) > 0) {
                rc = sp_link_flush(&bl->l);
                if (rc < 0 && rc != SP_EAGAIN) {
                    link_close(bl, "write failed");
                    continue;
                }
                link_set_out(bl, rc == SP_EAGAIN);
            }
        }
    }
}

/* ---- listeners, privileges ------------------------------------------- */

/* Open cfg's listeners into *out, taking over (unlinking from *reuse)
 * those of the same name in *reuse; what stays in *reuse is no longer
 * configured.  On failure *reuse gets back what was taken from it. */
static int listeners_open(const spb_config_t *cfg, listener_t **out,
                          listener_t **reuse)
{
    listener_t *head = NULL;
    for (int i = 0; i < cfg->nlisten; i++) {
        char name[300];
        sp_addr_format(&cfg->listen[i], name, sizeof(name));
        listener_t *ls = NULL;
        for (listener_t **pp = reuse; pp && *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->name, name) == 0) {
                ls = *pp;
                *pp = ls->next;
                ls->reused = 1;
                break;
            }
        if (ls == NULL) {
            ls = calloc(1, sizeof(*ls));
            if (ls == NULL)
                goto fail;
            ls->kind = EV_LISTENER;
            ls->addr = cfg->listen[i];
            ls->fd = sp_addr_listen(&ls->addr, 511);
            if (ls->fd < 0) {
                SPB_ERR("SPB0401", "cannot listen on %s: %s", name,
                        strerror(errno));
                free(ls);
                goto fail;
            }
            sp_addr_format(&ls->addr, ls->name, sizeof(ls->name));
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ls};
            epoll_ctl(S.ep, EPOLL_CTL_ADD, ls->fd, &ev);
            SPB_INFO("SPB0402", "listening on %s", ls->name);
        }
        ls->next = head;
        head = ls;
    }
    *out = head;
    return 0;
fail:
    while (head) {
        listener_t *n = head->next;
        if (head->reused) {
            head->next = *reuse;
            *reuse = head;
        } else {
            close(head->fd);
            free(head);
        }
        head = n;
    }
    return -1;
}

static void listeners_close(listener_t *ls)
{
    while (ls) {
        listener_t *n = ls->next;
        epoll_ctl(S.ep, EPOLL_CTL_DEL, ls->fd, NULL);
        close(ls->fd);
        if (ls->addr.kind == SP_ADDR_UNIX || ls->addr.kind == SP_ADDR_SHM)
            unlink(ls->addr.path);
        free(ls);
        ls = n;
    }
}

static int drop_privileges(const spb_config_t *cfg)
{
    if (geteuid() != 0 || (cfg->user[0] == '\0' && cfg->group[0] == '\0'))
        return 0;
    gid_t gid = getegid();
    if (cfg->group[0]) {
        struct group *g = getgrnam(cfg->group);
        if (g == NULL) {
            SPB_ERR("SPB0403", "Group %s: no such group", cfg->group);
            return -1;
        }
        gid = g->gr_gid;
    }
    if (cfg->user[0]) {
        struct passwd *pw = getpwnam(cfg->user);
        if (pw == NULL) {
            SPB_ERR("SPB0404", "User %s: no such user", cfg->user);
            return -1;
        }
        if (!cfg->group[0])
            gid = pw->pw_gid;
        /* Unix sockets were made by root: hand them to the daemon's user
         * so frontends running as that user (httpd's www-data) connect. */
        for (listener_t *ls = S.listeners; ls; ls = ls->next)
            if ((ls->addr.kind == SP_ADDR_UNIX ||
                 ls->addr.kind == SP_ADDR_SHM) &&
                chown(ls->addr.path, pw->pw_uid, gid) < 0)
                SPB_WARN("SPB0407", "chown %s: %s", ls->addr.path,
                         strerror(errno));
        if (setgid(gid) < 0 || initgroups(cfg->user, gid) < 0 ||
            setuid(pw->pw_uid) < 0) {
            SPB_ERR("SPB0405", "cannot become %s: %s", cfg->user,
                    strerror(errno));
            return -1;
        }
    } else if (setgid(gid) < 0 || setgroups(1, &gid) < 0) {
        SPB_ERR("SPB0406", "cannot set group: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- handlers and configuration -------------------------------------- */

static int handlers_load(const spb_config_t *cfg, sp_handler_t **out,
                         size_t *nout)
{
    sp_handler_t *hs = calloc((size_t)cfg->nhandlers + 1, sizeof(*hs));
    if (hs == NULL)
        return -1;
    for (int i = 0; i < cfg->nhandlers; i++) {
        char err[512] = "";
        const spb_handler_conf_t *hc = &cfg->handlers[i];
        if (sp_handler_load(&hs[i], hc->prefix, hc->spec, hc->arg, err,
                            sizeof(err)) < 0) {
            SPB_ERR("SPB0501", "%s:%d: Handler %s %s: %s", cfg->file, hc->line,
                    hc->prefix, hc->spec, err);
            for (int k = 0; k < i; k++)
                sp_handler_unload(&hs[k]);
            free(hs);
            return -1;
        }
        sp_handler_set_cgi_timeout(&hs[i], cfg->cgi_timeout_s);
    }
    *out = hs;
    *nout = (size_t)cfg->nhandlers;
    return 0;
}

static void handlers_free(sp_handler_t *hs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sp_handler_unload(&hs[i]);
    free(hs);
}

static int secret_load(const spb_config_t *cfg)
{
    if (cfg->secret_file[0] == '\0') {
        S.secret_len = 0;
        return 0;
    }
    /* Load into a scratch buffer: on failure the running secret stays (a
     * reload must never silently drop authentication). */
    uint8_t buf[SP_SECRET_MAX];
    size_t len = 0;
    char err[512];
    if (sp_auth_load_secret(cfg->secret_file, buf, sizeof(buf), &len, err,
                            sizeof(err)) < 0) {
        SPB_ERR("SPB0502", "SecretFile: %s", err);
        return -1;
    }
    memcpy(S.secret, buf, len);
    S.secret_len = len;
    return 0;
}

static void link_config_set(const spb_config_t *cfg)
{
    memset(&S.lcfg, 0, sizeof(S.lcfg));
    S.lcfg.secret = S.secret_len ? S.secret : NULL;
    S.lcfg.secret_len = S.secret_len;
    S.lcfg.max_payload = cfg->max_payload;
    S.lcfg.initial_window = cfg->initial_window;
    S.lcfg.max_streams = (uint32_t)(cfg->server_limit + cfg->max_queue);
    S.lcfg.node = cfg->node_name;
}

/* Scheduling: the workers forked from now on inherit the policy. */
/* Scheduling and PollTime (workers take theirs when they are forked). */
static void sched_apply(const spb_config_t *cfg)
{
    if (sp_proc_sched_batch(cfg->sched_batch) < 0)
        SPB_WARN("SPB0905", "Scheduling %s: sched_setscheduler: %s",
                 cfg->sched_batch ? "batch" : "normal", strerror(errno));
    S.poll = (sp_spin_t)SP_SPIN_POLL((uint32_t)cfg->poll_us * 1000u);
}

static void reload(void)
{
    spb_config_t *nc = malloc(sizeof(*nc));
    char err[1024];
    if (nc == NULL)
        return;
    if (spb_config_load(nc, S.config_path, err, sizeof(err)) < 0 ||
        spb_config_check(nc, err, sizeof(err)) < 0) {
        SPB_ERR("SPB0601", "reload refused, keeping the running "
                           "configuration: %s", err);
        free(nc);
        return;
    }
    nc->server_limit = S.cfg->server_limit; /* fixed for our life */
    if (nc->workers > nc->server_limit) {
        SPB_ERR("SPB0602", "reload refused: Workers %d > ServerLimit %d "
                           "(ServerLimit needs a restart)",
                nc->workers, nc->server_limit);
        free(nc);
        return;
    }
    sp_handler_t *hs;
    size_t nh;
    if (handlers_load(nc, &hs, &nh) < 0) {
        SPB_ERR("SPB0603", "reload refused: a handler did not load");
        free(nc);
        return;
    }
    listener_t *nl = NULL;
    listener_t *old = S.listeners;
    S.listeners = NULL;
    if (listeners_open(nc, &nl, &old) < 0) {
        /* every old listener is still in `old` */
        listener_t *back = NULL;
        listeners_open(S.cfg, &back, &old);
        listeners_close(old); /* none, unless one could not be matched */
        S.listeners = back;
        handlers_free(hs, nh);
        free(nc);
        SPB_ERR("SPB0604", "reload refused: listeners");
        return;
    }
    listeners_close(old); /* those no longer configured */
    S.listeners = nl;
    if (secret_load(nc) < 0) {
        SPB_ERR("SPB0605", "reload: SecretFile unreadable; keeping the old "
                           "secret");
    }
    spb_log_reopen(nc->error_log, nc->log_level);
    handlers_free(S.handlers, S.nhandlers);
    S.handlers = hs;
    S.nhandlers = nh;
    free(S.cfg);
    S.cfg = nc;
    link_config_set(nc);
    sched_apply(nc);
    S.gen++;
    for (blink_t *bl = S.links; bl; bl = bl->next)
        if (!bl->l.goaway_tx)
            sp_link_send_goaway(&bl->l, SP_GOAWAY_RELOAD, "reloading");
    for (int i = 0; i < S.nworkers_max; i++) {
        spb_worker_t *w = &S.workers[i];
        if (w->state == SPB_W_IDLE)
            worker_retire(w);
        else if (w->state == SPB_W_EMPTY && i < S.cfg->workers)
            worker_spawn(w);
    }
    SPB_WARN("SPB0606", "reloaded %s (generation %llu)", S.config_path,
             (unsigned long long)S.gen);
}

/* ---- worker processes ------------------------------------------------ */

static void worker_spawn(spb_worker_t *w)
{
    pid_t pid = fork();
    if (pid < 0) {
        SPB_ERR("SPB0701", "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(S.ep);
        close(S.sigfd);
        close(S.timerfd);
        for (listener_t *ls = S.listeners; ls; ls = ls->next)
            close(ls->fd);
        for (blink_t *bl = S.links; bl; bl = bl->next)
            sp_link_drop(&bl->l);
        spb_worker_main(S.cfg, S.handlers, S.nhandlers, &S.slots, w->slot,
                        S.self);
        _exit(0);
    }
    w->pid = pid;
    w->gen = S.gen;
    w->state = SPB_W_STARTING;
    w->stream = NULL;
    w->served = 0;
    w->timed_out = 0;
    w->stopping = 0;
    w->started_ns = sp_now_ns();
}

static void on_worker_exit(pid_t pid, int status)
{
    spb_worker_t *w = NULL;
    for (int i = 0; i < S.nworkers_max; i++)
        if (S.workers[i].pid == pid) {
            w = &S.workers[i];
            break;
        }
    if (w == NULL)
        return; /* a CGI grandchild is not ours to reap here */
    spb_stream_t *s = w->stream;
    w->pid = 0; /* reaped: never signal that pid again */
    if (s != NULL) {
        /* SIGCHLD may come before the ready bit of what the worker did
         * last: pass on the ACCEPT and the whole messages it left in the
         * ring first, so the frontend sees the same either way (crash
         * after a flushed head: head then ABORT; before: 502). */
        if (!s->aborted && !s->accept_tx && s->link != NULL &&
            (sp_load_acquire(&sp_slot(&S.slots, w->slot)->flags) &
             SP_SLOTF_WAS_ACCEPTED)) {
            stream_accepted(s);
            sp_link_send(&s->link->l, SP_FT_ACCEPT, s->id, s->gen, NULL, 0);
        }
        drain_in(s);
        if (w->timed_out) {
            SPB_ERR("SPB0702", "worker %d (slot %u) killed after "
                               "RequestTimeout %ds",
                    (int)pid, w->slot, S.cfg->request_timeout_s);
            stream_send_abort(s, SP_ABORT_TIMEOUT, 504, "request timeout");
        } else if (w->stopping) {
            /* We killed it: GracefulTimeout ran out (its stream has had
             * its ABORT(SHUTDOWN) already).  Not a crash. */
            SPB_WARN("SPB0705", "worker %d (slot %u) killed mid-request at "
                                "the end of GracefulTimeout %ds",
                     (int)pid, w->slot, S.cfg->graceful_timeout_s);
        } else {
            SPB_ERR("SPB0703", "worker %d (slot %u) died mid-request (%s %d)",
                    (int)pid, w->slot,
                    WIFSIGNALED(status) ? "signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status)
                                        : WEXITSTATUS(status));
            stream_send_abort(s, SP_ABORT_WORKER_CRASH, 502, "worker crashed");
        }
        s->worker = NULL;
        s->state = 0;
        stream_free(s);
        w->stream = NULL;
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
               !w->stopping) {
        SPB_ERR("SPB0704", "worker %d (slot %u) exited unexpectedly (%s %d)",
                (int)pid, w->slot,
                WIFSIGNALED(status) ? "signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    int quick = sp_now_ns() - w->started_ns < SP_NSEC_PER_SEC &&
                !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    w->pid = 0;
    w->state = SPB_W_EMPTY;
    sp_slots_reclaim(&S.slots, NULL, NULL);
    /* The reaper resets rings and state of the dead owner's slot. */
    if (!S.stopping && (int)w->slot < S.cfg->workers) {
        if (quick)
            w->started_ns = -sp_now_ns(); /* respawn from the tick, later */
        else
            worker_spawn(w);
    }
}

static void reap_children(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        on_worker_exit(pid, status);
    }
}

/* ---- time ------------------------------------------------------------- */

static void begin_stop(const char *why)
{
    if (S.stopping)
        return;
    SPB_WARN("SPB0801", "%s: stopping (grace %ds)", why,
             S.cfg->graceful_timeout_s);
    S.stopping = 1;
    S.stop_deadline = sp_now_ns() +
                      (int64_t)S.cfg->graceful_timeout_s * SP_NSEC_PER_SEC;
    listeners_close(S.listeners);
    S.listeners = NULL;
    for (blink_t *bl = S.links; bl; bl = bl->next)
        if (!bl->l.goaway_tx)
            sp_link_send_goaway(&bl->l, SP_GOAWAY_NORMAL, "shutting down");
    while (S.qhead) {
        spb_stream_t *s = S.qhead;
        stream_send_abort(s, SP_ABORT_SHUTDOWN, 503, "shutting down");
        stream_free(s);
    }
    for (int i = 0; i < S.nworkers_max; i++)
        if (S.workers[i].state == SPB_W_IDLE)
            worker_retire(&S.workers[i]);
}

static int busy_workers(void)
{
    int n = 0;
    for (int i = 0; i < S.nworkers_max; i++)
        if (S.workers[i].stream != NULL)
            n++;
    return n;
}

static int live_workers(void)
{
    int n = 0;
    for (int i = 0; i < S.nworkers_max; i++)
        if (S.workers[i].pid > 0)
            n++;
    return n;
}

static void tick(void)
{
    int64_t now = sp_now_ns();
    /* Queue deadlines (the queue is in arrival order). */
    while (S.qhead && S.qhead->deadline <= now) {
        spb_stream_t *s = S.qhead;
        stream_send_abort(s, SP_ABORT_OVERLOAD, 503, "queue timeout");
        stream_free(s);
    }
    for (int i = 0; i < S.nworkers_max; i++) {
        spb_worker_t *w = &S.workers[i];
        if (w->stream && !w->timed_out && w->pid > 0 &&
            w->stream->deadline <= now) {
            w->timed_out = 1;
            kill(w->pid, SIGKILL);
        }
        /* A worker that died at once is respawned a second later. */
        if (w->state == SPB_W_EMPTY && w->started_ns < 0 && !S.stopping &&
            now + w->started_ns >= SP_NSEC_PER_SEC && i < S.cfg->workers)
            worker_spawn(w);
    }
    /* Idle links get a PING; silent ones are closed. */
    int64_t iv = (int64_t)S.cfg->ping_interval_s * SP_NSEC_PER_SEC;
    blink_t *next;
    for (blink_t *bl = S.links; bl; bl = next) {
        next = bl->next;
        if (bl->l.state != SP_LINK_UP) {
            if (now - bl->l.last_rx_ns > 10 * SP_NSEC_PER_SEC)
                link_close(bl, "handshake timeout");
            continue;
        }
        bl->unknown_frames = 0; /* a rate: late frames add up forever */
        /* Drained after our GOAWAY (docs/protocol.md 2.6): close it, a
         * second later so that requests which crossed the GOAWAY get
         * their ABORT(SHUTDOWN) and the frontend has time to go itself. */
        if (bl->l.goaway_tx && bl->streams == NULL) {
            if (bl->drained_ns == 0)
                bl->drained_ns = now;
            else if (now - bl->drained_ns >= SP_NSEC_PER_SEC)
                bl->closing = 1;
        }
        if (now - bl->l.last_rx_ns > 3 * iv)
            link_close(bl, "peer silent for 3 ping intervals");
        else if (now - bl->l.last_rx_ns > iv)
            sp_link_ping(&bl->l);
    }
    if (S.stopping) {
        if (busy_workers() > 0 && now >= S.stop_deadline) {
            for (int i = 0; i < S.nworkers_max; i++) {
                spb_worker_t *w = &S.workers[i];
                if (w->stream) {
                    stream_send_abort(w->stream, SP_ABORT_SHUTDOWN, 503,
                                      "shutting down");
                    stream_abort(w->stream);
                    if (w->pid > 0 && !w->stopping) {
                        kill(w->pid, SIGKILL);
                        w->stopping = 1;
                    }
                }
            }
        }
        if (busy_workers() == 0) {
            if (S.kill_deadline == 0)
                S.kill_deadline = now + 2 * SP_NSEC_PER_SEC;
            for (int i = 0; i < S.nworkers_max; i++) {
                spb_worker_t *w = &S.workers[i];
                if (w->pid <= 0)
                    continue;
                if (w->state == SPB_W_IDLE || w->state == SPB_W_STARTING)
                    worker_retire(w);
                if (now >= S.kill_deadline && !w->stopping) {
                    kill(w->pid, SIGKILL);
                    w->stopping = 1;
                }
            }
        }
    }
}

/* ---- the loop --------------------------------------------------------- */

static void on_signals(void)
{
    struct signalfd_siginfo si;
    while (read(S.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            reap_children();
            break;
        case SIGTERM:
        case SIGINT:
            begin_stop(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        case SIGHUP:
            if (!S.stopping)
                reload();
            break;
        }
    }
}

static void process_ready(void)
{
    uint32_t ready[256];
    uint32_t n;
    while ((n = sp_slots_ready_take(&S.slots, ready, 256)) > 0)
        for (uint32_t k = 0; k < n; k++)
            if ((int)ready[k] < S.nworkers_max)
                worker_event(&S.workers[ready[k]]);
}

static int setup(spb_config_t *cfg)
{
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    S.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    S.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (S.ep < 0 || S.sigfd < 0 || S.timerfd < 0) {
        SPB_ERR("SPB0901", "epoll/signalfd/timerfd: %s", strerror(errno));
        return -1;
    }
    struct itimerspec its = {.it_interval = {0, TICK_NS},
                             .it_value = {0, TICK_NS}};
    timerfd_settime(S.timerfd, 0, &its, NULL);

    /* The slot table: one slot per possible worker. */
    uint32_t seg = 16384;
    while (seg * 4 > cfg->slot_buffer_size && seg > 1024)
        seg /= 2;
    uint32_t nseg = cfg->slot_buffer_size / seg;
    S.nworkers_max = cfg->server_limit;
    S.slots_size = sp_slots_bytes((uint32_t)S.nworkers_max, 0, nseg, seg);
    S.slots_mem = mmap(NULL, S.slots_size, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S.slots_size == 0 || S.slots_mem == MAP_FAILED ||
        sp_slots_create(&S.slots, S.slots_mem, S.slots_size,
                        (uint32_t)S.nworkers_max, 0, nseg, seg, 1) < 0) {
        SPB_ERR("SPB0902", "cannot create the slot table (%d slots of %u "
                           "bytes)",
                S.nworkers_max, cfg->slot_buffer_size);
        return -1;
    }
    sp_slots_set_proxy(&S.slots);
    S.workers = calloc((size_t)S.nworkers_max, sizeof(*S.workers));
    if (S.workers == NULL)
        return -1;
    for (int i = 0; i < S.nworkers_max; i++) {
        S.workers[i].slot = (uint32_t)i;
        sp_slot_ring_out(&S.slots, (uint32_t)i, &S.workers[i].out);
        sp_slot_ring_in(&S.slots, (uint32_t)i, &S.workers[i].in);
    }
    S.ev_doorbell.kind = EV_DOORBELL;
    S.ev_signal.kind = EV_SIGNAL;
    S.ev_timer.kind = EV_TIMER;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = &S.ev_doorbell;
    epoll_ctl(S.ep, EPOLL_CTL_ADD, S.slots.doorbell_fd, &ev);
    ev.data.ptr = &S.ev_signal;
    epoll_ctl(S.ep, EPOLL_CTL_ADD, S.sigfd, &ev);
    ev.data.ptr = &S.ev_timer;
    epoll_ctl(S.ep, EPOLL_CTL_ADD, S.timerfd, &ev);
    return 0;
}

/* epoll_pwait2 (Linux 5.11) for the sub-millisecond ACCEPT deadline;
 * where it is missing (ENOSYS, or EPERM under an old seccomp profile),
 * epoll_wait with the timeout rounded up to a millisecond. */
static int epoll_wait_ts(struct epoll_event *evs, int max,
                         const struct timespec *ts)
{
    static int no_pwait2;
    if (!no_pwait2) {
        int n = epoll_pwait2(S.ep, evs, max, ts, NULL);
        if (n >= 0 || (errno != ENOSYS && errno != EPERM))
            return n;
        no_pwait2 = 1;
    }
    int ms = -1;
    if (ts != NULL)
        ms = (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
    return epoll_wait(S.ep, evs, max, ms);
}

static void tell_ready(int fd, char status)
{
    if (fd < 0)
        return;
    ssize_t w = write(fd, &status, 1);
    (void)w;
    close(fd);
}

int spb_dispatcher_run(const char *config_path, spb_config_t *cfg,
                       int ready_fd)
{
    S.config_path = config_path;
    S.cfg = cfg;
    S.gen = 1;
    if (setup(cfg) < 0 || secret_load(cfg) < 0 ||
        handlers_load(cfg, &S.handlers, &S.nhandlers) < 0 ||
        listeners_open(cfg, &S.listeners, NULL) < 0 ||
        drop_privileges(cfg) < 0) {
        tell_ready(ready_fd, 1);
        return 1;
    }
    link_config_set(cfg);
    sched_apply(cfg);
    S.self = sp_ident_self();
    for (int i = 0; i < cfg->workers; i++)
        worker_spawn(&S.workers[i]);
    SPB_WARN("SPB0903", "slotproxy-backend %s ready: %d workers, %d "
                        "listeners",
             SPB_VERSION, cfg->workers, cfg->nlisten);
    tell_ready(ready_fd, 0);

    struct epoll_event evs[64];
    for (;;) {
        process_ready();
        links_flush();
        if (S.stopping && live_workers() == 0)
            break;
        struct timespec ts, *timeout = NULL;
        if (S.n_unaccepted == 0)
            S.accept_due = 0;
        if (S.accept_due != 0) {
            int64_t now = sp_now_ns();
            if (now >= S.accept_due) {
                /* Streams assigned during the scan set their own due. */
                S.accept_due = 0;
                if (accept_scan() && S.accept_due == 0)
                    S.accept_due = now + ACCEPT_DELAY_NS;
                links_flush();
            }
            if (S.accept_due != 0) {
                int64_t d = S.accept_due - now;
                ts.tv_sec = 0;
                ts.tv_nsec = d > 0 ? d : 0;
                timeout = &ts;
            }
        }
        /* A worker is on a request: its answer usually comes within
         * microseconds, sooner than a sleep and a wake-up would take
         * (docs/decisions.md). */
        int n = 0;
        if (busy_workers() > 0 &&
            (n = sp_slots_poll_events(&S.slots, S.ep, evs, 64, &S.poll)) !=
                0) {
            if (n < 0)
                n = 0; /* only ready bits: process_ready() takes them */
        } else {
            if (sp_slots_proxy_idle(&S.slots)) {
                ts.tv_sec = ts.tv_nsec = 0;
                timeout = &ts;
            }
            n = epoll_wait_ts(evs, 64, timeout);
        }
        sp_slots_proxy_awake(&S.slots, 0);
        for (int i = 0; i < n; i++) {
            ev_tag_t *t = evs[i].data.ptr;
            switch (t->kind) {
            case EV_LISTENER:
                link_accept((listener_t *)t);
                break;
            case EV_LINK: {
                blink_t *bl = (blink_t *)t;
                if (!bl->dead &&
                    (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    link_readable(bl);
                /* EPOLLOUT: links_flush() below writes. */
                break;
            }
            case EV_DOORBELL: /* process_ready() at the top of the loop */
                sp_slots_proxy_awake(&S.slots, 1); /* drain it */
                break;
            case EV_SIGNAL:
                on_signals();
                break;
            case EV_TIMER: {
                uint64_t x;
                while (read(S.timerfd, &x, sizeof(x)) > 0)
                    ;
                tick();
                break;
            }
            }
        }
        graveyard_free();
    }
    /* Drain the GOAWAYs and last ABORTs. */
    for (int k = 0; k < 20 && S.links; k++) {
        int pending = 0;
        for (blink_t *bl = S.links; bl; bl = bl->next)
            if (sp_link_pending(&bl->l) && sp_link_flush(&bl->l) == SP_EAGAIN)
                pending = 1;
        if (!pending)
            break;
        usleep(10000);
    }
    while (S.links)
        link_close(S.links, NULL);
    graveyard_free();
    SPB_WARN("SPB0904", "stopped: %llu requests, %llu answered 503, %llu 504, "
                        "%llu 502",
             (unsigned long long)S.n_requests, (unsigned long long)S.n_503,
             (unsigned long long)S.n_504, (unsigned long long)S.n_502);
    handlers_free(S.handlers, S.nhandlers);
    sp_slots_close(&S.slots);
    munmap(S.slots_mem, S.slots_size);
    return 0;
}
