/*
 * The backend contract: what a backend (backend/backend_<name>.c) gives the
 * core, and what the core promises each call. Written once, here; each
 * precondition below is also a check (internal.h's REQUIRE) in the be_*
 * calls at the end, live in the san, stub and tsan builds.
 *
 * State. A backend's runtime state is rt->be_state and its per-key state
 * v->be, both opaque bytes to everyone else: the backend lays a struct
 * private to its file over them (BACKEND_STATE, BACKEND_KEY) and other
 * files learn backend facts only through the calls below.
 *
 * Contexts, per call:
 *   L   rt->lock held by the caller       U  rt->lock not held by the caller
 *   M   metadata open (enter.h)           S  in one of vmpk's signal handlers
 *   T   not in a signal handler           -  any context, no locks taken
 *
 *   setup        M T   before vmpk_open publishes rt (nothing else reaches
 *                      it yet, so no lock); be_state is zero. 0 or
 *                      VMPK_E_UNSUPPORTED where the machine lacks what the
 *                      backend needs.
 *   teardown     L M T every key destroyed, no gate open.
 *   begin, end   T     vmpk_begin and vmpk_end themselves: the gate path is
 *                      the hot one, so each backend owns it whole (meta,
 *                      argument checks, locking where it needs).
 *   end_in       U M T end for a thread's exit closing its gates; the bits
 *                      it leaves go to t->sync_* or are set already.
 *   key_init     L M T a new vkey's per-key state (its be bytes).
 *   protect      L M T the key's perm becomes `access`.
 *   grow         L M T pages [from, to) of the window came into use.
 *   retire       L M T the key is being destroyed: unbind it, its used pages
 *                      PROT_NONE on pkey 0; VMPK_E_BUSY if gates pin it.
 *   pin, unpin   L M T vmpk_pin / vmpk_unpin: keep the key resident, or stop.
 *   gates_open   L M T whether any thread has a gate of rt open (vmpk_close
 *                      refuses then). vmpk_pin's pins are the core's.
 *   write_held   S     fault report, reads only: an RW gate holds the key's
 *                      pages writable and not executable for every thread
 *                      (W^X). NULL where a gate is the thread's own.
 *   serves       S     lazy grant in the fault handler, reads only: pkey is
 *                      the hardware key serving the slot now. NULL for a
 *                      backend that holds no pkey.
 *   thread_pkru  -     the calling thread's PKRU with rt's pkeys at their
 *                      ideal bits (the shootdown handler, meta's slow
 *                      leave): reads only. NULL for a backend with no pkey.
 *   hw_budget    -     the most hardware keys it may hold (0 without pkeys).
 *   hw_stats     L M T those it holds, and those serving a key now.
 *
 * Every call that fails leaves the key's pages no more open than before and
 * the backend's state saying which pkey each page may carry (a retag that
 * fails midway is undone, or the pages are closed).
 *
 * Adding a backend: its own backend/backend_<name>.c (this table filled
 * in), the platform calls it needs under platform/, and a row in
 * backend/select.c, with its value of vmpk.h's enum vmpk_backend (which
 * src/codes.ts mirrors). No other file names a backend.
 */
#ifndef VMPK_BACKEND_H
#define VMPK_BACKEND_H

#include "internal.h"
#include "meta.h" /* REQUIRE_META_OPEN */

struct backend {
    const char *name;
    int kind;                 /* enum vmpk_backend: vmpk_info's, nothing decides on it */
    bool thread_local;        /* a gate opens pages to its own thread only */
    bool pkeys;               /* it tags pages with pkeys: the hardened
                               * filter lets pkey_mprotect through, and
                               * vmpk_info.pkru_stubbed asks */
    int (*setup)(struct vmpk_runtime *rt, int max_hw_keys);
    void (*teardown)(struct vmpk_runtime *rt);
    int (*begin)(struct vmpk_runtime *rt, vmpk_key key, int access);
    int (*end)(struct vmpk_runtime *rt, vmpk_key key);
    int (*end_in)(struct vmpk_runtime *rt, struct vmpk_thread *t, vmpk_key key);
    void (*key_init)(struct vmpk_runtime *rt, uint32_t slot);
    int (*protect)(struct vmpk_runtime *rt, uint32_t slot, int access);
    int (*grow)(struct vmpk_runtime *rt, uint32_t slot, uint32_t from, uint32_t to);
    int (*retire)(struct vmpk_runtime *rt, uint32_t slot);
    int (*pin)(struct vmpk_runtime *rt, uint32_t slot);
    void (*unpin)(struct vmpk_runtime *rt, uint32_t slot);
    bool (*gates_open)(const struct vmpk_runtime *rt);
    bool (*write_held)(const struct vmpk_runtime *rt, uint32_t slot);
    bool (*serves)(const struct vmpk_runtime *rt, uint32_t slot, int pkey);
    uint32_t (*thread_pkru)(const struct vmpk_runtime *rt, uint32_t pkru,
                            const struct vmpk_thread *t);
    int (*hw_budget)(const struct vmpk_runtime *rt);
    void (*hw_stats)(const struct vmpk_runtime *rt, uint32_t *held, uint64_t *resident);
};

/* The selection table's rows (backend/select.c). */
extern const struct backend vmpk__backend_pku;
extern const struct backend vmpk__backend_mprotect;
/* The backend vmpk_open's options ask for, VMPK_BACKEND read from the
 * environment for AUTO: 0, VMPK_E_INVALID or VMPK_E_UNSUPPORTED. */
int vmpk__backend_choose(int asked, const struct backend **out);

/* A backend's private state over the opaque bytes: `type` is a struct of
 * its own file, which checks that it fits (BACKEND_FITS). Only that
 * backend's file uses these. */
#define BACKEND_STATE(type, rt) ((type *)(rt)->be_state)
#define BACKEND_KEY(type, v) ((type *)(v)->be.bytes)
#define BACKEND_FITS(state, key)                                                           \
    _Static_assert(sizeof(state) <= BACKEND_STATE_BYTES, #state " fits be_state");         \
    _Static_assert(sizeof(key) <= sizeof(struct backend_vkey), #key " fits be")

/* --- the calls, with their preconditions checked ------------------------- */

#define BE_LMT(rt)                                                                         \
    do {                                                                                   \
        REQUIRE_LOCKED(rt);                                                                \
        REQUIRE_META_OPEN();                                                               \
        REQUIRE_NOT_IN_SIGNAL();                                                           \
    } while (0)

static inline int be_setup(struct vmpk_runtime *rt, int max_hw_keys)
{
    REQUIRE_META_OPEN();
    REQUIRE_NOT_IN_SIGNAL();
    return rt->be->setup(rt, max_hw_keys);
}

static inline void be_teardown(struct vmpk_runtime *rt)
{
    BE_LMT(rt);
    rt->be->teardown(rt);
}

static inline int be_end_in(struct vmpk_runtime *rt, struct vmpk_thread *t, vmpk_key key)
{
    REQUIRE_UNLOCKED(rt);
    REQUIRE_META_OPEN();
    REQUIRE_NOT_IN_SIGNAL();
    return rt->be->end_in(rt, t, key);
}

static inline void be_key_init(struct vmpk_runtime *rt, uint32_t slot)
{
    BE_LMT(rt);
    rt->be->key_init(rt, slot);
}

static inline int be_protect(struct vmpk_runtime *rt, uint32_t slot, int access)
{
    BE_LMT(rt);
    return rt->be->protect(rt, slot, access);
}

static inline int be_grow(struct vmpk_runtime *rt, uint32_t slot, uint32_t from, uint32_t to)
{
    BE_LMT(rt);
    REQUIRE(from < to);
    return rt->be->grow(rt, slot, from, to);
}

static inline int be_retire(struct vmpk_runtime *rt, uint32_t slot)
{
    BE_LMT(rt);
    return rt->be->retire(rt, slot);
}

static inline int be_pin(struct vmpk_runtime *rt, uint32_t slot)
{
    BE_LMT(rt);
    return rt->be->pin(rt, slot);
}

static inline void be_unpin(struct vmpk_runtime *rt, uint32_t slot)
{
    BE_LMT(rt);
    rt->be->unpin(rt, slot);
}

static inline bool be_gates_open(const struct vmpk_runtime *rt)
{
    BE_LMT(rt);
    return rt->be->gates_open(rt);
}

static inline bool be_write_held(const struct vmpk_runtime *rt, uint32_t slot)
{
    REQUIRE_IN_SIGNAL();
    return rt->be->write_held && rt->be->write_held(rt, slot);
}

static inline bool be_serves(const struct vmpk_runtime *rt, uint32_t slot, int pkey)
{
    REQUIRE_IN_SIGNAL();
    return rt->be->serves && rt->be->serves(rt, slot, pkey);
}

static inline uint32_t be_thread_pkru(const struct vmpk_runtime *rt, uint32_t pkru,
                                      const struct vmpk_thread *t)
{
    return rt->be->thread_pkru ? rt->be->thread_pkru(rt, pkru, t) : pkru;
}

static inline int be_hw_budget(const struct vmpk_runtime *rt)
{
    return rt->be->hw_budget(rt);
}

static inline void be_hw_stats(const struct vmpk_runtime *rt, uint32_t *held,
                               uint64_t *resident)
{
    BE_LMT(rt);
    rt->be->hw_stats(rt, held, resident);
}

#endif /* VMPK_BACKEND_H */
