/*
 * alloc/free on keys with many regions (the region list in the metadata):
 *
 *   cc -O2 -Inative/include bench/multiregion.c native/build/release/libvmpk.a \
 *      -pthread -o /tmp/multiregion && /tmp/multiregion [regions] [rounds]
 *
 * Per round: a fresh key with a window of `regions` pages, `regions`
 * one-page allocs (each lands at the end: first fit walks the whole list),
 * then frees from the front (each moves the rest of the list). Prints the
 * median over rounds of ns per alloc and per free, and the system calls
 * during the allocs (stats().syscalls: the region table's commits).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vmpk.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    int rounds = argc > 2 ? atoi(argv[2]) : 21;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    vmpk_runtime *rt;
    if (vmpk_open(NULL, &rt))
        return 1;
    void **r = calloc(n, sizeof *r);
    double *a = calloc((size_t)rounds, sizeof *a), *f = calloc((size_t)rounds, sizeof *f);
    double sys = 0;
    for (int k = 0; k < rounds; k++) {
        vmpk_key key;
        if (vmpk_key_create(rt, NULL, VMPK_NONE, (n * ps + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1), &key) ||
            vmpk_alloc(rt, key, ps, &r[0]))
            return 2;
        struct vmpk_stats s0, s1;
        vmpk_stats(rt, &s0);
        double t0 = now();
        for (size_t i = 1; i < n; i++)
            if (vmpk_alloc(rt, key, ps, &r[i]))
                return 3;
        double t1 = now();
        vmpk_stats(rt, &s1);
        for (size_t i = 0; i < n; i++)
            if (vmpk_free(rt, key, r[i]))
                return 4;
        double t2 = now();
        a[k] = (t1 - t0) / (double)(n - 1);
        f[k] = (t2 - t1) / (double)n;
        sys = (double)(s1.syscalls - s0.syscalls);
        vmpk_key_destroy(rt, key);
    }
    qsort(a, (size_t)rounds, sizeof *a, cmp);
    qsort(f, (size_t)rounds, sizeof *f, cmp);
    printf("regions %zu: alloc %.0f ns, free %.0f ns (medians of %d), system calls during the allocs %.0f\n",
           n, a[rounds / 2], f[rounds / 2], rounds, sys);
    vmpk_close(rt);
    return 0;
}
