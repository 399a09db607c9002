/*
 * The hardware-key cache's policy (cache.c) as plain functions over a
 * table of hw keys and a sketch built by hand (the pku backend's own hold
 * them in a runtime): no runtime is opened, no syscall made, so
 * it runs the same on every machine and build. Each pick names its victim
 * exactly.
 */
#include "check.h"

#include "cache.h"

static struct {
    struct hwkey hw[MAX_HW_KEYS];
    struct cache_sketch sketch;
} rt;

static void reset(void)
{
    memset(&rt, 0, sizeof rt);
}

/* hw key h serves slot with `pins` open gates and `uses` not yet folded. */
static void serve(int h, uint32_t slot, uint32_t pins, uint32_t uses)
{
    atomic_store(&rt.hw[h].state, HW_STATE(slot, pins));
    atomic_store(&rt.hw[h].uses, uses);
}

static void least_used_is_the_victim(void)
{
    reset();
    serve(0, 10, 0, 5);
    serve(1, 11, 0, 2);
    serve(2, 12, 0, 7);
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 1);
    /* The uses were folded into the sketch, exactly, and reset. */
    CHECK_EQ(cache_estimate(&rt.sketch, 10), 5);
    CHECK_EQ(cache_estimate(&rt.sketch, 11), 2);
    CHECK_EQ(cache_estimate(&rt.sketch, 12), 7);
    for (int h = 0; h < 3; h++)
        CHECK_EQ(atomic_load(&rt.hw[h].uses), 0);
    CHECK_EQ(rt.sketch.added, 5 + 2 + 7);
    /* Folding again adds nothing: the same victim. */
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 1);
    CHECK_EQ(cache_estimate(&rt.sketch, 11), 2);
}

static void an_unbound_hw_key_comes_first(void)
{
    reset();
    serve(0, 10, 0, 0);
    serve(2, 12, 0, 0);
    atomic_store(&rt.hw[1].uses, 9); /* left by a racing hit: dropped */
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 1);
    CHECK_EQ(atomic_load(&rt.hw[1].uses), 0);
    CHECK_EQ(rt.sketch.added, 0);
}

static void pinned_keys_are_never_picked(void)
{
    reset();
    serve(0, 10, 0, 5);
    serve(1, 11, 1, 2); /* least used, but a gate pins it */
    serve(2, 12, 0, 7);
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 0);
    serve(0, 10, 3, 0);
    serve(2, 12, 1, 0);
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), -1); /* every one pinned */
    CHECK_EQ(cache_pick(rt.hw, 0, &rt.sketch), -1); /* no hw key at all */
}

static void ties_go_to_the_lowest_index(void)
{
    reset();
    serve(0, 10, 0, 4);
    serve(1, 11, 0, 3);
    serve(2, 12, 0, 3);
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 1);
    serve(1, 11, 1, 0);
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 2);
}

/* What LRU cannot do: a vkey's uses while it was not resident count when
 * it comes back, so a one-off newcomer is the one to leave, not it. */
static void uses_are_remembered_across_residencies(void)
{
    reset();
    cache_add(&rt.sketch, 20, 9);      /* used 9 times, then evicted */
    serve(0, 20, 0, 1);                /* back: the gate that missed */
    serve(1, 21, 0, 3);
    serve(2, 22, 0, 1);                /* a newcomer, used once */
    CHECK_EQ(cache_pick(rt.hw, 3, &rt.sketch), 2);
    CHECK_EQ(cache_estimate(&rt.sketch, 20), 10);
}

static void counts_saturate_and_halve(void)
{
    reset();
    cache_add(&rt.sketch, 1, 100);
    cache_add(&rt.sketch, 2, 1000);
    CHECK_EQ(cache_estimate(&rt.sketch, 2), 255); /* a byte each */
    CHECK_EQ(rt.sketch.added, 1100);
    cache_add(&rt.sketch, 3, 0);                  /* adds nothing */
    CHECK_EQ(cache_estimate(&rt.sketch, 3), 0);
    CHECK_EQ(rt.sketch.added, 1100);
    /* The use that reaches SKETCH_SAMPLE halves every count. */
    cache_add(&rt.sketch, 3, SKETCH_SAMPLE - 1100 - 1);
    CHECK_EQ(rt.sketch.added, SKETCH_SAMPLE - 1);
    CHECK_EQ(cache_estimate(&rt.sketch, 1), 100);
    cache_add(&rt.sketch, 1, 1);
    CHECK_EQ(rt.sketch.added, 0);
    CHECK_EQ(cache_estimate(&rt.sketch, 1), 101 / 2);
    CHECK_EQ(cache_estimate(&rt.sketch, 2), 255 / 2);
    CHECK_EQ(cache_estimate(&rt.sketch, 3), 255 / 2);
    /* So yesterday's favourite loses to today's. */
    serve(0, 2, 0, 0);
    serve(1, 4, 0, 200);
    CHECK_EQ(cache_pick(rt.hw, 2, &rt.sketch), 0);
}

/* Billions of hits between two misses neither wrap a count nor skip a
 * halving. */
static void huge_counts_saturate(void)
{
    reset();
    cache_add(&rt.sketch, 5, 3);
    cache_add(&rt.sketch, 6, UINT32_MAX);
    CHECK_EQ(rt.sketch.added, 0);                  /* it reached SKETCH_SAMPLE */
    CHECK_EQ(cache_estimate(&rt.sketch, 6), 255 / 2);
    CHECK_EQ(cache_estimate(&rt.sketch, 5), 3 / 2);
    cache_add(&rt.sketch, 6, UINT32_MAX - 100);
    CHECK_EQ(cache_estimate(&rt.sketch, 6), 255 / 2);
}

/* The sketch is exact for the few vkeys of a small test (the exact counts
 * of test_counts.c rest on it): 64 slots with distinct counts. */
static void small_sets_count_exactly(void)
{
    reset();
    for (uint32_t s = 0; s < 64; s++)
        cache_add(&rt.sketch, s, s + 1);
    size_t wrong = 0;
    for (uint32_t s = 0; s < 64; s++)
        wrong += cache_estimate(&rt.sketch, s) != s + 1;
    CHECK_EQ(wrong, 0);
    CHECK_EQ(cache_estimate(&rt.sketch, 64), 0);
}

/* A hit's whole part in the policy: one count on its hw key. Binding
 * starts the count afresh (the gate then counts its own use). */
static void hits_only_count(void)
{
    reset();
    struct hwkey *k = &rt.hw[0];
    atomic_store(&k->uses, 5);
    hw_bind_pinned(k, 7);
    CHECK_EQ(atomic_load(&k->uses), 0);
    CHECK_EQ(atomic_load(&k->state), HW_STATE(7, 1));
    hw_touch(k);
    hw_touch(k);
    CHECK_EQ(atomic_load(&k->uses), 2);
    CHECK_EQ(rt.sketch.added, 0);
}

int main(void)
{
    RUN(least_used_is_the_victim);
    RUN(an_unbound_hw_key_comes_first);
    RUN(pinned_keys_are_never_picked);
    RUN(ties_go_to_the_lowest_index);
    RUN(uses_are_remembered_across_residencies);
    RUN(counts_saturate_and_halve);
    RUN(huge_counts_saturate);
    RUN(small_sets_count_exactly);
    RUN(hits_only_count);
    return check_done();
}
