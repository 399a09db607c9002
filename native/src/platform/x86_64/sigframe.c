/* See sigframe.h. The layout is the kernel's: fpregs points at a
 * standard-format XSAVE area (legacy 512 bytes, then the 64-byte header whose
 * first word is XSTATE_BV), marked by FP_XSTATE_MAGIC1 in the legacy area's
 * software-reserved bytes. The kernel selftest protection_keys.c does this. */
#define _GNU_SOURCE
#include <string.h>

#include "sigframe.h"

#define XSAVE_HEADER 512      /* XSTATE_BV is its first 8 bytes */
#define SW_RESERVED 464       /* struct _fpx_sw_bytes in the legacy area */
#define FP_XSTATE_MAGIC1 0x46505853u
#define XFEATURE_PKRU 9

/* The offset of PKRU in the frame's XSAVE area, asked of CPUID at every
 * use, not kept: a copy in .bss is ordinary memory, and a stray write of 0
 * there ("unknown") made every handler leave the frame's PKRU alone, so a
 * shootdown narrowed no thread (attack frame-offset). CPUID is once or
 * twice per handler run: about 100 cycles, a VM exit under a hypervisor. */
static uint32_t pkru_offset(void)
{
    uint32_t eax = 0xd, ebx, ecx = XFEATURE_PKRU, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return eax >= 4 ? ebx : 0; /* EAX: component size (4 for PKRU) */
}

void sigframe_init(void)
{
    /* Nothing to keep (see pkru_offset). */
}

static uint8_t *xsave_area(const ucontext_t *uc, uint32_t *off)
{
    uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
    uint32_t magic;
    if (!fp || !(*off = pkru_offset()))
        return NULL;
    memcpy(&magic, fp + SW_RESERVED, sizeof magic);
    return magic == FP_XSTATE_MAGIC1 ? fp : NULL;
}

bool sigframe_pkru(const ucontext_t *uc, uint32_t *pkru)
{
    uint32_t off;
    uint8_t *x = xsave_area(uc, &off);
    if (!x)
        return false;
    memcpy(pkru, x + off, sizeof *pkru);
    return true;
}

bool sigframe_set_pkru(ucontext_t *uc, uint32_t pkru)
{
    uint32_t off;
    uint8_t *x = xsave_area(uc, &off);
    if (!x)
        return false;
    uint64_t bv;
    memcpy(x + off, &pkru, sizeof pkru);
    /* A component whose XSTATE_BV bit is clear is restored to its init value,
     * ignoring what the area holds. */
    memcpy(&bv, x + XSAVE_HEADER, sizeof bv);
    bv |= 1ull << XFEATURE_PKRU;
    memcpy(x + XSAVE_HEADER, &bv, sizeof bv);
    return true;
}

bool sigframe_is_write(const ucontext_t *uc)
{
    return (uc->uc_mcontext.gregs[REG_ERR] >> 1) & 1;
}

bool sigframe_is_fetch(const ucontext_t *uc)
{
    return (uc->uc_mcontext.gregs[REG_ERR] >> 4) & 1;
}

uintptr_t sigframe_ip(const ucontext_t *uc)
{
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
}

void sigframe_resume_at(ucontext_t *uc, uintptr_t ip, uint64_t rax)
{
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
    uc->uc_mcontext.gregs[REG_RAX] = (greg_t)rax;
}

void sigframe_restart_pkru(ucontext_t *uc, uintptr_t ip)
{
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
    uc->uc_mcontext.gregs[REG_RCX] = 0;
    uc->uc_mcontext.gregs[REG_RDX] = 0;
}
