#!/usr/bin/env bash
# Builds the guest's kernel and initramfs once and caches them outside the
# tree; prints the cache directory that holds `vmlinuz` and `initramfs.cpio`.
#
# The cache key hashes this script, the guest init and the probe, so editing
# any of them builds a fresh image; the kernel .deb is kept and reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VMPK_VM_CACHE:-$HOME/.cache/vmpk-vm}
key=$(cat "$here/image.sh" "$here/init.sh" "$here/pkey-probe.c" | sha256sum | cut -c1-16)
image=$cache/image-$key

if [[ -f $image/vmlinuz && -f $image/initramfs.cpio ]]; then
  echo "$image"
  exit 0
fi

# What the guest needs beyond the built-in drivers: the virtio PCI transport,
# 9p over virtio, and overlayfs for the writable root. Their dependencies are
# added from each module's .modinfo, since busybox insmod does not resolve them.
wanted=(virtio_pci 9pnet_virtio 9p overlay)

log() { echo "vmpk-vm: $*" >&2; }

# The kernel Debian's linux-image-amd64 points at: a stock 6.1 kernel built
# with CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS=y.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

mkdir -p "$cache/debs"
pkg=$(kernel_package)
if [[ -z $pkg && $EUID -eq 0 ]]; then
  log "no apt package lists; running apt-get update"
  apt-get update -qq >&2
  pkg=$(kernel_package)
fi
[[ -n $pkg ]] || { log "cannot resolve linux-image-amd64 (run: apt-get update)"; exit 1; }

deb=$(ls "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
  log "downloading $pkg"
  # As root apt wants to drop to the _apt user, which cannot write here.
  sandbox=()
  [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$cache/debs" && apt-get download -qq "${sandbox[@]}" "$pkg" >&2)
  deb=$(ls "$cache/debs/${pkg}_"*.deb | head -n1)
fi

log "building the guest image from $(basename "$deb")"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

dpkg -x "$deb" "$work/deb"
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lower,rw,lib/modules}

cp "$work"/deb/boot/vmlinuz-* "$work/vmlinuz"
order=()
# Appends module $1 to `order` after everything it depends on.
add_module() {
  local m=$1 ko dep
  [[ " ${order[*]} " == *" $m "* ]] && return
  ko=$(find "$work/deb/lib/modules" -name "$m.ko" -print -quit)
  [[ -n $ko ]] || { log "module $m.ko is not in $(basename "$deb")"; exit 1; }
  objcopy -O binary --only-section=.modinfo "$ko" "$work/modinfo"
  for dep in $(tr '\0' '\n' <"$work/modinfo" | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$dep"
  done
  cp "$ko" "$root/lib/modules/"
  order+=("$m")
}
for m in "${wanted[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

cp /bin/busybox "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
cc -static -O2 -Wall -Wextra -Werror -o "$root/bin/pkey-probe" "$here/pkey-probe.c"

(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"

mkdir -p "$work/image"
mv "$work/vmlinuz" "$work/initramfs.cpio" "$work/image/"
echo "$pkg" >"$work/image/kernel-package"
# Another run may have built the same image meanwhile: keep whichever landed.
mv -T "$work/image" "$image" 2>/dev/null || true
log "cached in $image"
echo "$image"
