/*
 * sp_unit.c - the one runner for every unit suite (tests/unit/test_*.c).
 *
 * Run one suite with CK_RUN_SUITE=name (make check SUITE=name), one test
 * case with CK_RUN_CASE.  Check forks each test, so a crash fails that test
 * only.
 */
#include "sp_unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

void *sp_test_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

void sp_test_unshare(void *p, size_t size)
{
    munmap(p, size);
}

void sp_test_wait_ok(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "child %d died (signal %d)", (int)pid,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ck_assert_msg(WEXITSTATUS(status) == 0, "child %d exited %d", (int)pid,
                  WEXITSTATUS(status));
}

static uint64_t rng_state;

void sp_test_rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
}

uint32_t sp_test_rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

uint32_t sp_test_rng_below(uint32_t n)
{
    return n ? sp_test_rng() % n : 0;
}

uint8_t *sp_test_dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

int sp_test_sleeps_on_futex(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] != 'S')
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n == 0 || strcmp(buf, "0") == 0)
        return 1;
    return strstr(buf, "futex") != NULL;
}

int main(void)
{
    SRunner *sr = srunner_create(suite_crc());
    srunner_add_suite(sr, suite_seghdr());
    srunner_add_suite(sr, suite_mark());
    srunner_add_suite(sr, suite_ring());
    srunner_add_suite(sr, suite_ring_extra());
    srunner_add_suite(sr, suite_slots());
    srunner_add_suite(sr, suite_pool());
    srunner_add_suite(sr, suite_sess());
    srunner_add_suite(sr, suite_frame());
    srunner_add_suite(sr, suite_head());
    srunner_add_suite(sr, suite_net());
    srunner_add_suite(sr, suite_link());
    srunner_add_suite(sr, suite_shmlink());
    srunner_add_suite(sr, suite_config());
    srunner_add_suite(sr, suite_apps());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
