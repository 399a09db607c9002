/*
 * The vkey table and handles. The table is one meta area committed as it
 * grows, so a slot never moves and the gate hit path can read it unlocked.
 *
 * A handle packs the runtime id, the slot's generation and slot + 1:
 *     bits 47..45 runtime id | 44..24 generation | 23..0 slot + 1
 * Destroying a vkey bumps its slot's generation; a slot whose generations
 * run out is retired for good rather than reused, within its runtime; the
 * next runtime on the same id goes on from the last generation, wrapping.
 */
#include "internal.h"
#include "meta.h"
#include "os.h"

_Static_assert(MAX_SLOTS == VMPK_MAX_KEYS, "vmpk.h's key limit is the vkey table's");

#define SLOT_CHUNK 4096 /* slots committed at a time */

vmpk_key vmpk__handle(const struct vmpk_runtime *rt, uint32_t slot, uint32_t gen)
{
    return (uint64_t)rt->id << (SLOT_BITS + GEN_BITS) | (uint64_t)gen << SLOT_BITS |
           (slot + 1);
}

int64_t vmpk__slot_of(const struct vmpk_runtime *rt, vmpk_key key)
{
    if (handle_malformed(key))
        return VMPK_E_INVALID;
    uint32_t slot = handle_slot(key);
    if (handle_rt(key) != rt->id || slot >= rt->nslots)
        return VMPK_E_STALE;
    const struct vkey *v = &rt->slots[slot];
    if (!v->live || atomic_load(&v->gen) != vmpk__gen_of(key))
        return VMPK_E_STALE;
    return slot;
}

/* The table is the id's meta area (meta.h). */
void vmpk__slots_init(struct vmpk_runtime *rt)
{
    rt->slots = (struct vkey *)(vmpk__meta.slots_area + rt->id * vmpk__meta.slots_stride);
}

int vmpk__slot_new(struct vmpk_runtime *rt, uint32_t *out)
{
    REQUIRE_LOCKED(rt);
    REQUIRE_META_OPEN();
    if (rt->free_slots) {
        uint32_t slot = rt->free_slots - 1;
        rt->free_slots = rt->slots[slot].next_free;
        *out = slot;
        return 0;
    }
    if (rt->nslots == MAX_SLOTS)
        return VMPK_E_TOO_MANY;
    if (rt->nslots == rt->slots_committed) {
        int r = vmpk__meta_commit(&rt->c, rt->slots + rt->slots_committed,
                                  SLOT_CHUNK * sizeof *rt->slots);
        if (r)
            return vmpk__os_error(r);
        rt->slots_committed += SLOT_CHUNK;
    }
    /* The table outlives a closed runtime (its id's next runtime reuses it):
     * go on from the generation a slot had, so old handles stay dead. */
    struct vkey *v = &rt->slots[rt->nslots];
    uint32_t gen = atomic_load(&v->gen) % GEN_RETIRED + 1;
    atomic_store(&v->gen, gen);
    *out = rt->nslots++;
    return 0;
}

void vmpk__slot_release(struct vmpk_runtime *rt, uint32_t slot)
{
    REQUIRE_LOCKED(rt);
    REQUIRE_META_OPEN();
    struct vkey *v = &rt->slots[slot];
    uint32_t gen = atomic_load(&v->gen) + 1;
    v->live = false;
    atomic_store(&v->gen, gen);
    if (gen == GEN_RETIRED)
        return;
    v->next_free = rt->free_slots;
    rt->free_slots = slot + 1;
}
