/*
 * sp_sess.c - the session store (layout in sp_sess-t.h, API in sp_sess.h,
 * design notes in docs/sessions.md).
 *
 * Index.  nentries slots, a power of two.  A session's home slot is the low
 * bits of its (random) id; it lives in one of the SP_SESS_HOOD slots from
 * there on (a bounded neighbourhood: no tombstones, no chains, a lookup
 * reads at most SP_SESS_HOOD cache lines and usually one).  Only
 * sp_sess_create() inserts, with a fresh random id.
 *
 * Who changes what:
 *   - ref (the publication word) and nlive change only under the pool's
 *     lock (sp_pool_lock), which therefore is also the store's lock;
 *   - a slot is taken by an insert only when ref == 0 and busy == 0;
 *   - every removal and every replacement of a session's value is done by
 *     the thread holding its busy indicator (or, for eviction and expiry,
 *     by a thread that took the indicator with a non-waiting CAS), so
 *     writers of one session are serialised and a held session never
 *     vanishes under its holder;
 *   - readers take no lock at all.
 *
 * Publication protocol (copy-on-write, seed 003 claims 28-33):
 *   1. alloc a block, owned by the calling process's pool owner record
 *      (pool lock, released);
 *   2. write the record (header with id, version, length; value; CRC-32C)
 *      with plain stores, no lock;
 *   3. under the pool lock: hand the block to SP_POOL_SHARED, store the new
 *      ref with one 8-byte release store, free the old block.
 * A process killed in 1-2 leaves a block owned by a dead process: the
 * pool's reaper frees it (sp_pool_reap, run by sp_sess_expire and by any
 * allocation that finds the pool full).  Killed in 3, it dies holding the
 * pool lock: the next locker takes the lock over, the pool rebuilds its
 * lists, and sess_repair() below frees every shared block that no index
 * entry references (exact, because nobody can publish meanwhile).  The ref
 * word is either the old or the new one: never a mix.
 *
 * Readers (a seqlock whose sequence is the ref word): load ref (acquire),
 * copy the record header and value out, acquire fence, load ref again.  If
 * it changed, the block may have been freed and reused under the copy:
 * retry.  If it did not, the block was not freed during the copy (a free
 * needs ref to move first, and the tag bits of ref change with every
 * version, so an A-B-A needs 2^23 puts of one session during one copy).
 * The CRC then tells a damaged record from a good one.
 *
 * Busy indicator (seed 003 claims 9, 18, 27).  A futex word per entry:
 * 0 or holder tid | SP_SESS_BUSY_WAITERS, with the holder's start time
 * beside it (written after the taking CAS, cleared before the releasing
 * XCHG, as for the pool lock, so a reader of a tid sees 0 or that tid's
 * own start time).  A waiter CASes the WAITERS bit in and sleeps with
 * FUTEX_WAIT on the exact value; the releaser XCHGs the word to 0 and wakes
 * everybody if the bit was set (the same pairing as sp_mark.h).  Waits are
 * sliced at SP_POOL_LIVENESS_NS; after each slice the waiter checks the
 * holder with sp_ident_alive() and takes over the indicator of a dead one.
 *
 * Nothing here logs by itself: problems go to the caller's log callback,
 * one line each, tags SPS0001-SPS0017.  Ids are logged as their first 8 hex
 * digits only (an id is a credential).
 */
#include "sp_sess.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sp_crc.h"
#include "sp_error.h"
#include "sp_mark.h"
#include "sp_seghdr.h"

#define NIL 0xffffffffu
#define W SP_SESS_BUSY_WAITERS
#define REC SP_SESS_REC_HDR
#define GATE_BYTE 0  /* OFD lock: held exclusively while opening */
#define USERS_BYTE 1 /* OFD lock: shared by every process that has it open */
#define MAX_TOTAL (1ull << 40)
#define DROP_LOG_MAX 10

typedef struct sess_geom {
    uint32_t nentries, max_value, nblocks;
    unsigned min_shift, max_order, max_owners;
    uint64_t index_off, admin_off, admin_size, data_off, data_size, total;
} sess_geom_t;

/* ---- small helpers ---- */

static void slog(const sp_sess_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void slog(const sp_sess_t *s, const char *fmt, ...)
{
    if (s->log == NULL)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->log(s->log_arg, buf);
}

int64_t sp_sess_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SP_NSEC_PER_SEC + ts.tv_nsec;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Hex digit values + 1 (0: not a hex digit). */
static const uint8_t hexval[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* Exactly 32 hex digits, then NUL.  The id comes from outside (a cookie):
 * nothing past the first non-digit is read. */
static int parse_id(const char *str, uint8_t id[16])
{
    if (str == NULL)
        return SP_EINVAL;
    const unsigned char *u = (const unsigned char *)str;
    for (int i = 0; i < 16; i++) {
        unsigned hi = hexval[u[2 * i]];
        if (hi == 0)
            return SP_EINVAL;
        unsigned lo = hexval[u[2 * i + 1]];
        if (lo == 0)
            return SP_EINVAL;
        id[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return str[SP_SESS_ID_LEN] == '\0' ? 0 : SP_EINVAL;
}

static void format_id(const uint8_t id[16], char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[SP_SESS_ID_LEN] = '\0';
}

/* The first 8 hex digits, for logs. */
static const char *id_prefix(const uint8_t id[16], char buf[9])
{
    char full[SP_SESS_ID_LEN + 1];
    format_id(id, full);
    memcpy(buf, full, 8);
    buf[8] = '\0';
    return buf;
}

static uint32_t home_of(const uint8_t id[16], uint32_t mask)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h));
    return (uint32_t)h & mask;
}

static uint64_t ref_make(uint64_t off, unsigned order, uint64_t version,
                         unsigned min_shift)
{
    return SP_SESS_REF_PRESENT | (version & SP_SESS_TAG_MASK) << 40 |
           (uint64_t)order << 32 | (off >> min_shift);
}

static uint32_t ref_block(uint64_t r)
{
    return (uint32_t)r;
}

static unsigned ref_order(uint64_t r)
{
    return (unsigned)(r >> 32) & 0xff;
}

/* CRC-32C with the SSE4.2 instruction where the CPU has it: the same
 * function as sp_crc32c() (same polynomial, same pre/post inversion, so
 * files move between machines), about three times faster, and the CRC of
 * every get and put is most of their cost.  (sp_crc.c is deliberately
 * table-only; this could move there.) */
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t c = ~crc & 0xffffffffu;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len-- > 0)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

static int crc_hw_ok = -1; /* -1 unknown; racing initialisers agree */

static uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    int ok = __atomic_load_n(&crc_hw_ok, __ATOMIC_RELAXED);
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&crc_hw_ok, ok, __ATOMIC_RELAXED);
    }
    return ok ? crc_hw(crc, buf, len) : sp_crc32c(crc, buf, len);
}
#else
#define crc32c sp_crc32c
#endif

static uint32_t rec_crc(const sp_sess_rec_t *h, const void *val)
{
    uint32_t c = crc32c(0, (const char *)h + 8, REC - 8);
    return crc32c(c, val, h->length);
}

/* Hot counters: per-handle, flushed to the shared ones every 256. */
static void count_hot(uint64_t *pend, uint64_t *shared)
{
    uint64_t v = __atomic_add_fetch(pend, 1, __ATOMIC_RELAXED);
    if ((v & 255) == 0)
        sp_stat_add(shared, __atomic_exchange_n(pend, 0, __ATOMIC_RELAXED));
}

static void flush_counts(sp_sess_t *s)
{
    if (s->live == NULL)
        return;
    sp_stat_add(&s->live->gets,
                __atomic_exchange_n(&s->pend_gets, 0, __ATOMIC_RELAXED));
    sp_stat_add(&s->live->get_misses,
                __atomic_exchange_n(&s->pend_misses, 0, __ATOMIC_RELAXED));
    sp_stat_add(&s->live->puts,
                __atomic_exchange_n(&s->pend_puts, 0, __ATOMIC_RELAXED));
}

/* ---- geometry ---- */

static int geom_compute(uint32_t nentries, uint32_t max_value,
                        unsigned min_shift, unsigned max_owners,
                        uint64_t data_size, sess_geom_t *g)
{
    memset(g, 0, sizeof(*g));
    if (nentries < 16 || nentries > (1u << 26) ||
        (nentries & (nentries - 1)) != 0 || max_value == 0 ||
        max_value > (256u << 20) || min_shift < 5 || min_shift > 20 ||
        max_owners < 2 || max_owners > 65535)
        return SP_EINVAL;
    unsigned k = 0;
    while (((uint64_t)1 << (min_shift + k)) < (uint64_t)max_value + REC)
        k++;
    data_size &= ~(((uint64_t)1 << min_shift) - 1);
    if (k >= SP_POOL_ORDERS || data_size < ((uint64_t)1 << (min_shift + k)) ||
        data_size > MAX_TOTAL)
        return SP_EINVAL;
    size_t asz = sp_pool_admin_bytes(data_size, min_shift, k, max_owners);
    if (asz == 0)
        return SP_EINVAL;
    g->nentries = nentries;
    g->max_value = max_value;
    g->min_shift = min_shift;
    g->max_order = k;
    g->max_owners = max_owners;
    g->data_size = data_size;
    g->nblocks = (uint32_t)(data_size >> min_shift);
    g->index_off = SP_SESS_INDEX_OFF;
    g->admin_off =
        align_up(g->index_off + (uint64_t)nentries * sizeof(sp_sess_entry_t),
                 SP_CACHELINE);
    g->admin_size = asz;
    g->data_off = align_up(g->admin_off + asz, 4096);
    g->total = g->data_off + data_size;
    return g->total > MAX_TOTAL ? SP_EINVAL : 0;
}

static int geom_from_conf(const sp_sess_conf_t *c, sess_geom_t *g)
{
    if (c->min_block < 32 || (c->min_block & (c->min_block - 1)) != 0 ||
        c->max_sessions == 0 || c->max_sessions > (1u << 25))
        return SP_EINVAL;
    uint32_t n = 64;
    while (n < 2 * c->max_sessions)
        n <<= 1;
    return geom_compute(n, c->max_value, (unsigned)__builtin_ctz(c->min_block),
                        c->max_owners, c->data_bytes, g);
}

static int geom_same(const sess_geom_t *a, const sess_geom_t *b)
{
    return a->nentries == b->nentries && a->max_value == b->max_value &&
           a->min_shift == b->min_shift && a->max_owners == b->max_owners &&
           a->data_size == b->data_size;
}

/* Why the header cannot be used, or NULL (then *g is its geometry). */
static const char *header_problem(const sp_sess_hdr_t *h, size_t n,
                                  sess_geom_t *g)
{
    if (n < sizeof(*h))
        return "file shorter than its header";
    switch (sp_seghdr_check(&h->seg, SIZE_MAX, SP_MAGIC_SESS, SP_SESS_VERSION,
                            sizeof(*h), 0)) {
    case 0:
        break;
    case SP_EBADMAGIC:
        return "not a session file (bad magic)";
    case SP_EBADVER:
        return "unsupported layout version";
    case SP_ECHECKSUM:
        return "header checksum mismatch";
    default:
        return "malformed header";
    }
    if (h->hood != SP_SESS_HOOD || h->seg.generation == 0 ||
        geom_compute(h->nentries, h->max_value, h->min_shift, h->max_owners,
                     h->data_size, g) < 0)
        return "impossible geometry in the header";
    if (g->max_order != h->max_order || g->data_size != h->data_size ||
        g->index_off != h->index_off || g->admin_off != h->admin_off ||
        g->admin_size != h->admin_size || g->data_off != h->data_off ||
        g->total != h->seg.total_size)
        return "inconsistent geometry in the header";
    return NULL;
}

/* ---- mapping ---- */

static int ofd_lock(int fd, short type, off_t byte, int wait)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static void sess_unmap(sp_sess_t *s)
{
    if (s->base != NULL)
        munmap(s->base, s->map_size);
    s->base = NULL;
    s->hdr = NULL;
    s->live = NULL;
    s->ent = NULL;
}

static void sess_repair(void *arg, sp_pool_t *p);

static void pool_hooks(sp_sess_t *s)
{
    sp_pool_set_log(&s->pool, s->log, s->log_arg);
    sp_pool_set_repair(&s->pool, sess_repair, s);
}

static int sess_map(sp_sess_t *s, int fd, const sess_geom_t *g)
{
    sess_unmap(s);
    void *m =
        mmap(NULL, (size_t)g->total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return SP_ESYS;
    s->base = m;
    s->map_size = (size_t)g->total;
    s->hdr = m;
    s->live = (sp_sess_live_t *)(s->base + SP_SESS_LIVE_OFF);
    s->ent = (sp_sess_entry_t *)(s->base + g->index_off);
    s->nentries = g->nentries;
    s->mask = g->nentries - 1;
    s->hood = SP_SESS_HOOD;
    s->max_value = g->max_value;
    return 0;
}

/* Non-zero; only for file ids and sampling, never for session ids. */
static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v) || v == 0)
        v = ((uint64_t)sp_now_ns() ^ (uint64_t)getpid() << 32) | 1;
    return v;
}

/* Make fd an empty store of geometry g (in place) and map it. */
static int format_fd(sp_sess_t *s, int fd, const sess_geom_t *g)
{
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)g->total) < 0)
        return SP_ESYS;
    /* Reserve the blocks now: a full disk later would be a SIGBUS. */
    int e = posix_fallocate(fd, 0, (off_t)g->total);
    if (e == ENOSPC || e == EFBIG) {
        errno = e;
        return SP_ENOSPC;
    }
    int rc = sess_map(s, fd, g);
    if (rc < 0)
        return rc;
    uint64_t file_id = random_u64();
    rc = sp_pool_format(&s->pool, s->base + g->admin_off, g->admin_size,
                        s->base + g->data_off, g->data_size, g->min_shift,
                        g->max_order, g->max_owners, file_id);
    if (rc < 0)
        return rc;
    pool_hooks(s);
    sp_sess_hdr_t *h = s->hdr;
    h->nentries = g->nentries;
    h->hood = SP_SESS_HOOD;
    h->max_value = g->max_value;
    h->min_shift = (uint8_t)g->min_shift;
    h->max_order = (uint8_t)g->max_order;
    h->max_owners = (uint16_t)g->max_owners;
    h->index_off = g->index_off;
    h->admin_off = g->admin_off;
    h->admin_size = g->admin_size;
    h->data_off = g->data_off;
    h->data_size = g->data_size;
    /* The stamp goes last: a process killed before it leaves a header that
     * fails its check, and the next opener formats again. */
    sp_seghdr_stamp(&h->seg, SP_MAGIC_SESS, SP_SESS_VERSION, sizeof(*h),
                    g->total, file_id);
    s->fd = fd;
    return 0;
}

/* ---- validating entries (recovery, migration) ---- */

/* Why the entry at slot (in a file of geometry g mapped at base, maplen
 * bytes readable) cannot be kept, or NULL (then *recp is its record). */
static const char *entry_problem(const sess_geom_t *g,
                                 const unsigned char *base, uint64_t maplen,
                                 uint32_t slot, const sp_sess_entry_t *e,
                                 const sp_sess_rec_t **recp)
{
    uint64_t r = e->ref;
    if (!(r & SP_SESS_REF_PRESENT))
        return "malformed reference";
    uint32_t blk = ref_block(r);
    unsigned order = ref_order(r);
    if (order > g->max_order || (blk & ((1u << order) - 1)) != 0 ||
        (uint64_t)blk + (1u << order) > g->nblocks)
        return "reference out of range";
    uint64_t off = g->data_off + ((uint64_t)blk << g->min_shift);
    uint64_t cap = (uint64_t)1 << (g->min_shift + order);
    if (off + cap > maplen)
        return "value beyond the end of the file";
    const sp_sess_rec_t *rec = (const sp_sess_rec_t *)(base + off);
    if (rec->magic != SP_SESS_REC_MAGIC)
        return "no value record where the entry points";
    if (rec->length > cap - REC || rec->length > g->max_value)
        return "impossible value length";
    if (memcmp(rec->id, e->id, 16) != 0)
        return "value record of another session";
    if ((rec->version & SP_SESS_TAG_MASK) != ((r >> 40) & SP_SESS_TAG_MASK))
        return "reference and record versions differ";
    if (rec_crc(rec, rec + 1) != rec->crc)
        return "value checksum mismatch";
    if (((slot - home_of(e->id, g->nentries - 1)) & (g->nentries - 1)) >=
        SP_SESS_HOOD)
        return "entry outside its neighbourhood";
    *recp = rec;
    return NULL;
}

static void log_drop(const sp_sess_t *s, uint32_t slot, const uint8_t id[16],
                     const char *why, unsigned *logged)
{
    char pfx[9];
    if ((*logged)++ < DROP_LOG_MAX)
        slog(s,
             "SPS0010: session file %s: entry %u (session %s...) dropped: "
             "%s",
             s->path, slot, id_prefix(id, pfx), why);
}

/* Alone with a file of the configured geometry: keep every entry that
 * checks out and rebuild the allocator from them. */
static void recover(sp_sess_t *s, const sess_geom_t *g)
{
    uint64_t file_id = s->hdr->seg.generation;
    sp_pool_format(&s->pool, s->base + g->admin_off, g->admin_size,
                   s->base + g->data_off, g->data_size, g->min_shift,
                   g->max_order, g->max_owners, file_id);
    pool_hooks(s);
    sp_pool_rebuild_begin(&s->pool);
    int64_t now = sp_sess_now();
    unsigned dropped = 0, logged = 0, expired = 0;
    uint64_t kept = 0;
    /* Pass 1: each entry on its own. */
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        e->busy = 0;
        e->busy_start = 0;
        if (e->ref == 0) {
            memset(e, 0, sizeof(*e));
            continue;
        }
        const sp_sess_rec_t *rec = NULL;
        const char *why = entry_problem(g, s->base, g->total, i, e, &rec);
        if (why == NULL && e->expires != 0 && e->expires <= now) {
            expired++;
            memset(e, 0, sizeof(*e));
            continue;
        }
        if (why != NULL) {
            log_drop(s, i, e->id, why, &logged);
            dropped++;
            memset(e, 0, sizeof(*e));
            continue;
        }
        e->version = rec->version;
    }
    /* Pass 2: one entry per id (only damage makes two): keep the newer. */
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        if (e->ref == 0)
            continue;
        uint32_t h = home_of(e->id, s->mask);
        for (uint32_t k = 0; k < s->hood; k++) {
            uint32_t j = (h + k) & s->mask;
            sp_sess_entry_t *o = &s->ent[j];
            if (j == i || o->ref == 0 || memcmp(o->id, e->id, 16) != 0)
                continue;
            uint32_t loser =
                (o->version > e->version || (o->version == e->version && j < i))
                    ? i
                    : j;
            log_drop(s, loser, e->id, "duplicate id", &logged);
            dropped++;
            memset(&s->ent[loser], 0, sizeof(s->ent[loser]));
            if (loser == i)
                break;
        }
    }
    /* Pass 3: the blocks; two entries on one block lose the second. */
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        if (e->ref == 0)
            continue;
        uint64_t off = (uint64_t)ref_block(e->ref) << g->min_shift;
        if (sp_pool_rebuild_take(&s->pool, off, ref_order(e->ref)) < 0) {
            log_drop(s, i, e->id, "value block overlaps another entry's",
                     &logged);
            dropped++;
            memset(e, 0, sizeof(*e));
            continue;
        }
        kept++;
    }
    sp_pool_rebuild_end(&s->pool);
    s->live->nlive = kept;
    s->live->recoveries++;
    s->live->dropped_on_open += dropped;
    s->live->expired += expired;
    if (dropped > 0)
        slog(s,
             "SPS0011: session file %s: %llu sessions recovered, %u "
             "damaged entries dropped (%u listed above), %u expired",
             s->path, (unsigned long long)kept, dropped,
             logged < DROP_LOG_MAX ? logged : DROP_LOG_MAX, expired);
}

/* ---- the lock and the busy indicator ---- */

static int store_lock(sp_sess_t *s)
{
    return sp_pool_lock_bounded(&s->pool);
}

static void busy_give(sp_sess_entry_t *e)
{
    sp_store_relaxed(&e->busy_start, 0);
    /* Pairs with the waiter's CAS that set W in busy_wait(). */
    uint32_t old = sp_xchg(&e->busy, 0);
    if (old & W)
        sp_futex_wake(&e->busy, INT_MAX);
}

static int busy_try(sp_sess_entry_t *e, sp_ident_t me)
{
    uint32_t z = 0;
    if (!sp_cas(&e->busy, &z, (uint32_t)me.pid))
        return 0;
    sp_store_relaxed(&e->busy_start, me.start);
    return 1;
}

/* Is the holder named by busy word w (start time read after it) gone? */
static int holder_dead(const sp_sess_entry_t *e, uint32_t w, sp_ident_t me)
{
    /* Relaxed: read after an acquire load of the word, it is 0 or the
     * holder's own start time (see the top). */
    sp_ident_t h = {.pid = (int32_t)(w & ~W),
                    .start = sp_load_relaxed(&e->busy_start)};
    if (h.pid == me.pid)
        return h.start != me.start; /* a dead thread that had our tid */
    return !sp_ident_alive(&h);
}

/* The holder w is dead: replace its mark by newval (our tid, or 0 to just
 * free it).  Returns 1 if done. */
static int busy_reclaim(sp_sess_t *s, sp_sess_entry_t *e, uint32_t w,
                        uint32_t newval, sp_ident_t me)
{
    uint32_t cur = sp_load_acquire(&e->busy);
    if ((cur & ~W) != (w & ~W))
        return 0;
    /* Keep W when taking (others may sleep); drop it, and wake, when
     * freeing. */
    if (!sp_cas(&e->busy, &cur, newval ? newval | (cur & W) : 0))
        return 0;
    sp_store_relaxed(&e->busy_start, newval ? me.start : 0);
    if (newval == 0 && (cur & W))
        sp_futex_wake(&e->busy, INT_MAX);
    sp_stat_add(&s->live->busy_reclaimed, 1);
    char pfx[9];
    slog(s,
         "SPS0015: session store %s: session %s...: busy indicator of "
         "dead thread %u released",
         s->path, id_prefix(e->id, pfx), (unsigned)(w & ~W));
    return 1;
}

/* Wait while the indicator is w (another thread's).  Returns 0 to look
 * again, 1 if the holder is dead (the caller reclaims), SP_EBUSY. */
static int busy_wait(sp_sess_entry_t *e, uint32_t w, int64_t deadline,
                     sp_ident_t me)
{
    if (deadline == 0)
        return holder_dead(e, w, me) ? 1 : SP_EBUSY;
    if (!(w & W)) {
        /* Declare ourselves; pairs with the XCHG in busy_give(). */
        uint32_t x = w;
        if (!sp_cas(&e->busy, &x, w | W))
            return 0;
        w |= W;
    }
    int64_t now = sp_now_ns();
    if (now >= deadline)
        return holder_dead(e, w, me) ? 1 : SP_EBUSY;
    int64_t until = deadline;
    if (until - now > SP_POOL_LIVENESS_NS)
        until = now + SP_POOL_LIVENESS_NS;
    if (sp_futex_wait(&e->busy, w, until) == SP_ETIMEDOUT &&
        holder_dead(e, w, me))
        return 1;
    return 0;
}

/* Wait until e is not held by another thread, and with take, take it.
 * 0: free (and now ours with take); 1: the caller already holds it;
 * SP_EBUSY: the deadline passed. */
static int busy_get(sp_sess_t *s, sp_sess_entry_t *e, int64_t deadline,
                    int take)
{
    sp_ident_t me = sp_pool_thread_self();
    int waited = 0;
    for (;;) {
        uint32_t w = sp_load_acquire(&e->busy);
        if (w == 0) {
            if (!take)
                return 0;
            if (sp_cas(&e->busy, &w, (uint32_t)me.pid)) {
                sp_store_relaxed(&e->busy_start, me.start);
                return 0;
            }
            continue;
        }
        if ((w & ~W) == (uint32_t)me.pid &&
            sp_load_relaxed(&e->busy_start) == me.start)
            return 1;
        if (!waited) {
            waited = 1;
            sp_stat_add(&s->live->busy_waits, 1);
        }
        int rc = busy_wait(e, w, deadline, me);
        if (rc == SP_EBUSY) {
            sp_stat_add(&s->live->busy_timeouts, 1);
            return rc;
        }
        /* A dead holder: take its indicator over, or free it. */
        if (rc == 1 &&
            busy_reclaim(s, e, w, take ? (uint32_t)me.pid : 0, me) && take)
            return 0;
    }
}

/* ---- index ---- */

static sp_sess_entry_t *lookup(sp_sess_t *s, const uint8_t id[16],
                               uint32_t *slot)
{
    uint32_t h = home_of(id, s->mask);
    for (uint32_t k = 0; k < s->hood; k++) {
        uint32_t j = (h + k) & s->mask;
        sp_sess_entry_t *e = &s->ent[j];
        /* Acquire: the id written before the ref's release store. */
        if (sp_load_acquire(&e->ref) != 0 && memcmp(e->id, id, 16) == 0) {
            *slot = j;
            return e;
        }
    }
    return NULL;
}

static int entry_is(const sp_sess_entry_t *e, const uint8_t id[16])
{
    return sp_load_acquire(&e->ref) != 0 && memcmp(e->id, id, 16) == 0;
}

static int expired_at(const sp_sess_entry_t *e, int64_t now)
{
    int64_t x = sp_load_relaxed(&e->expires);
    return x != 0 && x <= now;
}

static uint64_t ref_off(const sp_sess_t *s, uint64_t r)
{
    return (uint64_t)ref_block(r) << s->pool.min_shift;
}

static int ref_sane(const sp_sess_t *s, uint64_t r)
{
    uint32_t blk = ref_block(r);
    unsigned order = ref_order(r);
    return (r & SP_SESS_REF_PRESENT) && order <= s->pool.max_order &&
           (blk & ((1u << order) - 1)) == 0 &&
           (uint64_t)blk + (1u << order) <= s->pool.nblocks;
}

/* Take e out of the index and free its block.  Lock held; the caller holds
 * e's indicator (or took it with busy_try). */
static void remove_locked(sp_sess_t *s, sp_sess_entry_t *e)
{
    uint64_t r = e->ref;
    if (r == 0)
        return;
    sp_store_release(&e->ref, 0);
    sp_store_relaxed(&s->live->nlive, s->live->nlive - 1);
    int rc = ref_sane(s, r)
                 ? sp_pool_free_locked(&s->pool, ref_off(s, r), SP_POOL_SHARED)
                 : SP_EINVAL;
    if (rc < 0) {
        char pfx[9];
        slog(s,
             "SPS0013: session store %s: session %s...: freeing its "
             "value block failed (%s)",
             s->path, id_prefix(e->id, pfx), sp_strerror(rc));
    }
}

static int remove_entry(sp_sess_t *s, sp_sess_entry_t *e)
{
    int rc = store_lock(s);
    if (rc < 0)
        return rc;
    remove_locked(s, e);
    sp_pool_unlock(&s->pool);
    return 0;
}

/* Find session id and hold its indicator.  *held_before: the caller held
 * it already (then it must not be given back here).  An expired session is
 * removed on the way. */
static int hold_entry(sp_sess_t *s, const uint8_t id[16], int64_t deadline,
                      uint32_t *slot, int *held_before)
{
    for (int tries = 0; tries < 8; tries++) {
        sp_sess_entry_t *e = lookup(s, id, slot);
        if (e == NULL)
            return SP_EUNKNOWN;
        int rc = busy_get(s, e, deadline, 1);
        if (rc < 0)
            return rc;
        *held_before = rc == 1;
        if (!entry_is(e, id)) {
            /* Removed (and maybe reused) before we got it: look again. */
            if (!*held_before)
                busy_give(e);
            continue;
        }
        if (expired_at(e, sp_sess_now())) {
            if (remove_entry(s, e) == 0)
                sp_stat_add(&s->live->expired, 1);
            if (!*held_before)
                busy_give(e);
            return SP_EUNKNOWN;
        }
        return 0;
    }
    return SP_EUNKNOWN;
}

/* ---- eviction and room ---- */

/* xorshift; threads of one process may race on it harmlessly (relaxed
 * atomics: a lost update only repeats a sample). */
static uint64_t rng_next(sp_sess_t *s)
{
    uint64_t x = __atomic_load_n(&s->rng, __ATOMIC_RELAXED) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    __atomic_store_n(&s->rng, x, __ATOMIC_RELAXED);
    return x;
}

static int64_t evict_key(const sp_sess_entry_t *e)
{
    int64_t x = sp_load_relaxed(&e->expires);
    return x == 0 ? INT64_MAX : x;
}

/* Evict the session nearest to expiry among up to 16 live, unheld ones
 * sampled from a random place (not slot `exclude`).  1 if one went (or
 * the sample should be retried), 0 if nothing is evictable. */
static int evict_one(sp_sess_t *s, uint32_t exclude)
{
    uint32_t start = (uint32_t)rng_next(s) & s->mask, best = NIL, seen = 0;
    int64_t best_key = 0;
    for (uint32_t k = 0; k < s->nentries && seen < 16; k++) {
        uint32_t j = (start + k) & s->mask;
        sp_sess_entry_t *e = &s->ent[j];
        /* Relaxed: a hint, re-checked under the indicator and the lock. */
        if (j == exclude || sp_load_relaxed(&e->ref) == 0 ||
            sp_load_relaxed(&e->busy) != 0)
            continue;
        seen++;
        int64_t key = evict_key(e);
        if (best == NIL || key < best_key) {
            best = j;
            best_key = key;
        }
    }
    if (best == NIL)
        return 0;
    sp_sess_entry_t *e = &s->ent[best];
    if (!busy_try(e, sp_pool_thread_self()))
        return 1;
    if (store_lock(s) == 0) {
        if (e->ref != 0) {
            remove_locked(s, e);
            sp_stat_add(&s->live->evicted, 1);
        }
        sp_pool_unlock(&s->pool);
    }
    busy_give(e);
    return 1;
}

/* A block of `bytes` for the calling process: the pool reaps dead owners
 * by itself; then expired sessions go (at most one full sweep a second);
 * then, with the evict policy, the sessions nearest to expiry. */
static int alloc_block(sp_sess_t *s, size_t bytes, uint64_t *off,
                       uint32_t exclude)
{
    int rc = sp_pool_alloc(&s->pool, bytes, off);
    if (rc != SP_ENOSPC)
        return rc;
    int64_t now = sp_sess_now();
    if (now - sp_load_relaxed(&s->live->last_sweep_ns) > SP_NSEC_PER_SEC &&
        sp_sess_expire(s) > 0) {
        rc = sp_pool_alloc(&s->pool, bytes, off);
        if (rc != SP_ENOSPC)
            return rc;
    }
    for (int k = 0; s->evict && k < 256 && rc == SP_ENOSPC; k++) {
        if (!evict_one(s, exclude))
            break;
        rc = sp_pool_alloc(&s->pool, bytes, off);
    }
    if (rc == SP_ENOSPC)
        sp_stat_add(&s->live->enospc, 1);
    return rc;
}

/* A free slot in id's neighbourhood, making room there if needed: expired
 * sessions first, then (evict policy) the one nearest to expiry.  Lock
 * held.  NIL if there is none. */
static uint32_t free_slot_locked(sp_sess_t *s, const uint8_t id[16])
{
    uint32_t h = home_of(id, s->mask), victim = NIL;
    int64_t now = sp_sess_now(), vkey = 0;
    sp_ident_t me = sp_pool_thread_self();
    for (uint32_t k = 0; k < s->hood; k++) {
        uint32_t j = (h + k) & s->mask;
        sp_sess_entry_t *e = &s->ent[j];
        if (e->ref == 0 && sp_load_acquire(&e->busy) == 0)
            return j;
    }
    for (uint32_t k = 0; k < s->hood; k++) {
        uint32_t j = (h + k) & s->mask;
        sp_sess_entry_t *e = &s->ent[j];
        if (e->ref == 0 || sp_load_relaxed(&e->busy) != 0)
            continue;
        if (expired_at(e, now) && busy_try(e, me)) {
            remove_locked(s, e);
            sp_stat_add(&s->live->expired, 1);
            busy_give(e);
            return j;
        }
        int64_t key = evict_key(e);
        if (victim == NIL || key < vkey) {
            victim = j;
            vkey = key;
        }
    }
    if (!s->evict || victim == NIL || !busy_try(&s->ent[victim], me))
        return NIL;
    remove_locked(s, &s->ent[victim]);
    sp_stat_add(&s->live->evicted, 1);
    busy_give(&s->ent[victim]);
    return victim;
}

/* ---- writing values ---- */

static unsigned order_of(const sp_sess_t *s, size_t bytes)
{
    uint64_t b = sp_pool_block_bytes(&s->pool, bytes);
    return (unsigned)__builtin_ctzll(b) - s->pool.min_shift;
}

static void write_record(sp_sess_t *s, uint64_t off, const uint8_t id[16],
                         uint64_t version, const void *val, size_t len)
{
    sp_sess_rec_t h;
    memset(&h, 0, sizeof(h));
    h.magic = SP_SESS_REC_MAGIC;
    h.length = (uint32_t)len;
    memcpy(h.id, id, 16);
    h.version = version;
    h.written_ns = sp_sess_now();
    h.crc = rec_crc(&h, val);
    unsigned char *p = sp_pool_ptr(&s->pool, off);
    if (len > 0)
        memcpy(p + REC, val, len);
    memcpy(p, &h, REC);
}

/* Step 3 of the protocol (see the top): the block at off (ours) becomes
 * e's value. */
static int publish(sp_sess_t *s, sp_sess_entry_t *e, uint64_t off,
                   unsigned order, uint64_t version, int64_t expires)
{
    uint32_t me;
    int rc = store_lock(s);
    if (rc < 0)
        return rc;
    if ((rc = sp_pool_self_owner_locked(&s->pool, &me)) < 0 ||
        (rc = sp_pool_give_locked(&s->pool, off, me, SP_POOL_SHARED)) < 0) {
        sp_pool_unlock(&s->pool);
        return rc;
    }
    uint64_t old = e->ref;
    /* The publication: pairs with the acquire loads of readers. */
    sp_store_release(&e->ref, ref_make(off, order, version, s->pool.min_shift));
    sp_store_relaxed(&e->version, version);
    if (expires != SP_SESS_KEEP_EXPIRY)
        sp_store_relaxed(&e->expires, expires);
    if (old != 0) {
        int frc =
            ref_sane(s, old)
                ? sp_pool_free_locked(&s->pool, ref_off(s, old), SP_POOL_SHARED)
                : SP_EINVAL;
        if (frc < 0) {
            char pfx[9];
            slog(s,
                 "SPS0013: session store %s: session %s...: freeing its "
                 "old value block failed (%s)",
                 s->path, id_prefix(e->id, pfx), sp_strerror(frc));
        }
    }
    sp_pool_unlock(&s->pool);
    return 0;
}

/* ---- reading values ---- */

/* One optimistic read of e's value (see the top).  SP_EAGAIN: changed
 * under us, look again. */
static int read_value(sp_sess_t *s, sp_sess_entry_t *e, const uint8_t id[16],
                      void *buf, size_t cap, size_t *len, uint64_t *refp)
{
    uint64_t r1 = sp_load_acquire(&e->ref);
    if (r1 == 0)
        return SP_EUNKNOWN;
    if (memcmp(e->id, id, 16) != 0)
        return SP_EAGAIN;
    *refp = r1;
    if (!ref_sane(s, r1))
        return SP_ECHECKSUM;
    uint64_t cap_b = (uint64_t)1 << (s->pool.min_shift + ref_order(r1));
    const unsigned char *p = sp_pool_ptr(&s->pool, ref_off(s, r1));
    sp_sess_rec_t h;
    memcpy(&h, p, REC);
    int bad = h.magic != SP_SESS_REC_MAGIC || h.length > cap_b - REC ||
              h.length > s->max_value;
    int small = !bad && h.length > cap;
    if (!bad && !small) {
        if (h.length > 0)
            memcpy(buf, p + REC, h.length);
        bad = memcmp(h.id, id, 16) != 0 || rec_crc(&h, buf) != h.crc;
    }
    /* Seqlock close: the copies above happen before this load. */
    sp_fence_acquire();
    if (sp_load_relaxed(&e->ref) != r1)
        return SP_EAGAIN;
    if (bad)
        return SP_ECHECKSUM;
    *len = h.length;
    return small ? SP_EMSGSIZE : 0;
}

/* A value that failed its checksum with the ref unchanged: drop it. */
static void drop_corrupt(sp_sess_t *s, sp_sess_entry_t *e, uint64_t r)
{
    sp_ident_t me = sp_pool_thread_self();
    int held = (sp_load_relaxed(&e->busy) & ~W) == (uint32_t)me.pid;
    char pfx[9];
    sp_stat_add(&s->live->checksum_errors, 1);
    slog(s,
         "SPS0016: session store %s: session %s...: stored value failed "
         "its checksum; session dropped",
         s->path, id_prefix(e->id, pfx));
    if (!held && !busy_try(e, me))
        return; /* its holder or the next reader will drop it */
    if (store_lock(s) == 0) {
        if (e->ref == r)
            remove_locked(s, e);
        sp_pool_unlock(&s->pool);
    }
    if (!held)
        busy_give(e);
}

/* ---- the repair hook: runs when the pool lock was taken over ---- */

struct mark_ctx {
    uint64_t *bits;
    unsigned shift;
};

static int keep_marked(void *arg, uint64_t off, unsigned order)
{
    struct mark_ctx *c = arg;
    uint64_t i = off >> c->shift;
    (void)order;
    return (int)((c->bits[i / 64] >> (i % 64)) & 1);
}

/* A process died holding the store lock, maybe between handing a block to
 * SP_POOL_SHARED and publishing it, or between unpublishing one and
 * freeing it.  Mark every block the index references, free every other
 * shared block.  Exact: the lock is held, so nobody publishes meanwhile. */
static void sess_repair(void *arg, sp_pool_t *p)
{
    sp_sess_t *s = arg;
    uint64_t words = ((uint64_t)p->nblocks + 63) / 64;
    struct mark_ctx c = {.bits = calloc(words, sizeof(uint64_t)),
                         .shift = p->min_shift};
    if (c.bits == NULL) {
        slog(s,
             "SPS0014: session store %s: no memory to sweep after a dead "
             "lock holder; unreferenced blocks stay until the next open",
             s->path);
        return;
    }
    uint64_t nlive = 0;
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        uint64_t r = sp_load_acquire(&e->ref);
        if (r == 0)
            continue;
        unsigned st, order;
        uint32_t owner;
        uint32_t blk = ref_block(r);
        if (!ref_sane(s, r) ||
            sp_pool_block_locked(p, ref_off(s, r), &st, &order, &owner) < 0 ||
            st != SP_POOL_BLK_USED || owner != SP_POOL_SHARED ||
            order != ref_order(r) || ((c.bits[blk / 64] >> (blk % 64)) & 1)) {
            char pfx[9];
            slog(s,
                 "SPS0017: session store %s: entry %u (session %s...) "
                 "refers to a block the allocator does not hold for it; "
                 "dropped",
                 s->path, i, id_prefix(e->id, pfx));
            sp_store_release(&e->ref, 0);
            continue;
        }
        c.bits[blk / 64] |= 1ull << (blk % 64);
        nlive++;
    }
    sp_store_relaxed(&s->live->nlive, nlive);
    long freed = sp_pool_sweep_shared_locked(p, keep_marked, &c);
    free(c.bits);
    if (freed > 0) {
        sp_stat_add(&s->live->swept_blocks, (uint64_t)freed);
        slog(s,
             "SPS0012: session store %s: %ld unpublished value block(s) "
             "of a process that died holding the store lock freed",
             s->path, freed);
    }
}

/* ---- migration to other sizes ---- */

/* Copy one good record into the (new, private) store. */
static int insert_raw(sp_sess_t *s, const sp_sess_entry_t *oe,
                      const sp_sess_rec_t *rec)
{
    uint32_t slot;
    if (lookup(s, oe->id, &slot) != NULL)
        return SP_EINVAL;
    size_t bytes = REC + rec->length;
    uint64_t off;
    int rc = store_lock(s);
    if (rc < 0)
        return rc;
    uint32_t j = free_slot_locked(s, oe->id);
    if (j == NIL ||
        sp_pool_alloc_locked(&s->pool, bytes, SP_POOL_SHARED, &off) < 0) {
        sp_pool_unlock(&s->pool);
        return SP_ENOSPC;
    }
    memcpy(sp_pool_ptr(&s->pool, off), rec, bytes);
    sp_sess_entry_t *e = &s->ent[j];
    memset(e, 0, sizeof(*e));
    memcpy(e->id, oe->id, 16);
    e->expires = oe->expires < 0 ? 0 : oe->expires;
    e->version = rec->version;
    sp_store_release(&e->ref, ref_make(off, order_of(s, bytes), rec->version,
                                       s->pool.min_shift));
    s->live->nlive++;
    sp_pool_unlock(&s->pool);
    return 0;
}

/* Alone with a good file of other sizes than configured: write a new file
 * of the configured sizes beside it with every good session, and rename
 * it over the old one.  On success s is bound to the new file, whose fd
 * holds both OFD locks exclusively. */
static int migrate(sp_sess_t *s, int oldfd, uint64_t fsize,
                   const sess_geom_t *old, const sess_geom_t *want)
{
    uint64_t maplen = fsize < old->total ? fsize : old->total;
    const unsigned char *ob =
        mmap(NULL, (size_t)maplen, PROT_READ, MAP_SHARED, oldfd, 0);
    if (ob == MAP_FAILED)
        return SP_ESYS;
    char tmp[sizeof(s->path) + 16];
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", s->path);
    int nfd = mkostemp(tmp, O_CLOEXEC);
    if (nfd < 0) {
        munmap((void *)ob, (size_t)maplen);
        return SP_ESYS;
    }
    struct stat st;
    if (fstat(oldfd, &st) == 0) {
        if (fchown(nfd, st.st_uid, st.st_gid) < 0) {
            /* not root: the new file keeps our ownership */
        }
        fchmod(nfd, st.st_mode & 07777);
    }
    int rc;
    if (ofd_lock(nfd, F_WRLCK, GATE_BYTE, 0) < 0 ||
        ofd_lock(nfd, F_WRLCK, USERS_BYTE, 0) < 0) {
        rc = SP_ESYS;
        goto fail;
    }
    if ((rc = format_fd(s, nfd, want)) < 0)
        goto fail;
    int evict = s->evict;
    s->evict = 0; /* what does not fit is counted, nothing is evicted */
    int64_t now = sp_sess_now();
    unsigned moved = 0, dropped = 0, nofit = 0, logged = 0;
    for (uint32_t i = 0; i < old->nentries; i++) {
        uint64_t eoff =
            old->index_off + ((uint64_t)i + 1) * sizeof(sp_sess_entry_t);
        if (eoff > maplen)
            break;
        const sp_sess_entry_t *oe =
            (const sp_sess_entry_t *)(ob + eoff - sizeof(sp_sess_entry_t));
        if (oe->ref == 0)
            continue;
        const sp_sess_rec_t *rec = NULL;
        const char *why = entry_problem(old, ob, maplen, i, oe, &rec);
        if (why == NULL && oe->expires != 0 && oe->expires <= now)
            continue;
        if (why != NULL) {
            log_drop(s, i, oe->id, why, &logged);
            dropped++;
        } else if (insert_raw(s, oe, rec) == 0) {
            moved++;
        } else {
            nofit++;
        }
    }
    s->evict = evict;
    munmap((void *)ob, (size_t)maplen);
    ob = NULL;
    if (rename(tmp, s->path) < 0) {
        rc = SP_ESYS;
        goto fail;
    }
    s->live->dropped_on_open += dropped;
    slog(s,
         "SPS0005: session file %s: rewritten for the configured sizes "
         "(entries %u -> %u, data %llu -> %llu bytes, largest value %u -> "
         "%u): %u sessions carried over, %u damaged, %u did not fit",
         s->path, old->nentries, want->nentries,
         (unsigned long long)old->data_size,
         (unsigned long long)want->data_size, old->max_value, want->max_value,
         moved, dropped, nofit);
    return 0;
fail:
    if (ob != NULL)
        munmap((void *)ob, (size_t)maplen);
    sess_unmap(s);
    unlink(tmp);
    close(nfd);
    s->fd = -1;
    return rc;
}

/* ---- open / close ---- */

static int attach_live(sp_sess_t *s, const sess_geom_t *g)
{
    int rc = sp_pool_attach(&s->pool, s->base + g->admin_off, g->admin_size,
                            s->base + g->data_off, g->data_size);
    if (rc == 0) {
        pool_hooks(s);
        return 0;
    }
    /* Other processes work on this allocator: keep its state, rewrite its
     * header, check and repair the lists. */
    slog(s,
         "SPS0007: session file %s: allocator header unusable (%s) while "
         "the file is in use; header rewritten, allocator checked",
         s->path, sp_strerror(rc));
    rc = sp_pool_restamp(s->base + g->admin_off, g->admin_size, g->data_size,
                         g->min_shift, g->max_order, g->max_owners,
                         s->hdr->seg.generation);
    if (rc == 0)
        rc = sp_pool_attach(&s->pool, s->base + g->admin_off, g->admin_size,
                            s->base + g->data_off, g->data_size);
    if (rc < 0)
        return rc;
    pool_hooks(s);
    if (sp_pool_check(&s->pool, 1) > 0 && store_lock(s) == 0) {
        sess_repair(s, &s->pool);
        sp_pool_unlock(&s->pool);
    }
    return 0;
}

/* With the gate held: verify, repair or create, and map.  Sets s->fd (a
 * new descriptor after a migration). */
static int open_locked(sp_sess_t *s, int fd, const sess_geom_t *want, int alone,
                       uint64_t fsize)
{
    sp_sess_hdr_t h;
    sess_geom_t have;
    const char *why = "empty file";
    memset(&h, 0, sizeof(h));
    if (fsize > 0) {
        ssize_t n = pread(fd, &h, sizeof(h), 0);
        if (n < 0)
            return SP_ESYS;
        why = header_problem(&h, (size_t)n, &have);
    }
    if (why != NULL) {
        if (!alone) {
            slog(s,
                 "SPS0002: session file %s: %s, and other processes "
                 "have it open: not opened",
                 s->path, why);
            return SP_ECHECKSUM;
        }
        if (fsize > 0)
            slog(s,
                 "SPS0003: session file %s: %s; recreated empty (all "
                 "sessions lost)",
                 s->path, why);
        return format_fd(s, fd, want);
    }
    if (!geom_same(&have, want)) {
        if (alone)
            return migrate(s, fd, fsize, &have, want);
        slog(s,
             "SPS0004: session file %s: sizes differ from the "
             "configuration; the file's are used until no process has it "
             "open",
             s->path);
    }
    if (fsize < have.total) {
        slog(s,
             "SPS0006: session file %s: truncated to %llu of %llu bytes; "
             "extended (sessions whose data was cut off are dropped)",
             s->path, (unsigned long long)fsize,
             (unsigned long long)have.total);
        if (ftruncate(fd, (off_t)have.total) < 0)
            return SP_ESYS;
    } else if (fsize > have.total && alone) {
        if (ftruncate(fd, (off_t)have.total) < 0)
            return SP_ESYS;
    }
    int rc = sess_map(s, fd, &have);
    if (rc < 0)
        return rc;
    s->fd = fd;
    if (alone) {
        recover(s, &have);
        return 0;
    }
    return attach_live(s, &have);
}

int sp_sess_open(sp_sess_t *s, const char *path, const sp_sess_conf_t *conf,
                 sp_sess_log_fn log, void *log_arg)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->log = log;
    s->log_arg = log_arg;
    sp_sess_conf_t c;
    memset(&c, 0, sizeof(c));
    if (conf != NULL)
        c = *conf;
    if (c.max_sessions == 0)
        c.max_sessions = 8192;
    if (c.data_bytes == 0)
        c.data_bytes = 64ull << 20;
    if (c.max_value == 0)
        c.max_value = 64u << 10;
    if (c.min_block == 0)
        c.min_block = 256;
    if (c.max_owners == 0)
        c.max_owners = 1024;
    if (c.mode == 0)
        c.mode = 0600;
    sess_geom_t want;
    if (path == NULL || strlen(path) >= sizeof(s->path) ||
        geom_from_conf(&c, &want) < 0)
        return SP_EINVAL;
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->evict = c.evict != 0;
    s->rng = random_u64();
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd =
            open(path, O_RDWR | O_CLOEXEC | (c.create ? O_CREAT : 0), c.mode);
        if (fd < 0)
            return SP_ESYS;
        struct stat a, b;
        if (ofd_lock(fd, F_WRLCK, GATE_BYTE, 1) < 0 || fstat(fd, &a) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return SP_ESYS;
        }
        if (stat(path, &b) < 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd); /* replaced by a migration meanwhile: again */
            continue;
        }
        int alone = ofd_lock(fd, F_WRLCK, USERS_BYTE, 0) == 0;
        int rc = open_locked(s, fd, &want, alone, (uint64_t)a.st_size);
        if (rc == 0) {
            /* Convert (alone) or take (not alone) the shared lock, then
             * let the next opener in. */
            if (ofd_lock(s->fd, F_RDLCK, USERS_BYTE, 0) < 0) {
                rc = SP_ESYS;
            } else {
                struct flock fl;
                memset(&fl, 0, sizeof(fl));
                fl.l_type = F_UNLCK;
                fl.l_whence = SEEK_SET;
                fl.l_start = GATE_BYTE;
                fl.l_len = 1;
                fcntl(s->fd, F_OFD_SETLK, &fl);
                if (s->fd != fd)
                    close(fd); /* the old file, renamed over */
                sp_stat_add(&s->live->opens, 1);
                return 0;
            }
        }
        int e = errno;
        sess_unmap(s);
        if (s->fd >= 0 && s->fd != fd)
            close(s->fd);
        close(fd);
        s->fd = -1;
        errno = e;
        return rc;
    }
    errno = EAGAIN;
    return SP_ESYS;
}

void sp_sess_close(sp_sess_t *s)
{
    flush_counts(s);
    sess_unmap(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* ---- operations ---- */

int sp_sess_create(sp_sess_t *s, const void *val, size_t len,
                   int64_t expires_ns, char *idout)
{
    if (idout == NULL || (val == NULL && len > 0) || expires_ns < 0)
        return SP_EINVAL;
    if (len > s->max_value)
        return SP_EMSGSIZE;
    for (int attempt = 0; attempt < 4; attempt++) {
        uint8_t id[16];
        if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
            return SP_ESYS;
        uint64_t off;
        int rc = alloc_block(s, REC + len, &off, NIL);
        if (rc < 0)
            return rc;
        write_record(s, off, id, 1, val, len);
        if ((rc = store_lock(s)) < 0) {
            sp_pool_free(&s->pool, off);
            return rc;
        }
        uint32_t slot, me;
        if (lookup(s, id, &slot) != NULL) {
            /* 128 random bits collided: never, but do not overwrite. */
            sp_pool_unlock(&s->pool);
            sp_pool_free(&s->pool, off);
            continue;
        }
        slot = free_slot_locked(s, id);
        if (slot == NIL) {
            sp_pool_unlock(&s->pool);
            sp_pool_free(&s->pool, off);
            sp_stat_add(&s->live->enospc, 1);
            return SP_ENOSPC;
        }
        if ((rc = sp_pool_self_owner_locked(&s->pool, &me)) < 0 ||
            (rc = sp_pool_give_locked(&s->pool, off, me, SP_POOL_SHARED)) < 0) {
            sp_pool_unlock(&s->pool);
            sp_pool_free(&s->pool, off);
            return rc;
        }
        sp_sess_entry_t *e = &s->ent[slot];
        memcpy(e->id, id, 16);
        sp_store_relaxed(&e->expires, expires_ns);
        sp_store_relaxed(&e->version, 1);
        /* The publication: the id and expiry above are visible to anyone
         * who sees the ref. */
        sp_store_release(&e->ref, ref_make(off, order_of(s, REC + len), 1,
                                           s->pool.min_shift));
        sp_store_relaxed(&s->live->nlive, s->live->nlive + 1);
        sp_pool_unlock(&s->pool);
        sp_stat_add(&s->live->creates, 1);
        format_id(id, idout);
        return 0;
    }
    return SP_ESYS;
}

int sp_sess_get(sp_sess_t *s, const char *idstr, void *buf, size_t cap,
                size_t *len, int64_t deadline_ns)
{
    uint8_t id[16];
    if (parse_id(idstr, id) < 0 || len == NULL || (buf == NULL && cap > 0))
        return SP_EINVAL;
    count_hot(&s->pend_gets, &s->live->gets);
    for (;;) {
        uint32_t slot;
        sp_sess_entry_t *e = lookup(s, id, &slot);
        if (e == NULL)
            break;
        int rc = busy_get(s, e, deadline_ns, 0);
        if (rc < 0)
            return rc;
        if (sp_load_relaxed(&e->expires) != 0 && expired_at(e, sp_sess_now())) {
            /* Expired on access: remove it if we can have it now. */
            sp_ident_t me = sp_pool_thread_self();
            int held = (sp_load_relaxed(&e->busy) & ~W) == (uint32_t)me.pid;
            if (held || busy_try(e, me)) {
                if (entry_is(e, id) && expired_at(e, sp_sess_now()) &&
                    remove_entry(s, e) == 0)
                    sp_stat_add(&s->live->expired, 1);
                if (!held)
                    busy_give(e);
            }
            break;
        }
        uint64_t r = 0;
        rc = read_value(s, e, id, buf, cap, len, &r);
        if (rc == SP_EAGAIN)
            continue;
        if (rc == SP_EUNKNOWN)
            break;
        if (rc == SP_ECHECKSUM)
            drop_corrupt(s, e, r);
        return rc;
    }
    count_hot(&s->pend_misses, &s->live->get_misses);
    return SP_EUNKNOWN;
}

int sp_sess_put(sp_sess_t *s, const char *idstr, const void *val, size_t len,
                int64_t expires_ns, int64_t deadline_ns)
{
    uint8_t id[16];
    if (parse_id(idstr, id) < 0 || (val == NULL && len > 0) ||
        (expires_ns < 0 && expires_ns != SP_SESS_KEEP_EXPIRY))
        return SP_EINVAL;
    if (len > s->max_value)
        return SP_EMSGSIZE;
    uint32_t slot;
    int held_before;
    int rc = hold_entry(s, id, deadline_ns, &slot, &held_before);
    if (rc < 0)
        return rc;
    sp_sess_entry_t *e = &s->ent[slot];
    uint64_t version = sp_load_relaxed(&e->version) + 1, off;
    rc = alloc_block(s, REC + len, &off, slot);
    if (rc == 0) {
        write_record(s, off, id, version, val, len);
        rc = publish(s, e, off, order_of(s, REC + len), version, expires_ns);
        if (rc < 0)
            sp_pool_free(&s->pool, off);
        else
            count_hot(&s->pend_puts, &s->live->puts);
    }
    if (!held_before)
        busy_give(e);
    return rc;
}

int sp_sess_delete(sp_sess_t *s, const char *idstr, int64_t deadline_ns)
{
    uint8_t id[16];
    if (parse_id(idstr, id) < 0)
        return SP_EINVAL;
    uint32_t slot;
    int held_before;
    int rc = hold_entry(s, id, deadline_ns, &slot, &held_before);
    if (rc < 0)
        return rc;
    sp_sess_entry_t *e = &s->ent[slot];
    rc = remove_entry(s, e);
    if (rc == 0)
        sp_stat_add(&s->live->deletes, 1);
    if (!held_before)
        busy_give(e);
    return rc;
}

int sp_sess_touch(sp_sess_t *s, const char *idstr, int64_t expires_ns,
                  int64_t deadline_ns)
{
    uint8_t id[16];
    if (parse_id(idstr, id) < 0 || expires_ns < 0)
        return SP_EINVAL;
    uint32_t slot;
    int held_before;
    int rc = hold_entry(s, id, deadline_ns, &slot, &held_before);
    if (rc < 0)
        return rc;
    sp_sess_entry_t *e = &s->ent[slot];
    sp_store_relaxed(&e->expires, expires_ns);
    sp_stat_add(&s->live->touches, 1);
    if (!held_before)
        busy_give(e);
    return 0;
}

int sp_sess_acquire(sp_sess_t *s, const char *idstr, int64_t deadline_ns,
                    sp_sess_hold_t *hold)
{
    uint8_t id[16];
    if (parse_id(idstr, id) < 0 || hold == NULL)
        return SP_EINVAL;
    uint32_t slot;
    int held_before;
    int rc = hold_entry(s, id, deadline_ns, &slot, &held_before);
    if (rc < 0)
        return rc;
    if (held_before)
        return SP_ESTATE;
    hold->slot = slot;
    hold->tid = sp_pool_thread_self().pid;
    memcpy(hold->id, id, 16);
    return 0;
}

int sp_sess_release(sp_sess_t *s, sp_sess_hold_t *hold)
{
    if (hold == NULL || hold->slot >= s->nentries)
        return SP_EINVAL;
    sp_ident_t me = sp_pool_thread_self();
    sp_sess_entry_t *e = &s->ent[hold->slot];
    uint32_t w = sp_load_acquire(&e->busy);
    if (hold->tid != me.pid || (w & ~W) != (uint32_t)me.pid ||
        sp_load_relaxed(&e->busy_start) != me.start ||
        memcmp(e->id, hold->id, 16) != 0)
        return SP_ESTATE;
    busy_give(e);
    hold->tid = 0;
    return 0;
}

long sp_sess_expire(sp_sess_t *s)
{
    sp_ident_t me = sp_pool_thread_self();
    int64_t now = sp_sess_now();
    long n = 0;
    sp_store_relaxed(&s->live->last_sweep_ns, now);
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        uint32_t w = sp_load_acquire(&e->busy);
        if (w != 0) {
            /* Held: by a live thread it stays; a dead one's is freed. */
            if ((w & ~W) == (uint32_t)me.pid || !holder_dead(e, w, me) ||
                !busy_reclaim(s, e, w, 0, me))
                continue;
        }
        /* Relaxed: hints, re-checked below with the indicator held. */
        if (sp_load_relaxed(&e->ref) == 0 || !expired_at(e, now) ||
            !busy_try(e, me))
            continue;
        if (sp_load_acquire(&e->ref) != 0 && expired_at(e, now) &&
            remove_entry(s, e) == 0)
            n++;
        busy_give(e);
    }
    if (n > 0)
        sp_stat_add(&s->live->expired, (uint64_t)n);
    sp_pool_reap(&s->pool);
    return n;
}

int sp_sess_iterate(sp_sess_t *s, sp_sess_iter_fn fn, void *arg)
{
    for (uint32_t i = 0; i < s->nentries; i++) {
        sp_sess_entry_t *e = &s->ent[i];
        uint64_t r = sp_load_acquire(&e->ref);
        if (r == 0 || !ref_sane(s, r))
            continue;
        sp_sess_info_t info;
        sp_sess_rec_t h;
        memcpy(&h, sp_pool_ptr(&s->pool, ref_off(s, r)), REC);
        uint8_t id[16];
        memcpy(id, e->id, 16);
        info.expires_ns = sp_load_relaxed(&e->expires);
        info.busy_tid = (int32_t)(sp_load_relaxed(&e->busy) & ~W);
        sp_fence_acquire(); /* seqlock close, as in read_value() */
        if (sp_load_relaxed(&e->ref) != r || h.magic != SP_SESS_REC_MAGIC ||
            memcmp(h.id, id, 16) != 0)
            continue;
        format_id(id, info.id);
        info.length = h.length;
        info.version = h.version;
        info.written_ns = h.written_ns;
        int rc = fn(arg, &info);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void sp_sess_stats(const sp_sess_t *s, sp_sess_stats_t *st)
{
    const sp_sess_live_t *l = s->live;
    memset(st, 0, sizeof(*st));
    st->entries = s->nentries;
    st->max_value = s->max_value;
    /* Relaxed loads: statistics. */
    st->live = sp_load_relaxed(&l->nlive);
    st->opens = sp_load_relaxed(&l->opens);
    st->recoveries = sp_load_relaxed(&l->recoveries);
    st->creates = sp_load_relaxed(&l->creates);
    st->gets = sp_load_relaxed(&l->gets) + sp_load_relaxed(&s->pend_gets);
    st->get_misses =
        sp_load_relaxed(&l->get_misses) + sp_load_relaxed(&s->pend_misses);
    st->puts = sp_load_relaxed(&l->puts) + sp_load_relaxed(&s->pend_puts);
    st->deletes = sp_load_relaxed(&l->deletes);
    st->touches = sp_load_relaxed(&l->touches);
    st->expired = sp_load_relaxed(&l->expired);
    st->evicted = sp_load_relaxed(&l->evicted);
    st->enospc = sp_load_relaxed(&l->enospc);
    st->busy_waits = sp_load_relaxed(&l->busy_waits);
    st->busy_timeouts = sp_load_relaxed(&l->busy_timeouts);
    st->busy_reclaimed = sp_load_relaxed(&l->busy_reclaimed);
    st->checksum_errors = sp_load_relaxed(&l->checksum_errors);
    st->dropped_on_open = sp_load_relaxed(&l->dropped_on_open);
    st->swept_blocks = sp_load_relaxed(&l->swept_blocks);
    sp_pool_stats(&s->pool, &st->pool);
}
