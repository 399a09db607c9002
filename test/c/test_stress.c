/*
 * 12 threads chain gates over 1,024 vkeys with 8 hardware keys (fixed
 * seeds), one million gates in all, while another thread flips keys'
 * process-wide access and a checker thread, which never opens a gate,
 * probes them: after protect('r') returns it must read, after
 * protect('none') returns it must not. Each worker owns one byte of every
 * key's region and checks it still holds what it last wrote.
 *
 * Do not use this test as a benchmark. VMPK_STRESS_GATES overrides the total.
 * `test_stress quiet` leaves out the protector: ThreadSanitizer holds back
 * signals from threads blocked on a mutex, so shootdowns cannot run there.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"

enum { WORKERS = 12, KEYS = 1024, HW_KEYS = 8 };

static vmpk_runtime *rt;
static vmpk_key keys[KEYS];
static unsigned char *bytes[KEYS];
static long gates_each;
/* Every thread starts before the first gate and ends after the last: a
 * thread created or ending while a gate is open makes vmpk shoot down, and
 * the quiet run (ThreadSanitizer) must have none. */
static pthread_barrier_t start, finish;
static _Atomic int workers_left;

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(id + 1);
    unsigned char mine[KEYS] = { 0 };
    pthread_barrier_wait(&start);
    for (long i = 0; i < gates_each; i++) {
        int k = (int)(next(&rng) % KEYS);
        int err = vmpk_begin(rt, keys[k], VMPK_RW);
        if (err == VMPK_E_KEYS_PINNED) /* 12 workers, 8 hw keys: it happens */
            continue;
        if (err)
            return (void *)-1L;
        bad += bytes[k][id] != mine[k];
        bytes[k][id] = mine[k] = (unsigned char)(next(&rng) >> 24);
        if (vmpk_end(rt, keys[k]))
            return (void *)-1L;
    }
    atomic_fetch_sub(&workers_left, 1);
    pthread_barrier_wait(&finish);
    return (void *)bad;
}

/* The checker: probes on request, never opens a gate. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const void *addr;
    int result, pending, stop;
} job = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0 };

static void *checker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    pthread_mutex_lock(&job.lock);
    while (!job.stop) {
        if (job.pending) {
            job.result = vmpk_probe(job.addr, VMPK_READ);
            job.pending = 0;
            pthread_cond_broadcast(&job.cond);
        } else {
            pthread_cond_wait(&job.cond, &job.lock);
        }
    }
    pthread_mutex_unlock(&job.lock);
    return NULL;
}

static int checker_reads(const void *addr)
{
    pthread_mutex_lock(&job.lock);
    job.addr = addr;
    job.pending = 1;
    pthread_cond_broadcast(&job.cond);
    while (job.pending)
        pthread_cond_wait(&job.cond, &job.lock);
    int r = job.result;
    pthread_mutex_unlock(&job.lock);
    return r;
}

static void *protector(void *arg)
{
    long flips = 0, wrong = 0, denied = 0, leaked = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int quiet = arg != NULL;
    /* On mprotect a worker's gate opens the key to every thread, the
     * checker too: only real PKU promises it nothing (the stub build
     * enforces nothing at all). */
    struct vmpk_info info;
    vmpk_info(rt, &info);
    int pku = info.backend == VMPK_BACKEND_PKU && !info.pkru_stubbed;
    pthread_barrier_wait(&start);
    while (!quiet && atomic_load(&workers_left) > 0) {
        int k = (int)(next(&rng) % KEYS);
        if (vmpk_protect(rt, keys[k], VMPK_READ))
            return (void *)-1L;
        denied += checker_reads(bytes[k]) != 1;
        if (vmpk_protect(rt, keys[k], VMPK_NONE))
            return (void *)-1L;
        if (checker_reads(bytes[k]) != 0 && pku)
            leaked++;
        flips++;
    }
    printf("# protector: %ld flips; the checker was denied %ld reads that 'r' allowed and "
           "allowed %ld that 'none' denied\n", flips, denied, leaked);
    wrong = denied + leaked;
    pthread_barrier_wait(&finish);
    return (void *)wrong;
}

static void chained_gates_with_revocations(int quiet)
{
    const char *env = getenv("VMPK_STRESS_GATES");
    gates_each = ((env ? atol(env) : 1000000) + WORKERS - 1) / WORKERS;
    rt = open_rt(HW_KEYS);
    for (int k = 0; k < KEYS; k++) {
        CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &keys[k]), 0);
        CHECK_EQ(vmpk_alloc(rt, keys[k], WORKERS, (void **)&bytes[k]), 0);
    }
    atomic_store(&workers_left, WORKERS);
    pthread_barrier_init(&start, NULL, WORKERS + 2);
    pthread_barrier_init(&finish, NULL, WORKERS + 1);
    pthread_t w[WORKERS], c, p;
    pthread_create(&c, NULL, checker, NULL);
    pthread_create(&p, NULL, protector, quiet ? (void *)1 : NULL);
    for (long i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, worker, (void *)i);
    for (int i = 0; i < WORKERS; i++) {
        void *bad;
        pthread_join(w[i], &bad);
        CHECK_EQ((long)bad, 0);
    }
    void *wrong;
    pthread_join(p, &wrong);
    CHECK_EQ((long)wrong, 0);
    pthread_mutex_lock(&job.lock);
    job.stop = 1;
    pthread_cond_broadcast(&job.cond);
    pthread_mutex_unlock(&job.lock);
    pthread_join(c, NULL);
    struct vmpk_stats s = stats_of(rt);
    printf("# %d workers: %" PRIu64 " gates, %" PRIu64 " misses, %" PRIu64 " evictions, %" PRIu64
           " shootdowns, %" PRIu64 " lazy grants\n",
           WORKERS, s.gates, s.misses, s.evictions, s.shootdowns, s.faults_repaired);
    CHECK_EQ(s.hits + s.misses, s.gates);
    CHECK(s.resident_vkeys <= HW_KEYS);
    for (int k = 0; k < KEYS; k++)
        CHECK_EQ(vmpk_key_destroy(rt, keys[k]), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

static int quiet;

static void twelve_threads_million_gates(void)
{
    chained_gates_with_revocations(quiet);
}

int main(int argc, char **argv)
{
    quiet = argc > 1 && strcmp(argv[1], "quiet") == 0;
    RUN(twelve_threads_million_gates);
    return check_done();
}
