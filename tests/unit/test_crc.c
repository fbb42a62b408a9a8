/*
 * test_crc.c - CRC-32C against the published check values (RFC 3720 B.4).
 */
#include "sp_unit.h"

#include <string.h>

#include "sp_crc.h"

START_TEST(crc_check_values)
{
    ck_assert_uint_eq(sp_crc32c(0, "123456789", 9), 0xE3069283u);
    unsigned char zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        inc[i] = (unsigned char)i;
    ck_assert_uint_eq(sp_crc32c(0, zeros, 32), 0x8A9136AAu);
    ck_assert_uint_eq(sp_crc32c(0, ones, 32), 0x62A8AB43u);
    ck_assert_uint_eq(sp_crc32c(0, inc, 32), 0x46DD794Eu);
}
END_TEST

START_TEST(crc_incremental)
{
    const char *s = "the quick brown fox jumps over the lazy dog, twice over";
    size_t n = strlen(s);
    uint32_t whole = sp_crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t c = sp_crc32c(0, s, cut);
        ck_assert_uint_eq(sp_crc32c(c, s + cut, n - cut), whole);
    }
}
END_TEST

Suite *suite_crc(void)
{
    Suite *s = suite_create("crc");
    TCase *tc = tcase_create("crc");
    tcase_add_test(tc, crc_check_values);
    tcase_add_test(tc, crc_incremental);
    suite_add_tcase(s, tc);
    return s;
}
