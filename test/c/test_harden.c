/*
 * Hardened mode: the seccomp filter's decisions, boundary by boundary, and
 * vmpk_open's refusal under a hostile filter. A filter cannot be removed,
 * so every test runs in a forked child and reports through its exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "meta.h"
#include "os.h"
#include "seccomp_linux.h"
#include "rawsyscall.h"

/* Runs fn in a child; returns its failure count (exit status), or 100 + the
 * signal that killed it. */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int n = fn();
        fflush(stdout);
        _exit(n);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

#define EXPECT(cond)                                                                       \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            printf("#   child: %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            bad++;                                                                         \
        }                                                                                  \
    } while (0)

/* A call from glibc's syscall(): an untrusted instruction. -errno. */
static long untrusted(long nr, long a, long b, long c, long d, long e)
{
    long r = syscall(nr, a, b, c, d, e, 0L);
    return r < 0 ? -errno : r;
}

/* The guarded range of the boundary tests straddles a 4 GiB line, so the
 * high and the low words both matter. Nothing is mapped there: an allowed
 * mprotect fails with ENOMEM, a denied one with EPERM. */
#define LO 0x2f00fffff000ul
#define HI 0x2f0100001000ul

static int denied(uintptr_t addr, uint64_t len)
{
    return untrusted(SYS_mprotect, (long)addr, (long)len, PROT_NONE, 0, 0) == -EPERM;
}

static int boundaries(void)
{
    int bad = 0;
    struct os_range r = { LO, HI };
    if (vmpk__seccomp_install(&r, 1, (uintptr_t)vmpk__syscall_return, NULL)) {
        printf("#   child: install failed\n");
        return 1;
    }
    EXPECT(!denied(LO - 0x1000, 0x1000));         /* ends at lo */
    EXPECT(denied(LO - 0x1000, 0x1001));          /* one byte in */
    EXPECT(denied(LO - 0x1000, 0x2000));
    EXPECT(denied(LO, 0x1000));
    EXPECT(denied(HI - 0x1000, 0x1000));          /* the last page */
    EXPECT(!denied(HI, 0x1000));                  /* starts at hi */
    EXPECT(!denied(HI + 0x100000000ul, 0x1000));  /* same low word as hi, above */
    EXPECT(!denied(LO - 0x100000000ul, 0x1000));  /* same low word as lo, below */
    EXPECT(!denied(LO & ~0xfffffffful, 0x1000));  /* same high word as lo, below */
    /* Sums that carry out of the low word. */
    EXPECT(denied(0x2f0080000000ul, 0x80000000ul));  /* ends past lo's 4 GiB line */
    EXPECT(!denied(0x2f0080000000ul, 0x7ffff000ul)); /* ends exactly at lo */
    EXPECT(denied(0x2effffffe000ul, 0x100002000ul)); /* high words differ by one plus carry */
    EXPECT(!denied(0x2effffffe000ul, 0x100001000ul)); /* ends exactly at lo */
    /* Around the whole range, and huge values (denied outright). */
    EXPECT(denied(LO - 0x100000000ul, 0x300000000ul));
    EXPECT(denied(0x8000000000000000ul, 0x1000));
    EXPECT(denied(0x1000, 0x8000000000000000ul));
    EXPECT(!denied(0x1000, 0x1000));              /* far below */
    /* munmap, madvise, pkey_mprotect: same pairs. */
    EXPECT(untrusted(SYS_munmap, (long)LO, 0x1000, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_madvise, (long)LO, 0x1000, MADV_DONTNEED, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_pkey_mprotect, (long)LO, 0x1000, PROT_NONE, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_munmap, (long)HI, 0x1000, 0, 0, 0) != -EPERM);
    /* mmap: only MAP_FIXED and MAP_FIXED_NOREPLACE over the range. */
    EXPECT(untrusted(SYS_mmap, (long)LO, 0x1000, PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1) == -EPERM);
    EXPECT(untrusted(SYS_mmap, (long)LO, 0x1000, PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | 0x100000, -1) == -EPERM);
    /* A hint is no threat: the kernel never maps over anything. */
    long hint = untrusted(SYS_mmap, (long)(LO - 0x100000), 0x1000, PROT_READ,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1);
    EXPECT(hint == (long)(LO - 0x100000));
    /* mremap: the old range, growing into it, and moving onto it. */
    EXPECT(untrusted(SYS_mremap, (long)LO, 0x1000, 0x1000, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_mremap, (long)(LO - 0x1000), 0x1000, 0x2000, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_mremap, hint, 0x1000, 0x1000, MREMAP_MAYMOVE | MREMAP_FIXED,
                     (long)LO) == -EPERM);
    EXPECT(untrusted(SYS_mremap, hint, 0x1000, 0x1000, MREMAP_MAYMOVE, (long)LO) != -EPERM);
    /* vmpk's own instruction may. */
    EXPECT(vmpk__syscall6(SYS_mprotect, (long)LO, 0x1000, PROT_NONE, 0, 0, 0) == -ENOMEM);
    EXPECT(vmpk__syscall6(SYS_munmap, (long)LO, 0x1000, 0, 0, 0, 0) == 0);
    return bad;
}

static int always_denied(void)
{
    int bad = 0;
    int pkey = (int)syscall(SYS_pkey_alloc, 0, 0); /* -1 where PKU is missing */
    struct os_range r = { LO, HI };
    if (vmpk__seccomp_install(&r, 1, (uintptr_t)vmpk__syscall_return, NULL))
        return 1;
    char a[8] = "secret", b[8] = { 0 };
    struct iovec local = { b, sizeof b }, remote = { a, sizeof a };
    EXPECT(untrusted(SYS_process_vm_readv, getpid(), (long)&local, 1, (long)&remote, 1) == -EPERM);
    EXPECT(untrusted(SYS_process_vm_writev, getpid(), (long)&remote, 1, (long)&local, 1) == -EPERM);
    EXPECT(b[0] == 0);
    EXPECT(untrusted(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_pkey_free, pkey > 0 ? pkey : 1, 0, 0, 0, 0) == -EPERM);
    /* x32 numbers and the i386 ABI of int 0x80 (getpid is 20 there). */
    EXPECT(untrusted(SYS_getpid | 0x40000000, 0, 0, 0, 0, 0) == -EPERM);
    long r80;
    __asm__ volatile("int $0x80" : "=a"(r80) : "a"(20) : "memory");
    EXPECT(r80 == -EPERM);
    EXPECT(untrusted(SYS_getpid, 0, 0, 0, 0, 0) == getpid()); /* the rest works */
    return bad;
}

static void filter_boundaries(void) { CHECK_EQ(in_child(boundaries), 0); }
static void filter_denies(void) { CHECK_EQ(in_child(always_denied), 0); }

/* The kernel paths that reach memory by address out of the filter's
 * sight: denied whatever the address. clone3 is ENOSYS (glibc falls back to
 * clone), clone of a memory sharer that is neither a thread nor a vfork
 * child EPERM, a thread clone allowed (no listener here). */
static void *nothing(void *arg)
{
    return arg;
}

static int child_fn(void *arg)
{
    (void)arg;
    return 0;
}

static int kernel_paths(void)
{
    int bad = 0;
    struct os_range r = { LO, HI };
    if (vmpk__seccomp_install(&r, 1, (uintptr_t)vmpk__syscall_return, NULL))
        return 1;
    char page[64] = { 0 };
    struct iovec iov = { page, sizeof page };
    int fds[2];
    EXPECT(pipe(fds) == 0);
    EXPECT(untrusted(SYS_io_uring_setup, 4, (long)page, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_io_uring_enter, 0, 1, 1, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_io_uring_register, 0, 0, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_userfaultfd, O_CLOEXEC, 0, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_ioctl, fds[0], 0xAA00 /* USERFAULTFD_IOC_NEW */, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_ioctl, fds[0], 0xc020aa00 /* UFFDIO_REGISTER */, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_ioctl, fds[0], 0x541b /* FIONREAD */, (long)page, 0, 0) == 0);
    EXPECT(untrusted(SYS_vmsplice, fds[1], (long)&iov, 1, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_process_madvise, 0, (long)&iov, 1, MADV_COLD, 0) == -EPERM);
    EXPECT(untrusted(SYS_io_setup, 1, (long)page, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_io_submit, 0, 1, (long)page, 0, 0) == -EPERM);
    int s = socket(AF_UNIX, SOCK_STREAM, 0), one = 1;
    EXPECT(untrusted(SYS_setsockopt, s, SOL_SOCKET, 60 /* SO_ZEROCOPY */, (long)&one, 4) == -EPERM);
    EXPECT(untrusted(SYS_setsockopt, s, SOL_SOCKET, SO_KEEPALIVE, (long)&one, 4) != -EPERM);
    /* mseal (ENOSYS before Linux 6.10) and remap_file_pages: over the
     * guarded range only, and from vmpk's instruction too. */
    EXPECT(untrusted(462, (long)LO, 0x1000, 0, 0, 0) == -EPERM);
    EXPECT(vmpk__syscall6(462, (long)LO, 0x1000, 0, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(462, (long)HI, 0x1000, 0, 0, 0) != -EPERM);
    EXPECT(untrusted(SYS_remap_file_pages, (long)LO, 0x1000, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_remap_file_pages, (long)HI, 0x1000, 0, 0, 0) != -EPERM);
    EXPECT(untrusted(SYS_clone3, (long)page, sizeof page, 0, 0, 0) == -ENOSYS);
    static uint8_t stack[16384] __attribute__((aligned(16)));
    errno = 0;
    EXPECT(clone(child_fn, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL) == -1 && errno == EPERM);
    pthread_t th;
    EXPECT(pthread_create(&th, NULL, nothing, NULL) == 0 &&
           pthread_join(th, NULL) == 0);
    pid_t pid = fork(); /* no CLONE_VM: allowed */
    if (pid == 0)
        _exit(0);
    int status;
    EXPECT(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    return bad;
}

static void filter_kernel_paths(void) { CHECK_EQ(in_child(kernel_paths), 0); }

/* Hardened, every thread clone is counted before it happens, whoever makes
 * it: glibc, a raw clone, a birth and an exit within one gate. A gate whose
 * thread made one ends with a shootdown. */
static volatile int raw_done;

static int raw_fn(void *arg)
{
    (void)arg;
    __atomic_store_n(&raw_done, 1, __ATOMIC_RELEASE);
    return 0;
}

static int births_counted(void)
{
    int bad = 0;
    struct vmpk_options o = { .harden = 1 };
    vmpk_runtime *rt;
    if (vmpk_open(&o, &rt))
        return 1;
    EXPECT(vmpk__meta.births_at == (const volatile unsigned *)&vmpk__meta.births);
    unsigned b0 = atomic_load(&vmpk__meta.births);
    pthread_t th;
    EXPECT(pthread_create(&th, NULL, nothing, NULL) == 0 && pthread_join(th, NULL) == 0);
    EXPECT(atomic_load(&vmpk__meta.births) == b0 + 1);
    static uint8_t stack[65536] __attribute__((aligned(16)));
    EXPECT(clone(raw_fn, stack + sizeof stack,
                 CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
                 NULL) > 0);
    while (!__atomic_load_n(&raw_done, __ATOMIC_ACQUIRE))
        sched_yield();
    EXPECT(atomic_load(&vmpk__meta.births) == b0 + 2);
    struct vmpk_info info;
    EXPECT(vmpk_info(rt, &info) == 0);
    int pku = info.backend == VMPK_BACKEND_PKU;
    /* On pku the count cannot be written from outside vmpk (the meta pkey). */
    EXPECT(!pku || vmpk_probe((const void *)&vmpk__meta.births, VMPK_RW) == 0);
    /* A birth and an exit inside one gate: the gate's end shoots down. */
    vmpk_key k;
    void *p;
    struct vmpk_stats s0, s1;
    EXPECT(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k) == 0 && vmpk_alloc(rt, k, 4096, &p) == 0);
    EXPECT(vmpk_begin(rt, k, VMPK_READ) == 0 && vmpk_end(rt, k) == 0);
    EXPECT(vmpk_stats(rt, &s0) == 0);
    EXPECT(vmpk_begin(rt, k, VMPK_READ) == 0);
    EXPECT(pthread_create(&th, NULL, nothing, NULL) == 0 && pthread_join(th, NULL) == 0);
    EXPECT(vmpk_end(rt, k) == 0);
    EXPECT(vmpk_stats(rt, &s1) == 0);
    EXPECT(s1.shootdowns == s0.shootdowns + pku);
    /* A child of fork() has no supervisor: it goes back to glibc's count. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(vmpk__meta.births_at != (const volatile unsigned *)&vmpk__meta.births &&
                      vmpk__meta.births_at != NULL
                  ? 0
                  : 1);
    int status;
    EXPECT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT(vmpk_close(rt) == 0);
    return bad;
}

static void hardened_counts_births(void) { CHECK_EQ(in_child(births_counted), 0); }

/* An io_uring instance made before hardening (libuv's, with
 * UV_USE_IO_URING=1) takes SQPOLL submissions with no system call: the
 * hardened open refuses the process, and installs nothing. */
/* A ring made before the open: with SQPOLL (flags at offset 8 of struct
 * io_uring_params) the open is refused; without, it succeeds and keeps
 * io_uring_enter for that ring while io_uring_setup is denied. */
static int ring_first(uint32_t flags)
{
    int bad = 0;
    uint8_t params[120] = { 0 }; /* struct io_uring_params */
    memcpy(params + 8, &flags, sizeof flags);
    long fd = untrusted(SYS_io_uring_setup, 2, (long)params, 0, 0, 0);
    if (fd < 0)
        return 0; /* no io_uring here: nothing to refuse */
    struct vmpk_options o = { .harden = 1 };
    vmpk_runtime *rt;
    if (flags) {
        EXPECT(vmpk_open(&o, &rt) == VMPK_E_SYSTEM && vmpk_last_errno() == EBUSY);
        struct vmpk_harden_info h;
        EXPECT(vmpk_harden_info(&h) == 0 && h.active == 0 && h.seccomp_mode == 0);
        close((int)fd);
        EXPECT(vmpk_open(&o, &rt) == 0 && vmpk_close(rt) == 0);
        return bad;
    }
    EXPECT(vmpk_open(&o, &rt) == 0);
    EXPECT(untrusted(SYS_io_uring_enter, fd, 0, 0, 0, 0) == 0);
    uint8_t again[120] = { 0 };
    EXPECT(untrusted(SYS_io_uring_setup, 2, (long)again, 0, 0, 0) == -EPERM);
    EXPECT(vmpk_close(rt) == 0);
    return bad;
}

static int io_uring_sqpoll_first(void) { return ring_first(2 /* IORING_SETUP_SQPOLL */); }
static int io_uring_plain_first(void) { return ring_first(0); }

static void refuses_io_uring_made_first(void) { CHECK_EQ(in_child(io_uring_sqpoll_first), 0); }
static void keeps_plain_ring_made_first(void) { CHECK_EQ(in_child(io_uring_plain_first), 0); }

/* int 0x80 works before any filter here (the kernel has IA32 emulation),
 * so the EPERM above is the filter's doing. */
static void int80_works_unfiltered(void)
{
    long r80;
    __asm__ volatile("int $0x80" : "=a"(r80) : "a"(20) : "memory");
    CHECK_EQ(r80, getpid());
}

static int hardened_open(void)
{
    int bad = 0;
    struct vmpk_options o = { .harden = 1 };
    vmpk_runtime *rt;
    int err = vmpk_open(&o, &rt);
    EXPECT(err == 0);
    if (err)
        return bad;
    struct vmpk_harden_info h;
    EXPECT(vmpk_harden_info(&h) == 0 && h.active == 1 && h.seccomp_mode == 2 &&
           h.probe_failed == 0 && h.seccomp_mode_before == 0);
    vmpk_key k;
    uint8_t *p;
    EXPECT(vmpk_key_create(rt, "h", VMPK_NONE, 0, &k) == 0);
    EXPECT(vmpk_alloc(rt, k, 8192, (void **)&p) == 0);
    EXPECT(vmpk_begin(rt, k, VMPK_RW) == 0);
    p[0] = 42;
    EXPECT(vmpk_end(rt, k) == 0);
    EXPECT(vmpk_probe(p, VMPK_READ) == 0);
    /* Others may not open it, nor retag, unmap or discard it. */
    EXPECT(untrusted(SYS_mprotect, (long)p, 4096, PROT_READ | PROT_WRITE, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_pkey_mprotect, (long)p, 4096, PROT_READ | PROT_WRITE, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_munmap, (long)p, 4096, 0, 0, 0) == -EPERM);
    EXPECT(untrusted(SYS_madvise, (long)p, 4096, MADV_DONTNEED, 0, 0) == -EPERM);
    EXPECT(vmpk_probe(p, VMPK_READ) == 0);
    /* vmpk's own calls work on: protect, misses, free, destroy, more keys. */
    EXPECT(vmpk_protect(rt, k, VMPK_READ) == 0);
    EXPECT(vmpk_probe(p, VMPK_READ) == 1 && p[0] == 42);
    for (int i = 0; i < 40; i++) {
        vmpk_key k2;
        void *q;
        EXPECT(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k2) == 0);
        EXPECT(vmpk_alloc(rt, k2, 4096, &q) == 0);
        EXPECT(vmpk_begin(rt, k2, VMPK_RW) == 0 && vmpk_end(rt, k2) == 0);
        EXPECT(vmpk_free(rt, k2, q) == 0 && vmpk_key_destroy(rt, k2) == 0);
    }
    EXPECT(vmpk_free(rt, k, p) == 0 && vmpk_key_destroy(rt, k) == 0);
    EXPECT(vmpk_close(rt) == 0);
    /* A second hardened open adds no filter. */
    int before = h.seccomp_filters;
    EXPECT(vmpk_open(&o, &rt) == 0 && vmpk_close(rt) == 0);
    EXPECT(vmpk_harden_info(&h) == 0 && h.seccomp_filters == before);
    return bad;
}

static void open_hardened(void) { CHECK_EQ(in_child(hardened_open), 0); }

/* A filter installed first that makes one call return 0 without doing it
 * (SECCOMP_RET_ERRNO with errno 0): the worst kind, vmpk would run on
 * believing its pages protected. */
static void hostile_filter(int nr, uint32_t action)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { 4, f };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int refused(int nr, uint32_t action, int expect_bits)
{
    int bad = 0;
    hostile_filter(nr, action);
    struct vmpk_options o = { .harden = 1 };
    vmpk_runtime *rt;
    EXPECT(vmpk_open(&o, &rt) == VMPK_E_FILTERED);
    struct vmpk_harden_info h;
    EXPECT(vmpk_harden_info(&h) == 0 && h.active == 0 && h.seccomp_mode == 2);
    if ((h.probe_failed & expect_bits) != expect_bits)
        printf("#   child: probe_failed %#x, expected %#x set\n", h.probe_failed, expect_bits), bad++;
    /* Without harden it opens (and is on its own), unless the call faked is
     * the one that makes the metadata writable (pkey_mprotect tags it with
     * the metadata pkey; without PKU, mprotect opens it): then vmpk's first
     * write to the metadata must die, as it does. */
    if (nr == (vmpk_pku_supported() ? SYS_pkey_mprotect : SYS_mprotect))
        return bad;
    o.harden = 0;
    EXPECT(vmpk_open(&o, &rt) == 0 && vmpk_close(rt) == 0);
    return bad;
}

static int fake_mprotect(void) { return refused(SYS_mprotect, SECCOMP_RET_ERRNO | 0, VMPK_PROBE_MPROTECT); }
static int eperm_madvise(void) { return refused(SYS_madvise, SECCOMP_RET_ERRNO | EPERM, VMPK_PROBE_MADVISE); }
static int kill_munmap(void) { return refused(SYS_munmap, SECCOMP_RET_KILL_PROCESS, VMPK_PROBE_DIED); }
static int fake_tgkill(void) { return refused(SYS_tgkill, SECCOMP_RET_ERRNO | 0, VMPK_PROBE_SIGNALS); }
static int fake_pkey_mprotect(void)
{
    return refused(SYS_pkey_mprotect, SECCOMP_RET_ERRNO | 0, VMPK_PROBE_PKEY_MPROTECT);
}

static void refuses_fake_mprotect(void) { CHECK_EQ(in_child(fake_mprotect), 0); }
static void refuses_eperm_madvise(void) { CHECK_EQ(in_child(eperm_madvise), 0); }
static void refuses_killing_munmap(void) { CHECK_EQ(in_child(kill_munmap), 0); }
static void refuses_fake_tgkill(void) { CHECK_EQ(in_child(fake_tgkill), 0); }
static void refuses_fake_pkey_mprotect(void)
{
    NEED_PKU();
    CHECK_EQ(in_child(fake_pkey_mprotect), 0);
}

/* A hardened process that execs a program that hardens in turn (a Node
 * that spawns Node, say): the child inherits the parent's filter, which
 * trusts the parent's copy of vmpk only, so the child's band must lie
 * elsewhere. Three generations, each with keys, gates and a protect. */
static int generation(int left)
{
    int bad = 0;
    struct vmpk_options o = { .harden = 1 };
    vmpk_runtime *rt;
    vmpk_key k;
    uint8_t *p;
    EXPECT(vmpk_open(&o, &rt) == 0);
    EXPECT(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &k) == 0);
    EXPECT(vmpk_alloc(rt, k, 4096, (void **)&p) == 0);
    EXPECT(vmpk_begin(rt, k, VMPK_RW) == 0);
    p[1] = 7;
    EXPECT(vmpk_end(rt, k) == 0);
    EXPECT(vmpk_protect(rt, k, VMPK_READ) == 0 && p[1] == 7);
    if (left > 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            char n[16];
            snprintf(n, sizeof n, "%d", left - 1);
            execl("/proc/self/exe", "test_harden", "generation", n, (char *)NULL);
            _exit(99);
        }
        int status;
        waitpid(pid, &status, 0);
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    struct vmpk_harden_info h;
    EXPECT(vmpk_harden_info(&h) == 0 && h.active);
    return bad;
}

/* From a fresh process: this one reserved memory before hardening (the
 * other tests' runtimes), where the kernel puts a child's libraries, and a
 * filter guarding that would break the child (docs/security.md). */
static int three_generations(void)
{
    execl("/proc/self/exe", "test_harden", "generation", "2", (char *)NULL);
    return 99;
}
static void hardened_exec_hardened(void) { CHECK_EQ(in_child(three_generations), 0); }

int main(int argc, char **argv)
{
    /* _exit: LeakSanitizer's exit check needs ptrace, which the filter denies. */
    if (argc == 3 && strcmp(argv[1], "generation") == 0)
        _exit(generation(atoi(argv[2])));
    RUN(int80_works_unfiltered);
    RUN(filter_boundaries);
    RUN(filter_denies);
    RUN(filter_kernel_paths);
    RUN(hardened_counts_births);
    RUN(refuses_io_uring_made_first);
    RUN(keeps_plain_ring_made_first);
    RUN(open_hardened);
    RUN(hardened_exec_hardened);
    RUN(refuses_fake_mprotect);
    RUN(refuses_eperm_madvise);
    RUN(refuses_killing_munmap);
    RUN(refuses_fake_tgkill);
    RUN(refuses_fake_pkey_mprotect);
    return check_done();
}
