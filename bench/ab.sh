#!/usr/bin/env bash
# bench/ab.sh: trackd against trackd, two revisions under the same load at
# the same time, over UDP, HTTP or HTTPS (a new connection per request):
# responses per tracker CPU-second of each, and their ratio, round after
# round.
#
#   REV_A=HEAD~1 bash bench/ab.sh      the last commit's parent (A) against
#                                      the working tree (B)
#
# Both trackds run pinned to TRACKER_CPU, each with a generator of its own
# pinned to LOAD_CPU, all four at once: a noisy second of this shared
# machine hits both, where runs one after the other (bench/sweep.sh,
# bench/compare.sh) see ±10-15 % between neighbouring runs. Each tracker
# gets about half of the CPU, so the figures are not a tracker alone's; the
# ratio is what this script is for. Two builds of the same code measure
# within ±1 % of each other (docs/benchmarks.md, "UDP out of the poller").
# Loopback only; every process is bounded in time and stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: REV_A=REV [REV_B=REV] bash bench/ab.sh

Environment (defaults in brackets):
  REV_A [HEAD~1]     trackd A: this git revision
  REV_B [""]         trackd B: this git revision; empty: the working tree
  PROTOCOL [udp]     udp; http or https: a new connection per request
                     (-http-close, CONNS connections per generator;
                     https: an ECDSA P-256 certificate made with openssl,
                     the client offering X25519, as OpenSSL 3.0's do)
  CONNS [32]
  RUNS [5]           rounds
  DURATION [6s]  WARMUP [2s]
  POP ["-torrents 100000 -peers 1000000 -seed 1 -seeders 0.75"]
                     the population, filled into both before the rounds
                     (aquatic's popularity; add -zipf S for Zipf's)
  MIX ["-numwant 30 -scrape 0.01 -scrape-hashes 10"]
                     the request mix (bench/sweep.sh's aq-base point)
  PORT [27969] (A; B is PORT+1)  TRACKER_CPU [0]  LOAD_CPU [1]
  RESULTS [/tmp/trackd-ab-DATE]  MAX_TIME [computed]
EOF
}
case ${1:-} in
"") ;;
-h | --help | help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

REV_A=${REV_A:-HEAD~1}
REV_B=${REV_B:-}
RUNS=${RUNS:-5}
PROTOCOL=${PROTOCOL:-udp}
CONNS=${CONNS:-32}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
POP=${POP:--torrents 100000 -peers 1000000 -seed 1 -seeders 0.75}
MIX=${MIX:--numwant 30 -scrape 0.01 -scrape-hashes 10}
PORT=${PORT:-27969}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RESULTS=${RESULTS:-/tmp/trackd-ab-$(date +%Y%m%d-%H%M%S)}
PY=${PY:-python3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $PROTOCOL =~ ^(udp|http|https)$ ]] || die "PROTOCOL must be udp, http or https"
[[ $PROTOCOL != https ]] || command -v openssl >/dev/null || die "PROTOCOL=https needs openssl (apt-get install openssl)"
run_s=$(($(secs "$DURATION") + $(secs "$WARMUP")))
MAX_TIME=${MAX_TIME:-$((600 + RUNS * (run_s + 15)))}
run_capped "$@"
two_cpus
command -v "$PY" >/dev/null || die "needs $PY"
trap_cleanup

mkdir -p "$RESULTS/raw"
TOP=$(mktemp -d /tmp/trackd-ab-bin.XXXXXX)
cleanup_more() { rm -rf "$TOP"; }
# Build A and B (lib.sh's build builds into BIN from REV).
# shellcheck disable=SC2119 # build's arguments are extra tools: none here
BIN=$TOP/a REV=$REV_A build
# shellcheck disable=SC2119
BIN=$TOP/b REV=$REV_B build
desc_a="git revision $REV_A ($(git -C "$REPO" rev-parse --short "$REV_A"))"
desc_b=${REV_B:+git revision $REV_B ($(git -C "$REPO" rev-parse --short "$REV_B"))}
desc_b=${desc_b:-the working tree at $(git -C "$REPO" rev-parse --short HEAD)}
LOADGEN=$TOP/b/trackd-load

[[ $PROTOCOL != https ]] || selfsigned_cert "$TOP" ec

# start NAME PORT: trackd NAME (a or b) on udp 127.0.0.1:PORT (and tcp
# for PROTOCOL=http or https), pinned to TRACKER_CPU, bounded by MAX_TIME;
# sets STARTED to its pid.
start() {
	local tcp=(-http "")
	case $PROTOCOL in
	http) tcp=(-http "127.0.0.1:$2") ;;
	https) tcp=(-http "" -https "127.0.0.1:$2" -tls-cert "$TOP/cert.pem" -tls-key "$TOP/key.pem") ;;
	esac
	timeout -s KILL "$MAX_TIME" taskset -c "$TRACKER_CPU" "$TOP/$1/trackd" \
		-udp "127.0.0.1:$2" "${tcp[@]}" -admin "" >"$RESULTS/trackd-$1.log" 2>&1 &
	PIDS+=("$!")
	sleep 0.5
	local p
	p=$(pgrep -f "^$TOP/$1/trackd -udp 127.0.0.1:$2") || die "trackd $1 did not start (see $RESULTS/trackd-$1.log)"
	STARTED=$p
}
start a "$PORT"
PID_a=$STARTED
start b "$((PORT + 1))"
PID_b=$STARTED

# load PORT OUT ARGS...: trackd-load on LOAD_CPU against 127.0.0.1:PORT
# over UDP (the fill, or PROTOCOL=udp).
load() {
	local port=$1 out=$2
	shift 2
	# shellcheck disable=SC2086 # POP is a list of flags
	timeout -k 5 "$MAX_TIME" taskset -c "$LOAD_CPU" "$LOADGEN" -json -udp "127.0.0.1:$port" $POP \
		-window 16 "$@" >"$out" 2>>"$RESULTS/load.err"
}

# measure PORT OUT ARGS...: one round's load, over PROTOCOL.
measure() {
	local port=$1 out=$2
	shift 2
	local target=(-http "127.0.0.1:$port")
	case $PROTOCOL in
	udp)
		load "$port" "$out" -timeout 250ms "$@"
		return
		;;
	https) target=(-http "https://127.0.0.1:$port/announce" -tls-curves x25519) ;;
	esac
	# shellcheck disable=SC2086 # POP is a list of flags
	timeout -k 5 "$MAX_TIME" taskset -c "$LOAD_CPU" "$LOADGEN" -json "${target[@]}" \
		-http-close -conns "$CONNS" $POP "$@" >"$out" 2>>"$RESULTS/load.err"
}
log "filling both: $POP"
load "$PORT" "$RESULTS/raw/fill-a.json" -fill -max-time 300s &
fa=$!
load "$((PORT + 1))" "$RESULTS/raw/fill-b.json" -fill -max-time 300s &
fb=$!
wait "$fa" "$fb" || die "a fill failed (see $RESULTS/load.err)"

{
	echo "# trackd A against trackd B, at the same time ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	machine_line
	echo "- A: $desc_a; B: $desc_b"
	echo "- protocol: $PROTOCOL$([[ $PROTOCOL != udp ]] && echo ", a new connection per request, $CONNS connections per generator"); population: $POP; mix: $MIX; each round $WARMUP + $DURATION, both trackds on CPU $TRACKER_CPU, both generators on CPU $LOAD_CPU"
	echo
	echo "| round | A responses per CPU-s | B responses per CPU-s | B / A |"
	echo "|---:|---:|---:|---:|"
} | tee "$RESULTS/report.md"
wsec=$(secs "$WARMUP")
for i in $(seq "$RUNS"); do
	# shellcheck disable=SC2086 # MIX is a list of flags
	measure "$PORT" "$RESULTS/raw/a-$i.json" $MIX -warmup "$(godur "$WARMUP")" -duration "$(godur "$DURATION")" -max-time "$((run_s + 20))s" &
	la=$!
	# shellcheck disable=SC2086
	measure "$((PORT + 1))" "$RESULTS/raw/b-$i.json" $MIX -warmup "$(godur "$WARMUP")" -duration "$(godur "$DURATION")" -max-time "$((run_s + 20))s" &
	lb=$!
	sleep "$wsec"
	a0=$(cpu_ticks "$PID_a") b0=$(cpu_ticks "$PID_b")
	sleep "$(secs "$DURATION")"
	a1=$(cpu_ticks "$PID_a") b1=$(cpu_ticks "$PID_b")
	wait "$la" "$lb" || die "a generator failed (see $RESULTS/load.err)"
	"$PY" - "$RESULTS/raw/a-$i.json" "$RESULTS/raw/b-$i.json" $((a1 - a0)) $((b1 - b0)) "$(getconf CLK_TCK)" "$i" <<'EOF' | tee -a "$RESULTS/report.md"
import json, sys
ra = json.loads(open(sys.argv[1]).readline())["responses"]
rb = json.loads(open(sys.argv[2]).readline())["responses"]
hz = float(sys.argv[5])
ca, cb = int(sys.argv[3]) / hz, int(sys.argv[4]) / hz
a, b = ra / ca, rb / cb
print("| %s | %s | %s | %.3f |" % (sys.argv[6], format(round(a), ","), format(round(b), ","), b / a))
EOF
done
"$PY" - "$RESULTS/report.md" <<'EOF' | tee -a "$RESULTS/report.md"
import statistics, sys
r = [float(l.split("|")[4]) for l in open(sys.argv[1]) if l.startswith("| ") and l.split("|")[1].strip().isdigit()]
print("\nB / A: median %.3f of %d rounds (%.3f-%.3f)" % (statistics.median(r), len(r), min(r), max(r)))
EOF
log "report: $RESULTS/report.md"
