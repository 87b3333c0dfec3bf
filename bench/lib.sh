# shellcheck shell=bash
# bench/lib.sh: shell functions shared by the bench scripts (compare.sh,
# compare-ws.sh, soak.sh). Sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It defines functions and REPO (the repository's root) and nothing else;
# what each function reads or sets is said above it. Messages name the
# script that sourced it (die: "compare.sh: ...").

# REPO: the repository's root (this file is in REPO/bench).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# parse_mode ARGS...: MODE from the arguments of compare.sh or
# compare-ws.sh: none or "throughput", or "memory"; -h prints the script's
# usage, anything else prints it and exits with 2.
parse_mode() {
	MODE=${1:-throughput}
	case $MODE in
	throughput | memory) ;;
	-h | --help | help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	[[ $# -le 1 ]] || { usage >&2; exit 2; }
}
# two_cpus: fail unless TRACKER_CPU and LOAD_CPU are two distinct CPUs of
# this machine.
two_cpus() {
	local ncpu
	ncpu=$(nproc --all)
	((TRACKER_CPU < ncpu && LOAD_CPU < ncpu && TRACKER_CPU != LOAD_CPU)) ||
		die "need two distinct CPUs TRACKER_CPU=$TRACKER_CPU LOAD_CPU=$LOAD_CPU (this machine has $ncpu)"
}

# secs D: whole seconds (rounded up) of a duration given as N, Ns, N.Ns or Nm.
secs() {
	local d=$1
	if [[ $d =~ ^([0-9]+)(\.[0-9]+)?s?$ ]]; then
		echo $((BASH_REMATCH[1] + (${#BASH_REMATCH[2]} > 0)))
	elif [[ $d =~ ^([0-9]+)m$ ]]; then
		echo $((BASH_REMATCH[1] * 60))
	else
		die "duration $d: give seconds (10, 10s, 2.5s) or minutes (2m)"
	fi
}
# godur D: the same duration as Go's flag package wants it.
godur() { if [[ $1 =~ ^[0-9.]+$ ]]; then echo "${1}s"; else echo "$1"; fi; }

# run_capped ARGS...: one hard cap on the whole script. Unless this is
# already the capped run (_COMPARE_CAPPED set), re-run the script with
# ARGS under timeout(1) for MAX_TIME seconds and exit with its status. On
# the cap, timeout sends SIGTERM to the script (its EXIT trap stops the
# servers and generators), then SIGKILL 20 s later; every server also has
# its own bound (timeout -s KILL MAX_TIME) and every generator its own.
# --foreground keeps the script in the terminal's process group, so that
# Ctrl-C reaches it. Exports RESULTS and MAX_TIME, so that both runs use
# the same.
run_capped() {
	[[ -z ${_COMPARE_CAPPED:-} ]] || return 0
	[[ $MAX_TIME =~ ^[0-9]+$ ]] || die "MAX_TIME must be seconds"
	export _COMPARE_CAPPED=1 RESULTS MAX_TIME
	set +e
	timeout --foreground --signal=TERM --kill-after=20 "$MAX_TIME" bash "$0" "$@"
	local rc=$?
	((rc == 124)) && echo "${0##*/}: stopped by the overall cap MAX_TIME=${MAX_TIME}s" >&2
	exit $rc
}

# --- processes to stop on exit (servers, their wrappers, generators)
PIDS=()
# forget PID...: drop ended processes from PIDS (never signal a reused pid).
forget() {
	local keep=() p q drop
	for p in "${PIDS[@]}"; do
		drop=0
		for q in "$@"; do [[ $p == "$q" ]] && drop=1; done
		((drop)) || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}
# cleanup: the EXIT trap (see trap_cleanup). TERM to every process in PIDS,
# KILL half a second later; then the script's own cleanup_more, if it
# defines one; removes BIN (when set) and exits with the script's status.
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	if ((${#PIDS[@]})); then
		for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
		sleep 0.5
		for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
		wait 2>/dev/null || true
	fi
	if declare -F cleanup_more >/dev/null; then cleanup_more; fi
	[[ -z ${BIN:-} ]] || rm -rf "$BIN"
	exit "$rc"
}
# trap_cleanup: run cleanup on exit, on SIGTERM and on Ctrl-C.
trap_cleanup() {
	trap cleanup EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
}

# build [DIR...]: build trackd and trackd-load into BIN, and each DIR (a
# bench tool, such as bench/hashes) into BIN/<its name>; from the git
# revision REV (git archive into BIN/src; the DIRs are taken from the
# working tree, so that older revisions get them too) or else from the
# working tree. Sets SRC_DESC (what was built, for the report).
build() {
	local src d dirty
	if [[ -n ${REV:-} ]]; then
		src=$BIN/src
		mkdir -p "$src"
		git -C "$REPO" archive "$REV" | tar -x -C "$src"
		for d in "$@"; do
			rm -rf "${src:?}/$d" && mkdir -p "$src/$(dirname "$d")" && cp -r "$REPO/$d" "$src/$(dirname "$d")/"
		done
		SRC_DESC="git revision $REV ($(git -C "$REPO" rev-parse --short "$REV"))"
	else
		src=$REPO
		dirty=$(git -C "$REPO" status --porcelain -- . ':!bench' 2>/dev/null | awk '{print $2}' | tr '\n' ' ' || true)
		SRC_DESC="working tree at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')${dirty:+ with uncommitted changes in $dirty}"
	fi
	log "building trackd and trackd-load from the $SRC_DESC into $BIN"
	(
		cd "$src" && go build -o "$BIN/trackd" ./cmd/trackd && go build -o "$BIN/trackd-load" ./cmd/trackd-load || exit 1
		for d in "$@"; do go build -o "$BIN/${d##*/}" "./$d" || exit 1; done
	) || die "build failed (REV=HEAD builds the last commit instead of the working tree)"
}

# selfsigned_cert DIR KEY: a self-signed certificate for 127.0.0.1 in
# DIR/cert.pem and its key in DIR/key.pem; KEY is ec (ECDSA P-256) or rsa
# (RSA 2048). Needs openssl.
selfsigned_cert() {
	local newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
	[[ $2 == rsa ]] && newkey=(-newkey rsa:2048)
	openssl req -x509 "${newkey[@]}" -nodes -keyout "$1/key.pem" -out "$1/cert.pem" \
		-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null ||
		die "openssl could not make a certificate"
}

# --- /proc readings
# cpu_ticks PID: utime + stime (fields 14 and 15 of /proc/PID/stat, all
# threads) in clock ticks (getconf CLK_TCK a second). The fields after the
# ")" of comm start at 3.
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
# mem_kb PID KEY: a line of /proc/PID/status in kB (VmRSS, VmHWM).
mem_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# machine_line: the report's first line: CPUs, memory, kernel.
machine_line() {
	echo "- machine: $(nproc --all) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
}

# --- one server at a time, pinned (compare.sh, compare-ws.sh)
SRV_PID="" SRV_WRAP="" SRV_NAME=""
# spawn_server NAME DIR EXE ARGS...: start EXE in DIR, pinned to
# TRACKER_CPU, under its own time bound (timeout -s KILL MAX_TIME), its
# output appended to RESULTS/NAME.log, and wait until EXE itself runs.
# Sets SRV_PID (the server), SRV_WRAP (its timeout wrapper), SRV_NAME; both
# pids go into PIDS. The caller then waits until it listens.
spawn_server() {
	local name=$1 dir=$2 exe=$3
	shift 3
	(cd "$dir" && exec timeout --foreground -s KILL "$MAX_TIME" taskset -c "$TRACKER_CPU" "$exe" "$@") \
		>>"$RESULTS/$name.log" 2>&1 &
	# shellcheck disable=SC2034 # SRV_NAME: for the caller's reports
	SRV_WRAP=$! SRV_NAME=$name SRV_PID=""
	PIDS+=("$SRV_WRAP")
	local c
	for _ in $(seq 200); do
		c=$(pgrep -P "$SRV_WRAP" || true)
		if [[ -n $c && $(readlink "/proc/$c/exe" 2>/dev/null) == "$exe" ]]; then
			SRV_PID=$c
			break
		fi
		sleep 0.05
	done
	[[ -n $SRV_PID ]] || die "$name did not start; see $RESULTS/$name.log"
	PIDS+=("$SRV_PID")
}
# kill_server: stop the server spawn_server started (TERM, KILL after 10 s)
# and forget it. Does nothing when none runs.
kill_server() {
	[[ -n $SRV_PID ]] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SRV_PID" 2>/dev/null || true
	wait "$SRV_WRAP" 2>/dev/null || true
	forget "$SRV_PID" "$SRV_WRAP"
	SRV_PID="" SRV_WRAP=""
}

# --- trackd-load runs in the background, one at a time
# run_load TAG LIMIT_S ARGS...: trackd-load -json ARGS pinned to LOAD_CPU,
# under timeout LIMIT_S, in the background; JSON lines to
# RESULTS/raw/TAG.json, text to RESULTS/raw/TAG.txt. Sets GEN (also in PIDS).
run_load() {
	local tag=$1 limit=$2
	shift 2
	timeout -k 5 "$limit" taskset -c "$LOAD_CPU" "$BIN/trackd-load" -json "$@" \
		>"$RESULTS/raw/$tag.json" 2>"$RESULTS/raw/$tag.txt" &
	GEN=$!
	PIDS+=("$GEN")
}
# gen_wait TAG: wait for the generator; fail when it left no JSON.
gen_wait() {
	local rc=0
	wait "$GEN" || rc=$?
	forget "$GEN"
	[[ -s $RESULTS/raw/$1.json ]] || die "trackd-load ($1) exited with $rc and no result; see $RESULTS/raw/$1.txt"
}
# field TAG KEY: a field of the (first) JSON line of RESULTS/raw/TAG.json.
field() { $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline()).get(sys.argv[2]))' "$RESULTS/raw/$1.json" "$2"; }
