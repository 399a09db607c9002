/* The baselines of bench/gate.mjs, built into bench/build/libnoop.so: the
 * cheapest C functions koffi can call, bare and with the argument types of
 * vmpk_begin (uintptr_t, uint64_t, int) and vmpk_end (uintptr_t, uint64_t),
 * so the cost of koffi's marshalling can be told apart from the core's. */
#include <stdint.h>

void noop(void) {}

int noop_begin(uintptr_t rt, uint64_t key, int access)
{
    (void)rt, (void)key, (void)access;
    return 0;
}

int noop_end(uintptr_t rt, uint64_t key)
{
    (void)rt, (void)key;
    return 0;
}

/* The narrower gate signature design.md weighs (a 32-bit gate index, the
 * access chosen by the function): int (uint32_t) for both calls. */
int noop_enter32(uint32_t index)
{
    return (int)index & 0;
}

int noop_leave32(uint32_t index)
{
    return (int)index & 0;
}

/* For bench/signatures.mjs: what each argument type costs a koffi call. */
int sig_r(void)
{
    return 0;
}

int sig_i1(int a)
{
    return a & 0;
}

int sig_i2(int a, int b)
{
    return (a + b) & 0;
}

int sig_i3(int a, int b, int c)
{
    return (a + b + c) & 0;
}

int sig_u64(uint64_t a)
{
    return (int)a & 0;
}

int sig_uptr(uintptr_t a)
{
    return (int)a & 0;
}
