#!/usr/bin/env bash
# The demo: a Xen host in a box, with ZynClone's tools pointed at it. Rerunnable:
# it starts by taking down what a previous run left. It ends with the simulator
# and the demo VMs running (the monitors it started are stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

root=${ZYNCLONE_DEMO_ROOT:-/tmp/zynclone-demo}
zynclone() { node dist/src/bin/zynclone.js "$@"; }
vmclone() { node dist/src/bin/vmclone.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
logdir=$root/log

# The monitors are the demo's own processes, not the simulator's: their pids are
# kept in $logdir/*.pid, and they are stopped by pid, after checking the pid
# still is that monitor (a recycled pid is never hit).
stop_monitor() {
  local name=$1 pidfile=$logdir/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "zynclone.js $name"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
stop_monitors() {
  stop_monitor clone-monitor
  stop_monitor net-monitor
}

# Starts `zynclone <name> ARGS...` in the background and waits for its heartbeat in XenStore.
start_monitor() {
  local name=$1
  shift
  # node itself, not the zynclone() function: $! must be the monitor's own pid.
  node dist/src/bin/zynclone.js "$name" "$@" >"$logdir/$name.log" 2>&1 &
  echo $! >"$logdir/$name.pid"
  for _ in $(seq 100); do
    if xenstore-read "/tool/zynclone/daemons/$name/heartbeat" >/dev/null 2>&1; then
      echo "$name running (pid $(cat "$logdir/$name.pid")), log: $logdir/$name.log"
      return 0
    fi
    kill -0 "$(cat "$logdir/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start; its log:" >&2
  cat "$logdir/$name.log" >&2
  return 1
}

mkdir -p "$root"
stop_monitors
zynclone sim down --root "$root" >/dev/null 2>&1 || true
rm -rf "$logdir"
mkdir -p "$logdir"
trap stop_monitors EXIT

step "Starting the simulator (XenStore server, xl, bridges, VNC consoles) in $root"
up_out=$(zynclone sim up --root "$root" --storage xfs)
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
if [ -z "$ns_prefix" ]; then
  echo "(the simulator runs without network here: the clone part of the demo needs it, as root)"
  step "Done. The simulator keeps running; stop it with: node dist/src/bin/zynclone.js sim down --root $root"
  exit 0
fi
netdd=$ns_prefix-netdd
web_domid=$(xl domid web01)
db_domid=$(xl domid db01)
ip netns exec "$ns_prefix-d$web_domid" ping -c 2 -W 1 10.78.0.30

step "Consoles: win01's VNC server, as xl writes it into XenStore"
win_domid=$(xl domid win01)
echo "vnc-listen=$(xenstore-read "/local/domain/$win_domid/console/vnc-listen") vnc-port=$(xenstore-read "/local/domain/$win_domid/console/vnc-port")"

step "ZynClone's monitors, in the background (logs in $logdir)"
# The net monitor runs in the network driver domain: here, the simulator's netdd namespace.
start_monitor net-monitor --netns "$netdd"
if zynclone --help | grep -q '^  clone-monitor '; then
  start_monitor clone-monitor
fi

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

step "vmclone stop / start web01"
vmclone stop web01 -q
vmclone list
vmclone start web01 -q
vmclone list

if vmclone --help 2>/dev/null | grep -q '^  doctor'; then
  step "vmclone doctor: the host's health"
  vmclone doctor --netns "$netdd" || echo "(vmclone doctor found problems, listed above)"
fi

step "vmclone remove web01, vmclone remove db01"
vmclone remove web01 -q
vmclone remove db01 -q
vmclone list
xl list

step "Stopping the monitors this demo started"
stop_monitors
trap - EXIT
echo "monitors stopped; the net monitor's nftables table stays in $netdd until the simulator goes"

step "Done. The simulator and the demo VMs keep running (eval \"\$(node dist/src/bin/zynclone.js sim env --root $root)\" to use them)."
echo "Stop everything with: node dist/src/bin/zynclone.js sim down --root $root"
