/*
 * spt.h - integration test harness: start the real slotproxy-backend with
 * a generated configuration in a fresh temporary directory, find its
 * listening addresses in its log, stop it, and check its log for
 * unexpected [error]/[warn] lines.
 *
 * Paths come from the environment the Makefile sets: SP_BACKEND (the
 * binary), SP_SAMPLE_PLUGIN, SP_TOP (the source tree, for conf/cgi-bin).
 */
#ifndef SPT_H
#define SPT_H

#include <sys/types.h>

typedef struct spt_backend {
    pid_t pid;
    char dir[256];
    char conf[320];
    char log[320];
    char unix_addr[340]; /* "unix:/tmp/spt-x/b.sock" */
    char tcp_addr[64];   /* "tcp://127.0.0.1:PORT" */
    char secret[64];     /* "" when no SecretFile */
} spt_backend_t;

/* Start a backend; extra is appended to the generated configuration
 * (directives override the defaults above them: last wins).  Fails the
 * current test on any problem. */
void spt_backend_start(spt_backend_t *b, const char *extra);

/* SIGTERM, wait (up to 20 s), remove the directory.  Returns the exit
 * status (0 = clean). */
int spt_backend_stop(spt_backend_t *b);

/* Send a signal to the dispatcher. */
void spt_backend_signal(spt_backend_t *b, int sig);

/* Count log lines at [error] or [warn] whose tag is not listed in allowed
 * (NULL-terminated); prints each to stderr. */
int spt_log_unexpected(const spt_backend_t *b, const char *const *allowed);

/* Number of log lines containing needle. */
int spt_log_count(const spt_backend_t *b, const char *needle);

/* Resident set size in KiB of pid and all its descendants. */
long spt_rss_tree_kb(pid_t pid);

/* Pids of the dispatcher's direct children (workers); returns count. */
int spt_children(pid_t pid, pid_t *out, int max);

/* Environment lookups with a test failure when missing. */
const char *spt_env(const char *name);

#endif
