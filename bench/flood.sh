#!/usr/bin/env bash
# bench/flood.sh: trackd's resident memory under a flood of UDP announces of
# random info hashes (a new torrent of one peer per packet), once per
# max_memory setting, and whether a well-behaved client's announces to a
# known swarm keep working meanwhile. Loopback only; every process is
# bounded in time and killed on exit.
#
#   bash bench/flood.sh
#
# Environment (defaults in brackets):
#   LIMITS ["0 128MiB"]  the -max-memory of each run (0: no bound)
#   RATE [30000]         announces per second of the flood
#   DURATION [90s]       length of each flood
#   SOCKETS [4]          sending sockets of the flood
#   PORT [19979] ADMIN [19980]  trackd's UDP and admin ports
#   CPUS [0,1]           trackd on the first, the flood on the second (taskset)
#   RESULTS [/tmp/trackd-flood-DATE]
#
# Prints, for each run, a table of one row a second: trackd's VmRSS, the
# store's memory (trackd_store_memory_bytes), torrents, evicted, refused,
# the shedding gauge and the datagrams the kernel dropped at trackd's full
# sockets; then the flood's own summary (sent, taken, refused, and the well-behaved
# client's failures and slowest announce).
set -euo pipefail

LIMITS=${LIMITS:-"0 128MiB"}
RATE=${RATE:-30000}
DURATION=${DURATION:-90s}
SOCKETS=${SOCKETS:-4}
PORT=${PORT:-19979}
ADMIN=${ADMIN:-19980}
CPUS=${CPUS:-0,1}
RESULTS=${RESULTS:-/tmp/trackd-flood-$(date +%Y%m%d-%H%M%S)}

die() { echo "flood.sh: $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for c in go curl timeout; do command -v "$c" >/dev/null || die "missing $c"; done
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || die "DURATION must be whole seconds, such as 90s"
(( secs <= 600 )) || die "DURATION above 600s: the machine is shared"

cpu_trackd=() cpu_flood=()
if command -v taskset >/dev/null && [[ $CPUS == *,* ]]; then
	cpu_trackd=(taskset -c "${CPUS%%,*}") cpu_flood=(taskset -c "${CPUS#*,}")
fi

mkdir -p "$RESULTS/bin"
log "results in $RESULTS"
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && go build -o "$RESULTS/bin/" ./cmd/trackd ./cmd/trackd-load)

trackd_pid= flood_pid=
cleanup() {
	for p in $flood_pid $trackd_pid; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT

metric() { # metric PAGE NAME: the value of the series NAME, or -
	awk -v n="$2" '$1 == n { printf "%.0f\n", $2; found = 1 } END { if (!found) print "-" }' <<<"$1"
}
mib() { [[ $1 == - ]] && echo - || awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

for limit in $LIMITS; do
	log "run: -max-memory $limit, flood of $RATE/s for $DURATION"
	"${cpu_trackd[@]}" timeout $((secs + 60)) "$RESULTS/bin/trackd" -udp "127.0.0.1:$PORT" -http "" \
		-admin "127.0.0.1:$ADMIN" -max-memory "$limit" -log-level warn 2>"$RESULTS/trackd-$limit.log" &
	trackd_pid=$!
	for _ in $(seq 50); do
		curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null || die "trackd did not come up (see $RESULTS/trackd-$limit.log)"
	# $! is timeout's pid (taskset execs it); trackd is its child.
	rss_pid=$(ps --ppid "$trackd_pid" -o pid= | tr -d ' ')
	[[ -n $rss_pid ]] || die "cannot find trackd's pid"

	"${cpu_flood[@]}" timeout $((secs + 30)) "$RESULTS/bin/trackd-load" -flood -udp "127.0.0.1:$PORT" \
		-rate "$RATE" -duration "$DURATION" -sockets "$SOCKETS" -probe 500ms -json \
		>"$RESULTS/flood-$limit.json" 2>"$RESULTS/flood-$limit.log" &
	flood_pid=$!

	table="$RESULTS/memory-$limit.tsv"
	printf 't_s\trss_MiB\tstore_MiB\ttorrents\tevicted\trefused\tshedding\tudp_dropped\n' >"$table"
	start=$(date +%s)
	while :; do
		t=$(($(date +%s) - start))
		rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$rss_pid/status" 2>/dev/null || echo -)
		page=$(curl -fs --max-time 2 "http://127.0.0.1:$ADMIN/metrics" || true)
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" \
			"$(mib "$(metric "$page" trackd_store_memory_bytes)")" "$(metric "$page" trackd_torrents)" \
			"$(metric "$page" trackd_store_evicted_torrents_total)" \
			"$(metric "$page" trackd_store_refused_announces_total)" \
			"$(metric "$page" trackd_store_shedding)" \
			"$(metric "$page" trackd_udp_packets_dropped_total)" >>"$table"
		kill -0 "$flood_pid" 2>/dev/null || break
		((t < secs + 30)) || break
		sleep 1
	done
	flood_rc=0
	wait "$flood_pid" || flood_rc=$?
	flood_pid=
	kill "$trackd_pid" 2>/dev/null || true
	wait "$trackd_pid" 2>/dev/null || true
	trackd_pid=

	echo
	echo "== -max-memory $limit: flood of $RATE/s for $DURATION (trackd-load exit $flood_rc)"
	column -t -s $'\t' "$table" 2>/dev/null || cat "$table"
	grep -v '^t=' "$RESULTS/flood-$limit.log" || true
done
