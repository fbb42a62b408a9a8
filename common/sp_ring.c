/*
 * sp_ring.c - the segment ring (layout and invariants in sp_ring-t.h).
 *
 * Who writes what:
 *   producer: ctl->head, ctl->sender_waiting, and for segments in
 *             [head, tail + nseg): their data and segctl (begin := 0, end,
 *             length, type, flags)
 *   consumer: ctl->tail, ctl->receiver_waiting, and segctl[i].begin for
 *             segments in [tail, head)
 * Ownership of a segment moves to the consumer with the release store of
 * head, and back to the producer with the release store of tail.
 *
 * Sleep/wake pairing (rule 2 of sp_atomic.h):
 *   producer publish:  store-release head; fence; read receiver_waiting
 *   consumer wait:     store receiver_waiting; fence; re-read head;
 *                      FUTEX_WAIT(&head, old head)
 *   consumer release:  store-release tail; fence; read sender_waiting
 *   producer wait:     store sender_waiting; fence; re-read tail;
 *                      FUTEX_WAIT(&tail, old tail)
 * Either the waker sees the flag or the waiter sees the new index; the
 * futex re-checks the word in the kernel, so a wake between the re-read
 * and the sleep is not lost either.
 */
#include "sp_ring.h"

#include <limits.h>
#include <string.h>

#include "sp_error.h"
#include "sp_mark.h"

#define RING_SEGCTL_OFF ((uint32_t)sizeof(sp_ring_ctl_t))

static uint32_t ring_data_off(uint32_t nseg)
{
    uint64_t off = RING_SEGCTL_OFF + (uint64_t)nseg * sizeof(sp_ring_segctl_t);
    return (uint32_t)((off + SP_CACHELINE - 1) & ~(uint64_t)(SP_CACHELINE - 1));
}

static int ring_geometry_ok(uint32_t nseg, uint32_t seg_size)
{
    return nseg >= 1 && nseg <= SP_RING_MAX_SEGS && (nseg & (nseg - 1)) == 0 &&
           seg_size >= SP_CACHELINE && seg_size % SP_CACHELINE == 0 &&
           seg_size <= (1u << 30);
}

size_t sp_ring_bytes(uint32_t nseg, uint32_t seg_size)
{
    if (!ring_geometry_ok(nseg, seg_size))
        return 0;
    return (size_t)ring_data_off(nseg) + (size_t)nseg * seg_size;
}

int sp_ring_format(void *mem, uint32_t nseg, uint32_t seg_size)
{
    if (!ring_geometry_ok(nseg, seg_size) ||
        ((uintptr_t)mem & (SP_CACHELINE - 1)) != 0)
        return SP_EINVAL;
    sp_ring_ctl_t *ctl = mem;
    memset(ctl, 0, sizeof(*ctl));
    ctl->nseg = nseg;
    ctl->seg_size = seg_size;
    ctl->segctl_off = RING_SEGCTL_OFF;
    ctl->data_off = ring_data_off(nseg);
    sp_ring_segctl_t *seg = (sp_ring_segctl_t *)((char *)mem + RING_SEGCTL_OFF);
    for (uint32_t i = 0; i < nseg; i++) {
        memset(&seg[i], 0, sizeof(seg[i]));
        seg[i].next = (i + 1) & (nseg - 1);
    }
    /* The magic goes last: an attacher that sees it sees the rest. */
    sp_store_release(&ctl->magic, SP_RING_MAGIC);
    return 0;
}

int sp_ring_attach(sp_ring_t *r, void *mem, size_t avail)
{
    memset(r, 0, sizeof(*r));
    if (avail < sizeof(sp_ring_ctl_t))
        return SP_EINVAL;
    sp_ring_ctl_t *ctl = mem;
    if (sp_load_acquire(&ctl->magic) != SP_RING_MAGIC)
        return SP_EBADMAGIC;
    uint32_t nseg = ctl->nseg, seg_size = ctl->seg_size;
    if (!ring_geometry_ok(nseg, seg_size) ||
        ctl->segctl_off != RING_SEGCTL_OFF ||
        ctl->data_off != ring_data_off(nseg) ||
        sp_ring_bytes(nseg, seg_size) > avail)
        return SP_EINVAL;
    r->ctl = ctl;
    r->seg = (sp_ring_segctl_t *)((char *)mem + RING_SEGCTL_OFF);
    r->data = (unsigned char *)mem + ctl->data_off;
    r->nseg = nseg;
    r->mask = nseg - 1;
    r->seg_size = seg_size;
    return 0;
}

void sp_ring_reset(sp_ring_t *r)
{
    for (uint32_t i = 0; i < r->nseg; i++) {
        r->seg[i].begin = r->seg[i].end = r->seg[i].length = 0;
        r->seg[i].flags = r->seg[i].type = 0;
        r->seg[i].next = (i + 1) & r->mask;
    }
    r->res_nseg = 0;
    r->res_len = 0;
    r->wake_poller = 0;
    r->wake_pending = 0;
    sp_store_relaxed(&r->ctl->sender_waiting, SP_RING_WAIT_NONE);
    sp_store_relaxed(&r->ctl->receiver_waiting, SP_RING_WAIT_NONE);
    sp_store_release(&r->ctl->tail, 0);
    sp_store_release(&r->ctl->head, 0);
}

size_t sp_ring_capacity(const sp_ring_t *r)
{
    return (size_t)r->nseg * r->seg_size;
}

uint32_t sp_ring_used(const sp_ring_t *r)
{
    return sp_load_acquire(&r->ctl->head) - sp_load_acquire(&r->ctl->tail);
}

uint32_t sp_ring_free_segs(const sp_ring_t *r)
{
    return r->nseg - sp_ring_used(r);
}

static uint32_t segs_for(const sp_ring_t *r, size_t len)
{
    return len == 0 ? 1 : (uint32_t)((len + r->seg_size - 1) / r->seg_size);
}

/* Wake a peer flagged as sleeping in the futex.  The flag stays set until
 * the sleeper clears it: a waker that took it (exchange or CAS) could take
 * the flag of the sleeper's *next* wait, set after the wake-up it sends,
 * and the following publication would find nobody to wake (ABA).  Batch
 * publications with sp_ring_defer_wake() to save the repeated calls. */
static void ring_futex_wake(uint32_t *waiting, uint32_t *word)
{
    if (sp_load_relaxed(waiting) == SP_RING_WAIT_FUTEX)
        sp_futex_wake(word, INT_MAX);
}

/* After a store-release of head (producer) or tail (consumer): wake the
 * other side if it declared itself.  Pairs with ring_wait(). */
static void ring_wake(sp_ring_t *r, uint32_t *waiting, uint32_t *word)
{
    sp_fence_full();
    uint32_t w = sp_load_relaxed(waiting); /* ordered by the fence above */
    if (w == SP_RING_WAIT_FUTEX) {
        if (r->defer_wake) {
            r->wake_pending |= word == &r->ctl->head ? 1 : 2;
            return;
        }
        ring_futex_wake(waiting, word);
    } else if (w == SP_RING_WAIT_POLL) {
        r->wake_poller = 1;
    }
}

void sp_ring_defer_wake(sp_ring_t *r, int on)
{
    r->defer_wake = on;
    if (!on)
        sp_ring_wake_flush(r);
}

int sp_ring_wake_flush(sp_ring_t *r)
{
    int pending = r->wake_pending;
    if (pending == 0)
        return 0;
    r->wake_pending = 0;
    if (pending & 1) /* a publication found the consumer asleep */
        ring_futex_wake(&r->ctl->receiver_waiting, &r->ctl->head);
    if (pending & 2) /* a release found the producer asleep */
        ring_futex_wake(&r->ctl->sender_waiting, &r->ctl->tail);
    return 1;
}

/* Wait until *word != old (the peer moved its index), declaring ourselves
 * in *waiting.  Returns 0 when it moved, or a wait error. */
static int ring_wait(sp_ring_t *r, uint32_t *waiting, uint32_t *word,
                     uint32_t old, int64_t deadline_ns)
{
    if (deadline_ns == 0)
        return SP_EAGAIN;
    if (sp_spin_until_ne(word, old, &r->spin))
        return 0;
    int rc = 0;
    for (;;) {
        sp_store_relaxed(waiting, SP_RING_WAIT_FUTEX);
        sp_fence_full(); /* pairs with the fence in ring_wake() */
        if (sp_load_acquire(word) != old)
            break;
        int64_t now = sp_now_ns();
        if (now >= deadline_ns) {
            rc = SP_ETIMEDOUT;
            break;
        }
        int64_t until = deadline_ns;
        if (r->peer != NULL && until - now > SP_MARK_PEER_CHECK_NS)
            until = now + SP_MARK_PEER_CHECK_NS;
        if (sp_futex_wait(word, old, until) == SP_ETIMEDOUT &&
            r->peer != NULL && !sp_ident_alive(r->peer) &&
            sp_load_acquire(word) == old) {
            rc = SP_EPEERDEAD;
            break;
        }
    }
    sp_store_relaxed(waiting, SP_RING_WAIT_NONE);
    return rc;
}

/* Producer: wait for k free segments. */
static int ring_wait_space(sp_ring_t *r, uint32_t k, int64_t deadline_ns)
{
    for (;;) {
        uint32_t tail = sp_load_acquire(&r->ctl->tail);
        uint32_t head = sp_load_relaxed(&r->ctl->head); /* ours */
        if (r->nseg - (head - tail) >= k)
            return 0;
        int rc = ring_wait(r, &r->ctl->sender_waiting, &r->ctl->tail, tail,
                           deadline_ns);
        if (rc < 0)
            return rc;
    }
}

/* Producer: describe and publish k filled segments holding len bytes. */
static void ring_publish(sp_ring_t *r, uint32_t k, size_t len, unsigned type)
{
    uint32_t head = sp_load_relaxed(&r->ctl->head);
    for (uint32_t i = 0; i < k; i++) {
        sp_ring_segctl_t *sc = &r->seg[(head + i) & r->mask];
        size_t off = (size_t)i * r->seg_size;
        size_t frag = len - off < r->seg_size ? len - off : r->seg_size;
        sc->begin = 0;
        sc->end = (uint32_t)frag;
        sc->length = (uint32_t)(len - off);
        sc->type = (uint16_t)type;
        sc->flags = (uint16_t)((i == 0 ? SP_RING_FIRST : 0) |
                               (i == k - 1 ? SP_RING_LAST : 0));
    }
    /* Publication (rule 1): the data and segctl above become the
     * consumer's with this store. */
    sp_store_release(&r->ctl->head, head + k);
    ring_wake(r, &r->ctl->receiver_waiting, &r->ctl->head);
}

int sp_ring_writev(sp_ring_t *r, unsigned type, const struct iovec *iov,
                   int iovcnt, int64_t deadline_ns)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (r->res_nseg != 0)
        return SP_ESTATE;
    if (len > UINT32_MAX || len > sp_ring_capacity(r))
        return SP_EMSGSIZE;
    uint32_t k = segs_for(r, len);
    int rc = ring_wait_space(r, k, deadline_ns);
    if (rc < 0)
        return rc;
    uint32_t head = sp_load_relaxed(&r->ctl->head);
    uint32_t si = 0;
    size_t soff = 0;
    for (int i = 0; i < iovcnt; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        while (n > 0) {
            size_t room = r->seg_size - soff;
            size_t take = n < room ? n : room;
            memcpy(r->data + (size_t)((head + si) & r->mask) * r->seg_size +
                       soff,
                   p, take);
            p += take;
            n -= take;
            soff += take;
            if (soff == r->seg_size) {
                si++;
                soff = 0;
            }
        }
    }
    ring_publish(r, k, len, type);
    return 0;
}

int sp_ring_write(sp_ring_t *r, unsigned type, const void *buf, size_t len,
                  int64_t deadline_ns)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return sp_ring_writev(r, type, &iov, 1, deadline_ns);
}

int sp_ring_reserve(sp_ring_t *r, size_t len, struct iovec *iov, int *iovcnt,
                    int64_t deadline_ns)
{
    if (r->res_nseg != 0)
        return SP_ESTATE;
    if (len > UINT32_MAX || len > sp_ring_capacity(r))
        return SP_EMSGSIZE;
    uint32_t k = segs_for(r, len);
    if (*iovcnt < 0 || (uint32_t)*iovcnt < k)
        return SP_EINVAL;
    int rc = ring_wait_space(r, k, deadline_ns);
    if (rc < 0)
        return rc;
    uint32_t head = sp_load_relaxed(&r->ctl->head);
    for (uint32_t i = 0; i < k; i++) {
        size_t off = (size_t)i * r->seg_size;
        iov[i].iov_base = r->data + (size_t)((head + i) & r->mask) * r->seg_size;
        iov[i].iov_len = len - off < r->seg_size ? len - off : r->seg_size;
    }
    *iovcnt = (int)k;
    r->res_nseg = k;
    r->res_len = len;
    return 0;
}

int sp_ring_commit(sp_ring_t *r, unsigned type)
{
    if (r->res_nseg == 0)
        return SP_ESTATE;
    ring_publish(r, r->res_nseg, r->res_len, type);
    r->res_nseg = 0;
    r->res_len = 0;
    return 0;
}

void sp_ring_cancel(sp_ring_t *r)
{
    r->res_nseg = 0;
    r->res_len = 0;
}

int sp_ring_wait_readable(sp_ring_t *r, int64_t deadline_ns)
{
    for (;;) {
        uint32_t head = sp_load_acquire(&r->ctl->head);
        if (head != sp_load_relaxed(&r->ctl->tail)) /* tail is ours */
            return 0;
        int rc = ring_wait(r, &r->ctl->receiver_waiting, &r->ctl->head, head,
                           deadline_ns);
        if (rc < 0)
            return rc;
    }
}

/* The consumer's current fragment, validated.  NULL if empty or corrupt
 * (*err says which). */
static sp_ring_segctl_t *ring_cur(sp_ring_t *r, uint32_t *tailp,
                                  uint32_t *headp, int *err)
{
    uint32_t head = sp_load_acquire(&r->ctl->head);
    uint32_t tail = sp_load_relaxed(&r->ctl->tail);
    *tailp = tail;
    *headp = head;
    if (head == tail) {
        *err = SP_EAGAIN;
        return NULL;
    }
    if (head - tail > r->nseg) {
        *err = SP_EPROTO;
        return NULL;
    }
    sp_ring_segctl_t *sc = &r->seg[tail & r->mask];
    if (sc->end > r->seg_size || sc->begin > sc->end ||
        sc->length < sc->end) {
        *err = SP_EPROTO;
        return NULL;
    }
    return sc;
}

int sp_ring_peek(sp_ring_t *r, sp_ring_msg_t *msg, struct iovec *iov,
                 int iovmax)
{
    uint32_t tail, head;
    int err = 0;
    sp_ring_segctl_t *sc = ring_cur(r, &tail, &head, &err);
    if (sc == NULL)
        return err;
    msg->type = sc->type;
    msg->length = (sc->flags & SP_RING_FIRST) ? sc->length : 0;
    msg->remaining = sc->length - sc->begin;
    msg->nfrag = 0;
    int n = 0;
    for (uint32_t t = tail; t != head; t++) {
        sp_ring_segctl_t *f = &r->seg[t & r->mask];
        if (f->end > r->seg_size || f->begin > f->end)
            return SP_EPROTO;
        if (f->end > f->begin) {
            msg->nfrag++;
            if (n < iovmax) {
                iov[n].iov_base = r->data +
                                  (size_t)(t & r->mask) * r->seg_size +
                                  f->begin;
                iov[n].iov_len = f->end - f->begin;
                n++;
            }
        }
        if (f->flags & SP_RING_LAST)
            return n;
    }
    return SP_EPROTO; /* published without a LAST fragment */
}

size_t sp_iov_trim(struct iovec *iov, int *n, size_t max)
{
    size_t kept = 0;
    int i = 0;
    for (; i < *n && kept < max; i++) {
        if (iov[i].iov_len > max - kept)
            iov[i].iov_len = max - kept;
        kept += iov[i].iov_len;
    }
    *n = i;
    return kept;
}

int sp_ring_consume(sp_ring_t *r, size_t n)
{
    uint32_t tail, head;
    int err = 0;
    sp_ring_segctl_t *sc = ring_cur(r, &tail, &head, &err);
    if (sc == NULL)
        return err;
    if (n > (size_t)(sc->length - sc->begin))
        return SP_EINVAL;
    uint32_t t = tail;
    while (t != head) {
        sc = &r->seg[t & r->mask];
        uint32_t avail = sc->end - sc->begin;
        uint32_t take = n < avail ? (uint32_t)n : avail;
        sc->begin += take;
        n -= take;
        if (sc->begin < sc->end)
            break;
        t++;
        if (sc->flags & SP_RING_LAST)
            break;
    }
    if (t != tail) {
        /* Hands the released segments back to the producer (rule 1). */
        sp_store_release(&r->ctl->tail, t);
        ring_wake(r, &r->ctl->sender_waiting, &r->ctl->tail);
    }
    return 0;
}

long sp_ring_read(sp_ring_t *r, unsigned *type, void *buf, size_t cap,
                  int64_t deadline_ns)
{
    int rc = sp_ring_wait_readable(r, deadline_ns);
    if (rc < 0)
        return rc;
    /* A message is there.  Its first data line and its segctl entry were
     * both just written by the producer's core: start fetching the data
     * line now (its address needs only tail), so the two transfers overlap
     * instead of the copy below waiting for segctl first.  Worth ~10% of a
     * round trip between spinning processes (bench/bench_ipc.c). */
    uint32_t first = sp_load_relaxed(&r->ctl->tail) & r->mask; /* ours */
    __builtin_prefetch(r->data + (size_t)first * r->seg_size);
    uint32_t tail, head;
    int err = 0;
    sp_ring_segctl_t *sc = ring_cur(r, &tail, &head, &err);
    if (sc == NULL)
        return err;
    size_t remaining = sc->length - sc->begin;
    if (remaining > cap)
        return SP_EMSGSIZE;
    *type = sc->type;
    size_t got = 0;
    for (uint32_t t = tail; t != head && got < remaining; t++) {
        sp_ring_segctl_t *f = &r->seg[t & r->mask];
        if (f->end > r->seg_size || f->begin > f->end ||
            f->end - f->begin > remaining - got)
            return SP_EPROTO;
        memcpy((char *)buf + got,
               r->data + (size_t)(t & r->mask) * r->seg_size + f->begin,
               f->end - f->begin);
        got += f->end - f->begin;
    }
    if (got != remaining)
        return SP_EPROTO;
    rc = sp_ring_consume(r, remaining);
    return rc < 0 ? rc : (long)remaining;
}

int sp_ring_poll_readable(sp_ring_t *r)
{
    sp_store_relaxed(&r->ctl->receiver_waiting, SP_RING_WAIT_POLL);
    sp_fence_full(); /* pairs with ring_wake() in the producer */
    if (sp_load_acquire(&r->ctl->head) != sp_load_relaxed(&r->ctl->tail)) {
        sp_store_relaxed(&r->ctl->receiver_waiting, SP_RING_WAIT_NONE);
        return 1;
    }
    return 0;
}

int sp_ring_poll_writable(sp_ring_t *r, uint32_t nseg_wanted)
{
    sp_store_relaxed(&r->ctl->sender_waiting, SP_RING_WAIT_POLL);
    sp_fence_full(); /* pairs with ring_wake() in the consumer */
    if (sp_ring_free_segs(r) >= nseg_wanted) {
        sp_store_relaxed(&r->ctl->sender_waiting, SP_RING_WAIT_NONE);
        return 1;
    }
    return 0;
}

void sp_ring_unpoll_reader(sp_ring_t *r)
{
    sp_store_relaxed(&r->ctl->receiver_waiting, SP_RING_WAIT_NONE);
}

void sp_ring_unpoll_writer(sp_ring_t *r)
{
    sp_store_relaxed(&r->ctl->sender_waiting, SP_RING_WAIT_NONE);
}
