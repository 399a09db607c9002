/* See cpu.h: the target of every failed PKRU check. A jump lands here with
 * any stack alignment: realign, so abort() raises SIGABRT rather than
 * faulting. */
#include "cpu.h"

__asm__(".text\n"
        ".globl vmpk__pkru_mismatch\n"
        ".hidden vmpk__pkru_mismatch\n"
        ".type vmpk__pkru_mismatch, @function\n"
        "vmpk__pkru_mismatch:\n"
        "    andq $-16, %rsp\n"
        "    call abort@PLT\n"
        "    ud2\n");
