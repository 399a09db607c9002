/*
 * The arena: one reservation of address space for the whole process, cut
 * into granules. Each vkey's window is a run of whole granules, and owner[]
 * maps a granule to its (runtime, slot) so the fault handler can name the
 * vkey behind any address without a lock.
 *
 * The arena lives as long as the process: a closed runtime's windows go back
 * as PROT_NONE, so a view kept past close() still faults instead of reaching
 * whatever the kernel would have mapped there next.
 */
#include <pthread.h>
#include <stdlib.h>

#include "arena.h"
#include "enter.h"
#include "os.h"

_Static_assert(ARENA_MAX == VMPK_MAX_WINDOW_SIZE, "vmpk.h promises windows up to the arena's size");

#define ARENA_MIN ((size_t)16 << 30)
#define OWNER_CHUNK 16384             /* owner entries committed at a time */
#define FREE_CHUNK 512                /* free windows committed at a time */

/* The state (in the meta page) and its tables (in meta areas). */
#define arena (vmpk__meta.arena)
#define OWNERS ((_Atomic uint32_t *)vmpk__meta.owner_area)
#define FREE ((struct range *)vmpk__meta.free_area)

static int arena_reserve(void)
{
    for (size_t size = ARENA_MAX; size >= ARENA_MIN; size /= 2) {
        uint32_t n = (uint32_t)(size / GRANULE);
        void *base = os_reserve(NULL, size);
        if (!base)
            continue;
        /* Adjacent windows with the same protection and pkey merge back into
         * one VMA only if they share an anon_vma (or have none). The kernel
         * attaches one to a VMA at its first write fault and copies it into
         * every piece split off later. So give the whole arena one now, with
         * no split (each call covers the whole VMA): then every window shares
         * it, and 100,000 keys need tens of VMAs, not 100,000 (Linux 6.1
         * merges no piece back otherwise). */
        if (os_commit(NULL, base, size) == 0) {
            *(volatile uint8_t *)base = 1;
            os_discard(NULL, base, 4096);
            os_mprotect(NULL, base, size, PROT_NONE);
        }
        arena.base = base;
        arena.ngranules = n;
        return 0;
    }
    return VMPK_E_NOMEM;
}

static int owner_commit(uint32_t upto)
{
    while (arena.owner_committed < upto) {
        size_t bytes = OWNER_CHUNK * sizeof *OWNERS;
        int r = vmpk__meta_commit(NULL, OWNERS + arena.owner_committed, bytes);
        if (r)
            return vmpk__os_error(r);
        arena.owner_committed += OWNER_CHUNK;
    }
    return 0;
}

/*
 * The quarantine: views (JS ArrayBuffers) of a window are counted per
 * granule (vmpk_view_hold). A destroyed key's window whose granules still
 * have views goes to QUAR, not to FREE: it is handed to no later key until
 * the last view is released (detached, or collected), so a kept view faults
 * (PROT_NONE) instead of reaching the next tenant. Both tables are sized for
 * the whole arena (a window is at least one granule), so the quarantine
 * never overflows: it is bounded by the arena itself. They live in ordinary
 * memory, not the write-protected meta pages: a wrong count can only let a
 * window be reused early (what every window did before), never widen access.
 */
static _Atomic uint32_t *holds;  /* views per granule */
static struct range *quar;       /* quarantined windows */
static uint32_t nquar;

static int quarantine_reserve(void)
{
    if (holds)
        return 0;
    size_t hbytes = (size_t)arena.ngranules * sizeof *holds;
    size_t qbytes = (size_t)arena.ngranules * sizeof *quar;
    void *h = os_reserve(NULL, hbytes), *q = os_reserve(NULL, qbytes);
    if (!h || !q || os_commit(NULL, h, hbytes) || os_commit(NULL, q, qbytes))
        return VMPK_E_NOMEM; /* reservations left behind: address space only */
    holds = h;
    quar = q;
    return 0;
}

static bool window_held(uint32_t granule, uint32_t granules)
{
    for (uint32_t i = 0; i < granules; i++)
        if (atomic_load(&holds[granule + i]))
            return true;
    return false;
}

static bool take_free_window(uint32_t granules, uint32_t *granule)
{
    for (uint32_t i = 0; i < arena.nfree; i++) {
        if (FREE[i].pages != granules)
            continue;
        *granule = FREE[i].page;
        FREE[i] = FREE[--arena.nfree];
        return true;
    }
    return false;
}

int vmpk__arena_window_new(uint32_t owner, uint32_t granules, uint32_t *out)
{
    REQUIRE_META_OPEN();
    REQUIRE_NOT_IN_SIGNAL();
    int err = 0;
    uint32_t g;
    pthread_mutex_lock(&arena.lock);
    if (!arena.base && (err = arena_reserve()))
        goto done;
    if ((err = quarantine_reserve()))
        goto done;
    if (!take_free_window(granules, &g)) {
        uint32_t next = atomic_load(&arena.next);
        if (granules > arena.ngranules - next) {
            err = VMPK_E_NOMEM;
            goto done;
        }
        if ((err = owner_commit(next + granules)))
            goto done;
        g = next;
        atomic_store(&arena.next, next + granules);
    }
    for (uint32_t i = 0; i < granules; i++)
        atomic_store_explicit(&OWNERS[g + i], owner, memory_order_release);
    *out = g;
done:
    pthread_mutex_unlock(&arena.lock);
    return err;
}

int vmpk__arena_window_free(uint32_t granule, uint32_t granules)
{
    REQUIRE_META_OPEN();
    REQUIRE_NOT_IN_SIGNAL();
    int err = 0;
    pthread_mutex_lock(&arena.lock);
    if (arena.nfree == arena.free_committed) {
        if (vmpk__meta_commit(NULL, FREE + arena.free_committed, FREE_CHUNK * sizeof *FREE)) {
            err = VMPK_E_NOMEM; /* the window is lost to reuse, nothing else */
            goto done;
        }
        arena.free_committed += FREE_CHUNK;
    }
    for (uint32_t i = 0; i < granules; i++)
        atomic_fetch_or(&OWNERS[granule + i], OWNER_FREED);
    if (holds && window_held(granule, granules))
        quar[nquar++] = (struct range){ granule, granules };
    else
        FREE[arena.nfree++] = (struct range){ granule, granules };
done:
    pthread_mutex_unlock(&arena.lock);
    return err;
}

uint8_t *vmpk__arena_addr(uint32_t granule)
{
    return arena.base + (size_t)granule * GRANULE;
}

uint32_t vmpk__arena_owner(uintptr_t addr, uint32_t *granule)
{
    uintptr_t base = (uintptr_t)arena.base;
    if (!base || addr < base)
        return 0;
    uintptr_t g = (addr - base) / GRANULE;
    if (g >= atomic_load_explicit(&arena.next, memory_order_relaxed))
        return 0;
    if (granule)
        *granule = (uint32_t)g;
    return atomic_load_explicit(&OWNERS[g], memory_order_acquire);
}

int vmpk__arena_view_hold(uintptr_t addr, int delta)
{
    uint32_t g;
    int err = 0;
    if (delta != 1 && delta != -1)
        return VMPK_E_INVALID;
    pthread_mutex_lock(&arena.lock);
    uint32_t owner = holds ? vmpk__arena_owner(addr, &g) : 0;
    if (!owner) {
        err = VMPK_E_NOT_REGION;
    } else if (delta > 0) {
        /* A view is made only of a live key's window. */
        if (owner & OWNER_FREED)
            err = VMPK_E_STALE;
        else if (atomic_load(&holds[g]) == UINT32_MAX)
            err = VMPK_E_NOMEM;
        else
            atomic_fetch_add(&holds[g], 1);
    } else if (!atomic_load(&holds[g])) {
        err = VMPK_E_INVALID; /* more releases than holds */
    } else if (atomic_fetch_sub(&holds[g], 1) == 1 && (owner & OWNER_FREED)) {
        /* The last view of a quarantined window's granule: once none of its
         * granules has a view, the window may go to a later key. */
        for (uint32_t i = 0; i < nquar; i++) {
            struct range q = quar[i];
            if (g < q.page || g >= q.page + q.pages)
                continue;
            if (window_held(q.page, q.pages))
                break;
            if (arena.nfree == arena.free_committed) {
                if (vmpk__meta_commit(NULL, FREE + arena.free_committed, FREE_CHUNK * sizeof *FREE))
                    break; /* stays quarantined: lost to reuse, nothing else */
                arena.free_committed += FREE_CHUNK;
            }
            quar[i] = quar[--nquar];
            FREE[arena.nfree++] = q;
            break;
        }
    }
    pthread_mutex_unlock(&arena.lock);
    return err;
}

uint32_t vmpk__arena_quarantined(void)
{
    pthread_mutex_lock(&arena.lock);
    uint32_t n = nquar;
    pthread_mutex_unlock(&arena.lock);
    return n;
}

int vmpk_view_hold(const void *addr, int delta)
{
    /* The arena's lock and free list are in the meta pages: open them. */
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return VMPK_E_NOMEM;
    int r = delta == 0 ? (int)vmpk__arena_quarantined()
                       : vmpk__arena_view_hold((uintptr_t)addr, delta);
    meta_leave(t, -1);
    return r;
}
