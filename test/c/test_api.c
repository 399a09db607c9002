/* The C API on the backend VMPK_BACKEND selects: behaviour and misuse. */
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
 * non-resident keys merge back, so VMAs stay in the tens. */
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
    CHECK(vmas <= 300);
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
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
