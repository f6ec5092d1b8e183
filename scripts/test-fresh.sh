#!/usr/bin/env bash
# `make test-fresh`: the README's two commands on a fresh Debian 12, as a new
# user would run them. A minbase Debian 12 root (debootstrap, cached) gets a
# clone of the current commit and only `make` and `git`; inside it, as root,
# `make test`, then `make demo`, then the first own command the README
# suggests. Any install step missing from setup fails here.
#
# Environment:
#   ZC_FRESH_CACHE    cache directory (default .cache/test-fresh in the repository)
#   ZC_FRESH_REBUILD  1: debootstrap again instead of using the cached root
#   ZC_FRESH_KEEP     1: keep the root after the run (it is unmounted either way)
#   ZC_FRESH_NO_TEST  1: skip `make test` (to look at the demo alone; CI never sets it)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${ZC_FRESH_CACHE:-$repo/.cache/test-fresh}
suite=bookworm
say() { printf '[fresh] %s\n' "$*"; }
die() { printf '[fresh] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts)"
started=$(date +%s)

commit=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "note: uncommitted changes are not tested; testing commit $commit"
fi

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The host's own apt mirrors, as apt itself resolved them from its sources.
mirror_for() {
  apt-cache policy | awk -v want="$1/main" '$3 == want && $2 ~ /^https?:/ { print $2; exit }'
}
mirror=$(mirror_for "$suite")
[ -n "$mirror" ] || die "the host's apt sources have no Debian $suite main to take the mirror from"
security=$(mirror_for "$suite-security")

# --- the base root: debootstrap once, then unpacked afresh for every run ----
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
base="$cache/$suite-minbase-$(printf '%s' "$mirror" | sha256sum | cut -c1-8).tar"
if [ ! -f "$base" ] || [ "${ZC_FRESH_REBUILD:-0}" = 1 ]; then
  t0=$(date +%s)
  say "debootstrap --variant=minbase $suite from $mirror"
  build="$cache/debootstrap"
  rm -rf "$build"
  debootstrap --variant=minbase "$suite" "$build" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  tar -C "$build" -cf "$base.tmp" .
  mv "$base.tmp" "$base"
  rm -rf "$build"
  say "base root cached in $(($(date +%s) - t0))s: $base"
fi

root="$cache/root"
demo_root="/tmp/zynclone-demo-fresh-$$"
in_root() { chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=/etc/zynclone-fresh-extra-ca.pem} "$@"; }

# Everything started inside the root is ended, and everything mounted is
# unmounted, whatever happened.
cleanup() {
  local rc=$?
  set +e
  if [ -x "$root/root/zynclone/.toolchain/node/bin/node" ] && [ -d "$root$demo_root" ]; then
    in_root /root/zynclone/.toolchain/node/bin/node /root/zynclone/dist/src/bin/zynclone.js \
      sim down --root "$demo_root" >/dev/null 2>&1
  fi
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && kill -9 "${proc#/proc/}" 2>/dev/null
  done
  if mountpoint -q "$root"; then
    umount -R "$root" 2>/dev/null || { sleep 1; umount -R -l "$root"; }
  fi
  if [ "${ZC_FRESH_KEEP:-0}" != 1 ] && ! mountpoint -q "$root"; then rm -rf "$root"; fi
  say "wall time: $(($(date +%s) - started))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
# / bind-mounted on itself: `ip netns` and the tests' mount namespaces need
# the root to be a mount point.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
# Downloads are cached between runs (what gets installed is not).
mkdir -p "$cache/apt-archives/partial" "$cache/npm" "$root/root/.npm"
mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
mount --bind "$cache/npm" "$root/root/.npm"
cp /etc/hosts /etc/resolv.conf "$root/etc/"
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  # A host behind a TLS-inspecting proxy trusts its CA for Node; so does the fresh root.
  cp "$NODE_EXTRA_CA_CERTS" "$root/etc/zynclone-fresh-extra-ca.pem"
fi
{
  printf 'deb %s %s main\n' "$mirror" "$suite"
  printf 'deb %s %s-updates main\n' "$mirror" "$suite"
  [ -z "$security" ] || printf 'deb %s %s-security main\n' "$security" "$suite"
} >"$root/etc/apt/sources.list"
rm -f "$root/etc/apt/apt.conf.d/docker-clean"
say "fresh root ready in $(($(date +%s) - t0))s"

t0=$(date +%s)
say "apt-get install make git (the README's first step)"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make git >/dev/null
git clone --quiet --no-local "$repo" "$root/root/zynclone"
git -C "$root/root/zynclone" checkout --quiet --detach "$commit"
say "commit $commit cloned in $(($(date +%s) - t0))s"

step() {
  local name=$1 t
  shift
  t=$(date +%s)
  say "$name"
  in_root bash -c "cd /root/zynclone && $*"
  say "$name: passed in $(($(date +%s) - t))s"
}
if [ "${ZC_FRESH_NO_TEST:-0}" = 1 ]; then
  say "make test skipped (ZC_FRESH_NO_TEST=1)"
else
  step "make test" make test
fi
step "make demo" "ZYNCLONE_DEMO_ROOT=$demo_root make demo"
# The README's next step, in a new shell: the monitors the demo left running
# let the newcomer's own clone start.
step "the first own command" \
  "eval \"\$(.toolchain/node/bin/node dist/src/bin/zynclone.js sim env --root $demo_root)\" && vmclone create web01 --online && vmclone list"
say "passed: $([ "${ZC_FRESH_NO_TEST:-0}" = 1 ] || echo 'make test, ')make demo and a first own command on a fresh Debian 12"
