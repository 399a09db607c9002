/*
 * The one system call instruction of vmpk's memory calls (see rawsyscall.h),
 * in assembly so that the compiler can neither inline nor duplicate it.
 * Linux aarch64: number in x8, arguments in x0..x5, result in x0.
 */
#include "rawsyscall.h"

__asm__(".text\n"
        ".globl vmpk__syscall6\n"
        ".hidden vmpk__syscall6\n"
        ".type vmpk__syscall6, %function\n"
        ".p2align 4\n"
        "vmpk__syscall6:\n"
        "    mov x8, x0\n"
        "    mov x0, x1\n"
        "    mov x1, x2\n"
        "    mov x2, x3\n"
        "    mov x3, x4\n"
        "    mov x4, x5\n"
        "    mov x5, x6\n"
        "    svc #0\n"
        ".globl vmpk__syscall_return\n"
        ".hidden vmpk__syscall_return\n"
        "vmpk__syscall_return:\n"
        "    ret\n"
        ".size vmpk__syscall6, .-vmpk__syscall6\n");
