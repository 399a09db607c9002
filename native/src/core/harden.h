/*
 * Hardened mode (harden.c): vmpk_open's { .harden = 1 }. See seccomp_linux.h
 * for the filter and docs/security.md for what it stops and what it cannot.
 */
#ifndef VMPK_HARDEN_H
#define VMPK_HARDEN_H

#include <stdbool.h>

/* Before the runtime reserves anything: from now on every reservation of
 * vmpk goes to the one band of address space that the filter guards. */
int vmpk__harden_prepare(void);

/* Probes, in a forked child, that the system calls vmpk needs work under
 * the filters in place (pku: the pkey calls too), then installs vmpk's
 * filter on every thread, once per process. 0, VMPK_E_FILTERED when the
 * probe fails, VMPK_E_SYSTEM when seccomp refuses the filter, or with errno
 * EBUSY when the process has an io_uring instance already (no filter can
 * close one). */
int vmpk__harden(bool pku);

#endif /* VMPK_HARDEN_H */
