#!/usr/bin/env bash
# bench/soak.sh: how trackd behaves over time, across cores and past its
# capacity. trackd alone (no opentracker); loopback only; every process is
# bounded in time and killed on exit.
#
#   bash bench/soak.sh steady     memory under a long steady load with churn
#   bash bench/soak.sh scaling    GOMAXPROCS=1 vs 2, generator on the same cores
#   bash bench/soak.sh overload   offered load far above capacity (UDP)
#
# See bench/README.md for what each mode measures and how to read it.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: bash bench/soak.sh steady|scaling|overload

Environment (defaults in brackets):
  TORRENTS [100000]  PEERS [1000000]  SEED [1]  PORT [19969]
  steady:   STEADY [10m] measured time, LIFETIME [10s] trackd -peer-lifetime,
            SAMPLE [10] seconds between memory samples
  scaling:  DURATION [10s] WARMUP [5s] RUNS [3]; CPUS [0,1] for trackd and generator
  overload: DURATION [30s] QUOTA [10] percent of one CPU trackd may use
            (cgroup cpu quota; needs root and cgroup v1 or v2), SOCKETS [64]
            WINDOW [256] TIMEOUT [1s] of the generator (a request
            unanswered after TIMEOUT is given up and its slot reused, so the
            generator offers up to SOCKETS*WINDOW/TIMEOUT requests/s)
  RESULTS [/tmp/trackd-soak-MODE-DATE]
EOF
}

MODE=${1:-}
case $MODE in
steady | scaling | overload) ;;
-h | --help | help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

TORRENTS=${TORRENTS:-100000}
PEERS=${PEERS:-1000000}
SEED=${SEED:-1}
PORT=${PORT:-19969}
STEADY=${STEADY:-10m}
LIFETIME=${LIFETIME:-10s}
SAMPLE=${SAMPLE:-10}
DURATION=${DURATION:-}
WARMUP=${WARMUP:-5s}
RUNS=${RUNS:-3}
CPUS=${CPUS:-0,1}
QUOTA=${QUOTA:-10}
SOCKETS=${SOCKETS:-64}
WINDOW=${WINDOW:-256}
TIMEOUT=${TIMEOUT:-1s}
RESULTS=${RESULTS:-/tmp/trackd-soak-$MODE-$(date +%Y%m%d-%H%M%S)}
ADDR=127.0.0.1:$PORT
PY=/usr/bin/python3

for c in go taskset timeout ss; do command -v "$c" >/dev/null || die "missing $c"; done
[[ -x $PY ]] || die "missing $PY"
(($(nproc --all) >= 2)) || die "needs two CPUs"

mkdir -p "$RESULTS"
BIN=$(mktemp -d /tmp/trackd-soak-bin.XXXXXX)
CGROUP=""
# cleanup_more: part of cleanup (bench/lib.sh), after the processes stop.
cleanup_more() { [[ -z $CGROUP ]] || rmdir "$CGROUP" 2>/dev/null || true; }
trap_cleanup

log "building trackd and trackd-load from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
(cd "$REPO" && go build -o "$BIN/trackd" ./cmd/trackd && go build -o "$BIN/trackd-load" ./cmd/trackd-load) || die "build failed"
COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED")
CLK_TCK=$(getconf CLK_TCK)

# udp_drops: datagrams the kernel dropped on the port's sockets (receive
# buffer full), the last column of /proc/net/udp.
udp_drops() {
	awk -v p="$(printf ':%04X' "$PORT")" '$2 ~ p"$" { d += $NF } END { print d + 0 }' /proc/net/udp
}

# start_trackd CPULIST LIMIT_S ENV... -- ARGS...: start trackd pinned to
# CPULIST and wait until it answers; sets TD.
start_trackd() {
	local cpus=$1 limit=$2
	shift 2
	local envs=()
	while [[ $1 != -- ]]; do envs+=("$1"); shift; done
	shift
	[[ -z $(ss -Hlntu "sport = :$PORT") ]] || die "port $PORT is in use; set PORT"
	env ${envs[@]+"${envs[@]}"} timeout -s KILL "$limit" taskset -c "$cpus" "$BIN/trackd" -http "$ADDR" -udp "$ADDR" "$@" \
		>>"$RESULTS/trackd.log" 2>&1 &
	TDWRAP=$!
	PIDS+=("$TDWRAP")
	local i c
	TD=""
	for i in $(seq 200); do
		c=$(pgrep -P "$TDWRAP" || true)
		if [[ -n $c && $(readlink "/proc/$c/exe" 2>/dev/null) == "$BIN/trackd" ]]; then
			TD=$c
			break
		fi
		sleep 0.05
	done
	[[ -n $TD ]] || die "trackd did not start; see $RESULTS/trackd.log"
	PIDS+=("$TD")
	for i in $(seq 200); do
		kill -0 "$TD" 2>/dev/null || die "trackd exited; see $RESULTS/trackd.log"
		[[ -n $(ss -Hlnu "sport = :$PORT") && -n $(ss -Hlnt "sport = :$PORT") ]] && return 0
		sleep 0.05
	done
	die "trackd does not listen on $ADDR"
}
stop_trackd() {
	kill -TERM "$TD" 2>/dev/null || true
	local i
	for i in $(seq 100); do kill -0 "$TD" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$TD" 2>/dev/null || true
	wait "$TDWRAP" 2>/dev/null || true
}
# load TAG CPULIST LIMIT_S FLAGS...: run trackd-load to raw JSON; waits.
load() {
	local tag=$1 cpus=$2 limit=$3
	shift 3
	timeout -k 5 "$limit" taskset -c "$cpus" "$BIN/trackd-load" -json "$@" >"$RESULTS/$tag.json" 2>"$RESULTS/$tag.txt" ||
		die "trackd-load $tag failed; see $RESULTS/$tag.txt"
}
# field and secs: soak.sh's own (its results are not in raw/; STEADY may
# be in hours), in place of bench/lib.sh's.
field() { $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline()).get(sys.argv[2]))' "$RESULTS/$1.json" "$2"; }
secs() { $PY -c 'import re,sys; m=re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", sys.argv[1]); v=float(m[1]); print(int(v*{"ms":0.001,"s":1,"m":60,"h":3600,None:1}[m[2]]+0.999))' "$1"; }

machine() {
	echo "- machine: $(nproc --all) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr); $(go version | cut -d' ' -f3-)"
	echo "- trackd at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ); load average before: $(loadavg)"
}

case $MODE in
# -------------------------------------------------------------------
steady)
	# trackd on CPU 0 with a peer lifetime shorter than the time the
	# generator takes to come back to a peer, so peers expire all the time
	# and new ones take their place: the population turns over while its
	# size stays about the same. Memory is sampled every SAMPLE seconds.
	total=$(secs "$STEADY")
	start_trackd 0 $((total + 300)) -- -peer-lifetime "$LIFETIME"
	log "steady: $STEADY of UDP load, $PEERS peers over $TORRENTS torrents, peer lifetime $LIFETIME; results in $RESULTS"
	timeout -k 5 $((total + 120)) taskset -c 1 "$BIN/trackd-load" -json -udp "$ADDR" "${COMMON[@]}" \
		-warmup 0s -duration "$STEADY" >"$RESULTS/steady.json" 2>"$RESULTS/steady.txt" &
	GEN=$!
	PIDS+=("$GEN")
	: >"$RESULTS/samples.tsv"
	t0=$(date +%s)
	c0=$(cpu_ticks "$TD")
	while kill -0 "$GEN" 2>/dev/null; do
		printf '%d\t%d\t%d\t%d\n' $(($(date +%s) - t0)) "$(mem_kb "$TD" VmRSS)" "$(mem_kb "$TD" VmHWM)" \
			$(($(cpu_ticks "$TD") - c0)) >>"$RESULTS/samples.tsv"
		sleep "$SAMPLE"
	done
	wait "$GEN" || die "the generator failed; see $RESULTS/steady.txt"
	kill -0 "$TD" 2>/dev/null || die "trackd died during the run; see $RESULTS/trackd.log"
	stop_trackd
	{
		echo "# trackd steady load: memory over $STEADY"
		echo
		machine
		echo "- trackd -peer-lifetime $LIFETIME on CPU 0; trackd-load -udp ${COMMON[*]} -duration $STEADY on CPU 1"
		echo
		$PY - "$RESULTS/steady.json" "$RESULTS/samples.tsv" "$CLK_TCK" <<'EOF'
import json, sys
res = json.loads(open(sys.argv[1]).readline())
rows = [list(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
hz = float(sys.argv[3])
print("- load: %d responses (%.0f/s), errors %d, timeouts %d, p99 %.0f us"
      % (res["responses"], res["responses_per_sec"], res["errors"], res["timeouts"], res["latency_p99_us"]))
print()
print("| minute | VmRSS MiB (min–max in that minute) | trackd CPU-s so far |")
print("|---|---|---|")
by = {}
for t, rss, hwm, cpu in rows:
    by.setdefault(t // 60, []).append((rss, cpu))
for m in sorted(by):
    v = by[m]
    print("| %d | %.1f–%.1f | %.0f |" % (m, min(r for r, _ in v) / 1024, max(r for r, _ in v) / 1024, v[-1][1] / hz))
first = [r for t, r, _, _ in rows if 60 <= t < 120] or [rows[0][1]]
last = [r for t, r, _, _ in rows if t >= rows[-1][0] - 60]
a, b = sum(first) / len(first), sum(last) / len(last)
print()
print("Mean VmRSS in minute 1: %.1f MiB; in the last minute: %.1f MiB; change %+.1f%%. VmHWM at the end: %.1f MiB."
      % (a / 1024, b / 1024, 100 * (b - a) / a, rows[-1][2] / 1024))
EOF
	} >"$RESULTS/steady.md"
	cat "$RESULTS/steady.md"
	;;
# -------------------------------------------------------------------
scaling)
	# trackd with GOMAXPROCS=1 and then 2, trackd and the generator both
	# free to run on CPUS: does a second core help, or does one lock or
	# socket serialise the work?
	DURATION=${DURATION:-10s}
	lim=$(($(secs "$DURATION") + $(secs "$WARMUP") + 60))
	: >"$RESULTS/runs.tsv"
	for procs in 1 2; do
		start_trackd "$CPUS" $((4 * RUNS * lim + 300)) GOMAXPROCS=$procs --
		load "fill-$procs" "$CPUS" 700 -fill -udp "$ADDR" "${COMMON[@]}" -window 16
		log "GOMAXPROCS=$procs: filled $(field "fill-$procs" announces) peers"
		for proto in udp http; do
			for i in $(seq "$RUNS"); do
				tag="$proto-$procs-$i"
				c0=$(cpu_ticks "$TD")
				load "$tag" "$CPUS" "$lim" "-$proto" "$ADDR" "${COMMON[@]}" -warmup "$WARMUP" -duration "$DURATION"
				c1=$(cpu_ticks "$TD")
				printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$procs" "$i" "$(field "$tag" responses_per_sec)" \
					"$(field "$tag" latency_p99_us)" "$(field "$tag" errors)" "$(((c1 - c0)))" >>"$RESULTS/runs.tsv"
				log "GOMAXPROCS=$procs $proto run $i: $(field "$tag" responses_per_sec) responses/s, p99 $(field "$tag" latency_p99_us) us, errors $(field "$tag" errors)"
			done
		done
		stop_trackd
	done
	{
		echo "# trackd scaling: GOMAXPROCS=1 vs 2"
		echo
		machine
		echo "- trackd and trackd-load both on CPUs $CPUS (taskset); workload ${COMMON[*]}; $RUNS runs of $WARMUP + $DURATION each; HTTP with keep-alive"
		echo
		$PY - "$RESULTS/runs.tsv" "$CLK_TCK" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
print("| protocol | GOMAXPROCS | responses/s (median) | p99 µs (median) | errors | trackd CPU-s per run (median) |")
print("|---|---|---|---|---|---|")
for proto in ("udp", "http"):
    for procs in ("1", "2"):
        r = [x for x in rows if x[0] == proto and x[1] == procs]
        if not r:
            continue
        m = statistics.median(float(x[3]) for x in r)
        med[proto, procs] = m
        print("| %s | %s | %.0f | %.0f | %d | %.1f |" % (proto, procs, m, statistics.median(float(x[4]) for x in r),
              sum(int(x[5]) for x in r), statistics.median(int(x[6]) for x in r) / float(sys.argv[2])))
print()
for proto in ("udp", "http"):
    if (proto, "1") in med and (proto, "2") in med:
        print("- %s: GOMAXPROCS=2 / GOMAXPROCS=1 = %.2f×" % (proto, med[proto, "2"] / med[proto, "1"]))
EOF
	} >"$RESULTS/scaling.md"
	cat "$RESULTS/scaling.md"
	;;
# -------------------------------------------------------------------
overload)
	# trackd on CPU 0, held to QUOTA% of it by a cgroup CPU quota, the
	# generator on CPU 1 with far more requests in flight than trackd can
	# answer. Expected: trackd answers at its capped rate, the kernel drops
	# what does not fit the sockets' receive buffers (bounded queues), the
	# memory stays flat, and trackd answers normally afterwards.
	DURATION=${DURATION:-30s}
	[[ $(id -u) == 0 ]] || die "overload needs root (a cgroup CPU quota)"
	start_trackd 0 $(($(secs "$DURATION") * 3 + 900)) --
	load fill 1 700 -fill -udp "$ADDR" "${COMMON[@]}" -window 16
	log "filled $(field fill announces) peers"
	load base 1 60 -udp "$ADDR" "${COMMON[@]}" -warmup 2s -duration 5s
	log "uncapped: $(field base responses_per_sec) responses/s"
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
		CGROUP=/sys/fs/cgroup/trackd-soak-$$
		mkdir "$CGROUP"
		echo "$((QUOTA * 1000)) 100000" >"$CGROUP/cpu.max"
	else
		CGROUP=/sys/fs/cgroup/cpu/trackd-soak-$$
		mkdir "$CGROUP"
		echo 100000 >"$CGROUP/cpu.cfs_period_us"
		echo $((QUOTA * 1000)) >"$CGROUP/cpu.cfs_quota_us"
	fi
	for t in /proc/"$TD"/task/*; do echo "${t##*/}" >"$CGROUP/cgroup.procs" 2>/dev/null || echo "${t##*/}" >"$CGROUP/tasks"; done
	log "trackd capped to $QUOTA% of a CPU ($CGROUP); overload for $DURATION"
	d0=$(udp_drops)
	rss0=$(mem_kb "$TD" VmRSS)
	timeout -k 5 $(($(secs "$DURATION") + 60)) taskset -c 1 "$BIN/trackd-load" -json -udp "$ADDR" "${COMMON[@]}" \
		-sockets "$SOCKETS" -window "$WINDOW" -timeout "$TIMEOUT" -warmup 0s -duration "$DURATION" \
		>"$RESULTS/over.json" 2>"$RESULTS/over.txt" &
	GEN=$!
	PIDS+=("$GEN")
	rssmax=$rss0
	while kill -0 "$GEN" 2>/dev/null; do
		r=$(mem_kb "$TD" VmRSS)
		((r > rssmax)) && rssmax=$r
		sleep 1
	done
	wait "$GEN" || die "the generator failed; see $RESULTS/over.txt"
	d1=$(udp_drops)
	rss1=$(mem_kb "$TD" VmRSS)
	# lift the cap, then check trackd answers normally
	if [[ -f $CGROUP/cpu.max ]]; then echo "max 100000" >"$CGROUP/cpu.max"; else echo -1 >"$CGROUP/cpu.cfs_quota_us"; fi
	sleep 2
	load after 1 60 -udp "$ADDR" "${COMMON[@]}" -warmup 1s -duration 5s
	kill -0 "$TD" 2>/dev/null || die "trackd died; see $RESULTS/trackd.log"
	stop_trackd
	{
		echo "# trackd under UDP overload"
		echo
		machine
		echo "- trackd on CPU 0 capped to $QUOTA% of it by a cgroup CPU quota; trackd-load -udp ${COMMON[*]} -sockets $SOCKETS -window $WINDOW -timeout $TIMEOUT for $DURATION on CPU 1"
		echo
		echo "| | responses/s | errors | timeouts | p50 µs | p99 µs |"
		echo "|---|---|---|---|---|---|"
		for tag in base over after; do
			printf '| %s | %.0f | %s | %s | %.0f | %.0f |\n' "$(case $tag in base) echo 'before, uncapped' ;; over) echo "overload, capped to $QUOTA%" ;; after) echo 'after, uncapped' ;; esac)" \
				"$(field $tag responses_per_sec)" "$(field $tag errors)" "$(field $tag timeouts)" "$(field $tag latency_p50_us)" "$(field $tag latency_p99_us)"
		done
		echo
		echo "- requests sent during the overload: $(field over sent) ($(($(field over sent) / $(secs "$DURATION")))/s offered); datagrams the kernel dropped at trackd's sockets: $((d1 - d0))"
		echo "- trackd VmRSS: $((rss0 / 1024)) MiB before, at most $((rssmax / 1024)) MiB during, $((rss1 / 1024)) MiB after"
	} >"$RESULTS/overload.md"
	cat "$RESULTS/overload.md"
	;;
esac
echo
echo "raw results: $RESULTS"
