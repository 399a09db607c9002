/*
 * A tiny test harness for the C tests. Each TEST is one line of output,
 * "ok NAME", "not ok NAME" or "ok NAME # SKIP why"; the last line is
 * "N passed, N failed, N skipped" and the exit status is the failure count.
 *
 * The backend comes from VMPK_BACKEND, as for the TypeScript suite. Tests
 * that need the pku backend skip elsewhere, except where VMPK_BACKEND=pku
 * asks for it: there open() fails instead, so nothing skips silently.
 */
#ifndef VMPK_CHECK_H
#define VMPK_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmpk.h"

static int check_passed, check_failed, check_skipped, check_failures_now;
static const char *check_skip_why;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            printf("#   %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond);                  \
            check_failures_now++;                                                          \
        }                                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_) {                                                                    \
            printf("#   %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a,  \
                   a_, #b, b_);                                                            \
            check_failures_now++;                                                          \
        }                                                                                  \
    } while (0)

/* Ends the current test as skipped. */
#define SKIP(why)                                                                          \
    do {                                                                                   \
        check_skip_why = (why);                                                            \
        return;                                                                            \
    } while (0)

#define RUN(test)                                                                          \
    do {                                                                                   \
        check_failures_now = 0;                                                            \
        check_skip_why = NULL;                                                             \
        test();                                                                            \
        if (check_failures_now) {                                                          \
            check_failed++;                                                                \
            printf("not ok %s\n", #test);                                                  \
        } else if (check_skip_why) {                                                       \
            check_skipped++;                                                               \
            printf("ok %s # SKIP %s\n", #test, check_skip_why);                            \
        } else {                                                                           \
            check_passed++;                                                                \
            printf("ok %s\n", #test);                                                      \
        }                                                                                  \
        fflush(stdout);                                                                    \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed, %d skipped\n", check_passed, check_failed, check_skipped);
    return check_failed;
}

/* A runtime on the backend VMPK_BACKEND asks for; aborts the run if that
 * fails, since every later check would be meaningless. */
static inline vmpk_runtime *open_rt(int max_hw_keys)
{
    struct vmpk_options o = { .max_hw_keys = max_hw_keys };
    vmpk_runtime *rt;
    int err = vmpk_open(&o, &rt);
    if (err) {
        printf("Bail out! vmpk_open: %s\n", vmpk_strerror(err));
        exit(99);
    }
    return rt;
}

static inline int backend_of(vmpk_runtime *rt)
{
    struct vmpk_info info;
    vmpk_info(rt, &info);
    return info.backend;
}

static inline struct vmpk_stats stats_of(vmpk_runtime *rt)
{
    struct vmpk_stats s;
    vmpk_stats(rt, &s);
    return s;
}

/* 1 if VMPK_BACKEND selects the pku backend here (real or stub build). */
static inline int pku_backend(void)
{
    static int known = -1;
    if (known < 0) {
        vmpk_runtime *rt = open_rt(0);
        known = backend_of(rt) == VMPK_BACKEND_PKU;
        vmpk_close(rt);
    }
    return known;
}

#define NEED_PKU()                                                                         \
    do {                                                                                   \
        if (!pku_backend())                                                                \
            SKIP("needs the pku backend: the PKU guest, or the stub build");               \
    } while (0)

/* Runs body(arg) in a forked child with its stderr captured, for tests of
 * how a process dies. Returns the child's stderr (valid until the next
 * call); *sig is its fatal signal (0 if it exited), *status its exit status
 * (-1 if it was killed). body should not return; if it does, the child
 * exits with 92. */
static inline char *check_in_child(void (*body)(int), int arg, int *sig, int *status)
{
    static char out[4096];
    int fds[2];
    if (pipe(fds))
        abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        body(arg);
        _exit(92);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    *sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

#endif /* VMPK_CHECK_H */
