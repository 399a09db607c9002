/*
 * The threads of this process, as Linux knows them (tasks_linux.c): who they
 * are, how to signal one, and a cheap sign that a thread was created.
 */
#ifndef VMPK_TASKS_H
#define VMPK_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>


/* Thread ids of this process other than the caller's, into tids[cap].
 * Returns the count, -ENOMEM if there are more than cap, or -errno. Not
 * signal-safe, but no malloc or stdio: it runs with metadata open. */
int tasks_list(pid_t *tids, size_t cap);
/* tgkill: 0, or -errno (-ESRCH once the thread is gone). */
int tasks_signal(pid_t tid, int sig);
/* The thread keeps sig blocked (SigBlk in /proc), so it cannot be reached. */
bool tasks_blocking(pid_t tid, int sig);
/* glibc's count of live threads (__nptl_nthreads, a private symbol), or
 * NULL where it cannot be found. Found once; the core keeps the address in
 * write-protected meta (births.h). */
const volatile unsigned *tasks_live_count(void);

#endif /* VMPK_TASKS_H */
