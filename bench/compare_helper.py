#!/usr/bin/python3
"""Helpers of bench/compare.sh (standard library only).

  compare_helper.py probe HOST:PORT HEXHASH [TIMEOUT_S]
      Wait until a UDP announce for the hash (from 127.0.0.1, port 1023)
      gets a full announce reply (action 1, at least 20 bytes), then send
      event=stopped to take that peer out again. Exit 0 when it does, 1 after
      TIMEOUT_S. opentracker answers an announce for a hash that is not (yet)
      on its whitelist with an 8-byte packet (action 1, no body) -- but
      answers event=stopped normally, so the probe cannot use stopped alone.
  compare_helper.py count HOST:PORT HASHFILE
      UDP-scrape (BEP 15) every hash of HASHFILE, 74 per packet, and print
      one line of JSON: torrents, seeders, leechers, peers (their sum),
      downloaded, and the number of torrents with at least one peer.
  compare_helper.py table RUNS.jsonl
      Print the throughput table (markdown) from the runs compare.sh recorded.
  compare_helper.py memtable MEM.jsonl
      Print the memory table (markdown).
  compare_helper.py hold HOST:PORT HEXHASH N
      Open N TLS connections (certificate not checked; to a loopback
      address from 250 per source address), send one HTTP/1.1 announce
      for the hash on each (a peer each) and read its reply,
      keeping the connection open; print "held N" and hold them all idle
      until standard input closes (compare-https.sh's memory mode).
"""

import json
import os
import re
import resource
import socket
import ssl
import statistics
import struct
import sys
import time

MAGIC = 0x41727101980


def parse_addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


class UDPTracker:
    def __init__(self, addr, timeout=1.0):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)
        self.tx = int.from_bytes(os.urandom(4), "big")
        self.cid = None
        self.cid_at = 0.0

    def _next_tx(self):
        self.tx = (self.tx + 1) & 0xFFFFFFFF
        return self.tx

    def _roundtrip(self, payload_fn, tries=5):
        """Send payload_fn(tx) until a reply with that tx arrives."""
        for _ in range(tries):
            tx = self._next_tx()
            self.sock.sendto(payload_fn(tx), self.addr)
            deadline = time.monotonic() + self.sock.gettimeout()
            while time.monotonic() < deadline:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    break
                if len(data) >= 8 and struct.unpack(">I", data[4:8])[0] == tx:
                    return data
        raise TimeoutError("no reply from %s:%d" % self.addr)

    def connection_id(self):
        if self.cid is None or time.monotonic() - self.cid_at > 50:
            r = self._roundtrip(lambda tx: struct.pack(">QII", MAGIC, 0, tx))
            action = struct.unpack(">I", r[:4])[0]
            if action != 0 or len(r) < 16:
                raise RuntimeError("bad connect reply: %r" % r[:64])
            self.cid = struct.unpack(">Q", r[8:16])[0]
            self.cid_at = time.monotonic()
        return self.cid

    def announce(self, ih, pid, event):
        cid = self.connection_id()
        return self._roundtrip(lambda tx: struct.pack(
            ">QII20s20sQQQIIIiH", cid, 1, tx, ih, pid, 0, 0, 0,
            event, 0, 0, 0, 1023))

    def scrape(self, hashes):
        cid = self.connection_id()
        r = self._roundtrip(lambda tx: struct.pack(">QII", cid, 2, tx) + b"".join(hashes))
        action = struct.unpack(">I", r[:4])[0]
        if action != 2 or len(r) != 8 + 12 * len(hashes):
            raise RuntimeError("bad scrape reply (action %d, %d bytes): %r" % (action, len(r), r[8:100]))
        return [struct.unpack(">III", r[8 + 12 * i:20 + 12 * i]) for i in range(len(hashes))]


def cmd_probe(args):
    addr = parse_addr(args[0])
    ih = bytes.fromhex(args[1])
    limit = float(args[2]) if len(args) > 2 else 60
    deadline = time.monotonic() + limit
    last = "no reply"
    while time.monotonic() < deadline:
        try:
            t = UDPTracker(addr, timeout=0.5)
            pid = b"-BENCH0-" + os.urandom(12)
            r = t.announce(ih, pid, 0)
            action = struct.unpack(">I", r[:4])[0]
            if action == 1 and len(r) >= 20:
                t.announce(ih, pid, 3)  # stopped: take the probe's peer out again
                return 0
            last = "action %d, %d bytes: %r" % (action, len(r), r[8:80])
        except (TimeoutError, RuntimeError, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    print("probe: no valid announce reply for %s: %s" % (args[1], last), file=sys.stderr)
    return 1


def cmd_count(args):
    addr = parse_addr(args[0])
    with open(args[1]) as f:
        hashes = [bytes.fromhex(line.strip()) for line in f if line.strip()]
    t = UDPTracker(addr, timeout=1.0)
    seeders = leechers = downloaded = nonempty = 0
    for i in range(0, len(hashes), 74):
        for s, d, l in t.scrape(hashes[i:i + 74]):
            seeders += s
            leechers += l
            downloaded += d
            nonempty += (s + l) > 0
    print(json.dumps({"torrents": len(hashes), "seeders": seeders, "leechers": leechers,
                      "peers": seeders + leechers, "downloaded": downloaded,
                      "nonempty_torrents": nonempty}))
    return 0


def norm_msg(m):
    """Error messages without the binary keys and offsets they quote."""
    m = re.sub(r'dict key ".*" not in sorted order \(after ".*"\)', "dict keys not in sorted order", m)
    m = re.sub(r"at offset \d+", "at offset N", m)
    return m


def fmt_int(v):
    return "{:,.0f}".format(v)


def fmt_us(v):
    if v >= 1e6:
        return "%.2f s" % (v / 1e6)
    if v >= 1e3:
        return "%.2f ms" % (v / 1e3)
    return "%.0f µs" % v


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


TRACKER_ORDER = {"canned": 0, "trackd": 1, "opentracker": 2}
MODE_ORDER = {"udp": 0, "http keep-alive": 1, "http close": 2}


def cmd_table(args):
    runs = load(args[0])
    groups = {}
    for r in runs:
        groups.setdefault((r["mode"], r["tracker"]), []).append(r)
    rows = {}
    for (mode, tracker), rs in groups.items():
        res = [r["result"] for r in rs]
        rows[(mode, tracker)] = {
            "n": len(rs),
            "rps": statistics.median(x["responses_per_sec"] for x in res),
            "per_cpu": statistics.median(r["responses_per_cpu_second"] for r in rs),
            "per_cpu0": statistics.median(r["responses_per_cpu0_second"] for r in rs),
            "util": statistics.median(r["cpu_seconds"] / r["window_seconds"] for r in rs),
            "cpu0": statistics.median(r["cpu0_busy_seconds"] / r["window_seconds"] for r in rs),
            "p50": statistics.median(x["latency_p50_us"] for x in res),
            "p99": statistics.median(x["latency_p99_us"] for x in res),
            "errors": sum(x["errors"] for x in res),
            "timeouts": sum(x["timeouts"] for x in res),
            "responses": sum(x["responses"] for x in res),
            "msgs": {},
        }
        for x in res:
            for m, n in (x.get("error_messages") or {}).items():
                k = norm_msg(m)
                rows[(mode, tracker)]["msgs"][k] = rows[(mode, tracker)]["msgs"].get(k, 0) + n

    out = []
    out.append("| protocol / mode | server | runs | responses/s | responses per server CPU-second | responses per CPU-0 busy second | server CPU | CPU 0 busy | p50 latency | p99 latency | errors | timeouts |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(rows, key=lambda k: (MODE_ORDER.get(k[0], 9), TRACKER_ORDER.get(k[1], 9))):
        v = rows[key]
        name = key[1] + (" (generator ceiling)" if key[1] == "canned" else "")
        out.append("| %s | %s | %d | %s | %s | %s | %.0f %% | %.0f %% | %s | %s | %s | %s |" % (
            key[0], name, v["n"], fmt_int(v["rps"]), fmt_int(v["per_cpu"]), fmt_int(v["per_cpu0"]),
            100 * v["util"], 100 * v["cpu0"], fmt_us(v["p50"]), fmt_us(v["p99"]), fmt_int(v["errors"]), fmt_int(v["timeouts"])))
    out.append("")
    out.append("Ratios trackd / opentracker (medians):")
    out.append("")
    out.append("| comparison | per server CPU-second | per CPU-0 busy second | responses/s |")
    out.append("|---|---:|---:|---:|")
    pairs = [("udp", "udp", "UDP"),
             ("http close", "http close", "HTTP, both a new connection per request"),
             ("http keep-alive", "http close", "HTTP, trackd keep-alive vs opentracker close (each as deployed)")]
    for tm, om, label in pairs:
        t, o = rows.get((tm, "trackd")), rows.get((om, "opentracker"))
        if not t or not o:
            continue
        q = lambda a, b: "%.2f×" % (a / b) if b else "n/a"
        out.append("| %s | %s | %s | %s |" % (label, q(t["per_cpu"], o["per_cpu"]), q(t["per_cpu0"], o["per_cpu0"]), q(t["rps"], o["rps"])))
    msgs = [(k, v) for k, v in sorted(rows.items(), key=lambda kv: (MODE_ORDER.get(kv[0][0], 9), TRACKER_ORDER.get(kv[0][1], 9))) if v["msgs"]]
    if msgs:
        out.append("")
        out.append("Errors by message (all runs):")
        out.append("")
        for (mode, tracker), v in msgs:
            for m, n in sorted(v["msgs"].items(), key=lambda kv: -kv[1]):
                out.append("- %s, %s: %s × %s (of %s valid responses)" % (mode, tracker, fmt_int(n), m, fmt_int(v["responses"])))
    print("\n".join(out))
    return 0


def cmd_memtable(args):
    rows = load(args[0])
    out = []
    out.append("| tracker | torrents | peers announced (fill) | peers held (UDP scrape) | fill errors | empty VmRSS | VmRSS filled | VmHWM | (VmRSS − empty)/peer | VmHWM/peer |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["peers"], r["torrents"], TRACKER_ORDER.get(r["tracker"], 9))):
        held = r.get("held")
        peers = held if held else r["peers"]
        out.append("| %s | %s | %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f B | %.1f B |" % (
            r["tracker"], fmt_int(r["torrents"]), fmt_int(r["fill"]["announces"]),
            fmt_int(held) if held is not None else "not checked", fmt_int(r["fill"]["errors"]),
            r["rss_empty_kb"] / 1024, r["rss_kb"] / 1024, r["hwm_kb"] / 1024,
            (r["rss_kb"] - r["rss_empty_kb"]) * 1024 / peers, r["hwm_kb"] * 1024 / peers))
    print("\n".join(out))
    return 0


def http_reply(conn):
    """Read one HTTP/1.1 reply with a Content-Length from conn."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = conn.recv(4096)
        if not b:
            raise RuntimeError("connection closed in a reply's head: %r" % buf[:200])
        buf += b
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if not head.startswith(b"HTTP/1.1 200") or not m:
        raise RuntimeError("unexpected reply: %r" % head[:200])
    while len(body) < int(m.group(1)):
        b = conn.recv(4096)
        if not b:
            raise RuntimeError("connection closed in a reply's body")
        body += b
    return body


def cmd_hold(args):
    host, port = parse_addr(args[0])
    ih = bytes.fromhex(args[1])
    n = int(args[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    q = "".join("%%%02X" % c for c in ih)
    conns = []
    for i in range(n):
        # 250 connections per source address (127.1.0.2, 127.1.0.3, ...),
        # below a server's bound per address.
        k = i // 250
        src = "127.1.%d.%d" % (k // 250, 2 + k % 250) if host.startswith("127.") else ""
        s = socket.create_connection((host, port), timeout=10, source_address=(src, 0))
        # Without it the request waits behind the client's Finished for an
        # acknowledgement (Nagle's algorithm against a delayed ACK): 40 ms.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = ctx.wrap_socket(s, server_hostname=host)
        pid = ("-BENCH0-%012d" % i).encode()
        c.sendall(("GET /announce?info_hash=%s&peer_id=%s&port=%d&left=0&compact=1 HTTP/1.1\r\n"
                   "Host: %s\r\n\r\n" % (q, pid.decode(), 1024 + i % 60000, host)).encode())
        if not http_reply(c).startswith(b"d"):
            raise RuntimeError("not a bencoded reply")
        conns.append(c)
    print("held %d" % len(conns), flush=True)
    sys.stdin.read()
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = {"probe": cmd_probe, "count": cmd_count, "table": cmd_table, "memtable": cmd_memtable, "hold": cmd_hold}
    fn = cmds.get(sys.argv[1])
    if fn is None:
        print(__doc__, file=sys.stderr)
        return 2
    return fn(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
