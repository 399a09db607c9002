#!/bin/busybox sh
# PID 1 of the vmpk guest (busybox sh from the initramfs built by image.sh).
#
# Mounts the host's root read-only over 9p under a tmpfs-backed overlay, so the
# host's node, npm, make and cc run unchanged and every write stays in guest
# memory; mounts the host's run directory (writable 9p) at its host path;
# checks that PKU works; runs the command that run.sh wrote there; reports its
# exit status on the console as `VMPK-VM-EXIT <code>` and powers off.
# Markers are the protocol with run.sh: keep them in sync.
/bin/busybox --install -s /bin
export PATH=/bin

# A setup failure prints no EXIT marker; run.sh reports these lines.
fail() {
  echo "vmpk-vm: $*"
  poweroff -f
  exit 1
}

mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys

for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m.ko" || fail "cannot load kernel module $m"
done

grep -qw pku /proc/cpuinfo || fail "the guest CPU has no pku flag (QEMU must run with -accel tcg -cpu max)"
grep -qw ospke /proc/cpuinfo || fail "the guest kernel did not enable PKU (no ospke flag in /proc/cpuinfo)"
pkey-probe || fail "pkey_alloc does not work in the guest"
# No network card (-nic none), but loopback: tests talk TCP on 127.0.0.1.
ip link set lo up || fail "cannot bring up the loopback interface"

# cache=loose: the host's root does not change under a short run, and caching
# it takes about a second off every node start (measured: 1.5 s against 2.4 s).
p9=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "ro,$p9,cache=loose" hostroot /lower || fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the overlay over the host's root"

mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm

# run.sh passes the run directory's host path; mounting it at the same path
# lets host and guest name result files alike. Uncached, so writes reach the host.
out=
for arg in $(cat /proc/cmdline); do
  case $arg in vmpk.out=*) out=${arg#vmpk.out=} ;; esac
done
[ -n "$out" ] || fail "no vmpk.out= on the kernel command line"
mount -t 9p -o "$p9" vmpkout "/newroot$out" || fail "cannot mount the run directory $out"

echo VMPK-VM-START
# The command gets no stdin and writes into a pipe, as under CI.
set -o pipefail
chroot /newroot /bin/bash "$out/.vmpk-vm-cmd" </dev/null 2>&1 | cat
rc=$?
echo "VMPK-VM-EXIT $rc"
umount "/newroot$out"
poweroff -f
