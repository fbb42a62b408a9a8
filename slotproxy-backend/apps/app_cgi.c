/*
 * app_cgi.c - RFC 3875 CGI scripts: `Handler PREFIX cgi:/abs/dir`.
 *
 * One request, step by step:
 *
 *  1. Map.  The part of the (undecoded) request path after PREFIX is
 *     percent-decoded and walked segment by segment below the directory:
 *     directories are descended, the first regular file is the script and
 *     the rest is PATH_INFO.  Refused before anything runs:
 *       invalid %-encoding                          400
 *       a ".." segment anywhere, an encoded '/'     403 / 404
 *       or NUL, a script whose realpath lies
 *       outside the directory (symlink escape)
 *       missing file                                404
 *       a directory, a non-regular file, a file     403
 *       not executable by the worker
 *     Empty and "." segments are dropped.
 *
 *  2. Environment.  A clean one, built in the worker before fork: the RFC
 *     3875 meta-variables, HTTP_* for request headers, then the frontend's
 *     env entries that do not clash, and PATH=/usr/local/bin:/usr/bin:/bin.
 *     docs/applications.md lists every variable.
 *
 *  3. Spawn.  fork; the child makes itself a process group leader (so a
 *     timeout can kill the script and whatever it started), resets signal
 *     dispositions and mask, moves the pipes to 0/1/2, closes every other
 *     descriptor, chdirs to the script's directory and execs the script.
 *     A close-on-exec "exec status" pipe tells the parent whether chdir or
 *     exec failed (errno) or succeeded (EOF), so exec errors are a clean
 *     500 with a log line instead of a mystery 502.  Every descriptor the
 *     worker opens here is O_CLOEXEC.
 *
 *  4. Pump.  One poll() loop moves request body -> script stdin, script
 *     stdout -> client, script stderr -> req->log (WARN, one entry per
 *     line).  The body is pulled with req->read() only when the stdin
 *     buffer is empty, so at most one 64 KiB chunk is held; stdout is
 *     drained whenever it is readable, so a script that writes before it
 *     has read all of its input cannot deadlock against us.  The head
 *     (header block up to the blank line, at most max_header_bytes) is
 *     parsed completely before anything is sent: Status, Location (302 if
 *     no Status), other headers passed through in order with repeats;
 *     Transfer-Encoding and Connection are dropped (the backend frames the
 *     body itself).  After the head each chunk is written and flushed as
 *     it arrives.
 *
 *  5. End.  Normally when the script has closed stdout and stderr; its
 *     exit is then awaited until the deadline.  On timeout, client abort or
 *     malformed output the process group gets SIGTERM, then SIGKILL 2 s
 *     later; the leader is observed with waitid(WNOWAIT) so it stays a
 *     zombie - and its pid/pgid reserved - until after the SIGKILL to the
 *     group, then it is reaped.  Every path reaps the child and closes
 *     every descriptor.
 *
 * SIGPIPE is ignored while a script runs (a script that exits without
 * reading its input must give EPIPE, not kill the worker) and restored
 * afterwards.  The worker is single-threaded, so changing the process's
 * disposition for the duration of handle() is safe.
 */
#include "apps.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CGI_CHUNK (64 * 1024)
#define CGI_KILL_GRACE_MS 2000
#define CGI_POLL_MS 50 /* how often aborted() is looked at */
#define CGI_ERRLINE 2048

typedef struct cgi_ctx {
    char *dir; /* canonical, no trailing '/' (except "/") */
    size_t dirlen;
    sp_cgi_opts_t opts;
} cgi_ctx_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *str_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- init/fini ---------------------------------------------------------- */

int sp_cgi_init(void **ctx, const char *dir, const sp_cgi_opts_t *opts,
                char *err, size_t errlen)
{
    struct stat st;
    *ctx = NULL;
    if (!dir || dir[0] != '/' || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cgi:%s: not a directory", dir ? dir : "");
        return -1;
    }
    cgi_ctx_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        snprintf(err, errlen, "cgi:%s: out of memory", dir);
        return -1;
    }
    c->dirlen = strlen(c->dir);
    while (c->dirlen > 1 && c->dir[c->dirlen - 1] == '/')
        c->dir[--c->dirlen] = '\0';
    c->opts = *opts;
    if (c->opts.max_header_bytes < 256)
        c->opts.max_header_bytes = 256;
    *ctx = c;
    return 0;
}

static void cgi_fini(void *ctx)
{
    cgi_ctx_t *c = ctx;
    if (c)
        free(c->dir);
    free(c);
}

/* ---- error pages -------------------------------------------------------- */

static const char *reason_of(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

/* A short text/plain page; -1 if the head is already gone. */
static int error_page(slotproxy_request_t *r, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason_of(status));
    if (r->set_status(r, status, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0)
        return -1;
    r->write(r, body, (size_t)n);
    return 0;
}

/* ---- 1. mapping --------------------------------------------------------- */

typedef struct cgi_map {
    char *script;      /* dir/rel/script */
    char *cwd;         /* its directory */
    char *script_name; /* SCRIPT_NAME */
    char *path_info;   /* decoded, NULL if none */
} cgi_map_t;

static void map_free(cgi_map_t *m)
{
    free(m->script);
    free(m->cwd);
    free(m->script_name);
    free(m->path_info);
    memset(m, 0, sizeof(*m));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decode %XX in src into dst (room for strlen(src)+1).  0; 400 for a bad
 * escape; 404 for an encoded '/' or NUL (as httpd does with
 * AllowEncodedSlashes Off).
 */
static int url_decode(const char *src, char *dst)
{
    while (*src) {
        if (*src != '%') {
            *dst++ = *src++;
            continue;
        }
        int hi = hexval((unsigned char)src[1]);
        int lo = hi < 0 ? -1 : hexval((unsigned char)src[2]);
        if (hi < 0 || lo < 0)
            return 400;
        int c = hi * 16 + lo;
        if (c == 0 || c == '/')
            return 404;
        *dst++ = (char)c;
        src += 3;
    }
    *dst = '\0';
    return 0;
}

/* Returns 0 with *m filled, or an HTTP status (and a log line). */
static int cgi_map(const cgi_ctx_t *c, slotproxy_request_t *r, cgi_map_t *m)
{
    const char *path = r->path ? r->path : "";
    const char *prefix = r->prefix ? r->prefix : "/";
    size_t plen = strlen(prefix), pathlen = strlen(path);
    const char *rest = path + (plen < pathlen ? plen : pathlen);
    char *dec = NULL, *fs = NULL, *sn = NULL, *real = NULL;
    int status = 500;

    memset(m, 0, sizeof(*m));
    dec = malloc(strlen(rest) + 1);
    if (!dec)
        goto fail;
    if ((status = url_decode(rest, dec)) != 0) {
        r->log(r, SLOTPROXY_LOG_INFO,
               "SPA0021: cgi: bad %%-encoding or encoded '/' in %s", path);
        goto fail;
    }
    /* ".." anywhere - script part or PATH_INFO - is refused outright. */
    for (const char *s = dec; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            r->log(r, SLOTPROXY_LOG_INFO,
                   "SPA0011: cgi: \"..\" segment refused in %s", path);
            status = 403;
            goto fail;
        }
        s += n;
        while (*s == '/')
            s++;
    }

    /* SCRIPT_NAME starts as the prefix without its trailing slashes. */
    size_t base = plen;
    while (base > 0 && prefix[base - 1] == '/')
        base--;
    size_t cap = c->dirlen + strlen(dec) + 2;
    size_t sncap = base + strlen(dec) + 2;
    fs = malloc(cap);
    sn = malloc(sncap);
    if (!fs || !sn) {
        status = 500;
        goto fail;
    }
    memcpy(fs, c->dir, c->dirlen + 1);
    memcpy(sn, prefix, base);
    sn[base] = '\0';
    size_t fslen = c->dirlen, snlen = base;
    if (fslen == 1) /* dir is "/" */
        fslen = 0;

    const char *s = dec;
    int found = 0;
    struct stat st;
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0)
            break;
        if (n == 1 && s[0] == '.') {
            s += n;
            continue;
        }
        if (fslen + 1 + n >= PATH_MAX) {
            status = 404;
            goto notfound;
        }
        fs[fslen++] = '/';
        memcpy(fs + fslen, s, n);
        fslen += n;
        fs[fslen] = '\0';
        sn[snlen++] = '/';
        memcpy(sn + snlen, s, n);
        snlen += n;
        sn[snlen] = '\0';
        s += n;
        if (stat(fs, &st) < 0) {
            status = errno == EACCES ? 403 : 404;
            goto notfound;
        }
        if (S_ISDIR(st.st_mode))
            continue;
        if (!S_ISREG(st.st_mode)) {
            r->log(r, SLOTPROXY_LOG_INFO,
                   "SPA0013: cgi: %s is not a regular file", fs);
            status = 403;
            goto fail;
        }
        found = 1;
        break;
    }
    if (!found) {
        r->log(r, SLOTPROXY_LOG_INFO,
               "SPA0013: cgi: %s names a directory, not a script", path);
        status = 403;
        goto fail;
    }

    /* A symlink must not lead out of the directory. */
    real = realpath(fs, NULL);
    if (!real) {
        status = 404;
        goto notfound;
    }
    if (!(strncmp(real, c->dir, c->dirlen) == 0 &&
          (c->dirlen == 1 || real[c->dirlen] == '/'))) {
        r->log(r, SLOTPROXY_LOG_WARN,
               "SPA0022: cgi: %s resolves to %s, outside %s: refused", fs, real,
               c->dir);
        status = 403;
        goto fail;
    }
    if (faccessat(AT_FDCWD, fs, X_OK, AT_EACCESS) < 0) {
        r->log(r, SLOTPROXY_LOG_INFO,
               "SPA0013: cgi: %s is not executable by the worker", fs);
        status = 403;
        goto fail;
    }

    m->script = fs;
    fs = NULL;
    m->script_name = sn;
    sn = NULL;
    char *slash = strrchr(m->script, '/');
    m->cwd = slash == m->script
                 ? strdup("/")
                 : strndup(m->script, (size_t)(slash - m->script));
    if (*s) {
        /* s points at the '/' after the script's segment */
        m->path_info = strdup(s);
        if (!m->path_info)
            goto oom;
    }
    if (!m->cwd)
        goto oom;
    free(real);
    free(dec);
    return 0;

oom:
    map_free(m);
    status = 500;
    goto fail;
notfound:
    r->log(r, SLOTPROXY_LOG_INFO, "SPA0012: cgi: no script for %s (%s)", path,
           fs ? fs : "");
fail:
    free(real);
    free(sn);
    free(fs);
    free(dec);
    return status;
}

/* ---- 2. environment ----------------------------------------------------- */

typedef struct envb {
    char **v;
    size_t n, cap;
    int oom;
} envb_t;

static long env_find(const envb_t *e, const char *name, size_t nlen)
{
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=')
            return (long)i;
    return -1;
}

static void env_push(envb_t *e, char *s)
{
    if (!s) {
        e->oom = 1;
        return;
    }
    if (e->n + 2 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        char **v = realloc(e->v, cap * sizeof(*v));
        if (!v) {
            free(s);
            e->oom = 1;
            return;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
}

/* NAME=value unless NAME is already set (first setter wins). */
static void env_set(envb_t *e, const char *name, const char *value)
{
    if (env_find(e, name, strlen(name)) >= 0)
        return;
    env_push(e, str_printf("%s=%s", name, value ? value : ""));
}

static void env_set_num(envb_t *e, const char *name, long long v)
{
    char num[24];
    snprintf(num, sizeof(num), "%lld", v);
    env_set(e, name, num);
}

/* NAME=value, or append sep+value if NAME is already there. */
static void env_join(envb_t *e, const char *name, const char *value,
                     const char *sep)
{
    long i = env_find(e, name, strlen(name));
    if (i < 0) {
        env_set(e, name, value);
        return;
    }
    char *s = str_printf("%s%s%s", e->v[i], sep, value);
    if (!s) {
        e->oom = 1;
        return;
    }
    free(e->v[i]);
    e->v[i] = s;
}

static void env_free(envb_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

static int has_header(slotproxy_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return 1;
    return 0;
}

static int cgi_env(const cgi_ctx_t *c, slotproxy_request_t *r,
                   const cgi_map_t *m, envb_t *e)
{
    const char *ct = r->header(r, "Content-Type");

    memset(e, 0, sizeof(*e));
    if (r->auth_type && r->auth_type[0])
        env_set(e, "AUTH_TYPE", r->auth_type);
    /* Only when a body comes with the request; never for chunked. */
    if (r->content_length > 0 ||
        (r->content_length == 0 && has_header(r, "Content-Length")))
        env_set_num(e, "CONTENT_LENGTH", r->content_length);
    if (ct)
        env_set(e, "CONTENT_TYPE", ct);
    env_set(e, "GATEWAY_INTERFACE", "CGI/1.1");
    if (m->path_info) {
        env_set(e, "PATH_INFO", m->path_info);
        env_push(e, str_printf("PATH_TRANSLATED=%s%s",
                               c->dirlen == 1 ? "" : c->dir, m->path_info));
    }
    env_set(e, "QUERY_STRING", r->query ? r->query : "");
    env_set(e, "REMOTE_ADDR", r->remote_addr);
    env_set(e, "REMOTE_HOST", r->remote_addr);
    env_set_num(e, "REMOTE_PORT", r->remote_port);
    if (r->remote_user && r->remote_user[0])
        env_set(e, "REMOTE_USER", r->remote_user);
    env_set(e, "REQUEST_METHOD", r->method);
    env_set(e, "REQUEST_URI", r->uri);
    env_set(e, "REQUEST_SCHEME", r->scheme);
    env_set(e, "SCRIPT_NAME", m->script_name);
    env_set(e, "SCRIPT_FILENAME", m->script);
    env_set(e, "SERVER_NAME", r->server_name);
    env_set(e, "SERVER_ADDR", r->local_addr);
    env_set_num(e, "SERVER_PORT", r->local_port);
    env_set(e, "SERVER_PROTOCOL", r->protocol);
    env_set(e, "SERVER_SOFTWARE", "slotproxy-backend");
    if (r->https)
        env_set(e, "HTTPS", "on");
    env_set(e, "DOCUMENT_ROOT", c->dir);
    env_set(e, "PATH", "/usr/local/bin:/usr/bin:/bin");

    for (size_t i = 0; i < r->nheaders && !e->oom; i++) {
        const char *hn = r->headers[i].name;
        size_t n = strlen(hn);
        char name[5 + 256];
        if (n == 0 || n > 256)
            continue;
        /* Proxy: httpoxy (CVE-2016-5385).  Content-Type/-Length: already
         * CONTENT_TYPE/_LENGTH. */
        if (strcasecmp(hn, "Proxy") == 0 ||
            strcasecmp(hn, "Content-Type") == 0 ||
            strcasecmp(hn, "Content-Length") == 0)
            continue;
        /* Only letters, digits and '-': "X_Foo" must not be able to pose as
         * "X-Foo" (httpd drops such headers the same way). */
        int ok = 1;
        memcpy(name, "HTTP_", 5);
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)hn[k];
            if (ch == '-')
                name[5 + k] = '_';
            else if ((ch >= 'a' && ch <= 'z'))
                name[5 + k] = (char)(ch - 'a' + 'A');
            else if ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
                name[5 + k] = (char)ch;
            else
                ok = 0;
        }
        if (!ok)
            continue;
        name[5 + n] = '\0';
        /* Repeats are joined; cookies with "; " as HTTP/2 does (RFC 9113
         * 8.2.3), since ", " would corrupt cookie values for parsers. */
        env_join(e, name, r->headers[i].value,
                 strcmp(name, "HTTP_COOKIE") == 0 ? "; " : ", ");
    }
    for (size_t i = 0; i < r->nenv && !e->oom; i++) {
        const char *en = r->env[i].name;
        if (!en || !en[0] || strchr(en, '='))
            continue;
        env_set(e, en, r->env[i].value);
    }
    return e->oom ? -1 : 0;
}

/* ---- 3. spawn ----------------------------------------------------------- */

/* In the child: async-signal-safe only.  Reports errno on fd 3. */
static void __attribute__((noreturn))
child_exec(int in, int out, int err, int ex, const char *cwd,
           const char *script, char *const argv[], char *const envp[],
           long open_max)
{
    struct sigaction dfl;
    struct sched_param normal = {.sched_priority = 0};
    sigset_t none;
    int e[2];

    setpgid(0, 0);
    /* The script runs under the normal policy whatever the backend's
     * Scheduling (a system call: async-signal-safe). */
    (void)sched_setscheduler(0, SCHED_OTHER, &normal);
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL); /* EINVAL for glibc's own: fine */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Lift every fd above 3 first so the dup2s below cannot clobber one
     * another whatever numbers the pipes got. */
    in = fcntl(in, F_DUPFD_CLOEXEC, 10);
    out = fcntl(out, F_DUPFD_CLOEXEC, 10);
    err = fcntl(err, F_DUPFD_CLOEXEC, 10);
    ex = fcntl(ex, F_DUPFD_CLOEXEC, 10);
    if (in < 0 || out < 0 || err < 0 || ex < 0)
        _exit(127);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
        dup2(ex, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
        _exit(127);
    /* Whatever the worker core has open (sockets, rings) stays out. */
    if (close_range(4, ~0U, 0) < 0)
        for (long fd = 4; fd < open_max; fd++)
            close((int)fd);

    e[0] = 0;
    if (chdir(cwd) < 0) {
        e[1] = errno;
        if (write(3, e, sizeof(e)) < 0)
            _exit(127);
        _exit(127);
    }
    execve(script, argv, envp);
    e[0] = 1;
    e[1] = errno;
    if (write(3, e, sizeof(e)) < 0)
        _exit(127);
    _exit(127);
}

typedef struct cgi_child {
    pid_t pid;
    int in, out, err; /* our ends, non-blocking; -1 once closed */
} cgi_child_t;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* 0, or -1 with *what ("chdir", "exec", "pipe", "fork") and errno. */
static int cgi_spawn(const cgi_map_t *m, char **envp, cgi_child_t *ch,
                     const char **what)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1},
        ex[2] = {-1, -1};
    char *argv[2] = {m->script, NULL};
    long open_max = sysconf(_SC_OPEN_MAX);
    int saved;

    if (open_max < 0 || open_max > 65536)
        open_max = 65536;
    ch->pid = -1;
    ch->in = ch->out = ch->err = -1;
    *what = "pipe";
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(err, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0)
        goto fail;
    *what = "fork";
    pid_t pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0)
        child_exec(in[0], out[1], err[1], ex[1], m->cwd, m->script, argv, envp,
                   open_max);
    setpgid(pid, pid); /* also done by the child; whichever runs first */
    ch->pid = pid;
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&ex[1]);

    /* EOF: exec succeeded.  Two ints: step (0 chdir, 1 exec) and errno. */
    int e[2];
    ssize_t n;
    do
        n = read(ex[0], e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close_fd(&ex[0]);
    if (n == (ssize_t)sizeof(e)) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        ch->pid = -1;
        *what = e[0] == 0 ? "chdir" : "exec";
        errno = e[1];
        goto fail;
    }
    ch->in = in[1];
    ch->out = out[0];
    ch->err = err[0];
    fcntl(ch->in, F_SETFL, fcntl(ch->in, F_GETFL) | O_NONBLOCK);
    fcntl(ch->out, F_SETFL, fcntl(ch->out, F_GETFL) | O_NONBLOCK);
    fcntl(ch->err, F_SETFL, fcntl(ch->err, F_GETFL) | O_NONBLOCK);
    return 0;

fail:
    saved = errno;
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&out[1]);
    close_fd(&err[0]);
    close_fd(&err[1]);
    close_fd(&ex[0]);
    close_fd(&ex[1]);
    errno = saved;
    return -1;
}

/*
 * SIGTERM to the group, up to CGI_KILL_GRACE_MS for the leader to exit,
 * SIGKILL to the group, reap.  The leader is only looked at with WNOWAIT
 * before the SIGKILL: as an unreaped zombie it keeps the group id from
 * being reused, so the SIGKILL cannot hit a stranger.
 */
static void cgi_kill(pid_t pid)
{
    siginfo_t si;
    int64_t end = now_ns() + CGI_KILL_GRACE_MS * 1000000LL;
    int gone = 0;

    kill(-pid, SIGTERM);
    for (;;) {
        memset(&si, 0, sizeof(si));
        int rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || si.si_pid == pid) {
            gone = rc < 0; /* ECHILD: reaped behind our back (SIG_IGN) */
            break;
        }
        if (now_ns() >= end)
            break;
        sleep_ms(10);
    }
    if (!gone)
        kill(-pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

/* ---- 4. pump ------------------------------------------------------------ */

typedef struct cgi_hdr {
    char *name, *value;
} cgi_hdr_t;

typedef struct cgi_head {
    int status;
    char *reason;
    char *location;
    cgi_hdr_t *h;
    size_t n;
} cgi_head_t;

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/*
 * Parse the header block buf[0..len), which ends with its blank line.
 * Lines end in LF or CRLF.  Works in place (NUL-terminates names and
 * values).  0, or -1 with *why.
 */
static int cgi_parse_head(char *buf, size_t len, cgi_head_t *hd,
                          const char **why)
{
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    memset(hd, 0, sizeof(*hd));
    hd->h = calloc(lines ? lines : 1, sizeof(*hd->h));
    if (!hd->h) {
        *why = "out of memory";
        return -1;
    }
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            break; /* the blank line */
        *le = '\0';
        char *next = nl ? nl + 1 : end;
        if (*p == ' ' || *p == '\t') {
            *why = "folded header line";
            return -1;
        }
        char *colon = strchr(p, ':');
        if (!colon) {
            *why = p == buf ? "no header block (output must start with "
                              "CGI headers and a blank line)"
                            : "header line without ':'";
            return -1;
        }
        if (colon == p) {
            *why = "empty header name";
            return -1;
        }
        for (char *k = p; k < colon; k++)
            if (!is_tchar((unsigned char)*k)) {
                *why = "invalid character in a header name";
                return -1;
            }
        *colon = '\0';
        char *v = colon + 1, *ve = le;
        while (*v == ' ' || *v == '\t')
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = '\0';
        for (char *k = v; k < ve; k++)
            if (((unsigned char)*k < 0x20 && *k != '\t') || *k == 0x7f) {
                *why = "control character in a header value";
                return -1;
            }
        if (strcasecmp(p, "Status") == 0) {
            if (hd->status) {
                *why = "repeated Status";
                return -1;
            }
            if (!(v[0] >= '1' && v[0] <= '9' && v[1] >= '0' && v[1] <= '9' &&
                  v[2] >= '0' && v[2] <= '9' &&
                  (v[3] == '\0' || v[3] == ' ' || v[3] == '\t'))) {
                *why = "bad Status (want \"NNN reason\")";
                return -1;
            }
            hd->status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
            if (hd->status < 200 || hd->status > 599) {
                *why = "Status outside 200..599";
                return -1;
            }
            char *rs = v + 3;
            while (*rs == ' ' || *rs == '\t')
                rs++;
            hd->reason = *rs ? rs : NULL;
        } else if (strcasecmp(p, "Transfer-Encoding") == 0 ||
                   strcasecmp(p, "Connection") == 0) {
            /* hop-by-hop: the backend frames the body itself */
        } else {
            if (strcasecmp(p, "Location") == 0 && !hd->location)
                hd->location = v;
            hd->h[hd->n].name = p;
            hd->h[hd->n].value = v;
            hd->n++;
        }
        p = next;
    }
    return 0;
}

enum { RUN_OK, RUN_BADHEAD, RUN_TIMEOUT, RUN_ABORTED, RUN_FAILED };

typedef struct cgi_run {
    slotproxy_request_t *r;
    const char *script;
    cgi_child_t ch;
    size_t hcap;   /* header block limit */
    size_t bufcap; /* size of hbuf: max(hcap, CGI_CHUNK) */
    char *hbuf;    /* head accumulation, then reused for stdout chunks */
    size_t hlen;
    int head_done; /* head parsed and passed to the request */
    int touched;   /* status/headers given to the request: no error page */
    unsigned char *inbuf;
    size_t inoff, inlen;
    int body_eof;
    char ebuf[CGI_ERRLINE];
    size_t elen;
    const char *why;
} cgi_run_t;

static void err_emit(cgi_run_t *u, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    u->r->log(u->r, SLOTPROXY_LOG_WARN, "SPA0010: cgi %s: %.*s", u->script,
              (int)n, s);
}

/* Feed stderr bytes; one log entry per line (long lines are split). */
static void err_feed(cgi_run_t *u, const char *p, size_t n)
{
    while (n) {
        size_t k = sizeof(u->ebuf) - u->elen;
        if (k > n)
            k = n;
        memcpy(u->ebuf + u->elen, p, k);
        u->elen += k;
        p += k;
        n -= k;
        size_t start = 0;
        for (size_t i = 0; i < u->elen; i++)
            if (u->ebuf[i] == '\n') {
                err_emit(u, u->ebuf + start, i - start);
                start = i + 1;
            }
        if (start == 0 && u->elen == sizeof(u->ebuf)) {
            err_emit(u, u->ebuf, u->elen);
            start = u->elen;
        }
        memmove(u->ebuf, u->ebuf + start, u->elen - start);
        u->elen -= start;
    }
}

/* Send a body chunk and flush it: -1 if the stream is gone. */
static int out_send(cgi_run_t *u, const void *p, size_t n)
{
    if (n && u->r->write(u->r, p, n) < 0)
        return -1;
    return u->r->flush(u->r);
}

/* Look for the end of the head; when found, parse and pass it on.
 * 1 when the head is done, 0 when more is needed, -1 bad head, -2 client
 * gone. */
static int head_try(cgi_run_t *u, size_t from)
{
    char *b = u->hbuf;
    size_t i, end = 0;

    if (u->hlen >= 1 && b[0] == '\n')
        end = 1;
    else if (u->hlen >= 2 && b[0] == '\r' && b[1] == '\n')
        end = 2;
    if (end) {
        u->why = "empty header block";
        return -1;
    }
    /* A first line that is not "Name: value" means the script printed its
     * body without headers: say so now rather than at EOF. */
    char *nl = memchr(b, '\n', u->hlen);
    if (nl && !memchr(b, ':', (size_t)(nl - b))) {
        u->why = "no header block (output must start with CGI headers and "
                 "a blank line)";
        return -1;
    }
    for (i = from; i < u->hlen; i++) {
        if (b[i] != '\n')
            continue;
        if (i + 1 < u->hlen && b[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < u->hlen && b[i + 1] == '\r' && b[i + 2] == '\n') {
            end = i + 3;
            break;
        }
    }
    if (!end) {
        if (u->hlen >= u->hcap) {
            u->why = "header block larger than the limit";
            return -1;
        }
        return 0;
    }

    cgi_head_t hd;
    int rc = cgi_parse_head(b, end, &hd, &u->why);
    if (rc == 0) {
        slotproxy_request_t *r = u->r;
        int status = hd.status ? hd.status : hd.location ? 302 : 200;
        u->touched = 1;
        if (r->set_status(r, status, hd.reason) < 0)
            rc = -2;
        for (size_t k = 0; rc == 0 && k < hd.n; k++)
            if (r->add_header(r, hd.h[k].name, hd.h[k].value) < 0) {
                u->why = "the backend refused a header";
                rc = -1;
            }
    }
    free(hd.h);
    if (rc < 0)
        return rc;
    u->head_done = 1;
    /* What followed the blank line is the start of the body; the head is
     * flushed at once even without it (long-polling scripts). */
    if (out_send(u, b + end, u->hlen - end) < 0)
        return -2;
    return 1;
}

/* One readable event on stdout.  RUN_OK to go on, or the outcome; *eof set
 * at end of stream. */
static int on_stdout(cgi_run_t *u, int *eof)
{
    if (!u->head_done) {
        ssize_t n = read(u->ch.out, u->hbuf + u->hlen, u->hcap - u->hlen);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? RUN_OK : RUN_FAILED;
        if (n == 0) {
            *eof = 1;
            u->why =
                u->hlen ? "output ended inside the header block" : "no output";
            return RUN_BADHEAD;
        }
        size_t from = u->hlen > 2 ? u->hlen - 2 : 0;
        u->hlen += (size_t)n;
        int rc = head_try(u, from);
        return rc == -1 ? RUN_BADHEAD : rc == -2 ? RUN_ABORTED : RUN_OK;
    }
    ssize_t n = read(u->ch.out, u->hbuf, CGI_CHUNK);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? RUN_OK : RUN_FAILED;
    if (n == 0) {
        *eof = 1;
        return RUN_OK;
    }
    return out_send(u, u->hbuf, (size_t)n) < 0 ? RUN_ABORTED : RUN_OK;
}

static int cgi_pump(cgi_run_t *u, int64_t deadline)
{
    slotproxy_request_t *r = u->r;
    char tmp[4096];

    for (;;) {
        if (r->aborted(r))
            return RUN_ABORTED;
        if (u->ch.in >= 0 && u->inlen == 0 && !u->body_eof) {
            /* The only blocking call: waits for the client's body. */
            long n = r->read(r, u->inbuf, CGI_CHUNK);
            if (n < 0)
                return RUN_ABORTED;
            if (n == 0) {
                u->body_eof = 1;
                close_fd(&u->ch.in);
            } else {
                u->inoff = 0;
                u->inlen = (size_t)n;
            }
        }
        if (u->ch.out < 0 && u->ch.err < 0)
            return RUN_OK;

        struct pollfd pf[3];
        int np = 0, iin = -1, iout = -1, ierr = -1;
        if (u->ch.in >= 0 && u->inlen) {
            iin = np;
            pf[np++] = (struct pollfd){u->ch.in, POLLOUT, 0};
        }
        if (u->ch.out >= 0) {
            iout = np;
            pf[np++] = (struct pollfd){u->ch.out, POLLIN, 0};
        }
        if (u->ch.err >= 0) {
            ierr = np;
            pf[np++] = (struct pollfd){u->ch.err, POLLIN, 0};
        }
        int tmo = CGI_POLL_MS;
        if (deadline) {
            int64_t left = deadline - now_ns();
            /* Past the deadline with stdout already at EOF the answer is
             * complete: only stderr is still open.  End normally; the reap
             * below kills the script. */
            if (left <= 0)
                return u->ch.out < 0 && u->head_done ? RUN_OK : RUN_TIMEOUT;
            if (left < (int64_t)tmo * 1000000LL)
                tmo = (int)((left + 999999) / 1000000);
        }
        int rc = poll(pf, (nfds_t)np, tmo);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            u->why = "poll failed";
            return RUN_FAILED;
        }
        if (rc == 0)
            continue;

        if (iin >= 0 && pf[iin].revents) {
            ssize_t n = write(u->ch.in, u->inbuf + u->inoff, u->inlen);
            if (n > 0) {
                u->inoff += (size_t)n;
                u->inlen -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                /* EPIPE: the script stopped reading; the rest of the body
                 * is not its business any more. */
                close_fd(&u->ch.in);
                u->inlen = 0;
            }
        }
        if (iout >= 0 && pf[iout].revents) {
            int eof = 0;
            int st = on_stdout(u, &eof);
            if (eof)
                close_fd(&u->ch.out);
            if (st != RUN_OK)
                return st;
        }
        if (ierr >= 0 && pf[ierr].revents) {
            ssize_t n = read(u->ch.err, tmp, sizeof(tmp));
            if (n > 0) {
                err_feed(u, tmp, (size_t)n);
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close_fd(&u->ch.err);
                if (u->elen)
                    err_emit(u, u->ebuf, u->elen);
                u->elen = 0;
            }
        }
    }
}

/* After a normal end: wait for the script to exit, until the deadline. */
static void cgi_reap(cgi_run_t *u, int64_t deadline)
{
    pid_t pid = u->ch.pid;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return; /* ECHILD: auto-reaped */
        if (deadline && now_ns() >= deadline) {
            u->r->log(u->r, SLOTPROXY_LOG_ERR,
                      "SPA0023: cgi %s: still running at its deadline after "
                      "closing its output; killed",
                      u->script);
            cgi_kill(pid);
            return;
        }
        sleep_ms(2);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        u->r->log(u->r, SLOTPROXY_LOG_INFO, "SPA0017: cgi %s: exit status %d",
                  u->script, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        u->r->log(u->r, SLOTPROXY_LOG_WARN,
                  "SPA0018: cgi %s: killed by signal %d", u->script,
                  WTERMSIG(st));
}

/* ---- the handler -------------------------------------------------------- */

static int cgi_handle(void *ctx, slotproxy_request_t *r)
{
    cgi_ctx_t *c = ctx;
    cgi_map_t m;
    envb_t env;
    cgi_run_t u;
    struct sigaction ign, old_pipe;
    int status, ret = -1, outcome = RUN_FAILED;
    int64_t deadline = 0;

    memset(&env, 0, sizeof(env));
    memset(&u, 0, sizeof(u));
    u.ch.pid = -1;
    u.ch.in = u.ch.out = u.ch.err = -1;
    if ((status = cgi_map(c, r, &m)) != 0)
        return error_page(r, status);
    if (cgi_env(c, r, &m, &env) < 0) {
        r->log(r, SLOTPROXY_LOG_ERR, "SPA0020: cgi %s: out of memory",
               m.script);
        ret = error_page(r, 500);
        goto out;
    }

    u.r = r;
    u.script = m.script;
    u.hcap = c->opts.max_header_bytes;
    /* The buffer doubles as the stdout chunk buffer after the head. */
    u.bufcap = u.hcap > CGI_CHUNK ? u.hcap : CGI_CHUNK;
    u.hbuf = malloc(u.bufcap);
    u.inbuf = malloc(CGI_CHUNK);
    if (!u.hbuf || !u.inbuf) {
        r->log(r, SLOTPROXY_LOG_ERR, "SPA0020: cgi %s: out of memory",
               m.script);
        ret = error_page(r, 500);
        goto out;
    }

    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);

    if (c->opts.timeout_sec)
        deadline = now_ns() + (int64_t)c->opts.timeout_sec * 1000000000LL;
    const char *what = "";
    if (cgi_spawn(&m, env.v, &u.ch, &what) < 0) {
        r->log(r, SLOTPROXY_LOG_ERR, "SPA0014: cgi %s: %s failed: %s", m.script,
               what, strerror(errno));
        sigaction(SIGPIPE, &old_pipe, NULL);
        ret = error_page(r, 500);
        goto out;
    }

    outcome = cgi_pump(&u, deadline);
    close_fd(&u.ch.in);
    close_fd(&u.ch.out);
    close_fd(&u.ch.err);
    if (u.elen)
        err_emit(&u, u.ebuf, u.elen);
    if (outcome == RUN_OK)
        cgi_reap(&u, deadline);
    else
        cgi_kill(u.ch.pid);
    sigaction(SIGPIPE, &old_pipe, NULL);

    switch (outcome) {
    case RUN_OK:
        ret = 0;
        break;
    case RUN_BADHEAD:
        r->log(r, SLOTPROXY_LOG_ERR, "SPA0015: cgi %s: malformed output: %s",
               m.script, u.why ? u.why : "?");
        ret = u.touched ? -1 : error_page(r, 502);
        break;
    case RUN_TIMEOUT:
        r->log(r, SLOTPROXY_LOG_ERR,
               "SPA0016: cgi %s: no end after %u s; process group killed",
               m.script, c->opts.timeout_sec);
        /* Once part of the answer is out, abort the stream rather than
         * end it cleanly: a truncated body must not look complete. */
        ret = u.touched ? -1 : error_page(r, 504);
        break;
    case RUN_ABORTED:
        r->log(r, SLOTPROXY_LOG_INFO,
               "SPA0019: cgi %s: request aborted; script killed", m.script);
        ret = -1;
        break;
    default:
        r->log(r, SLOTPROXY_LOG_ERR, "SPA0024: cgi %s: %s", m.script,
               u.why ? u.why : "I/O error");
        ret = u.touched ? -1 : error_page(r, 502);
        break;
    }

out:
    free(u.hbuf);
    free(u.inbuf);
    env_free(&env);
    map_free(&m);
    return ret;
}

const slotproxy_app_t sp_app_cgi = {
    .abi_version = SLOTPROXY_APP_ABI,
    .name = "cgi",
    .init = NULL, /* sp_cgi_init, called by sp_handler_init */
    .handle = cgi_handle,
    .fini = cgi_fini,
};
