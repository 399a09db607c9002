/*
 * See sigframe.h. aarch64 Linux: the interrupted pc and x0 in
 * uc_mcontext, and the fault's syndrome in the ESR record of the frame's
 * extension area (__reserved, records tagged by magic). No PKRU: its
 * functions answer false and the handlers leave the frame's permissions be.
 */
#define _GNU_SOURCE
#include <asm/sigcontext.h>
#include <string.h>

#include "sigframe.h"

#define ESR_EC(esr) (((esr) >> 26) & 0x3f)
#define EC_DABT_LOW 0x24 /* data abort from EL0 */
#define EC_IABT_LOW 0x20 /* instruction abort from EL0 */
#define ESR_WNR (1u << 6) /* data abort: write, not read */

void sigframe_init(void) {}

/* The ESR record, or 0 when the frame has none. */
static uint64_t esr_of(const ucontext_t *uc)
{
    const uint8_t *p = (const uint8_t *)uc->uc_mcontext.__reserved;
    const uint8_t *end = p + sizeof uc->uc_mcontext.__reserved;
    while (p + sizeof(struct _aarch64_ctx) <= end) {
        struct _aarch64_ctx h;
        memcpy(&h, p, sizeof h);
        if (h.magic == 0 || h.size < sizeof h)
            return 0;
        if (h.magic == ESR_MAGIC) {
            struct esr_context e;
            memcpy(&e, p, sizeof e);
            return e.esr;
        }
        p += h.size;
    }
    return 0;
}

bool sigframe_pkru(const ucontext_t *uc, uint32_t *pkru)
{
    (void)uc, (void)pkru;
    return false;
}

bool sigframe_set_pkru(ucontext_t *uc, uint32_t pkru)
{
    (void)uc, (void)pkru;
    return false;
}

/* Without an ESR record (qemu-user's frames have none), the faulting
 * instruction says it: in the load/store class, bit 22 is L (load) for the
 * single-register, pair and exclusive forms; an atomic (LDADD, SWP...)
 * writes whatever that bit says. */
static bool insn_writes(uintptr_t pc)
{
    uint32_t i;
    memcpy(&i, (const void *)pc, sizeof i);
    if ((i & 0x0a000000) != 0x08000000)
        return false; /* not a load or store */
    bool atomic = (i & 0x3b200c00) == 0x38200000;
    return atomic || !(i & (1u << 22));
}

bool sigframe_is_write(const ucontext_t *uc)
{
    uint64_t esr = esr_of(uc);
    if (!esr)
        return insn_writes(uc->uc_mcontext.pc);
    return ESR_EC(esr) == EC_DABT_LOW && (esr & ESR_WNR);
}

bool sigframe_is_fetch(const ucontext_t *uc)
{
    return ESR_EC(esr_of(uc)) == EC_IABT_LOW;
}

uintptr_t sigframe_ip(const ucontext_t *uc)
{
    return (uintptr_t)uc->uc_mcontext.pc;
}

void sigframe_resume_at(ucontext_t *uc, uintptr_t ip, uint64_t rax)
{
    uc->uc_mcontext.pc = ip;
    uc->uc_mcontext.regs[0] = rax;
}

void sigframe_restart_pkru(ucontext_t *uc, uintptr_t ip)
{
    uc->uc_mcontext.pc = ip;
}
