/*
 * The interrupted context in a SIGSEGV handler (<arch>/sigframe.c): its
 * PKRU (x86-64: kept in the signal frame's XSAVE area and restored by
 * sigreturn; false where the CPU has none), whether the access was a write,
 * and its instruction pointer.
 */
#ifndef VMPK_SIGFRAME_H
#define VMPK_SIGFRAME_H

#include <stdbool.h>
#include <stdint.h>
#include <ucontext.h>

/* Finds where PKRU sits in an XSAVE area. Call once, where PKU is enabled. */
void sigframe_init(void);
/* The PKRU the interrupted code had, or false when the frame has none. */
bool sigframe_pkru(const ucontext_t *uc, uint32_t *pkru);
/* Makes sigreturn restore `pkru` into the interrupted thread. */
bool sigframe_set_pkru(ucontext_t *uc, uint32_t pkru);
/* The page-fault error code says write (bit 1). */
bool sigframe_is_write(const ucontext_t *uc);
/* The page-fault error code says instruction fetch (bit 4). */
bool sigframe_is_fetch(const ucontext_t *uc);
uintptr_t sigframe_ip(const ucontext_t *uc);
/* Resumes at ip with rax set: how a probe's fault becomes a return value. */
void sigframe_resume_at(ucontext_t *uc, uintptr_t ip, uint64_t rax);
/* Resumes at an RDPKRU with rcx = rdx = 0, as RDPKRU and WRPKRU need. */
void sigframe_restart_pkru(ucontext_t *uc, uintptr_t ip);

#endif /* VMPK_SIGFRAME_H */
