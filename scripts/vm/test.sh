#!/usr/bin/env bash
# npm run test:vm: runs the test suites (suites.sh) in the PKU guest with
# VMPK_BACKEND=pku (the pku backend is required: a skipped test is a failure),
# then counts their results on the host with count.mjs.
#
# Environment: VMPK_VM_OUT keeps the results there (.ci/run uses it);
# VMPK_VM_TIMEOUT defaults to 1200 s here; the rest as in run.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."

if [[ -z ${VMPK_VM_OUT:-} ]]; then
  VMPK_VM_OUT=$(mktemp -d "${TMPDIR:-/tmp}/vmpk-test-vm.XXXXXX")
  trap 'rm -rf "$VMPK_VM_OUT"' EXIT
fi
mkdir -p "$VMPK_VM_OUT"
export VMPK_VM_OUT VMPK_BACKEND=pku
export VMPK_VM_TIMEOUT=${VMPK_VM_TIMEOUT:-1200}

manifest=$VMPK_VM_OUT/manifest.tsv
rm -f "$manifest"
rc=0
bash "$here/run.sh" bash scripts/vm/suites.sh || rc=$?
# The guest's own failures (a timeout, a panic) count too.
printf 'run\texit\t%s\t-\n' "$rc" >>"$manifest"

echo "=== test:vm results"
node "$here/count.mjs" "$manifest"
