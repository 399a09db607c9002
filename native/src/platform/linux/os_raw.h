/* What os_linux.c and the pkey files (pkeys_linux.c, or the stub build's
 * <cpu>/pkru_stub.c) share: the raw call through vmpk's own instruction,
 * and the counters. Private to the platform layer. */
#ifndef VMPK_OS_RAW_H
#define VMPK_OS_RAW_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"
#include "rawsyscall.h"

/* Every memory call goes through vmpk's own syscall instruction: the
 * hardened mode's filter lets only that one touch vmpk's memory. */
#define RAW(nr, a, b, c, d, e, f)                                                          \
    vmpk__syscall6((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static inline void count(struct runtime_counters *c, _Atomic uint64_t *which)
{
    if (!c)
        return;
    atomic_fetch_add_explicit(&c->syscalls, 1, memory_order_relaxed);
    if (which)
        atomic_fetch_add_explicit(which, 1, memory_order_relaxed);
}

/* The raw calls return -errno themselves; these results fit an int. */
static inline int result(long r)
{
    return (int)r;
}

#endif /* VMPK_OS_RAW_H */
