/*
 * test_backend_reload.c - signals.  SIGHUP: a graceful reload under
 * steady load loses no request, drained links are closed, listeners are
 * added, kept and removed, and a reload with a broken configuration
 * keeps the running one.  SIGTERM: in-flight
 * requests finish within GracefulTimeout, then are aborted.
 *
 * The load plays a frontend by the rules of docs/protocol.md: a link that
 * got GOAWAY(RELOAD) opens no new stream (spc_request refuses), finishes
 * the ones it has, and is replaced by a new link at once; a stream the
 * backend refused before any ACCEPT with SHUTDOWN/OVERLOAD/UNAVAILABLE
 * (a REQUEST_HEAD that crossed the GOAWAY) is retried (4.3).  Everything
 * else - an ABORT after ACCEPT, a lost link, a wrong byte - fails.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_crc.h"
#include "sp_error.h"
#include "sp_frame.h"
#include "test_backend.h"

#define NLINKS 4
#define NSTREAMS 8

typedef struct req {
    int kind;     /* 0 hello, 1 echo body, 2 pattern, 3 slow (50 ms) */
    size_t len;   /* body length (kind 1) */
    uint32_t seed;
    int tries;
} req_t;

typedef struct lk {
    spc_t c;
    int connected;
    req_t req[NSTREAMS];
    int busy[NSTREAMS];
} lk_t;

typedef struct load {
    const spt_backend_t *b;
    lk_t links[NLINKS];
    uint32_t next_seed;
    int done, retried, reconnects, goaways;
} load_t;

static uint8_t body_byte(uint32_t seed, size_t j)
{
    return (uint8_t)(seed * 29u + j * 3u + (j >> 8));
}

static void lk_connect(load_t *ld, lk_t *k)
{
    tb_connect(&k->c, ld->b->unix_addr, NULL, NSTREAMS);
    k->connected = 1;
    memset(k->busy, 0, sizeof(k->busy));
}

/* Send request r on stream id; 0, or SP_ESTATE when the link just became
 * unusable (GOAWAY arrived while we were sending). */
static int req_send(lk_t *k, uint32_t id, req_t *r)
{
    spc_stream_t *s = &k->c.streams[id];
    s->keep_body = r->kind == 1;
    s->check_pattern = r->kind == 2;
    int rc;
    char uri[64];
    switch (r->kind) {
    case 0:
        rc = spc_request(&k->c, id, "GET", "/hello", NULL, 0, 0);
        break;
    case 1:
        rc = spc_request(&k->c, id, "POST", "/echo?bodyonly=1", NULL, 1,
                         (int64_t)r->len);
        if (rc == 0) {
            static uint8_t buf[32768];
            for (size_t j = 0; j < r->len; j++)
                buf[j] = body_byte(r->seed, j);
            rc = spc_send_body(&k->c, id, buf, r->len, 5000);
            if (rc == 0)
                rc = spc_end(&k->c, id);
            if (rc == SP_ESTATE && s->aborted)
                rc = 0; /* refused at once: judged in req_check */
        }
        break;
    case 2:
        snprintf(uri, sizeof(uri), "/echo?size=%u", 50000 + r->seed % 50000);
        rc = spc_request(&k->c, id, "GET", uri, NULL, 0, 0);
        break;
    default:
        rc = spc_request(&k->c, id, "GET", "/echo?sleep=50&bodyonly=1",
                         NULL, 0, 0);
        break;
    }
    if (rc == SP_ESTATE && !spc_usable(&k->c))
        return SP_ESTATE;
    ck_assert_msg(rc == 0, "request: %s", sp_strerror(rc));
    r->tries++;
    k->busy[id] = 1;
    return 0;
}

/* A finished stream: 1 if done right, 0 if it must be retried. */
static int req_check(lk_t *k, uint32_t id, req_t *r)
{
    spc_stream_t *s = &k->c.streams[id];
    ck_assert_msg(!s->lost, "a link was lost with a stream open");
    if (s->aborted) {
        ck_assert_msg(!s->accepted &&
                          (s->abort_code == SP_ABORT_SHUTDOWN ||
                           s->abort_code == SP_ABORT_OVERLOAD ||
                           s->abort_code == SP_ABORT_UNAVAILABLE),
                      "request kind %d failed: ABORT %s %u (%s), accepted %d",
                      r->kind, sp_abort_code_name(s->abort_code),
                      s->abort_status, s->abort_reason, s->accepted);
        ck_assert_msg(r->tries < 5, "retried %d times", r->tries);
        return 0;
    }
    tb_expect_ok(&k->c, id, 200);
    switch (r->kind) {
    case 0:
    case 3:
        ck_assert_uint_eq(s->body_total, r->kind == 0 ? 13 : 0);
        break;
    case 1:
        ck_assert_uint_eq(s->body_len, r->len);
        for (size_t j = 0; j < r->len; j++)
            ck_assert_msg(s->body[j] == body_byte(r->seed, j),
                          "echo byte %zu differs", j);
        break;
    case 2:
        ck_assert_uint_eq(s->body_total, 50000 + r->seed % 50000);
        ck_assert_int_eq(s->pattern_bad, 0);
        break;
    }
    return 1;
}

static void req_new(load_t *ld, req_t *r)
{
    uint32_t seed = ld->next_seed++;
    r->kind = (int)(seed % 4);
    r->len = (seed * 7919u) % 20000;
    r->seed = seed;
    r->tries = 0;
}

/* One pass over every link and stream.  open_new: start requests. */
static void load_step(load_t *ld, int open_new)
{
    for (int i = 0; i < NLINKS; i++) {
        lk_t *k = &ld->links[i];
        if (!k->connected) {
            if (!open_new)
                continue;
            lk_connect(ld, k);
        }
        int rc = spc_pump(&k->c, 0);
        for (uint32_t id = 0; id < NSTREAMS; id++) {
            spc_stream_t *s = &k->c.streams[id];
            if (!k->busy[id] || s->open)
                continue;
            k->busy[id] = 0;
            if (req_check(k, id, &k->req[id]))
                ld->done++, k->req[id].tries = -1; /* next: a new one */
            else
                ld->retried++;
        }
        ck_assert_msg(rc == 0 || spc_open_streams(&k->c) == 0,
                      "link %d closed with streams open: %s", i,
                      k->c.l.err);
        if (!spc_usable(&k->c)) {
            /* GOAWAY (or closed): drain, then replace the link; unfinished
             * work moves to the new link. */
            if (spc_open_streams(&k->c) > 0)
                continue;
            if (k->c.l.goaway_rx == SP_GOAWAY_RELOAD + 1)
                ld->goaways++;
            req_t keep[NSTREAMS];
            memcpy(keep, k->req, sizeof(keep));
            spc_close(&k->c);
            k->connected = 0;
            ld->reconnects++;
            if (!open_new)
                continue;
            lk_connect(ld, k);
            memcpy(k->req, keep, sizeof(keep));
        }
        if (!open_new)
            continue;
        for (uint32_t id = 0; id < NSTREAMS; id++) {
            if (k->busy[id])
                continue;
            req_t *r = &k->req[id];
            if (r->tries <= 0)
                req_new(ld, r);
            if (req_send(k, id, r) < 0)
                break; /* GOAWAY: the next pass replaces the link */
        }
    }
}

START_TEST(backend_hup_under_load)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 8\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 8, 5000), 8);
    pid_t old[16];
    ck_assert_int_eq(spt_children(b.pid, old, 16), 8);
    load_t *ld = calloc(1, sizeof(*ld));
    ld->b = &b;
    for (int i = 0; i < NLINKS; i++)
        for (uint32_t id = 0; id < NSTREAMS; id++)
            ld->links[i].req[id].tries = -1;
    double t0 = spt_ms();
    int hup = 0, done_at_hup = 0;
    while (spt_ms() - t0 < 3000) {
        if (!hup && spt_ms() - t0 > 1000) {
            spt_backend_signal(&b, SIGHUP);
            hup = 1;
            done_at_hup = ld->done;
        }
        load_step(ld, 1);
        usleep(200);
    }
    /* Let everything in flight finish. */
    double t1 = spt_ms();
    for (;;) {
        int open = 0;
        for (int i = 0; i < NLINKS; i++)
            if (ld->links[i].connected)
                open += (int)spc_open_streams(&ld->links[i].c);
        if (open == 0)
            break;
        ck_assert_msg(spt_ms() - t1 < 10000, "%d streams never finished",
                      open);
        load_step(ld, 0);
        usleep(500);
    }
    load_step(ld, 0);
    ck_assert_int_eq(spt_wait_log(&b, "SPB0606", 1, 2000), 1);
    fprintf(stderr,
            "figure: HUP under load: %d requests in 3 s (%d before the HUP), "
            "%d retried (refused before ACCEPT), %d links replaced after "
            "GOAWAY(RELOAD)\n",
            ld->done, done_at_hup, ld->retried, ld->goaways);
    /* Load on both sides of the HUP (low bars: sanitizer builds on a
     * busy machine are slow; a normal build does ~500 and ~1000). */
    ck_assert_int_ge(done_at_hup, 20);
    ck_assert_int_ge(ld->done - done_at_hup, 40);
    ck_assert_int_ge(ld->goaways, NLINKS); /* every link was told */
    for (int i = 0; i < NLINKS; i++)
        if (ld->links[i].connected)
            spc_close(&ld->links[i].c);
    free(ld);
    /* A new generation of workers, as many as before. */
    ck_assert_msg(spt_new_generation(b.pid, 8, old, 8, 5000),
                  "no whole new generation of 8 workers");
    spt_backend_finish(&b, NULL);
}
END_TEST

/* A link the backend told GOAWAY and that has nothing open is closed by
 * the backend (docs/protocol.md 2.6), and one that still has a stream
 * keeps it to the end. */
START_TEST(backend_hup_drains_links)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\n");
    spc_t idle, busy;
    tb_connect(&idle, b.unix_addr, NULL, 4);
    tb_connect(&busy, b.tcp_addr, NULL, 4);
    tb_hello(&idle, 0, 3000);
    busy.streams[0].check_pattern = 1;
    tb_get(&busy, 0, "/echo?sleep=1500&size=2000000");
    double t0 = spt_ms();
    while (!busy.streams[0].accepted && spt_ms() - t0 < 3000)
        ck_assert_int_eq(spc_pump(&busy, 10), 0);
    ck_assert(busy.streams[0].accepted);
    spt_backend_signal(&b, SIGHUP);
    t0 = spt_ms();
    while (idle.l.goaway_rx == 0 && spt_ms() - t0 < 3000)
        spc_pump(&idle, 10);
    ck_assert_int_eq(idle.l.goaway_rx, SP_GOAWAY_RELOAD + 1);
    ck_assert(!spc_usable(&idle));
    ck_assert_int_eq(spc_request(&idle, 1, "GET", "/hello", NULL, 0, 0),
                     SP_ESTATE);
    /* The idle link is closed by the backend soon. */
    while (!idle.closed && spt_ms() - t0 < 5000)
        spc_pump(&idle, 10);
    ck_assert_msg(idle.closed, "drained link still open %.0f ms after HUP",
                  spt_ms() - t0);
    double ms_close = spt_ms() - t0;
    /* The busy one finishes its stream (old worker, old generation). */
    tb_wait(&busy, 0, 10000);
    tb_expect_ok(&busy, 0, 200);
    ck_assert_uint_eq(busy.streams[0].body_total, 2000000);
    ck_assert_int_eq(busy.streams[0].pattern_bad, 0);
    ck_assert_int_eq(busy.l.goaway_rx, SP_GOAWAY_RELOAD + 1);
    t0 = spt_ms();
    while (!busy.closed && spt_ms() - t0 < 5000)
        spc_pump(&busy, 10);
    ck_assert(busy.closed);
    fprintf(stderr, "figure: idle link closed %.0f ms after GOAWAY(RELOAD)\n",
            ms_close);
    spc_close(&idle);
    spc_close(&busy);
    /* New links work. */
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    spt_backend_finish(&b, NULL);
}
END_TEST

START_TEST(backend_hup_bad_config)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 3\n");
    ck_assert_int_eq(spt_wait_children(b.pid, 3, 5000), 3);
    pid_t before[4], after[4];
    ck_assert_int_eq(spt_children(b.pid, before, 4), 3);
    char *orig = spt_read_file(b.conf);
    ck_assert_ptr_nonnull(orig);
    spc_t c;
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 3000);

    /* A syntax error; then a handler that cannot load. */
    static const char *const breakage[] = {
        "Workers many\n",
        "Handler /x plugin:/nonexistent/x.so\n",
    };
    static const char *const tags[] = {"SPB0601", "SPB0603"};
    for (int k = 0; k < 2; k++) {
        spt_write_file(b.conf, orig, 0644);
        spt_backend_append_conf(&b, breakage[k]);
        spt_backend_signal(&b, SIGHUP);
        ck_assert_int_eq(spt_wait_log(&b, tags[k], 1, 3000), 1);
        /* Still the old configuration: no GOAWAY, same workers, served. */
        for (int i = 0; i < 5; i++)
            spc_pump(&c, 10);
        ck_assert(spc_usable(&c));
        tb_hello(&c, 1, 3000);
        ck_assert_int_eq(spt_children(b.pid, after, 4), 3);
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(after[i], before[i]);
    }
    ck_assert_int_eq(spt_log_count(&b, "SPB0606"), 0);
    /* The file says which line. */
    char want[400];
    snprintf(want, sizeof(want), "reload refused, keeping the running "
                                 "configuration: %s:",
             b.conf);
    ck_assert_int_eq(spt_log_count(&b, want), 1);

    /* Fixed: the next HUP takes it (Workers 3 -> 2). */
    spt_write_file(b.conf, orig, 0644);
    spt_backend_append_conf(&b, "Workers 2\n");
    spt_backend_signal(&b, SIGHUP);
    ck_assert_int_eq(spt_wait_log(&b, "SPB0606", 1, 3000), 1);
    ck_assert_msg(spt_new_generation(b.pid, 2, before, 3, 5000),
                  "no whole new generation of 2 workers");
    double t0 = spt_ms();
    while (spc_usable(&c) && spt_ms() - t0 < 3000)
        spc_pump(&c, 10);
    ck_assert_int_eq(c.l.goaway_rx, SP_GOAWAY_RELOAD + 1);
    spc_close(&c);
    tb_connect(&c, b.unix_addr, NULL, 4);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
    free(orig);
    static const char *const allowed[] = {"SPB0601", "SPB0603", "SPB0501",
                                          NULL};
    spt_backend_finish(&b, allowed);
}
END_TEST

/* SIGTERM: in-flight requests finish within GracefulTimeout, links get
 * GOAWAY(NORMAL), and the daemon exits 0; past the grace period the rest
 * are aborted. */
START_TEST(backend_term_graceful)
{
    for (int k = 0; k < 2; k++) {
        spt_backend_t b;
        spt_backend_start(&b, k == 0 ? "Workers 2\nGracefulTimeout 5\n"
                                     : "Workers 2\nGracefulTimeout 1\n");
        spc_t c;
        tb_connect(&c, b.unix_addr, NULL, 4);
        c.streams[0].check_pattern = 1;
        tb_get(&c, 0, k == 0 ? "/echo?sleep=600&size=500000"
                             : "/echo?sleep=20000");
        double t0 = spt_ms();
        while (!c.streams[0].accepted && spt_ms() - t0 < 3000)
            ck_assert_int_eq(spc_pump(&c, 10), 0);
        ck_assert(c.streams[0].accepted);
        spt_backend_signal(&b, SIGTERM);
        t0 = spt_ms();
        while (c.l.goaway_rx == 0 && spt_ms() - t0 < 3000)
            ck_assert_int_eq(spc_pump(&c, 10), 0);
        ck_assert_int_eq(c.l.goaway_rx, SP_GOAWAY_NORMAL + 1);
        ck_assert(!spc_usable(&c));
        /* No new links while stopping. */
        spc_t other;
        char err[256];
        ck_assert_int_ne(spc_connect(&other, b.unix_addr, NULL, 4, 2000, err,
                                     sizeof(err)),
                         0);
        spc_close(&other);
        spc_wait(&c, 0, 10000);
        double ms = spt_ms() - t0;
        if (k == 0) {
            tb_expect_ok(&c, 0, 200);
            ck_assert_uint_eq(c.streams[0].body_total, 500000);
            ck_assert_int_eq(c.streams[0].pattern_bad, 0);
        } else {
            spc_stream_t *s = &c.streams[0];
            ck_assert_msg(s->aborted && s->abort_code == SP_ABORT_SHUTDOWN,
                          "past the grace period: aborted %d code %u",
                          s->aborted, s->abort_code);
            ck_assert_msg(ms >= 900 && ms < 3000, "aborted after %.0f ms",
                          ms);
            fprintf(stderr, "figure: GracefulTimeout 1: in-flight request "
                            "aborted %.0f ms after SIGTERM\n",
                    ms);
        }
        spc_close(&c);
        static const char *const cut[] = {"SPB0705", NULL};
        if (k == 1) /* the worker we killed, logged as such */
            ck_assert_int_eq(spt_wait_log(&b, "SPB0705", 1, 3000), 1);
        spt_backend_finish(&b, k ? cut : NULL);
    }
}
END_TEST

/* The newest "listening on tcp://..." address in the log (a reload moves
 * a port-0 listener to a new port). */
static void last_tcp(const spt_backend_t *b, char *out, size_t cap)
{
    char *log = spt_read_file(b->log);
    ck_assert_ptr_nonnull(log);
    const char *p = NULL;
    for (const char *q = log; (q = strstr(q, "listening on tcp://")); q++)
        p = q;
    ck_assert_ptr_nonnull(p);
    p += strlen("listening on ");
    size_t n = strcspn(p, "\n");
    ck_assert_uint_lt(n, cap);
    memcpy(out, p, n);
    out[n] = '\0';
    free(log);
}

static void hello_at(const char *addr)
{
    spc_t c;
    tb_connect(&c, addr, NULL, 2);
    tb_hello(&c, 0, 3000);
    spc_close(&c);
}

/* Listeners across reloads: added, kept (however they sit in the list),
 * removed.  (A reload used to close and free a kept listener that was
 * first in the daemon's list: its socket file vanished, and the daemon
 * used freed memory.) */
START_TEST(backend_hup_listeners)
{
    spt_backend_t b;
    spt_backend_start(&b, "Workers 2\n");
    char *orig = spt_read_file(b.conf);
    char c_path[300], c_addr[320], extra[340], tcp[64];
    snprintf(c_path, sizeof(c_path), "%s/c.sock", b.dir);
    snprintf(c_addr, sizeof(c_addr), "unix:%s", c_path);
    snprintf(extra, sizeof(extra), "Listen %s\n", c_addr);
    spt_backend_append_conf(&b, extra);
    for (int k = 1; k <= 3; k++) {
        spt_backend_signal(&b, SIGHUP);
        ck_assert_int_eq(spt_wait_log(&b, "SPB0606", k, 3000), k);
        hello_at(b.unix_addr);
        last_tcp(&b, tcp, sizeof(tcp));
        hello_at(tcp);
        if (k < 3) {
            hello_at(c_addr);
        } else { /* removed by the third reload */
            ck_assert_int_ne(access(c_path, F_OK), 0);
            spc_t c;
            char err[256];
            ck_assert_int_ne(spc_connect(&c, c_addr, NULL, 2, 1000, err,
                                         sizeof(err)),
                             0);
            spc_close(&c);
        }
        if (k == 2)
            spt_write_file(b.conf, orig, 0644);
    }
    free(orig);
    spt_backend_finish(&b, NULL);
}
END_TEST

void tb_add_reload_cases(Suite *s)
{
    TCase *tc = tcase_create("reload");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_hup_under_load);
    tcase_add_test(tc, backend_hup_drains_links);
    tcase_add_test(tc, backend_hup_bad_config);
    tcase_add_test(tc, backend_hup_listeners);
    tcase_add_test(tc, backend_term_graceful);
    suite_add_tcase(s, tc);
}
