/*
 * test_module.c - mod_slotproxy end to end: a real apache2 (Debian's) with
 * the module, a real slotproxy-backend, a libcurl client on loopback.
 *
 * The "module" suite, one TCase per theme (CK_RUN_CASE picks one), every
 * test run once under prefork and once under event (loop index = MPM):
 *
 *   basic    GET, HEAD, POST, PUT with 0 B, 1 KiB, 1 MiB and 100 MiB
 *            bodies streamed and checked byte-exact both ways, chunked
 *            uploads, repeated Set-Cookie headers, status codes with their
 *            bodies, /hello exact
 *   load     (test_module_load.c) 256 concurrent keep-alive clients, every
 *            answer checked, while the ESTABLISHED connections to the
 *            backend port stay exactly `links`
 *   proxykill (test_module_load.c) kill -9 of the proxy child under load:
 *            restarted, later requests succeed, no slot stays taken
 *   backenddown (test_module_fail.c) backend stopped: 503 within
 *            connect_timeout + 1 s; started again: requests succeed
 *   graceful (test_module_fail.c) `apache2 -k graceful` during long
 *            streaming requests: none fails, the old proxy child exits
 *   abort    (test_module_fail.c) client gone mid-download: the backend's
 *            only worker is free at once, no slot stays taken
 *   sched    (test_module_sched.c) SlotProxyScheduling: the proxy child's
 *            policy at start and after a graceful restart; bad values
 *            refused
 *
 * Each test ends with tm_finish(): httpd and backend stopped cleanly, and
 * no [error]/[warn] line in either log but the tags the test expects.
 * Figures go to stderr with a "figure:" prefix.
 */
#include "test_module.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const tm_mpms[] = {"prefork", "event"};

const char *const tm_transports[] = {"unix", "tcp", "shm"};

void tm_start(tm_env_t *e, int mpm, const char *backend_extra, int transport,
              const char *params, const char *httpd_extra, int links)
{
    char extra[4096];
    memset(e, 0, sizeof(*e));
    e->mpm = tm_mpms[mpm];
    snprintf(extra, sizeof(extra), "%s%s",
             geteuid() == 0 ? "User www-data\nGroup www-data\n" : "",
             backend_extra ? backend_extra : "");
    spt_backend_start(&e->b, extra);
    const char *addr = transport == TM_TCP   ? e->b.tcp_addr
                       : transport == TM_SHM ? e->b.shm_addr
                                             : e->b.unix_addr;
    ck_assert_msg(addr[0] != '\0', "backend has no %s address",
                  tm_transports[transport]);
    spt_httpd_start(&e->h, e->mpm, spt_httpd_site(addr, params, httpd_extra),
                    links);
}

void tm_finish(tm_env_t *e, const char *const *httpd_allowed,
               const char *const *backend_allowed)
{
    spt_httpd_finish(&e->h, httpd_allowed);
    spt_backend_finish(&e->b, backend_allowed);
}

int tm_backend_port(const tm_env_t *e)
{
    const char *p = strrchr(e->b.tcp_addr, ':');
    ck_assert_ptr_nonnull(p);
    return atoi(p + 1);
}

/* ---- load ------------------------------------------------------------------ */

typedef struct tm_worker {
    tm_load_t *l;
    int id;
    spt_client_t *c;
    pthread_t t;
} tm_worker_t;

struct tm_load {
    int n;
    tm_worker_t *w;
    atomic_int stop;
    atomic_int started;
    atomic_long ok, failed, ok_after, failed_after;
    _Atomic double mark; /* spt_ms() of tm_load_mark(), 0 = none */
    _Atomic double first_ok; /* first success started after the mark */
    pthread_mutex_t mu;
    char first_err[512], first_err_after[512];
};

static void load_fail(tm_load_t *l, int after, const char *what,
                      const spt_resp_t *r)
{
    char msg[512];
    snprintf(msg, sizeof(msg),
             "%s: status %ld, curl %d (%s), %llu bytes, mismatch at %lld",
             what, r->status, r->curl_code, r->err,
             (unsigned long long)r->received,
             r->mismatch == UINT64_MAX ? -1LL : (long long)r->mismatch);
    pthread_mutex_lock(&l->mu);
    if (l->first_err[0] == '\0')
        snprintf(l->first_err, sizeof(l->first_err), "%s", msg);
    if (after && l->first_err_after[0] == '\0')
        snprintf(l->first_err_after, sizeof(l->first_err_after), "%s", msg);
    pthread_mutex_unlock(&l->mu);
}

static void *load_thread(void *arg)
{
    tm_worker_t *w = arg;
    tm_load_t *l = w->l;
    static const char hello[] = "Hello, world\n";
    char path[128];
    spt_resp_t *r = malloc(sizeof(*r));
    for (uint64_t k = 0; !atomic_load(&l->stop); k++) {
        spt_req_t q = {.method = "GET", .body_len = -1, .timeout_ms = 30000};
        switch (k % 3) {
        case 0:
            q.path = "/hello";
            q.check = SPT_CHECK_EXACT;
            q.expect = hello;
            q.expect_n = 13;
            break;
        case 1:
            q.method = "POST";
            q.path = "/echo?bodyonly=1";
            q.body_len = 1000 + w->id * 13;
            q.seed = ((uint64_t)w->id << 24) | k;
            q.check = SPT_CHECK_ECHO;
            break;
        default:
            snprintf(path, sizeof(path), "/echo?size=%d", 20000 + w->id * 7);
            q.path = path;
            q.check = SPT_CHECK_SIZE;
            q.expect_len = 20000 + (uint64_t)w->id * 7;
            break;
        }
        double t0 = spt_ms();
        spt_client_do(w->c, &q, r);
        double mark = atomic_load(&l->mark);
        int after = mark > 0 && t0 >= mark;
        if (r->status == 200 && spt_resp_ok(&q, r)) {
            atomic_fetch_add(&l->ok, 1);
            if (after) {
                atomic_fetch_add(&l->ok_after, 1);
                double now = spt_ms(), first = atomic_load(&l->first_ok);
                while ((first == 0 || now < first) &&
                       !atomic_compare_exchange_weak(&l->first_ok, &first,
                                                     now))
                    ;
            }
        } else {
            atomic_fetch_add(&l->failed, 1);
            if (after)
                atomic_fetch_add(&l->failed_after, 1);
            load_fail(l, after, q.path, r);
        }
        if (k == 0)
            atomic_fetch_add(&l->started, 1);
    }
    free(r);
    return NULL;
}

tm_load_t *tm_load_start(const spt_httpd_t *h, int nthreads)
{
    tm_load_t *l = calloc(1, sizeof(*l));
    ck_assert_ptr_nonnull(l);
    l->n = nthreads;
    l->w = calloc((size_t)nthreads, sizeof(*l->w));
    pthread_mutex_init(&l->mu, NULL);
    /* Every client before any thread: curl's global init is not
     * thread-safe. */
    for (int i = 0; i < nthreads; i++) {
        l->w[i].l = l;
        l->w[i].id = i;
        l->w[i].c = spt_client_new(h);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    for (int i = 0; i < nthreads; i++)
        ck_assert_int_eq(
            pthread_create(&l->w[i].t, &attr, load_thread, &l->w[i]), 0);
    pthread_attr_destroy(&attr);
    return l;
}

int tm_load_started(tm_load_t *l)
{
    return atomic_load(&l->started);
}

void tm_load_mark(tm_load_t *l)
{
    atomic_store(&l->mark, spt_ms());
}

void tm_load_stop(tm_load_t *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < l->n; i++)
        pthread_join(l->w[i].t, NULL);
}

long tm_load_ok(const tm_load_t *l)
{
    return atomic_load(&l->ok);
}

long tm_load_failed(const tm_load_t *l)
{
    return atomic_load(&l->failed);
}

long tm_load_failed_after_mark(const tm_load_t *l)
{
    return atomic_load(&l->failed_after);
}

long tm_load_ok_after_mark(const tm_load_t *l)
{
    return atomic_load(&l->ok_after);
}

double tm_load_first_ok_after_mark(const tm_load_t *l)
{
    double first = atomic_load(&l->first_ok);
    return first > 0 ? first - atomic_load(&l->mark) : -1;
}

const char *tm_load_first_error(const tm_load_t *l)
{
    return l->first_err;
}

const char *tm_load_first_error_after_mark(const tm_load_t *l)
{
    return l->first_err_after;
}

void tm_load_free(tm_load_t *l)
{
    for (int i = 0; i < l->n; i++)
        spt_client_free(l->w[i].c);
    pthread_mutex_destroy(&l->mu);
    free(l->w);
    free(l);
}

/* ---- basic ------------------------------------------------------------------ */

static void expect_ok(const spt_req_t *q, const spt_resp_t *r, long status,
                      const char *what)
{
    ck_assert_msg(r->curl_code == 0, "%s: curl %d: %s", what, r->curl_code,
                  r->err);
    ck_assert_msg(r->status == status, "%s: status %ld, wanted %ld", what,
                  r->status, status);
    ck_assert_msg(r->mismatch == UINT64_MAX,
                  "%s: body differs at byte %llu", what,
                  (unsigned long long)r->mismatch);
    ck_assert_msg(spt_resp_ok(q, r),
                  "%s: %llu body bytes (Content-Length %lld)", what,
                  (unsigned long long)r->received,
                  (long long)r->content_length);
}

/* 0 B, 1 KiB, 1 MiB, 100 MiB. */
static const int64_t sizes[] = {0, 1024, 1024 * 1024, 100 * 1024 * 1024};
#define NSIZES 4

/* Loop index: the MPM, over a unix: link for 0..TM_NMPMS-1 and over a
 * shm: link for the next TM_NMPMS. */
START_TEST(module_basic)
{
    tm_env_t e;
    tm_start(&e, _i % TM_NMPMS, NULL, _i < TM_NMPMS ? TM_UNIX : TM_SHM, "",
             NULL, 2);
    spt_client_t *c = spt_client_new(&e.h);
    spt_resp_t *r = malloc(sizeof(*r));
    char what[320], path[256];

    /* /hello, exact: body, length, type. */
    static const char hello[] = "Hello, world\n";
    spt_req_t q = {.method = "GET", .path = "/hello", .body_len = -1,
                   .check = SPT_CHECK_EXACT, .expect = hello, .expect_n = 13};
    spt_client_do(c, &q, r);
    expect_ok(&q, r, 200, "GET /hello");
    ck_assert_int_eq(r->content_length, 13);
    char v[4][256];
    ck_assert_int_eq(spt_resp_headers(r, "Content-Type", v, 4), 1);
    ck_assert_str_eq(v[0], "text/plain");

    /* Request bodies streamed up and back, byte-exact, every method that
     * may carry one (GET with a body too: httpd passes it). */
    static const char *const up[] = {"GET", "POST", "PUT"};
    for (int m = 0; m < 3; m++)
        for (int s = 0; s < NSIZES; s++) {
            spt_req_t u = {.method = up[m], .path = "/echo?bodyonly=1",
                           .body_len = sizes[s],
                           .seed = (uint64_t)(m * 16 + s + 1),
                           .check = SPT_CHECK_ECHO, .timeout_ms = 120000};
            snprintf(what, sizeof(what), "%s %lld B", up[m],
                     (long long)sizes[s]);
            spt_client_do(c, &u, r);
            expect_ok(&u, r, 200, what);
            if (sizes[s] >= 100 * 1024 * 1024)
                fprintf(stderr,
                        "figure: %s %s: 100 MiB up and back in %.0f ms\n",
                        e.mpm, up[m], r->ms);
        }

    /* Chunked uploads (no Content-Length): the backend sees -1 and echoes
     * every byte. */
    for (int s = 1; s < NSIZES; s++) {
        spt_req_t u = {.method = "POST", .path = "/echo?bodyonly=1",
                       .body_len = sizes[s], .chunked = 1,
                       .seed = (uint64_t)(100 + s), .check = SPT_CHECK_ECHO,
                       .timeout_ms = 120000};
        snprintf(what, sizeof(what), "chunked POST %lld B",
                 (long long)sizes[s]);
        spt_client_do(c, &u, r);
        expect_ok(&u, r, 200, what);
        if (sizes[s] >= 100 * 1024 * 1024)
            fprintf(stderr, "figure: %s chunked 100 MiB up and back in "
                            "%.0f ms\n",
                    e.mpm, r->ms);
    }
    spt_req_t d = {.method = "PUT", .path = "/echo", .body_len = 5000,
                   .chunked = 1, .seed = 7};
    spt_client_do(c, &d, r);
    ck_assert_int_eq(r->curl_code, 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(strstr(r->body, "method: PUT\n") &&
                      strstr(r->body, "content_length: -1\n"),
                  "chunked upload described as: %.400s", r->body);

    /* Response bodies: GET and HEAD of size=N. */
    for (int s = 0; s < NSIZES; s++) {
        snprintf(path, sizeof(path), "/echo?size=%lld", (long long)sizes[s]);
        spt_req_t g = {.method = "GET", .path = path, .body_len = -1,
                       .check = SPT_CHECK_SIZE,
                       .expect_len = (uint64_t)sizes[s],
                       .timeout_ms = 120000};
        snprintf(what, sizeof(what), "GET %s", path);
        spt_client_do(c, &g, r);
        expect_ok(&g, r, 200, what);
        ck_assert_int_eq(r->content_length, sizes[s]);
        if (sizes[s] >= 100 * 1024 * 1024)
            fprintf(stderr, "figure: %s GET 100 MiB in %.0f ms\n", e.mpm,
                    r->ms);
        spt_req_t hq = {.method = "HEAD", .path = path, .body_len = -1,
                        .check = SPT_CHECK_EXACT, .expect = "", .expect_n = 0};
        snprintf(what, sizeof(what), "HEAD %s", path);
        spt_client_do(c, &hq, r);
        expect_ok(&hq, r, 200, what);
        /* httpd drops "Content-Length: 0" from every HEAD answer (it
         * cannot tell an empty body from none). */
        ck_assert_int_eq(r->content_length, sizes[s] ? sizes[s] : -1);
        ck_assert_int_eq(r->received, 0);
    }
    /* Every byte above moved on wake-ups: none waited for the proxy
     * child's 50 ms tick (a response stream that did would crawl: 100 MiB
     * took 4-17 s through curl before this was checked, 70 ms after). */
    spt_status_t st;
    ck_assert_int_eq(spt_httpd_status(&e.h, &st), 0);
    ck_assert_msg(st.output_stalls == 0,
                  "%s: %ld response stall(s) rescued by the proxy's tick",
                  e.mpm, st.output_stalls);

    /* HEAD of the describing echo: a head, no body. */
    spt_req_t hd = {.method = "HEAD", .path = "/echo?x=1", .body_len = -1,
                    .check = SPT_CHECK_EXACT, .expect = "", .expect_n = 0};
    spt_client_do(c, &hd, r);
    expect_ok(&hd, r, 200, "HEAD /echo");

    /* Several Set-Cookie headers arrive as separate headers, in order. */
    spt_req_t k = {.method = "GET", .path = "/echo?setcookie=3&bodyonly=1",
                   .body_len = -1, .check = SPT_CHECK_EXACT, .expect = "",
                   .expect_n = 0};
    spt_client_do(c, &k, r);
    expect_ok(&k, r, 200, "setcookie=3");
    char ck[8][256];
    ck_assert_int_eq(spt_resp_headers(r, "Set-Cookie", ck, 8), 3);
    ck_assert_str_eq(ck[0], "c1=v1");
    ck_assert_str_eq(ck[1], "c2=v2");
    ck_assert_str_eq(ck[2], "c3=v3");

    /* Status codes, known to httpd or not, each with an exact body (none
     * for 204). */
    static const int codes[] = {200, 201, 202, 204, 299, 400, 404, 410, 418,
                                422, 451, 500, 502, 503, 504, 599};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        snprintf(path, sizeof(path), "/echo?status=%d&bodyonly=1", codes[i]);
        snprintf(what, sizeof(what), "status=%d", codes[i]);
        spt_req_t sq = {.method = "GET", .path = path, .body_len = -1,
                        .check = SPT_CHECK_EXACT, .expect = "",
                        .expect_n = 0};
        spt_client_do(c, &sq, r);
        expect_ok(&sq, r, codes[i], what);
        /* With a body echoed back (204: none). */
        spt_req_t sb = {.method = "POST", .path = path,
                        .body_len = codes[i] == 204 ? 0 : 4000 + codes[i],
                        .seed = (uint64_t)codes[i], .check = SPT_CHECK_ECHO};
        spt_client_do(c, &sb, r);
        expect_ok(&sb, r, codes[i], what);
    }

    free(r);
    spt_client_free(c);
    tm_finish(&e, NULL, NULL);
}
END_TEST

Suite *suite_module(void)
{
    Suite *s = suite_create("module");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 180);
    tcase_add_loop_test(tc, module_basic, 0, 2 * TM_NMPMS);
    suite_add_tcase(s, tc);
    tm_add_load_cases(s);
    tm_add_fail_cases(s);
    tm_add_session_cases(s);
    tm_add_sched_cases(s);
    return s;
}
