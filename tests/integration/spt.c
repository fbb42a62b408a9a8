/*
 * spt.c - the integration harness (see spt.h).
 */
#include "spt.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *spt_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL && v[0] != '\0',
                  "%s is not set (run the tests through make)", name);
    return v;
}

/* Processes started and not yet stopped (backends, httpd parents), for
 * the atexit net. */
#define SPT_MAX_LIVE 24
static pid_t live[SPT_MAX_LIVE];
static int atexit_set;

void spt_kill_tree(pid_t pid, int sig)
{
    pid_t kids[512];
    int n = spt_children(pid, kids, 512);
    kill(pid, sig);
    for (int i = 0; i < n; i++)
        spt_kill_tree(kids[i], sig);
}

static void spt_atexit(void)
{
    for (int i = 0; i < SPT_MAX_LIVE; i++)
        if (live[i] > 0) {
            spt_kill_tree(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

void spt_live_add(pid_t pid)
{
    if (!atexit_set) {
        atexit(spt_atexit);
        atexit_set = 1;
    }
    for (int i = 0; i < SPT_MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

void spt_live_del(pid_t pid)
{
    for (int i = 0; i < SPT_MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

char *spt_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

void spt_write_file(const char *path, const char *text, int mode)
{
    write_file(path, text, (mode_t)mode);
}

static void backend_launch(spt_backend_t *b, int ready);

void spt_backend_start(spt_backend_t *b, const char *extra)
{
    spt_backend_start_secret(b, extra, NULL);
}

void spt_backend_append_conf(spt_backend_t *b, const char *text)
{
    int fd = open(b->conf, O_WRONLY | O_APPEND);
    ck_assert_msg(fd >= 0, "%s: %s", b->conf, strerror(errno));
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

void spt_backend_start_secret(spt_backend_t *b, const char *extra,
                              const char *secret)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->dir, sizeof(b->dir), "/tmp/spt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(b->dir));
    chmod(b->dir, 0755);
    char secret_line[400] = "";
    if (secret != NULL) {
        char path[300];
        snprintf(path, sizeof(path), "%s/secret", b->dir);
        write_file(path, secret, 0600);
        chmod(path, 0600); /* whatever the umask */
        snprintf(secret_line, sizeof(secret_line), "SecretFile %s\n", path);
        snprintf(b->secret, sizeof(b->secret), "%s", secret);
    }
    snprintf(b->conf, sizeof(b->conf), "%s/backend.conf", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/error.log", b->dir);
    snprintf(b->unix_addr, sizeof(b->unix_addr), "unix:%s/b.sock", b->dir);
    snprintf(b->shm_addr, sizeof(b->shm_addr), "shm:%s/b.shm", b->dir);
    char conf[8192];
    snprintf(conf, sizeof(conf),
             "Listen %s\n"
             "Listen tcp://127.0.0.1:0\n"
             "Listen %s\n"
             "ErrorLog %s\n"
             "LogLevel info\n"
             "PidFile %s/backend.pid\n"
             "Workers 4\n"
             "Handler /hello builtin:hello\n"
             "Handler /echo builtin:echo\n"
             "Handler /cgi-bin/ cgi:%s/conf/cgi-bin\n"
             "Handler /app/ plugin:%s\n"
             "GracefulTimeout 5\n"
             "%s"
             "%s\n",
             b->unix_addr, b->shm_addr, b->log, b->dir, spt_env("SP_TOP"),
             spt_env("SP_SAMPLE_PLUGIN"), secret_line, extra ? extra : "");
    write_file(b->conf, conf, 0644);
    backend_launch(b, 0);
}

/* Fork and exec the backend on b->conf; wait until the log holds more
 * than `ready` SPB0903 lines (ready), taking the tcp port from the last
 * SPB0402 tcp line. */
static void backend_launch(spt_backend_t *b, int ready)
{
    const char *bin = spt_env("SP_BACKEND");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[400];
        snprintf(err, sizeof(err), "%s/stderr.log", b->dir);
        int fd = open(err, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execl(bin, bin, "-X", "-f", b->conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    spt_live_add(pid);
    /* Ready when SPB0903 is logged; the tcp port is in SPB0402. */
    for (int i = 0; i < 1000; i++) {
        char *log = spt_read_file(b->log);
        int nready = 0;
        for (const char *p = log; p && (p = strstr(p, "SPB0903")); p++)
            nready++;
        if (nready > ready) {
            const char *p = NULL;
            for (const char *q = log; (q = strstr(q, "listening on tcp://"));
                 q++)
                p = q;
            if (p) {
                p += strlen("listening on ");
                size_t n = strcspn(p, "\n");
                if (n >= sizeof(b->tcp_addr))
                    n = sizeof(b->tcp_addr) - 1;
                memcpy(b->tcp_addr, p, n);
                b->tcp_addr[n] = '\0';
            }
            free(log);
            return;
        }
        free(log);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            spt_live_del(pid);
            char path[400];
            snprintf(path, sizeof(path), "%s/stderr.log", b->dir);
            char *e = spt_read_file(path);
            ck_abort_msg("backend exited at start-up: %s", e ? e : "?");
        }
        usleep(10000);
    }
    spt_kill_tree(pid, SIGKILL);
    ck_abort_msg("backend not ready after 10 s");
}

void spt_backend_restart(spt_backend_t *b)
{
    ck_assert_msg(b->pid <= 0, "spt_backend_restart: still running");
    backend_launch(b, spt_log_count(b, "SPB0903"));
}

void spt_backend_signal(spt_backend_t *b, int sig)
{
    kill(b->pid, sig);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int backend_stop(spt_backend_t *b, int rm);

int spt_backend_stop(spt_backend_t *b)
{
    return backend_stop(b, 1);
}

int spt_backend_stop_keep(spt_backend_t *b)
{
    return backend_stop(b, 0);
}

void spt_backend_finish(spt_backend_t *b, const char *const *allowed)
{
    int st = backend_stop(b, 0);
    int bad = spt_log_unexpected(b, allowed);
    ck_assert_msg(st == 0, "backend exit status %d (log: %s)", st, b->log);
    ck_assert_msg(bad == 0, "%d unexpected [error]/[warn] lines in %s", bad,
                  b->log);
    if (getenv("SPT_KEEP") == NULL)
        rm_rf(b->dir);
}

static int backend_stop(spt_backend_t *b, int rm)
{
    if (b->pid <= 0)
        return -1;
    kill(b->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid)
            break;
        usleep(10000);
        if (i == 1999) {
            spt_kill_tree(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
            spt_live_del(b->pid);
            ck_abort_msg("backend did not stop within 20 s of SIGTERM");
        }
    }
    spt_live_del(b->pid);
    b->pid = 0;
    if (rm && getenv("SPT_KEEP") == NULL)
        rm_rf(b->dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int spt_log_unexpected(const spt_backend_t *b, const char *const *allowed)
{
    char *log = spt_read_file(b->log);
    if (log == NULL)
        return 0;
    int bad = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "] [error] ") && !strstr(line, "] [warn] "))
            continue;
        int ok = 0;
        /* Start-up, stop and reload lines are at warn so they always show. */
        static const char *const routine[] = {"SPB0903", "SPB0904", "SPB0801",
                                              "SPB0606", NULL};
        for (int i = 0; routine[i]; i++)
            if (strstr(line, routine[i]))
                ok = 1;
        for (int i = 0; allowed && allowed[i]; i++)
            if (strstr(line, allowed[i]))
                ok = 1;
        if (!ok) {
            fprintf(stderr, "unexpected log line: %s\n", line);
            bad++;
        }
    }
    free(log);
    return bad;
}

int spt_log_count(const spt_backend_t *b, const char *needle)
{
    char *log = spt_read_file(b->log);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p++)
        n++;
    free(log);
    return n;
}

static long rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

int spt_children(pid_t pid, pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (f == NULL)
        return 0;
    long c;
    while (n < max && fscanf(f, "%ld", &c) == 1)
        out[n++] = (pid_t)c;
    fclose(f);
    return n;
}

long spt_rss_tree_kb(pid_t pid)
{
    long kb = rss_kb(pid);
    pid_t kids[256];
    int n = spt_children(pid, kids, 256);
    for (int i = 0; i < n; i++)
        kb += spt_rss_tree_kb(kids[i]);
    return kb;
}

int spt_wait_children(pid_t pid, int n, int timeout_ms)
{
    pid_t kids[256];
    double end = spt_ms() + timeout_ms;
    int got;
    while ((got = spt_children(pid, kids, 256)) != n && spt_ms() < end)
        usleep(10000);
    return got;
}

int spt_wait_log(const spt_backend_t *b, const char *needle, int n,
                 int timeout_ms)
{
    double end = spt_ms() + timeout_ms;
    int got;
    while ((got = spt_log_count(b, needle)) < n && spt_ms() < end)
        usleep(10000);
    return got;
}

double spt_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int spt_run_backend_cmd(const char *const *args, char *out, size_t cap)
{
    const char *bin = spt_env("SP_BACKEND");
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *argv[32];
        int n = 0;
        argv[n++] = bin;
        for (int i = 0; args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        /* main.c does not free its configuration on the -t / -v / error
         * paths; in a sanitizer build LeakSanitizer would turn that into
         * exit status 1 (and eat stdout).  Reported; not what these runs
         * test. */
        char asan[512];
        const char *old = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "%s%sdetect_leaks=0", old ? old : "",
                 old && old[0] ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(p[0], len + 1 < cap ? out + len : sink,
                     len + 1 < cap ? cap - 1 - len : sizeof(sink))) > 0)
        if (len + 1 < cap)
            len += (size_t)r;
    out[len] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int spt_new_generation(pid_t pid, int n, const pid_t *old, int nold,
                       int timeout_ms)
{
    double end = spt_ms() + timeout_ms;
    do {
        pid_t now[64];
        int k = spt_children(pid, now, 64), stale = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < nold; j++)
                stale += now[i] == old[j];
        if (k == n && stale == 0)
            return 1;
        usleep(10000);
    } while (spt_ms() < end);
    return 0;
}

const char *spt_policy_name(int p)
{
    switch (p) {
    case SCHED_OTHER:
        return "SCHED_OTHER";
    case SCHED_BATCH:
        return "SCHED_BATCH";
    case SCHED_IDLE:
        return "SCHED_IDLE";
    case SCHED_FIFO:
        return "SCHED_FIFO";
    case SCHED_RR:
        return "SCHED_RR";
    default:
        return "?";
    }
}

void spt_launch_under(int policy)
{
    struct sched_param sp = {.sched_priority = 0};
    ck_assert_msg(sched_setscheduler(0, policy, &sp) == 0,
                  "sched_setscheduler(self, %s) failed", spt_policy_name(policy));
    ck_assert_int_eq(sched_getscheduler(0), policy);
}

void spt_expect_policy(pid_t pid, int policy, const char *who)
{
    int p = sched_getscheduler(pid);
    ck_assert_msg(p >= 0, "%s %d: sched_getscheduler failed", who, (int)pid);
    ck_assert_msg(p == policy, "%s %d runs %s (%d), not %s", who, (int)pid,
                  spt_policy_name(p), p, spt_policy_name(policy));
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s %d: no %s", who, (int)pid, path);
    struct dirent *e;
    int tasks = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        p = sched_getscheduler(tid);
        ck_assert_msg(p == policy, "%s %d: thread %d runs %s (%d), not %s",
                      who, (int)pid, (int)tid, spt_policy_name(p), p,
                      spt_policy_name(policy));
        tasks++;
    }
    closedir(d);
    ck_assert_int_ge(tasks, 1);
}
