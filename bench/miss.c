/*
 * miss: what a gate miss costs on the pku backend, in exact counts from
 * vmpk_stats() deltas.
 *
 *   bench/build/miss-stub [ROUNDS]     PKRU stubbed, pkey calls simulated: any machine
 *   bench/build/miss-release [ROUNDS]  the real build: needs PKU (the QEMU guest)
 *
 * For each case: KEYS vkeys with REGIONS one-page regions each, a budget of
 * BUDGET hardware keys, and gates cycling through the keys in order: every
 * key is used as often as the others, so the cache (cache.h: ties go to the
 * lowest hw index) keeps BUDGET - 1 of them and cycles the rest through one
 * hw key, and all but BUDGET - 1 gates of a cycle miss. One warm-up cycle binds
 * the hardware keys first (its pkey_alloc calls are not counted); then
 * ROUNDS cycles (default 4) are measured. A "holes" case frees every other
 * region, so the live regions are not contiguous.
 *
 * Prints one line per case, `miss case=... key=value ...` (totals over the
 * measured gates), for bench/miss.mjs to read. Exit 1 on any error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmpk.h"

#define KEYS 64
#define BUDGET 4
#define ROUNDS 4 /* default; argv[1] sets it */
#define MAX_REGIONS 100

#define CHECK(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) {                                                                         \
            fprintf(stderr, "miss: %s: %s\n", #call, vmpk_strerror(rc_));                  \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static int rounds = ROUNDS;

static void one_case(const char *name, int regions, int holes)
{
    struct vmpk_options o = { .backend = VMPK_BACKEND_PKU, .max_hw_keys = BUDGET };
    vmpk_runtime *rt;
    struct vmpk_info info;
    static vmpk_key keys[KEYS];
    static void *mem[KEYS][MAX_REGIONS];
    struct vmpk_stats a, b;

    CHECK(vmpk_open(&o, &rt));
    CHECK(vmpk_info(rt, &info));
    for (int k = 0; k < KEYS; k++) {
        CHECK(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &keys[k]));
        for (int r = 0; r < regions; r++)
            CHECK(vmpk_alloc(rt, keys[k], 4096, &mem[k][r]));
        if (holes)
            for (int r = 0; r < regions; r += 2)
                CHECK(vmpk_free(rt, keys[k], mem[k][r]));
    }
    for (int k = 0; k < KEYS; k++) { /* warm-up: binds the hardware keys */
        CHECK(vmpk_begin(rt, keys[k], VMPK_RW));
        CHECK(vmpk_end(rt, keys[k]));
    }
    CHECK(vmpk_stats(rt, &a));
    for (int i = 0; i < rounds; i++) {
        for (int k = 0; k < KEYS; k++) {
            CHECK(vmpk_begin(rt, keys[k], VMPK_RW));
            /* A touch: faults where PKU is real and the gate did not open. */
            volatile char *p = mem[k][regions - 1];
            p[0]++;
            CHECK(vmpk_end(rt, keys[k]));
        }
    }
    CHECK(vmpk_stats(rt, &b));
    printf("miss case=%s build=%s regions=%d live_regions=%llu keys=%d budget=%d "
           "hw_keys_held=%llu gates=%llu hits=%llu misses=%llu evictions=%llu "
           "syscalls=%llu pkey_mprotect_calls=%llu mprotect_calls=%llu pkru_writes=%llu\n",
           name, info.pkru_stubbed ? "stub" : "real", regions,
           (unsigned long long)b.regions / KEYS, KEYS, info.hw_keys_budget,
           (unsigned long long)b.hw_keys_held, (unsigned long long)(b.gates - a.gates),
           (unsigned long long)(b.hits - a.hits), (unsigned long long)(b.misses - a.misses),
           (unsigned long long)(b.evictions - a.evictions),
           (unsigned long long)(b.syscalls - a.syscalls),
           (unsigned long long)(b.pkey_mprotect_calls - a.pkey_mprotect_calls),
           (unsigned long long)(b.mprotect_calls - a.mprotect_calls),
           (unsigned long long)(b.pkru_writes - a.pkru_writes));
    CHECK(vmpk_close(rt));
}

int main(int argc, char **argv)
{
    if (argc > 1 && (rounds = atoi(argv[1])) < 1) {
        fprintf(stderr, "usage: miss [ROUNDS >= 1]\n");
        return 2;
    }
    if (!vmpk_pku_supported()) {
        fprintf(stderr, "miss: no PKU here (CPU or kernel); run miss-stub, or this in the QEMU guest\n");
        return 77;
    }
    one_case("1-region", 1, 0);
    one_case("10-regions", 10, 0);
    one_case("100-regions", 100, 0);
    one_case("100-regions-holes", 100, 1);
    return 0;
}
