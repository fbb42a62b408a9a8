/*
 * apps_harness.c - the in-memory slotproxy_request_t of apps_harness.h.
 *
 * Allocation failures abort(): this is test code, and Check reports the
 * crash as a failed test.
 */
#include "apps_harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static sp_harness_t *H(slotproxy_request_t *r)
{
    return r->backend_private;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int check_abort(sp_harness_t *h)
{
    if (!h->aborted && h->abort_at_ns && mono_ns() >= h->abort_at_ns)
        h->aborted = 1;
    return h->aborted;
}

static void push_pair(slotproxy_header_t **v, size_t *n, size_t *cap,
                      const char *name, const char *value)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = xrealloc(*v, *cap * sizeof(**v));
    }
    (*v)[*n].name = xstrdup(name);
    (*v)[*n].value = xstrdup(value);
    (*n)++;
}

/* ---- the request's callbacks ------------------------------------------- */

static const char *h_header(slotproxy_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static const char *h_getenv(slotproxy_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->nenv; i++)
        if (strcmp(r->env[i].name, name) == 0)
            return r->env[i].value;
    return NULL;
}

static long h_read(slotproxy_request_t *r, void *buf, size_t len)
{
    sp_harness_t *h = H(r);
    if (check_abort(h))
        return -1;
    h->reads++;
    size_t left = h->body_len - h->body_off;
    if (len > left)
        len = left;
    if (h->read_chunk && len > h->read_chunk)
        len = h->read_chunk;
    if (len)
        memcpy(buf, h->body + h->body_off, len);
    h->body_off += len;
    return (long)len;
}

static int h_set_status(slotproxy_request_t *r, int status, const char *reason)
{
    sp_harness_t *h = H(r);
    if (h->head_sent || status < 100 || status > 999)
        return -1;
    h->status = status;
    snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
    return 0;
}

static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)))
            return 0;
    }
    return 1;
}

static int h_add_header(slotproxy_request_t *r, const char *name,
                        const char *value)
{
    sp_harness_t *h = H(r);
    if (h->head_sent || !name || !value || !is_token(name) ||
        strpbrk(value, "\r\n"))
        return -1;
    push_pair(&h->rh, &h->nrh, &h->caprh, name, value);
    return 0;
}

static void store(sp_harness_t *h, const void *buf, size_t len)
{
    h->out_total += len;
    if (h->on_body) {
        h->on_body(h, buf, len);
        return;
    }
    if (h->out_len + len + 1 > h->out_cap) {
        size_t cap = h->out_cap ? h->out_cap : 4096;
        while (cap < h->out_len + len + 1)
            cap *= 2;
        h->out = xrealloc(h->out, cap);
        h->out_cap = cap;
    }
    if (len)
        memcpy(h->out + h->out_len, buf, len);
    h->out_len += len;
    h->out[h->out_len] = '\0';
}

static long h_write(slotproxy_request_t *r, const void *buf, size_t len)
{
    sp_harness_t *h = H(r);
    if (check_abort(h))
        return -1;
    h->head_sent = 1;
    h->writes++;
    if (h->abort_after >= 0 &&
        h->out_total + len > (unsigned long long)h->abort_after) {
        store(h, buf, (size_t)(h->abort_after - (long long)h->out_total));
        h->aborted = 1;
        return -1;
    }
    store(h, buf, len);
    return (long)len;
}

static int h_flush(slotproxy_request_t *r)
{
    sp_harness_t *h = H(r);
    if (check_abort(h))
        return -1;
    h->head_sent = 1;
    h->flushes++;
    return 0;
}

static int h_aborted(slotproxy_request_t *r)
{
    return check_abort(H(r));
}

static void h_log(slotproxy_request_t *r, int level, const char *fmt, ...)
{
    sp_harness_t *h = H(r);
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (h->nlogs == h->caplogs) {
        h->caplogs = h->caplogs ? h->caplogs * 2 : 16;
        h->logs = xrealloc(h->logs, h->caplogs * sizeof(*h->logs));
    }
    h->logs[h->nlogs].level = level;
    h->logs[h->nlogs].line = xstrdup(line);
    h->nlogs++;
    if (getenv("SP_HARNESS_VERBOSE"))
        fprintf(stderr, "[harness log %d] %s\n", level, line);
}

/* ---- the test-facing API ------------------------------------------------ */

void sp_harness_init(sp_harness_t *h, const char *method, const char *uri)
{
    memset(h, 0, sizeof(*h));
    h->uri = xstrdup(uri);
    const char *q = strchr(uri, '?');
    if (q) {
        h->path = xstrdup(uri);
        h->path[q - uri] = '\0';
        h->query = xstrdup(q + 1);
    } else {
        h->path = xstrdup(uri);
        h->query = xstrdup("");
    }
    h->abort_after = -1;

    slotproxy_request_t *r = &h->req;
    r->abi_version = SLOTPROXY_APP_ABI;
    r->size = sizeof(*r);
    r->method = method;
    r->uri = h->uri;
    r->path = h->path;
    r->query = h->query;
    r->protocol = "HTTP/1.1";
    r->scheme = "http";
    r->server_name = "localhost";
    r->remote_addr = "127.0.0.1";
    r->local_addr = "127.0.0.1";
    r->remote_user = "";
    r->auth_type = "";
    r->remote_port = 40000;
    r->local_port = 8080;
    r->https = 0;
    r->content_length = 0;
    r->prefix = "";
    r->arg = "";
    r->header = h_header;
    r->getenv = h_getenv;
    r->read = h_read;
    r->set_status = h_set_status;
    r->add_header = h_add_header;
    r->write = h_write;
    r->flush = h_flush;
    r->aborted = h_aborted;
    r->log = h_log;
    r->backend_private = h;
}

void sp_harness_add_header(sp_harness_t *h, const char *name, const char *value)
{
    push_pair(&h->hdrs, &h->nhdrs, &h->caphdrs, name, value);
    h->req.headers = h->hdrs;
    h->req.nheaders = h->nhdrs;
}

void sp_harness_add_env(sp_harness_t *h, const char *name, const char *value)
{
    push_pair(&h->envs, &h->nenvs, &h->capenvs, name, value);
    h->req.env = h->envs;
    h->req.nenv = h->nenvs;
}

void sp_harness_set_body(sp_harness_t *h, const void *body, size_t len,
                         int chunked)
{
    h->body = body;
    h->body_len = len;
    h->body_off = 0;
    h->req.content_length = chunked ? -1 : (long long)len;
}

int sp_harness_run(sp_harness_t *h, sp_handler_t *handler)
{
    h->rc = sp_handler_handle(handler, &h->req);
    if (h->rc < 0 && !h->head_sent) {
        /* what the worker core does with a failed handler */
        h->status = 500;
        h->reason[0] = '\0';
    }
    h->head_sent = 1;
    return h->rc;
}

const char *sp_harness_resp_header(const sp_harness_t *h, const char *name,
                                   size_t nth)
{
    for (size_t i = 0; i < h->nrh; i++)
        if (strcasecmp(h->rh[i].name, name) == 0 && nth-- == 0)
            return h->rh[i].value;
    return NULL;
}

size_t sp_harness_resp_count(const sp_harness_t *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nrh; i++)
        n += strcasecmp(h->rh[i].name, name) == 0;
    return n;
}

int sp_harness_logged(const sp_harness_t *h, int level, const char *needle)
{
    for (size_t i = 0; i < h->nlogs; i++)
        if (h->logs[i].level == level && strstr(h->logs[i].line, needle))
            return 1;
    return 0;
}

const char *sp_harness_body(const sp_harness_t *h)
{
    return h->out ? (const char *)h->out : "";
}

static void free_pairs(slotproxy_header_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)v[i].name);
        free((char *)v[i].value);
    }
    free(v);
}

void sp_harness_free(sp_harness_t *h)
{
    free(h->uri);
    free(h->path);
    free(h->query);
    free_pairs(h->hdrs, h->nhdrs);
    free_pairs(h->envs, h->nenvs);
    free_pairs(h->rh, h->nrh);
    free(h->out);
    for (size_t i = 0; i < h->nlogs; i++)
        free(h->logs[i].line);
    free(h->logs);
    memset(h, 0, sizeof(*h));
}
