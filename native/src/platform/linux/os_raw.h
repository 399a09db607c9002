/* What os_linux.c and the pkey files (pkeys_linux.c, or the stub build's
 * <cpu>/pkru_stub.c) share: the raw call through vmpk's own instruction,
 * and the counters. Private to the platform layer. */
#ifndef VMPK_OS_RAW_H
#define VMPK_OS_RAW_H

#include <stdatomic.h>
#include <stdint.h>

#include "os.h"
#include "rawsyscall.h"

/* Every memory call goes through vmpk's own syscall instruction: the
 * hardened mode's filter lets only that one touch vmpk's memory. */
#define RAW(nr, a, b, c, d, e, f)                                                          \
    vmpk__syscall6((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* The counters at the start of the core's struct (os.h). */
static inline struct os_counters *os_counters_of(struct runtime_counters *c)
{
    return (struct os_counters *)(void *)c;
}

enum os_call { OS_CALL, OS_MPROTECT, OS_PKEY_MPROTECT };

/* One counted system call, of kind `what`. */
static inline void count(struct runtime_counters *rc, enum os_call what)
{
    struct os_counters *c = os_counters_of(rc);
    if (!c)
        return;
    atomic_fetch_add_explicit(&c->syscalls, 1, memory_order_relaxed);
    if (what == OS_MPROTECT)
        atomic_fetch_add_explicit(&c->mprotect_calls, 1, memory_order_relaxed);
    else if (what == OS_PKEY_MPROTECT)
        atomic_fetch_add_explicit(&c->pkey_mprotect_calls, 1, memory_order_relaxed);
}

/* A metadata switch (os_mprotect_meta): counted apart from syscalls. */
static inline void count_meta(struct runtime_counters *rc)
{
    struct os_counters *c = os_counters_of(rc);
    if (c)
        atomic_fetch_add_explicit(&c->meta_mprotect_calls, 1, memory_order_relaxed);
}

/* The raw calls return -errno themselves; these results fit an int. */
static inline int result(long r)
{
    return (int)r;
}

#endif /* VMPK_OS_RAW_H */
