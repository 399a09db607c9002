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

#include <stddef.h>
#include <sys/types.h>

struct runtime_counters;

int os_pkey_supported(void);
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
int os_release(struct runtime_counters *c, void *addr, size_t len);
/* Drops the pages' contents; they read as zero afterwards. */
int os_discard(struct runtime_counters *c, void *addr, size_t len);
pid_t os_gettid(void);
size_t os_page_size(void);

#endif /* VMPK_OS_H */
