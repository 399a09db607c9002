/*
 * Thread births, as a gate sees them: a value that changes when a thread is
 * created (a task made with CLONE_VM copies its creator's PKRU). Read where
 * the meta page names it (vmpk__meta.births_at, write-protected): glibc's
 * count of live threads (tasks_live_count), which a birth and an exit during
 * one gate leave unchanged; once hardened, a true count of births
 * (harden.c). Where neither can be read, a value that changes every call.
 */
#ifndef VMPK_BIRTHS_H
#define VMPK_BIRTHS_H

#include "meta.h"

/* Before vmpk__meta_init write-protects the meta page: plain stores. */
void births_init(void);
/* Hardened: from now on gates compare vmpk__meta.births. Meta open. */
void births_count_true(void);
/* Back to glibc's count (a forked child: the supervisor is its parent's,
 * and counts in its parent's memory). Meta open. */
void births_count_live(void);
unsigned births_now_slow(void);
static inline unsigned births_now(void)
{
    const volatile unsigned *n = vmpk__meta.births_at;
    return __builtin_expect(n != NULL, 1) ? *n : births_now_slow();
}

#endif /* VMPK_BIRTHS_H */
