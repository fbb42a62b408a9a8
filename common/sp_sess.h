/*
 * sp_sess.h - the session store: sessions in a memory-mapped file shared by
 * every process that opens it, surviving restarts (DESIGN §3.5, seed 003;
 * layout in sp_sess-t.h, design notes in docs/sessions.md).
 *
 * A session is an opaque byte string (up to max_value bytes, CRC-32C
 * checked on every read) under an id of 128 random bits (getrandom), shown
 * as 32 hex digits.  Only sp_sess_create() makes ids: a caller can never
 * choose one (no session fixation).
 *
 * Busy indicator (seed 003 claims 9, 18, 27).  sp_sess_acquire() marks a
 * session as used by the calling thread (its tid + start time in the
 * entry) until sp_sess_release().  While another live thread holds it:
 *   - sp_sess_get() waits until deadline_ns, then returns SP_EBUSY;
 *   - sp_sess_put/delete/touch() wait the same way: each takes the
 *     indicator itself for the duration of the change;
 *   - sp_sess_acquire() waits the same way.
 * A deadline of 0 means "do not wait": SP_EBUSY at once.  The holder itself
 * calls get/put/delete/touch freely.  A waiter checks every
 * SP_POOL_LIVENESS_NS whether the holder still lives and releases the
 * indicator of a dead one (counted in busy_reclaimed and logged);
 * sp_sess_expire() does the same for every held session.
 *
 * Values are copy-on-write: a put writes the new value into a fresh block,
 * publishes it with one atomic store, then frees the old block.  A reader
 * never sees a mix, and a process killed at any point of a put leaves the
 * old or the new value.
 *
 * Errors: SP_EINVAL (malformed id, bad argument), SP_EUNKNOWN (no such
 * session, or it expired), SP_EBUSY (held by another thread past the
 * deadline), SP_EMSGSIZE (value over max_value; for get: buffer too small,
 * *len is the size needed), SP_ENOSPC (store full, see sp_sess_conf_t.evict),
 * SP_ECHECKSUM (the stored value failed its checksum: the session has been
 * dropped and the drop logged), SP_ESYS (errno tells), SP_ETIMEDOUT (the
 * store's lock could not be had: a live process is stuck holding it).
 *
 * Threads: a handle may be used by several threads at once; the busy
 * indicator distinguishes threads.  Processes: open the file in each, or
 * open once and fork (the handle and its file lock are inherited).
 */
#ifndef SP_SESS_H
#define SP_SESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sp_pool.h"
#include "sp_sess-t.h"

#define SP_SESS_ID_LEN 32             /* hex digits */
#define SP_SESS_KEEP_EXPIRY INT64_MIN /* put/touch: leave the expiry alone */

typedef void (*sp_sess_log_fn)(void *arg, const char *msg);

/* Sizes and policy.  0 fields take the defaults shown. */
typedef struct sp_sess_conf {
    uint32_t max_sessions; /* index entries = next power of two >= 2x this
                              (default 8192 sessions, 16384 entries) */
    uint64_t data_bytes;   /* value storage (default 64 MiB) */
    uint32_t max_value;    /* largest value (default 64 KiB) */
    uint32_t min_block;    /* smallest block, a power of two (default 256) */
    uint32_t max_owners;   /* processes that may hold blocks at once
                              (default 1024) */
    int create;            /* create the file if it does not exist */
    int evict;             /* 1: when full, evict the sessions nearest to
                              expiry; 0: SP_ENOSPC (default) */
    mode_t mode;           /* permissions of a new file (default 0600) */
} sp_sess_conf_t;

/* A process-local handle. */
typedef struct sp_sess {
    int fd;
    unsigned char *base;
    size_t map_size;
    sp_sess_hdr_t *hdr;
    sp_sess_live_t *live;
    sp_sess_entry_t *ent;
    sp_pool_t pool;
    uint32_t nentries;
    uint32_t mask;
    uint32_t hood;
    uint32_t max_value;
    int evict;
    sp_sess_log_fn log;
    void *log_arg;
    char path[256];                             /* for log messages */
    uint64_t rng;                               /* eviction sampling */
    uint64_t pend_gets, pend_misses, pend_puts; /* batched counters */
} sp_sess_t;

/* A held busy indicator (sp_sess_acquire). */
typedef struct sp_sess_hold {
    uint32_t slot;
    int32_t tid;
    uint8_t id[16];
} sp_sess_hold_t;

typedef struct sp_sess_info {
    char id[SP_SESS_ID_LEN + 1];
    uint32_t length;
    uint64_t version;
    int64_t expires_ns; /* 0 = never */
    int64_t written_ns;
    int32_t busy_tid; /* 0 = not held */
} sp_sess_info_t;

/* Return non-zero to stop. */
typedef int (*sp_sess_iter_fn)(void *arg, const sp_sess_info_t *info);

typedef struct sp_sess_stats {
    uint32_t entries; /* index capacity */
    uint64_t live;    /* sessions stored */
    uint32_t max_value;
    uint64_t opens, recoveries, creates, gets, get_misses, puts, deletes,
        touches, expired, evicted, enospc, busy_waits, busy_timeouts,
        busy_reclaimed, checksum_errors, dropped_on_open, swept_blocks;
    sp_pool_stats_t pool;
} sp_sess_stats_t;

/* Open (and with conf->create, create) the session file at path.
 *
 * Opening takes a short exclusive lock on the file (OFD lock on byte 0) and
 * then holds a shared lock (byte 1) until close, so an opener can tell
 * whether any other process has the file open.  When none has, it verifies
 * and repairs: a header that fails its check makes it recreate the file
 * empty; a file shorter than its header says is extended; a file of other
 * sizes than conf asks is rewritten at the new sizes with its sessions
 * carried over; every index entry whose record is out of range, of
 * another session, or fails its checksum is dropped; expired sessions are
 * dropped; the allocator state is rebuilt from the surviving entries.
 * What was wrong is reported through log (one line per problem, unique
 * SPSnnnn tags).  When other processes have the file open, the opener
 * attaches to the live state as it is (sizes from the file).
 * Returns 0, SP_EINVAL (bad conf), SP_ESYS (open/mmap/... failed; errno),
 * SP_ECHECKSUM (the header is unusable and other processes use the file:
 * it cannot be recreated under them). */
int sp_sess_open(sp_sess_t *s, const char *path, const sp_sess_conf_t *conf,
                 sp_sess_log_fn log, void *log_arg);

/* Unmap and close.  Busy indicators still held by the caller stay held
 * until the thread dies; release them first. */
void sp_sess_close(sp_sess_t *s);

/* New session with value val (len bytes) expiring at expires_ns
 * (CLOCK_REALTIME ns, 0 = never).  Writes the id to id (33 bytes, NUL
 * terminated). */
int sp_sess_create(sp_sess_t *s, const void *val, size_t len,
                   int64_t expires_ns, char *id);

/* Copy the value of session id into buf (cap bytes); *len is its length.
 * Busy-aware (see the top).  An expired session is removed and reported as
 * SP_EUNKNOWN. */
int sp_sess_get(sp_sess_t *s, const char *id, void *buf, size_t cap,
                size_t *len, int64_t deadline_ns);

/* Replace the value (copy-on-write).  expires_ns: new expiry, 0 = never,
 * SP_SESS_KEEP_EXPIRY = unchanged. */
int sp_sess_put(sp_sess_t *s, const char *id, const void *val, size_t len,
                int64_t expires_ns, int64_t deadline_ns);

int sp_sess_delete(sp_sess_t *s, const char *id, int64_t deadline_ns);

/* Set a new expiry (extend or shorten) without rewriting the value. */
int sp_sess_touch(sp_sess_t *s, const char *id, int64_t expires_ns,
                  int64_t deadline_ns);

/* Take the busy indicator of session id for the calling thread.
 * SP_ESTATE if this thread already holds it. */
int sp_sess_acquire(sp_sess_t *s, const char *id, int64_t deadline_ns,
                    sp_sess_hold_t *hold);
/* Give it back.  SP_ESTATE if the calling thread does not hold it (e.g. it
 * was reclaimed because the holder was thought dead). */
int sp_sess_release(sp_sess_t *s, sp_sess_hold_t *hold);

/* Sweep: remove every session past its expiry that nobody holds, release
 * the indicators of dead holders, sweep the blocks of dead processes.
 * Returns how many sessions expired. */
long sp_sess_expire(sp_sess_t *s);

/* Call fn for every live session (status pages, debugging).  Lock-free
 * snapshot: sessions changing meanwhile may be seen old or new. */
int sp_sess_iterate(sp_sess_t *s, sp_sess_iter_fn fn, void *arg);

void sp_sess_stats(const sp_sess_t *s, sp_sess_stats_t *st);

/* The clock of expiry times: CLOCK_REALTIME in ns. */
int64_t sp_sess_now(void);

#endif /* SP_SESS_H */
