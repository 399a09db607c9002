/* The pkey system calls, counted (os.h). The stub build links
 * <cpu>/pkru_stub.c in place of this file (the Makefile picks). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "cpu.h"
#include "os.h"
#include "os_raw.h"
#include "sigframe.h"

/* CPUID OSPKE first, so no PKRU instruction or pkey call runs where the CPU
 * or the kernel lacks support; then a pkey_alloc that must succeed. Decided
 * once: later, vmpk itself may hold every key there is. */
static int detect_pkeys(void)
{
    if (!cpu_has_ospke())
        return 0;
    int k = (int)RAW(SYS_pkey_alloc, 0, 0, 0, 0, 0, 0);
    if (k < 0)
        return 0; /* EINVAL (no PKU), ENOSPC, ENOSYS, EPERM: not available */
    RAW(SYS_pkey_free, k, 0, 0, 0, 0, 0); /* fresh and never used: safe to free */
    return 1;
}

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int pkeys_supported;

static void detect(void)
{
    pkeys_supported = detect_pkeys();
}

int os_pkey_supported(void)
{
    pthread_once(&detect_once, detect);
    return pkeys_supported;
}

int os_pkeys_stubbed(void)
{
    return 0;
}

bool os_frame_pkru(void *ctx, uint32_t at_entry, uint32_t *pkru)
{
    (void)at_entry;
    return sigframe_pkru(ctx, pkru);
}

void os_frame_set_pkru(void *ctx, uint32_t *at_entry, uint32_t pkru)
{
    (void)at_entry;
    sigframe_set_pkru(ctx, pkru);
}

int os_pkey_alloc(struct runtime_counters *c)
{
    count(c, OS_CALL);
    /* The rights apply to the calling thread only: closed, like every
     * other thread's bits for a key vmpk has not opened. */
    return result(RAW(SYS_pkey_alloc, 0, PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE, 0, 0, 0, 0));
}

int os_pkey_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot, int pkey)
{
    count(c, OS_PKEY_MPROTECT);
    return result(RAW(SYS_pkey_mprotect, addr, len, prot, pkey, 0, 0));
}

int os_pkey_alloc_readonly(void)
{
    return result(RAW(SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE, 0, 0, 0, 0));
}

int os_commit_pkey(struct runtime_counters *c, void *addr, size_t len, int pkey)
{
    count(c, OS_CALL);
    return result(RAW(SYS_pkey_mprotect, addr, len, PROT_READ | PROT_WRITE, pkey, 0, 0));
}
