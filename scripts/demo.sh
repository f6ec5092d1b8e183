#!/usr/bin/env bash
# The demo: a Xen host in a box, with ZynClone's tools pointed at it.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${ZYNCLONE_DEMO_ROOT:-/tmp/zynclone-demo}
zynclone() { node dist/src/bin/zynclone.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mkdir -p "$root"
zynclone sim down --root "$root" >/dev/null 2>&1 || true

step "Starting the simulator (XenStore server, xl, bridges, VNC consoles) in $root"
up_out=$(zynclone sim up --root "$root")
echo "$up_out"
ns_prefix=$(sed -n 's/^network: namespaces \(.*\)-\*$/\1/p' <<<"$up_out")
eval "$(zynclone sim env --root "$root")"

step "XenStore with Debian's real client: write, list, watch"
xenstore-write /tool/zynclone-demo/greeting "hello from the demo" /tool/zynclone-demo/count 1
xenstore-ls /tool/zynclone-demo
watch_out=$(mktemp)
xenstore-watch -n 2 /tool/zynclone-demo/count >"$watch_out" &
watcher=$!
sleep 0.3
xenstore-write /tool/zynclone-demo/count 2
wait "$watcher" || true
echo "xenstore-watch saw:"; sed 's/^/  /' "$watch_out"; rm -f "$watch_out"

step "Demo VMs"
zynclone sim demo --root "$root"
xl list
for dom in $(xl list | awk 'NR>2 {print $1}'); do
  echo "-- $dom"; xl network-list "$dom" 2>/dev/null || true
done

step "Networks: web01 pings db01 across bridge xenbr1 (each guest is its own namespace)"
if [ -n "$ns_prefix" ]; then
  web_domid=$(xl domid web01)
  ip netns exec "$ns_prefix-d$web_domid" ping -c 2 -W 1 10.78.0.30
else
  echo "(the simulator runs without network here)"
fi

step "Consoles: win01's VNC server, as xl writes it into XenStore"
win_domid=$(xl domid win01)
echo "vnc-listen=$(xenstore-read "/local/domain/$win_domid/console/vnc-listen") vnc-port=$(xenstore-read "/local/domain/$win_domid/console/vnc-port")"

step "Done. The simulator keeps running; stop it with: node dist/src/bin/zynclone.js sim down --root $root"
