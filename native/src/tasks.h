/*
 * The threads of this process, as Linux knows them (tasks_linux.c): who they
 * are, how to signal one, and a cheap sign that a thread was created.
 */
#ifndef VMPK_TASKS_H
#define VMPK_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "meta.h"

/* Thread ids of this process other than the caller's, into tids[cap].
 * Returns the count, -ENOMEM if there are more than cap, or -errno. Not
 * signal-safe, but no malloc or stdio: it runs with metadata open. */
int tasks_list(pid_t *tids, size_t cap);
/* tgkill: 0, or -errno (-ESRCH once the thread is gone). */
int tasks_signal(pid_t tid, int sig);
/* The thread keeps sig blocked (SigBlk in /proc), so it cannot be reached. */
bool tasks_blocking(pid_t tid, int sig);
/* A value that changes when a thread is created. Read where the meta page
 * names it (vmpk__meta.births_at, write-protected): glibc's count of live
 * threads, which a birth and an exit during one gate leave unchanged; once
 * hardened, a true count of births (harden.c). Where neither can be read, a
 * value that changes every call. */
void tasks_init(void);
/* Hardened: from now on gates compare vmpk__meta.births. Meta open. */
void tasks_count_births(void);
/* Back to glibc's count (a forked child: the supervisor is its parent's,
 * and counts in its parent's memory). Meta open. */
void tasks_count_live(void);
unsigned tasks_births_slow(void);
static inline unsigned tasks_births(void)
{
    const volatile unsigned *n = vmpk__meta.births_at;
    return __builtin_expect(n != NULL, 1) ? *n : tasks_births_slow();
}

#endif /* VMPK_TASKS_H */
