/*
 * The threads of this process, as Linux knows them (tasks_linux.c): who they
 * are, how to signal one, and a cheap hint that a thread was created.
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
/* A value that changes when a thread is created (glibc's count of live
 * threads), or, where it cannot be read, a value that changes every call. */
extern const volatile unsigned *tasks_nthreads;
/* Finds glibc's count. Called by vmpk_open, before any gate can run. */
void tasks_init(void);
unsigned tasks_births_slow(void);
static inline unsigned tasks_births(void)
{
    const volatile unsigned *n = tasks_nthreads;
    return __builtin_expect(n != NULL, 1) ? *n : tasks_births_slow();
}

#endif /* VMPK_TASKS_H */
