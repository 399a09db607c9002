/*
 * The hardware-key cache: which vkey each hw key serves, its pins, and the
 * choice of a victim. Plain C over a table of struct hwkey and a sketch,
 * no syscalls. The pku backend owns the table and the sketch (its private
 * runtime state, backend_pku.c) and drives this mechanism.
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

/* A hardware key held by the runtime. `state` packs the binding and the pins
 * so that the gate hit path can pin with one CAS:
 *   bits 63..32  slot + 1 of the resident vkey, 0 when unbound
 *   bits 31..0   pins (open gates, any thread) */
struct hwkey {
    _Atomic uint64_t state;
    _Atomic uint32_t uses;    /* gates since a miss last folded them into
                               * the sketch (cache.c); speed only */
    int pkey;
    /* Some thread may hold bits for pkey wider than its own gates: the perm
     * of the vkey it serves (lazy grants), or a gate's bits copied into a
     * thread created inside the gate. Reusing the pkey then needs a
     * shootdown first (invariant 2); otherwise it is free. */
    _Atomic bool open_elsewhere;
};

#define HW_STATE(slot, pins) (((uint64_t)(slot) + 1) << 32 | (pins))
#define HW_SLOT1(state) ((uint32_t)((state) >> 32))
#define HW_PINS(state) ((uint32_t)(state))

/* The cache's memory of how often each vkey is used, resident or not: a
 * count-min sketch over slots (cache.c), written on the miss path only,
 * under rt->lock. Speed only: a wrong count costs hits, never protection. */
#define SKETCH_ROWS 4
#define SKETCH_WIDTH 512      /* a power of two */
struct cache_sketch {
    uint8_t count[SKETCH_ROWS][SKETCH_WIDTH];
    uint32_t added;           /* uses added since the last halving */
};

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

/* The miss path's choice, under the runtime's lock: folds the uses of
 * hw[0..n) into the sketch, then returns an unbound hw key, else the
 * unpinned one whose vkey the sketch says is least used; -1 when every hw
 * key is pinned. */
int cache_pick(struct hwkey *hw, uint32_t n, struct cache_sketch *sketch);

#endif /* VMPK_CACHE_H */
