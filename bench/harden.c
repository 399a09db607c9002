/*
 * harden: what the hardened mode's seccomp filter costs.
 *
 *   bench/build/harden-stub [TRIALS]     pku backend logic, PKRU stubbed: any machine
 *   bench/build/harden-release [TRIALS]  the real build: mprotect on the host, pku in the guest
 *
 * 1. Exact counts, no timing: the filter's BPF program is run here by a small
 *    interpreter on the calls a gate makes, so the instructions each kind of
 *    call costs are counted exactly (the kernel JIT-compiles the same program).
 * 2. Side by side: each trial forks two children, one plain and one that
 *    opens hardened, alternating which goes first; each times the same loops
 *    (a bare getppid syscall, gate hits, gate misses). A filter cannot be
 *    removed, so the two cannot share a process. Prints the median over the
 *    trials of each time and of the ratio hardened/plain.
 *
 * Prints `harden key=value ...` lines. In the guest only the counts mean
 * anything (TCG timings do not).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/audit.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os.h"
#include "seccomp_linux.h"
#include "rawsyscall.h"
#include "vmpk.h"

#define CHECK(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) {                                                                         \
            fprintf(stderr, "harden: %s: %s\n", #call, vmpk_strerror(rc_));                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* --- 1. the filter's instructions per call ------------------------------- */

/* Runs a classic BPF program on one seccomp_data; returns the instructions
 * executed, and the verdict in *ret. Only what platform/x86_64/seccomp.c emits. */
static int run_bpf(const struct sock_filter *f, int n, const struct seccomp_data *d, uint32_t *ret)
{
    uint32_t a = 0, x = 0, m[16] = { 0 };
    int steps = 0;
    for (int pc = 0; pc < n; pc++) {
        const struct sock_filter *i = &f[pc];
        steps++;
        switch (i->code) {
        case BPF_LD | BPF_W | BPF_ABS: memcpy(&a, (const char *)d + i->k, 4); break;
        case BPF_LD | BPF_IMM: a = i->k; break;
        case BPF_LD | BPF_MEM: a = m[i->k]; break;
        case BPF_ST: m[i->k] = a; break;
        case BPF_MISC | BPF_TAX: x = a; break;
        case BPF_ALU | BPF_ADD | BPF_X: a += x; break;
        case BPF_ALU | BPF_AND | BPF_K: a &= i->k; break;
        case BPF_JMP | BPF_JA: pc += (int)i->k; break;
        case BPF_JMP | BPF_JEQ | BPF_K: pc += a == i->k ? i->jt : i->jf; break;
        case BPF_JMP | BPF_JGT | BPF_K: pc += a > i->k ? i->jt : i->jf; break;
        case BPF_JMP | BPF_JGE | BPF_K: pc += a >= i->k ? i->jt : i->jf; break;
        case BPF_JMP | BPF_JGE | BPF_X: pc += a >= x ? i->jt : i->jf; break;
        case BPF_JMP | BPF_JSET | BPF_K: pc += (a & i->k) ? i->jt : i->jf; break;
        case BPF_RET | BPF_K: *ret = i->k; return steps;
        default: fprintf(stderr, "harden: unknown BPF op %#x\n", i->code); exit(1);
        }
    }
    fprintf(stderr, "harden: BPF program fell off its end\n");
    exit(1);
}

static void count_instructions(void)
{
    static struct sock_filter f[BPF_MAXINSNS];
    /* A band and one range outside it, as after an open before hardening. */
    struct os_range r[2] = { { 0x410000000000ul, 0x414000000000ul + (64ul << 30) },
                             { 0x7f0000000000ul, 0x7f0040000000ul } };
    uintptr_t ip = (uintptr_t)vmpk__syscall_return;
    for (int nranges = 1; nranges <= 2; nranges++) {
        int n = vmpk__seccomp_program(r, nranges, ip, f, BPF_MAXINSNS);
        struct {
            const char *name;
            int nr;
            uint64_t ip, a0, a1, a3;
        } calls[] = {
            { "getppid", SYS_getppid, 0x1000, 0, 0, 0 },
            { "futex", SYS_futex, 0x1000, 0, 0, 0 },
            { "mprotect-elsewhere", SYS_mprotect, 0x1000, 0x1000000, 4096, 0 },
            { "mprotect-vmpk", SYS_mprotect, ip, r[0].lo, 4096, 0 },
            { "mprotect-denied", SYS_mprotect, 0x1000, r[0].lo, 4096, 0 },
            { "pkey_mprotect-vmpk", SYS_pkey_mprotect, ip, r[0].lo, 4096, 0 },
            { "mmap-plain", SYS_mmap, 0x1000, 0, 4096, MAP_PRIVATE | MAP_ANONYMOUS },
            { "madvise-elsewhere", SYS_madvise, 0x1000, 0x1000000, 4096, 0 },
            { "read", SYS_read, 0x1000, 0, 0, 0 },
            { "epoll_pwait", SYS_epoll_pwait, 0x1000, 0, 0, 0 },
            { "ioctl-FIONBIO", SYS_ioctl, 0x1000, 3, 0x5421, 0 },
            { "clone-thread", SYS_clone, 0x1000, 0x3d0f00, 0, 0 },
            { "io_uring_setup", SYS_io_uring_setup, 0x1000, 4, 0, 0 },
        };
        printf("harden program ranges=%d instructions=%d\n", nranges, n);
        for (size_t c = 0; c < sizeof calls / sizeof *calls; c++) {
            struct seccomp_data d = { .nr = calls[c].nr, .arch = AUDIT_ARCH_X86_64,
                                      .instruction_pointer = calls[c].ip };
            d.args[0] = calls[c].a0, d.args[1] = calls[c].a1, d.args[3] = calls[c].a3;
            uint32_t ret;
            int steps = run_bpf(f, n, &d, &ret);
            printf("harden bpf ranges=%d call=%s instructions=%d verdict=%s\n", nranges,
                   calls[c].name, steps,
                   ret == SECCOMP_RET_ALLOW ? "allow"
                   : (ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO ? "errno"
                   : ret == SECCOMP_RET_USER_NOTIF ? "notify" : "other");
        }
    }
}

/* --- 2. side by side ------------------------------------------------------- */

#define KEYS 16
#define BUDGET 4

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: the machines are shared */
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

struct result {
    double syscall_ns, hit_ns, miss_ns, miss_syscalls;
};

static struct result measure(int harden)
{
    struct result res;
    struct vmpk_options o = { .harden = harden, .max_hw_keys = BUDGET };
    vmpk_runtime *rt;
    vmpk_key keys[KEYS];
    void *mem;
    CHECK(vmpk_open(&o, &rt));
    for (int k = 0; k < KEYS; k++) {
        CHECK(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &keys[k]));
        CHECK(vmpk_alloc(rt, keys[k], 4096, &mem));
    }
    enum { SYSCALLS = 200000, HITS = 1000000, MISSES = 20000 };
    double t = now_ns();
    for (int i = 0; i < SYSCALLS; i++)
        syscall(SYS_getppid);
    res.syscall_ns = (now_ns() - t) / SYSCALLS;

    /* Hits: an inner gate on a key an outer gate holds open (no syscall on
     * either backend). */
    CHECK(vmpk_begin(rt, keys[0], VMPK_RW));
    t = now_ns();
    for (int i = 0; i < HITS; i++) {
        vmpk_begin(rt, keys[0], VMPK_RW);
        vmpk_end(rt, keys[0]);
    }
    res.hit_ns = (now_ns() - t) / HITS;
    CHECK(vmpk_end(rt, keys[0]));

    /* Misses: gates cycling through more keys than hardware keys (pku), or
     * opening closed pages (mprotect). */
    struct vmpk_stats a, b;
    CHECK(vmpk_stats(rt, &a));
    t = now_ns();
    for (int i = 0; i < MISSES; i++) {
        vmpk_begin(rt, keys[i % KEYS], VMPK_RW);
        vmpk_end(rt, keys[i % KEYS]);
    }
    res.miss_ns = (now_ns() - t) / MISSES;
    CHECK(vmpk_stats(rt, &b));
    res.miss_syscalls = (double)(b.syscalls - a.syscalls) / MISSES;
    return res;
}

static struct result in_child(int harden)
{
    int fd[2];
    struct result r;
    if (pipe(fd))
        exit(1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        r = measure(harden);
        if (write(fd[1], &r, sizeof r) != (ssize_t)sizeof r)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &r, sizeof r) != (ssize_t)sizeof r) {
        fprintf(stderr, "harden: a child failed\n");
        exit(1);
    }
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return r;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 7;
    if (trials < 1 || trials > 99)
        trials = 7;
    count_instructions();

    vmpk_runtime *rt;
    struct vmpk_info info;
    CHECK(vmpk_open(NULL, &rt));
    CHECK(vmpk_info(rt, &info));
    CHECK(vmpk_close(rt));
    const char *backend = info.backend == VMPK_BACKEND_PKU ? "pku" : "mprotect";

    double v[6][99];
    for (int i = 0; i < trials; i++) {
        struct result p, h;
        if (i % 2) {
            h = in_child(1);
            p = in_child(0);
        } else {
            p = in_child(0);
            h = in_child(1);
        }
        if (p.miss_syscalls != h.miss_syscalls) {
            fprintf(stderr, "harden: syscalls per miss differ: %.2f plain, %.2f hardened\n",
                    p.miss_syscalls, h.miss_syscalls);
            return 1;
        }
        v[0][i] = h.syscall_ns / p.syscall_ns;
        v[1][i] = h.hit_ns / p.hit_ns;
        v[2][i] = h.miss_ns / p.miss_ns;
        v[3][i] = p.syscall_ns;
        v[4][i] = p.hit_ns;
        v[5][i] = p.miss_ns;
        if (i == 0)
            printf("harden counts backend=%s stubbed=%d syscalls_per_miss=%.2f\n", backend,
                   info.pkru_stubbed, p.miss_syscalls);
    }
    const char *what[3] = { "getppid", "gate-hit", "gate-miss" };
    for (int k = 0; k < 3; k++) {
        double plain = median(v[3 + k], trials), ratio = median(v[k], trials);
        printf("harden time backend=%s stubbed=%d op=%s trials=%d plain_ns=%.1f ratio=%.3f\n",
               backend, info.pkru_stubbed, what[k], trials, plain, ratio);
    }
    return 0;
}
