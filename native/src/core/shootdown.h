/*
 * Shootdown: every other thread's PKRU catches up with vmpk's state now,
 * not lazily (shootdown.c). A thread is signalled and its handler rewrites
 * the PKRU saved in its signal frame to the thread's ideal value: for each
 * vmpk pkey, the union of the thread's own gates on the vkey it serves and
 * that vkey's perm; closed for a pkey that serves none.
 */
#ifndef VMPK_SHOOTDOWN_H
#define VMPK_SHOOTDOWN_H

#include <stdint.h>

#include "internal.h"

/* Installs the handler of the shootdown signal (a real-time one). */
int vmpk__shootdown_install(void);
int vmpk__shootdown_signal(void);
/* Signals every other thread and waits until each has resynced, has exited,
 * or keeps the signal blocked for good (it cannot be reached; counted). */
int vmpk__shootdown(struct vmpk_runtime *rt);

#endif /* VMPK_SHOOTDOWN_H */
