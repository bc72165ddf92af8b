#!/usr/bin/env bash
# Builds a Debian root filesystem image for banger: debootstrap (needs root) a minimal system with systemd,
# udev, iproute2 and openssh-server into a temporary tree, then pack it with mkfs.ext4 -d (no mount).
# Run customize-rootfs.sh on the result: it adds the SSH key and the units that make sshd host keys at boot.
# With --debian-kernel KDIR, Debian's cloud kernel is installed too and KDIR gets vmlinuz, initrd.img and
# (through extract-vmlinux.sh) the ELF vmlinux that Firecracker boots.
# Prints "phase: <name>" lines on stdout; tool output goes to stderr.
# Exit status: 0 built; 1 a step failed; 2 bad usage.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
usage() {
  echo "usage: $prog --out FILE --size SIZE [--suite bookworm] [--packages a,b] [--mirror URL] [--debian-kernel KDIR]" >&2
  exit 2
}
bad() {
  echo "$prog: $*" >&2
  exit 2
}
fail() {
  echo "$prog: $*" >&2
  exit 1
}
phase() { echo "phase: $1"; }

out='' size='' suite=bookworm packages='' mirror=http://deb.debian.org/debian kdir=''
while [[ $# -gt 0 ]]; do
  [[ $1 == -h || $1 == --help ]] && usage
  [[ $# -ge 2 ]] || bad "$1 needs a value"
  case $1 in
    --out) out=$2 ;;
    --size) size=$2 ;;
    --suite) suite=$2 ;;
    --packages) packages=$2 ;;
    --mirror) mirror=$2 ;;
    --debian-kernel) kdir=$2 ;;
    *) bad "unknown option $1" ;;
  esac
  shift 2
done

[[ -n $out ]] || bad "--out FILE is required"
[[ -n $size ]] || bad "--size SIZE is required (like 1G or 512M)"
[[ $size =~ ^[1-9][0-9]*([KMGT])?$ ]] || bad "--size $size: expected a number with an optional K, M, G or T suffix"
[[ $suite =~ ^[a-z]+$ ]] || bad "--suite $suite: expected a Debian suite name like bookworm"
[[ -z $packages || $packages =~ ^[a-z0-9][a-z0-9+.-]*(,[a-z0-9][a-z0-9+.-]*)*$ ]] ||
  bad "--packages $packages: expected Debian package names separated by commas"
[[ $mirror =~ ^https?://[^[:space:]]+$ ]] || bad "--mirror $mirror: expected an http(s) URL"
[[ ! -d $out ]] || bad "--out $out is a directory"
[[ -d $(dirname -- "$out") ]] || bad "--out $out: its directory does not exist"
[[ -z $kdir || -d $kdir ]] || bad "--debian-kernel $kdir: no such directory"

# Size in bytes, with mke2fs's binary suffixes.
case $size in
  *K) shift_by=10 ;; *M) shift_by=20 ;; *G) shift_by=30 ;; *T) shift_by=40 ;; *) shift_by=0 ;;
esac
size_bytes=$((${size%[KMGT]} << shift_by))
((size_bytes >= 64 << 20)) || bad "--size $size: a Debian rootfs needs at least 64M"

[[ $(id -u) -eq 0 ]] || fail "debootstrap needs root (it chroots and makes device nodes): run it with sudo"
for tool in debootstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || fail "$tool not found on PATH (apt-get install debootstrap e2fsprogs)"
done

if command -v dpkg >/dev/null; then
  arch=$(dpkg --print-architecture)
else
  case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) fail "unsupported machine $(uname -m)" ;;
  esac
fi

include=openssh-server,systemd-sysv,iproute2,udev
[[ -z $packages ]] || include+=,$packages
[[ -z $kdir ]] || include+=,linux-image-cloud-$arch,initramfs-tools

work=$(mktemp -d "${TMPDIR:-/var/tmp}/build-rootfs.XXXXXX")
root=$work/root
partial=$out.partial.$$

# debootstrap mounts /proc and /sys inside the tree: unmount them before deleting, never delete through them.
cleanup() {
  local m
  awk -v r="$work" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  if awk -v r="$work" 'index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "$prog: left $work in place: something is still mounted under it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  rm -f "$partial"
}
trap cleanup EXIT

phase debootstrap
debootstrap --variant=minbase --arch="$arch" --include="$include" "$suite" "$root" "$mirror" >&2 ||
  fail "debootstrap $suite from $mirror failed (see the messages above; $root/debootstrap/debootstrap.log has details)"

phase configure
echo banger >"$root/etc/hostname"
# Empty: banger-net writes a fallback name server at boot; debootstrap copied the build host's.
: >"$root/etc/resolv.conf"
# Empty: systemd makes a machine id on each VM's first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Host keys are made on each VM's first boot (customize-rootfs.sh's unit), not shared by every VM of the image.
rm -f "$root"/etc/ssh/ssh_host_*
printf '/dev/vda / ext4 rw,noatime 0 1\n' >"$root/etc/fstab"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log

if [[ -n $kdir ]]; then
  phase kernel
  vmlinuz=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
  initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
  [[ -n $vmlinuz ]] || fail "the kernel package left no /boot/vmlinuz-* in the tree"
  [[ -n $initrd ]] || fail "initramfs-tools left no /boot/initrd.img-* in the tree"
  cp -- "$vmlinuz" "$kdir/vmlinuz"
  cp -- "$initrd" "$kdir/initrd.img"
  echo "${vmlinuz##*/vmlinuz-}" >"$kdir/kernel-release"
  "$here/extract-vmlinux.sh" "$kdir/vmlinuz" "$kdir/vmlinux" >&2
  # The guest boots these from the host; only its modules need to stay in the image.
  rm -f "$root"/boot/vmlinuz-* "$root"/boot/initrd.img-* "$root"/vmlinuz* "$root"/initrd.img*
fi

phase mkfs
used=$(du -s --block-size=1 --one-file-system "$root" | cut -f1)
# Leave room for inode tables, the journal and reserved blocks.
if ((used + used / 4 + (32 << 20) > size_bytes)); then
  fail "the tree takes $((used >> 20))M; --size $size is too small (try $(((used + used / 4 + (96 << 20)) >> 20))M or more)"
fi
mkfs.ext4 -q -F -L rootfs -d "$root" "$partial" "$((size_bytes >> 10))K" >&2 || fail "mkfs.ext4 -d $root $partial $size failed"
mv -f -- "$partial" "$out"
phase 'done'
