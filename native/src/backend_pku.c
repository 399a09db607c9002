/*
 * The pku backend: vkeys cached on hardware keys.
 *
 * Page states of a vkey's used window pages:
 *   resident on pkey k   PROT_READ|PROT_WRITE, tagged k; each thread's PKRU
 *                        bits for k say what that thread may do
 *   not resident         tagged 0, page protection = the vkey's perm
 * A miss evicts the LRU unpinned vkey (one pkey_mprotect back to pkey 0 with
 * its perm) and tags the new one (one pkey_mprotect): two syscalls, whatever
 * the number of regions, because each vkey is one window.
 *
 * A thread's PKRU bits for a resident vkey's pkey are the union of its own
 * gates on it and the vkey's perm. Bits of other threads catch up lazily:
 * a PKU fault that the perm allows is repaired in the fault handler.
 */
#include <stdlib.h>

#include "cache.h"
#include "cpu_x86.h"
#include "os.h"
#include "pkru.h"

/* pkeys that closed runtimes held. They are never given back to the kernel
 * (some thread's PKRU may still open them), only to later runtimes. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool[MAX_HW_KEYS];
static int npool;

/* Sets the calling thread's bits for pkey to give `access`. */
static void set_thread_access(struct vmpk_runtime *rt, struct vmpk_thread *t, int pkey,
                              int access)
{
    uint32_t pkru = rdpkru();
    uint32_t next = pkru_with(pkru, pkey, pkru_bits_for(access));
    if (next == pkru)
        return;
    wrpkru_checked(next);
    counter_add(&t->counters[rt->id].pkru_writes, 1);
}

static int pku_setup(struct vmpk_runtime *rt, int max_hw_keys)
{
    if (!os_pkey_supported())
        return VMPK_E_UNSUPPORTED;
    rt->hw_budget = max_hw_keys > 0 && max_hw_keys < MAX_HW_KEYS ? max_hw_keys : MAX_HW_KEYS;
    atomic_store(&rt->nhw, 0);
    return 0;
}

static void pku_teardown(struct vmpk_runtime *rt)
{
    struct vmpk_thread *t = vmpk__thread();
    uint32_t n = atomic_load(&rt->nhw);
    pthread_mutex_lock(&pool_lock);
    for (uint32_t h = 0; h < n; h++) {
        if (t)
            set_thread_access(rt, t, rt->hw[h].pkey, VMPK_NONE);
        pool[npool++] = rt->hw[h].pkey;
    }
    pthread_mutex_unlock(&pool_lock);
    atomic_store(&rt->nhw, 0);
}

/* A pkey from the pool or the kernel; -1 when none can be had. */
static int take_pkey(struct vmpk_runtime *rt)
{
    int pkey = -1;
    pthread_mutex_lock(&pool_lock);
    if (npool)
        pkey = pool[--npool];
    pthread_mutex_unlock(&pool_lock);
    if (pkey < 0) {
        pkey = os_pkey_alloc(&rt->c);
        if (pkey < 0)
            rt->hw_budget = (int)atomic_load(&rt->nhw); /* no more to be had */
    }
    return pkey < 0 ? -1 : pkey;
}

static int retag(struct vmpk_runtime *rt, struct vkey *v, int prot, int pkey)
{
    if (!v->used)
        return 0;
    int r = os_pkey_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page, prot, pkey);
    return r ? vmpk__os_error(r) : 0;
}

/* Unbinds hw h's vkey (unpinned) and gives its pages pkey 0 with its perm. */
static int evict(struct vmpk_runtime *rt, int h)
{
    uint32_t slot = HW_SLOT1(atomic_load(&rt->hw[h].state)) - 1;
    struct vkey *w = &rt->slots[slot];
    if (!hw_unbind(&rt->hw[h], slot))
        return VMPK_E_BUSY; /* pinned since it was picked */
    atomic_store(&w->hw, HW_NONE);
    return retag(rt, w, prot_of(atomic_load(&w->access)), 0);
}

/* Makes slot resident, pinned once. Under rt->lock. */
static int bind(struct vmpk_runtime *rt, uint32_t slot, uint8_t *out)
{
    struct vkey *v = &rt->slots[slot];
    uint8_t h = atomic_load(&v->hw);
    if (h != HW_NONE) { /* bound by another thread since our hit path looked */
        atomic_fetch_add(&rt->hw[h].state, 1);
        *out = h;
        return 0;
    }
    for (;;) {
        uint32_t n = atomic_load(&rt->nhw);
        int pick = cache_pick(rt->hw, n);
        if ((pick < 0 || atomic_load(&rt->hw[pick].state) != 0) && (int)n < rt->hw_budget) {
            int pkey = take_pkey(rt);
            if (pkey >= 0) {
                rt->hw[n].pkey = pkey;
                atomic_store(&rt->hw[n].state, 0);
                atomic_store(&rt->nhw, n + 1);
                pick = (int)n;
            }
        }
        if (pick < 0)
            return atomic_load(&rt->nhw) ? VMPK_E_KEYS_PINNED : VMPK_E_NO_HW_KEYS;
        if (atomic_load(&rt->hw[pick].state) != 0) {
            int err = evict(rt, pick);
            if (err == VMPK_E_BUSY)
                continue;
            atomic_fetch_add(&rt->c.evictions, 1);
            if (err)
                return err;
        }
        int err = retag(rt, v, PROT_READ | PROT_WRITE, rt->hw[pick].pkey);
        if (err)
            return err;
        hw_bind_pinned(&rt->hw[pick], slot);
        atomic_store(&v->hw, (uint8_t)pick);
        *out = (uint8_t)pick;
        return 0;
    }
}

static int pku_begin(struct vmpk_runtime *rt, struct vmpk_thread *t, uint32_t slot,
                     uint32_t gen, struct gate *g)
{
    struct vkey *v = &rt->slots[slot];
    /* acquire: pairs with bind()'s store, after the hw key was set up */
    uint8_t h = atomic_load_explicit(&v->hw, memory_order_acquire);
    if (h != HW_NONE && hw_pin_if_bound(&rt->hw[h], slot)) {
        if (atomic_load(&v->gen) != gen) { /* destroyed and reused meanwhile */
            hw_unpin(&rt->hw[h]);
            return VMPK_E_STALE;
        }
        counter_add(&t->counters[rt->id].hits, 1);
    } else {
        pthread_mutex_lock(&rt->lock);
        int err = v->live && atomic_load(&v->gen) == gen ? bind(rt, slot, &h) : VMPK_E_STALE;
        pthread_mutex_unlock(&rt->lock);
        if (err)
            return err;
        atomic_fetch_add(&rt->c.misses, 1);
    }
    hw_touch(rt, &rt->hw[h]);
    g->hw = h;
    set_thread_access(rt, t, rt->hw[h].pkey, access_union(g->access, atomic_load(&v->access)));
    return 0;
}

static void pku_end(struct vmpk_runtime *rt, struct vmpk_thread *t, const struct gate *g)
{
    const struct vkey *v = &rt->slots[g->slot];
    set_thread_access(rt, t, rt->hw[g->hw].pkey, access_union(g->outer, atomic_load(&v->access)));
    hw_unpin(&rt->hw[g->hw]);
}

static int pku_protect(struct vmpk_runtime *rt, uint32_t slot, int access)
{
    struct vkey *v = &rt->slots[slot];
    int old = atomic_load(&v->access);
    uint8_t h = atomic_load(&v->hw);
    atomic_store(&v->access, (uint8_t)access);
    if (h == HW_NONE) {
        int r = v->used ? os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page,
                                      prot_of(access))
                        : 0;
        if (r)
            atomic_store(&v->access, (uint8_t)old);
        return r ? vmpk__os_error(r) : 0;
    }
    /* Resident. A narrowing while no gate pins it: leave the hw key, so the
     * page protection enforces it for every thread at once. */
    if ((access & ~old) == 0 && access != old && hw_unbind(&rt->hw[h], slot)) {
        atomic_store(&v->hw, HW_NONE);
        int err = retag(rt, v, prot_of(access), 0);
        if (err)
            atomic_store(&v->access, (uint8_t)old);
        return err;
    }
    struct vmpk_thread *t = vmpk__thread();
    if (t)
        set_thread_access(rt, t, rt->hw[h].pkey,
                          access_union(vmpk__thread_gate_access(t, rt, slot), access));
    return 0;
}

static int pku_grow(struct vmpk_runtime *rt, uint32_t slot, uint32_t from, uint32_t to)
{
    struct vkey *v = &rt->slots[slot];
    uint8_t *at = window_base(v) + (size_t)from * rt->page;
    size_t len = (size_t)(to - from) * rt->page;
    uint8_t h = atomic_load(&v->hw);
    int r = 0;
    if (h != HW_NONE)
        r = os_pkey_mprotect(&rt->c, at, len, PROT_READ | PROT_WRITE, rt->hw[h].pkey);
    else if (atomic_load(&v->access) != VMPK_NONE) /* fresh pages are PROT_NONE, pkey 0 */
        r = os_mprotect(&rt->c, at, len, prot_of(atomic_load(&v->access)));
    return r ? vmpk__os_error(r) : 0;
}

static int pku_retire(struct vmpk_runtime *rt, uint32_t slot)
{
    struct vkey *v = &rt->slots[slot];
    uint8_t h = atomic_load(&v->hw);
    if (h != HW_NONE) {
        if (!hw_unbind(&rt->hw[h], slot))
            return VMPK_E_BUSY;
        atomic_store(&v->hw, HW_NONE);
        return retag(rt, v, PROT_NONE, 0);
    }
    if (atomic_load(&v->access) == VMPK_NONE || !v->used)
        return 0;
    int r = os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page, PROT_NONE);
    return r ? vmpk__os_error(r) : 0;
}

const struct backend vmpk__backend_pku = {
    .name = "pku",
    .kind = VMPK_BACKEND_PKU,
    .thread_local = true,
    .setup = pku_setup,
    .teardown = pku_teardown,
    .begin = pku_begin,
    .end = pku_end,
    .protect = pku_protect,
    .grow = pku_grow,
    .retire = pku_retire,
};
