/*
 * test_backend.c - slotproxy-backend through its real network interface,
 * with the test client (spc.c) over real unix and tcp sockets.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_error.h"
#include "spc.h"
#include "spt.h"

START_TEST(backend_hello)
{
    spt_backend_t b;
    spt_backend_start(&b, NULL);
    const char *addrs[2] = {b.unix_addr, b.tcp_addr};
    for (int k = 0; k < 2; k++) {
        spc_t c;
        char err[256];
        ck_assert_msg(spc_connect(&c, addrs[k], NULL, 4, 5000, err,
                                  sizeof(err)) == 0,
                      "%s: %s", addrs[k], err);
        c.streams[0].keep_body = 1;
        ck_assert_int_eq(spc_request(&c, 0, "GET", "/hello", NULL, 0, 0), 0);
        ck_assert_int_eq(spc_wait(&c, 0, 5000), 0);
        spc_stream_t *s = &c.streams[0];
        ck_assert(s->accepted);
        ck_assert(s->ended);
        ck_assert_int_eq(s->status, 200);
        ck_assert_uint_eq(s->body_len, 13);
        ck_assert(memcmp(s->body, "Hello, world\n", 13) == 0);
        ck_assert_str_eq(spc_header(s, "Content-Length"), "13");
        spc_close(&c);
    }
    ck_assert_int_eq(spt_backend_stop(&b), 0);
}
END_TEST

Suite *suite_backend(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("backend");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, backend_hello);
    suite_add_tcase(s, tc);
    return s;
}
