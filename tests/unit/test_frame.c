/* test_frame.c - placeholder until the frame suite is written. */
#include "sp_unit.h"

Suite *suite_frame(void)
{
    return suite_create("frame");
}
