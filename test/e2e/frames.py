#!/usr/bin/python3 -IS
# Marked Ethernet frames for the packet tests, with no IP at all: broadcast
# frames of the local experimental ethertype 0x88b5, which nothing else on a
# test network sends or answers.
#
#   frames.py send LABEL IFNAME...  every 20 ms, on each interface, sends a
#       frame "zc:LABEL:IFNAME" (an interface that is missing or down is
#       tried again later), and prints "rx IFNAME MARKER" for every frame
#       of another sender it receives there. On SIGTERM it prints
#       "sent IFNAME N" per interface and exits.
#   frames.py capture   prints "cap IFNAME in|out MARKER" for every marked
#       frame on any interface of its network namespace (as tcpdump -i any).
import select
import signal
import socket
import sys
import time

ETH_P = 0x88B5
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def marker(frame):
    return frame[14:].split(b"\0", 1)[0].decode("ascii", "replace")


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def capture():
    # Every protocol, filtered here: a socket for one ethertype sees no frame
    # a bridge port takes (the bridge consumes it first) nor any sent frame.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    while not stop:
        if not select.select([s], [], [], 0.1)[0]:
            continue
        frame, addr = s.recvfrom(2048)
        if frame[12:14] == ETH_P.to_bytes(2, "big"):
            way = "out" if addr[2] == PACKET_OUTGOING else "in"
            out("cap %s %s %s" % (addr[0], way, marker(frame)))


def mac_of(ifname):
    with open("/sys/class/net/%s/address" % ifname) as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def send(label, ifnames):
    socks = {}
    sent = dict((i, 0) for i in ifnames)
    while not stop:
        for ifname in ifnames:
            s = socks.get(ifname)
            if s is None:
                try:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P))
                    s.bind((ifname, ETH_P))
                    s.setblocking(False)
                    socks[ifname] = s
                except OSError:
                    continue
            payload = ("zc:%s:%s" % (label, ifname)).encode().ljust(46, b"\0")
            try:
                s.send(b"\xff" * 6 + mac_of(ifname) + ETH_P.to_bytes(2, "big") + payload)
                sent[ifname] += 1
            except OSError:
                pass  # down (a paused guest) or gone: try again next round
        deadline = time.monotonic() + 0.02
        while not stop and time.monotonic() < deadline:
            ready = select.select(list(socks.values()), [], [], max(0.0, deadline - time.monotonic()))[0]
            for s in ready:
                try:
                    frame, addr = s.recvfrom(2048)
                except OSError:
                    continue
                if addr[2] != PACKET_OUTGOING:
                    out("rx %s %s" % (addr[0], marker(frame)))
    for ifname in ifnames:
        out("sent %s %d" % (ifname, sent[ifname]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["capture"]:
        capture()
    elif len(sys.argv) >= 4 and sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3:])
    else:
        sys.stderr.write("usage: frames.py send LABEL IFNAME... | frames.py capture\n")
        sys.exit(2)
