#!/usr/bin/env bash
# bench/compare-ws.sh: WebSocket (WebTorrent) trackers side by side, one
# core each: trackd and webtorrent's bittorrent-tracker (Node), under the
# same load from trackd-load -ws.
#
#   bash bench/compare-ws.sh             throughput: messages per tracker CPU-second
#   bash bench/compare-ws.sh memory      memory: resident bytes per idle connection
#
# See bench/README.md ("WebSocket") for what it measures and the knobs.
# Loopback only; every process it starts is bounded in time and killed on
# exit. It installs one thing: bittorrent-tracker from npm into a cache
# directory (BT_DIR), never into the repository.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: bash bench/compare-ws.sh [throughput|memory]

Environment (defaults in brackets):
  TRACKERS ["bittorrent-tracker trackd"]  trackers measured (plus "canned" in throughput
                                       mode: the generator's ceiling)
  TRACKD_ARGS ["-http ADDR -udp ''"]   trackd's flags; the word ADDR becomes 127.0.0.1:PORT.
                                       trackd is measured only if it upgrades ws://ADDR/announce
                                       (a check run first); until then its rows are skipped
  BT_DIR [~/.cache/trackd-bench/bittorrent-tracker]  npm prefix of bittorrent-tracker
  BT_VERSION [11.2.3]                  installed there if missing (npm install --ignore-scripts,
                                       then npm rebuild bufferutil utf-8-validate)
  CONNS [1000]  WS_TORRENTS [2]  TORRENTS [1000]  OFFERS [5]  SDP [2048]  WINDOW [1]
                                       throughput workload (trackd-load -ws-* flags)
  TIMEOUT [10s]                        an announce unanswered this long is a timeout
  DURATION [10s]  WARMUP [3s]  RUNS [3] measured time, warm-up, runs per tracker (interleaved:
                                       run 1 of every tracker, then run 2, ...; a fresh server each)
  MEM_CONNS ["10000 50000"]            memory mode: idle connections per reading
  MEM_FLAGS ["-ws-offers 5"]           memory mode: extra trackd-load flags of the idle run
  HOLD [30s]  SETTLE [5]               memory mode: hold time; seconds between "all announced"
                                       and the reading
  SEED [1]  PORT [16970]  TRACKER_CPU [0]  LOAD_CPU [1]  LOAD_FLAGS [""]
  REV [""]                             build from this git revision instead of the working tree
  RESULTS [/tmp/trackd-bench-ws-DATE]  where raw results go
  MAX_TIME [computed]                  hard cap on the whole script, in seconds
EOF
}

parse_mode "$@"

TRACKERS=${TRACKERS:-bittorrent-tracker trackd}
TRACKD_ARGS=${TRACKD_ARGS-"-http ADDR -udp ''"}
BT_DIR=${BT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trackd-bench/bittorrent-tracker}
BT_VERSION=${BT_VERSION:-11.2.3}
CONNS=${CONNS:-1000}
WS_TORRENTS=${WS_TORRENTS:-2}
TORRENTS=${TORRENTS:-1000}
OFFERS=${OFFERS:-5}
SDP=${SDP:-2048}
WINDOW=${WINDOW:-1}
TIMEOUT=${TIMEOUT:-10s}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
RUNS=${RUNS:-3}
MEM_CONNS=${MEM_CONNS:-10000 50000}
MEM_FLAGS=${MEM_FLAGS--ws-offers 5}
HOLD=${HOLD:-30s}
SETTLE=${SETTLE:-5}
SEED=${SEED:-1}
PORT=${PORT:-16970}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD_FLAGS=${LOAD_FLAGS:-}
RESULTS=${RESULTS:-/tmp/trackd-bench-ws-$(date +%Y%m%d-%H%M%S)}
ADDR=127.0.0.1:$PORT
URL=ws://$ADDR/announce
PY=/usr/bin/python3

DURATION=$(godur "$DURATION")
WARMUP=$(godur "$WARMUP")
HOLD=$(godur "$HOLD")
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
HOLD_S=$(secs "$HOLD")
for v in CONNS WS_TORRENTS TORRENTS OFFERS SDP WINDOW RUNS SETTLE SEED PORT TRACKER_CPU LOAD_CPU; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
((RUNS >= 1)) || die "RUNS must be at least 1"
for n in $MEM_CONNS; do [[ $n =~ ^[0-9]+$ ]] || die "MEM_CONNS: '$n' is not a number"; done
for t in $TRACKERS; do
	case $t in canned | trackd | bittorrent-tracker) ;; *) die "TRACKERS: unknown '$t'" ;; esac
done
((SETTLE < HOLD_S)) || die "SETTLE ($SETTLE s) must be shorter than HOLD ($HOLD)"

for c in go node npm taskset timeout ss getconf pgrep; do command -v "$c" >/dev/null || die "missing $c"; done
[[ -x $PY ]] || die "missing $PY"
two_cpus

# --- one hard cap on the whole script (run_capped, bench/lib.sh)
if [[ -z ${_COMPARE_CAPPED:-} && -z ${MAX_TIME:-} ]]; then
	ntr=$(($(wc -w <<<"$TRACKERS") + 1))
	if [[ $MODE == throughput ]]; then
		est=$((ntr * RUNS * (WARM_S + DUR_S + 10) + ntr * 20 + 300))
	else
		nm=$(wc -w <<<"$MEM_CONNS")
		est=$((ntr * nm * (HOLD_S + 240) + 300))
	fi
	MAX_TIME=$((2 * est + 300))
fi
run_capped "$@"

CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$RESULTS/raw"
[[ -z $(ls -A "$RESULTS/raw") ]] || die "$RESULTS/raw is not empty; give another RESULTS"
BIN=$(mktemp -d /tmp/trackd-bench-ws-bin.XXXXXX)
trap_cleanup

# --- open files: 50,000 connections need more than the usual soft limit,
# in the tracker and in the generator (root may raise the hard limit).
want_nofile=$((2 * $(tr ' ' '\n' <<<"$MEM_CONNS $CONNS" | sort -n | tail -n 1) + 1024))
if (($(ulimit -Hn) < want_nofile)); then ulimit -Hn "$want_nofile" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

# --- bittorrent-tracker, from npm, in a cache directory
BT_CMD=$BT_DIR/node_modules/bittorrent-tracker/bin/cmd.js
if [[ " $TRACKERS " == *" bittorrent-tracker "* && ! -f $BT_CMD ]]; then
	log "installing bittorrent-tracker@$BT_VERSION into $BT_DIR"
	# bittorrent-tracker's index.js (which its cmd.js imports) loads the
	# client too, whose webrtc-polyfill needs node-datachannel, whose install
	# script downloads a binary (and fails here). The server needs no WebRTC:
	# an npm override maps webrtc-polyfill onto a stub that throws if used.
	# --ignore-scripts, then ws's native helpers (bufferutil,
	# utf-8-validate, prebuilt binaries in their packages) by npm rebuild.
	mkdir -p "$BT_DIR/webrtc-stub"
	printf '%s\n' '{"name":"webrtc-polyfill","version":"1.2.2","type":"module","main":"index.js","exports":{"import":"./index.js","default":"./index.js"}}' \
		>"$BT_DIR/webrtc-stub/package.json"
	printf '%s\n' '// A stand-in for webrtc-polyfill: the tracker server needs no WebRTC.' \
		"class NoWebRTC { constructor () { throw new Error('no WebRTC in this install (tracker server only)') } }" \
		'export const RTCPeerConnection = NoWebRTC' \
		'export const RTCSessionDescription = NoWebRTC' \
		'export const RTCIceCandidate = NoWebRTC' \
		'export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }' >"$BT_DIR/webrtc-stub/index.js"
	printf '%s\n' '{"private":true,"overrides":{"webrtc-polyfill":"file:./webrtc-stub"}}' >"$BT_DIR/package.json"
	(cd "$BT_DIR" && timeout 600 npm install --no-audit --no-fund --ignore-scripts "bittorrent-tracker@$BT_VERSION" &&
		timeout 300 npm rebuild bufferutil utf-8-validate) >&2 || die "npm install bittorrent-tracker failed"
fi
BT_VER=$(node -p "require('$BT_DIR/node_modules/bittorrent-tracker/package.json').version" 2>/dev/null || echo '?')
WS_VER=$(node -p "require('$BT_DIR/node_modules/ws/package.json').version" 2>/dev/null || echo '?')
NODE=$(readlink -f "$(command -v node)")

# --- build
# shellcheck disable=SC2119 # no bench tools to build
build

taskset -pc "$LOAD_CPU" $$ >/dev/null

port_in_use() { [[ -n $(ss -Hlnt "sport = :$PORT") ]]; }

# start_server NAME EXE ARGS...: EXE pinned to TRACKER_CPU under its own
# time bound; waits until it listens on TCP PORT. Sets SRV_PID, SRV_WRAP.
start_server() {
	local name=$1 exe=$2
	shift 2
	! port_in_use || die "port $PORT is in use (ss -lntp 'sport = :$PORT'); set PORT"
	spawn_server "$name" "$BIN" "$exe" "$@"
	local i
	for i in $(seq 300); do
		kill -0 "$SRV_PID" 2>/dev/null || die "$name exited; see $RESULTS/$name.log"
		if port_in_use; then
			log "$name started, pid $SRV_PID on CPU $TRACKER_CPU, $URL"
			return 0
		fi
		sleep 0.05
	done
	die "$name does not listen on TCP $ADDR; see $RESULTS/$name.log"
}
stop_server() {
	[[ -n $SRV_PID ]] || return 0
	kill_server
	local i
	for i in $(seq 100); do port_in_use || break; sleep 0.1; done
}
start_tracker() {
	case $1 in
	canned) start_server canned "$BIN/trackd-load" -canned -ws "$ADDR" -max-time "${MAX_TIME}s" ;;
	bittorrent-tracker) start_server bittorrent-tracker "$NODE" "$BT_CMD" --ws --port "$PORT" --http-hostname 127.0.0.1 --quiet ;;
	trackd)
		local args
		# shellcheck disable=SC2086
		eval "args=(${TRACKD_ARGS//ADDR/$ADDR})"
		start_server trackd "$BIN/trackd" "${args[@]}"
		;;
	esac
}

# gen TAG LIMIT_S FLAGS...: trackd-load pinned to LOAD_CPU in the
# background; JSON to raw/TAG.json, text to raw/TAG.txt. Sets GEN.
gen() {
	local tag=$1 limit=$2
	shift 2
	# shellcheck disable=SC2086
	run_load "$tag" "$limit" -ws "$URL" -seed "$SEED" "$@" $LOAD_FLAGS
}
summary() {
	$PY -c 'import json,sys
r = json.loads(open(sys.argv[1]).readline())
m = r.get("error_messages") or {}
print("announces %d, offers relayed %d, answers relayed %d, errors %d, timeouts %d%s" % (r["announces"], r.get("offers_received", 0),
      r.get("answers_received", 0), r["errors"], r["timeouts"],
      "".join("; %d x %s" % (n, k[:120]) for k, n in sorted(m.items(), key=lambda kv: -kv[1])[:3])))' "$RESULTS/raw/$1.json"
}

WORK=(-torrents "$TORRENTS" -ws-conns "$CONNS" -ws-torrents "$WS_TORRENTS" -ws-offers "$OFFERS" -ws-sdp "$SDP" -ws-window "$WINDOW" -timeout "$(godur "$TIMEOUT")")

# check NAME: a 2-second run; false if the tracker does not serve it
# without errors (trackd before its WebSocket frontend: a failed upgrade).
check() {
	local tag="check-$1"
	gen "$tag" 60 "${WORK[@]}" -warmup 0s -duration 2s -max-time 50s
	gen_wait "$tag" || return 1
	log "$1: check: $(summary "$tag")"
	[[ $(field "$tag" errors) == 0 && $(field "$tag" announces) != 0 ]]
}

machine() {
	machine_line
	echo "- $(go version | cut -d' ' -f3-), node $(node --version), bittorrent-tracker $BT_VER (ws $WS_VER), started as \`node cmd.js --ws --port $PORT --http-hostname 127.0.0.1 --quiet\`"
	echo "- trackd and trackd-load built from the $SRC_DESC; trackd started with \`trackd ${TRACKD_ARGS//ADDR/$ADDR}\`"
	echo "- servers on CPU $TRACKER_CPU (taskset), trackd-load on CPU $LOAD_CPU; loopback $URL"
}

# Which trackers serve the protocol: a check run against each first.
declare -A OK=([canned]=1)
log "results in $RESULTS"
for t in ${TRACKERS//canned/}; do
	start_tracker "$t"
	if check "$t"; then
		OK[$t]=1
	else
		log "WARNING: $t does not serve $URL without errors (see $RESULTS/raw/check-$t.txt); its rows are skipped"
	fi
	stop_server
done

# ===================================================================
if [[ $MODE == throughput ]]; then
	RUNSFILE=$RESULTS/runs.jsonl
	: >"$RUNSFILE"
	LIMIT=$((WARM_S + DUR_S + 45))
	LA_START=$(loadavg)
	# measure NAME I: a fresh server, one run; the server's (and the
	# generator's) CPU time from the end of the warm-up to the generator's
	# exit.
	measure() {
		local name=$1 i=$2 tag="$1-$2" c0 c1 g0 g1 t0 t1 la
		start_tracker "$name"
		gen "$tag" "$LIMIT" "${WORK[@]}" -warmup "$WARMUP" -duration "$DURATION" -max-time "$((LIMIT - 10))s"
		sleep "$WARMUP"
		c0=$(cpu_ticks "$SRV_PID")
		t0=$(date +%s.%N)
		# the generator's own CPU time, polled until it exits (its last
		# 0.2 s are missed: an approximation, to see whether it was the
		# bottleneck)
		local gpid
		gpid=$(pgrep -P "$GEN" | head -n 1 || true)
		g0=0 g1=0
		if [[ -n $gpid ]]; then
			g0=$(cpu_ticks "$gpid") g1=$g0
			while kill -0 "$gpid" 2>/dev/null; do
				g1=$(cpu_ticks "$gpid" 2>/dev/null || echo "$g1")
				sleep 0.2
			done
		fi
		gen_wait "$tag"
		c1=$(cpu_ticks "$SRV_PID")
		t1=$(date +%s.%N)
		la=$(loadavg)
		stop_server
		$PY - "$RESULTS/raw/$tag.json" "$name" "$i" "$c0" "$c1" "${g0:-0}" "${g1:-0}" "$t0" "$t1" "$CLK_TCK" "$la" >>"$RUNSFILE" <<'EOF'
import json, sys
(path, name, i, c0, c1, g0, g1, t0, t1, hz, la) = sys.argv[1:]
res = json.loads(open(path).readline())
hz = float(hz)
cpu = (int(c1) - int(c0)) / hz
gcpu = (int(g1) - int(g0)) / hz
win = float(t1) - float(t0)
msgs = res.get("messages", 0)
rec = {"tracker": name, "run": int(i), "cpu_seconds": cpu, "gen_cpu_seconds": gcpu, "window_seconds": win,
       "messages_per_cpu_second": msgs / cpu if cpu > 0 else 0.0, "loadavg_after": la, "result": res}
print(json.dumps(rec))
print("  %-18s run %s: %7.0f messages/s (%d announces, %d offers, %d answers relayed), %7.0f per server CPU-s (server %.2f s, generator %.2f s of %.2f s), announce p99 %.0f us, errors %d, timeouts %d; load %s"
      % (name, i, res.get("messages_per_sec", 0), res["announces"], res.get("offers_received", 0), res.get("answers_received", 0),
         rec["messages_per_cpu_second"], cpu, gcpu, win, res["latency_p99_us"], res["errors"], res["timeouts"], la), file=sys.stderr)
EOF
	}
	for i in $(seq "$RUNS"); do
		for t in canned ${TRACKERS//canned/}; do
			[[ -n ${OK[$t]:-} ]] || continue
			measure "$t" "$i"
		done
	done
	{
		echo "# WebSocket trackers, $(date -u +%Y-%m-%dT%H:%MZ)"
		echo
		machine
		echo "- workload: \`trackd-load -ws $URL ${WORK[*]} -warmup $WARMUP -duration $DURATION${LOAD_FLAGS:+ $LOAD_FLAGS}\` (seed $SEED); $RUNS interleaved runs per tracker, a fresh server each"
		echo "- load average at the start: $LA_START, at the end: $(loadavg)"
		echo
		$PY - "$RUNSFILE" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order = {"canned": 0, "trackd": 1, "bittorrent-tracker": 2}
g = {}
for r in runs:
    g.setdefault(r["tracker"], []).append(r)
def fi(v): return "{:,.0f}".format(v)
def fu(v): return "%.2f ms" % (v / 1e3) if v >= 1e3 else "%.0f µs" % v
med = lambda xs: statistics.median(xs)
print("| tracker | runs | messages/s | messages per tracker CPU-second | tracker CPU | generator CPU | announces/s | offers relayed/s | answers relayed/s | announce p50 | announce p99 | offer→answer p99 | errors | timeouts |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
rows = {}
for t in sorted(g, key=lambda t: order.get(t, 9)):
    rs = g[t]
    res = [r["result"] for r in rs]
    s = lambda k: med(x.get(k, 0) / x["seconds"] for x in res)
    rows[t] = med(r["messages_per_cpu_second"] for r in rs)
    print("| %s | %d | %s | %s | %.0f %% | %.0f %% | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        t + (" (generator ceiling)" if t == "canned" else ""), len(rs), fi(med(x["messages_per_sec"] for x in res)), fi(rows[t]),
        100 * med(r["cpu_seconds"] / r["window_seconds"] for r in rs), 100 * med(r["gen_cpu_seconds"] / r["window_seconds"] for r in rs),
        fi(s("announces")), fi(s("offers_received")), fi(s("answers_received")),
        fu(med(x["latency_p50_us"] for x in res)), fu(med(x["latency_p99_us"] for x in res)), fu(med(x.get("answer_latency_p99_us", 0) for x in res)),
        fi(sum(x["errors"] for x in res)), fi(sum(x["timeouts"] for x in res))))
if "trackd" in rows and "bittorrent-tracker" in rows and rows["bittorrent-tracker"]:
    print()
    print("trackd / bittorrent-tracker, messages per tracker CPU-second: %.2f×" % (rows["trackd"] / rows["bittorrent-tracker"]))
msgs = {}
for r in runs:
    for m, n in (r["result"].get("error_messages") or {}).items():
        msgs[(r["tracker"], m)] = msgs.get((r["tracker"], m), 0) + n
if msgs:
    print()
    print("Errors by message (all runs):")
    print()
    for (t, m), n in sorted(msgs.items(), key=lambda kv: -kv[1]):
        print("- %s: %s × %s" % (t, fi(n), m[:200]))
EOF
	} >"$RESULTS/table.md"
	echo
	cat "$RESULTS/table.md"
	echo
	echo "raw results: $RESULTS (runs.jsonl: one line per measured run; raw/: trackd-load output)"
	exit 0
fi

# ===================================================================
# memory mode: for each number of connections and each tracker, a fresh
# server; VmRSS before; trackd-load -ws-idle opens the connections, each
# announces once (on one torrent), and holds them; SETTLE seconds after
# its "all announced" line, VmRSS and VmHWM again, and the connections the
# server holds (ss).
MEMFILE=$RESULTS/mem.jsonl
: >"$MEMFILE"
for n in $MEM_CONNS; do
	if ((n + 200 > $(ulimit -Hn))); then
		log "WARNING: $n connections skipped: the hard limit on open files is $(ulimit -Hn) (raising it needs CAP_SYS_RESOURCE: ulimit -Hn, or LimitNOFILE= in a unit); both the tracker and the generator hold one descriptor per connection"
		continue
	fi
	for t in $TRACKERS; do
		[[ -n ${OK[$t]:-} ]] || continue
		tag="idle-$t-$n"
		start_tracker "$t"
		sleep 1
		rss0=$(mem_kb "$SRV_PID" VmRSS)
		# shellcheck disable=SC2086
		gen "$tag" $((HOLD_S + 660)) -torrents "$TORRENTS" -ws-conns "$n" -ws-torrents 1 -ws-sdp "$SDP" -ws-idle "$HOLD" -src-addrs 16 $MEM_FLAGS
		ready=""
		for i in $(seq 6000); do
			if grep -q '^ws idle:' "$RESULTS/raw/$tag.txt" 2>/dev/null; then ready=1; break; fi
			kill -0 "$GEN" 2>/dev/null || break
			sleep 0.1
		done
		[[ -n $ready ]] || { gen_wait "$tag"; die "$t: $n connections were not all announced; see $RESULTS/raw/$tag.txt"; }
		log "$t: $(grep '^ws idle:' "$RESULTS/raw/$tag.txt")"
		sleep "$SETTLE"
		rss=$(mem_kb "$SRV_PID" VmRSS)
		hwm=$(mem_kb "$SRV_PID" VmHWM)
		est=$(ss -Htn state established "sport = :$PORT" | wc -l)
		gen_wait "$tag"
		stop_server
		log "$t: $n connections: VmRSS empty $rss0 kB, held $rss kB, VmHWM $hwm kB, established $est; $(summary "$tag")"
		printf '{"tracker":"%s","conns":%d,"established":%d,"rss_empty_kb":%d,"rss_kb":%d,"hwm_kb":%d,"settle_s":%d,"result":%s}\n' \
			"$t" "$n" "$est" "$rss0" "$rss" "$hwm" "$SETTLE" "$(head -n 1 "$RESULTS/raw/$tag.json")" >>"$MEMFILE"
	done
done
{
	echo "# WebSocket trackers: memory per idle connection, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	machine
	echo "- \`trackd-load -ws $URL -torrents $TORRENTS -ws-conns N -ws-torrents 1 -ws-sdp $SDP -ws-idle $HOLD -src-addrs 16 $MEM_FLAGS\`: N connections, each announces once (one torrent), then held idle; the reading ${SETTLE} s after the last announce's reply"
	echo "- load average at the end: $(loadavg)"
	echo
	$PY - "$MEMFILE" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fi = lambda v: "{:,.0f}".format(v)
print("| tracker | connections | announced | established (ss) | open at the end | errors | VmRSS empty | VmRSS held | VmHWM | (VmRSS − empty) / connection |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratio = {}
for r in sorted(rows, key=lambda r: (r["conns"], r["tracker"] != "trackd")):
    res = r["result"]
    per = (r["rss_kb"] - r["rss_empty_kb"]) * 1024 / r["conns"]
    ratio.setdefault(r["conns"], {})[r["tracker"]] = per
    print("| %s | %s | %s | %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %s B |" % (
        r["tracker"], fi(r["conns"]), fi(res.get("idle_ready", 0)), fi(r["established"]), fi(res.get("idle_open", 0)),
        fi(res["errors"]), r["rss_empty_kb"] / 1024, r["rss_kb"] / 1024, r["hwm_kb"] / 1024, fi(per)))
for n, v in sorted(ratio.items()):
    if "trackd" in v and v.get("bittorrent-tracker"):
        print("\n%s connections: trackd / bittorrent-tracker, resident bytes per connection: %.2f×" % (fi(n), v["trackd"] / v["bittorrent-tracker"]))
EOF
} >"$RESULTS/memory.md"
echo
cat "$RESULTS/memory.md"
echo
echo "raw results: $RESULTS (mem.jsonl, raw/)"
