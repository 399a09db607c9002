/*
 * Gates and process-wide access seen from other threads (native pthreads),
 * and a stress of many threads gating over shared keys with a small
 * hardware-key budget. Also built with ThreadSanitizer (make tsan).
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

enum { THREADS = 8, KEYS = 64, GATES = 20000 };
static vmpk_key shared[KEYS];
static unsigned char *bytes[KEYS];

static void *stress_thread(void *arg)
{
    long id = (long)arg, bad = 0;
    uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(id + 1);
    unsigned char mine[KEYS] = { 0 };
    for (int i = 0; i < GATES; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int k = (int)(rng % KEYS);
        int err = vmpk_begin(rt, shared[k], VMPK_RW);
        if (err == VMPK_E_KEYS_PINNED)
            continue;
        if (err)
            return (void *)-1L;
        bad += bytes[k][id] != mine[k];
        bytes[k][id] = mine[k] = (unsigned char)(rng >> 32);
        if (vmpk_end(rt, shared[k]))
            return (void *)-1L;
    }
    return (void *)bad;
}

static void many_threads_share_few_hw_keys(void)
{
    vmpk_runtime *main_rt = rt;
    rt = open_rt(4);
    for (int k = 0; k < KEYS; k++) {
        CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &shared[k]), 0);
        CHECK_EQ(vmpk_alloc(rt, shared[k], THREADS, (void **)&bytes[k]), 0);
    }
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, stress_thread, (void *)i);
    for (int i = 0; i < THREADS; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        CHECK_EQ((long)bad, 0);
    }
    struct vmpk_stats s = stats_of(rt);
    printf("# %d threads: %" PRIu64 " gates, %" PRIu64 " misses, %" PRIu64 " evictions\n",
           THREADS, s.gates, s.misses, s.evictions);
    CHECK_EQ(s.hits + s.misses, s.gates);
    CHECK(s.resident_vkeys <= 4);
    for (int k = 0; k < KEYS; k++)
        CHECK_EQ(vmpk_key_destroy(rt, shared[k]), 0);
    CHECK_EQ(vmpk_close(rt), 0);
    rt = main_rt;
}

int main(int argc, char **argv)
{
    pthread_t t;
    pthread_create(&t, NULL, prober, NULL);
    rt = open_rt(0);
    /* The ThreadSanitizer build stubs PKRU: only the stress means anything. */
    if (argc > 1 && strcmp(argv[1], "stress") == 0) {
        RUN(many_threads_share_few_hw_keys);
        CHECK_EQ(vmpk_close(rt), 0);
        return check_done();
    }
    RUN(gate_is_thread_local_on_pku);
    RUN(protect_reaches_other_threads);
    RUN(exiting_thread_releases_its_gates);
    RUN(many_threads_share_few_hw_keys);
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
