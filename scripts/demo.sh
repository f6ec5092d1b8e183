#!/usr/bin/env bash
# The demo: a Xen host in a box, with ZynClone's tools pointed at it. Rerunnable:
# it starts by taking down what a previous run left. It ends with the simulator,
# the demo VMs, ZynClone's monitors and its web dashboard running, and says how
# to go on.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

root=${ZYNCLONE_DEMO_ROOT:-/tmp/zynclone-demo}
zynclone() { node dist/src/bin/zynclone.js "$@"; }
vmclone() { node dist/src/bin/vmclone.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mkdir -p "$root"
zynclone sim down --root "$root" >/dev/null 2>&1 || true

step "Starting the simulator (XenStore server, xl, bridges, VNC consoles) in $root, and ZynClone's monitors"
# --monitors: the net monitor (in the simulator's network domain), then the
# clone monitor, each in its own process group as systemd runs them on a Xen
# host; logs in $root/log. Without a network (namespaces need root) this fails
# and says why: the clone part of the demo cannot run without it.
up_out=$(zynclone sim up --root "$root" --storage xfs --monitors)
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
xenstore-rm /tool/zynclone-demo

step "Demo VMs: configs in $root/etc/xen, disks in $root/var/lib/xen/images"
zynclone sim demo --root "$root"
xl list
for dom in $(xl list | awk 'NR>2 {print $1}'); do
  echo "-- $dom"; xl network-list "$dom" 2>/dev/null || true
done

step "Networks: web01 pings db01 across bridge xenbr1 (each guest is its own namespace)"
netdd=$ns_prefix-netdd
web_domid=$(xl domid web01)
db_domid=$(xl domid db01)
ip netns exec "$ns_prefix-d$web_domid" ping -c 2 -W 1 10.78.0.30

step "Consoles: win01's VNC server, as xl writes it into XenStore"
win_domid=$(xl domid win01)
echo "vnc-listen=$(xenstore-read "/local/domain/$win_domid/console/vnc-listen") vnc-port=$(xenstore-read "/local/domain/$win_domid/console/vnc-port")"

step "ZynClone's monitors beat in XenStore"
for daemon in net-monitor clone-monitor orchestrator console-monitor web; do
  echo "$daemon: pid $(xenstore-read "/tool/zynclone/daemons/$daemon/pid"), log $root/log/$daemon.log"
done

step "The web dashboard and API (zynclone web, started with the monitors)"
web_url=
for _ in $(seq 100); do
  web_url=$(sed -n 's/.*"msg":"serving","url":"\([^"]*\)".*/\1/p' "$root/log/web.log" 2>/dev/null)
  [ -n "$web_url" ] && break
  sleep 0.1
done
web_token=$root/var/lib/zynclone/web/admin-token
echo "dashboard: $web_url (log in with the token in $web_token; log $root/log/web.log)"
echo "the API answers the same token as a Bearer credential:"
curl -s -H "Authorization: Bearer $(cat "$web_token")" "${web_url}api/v1/vms"
echo

step "vmclone create web01 --online: disk snapshot while web01 is paused, the clone cold-boots"
vmclone create web01 --online 2>&1

step "vmclone list"
vmclone list

step "vmclone status web01"
vmclone status web01

step "The clone's disks are reflinks: they share the original's blocks on $root/var"
df -hT "$root/var" | sed 's/^/  /'
for vol in "$root"/var/lib/zynclone/volumes/web01-clone.*; do
  shared=$(filefrag -v "$vol" | grep -c shared || true)
  echo "$(basename "$vol"): $(du -h --apparent-size "$vol" | cut -f1) apparent, $shared extent(s) shared with the original"
done

step "XenStore: the lockdown ZynClone publishes and the net monitor acknowledges"
xenstore-ls /tool/zynclone

step "nftables in the network domain: clone vifs (zcv*) drop every frame"
ip netns exec "$netdd" nft list table bridge zynclone

step "The original still answers at 10.78.0.10; its clone, same IP and MAC, is isolated"
clone_domid=$(xl domid web01-clone)
echo "db01 -> 10.78.0.10:"
ip netns exec "$ns_prefix-d$db_domid" ping -c 3 -i 0.2 -W 1 10.78.0.10
echo "db01 -> who has 10.78.0.10 (one MAC answers, the original's):"
ip netns exec "$ns_prefix-d$db_domid" arping -c 2 -w 3 -I eth0 10.78.0.10 || true
echo "web01-clone (domain $clone_domid, eth1 $(ip -n "$ns_prefix-d$clone_domid" -4 -o addr show eth1 | awk '{print $4}')) -> db01 at 10.78.0.30:"
if ip netns exec "$ns_prefix-d$clone_domid" ping -c 2 -i 0.2 -W 1 10.78.0.30; then
  echo "clone reached db01: lockdown FAILED" >&2
  exit 1
fi
echo "clone isolated: no reply, as intended"

step "vmclone config web01: each value and where it came from"
vmclone config web01

step "db01's data volume is shared with its clone, not cloned: an override"
vmclone config db01 --set shared_volumes=xvdb | grep -E '^(KEY|shared_volumes) '
echo "override file: $root/etc/xen/clone/override/db01.json: $(tr -d '\n' <"$root/etc/xen/clone/override/db01.json")"

step "vmclone create db01 --memory: the clone resumes where db01 was"
vmclone create db01 --memory 2>&1
vmclone list

step "The web console: vmclone create win01 --online, then vmclone console win01 opened in headless chromium"
vmclone create win01 --online -q 2>&1
console_json=$(vmclone console win01 --json)
console_url=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).url)' "$console_json")
echo "vmclone console win01 printed: $console_url"
node scripts/console-screenshot.mjs "$console_url" "$root/win01-clone-console.png"
vmclone remove win01 -q

step "vmclone switch-volume: db01's data volume moves to its clone, one writer at a time (a guest that keeps it gets 10 s, as on Xen)"
zynclone sim guest db01 write xvdb "note from db01"
vmclone switch-volume db01 xvdb --to clone 2>&1
vmclone status db01 | grep -E '^shared '
echo "db01-clone reads: $(zynclone sim guest db01-clone read xvdb 14)"
zynclone sim guest db01-clone mount xvdb
vmclone switch-volume db01 xvdb --to original 2>&1 || echo "(refused: the clone's guest has it mounted; nothing changed)"
zynclone sim guest db01-clone umount xvdb
vmclone switch-volume db01 xvdb --to original -q
vmclone status db01 | grep -E '^shared '

step "vmclone stop / start web01"
vmclone stop web01 -q
vmclone list
vmclone start web01 -q
vmclone list

step "vmclone doctor: the host's health"
vmclone doctor --netns "$netdd" || echo "(vmclone doctor found problems, listed above)"

step "vmclone remove web01, vmclone remove db01"
vmclone remove web01 -q
vmclone remove db01 -q
vmclone list
xl list

step "web01 asks for its own clone from inside the VM (guest/linux/zynclone-guest, through XenStore)"
vmclone config web01 --set guest_orchestration=true | grep -E '^(KEY|guest_orchestration) '
web_domid=$(xl domid web01)
# The orchestrator re-reads the configuration every 2 s; then web01 has zynclone/protocol.
for _ in $(seq 50); do
  xenstore-read "/local/domain/$web_domid/zynclone/protocol" >/dev/null 2>&1 && break
  sleep 0.1
done
# As inside web01: its network namespace and its own XenStore connection.
in_web01() {
  ip netns exec "$ns_prefix-d$web_domid" \
    env XENSTORED_PATH="$root/run/xenstored/domains/dom$web_domid.sock" \
    bash guest/linux/zynclone-guest "$@"
}
echo "web01\$ zynclone-guest create --wait"
in_web01 create --wait
echo "web01\$ zynclone-guest status"
in_web01 status
vmclone list
echo "the orchestrator's log ($root/log/orchestrator.log), where to look first:"
grep -E '"msg":"request (accepted|done|failed|refused)"' "$root/log/orchestrator.log" | tail -n 4
echo "web01\$ zynclone-guest remove --wait"
in_web01 remove --wait

step "Done. The simulator, the demo VMs, ZynClone's monitors and the dashboard keep running"
echo "Open the dashboard: $web_url (log in with the token in $web_token)"
echo "Go on with your own commands, in a shell of your own (in this directory):"
echo "  eval \"\$(.toolchain/node/bin/node dist/src/bin/zynclone.js sim env --root $root)\""
echo "  vmclone create web01 --online"
echo "  vmclone list; vmclone status web01; vmclone remove web01"
echo "Stop everything with: zynclone sim down --root $root"
