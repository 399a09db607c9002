/*
 * The SIGSEGV handler. In order:
 *   1. a fault on an access that the vkey's perm (or this thread's gates)
 *      allows: a lazy grant, where the thread's PKRU in the signal frame
 *      catches up and the access is retried (this is how other threads learn
 *      of vmpk_protect), or a race with a change of the vkey's binding or
 *      page protection, where the access is simply retried.
 *   2. a fault of vmpk_probe: resume with "denied".
 *   3. any other fault in vmpk's arena: a real violation. Print one line
 *      naming the vkey, the region, the offset and why, then die by SIGSEGV
 *      as the process would have without vmpk.
 *   4. anything else belongs to whoever handled SIGSEGV before (Node's
 *      WebAssembly trap handler, say): chain to it.
 * Before all that, faults on vmpk's metadata (meta.h): a read where the
 * thread's PKRU has the meta pkey access-disabled (it existed before the
 * pkey did) is granted, as reads are for everyone; a write from outside
 * vmpk's entry points is reported and ends the process like a violation.
 * The handler opens meta for itself first: it starts with the init PKRU.
 * Everything here is async-signal-safe: no locks, no allocation, no stdio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "backend.h"
#include "enter.h"
#include "internal.h"
#include "os.h"
#include "pkru.h"
#include "probe.h"
#include "shootdown.h"
#include "births.h"
#include "tasks.h"
#include "sigframe.h"

#ifndef SEGV_PKUERR
#define SEGV_PKUERR 4
#endif

static struct sigaction previous;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed;

/* --- a line of output without stdio ------------------------------------ */

struct line {
    char buf[512];
    size_t len;
};

static void put(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = *s++;
}

static void put_num(struct line *l, uint64_t n, unsigned base)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[n % base];
        n /= base;
    } while (n);
    if (base == 16)
        put(l, "0x");
    while (i && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = tmp[--i];
}

/* A key's name: the pointer comes from the slot (write-protected), the
 * bytes from malloc (not). Its buffer is VMPK_MAX_NAME + 1 bytes, read
 * whole and once (a racing writer gets no second look), and the name is
 * checked again as at creation: if it changed since (a stray write), every
 * byte is printed as a \xNN escape, so none reaches the report raw. */
static void put_name(struct line *l, const char *name)
{
    char copy[VMPK_MAX_NAME + 1];
    memcpy(copy, name, sizeof copy);
    size_t len = strnlen(copy, VMPK_MAX_NAME);
    bool valid = vmpk__name_valid(copy, len) && !memchr(copy, '"', len) &&
                 !memchr(copy, '\\', len);
    for (size_t i = 0; i < len && l->len < sizeof l->buf - 5; i++) {
        uint8_t c = (uint8_t)copy[i];
        if (valid) {
            l->buf[l->len++] = (char)c;
        } else {
            l->buf[l->len++] = '\\';
            l->buf[l->len++] = 'x';
            l->buf[l->len++] = "0123456789abcdef"[c >> 4];
            l->buf[l->len++] = "0123456789abcdef"[c & 15];
        }
    }
}

/* --- classification ----------------------------------------------------- */

struct fault {
    uintptr_t addr;
    bool write;
    bool fetch;              /* an instruction fetch (running code there) */
    struct vmpk_runtime *rt; /* NULL: the runtime was closed */
    uint32_t owner;
    uint32_t slot;
    const struct vkey *v;
};

/* Retries in a row at one address that the state allowed: a state change
 * in flight settles within a few; more means something is wrong. */
#define MAX_RETRIES 10000
static __thread uintptr_t retry_addr __attribute__((tls_model("initial-exec")));
static __thread unsigned retries __attribute__((tls_model("initial-exec")));

/* A fault on an access that the vkey's state allows this thread (its gates
 * plus the perm): either this thread's PKRU has not caught up with the perm
 * yet (a lazy grant: write the frame's bits), or the fault raced with a
 * change of the vkey's binding or page protection (retry the access). */
static bool allowed_now(const struct fault *f, const siginfo_t *si, ucontext_t *uc)
{
    if (!f->rt || (f->owner & OWNER_FREED))
        return false;
    uint32_t page = (uint32_t)((f->addr - (uintptr_t)window_base(f->v)) / f->rt->page);
    if (!vmpk__region_containing(f->v, page))
        return false;
    /* Code runs only from exec keys; theirs faults only while an emit on
     * the mprotect backend holds them writable: retried, so waited out. */
    if (f->fetch && !f->v->exec)
        return false;
    struct vmpk_thread *t = vmpk__self;
    int gate = t ? vmpk__thread_gate_access(t, f->rt, f->slot) : VMPK_NONE;
    int allowed = access_union(gate, atomic_load(&f->v->access));
    int need = f->write ? VMPK_RW : VMPK_READ;
    if ((allowed & need) != need)
        return false;
    if (f->addr != retry_addr)
        retry_addr = f->addr, retries = 0;
    if (++retries > MAX_RETRIES)
        return false;
    uint32_t pkru;
    if (si->si_code == SEGV_PKUERR && be_serves(f->rt, f->slot, (int)si->si_pkey) &&
        sigframe_pkru(uc, &pkru)) {
        uint32_t bits = pkru_bits_for(allowed);
        uint32_t want = pkru_with(pkru, (int)si->si_pkey, bits);
        if (want != pkru && sigframe_set_pkru(uc, want)) {
            struct vmpk_thread *me = meta_self_checked();
            if (me && (pkru & vmpk__meta.m_bits) == vmpk__meta.m_wd)
                me->pkru_expect = pkru_with(me->pkru_expect, (int)si->si_pkey, bits);
            else if (me)
                atomic_store(&me->resync, true);
            atomic_fetch_add(&f->rt->c.faults_repaired, 1);
            return true;
        }
    }
    return true; /* the binding or the protection is changing: try again */
}

static const char *reason(const struct fault *f, const struct range **region)
{
    *region = NULL;
    if (!f->rt)
        return "the key's runtime was closed";
    if (f->owner & OWNER_FREED)
        return "the key was destroyed";
    uint32_t page = (uint32_t)((f->addr - (uintptr_t)window_base(f->v)) / f->rt->page);
    *region = vmpk__region_containing(f->v, page);
    if (!*region)
        return "the address is not inside a live region of the key (freed, or past its end)";
    if (f->fetch && !f->v->exec)
        return "instruction fetch from a key that is not executable (made without VMPK_KEY_EXEC)";
    if (f->fetch && be_write_held(f->rt, f->slot))
        return "instruction fetch while an RW gate (an emit) holds the executable key's pages "
               "writable, not executable (W^X, mprotect backend)";
    struct vmpk_thread *t = vmpk__self;
    int gate = t ? vmpk__thread_gate_access(t, f->rt, f->slot) : VMPK_NONE;
    int perm = atomic_load(&f->v->access);
    if (f->write && gate == VMPK_READ)
        return "the gate open on this thread grants read only";
    if (gate == VMPK_NONE && perm == VMPK_NONE)
        return "no gate is open on this thread and the key's process-wide access is none";
    if (f->write && gate == VMPK_NONE && perm == VMPK_READ)
        return "no write gate is open on this thread and the key's process-wide access is "
               "read-only";
    return "denied although this thread's gates or the key's process-wide access allow it";
}

static void report(const struct fault *f)
{
    struct line l = { .len = 0 };
    const struct range *region;
    const char *why = reason(f, &region);
    put(&l, "vmpk: SIGSEGV: ");
    put(&l, f->write ? "write" : f->fetch ? "execute" : "read");
    put(&l, " of key ");
    const char *name = f->rt && f->v->name && (!f->v->live || !(f->owner & OWNER_FREED))
                           ? f->v->name
                           : NULL;
    if (name) {
        put(&l, "\"");
        put_name(&l, name);
        put(&l, "\"");
    } else {
        put(&l, "#");
        put_num(&l, f->slot, 10);
    }
    put(&l, " at ");
    put_num(&l, f->addr, 16);
    if (region) {
        uintptr_t start = (uintptr_t)window_base(f->v) + (uintptr_t)region->page * f->rt->page;
        put(&l, " (region ");
        put_num(&l, start, 16);
        put(&l, ", ");
        put_num(&l, (uint64_t)region->pages * f->rt->page, 10);
        put(&l, " bytes, offset ");
        put_num(&l, f->addr - start, 10);
        put(&l, ")");
    }
    put(&l, ", thread ");
    put_num(&l, (uint64_t)os_gettid(), 10);
    put(&l, ": ");
    put(&l, why);
    put(&l, "\n");
    ssize_t ignored = write(STDERR_FILENO, l.buf, l.len);
    (void)ignored;
}

static void report_meta(uintptr_t addr, bool is_write)
{
    struct line l = { .len = 0 };
    put(&l, "vmpk: SIGSEGV: ");
    put(&l, is_write ? "write to" : "read of");
    put(&l, " vmpk metadata at ");
    put_num(&l, addr, 16);
    put(&l, ", thread ");
    put_num(&l, (uint64_t)os_gettid(), 10);
    put(&l, ": only vmpk's own calls may change it\n");
    ssize_t ignored = write(STDERR_FILENO, l.buf, l.len);
    (void)ignored;
}

/* A read of meta by a thread whose PKRU predates the meta pkey: give it
 * read access in the frame, as every thread has. */
static bool meta_read_granted(const siginfo_t *si, ucontext_t *uc, bool write)
{
    uint32_t pkru;
    if (write || vmpk__meta_mode != META_PKEY || si->si_code != SEGV_PKUERR ||
        (int)si->si_pkey != vmpk__meta_pkey || !sigframe_pkru(uc, &pkru))
        return false;
    uint32_t want = pkru_with(pkru, vmpk__meta_pkey, PKRU_WD);
    return want != pkru && sigframe_set_pkru(uc, want);
}

/* Returning from the handler with the default action re-runs the access,
 * which faults again and ends the process by SIGSEGV. */
static void die_by_sigsegv(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGSEGV, &dfl, NULL);
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction)
            previous.sa_sigaction(sig, si, uc);
    } else if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
        die_by_sigsegv(); /* ignoring a fault would re-run it forever */
    } else {
        previous.sa_handler(sig);
    }
}

static void on_sigsegv(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    int saved_errno = errno;
    uint32_t restore = meta_handler_enter();
    struct fault f = { .addr = (uintptr_t)si->si_addr, .write = sigframe_is_write(uc),
                       .fetch = sigframe_is_fetch(uc) };
    bool pass = false;
    if (meta_read_granted(si, uc, f.write))
        goto out;
    f.owner = vmpk__arena_owner(f.addr, NULL);
    if (f.owner) {
        f.rt = atomic_load(&vmpk__runtimes[OWNER_RT(f.owner)]);
        f.slot = OWNER_SLOT1(f.owner) - 1;
        if (f.rt)
            f.v = &f.rt->slots[f.slot];
        else
            f.owner |= OWNER_FREED;
        if (allowed_now(&f, si, uc))
            goto out;
    }
    if (probe_fault_at(sigframe_ip(uc))) {
        sigframe_resume_at(uc, (uintptr_t)vmpk__probe_denied, 0);
        goto out;
    }
    if (vmpk__meta_contains(f.addr) &&
        (si->si_code == SEGV_PKUERR || si->si_code == SEGV_ACCERR)) {
        report_meta(f.addr, f.write);
        die_by_sigsegv();
        goto out;
    }
    if (f.owner) {
        report(&f);
        die_by_sigsegv();
        goto out;
    }
    pass = true;
out:
    meta_handler_leave(restore);
    if (pass)
        chain(sig, si, ctx);
    errno = saved_errno;
}

int vmpk__fault_install(void)
{
    REQUIRE_NOT_IN_SIGNAL(); /* takes a lock, may install handlers */
    int err = 0;
    births_init();
    if ((err = vmpk__meta_init()))
        return err;
    pthread_mutex_lock(&install_lock);
    if (!installed) {
        if (os_pkey_supported())
            sigframe_init();
        struct sigaction sa = { .sa_sigaction = on_sigsegv,
                                .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART };
        sigemptyset(&sa.sa_mask);
        /* A shootdown waits until this handler has written the frame. */
        sigaddset(&sa.sa_mask, vmpk__shootdown_signal());
        if ((err = vmpk__shootdown_install()) == 0) {
            if (sigaction(SIGSEGV, &sa, &previous))
                err = vmpk__system_error(errno);
            else
                installed = true;
        }
    }
    pthread_mutex_unlock(&install_lock);
    return err;
}

int vmpk_probe(const void *addr, int access)
{
    if (!access_valid(access))
        return VMPK_E_INVALID;
    int err = vmpk__fault_install();
    if (err)
        return err;
    if (access == VMPK_NONE)
        return 1;
    return access == VMPK_RW ? vmpk__probe_write((volatile void *)addr)
                             : vmpk__probe_read(addr);
}
