/*
 * The CPU side of vmpk on aarch64: a clock for the key cache, and the PKRU
 * interface of x86_64/cpu.h with nothing behind it. vmpk has no pkeys here
 * (cpu_has_ospke() is 0, so os_pkey_supported() is 0): the mprotect backend
 * and META_MPROTECT metadata are the only modes, and no path that reads or
 * writes PKRU runs. The writes abort should one ever be reached. A pku
 * backend on arm64 would put POR_EL0 here (docs/design.md, "Layers").
 */
#ifndef VMPK_CPU_AARCH64_H
#define VMPK_CPU_AARCH64_H

#include <stdint.h>
#include <stdlib.h>

struct vmpk_thread;

/* A cheap, process-wide ordering of events: the key cache's clock. */
static inline uint64_t cpu_ticks(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}

void vmpk__pkru_mismatch(void) __attribute__((noreturn));

/* All access, as PKRU 0 says: nothing to narrow. */
static inline uint32_t rdpkru(void) { return 0; }

static inline void pkru_write_exact(uint32_t v)
{
    (void)v;
    vmpk__pkru_mismatch();
}

static inline struct vmpk_thread *pkru_write_enter(void)
{
    vmpk__pkru_mismatch();
}

static inline struct vmpk_thread *pkru_write_enter_or(uint32_t set, uint32_t *before)
{
    (void)set, (void)before;
    vmpk__pkru_mismatch();
}

static inline void pkru_after_signal(uint32_t restore)
{
    (void)restore;
}

static inline void pkru_write_boot(uint32_t v, int open)
{
    (void)v, (void)open;
    vmpk__pkru_mismatch();
}

static inline int cpu_has_ospke(void) { return 0; }

#endif /* VMPK_CPU_AARCH64_H */
