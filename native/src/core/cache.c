/* The victim choice of the hardware-key cache (see cache.h). */
#include "cache.h"

int cache_pick(const struct hwkey *hw, uint32_t n)
{
    int best = -1;
    uint64_t oldest = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s = atomic_load(&hw[i].state);
        if (s == 0)
            return (int)i;
        uint64_t stamp = relaxed_load(&hw[i].stamp);
        if (HW_PINS(s) == 0 && stamp < oldest) {
            oldest = stamp;
            best = (int)i;
        }
    }
    return best;
}
