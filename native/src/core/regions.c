/*
 * Regions inside a window: page runs kept sorted by offset, first fit.
 * A vkey with one region keeps it inline; more go to an array.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static struct range *ranges(struct vkey *v)
{
    return v->cap ? v->r.many : &v->r.one;
}

static const struct range *cranges(const struct vkey *v)
{
    return v->cap ? v->r.many : &v->r.one;
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

static int reserve_one_more(struct vkey *v)
{
    if (v->nregions == 0 || v->nregions < v->cap)
        return 0;
    uint32_t cap = v->cap ? v->cap * 2 : 4;
    struct range *m = malloc(cap * sizeof *m);
    if (!m)
        return VMPK_E_NOMEM;
    memcpy(m, ranges(v), v->nregions * sizeof *m);
    if (v->cap)
        free(v->r.many);
    v->r.many = m;
    v->cap = cap;
    return 0;
}

int vmpk__region_alloc(struct vmpk_runtime *rt, struct vkey *v, uint32_t pages, uint32_t *out)
{
    uint64_t window_pages = (uint64_t)v->granules * (GRANULE / rt->page);
    uint32_t at = 0, i = 0;
    const struct range *r = cranges(v);
    for (; i < v->nregions; i++) {
        if (r[i].page - at >= pages)
            break;
        at = r[i].page + r[i].pages;
    }
    if (i == v->nregions && window_pages - at < pages)
        return VMPK_E_WINDOW_FULL;
    int err = reserve_one_more(v);
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
    if (i == v->nregions || r[i].page != page)
        return VMPK_E_NOT_REGION;
    *pages = r[i].pages;
    memmove(r + i, r + i + 1, (v->nregions - i - 1) * sizeof *r);
    v->nregions--;
    return 0;
}

void vmpk__regions_clear(struct vkey *v)
{
    if (v->cap)
        free(v->r.many);
    v->cap = 0;
    v->nregions = 0;
}

size_t vmpk__regions_bytes(const struct vkey *v)
{
    return (size_t)v->cap * sizeof(struct range);
}
