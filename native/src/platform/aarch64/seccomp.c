/*
 * The hardened mode's filter (seccomp_linux.h) is written for the x86-64
 * system call ABI (x86_64/seccomp.c). None exists for aarch64 yet, so
 * hardened mode is unavailable here: vmpk_open({ .harden = 1 }) fails with
 * VMPK_E_SYSTEM and vmpk_last_errno() ENOSYS, and nothing is installed.
 */
#include <errno.h>

#include "seccomp_linux.h"

void vmpk__seccomp_keep_rings(bool keep)
{
    (void)keep;
}

int vmpk__seccomp_install(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          int *listener)
{
    (void)ranges, (void)n, (void)trusted_ip, (void)listener;
    return -ENOSYS;
}

int vmpk__seccomp_program(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          struct sock_filter *out, int max)
{
    (void)ranges, (void)n, (void)trusted_ip, (void)out, (void)max;
    return -ENOSYS;
}

int vmpk__seccomp_state(int *mode, int *filters)
{
    *mode = *filters = -1;
    return -ENOSYS;
}
