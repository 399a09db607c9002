/*
 * The mprotect backend: the same API on any Linux, with page protection
 * doing the work of PKRU. A gate therefore opens the vkey's pages to every
 * thread while it is open (vmpk_info says thread_local = 0).
 *
 * The page protection of a vkey's used pages is always
 *     perm | (write gates open ? RW : read gates open ? R : NONE)
 * over the gates of all threads, and a gate costs a syscall only when it
 * changes that. An exec key keeps W^X (prot_of_vkey): R+X, or R+W without
 * X while a write gate is open, so no thread runs its code during an emit.
 */
#include <stdlib.h>

#include "backend.h"
#include "enter.h"
#include "gate.h"
#include "internal.h"
#include "os.h"

/* The backend's own per-key state (backend.h); no other file reads it. */
struct mp_vkey {
    uint16_t open_read;       /* gates open, all threads */
    uint16_t open_write : 15;
    uint16_t apart : 1;       /* its used pages are VMAs of their own */
};
#define MAX_OPEN_READ 0xffffu
#define MAX_OPEN_WRITE 0x7fffu

/* Keys whose used pages are kept apart (keep_apart), process-wide. Each
 * costs the process up to two more VMAs (vm.max_map_count is 65,530 by
 * default, and the arena is one VMA): past the budget, keys go on without. */
#define APART_MAX 4096
static _Atomic uint32_t apart_keys;

BACKEND_FITS(char, struct mp_vkey); /* no runtime state */
#define MP_KEY(v) BACKEND_KEY(struct mp_vkey, v)

static int effective(const struct vkey *v)
{
    const struct mp_vkey *m = MP_KEY(v);
    int gates = m->open_write ? VMPK_RW : m->open_read ? VMPK_READ : VMPK_NONE;
    return gates | atomic_load(&v->access);
}

/* The mark keep_apart gives a key's pages: windows of one size side by
 * side alternate (their starts over their size are consecutive numbers),
 * so two marked ones stay apart. The granule's parity alone did that for
 * windows of an odd number of granules only: two of 2 MiB both started
 * even, and a fully used one merged with the next. Windows of different
 * sizes may still get the same mark: speed only. */
static int apart_mark(const struct vkey *v)
{
    return 1 + (int)((v->granule / v->granules) & 1);
}

/* A key's used pages share the arena's VMA while closed (that keeps a
 * million keys in one VMA), so each mprotect of them splits it and the
 * next merges it back, about twice the cost of changing a VMA of their
 * own (docs/benchmarks.md, section 10). The first time a gate opens a
 * key's pages, they get one, while the budget lasts; mp_grow extends it
 * to new pages, mp_retire gives it back. Speed only: a failure changes
 * nothing else. */
static void keep_apart(struct vmpk_runtime *rt, struct vkey *v)
{
    if (MP_KEY(v)->apart || !v->used)
        return;
    if (atomic_fetch_add(&apart_keys, 1) >= APART_MAX) {
        atomic_fetch_sub(&apart_keys, 1);
        return;
    }
    if (os_keep_apart(&rt->c, window_base(v), (size_t)v->used * rt->page, apart_mark(v)) == 0)
        MP_KEY(v)->apart = 1;
    else
        atomic_fetch_sub(&apart_keys, 1);
}

/* Applies the protection the vkey's state now asks for, if it changed. */
static int apply(struct vmpk_runtime *rt, struct vkey *v, int before)
{
    int after = effective(v);
    if (after == before || !v->used)
        return 0;
    int r = os_mprotect(&rt->c, window_base(v), (size_t)v->used * rt->page,
                        prot_of_vkey(v, after));
    return r == 0 ? 1 : vmpk__os_error(r);
}

static void count_gate(struct vkey *v, int access, int delta)
{
    if (access == VMPK_RW)
        MP_KEY(v)->open_write += delta;
    else
        MP_KEY(v)->open_read += delta;
}

/* Whether one more gate of `access` fits the key's counts. */
static bool gate_room(const struct vkey *v, int access)
{
    return access == VMPK_RW ? MP_KEY(v)->open_write < MAX_OPEN_WRITE
                             : MP_KEY(v)->open_read < MAX_OPEN_READ;
}

/* A gate on a live key, under rt->lock: 0 if its pages stayed as they were
 * (a hit), 1 if they changed, or a vmpk_error with nothing changed. */
static int open_gate(struct vmpk_runtime *rt, struct vmpk_thread *t, struct vkey *v,
                     vmpk_key key, uint32_t slot, int access)
{
    if (!gate_room(v, access))
        return VMPK_E_TOO_MANY;
    int before = effective(v);
    if (before == VMPK_NONE) /* the pages are about to open */
        keep_apart(rt, v);
    count_gate(v, access, +1);
    int r = apply(rt, v, before);
    if (r < 0)
        count_gate(v, access, -1);
    else
        gate_push(t, rt, key, slot, HW_NONE, access);
    return r;
}

static int mp_setup(struct vmpk_runtime *rt, int max_hw_keys)
{
    (void)rt, (void)max_hw_keys;
    return 0;
}

static void mp_teardown(struct vmpk_runtime *rt)
{
    (void)rt;
}

/* vmpk_begin */
static int mp_begin(struct vmpk_runtime *rt, vmpk_key key, int access)
{
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return VMPK_E_NOMEM;
    uint32_t slot;
    int r = vmpk__gate_prepare(rt, key, access, t, &slot);
    if (r) {
        meta_leave(t, -1);
        return r;
    }
    struct vkey *v = &rt->slots[slot];
    rt_lock(rt);
    r = v->live && atomic_load(&v->gen) == vmpk__gen_of(key)
            ? open_gate(rt, t, v, key, slot, access)
            : VMPK_E_STALE;
    rt_unlock(rt);
    if (r == 0)
        counter_add(&t->counters[rt->id].hits, 1);
    else if (r == 1)
        atomic_fetch_add(&rt->c.misses, 1);
    meta_leave(t, r < 0 ? -1 : rt->id);
    return r < 0 ? r : 0;
}

static int mp_end_in(struct vmpk_runtime *rt, struct vmpk_thread *t, vmpk_key key)
{
    struct gate *g = gate_top(t, rt, key);
    if (!g)
        return VMPK_E_GATE_ORDER;
    struct vkey *v = &rt->slots[g->slot];
    rt_lock(rt);
    int before = effective(v);
    count_gate(v, g->access, -1);
    t->depth--;
    /* A failure here would leave the pages more open than asked: there is
     * no safe way on, so stop. */
    if (apply(rt, v, before) < 0)
        abort();
    rt_unlock(rt);
    return 0;
}

/* vmpk_end */
static int mp_end(struct vmpk_runtime *rt, vmpk_key key)
{
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return VMPK_E_GATE_ORDER; /* no struct, so no gate */
    int r = mp_end_in(rt, t, key);
    meta_leave(t, r ? -1 : rt->id);
    return r;
}

static int mp_protect(struct vmpk_runtime *rt, uint32_t slot, int access)
{
    struct vkey *v = &rt->slots[slot];
    int before = effective(v);
    int old = atomic_load(&v->access);
    atomic_store(&v->access, (uint8_t)access);
    int r = apply(rt, v, before);
    if (r < 0)
        atomic_store(&v->access, (uint8_t)old);
    return r < 0 ? r : 0;
}

static int mp_grow(struct vmpk_runtime *rt, uint32_t slot, uint32_t from, uint32_t to)
{
    struct vkey *v = &rt->slots[slot];
    int access = effective(v);
    uint8_t *at = window_base(v) + (size_t)from * rt->page;
    size_t len = (size_t)(to - from) * rt->page;
    /* Fresh pages are PROT_NONE already. */
    int r = access == VMPK_NONE ? 0 : os_mprotect(&rt->c, at, len, prot_of_vkey(v, access));
    if (r) {
        /* Past v->used no later change reaches them: closed, or some could
         * stay open after the key's access narrows. Not marked apart yet:
         * retire takes marks off v->used's pages only. */
        if (os_mprotect(&rt->c, at, len, PROT_NONE))
            abort();
        return vmpk__os_error(r);
    }
    if (MP_KEY(v)->apart) /* speed only: a failure changes nothing */
        os_keep_apart(&rt->c, at, len, apart_mark(v));
    return 0;
}

static int mp_retire(struct vmpk_runtime *rt, uint32_t slot)
{
    struct vkey *v = &rt->slots[slot];
    if (MP_KEY(v)->open_read || MP_KEY(v)->open_write)
        return VMPK_E_BUSY;
    int before = effective(v);
    atomic_store(&v->access, VMPK_NONE);
    int r = apply(rt, v, before);
    if (r >= 0 && MP_KEY(v)->apart) { /* merged back; a failure costs speed only */
        os_keep_apart(&rt->c, window_base(v), (size_t)v->used * rt->page, 0);
        MP_KEY(v)->apart = 0;
        atomic_fetch_sub(&apart_keys, 1);
    }
    return r < 0 ? r : 0;
}

static void mp_key_init(struct vmpk_runtime *rt, uint32_t slot)
{
    *MP_KEY(&rt->slots[slot]) = (struct mp_vkey){ 0 };
}

/* Nothing to keep resident: the runtime counts the pins. */
static int mp_pin(struct vmpk_runtime *rt, uint32_t slot)
{
    (void)rt, (void)slot;
    return 0;
}

static void mp_unpin(struct vmpk_runtime *rt, uint32_t slot)
{
    (void)rt, (void)slot;
}

static bool mp_gates_open(const struct vmpk_runtime *rt)
{
    for (uint32_t s = 0; s < rt->nslots; s++) {
        const struct vkey *v = &rt->slots[s];
        if (v->live && (MP_KEY(v)->open_read || MP_KEY(v)->open_write))
            return true;
    }
    return false;
}

static bool mp_write_held(const struct vmpk_runtime *rt, uint32_t slot)
{
    return MP_KEY(&rt->slots[slot])->open_write != 0;
}

static int mp_hw_budget(const struct vmpk_runtime *rt)
{
    (void)rt;
    return 0;
}

static void mp_hw_stats(const struct vmpk_runtime *rt, uint32_t *held, uint64_t *resident)
{
    (void)rt;
    *held = 0;
    *resident = 0;
}

const struct backend vmpk__backend_mprotect = {
    .name = "mprotect",
    .kind = VMPK_BACKEND_MPROTECT,
    .thread_local = false,
    .pkeys = false,
    .setup = mp_setup,
    .teardown = mp_teardown,
    .begin = mp_begin,
    .end = mp_end,
    .end_in = mp_end_in,
    .protect = mp_protect,
    .grow = mp_grow,
    .key_init = mp_key_init,
    .retire = mp_retire,
    .pin = mp_pin,
    .unpin = mp_unpin,
    .gates_open = mp_gates_open,
    .write_held = mp_write_held,
    .serves = NULL,
    .thread_pkru = NULL,
    .hw_budget = mp_hw_budget,
    .hw_stats = mp_hw_stats,
};
