#!/usr/bin/env bash
# The live smoke test for a real KVM host with Firecracker: image -> VM -> SSH -> NAT -> stop -> rm,
# then checks that nothing of the VM is left on the host.
# usage: verify.sh [--image NAME | --kernel VMLINUX --rootfs ROOTFS | --build --kernel VMLINUX]
#                  [--nat] [--probe HOST:PORT] [--keep-image]
# Exit status: 0 all checks passed; 1 a check failed; 2 bad usage.
set -euo pipefail

prog=${0##*/}
usage() {
  sed -n '3,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "$prog: FAILED: $*" >&2
  exit 1
}

image='' kernel='' rootfs='' build=0 nat=0 probe='deb.debian.org:80' keep_image=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=${2:?--image needs a name}; shift 2 ;;
    --kernel) kernel=${2:?--kernel needs a path}; shift 2 ;;
    --rootfs) rootfs=${2:?--rootfs needs a path}; shift 2 ;;
    --build) build=1; shift ;;
    --nat) nat=1; shift ;;
    --probe) probe=${2:?--probe needs HOST:PORT}; shift 2 ;;
    --keep-image) keep_image=1; shift ;;
    -h | --help) usage ;;
    *) echo "$prog: unknown option $1" >&2; usage ;;
  esac
done
[[ $probe =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] || { echo "$prog: --probe $probe: expected HOST:PORT" >&2; exit 2; }
command -v banger >/dev/null || fail "banger is not on PATH (make install)"

suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
vm=verify-$suffix
made_image=''
vm_id=''
cleanup() {
  banger vm rm --force "$vm" >/dev/null 2>&1 || true
  if [[ -n $made_image && $keep_image -eq 0 ]]; then banger image rm "$made_image" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

step "doctor"
banger doctor || fail "banger doctor reports a failing prerequisite"

if [[ -z $image ]]; then
  image=verify-img-$suffix
  [[ -n $kernel ]] || { echo "$prog: give --image NAME, or --kernel (with --rootfs or --build)" >&2; exit 2; }
  if [[ $build -eq 1 ]]; then
    step "image build $image"
    banger image build "$image" --kernel "$kernel" --size 2G
  else
    [[ -n $rootfs ]] || { echo "$prog: --kernel needs --rootfs or --build" >&2; exit 2; }
    step "image add $image"
    banger image add "$image" --kernel "$kernel" --rootfs "$rootfs"
  fi
  made_image=$image
fi

step "vm create $vm --wait-ssh"
start=$(date +%s.%N)
banger vm create --name "$vm" --image "$image" --wait-ssh >/dev/null
awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "create to SSH banner: %.1f s\n", b - a }'
json=$(banger vm show "$vm" --json)
field() { node -e 'const o=JSON.parse(process.argv[1]); process.stdout.write(String(o[process.argv[2]]))' "$json" "$1"; }
vm_id=$(field id)
tap=$(field tap)
pid=$(field pid)
echo "vm $vm: id $vm_id, pid $pid, tap $tap, guest $(field guestIp)"

step "vm ssh: hostname and exit status"
[[ $(banger vm ssh "$vm" -- hostname) == "$vm" ]] || fail "the guest's hostname is not $vm"
set +e
banger vm ssh "$vm" -- sh -c 'exit 7'
status=$?
set -e
[[ $status -eq 7 ]] || fail "vm ssh did not pass the remote exit status through (got $status)"

step "outbound traffic through NAT to $probe"
banger vm ssh "$vm" -- bash -c "exec 3<>/dev/tcp/${probe%:*}/${probe#*:} && echo connected" || fail "the guest cannot reach $probe"

if [[ $nat -eq 1 ]]; then
  step "NAT rules while running"
  n=$( (iptables -S; iptables -t nat -S) | grep -c "banger:$vm_id" || true)
  [[ $n -eq 3 ]] || fail "expected 3 rules tagged banger:$vm_id, found $n"
  [[ $(sysctl -n net.ipv4.ip_forward) == 1 ]] || fail "net.ipv4.ip_forward is not 1"
fi

step "vm stop (graceful)"
banger vm stop "$vm"
[[ ! -e /proc/$pid ]] || fail "firecracker pid $pid still runs after stop"

step "vm start again, and rm"
banger vm start "$vm" >/dev/null
banger vm rm --force "$vm"

step "nothing left of $vm_id"
! ip -o link show | grep -q "$tap" || fail "TAP $tap is left"
! (iptables -S; iptables -t nat -S) | grep -q "banger:$vm_id" || fail "iptables rules tagged banger:$vm_id are left"
! losetup -a | grep -q "/vms/$vm_id/" || fail "a loop device on the VM's files is left"
! { command -v dmsetup >/dev/null && dmsetup ls 2>/dev/null | grep -q "banger-$vm_id"; } || fail "mapper device banger-$vm_id is left"
! pgrep -f -- "--id $vm_id" >/dev/null || fail "a process with --id $vm_id is left"
echo
echo "verify: all checks passed"
