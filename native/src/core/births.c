/* See births.h. */
#include <pthread.h>

#include "births.h"
#include "tasks.h"

static unsigned fallback;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void point_at_live(void)
{
    vmpk__meta.births_at = tasks_live_count();
}

/* Once: later calls come with the meta page write-protected, and maybe
 * hardened (births_at then names the true count). */
void births_init(void)
{
    pthread_once(&once, point_at_live);
}

void births_count_live(void)
{
    vmpk__meta.births_at = tasks_live_count();
}

void births_count_true(void)
{
    vmpk__meta.births_at = (const volatile unsigned *)&vmpk__meta.births;
}

unsigned births_now_slow(void)
{
    const volatile unsigned *n = vmpk__meta.births_at;
    return n ? *n : __atomic_add_fetch(&fallback, 1, __ATOMIC_RELAXED);
}
