#!/usr/bin/env python3
"""A fast probe for the move benchmark (scripts/bench-move.sh), run inside a lab node.

  probe.py dns SERVER NAME [rd]   asks SERVER for NAME's A record back to back
  probe.py ping RESOLVER NAME     resolves NAME through RESOLVER (no client cache), then
                                  sends one ICMP echo to the answer (200 ms to reply)

Each question's outcome goes to stdout as `UNIX_US OUTCOME` when it differs from the last
one (an address, NXDOMAIN, NODATA, TIMEOUT; for ping `ok ADDRESS` or `fail WHY`), until
SIGTERM. Talks only to the servers and addresses it is given, which the benchmark takes
from the lab's own topology.
"""
import os
import signal
import socket
import struct
import sys
import time

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)


def query(name, qid, rd):
    q = struct.pack(">HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def skip_name(m, at):
    while True:
        n = m[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n


def answer(m, qlen):
    rcode = m[3] & 0x0F
    if rcode == 3:
        return "NXDOMAIN"
    if rcode != 0:
        return f"RCODE{rcode}"
    count = struct.unpack(">H", m[6:8])[0]
    at, found = qlen, []
    for _ in range(count):
        at = skip_name(m, at)
        rtype, _, _, rdlen = struct.unpack(">HHIH", m[at : at + 10])
        if rtype == 1 and rdlen == 4:
            found.append(socket.inet_ntoa(m[at + 10 : at + 14]))
        at += 10 + rdlen
    return ",".join(sorted(found)) or "NODATA"


def ask(sock, name, qid, rd):
    q = query(name, qid, rd)
    sock.send(q)
    while True:
        try:
            m = sock.recv(1500)
        except socket.timeout:
            return "TIMEOUT"
        if len(m) >= 12 and struct.unpack(">H", m[:2])[0] == qid:
            return answer(m, len(q))


def checksum(b):
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo(icmp, address, seq):
    body = struct.pack(">HHHH", 0x0800, 0, os.getpid() & 0xFFFF, seq) + b"roamlab"
    body = body[:2] + struct.pack(">H", checksum(body)) + body[4:]
    icmp.sendto(body, (address, 0))
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        icmp.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            m, (src, _) = icmp.recvfrom(1500)
        except socket.timeout:
            break
        ihl = (m[0] & 0x0F) * 4
        t, _, _, ident, s = struct.unpack(">BBHHH", m[ihl : ihl + 8])
        if t == 0 and ident == os.getpid() & 0xFFFF and s == seq and src == address:
            return True
    return False


def main():
    mode, server, name = sys.argv[1], sys.argv[2], sys.argv[3]
    rd = mode == "ping" or (len(sys.argv) > 4 and sys.argv[4] == "rd")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    sock.connect((server, 53))
    icmp = None
    if mode == "ping":
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    last, qid = None, 0
    while running:
        qid = (qid + 1) & 0xFFFF
        got = ask(sock, name, qid, rd)
        if icmp is not None:
            if "." in got and "," not in got:
                got = f"ok {got}" if echo(icmp, got, qid) else f"fail {got} no reply"
            else:
                got = f"fail {got}"
            time.sleep(0.001)
        if got != last:
            print(f"{time.time_ns() // 1000} {got}", flush=True)
            last = got


if __name__ == "__main__":
    main()
