/*
 * Gates and process-wide access seen from other threads (native pthreads).
 */
#include <pthread.h>

#include "check.h"

static vmpk_runtime *rt;

/* A thread started before any key exists, probing on request: its PKRU is
 * what vmpk made of it, not a copy of the main thread's. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const void *addr;
    int access, result, pending;
} job = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0 };

static void *prober(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&job.lock);
    for (;;) {
        while (!job.pending)
            pthread_cond_wait(&job.cond, &job.lock);
        job.result = vmpk_probe(job.addr, job.access);
        job.pending = 0;
        pthread_cond_broadcast(&job.cond);
    }
    return NULL;
}

/* What the other thread's probe says. */
static int probe_elsewhere(const void *addr, int access)
{
    pthread_mutex_lock(&job.lock);
    job.addr = addr;
    job.access = access;
    job.pending = 1;
    pthread_cond_broadcast(&job.cond);
    while (job.pending)
        pthread_cond_wait(&job.cond, &job.lock);
    int result = job.result;
    pthread_mutex_unlock(&job.lock);
    return result;
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
    pthread_create(&t, NULL, prober, NULL);
    rt = open_rt(0);
    RUN(gate_is_thread_local_on_pku);
    RUN(protect_reaches_other_threads);
    RUN(exiting_thread_releases_its_gates);
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
