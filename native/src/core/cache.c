/* The victim choice of the hardware-key cache (see cache.h). */
#include "cache.h"

/* splitmix64's finalizer: each row takes its own 9 bits of it. */
static uint64_t mix(uint32_t slot)
{
    uint64_t h = slot + 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static unsigned col(uint64_t h, int row)
{
    return (unsigned)(h >> (16 * row)) & (SKETCH_WIDTH - 1);
}

static uint32_t estimate(const struct cache_sketch *s, uint64_t h)
{
    uint32_t min = UINT8_MAX;
    for (int r = 0; r < SKETCH_ROWS; r++)
        if (s->count[r][col(h, r)] < min)
            min = s->count[r][col(h, r)];
    return min;
}

uint32_t cache_estimate(const struct cache_sketch *s, uint32_t slot)
{
    return estimate(s, mix(slot));
}

static void halve(struct cache_sketch *s)
{
    for (int r = 0; r < SKETCH_ROWS; r++)
        for (int c = 0; c < SKETCH_WIDTH; c++)
            s->count[r][c] >>= 1;
    s->added = 0;
}

void cache_add(struct cache_sketch *s, uint32_t slot, uint32_t n)
{
    if (!n)
        return;
    uint64_t h = mix(slot);
    /* n may be billions of hits since the last miss: no wrapping here. */
    uint32_t want = n >= UINT8_MAX ? UINT8_MAX : estimate(s, h) + n;
    if (want > UINT8_MAX)
        want = UINT8_MAX;
    /* Conservative update: raise only the counters below the new estimate,
     * so a slot's uses inflate the others sharing a counter less. */
    for (int r = 0; r < SKETCH_ROWS; r++)
        if (s->count[r][col(h, r)] < want)
            s->count[r][col(h, r)] = (uint8_t)want;
    s->added += n < SKETCH_SAMPLE ? n : SKETCH_SAMPLE;
    if (s->added >= SKETCH_SAMPLE)
        halve(s);
}

int cache_pick(struct hwkey *hw, uint32_t n, struct cache_sketch *sketch)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s = atomic_load(&hw[i].state);
        uint32_t uses = atomic_exchange_explicit(&hw[i].uses, 0, memory_order_relaxed);
        if (HW_SLOT1(s))
            cache_add(sketch, HW_SLOT1(s) - 1, uses);
    }
    int best = -1;
    uint32_t least = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s = atomic_load(&hw[i].state);
        if (s == 0)
            return (int)i;
        if (HW_PINS(s))
            continue;
        uint32_t used = cache_estimate(sketch, HW_SLOT1(s) - 1);
        if (used < least) {
            least = used;
            best = (int)i;
        }
    }
    return best;
}
