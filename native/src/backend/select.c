/*
 * The selection table: which backend vmpk_open gets for
 * VMPK_BACKEND_AUTO, _PKU and _MPROTECT, and for the VMPK_BACKEND
 * environment variable. Every backend is built for every target; one the
 * machine lacks (pku without PKU, or on aarch64) is skipped by AUTO and
 * refuses by name with VMPK_E_UNSUPPORTED from its setup. The references
 * here are strong: they are what pulls each backend out of libvmpk.a.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "internal.h"
#include "os.h"

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
    switch (asked) {
    case VMPK_BACKEND_AUTO:
        *out = os_pkey_supported() ? &vmpk__backend_pku : &vmpk__backend_mprotect;
        return 0;
    case VMPK_BACKEND_PKU:
        *out = &vmpk__backend_pku;
        return 0;
    case VMPK_BACKEND_MPROTECT:
        *out = &vmpk__backend_mprotect;
        return 0;
    default:
        return VMPK_E_INVALID;
    }
}
