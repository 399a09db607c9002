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
 *
 * Thread births: a task made with CLONE_VM copies its creator's PKRU, a
 * gate's bits among them. glibc's live-thread count misses a birth and an
 * exit in one gate, and a raw clone; so the filter sends every thread clone
 * (and clone3 is ENOSYS, so glibc uses clone) to a listener, and a
 * supervisor thread of vmpk's counts the birth in the meta page before it
 * lets the kernel go on. A gate ends by comparing that count, so a gate
 * whose thread made a thread always ends with a shootdown.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "enter.h"
#include "harden.h"
#include "internal.h"
#include "os.h"
#include "probe.h"
#include "seccomp_linux.h"
#include "shootdown.h"
#include "rawsyscall.h"
#include "births.h"
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
    if (os_pkeys_stubbed())
        pku = false; /* the stub's pkeys tag nothing: there is nothing to see */
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

/* --- the supervisor ------------------------------------------------------ */

static int listener = -1;
static sem_t listener_set;

static void answer(int fd, uint64_t id, int error)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.error = error;
    resp.flags = error ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    /* ENOENT: the caller is gone (killed while it waited). */
    while (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) && errno == EINTR)
        ;
}

/* One notification per thread clone of any thread: count, then continue.
 * The count is bumped with meta open, before the kernel makes the thread:
 * by the time the creator can end its gate, the gate sees the change. */
static void *supervise(void *arg)
{
    (void)arg;
    /* Its thread struct now, before any clone waits on it: no allocation
     * (and no registry lock) while a notification is pending. */
    struct vmpk_thread *self = meta_enter();
    if (self)
        meta_leave(self, -1);
    while (sem_wait(&listener_set))
        ;
    int fd = listener;
    if (fd < 0)
        return NULL; /* the filter did not go on */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, vmpk__shootdown_signal()); /* shootdowns reach it */
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    struct seccomp_notif req;
    for (;;) {
        memset(&req, 0, sizeof req); /* the kernel wants it zeroed */
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req)) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            /* Every later clone would wait for good: stop here instead. */
            static const char msg[] = "vmpk: hardened mode's clone listener failed\n";
            (void)!write(2, msg, sizeof msg - 1);
            abort();
        }
        struct vmpk_thread *t = meta_enter();
        if (!t) { /* no struct, so no count: refuse the thread */
            answer(fd, req.id, -EAGAIN);
            continue;
        }
        atomic_fetch_add(&vmpk__meta.births, 1);
        meta_leave(t, -1);
        answer(fd, req.id, 0);
    }
}

/* Started before the filter (its own clone is not announced), with every
 * signal but the shootdown's blocked; waits for the listener. */
static int start_supervisor(void)
{
    pthread_t th;
    pthread_attr_t attr;
    sigset_t all, old;
    if (sem_init(&listener_set, 0, 0) || pthread_attr_init(&attr))
        return vmpk__system_error(errno);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&th, &attr, supervise, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return e ? vmpk__system_error(e) : 0;
}

/* A child of fork() has no supervisor of its own: its clones go to the
 * parent's, which counts them in the parent's memory. Back to glibc's count
 * there (a raw fork runs no handlers: see security.md). */
static void forked_child(void)
{
    struct vmpk_thread *t = meta_enter();
    if (!t)
        abort(); /* a gate could not see births: refuse to go on */
    births_count_live();
    meta_leave(t, -1);
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
    int err = start_supervisor();
    if (err)
        return err;
    int fd = -1;
    int e = vmpk__seccomp_install(first, n, (uintptr_t)vmpk__syscall_return, &fd);
    listener = e ? -1 : fd;
    sem_post(&listener_set);
    if (e == -EBUSY) {
        /* A hardened ancestor's filter holds the one listener the kernel
         * allows per chain: its supervisor answers our clones, and births
         * here are seen through glibc's live count only (security.md). */
        e = vmpk__seccomp_install(first, n, (uintptr_t)vmpk__syscall_return, NULL);
        return e ? vmpk__system_error(e == -ESRCH ? EBUSY : -e) : 0;
    }
    if (e)
        return vmpk__system_error(e == -ESRCH ? EBUSY : -e);
    struct vmpk_thread *t = meta_enter();
    if (!t)
        return VMPK_E_NOMEM;
    births_count_true();
    meta_leave(t, -1);
    pthread_atfork(NULL, NULL, forked_child);
    return 0;
}

/* io_uring instances made before the filter: 0 none, 1 some without
 * SQPOLL (libuv's on Node 22+, made at start-up), 2 one with SQPOLL (libuv's
 * with UV_USE_IO_URING=1 on Node 20), or where this cannot be told. An
 * SQPOLL thread takes submissions from shared memory, no system call for a
 * filter to see, so no filter can close it: the open is refused. */
static int rings_before(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 2; /* cannot tell: refuse (shootdowns need /proc too) */
    int found = 0;
    struct dirent *e;
    char path[300], target[64], info[1024];
    while (found < 2 && (e = readdir(d))) {
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strcmp(target, "anon_inode:[io_uring]") != 0)
            continue;
        found = 1;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? -1 : read(fd, info, sizeof info - 1);
        if (fd >= 0)
            close(fd);
        info[n > 0 ? n : 0] = 0;
        /* "SqThread:\t-1" where the ring has no SQPOLL thread (Linux 5.x+) */
        if (n <= 0 || !strstr(info, "SqThread:\t-1\n"))
            found = 2;
    }
    closedir(d);
    return found;
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
    if (!active) {
        int rings = rings_before();
        if (rings == 2) {
            err = vmpk__system_error(EBUSY);
            goto out;
        }
        vmpk__seccomp_keep_rings(rings == 1);
    }
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
