/*
 * The one syscall instruction of vmpk's memory calls (see rawsyscall.h).
 * Written in assembly so that the compiler can neither inline it nor
 * duplicate the instruction: the filter trusts exactly one address.
 * Linux x86-64: number in rax, arguments in rdi, rsi, rdx, r10, r8, r9;
 * the instruction clobbers rcx and r11.
 */
#include "rawsyscall.h"

__asm__(".text\n"
        ".globl vmpk__syscall6\n"
        ".hidden vmpk__syscall6\n"
        ".type vmpk__syscall6, @function\n"
        ".p2align 4\n"
        "vmpk__syscall6:\n"
        "    movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    movq %rdx, %rsi\n"
        "    movq %rcx, %rdx\n"
        "    movq %r8, %r10\n"
        "    movq %r9, %r8\n"
        "    movq 8(%rsp), %r9\n" /* the sixth argument came on the stack */
        "    syscall\n"
        ".globl vmpk__syscall_return\n"
        ".hidden vmpk__syscall_return\n"
        "vmpk__syscall_return:\n"
        "    ret\n"
        ".size vmpk__syscall6, .-vmpk__syscall6\n");
