/*
 * test_module.h - what the module's end-to-end test files share: one
 * backend plus one apache2 with the module, started and checked together,
 * and a multi-threaded keep-alive load generator.  test_module.c builds the
 * "module" suite; each file adds its TCases.
 */
#ifndef TEST_MODULE_H
#define TEST_MODULE_H

#include <check.h>
#include <pthread.h>

#include "spt.h"
#include "spt_httpd.h"

/* Every test runs once per MPM: _i indexes this (tcase_add_loop_test). */
extern const char *const tm_mpms[];
#define TM_NMPMS 2

typedef struct tm_env {
    spt_backend_t b;
    spt_httpd_t h;
    const char *mpm;
} tm_env_t;

/* How httpd reaches the backend. */
enum { TM_UNIX = 0, TM_TCP = 1, TM_SHM = 2 };
extern const char *const tm_transports[]; /* "unix", "tcp", "shm" */

/* Start a backend (backend_extra appended to its configuration; as root
 * with User/Group www-data so httpd's proxy child, which runs as
 * www-data, may use its unix sockets), then httpd with backend "app" at
 * the backend's address for transport (TM_*), params on the
 * SlotProxyBackend line and httpd_extra appended; waits for `links` links. */
void tm_start(tm_env_t *e, int mpm, const char *backend_extra, int transport,
              const char *params, const char *httpd_extra, int links);

/* Stop both and check both logs (allowed tags, NULL-terminated). */
void tm_finish(tm_env_t *e, const char *const *httpd_allowed,
               const char *const *backend_allowed);

/* The tcp port of the backend's tcp listener. */
int tm_backend_port(const tm_env_t *e);

/* ---- load ----------------------------------------------------------------
 *
 * nthreads threads, each with its own keep-alive client, loop over three
 * requests (GET /hello, a POST echoed back, a GET size=) and check every
 * answer byte-exact, until tm_load_stop().  Failures are counted, and
 * separately those of requests started after tm_load_mark(). */

typedef struct tm_load tm_load_t;

tm_load_t *tm_load_start(const spt_httpd_t *h, int nthreads);
/* Threads that completed at least one request (each of them, ok or not). */
int tm_load_started(tm_load_t *l);
void tm_load_mark(tm_load_t *l);
/* Stop and join the threads. */
void tm_load_stop(tm_load_t *l);
long tm_load_ok(const tm_load_t *l);
long tm_load_failed(const tm_load_t *l);
long tm_load_failed_after_mark(const tm_load_t *l);
long tm_load_ok_after_mark(const tm_load_t *l);
/* ms from the mark to the first success of a request started after it
 * (-1: none). */
double tm_load_first_ok_after_mark(const tm_load_t *l);
const char *tm_load_first_error(const tm_load_t *l);
const char *tm_load_first_error_after_mark(const tm_load_t *l);
void tm_load_free(tm_load_t *l);

void tm_add_load_cases(Suite *s);
void tm_add_fail_cases(Suite *s);
void tm_add_session_cases(Suite *s);
void tm_add_sched_cases(Suite *s);

#endif
