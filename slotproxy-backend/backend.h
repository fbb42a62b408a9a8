/*
 * backend.h - slotproxy-backend's internal structures, shared by main.c,
 * dispatcher.c and worker.c.
 *
 * Process model.  One dispatcher process (the daemon itself) owns the
 * listeners, every link, the stream table and the queue, in a single
 * epoll loop.  It forks `Workers` worker processes; worker i owns slot i
 * of a slot table in anonymous shared memory for its whole life:
 *
 *   dispatcher                                   worker i
 *   ----------                                   --------
 *   REQUEST_HEAD (+BODY, END) -> out ring i
 *   slot i: IDLE -> QUEUED  (wakes the worker)   QUEUED -> ACCEPTED (quiet)
 *   request BODY frames -> out ring, CREDIT      runs the handler:
 *   in ring -> ACCEPT, RESPONSE_HEAD/BODY/END        reads out ring
 *      frames (BODY only within the frontend's       writes in ring; notifies
 *      credit); ACCEPT also from accept_scan()       at flush, before waiting,
 *      at most ACCEPT_DELAY_NS after assignment      when full, for large
 *                                                    pieces and at the end
 *   IDLE and in ring drained: stream over        read and answered to END:
 *                                                    -> IDLE by itself, notify
 *   DONE and in ring drained: reset, -> IDLE     otherwise -> DONE, notify,
 *      (or -> CANCELLED: "retire")                   waits for IDLE (next) or
 *                                                    CANCELLED (exit)
 *
 * Worker -> dispatcher wake-ups use the table's ready bitmap and doorbell;
 * dispatcher -> worker wake-ups are the slot's state mark and the rings'
 * futexes.  ACCEPT reaches the frontend with the response or within
 * ACCEPT_DELAY_NS of the worker taking the stream (docs/decisions.md).
 */
#ifndef SPB_BACKEND_H
#define SPB_BACKEND_H

#include <stdint.h>
#include <sys/types.h>

#include "apps/apps.h"
#include "config.h"
#include "sp_link.h"
#include "sp_proc.h"
#include "sp_shmlink.h"
#include "sp_slots.h"

#define SPB_VERSION "0.1.0"

/* Ring message types between dispatcher and worker are frame types. */

enum spb_worker_state {
    SPB_W_EMPTY = 0, /* no process in this slot */
    SPB_W_STARTING,  /* forked, not yet IDLE */
    SPB_W_IDLE,
    SPB_W_BUSY,      /* has a stream */
    SPB_W_RETIRING   /* told to exit (CANCELLED) */
};

typedef struct spb_stream spb_stream_t;

typedef struct spb_worker {
    pid_t pid;
    uint32_t slot;
    uint64_t gen;   /* configuration generation it runs */
    int state;
    spb_stream_t *stream;
    uint64_t served;
    int64_t started_ns;
    int timed_out;  /* killed for RequestTimeout */
    int stopping;   /* SIGTERM/KILL sent at shutdown */
    sp_ring_t out;  /* dispatcher produces */
    sp_ring_t in;   /* dispatcher consumes */
} spb_worker_t;

/* Worker process entry: never returns. */
void spb_worker_main(const spb_config_t *cfg, sp_handler_t *handlers,
                     size_t nhandlers, sp_slots_t *slots, uint32_t slot,
                     sp_ident_t master);

/* Dispatcher: runs until stopped; returns the exit status.  If ready_fd
 * is not -1, one byte goes there once the listeners are open and the
 * workers started (0) or start-up failed (1), and it is closed. */
int spb_dispatcher_run(const char *config_path, spb_config_t *cfg,
                       int ready_fd);

#endif
