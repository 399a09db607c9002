/* See cpu.h: reached only if a PKRU path ran where there is no PKRU. */
#include "cpu.h"

void vmpk__pkru_mismatch(void)
{
    abort();
}
