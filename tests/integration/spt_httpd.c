/*
 * spt_httpd.c - the httpd side of the integration harness (see
 * spt_httpd.h): apache2 with the module, a libcurl client that checks
 * bodies as they stream, the status handler's figures, /proc/net/tcp.
 */
#include "spt_httpd.h"

#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spt.h"

#define APACHE2 "/usr/sbin/apache2"

/* ---- processes ----------------------------------------------------------- */

int spt_pid_alive(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *s = spt_read_file(path);
    if (s == NULL)
        return 0;
    /* "pid (comm) S ...": the state follows the last ')'. */
    const char *p = strrchr(s, ')');
    int alive = p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    free(s);
    return alive;
}

int spt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The libasan this process runs with ("" when none). */
static const char *asan_runtime(void)
{
#if defined(__SANITIZE_ADDRESS__)
    static char path[512];
    if (path[0] == '\0') {
        FILE *f = fopen("/proc/self/maps", "r");
        char line[1024];
        while (f && fgets(line, sizeof(line), f)) {
            char *p = strchr(line, '/');
            if (p && strstr(p, "/libasan.so")) {
                p[strcspn(p, "\n")] = '\0';
                snprintf(path, sizeof(path), "%s", p);
                break;
            }
        }
        if (f)
            fclose(f);
    }
    return path;
#else
    return "";
#endif
}

/* Environment of every apache2 we run (in the forked child). */
static void httpd_env(const spt_httpd_t *h)
{
    const char *asan = asan_runtime();
    if (asan[0] == '\0')
        return;
    char opt[700];
    setenv("LD_PRELOAD", asan, 1);
    snprintf(opt, sizeof(opt),
             "detect_leaks=0:abort_on_error=0:log_path=%s/asan", h->dir);
    setenv("ASAN_OPTIONS", opt, 1);
    snprintf(opt, sizeof(opt), "print_stacktrace=1:log_path=%s/ubsan",
             h->dir);
    setenv("UBSAN_OPTIONS", opt, 1);
}

/* Run apache2 with args (NULL-terminated, argv[0] excluded); stdout and
 * stderr to DIR/name.  Returns the pid. */
static pid_t httpd_exec(const spt_httpd_t *h, const char *const *args,
                        const char *name)
{
    char out[400];
    snprintf(out, sizeof(out), "%s/%s", h->dir, name);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *argv[16];
        int n = 0;
        argv[n++] = APACHE2;
        for (int i = 0; args[i] && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* A group of its own: prefork signals its whole process group to
         * stop (and the test with it).  If the test dies, even by
         * SIGKILL, httpd gets SIGTERM and takes its children along. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(126);
        httpd_env(h);
        execv(APACHE2, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
    double end = spt_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid)
            return 0;
        if (w < 0 && errno != EINTR)
            return -1;
        if (spt_ms() > end)
            return -1;
        usleep(10000);
    }
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

static void write_conf(spt_httpd_t *h, const char *site)
{
    const char *top = spt_env("SP_TOP");
    const char *so = spt_env("SP_MODULE");
    char script[512], port[16];
    snprintf(script, sizeof(script), "%s/scripts/httpd-conf.sh", top);
    snprintf(port, sizeof(port), "%d", h->port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(h->conf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        close(fd);
        execl("/bin/sh", "sh", script, h->dir, port, h->mpm, so,
              (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "%s failed (status %d)", script, status);
    FILE *f = fopen(h->conf, "a");
    ck_assert_ptr_nonnull(f);
    /* The module's info lines (segment, retirements) help a post-mortem;
     * only [warn] and worse are checked. */
    fprintf(f, "LogLevel warn slotproxy:info\n%s\n", site);
    fclose(f);
}

const char *spt_httpd_site(const char *addr, const char *params,
                           const char *extra)
{
    static char site[8192];
    snprintf(site, sizeof(site),
             "SlotProxyBackend app %s %s\n"
             "SlotProxyPass /hello app\n"
             "SlotProxyPass /echo app\n"
             "<Location /slotproxy-status>\n"
             "    SetHandler slotproxy-status\n"
             "</Location>\n"
             "%s\n",
             addr, params ? params : "", extra ? extra : "");
    return site;
}

void spt_httpd_start(spt_httpd_t *h, const char *mpm, const char *site,
                     int links)
{
    for (int attempt = 0;; attempt++) {
        memset(h, 0, sizeof(*h));
        snprintf(h->mpm, sizeof(h->mpm), "%s", mpm);
        snprintf(h->dir, sizeof(h->dir), "/tmp/spt-httpd-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(h->dir));
        chmod(h->dir, 0755);
        if (geteuid() == 0) {
            /* httpd's children and the proxy child run as www-data. */
            struct passwd *pw = getpwnam("www-data");
            ck_assert_msg(pw != NULL, "no user www-data");
            ck_assert_int_eq(chown(h->dir, pw->pw_uid, pw->pw_gid), 0);
        }
        h->port = spt_free_port();
        snprintf(h->base, sizeof(h->base), "http://127.0.0.1:%d", h->port);
        snprintf(h->conf, sizeof(h->conf), "%s/httpd.conf", h->dir);
        snprintf(h->log, sizeof(h->log), "%s/error.log", h->dir);
        write_conf(h, site);

        const char *args[] = {"-f", h->conf, "-DFOREGROUND", NULL};
        h->pid = httpd_exec(h, args, "stderr.log");
        spt_live_add(h->pid);
        double t0 = spt_ms();
        int died = 0, status = 0;
        while (spt_ms() - t0 < 20000) {
            if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
                died = 1;
                break;
            }
            spt_status_t st;
            if (spt_httpd_status(h, &st) == 0 &&
                (links == 0 || st.links_up >= links)) {
                fprintf(stderr,
                        "figure: httpd %s up with %ld link(s) in %.0f ms\n",
                        mpm, st.links_up, spt_ms() - t0);
                return;
            }
            usleep(20000);
        }
        spt_live_del(h->pid);
        char *log = spt_read_file(h->log);
        char path[400];
        snprintf(path, sizeof(path), "%s/stderr.log", h->dir);
        char *err = spt_read_file(path);
        if (died && attempt < 3 && log &&
            strstr(log, "Address already in use")) {
            /* Someone took the port between our probe and httpd's bind. */
            free(log);
            free(err);
            rm_rf(h->dir);
            continue;
        }
        if (!died) {
            spt_kill_tree(h->pid, SIGKILL);
            waitpid(h->pid, NULL, 0);
        }
        ck_abort_msg("httpd %s (%s) %s: stderr: %s\nerror.log: %s", mpm,
                     h->conf,
                     died ? "exited at start-up" : "not ready after 20 s",
                     err ? err : "", log ? log : "");
    }
}

void spt_httpd_graceful(spt_httpd_t *h)
{
    const char *args[] = {"-k", "graceful", "-f", h->conf, NULL};
    pid_t pid = httpd_exec(h, args, "graceful.log");
    int status;
    ck_assert_msg(wait_exit(pid, 30000, &status) == 0,
                  "apache2 -k graceful did not return");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "apache2 -k graceful: status %d", status);
}

int spt_httpd_run_conf(const char *mpm, const char *site,
                       const char *const *args, int timeout_ms, char *out,
                       size_t cap)
{
    spt_httpd_t h;
    memset(&h, 0, sizeof(h));
    snprintf(h.mpm, sizeof(h.mpm), "%s", mpm);
    snprintf(h.dir, sizeof(h.dir), "/tmp/spt-httpd-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(h.dir));
    chmod(h.dir, 0755);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("www-data");
        ck_assert_msg(pw != NULL, "no user www-data");
        ck_assert_int_eq(chown(h.dir, pw->pw_uid, pw->pw_gid), 0);
    }
    h.port = spt_free_port();
    snprintf(h.base, sizeof(h.base), "http://127.0.0.1:%d", h.port);
    snprintf(h.conf, sizeof(h.conf), "%s/httpd.conf", h.dir);
    snprintf(h.log, sizeof(h.log), "%s/error.log", h.dir);
    write_conf(&h, site);

    const char *argv[12] = {"-f", h.conf};
    int n = 2;
    for (int i = 0; args[i] && n < 11; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = httpd_exec(&h, argv, "run.log");
    spt_live_add(pid);
    int status = 0, rc;
    if (wait_exit(pid, timeout_ms, &status) == 0) {
        rc = WIFEXITED(status) ? WEXITSTATUS(status)
                               : 128 + WTERMSIG(status);
    } else {
        spt_kill_tree(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        rc = -1;
    }
    spt_live_del(pid);
    char path[400];
    snprintf(path, sizeof(path), "%s/run.log", h.dir);
    char *s = spt_read_file(path);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    if (getenv("SPT_KEEP") == NULL)
        rm_rf(h.dir);
    return rc;
}

int spt_httpd_stop(spt_httpd_t *h)
{
    if (h->pid <= 0)
        return -1;
    int status = -1;
    kill(h->pid, SIGTERM);
    if (wait_exit(h->pid, 20000, &status) < 0) {
        spt_kill_tree(h->pid, SIGKILL);
        waitpid(h->pid, &status, 0);
        spt_live_del(h->pid);
        h->pid = 0;
        ck_abort_msg("httpd did not stop within 20 s of SIGTERM");
    }
    spt_live_del(h->pid);
    h->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int level_bad(const char *line)
{
    static const char *const levels[] = {"error]", "warn]", "crit]",
                                         "alert]", "emerg]", NULL};
    for (int i = 0; levels[i]; i++) {
        const char *p = strstr(line, levels[i]);
        /* "[error]" or "[module:error]" */
        if (p && p > line && (p[-1] == '[' || p[-1] == ':'))
            return 1;
    }
    return 0;
}

int spt_httpd_log_unexpected(const spt_httpd_t *h,
                             const char *const *allowed)
{
    char *log = spt_read_file(h->log);
    if (log == NULL)
        return 0;
    int bad = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        int sanitizer = strstr(line, "Sanitizer") != NULL ||
                        strstr(line, "runtime error:") != NULL;
        if (!sanitizer && !level_bad(line))
            continue;
        int ok = 0;
        for (int i = 0; !sanitizer && allowed && allowed[i]; i++)
            if (strstr(line, allowed[i]))
                ok = 1;
        if (!ok) {
            fprintf(stderr, "unexpected httpd log line: %s\n", line);
            bad++;
        }
    }
    free(log);
    return bad;
}

int spt_httpd_log_count(const spt_httpd_t *h, const char *needle)
{
    char *log = spt_read_file(h->log);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p++)
        n++;
    free(log);
    return n;
}

/* Sanitizer reports (log_path files); printed. */
static int sanitizer_reports(const spt_httpd_t *h)
{
    DIR *d = opendir(h->dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "asan.", 5) != 0 &&
            strncmp(e->d_name, "ubsan.", 6) != 0)
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", h->dir, e->d_name);
        char *s = spt_read_file(p);
        fprintf(stderr, "sanitizer report %s:\n%s\n", p, s ? s : "");
        free(s);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

void spt_httpd_finish(spt_httpd_t *h, const char *const *allowed)
{
    int st = spt_httpd_stop(h);
    int bad = spt_httpd_log_unexpected(h, allowed);
    int san = sanitizer_reports(h);
    ck_assert_msg(st == 0, "httpd exit status %d (log: %s)", st, h->log);
    ck_assert_msg(bad == 0, "%d unexpected [error]/[warn] lines in %s", bad,
                  h->log);
    ck_assert_msg(san == 0, "%d sanitizer reports in %s", san, h->dir);
    if (getenv("SPT_KEEP") == NULL)
        rm_rf(h->dir);
}

/* ---- the client ------------------------------------------------------------ */

struct spt_client {
    CURL *e;
    char base[64];
    const spt_req_t *q;
    spt_resp_t *r;
    uint64_t sent;
    uint8_t tmp[65536];
};

static int curl_ready;

spt_client_t *spt_client_new(const spt_httpd_t *h)
{
    if (!curl_ready) {
        /* Not thread-safe: the first client is made before any thread. */
        ck_assert_int_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        curl_ready = 1;
    }
    spt_client_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->e = curl_easy_init();
    ck_assert_ptr_nonnull(c->e);
    snprintf(c->base, sizeof(c->base), "%s", h->base);
    return c;
}

void spt_client_free(spt_client_t *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->e);
    free(c);
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint8_t spt_gen_byte(uint64_t seed, uint64_t i)
{
    return (uint8_t)(mix64((seed << 40) ^ (i >> 3)) >> ((i & 7) * 8));
}

static void gen_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
    while (n > 0) {
        uint64_t w = mix64((seed << 40) ^ (off >> 3));
        for (unsigned k = off & 7; k < 8 && n > 0; k++, n--, off++)
            *buf++ = (uint8_t)(w >> (k * 8));
    }
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    spt_client_t *c = arg;
    uint64_t left = (uint64_t)c->q->body_len - c->sent;
    size_t n = size * nitems;
    if (n > left)
        n = (size_t)left;
    gen_fill(c->q->seed, c->sent, (uint8_t *)buf, n);
    c->sent += n;
    return n;
}

/* curl rewinds when it replays a request on a fresh connection (a reused
 * keep-alive connection the server had closed). */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    spt_client_t *c = arg;
    if (origin != SEEK_SET || offset < 0 || offset > c->q->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    c->sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    spt_client_t *c = arg;
    spt_resp_t *r = c->r;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        r->hlen = 0; /* a new block (after a 100 Continue) */
        r->content_length = -1;
    }
    if (n > 15 && strncasecmp(buf, "Content-Length:", 15) == 0)
        r->content_length = strtoll(buf + 15, NULL, 10);
    if (r->hlen + n < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, buf, n);
        r->hlen += n;
        r->headers[r->hlen] = '\0';
    }
    return n;
}

static size_t on_write(char *buf, size_t size, size_t nitems, void *arg)
{
    spt_client_t *c = arg;
    const spt_req_t *q = c->q;
    spt_resp_t *r = c->r;
    size_t n = size * nitems;
    if (r->blen < sizeof(r->body)) {
        size_t k = sizeof(r->body) - r->blen < n ? sizeof(r->body) - r->blen
                                                 : n;
        memcpy(r->body + r->blen, buf, k);
        r->blen += k;
    }
    for (size_t done = 0;
         q->check != SPT_CHECK_NONE && done < n && r->mismatch == UINT64_MAX;) {
        size_t k = n - done < sizeof(c->tmp) ? n - done : sizeof(c->tmp);
        uint64_t off = r->received + done;
        const uint8_t *got = (const uint8_t *)buf + done;
        switch (q->check) {
        case SPT_CHECK_ECHO:
            gen_fill(q->seed, off, c->tmp, k);
            break;
        case SPT_CHECK_SIZE:
            for (size_t j = 0; j < k; j++)
                c->tmp[j] = (uint8_t)((off + j) * 7 + 3);
            break;
        case SPT_CHECK_EXACT:
            for (size_t j = 0; j < k; j++)
                c->tmp[j] = off + j < q->expect_n
                                ? (uint8_t)q->expect[off + j]
                                : (uint8_t)~got[j];
            break;
        default:
            break;
        }
        if (memcmp(c->tmp, got, k) != 0) {
            size_t j = 0;
            while (c->tmp[j] == got[j])
                j++;
            r->mismatch = off + j;
        }
        done += k;
    }
    r->received += n;
    if (q->abort_after > 0 && r->received >= q->abort_after)
        return 0; /* CURLE_WRITE_ERROR: curl closes the connection */
    return n;
}

int spt_client_do(spt_client_t *c, const spt_req_t *q, spt_resp_t *r)
{
    CURL *e = c->e;
    char url[1024];
    struct curl_slist *hdrs = NULL;
    memset(r, 0, offsetof(spt_resp_t, headers));
    r->headers[0] = '\0';
    r->hlen = r->blen = 0;
    r->mismatch = UINT64_MAX;
    r->content_length = -1;
    c->q = q;
    c->r = r;
    c->sent = 0;
    /* reset keeps the connection cache: keep-alive goes on. */
    curl_easy_reset(e);
    snprintf(url, sizeof(url), "%s%s", c->base, q->path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     q->timeout_ms > 0 ? q->timeout_ms : 60000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (q->max_recv_speed > 0)
        curl_easy_setopt(e, CURLOPT_MAX_RECV_SPEED_LARGE,
                         (curl_off_t)q->max_recv_speed);
    if (q->max_send_speed > 0)
        curl_easy_setopt(e, CURLOPT_MAX_SEND_SPEED_LARGE,
                         (curl_off_t)q->max_send_speed);
    if (q->abort_after > 0)
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    const char *m = q->method ? q->method : "GET";
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (q->body_len >= 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, c);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, c);
        if (strcmp(m, "PUT") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        if (q->chunked)
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                             (curl_off_t)q->body_len);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    }
    if (hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    double t0 = spt_ms();
    CURLcode cc = curl_easy_perform(e);
    r->ms = spt_ms() - t0;
    r->curl_code = (int)cc;
    if (cc != CURLE_OK && r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    return (int)cc;
}

int spt_resp_ok(const spt_req_t *q, const spt_resp_t *r)
{
    if (r->curl_code != 0 || r->mismatch != UINT64_MAX)
        return 0;
    if (r->content_length >= 0 && q->method && strcmp(q->method, "HEAD") &&
        (uint64_t)r->content_length != r->received)
        return 0;
    switch (q->check) {
    case SPT_CHECK_ECHO:
        return r->received == (uint64_t)(q->body_len > 0 ? q->body_len : 0);
    case SPT_CHECK_SIZE:
        return r->received == q->expect_len;
    case SPT_CHECK_EXACT:
        return r->received == q->expect_n;
    default:
        return 1;
    }
}

int spt_resp_headers(const spt_resp_t *r, const char *name,
                     char out[][256], int max)
{
    size_t nl = strlen(name);
    int n = 0;
    for (const char *p = r->headers; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            if (n < max) {
                if (vl > 255)
                    vl = 255;
                memcpy(out[n], v, vl);
                out[n][vl] = '\0';
            }
            n++;
        }
        p += len + (eol ? 1 : 0);
    }
    return n;
}

/* ---- status and sockets ------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

static size_t buf_write(char *data, size_t size, size_t nitems, void *arg)
{
    buf_t *b = arg;
    size_t n = size * nitems;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* The number after "key": at or after from; def when absent. */
static long json_num(const char *from, const char *key, long def)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = from ? strstr(from, pat) : NULL;
    if (p == NULL)
        return def;
    p += strlen(pat);
    if (strncmp(p, "true", 4) == 0)
        return 1;
    if (strncmp(p, "false", 5) == 0)
        return 0;
    return strtol(p, NULL, 10);
}

int spt_httpd_status(const spt_httpd_t *h, spt_status_t *st)
{
    if (!curl_ready) {
        ck_assert_int_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        curl_ready = 1;
    }
    memset(st, 0, sizeof(*st));
    CURL *e = curl_easy_init();
    buf_t b = {0};
    char url[128];
    snprintf(url, sizeof(url), "%s/slotproxy-status?json", h->base);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    if (cc != CURLE_OK || code != 200 || b.p == NULL ||
        strstr(b.p, "\"active\":true") == NULL) {
        free(b.p);
        return -1;
    }
    const char *proxy = strstr(b.p, "\"proxy\":");
    st->generation = json_num(b.p, "generation", -1);
    st->proxy_pid = json_num(proxy, "pid", -1);
    st->proxy_alive = (int)json_num(proxy, "alive", 0);
    st->proxy_uptime_s = json_num(proxy, "uptime_s", -1);
    st->restarts = json_num(proxy, "restarts", -1);
    st->output_stalls = json_num(proxy, "output_stalls", -1);
    const char *slots = strstr(b.p, "\"slots\":");
    st->slots_total = json_num(slots, "total", -1);
    st->inflight = json_num(slots, "inflight", -1);
    st->admitted = json_num(strstr(b.p, "\"admission\":"), "admitted", -1);
    st->client_aborts = json_num(b.p, "client_aborts", -1);
    const char *bs = strstr(b.p, "\"by_state\":{");
    if (bs) {
        bs += strlen("\"by_state\":{");
        while (*bs == '"') {
            const char *q = strchr(bs + 1, '"');
            if (q == NULL || q[1] != ':')
                break;
            long v = strtol(q + 2, (char **)&q, 10);
            if (strncmp(bs, "\"free\"", 6) == 0)
                st->by_state_free = v;
            else
                st->by_state_busy += v;
            bs = *q == ',' ? q + 1 : q;
        }
    }
    const char *be = strstr(b.p, "\"backends\":");
    st->links_configured = json_num(be, "links_configured", -1);
    st->links_up = json_num(be, "links_up", -1);
    st->answered_503 = json_num(be, "answered_503", -1);
    free(b.p);
    return 0;
}

int spt_httpd_wait_idle(const spt_httpd_t *h, spt_status_t *st,
                        int timeout_ms)
{
    double end = spt_ms() + timeout_ms;
    for (;;) {
        int rc = spt_httpd_status(h, st);
        /* The status request itself holds no slot: it is not proxied. */
        if (rc == 0 && st->inflight == 0 && st->admitted == 0 &&
            st->by_state_busy == 0 && st->by_state_free == st->slots_total)
            return 0;
        if (spt_ms() > end)
            return -1;
        usleep(50000);
    }
}

static int tcp_count(const char *path, int port)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[512];
    int n = 0;
    if (fgets(line, sizeof(line), f) == NULL) { /* the column titles */
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, rport, state;
        if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %x", &lport,
                   &rport, &state) == 3 &&
            (int)rport == port && state == 0x01)
            n++;
    }
    fclose(f);
    return n;
}

int spt_tcp_established_to(int port)
{
    return tcp_count("/proc/net/tcp", port) +
           tcp_count("/proc/net/tcp6", port);
}
