#!/usr/bin/env python3
"""bench/fleet_outage.py: the probes of `bash bench/fleet.sh outage`.

Run by fleet.sh, never alone; loopback only, every call bounded in time.
Subcommands (JSON on stdout):

  metrics ADMIN,...              the trackd_sync_* series of every instance's
                                 /metrics, and the status of its /readyz
  markers RUN HTTP,...           announce one seeder (the marker) to each
                                 instance on a torrent of its own, and check
                                 by a scrape that the instance holds it
  wait REDIS_PORT BOUND ADMIN,... HTTP,... HASHES
                                 from now: when redis-server answers PING
                                 again (t_up), then, every POLL seconds, each
                                 instance's /metrics and a scrape of the other
                                 instances' markers, until every instance is
                                 connected to the bus with its backlog
                                 published and holds every other instance's
                                 marker, or BOUND seconds after t_up; the
                                 times are from t_up
  final ADMIN,...                the trackd_sync_* counters of every instance,
                                 and what each should have applied (the
                                 changes the others published) against what
                                 it did
"""
import hashlib
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 2.0  # every request
POLL = 0.02
# An instance's backlog is published when what it has pending is under
# two full batches (the open one fills to 32 KiB in a flush period).
DRAINED_BYTES = 64 * 1024


def get(url):
    """Status and body of a GET (status 0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def bdecode(b, i=0):
    """A minimal bencode decoder: (value, next index)."""
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        i, out = i + 1, []
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i, out = i + 1, {}
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            v, i = bdecode(b, i)
            out[k] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def sync_metrics(admin):
    st, body = get("http://%s/metrics" % admin)
    m = {}
    if st == 200:
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith("trackd_sync_"):
                k, _, v = line.partition(" ")
                m[k[len("trackd_sync_"):]] = float(v)
    ready, _ = get("http://%s/readyz" % admin)
    return {"admin": admin, "metrics_status": st, "readyz_status": ready, "sync": m}


def scrape(addr, hashes):
    """complete + incomplete of each hash on the instance at addr (None: no answer)."""
    q = "&".join("info_hash=" + urllib.parse.quote_from_bytes(h) for h in hashes)
    st, body = get("http://%s/scrape?%s" % (addr, q))
    if st != 200:
        return None
    try:
        d, _ = bdecode(body)
        files = d.get(b"files", {})
        return [files.get(h, {}).get(b"complete", 0) + files.get(h, {}).get(b"incomplete", 0) for h in hashes]
    except (ValueError, IndexError, AttributeError):
        return None


def markers(run, addrs):
    out = []
    for i, a in enumerate(addrs):
        h = hashlib.sha1(b"trackd fleet.sh outage marker %s %d %f" % (run.encode(), i, time.time())).digest()
        pid = b"-FO0001-" + hashlib.sha1(h).digest()[:12]
        q = urllib.parse.urlencode({"info_hash": h, "peer_id": pid, "port": 41000 + i, "uploaded": 0,
                                    "downloaded": 0, "left": 0, "event": "started", "compact": 1, "numwant": 0})
        t0 = time.time()
        st, body = get("http://%s/announce?%s" % (a, q))
        took = time.time() - t0
        failure = None
        try:
            d, _ = bdecode(body)
            failure = d.get(b"failure reason")
        except (ValueError, IndexError, AttributeError):
            failure = b"undecodable reply"
        held = scrape(a, [h])
        out.append({"instance": i, "hash": h.hex(), "status": st, "failure": failure.decode("utf-8", "replace") if failure else None,
                    "seconds": took, "held_here": bool(held and held[0] >= 1)})
    return out


def redis_up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.settimeout(0.5)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait(port, bound, admins, addrs, hashes):
    start = time.time()
    while not redis_up(port):
        if time.time() - start > 60:
            return {"error": "redis-server did not answer within 60 s"}
        time.sleep(0.005)
    t_up = time.time()
    n = len(admins)
    connected = [None] * n  # when each first showed connected 1
    drained = [None] * n  # when each first showed connected 1 and its backlog published
    seen = [[None] * n for _ in range(n)]  # seen[b][a]: instance b holds instance a's marker
    rounds, pending_max = 0, [0] * n
    while True:
        now = time.time()
        if now - t_up > bound:
            break
        rounds += 1
        for b in range(n):
            m = sync_metrics(admins[b])["sync"]
            pending_max[b] = max(pending_max[b], int(m.get("pending_bytes", 0)))
            if m.get("connected") == 1:
                if connected[b] is None:
                    connected[b] = time.time() - t_up
                if drained[b] is None and m.get("pending_bytes", 1 << 40) <= DRAINED_BYTES:
                    drained[b] = time.time() - t_up
            others = [a for a in range(n) if a != b and seen[b][a] is None]
            if others:
                held = scrape(addrs[b], [hashes[a] for a in others])
                if held:
                    for a, c in zip(others, held):
                        if c >= 1:
                            seen[b][a] = time.time() - t_up
        done = all(c is not None for c in drained) and all(seen[b][a] is not None for b in range(n) for a in range(n) if a != b)
        if done:
            break
        time.sleep(max(0, POLL - (time.time() - now)))
    marks = [seen[b][a] for b in range(n) for a in range(n) if a != b]
    return {"redis_down_seconds_seen_by_poller": t_up - start, "connected_seconds": connected, "drained_seconds": drained,
            "markers_seconds": seen, "all_connected": max(connected) if None not in connected else None,
            "all_drained": max(drained) if None not in drained else None,
            "all_markers": max(marks) if marks and None not in marks else (0.0 if not marks else None),
            "rounds": rounds, "poll_round_seconds": (time.time() - t_up) / max(rounds, 1), "bound": bound,
            "pending_bytes_max_after_up": pending_max}


def final(admins):
    ms = [sync_metrics(a) for a in admins]
    pub = [int(m["sync"].get("changes_published_total", 0)) for m in ms]
    out = []
    for i, m in enumerate(ms):
        s = m["sync"]
        expected = sum(pub) - pub[i]
        got = int(s.get("changes_applied_total", 0) + s.get("changes_refused_total", 0))
        out.append({"instance": i, "published": pub[i], "expected": expected, "applied_or_refused": got, "missing": expected - got,
                    "lost_in_gaps": int(s.get("changes_lost_total", 0)), "gaps": int(s.get("gaps_total", 0)),
                    "dropped": int(s.get("changes_dropped_total", 0)), "bus_errors": int(s.get("bus_errors_total", 0)),
                    "duplicates": int(s.get("batches_duplicate_total", 0)), "connected": s.get("connected"),
                    "readyz_status": m["readyz_status"]})
    return out


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "metrics" and len(argv) == 3:
        print(json.dumps([sync_metrics(a) for a in argv[2].split(",")]))
    elif cmd == "markers" and len(argv) == 4:
        print(json.dumps(markers(argv[2], argv[3].split(","))))
    elif cmd == "wait" and len(argv) == 7:
        hashes = [bytes.fromhex(m["hash"]) for m in json.loads(argv[6])]
        print(json.dumps(wait(int(argv[2]), float(argv[3]), argv[4].split(","), argv[5].split(","), hashes)))
    elif cmd == "final" and len(argv) == 3:
        print(json.dumps(final(argv[2].split(","))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
