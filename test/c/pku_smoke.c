/* pku_smoke: proves that this machine (or the QEMU guest) really enforces
 * protection keys, without vmpk's core. It allocates a hardware key, tags a
 * page with it, denies access by writing PKRU directly, observes the fault
 * (SIGSEGV, si_code SEGV_PKUERR, si_pkey = the key), then grants access again
 * and reads the value back.
 *
 * Prints TAP-like lines and a closing "N passed, N failed, N skipped" line,
 * the form test/c/run.sh sums.
 * Exit status: 0 all passed, 1 something failed, 77 PKU is absent (skip;
 * where PKU is promised, as in the guest, the caller counts that as failure).
 *
 *   cc -O2 -Wall -Wextra -Werror -o pku_smoke test/c/pku_smoke.c
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXIT_SKIP 77

#ifndef SEGV_PKUERR
#define SEGV_PKUERR 4
#endif

/* PKRU holds 2 bits per key: bit 2k = AD (access disable), 2k+1 = WD. */
#define PKRU_AD 1u
#define PKRU_WD 2u
#define PKRU_BITS(key, bits) ((uint32_t)(bits) << (2 * (key)))

static int passed, failed;

static void check(int ok, const char *what) {
  if (ok)
    passed++;
  else
    failed++;
  printf("%s %d - %s\n", ok ? "ok" : "not ok", passed + failed, what);
}

/* RDPKRU: ECX must be 0; the value comes back in EAX (EDX is cleared). */
static uint32_t rdpkru(void) {
  uint32_t eax, edx;
  __asm__ volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

/* WRPKRU: EAX = value; ECX and EDX must be 0, else #GP. */
static void wrpkru(uint32_t value) {
  __asm__ volatile(".byte 0x0f,0x01,0xef" : : "a"(value), "c"(0), "d"(0) : "memory");
}

/* Changes only `key`'s two bits: other keys may belong to someone else. */
static uint32_t set_key_bits(int key, uint32_t bits) {
  uint32_t pkru = (rdpkru() & ~PKRU_BITS(key, 3)) | PKRU_BITS(key, bits);
  wrpkru(pkru);
  return pkru;
}

/* CPUID.(EAX=7,ECX=0):ECX bit 3 = PKU (the CPU has it), bit 4 = OSPKE (the
 * kernel turned it on). Without both, RDPKRU/WRPKRU raise #UD. */
static int cpu_has_pku(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return 0;
  return (c & (1u << 3)) && (c & (1u << 4));
}

/* What the SIGSEGV handler saw. */
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_seen;
static volatile int fault_code;
static volatile unsigned fault_pkey;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  fault_seen = 1;
  fault_code = si->si_code;
  fault_addr = si->si_addr;
#ifdef si_pkey
  fault_pkey = si->si_pkey;
#else /* glibc < 2.27: the kernel puts the key 16 bytes after si_addr */
  fault_pkey = *(const uint32_t *)((const char *)&si->si_addr + 16);
#endif
  siglongjmp(fault_jmp, 1);
}

/* Reads or writes *p; returns 1 if that faulted. The handler runs with the
 * kernel's default PKRU and siglongjmp keeps it, so put ours back after. */
static int faults(volatile int *p, int write, int *value) {
  uint32_t pkru = rdpkru();
  fault_seen = 0;
  if (sigsetjmp(fault_jmp, 1) == 0) {
    if (write)
      *p = *value;
    else
      *value = *p;
    return 0;
  }
  wrpkru(pkru);
  return 1;
}

static int finish(void) {
  printf("1..%d\n", passed + failed);
  printf("%d passed, %d failed, 0 skipped\n", passed, failed);
  return failed ? 1 : 0;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);

  int key = cpu_has_pku() ? pkey_alloc(0, 0) : -1;
  if (key < 0) {
    /* EINVAL/ENOSPC/ENOSYS here all mean "no usable keys" (see BRIEF 2). */
    printf("# PKU is absent: CPUID pku+ospke %s, pkey_alloc %s\n",
           cpu_has_pku() ? "present" : "missing", cpu_has_pku() ? strerror(errno) : "not tried");
    printf("1..0 # SKIP no PKU on this machine\n");
    printf("0 passed, 0 failed, 1 skipped\n");
    return EXIT_SKIP;
  }
  check(key >= 1 && key <= 15, "pkey_alloc returns a hardware key in 1..15");
  printf("# key %d, PKRU 0x%08x\n", key, rdpkru());

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);

  long page = sysconf(_SC_PAGESIZE);
  int *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    check(0, "mmap one page");
    return finish();
  }
  volatile int *p = mem;
  check(pkey_mprotect(mem, page, PROT_READ | PROT_WRITE, key) == 0, "pkey_mprotect tags the page");

  int value = 0x5eed;
  check(!faults(p, 1, &value), "write while the key grants access");

  uint32_t before = rdpkru();
  uint32_t denied = set_key_bits(key, PKRU_AD);
  check(rdpkru() == denied && (denied ^ before) == PKRU_BITS(key, PKRU_AD),
        "WRPKRU sets only the key's access-disable bit");
  printf("# PKRU 0x%08x -> 0x%08x\n", before, denied);

  int got = 0;
  int hit = faults(p, 0, &got);
  check(hit, "a read with access disabled faults");
  check(hit && fault_code == SEGV_PKUERR, "the fault is SEGV_PKUERR (si_code 4)");
  check(hit && fault_pkey == (unsigned)key, "si_pkey names the key");
  check(hit && fault_addr == (void *)mem, "si_addr is the page");
  printf("# fault: si_code %d, si_pkey %u, si_addr %p\n", fault_code, fault_pkey, fault_addr);

  /* Write-disable alone: reads pass, writes fault. */
  set_key_bits(key, PKRU_WD);
  check(!faults(p, 0, &got) && got == value, "a read with only write disabled passes");
  int other = 0x0bad;
  hit = faults(p, 1, &other);
  check(hit && fault_code == SEGV_PKUERR && fault_pkey == (unsigned)key,
        "a write with write disabled faults with SEGV_PKUERR");

  set_key_bits(key, 0);
  got = 0;
  check(!faults(p, 0, &got) && got == value, "access granted again reads the value back");
  printf("# read back 0x%x\n", got);

  munmap(mem, page);
  check(pkey_free(key) == 0, "pkey_free");
  return finish();
}
