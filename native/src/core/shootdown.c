/*
 * See shootdown.h. One shootdown runs at a time in the process. A thread's
 * handler always computes its ideal PKRU from the current state, so a late
 * or repeated signal is harmless, and a thread that is inside another
 * handler with the signal blocked gets it the moment that handler returns,
 * before its interrupted code runs again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "cpu.h"
#include "enter.h"
#include "os.h"
#include "shootdown.h"
#include "sigframe.h"
#include "tasks.h"

/* sched_yield rounds between looks in /proc for threads that block the
 * signal (Node has one: its inspector's watchdog blocks every signal), so
 * that such a thread costs tens of microseconds, not a millisecond. */
#define SPINS_BEFORE_CHECKING 32

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Fixed arrays, reached by no pointer: the shooter (inside an entry) and
 * every thread's handler write them with meta open, so where they write
 * must not come from writable memory. (They were realloc'd through .bss
 * pointers: a stray write aiming `acked` at a vkey slot had the acks set a
 * key's perm, attack ack-pointer.) A process with more threads than this
 * gets VMPK_E_NOMEM from a call that needs a shootdown. */
#define MAX_TARGETS 4096
static pid_t tids[MAX_TARGETS];
static _Atomic int acked[MAX_TARGETS];
static _Atomic int targets; /* entries in use by this round; clamped on use */
static struct sigaction previous;

static void on_shootdown(int sig, siginfo_t *si, void *ctx)
{
    if (si->si_code != SI_TKILL || si->si_pid != getpid()) {
        if (previous.sa_flags & SA_SIGINFO)
            previous.sa_sigaction(sig, si, ctx);
        else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN)
            previous.sa_handler(sig);
        return;
    }
    int saved_errno = errno;
    uint32_t restore = meta_handler_enter();
    struct vmpk_thread *t = meta_self_checked();
    uint32_t pkru;
    /* Inside an entry's RDPKRU..WRPKRU, or a check: start it again, so it
     * reads the PKRU this handler leaves instead of writing back an older
     * one, or comparing an older one with the new expected value. (The
     * stub build has no such sequences: never.) */
    uintptr_t restart = vmpk__pkru_restart(sigframe_ip(ctx));
    if (restart)
        sigframe_restart_pkru(ctx, restart);
    bool have = os_frame_pkru(ctx, restore, &pkru);
    if (have && t && vmpk__meta.mode == META_PKEY && !(pkru & vmpk__meta.m_bits)) {
        /* Inside vmpk (meta open): it sets every bit afresh on leaving, and
         * runs no code but vmpk's until then. Its PKRU stays as it is, so
         * its next check still holds. */
        atomic_store(&t->resync, true);
    } else if (have) {
        uint32_t ideal = vmpk__ideal_pkru(pkru, t);
        if (t)
            t->pkru_expect = ideal;
        else
            ideal |= pkru; /* no struct: only narrow, as its checks expect */
        os_frame_set_pkru(ctx, &restore, ideal);
    }
    pid_t me = os_gettid();
    int n = atomic_load(&targets);
    if (n > MAX_TARGETS) /* a forged count must not index past the arrays */
        n = MAX_TARGETS;
    for (int i = 0; i < n; i++)
        if (tids[i] == me)
            atomic_store(&acked[i], 1);
    meta_handler_leave(restore);
    errno = saved_errno;
}

int vmpk__shootdown_install(void)
{
    int signo = vmpk__shootdown_signal();
    struct sigaction sa = { .sa_sigaction = on_shootdown,
                            .sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK };
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, &previous) ? vmpk__system_error(errno) : 0;
}

int vmpk__shootdown_signal(void)
{
    /* glibc keeps the lowest ones; this one is unclaimed. A constant, not
     * SIGRTMAX (libc's writable current_rtmax) nor a copy in .bss: the
     * number decides which threads a shootdown reaches, and a stray write
     * to a copy made the shootdown send a signal a thread blocks, count
     * the thread as blocking, and leave it its bits (shootdown-signo). */
    return __SIGRTMAX - 3;
}

/* Meta open (an entry's), never in a handler: it waits on every thread's. */
int vmpk__shootdown(struct vmpk_runtime *rt)
{
    REQUIRE_META_OPEN();
    REQUIRE_NOT_IN_SIGNAL();
    const int signo = vmpk__shootdown_signal();
    pthread_mutex_lock(&lock);
    int n = tasks_list(tids, MAX_TARGETS), err = n < 0 ? vmpk__os_error(n) : 0;
    if (err) {
        pthread_mutex_unlock(&lock);
        return err;
    }
    for (int i = 0; i < n; i++)
        atomic_store(&acked[i], 0);
    atomic_store(&targets, n);
    atomic_fetch_add(&vmpk__revocations, 1);
    uint64_t sent = 0;
    for (int i = 0; i < n; i++) {
        if (tasks_signal(tids[i], signo) == 0)
            sent++;
        else
            atomic_store(&acked[i], 1); /* gone */
    }
    for (int spins = 0;; spins++) {
        int waiting = 0;
        for (int i = 0; i < n; i++)
            waiting += !atomic_load(&acked[i]);
        if (!waiting)
            break;
        if (spins >= SPINS_BEFORE_CHECKING && spins % SPINS_BEFORE_CHECKING == 0) {
            for (int i = 0; i < n; i++)
                if (!atomic_load(&acked[i]) &&
                    (tasks_signal(tids[i], 0) == -ESRCH || tasks_blocking(tids[i], signo)))
                    atomic_store(&acked[i], 1);
        }
        sched_yield();
    }
    atomic_store(&targets, 0);
    atomic_fetch_add(&rt->c.shootdowns, 1);
    atomic_fetch_add(&rt->c.shootdown_signals, sent);
    atomic_fetch_add(&rt->c.syscalls, sent);
    pthread_mutex_unlock(&lock);
    return 0;
}
