/* Linux system calls, counted. See os.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu.h"
#include "os.h"
#include "os_raw.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* RAW, count() and result(): os_raw.h. */


int os_mprotect_meta(struct runtime_counters *c, void *addr, size_t len, int prot)
{
    /* Counted while writable: after the call when it opens, before when
     * it closes. */
    if (!(prot & PROT_WRITE))
        count_meta(c);
    int r = result(RAW(SYS_mprotect, addr, len, prot, 0, 0, 0));
    if ((prot & PROT_WRITE) && r == 0)
        count_meta(c);
    return r;
}

int os_pkey_free(int pkey)
{
    return result(RAW(SYS_pkey_free, pkey, 0, 0, 0, 0, 0));
}

int os_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot)
{
    count(c, OS_MPROTECT);
    return result(RAW(SYS_mprotect, addr, len, prot, 0, 0, 0));
}

/* --- reservations ---------------------------------------------------------
 * Every reservation is recorded, so the hardened mode can guard them. Once
 * os_reserve_in_band() is called they are all placed inside one band of
 * address space that nothing else uses in practice: above the 64 TiB where
 * V8 puts its randomly hinted reservations, below 85.3 TiB where the kernel
 * loads PIE executables (2/3 of 128 TiB, plus up to 16 TiB of randomization
 * above it), and far below the area near the top where mmap(NULL) goes.
 * The seccomp filter outlives exec, so a child program inherits it with its
 * ranges: inside a band, they do not hit the child's own mappings.
 */
#define TIB ((uintptr_t)1 << 40)
#define GIB ((uintptr_t)1 << 30)
#define BANDS_LOW (64 * TIB)
#define BAND_SPAN (4 * TIB + 64 * GIB) /* the 4 TiB arena, its tables, the vkey tables */
#define NBANDS 5                       /* up to 84.3 TiB */
#define MAX_RESERVATIONS 64

static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;
static struct os_range reservations[MAX_RESERVATIONS];
static int nreservations;
static struct os_range band;          /* {0, 0} until placed */
static uintptr_t band_next;

static uintptr_t random_word(void)
{
    uintptr_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uintptr_t)cpu_ticks();
    return r;
}

/* A band that a filter inherited from a hardened parent guards would refuse
 * vmpk's calls here (the parent trusted its own copy of vmpk, at another
 * address). Asked with an advice no kernel knows: the filter answers EPERM
 * before the kernel answers EINVAL, and nothing is touched either way. */
/* Nothing is mapped in [lo, hi) now (/proc/self/maps). */
static bool band_empty(uintptr_t lo, uintptr_t hi)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* no /proc: MAP_FIXED_NOREPLACE still keeps off others */
    char buf[4096];
    size_t have = 0;
    bool empty = true, at_line = true;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        char *p = buf, *nl;
        while ((nl = strchr(p, '\n'))) {
            if (at_line) {
                char *end;
                uintptr_t a = strtoul(p, &end, 16), b = *end == '-' ? strtoul(end + 1, NULL, 16) : 0;
                if (a < hi && b > lo)
                    empty = false;
            }
            at_line = true;
            p = nl + 1;
        }
        have = strlen(p);
        memmove(buf, p, have);
        if (have == sizeof buf - 1) /* a line longer than the buffer: skip its rest */
            have = 0, at_line = false;
    }
    close(fd);
    return empty;
}

static bool band_guarded(uintptr_t lo)
{
    return RAW(SYS_madvise, lo, BAND_SPAN, 0x7fffffff, 0, 0, 0) == -EPERM &&
           /* unless every madvise fails so (the hardened probe reports that) */
           RAW(SYS_madvise, 0, 4096, 0x7fffffff, 0, 0, 0) != -EPERM;
}

int os_reserve_in_band(void)
{
    int err = 0;
    pthread_mutex_lock(&reserve_lock);
    if (!band.lo) {
        uintptr_t r = random_word();
        err = -ENOMEM;
        for (unsigned i = 0; i < NBANDS; i++) {
            uintptr_t lo = BANDS_LOW + (uintptr_t)((r + i) % NBANDS) * BAND_SPAN;
            if (band_guarded(lo) || !band_empty(lo, lo + BAND_SPAN))
                continue;
            band = (struct os_range){ lo, lo + BAND_SPAN };
            /* Some of the slack, at random, to the page. */
            band_next = lo + ((r >> 8) % (32 * GIB / 4096)) * 4096;
            err = 0;
            break;
        }
    }
    pthread_mutex_unlock(&reserve_lock);
    return err;
}

int os_reservations(struct os_range *band_out, struct os_range *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&reserve_lock);
    *band_out = band;
    for (int i = 0; i < nreservations; i++) {
        bool inside = band.lo && reservations[i].lo >= band.lo && reservations[i].hi <= band.hi;
        if (!inside && n < max)
            out[n] = reservations[i];
        n += !inside;
    }
    pthread_mutex_unlock(&reserve_lock);
    return n;
}

static long map_none(uintptr_t at, size_t len, int flags)
{
    return RAW(SYS_mmap, at, len, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | flags, -1, 0);
}

/* In the band, at the next free place: 1 GiB steps past anything there. */
static uintptr_t reserve_in_band(size_t len)
{
    for (uintptr_t at = band_next; at + len <= band.hi; at += GIB) {
        long p = map_none(at, len, MAP_FIXED_NOREPLACE);
        if ((uintptr_t)p == at) {
            band_next = (at + len + GIB - 1) & ~(GIB - 1);
            return at;
        }
        if (p >= 0) { /* a kernel before 4.17 took it as a hint */
            RAW(SYS_munmap, p, len, 0, 0, 0, 0);
            return 0;
        }
        if (p != -EEXIST && p != -EPERM) /* EPERM: a parent's filter, as above */
            return 0;
    }
    return 0;
}

void *os_reserve(struct runtime_counters *c, size_t len)
{
    count(c, OS_CALL);
    len = (len + os_page_size() - 1) & ~(os_page_size() - 1);
    pthread_mutex_lock(&reserve_lock);
    uintptr_t p = 0;
    if (band.lo) {
        p = reserve_in_band(len); /* hardened: nowhere else, or it is unguarded */
    } else {
        long r = map_none(0, len, 0);
        p = r < 0 && r > -4096 ? 0 : (uintptr_t)r;
    }
    if (p && nreservations < MAX_RESERVATIONS)
        reservations[nreservations++] = (struct os_range){ p, p + len };
    pthread_mutex_unlock(&reserve_lock);
    return (void *)p;
}

int os_commit(struct runtime_counters *c, void *addr, size_t len)
{
    count(c, OS_CALL);
    return result(RAW(SYS_mprotect, addr, len, PROT_READ | PROT_WRITE, 0, 0, 0));
}

int os_keep_apart(struct runtime_counters *c, void *addr, size_t len, int mark)
{
    static const int advice[] = { MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL };
    count(c, OS_CALL);
    return result(RAW(SYS_madvise, addr, len, advice[mark], 0, 0, 0));
}

int os_discard(struct runtime_counters *c, void *addr, size_t len)
{
    count(c, OS_CALL);
    return result(RAW(SYS_madvise, addr, len, MADV_DONTNEED, 0, 0, 0));
}

int os_map_fixed(void *addr, size_t len)
{
    long p = RAW(SYS_mmap, addr, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return p < 0 && p > -4096 ? (int)p : (void *)p == addr ? 0 : -EFAULT;
}

int os_unmap(void *addr, size_t len)
{
    return result(RAW(SYS_munmap, addr, len, 0, 0, 0, 0));
}

pid_t os_fork(void)
{
    return (pid_t)RAW(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
}

pid_t os_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

size_t os_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}
