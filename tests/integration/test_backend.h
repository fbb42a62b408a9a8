/*
 * test_backend.h - what the backend integration test files share: the
 * assertion helpers around the test client, and the functions that add
 * each file's TCases to the "backend" suite (test_backend.c builds it).
 */
#ifndef TEST_BACKEND_H
#define TEST_BACKEND_H

#include <check.h>
#include <stdint.h>

#include "spc.h"
#include "spt.h"

/* Connect and complete the handshake, or fail the test. */
void tb_connect(spc_t *c, const char *addr, const char *secret,
                uint32_t nstreams);
/* GET uri on stream id, or fail. */
void tb_get(spc_t *c, uint32_t id, const char *uri);
/* Wait for stream id to end or abort, or fail. */
void tb_wait(spc_t *c, uint32_t id, int timeout_ms);
/* Assert stream id was accepted and answered completely with status. */
void tb_expect_ok(spc_t *c, uint32_t id, int status);
/* GET /hello on stream id and check the 13 bytes. */
void tb_hello(spc_t *c, uint32_t id, int timeout_ms);

void tb_add_fail_cases(Suite *s);
void tb_add_peer_cases(Suite *s);
void tb_add_reload_cases(Suite *s);
void tb_add_accept_cases(Suite *s);
void tb_add_abort_done_cases(Suite *s);
void tb_add_sched_cases(Suite *s);
void tb_add_shm_cases(Suite *s);

#endif
