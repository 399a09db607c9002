/*
 * Violations in child processes: each must die by SIGSEGV after vmpk's one
 * report line, which names the key, the access, the region, the offset and
 * the reason. A fault outside vmpk's memory must reach the previous handler
 * (here the default action) with no vmpk line.
 */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum scene { NO_GATE_READ, NO_GATE_WRITE, WRITE_AFTER_PROTECT_R, WRITE_IN_READ_GATE,
             AFTER_DESTROY, PAST_REGION, NOT_VMPK };

static void act(enum scene scene)
{
    vmpk_runtime *rt = open_rt(0);
    vmpk_key k;
    volatile char *p;
    if (vmpk_key_create(rt, "secret", VMPK_NONE, 0, &k) || vmpk_alloc(rt, k, 4096, (void **)&p))
        _exit(90);
    switch (scene) {
    case NO_GATE_READ:
        (void)p[16];
        break;
    case NO_GATE_WRITE:
        p[16] = 1;
        break;
    case WRITE_AFTER_PROTECT_R:
        vmpk_protect(rt, k, VMPK_READ);
        (void)p[16]; /* allowed */
        p[16] = 1;
        break;
    case WRITE_IN_READ_GATE:
        vmpk_begin(rt, k, VMPK_READ);
        (void)p[16];
        p[16] = 1;
        break;
    case AFTER_DESTROY:
        vmpk_key_destroy(rt, k);
        (void)p[16];
        break;
    case PAST_REGION:
        vmpk_begin(rt, k, VMPK_RW);
        p[4096 + 16] = 1; /* in the key's window, past its only region */
        break;
    case NOT_VMPK: {
        volatile char *elsewhere = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        elsewhere[8] = 1;
        break;
    }
    }
    _exit(91); /* survived: the test fails */
}

static void act_scene(int scene)
{
    act((enum scene)scene);
}

/* Runs the scene in a child; returns its stderr, sets *sig to its fatal
 * signal (0 if it exited). */
static char *in_child(enum scene scene, int *sig)
{
    int status;
    char *out = check_in_child(act_scene, scene, sig, &status);
    if (!*sig && scene != NOT_VMPK)
        printf("#   child exited with %d: %s\n", status, out);
    return out;
}

#define EXPECT_REPORT(scene, ...)                                                          \
    do {                                                                                   \
        int sig_;                                                                          \
        const char *err_ = in_child(scene, &sig_);                                         \
        const char *want_[] = { "vmpk: SIGSEGV: ", __VA_ARGS__ };                          \
        CHECK_EQ(sig_, SIGSEGV);                                                           \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof *want_; i_++)                       \
            if (!strstr(err_, want_[i_])) {                                                \
                printf("#   no \"%s\" in: %s\n", want_[i_], err_);                         \
                check_failures_now++;                                                      \
            }                                                                              \
    } while (0)

static void read_without_gate(void)
{
    EXPECT_REPORT(NO_GATE_READ, "read of key \"secret\"", "bytes, offset 16)",
                  "no gate is open on this thread and the key's process-wide access is none");
}

static void write_without_gate(void)
{
    EXPECT_REPORT(NO_GATE_WRITE, "write of key \"secret\"", "offset 16",
                  "no gate is open on this thread and the key's process-wide access is none");
}

static void write_after_protect_read(void)
{
    EXPECT_REPORT(WRITE_AFTER_PROTECT_R, "write of key \"secret\"",
                  "no write gate is open on this thread and the key's process-wide access is "
                  "read-only");
}

static void write_in_read_gate(void)
{
    EXPECT_REPORT(WRITE_IN_READ_GATE, "write of key \"secret\"",
                  "the gate open on this thread grants read only");
}

static void access_after_destroy(void)
{
    EXPECT_REPORT(AFTER_DESTROY, "read of key \"secret\"", "the key was destroyed");
}

static void past_the_region(void)
{
    EXPECT_REPORT(PAST_REGION, "write of key \"secret\"",
                  "not inside a live region of the key");
}

static void other_faults_are_chained(void)
{
    int sig;
    const char *err = in_child(NOT_VMPK, &sig);
    CHECK(strstr(err, "vmpk:") == NULL);
#ifdef __SANITIZE_ADDRESS__
    /* The handler before vmpk's is ASan's: it reports and exits. */
    CHECK(strstr(err, "AddressSanitizer: SEGV") != NULL);
#else
    CHECK_EQ(sig, SIGSEGV);
#endif
}

int main(void)
{
    RUN(read_without_gate);
    RUN(write_without_gate);
    RUN(write_after_protect_read);
    RUN(write_in_read_gate);
    RUN(access_after_destroy);
    RUN(past_the_region);
    RUN(other_faults_are_chained);
    return check_done();
}
