/* test_ring.c - placeholder until the ring suite is written. */
#include "sp_unit.h"

Suite *suite_ring(void)
{
    return suite_create("ring");
}
