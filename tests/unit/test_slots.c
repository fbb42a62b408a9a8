/* test_slots.c - placeholder until the slots suite is written. */
#include "sp_unit.h"

Suite *suite_slots(void)
{
    return suite_create("slots");
}
