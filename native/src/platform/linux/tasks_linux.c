/* See tasks.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tasks.h"

/* Everything here runs inside a shootdown, with vmpk's metadata open: no
 * malloc, no stdio, no locale. A heap or a FILE whose state a stray write
 * forged (this thread's tcache pointer, say) would make them write into
 * metadata while it is writable (attack shootdown-heap). So: raw
 * getdents64 and read into stack buffers, and a caller's fixed array. */

static long parse_dec(const char *s)
{
    long n = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > 1 << 28)
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n;
}

int tasks_list(pid_t *tids, size_t cap)
{
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    pid_t self = (pid_t)syscall(SYS_gettid);
    int n = 0;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            off += e->d_reclen;
            long tid = parse_dec(e->d_name);
            if (tid <= 0 || tid == self)
                continue;
            if ((size_t)n == cap) {
                close(fd);
                return -ENOMEM;
            }
            tids[n++] = (pid_t)tid;
        }
    }
    close(fd);
    return n;
}

int tasks_signal(pid_t tid, int sig)
{
    return syscall(SYS_tgkill, getpid(), tid, sig) ? -errno : 0;
}

bool tasks_blocking(pid_t tid, int sig)
{
    char path[64] = "/proc/self/task/", digits[16];
    size_t len = strlen(path);
    int nd = 0;
    for (unsigned v = (unsigned)tid; nd == 0 || v; v /= 10)
        digits[nd++] = (char)('0' + v % 10);
    while (nd)
        path[len++] = digits[--nd];
    memcpy(path + len, "/status", sizeof "/status");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* The whole file (under 2 KiB): SigBlk is in its second half. */
    char text[8192];
    size_t have = 0;
    for (;;) {
        ssize_t got = read(fd, text + have, sizeof text - 1 - have);
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    close(fd);
    text[have] = '\0';
    const char *line = strstr(text, "\nSigBlk:");
    if (!line)
        return false;
    unsigned long long mask = 0;
    for (const char *c = line + 8; *c && *c != '\n'; c++) {
        int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;
        if (d >= 0)
            mask = mask << 4 | (unsigned)d;
    }
    return (mask >> (sig - 1)) & 1;
}

/* glibc keeps the number of live threads in __nptl_nthreads, a private
 * symbol: read it where it exists, so a gate can tell cheaply that it may
 * have been copied into a new thread. It counts the living, not births (see
 * births.h). */
static const volatile unsigned *live;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void find_nthreads(void)
{
    live = dlvsym(RTLD_DEFAULT, "__nptl_nthreads", "GLIBC_PRIVATE");
}

const volatile unsigned *tasks_live_count(void)
{
    pthread_once(&once, find_nthreads);
    return live;
}
