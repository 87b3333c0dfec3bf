#!/usr/bin/env bash
# bench/compare.sh: trackd side by side with opentracker, one core each.
#
#   bash bench/compare.sh            throughput: responses per tracker CPU-second
#   bash bench/compare.sh memory     memory: bytes per peer
#
# See bench/README.md for what it measures, the knobs (environment
# variables) and how to read the tables. Installs nothing; loopback only;
# every process it starts is bounded in time and killed on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: bash bench/compare.sh [throughput|memory]

Environment (defaults in brackets):
  TORRENTS [100000]  PEERS [1000000]   workload of the throughput mode
  DURATION [10s]     WARMUP [5s]       measured time and warm-up of each run
  RUNS [3]                             runs per protocol/mode and server
  PROTOCOLS ["udp http"]               throughput mode: which protocols to measure
                                       (the fills are over UDP whatever this says)
  MEM_POPS ["1000000:100000 2000000:1000000"]  memory mode: peers:torrents ...
  SETTLE [5]                           memory mode: seconds between fill and reading
  SEED [1]  PORT [16969]  TRACKER_CPU [0]  LOAD_CPU [1]
  LOAD_FLAGS [""]                      extra trackd-load flags for every load run
  FILL_FLAGS ["-window 16"]            extra trackd-load flags for the fills
  REV [""]                             build trackd and trackd-load from this git revision
                                       (git archive) instead of the working tree
  RESULTS [/tmp/trackd-bench-DATE]     where raw results go
  MAX_TIME [computed]                  hard cap on the whole script, in seconds
EOF
}

parse_mode "$@"

TORRENTS=${TORRENTS:-100000}
PEERS=${PEERS:-1000000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-5s}
RUNS=${RUNS:-3}
PROTOCOLS=${PROTOCOLS:-udp http}
MEM_POPS=${MEM_POPS:-"1000000:100000 2000000:1000000"}
SETTLE=${SETTLE:-5}
SEED=${SEED:-1}
PORT=${PORT:-16969}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD_FLAGS=${LOAD_FLAGS:-}
# 8 sockets x 16 in flight: opentracker keeps its UDP socket's default
# receive buffer (208 KiB here) and drops some datagrams when 8 x 32 arrive
# at once; the fill gives a peer up after 3 unanswered announces.
FILL_FLAGS=${FILL_FLAGS--window 16}
RESULTS=${RESULTS:-/tmp/trackd-bench-$(date +%Y%m%d-%H%M%S)}
ADDR=127.0.0.1:$PORT
PY=/usr/bin/python3
FILL_LIMIT=600 # seconds: a fill of a few million peers takes well under a minute

DURATION=$(godur "$DURATION")
WARMUP=$(godur "$WARMUP")
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
for v in TORRENTS PEERS RUNS SETTLE SEED PORT TRACKER_CPU LOAD_CPU; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
((RUNS >= 1)) || die "RUNS must be at least 1"
for p in $PROTOCOLS; do
	[[ $p == udp || $p == http ]] || die "PROTOCOLS: '$p' is neither udp nor http"
done
[[ -n ${PROTOCOLS// /} ]] || die "PROTOCOLS is empty"
# proto P: whether protocol P is measured.
proto() { [[ " $PROTOCOLS " == *" $1 "* ]]; }

# --- what the script needs; it installs nothing
missing=()
for c in opentracker taskset; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
	echo "compare.sh: missing ${missing[*]}; install it with: apt-get install opentracker util-linux" >&2
	echo "  (opentracker is Debian's package 'opentracker'; taskset is in util-linux)" >&2
	exit 1
fi
for c in go timeout ss getconf pgrep; do command -v "$c" >/dev/null || die "missing $c"; done
[[ -x $PY ]] || die "missing $PY"
two_cpus

# --- one hard cap on the whole script (run_capped, bench/lib.sh)
if [[ -z ${_COMPARE_CAPPED:-} && -z ${MAX_TIME:-} ]]; then
	if [[ $MODE == throughput ]]; then
		# 8 measured runs per round (canned 3, trackd 3, opentracker 2),
		# 7 check runs, 2 fills, and slack (fewer runs with PROTOCOLS
		# limited; the estimate stays an upper bound)
		est=$((8 * RUNS * (WARM_S + DUR_S + 3) + 7 * 5 + 2 * 120 + 120))
	else
		npops=$(wc -w <<<"$MEM_POPS")
		est=$((2 * npops * (120 + SETTLE + 60) + 120))
	fi
	MAX_TIME=$((2 * est + 600))
fi
run_capped "$@"

HELPER=$REPO/bench/compare_helper.py
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$RESULTS/raw"
[[ -z $(ls -A "$RESULTS/raw") ]] || die "$RESULTS/raw is not empty; give another RESULTS"
BIN=$(mktemp -d /tmp/trackd-bench-bin.XXXXXX)
trap_cleanup

# --- build, from the working tree or (REV) from a git revision
build bench/hashes
OPENTRACKER=$(readlink -f "$(command -v opentracker)")

# From here on the script itself (sleep, awk, python) stays off the
# tracker's CPU.
taskset -pc "$LOAD_CPU" $$ >/dev/null

# cpu_busy N: ticks of CPU N from /proc/stat: "user+nice+system irq+softirq steal".
cpu_busy() {
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4, $7 + $8, $9 }' /proc/stat
}
port_in_use() { [[ -n $(ss -Hlntu "sport = :$PORT") ]]; }

# start_server NAME DIR EXE ARGS...: start EXE pinned to TRACKER_CPU, in DIR,
# under its own time bound, and wait until it listens on TCP and UDP PORT.
# Sets SRV_PID (the server itself), SRV_WRAP (its timeout wrapper).
start_server() {
	local name=$1
	! port_in_use || die "port $PORT is in use (ss -lntup 'sport = :$PORT'); set PORT"
	spawn_server "$@"
	local i
	for i in $(seq 200); do
		kill -0 "$SRV_PID" 2>/dev/null || die "$name exited; see $RESULTS/$name.log"
		if [[ -n $(ss -Hlnt "sport = :$PORT") && -n $(ss -Hlnu "sport = :$PORT") ]]; then
			log "$name started, pid $SRV_PID on CPU $TRACKER_CPU ($(taskset -pc "$SRV_PID" | sed 's/.*: //')), $ADDR"
			return 0
		fi
		sleep 0.05
	done
	die "$name does not listen on TCP and UDP $ADDR; see $RESULTS/$name.log"
}
stop_server() {
	[[ -n $SRV_PID ]] || return 0
	kill_server
	log "$SRV_NAME stopped"
	local i
	for i in $(seq 50); do port_in_use || break; sleep 0.1; done
}

# gen TAG LIMIT_S FLAGS...: run trackd-load pinned to LOAD_CPU in the
# background, with LOAD_FLAGS (FILL_FLAGS for a fill); JSON lines to
# raw/TAG.json, text to raw/TAG.txt. Sets GEN.
gen() {
	local tag=$1 limit=$2 extra=$LOAD_FLAGS
	shift 2
	[[ $tag != fill-* ]] || extra=$FILL_FLAGS
	# shellcheck disable=SC2086
	run_load "$tag" "$limit" "$@" $extra
}
errsummary() {
	$PY -c 'import json,sys
r = json.loads(open(sys.argv[1]).readline())
m = r.get("error_messages") or {}
print("responses %d, errors %d, timeouts %d%s" % (r["responses"], r["errors"], r["timeouts"],
      "".join("; %d x %s" % (n, k[:120]) for k, n in sorted(m.items(), key=lambda kv: -kv[1])[:3])))' "$RESULTS/raw/$1.json"
}

COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED")

# fill NAME: announce every peer once over UDP (event=started) and check
# that all were announced without error.
fill() {
	local name=$1 tag="fill-$1-${PEERS}p-${TORRENTS}t"
	log "$name: fill, $PEERS peers over $TORRENTS torrents (UDP)"
	gen "$tag" $((FILL_LIMIT + 30)) -fill -udp "$ADDR" "${COMMON[@]}" -max-time "${FILL_LIMIT}s"
	gen_wait "$tag"
	log "$name: fill: $(field "$tag" announces) announced in $(field "$tag" seconds) s; $(errsummary "$tag")"
	[[ $(field "$tag" announces) == "$PEERS" && $(field "$tag" errors) == 0 ]] ||
		log "WARNING: $name: the fill did not announce all $PEERS peers without error"
}
# held NAME: count the peers the server holds, by a UDP scrape of every
# hash (seeders + leechers); sets HELD.
held() {
	local name=$1
	timeout 300 $PY "$HELPER" count "$ADDR" "$BIN/hashes-$TORRENTS.txt" >"$RESULTS/held-$name-${PEERS}p-${TORRENTS}t.json" ||
		die "$name: UDP scrape of every hash failed"
	HELD=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["peers"])' "$RESULTS/held-$name-${PEERS}p-${TORRENTS}t.json")
	log "$name: holds $HELD peers (sum of seeders + leechers over a UDP scrape of all $TORRENTS hashes)"
	[[ $HELD == "$PEERS" ]] || log "WARNING: $name holds $HELD peers, not $PEERS"
}

hashes() { # hashes T: the workload's info hashes for T torrents, once
	[[ -s $BIN/hashes-$1.txt ]] || "$BIN/hashes" -torrents "$1" -seed "$SEED" >"$BIN/hashes-$1.txt"
}

# prepare_opentracker T: a directory with opentracker's config and the
# whitelist of the T torrents' hashes. Debian's opentracker is built with
# WANT_ACCESSLIST_WHITE: it tracks only whitelisted hashes. It chroots to
# tracker.rootdir when started as root and then reads the whitelist, so the
# whitelist path is relative to that directory, which must be readable by
# the user it drops to (nobody).
prepare_opentracker() {
	OTDIR=$BIN/opentracker-$1
	mkdir -p "$OTDIR"
	cp "$BIN/hashes-$1.txt" "$OTDIR/whitelist.txt"
	cat >"$OTDIR/opentracker.conf" <<EOF
listen.tcp_udp $ADDR
access.whitelist whitelist.txt
tracker.rootdir $OTDIR
EOF
	chmod 755 "$BIN" "$OTDIR"
	chmod 644 "$OTDIR/whitelist.txt" "$OTDIR/opentracker.conf"
	cp "$OTDIR/opentracker.conf" "$RESULTS/opentracker-$1.conf"
}

start_trackd() { start_server trackd "$BIN" "$BIN/trackd" -http "$ADDR" -udp "$ADDR"; }
start_opentracker() { start_server opentracker "$OTDIR" "$OPENTRACKER" -f "$OTDIR/opentracker.conf"; }

# wait_ready NAME T: wait until an announce for the last of the T hashes is
# answered (opentracker loads its whitelist in a thread after start).
wait_ready() {
	timeout 130 $PY "$HELPER" probe "$ADDR" "$(tail -n 1 "$BIN/hashes-$2.txt")" 120 ||
		die "$1 does not answer announces for the workload's hashes"
}

machine() {
	machine_line
	echo "- $(go version | cut -d' ' -f3-), opentracker $(dpkg-query -W -f='${Version}' opentracker 2>/dev/null || echo '?')"
	echo "- trackd and trackd-load built from the $SRC_DESC"
	echo "- servers on CPU $TRACKER_CPU (taskset), trackd-load on CPU $LOAD_CPU; loopback $ADDR"
}

# ===================================================================
if [[ $MODE == throughput ]]; then
	log "results in $RESULTS"
	RUNSFILE=$RESULTS/runs.jsonl
	: >"$RUNSFILE"
	hashes "$TORRENTS"
	LIMIT=$((WARM_S + DUR_S + 45))

	# measure NAME MODE I FLAGS...: one measured run against the running
	# server. The server's CPU time (and CPU 0's, from /proc/stat) is read
	# when the generator's warm-up ends (WARMUP after its launch) and when
	# it has exited: the window holds the measured DURATION, the
	# generator's start-up lag (some ten milliseconds) and nothing after it
	# but the replies to requests still in flight at the end.
	measure() {
		local name=$1 mode=$2 i=$3
		shift 3
		local tag="$name-${mode// /-}-$i" la0 la1 c0 c1 b0 b1 t0 t1
		la0=$(loadavg)
		gen "$tag" "$LIMIT" "$@" "${COMMON[@]}" -warmup "$WARMUP" -duration "$DURATION" -max-time "$((LIMIT - 10))s"
		sleep "$WARMUP"
		c0=$(cpu_ticks "$SRV_PID")
		b0=$(cpu_busy "$TRACKER_CPU")
		t0=$(date +%s.%N)
		gen_wait "$tag"
		c1=$(cpu_ticks "$SRV_PID")
		b1=$(cpu_busy "$TRACKER_CPU")
		t1=$(date +%s.%N)
		la1=$(loadavg)
		$PY - "$RESULTS/raw/$tag.json" "$name" "$mode" "$i" "$c0" "$c1" "$b0" "$b1" "$t0" "$t1" "$CLK_TCK" "$la0" "$la1" >>"$RUNSFILE" <<'EOF'
import json, sys
(path, name, mode, i, c0, c1, b0, b1, t0, t1, hz, la0, la1) = sys.argv[1:]
res = json.loads(open(path).readline())
hz = float(hz)
cpu = (int(c1) - int(c0)) / hz
p0, q0, s0 = map(int, b0.split())
p1, q1, s1 = map(int, b1.split())
win = float(t1) - float(t0)
cpu0 = (p1 - p0 + q1 - q0) / hz  # everything CPU 0 did: processes, irq, softirq
rec = {"tracker": name, "mode": mode, "run": int(i), "cpu_seconds": cpu, "window_seconds": win,
       "responses_per_cpu_second": res["responses"] / cpu if cpu > 0 else 0.0,
       "cpu0_busy_seconds": cpu0, "cpu0_irq_seconds": (q1 - q0) / hz, "cpu0_steal_seconds": (s1 - s0) / hz,
       "responses_per_cpu0_second": res["responses"] / cpu0 if cpu0 > 0 else 0.0,
       "loadavg_before": la0, "loadavg_after": la1, "result": res}
print(json.dumps(rec))
print("  %-11s %-15s run %s: %7.0f responses/s, %7.0f per server CPU-s, %7.0f per CPU-0 busy s (server %.2f s, CPU 0 %.2f s of %.2f s), p99 %.0f us, errors %d, timeouts %d; load %s"
      % (name, mode, i, res["responses_per_sec"], rec["responses_per_cpu_second"], rec["responses_per_cpu0_second"],
         cpu, cpu0, win, res["latency_p99_us"], res["errors"], res["timeouts"], la1), file=sys.stderr)
EOF
	}

	# check NAME MODE FLAGS...: a short run of announces only (no scrapes);
	# prints what came back. Returns 1 when there were errors.
	check() {
		local name=$1 mode=$2
		shift 2
		local tag="check-$name-${mode// /-}"
		gen "$tag" 40 "$@" "${COMMON[@]}" -scrape 0 -warmup 0s -duration 2s
		gen_wait "$tag"
		log "$name: check, announces only, $mode: $(errsummary "$tag")"
		[[ $(field "$tag" errors) == 0 && $(field "$tag" responses) != 0 ]] && return 0
		log "WARNING: $name answers $mode announces with errors (see $RESULTS/raw/$tag.txt)"
		return 1
	}

	LA_START=$(loadavg)
	{
		echo "# trackd vs opentracker, $(date -u +%Y-%m-%dT%H:%MZ)"
		echo
		machine
		echo "- workload: $TORRENTS torrents, $PEERS peers (seed $SEED), trackd-load defaults otherwise${LOAD_FLAGS:+ and $LOAD_FLAGS}; $RUNS runs of $WARMUP warm-up + $DURATION measured per row; each tracker filled first over UDP (trackd-load -fill $FILL_FLAGS); protocols measured: $PROTOCOLS"
		echo "- load average at the start: $LA_START"
	} >"$RESULTS/header.md"

	# --- 1. the generator's ceiling: canned replies, no tracker work
	start_server canned "$BIN" "$BIN/trackd-load" -canned -udp "$ADDR" -http "$ADDR" -max-time "${MAX_TIME}s"
	if proto udp; then
		for i in $(seq "$RUNS"); do measure canned udp "$i" -udp "$ADDR"; done
	fi
	if proto http; then
		for i in $(seq "$RUNS"); do measure canned "http keep-alive" "$i" -http "$ADDR"; done
		for i in $(seq "$RUNS"); do measure canned "http close" "$i" -http "$ADDR" -http-close; done
	fi
	stop_server

	# --- 2. trackd
	start_trackd
	wait_ready trackd "$TORRENTS"
	fill trackd
	held trackd
	if proto udp; then
		check trackd udp -udp "$ADDR" || true
	fi
	if proto http; then
		check trackd "http keep-alive" -http "$ADDR" || true
		check trackd "http close" -http "$ADDR" -http-close || true
	fi
	if proto udp; then
		for i in $(seq "$RUNS"); do measure trackd udp "$i" -udp "$ADDR"; done
	fi
	if proto http; then
		for i in $(seq "$RUNS"); do measure trackd "http keep-alive" "$i" -http "$ADDR"; done
		for i in $(seq "$RUNS"); do measure trackd "http close" "$i" -http "$ADDR" -http-close; done
	fi
	stop_server

	# --- 3. opentracker (HTTP only with a new connection per request: it
	# closes every connection after one reply)
	prepare_opentracker "$TORRENTS"
	start_opentracker
	wait_ready opentracker "$TORRENTS"
	# the whitelist is on: a workload of other hashes gets errors
	gen neg-opentracker-udp 40 -udp "$ADDR" -torrents 10 -peers 100 -seed $((SEED + 7919)) -scrape 0 -warmup 0s -duration 1s
	gen_wait neg-opentracker-udp
	log "opentracker: hashes NOT on the whitelist, UDP: $(errsummary neg-opentracker-udp)"
	gen neg-opentracker-http 40 -http "$ADDR" -http-close -torrents 10 -peers 100 -seed $((SEED + 7919)) -scrape 0 -warmup 0s -duration 1s
	gen_wait neg-opentracker-http
	log "opentracker: hashes NOT on the whitelist, HTTP: $(errsummary neg-opentracker-http)"
	fill opentracker
	held opentracker
	if proto udp; then
		check opentracker udp -udp "$ADDR" || true
		for i in $(seq "$RUNS"); do measure opentracker udp "$i" -udp "$ADDR"; done
	fi
	if proto http; then
		check opentracker "http close" -http "$ADDR" -http-close || true
		for i in $(seq "$RUNS"); do measure opentracker "http close" "$i" -http "$ADDR" -http-close; done
	fi
	stop_server

	LA_END=$(loadavg)
	{
		cat "$RESULTS/header.md"
		echo "- load average at the end: $LA_END; 1-minute load average after each run: $($PY -c '
import json, sys
v = [float(json.loads(l)["loadavg_after"].split()[0]) for l in open(sys.argv[1])]
print("min %.2f, median %.2f, max %.2f (the server and the generator alone make about 2)" % (min(v), sorted(v)[len(v) // 2], max(v)))' "$RUNSFILE")"
		echo
		$PY "$HELPER" table "$RUNSFILE"
	} >"$RESULTS/table.md"
	echo
	cat "$RESULTS/table.md"
	echo
	echo "raw results: $RESULTS (runs.jsonl: one line per measured run; raw/: trackd-load output)"
	exit 0
fi

# ===================================================================
# memory mode
log "results in $RESULTS"
MEMFILE=$RESULTS/mem.jsonl
: >"$MEMFILE"
for pop in $MEM_POPS; do
	[[ $pop =~ ^([0-9]+):([0-9]+)$ ]] || die "MEM_POPS: '$pop' is not peers:torrents"
	PEERS=${BASH_REMATCH[1]} TORRENTS=${BASH_REMATCH[2]}
	COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED")
	hashes "$TORRENTS"
	for name in trackd opentracker; do
		if [[ $name == trackd ]]; then
			start_trackd
		else
			prepare_opentracker "$TORRENTS"
			start_opentracker
		fi
		# empty: right after start, once it answers (for opentracker: once
		# the whitelist is loaded, so the whitelist is in the baseline)
		wait_ready "$name" "$TORRENTS"
		sleep 1
		rss0=$(mem_kb "$SRV_PID" VmRSS)
		fill "$name"
		sleep "$SETTLE"
		rss=$(mem_kb "$SRV_PID" VmRSS)
		hwm=$(mem_kb "$SRV_PID" VmHWM)
		held "$name"
		log "$name: VmRSS empty ${rss0} kB, filled ${rss} kB, VmHWM ${hwm} kB"
		printf '{"tracker":"%s","torrents":%d,"peers":%d,"held":%d,"rss_empty_kb":%d,"rss_kb":%d,"hwm_kb":%d,"settle_s":%d,"fill":%s}\n' \
			"$name" "$TORRENTS" "$PEERS" "$HELD" "$rss0" "$rss" "$hwm" "$SETTLE" \
			"$(head -n 1 "$RESULTS/raw/fill-$name-${PEERS}p-${TORRENTS}t.json")" >>"$MEMFILE"
		stop_server
	done
done
{
	echo "# trackd vs opentracker: memory, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	machine
	echo "- each tracker started empty, filled over UDP with trackd-load -fill $FILL_FLAGS (seed $SEED), read ${SETTLE} s later; peers held counted by a UDP scrape of every hash after the reading"
	echo "- load average at the end: $(loadavg)"
	echo
	$PY "$HELPER" memtable "$MEMFILE"
} >"$RESULTS/memory.md"
echo
cat "$RESULTS/memory.md"
echo
echo "raw results: $RESULTS (mem.jsonl, raw/)"
