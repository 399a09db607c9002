/*
 * The x86 instructions vmpk uses: the clock, CPUID, and (pkru_hw.h or
 * pkru_stub.h) RDPKRU and the checked WRPKRUs. Nothing here knows the
 * core's types (pkru_layout.h).
 */
#ifndef VMPK_CPU_X86_H
#define VMPK_CPU_X86_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* A cheap, process-wide ordering of events: the LRU's clock. */
static inline uint64_t cpu_ticks(void)
{
    return __builtin_ia32_rdtsc();
}

/* RDPKRU and the checked WRPKRUs: pkru_hw.h, or pkru_stub.h in the stub
 * flavours; the Makefile names the file (VMPK_PKRU_WRITES), as it picks
 * pkru_stub.c over linux/pkeys_linux.c. */
#include VMPK_PKRU_WRITES

/* CPUID.(EAX=7,ECX=0):ECX bit 4: the OS enabled PKU (CR4.PKE). */
static inline int cpu_has_ospke(void)
{
    uint32_t eax = 7, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (ecx >> 4) & 1;
}

#endif /* VMPK_CPU_X86_H */
