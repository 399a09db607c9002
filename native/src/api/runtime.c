/*
 * The public API: argument checks, locking, and the calls into the vkey
 * table, the arena, the regions and the backend.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend.h"
#include "enter.h"
#include "gate.h"
#include "harden.h"
#include "internal.h"
#include "os.h"

/* Each public call that changes state opens meta first and closes it on
 * every path out (enter.h). Runtimes live at fixed places in the runtimes
 * meta area, one per id, kept after close and reused by the next open of
 * the id, so a handler that races with close() never reads freed memory. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t next_id;

/* The body of an entry point on rt: meta open, rt checked, then `expr`.
 * `counted`: the meta switches count in rt's stats when expr succeeds
 * (stats, lookup and close leave them out, so that reading changes
 * nothing and a closed runtime counts nothing). */
#define ENTRY(rt, counted, expr)                                                           \
    do {                                                                                   \
        struct vmpk_thread *t_ = meta_enter();                                             \
        if (!t_)                                                                           \
            return VMPK_E_NOMEM;                                                           \
        int id_ = runtime_id_of(rt);                                                       \
        int err_ = id_ < 0 ? VMPK_E_INVALID : (expr);                                      \
        meta_leave(t_, (counted) && !err_ ? id_ : -1);                                     \
        return err_;                                                                       \
    } while (0)

int vmpk_last_errno(void)
{
    return vmpk__last_errno();
}

int vmpk_pku_supported(void)
{
    return os_pkey_supported();
}

/* Takes a free id and its runtime memory (kept from an earlier open). */
static int runtime_take(struct vmpk_runtime **out)
{
    int err = VMPK_E_TOO_MANY;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < VMPK_MAX_RUNTIMES; i++) {
        uint8_t id = (uint8_t)((next_id + i) % VMPK_MAX_RUNTIMES);
        if (atomic_load(&vmpk__runtimes[id]))
            continue;
        struct vmpk_runtime *rt =
            (struct vmpk_runtime *)(vmpk__meta_rts.area + (size_t)id * RT_STRIDE);
        if (!vmpk__meta_rts.committed[id]) {
            if (vmpk__meta_commit(NULL, rt, RT_STRIDE)) {
                err = VMPK_E_NOMEM;
                break;
            }
            rt->id = id;
            vmpk__slots_init(rt);
            vmpk__meta_rts.committed[id] = true;
        }
        next_id = (uint8_t)(id + 1); /* rotate ids, so old handles rarely alias */
        *out = rt;
        err = 0;
        break;
    }
    pthread_mutex_unlock(&registry_lock);
    return err;
}

static int open_in(const struct backend *be, const struct vmpk_options *opts,
                   vmpk_runtime **out);

int vmpk_open(const struct vmpk_options *opts, vmpk_runtime **out)
{
    struct vmpk_options o = opts ? *opts : (struct vmpk_options){ 0 };
    const struct backend *be;
    if (!out || o.max_hw_keys < 0 || o.max_hw_keys > MAX_HW_KEYS ||
        o.window_size > (size_t)UINT32_MAX * GRANULE || (o.harden != 0 && o.harden != 1))
        return VMPK_E_INVALID;
    int err = vmpk__backend_choose(o.backend, &be);
    if (err)
        return err;
    /* The band first, so that the metadata's reservation lies in it too;
     * the probe and the filter before the first write to the metadata: a
     * filter that fakes mprotect would make that write fault. */
    if (o.harden && (err = vmpk__harden_prepare()))
        return err;
    if ((err = vmpk__fault_install()))
        return err;
    if (o.harden && (err = vmpk__harden(be->pkeys)))
        return err;
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return VMPK_E_NOMEM;
    if ((err = vmpk__meta_runtimes_open())) {
        meta_leave(t, -1);
        return vmpk__os_error(err);
    }
    err = open_in(be, &o, out);
    vmpk__meta_runtimes_close(err ? NULL : &(*out)->c);
    meta_leave(t, -1);
    return err;
}

static int open_in(const struct backend *be, const struct vmpk_options *opts,
                   vmpk_runtime **out)
{
    struct vmpk_options o = *opts;
    struct vmpk_runtime *rt;
    int err;
    if ((err = runtime_take(&rt)))
        return err;
    if ((err = vmpk__meta_runtime_fixed(rt, true, NULL)))
        return vmpk__os_error(err);

    /* Reset everything but the id and the slot reservation, which are kept
     * (committed slot pages stay committed). */
    struct vkey *slots = rt->slots;
    uint32_t committed = rt->slots_committed;
    uint8_t id = rt->id;
    memset(rt, 0, sizeof *rt);
    rt->slots = slots;
    rt->slots_committed = committed;
    rt->id = id;
    pthread_mutex_init(&rt->lock, NULL);
    rt->be = be;
    rt->page = os_page_size();
    rt->window_granules = o.window_size ? (uint32_t)((o.window_size + GRANULE - 1) / GRANULE) : 1;
    vmpk__thread_counters(id, &rt->base);
    err = be_setup(rt, o.max_hw_keys);
    vmpk__meta_runtime_fixed(rt, false, &rt->c);
    if (err)
        return err;
    atomic_store(&vmpk__runtimes[id], rt);
    *out = rt;
    return 0;
}

static bool gates_open(const struct vmpk_runtime *rt)
{
    if (be_gates_open(rt))
        return true;
    for (uint32_t s = 0; s < rt->nslots; s++)
        if (rt->slots[s].live && rt->slots[s].pins)
            return true;
    return false;
}

static int destroy_locked(struct vmpk_runtime *rt, uint32_t slot);

static int close_in(struct vmpk_runtime *rt, char **names, uint32_t room);

/* The names are freed after meta is closed again (see vmpk_key_create):
 * close_in hands them over in names[], made before meta opens, with room
 * for every slot. Keys made between the count and the lock leave it short:
 * close_in then changes nothing (CLOSE_RETRY) and the count is taken again,
 * so no name is ever freed with meta open. */
#define CLOSE_RETRY 1

int vmpk_close(vmpk_runtime *rt)
{
    int err;
    do {
        if (runtime_id_of(rt) < 0)
            return VMPK_E_INVALID;
        uint32_t room = atomic_load(&rt->nslots);
        char **names = room ? calloc(room, sizeof *names) : NULL;
        if (room && !names)
            return VMPK_E_NOMEM;
        struct vmpk_thread *t = meta_enter();
        if (!t) {
            free(names);
            return VMPK_E_NOMEM;
        }
        int r = 0;
        if (runtime_id_of(rt) < 0) {
            err = VMPK_E_INVALID;
        } else if ((r = vmpk__meta_runtimes_open())) {
            err = vmpk__os_error(r);
        } else {
            err = close_in(rt, names, room);
            vmpk__meta_runtimes_close(NULL);
        }
        meta_leave(t, -1);
        REQUIRE_META_CLOSED();
        for (uint32_t i = 0; err == 0 && i < room; i++)
            free(names[i]);
        free(names);
    } while (err == CLOSE_RETRY);
    return err;
}

static int close_in(struct vmpk_runtime *rt, char **names, uint32_t room)
{
    rt_lock(rt);
    if (rt->nslots > room) {
        rt_unlock(rt);
        return CLOSE_RETRY;
    }
    if (gates_open(rt)) {
        rt_unlock(rt);
        return VMPK_E_BUSY;
    }
    int err = 0;
    for (uint32_t s = 0; s < rt->nslots; s++) {
        if (!rt->slots[s].live)
            continue;
        int r = destroy_locked(rt, s);
        err = err ? err : r;
    }
    if (err) { /* the keys left alive stay usable; close can be retried */
        rt_unlock(rt);
        return err;
    }
    be_teardown(rt);
    for (uint32_t s = 0; s < rt->nslots; s++) {
        names[s] = rt->slots[s].name;
        rt->slots[s].name = NULL;
    }
    atomic_store(&vmpk__runtimes[rt->id], NULL);
    rt_unlock(rt);
    return 0;
}

int vmpk_info(const vmpk_runtime *rt, struct vmpk_info *out)
{
    if (runtime_id_of(rt) < 0 || !out)
        return VMPK_E_INVALID;
    *out = (struct vmpk_info){
        .backend = rt->be->kind,
        .thread_local = rt->be->thread_local,
        .hw_keys_budget = be_hw_budget(rt),
        .page_size = rt->page,
        .window_size = (size_t)rt->window_granules * GRANULE,
        .pkru_stubbed = rt->be->pkeys && os_pkeys_stubbed(),
    };
    return 0;
}

static int stats_in(const struct vmpk_runtime *rt, struct vmpk_stats *out);

int vmpk_stats(const vmpk_runtime *rt, struct vmpk_stats *out)
{
    ENTRY(rt, false, out ? stats_in(rt, out) : VMPK_E_INVALID);
}

static int stats_in(const struct vmpk_runtime *rt, struct vmpk_stats *out)
{
    struct thread_counters t;
    vmpk__thread_counters(rt->id, &t);
    uint64_t hits, pkru_writes, meta_pkru_writes, base_hits, base_pkru, base_meta;
    thread_counters_total(&t, &hits, &pkru_writes, &meta_pkru_writes);
    thread_counters_total(&rt->base, &base_hits, &base_pkru, &base_meta);
    struct vmpk_runtime *m = (struct vmpk_runtime *)rt; /* the lock only */
    rt_lock(m);
    uint32_t n;
    uint64_t resident, names = 0, ranges = 0, pins = 0;
    be_hw_stats(rt, &n, &resident);
    for (uint32_t s = 0; s < rt->nslots; s++) {
        const struct vkey *v = &rt->slots[s];
        names += v->name ? strnlen(v->name, VMPK_MAX_NAME) + 1 : 0;
        pins += v->live ? v->pins : 0;
        ranges += vmpk__regions_bytes(v);
    }
    *out = (struct vmpk_stats){
        .gates = hits - base_hits + atomic_load(&rt->c.misses),
        .hits = hits - base_hits,
        .misses = atomic_load(&rt->c.misses),
        .evictions = atomic_load(&rt->c.evictions),
        .pkey_mprotect_calls = atomic_load(&rt->c.pkey_mprotect_calls),
        .mprotect_calls = atomic_load(&rt->c.mprotect_calls),
        .syscalls = atomic_load(&rt->c.syscalls),
        .pkru_writes = pkru_writes - base_pkru,
        .meta_pkru_writes = meta_pkru_writes - base_meta,
        .meta_mprotect_calls = atomic_load(&rt->c.meta_mprotect_calls),
        .faults_repaired = atomic_load(&rt->c.faults_repaired),
        .shootdowns = atomic_load(&rt->c.shootdowns),
        .live_vkeys = rt->live,
        .resident_vkeys = resident,
        .hw_keys_held = n,
        .regions = rt->regions,
        .mapped_bytes = rt->used_pages * rt->page,
        .metadata_bytes = (uint64_t)rt->nslots * sizeof(struct vkey) + names + ranges +
                          (uint64_t)rt->nslots * sizeof(uint32_t), /* owner entries */
        .shootdown_signals = atomic_load(&rt->c.shootdown_signals),
        .pins = pins,
    };
    rt_unlock(m);
    return 0;
}

static int key_create_in(struct vmpk_runtime *rt, char *copy, int access, size_t window_size,
                         vmpk_key *out, char **old);

int vmpk_key_create(vmpk_runtime *rt, const char *name, int access, size_t window_size,
                    vmpk_key *out)
{
    /* malloc and free run with meta closed: a heap whose chunks a stray
     * write forged may make malloc return, or free write to, any address,
     * meta included, and with meta open that would land. */
    size_t name_len = name ? strnlen(name, VMPK_MAX_NAME + 1) : 0;
    if (name_len > VMPK_MAX_NAME || !vmpk__name_valid(name, name_len))
        return VMPK_E_INVALID;
    char *copy = NULL, *old = NULL;
    /* The whole buffer, zero-filled: a fault report reads all of it. */
    if (name_len && !(copy = calloc(1, VMPK_MAX_NAME + 1)))
        return VMPK_E_NOMEM;
    if (name_len)
        memcpy(copy, name, name_len);
    struct vmpk_thread *t = meta_enter();
    if (!t) {
        free(copy);
        return VMPK_E_NOMEM;
    }
    int id = runtime_id_of(rt);
    int err = id < 0 ? VMPK_E_INVALID
                     : key_create_in(rt, copy, access, window_size, out, &old);
    meta_leave(t, !err ? id : -1);
    REQUIRE_META_CLOSED();
    if (err)
        free(copy);
    free(old);
    return err;
}

static int key_create_in(struct vmpk_runtime *rt, char *copy, int access, size_t window_size,
                         vmpk_key *out, char **old)
{
    bool exec = access & VMPK_KEY_EXEC;
    access &= ~VMPK_KEY_EXEC;
    if (!out || !access_valid(access) || (exec && access != VMPK_READ) ||
        window_size > (size_t)UINT32_MAX * GRANULE)
        return VMPK_E_INVALID;
    uint32_t granules = window_size ? (uint32_t)((window_size + GRANULE - 1) / GRANULE)
                                    : rt->window_granules;

    REQUIRE_META_OPEN();
    rt_lock(rt);
    uint32_t slot, granule;
    int err = vmpk__slot_new(rt, &slot);
    if (!err && (err = vmpk__arena_window_new(OWNER(rt->id, slot), granules, &granule)))
        vmpk__slot_release(rt, slot);
    if (!err) {
        struct vkey *v = &rt->slots[slot];
        *old = v->name; /* the name of the slot's previous, destroyed vkey */
        v->name = copy;
        v->granule = granule;
        v->granules = granules;
        v->used = 0;
        v->nregions = v->cap = 0;
        v->exec = exec;
        atomic_store(&v->access, (uint8_t)access);
        be_key_init(rt, slot);
        v->live = true;
        rt->live++;
        *out = vmpk__handle(rt, slot, atomic_load(&v->gen));
    }
    rt_unlock(rt);
    return err;
}

/* Under rt->lock, meta open. */
static int destroy_locked(struct vmpk_runtime *rt, uint32_t slot)
{
    REQUIRE_LOCKED(rt);
    REQUIRE_META_OPEN();
    struct vkey *v = &rt->slots[slot];
    if (v->pins)
        return VMPK_E_BUSY;
    int err = be_retire(rt, slot); /* pages now PROT_NONE on pkey 0 */
    if (err)
        return err;
    if (v->used)
        os_discard(&rt->c, window_base(v), (size_t)v->used * rt->page);
    vmpk__arena_window_free(v->granule, v->granules);
    rt->regions -= v->nregions;
    rt->used_pages -= v->used;
    vmpk__regions_clear(v);
    vmpk__slot_release(rt, slot);
    rt->live--;
    return 0;
}

/* An entry point on one key: `body` under rt->lock, `slot` the key's. */
#define WITH_SLOT(rt, key, slot, body)                                                     \
    ENTRY(rt, true, ({                                                                     \
              rt_lock(rt);                                                                 \
              int64_t slot = vmpk__slot_of((rt), (key));                                   \
              int r_ = slot < 0 ? (int)slot : (body);                                      \
              rt_unlock(rt);                                                               \
              r_;                                                                          \
          }))

int vmpk_key_destroy(vmpk_runtime *rt, vmpk_key key)
{
    WITH_SLOT(rt, key, slot, destroy_locked(rt, (uint32_t)slot));
}

static int alloc_locked(struct vmpk_runtime *rt, uint32_t slot, uint32_t pages, void **out)
{
    REQUIRE_LOCKED(rt);
    struct vkey *v = &rt->slots[slot];
    uint32_t page;
    int err = vmpk__region_alloc(rt, v, pages, &page);
    if (err)
        return err;
    if (page + pages > v->used) {
        if ((err = be_grow(rt, slot, v->used, page + pages))) {
            vmpk__region_undo(v, page); /* region_free refuses: past v->used */
            return err;
        }
        rt->used_pages += page + pages - v->used;
        v->used = page + pages;
    }
    rt->regions++;
    *out = window_base(v) + (size_t)page * rt->page;
    return 0;
}

int vmpk_alloc(vmpk_runtime *rt, vmpk_key key, size_t size, void **out)
{
    size_t page = os_page_size();
    if (!out || size == 0 || size > (size_t)UINT32_MAX * page)
        return VMPK_E_INVALID;
    uint32_t pages = (uint32_t)((size + page - 1) / page);
    WITH_SLOT(rt, key, slot, alloc_locked(rt, (uint32_t)slot, pages, out));
}

static int free_locked(struct vmpk_runtime *rt, uint32_t slot, void *region)
{
    REQUIRE_LOCKED(rt);
    struct vkey *v = &rt->slots[slot];
    uintptr_t base = (uintptr_t)window_base(v), at = (uintptr_t)region;
    if (at < base || at >= base + (uintptr_t)v->used * rt->page || (at - base) % rt->page)
        return VMPK_E_NOT_REGION;
    uint32_t pages;
    int err = vmpk__region_free(v, (uint32_t)((at - base) / rt->page), &pages);
    if (err)
        return err;
    /* The pages stay in the key's domain, zeroed, for its next alloc. */
    os_discard(&rt->c, region, (size_t)pages * rt->page);
    rt->regions--;
    return 0;
}

int vmpk_free(vmpk_runtime *rt, vmpk_key key, void *region)
{
    WITH_SLOT(rt, key, slot, free_locked(rt, (uint32_t)slot, region));
}

int vmpk_protect(vmpk_runtime *rt, vmpk_key key, int access)
{
    if (!access_valid(access))
        return VMPK_E_INVALID;
    WITH_SLOT(rt, key, slot,
              rt->slots[slot].exec && access != VMPK_READ
                  ? VMPK_E_INVALID /* code stays readable, and unwritable outside gates */
                  : be_protect(rt, (uint32_t)slot, access));
}

/* The backend's begin and end are entry points themselves (the gate path
 * is the hot one). They trust rt only once it matches the key's runtime in
 * meta (begin) or an open gate's record (end): a forged struct may lend
 * them a backend to call, but never while meta is open. */
int vmpk_begin(vmpk_runtime *rt, vmpk_key key, int access)
{
    return rt ? rt->be->begin(rt, key, access) : VMPK_E_INVALID;
}

int vmpk_end(vmpk_runtime *rt, vmpk_key key)
{
    return rt ? rt->be->end(rt, key) : VMPK_E_INVALID;
}

static struct vmpk_runtime *runtime_of(vmpk_key key)
{
    return atomic_load_explicit(&vmpk__runtimes[handle_rt(key) & (VMPK_MAX_RUNTIMES - 1)],
                                memory_order_acquire);
}

/* Shared by the handle and the index entries: called by name, an exported
 * function would go through the PLT (it may be interposed). */
static inline int enter_key(vmpk_key key, int access)
{
    struct vmpk_runtime *rt = runtime_of(key);
    return rt ? rt->be->begin(rt, key, access) : key ? VMPK_E_STALE : VMPK_E_INVALID;
}

static inline int leave_key(vmpk_key key)
{
    struct vmpk_runtime *rt = runtime_of(key);
    return rt ? rt->be->end(rt, key) : VMPK_E_GATE_ORDER;
}

int vmpk_enter(vmpk_key key, int access)
{
    return enter_key(key, access);
}

int vmpk_leave(vmpk_key key)
{
    return leave_key(key);
}

/* Gate indexes (vmpk.h): runtime id | generation | slot + 1, in 3, 9 and 20
 * bits. The generation travels whole, so decoding gives back the very
 * handle, which the gate then checks in full. */
#define IX_SLOT_BITS 20
#define IX_GEN_BITS 9
_Static_assert(RT_BITS + IX_GEN_BITS + IX_SLOT_BITS == 32, "an index is 32 bits");

uint32_t vmpk_gate_index(vmpk_key key)
{
    uint32_t slot1 = (uint32_t)key & ((1u << SLOT_BITS) - 1), gen = vmpk__gen_of(key);
    if (handle_malformed(key) || !slot1 || slot1 >> IX_SLOT_BITS || gen >> IX_GEN_BITS)
        return 0;
    return (uint32_t)handle_rt(key) << (IX_GEN_BITS + IX_SLOT_BITS) | gen << IX_SLOT_BITS | slot1;
}

static inline vmpk_key key_of_index(uint32_t ix)
{
    uint64_t slot1 = ix & ((1u << IX_SLOT_BITS) - 1);
    uint64_t gen = (ix >> IX_SLOT_BITS) & ((1u << IX_GEN_BITS) - 1);
    uint64_t id = ix >> (IX_GEN_BITS + IX_SLOT_BITS);
    return id << (SLOT_BITS + GEN_BITS) | gen << SLOT_BITS | slot1;
}

int vmpk_enter_r(uint32_t index)
{
    return enter_key(key_of_index(index), VMPK_READ);
}

int vmpk_enter_rw(uint32_t index)
{
    return enter_key(key_of_index(index), VMPK_RW);
}

int vmpk_leave_index(uint32_t index)
{
    return leave_key(key_of_index(index));
}

static __thread int32_t mailbox[2] __attribute__((tls_model("initial-exec")));

int32_t *vmpk_gate_mailbox(void)
{
    return mailbox;
}

/* The index read once: a second read could see another value. */
#define MAILBOX_INDEX() ((uint32_t)*(volatile int32_t *)&mailbox[0])

void vmpk_mailbox_enter_r(void)
{
    mailbox[1] = enter_key(key_of_index(MAILBOX_INDEX()), VMPK_READ);
}

void vmpk_mailbox_enter_rw(void)
{
    mailbox[1] = enter_key(key_of_index(MAILBOX_INDEX()), VMPK_RW);
}

void vmpk_mailbox_leave(void)
{
    mailbox[1] = leave_key(key_of_index(MAILBOX_INDEX()));
}

static int pin_locked(struct vmpk_runtime *rt, uint32_t slot)
{
    int err = be_pin(rt, slot);
    if (!err)
        rt->slots[slot].pins++;
    return err;
}

static int unpin_locked(struct vmpk_runtime *rt, uint32_t slot)
{
    if (!rt->slots[slot].pins)
        return VMPK_E_INVALID;
    be_unpin(rt, slot);
    rt->slots[slot].pins--;
    return 0;
}

int vmpk_pin(vmpk_runtime *rt, vmpk_key key)
{
    WITH_SLOT(rt, key, slot, pin_locked(rt, (uint32_t)slot));
}

int vmpk_unpin(vmpk_runtime *rt, vmpk_key key)
{
    WITH_SLOT(rt, key, slot, unpin_locked(rt, (uint32_t)slot));
}

static int lookup_in(const struct vmpk_runtime *rt, const void *addr, vmpk_key *key,
                     void **region, size_t *region_size);

int vmpk_lookup(const vmpk_runtime *rt, const void *addr, vmpk_key *key, void **region,
                size_t *region_size)
{
    ENTRY(rt, false, lookup_in(rt, addr, key, region, region_size));
}

static int lookup_in(const struct vmpk_runtime *rt, const void *addr, vmpk_key *key,
                     void **region, size_t *region_size)
{
    uint32_t owner = vmpk__arena_owner((uintptr_t)addr, NULL);
    if (!owner || (owner & OWNER_FREED) || OWNER_RT(owner) != rt->id)
        return VMPK_E_NOT_REGION;
    struct vmpk_runtime *m = (struct vmpk_runtime *)rt;
    rt_lock(m);
    uint32_t slot = OWNER_SLOT1(owner) - 1;
    const struct vkey *v = &rt->slots[slot];
    size_t off = (size_t)((const uint8_t *)addr - window_base(v));
    const struct range *r = v->live ? vmpk__region_containing(v, (uint32_t)(off / rt->page)) : NULL;
    if (r) {
        if (key)
            *key = vmpk__handle(rt, slot, atomic_load(&v->gen));
        if (region)
            *region = window_base(v) + (size_t)r->page * rt->page;
        if (region_size)
            *region_size = (size_t)r->pages * rt->page;
    }
    rt_unlock(m);
    return r ? 0 : VMPK_E_NOT_REGION;
}

const char *vmpk_strerror(int err)
{
    switch (err) {
    case VMPK_OK: return "success";
    case VMPK_E_INVALID: return "invalid argument";
    case VMPK_E_STALE: return "the key was destroyed or does not belong to this runtime";
    case VMPK_E_NOMEM: return "out of memory or address space";
    case VMPK_E_UNSUPPORTED: return "the requested backend is not available on this machine";
    case VMPK_E_KEYS_PINNED: return "every hardware key is pinned by an open gate";
    case VMPK_E_BUSY: return "gates are open on the key";
    case VMPK_E_GATE_ORDER: return "end() does not match the innermost gate of this thread";
    case VMPK_E_WINDOW_FULL: return "the key's address window is full";
    case VMPK_E_NOT_REGION: return "not the start of a live region of this key";
    case VMPK_E_GATE_DEPTH: return "gates nested too deeply";
    case VMPK_E_NO_HW_KEYS: return "no hardware protection key could be allocated";
    case VMPK_E_SYSTEM: return "unexpected operating system error";
    case VMPK_E_TOO_MANY: return "too many live keys or runtimes";
    case VMPK_E_FILTERED: return "a seccomp filter in place stops a system call vmpk needs";
    default: return "unknown error";
    }
}

/* Under the runtime's lock, so the key cannot be destroyed, nor its window
 * handed to another key, between the check and the access. The probe
 * itself takes no lock: a fault goes to the lock-free handler. */
static int probe_key_in(struct vmpk_runtime *rt, vmpk_key key, const void *addr, int access)
{
    rt_lock(rt);
    int64_t slot = vmpk__slot_of(rt, key);
    int r;
    if (slot < 0) {
        r = 0; /* destroyed: whoever holds the window now is another key */
    } else {
        const struct vkey *v = &rt->slots[slot];
        uintptr_t off = (uintptr_t)addr - (uintptr_t)window_base(v);
        if (off >= (uintptr_t)v->granules * GRANULE)
            r = VMPK_E_NOT_REGION;
        else
            r = access == VMPK_NONE ? 1 : vmpk_probe(addr, access);
    }
    rt_unlock(rt);
    return r;
}

int vmpk_probe_key(vmpk_key key, const void *addr, int access)
{
    if (!access_valid(access) || handle_malformed(key))
        return VMPK_E_INVALID;
    struct vmpk_runtime *rt = runtime_of(key);
    if (!rt)
        return 0; /* its runtime was closed, and the key with it */
    ENTRY(rt, false, probe_key_in(rt, key, addr, access));
}
