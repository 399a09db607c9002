/*
 * The hardware-key cache: which vkey each hw key serves, its pins, and the
 * choice of a victim. Plain C over struct hwkey and the runtime's sketch,
 * no syscalls.
 *
 * The policy is frequency-aware (TinyLFU's idea, fitted to a cache that
 * must admit every miss: a gate cannot run without its vkey resident):
 *   - a hit bumps its hw key's `uses`, a plain counter in the line the pin
 *     CAS just wrote, and nothing else;
 *   - a miss folds every hw key's uses into a count-min sketch keyed by
 *     slot (4 rows of 512 saturating bytes), which also remembers vkeys
 *     that are not resident; the sketch halves every SKETCH_SAMPLE uses, so
 *     old popularity fades;
 *   - the victim is the unpinned resident vkey the sketch says is least
 *     used (the lowest hw index among equals).
 * So the keys used most stay, and one hw key in effect churns through the
 * rest: on a Zipf load that is nearly the best fixed choice of keys, where
 * LRU lets every one-off use push a hot key out (bench/regions.mjs). A
 * miss still costs the same two syscalls; the policy adds arithmetic over
 * the hw keys to it (and, every SKETCH_SAMPLE uses, a pass over the 2 KiB
 * sketch), and nothing to a hit but the count.
 *
 * Why not lru-cache (npm) or any JavaScript cache: the hit path is C inside
 * vmpk_begin, with no lock and no call out; the policy must live there.
 *
 * Binding and unbinding happen under rt->lock. Pinning does not: the gate hit
 * path pins with a CAS that succeeds only while the hw key still serves the
 * slot, and the unbind CAS succeeds only while nothing pins it, so a pinned
 * key is never evicted (invariant 4).
 */
#ifndef VMPK_CACHE_H
#define VMPK_CACHE_H

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

/* Records a use. Threads racing here may lose an increment: the count
 * decides speed only. */
static inline void hw_touch(struct hwkey *k)
{
    counter_add(&k->uses, 1);
}

/* Unbinds k from slot unless a gate pins it. */
static inline bool hw_unbind(struct hwkey *k, uint32_t slot)
{
    uint64_t bound = HW_STATE(slot, 0);
    return atomic_compare_exchange_strong(&k->state, &bound, 0);
}

/* Binds an unbound k to slot, pinned once for the caller's gate (whose
 * hw_touch counts the use). Uses a racing hit left on k were the last
 * vkey's: dropped. */
static inline void hw_bind_pinned(struct hwkey *k, uint32_t slot)
{
    relaxed_store(&k->uses, 0);
    atomic_store(&k->state, HW_STATE(slot, 1));
}

/* Uses added to the sketch between two halvings. */
#define SKETCH_SAMPLE 8192u

/* The sketch's estimate of slot's uses (exact unless slots collide in
 * every row). */
uint32_t cache_estimate(const struct cache_sketch *s, uint32_t slot);

/* Adds n uses of slot (conservative update, saturating at 255); halves
 * every count once SKETCH_SAMPLE uses were added since the last halving
 * (one call adds at most SKETCH_SAMPLE of them). */
void cache_add(struct cache_sketch *s, uint32_t slot, uint32_t n);

/* The miss path's choice, under rt->lock: folds the uses of rt->hw[0..n)
 * into the sketch, then returns an unbound hw key, else the unpinned one
 * whose vkey the sketch says is least used; -1 when every hw key is
 * pinned. */
int cache_pick(struct vmpk_runtime *rt, uint32_t n);

#endif /* VMPK_CACHE_H */
