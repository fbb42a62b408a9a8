/*
 * app_builtin.c - the two applications compiled into the backend:
 *
 *   builtin:hello  "Hello, world\n" with Content-Length 13.  The benchmark
 *                  handler: no allocation, no parsing, three calls into the
 *                  request and one write.
 *
 *   builtin:echo   the test handler.  It describes the request (method,
 *                  URI, headers in order, the frontend's env) and streams
 *                  the body back as it is read, never holding more than one
 *                  64 KiB chunk.  Query parameters (docs/applications.md):
 *                    status=NNN   answer with NNN (200..599)
 *                    setcookie=N  add N headers "Set-Cookie: c<i>=v<i>", i=1..N
 *                    bodyonly=1   echo only the raw body, no description
 *                    size=N       ignore the request; answer N bytes of the
 *                                 pattern byte[i] = (i*7+3) & 0xff, with
 *                                 Content-Length, in 64 KiB writes
 *                    sleep=MS     wait MS ms first, checking aborted() every
 *                                 10 ms (returns -1 once aborted)
 *                    flush=1      flush right after the head
 *                    crash=1      abort() the worker: before the head is
 *                                 sent, or after it with flush=1
 *                  Order: sleep, head, flush, crash, body.
 *
 *   builtin:session-demo  the `make run` session demo (below).
 *
 * They run in a worker process, alone; the static buffers below are
 * therefore per process and never shared between requests in flight.
 */
#include "apps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ECHO_CHUNK (64 * 1024)
#define ECHO_MAX_COOKIES 10000

/* ---- hello -------------------------------------------------------------- */

static const char hello_body[] = "Hello, world\n";

static int hello_handle(void *ctx, slotproxy_request_t *r)
{
    (void)ctx;
    if (r->set_status(r, 200, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0 ||
        r->add_header(r, "Content-Length", "13") < 0)
        return -1;
    return r->write(r, hello_body, sizeof(hello_body) - 1) < 0 ? -1 : 0;
}

const slotproxy_app_t sp_app_hello = {
    .abi_version = SLOTPROXY_APP_ABI,
    .name = "hello",
    .init = NULL,
    .handle = hello_handle,
    .fini = NULL,
};

/* ---- echo --------------------------------------------------------------- */

/*
 * Value of key in a query string "k=v&k2=v2" (no decoding: the echo
 * parameters are numbers).  Returns a pointer into q and its length in
 * *len, or NULL if the key is absent.
 */
static const char *query_get(const char *q, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t plen = end ? (size_t)(end - q) : strlen(q);
        if (plen >= klen && memcmp(q, key, klen) == 0 &&
            (plen == klen || q[klen] == '=')) {
            const char *v = plen == klen ? q + plen : q + klen + 1;
            *len = plen == klen ? 0 : plen - klen - 1;
            return v;
        }
        q = end ? end + 1 : NULL;
    }
    return NULL;
}

/* 1 and *out if key is present with a decimal value <= max, 0 if absent,
 * -1 if present but not such a number. */
static int query_num(const char *q, const char *key, unsigned long long max,
                     unsigned long long *out)
{
    size_t len;
    const char *v = query_get(q, key, &len);
    if (!v)
        return 0;
    if (len == 0 || len > 20)
        return -1;
    unsigned long long n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (d > max || n > (max - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

/* Small write-combining buffer for the description lines. */
typedef struct echo_out {
    slotproxy_request_t *r;
    size_t len;
    int failed;
    char buf[4096];
} echo_out_t;

static void out_flush(echo_out_t *o)
{
    if (o->len && !o->failed && o->r->write(o->r, o->buf, o->len) < 0)
        o->failed = 1;
    o->len = 0;
}

static void out_put(echo_out_t *o, const char *s, size_t n)
{
    while (n && !o->failed) {
        size_t room = sizeof(o->buf) - o->len;
        size_t k = n < room ? n : room;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
        if (o->len == sizeof(o->buf))
            out_flush(o);
    }
}

static void out_str(echo_out_t *o, const char *s)
{
    out_put(o, s ? s : "", s ? strlen(s) : 0);
}

/* "label: value\n" */
static void out_line(echo_out_t *o, const char *label, const char *value)
{
    out_str(o, label);
    out_put(o, ": ", 2);
    out_str(o, value);
    out_put(o, "\n", 1);
}

/* "label: addr:port\n", IPv6 addresses in brackets. */
static void out_addr(echo_out_t *o, const char *label, const char *addr,
                     unsigned port)
{
    char p[16];
    int v6 = addr && strchr(addr, ':') != NULL;
    out_str(o, label);
    out_put(o, v6 ? ": [" : ": ", v6 ? 3 : 2);
    out_str(o, addr);
    snprintf(p, sizeof(p), "%s:%u\n", v6 ? "]" : "", port);
    out_str(o, p);
}

static void echo_describe(echo_out_t *o, slotproxy_request_t *r)
{
    char num[32];
    out_line(o, "method", r->method);
    out_line(o, "uri", r->uri);
    out_line(o, "path", r->path);
    out_line(o, "query", r->query);
    out_line(o, "protocol", r->protocol);
    out_line(o, "scheme", r->scheme);
    out_line(o, "https", r->https ? "on" : "off");
    out_line(o, "server_name", r->server_name);
    out_addr(o, "local", r->local_addr, r->local_port);
    out_addr(o, "remote", r->remote_addr, r->remote_port);
    out_line(o, "remote_user", r->remote_user);
    out_line(o, "auth_type", r->auth_type);
    snprintf(num, sizeof(num), "%lld", r->content_length);
    out_line(o, "content_length", num);
    out_line(o, "prefix", r->prefix);
    out_line(o, "arg", r->arg);
    for (size_t i = 0; i < r->nheaders; i++) {
        out_put(o, "header: ", 8);
        out_str(o, r->headers[i].name);
        out_put(o, ": ", 2);
        out_str(o, r->headers[i].value);
        out_put(o, "\n", 1);
    }
    for (size_t i = 0; i < r->nenv; i++) {
        out_put(o, "env: ", 5);
        out_str(o, r->env[i].name);
        out_put(o, "=", 1);
        out_str(o, r->env[i].value);
        out_put(o, "\n", 1);
    }
    out_put(o, "body:\n", 6);
}

/* Sleep ms, waking every 10 ms to look at aborted().  -1 if aborted. */
static int echo_sleep(slotproxy_request_t *r, unsigned long long ms)
{
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)(ms / 1000);
    end.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (;;) {
        if (r->aborted(r))
            return -1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left = (long long)(end.tv_sec - now.tv_sec) * 1000000000LL +
                         (end.tv_nsec - now.tv_nsec);
        if (left <= 0)
            return 0;
        if (left > 10000000LL)
            left = 10000000LL;
        struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL);
    }
}

/* The size=N pattern; its period (256) divides the chunk, so one chunk
 * serves every offset that is a multiple of ECHO_CHUNK. */
static unsigned char echo_pattern[ECHO_CHUNK];
static int echo_pattern_ready;

static int echo_send_pattern(slotproxy_request_t *r, unsigned long long n)
{
    if (!echo_pattern_ready) {
        for (size_t i = 0; i < sizeof(echo_pattern); i++)
            echo_pattern[i] = (unsigned char)((i * 7 + 3) & 0xff);
        echo_pattern_ready = 1;
    }
    while (n) {
        size_t k = n < sizeof(echo_pattern) ? (size_t)n : sizeof(echo_pattern);
        if (r->write(r, echo_pattern, k) < 0)
            return -1;
        n -= k;
    }
    return 0;
}

static unsigned char echo_body_buf[ECHO_CHUNK];

static int echo_send_body(slotproxy_request_t *r)
{
    for (;;) {
        long n = r->read(r, echo_body_buf, sizeof(echo_body_buf));
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (r->write(r, echo_body_buf, (size_t)n) < 0)
            return -1;
    }
}

static int echo_bad_param(slotproxy_request_t *r, const char *name)
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "echo: bad %s parameter\n", name);
    if (r->set_status(r, 400, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0)
        return -1;
    return r->write(r, msg, (size_t)n) < 0 ? -1 : 0;
}

static int echo_handle(void *ctx, slotproxy_request_t *r)
{
    (void)ctx;
    const char *q = r->query ? r->query : "";
    unsigned long long status = 200, cookies = 0, size = 0, ms = 0, flag = 0;
    int have_size, bodyonly = 0, flush = 0, crash = 0;

    if (query_num(q, "status", 999, &status) < 0 || status < 200 ||
        status > 599)
        return echo_bad_param(r, "status");
    if (query_num(q, "setcookie", ECHO_MAX_COOKIES, &cookies) < 0)
        return echo_bad_param(r, "setcookie");
    if ((have_size = query_num(q, "size", ~0ULL >> 1, &size)) < 0)
        return echo_bad_param(r, "size");
    if (query_num(q, "sleep", 24ULL * 3600 * 1000, &ms) < 0)
        return echo_bad_param(r, "sleep");
    flag = 0;
    if (query_num(q, "bodyonly", 1, &flag) < 0)
        return echo_bad_param(r, "bodyonly");
    bodyonly = (int)flag;
    flag = 0;
    if (query_num(q, "flush", 1, &flag) < 0)
        return echo_bad_param(r, "flush");
    flush = (int)flag;
    flag = 0;
    if (query_num(q, "crash", 1, &flag) < 0)
        return echo_bad_param(r, "crash");
    crash = (int)flag;

    if (ms && echo_sleep(r, ms) < 0)
        return -1;

    if (r->set_status(r, (int)status, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0)
        return -1;
    for (unsigned long long i = 1; i <= cookies; i++) {
        char c[48];
        snprintf(c, sizeof(c), "c%llu=v%llu", i, i);
        if (r->add_header(r, "Set-Cookie", c) < 0)
            return -1;
    }
    if (have_size) {
        char len[24];
        snprintf(len, sizeof(len), "%llu", size);
        if (r->add_header(r, "Content-Length", len) < 0)
            return -1;
    }
    if (flush && r->flush(r) < 0)
        return -1;
    if (crash)
        abort();

    /* No body where HTTP forbids one. */
    if (status == 204 || status == 304 || strcmp(r->method, "HEAD") == 0)
        return 0;
    if (have_size)
        return echo_send_pattern(r, size);
    if (!bodyonly) {
        echo_out_t o;
        o.r = r;
        o.len = 0;
        o.failed = 0;
        echo_describe(&o, r);
        out_flush(&o);
        if (o.failed)
            return -1;
    }
    return echo_send_body(r);
}

const slotproxy_app_t sp_app_echo = {
    .abi_version = SLOTPROXY_APP_ABI,
    .name = "echo",
    .init = NULL,
    .handle = echo_handle,
    .fini = NULL,
};

/* ---- session-demo ------------------------------------------------------- */

/*
 * builtin:session-demo (docs/applications.md, `make run`): a page with a
 * login form and a per-session visit counter, over mod_session with
 * `SessionEnv On` (the session arrives as HTTP_SESSION in the env, in
 * mod_session's form "user=bob&count=3") and `SessionHeader
 * X-Session-Update` (the new session goes back in that response header,
 * which mod_session removes before the client sees it).
 *
 *   GET  PREFIX          the page; counts a visit
 *   POST PREFIX          name=NAME logs in (empty: logs out); 303 to PREFIX
 *   GET  PREFIX/counter  text/plain: the counter, incremented
 */
#define DEMO_SESSION_HEADER "X-Session-Update"
#define DEMO_MAX_NAME 64

static int demo_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode n bytes of application/x-www-form-urlencoded into out (cap). */
static void form_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        int h, l;
        if (s[i] == '+')
            out[o++] = ' ';
        else if (s[i] == '%' && i + 2 < n && (h = demo_hexval(s[i + 1])) >= 0 &&
                 (l = demo_hexval(s[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else
            out[o++] = s[i];
    }
    out[o] = '\0';
}

/* Value of key in "k=v&k2=v2" (form-encoded), decoded into out; 0 if
 * absent. */
static int form_get(const char *q, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    out[0] = '\0';
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        if (n > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            form_decode(q + kl + 1, n - kl - 1, out, cap);
            return 1;
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void form_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
            out[o++] = (char)c;
        else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static void html_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        const char *e = NULL;
        switch (*s) {
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '&':
            e = "&amp;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            break;
        }
        if (e) {
            memcpy(out + o, e, strlen(e));
            o += strlen(e);
        } else
            out[o++] = *s;
    }
    out[o] = '\0';
}

static int demo_set_session(slotproxy_request_t *r, const char *user,
                            unsigned long long count)
{
    char enc[3 * DEMO_MAX_NAME + 1], v[3 * DEMO_MAX_NAME + 48];
    form_encode(user, enc, sizeof(enc));
    snprintf(v, sizeof(v), "user=%s&count=%llu", enc, count);
    return r->add_header(r, DEMO_SESSION_HEADER, v);
}

static int demo_handle(void *ctx, slotproxy_request_t *r)
{
    (void)ctx;
    const char *sess = r->getenv(r, "HTTP_SESSION");
    const char *prefix = r->prefix ? r->prefix : "/";
    size_t plen = strlen(prefix);
    const char *rest =
        strncmp(r->path, prefix, plen) == 0 ? r->path + plen : r->path;
    char user[DEMO_MAX_NAME + 1], num[24];
    unsigned long long count = 0;

    while (*rest == '/')
        rest++;
    form_get(sess, "user", user, sizeof(user));
    if (form_get(sess, "count", num, sizeof(num)))
        count = strtoull(num, NULL, 10);

    if (strcmp(rest, "counter") == 0) {
        char body[32];
        int n = snprintf(body, sizeof(body), "%llu\n", ++count);
        snprintf(num, sizeof(num), "%d", n);
        if (r->set_status(r, 200, NULL) < 0 ||
            r->add_header(r, "Content-Type", "text/plain") < 0 ||
            r->add_header(r, "Content-Length", num) < 0 ||
            r->add_header(r, "Cache-Control", "no-store") < 0 ||
            demo_set_session(r, user, count) < 0)
            return -1;
        return r->write(r, body, (size_t)n) < 0 ? -1 : 0;
    }
    if (*rest != '\0') {
        static const char nf[] = "session-demo: no such page\n";
        if (r->set_status(r, 404, NULL) < 0 ||
            r->add_header(r, "Content-Type", "text/plain") < 0)
            return -1;
        return r->write(r, nf, sizeof(nf) - 1) < 0 ? -1 : 0;
    }
    if (strcmp(r->method, "POST") == 0) {
        char body[1024], name[DEMO_MAX_NAME + 1];
        size_t len = 0;
        long n;
        while ((n = r->read(r, body + len, sizeof(body) - 1 - len)) > 0)
            len += (size_t)n;
        if (n < 0)
            return -1;
        body[len] = '\0';
        form_get(body, "name", name, sizeof(name));
        if (r->set_status(r, 303, NULL) < 0 ||
            r->add_header(r, "Location", prefix) < 0 ||
            r->add_header(r, "Content-Length", "0") < 0 ||
            demo_set_session(r, name, count) < 0)
            return -1;
        return 0;
    }

    char esc[6 * DEMO_MAX_NAME + 1], page[2048];
    html_escape(user, esc, sizeof(esc));
    count++;
    int n = snprintf(
        page, sizeof(page),
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<title>slotproxy session demo</title></head><body>\n"
        "<h1>slotproxy session demo</h1>\n"
        "<p id=\"greeting\">%s%s, visits: <span id=\"visits\">%llu</span>"
        "</p>\n"
        "<form method=\"post\" action=\"%s\">"
        "<input id=\"name\" name=\"name\" value=\"%s\"> "
        "<button id=\"login\" type=\"submit\">Log in</button></form>\n"
        "<p>The session lives in mod_slotproxy's session store; the cookie "
        "holds only its id.  <a href=\"%scounter\">counter</a></p>\n"
        "</body></html>\n",
        user[0] ? "Hello " : "Not logged in", esc, count, prefix, esc, prefix);
    snprintf(num, sizeof(num), "%d", n);
    if (r->set_status(r, 200, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/html; charset=utf-8") < 0 ||
        r->add_header(r, "Content-Length", num) < 0 ||
        r->add_header(r, "Cache-Control", "no-store") < 0 ||
        demo_set_session(r, user, count) < 0)
        return -1;
    return r->write(r, page, (size_t)n) < 0 ? -1 : 0;
}

const slotproxy_app_t sp_app_session_demo = {
    .abi_version = SLOTPROXY_APP_ABI,
    .name = "session-demo",
    .init = NULL,
    .handle = demo_handle,
    .fini = NULL,
};
