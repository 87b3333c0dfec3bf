#!/usr/bin/env bash
# bench/fullscrape.sh: what building the full scrape does to announces, and
# to resident memory, before and after the background build.
#
#   bash bench/fullscrape.sh
#
# For each size, one trackd (the working tree) is filled over UDP with
# trackd-load -fill (TORRENTS torrents, 2 peers each on average, so that
# nearly every torrent has one) and writes its swarms to a state file. Then
# each build -- BEFORE (a git revision, built with git archive) and the
# working tree -- starts from a copy of that file with
# full_scrape_interval = FSI, and bench/fsprobe runs for DURATION seconds:
# two clients ask for the full scrape over and over (gzip, keep-alive,
# PAUSE between two requests of each), so that a build is always due, while two well-behaved clients announce every
# 50 ms (one on a new connection each time, one keep-alive) and their
# latencies are recorded; before it, the same announcers alone for BASE
# seconds give a baseline (for the working tree, once its first build,
# made at start, is done). Printed per run: the announce latencies (p50, p99,
# max, failures), the full scrape request times, the builds' durations (the
# working tree logs each build at debug level; before, a request that found
# the cache stale took the build's time), resident memory once loaded
# (VmRSS) and its peak during the probe (VmHWM, reset through
# /proc/PID/clear_refs just before).
#
# Environment (defaults in brackets):
#   SIZES ["1000000 3000000"]  torrents of each run
#   BEFORE [be6a57b]           revision to compare with ("" skips it)
#   DURATION [20]              seconds of each probe
#   FSI [1s]                   full_scrape_interval of the runs
#   PAUSE [0.5s]               each scraper's wait between two full scrapes
#   BASE [10]                  seconds of the baseline probe (announces alone)
#   STATE_DIR [""]             keep the filled state files here and reuse them
#   PORT [17969]               HTTP/UDP port; admin on PORT+1
#   RESULTS [/tmp/trackd-fullscrape-DATE]  logs and raw output
# Loopback only; every process is bounded in time and killed on exit.
set -euo pipefail

SIZES=${SIZES:-1000000 3000000}
BEFORE=${BEFORE-be6a57b}
DURATION=${DURATION:-20}
FSI=${FSI:-1s}
PAUSE=${PAUSE:-0.5s}
BASE=${BASE:-10}
PORT=${PORT:-17969}
RESULTS=${RESULTS:-/tmp/trackd-fullscrape-$(date +%Y%m%d-%H%M%S)}
ADDR=127.0.0.1:$PORT
ADMIN=127.0.0.1:$((PORT + 1))
for v in DURATION PORT BASE; do [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be an integer" >&2; exit 2; }; done

# one hard cap on the whole script
if [[ -z ${_FS_CAPPED:-} ]]; then
	n=$(wc -w <<<"$SIZES")
	export _FS_CAPPED=1 RESULTS
	exec timeout --foreground --signal=TERM --kill-after=20 $((n * (600 + 2 * (BASE + DURATION + 240)) + 300)) bash "$0" "$@"
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$RESULTS"
BIN=$(mktemp -d /tmp/trackd-fullscrape-bin.XXXXXX)
PIDS=()
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$BIN"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building the working tree ($(git -C "$REPO" rev-parse --short HEAD)) into $BIN"
(cd "$REPO" && go build -o "$BIN/after/trackd" ./cmd/trackd && go build -o "$BIN/trackd-load" ./cmd/trackd-load &&
	go build -o "$BIN/fsprobe" ./bench/fsprobe)
BUILDS=(after)
if [[ -n $BEFORE ]]; then
	log "building $BEFORE ($(git -C "$REPO" rev-parse --short "$BEFORE"))"
	mkdir -p "$BIN/src"
	git -C "$REPO" archive "$BEFORE" | tar -x -C "$BIN/src"
	(cd "$BIN/src" && go build -o "$BIN/before/trackd" ./cmd/trackd)
	BUILDS=(before after)
fi

# start_trackd BUILD LOG ARGS...: starts trackd (killed after 20 minutes
# at the latest) and waits until its admin listener answers.
start_trackd() {
	local build=$1 logf=$2
	shift 2
	timeout -s KILL 1200 "$BIN/$build/trackd" -http "$ADDR" -admin "$ADMIN" -log-level debug \
		-peer-lifetime 2h -state-interval 10h "$@" >"$logf" 2>&1 &
	TRACKD=$!
	PIDS+=("$TRACKD")
	for _ in $(seq 600); do
		curl -sf "http://$ADMIN/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$TRACKD" 2>/dev/null || { cat "$logf" >&2; return 1; }
		sleep 0.2
	done
	echo "trackd did not start" >&2
	return 1
}
# trackd's pid: timeout's child
pid_of() { pgrep -P "$1" -x trackd || echo "$1"; }
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # in kB
torrents() { curl -sf "http://$ADMIN/metrics" | awk '$1 == "trackd_torrents" {print $2}'; }

for n in $SIZES; do
	state=${STATE_DIR:-$RESULTS}/state-$n
	if [[ -n ${STATE_DIR:-} && -s $state ]]; then
		log "reusing $state"
	else
		log "filling $n torrents ($((2 * n)) peers) over UDP"
		start_trackd after "$RESULTS/fill-$n.log" -udp "$ADDR" -state "$state"
		"$BIN/trackd-load" -fill -udp "$ADDR" -torrents "$n" -peers $((2 * n)) -seed 1 -window 16 -max-time 10m \
			>"$RESULTS/fill-$n.out" 2>&1 || { cat "$RESULTS/fill-$n.out" >&2; exit 1; }
		log "filled: $(torrents) torrents; writing the state file"
		kill -TERM "$(pid_of "$TRACKD")"
		wait "$TRACKD" || true
	fi
	for build in "${BUILDS[@]}"; do
		tag=$build-$n
		cp "$state" "$RESULTS/run.state"
		start_trackd "$build" "$RESULTS/$tag.log" -udp "" -state "$RESULTS/run.state" -full-scrape-interval "$FSI"
		pid=$(pid_of "$TRACKD")
		if [[ $build == after ]]; then # the first build, made at start
			for _ in $(seq 300); do
				curl -sf -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://$ADDR/scrape" | grep -qi '^content-encoding: gzip' && break
				sleep 0.2
			done
		fi
		sleep 2
		t=$(torrents)
		log "$tag: $t torrents; baseline: announces without full scrapes for ${BASE}s"
		"$BIN/fsprobe" -addr "$ADDR" -duration "${BASE}s" -scrapers 0 >"$RESULTS/$tag-base.out" 2>"$RESULTS/$tag-base.err"
		rss=$(status "$pid" VmRSS)
		echo 5 >"/proc/$pid/clear_refs"
		log "$tag: VmRSS $((rss / 1024)) MiB; probing for ${DURATION}s"
		"$BIN/fsprobe" -addr "$ADDR" -duration "${DURATION}s" -pause "$PAUSE" >"$RESULTS/$tag.out" 2>"$RESULTS/$tag.err"
		hwm=$(status "$pid" VmHWM)
		kill -KILL "$pid" 2>/dev/null || true
		wait "$TRACKD" 2>/dev/null || true
		builds=$(grep -o 'msg="full scrape built".*duration=[0-9.]*[mµn]*s' "$RESULTS/$tag.log" | sed 's/.*duration=//' | tr '\n' ' ' || true)
		{
			echo "== $tag: torrents=$t full_scrape_interval=$FSI pause=$PAUSE VmRSS_loaded_MiB=$((rss / 1024)) VmHWM_during_probe_MiB=$((hwm / 1024))"
			sed 's/^announce/baseline: announce/' "$RESULTS/$tag-base.out"
			cat "$RESULTS/$tag.out"
			if [[ -n $builds ]]; then echo "builds (duration each): $builds"; fi
		} | tee -a "$RESULTS/summary.txt"
	done
	rm -f "$RESULTS/run.state"
	[[ -n ${STATE_DIR:-} ]] || rm -f "$state"
done
log "summary in $RESULTS/summary.txt"
