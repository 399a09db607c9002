/*
 * Per-thread state: the stack of open gates and the hot counters. Reached
 * through one initial-exec TLS pointer, so the gate path pays a single load
 * (a dlopen'd library gets a few bytes of static TLS, not a whole struct).
 * Threads are registered so stats() can sum their counters; a thread that
 * exits with gates open has them closed, so its pins do not leak.
 */
#include <stdlib.h>

#include "internal.h"

__thread struct vmpk_thread *vmpk__self __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmpk_thread *threads;
static struct thread_counters retired[VMPK_MAX_RUNTIMES]; /* of exited threads */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void add_counters(struct thread_counters *to, const struct thread_counters *from)
{
    counter_add(&to->hits, relaxed_load(&from->hits));
    counter_add(&to->pkru_writes, relaxed_load(&from->pkru_writes));
}

static void thread_exit(void *arg)
{
    struct vmpk_thread *t = arg;
    while (t->depth) {
        const struct gate *g = &t->gates[t->depth - 1];
        g->rt->be->end(g->rt, g->key);
    }
    pthread_mutex_lock(&registry_lock);
    for (struct vmpk_thread **p = &threads; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    for (int i = 0; i < VMPK_MAX_RUNTIMES; i++)
        add_counters(&retired[i], &t->counters[i]);
    pthread_mutex_unlock(&registry_lock);
    vmpk__self = NULL;
    free(t);
}

static void make_exit_key(void)
{
    pthread_key_create(&exit_key, thread_exit);
}

struct vmpk_thread *vmpk__thread_new(void)
{
    pthread_once(&exit_key_once, make_exit_key);
    struct vmpk_thread *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    t->next = threads;
    threads = t;
    pthread_mutex_unlock(&registry_lock);
    pthread_setspecific(exit_key, t);
    vmpk__self = t;
    return t;
}

void vmpk__thread_counters(uint8_t id, struct thread_counters *sum)
{
    *sum = (struct thread_counters){ 0 };
    pthread_mutex_lock(&registry_lock);
    add_counters(sum, &retired[id]);
    for (struct vmpk_thread *t = threads; t; t = t->next)
        add_counters(sum, &t->counters[id]);
    pthread_mutex_unlock(&registry_lock);
}
