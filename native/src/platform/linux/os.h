/*
 * The Linux calls vmpk makes, each counted in the runtime's counters (which
 * may be NULL). Return 0 (or a pkey) on success, -errno on failure.
 *
 * Hazards: a fresh mmap over a range discards its pkey, mprotect keeps it;
 * pkey_mprotect with pkey -1 is plain mprotect; pkey_free neither resets any
 * thread's PKRU bits nor retags pages, so a freed pkey must not be reused by
 * anyone while old bits or pages may still name it.
 */
#ifndef VMPK_OS_H
#define VMPK_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The core's per-runtime counters, handed down to every counting call
 * (NULL: count nothing). The platform reads none of the core's fields: the
 * struct begins with these, which the platform counts (internal.h asserts
 * the place), so a pointer to it is a pointer to them. */
struct runtime_counters;
struct os_counters {
    _Atomic uint64_t syscalls;            /* every counted call */
    _Atomic uint64_t pkey_mprotect_calls; /* also in syscalls */
    _Atomic uint64_t mprotect_calls;      /* also in syscalls */
    _Atomic uint64_t meta_mprotect_calls; /* os_mprotect_meta, not in syscalls */
};

int os_pkey_supported(void);
/* 1 in the stub build (pkru_stub.c): PKRU is a variable, pkeys tag nothing. */
int os_pkeys_stubbed(void);
/* In a signal handler: the interrupted thread's PKRU, and a new one for it
 * to resume with. The frame's XSAVE area holds it (sigframe.h); in the stub
 * build it is the variable's value at the handler's entry, `at_entry`,
 * which the handler writes back by hand on leaving. false: no PKRU there. */
bool os_frame_pkru(void *ctx, uint32_t at_entry, uint32_t *pkru);
void os_frame_set_pkru(void *ctx, uint32_t *at_entry, uint32_t pkru);
int os_pkey_alloc(struct runtime_counters *c);
int os_pkey_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot, int pkey);
int os_mprotect(struct runtime_counters *c, void *addr, size_t len, int prot);
/* Address space only: PROT_NONE, no memory committed. */
void *os_reserve(struct runtime_counters *c, size_t len);
/* Makes reserved pages readable and writable: vmpk's own tables. */
int os_commit(struct runtime_counters *c, void *addr, size_t len);
/* The meta pkey: write-disabled for the calling thread, reads allowed. */
int os_pkey_alloc_readonly(void);
/* os_commit with the pages tagged with pkey (one syscall). */
int os_commit_pkey(struct runtime_counters *c, void *addr, size_t len, int pkey);
/* mprotect counted as meta_mprotect_calls only (not syscalls). */
int os_mprotect_meta(struct runtime_counters *c, void *addr, size_t len, int prot);
/* Marks [addr, addr + len) so that the kernel keeps it in VMAs of its
 * own, apart from unmarked neighbours (mark 1 or 2: two markings, so that
 * two marked ranges side by side stay apart too), or takes the mark off
 * (0) and lets it merge again. An mprotect of exactly such a range then
 * changes it in place instead of splitting a larger VMA and merging it
 * back. Changes no access: the marks are MADV_RANDOM and MADV_SEQUENTIAL,
 * which only steer readahead (MADV_NORMAL takes them off). */
int os_keep_apart(struct runtime_counters *c, void *addr, size_t len, int mark);
/* Drops the pages' contents; they read as zero afterwards. */
int os_discard(struct runtime_counters *c, void *addr, size_t len);
pid_t os_gettid(void);

/* For the hardened mode (harden.c). */
struct os_range {
    uintptr_t lo, hi;
};
/* From now on os_reserve places every reservation inside one band of address
 * space, picked at random once (see os_linux.c), and nowhere else. 0, or
 * -ENOMEM when every band is guarded already (by hardened ancestors). */
int os_reserve_in_band(void);
/* The band ({0, 0} before os_reserve_in_band) and the live reservations
 * outside it: writes at most max of them, returns how many there are. */
int os_reservations(struct os_range *band, struct os_range *out, int max);
int os_pkey_free(int pkey);
/* Anonymous read-write pages over [addr, addr + len) (MAP_FIXED). */
int os_map_fixed(void *addr, size_t len);
/* munmap, unrecorded: for pages that are not a reservation of their own. */
int os_unmap(void *addr, size_t len);
/* fork() as a raw clone: the child runs no atfork handlers. */
pid_t os_fork(void);
size_t os_page_size(void);

#endif /* VMPK_OS_H */
