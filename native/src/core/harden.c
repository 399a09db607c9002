/*
 * Hardened mode: the policy around the seccomp filter. What it guards: the
 * band of address space holding every reservation vmpk makes once hardened
 * (the arena of key windows, its owner table, the vkey tables), and any
 * reservation made before, outside the band. Whom it trusts: the one
 * syscall instruction of <arch>/rawsyscall.c.
 *
 * Before the filter goes on, a forked child repeats vmpk's calls on a
 * page of vmpk's own in the band and checks their effect, not just
 * their result: a filter installed earlier that fails them, kills the
 * caller or fakes success (SECCOMP_RET_ERRNO with 0) is found there, and
 * the open is refused rather than run unprotected. The child inherits the
 * filters and the instruction address, so it sees what vmpk would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "harden.h"
#include "internal.h"
#include "os.h"
#include "probe.h"
#include "seccomp_linux.h"
#include "shootdown.h"
#include "rawsyscall.h"
#include "tasks.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool active;               /* vmpk's filter is on, for good */
static bool probed_pku;           /* the pkey calls were probed too */
static int filters_after = -1;    /* Seccomp_filters once ours was on */
static int mode_before = -1, filters_before = -1;
static int last_failed;           /* VMPK_PROBE_* of the last refusal */

int vmpk__harden_prepare(void)
{
    return os_reserve_in_band() ? VMPK_E_NOMEM : 0;
}

static volatile sig_atomic_t signalled;

static void on_probe_signal(int sig)
{
    (void)sig;
    signalled = 1;
}

/* In the child: async-signal-safe calls only (the parent may have threads
 * holding locks). Returns the VMPK_PROBE_* bits of what failed. */
static int probe_child(uint8_t *page, size_t ps, bool pku)
{
    int failed = 0;
    if (os_commit(NULL, page, ps) || !vmpk__probe_write(page)) {
        failed |= VMPK_PROBE_MPROTECT;
    } else {
        *(volatile uint8_t *)page = 0x5a;
        if (os_discard(NULL, page, ps) || *(volatile uint8_t *)page != 0)
            failed |= VMPK_PROBE_MADVISE;
    }
    if (os_mprotect(NULL, page, ps, PROT_NONE) || vmpk__probe_read(page))
        failed |= VMPK_PROBE_MPROTECT;
    if (pku) {
        /* A pkey of the child's own; if the parent holds them all, free one
         * here (the parent keeps it). Its rights: no access, this thread.
         * Tagging readable pages with it must make them unreadable here,
         * and tagging them back with pkey 0 readable again. */
        int k = os_pkey_alloc(NULL);
        for (int i = 1; k < 0 && i < 16; i++)
            if (os_pkey_free(i) == 0)
                k = os_pkey_alloc(NULL);
        if (k <= 0)
            failed |= VMPK_PROBE_PKEY_ALLOC;
        else if (os_mprotect(NULL, page, ps, PROT_READ) || !vmpk__probe_read(page))
            failed |= VMPK_PROBE_MPROTECT;
        else if (os_pkey_mprotect(NULL, page, ps, PROT_READ, k) || vmpk__probe_read(page) ||
                 os_pkey_mprotect(NULL, page, ps, PROT_READ, 0) || !vmpk__probe_read(page))
            failed |= VMPK_PROBE_PKEY_MPROTECT;
    }
    if (os_map_fixed(page, ps) || !vmpk__probe_write(page))
        failed |= VMPK_PROBE_MMAP;
    if (os_unmap(page, ps) || vmpk__probe_read(page))
        failed |= VMPK_PROBE_MUNMAP;
    /* The shootdown's calls: its signal's handler, and tgkill. */
    int sig = vmpk__shootdown_signal();
    struct sigaction sa = { .sa_handler = on_probe_signal };
    sigemptyset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    if (sigaction(sig, &sa, NULL) || sigprocmask(SIG_UNBLOCK, &set, NULL) ||
        tasks_signal(os_gettid(), sig) || !signalled)
        failed |= VMPK_PROBE_SIGNALS;
    return failed;
}

/* Before anything else in the band is touched: the arena's first write
 * would fault under a filter that fakes mprotect. */
static int probe(bool pku)
{
#ifdef VMPK_PKRU_STUB
    pku = false; /* the stub's pkeys tag nothing: there is nothing to see */
#endif
    static uint8_t *page; /* kept for later probes */
    size_t ps = os_page_size();
    if (!page && !(page = os_reserve(NULL, ps)))
        return VMPK_E_NOMEM;
    pid_t pid = os_fork();
    if (pid == 0)
        _exit(probe_child(page, ps, pku));
    if (pid < 0)
        return VMPK_PROBE_FORK;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return VMPK_PROBE_FORK;
    return WIFEXITED(status) ? WEXITSTATUS(status) : VMPK_PROBE_DIED;
}

static int install(void)
{
    struct os_range r[SECCOMP_MAX_RANGES], band;
    int n = os_reservations(&band, r + 1, SECCOMP_MAX_RANGES - 1);
    if (n > SECCOMP_MAX_RANGES - 1)
        return vmpk__system_error(E2BIG);
    struct os_range *first = r + 1;
    if (band.lo) {
        r[0] = band;
        first = r;
        n++;
    }
    int e = vmpk__seccomp_install(first, n, (uintptr_t)vmpk__syscall_return);
    return e ? vmpk__system_error(-e) : 0;
}

int vmpk__harden(bool pku)
{
    int err = 0, mode, filters;
    pthread_mutex_lock(&lock);
    vmpk__seccomp_state(&mode, &filters);
    /* Probed already, and no filter came on since: nothing to do. */
    if (active && filters == filters_after && (probed_pku || !pku))
        goto out;
    if (!active)
        mode_before = mode, filters_before = filters;
    int failed = probe(pku);
    if (failed < 0) {
        err = failed;
        goto out;
    }
    last_failed = failed;
    if (failed) {
        err = VMPK_E_FILTERED;
        goto out;
    }
    probed_pku |= pku;
    if (!active && (err = install()) == 0)
        active = true;
    vmpk__seccomp_state(&mode, &filters_after);
out:
    pthread_mutex_unlock(&lock);
    return err;
}

int vmpk_harden_info(struct vmpk_harden_info *out)
{
    if (!out)
        return VMPK_E_INVALID;
    int mode, filters;
    vmpk__seccomp_state(&mode, &filters);
    pthread_mutex_lock(&lock);
    *out = (struct vmpk_harden_info){
        .active = active,
        .seccomp_mode = mode,
        .seccomp_filters = filters,
        .seccomp_mode_before = mode_before,
        .seccomp_filters_before = filters_before,
        .probe_failed = last_failed,
    };
    pthread_mutex_unlock(&lock);
    return 0;
}
