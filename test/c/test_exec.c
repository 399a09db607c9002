/*
 * Executable keys (VMPK_KEY_EXEC), the core of a JIT code cache: code in
 * them runs on every thread at all times, and is written only inside an RW
 * gate on the writing thread (pku) or while the pages are not executable
 * (mprotect, W^X). Violations die in child processes with vmpk's report.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

typedef int (*code_fn)(void);

/* mov eax, imm32; ret */
static void emit_return(vmpk_runtime *rt, vmpk_key k, uint8_t *code, int value)
{
    const uint8_t insn[6] = { 0xb8, (uint8_t)value, (uint8_t)(value >> 8),
                              (uint8_t)(value >> 16), (uint8_t)(value >> 24), 0xc3 };
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    memcpy(code, insn, sizeof insn);
    CHECK_EQ(vmpk_end(rt, k), 0);
}

static vmpk_key exec_key(vmpk_runtime *rt, uint8_t **code)
{
    vmpk_key k;
    if (vmpk_key_create(rt, "code", VMPK_READ | VMPK_KEY_EXEC, 0, &k) ||
        vmpk_alloc(rt, k, 4096, (void **)code)) {
        printf("Bail out! cannot make an exec key\n");
        exit(99);
    }
    return k;
}

/* The permissions /proc/self/maps shows for addr ("r-xp"), in out[5]. */
static void perms_of(const void *addr, char out[5])
{
    strcpy(out, "????");
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    uintptr_t a = (uintptr_t)addr;
    while (f && fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        char p[5];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, p) == 3 && lo <= a && a < hi) {
            memcpy(out, p, 5);
            break;
        }
    }
    if (f)
        fclose(f);
}

#define CHECK_PERMS(addr, want)                                                            \
    do {                                                                                   \
        char p_[5];                                                                        \
        perms_of((addr), p_);                                                              \
        if (strcmp(p_, (want)) != 0) {                                                     \
            printf("#   %s:%d: pages are %s, expected %s\n", __FILE__, __LINE__, p_, (want)); \
            check_failures_now++;                                                          \
        }                                                                                  \
    } while (0)

static void *call_code(void *code)
{
    return (void *)(intptr_t)((code_fn)code)();
}

static int call_on_new_thread(uint8_t *code)
{
    pthread_t th;
    void *r;
    if (pthread_create(&th, NULL, call_code, code) || pthread_join(th, &r))
        abort();
    return (int)(intptr_t)r;
}

static void bad_arguments(void)
{
    vmpk_runtime *rt = open_rt(0);
    vmpk_key k;
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE | VMPK_KEY_EXEC, 0, &k), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_RW | VMPK_KEY_EXEC, 0, &k), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_READ | 0x200, 0, &k), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_READ | VMPK_KEY_EXEC, 0, &k), 0);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_NONE), VMPK_E_INVALID);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_RW), VMPK_E_INVALID);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_READ), 0);
    CHECK_EQ(vmpk_protect(rt, k, VMPK_READ | VMPK_KEY_EXEC), VMPK_E_INVALID);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Code written in an emit gate runs on this thread and on one that never
 * opened a gate; a second emit replaces it for both. */
static void code_runs_on_every_thread(void)
{
    vmpk_runtime *rt = open_rt(0);
    uint8_t *code;
    vmpk_key k = exec_key(rt, &code);
    emit_return(rt, k, code, 42);
    CHECK_EQ(((code_fn)code)(), 42);
    CHECK_EQ(call_on_new_thread(code), 42);
    emit_return(rt, k, code, -7);
    CHECK_EQ(call_on_new_thread(code), -7);
    CHECK_EQ(((code_fn)code)(), -7);
    CHECK_EQ(vmpk_probe(code, VMPK_READ), 1);
    CHECK_EQ(vmpk_probe(code, VMPK_RW), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* The page protection behind it, as the kernel shows it. */
static void page_protection(void)
{
    vmpk_runtime *rt = open_rt(1);
    uint8_t *code;
    vmpk_key k = exec_key(rt, &code);
    CHECK_PERMS(code, "r-xp"); /* never resident yet */
    emit_return(rt, k, code, 5);
    if (backend_of(rt) == VMPK_BACKEND_PKU) {
        CHECK_PERMS(code, "rwxp"); /* resident: PKRU keeps writes in gates */
        CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
        CHECK_PERMS(code, "rwxp");
        CHECK_EQ(vmpk_end(rt, k), 0);
        /* Evicted by another key's gate (one hw key): R+X, runs anywhere. */
        vmpk_key other;
        void *data;
        CHECK_EQ(vmpk_key_create(rt, NULL, VMPK_NONE, 0, &other), 0);
        CHECK_EQ(vmpk_alloc(rt, other, 4096, &data), 0);
        CHECK_EQ(vmpk_begin(rt, other, VMPK_RW), 0);
        CHECK_EQ(vmpk_end(rt, other), 0);
        CHECK_EQ(stats_of(rt).evictions, 1);
        CHECK_PERMS(code, "r-xp");
    } else {
        CHECK_PERMS(code, "r-xp"); /* W^X: executable outside emits */
        CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
        CHECK_PERMS(code, "rw-p"); /* and not executable inside one */
        CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
        CHECK_PERMS(code, "rw-p"); /* mprotect gates are a union */
        CHECK_EQ(vmpk_end(rt, k), 0);
        CHECK_EQ(vmpk_end(rt, k), 0);
        CHECK_EQ(vmpk_begin(rt, k, VMPK_READ), 0);
        CHECK_PERMS(code, "r-xp");
        CHECK_EQ(vmpk_end(rt, k), 0);
    }
    CHECK_EQ(((code_fn)code)(), 5);
    CHECK_EQ(call_on_new_thread(code), 5);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* Exact costs of an emit: pku writes PKRU twice and makes no syscall once
 * the key is resident; mprotect makes two mprotect calls. */
static void emit_costs(void)
{
    vmpk_runtime *rt = open_rt(0);
    uint8_t *code;
    vmpk_key k = exec_key(rt, &code);
    emit_return(rt, k, code, 1); /* binds the key on pku */
    struct vmpk_stats a = stats_of(rt);
    for (int i = 0; i < 100; i++) {
        emit_return(rt, k, code, i);
        CHECK_EQ(((code_fn)code)(), i);
    }
    struct vmpk_stats b = stats_of(rt);
    if (backend_of(rt) == VMPK_BACKEND_PKU) {
        CHECK_EQ(b.syscalls - a.syscalls, 0);
        CHECK_EQ(b.pkru_writes - a.pkru_writes, 200);
    } else {
        CHECK_EQ(b.mprotect_calls - a.mprotect_calls, 200);
        CHECK_EQ(b.syscalls - a.syscalls, 200);
    }
    CHECK_EQ(b.hits - a.hits, backend_of(rt) == VMPK_BACKEND_PKU ? 100 : 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* What another thread may do while this one emits. The thread exists
 * before the gate opens: one cloned inside a gate copies its PKRU bits
 * (vmpk takes them back when the gate closes). */
struct during {
    uint8_t *code;
    int write_ok, read_ok;
    pthread_barrier_t opened, probed;
};

static void *probe_during(void *arg)
{
    struct during *d = arg;
    pthread_barrier_wait(&d->opened);
    d->write_ok = vmpk_probe(d->code, VMPK_RW);
    d->read_ok = vmpk_probe(d->code, VMPK_READ);
    pthread_barrier_wait(&d->probed);
    return NULL;
}

static void other_threads_during_an_emit(void)
{
    vmpk_runtime *rt = open_rt(0);
    struct during d;
    exec_key(rt, &d.code);
    vmpk_key k;
    CHECK_EQ(vmpk_lookup(rt, d.code, &k, NULL, NULL), 0);
    pthread_barrier_init(&d.opened, NULL, 2);
    pthread_barrier_init(&d.probed, NULL, 2);
    pthread_t th;
    if (pthread_create(&th, NULL, probe_during, &d))
        abort();
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    pthread_barrier_wait(&d.opened);
    pthread_barrier_wait(&d.probed);
    CHECK_EQ(vmpk_probe(d.code, VMPK_RW), 1);
    CHECK_EQ(vmpk_end(rt, k), 0);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&d.opened);
    pthread_barrier_destroy(&d.probed);
    /* pku: the emit is this thread's alone. mprotect: process-wide. */
    CHECK_EQ(d.write_ok, backend_of(rt) == VMPK_BACKEND_PKU ? 0 : 1);
    CHECK_EQ(d.read_ok, 1);
    CHECK_EQ(vmpk_close(rt), 0);
}

/* --- death tests ------------------------------------------------------ */

enum scene { WRITE_OUTSIDE, WRITE_FROM_OTHER_THREAD, RUN_DATA, RUN_IN_OWN_EMIT, CONTROL };

static uint8_t *scene_code;
static pthread_barrier_t scene_opened;

/* Created before the gate (see other_threads_during_an_emit). */
static void *write_code(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&scene_opened);
    *(volatile uint8_t *)(scene_code + 1) = 0x90;
    return NULL;
}

static void act(enum scene scene)
{
    vmpk_runtime *rt = open_rt(0);
    uint8_t *code;
    vmpk_key k = exec_key(rt, &code);
    emit_return(rt, k, code, 3);
    scene_code = code;
    pthread_t th;
    switch (scene) {
    case WRITE_OUTSIDE:
        *(volatile uint8_t *)(code + 1) = 0x90;
        break;
    case WRITE_FROM_OTHER_THREAD: /* pku only: on mprotect the emit is process-wide */
        pthread_barrier_init(&scene_opened, NULL, 2);
        if (pthread_create(&th, NULL, write_code, NULL))
            abort();
        vmpk_begin(rt, k, VMPK_RW);
        pthread_barrier_wait(&scene_opened);
        pthread_join(th, NULL);
        break;
    case RUN_DATA: {
        vmpk_key data;
        uint8_t *p;
        if (vmpk_key_create(rt, "data", VMPK_READ, 0, &data) || vmpk_alloc(rt, data, 4096, (void **)&p))
            _exit(90);
        vmpk_begin(rt, data, VMPK_RW);
        memcpy(p, code, 6);
        vmpk_end(rt, data);
        printf("%d\n", ((code_fn)p)());
        break;
    }
    case RUN_IN_OWN_EMIT:
    case CONTROL:
        if (scene == RUN_IN_OWN_EMIT)
            vmpk_begin(rt, k, VMPK_RW);
        if (((code_fn)code)() != 3)
            _exit(92);
        if (scene == RUN_IN_OWN_EMIT)
            vmpk_end(rt, k);
        _exit(0);
    }
    _exit(91); /* survived: the test fails */
}

static void act_scene(int scene)
{
    act((enum scene)scene);
}

static char *in_child(enum scene scene, int *sig, int *status)
{
    return check_in_child(act_scene, scene, sig, status);
}

#define EXPECT_REPORT(scene, ...)                                                          \
    do {                                                                                   \
        int sig_, status_;                                                                 \
        const char *err_ = in_child(scene, &sig_, &status_);                               \
        const char *want_[] = { "vmpk: SIGSEGV: ", __VA_ARGS__ };                          \
        CHECK_EQ(sig_, SIGSEGV);                                                           \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof *want_; i_++)                       \
            if (!strstr(err_, want_[i_])) {                                                \
                printf("#   no \"%s\" in: %s (status %d)\n", want_[i_], err_, status_);    \
                check_failures_now++;                                                      \
            }                                                                              \
    } while (0)

static void control_run_survives(void)
{
    int sig, status;
    const char *err = in_child(CONTROL, &sig, &status);
    CHECK_EQ(sig, 0);
    CHECK_EQ(status, 0);
    CHECK(strstr(err, "vmpk:") == NULL);
}

static void write_outside_the_emit_dies(void)
{
    EXPECT_REPORT(WRITE_OUTSIDE, "write of key \"code\"", "bytes, offset 1)",
                  "no write gate is open on this thread and the key's process-wide access is "
                  "read-only");
}

static void write_from_another_thread_during_the_emit_dies(void)
{
    NEED_PKU();
    EXPECT_REPORT(WRITE_FROM_OTHER_THREAD, "write of key \"code\"", "offset 1)",
                  "no write gate is open on this thread");
}

static void running_a_data_key_dies(void)
{
    EXPECT_REPORT(RUN_DATA, "execute of key \"data\"", "offset 0)",
                  "instruction fetch from a key that is not executable");
}

/* pku: the emitting thread may run the cache's code (RWX pages). mprotect:
 * W^X, so the fetch faults and, retried 10,000 times, ends in the report. */
static void running_code_in_its_own_emit(void)
{
    vmpk_runtime *rt = open_rt(0);
    int pku = backend_of(rt) == VMPK_BACKEND_PKU;
    vmpk_close(rt);
    if (pku) {
        int sig, status;
        const char *err = in_child(RUN_IN_OWN_EMIT, &sig, &status);
        CHECK_EQ(sig, 0);
        CHECK_EQ(status, 0);
        CHECK(strstr(err, "vmpk:") == NULL);
    } else {
        EXPECT_REPORT(RUN_IN_OWN_EMIT, "execute of key \"code\"", "offset 0)",
                      "instruction fetch while an RW gate (an emit) holds the executable key's "
                      "pages writable, not executable (W^X, mprotect backend)");
    }
}

int main(void)
{
    RUN(bad_arguments);
    RUN(code_runs_on_every_thread);
    RUN(page_protection);
    RUN(emit_costs);
    RUN(other_threads_during_an_emit);
    RUN(control_run_survives);
    RUN(write_outside_the_emit_dies);
    RUN(write_from_another_thread_during_the_emit_dies);
    RUN(running_a_data_key_dies);
    RUN(running_code_in_its_own_emit);
    return check_done();
}
