/*
 * The hardened mode's seccomp filter (seccomp_linux.c). Installed once on
 * every thread of the process, for good (a filter cannot be removed), and
 * inherited by children, across exec too. For x86-64 system calls only:
 *
 *   - any other ABI (int 0x80, i386 numbers; the x32 bit): EPERM
 *   - process_vm_readv, process_vm_writev, ptrace: EPERM
 *   - kernel paths that reach memory by address for other code, out of
 *     the filter's sight: io_uring_setup/enter/register (operations run
 *     without their system call, and SQPOLL's kernel thread copies PKRU;
 *     io_uring_enter stays allowed when rings predate the filter: see
 *     vmpk__seccomp_keep_rings),
 *     userfaultfd and every userfaultfd ioctl (type 0xAA: /dev/userfaultfd's
 *     USERFAULTFD_IOC_NEW, UFFDIO_COPY...), vmsplice (a pipe keeps a page
 *     reference past protection changes), process_madvise, io_setup and
 *     io_submit (AIO with O_DIRECT pins pages), setsockopt SO_ZEROCOPY:
 *     EPERM
 *   - clone3: ENOSYS (glibc falls back to clone, whose flags are visible)
 *   - clone with CLONE_VM: a thread (CLONE_THREAD) or a vfork child goes to
 *     the listener (SECCOMP_RET_USER_NOTIF; allowed when installed without
 *     one), whose supervisor counts the birth first; any other task that
 *     would share the memory: EPERM
 *   - pkey_free: EPERM unless from vmpk's instruction (a freed pkey's next
 *     pkey_alloc would give its caller open PKRU bits on vmpk's pages)
 *   - mprotect, pkey_mprotect, munmap, madvise, mremap (old range, new
 *     size, and with MREMAP_FIXED the new range), mmap with MAP_FIXED or
 *     MAP_FIXED_NOREPLACE: EPERM when the range overlaps a guarded range,
 *     unless the call comes from vmpk's instruction
 *   - mseal, remap_file_pages: EPERM over a guarded range, from anywhere
 *   - shmat with SHM_REMAP: EPERM (it could map over vmpk's memory, and
 *     its size is not among the arguments)
 *   - everything else: allowed
 * The numbers are found by binary search, so a call without a rule costs
 * about ten instructions however many rules there are.
 */
#ifndef VMPK_SECCOMP_LINUX_H
#define VMPK_SECCOMP_LINUX_H

#include <stdbool.h>
#include <stdint.h>

#include "os.h"

#define SECCOMP_MAX_RANGES 16

/* Installs the filter guarding [lo, hi) of each range, trusting calls whose
 * instruction pointer is trusted_ip. With listener, thread clones notify the
 * descriptor stored there (whoever holds it must answer each, or the
 * cloning thread waits); without, they are allowed. 0, or -errno (-EINVAL:
 * no seccomp here, or no listener support (Linux < 5.7), -E2BIG: too many
 * ranges or no memory to build the program, -EBUSY: a thread could not be
 * synchronized, or with listener: a filter inherited from an ancestor has a
 * listener already (the kernel allows one per chain), -ESRCH: with
 * listener, a thread could not be synchronized). */
/* Whether io_uring_enter stays allowed in programs built from now on: for
 * rings made before the filter (without SQPOLL), whose owner (libuv, on
 * Node 22+) needs the call. Such a ring is a path the filter leaves open to
 * code that can write its submission queue (security.md). */
void vmpk__seccomp_keep_rings(bool keep);
int vmpk__seccomp_install(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          int *listener);

/* The program that vmpk__seccomp_install would install with a listener: writes at most max
 * instructions, returns the length (or -E2BIG). For the benchmark, which
 * counts the instructions each kind of call runs. */
struct sock_filter;
int vmpk__seccomp_program(const struct os_range *ranges, int n, uintptr_t trusted_ip,
                          struct sock_filter *out, int max);

/* The Seccomp: and Seccomp_filters: lines of /proc/self/status (-1 where
 * missing: the second needs Linux 5.9). 0 or -errno. */
int vmpk__seccomp_state(int *mode, int *filters);

#endif /* VMPK_SECCOMP_LINUX_H */
