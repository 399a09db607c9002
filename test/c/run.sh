#!/bin/sh
# Runs the C tests built under native/build and sums their results:
#   run.sh BUILD_DIR         release and ASan+UBSan builds, the smoke test, and
#                            on the host (VMPK_BACKEND is not pku) the stub
#                            build's counts and the ThreadSanitizer stress
#   run.sh BUILD_DIR tsan    the ThreadSanitizer stress alone
# Each binary ends with "N passed, N failed, N skipped". The last line here is
# "C tests: N passed, N failed"; skips are listed on the line before it.
build=$1
passed=0 failed=0 skipped=0

run() { # label, command...
    label=$1
    shift
    out=$("$@" 2>&1)
    status=$?
    printf '%s\n' "$out" | sed "s|^|[$label] |"
    summary=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$summary" ]; then
        echo "[$label] no summary line (exit status $status): counted as one failure"
        failed=$((failed + 1))
        return
    fi
    set -- $summary
    passed=$((passed + $1)) failed=$((failed + $3)) skipped=$((skipped + ${5:-0}))
    if [ "$3" = 0 ] && [ "$status" != 0 ]; then
        echo "[$label] exit status $status with no failed test: counted as one failure"
        failed=$((failed + 1))
    fi
}

if [ "$2" = tsan ]; then
    run tsan env VMPK_BACKEND=pku "$build/tsan/test_stress" quiet
else
    for t in "$build"/release/test_*; do
        run "$(basename "$t")" "$t"
        # ASan and UBSan look for bugs, not load: a fifth of the stress will do.
        run "$(basename "$t") asan+ubsan" env VMPK_STRESS_GATES=200000 \
            "$build/san/$(basename "$t")"
    done
    if [ "$VMPK_BACKEND" != pku ]; then
        # Stand-ins where PKU is missing, both with PKRU stubbed: the pku
        # backend's bookkeeping counted exactly, and its locking under TSan.
        run "test_counts stub" env VMPK_BACKEND=pku "$build/stub/test_counts"
        run "test_stress tsan" env VMPK_BACKEND=pku VMPK_STRESS_GATES=200000 \
            "$build/tsan/test_stress" quiet
    fi
    # The smoke test proves real PKU semantics; it skips (exit 77) without PKU.
    "$build/pku_smoke" >/tmp/vmpk-smoke.$$ 2>&1
    status=$?
    if [ $status = 77 ]; then
        echo "[pku_smoke] skipped: no PKU on this machine"
        skipped=$((skipped + 1))
    else
        run pku_smoke cat /tmp/vmpk-smoke.$$
        [ $status = 0 ] || { echo "[pku_smoke] exit status $status"; failed=$((failed + 1)); }
    fi
    rm -f /tmp/vmpk-smoke.$$
fi
echo "C tests skipped: $skipped"
echo "C tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
