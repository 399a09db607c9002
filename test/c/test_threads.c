/*
 * Gates and process-wide access seen from other threads (native pthreads).
 */
#include <pthread.h>

#include "check.h"

static vmpk_runtime *rt;

/* A thread started before any key exists, running jobs on request: its
 * PKRU is what vmpk made of it, not a copy of the main thread's. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int (*fn)(void *);
    void *arg;
    int result;
} job = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0 };

static void *other_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&job.lock);
    for (;;) {
        while (!job.fn)
            pthread_cond_wait(&job.cond, &job.lock);
        job.result = job.fn(job.arg);
        job.fn = NULL;
        pthread_cond_broadcast(&job.cond);
    }
    return NULL;
}

static int on_other_thread(int (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&job.lock);
    job.fn = fn;
    job.arg = arg;
    pthread_cond_broadcast(&job.cond);
    while (job.fn)
        pthread_cond_wait(&job.cond, &job.lock);
    int result = job.result;
    pthread_mutex_unlock(&job.lock);
    return result;
}

static int probe_read(void *addr)
{
    return vmpk_probe(addr, VMPK_READ);
}

static int probe_write(void *addr)
{
    return vmpk_probe(addr, VMPK_RW);
}

/* What the other thread's probe says. */
static int probe_elsewhere(const void *addr, int access)
{
    return on_other_thread(access == VMPK_RW ? probe_write : probe_read, (void *)addr);
}

static void gate_is_thread_local_on_pku(void)
{
    vmpk_key k;
    char *p;
    int pku = backend_of(rt) == VMPK_BACKEND_PKU;
    CHECK_EQ(vmpk_key_create(rt, "local", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    /* mprotect: gates are process-wide while open, and say so. */
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), pku ? 0 : 1);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void protect_reaches_other_threads(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "shared", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0); /* resident on pku */
    p[0] = 42;
    CHECK_EQ(vmpk_end(rt, k), 0);
    struct vmpk_stats before = stats_of(rt);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_READ), 0);
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), 1);
    CHECK_EQ(probe_elsewhere(p, VMPK_RW), 0);
    struct vmpk_stats after = stats_of(rt);
    if (backend_of(rt) == VMPK_BACKEND_PKU) /* the other thread caught up in its fault */
        CHECK_EQ(after.faults_repaired - before.faults_repaired, 1);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_NONE), 0);
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static vmpk_key gated;

static int gate_and_close(void *arg)
{
    (void)arg;
    return vmpk_begin(rt, gated, VMPK_RW) || vmpk_end(rt, gated);
}

/* Invariant 2: the other thread's gate on a rw key leaves it that key's
 * perm bits; when the pkey goes to another key, they must be gone. */
static void stale_bits_never_survive_rebinding(void)
{
    vmpk_runtime *main_rt = rt;
    rt = open_rt(1);
    vmpk_key open_key, closed_key;
    char *p1, *p2;
    CHECK_EQ(vmpk_key_create(rt, "open", VMPK_RW, 0, &open_key), 0);
    CHECK_EQ(vmpk_key_create(rt, "closed", VMPK_NONE, 0, &closed_key), 0);
    CHECK_EQ(vmpk_alloc(rt, open_key, 4096, (void **)&p1), 0);
    CHECK_EQ(vmpk_alloc(rt, closed_key, 4096, (void **)&p2), 0);
    gated = open_key;
    CHECK_EQ(on_other_thread(gate_and_close, NULL), 0);
    CHECK_EQ(probe_elsewhere(p1, VMPK_RW), 1);
    struct vmpk_stats before = stats_of(rt);
    CHECK_EQ(vmpk_begin(rt, closed_key, VMPK_RW), 0); /* takes the only pkey */
    CHECK_EQ(vmpk_end(rt, closed_key), 0);            /* and keeps it */
    CHECK_EQ(probe_elsewhere(p2, VMPK_READ), 0);
    CHECK_EQ(probe_elsewhere(p2, VMPK_RW), 0);
    struct vmpk_stats after = stats_of(rt);
    if (backend_of(rt) == VMPK_BACKEND_PKU)
        CHECK_EQ(after.shootdowns - before.shootdowns, 1);
    CHECK_EQ(vmpk_key_destroy(rt, open_key), 0);
    CHECK_EQ(vmpk_key_destroy(rt, closed_key), 0);
    CHECK_EQ(vmpk_close(rt), 0);
    rt = main_rt;
}

/* protect() narrows a key that a gate pins: every other thread loses the
 * old access when it returns; the gate's thread keeps its gate. */
static void narrowing_a_pinned_key_reaches_every_thread(void)
{
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "narrowed", VMPK_READ, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), 1); /* a lazy grant on pku */
    CHECK_EQ(vmpk_protect(rt, k, VMPK_NONE), 0);
    if (backend_of(rt) == VMPK_BACKEND_PKU) /* mprotect: the gate is everyone's */
        CHECK_EQ(probe_elsewhere(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_RW), 1);
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(probe_elsewhere(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static pthread_barrier_t born, probed;
static char *inherited;
static int inherited_read;

static void *born_inside_gate(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&born); /* the gate closes meanwhile */
    pthread_barrier_wait(&born);
    inherited_read = vmpk_probe(inherited, VMPK_READ);
    pthread_barrier_wait(&probed);
    return NULL;
}

/* A thread created inside a gate copies the creator's PKRU; the gate's end
 * takes the copy back. */
static void thread_born_inside_gate_loses_it(void)
{
    vmpk_key k;
    pthread_t t;
    CHECK_EQ(vmpk_key_create(rt, "born", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&inherited), 0);
    pthread_barrier_init(&born, NULL, 2);
    pthread_barrier_init(&probed, NULL, 2);
    struct vmpk_stats before = stats_of(rt);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    pthread_create(&t, NULL, born_inside_gate, NULL);
    pthread_barrier_wait(&born);
    CHECK_EQ(vmpk_end(rt, k), 0);
    pthread_barrier_wait(&born);
    pthread_barrier_wait(&probed);
    pthread_join(t, NULL);
    CHECK_EQ(inherited_read, 0);
    if (backend_of(rt) == VMPK_BACKEND_PKU)
        CHECK_EQ(stats_of(rt).shootdowns - before.shootdowns, 1);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

static void *exit_inside_gate(void *arg)
{
    vmpk_begin(rt, *(vmpk_key *)arg, VMPK_RW);
    return NULL; /* the thread ends with the gate open */
}

static void exiting_thread_releases_its_gates(void)
{
    vmpk_key k;
    pthread_t t;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k), 0);
    pthread_create(&t, NULL, exit_inside_gate, &k);
    pthread_join(t, NULL);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    rt = open_rt(0);
    RUN(gate_is_thread_local_on_pku);
    RUN(protect_reaches_other_threads);
    RUN(exiting_thread_releases_its_gates);
    RUN(stale_bits_never_survive_rebinding);
    RUN(narrowing_a_pinned_key_reaches_every_thread);
    RUN(thread_born_inside_gate_loses_it);
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
