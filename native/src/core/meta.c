/*
 * The meta pages (see meta.h): the mode, the reservation and its areas, the
 * meta pkey, the thread structs, and META_MPROTECT's guard of the runtimes
 * page and of each runtime's fixed half.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "internal.h"
#include "meta.h"
#include "os.h"
#include "pkru.h"

_Static_assert(sizeof(struct meta_page) == 4096, "the meta page is one page");
_Static_assert(sizeof(struct vmpk_thread) <= THREAD_STRIDE, "THREAD_STRIDE too small");
_Static_assert(sizeof(struct vmpk_runtime) <= RT_STRIDE, "RT_STRIDE too small");
_Static_assert(offsetof(struct vmpk_runtime, lock) == RT_FIXED_BYTES,
               "the changing half begins on a page of its own");

struct meta_page vmpk__meta = {
    .pool = { .lock = PTHREAD_MUTEX_INITIALIZER },
    .threads_lock = PTHREAD_MUTEX_INITIALIZER,
    .arena = { .lock = PTHREAD_MUTEX_INITIALIZER },
};
struct meta_runtimes vmpk__meta_rts;
_Static_assert(sizeof(struct meta_runtimes) == 4096, "the runtimes page is one page");

int vmpk__meta_mode;
int vmpk__meta_pkey;
_Atomic uint32_t vmpk__meta_owned;

/* The entries' restartable sequences (cpu.h): pairs of offsets, each
 * from its own field, to the RDPKRU and to the WRPKRU. None in the stub
 * build. */
extern const int32_t __start_vmpk_restart[] __attribute__((weak, visibility("hidden")));
extern const int32_t __stop_vmpk_restart[] __attribute__((weak, visibility("hidden")));

/* The checks after an exact write: pairs of offsets to the RDPKRU and to
 * the end of the check. */
extern const int32_t __start_vmpk_recheck[] __attribute__((weak, visibility("hidden")));
extern const int32_t __stop_vmpk_recheck[] __attribute__((weak, visibility("hidden")));

static uintptr_t find(const int32_t *from, const int32_t *to, uintptr_t ip, bool last_in)
{
    for (const int32_t *e = from; e && e < to; e += 2) {
        uintptr_t lo = (uintptr_t)e + (uintptr_t)(intptr_t)e[0];
        uintptr_t hi = (uintptr_t)(e + 1) + (uintptr_t)(intptr_t)e[1];
        if (ip >= lo && (ip < hi || (last_in && ip == hi)))
            return lo;
    }
    return 0;
}

uintptr_t vmpk__pkru_restart(uintptr_t ip)
{
    uintptr_t at = find(__start_vmpk_restart, __stop_vmpk_restart, ip, true);
    return at ? at : find(__start_vmpk_recheck, __stop_vmpk_recheck, ip, false);
}

#define THREADS_CHUNK 64      /* thread structs committed at a time */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_err;
/* META_MPROTECT: the calls that have vmpk__meta_rts open. Outside meta:
 * it must be writable while the page is not. */
static pthread_mutex_t rts_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t rts_open;

static size_t round_page(size_t n)
{
    size_t page = os_page_size();
    return (n + page - 1) / page * page;
}

static void set_owned(uint32_t owned)
{
    struct meta_page *m = &vmpk__meta;
    uint32_t ad = owned & 0x55555555u & ~m->m_bits;
    relaxed_store(&m->owned, owned);
    relaxed_store(&m->owned_enter, owned & ~m->m_wd);
    relaxed_store(&m->boot_open, ad);
    relaxed_store(&m->boot_closed, ad | m->m_wd);
    relaxed_store(&vmpk__meta_owned, owned);
}

static int choose_mode(void)
{
    const char *env = getenv("VMPK_META");
    if (env && strcmp(env, "off") == 0)
        return META_OFF;
    return os_pkey_supported() ? META_PKEY : META_MPROTECT;
}

static void init(void)
{
    struct meta_page *m = &vmpk__meta;
    size_t granules = ARENA_MAX / GRANULE;
    size_t rts = (size_t)VMPK_MAX_RUNTIMES * RT_STRIDE;
    size_t threads = (size_t)MAX_THREADS * THREAD_STRIDE;
    size_t owner = round_page(granules * sizeof(uint32_t));
    size_t free_ = round_page(granules * sizeof(struct range));
    size_t slots = round_page((size_t)MAX_SLOTS * sizeof(struct vkey));
    size_t regions = granules * REGIONS_PER_GRANULE * sizeof(struct range);
    size_t len = rts + threads + owner + free_ + (size_t)VMPK_MAX_RUNTIMES * slots + regions;
    uint8_t *base = os_reserve(NULL, len);
    if (!base) {
        init_err = VMPK_E_NOMEM;
        return;
    }
    m->base = base;
    m->len = len;
    vmpk__meta_rts.area = base;
    m->threads_lo = (uintptr_t)(base + rts);
    m->threads_len = threads;
    m->owner_area = base + rts + threads;
    m->free_area = m->owner_area + owner;
    m->slots_area = m->free_area + free_;
    m->slots_stride = slots;
    m->regions_area = m->slots_area + (size_t)VMPK_MAX_RUNTIMES * slots;
    m->mode = choose_mode();
    if (m->mode == META_PKEY) {
        int pkey = os_pkey_alloc_readonly(); /* this thread: WD already */
        if (pkey < 0) {
            m->mode = META_MPROTECT;
        } else {
            m->pkey = pkey;
            m->m_bits = 3u << (2 * pkey);
            m->m_wd = PKRU_WD << (2 * pkey);
            m->not_m = ~m->m_bits;
            set_owned(m->m_bits);
            if (os_commit_pkey(NULL, m, sizeof *m, pkey) ||
                os_commit_pkey(NULL, &vmpk__meta_rts, sizeof vmpk__meta_rts, pkey)) {
                init_err = vmpk__system_error(errno);
                return;
            }
        }
    }
    vmpk__meta_pkey = m->pkey;
    vmpk__meta_mode = m->mode;
    if (m->mode == META_MPROTECT &&
        os_mprotect_meta(NULL, &vmpk__meta_rts, sizeof vmpk__meta_rts, PROT_READ))
        init_err = vmpk__system_error(errno);
}

int vmpk__meta_init(void)
{
    pthread_once(&once, init);
    return init_err;
}

bool vmpk__meta_contains(uintptr_t addr)
{
    const struct meta_page *m = &vmpk__meta;
    return addr - (uintptr_t)m < sizeof *m ||
           addr - (uintptr_t)&vmpk__meta_rts < sizeof vmpk__meta_rts ||
           (m->base && addr - (uintptr_t)m->base < m->len);
}

int vmpk__meta_commit(struct runtime_counters *c, void *addr, size_t len)
{
    switch (vmpk__meta.mode) {
    case META_PKEY:
        return os_commit_pkey(c, addr, len, vmpk__meta.pkey);
    default:
        return os_commit(c, addr, len);
    }
}

void vmpk__meta_own(int pkey)
{
    REQUIRE_META_OPEN();
    if (vmpk__meta.mode == META_PKEY)
        set_owned(relaxed_load(&vmpk__meta.owned) | 3u << (2 * pkey));
}

int vmpk__meta_runtime_fixed(struct vmpk_runtime *rt, bool writable, struct runtime_counters *c)
{
    if (vmpk__meta.mode != META_MPROTECT)
        return 0;
    int r = os_mprotect_meta(c, rt, RT_FIXED_BYTES, writable ? PROT_READ | PROT_WRITE : PROT_READ);
    if (r && !writable)
        abort(); /* the fixed half would stay writable */
    return r;
}

int vmpk__meta_runtimes_open(void)
{
    if (vmpk__meta.mode != META_MPROTECT)
        return 0;
    int r = 0;
    pthread_mutex_lock(&rts_lock);
    if (rts_open == 0)
        r = os_mprotect_meta(NULL, &vmpk__meta_rts, sizeof vmpk__meta_rts,
                             PROT_READ | PROT_WRITE);
    rts_open += r == 0;
    pthread_mutex_unlock(&rts_lock);
    return r;
}

void vmpk__meta_runtimes_close(struct runtime_counters *c)
{
    if (vmpk__meta.mode != META_MPROTECT)
        return;
    pthread_mutex_lock(&rts_lock);
    if (--rts_open == 0 &&
        os_mprotect_meta(c, &vmpk__meta_rts, sizeof vmpk__meta_rts, PROT_READ))
        abort(); /* the runtimes page would stay writable */
    pthread_mutex_unlock(&rts_lock);
}

struct vmpk_thread *vmpk__meta_thread_alloc(void)
{
    REQUIRE_META_OPEN();
    struct meta_page *m = &vmpk__meta;
    struct vmpk_thread *t = m->free_threads;
    if (t) {
        m->free_threads = t->next;
    } else {
        if (m->threads_used == MAX_THREADS)
            return NULL;
        uint8_t *at = (uint8_t *)m->threads_lo + (size_t)m->threads_used * THREAD_STRIDE;
        if (m->threads_used == m->threads_committed) {
            if (vmpk__meta_commit(NULL, at, (size_t)THREADS_CHUNK * THREAD_STRIDE))
                return NULL;
            m->threads_committed += THREADS_CHUNK;
        }
        m->threads_used++;
        t = (struct vmpk_thread *)at;
    }
    memset(t, 0, sizeof *t);
    return t;
}

void vmpk__meta_thread_free(struct vmpk_thread *t)
{
    REQUIRE_META_OPEN();
    t->self = NULL;
    t->next = vmpk__meta.free_threads;
    vmpk__meta.free_threads = t;
}

bool vmpk__meta_is_open(void)
{
    switch (vmpk__meta_mode) {
    case META_PKEY:
        return (rdpkru() & vmpk__meta.m_bits) == 0; /* AD alone denies writes too */
    default: /* META_MPROTECT: what entry points write stays writable */
        return true;
    }
}
