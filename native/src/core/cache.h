/*
 * The hardware-key cache: which vkey each hw key serves, its pins, and the
 * LRU choice of a victim. Plain C over struct hwkey, no syscalls.
 *
 * Binding and unbinding happen under rt->lock. Pinning does not: the gate hit
 * path pins with a CAS that succeeds only while the hw key still serves the
 * slot, and the unbind CAS succeeds only while nothing pins it, so a pinned
 * key is never evicted (invariant 4).
 */
#ifndef VMPK_CACHE_H
#define VMPK_CACHE_H

#include "cpu.h"
#include "internal.h"

/* Pins k if it serves slot; false if it serves another or none. */
static inline bool hw_pin_if_bound(struct hwkey *k, uint32_t slot)
{
    uint64_t s = atomic_load_explicit(&k->state, memory_order_relaxed);
    while (HW_SLOT1(s) == slot + 1) {
        if (atomic_compare_exchange_weak(&k->state, &s, s + 1))
            return true;
    }
    return false;
}

static inline void hw_unpin(struct hwkey *k)
{
    atomic_fetch_sub(&k->state, 1);
}

/* Records a use for LRU. The TSC orders uses across threads without a
 * shared counter for every gate to write. */
static inline void hw_touch(struct hwkey *k)
{
    relaxed_store(&k->stamp, cpu_ticks());
}

/* Unbinds k from slot unless a gate pins it. */
static inline bool hw_unbind(struct hwkey *k, uint32_t slot)
{
    uint64_t bound = HW_STATE(slot, 0);
    return atomic_compare_exchange_strong(&k->state, &bound, 0);
}

/* Binds an unbound k to slot, pinned once for the caller's gate. */
static inline void hw_bind_pinned(struct hwkey *k, uint32_t slot)
{
    atomic_store(&k->state, HW_STATE(slot, 1));
}

/* An unbound hw key, else the least recently used unpinned one; -1 when
 * every hw key is pinned. */
int cache_pick(const struct hwkey *hw, uint32_t n);

#endif /* VMPK_CACHE_H */
