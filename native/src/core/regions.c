/*
 * Regions inside a window: page runs kept sorted by offset, first fit.
 *
 * The list decides which pages vmpk_alloc hands out and vmpk_free discards,
 * so it lives in write-protected metadata (invariant 6), never in malloc:
 * a key with one region keeps it inline in its slot; a key with more uses
 * its window's table in the regions meta area. The table sits at a fixed
 * place computed from the window's first granule (itself in the slot), so
 * no writable pointer leads to it, and it holds a region per page of the
 * window, so it never has to grow or move: only its pages are committed
 * as the key needs them (v->cap entries).
 */
#include <string.h>

#include "internal.h"
#include "meta.h"
#include "os.h"

struct range *vmpk__regions_table(uint32_t granule)
{
    return (struct range *)vmpk__meta.regions_area + (size_t)granule * REGIONS_PER_GRANULE;
}

static struct range *ranges(struct vkey *v)
{
    return v->cap ? vmpk__regions_table(v->granule) : &v->one;
}

static const struct range *cranges(const struct vkey *v)
{
    return v->cap ? vmpk__regions_table(v->granule) : &v->one;
}

/* Index of the first region starting at or after page. */
static uint32_t lower_bound(const struct vkey *v, uint32_t page)
{
    const struct range *r = cranges(v);
    uint32_t lo = 0, hi = v->nregions;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[mid].page < page)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more region: commits the table's next pages when full,
 * doubling. The table's pages may be committed already (an earlier key of
 * the window, or a neighbour's table sharing a page): committing again
 * changes nothing there. */
static int reserve_one_more(struct vmpk_runtime *rt, struct vkey *v, uint64_t window_pages)
{
    if (v->nregions == 0 || v->nregions < v->cap)
        return 0;
    uintptr_t tbl = (uintptr_t)vmpk__regions_table(v->granule);
    uint64_t want = v->cap ? (uint64_t)v->cap * 2 : 2;
    if (want > window_pages)
        want = window_pages;
    uintptr_t page = rt->page;
    uintptr_t from = (tbl + (uintptr_t)v->cap * sizeof(struct range)) & ~(page - 1);
    uintptr_t to = (tbl + want * sizeof(struct range) + page - 1) & ~(page - 1);
    int r = vmpk__meta_commit(&rt->c, (void *)from, to - from);
    if (r)
        return vmpk__os_error(r);
    uint64_t cap = (to - tbl) / sizeof(struct range);
    if (v->cap == 0) /* the inline region moves into the table */
        *(struct range *)tbl = v->one;
    v->cap = (uint32_t)(cap < window_pages ? cap : window_pages);
    return 0;
}

int vmpk__region_alloc(struct vmpk_runtime *rt, struct vkey *v, uint32_t pages, uint32_t *out)
{
    REQUIRE_LOCKED(rt);
    uint64_t window_pages = (uint64_t)v->granules * (GRANULE / rt->page);
    uint32_t at = 0, i = 0;
    const struct range *r = cranges(v);
    for (; i < v->nregions; i++) {
        if (r[i].page - at >= pages)
            break;
        at = r[i].page + r[i].pages;
    }
    /* Also where a gap was found: with PKU the list cannot be forged, but
     * without it (META_MPROTECT leaves the tables writable) this keeps a
     * forged list, at least, from reaching past the window the slot names. */
    if ((uint64_t)at + pages > window_pages)
        return VMPK_E_WINDOW_FULL;
    int err = reserve_one_more(rt, v, window_pages);
    if (err)
        return err;
    struct range *w = ranges(v);
    memmove(w + i + 1, w + i, (v->nregions - i) * sizeof *w);
    w[i] = (struct range){ at, pages };
    v->nregions++;
    *out = at;
    return 0;
}

const struct range *vmpk__region_containing(const struct vkey *v, uint32_t page)
{
    uint32_t i = lower_bound(v, page + 1);
    const struct range *r = cranges(v);
    if (i == 0)
        return NULL;
    return page < r[i - 1].page + r[i - 1].pages ? &r[i - 1] : NULL;
}

int vmpk__region_free(struct vkey *v, uint32_t page, uint32_t *pages)
{
    uint32_t i = lower_bound(v, page);
    struct range *r = ranges(v);
    if (i == v->nregions || r[i].page != page ||
        (uint64_t)r[i].page + r[i].pages > v->used) /* see vmpk__region_alloc */
        return VMPK_E_NOT_REGION;
    *pages = r[i].pages;
    memmove(r + i, r + i + 1, (v->nregions - i - 1) * sizeof *r);
    v->nregions--;
    return 0;
}

void vmpk__region_undo(struct vkey *v, uint32_t page)
{
    uint32_t i = lower_bound(v, page);
    struct range *r = ranges(v);
    REQUIRE(i < v->nregions && r[i].page == page);
    memmove(r + i, r + i + 1, (v->nregions - i - 1) * sizeof *r);
    v->nregions--;
}

/* The table's pages stay committed for the window's next key. */
void vmpk__regions_clear(struct vkey *v)
{
    v->cap = 0;
    v->nregions = 0;
}

size_t vmpk__regions_bytes(const struct vkey *v)
{
    return (size_t)v->cap * sizeof(struct range);
}
