/*
 * sample_plugin.c - the sample application shipped with slotproxy, and
 * the worked example of docs/applications.md.  It includes nothing of the
 * backend but slotproxy_app.h and is built as its own shared object:
 *
 *     cc -shared -fPIC -O2 -I/usr/include/slotproxy \
 *        -o sample_plugin.so sample_plugin.c
 *
 *     Handler /app/ plugin:/usr/lib/slotproxy/sample_plugin.so "Hello"
 *
 * What it does:
 *   GET/HEAD  an HTML page greeting ?name=... (percent-decoded, then
 *             HTML-escaped), with the worker's pid and how many requests
 *             this worker has served - per-process state kept in ctx.
 *   POST/PUT  reads the body as it streams in (never holding more than 16
 *             KiB) and answers with its length and Adler-32 checksum, as
 *             text/plain.  Works the same for chunked uploads.
 *   other     405 with an Allow header.
 *
 * The Handler argument, if any, replaces the greeting word.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slotproxy_app.h"

typedef struct sample_ctx {
    unsigned long long served; /* requests seen by this worker */
    long pid;
    char greeting[64];
} sample_ctx_t;

static int sample_init(void **ctx, const char *arg, char *err, size_t errlen)
{
    sample_ctx_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "sample: out of memory");
        return -1;
    }
    if (arg && strlen(arg) >= sizeof(c->greeting)) {
        snprintf(err, errlen, "sample: greeting longer than %zu bytes",
                 sizeof(c->greeting) - 1);
        free(c);
        return -1;
    }
    snprintf(c->greeting, sizeof(c->greeting), "%s",
             arg && arg[0] ? arg : "Hello");
    c->pid = (long)getpid(); /* init runs in the worker, after fork */
    *ctx = c;
    return 0;
}

static void sample_fini(void *ctx)
{
    free(ctx);
}

/* ---- small helpers ----------------------------------------------------- */

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

/* Percent-decode query parameter `key` into out (truncated to outlen-1,
 * '+' as space).  1 if found, 0 if not. */
static int query_param(const char *q, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t plen = end ? (size_t)(end - q) : strlen(q);
        if (plen > klen && memcmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t o = 0;
            for (size_t i = klen + 1; i < plen && o + 1 < outlen; i++) {
                int hi, lo;
                if (q[i] == '+') {
                    out[o++] = ' ';
                } else if (q[i] == '%' && i + 2 < plen &&
                           (hi = hexval((unsigned char)q[i + 1])) >= 0 &&
                           (lo = hexval((unsigned char)q[i + 2])) >= 0) {
                    out[o++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    out[o++] = q[i];
                }
            }
            out[o] = '\0';
            return 1;
        }
        q = end ? end + 1 : NULL;
    }
    return 0;
}

/* HTML-escape src into dst (room for 6 bytes per input byte + 1). */
static void html_escape(const char *src, char *dst)
{
    for (; *src; src++) {
        const char *rep = NULL;
        switch (*src) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        if (rep) {
            size_t n = strlen(rep);
            memcpy(dst, rep, n);
            dst += n;
        } else {
            *dst++ = *src;
        }
    }
    *dst = '\0';
}

/* ---- the handler -------------------------------------------------------- */

static int sample_greet(sample_ctx_t *c, slotproxy_request_t *r)
{
    char name[128], esc[128 * 6], page[1536], len[24];
    if (!query_param(r->query, "name", name, sizeof(name)))
        snprintf(name, sizeof(name), "world");
    html_escape(name, esc);
    int n = snprintf(page, sizeof(page),
                     "<!DOCTYPE html>\n<html><head><title>slotproxy sample"
                     "</title></head>\n<body><p>%s, %s!</p>\n"
                     "<p>Worker %ld has served %llu request%s.</p>"
                     "</body></html>\n",
                     c->greeting, esc, c->pid, c->served,
                     c->served == 1 ? "" : "s");
    if (n < 0 || (size_t)n >= sizeof(page))
        return -1;
    snprintf(len, sizeof(len), "%d", n);
    if (r->set_status(r, 200, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/html; charset=utf-8") < 0 ||
        r->add_header(r, "Content-Length", len) < 0)
        return -1;
    if (strcmp(r->method, "HEAD") == 0)
        return 0;
    return r->write(r, page, (size_t)n) < 0 ? -1 : 0;
}

static int sample_upload(slotproxy_request_t *r)
{
    /* Adler-32 (RFC 1950), computed as the body streams in. */
    unsigned long a = 1, b = 0;
    unsigned long long total = 0;
    unsigned char buf[16384];
    char out[128];
    long n;

    while ((n = r->read(r, buf, sizeof(buf))) > 0) {
        for (long i = 0; i < n; i++) {
            a = (a + buf[i]) % 65521;
            b = (b + a) % 65521;
        }
        total += (unsigned long long)n;
    }
    if (n < 0)
        return -1; /* aborted: nobody is listening any more */
    int len = snprintf(out, sizeof(out), "bytes: %llu\nadler32: %08lx\n", total,
                       (b << 16) | a);
    if (r->set_status(r, 200, NULL) < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0)
        return -1;
    return r->write(r, out, (size_t)len) < 0 ? -1 : 0;
}

static int sample_handle(void *ctx, slotproxy_request_t *r)
{
    sample_ctx_t *c = ctx;
    char pid[24];

    c->served++;
    snprintf(pid, sizeof(pid), "%ld", c->pid);
    /* Headers may be added in any order before the first write. */
    if (r->add_header(r, "X-Sample-Worker", pid) < 0)
        return -1;
    if (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)
        return sample_greet(c, r);
    if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0)
        return sample_upload(r);

    static const char msg[] = "method not allowed\n";
    r->log(r, SLOTPROXY_LOG_INFO, "sample: %s refused", r->method);
    if (r->set_status(r, 405, NULL) < 0 ||
        r->add_header(r, "Allow", "GET, HEAD, POST, PUT") < 0 ||
        r->add_header(r, "Content-Type", "text/plain") < 0)
        return -1;
    return r->write(r, msg, sizeof(msg) - 1) < 0 ? -1 : 0;
}

/* The one exported symbol.  Visibility is explicit so the plugin can be
 * built with -fvisibility=hidden. */
__attribute__((visibility("default"))) const slotproxy_app_t slotproxy_app = {
    .abi_version = SLOTPROXY_APP_ABI,
    .name = "sample",
    .init = sample_init,
    .handle = sample_handle,
    .fini = sample_fini,
};
