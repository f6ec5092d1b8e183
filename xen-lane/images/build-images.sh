#!/usr/bin/env bash
# Builds the cached boot artefacts of the real-Xen lane from Debian packages:
#   xen            the hypervisor (multiboot ELF, gunzipped)
#   vmlinuz        the dom0 kernel
#   base-KEY.cpio  dom0 userspace: busybox, bash, xl, xenstored, oxenstored,
#                  hotplug scripts, lvm2, xfsprogs, nftables, Node, modules,
#                  qemu-system-xen (the device model that serves a PV
#                  guest's vfb as a VNC server) with its keymaps
#   guest-KEY.cpio the test guests' kernel (uncompressed vmlinux: libxenguest's
#                  userspace xz is slow under emulation) and initramfs (busybox,
#                  bash, xenstore-utils and ZynClone's bash guest client)
# Nothing is installed on the host: packages are fetched with `apt-get
# download` and unpacked with `dpkg -x`. Each layer is keyed by the package
# versions and the inputs that shape it, so a second run reuses both.
#
# Usage: build-images.sh CACHE_DIR
# Prints KEY=VALUE lines (XEN, KERNEL, BASE_CPIO, GUEST_CPIO) on stdout.
set -euo pipefail

cache=${1:?usage: build-images.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

kernel_pkg=${ZC_XEN_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
[ -n "$kernel_pkg" ] || die "cannot resolve the kernel package behind linux-image-amd64"
kver=${kernel_pkg#linux-image-}

pkgs=(
  xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
  libxenmisc4.17 libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
  libxenstore4 libxentoollog1 libxendevicemodel1 libxenhypfs1 libxentoolcore1
  libyajl2 "$kernel_pkg" busybox-static kmod bridge-utils bash
  lvm2 dmsetup libdevmapper1.02.1 libdevmapper-event1.02.1 libaio1
  thin-provisioning-tools libedit2 xfsprogs libinih1 liburcu8
  nftables libnftables1 libnftnl11 libmnl0 libjansson4 libxtables12 libgmp10
  qemu-system-xen qemu-system-data
)

# One apt-cache call for all packages: each call costs about half a second.
versions=$(apt-cache policy "${pkgs[@]}" 2>/dev/null | awk '
  /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
  /^  Candidate:/ { if ($2 != "(none)") print pkg "=" $2 }')
versions+=$'\n'
for p in "${pkgs[@]}"; do
  grep -q "^$p=" <<<"$versions" || die "no installable version of Debian package $p (apt-get update?)"
done

debs="$cache/debs"
mkdir -p "$debs"
verkey=$(printf '%s' "$versions" | sha256sum | cut -c1-16)
ext="$cache/ext-$verkey"

if [ ! -f "$ext/.complete" ]; then
  want=()
  while IFS='=' read -r p v; do
    [ -n "$p" ] || continue
    if [ ! -f "$debs/$p=$v.deb" ]; then want+=("$p=$v"); fi
  done <<<"$versions"
  if [ "${#want[@]}" -gt 0 ]; then
    log "downloading ${#want[@]} Debian packages"
    tmp=$(mktemp -d "$cache/dl.XXXXXX")
    (cd "$tmp" && apt-get download -q "${want[@]}" >&2 2>/dev/null) ||
      (cd "$tmp" && apt-get download -q "${want[@]}" >&2) || die "apt-get download failed"
    for f in "$tmp"/*.deb; do
      p=$(dpkg-deb -f "$f" Package)
      v=$(dpkg-deb -f "$f" Version)
      mv "$f" "$debs/$p=$v.deb"
    done
    rm -rf "$tmp"
  fi
  log "unpacking packages into $(basename "$ext")"
  rm -rf "$ext"
  mkdir -p "$ext"
  while IFS='=' read -r p v; do
    [ -n "$p" ] || continue
    dpkg -x "$debs/$p=$v.deb" "$ext"
  done <<<"$versions"
  depmod -b "$ext" "$kver"
  touch "$ext/.complete"
fi

out="$cache/out"
mkdir -p "$out"
xen="$out/xen-$verkey"
if [ ! -f "$xen" ]; then
  zcat "$ext"/boot/xen-4.17-amd64.gz >"$xen.tmp"
  mv "$xen.tmp" "$xen"
fi
vmlinuz="$ext/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "kernel image missing: $vmlinuz"

# Copies every shared object the ELF files under ROOT need, preferring the
# unpacked packages (under ROOT, else under LIB_ROOT) and falling back to the
# host (a Debian 12 system).
# Usage: copy_libs ROOT [LIB_ROOT]
copy_libs() {
  local root=$1 from=${2:-$1} missing="" f lib
  local lp="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
  lp+=":$from/lib/x86_64-linux-gnu:$from/usr/lib/x86_64-linux-gnu"
  local -A seen=()
  while IFS= read -r -d '' f; do
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    while IFS= read -r line; do
      case "$line" in
        *"not found"*) missing+=" ${line%% *}($(basename "$f"))" ;;
        *"=> /"*)
          lib=${line#*=> }
          lib=${lib%% (*}
          seen[$lib]=1
          ;;
        /*)
          lib=${line%% (*}
          seen[$lib]=1
          ;;
      esac
    done < <(LD_LIBRARY_PATH="$lp" ldd "$f" 2>/dev/null | sed 's/^[[:space:]]*//')
  done < <(find "$root" -type f \( -perm -u+x -o -name '*.so*' \) -print0)
  [ -z "$missing" ] || die "shared objects not found:$missing"
  for lib in "${!seen[@]}"; do
    local dest
    case "$lib" in
      "$root"/*) continue ;;
      "$from"/*) dest="$root${lib#"$from"}" ;;
      *) dest="$root$lib" ;;
    esac
    if [ ! -e "$dest" ]; then
      mkdir -p "$(dirname "$dest")"
      cp -L "$lib" "$dest"
    fi
  done
}

# Resolves module dependencies against the unpacked kernel and copies the
# .ko files; prints their in-root paths in load order.
copy_modules() {
  local root=$1
  shift
  local mod line path deps
  for mod in "$@"; do
    deps=$(modprobe -d "$ext" -S "$kver" --show-depends "$mod" 2>/dev/null) ||
      die "kernel module $mod not found in $kernel_pkg"
    while IFS= read -r line; do
      case "$line" in
        insmod*)
          path=${line#insmod }
          path=${path%% *}
          path=${path#"$ext"}
          if [ ! -f "$root$path" ]; then
            mkdir -p "$(dirname "$root$path")"
            cp "$ext$path" "$root$path"
          fi
          printf '%s\n' "$path"
          ;;
      esac
    done <<<"$deps"
  done
}

make_cpio() {
  local root=$1 dest=$2
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$dest.tmp"
  mv "$dest.tmp" "$dest"
}

# dom0 runs ZynClone's own Node.js 24, the one scripts/setup.sh installs.
node_bin=${ZC_XEN_NODE:-$here/../../.toolchain/node/bin/node}
node_ver=$("$node_bin" --version 2>/dev/null) || die "no Node.js at $node_bin; run scripts/setup.sh (make setup)"
case "$node_ver" in
  v24.*) ;;
  *) die "$node_bin is Node.js $node_ver; the lane needs ZynClone's Node.js 24" ;;
esac

base_key=$( {
  printf '%s' "$versions"
  printf 'node=%s\n' "$node_ver"
  sha256sum "$here/build-images.sh" | cut -d' ' -f1
} | sha256sum | cut -c1-16)
base="$out/base-$base_key.cpio"

dom0_modules=(
  xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback
  bridge tun loop dm-mod dm-thin-pool dm-snapshot xfs nf_tables nft_meta_bridge
)

if [ ! -f "$base" ]; then
  log "building dom0 base layer $(basename "$base")"
  root="$cache/build/base"
  rm -rf "$root"
  mkdir -p "$root"
  # Everything from the packages except kernel modules, docs and python.
  (cd "$ext" && tar -cf - --exclude=./lib/modules --exclude=./boot \
    --exclude=./usr/share --exclude='*python*' --exclude=pygrub --exclude=./.complete .) |
    (cd "$root" && tar -xf -)
  # QEMU's VNC server loads a keymap (en-us unless xl's keymap= says
  # otherwise); its firmware images are for HVM guests, which the lane has none of.
  mkdir -p "$root/usr/share/qemu"
  cp -a "$ext/usr/share/qemu/keymaps" "$root/usr/share/qemu/keymaps"
  mkdir -p "$root"/{bb,proc,sys,dev,run,tmp,var/log/xen/console,var/lib/xen,root,lib64,usr/bin,usr/local/bin}
  # xenstored and xl use /var/run; keep one tree.
  ln -sfn /run "$root/var/run"
  chmod 1777 "$root/tmp"
  # Busybox applets live in /bb, last on PATH, so the real tools win.
  mv "$root/bin/busybox" "$root/bb/busybox"
  for applet in $("$root/bb/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bb/$applet"
  done
  ln -sf ../bb/busybox "$root/bin/sh"
  cp "$node_bin" "$root/usr/bin/node"
  # GNU cp for --reflink; iproute2's ip for bridges.
  cp "$(command -v cp)" "$root/usr/local/bin/cp"
  ip_bin=$(command -v ip || true)
  [ -z "$ip_bin" ] || cp "$ip_bin" "$root/usr/local/bin/ip"
  # util-linux tools the hotplug scripts need (busybox has no flock).
  for tool in losetup flock stat; do
    cp "$(command -v "$tool")" "$root/usr/local/bin/$tool"
  done
  copy_libs "$root"
  mkdir -p "$root/etc/ld.so.conf.d"
  printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$root/etc/ld.so.conf"
  ldconfig -r "$root" 2>/dev/null || true
  copy_modules "$root" "${dom0_modules[@]}" >"$cache/build/modules.list"
  awk '!seen[$0]++' "$cache/build/modules.list" >"$root/etc/zc-modules"
  mkdir -p "$root/lib/modules/$kver"
  cp "$ext/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
  depmod -b "$root" "$kver"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
  # LVM in an initramfs: no udev, no lvmetad, no monitoring daemon.
  cat >"$root/etc/lvm/lvmlocal.conf" <<'LVM'
devices {
  obtain_device_list_from_udev = 0
  scan = [ "/dev" ]
}
activation {
  udev_sync = 0
  udev_rules = 0
  monitoring = 0
}
global {
  use_lvmlockd = 0
}
LVM
  ln -sf /run/lock "$root/var/lock"
  make_cpio "$root" "$base"
  rm -rf "$root"
fi

client="$here/../../guest/linux/zynclone-guest"
guest_key=$( {
  printf '%s' "$versions"
  sha256sum "$here/guest-init" "$here/build-images.sh" "$here/extract-vmlinux.py" "$client" |
    cut -d' ' -f1
} | sha256sum | cut -c1-16)
guest="$out/guest-$guest_key.cpio"

if [ ! -f "$guest" ]; then
  log "building guest layer $(basename "$guest")"
  groot="$cache/build/guest-initrd"
  rm -rf "$groot"
  mkdir -p "$groot"/{bin,proc,sys,dev,etc,tmp}
  cp "$ext/bin/busybox" "$groot/bin/busybox"
  for applet in $("$groot/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$groot/bin/$applet"
  done
  cp "$here/guest-init" "$groot/init"
  chmod 755 "$groot/init"
  # ZynClone's bash guest client with what it runs on: bash and xenstore-utils
  # (talking to /dev/xen/xenbus), their shared objects from the packages.
  mkdir -p "$groot/usr/bin"
  rm -f "$groot/bin/bash" # a busybox applet link would be written through
  cp "$ext/bin/bash" "$groot/bin/bash"
  for tool in xenstore-read xenstore-write xenstore-watch; do
    cp "$ext/usr/bin/$tool" "$groot/usr/bin/$tool"
  done
  cp "$client" "$groot/usr/bin/zynclone-guest"
  chmod 755 "$groot/usr/bin/zynclone-guest"
  copy_libs "$groot" "$ext"
  printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu >"$groot/etc/ld.so.conf"
  ldconfig -r "$groot" 2>/dev/null || true
  copy_modules "$groot" xen-netfront xen-blkfront >"$cache/build/modules.list"
  awk '!seen[$0]++' "$cache/build/modules.list" >"$groot/etc/zc-modules"
  layer="$cache/build/guest-layer"
  rm -rf "$layer"
  mkdir -p "$layer/guest"
  (cd "$groot" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
    gzip -1 >"$layer/guest/initrd.gz"
  python3 "$here/extract-vmlinux.py" "$vmlinuz" "$layer/guest/vmlinux"
  make_cpio "$layer" "$guest"
  rm -rf "$groot" "$layer"
fi

# Keep only the current generation of each layer.
for f in "$out"/base-*.cpio "$out"/guest-*.cpio "$out"/xen-*; do
  case "$f" in "$base" | "$guest" | "$xen") ;; *) rm -f "$f" ;; esac
done
for d in "$cache"/ext-*; do
  [ "$d" = "$ext" ] || rm -rf "$d"
done

printf 'XEN=%s\nKERNEL=%s\nBASE_CPIO=%s\nGUEST_CPIO=%s\nKERNEL_VERSION=%s\n' \
  "$xen" "$vmlinuz" "$base" "$guest" "$kver"
printf '%s' "$versions" >"$out/versions.txt"
