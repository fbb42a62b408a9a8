/*
 * test_apps.c - the application layer (slotproxy-backend/apps/) on its own:
 * builtin:hello and builtin:echo byte for byte, the plugin loader (the
 * shipped sample plugin, and refusals of broken .so files compiled here),
 * and the CGI runner with real /bin/sh scripts: meta-variables, streamed
 * stdin/stdout, header parsing, stderr to the log, timeouts that kill the
 * process group, malformed output, path refusals, no zombies, no fd leaks.
 *
 * Requests go through apps_harness.c, an in-memory slotproxy_request_t.
 * The sample plugin test needs SP_SAMPLE_PLUGIN (the Makefile points it at
 * build/slotproxy-backend/sample_plugin.so); the broken-plugin tests need
 * `cc` on PATH.
 *
 * The apps sources are #included so that the runner needs no extra build
 * rules for them (STYLE.md: tests may include the .c they test).
 */
#include "sp_unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apps_harness.h"

#include "../../slotproxy-backend/apps/app_builtin.c"
#include "../../slotproxy-backend/apps/app_cgi.c"
#include "../../slotproxy-backend/apps/app_plugin.c"

/* ---- helpers ------------------------------------------------------------ */

static int64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void load_ok(sp_handler_t *h, const char *prefix, const char *spec,
                    const char *arg)
{
    char err[512] = "";
    int rc = sp_handler_load(h, prefix, spec, arg, err, sizeof(err));
    ck_assert_msg(rc == 0, "load %s: %s", spec, err);
    rc = sp_handler_init(h, err, sizeof(err));
    ck_assert_msg(rc == 0, "init %s: %s", spec, err);
}

/* Load must fail with a message containing each needle. */
static void load_fails(const char *spec, const char *needle1,
                       const char *needle2)
{
    sp_handler_t h;
    char err[512] = "";
    ck_assert_int_eq(sp_handler_load(&h, "/x/", spec, NULL, err, sizeof(err)),
                     -1);
    ck_assert_msg(strstr(err, needle1), "error for %s: \"%s\" lacks \"%s\"",
                  spec, err, needle1);
    ck_assert_msg(!needle2 || strstr(err, needle2),
                  "error for %s: \"%s\" lacks \"%s\"", spec, err, needle2);
    ck_assert_ptr_null(h.prefix);
    ck_assert_ptr_null(h.dso);
    sp_handler_unload(&h);
}

static unsigned char *pattern_buf(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (unsigned char)(x >> 16);
    }
    return b;
}

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static int count_fds(void)
{
    int n = 0;
    char p[64];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        n += access(p, F_OK) == 0;
    }
    return n;
}

/* No child of this (Check-forked) test process is left, zombie or not. */
static void assert_no_children(void)
{
    int st;
    errno = 0;
    pid_t w = waitpid(-1, &st, WNOHANG);
    ck_assert_msg(w == -1 && errno == ECHILD,
                  "a child process is left (waitpid: %d)", (int)w);
}

/* A process is gone if it does not exist or is a zombie of someone else
 * (reparented to an init that may be slow to reap). */
static int proc_gone(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static pid_t read_pid(const char *path)
{
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(path, "r");
        int pid = 0;
        if (f) {
            int ok = fscanf(f, "%d", &pid) == 1;
            fclose(f);
            if (ok && pid > 0)
                return pid;
        }
        usleep(10000);
    }
    ck_abort_msg("no pid in %s", path);
    return -1;
}

/* ---- builtin:hello ------------------------------------------------------ */

START_TEST(hello_exact)
{
    sp_handler_t h;
    sp_harness_t x;
    load_ok(&h, "/hello", "builtin:hello", NULL);
    ck_assert_int_eq(h.kind, SP_HANDLER_BUILTIN);

    sp_harness_init(&x, "GET", "/hello");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_uint_eq(x.nrh, 2);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                     "text/plain");
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Length", 0), "13");
    ck_assert_uint_eq(x.out_len, 13);
    ck_assert_int_eq(memcmp(x.out, "Hello, world\n", 13), 0);
    ck_assert_uint_eq(x.writes, 1);
    ck_assert_str_eq(x.req.prefix, "/hello");
    sp_harness_free(&x);

    /* A client that is gone: the write fails and so does handle(). */
    sp_harness_init(&x, "GET", "/hello");
    x.aborted = 1;
    ck_assert_int_eq(sp_harness_run(&x, &h), -1);
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);

    sp_handler_fini(&h);
    sp_handler_unload(&h);
    ck_assert_ptr_null(h.prefix);
}
END_TEST

/* ---- builtin:echo ------------------------------------------------------- */

START_TEST(echo_description)
{
    sp_handler_t h;
    sp_harness_t x;
    load_ok(&h, "/echo/", "builtin:echo", "the-arg");

    sp_harness_init(&x, "POST", "/echo/a/b?x=1&y=2");
    x.req.remote_port = 51234;
    x.req.https = 1;
    x.req.scheme = "https";
    x.req.remote_user = "alice";
    x.req.auth_type = "Basic";
    sp_harness_add_header(&x, "Host", "example.org");
    sp_harness_add_header(&x, "X-Rep", "one");
    sp_harness_add_header(&x, "X-Rep", "two");
    sp_harness_add_env(&x, "SSL_PROTOCOL", "TLSv1.3");
    sp_harness_add_env(&x, "UNIQUE_ID", "abc");
    sp_harness_set_body(&x, "hello body", 10, 0);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                     "text/plain");
    ck_assert_str_eq(sp_harness_body(&x), "method: POST\n"
                                          "uri: /echo/a/b?x=1&y=2\n"
                                          "path: /echo/a/b\n"
                                          "query: x=1&y=2\n"
                                          "protocol: HTTP/1.1\n"
                                          "scheme: https\n"
                                          "https: on\n"
                                          "server_name: localhost\n"
                                          "local: 127.0.0.1:8080\n"
                                          "remote: 127.0.0.1:51234\n"
                                          "remote_user: alice\n"
                                          "auth_type: Basic\n"
                                          "content_length: 10\n"
                                          "prefix: /echo/\n"
                                          "arg: the-arg\n"
                                          "header: Host: example.org\n"
                                          "header: X-Rep: one\n"
                                          "header: X-Rep: two\n"
                                          "env: SSL_PROTOCOL=TLSv1.3\n"
                                          "env: UNIQUE_ID=abc\n"
                                          "body:\n"
                                          "hello body");
    sp_harness_free(&x);

    /* IPv6 peer, chunked upload. */
    sp_harness_init(&x, "PUT", "/echo");
    x.req.remote_addr = "::1";
    sp_harness_set_body(&x, "z", 1, 1);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_ptr_nonnull(strstr(sp_harness_body(&x), "remote: [::1]:40000\n"));
    ck_assert_ptr_nonnull(strstr(sp_harness_body(&x), "content_length: -1\n"));
    ck_assert_ptr_nonnull(strstr(sp_harness_body(&x), "\nbody:\nz"));
    ck_assert_str_eq(sp_harness_body(&x) + x.out_len - 7, "body:\nz");
    sp_harness_free(&x);
    sp_handler_unload(&h);
}
END_TEST

static void echo_bytes(sp_handler_t *h, size_t n, size_t read_chunk,
                       int chunked)
{
    sp_harness_t x;
    unsigned char *body = pattern_buf(n, (unsigned)n);
    sp_harness_init(&x, "POST", "/echo/?bodyonly=1");
    sp_harness_set_body(&x, body, n, chunked);
    x.read_chunk = read_chunk;
    ck_assert_int_eq(sp_harness_run(&x, h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_msg(x.out_len == n, "%zu bytes echoed for %zu", x.out_len, n);
    ck_assert_int_eq(n == 0 || memcmp(x.out, body, n) == 0, 1);
    ck_assert_uint_eq(x.body_off, n);
    /* streamed: never more than one 64 KiB chunk per write */
    if (n > 65536)
        ck_assert_uint_ge(x.writes, n / 65536);
    sp_harness_free(&x);
    free(body);
}

START_TEST(echo_body_exact)
{
    sp_handler_t h;
    load_ok(&h, "/echo/", "builtin:echo", NULL);
    echo_bytes(&h, 0, 0, 0);
    echo_bytes(&h, 1, 0, 0);
    echo_bytes(&h, 1 << 20, 0, 0);
    echo_bytes(&h, (1 << 20) + 7, 1000, 1);
    echo_bytes(&h, 65537, 1, 1);

    /* The description variant with a 1 MB body ends with the raw bytes. */
    sp_harness_t x;
    size_t n = 1 << 20;
    unsigned char *body = pattern_buf(n, 9);
    sp_harness_init(&x, "POST", "/echo/");
    sp_harness_set_body(&x, body, n, 0);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_uint_gt(x.out_len, n + 6);
    ck_assert_int_eq(memcmp(x.out + x.out_len - n - 6, "body:\n", 6), 0);
    ck_assert_int_eq(memcmp(x.out + x.out_len - n, body, n), 0);
    sp_harness_free(&x);
    free(body);

    /* The client goes away after 100000 bytes: handle() gives up. */
    n = 1 << 20;
    body = pattern_buf(n, 3);
    sp_harness_init(&x, "POST", "/echo/?bodyonly=1");
    sp_harness_set_body(&x, body, n, 0);
    x.abort_after = 100000;
    ck_assert_int_eq(sp_harness_run(&x, &h), -1);
    ck_assert_uint_eq(x.out_total, 100000);
    ck_assert_uint_lt(x.body_off, n);
    sp_harness_free(&x);
    free(body);
    sp_handler_unload(&h);
}
END_TEST

static void check_pattern(sp_handler_t *h, unsigned long long n)
{
    sp_harness_t x;
    char uri[64], len[32];
    snprintf(uri, sizeof(uri), "/echo/?size=%llu", n);
    sp_harness_init(&x, "POST", uri);
    sp_harness_set_body(&x, "ignored", 7, 0);
    ck_assert_int_eq(sp_harness_run(&x, h), 0);
    ck_assert_int_eq(x.status, 200);
    snprintf(len, sizeof(len), "%llu", n);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Length", 0), len);
    ck_assert_uint_eq(x.out_len, n);
    for (size_t i = 0; i < n; i++)
        if (x.out[i] != (unsigned char)((i * 7 + 3) & 0xff))
            ck_abort_msg("size=%llu: byte %zu is %u", n, i, x.out[i]);
    ck_assert_uint_eq(x.body_off, 0); /* the request body was not read */
    sp_harness_free(&x);
}

static void count_pattern(sp_harness_t *x, const void *buf, size_t len)
{
    const unsigned char *b = buf;
    unsigned long long base = x->out_total - len;
    int *bad = x->user;
    ck_assert_uint_le(len, 65536);
    for (size_t i = 0; i < len; i++)
        if (b[i] != (unsigned char)(((base + i) * 7 + 3) & 0xff))
            *bad = 1;
}

START_TEST(echo_options)
{
    sp_handler_t h;
    sp_harness_t x;
    load_ok(&h, "/echo/", "builtin:echo", NULL);

    sp_harness_init(&x, "GET", "/echo/?status=418");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 418);
    ck_assert_ptr_nonnull(strstr(sp_harness_body(&x), "method: GET\n"));
    sp_harness_free(&x);

    static const char *bad[] = {"status=99", "status=600",   "status=2x0",
                                "status=",   "setcookie=-1", "size=abc",
                                "sleep=1e3", "bodyonly=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char uri[64];
        snprintf(uri, sizeof(uri), "/echo/?%s", bad[i]);
        sp_harness_init(&x, "GET", uri);
        ck_assert_int_eq(sp_harness_run(&x, &h), 0);
        ck_assert_msg(x.status == 400, "%s gave %d", bad[i], x.status);
        sp_harness_free(&x);
    }

    sp_harness_init(&x, "GET", "/echo/?a=b&setcookie=3&status=201");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 201);
    ck_assert_uint_eq(sp_harness_resp_count(&x, "Set-Cookie"), 3);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Set-Cookie", 0), "c1=v1");
    ck_assert_str_eq(sp_harness_resp_header(&x, "Set-Cookie", 1), "c2=v2");
    ck_assert_str_eq(sp_harness_resp_header(&x, "Set-Cookie", 2), "c3=v3");
    ck_assert_uint_eq(x.flushes, 0);
    sp_harness_free(&x);

    /* 204 and HEAD carry no body. */
    sp_harness_init(&x, "GET", "/echo/?status=204");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 204);
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);
    sp_harness_init(&x, "HEAD", "/echo/?size=10");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Length", 0), "10");
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);

    /* flush=1: the head goes out before any body byte. */
    sp_harness_init(&x, "GET", "/echo/?size=0&flush=1");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_uint_eq(x.flushes, 1);
    ck_assert_uint_eq(x.writes, 0);
    sp_harness_free(&x);

    check_pattern(&h, 0);
    check_pattern(&h, 1);
    check_pattern(&h, 256);
    check_pattern(&h, 65537);
    check_pattern(&h, 3 * 65536 + 5);

    /* 100 MB streamed in 64 KiB writes, checked on the fly, not stored. */
    int badbyte = 0;
    sp_harness_init(&x, "GET", "/echo/?size=104857600");
    x.on_body = count_pattern;
    x.user = &badbyte;
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_uint_eq(x.out_total, 104857600ULL);
    ck_assert_uint_eq(x.writes, 1600);
    ck_assert_int_eq(badbyte, 0);
    ck_assert_ptr_null(x.out);
    sp_harness_free(&x);
    sp_handler_unload(&h);
}
END_TEST

START_TEST(echo_sleep_abort_crash)
{
    sp_handler_t h;
    sp_harness_t x;
    load_ok(&h, "/echo/", "builtin:echo", NULL);

    int64_t t0 = t_now_ms();
    sp_harness_init(&x, "GET", "/echo/?sleep=150&bodyonly=1");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_ge(t_now_ms() - t0, 150);
    ck_assert_int_eq(x.status, 200);
    sp_harness_free(&x);

    /* Aborted 100 ms into a 10 s sleep: back within a few polls. */
    t0 = t_now_ms();
    sp_harness_init(&x, "GET", "/echo/?sleep=10000");
    x.abort_at_ns = now_ns() + 100 * 1000000LL;
    ck_assert_int_eq(sp_harness_run(&x, &h), -1);
    int64_t took = t_now_ms() - t0;
    ck_assert_msg(took >= 100 && took < 1000, "took %lld ms", (long long)took);
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);

    /* crash=1 kills the process with SIGABRT (after the head with
     * flush=1). */
    for (int flush = 0; flush < 2; flush++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            signal(SIGABRT, SIG_DFL);
            sp_harness_init(
                &x, "GET", flush ? "/echo/?crash=1&flush=1" : "/echo/?crash=1");
            sp_harness_run(&x, &h);
            _exit(0);
        }
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
                      "crash=1 did not abort (status %x)", st);
    }
    sp_handler_unload(&h);
}
END_TEST

/* ---- the table ---------------------------------------------------------- */

START_TEST(table_load_and_match)
{
    sp_handler_t hs[5];
    load_ok(&hs[0], "/", "builtin:hello", NULL);
    load_ok(&hs[1], "/app", "builtin:echo", NULL);
    load_ok(&hs[2], "/app/", "builtin:hello", NULL);
    load_ok(&hs[3], "/app/deep/", "builtin:echo", NULL);
    load_ok(&hs[4], "/only", "builtin:echo", NULL);

    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/"), &hs[0]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/other"), &hs[0]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/application"), &hs[0]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app"), &hs[1]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app/"), &hs[2]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app/x"), &hs[2]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app/deep"), &hs[3]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app/deep/er"), &hs[3]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/app/deeper"), &hs[2]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/only/x"), &hs[4]);
    ck_assert_ptr_eq(sp_handler_match(hs, 5, "/onlyx"), &hs[0]);
    /* without the catch-all */
    ck_assert_ptr_null(sp_handler_match(hs + 1, 4, "/"));
    ck_assert_ptr_null(sp_handler_match(hs + 1, 4, "/ap"));
    ck_assert_ptr_eq(sp_handler_match(hs + 2, 3, "/app"), &hs[2]);
    ck_assert_ptr_null(sp_handler_match(hs + 3, 2, "/app/dee"));
    ck_assert_ptr_null(sp_handler_match(hs, 0, "/"));
    for (int i = 0; i < 5; i++)
        sp_handler_unload(&hs[i]);

    load_fails("builtin:nope", "builtin:nope", "unknown builtin");
    load_fails("fastcgi:/x", "unknown application type", "fastcgi");
    load_fails("hello", "\"hello\"", "builtin:NAME");
    load_fails("builtin:", "builtin:", NULL);
    load_fails("cgi:relative/dir", "cgi:relative/dir", "absolute");
    load_fails("cgi:/nonexistent-sp-dir", "cgi:/nonexistent-sp-dir",
               "No such file");
    load_fails("cgi:/etc/hostname", "/etc/hostname", "not a directory");

    sp_handler_t h;
    char err[256] = "";
    ck_assert_int_eq(
        sp_handler_load(&h, "noslash", "builtin:hello", NULL, err, sizeof(err)),
        -1);
    ck_assert_ptr_nonnull(strstr(err, "must start with '/'"));
    sp_handler_unload(&h);

    /* The CGI timeout setter leaves other kinds alone. */
    ck_assert_int_eq(
        sp_handler_load(&h, "/h", "builtin:echo", "", err, sizeof(err)), 0);
    sp_handler_set_cgi_timeout(&h, 5);
    ck_assert_uint_eq(h.cgi.timeout_sec, SP_CGI_DEFAULT_TIMEOUT);
    sp_handler_unload(&h);

    /* Handling without init: 500 and a log line, never a crash. */
    sp_harness_t x;
    ck_assert_int_eq(
        sp_handler_load(&h, "/h", "builtin:hello", "", err, sizeof(err)), 0);
    sp_harness_init(&x, "GET", "/h");
    ck_assert_int_eq(sp_harness_run(&x, &h), -1);
    ck_assert_int_eq(x.status, 500);
    ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_ERR, "SPA0001"), 1);
    sp_harness_free(&x);
    sp_handler_unload(&h);
}
END_TEST

/* ---- plugins ------------------------------------------------------------ */

static uint32_t adler32_ref(const unsigned char *p, size_t n)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}

START_TEST(plugin_sample)
{
    const char *so = getenv("SP_SAMPLE_PLUGIN");
    ck_assert_msg(so && *so,
                  "SP_SAMPLE_PLUGIN is not set: point it at the built "
                  "sample_plugin.so (the Makefile sets it to "
                  "build/slotproxy-backend/sample_plugin.so)");
    char spec[4200], err[512] = "";
    char real[4096];
    ck_assert_msg(realpath(so, real) != NULL, "SP_SAMPLE_PLUGIN=%s: %s", so,
                  strerror(errno));
    snprintf(spec, sizeof(spec), "plugin:%s", real);

    sp_handler_t h;
    sp_harness_t x;
    load_ok(&h, "/app/", spec, "Howdy");
    ck_assert_int_eq(h.kind, SP_HANDLER_PLUGIN);
    ck_assert_ptr_nonnull(h.dso);
    ck_assert_str_eq(h.app->name, "sample");

    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    for (int i = 1; i <= 3; i++) {
        char want[128];
        sp_harness_init(&x, "GET", "/app/?name=%3Cb%3E+%26+%22q%22");
        ck_assert_int_eq(sp_harness_run(&x, &h), 0);
        ck_assert_int_eq(x.status, 200);
        ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                         "text/html; charset=utf-8");
        ck_assert_str_eq(sp_harness_resp_header(&x, "X-Sample-Worker", 0), pid);
        char len[32];
        snprintf(len, sizeof(len), "%zu", x.out_len);
        ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Length", 0), len);
        ck_assert_ptr_nonnull(strstr(sp_harness_body(&x),
                                     "Howdy, &lt;b&gt; &amp; &quot;q&quot;!"));
        ck_assert_ptr_null(strstr(sp_harness_body(&x), "<b>"));
        snprintf(want, sizeof(want), "Worker %s has served %d request%s.", pid,
                 i, i == 1 ? "" : "s");
        ck_assert_msg(strstr(sp_harness_body(&x), want), "want \"%s\" in %s",
                      want, sp_harness_body(&x));
        sp_harness_free(&x);
    }

    /* POST: streamed byte count and Adler-32, with a known vector. */
    sp_harness_init(&x, "POST", "/app/");
    sp_harness_set_body(&x, "Wikipedia", 9, 0);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_str_eq(sp_harness_body(&x), "bytes: 9\nadler32: 11e60398\n");
    sp_harness_free(&x);

    size_t n = 3 * 1000 * 1000 + 1;
    unsigned char *body = pattern_buf(n, 5);
    char want[128];
    snprintf(want, sizeof(want), "bytes: %zu\nadler32: %08x\n", n,
             adler32_ref(body, n));
    sp_harness_init(&x, "POST", "/app/upload");
    sp_harness_set_body(&x, body, n, 1);
    x.read_chunk = 777;
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_str_eq(sp_harness_body(&x), want);
    ck_assert_uint_ge(x.reads, n / 777);
    sp_harness_free(&x);
    free(body);

    sp_harness_init(&x, "DELETE", "/app/");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 405);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Allow", 0),
                     "GET, HEAD, POST, PUT");
    sp_harness_free(&x);

    sp_handler_fini(&h);
    ck_assert_int_eq(h.inited, 0);
    sp_handler_unload(&h);
    ck_assert_ptr_null(h.dso);

    /* An argument too long for the plugin: init fails with its message,
     * then every request is a 500 with that message in the log. */
    char longarg[100];
    memset(longarg, 'g', sizeof(longarg) - 1);
    longarg[sizeof(longarg) - 1] = '\0';
    ck_assert_int_eq(
        sp_handler_load(&h, "/app/", spec, longarg, err, sizeof(err)), 0);
    ck_assert_int_eq(sp_handler_init(&h, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "greeting longer than"), "err: %s", err);
    sp_harness_init(&x, "GET", "/app/");
    ck_assert_int_eq(sp_harness_run(&x, &h), -1);
    ck_assert_int_eq(x.status, 500);
    ck_assert_int_eq(
        sp_harness_logged(&x, SLOTPROXY_LOG_ERR, "greeting longer than"), 1);
    sp_harness_free(&x);
    sp_handler_unload(&h);
}
END_TEST

/* Compile src into dir/name.so; the plugin variants do not include
 * slotproxy_app.h on purpose (a wrong-ABI plugin would not). */
static void build_so(const char *dir, const char *name, const char *src,
                     const char *extra)
{
    char c[512], so[512], cmd[2048];
    snprintf(c, sizeof(c), "%s/%s.c", dir, name);
    snprintf(so, sizeof(so), "%s/%s.so", dir, name);
    write_file(c, src, 0644);
    snprintf(cmd, sizeof(cmd), "cc -shared -fPIC %s -o %s %s",
             extra ? extra : "", so, c);
    ck_assert_msg(system(cmd) == 0, "build failed: %s", cmd);
}

#define PLUGIN_STRUCT                                                          \
    "#include <stddef.h>\n"                                                    \
    "struct app { unsigned abi; const char *name;\n"                           \
    "  int (*init)(void **, const char *, char *, size_t);\n"                  \
    "  int (*handle)(void *, void *); void (*fini)(void *); };\n"              \
    "static int h(void *c, void *r) { (void)c; (void)r; return 0; }\n"

START_TEST(plugin_load_errors)
{
    char dir[] = "/tmp/sp-plugin-XXXXXX";
    char spec[600], path[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));

    build_so(dir, "nosym", "int something_else = 1;\n", NULL);
    build_so(dir, "abi2",
             PLUGIN_STRUCT "const struct app slotproxy_app = {2, \"x\", 0, "
                           "h, 0};\n",
             NULL);
    build_so(dir, "nohandle",
             PLUGIN_STRUCT "const struct app slotproxy_app = {1, \"x\", 0, "
                           "0, 0};\n",
             NULL);
    build_so(dir, "unresolved",
             PLUGIN_STRUCT "extern int sp_no_such_symbol_anywhere(void);\n"
                           "static int g(void *c, void *r) { (void)c; "
                           "(void)r; return sp_no_such_symbol_anywhere(); }\n"
                           "const struct app slotproxy_app = {1, \"x\", 0, "
                           "g, 0};\n",
             NULL);
    build_so(dir, "good",
             PLUGIN_STRUCT "const struct app slotproxy_app = {1, \"good\", "
                           "0, h, 0};\n",
             NULL);
    snprintf(path, sizeof(path), "%s/text.so", dir);
    write_file(path, "this is not an ELF object\n", 0755);

    snprintf(spec, sizeof(spec), "plugin:%s/missing.so", dir);
    load_fails(spec, "missing.so", "No such file or directory");
    load_fails("plugin:relative.so", "relative.so", "absolute");
    snprintf(spec, sizeof(spec), "plugin:%s", dir);
    load_fails(spec, dir, "not a regular file");
    snprintf(spec, sizeof(spec), "plugin:%s/text.so", dir);
    load_fails(spec, "text.so", "cannot load");
    snprintf(spec, sizeof(spec), "plugin:%s/nosym.so", dir);
    load_fails(spec, "nosym.so", "no symbol `slotproxy_app`");
    snprintf(spec, sizeof(spec), "plugin:%s/abi2.so", dir);
    load_fails(spec, "abi2.so", "ABI 2, this backend supports ABI 1");
    snprintf(spec, sizeof(spec), "plugin:%s/nohandle.so", dir);
    load_fails(spec, "nohandle.so", "handle is NULL");
    snprintf(spec, sizeof(spec), "plugin:%s/unresolved.so", dir);
    load_fails(spec, "unresolved.so", "sp_no_such_symbol_anywhere");

    /* The control: a minimal correct plugin loads, runs and unloads. */
    sp_handler_t h;
    sp_harness_t x;
    snprintf(spec, sizeof(spec), "plugin:%s/good.so", dir);
    load_ok(&h, "/g/", spec, NULL);
    ck_assert_str_eq(h.app->name, "good");
    sp_harness_init(&x, "GET", "/g/");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);
    sp_handler_unload(&h);
    rm_rf(dir);
}
END_TEST

/* ---- CGI ---------------------------------------------------------------- */

typedef struct cgi_fixture {
    char dir[64];
    char real[4096];
    sp_handler_t h;
    int fds_before;
} cgi_fixture_t;

static void cgi_setup(cgi_fixture_t *f, unsigned timeout_sec, size_t max_header)
{
    char spec[4200], err[512] = "";
    f->fds_before = count_fds();
    snprintf(f->dir, sizeof(f->dir), "/tmp/sp-cgi-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    ck_assert_ptr_nonnull(realpath(f->dir, f->real));
    snprintf(spec, sizeof(spec), "cgi:%s", f->dir);
    ck_assert_int_eq(
        sp_handler_load(&f->h, "/cgi-bin/", spec, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(f->h.kind, SP_HANDLER_CGI);
    ck_assert_uint_eq(f->h.cgi.timeout_sec, SP_CGI_DEFAULT_TIMEOUT);
    ck_assert_uint_eq(f->h.cgi.max_header_bytes, SP_CGI_DEFAULT_MAX_HEADER);
    if (timeout_sec)
        sp_handler_set_cgi_timeout(&f->h, (int)timeout_sec);
    if (max_header)
        f->h.cgi.max_header_bytes = max_header;
    ck_assert_msg(sp_handler_init(&f->h, err, sizeof(err)) == 0, "%s", err);
}

static void cgi_script(cgi_fixture_t *f, const char *rel, const char *text)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", f->dir, rel);
    write_file(p, text, 0755);
}

static void cgi_teardown(cgi_fixture_t *f)
{
    sp_handler_fini(&f->h);
    sp_handler_unload(&f->h);
    rm_rf(f->dir);
    assert_no_children();
    ck_assert_int_eq(count_fds(), f->fds_before);
}

/* Value of NAME in `env` output (NAME=value lines), or NULL. */
static const char *env_of(const char *out, const char *name, char *buf,
                          size_t len)
{
    size_t n = strlen(name);
    for (const char *p = out; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        if (ll > n && memcmp(p, name, n) == 0 && p[n] == '=') {
            snprintf(buf, len, "%.*s", (int)(ll - n - 1), p + n + 1);
            return buf;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

#define ENV_IS(out, name, want)                                                \
    do {                                                                       \
        char b_[4200];                                                         \
        const char *v_ = env_of(out, name, b_, sizeof(b_));                    \
        ck_assert_msg(v_ != NULL, "%s missing", name);                         \
        ck_assert_msg(strcmp(v_, want) == 0, "%s=\"%s\", want \"%s\"", name,   \
                      v_, want);                                               \
    } while (0)
#define ENV_ABSENT(out, name)                                                  \
    do {                                                                       \
        char b_[4200];                                                         \
        ck_assert_msg(env_of(out, name, b_, sizeof(b_)) == NULL,               \
                      "%s should be absent, is \"%s\"", name, b_);             \
    } while (0)

static const char env_script[] = "#!/bin/sh\n"
                                 "printf 'Content-Type: text/plain\\n\\n'\n"
                                 "echo \"CWD=$(pwd)\"\n"
                                 "echo \"STDIN=$(cat)\"\n"
                                 "for n in 3 50; do test -e /proc/$$/fd/$n "
                                 "&& echo FD$n=open || echo FD$n=closed; "
                                 "done\n"
                                 "env\n";

START_TEST(cgi_meta_variables)
{
    cgi_fixture_t f;
    sp_harness_t x;
    char want[4400];
    cgi_setup(&f, 0, 0);
    ck_assert_int_eq(mkdir(strcat(strcpy(want, f.dir), "/sub"), 0755), 0);
    cgi_script(&f, "sub/env.sh", env_script);
    setenv("SP_LEAK_CHECK", "leaked", 1);
    /* A descriptor of the worker without close-on-exec must not reach the
     * script. */
    int nul = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(nul, 0);
    ck_assert_int_eq(dup2(nul, 50), 50);
    close(nul);

    sp_harness_init(&x, "POST", "/cgi-bin/sub/env.sh/extra/p%41th?a=1&b=%20");
    x.req.https = 1;
    x.req.scheme = "https";
    x.req.remote_addr = "192.0.2.7";
    x.req.remote_port = 50123;
    x.req.local_port = 8443;
    x.req.server_name = "www.example.org";
    x.req.remote_user = "alice";
    x.req.auth_type = "Basic";
    sp_harness_add_header(&x, "Host", "www.example.org");
    sp_harness_add_header(&x, "Content-Type", "text/x-test");
    sp_harness_add_header(&x, "Content-Length", "5");
    sp_harness_add_header(&x, "X-Multi", "one");
    sp_harness_add_header(&x, "Cookie", "a=1");
    sp_harness_add_header(&x, "x-multi", "two");
    sp_harness_add_header(&x, "Cookie", "b=2");
    sp_harness_add_header(&x, "Proxy", "http://evil:1/");
    sp_harness_add_header(&x, "X_Under", "spoof");
    sp_harness_add_header(&x, "Accept-Language", "en");
    sp_harness_add_env(&x, "SSL_PROTOCOL", "TLSv1.3");
    sp_harness_add_env(&x, "SERVER_SOFTWARE", "evil");
    sp_harness_add_env(&x, "PATH", "/evil");
    sp_harness_add_env(&x, "HTTP_HOST", "evil");
    sp_harness_add_env(&x, "UNIQUE_ID", "u-1");
    sp_harness_set_body(&x, "hello", 5, 0);
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 200);
    const char *o = sp_harness_body(&x);

    snprintf(want, sizeof(want), "%s/sub", f.real);
    ENV_IS(o, "CWD", want);
    ENV_IS(o, "STDIN", "hello");
    ENV_IS(o, "AUTH_TYPE", "Basic");
    ENV_IS(o, "CONTENT_LENGTH", "5");
    ENV_IS(o, "CONTENT_TYPE", "text/x-test");
    ENV_IS(o, "GATEWAY_INTERFACE", "CGI/1.1");
    ENV_IS(o, "PATH_INFO", "/extra/pAth");
    snprintf(want, sizeof(want), "%s/extra/pAth", f.real);
    ENV_IS(o, "PATH_TRANSLATED", want);
    ENV_IS(o, "QUERY_STRING", "a=1&b=%20");
    ENV_IS(o, "REMOTE_ADDR", "192.0.2.7");
    ENV_IS(o, "REMOTE_HOST", "192.0.2.7");
    ENV_IS(o, "REMOTE_PORT", "50123");
    ENV_IS(o, "REMOTE_USER", "alice");
    ENV_IS(o, "REQUEST_METHOD", "POST");
    ENV_IS(o, "REQUEST_URI", "/cgi-bin/sub/env.sh/extra/p%41th?a=1&b=%20");
    ENV_IS(o, "REQUEST_SCHEME", "https");
    ENV_IS(o, "SCRIPT_NAME", "/cgi-bin/sub/env.sh");
    snprintf(want, sizeof(want), "%s/sub/env.sh", f.real);
    ENV_IS(o, "SCRIPT_FILENAME", want);
    ENV_IS(o, "SERVER_NAME", "www.example.org");
    ENV_IS(o, "SERVER_PORT", "8443");
    ENV_IS(o, "SERVER_PROTOCOL", "HTTP/1.1");
    ENV_IS(o, "SERVER_SOFTWARE", "slotproxy-backend");
    ENV_IS(o, "HTTPS", "on");
    ENV_IS(o, "DOCUMENT_ROOT", f.real);
    ENV_IS(o, "PATH", "/usr/local/bin:/usr/bin:/bin");
    ENV_IS(o, "HTTP_HOST", "www.example.org");
    ENV_IS(o, "HTTP_X_MULTI", "one, two");
    ENV_IS(o, "HTTP_COOKIE", "a=1; b=2");
    ENV_IS(o, "HTTP_ACCEPT_LANGUAGE", "en");
    ENV_IS(o, "SSL_PROTOCOL", "TLSv1.3");
    ENV_IS(o, "UNIQUE_ID", "u-1");
    ENV_ABSENT(o, "HTTP_PROXY");
    ENV_ABSENT(o, "HTTP_X_UNDER");
    ENV_ABSENT(o, "HTTP_CONTENT_TYPE");
    ENV_ABSENT(o, "HTTP_CONTENT_LENGTH");
    ENV_ABSENT(o, "SP_LEAK_CHECK");
    ENV_ABSENT(o, "HOME");
    ENV_IS(o, "FD3", "closed");
    ENV_IS(o, "FD50", "closed");
    sp_harness_free(&x);
    close(50);

    /* GET, no auth, no path info, plain http: those variables are unset. */
    sp_harness_init(&x, "GET", "/cgi-bin/sub/env.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    o = sp_harness_body(&x);
    ENV_IS(o, "STDIN", "");
    ENV_IS(o, "QUERY_STRING", "");
    ENV_IS(o, "REQUEST_METHOD", "GET");
    ENV_ABSENT(o, "CONTENT_LENGTH");
    ENV_ABSENT(o, "CONTENT_TYPE");
    ENV_ABSENT(o, "PATH_INFO");
    ENV_ABSENT(o, "PATH_TRANSLATED");
    ENV_ABSENT(o, "AUTH_TYPE");
    ENV_ABSENT(o, "REMOTE_USER");
    ENV_ABSENT(o, "HTTPS");
    sp_harness_free(&x);

    /* Chunked upload: no CONTENT_LENGTH, the body still arrives. */
    sp_harness_init(&x, "POST", "/cgi-bin/sub/env.sh");
    sp_harness_add_header(&x, "Transfer-Encoding", "chunked");
    sp_harness_set_body(&x, "chunky", 6, 1);
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    o = sp_harness_body(&x);
    ENV_ABSENT(o, "CONTENT_LENGTH");
    ENV_IS(o, "STDIN", "chunky");
    sp_harness_free(&x);

    /* An explicit empty body: CONTENT_LENGTH=0. */
    sp_harness_init(&x, "POST", "/cgi-bin/sub/env.sh");
    sp_harness_add_header(&x, "Content-Length", "0");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ENV_IS(sp_harness_body(&x), "CONTENT_LENGTH", "0");
    sp_harness_free(&x);
    unsetenv("SP_LEAK_CHECK");
    cgi_teardown(&f);
}
END_TEST

START_TEST(cgi_streams_stdin_stdout)
{
    cgi_fixture_t f;
    sp_harness_t x;
    cgi_setup(&f, 0, 0);
    cgi_script(&f, "cat.sh",
               "#!/bin/sh\n"
               "printf 'Content-Type: application/octet-stream\\n\\n'\n"
               "exec cat\n");
    /* Writes 1 MB before reading anything: only a pump that drains stdout
     * while feeding stdin gets through. */
    cgi_script(&f, "first.sh",
               "#!/bin/sh\n"
               "printf 'Content-Type: application/octet-stream\\n\\n'\n"
               "head -c 1048576 /dev/zero\n"
               "exec cat\n");
    cgi_script(&f, "noread.sh",
               "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n");

    size_t n = 5 * 1000 * 1000 + 3;
    unsigned char *body = pattern_buf(n, 77);
    sp_harness_init(&x, "POST", "/cgi-bin/cat.sh");
    sp_harness_set_body(&x, body, n, 0);
    x.read_chunk = 10000;
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_msg(x.out_len == n, "%zu of %zu bytes", x.out_len, n);
    ck_assert_int_eq(memcmp(x.out, body, n), 0);
    ck_assert_uint_gt(x.flushes, 10); /* flushed as it arrived */
    ck_assert_uint_eq(x.body_off, n);
    sp_harness_free(&x);

    /* the same as a chunked upload */
    sp_harness_init(&x, "POST", "/cgi-bin/cat.sh");
    sp_harness_set_body(&x, body, n, 1);
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_uint_eq(x.out_len, n);
    ck_assert_int_eq(memcmp(x.out, body, n), 0);
    sp_harness_free(&x);

    sp_harness_init(&x, "POST", "/cgi-bin/first.sh");
    sp_harness_set_body(&x, body, 1 << 20, 0);
    int64_t t0 = t_now_ms();
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_lt(t_now_ms() - t0, 10000);
    ck_assert_uint_eq(x.out_len, 2u << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        if (x.out[i])
            ck_abort_msg("byte %zu not zero", i);
    ck_assert_int_eq(memcmp(x.out + (1 << 20), body, 1 << 20), 0);
    sp_harness_free(&x);

    /* A script that never reads its 5 MB input: no hang, no SIGPIPE. */
    sp_harness_init(&x, "POST", "/cgi-bin/noread.sh");
    sp_harness_set_body(&x, body, n, 0);
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_body(&x), "ok");
    ck_assert_uint_lt(x.body_off, n);
    sp_harness_free(&x);
    free(body);
    cgi_teardown(&f);
}
END_TEST

START_TEST(cgi_headers_and_stderr)
{
    cgi_fixture_t f;
    sp_harness_t x;
    cgi_setup(&f, 0, 0);
    cgi_script(&f, "hdr.sh",
               "#!/bin/sh\n"
               "printf 'Status: 201 Made It\\r\\n'\n"
               "printf 'Content-Type: text/x\\r\\n'\n"
               "printf 'Set-Cookie: a=1\\r\\n'\n"
               "printf 'X-Spaces:   padded  \\r\\n'\n"
               "printf 'Set-Cookie: b=2\\r\\n'\n"
               "printf 'Transfer-Encoding: chunked\\r\\n'\n"
               "printf 'Connection: close\\r\\n'\n"
               "printf '\\r\\nbody\\n\\nmore'\n");
    cgi_script(&f, "loc.sh",
               "#!/bin/sh\n"
               "printf 'Location: https://example.org/\\n\\n'\n");
    cgi_script(&f, "loc404.sh",
               "#!/bin/sh\n"
               "printf 'Status: 404\\nLocation: /x\\nContent-Type: "
               "text/plain\\n\\ngone'\n");
    cgi_script(&f, "err.sh",
               "#!/bin/sh\n"
               "echo 'first complaint' >&2\n"
               "printf 'Content-Type: text/plain\\n\\nout'\n"
               "echo 'second complaint' >&2\n"
               "printf 'no newline at end' >&2\n"
               "exit 3\n");

    sp_harness_init(&x, "GET", "/cgi-bin/hdr.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 201);
    ck_assert_str_eq(x.reason, "Made It");
    ck_assert_uint_eq(x.nrh, 4);
    ck_assert_str_eq(x.rh[0].name, "Content-Type");
    ck_assert_str_eq(x.rh[0].value, "text/x");
    ck_assert_str_eq(x.rh[1].value, "a=1");
    ck_assert_str_eq(x.rh[2].name, "X-Spaces");
    ck_assert_str_eq(x.rh[2].value, "padded");
    ck_assert_str_eq(x.rh[3].name, "Set-Cookie");
    ck_assert_str_eq(x.rh[3].value, "b=2");
    ck_assert_ptr_null(sp_harness_resp_header(&x, "Transfer-Encoding", 0));
    ck_assert_ptr_null(sp_harness_resp_header(&x, "Status", 0));
    ck_assert_str_eq(sp_harness_body(&x), "body\n\nmore");
    sp_harness_free(&x);

    sp_harness_init(&x, "GET", "/cgi-bin/loc.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 302);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Location", 0),
                     "https://example.org/");
    ck_assert_uint_eq(x.out_len, 0);
    sp_harness_free(&x);

    sp_harness_init(&x, "GET", "/cgi-bin/loc404.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 404);
    ck_assert_str_eq(x.reason, "");
    ck_assert_str_eq(sp_harness_body(&x), "gone");
    sp_harness_free(&x);

    sp_harness_init(&x, "GET", "/cgi-bin/err.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_body(&x), "out");
    ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_WARN, "SPA0010: cgi "),
                     1);
    ck_assert_int_eq(
        sp_harness_logged(&x, SLOTPROXY_LOG_WARN, "err.sh: first complaint"),
        1);
    ck_assert_int_eq(
        sp_harness_logged(&x, SLOTPROXY_LOG_WARN, ": second complaint"), 1);
    ck_assert_int_eq(
        sp_harness_logged(&x, SLOTPROXY_LOG_WARN, ": no newline at end"), 1);
    ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_INFO, "exit status 3"),
                     1);
    size_t warns = 0;
    for (size_t i = 0; i < x.nlogs; i++)
        warns += x.logs[i].level == SLOTPROXY_LOG_WARN;
    ck_assert_uint_eq(warns, 3);
    sp_harness_free(&x);
    cgi_teardown(&f);
}
END_TEST

START_TEST(cgi_timeout_kills_group)
{
    cgi_fixture_t f;
    sp_harness_t x;
    char p1[4200], p2[4200], p3[4200], script[20000];
    cgi_setup(&f, 1, 0);
    snprintf(p1, sizeof(p1), "%s/pid1", f.dir);
    snprintf(p2, sizeof(p2), "%s/pid2", f.dir);
    snprintf(p3, sizeof(p3), "%s/termed", f.dir);
    /* The shell, a background sleep, and a background shell that notes
     * SIGTERM: all must get it (process group) and die.  The leader takes
     * 0.3 s to exit on SIGTERM so the note is written before the SIGKILL
     * that follows the leader's exit. */
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "trap 'sleep 0.3; exit 0' TERM\n"
             "echo $$ > %s\n"
             "sleep 30 &\n"
             "echo $! > %s\n"
             "sh -c 'trap \"echo yes > %s; exit 0\" TERM; sleep 30 & wait' &\n"
             "wait\n",
             p1, p2, p3);
    cgi_script(&f, "slow.sh", script);

    int64_t t0 = t_now_ms();
    sp_harness_init(&x, "GET", "/cgi-bin/slow.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    int64_t took = t_now_ms() - t0;
    ck_assert_int_eq(x.status, 504);
    ck_assert_msg(took >= 1000 && took < 2900, "took %lld ms", (long long)took);
    ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_ERR, "SPA0016"), 1);
    pid_t a = read_pid(p1), b = read_pid(p2);
    for (int i = 0; i < 100 && !(proc_gone(a) && proc_gone(b)); i++)
        usleep(10000);
    ck_assert_msg(proc_gone(a), "script %d still alive", (int)a);
    ck_assert_msg(proc_gone(b), "its background sleep %d still alive", (int)b);
    ck_assert_msg(access(p3, F_OK) == 0,
                  "SIGTERM did not reach the process group");
    sp_harness_free(&x);

    /* Ignores SIGTERM (and its children inherit that): SIGKILL after 2 s.
     * The head is already out, so the stream is aborted instead of 504. */
    unlink(p1);
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "trap '' TERM\n"
             "echo $$ > %s\n"
             "printf 'Content-Type: text/plain\\n\\npartial'\n"
             "while :; do sleep 0.05; done\n",
             p1);
    cgi_script(&f, "stubborn.sh", script);
    t0 = t_now_ms();
    sp_harness_init(&x, "GET", "/cgi-bin/stubborn.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), -1);
    took = t_now_ms() - t0;
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_body(&x), "partial");
    ck_assert_msg(took >= 2900 && took < 5000, "took %lld ms", (long long)took);
    a = read_pid(p1);
    ck_assert_msg(proc_gone(a), "stubborn script %d still alive", (int)a);
    sp_harness_free(&x);

    /* The answer is complete (stdout closed) but the script lingers, with
     * stderr open or not: a normal end, then the script is killed at the
     * deadline. */
    for (int keep_err = 0; keep_err < 2; keep_err++) {
        unlink(p1);
        snprintf(script, sizeof(script),
                 "#!/bin/sh\n"
                 "echo $$ > %s\n"
                 "printf 'Content-Type: text/plain\\n\\ndone'\n"
                 "exec >&- %s\n"
                 "exec sleep 30\n",
                 p1, keep_err ? "" : "2>&-");
        cgi_script(&f, "linger.sh", script);
        t0 = t_now_ms();
        sp_harness_init(&x, "GET", "/cgi-bin/linger.sh");
        ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
        took = t_now_ms() - t0;
        ck_assert_int_eq(x.status, 200);
        ck_assert_str_eq(sp_harness_body(&x), "done");
        ck_assert_msg(took >= 1000 && took < 2900, "took %lld ms",
                      (long long)took);
        ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_ERR, "SPA0023"),
                         1);
        ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_ERR, "SPA0016"),
                         0);
        a = read_pid(p1);
        ck_assert_msg(proc_gone(a), "lingering script %d still alive", (int)a);
        sp_harness_free(&x);
    }
    cgi_teardown(&f);
}
END_TEST

START_TEST(cgi_client_abort)
{
    cgi_fixture_t f;
    sp_harness_t x;
    char p1[4200], script[9000];
    cgi_setup(&f, 0, 0);
    snprintf(p1, sizeof(p1), "%s/pid", f.dir);
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho $$ > %s\n"
             "printf 'Content-Type: text/plain\\n\\n'\nexec yes\n",
             p1);
    cgi_script(&f, "yes.sh", script);
    snprintf(script, sizeof(script), "#!/bin/sh\necho $$ > %s\nexec sleep 30\n",
             p1);
    cgi_script(&f, "sleep.sh", script);

    /* The client stops after 1 MB of an endless answer. */
    sp_harness_init(&x, "GET", "/cgi-bin/yes.sh");
    x.abort_after = 1 << 20;
    ck_assert_int_eq(sp_harness_run(&x, &f.h), -1);
    ck_assert_uint_eq(x.out_total, 1u << 20);
    ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_INFO, "SPA0019"), 1);
    pid_t a = read_pid(p1);
    ck_assert_msg(proc_gone(a), "script %d still alive", (int)a);
    sp_harness_free(&x);

    /* The client goes away while the script is silent. */
    unlink(p1);
    int64_t t0 = t_now_ms();
    sp_harness_init(&x, "GET", "/cgi-bin/sleep.sh");
    x.abort_at_ns = now_ns() + 200 * 1000000LL;
    ck_assert_int_eq(sp_harness_run(&x, &f.h), -1);
    ck_assert_int_lt(t_now_ms() - t0, 2000);
    a = read_pid(p1);
    ck_assert_msg(proc_gone(a), "script %d still alive", (int)a);
    sp_harness_free(&x);
    cgi_teardown(&f);
}
END_TEST

static void expect_status(cgi_fixture_t *f, const char *uri, int status,
                          const char *log_tag)
{
    sp_harness_t x;
    sp_harness_init(&x, "GET", uri);
    int rc = sp_harness_run(&x, &f->h);
    ck_assert_msg(x.status == status, "%s: status %d, want %d", uri, x.status,
                  status);
    ck_assert_msg(rc == 0, "%s: handle returned %d", uri, rc);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                     "text/plain");
    if (log_tag) {
        int found = 0;
        for (size_t i = 0; i < x.nlogs; i++)
            found |= strstr(x.logs[i].line, log_tag) != NULL;
        ck_assert_msg(found, "%s: no %s log line", uri, log_tag);
    }
    sp_harness_free(&x);
}

START_TEST(cgi_malformed_output)
{
    cgi_fixture_t f;
    char big[3000];
    cgi_setup(&f, 0, 1024);
    cgi_script(&f, "nohead.sh", "#!/bin/sh\necho 'hello world'\n");
    cgi_script(&f, "silent.sh", "#!/bin/sh\nexit 0\n");
    cgi_script(&f, "unfinished.sh",
               "#!/bin/sh\nprintf 'Content-Type: text/plain\\n'\n");
    cgi_script(&f, "badstatus.sh", "#!/bin/sh\nprintf 'Status: abc\\n\\nx'\n");
    cgi_script(&f, "status1xx.sh",
               "#!/bin/sh\nprintf 'Status: 100 Continue\\n\\nx'\n");
    cgi_script(&f, "twostatus.sh",
               "#!/bin/sh\nprintf 'Status: 200\\nStatus: 201\\n\\nx'\n");
    cgi_script(&f, "fold.sh", "#!/bin/sh\nprintf 'X-A: 1\\n  folded\\n\\nx'\n");
    cgi_script(&f, "badname.sh", "#!/bin/sh\nprintf 'Bad Name: 1\\n\\nx'\n");
    cgi_script(&f, "blank.sh", "#!/bin/sh\nprintf '\\nbody'\n");
    snprintf(big, sizeof(big),
             "#!/bin/sh\nprintf 'X-Big: '\nhead -c 2000 /dev/zero | tr "
             "'\\0' a\nprintf '\\n\\nbody'\n");
    cgi_script(&f, "big.sh", big);
    /* just under the limit is fine */
    cgi_script(&f, "fits.sh",
               "#!/bin/sh\nprintf 'X-Big: '\nhead -c 900 /dev/zero | tr "
               "'\\0' a\nprintf '\\n\\nbody'\n");

    expect_status(&f, "/cgi-bin/nohead.sh", 502, "no header block");
    expect_status(&f, "/cgi-bin/silent.sh", 502, "no output");
    expect_status(&f, "/cgi-bin/unfinished.sh", 502, "inside the header");
    expect_status(&f, "/cgi-bin/badstatus.sh", 502, "bad Status");
    expect_status(&f, "/cgi-bin/status1xx.sh", 502, "SPA0015");
    expect_status(&f, "/cgi-bin/twostatus.sh", 502, "repeated Status");
    expect_status(&f, "/cgi-bin/fold.sh", 502, "folded");
    expect_status(&f, "/cgi-bin/badname.sh", 502, "header name");
    expect_status(&f, "/cgi-bin/blank.sh", 502, "empty header block");
    expect_status(&f, "/cgi-bin/big.sh", 502, "larger than the limit");

    sp_harness_t x;
    sp_harness_init(&x, "GET", "/cgi-bin/fits.sh");
    ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_uint_eq(strlen(sp_harness_resp_header(&x, "X-Big", 0)), 900);
    ck_assert_str_eq(sp_harness_body(&x), "body");
    sp_harness_free(&x);
    cgi_teardown(&f);
}
END_TEST

START_TEST(cgi_refusals)
{
    cgi_fixture_t f;
    char p[4200];
    cgi_setup(&f, 0, 0);
    cgi_script(&f, "ok.sh",
               "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n");
    snprintf(p, sizeof(p), "%s/sub", f.dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    cgi_script(&f, "sub/ok.sh",
               "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nsub'\n");
    snprintf(p, sizeof(p), "%s/noexec.sh", f.dir);
    write_file(p, "#!/bin/sh\necho hi\n", 0644);
    snprintf(p, sizeof(p), "%s/noshebang", f.dir);
    write_file(p,
               "\x7f"
               "ELFnot really\n",
               0755);
    snprintf(p, sizeof(p), "%s/fifo", f.dir);
    ck_assert_int_eq(mkfifo(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/escape", f.dir);
    ck_assert_int_eq(symlink("/bin/sh", p), 0);
    snprintf(p, sizeof(p), "%s/inside", f.dir);
    ck_assert_int_eq(symlink("sub/ok.sh", p), 0);

    /* controls: the same scripts by good paths work */
    sp_harness_t x;
    static const char *good[] = {"/cgi-bin/ok.sh", "/cgi-bin//ok.sh",
                                 "/cgi-bin/./sub/ok.sh", "/cgi-bin/%6fk.sh",
                                 "/cgi-bin/inside"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        sp_harness_init(&x, "GET", good[i]);
        ck_assert_int_eq(sp_harness_run(&x, &f.h), 0);
        ck_assert_msg(x.status == 200, "%s: %d", good[i], x.status);
        sp_harness_free(&x);
    }

    expect_status(&f, "/cgi-bin/../ok.sh", 403, "SPA0011");
    expect_status(&f, "/cgi-bin/sub/../ok.sh", 403, "SPA0011");
    expect_status(&f, "/cgi-bin/ok.sh/../../etc/passwd", 403, "SPA0011");
    expect_status(&f, "/cgi-bin/sub/%2e%2e/ok.sh", 403, "SPA0011");
    expect_status(&f, "/cgi-bin/%2E%2E/%2E%2E/bin/sh", 403, "SPA0011");
    expect_status(&f, "/cgi-bin/sub%2fok.sh", 404, "SPA0021");
    expect_status(&f, "/cgi-bin/ok.sh%00", 404, "SPA0021");
    expect_status(&f, "/cgi-bin/%zz", 400, "SPA0021");
    expect_status(&f, "/cgi-bin/escape", 403, "SPA0022");
    expect_status(&f, "/cgi-bin/noexec.sh", 403, "not executable");
    expect_status(&f, "/cgi-bin/fifo", 403, "not a regular file");
    expect_status(&f, "/cgi-bin/sub", 403, "directory");
    expect_status(&f, "/cgi-bin/", 403, "directory");
    expect_status(&f, "/cgi-bin", 403, "directory");
    expect_status(&f, "/cgi-bin/missing.sh", 404, "SPA0012");
    expect_status(&f, "/cgi-bin/sub/missing/x", 404, "SPA0012");
    expect_status(&f, "/cgi-bin/ok.sh.bak", 404, "SPA0012");
    expect_status(&f, "/cgi-bin/noshebang", 500, "SPA0014");
    cgi_teardown(&f);
}
END_TEST

/* The example scripts shipped in conf/cgi-bin, found from this source
 * file's path or the current directory (make runs from the top). */
static int examples_dir(char out[PATH_MAX])
{
    char p[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(p, sizeof(p), "%.*s/../../conf/cgi-bin",
             slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
    if (realpath(p, out))
        return 0;
    if (realpath("conf/cgi-bin", out))
        return 0;
    return -1;
}

START_TEST(cgi_shipped_examples)
{
    char dir[PATH_MAX], spec[PATH_MAX + 8], err[512] = "";
    sp_handler_t h;
    sp_harness_t x;
    ck_assert_msg(examples_dir(dir) == 0,
                  "conf/cgi-bin not found (run from the source tree)");
    snprintf(spec, sizeof(spec), "cgi:%s", dir);
    int fds = count_fds();
    ck_assert_int_eq(
        sp_handler_load(&h, "/cgi-bin", spec, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(sp_handler_init(&h, err, sizeof(err)), 0);

    sp_harness_init(&x, "GET", "/cgi-bin/hello.sh/extra?x=1");
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                     "text/plain; charset=utf-8");
    ck_assert_ptr_nonnull(
        strstr(sp_harness_body(&x), "Hello from /cgi-bin/hello.sh, pid "));
    ck_assert_ptr_nonnull(
        strstr(sp_harness_body(&x), "\nGATEWAY_INTERFACE=CGI/1.1\n"));
    ck_assert_ptr_nonnull(strstr(sp_harness_body(&x), "\nPATH_INFO=/extra\n"));
    sp_harness_free(&x);

    size_t n = 1 << 20;
    unsigned char *body = pattern_buf(n, 11);
    sp_harness_init(&x, "PUT", "/cgi-bin/echo.sh");
    sp_harness_add_header(&x, "Content-Type", "application/x-test");
    sp_harness_add_header(&x, "Content-Length", "1048576");
    sp_harness_set_body(&x, body, n, 0);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_int_eq(x.status, 200);
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Type", 0),
                     "application/x-test");
    ck_assert_str_eq(sp_harness_resp_header(&x, "Content-Length", 0),
                     "1048576");
    ck_assert_str_eq(sp_harness_resp_header(&x, "X-Request-Method", 0), "PUT");
    ck_assert_uint_eq(x.out_len, n);
    ck_assert_int_eq(memcmp(x.out, body, n), 0);
    sp_harness_free(&x);

    /* chunked: no Content-Length in the answer either */
    sp_harness_init(&x, "POST", "/cgi-bin/echo.sh");
    sp_harness_set_body(&x, body, 1000, 1);
    ck_assert_int_eq(sp_harness_run(&x, &h), 0);
    ck_assert_ptr_null(sp_harness_resp_header(&x, "Content-Length", 0));
    ck_assert_uint_eq(x.out_len, 1000);
    ck_assert_int_eq(memcmp(x.out, body, 1000), 0);
    sp_harness_free(&x);
    free(body);

    if (access("/usr/bin/perl", X_OK) == 0) {
        sp_harness_init(&x, "GET", "/cgi-bin/status.pl?code=404&name=%3Cb%3E");
        ck_assert_int_eq(sp_harness_run(&x, &h), 0);
        ck_assert_int_eq(x.status, 404);
        ck_assert_uint_eq(sp_harness_resp_count(&x, "Set-Cookie"), 2);
        ck_assert_ptr_nonnull(
            strstr(sp_harness_body(&x), "Hello, &#60;b&#62;!"));
        ck_assert_int_eq(sp_harness_logged(&x, SLOTPROXY_LOG_WARN,
                                           "status.pl: answering 404"),
                         1);
        sp_harness_free(&x);
        sp_harness_init(&x, "GET", "/cgi-bin/status.pl?go=1");
        ck_assert_int_eq(sp_harness_run(&x, &h), 0);
        ck_assert_int_eq(x.status, 302);
        ck_assert_str_eq(sp_harness_resp_header(&x, "Location", 0),
                         "/cgi-bin/hello.sh");
        sp_harness_free(&x);
    }
    sp_handler_fini(&h);
    sp_handler_unload(&h);
    assert_no_children();
    ck_assert_int_eq(count_fds(), fds);
}
END_TEST

Suite *suite_apps(void)
{
    Suite *s = suite_create("apps");
    TCase *tc = tcase_create("builtin");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hello_exact);
    tcase_add_test(tc, echo_description);
    tcase_add_test(tc, echo_body_exact);
    tcase_add_test(tc, echo_options);
    tcase_add_test(tc, echo_sleep_abort_crash);
    tcase_add_test(tc, table_load_and_match);
    suite_add_tcase(s, tc);

    tc = tcase_create("plugin");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, plugin_sample);
    tcase_add_test(tc, plugin_load_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("cgi");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cgi_meta_variables);
    tcase_add_test(tc, cgi_streams_stdin_stdout);
    tcase_add_test(tc, cgi_headers_and_stderr);
    tcase_add_test(tc, cgi_timeout_kills_group);
    tcase_add_test(tc, cgi_client_abort);
    tcase_add_test(tc, cgi_malformed_output);
    tcase_add_test(tc, cgi_refusals);
    tcase_add_test(tc, cgi_shipped_examples);
    suite_add_tcase(s, tc);
    return s;
}
