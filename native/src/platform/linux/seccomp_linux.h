/*
 * The hardened mode's seccomp filter (seccomp_linux.c). Installed once on
 * every thread of the process, for good (a filter cannot be removed), and
 * inherited by children, across exec too. For x86-64 system calls only:
 *
 *   - any other ABI (int 0x80, i386 numbers; the x32 bit): EPERM
 *   - process_vm_readv, process_vm_writev, ptrace: EPERM
 *   - pkey_free: EPERM unless from vmpk's instruction (a freed pkey's next
 *     pkey_alloc would give its caller open PKRU bits on vmpk's pages)
 *   - mprotect, pkey_mprotect, munmap, madvise, mremap (old range, new
 *     size, and with MREMAP_FIXED the new range), mmap with MAP_FIXED or
 *     MAP_FIXED_NOREPLACE: EPERM when the range overlaps a guarded range,
 *     unless the call comes from vmpk's instruction
 *   - shmat with SHM_REMAP: EPERM (it could map over vmpk's memory, and
 *     its size is not among the arguments)
 *   - everything else: allowed
 */
#ifndef VMPK_SECCOMP_LINUX_H
#define VMPK_SECCOMP_LINUX_H

#include <stdint.h>

#include "os.h"

#define SECCOMP_MAX_RANGES 16

/* Installs the filter guarding [lo, hi) of each range, trusting calls whose
 * instruction pointer is trusted_ip. 0, or -errno (-EINVAL: no seccomp
 * here, -E2BIG: too many ranges or no memory to build the program, -EBUSY:
 * a thread could not be synchronized). */
int vmpk__seccomp_install(const struct os_range *ranges, int n, uintptr_t trusted_ip);

/* The program that vmpk__seccomp_install would install: writes at most max
 * instructions, returns the length (or -E2BIG). For the benchmark, which
 * counts the instructions each kind of call runs. */
struct sock_filter;
int vmpk__seccomp_program(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          struct sock_filter *out, int max);

/* The Seccomp: and Seccomp_filters: lines of /proc/self/status (-1 where
 * missing: the second needs Linux 5.9). 0 or -errno. */
int vmpk__seccomp_state(int *mode, int *filters);

#endif /* VMPK_SECCOMP_LINUX_H */
