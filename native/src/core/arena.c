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
    int err = 0;
    uint32_t g;
    pthread_mutex_lock(&arena.lock);
    if (!arena.base && (err = arena_reserve()))
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
