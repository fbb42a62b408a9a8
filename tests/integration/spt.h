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
    char shm_addr[340];  /* "shm:/tmp/spt-x/b.shm" */
    char secret[64];     /* "" when no SecretFile */
} spt_backend_t;

/* Start a backend; extra is appended to the generated configuration
 * (directives override the defaults above them: last wins).  Fails the
 * current test on any problem.
 *
 * Cleanup on failure: the backend is started in the test's own process
 * group, which Check kills (SIGKILL to the group) as soon as a forked test
 * ends, however it ends; for CK_FORK=no an atexit handler kills every
 * backend still running (dispatcher and workers). */
void spt_backend_start(spt_backend_t *b, const char *extra);

/* The same with a SecretFile: secret is written to DIR/secret, mode 0600,
 * and "SecretFile DIR/secret" appended (b->secret keeps it). */
void spt_backend_start_secret(spt_backend_t *b, const char *extra,
                              const char *secret);

/* Append text to the configuration file (for a reload). */
void spt_backend_append_conf(spt_backend_t *b, const char *text);

/* SIGTERM, wait (up to 20 s), remove the directory.  Returns the exit
 * status (0 = clean). */
int spt_backend_stop(spt_backend_t *b);

/* The same, but the directory (configuration, log, unix socket path)
 * stays: spt_backend_restart() starts the backend again on the same unix
 * address (the tcp port is a new ephemeral one; b->tcp_addr follows). */
int spt_backend_stop_keep(spt_backend_t *b);
void spt_backend_restart(spt_backend_t *b);

/* Stop the backend (spt_backend_stop), assert a clean exit (status 0)
 * and no unexpected [error]/[warn] line in its whole log, stop included
 * (allowed as for spt_log_unexpected); the directory is removed only when
 * both hold, so a failing test leaves its log behind. */
void spt_backend_finish(spt_backend_t *b, const char *const *allowed);

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

/* Send sig to pid and, depth first, to every descendant. */
void spt_kill_tree(pid_t pid, int sig);

/* The atexit net: processes registered here (backends, httpd parents) are
 * SIGKILLed with their descendants if the runner exits while they live. */
void spt_live_add(pid_t pid);
void spt_live_del(pid_t pid);

/* Wait up to timeout_ms until pid has exactly n children; returns the
 * count last seen. */
int spt_wait_children(pid_t pid, int n, int timeout_ms);

/* Wait until pid has exactly n children and none of them is in
 * old[0..nold): a whole new generation.  1 if so within timeout_ms. */
int spt_new_generation(pid_t pid, int n, const pid_t *old, int nold,
                       int timeout_ms);

/* "SCHED_BATCH" ... for a policy number, "?" for others. */
const char *spt_policy_name(int p);

/* Set this (forked test) process's scheduling policy, which what it
 * starts next inherits; fails the test if refused. */
void spt_launch_under(int policy);

/* Every thread of pid runs policy (and there is at least one); who names
 * pid in the failure message. */
void spt_expect_policy(pid_t pid, int policy, const char *who);

/* Wait up to timeout_ms until the log holds at least n lines containing
 * needle; returns the count last seen. */
int spt_wait_log(const spt_backend_t *b, const char *needle, int n,
                 int timeout_ms);

/* Milliseconds since an arbitrary start (monotonic). */
double spt_ms(void);

/* Run the backend binary with args (NULL-terminated, argv[0] excluded);
 * stdout+stderr into out (NUL-terminated, truncated to cap).  Returns the
 * exit status. */
int spt_run_backend_cmd(const char *const *args, char *out, size_t cap);

/* The whole file, NUL-terminated (free it), or NULL. */
char *spt_read_file(const char *path);

/* Write text into path (mode). */
void spt_write_file(const char *path, const char *text, int mode);

/* Environment lookups with a test failure when missing. */
const char *spt_env(const char *name);

#endif
