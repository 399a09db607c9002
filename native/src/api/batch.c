/*
 * vmpk_keys_create: many vkeys, each with one region, in one call.
 *
 * Creating a key and its region through the JavaScript API costs about
 * 1.7 us, of which the core's own work is under 0.1 us: the rest is two
 * koffi calls with out-parameters and the objects made for each. A batch
 * pays the FFI crossing once. It is built on the public entry points (not
 * on the table internals), so each key is made exactly as vmpk_key_create
 * and vmpk_alloc make one, with their locking and checks.
 *
 * Where the metadata is protected by mprotect (META_MPROTECT, no PKU),
 * each entry point opens and closes it with a syscall each way: four per
 * key and region. The batch holds it open across META_CHUNK keys instead,
 * so the entry points inside find it open (the open is counted, meta.c)
 * and make no syscall: two per chunk. The chunk bounds how long the
 * metadata stays writable at a stretch, as any entry point's does.
 */
#include <string.h>

#include "enter.h"
#include "internal.h"

#define META_CHUNK 1024

/* META_MPROTECT: opens the metadata for the next chunk, counting the call
 * as the entry points count theirs. */
static void chunk_open(struct vmpk_runtime *rt, int id)
{
    int calls = vmpk__meta_mp_open();
    if (id >= 0)
        atomic_fetch_add_explicit(&rt->c.meta_mprotect_calls, calls, memory_order_relaxed);
}

static void chunk_close(struct vmpk_runtime *rt, int id)
{
    vmpk__meta_mp_close(id >= 0 ? &rt->c : NULL);
}

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

    /* rt is trusted as a counter only once it names an open runtime (the
     * entry points check it again, each under the metadata). */
    bool chunked = vmpk__meta.mode == META_MPROTECT;
    int id = chunked ? runtime_id_of(rt) : -1;
    size_t done = 0;
    int err = 0;
    for (; done < n; done++) {
        if (chunked && done % META_CHUNK == 0) {
            if (done)
                chunk_close(rt, id);
            chunk_open(rt, id);
        }
        if ((err = vmpk_key_create(rt, NULL, access, window_size, &keys[done])))
            break;
        if (region_size && (err = vmpk_alloc(rt, keys[done], region_size, &regions[done]))) {
            done++; /* the key exists: roll it back too */
            break;
        }
    }
    if (chunked && n)
        chunk_close(rt, id);
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
