#!/usr/bin/env bash
# `make test-deb`: the package installs with apt on a clean Debian 12, works,
# and removes and purges cleanly. Measures the package size, the install time
# and `vmclone --version`'s cold start against `node -e 0` (the shipped node).
# Needs root and the host's Debian mirror. See docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
version=$(node -p 'require("./package.json").version')
deb="dist/zynclone_${version}_amd64.deb"
[ -f "$deb" ] || {
  echo "test-deb: $deb is missing; run make deb" >&2
  exit 1
}

root=$(mktemp -d /tmp/zc-debroot.XXXXXX)
failures=0
say() { echo "test-deb: $*"; }
fail() {
  echo "test-deb: FAIL: $*" >&2
  failures=$((failures + 1))
}
in_root() { bash scripts/debian-root.sh run "$root" "$@"; }
cleanup() {
  # The clone monitor is normally stopped already; under set -e a failed kill must not count.
  if [ -f "$root/tmp/clone-monitor.pid" ]; then kill "$(cat "$root/tmp/clone-monitor.pid")" 2>/dev/null || true; fi
  in_root zynclone sim down --root /tmp/zcsim >/dev/null 2>&1 || true
  bash scripts/debian-root.sh down "$root"
}
trap cleanup EXIT

say "lintian $deb"
if command -v lintian >/dev/null; then
  lintian "$deb" | tee "$root.lintian" || true
  if grep -q '^E:' "$root.lintian"; then fail "lintian reports errors"; fi
  rm -f "$root.lintian"
else
  say "(lintian not installed; skipped)"
fi

bash scripts/debian-root.sh up "$root"
cp "$deb" "$root/tmp/zynclone.deb"
in_root apt-get update -qq
# What a clean root holds, to compare with what is left after purge.
snapshot() {
  in_root find / -xdev \( -path /proc -o -path /dev -o -path /run -o -path /tmp -o -path /var/cache \
    -o -path /var/log -o -path /var/lib/apt -o -path /var/lib/dpkg \) -prune -o -print | LC_ALL=C sort
}
snapshot >"$root.before"

t0=$(date +%s%N)
# Recommends (Xen's tools) are left out: a clean root is no Xen host.
in_root apt-get install -y -qq --no-install-recommends /tmp/zynclone.deb >"$root.install.log" 2>&1 || {
  cat "$root.install.log" >&2
  fail "apt-get install"
  exit 1
}
install_ms=$((($(date +%s%N) - t0) / 1000000))
new_packages=$(grep -c '^Setting up' "$root.install.log" || true)
rm -f "$root.install.log"

got=$(in_root vmclone --version)
[ "$got" = "$version" ] || fail "vmclone --version printed '$got', expected '$version'"
in_root zynclone --help | grep -q net-monitor || fail "zynclone --help lists no net-monitor"
in_root test -f /etc/xen/clone/base.json || fail "no /etc/xen/clone/base.json"
in_root vmclone config web1 --json >/dev/null || fail "the packaged base.json is not accepted"
# The live save helper starts once its recommended Xen libraries are there
# (installed above without recommends, as the fallback to xl save -p expects).
in_root apt-get install -y -qq --no-install-recommends libxenmisc4.17 libxentoollog1 >/dev/null 2>&1 ||
  fail "the live save helper's libraries do not install"
in_root /usr/lib/zynclone/zynclone-livesave --help | grep -q -- '--resume' ||
  fail "the packaged zynclone-livesave does not start"
# Run without its sockets, the console's splice helper answers with its usage (exit 2).
splice_usage=$(in_root /usr/lib/zynclone/zynclone-console-splice --help 2>&1 || true)
grep -q 'usage: zynclone-console-splice' <<<"$splice_usage" ||
  fail "the packaged zynclone-console-splice does not start: $splice_usage"
in_root man -w vmclone >/dev/null 2>&1 || in_root test -f /usr/share/man/man1/vmclone.1.gz ||
  fail "no vmclone(1)"
for unit in packaging/systemd/*.service; do
  in_root test -f "/lib/systemd/system/$(basename "$unit")" || fail "unit $(basename "$unit") not installed"
  in_root test -L "/etc/systemd/system/multi-user.target.wants/$(basename "$unit")" ||
    fail "unit $(basename "$unit") not enabled"
done

say "vmclone doctor against a simulator in the root, with the packaged clone monitor running"
# No network namespaces: the net monitor's nftables would be the host's own,
# so it stays down here and doctor must report it, linked to the debug notes.
in_root zynclone sim up --root /tmp/zcsim --no-network >/dev/null
in_root sh -c 'eval "$(zynclone sim env --root /tmp/zcsim)"
  setsid zynclone clone-monitor >/tmp/clone-monitor.log 2>&1 </dev/null & echo $! >/tmp/clone-monitor.pid'
doctor=""
for _ in $(seq 50); do
  doctor=$(in_root sh -c 'eval "$(zynclone sim env --root /tmp/zcsim)" && vmclone doctor --json' || true)
  echo "$doctor" | tr -d '\n ' | grep -q '"check":"heartbeat:clone-monitor","ok":true' && break
  sleep 0.2
done
echo "$doctor" | in_root /usr/lib/zynclone/node/bin/node -e '
  let text = ""; process.stdin.on("data", (d) => (text += d)).on("end", () => {
    const { findings } = JSON.parse(text);
    for (const f of findings) console.log(`  [${f.ok ? "ok" : f.severity}] ${f.check}: ${f.message}${f.docs ? ` (see ${f.docs})` : ""}`);
    const byCheck = Object.fromEntries(findings.map((f) => [f.check, f]));
    const problems = [];
    for (const ok of ["xl", "xenstore", "heartbeat:clone-monitor"]) if (!byCheck[ok]?.ok) problems.push(`${ok} not ok`);
    if (byCheck["heartbeat:net-monitor"]?.docs !== "docs/debugging.md#monitors-not-running") problems.push("net monitor failure not linked");
    for (const f of findings) if (!f.ok && !/^docs\/debugging\.md#[a-z-]+$/.test(f.docs ?? "")) problems.push(`${f.check} without a link`);
    if (problems.length > 0) { console.error(problems.join("; ")); process.exit(1); }
  });' || fail "vmclone doctor"
# The wrapper starts the daemons with zynclone's Node.js flags (a bounded young generation).
tr '\0' ' ' <"/proc/$(cat "$root/tmp/clone-monitor.pid")/cmdline" | grep -q -- '--max-semi-space-size=' ||
  fail "the packaged clone monitor runs without zynclone's Node.js flags"
kill "$(cat "$root/tmp/clone-monitor.pid")"
rm -f "$root/tmp/clone-monitor.pid"
in_root zynclone sim down --root /tmp/zcsim >/dev/null

say "cold start in the root (shipped node), 20 runs each"
# vmclone runs with the V8 compile cache the wrapper sets up (filled by the
# first run); the bare bundle without it shows what the cache saves.
timing=$(in_root bash -c '
  median() { sort -n | sed -n 10p; }
  run() { for _ in $(seq 20); do s=$(date +%s%N); "$@" >/dev/null; echo $((($(date +%s%N) - s) / 1000)); done | median; }
  node=/usr/lib/zynclone/node/bin/node
  echo "$(run $node -e 0) $(run vmclone --version) $(run env NODE_DISABLE_COMPILE_CACHE=1 $node /usr/lib/zynclone/lib/vmclone.mjs --version)"')
read -r node_us vmclone_us nocache_us <<<"$timing"

say "remove"
in_root apt-get remove -y -qq zynclone >/dev/null
in_root test ! -e /usr/bin/vmclone || fail "/usr/bin/vmclone left after remove"
in_root test -f /etc/xen/clone/base.json || fail "remove deleted the conffile base.json"
mkdir -p "$root/var/lib/zynclone" && echo state >"$root/var/lib/zynclone/marker"
say "purge (state not asked for)"
in_root apt-get purge -y -qq zynclone >/dev/null
in_root apt-get autoremove --purge -y -qq >/dev/null
in_root test ! -e /etc/xen/clone/base.json || fail "purge left /etc/xen/clone/base.json"
in_root test -f /var/lib/zynclone/marker || fail "purge deleted state without being asked"
snapshot >"$root.after"
left=$(comm -13 "$root.before" "$root.after")
rm -f "$root.before" "$root.after"
echo "left after purge:"
echo "${left:-  (nothing)}" | sed 's/^/  /'
unexpected=$(echo "$left" | grep -v -x -e '/var/lib/zynclone' -e '/var/lib/zynclone/marker' \
  -e '/etc/ld.so.cache' -e '/var/lib/systemd.*' -e '/etc/systemd.*' -e '/var/lib/ucf.*' || true)
if echo "$unexpected" | grep -q -i -e zynclone -e vmclone -e '/etc/xen'; then
  fail "purge left package files: $unexpected"
fi

say "purge with zynclone/purge-state = true"
in_root apt-get install -y -qq --no-install-recommends /tmp/zynclone.deb >/dev/null 2>&1
echo 'zynclone zynclone/purge-state boolean true' | in_root debconf-set-selections
in_root apt-get purge -y -qq zynclone >/dev/null
in_root test ! -e /var/lib/zynclone || fail "purge-state true kept /var/lib/zynclone"

size=$(stat -c %s "$deb")
installed_kib=$(dpkg-deb -f "$deb" Installed-Size)
echo
echo "package size:        $size bytes ($((size / 1048576)) MiB), installed $((installed_kib / 1024)) MiB"
echo "install (apt, clean root, $new_packages packages set up): ${install_ms} ms"
ratio() { awk -v a="$1" -v b="$node_us" 'BEGIN { printf "%.2f", a / b }'; }
echo "cold start (median of 20): node -e 0 ${node_us} us;" \
  "vmclone --version ${vmclone_us} us (x$(ratio "$vmclone_us"));" \
  "without the compile cache ${nocache_us} us (x$(ratio "$nocache_us"))"
if [ "$failures" -gt 0 ]; then
  echo "test-deb: $failures failure(s)" >&2
  exit 1
fi
echo "test-deb: ok"
