/*
 * Per-thread state: the stack of open gates and the hot counters. Reached
 * through one initial-exec TLS pointer, so the gate path pays a single load
 * (a dlopen'd library gets a few bytes of static TLS, not a whole struct).
 * The structs live in the threads meta area (meta.c), registered so stats()
 * can sum their counters; a thread that exits with gates open has them
 * closed, so its pins do not leak. The slow paths of entering and leaving
 * (enter.h) are here too: a thread's first entry makes its struct, and a
 * leave after a shootdown sets the thread's ideal PKRU.
 */
#include <stdlib.h>

#include "backend.h"
#include "enter.h"
#include "internal.h"

__thread struct vmpk_thread *vmpk__self __attribute__((tls_model("initial-exec")));
/* Here, beside the registry and ideal_pkru, not in shootdown.c: every
 * entry's leave reads it (enter.h), a shootdown only bumps it. */
_Atomic uint64_t vmpk__revocations;

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void add_counters(struct thread_counters *to, const struct thread_counters *from)
{
    counter_add(&to->hits, relaxed_load(&from->hits));
    counter_add(&to->pkru_writes, relaxed_load(&from->pkru_writes));
    counter_add(&to->meta_pkru_writes, relaxed_load(&from->meta_pkru_writes));
    counter_add(&to->fast_begins, relaxed_load(&from->fast_begins));
    counter_add(&to->fast_ends, relaxed_load(&from->fast_ends));
    counter_add(&to->fast_same, relaxed_load(&from->fast_same));
}

static void thread_exit(void *arg)
{
    (void)arg;
    if (!vmpk__self)
        return; /* no struct was made (no memory): nothing to close */
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return;
    while (t->depth) {
        const struct gate *g = &t->gates[t->depth - 1];
        struct vmpk_runtime *rt = g->rt;
        if (runtime_id_of(rt) < 0) { /* forged (gate records are writable without PKU) */
            t->depth--;
            continue;
        }
        be_end_in(rt, t, g->key);
        if (t->sync_v) { /* the end's bits, now: the next end may set others */
            const struct vkey *v = t->sync_v;
            t->sync_v = NULL;
            meta_set_now(t, rt->id, t->sync_pkey,
                         access_union(t->sync_gate, atomic_load(&v->access)));
        }
    }
    struct meta_page *m = &vmpk__meta;
    pthread_mutex_lock(&m->threads_lock);
    for (struct vmpk_thread **p = &m->threads; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    for (int i = 0; i < VMPK_MAX_RUNTIMES; i++)
        add_counters(&m->retired[i], &t->counters[i]);
    vmpk__meta_thread_free(t);
    pthread_mutex_unlock(&m->threads_lock);
    vmpk__self = NULL;
    /* Closed with every owned pkey: the struct that held the expected
     * value is gone. */
    if (vmpk__meta.mode == META_PKEY)
        pkru_write_boot(((rdpkru() | relaxed_load(&vmpk__meta.owned)) & ~vmpk__meta.m_bits) |
                            vmpk__meta.m_wd,
                        0);
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, thread_exit);
}

/* Meta closed: pthread_setspecific may calloc (keys past the first 32),
 * and malloc must not run while meta is writable (a forged heap or tcache
 * pointer would make it write there). The value only has to be non-NULL
 * for the destructor to run; thread_exit finds the struct through TLS. */
static void thread_prepare(void)
{
    REQUIRE_META_CLOSED();
    pthread_once(&exit_key_once, make_exit_key);
    if (!pthread_getspecific(exit_key))
        pthread_setspecific(exit_key, &exit_key);
}

/* Meta open. */
static struct vmpk_thread *thread_new(void)
{
    REQUIRE_META_OPEN();
    struct meta_page *m = &vmpk__meta;
    pthread_mutex_lock(&m->threads_lock);
    struct vmpk_thread *t = vmpk__meta_thread_alloc();
    if (t) {
        t->self = (void *)&vmpk__self;
        t->next = m->threads;
        m->threads = t;
    }
    pthread_mutex_unlock(&m->threads_lock);
    if (!t)
        return NULL;
    vmpk__self = t;
    return t;
}

/* A thread vmpk has not seen: open meta with every owned pkey closed for
 * it (a thread created inside a gate keeps none of its bits; perms come
 * back as lazy grants), make its struct, and close meta with the struct's
 * expected value in place. */
__attribute__((noinline)) struct vmpk_thread *vmpk__meta_bootstrap(void)
{
    int mode = vmpk__meta_mode;
    uint32_t m = 3u << (2 * vmpk__meta_pkey);
    thread_prepare(); /* may calloc: before meta opens */
    if (mode == META_PKEY)
        pkru_write_boot((rdpkru() | relaxed_load(&vmpk__meta_owned)) & ~m, 1);
    struct vmpk_thread *t = thread_new();
    if (mode == META_PKEY) {
        if (!t) {
            pkru_write_boot(rdpkru() | vmpk__meta.m_wd, 0);
            return NULL;
        }
        uint32_t v = rdpkru() | vmpk__meta.m_wd;
        t->pkru_expect = v;
        pkru_write_exact(v);
    }
    return t;
}

/* Meta open (the registry lock is in meta). */
void vmpk__thread_counters(uint8_t id, struct thread_counters *sum)
{
    REQUIRE_META_OPEN();
    struct meta_page *m = &vmpk__meta;
    *sum = (struct thread_counters){ 0 };
    pthread_mutex_lock(&m->threads_lock);
    add_counters(sum, &m->retired[id]);
    for (struct vmpk_thread *t = m->threads; t; t = t->next)
        add_counters(sum, &t->counters[id]);
    pthread_mutex_unlock(&m->threads_lock);
}

/* No locks, reads only: the shootdown handler runs it. A pooled pkey serves
 * no runtime, so it is closed. */
uint32_t vmpk__ideal_pkru(uint32_t pkru, const struct vmpk_thread *t)
{
    for (int id = 0; id < VMPK_MAX_RUNTIMES; id++) {
        const struct vmpk_runtime *rt = atomic_load(&vmpk__runtimes[id]);
        if (rt)
            pkru = be_thread_pkru(rt, pkru, t);
    }
    const struct meta_pool *pool = &vmpk__meta.pool;
    for (int i = 0; i < pool->n; i++) /* racy read of a short array: fine */
        pkru = pkru_with(pkru, pool->pkeys[i], PKRU_CLOSED);
    return pkru;
}

__attribute__((noinline)) void vmpk__meta_leave_slow(struct vmpk_thread *t)
{
    (void)t;
    for (;;) {
        struct vmpk_thread *me = pkru_write_enter();
        atomic_store(&me->resync, false);
        uint64_t seen = atomic_load(&vmpk__revocations);
        uint32_t v = vmpk__ideal_pkru(rdpkru(), me) | vmpk__meta.m_wd;
        me->pkru_expect = v;
        pkru_write_exact(v);
        if (atomic_load(&vmpk__revocations) == seen && !atomic_load(&me->resync))
            return;
    }
}
