/*
 * sp_integ.c - the runner of the integration suites: real processes, real
 * sockets.  CK_RUN_SUITE / CK_RUN_CASE select as in the unit runner.
 */
#include <check.h>
#include <stdlib.h>

Suite *suite_backend(void);
Suite *suite_module(void);
Suite *suite_poll(void);

int main(void)
{
    SRunner *sr = srunner_create(suite_backend());
    srunner_add_suite(sr, suite_module());
    srunner_add_suite(sr, suite_poll());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
