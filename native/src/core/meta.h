/*
 * Write-protected metadata (invariant 6), see meta.c.
 *
 * Everything that decides who may access what lives in meta pages: this
 * header's meta page (page-aligned, so code reaches it RIP-relative and no
 * writable pointer leads to it) and one reservation carved into fixed areas:
 *
 *   runtimes  struct vmpk_runtime by id (hw key table, counters, lock)
 *   threads   struct vmpk_thread, THREAD_STRIDE apart (gate stacks,
 *             expected PKRU)
 *   owner     the arena's granule -> (runtime, slot) table
 *   free      the arena's windows for reuse
 *   slots     each runtime's vkey table
 *   regions   the region lists of keys with two or more regions, one
 *             fixed table per window, parallel to the arena (regions.c)
 *
 * Modes, chosen once per process:
 *   META_PKEY      the pages carry the meta pkey, write-disabled (WD) in
 *                  every thread's PKRU outside vmpk's entry points; reads
 *                  stay free. Where PKU works, for both backends.
 *   META_MPROTECT  no PKU: what decides which code vmpk calls is
 *                  PROT_READ: each runtime's fixed half (struct
 *                  vmpk_runtime: its backend, table address, id) from
 *                  vmpk_open to vmpk_close, which alone write it, and the
 *                  page that finds the runtimes (struct meta_runtimes)
 *                  outside those two calls. All else stays writable, so no
 *                  other call makes a syscall for the metadata: the
 *                  runtime's changing half (lock, counters, table
 *                  bookkeeping), the owner, free, slots and regions areas,
 *                  the threads area (gate stacks) and this meta page (in
 *                  the library's .data). That stops stray writes and
 *                  redirected calls, not a forger of the data (design.md):
 *                  with PKU the meta pkey guards it all.
 *   META_OFF       plain read-write pages (VMPK_META=off, for comparison).
 */
#ifndef VMPK_META_H
#define VMPK_META_H

#include <stdint.h>

#include "internal.h"

enum meta_mode { META_OFF = 0, META_PKEY = 1, META_MPROTECT = 2 };

#define THREAD_STRIDE 2048u   /* a power of two: the gate check tests alignment */
#define MAX_THREADS 32768u
#define RT_STRIDE (2 * RT_FIXED_BYTES) /* a runtime's fixed and changing halves */
/* Region table entries per arena granule: a region is at least a page, and
 * pages are at least 4 KiB, so a window never holds more regions. */
#define REGIONS_PER_GRANULE (GRANULE / 4096u)

/* The arena's state (arena.c). */
struct meta_arena {
    pthread_mutex_t lock;
    uint8_t *base;
    uint32_t ngranules;
    _Atomic uint32_t next;    /* granules below it have been handed out */
    uint32_t owner_committed;
    uint32_t nfree, free_committed;
};

/* pkeys that closed runtimes held (backend_pku.c). */
struct meta_pool {
    pthread_mutex_t lock;
    int pkeys[MAX_HW_KEYS];
    int n;
    bool kernel_has_none;     /* pkey_alloc failed: do not ask on every miss */
};

/* The meta page. The checked PKRU writes (cpu.h) read the first words. */
struct meta_page {
    /* Grow while other threads check against them (a new pkey is owned
     * before any thread has bits for it that vmpk set): atomic words. */
    _Atomic uint32_t owned;   /* PKRU bits (both) of every pkey vmpk owns */
    _Atomic uint32_t owned_enter; /* owned without the meta pkey's WD bit */
    uint32_t not_m;           /* ~(both bits of the meta pkey) */
    _Atomic uint32_t boot_open;   /* AD of every owned pkey but meta */
    _Atomic uint32_t boot_closed; /* the same and meta's WD */
    uint32_t m_bits;          /* both bits of the meta pkey */
    uint32_t m_wd;            /* the meta pkey's WD bit */
    uintptr_t threads_lo;     /* the threads area: where a valid thread may be */
    uintptr_t threads_len;
    int mode;                 /* enum meta_mode */
    int pkey;                 /* the meta pkey, META_PKEY only */
    uint8_t *base;            /* the reservation */
    size_t len;
    uint8_t *owner_area, *free_area, *slots_area;
    size_t slots_stride;      /* bytes of one runtime's vkey table */
    uint8_t *regions_area;    /* REGIONS_PER_GRANULE ranges per arena granule */

    struct meta_pool pool;

    /* thread registry (thread.c) */
    pthread_mutex_t threads_lock;
    struct vmpk_thread *threads;
    struct vmpk_thread *free_threads;
    uint32_t threads_used, threads_committed;
    struct thread_counters retired[VMPK_MAX_RUNTIMES];
    /* Thread births (tasks.h): the word a gate compares at its end, glibc's
     * live-thread count or, hardened, births below, which the supervisor
     * (harden.c) bumps before the kernel makes each CLONE_VM task. */
    const volatile unsigned *births_at;
    _Atomic unsigned births;

    struct meta_arena arena;
} __attribute__((aligned(4096)));

extern struct meta_page vmpk__meta __attribute__((visibility("hidden")));

/* What finds the open runtimes, and so the backend a call runs: a page of
 * its own that only vmpk_open and vmpk_close write, so that without PKU it
 * stays read-only between them (META_MPROTECT), as the runtimes' fixed
 * halves do; with PKU the meta pkey guards it with the rest. */
struct meta_runtimes {
    /* Open runtimes by id, read lock-free by the signal handlers. */
    struct vmpk_runtime *_Atomic runtimes[VMPK_MAX_RUNTIMES];
    uint8_t *area;            /* the reservation's runtimes area */
    bool committed[VMPK_MAX_RUNTIMES];
} __attribute__((aligned(4096)));

extern struct meta_runtimes vmpk__meta_rts __attribute__((visibility("hidden")));
#define vmpk__runtimes (vmpk__meta_rts.runtimes)

/* t is a struct of the threads area, and the one this thread's TLS slot
 * names: the test every check makes before it trusts t. */
static inline bool meta_thread_valid(const struct vmpk_thread *t)
{
    uintptr_t off = (uintptr_t)t - vmpk__meta.threads_lo;
    return off < vmpk__meta.threads_len && !(off & (THREAD_STRIDE - 1)) &&
           t->self == (void *)&vmpk__self;
}

/* Plain copies of what a signal handler needs before it can read meta
 * pages (handlers start with the meta pkey access-disabled). Writable by
 * anyone: a wrong value makes the handler's own checks fail, nothing else. */
extern int vmpk__meta_mode;
extern int vmpk__meta_pkey;
extern _Atomic uint32_t vmpk__meta_owned;

/* vmpk's metadata is writable for the calling thread (enter.h). */
bool vmpk__meta_is_open(void);
#define REQUIRE_META_OPEN() REQUIRE(vmpk__meta_is_open())
/* Closed for the calling thread: where malloc or free may run (a forged
 * heap pointer must not get a write into meta). Only META_PKEY opens and
 * closes meta around each call. */
#define REQUIRE_META_CLOSED() REQUIRE(vmpk__meta_mode != META_PKEY || !vmpk__meta_is_open())

/* Chooses the mode, reserves the areas, allocates the meta pkey. Once. */
int vmpk__meta_init(void);

/* Commits pages of a meta area (readable, writable inside vmpk). */
int vmpk__meta_commit(struct runtime_counters *c, void *addr, size_t len);

/* addr lies in a meta page. Async-signal-safe. */
bool vmpk__meta_contains(uintptr_t addr);

/* A new pkey joins the ones vmpk owns (the checks cover its bits). Meta open. */
void vmpk__meta_own(int pkey);

/* Thread structs from the threads area (meta open). NULL when full. */
struct vmpk_thread *vmpk__meta_thread_alloc(void);
void vmpk__meta_thread_free(struct vmpk_thread *t);

/* META_MPROTECT: makes rt's fixed half writable (vmpk_open writes it) or
 * read-only again, counting the call in *c when not NULL; nothing in the
 * other modes. A failure to make it writable is returned (-errno), one to
 * make it read-only again aborts: the metadata would stay writable. */
int vmpk__meta_runtime_fixed(struct vmpk_runtime *rt, bool writable, struct runtime_counters *c);
/* META_MPROTECT: makes vmpk__meta_rts writable for a vmpk_open or
 * vmpk_close (counted: it stays writable until the last of them closes it,
 * which counts its call in *c when not NULL); nothing in the other modes.
 * Open returns 0 or -errno; a failure to close aborts. */
int vmpk__meta_runtimes_open(void);
void vmpk__meta_runtimes_close(struct runtime_counters *c);

#endif /* VMPK_META_H */
