#!/usr/bin/env bash
# Extracts the uncompressed ELF vmlinux that Firecracker boots from a compressed kernel (bzImage, vmlinuz).
# The compressed payload sits somewhere after the boot setup code: this scans for the magic bytes of each
# format the kernel supports, decompresses from every match, and keeps the first output that is an ELF file.
# Usage: extract-vmlinux.sh BZIMAGE OUT
# Exit status: 0 written; 1 no ELF payload found; 2 bad usage or input.
set -euo pipefail

prog=${0##*/}
usage() {
  echo "usage: $prog BZIMAGE OUT" >&2
  exit 2
}
bad() {
  echo "$prog: $*" >&2
  exit 2
}

[[ $# -eq 2 ]] || usage
in=$1
out=$2
[[ -e $in ]] || bad "kernel $in: no such file"
[[ -f $in && -r $in ]] || bad "kernel $in: not a readable file"
[[ -d $(dirname -- "$out") ]] || bad "output $out: its directory does not exist"

is_elf() {
  [[ $(head -c 4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]
}

partial=$out.partial.$$
work=$(mktemp -d "${TMPDIR:-/tmp}/extract-vmlinux.XXXXXX")
trap 'rm -rf "$work" "$partial"' EXIT

if is_elf "$in"; then
  cp -- "$in" "$partial"
  mv -f -- "$partial" "$out"
  echo "$out: $in is already an ELF vmlinux, copied"
  exit 0
fi

# name | magic as a PCRE byte pattern | decompressor reading stdin (trailing bytes after the stream are ignored)
formats=(
  'gzip|\x1f\x8b\x08|gzip -dc'
  'xz|\xfd7zXZ\x00|xz -dc --single-stream'
  'zstd|\x28\xb5\x2f\xfd|zstd -dcq'
  'lz4|\x02\x21\x4c\x18|lz4 -dcq'
  'bzip2|BZh[1-9]\x31\x41\x59\x26\x53\x59|bzip2 -dcq'
  'lzma|\x5d\x00\x00|xz --format=lzma -dc'
)

tried=()
for entry in "${formats[@]}"; do
  IFS='|' read -r name magic decompress <<<"$entry"
  mapfile -t offsets < <(LC_ALL=C grep -aboP "$magic" -- "$in" | cut -d: -f1)
  [[ ${#offsets[@]} -gt 0 ]] || continue
  read -r -a argv <<<"$decompress"
  if ! command -v "${argv[0]}" >/dev/null; then
    tried+=("${#offsets[@]} $name candidate(s) skipped: ${argv[0]} is not installed")
    continue
  fi
  for offset in "${offsets[@]}"; do
    # A false match or trailing bytes make the decompressor fail; only its output matters.
    tail -c +$((offset + 1)) -- "$in" | "${argv[@]}" >"$work/candidate" 2>/dev/null || true
    if [[ -s $work/candidate ]] && is_elf "$work/candidate"; then
      mv -f -- "$work/candidate" "$partial"
      mv -f -- "$partial" "$out"
      echo "$out: ELF vmlinux from the $name payload at offset $offset of $in"
      exit 0
    fi
  done
  tried+=("${#offsets[@]} $name candidate(s) gave no ELF")
done

echo "$prog: no compressed ELF kernel found in $in" >&2
if [[ ${#tried[@]} -eq 0 ]]; then
  echo "$prog: no gzip, xz, zstd, lz4, bzip2 or lzma signature in it" >&2
else
  for line in "${tried[@]}"; do echo "$prog: $line" >&2; done
fi
exit 1
