#!/usr/bin/python3
"""Helpers of bench/sweep.sh (standard library only).

  sweep_helper.py record RESULT.json NAME POINT PROTO I C0 C1 B0 B1 T0 T1 HZ LA0 LA1
      One measured run as a line of JSON: the trackd-load result, the
      server's CPU seconds (C0, C1: its ticks), CPU TRACKER_CPU's busy,
      irq and steal ticks (B0, B1: "busy irq steal"), the window (T0, T1)
      and the load averages. A line on stderr for the log.
  sweep_helper.py table RUNS.jsonl POINTS.jsonl
      The sweep's table (markdown): one row per point and protocol.
  sweep_helper.py noise RUNS.jsonl STAT0 STAT1
      The machine's noise during the sweep: lines for the report.
"""

import json
import math
import statistics
import sys


def cmd_record(a):
    (path, name, point, proto, i, c0, c1, b0, b1, t0, t1, hz, la0, la1) = a
    res = json.loads(open(path).readline())
    hz = float(hz)
    cpu = (int(c1) - int(c0)) / hz
    p0, q0, s0 = map(int, b0.split())
    p1, q1, s1 = map(int, b1.split())
    win = float(t1) - float(t0)
    # opentracker's HTTP scrape replies list the files' keys unsorted
    # (bencode wants them sorted): the generator counts them as errors,
    # but they carry every count asked for and clients read them; they
    # are counted as answered here, and shown apart in the table.
    # Replies that came after their request's timeout (late, or to a slot
    # already reused: "unknown transaction id") were served too.
    unsorted = unsorted_keys(res)
    late = res.get("late", 0) + (res.get("error_messages") or {}).get("reply to no request in flight (unknown transaction id)", 0)
    answered = res["responses"] + unsorted + late
    rec = {"tracker": name, "point": point, "proto": proto, "run": int(i),
           "cpu_seconds": cpu, "window_seconds": win, "answered": answered, "unsorted_keys": unsorted,
           "responses_per_cpu_second": answered / cpu if cpu > 0 else 0.0,
           "cpu0_busy_seconds": (p1 - p0 + q1 - q0) / hz, "cpu0_steal_seconds": (s1 - s0) / hz,
           "loadavg_before": la0, "loadavg_after": la1, "result": res}
    print(json.dumps(rec))
    print("  %-11s %-10s %-4s run %s: %7.0f responses/s, %7.0f per server CPU-s (%.2f s of %.2f s), "
          "%.1f peers/announce, p99 %.0f us, errors %d, timeouts %d; load %s"
          % (name, point, proto, i, res["responses_per_sec"], rec["responses_per_cpu_second"], cpu, win,
             res.get("mean_peers_per_announce", 0), res["latency_p99_us"], res["errors"], res["timeouts"], la1), file=sys.stderr)
    return 0


def unsorted_keys(res):
    """Replies the generator refused only for unsorted dictionary keys."""
    return sum(n for m, n in (res.get("error_messages") or {}).items() if "not in sorted order" in m)


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def hottest(pt):
    """Peers of the hottest torrent, as loadgen deals them."""
    t, p = pt["torrents"], pt["peers"]
    pop = pt["popularity"]
    if pop.startswith("zipf:"):
        s = float(pop[5:])
        w0, tot = 1.0, sum((i + 1) ** -s for i in range(t))
    else:
        w = lambda i: p / t + math.exp(6.5 - 500 * i / t)
        w0, tot = w(0), sum(w(i) for i in range(t))
    return p * w0 / tot


def mix_text(m):
    f = m.split()
    d = dict(zip(f[0::2], f[1::2]))
    parts = ["numwant %s" % d.get("-numwant", "30")]
    sc = float(d.get("-scrape", "0.01"))
    parts.append("%g %% scrapes of 1–%s" % (100 * sc, d.get("-scrape-hashes", "10")))
    ev = []
    if "-stopped" in d:
        ev.append("%g %% stopped" % (100 * float(d["-stopped"])))
    if "-completed" in d:
        ev.append("%g %% completed" % (100 * float(d["-completed"])))
    if ev:
        parts.append(", ".join(ev))
    return "; ".join(parts)


def k(v):
    return "{:,.0f}".format(v)


def cmd_table(a):
    runs, points = load(a[0]), load(a[1])
    by = {}
    for r in runs:
        by.setdefault((r["point"], r["proto"], r["tracker"]), []).append(r)
    out = ["| point | popularity (hottest swarm) | seeders | request mix | protocol | trackd per CPU-s | opentracker per CPU-s | ratio: median (pairs' range) | canned per CPU-s (ceiling) | trackd / canned | peers per announce: trackd / opentracker | server CPU busy: trackd / opentracker | errors + timeouts: trackd / opentracker |",
           "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst = {}
    for pt in points:
        for proto in ("udp", "http"):
            t = sorted(by.get((pt["point"], proto, "trackd"), []), key=lambda r: r["run"])
            o = sorted(by.get((pt["point"], proto, "opentracker"), []), key=lambda r: r["run"])
            c = by.get((pt["point"], proto, "canned"), [])
            if not t or not o:
                continue
            med = lambda rs: statistics.median(r["responses_per_cpu_second"] for r in rs)
            ratios = [x["responses_per_cpu_second"] / y["responses_per_cpu_second"]
                      for x, y in zip(t, o) if y["responses_per_cpu_second"] > 0]
            ratio = statistics.median(ratios) if ratios else float("nan")
            if proto not in worst or ratio < worst[proto][0]:
                worst[proto] = (ratio, pt["point"])
            peers = lambda rs: statistics.median(r["result"].get("mean_peers_per_announce", 0) for r in rs)
            busy = lambda rs: statistics.median(r["cpu_seconds"] / r["window_seconds"] for r in rs)
            bad = lambda rs: sum(r["result"]["errors"] - unsorted_keys(r["result"]) + r["result"]["timeouts"] for r in rs)
            # timeouts include requests answered late (counted as answered)
            uns = sum(unsorted_keys(r["result"]) for r in t + o)
            cn = med(c) if c else 0
            nw = int(dict(zip(pt["mix"].split()[0::2], pt["mix"].split()[1::2])).get("-numwant", "30"))
            cref = "%s%s" % (k(cn), " (≤30 peers)" if nw > 30 else "") if cn else "–"
            out.append("| %s | %s (%s) | %g %% | %s | %s | %s | %s | **%.2f×** (%.2f–%.2f) | %s | %s | %.1f / %.1f | %.0f %% / %.0f %% | %s / %s%s |" % (
                pt["point"], pt["popularity"], k(hottest(pt)), 100 * pt["seeders"], mix_text(pt["mix"]),
                "UDP" if proto == "udp" else "HTTP, new conn.",
                k(med(t)), k(med(o)), ratio, min(ratios), max(ratios), cref,
                "%.2f" % (med(t) / cn) if cn else "–", peers(t), peers(o), 100 * busy(t), 100 * busy(o), k(bad(t)), k(bad(o)),
                " (+%s scrape replies with unsorted keys)" % k(uns) if uns else ""))
    out.append("")
    out.append("Per CPU-s: replies per second of the server's own CPU time (user + system) over the measured window (valid replies, "
               "with those that came after their request's 250 ms UDP timeout and opentracker's scrape replies with unsorted keys); "
               "the ratio is the median of the ratios of the neighbouring pairs (trackd run i, opentracker run i), the range their spread. "
               "The canned server replies with at most 30 peers (a loose ceiling at numwant 50 and 200), over HTTP on trackd's own "
               "HTTP server (httpserver: epoll, TCP_DEFER_ACCEPT): its figure is what a server with no tracker work behind it costs. "
               "Server CPU busy: the server's CPU time over the window (median); where it is low the generator (or the machine) "
               "did not keep the server busy, and a server's cost per reply is then higher (fewer requests per wake-up).")
    out.append("")
    for proto, (r, p) in sorted(worst.items(), reverse=True):
        out.append("Worst point, %s: %s at %.2f×." % ("UDP" if proto == "udp" else "HTTP (new connection per request)", p, r))
    print("\n".join(out))
    return 0


def cmd_noise(a):
    runs = load(a[0])
    f0 = list(map(int, a[1].split()[1:]))
    f1 = list(map(int, a[2].split()[1:]))
    d = [y - x for x, y in zip(f0, f1)]
    total = sum(d[:8])
    steal = d[7] / total if total else 0
    idle = (d[3] + d[4]) / total if total else 0
    others = [max(0.0, r["cpu0_busy_seconds"] - r["cpu_seconds"]) / r["window_seconds"] for r in runs if r["window_seconds"] > 0]
    util = [r["cpu_seconds"] / r["window_seconds"] for r in runs if r["window_seconds"] > 0]
    la = [float(r["loadavg_after"].split()[0]) for r in runs]
    spread = []
    by = {}
    for r in runs:
        if r["tracker"] != "canned":
            by.setdefault((r["point"], r["proto"], r["tracker"]), []).append(r["responses_per_cpu_second"])
    for v in by.values():
        if len(v) > 1 and min(v) > 0:
            spread.append(max(v) / min(v) - 1)
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))] if v else 0
    print("- machine noise over the sweep (both CPUs, /proc/stat): %.0f %% idle, %.1f %% steal; 1-minute load average after each run: min %.2f, median %.2f, max %.2f (the server and the generator alone make about 2)"
          % (100 * idle, 100 * steal, min(la), statistics.median(la), max(la)))
    print("- on the tracker's CPU during the measured windows: the server itself busy %.0f %% (median), everything else (other processes, their interrupts) %.0f %% median, %.0f %% at the 90th percentile"
          % (100 * statistics.median(util), 100 * statistics.median(others), 100 * q(others, 0.9)))
    if spread:
        print("- spread of one tracker's runs at one point (max/min − 1 of responses per CPU-second): median %.0f %%, 90th percentile %.0f %%, max %.0f %%"
              % (100 * statistics.median(spread), 100 * q(spread, 0.9), 100 * max(spread)))
    return 0


def main():
    cmds = {"record": cmd_record, "table": cmd_table, "noise": cmd_noise}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
