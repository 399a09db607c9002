/*
 * The hardened mode's seccomp filter: a classic BPF program, built at
 * install time with the guarded ranges and vmpk's instruction address as
 * constants. See seccomp_linux.h for what it does.
 *
 * Classic BPF has a 32-bit accumulator, so every 64-bit value is two loads
 * (x86-64 is little endian: the low word first) and every comparison or
 * sum is done on halves, with the carry by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_linux.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#define NR_MSEAL 462 /* Linux 6.10; older headers lack it */

#define DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define ALLOW SECCOMP_RET_ALLOW

/* Offsets into struct seccomp_data. */
#define NR offsetof(struct seccomp_data, nr)
#define ARCH offsetof(struct seccomp_data, arch)
#define IP_LO offsetof(struct seccomp_data, instruction_pointer)
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#define HI 4 /* the high word of a 64-bit field */

/* --- a tiny assembler with forward labels ------------------------------- */

#define MAX_INSNS BPF_MAXINSNS
#define MAX_LABELS 256
#define NO_LABEL (-1)

struct prog {
    struct sock_filter f[MAX_INSNS];
    int n;
    int label_at[MAX_LABELS];          /* instruction index, -1 until placed */
    int nlabels;
    /* Pending jumps: instruction, label of jt, label of jf (or of k for ja). */
    struct { int insn, jt, jf; } fix[MAX_INSNS];
    int nfix;
    bool overflow;
};

static int label(struct prog *p)
{
    if (p->nlabels == MAX_LABELS) {
        p->overflow = true;
        return 0;
    }
    p->label_at[p->nlabels] = -1;
    return p->nlabels++;
}

static void place(struct prog *p, int l)
{
    p->label_at[l] = p->n;
}

static void emit(struct prog *p, uint16_t code, uint32_t k)
{
    if (p->n == MAX_INSNS) {
        p->overflow = true;
        return;
    }
    p->f[p->n++] = (struct sock_filter)BPF_STMT(code, k);
}

static void ld(struct prog *p, uint32_t off) { emit(p, BPF_LD | BPF_W | BPF_ABS, off); }
static void ret(struct prog *p, uint32_t v) { emit(p, BPF_RET | BPF_K, v); }

/* A conditional jump to labels (NO_LABEL: the next instruction). */
static void jump(struct prog *p, uint16_t op, uint32_t k, int jt, int jf)
{
    if (p->nfix == MAX_INSNS) {
        p->overflow = true;
        return;
    }
    p->fix[p->nfix++] = (typeof(p->fix[0])){ p->n, jt, jf };
    emit(p, BPF_JMP | op, k);
}

static void jump_always(struct prog *p, int l)
{
    jump(p, BPF_JA, 0, l, NO_LABEL);
}

/* Resolves the labels; jt/jf reach 255 instructions ahead at most. */
static bool link_prog(struct prog *p)
{
    if (p->overflow)
        return false;
    for (int i = 0; i < p->nfix; i++) {
        struct sock_filter *f = &p->f[p->fix[i].insn];
        int next = p->fix[i].insn + 1;
        int t = p->fix[i].jt == NO_LABEL ? next : p->label_at[p->fix[i].jt];
        int e = p->fix[i].jf == NO_LABEL ? next : p->label_at[p->fix[i].jf];
        if (t < next || e < next)
            return false; /* unplaced label, or backwards */
        if (BPF_OP(f->code) == BPF_JA) {
            f->k = (uint32_t)(t - next);
        } else {
            if (t - next > 255 || e - next > 255)
                return false;
            f->jt = (uint8_t)(t - next);
            f->jf = (uint8_t)(e - next);
        }
    }
    return true;
}

/* --- the checks ---------------------------------------------------------- */

/* Returns ALLOW now if the call came from vmpk's instruction. */
static void allow_if_trusted(struct prog *p, uintptr_t ip)
{
    int other = label(p);
    ld(p, IP_LO);
    jump(p, BPF_JEQ | BPF_K, (uint32_t)ip, NO_LABEL, other);
    ld(p, IP_LO + HI);
    jump(p, BPF_JEQ | BPF_K, (uint32_t)(ip >> 32), NO_LABEL, other);
    ret(p, ALLOW);
    place(p, other);
}

/*
 * Returns DENY now if [addr, addr + len) overlaps [r->lo, r->hi), where addr
 * and len are syscall arguments: overlap is addr < hi and addr + len > lo.
 * Conservative where the kernel would refuse the call anyway: an address or
 * a length of 2^63 or more is denied outright. That bounds both high words
 * below 2^31, so the high word of the sum cannot overflow.
 * Memory: M[0] = low word of the sum, M[1] = carry.
 */
static void deny_if_overlap(struct prog *p, int addr, int len, const struct os_range *r)
{
    int deny = label(p), next = label(p), below_hi = label(p), nocarry = label(p),
        carried = label(p);
    uint32_t hi_hi = (uint32_t)(r->hi >> 32), hi_lo = (uint32_t)r->hi;
    uint32_t lo_hi = (uint32_t)(r->lo >> 32), lo_lo = (uint32_t)r->lo;

    ld(p, ARG_LO(addr) + HI);
    jump(p, BPF_JGE | BPF_K, 0x80000000u, deny, NO_LABEL);
    ld(p, ARG_LO(len) + HI);
    jump(p, BPF_JGE | BPF_K, 0x80000000u, deny, NO_LABEL);

    /* addr >= hi: no overlap. */
    ld(p, ARG_LO(addr) + HI);
    jump(p, BPF_JGT | BPF_K, hi_hi, next, NO_LABEL);
    jump(p, BPF_JEQ | BPF_K, hi_hi, NO_LABEL, below_hi);
    ld(p, ARG_LO(addr));
    jump(p, BPF_JGE | BPF_K, hi_lo, next, NO_LABEL);
    place(p, below_hi);

    /* end = addr + len: the low words and their carry. */
    ld(p, ARG_LO(addr));
    emit(p, BPF_MISC | BPF_TAX, 0);
    ld(p, ARG_LO(len));
    emit(p, BPF_ALU | BPF_ADD | BPF_X, 0);
    emit(p, BPF_ST, 0);                     /* M[0] = low word of end */
    jump(p, BPF_JGE | BPF_X, 0, nocarry, NO_LABEL); /* no wrap: sum >= addr */
    emit(p, BPF_LD | BPF_IMM, 1);
    jump_always(p, carried);
    place(p, nocarry);
    emit(p, BPF_LD | BPF_IMM, 0);
    place(p, carried);
    emit(p, BPF_ST, 1);                     /* M[1] = carry */
    ld(p, ARG_LO(len) + HI);
    emit(p, BPF_MISC | BPF_TAX, 0);
    ld(p, ARG_LO(addr) + HI);
    emit(p, BPF_ALU | BPF_ADD | BPF_X, 0);
    emit(p, BPF_MISC | BPF_TAX, 0);
    emit(p, BPF_LD | BPF_MEM, 1);
    emit(p, BPF_ALU | BPF_ADD | BPF_X, 0);  /* A = high word of end */

    /* end > lo: overlap. */
    jump(p, BPF_JGT | BPF_K, lo_hi, deny, NO_LABEL);
    jump(p, BPF_JEQ | BPF_K, lo_hi, NO_LABEL, next);
    emit(p, BPF_LD | BPF_MEM, 0);
    jump(p, BPF_JGT | BPF_K, lo_lo, deny, next);
    place(p, deny);
    ret(p, DENY);
    place(p, next);
}

static void deny_if_overlap_any(struct prog *p, int addr, int len, const struct os_range *r,
                                int n)
{
    for (int i = 0; i < n; i++)
        deny_if_overlap(p, addr, len, &r[i]);
}

/* Jumps to `skip` unless the low word of argument `arg` has a bit of mask. */
static void unless_flag(struct prog *p, int arg, uint32_t mask, int skip)
{
    ld(p, ARG_LO(arg));
    jump(p, BPF_JSET | BPF_K, mask, NO_LABEL, skip);
}

/* What the filter does with one system call number. */
enum rule {
    R_DENY,          /* EPERM always */
    R_ENOSYS,        /* clone3: glibc falls back to clone, whose flags it sees */
    R_RANGED,        /* (addr, len) in args 0 and 1: EPERM over a guarded range
                      * unless from vmpk's instruction */
    R_RANGED_ALL,    /* the same, from anywhere (vmpk never makes the call) */
    R_MMAP,
    R_MREMAP,
    R_PKEY_FREE,
    R_SHMAT,
    R_IOCTL,
    R_SETSOCKOPT,
    R_CLONE,
    R_RING_ENTER,    /* io_uring_enter: EPERM unless rings predate the filter */
};

/* Set by vmpk__seccomp_keep_rings before a program is built. */
static bool keep_rings;

void vmpk__seccomp_keep_rings(bool keep)
{
    keep_rings = keep;
}

static const struct { int nr; enum rule rule; } rules[] = {
    /* sorted by number: the filter finds a number by binary search */
    { SYS_mmap, R_MMAP },
    { SYS_mprotect, R_RANGED },
    { SYS_munmap, R_RANGED },
    { SYS_ioctl, R_IOCTL },
    { SYS_mremap, R_MREMAP },
    { SYS_madvise, R_RANGED },
    { SYS_shmat, R_SHMAT },
    { SYS_setsockopt, R_SETSOCKOPT },
    { SYS_clone, R_CLONE },
    { SYS_ptrace, R_DENY },
    { SYS_io_setup, R_DENY },
    { SYS_io_submit, R_DENY },
    { SYS_remap_file_pages, R_RANGED_ALL },
    { SYS_vmsplice, R_DENY },
    { SYS_process_vm_readv, R_DENY },
    { SYS_process_vm_writev, R_DENY },
    { SYS_userfaultfd, R_DENY },
    { SYS_pkey_mprotect, R_RANGED },
    { SYS_pkey_free, R_PKEY_FREE },
    { SYS_io_uring_setup, R_DENY },
    { SYS_io_uring_enter, R_RING_ENTER },
    { SYS_io_uring_register, R_DENY },
    { SYS_clone3, R_ENOSYS },
    { SYS_process_madvise, R_DENY },
    { NR_MSEAL, R_RANGED_ALL },
};
#define NRULES ((int)(sizeof rules / sizeof *rules))

/* The body of one rule: entered with A = nr, always returns. */
static void rule_body(struct prog *p, enum rule rule, const struct os_range *r, int n,
                      uintptr_t ip, bool notify)
{
    switch (rule) {
    case R_DENY:
        ret(p, DENY);
        break;
    case R_RING_ENTER:
        /* Rings made before the filter (libuv's on Node 22+, which it
         * flushes with io_uring_enter and cannot do without) keep working;
         * no new ring can be made (io_uring_setup is denied). */
        ret(p, keep_rings ? ALLOW : DENY);
        break;
    case R_ENOSYS:
        ret(p, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
        break;
    case R_RANGED:
        allow_if_trusted(p, ip);
        deny_if_overlap_any(p, 0, 1, r, n);
        ret(p, ALLOW);
        break;
    case R_RANGED_ALL:
        deny_if_overlap_any(p, 0, 1, r, n);
        ret(p, ALLOW);
        break;
    case R_MMAP: {
        int not_fixed = label(p);
        unless_flag(p, 3, MAP_FIXED | MAP_FIXED_NOREPLACE, not_fixed);
        allow_if_trusted(p, ip);
        deny_if_overlap_any(p, 0, 1, r, n);
        place(p, not_fixed);
        ret(p, ALLOW);
        break;
    }
    case R_MREMAP: {
        /* mremap(old, old_len, new_len, flags, new): growing in place covers
         * [old, old + new_len); MREMAP_FIXED moves it to [new, new + new_len). */
        allow_if_trusted(p, ip);
        deny_if_overlap_any(p, 0, 1, r, n);
        deny_if_overlap_any(p, 0, 2, r, n);
        int not_moved = label(p);
        unless_flag(p, 3, MREMAP_FIXED, not_moved);
        deny_if_overlap_any(p, 4, 2, r, n);
        place(p, not_moved);
        ret(p, ALLOW);
        break;
    }
    case R_PKEY_FREE:
        allow_if_trusted(p, ip);
        ret(p, DENY);
        break;
    case R_SHMAT: {
        int no_remap = label(p);
        unless_flag(p, 2, SHM_REMAP, no_remap);
        ret(p, DENY);
        place(p, no_remap);
        ret(p, ALLOW);
        break;
    }
    case R_IOCTL: {
        /* Every userfaultfd ioctl (type 0xAA): USERFAULTFD_IOC_NEW on
         * /dev/userfaultfd, and UFFDIO_* on a descriptor made before. */
        int other = label(p);
        ld(p, ARG_LO(1));
        emit(p, BPF_ALU | BPF_AND | BPF_K, 0xff00);
        jump(p, BPF_JEQ | BPF_K, (uint32_t)USERFAULTFD_IOC << 8, NO_LABEL, other);
        ret(p, DENY);
        place(p, other);
        ret(p, ALLOW);
        break;
    }
    case R_SETSOCKOPT: {
        /* SO_ZEROCOPY: a send would pin the pages and read them later. */
        int other = label(p);
        ld(p, ARG_LO(1));
        jump(p, BPF_JEQ | BPF_K, SOL_SOCKET, NO_LABEL, other);
        ld(p, ARG_LO(2));
        jump(p, BPF_JEQ | BPF_K, SO_ZEROCOPY, NO_LABEL, other);
        ret(p, DENY);
        place(p, other);
        ret(p, ALLOW);
        break;
    }
    case R_CLONE: {
        /* A task sharing the memory copies its creator's PKRU. A thread or
         * a vfork child: announced to vmpk's supervisor, which counts the
         * birth before the kernel goes on (gate ends compare the count).
         * Any other sharer would be out of a shootdown's reach: EPERM. */
        int not_vm = label(p), sharer = label(p);
        ld(p, ARG_LO(0));
        jump(p, BPF_JSET | BPF_K, CLONE_VM, NO_LABEL, not_vm);
        jump(p, BPF_JSET | BPF_K, CLONE_THREAD | CLONE_VFORK, NO_LABEL, sharer);
        ret(p, notify ? SECCOMP_RET_USER_NOTIF : ALLOW);
        place(p, sharer);
        ret(p, DENY);
        place(p, not_vm);
        ret(p, ALLOW);
        break;
    }
    }
}

/* Binary search over rules[lo..hi], A = nr: jumps to entry[i] on a match,
 * returns ALLOW when the number has no rule. */
static void search(struct prog *p, int lo, int hi, const int *entry)
{
    if (hi - lo < 3) {
        for (int i = lo; i <= hi; i++)
            jump(p, BPF_JEQ | BPF_K, (uint32_t)rules[i].nr, entry[i], NO_LABEL);
        ret(p, ALLOW);
        return;
    }
    int mid = (lo + hi) / 2, right = label(p);
    jump(p, BPF_JGT | BPF_K, (uint32_t)rules[mid].nr, right, NO_LABEL);
    jump(p, BPF_JEQ | BPF_K, (uint32_t)rules[mid].nr, entry[mid], NO_LABEL);
    search(p, lo, mid - 1, entry);
    place(p, right);
    search(p, mid + 1, hi, entry);
}

static void build(struct prog *p, const struct os_range *r, int n, uintptr_t ip, bool notify)
{
    int native = label(p);
    ld(p, ARCH);
    jump(p, BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, native, NO_LABEL);
    ret(p, DENY); /* int 0x80 (i386), or any other ABI */
    place(p, native);
    int not_x32 = label(p);
    ld(p, NR);
    jump(p, BPF_JSET | BPF_K, __X32_SYSCALL_BIT, NO_LABEL, not_x32);
    ret(p, DENY);
    place(p, not_x32);

    /* A = nr. The search's conditional jumps reach 255 instructions at
     * most, so each lands on a one-instruction stub right after the search
     * that jumps on (ja reaches anywhere) to the rule's body. */
    int entry[NRULES], body[NRULES];
    for (int i = 0; i < NRULES; i++) {
        entry[i] = label(p);
        body[i] = label(p);
    }
    search(p, 0, NRULES - 1, entry);
    for (int i = 0; i < NRULES; i++) {
        place(p, entry[i]);
        jump_always(p, body[i]);
    }
    for (int i = 0; i < NRULES; i++) {
        place(p, body[i]);
        rule_body(p, rules[i].rule, r, n, ip, notify);
    }
}

static struct prog *built(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          bool notify)
{
    if (n < 0 || n > SECCOMP_MAX_RANGES)
        return NULL;
    for (int i = 1; i < NRULES; i++)
        if (rules[i - 1].nr >= rules[i].nr)
            return NULL; /* the search needs them sorted */
    struct prog *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    build(p, ranges, n, trusted_ip, notify);
    if (!link_prog(p)) {
        free(p);
        return NULL;
    }
    return p;
}

int vmpk__seccomp_program(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          struct sock_filter *out, int max)
{
    struct prog *p = built(ranges, n, trusted_ip, true);
    if (!p)
        return -E2BIG;
    int len = p->n;
    memcpy(out, p->f, (size_t)(len < max ? len : max) * sizeof *out);
    free(p);
    return len;
}

int vmpk__seccomp_install(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          int *listener)
{
    struct prog *p = built(ranges, n, trusted_ip, listener != NULL);
    if (!p)
        return -E2BIG;
    int err = 0;
    struct sock_fprog fprog = { .len = (unsigned short)p->n, .filter = p->f };
    /* Without no_new_privs an unprivileged process may not install a filter;
     * TSYNC sets it on every thread along with the filter. With a listener,
     * TSYNC_ESRCH: a thread that cannot be synchronized is -ESRCH, as the
     * result is the listener's descriptor. */
    unsigned long flags = SECCOMP_FILTER_FLAG_TSYNC;
    if (listener)
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
        err = -errno;
        goto out;
    }
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    if (r < 0)
        err = -errno; /* -ESRCH: TSYNC failed; -EBUSY: an inherited filter has a listener */
    else if (listener)
        *listener = (int)r;
    else if (r > 0)
        err = -EBUSY; /* thread r has a filter stack we do not descend from */
out:
    free(p);
    return err;
}

int vmpk__seccomp_state(int *mode, int *filters)
{
    *mode = *filters = -1;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[8192];
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len < 0)
        return -errno;
    buf[len] = 0;
    const char *m = strstr(buf, "\nSeccomp:");
    const char *f = strstr(buf, "\nSeccomp_filters:");
    if (m)
        *mode = atoi(m + strlen("\nSeccomp:"));
    if (f)
        *filters = atoi(f + strlen("\nSeccomp_filters:"));
    return 0;
}
