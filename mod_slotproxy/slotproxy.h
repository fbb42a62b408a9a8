/*
 * slotproxy.h - mod_slotproxy's internal contract, shared by its parts:
 *
 *   mod_slotproxy.c  httpd glue: directives, post_config (slot table,
 *                    forking the proxy child, one per generation), the
 *                    status pages, hooks
 *   handler.c        the content handler run by httpd workers: admission,
 *                    slot claim, request head and body into the slot's
 *                    input ring, response out of its output ring
 *   proxy.c          the proxy child: links to the backends, multiplexing
 *                    every slot over them (plain C + common/, no APR)
 *
 * One anonymous shared segment per httpd generation holds the slot table
 * (common/sp_slots) followed by spm_shared_t (below).  Everything in it is
 * inherited by the children and the proxy child through fork.
 *
 * Handler <-> proxy protocol, per request (ring message types are frame
 * types):
 *
 *   handler (httpd worker)                 proxy child
 *   ----------------------                 -----------
 *   admission (spm_admit), claim slot
 *   slot->backend = index
 *   in ring: REQUEST_HEAD
 *   WRITING -> QUEUED, notify
 *                                          picks a usable link, sends the
 *                                          head (keeps a copy for a replay)
 *                                          QUEUED -> SENT
 *   in ring: BODY..., END (only with       forwards BODY within the
 *   SP_REQ_BODY), notify after each        backend's credit, sets
 *                                          BODY_CONSUMED, CREDIT from the
 *                                          backend; END
 *                                          ACCEPT      -> ACCEPTED
 *                                          RESPONSE_HEAD into out ring,
 *                                            -> RESPONDING
 *   reads out ring: head, BODY...          BODY into out ring (CREDIT back
 *   (notify when it consumed, if the         to the backend as bytes enter
 *    proxy polls for room)                   the ring)
 *                                          END (or ABORT with a status
 *                                          hint) into out ring, -> DONE,
 *                                          forgets the stream
 *   END/ABORT read; waits for DONE;
 *   release slot, spm_release
 *
 *   client gone: slot -> CANCELLED,        sees CANCELLED: ABORT to the
 *   notify, wait for DONE (bounded)        backend, -> DONE
 *
 * Errors the proxy reports in the out ring as ABORT(code, status):
 *   503 backend unreachable (no link up within connect_timeout), 504 the
 *   backend's request timeout, 502 link lost after ACCEPT / protocol error
 *   / worker crash.  A request that never reached ACCEPTED and whose body
 *   the proxy did not consume is replayed once on another link.
 */
#ifndef SLOTPROXY_H
#define SLOTPROXY_H

#include <stdint.h>

#include "sp_atomic.h"
#include "sp_mark-t.h"
#include "sp_net.h"
#include "sp_slots.h"

#define SPM_MAX_BACKENDS 32
#define SPM_MAX_LINKS 16
#define SPM_SHARED_MAGIC 0x53504d53u /* "SPMS" */

enum spm_link_state {
    SPM_LINK_DOWN = 0,
    SPM_LINK_CONNECTING = 1,
    SPM_LINK_HANDSHAKE = 2,
    SPM_LINK_UP = 3,
    SPM_LINK_DRAINING = 4 /* GOAWAY seen: no new streams */
};

/* A backend as configured (process-private, inherited by fork). */
typedef struct spm_backend_conf {
    char name[64];
    char address[256];
    sp_addr_t addr;
    int links;              /* persistent links [2] */
    int connect_timeout_ms; /* [3000] */
    int timeout_ms;         /* request timeout [300000] */
    int ping_interval_ms;   /* [10000] */
    int retry_ms;           /* reconnect backoff start [250]; doubles to 8 s */
    char secret_file[512];
    uint8_t secret[1024];
    size_t secret_len;
} spm_backend_conf_t;

/* Global settings (process-private, inherited). */
typedef struct spm_conf {
    spm_backend_conf_t backends[SPM_MAX_BACKENDS];
    int nbackends;
    uint32_t max_inflight;   /* 0 = number of slots */
    uint32_t queue_len;      /* waiters beyond max_inflight [100] */
    int queue_timeout_ms;    /* [5000] */
    uint32_t buffer_size;    /* per ring [65536] */
    uint32_t overflow_slots; /* [64] */
    uint32_t max_payload;    /* link frames [65536] */
    int sched_batch;         /* proxy child SCHED_BATCH [1] */
    uint32_t poll_us;        /* SlotProxyPollTime [200], 0 = never poll */
} spm_conf_t;

#define SPM_POLL_US_MAX 10000

/* Shared status of one link (the proxy writes, the status pages read;
 * all relaxed: figures for humans). */
typedef struct spm_link_shared {
    uint32_t state;
    uint32_t streams;
    int64_t rtt_ns;
    int64_t up_since_ns;
    uint64_t connects;
    uint64_t failures;
    uint64_t frames_in, frames_out;
    uint64_t bytes_in, bytes_out;
} spm_link_shared_t;

typedef struct spm_backend_shared {
    uint32_t links_up;
    uint32_t outstanding; /* streams open on its links */
    uint64_t requests;
    uint64_t retries;
    uint64_t answered_502, answered_503, answered_504;
    spm_link_shared_t link[SPM_MAX_LINKS];
} spm_backend_shared_t;

typedef struct spm_shared {
    uint32_t magic;
    uint32_t nbackends;
    /* admission control, handler side (spm_admit/spm_release) */
    uint32_t admitted;      /* futex word: requests admitted right now */
    uint32_t queued;        /* handlers waiting for admission */
    uint32_t admit_waiting; /* someone sleeps on `admitted` */
    uint32_t pad0;
    uint64_t admitted_total;
    uint64_t rejected_full;    /* queue full: 503 at once */
    uint64_t rejected_timeout; /* queue wait expired: 503 */
    uint64_t client_aborts;
    /* the proxy child */
    int32_t proxy_pid;
    uint32_t pad1;
    uint64_t proxy_start;
    uint64_t proxy_restarts;
    uint64_t generation;
    /* Response data the proxy's 50 ms tick had to move into a ring that
     * had room: a missed wake-up (should stay 0; tests check it). */
    uint64_t output_stalls;
    spm_backend_shared_t backends[SPM_MAX_BACKENDS];
} spm_shared_t;

/* Bytes of the whole segment: slot table + spm_shared_t. */
size_t spm_segment_bytes(const spm_conf_t *conf, uint32_t nregular);

/* Lay out the segment (slot table + shared area) in mem. */
int spm_segment_create(const spm_conf_t *conf, void *mem, size_t size,
                       uint32_t nregular, uint64_t generation,
                       sp_slots_t *slots, spm_shared_t **shared);

/* Admission: take a place among max_inflight, waiting in a bounded queue
 * up to queue_timeout_ms.  0, SP_ENOSPC (queue full), SP_ETIMEDOUT. */
int spm_admit(spm_shared_t *sh, const spm_conf_t *conf, uint32_t limit);
void spm_release(spm_shared_t *sh);

/* The proxy child's main loop.  Never returns. */
void spm_proxy_main(const spm_conf_t *conf, sp_slots_t *slots,
                    spm_shared_t *shared, sp_ident_t parent);

/* session.c: the proxy child sweeps the session store (once a second). */
void spm_sess_tick(int64_t now_ns);

#endif /* SLOTPROXY_H */
