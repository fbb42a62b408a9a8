/*
 * sp_unit.h - the suites of the unit test runner (sp_unit.c) and helpers
 * shared by the suites.  One suite per common/ file.
 */
#ifndef SP_UNIT_H
#define SP_UNIT_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

Suite *suite_crc(void);
Suite *suite_seghdr(void);
Suite *suite_mark(void);
Suite *suite_ring(void);
Suite *suite_ring_extra(void);
Suite *suite_slots(void);
Suite *suite_pool(void);
Suite *suite_sess(void);
Suite *suite_frame(void);
Suite *suite_head(void);
Suite *suite_config(void);
Suite *suite_apps(void);
Suite *suite_net(void);
Suite *suite_link(void);
Suite *suite_shmlink(void);

/* Anonymous MAP_SHARED memory that survives fork (test helper). */
void *sp_test_shared(size_t size);
void sp_test_unshare(void *p, size_t size);

/* 1 if pid is asleep in the kernel on a futex: state S, and /proc/PID/wchan
 * names a futex function where the kernel shows it ("0" or unreadable when
 * it hides it: then the state alone counts). */
int sp_test_sleeps_on_futex(pid_t pid);

/* Reproducible test data: xorshift64*, seeded by each test. */
void sp_test_rng_seed(uint64_t seed);
uint32_t sp_test_rng(void);
uint32_t sp_test_rng_below(uint32_t n); /* 0 when n is 0 */

/* A heap copy of exactly n bytes (ASan flags any access past it). */
uint8_t *sp_test_dup_exact(const void *p, size_t n);

/* Wait for pid; fail the test unless it exited with status 0. */
void sp_test_wait_ok(pid_t pid);

#endif
