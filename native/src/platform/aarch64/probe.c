/*
 * vmpk_probe's accesses on aarch64 (see probe.h): one instruction each, at a
 * known address, so the fault handler can turn their fault into "denied" by
 * resuming at vmpk__probe_denied. The write probe adds 0 atomically (LSE
 * LDADDB): checked as a write, and the byte never changes, even with other
 * threads writing it.
 */
#include "probe.h"

__asm__(".text\n"
        ".arch_extension lse\n"
        ".globl vmpk__probe_read\n"
        ".hidden vmpk__probe_read\n"
        ".type vmpk__probe_read, %function\n"
        "vmpk__probe_read:\n"
        ".globl vmpk__probe_read_at\n"
        ".hidden vmpk__probe_read_at\n"
        "vmpk__probe_read_at:\n"
        "    ldrb w1, [x0]\n"
        "    mov w0, #1\n"
        "    ret\n"
        ".globl vmpk__probe_write\n"
        ".hidden vmpk__probe_write\n"
        ".type vmpk__probe_write, %function\n"
        "vmpk__probe_write:\n"
        "    mov w1, #0\n"
        ".globl vmpk__probe_write_at\n"
        ".hidden vmpk__probe_write_at\n"
        "vmpk__probe_write_at:\n"
        "    ldaddb w1, w2, [x0]\n"
        "    mov w0, #1\n"
        "    ret\n"
        ".globl vmpk__probe_denied\n"
        ".hidden vmpk__probe_denied\n"
        "vmpk__probe_denied:\n"
        "    mov w0, #0\n"
        "    ret\n");

bool probe_fault_at(uintptr_t ip)
{
    return ip == (uintptr_t)vmpk__probe_read_at || ip == (uintptr_t)vmpk__probe_write_at;
}
