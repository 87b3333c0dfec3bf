#!/usr/bin/env bash
# bench/profile-http.sh: a CPU profile of trackd under HTTP keep-alive load.
#
#   bash bench/profile-http.sh TRACKD TRACKD_LOAD OUT.pprof [PORT]
#
# Starts the trackd binary TRACKD pinned to CPU 0 (HTTP on 127.0.0.1:PORT,
# admin with -pprof on PORT+1), loads it with TRACKD_LOAD -http on CPU 1
# (5 s warm-up, 12 s measured), and writes a 10 s CPU profile taken during
# the measured part to OUT.pprof. Read two such profiles side by side with
# `go tool pprof -top -cum BINARY OUT.pprof`. Loopback only; everything it
# starts stops by itself (trackd is killed on exit).
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n 2,11p "$0" >&2; exit 2; }
trackd=$1 load=$2 out=$3 port=${4:-18100}
admin=127.0.0.1:$((port + 1))
timeout -k 5 60 taskset -c 0 "$trackd" -http "127.0.0.1:$port" -udp "" -admin "$admin" -pprof >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
(sleep 6 && curl -fsS -o "$out" "http://$admin/debug/pprof/profile?seconds=10") &
prof=$!
timeout -k 5 40 taskset -c 1 "$load" -http "127.0.0.1:$port" -warmup 5s -duration 12s | grep -E 'responses:'
wait $prof
