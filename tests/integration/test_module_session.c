/*
 * test_module_session.c - mod_slotproxy as a mod_session store, end to end
 * (see test_module.c): httpd prefork with 8+ children, mod_session with
 * SessionEnv/SessionHeader, the backend's builtin:session-demo counting in
 * the session (/session-demo/counter answers the incremented counter).
 *
 *   counter   one session created by a first request (1), then 8 threads
 *             x 125 keep-alive requests on its cookie at once: the answers
 *             are exactly 2..1001, the next one 1002 (no lost update); the
 *             access log (%P) shows how many children served them (prefork:
 *             at least 2 asserted, 8 seen).  Under prefork and event.
 *   restart   the session survives a graceful restart and a full stop and
 *             start; the file corrupted while httpd is stopped: httpd
 *             starts, logs it, and serves new sessions
 *   browser   headless Chromium (Debian's chromium) loads a driver page
 *             from httpd's DocumentRoot that opens /session-demo/ in an
 *             iframe, fills in the login form and clicks the button (a
 *             real form POST, redirect and cookie), then reloads the page
 *             four times, copying the greeting of every load into its own
 *             DOM; --dump-dom prints that DOM and the test asserts
 *             "Not logged in, visits: 1", then "Hello bob, visits: 2".."6"
 */
#include "test_module.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SESS_THREADS 8
#define SESS_PER_THREAD 125

static const char sess_backend[] =
    "Handler /session-demo/ builtin:session-demo\nWorkers 4\n";

/* The store lives in a directory of its own: it outlives each httpd. */
static void sess_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/spt-sess-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    chmod(dir, 0755);
}

static const char *sess_httpd_mpm(const char *dir, int mpm)
{
    static char conf[2048];
    snprintf(conf, sizeof(conf),
             "%s"
             "SlotProxyPass /session-demo/ app\n"
             "SlotProxySessionStore %s/sessions.db max_sessions=1024\n"
             "LogFormat \"%%P %%>s %%U\" sesspid\n"
             "CustomLog %s/access.log sesspid\n"
             "<Location /session-demo/>\n"
             "    Session On\n"
             "    SessionEnv On\n"
             "    SessionHeader X-Session-Update\n"
             "    SlotProxySession On\n"
             "</Location>\n",
             mpm == 0
                 ? "StartServers 8\nMinSpareServers 8\nMaxSpareServers 16\n"
                 : "StartServers 4\n",
             dir, dir);
    return conf;
}

static const char *sess_httpd(const char *dir)
{
    return sess_httpd_mpm(dir, 0);
}

typedef struct sess_buf {
    char body[8192];
    size_t blen;
    char cookie[128]; /* slotproxy_session=ID from Set-Cookie */
} sess_buf_t;

static size_t sess_body_cb(char *p, size_t sz, size_t n, void *arg)
{
    sess_buf_t *b = arg;
    size_t len = sz * n;
    size_t room = sizeof(b->body) - 1 - b->blen;
    memcpy(b->body + b->blen, p, len < room ? len : room);
    b->blen += len < room ? len : room;
    b->body[b->blen] = '\0';
    return len;
}

static size_t sess_header_cb(char *p, size_t sz, size_t n, void *arg)
{
    sess_buf_t *b = arg;
    size_t len = sz * n;
    static const char h[] = "set-cookie: slotproxy_session=";
    if (len > sizeof(h) - 1 && strncasecmp(p, h, sizeof(h) - 1) == 0) {
        size_t i = 12, o = 0; /* after "set-cookie: " */
        while (i < len && p[i] != ';' && p[i] != '\r' && p[i] != '\n' &&
               o + 1 < sizeof(b->cookie))
            b->cookie[o++] = p[i++];
        b->cookie[o] = '\0';
    }
    if (len >= 2 && strncasecmp(p, "x-session-update", 16) == 0)
        b->cookie[0] = '!'; /* leaked to the client: a failure */
    return len;
}

/* GET base+path with cookie (may be NULL).  Returns the HTTP status; the
 * body and any new session cookie in b. */
static long sess_get(CURL *c, const char *base, const char *path,
                     const char *cookie, sess_buf_t *b)
{
    char url[256];
    long status = 0;
    memset(b, 0, sizeof(*b));
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_COOKIE, cookie);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sess_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sess_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) != CURLE_OK)
        return -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* A new session: its cookie ("slotproxy_session=ID") into cookie. */
static void sess_new(const spt_httpd_t *h, char *cookie, size_t n)
{
    CURL *c = curl_easy_init();
    sess_buf_t b;
    ck_assert_int_eq(sess_get(c, h->base, "/session-demo/counter", NULL, &b),
                     200);
    ck_assert_str_eq(b.body, "1\n");
    ck_assert_msg(strncmp(b.cookie, "slotproxy_session=", 18) == 0 &&
                      strlen(b.cookie) == 18 + 32,
                  "no session cookie: '%s'", b.cookie);
    snprintf(cookie, n, "%s", b.cookie);
    curl_easy_cleanup(c);
}

/* One request on cookie: the counter it answers (-1 on failure); *fresh
 * (if not NULL) tells whether a new session cookie came back (which
 * counts as a failure when fresh is NULL). */
static long sess_count2(const spt_httpd_t *h, const char *cookie, int *fresh)
{
    CURL *c = curl_easy_init();
    sess_buf_t b;
    long st = sess_get(c, h->base, "/session-demo/counter", cookie, &b);
    curl_easy_cleanup(c);
    if (fresh)
        *fresh = b.cookie[0] != '\0';
    else if (b.cookie[0] != '\0')
        return -1;
    return st == 200 ? atol(b.body) : -1;
}

static long sess_count(const spt_httpd_t *h, const char *cookie)
{
    return sess_count2(h, cookie, NULL);
}

/* Overwrite the first stored copy of needle in the file. */
static int sess_scribble_value(const char *path, const char *needle)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    char *m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    char *hit = memmem(m, (size_t)sb.st_size, needle, strlen(needle));
    if (hit)
        memset(hit, 'X', strlen(needle));
    munmap(m, (size_t)sb.st_size);
    close(fd);
    return hit != NULL;
}

typedef struct sess_thread {
    const spt_httpd_t *h;
    const char *cookie;
    pthread_t t;
    long got[SESS_PER_THREAD];
    int failed;
    char err[512];
} sess_thread_t;

static void *sess_worker(void *arg)
{
    sess_thread_t *w = arg;
    CURL *c = curl_easy_init();
    for (int i = 0; i < SESS_PER_THREAD; i++) {
        sess_buf_t b;
        long st =
            sess_get(c, w->h->base, "/session-demo/counter", w->cookie, &b);
        if (st != 200 || b.cookie[0] != '\0') {
            if (!w->failed)
                snprintf(w->err, sizeof(w->err),
                         "status %ld, new cookie '%s', body '%.200s'", st,
                         b.cookie, b.body);
            w->failed++;
            w->got[i] = -1;
        } else
            w->got[i] = atol(b.body);
    }
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

/* Distinct pids in the access log for 200 answers of the counter. */
static int sess_children(const char *dir, int *lines)
{
    char path[300], line[512];
    long pids[64];
    int npids = 0;
    snprintf(path, sizeof(path), "%s/access.log", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    *lines = 0;
    while (fgets(line, sizeof(line), f)) {
        long pid;
        int st;
        char uri[256];
        if (sscanf(line, "%ld %d %255s", &pid, &st, uri) != 3 || st != 200 ||
            strcmp(uri, "/session-demo/counter") != 0)
            continue;
        (*lines)++;
        int k;
        for (k = 0; k < npids && pids[k] != pid; k++)
            ;
        if (k == npids && npids < 64)
            pids[npids++] = pid;
    }
    fclose(f);
    return npids;
}

static void sess_rmdir(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

START_TEST(module_session_counter)
{
    tm_env_t e;
    char dir[64], cookie[128];
    sess_dir(dir, sizeof(dir));
    tm_start(&e, _i, sess_backend, 0, "links=2", sess_httpd_mpm(dir, _i), 2);
    sess_new(&e.h, cookie, sizeof(cookie));

    sess_thread_t w[SESS_THREADS];
    double t0 = spt_ms();
    for (int i = 0; i < SESS_THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].h = &e.h;
        w[i].cookie = cookie;
        ck_assert_int_eq(pthread_create(&w[i].t, NULL, sess_worker, &w[i]), 0);
    }
    int failed = 0;
    for (int i = 0; i < SESS_THREADS; i++) {
        pthread_join(w[i].t, NULL);
        if (w[i].failed) {
            fprintf(stderr, "thread %d: %d failed, first: %s\n", i, w[i].failed,
                    w[i].err);
            failed += w[i].failed;
        }
    }
    double secs = (spt_ms() - t0) / 1000.0;
    ck_assert_int_eq(failed, 0);

    /* Every answer distinct, together exactly 2..1001: no lost update. */
    static long all[SESS_THREADS * SESS_PER_THREAD];
    int n = 0;
    for (int i = 0; i < SESS_THREADS; i++)
        for (int j = 0; j < SESS_PER_THREAD; j++)
            all[n++] = w[i].got[j];
    qsort(all, (size_t)n, sizeof(all[0]), cmp_long);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(all[i], i + 2);
    long final = sess_count(&e.h, cookie);
    ck_assert_int_eq(final, n + 2);

    /* The store's figures on the status page. */
    CURL *c = curl_easy_init();
    sess_buf_t *sb = malloc(sizeof(*sb));
    ck_assert_int_eq(sess_get(c, e.h.base, "/slotproxy-status?auto", NULL, sb),
                     200);
    ck_assert_msg(strstr(sb->body, "\nSessions: 1\n") != NULL &&
                      strstr(sb->body, "\nSessionPuts: ") != NULL,
                  "no session figures in:\n%s", sb->body);
    free(sb);
    curl_easy_cleanup(c);

    int lines = 0;
    int children = sess_children(dir, &lines);
    fprintf(stderr,
            "figure: %s: session counter: %d threads x %d requests on one "
            "session in %.2f s (%.0f/s), final counter %ld, served by %d "
            "distinct httpd children (%d access log lines)\n",
            e.mpm, SESS_THREADS, SESS_PER_THREAD, secs, n / secs, final,
            children, lines);
    /* prefork: 8 connections at once are 8 processes.  event: threads of
     * a few processes, which ones is up to the listeners. */
    if (_i == 0)
        ck_assert_int_ge(children, 2);
    tm_finish(&e, NULL, NULL);
    sess_rmdir(dir);
}
END_TEST

static const char *const corrupt_allowed[] = {"SPM0100", NULL};

START_TEST(module_session_restart)
{
    tm_env_t e;
    char dir[64], cookie[128], path[128];
    sess_dir(dir, sizeof(dir));
    tm_start(&e, 0, sess_backend, 0, "links=2", sess_httpd(dir), 2);
    sess_new(&e.h, cookie, sizeof(cookie));
    ck_assert_int_eq(sess_count(&e.h, cookie), 2);

    /* Graceful restart: the session is still there. */
    spt_httpd_graceful(&e.h);
    long v = -1;
    for (int i = 0; i < 200 && v < 0; i++) {
        v = sess_count(&e.h, cookie);
        if (v < 0)
            usleep(50000);
    }
    ck_assert_int_eq(v, 3);

    /* Full stop and start (a cold open of the file). */
    spt_httpd_finish(&e.h, NULL);
    spt_httpd_start(&e.h, "prefork",
                    spt_httpd_site(e.b.unix_addr, "links=2", sess_httpd(dir)),
                    2);
    ck_assert_int_eq(sess_count(&e.h, cookie), 4);
    ck_assert_int_eq(sess_count(&e.h, cookie), 5);

    /* A second session, then one value corrupted while httpd is stopped:
     * that session is dropped (logged), the other one is intact. */
    char cookie2[128], cookie3[128];
    sess_new(&e.h, cookie2, sizeof(cookie2));
    ck_assert_int_eq(sess_count(&e.h, cookie2), 2);
    spt_httpd_finish(&e.h, NULL);
    snprintf(path, sizeof(path), "%s/sessions.db", dir);
    ck_assert_msg(sess_scribble_value(path, "count=5"),
                  "the value of the first session is not in the file");
    spt_httpd_start(&e.h, "prefork",
                    spt_httpd_site(e.b.unix_addr, "links=2", sess_httpd(dir)),
                    2);
    int logged = spt_httpd_log_count(&e.h, "SPM0100");
    int fresh = 0;
    v = sess_count2(&e.h, cookie, &fresh);
    ck_assert_msg(v == 1 && fresh, "corrupt session answered %ld (new %d)", v,
                  fresh);
    ck_assert_int_eq(sess_count(&e.h, cookie2), 3);
    fprintf(stderr,
            "figure: session value corrupted while stopped: %d SPM0100 "
            "line(s) at start; that session dropped, the other intact\n",
            logged);
    ck_assert_int_gt(logged, 0);

    /* The whole file scribbled over (64 x 16 bytes, the header
     * included): httpd starts, logs it, and serves new sessions. */
    spt_httpd_finish(&e.h, corrupt_allowed);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    unsigned char junk[16];
    memset(junk, 0xa5, sizeof(junk));
    for (int i = 0; i < 64; i++) {
        off_t off = (off_t)((uint64_t)sb.st_size * (uint64_t)i / 64) + 8;
        ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), off), sizeof(junk));
    }
    close(fd);

    spt_httpd_start(&e.h, "prefork",
                    spt_httpd_site(e.b.unix_addr, "links=2", sess_httpd(dir)),
                    2);
    logged = spt_httpd_log_count(&e.h, "SPM0100");
    fprintf(stderr,
            "figure: session file scribbled over while stopped: %d SPM0100 "
            "line(s) at start\n",
            logged);
    ck_assert_int_gt(logged, 0);
    /* Old sessions are gone or intact, never garbage; new ones work. */
    v = sess_count2(&e.h, cookie2, &fresh);
    ck_assert_msg((v == 1 && fresh) || (v == 4 && !fresh),
                  "old session answered %ld (new %d)", v, fresh);
    sess_new(&e.h, cookie3, sizeof(cookie3));
    ck_assert_int_eq(sess_count(&e.h, cookie3), 2);
    tm_finish(&e, corrupt_allowed, NULL);
    sess_rmdir(dir);
}
END_TEST

/* ---- a real browser ------------------------------------------------------ */

static const char driver_html[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n"
    "<pre id=\"result\"></pre>\n<script>\n"
    "var out = document.getElementById('result'), step = 0;\n"
    "var f = document.createElement('iframe');\n"
    "f.onload = function () {\n"
    "  var d = f.contentDocument, g = d && d.getElementById('greeting');\n"
    "  out.textContent += 'load ' + step + ': ' +\n"
    "      (g ? g.textContent : 'no greeting') + '\\n';\n"
    "  step++;\n"
    "  if (step == 1) {\n"
    "    d.getElementById('name').value = 'bob';\n"
    "    d.getElementById('login').click();\n"
    "  } else if (step < 6) {\n"
    "    f.contentWindow.location.reload();\n"
    "  } else {\n"
    "    out.textContent += 'done\\n';\n"
    "  }\n"
    "};\n"
    "f.src = '/session-demo/';\n"
    "document.body.appendChild(f);\n"
    "</script></body></html>\n";

/* Run chromium --dump-dom on url; its stdout into out (cap).  Returns the
 * bytes read. */
static size_t run_chromium(const char *url, const char *profile, char *out,
                           size_t cap)
{
    int pfd[2];
    char prof_arg[300];
    snprintf(prof_arg, sizeof(prof_arg), "--user-data-dir=%s", profile);
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0)
            dup2(dn, 2);
        close(pfd[0]);
        close(pfd[1]);
        execlp("chromium", "chromium", "--headless", "--no-sandbox",
               "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", prof_arg,
               "--virtual-time-budget=30000", "--dump-dom", url, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    double t0 = spt_ms();
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t r = read(pfd[0], out + n, cap - 1 - n);
        if (r > 0) {
            n += (size_t)r;
            if (n >= cap - 1)
                break;
            continue;
        }
        if (r == 0)
            break;
        if (spt_ms() - t0 > 90000) {
            kill(pid, SIGKILL);
            break;
        }
        usleep(20000);
    }
    out[n] = '\0';
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "chromium failed (status 0x%x); is Debian's chromium "
                  "installed (scripts/deps.sh check)?",
                  status);
    return n;
}

START_TEST(module_session_browser)
{
    tm_env_t e;
    char dir[64], path[400], profile[64];
    sess_dir(dir, sizeof(dir));
    tm_start(&e, 0, sess_backend, 0, "links=2", sess_httpd(dir), 2);
    snprintf(path, sizeof(path), "%s/driver.html", e.h.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(driver_html, f);
    fclose(f);
    chmod(path, 0644);
    snprintf(profile, sizeof(profile), "/tmp/spt-chromium-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(profile));

    static char dom[65536];
    char url[128];
    snprintf(url, sizeof(url), "%s/driver.html", e.h.base);
    double t0 = spt_ms();
    run_chromium(url, profile, dom, sizeof(dom));
    double ms = spt_ms() - t0;
    const char *res = strstr(dom, "<pre id=\"result\">");
    ck_assert_msg(res != NULL, "no result in the DOM:\n%.2000s", dom);
    static const char *const want[] = {"load 0: Not logged in, visits: 1",
                                       "load 1: Hello bob, visits: 2",
                                       "load 2: Hello bob, visits: 3",
                                       "load 3: Hello bob, visits: 4",
                                       "load 4: Hello bob, visits: 5",
                                       "load 5: Hello bob, visits: 6",
                                       "done"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(res, want[i]) != NULL,
                      "'%s' not in the DOM:\n%.2000s", want[i], res);
    fprintf(stderr,
            "figure: headless chromium: login + 4 reloads, visits 1..6 "
            "read from the DOM (%.0f ms)\n",
            ms);
    sess_rmdir(profile);
    tm_finish(&e, NULL, NULL);
    sess_rmdir(dir);
}
END_TEST

void tm_add_session_cases(Suite *s)
{
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, module_session_counter, 0, TM_NMPMS);
    tcase_add_test(tc, module_session_restart);
    suite_add_tcase(s, tc);

    tc = tcase_create("browser");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, module_session_browser);
    suite_add_tcase(s, tc);
}
