/* test_head.c - placeholder until the head suite is written. */
#include "sp_unit.h"

Suite *suite_head(void)
{
    return suite_create("head");
}
