/* The C API on the backend VMPK_BACKEND selects: behaviour and misuse. */
#include <pthread.h>
#include <unistd.h>

#include "check.h"

static vmpk_runtime *rt;

static int count_vmas(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n++;
    if (f)
        fclose(f);
    return n;
}

static void create_alloc_gate_roundtrip(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "roundtrip", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 100, (void **)&p), 0);
    CHECK_EQ((uintptr_t)p % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    CHECK_EQ(p[0], 0); /* zeroed */
    strcpy(p, "kept");
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 1);
    CHECK(strcmp(p, "kept") == 0);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void read_gate_denies_writes(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void protect_sets_process_wide_access(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    p[0] = 7;
    CHECK_EQ(vmpk_protect(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    CHECK_EQ(p[0], 7);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_NONE), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    /* A gate adds to the process-wide access and its end restores it. */
    CHECK_EQ(vmpk_protect(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    /* Resident and then narrowed: still enforced. */
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_NONE), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void nested_gates_restore_outer_state(void)
{
    vmpk_key a, b;
    char *pa, *pb;
    int pku = backend_of(rt) == VMPK_BACKEND_PKU;
    CHECK_EQ(vmpk_key_create(rt, "a", VMPK_NONE, 0, &a), 0);
    CHECK_EQ(vmpk_key_create(rt, "b", VMPK_NONE, 0, &b), 0);
    CHECK_EQ(vmpk_alloc(rt, a, 1, (void **)&pa), 0);
    CHECK_EQ(vmpk_alloc(rt, b, 1, (void **)&pb), 0);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_RW), 0);
    CHECK_EQ(vmpk_begin(rt, b, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(pa, VMPK_RW), 1);
    CHECK_EQ(vmpk_probe(pb, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(pb, VMPK_RW), 0);
    CHECK_EQ(vmpk_begin(rt, a, VMPK_READ), 0); /* narrower inner gate */
    /* pku: the inner gate is what this thread has; mprotect: gates are
     * process-wide and the outer write gate is still open. */
    CHECK_EQ(vmpk_probe(pa, VMPK_RW), pku ? 0 : 1);
    CHECK_EQ(vmpk_end(rt, b), VMPK_E_GATE_ORDER); /* not the innermost */
    CHECK_EQ(vmpk_end(rt, a), 0);
    CHECK_EQ(vmpk_probe(pa, VMPK_RW), 1);
    CHECK_EQ(vmpk_end(rt, b), 0);
    CHECK_EQ(vmpk_probe(pb, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(pa, VMPK_RW), 1);
    CHECK_EQ(vmpk_end(rt, a), 0);
    CHECK_EQ(vmpk_probe(pa, VMPK_READ), 0);
    CHECK_EQ(vmpk_end(rt, a), VMPK_E_GATE_ORDER); /* nothing open */
    CHECK_EQ(vmpk_key_destroy(rt, a), 0);
    CHECK_EQ(vmpk_key_destroy(rt, b), 0);
}

static void gate_depth_is_bounded(void)
{
    vmpk_key k;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    for (int i = 0; i < VMPK_MAX_GATE_DEPTH; i++)
        CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), VMPK_E_GATE_DEPTH);
    for (int i = 0; i < VMPK_MAX_GATE_DEPTH; i++)
        CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void destroyed_handles_stay_invalid(void)
{
    vmpk_key k, again;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "gone", VMPK_RW, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    p[0] = 1;
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0); /* gone for every thread */
    CHECK_EQ(vmpk_key_destroy(rt, k), VMPK_E_STALE);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), VMPK_E_STALE);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_RW), VMPK_E_STALE);
    CHECK_EQ(vmpk_alloc(rt, k, 1, (void **)&p), VMPK_E_STALE);
    /* The slot is reused with a new generation: the old handle stays dead. */
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &again), 0);
    CHECK(again != k);
    CHECK_EQ(again & 0xffffff, k & 0xffffff);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), VMPK_E_STALE);
    CHECK_EQ(vmpk_key_destroy(rt, k), VMPK_E_STALE);
    CHECK_EQ(vmpk_key_destroy(rt, again), 0);
}

static void busy_key_cannot_be_destroyed(void)
{
    vmpk_key k;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), VMPK_E_BUSY);
    CHECK_EQ(vmpk_close(rt), VMPK_E_BUSY);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void bad_arguments_change_nothing(void)
{
    vmpk_key k, out = 77;
    void *p, *q = (void *)1;
    struct vmpk_stats before = stats_of(rt);
    char long_name[VMPK_MAX_NAME + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    CHECK_EQ(vmpk_key_create(rt, NULL, 2, 0, &out), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, NULL, -1, 0, &out), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, long_name, VMPK_NONE, 0, &out), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, SIZE_MAX, &out), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(NULL, NULL, VMPK_NONE, 0, &out), VMPK_E_INVALID);
    CHECK_EQ(out, 77);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 0, &q), VMPK_E_INVALID);
    CHECK_EQ(vmpk_alloc(rt, k, SIZE_MAX, &q), VMPK_E_INVALID);
    CHECK_EQ(vmpk_alloc(rt, k, 2 << 20, &q), VMPK_E_WINDOW_FULL); /* 1 MiB window */
    CHECK(q == (void *)1);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_NONE), VMPK_E_INVALID);
    CHECK_EQ(vmpk_begin(rt, k, 5), VMPK_E_INVALID);
    CHECK_EQ(vmpk_begin(rt, 0, VMPK_READ), VMPK_E_INVALID);
    CHECK_EQ(vmpk_begin(rt, k ^ (1ull << 30), VMPK_READ), VMPK_E_STALE); /* forged gen */
    CHECK_EQ(vmpk_begin(rt, 1ull << 60, VMPK_READ), VMPK_E_INVALID);
    CHECK_EQ(vmpk_protect(rt, k, 2), VMPK_E_INVALID);
    CHECK_EQ(vmpk_probe(&out, 7), VMPK_E_INVALID);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, &p), 0);
    CHECK_EQ(vmpk_free(rt, k, (char *)p + 1), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_free(rt, k, &out), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_free(rt, k, p), 0);
    CHECK_EQ(vmpk_free(rt, k, p), VMPK_E_NOT_REGION); /* double free */
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(after.live_vkeys, before.live_vkeys);
    CHECK_EQ(after.regions, before.regions);
    CHECK_EQ(after.gates, before.gates);
}

static void windows_hold_their_regions(void)
{
    vmpk_key k;
    char *r[8];
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 4 << 20, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 3 << 20, (void **)&r[0]), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 1 << 20, (void **)&r[1]), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 1, (void **)&r[2]), VMPK_E_WINDOW_FULL);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    memset(r[1], 0xab, 1 << 20);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_free(rt, k, r[1]), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&r[2]), 0);
    CHECK(r[2] == r[1]); /* first fit reuses the freed pages ... */
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
    CHECK_EQ(r[2][0], 0);  /* ... zeroed */
    CHECK_EQ(vmpk_end(rt, k), 0);
    void *found, *region;
    size_t size;
    vmpk_key owner;
    CHECK_EQ(vmpk_lookup(rt, r[0] + 5000, &owner, &region, &size), 0);
    CHECK_EQ(owner, k);
    CHECK(region == r[0]);
    CHECK_EQ(size, 3 << 20);
    CHECK_EQ(vmpk_lookup(rt, r[2] + 4096, &owner, &found, &size), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    CHECK_EQ(vmpk_lookup(rt, r[0], &owner, &found, &size), VMPK_E_NOT_REGION);
}

/* 100,000 vkeys with a region each, each written once in a gate: windows of
 * non-resident keys merge back, so VMAs stay in the tens, besides the
 * mprotect backend's 4096 keys whose pages keep a VMA of their own (two
 * more each: the arena before and after them). */
static void many_keys_few_vmas(void)
{
    enum { N = 100000 };
    vmpk_key *k = malloc(N * sizeof *k);
    unsigned char **p = malloc(N * sizeof *p);
    int before = count_vmas();
    for (int i = 0; i < N; i++) {
        CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k[i]), 0);
        CHECK_EQ(vmpk_alloc(rt, k[i], 64, (void **)&p[i]), 0);
        CHECK_EQ(vmpk_begin(rt, k[i], VMPK_RW), 0);
        p[i][0] = (unsigned char)i;
        CHECK_EQ(vmpk_end(rt, k[i]), 0);
    }
    int vmas = count_vmas() - before;
    printf("# %d vkeys: %d more VMAs\n", N, vmas);
    CHECK(vmas <= 300 + (backend_of(rt) == VMPK_BACKEND_MPROTECT ? 2 * 4096 : 0));
    int wrong = 0;
    for (int i = 0; i < N; i += 97) {
        CHECK_EQ(vmpk_begin(rt, k[i], VMPK_READ), 0);
        wrong += p[i][0] != (unsigned char)i;
        CHECK_EQ(vmpk_end(rt, k[i]), 0);
    }
    CHECK_EQ(wrong, 0);
    CHECK_EQ(stats_of(rt).live_vkeys, N);
    for (int i = 0; i < N; i++)
        CHECK_EQ(vmpk_key_destroy(rt, k[i]), 0);
    CHECK_EQ(stats_of(rt).live_vkeys, 0);
    free(k);
    free(p);
}

static void close_and_reopen(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "left", VMPK_RW, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_close(rt), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0); /* a kept pointer faults */
    rt = open_rt(0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), VMPK_E_STALE); /* another runtime's */
    CHECK_EQ(stats_of(rt).live_vkeys, 0);
}

static void too_many_runtimes(void)
{
    vmpk_runtime *more[VMPK_MAX_RUNTIMES];
    int opened = 0, err = 0;
    while (opened < VMPK_MAX_RUNTIMES && !(err = vmpk_open(NULL, &more[opened])))
        opened++;
    CHECK_EQ(err, VMPK_E_TOO_MANY);
    CHECK_EQ(opened, VMPK_MAX_RUNTIMES - 1); /* rt is open too */
    for (int i = 0; i < opened; i++)
        CHECK_EQ(vmpk_close(more[i]), 0);
}

/* Every page of a window as its own region, more than one page of the
 * region table holds (4 MiB: 1024 regions of 4 KiB pages): each where first
 * fit puts it, each found by lookup, the window then full; frees in the
 * middle reused first; all of it again in a window the next key reuses. */
static void many_regions_fill_the_window(void)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = (4u << 20) / ps;
    char **r = calloc(n, sizeof *r);
    struct vmpk_stats before = stats_of(rt);
    for (int round = 0; round < 2; round++) {
        vmpk_key k;
        CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 4 << 20, &k), 0);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(vmpk_alloc(rt, k, 1, (void **)&r[i]), 0);
            CHECK(r[i] == r[0] + i * ps);
        }
        void *q = (void *)1;
        CHECK_EQ(vmpk_alloc(rt, k, 1, &q), VMPK_E_WINDOW_FULL);
        CHECK(q == (void *)1);
        CHECK_EQ(stats_of(rt).regions, before.regions + n);
        for (size_t i = 0; i < n; i += 97) {
            void *region;
            size_t size;
            vmpk_key owner;
            CHECK_EQ(vmpk_lookup(rt, r[i] + 7, &owner, &region, &size), 0);
            CHECK(region == r[i]);
            CHECK_EQ(size, ps);
        }
        CHECK_EQ(vmpk_free(rt, k, r[n / 2]), 0);
        CHECK_EQ(vmpk_free(rt, k, r[n / 2]), VMPK_E_NOT_REGION);
        CHECK_EQ(vmpk_free(rt, k, r[3]), 0);
        CHECK_EQ(vmpk_alloc(rt, k, 1, &q), 0);
        CHECK(q == r[3]);
        CHECK_EQ(vmpk_alloc(rt, k, 1, &q), 0);
        CHECK(q == r[n / 2]);
        CHECK_EQ(vmpk_alloc(rt, k, 2 * ps, &q), VMPK_E_WINDOW_FULL);
        for (size_t i = 0; i < n; i++)
            CHECK_EQ(vmpk_free(rt, k, r[i]), 0);
        CHECK_EQ(stats_of(rt).regions, before.regions);
        CHECK_EQ(vmpk_alloc(rt, k, 4 << 20, &q), 0); /* all free again, as one */
        CHECK(q == r[0]);
        CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    }
    free(r);
}

/* Names that could steer a terminal or a log reading the fault reports
 * are refused, and nothing is made; printable UTF-8 is kept. */
static void names_refuse_control_characters(void)
{
    static const char *const bad[] = {
        "\x01",          "tab\there",    "esc\x1b[31m", "del\x7f",      "nl\n",
        "c1 \xc2\x80",   "c1 \xc2\x9b",  "c1 \xc2\x9f", "lone \x80",    "overlong \xc0\xaf",
        "overlong \xe0\x80\xaf", "surrogate \xed\xa0\x80", "past \xf4\x90\x80\x80",
        "truncated \xe2\x82", "ff \xff", "f5 \xf5\x80\x80\x80",
    };
    static const char *const good[] = { "cl\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                                        "\xf0\x9f\x98\x80", "a b-c_d", "nbsp\xc2\xa0" };
    struct vmpk_stats before = stats_of(rt);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vmpk_key out = 77;
        CHECK_EQ(vmpk_key_create(rt, bad[i], VMPK_NONE, 0, &out), VMPK_E_INVALID);
        CHECK_EQ(out, 77);
    }
    CHECK_EQ(stats_of(rt).live_vkeys, before.live_vkeys);
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        vmpk_key k;
        CHECK_EQ(vmpk_key_create(rt, good[i], VMPK_NONE, 0, &k), 0);
        CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    }
}

/* A destroyed key's region answers 0 through vmpk_probe_key even once a
 * later key, readable by all, holds the same window (vmpk_probe, which
 * knows only the address, answers for that key). */
static void probe_key_after_destroy_and_reuse(void)
{
    vmpk_key a, b;
    char *p, *q;
    int local = 0;
    /* A window size no other test uses: the freed window is the only one
     * of its size, so the next key of that size takes it. */
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_RW, 7 << 20, &a), 0);
    CHECK_EQ(vmpk_alloc(rt, a, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_probe_key(a, p, VMPK_RW), 1);
    CHECK_EQ(vmpk_probe_key(a, p + 4095, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe_key(a, p, VMPK_NONE), 1);
    CHECK_EQ(vmpk_probe_key(a, &local, VMPK_READ), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_probe_key(a, p, 7), VMPK_E_INVALID);
    CHECK_EQ(vmpk_probe_key(0, p, VMPK_READ), VMPK_E_INVALID);
    CHECK_EQ(vmpk_probe_key(a | 1ull << 60, p, VMPK_READ), VMPK_E_INVALID);
    CHECK_EQ(vmpk_probe_key(a ^ 1ull << 24, p, VMPK_READ), 0); /* another generation */
    CHECK_EQ(vmpk_key_destroy(rt, a), 0);
    CHECK_EQ(vmpk_probe_key(a, p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_RW, 7 << 20, &b), 0);
    CHECK_EQ(vmpk_alloc(rt, b, 4096, (void **)&q), 0);
    CHECK(q == p); /* the window was reused: the test means something */
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe_key(b, p, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe_key(a, p, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe_key(a, p, VMPK_RW), 0);
    CHECK_EQ(vmpk_key_destroy(rt, b), 0);
}

/* Each field of a live handle forged in turn: a clean error from every
 * entry point, nothing changed, and the real key works on. */
static void forged_handles_change_nothing(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "victim", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    vmpk_key forged[] = {
        k ^ 1ull << 45,               /* another runtime id */
        k & ~0xffffffull,             /* slot field 0 */
        (k & ~0xffffffull) | 0xffffff,/* the last slot, never used */
        (k & ~0xffffffull) | ((k & 0xffffff) + 1000), /* a slot not made yet */
        k + (1ull << 24),             /* the next generation */
        k - (1ull << 24),             /* the previous one */
        k | 1ull << 48,               /* bits above the runtime id */
        0,
    };
    struct vmpk_stats before = stats_of(rt);
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        vmpk_key f = forged[i];
        void *q = (void *)1;
        int want = f == 0 || f >> 48 ? VMPK_E_INVALID : VMPK_E_STALE;
        CHECK_EQ(vmpk_alloc(rt, f, 4096, &q), want);
        CHECK(q == (void *)1);
        CHECK_EQ(vmpk_free(rt, f, p), want);
        CHECK_EQ(vmpk_protect(rt, f, VMPK_RW), want);
        CHECK_EQ(vmpk_begin(rt, f, VMPK_RW), want);
        CHECK_EQ(vmpk_pin(rt, f), want);
        CHECK_EQ(vmpk_unpin(rt, f), want);
        CHECK_EQ(vmpk_key_destroy(rt, f), want);
        CHECK_EQ(vmpk_probe_key(f, p, VMPK_READ), want == VMPK_E_STALE ? 0 : want);
        CHECK(vmpk_enter(f, VMPK_RW) < 0);
        CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    }
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(after.live_vkeys, before.live_vkeys);
    CHECK_EQ(after.regions, before.regions);
    CHECK_EQ(after.gates, before.gates);
    CHECK_EQ(after.pins, before.pins);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(p[0], 0);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

/* A new key with a page, and its gate index. */
static uint32_t indexed_key(const char *name, vmpk_key *k, char **page)
{
    CHECK_EQ(vmpk_key_create(rt, name, VMPK_NONE, 0, k), 0);
    CHECK_EQ(vmpk_alloc(rt, *k, 4096, (void **)page), 0);
    return vmpk_gate_index(*k);
}

/* A gate index is the handle in 32 bits, generation whole: it opens its
 * key, and after the key is destroyed and its slot reused, the old index
 * opens neither (VMPK_E_STALE), nor does any neighbouring index. */
static void gate_indexes_name_one_key(void)
{
    vmpk_key k, k2;
    char *p, *p2;
    uint32_t ix = indexed_key("ix", &k, &p);
    /* runtime id, generation, slot + 1, each exactly */
    CHECK_EQ(ix, (uint32_t)(k >> 45) << 29 | (uint32_t)((k >> 24) & 0x1fffff) << 20 |
                     (uint32_t)(k & 0xffffff));
    CHECK_EQ(vmpk_enter_rw(ix), 0);
    p[0] = 7;
    CHECK_EQ(vmpk_leave_index(ix), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_enter_r(ix), 0);
    CHECK_EQ(p[0], 7);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    CHECK_EQ(vmpk_end(rt, k), 0); /* the same gate, by handle */
    CHECK_EQ(vmpk_leave_index(ix), VMPK_E_GATE_ORDER);

    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    uint32_t ix2 = indexed_key("ix2", &k2, &p2); /* reuses the slot */
    CHECK_EQ(k2 & 0xffffff, k & 0xffffff);
    CHECK(ix2 != 0 && ix2 != ix);
    CHECK_EQ(vmpk_enter_rw(ix), VMPK_E_STALE);
    CHECK_EQ(vmpk_enter_r(ix), VMPK_E_STALE);
    CHECK_EQ(vmpk_probe(p2, VMPK_READ), 0);
    uint32_t forged[] = { ix ^ 1u << 29, ix2 + (1u << 20), ix2 - (1u << 20), ix2 + 1, ix2 & ~0xfffffu };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        CHECK(vmpk_enter_rw(forged[i]) < 0);
        CHECK_EQ(vmpk_probe(p2, VMPK_READ), 0);
    }
    CHECK_EQ(vmpk_enter_rw(0), VMPK_E_INVALID);
    CHECK_EQ(vmpk_leave_index(0), VMPK_E_GATE_ORDER);
    CHECK_EQ(vmpk_enter_rw(ix2), 0);
    CHECK_EQ(p2[0], 0);
    CHECK_EQ(vmpk_leave_index(ix2), 0);

    /* no index past 9 bits of generation or 20 of slot: the handle only */
    CHECK_EQ(vmpk_gate_index((k2 & ~(0x1fffffull << 24)) | 512ull << 24), 0);
    CHECK_EQ(vmpk_gate_index((k2 & ~0xffffffull) | 1u << 20), 0);
    CHECK_EQ(vmpk_gate_index(0), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k2), 0);
}

/* The mailbox calls (vmpk.h): the index in word 0, the result in word 1. */
static int mb_call(void (*call)(void), uint32_t ix)
{
    int32_t *box = vmpk_gate_mailbox();
    box[0] = (int32_t)ix;
    box[1] = 12345; /* overwritten by every call */
    call();
    return box[1];
}

static void *mailbox_of_thread(void *arg)
{
    (void)arg;
    return vmpk_gate_mailbox();
}

/* They are the index calls: the same results for good, stale, forged and
 * zero indexes, and the gates they open are the same gates. Each thread has
 * a mailbox of its own. */
static void mailbox_calls_are_the_index_calls(void)
{
    vmpk_key k, k2;
    char *p, *p2;
    uint32_t ix = indexed_key("mb", &k, &p);
    CHECK_EQ(mb_call(vmpk_mailbox_enter_rw, ix), 0);
    p[0] = 9;
    CHECK_EQ(mb_call(vmpk_mailbox_leave, ix), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(mb_call(vmpk_mailbox_enter_r, ix), 0);
    CHECK_EQ(p[0], 9);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 0);
    CHECK_EQ(vmpk_leave_index(ix), 0); /* the same gate, by index */
    CHECK_EQ(mb_call(vmpk_mailbox_leave, ix), VMPK_E_GATE_ORDER);

    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    uint32_t ix2 = indexed_key("mb2", &k2, &p2); /* reuses the slot */
    uint32_t bad[] = { ix, ix ^ 1u << 29, ix2 + (1u << 20), ix2 - (1u << 20), ix2 + 1,
                       ix2 & ~0xfffffu, 0, UINT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ(mb_call(vmpk_mailbox_enter_rw, bad[i]), vmpk_enter_rw(bad[i]));
        CHECK_EQ(mb_call(vmpk_mailbox_enter_r, bad[i]), vmpk_enter_r(bad[i]));
        CHECK_EQ(mb_call(vmpk_mailbox_leave, bad[i]), vmpk_leave_index(bad[i]));
        CHECK(mb_call(vmpk_mailbox_enter_rw, bad[i]) < 0);
        CHECK_EQ(vmpk_probe(p2, VMPK_READ), 0);
    }
    CHECK_EQ(vmpk_key_destroy(rt, k2), 0);

    pthread_t th;
    void *other = NULL;
    CHECK_EQ(pthread_create(&th, NULL, mailbox_of_thread, NULL), 0);
    CHECK_EQ(pthread_join(th, &other), 0);
    CHECK(other != NULL && other != (void *)vmpk_gate_mailbox());
}

int main(void)
{
    rt = open_rt(0);
    printf("# backend %s\n", backend_of(rt) == VMPK_BACKEND_PKU ? "pku" : "mprotect");
    RUN(create_alloc_gate_roundtrip);
    RUN(read_gate_denies_writes);
    RUN(protect_sets_process_wide_access);
    RUN(nested_gates_restore_outer_state);
    RUN(gate_depth_is_bounded);
    RUN(destroyed_handles_stay_invalid);
    RUN(busy_key_cannot_be_destroyed);
    RUN(bad_arguments_change_nothing);
    RUN(windows_hold_their_regions);
    RUN(many_keys_few_vmas);
    RUN(close_and_reopen);
    RUN(too_many_runtimes);
    RUN(many_regions_fill_the_window);
    RUN(names_refuse_control_characters);
    RUN(probe_key_after_destroy_and_reuse);
    RUN(forged_handles_change_nothing);
    RUN(gate_indexes_name_one_key);
    RUN(mailbox_calls_are_the_index_calls);
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
