/*
 * Entering and leaving vmpk (invariant 6): every public call that changes
 * vmpk's state opens the meta pages for writing first and closes them before
 * it returns, on every path (META_MPROTECT leaves open all that calls write,
 * meta.h: nothing to do there). On META_PKEY that is one checked WRPKRU in
 * (meta open) and one out, which also sets the bits a gate asked for
 * (t->sync_*). The pku backend's gate hit paths fold their bits into these
 * two writes themselves (backend_pku.c, meta_close_pkey). Signal handlers,
 * which start with meta access-disabled, use the handler pair at the end.
 */
#ifndef VMPK_ENTER_H
#define VMPK_ENTER_H

#include "cpu.h"
#include "internal.h"
#include "meta.h"
#include "pkru.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The checked writes read the core's meta page and thread struct through
 * the platform's view of them (pkru_layout.h, on x86-64): the places must
 * agree. */
#ifdef VMPK_PKRU_LAYOUT_H /* x86-64: aarch64 has no checked writes to feed */
#define SAME_PLACE(core, view, f)                                                          \
    _Static_assert(offsetof(core, f) == offsetof(view, f) &&                               \
                       sizeof(((core *)0)->f) == sizeof(((view *)0)->f),                   \
                   #f " differs from pkru_layout.h")
SAME_PLACE(struct meta_page, struct pkru_meta_view, owned);
SAME_PLACE(struct meta_page, struct pkru_meta_view, owned_enter);
SAME_PLACE(struct meta_page, struct pkru_meta_view, not_m);
SAME_PLACE(struct meta_page, struct pkru_meta_view, boot_open);
SAME_PLACE(struct meta_page, struct pkru_meta_view, boot_closed);
SAME_PLACE(struct meta_page, struct pkru_meta_view, threads_lo);
SAME_PLACE(struct meta_page, struct pkru_meta_view, threads_len);
SAME_PLACE(struct vmpk_thread, struct pkru_thread_view, self);
SAME_PLACE(struct vmpk_thread, struct pkru_thread_view, pkru_expect);
_Static_assert(THREAD_STRIDE == PKRU_THREAD_ALIGN, "thread structs off the checks' boundary");
#undef SAME_PLACE
#endif

/* The id of rt if it is an open runtime, else -1: a caller's pointer is
 * trusted only once it names one of the runtime structs in meta. */
static inline int runtime_id_of(const struct vmpk_runtime *rt)
{
    uintptr_t off = (uintptr_t)rt - (uintptr_t)vmpk__meta_rts.area;
    if (off >= (uintptr_t)VMPK_MAX_RUNTIMES * RT_STRIDE || off % RT_STRIDE)
        return -1;
    int id = (int)(off / RT_STRIDE);
    return atomic_load_explicit(&vmpk__runtimes[id], memory_order_acquire) == rt ? id : -1;
}

/* The slow paths of meta_enter and meta_leave, with the thread registry
 * they need (thread.c). A struct for a thread vmpk has not seen; returns
 * with meta closed. */
struct vmpk_thread *vmpk__meta_bootstrap(void);
/* A shootdown ran while the thread was inside: set every bit afresh. */
void vmpk__meta_leave_slow(struct vmpk_thread *t);
/* The calling thread's ideal PKRU: each runtime's pkeys as its backend
 * says (struct backend's thread_pkru), pooled pkeys closed (thread.c). */
uint32_t vmpk__ideal_pkru(uint32_t pkru, const struct vmpk_thread *t);

/* Opens meta for the calling thread; its struct, or NULL when no memory is
 * left for one (meta stays closed). */
static ALWAYS_INLINE struct vmpk_thread *meta_enter(void)
{
    struct vmpk_thread *t = vmpk__self;
    if (__builtin_expect(!t, 0) && !(t = vmpk__meta_bootstrap()))
        return NULL;
    if (__builtin_expect(vmpk__meta.mode == META_PKEY, 1))
        t = pkru_write_enter();
    return t;
}

/* A gate's bits, set when the thread leaves: gate's access plus v's perm. */
static ALWAYS_INLINE void meta_sync_on_leave(struct vmpk_thread *t, uint8_t id,
                                             const struct vkey *v, int pkey, int gate)
{
    t->sync_v = v;
    t->sync_pkey = pkey;
    t->sync_gate = gate;
    t->sync_counter = id;
}

/* Closes meta, setting the pending gate bits in the same write. `id`: the
 * runtime whose counters count the switches (the entry's among them), -1
 * for none: a call that failed counts nothing, as it changes nothing. */
static ALWAYS_INLINE void meta_leave(struct vmpk_thread *t, int id)
{
    if (__builtin_expect(vmpk__meta.mode == META_PKEY, 1)) {
        uint64_t seen = atomic_load(&vmpk__revocations);
        uint32_t before = rdpkru(), v = before;
        const struct vkey *sv = t->sync_v;
        if (sv) {
            int access = access_union(t->sync_gate, atomic_load(&sv->access));
            v = pkru_with(v, t->sync_pkey, pkru_bits_for(access));
            t->sync_v = NULL;
        }
        if (sv && (v ^ before))
            counter_add(&t->counters[t->sync_counter].pkru_writes, 1);
        if (id >= 0)
            counter_add(&t->counters[id].meta_pkru_writes, sv && (v ^ before) ? 1 : 2);
        v |= vmpk__meta.m_wd;
        t->pkru_expect = v;
        pkru_write_exact(v);
        if (__builtin_expect(atomic_load(&vmpk__revocations) != seen ||
                                 atomic_load_explicit(&t->resync, memory_order_relaxed), 0))
            vmpk__meta_leave_slow(t);
    } else {
        t->sync_v = NULL;
    }
}

/* meta_leave for a pku hit path on META_PKEY, which counts its own writes
 * and has no pending gate bits: close meta, re-check for a shootdown. */
static ALWAYS_INLINE void meta_close_pkey(struct vmpk_thread *t)
{
    uint64_t seen = atomic_load(&vmpk__revocations);
    uint32_t v = rdpkru() | vmpk__meta.m_wd;
    t->pkru_expect = v;
    pkru_write_exact(v);
    if (__builtin_expect(atomic_load(&vmpk__revocations) != seen ||
                             atomic_load_explicit(&t->resync, memory_order_relaxed), 0))
        vmpk__meta_leave_slow(t);
}

/* Sets the calling thread's bits for pkey now, meta staying open. */
static inline void meta_set_now(struct vmpk_thread *t, int id, int pkey, int access)
{
    if (vmpk__meta.mode != META_PKEY)
        return;
    uint32_t pkru = rdpkru();
    uint32_t next = pkru_with(pkru, pkey, pkru_bits_for(access));
    if (next == pkru)
        return;
    t->pkru_expect = next;
    pkru_write_exact(next);
    if (id >= 0)
        counter_add(&t->counters[id].pkru_writes, 1);
}

/* The calling thread's struct if TLS names a valid one, else NULL: what a
 * signal handler may update. */
static inline struct vmpk_thread *meta_self_checked(void)
{
    struct vmpk_thread *t = vmpk__self;
    return t && meta_thread_valid(t) ? t : NULL;
}

/* Where a thread interrupted at ip must resume (with ecx = edx = 0) so that
 * it reads the PKRU a signal handler leaves: the RDPKRU of an entry whose
 * WRPKRU has not run yet, or of a check that has not finished; 0 when ip is
 * in none. */
uintptr_t vmpk__pkru_restart(uintptr_t ip);

/* Signal handlers: open meta on entry (every owned pkey but meta closed for
 * the handler itself), close it before returning or chaining. The value
 * returned is the stub build's PKRU to restore; the real PKRU comes back
 * from the signal frame. */
static inline uint32_t meta_handler_enter(void)
{
    if (VMPK_CHECKS)
        vmpk__signal_depth++;
    if (vmpk__meta_mode != META_PKEY)
        return 0;
    uint32_t pkru = rdpkru();
    uint32_t m = 3u << (2 * vmpk__meta_pkey);
    pkru_write_boot((pkru | relaxed_load(&vmpk__meta_owned)) & ~m, 1);
    return pkru;
}

static inline void meta_handler_leave(uint32_t restore)
{
    REQUIRE_IN_SIGNAL();
    if (VMPK_CHECKS)
        vmpk__signal_depth--;
    if (vmpk__meta_mode != META_PKEY)
        return;
    pkru_write_boot(rdpkru() | vmpk__meta.m_wd, 0);
    pkru_after_signal(restore);
}

#endif /* VMPK_ENTER_H */
