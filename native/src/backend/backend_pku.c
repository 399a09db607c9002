/*
 * The pku backend: vkeys cached on hardware keys.
 *
 * Page states of a vkey's used window pages:
 *   resident on pkey k   PROT_READ|PROT_WRITE, tagged k; each thread's PKRU
 *                        bits for k say what that thread may do
 *   not resident         tagged 0, page protection = the vkey's perm
 * An exec key's pages add PROT_EXEC in both states (prot_resident,
 * prot_of_vkey): its perm is read-only, so every thread may run its code
 * and only an RW gate's PKRU bits let a thread write it.
 * A miss evicts the unpinned vkey cache.h picks (one pkey_mprotect back to pkey 0 with
 * its perm) and tags the new one (one pkey_mprotect): two syscalls, whatever
 * the number of regions, because each vkey is one window.
 *
 * A thread's ideal bits for a resident vkey's pkey are the union of its own
 * gates on it and the vkey's perm; for a pkey that serves no vkey, closed.
 * Each thread sets its own bits in its gates. Others' bits catch up lazily
 * where that only widens them (a PKU fault the perm allows is repaired in
 * the fault handler), and by shootdown where they must narrow at once:
 * before a pkey serves another vkey, and when protect() narrows the perm of
 * a vkey that gates pin. The hw key's open_elsewhere flag says whether any
 * thread can hold wider bits than its own gates, so that the shootdown is
 * paid only then.
 *
 * Every entry point runs with meta open (enter.h). A gate's hit path makes
 * four checked WRPKRUs in all: begin opens meta and closes it with the
 * gate's bits set in the same write, while the gate pins its hw key; end
 * opens meta with the gate's bits narrowed in the same write, then pops,
 * unpins and closes. Other paths leave the bits in t->sync_* for
 * meta_leave.
 */
#include <stdlib.h>

#include "backend.h"
#include "backend_pku.h"
#include "cache.h"
#include "enter.h"
#include "gate.h"
#include "cpu.h"
#include "os.h"
#include "pkru.h"
#include "shootdown.h"
#include "births.h"
#include "tasks.h"

/* The backend's own state (backend.h): the hardware keys this runtime
 * holds, with the key cache's sketch, and each vkey's hw index. No other
 * file reads them. */
struct pku_runtime {
    struct hwkey hw[MAX_HW_KEYS];
    _Atomic uint32_t nhw;     /* hw[0..nhw) hold a pkey */
    int hw_budget;
    struct cache_sketch sketch;
};

struct pku_vkey {
    _Atomic uint8_t hw;       /* hw index while resident, else HW_NONE */
};

BACKEND_FITS(struct pku_runtime, struct pku_vkey);
#define PKU(rt) BACKEND_STATE(struct pku_runtime, rt)
#define PKU_KEY(v) BACKEND_KEY(struct pku_vkey, v)
/* PKU(rt)->hw, the table being the first member. Indexed straight off rt,
 * GCC folds the offset into each access of the gate path: 417 instructions
 * per gate pair (bench/hitpath.c, stub build, callgrind), against 435 with
 * PKU(rt)->hw[h], which keeps a second base pointer live. */
#define PKU_HW(rt) ((struct hwkey *)(rt)->be_state)
_Static_assert(offsetof(struct pku_runtime, hw) == 0, "PKU_HW");

/* pkeys that closed runtimes held (in the meta page). They are never given
 * back to the kernel (some thread's PKRU may still open them), only to
 * later runtimes. */
#define pool (vmpk__meta.pool)

/* The meta pkey takes one of the 15. */
#define VKEY_HW_KEYS (MAX_HW_KEYS - (vmpk__meta.mode == META_PKEY))

static int pku_setup(struct vmpk_runtime *rt, int max_hw_keys)
{
    if (!os_pkey_supported())
        return VMPK_E_UNSUPPORTED;
    PKU(rt)->hw_budget = max_hw_keys > 0 && max_hw_keys < VKEY_HW_KEYS ? max_hw_keys : VKEY_HW_KEYS;
    atomic_store(&PKU(rt)->nhw, 0);
    return 0;
}

static void pku_teardown(struct vmpk_runtime *rt)
{
    struct vmpk_thread *t = vmpk__self;
    uint32_t n = atomic_load(&PKU(rt)->nhw);
    pthread_mutex_lock(&pool.lock);
    for (uint32_t h = 0; h < n; h++) {
        meta_set_now(t, rt->id, PKU_HW(rt)[h].pkey, VMPK_NONE);
        pool.pkeys[pool.n++] = PKU_HW(rt)[h].pkey;
    }
    pthread_mutex_unlock(&pool.lock);
    atomic_store(&PKU(rt)->nhw, 0);
}

/* A pkey from the pool or the kernel; -1 when none can be had. A pooled
 * pkey may still be open in threads of its last runtime: *stale says so. */
static int take_pkey(struct vmpk_runtime *rt, bool *stale)
{
    int pkey = -1;
    pthread_mutex_lock(&pool.lock);
    if (pool.n)
        pkey = pool.pkeys[--pool.n];
    *stale = pkey >= 0;
    if (pkey < 0 && !pool.kernel_has_none) {
        pkey = os_pkey_alloc(&rt->c);
        pool.kernel_has_none = pkey < 0;
        if (pkey >= 0)
            vmpk__meta_own(pkey);
    }
    pthread_mutex_unlock(&pool.lock);
    return pkey < 0 ? -1 : pkey;
}

static int retag(struct vmpk_runtime *rt, struct vkey *v, int prot, int pkey)
{
    if (!v->used)
        return 0;
    size_t len = (size_t)v->used * rt->page;
    if (fail_now(FAIL_PKU_RETAG)) { /* a test's failure midway: one page done */
        os_pkey_mprotect(&rt->c, window_base(v), rt->page, prot, pkey);
        return vmpk__os_error(-ENOMEM);
    }
    int r = os_pkey_mprotect(&rt->c, window_base(v), len, prot, pkey);
    return vmpk__os_error(r);
}

/* Takes hw h from slot's vkey, unless a gate pins it (VMPK_E_BUSY), and
 * gives the vkey's pages pkey 0 with `prot`. Fail-safe: a retag that fails
 * may have retagged part of the window, so on failure the pages are closed
 * (PROT_NONE, whatever pkey each has now) and the vkey is bound to h again,
 * so h serves no other vkey while a page may still carry its pkey; then
 * the resident state is put back if it can be. Either way no page is left
 * more open than before, and the cache says which pkey the pages carry. */
static int unbind(struct vmpk_runtime *rt, uint8_t h, uint32_t slot, int prot)
{
    struct hwkey *k = &PKU_HW(rt)[h];
    struct vkey *v = &rt->slots[slot];
    if (!hw_unbind(k, slot))
        return VMPK_E_BUSY;
    atomic_store(&PKU_KEY(v)->hw, HW_NONE);
    int err = retag(rt, v, prot, 0);
    if (!err)
        return 0;
    if (os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page, PROT_NONE))
        abort(); /* pages with h's pkey could open to h's next vkey's gates */
    atomic_store(&k->state, HW_STATE(slot, 0));
    atomic_store(&PKU_KEY(v)->hw, h);
    retag(rt, v, prot_resident(v), k->pkey); /* where it fails, they stay closed */
    return err;
}

/* Unbinds hw h's vkey (unpinned) and gives its pages pkey 0 with its perm. */
static int evict(struct vmpk_runtime *rt, uint8_t h)
{
    uint32_t slot = HW_SLOT1(atomic_load(&PKU_HW(rt)[h].state)) - 1;
    struct vkey *w = &rt->slots[slot];
    return unbind(rt, h, slot, prot_of_vkey(w, atomic_load(&w->access)));
}

/* Makes slot resident, pinned once. Under rt->lock, meta open. */
static int bind(struct vmpk_runtime *rt, uint32_t slot, uint8_t *out)
{
    REQUIRE_LOCKED(rt);
    REQUIRE_META_OPEN();
    struct vkey *v = &rt->slots[slot];
    uint8_t h = atomic_load(&PKU_KEY(v)->hw);
    if (h != HW_NONE) { /* bound by another thread since our hit path looked */
        atomic_fetch_add(&PKU_HW(rt)[h].state, 1);
        *out = h;
        return 0;
    }
    for (;;) {
        uint32_t n = atomic_load(&PKU(rt)->nhw);
        int pick = cache_pick(PKU(rt)->hw, n, &PKU(rt)->sketch);
        if ((pick < 0 || atomic_load(&PKU_HW(rt)[pick].state) != 0) && (int)n < PKU(rt)->hw_budget) {
            bool stale;
            int pkey = take_pkey(rt, &stale);
            if (pkey >= 0) {
                PKU_HW(rt)[n].pkey = pkey;
                atomic_store(&PKU_HW(rt)[n].state, 0);
                atomic_store(&PKU_HW(rt)[n].open_elsewhere, stale);
                atomic_store(&PKU(rt)->nhw, n + 1);
                pick = (int)n;
            }
        }
        if (pick < 0)
            return atomic_load(&PKU(rt)->nhw) ? VMPK_E_KEYS_PINNED : VMPK_E_NO_HW_KEYS;
        if (atomic_load(&PKU_HW(rt)[pick].state) != 0) {
            int err = evict(rt, (uint8_t)pick);
            if (err == VMPK_E_BUSY)
                continue; /* pinned since it was picked */
            if (err)
                return err;
            atomic_fetch_add(&rt->c.evictions, 1);
        }
        struct hwkey *k = &PKU_HW(rt)[pick];
        if (atomic_load(&k->open_elsewhere)) { /* invariant 2 */
            int err = vmpk__shootdown(rt);
            if (err)
                return err;
        }
        int err = retag(rt, v, prot_resident(v), k->pkey);
        if (err) {
            /* Part of v's window may carry k's pkey, and k serves no key:
             * back to pkey 0 with v's perm, or closed, before k serves
             * another key. */
            if (retag(rt, v, prot_of_vkey(v, atomic_load(&v->access)), 0) && v->used &&
                os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page, PROT_NONE))
                abort();
            return err;
        }
        atomic_store(&k->open_elsewhere, atomic_load(&v->access) != VMPK_NONE);
        hw_bind_pinned(k, slot);
        atomic_store(&PKU_KEY(v)->hw, (uint8_t)pick);
        *out = (uint8_t)pick;
        return 0;
    }
}

/* Opens the gate: pushes it, counts the use; the bits are set on leaving,
 * while the gate pins the hw key. */
static ALWAYS_INLINE void open_gate(struct vmpk_runtime *rt, struct vmpk_thread *t, vmpk_key key,
                                     uint32_t slot, uint8_t h, int access)
{
    gate_push(t, rt, key, slot, h, access);
    hw_touch(&PKU_HW(rt)[h]);
    meta_sync_on_leave(t, rt->id, &rt->slots[slot], PKU_HW(rt)[h].pkey, access);
}

/* Everything but a plain hit: checks every argument, and binds the vkey to
 * a hw key (evicting the one cache.h picks) if it is not resident. */
static __attribute__((noinline)) int begin_slow(struct vmpk_runtime *rt, struct vmpk_thread *t,
                                                vmpk_key key, int access)
{
    uint32_t slot;
    int err = vmpk__gate_prepare(rt, key, access, t, &slot);
    if (err)
        return err;
    struct vkey *v = &rt->slots[slot];
    uint32_t gen = vmpk__gen_of(key);
    uint8_t h = atomic_load(&PKU_KEY(v)->hw);
    bool missed = false;
    if (h == HW_NONE || !hw_pin_if_bound(&PKU_HW(rt)[h], slot)) {
        rt_lock(rt);
        bool valid = v->live && atomic_load(&v->gen) == gen;
        h = atomic_load(&PKU_KEY(v)->hw);
        missed = valid && h == HW_NONE;
        err = valid ? bind(rt, slot, &h) : VMPK_E_STALE;
        rt_unlock(rt);
        if (err)
            return err;
    } else if (atomic_load(&v->gen) != gen) {
        hw_unpin(&PKU_HW(rt)[h]);
        return VMPK_E_STALE;
    }
    open_gate(rt, t, key, slot, h, access);
    if (missed)
        atomic_fetch_add(&rt->c.misses, 1);
    else
        counter_add(&t->counters[rt->id].hits, 1);
    return 0;
}

/* vmpk_begin where no pkey guards meta (or for a thread vmpk has not
 * seen): meta_enter/meta_leave, the gate's bits set on leaving. */
static __attribute__((noinline)) int begin_other(struct vmpk_runtime *rt, vmpk_key key,
                                                 int access)
{
    struct vmpk_thread *t = meta_enter();
    if (__builtin_expect(!t, 0))
        return VMPK_E_NOMEM;
    uint32_t slot = handle_slot(key);
    uint64_t id = handle_rt(key);
    int r;
    if (__builtin_expect(id >= VMPK_MAX_RUNTIMES || vmpk__runtimes[id] != rt ||
                             slot >= relaxed_load(&rt->nslots) ||
                             (access != VMPK_READ && access != VMPK_RW) ||
                             t->depth == VMPK_MAX_GATE_DEPTH, 0)) {
        r = begin_slow(rt, t, key, access);
        goto out;
    }
    struct vkey *v = &rt->slots[slot];
    /* acquire: pairs with bind()'s store, made after the hw key was set up */
    uint8_t h = atomic_load_explicit(&PKU_KEY(v)->hw, memory_order_acquire);
    if (__builtin_expect(h == HW_NONE || !hw_pin_if_bound(&PKU_HW(rt)[h], slot), 0)) {
        r = begin_slow(rt, t, key, access);
        goto out;
    }
    if (__builtin_expect(atomic_load_explicit(&v->gen, memory_order_acquire) !=
                             vmpk__gen_of(key), 0)) { /* destroyed and reused */
        hw_unpin(&PKU_HW(rt)[h]);
        r = VMPK_E_STALE;
        goto out;
    }
    open_gate(rt, t, key, slot, h, access);
    counter_add(&t->counters[id].hits, 1);
    meta_leave(t, (int)id);
    return 0;
out:
    meta_leave(t, r ? -1 : runtime_id_of(rt));
    return r;
}

/* vmpk_begin with the meta pkey (picked per call by one test of the meta
 * mode). The hit path: no lock, no syscall; pin, check, and two checked
 * WRPKRUs: meta open, then the gate's bits with meta closed, computed
 * here rather than through t->sync_*. Its checks repeat begin_other's on
 * purpose: shared through an inline helper they cost 4 instructions more
 * per pair (bench/hitpath.mjs: 317 -> 321). */
static int pku_begin(struct vmpk_runtime *rt, vmpk_key key, int access)
{
    if (__builtin_expect(vmpk__meta.mode != META_PKEY || !vmpk__self, 0))
        return begin_other(rt, key, access);
    struct vmpk_thread *t = pkru_write_enter();
    uint32_t slot = handle_slot(key);
    uint64_t id = handle_rt(key);
    int r;
    if (__builtin_expect(id >= VMPK_MAX_RUNTIMES || vmpk__runtimes[id] != rt ||
                             slot >= relaxed_load(&rt->nslots) ||
                             (access != VMPK_READ && access != VMPK_RW) ||
                             t->depth == VMPK_MAX_GATE_DEPTH, 0)) {
        r = begin_slow(rt, t, key, access);
        goto out;
    }
    struct vkey *v = &rt->slots[slot];
    /* acquire: pairs with bind()'s store, made after the hw key was set up */
    uint8_t h = atomic_load_explicit(&PKU_KEY(v)->hw, memory_order_acquire);
    if (__builtin_expect(h == HW_NONE || !hw_pin_if_bound(&PKU_HW(rt)[h], slot), 0)) {
        r = begin_slow(rt, t, key, access);
        goto out;
    }
    if (__builtin_expect(atomic_load_explicit(&v->gen, memory_order_acquire) !=
                             vmpk__gen_of(key), 0)) { /* destroyed and reused */
        hw_unpin(&PKU_HW(rt)[h]);
        r = VMPK_E_STALE;
        goto out;
    }
    struct hwkey *k = &PKU_HW(rt)[h];
    gate_push(t, rt, key, slot, h, access);
    hw_touch(k);
    /* meta close with the gate's bits, while the gate pins the hw key */
    uint64_t seen = atomic_load(&vmpk__revocations);
    uint32_t before = rdpkru();
    uint32_t pkru = pkru_with_access(before, k->pkey, access_union(access, atomic_load(&v->access)));
    struct thread_counters *c = &t->counters[id];
    counter_add(&c->fast_begins, 1); /* a hit, and its writes (internal.h) */
    if (__builtin_expect(pkru == before, 0))
        counter_add(&c->fast_same, 1);
    pkru |= vmpk__meta.m_wd;
    t->pkru_expect = pkru;
    pkru_write_exact(pkru);
    if (__builtin_expect(atomic_load(&vmpk__revocations) != seen ||
                             atomic_load_explicit(&t->resync, memory_order_relaxed), 0))
        vmpk__meta_leave_slow(t);
    return 0;
out:
    meta_leave(t, r ? -1 : runtime_id_of(rt));
    return r;
}

/* A thread created inside a gate copied the gate's bits: take them back
 * while the gate still pins the vkey. */
static __attribute__((noinline)) void revoke_copies(struct vmpk_runtime *rt, struct hwkey *k)
{
    atomic_store(&k->open_elsewhere, true);
    if (vmpk__shootdown(rt))
        abort(); /* some thread would keep the gate's access */
}

/* Closes the innermost gate, meta open. The bits are set now, before the
 * pin goes: once unpinned, the hw key may serve another vkey. */
static int pku_end_in(struct vmpk_runtime *rt, struct vmpk_thread *t, vmpk_key key)
{
    struct gate *g = gate_top(t, rt, key);
    if (__builtin_expect(!g, 0))
        return VMPK_E_GATE_ORDER;
    struct hwkey *k = &PKU_HW(rt)[g->hw];
    t->depth--; /* popped first: a shootdown from now on leaves it out */
    uint64_t seen;
    do {
        seen = atomic_load(&vmpk__revocations);
        meta_set_now(t, rt->id, k->pkey,
                     access_union(g->outer, atomic_load(&rt->slots[g->slot].access)));
    } while (atomic_load(&vmpk__revocations) != seen);
    if (__builtin_expect(births_now() != g->births, 0))
        revoke_copies(rt, k);
    hw_unpin(k);
    return 0;
}

/* vmpk_end where no pkey guards meta, or on anything but the innermost
 * gate: meta open, then pku_end_in. */
static __attribute__((noinline)) int end_slow(struct vmpk_runtime *rt, vmpk_key key)
{
    struct vmpk_thread *t = meta_enter();
    if (__builtin_expect(!t, 0))
        return VMPK_E_GATE_ORDER; /* no struct, so no gate */
    int r = pku_end_in(rt, t, key);
    meta_leave(t, r ? -1 : rt->id);
    return r;
}

/* vmpk_end: the gate's bits narrowed in the write that opens meta, then
 * pop, unpin, meta closed: two checked WRPKRUs. Meta is readable outside
 * vmpk, so the gate and its bits are found before it opens; a forged
 * vmpk__self fails the write's check (abort). That write only adds AD/WD
 * bits, so it never gives more than the thread's expected PKRU allows.
 * Where the bits must widen instead (the end of an inner gate narrower
 * than its outer one) or a shootdown ran since the access was read (it
 * may have narrowed the perm; one that lands after the write sees the
 * gate still pushed and meta open, leaves PKRU alone, and bumps
 * vmpk__revocations), they are set again once the gate is popped, before
 * the unpin: once unpinned, the hw key may serve another vkey. */
static int pku_end(struct vmpk_runtime *rt, vmpk_key key)
{
    struct vmpk_thread *t = vmpk__self;
    struct gate *g = t ? gate_top(t, rt, key) : NULL;
    if (__builtin_expect(!g || vmpk__meta.mode != META_PKEY, 0))
        return end_slow(rt, key);
    struct hwkey *k = &PKU_HW(rt)[g->hw];
    int pkey = k->pkey;
    uint64_t seen = atomic_load(&vmpk__revocations);
    /* the gate's bits and both of the key's, in place (pkru.h's table) */
    const uint32_t *row = PKRU_KEY_BITS[pkey & 15];
    uint32_t bits = row[access_union(g->outer, atomic_load(&rt->slots[g->slot].access)) & 3];
    uint32_t before;
    /* The write's check validated the struct it read from TLS; the gate
     * was read through t before: the same struct, or TLS changed under us
     * (another thread's stray write) and g may be forged. */
    if (__builtin_expect(pkru_write_enter_or(bits, &before) != t, 0))
        abort();
    t->depth--;
    uint32_t was = before & row[VMPK_NONE];
    /* this write and the close (internal.h's fast counts); the write sets
     * the gate's bits unless they were set already */
    struct thread_counters *c = &t->counters[rt->id];
    counter_add(&c->fast_ends, 1);
    if (__builtin_expect((was | bits) == was, 0))
        counter_add(&c->fast_same, 1);
    if (__builtin_expect((was & ~bits) || atomic_load(&vmpk__revocations) != seen, 0)) {
        do {
            seen = atomic_load(&vmpk__revocations);
            meta_set_now(t, rt->id, pkey,
                         access_union(g->outer, atomic_load(&rt->slots[g->slot].access)));
        } while (atomic_load(&vmpk__revocations) != seen);
    }
    if (__builtin_expect(births_now() != g->births, 0))
        revoke_copies(rt, k);
    hw_unpin(k);
    meta_close_pkey(t); /* counted with fast_ends */
    return 0;
}

static int pku_protect(struct vmpk_runtime *rt, uint32_t slot, int access)
{
    struct vkey *v = &rt->slots[slot];
    int old = atomic_load(&v->access);
    uint8_t h = atomic_load(&PKU_KEY(v)->hw);
    atomic_store(&v->access, (uint8_t)access);
    if (h == HW_NONE) {
        int r = v->used ? os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page,
                                      prot_of_vkey(v, access))
                        : 0;
        if (r)
            atomic_store(&v->access, (uint8_t)old);
        return vmpk__os_error(r);
    }
    /* Resident. A narrowing while no gate pins it: leave the hw key, so the
     * page protection enforces it for every thread at once. */
    if ((access & ~old) == 0 && access != old) {
        int err = unbind(rt, h, slot, prot_of_vkey(v, access));
        if (err != VMPK_E_BUSY) {
            if (err)
                atomic_store(&v->access, (uint8_t)old);
            return err;
        }
    }
    struct vmpk_thread *t = vmpk__self;
    meta_set_now(t, rt->id, PKU_HW(rt)[h].pkey,
                 access_union(vmpk__thread_gate_access(t, rt, slot), access));
    struct hwkey *k = &PKU_HW(rt)[h];
    if ((old & ~access) && atomic_load(&k->open_elsewhere)) {
        int err = vmpk__shootdown(rt); /* gates pin it: narrow every thread */
        if (err) {
            atomic_store(&v->access, (uint8_t)old);
            return err;
        }
    }
    atomic_store(&k->open_elsewhere, access != VMPK_NONE);
    return 0;
}

static int pku_grow(struct vmpk_runtime *rt, uint32_t slot, uint32_t from, uint32_t to)
{
    struct vkey *v = &rt->slots[slot];
    uint8_t *at = window_base(v) + (size_t)from * rt->page;
    size_t len = (size_t)(to - from) * rt->page;
    uint8_t h = atomic_load(&PKU_KEY(v)->hw);
    int r = 0;
    if (h != HW_NONE) {
        if (fail_now(FAIL_PKU_GROW)) { /* a test's failure midway: one page done */
            os_pkey_mprotect(&rt->c, at, rt->page, prot_resident(v), PKU_HW(rt)[h].pkey);
            r = -ENOMEM;
        } else {
            r = os_pkey_mprotect(&rt->c, at, len, prot_resident(v), PKU_HW(rt)[h].pkey);
        }
    } else if (atomic_load(&v->access) != VMPK_NONE) { /* fresh pages are PROT_NONE, pkey 0 */
        r = os_mprotect(&rt->c, at, len, prot_of_vkey(v, atomic_load(&v->access)));
    }
    /* The pages stay past v->used, where no later retag of the window
     * reaches them: closed, or some could keep h's pkey open to the next
     * key h serves (or the perm after it narrows) until they come into
     * use, and hand that key's writes to this one's next region. */
    if (r && os_mprotect(&rt->c, at, len, PROT_NONE))
        abort();
    return vmpk__os_error(r);
}

static int pku_retire(struct vmpk_runtime *rt, uint32_t slot)
{
    struct vkey *v = &rt->slots[slot];
    uint8_t h = atomic_load(&PKU_KEY(v)->hw);
    if (h != HW_NONE)
        return unbind(rt, h, slot, PROT_NONE);
    if (atomic_load(&v->access) == VMPK_NONE || !v->used)
        return 0;
    int r = os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page, PROT_NONE);
    return vmpk__os_error(r);
}

static void pku_key_init(struct vmpk_runtime *rt, uint32_t slot)
{
    atomic_store(&PKU_KEY(&rt->slots[slot])->hw, HW_NONE);
}

static int pku_pin(struct vmpk_runtime *rt, uint32_t slot)
{
    uint8_t h;
    int err = bind(rt, slot, &h);
    if (!err)
        hw_touch(&PKU_HW(rt)[h]);
    return err;
}

static void pku_unpin(struct vmpk_runtime *rt, uint32_t slot)
{
    hw_unpin(&PKU_HW(rt)[atomic_load(&PKU_KEY(&rt->slots[slot])->hw)]);
}

static bool pku_gates_open(const struct vmpk_runtime *rt)
{
    uint32_t n = atomic_load(&PKU(rt)->nhw);
    for (uint32_t h = 0; h < n; h++)
        if (HW_PINS(atomic_load(&PKU_HW(rt)[h].state)))
            return true;
    return false;
}

/* Whether pkey serves slot's vkey now (the fault handler's lazy grant):
 * no locks, reads only. */
static bool pku_serves(const struct vmpk_runtime *rt, uint32_t slot, int pkey)
{
    uint8_t h = atomic_load(&PKU_KEY(&rt->slots[slot])->hw);
    if (h == HW_NONE || h >= MAX_HW_KEYS)
        return false;
    const struct hwkey *k = &PKU_HW(rt)[h];
    return k->pkey == pkey && HW_SLOT1(atomic_load(&k->state)) == slot + 1;
}

/* The calling thread's ideal bits for this runtime's pkeys (see the top of
 * this file), for the shootdown handler: no locks, reads only. */
static uint32_t pku_thread_pkru(const struct vmpk_runtime *rt, uint32_t pkru,
                                const struct vmpk_thread *t)
{
    uint32_t n = atomic_load(&PKU(rt)->nhw);
    for (uint32_t h = 0; h < n; h++) {
        uint32_t slot1 = HW_SLOT1(atomic_load(&PKU_HW(rt)[h].state));
        int access = VMPK_NONE;
        if (slot1) {
            int gate = t ? vmpk__thread_gate_access(t, rt, slot1 - 1) : VMPK_NONE;
            access = access_union(gate, atomic_load(&rt->slots[slot1 - 1].access));
        }
        pkru = pkru_with(pkru, PKU_HW(rt)[h].pkey, pkru_bits_for(access));
    }
    return pkru;
}

static int pku_hw_budget(const struct vmpk_runtime *rt)
{
    return PKU(rt)->hw_budget;
}

static void pku_hw_stats(const struct vmpk_runtime *rt, uint32_t *held, uint64_t *resident)
{
    uint32_t n = atomic_load(&PKU(rt)->nhw);
    *held = n;
    *resident = 0;
    for (uint32_t h = 0; h < n; h++)
        *resident += atomic_load(&PKU_HW(rt)[h].state) != 0;
}

/* backend_pku.h: for tests only. */
struct hwkey *vmpk__pku_hwkey(const struct vmpk_runtime *rt, int h)
{
    return &PKU_HW(rt)[h];
}

int vmpk__pku_hw_of(const struct vkey *v)
{
    return atomic_load(&PKU_KEY(v)->hw);
}

const struct backend vmpk__backend_pku = {
    .name = "pku",
    .kind = VMPK_BACKEND_PKU,
    .thread_local = true,
    .pkeys = true,
    .setup = pku_setup,
    .teardown = pku_teardown,
    .begin = pku_begin,
    .end = pku_end,
    .end_in = pku_end_in,
    .protect = pku_protect,
    .grow = pku_grow,
    .key_init = pku_key_init,
    .retire = pku_retire,
    .pin = pku_pin,
    .unpin = pku_unpin,
    .gates_open = pku_gates_open,
    .write_held = NULL,
    .serves = pku_serves,
    .thread_pkru = pku_thread_pkru,
    .hw_budget = pku_hw_budget,
    .hw_stats = pku_hw_stats,
};
