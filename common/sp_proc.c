/*
 * sp_proc.c - clocks and process identity (see sp_proc.h).
 */
#include "sp_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t sp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SP_NSEC_PER_SEC + ts.tv_nsec;
}

int64_t sp_deadline_ms(int64_t ms)
{
    return sp_now_ns() + ms * SP_NSEC_PER_MSEC;
}

/* Reads /proc/PID/stat; fills *state with the state letter.  The comm field
 * may contain spaces and parentheses, so parse from the last ')'. */
static uint64_t proc_stat(pid_t pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return 0;
    p += 2;
    *state = *p;
    /* p is at field 3 (state); starttime is field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return 0;
        p++;
    }
    return strtoull(p, NULL, 10);
}

uint64_t sp_proc_starttime(pid_t pid)
{
    char state = 0;
    return proc_stat(pid, &state);
}

sp_ident_t sp_ident_self(void)
{
    static sp_ident_t cached;
    pid_t pid = getpid();
    if (cached.pid != pid) {
        sp_ident_t id = {.pid = pid, .start = sp_proc_starttime(pid)};
        cached = id;
    }
    return cached;
}

int sp_ident_alive(const sp_ident_t *id)
{
    if (id->pid <= 0)
        return 0;
    char state = 0;
    uint64_t start = proc_stat(id->pid, &state);
    if (start == 0) {
        /* No /proc entry: fall back to kill(0) (e.g. /proc not mounted). */
        if (kill(id->pid, 0) == 0 || errno == EPERM)
            return id->start == 0;
        return 0;
    }
    if (state == 'Z' || state == 'X')
        return 0;
    return id->start == 0 || id->start == start;
}

int sp_proc_sched_batch(int batch)
{
    struct sched_param sp = {.sched_priority = 0};

    return sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_OTHER, &sp);
}
