/*
 * What the checked PKRU writes (pkru_hw.h, pkru_stub.h) read, in the
 * platform's own terms. The core lays its structs out to match: its meta
 * page (meta.h) begins with the fields of struct pkru_meta_view and its
 * thread struct (internal.h) with those of struct pkru_thread_view, and
 * enter.h asserts every offset. So the platform names no core type and
 * includes no core header; it reads two symbols the core defines:
 *
 *   vmpk__meta   the meta page, write-protected (reached RIP-relative)
 *   vmpk__self   the calling thread's struct (initial-exec TLS)
 *
 * may_alias: the stub's C checks read what the core stored through its own
 * struct types; the compiler must not assume the two never overlap.
 */
#ifndef VMPK_PKRU_LAYOUT_H
#define VMPK_PKRU_LAYOUT_H

#include <stdint.h>

struct __attribute__((may_alias)) pkru_meta_view {
    _Atomic uint32_t owned;       /* PKRU bits (both) of every pkey vmpk owns */
    _Atomic uint32_t owned_enter; /* owned without the meta pkey's WD bit */
    uint32_t not_m;               /* ~(both bits of the meta pkey) */
    _Atomic uint32_t boot_open;   /* AD of every owned pkey but meta */
    _Atomic uint32_t boot_closed; /* the same and meta's WD */
    uint32_t m_bits, m_wd;        /* the meta pkey's bits (not read here) */
    uintptr_t threads_lo;         /* where a valid thread struct may be */
    uintptr_t threads_len;
};

struct __attribute__((may_alias)) pkru_thread_view {
    void *self;           /* &vmpk__self of its own thread */
    uint32_t pkru_expect; /* PKRU this thread should hold (vmpk's bits) */
};

/* Thread structs lie on these boundaries in the threads area (a power of
 * two: the check tests alignment with one `test`). */
#define PKRU_THREAD_ALIGN 2048u

/* A failed check jumps here (cpu.c): abort(). */
void vmpk__pkru_mismatch(void) __attribute__((noreturn));

#endif /* VMPK_PKRU_LAYOUT_H */
