/*
 * The errno behind VMPK_E_SYSTEM: kept per thread for vmpk_last_errno, set
 * by whichever layer saw the failing call.
 */
#include <errno.h>

#include "internal.h"

static __thread int last_errno;

int vmpk__system_error(int err)
{
    last_errno = err;
    return VMPK_E_SYSTEM;
}

int vmpk__os_error(int r)
{
    return r == 0 ? 0 : r == -ENOMEM ? VMPK_E_NOMEM : vmpk__system_error(-r);
}

int vmpk__last_errno(void)
{
    return last_errno;
}
