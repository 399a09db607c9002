/*
 * Exact counts of the pku backend's cache: hits, misses, evictions, syscalls
 * and PKRU writes for scripted access patterns. Runs where the backend is
 * pku: in the PKU guest, and on any machine with the stub build (make stub),
 * whose bookkeeping is the same code. Also, on every build: the metadata
 * switches per key, and the mprotect backend's gate cycle and its bounds.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#if VMPK_CHECKS
#include "internal.h" /* vmpk__fail_next: failures on demand */
#endif

static vmpk_runtime *rt;

static vmpk_key make_key(int regions)
{
    vmpk_key k;
    void *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    for (int i = 0; i < regions; i++)
        CHECK_EQ(vmpk_alloc(rt, k, 4096, &p), 0);
    return k;
}

static void gate(vmpk_key k)
{
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_end(rt, k), 0);
}

static void destroy_all(vmpk_key *k, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_EQ(vmpk_key_destroy(rt, k[i]), 0);
}

#define DELTA(field) ((long long)(after.field - before.field))

/* The cache keeps the vkeys used most (cache.h): each gate is one use,
 * counted exactly here (few slots: the sketch does not blur them, see
 * test_cache.c), and the victim is the least used unpinned one. */
static void scripted_pattern_with_two_hw_keys(void)
{
    NEED_PKU();
    rt = open_rt(2);
    vmpk_key a = make_key(1), b = make_key(1), c = make_key(1);
    struct vmpk_stats before = stats_of(rt);
    gate(a);    /* miss: a on hw 0                       uses a 1 */
    gate(a);    /* hit                                   a 2 */
    gate(b);    /* miss: b on hw 1                       b 1 */
    gate(a);    /* hit                                   a 3 */
    gate(c);    /* miss: evicts b (1 use against a's 3)  c 1 */
    gate(b);    /* miss: evicts c (1 against 3)          b 2 */
    gate(a);    /* hit: a stayed (LRU would have evicted it twice over) */
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(gates), 7);
    CHECK_EQ(DELTA(hits), 3);
    CHECK_EQ(DELTA(misses), 4);
    CHECK_EQ(DELTA(evictions), 2);
    /* one tag per miss, one retag per eviction */
    CHECK_EQ(DELTA(pkey_mprotect_calls), 4 + 2);
    CHECK_EQ(DELTA(pkru_writes), 7 * 2); /* open and close, each gate */
    CHECK_EQ(after.resident_vkeys, 2);
    CHECK_EQ(after.hw_keys_held, 2);
    vmpk_key all[] = { a, b, c };
    destroy_all(all, 3);
    CHECK_EQ(vmpk_close(rt), 0);
}

static void hits_make_no_syscall(void)
{
    NEED_PKU();
    rt = open_rt(4);
    vmpk_key k[4];
    for (int i = 0; i < 4; i++) {
        k[i] = make_key(3);
        gate(k[i]);
    }
    struct vmpk_stats before = stats_of(rt);
    for (int round = 0; round < 100; round++)
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(vmpk_begin(rt, k[i], VMPK_READ), 0);
            CHECK_EQ(vmpk_begin(rt, k[(i + 1) % 4], VMPK_RW), 0); /* nested */
            CHECK_EQ(vmpk_end(rt, k[(i + 1) % 4]), 0);
            CHECK_EQ(vmpk_end(rt, k[i]), 0);
        }
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(hits), 800);
    CHECK_EQ(DELTA(misses), 0);
    CHECK_EQ(DELTA(syscalls), 0);
    destroy_all(k, 4);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Frequency, not recency, decides: the least recently used vkey stays
 * when it is the one used most. */
static void frequency_order(void)
{
    NEED_PKU();
    rt = open_rt(3);
    vmpk_key a = make_key(1), b = make_key(1), c = make_key(1), d = make_key(1);
    for (int i = 0; i < 3; i++)
        gate(a); /* hw 0, 3 uses */
    gate(b);
    gate(b);     /* hw 1, 2 uses */
    gate(c);     /* hw 2, 1 use; a is now the least recently used */
    struct vmpk_stats before = stats_of(rt);
    gate(d);     /* miss: evicts c (1 use); d 1 */
    gate(a);     /* hit (LRU would have evicted a for d) */
    gate(b);     /* hit */
    struct vmpk_stats mid = stats_of(rt);
    gate(c);     /* miss: evicts d (1 use against a 4, b 3); c 2 */
    gate(d);     /* miss: evicts c (2 against 4, 3); d 2 */
    gate(c);     /* miss: evicts d (2 against 4, 3); c 3 */
    gate(a);     /* hit */
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(mid.misses - before.misses, 1);
    CHECK_EQ(mid.evictions - before.evictions, 1);
    CHECK_EQ(mid.hits - before.hits, 2);
    CHECK_EQ(DELTA(misses), 4);
    CHECK_EQ(DELTA(evictions), 4);
    CHECK_EQ(DELTA(hits), 3);
    vmpk_key all[] = { a, b, c, d };
    destroy_all(all, 4);
    CHECK_EQ(vmpk_close(rt), 0);
}

static void all_pinned_fails_and_changes_nothing(void)
{
    NEED_PKU();
    rt = open_rt(2);
    vmpk_key a = make_key(1), b = make_key(1), c = make_key(1);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_RW), 0);
    CHECK_EQ(vmpk_begin(rt, b, VMPK_RW), 0);
    struct vmpk_stats before = stats_of(rt);
    CHECK_EQ(vmpk_begin(rt, c, VMPK_RW), VMPK_E_KEYS_PINNED);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(gates), 0);
    CHECK_EQ(DELTA(evictions), 0);
    CHECK_EQ(DELTA(syscalls), 0);
    CHECK_EQ(DELTA(pkru_writes), 0);
    CHECK_EQ(after.resident_vkeys, 2);
    CHECK_EQ(vmpk_end(rt, b), 0);
    CHECK_EQ(vmpk_begin(rt, c, VMPK_RW), 0); /* b is unpinned: evicted */
    CHECK_EQ(vmpk_end(rt, c), 0);
    CHECK_EQ(vmpk_end(rt, a), 0);
    vmpk_key all[] = { a, b, c };
    destroy_all(all, 3);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* A miss costs two pkey_mprotect calls whatever the number of regions.
 * The loop uses every key once a round, so the counts tie and ties go to
 * hw 0: hw 1 keeps k[7], bound before the loop, and hw 0 takes each other
 * key in turn. Each round: 7 misses, each evicting, and k[7]'s hit. */
static void two_syscalls_per_miss(void)
{
    NEED_PKU();
    int sizes[] = { 1, 10, 100 };
    for (int s = 0; s < 3; s++) {
        rt = open_rt(2);
        vmpk_key k[8];
        for (int i = 0; i < 8; i++)
            k[i] = make_key(sizes[s]);
        gate(k[6]); /* both hw keys allocated: k[6] on hw 0 */
        gate(k[7]); /* k[7] on hw 1 */
        struct vmpk_stats before = stats_of(rt);
        for (int round = 0; round < 10; round++)
            for (int i = 0; i < 8; i++)
                gate(k[i]);
        struct vmpk_stats after = stats_of(rt);
        printf("# %d regions per vkey: %lld misses, %lld syscalls\n", sizes[s], DELTA(misses),
               DELTA(syscalls));
        CHECK_EQ(DELTA(misses), 70);
        CHECK_EQ(DELTA(hits), 10);
        CHECK_EQ(DELTA(evictions), 70);
        CHECK_EQ(DELTA(syscalls), 2 * 70);
        CHECK_EQ(DELTA(pkey_mprotect_calls), 2 * 70);
        destroy_all(k, 8);
        CHECK_EQ(vmpk_close(rt), 0);
    }
}

/* A key's first regions cost nothing while it is not resident and its
 * process-wide access is none: fresh window pages are PROT_NONE already.
 * The one system call is the region table's first page, committed when the
 * second region arrives (the list lives in metadata, design.md). */
static void cold_alloc_is_free(void)
{
    NEED_PKU();
    rt = open_rt(2);
    vmpk_key k;
    void *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    struct vmpk_stats before = stats_of(rt);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(vmpk_alloc(rt, k, 4096, &p), 0);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(syscalls), 1);
    CHECK_EQ(after.regions, 10);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Where a pkey guards the metadata, every entry point opens and closes it,
 * a WRPKRU each way: two per entry point, four per key of a batch. Where
 * mprotect guards it (no PKU), only vmpk_open and vmpk_close write what it
 * guards (a runtime's fixed half, meta.h): no key costs a metadata call.
 * Whichever guards it, the other count stays at 0. */
static void metadata_switches_per_key(void)
{
    rt = open_rt(0);
    int by_pkey = vmpk_pku_supported();
    /* the open made its fixed half and the runtimes page read-only again:
     * two mprotect, counted */
    CHECK_EQ(stats_of(rt).meta_mprotect_calls, by_pkey ? 0 : 2);
    vmpk_key k;
    struct vmpk_stats before = stats_of(rt);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    struct vmpk_stats after = stats_of(rt);
#define META_SWITCHES() (by_pkey ? DELTA(meta_pkru_writes) : DELTA(meta_mprotect_calls))
#define OTHER_SWITCHES() (by_pkey ? DELTA(meta_mprotect_calls) : DELTA(meta_pkru_writes))
    CHECK_EQ(META_SWITCHES(), by_pkey ? 2 : 0); /* one entry point: open, close */
    CHECK_EQ(OTHER_SWITCHES(), 0);
    enum { N = 2500 };
    static vmpk_key keys[N];
    static void *regions[N];
    before = stats_of(rt);
    CHECK_EQ(vmpk_keys_create(rt, N, VMPK_NONE, 0, 4096, keys, regions), 0);
    after = stats_of(rt);
    CHECK_EQ(META_SWITCHES(), by_pkey ? 4 * N : 0);
    CHECK_EQ(OTHER_SWITCHES(), 0);
#undef META_SWITCHES
#undef OTHER_SWITCHES
    CHECK_EQ(DELTA(live_vkeys), N);
    CHECK_EQ(DELTA(regions), N);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* A runtime on the mprotect backend, whatever VMPK_BACKEND says. */
static vmpk_runtime *open_mprotect(void)
{
    struct vmpk_options o = { .backend = VMPK_BACKEND_MPROTECT };
    vmpk_runtime *r = NULL;
    CHECK_EQ(vmpk_open(&o, &r), 0);
    return r;
}

/* The bounds of the VMA that holds addr (/proc/self/maps), or 0s. */
static void vma_of(const void *addr, uintptr_t *lo, uintptr_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    *lo = *hi = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && (uintptr_t)addr >= a && (uintptr_t)addr < b) {
            *lo = a;
            *hi = b;
        }
    }
    if (f)
        fclose(f);
}

/* The mprotect backend's gate cycle on a key whose perm is none: one
 * mprotect to open the pages, one to close them, counted as one miss (the
 * pages changed); a nested gate on the same key changes no page: a hit, no
 * call. The first cycle of a key also keeps its pages apart in a VMA of
 * their own (one madvise), which the key gives back when destroyed. Where
 * mprotect guards the metadata (no PKU) the gate opens none of it
 * (meta.h); where a pkey does, it opens and closes it as every entry point
 * does: two WRPKRUs each way. */
static void mprotect_gate_costs_two_calls(void)
{
    rt = open_mprotect();
    vmpk_key k;
    char *page;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 2 * 4096, (void **)&page), 0);
    uintptr_t lo, hi;
    vma_of(page, &lo, &hi);
    CHECK(lo < (uintptr_t)page || hi > (uintptr_t)page + 2 * 4096); /* the arena's */
    for (int cycle = 0; cycle < 2; cycle++) {
        struct vmpk_stats before = stats_of(rt);
        CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
        CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
        CHECK_EQ(vmpk_end(rt, k), 0);
        CHECK_EQ(vmpk_end(rt, k), 0);
        struct vmpk_stats after = stats_of(rt);
        int by_pkey = DELTA(meta_pkru_writes) != 0;
        CHECK_EQ(DELTA(mprotect_calls), 2);
        CHECK_EQ(DELTA(syscalls), cycle == 0 ? 3 : 2);
        CHECK_EQ(DELTA(meta_mprotect_calls), 0);
        CHECK_EQ(DELTA(meta_pkru_writes), by_pkey ? 8 : 0);
        CHECK_EQ(DELTA(gates), 2);
        CHECK_EQ(DELTA(misses), 1);
        CHECK_EQ(DELTA(hits), 1);
        vma_of(page, &lo, &hi);
        CHECK_EQ(lo, (uintptr_t)page);
        CHECK_EQ(hi, (uintptr_t)page + 2 * 4096);
    }
    destroy_all(&k, 1);
    vma_of(page, &lo, &hi);
    CHECK(lo < (uintptr_t)page || hi > (uintptr_t)page + 2 * 4096); /* merged back */
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Two keys whose windows lie side by side, each fully or partly used and
 * kept apart: each key's used pages are still a VMA of their own, so its
 * gates change one VMA in place (design.md, "A VMA of their own"). Windows
 * of two granules start on even granules alike. */
static void apart_neighbours_stay_apart(void)
{
    enum { WINDOW = 2 << 20 };
    rt = open_mprotect();
    vmpk_key k[2];
    char *a, *b;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, WINDOW, &k[0]), 0);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, WINDOW, &k[1]), 0);
    CHECK_EQ(vmpk_alloc(rt, k[0], WINDOW, (void **)&a), 0);
    CHECK_EQ(vmpk_alloc(rt, k[1], 4096, (void **)&b), 0);
    if (b != a + WINDOW) { /* the second window right after the first */
        CHECK_EQ((uintptr_t)b, (uintptr_t)a + WINDOW);
        destroy_all(k, 2);
        CHECK_EQ(vmpk_close(rt), 0);
        return;
    }
    gate(k[0]);
    gate(k[1]);
    uintptr_t lo, hi;
    vma_of(a, &lo, &hi);
    CHECK_EQ(lo, (uintptr_t)a);
    CHECK_EQ(hi, (uintptr_t)a + WINDOW);
    vma_of(b, &lo, &hi);
    CHECK_EQ(lo, (uintptr_t)b);
    CHECK_EQ(hi, (uintptr_t)b + 4096);
    destroy_all(k, 2);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* At most 4096 keys keep their pages apart (each may cost two VMAs); the
 * next key's first cycle is its two mprotect calls alone, until a key that
 * had its own VMA is destroyed. */
static void keys_apart_are_bounded(void)
{
    enum { APART = 4096 };
    rt = open_mprotect();
    static vmpk_key keys[APART + 2];
    for (int i = 0; i < APART + 2; i++)
        keys[i] = make_key(1);
    for (int i = 0; i < APART; i++)
        gate(keys[i]);
    struct vmpk_stats before = stats_of(rt);
    gate(keys[APART]);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(syscalls), 2);
    CHECK_EQ(vmpk_key_destroy(rt, keys[0]), 0);
    before = stats_of(rt);
    gate(keys[APART + 1]);
    after = stats_of(rt);
    CHECK_EQ(DELTA(syscalls), 3);
    destroy_all(keys + 1, APART + 1);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* The mprotect backend counts a key's open read-write gates in 15 bits:
 * 1024 threads each nesting 32 (32,768 in all) get 32,767 of them, and the
 * one past the limit fails with VMPK_E_TOO_MANY, changing nothing. */
enum { GATE_THREADS = 1024 };
static vmpk_key many_key;
static pthread_barrier_t many_opened, many_counted;
static _Atomic int many_ok, many_too_many;

static void *many_gates(void *arg)
{
    (void)arg;
    int opened = 0;
    for (int i = 0; i < VMPK_MAX_GATE_DEPTH; i++) {
        int r = vmpk_begin(rt, many_key, VMPK_RW);
        if (r == 0)
            opened++;
        else if (r == VMPK_E_TOO_MANY)
            atomic_fetch_add(&many_too_many, 1);
    }
    atomic_fetch_add(&many_ok, opened);
    pthread_barrier_wait(&many_opened);
    pthread_barrier_wait(&many_counted);
    for (int i = 0; i < opened; i++)
        vmpk_end(rt, many_key);
    return NULL;
}

static void write_gates_on_one_key_are_bounded(void)
{
    rt = open_mprotect();
    char *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &many_key), 0);
    CHECK_EQ(vmpk_alloc(rt, many_key, 4096, (void **)&p), 0);
    pthread_barrier_init(&many_opened, NULL, GATE_THREADS + 1);
    pthread_barrier_init(&many_counted, NULL, GATE_THREADS + 1);
    static pthread_t th[GATE_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int made = 0;
    for (; made < GATE_THREADS; made++)
        if (pthread_create(&th[made], &attr, many_gates, NULL))
            break;
    if (made < GATE_THREADS) { /* no room for the threads here: say so */
        printf("Bail out! only %d threads\n", made);
        exit(99);
    }
    pthread_barrier_wait(&many_opened);
    CHECK_EQ(many_ok, 0x7fff);
    CHECK_EQ(many_too_many, 1);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    pthread_barrier_wait(&many_counted);
    for (int i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0); /* every gate closed */
    CHECK_EQ(vmpk_key_destroy(rt, many_key), 0);
    CHECK_EQ(vmpk_close(rt), 0);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&many_opened);
    pthread_barrier_destroy(&many_counted);
}

#if VMPK_CHECKS
/* Two pages in two regions of a new key with perm `access`, each filled
 * with `fill` under a gate, which leaves the key resident. */
static vmpk_key resident_key(int access, char fill, char **page)
{
    vmpk_key k;
    CHECK_EQ(vmpk_key_create(rt, NULL, access, 0, &k), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&page[i]), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    memset(page[0], fill, 4096);
    memset(page[1], fill, 4096);
    CHECK_EQ(vmpk_end(rt, k), 0);
    return k;
}

static bool filled(const char *p, char fill)
{
    for (int i = 0; i < 4096; i++)
        if (p[i] != fill)
            return false;
    return true;
}

/* An eviction whose retag fails midway (the fail point retags the first
 * page, then says ENOMEM): the miss fails with VMPK_E_NOMEM and changes
 * nothing that can be seen. The victim's pages were closed (one mprotect)
 * and it was put back on its hw key (one pkey_mprotect): it is still
 * resident, its next gate a hit with its bytes intact, no eviction is
 * counted, and the next miss evicts it for real. */
static void failed_eviction_puts_the_victim_back(void)
{
    NEED_PKU();
    rt = open_rt(1);
    char *a_pages[2];
    vmpk_key a = resident_key(VMPK_NONE, 'a', a_pages), b = make_key(1);
    struct vmpk_stats before = stats_of(rt);
    vmpk__fail_next[FAIL_PKU_RETAG] = 1;
    CHECK_EQ(vmpk_begin(rt, b, VMPK_RW), VMPK_E_NOMEM);
    CHECK_EQ(vmpk__fail_next[FAIL_PKU_RETAG], 0);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(misses), 0);
    CHECK_EQ(DELTA(evictions), 0);
    CHECK_EQ(DELTA(pkey_mprotect_calls), 2); /* the failed retag, the one back */
    CHECK_EQ(DELTA(mprotect_calls), 1);      /* closing the pages */
    CHECK_EQ(after.resident_vkeys, 1);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_READ), 0);
    CHECK(filled(a_pages[0], 'a') && filled(a_pages[1], 'a'));
    CHECK_EQ(vmpk_end(rt, a), 0);
    before = after;
    after = stats_of(rt);
    CHECK_EQ(DELTA(hits), 1);
    CHECK_EQ(DELTA(misses), 0);
    gate(b);
    before = after;
    after = stats_of(rt);
    CHECK_EQ(DELTA(misses), 1);
    CHECK_EQ(DELTA(evictions), 1);
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_READ), 0); /* evicted, perm none */
    CHECK_EQ(vmpk_begin(rt, a, VMPK_READ), 0);
    CHECK(filled(a_pages[0], 'a') && filled(a_pages[1], 'a'));
    CHECK_EQ(vmpk_end(rt, a), 0);
    destroy_all((vmpk_key[]){ a, b }, 2);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* The same, with the way back failing midway too: the pages it did not
 * reach stay closed, even to readers the victim's perm lets in (fail
 * closed), while the victim stays bound to its hw key, so that pkey serves
 * no other key while pages may still carry it. The next miss retags the
 * whole window and opens them again by the perm. */
static void failed_eviction_leaves_the_pages_closed(void)
{
    NEED_PKU();
    rt = open_rt(1);
    char *a_pages[2];
    vmpk_key a = resident_key(VMPK_READ, 'a', a_pages), b = make_key(1);
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_READ), 1);
    vmpk__fail_next[FAIL_PKU_RETAG] = 2;
    CHECK_EQ(vmpk_begin(rt, b, VMPK_RW), VMPK_E_NOMEM);
    CHECK_EQ(vmpk__fail_next[FAIL_PKU_RETAG], 0);
    CHECK_EQ(stats_of(rt).resident_vkeys, 1);
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_READ), 0); /* closed, although perm READ */
    CHECK_EQ(vmpk_probe(a_pages[0], VMPK_READ), 1); /* the page the retag reached */
    struct vmpk_stats before = stats_of(rt);
    gate(b);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(DELTA(evictions), 1);
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_READ), 1);
    CHECK(filled(a_pages[0], 'a') && filled(a_pages[1], 'a'));
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_RW), 0);
    destroy_all((vmpk_key[]){ a, b }, 2);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* A miss whose tag of the key fails midway (a free hw key, no eviction):
 * the first page carried the hw key's pkey for a moment; the key goes back
 * to pkey 0 with its perm (readable here), so when the hw key serves
 * another key, that key's gate opens none of this one's pages. */
static void failed_bind_gives_the_pages_back(void)
{
    NEED_PKU();
    rt = open_rt(1);
    char *a_pages[2];
    vmpk_key a, b = make_key(1);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_READ, 0, &a), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(vmpk_alloc(rt, a, 4096, (void **)&a_pages[i]), 0);
    vmpk__fail_next[FAIL_PKU_RETAG] = 1;
    CHECK_EQ(vmpk_begin(rt, a, VMPK_RW), VMPK_E_NOMEM);
    CHECK_EQ(vmpk__fail_next[FAIL_PKU_RETAG], 0);
    struct vmpk_stats s = stats_of(rt);
    CHECK_EQ(s.resident_vkeys, 0);
    CHECK_EQ(s.hw_keys_held, 1);
    CHECK_EQ(vmpk_probe(a_pages[0], VMPK_READ), 1); /* its perm, for everyone */
    CHECK_EQ(vmpk_probe(a_pages[0], VMPK_RW), 0);
    CHECK_EQ(vmpk_begin(rt, b, VMPK_RW), 0);        /* the hw key serves b */
    CHECK_EQ(vmpk_probe(a_pages[0], VMPK_RW), 0);   /* b's gate opens none of a */
    CHECK_EQ(vmpk_probe(a_pages[1], VMPK_RW), 0);
    CHECK_EQ(vmpk_end(rt, b), 0);
    destroy_all((vmpk_key[]){ a, b }, 2);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* A region whose pages fail to take a resident key's pkey midway: the
 * alloc fails, and the pages stay closed past the key's used end, where
 * its later evictions do not reach, so the next key on that hw key cannot
 * write into what becomes this key's next region. */
static void failed_grow_leaves_the_pages_closed(void)
{
    NEED_PKU();
    rt = open_rt(1);
    char *a_pages[2], *c;
    vmpk_key a = resident_key(VMPK_NONE, 'a', a_pages), b = make_key(1);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_RW), 0);           /* a resident, pinned */
    vmpk__fail_next[FAIL_PKU_GROW] = 1;
    CHECK_EQ(vmpk_alloc(rt, a, 2 * 4096, (void **)&c), VMPK_E_NOMEM);
    CHECK_EQ(vmpk__fail_next[FAIL_PKU_GROW], 0);
    char *next = a_pages[1] + 4096; /* where the failed region was */
    CHECK_EQ(vmpk_lookup(rt, next, NULL, NULL, NULL), VMPK_E_NOT_REGION); /* not kept */
    CHECK_EQ(stats_of(rt).regions, 3); /* a's two, b's one */
    CHECK_EQ(vmpk_probe(next, VMPK_READ), 0);          /* closed even in a's gate */
    CHECK_EQ(vmpk_end(rt, a), 0);
    CHECK_EQ(vmpk_begin(rt, b, VMPK_RW), 0);           /* evicts a: b takes its pkey */
    CHECK_EQ(vmpk_probe(next, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(next + 4096, VMPK_RW), 0);
    CHECK_EQ(vmpk_end(rt, b), 0);
    CHECK_EQ(vmpk_alloc(rt, a, 2 * 4096, (void **)&c), 0); /* the same pages, now */
    CHECK(c == next);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_READ), 0);
    CHECK(c[0] == 0 && c[4096] == 0);
    CHECK_EQ(vmpk_end(rt, a), 0);
    destroy_all((vmpk_key[]){ a, b }, 2);
    CHECK_EQ(vmpk_close(rt), 0);
}
#endif /* VMPK_CHECKS */

int main(void)
{
    RUN(scripted_pattern_with_two_hw_keys);
    RUN(hits_make_no_syscall);
    RUN(frequency_order);
    RUN(all_pinned_fails_and_changes_nothing);
    RUN(two_syscalls_per_miss);
    RUN(cold_alloc_is_free);
    RUN(metadata_switches_per_key);
    RUN(mprotect_gate_costs_two_calls);
    RUN(keys_apart_are_bounded);
    RUN(apart_neighbours_stay_apart);
    RUN(write_gates_on_one_key_are_bounded);
#if VMPK_CHECKS /* fail points: compiled out of release, so not run there */
    RUN(failed_eviction_puts_the_victim_back);
    RUN(failed_eviction_leaves_the_pages_closed);
    RUN(failed_bind_gives_the_pages_back);
    RUN(failed_grow_leaves_the_pages_closed);
#endif
    return check_done();
}
