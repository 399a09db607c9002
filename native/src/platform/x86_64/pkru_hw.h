/*
 * PKRU on the CPU: RDPKRU and the checked WRPKRUs, for every build but the
 * stub ones (the Makefile picks this file or pkru_stub.h for cpu.h).
 * Executing them on a CPU without PKU (or with OSPKE off) raises #UD, so
 * callers run them only after cpu_has_ospke() said yes. WRPKRU (ECX and
 * EDX must be 0, else #GP) appears only in the checked writes below.
 */
#ifndef VMPK_PKRU_HW_H
#define VMPK_PKRU_HW_H

#include <stddef.h>
#include <stdint.h>

#include "pkru_layout.h"

static inline uint32_t rdpkru(void)
{
    uint32_t eax, edx;
    /* ECX must be 0, else #GP. EDX comes back 0. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(0));
    return eax;
}

/*
 * Checked PKRU writes (invariant 5). Each WRPKRU in vmpk is one of these,
 * and the check right after it compares PKRU with a value vmpk stored in
 * write-protected meta pages (meta.h) beforehand, read through addresses no
 * register supplies: the meta page RIP-relative, and the thread's struct
 * through its initial-exec TLS pointer, accepted only if it lies in the
 * threads area, on a struct boundary, and names this thread's TLS slot. The
 * check passes when PKRU disables at least what the stored value disables,
 * for the pkeys vmpk owns (V8 changes its own key's bits with pkey_set): a
 * jump onto the WRPKRU with chosen registers gets no more access than vmpk
 * stored, or abort().
 *
 *   pkru_write_exact(v)  v, checked against t->pkru_expect
 *   pkru_write_enter()   PKRU with the meta pkey open, checked against
 *                        t->pkru_expect minus meta's WD: what the thread
 *                        held when it left vmpk, meta now open. Its RDPKRU
 *                        and WRPKRU form a restartable sequence (section
 *                        vmpk_restart): a shootdown handler that lands
 *                        between them sends the thread back to the RDPKRU,
 *                        so it never writes back bits the handler removed.
 *   pkru_write_enter_or(set, &before)
 *                        the same, with the bits of `set` added (access
 *                        taken away) in the restartable part: end's
 *                        narrowing and meta open in one write
 *   pkru_write_boot(v,o) for a thread without a struct yet, and for signal
 *                        handlers: every owned pkey but meta access-
 *                        disabled, meta open (o) or write-disabled
 *
 * Each returns (as void *) or checks the thread's struct it validated; the
 * core reads it as its struct vmpk_thread (pkru_layout.h).
 *
 * A failed check jumps to vmpk__pkru_mismatch (cpu.c): abort().
 */
/* Records the RDPKRU at local label 1 and the WRPKRU at 2 as a restartable
 * sequence (vmpk_restart, read by meta.c): a shootdown landing between
 * them is redone from the RDPKRU. */
#define PKRU_RESTART_ENTRY                                                                 \
    ".pushsection vmpk_restart, \"a\"\n\t"                                                \
    ".balign 4\n\t"                                                                        \
    ".long 1b - .\n\t"                                                                     \
    ".long 2b - .\n\t"                                                                     \
    ".popsection\n\t"

/* After WRPKRU: the thread's struct in rcx, validated; PKRU in eax. The
 * check is a restartable sequence too (section vmpk_recheck): a shootdown
 * handler that narrows this thread's PKRU and expected value after the
 * RDPKRU sends it back to the RDPKRU (ecx = edx = 0), so it compares the
 * new PKRU with the new expected value. */
#define PKRU_CHECK_THREAD(mask)                                                            \
    "3: .byte 0x0f, 0x01, 0xee\n\t" /* RDPKRU: eax = PKRU (ecx is 0) */                      \
    "movq vmpk__self@gottpoff(%%rip), %%rdx\n\t"                                            \
    "movq %%fs:(%%rdx), %%rcx\n\t"                                                          \
    "addq %%fs:0, %%rdx\n\t" /* &vmpk__self */                                              \
    "movq %%rcx, %%rsi\n\t"                                                                 \
    "subq vmpk__meta+%c[lo](%%rip), %%rsi\n\t"                                              \
    "cmpq vmpk__meta+%c[len](%%rip), %%rsi\n\t"                                             \
    "jae vmpk__pkru_mismatch\n\t"                                                           \
    "testl %[align], %%esi\n\t"                                                             \
    "jnz vmpk__pkru_mismatch\n\t"                                                           \
    "cmpq %%rdx, %c[self](%%rcx)\n\t"                                                       \
    "jne vmpk__pkru_mismatch\n\t"                                                           \
    "notl %%eax\n\t"                                                                        \
    "andl %c[expect](%%rcx), %%eax\n\t"                                                     \
    "andl vmpk__meta+%c[" mask "](%%rip), %%eax\n\t"                                        \
    "jnz vmpk__pkru_mismatch\n\t"                                                           \
    "4:\n\t"                                                                                \
    ".pushsection vmpk_recheck, \"a\"\n\t"                                                  \
    ".balign 4\n\t"                                                                         \
    ".long 3b - .\n\t"                                                                      \
    ".long 4b - .\n\t"                                                                      \
    ".popsection\n\t"

#define PKRU_THREAD_OPERANDS                                                               \
    [lo] "i"(offsetof(struct pkru_meta_view, threads_lo)),                                      \
        [len] "i"(offsetof(struct pkru_meta_view, threads_len)),                                \
        [align] "i"(PKRU_THREAD_ALIGN - 1),                                               \
        [self] "i"(offsetof(struct pkru_thread_view, self)),                               \
        [expect] "i"(offsetof(struct pkru_thread_view, pkru_expect)),                           \
        [owned] "i"(offsetof(struct pkru_meta_view, owned)),                                    \
        [owned_enter] "i"(offsetof(struct pkru_meta_view, owned_enter)),                        \
        [not_m] "i"(offsetof(struct pkru_meta_view, not_m))

static inline __attribute__((always_inline)) void pkru_write_exact(uint32_t v)
{
    uintptr_t c = 0, d = 0;
    __asm__ volatile(".byte 0x0f, 0x01, 0xef\n\t" /* WRPKRU: eax = v, ecx = edx = 0 */
                     PKRU_CHECK_THREAD("owned")
                     : "+a"(v), "+c"(c), "+d"(d)
                     : PKRU_THREAD_OPERANDS
                     : "rsi", "memory", "cc");
}

static inline __attribute__((always_inline)) void *pkru_write_enter(void)
{
    uintptr_t c = 0, d = 0;
    uint32_t a;
    __asm__ volatile("1: .byte 0x0f, 0x01, 0xee\n\t" /* RDPKRU */
                     "andl vmpk__meta+%c[not_m](%%rip), %%eax\n\t"
                     "2: .byte 0x0f, 0x01, 0xef\n\t" /* WRPKRU */
                     PKRU_RESTART_ENTRY
                     PKRU_CHECK_THREAD("owned_enter")
                     : "=&a"(a), "+c"(c), "+d"(d)
                     : PKRU_THREAD_OPERANDS
                     : "rsi", "memory", "cc");
    (void)a;
    return (void *)c;
}

/* pkru_write_enter that also sets the bits in `set` (AD, WD: it can only
 * take access away, so it never writes more than the thread's expected
 * PKRU allows, whatever happened since `set` was computed). *before gets
 * the PKRU it started from. `set` stays in a register of its own across a
 * restart, so a shootdown that lands between the RDPKRU and the WRPKRU is
 * redone from the PKRU it left. end narrows its gate's bits in the write
 * that opens meta this way. */
static inline __attribute__((always_inline)) void *
pkru_write_enter_or(uint32_t set, uint32_t *before)
{
    uintptr_t c = 0, d = 0;
    uint32_t a, b;
    __asm__ volatile("1: .byte 0x0f, 0x01, 0xee\n\t" /* RDPKRU */
                     "movl %%eax, %[b]\n\t"
                     "orl %[set], %%eax\n\t"
                     "andl vmpk__meta+%c[not_m](%%rip), %%eax\n\t"
                     "2: .byte 0x0f, 0x01, 0xef\n\t" /* WRPKRU */
                     PKRU_RESTART_ENTRY
                     PKRU_CHECK_THREAD("owned_enter")
                     : "=&a"(a), "+c"(c), "+d"(d), [b] "=&r"(b)
                     : [set] "r"(set), PKRU_THREAD_OPERANDS
                     : "rsi", "memory", "cc");
    (void)a;
    *before = b;
    return (void *)c;
}

/* The check against a field of the meta page, RIP-relative: no register
 * names what the value is compared with. */
#define PKRU_WRITE_BOOT(v, field)                                                          \
    do {                                                                                   \
        uintptr_t c_ = 0, d_ = 0;                                                          \
        __asm__ volatile(".byte 0x0f, 0x01, 0xef\n\t" /* WRPKRU */                         \
                         ".byte 0x0f, 0x01, 0xee\n\t" /* RDPKRU */                         \
                         "notl %%eax\n\t"                                                  \
                         "andl vmpk__meta+%c[need](%%rip), %%eax\n\t"                      \
                         "jnz vmpk__pkru_mismatch\n\t"                                     \
                         : "+a"(v), "+c"(c_), "+d"(d_)                                     \
                         : [need] "i"(offsetof(struct pkru_meta_view, field))                   \
                         : "memory", "cc");                                                \
    } while (0)

static inline __attribute__((always_inline)) void pkru_write_boot(uint32_t v, int open)
{
    if (open)
        PKRU_WRITE_BOOT(v, boot_open);
    else
        PKRU_WRITE_BOOT(v, boot_closed);
}

/* After a signal handler: sigreturn restores PKRU from the frame. */
static inline void pkru_after_signal(uint32_t restore)
{
    (void)restore;
}

#endif /* VMPK_PKRU_HW_H */
