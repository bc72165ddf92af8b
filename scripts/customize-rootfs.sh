#!/usr/bin/env bash
# Prepares an ext4 rootfs image for banger without mounting it (debugfs -w, so no root is needed):
# root's authorized_keys, sshd enabled with host keys made at boot when missing, and banger-net.service,
# which configures the network and hostname from the kernel command line.
# Usage: customize-rootfs.sh IMAGE PUBKEY_FILE
# Exit status: 0 done; 1 a tool failed; 2 bad usage or bad input (the image is left untouched).
set -euo pipefail

prog=${0##*/}
usage() {
  echo "usage: $prog IMAGE PUBKEY_FILE" >&2
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

[[ $# -eq 2 ]] || usage
image=$1
pubkey_file=$2

command -v debugfs >/dev/null || fail "debugfs not found on PATH (install e2fsprogs)"

[[ -e $image ]] || bad "image $image: no such file"
[[ -f $image ]] || bad "image $image: not a regular file"
[[ -r $image && -w $image ]] || bad "image $image: not readable and writable by this user"
# ext2/3/4 superblock magic 0xEF53, little-endian, at byte 1024 + 56.
magic=$(od -An -tx1 -j1080 -N2 "$image" | tr -d ' \n')
[[ $magic == 53ef ]] ||
  bad "image $image is not an ext4 filesystem image (no ext2/3/4 superblock); make one with: mkfs.ext4 -d DIR FILE SIZE"
if command -v losetup >/dev/null && [[ -n $(losetup -j "$image" 2>/dev/null) ]]; then
  bad "image $image is attached to a loop device (in use by a VM?); it must not change while in use"
fi

[[ -e $pubkey_file ]] || bad "public key $pubkey_file: no such file"
[[ -f $pubkey_file && -r $pubkey_file ]] || bad "public key $pubkey_file: not a readable file"
key_re='^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^[:cntrl:]]*)?$'
key_lines=$(grep -c . "$pubkey_file" || true)
key=$(grep -m1 . "$pubkey_file" || true)
key=${key%$'\r'}
if [[ $key_lines -ne 1 || ! $key =~ $key_re ]] ||
  { command -v ssh-keygen >/dev/null && ! ssh-keygen -l -f "$pubkey_file" >/dev/null 2>&1; }; then
  bad "public key $pubkey_file is not one OpenSSH public key line (like 'ssh-ed25519 AAAA... comment')"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/customize-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cmds=$work/debugfs.cmds
: >"$cmds"

# Runs one read-only debugfs request; its stderr (minus the version banner) lands in $work/err.
dfs_read() {
  DEBUGFS_PAGER=__none__ PAGER=__none__ debugfs -R "$1" "$image" 2>"$work/err"
  sed -i '/^debugfs [0-9]/d' "$work/err"
}

# Prints what a path in the image is: dir, file, link, other or none (symlinks in parent directories are followed).
kind_of() {
  local out
  out=$(dfs_read "stat $1")
  case $out in
    *"Type: directory"*) echo dir ;;
    *"Type: regular"*) echo file ;;
    *"Type: symlink"*) echo link ;;
    *Type:*) echo other ;;
    *)
      grep -q 'not found by ext2_lookup' "$work/err" || fail "reading $1 from $image: $(cat "$work/err")"
      echo none
      ;;
  esac
}

# Queues: make a directory (mode for a new one; forced when force=1), owned by root.
ensure_dir() {
  local path=$1 mode=$2 force=${3:-0} kind
  kind=$(kind_of "$path")
  case $kind in
    none) echo "mkdir $path" >>"$cmds" ;;
    dir) [[ $force == 1 ]] || return 0 ;;
    *) fail "$path in $image exists but is not a directory" ;;
  esac
  printf 'sif %s mode 04%s\nsif %s uid 0\nsif %s gid 0\n' "$path" "$mode" "$path" "$path" >>"$cmds"
}

# Queues: replace the file at path with the host file src, mode and root ownership.
put_file() {
  local src=$1 path=$2 mode=$3 kind
  kind=$(kind_of "$path")
  case $kind in
    none) ;;
    file | link) echo "rm $path" >>"$cmds" ;;
    *) fail "$path in $image exists but is not a regular file" ;;
  esac
  printf 'cd %s\nwrite "%s" %s\ncd /\n' "${path%/*}" "$src" "${path##*/}" >>"$cmds"
  printf 'sif %s mode 010%s\nsif %s uid 0\nsif %s gid 0\n' "$path" "$mode" "$path" "$path" >>"$cmds"
}

# Queues: a symlink at path pointing to target, replacing what was there.
put_link() {
  local path=$1 target=$2 kind
  kind=$(kind_of "$path")
  case $kind in
    none) ;;
    file | link) echo "rm $path" >>"$cmds" ;;
    *) fail "$path in $image exists but is not a symlink" ;;
  esac
  printf 'cd %s\nsymlink %s %s\ncd /\n' "${path%/*}" "${path##*/}" "$target" >>"$cmds"
}

# --- authorized_keys: keep keys already there, add ours once.
ak=/root/.ssh/authorized_keys
existing=
ak_kind=$(kind_of "$ak")
if [[ $ak_kind == file ]]; then
  existing=$(dfs_read "cat $ak")
  [[ ! -s $work/err ]] || fail "reading $ak from $image: $(cat "$work/err")"
fi
key_blob=$(cut -d' ' -f1,2 <<<"$key")
{
  [[ -z $existing ]] || printf '%s\n' "$existing"
  if ! grep -qF -- "$key_blob" <<<"$existing"; then printf '%s\n' "$key"; fi
} >"$work/authorized_keys"

ensure_dir /root 0700
ensure_dir /root/.ssh 0700 1
put_file "$work/authorized_keys" "$ak" 0600

# --- boot units.
cat >"$work/banger-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate missing SSH host keys (banger)
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF

cat >"$work/banger-net.service" <<'EOF'
[Unit]
Description=Configure the network from the kernel ip= argument (banger)
Wants=network.target
Before=network.target network-online.target ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/banger-net
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF

cat >"$work/banger-net" <<'EOF'
#!/bin/sh
# Configures the network from the kernel command line (installed by banger's customize-rootfs.sh):
#   ip=<guest>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>[:<dns0>[:<dns1>]]
#   e.g. ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off
# and the hostname from systemd.hostname= when systemd has not set it already.
set -eu
set -f
ipconf=
name=
read -r cmdline </proc/cmdline
for word in $cmdline; do
  case $word in
    ip=*) ipconf=${word#ip=} ;;
    systemd.hostname=*) name=${word#systemd.hostname=} ;;
  esac
done

if [ -n "$name" ] && [ "$(cat /proc/sys/kernel/hostname)" != "$name" ]; then
  echo "$name" >/proc/sys/kernel/hostname
fi

[ -n "$ipconf" ] || exit 0
IFS=: read -r guest _server gw mask _host dev _auto dns0 dns1 <<END
$ipconf
END
case $guest in
  *.*.*.*) ;;
  *) exit 0 ;; # ip=dhcp, ip=off: nothing for us to do
esac
dev=${dev:-eth0}

prefix=0
IFS=. read -r m1 m2 m3 m4 <<END
${mask:-255.255.255.255}
END
for octet in "$m1" "$m2" "$m3" "$m4"; do
  case $octet in
    255) prefix=$((prefix + 8)) ;; 254) prefix=$((prefix + 7)) ;; 252) prefix=$((prefix + 6)) ;;
    248) prefix=$((prefix + 5)) ;; 240) prefix=$((prefix + 4)) ;; 224) prefix=$((prefix + 3)) ;;
    192) prefix=$((prefix + 2)) ;; 128) prefix=$((prefix + 1)) ;; 0) ;;
    *) echo "banger-net: bad netmask $mask" >&2; exit 1 ;;
  esac
done

tries=0
while [ ! -e "/sys/class/net/$dev" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 100 ] || { echo "banger-net: no interface $dev" >&2; exit 1; }
  sleep 0.1
done

ip link set dev "$dev" up
# A kernel built with CONFIG_IP_PNP has applied ip= already.
if ! ip -4 -o addr show dev "$dev" | grep -qF " inet $guest/"; then
  ip addr add "$guest/$prefix" dev "$dev"
fi
if [ -n "$gw" ]; then
  ip route replace default via "$gw" dev "$dev"
fi

if [ ! -L /etc/resolv.conf ] && ! grep -qs '^nameserver' /etc/resolv.conf; then
  if [ -n "${dns0:-}${dns1:-}" ]; then
    for ns in ${dns0:-} ${dns1:-}; do echo "nameserver $ns"; done >/etc/resolv.conf
  else
    printf 'nameserver 1.1.1.1\nnameserver 8.8.8.8\n' >/etc/resolv.conf
  fi
fi
EOF

units=/etc/systemd/system
wants=$units/multi-user.target.wants
for dir in /etc /etc/systemd $units $wants /usr /usr/local /usr/local/sbin; do ensure_dir "$dir" 0755; done
put_file "$work/banger-net" /usr/local/sbin/banger-net 0755
put_file "$work/banger-net.service" "$units/banger-net.service" 0644
put_file "$work/banger-ssh-hostkeys.service" "$units/banger-ssh-hostkeys.service" 0644
put_link "$wants/banger-net.service" "$units/banger-net.service"
put_link "$wants/banger-ssh-hostkeys.service" "$units/banger-ssh-hostkeys.service"

ssh_unit=
for candidate in /lib/systemd/system/ssh.service /usr/lib/systemd/system/ssh.service \
  /lib/systemd/system/sshd.service /usr/lib/systemd/system/sshd.service; do
  candidate_kind=$(kind_of "$candidate")
  if [[ $candidate_kind == file ]]; then
    ssh_unit=$candidate
    break
  fi
done
if [[ -n $ssh_unit ]]; then
  put_link "$wants/${ssh_unit##*/}" "$ssh_unit"
else
  echo "$prog: warning: no ssh.service or sshd.service in $image; install openssh-server in it or sshd will not run" >&2
fi

# --- apply everything in one debugfs session; it exits 0 even when a command fails, so read its stderr.
DEBUGFS_PAGER=__none__ PAGER=__none__ debugfs -w -f "$cmds" "$image" >"$work/out" 2>"$work/err" ||
  fail "debugfs -w $image failed: $(cat "$work/err")"
sed -i '/^debugfs [0-9]/d' "$work/err"
[[ ! -s $work/err ]] || fail "writing to $image: $(cat "$work/err")"

# Read the key back: proof that the image took the writes.
written=$(dfs_read "cat $ak")
[[ $written == "$(cat "$work/authorized_keys")" ]] || fail "$ak in $image does not hold the key after writing it"
