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
#include <sys/mman.h>
#include <sys/prctl.h>
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

/* A block for syscall nr: entered only for that number. A holds the number
 * here: every block ends in a return, so the next one is reached only by
 * the jump that skips this one, with A untouched. */
static int block_begin(struct prog *p, int nr)
{
    int after = label(p), body = label(p);
    jump(p, BPF_JEQ | BPF_K, (uint32_t)nr, body, NO_LABEL);
    jump_always(p, after);
    place(p, body);
    return after;
}

static void build(struct prog *p, const struct os_range *r, int n, uintptr_t ip)
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

    /* A = nr from here on, into every block_begin. */
    static const int denied[] = { SYS_process_vm_readv, SYS_process_vm_writev, SYS_ptrace };
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
        int other = label(p);
        jump(p, BPF_JEQ | BPF_K, (uint32_t)denied[i], NO_LABEL, other);
        ret(p, DENY);
        place(p, other);
    }

    /* (addr, len) argument pairs of the calls that change a range. */
    static const int ranged[] = { SYS_mprotect, SYS_pkey_mprotect, SYS_munmap, SYS_madvise };
    for (size_t i = 0; i < sizeof ranged / sizeof *ranged; i++) {
        int after = block_begin(p, ranged[i]);
        allow_if_trusted(p, ip);
        deny_if_overlap_any(p, 0, 1, r, n);
        ret(p, ALLOW);
        place(p, after);
    }

    int after = block_begin(p, SYS_mmap);
    int not_fixed = label(p);
    unless_flag(p, 3, MAP_FIXED | MAP_FIXED_NOREPLACE, not_fixed);
    allow_if_trusted(p, ip);
    deny_if_overlap_any(p, 0, 1, r, n);
    place(p, not_fixed);
    ret(p, ALLOW);
    place(p, after);

    /* mremap(old, old_len, new_len, flags, new): growing in place covers
     * [old, old + new_len); MREMAP_FIXED moves it to [new, new + new_len). */
    after = block_begin(p, SYS_mremap);
    allow_if_trusted(p, ip);
    deny_if_overlap_any(p, 0, 1, r, n);
    deny_if_overlap_any(p, 0, 2, r, n);
    int not_moved = label(p);
    unless_flag(p, 3, MREMAP_FIXED, not_moved);
    deny_if_overlap_any(p, 4, 2, r, n);
    place(p, not_moved);
    ret(p, ALLOW);
    place(p, after);

    after = block_begin(p, SYS_pkey_free);
    allow_if_trusted(p, ip);
    ret(p, DENY);
    place(p, after);

    after = block_begin(p, SYS_shmat);
    int no_remap = label(p);
    unless_flag(p, 2, SHM_REMAP, no_remap);
    ret(p, DENY);
    place(p, no_remap);
    ret(p, ALLOW);
    place(p, after);

    ret(p, ALLOW);
}

static struct prog *built(const struct os_range *ranges, int n, uintptr_t trusted_ip)
{
    if (n < 0 || n > SECCOMP_MAX_RANGES)
        return NULL;
    struct prog *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    build(p, ranges, n, trusted_ip);
    if (!link_prog(p)) {
        free(p);
        return NULL;
    }
    return p;
}

int vmpk__seccomp_program(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          struct sock_filter *out, int max)
{
    struct prog *p = built(ranges, n, trusted_ip);
    if (!p)
        return -E2BIG;
    int len = p->n;
    memcpy(out, p->f, (size_t)(len < max ? len : max) * sizeof *out);
    free(p);
    return len;
}

int vmpk__seccomp_install(const struct os_range *ranges, int n, uintptr_t trusted_ip)
{
    struct prog *p = built(ranges, n, trusted_ip);
    if (!p)
        return -E2BIG;
    int err = 0;
    struct sock_fprog fprog = { .len = (unsigned short)p->n, .filter = p->f };
    /* Without no_new_privs an unprivileged process may not install a filter;
     * TSYNC sets it on every thread along with the filter. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
        err = -errno;
        goto out;
    }
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
    if (r < 0)
        err = -errno;
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
