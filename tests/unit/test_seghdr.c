/*
 * test_seghdr.c - segment header stamping and every refusal of attach.
 */
#include "sp_unit.h"

#include <string.h>

#include "sp_error.h"
#include "sp_seghdr.h"

typedef struct kind_hdr {
    sp_seghdr_t h;
    uint32_t geometry[4];
} kind_hdr_t;

START_TEST(seghdr_roundtrip_and_refusals)
{
    kind_hdr_t k;
    memset(&k, 0, sizeof(k));
    k.geometry[0] = 7;
    sp_seghdr_stamp(&k.h, SP_MAGIC_RING, 3, sizeof(k), 4096, 42);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3,
                                     sizeof(k), 42), 0);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3,
                                     sizeof(k), 0), 0);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 10, SP_MAGIC_RING, 3, sizeof(k),
                                     0), SP_EMSGSIZE);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4000, SP_MAGIC_RING, 3, sizeof(k),
                                     0), SP_EMSGSIZE);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_SLOTS, 3,
                                     sizeof(k), 0), SP_EBADMAGIC);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 4, sizeof(k),
                                     0), SP_EBADVER);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3, 48, 0),
                     SP_EBADVER);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3, sizeof(k),
                                     41), SP_ESTALE);
    /* A flipped bit in the kind's own part of the header is caught. */
    k.geometry[0] = 8;
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3, sizeof(k),
                                     0), SP_ECHECKSUM);
    sp_seghdr_seal(&k.h);
    ck_assert_int_eq(sp_seghdr_check(&k.h, 4096, SP_MAGIC_RING, 3, sizeof(k),
                                     0), 0);
}
END_TEST

Suite *suite_seghdr(void)
{
    Suite *s = suite_create("seghdr");
    TCase *tc = tcase_create("seghdr");
    tcase_add_test(tc, seghdr_roundtrip_and_refusals);
    suite_add_tcase(s, tc);
    return s;
}
