/*
 * vmpk_probe's accesses: one instruction each, at a known address, so the
 * fault handler can turn their fault into "denied" by resuming at
 * probe_denied with eax = 0. The write probe is a locked cmpxchg with equal
 * old and new values: the CPU checks it as a write even when the compare
 * fails, and the byte never changes, even with other threads writing it.
 */
#include "probe.h"

__asm__(".text\n"
        ".globl vmpk__probe_read\n"
        ".hidden vmpk__probe_read\n"
        ".type vmpk__probe_read, @function\n"
        "vmpk__probe_read:\n"
        "    movl $1, %eax\n"
        ".globl vmpk__probe_read_at\n"
        ".hidden vmpk__probe_read_at\n"
        "vmpk__probe_read_at:\n"
        "    movb (%rdi), %cl\n"
        "    ret\n"
        ".globl vmpk__probe_write\n"
        ".hidden vmpk__probe_write\n"
        ".type vmpk__probe_write, @function\n"
        "vmpk__probe_write:\n"
        "    xorl %eax, %eax\n"
        "    xorl %ecx, %ecx\n"
        ".globl vmpk__probe_write_at\n"
        ".hidden vmpk__probe_write_at\n"
        "vmpk__probe_write_at:\n"
        "    lock cmpxchgb %cl, (%rdi)\n"
        "    movl $1, %eax\n"
        "    ret\n"
        ".globl vmpk__probe_denied\n"
        ".hidden vmpk__probe_denied\n"
        "vmpk__probe_denied:\n"
        "    xorl %eax, %eax\n"
        "    ret\n");

bool probe_fault_at(uintptr_t ip)
{
    return ip == (uintptr_t)vmpk__probe_read_at || ip == (uintptr_t)vmpk__probe_write_at;
}
