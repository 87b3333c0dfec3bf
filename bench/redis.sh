#!/usr/bin/env bash
# bench/redis.sh: trackd on the Redis store under trackd-load: announces/s
# and p99 over UDP and HTTP, Redis commands per announce (INFO
# commandstats) and Redis memory per peer (INFO memory). Loopback only;
# starts its own redis-server on a free port in a temporary directory and
# stops everything on exit.
#
#   bash bench/redis.sh
#
# Every run is measured from its first request (no warm-up), so that
# INFO commandstats, reset before it, covers exactly the run.
#
# Environment: TORRENTS [100000] PEERS [1000000] DURATION [10s] RUNS [3]
# PORT [20969] REDIS_PORT [20379] LOAD_FLAGS ["-sockets 32 -conns 64"]
#
# trackd answers one UDP packet at a time per socket and a socket gets the
# packets of the clients its address hash picks: many clients (as a public
# tracker has) spread over all of trackd's sockets, one generator socket
# only ever reaches one. Hence 32 generator sockets by default.
set -euo pipefail
TORRENTS=${TORRENTS:-100000}
PEERS=${PEERS:-1000000}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
PORT=${PORT:-20969}
REDIS_PORT=${REDIS_PORT:-20379}
LOAD_FLAGS=${LOAD_FLAGS:--sockets 32 -conns 64}
ADDR=127.0.0.1:$PORT
for c in go redis-server redis-cli taskset timeout; do command -v "$c" >/dev/null || { echo "redis.sh: missing $c (apt-get install redis-server)" >&2; exit 1; }; done
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d /tmp/trackd-redis-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
rc() { redis-cli -p "$REDIS_PORT" "$@"; }

(cd "$REPO" && go build -o "$TMP/trackd" ./cmd/trackd && go build -o "$TMP/trackd-load" ./cmd/trackd-load)
timeout 3600 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do rc ping >/dev/null 2>&1 && break; sleep 0.1; done
timeout 3600 "$TMP/trackd" -http "$ADDR" -udp "$ADDR" -admin "" -store "redis://127.0.0.1:$REDIS_PORT/0" >"$TMP/trackd.log" 2>&1 &
PIDS+=($!)
sleep 1
mem0=$(rc info memory | awk -F: '/^used_memory:/ {print $2+0}')
COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -json)
log "fill: $PEERS peers over $TORRENTS torrents (UDP)"
timeout 1200 "$TMP/trackd-load" -fill -udp "$ADDR" "${COMMON[@]}" -window 16 >"$TMP/fill.json" 2>"$TMP/fill.txt" || { cat "$TMP/fill.txt" >&2; exit 1; }
sleep 3
mem1=$(rc info memory | awk -F: '/^used_memory:/ {print $2+0}')
held=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["announces"])' "$TMP/fill.json")
echo "Redis used_memory: $mem0 B empty, $mem1 B after $held announced peers: $(( (mem1 - mem0) / PEERS )) B/peer"
for proto in udp http; do
	for i in $(seq "$RUNS"); do
		rc config resetstat >/dev/null
		# shellcheck disable=SC2086
		timeout 120 "$TMP/trackd-load" "-$proto" "$ADDR" "${COMMON[@]}" $LOAD_FLAGS -warmup 0s -duration "$DURATION" >"$TMP/$proto-$i.json" 2>"$TMP/$proto-$i.txt"
		stats=$(rc info commandstats)
		python3 - "$TMP/$proto-$i.json" "$proto" "$i" <<PY
import json, re, sys
r = json.loads(open(sys.argv[1]).readline())
stats = """$stats"""
calls = {m[0]: int(m[1]) for m in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)}
scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
total = sum(calls.values())
ann = r["announces"] or 1
print("%-4s run %s: %8.0f responses/s, p50 %6.0f us, p99 %7.0f us, errors %d, timeouts %d; Redis calls per announce: %.2f script, %.2f commands of any kind (incl. the %d scrape pipelines' and the background's)"
      % (sys.argv[2], sys.argv[3], r["responses_per_sec"], r["latency_p50_us"], r["latency_p99_us"], r["errors"], r["timeouts"],
         scripts / ann, total / ann, r["scrapes"]))
PY
	done
done
