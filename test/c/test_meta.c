/*
 * vmpk's own metadata (invariants 5 and 6), attacked from outside vmpk in
 * child processes:
 *   - a write to the vkey table, the hw key table or a gate record dies by
 *     SIGSEGV with vmpk's one-line report (the meta pkey's WD on pku, a
 *     read-only page without PKU); so does one to what decides which pages
 *     alloc and free touch (a region list, inline or in the region table,
 *     and the window) or what a report prints (the name pointer), pku only;
 *   - a forged entry in the meta page's runtimes[] faults the same way
 *     with PKU; without it the write goes through and the next gate calls
 *     the forger's backend (the attack shown succeeding);
 *   - the same writes tried through vmpk_probe are refused (0) and change
 *     nothing: reads stay free, no binding or permission moved;
 *   - a jump onto any WRPKRU in vmpk's code with EAX = ECX = EDX = 0 (every
 *     key open) dies by SIGABRT: the check after it compares with the value
 *     vmpk stored in protected memory (real PKU only: elsewhere the
 *     instruction itself does not exist).
 * The addresses come from the internal structs (this test links the static
 * library and sees internal.h).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"
#include "meta.h"
#include "backend.h"
#include "backend_pku.h"

static vmpk_runtime *rt;
static vmpk_key key;
static volatile uint8_t *mem;

/* A runtime with one key, access none, resident after one gate (so a pkey
 * vmpk owns is closed in this thread's PKRU), no gate open. */
static void setup(void)
{
    rt = open_rt(0);
    void *p;
    if (vmpk_key_create(rt, "secret", VMPK_NONE, 0, &key) || vmpk_alloc(rt, key, 4096, &p) ||
        vmpk_begin(rt, key, VMPK_RW) || vmpk_end(rt, key))
        _exit(90);
    mem = p;
}

static struct vkey *slot0(void)
{
    return &rt->slots[0];
}

enum scene { WRITE_PERM, WRITE_HW_STATE, WRITE_GATE_RECORD, WRITE_REGION_TABLE,
             WRITE_INLINE_REGION, WRITE_WINDOW, WRITE_NAME, WRITE_RT_BACKEND, WRITE_RT_SLOT,
             WRITE_GATE_RUNTIME };

/* What a forged runtime's backend runs in place of a gate: proof that
 * vmpk called it. */
#define FORGED_CALL_RAN 95
static int forged_begin(struct vmpk_runtime *r, vmpk_key k, int access)
{
    (void)r, (void)k, (void)access;
    _exit(FORGED_CALL_RAN);
}

static int forged_end_in(struct vmpk_runtime *r, struct vmpk_thread *t, vmpk_key k)
{
    (void)r, (void)t, (void)k;
    _exit(FORGED_CALL_RAN);
}

/* A runtime of the forger's making, in its own memory, whose backend
 * table is a copy of the real one (readable) but for `begin` and
 * `end_in`: the read-only fixed half is never written. */
static struct vmpk_runtime *forged_runtime(void)
{
    static struct backend fake_be;
    static struct vmpk_runtime fake_rt;
    fake_be = *rt->be;
    fake_be.begin = forged_begin;
    fake_be.end_in = forged_end_in;
    fake_rt.be = &fake_be;
    fake_rt.id = rt->id;
    return &fake_rt;
}

/* A thread that opens a gate, points its record at a forged runtime and
 * exits with the gate open: its exit closes the gates it left. */
static void *exit_with_forged_gate(void *arg)
{
    (void)arg;
    if (vmpk_begin(rt, key, VMPK_READ))
        _exit(93);
    vmpk__self->gates[0].rt = forged_runtime();
    return NULL;
}

static void act(enum scene scene)
{
    setup();
    switch (scene) {
    case WRITE_PERM: /* widen the key's process-wide access by hand */
        *(volatile uint8_t *)&slot0()->access = VMPK_RW;
        break;
    case WRITE_HW_STATE: /* add a pin, so the key could never be evicted */
        *(volatile uint64_t *)&vmpk__pku_hwkey(rt, 0)->state += 1;
        break;
    case WRITE_GATE_RECORD: /* forge an open RW gate on the key */
        vmpk__self->gates[0].access = VMPK_RW;
        break;
    case WRITE_REGION_TABLE: { /* a second region puts the list in the table */
        void *p;
        if (vmpk_alloc(rt, key, 4096, &p) || slot0()->cap == 0)
            _exit(92);
        /* shift the first region a window on: the next alloc would hand
         * out the page before it, another key's */
        vmpk__regions_table(slot0()->granule)[0].page += 256;
        break;
    }
    case WRITE_INLINE_REGION: /* the one region, inline in the slot */
        slot0()->one.pages = 1u << 20;
        break;
    case WRITE_WINDOW: /* point the key's window at another key's */
        slot0()->granule += 1;
        break;
    case WRITE_NAME: /* what a report prints, pointed elsewhere */
        slot0()->name = (char *)"\x1b[2J";
        break;
    case WRITE_RT_BACKEND: /* the runtime's backend: a table of functions */
        *(const void *volatile *)&rt->be = &rt->c;
        break;
    case WRITE_RT_SLOT: /* the entry that finds the runtime */
        atomic_store(&vmpk__runtimes[rt->id], forged_runtime());
        vmpk_enter(key, VMPK_RW); /* key.with()'s path: the handle's id picks the entry */
        break;
    case WRITE_GATE_RUNTIME: { /* a gate record's runtime, followed at thread exit */
        pthread_t th;
        if (pthread_create(&th, NULL, exit_with_forged_gate, NULL) || pthread_join(th, NULL))
            _exit(94);
        break;
    }
    }
    _exit(91); /* survived: the test fails */
}

static char *in_child(void (*body)(int), int arg, int *sig)
{
    int status;
    char *out = check_in_child(body, arg, sig, &status);
    if (!*sig)
        printf("#   child exited with %d: %s\n", status, out);
    return out;
}

static void act_scene(int scene)
{
    act((enum scene)scene);
}

static void expect_meta_report(enum scene scene)
{
    int sig;
    const char *err = in_child(act_scene, scene, &sig);
    CHECK_EQ(sig, SIGSEGV);
    if (!strstr(err, "vmpk: SIGSEGV: write to vmpk metadata at ") ||
        !strstr(err, "only vmpk's own calls may change it")) {
        printf("#   no metadata report in: %s\n", err);
        check_failures_now++;
    }
}

/* Without PKU only a runtime's fixed half is read-only (meta.h). */
#define NEED_META_PKEY()                                                                   \
    do {                                                                                   \
        vmpk_close(open_rt(0));                                                            \
        if (vmpk__meta.mode != META_PKEY)                                                  \
            SKIP("only the meta pkey write-protects it (needs PKU)");                     \
    } while (0)

static void write_to_perm_faults(void)
{
    NEED_META_PKEY();
    expect_meta_report(WRITE_PERM);
}

/* What decides which pages alloc and free touch (the region list, inline
 * or in the table, and the window) and what a report reads. */
static void write_to_region_lists_faults(void)
{
    NEED_META_PKEY();
    expect_meta_report(WRITE_REGION_TABLE);
    expect_meta_report(WRITE_INLINE_REGION);
    expect_meta_report(WRITE_WINDOW);
    expect_meta_report(WRITE_NAME);
}

static void write_to_hw_table_faults(void)
{
    NEED_META_PKEY();
    expect_meta_report(WRITE_HW_STATE);
}

/* The runtime's fixed half (its backend, its table's address, its id) is
 * read-only from open to close on both: a pkey guards it, or mprotect. */
static void write_to_runtime_backend_faults(void)
{
    expect_meta_report(WRITE_RT_BACKEND);
}

/* With PKU the scene's write faults with the report. Without PKU it is
 * taken (the part it writes stays writable there, meta.h), and the child
 * must still end as the scene does when nothing stops it: exit 91, no
 * signal, no forged function run (FORGED_CALL_RAN). */
static void reported_with_pku_else_taken(enum scene scene)
{
    vmpk_close(open_rt(0));
    if (vmpk__meta.mode == META_PKEY) {
        expect_meta_report(scene);
        return;
    }
    int sig, status;
    char *out = check_in_child(act_scene, scene, &sig, &status);
    if (sig)
        printf("#   child ended by signal %d: %s\n", sig, out);
    CHECK_EQ(sig, 0);
    CHECK_EQ(status, 91);
}

/* Gate stacks: without PKU writable, so that the mprotect backend's gates
 * cost no metadata syscall. */
static void write_to_gate_record_faults(void)
{
    reported_with_pku_else_taken(WRITE_GATE_RECORD);
}

/* The runtimes page (struct meta_runtimes) names the open runtimes; a
 * gate by handle (vmpk_enter, and key.with()'s index path) calls the
 * backend of the runtime found there. A forged entry would make the next
 * gate call the forger's function (FORGED_CALL_RAN): the write faults on
 * both, the meta pkey guarding the page or mprotect keeping it read-only
 * between vmpk_open and vmpk_close. */
static void forged_runtime_entry(void)
{
    expect_meta_report(WRITE_RT_SLOT);
}

/* A thread's exit closes the gates it left open through each record's
 * runtime pointer. Without PKU the forged record is written, and the exit
 * refuses a runtime that is not one of the open ones. */
static void forged_gate_runtime_at_exit(void)
{
    reported_with_pku_else_taken(WRITE_GATE_RUNTIME);
}

/* Writes tried through the probe: refused, nothing changed. Reads of the
 * same bytes are allowed. */
static void probed_writes_change_nothing(void)
{
    setup();
    struct vkey *v = slot0();
    struct vmpk_stats before = stats_of(rt);
    uint64_t state = atomic_load(&vmpk__pku_hwkey(rt, 0)->state);
    CHECK(vmpk__meta.mode != META_OFF);
    CHECK_EQ(vmpk_probe(&v->access, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(&vmpk__self->depth, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(&rt->be, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(&rt->slots, VMPK_RW), 0);
    CHECK_EQ(vmpk_probe(&rt->id, VMPK_RW), 0);
    /* Without PKU only a runtime's fixed half is read-only (meta.h): the
     * thread structs, the runtime's changing half (its lock, the hw key
     * table) and the meta page stay writable. The gaps, asserted. */
    int gaps = vmpk__meta.mode == META_MPROTECT;
    CHECK_EQ(vmpk_probe(&vmpk__self->depth, VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&vmpk__self->gates[0], VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&vmpk__self->pkru_expect, VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&rt->lock, VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&vmpk__pku_hwkey(rt, 0)->state, VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&vmpk__meta.births, VMPK_RW), gaps);
    CHECK_EQ(vmpk_probe(&vmpk__runtimes[0], VMPK_RW), 0);
    if (vmpk__meta.mode == META_PKEY) { /* the tables too */
        CHECK_EQ(vmpk_probe(&v->access, VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(&v->be, VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(&v->gen, VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(&vmpk__meta.owned, VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(&vmpk__meta.arena.next, VMPK_RW), 0);
        CHECK_EQ(vmpk_probe(vmpk__meta.owner_area, VMPK_RW), 0);
    }
    /* The key's pages are as closed as before, and its state unchanged. */
    CHECK_EQ(vmpk_probe((const void *)mem, VMPK_READ), 0);
    CHECK_EQ(atomic_load(&v->access), VMPK_NONE);
    CHECK_EQ(atomic_load(&vmpk__pku_hwkey(rt, 0)->state), state);
    struct vmpk_stats after = stats_of(rt);
    CHECK_EQ(after.resident_vkeys, before.resident_vkeys);
    CHECK_EQ(after.pins, 0);
    CHECK_EQ(vmpk__self->depth, 0);
    /* vmpk itself still changes it. */
    CHECK_EQ(vmpk_protect(rt, key, VMPK_READ), 0);
    CHECK_EQ(atomic_load(&v->access), VMPK_READ);
    CHECK_EQ(vmpk_probe((const void *)mem, VMPK_READ), 1);
    CHECK_EQ(vmpk_key_destroy(rt, key), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* --- jumping into the middle of a gate ---------------------------------- */

/* The bytes of this executable's code: vmpk's (linked in), the test's and
 * the startup code's; only vmpk's hold WRPKRU. */
static int text_of_self(uint8_t **lo, uint8_t **hi)
{
    char self[512], line[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return -1;
    int found = -1;
    while (fgets(line, sizeof line, maps)) {
        unsigned long a, b;
        char perms[8];
        int off = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &off) < 3 || !off)
            continue;
        char *path = line + off;
        path[strcspn(path, "\n")] = 0;
        if (strcmp(perms, "r-xp") == 0 && strcmp(path, self) == 0) {
            *lo = (uint8_t *)a;
            *hi = (uint8_t *)b;
            found = 0;
            break;
        }
    }
    fclose(maps);
    return found;
}

static void jump_there(int index)
{
    setup();
    uint8_t *lo, *hi;
    if (text_of_self(&lo, &hi))
        _exit(93);
    int seen = 0;
    for (uint8_t *p = lo; p + 3 <= hi; p++) {
        if (p[0] != 0x0f || p[1] != 0x01 || p[2] != 0xef || seen++ != index)
            continue;
        /* EAX = 0: every key open, meta writable. */
        __asm__ volatile("xorl %%eax, %%eax\n\t"
                         "xorl %%ecx, %%ecx\n\t"
                         "xorl %%edx, %%edx\n\t"
                         "jmp *%0"
                         :
                         : "b"(p)
                         : "rax", "rcx", "rdx", "memory");
    }
    _exit(94); /* no such occurrence */
}

static int count_wrpkru(void)
{
    uint8_t *lo, *hi;
    if (text_of_self(&lo, &hi))
        return -1;
    int n = 0;
    for (uint8_t *p = lo; p + 3 <= hi; p++)
        n += p[0] == 0x0f && p[1] == 0x01 && p[2] == 0xef;
    return n;
}

static void jump_onto_every_wrpkru_aborts(void)
{
    NEED_PKU();
    struct vmpk_info info;
    vmpk_runtime *probe_rt = open_rt(0);
    vmpk_info(probe_rt, &info);
    vmpk_close(probe_rt);
    if (info.pkru_stubbed)
        SKIP("the stub build has no WRPKRU");
    int n = count_wrpkru();
    printf("# %d WRPKRU occurrences in vmpk's code\n", n);
    CHECK(n >= 4); /* entry, exact, boot open and closed at least */
    for (int i = 0; i < n; i++) {
        int sig;
        const char *err = in_child(jump_there, i, &sig);
        if (sig != SIGABRT) {
            printf("#   WRPKRU #%d: child ended by signal %d, not SIGABRT: %s\n", i, sig, err);
            check_failures_now++;
        }
    }
}

int main(void)
{
    RUN(write_to_perm_faults);
    RUN(write_to_hw_table_faults);
    RUN(write_to_gate_record_faults);
    RUN(write_to_runtime_backend_faults);
    RUN(forged_runtime_entry);
    RUN(forged_gate_runtime_at_exit);
    RUN(probed_writes_change_nothing);
    RUN(jump_onto_every_wrpkru_aborts);
    RUN(write_to_region_lists_faults);
    return check_done();
}
