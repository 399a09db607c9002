/*
 * vmpk: virtualized memory protection keys.
 *
 * x86 has 16 protection keys (pkeys); key 0 is everyone's default, so a process
 * can allocate at most 15, fewer when others (V8 in Node 20) hold some. vmpk
 * offers an unlimited number of *virtual keys* instead and keeps the most
 * recently used ones resident on the hardware keys it owns, as a cache.
 *
 *   vmpk_key_create()  a new virtual key (vkey) with a process-wide access
 *   vmpk_alloc()       page-granular memory owned by a vkey
 *   vmpk_begin/end()   a gate: access for the calling thread only
 *   vmpk_protect()     the process-wide access, like mprotect(2)
 *
 * Every page of a vkey is reachable by thread T only while T is inside a gate
 * on that vkey that grants the access, or the vkey's process-wide access
 * grants it (on the mprotect backend, read "process" for "thread").
 * Everything else faults (SIGSEGV), and vmpk's handler prints one line
 * naming the vkey, the region, the offset and why, before the process dies
 * as it would have without vmpk.
 *
 * Backends:
 *   pku       hardware keys; a gate changes only the calling thread's PKRU
 *             (no syscall on a cache hit). Needs CPU PKU and OS support.
 *   mprotect  fallback on any Linux: same calls, but a gate changes the page
 *             protection, so it is process-wide while open.
 *
 * vmpk's own tables (keys, bindings, permissions, gate records) live in
 * pages tagged with a pkey vmpk keeps for itself, write-disabled in every
 * thread outside vmpk's calls (read-only pages where PKU is missing): a
 * write to them from outside faults and is reported. Every WRPKRU vmpk runs
 * is checked against a value kept in those pages, so a jump to it with
 * another value aborts. docs/security.md says what this stops and what not.
 *
 * Errors: every call that can fail returns 0 or a negative vmpk_error; output
 * parameters are written only on success, and a failed call changes nothing.
 * All calls are thread-safe. Gates belong to the thread that opened them.
 */
#ifndef VMPK_H
#define VMPK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMPK_API __attribute__((visibility("default")))

/* A virtual key handle: nonzero, below 2^53 (so JavaScript numbers hold it
 * exactly), carrying a generation: a destroyed handle stays invalid for good
 * and is never mistaken for a newer key. */
typedef uint64_t vmpk_key;

typedef struct vmpk_runtime vmpk_runtime;

/* Access rights. Write implies read, as with PKRU and page protection. */
enum vmpk_access {
    VMPK_NONE = 0,
    VMPK_READ = 1,
    VMPK_RW   = 3,
};

/* ORed into vmpk_key_create's access: an executable key, for JIT code
 * caches. Its pages execute for every thread at all times and are written
 * only inside a VMPK_RW gate (an "emit gate"). Its process-wide access is
 * VMPK_READ, always: x86 pages that execute are readable at page level (the
 * kernel's execute-only key aside), so vmpk_key_create wants exactly
 * VMPK_READ | VMPK_KEY_EXEC, and vmpk_protect accepts VMPK_READ only.
 *   pku       the pages are RWX at page level while resident (instruction
 *             fetch ignores PKRU, so only the PKRU write-disable bit stands
 *             between a thread and a write: an RW gate on the writing
 *             thread lifts it, for that thread alone), R+X while not.
 *   mprotect  W^X, process-wide: R+X while no RW gate is open on any
 *             thread, R+W while one is. Another thread that runs the key's
 *             code during an emit faults; vmpk's handler retries the fetch,
 *             so a short emit is waited out in faults, and after 10,000
 *             faults in a row at one address it reports and dies. */
#define VMPK_KEY_EXEC 0x100

enum vmpk_backend {
    VMPK_BACKEND_AUTO     = 0, /* pku where available, else mprotect */
    VMPK_BACKEND_PKU      = 1, /* fails with VMPK_E_UNSUPPORTED where unavailable */
    VMPK_BACKEND_MPROTECT = 2,
};

enum vmpk_error {
    VMPK_OK             = 0,
    VMPK_E_INVALID      = -1,  /* bad argument: access, size, name, options */
    VMPK_E_STALE        = -2,  /* handle destroyed, never valid, or another runtime's */
    VMPK_E_NOMEM        = -3,  /* out of memory or address space */
    VMPK_E_UNSUPPORTED  = -4,  /* the requested backend is not available here */
    VMPK_E_KEYS_PINNED  = -5,  /* every hardware key is pinned by an open gate */
    VMPK_E_BUSY         = -6,  /* the key (or runtime) has gates open */
    VMPK_E_GATE_ORDER   = -7,  /* end() does not match this thread's innermost gate */
    VMPK_E_WINDOW_FULL  = -8,  /* the key's address window has no room left */
    VMPK_E_NOT_REGION   = -9,  /* not the start of a live region of this key */
    VMPK_E_GATE_DEPTH   = -10, /* gates nested deeper than VMPK_MAX_GATE_DEPTH */
    VMPK_E_NO_HW_KEYS   = -11, /* the pku backend could not get a single hardware key */
    VMPK_E_SYSTEM       = -12, /* an unexpected OS failure; vmpk_last_errno() says which */
    VMPK_E_TOO_MANY     = -13, /* too many live vkeys or runtimes (see limits below),
                                  or of gates open on one key at once (mprotect:
                                  65,535 read, 32,767 read-write, all threads) */
    VMPK_E_FILTERED     = -14, /* harden: a seccomp filter already in place stops a
                                  system call vmpk needs (vmpk_harden_info says which) */
};

#define VMPK_MAX_GATE_DEPTH 32       /* nested gates per thread */
#define VMPK_MAX_RUNTIMES   8        /* runtimes open at once in a process */
#define VMPK_MAX_NAME       63       /* bytes of a key's name kept for reports */
#define VMPK_MAX_WINDOW_SIZE ((size_t)1 << 42) /* a key's window: the whole arena at most */
#define VMPK_MAX_KEYS       16777214 /* live vkeys in one runtime */

struct vmpk_options {
    int backend;             /* enum vmpk_backend; VMPK_BACKEND_AUTO if 0, which
                                follows the environment variable VMPK_BACKEND
                                ("pku", "mprotect" or "auto") where it is set */
    int max_hw_keys;         /* pku: hardware keys to use at most; 0 = all it can get */
    size_t window_size;      /* default address window per key, bytes, rounded
                                up to 1 MiB; 0 = 1 MiB */
    int harden;              /* 1: hardened mode, see vmpk_harden_info below */
};

struct vmpk_info {
    int backend;             /* VMPK_BACKEND_PKU or VMPK_BACKEND_MPROTECT */
    int thread_local;        /* 1 when gates affect only the calling thread */
    int hw_keys_budget;      /* pku: hardware keys it may hold for vkeys; 0 on
                                mprotect. vmpk keeps one more for its own
                                metadata, so at most 14. */
    size_t page_size;
    size_t window_size;      /* default window of a new key */
    int pkru_stubbed;        /* 1 in a build whose PKRU is a variable: it
                                counts the pku backend's work, protects nothing */
};

struct vmpk_stats {
    uint64_t gates;          /* vmpk_begin calls that succeeded */
    uint64_t hits;           /* gates that needed no syscall */
    uint64_t misses;         /* gates that had to bind a hardware key (pku) or mprotect */
    uint64_t evictions;      /* vkeys unbound from a hardware key to make room */
    uint64_t pkey_mprotect_calls; /* retagging syscalls (pku backend) */
    uint64_t mprotect_calls; /* page-protection syscalls (mprotect backend, protect) */
    uint64_t syscalls;       /* every syscall vmpk made on this runtime's behalf */
    uint64_t pkru_writes;    /* WRPKRU instructions executed by vmpk */
    uint64_t faults_repaired; /* lazy grants: a thread's PKRU caught up in its fault */
    uint64_t shootdowns;     /* cross-thread PKRU revocations (signal rounds) */
    uint64_t live_vkeys;
    uint64_t resident_vkeys; /* vkeys bound to a hardware key now */
    uint64_t hw_keys_held;
    uint64_t regions;        /* live regions */
    uint64_t mapped_bytes;   /* bytes of windows in use (pages tagged for keys) */
    uint64_t metadata_bytes; /* vmpk's own bookkeeping for keys and regions */
    uint64_t shootdown_signals; /* threads signalled by shootdowns */
    uint64_t pins;           /* pins held now (vmpk_pin) */
    /* Opening and closing vmpk's write-protected metadata (invariant 6),
     * kept apart from the counts above: */
    uint64_t meta_pkru_writes;    /* pku: WRPKRUs that only opened or closed it
                                     (pkru_writes counts those that also set
                                     a key's bits) */
    uint64_t meta_mprotect_calls; /* no PKU: mprotect calls that guard it
                                     (not in syscalls): two when the runtime
                                     opens, none after */
};

/* Hardened mode (options.harden = 1): a seccomp filter on every thread of the
 * process, installed by the first hardened open and kept for good (a filter
 * cannot be removed; children inherit it, across exec too). It denies
 * (EPERM) mprotect, pkey_mprotect, munmap, madvise, mremap and fixed mmap
 * over vmpk's memory unless vmpk itself makes the call, pkey_free outside
 * vmpk, process_vm_readv/writev and ptrace, and every system call of
 * another ABI (int 0x80, x32). It sets no_new_privs (set-user-ID programs
 * run by the process gain nothing). Before it goes on, a forked child
 * checks that the calls vmpk needs work and have their effect under the
 * filters already there: if not, the open fails with VMPK_E_FILTERED and
 * probe_failed names them. Works with either backend: on mprotect, where
 * page protection is all there is, it keeps other code from changing
 * vmpk's pages too. docs/security.md says what it stops and what not. */
enum vmpk_probe_failure {
    VMPK_PROBE_MPROTECT      = 1,
    VMPK_PROBE_MADVISE       = 2,
    VMPK_PROBE_PKEY_ALLOC    = 4,
    VMPK_PROBE_PKEY_MPROTECT = 8,
    VMPK_PROBE_MMAP          = 16,
    VMPK_PROBE_MUNMAP        = 32,
    VMPK_PROBE_SIGNALS       = 64,  /* rt_sigaction, tgkill (shootdowns) */
    VMPK_PROBE_DIED          = 128, /* the child was killed (SIGSYS, say) */
    VMPK_PROBE_FORK          = 256, /* no child could be forked */
};

struct vmpk_harden_info {
    int active;              /* 1 once vmpk's filter is on in this process */
    int seccomp_mode;        /* /proc/self/status Seccomp: now: 0 none, 2 filter */
    int seccomp_filters;     /* Seccomp_filters: now (-1: Linux before 5.9) */
    int seccomp_mode_before; /* both as the first hardened open found them */
    int seccomp_filters_before;
    int probe_failed;        /* enum vmpk_probe_failure bits of the last refusal */
};

VMPK_API int vmpk_harden_info(struct vmpk_harden_info *out);

/* Opens a runtime. opts may be NULL for defaults. Installs, once per process,
 * the SIGSEGV handler (chaining to the one in place before it), which the
 * lazy grants, vmpk_probe and the fault reports need, and the handler of the
 * shootdown signal, SIGRTMAX - 3. */
VMPK_API int vmpk_open(const struct vmpk_options *opts, vmpk_runtime **out);

/* Destroys every key and frees every region. Fails with VMPK_E_BUSY while any
 * gate is open. Hardware keys are not returned to the kernel (another thread's
 * PKRU could still open them): later runtimes of this process reuse them. */
VMPK_API int vmpk_close(vmpk_runtime *rt);

VMPK_API int vmpk_info(const vmpk_runtime *rt, struct vmpk_info *out);
VMPK_API int vmpk_stats(const vmpk_runtime *rt, struct vmpk_stats *out);

/* A new vkey with process-wide `access` (enum vmpk_access, or VMPK_READ |
 * VMPK_KEY_EXEC for an executable key, see above). `name` (may be
 * NULL, at most VMPK_MAX_NAME bytes) appears in fault reports. window_size is
 * the address space its regions share, rounded up to 1 MiB; 0 means the
 * runtime's default. Keeping one window per key is what
 * makes an eviction cost two syscalls whatever the number of regions. */
VMPK_API int vmpk_key_create(vmpk_runtime *rt, const char *name, int access,
                             size_t window_size, vmpk_key *out);

/* n vkeys at once, each made as vmpk_key_create(rt, NULL, access,
 * window_size) makes one and, when region_size > 0, given one region of
 * region_size bytes as vmpk_alloc gives it. Writes the handles to
 * keys[0..n) and, when region_size > 0, the regions' addresses to
 * regions[0..n) (regions may be NULL otherwise). All or nothing: on failure
 * no key of the batch is left, and the arrays are zeroed if the call had
 * begun filling them. VMPK_E_WINDOW_FULL, creating nothing, when region_size
 * exceeds the window; VMPK_E_TOO_MANY when n exceeds the vkey table. The
 * keys are unnamed: names cost metadata, and a batch is for many keys. */
VMPK_API int vmpk_keys_create(vmpk_runtime *rt, size_t n, int access, size_t window_size,
                              size_t region_size, vmpk_key *keys, void **regions);

/* Destroys a vkey: its pages become inaccessible to every thread and their
 * contents are discarded. Fails with VMPK_E_BUSY while a gate on it is open. */
VMPK_API int vmpk_key_destroy(vmpk_runtime *rt, vmpk_key key);

/* Allocates `size` bytes (rounded up to pages), zeroed, in the key's window.
 * The region is accessible exactly as the key's other pages are. */
VMPK_API int vmpk_alloc(vmpk_runtime *rt, vmpk_key key, size_t size, void **out);

/* Frees a region returned by vmpk_alloc for this key. Its pages are zeroed and
 * stay in the key's domain for reuse by the key's later allocations. */
VMPK_API int vmpk_free(vmpk_runtime *rt, vmpk_key key, void *region);

/* Opens a gate: the calling thread gets `access` to the key's pages (on top
 * of the process-wide access) until the matching vmpk_end(). Gates nest; an
 * inner gate may grant less than an outer one, and its end restores the
 * outer state. On the pku backend a resident key makes no syscall and writes
 * PKRU once; the key stays pinned to its hardware key while the gate is open.
 * On mprotect, gates are process-wide: the pages give the union of every
 * open gate, so an inner gate cannot narrow an outer one there. 
 * VMPK_E_KEYS_PINNED when every hardware key is pinned. */
VMPK_API int vmpk_begin(vmpk_runtime *rt, vmpk_key key, int access);

/* Closes the calling thread's innermost gate, which must be on `key`. */
VMPK_API int vmpk_end(vmpk_runtime *rt, vmpk_key key);

/* vmpk_begin and vmpk_end for callers that hold only the handle, which names
 * its runtime: one argument less for FFI callers to pass on every gate. A
 * handle whose runtime is closed gives VMPK_E_STALE. */
VMPK_API int vmpk_enter(vmpk_key key, int access);
VMPK_API int vmpk_leave(vmpk_key key);

/* Gate indexes: a key as 32 bits, for FFI callers whose cost per call grows
 * with the width of the arguments (koffi). The index packs the handle's
 * runtime id (3 bits), slot + 1 (20 bits) and generation (9 bits), exactly,
 * not its low bits: it names what the handle names, and the calls below
 * decode it back into the handle and check it as vmpk_enter/vmpk_leave do.
 * So a stale or forged index opens a key only where the same stale or
 * forged handle would. vmpk_gate_index gives 0 (no index; keep using the
 * handle) for a key whose slot is past 2^20 - 2 or whose generation is past
 * 511; entering index 0 gives VMPK_E_INVALID. The access is the function's:
 * vmpk_enter_r is vmpk_enter(key, VMPK_READ), vmpk_enter_rw with VMPK_RW. */
VMPK_API uint32_t vmpk_gate_index(vmpk_key key);
VMPK_API int vmpk_enter_r(uint32_t index);
VMPK_API int vmpk_enter_rw(uint32_t index);
VMPK_API int vmpk_leave_index(uint32_t index);

/* The index calls once more, with no argument and no result: the calling
 * thread's mailbox, two int32_t in its thread-local storage, carries both.
 * The call reads the index from word 0 (once) and writes its result, 0 or
 * a vmpk_error, to word 1. For FFI callers whose cost per call grows with
 * each argument and result converted (koffi: two void(void) calls cost
 * about half of two int(uint32_t) ones, docs/benchmarks.md section 1)
 * while a store to memory costs them next to nothing. The mailbox is
 * ordinary memory, anyone's to write: its index is untrusted input, checked
 * as an argument would be. vmpk_gate_mailbox gives the calling thread's;
 * it lives as long as the thread. */
VMPK_API int32_t *vmpk_gate_mailbox(void);
VMPK_API void vmpk_mailbox_enter_r(void);
VMPK_API void vmpk_mailbox_enter_rw(void);
VMPK_API void vmpk_mailbox_leave(void);

/* Sets the key's process-wide access, like mprotect(2) on all its pages.
 * When it returns, a narrowing holds in every thread of the process,
 * including threads that never called vmpk (on pku: the key leaves its
 * hardware key, or, while a gate pins it, every other thread's PKRU is
 * corrected by a signal, a "shootdown"). A widening reaches other threads
 * lazily: their first access faults, the fault handler sees that the new
 * access allows it, updates that thread's PKRU and retries the access.
 * An executable key accepts VMPK_READ only (VMPK_E_INVALID otherwise). */
VMPK_API int vmpk_protect(vmpk_runtime *rt, vmpk_key key, int access);

/* Pins the key resident without opening it, for gates that span awaits: the
 * asynchronous gate pins once and opens and closes a synchronous gate around
 * each of its steps, all hits. A pin is no thread's: any thread may unpin.
 * VMPK_E_KEYS_PINNED when every hardware key is pinned; destroy fails with
 * VMPK_E_BUSY while pinned. On mprotect it only counts. */
VMPK_API int vmpk_pin(vmpk_runtime *rt, vmpk_key key);
VMPK_API int vmpk_unpin(vmpk_runtime *rt, vmpk_key key);

/* 1 if the calling thread may access `addr` with `access` right now, 0 if
 * not. Tries the access for real (a read, or an atomic write of the value
 * already there) and catches the fault, so it tells the truth for any
 * address, vmpk's or not. */
VMPK_API int vmpk_probe(const void *addr, int access);

/* Looks up the vkey and region holding addr (0 if none). */
VMPK_API int vmpk_lookup(const vmpk_runtime *rt, const void *addr, vmpk_key *key,
                         void **region, size_t *region_size);

VMPK_API const char *vmpk_strerror(int err);

/* errno of the calling thread's last VMPK_E_SYSTEM. */
VMPK_API int vmpk_last_errno(void);

/* 1 if this CPU and kernel support protection keys (CPUID OSPKE and a working
 * pkey_alloc), else 0. Never executes a PKRU instruction where unsupported. */
VMPK_API int vmpk_pku_supported(void);

/* vmpk_probe for an address that stands for a region of `key` (a kept
 * region after the key's destroy, say): 0 once the key is destroyed or its
 * runtime closed, whatever later key holds the window then; otherwise as
 * vmpk_probe(addr, access). VMPK_E_NOT_REGION when addr lies outside the
 * key's window, VMPK_E_INVALID for a malformed handle or a bad access.
 * Holds the key's runtime's lock while it probes, so the key cannot be
 * destroyed in between. (vmpk_lookup checks a region's start and size
 * against the core: what adopting a handle needs.) */
VMPK_API int vmpk_probe_key(vmpk_key key, const void *addr, int access);

/* Counts a view of vmpk memory (a JS ArrayBuffer over a region): delta 1
 * when it is made, -1 when it is detached or collected. A destroyed key's
 * window is handed to no later key while any view of it is counted (the
 * quarantine): a kept view keeps faulting instead of reaching the next
 * key's secrets. addr is any byte of the viewed region. Returns 0;
 * VMPK_E_STALE for a hold on a destroyed key's window; VMPK_E_NOT_REGION
 * when addr is in no window; VMPK_E_INVALID for a release without a hold
 * or a bad delta. delta 0 returns the number of quarantined windows. */
VMPK_API int vmpk_view_hold(const void *addr, int delta);

#ifdef __cplusplus
}
#endif
#endif /* VMPK_H */
