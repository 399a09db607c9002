/* See tasks.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tasks.h"

int tasks_list(pid_t **tids, size_t *cap)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    pid_t self = (pid_t)syscall(SYS_gettid);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0 || tid == self)
            continue;
        if ((size_t)n == *cap) {
            size_t more = *cap ? *cap * 2 : 64;
            pid_t *grown = realloc(*tids, more * sizeof *grown);
            if (!grown) {
                closedir(d);
                return -ENOMEM;
            }
            *tids = grown;
            *cap = more;
        }
        (*tids)[n++] = tid;
    }
    closedir(d);
    return n;
}

int tasks_signal(pid_t tid, int sig)
{
    return syscall(SYS_tgkill, getpid(), tid, sig) ? -errno : 0;
}

bool tasks_blocking(pid_t tid, int sig)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    bool blocked = false;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "SigBlk:", 7) == 0) {
            unsigned long long mask = strtoull(line + 7, NULL, 16);
            blocked = (mask >> (sig - 1)) & 1;
            break;
        }
    }
    if (f)
        fclose(f);
    return blocked;
}

/* glibc keeps the number of live threads in __nptl_nthreads, a private
 * symbol: read it where it exists, so a gate can tell cheaply that it may
 * have been copied into a new thread. */
const volatile unsigned *tasks_nthreads;
static unsigned fallback;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void find_nthreads(void)
{
    tasks_nthreads = dlvsym(RTLD_DEFAULT, "__nptl_nthreads", "GLIBC_PRIVATE");
}

void tasks_init(void)
{
    pthread_once(&once, find_nthreads);
}

unsigned tasks_births_slow(void)
{
    return tasks_nthreads ? *tasks_nthreads
                          : __atomic_add_fetch(&fallback, 1, __ATOMIC_RELAXED);
}
