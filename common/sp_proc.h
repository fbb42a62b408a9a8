/*
 * sp_proc.h - clocks and process identity.
 *
 * Deadlines everywhere in slotproxy are absolute CLOCK_MONOTONIC times in
 * nanoseconds (int64_t).  A deadline of 0 means "do not wait at all".
 *
 * A process is identified by (pid, start time): the start time, read from
 * /proc/PID/stat field 22 in clock ticks since boot, defeats pid reuse, so a
 * reaper never mistakes a new process that got a dead owner's pid for the
 * owner.
 */
#ifndef SP_PROC_H
#define SP_PROC_H

#include <stdint.h>
#include <sys/types.h>

#define SP_NSEC_PER_SEC 1000000000LL
#define SP_NSEC_PER_MSEC 1000000LL

typedef struct sp_ident {
    int32_t pid;
    uint32_t pad;
    uint64_t start; /* /proc/PID/stat starttime, 0 = unknown */
} sp_ident_t;

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t sp_now_ns(void);

/* now + ms, in the deadline clock. */
int64_t sp_deadline_ms(int64_t ms);

/* Start time of pid (clock ticks since boot), or 0 if it does not exist. */
uint64_t sp_proc_starttime(pid_t pid);

/* The calling process's identity (cached per pid, fork-safe). */
sp_ident_t sp_ident_self(void);

/* 1 if the process named by id still exists (same pid, same start time),
 * 0 if it is gone.  A zombie counts as gone: it will never release
 * anything. */
int sp_ident_alive(const sp_ident_t *id);

/* The calling thread's scheduling policy: batch != 0 -> SCHED_BATCH, 0 ->
 * SCHED_OTHER (priority 0 either way; nice is kept).  A SCHED_BATCH task
 * does not preempt the running task when it is woken: the proxy child, the
 * dispatcher and the workers then run after the process that woke them has
 * gone to sleep, instead of taking the CPU from it in the middle of its
 * work and handing it back a moment later (docs/decisions.md).  Threads
 * and children created later inherit the policy.  An unprivileged process
 * may switch between the two, not away from SCHED_IDLE (EPERM); a
 * real-time policy is replaced.  0, or -1 with errno. */
int sp_proc_sched_batch(int batch);

#endif /* SP_PROC_H */
