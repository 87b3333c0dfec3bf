#!/usr/bin/env bash
# bench/sweep.sh: the workload sweep: trackd against opentracker, per
# tracker CPU-second, at each of a list of workload points (popularity,
# swarm size, scrape share and hashes, numwant, seeder share, events), over
# UDP and HTTP with a new connection per request.
#
#   bash bench/sweep.sh              the whole sweep (27 minutes here)
#   SHORT=1 bash bench/sweep.sh      five points, shorter runs (8 minutes)
#
# trackd, opentracker and the canned server run side by side on three
# ports, each pinned to TRACKER_CPU; the measured runs of a point are
# interleaved (trackd, opentracker, trackd, ...), so that a noisy minute
# of this shared machine hits both. One table row per point and protocol:
# the medians, and the ratio as the median of the ratios of neighbouring
# pairs. See bench/README.md ("The workload sweep"). Installs nothing;
# loopback only; every process it starts is bounded in time and stopped on
# exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: [SHORT=1] bash bench/sweep.sh

Environment (defaults in brackets; SHORT=1 changes the ones marked *):
  SHORT [""]                  1: five points (see the end of this list), shorter runs
  POINTS [all]                only these points (names, space-separated; see the list below)
  RUNS [3]                    trackd/opentracker pairs per point and protocol
  DURATION [5s, *3s]          measured time of each run
  WARMUP [2s]                 warm-up of each run (not counted)
  PROTOCOLS ["udp http"]      udp, http (a new connection per request), or both
  CANNED [1]                  0: skip the canned server's run (the generator's ceiling)
  SEED [1]  PORT [26969] (trackd; opentracker PORT+1, canned PORT+2)
  TRACKER_CPU [0]  LOAD_CPU [1]
  LOAD_FLAGS [""]             extra trackd-load flags for every measured run
  UDP_FLAGS ["-window 16 -timeout 250ms"]
                              extra trackd-load flags for the measured UDP runs (see below)
  FILL_FLAGS ["-window 16"]   extra trackd-load flags for the fills
  REV [""]                    build trackd and trackd-load from this git revision
  TRACKD_BIN [""]             use this trackd binary instead of the one built (to compare
                              trackd revisions under the same generator: the sweep's flags
                              need a trackd-load that has them)
  RESULTS [/tmp/trackd-sweep-DATE]  where raw results go
  MAX_TIME [computed]         hard cap on the whole script, in seconds

Points (name: population; request mix):
EOF
	local p
	for p in "${ALL_POINTS[@]}"; do echo "  $p"; done
	echo "  (name, popularity, torrents, peers, seeder share, trackd-load flags)"
	echo "SHORT=1 runs: $SHORT_POINTS"
}

# The points: name, popularity (aquatic: loadgen.Weight, as aquatic's load
# test; zipf:S: Zipf's law of exponent S), torrents, peers, seeder share,
# then the trackd-load flags of the request mix. Points of one population
# (popularity, torrents, peers, seeders) are consecutive: both trackers are
# filled once per population. The hottest swarm: aquatic ~600 peers;
# zipf:0.8 over 100,000 torrents and 1 M peers ~22,000; zipf:1.0 ~83,000;
# zipf:1.2 with 500,000 peers ~98,000.
ALL_POINTS=(
	"aq-base     aquatic  100000 1000000 0.75 -numwant 30  -scrape 0.01 -scrape-hashes 10"
	"aq-nw200    aquatic  100000 1000000 0.75 -numwant 200 -scrape 0.01 -scrape-hashes 10"
	"z08         zipf:0.8 100000 1000000 0.75 -numwant 50  -scrape 0.10 -scrape-hashes 10"
	"z10         zipf:1.0 100000 1000000 0.75 -numwant 50  -scrape 0.10 -scrape-hashes 10"
	"z10-nw30    zipf:1.0 100000 1000000 0.75 -numwant 30  -scrape 0.01 -scrape-hashes 10"
	"z10-nw200   zipf:1.0 100000 1000000 0.75 -numwant 200 -scrape 0.01 -scrape-hashes 10"
	"z10-sc20    zipf:1.0 100000 1000000 0.75 -numwant 50  -scrape 0.20 -scrape-hashes 10"
	"z10-sc20x1  zipf:1.0 100000 1000000 0.75 -numwant 50  -scrape 0.20 -scrape-hashes 1"
	"z10-events  zipf:1.0 100000 1000000 0.75 -numwant 50  -scrape 0.10 -scrape-hashes 10 -stopped 0.02 -completed 0.05"
	"z10-seed10  zipf:1.0 100000 1000000 0.10 -numwant 50  -scrape 0.10 -scrape-hashes 10"
	"z12         zipf:1.2 100000 500000  0.75 -numwant 50  -scrape 0.10 -scrape-hashes 10"
	"z12-nw200   zipf:1.2 100000 500000  0.75 -numwant 200 -scrape 0.10 -scrape-hashes 10"
)
SHORT_POINTS="aq-base z10 z10-nw200 z10-sc20 z12-nw200"

case ${1:-} in
"") ;;
-h | --help | help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

SHORT=${SHORT:-}
if [[ -n $SHORT && $SHORT != 0 ]]; then
	POINTS=${POINTS:-$SHORT_POINTS}
	DURATION=${DURATION:-3s}
fi
POINTS=${POINTS:-}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
PROTOCOLS=${PROTOCOLS:-udp http}
CANNED=${CANNED:-1}
SEED=${SEED:-1}
PORT=${PORT:-26969}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOAD_FLAGS=${LOAD_FLAGS:-}
# UDP: 8 sockets x 16 in flight, and a request unanswered for 250 ms given
# up. opentracker keeps its socket's default receive buffer (208 KiB here)
# and drops datagrams when 8 x 32 arrive at once; with the default 2 s
# timeout each drop holds a slot of the window for 2 s, the window empties
# and opentracker idles most of the run (tried: 190 timeouts and 20-60 %
# of a CPU busy per 5 s run). Replies on loopback take milliseconds.
UDP_FLAGS=${UDP_FLAGS--window 16 -timeout 250ms}
FILL_FLAGS=${FILL_FLAGS--window 16}
RESULTS=${RESULTS:-/tmp/trackd-sweep-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
FILL_LIMIT=600

DURATION=$(godur "$DURATION")
WARMUP=$(godur "$WARMUP")
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
for v in RUNS SEED PORT TRACKER_CPU LOAD_CPU CANNED; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
((RUNS >= 1)) || die "RUNS must be at least 1"
((PORT + 2 <= 65535)) || die "PORT must leave room for PORT+2"
for p in $PROTOCOLS; do
	[[ $p == udp || $p == http ]] || die "PROTOCOLS: '$p' is neither udp nor http"
done
[[ -n ${PROTOCOLS// /} ]] || die "PROTOCOLS is empty"

# The selected points, in the list's order.
SEL=()
for p in "${ALL_POINTS[@]}"; do
	n=${p%% *}
	if [[ -z $POINTS || " $POINTS " == *" $n "* ]]; then SEL+=("$p"); fi
done
for n in $POINTS; do
	found=0
	for p in "${ALL_POINTS[@]}"; do [[ ${p%% *} == "$n" ]] && found=1; done
	((found)) || die "POINTS: no point '$n' (bash bench/sweep.sh -h lists them)"
done
((${#SEL[@]})) || die "no points selected"

missing=()
for c in opentracker taskset; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
	echo "sweep.sh: missing ${missing[*]}; install it with: apt-get install opentracker util-linux" >&2
	exit 1
fi
for c in go timeout ss getconf pgrep; do command -v "$c" >/dev/null || die "missing $c"; done
[[ -x $PY ]] || die "missing $PY"
two_cpus

# --- one hard cap on the whole script
NPROTO=$(wc -w <<<"$PROTOCOLS")
NPOPS=$(for p in "${SEL[@]}"; do echo "$p" | awk '{print $2, $3, $4, $5}'; done | uniq | wc -l)
# per point and protocol: 2·RUNS tracker runs and one canned run of
# WARMUP + DURATION and about 1.5 s of overhead each; per population two
# fills and two peer counts (about 40 s each, 1 M peers)
EST=$((${#SEL[@]} * NPROTO * (2 * RUNS + CANNED) * (WARM_S + DUR_S + 2) + NPOPS * 4 * 40 + 60))
if [[ -z ${_COMPARE_CAPPED:-} && -z ${MAX_TIME:-} ]]; then
	MAX_TIME=$((2 * EST + 600))
fi
run_capped "$@"

HELPER=$REPO/bench/compare_helper.py
SWHELPER=$REPO/bench/sweep_helper.py
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$RESULTS/raw"
[[ -z $(ls -A "$RESULTS/raw") ]] || die "$RESULTS/raw is not empty; give another RESULTS"
BIN=$(mktemp -d /tmp/trackd-sweep-bin.XXXXXX)
trap_cleanup
build bench/hashes
if [[ -n ${TRACKD_BIN:-} ]]; then
	[[ -x $TRACKD_BIN ]] || die "TRACKD_BIN $TRACKD_BIN is not an executable"
	cp "$TRACKD_BIN" "$BIN/trackd"
	SRC_DESC="$SRC_DESC (trackd: $TRACKD_BIN, $(sha256sum "$TRACKD_BIN" | cut -c1-12))"
fi
OPENTRACKER=$(readlink -f "$(command -v opentracker)")
taskset -pc "$LOAD_CPU" $$ >/dev/null
log "results in $RESULTS; ${#SEL[@]} points × $NPROTO protocols, $RUNS pairs each; estimated $((EST / 60)) min (cap ${MAX_TIME} s)"

TD_ADDR=127.0.0.1:$PORT
OT_ADDR=127.0.0.1:$((PORT + 1))
CN_ADDR=127.0.0.1:$((PORT + 2))

# cpu_busy N: ticks of CPU N: "user+nice+system irq+softirq steal".
cpu_busy() {
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4, $7 + $8, $9 }' /proc/stat
}
listening() { [[ -n $(ss -Hlnt "sport = :$1") && -n $(ss -Hlnu "sport = :$1") ]]; }

trackd_PID="" opentracker_PID="" canned_PID=""
# (trackd runs without its admin listener: its default port may be taken
# by another trackd on this machine.)
# start NAME DIR EXE ARGS...: spawn_server (bench/lib.sh) and wait until it
# listens on TCP and UDP of the port of NAME's address; sets NAME_PID and
# NAME_WRAP (trackd_PID, ...).
start() {
	local name=$1 port
	case $name in
	trackd) port=$PORT ;;
	opentracker) port=$((PORT + 1)) ;;
	canned) port=$((PORT + 2)) ;;
	esac
	[[ -z $(ss -Hlntu "sport = :$port") ]] || die "port $port is in use; set PORT"
	spawn_server "$@"
	local i
	for i in $(seq 200); do
		kill -0 "$SRV_PID" 2>/dev/null || die "$name exited; see $RESULTS/$name.log"
		if listening "$port"; then
			printf -v "${name}_PID" %s "$SRV_PID"
			printf -v "${name}_WRAP" %s "$SRV_WRAP"
			log "$name started, pid $SRV_PID on CPU $TRACKER_CPU, 127.0.0.1:$port"
			return 0
		fi
		sleep 0.05
	done
	die "$name does not listen on TCP and UDP 127.0.0.1:$port"
}
# stop NAME: stop a server start started.
stop() {
	local p=${1}_PID w=${1}_WRAP
	[[ -n ${!p:-} ]] || return 0
	SRV_PID=${!p} SRV_WRAP=${!w}
	kill_server
	printf -v "$p" %s ""
	log "$1 stopped"
}

hashes() { [[ -s $BIN/hashes-$1.txt ]] || "$BIN/hashes" -torrents "$1" -seed "$SEED" >"$BIN/hashes-$1.txt"; }

# opentracker's directory with its config and whitelist (Debian's build
# tracks only whitelisted hashes; see compare.sh).
prepare_opentracker() {
	OTDIR=$BIN/opentracker-$1
	mkdir -p "$OTDIR"
	cp "$BIN/hashes-$1.txt" "$OTDIR/whitelist.txt"
	cat >"$OTDIR/opentracker.conf" <<EOF
listen.tcp_udp $OT_ADDR
access.whitelist whitelist.txt
tracker.rootdir $OTDIR
EOF
	chmod 755 "$BIN" "$OTDIR"
	chmod 644 "$OTDIR/whitelist.txt" "$OTDIR/opentracker.conf"
}

# pop_flags POPULARITY: the trackd-load flag of a popularity.
pop_flags() {
	case $1 in
	aquatic) ;;
	zipf:*) echo "-zipf ${1#zipf:}" ;;
	*) die "popularity '$1': aquatic or zipf:S" ;;
	esac
}

# fill NAME ADDR: announce every peer of the population once over UDP, and
# count what the tracker then holds (a UDP scrape of every hash).
fill() {
	local name=$1 addr=$2 tag="fill-$1-$POPTAG"
	# shellcheck disable=SC2086
	run_load "$tag" $((FILL_LIMIT + 30)) -fill -udp "$addr" "${POP[@]}" -max-time "${FILL_LIMIT}s" $FILL_FLAGS
	gen_wait "$tag"
	local held
	held=$(timeout 300 $PY "$HELPER" count "$addr" "$BIN/hashes-$TORRENTS.txt" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["peers"])') || die "$name: UDP scrape of every hash failed"
	log "$name: fill: $(field "$tag" announces) announced in $(field "$tag" seconds) s, $(field "$tag" errors) errors; holds $held peers"
	[[ $held == "$PEERS" ]] || log "WARNING: $name holds $held peers, not $PEERS"
}

RUNSFILE=$RESULTS/runs.jsonl
POINTSFILE=$RESULTS/points.jsonl
: >"$RUNSFILE"
: >"$POINTSFILE"
LIMIT=$((WARM_S + DUR_S + 45))

# measure NAME PID ADDR POINT PROTO I: one measured run against the server
# NAME (pid PID) at ADDR; its CPU time is read from when the generator's
# warm-up ends to when it has exited (as compare.sh).
measure() {
	local name=$1 pid=$2 addr=$3 point=$4 proto=$5 i=$6
	local tag="$point-$proto-$name-$i" la0 la1 c0 c1 b0 b1 t0 t1 target
	# shellcheck disable=SC2206
	if [[ $proto == udp ]]; then target=(-udp "$addr" $UDP_FLAGS); else target=(-http "$addr" -http-close); fi
	la0=$(loadavg)
	# shellcheck disable=SC2086
	run_load "$tag" "$LIMIT" "${target[@]}" "${POP[@]}" "${MIX[@]}" -warmup "$WARMUP" -duration "$DURATION" -max-time "$((LIMIT - 10))s" $LOAD_FLAGS
	sleep "$WARMUP"
	c0=$(cpu_ticks "$pid")
	b0=$(cpu_busy "$TRACKER_CPU")
	t0=$(date +%s.%N)
	gen_wait "$tag"
	c1=$(cpu_ticks "$pid")
	b1=$(cpu_busy "$TRACKER_CPU")
	t1=$(date +%s.%N)
	la1=$(loadavg)
	$PY "$SWHELPER" record "$RESULTS/raw/$tag.json" "$name" "$point" "$proto" "$i" "$c0" "$c1" "$b0" "$b1" "$t0" "$t1" "$CLK_TCK" "$la0" "$la1" >>"$RUNSFILE"
}

LA_START=$(loadavg)
STAT0=$(head -n 1 /proc/stat)
T_START=$(date +%s)
hashes 100000
if ((CANNED)); then
	start canned "$BIN" "$BIN/trackd-load" -canned -udp "$CN_ADDR" -http "$CN_ADDR" -max-time "${MAX_TIME}s"
fi
CURPOP=""
for p in "${SEL[@]}"; do
	# shellcheck disable=SC2086
	set -- $p
	NAME=$1 POPULARITY=$2 TORRENTS=$3 PEERS=$4 SEEDERS=$5
	shift 5
	MIX=("$@")
	# shellcheck disable=SC2207
	POP=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED" -seeders "$SEEDERS" $(pop_flags "$POPULARITY"))
	POPTAG="${POPULARITY/:/}-${TORRENTS}t-${PEERS}p-s$SEEDERS"
	if [[ $POPTAG != "$CURPOP" ]]; then
		stop trackd
		stop opentracker
		hashes "$TORRENTS"
		log "population $POPULARITY, $TORRENTS torrents, $PEERS peers, seeders $SEEDERS: filling both trackers"
		start trackd "$BIN" "$BIN/trackd" -http "$TD_ADDR" -udp "$TD_ADDR" -admin ""
		timeout 130 $PY "$HELPER" probe "$TD_ADDR" "$(tail -n 1 "$BIN/hashes-$TORRENTS.txt")" 120 || die "trackd does not answer"
		fill trackd "$TD_ADDR"
		prepare_opentracker "$TORRENTS"
		start opentracker "$OTDIR" "$OPENTRACKER" -f "$OTDIR/opentracker.conf"
		timeout 130 $PY "$HELPER" probe "$OT_ADDR" "$(tail -n 1 "$BIN/hashes-$TORRENTS.txt")" 120 || die "opentracker does not answer"
		fill opentracker "$OT_ADDR"
		CURPOP=$POPTAG
	fi
	printf '{"point":"%s","popularity":"%s","torrents":%d,"peers":%d,"seeders":%s,"mix":"%s"}\n' \
		"$NAME" "$POPULARITY" "$TORRENTS" "$PEERS" "$SEEDERS" "${MIX[*]}" >>"$POINTSFILE"
	for proto in $PROTOCOLS; do
		log "point $NAME ($POPULARITY, $PEERS peers, seeders $SEEDERS, ${MIX[*]}), $proto"
		for i in $(seq "$RUNS"); do
			measure trackd "$trackd_PID" "$TD_ADDR" "$NAME" "$proto" "$i"
			measure opentracker "$opentracker_PID" "$OT_ADDR" "$NAME" "$proto" "$i"
		done
		if ((CANNED)); then measure canned "$canned_PID" "$CN_ADDR" "$NAME" "$proto" 1; fi
	done
done
stop trackd
stop opentracker
stop canned
T_END=$(date +%s)
STAT1=$(head -n 1 /proc/stat)

{
	echo "# The workload sweep: trackd vs opentracker, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	machine_line
	echo "- $(go version | cut -d' ' -f3-), opentracker $(dpkg-query -W -f='${Version}' opentracker 2>/dev/null || echo '?'); trackd and trackd-load built from the $SRC_DESC"
	echo "- trackd ($TD_ADDR), opentracker ($OT_ADDR) and the canned server ($CN_ADDR) side by side, each pinned to CPU $TRACKER_CPU; trackd-load on CPU $LOAD_CPU"
	echo "- per point and protocol: $RUNS interleaved pairs (trackd, opentracker, trackd, ...) of $WARMUP warm-up + $DURATION measured$( ((CANNED)) && echo ", then one run of the canned server"); both trackers filled over UDP (trackd-load -fill $FILL_FLAGS) once per population; UDP with trackd-load's defaults and $UDP_FLAGS; HTTP is a new connection per request (-http-close, 32 connections)${LOAD_FLAGS:+; extra flags: $LOAD_FLAGS}"
	echo "- took $(((T_END - T_START + 30) / 60)) min; load average at the start $LA_START, at the end $(loadavg)"
	$PY "$SWHELPER" noise "$RUNSFILE" "$STAT0" "$STAT1"
	echo
	$PY "$SWHELPER" table "$RUNSFILE" "$POINTSFILE"
} >"$RESULTS/table.md"
echo
cat "$RESULTS/table.md"
echo
echo "raw results: $RESULTS (runs.jsonl: one line per measured run; raw/: trackd-load output)"
