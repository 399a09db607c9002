/*
 * The selection table: which backend vmpk_open gets for
 * VMPK_BACKEND_AUTO, _PKU and _MPROTECT, and for the VMPK_BACKEND
 * environment variable. A backend the build leaves out (the Makefile picks
 * the backend files of the target: no pku on aarch64) is a weak reference
 * that stays NULL: asked for by name, it is VMPK_E_UNSUPPORTED.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os.h"

#pragma weak vmpk__backend_pku

int vmpk__backend_choose(int asked, const struct backend **out)
{
    if (asked == VMPK_BACKEND_AUTO) {
        /* The one setting the test suites and users share. */
        const char *env = getenv("VMPK_BACKEND");
        if (env && *env && strcmp(env, "auto") != 0) {
            if (strcmp(env, "pku") == 0)
                asked = VMPK_BACKEND_PKU;
            else if (strcmp(env, "mprotect") == 0)
                asked = VMPK_BACKEND_MPROTECT;
            else
                return VMPK_E_INVALID;
        }
    }
    const struct backend *pku = &vmpk__backend_pku;
    switch (asked) {
    case VMPK_BACKEND_AUTO:
        *out = pku && os_pkey_supported() ? pku : &vmpk__backend_mprotect;
        return 0;
    case VMPK_BACKEND_PKU:
        if (!pku)
            return VMPK_E_UNSUPPORTED;
        *out = pku;
        return 0;
    case VMPK_BACKEND_MPROTECT:
        *out = &vmpk__backend_mprotect;
        return 0;
    default:
        return VMPK_E_INVALID;
    }
}
