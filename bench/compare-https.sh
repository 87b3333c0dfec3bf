#!/usr/bin/env bash
# bench/compare-https.sh: trackd's built-in TLS side by side with
# opentracker behind hitch (a TLS terminator), on one core.
#
#   bash bench/compare-https.sh
#
# Both servers run at once, pinned to TRACKER_CPU: trackd with -https, and
# opentracker with hitch in front of it (hitch's processes and
# opentracker's CPU are added up). trackd-load, pinned to LOAD_CPU, loads
# them in turn (trackd, opentracker+hitch, trackd, ...), so that a noisy
# minute hits both; each pair is measured in each MODE:
#   close      a new TLS connection per request, full handshake (what
#              public trackers see from most clients)
#   resume     a new TLS connection per request, the previous session
#              resumed from its ticket
#   keepalive  one TLS connection per client, requests pipelined
#   memory     trackd only: its resident memory per idle keep-alive TLS
#              connection (IDLE connections, each after one announce;
#              opentracker closes after each reply, so hitch holds no
#              idle connection to compare)
# The figure is announces+scrapes answered per CPU-second of the server's
# processes; the table gives the median of RUNS runs and the ratio.
# Installs nothing; loopback only; every process it starts is bounded in
# time and killed on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
Usage: bash bench/compare-https.sh
       bash bench/compare-https.sh table RESULTS/runs.jsonl   (the table again)

Environment (defaults in brackets):
  MODES ["close resume keepalive"]  which client behaviours to measure
                           (and "memory": trackd's memory per idle connection)
  IDLE [2000]              connections the memory mode holds
  SERVERS ["trackd ot+hitch"]  which servers to measure (both are started)
  KEY [ec]                 certificate key: ec (ECDSA P-256) or rsa (RSA 2048)
  CLIENTS ["x25519:-tls-curves x25519"]  TLS clients to measure, separated
                           by ";", each NAME:trackd-load TLS flags; x25519
                           alone is what OpenSSL 3.0 clients offer, "" Go's
                           default (X25519MLKEM768 first). Example:
                           "x25519:-tls-curves x25519;mlkem:;p256:-tls-curves p256;tls12:-tls-version 1.2"
  TRACKD_FLAGS [""]        extra trackd flags
  TORRENTS [1000] PEERS [10000]  workload (small: the handshake dominates)
  CONNS [32]               concurrent connections (trackd-load -conns)
  DURATION [10s] WARMUP [3s] RUNS [3]
  PORT [17443]             trackd's -https; hitch PORT+1, opentracker PORT+2
                           (TCP and UDP), trackd's admin (pprof) PORT+3
  PROFILE [""]             a file: take a 10 s CPU profile of trackd during
                           its first measured run of the first mode
  TRACKER_CPU [0]  LOAD_CPU [1]  SEED [1]
  RESULTS [/tmp/trackd-https-DATE]  where raw results go
  MAX_TIME [computed]      hard cap on the whole script, in seconds
EOF
}
# table RUNS.jsonl: the table (markdown) of the runs recorded there.
table() {
	/usr/bin/python3 - "$1" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
names = {"close": "new connection, full handshake", "resume": "new connection, resumed", "keepalive": "keep-alive"}
print("| mode | client | trackd resp/CPU-s | opentracker+hitch resp/CPU-s | ratio | trackd runs | ot+hitch runs | resumed (trackd, ot+hitch) | errors |")
print("|---|---|---:|---:|---:|---|---|---|---:|")
clients = list(dict.fromkeys(r.get("client", "") for r in runs))
for mode, client in [(m, c) for m in ["close", "resume", "keepalive"] for c in clients]:
    t = [r for r in runs if r["mode"] == mode and r["server"] == "trackd" and r.get("client", "") == client]
    o = [r for r in runs if r["mode"] == mode and r["server"] == "ot+hitch" and r.get("client", "") == client]
    if not t and not o:
        continue
    mt = statistics.median(r["per_cpu_s"] for r in t) if t else 0
    mo = statistics.median(r["per_cpu_s"] for r in o) if o else 0
    res = lambda rs: "%d/%d" % (sum(r["resumed"] for r in rs), sum(r["connects"] for r in rs))
    print("| %s | %s | %.0f | %.0f | %.2f× | %s | %s | %s, %s | %d |" % (
        names[mode], client, mt, mo, mt / mo if mo else 0,
        " ".join("%.0f" % r["per_cpu_s"] for r in t), " ".join("%.0f" % r["per_cpu_s"] for r in o),
        res(t), res(o), sum(r["errors"] + r["timeouts"] for r in t + o)))
EOF
}
case ${1:-} in
-h | --help | help) usage; exit 0 ;;
table) [[ $# -eq 2 ]] || { usage >&2; exit 2; }; table "$2"; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

MODES=${MODES:-close resume keepalive}
SERVERS=${SERVERS:-trackd ot+hitch}
KEY=${KEY:-ec}
CLIENTS=${CLIENTS-x25519:-tls-curves x25519}
IFS=';' read -r -a CLIENT_LIST <<<"$CLIENTS"
TRACKD_FLAGS=${TRACKD_FLAGS:-}
TORRENTS=${TORRENTS:-1000}
PEERS=${PEERS:-10000}
CONNS=${CONNS:-32}
DURATION=$(godur "${DURATION:-10s}")
WARMUP=$(godur "${WARMUP:-3s}")
RUNS=${RUNS:-3}
IDLE=${IDLE:-2000}
PORT=${PORT:-17443}
PROFILE=${PROFILE:-}
TRACKER_CPU=${TRACKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SEED=${SEED:-1}
RESULTS=${RESULTS:-/tmp/trackd-https-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
LIMIT=$((WARM_S + DUR_S + 45))
NMODES=$(wc -w <<<"$MODES")
MAX_TIME=${MAX_TIME:-$((120 + NMODES * ${#CLIENT_LIST[@]} * RUNS * 2 * (LIMIT + 5)))}
run_capped "$@"

missing=()
for c in opentracker hitch openssl taskset; do command -v "$c" >/dev/null || missing+=("$c"); done
((${#missing[@]} == 0)) || die "missing ${missing[*]}; install with: apt-get install opentracker hitch openssl util-linux"
two_cpus
case $KEY in ec | rsa) ;; *) die "KEY must be ec or rsa" ;; esac
for m in $MODES; do case $m in close | resume | keepalive | memory) ;; *) die "MODES: unknown $m" ;; esac; done

mkdir -p "$RESULTS/raw"
BIN=$(mktemp -d /tmp/trackd-https-bin.XXXXXX)
trap_cleanup
build bench/hashes
taskset -pc "$LOAD_CPU" $$ >/dev/null

# The certificate: self-signed, for 127.0.0.1; one PEM of key and chain for
# hitch.
selfsigned_cert "$BIN" "$KEY"
cat "$BIN/key.pem" "$BIN/cert.pem" >"$BIN/hitch.pem"

TADDR=127.0.0.1:$PORT HADDR=127.0.0.1:$((PORT + 1)) OADDR=127.0.0.1:$((PORT + 2)) AADDR=127.0.0.1:$((PORT + 3))
for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
	[[ -z $(ss -Hlntu "sport = :$p") ]] || die "port $p is in use; set PORT"
done

# start NAME DIR EXE ARGS...: start EXE pinned to TRACKER_CPU under its own
# time bound; sets LAST (the process itself, found through its wrapper).
start() {
	local name=$1 dir=$2 exe=$3 w c
	shift 3
	(cd "$dir" && exec timeout -s KILL "$MAX_TIME" taskset -c "$TRACKER_CPU" "$exe" "$@") >>"$RESULTS/$name.log" 2>&1 &
	w=$!
	PIDS+=("$w")
	LAST=""
	for _ in $(seq 200); do
		c=$(pgrep -P "$w" || true)
		if [[ -n $c && $(readlink "/proc/$c/exe" 2>/dev/null) == "$exe" ]]; then LAST=$c; break; fi
		sleep 0.05
	done
	[[ -n $LAST ]] || die "$name did not start; see $RESULTS/$name.log"
	PIDS+=("$LAST")
}
listening() { [[ -n $(ss -Hlnt "sport = :${1##*:}") ]]; }
wait_listen() {
	for _ in $(seq 200); do listening "$2" && return 0; sleep 0.05; done
	die "$1 does not listen on $2; see $RESULTS/$1.log"
}
# ticks PID...: CPU ticks of the processes and of their children (hitch's
# workers).
ticks() {
	local t=0 p c
	for p in "$@"; do
		t=$((t + $(cpu_ticks "$p")))
		for c in $(pgrep -P "$p" || true); do t=$((t + $(cpu_ticks "$c"))); done
	done
	echo "$t"
}

"$BIN/hashes" -torrents "$TORRENTS" -seed "$SEED" >"$BIN/hashes.txt"
OTDIR=$BIN/opentracker
mkdir -p "$OTDIR"
cp "$BIN/hashes.txt" "$OTDIR/whitelist.txt"
cat >"$OTDIR/opentracker.conf" <<EOF
listen.tcp_udp $OADDR
access.whitelist whitelist.txt
tracker.rootdir $OTDIR
EOF
chmod 755 "$BIN" "$OTDIR"
chmod 644 "$OTDIR/whitelist.txt" "$OTDIR/opentracker.conf"

# shellcheck disable=SC2086
start trackd "$BIN" "$BIN/trackd" -https "$TADDR" -tls-cert "$BIN/cert.pem" -tls-key "$BIN/key.pem" \
	-http "" -udp "" -admin "$AADDR" -pprof $TRACKD_FLAGS
TRACKD=$LAST
wait_listen trackd "$TADDR"
start opentracker "$OTDIR" "$(readlink -f "$(command -v opentracker)")" -f "$OTDIR/opentracker.conf"
OT=$LAST
wait_listen opentracker "$OADDR"
timeout 130 $PY "$REPO/bench/compare_helper.py" probe "$OADDR" "$(tail -n 1 "$BIN/hashes.txt")" 120 ||
	die "opentracker does not answer announces for the workload's hashes"
start hitch "$BIN" "$(readlink -f "$(command -v hitch)")" --frontend="[127.0.0.1]:$((PORT + 1))" \
	--backend="[127.0.0.1]:$((PORT + 2))" --workers=1 --daemon=off --user=nobody --log-level=0 "$BIN/hitch.pem"
HITCH=$LAST
wait_listen hitch "$HADDR"
log "trackd $TRACKD on $TADDR; hitch $HITCH on $HADDR -> opentracker $OT on $OADDR; all on CPU $TRACKER_CPU"

RUNSFILE=$RESULTS/runs.jsonl
: >"$RUNSFILE"
COMMON=(-torrents "$TORRENTS" -peers "$PEERS" -seed "$SEED" -conns "$CONNS" -warmup "$WARMUP" -duration "$DURATION" -scrape 0 -timeout 5s)
# measure NAME MODE CLIENT I URL PIDS...: one run; the servers' CPU is
# read when the warm-up ends and when the generator has exited.
measure() {
	local name=$1 mode=$2 client=$3 i=$4 url=$5 tag c0 c1 prof=""
	shift 5
	tag=$name-$mode-${client%%:*}-$i
	local flags=()
	case $mode in
	close) flags=(-http-close) ;;
	resume) flags=(-http-close -tls-resume) ;;
	keepalive) flags=(-window 1) ;;
	esac
	# shellcheck disable=SC2086
	run_load "$tag" "$LIMIT" -http "$url" "${flags[@]}" "${COMMON[@]}" ${client#*:} -max-time "$((LIMIT - 10))s"
	sleep "$WARMUP"
	c0=$(ticks "$@")
	if [[ -n $PROFILE && $name == trackd && $i == 1 && -z ${PROFILED:-} ]]; then
		PROFILED=1
		curl -s -o "$PROFILE" "http://$AADDR/debug/pprof/profile?seconds=$((DUR_S < 10 ? DUR_S - 1 : 10))" &
		prof=$!
	fi
	gen_wait "$tag"
	c1=$(ticks "$@")
	[[ -z $prof ]] || wait "$prof" || true
	$PY - "$RESULTS/raw/$tag.json" "$name" "$mode" "$((c1 - c0))" "$(getconf CLK_TCK)" "${client%%:*}" >>"$RUNSFILE" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).readline())
cpu = int(sys.argv[4]) / int(sys.argv[5])
print(json.dumps({"server": sys.argv[2], "mode": sys.argv[3], "client": sys.argv[6], "responses": r["responses"],
                  "errors": r["errors"], "timeouts": r["timeouts"], "connects": r["connects"],
                  "resumed": r.get("tls_resumed", 0), "seconds": r["seconds"], "cpu": cpu,
                  "per_cpu_s": r["responses"] / cpu if cpu else 0}))
EOF
	log "$tag: $(tail -n 1 "$RUNSFILE")"
}

# memory: trackd's resident memory (VmRSS, no forced garbage collection)
# before and while compare_helper.py holds IDLE idle keep-alive TLS
# connections to it, each after one announce; one JSON line to MEMFILE.
MEMFILE=$RESULTS/memory.jsonl
: >"$MEMFILE"
memory() {
	local hash before with line w open
	hash=$(head -n 1 "$BIN/hashes.txt")
	# One connection first, so that "before" includes a handshake's
	# one-time allocations.
	timeout 60 $PY "$REPO/bench/compare_helper.py" hold "$TADDR" "$hash" 1 </dev/null >/dev/null ||
		die "memory: the first connection failed"
	sleep 1
	before=$(mem_kb "$TRACKD" VmRSS)
	coproc HOLD { exec timeout 600 taskset -c "$LOAD_CPU" $PY "$REPO/bench/compare_helper.py" hold "$TADDR" "$hash" "$IDLE"; }
	PIDS+=("$HOLD_PID")
	read -r -t 300 line <&"${HOLD[0]}" || die "memory: the connections were not all made"
	[[ $line == "held $IDLE" ]] || die "memory: $line"
	sleep 2
	with=$(mem_kb "$TRACKD" VmRSS)
	open=$(curl -s "http://$AADDR/metrics" | awk '$1 == "trackd_http_connections_open{listener=\"https\"}" { print $2 }')
	[[ $open == "$IDLE" ]] || die "memory: trackd has ${open:-?} HTTPS connections open, not $IDLE"
	w=${HOLD[1]}
	exec {w}>&-
	wait "$HOLD_PID" || true
	echo "{\"idle\": $IDLE, \"rss_before_kb\": $before, \"rss_with_kb\": $with, \"per_conn_bytes\": $(((with - before) * 1024 / IDLE))}" >>"$MEMFILE"
	log "memory: $(tail -n 1 "$MEMFILE")"
}

for mode in $MODES; do
	if [[ $mode == memory ]]; then
		memory
		continue
	fi
	for i in $(seq "$RUNS"); do
		for client in "${CLIENT_LIST[@]}"; do
			[[ $SERVERS != *trackd* ]] || measure trackd "$mode" "$client" "$i" "https://$TADDR/announce" "$TRACKD"
			[[ $SERVERS != *ot+hitch* ]] || measure ot+hitch "$mode" "$client" "$i" "https://$HADDR/announce" "$OT" "$HITCH"
		done
	done
done

{
	echo "# trackd vs opentracker+hitch over HTTPS, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	machine_line
	echo "- $(go version | cut -d' ' -f3-), opentracker $(dpkg-query -W -f='${Version}' opentracker 2>/dev/null || echo '?'), hitch $(dpkg-query -W -f='${Version}' hitch 2>/dev/null || echo '?'), $(openssl version | cut -d' ' -f1-2)"
	echo "- trackd and trackd-load from the $SRC_DESC; servers on CPU $TRACKER_CPU, trackd-load on CPU $LOAD_CPU"
	echo "- key $KEY; trackd-load flags: ${COMMON[*]}; clients: $CLIENTS; RUNS=$RUNS interleaved"
	echo
	[[ ! -s $RUNSFILE ]] || table "$RUNSFILE"
	[[ ! -s $MEMFILE ]] || $PY - "$MEMFILE" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    print("\ntrackd, %d idle keep-alive HTTPS connections: VmRSS %.1f MiB before, %.1f MiB with them: %d bytes per connection"
          % (m["idle"], m["rss_before_kb"] / 1024, m["rss_with_kb"] / 1024, m["per_conn_bytes"]))
EOF
} | tee "$RESULTS/report.md"
