/* Linux system calls, counted. See os.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu_x86.h"
#include "internal.h"
#include "os.h"

static void count(struct runtime_counters *c, _Atomic uint64_t *which)
{
    if (!c)
        return;
    atomic_fetch_add_explicit(&c->syscalls, 1, memory_order_relaxed);
    if (which)
        atomic_fetch_add_explicit(which, 1, memory_order_relaxed);
}

static int result(long r)
{
    return r < 0 ? -errno : (int)r;
}

#ifdef VMPK_PKRU_STUB
__thread volatile uint32_t vmpk__stub_pkru __attribute__((tls_model("initial-exec"))) =
    0x55555554; /* Linux's init value */
static _Atomic int stub_next_pkey = 1;

int os_pkey_supported(void) { return 1; }

int os_pkey_alloc(struct runtime_counters *c)
{
    count(c, NULL);
    int k = atomic_fetch_add(&stub_next_pkey, 1);
    if (k >= 16)
        return -ENOSPC;
    vmpk__stub_pkru |= 3u << (2 * k); /* as the kernel does with the rights */
    return k;
}

int os_pkey_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot, int pkey)
{
    (void)pkey;
    count(c, c ? &c->pkey_mprotect_calls : NULL);
    return result(mprotect(addr, len, prot));
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
    count(c, NULL);
    return result(mprotect(addr, len, PROT_READ | PROT_WRITE));
}
#else
/* CPUID OSPKE first, so no PKRU instruction or pkey call runs where the CPU
 * or the kernel lacks support; then a pkey_alloc that must succeed. Decided
 * once: later, vmpk itself may hold every key there is. */
static int detect_pkeys(void)
{
    if (!cpu_has_ospke())
        return 0;
    int k = (int)syscall(SYS_pkey_alloc, 0, 0);
    if (k < 0)
        return 0; /* EINVAL (no PKU), ENOSPC, ENOSYS, EPERM: not available */
    syscall(SYS_pkey_free, k); /* fresh and never used: safe to free */
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

int os_pkey_alloc(struct runtime_counters *c)
{
    count(c, NULL);
    /* The rights apply to the calling thread only: closed, like every
     * other thread's bits for a key vmpk has not opened. */
    return result(syscall(SYS_pkey_alloc, 0, PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE));
}

int os_pkey_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot, int pkey)
{
    count(c, c ? &c->pkey_mprotect_calls : NULL);
    return result(syscall(SYS_pkey_mprotect, addr, len, prot, pkey));
}

int os_pkey_alloc_readonly(void)
{
    return result(syscall(SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE));
}

int os_commit_pkey(struct runtime_counters *c, void *addr, size_t len, int pkey)
{
    count(c, NULL);
    return result(syscall(SYS_pkey_mprotect, addr, len, PROT_READ | PROT_WRITE, pkey));
}
#endif

int os_mprotect_meta(struct runtime_counters *c, void *addr, size_t len, int prot)
{
    /* Counted while writable: after the call when it opens, before when
     * it closes. */
    if (c && !(prot & PROT_WRITE))
        atomic_fetch_add_explicit(&c->meta_mprotect_calls, 1, memory_order_relaxed);
    int r = result(mprotect(addr, len, prot));
    if (c && (prot & PROT_WRITE) && r == 0)
        atomic_fetch_add_explicit(&c->meta_mprotect_calls, 1, memory_order_relaxed);
    return r;
}

int os_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot)
{
    count(c, c ? &c->mprotect_calls : NULL);
    return result(mprotect(addr, len, prot));
}

void *os_reserve(struct runtime_counters *c, size_t len)
{
    count(c, NULL);
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int os_commit(struct runtime_counters *c, void *addr, size_t len)
{
    count(c, NULL);
    return result(mprotect(addr, len, PROT_READ | PROT_WRITE));
}

int os_release(struct runtime_counters *c, void *addr, size_t len)
{
    count(c, NULL);
    return result(munmap(addr, len));
}

int os_discard(struct runtime_counters *c, void *addr, size_t len)
{
    count(c, NULL);
    return result(madvise(addr, len, MADV_DONTNEED));
}

pid_t os_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

size_t os_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}
