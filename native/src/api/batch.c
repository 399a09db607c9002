/*
 * vmpk_keys_create: many vkeys, each with one region, in one call.
 *
 * Creating a key and its region through the JavaScript API costs about
 * 1.7 us, of which the core's own work is under 0.1 us: the rest is two
 * koffi calls with out-parameters and the objects made for each. A batch
 * pays the FFI crossing once. It is built on the public entry points (not
 * on the table internals), so each key is made exactly as vmpk_key_create
 * and vmpk_alloc make one, with their locking and checks.
 */
#include <string.h>

#include "internal.h"

int vmpk_keys_create(vmpk_runtime *rt, size_t n, int access, size_t window_size,
                     size_t region_size, vmpk_key *keys, void **regions)
{
    if (!rt || (n && !keys) || (n && region_size && !regions) || !access_valid(access) ||
        window_size > (size_t)UINT32_MAX * GRANULE)
        return VMPK_E_INVALID;
    if (n > MAX_SLOTS)
        return VMPK_E_TOO_MANY;
    /* A region larger than the window fails for every key: say so before
     * creating any. */
    size_t window = window_size ? window_size : (size_t)rt->window_granules * GRANULE;
    size_t granules = (window + GRANULE - 1) / GRANULE;
    if (region_size > granules * GRANULE)
        return VMPK_E_WINDOW_FULL;

    size_t done = 0;
    int err = 0;
    for (; done < n; done++) {
        if ((err = vmpk_key_create(rt, NULL, access, window_size, &keys[done])))
            break;
        if (region_size && (err = vmpk_alloc(rt, keys[done], region_size, &regions[done]))) {
            done++; /* the key exists: roll it back too */
            break;
        }
    }
    if (!err)
        return 0;
    /* All or nothing: destroy what was made, newest first, so the slots go
     * back on the free list in the order they came off it. (Only a thread
     * that guessed a handle could have a gate on one of them, and keep it.) */
    while (done-- > 0)
        vmpk_key_destroy(rt, keys[done]);
    memset(keys, 0, n * sizeof *keys);
    if (region_size)
        memset(regions, 0, n * sizeof *regions);
    return err;
}
