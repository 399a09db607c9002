/*
 * vmpk_keys_create: a batch is exactly n vmpk_key_create + vmpk_alloc calls
 * (same stats, same kind of keys), bad input changes nothing, and a batch
 * that fails part way leaves no key behind.
 */
#include "check.h"
#include "internal.h"
#include "meta.h" /* the arena's size */

#define N 5000 /* more than one slot chunk (4096), so the table grows */

static vmpk_key keys[N];
static void *regions[N];

#define SAME(field) CHECK_EQ(a.field, b.field)

static void a_batch_counts_as_n_single_calls(void)
{
    /* Two fresh runtimes (fresh ids: their tables start uncommitted). */
    vmpk_runtime *one = open_rt(0), *many = open_rt(0);
    for (int i = 0; i < N; i++) {
        vmpk_key k;
        void *p;
        CHECK_EQ(vmpk_key_create(one, NULL, VMPK_NONE, 0, &k), 0);
        CHECK_EQ(vmpk_alloc(one, k, 4096, &p), 0);
    }
    CHECK_EQ(vmpk_keys_create(many, N, VMPK_NONE, 0, 4096, keys, regions), 0);
    struct vmpk_stats a = stats_of(one), b = stats_of(many);
    SAME(live_vkeys);
    SAME(regions);
    SAME(mapped_bytes);
    SAME(metadata_bytes);
    SAME(syscalls);
    SAME(mprotect_calls);
    SAME(pkey_mprotect_calls);
    CHECK_EQ(b.live_vkeys, N);
    CHECK_EQ(b.regions, N);
    CHECK_EQ(b.mapped_bytes, (uint64_t)N * 4096);
    /* A slot and an owner entry per unnamed key: the 64-byte budget. */
    CHECK_EQ(b.metadata_bytes, (uint64_t)N * (sizeof(struct vkey) + sizeof(uint32_t)));
    CHECK(b.metadata_bytes / N <= 64);
    CHECK_EQ(vmpk_close(one), 0);
    CHECK_EQ(vmpk_close(many), 0);
}

static void batch_keys_are_ordinary_keys(void)
{
    vmpk_runtime *rt = open_rt(0);
    struct vmpk_info info;
    vmpk_info(rt, &info);
    CHECK_EQ(vmpk_keys_create(rt, 64, VMPK_NONE, 0, 8192, keys, regions), 0);
    for (int i = 0; i < 64; i++) {
        vmpk_key k;
        void *r;
        size_t size;
        CHECK(keys[i] != 0);
        CHECK(i == 0 || keys[i] != keys[i - 1]);
        CHECK_EQ((uintptr_t)regions[i] % info.page_size, 0);
        CHECK_EQ(vmpk_lookup(rt, (char *)regions[i] + 8191, &k, &r, &size), 0);
        CHECK(k == keys[i] && r == regions[i]);
        CHECK_EQ(size, 8192);
        /* Only its own gate opens it (the stub build protects nothing). */
        if (!info.pkru_stubbed)
            CHECK_EQ(vmpk_probe(regions[i], VMPK_READ), 0);
        CHECK_EQ(vmpk_begin(rt, keys[i], VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(regions[i], VMPK_RW), 1);
        ((volatile char *)regions[i])[0] = (char)i;
        CHECK_EQ(vmpk_end(rt, keys[i]), 0);
    }
    CHECK_EQ(vmpk_key_destroy(rt, keys[7]), 0);
    CHECK_EQ(vmpk_begin(rt, keys[7], VMPK_READ), VMPK_E_STALE);
    CHECK_EQ(stats_of(rt).live_vkeys, 63);
    /* No region: the regions array is not needed, and the access is given. */
    CHECK_EQ(vmpk_keys_create(rt, 3, VMPK_RW, 2 << 20, 0, keys, NULL), 0);
    for (int i = 0; i < 3; i++) {
        void *p;
        CHECK_EQ(vmpk_alloc(rt, keys[i], 2 << 20, &p), 0); /* the whole 2 MiB window */
        CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    }
    CHECK_EQ(stats_of(rt).live_vkeys, 66);
    CHECK_EQ(vmpk_close(rt), 0);
}

static int same_stats(const struct vmpk_stats *a, const struct vmpk_stats *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static void bad_input_changes_nothing(void)
{
    vmpk_runtime *rt = open_rt(0);
    struct vmpk_stats before = stats_of(rt), after;
    keys[0] = 12345;
    CHECK_EQ(vmpk_keys_create(NULL, 1, VMPK_NONE, 0, 0, keys, NULL), VMPK_E_INVALID);
    CHECK_EQ(vmpk_keys_create(rt, 1, VMPK_NONE, 0, 0, NULL, NULL), VMPK_E_INVALID);
    CHECK_EQ(vmpk_keys_create(rt, 1, VMPK_NONE, 0, 4096, keys, NULL), VMPK_E_INVALID);
    CHECK_EQ(vmpk_keys_create(rt, 1, 2, 0, 0, keys, NULL), VMPK_E_INVALID); /* write-only */
    CHECK_EQ(vmpk_keys_create(rt, 1, VMPK_NONE, (size_t)UINT32_MAX * GRANULE + 1, 0, keys, NULL),
             VMPK_E_INVALID);
    CHECK_EQ(vmpk_keys_create(rt, (size_t)MAX_SLOTS + 1, VMPK_NONE, 0, 0, keys, NULL),
             VMPK_E_TOO_MANY);
    /* 1 MiB + 1 byte does not fit the default window, nor 2 MiB + 1 one of
     * 1.5 MiB (rounded up to 2). */
    CHECK_EQ(vmpk_keys_create(rt, 1, VMPK_NONE, 0, (1 << 20) + 1, keys, regions),
             VMPK_E_WINDOW_FULL);
    CHECK_EQ(vmpk_keys_create(rt, 1, VMPK_NONE, 3 << 19, (2 << 20) + 1, keys, regions),
             VMPK_E_WINDOW_FULL);
    CHECK_EQ(keys[0], 12345); /* rejected before anything was written */
    after = stats_of(rt);
    CHECK(same_stats(&before, &after));
    /* n = 0 is a batch of nothing; NULL arrays are fine then. */
    CHECK_EQ(vmpk_keys_create(rt, 0, VMPK_NONE, 0, 4096, NULL, NULL), 0);
    after = stats_of(rt);
    CHECK(same_stats(&before, &after));
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Last: it leaves the arena's address space in quarter-arena windows. */
static void a_failed_batch_leaves_no_key(void)
{
    vmpk_runtime *rt = open_rt(0);
    vmpk_key k;
    void *p;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, &p), 0);
    struct vmpk_stats before = stats_of(rt);
    /* Windows of a quarter of the arena (4 TiB, or what the address space
     * held: less under qemu-user): the fourth fails at the latest, since
     * the key above holds a window too. */
    size_t quarter = (size_t)vmpk__meta.arena.ngranules * GRANULE / 4;
    CHECK_EQ(vmpk_keys_create(rt, 8, VMPK_NONE, quarter, 4096, keys, regions), VMPK_E_NOMEM);
    struct vmpk_stats after = stats_of(rt);
    /* Slots made once stay counted (as after vmpk_key_destroy): that is how
     * many keys the batch made before it failed, and rolled back. */
    uint64_t made = (after.metadata_bytes - before.metadata_bytes) / (sizeof(struct vkey) + 4);
    if (made == 0) {
        CHECK_EQ(vmpk_close(rt), 0);
        SKIP("no quarter of the arena was free: nothing to roll back");
    }
    CHECK(made <= 4);
    CHECK_EQ(after.live_vkeys, before.live_vkeys);
    CHECK_EQ(after.regions, before.regions);
    CHECK_EQ(after.mapped_bytes, before.mapped_bytes);
    for (int i = 0; i < 8; i++)
        CHECK(keys[i] == 0 && regions[i] == NULL);
    /* The key made before is untouched, and the rolled-back slots are reused. */
    CHECK_EQ(vmpk_lookup(rt, p, NULL, NULL, NULL), 0);
    CHECK_EQ(vmpk_keys_create(rt, 2, VMPK_NONE, quarter, 0, keys, NULL), 0);
    CHECK_EQ(stats_of(rt).metadata_bytes, after.metadata_bytes);
    CHECK_EQ(vmpk_close(rt), 0);
}

int main(void)
{
    RUN(a_batch_counts_as_n_single_calls);
    RUN(batch_keys_are_ordinary_keys);
    RUN(bad_input_changes_nothing);
    RUN(a_failed_batch_leaves_no_key);
    return check_done();
}
