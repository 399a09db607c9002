#!/usr/bin/env bash
# Runs one command in a QEMU guest whose CPU has PKU (TCG, -cpu max), with the
# current directory as cwd and the host's node on PATH; streams its output and
# exits with its exit status. See docs/testing.md.
#
#   scripts/vm/run.sh [--timeout SECONDS] [--] COMMAND [ARGS...]
#
# Environment: VMPK_VM_TIMEOUT (seconds, default 600), VMPK_VM_OUT (a host
# directory the guest can write, mounted at the same path; default: a fresh
# temporary one), VMPK_VM_ENV (names of extra variables to pass),
# VMPK_VM_MEM (MiB, default 2048), VMPK_VM_SMP (default 2), VMPK_VM_VERBOSE=1
# (show the boot console), VMPK_VM_CACHE (image cache, see image.sh).
#
# Exit status: the command's; 124 when the guest ran out of time; 125 when
# the guest failed (setup error, kernel panic, power-off before the command ended).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${VMPK_VM_TIMEOUT:-600}

usage() { sed -n 's/^#   //p' "${BASH_SOURCE[0]}"; }
die() { echo "vmpk-vm: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) [[ $# -ge 2 ]] || die "--timeout needs a value"; timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "usage: $(usage)" >&2; exit 2; }
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "the timeout must be a whole number of seconds, not '$timeout_s'"

bash "$here/deps.sh"
image=$(bash "$here/image.sh")

run=$(mktemp -d "${TMPDIR:-/tmp}/vmpk-vm.XXXXXX")
out=${VMPK_VM_OUT:-$run/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# The path travels on the kernel command line (split on spaces) and in a
# QEMU option (split on commas).
[[ $out != *[[:space:],]* ]] || die "VMPK_VM_OUT must not contain spaces or commas: '$out'"
keep_run=
cleanup() {
  rm -f "$out/.vmpk-vm-cmd"
  [[ -n $keep_run ]] || rm -rf "$run"
}
trap cleanup EXIT

# The guest's shell (the host's bash, inside the chroot) runs this file.
pass=(CI PATH HOME LANG LC_ALL TZ TERM NODE_OPTIONS NO_COLOR FORCE_COLOR
  $(compgen -e VMPK_ || true) ${VMPK_VM_ENV:-})
{
  for name in "${pass[@]}"; do
    [[ -v $name ]] && printf 'export %s=%q\n' "$name" "${!name}"
  done
  echo 'export PATH=$PATH:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin'
  # No network in the guest: keep npm from looking for updates.
  printf 'export VMPK_VM=1 VMPK_VM_OUT=%q npm_config_update_notifier=false\n' "$out"
  printf 'cd %q || exit 125\n' "$PWD"
  printf 'exec'
  printf ' %q' "$@"
  echo
} >"$out/.vmpk-vm-cmd"

qemu=(qemu-system-x86_64 -accel tcg -cpu "${VMPK_VM_CPU:-max}" -smp "${VMPK_VM_SMP:-2}" -m "${VMPK_VM_MEM:-2048}"
  -nographic -no-reboot -nic none
  -kernel "$image/vmlinuz" -initrd "$image/initramfs.cpio"
  # no_timer_check: under TCG on a loaded host the kernel's check that the
  # timer reaches the IO-APIC can fail and panic the boot (seen in CI).
  -append "console=ttyS0 quiet panic=-1 no_timer_check vmpk.out=$out"
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$out,mount_tag=vmpkout,security_model=none")

# Reads the guest console: logs all of it, shows what lies between init's
# START and EXIT markers (everything with VMPK_VM_VERBOSE), saves the status.
filter() {
  local phase=boot line
  exec 3>"$run/console.log"
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >&3
    case $phase in
      boot)
        [[ -n ${VMPK_VM_VERBOSE:-} ]] && printf '%s\n' "$line"
        if [[ $line == *VMPK-VM-START ]]; then phase=cmd; : >"$run/started"; fi ;;
      cmd)
        if [[ $line =~ ^(.*)VMPK-VM-EXIT\ ([0-9]+)$ ]]; then
          [[ -n ${BASH_REMATCH[1]} ]] && printf '%s\n' "${BASH_REMATCH[1]}"
          echo "${BASH_REMATCH[2]}" >"$run/status"
          phase=done
        else
          printf '%s\n' "$line"
        fi ;;
      done) [[ -n ${VMPK_VM_VERBOSE:-} ]] && printf '%s\n' "$line" ;;
    esac
  done
  return 0
}

# --foreground: Ctrl-C reaches QEMU instead of leaving it running.
set +e
timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" </dev/null | filter
qemu_rc=${PIPESTATUS[0]}
set -e

if [[ -f $run/status ]]; then
  rc=$(<"$run/status")
  case $rc in
    0) ;;
    127) echo "vmpk-vm: '$1' was not found in the guest (exit status 127)" >&2 ;;
    12[56]) echo "vmpk-vm: '$1' could not run in the guest (exit status $rc)" >&2 ;;
    *) if ((rc > 128)); then
         echo "vmpk-vm: '$1' was killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?')) in the guest" >&2
       else
         echo "vmpk-vm: '$1' exited with status $rc in the guest" >&2
       fi ;;
  esac
  exit "$rc"
fi

# No exit status came back: say why, from what the console showed.
keep_run=1
panic=$(grep -m1 -o 'Kernel panic - not syncing: .*' "$run/console.log" || true)
reason=$(grep -o 'vmpk-vm: .*' "$run/console.log" | tail -n1 || true) # from fail() in init.sh
if [[ $qemu_rc -eq 124 || $qemu_rc -eq 137 ]]; then
  echo "vmpk-vm: the guest did not finish within ${timeout_s}s (VMPK_VM_TIMEOUT or --timeout); stopped it" >&2
  rc=124
elif [[ -n $panic ]]; then
  echo "vmpk-vm: the guest kernel panicked: ${panic#Kernel panic - not syncing: }" >&2
  rc=125
elif [[ $qemu_rc -ne 0 ]]; then
  echo "vmpk-vm: qemu-system-x86_64 failed with status $qemu_rc" >&2
  rc=125
elif [[ -f $run/started ]]; then
  echo "vmpk-vm: the guest powered off before the command finished" >&2
  rc=125
else
  echo "vmpk-vm: the guest stopped before running the command${reason:+: ${reason#vmpk-vm: }}" >&2
  rc=125
fi
# The console before the command was not shown: show its end unless init said why.
if [[ ! -f $run/started && -z ${VMPK_VM_VERBOSE:-} && ( -z $reason || $rc -eq 124 ) ]]; then
  echo "vmpk-vm: last console lines:" >&2
  tail -n 20 "$run/console.log" >&2
fi
echo "vmpk-vm: full console log: $run/console.log" >&2
exit "$rc"
