/*
 * hitpath: N gate hits, vmpk_begin + vmpk_end on a resident key, for
 * callgrind (bench/hitpath.mjs runs it for two N and takes the difference).
 *
 *   bench/build/hitpath N
 *
 * Linked statically against the stub build (native/build/stub/libvmpk.a):
 * valgrind cannot execute WRPKRU, so PKRU is a thread-local variable there
 * and each RDPKRU/WRPKRU is a TLS load/store. Everything else on the path is
 * the pku backend's real code.
 *
 * Checks the counters afterwards (every gate a hit, no syscall in the loop)
 * and exits 1 if they disagree, so a count is never taken of the wrong path.
 */
#include <stdio.h>
#include <stdlib.h>

#include "vmpk.h"

#define CHECK(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) {                                                                         \
            fprintf(stderr, "hitpath: %s: %s\n", #call, vmpk_strerror(rc_));               \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    struct vmpk_options o = { .backend = VMPK_BACKEND_PKU };
    vmpk_runtime *rt;
    vmpk_key key;
    void *mem;
    struct vmpk_info info;
    struct vmpk_stats a, b;

    CHECK(vmpk_open(&o, &rt));
    CHECK(vmpk_info(rt, &info));
    CHECK(vmpk_key_create(rt, "hit", VMPK_NONE, 0, &key));
    CHECK(vmpk_alloc(rt, key, 4096, &mem));
    CHECK(vmpk_begin(rt, key, VMPK_RW)); /* the miss that makes it resident */
    CHECK(vmpk_end(rt, key));
    CHECK(vmpk_stats(rt, &a));

    for (long i = 0; i < n; i++) {
        vmpk_begin(rt, key, VMPK_RW);
        vmpk_end(rt, key);
    }

    CHECK(vmpk_stats(rt, &b));
    unsigned long long gates = b.gates - a.gates, hits = b.hits - a.hits,
                       sys = b.syscalls - a.syscalls, writes = b.pkru_writes - a.pkru_writes;
    printf("hitpath: n=%ld backend=%s stubbed=%d gates=%llu hits=%llu syscalls=%llu "
           "pkru_writes=%llu\n",
           n, info.backend == VMPK_BACKEND_PKU ? "pku" : "mprotect", info.pkru_stubbed, gates,
           hits, sys, writes);
    if (gates != (unsigned long long)n || hits != gates || sys != 0 || writes != 2 * gates) {
        fprintf(stderr, "hitpath: the loop did not take the hit path (see the counts above)\n");
        return 1;
    }
    CHECK(vmpk_close(rt));
    return 0;
}
