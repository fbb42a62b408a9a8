/* test_mark.c - placeholder until the mark suite is written. */
#include "sp_unit.h"

Suite *suite_mark(void)
{
    return suite_create("mark");
}
