/*
 * The x86 instructions vmpk uses: RDPKRU, WRPKRU and CPUID. Executing the
 * PKRU ones on a CPU without PKU (or with OSPKE off) raises #UD, so callers
 * run them only after cpu_has_ospke() said yes.
 *
 * Built with -DVMPK_PKRU_STUB, PKRU is a thread-local variable instead: for
 * valgrind (which cannot run WRPKRU) and for counting the pku backend's work
 * on machines without PKU. Such a build protects nothing.
 */
#ifndef VMPK_CPU_X86_H
#define VMPK_CPU_X86_H

#include <stdint.h>
#include <stdlib.h>

/* A cheap, process-wide ordering of events: the LRU's clock. */
static inline uint64_t cpu_ticks(void)
{
    return __builtin_ia32_rdtsc();
}

#ifdef VMPK_PKRU_STUB
/* volatile: the check after a write must read it back for real. */
extern __thread volatile uint32_t vmpk__stub_pkru __attribute__((tls_model("initial-exec")));
static inline uint32_t rdpkru(void) { return vmpk__stub_pkru; }
static inline void wrpkru(uint32_t v) { vmpk__stub_pkru = v; }
#else
static inline uint32_t rdpkru(void)
{
    uint32_t eax, edx;
    /* ECX must be 0, else #GP. EDX comes back 0. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(0));
    return eax;
}

static inline void wrpkru(uint32_t v)
{
    /* ECX and EDX must be 0, else #GP. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xef" : : "a"(v), "c"(0), "d"(0) : "memory");
}
#endif

/* Writes PKRU and checks that it holds `v` afterwards (invariant 5): a jump
 * to the WRPKRU with another value in EAX ends the process. */
static inline void wrpkru_checked(uint32_t v)
{
    wrpkru(v);
    if (__builtin_expect(rdpkru() != v, 0))
        abort();
}

/* CPUID.(EAX=7,ECX=0):ECX bit 4: the OS enabled PKU (CR4.PKE). */
static inline int cpu_has_ospke(void)
{
    uint32_t eax = 7, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return (ecx >> 4) & 1;
}

#endif /* VMPK_CPU_X86_H */
