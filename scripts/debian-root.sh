#!/usr/bin/env bash
# A clean Debian 12 root for install tests, reusable by any test that needs one.
#
#   debian-root.sh up DIR        DIR becomes a fresh root: an overlay over a cached
#                                debootstrap --variant=minbase (made once under
#                                .cache/debian-root/), with /proc, /dev and /run
#   debian-root.sh run DIR CMD…  runs CMD (argv) chrooted in DIR, with a clean environment
#   debian-root.sh down DIR      unmounts and deletes DIR (safe to repeat)
#
# The mirror is the host's own Debian mirror (its apt sources), so the root
# installs the same way the host does. Needs root. ZC_DEBIAN_ROOT_CACHE moves
# the cache (default .cache/debian-root in the repository).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
base="${ZC_DEBIAN_ROOT_CACHE:-$repo/.cache/debian-root}/$suite-minbase"

host_mirror() {
  # deb822 sources first (Debian 12's default), then the one-line format.
  local uri
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_base() {
  [ -f "$base/.complete" ] && return
  command -v debootstrap >/dev/null || {
    echo "debian-root: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  }
  local mirror
  mirror=$(host_mirror)
  echo "debian-root: debootstrap $suite minbase from $mirror into $base (once)" >&2
  rm -rf "$base" && mkdir -p "$base"
  debootstrap --variant=minbase "$suite" "$base" "$mirror" >"$base.log" 2>&1 || {
    echo "debian-root: debootstrap failed; see $base.log" >&2
    exit 1
  }
  # The same suites as a stock Debian 12, so apt resolves security updates too.
  cat >"$base/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
EOF
  chroot "$base" apt-get clean
  touch "$base/.complete"
}

mounted() { findmnt -rn --target "$1" -o TARGET | grep -qx "$1"; }

up() {
  local dir=$1
  ensure_base
  down "$dir"
  mkdir -p "$dir" "$dir.upper" "$dir.work"
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir.upper,workdir=$dir.work" "$dir"
  mount -t proc proc "$dir/proc"
  mount --bind /dev "$dir/dev"
  # A private pty instance (apt wants one), not the host's /dev/pts.
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$dir/dev/pts"
  mount -t tmpfs -o mode=755 tmpfs "$dir/run"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
}

down() {
  local dir=$1 m
  [ -e "$dir" ] || [ -e "$dir.upper" ] || return 0
  for m in run dev/pts dev proc; do
    if mounted "$dir/$m"; then umount "$dir/$m" || umount -l "$dir/$m"; fi
  done
  if mounted "$dir"; then umount "$dir" || umount -l "$dir"; fi
  # Only delete through DIR once nothing is mounted there.
  if ! findmnt -rn -o TARGET | grep -q "^$dir\(/\|$\)"; then
    rm -rf "$dir" "$dir.upper" "$dir.work"
  fi
}

run() {
  local dir=$1
  shift
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

[ "$(id -u)" = 0 ] || {
  echo "debian-root: needs root" >&2
  exit 1
}
case "${1:-}:$#" in
  up:2 | down:2) "$1" "$(realpath -m "$2")" ;;
  run:[3-9] | run:[1-9][0-9]) run "$(realpath -m "$2")" "${@:3}" ;;
  *)
    echo "usage: debian-root.sh up DIR | run DIR CMD... | down DIR" >&2
    exit 2
    ;;
esac
