#!/usr/bin/env bash
# The test suites that `npm run test:vm` runs inside the guest (test.sh starts
# this through run.sh). Each suite's output and exit status land in
# $VMPK_VM_OUT, listed in manifest.tsv, which count.mjs reads on the host.
# To add a suite, add a `suite` line at the bottom.
set -uo pipefail # no -e: every suite runs, whatever the ones before did

out=${VMPK_VM_OUT:?run this in the guest through scripts/vm/test.sh}
manifest=$out/manifest.tsv
printf '#label\tguest (pku backend, VMPK_BACKEND=%s)\n#skips\tfail\n' "${VMPK_BACKEND:-}" >"$manifest"
failures=0

# suite NAME KIND FILE COMMAND...: runs COMMAND and records it. KIND text: the
# output goes to FILE too and ends with an "N passed, N failed" line; KIND
# vitest: the command writes its JSON report to FILE.
suite() {
  local name=$1 kind=$2 file=$3 rc
  shift 3
  echo "=== $name: $*"
  # "?" until it ends: a guest that dies mid-suite leaves it marked unfinished.
  printf '%s\t%s\t?\t%s\n' "$name" "$kind" "$file" >>"$manifest"
  if [[ $kind == text ]]; then
    "$@" 2>&1 | tee "$file"
  else
    "$@"
  fi
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$rc" "$file" >>"$manifest"
  ((rc == 0)) || failures=$((failures + 1))
}

# Proves the guest (no vmpk code needed): exits 77 where PKU is missing.
smoke() {
  local bin
  bin=$(mktemp -d)/pku_smoke
  cc -O2 -Wall -Wextra -Werror -o "$bin" test/c/pku_smoke.c && "$bin"
}

suite c text "$out/c.log" make -s -C native test
# make test runs the smoke test too (test/c/run.sh); run it here only when
# that did not, so it is counted once.
grep -q '^\[pku_smoke\]' "$out/c.log" || suite smoke text "$out/smoke.log" smoke
# The two TypeScript stress tests run at a tenth of their size in the guest
# (TCG is 10-45x slower; at full size they take 7-8 min more); the host runs
# them whole, and the C stress runs whole here.
export VMPK_SCALE=${VMPK_SCALE:-0.1}
suite vitest vitest "$out/vitest.json" node_modules/.bin/vitest run --passWithNoTests \
  --reporter=default --reporter=json --outputFile.json="$out/vitest.json"
# The main behaviour and threads tests once more in hardened mode (vmpk's
# seccomp filter on in every test process, VMPK_HARDEN=1): the filter must
# not break Node. harden.test.ts checks that the run really was hardened.
# About 1.5 minutes here.
suite vitest-hardened vitest "$out/vitest-hardened.json" env VMPK_HARDEN=1 \
  node_modules/.bin/vitest run test/behaviour.test.ts test/threads.test.ts test/harden.test.ts \
  --reporter=default --reporter=json --outputFile.json="$out/vitest-hardened.json"

((failures == 0))
