#!/usr/bin/env bash
# The guest's two vitest suites (as scripts/vm/suites.sh runs them) without
# its C suites, for a second Node line in CI (.ci/run): the C code is the
# same whichever Node runs, the Node-facing behaviour is not (Node 20's V8
# holds a pkey, later ones none). Node comes from PATH, as in run.sh.
#
#   VMPK_VM_OUT=DIR bash scripts/ci/guest-vitest.sh    # on the host
# Writes DIR/manifest.tsv for scripts/vm/count.mjs.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${VMPK_VM_OUT:?set VMPK_VM_OUT to a results directory}
manifest=$out/manifest.tsv

if [[ ${1:-} != --in-guest ]]; then
  mkdir -p "$out"
  rm -f "$manifest"
  export VMPK_VM_OUT VMPK_BACKEND=pku VMPK_VM_TIMEOUT=${VMPK_VM_TIMEOUT:-1200}
  rc=0
  bash scripts/vm/run.sh bash scripts/ci/guest-vitest.sh --in-guest || rc=$?
  printf 'run\texit\t%s\t-\n' "$rc" >>"$manifest"
  node scripts/vm/count.mjs "$manifest"
  exit
fi

printf '#label\tguest (pku backend, VMPK_BACKEND=%s), node %s, vitest only\n#skips\tfail\n' \
  "${VMPK_BACKEND:-}" "$(node --version)" >"$manifest"
failures=0
suite() {
  local name=$1 file=$2 rc
  shift 2
  echo "=== $name: $*"
  printf '%s\tvitest\t?\t%s\n' "$name" "$file" >>"$manifest"
  "$@"
  rc=$?
  printf '%s\tvitest\t%s\t%s\n' "$name" "$rc" "$file" >>"$manifest"
  ((rc == 0)) || failures=$((failures + 1))
}
export VMPK_SCALE=${VMPK_SCALE:-0.1}
# The tenant cache's and the inspector's files are left out here: they use
# the library the same way on every Node line and take minutes under TCG;
# the newest LTS runs them in the guest (scripts/vm/suites.sh).
suite vitest "$out/vitest.json" node_modules/.bin/vitest run --passWithNoTests \
  --exclude 'test/tenant-cache*' --exclude 'test/inspect*' \
  --reporter=default --reporter=json --outputFile.json="$out/vitest.json"
suite vitest-hardened "$out/vitest-hardened.json" env VMPK_HARDEN=1 \
  node_modules/.bin/vitest run test/behaviour.test.ts test/threads.test.ts test/harden.test.ts \
  --reporter=default --reporter=json --outputFile.json="$out/vitest-hardened.json"
((failures == 0))
