#!/usr/bin/env bash
# bench/fleet.sh: a fleet of 1, 2 and 3 trackd instances sharing swarms
# through one redis-server, under trackd-load spread over them.
#
#   bash bench/fleet.sh            MODE=store: the instances on the Redis store
#                                  (-store redis://...), how fleets share swarms today
#   bash bench/fleet.sh sync       MODE=sync: each instance on its memory store with
#                                  -sync redis://... (a trackd that has the flag)
#   bash bench/fleet.sh memory     MODE=memory: each instance on its memory store,
#                                  sharing nothing: the reference (INSTANCES=1 is one
#                                  trackd from memory; with more, no probe converges)
#   bash bench/fleet.sh outage     MODE=outage: sync, with redis-server killed for
#                                  OUTAGE [30s] under the load, then restarted: failed
#                                  announces, /readyz, and how long the instances take
#                                  to re-converge
#
# Reports, per number of instances (medians of RUNS runs, the numbers of
# instances interleaved within each run): responses per trackd CPU-second
# (sum of responses over the sum of the instances' CPU time) and relative
# to one instance, Redis CPU per announce, and the convergence probe's
# join and leave times (trackd-load -converge: a peer announced to one
# instance, polled for on the next). See bench/README.md. Installs
# nothing; loopback only; every process it starts is bounded in time and
# stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: bash bench/fleet.sh [store|sync|memory|outage]

Environment (defaults in brackets):
  INSTANCES ["1 2 3"; outage: "3"]     numbers of instances, each a row
  REFERENCE [""]                       numbers of instances each run also measures on their
                                       memory store, sharing nothing (rows "N memory"), e.g.
                                       "1" or "1 2 3"; with 1 in it, the relative figures
                                       are read against the row "1 memory"
  TORRENTS [20000]  PEERS [200000]     workload (every configuration is filled first)
  DURATION [10s]    WARMUP [3s]        measured time and warm-up of each run
  RUNS [3]                             runs of every row
  PROTOCOL [udp]                       udp or http
  ROAM [0]                             1: each peer's announces go to the instances in
                                       turn (trackd-load -roam); 0: each sticks to one
  CONVERGE [50]  CONVERGE_WITHIN [5s]  convergence probes per run, and their bound
  LOAD_FLAGS ["-sockets 24 -conns 48"] extra trackd-load flags of the measured runs
  FILL_FLAGS ["-sockets 24 -window 16"] extra trackd-load flags of the fills
  TRACKD_FLAGS [""]                    extra trackd flags for every instance
  SYNC_FLAG [-sync]                    MODE=sync: the trackd flag taking the Redis URL
  SEED [1]  PORT [21969] (instance i listens on PORT+i, TCP and UDP)
  REDIS_PORT [a free one]  TRACKER_CPU [0]  LOAD_CPU [1]  REDIS_CPU [LOAD_CPU]
  REV [""]                             build from this git revision instead of the working tree
  MEM_SETTLE [2s]                      wait after the fill before reading the memory
  RESULTS [/tmp/trackd-fleet-DATE]     where raw results go
MODE=outage (sync; DURATION is BEFORE + OUTAGE + AFTER; no probe beside the load):
  BEFORE [5s]  OUTAGE [30s]  AFTER [20s] the load runs BEFORE with Redis, OUTAGE without
                                       (redis-server killed with SIGKILL, restarted empty on
                                       its port), AFTER with it again
  ADMIN_PORT [PORT+100]                instance i's admin listener (/metrics, /readyz) on
                                       ADMIN_PORT+i
  MAX_TIME [computed]                  hard cap on the whole script, in seconds
EOF
}

MODE=${1:-store}
case $MODE in
store | sync | memory | outage) ;;
-h | --help | help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { usage >&2; exit 2; }

if [[ $MODE == outage ]]; then INSTANCES=${INSTANCES:-3}; else INSTANCES=${INSTANCES:-1 2 3}; fi
REFERENCE=${REFERENCE:-}
TORRENTS=${TORRENTS:-20000}
PEERS=${PEERS:-200000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
RUNS=${RUNS:-3}
PROTOCOL=${PROTOCOL:-udp}
ROAM=${ROAM:-0}
CONVERGE=${CONVERGE:-50}
CONVERGE_WITHIN=${CONVERGE_WITHIN:-5s}
# trackd on the Redis store answers one UDP packet at a time per socket
# (see bench/redis.sh): many generator sockets, a multiple of 1, 2 and 3
# so that every instance gets as many.
LOAD_FLAGS=${LOAD_FLAGS--sockets 24 -conns 48}
FILL_FLAGS=${FILL_FLAGS--sockets 24 -window 16}
TRACKD_FLAGS=${TRACKD_FLAGS:-}
SYNC_FLAG=${SYNC_FLAG:--sync}
SEED=${SEED:-1}
PORT=${PORT:-21969}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
REDIS_CPU=${REDIS_CPU:-$LOAD_CPU}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 100))}
MEM_SETTLE=${MEM_SETTLE:-2s}
BEFORE=${BEFORE:-5s}
OUTAGE=${OUTAGE:-30s}
AFTER=${AFTER:-20s}
RESULTS=${RESULTS:-/tmp/trackd-fleet-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
FILL_LIMIT=600

if [[ $MODE == outage ]]; then
	BEFORE_S=$(secs "$BEFORE") OUTAGE_S=$(secs "$OUTAGE") AFTER_S=$(secs "$AFTER")
	DURATION=$((BEFORE_S + OUTAGE_S + AFTER_S))s
	CONVERGE=0
fi
DURATION=$(godur "$DURATION")
MEM_SETTLE=$(godur "$MEM_SETTLE")
WARMUP=$(godur "$WARMUP")
CONVERGE_WITHIN=$(godur "$CONVERGE_WITHIN")
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
for v in TORRENTS PEERS RUNS SEED PORT ADMIN_PORT TRACKER_CPU LOAD_CPU REDIS_CPU CONVERGE ROAM; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
((RUNS >= 1)) || die "RUNS must be at least 1"
[[ $PROTOCOL == udp || $PROTOCOL == http ]] || die "PROTOCOL must be udp or http"
MAXN=0
for n in $INSTANCES; do
	if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 16)); then die "INSTANCES: '$n' is not a number of instances from 1 to 16"; fi
	((n > MAXN)) && MAXN=$n
done
for n in $REFERENCE; do
	if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 16)); then die "REFERENCE: '$n' is not a number of instances from 1 to 16"; fi
	((n > MAXN)) && MAXN=$n
done
((MAXN > 0)) || die "INSTANCES is empty"

for c in go redis-server redis-cli taskset timeout ss getconf pgrep; do
	command -v "$c" >/dev/null || die "missing $c (redis-server and redis-cli: apt-get install redis-server; taskset: util-linux; ss: iproute2)"
done
[[ -x $PY ]] || die "missing $PY"
two_cpus
((REDIS_CPU < $(nproc --all))) || die "REDIS_CPU=$REDIS_CPU is not a CPU of this machine"

# --- one hard cap on the whole script (run_capped, bench/lib.sh)
if [[ -z ${_COMPARE_CAPPED:-} && -z ${MAX_TIME:-} ]]; then
	nrows=$(wc -w <<<"$INSTANCES")
	# per configuration: start, a fill (at ~10k announces/s on the Redis
	# store, a generous guess), the run, the stop
	nrows=$((nrows + $(wc -w <<<"$REFERENCE")))
	est=$((RUNS * nrows * (12 + PEERS / 10000 + WARM_S + DUR_S + 15) + 60))
	MAX_TIME=$((2 * est + 300))
fi
run_capped "$@"

CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$RESULTS/raw"
[[ -z $(ls -A "$RESULTS/raw") ]] || die "$RESULTS/raw is not empty; give another RESULTS"
BIN=$(mktemp -d /tmp/trackd-fleet-bin.XXXXXX)
REDIS_DIR=$BIN/redis
trap_cleanup
cleanup_more() {
	[[ -z ${REDIS_PORT:-} ]] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

build
if [[ $MODE == sync || $MODE == outage ]] && ! "$BIN/trackd" -h 2>&1 | grep -q -- "^  $SYNC_FLAG "; then
	die "this trackd ($SRC_DESC) has no $SYNC_FLAG flag: the fleet sync is not in it yet; MODE=store measures the Redis store"
fi
# From here on the script itself stays off the instances' CPU.
taskset -pc "$LOAD_CPU" $$ >/dev/null

# --- redis-server on a free loopback port, no persistence
if [[ -z ${REDIS_PORT:-} ]]; then
	REDIS_PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
[[ -z $(ss -Hlnt "sport = :$REDIS_PORT") ]] || die "REDIS_PORT $REDIS_PORT is in use"
mkdir -p "$REDIS_DIR"
# start_redis: redis-server on REDIS_PORT (again, for MODE=outage); waits
# until it answers. Sets REDIS_PID and REDIS_WRAP.
start_redis() {
	(exec timeout --foreground -s KILL "$MAX_TIME" taskset -c "$REDIS_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
		--save "" --appendonly no --dir "$REDIS_DIR") >>"$RESULTS/redis.log" 2>&1 &
	REDIS_WRAP=$!
	PIDS+=("$REDIS_WRAP")
	REDIS_PID=""
	for _ in $(seq 200); do
		if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
			REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | awk -F: '/^process_id:/ {print $2+0}')
			break
		fi
		sleep 0.05
	done
	[[ -n $REDIS_PID ]] || die "redis-server did not start on port $REDIS_PORT; see $RESULTS/redis.log"
	PIDS+=("$REDIS_PID")
}
# kill_redis: SIGKILL to redis-server (an outage), and wait until it is gone.
kill_redis() {
	kill -KILL "$REDIS_PID" 2>/dev/null || true
	wait "$REDIS_WRAP" 2>/dev/null || true
	forget "$REDIS_PID" "$REDIS_WRAP"
	for _ in $(seq 100); do
		[[ -z $(ss -Hlnt "sport = :$REDIS_PORT") ]] && break
		sleep 0.05
	done
}
# redis_used: redis-server's used_memory, in bytes.
redis_used() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
start_redis
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT, CPU $REDIS_CPU; results in $RESULTS"

# --- the instances
INST_PIDS=() INST_WRAPS=()
port_busy() { [[ -n $(ss -Hlntu "sport = :$1") ]]; }
# start_fleet N [MODE]: N instances on PORT..PORT+N-1, pinned to
# TRACKER_CPU, sharing swarms through Redis as MODE says; waits until
# each listens. MODE=outage gives each an admin listener on ADMIN_PORT+i.
start_fleet() {
	local n=$1 mode=${2:-$MODE} i p share admin
	case $mode in
	store) share=(-store "$REDIS_URL") ;;
	sync | outage) share=("$SYNC_FLAG" "$REDIS_URL") ;;
	memory) share=(-store memory) ;;
	esac
	INST_PIDS=() INST_WRAPS=()
	for ((i = 0; i < n; i++)); do
		p=$((PORT + i))
		! port_busy "$p" || die "port $p is in use (ss -lntup 'sport = :$p'); set PORT"
		admin=""
		if [[ $mode == outage ]]; then
			admin=127.0.0.1:$((ADMIN_PORT + i))
			! port_busy "$((ADMIN_PORT + i))" || die "port $((ADMIN_PORT + i)) is in use; set ADMIN_PORT"
		fi
		# shellcheck disable=SC2086
		spawn_server "trackd-$i" "$BIN" "$BIN/trackd" -udp "127.0.0.1:$p" -http "127.0.0.1:$p" -admin "$admin" "${share[@]}" $TRACKD_FLAGS
		INST_PIDS+=("$SRV_PID") INST_WRAPS+=("$SRV_WRAP")
	done
	for ((i = 0; i < n; i++)); do
		p=$((PORT + i))
		for _ in $(seq 200); do
			kill -0 "${INST_PIDS[$i]}" 2>/dev/null || die "trackd-$i exited; see $RESULTS/trackd-$i.log"
			[[ -n $(ss -Hlnt "sport = :$p") && -n $(ss -Hlnu "sport = :$p") ]] && break
			sleep 0.05
		done
		[[ -n $(ss -Hlnt "sport = :$p") ]] || die "trackd-$i does not listen on 127.0.0.1:$p; see $RESULTS/trackd-$i.log"
	done
	if [[ $mode == outage ]]; then
		for ((i = 0; i < n; i++)); do
			for _ in $(seq 200); do
				[[ -n $(ss -Hlnt "sport = :$((ADMIN_PORT + i))") ]] && break
				sleep 0.05
			done
		done
	fi
	log "$n instance(s) started: pids ${INST_PIDS[*]} on CPU $TRACKER_CPU, ports $PORT..$((PORT + n - 1)), ${share[*]}"
}
stop_fleet() {
	local i
	for i in "${!INST_PIDS[@]}"; do
		SRV_PID=${INST_PIDS[$i]} SRV_WRAP=${INST_WRAPS[$i]}
		kill_server
	done
	INST_PIDS=() INST_WRAPS=()
	for i in $(seq 50); do
		local busy=0 p
		for ((p = PORT; p < PORT + MAXN; p++)); do port_busy "$p" && busy=1; done
		((busy)) || break
		sleep 0.1
	done
}
# targets N: the -udp or -http list of N instances.
targets() {
	local n=$1 i s=""
	for ((i = 0; i < n; i++)); do s+="${s:+,}127.0.0.1:$((PORT + i))"; done
	echo "$s"
}
# ticks PID...: the sum of their CPU ticks.
ticks() {
	local t=0 p
	for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done
	echo "$t"
}

COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED")
ROAMFLAG=()
((ROAM)) && ROAMFLAG=(-roam)
RUNSFILE=$RESULTS/runs.jsonl
: >"$RUNSFILE"
LIMIT=$((WARM_S + DUR_S + 60))
LA_START=$(loadavg)

# rss PID...: the sum of their VmRSS, in kB.
rss() {
	local t=0 p
	for p in "$@"; do t=$((t + $(mem_kb "$p" VmRSS))); done
	echo "$t"
}

# measure N I [MODE]: one configuration of N instances, run I: a fresh
# fleet on an empty Redis, filled, then one measured run with the probe
# beside it. The instances' resident sets and Redis's used_memory are
# read when they have started and MEM_SETTLE after the fill; their CPU
# time when the generator's warm-up ends (WARMUP after its launch) and
# when it has exited.
measure() {
	local n=$1 i=$2 mode=${3:-$MODE} list tag fill c0 c1 r0 r1 t0 t1 la1 m0 m1 u0 u1
	list=$(targets "$n")
	tag="n$n-$i"
	[[ $mode == "$MODE" ]] || tag="$mode-$tag"
	fill="fill-$tag"
	redis-cli -p "$REDIS_PORT" flushall >/dev/null
	start_fleet "$n" "$mode"
	m0=$(rss "${INST_PIDS[@]}")
	u0=$(redis_used)
	# shellcheck disable=SC2086
	run_load "$fill" $((FILL_LIMIT + 30)) -fill "-$PROTOCOL" "$list" "${COMMON[@]}" -max-time "${FILL_LIMIT}s" $FILL_FLAGS
	gen_wait "$fill"
	sleep "$MEM_SETTLE"
	m1=$(rss "${INST_PIDS[@]}")
	u1=$(redis_used)
	log "$mode n=$n run $i: fill: $(field "$fill" announces) of $PEERS announced in $(field "$fill" seconds) s, errors $(field "$fill" errors); VmRSS of the instances $m0 -> $m1 kB, Redis used_memory $u0 -> $u1 B"
	# shellcheck disable=SC2086
	run_load "$tag" "$LIMIT" "-$PROTOCOL" "$list" "${ROAMFLAG[@]}" "${COMMON[@]}" -warmup "$WARMUP" -duration "$DURATION" \
		-max-time "$((LIMIT - 10))s" -converge "$CONVERGE" -converge-within "$CONVERGE_WITHIN" $LOAD_FLAGS
	sleep "$WARMUP"
	c0=$(ticks "${INST_PIDS[@]}")
	r0=$(cpu_ticks "$REDIS_PID")
	t0=$(date +%s.%N)
	gen_wait "$tag"
	c1=$(ticks "${INST_PIDS[@]}")
	r1=$(cpu_ticks "$REDIS_PID")
	t1=$(date +%s.%N)
	la1=$(loadavg)
	stop_fleet
	$PY - "$RESULTS/raw/$tag.json" "$RESULTS/raw/$fill.json" "$mode" "$n" "$i" "$c0" "$c1" "$r0" "$r1" "$t0" "$t1" "$CLK_TCK" "$la1" \
		"$m0" "$m1" "$u0" "$u1" >>"$RUNSFILE" <<'EOF'
import json, sys
(path, fillpath, mode, n, i, c0, c1, r0, r1, t0, t1, hz, la1, m0, m1, u0, u1) = sys.argv[1:]
res = json.loads(open(path).readline())
fill = json.loads(open(fillpath).readline())
hz = float(hz)
cpu = (int(c1) - int(c0)) / hz
rcpu = (int(r1) - int(r0)) / hz
ann = res["announces"]
conv = res.get("converge") or {}
rec = {"mode": mode, "instances": int(n), "run": int(i), "window_seconds": float(t1) - float(t0),
       "trackd_cpu_seconds": cpu, "redis_cpu_seconds": rcpu,
       "responses_per_trackd_cpu_second": res["responses"] / cpu if cpu > 0 else 0.0,
       "responses_per_cpu_second_with_redis": res["responses"] / (cpu + rcpu) if cpu + rcpu > 0 else 0.0,
       "redis_cpu_us_per_announce": rcpu / ann * 1e6 if ann else 0.0,
       "announces_per_redis_cpu_second": ann / rcpu if rcpu > 0 else 0.0,
       "fill_announces": fill["announces"], "fill_errors": fill["errors"],
       "rss_started_kb": int(m0), "rss_filled_kb": int(m1), "redis_used_started": int(u0), "redis_used_filled": int(u1),
       # the growth of each instance's resident set (the mean of the
       # instances) per peer it holds (with -store memory, sharing nothing,
       # each holds its share; with sync every peer), and of Redis's
       # used_memory per peer filled
       "rss_bytes_per_peer": (int(m1) - int(m0)) * 1024 / int(n) / (fill["announces"] / (int(n) if mode == "memory" else 1))
       if fill["announces"] else 0.0,
       "redis_bytes_per_peer": (int(u1) - int(u0)) / fill["announces"] if fill["announces"] else 0.0,
       "loadavg_after": la1, "result": res}
print(json.dumps(rec))
print("  %s n=%s run %s: %6.0f responses/s, %6.0f per trackd CPU-s (trackd %.2f s, Redis %.2f s), Redis %.1f us/announce, "
      "join p50 %.1f ms p99 %.1f ms never %d, leave p50 %.1f ms p99 %.1f ms never %d (%d probes; a poll's round trip p50 %.1f ms), errors %d, timeouts %d; load %s"
      % (mode, n, i, res["responses_per_sec"], rec["responses_per_trackd_cpu_second"], cpu, rcpu, rec["redis_cpu_us_per_announce"],
         conv.get("join_p50_us", 0) / 1e3, conv.get("join_p99_us", 0) / 1e3, conv.get("join_never", 0),
         conv.get("leave_p50_us", 0) / 1e3, conv.get("leave_p99_us", 0) / 1e3, conv.get("leave_never", 0), conv.get("probes", 0),
         conv.get("poll_p50_us", 0) / 1e3, res["errors"], res["timeouts"], la1), file=sys.stderr)
EOF
}

# --- MODE=outage
HELPER=$REPO/bench/fleet_outage.py
# admins N: the admin listeners of N instances.
admins() {
	local n=$1 i s=""
	for ((i = 0; i < n; i++)); do s+="${s:+,}127.0.0.1:$((ADMIN_PORT + i))"; done
	echo "$s"
}
# measure_outage N I: a fresh fleet of N instances with sync, filled, then
# loaded for BEFORE + OUTAGE + AFTER (after WARMUP): BEFORE into the run,
# redis-server is killed (SIGKILL); 2 s later every instance's /readyz and
# metrics are read; at half the outage a marker peer is announced to each
# instance (HTTP, a torrent of its own); after OUTAGE, redis-server is
# started again, empty, on its port, and the helper measures from when it
# answers how long until every instance is connected, has published its
# backlog, and holds the others' markers (bound: AFTER - 2 s). When the
# load has ended, the counters say whether each instance applied every
# change the others published.
measure_outage() {
	local n=$1 i=$2 list adm tag fill half rest la1 logs k
	list=$(targets "$n")
	adm=$(admins "$n")
	tag="outage-n$n-$i"
	fill="fill-$tag"
	redis-cli -p "$REDIS_PORT" flushall >/dev/null
	start_fleet "$n" outage
	# shellcheck disable=SC2086
	run_load "$fill" $((FILL_LIMIT + 30)) -fill "-$PROTOCOL" "$list" "${COMMON[@]}" -max-time "${FILL_LIMIT}s" $FILL_FLAGS
	gen_wait "$fill"
	log "outage n=$n run $i: fill: $(field "$fill" announces) of $PEERS announced in $(field "$fill" seconds) s, errors $(field "$fill" errors)"
	# shellcheck disable=SC2086
	run_load "$tag" "$LIMIT" "-$PROTOCOL" "$list" "${ROAMFLAG[@]}" "${COMMON[@]}" -warmup "$WARMUP" -duration "$DURATION" \
		-max-time "$((LIMIT - 10))s" $LOAD_FLAGS
	sleep $((WARM_S + BEFORE_S))
	timeout 20 "$PY" "$HELPER" metrics "$adm" >"$RESULTS/raw/$tag-before.json"
	kill_redis
	log "outage n=$n run $i: redis-server killed"
	sleep 2
	timeout 20 "$PY" "$HELPER" metrics "$adm" >"$RESULTS/raw/$tag-down.json"
	half=$((OUTAGE_S / 2 - 2))
	((half > 0)) && sleep "$half"
	timeout 30 "$PY" "$HELPER" markers "$tag" "$list" >"$RESULTS/raw/$tag-markers.json"
	rest=$((OUTAGE_S - 2 - (half > 0 ? half : 0) - 1))
	((rest > 0)) && sleep "$rest"
	timeout 20 "$PY" "$HELPER" metrics "$adm" >"$RESULTS/raw/$tag-end.json"
	# the waiter starts first, to see when Redis answers again
	timeout $((AFTER_S + 70)) "$PY" "$HELPER" wait "$REDIS_PORT" "$((AFTER_S - 2))" "$adm" "$list" \
		"$(cat "$RESULTS/raw/$tag-markers.json")" >"$RESULTS/raw/$tag-wait.json" &
	local waiter=$!
	PIDS+=("$waiter")
	start_redis
	log "outage n=$n run $i: redis-server started again (pid $REDIS_PID)"
	wait "$waiter" || true
	forget "$waiter"
	gen_wait "$tag"
	sleep 2
	timeout 20 "$PY" "$HELPER" final "$adm" >"$RESULTS/raw/$tag-final.json"
	la1=$(loadavg)
	stop_fleet
	logs=""
	for ((k = 0; k < n; k++)); do
		logs+="${logs:+,}$(grep -c 'sync' "$RESULTS/trackd-$k.log" || true)"
	done
	# the logs are appended to, run after run: keep each run's
	for ((k = 0; k < n; k++)); do mv "$RESULTS/trackd-$k.log" "$RESULTS/raw/$tag-trackd-$k.log"; done
	$PY - "$RESULTS/raw" "$tag" "$fill" "$n" "$i" "$la1" "$OUTAGE_S" >>"$RUNSFILE" <<'EOF'
import json, sys
(raw, tag, fill, n, i, la1, outage) = sys.argv[1:]
ld = lambda s: json.loads(open("%s/%s%s" % (raw, tag, s)).readline())
res = ld(".json")
rec = {"mode": "outage", "instances": int(n), "run": int(i), "outage_seconds": int(outage), "loadavg_after": la1, "result": res,
       "before": ld("-before.json"), "down": ld("-down.json"), "markers": ld("-markers.json"), "end": ld("-end.json"),
       "wait": ld("-wait.json"), "final": ld("-final.json"),
       "fill": json.loads(open("%s/%s.json" % (raw, fill)).readline())}
logs = []
for k in range(int(n)):
    logs.append([l.rstrip("\n") for l in open("%s/%s-trackd-%d.log" % (raw, tag, k)) if "sync" in l])
rec["sync_log_lines"] = logs
print(json.dumps(rec))
w = rec["wait"]
f = lambda v: "%.2f s" % v if v is not None else "never"
print("  outage n=%s run %s: %d responses (%.0f/s), errors %d, timeouts %d; readyz during %s; markers %s; connected %s, backlog published %s, "
      "markers everywhere %s after Redis answered; missing changes %s, dropped %s, lost in gaps %s; sync log lines %s; load %s" % (
      n, i, res["responses"], res["responses_per_sec"], res["errors"], res["timeouts"],
      [d["readyz_status"] for d in rec["down"]], [(m["status"], m["failure"], m["held_here"]) for m in rec["markers"]],
      f(w.get("all_connected")), f(w.get("all_drained")), f(w.get("all_markers")),
      [x["missing"] for x in rec["final"]], [x["dropped"] for x in rec["final"]], [x["lost_in_gaps"] for x in rec["final"]],
      [len(l) for l in logs], la1), file=sys.stderr)
EOF
}
# report_outage: the table of MODE=outage.
report_outage() {
	{
		echo "# trackd fleet, MODE=outage, $(date -u +%Y-%m-%dT%H:%MZ)"
		echo
		machine_line
		echo "- $(go version | cut -d' ' -f3-), $(redis-server --version | cut -d' ' -f1-3); trackd and trackd-load built from the $SRC_DESC"
		echo "- instances: trackd -udp/-http 127.0.0.1:$PORT.. -admin 127.0.0.1:$ADMIN_PORT.. $SYNC_FLAG $REDIS_URL${TRACKD_FLAGS:+ $TRACKD_FLAGS}, all on CPU $TRACKER_CPU; redis-server on CPU $REDIS_CPU, trackd-load on CPU $LOAD_CPU"
		echo "- workload: $TORRENTS torrents, $PEERS peers (seed $SEED) over $PROTOCOL, $( ((ROAM)) && echo "each peer roaming over the instances" || echo "each peer sticking to one instance"), $LOAD_FLAGS; a fresh fleet filled, then $WARMUP warm-up + ${BEFORE_S}s with Redis, ${OUTAGE_S}s with redis-server killed (SIGKILL), ${AFTER_S}s with it started again (empty); $RUNS runs"
		echo "- load average at the start: $LA_START, at the end: $(loadavg)"
		echo
		$PY - "$RUNSFILE" <<'EOF'
import json, sys
from statistics import median
runs = [json.loads(l) for l in open(sys.argv[1])]
f = lambda v: "%.2f s" % v if v is not None else "never"
print("| instances | run | responses (per s) | failed: errors, timeouts | /readyz while down | markers announced while down (held by their instance) | all connected | all backlogs published | every marker on every instance | missing changes (lost in gaps) | dropped | sync log lines per instance |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    w, res = r["wait"], r["result"]
    print("| %d | %d | %d (%.0f) | %d, %d | %s | %d of %d ok (%d) | %s | %s | %s | %s (%s) | %s | %s |" % (
        r["instances"], r["run"], res["responses"], res["responses_per_sec"], res["errors"], res["timeouts"],
        " ".join(str(d["readyz_status"]) for d in r["down"]),
        sum(1 for m in r["markers"] if m["status"] == 200 and not m["failure"]), len(r["markers"]), sum(1 for m in r["markers"] if m["held_here"]),
        f(w.get("all_connected")), f(w.get("all_drained")), f(w.get("all_markers")),
        " ".join(str(x["missing"]) for x in r["final"]), " ".join(str(x["lost_in_gaps"]) for x in r["final"]),
        " ".join(str(x["dropped"]) for x in r["final"]), " ".join(str(len(l)) for l in r["sync_log_lines"])))
print()
for key, name in (("all_connected", "all connected"), ("all_drained", "all backlogs published"), ("all_markers", "every marker everywhere")):
    v = [r["wait"].get(key) for r in runs]
    ok = [x for x in v if x is not None]
    print("- %s: median %s, max %s over %d runs (%d never within the bound)" % (
        name, f(median(ok)) if ok else "-", f(max(ok)) if ok else "-", len(v), len(v) - len(ok)))
print("- pending bytes at the end of the outage (each instance, per run): %s" % [
    [int(d["sync"].get("pending_bytes", 0)) for d in r["end"]] for r in runs])
print("- a poll round of the waiter (every /metrics and a scrape of each instance): %s" % ["%.0f ms" % (r["wait"]["poll_round_seconds"] * 1e3) for r in runs])
print()
print("Times from when the restarted redis-server first answered PING. All connected: each instance's trackd_sync_connected back to 1; "
      "backlogs published: and its trackd_sync_pending_bytes at most 64 KiB (two batches); markers: a seeder announced to each instance "
      "(HTTP) in the middle of the outage, on a torrent of its own, found by a scrape of every other instance. Missing changes: "
      "the changes the other instances published that an instance did not apply, read 2 s after the load ended (changes published "
      "just before the kill and not yet read were lost with Redis's memory: they show as gaps). Sync log lines: the lines of each "
      "instance's log that mention sync (the start line, the outage, its end).")
print()
for r in runs:
    print("- n=%d run %d: sync log lines: %s" % (r["instances"], r["run"], r["sync_log_lines"]))
EOF
	} >"$RESULTS/table.md"
	echo
	cat "$RESULTS/table.md"
	echo
	echo "raw results: $RESULTS (runs.jsonl: one line per run; raw/: trackd-load output, the helper's readings, each run's trackd logs)"
}

if [[ $MODE == outage ]]; then
	for i in $(seq "$RUNS"); do
		for n in $INSTANCES; do
			measure_outage "$n" "$i"
		done
	done
	report_outage
	exit 0
fi
for i in $(seq "$RUNS"); do
	for n in $REFERENCE; do
		measure "$n" "$i" memory
	done
	for n in $INSTANCES; do
		measure "$n" "$i"
	done
done

{
	echo "# trackd fleet, MODE=$MODE, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	machine_line
	echo "- $(go version | cut -d' ' -f3-), $(redis-server --version | cut -d' ' -f1-3); trackd and trackd-load built from the $SRC_DESC"
	case $MODE in
	store) how="-store $REDIS_URL" ;;
	sync) how="$SYNC_FLAG $REDIS_URL" ;;
	memory) how="-store memory (sharing nothing; Redis idle)" ;;
	esac
	echo "- instances: trackd -udp/-http 127.0.0.1:$PORT.. $how${TRACKD_FLAGS:+ $TRACKD_FLAGS}, all on CPU $TRACKER_CPU; redis-server on CPU $REDIS_CPU, trackd-load on CPU $LOAD_CPU"
	echo "- workload: $TORRENTS torrents, $PEERS peers (seed $SEED) over $PROTOCOL, $( ((ROAM)) && echo "each peer roaming over the instances" || echo "each peer sticking to one instance"), $LOAD_FLAGS; every configuration a fresh fleet on an empty Redis, filled (trackd-load -fill $FILL_FLAGS), then $WARMUP warm-up + $DURATION measured with $CONVERGE convergence probes (bound $CONVERGE_WITHIN); $RUNS runs, the rows interleaved"
	[[ -z $REFERENCE ]] || echo "- reference: each run also measures $REFERENCE instance(s) with -store memory, sharing nothing (the rows \"N memory\"), before the others"
	echo "- load average at the start: $LA_START, at the end: $(loadavg)"
	echo
	$PY - "$RUNSFILE" "$MODE" <<'EOF'
import json, sys
from statistics import median
mode = sys.argv[2]
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    # the reference rows (another mode) first
    rows.setdefault((r["mode"] == mode, r["instances"]), []).append(r)
def med(rs, f):
    return median(f(r) for r in rs)
ref = (False, 1) if (False, 1) in rows else (True, 1)
base = median(r["responses_per_trackd_cpu_second"] for r in rows[ref]) if ref in rows else None
print("| instances | responses/s | responses per trackd CPU-s | relative to %s | responses per trackd+Redis CPU-s | Redis CPU per announce | announces per Redis CPU-s | join p50 / p99 | leave p50 / p99 | never (join, leave) | a poll's round trip p50 | errors, timeouts | resident growth per peer held (each instance) | Redis used_memory growth per peer |"
      % ("1 memory" if ref[0] is False else "1"))
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(rows):
    rs = rows[key]
    n = key[1]
    label = "%d" % n if key[0] else "%d %s" % (n, rs[0]["mode"])
    per = med(rs, lambda r: r["responses_per_trackd_cpu_second"])
    rel = "%.2f" % (per / base) if base else "-"
    c = lambda k: med(rs, lambda r: (r["result"].get("converge") or {}).get(k, 0)) / 1e3
    never = (sum((r["result"].get("converge") or {}).get("join_never", 0) for r in rs),
             sum((r["result"].get("converge") or {}).get("leave_never", 0) for r in rs))
    probes = sum((r["result"].get("converge") or {}).get("probes", 0) for r in rs)
    # Redis's CPU is read in clock ticks (10 ms): below 0.1 s in a run
    # (an idle Redis, MODE=memory) a figure per announce means nothing.
    idle = med(rs, lambda r: r["redis_cpu_seconds"]) < 0.1
    print("| %s | %.0f | %.0f | %s | %.0f | %s | %s | %.1f / %.1f ms | %.1f / %.1f ms | %d, %d of %d probes | %.1f ms | %d, %d | %.1f B | %.1f B |" % (
        label, med(rs, lambda r: r["result"]["responses_per_sec"]), per, rel,
        med(rs, lambda r: r["responses_per_cpu_second_with_redis"]),
        "-" if idle else "%.1f µs" % med(rs, lambda r: r["redis_cpu_us_per_announce"]),
        "-" if idle else "%.0f" % med(rs, lambda r: r["announces_per_redis_cpu_second"]),
        c("join_p50_us"), c("join_p99_us"), c("leave_p50_us"), c("leave_p99_us"), never[0], never[1], probes, c("poll_p50_us"),
        sum(r["result"]["errors"] for r in rs), sum(r["result"]["timeouts"] for r in rs),
        med(rs, lambda r: r.get("rss_bytes_per_peer", 0)), med(rs, lambda r: r.get("redis_bytes_per_peer", 0))))
print()
print("Medians of %d run(s) per row. Relative: responses per trackd CPU-second against one instance's (1.00: N instances answer N times as much for N times the CPU). "
      "Memory: the growth of each instance's VmRSS from its start to MEM_SETTLE after the fill (the mean of the instances) per peer it holds (all of them with sync and on the Redis store, its share from memory sharing nothing), and the growth of Redis's used_memory per peer filled. "
      "Join and leave: the medians of the runs' p50 and p99, each time from the send of the announce (started, stopped) to instance A to the receipt "
      "of the reply of instance B (the next one) that has the peer (has it no more): they include both requests' latency under the load and up to one poll period. Runs:" % max(len(v) for v in rows.values()))
print()
for key in sorted(rows):
    for r in rows[key]:
        print("- %s n=%d run %d: %.0f per trackd CPU-s, Redis %.1f µs/announce, responses of each instance %s, load %s" % (
            r["mode"], key[1], r["run"], r["responses_per_trackd_cpu_second"], r["redis_cpu_us_per_announce"],
            r["result"].get("target_responses") or [r["result"]["responses"]], r["loadavg_after"]))
EOF
} >"$RESULTS/table.md"
echo
cat "$RESULTS/table.md"
echo
echo "raw results: $RESULTS (runs.jsonl: one line per measured run; raw/: trackd-load output; trackd-*.log, redis.log)"
