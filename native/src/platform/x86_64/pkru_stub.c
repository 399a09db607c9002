/* The stub build's pkeys (the Makefile links this file in place of
 * linux/pkeys_linux.c): PKRU is a thread-local variable (pkru_stub.h), pkeys are
 * numbers handed out in order, and tagging a page is a plain mprotect. For
 * valgrind (which cannot run WRPKRU) and for counting the pku backend's
 * work on machines without PKU. Such a build protects nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "pkru_stub.h"
#include "os.h"
#include "os_raw.h"

__thread volatile uint32_t vmpk__stub_pkru __attribute__((tls_model("initial-exec"))) =
    0x55555554; /* Linux's init value */
static _Atomic int stub_next_pkey = 1;

int os_pkey_supported(void) { return 1; }

int os_pkeys_stubbed(void) { return 1; }

/* The frame's PKRU is the variable's at the handler's entry (os.h). */
bool os_frame_pkru(void *ctx, uint32_t at_entry, uint32_t *pkru)
{
    (void)ctx;
    *pkru = at_entry;
    return true;
}

void os_frame_set_pkru(void *ctx, uint32_t *at_entry, uint32_t pkru)
{
    (void)ctx;
    *at_entry = pkru;
}

int os_pkey_alloc(struct runtime_counters *c)
{
    count(c, OS_CALL);
    int k = atomic_fetch_add(&stub_next_pkey, 1);
    if (k >= 16)
        return -ENOSPC;
    vmpk__stub_pkru |= 3u << (2 * k); /* as the kernel does with the rights */
    return k;
}

int os_pkey_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot, int pkey)
{
    (void)pkey;
    count(c, OS_PKEY_MPROTECT);
    return result(RAW(SYS_mprotect, addr, len, prot, 0, 0, 0));
}

int os_pkey_alloc_readonly(void)
{
    int k = atomic_fetch_add(&stub_next_pkey, 1);
    if (k >= 16)
        return -ENOSPC;
    vmpk__stub_pkru = (vmpk__stub_pkru & ~(3u << (2 * k))) | 2u << (2 * k);
    return k;
}

int os_commit_pkey(struct runtime_counters *c, void *addr, size_t len, int pkey)
{
    (void)pkey;
    count(c, OS_CALL);
    return result(RAW(SYS_mprotect, addr, len, PROT_READ | PROT_WRITE, 0, 0, 0));
}
