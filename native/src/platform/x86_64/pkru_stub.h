/*
 * The stub build's PKRU (the Makefile picks this file for cpu.h in the stub
 * and tsan flavours, and links pkru_stub.c): a thread-local variable
 * instead of the register, for valgrind (which cannot run WRPKRU) and for
 * counting the pku backend's work on machines without PKU. The checked
 * writes check the same things as pkru_hw.h's, in C. Such a build protects
 * nothing.
 */
#ifndef VMPK_PKRU_STUB_H
#define VMPK_PKRU_STUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "pkru_layout.h"

/* volatile: the check after a write must read it back for real. */
extern __thread volatile uint32_t vmpk__stub_pkru __attribute__((tls_model("initial-exec")));
static inline uint32_t rdpkru(void) { return vmpk__stub_pkru; }

#define PKRU_STUB_CHECK(cond)                                                              \
    do {                                                                                   \
        if (__builtin_expect(!(cond), 0))                                                  \
            vmpk__pkru_mismatch();                                                         \
    } while (0)

/* The check's view of the core's symbols (pkru_layout.h): the same
 * objects under names of the platform's own types. */
extern struct pkru_meta_view pkru_meta_ __asm__("vmpk__meta") __attribute__((visibility("hidden")));
extern __thread struct pkru_thread_view *pkru_self_ __asm__("vmpk__self")
    __attribute__((tls_model("initial-exec")));

/* The thread's struct, validated as pkru_hw.h's check does. */
static inline struct pkru_thread_view *pkru_stub_thread(void)
{
    struct pkru_thread_view *t = pkru_self_;
    uintptr_t off = (uintptr_t)t - pkru_meta_.threads_lo;
    PKRU_STUB_CHECK(off < pkru_meta_.threads_len && !(off & (PKRU_THREAD_ALIGN - 1)) &&
                    t->self == (void *)&pkru_self_);
    return t;
}

static inline void pkru_write_exact(uint32_t v)
{
    vmpk__stub_pkru = v;
    struct pkru_thread_view *t = pkru_stub_thread();
    PKRU_STUB_CHECK(!(~vmpk__stub_pkru & t->pkru_expect & atomic_load_explicit(&pkru_meta_.owned, memory_order_relaxed)));
}

static inline void *pkru_write_enter(void)
{
    vmpk__stub_pkru = vmpk__stub_pkru & pkru_meta_.not_m;
    struct pkru_thread_view *t = pkru_stub_thread();
    PKRU_STUB_CHECK(!(~vmpk__stub_pkru & t->pkru_expect & atomic_load_explicit(&pkru_meta_.owned_enter, memory_order_relaxed)));
    return t;
}

static inline void *pkru_write_enter_or(uint32_t set, uint32_t *before)
{
    *before = vmpk__stub_pkru;
    vmpk__stub_pkru = (*before | set) & pkru_meta_.not_m;
    struct pkru_thread_view *t = pkru_stub_thread();
    PKRU_STUB_CHECK(!(~vmpk__stub_pkru & t->pkru_expect & atomic_load_explicit(&pkru_meta_.owned_enter, memory_order_relaxed)));
    return t;
}

static inline void pkru_write_boot(uint32_t v, int open)
{
    vmpk__stub_pkru = v;
    PKRU_STUB_CHECK(!(~vmpk__stub_pkru & atomic_load_explicit(open ? &pkru_meta_.boot_open : &pkru_meta_.boot_closed, memory_order_relaxed)));
}

/* After a signal handler: sigreturn's part, done by hand. */
static inline void pkru_after_signal(uint32_t restore)
{
    vmpk__stub_pkru = restore;
}

#endif /* VMPK_PKRU_STUB_H */
