/*
 * vmpk's own system call instruction (<arch>/rawsyscall.c). Every memory call of
 * vmpk (mmap, mprotect, pkey_mprotect, munmap, madvise, pkey_alloc/free)
 * goes through vmpk__syscall6, whose single `syscall` instruction lives in
 * vmpk's .text. The hardened mode's seccomp filter lets those calls touch
 * vmpk's memory only when seccomp_data.instruction_pointer, the address
 * right after the instruction, equals vmpk__syscall_return. glibc's
 * wrappers would not do: their instruction is shared by the whole process.
 */
#ifndef VMPK_RAWSYSCALL_H
#define VMPK_RAWSYSCALL_H

/* The raw kernel result: a value, or -errno (-4095..-1). */
long vmpk__syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

/* The address the kernel reports for a call made by vmpk__syscall6. */
extern const char vmpk__syscall_return[];

#endif /* VMPK_RAWSYSCALL_H */
