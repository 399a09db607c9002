/*
 * vmpk internals.
 *
 * Glossary (two key spaces, never mixed up in names):
 *   vkey      a virtual key: a protection domain. Unlimited in number.
 *   slot      a vkey's entry in the runtime's vkey table. A handle (vmpk_key)
 *             names a slot and the slot's generation at creation.
 *   pkey      a hardware protection key number (1..15) as the kernel knows it.
 *   hw        an index into the pku backend's table of the hardware keys
 *             this runtime holds (struct hwkey, cache.h; the table is
 *             private to backend_pku.c).
 *   resident  a vkey bound to a hw key: its pages are tagged with that pkey.
 *   pin       an open gate (on any thread) keeps its vkey resident.
 *   window    the contiguous address space of one vkey; its regions are
 *             carved from it, so retagging a vkey is one syscall.
 *   used      the prefix of a window that regions have reached; only it is
 *             ever tagged or made accessible, the rest stays PROT_NONE.
 *   granule   the arena's unit (1 MiB): a window is whole granules, and
 *             the owner table maps a granule to its runtime and slot.
 *   gate      a begin/end pair on one thread: thread-local access on pku.
 *   perm      a vkey's process-wide access (vmpk_protect).
 *
 * Locking: rt->lock guards every slow path (rt_lock/rt_unlock, which record
 * the owner in checked builds so REQUIRE_LOCKED can ask "held by me?"). The
 * pku gate hit path takes no lock: it pins the hw key with a CAS and then
 * checks the handle's generation.
 */
#ifndef VMPK_INTERNAL_H
#define VMPK_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include "vmpk.h"
#include "os.h" /* struct os_counters, which struct runtime_counters begins with */

#define MAX_HW_KEYS 15
#define GRANULE ((size_t)1 << 20) /* 1 MiB: the arena unit, the smallest window */
#define ARENA_MAX ((size_t)4 << 40)   /* 4 TiB: a million default windows, 4x over */
#define HW_NONE 0xff          /* struct gate's hw where no hw key is pinned */
#define SLOT_BITS 24          /* slot index + 1 in a handle */
#define GEN_BITS 21
#define RT_BITS 3             /* runtime id: VMPK_MAX_RUNTIMES == 1 << RT_BITS */
#define MAX_SLOTS ((1u << SLOT_BITS) - 2)
#define GEN_RETIRED ((1u << GEN_BITS) - 1) /* a slot whose generations ran out */

#define relaxed_load(p) atomic_load_explicit((p), memory_order_relaxed)
#define relaxed_store(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
/* A counter owned by one writer: a plain add, readable by others. */
#define counter_add(p, n) relaxed_store((p), relaxed_load(p) + (n))

/* Pages [page, page + pages) of a window, as offsets from the window base. */
struct range {
    uint32_t page;
    uint32_t pages;
};

/* Per-key state private to a backend (struct vkey's `be`): opaque bytes
 * here; backend_<name>.c lays its own struct over them (backend.h's
 * BACKEND_KEY) and no other file reads them. */
struct backend_vkey {
    _Alignas(4) unsigned char bytes[4];
};

struct vkey {
    _Atomic uint32_t gen;     /* generation handles must carry; bumped on destroy */
    _Atomic uint8_t access;   /* perm: process-wide vmpk_access */
    bool live;
    bool exec;                /* VMPK_KEY_EXEC: its pages also execute */
    uint32_t granule;         /* the window's first granule */
    uint32_t granules;        /* the window's size in granules */
    uint32_t used;            /* pages of the window in use (tagged) */
    uint32_t nregions;
    /* Entries of the window's region table (regions.c) committed for this
     * key; 0 while `one` holds its region. */
    uint32_t cap;
    /* The backend's own per-key state: backend_<name>.c reads and writes
     * it, other files reach it only through struct backend. Its key_init
     * sets it up for a new key. */
    struct backend_vkey be;
    struct range one;         /* the live region while cap == 0 */
    /* NULL when unnamed; kept until the slot is reused. A buffer of
     * VMPK_MAX_NAME + 1 bytes in malloc, writable by anyone: it only ever
     * reaches a fault report, which reads the whole buffer and checks it
     * again (fault.c); it never decides anything. */
    char *name;
    uint32_t next_free;       /* free slot list, slot + 1 */
    uint32_t pins;            /* vmpk_pin, not yet unpinned */
};

/* One open gate on the calling thread. */
struct gate {
    struct vmpk_runtime *rt;
    vmpk_key key;
    uint32_t slot;
    uint8_t hw;               /* pku: the hw key pinned; HW_NONE otherwise */
    uint8_t access;           /* what this gate grants */
    uint8_t outer;            /* what an enclosing gate on the same vkey grants */
    unsigned births;          /* births_now() at begin: a clone copies PKRU */
};

/* Per-runtime counters kept by each thread, so the hot path never shares a
 * cache line with other threads. */
struct thread_counters {
    _Atomic uint64_t hits;
    _Atomic uint64_t pkru_writes;
    _Atomic uint64_t meta_pkru_writes; /* WRPKRUs that only opened or closed meta */
    /* The pku hit path (backend_pku.c) counts one word per call and the
     * rest is derived (thread_counters_total): each of its begins (hits)
     * and ends makes two checked WRPKRUs, one of which sets the gate's bits
     * unless they were already what the gate needs (`same`: then both only
     * opened or closed meta). */
    _Atomic uint64_t fast_begins, fast_ends, fast_same;
};

/* hits, pkru_writes and meta_pkru_writes with the hit path's derived in. */
static inline void thread_counters_total(const struct thread_counters *c, uint64_t *hits,
                                         uint64_t *pkru_writes, uint64_t *meta_pkru_writes)
{
    uint64_t begins = c->fast_begins, fast = begins + c->fast_ends;
    *hits = c->hits + begins;
    *pkru_writes = c->pkru_writes + fast - c->fast_same;
    *meta_pkru_writes = c->meta_pkru_writes + fast + c->fast_same;
}

/* Lives in the threads meta area (meta.h), so its gate stack, from which
 * the handlers compute the thread's PKRU, cannot be forged. */
struct vmpk_thread {
    /* The checked PKRU writes read these two (cpu.h). */
    void *self;               /* &vmpk__self of its thread */
    uint32_t pkru_expect;     /* PKRU this thread should hold (vmpk's bits) */
    /* A shootdown ran while this thread was inside vmpk: recompute every
     * bit before leaving. */
    _Atomic bool resync;
    uint32_t depth;
    struct gate gates[VMPK_MAX_GATE_DEPTH];
    struct thread_counters counters[VMPK_MAX_RUNTIMES];
    /* The bits to set on leaving: the union of gate and the vkey's perm on
     * pkey (pku). sync_v is NULL when there is nothing to set. */
    const struct vkey *sync_v;
    int sync_pkey;
    int sync_gate;
    uint32_t sync_counter;    /* runtime id whose pkru_writes counts it */
    struct vmpk_thread *next; /* registry, under the registry lock */
};

/* Begins with the system-call counters the platform keeps (os.h's struct
 * os_counters, handed down as a pointer to this struct), under their own
 * names here too. */
struct runtime_counters {
    union {
        struct os_counters os;
        struct {
            _Atomic uint64_t syscalls, pkey_mprotect_calls, mprotect_calls, meta_mprotect_calls;
        };
    };
    _Atomic uint64_t misses, evictions, faults_repaired, shootdowns, shootdown_signals;
};
_Static_assert(offsetof(struct runtime_counters, os) == 0 &&
                   offsetof(struct runtime_counters, syscalls) == offsetof(struct os_counters, syscalls) &&
                   offsetof(struct runtime_counters, pkey_mprotect_calls) ==
                       offsetof(struct os_counters, pkey_mprotect_calls) &&
                   offsetof(struct runtime_counters, mprotect_calls) ==
                       offsetof(struct os_counters, mprotect_calls) &&
                   offsetof(struct runtime_counters, meta_mprotect_calls) ==
                       offsetof(struct os_counters, meta_mprotect_calls),
               "struct runtime_counters must begin with struct os_counters (os.h)");

struct backend;

/* The size of a backend's own runtime state (backend.h's BACKEND_STATE). */
#define BACKEND_STATE_BYTES 2560
/* Where a runtime's changing half begins: past the largest page Linux uses
 * (64 KiB, arm64), so the fixed half has pages of its own on any kernel. */
#define RT_FIXED_BYTES 65536u

/* A runtime: first what is fixed from open to close, then, on pages of its
 * own, what changes while it is open. Without PKU (META_MPROTECT) the fixed
 * half is read-only from open to close and the changing half writable
 * (meta.h); with PKU the meta pkey guards both. */
struct vmpk_runtime {
    union {
        struct {
            const struct backend *be;
            uint8_t id;
            size_t page;
            /* vkey table: reserved once, committed as it grows, never moves. */
            struct vkey *slots;
            uint32_t window_granules;    /* default window of a new key */
            struct thread_counters base; /* thread counters at open, for this id */
        };
        unsigned char fixed_half[RT_FIXED_BYTES];
    };

    /* What changes while open. */
    pthread_mutex_t lock;
    _Atomic uint32_t nslots;  /* slots ever used; read unlocked by the gate path */
    uint32_t slots_committed;
    uint32_t free_slots;      /* free list head, slot + 1 */
    uint32_t live;
    uint32_t regions;
    uint64_t used_pages;

    /* The backend's own state: opaque here; backend_<name>.c lays its own
     * struct over it (backend.h's BACKEND_STATE) and no other file reads
     * it. Zero when setup runs. */
    _Alignas(8) unsigned char be_state[BACKEND_STATE_BYTES];

    struct runtime_counters c;
    /* Checked builds: the thread that holds `lock` (pthread_self), else 0. */
    _Atomic uintptr_t lock_owner;
};

/* handles (vkeys.c) */
vmpk_key vmpk__handle(const struct vmpk_runtime *rt, uint32_t slot, uint32_t gen);
/* Slot of a live vkey named by `key`, or a negative vmpk_error. */
int64_t vmpk__slot_of(const struct vmpk_runtime *rt, vmpk_key key);
/* The fields of a handle (layout in vkeys.c). None of them is checked. */
static inline uint32_t vmpk__gen_of(vmpk_key key)
{
    return (uint32_t)(key >> SLOT_BITS) & ((1u << GEN_BITS) - 1);
}

/* The slot; a zero slot field gives UINT32_MAX, past every table. */
static inline uint32_t handle_slot(vmpk_key key)
{
    return ((uint32_t)key & ((1u << SLOT_BITS) - 1)) - 1;
}

/* The runtime id, with any bits above it: equal to an id only if well formed. */
static inline uint64_t handle_rt(vmpk_key key)
{
    return key >> (SLOT_BITS + GEN_BITS);
}

static inline bool handle_malformed(vmpk_key key)
{
    return key == 0 || key >> (SLOT_BITS + GEN_BITS + RT_BITS);
}
void vmpk__slots_init(struct vmpk_runtime *rt);
int vmpk__slot_new(struct vmpk_runtime *rt, uint32_t *slot);
void vmpk__slot_release(struct vmpk_runtime *rt, uint32_t slot);

/* regions inside a window (regions.c) */
int vmpk__region_alloc(struct vmpk_runtime *rt, struct vkey *v, uint32_t pages, uint32_t *page);
int vmpk__region_free(struct vkey *v, uint32_t page, uint32_t *pages);
/* Takes back the region vmpk__region_alloc just made at page, which may
 * reach past v->used (its pages never came into use). */
void vmpk__region_undo(struct vkey *v, uint32_t page);
const struct range *vmpk__region_containing(const struct vkey *v, uint32_t page);
void vmpk__regions_clear(struct vkey *v);
size_t vmpk__regions_bytes(const struct vkey *v);
/* The window's region table in the regions meta area. */
struct range *vmpk__regions_table(uint32_t granule);

/* names (runtime.c): printable UTF-8, no C0, DEL or C1 control character. */
bool vmpk__name_valid(const char *name, size_t len);

uint8_t *vmpk__arena_addr(uint32_t granule);
static inline uint8_t *window_base(const struct vkey *v)
{
    return vmpk__arena_addr(v->granule);
}

/* per-thread state (thread.c) */
extern __thread struct vmpk_thread *vmpk__self __attribute__((tls_model("initial-exec")));
/* Bumped by every shootdown (shootdown.c) after the state changed and
 * before any signal: code that computed PKRU bits from that state re-checks
 * it afterwards (enter.h's meta_leave, the pku hit path). */
extern _Atomic uint64_t vmpk__revocations;
/* Sum of every thread's counters for runtime id. */
void vmpk__thread_counters(uint8_t id, struct thread_counters *sum);
/* The access the calling thread's gates grant on (rt, slot). */
static inline int vmpk__thread_gate_access(const struct vmpk_thread *t,
                                           const struct vmpk_runtime *rt, uint32_t slot)
{
    for (uint32_t i = t->depth; i-- > 0;)
        if (t->gates[i].rt == rt && t->gates[i].slot == slot)
            return t->gates[i].access;
    return VMPK_NONE;
}

/* fault handling (fault.c) */
int vmpk__fault_install(void);

/* Records errno for vmpk_last_errno() and returns VMPK_E_SYSTEM. */
int vmpk__system_error(int err);
/* A -errno from os.h as a vmpk_error. */
int vmpk__os_error(int r);

/* Preconditions as checks (require.c): live in the san, stub and tsan builds,
 * where the Makefile sets VMPK_CHECKS=1, compiled out of release. A failed
 * one writes the condition and its place to stderr and aborts. Kept off the
 * gate hit path, whose instruction count the stub build measures. */
#ifndef VMPK_CHECKS
#define VMPK_CHECKS 0
#endif
void vmpk__require_failed(const char *cond, const char *file, int line)
    __attribute__((noreturn, cold));
#define REQUIRE(cond)                                                                      \
    do {                                                                                   \
        if (VMPK_CHECKS && !(cond))                                                        \
            vmpk__require_failed(#cond, __FILE__, __LINE__);                               \
    } while (0)
/* Failures on demand for tests, where the checks are live: the next n
 * calls at a point fail (vmpk__fail_next[point] = n, require.c). Compiled
 * out of release. */
enum fail_point {
    FAIL_PKU_RETAG, /* backend_pku.c's retag of a whole window, midway */
    FAIL_PKU_GROW,  /* its tag of pages coming into use, midway */
    FAIL_POINTS
};
#if VMPK_CHECKS
extern _Atomic int vmpk__fail_next[FAIL_POINTS];
static inline bool fail_now(enum fail_point p)
{
    return relaxed_load(&vmpk__fail_next[p]) > 0 && atomic_fetch_sub(&vmpk__fail_next[p], 1) > 0;
}
#else
#define fail_now(p) false
#endif

/* (REQUIRE_META_OPEN and REQUIRE_META_CLOSED are meta.h's.) Inside one of
 * vmpk's signal handlers (meta_handler_enter..leave), or not: a handler
 * must not take a lock its interrupted thread may hold. */
extern __thread int vmpk__signal_depth __attribute__((tls_model("initial-exec")));
#define REQUIRE_IN_SIGNAL() REQUIRE(vmpk__signal_depth > 0)
#define REQUIRE_NOT_IN_SIGNAL() REQUIRE(vmpk__signal_depth == 0)
/* rt->lock is held by the calling thread, or not (rt_lock records the
 * owner where the checks are live). */
#define REQUIRE_LOCKED(rt) REQUIRE(relaxed_load(&(rt)->lock_owner) == (uintptr_t)pthread_self())
#define REQUIRE_UNLOCKED(rt) REQUIRE(relaxed_load(&(rt)->lock_owner) != (uintptr_t)pthread_self())

/* rt->lock, which lives in meta: meta open, never in a signal handler. */
static inline void rt_lock(struct vmpk_runtime *rt)
{
    REQUIRE_NOT_IN_SIGNAL();
    REQUIRE_UNLOCKED(rt); /* not recursive */
    pthread_mutex_lock(&rt->lock);
    if (VMPK_CHECKS)
        relaxed_store(&rt->lock_owner, (uintptr_t)pthread_self());
}

static inline void rt_unlock(struct vmpk_runtime *rt)
{
    REQUIRE_LOCKED(rt);
    if (VMPK_CHECKS)
        relaxed_store(&rt->lock_owner, 0);
    pthread_mutex_unlock(&rt->lock);
}
/* The errno of the calling thread's last VMPK_E_SYSTEM (errors.c). */
int vmpk__last_errno(void);

static inline int prot_of(int access)
{
    return access == VMPK_RW ? PROT_READ | PROT_WRITE
           : access == VMPK_READ ? PROT_READ
                                 : PROT_NONE;
}

/* The page protection that gives `access` to v's pages where page
 * protection alone decides (mprotect, and pku pages off a hw key). An exec
 * key's pages execute unless writable: W^X. Never PROT_EXEC alone, which
 * plain mprotect would tag with the kernel's execute-only pkey. */
static inline int prot_of_vkey(const struct vkey *v, int access)
{
    return v->exec && access == VMPK_READ ? PROT_READ | PROT_EXEC : prot_of(access);
}

/* pku: a resident vkey's pages, where PKRU decides. Instruction fetch
 * ignores PKRU, so an exec key's pages are RWX: writes still need PKRU. */
static inline int prot_resident(const struct vkey *v)
{
    return v->exec ? PROT_READ | PROT_WRITE | PROT_EXEC : PROT_READ | PROT_WRITE;
}

static inline int access_valid(int a)
{
    return a == VMPK_NONE || a == VMPK_READ || a == VMPK_RW;
}

#endif /* VMPK_INTERNAL_H */
