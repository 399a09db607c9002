#!/usr/bin/env bash
# Makes sure the Debian packages the guest needs are installed: QEMU (TCG is
# the only accelerator that gives PKU on hosts without it), a static busybox
# for the initramfs, and cpio to pack it; libmemcached-tools for the
# tenant-cache tests (memccapable, memccp, memccat, memcslap), which run on
# the host and in the guest, and memcached itself, which they run side by side. Installs them when run as root, otherwise prints
# the one command to run.
set -euo pipefail

# gcc-aarch64-linux-gnu, qemu-user-static and file: the linux-arm64 run
# (scripts/arm64/run.sh).
# python3-pymemcache: a client of the tenant-cache interop test (run with
# /usr/bin/python3, Debian's).
packages=(qemu-system-x86 busybox-static cpio libmemcached-tools memcached
  gcc-aarch64-linux-gnu qemu-user-static file python3-pymemcache)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $EUID -ne 0 ]]; then
  echo "vmpk-vm: missing Debian packages: ${missing[*]}" >&2
  echo "vmpk-vm: install them with: sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "vmpk-vm: installing ${missing[*]} (one time)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
