#!/usr/bin/env bash
# linux-arm64: builds the native core for aarch64 (platform/aarch64: no x86
# code, the mprotect backend) and runs the C tests that are not x86 by
# nature under qemu-user, writing a manifest that scripts/vm/count.mjs counts.
#
#   bash scripts/arm64/run.sh [OUT_DIR]     (default: native/build/aarch64/results)
#
# Needs Debian's gcc-aarch64-linux-gnu and qemu-user-static
# (apt-get install gcc-aarch64-linux-gnu qemu-user-static).
# Left out: test_exec (the code cache's tests emit x86 machine code),
# test_harden and test_meta (x86 assembly in the tests, the x86-64 seccomp
# filter), test_counts (the x86 PKRU stub build), test_stress (hours under
# emulation).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${1:-native/build/aarch64/results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
for tool in "$CC" qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "arm64: $tool missing (apt-get install gcc-aarch64-linux-gnu qemu-user-static)"; exit 2; }
done
export QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
# qemu-user 7 cannot hold the arena's 4 TiB reservation (the run is killed),
# so the guest gets 1 TiB of address space and the arena takes the largest
# size that fits (arena.c halves down to 16 GiB). test_api's 100,000 keys
# need more than 128 GiB. test_batch sizes its failing batch from the arena
# it got.
QEMU="qemu-aarch64-static -R 0x10000000000"
TESTS="test_api test_batch test_faults test_fork test_model test_pkru test_threads"
make_a64() { make -s -C native OUT=build/aarch64 CC="$CC" ARCH=aarch64 "$@"; }

{
  printf '#label\tlinux-arm64 (qemu-user, mprotect backend)\n#skips\tok\n'
  make_a64 build/aarch64/release/libvmpk.a >"$out/build.log" 2>&1
  printf 'build\texit\t%s\t-\n' "$?"
  # No x86 code: every object is aarch64, and none comes from platform/x86_64.
  bad=$(cd native/build/aarch64/release && find . -name '*.o' | while read -r o; do
    file "$o" | grep -q 'ARM aarch64' || echo "$o"; done; ar t libvmpk.a | grep -x -e 'cpu.o' -e 'sigframe.o' >/dev/null || echo "no platform objects")
  find native/build/aarch64/release -path '*x86_64*' -name '*.o' | grep -q . && bad="$bad x86_64 objects"
  if [ -z "$bad" ]; then echo "no x86 code: 1 passed, 0 failed"; else echo "x86 code: $bad"; echo "no x86 code: 0 passed, 1 failed"; fi >"$out/no-x86.log"
  printf 'no-x86\ttext\t-\t%s\n' "$out/no-x86.log"
  for t in $TESTS; do
    make_a64 "build/aarch64/release/$t" >>"$out/build.log" 2>&1
    # VMPK_BACKEND unset: auto must pick mprotect (test_api prints it).
    env -u VMPK_BACKEND timeout 900 $QEMU "native/build/aarch64/release/$t" >"$out/$t.log" 2>&1
    printf '%s\ttext\t%s\t%s\n' "$t" "$?" "$out/$t.log"
  done
} >"$out/manifest.tsv"
grep -h '^# backend' "$out/test_api.log" | head -1
node scripts/vm/count.mjs "$out/manifest.tsv"
